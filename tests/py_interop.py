"""py_interop: the Python client against the C library on a real redis-server.

- keys: Python's shard tags and slots are the C library's (py_interop tag/slot);
- a Python push merged by the C mergers (`flcache aggregate`) equals a NumPy
  FedAvg to float rounding, with small values (one SET) and chunked ones (a
  hash of chunks), the merged model read by Python and by a C reader;
- a C push (flc_rs_push) read by Python is bit-exact, chunked or not;
- a round with one Python and one C contributor;
- pull_model blocks on the done tokens (no value before the mergers ran);
- the whole Python side works under the client ACL role, and writing
  another client's keys is refused."""
import os
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from flcache import Store, FlcacheError, finish_aggregate, keys  # noqa: E402
from flcache.testing import RedisServer  # noqa: E402

BUILD = os.environ.get("FLCACHE_BUILD_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "build")
HELPER = os.path.join(BUILD, "tests", "py_interop")
FLCACHE = os.path.join(BUILD, "flcache")
CHUNK = 4096  # small chunks: a 40 KB shard is over 8 chunks, stored as a hash


def helper(*args):
    r = subprocess.run([HELPER] + [str(a) for a in args], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError("py_interop %s: %s" % (args[0], r.stderr))
    return r.stdout


def c_push(url, job, rnd, client, S, ns, vec, chunk=CHUNK):
    with tempfile.NamedTemporaryFile(suffix=".f32") as f:
        f.write(vec.astype("<f4").tobytes())
        f.flush()
        helper("push", url, job, rnd, client, S, ns, f.name, chunk)


def c_pull(url, job, rnd, S, n):
    with tempfile.NamedTemporaryFile(suffix=".f32") as f:
        helper("pull", url, job, rnd, S, n, f.name, 20000)
        return np.fromfile(f.name, dtype="<f4")


def fedavg(vecs, ns):
    w = np.asarray(ns, np.float64)
    return (np.stack([v.astype(np.float64) for v in vecs]) * w[:, None]).sum(0) / w.sum()


def stop(p):
    """Ends an aggregate process a failed test left running."""
    if p.poll() is None:
        p.kill()
        p.communicate()


class Interop(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not (os.access(HELPER, os.X_OK) and os.access(FLCACHE, os.X_OK)):
            raise unittest.SkipTest("build first: %s and %s" % (HELPER, FLCACHE))
        os.environ["FLCACHE_BIN"] = FLCACHE
        cls.srv = RedisServer()
        cls.url = cls.srv.url

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()

    def store(self, url=None):
        return Store(url or self.url, chunk_bytes=CHUNK)

    def test_keys_match_c(self):
        for job, S in (("fmnist", 1), ("fmnist", 3), ("j.x-1", 12), ("a/g", 5), ("Z@+_", 40)):
            tags = helper("tag", job, S).split()
            slots = [int(x) for x in helper("slot", job, S).split()]
            self.assertEqual([keys.shard_tag(job, k, S) for k in range(S)], tags, job)
            self.assertEqual([keys.shard_slot(job, k, S) for k in range(S)], slots, job)
            self.assertEqual([keys.key_slot("fl:{%s}:r:1:agg" % t) for t in tags], slots)
        print("ok: tags and slots of 5 (job, S) pairs equal the C library's")

    def round_py(self, job, n, S, K=3):
        rng = np.random.default_rng(n)
        vecs = [rng.standard_normal(n).astype(np.float32) for _ in range(K)]
        ns = [100, 250, 40][:K]
        names = ["c%d" % i for i in range(K)]
        with self.store() as s:
            agg = s.aggregate(job, 1, names, n, num_shards=S, readers=2, wait=False)
            self.addCleanup(stop, agg)
            for c, v, w in zip(names, vecs, ns):
                s.push_update(job, 1, c, v, num_samples=w, loss=0.5, metrics={"acc": 0.9},
                              num_shards=S)
            rep = finish_aggregate(agg)
            got = s.pull_model(job, 1)
            self.assertEqual(s.rounds(job), [1])
            meta = s.round_meta(job, 1)
            um = s.update_meta(job, 1, "c1")
        want = fedavg(vecs, ns)
        err = np.abs(got.astype(np.float64) - want).max()
        self.assertLess(err, 1e-5, "max |merged - numpy fedavg|")
        self.assertEqual(sorted(meta["participants"]), names)
        self.assertEqual(um["num_samples"], "250")
        self.assertAlmostEqual(um["update_norm"], float(np.linalg.norm(vecs[1])), places=3)
        cgot = c_pull(self.url, job, 1, S, n)
        self.assertEqual(cgot.tobytes(), got.tobytes(), "C reader == Python reader")
        print("ok: %d floats, S=%d: merged by C == numpy fedavg (max err %.2g); C pull == "
              "Python pull; %d shard reports" % (n, S, err, len(rep["shards"])))

    def test_python_push_c_merge_small(self):
        self.round_py("pysmall", 1001, 3)

    def test_python_push_c_merge_chunked(self):
        self.round_py("pychunk", 30011, 2)  # 60 KB shards: hashes of 4 KB chunks

    def test_c_push_python_read_bit_exact(self):
        rng = np.random.default_rng(7)
        for job, n, S in (("csmall", 999, 2), ("cchunk", 40000, 3)):
            v = rng.standard_normal(n).astype(np.float32)
            v[:4] = [0.0, -0.0, 1e-45, 3.4028235e38]
            with self.store() as s:
                s.job_shards(job, S)
                c_push(self.url, job, 1, "cc", S, 5, v)
                got = s.get_update(job, 1, "cc", num_shards=S)
            self.assertEqual(got.tobytes(), v.tobytes(), job)
            print("ok: C push of %d floats in %d shards read by Python bit-exact" % (n, S))

    def test_python_push_c_read_bit_exact(self):
        v = np.random.default_rng(3).standard_normal(30000).astype(np.float32)
        with self.store() as s:
            s.push_update("pyread", 1, "p1", v, num_samples=3, num_shards=2)
            back = s.get_update("pyread", 1, "p1")
        self.assertEqual(back.tobytes(), v.tobytes())
        print("ok: Python push read back bit-exact")

    def test_mixed_round(self):
        job, n, S = "mixed", 5003, 2
        rng = np.random.default_rng(11)
        vp, vc = (rng.standard_normal(n).astype(np.float32) for _ in range(2))
        with self.store() as s:
            agg = s.aggregate(job, 1, ["py", "cc"], n, num_shards=S, readers=1, wait=False)
            self.addCleanup(stop, agg)
            s.push_update(job, 1, "py", vp, num_samples=30, num_shards=S)
            c_push(self.url, job, 1, "cc", S, 10, vc)
            finish_aggregate(agg)
            got = s.pull_model(job, 1)
        want = fedavg([vp, vc], [30, 10])
        err = np.abs(got - want).max()
        self.assertLess(err, 1e-5)
        print("ok: one Python and one C contributor merged == numpy fedavg (max err %.2g)" % err)

    def test_pull_blocks_until_merged(self):
        job, n = "blocking", 64
        v = np.arange(n, dtype=np.float32)
        out = {}
        with self.store() as s:
            s.push_update(job, 1, "c0", v, num_samples=1, num_shards=1)

            def pull():
                with self.store() as r:
                    t = time.time()
                    out["v"] = r.pull_model(job, 1, timeout=20, num_shards=1)
                    out["t"] = time.time() - t
            th = threading.Thread(target=pull)
            th.start()
            time.sleep(0.7)
            self.assertTrue(th.is_alive(), "pull returned before any merger ran")
            s.aggregate(job, 1, ["c0"], n, readers=1)
            th.join(20)
        self.assertGreater(out["t"], 0.6)
        np.testing.assert_array_equal(out["v"], v)
        print("ok: pull_model waited %.2f s on the done list, then read the model" % out["t"])

    def test_aggregate_usage_errors(self):
        env = dict(os.environ)
        env.pop("FLCACHE_REDIS", None)
        base = [FLCACHE, "aggregate", "--job", "u", "--round", "1", "--model-size", "10"]
        for args, env_url, words in (
                (["--expect", "a,b"], None, "FLCACHE_REDIS is not set"),
                (["--expect", "a,b:c"], self.url, "client name 'b:c'"),
                (["--expect", "a", "--shards", "11"], self.url, "cannot be split"),
                (["--expect", "a", "--rule", "nosuch"], self.url, "--rule")):
            e = dict(env, FLCACHE_REDIS=env_url) if env_url else env
            p = subprocess.run(base + args, env=e, capture_output=True, text=True)
            self.assertEqual(p.returncode, 2, p.stderr)
            self.assertIn(words, p.stderr)
            print("ok: aggregate %s: exit 2, %s" % (" ".join(args), p.stderr.strip()[:100]))

    def test_client_acl_role(self):
        job = "acljob"
        self.srv.cli("ACL", "SETUSER", "c1", "on", ">pw1", "%%R~fl:{%s/*" % job,
                     "~fl:{%s/*}:c:c1:*" % job, "+@all")
        self.srv.cli("ACL", "SETUSER", "c2", "on", ">pw2", "%%R~fl:{%s/*" % job,
                     "~fl:{%s/*}:c:c2:*" % job, "+@all")
        n, S = 20000, 2
        a, b = (np.full(n, x, np.float32) for x in (1.0, 3.0))
        url1 = "unix://c1:pw1@" + self.srv.sock
        url2 = "unix://%s?user=c2&password=pw2" % self.srv.sock
        with self.store() as s:
            agg = s.aggregate(job, 1, ["c1", "c2"], n, num_shards=S, readers=1, wait=False)
            self.addCleanup(stop, agg)
            with self.store(url1) as s1, self.store(url2) as s2:
                s1.push_update(job, 1, "c1", a, num_samples=1, num_shards=S)
                s2.push_update(job, 1, "c2", b, num_samples=1, num_shards=S)
                with self.assertRaises(FlcacheError) as cm:
                    s1.push_update(job, 1, "c2", a, num_samples=1, num_shards=S)
                self.assertIn("no permissions", str(cm.exception))
                print("ok: c1 writing c2's update refused: %s" % cm.exception)
                self.assertIsInstance(s1.rounds(job), list)  # reading the job is allowed
            finish_aggregate(agg)
            got = s.pull_model(job, 1)
        np.testing.assert_allclose(got, 2.0)
        print("ok: two clients under the client ACL role pushed; merged mean 2.0")


if __name__ == "__main__":
    unittest.main(verbosity=2)
