/* The cold tier: an object store that holds the values spilled out of Redis.
 *
 * Two backends behind one API, chosen by URL:
 *   file:///abs/dir                   one file per object in dir (the embedded default)
 *   http://host:port  https://host    S3-compatible HTTP, path-style requests
 *                                     (<url>/<bucket>/<object>) signed with AWS SigV4
 *                                     by libcurl (CURLOPT_AWS_SIGV4)
 * S3 settings come from flc_cold_opts_t; the programs fill it from
 * FLCACHE_COLD_BUCKET, FLCACHE_COLD_REGION / AWS_REGION, AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN (cli/config.h).
 *
 * An object is the value's bytes exactly as Redis held them (a shard frame,
 * "FLS1"|hdr|floats) followed by a 16-byte trailer:
 *   "FLCK" | u32le CRC-32C of the bytes (base/crc32c.h) | u64le length of the bytes
 * Every read checks the trailer; a mismatch is FLC_ECHECKSUM and no bytes are
 * returned, so corrupt data never reaches a merge or a query.
 *
 * A put returns only once the object is durable in the backend (file: written,
 * optionally fsync'd, then renamed into place; S3: the server answered 200),
 * which is what lets the store delete the Redis copy afterwards.
 *
 * One flc_cold_t is one connection (one curl handle): use one per thread. */
#ifndef FLC_CACHE_COLD_H
#define FLC_CACHE_COLD_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

#define FLC_COLD_TRAILER 16u

typedef struct flc_cold flc_cold_t;

typedef struct flc_cold_opts {
    const char *bucket;        /* S3; NULL or "": "flcache" */
    const char *region;        /* S3; NULL or "": "us-east-1" */
    const char *access_key;    /* S3; required */
    const char *secret_key;    /* S3; required */
    const char *session_token; /* S3; NULL or "": none */
    int create_bucket;         /* S3: 1 = create the bucket when missing */
    int no_fsync;              /* file: 1 = skip fsync (tests, tmpfs); default fsyncs */
    unsigned timeout_ms;       /* S3 request timeout; 0: 30000 */
} flc_cold_opts_t;

typedef struct flc_cold_stats {
    uint64_t puts, gets, dels;        /* requests made */
    uint64_t misses;                  /* gets that found no object */
    uint64_t bytes_put, bytes_got;    /* object bytes moved (trailers included) */
} flc_cold_stats_t;

/* Opens the cold tier at url (file:// or http(s)://). For file:// the
 * directory is created when missing. opts may be NULL. Returns NULL and fills
 * *err on failure (bad URL, missing credentials, unreachable server). */
flc_cold_t *flc_cold_open(const char *url, const flc_cold_opts_t *opts, flc_err_t *err);

/* Frees c. NULL is a no-op. */
void flc_cold_close(flc_cold_t *c);

/* Stores len bytes under key (any Redis key; it is encoded into a safe object
 * name). Returns 0 only when the object is durable. */
int flc_cold_put(flc_cold_t *c, const char *key, const void *data, size_t len);

/* Reads the object of key, verifies its trailer and returns the bytes in a
 * new malloc'd *data (caller frees) of *len bytes. FLC_ENOTFOUND when there
 * is none, FLC_ECHECKSUM when it fails verification (*data stays NULL). */
int flc_cold_get(flc_cold_t *c, const char *key, uint8_t **data, size_t *len);

/* Deletes the object of key; a missing object is not an error. */
int flc_cold_del(flc_cold_t *c, const char *key);

/* Deletes every object whose key starts with key_prefix (all of one job:
 * "fl:{J/"), found by listing the backend (the directory; S3
 * ListObjectsV2 with the encoded prefix), so objects no index names any
 * more go too; file:// also removes tmp files a killed put left. dry_run:
 * only counts. *n objects and *bytes (their sizes, trailers included) are
 * what was (or would be) deleted. */
int flc_cold_del_prefix(flc_cold_t *c, const char *key_prefix, int dry_run, uint64_t *n,
                        uint64_t *bytes);

/* The last error of c. */
const flc_err_t *flc_cold_error(const flc_cold_t *c);
const char *flc_cold_errstr(const flc_cold_t *c);

/* 1 for file://, 0 for S3. */
int flc_cold_is_local(const flc_cold_t *c);

void flc_cold_get_stats(const flc_cold_t *c, flc_cold_stats_t *st);

/* Where the object of key lives: a file path (file://) or the request URL
 * (S3). For tests that damage an object on purpose. */
int flc_cold_locate(const flc_cold_t *c, const char *key, char *out, size_t outlen);

#endif
