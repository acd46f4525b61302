"""Shard frames, the stored form of a tensor shard (docs/protocol.md):

    "FLS1" | u32 little-endian header length | TensorShard (protobuf) | payload

where the payload is `count` float32 values, little-endian, raw. This is
cache/shard_codec.c's format; decode() refuses what that decoder refuses
(bad magic, a header over 4096 bytes, a header that is not a TensorShard or
carries fields this proto does not define, inline values, bad names, shard
>= num_shards, offset + count > model_size, a length other than header +
4 * count) so a frame either means exactly what the C side means or is an
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
    if s.offset > s.model_size or s.count > s.model_size - s.offset:
        raise err("%s: elements %d..%d are outside the model of %d elements"
                  % (s.describe(), s.offset, s.offset + s.count, s.model_size))


def encode_header(s):
    """The frame's prefix and header (no payload) as bytes."""
    _check(s, FlcacheError)
    m = pb.TensorShard(job=s.job, round=s.round, client=s.client, shard=s.shard,
                       num_shards=s.num_shards, offset=s.offset, count=s.count,
                       model_size=s.model_size, weight=s.weight, num_samples=s.num_samples,
                       created_ms=s.created_ms, update_norm=s.update_norm)
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
              created_ms=m.created_ms, update_norm=m.update_norm)
    _check(s)
    flen = PREFIX + hl + 4 * s.count
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
        raise FrameError("%s: payload has %d floats, header says %d (frame %s)"
                         % (s.describe(), (len(buf) - off) // 4, s.count,
                            "truncated" if len(buf) < flen else "too long"))
    s.values = np.frombuffer(buf, dtype=_F32, count=s.count, offset=off).astype(np.float32)
    return s
