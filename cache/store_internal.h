/* Private to cache/: the store's fields and the connection helpers shared by
 * the store's files: store_conn.c (connection, errors), store_raw.c (raw
 * commands, pipelines), store_put.c / store_get.c (shards), store_io.c
 * (zero-copy I/O), store_notify.c (lists), store_meta.c (metadata, indexes)
 * and the named operations of store_ops.h. */
#ifndef FLC_CACHE_STORE_INTERNAL_H
#define FLC_CACHE_STORE_INTERNAL_H

#include "cache/store.h"
#include "cache/store_ops.h"
#include "cache/store_cluster.h"
#include "cache/store_raw.h"
#include "cache/keys.h"
#include "cache/url.h"

#define FLC_STORE_JOBS 16

struct flc_store {
    redisContext *c;      /* NULL after a connection error: reconnect on next call */
    flc_url_t url;
    char url_text[300];   /* redacted */
    flc_store_opts_t opts;
    flc_err_t err;
    uint64_t bytes_written, bytes_read;
    uint64_t tmp_counter; /* unique names of tmp keys of this writer */
    char *scratch;        /* first chunk of a read lands here (no allocation per read) */
    size_t scratch_cap;
    char *spare_tails;    /* a part reader's tail block, given back for the next
                             (store_part.c; flc_big_alloc'd) */
    size_t spare_tails_cap;
    int part_window_out;  /* a part reader's window was sent and not yet
                             received: any other command would read its
                             replies as its own (store_part.c) */
    struct flc_tier *tier; /* cold tier and policy; NULL: none (cold_tier.c) */
    int qclass;           /* query class of the following reads (FLC_QC_*) */
    /* Redis Cluster routing (store_cluster.c); NULL on one server. Then c
     * is borrowed from its connection table: the node of the last command. */
    flc_store_cluster_t *cl;
    /* Jobs this store knows the shard count of (store_jobs.c): registered
     * by flc_store_job_shards or a put, or read from the job's schema
     * record; recorded = the record was checked (or written) through this
     * store. A full table drops its oldest entry (re-read when needed). */
    struct flc_store_job {
        char name[FLC_NAME_MAX + 1];
        uint32_t S;
        int recorded;
    } jobs[FLC_STORE_JOBS];
    unsigned njobs, jobs_next;
    /* The last merger open through this store: its lock key and holder
     * value (store_merger_lock.c). An open of the same key again through
     * the same store is a retry of that open (a store is used by one
     * thread at a time, so the first is over), and finds the lock its own. */
    char open_key[FLC_KEY_MAX];
    char open_holder[200];
};

/* ---- jobs and their shard tags (store_jobs.c) ---- */

/* The shard count of job: from the store's table, else from the job's
 * schema record (then remembered). FLC_ENOTFOUND naming the job when it has
 * none; FLC_EDATA, saying so, for a job stored with another key schema. */
int flc_store_job_S(flc_store_t *s, const char *job, uint32_t *S);

/* The tag of (job, shard) (keys.h flc_key_shard_tag) with the job's shard
 * count (flc_store_job_S). */
int flc_store_shard_tag(flc_store_t *s, const char *job, uint32_t shard, char *tag);

/* fl:{T}:r:<r>:<suffix>, fl:{T}:c:<c>:u:<r>, fl:{T}:c:<c>:a:<r> of the
 * shard's tag T; errors as flc_store_shard_tag. */
int flc_store_shard_key(flc_store_t *s, char *out, const char *job, uint32_t round,
                        uint32_t shard, const char *suffix);
int flc_store_update_key(flc_store_t *s, char *out, const char *job, uint32_t round,
                         uint32_t shard, const char *client);

/* When the job's keys are missing: FLC_EDATA with the schema-1 message when
 * the job was stored by an older flcache, else FLC_OK (nothing said). */
int flc_store_job_check_v1(flc_store_t *s, const char *job);

/* The round's roster (its expected clients), sorted; empty when none. */
int flc_store_roster(flc_store_t *s, const char *job, uint32_t round, flc_strlist_t *out);

/* FLC_ENOTFOUND saying whether the job is unknown (or of schema 1) or only
 * has no `what` for round. */
int flc_store_not_found_round(flc_store_t *s, const char *job, uint32_t round, const char *what);

/* Forgets what the store's table knows of job. */
void flc_store_job_drop(flc_store_t *s, const char *job);

/* ---- hooks of the cold tier (cold_tier.c), called only when s->tier ---- */

/* Before writing a value of `bytes`: keeps Redis under its limit. */
int flc_tier_before_put(flc_store_t *s, uint64_t bytes);

/* After a shard was written: tells the policy (and closes the round for a
 * merged shard). */
void flc_tier_after_put(flc_store_t *s, const flc_shard_t *sh, int merged, uint64_t bytes);

/* After a shard read: rc is get_shard's result. A hit is counted; a miss
 * (FLC_ENOTFOUND) is fetched back from the cold tier into *out (same
 * contract as flc_store_get_update). Returns the final result. */
int flc_tier_after_get(flc_store_t *s, int rc, const flc_obj_t *o, const char *what,
                       flc_shard_t *out, float *dst, size_t dst_cap);

/* An object was deleted: its cold copy goes too. */
void flc_tier_deleted(flc_store_t *s, const flc_obj_t *o);

/* 1 when o has a copy in the cold tier (a spilled update a listing must
 * still find), else 0. */
int flc_tier_has_cold(flc_store_t *s, const flc_obj_t *o);

/* A round is being deleted: the cold copies of its shards go too. */
int flc_tier_delete_round(flc_store_t *s, const char *job, uint32_t round);

/* Frees the tier state (after a last flush). */
void flc_tier_close(flc_store_t *s);

/* Appends what follows a merged shard's value in its publishing round trip
 * (store_put.c): the round and shard indexes unless its driver opened the
 * round, and copies done tokens (none when copies is 0); *ncmd counts the
 * replies. Shared with the streamed writer (store_put_stream.c). */
int flc_store_append_merged_tail(flc_store_t *s, const flc_shard_t *hdr, const char *tag,
                                 const char *key, int opened, const char *token,
                                 unsigned copies, int *ncmd);

/* Connects when there is no live connection. */
int flc_store_ensure(flc_store_t *s);

/* Called where an operation that reads every reply it caused has ended,
 * and before a read that must start in step: on a cluster, replies still
 * due (a failover's replay or an error path left them; seen 2026-11-29
 * after a push and its replication wait cut by a master kill, when the
 * next read got STRLEN's answer for HLEN) are forgotten with their
 * connections, so no command gets another's reply. Nothing on one server. */
void flc_store_in_step(flc_store_t *s, const char *after);

/* With the store's ttl (opts.ttl_ms), gives keys[0..n) that expiry (one
 * pipelined PEXPIRE each, one round trip); without one, does nothing. Every
 * index and record a write made goes through here, so a run given --ttl
 * and killed leaves nothing without an expiry (store_protocol.c). */
int flc_store_expire_written(flc_store_t *s, size_t n, const char *const *keys);

/* Runs one command (argv of argc NUL-terminated strings) that writes key,
 * and with the store's ttl a PEXPIRE of key in the same pipeline: both go
 * out in one write, so a SIGKILL cannot leave the key without its expiry
 * (a second round trip could: tests/test_ttl_kill.c). The command's reply
 * in *out (caller frees; NULL: dropped); error replies as by
 * flc_store_pipeline, then turned into an error naming what. */
int flc_store_run_expiring(flc_store_t *s, int argc, const char **argv, const char *key,
                           redisReply **out, const char *what);

/* Turns a hiredis context error into an FLC code and message about `what`,
 * and drops the connection so the next call reconnects. */
int flc_store_io_error(flc_store_t *s, const char *what);

/* Appends one command to the output buffer (not yet sent). */
int flc_store_append(flc_store_t *s, int argc, const char **argv, const size_t *lens);

/* Writes the whole output buffer to the socket. */
int flc_store_flush(flc_store_t *s, const char *what);

/* Reads the next reply into *r (caller frees). Redis error replies are
 * returned as replies; only I/O problems are errors here. */
int flc_store_read(flc_store_t *s, redisReply **r, const char *what);

/* Reads n replies, returning the first error reply as an error (all n are
 * consumed unless the connection is lost); *last (when not NULL) gets the
 * last reply's integer value, -1 when it is not an integer. */
int flc_store_read_replies(flc_store_t *s, int n, const char *what, long long *last);

/* Makes the store's scratch buffer hold at least n bytes (kept between
 * reads, so a read allocates nothing; store_get.c). */
int flc_store_grow_scratch(flc_store_t *s, size_t n);

/* FLC_EDATA naming what unless the header h says it is client's update
 * (client NULL: the merged shard) of (job, round, shard): a value is
 * believed only under the key it names (store_get.c). */
int flc_store_check_origin(flc_store_t *s, const flc_shard_t *h, const char *job, uint32_t round,
                           uint32_t shard, const char *client, const char *what);

/* One command on key with up to two more arguments (a2 only with a1),
 * reply in *r (NULL: dropped); store_index.c. */
int flc_store_key_command(flc_store_t *s, redisReply **r, const char *cmd, const char *key,
                          const char *a1, const char *a2);

/* Sets the socket's I/O timeout of the live connection (a blocking wait
 * must outwait its server-side timeout); no-op without a connection. */
void flc_store_set_timeout(flc_store_t *s, unsigned ms);

/* The spillable object behind a shard get or delete (for the cold tier);
 * client NULL: the merged shard. */
void flc_store_obj_of(flc_store_t *s, flc_obj_t *o, const char *job, uint32_t round, uint32_t shard,
                      const char *client);

/* BLPOP key for up to timeout_ms (the socket waits that much longer): *elem
 * is the reply, [key, element] (caller frees). FLC_ETIMEOUT when nothing
 * came, FLC_EPROTO on a reply of another shape. */
int flc_store_blpop(flc_store_t *s, const char *key, unsigned timeout_ms, redisReply **elem);

/* BLPOP over keys[0..n) (one slot on a cluster: routed by keys[0]); *elem
 * as flc_store_blpop, element[0] naming the list it came from. */
int flc_store_blpop_keys(flc_store_t *s, const char *const *keys, size_t n, unsigned timeout_ms,
                         redisReply **elem);

/* Sets an error from a Redis error reply (OOM, WRONGTYPE, NOAUTH, ...). */
int flc_store_reply_error(flc_store_t *s, const redisReply *r, const char *what);

/* A whole value (store_protocol.c). blob_get: GET key into a new buffer
 * (NUL-terminated, *len bytes); FLC_ENOTFOUND naming what when there is
 * none. blob_set: SET key blob, binary-safe, with the store's expiry. */
int flc_store_blob_get(flc_store_t *s, const char *key, const char *what, char **blob,
                       size_t *len);
int flc_store_blob_set(flc_store_t *s, const char *key, const void *blob, size_t len);

/* Most bytes of chunk replies a read has asked for and not read yet (the
 * window reader, store_part_window.c, and a whole read, store_get.c). The
 * rest is asked for as the replies before it are read, so redis-server is
 * always busy and at most this much waits in its reply buffers: asked for
 * at once, a 26 MB Gram window (bench/cluster) and a 134 MB merged shard
 * (bench/aggregate --large) were built whole there, in fresh pages that
 * it faulted in and freed for every read. */
#define FLC_STORE_READ_FLIGHT ((size_t)4 << 20)

/* Most pieces flc_store_send_pieces takes for its last argument. */
#define FLC_STORE_MAX_PIECES 8

struct iovec;

/* Sends argv[0..argc) followed by one last argument made of `pieces`,
 * writing the pieces from the caller's memory (no copy). Flushes pending
 * commands first so the order holds; read the reply as usual. */
int flc_store_send_pieces(flc_store_t *s, int argc, const char **argv,
                          const struct iovec *pieces, int npieces, const char *what);

/* Reads the next reply, which should be a bulk string or nil, copying the
 * string into dst (when it fits in cap) without allocating a reply; *len is
 * its length (0 for nil). Error replies become FLC errors; the connection
 * stays in step. */
int flc_store_read_into(flc_store_t *s, char *dst, size_t cap, size_t *len, const char *what);

#endif
