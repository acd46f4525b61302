/* Krum's kernels for the usual few updates of a round (k <= 8), which read
 * each update from memory once and keep every dot product in registers.
 *
 * The tiled kernels of merge_krum.c write each block's centred rows (k x
 * 1024 doubles, 64 KB: more than L1) and read them back once per 4 x 4 tile:
 * perf put 56% of their time in that load/centre pass, and 8-11 GB/s with
 * the updates in cache left nothing to hide memory latency behind (0.37x
 * saxpy from DRAM). Here 8 coordinates of all k updates are converted, the
 * mean taken and the rows centred in registers, and the k(k+1)/2 dot
 * products are 8-lane FMA accumulators: for k = 8, 36 of them, more than the
 * 32 registers, so a first pass takes rows 0..2 against all (21, with the 8
 * rows and the mean: 30 registers) and stores the mean, a second pass the
 * products among rows 3..7 from the floats still in L1 (15). The passes run
 * over 256 coordinates at a time, the accumulators kept in memory between
 * them, so that the floats and the means stay in L1.
 *
 * Every operation is the one merge_krum.c defines (the same centring, FMA
 * lanes, reductions and tail), so the distances have the same bits, and so
 * has the mean of the selected updates (flc_merge_wsum's grouping). */
#include "aggregator/merge_krum_internal.h"
#include "aggregator/merge_internal.h"

#include <stdint.h>

#if defined(__x86_64__)
#include <immintrin.h>

#define SUB 256 /* coordinates per pass: k rows of floats and the means in L1 */
#define AHEAD 1024 /* floats ahead of the pass each update is prefetched */
#define NACC 36    /* products at k = 8 */

#define FUSED __attribute__((target("avx512f,avx512vl,fma")))
#define INLINE static inline __attribute__((always_inline))

int flc_merge_krum_fused_ok(void)
{
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("fma");
}

/* Rows in the first pass: all of them while their products and rows fit in
 * registers (k <= 6: 21 + 6), else rows 0..2 (k = 8: 21 + 8 + the mean). */
#define ROWS_A(K) ((K) <= 6 ? (K) : 3)

/* (float) -> double of 8 coordinates of row j, scaled when SC. */
#define ROW(j, x)                                                                                  \
    (SC ? _mm512_mul_pd(_mm512_set1_pd(s[j]), _mm512_cvtps_pd(_mm256_loadu_ps(p[j] + (x))))     \
        : _mm512_cvtps_pd(_mm256_loadu_ps(p[j] + (x))))

/* Pass A over coordinates [x0, x1) of the block (multiples of 8): the mean,
 * stored in mub when a second pass needs it, and rows < ROWS_A(K) against
 * all. Prefetches the same lines AHEAD floats on, one per row and 16. */
INLINE FUSED void pass_a(const float *const *p, const double *s, const int K, const int SC,
                         size_t x0, size_t x1, int pf, double *mub, __m512d *acc)
{
    const int RA = ROWS_A(K);
    __m512d a[NACC];
    const __m512d inv = _mm512_set1_pd(1.0 / (double)K);
    const int NA = RA * K - RA * (RA - 1) / 2;
#pragma GCC unroll 36
    for (int q = 0; q < NA; q++)
        a[q] = acc[q];
    for (size_t x = x0; x < x1; x += 8) {
        __m512d v[FLC_KRUM_FUSED_KMAX];
        __m512d mu = _mm512_setzero_pd();
#pragma GCC unroll 8
        for (int j = 0; j < K; j++) {
            if (pf && (x & 8))
                __builtin_prefetch(p[j] + x + AHEAD);
            v[j] = ROW(j, x);
            mu = _mm512_add_pd(mu, v[j]);
        }
        mu = _mm512_mul_pd(mu, inv);
        if (RA < K)
            _mm512_store_pd(mub + (x - x0), mu);
#pragma GCC unroll 8
        for (int j = 0; j < K; j++)
            v[j] = _mm512_sub_pd(v[j], mu);
        int q = 0;
#pragma GCC unroll 8
        for (int i = 0; i < RA; i++)
#pragma GCC unroll 8
            for (int j = i; j < K; j++, q++)
                a[q] = _mm512_fmadd_pd(v[i], v[j], a[q]);
    }
#pragma GCC unroll 36
    for (int q = 0; q < NA; q++)
        acc[q] = a[q];
}

/* Pass B: the products among rows ROWS_A(K)..K-1, centred on the means that
 * pass A stored, from the floats pass A left in L1. */
INLINE FUSED void pass_b(const float *const *p, const double *s, const int K, const int SC,
                         size_t x0, size_t x1, const double *mub, __m512d *acc)
{
    const int RA = ROWS_A(K), KB = K - RA, NB = KB * (KB + 1) / 2;
    __m512d a[NACC];
#pragma GCC unroll 36
    for (int q = 0; q < NB; q++)
        a[q] = acc[q];
    for (size_t x = x0; x < x1; x += 8) {
        __m512d mu = _mm512_load_pd(mub + (x - x0)), v[FLC_KRUM_FUSED_KMAX];
#pragma GCC unroll 8
        for (int j = 0; j < KB; j++)
            v[j] = _mm512_sub_pd(ROW(RA + j, x), mu);
        int q = 0;
#pragma GCC unroll 8
        for (int i = 0; i < KB; i++)
#pragma GCC unroll 8
            for (int j = i; j < KB; j++, q++)
                a[q] = _mm512_fmadd_pd(v[i], v[j], a[q]);
    }
#pragma GCC unroll 36
    for (int q = 0; q < NB; q++)
        acc[q] = a[q];
}

/* Product (i, j) of the block into g: its 8 lanes as (lo + hi) and then
 * (l0 + l1) + (l2 + l3), the tail's products added one by one, then the
 * block's sum added to g, as merge_krum.c's kernels do. */
INLINE FUSED double finish(__m512d a, const double *ci, const double *cj, size_t tail)
{
    double l[4];
    _mm256_storeu_pd(l, _mm256_add_pd(_mm512_castpd512_pd256(a), _mm512_extractf64x4_pd(a, 1)));
    double t = (l[0] + l[1]) + (l[2] + l[3]);
    for (size_t x = 0; x < tail; x++)
        t += ci[x] * cj[x];
    return t;
}

/* The whole slice for one K (and SC: scaled or not), block by block. */
INLINE FUSED unsigned gram_k(const float *const *u, const int K, const int SC, size_t n,
                             const double *s, int check, double *g)
{
    const int RA = ROWS_A(K), NA = RA * K - RA * (RA - 1) / 2;
    __attribute__((aligned(64))) __m512d acc[NACC];
    __attribute__((aligned(64))) double mub[SUB];
    const double inv = 1.0 / (double)K;
    for (size_t b = 0; b < n; b += FLC_KRUM_BLOCK) {
        size_t m = n - b < FLC_KRUM_BLOCK ? n - b : FLC_KRUM_BLOCK, m8 = m & ~(size_t)7;
        const float *p[FLC_KRUM_FUSED_KMAX];
        for (int j = 0; j < K; j++)
            p[j] = u[j] + b;
        for (int q = 0; q < NACC; q++)
            acc[q] = _mm512_setzero_pd();
        for (size_t x0 = 0; x0 < m8; x0 += SUB) {
            size_t x1 = x0 + SUB < m8 ? x0 + SUB : m8;
            int pf = b + x1 + AHEAD <= n;
            pass_a(p, s, K, SC, x0, x1, pf, mub, acc);
            if (RA < K)
                pass_b(p, s, K, SC, x0, x1, mub, acc + NA);
        }
        /* the last m % 8 coordinates, centred as in merge_krum.c */
        double c[FLC_KRUM_FUSED_KMAX][8];
        size_t tail = m - m8;
        for (size_t x = 0; x < tail; x++) {
            double mu = 0;
            for (int j = 0; j < K; j++)
                mu += (SC ? s[j] : 1.0) * (double)p[j][m8 + x];
            mu *= inv;
            for (int j = 0; j < K; j++)
                c[j][x] = (SC ? s[j] : 1.0) * (double)p[j][m8 + x] - mu;
        }
        int q = 0, bad = 0;
        for (int i = 0; i < RA; i++)
            for (int j = i; j < K; j++, q++) {
                double t = finish(acc[q], c[i], c[j], tail);
                bad |= i == j && !__builtin_isfinite(t);
                g[i * K + j] += t;
            }
        for (int i = RA; i < K; i++)
            for (int j = i; j < K; j++, q++) {
                double t = finish(acc[q], c[i], c[j], tail);
                bad |= i == j && !__builtin_isfinite(t);
                g[i * K + j] += t;
            }
        /* A NaN/Inf in any update makes the block's mean, so every centred
         * row and every G_ii, non-finite: the raw check runs only then (a
         * huge scale, not a raw value, may also overflow). */
        if (check && bad)
            for (int j = 0; j < K; j++)
                if (flc_merge_count_nonfinite(p[j], m))
                    return 1;
    }
    return 0;
}

#define GRAM_K(K)                                                                                  \
    FUSED static unsigned gram_##K(const float *const *u, size_t n, const double *s, int check,   \
                                   double *g)                                                     \
    {                                                                                              \
        return s ? gram_k(u, K, 1, n, s, check, g) : gram_k(u, K, 0, n, s, check, g);            \
    }
GRAM_K(2)
GRAM_K(3)
GRAM_K(4)
GRAM_K(5)
GRAM_K(6)
GRAM_K(7)
GRAM_K(8)

unsigned flc_merge_krum_gram_fused(const float *const *u, size_t k, size_t n, const double *s,
                                   int check, double *g)
{
    switch (k) {
    case 2: return gram_2(u, n, s, check, g);
    case 3: return gram_3(u, n, s, check, g);
    case 4: return gram_4(u, n, s, check, g);
    case 5: return gram_5(u, n, s, check, g);
    case 6: return gram_6(u, n, s, check, g);
    case 7: return gram_7(u, n, s, check, g);
    default: return gram_8(u, n, s, check, g);
    }
}

/* ------------------------------------------ the mean of the selected */

#define MEAN_BLOCK 2048 /* floats per block of the mean, walked last first */

/* 8 coordinates of the sum as flc_merge_wsum groups it: acc = 0, then
 * acc += (c0 p0 + c1 p1) + (c2 p2 + c3 p3) per four updates, then acc +=
 * c p one at a time. */
INLINE FUSED __m512d mean8(const float *const *p, const double *c, size_t m, size_t x)
{
    __m512d acc = _mm512_setzero_pd();
    size_t j = 0;
    for (; j + 4 <= m; j += 4) {
        __m512d t0 = _mm512_mul_pd(_mm512_set1_pd(c[j]), _mm512_cvtps_pd(_mm256_loadu_ps(p[j] + x)));
        __m512d t1 =
            _mm512_mul_pd(_mm512_set1_pd(c[j + 1]), _mm512_cvtps_pd(_mm256_loadu_ps(p[j + 1] + x)));
        __m512d t2 =
            _mm512_mul_pd(_mm512_set1_pd(c[j + 2]), _mm512_cvtps_pd(_mm256_loadu_ps(p[j + 2] + x)));
        __m512d t3 =
            _mm512_mul_pd(_mm512_set1_pd(c[j + 3]), _mm512_cvtps_pd(_mm256_loadu_ps(p[j + 3] + x)));
        acc = _mm512_add_pd(acc, _mm512_add_pd(_mm512_add_pd(t0, t1), _mm512_add_pd(t2, t3)));
    }
    for (; j < m; j++)
        acc = _mm512_add_pd(
            acc, _mm512_mul_pd(_mm512_set1_pd(c[j]), _mm512_cvtps_pd(_mm256_loadu_ps(p[j] + x))));
    return acc;
}

/* One coordinate of the same sum, for the ends that are not 8 wide. */
static double mean1(const float *const *p, const double *c, size_t m, size_t x)
{
    double acc = 0;
    size_t j = 0;
    for (; j + 4 <= m; j += 4)
        acc += (c[j] * (double)p[j][x] + c[j + 1] * (double)p[j + 1][x]) +
               (c[j + 2] * (double)p[j + 2][x] + c[j + 3] * (double)p[j + 3][x]);
    for (; j < m; j++)
        acc += c[j] * (double)p[j][x];
    return acc;
}

FUSED static unsigned mean_avx512(const float *const *p, const double *c, size_t m, size_t n,
                                  float *out)
{
    const double inv = 1.0 / (double)m;
    const __m512d vinv = _mm512_set1_pd(inv);
    /* x - x is 0 for a finite sum and NaN otherwise: one sticky NaN check */
    __m512d chk = _mm512_setzero_pd();
    /* the output is not read back here: streamed past the cache when it is
     * big, which saves reading each line before writing it */
    size_t h = 0;
    int nt = n * sizeof(float) >= ((size_t)8 << 20) && ((uintptr_t)out & 3) == 0;
    if (nt)
        h = ((32 - ((uintptr_t)out & 31)) & 31) / sizeof(float);
    if (h > n)
        h = n;
    size_t body = n - h, nb = (body + MEAN_BLOCK - 1) / MEAN_BLOCK;
    for (size_t bi = nb; bi-- > 0;) {
        size_t b = h + bi * MEAN_BLOCK, len = n - b < MEAN_BLOCK ? n - b : MEAN_BLOCK;
        size_t len8 = len & ~(size_t)7;
        for (size_t x = 0; x < len8; x += 8) {
            if (bi > 0 && (x & 8))
                for (size_t j = 0; j < m; j++)
                    __builtin_prefetch(p[j] + b - MEAN_BLOCK + x);
            __m512d acc = mean8(p, c, m, b + x);
            chk = _mm512_add_pd(chk, _mm512_sub_pd(acc, acc));
            __m256 f = _mm512_cvtpd_ps(_mm512_mul_pd(acc, vinv));
            if (nt)
                _mm256_stream_ps(out + b + x, f);
            else
                _mm256_storeu_ps(out + b + x, f);
        }
        for (size_t x = len8; x < len; x++) {
            double acc = mean1(p, c, m, b + x);
            if (!__builtin_isfinite(acc))
                return 1;
            out[b + x] = (float)(acc * inv);
        }
    }
    for (size_t x = 0; x < h; x++) {
        double acc = mean1(p, c, m, x);
        if (!__builtin_isfinite(acc))
            return 1;
        out[x] = (float)(acc * inv);
    }
    if (nt)
        _mm_sfence();
    double l[8];
    _mm512_storeu_pd(l, chk);
    for (int i = 0; i < 8; i++)
        if (l[i] != 0)
            return 1;
    return 0;
}

unsigned flc_merge_krum_mean_fused(const float *const *u, const size_t *sel, size_t m, size_t n,
                                   const double *s, float *out)
{
    const float *p[64];
    double c[64];
    if (m > 64)
        return 1;
    for (size_t i = 0; i < m; i++) {
        p[i] = u[sel[i]];
        c[i] = s ? s[sel[i]] : 1.0;
    }
    return mean_avx512(p, c, m, n, out);
}

#else /* not x86-64: merge_krum.c's kernels do all */

int flc_merge_krum_fused_ok(void)
{
    return 0;
}

unsigned flc_merge_krum_gram_fused(const float *const *u, size_t k, size_t n, const double *s,
                                   int check, double *g)
{
    return 1;
}

unsigned flc_merge_krum_mean_fused(const float *const *u, const size_t *sel, size_t m, size_t n,
                                   const double *s, float *out)
{
    return 1;
}
#endif
