#!/usr/bin/python3
"""A loopback fake AWS endpoint that checks every request's SigV4 signature
with an independent implementation: botocore's (python3-botocore, Debian),
not libcurl's, which signs flcache's requests.

s3rver and the tests' C fake servers accept any signature, so without this a
request signed wrongly (or with the wrong secret) would pass every test and
fail only against AWS. For each request the signature is recomputed the way
the service does: the canonical request from the method, the path (S3: decoded
and URI-encoded once; other services: the path as received URI-encoded
once more, as botocore's S3SigV4Auth / SigV4Auth do), the query, the headers the client
listed in SignedHeaders and the payload hash; the credential scope must name
the expected access key, region and service, and X-Amz-Date must be within
15 minutes. A mismatch is answered as AWS does: HTTP 403,
SignatureDoesNotMatch (S3, XML) or InvalidSignatureException (Lambda, JSON).

Usage: sigv4_check.py --service s3|lambda --region R --access-key AK
                      --secret SK [--log FILE]
Prints "PORT <n>" on stdout once listening on 127.0.0.1, then serves until
stdin closes (the test holds the other end, so it never outlives the test).
The log gets one line per request: "OK METHOD PATH" or "FAIL METHOD PATH why".

Behind the check: --service lambda answers an Invoke (POST
/2015-03-31/functions/NAME/invocations) with {"ok":true,"result":...};
--service s3 is a tiny in-memory S3 (path-style buckets and objects: HEAD,
PUT, GET, DELETE), enough for flcache's cold tier.
"""
import argparse
import datetime
import hashlib
import hmac
import http.server
import json
import sys
import threading
from urllib.parse import quote, unquote

try:
    from botocore.auth import S3SigV4Auth, SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
except ImportError:  # the C test reads this line and skips, naming the package
    print("NOBOTOCORE install the Debian package python3-botocore", flush=True)
    sys.exit(3)


def parse_authorization(value):
    """'AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...'"""
    algo, _, rest = value.partition(" ")
    fields = {}
    for part in rest.split(","):
        k, _, v = part.strip().partition("=")
        fields[k] = v
    return algo, fields


class Checker:
    def __init__(self, args):
        self.args = args

    def verify(self, method, raw_path, headers, body):
        """Returns None when the signature is right, else why not."""
        a = self.args
        auth = headers.get("authorization")
        if auth is None:
            return "no Authorization header"
        algo, f = parse_authorization(auth)
        if algo != "AWS4-HMAC-SHA256":
            return "algorithm %r" % algo
        for need in ("Credential", "SignedHeaders", "Signature"):
            if need not in f:
                return "Authorization has no " + need
        scope = f["Credential"].split("/")
        if len(scope) != 5 or scope[4] != "aws4_request":
            return "credential scope %r" % f["Credential"]
        key, day, region, service = scope[:4]
        if key != a.access_key:
            return "access key %r is not %r" % (key, a.access_key)
        if region != a.region or service != a.service:
            return "scope %s/%s, expected %s/%s" % (region, service, a.region, a.service)
        stamp = headers.get("x-amz-date", "")
        try:
            t = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ")
        except ValueError:
            return "X-Amz-Date %r" % stamp
        if abs((datetime.datetime.utcnow() - t).total_seconds()) > 900:
            return "X-Amz-Date %s is more than 15 minutes off" % stamp
        if day != stamp[:8]:
            return "scope date %s is not X-Amz-Date's day %s" % (day, stamp[:8])
        signed = f["SignedHeaders"].split(";")
        for need in ("host", "x-amz-date"):
            if need not in signed:
                return "%s is not signed" % need
        missing = [h for h in signed if h not in headers]
        if missing:
            return "signed headers not sent: %s" % ",".join(missing)
        payload = headers.get("x-amz-content-sha256")
        if payload is not None and payload != "UNSIGNED-PAYLOAD":
            if payload != hashlib.sha256(body).hexdigest():
                return "x-amz-content-sha256 does not match the body"
        elif payload is None and a.service == "s3":
            return "S3 needs x-amz-content-sha256"
        if "x-amz-security-token" in headers and "x-amz-security-token" not in signed:
            return "the session token is sent but not signed"
        # The canonical path as the service computes it from what it
        # received: S3 decodes it and encodes it once (S3SigV4Auth uses it
        # as given); other services encode the path as received once more
        # (SigV4Auth does: a '%3A' sent becomes '%253A', a ':' sent '%3A').
        path, _, query = raw_path.partition("?")
        if a.service == "s3":
            path = quote(unquote(path), safe="/~")
        url = "http://" + headers["host"] + path
        if query:
            url += "?" + query
        req = AWSRequest(method=method, url=url, data=body,
                         headers={h: headers[h] for h in signed})
        req.context["timestamp"] = stamp
        cls = S3SigV4Auth if a.service == "s3" else SigV4Auth
        signer = cls(Credentials(a.access_key, a.secret), a.service, a.region)
        canonical = signer.canonical_request(req)
        want = signer.signature(signer.string_to_sign(req, canonical), req)
        if not hmac.compare_digest(want, f["Signature"]):
            return "SignatureDoesNotMatch (canonical request: %r)" % canonical
        return None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    buckets = {}  # name -> {object name: bytes}
    lock = threading.Lock()

    def log_message(self, *args):  # quiet: the log file says what matters
        pass

    def reply(self, status, body=b"", ctype="application/json", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        n = int(self.headers.get("Content-Length", "0") or "0")
        body = self.rfile.read(n) if n else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        why = self.server.checker.verify(self.command, self.path, headers, body)
        self.server.record("%s %s %s%s" % ("OK" if why is None else "FAIL", self.command,
                                           self.path, "" if why is None else " " + why))
        service = self.server.checker.args.service
        if why is not None:
            msg = "The request signature we calculated does not match the signature you provided."
            if service == "s3":
                xml = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>"
                       "SignatureDoesNotMatch</Code><Message>%s</Message></Error>" % msg)
                return self.reply(403, xml.encode(), "application/xml")
            return self.reply(403, json.dumps({"message": msg}).encode(),
                              extra=[("x-amzn-ErrorType", "InvalidSignatureException")])
        if service == "lambda":
            return self.lambda_invoke(body)
        return self.s3(body)

    def lambda_invoke(self, body):
        if self.command != "POST" or not self.path.split("?")[0].endswith("/invocations"):
            return self.reply(404, b'{"message":"not an Invoke"}')
        try:
            event = json.loads(body or b"{}")
        except ValueError:
            event = None
        out = {"ok": True, "result": {"sigv4": "verified", "event": event}}
        return self.reply(200, json.dumps(out).encode())

    def s3(self, body):
        path = unquote(self.path.split("?")[0]).lstrip("/")
        bucket, _, name = path.partition("/")
        with self.lock:
            objs = self.buckets.get(bucket)
            if not name:  # the bucket itself
                if self.command == "PUT":
                    self.buckets.setdefault(bucket, {})
                    return self.reply(200, ctype="application/xml")
                return self.reply(200 if objs is not None else 404, ctype="application/xml")
            if objs is None:
                return self.reply(404, b"<Error><Code>NoSuchBucket</Code></Error>",
                                  "application/xml")
            if self.command == "PUT":
                objs[name] = body
                return self.reply(200, ctype="application/xml")
            if self.command == "DELETE":
                objs.pop(name, None)
                return self.reply(204, ctype="application/xml")
            if name not in objs:
                return self.reply(404, b"<Error><Code>NoSuchKey</Code></Error>",
                                  "application/xml")
            return self.reply(200, objs[name], "application/octet-stream")

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, args):
        super().__init__(("127.0.0.1", 0), Handler)
        self.checker = Checker(args)
        self.log = open(args.log, "a", buffering=1) if args.log else sys.stderr
        self.log_lock = threading.Lock()

    def record(self, line):
        with self.log_lock:
            self.log.write(line + "\n")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--service", choices=["s3", "lambda"], required=True)
    p.add_argument("--region", required=True)
    p.add_argument("--access-key", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--log")
    args = p.parse_args()
    srv = Server(args)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    print("PORT %d" % srv.server_address[1], flush=True)
    sys.stdin.read()  # until the test closes its end (or dies)
    srv.shutdown()


if __name__ == "__main__":
    main()
