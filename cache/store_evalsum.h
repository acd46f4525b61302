/* The cached evaluation partials of one shard of a round,
 * fl:{T}:r:<r>:evsum (T the shard's tag): what a query's shard worker adds
 * to every delta's first-layer sums on the job's evaluation set
 * (aggregator/query_evalcache.c owns the layout). On the shard's own tag,
 * so the value lives on the node of the updates it was computed from and a
 * worker placed there reads it locally; under the prefix fl:{J/, so a job's ACL
 * pattern covers it and removing the job removes it.
 *
 * Unlike the Gram partial (N^2 doubles) this value is about as large as the
 * updates of the shard (B x H floats per update: tens of MB at --hidden
 * 14000), so it is not one GET/SET through hiredis (the large-value trap of
 * docs/architecture.md): it is written as a hash of 1 MiB fields streamed
 * from the caller's memory under a tmp key and published by RENAME, and read
 * with pipelined HGETs straight into one buffer. */
#ifndef FLC_CACHE_STORE_EVALSUM_H
#define FLC_CACHE_STORE_EVALSUM_H

#include <stddef.h>
#include <stdint.h>

#include "cache/store.h"

/* Reads the cached value into a new buffer *blob of *len bytes, *cap bytes
 * from flc_big_alloc (fresh pages fault one by one on these VMs: tens of MB
 * of them cost more than reading the value); the caller frees it with
 * flc_big_free(*blob, *cap). FLC_ENOTFOUND when there is none. */
int flc_store_evalsum_get(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                          char **blob, size_t *len, size_t *cap);

/* Replaces the cached value with blob (len bytes), with the store's ttl.
 * Fails (NOPERM) for a read-only user; callers treat it as a cache. */
int flc_store_evalsum_put(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                          const void *blob, size_t len);

#endif
