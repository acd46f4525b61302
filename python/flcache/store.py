"""Store: a Python contributor and reader of an flcache job, speaking the
protocol of docs/protocol.md on redis-py (a single server over TCP, TLS or a
unix socket, or a Redis Cluster: key schema 2's hash tags route every
command of a shard to one node).

What a push writes is exactly what flcache's C contributors write
(cache/store_put.c): per shard one frame at fl:{T}:c:<c>:u:<r>, as one SET up
to 8 chunks or as a hash of chunk fields "0".."n-1" built under a tmp key
and RENAMEd into place (without the C writers' head field "h", which holds
a CRC-32C this module has no fast way to compute: readers take both), then the arrival script ARRIVE_IF_OPEN on the
client's own list; then the ModelUpdate record and the client's round
history. Only the client's own keys are written, so it works under the
client ACL role (docs/architecture.md, "Access control").
"""
import math
import os
import time

import numpy as np
import redis

from . import frame, keys
from ._proto import pb
from .errors import FlcacheError, FrameError, RoundClosed, Timeout
from .layout import Layout, flatten, unflatten
from .programs import Programs
from .url import parse as parse_url

CHUNK_DEFAULT = 256 << 10
SPLIT = 8                    # values over SPLIT chunks are written as a hash
HEAD_FIELD = "h"             # a hash's head field (cache/store_put_head.h)
HEAD_MAGIC = b"FLH1"
MAX_MSG_DEFAULT = 512 << 20

# cache/store_put.c's ARRIVE_IF_OPEN, byte for byte (docs/protocol.md):
# KEYS[1] the client's arrival list; ARGV: client, the shard's closed flag,
# the update's key, the ttl in ms (0: none). 1 = closed, 2 = value missing,
# 0 = announced.
ARRIVE_IF_OPEN = ("if redis.call('EXISTS', ARGV[2]) == 1 then return 1 end "
                  "if redis.call('EXISTS', ARGV[3]) == 0 then return 2 end "
                  "redis.call('RPUSH', KEYS[1], ARGV[1]) "
                  "if tonumber(ARGV[4] or '0') > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end "
                  "return 0")

class Store(Programs):
    """A connection to the cache named by url (the URLs of `flcache`)."""

    def __init__(self, url, chunk_bytes=CHUNK_DEFAULT, ttl_ms=0, max_msg_bytes=MAX_MSG_DEFAULT,
                 flcache_bin=None, socket_timeout=None):
        self.url_text = url
        self.url = parse_url(url)
        self.chunk = max(int(chunk_bytes), 4096)  # the first chunk holds a whole header
        self.ttl_ms = int(ttl_ms)
        self.max_msg = int(max_msg_bytes)
        self.flcache_bin = flcache_bin
        self._shards = {}
        self._tmp = 0
        u = self.url
        kw = dict(username=u.user or None, password=u.password or None,
                  socket_timeout=socket_timeout)
        if u.tls:
            kw.update(ssl=True, ssl_cert_reqs="required", ssl_check_hostname=True,
                      ssl_ca_certs=u.cacert or None, ssl_certfile=u.cert or None,
                      ssl_keyfile=(u.key or u.cert) or None)
        try:
            if u.kind == "unix":
                if u.cluster == "yes":
                    raise FlcacheError("cache URL %s: redis-py reaches a Redis Cluster over "
                                       "TCP only" % url)
                self.r = redis.Redis(unix_socket_path=u.path, db=u.db, **kw)
                self.cluster = False
            else:
                single = redis.Redis(host=u.host, port=u.port, db=u.db, **kw)
                self.cluster = u.cluster == "yes" or (
                    u.cluster == "" and single.info("cluster").get("cluster_enabled") == 1)
                if self.cluster:
                    single.close()
                    self.r = redis.RedisCluster(host=u.host, port=u.port, **kw)
                else:
                    self.r = single
            self.r.ping()
        except redis.RedisError as e:
            raise FlcacheError("cannot open the cache at %s: %s" % (self._safe_url(), e)) from e

    def _safe_url(self):
        u = self.url
        return ("unix://" + u.path) if u.kind == "unix" else "%s://%s:%d" % (
            "rediss" if u.tls else "redis", u.host, u.port)

    def close(self):
        self.r.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    # ---- the job's shard count ------------------------------------------

    def job_shards(self, job, asked=None):
        """The job's shard count S from its schema record (fl:{J/j}:schema,
        written by its mergers), else the S this store was first told, else
        asked. A job stored with another S, or another schema version, is
        refused."""
        keys.check_job(job)
        had = self._shards.get(job)
        if had is None:
            rec = self.r.hgetall(keys.job_key(job, "schema"))
            if rec:
                v = rec.get(b"version", b"").decode()
                if v != str(keys.SCHEMA_VERSION):
                    raise FlcacheError("job '%s' was stored with flcache key schema %s; this "
                                       "client reads schema %d" % (job, v or "?",
                                                                   keys.SCHEMA_VERSION))
                had = int(rec.get(b"shards", b"0"))
        if had and asked and had != asked:
            raise FlcacheError("job '%s' was stored with %d shards; this run asks %d"
                               % (job, had, asked))
        S = had or asked
        if not S:
            raise FlcacheError("job '%s' has no schema record yet (its mergers write it): "
                               "pass num_shards" % job)
        # Remembered for this store, as the C store does (flc_store_job_shards):
        # a job keeps one S.
        self._shards[job] = S
        return S

    # ---- contributing ----------------------------------------------------

    def push_update(self, job, round, client, update, num_samples, loss=None, metrics=None,
                    num_shards=None, labels=None, local_steps=0, local_epochs=0,
                    compute_ms=0.0):
        """Pushes one client's update for a round: a flat float32 vector (any
        array-like) or a state_dict (flattened in sorted-name order, its
        layout stored in the update's metadata). Writes the shard frames and
        arrival tokens the C mergers wait on, then the ModelUpdate record.
        Returns a dict (update_norm, bytes, shards). Raises RoundClosed when
        a shard's merger had already closed the round (the update stays for
        queries), FlcacheError naming what was wrong otherwise."""
        t0 = time.time()
        keys.check_job(job)
        keys.check_name(client, "client")
        round = int(round)
        if not 0 <= round <= 0xFFFFFFFF:
            raise FlcacheError("round %d is outside 0..4294967295" % round)
        layout = None
        if hasattr(update, "keys"):
            vec, layout = flatten(update)
        else:
            vec = np.ascontiguousarray(np.asarray(update, dtype=np.float32).ravel())
        n = vec.size
        bad = np.flatnonzero(~np.isfinite(vec))
        if bad.size:
            raise FlcacheError("update of client %s for round %d of job %s has %s at element "
                               "%d; not pushed" % (client, round, job,
                                                   "NaN" if np.isnan(vec[bad[0]]) else "Inf",
                                                   bad[0]))
        S = self.job_shards(job, num_shards)
        if n < S:
            raise FlcacheError("job %s: a model of %d floats cannot be split into %d shards"
                               % (job, n, S))
        norm = math.sqrt(float(np.dot(vec.astype(np.float64), vec.astype(np.float64))))
        created = int(time.time() * 1000)
        ns = int(num_samples)
        payload = memoryview(vec.astype("<f4", copy=False)).cast("B")
        shards, total_bytes = [], 0
        for k in range(S):
            off, cnt = keys.shard_range(n, S, k)
            sh = frame.Shard(job=job, round=round, client=client, shard=k, num_shards=S,
                             offset=off, count=cnt, model_size=n,
                             weight=float(ns) if ns else 1.0, num_samples=ns,
                             created_ms=created, update_norm=norm)
            head = frame.encode_header(sh)
            body = payload[4 * off:4 * (off + cnt)]
            if len(head) + len(body) > self.max_msg:
                raise FlcacheError("%s: %d bytes is over the message limit of %d"
                                   % (sh.describe(), len(head) + len(body), self.max_msg))
            tag = keys.shard_tag(job, k, S)
            shards.append((sh, tag, head, body))
            total_bytes += len(head) + len(body)
        closed = self._put_shards(shards)
        self._put_meta(job, round, client, ns, loss, metrics, norm, layout, labels,
                       local_steps, local_epochs, compute_ms, t0, created)
        if closed:
            raise RoundClosed("round %d of job %s is closed (shard%s %s): update of client %s "
                              "kept for queries but not merged"
                              % (round, job, "s" if len(closed) > 1 else "",
                                 ",".join(map(str, closed)), client))
        return {"update_norm": norm, "bytes": total_bytes, "shards": S,
                "layout": layout}

    def _pipe(self):
        return self.r.pipeline(transaction=False)

    @staticmethod
    def _check_replies(replies, what):
        for x in replies:
            if isinstance(x, Exception):
                raise FlcacheError("%s: %s" % (what, x))

    def _arrive(self, p, sh, tag, key):
        # execute_command, not eval(): redis-py 4.3's cluster pipeline has no
        # eval(), but routes EVAL by its declared key like any command.
        p.execute_command("EVAL", ARRIVE_IF_OPEN, 1,
                          keys.arrival_key(tag, sh.round, sh.client), sh.client,
                          keys.shard_key(tag, sh.round, "closed"), key, self.ttl_ms)

    def _put_shards(self, shards):
        """Writes the frames and announces them; returns the closed shards."""
        chunk = self.chunk
        p = self._pipe()
        plan = []   # per shard: ("set", n_replies) or ("hash", tmp, n_replies)
        for sh, tag, head, body in shards:
            key = keys.update_key(tag, sh.round, sh.client)
            total = len(head) + len(body)
            if total <= SPLIT * chunk:
                if self.ttl_ms:
                    p.psetex(key, self.ttl_ms, head + body)
                else:
                    p.set(key, head + body)
                self._arrive(p, sh, tag, key)
                plan.append(("set", key, None, 2))
            else:
                # Field "0" is one whole chunk: the header and the payload's
                # start; then chunk-sized fields "1".."n-1".
                self._tmp += 1
                tmp = "%s~tmp.%d.%d" % (key, os.getpid(), self._tmp)
                first = chunk - len(head)
                p.hset(tmp, "0", head + body[:first])
                p.pexpire(tmp, 600000)  # an orphan expires
                nrep = 2
                for i, off in enumerate(range(first, len(body), chunk), start=1):
                    p.hset(tmp, str(i), body[off:off + chunk])
                    nrep += 1
                plan.append(("hash", key, tmp, nrep))
        replies = p.execute(raise_on_error=False)
        at, failed = 0, None
        for kind, key, tmp, nrep in plan:
            mine = replies[at:at + nrep]
            at += nrep
            errs = [x for x in mine if isinstance(x, Exception)]
            if errs and failed is None:
                failed = "storing the update (key %s): %s" % (key, errs[0])
        if failed:
            for kind, key, tmp, _ in plan:
                if kind == "hash":  # best effort, as the C side: it expires anyway
                    try:
                        self.r.delete(tmp)
                    except redis.RedisError:
                        pass
            raise FlcacheError(failed)
        closed = set()
        at = 0
        for (sh, tag, _, _), (kind, key, tmp, nrep) in zip(shards, plan):
            if kind == "set" and replies[at + 1] == 1:
                closed.add(sh.shard)
            at += nrep
        if any(k == "hash" for k, _, _, _ in plan):
            p = self._pipe()
            for (sh, tag, _, _), (kind, key, tmp, _) in zip(shards, plan):
                if kind != "hash":
                    continue
                # same slot (the tag); redis-py's cluster pipeline blocks
                # rename() but routes the plain command by its keys
                p.execute_command("RENAME", tmp, key)
                if self.ttl_ms:
                    p.pexpire(key, self.ttl_ms)
                else:
                    p.persist(key)
                self._arrive(p, sh, tag, key)
            replies = p.execute(raise_on_error=False)
            self._check_replies(replies, "publishing the update")
            hashed = [sh for (sh, _, _, _), pl in zip(shards, plan) if pl[0] == "hash"]
            for i, sh in enumerate(hashed):
                if replies[3 * i + 2] == 1:
                    closed.add(sh.shard)
        return sorted(closed)

    def _put_meta(self, job, round, client, ns, loss, metrics, norm, layout, labels,
                  local_steps, local_epochs, compute_ms, t0, created):
        m = pb.ModelUpdate(job=job, round=round, client=client, num_samples=ns,
                           loss=float(loss) if loss is not None else 0.0,
                           local_steps=int(local_steps), local_epochs=int(local_epochs),
                           compute_ms=float(compute_ms), update_norm=norm, created_ms=created)
        for k, v in (metrics or {}).items():
            m.metrics[str(k)] = float(v)
        for k, v in (labels or {}).items():
            m.labels[str(k)] = str(v)
        if layout is not None:
            m.labels["layout"] = layout.to_json()
        m.comm_ms = (time.time() - t0) * 1000.0
        m.duration_ms = m.comm_ms + m.compute_ms
        k_um = keys.client_meta_key(job, client, round)
        p = self._pipe()
        if self.ttl_ms:
            p.set(k_um, m.SerializeToString(), px=self.ttl_ms)
        else:
            p.set(k_um, m.SerializeToString())
        p.zadd(keys.client_rounds_key(job, client), {str(round): round})
        self._check_replies(p.execute(raise_on_error=False),
                            "storing metadata of the update of client %s in round %d of job %s"
                            % (client, round, job))

    # ---- reading ----------------------------------------------------------

    def _read_value(self, key):
        """A frame stored as a string or a hash of chunk fields, or None."""
        t = self.r.type(key)
        if t == b"string":
            return self.r.get(key)
        if t == b"hash":
            # Chunk fields "0".."n-1", and from C writers the head field "h"
            # ("FLH1", CRC-32C of the payload, the frame's prefix and header:
            # what the query engine's stamps read), which is no chunk.
            n = self.r.hlen(key)
            head = self.r.hget(key, HEAD_FIELD)
            if head is not None:
                n -= 1
            parts = self.r.hmget(key, [str(i) for i in range(n)])
            if any(x is None for x in parts):
                raise FrameError("%s: chunk fields are not 0..%d" % (key, n - 1))
            buf = b"".join(parts)
            if head is not None and (head[:4] != HEAD_MAGIC or len(head) < 16 or
                                     head[8:] != buf[:len(head) - 8]):
                raise FrameError("%s: the head field does not repeat the frame's header" % key)
            return buf
        if t == b"none":
            return None
        raise FrameError("%s holds a %s, not a shard frame" % (key, t.decode()))

    def _read_shards(self, job, round, S, client, key_of):
        vec, n = None, None
        for k in range(S):
            key = key_of(keys.shard_tag(job, k, S))
            buf = self._read_value(key)
            what = ("shard %d of round %d of job %s" % (k, round, job) +
                    (" from client %s" % client if client else " (merged)"))
            if buf is None:
                raise FlcacheError("%s: no value at %s" % (what, key))
            sh = frame.decode(buf, self.max_msg)
            if (sh.job, sh.round, sh.client, sh.shard, sh.num_shards) != (
                    job, round, client, k, S):
                raise FrameError("%s: key %s holds %s of %d" % (what, key, sh.describe(),
                                                               sh.num_shards))
            if vec is None:
                n = sh.model_size
                vec = np.empty(n, dtype=np.float32)
            off, cnt = keys.shard_range(n, S, k)
            if sh.model_size != n or sh.offset != off or sh.count != cnt:
                raise FrameError("%s: holds %d floats at %d of %d, expected %d at %d of %d"
                                 % (what, sh.count, sh.offset, sh.model_size, cnt, off, n))
            vec[off:off + cnt] = sh.values
        return vec

    def get_update(self, job, round, client, num_shards=None):
        """A client's pushed update of a round as a flat float32 array
        (bit for bit what was pushed)."""
        keys.check_name(client, "client")
        S = self.job_shards(job, num_shards)
        return self._read_shards(job, round, S, client,
                                 lambda tag: keys.update_key(tag, round, client))

    def pull_model(self, job, round, timeout=60.0, layout=None, num_shards=None):
        """The merged model of a round: waits (BLPOP on each shard's done
        list, the wake-up C readers use; no polling) until the mergers wrote
        it, consuming one done token per shard, and reads it. A flat float32
        array, or a state_dict when layout is given (a Layout, or a
        state_dict to take it from). Timeout names the shards not merged."""
        S = self.job_shards(job, num_shards)
        t_end = time.time() + timeout
        for k in range(S):
            done = keys.shard_key(keys.shard_tag(job, k, S), round, "done")
            left = t_end - time.time()
            got = self.r.blpop([done], timeout=max(left, 0.01)) if left > 0 else None
            if got is None:
                raise Timeout("round %d of job %s: shard %d and %d more not merged within "
                              "%.1f s" % (round, job, k, S - 1 - k, timeout))
            token = got[1].decode(errors="replace")
            if not token.startswith("ok"):
                raise FlcacheError("round %d of job %s: merger of shard %d failed: %s"
                                   % (round, job, k, token))
        vec = self._read_shards(job, round, S, "",
                                lambda tag: keys.shard_key(tag, round, "agg"))
        if layout is None:
            return vec
        if not isinstance(layout, Layout):
            from .layout import layout_of
            layout = layout_of(layout)
        return unflatten(vec, layout)

    def rounds(self, job):
        """The job's rounds, ascending."""
        keys.check_job(job)
        return [int(x) for x in self.r.zrange(keys.job_key(job, "rounds"), 0, -1)]

    def _get_proto(self, key, cls, what):
        buf = self.r.get(key)
        if buf is None:
            raise FlcacheError("%s: not in the cache (key %s)" % (what, key))
        m = cls()
        try:
            m.ParseFromString(buf)
        except Exception as e:
            raise FlcacheError("%s: not a %s record: %s" % (what, cls.__name__, e)) from None
        return m

    @staticmethod
    def _as_dict(m):
        from google.protobuf.json_format import MessageToDict
        return MessageToDict(m, preserving_proto_field_name=True,
                             including_default_value_fields=True)

    def round_meta(self, job, round):
        """The round's RoundMeta (written by its mergers) as a dict."""
        keys.check_job(job)
        return self._as_dict(self._get_proto(keys.job_round_key(job, "meta", round),
                                             pb.RoundMeta, "metadata of round %d of job %s"
                                             % (round, job)))

    def record_round_metrics(self, job, round, metrics):
        """Adds metrics (e.g. test_accuracy, test_loss: what `flcache query
        history` shows) to a merged round's RoundMeta, as the simulation's
        driver does. A driver's write (the job's user, not a client's): call
        it after the round's mergers finished, which write the record."""
        keys.check_job(job)
        key = keys.job_round_key(job, "meta", round)
        m = self._get_proto(key, pb.RoundMeta, "metadata of round %d of job %s" % (round, job))
        for k, v in metrics.items():
            m.metrics[str(k)] = float(v)
        if self.ttl_ms:
            self.r.set(key, m.SerializeToString(), px=self.ttl_ms)
        else:
            self.r.set(key, m.SerializeToString())

    def update_meta(self, job, round, client):
        """A client's ModelUpdate record of a round as a dict."""
        keys.check_job(job)
        keys.check_name(client, "client")
        return self._as_dict(self._get_proto(
            keys.client_meta_key(job, client, round), pb.ModelUpdate,
            "metadata of the update of client %s in round %d of job %s" % (client, round, job)))

    def update_layout(self, job, round, client):
        """The Layout a client's state_dict update was flattened with."""
        m = self.update_meta(job, round, client)
        text = m.get("labels", {}).get("layout")
        if text is None:
            raise FlcacheError("update of client %s in round %d of job %s was a flat vector: "
                               "no layout" % (client, round, job))
        return Layout.from_json(text)
