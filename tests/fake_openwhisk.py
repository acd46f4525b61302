#!/usr/bin/python3
"""A loopback stand-in for Apache OpenWhisk's controller that checks what
OpenWhisk checks and runs each activation through a real flcache-fn as a
native (dockerskeleton) action.

  POST /api/v1/namespaces/<ns>/actions/<action>?blocking=true[&result=true]
  - basic auth must be --auth ("user:key"): else 401, as OpenWhisk answers
    ("The supplied authentication is invalid");
  - <ns> is --namespace or "_"; an unknown action is 404;
  - --throttle N answers the first N invocations 429 ("Too many requests in
    the last minute"), --concurrency C every one beyond C in flight;
  - the action runs as the native runtime does: `exec '<params json>'` with
    the action's bound parameters (--param K=V) merged under the request's,
    the last line of stdout is the result (a JSON object, else "developer
    error"); a result with an "error" member is an "application error";
    past --timeout-ms the process is killed ("developer error", "The action
    exceeded its time limits of N milliseconds.");
  - the answer is the activation record (activationId, start, end, duration,
    response {status, statusCode, success, result}, annotations path, kind,
    limits {memory, timeout, ...}, waitTime, initTime on a cold container),
    HTTP 200 on success and 502 otherwise; with result=true only the result.
    A blocking invocation that outlives --blocking-ms is answered 202
    {"activationId"} and its record is then at
  GET /api/v1/namespaces/<ns>/activations/<id>   (404 until it ends).
A container is reused when one is idle (warm), else a new one is counted
cold (initTime); each activation is one process either way, as the
dockerskeleton's action proxy runs exec per activation.

Usage: fake_openwhisk.py --auth USER:KEY --exec PATH [--namespace guest]
           [--action flcache-fn] [--memory MB] [--timeout-ms MS]
           [--blocking-ms MS] [--throttle N] [--concurrency C] [--param K=V]...
           [--env K=V]... [--log FILE]
Prints "PORT <n>" once listening, serves until stdin closes.
"""
import argparse
import base64
import hmac
import json
import os
import subprocess
import sys
import threading
import time
import uuid
import http.server
from urllib.parse import unquote


class Fake:
    def __init__(self, args):
        self.args = args
        self.lock = threading.Lock()
        self.idle = 0
        self.in_flight = 0
        self.throttled = 0
        self.records = {}
        self.logf = open(args.log, "a", buffering=1) if args.log else sys.stderr
        self.log_lock = threading.Lock()
        self.params = {}
        for kv in args.param:
            k, _, v = kv.partition("=")
            self.params[k] = v

    def record(self, line):
        with self.log_lock:
            self.logf.write(line + "\n")

    def run(self, params, ns, aid):
        a = self.args
        with self.lock:
            cold = self.idle == 0
            if not cold:
                self.idle -= 1
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "__OW_ACTIVATION_ID": aid, "__OW_ACTION_NAME": "/%s/%s" % (ns, a.action),
               "__OW_NAMESPACE": ns,
               "__OW_DEADLINE": str(int(time.time() * 1000) + a.timeout_ms)}
        # OpenBLAS picks its kernels by CPU unless OPENBLAS_CORETYPE says;
        # a deployment sets the driver's in the function's environment
        # (docs/functions.md) so models come out bit-identical; so do we.
        env.update({k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")})
        for kv in a.env:
            k, _, v = kv.partition("=")
            env[k] = v
        start = time.time()
        t0 = time.monotonic()
        proc = subprocess.Popen([a.exec, json.dumps(params)], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=os.path.dirname(a.exec) or ".")
        init = (time.monotonic() - t0) * 1000.0
        timed_out = False
        try:
            out, err = proc.communicate(timeout=a.timeout_ms / 1000.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            timed_out = True
        end = time.time()
        with self.lock:
            self.idle += 1
        lines = [ln for ln in out.decode(errors="replace").split("\n") if ln.strip()]
        result = None
        if timed_out:
            status, code = "developer error", 2
            result = {"error": "The action exceeded its time limits of %d milliseconds." %
                      a.timeout_ms}
        else:
            try:
                result = json.loads(lines[-1]) if lines else None
            except ValueError:
                result = None
            if not isinstance(result, dict):
                status, code = "developer error", 2
                result = {"error": "The action did not return a dictionary."}
            elif "error" in result:
                status, code = "application error", 1
            else:
                status, code = "success", 0
        annotations = [{"key": "path", "value": "%s/%s" % (ns, a.action)},
                       {"key": "waitTime", "value": 1},
                       {"key": "kind", "value": "blackbox"},
                       {"key": "timeout", "value": timed_out},
                       {"key": "limits", "value": {"concurrency": 1, "logs": 10,
                                                   "memory": a.memory,
                                                   "timeout": a.timeout_ms}}]
        if cold:
            annotations.append({"key": "initTime", "value": round(init)})
        rec = {"activationId": aid, "namespace": ns, "name": a.action, "version": "0.0.1",
               "subject": a.auth.split(":")[0], "publish": False,
               "start": int(start * 1000), "end": int(end * 1000),
               "duration": int(round((end - start) * 1000)),
               "statusCode": code,
               "response": {"status": status, "statusCode": code, "success": code == 0,
                            "result": result},
               "logs": [ln for ln in err.decode(errors="replace").split("\n") if ln][-10:],
               "annotations": annotations}
        with self.lock:
            self.records[aid] = rec
        self.record("%s %s %s%s" % ("OK" if code == 0 else "ERROR", aid, status,
                                    " cold" if cold else ""))
        return rec


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body in two writes: no 40 ms ACK wait

    def log_message(self, *args):
        pass

    def reply(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def authorized(self):
        fake = self.server.fake
        h = self.headers.get("Authorization", "")
        if not h.startswith("Basic "):
            return False
        try:
            got = base64.b64decode(h[6:], validate=True).decode()
        except ValueError:
            return False
        return hmac.compare_digest(got, fake.args.auth)

    def route(self):
        """(ns, kind, name, query) of /api/v1/namespaces/<ns>/<kind>/<name>."""
        path, _, query = self.path.partition("?")
        parts = path.split("/")
        if len(parts) < 7 or parts[1:4] != ["api", "v1", "namespaces"]:
            return None
        return unquote(parts[4]), parts[5], unquote("/".join(parts[6:])), query

    def namespace_ok(self, ns):
        return ns in ("_", self.server.fake.args.namespace)

    def do_GET(self):
        fake = self.server.fake
        if not self.authorized():
            return self.reply(401, {"error": "The supplied authentication is invalid",
                                    "code": uuid.uuid4().hex})
        r = self.route()
        if r is None or r[1] != "activations" or not self.namespace_ok(r[0]):
            return self.reply(404, {"error": "The requested resource does not exist."})
        with fake.lock:
            rec = fake.records.get(r[2])
        if rec is None:
            return self.reply(404, {"error": "The requested resource does not exist."})
        self.reply(200, rec)

    def do_POST(self):
        fake = self.server.fake
        a = fake.args
        n = int(self.headers.get("Content-Length", "0") or "0")
        body = self.rfile.read(n) if n else b""
        if not self.authorized():
            fake.record("FAIL POST %s bad auth" % self.path)
            return self.reply(401, {"error": "The supplied authentication is invalid",
                                    "code": uuid.uuid4().hex})
        r = self.route()
        if r is None or r[1] != "actions" or not self.namespace_ok(r[0]) or r[2] != a.action:
            return self.reply(404, {"error": "The requested resource does not exist.",
                                    "code": uuid.uuid4().hex})
        ns, _, _, query = r
        q = dict(p.partition("=")[::2] for p in query.split("&") if p)
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            return self.reply(400, {"error": "The request content was malformed."})
        if not isinstance(params, dict):
            return self.reply(400, {"error": "The request content was malformed: "
                                    "parameters must be an object."})
        with fake.lock:
            throttle = fake.throttled < a.throttle or \
                (a.concurrency > 0 and fake.in_flight >= a.concurrency)
            if throttle:
                fake.throttled += 1
            else:
                fake.in_flight += 1
        if throttle:
            fake.record("THROTTLE POST %s" % self.path)
            return self.reply(429, {"error": "Too many concurrent requests in flight "
                                    "(count: %d, allowed: %d)." % (fake.in_flight,
                                                                 a.concurrency or 0),
                                    "code": uuid.uuid4().hex})
        merged = dict(fake.params)
        merged.update(params)
        holder = {}
        aid = uuid.uuid4().hex

        def work():
            try:
                holder["rec"] = fake.run(merged, a.namespace if ns == "_" else ns, aid)
            finally:
                with fake.lock:
                    fake.in_flight -= 1

        t = threading.Thread(target=work, daemon=True)
        t.start()
        if q.get("blocking") != "true":
            return self.reply(202, {"activationId": aid})
        t.join(a.blocking_ms / 1000.0)
        rec = holder.get("rec")
        if rec is None:  # still running: the caller polls the record
            fake.record("BLOCKING-TIMEOUT %s" % aid)
            return self.reply(202, {"activationId": aid})
        ok = rec["response"]["success"]
        if q.get("result") == "true":
            return self.reply(200 if ok else 502, rec["response"]["result"])
        self.reply(200 if ok else 502, rec)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--auth", required=True)
    p.add_argument("--exec", required=True)
    p.add_argument("--namespace", default="guest")
    p.add_argument("--action", default="flcache-fn")
    p.add_argument("--memory", type=int, default=256)
    p.add_argument("--timeout-ms", type=int, default=60000)
    p.add_argument("--blocking-ms", type=int, default=60000)
    p.add_argument("--throttle", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=0)
    p.add_argument("--param", action="append", default=[])
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--log")
    args = p.parse_args()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.fake = Fake(args)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    print("PORT %d" % srv.server_address[1], flush=True)
    sys.stdin.read()
    srv.shutdown()


if __name__ == "__main__":
    main()
