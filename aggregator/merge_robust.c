/* Coordinate-wise robust rules: median and trimmed mean.
 *
 * Both need the k values of each coordinate in order. For up to
 * NET_MAX_K updates the slice is walked in blocks of NET_BLOCK coordinates:
 * the k rows of a block are copied (and scaled) into a scratch matrix, and a
 * Batcher odd-even merge sorting network is run on whole rows, each
 * compare-exchange being an element-wise min/max of two rows. Every coordinate of the block is thereby sorted at
 * once, without a branch (with SSE or AVX min/max: see cx_scalar for why
 * explicitly). For more updates the network grows as k log^2 k,
 * so each coordinate's column is gathered and partially ordered with
 * quickselect (Wirth's) instead. Values are s_j*u_j rounded to float before
 * ordering; averages are taken in double.
 *
 * Memory speed (issue 14): the block is checked for NaN/Inf as it is loaded
 * (flc_merge_run no longer scans first), the next block is prefetched, the
 * block loop is compiled for AVX2 beside the plain build, and comparators
 * that cannot reach the averaged ranks are dropped. None of it changes a
 * bit of the result. */
#include "aggregator/merge.h"
#include "aggregator/merge_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#define NET_MAX_K 32
#define NET_BLOCK 256
#define NET_MAX_PAIRS 1024

typedef struct pair {
    uint8_t a, b;
} pair_t;

/* Batcher's odd-even merge sort network for k inputs (k not necessarily a
 * power of two: the comparators that touch inputs >= k are dropped, which
 * is the network of the next power of two with +inf in the missing slots). */
static size_t batcher_pairs(size_t k, pair_t *pairs)
{
    size_t np = 0;
    for (size_t p = 1; p < k; p <<= 1)
        for (size_t d = p; d >= 1; d >>= 1)
            for (size_t j = d % p; j + d < k; j += 2 * d)
                for (size_t i = 0; i < d && i + j + d < k; i++)
                    if ((i + j) / (2 * p) == (i + j + d) / (2 * p)) {
                        pairs[np].a = (uint8_t)(i + j);
                        pairs[np].b = (uint8_t)(i + j + d);
                        np++;
                    }
    return np;
}

/* One compare-exchange of rows x and y over m columns: x gets the smaller
 * value, y the larger. Scalar, as the vector paths define it: min_ps(a, b)
 * is exactly (a < b ? a : b) and max_ps(b, a) exactly (a < b ? b : a), NaN
 * and signed zeros included, so every path gives the same bits. GCC does
 * not vectorize the scalar form (it reads the ?: as control flow). */
static void cx_scalar(float *restrict x, float *restrict y, size_t from, size_t m)
{
    for (size_t i = from; i < m; i++) {
        float a = x[i], b = y[i];
        x[i] = a < b ? a : b;
        y[i] = a < b ? b : a;
    }
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

static void cx_sse(float *restrict x, float *restrict y, size_t m)
{
    size_t i = 0;
    for (; i + 4 <= m; i += 4) {
        __m128 a = _mm_loadu_ps(x + i), b = _mm_loadu_ps(y + i);
        _mm_storeu_ps(x + i, _mm_min_ps(a, b));
        _mm_storeu_ps(y + i, _mm_max_ps(b, a));
    }
    cx_scalar(x, y, i, m);
}

__attribute__((target("avx"))) static void sort_columns_avx(float *rows, const pair_t *pairs,
                                                             size_t np, size_t m)
{
    for (size_t q = 0; q < np; q++) {
        float *x = rows + (size_t)pairs[q].a * NET_BLOCK;
        float *y = rows + (size_t)pairs[q].b * NET_BLOCK;
        size_t i = 0;
        for (; i + 8 <= m; i += 8) {
            __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(y + i);
            _mm256_storeu_ps(x + i, _mm256_min_ps(a, b));
            _mm256_storeu_ps(y + i, _mm256_max_ps(b, a));
        }
        cx_scalar(x, y, i, m);
    }
}
#endif

/* Sorts every column of rows (k rows of m floats, row stride NET_BLOCK). */
static void sort_columns(float *rows, const pair_t *pairs, size_t np, size_t m)
{
#if defined(__x86_64__) || defined(__i386__)
    if (__builtin_cpu_supports("avx")) {
        sort_columns_avx(rows, pairs, np, m);
        return;
    }
    for (size_t q = 0; q < np; q++)
        cx_sse(rows + (size_t)pairs[q].a * NET_BLOCK, rows + (size_t)pairs[q].b * NET_BLOCK, m);
#else
    for (size_t q = 0; q < np; q++)
        cx_scalar(rows + (size_t)pairs[q].a * NET_BLOCK, rows + (size_t)pairs[q].b * NET_BLOCK, 0,
                  m);
#endif
}

/* Copies (and scales) block [off, off+m) of the k updates into rows;
 * with check, returns how many raw values are NaN/Inf (counted while the
 * block is in L1, so the check adds no pass over memory). */
static inline __attribute__((always_inline)) unsigned load_rows(float *rows, const float *const *u, size_t k, size_t off, size_t m,
                          size_t n, const double *s, int check)
{
    unsigned bad = 0;
    size_t ahead = off + m + NET_BLOCK <= n ? NET_BLOCK : n - off - m;
    for (size_t j = 0; j < k; j++) {
        float *restrict r = rows + j * NET_BLOCK;
        const float *restrict p = u[j] + off;
        flc_merge_prefetch(p + m, ahead);
        if (s == NULL || s[j] == 1.0) {
            for (size_t i = 0; i < m; i++)
                r[i] = p[i];
            if (check)
                bad += flc_merge_count_nonfinite(r, m);
        } else {
            double sj = s[j];
            if (check)
                bad += flc_merge_count_nonfinite(p, m);
            for (size_t i = 0; i < m; i++)
                r[i] = (float)(sj * (double)p[i]);
        }
    }
    return bad;
}

/* Sorted rows lo..hi-1 of each column averaged in double into out. */
static inline __attribute__((always_inline)) void
mean_rows(const float *rows, size_t lo, size_t hi, size_t m, float *restrict out)
{
    double acc[NET_BLOCK];
    for (size_t i = 0; i < m; i++)
        acc[i] = 0;
    for (size_t j = lo; j < hi; j++) {
        const float *restrict r = rows + j * NET_BLOCK;
        for (size_t i = 0; i < m; i++)
            acc[i] += (double)r[i];
    }
    double inv = 1.0 / (double)(hi - lo);
    for (size_t i = 0; i < m; i++)
        out[i] = (float)(acc[i] * inv);
}

/* The middle rows [lo, hi) of every sorted column, averaged, over the slice. */
/* Drops the comparators whose outputs never reach ranks [lo, hi): walking
 * the network backwards, a comparator is kept when either of its outputs
 * is still needed, and then needs both its inputs. The ranks kept come out
 * of the same comparators in the same order, so with the same bits; a
 * median of 8 needs 17 of Batcher's 19. */
static size_t prune_pairs(pair_t *pairs, size_t np, size_t k, size_t lo, size_t hi)
{
    unsigned char need[NET_MAX_K] = {0}, keep[NET_MAX_PAIRS];
    for (size_t r = lo; r < hi; r++)
        need[r] = 1;
    for (size_t q = np; q-- > 0;) {
        keep[q] = need[pairs[q].a] || need[pairs[q].b];
        if (keep[q])
            need[pairs[q].a] = need[pairs[q].b] = 1;
    }
    size_t w = 0;
    for (size_t q = 0; q < np; q++)
        if (keep[q])
            pairs[w++] = pairs[q];
    (void)k;
    return w;
}

/* The blocks of the slice: load (and check), sort, average the middle. */
static inline __attribute__((always_inline)) size_t
net_blocks(const float *const *u, size_t k, size_t n, const double *s, size_t lo, size_t hi,
           int check, const pair_t *pairs, size_t np, float *rows, float *out, int avx)
{
    for (size_t b = 0; b < n; b += NET_BLOCK) {
        size_t m = n - b < NET_BLOCK ? n - b : NET_BLOCK;
        if (load_rows(rows, u, k, b, m, n, s, check))
            return b + 1;
#if defined(__x86_64__) || defined(__i386__)
        if (avx)
            sort_columns_avx(rows, pairs, np, m);
        else
#endif
            sort_columns(rows, pairs, np, m);
        mean_rows(rows, lo, hi, m, out + b);
    }
    return 0;
}

/* Compiled twice, as merge_avg.c's kernels: the plain x86-64 build copied
 * rows with rep movsq and checked and averaged them with SSE (perf: 60% of
 * the median's time there, 30% in the sorting network). */
static size_t net_blocks_plain(const float *const *u, size_t k, size_t n, const double *s,
                               size_t lo, size_t hi, int check, const pair_t *pairs, size_t np,
                               float *rows, float *out)
{
    return net_blocks(u, k, n, s, lo, hi, check, pairs, np, rows, out, 0);
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) static size_t
net_blocks_avx2(const float *const *u, size_t k, size_t n, const double *s, size_t lo, size_t hi,
                int check, const pair_t *pairs, size_t np, float *rows, float *out)
{
    return net_blocks(u, k, n, s, lo, hi, check, pairs, np, rows, out, 1);
}
#endif

static int net_merge(const float *const *u, size_t k, size_t n, const double *s, size_t lo,
                     size_t hi, int check, float *out, flc_err_t *e)
{
    pair_t pairs[NET_MAX_PAIRS];
    size_t np = prune_pairs(pairs, batcher_pairs(k, pairs), k, lo, hi);
    float *rows = malloc(k * NET_BLOCK * sizeof *rows);
    if (rows == NULL)
        return flc_err_set(e, FLC_ENOMEM, "merge: cannot allocate %zu floats of scratch",
                           k * NET_BLOCK);
    size_t bad;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx2"))
        bad = net_blocks_avx2(u, k, n, s, lo, hi, check, pairs, np, rows, out);
    else
#endif
        bad = net_blocks_plain(u, k, n, s, lo, hi, check, pairs, np, rows, out);
    free(rows);
    if (bad)
        return flc_err_set(e, FLC_ENONFINITE, "merge: an update holds NaN or Inf near "
                           "element %zu", bad - 1);
    return FLC_OK;
}

/* Wirth's selection: afterwards a[kth] holds the value of rank kth, with no
 * larger value before it and no smaller one after it. */
static void select_kth(float *a, ptrdiff_t n, ptrdiff_t kth)
{
    ptrdiff_t l = 0, r = n - 1;
    while (l < r) {
        float x = a[kth];
        ptrdiff_t i = l, j = r;
        do {
            while (a[i] < x)
                i++;
            while (x < a[j])
                j--;
            if (i <= j) {
                float t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        } while (i <= j);
        if (j < kth)
            l = i;
        if (kth < i)
            r = j;
    }
}

/* The same merge as net_merge, one coordinate at a time with quickselect. */
static int select_merge(const float *const *u, size_t k, size_t n, const double *s, size_t lo,
                        size_t hi, int check, float *out, flc_err_t *e)
{
    float *col = malloc(k * sizeof *col);
    if (col == NULL)
        return flc_err_set(e, FLC_ENOMEM, "merge: cannot allocate %zu floats of scratch", k);
    ptrdiff_t kk = (ptrdiff_t)k;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < k; j++)
            col[j] = s ? (float)(s[j] * (double)u[j][i]) : u[j][i];
        if (check)
            for (size_t j = 0; j < k; j++)
                if (!isfinite(u[j][i])) {
                    free(col);
                    return flc_err_set(e, FLC_ENONFINITE, "merge: update %zu holds NaN or Inf "
                                       "at element %zu", j, i);
                }
        double sum = 0;
        if (hi - lo <= 2 && lo + hi == k) {
            /* median: the value of rank lo, and for even k the largest value
             * below it, which selection left in col[0..lo) */
            select_kth(col, kk, (ptrdiff_t)(hi - 1));
            float top = col[hi - 1];
            sum = top;
            if (hi - lo == 2) {
                float below = col[0];
                for (size_t j = 1; j < hi - 1; j++)
                    below = col[j] > below ? col[j] : below;
                sum += below;
            }
        } else {
            if (lo > 0)
                select_kth(col, kk, (ptrdiff_t)lo);
            if (hi < k)
                select_kth(col + lo, kk - (ptrdiff_t)lo, (ptrdiff_t)(hi - lo));
            for (size_t j = lo; j < hi; j++)
                sum += (double)col[j];
        }
        out[i] = (float)(sum / (double)(hi - lo));
    }
    free(col);
    return FLC_OK;
}

static int middle_mean(const float *const *u, size_t k, size_t n, const double *s, size_t lo,
                       size_t hi, int check, float *out, flc_err_t *e)
{
    if (k == 0)
        return flc_err_set(e, FLC_EINVAL, "merge: no updates to merge");
    if (k <= NET_MAX_K)
        return net_merge(u, k, n, s, lo, hi, check, out, e);
    return select_merge(u, k, n, s, lo, hi, check, out, e);
}

int flc_merge_median_x(const float *const *u, size_t k, size_t n, const double *s, int check,
                       float *out, flc_err_t *e)
{
    /* odd k: the one middle rank; even k: the two middle ranks */
    size_t lo = (k - 1) / 2, hi = k / 2 + 1;
    return middle_mean(u, k, n, s, lo, hi, check, out, e);
}

int flc_merge_median(const float *const *u, size_t k, size_t n, const double *s, float *out,
                     flc_err_t *e)
{
    return flc_merge_median_x(u, k, n, s, 0, out, e);
}

size_t flc_merge_trim_count(double trim, size_t k)
{
    /* The small epsilon keeps 0.3 * 10 = 2.9999999999999996 from cutting 2. */
    double t = floor(trim * (double)k + 1e-9);
    if (t < 0)
        t = 0;
    size_t c = (size_t)t;
    return 2 * c < k ? c : (k - 1) / 2;
}

int flc_merge_trimmed_mean(const float *const *u, size_t k, size_t n, const double *s, double trim,
                           float *out, flc_err_t *e)
{
    return flc_merge_trimmed_mean_x(u, k, n, s, trim, 0, out, e);
}

int flc_merge_trimmed_mean_x(const float *const *u, size_t k, size_t n, const double *s,
                             double trim, int check, float *out, flc_err_t *e)
{
    if (!(trim >= 0 && trim < 0.5))
        return flc_err_set(e, FLC_EINVAL, "merge trimmed-mean: trim = %g is out of range (must be "
                           "in [0, 0.5))", trim);
    size_t t = flc_merge_trim_count(trim, k);
    return middle_mean(u, k, n, s, t, k - t, check, out, e);
}
