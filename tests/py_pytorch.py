"""py_pytorch: a short real PyTorch federated run through flcache.

Runs examples/pytorch_fedavg.py on a tiny subset (3000 training and 1000 test
images, 10 clients, 4 per round, 2 rounds, 2 shards) on its own private
redis-server: K Python clients push state_dict deltas, `flcache aggregate`
merges them, the clients pull, and history/outliers/clusters queries answer
about the job. Checks the CNN learned (accuracy well above its initial one),
every query has a row per round or per client, and that the softmax baseline
of `flcache simulate` ran beside it."""
import json
import os
import subprocess
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
EXAMPLE = os.path.join(HERE, "..", "examples", "pytorch_fedavg.py")
BUILD = os.environ.get("FLCACHE_BUILD_DIR") or os.path.join(HERE, "..", "build")
DATA = "/usr/share/datasets/fashion-mnist"


class PyTorchRun(unittest.TestCase):
    def test_short_run(self):
        try:
            import torch  # noqa: F401
        except ImportError:
            self.skipTest("python3-torch is not installed")
        if not os.path.exists(os.path.join(DATA, "t10k-labels-idx1-ubyte.gz")):
            self.skipTest("no Fashion-MNIST in %s (dataset-fashion-mnist)" % DATA)
        env = dict(os.environ, FLCACHE_BIN=os.path.join(BUILD, "flcache"))
        env.pop("FLCACHE_REDIS", None)  # its own private server
        p = subprocess.run([sys.executable, EXAMPLE, "--rounds", "2", "--subset", "3000",
                            "--test-subset", "1000", "--clients", "10", "--per-round", "4",
                            "--local-epochs", "2", "--shards", "2", "--threads", "1",
                            "--job", "pytest"], env=env, capture_output=True, text=True,
                           timeout=240)
        print(p.stdout)
        self.assertEqual(p.returncode, 0, p.stderr)
        res = json.loads(p.stdout.strip().splitlines()[-1])
        self.assertEqual(res["query_history_rows"], 2)
        self.assertEqual(res["query_outliers_rows"], 4)
        self.assertEqual(res["query_clusters_rows"], 4)
        self.assertIn("softmax_accuracy", res)
        self.assertGreater(res["cnn_accuracy"], res["initial_accuracy"] + 0.1)
        print("ok: CNN %.3f after 2 rounds (initial %.3f; softmax baseline %.3f); queries "
              "answered" % (res["cnn_accuracy"], res["initial_accuracy"],
                            res["softmax_accuracy"]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
