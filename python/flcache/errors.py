"""Exceptions of the flcache Python client. Every message names the thing
that was wrong (the shard, the round, the key), like the C side's flc_err_t."""


class FlcacheError(Exception):
    """Any failure of the flcache client."""


class FrameError(FlcacheError):
    """Bytes that are not a shard frame this client understands."""


class RoundClosed(FlcacheError):
    """The round's merger had closed a shard before the update arrived: the
    update is kept in the cache for queries, but not merged (C: FLC_ECLOSED)."""


class Timeout(FlcacheError):
    """A blocking wait (pull_model) ran out of time."""
