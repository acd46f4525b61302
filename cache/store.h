/* The store: flcache's C API over one Redis node (hiredis).
 *
 * Shards are written as frames (shard_codec.h) under the key schema of
 * keys.h. A frame of up to FLC_STORE_SPLIT chunks is one SET, streamed from
 * the caller's memory (store_io.c). A bigger one is written as a hash of
 * chunk fields under a tmp key, and only after every reply is OK renamed to
 * the real key, so a reader never finds a half-written value and a writer
 * killed mid-pipeline leaves only an expiring tmp key. Readers pipeline
 * chunk-sized GETRANGEs / HGETs, copied straight into the destination.
 * One caveat: those chunk reads are separate commands, so a value rewritten
 * with different bytes of the same size while it is being read could come
 * back mixed. The protocol never does that (a retried push rewrites the same
 * bytes; a merged shard is written once per round), so the store does not
 * pay for a transaction around every read.
 *
 * Errors: every call returns 0 or a negative FLC_E* code and keeps a sentence
 * in the store (flc_store_errstr). A lost connection is re-established on the
 * next call; nothing aborts the process.
 *
 * A store is one connection: use one per thread.
 *
 * The layers above never see a Redis command or reply: this header declares
 * the shard store, store_ops.h the small named operations of the protocols
 * built on it (locks, reports, barriers, progress). Raw commands are in
 * store_raw.h, for cache/, tests/ and bench/ only. */
#ifndef FLC_CACHE_STORE_H
#define FLC_CACHE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "cache/cold.h"
#include "cache/cold_policy.h"
#include "cache/shard_codec.h"
#include "proto/flcache.pb-c.h"

/* Reads move values in chunk-sized pieces (pipelined GETRANGE / HGET).
 * A value of up to FLC_STORE_SPLIT chunks is stored as one string; a bigger
 * one as a hash of chunk fields "0".."n-1" and a small head field "h"
 * (see put_shard and store_put_head.h for why). */
#define FLC_STORE_CHUNK_DEFAULT (256u * 1024u)
#define FLC_STORE_SPLIT 8
#define FLC_STORE_MAX_MSG_DEFAULT ((size_t)512 << 20)

typedef struct flc_store flc_store_t;

/* A field left 0 / NULL takes the built-in default. The program fills these
 * from its configuration (cli/config.c: FLCACHE_CHUNK, FLCACHE_MAX_MSG,
 * FLCACHE_COLD and the S3 variables) and hands them down. */
typedef struct flc_store_opts {
    size_t chunk_bytes;          /* 0: 256 KiB */
    size_t max_msg_bytes;        /* 0: 512 MiB */
    unsigned connect_timeout_ms; /* 0: 5000 */
    unsigned io_timeout_ms;      /* 0: 30000 */
    uint64_t ttl_ms;             /* expiry of every shard and metadata key written; 0: none */
    const char *cold_url;        /* cold tier attached at open, fetch-back only
                                    (flc_store_attach_cold); NULL or "": none */
    const flc_cold_opts_t *cold_opts; /* its settings; NULL: built-in */
    /* Placement (issue 12): the cache node this process runs next to, and
     * the unix socket that reaches it; the store talks to that node over the
     * socket instead of TCP. NULL or "": none. */
    const char *local_node;      /* "host:port" as the cluster map names it */
    const char *local_sock;      /* its unix socket path */
    /* Replication (issue 12): after a push, wait until this many replicas
     * acknowledged the writes (Redis WAIT), at most wait_timeout_ms
     * (0: 1000), so an acknowledged update survives a failover. 0: no wait. */
    unsigned wait_replicas;
    unsigned wait_timeout_ms;
} flc_store_opts_t;

/* Where a thread runs (issue 12): a caller that places work next to the
 * cache node owning a shard passes one of these; enter() moves the calling
 * thread next to node_addr ("host:port" from the cluster map; on the
 * testbed, into that node's network namespace) and fills opts->local_node /
 * local_sock so stores opened afterwards by this thread reach the node over
 * its unix socket. Returns 0 or a negative FLC_E* with *e naming the node. */
typedef struct flc_place {
    int (*enter)(void *user, const char *node_addr, flc_store_opts_t *opts, flc_err_t *e);
    void *user;
} flc_place_t;

/* Where and how a role opens its store: what a function handler (the
 * aggregator, query, worker and client roles) is given by the program that
 * registers it (cli/fn_main.c builds one from the configuration), and what
 * an in-process caller passes instead. An event's "redis" field names the
 * URL for that one event; url is used when it does not. */
typedef struct flc_store_cfg {
    const char *url;       /* the cache (FLCACHE_REDIS); NULL: none */
    flc_store_opts_t opts; /* strings borrowed: they outlive every store opened */
} flc_store_cfg_t;

/* Processes using the store should ignore SIGPIPE (signal(SIGPIPE, SIG_IGN)):
 * hiredis writes with write(2), so a server that goes away mid-command would
 * otherwise kill the process instead of returning FLC_ECONN.
 *
 * Connects to url (redis://... or unix://..., see url.h), authenticates and
 * selects the db. opts may be NULL. Returns NULL and fills *err on failure. */
flc_store_t *flc_store_open(const char *url, const flc_store_opts_t *opts, flc_err_t *err);

/* Opens url, or sc->url when url is NULL, with sc's options (sc may be NULL:
 * no default URL, built-in options). FLC_EINVAL "no cache URL ..." when
 * neither names one; otherwise as flc_store_open. */
flc_store_t *flc_store_open_cfg(const flc_store_cfg_t *sc, const char *url, flc_err_t *err);

/* Closes the connection and frees s. NULL is a no-op. */
void flc_store_close(flc_store_t *s);

/* The last error of s (code and sentence). */
const flc_err_t *flc_store_error(const flc_store_t *s);
const char *flc_store_errstr(const flc_store_t *s);

/* The URL s is connected to, password redacted. */
const char *flc_store_url(const flc_store_t *s);

/* The URL s is connected to with its credentials, in a form flc_store_open
 * reads back: for another connection to the same server as the same user
 * (the query engine's shard workers). Never print it. FLC_EINVAL when out
 * (outlen bytes) is too small. */
int flc_store_url_full(const flc_store_t *s, char *out, size_t outlen);

size_t flc_store_chunk_bytes(const flc_store_t *s);

/* Changes the chunk size (bench/store varies it). */
void flc_store_set_chunk_bytes(flc_store_t *s, size_t chunk);

/* Bytes this store has sent and received as values (shards and metadata). */
uint64_t flc_store_bytes_written(const flc_store_t *s);
uint64_t flc_store_bytes_read(const flc_store_t *s);

int flc_store_ping(flc_store_t *s);

/* ---- jobs ------------------------------------------------------------------
 *
 * A job keeps one shard count S (docs/architecture.md, "Key schema"): where
 * shard s's keys live depends on it. Writers pass it with every shard (the
 * frame's num_shards); a caller that reads shard keys of a job and knows S
 * (a pull, a worker) says so here; other readers (queries, stats) take it
 * from the job's schema record fl:{J/j}:schema. */

/* Tells s that job has S shards (in memory, no command). FLC_EINVAL naming
 * both counts when s already knows another. job may be a series
 * "name/series" (flc_name_check_job). */
int flc_store_job_shards(flc_store_t *s, const char *job, uint32_t S);

/* Starts (or joins) job with S shards, as its merger or driver does: writes
 * the schema record (version and S) unless there is one, and refuses a job
 * stored with another S ("job 'J' was stored with 6 shards; this run asks
 * 12", FLC_EINVAL) or with key schema 1 (FLC_EDATA, saying how to go on).
 * One or two round trips the first time per store and job, none after. */
int flc_store_job_begin(flc_store_t *s, const char *job, uint32_t S);

/* ---- tensor shards ---------------------------------------------------- */

/* Stores the update shard sh (sh->client set) at fl:{T}:c:<client>:u:<r>
 * (T: shard s's tag), then pushes the client id on its arrival list
 * fl:{T}:c:<client>:a:<r> and adds the client to the round's roster and
 * the job's indexes, in that order, so a merger woken by the arrival always
 * finds the shard. This is a writer with the job's credentials (a driver,
 * an import, tests): it also begins the job (flc_store_job_begin). */
int flc_store_put_update(flc_store_t *s, const flc_shard_t *sh);

/* A client's push: stores n update shards (typically all shards of one
 * update) under the client's own keys only (value and arrival list; no job
 * index, so an ACL can confine the client to fl:{J/<tag>}:c:<client>:...). Each
 * arrival is announced only while the shard's merger has not closed it
 * (fl:{T}:r:<r>:closed, set by the merger atomically with draining the
 * arrival lists). closed[i] = 1 when it had: the update is stored (kept for
 * queries) but no merger will take it. One round trip where the values
 * allow: every shard is sent, then every reply read. */
int flc_store_put_updates_if_open(flc_store_t *s, const flc_shard_t *sh, size_t n, int *closed);

/* Stores the merged shard sh at fl:{T}:r:<r>:agg (sh->client ignored) and
 * indexes the round (with the job's credentials). */
int flc_store_put_merged(flc_store_t *s, const flc_shard_t *sh);

/* The same for a round its driver opened (flc_store_round_begin for every
 * shard: the round and shard indexes are written): the merged shard only,
 * so a merger's credentials need no write access to the job's indexes. */
int flc_store_put_merged_opened(flc_store_t *s, const flc_shard_t *sh);

/* flc_store_put_merged (opened 0) or _opened (1), followed in the same
 * round trip by `copies` done tokens on fl:{T}:r:<r>:done (RPUSH, with the
 * store's ttl): a reader woken by one finds the value written, since Redis
 * runs one connection's commands in order. For a merger that records
 * nothing between its merged shard and the wake-up (an ephemeral round). */
int flc_store_put_merged_done(flc_store_t *s, const flc_shard_t *sh, int opened,
                              const char *token, unsigned copies);

/* Waits for a done token of the merged shard (BLPOP fl:{T}:r:<r>:done, up
 * to timeout_ms) and reads the shard, in one round trip: the read is sent
 * behind the wait, and Redis runs it once the pop returned. The token goes
 * to token (cap bytes); when it does not start with "ok" (a failed merger
 * passes its error) nothing is read (out stays empty) and FLC_OK is
 * returned: the caller reads the token. FLC_ETIMEOUT when no token came.
 * Otherwise as flc_store_get_merged. With a cold tier: the wait, then the
 * read (two round trips). */
int flc_store_wait_get_merged(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                              unsigned timeout_ms, char *token, size_t cap, flc_shard_t *out,
                              float *dst, size_t dst_cap);

/* Reads an update shard into *out. When dst is not NULL and holds at least
 * the shard's count floats (dst_cap), values go there (out->values = dst,
 * not owned); otherwise out->values is a new owned array (flc_shard_release).
 * FLC_ENOTFOUND when there is no such update. */
int flc_store_get_update(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                         const char *client, flc_shard_t *out, float *dst, size_t dst_cap);

/* flc_store_get_update without decoding: an encoded payload (cache/encode.h)
 * stays as stored, checked (flc_enc_check), in out->values with
 * out->encoding and out->nnz set (a merger folds it block by block). dst
 * is used when it holds the payload or count floats, whichever is more. */
int flc_store_get_update_raw(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                             const char *client, flc_shard_t *out, float *dst, size_t dst_cap);

/* Reads the merged shard; same contract as flc_store_get_update. */
int flc_store_get_merged(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                         flc_shard_t *out, float *dst, size_t dst_cap);

/* Deletes one update shard (for retracting an update). */
int flc_store_del_update(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                         const char *client);

/* ---- notifications (Redis lists; waiters block in BLPOP, never poll) ---- */

/* Pushes value `copies` times on fl:{T}:r:<r>:<list> of shard s's tag T
 * (list: "done", "krumready"). */
int flc_store_notify(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                     const char *list, const char *value, unsigned copies);

/* Blocks until an element can be popped from fl:{T}:r:<r>:<list> or timeout_ms
 * passes (FLC_ETIMEOUT). The element is copied into out (NUL-terminated). */
int flc_store_wait(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                   const char *list, unsigned timeout_ms, char *out, size_t outlen);

/* ---- round and update metadata ------------------------------------------ */

/* Stores m at fl:{J/j}:meta:<r> and adds the round to the job's index of
 * rounds. */
int flc_store_put_round_meta(flc_store_t *s, const Flcache__RoundMeta *m);

/* Reads round metadata; *out is freed with flcache__round_meta__free_unpacked(*out, NULL).
 * FLC_ENOTFOUND names the job and round when there is none. */
int flc_store_get_round_meta(flc_store_t *s, const char *job, uint32_t round,
                             Flcache__RoundMeta **out);

/* Stores per-update metadata u at fl:{J/j}:c:<c>:um:<r> and adds the round
 * to the client's history fl:{J/j}:c:<c>:rounds: the client's own keys. */
int flc_store_put_update_meta(flc_store_t *s, const Flcache__ModelUpdate *u);

/* Reads one update's metadata; free with flcache__model_update__free_unpacked. */
int flc_store_get_update_meta(flc_store_t *s, const char *job, uint32_t round,
                              const char *client, Flcache__ModelUpdate **out);

/* Reads the metadata of every update of a round (the roster's clients
 * that stored some, by client name): *out is an array of *n messages,
 * freed with flc_store_free_update_metas. */
int flc_store_get_round_update_metas(flc_store_t *s, const char *job, uint32_t round,
                                     Flcache__ModelUpdate ***out, size_t *n);
void flc_store_free_update_metas(Flcache__ModelUpdate **v, size_t n);

/* ---- listing, deletion, expiry, stats ---------------------------------- */

typedef struct flc_strlist {
    char **items;
    size_t n;
} flc_strlist_t;

/* Appends a copy of str[0..len); FLC_ENOMEM on failure (list unchanged). */
int flc_strlist_add(flc_strlist_t *l, const char *str, size_t len);

/* Frees the strings and the array; the list is left empty. */
void flc_strlist_free(flc_strlist_t *l);

/* Every job with a schema record (SCAN on every master; series such as
 * J/g left out), sorted. */
int flc_store_list_jobs(flc_store_t *s, flc_strlist_t *out);

/* Rounds of a job in ascending order; *rounds is malloc'd (caller frees).
 * FLC_ENOTFOUND when the job is unknown. */
int flc_store_list_rounds(flc_store_t *s, const char *job, uint32_t **rounds, size_t *n);

/* Shard indexes written in a round, ascending; *shards malloc'd. */
int flc_store_list_shards(flc_store_t *s, const char *job, uint32_t round, uint32_t **shards,
                          size_t *n);

/* Clients of the round's roster with an update stored on any of its
 * shards (pipelined EXISTS on each shard's node), sorted; so a late update
 * of an expected client is found, an unexpected client's is not. */
int flc_store_list_clients(flc_store_t *s, const char *job, uint32_t round, flc_strlist_t *out);

/* Rounds client took part in (from its history), ascending; *rounds malloc'd. */
int flc_store_client_rounds(flc_store_t *s, const char *job, const char *client,
                            uint32_t **rounds, size_t *n);

/* Deletes every key of a round (updates, merged shards, lists, metadata) and
 * removes it from the indexes. Uses the indexes (shards, roster), never
 * KEYS or SCAN: the update of a client outside the roster is not found
 * (it expires with the store's ttl, when there is one). */
int flc_store_delete_round(flc_store_t *s, const char *job, uint32_t round);

/* Deletes (ttl_ms 0: UNLINK, and ZREM from the rounds index) or expires
 * (PEXPIRE ttl_ms) every key a reduce-scatter round of S shards and the
 * given clients can hold, without reading any index: the keys are known,
 * so it is one pipelined round trip (per node). For rounds whose roster
 * and shards the caller knows and that write no other index (SGD steps);
 * no cold tier copies, no client histories. */
int flc_store_drop_known_round(flc_store_t *s, const char *job, uint32_t round, uint32_t S,
                               const char *const *clients, size_t n, uint64_t ttl_ms);

/* Sets (ttl_ms > 0) or removes (0) the expiry of every key of a round. */
int flc_store_expire_round(flc_store_t *s, const char *job, uint32_t round, uint64_t ttl_ms);

/* With the store's ttl (opts.ttl_ms), gives the job's indexes that round r
 * touches (schema, rounds, clients, shards:<r>, roster:<r>) that expiry; a
 * no-op without one. The puts expire what they write themselves; this
 * renews the schema record, which is written (and expired) once per store. */
int flc_store_index_expire(flc_store_t *s, const char *job, uint32_t round);

typedef struct flc_store_stats {
    uint64_t keys;          /* DBSIZE */
    uint64_t used_memory;   /* INFO memory used_memory */
    uint64_t maxmemory;     /* 0 = unlimited */
    char redis_version[32];
} flc_store_stats_t;

int flc_store_stats(flc_store_t *s, flc_store_stats_t *st);

/* ---- cold tier and caching policy (cache/cold_tier.c) --------------------
 *
 * With a tier attached, the store keeps Redis under a memory limit itself:
 * before a shard is written it makes room by spilling the policy's victims
 * to the cold tier, and a victim leaves Redis only after the cold tier has
 * acknowledged its bytes (WATCH, read, cold put, then MULTI/DEL/EXEC, so a
 * value rewritten meanwhile is not dropped). A read of an update or merged
 * shard that is no longer in Redis fetches it back from the cold tier,
 * transparently and bit-exact (the policy decides whether it is re-warmed).
 * Without a tier every call behaves exactly as before. */

typedef struct flc_tier_opts {
    uint64_t maxmemory; /* bytes Redis may use; 0: CONFIG GET maxmemory (0 there: no limit) */
    double high;        /* start spilling above high * maxmemory; 0: 0.90 */
    double low;         /* spill down to low * maxmemory; 0: 0.80 */
} flc_tier_opts_t;

typedef struct flc_tier_stats {
    uint64_t maxmemory, used_estimate;   /* the limit, and usage as the store estimates it */
    uint64_t hot_bytes, cold_bytes;      /* of the objects the policy tracks */
    uint64_t hits[FLC_QC_COUNT];         /* shard reads served by Redis, per query class */
    uint64_t misses[FLC_QC_COUNT];       /* ... served by the cold tier */
    uint64_t spills, spill_bytes;        /* objects moved to the cold tier */
    uint64_t fetches, fetch_bytes;       /* objects read back from the cold tier */
    uint64_t rewarms, prefetches;        /* objects put back into Redis (on a miss / ahead) */
    uint64_t spill_skipped;              /* victims rewritten while spilling (kept) */
} flc_tier_stats_t;

/* Attaches a cold tier and a policy to s. Both are borrowed: they must
 * outlive s (close s first). opts may be NULL. Reads used_memory and, when
 * opts leave it 0, maxmemory from the server. policy may be NULL (fetch-back
 * only, nothing is spilled). */
int flc_store_attach_tier(flc_store_t *s, flc_cold_t *cold, flc_policy_t *policy,
                          const flc_tier_opts_t *opts);

/* Opens the cold tier at url with opts (NULL: built-in settings) and
 * attaches it to s (owned by s), fetch-back only until a policy is set.
 * flc_store_open does this itself with opts.cold_url, so every process
 * reading the store finds spilled values. 0 without doing anything when url
 * is NULL or "" or s already has a tier; otherwise the cold tier's error,
 * naming url. */
int flc_store_attach_cold(flc_store_t *s, const char *url, const flc_cold_opts_t *opts);

/* Sets (borrowed) the policy of s's tier: this store then keeps Redis under
 * its limit by spilling. FLC_EINVAL without a tier. */
int flc_store_set_policy(flc_store_t *s, flc_policy_t *policy);

/* 1 when a cold tier is attached. */
int flc_store_has_tier(const flc_store_t *s);

/* Tags the following shard reads of s with query class qc (FLC_QC_*) for
 * hit rates and for the policy; returns the previous class. */
int flc_store_set_query_class(flc_store_t *s, int qc);

/* This process's counters (zero without a tier). */
void flc_store_tier_stats(const flc_store_t *s, flc_tier_stats_t *st);

/* Adds this process's counters since the last flush to the shared hash
 * fl:tier in Redis (so `flcache store stats` sees every process). Also done
 * when the store is closed and after each round of spilling. */
int flc_store_tier_flush(flc_store_t *s);

/* Reads the shared counters of fl:tier (all processes). maxmemory and
 * used_estimate are left 0; hot/cold bytes are the shared estimates. */
int flc_store_tier_read(flc_store_t *s, flc_tier_stats_t *st);

/* Spills objects (policy order) until `need` bytes left Redis or there is
 * nothing left to spill. FLC_ENOMEM when nothing could be freed. */
int flc_store_make_room(flc_store_t *s, uint64_t need);

/* Spills one object now (spill before evict, see above). FLC_ENOTFOUND when
 * it is not in Redis. */
int flc_store_spill(flc_store_t *s, const flc_obj_t *o);

/* Tells the policy a round closed and runs its prefetch. Called by the store
 * itself when merged shards are written; callable by drivers too. */
int flc_store_round_closed(flc_store_t *s, const char *job, uint32_t round);

/* Registers with the policy every update and merged shard of a round that
 * other processes wrote (from the round's indexes, no KEYS/SCAN), so this
 * store can spill them too. */
int flc_store_track_round(flc_store_t *s, const char *job, uint32_t round);

/* The Redis client library the store is built on, e.g. "hiredis 0.14.1"
 * (for `flcache version`: only cache/ includes hiredis). */
const char *flc_store_client_version(void);

#endif
