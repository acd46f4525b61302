"""py_tls: the Python client over rediss:// (TLS), as the CLI takes it.

Makes a CA, another CA nobody trusts and a server certificate for localhost
with openssl in a temp dir, starts a redis-server with a TLS port only and a
password, and checks: a round pushed by two Python clients over
rediss://:pw@localhost:P?cacert=ca.pem is merged by `flcache aggregate`
(the C store over TLS) and pulled by Python; a C push over TLS is read
bit-exact; a server certificate from an untrusted CA is refused."""
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "python"))
from flcache import Store, FlcacheError, finish_aggregate  # noqa: E402
from flcache.testing import _free_port  # noqa: E402

BUILD = os.environ.get("FLCACHE_BUILD_DIR") or os.path.join(HERE, "..", "build")
FLCACHE = os.path.join(BUILD, "flcache")
HELPER = os.path.join(BUILD, "tests", "py_interop")
PW = "tls-pw"
EC = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"


class Tls(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not (os.access(FLCACHE, os.X_OK) and os.access(HELPER, os.X_OK)):
            raise unittest.SkipTest("build first")
        if shutil.which("openssl") is None:
            raise unittest.SkipTest("no openssl program")
        os.environ["FLCACHE_BIN"] = FLCACHE
        cls.dir = tempfile.mkdtemp(prefix="flcache-pytls-")
        d = cls.dir
        sh = ("openssl req -x509 {ec} -keyout ca.key -out ca.pem -days 2 -subj /CN=py-ca && "
              "openssl req -x509 {ec} -keyout ca2.key -out ca2.pem -days 2 -subj /CN=other && "
              "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.cnf && "
              "openssl req {ec} -keyout srv.key -out srv.csr -subj /CN=localhost && "
              "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
              "-out srv.pem -days 2 -extfile san.cnf").format(ec=EC)
        r = subprocess.run(sh, shell=True, cwd=d, capture_output=True, text=True)
        if r.returncode != 0:
            raise unittest.SkipTest("openssl could not make certificates: %s" % r.stderr)
        cls.port = _free_port()
        cls.srv = subprocess.Popen(
            ["redis-server", "--port", "0", "--tls-port", str(cls.port), "--bind", "127.0.0.1",
             "--tls-cert-file", d + "/srv.pem", "--tls-key-file", d + "/srv.key",
             "--tls-ca-cert-file", d + "/ca.pem", "--tls-auth-clients", "no",
             "--requirepass", PW, "--save", "", "--appendonly", "no", "--dir", d,
             "--logfile", d + "/redis.log"], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        cls.url = "rediss://:%s@localhost:%d?cacert=%s/ca.pem" % (PW, cls.port, d)
        for _ in range(200):
            try:
                Store(cls.url).close()
                break
            except FlcacheError:
                time.sleep(0.05)
        else:
            cls.tearDownClass()
            raise unittest.SkipTest("redis-server with TLS did not start (no TLS build?)")

    @classmethod
    def tearDownClass(cls):
        if cls.srv.poll() is None:
            cls.srv.kill()
        cls.srv.wait()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def test_round_over_tls(self):
        n, S, job = 50000, 2, "tlsjob"
        a, b = (np.random.default_rng(i).standard_normal(n).astype(np.float32) for i in (1, 2))
        with Store(self.url, chunk_bytes=8192) as s:
            p = s.aggregate(job, 1, ["a", "b"], n, num_shards=S, readers=1, wait=False)
            try:
                s.push_update(job, 1, "a", a, num_samples=1, num_shards=S)
                s.push_update(job, 1, "b", b, num_samples=1, num_shards=S)
                finish_aggregate(p)
            finally:
                if p.poll() is None:
                    p.kill()
            got = s.pull_model(job, 1)
        err = float(np.abs(got - (a.astype(np.float64) + b) / 2).max())
        self.assertLess(err, 1e-5)
        print("ok: round over TLS merged by flcache aggregate == mean (max err %.2g)" % err)

    def test_c_push_over_tls(self):
        v = np.random.default_rng(9).standard_normal(3001).astype(np.float32)
        with tempfile.NamedTemporaryFile(suffix=".f32") as f:
            f.write(v.tobytes())
            f.flush()
            r = subprocess.run([HELPER, "push", self.url, "tlsc", "1", "cc", "2", "4", f.name],
                               capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        with Store(self.url) as s:
            got = s.get_update("tlsc", 1, "cc", num_shards=2)
        self.assertEqual(got.tobytes(), v.tobytes())
        print("ok: C push over TLS read by Python bit-exact")

    def test_untrusted_ca_refused(self):
        bad = "rediss://:%s@localhost:%d?cacert=%s/ca2.pem" % (PW, self.port, self.dir)
        with self.assertRaises(FlcacheError) as cm:
            Store(bad)
        self.assertIn("certificate", str(cm.exception).lower())
        print("ok: refused: %s" % str(cm.exception)[:160])


if __name__ == "__main__":
    unittest.main(verbosity=2)
