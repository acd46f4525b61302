/* Weighted averaging kernels: FedAvg, mean, clipped mean, the pseudo-gradient
 * of the server optimizers, and the folds of the streaming accumulator
 * (merge_acc.c), which adds updates one at a time as they land.
 *
 * Sums are kept in double so the result equals a double reference loop to
 * one float rounding, whatever the number of clients (a float running sum
 * loses about k*eps of relative accuracy, 1e-5 at a few hundred clients).
 * The batch kernel walks the slice in blocks that stay in L1 and adds four
 * updates per pass over the block, so each update is read once from memory
 * and the output is written once; that beats k calls to saxpy, which reread
 * and rewrite the sum k times. The kernels are compiled twice, plain x86-64
 * and AVX2, and picked at run time: the widening float->double conversion
 * is what limits the plain version. */
#include "aggregator/merge.h"
#include "aggregator/merge_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define WS_BLOCK FLC_MERGE_WS_BLOCK

#if defined(__GNUC__) && defined(__x86_64__)
#define FLC_HAVE_AVX2_CLONE 1
#endif

typedef flc_merge_bad_t bad_at_t;

/* 1 when p[0..m) holds no NaN/Inf: exponent bits all ones, counted with
 * integer adds so that the loop vectorizes. */
static inline __attribute__((always_inline)) int block_finite(const float *restrict p, size_t m)
{
    unsigned bad = 0;
    for (size_t i = 0; i < m; i++) {
        uint32_t bits;
        memcpy(&bits, &p[i], sizeof bits);
        bad += (bits & 0x7f800000u) == 0x7f800000u;
    }
    return bad == 0;
}

/* Checks the block [off, off+m) of every update; fills *bad on failure.
 * Asks for the next `ahead` floats of each update meanwhile (see
 * flc_merge_prefetch). */
static inline __attribute__((always_inline)) int
rows_finite(const float *const *u, size_t k, size_t off, size_t m, size_t ahead, bad_at_t *bad)
{
    for (size_t j = 0; j < k; j++)
        flc_merge_prefetch(u[j] + off + m, ahead);
    for (size_t j = 0; j < k; j++)
        if (!block_finite(u[j] + off, m)) {
            size_t i = 0;
            while (i < m && isfinite(u[j][off + i]))
                i++;
            bad->update = j;
            bad->pos = off + i;
            return 0;
        }
    return 1;
}

/* acc[0..m) += sum_j coef[j] * u[j][off + i]. Four updates per pass over
 * acc, grouped as (a + b) + (c + d) so that the order is fixed. */
static inline __attribute__((always_inline)) void
wsum_block(const float *const *u, size_t k, size_t off, size_t m, const double *coef, double sign,
           double *restrict acc)
{
    size_t j = 0;
    for (; j + 4 <= k; j += 4) {
        const float *restrict p0 = u[j] + off, *restrict p1 = u[j + 1] + off;
        const float *restrict p2 = u[j + 2] + off, *restrict p3 = u[j + 3] + off;
        double c0 = sign * coef[j], c1 = sign * coef[j + 1];
        double c2 = sign * coef[j + 2], c3 = sign * coef[j + 3];
        for (size_t i = 0; i < m; i++)
            acc[i] += (c0 * (double)p0[i] + c1 * (double)p1[i]) +
                      (c2 * (double)p2[i] + c3 * (double)p3[i]);
    }
    for (; j < k; j++) {
        const float *restrict p = u[j] + off;
        double c = sign * coef[j];
        for (size_t i = 0; i < m; i++)
            acc[i] += c * (double)p[i];
    }
}

/* out = inv * sum_j coef_j u_j; 0, or FLC_ENONFINITE with *bad set (out is
 * then partly written). */
static inline __attribute__((always_inline)) int
wsum_body(const float *const *u, size_t k, size_t n, const double *coef, double inv,
          float *restrict out, bad_at_t *bad)
{
    double acc[WS_BLOCK];
    for (size_t b = 0; b < n; b += WS_BLOCK) {
        size_t m = n - b < WS_BLOCK ? n - b : WS_BLOCK;
        size_t ahead = b + m + WS_BLOCK <= n ? WS_BLOCK : n - b - m;
        if (!rows_finite(u, k, b, m, ahead, bad))
            return FLC_ENONFINITE;
        for (size_t i = 0; i < m; i++)
            acc[i] = 0;
        wsum_block(u, k, b, m, coef, 1.0, acc);
        for (size_t i = 0; i < m; i++)
            out[b + i] = (float)(acc[i] * inv);
    }
    return FLC_OK;
}

/* sum += sum_j coef_j u_j, checking each block before adding it. A bad
 * value takes back the blocks already added by adding their negation: the
 * same grouped sums with the opposite sign, so each element returns to
 * its old value up to one rounding of the double sum (about 1e-16 of it,
 * far below the float the sum ends in). */
static inline __attribute__((always_inline)) int
fold_body(const float *const *u, size_t k, size_t n, const double *coef, double *restrict sum,
          bad_at_t *bad)
{
    for (size_t b = 0; b < n; b += WS_BLOCK) {
        size_t m = n - b < WS_BLOCK ? n - b : WS_BLOCK;
        size_t ahead = b + m + WS_BLOCK <= n ? WS_BLOCK : n - b - m;
        for (size_t i = 0; i < ahead; i += 8) /* the sum is a stream too */
            __builtin_prefetch(sum + b + m + i, 1);
        if (!rows_finite(u, k, b, m, ahead, bad)) {
            for (size_t r = 0; r < b; r += WS_BLOCK)
                wsum_block(u, k, r, WS_BLOCK, coef, -1.0, sum + r);
            return FLC_ENONFINITE;
        }
        wsum_block(u, k, b, m, coef, 1.0, sum + b);
    }
    return FLC_OK;
}

/* sum += c*u for one update (first: sum = 0 + c*u, the sum's memory not
 * read, which spares the reset's memset and one read of the sum per round).
 * One pass: each vector of u is checked, and the old sums kept in an L1
 * buffer, as it is added; a block holding a NaN/Inf is put back from that
 * buffer and the blocks before it are taken back as fold_body does. Bytes
 * per element: 4 read of u, 8 read and 8 written of the sum. */
static inline __attribute__((always_inline)) int
fold1_body(const float *restrict u, size_t n, double c, int first, double *restrict sum,
           bad_at_t *bad)
{
    double old[WS_BLOCK];
    for (size_t b = 0; b < n; b += WS_BLOCK) {
        size_t m = n - b < WS_BLOCK ? n - b : WS_BLOCK;
        const float *restrict p = u + b;
        double *restrict s = sum + b;
        unsigned nb = 0;
        for (size_t i = 0; i < m; i++) {
            uint32_t bits;
            memcpy(&bits, &p[i], sizeof bits);
            nb += (bits & 0x7f800000u) == 0x7f800000u;
            double o = first ? 0.0 : s[i];
            old[i] = o;
            s[i] = o + c * (double)p[i];
        }
        if (nb == 0)
            continue;
        if (!first) {
            for (size_t i = 0; i < m; i++)
                s[i] = old[i];
            const float *row = u;
            for (size_t r = 0; r < b; r += WS_BLOCK)
                wsum_block(&row, 1, r, WS_BLOCK, &c, -1.0, sum + r);
        }
        size_t i = 0;
        while (i < m && isfinite(p[i]))
            i++;
        bad->update = 0;
        bad->pos = b + i;
        return FLC_ENONFINITE;
    }
    return FLC_OK;
}

static int fold1_plain(const float *u, size_t n, double c, int first, double *sum, bad_at_t *bad)
{
    return first ? fold1_body(u, n, c, 1, sum, bad) : fold1_body(u, n, c, 0, sum, bad);
}

static int wsum_plain(const float *const *u, size_t k, size_t n, const double *coef, double inv,
                      float *out, bad_at_t *bad)
{
    return wsum_body(u, k, n, coef, inv, out, bad);
}

static int fold_plain(const float *const *u, size_t k, size_t n, const double *coef, double *sum,
                      bad_at_t *bad)
{
    return fold_body(u, k, n, coef, sum, bad);
}

#ifdef FLC_HAVE_AVX2_CLONE
__attribute__((target("avx2"))) static int
wsum_avx2(const float *const *u, size_t k, size_t n, const double *coef, double inv, float *out,
          bad_at_t *bad)
{
    return wsum_body(u, k, n, coef, inv, out, bad);
}

__attribute__((target("avx2"))) static int
fold1_avx2(const float *u, size_t n, double c, int first, double *sum, bad_at_t *bad)
{
    return first ? fold1_body(u, n, c, 1, sum, bad) : fold1_body(u, n, c, 0, sum, bad);
}

__attribute__((target("avx2"))) static int
fold_avx2(const float *const *u, size_t k, size_t n, const double *coef, double *sum,
          bad_at_t *bad)
{
    return fold_body(u, k, n, coef, sum, bad);
}
#endif

int flc_merge_wsum(const float *const *u, size_t k, size_t n, const double *coef, double inv,
                   float *out, size_t *bad_update, size_t *bad_pos)
{
    bad_at_t bad = {0, 0};
    int rc;
#ifdef FLC_HAVE_AVX2_CLONE
    if (__builtin_cpu_supports("avx2"))
        rc = wsum_avx2(u, k, n, coef, inv, out, &bad);
    else
#endif
        rc = wsum_plain(u, k, n, coef, inv, out, &bad);
    if (bad_update)
        *bad_update = bad.update;
    if (bad_pos)
        *bad_pos = bad.pos;
    return rc;
}

int flc_merge_fold_rows(const float *const *u, size_t k, size_t n, const double *coef,
                        double *sum, flc_merge_bad_t *bad)
{
#ifdef FLC_HAVE_AVX2_CLONE
    if (__builtin_cpu_supports("avx2"))
        return fold_avx2(u, k, n, coef, sum, bad);
#endif
    return fold_plain(u, k, n, coef, sum, bad);
}

int flc_merge_fold_one(const float *u, size_t n, double c, int first, double *sum,
                       flc_merge_bad_t *bad)
{
#ifdef FLC_HAVE_AVX2_CLONE
    if (__builtin_cpu_supports("avx2"))
        return fold1_avx2(u, n, c, first, sum, bad);
#endif
    return fold1_plain(u, n, c, first, sum, bad);
}
