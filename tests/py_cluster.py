"""py_cluster: the Python client on a Redis Cluster (3 masters on loopback
ports, redis-py's RedisCluster). Key schema 2's hash tags route each shard's
frames, arrival script and RENAME to the node that owns its slot; the C
mergers (`flcache aggregate`, routing by the same slots) merge a round of
two Python clients with chunked and plain shards, and the Python reader
pulls it. Checks the shards really landed on more than one node."""
import os
import subprocess
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from flcache import Store, finish_aggregate, keys  # noqa: E402
from flcache.testing import RedisCluster  # noqa: E402

BUILD = os.environ.get("FLCACHE_BUILD_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "build")
FLCACHE = os.path.join(BUILD, "flcache")


def stop(p):
    """Ends an aggregate process a failed test left running."""
    if p.poll() is None:
        p.kill()
        p.communicate()


class Cluster(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.access(FLCACHE, os.X_OK):
            raise unittest.SkipTest("build first: %s" % FLCACHE)
        os.environ["FLCACHE_BIN"] = FLCACHE
        try:
            cls.cl = RedisCluster(3)
        except (RuntimeError, subprocess.CalledProcessError) as e:
            raise unittest.SkipTest("cannot start a local Redis Cluster: %s" % e)

    @classmethod
    def tearDownClass(cls):
        cls.cl.stop()

    def test_round_on_cluster(self):
        job, S = "pycl", 6
        rng = np.random.default_rng(5)
        for rnd, n in ((1, 3001), (2, 200003)):  # plain SETs, then hashes of chunks
            a, b = (rng.standard_normal(n).astype(np.float32) for _ in range(2))
            with Store(self.cl.url, chunk_bytes=8192) as s:
                self.assertTrue(s.cluster, "the URL was not recognised as a cluster")
                p = s.aggregate(job, rnd, ["a", "b"], n, num_shards=S, readers=1, wait=False)
                self.addCleanup(stop, p)
                s.push_update(job, rnd, "a", a, num_samples=1, num_shards=S)
                s.push_update(job, rnd, "b", b, num_samples=3, num_shards=S)
                finish_aggregate(p)
                got = s.pull_model(job, rnd)
                back = s.get_update(job, rnd, "b")
                nodes = {s.r.get_node_from_key(keys.update_key(keys.shard_tag(job, k, S),
                                                                rnd, "a")).port
                         for k in range(S)}
                meta = s.round_meta(job, rnd)
            want = (a.astype(np.float64) + 3 * b.astype(np.float64)) / 4
            err = float(np.abs(got - want).max())
            self.assertLess(err, 1e-5)
            self.assertEqual(back.tobytes(), b.tobytes())
            self.assertEqual(len(nodes), 3, "shards on nodes %s" % nodes)
            self.assertEqual(sorted(meta["participants"]), ["a", "b"])
            print("ok: round %d, %d floats in %d shards on %d nodes: merged == numpy "
                  "fedavg (max err %.2g), update read back bit-exact" % (rnd, n, S,
                                                                          len(nodes), err))


if __name__ == "__main__":
    unittest.main(verbosity=2)
