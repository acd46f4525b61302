"""py_frames: shard frames and state_dict flattening, no server needed.

Frames round-trip bit for bit (including -0.0, denormals and the largest
float32), the header is the C layout ("FLS1", u32le length, TensorShard), and
every kind of frame the C decoder refuses is refused with a message naming
why. A state_dict flattens in sorted-name order and comes back exactly."""
import os
import struct
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
from flcache import frame, layout, FrameError, FlcacheError  # noqa: E402
from flcache._proto import pb  # noqa: E402


def shard(values, **kw):
    d = dict(job="j1", round=3, client="c1", shard=1, num_shards=2, offset=5,
             count=len(values), model_size=5 + len(values), weight=7.0, num_samples=7,
             created_ms=123, update_norm=2.5, values=np.asarray(values, np.float32))
    d.update(kw)
    return frame.Shard(**d)


AWKWARD = np.array([0.0, -0.0, 1e-45, -3.4028235e38, 3.4028235e38, 1.17549435e-38,
                    0.1, -7.25], dtype=np.float32)


class Frames(unittest.TestCase):
    def test_round_trip_bit_exact(self):
        s = shard(AWKWARD)
        buf = frame.encode(s)
        back = frame.decode(buf)
        self.assertEqual(back.values.tobytes(), AWKWARD.tobytes())
        for f in ("job", "round", "client", "shard", "num_shards", "offset", "count",
                  "model_size", "weight", "num_samples", "created_ms", "update_norm"):
            self.assertEqual(getattr(back, f), getattr(s, f), f)
        print("ok: %d awkward floats and 12 header fields round-trip" % AWKWARD.size)

    def test_layout_is_the_c_one(self):
        s = shard(AWKWARD)
        buf = frame.encode(s)
        self.assertEqual(buf[:4], b"FLS1")
        (hl,) = struct.unpack("<I", buf[4:8])
        m = pb.TensorShard()
        m.ParseFromString(buf[8:8 + hl])
        self.assertEqual((m.job, m.client, m.count, len(m.values)), ("j1", "c1", 8, 0))
        self.assertEqual(len(buf), 8 + hl + 4 * 8)
        self.assertEqual(buf[8 + hl:], AWKWARD.astype("<f4").tobytes())
        print("ok: FLS1 | u32le %d | TensorShard | %d payload bytes" % (hl, len(buf) - 8 - hl))

    def refuses(self, buf, words):
        with self.assertRaises(FrameError) as cm:
            frame.decode(buf)
        self.assertIn(words, str(cm.exception))
        print("ok: refused (%s)" % cm.exception)

    def test_refusals(self):
        good = frame.encode(shard(AWKWARD))
        (hl,) = struct.unpack("<I", good[4:8])
        self.refuses(b"FLS2" + good[4:], "bad magic")
        self.refuses(good[:6], "truncated")
        self.refuses(good[:4] + struct.pack("<I", 5000) + good[8:], "limit 4096")
        self.refuses(good[:-4], "truncated")
        self.refuses(good + b"\0\0\0\0", "too long")
        self.refuses(good[:4] + struct.pack("<I", 3) + b"\xff\xff\xff", "TensorShard")
        m = pb.TensorShard()
        m.ParseFromString(good[8:8 + hl])
        for change, words in ((dict(shard=2), "outside 0..1"),
                              (dict(model_size=6), "outside the model"),
                              (dict(job="a:b"), "job name"),
                              (dict(values=b"abcd"), "inline values")):
            m2 = pb.TensorShard()
            m2.CopyFrom(m)
            for k, v in change.items():
                setattr(m2, k, v)
            h = m2.SerializeToString()
            self.refuses(b"FLS1" + struct.pack("<I", len(h)) + h + good[8 + hl:], words)
        # a field proto/flcache.proto does not define (number 14, varint 1)
        h = good[8:8 + hl] + bytes([14 << 3, 1])
        self.refuses(b"FLS1" + struct.pack("<I", len(h)) + h + good[8 + hl:], "does not")

    def test_encode_checks(self):
        with self.assertRaises(FlcacheError):
            frame.encode(shard(AWKWARD, shard=2))
        with self.assertRaises(FlcacheError):
            frame.encode(shard(AWKWARD, count=3))
        print("ok: encode refuses a bad index and a count that is not the values'")


class Flatten(unittest.TestCase):
    def sd(self):
        rng = np.random.default_rng(1)
        return {"fc.weight": rng.standard_normal((3, 4)).astype(np.float32),
                "conv.bias": rng.standard_normal(2).astype(np.float32),
                "bn.num_batches_tracked": np.array(17, dtype=np.int64),
                "a.scale": np.float32(0.5) * np.ones((1, 2, 2), np.float32)}

    def test_order_and_round_trip(self):
        sd = self.sd()
        vec, lay = layout.flatten(sd)
        names = [e[0] for e in lay.entries]
        self.assertEqual(names, sorted(sd))
        self.assertEqual(lay.size, 12 + 2 + 1 + 4)
        self.assertEqual(vec[lay.entries[2][3]:lay.entries[2][3] + 2].tobytes(),
                         sd["conv.bias"].tobytes())
        back = layout.unflatten(vec, layout.Layout.from_json(lay.to_json()), torch_tensors=False)
        for k, v in sd.items():
            self.assertEqual(back[k].dtype, np.asarray(v).dtype, k)
            np.testing.assert_array_equal(back[k], v)
        print("ok: order %s, %d floats, dtypes and values back" % (names, lay.size))

    def test_insertion_order_does_not_matter(self):
        sd = self.sd()
        rev = dict(reversed(list(sd.items())))
        a, la = layout.flatten(sd)
        b, lb = layout.flatten(rev)
        self.assertEqual(a.tobytes(), b.tobytes())
        self.assertEqual(la, lb)
        print("ok: a reversed dict flattens to the same bytes")

    def test_torch_state_dict(self):
        try:
            import torch
        except ImportError:
            self.skipTest("no torch")
        torch.manual_seed(0)
        m = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2),
                                torch.nn.Flatten(), torch.nn.Linear(2 * 4 * 4, 3))
        m(torch.randn(4, 1, 6, 6))  # moves the BatchNorm buffers
        sd = m.state_dict()
        vec, lay = layout.flatten(sd)
        back = layout.unflatten(vec, lay)
        for k, v in sd.items():
            self.assertEqual(back[k].dtype, v.dtype, k)
            self.assertTrue(torch.equal(back[k], v), k)
        m2 = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2),
                                 torch.nn.Flatten(), torch.nn.Linear(2 * 4 * 4, 3))
        m2.load_state_dict(back)
        print("ok: torch state_dict of %d tensors (%d floats) back exactly, loads"
              % (len(sd), lay.size))


if __name__ == "__main__":
    unittest.main(verbosity=2)
