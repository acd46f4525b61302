"""Throwaway redis-servers for tests and examples: a single server on a unix
socket in a temp dir (like tests/harness.c's fixture), or a small Redis
Cluster on loopback ports. Both are stopped (and their dirs removed) by
stop() or on leaving a `with` block; nothing is written to disk but their
temp dirs. Used by tests/py_*.py and examples/pytorch_fedavg.py."""
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time


def _which(name):
    p = shutil.which(name) or ("/usr/bin/" + name if os.path.exists("/usr/bin/" + name)
                               else None)
    if p is None:
        raise RuntimeError("%s not found: install redis-server (Debian: redis-server, "
                           "redis-tools)" % name)
    return p


def _wait_ping(args, what, proc, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %d at start" % (what, proc.returncode))
        r = subprocess.run([_which("redis-cli")] + args + ["PING"], capture_output=True,
                           text=True)
        if r.stdout.strip() == "PONG":
            return
        time.sleep(0.05)
    raise RuntimeError("%s did not answer PING within %.0f s" % (what, timeout))


def _server(d, extra):
    return subprocess.Popen([_which("redis-server"), "--save", "", "--appendonly", "no",
                             "--dir", d, "--daemonize", "no", "--protected-mode", "no",
                             "--logfile", os.path.join(d, "redis.log")] + extra,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class RedisServer:
    """redis-server on a unix socket (no TCP). url: unix:///.../redis.sock"""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="flcache-py-")
        self.sock = os.path.join(self.dir, "redis.sock")
        self.proc = _server(self.dir, ["--port", "0", "--unixsocket", self.sock,
                                       "--unixsocketperm", "700"])
        try:
            _wait_ping(["-s", self.sock], "redis-server", self.proc)
        except Exception:
            self.stop()
            raise
        self.url = "unix://" + self.sock

    def cli(self, *args):
        """Runs one command with redis-cli; its stdout."""
        return subprocess.run([_which("redis-cli"), "-s", self.sock] + [str(a) for a in args],
                              capture_output=True, text=True, check=True).stdout

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.stop()


def _free_port():
    """A free loopback port p whose cluster bus port p + 10000 is free too
    (redis-server refuses ports over 55535 in cluster mode)."""
    rnd = random.Random()
    for _ in range(200):
        p = rnd.randrange(20000, 55000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", p))
                b.bind(("127.0.0.1", p + 10000))
            return p
        except OSError:
            continue
    raise RuntimeError("no free loopback port pair found")


class RedisCluster:
    """n masters (no replicas) on 127.0.0.1, slots split by redis-cli
    --cluster create (equal contiguous ranges). url: redis://127.0.0.1:<p>"""

    def __init__(self, n=3):
        self.dir = tempfile.mkdtemp(prefix="flcache-pycl-")
        self.procs, self.ports = [], []
        try:
            for i in range(n):
                port = _free_port()
                d = os.path.join(self.dir, str(i))
                os.mkdir(d)
                self.procs.append(_server(d, ["--port", str(port), "--bind", "127.0.0.1",
                                              "--cluster-enabled", "yes",
                                              "--cluster-config-file", "nodes.conf"]))
                self.ports.append(port)
            for p, port in zip(self.procs, self.ports):
                _wait_ping(["-p", str(port)], "cluster node %d" % port, p)
            subprocess.run([_which("redis-cli"), "--cluster", "create"] +
                           ["127.0.0.1:%d" % p for p in self.ports] + ["--cluster-yes"],
                           capture_output=True, text=True, check=True)
            end = time.time() + 20
            while time.time() < end:
                ok = all("cluster_state:ok" in subprocess.run(
                    [_which("redis-cli"), "-p", str(p), "CLUSTER", "INFO"],
                    capture_output=True, text=True).stdout for p in self.ports)
                if ok:
                    break
                time.sleep(0.1)
            else:
                raise RuntimeError("the cluster did not reach cluster_state:ok in 20 s")
        except Exception:
            self.stop()
            raise
        self.url = "redis://127.0.0.1:%d" % self.ports[0]

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.stop()
