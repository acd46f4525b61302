/* Krum and Multi-Krum (Blanchard et al. 2017), split so that shards can
 * share the work.
 *
 * Krum needs the squared distance between every pair of whole updates. A
 * squared distance is a sum over coordinates, so each shard's merger
 * computes the partial k*k matrix of its slice (flc_merge_sqdist_partial),
 * the partials are summed (only k*k doubles move), one selection is made
 * from the sum (flc_merge_krum_select), and every shard then averages the
 * selected updates of its slice (flc_merge_mean_of).
 *
 * The partial matrix comes from a Gram matrix, D_ij = G_ii + G_jj - 2 G_ij,
 * built over blocks of the slice converted to double (BLAS dsyrk, or for
 * up to 32 updates a 4x4-tiled AVX-512 kernel, gram_avx512, or an AVX2
 * one, gram_avx2, and for up to 8 the fused kernel of merge_krum_fused.c,
 * which reads each update once and keeps every product in registers: the
 * same FMAs in the same order, so the same bits; tests/test_merge_kernels.c
 * holds the order as a plain loop). Each block is first centred on its
 * per-coordinate mean over the k updates: distances do not change under a
 * shift, and without it G_ii and G_jj of two close updates with large norms
 * would cancel to noise. Multi-Krum's mean of the selected updates has
 * flc_merge_wsum's bits, from merge_krum_fused.c's kernel where it runs. */
#include "aggregator/merge.h"
#include "aggregator/merge_internal.h"
#include "aggregator/merge_krum_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

/* Coordinates per dsyrk call: k rows of this many doubles stay in L2. */
#define GRAM_BLOCK FLC_KRUM_BLOCK

/* Block b..b+m of every update into rows (k rows of doubles, scaled by s),
 * centred on its per-coordinate mean when centre. Two passes over the
 * floats (the block of k updates stays in L1/L2): the mean's sums (update 0
 * first), then each row written once as (s_j u_j) - mean, the same values
 * as converting the rows and subtracting the mean from them in place, with
 * one write of the rows instead of three. With check, returns how many raw
 * values are NaN/Inf (counted in the first pass: no pass of its own). */
static inline unsigned load_block(const float *const *u, size_t k, size_t b, size_t m,
                                  size_t n, size_t stride, const double *s, int centre,
                                  int check, double *rows, double *mu)
{
    unsigned bad = 0;
    size_t ahead = b + m + stride <= n ? stride : n - b - m;
    double *restrict mm = mu;
    if (centre)
        for (size_t i = 0; i < m; i++)
            mm[i] = 0;
    for (size_t j = 0; j < k; j++) {
        const float *restrict p = u[j] + b;
        flc_merge_prefetch(p + m, ahead);
        if (check)
            bad += flc_merge_count_nonfinite(p, m);
        if (!centre)
            continue;
        if (s == NULL) /* 1.0 * x is x: the multiply is skipped, not the bits */
            for (size_t i = 0; i < m; i++)
                mm[i] += (double)p[i];
        else
            for (size_t i = 0; i < m; i++)
                mm[i] += s[j] * (double)p[i];
    }
    if (centre) {
        double inv = 1.0 / (double)k;
        for (size_t i = 0; i < m; i++)
            mm[i] *= inv;
    }
    for (size_t j = 0; j < k; j++) {
        double *restrict r = rows + j * stride;
        const float *restrict p = u[j] + b;
        double sj = s ? s[j] : 1.0;
        if (centre && s == NULL)
            for (size_t i = 0; i < m; i++)
                r[i] = (double)p[i] - mm[i];
        else if (centre)
            for (size_t i = 0; i < m; i++)
                r[i] = sj * (double)p[i] - mm[i];
        else
            for (size_t i = 0; i < m; i++)
                r[i] = sj * (double)p[i];
    }
    return bad;
}

/* Through BLAS dsyrk: any k, any CPU. Returns the NaN/Inf found (check). */
static unsigned gram_blas(const float *const *u, size_t k, size_t n, const double *s,
                          int centre, int check, double *rows, double *mu, double *g)
{
    for (size_t b = 0; b < n; b += GRAM_BLOCK) {
        size_t m = n - b < GRAM_BLOCK ? n - b : GRAM_BLOCK;
        if (load_block(u, k, b, m, n, GRAM_BLOCK, s, centre, check, rows, mu))
            return 1;
        cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)k, (int)m, 1.0, rows,
                    GRAM_BLOCK, 1.0, g, (int)k);
    }
    return 0;
}

#if defined(__x86_64__)
#include <immintrin.h>

/* For the few updates of a round (k <= SMALL_K): dsyrk is built for big
 * matrices, and for an 8 x 8 result per 1024-coordinate block its packing
 * and call cost more than the products (perf: 60% of Krum's time in
 * conversion, packing and dgemm setup; 0.15x saxpy). Here the block's
 * conversion and centring are compiled for AVX2 and the k(k+1)/2 dot
 * products run from L1/L2 with FMA. Sums are in another order than dsyrk's
 * (both are sums of the same double products).
 *
 * Every dot product of a block is defined by this order, whichever kernel
 * computes it: two 4-lane FMA accumulators a0 (coordinates x..x+3) and a1
 * (x+4..x+7) over x in steps of 8, then (l0 + l1) + (l2 + l3) of a0 + a1,
 * then the remaining m % 8 products added one by one (multiply, then add). */
#define SMALL_K 32

/* One dot product's tail and its store, shared by both kernels. */
static inline void dot_finish(double t, const double *ri, const double *rj, size_t x, size_t m,
                              double *gij)
{
    for (; x < m; x++)
        t += ri[x] * rj[x];
    *gij += t;
}

__attribute__((target("avx2,fma"))) static unsigned gram_avx2(const float *const *u, size_t k,
                                                              size_t n, const double *s,
                                                              int centre, int check,
                                                              double *rows, double *mu,
                                                              double *g)
{
    for (size_t b = 0; b < n; b += GRAM_BLOCK) {
        size_t m = n - b < GRAM_BLOCK ? n - b : GRAM_BLOCK;
        if (load_block(u, k, b, m, n, GRAM_BLOCK, s, centre, check, rows, mu))
            return 1;
        for (size_t i = 0; i < k; i++) {
            const double *ri = rows + i * GRAM_BLOCK;
            for (size_t j = i; j < k; j++) {
                const double *rj = rows + j * GRAM_BLOCK;
                __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
                size_t x = 0;
                for (; x + 8 <= m; x += 8) {
                    a0 = _mm256_fmadd_pd(_mm256_loadu_pd(ri + x), _mm256_loadu_pd(rj + x), a0);
                    a1 = _mm256_fmadd_pd(_mm256_loadu_pd(ri + x + 4), _mm256_loadu_pd(rj + x + 4),
                                         a1);
                }
                double lanes[4];
                _mm256_storeu_pd(lanes, _mm256_add_pd(a0, a1));
                dot_finish((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]), ri, rj, x, m,
                           &g[i * k + j]);
            }
        }
    }
    return 0;
}

/* The same dot products with AVX-512, 4 x 4 of them at a time: one 8-lane
 * accumulator holds a0 in its low and a1 in its high half (the same FMAs,
 * lane for lane), and each row loaded from L1/L2 serves four products
 * instead of one, so the loads no longer bound the kernel. Tiles that
 * reach past k repeat row k-1 and their extra products are dropped. Here
 * for the uncentred Gram (flc_merge_gram_partial); Krum's centred one runs
 * in merge_krum_fused.c (k <= 8) and merge_krum_tiled.c (k <= 32), which
 * keep the rows in L1 and find a NaN/Inf without a check of every float. */
#define TILE 4

__attribute__((target("avx512f,fma"))) static void
tile_dots(const double *rows, size_t k, size_t i0, size_t j0, size_t m, double *g)
{
    const double *ri[TILE], *rj[TILE];
    for (size_t a = 0; a < TILE; a++) {
        ri[a] = rows + (i0 + a < k ? i0 + a : k - 1) * GRAM_BLOCK;
        rj[a] = rows + (j0 + a < k ? j0 + a : k - 1) * GRAM_BLOCK;
    }
    __m512d acc[TILE][TILE];
    for (size_t a = 0; a < TILE; a++)
        for (size_t c = 0; c < TILE; c++)
            acc[a][c] = _mm512_setzero_pd();
    size_t x = 0;
    for (; x + 8 <= m; x += 8) {
        __m512d vi[TILE], vj[TILE];
        for (size_t a = 0; a < TILE; a++) {
            vi[a] = _mm512_loadu_pd(ri[a] + x);
            vj[a] = _mm512_loadu_pd(rj[a] + x);
        }
        for (size_t a = 0; a < TILE; a++)
            for (size_t c = 0; c < TILE; c++)
                acc[a][c] = _mm512_fmadd_pd(vi[a], vj[c], acc[a][c]);
    }
    for (size_t a = 0; a < TILE && i0 + a < k; a++)
        for (size_t c = 0; c < TILE && j0 + c < k; c++) {
            if (j0 + c < i0 + a)
                continue;
            __m256d lo = _mm512_castpd512_pd256(acc[a][c]);
            __m256d hi = _mm512_extractf64x4_pd(acc[a][c], 1);
            double lanes[4];
            _mm256_storeu_pd(lanes, _mm256_add_pd(lo, hi));
            dot_finish((lanes[0] + lanes[1]) + (lanes[2] + lanes[3]), ri[a], rj[c], x, m,
                       &g[(i0 + a) * k + j0 + c]);
        }
}

__attribute__((target("avx512f,fma"))) static unsigned
gram_avx512(const float *const *u, size_t k, size_t n, const double *s, int centre, int check,
            double *rows, double *mu, double *g)
{
    for (size_t b = 0; b < n; b += GRAM_BLOCK) {
        size_t m = n - b < GRAM_BLOCK ? n - b : GRAM_BLOCK;
        /* centred Grams go to merge_krum_fused.c / _tiled.c on these CPUs */
        if (load_block(u, k, b, m, n, GRAM_BLOCK, s, centre, check, rows, mu))
            return 1;
        for (size_t i0 = 0; i0 < k; i0 += TILE)
            for (size_t j0 = i0; j0 < k; j0 += TILE)
                tile_dots(rows, k, i0, j0, m, g);
    }
    return 0;
}
#endif

/* Adds the Gram matrix of the (optionally centred) slice into the upper
 * triangle of the k*k matrix g; with check, FLC_ENONFINITE on a NaN/Inf. */
static int gram_upper(const float *const *u, size_t k, size_t n, const double *s, int centre,
                      int check, double *g, flc_err_t *e)
{
    double *rows = malloc(k * GRAM_BLOCK * sizeof *rows);
    double *mu = malloc(GRAM_BLOCK * sizeof *mu);
    if (rows == NULL || mu == NULL) {
        free(rows);
        free(mu);
        return flc_err_set(e, FLC_ENOMEM, "merge krum: cannot allocate %zu doubles of scratch",
                           k * GRAM_BLOCK);
    }
    unsigned bad;
#if defined(__x86_64__)
    if (centre && k >= FLC_KRUM_FUSED_KMIN && k <= FLC_KRUM_FUSED_KMAX && flc_merge_krum_fused_ok())
        bad = flc_merge_krum_gram_fused(u, k, n, s, check, g);
    else if (centre && k <= FLC_KRUM_TILED_KMAX && flc_merge_krum_fused_ok())
        bad = flc_merge_krum_gram_tiled(u, k, n, s, check, g);
    else if (k <= SMALL_K && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl"))
        bad = gram_avx512(u, k, n, s, centre, check, rows, mu, g);
    else if (k <= SMALL_K && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        bad = gram_avx2(u, k, n, s, centre, check, rows, mu, g);
    else
#endif
        bad = gram_blas(u, k, n, s, centre, check, rows, mu, g);
    free(rows);
    free(mu);
    if (bad)
        return flc_err_set(e, FLC_ENONFINITE, "merge krum: an update holds NaN or Inf");
    return FLC_OK;
}

int flc_merge_gram_partial(const float *const *u, size_t k, size_t n, const double *s, double *G,
                           flc_err_t *e)
{
    double *g = calloc(k > 0 ? k * k : 1, sizeof *g);
    if (g == NULL)
        return flc_err_set(e, FLC_ENOMEM, "merge: cannot allocate a %zux%zu Gram matrix", k, k);
    int rc = gram_upper(u, k, n, s, 0, 0, g, e);
    if (rc == FLC_OK)
        for (size_t i = 0; i < k; i++)
            for (size_t j = i; j < k; j++) {
                G[i * k + j] += g[i * k + j];
                if (j != i)
                    G[j * k + i] += g[i * k + j];
            }
    free(g);
    return rc;
}

int flc_merge_sqdist_partial(const float *const *u, size_t k, size_t n, const double *s, double *D,
                             flc_err_t *e)
{
    return flc_merge_sqdist_partial_x(u, k, n, s, 0, D, e);
}

int flc_merge_sqdist_partial_x(const float *const *u, size_t k, size_t n, const double *s,
                               int check, double *D, flc_err_t *e)
{
    double *g = calloc(k > 0 ? k * k : 1, sizeof *g);
    if (g == NULL)
        return flc_err_set(e, FLC_ENOMEM, "merge: cannot allocate a %zux%zu Gram matrix", k, k);
    int rc = gram_upper(u, k, n, s, 1, check, g, e);
    if (rc == FLC_OK)
        for (size_t i = 0; i < k; i++)
            for (size_t j = i + 1; j < k; j++) {
                double d = g[i * k + i] + g[j * k + j] - 2.0 * g[i * k + j];
                D[i * k + j] += d;
                D[j * k + i] += d;
            }
    free(g);
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct cand {
    double score;
    size_t idx;
} cand_t;

/* Candidate order for the selection: lower score first, then lower index. */
static int cmp_cand(const void *a, const void *b)
{
    const cand_t *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

int flc_merge_krum_select(const double *D, size_t k, int f, size_t m, size_t *sel, double *score,
                          flc_err_t *e)
{
    if (f < 0)
        f = k >= 3 ? (int)((k - 3) / 2) : 0;
    if (k < (size_t)f + 3)
        return flc_err_set(e, FLC_EINVAL, "merge krum: f = %d needs at least %d updates, got %zu",
                           f, f + 3, k);
    if (m < 1 || m > k)
        return flc_err_set(e, FLC_EINVAL, "merge multi-krum: m = %zu must be in 1..%zu", m, k);
    size_t q = k - (size_t)f - 2; /* neighbours that count */
    cand_t *c = malloc(k * sizeof *c);
    double *d = malloc(k * sizeof *d);
    if (c == NULL || d == NULL) {
        free(c);
        free(d);
        return flc_err_set(e, FLC_ENOMEM, "merge krum: cannot allocate scores of %zu updates", k);
    }
    for (size_t i = 0; i < k; i++) {
        size_t nd = 0;
        for (size_t j = 0; j < k; j++)
            if (j != i)
                /* rounding can leave a tiny negative distance between equal updates */
                d[nd++] = D[i * k + j] > 0 ? D[i * k + j] : 0;
        qsort(d, nd, sizeof *d, cmp_double);
        double s = 0;
        for (size_t j = 0; j < q; j++)
            s += d[j];
        c[i].score = s;
        c[i].idx = i;
        if (score)
            score[i] = s;
    }
    qsort(c, k, sizeof *c, cmp_cand);
    for (size_t i = 0; i < m; i++)
        sel[i] = c[i].idx;
    free(c);
    free(d);
    return FLC_OK;
}

int flc_merge_krum_params(const flc_merge_rule_t *r, size_t k, int *f, size_t *m, flc_err_t *e)
{
    int ff = r->f;
    if (ff < 0) {
        if (k < 3)
            return flc_err_set(e, FLC_EINVAL, "merge %s: needs at least 3 updates, got %zu",
                               flc_merge_kind_name(r->kind), k);
        ff = (int)((k - 3) / 2);
    }
    if (k < (size_t)ff + 3)
        return flc_err_set(e, FLC_EINVAL, "merge %s: f = %d needs at least %d updates, got %zu",
                           flc_merge_kind_name(r->kind), ff, ff + 3, k);
    size_t mm = 1;
    if (r->kind == FLC_MERGE_MULTI_KRUM)
        mm = r->m > 0 ? (size_t)r->m : k - (size_t)ff;
    if (mm > k)
        return flc_err_set(e, FLC_EINVAL, "merge %s: m = %zu exceeds the %zu updates",
                           flc_merge_kind_name(r->kind), mm, k);
    *f = ff;
    *m = mm;
    return FLC_OK;
}

int flc_merge_mean_of(const float *const *u, const size_t *sel, size_t m, size_t n, const double *s,
                      float *out, flc_err_t *e)
{
    const float **p = malloc((m ? m : 1) * sizeof *p);
    double *c = malloc((m ? m : 1) * sizeof *c);
    if (p == NULL || c == NULL || m == 0) {
        free(p);
        free(c);
        return m == 0 ? flc_err_set(e, FLC_EINVAL, "merge: nothing selected to average")
                      : flc_err_set(e, FLC_ENOMEM, "merge: cannot allocate %zu pointers", m);
    }
    /* the fused mean has wsum's bits; on a NaN/Inf, wsum names it */
    if (flc_merge_krum_fused_ok() && flc_merge_krum_mean_fused(u, sel, m, n, s, out) == 0) {
        free(p);
        free(c);
        return FLC_OK;
    }
    for (size_t i = 0; i < m; i++) {
        p[i] = u[sel[i]];
        c[i] = s ? s[sel[i]] : 1.0;
    }
    size_t j, pos;
    int rc = flc_merge_wsum((const float *const *)p, m, n, c, 1.0 / (double)m, out, &j, &pos);
    if (rc)
        rc = flc_err_set(e, FLC_ENONFINITE, "merge: update %zu holds NaN or Inf at element %zu",
                         sel[j], pos);
    free(p);
    free(c);
    return rc;
}
