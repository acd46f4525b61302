/* The cached evaluation partials of a shard (query_evalcache.h): their
 * layout, the check that a cached value still fits, and the writer.
 *
 * A value is
 *   "FLE2" | u32 nrows | u64 set_id | u64 names | u64 B | u64 H | u64 L2
 *   | u64 stamp[nrows] (the clients' updates, then the merged shard)
 *   | row[nrows]: u8 status, u8 touches, u8 has_l, u8 0, u32 c0, u32 ncols,
 *     u32 0, u64 later
 *   | per row with status 1, in row order: B x ncols floats (columns c0..)
 *     when touches, then L2 floats when has_l
 * ("FLE1", before the mlp's W1 became unit-major, held B x H sums per row:
 * it no longer fits and is recomputed.)
 * Every float starts at a multiple of 4 bytes, so the rows are used where
 * they were read. Floats are stored as computed, so a warm answer is the
 * cold one bit for bit (query_eval.c folds them in the same order). */
#include "aggregator/query_evalcache.h"

#include <stdlib.h>
#include <string.h>

#include "base/bigbuf.h"
#include "base/error.h"
#include "cache/store_evalsum.h"

#define EV_MAGIC "FLE2"
#define HEAD 48
#define ROW 24

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

uint64_t flc_query_evcache_mix(uint64_t h, uint64_t w)
{
    h = (h ^ w) * 0x100000001b3ull;
    return h ^ (h >> 29);
}

/* 8 bytes a step: the inputs are B x 784 floats, hashed on every query. */
static uint64_t hash_words(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, b + i, 8);
        h = flc_query_evcache_mix(h, w);
    }
    return fnv(h, b + i, n - i);
}

uint64_t flc_query_evcache_set_id(int kind, size_t in, size_t H, size_t C, size_t L2, size_t B,
                                  const float *x, const int32_t *y)
{
    uint64_t d[6] = {(uint64_t)kind, in, H, C, L2, B};
    uint64_t h = hash_words(1469598103934665603ull, d, sizeof d);
    h = hash_words(h, x, B * in * sizeof *x);
    return hash_words(h, y, B * sizeof *y);
}

uint64_t flc_query_evcache_names(char *const *names, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = fnv(h, names[i], strlen(names[i]) + 1);
    return h;
}

static size_t head_len(size_t nrows)
{
    return HEAD + 8 * nrows + ROW * nrows;
}

static void put64(char *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static uint64_t get64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

int flc_query_evcache_get(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                          const flc_query_evkey_t *k, char **blob, size_t *len, size_t *cap,
                          flc_query_evrow_t *rows)
{
    *blob = NULL;
    char *b;
    size_t n, bcap;
    if (flc_store_evalsum_get(s, job, round, shard, &b, &n, &bcap) != FLC_OK)
        return FLC_ENOTFOUND;
    size_t hl = head_len(k->nrows);
    uint32_t nr;
    int fits = n >= hl && memcmp(b, EV_MAGIC, 4) == 0;
    if (fits) {
        memcpy(&nr, b + 4, 4);
        fits = nr == k->nrows && get64(b + 8) == k->set_id && get64(b + 16) == k->names &&
               get64(b + 24) == k->B && get64(b + 32) == k->H && get64(b + 40) == k->L2 &&
               memcmp(b + HEAD, k->stamps, 8 * k->nrows) == 0;
    }
    size_t at = hl;
    const char *rt = b + HEAD + 8 * k->nrows;
    for (size_t r = 0; fits && r < k->nrows; r++) {
        flc_query_evrow_t *w = &rows[r];
        memset(w, 0, sizeof *w);
        w->status = (unsigned char)rt[r * ROW];
        w->touches = (unsigned char)rt[r * ROW + 1];
        w->has_l = (unsigned char)rt[r * ROW + 2];
        memcpy(&w->c0, rt + r * ROW + 4, 4);
        memcpy(&w->ncols, rt + r * ROW + 8, 4);
        w->later = get64(rt + r * ROW + 16);
        if (w->status > 2 || (uint64_t)w->c0 + w->ncols > k->H ||
            (w->status == 1 && w->touches && w->ncols == 0)) {
            fits = 0;
            break;
        }
        if (w->status != 1)
            continue;
        size_t zn = w->touches ? k->B * w->ncols : 0;
        size_t need = zn + (w->has_l ? k->L2 : 0);
        if (need * sizeof(float) > n - at) {
            fits = 0;
            break;
        }
        w->Z = w->touches ? (const float *)(b + at) : NULL;
        w->L = w->has_l ? (const float *)(b + at + zn * sizeof(float)) : NULL;
        at += need * sizeof(float);
    }
    if (!fits || at != n) {
        flc_big_free(b, bcap);
        return FLC_ENOTFOUND;
    }
    *blob = b;
    *len = n;
    *cap = bcap;
    return FLC_OK;
}

int flc_query_evcache_begin(flc_query_evcache_t *c, const flc_query_evkey_t *k)
{
    memset(c, 0, sizeof *c);
    size_t hl = head_len(k->nrows);
    c->cap = hl + k->nrows * (k->B * k->H + k->L2) * sizeof(float);
    c->buf = flc_big_alloc(c->cap); /* zeroed: every row status 0 until added */
    if (c->buf == NULL)
        return FLC_ENOMEM;
    c->key = *k;
    c->key.stamps = NULL;
    memcpy(c->buf, EV_MAGIC, 4);
    uint32_t nr = (uint32_t)k->nrows;
    memcpy(c->buf + 4, &nr, 4);
    put64(c->buf + 8, k->set_id);
    put64(c->buf + 16, k->names);
    put64(c->buf + 24, k->B);
    put64(c->buf + 32, k->H);
    put64(c->buf + 40, k->L2);
    memcpy(c->buf + HEAD, k->stamps, 8 * k->nrows);
    c->rows_at = HEAD + 8 * k->nrows;
    c->len = hl;
    return FLC_OK;
}

void flc_query_evcache_row(flc_query_evcache_t *c, size_t r, const flc_query_evrow_t *row)
{
    if (c->buf == NULL || r >= c->key.nrows)
        return;
    char *rt = c->buf + c->rows_at + r * ROW;
    rt[0] = (char)row->status;
    rt[1] = (char)(row->status == 1 && row->touches);
    rt[2] = (char)(row->status == 1 && row->has_l);
    uint32_t c0 = row->touches ? row->c0 : 0, nc = row->touches ? row->ncols : 0;
    memcpy(rt + 4, &c0, 4);
    memcpy(rt + 8, &nc, 4);
    put64(rt + 16, row->later);
    if (row->status != 1)
        return;
    if (row->touches) {
        memcpy(c->buf + c->len, row->Z, c->key.B * nc * sizeof(float));
        c->len += c->key.B * nc * sizeof(float);
    }
    if (row->has_l) {
        memcpy(c->buf + c->len, row->L, c->key.L2 * sizeof(float));
        c->len += c->key.L2 * sizeof(float);
    }
}

size_t flc_query_evcache_len(const flc_query_evcache_t *c)
{
    return c->buf != NULL ? c->len : 0;
}

void flc_query_evcache_put(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                           flc_query_evcache_t *c)
{
    if (c->buf != NULL)
        flc_store_evalsum_put(s, job, round, shard, c->buf, c->len); /* best effort */
    flc_query_evcache_free(c);
}

void flc_query_evcache_free(flc_query_evcache_t *c)
{
    flc_big_free(c->buf, c->cap);
    memset(c, 0, sizeof *c);
}
