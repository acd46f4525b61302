#!/usr/bin/python3
"""A loopback stand-in for AWS Lambda that checks what Lambda checks and runs
each event through a real flcache-fn in custom-runtime mode.

Invoke API (what the driver calls), on 127.0.0.1:
  POST /2015-03-31/functions/<name or ARN>/invocations[?Qualifier=...]
  - the SigV4 signature is verified with botocore (tests/sigv4_check.py's
    Checker): a wrong one is HTTP 403 InvalidSignatureException;
  - an unknown function is 404 ResourceNotFoundException;
  - --throttle N answers the first N invocations HTTP 429
    TooManyRequestsException, and --concurrency C (reserved concurrency)
    throttles every invocation beyond C in flight, as Lambda does;
  - the answer: 200 with the function's response, or with
    X-Amz-Function-Error: Unhandled and {"errorMessage","errorType"} when the
    runtime posted /error, died (Runtime.ExitError) or passed --timeout-s
    (Sandbox.Timedout); x-amzn-RequestId, X-Amz-Executed-Version, and with
    X-Amz-Log-Type: Tail the log's last 4 KB in X-Amz-Log-Result (base64),
    ending in the REPORT line (Duration, Billed Duration, Memory Size, Max
    Memory Used, Init Duration on a cold start; a custom runtime's init is
    billed).

Runtime API (what the function calls), one server per instance so a
response is known to come from the instance that got the event:
  GET  /2018-06-01/runtime/invocation/next  -> the event, with the headers
       Lambda-Runtime-Aws-Request-Id, Lambda-Runtime-Deadline-Ms,
       Lambda-Runtime-Invoked-Function-Arn, Lambda-Runtime-Trace-Id
  POST /2018-06-01/runtime/invocation/<id>/response   202, or 400
       InvalidRequestID for an id it was not given, 413 over 6 MB
  POST /2018-06-01/runtime/invocation/<id>/error      202 (same checks)
  POST /2018-06-01/runtime/init/error                 202
An instance is `--bootstrap` (the packaged bootstrap, or flcache-fn itself)
started with AWS_LAMBDA_RUNTIME_API, LAMBDA_TASK_ROOT, AWS_LAMBDA_FUNCTION_*
and the --env values; an idle instance takes the next event (warm), else a
new one starts (cold).

Usage: fake_lambda.py --region R --access-key AK --secret SK --bootstrap PATH
           [--function flcache-fn] [--account 123456789012] [--memory MB]
           [--timeout-s S] [--throttle N] [--concurrency C] [--env K=V]...
           [--log FILE]
Prints "PORT <n>" once listening, serves until stdin closes. The log gets a
line per Invoke: "OK ...", "FAIL ... why" (signature), "THROTTLE ...",
"COLD ...", "ERROR ...".
"""
import argparse
import base64
import json
import math
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
import http.server
from urllib.parse import unquote

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sigv4_check  # noqa: E402  (prints NOBOTOCORE and exits without botocore)

MAX_PAYLOAD = 6 * 1024 * 1024


class QuietServer(http.server.ThreadingHTTPServer):
    """An instance killed mid-request resets its connection: not news."""
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


class Invocation:
    def __init__(self, event, deadline_ms):
        self.id = str(uuid.uuid4())
        self.event = event
        self.deadline_ms = deadline_ms
        self.done = threading.Event()
        self.body = b""
        self.error_type = None  # set when the runtime posted /error
        self.t_start = None     # the event handed to the runtime


class Instance:
    """One function instance: a bootstrap process and its Runtime API."""

    def __init__(self, fake):
        self.fake = fake
        self.events = queue.Queue()
        self.current = None
        self.t_spawn = time.monotonic()
        self.t_ready = None  # its first GET /next: init is over
        self.api = QuietServer(("127.0.0.1", 0), RuntimeHandler)
        self.api.instance = self
        threading.Thread(target=self.api.serve_forever, daemon=True).start()
        a = fake.args
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "AWS_LAMBDA_RUNTIME_API": "127.0.0.1:%d" % self.api.server_address[1],
               "LAMBDA_TASK_ROOT": os.path.dirname(os.path.abspath(a.bootstrap)),
               "AWS_LAMBDA_FUNCTION_NAME": a.function,
               "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
               "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(a.memory),
               "AWS_REGION": a.region, "AWS_DEFAULT_REGION": a.region,
               "_HANDLER": "flcache-fn", "TZ": ":UTC"}
        # OpenBLAS picks its kernels by CPU unless OPENBLAS_CORETYPE says;
        # a deployment sets the driver's in the function's environment
        # (docs/functions.md) so models come out bit-identical; so do we.
        env.update({k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")})
        for kv in a.env:
            k, _, v = kv.partition("=")
            env[k] = v
        self.log = []
        self.proc = subprocess.Popen([a.bootstrap], env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     cwd=env["LAMBDA_TASK_ROOT"])
        threading.Thread(target=self.read_log, daemon=True).start()

    def read_log(self):
        for line in self.proc.stdout:
            self.log.append(line.decode(errors="replace").rstrip("\n"))
            del self.log[:-50]

    def max_memory_mb(self):
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) // 1024
        except OSError:
            pass
        return 0

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.api.shutdown()
        self.api.server_close()


class RuntimeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body in two writes: no 40 ms ACK wait

    def log_message(self, *args):
        pass

    def reply(self, status, obj, extra=()):
        body = json.dumps(obj).encode() if not isinstance(obj, bytes) else obj
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        inst = self.server.instance
        if self.path != "/2018-06-01/runtime/invocation/next":
            return self.reply(404, {"errorMessage": "no such path", "errorType": "NotFound"})
        if inst.t_ready is None:
            inst.t_ready = time.monotonic()
        inv = inst.events.get()  # long poll, as Lambda's
        if inv is None:  # the instance is being stopped
            return self.reply(500, {"errorMessage": "shutting down"})
        inst.current = inv
        inv.t_start = time.monotonic()
        a = inst.fake.args
        self.reply(200, inv.event, [
            ("Lambda-Runtime-Aws-Request-Id", inv.id),
            ("Lambda-Runtime-Deadline-Ms", str(inv.deadline_ms)),
            ("Lambda-Runtime-Invoked-Function-Arn", inst.fake.arn),
            ("Lambda-Runtime-Trace-Id",
             "Root=1-%08x-%s;Parent=%s;Sampled=0" % (int(time.time()), uuid.uuid4().hex[:24],
                                                    uuid.uuid4().hex[:16]))])

    def do_POST(self):
        inst = self.server.instance
        n = int(self.headers.get("Content-Length", "0") or "0")
        body = self.rfile.read(n) if n else b""
        parts = self.path.split("/")
        # /2018-06-01/runtime/invocation/<id>/<what>
        if self.path == "/2018-06-01/runtime/init/error":
            inst.fake.record("INITERROR %s" % body[:200].decode(errors="replace"))
            return self.reply(202, {"status": "OK"})
        if len(parts) != 6 or parts[1:4] != ["2018-06-01", "runtime", "invocation"] or \
                parts[5] not in ("response", "error"):
            return self.reply(404, {"errorMessage": "no such path", "errorType": "NotFound"})
        inv = inst.current
        if inv is None or parts[4] != inv.id:
            return self.reply(400, {"errorMessage": "Invalid request ID",
                                    "errorType": "InvalidRequestID"})
        if len(body) > MAX_PAYLOAD:
            return self.reply(413, {"errorMessage": "Exceeded maximum allowed payload size "
                                    "(6291556 bytes).", "errorType": "RequestTooLarge"})
        if parts[5] == "error":
            inv.error_type = self.headers.get("Lambda-Runtime-Function-Error-Type",
                                              "Unhandled")
        inv.body = body
        inst.current = None
        self.reply(202, {"status": "OK"})
        inv.done.set()


class Fake:
    def __init__(self, args):
        self.args = args
        self.arn = "arn:aws:lambda:%s:%s:function:%s" % (args.region, args.account,
                                                         args.function)
        ns = argparse.Namespace(service="lambda", region=args.region,
                                access_key=args.access_key, secret=args.secret)
        self.checker = sigv4_check.Checker(ns)
        self.lock = threading.Lock()
        self.idle = []
        self.all = []
        self.in_flight = 0
        self.throttled = 0
        self.logf = open(args.log, "a", buffering=1) if args.log else sys.stderr
        self.log_lock = threading.Lock()

    def record(self, line):
        with self.log_lock:
            self.logf.write(line + "\n")

    def known(self, name):
        return name in (self.args.function, self.arn, "%s:function:%s" % (self.args.account,
                                                                           self.args.function))

    def invoke(self, event):
        """Runs event on an instance: (status, body, headers, log tail)."""
        a = self.args
        with self.lock:
            inst = self.idle.pop() if self.idle else None
        cold = inst is None
        if cold:
            inst = Instance(self)
            with self.lock:
                self.all.append(inst)
            self.record("COLD instance pid %d" % inst.proc.pid)
        inv = Invocation(event, int(time.time() * 1000) + a.timeout_s * 1000)
        inst.events.put(inv)
        t_end = time.monotonic() + a.timeout_s
        outcome = None
        while not inv.done.wait(0.02):
            if inst.proc.poll() is not None:
                outcome = ("Runtime.ExitError", "RequestId: %s Error: Runtime exited with "
                           "error: exit status %d" % (inv.id, inst.proc.returncode))
                break
            if time.monotonic() > t_end:
                outcome = ("Sandbox.Timedout", "%s Task timed out after %.2f seconds" %
                           (time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                            a.timeout_s))
                break
        now = time.monotonic()
        start = inv.t_start if inv.t_start is not None else now
        duration = (now - start) * 1000.0
        init = ((inst.t_ready or now) - inst.t_spawn) * 1000.0 if cold else None
        billed = max(1, math.ceil(duration + (init or 0)))
        used = inst.max_memory_mb()
        headers = [("x-amzn-RequestId", inv.id), ("X-Amz-Executed-Version", "$LATEST")]
        if outcome is not None:  # the instance is gone or stuck: never reused
            inst.stop()
            body = json.dumps({"errorMessage": outcome[1], "errorType": outcome[0]}).encode()
            headers.append(("X-Amz-Function-Error", "Unhandled"))
            self.record("ERROR %s %s" % (outcome[0], outcome[1][:120]))
        else:
            body = inv.body
            if inv.error_type is not None:
                headers.append(("X-Amz-Function-Error", "Unhandled"))
                self.record("ERROR %s %s" % (inv.error_type, body[:120].decode(errors="replace")))
            with self.lock:
                self.idle.append(inst)
        report = ("REPORT RequestId: %s\tDuration: %.2f ms\tBilled Duration: %d ms\t"
                  "Memory Size: %d MB\tMax Memory Used: %d MB\t" %
                  (inv.id, duration, billed, a.memory, used))
        if init is not None:
            report += "Init Duration: %.2f ms\t" % init
        tail = "\n".join(["START RequestId: %s Version: $LATEST" % inv.id] + inst.log[-20:] +
                         ["END RequestId: %s" % inv.id, report]) + "\n"
        return 200, body, headers, tail.encode()[-4096:]

    def stop(self):
        with self.lock:
            insts = list(self.all)
        for i in insts:
            i.events.put(None)
            i.stop()


class InvokeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body in two writes: no 40 ms ACK wait

    def log_message(self, *args):
        pass

    def reply(self, status, body, headers=()):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def error(self, status, etype, message):
        self.reply(status, json.dumps({"Type": "User", "message": message}).encode(),
                   [("x-amzn-ErrorType", etype), ("x-amzn-RequestId", str(uuid.uuid4()))])

    def do_POST(self):
        fake = self.server.fake
        n = int(self.headers.get("Content-Length", "0") or "0")
        body = self.rfile.read(n) if n else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        why = fake.checker.verify("POST", self.path, headers, body)
        if why is not None:
            fake.record("FAIL POST %s %s" % (self.path, why))
            return self.error(403, "InvalidSignatureException",
                              "The request signature we calculated does not match the "
                              "signature you provided. Check your AWS Secret Access Key and "
                              "signing method.")
        path = self.path.split("?")[0]
        prefix, suffix = "/2015-03-31/functions/", "/invocations"
        if not path.startswith(prefix) or not path.endswith(suffix):
            return self.error(404, "UnknownOperationException", "Unknown operation")
        name = unquote(path[len(prefix):-len(suffix)])
        if not fake.known(name):
            return self.error(404, "ResourceNotFoundException",
                              "Function not found: arn:aws:lambda:%s:%s:function:%s" %
                              (fake.args.region, fake.args.account, name.split(":")[-1]))
        if headers.get("x-amz-invocation-type", "RequestResponse") != "RequestResponse":
            return self.error(400, "InvalidParameterValueException",
                              "this fake runs RequestResponse invocations only")
        if len(body) > MAX_PAYLOAD:
            return self.error(413, "RequestTooLargeException",
                              "Request must be smaller than 6291456 bytes for the "
                              "InvokeFunction operation")
        with fake.lock:
            throttle = fake.throttled < fake.args.throttle or \
                (fake.args.concurrency > 0 and fake.in_flight >= fake.args.concurrency)
            if throttle:
                fake.throttled += 1
            else:
                fake.in_flight += 1
        if throttle:
            fake.record("THROTTLE POST %s" % self.path)
            return self.error(429, "TooManyRequestsException", "Rate Exceeded.")
        fake.record("OK POST %s" % self.path)
        try:
            status, out, extra, tail = fake.invoke(body)
        finally:
            with fake.lock:
                fake.in_flight -= 1
        if headers.get("x-amz-log-type") == "Tail":
            extra = extra + [("X-Amz-Log-Result", base64.b64encode(tail).decode())]
        self.reply(status, out, extra)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--region", required=True)
    p.add_argument("--access-key", required=True)
    p.add_argument("--secret", required=True)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--function", default="flcache-fn")
    p.add_argument("--account", default="123456789012")
    p.add_argument("--memory", type=int, default=1024)
    p.add_argument("--timeout-s", type=float, default=60)
    p.add_argument("--throttle", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=0)
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--log")
    args = p.parse_args()
    fake = Fake(args)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), InvokeHandler)
    srv.daemon_threads = True
    srv.fake = fake
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    print("PORT %d" % srv.server_address[1], flush=True)
    sys.stdin.read()  # until the test closes its end (or dies)
    srv.shutdown()
    fake.stop()


if __name__ == "__main__":
    main()
