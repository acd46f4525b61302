/* The top-k encoding's error feedback (issue 16 point 7): what a client left
 * out of its update, kept for its next update. A client function keeps
 * nothing between invocations, so the residual lives in the cache under the
 * client's own keys of each shard, fl:{T}:c:<c>:ef:<r> (raw float32, one per
 * round it was written in) with the index fl:{T}:c:<c>:ef (zset, score the
 * round): on the shard's node, writable by the client's ACL role
 * (the pattern of its own keys, docs/architecture.md). A client reads the newest residual of a round
 * before its own, so a round run again (resume after a crash) reads what
 * the first attempt read and writes the same. */
#ifndef FLC_CACHE_STORE_ENC_H
#define FLC_CACHE_STORE_ENC_H

#include <stddef.h>
#include <stdint.h>

#include "cache/store.h"

/* Client's residual of shard `shard` (of S) of job from the newest round
 * before `round` into dst[0..n), zeros when there is none; *from = that
 * round (0: none). FLC_EDATA when the stored residual is not n floats. */
int flc_store_resid_get(flc_store_t *s, const char *job, uint32_t S, uint32_t shard,
                        const char *client, uint32_t round, float *dst, size_t n,
                        uint32_t *from);

/* Stores v[0..n) as the client's residual of round and deletes those older
 * than `from` (the one it was computed from: kept while round may run
 * again). */
int flc_store_resid_put(flc_store_t *s, const char *job, uint32_t S, uint32_t shard,
                        const char *client, uint32_t round, const float *v, size_t n,
                        uint32_t from);

#endif
