/* Krum's centred Gram for 9 to 32 updates: rows centred into an L1 buffer,
 * 4 x 4 tiles of dot products over it.
 *
 * Beyond 8 updates the products (k(k+1)/2) no longer fit in registers, so
 * the centred rows are written once and each 4 x 4 tile of products reads
 * 8 of them. merge_krum.c's tiled kernel wrote the rows of a whole block
 * (k x 1024 doubles: 128 KB at k = 16, in L2) and checked every float for
 * NaN/Inf on the way (0.26x saxpy at k = 16, 4 GB/s). Here the block is
 * walked 2048/k coordinates at a time, so the rows (16 KB) stay in L1, the
 * tiles' accumulators wait in memory between the steps, and a NaN/Inf is
 * found from the block's G_ii as in merge_krum_fused.c. The FMAs, lanes and
 * reductions are those merge_krum.c defines: the same bits. */
#include "aggregator/merge_krum_internal.h"
#include "aggregator/merge_internal.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define TILED __attribute__((target("avx512f,avx512vl,fma")))
#define INLINE static inline __attribute__((always_inline))
#define AHEAD 1024 /* floats ahead of the pass each update is prefetched */
#define ROWS_BYTES 16384 /* the centred rows of one step */

/* (float) -> double of 8 coordinates of update j from p, scaled when s. */
INLINE TILED __m512d row8(const float *p, const double *s, size_t j)
{
    __m512d v = _mm512_cvtps_pd(_mm256_loadu_ps(p));
    return s ? _mm512_mul_pd(_mm512_set1_pd(s[j]), v) : v;
}

/* Coordinates [x0, x0 + w) of the block at p (w a multiple of 8) centred
 * into rows (k rows of stride w): the mean summed in update order from 0,
 * times 1/k, over 32 coordinates at a time (four chains of adds). */
INLINE TILED void centre(const float *const *p, size_t k, size_t x0, size_t w, const double *s,
                         int pf, double *rows)
{
    const __m512d inv = _mm512_set1_pd(1.0 / (double)k);
    size_t x = 0;
    for (; x + 32 <= w; x += 32) {
        __m512d mu[4] = {_mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd(),
                         _mm512_setzero_pd()};
        for (size_t j = 0; j < k; j++) {
            if (pf) {
                __builtin_prefetch(p[j] + x0 + x + AHEAD);
                __builtin_prefetch(p[j] + x0 + x + AHEAD + 16);
            }
            for (int q = 0; q < 4; q++)
                mu[q] = _mm512_add_pd(mu[q], row8(p[j] + x0 + x + 8 * q, s, j));
        }
        for (int q = 0; q < 4; q++)
            mu[q] = _mm512_mul_pd(mu[q], inv);
        for (size_t j = 0; j < k; j++)
            for (int q = 0; q < 4; q++)
                _mm512_storeu_pd(rows + j * w + x + 8 * q,
                                 _mm512_sub_pd(row8(p[j] + x0 + x + 8 * q, s, j), mu[q]));
    }
    for (; x < w; x += 8) {
        __m512d mu = _mm512_setzero_pd();
        for (size_t j = 0; j < k; j++)
            mu = _mm512_add_pd(mu, row8(p[j] + x0 + x, s, j));
        mu = _mm512_mul_pd(mu, inv);
        for (size_t j = 0; j < k; j++)
            _mm512_storeu_pd(rows + j * w + x, _mm512_sub_pd(row8(p[j] + x0 + x, s, j), mu));
    }
}

/* Tile (i0.., j0..) of products over w coordinates of rows: 16 accumulators
 * from acc and back. Rows past k repeat row k-1 (their products unused). */
INLINE TILED void tile(const double *rows, size_t w, size_t k, size_t i0, size_t j0, __m512d *acc)
{
    const double *ri[4], *rj[4];
    for (size_t a = 0; a < 4; a++) {
        ri[a] = rows + (i0 + a < k ? i0 + a : k - 1) * w;
        rj[a] = rows + (j0 + a < k ? j0 + a : k - 1) * w;
    }
    __m512d t[4][4];
    for (int a = 0; a < 4; a++)
        for (int c = 0; c < 4; c++)
            t[a][c] = acc[4 * a + c];
    for (size_t x = 0; x < w; x += 8) {
        __m512d vi[4], vj[4];
        for (int a = 0; a < 4; a++) {
            vi[a] = _mm512_loadu_pd(ri[a] + x);
            vj[a] = _mm512_loadu_pd(rj[a] + x);
        }
        for (int a = 0; a < 4; a++)
            for (int c = 0; c < 4; c++)
                t[a][c] = _mm512_fmadd_pd(vi[a], vj[c], t[a][c]);
    }
    for (int a = 0; a < 4; a++)
        for (int c = 0; c < 4; c++)
            acc[4 * a + c] = t[a][c];
}

TILED static unsigned gram_tiled(const float *const *u, size_t k, size_t n, const double *s,
                                 int check, double *g)
{
    enum { KMAX = 32, TMAX = KMAX / 4 * (KMAX / 4 + 1) / 2 };
    __attribute__((aligned(64))) double rows[ROWS_BYTES / sizeof(double)];
    __attribute__((aligned(64))) __m512d acc[TMAX * 16];
    size_t step = ROWS_BYTES / sizeof(double) / k / 32 * 32; /* >= 64 at k = 32 */
    size_t nt = (k + 3) / 4;
    const double inv = 1.0 / (double)k;
    for (size_t b = 0; b < n; b += FLC_KRUM_BLOCK) {
        size_t m = n - b < FLC_KRUM_BLOCK ? n - b : FLC_KRUM_BLOCK, m8 = m & ~(size_t)7;
        const float *p[KMAX];
        for (size_t j = 0; j < k; j++)
            p[j] = u[j] + b;
        for (size_t q = 0; q < nt * (nt + 1) / 2 * 16; q++)
            acc[q] = _mm512_setzero_pd();
        for (size_t x0 = 0; x0 < m8; x0 += step) {
            size_t w = m8 - x0 < step ? m8 - x0 : step;
            centre(p, k, x0, w, s, b + x0 + w + AHEAD <= n, rows);
            size_t t = 0;
            for (size_t i0 = 0; i0 < k; i0 += 4)
                for (size_t j0 = i0; j0 < k; j0 += 4, t++)
                    tile(rows, w, k, i0, j0, acc + 16 * t);
        }
        /* the last m % 8 coordinates, centred one by one */
        double c[KMAX][8];
        size_t tail = m - m8;
        for (size_t x = 0; x < tail; x++) {
            double mu = 0;
            for (size_t j = 0; j < k; j++)
                mu += (s ? s[j] : 1.0) * (double)p[j][m8 + x];
            mu *= inv;
            for (size_t j = 0; j < k; j++)
                c[j][x] = (s ? s[j] : 1.0) * (double)p[j][m8 + x] - mu;
        }
        int bad = 0;
        size_t t = 0;
        for (size_t i0 = 0; i0 < k; i0 += 4)
            for (size_t j0 = i0; j0 < k; j0 += 4, t++)
                for (size_t a = 0; a < 4 && i0 + a < k; a++)
                    for (size_t e = 0; e < 4 && j0 + e < k; e++) {
                        size_t i = i0 + a, j = j0 + e;
                        if (j < i)
                            continue;
                        __m512d v = acc[16 * t + 4 * a + e];
                        double l[4];
                        _mm256_storeu_pd(l, _mm256_add_pd(_mm512_castpd512_pd256(v),
                                                          _mm512_extractf64x4_pd(v, 1)));
                        double d = (l[0] + l[1]) + (l[2] + l[3]);
                        for (size_t x = 0; x < tail; x++)
                            d += c[i][x] * c[j][x];
                        bad |= i == j && !__builtin_isfinite(d);
                        g[i * k + j] += d;
                    }
        /* a NaN/Inf makes every G_ii of its block non-finite (see
         * merge_krum_fused.c); only then are the raw values counted */
        if (check && bad)
            for (size_t j = 0; j < k; j++)
                if (flc_merge_count_nonfinite(p[j], m))
                    return 1;
    }
    return 0;
}

unsigned flc_merge_krum_gram_tiled(const float *const *u, size_t k, size_t n, const double *s,
                                   int check, double *g)
{
    return gram_tiled(u, k, n, s, check, g);
}

#else /* not x86-64: merge_krum.c's kernels do all */

unsigned flc_merge_krum_gram_tiled(const float *const *u, size_t k, size_t n, const double *s,
                                   int check, double *g)
{
    return 1;
}
#endif
