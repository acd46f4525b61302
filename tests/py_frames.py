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
        # a field proto/flcache.proto does not define (number 16, varint 1;
        # 13 and 14 are the encoding's since issue 16)
        h = good[8:8 + hl] + bytes([(16 << 3) | 0x80, 0x01, 1])
        self.refuses(b"FLS1" + struct.pack("<I", len(h)) + h + good[8 + hl:], "does not define")

    def test_encode_checks(self):
        with self.assertRaises(FlcacheError):
            frame.encode(shard(AWKWARD, shard=2))
        with self.assertRaises(FlcacheError):
            frame.encode(shard(AWKWARD, count=3))
        print("ok: encode refuses a bad index and a count that is not the values'")


def encoded(values, encoding, payload, nnz=0):
    """A frame of `values`' shape whose payload is the given encoded bytes."""
    s = shard(values, encoding=encoding, nnz=nnz)
    return frame.encode_header(s) + payload


class EncodedFrames(unittest.TestCase):
    """Frames in the encodings of cache/encode.h decode to what the C reader
    gives (numpy's float16 and the bf16/int8/top-k layouts of
    docs/protocol.md), and bad payloads are refused."""
    X = np.array([0.5, -1.25, 3.0e-3, 1000.0, -7.0e-6, 0.0, 2.0, -65504.0], np.float32)

    def test_fp16(self):
        h = self.X.astype("<f2")
        back = frame.decode(encoded(self.X, frame.FP16, h.tobytes()))
        self.assertEqual(back.values.dtype, np.float32)
        self.assertEqual(back.values.tobytes(), h.astype(np.float32).tobytes())
        self.assertEqual(back.encoding, frame.F32)
        bad = h.copy().view("<u2")
        bad[2] = 0x7C00  # +Inf
        with self.assertRaisesRegex(FrameError, "NaN or Inf"):
            frame.decode(encoded(self.X, frame.FP16, bad.tobytes()))
        print("ok: fp16 frame decodes as float16 -> float32, Inf refused")

    def test_bf16(self):
        b = (self.X.view(np.uint32) >> 16).astype("<u2")  # truncation: any bf16 bits
        back = frame.decode(encoded(self.X, frame.BF16, b.tobytes()))
        want = (b.astype(np.uint32) << 16).view(np.float32)
        self.assertEqual(back.values.tobytes(), want.tobytes())
        print("ok: bf16 frame decodes as the upper halves of float32")

    def test_int8(self):
        x = np.linspace(-3, 3, 300).astype(np.float32)  # two blocks: 256 + 44
        sc = np.array([np.abs(x[:256]).max() / 127, np.abs(x[256:]).max() / 127], np.float32)
        q = np.round(x / np.repeat(sc, 256)[:300]).astype(np.int8)
        back = frame.decode(encoded(x, frame.INT8, q.tobytes() + sc.astype("<f4").tobytes()))
        self.assertTrue(np.all(np.abs(back.values - x) <= np.repeat(sc, 256)[:300] / 2 * 1.0001))
        q2 = q.copy()
        q2[7] = -128
        with self.assertRaisesRegex(FrameError, "-128"):
            frame.decode(encoded(x, frame.INT8, q2.tobytes() + sc.tobytes()))
        with self.assertRaisesRegex(FrameError, "payload has"):
            frame.decode(encoded(x, frame.INT8, q.tobytes()))  # scales missing
        print("ok: int8 frame within scale/2 of the values; -128 and a short payload refused")

    def test_topk(self):
        ix = np.array([1, 3, 6], "<u4")
        v = self.X[ix]
        back = frame.decode(encoded(self.X, frame.TOPK, ix.tobytes() + v.tobytes(), nnz=3))
        want = np.zeros_like(self.X)
        want[ix] = v
        self.assertEqual(back.values.tobytes(), want.tobytes())
        for bad in (np.array([3, 1, 6], "<u4"), np.array([1, 3, 8], "<u4")):
            with self.assertRaisesRegex(FrameError, "increasing"):
                frame.decode(encoded(self.X, frame.TOPK, bad.tobytes() + v.tobytes(), nnz=3))
        print("ok: topk frame: kept coordinates exact, the rest 0; bad indexes refused")

    def test_header_says_encoding(self):
        s = shard(self.X, encoding=frame.FP16)
        h = frame.encode_header(s)
        m = pb.TensorShard()
        m.ParseFromString(h[8:])
        self.assertEqual(m.encoding, frame.FP16)
        plain = frame.encode_header(shard(self.X))
        m2 = pb.TensorShard()
        m2.ParseFromString(plain[8:])
        self.assertEqual((m2.encoding, m2.nnz), (0, 0))
        with self.assertRaisesRegex(FlcacheError, "unknown payload encoding"):
            frame.encode_header(shard(self.X, encoding=9))
        print("ok: the header carries the encoding (field 13); float32 headers are as before")


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
