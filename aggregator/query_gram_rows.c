/* One shard's Gram partial in bounded memory: the products G += X X^T of
 * the round's updates of the shard (and the merged shard), read block of
 * coordinates after block (issue 14 goal 5).
 *
 * Why blocks: a worker that read every update whole held (N+1) x shard
 * floats (490 MB for FLStore's 10 clients of 44.5 MB; `flcache simulate`'s
 * in-process mergers derive the same partial at close and peaked at 625
 * MiB). A window [a, a+L) of every row is all one step needs, so memory is
 * (N+1) x L floats plus one chunk per row kept between windows
 * (store_part.h), L chosen from the budget.
 *
 * Why the results do not change: windows start on multiples of the 4096
 * columns of the kernel's blocks, so every block sees the same 4096 columns
 * as over whole rows and its float sums are added into the double partial
 * in the same order: the bits are those of whole rows
 * (flc_query_gram_of_rows), whatever the budget.
 *
 * How it keeps reading: the next window is asked for before the current
 * one is computed (flc_store_part_send), so redis-server copies it into its
 * reply buffers while this thread multiplies; every chunk is read once
 * whatever the window size (the reader's tails), and on one server the
 * replies go straight from the socket into the rows (store_part_direct.c).
 *
 * What cannot be read by window: an update stored encoded (fp16, top-k;
 * its bytes are not coordinates) or spilled to the cold tier is read whole
 * (flc_store_get_update, which decodes and asks the cold tier) and held for
 * the shard, outside the budget. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "aggregator/query_internal.h"
#include "base/bigbuf.h"
#include "base/log.h"
#include "cache/store_part.h"

#define GRAM_BLOCK 4096 /* columns per block: float sums over 4096 terms, then double */

/* Most bytes of one window (all its rows), whatever the budget: a window
 * waits in redis-server's reply buffers while the one before is computed,
 * and above ~8 MiB Redis's allocator handed it fresh pages every window
 * (FLStore's 44.5 MB shard of 11 rows: 109,000 page faults in redis-server
 * per query with 61 MB windows, 50,000 with 16 MiB, none with 8 MiB; its
 * HGETs took 1.4 ms each instead of 0.13). Smaller is faster down to about
 * 2 MiB: the first window of a shard is read without one computed behind
 * it, and a worker's windows are memory it touches first (bench/queries,
 * 25 MB, N = 10, 2026-11-30: 8 MiB 1.0-1.3 GB/s, 2 MiB 1.2-1.65, 1 MiB
 * 1.2-1.5; raw GETs 1.6-2.1). Past the first, a window is one round trip
 * hidden behind the one computed. */
#define GRAM_WINDOW_MAX ((size_t)2 << 20)

/* Floats of each row a window has at least, when the budget allows: with
 * many rows the 2 MiB above left 4096 floats (16 KiB) a row, and a query
 * of 101 rows over 1 Gbit/s links spent its time in round trips
 * (bench/cluster's query case, N = 100, 25 MB: central 24 s and next to
 * the data 7-8.6 s, against 13.8 and 2.4 s with whole rows). 101 rows of
 * 64 KiB are a 6.5 MB window, under the 8 MiB above which redis-server
 * faulted fresh pages in. */
#define GRAM_ROW_MIN ((size_t)16384)

static _Atomic size_t default_budget;

void flc_query_mem_budget_set(size_t bytes)
{
    default_budget = bytes;
}

size_t flc_query_mem_budget(void)
{
    size_t b = default_budget;
    return b ? b : FLC_QUERY_MEM_BUDGET_DEFAULT;
}

/* Up to this many rows a block's sums are one sgemv per row (row i against
 * rows i..m-1), above it one ssyrk. OpenBLAS's ssyrk packs the block twice
 * and runs its gemm kernel on whole tiles of the square, which at a few
 * rows costs more than the products: at 11 rows (FLStore's 10 clients and
 * the aggregate) it was 77% of a query process's CPU, a quarter of that
 * packing (perf, bench/queries, 2026-11-30). Timed on this machine over
 * 1628 blocks of 4096 columns, ssyrk against sgemv: 11 rows 76 and 24 ms;
 * 21 rows 125 and 78; 31 rows 243 and 165; 41 rows 257 and 290; 101 rows
 * 1212 and 1971. The choice depends on m alone, so whole rows and windows
 * of them still give the same bits. */
#define GRAM_GEMV_ROWS 32

void flc_query_gram_add_blocks(const float *M, size_t m, size_t ld, size_t cols, float *Gb,
                               double *P, unsigned char *nonfinite)
{
    for (size_t c0 = 0; c0 < cols; c0 += GRAM_BLOCK) {
        size_t bc = cols - c0 < GRAM_BLOCK ? cols - c0 : GRAM_BLOCK;
        if (m <= GRAM_GEMV_ROWS)
            for (size_t i = 0; i < m; i++) /* Gb[i][i..m) = rows i..m-1 . row i */
                cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)(m - i), (int)bc, 1.0f,
                            M + i * ld + c0, (int)ld, M + i * ld + c0, 1, 0.0f,
                            Gb + i * m + i, 1);
        else
            cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)m, (int)bc, 1.0f, M + c0,
                        (int)ld, 0.0f, Gb, (int)m);
        for (size_t i = 0; i < m; i++) {
            if (nonfinite != NULL && !isfinite(Gb[i * m + i]))
                nonfinite[i] = 1;
            for (size_t j = i; j < m; j++)
                P[i * m + j] += Gb[i * m + j];
        }
    }
}

size_t flc_query_gram_window(size_t budget, size_t m, size_t tails, size_t cnt)
{
    size_t L = budget > tails ? (budget - tails) / (m * sizeof(float)) : 0;
    size_t most = GRAM_WINDOW_MAX / (m * sizeof(float));
    most = most > GRAM_ROW_MIN ? most : GRAM_ROW_MIN;
    if (L > most)
        L = most;
    L -= L % GRAM_BLOCK;
    if (L < GRAM_BLOCK)
        L = GRAM_BLOCK; /* the floor: one block of every row */
    return L < cnt ? L : cnt;
}

/* How a row of the shard is read. */
enum { ROW_NONE, ROW_PART, ROW_WHOLE };

typedef struct row {
    int how;
    size_t part;    /* ROW_PART: index into the parts */
    flc_shard_t sh; /* ROW_WHOLE: the value, read whole */
} row_t;

typedef struct rows {
    size_t m, np, cnt;
    row_t *row;
    unsigned char *nonfinite; /* per row: a block's sum of its squares was NaN or Inf */
    flc_store_part_t *parts;
    float **dst; /* per part: where its window lands */
} rows_t;

static void rows_free(rows_t *r)
{
    for (size_t i = 0; r->row && i < r->m; i++)
        if (r->row[i].how == ROW_WHOLE)
            flc_shard_release(&r->row[i].sh);
    free(r->row);
    free(r->nonfinite);
    free(r->parts);
    free(r->dst);
}

/* Opens row i (client, or the merged shard when client is NULL) for
 * reading by window, or reads it whole when it cannot be (encoded, spilled).
 * Not found anywhere: ROW_NONE. The first row found sets the shard's size;
 * a client's row of another size is FLC_EDIM. The merged shard that fails
 * to read for any reason is left out (no aggregate), as before blocks. */
static int open_row(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                    const char *client, size_t i, rows_t *r, flc_err_t *e)
{
    row_t *w = &r->row[i];
    flc_store_part_t *p = &r->parts[r->np];
    uint64_t count = 0;
    int rc = flc_store_part_open(s, job, round, shard, client, p);
    if (rc == FLC_OK) {
        w->how = ROW_PART;
        w->part = r->np++;
        count = p->head.count;
    } else if (rc == FLC_ENOTFOUND || rc == FLC_EINVAL) {
        if (rc == FLC_EINVAL)
            FLC_DEBUG("query: %s: read whole", flc_store_errstr(s));
        rc = client ? flc_store_get_update(s, job, round, shard, client, &w->sh, NULL, 0)
                    : flc_store_get_merged(s, job, round, shard, &w->sh, NULL, 0);
        if (rc == FLC_ENOTFOUND || (rc != FLC_OK && client == NULL))
            return FLC_OK; /* ROW_NONE: did not write this shard / no aggregate */
        if (rc != FLC_OK) {
            *e = *flc_store_error(s);
            return rc;
        }
        w->how = ROW_WHOLE;
        count = w->sh.count;
    } else if (client == NULL) {
        return FLC_OK; /* a merged shard that cannot be read: no aggregate */
    } else {
        *e = *flc_store_error(s);
        return rc;
    }
    if (r->cnt == 0)
        r->cnt = (size_t)count;
    if (count != r->cnt) {
        if (client == NULL) { /* the aggregate's size decides first: unreachable */
            w->how = ROW_NONE;
            return FLC_OK;
        }
        return flc_err_set(e, FLC_EDIM, "client %s wrote %llu floats to shard %u, the shard "
                           "has %zu", client, (unsigned long long)count, shard, r->cnt);
    }
    return FLC_OK;
}

int flc_query_gram_compute(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                           flc_query_gram_t *g, double *P, unsigned char *bad, flc_err_t *e)
{
    size_t n = g->n, m = n + 1;
    rows_t r = {.m = m};
    r.row = calloc(m, sizeof *r.row);
    r.nonfinite = calloc(m, 1);
    r.parts = malloc(m * sizeof *r.parts);
    r.dst = malloc(m * sizeof *r.dst);
    float *Gb = malloc(m * m * sizeof *Gb);
    int rc = r.row && r.nonfinite && r.parts && r.dst && Gb ? FLC_OK
                                             : flc_err_set(e, FLC_ENOMEM, "out of memory");
    /* The merged shard first: it tells the shard's size. */
    rc = rc ? rc : open_row(s, job, round, shard, NULL, n, &r, e);
    for (size_t i = 0; rc == FLC_OK && i < n; i++)
        rc = open_row(s, job, round, shard, g->clients[i], i, &r, e);
    if (rc == FLC_OK && r.cnt == 0)
        rc = flc_err_set(e, FLC_ENOTFOUND, "round %u of job %s has nothing in shard %u", round,
                         job, shard);
    size_t cnt = r.cnt, tails = 0;
    for (size_t k = 0; rc == FLC_OK && k < r.np; k++)
        tails += flc_store_part_tail_bytes(s, &r.parts[k]);
    size_t budget = g->mem_budget ? g->mem_budget : flc_query_mem_budget();
    size_t L = rc == FLC_OK ? flc_query_gram_window(budget, m, tails, cnt) : 0;
    if (rc == FLC_OK && g->scratch_cap < m * L) {
        flc_big_free(g->scratch, g->scratch_cap * sizeof *g->scratch);
        g->scratch_cap = 0;
        g->scratch = flc_big_alloc(m * L * sizeof *g->scratch);
        if (g->scratch == NULL)
            rc = flc_err_set(e, FLC_ENOMEM, "out of memory for %zu rows of %zu floats", m, L);
        else
            g->scratch_cap = m * L;
    }
    float *M = g->scratch;
    flc_store_part_reader_t rd = {0};
    if (rc == FLC_OK && flc_store_part_reader_init(s, &rd, r.parts, r.np) != FLC_OK)
        rc = flc_err_set(e, FLC_ENOMEM, "out of memory");
    if (rc == FLC_OK) {
        for (size_t i = 0; i < m; i++) {
            if (r.row[i].how == ROW_PART)
                r.dst[r.row[i].part] = M + i * L;
            else if (r.row[i].how == ROW_NONE) /* zero once: nothing writes it */
                memset(M + i * L, 0, L * sizeof *M);
            if (r.row[i].how != ROW_NONE)
                g->bytes_read += cnt * sizeof(float);
        }
        FLC_DEBUG("query: shard %u of round %u of job %s: %zu rows of %zu floats in windows "
                  "of %zu (%zu read by window)", shard, round, job, m, cnt, L, r.np);
        if ((rc = flc_store_part_send(s, &rd, 0, L)) != FLC_OK)
            *e = *flc_store_error(s);
    }
    for (size_t a = 0; rc == FLC_OK && a < cnt; a += L) {
        size_t len = cnt - a < L ? cnt - a : L;
        rc = flc_store_part_recv(s, &rd, r.dst);
        if (rc == FLC_OK && a + len < cnt) /* Redis prepares the next window meanwhile */
            rc = flc_store_part_send(s, &rd, a + len, cnt - a - len < L ? cnt - a - len : L);
        if (rc != FLC_OK) {
            *e = *flc_store_error(s);
            break;
        }
        for (size_t i = 0; i < m; i++)
            if (r.row[i].how == ROW_WHOLE)
                memcpy(M + i * L, r.row[i].sh.values + a, len * sizeof *M);
        flc_query_gram_add_blocks(M, m, L, len, Gb, P, r.nonfinite);
    }
    flc_store_part_reader_free(s, &rd);
    if (rc == FLC_OK) {
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < i; j++)
                P[i * m + j] = P[j * m + i];
        /* A row with a NaN or Inf is zero, as if it had been zeroed whole
         * before: its row and column of sums go (each product involves two
         * rows only, so the others' never saw it); a client's is marked,
         * the aggregate's is just left out. Found without a pass of its
         * own: a NaN or Inf makes the block's sum of the row's squares NaN
         * or Inf (so does a finite row whose squares overflow a float,
         * which the answers leave out the same way: its norm is Inf). */
        for (size_t i = 0; i < m; i++) {
            if (!r.nonfinite[i])
                continue;
            for (size_t j = 0; j < m; j++)
                P[i * m + j] = P[j * m + i] = 0;
            if (i < n)
                bad[i] = 1;
        }
    }
    rows_free(&r);
    free(Gb);
    return rc;
}
