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
#include "cache/url.h"

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
    struct flc_tier *tier; /* cold tier and policy; NULL: none (cold_tier.c) */
    int qclass;           /* query class of the following reads (FLC_QC_*) */
    /* Redis Cluster routing (store_cluster.c); NULL on one server. Then c
     * is borrowed from its connection table: the node of the last command. */
    flc_store_cluster_t *cl;
};

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

/* A round is being deleted: the cold copies of its shards go too. */
int flc_tier_delete_round(flc_store_t *s, const char *job, uint32_t round);

/* Frees the tier state (after a last flush). */
void flc_tier_close(flc_store_t *s);

/* Connects when there is no live connection. */
int flc_store_ensure(flc_store_t *s);

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

/* Sets the socket's I/O timeout of the live connection (a blocking wait
 * must outwait its server-side timeout); no-op without a connection. */
void flc_store_set_timeout(flc_store_t *s, unsigned ms);

/* The spillable object behind a shard get or delete (for the cold tier);
 * client NULL: the merged shard. */
void flc_store_obj_of(flc_obj_t *o, const char *job, uint32_t round, uint32_t shard,
                      const char *client);

/* BLPOP key for up to timeout_ms (the socket waits that much longer): *elem
 * is the reply, [key, element] (caller frees). FLC_ETIMEOUT when nothing
 * came, FLC_EPROTO on a reply of another shape. */
int flc_store_blpop(flc_store_t *s, const char *key, unsigned timeout_ms, redisReply **elem);

/* Sets an error from a Redis error reply (OOM, WRONGTYPE, NOAUTH, ...). */
int flc_store_reply_error(flc_store_t *s, const redisReply *r, const char *what);

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
