"""Shard frames, the stored form of a tensor shard (docs/protocol.md):

    "FLS1" | u32 little-endian header length | TensorShard (protobuf) | payload

where the payload is `count` float32 values, little-endian, raw, or the
same values in the encoding the header's `encoding` field names (fp16, bf16,
int8 with a scale per 256-element block, top-k: cache/encode.h and
docs/protocol.md); decode() gives float32 whatever the encoding, computing
what the C reader computes bit for bit. This is cache/shard_codec.c's format; decode() refuses what that decoder refuses
(bad magic, a header over 4096 bytes, a header that is not a TensorShard or
carries fields this proto does not define, inline values, bad names, shard
>= num_shards, offset + count > model_size, a length other than header +
the payload size of its encoding; NaN/Inf in an encoded payload, int8
-128, top-k indexes not increasing or out of range) so a frame either means exactly what the C side means or is an
error naming the shard.
"""
import struct
from dataclasses import dataclass, field

import numpy as np

from ._proto import pb
from .errors import FrameError, FlcacheError
from .keys import check_job, check_name

MAGIC = b"FLS1"
PREFIX = 8
HEADER_MAX = 4096
_F32 = np.dtype("<f4")
# TensorShard.encoding values (cache/encode.h)
F32, FP16, BF16, INT8, TOPK = 0, 1, 2, 3, 4
ENCODINGS = {F32: "f32", FP16: "fp16", BF16: "bf16", INT8: "int8", TOPK: "topk"}
INT8_BLOCK = 256
_FLT_MAX = float(np.finfo(np.float32).max)


def payload_size(encoding, count, nnz):
    """Bytes of a payload of count elements in encoding (nnz for top-k)."""
    if encoding == F32:
        return 4 * count
    if encoding in (FP16, BF16):
        return 2 * count
    if encoding == INT8:
        return count + 4 * ((count + INT8_BLOCK - 1) // INT8_BLOCK)
    return 8 * nnz


@dataclass
class Shard:
    """One shard of a flat float32 model and its header fields."""
    job: str
    round: int
    client: str          # "" for a merged shard
    shard: int
    num_shards: int
    offset: int
    count: int
    model_size: int
    weight: float = 1.0
    num_samples: int = 0
    created_ms: int = 0
    update_norm: float = 0.0
    encoding: int = F32   # of the stored payload; values are always float32
    nnz: int = 0          # top-k: coordinates in the payload
    values: np.ndarray = field(default=None, repr=False)

    def describe(self):
        if self.client:
            return "shard %d of round %d of job %s from client %s" % (
                self.shard, self.round, self.job, self.client)
        return "merged shard %d of round %d of job %s" % (self.shard, self.round, self.job)


def _check(s, err=FrameError):
    try:
        check_job(s.job)
        if s.client:
            check_name(s.client, "client")
    except FlcacheError as e:
        raise err(str(e)) from None
    if s.num_shards == 0 or s.shard >= s.num_shards:
        raise err("%s: shard index %d is outside 0..%d"
                  % (s.describe(), s.shard, max(s.num_shards - 1, 0)))
    if s.encoding not in ENCODINGS:
        raise err("%s: unknown payload encoding %d" % (s.describe(), s.encoding))
    if (s.nnz > s.count) if s.encoding == TOPK else (s.nnz != 0):
        raise err("%s: nnz %d does not fit a %s payload of %d elements"
                  % (s.describe(), s.nnz, ENCODINGS[s.encoding], s.count))
    if s.offset > s.model_size or s.count > s.model_size - s.offset:
        raise err("%s: elements %d..%d are outside the model of %d elements"
                  % (s.describe(), s.offset, s.offset + s.count, s.model_size))


def encode_header(s):
    """The frame's prefix and header (no payload) as bytes."""
    _check(s, FlcacheError)
    m = pb.TensorShard(job=s.job, round=s.round, client=s.client, shard=s.shard,
                       num_shards=s.num_shards, offset=s.offset, count=s.count,
                       model_size=s.model_size, weight=s.weight, num_samples=s.num_samples,
                       created_ms=s.created_ms, update_norm=s.update_norm,
                       encoding=s.encoding, nnz=s.nnz)
    h = m.SerializeToString()
    if len(h) > HEADER_MAX:
        raise FlcacheError("%s: header of %d bytes is over %d" % (s.describe(), len(h),
                                                                  HEADER_MAX))
    return MAGIC + struct.pack("<I", len(h)) + h


def payload_bytes(values):
    """values as the frame's payload: float32 little-endian bytes."""
    return np.ascontiguousarray(values, dtype=_F32).tobytes()


def encode(s):
    """A whole frame (header and s.values) as bytes."""
    v = np.asarray(s.values)
    if v.size != s.count:
        raise FlcacheError("%s: %d values, header says %d" % (s.describe(), v.size, s.count))
    return encode_header(s) + payload_bytes(v)


def decode_header(buf, max_bytes=512 << 20):
    """Parses the prefix and header at the start of buf (bytes; may be only
    the first part of a frame). Returns (Shard without values, payload
    offset, whole frame length). Raises FrameError."""
    if len(buf) < PREFIX:
        raise FrameError("shard frame truncated: %d bytes, need at least %d" % (len(buf),
                                                                              PREFIX))
    if bytes(buf[:4]) != MAGIC:
        raise FrameError("not a shard frame: bad magic bytes %r (this client reads %r)"
                         % (bytes(buf[:4]), MAGIC))
    (hl,) = struct.unpack_from("<I", buf, 4)
    if hl > HEADER_MAX:
        raise FrameError("shard header claims %d bytes (limit %d): corrupt" % (hl, HEADER_MAX))
    if len(buf) < PREFIX + hl:
        raise FrameError("shard frame truncated inside its header (%d of %d bytes)"
                         % (len(buf), PREFIX + hl))
    m = pb.TensorShard()
    try:
        m.ParseFromString(bytes(buf[PREFIX:PREFIX + hl]))
    except Exception as e:  # DecodeError, or anything the parser raises
        raise FrameError("shard header is not a valid TensorShard protobuf: %s" % e) from None
    unknown = getattr(m, "UnknownFields", None)
    if unknown is not None and len(unknown()) > 0:
        raise FrameError("shard header carries %d field(s) proto/flcache.proto does not "
                         "define: written by a newer flcache?" % len(unknown()))
    if len(m.values) != 0:
        raise FrameError("shard frame carries inline values in its header")
    if len(m.job) > 64 or len(m.client) > 64:
        raise FrameError("shard header names are longer than 64 characters")
    s = Shard(job=m.job, round=m.round, client=m.client, shard=m.shard,
              num_shards=m.num_shards, offset=m.offset, count=m.count,
              model_size=m.model_size, weight=m.weight, num_samples=m.num_samples,
              created_ms=m.created_ms, update_norm=m.update_norm,
              encoding=m.encoding, nnz=m.nnz)
    _check(s)
    flen = PREFIX + hl + payload_size(s.encoding, s.count, s.nnz)
    if flen > max_bytes:
        raise FrameError("%s: %d floats is over the message limit of %d bytes"
                         % (s.describe(), s.count, max_bytes))
    return s, PREFIX + hl, flen


def decode(buf, max_bytes=512 << 20):
    """Decodes a whole frame; the Shard's values are a new float32 array."""
    if len(buf) > max_bytes:
        raise FrameError("shard frame of %d bytes is over the limit of %d" % (len(buf),
                                                                             max_bytes))
    s, off, flen = decode_header(buf, max_bytes)
    if len(buf) != flen:
        if s.encoding == F32:
            raise FrameError("%s: payload has %d floats, header says %d (frame %s)"
                             % (s.describe(), (len(buf) - off) // 4, s.count,
                                "truncated" if len(buf) < flen else "too long"))
        raise FrameError("%s: payload has %d bytes, header says %d (%d elements, %s; "
                         "frame %s)" % (s.describe(), len(buf) - off, flen - off, s.count,
                                        ENCODINGS[s.encoding],
                                        "truncated" if len(buf) < flen else "too long"))
    s.values = decode_payload(s, buf, off)
    s.encoding, s.nnz = F32, 0
    return s


def decode_payload(s, buf, off):
    """The float32 values of s's payload at buf[off:], checked as the C
    reader checks them (flc_enc_check) and decoded as it decodes."""
    n, what = s.count, s.describe()
    if s.encoding == F32:
        return np.frombuffer(buf, dtype=_F32, count=n, offset=off).astype(np.float32)
    if s.encoding in (FP16, BF16):
        h = np.frombuffer(buf, dtype="<u2", count=n, offset=off)
        mask = 0x7C00 if s.encoding == FP16 else 0x7F80
        bad = np.nonzero((h & mask) == mask)[0]
        if bad.size:
            raise FrameError("%s: %s element %d is NaN or Inf"
                             % (what, ENCODINGS[s.encoding], bad[0]))
        if s.encoding == FP16:
            return h.view("<f2").astype(np.float32)
        return (h.astype(np.uint32) << 16).view(np.float32).copy()
    if s.encoding == INT8:
        q = np.frombuffer(buf, dtype=np.int8, count=n, offset=off)
        nb = (n + INT8_BLOCK - 1) // INT8_BLOCK
        sc = np.frombuffer(buf, dtype=_F32, count=nb, offset=off + n)
        badb = np.nonzero(~((sc >= 0) & (sc <= _FLT_MAX / 128)))[0]
        if badb.size:
            raise FrameError("%s: int8 block %d has scale %g" % (what, badb[0], sc[badb[0]]))
        badq = np.nonzero(q == -128)[0]
        if badq.size:
            raise FrameError("%s: int8 element %d is -128 (outside -127..127)"
                             % (what, badq[0]))
        return (np.repeat(sc, INT8_BLOCK)[:n] * q.astype(np.float32)).astype(np.float32)
    k = s.nnz
    ix = np.frombuffer(buf, dtype="<u4", count=k, offset=off)
    v = np.frombuffer(buf, dtype=_F32, count=k, offset=off + 4 * k)
    if k and (ix[-1] >= n or (k > 1 and np.any(np.diff(ix.astype(np.int64)) <= 0))):
        raise FrameError("%s: topk indexes are not increasing or not below %d" % (what, n))
    if not np.all(np.isfinite(v)):
        raise FrameError("%s: topk value %d is NaN or Inf"
                         % (what, int(np.nonzero(~np.isfinite(v))[0][0])))
    out = np.zeros(n, dtype=np.float32)
    out[ix] = v
    return out
