/* The store: flcache's C API over one Redis node (hiredis).
 *
 * Shards are written as frames (shard_codec.h) under the key schema of
 * keys.h. Values larger than the chunk size are split: the writer pipelines
 * SET tmp <chunk0>, APPEND tmp <chunk i>..., and only after every reply is OK
 * renames tmp to the real key, so a reader never sees half a shard and a
 * writer killed mid-pipeline leaves only an expiring tmp key. Readers pipeline
 * GETRANGEs of one chunk each. Chunking exists because hiredis 0.14 moves its
 * whole buffer after every partial read or write: one 16 MB command runs 30x
 * slower than 64 chunks of 256 KB (DESIGN.md; bench/store measures it).
 *
 * Errors: every call returns 0 or a negative FLC_E* code and keeps a sentence
 * in the store (flc_store_errstr). A lost connection is re-established on the
 * next call; nothing aborts the process.
 *
 * A store is one connection: use one per thread. */
#ifndef FLC_CACHE_STORE_H
#define FLC_CACHE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "base/error.h"
#include "cache/shard_codec.h"
#include "proto/flcache.pb-c.h"

/* Reads move values in chunk-sized pieces (pipelined GETRANGE / HGET).
 * A value of up to FLC_STORE_SPLIT chunks is stored as one string; a bigger
 * one as a hash of chunk fields "0".."n-1" (see put_shard for why). */
#define FLC_STORE_CHUNK_DEFAULT (256u * 1024u)
#define FLC_STORE_SPLIT 8
#define FLC_STORE_MAX_MSG_DEFAULT ((size_t)512 << 20)

typedef struct flc_store flc_store_t;

typedef struct flc_store_opts {
    size_t chunk_bytes;          /* 0: $FLCACHE_CHUNK or 256 KiB */
    size_t max_msg_bytes;        /* 0: $FLCACHE_MAX_MSG or 512 MiB */
    unsigned connect_timeout_ms; /* 0: 5000 */
    unsigned io_timeout_ms;      /* 0: 30000 */
    uint64_t ttl_ms;             /* expiry of every shard and metadata key written; 0: none */
} flc_store_opts_t;

/* Processes using the store should ignore SIGPIPE (signal(SIGPIPE, SIG_IGN)):
 * hiredis writes with write(2), so a server that goes away mid-command would
 * otherwise kill the process instead of returning FLC_ECONN.
 *
 * Connects to url (redis://... or unix://..., see url.h), authenticates and
 * selects the db. opts may be NULL. Returns NULL and fills *err on failure. */
flc_store_t *flc_store_open(const char *url, const flc_store_opts_t *opts, flc_err_t *err);

/* Connects to $FLCACHE_REDIS; err when it is unset. */
flc_store_t *flc_store_open_env(const flc_store_opts_t *opts, flc_err_t *err);

/* Closes the connection and frees s. NULL is a no-op. */
void flc_store_close(flc_store_t *s);

/* The last error of s (code and sentence). */
const flc_err_t *flc_store_error(const flc_store_t *s);
const char *flc_store_errstr(const flc_store_t *s);

/* The URL s is connected to, password redacted. */
const char *flc_store_url(const flc_store_t *s);

size_t flc_store_chunk_bytes(const flc_store_t *s);
size_t flc_store_max_msg(const flc_store_t *s);

/* Changes the chunk size (bench/store varies it). */
void flc_store_set_chunk_bytes(flc_store_t *s, size_t chunk);

/* Bytes this store has sent and received as values (shards and metadata). */
uint64_t flc_store_bytes_written(const flc_store_t *s);
uint64_t flc_store_bytes_read(const flc_store_t *s);

int flc_store_ping(flc_store_t *s);

/* ---- tensor shards ---------------------------------------------------- */

/* Stores the update shard sh (sh->client set) at fl:{J/r/s}:u:<client>,
 * records the client in the shard's client set and the round in the job's
 * indexes, then pushes the client id on fl:{J/r/s}:arrivals, in that order,
 * so a merger woken by the arrival always finds the shard. */
int flc_store_put_update(flc_store_t *s, const flc_shard_t *sh);

/* As flc_store_put_update, but the arrival is announced only while the
 * shard's merger has not closed it (fl:{J/r/s}:closed, set by the merger
 * atomically with draining the arrivals list). *closed = 1 when it had: the
 * update is stored (kept for queries) but no merger will take it. */
int flc_store_put_update_if_open(flc_store_t *s, const flc_shard_t *sh, int *closed);

/* Stores the merged shard sh at fl:{J/r/s}:agg (sh->client ignored). */
int flc_store_put_merged(flc_store_t *s, const flc_shard_t *sh);

/* Reads an update shard into *out. When dst is not NULL and holds at least
 * the shard's count floats (dst_cap), values go there (out->values = dst,
 * not owned); otherwise out->values is a new owned array (flc_shard_release).
 * FLC_ENOTFOUND when there is no such update. */
int flc_store_get_update(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                         const char *client, flc_shard_t *out, float *dst, size_t dst_cap);

/* Reads the merged shard; same contract as flc_store_get_update. */
int flc_store_get_merged(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                         flc_shard_t *out, float *dst, size_t dst_cap);

/* Deletes one update shard (for retracting an update). */
int flc_store_del_update(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                         const char *client);

/* ---- notifications (Redis lists; waiters block in BLPOP, never poll) ---- */

/* Pushes value `copies` times on fl:{J/r/s}:<list> (list: "arrivals", "done"). */
int flc_store_notify(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                     const char *list, const char *value, unsigned copies);

/* Blocks until an element can be popped from fl:{J/r/s}:<list> or timeout_ms
 * passes (FLC_ETIMEOUT). The element is copied into out (NUL-terminated). */
int flc_store_wait(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                   const char *list, unsigned timeout_ms, char *out, size_t outlen);

/* ---- round and update metadata ------------------------------------------ */

/* Stores m at fl:{J}:meta:<r> and adds the round to the job's indexes. */
int flc_store_put_round_meta(flc_store_t *s, const Flcache__RoundMeta *m);

/* Reads round metadata; *out is freed with flcache__round_meta__free_unpacked(*out, NULL).
 * FLC_ENOTFOUND names the job and round when there is none. */
int flc_store_get_round_meta(flc_store_t *s, const char *job, uint32_t round,
                             Flcache__RoundMeta **out);

/* Stores per-update metadata u in fl:{J}:um:<r> (field = client) and adds
 * the round to the client's history fl:{J}:client:<c>. */
int flc_store_put_update_meta(flc_store_t *s, const Flcache__ModelUpdate *u);

/* Reads one update's metadata; free with flcache__model_update__free_unpacked. */
int flc_store_get_update_meta(flc_store_t *s, const char *job, uint32_t round,
                              const char *client, Flcache__ModelUpdate **out);

/* Reads the metadata of every update of a round: *out is an array of *n
 * messages, freed with flc_store_free_update_metas. */
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

int flc_store_list_jobs(flc_store_t *s, flc_strlist_t *out);

/* Rounds of a job in ascending order; *rounds is malloc'd (caller frees).
 * FLC_ENOTFOUND when the job is unknown. */
int flc_store_list_rounds(flc_store_t *s, const char *job, uint32_t **rounds, size_t *n);

/* Shard indexes written in a round, ascending; *shards malloc'd. */
int flc_store_list_shards(flc_store_t *s, const char *job, uint32_t round, uint32_t **shards,
                          size_t *n);

/* Clients that wrote any shard of a round, sorted. */
int flc_store_list_clients(flc_store_t *s, const char *job, uint32_t round, flc_strlist_t *out);

/* Rounds client took part in (from its history), ascending; *rounds malloc'd. */
int flc_store_client_rounds(flc_store_t *s, const char *job, const char *client,
                            uint32_t **rounds, size_t *n);

/* Deletes every key of a round (updates, merged shards, lists, metadata) and
 * removes it from the indexes. Uses the indexes, never KEYS or SCAN. */
int flc_store_delete_round(flc_store_t *s, const char *job, uint32_t round);

/* Sets (ttl_ms > 0) or removes (0) the expiry of every key of a round. */
int flc_store_expire_round(flc_store_t *s, const char *job, uint32_t round, uint64_t ttl_ms);

typedef struct flc_store_stats {
    uint64_t keys;          /* DBSIZE */
    uint64_t used_memory;   /* INFO memory used_memory */
    uint64_t maxmemory;     /* 0 = unlimited */
    char redis_version[32];
} flc_store_stats_t;

int flc_store_stats(flc_store_t *s, flc_store_stats_t *st);

/* ---- raw access for the layers above ------------------------------------ */

/* Runs one command given as argv (binary-safe) and returns its reply in *out
 * (caller frees with freeReplyObject). A Redis error reply is returned as
 * FLC_EPROTO with the server's message; *out is then NULL. */
int flc_store_command(flc_store_t *s, redisReply **out, int argc, const char **argv,
                      const size_t *argvlen);

/* printf-style variant of flc_store_command (hiredis format: %s, %b, %d...). */
int flc_store_commandf(flc_store_t *s, redisReply **out, const char *fmt, ...);

#endif
