"""The key schema, version 2, as cache/keys.c builds it (docs/architecture.md,
"Key schema"; docs/protocol.md for the keys a contributor touches).

Shard s of a job split into S shards lives under the tag "J/s<s>~<k>", where
the salt k is the smallest number that puts the tag's Redis Cluster slot
(CRC16-XMODEM, as cache/slot.c) on flc_key_shard_slot(J, s, S). This module
is a line-by-line port of those functions, so a Python contributor writes
exactly the keys the C merger waits on; tests/py_keys.py compares them with
the C library's answers.
"""
import re

from .errors import FlcacheError

SLOT_COUNT = 16384
NAME_MAX = 64
SCHEMA_VERSION = 2

_NAME_RE = re.compile(r"^[A-Za-z0-9_.@+-]{1,64}$")


def _crc_table():
    t = []
    for b in range(256):
        c = b << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) if c & 0x8000 else (c << 1)
            c &= 0xFFFF
        t.append(c)
    return t


_CRC = _crc_table()


def crc16(data, crc=0):
    """CRC16-XMODEM of data (bytes or str), continued from register crc."""
    if isinstance(data, str):
        data = data.encode()
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC[((crc >> 8) ^ b) & 0xFF]
    return crc


def key_slot(key):
    """The Redis Cluster slot of a key (its hash tag when it has one)."""
    if isinstance(key, str):
        key = key.encode()
    o = key.find(b"{")
    if o >= 0:
        c = key.find(b"}", o + 1)
        if c > o + 1:
            key = key[o + 1:c]
    return crc16(key) & (SLOT_COUNT - 1)


def check_name(name, what):
    """Raises FlcacheError unless name is 1..64 characters of [A-Za-z0-9_.@+-]."""
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise FlcacheError("%s name %r: use 1..%d letters, digits and _.@+-"
                           % (what, name, NAME_MAX))


def check_job(job):
    """A job name as the store takes it: a name, or 'name/series'."""
    if isinstance(job, str) and "/" in job:
        a, _, b = job.partition("/")
        if len(job) > NAME_MAX or not _NAME_RE.match(a) or not _NAME_RE.match(b):
            raise FlcacheError("job name %r: a job's series is named '<job>/<series>', both "
                               "parts of letters, digits and _.@+-" % job)
        return
    check_name(job, "job")


def shard_range(n, S, s):
    """(offset, count) of shard s of a flat model of n floats cut into S
    (aggregator/rs_contrib.c flc_rs_shard_range): the first n % S shards are
    one longer."""
    base, rem = divmod(n, S)
    return s * base + min(s, rem), base + (1 if s < rem else 0)


def _balanced(o, S):
    for n in range(2, 17):
        cnt = [0] * n
        end = [SLOT_COUNT - 1 if i + 1 == n
               else int(float(i + 1) * SLOT_COUNT / n - 1 + 0.5) for i in range(n)]
        for s in range(S):
            p = (o + ((2 * s + 1) * SLOT_COUNT) // (2 * S)) % SLOT_COUNT
            i = 0
            while p > end[i]:
                i += 1
            cnt[i] += 1
        if max(cnt) - min(cnt) > 1:
            return False
    return True


_offsets = {}


def shard_slot(job, shard, S):
    """flc_key_shard_slot: the slot shard `shard` of S is placed on."""
    S = S or 1
    o = _offsets.get((job, S))
    if o is None:
        o = crc16(job) % SLOT_COUNT
        tries = 0
        while tries < SLOT_COUNT and not _balanced(o, S):
            o = (o + 1) % SLOT_COUNT
            tries += 1
        _offsets[(job, S)] = o
    cell = ((2 * shard + 1) * SLOT_COUNT) // (2 * S)
    return (o + cell) % SLOT_COUNT


_tags = {}


def shard_tag(job, shard, S):
    """flc_key_shard_tag: "J/s<s>~<k>" with the smallest k on shard_slot."""
    S = S or 1
    t = _tags.get((job, shard, S))
    if t is not None:
        return t
    want = shard_slot(job, shard, S)
    base = crc16("%s/s%d~" % (job, shard))
    k = 0
    while k < 50000000:
        if crc16(str(k), base) & (SLOT_COUNT - 1) == want:
            break
        k += 1
    else:
        k = 0
    t = "%s/s%d~%d" % (job, shard, k)
    _tags[(job, shard, S)] = t
    return t


# Builders, one per cache/keys.c function.
def job_key(job, what):
    return "fl:{%s/j}:%s" % (job, what)


def job_round_key(job, what, rnd):
    return "fl:{%s/j}:%s:%d" % (job, what, rnd)


def client_meta_key(job, client, rnd):
    return "fl:{%s/j}:c:%s:um:%d" % (job, client, rnd)


def client_rounds_key(job, client):
    return "fl:{%s/j}:c:%s:rounds" % (job, client)


def shard_key(tag, rnd, suffix):
    return "fl:{%s}:r:%d:%s" % (tag, rnd, suffix)


def update_key(tag, rnd, client):
    return "fl:{%s}:c:%s:u:%d" % (tag, client, rnd)


def arrival_key(tag, rnd, client):
    return "fl:{%s}:c:%s:a:%d" % (tag, client, rnd)
