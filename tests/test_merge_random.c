/* aggregator/merge on random data against straightforward reference loops in
 * double precision: every rule, sizes that cross the kernels' block
 * boundaries, both robust code paths (sorting network and quickselect), the
 * streaming fold, and sharded merges that must equal the whole-model merge
 * bit for bit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/merge.h"
#include "tests/harness.h"

#define N 5003 /* not a multiple of any block size */
#define KMAX 300

static float *U[KMAX];
static double W[KMAX];

/* Largest |got - ref| / max(|ref|, floor) over n elements. */
static double max_rel(const float *got, const double *ref, size_t n, double floor_)
{
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]) / fmax(fabs(ref[i]), floor_);
        if (!(d <= worst))
            worst = d; /* also catches NaN */
    }
    return worst;
}

static flc_merge_rule_t rule(const char *spec)
{
    flc_merge_rule_t r;
    flc_err_t e = {0};
    if (flc_merge_rule_parse(&r, spec, &e))
        flc_t_fatal("rule '%s': %s", spec, flc_err_msg(&e));
    return r;
}

static double norm_of(const float *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)v[i] * v[i];
    return sqrt(s);
}

/* ref[i] = sum_j c_j u_j[i] / total, in double. */
static void ref_wavg(size_t k, size_t n, const double *c, double total, double *ref)
{
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (size_t j = 0; j < k; j++)
            s += c[j] * (double)U[j][i];
        ref[i] = s / total;
    }
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Mean of sorted ranks [lo, hi) of each column of s_j*u_j (rounded to float). */
static void ref_middle(size_t k, size_t n, const double *s, size_t lo, size_t hi, double *ref)
{
    float col[KMAX];
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < k; j++)
            col[j] = s ? (float)(s[j] * (double)U[j][i]) : U[j][i];
        qsort(col, k, sizeof *col, cmp_float);
        double sum = 0;
        for (size_t j = lo; j < hi; j++)
            sum += col[j];
        ref[i] = sum / (double)(hi - lo);
    }
}

static void check_fedavg(float *out, double *ref)
{
    const size_t ks[] = {1, 3, 8, 9, 300};
    flc_err_t e = {0};
    for (size_t t = 0; t < sizeof ks / sizeof ks[0]; t++) {
        size_t k = ks[t];
        double total = 0;
        for (size_t j = 0; j < k; j++)
            total += W[j];
        ref_wavg(k, N, W, total, ref);
        flc_merge_rule_t r = rule("fedavg");
        flc_merge_batch_t b = {.u = (const float *const *)U, .k = k, .n = N, .weight = W};
        int rc = flc_merge_run(&r, NULL, &b, out, NULL, &e);
        double err = max_rel(out, ref, N, 1e-30);
        CHECK(rc == 0 && err <= 1e-6, "fedavg of %zu updates: max element relative error %.2e",
              k, err);

        flc_merge_acc_t *acc = flc_merge_acc_new(&r, N, &e);
        rc = 0;
        for (size_t j = 0; j < k; j++)
            rc |= flc_merge_acc_fold(acc, U[j], N, W[j], -1, &e);
        rc |= flc_merge_acc_finish(acc, NULL, out, &e);
        err = max_rel(out, ref, N, 1e-30);
        CHECK(rc == 0 && err <= 1e-6, "streaming fedavg of %zu updates: max relative error %.2e",
              k, err);
        /* half one at a time, the rest as one batch */
        flc_merge_acc_reset(acc);
        size_t half = k / 2;
        for (size_t j = 0; j < half; j++)
            rc |= flc_merge_acc_fold(acc, U[j], N, W[j], -1, &e);
        flc_merge_batch_t rest = {.u = (const float *const *)U + half, .k = k - half, .n = N,
                                  .weight = W + half};
        rc |= flc_merge_acc_fold_batch(acc, &rest, &e);
        rc |= flc_merge_acc_finish(acc, NULL, out, &e);
        err = max_rel(out, ref, N, 1e-30);
        CHECK(rc == 0 && err <= 1e-6 && flc_merge_acc_count(acc) == k,
              "fold + batch fold of %zu updates: max relative error %.2e", k, err);
        flc_merge_acc_free(acc);
    }
}

static void check_clipped_mean(float *out, double *ref)
{
    size_t k = 9;
    double s[KMAX], norms[KMAX];
    for (size_t j = 0; j < k; j++)
        norms[j] = norm_of(U[j], N);
    double clip = norms[4]; /* about half get clipped */
    size_t nclip = 0;
    for (size_t j = 0; j < k; j++) {
        s[j] = norms[j] > clip ? clip / norms[j] : 1.0;
        nclip += norms[j] > clip;
    }
    ref_wavg(k, N, s, (double)k, ref);
    char spec[64];
    snprintf(spec, sizeof spec, "mean:clip=%.17g", clip);
    flc_merge_rule_t r = rule(spec);
    flc_merge_batch_t b = {.u = (const float *const *)U, .k = k, .n = N};
    flc_merge_info_t info = {0};
    int rc = flc_merge_run(&r, NULL, &b, out, &info, NULL);
    double err = max_rel(out, ref, N, 1e-30);
    CHECK(rc == 0 && err <= 1e-6 && info.clipped == nclip && nclip > 0,
          "clipped mean: %zu of %zu clipped, max relative error %.2e", info.clipped, k, err);
}

static void check_robust(float *out, double *ref)
{
    const size_t ks[] = {1, 2, 5, 8, 17, 32, 33, 40};
    for (size_t t = 0; t < sizeof ks / sizeof ks[0]; t++) {
        size_t k = ks[t];
        flc_merge_rule_t r = rule("median");
        flc_merge_batch_t b = {.u = (const float *const *)U, .k = k, .n = N};
        ref_middle(k, N, NULL, (k - 1) / 2, k / 2 + 1, ref);
        int rc = flc_merge_run(&r, NULL, &b, out, NULL, NULL);
        double err = max_rel(out, ref, N, 1e-6);
        CHECK(rc == 0 && err <= 1e-6, "median of %zu (%s): max relative error %.2e", k,
              k <= 32 ? "network" : "quickselect", err);
        const double trims[] = {0.1, 0.25, 0.45};
        for (int q = 0; q < 3; q++) {
            char spec[64];
            snprintf(spec, sizeof spec, "trimmed-mean:trim=%g", trims[q]);
            r = rule(spec);
            size_t c = flc_merge_trim_count(trims[q], k);
            ref_middle(k, N, NULL, c, k - c, ref);
            rc = flc_merge_run(&r, NULL, &b, out, NULL, NULL);
            err = max_rel(out, ref, N, 1e-6);
            CHECK(rc == 0 && err <= 1e-6, "trimmed mean of %zu, trim %g (%zu cut): max error %.2e",
                  k, trims[q], c, err);
        }
    }
    /* clipping reaches the robust rules too */
    size_t k = 7;
    double s[KMAX];
    double clip = 0.5 * norm_of(U[0], N);
    for (size_t j = 0; j < k; j++)
        s[j] = flc_merge_clip_scale(norm_of(U[j], N), clip);
    ref_middle(k, N, s, 3, 4, ref);
    char spec[64];
    snprintf(spec, sizeof spec, "median:clip=%.17g", clip);
    flc_merge_rule_t r = rule(spec);
    flc_merge_batch_t b = {.u = (const float *const *)U, .k = k, .n = N};
    int rc = flc_merge_run(&r, NULL, &b, out, NULL, NULL);
    CHECK(rc == 0 && max_rel(out, ref, N, 1e-6) <= 1e-6, "clipped median of 7 matches");
}

static void check_krum(float *out, double *ref)
{
    size_t k = 12, f = 3;
    /* nine honest updates close together, and three Byzantine ones (1, 4, 7)
     * shifted far away */
    float *v[12];
    const float *u[12];
    for (size_t j = 0; j < k; j++) {
        v[j] = malloc(N * sizeof(float));
        int byz = j % 3 == 1 && j <= 7;
        for (size_t i = 0; i < N; i++)
            v[j][i] = byz ? U[20 + j][i] + 3.0f : 0.1f * U[j][i];
        u[j] = v[j];
    }
    /* reference: direct distances, scores, order */
    double D[144], Dk[144] = {0}, score[12], want[12];
    for (size_t a = 0; a < k; a++)
        for (size_t c = 0; c < k; c++) {
            double s = 0;
            for (size_t i = 0; i < N; i++) {
                double d = (double)u[a][i] - u[c][i];
                s += d * d;
            }
            D[a * k + c] = s;
        }
    for (size_t a = 0; a < k; a++) {
        double d[12];
        size_t nd = 0;
        for (size_t c = 0; c < k; c++)
            if (c != a)
                d[nd++] = D[a * k + c];
        for (size_t x = 0; x < nd; x++) /* selection sort: fine for 11 */
            for (size_t y = x + 1; y < nd; y++)
                if (d[y] < d[x]) {
                    double t = d[x];
                    d[x] = d[y];
                    d[y] = t;
                }
        want[a] = 0;
        for (size_t x = 0; x < k - f - 2; x++)
            want[a] += d[x];
    }
    flc_err_t e = {0};
    int rc = flc_merge_sqdist_partial(u, k, N, NULL, Dk, &e);
    double derr = 0;
    for (size_t i = 0; i < k * k; i++)
        derr = fmax(derr, fabs(Dk[i] - D[i]) / fmax(D[i], 1));
    CHECK(rc == 0 && derr < 1e-9, "Gram-based squared distances match direct ones (%.1e)", derr);
    size_t sel[12];
    rc = flc_merge_krum_select(Dk, k, (int)f, k, sel, score, &e);
    int order_ok = rc == 0;
    for (size_t x = 0; x + 1 < k; x++)
        order_ok &= want[sel[x]] <= want[sel[x + 1]];
    for (size_t x = 0; x < k; x++)
        order_ok &= fabs(score[x] - want[x]) <= 1e-9 * want[x];
    CHECK(order_ok, "krum scores and order equal the direct reference");
    int bad_last = 1;
    for (size_t x = k - 3; x < k; x++)
        bad_last &= sel[x] % 3 == 1 && sel[x] <= 7;
    CHECK(bad_last, "the three Byzantine updates score worst");

    /* multi-krum m = k - f: mean of the 9 honest updates */
    flc_merge_rule_t r = rule("multi-krum:f=3");
    flc_merge_batch_t b = {.u = u, .k = k, .n = N};
    unsigned char used[12];
    flc_merge_info_t info = {.used = used};
    rc = flc_merge_run(&r, NULL, &b, out, &info, &e);
    for (size_t i = 0; i < N; i++) {
        double sum = 0;
        for (size_t j = 0; j < k; j++)
            if (!(j % 3 == 1 && j <= 7))
                sum += u[j][i];
        ref[i] = sum / 9;
    }
    double err = max_rel(out, ref, N, 1e-30);
    CHECK(rc == 0 && err <= 1e-6 && used[1] == 0 && used[4] == 0 && used[7] == 0 && used[0],
          "multi-krum averages exactly the 9 honest updates (max relative error %.2e)", err);
    for (size_t j = 0; j < k; j++)
        free(v[j]);
}

/* Reference server optimizer over rounds, state in float like the library. */
static void ref_server(const flc_merge_rule_t *r, float *m, float *v, const double *g, double *out,
                       size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double gi = (float)g[i]; /* the library rounds the pseudo-gradient to float */
        if (r->kind == FLC_MERGE_FEDAVGM) {
            double mi = r->momentum * m[i] + gi;
            m[i] = (float)mi;
            out[i] = r->server_lr * mi;
            continue;
        }
        double mi = r->beta1 * m[i] + (1 - r->beta1) * gi, vi = v[i], g2 = gi * gi;
        if (r->kind == FLC_MERGE_FEDADAGRAD)
            vi += g2;
        else if (r->kind == FLC_MERGE_FEDADAM)
            vi = r->beta2 * vi + (1 - r->beta2) * g2;
        else
            vi -= (1 - r->beta2) * g2 * (vi > g2 ? 1 : vi < g2 ? -1 : 0);
        m[i] = (float)mi;
        v[i] = (float)vi;
        out[i] = r->server_lr * mi / (sqrt(vi) + r->tau);
    }
}

static void check_server(float *out, double *ref)
{
    const char *specs[] = {"fedavgm", "fedadam", "fedyogi:tau=1e-2", "fedadagrad:beta1=0"};
    size_t k = 6;
    double *g = malloc(N * sizeof *g);
    float *m = malloc(N * sizeof *m), *v = malloc(N * sizeof *v);
    for (int s = 0; s < 4; s++) {
        flc_merge_rule_t r = rule(specs[s]);
        flc_merge_state_t *st = flc_merge_state_new(&r, N, NULL);
        for (size_t i = 0; i < N; i++) {
            m[i] = 0;
            v[i] = (float)(r.tau * r.tau);
        }
        double worst = 0;
        int rc = 0;
        for (int round = 0; round < 3; round++) {
            flc_merge_batch_t b = {.u = (const float *const *)U + round * 3, .k = k, .n = N};
            /* reference pseudo-gradient: plain mean of this round's updates */
            for (size_t i = 0; i < N; i++) {
                double sum = 0;
                for (size_t j = 0; j < k; j++)
                    sum += U[round * 3 + j][i];
                g[i] = sum / (double)k;
            }
            ref_server(&r, m, v, g, ref, N);
            rc |= flc_merge_run(&r, st, &b, out, NULL, NULL);
            worst = fmax(worst, max_rel(out, ref, N, 1e-4));
        }
        CHECK(rc == 0 && worst <= 1e-5 && st->rounds == 3,
              "%s: 3 rounds match the reference loop (max relative error %.2e)", specs[s], worst);
        flc_merge_state_free(st);
    }
    free(g);
    free(m);
    free(v);
}

/* Merging S uneven shards separately (norms given from outside, distances
 * summed) equals merging the whole vector, bit for bit. */
static void check_sharded(float *out)
{
    const size_t cut[5] = {0, 1000, 1001, 3500, N}; /* shards of 1000, 1, 2499, 1503 */
    const char *specs[] = {"fedavg:clip=20", "median:clip=20", "trimmed-mean:trim=0.2",
                           "fedadam:clip=20", "multi-krum:f=2,clip=20"};
    size_t k = 8;
    float *whole = malloc(N * sizeof *whole);
    double norms[KMAX];
    for (size_t j = 0; j < k; j++)
        norms[j] = norm_of(U[j], N);
    for (int s = 0; s < 5; s++) {
        flc_merge_rule_t r = rule(specs[s]);
        flc_merge_state_t *st = flc_merge_rule_has_state(&r) ? flc_merge_state_new(&r, N, NULL)
                                                              : NULL;
        flc_merge_batch_t b = {.u = (const float *const *)U, .k = k, .n = N, .weight = W,
                               .norm = norms};
        int rc = flc_merge_run(&r, st, &b, whole, NULL, NULL);
        flc_merge_state_free(st);

        /* Krum: sum the shards' partial distances first, select once. */
        double D[64] = {0}, scale[KMAX];
        size_t sel[8], m = 0;
        int f = 0;
        flc_merge_batch_scales(&r, &b, scale);
        int krum = r.kind == FLC_MERGE_MULTI_KRUM;
        if (krum) {
            rc |= flc_merge_krum_params(&r, k, &f, &m, NULL);
            for (int p = 0; p < 4; p++) {
                const float *sh[8];
                for (size_t j = 0; j < k; j++)
                    sh[j] = U[j] + cut[p];
                rc |= flc_merge_sqdist_partial(sh, k, cut[p + 1] - cut[p], scale, D, NULL);
            }
            rc |= flc_merge_krum_select(D, k, f, m, sel, NULL, NULL);
        }
        for (int p = 0; p < 4; p++) {
            const float *sh[8];
            for (size_t j = 0; j < k; j++)
                sh[j] = U[j] + cut[p];
            size_t len = cut[p + 1] - cut[p];
            if (krum) {
                rc |= flc_merge_mean_of(sh, sel, m, len, scale, out + cut[p], NULL);
                continue;
            }
            flc_merge_state_t *sst = flc_merge_rule_has_state(&r)
                                         ? flc_merge_state_new(&r, len, NULL) : NULL;
            flc_merge_batch_t sb = {.u = sh, .k = k, .n = len, .weight = W, .norm = norms};
            rc |= flc_merge_run(&r, sst, &sb, out + cut[p], NULL, NULL);
            flc_merge_state_free(sst);
        }
        CHECK(rc == 0 && memcmp(out, whole, N * sizeof *out) == 0,
              "%s: 4 uneven shards merged apart equal the whole merge bit for bit", specs[s]);
    }
    free(whole);
}

/* The updates every case merges, made once by the runner: KMAX updates of
 * different sizes (so clipping and weights matter) and their weights. */
static void setup(void)
{
    for (size_t j = 0; j < KMAX; j++) {
        U[j] = malloc(N * sizeof(float));
        flc_t_fill(U[j], N, (unsigned)(j + 1));
        float amp = 0.5f + (float)(j % 7);
        for (size_t i = 0; i < N; i++)
            U[j][i] *= amp;
        W[j] = 1 + (double)((j * 37) % 100);
    }
}

static void teardown(void)
{
    for (size_t j = 0; j < KMAX; j++)
        free(U[j]);
}

/* Runs one of the checks above with an output and a reference buffer. */
static void with_buffers(void (*check)(float *out, double *ref))
{
    float *out = malloc(N * sizeof *out);
    double *ref = malloc(N * sizeof *ref);
    check(out, ref);
    free(out);
    free(ref);
}

TEST(fedavg)
{
    with_buffers(check_fedavg);
}

TEST(clipped_mean)
{
    with_buffers(check_clipped_mean);
}

TEST(robust)
{
    with_buffers(check_robust);
}

TEST(krum)
{
    with_buffers(check_krum);
}

TEST(server_optimizers)
{
    with_buffers(check_server);
}

TEST(sharded_equals_whole)
{
    float *out = malloc(N * sizeof *out);
    check_sharded(out);
    free(out);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(fedavg), TEST_ENTRY(clipped_mean),
                 TEST_ENTRY(robust), TEST_ENTRY(krum), TEST_ENTRY(server_optimizers),
                 TEST_ENTRY(sharded_equals_whole))
