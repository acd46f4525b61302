/* Private to the cold tier of the store: the tier's state and the raw
 * value helpers, shared by cold_tier.c (spill, fetch-back),
 * cold_tier_round.c (prefetch, a round's objects), cold_tier_raw.c (a
 * value's bytes in Redis) and cold_tier_stats.c (counters). Never
 * included outside cache/. */
#ifndef FLC_CACHE_COLD_TIER_INTERNAL_H
#define FLC_CACHE_COLD_TIER_INTERNAL_H

#include "cache/store_internal.h"

struct flc_tier {
    flc_cold_t *cold;
    flc_cold_t *own_cold;         /* opened from opts.cold_url by the store itself */
    flc_policy_t *pol;
    uint64_t maxmem, high, low;
    uint64_t est_used;
    flc_tier_stats_t st, flushed; /* counters, and their values at the last flush */
    int busy;                     /* inside make_room or prefetch: no recursion */
};

/* Redis's own cost per value for the estimate: dict entry, robj and sds
 * headers, plus allocator rounding (jemalloc size classes are up to 25%
 * apart). Overestimating only spills a little early. */
#define VALUE_OVERHEAD(n) (512u + (n) / 4)
#define MAX_VICTIMS 64

/* Redis's used_memory (INFO memory) into *used (cold_tier.c). */
int flc_tier_info_used(flc_store_t *s, uint64_t *used);

/* Reads the bytes of key (a string, or a hash of chunk fields "0".."n-1")
 * into a new malloc'd *buf (caller frees). FLC_ENOTFOUND when the key does
 * not exist, FLC_EDATA when a chunk is missing; *buf is NULL on failure. */
int flc_tier_read_raw(flc_store_t *s, const char *key, uint8_t **buf, size_t *len);

/* Writes bytes back under key unless the key exists (a newer value wins):
 * SET NX for a value of up to FLC_STORE_SPLIT chunks, else a hash of chunk
 * fields built under a tmp key and published with RENAMENX, the layout
 * put_shard uses. *written = 0 when the key already existed. */
int flc_tier_write_raw(flc_store_t *s, const char *key, const uint8_t *buf, size_t len,
                       int *written);

#endif
