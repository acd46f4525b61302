/* The merge kernels' fast paths (issue 14 goal 1) against plain reference
 * loops kept here, on random inputs: the one-pass streaming fold (and its
 * first fold of a round, which writes the sum without reading it), the
 * sorting-network median and trimmed mean, the tiled Krum distances, and
 * the NaN/Inf check that moved from an up-front scan into the robust
 * kernels' block loads. Where the kernel's order of operations is defined
 * (fold order, sorted order) the result must be equal bit for bit. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/merge.h"
#include "tests/harness.h"

#define KMAX 40
#define NMAX 5003 /* not a multiple of any block size */

/* Reproducible floats in [-1, 1) (xorshift). */
static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
}

static float **new_updates(size_t k, size_t n)
{
    float **u = malloc(k * sizeof *u);
    for (size_t j = 0; j < k; j++) {
        u[j] = malloc(n * sizeof **u);
        for (size_t i = 0; i < n; i++)
            u[j][i] = rnd();
    }
    return u;
}

static void free_updates(float **u, size_t k)
{
    for (size_t j = 0; j < k; j++)
        free(u[j]);
    free(u);
}

static flc_merge_rule_t rule(const char *spec)
{
    flc_merge_rule_t r;
    flc_err_t e = {0};
    if (flc_merge_rule_parse(&r, spec, &e))
        flc_t_fatal("rule '%s': %s", spec, flc_err_msg(&e));
    return r;
}

/* FedAvg folded one update at a time equals the plain loop
 * sum = ((0 + w0 u0) + w1 u1) + ..., out = (float)(sum * (1 / W)), bit for
 * bit; so does the next round after a reset (the sum not cleared but
 * written unread), and a round whose first update was refused. */
TEST(fold_each_bits)
{
    const size_t ks[] = {1, 3, 8}, ns[] = {1, 511, 512, 513, NMAX};
    flc_merge_rule_t r = rule("fedavg");
    for (size_t a = 0; a < 3; a++)
        for (size_t b = 0; b < 5; b++) {
            size_t k = ks[a], n = ns[b];
            float **u = new_updates(k, n);
            double w[KMAX], total = 0;
            for (size_t j = 0; j < k; j++)
                total += w[j] = (double)(1 + j * 7);
            float *out = malloc(n * sizeof *out), *ref = malloc(n * sizeof *ref);
            for (size_t i = 0; i < n; i++) {
                double s = 0;
                for (size_t j = 0; j < k; j++)
                    s += w[j] * (double)u[j][i];
                ref[i] = (float)(s * (1.0 / total));
            }
            flc_err_t e = {0};
            flc_merge_acc_t *acc = flc_merge_acc_new(&r, n, &e);
            CHECK(acc != NULL, "accumulator of %zu floats: %s", n, flc_err_msg(&e));
            int same = 1;
            for (int round = 0; round < 3; round++) {
                flc_merge_acc_reset(acc);
                if (round == 2) { /* a refused first update leaves the round empty */
                    float keep = u[0][n / 2];
                    u[0][n / 2] = NAN;
                    int rc = flc_merge_acc_fold(acc, u[0], n, 5, -1, &e);
                    u[0][n / 2] = keep;
                    CHECK(rc == FLC_ENONFINITE && flc_merge_acc_count(acc) == 0,
                          "k=%zu n=%zu: a first update holding NaN is refused (rc %d)", k, n,
                          rc);
                }
                for (size_t j = 0; j < k; j++)
                    CHECK(flc_merge_acc_fold(acc, u[j], n, w[j], -1, &e) == 0, "fold %zu: %s", j,
                          flc_err_msg(&e));
                CHECK(flc_merge_acc_finish(acc, NULL, out, &e) == 0, "finish: %s",
                      flc_err_msg(&e));
                same &= memcmp(out, ref, n * sizeof *out) == 0;
            }
            EXPECT(same, "k=%zu n=%zu: three rounds (the last after a refused first update) "
                   "equal the plain double loop bit for bit", k, n);
            flc_merge_acc_free(acc);
            free(out);
            free(ref);
            free_updates(u, k);
        }
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Per coordinate: the values (float)(s_j u_j) sorted, the ranks [lo, hi)
 * summed from the smallest in double, times 1 / (hi - lo). */
static void ref_middle(float **u, size_t k, size_t n, const double *s, size_t lo, size_t hi,
                       float *ref)
{
    float col[KMAX];
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < k; j++)
            col[j] = s ? (float)(s[j] * (double)u[j][i]) : u[j][i];
        qsort(col, k, sizeof *col, cmp_float);
        double acc = 0;
        for (size_t j = lo; j < hi; j++)
            acc += (double)col[j];
        ref[i] = (float)(acc * (1.0 / (double)(hi - lo)));
    }
}

/* Median and trimmed mean of up to 32 updates (the sorting network) equal
 * the sorted reference bit for bit; 33 and 40 (quickselect, which sums in
 * another order) to a float rounding. */
TEST(robust_bits)
{
    const size_t ks[] = {1, 2, 3, 5, 8, 9, 16, 31, 32, 33, 40};
    size_t n = 1031;
    float *out = malloc(n * sizeof *out), *ref = malloc(n * sizeof *ref);
    for (size_t a = 0; a < sizeof ks / sizeof ks[0]; a++)
        for (int scaled = 0; scaled < 2; scaled++) {
            size_t k = ks[a];
            float **u = new_updates(k, n);
            double s[KMAX];
            for (size_t j = 0; j < k; j++)
                s[j] = j % 3 ? 1.0 : 0.25 + 0.5 * (rnd() + 1);
            const double *sp = scaled ? s : NULL;
            for (int trimmed = 0; trimmed < 2; trimmed++) {
                size_t t = flc_merge_trim_count(0.2, k);
                size_t lo = trimmed ? t : (k - 1) / 2, hi = trimmed ? k - t : k / 2 + 1;
                flc_err_t e = {0};
                int rc = trimmed ? flc_merge_trimmed_mean((const float *const *)u, k, n, sp,
                                                          0.2, out, &e)
                                 : flc_merge_median((const float *const *)u, k, n, sp, out, &e);
                CHECK(rc == 0, "k=%zu: %s", k, flc_err_msg(&e));
                ref_middle(u, k, n, sp, lo, hi, ref);
                double worst = 0;
                for (size_t i = 0; i < n; i++)
                    worst = fmax(worst, fabs((double)out[i] - ref[i]) /
                                            fmax(fabs((double)ref[i]), 1e-30));
                if (k <= 32)
                    EXPECT(memcmp(out, ref, n * sizeof *out) == 0,
                           "%s of %zu updates%s equals the sorted reference bit for bit",
                           trimmed ? "trimmed mean" : "median", k, scaled ? ", scaled" : "");
                else
                    EXPECT(worst <= 1.2e-7, "%s of %zu updates%s within a float rounding of "
                           "the sorted reference (%.2g)", trimmed ? "trimmed mean" : "median", k,
                           scaled ? ", scaled" : "", worst);
            }
            free_updates(u, k);
        }
    free(out);
    free(ref);
}

/* A merge refuses NaN/Inf naming the first bad update (by index) and its
 * first bad element, as the up-front scan did, although the kernels now
 * find the bad value block by block: update 3 holds NaN at element 5 (the
 * first block), update 1 +Inf at element 4000; the message names update 1. */
TEST(nonfinite_names_first_update)
{
    const char *specs[] = {"median", "trimmed-mean", "krum", "multi-krum", "bulyan"};
    size_t k = 8, n = NMAX;
    float **u = new_updates(k, n);
    u[3][5] = NAN;
    u[1][4000] = INFINITY;
    float *out = malloc(n * sizeof *out);
    for (size_t a = 0; a < sizeof specs / sizeof specs[0]; a++) {
        flc_merge_rule_t r = rule(a == 4 ? "bulyan:f=1" : specs[a]);
        flc_merge_batch_t b = {.u = (const float *const *)u, .k = k, .n = n};
        flc_err_t e = {0};
        int rc = flc_merge_run(&r, NULL, &b, out, NULL, &e);
        EXPECT(rc == FLC_ENONFINITE && strstr(flc_err_msg(&e), "update 1 holds +Inf at element "
                                                             "4000") != NULL,
               "%s: refused naming update 1, element 4000 (rc %d: %s)", specs[a], rc,
               flc_err_msg(&e));
    }
    free(out);
    free_updates(u, k);
}

/* Krum's distances from the tiled, centred Gram kernel agree with the plain
 * sum of squared differences to 1e-9 relative, and Krum and Multi-Krum
 * select the same updates as a selection from the plain distances. */
TEST(krum_plain_distances)
{
    const size_t ks[] = {5, 8, 11, 20, 32, 33};
    size_t n = 3001;
    float *out = malloc(n * sizeof *out);
    for (size_t a = 0; a < sizeof ks / sizeof ks[0]; a++) {
        size_t k = ks[a];
        float **u = new_updates(k, n);
        for (size_t j = 0; j < k; j++) /* close updates around 10 with large norms */
            for (size_t i = 0; i < n; i++)
                u[j][i] = 10.0f + (j % 4 == 3 ? 0.5f : 0.01f) * u[j][i];
        double *D = calloc(k * k, sizeof *D), *P = calloc(k * k, sizeof *P);
        flc_err_t e = {0};
        CHECK(flc_merge_sqdist_partial((const float *const *)u, k, n, NULL, D, &e) == 0, "%s",
              flc_err_msg(&e));
        double worst = 0;
        for (size_t i = 0; i < k; i++)
            for (size_t j = 0; j < k; j++) {
                double d = 0;
                for (size_t c = 0; c < n; c++) {
                    double x = (double)u[i][c] - (double)u[j][c];
                    d += x * x;
                }
                P[i * k + j] = d;
                if (i != j)
                    worst = fmax(worst, fabs(D[i * k + j] - d) / d);
            }
        EXPECT(worst <= 1e-9, "k=%zu: distances within %.2g of the plain loop", k, worst);
        for (int multi = 0; multi < 2; multi++) {
            flc_merge_rule_t r = rule(multi ? "multi-krum" : "krum");
            int f;
            size_t m, sel[KMAX];
            unsigned char used[KMAX], want[KMAX] = {0};
            CHECK(flc_merge_krum_params(&r, k, &f, &m, &e) == 0, "%s", flc_err_msg(&e));
            CHECK(flc_merge_krum_select(P, k, f, m, sel, NULL, &e) == 0, "%s", flc_err_msg(&e));
            for (size_t i = 0; i < m; i++)
                want[sel[i]] = 1;
            flc_merge_batch_t b = {.u = (const float *const *)u, .k = k, .n = n};
            flc_merge_info_t info = {.used = used};
            CHECK(flc_merge_run(&r, NULL, &b, out, &info, &e) == 0, "%s", flc_err_msg(&e));
            EXPECT(memcmp(used, want, k) == 0, "k=%zu %s: the %zu selected updates are those "
                   "of the plain distances", k, multi ? "multi-krum" : "krum", m);
        }
        free(D);
        free(P);
        free_updates(u, k);
    }
    free(out);
}

/* The centred Gram distances in the order merge_krum.c defines, written
 * plainly: per block of 1024 coordinates, mu = ((0 + v_0) + v_1 ...) / k
 * with v_j = s_j u_j, rows v_j - mu; each dot product in 8 lanes (lane x % 8,
 * fused multiply-adds), then (l0 + l4) ... summed as ((l0+l4) + (l1+l5)) +
 * ((l2+l6) + (l3+l7)), the last m % 8 products added one by one, the block
 * added to G; D_ij = (G_ii + G_jj) - 2 G_ij. */
#define REF_BLOCK 1024
static void ref_gram_dist(float **u, size_t k, size_t n, const double *s, double *D)
{
    double *G = calloc(k * k, sizeof *G), *c = malloc(k * REF_BLOCK * sizeof *c);
    for (size_t b = 0; b < n; b += REF_BLOCK) {
        size_t m = n - b < REF_BLOCK ? n - b : REF_BLOCK, m8 = m & ~(size_t)7;
        for (size_t x = 0; x < m; x++) {
            double mu = 0;
            for (size_t j = 0; j < k; j++)
                mu += (s ? s[j] : 1.0) * (double)u[j][b + x];
            mu *= 1.0 / (double)k;
            for (size_t j = 0; j < k; j++)
                c[j * REF_BLOCK + x] = (s ? s[j] : 1.0) * (double)u[j][b + x] - mu;
        }
        for (size_t i = 0; i < k; i++)
            for (size_t j = i; j < k; j++) {
                const double *ci = c + i * REF_BLOCK, *cj = c + j * REF_BLOCK;
                double l[8] = {0};
                for (size_t x = 0; x < m8; x++)
                    l[x % 8] = fma(ci[x], cj[x], l[x % 8]);
                double t = ((l[0] + l[4]) + (l[1] + l[5])) + ((l[2] + l[6]) + (l[3] + l[7]));
                for (size_t x = m8; x < m; x++)
                    t += ci[x] * cj[x];
                G[i * k + j] += t;
            }
    }
    for (size_t i = 0; i < k; i++)
        for (size_t j = 0; j < k; j++) {
            size_t a = i < j ? i : j, z = i < j ? j : i;
            D[i * k + j] = i == j ? 0 : G[a * k + a] + G[z * k + z] - 2.0 * G[a * k + z];
        }
    free(G);
    free(c);
}

/* Krum's distances have the same bits whichever kernel computes them (the
 * fused one for k <= 8, the tiled ones up to 32, on any CPU that runs
 * them): every k and slice length, scaled or not, equals the plain loop of
 * the defined order bit for bit. */
TEST(krum_distance_bits)
{
    const size_t ks[] = {2, 3, 4, 5, 6, 7, 8, 9, 12, 32};
    const size_t ns[] = {1, 7, 8, 257, 1024, 2 * 1024 + 13, 3001};
    for (size_t a = 0; a < sizeof ks / sizeof ks[0]; a++)
        for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++)
            for (int scaled = 0; scaled < 2; scaled++) {
                size_t k = ks[a], n = ns[c];
                float **u = new_updates(k, n);
                double s[KMAX];
                for (size_t j = 0; j < k; j++)
                    s[j] = j % 3 ? 1.0 : 0.25 + 0.5 * (rnd() + 1);
                const double *sp = scaled ? s : NULL;
                double *D = calloc(k * k, sizeof *D), *R = calloc(k * k, sizeof *R);
                flc_err_t e = {0};
                CHECK(flc_merge_sqdist_partial((const float *const *)u, k, n, sp, D, &e) == 0,
                      "%s", flc_err_msg(&e));
                ref_gram_dist(u, k, n, sp, R);
                EXPECT(memcmp(D, R, k * k * sizeof *D) == 0, "k=%zu n=%zu%s: distances equal "
                       "the defined order bit for bit", k, n, scaled ? " scaled" : "");
                free(D);
                free(R);
                free_updates(u, k);
            }
}

/* The mean of the selected updates (Krum's aggregate) equals flc_merge_wsum
 * over them bit for bit, in the selection's order, scaled or not, also where
 * the output is big enough to be streamed past the cache; a NaN in a
 * selected update is refused naming that update and its first bad element. */
TEST(krum_mean_bits)
{
    const size_t ms[] = {1, 3, 4, 6, 9};
    const size_t ns[] = {1, 13, 2048, 5003, ((size_t)2 << 20) + 5};
    size_t k = 10;
    for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++) {
        size_t n = ns[c];
        float **u = new_updates(k, n);
        float *out = malloc((n + 1) * sizeof *out), *ref = malloc(n * sizeof *ref);
        for (size_t a = 0; a < sizeof ms / sizeof ms[0]; a++)
            for (int scaled = 0; scaled < 2; scaled++) {
                size_t m = ms[a], sel[KMAX];
                const float *p[KMAX];
                double s[KMAX], coef[KMAX];
                for (size_t j = 0; j < k; j++)
                    s[j] = j % 3 ? 1.0 : 0.25 + 0.5 * (rnd() + 1);
                for (size_t i = 0; i < m; i++) {
                    sel[i] = (7 * i + 3) % k; /* not in index order */
                    p[i] = u[sel[i]];
                    coef[i] = scaled ? s[sel[i]] : 1.0;
                }
                flc_err_t e = {0};
                /* out + 1: an output not aligned for the streamed stores */
                float *o = (a + (size_t)scaled) % 2 ? out + 1 : out;
                CHECK(flc_merge_mean_of((const float *const *)u, sel, m, n, scaled ? s : NULL, o,
                                        &e) == 0, "%s", flc_err_msg(&e));
                CHECK(flc_merge_wsum(p, m, n, coef, 1.0 / (double)m, ref, NULL, NULL) == 0,
                      "wsum of %zu", m);
                EXPECT(memcmp(o, ref, n * sizeof *ref) == 0, "n=%zu m=%zu%s: the mean equals "
                       "wsum's bit for bit", n, m, scaled ? " scaled" : "");
            }
        if (n > 2000) {
            size_t sel[] = {4, 2, 7}, at = n - 3;
            u[7][at] = NAN;
            u[7][n / 2] = NAN;
            flc_err_t e = {0};
            int rc = flc_merge_mean_of((const float *const *)u, sel, 3, n, NULL, out, &e);
            char want[64];
            snprintf(want, sizeof want, "update 7 holds NaN or Inf at element %zu", n / 2);
            EXPECT(rc == FLC_ENONFINITE && strstr(flc_err_msg(&e), want) != NULL,
                   "n=%zu: a NaN is refused naming update 7 and its first bad element (%s)", n,
                   flc_err_msg(&e));
        }
        free(out);
        free(ref);
        free_updates(u, k);
    }
}

/* The Gram kernels find a NaN/Inf from the block's G_ii, not by checking
 * every float: a NaN or Inf in any update, in the first block or the last,
 * is refused (the fused kernel at k = 8, the L1-tiled one at k = 12), and a
 * scale that overflows the centred products (1e300) is not taken for one:
 * Krum runs, as when the check read the raw values only. */
TEST(krum_nonfinite_from_gram)
{
    const size_t ks[] = {8, 12};
    size_t n = 3001;
    float *out = malloc(n * sizeof *out);
    for (size_t a = 0; a < 2; a++) {
        size_t k = ks[a];
        float **u = new_updates(k, n);
        flc_merge_rule_t r = rule("krum");
        flc_merge_batch_t b = {.u = (const float *const *)u, .k = k, .n = n};
        const size_t at[] = {0, 1500, n - 1};
        const float bad[] = {NAN, INFINITY, -INFINITY};
        for (size_t c = 0; c < 3; c++) {
            size_t j = (c * 5 + 1) % k;
            float keep = u[j][at[c]];
            u[j][at[c]] = bad[c];
            flc_err_t e = {0};
            int rc = flc_merge_run(&r, NULL, &b, out, NULL, &e);
            u[j][at[c]] = keep;
            char want[64];
            snprintf(want, sizeof want, "update %zu holds", j);
            EXPECT(rc == FLC_ENONFINITE && strstr(flc_err_msg(&e), want) != NULL,
                   "k=%zu: %g in update %zu at %zu refused (%s)", k, (double)bad[c], j, at[c],
                   flc_err_msg(&e));
        }
        double sc[KMAX];
        for (size_t j = 0; j < k; j++)
            sc[j] = j == 5 ? 1e300 : 1.0;
        b.scale = sc;
        flc_err_t e = {0};
        int rc = flc_merge_run(&r, NULL, &b, out, NULL, &e);
        EXPECT(rc == 0, "k=%zu: krum with one update scaled by 1e300 runs (rc %d: %s)", k, rc,
               flc_err_msg(&e));
        free_updates(u, k);
    }
    free(out);
}

TEST_LIST(TEST_ENTRY(fold_each_bits), TEST_ENTRY(robust_bits),
          TEST_ENTRY(nonfinite_names_first_update), TEST_ENTRY(krum_plain_distances),
          TEST_ENTRY(krum_distance_bits), TEST_ENTRY(krum_mean_bits),
          TEST_ENTRY(krum_nonfinite_from_gram))
