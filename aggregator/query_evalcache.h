/* The evaluation partials of one shard, cached beside it (issue 17's open
 * part): what a shard worker of query_eval.c gives every delta's
 * first-layer columns (B x the shard's columns) and later-layer floats, so an evaluation
 * query of a round whose updates have not changed reads these instead of
 * the updates and skips the sgemms.
 *
 * A cached value is used only when it was computed for the same rows (the
 * round's client names, then the aggregate), every update's stamp
 * (flc_store_update_stamps: length and header, so a rewritten update makes
 * it stale, as the Gram partials of query_gram.c), the merged shard's stamp
 * (so does a merged shard written again) and the same evaluation
 * set (kind, sizes, the B samples and labels used: flc_query_evcache_set_id).
 * Stored at fl:{T}:r:<r>:evsum (cache/store_evalsum.h), one per shard: a
 * query of another evaluation set or sample count replaces it. */
#ifndef FLC_AGGREGATOR_QUERY_EVALCACHE_H
#define FLC_AGGREGATOR_QUERY_EVALCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "cache/store.h"

/* What a cached value must have been computed for. */
typedef struct flc_query_evkey {
    uint64_t set_id;        /* flc_query_evcache_set_id */
    uint64_t names;         /* flc_query_evcache_names of the rows' clients */
    size_t nrows;           /* clients + 1 (the aggregate, last) */
    size_t B, H, L2;        /* samples, first-layer columns, later-layer floats */
    const uint64_t *stamps; /* nrows: the clients' update stamps, then the merged
                             * shard's (flc_store_merged_stamp) */
} flc_query_evkey_t;

/* One row of a shard's partials: status 0 (no update on this shard), 1
 * (read: Z, and L when has_l), 2 (not finite: left out); touches: the slice
 * reaches the first layer (Z, B x ncols products of columns c0.., moves);
 * later: its later-layer floats. */
typedef struct flc_query_evrow {
    unsigned char status, touches, has_l;
    uint32_t c0, ncols;
    uint64_t later;
    const float *Z, *L; /* into the value read (NULL when absent) */
} flc_query_evrow_t;

/* A value being built by a worker, row by row in order. */
typedef struct flc_query_evcache {
    char *buf;               /* flc_big_alloc(cap) */
    size_t len, cap, rows_at;
    flc_query_evkey_t key;
} flc_query_evcache_t;

/* Identity of an evaluation set as a query uses it: model kind and sizes,
 * the first B samples and their labels. */
uint64_t flc_query_evcache_set_id(int kind, size_t in, size_t H, size_t C, size_t L2, size_t B,
                                  const float *x, const int32_t *y);

/* One step of the digests here and of the evaluated numbers'
 * (query_evalres.c): h folded with the 64-bit word w. */
uint64_t flc_query_evcache_mix(uint64_t h, uint64_t w);

/* FNV-1a of the n names (with their NULs), the Gram cache's row check. */
uint64_t flc_query_evcache_names(char *const *names, size_t n);

/* Reads shard's cached value and checks it against k: rows[0..k->nrows)
 * point into *blob (*len bytes; the caller frees it with flc_big_free(*blob,
 * *cap)) when it fits. FLC_ENOTFOUND when there is none or it does not fit. */
int flc_query_evcache_get(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                          const flc_query_evkey_t *k, char **blob, size_t *len, size_t *cap,
                          flc_query_evrow_t *rows);

/* Starts a value for k (room for every row). FLC_ENOMEM only: then the
 * worker computes without caching. */
int flc_query_evcache_begin(flc_query_evcache_t *c, const flc_query_evkey_t *k);

/* Row r (rows added in order 0, 1, ...; a row never added stays status 0). */
void flc_query_evcache_row(flc_query_evcache_t *c, size_t r, const flc_query_evrow_t *row);

/* The bytes the value holds so far (0 when nothing is being written). */
size_t flc_query_evcache_len(const flc_query_evcache_t *c);

/* Writes the value beside the shard, best effort (a read-only user is
 * refused: it computes every time, with the same answers), and frees c. */
void flc_query_evcache_put(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                           flc_query_evcache_t *c);
void flc_query_evcache_free(flc_query_evcache_t *c);

#endif
