/* Weighted averaging: FedAvg, mean, clipped mean, the pseudo-gradient of the
 * server optimizers, and the streaming accumulator that folds updates one
 * at a time as they land.
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

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Floats per block of the batch kernel: its double sums (4 KB) stay in L1. */
#define WS_BLOCK 512

#if defined(__GNUC__) && defined(__x86_64__)
#define FLC_HAVE_AVX2_CLONE 1
#endif

/* acc[0..m) += sum_j coef[j] * u[j][off + i]. Four updates per pass over
 * acc, grouped as (a + b) + (c + d) so that the order is fixed. */
static inline __attribute__((always_inline)) void
wsum_block(const float *const *u, size_t k, size_t off, size_t m, const double *coef,
           double *restrict acc)
{
    size_t j = 0;
    for (; j + 4 <= k; j += 4) {
        const float *restrict p0 = u[j] + off, *restrict p1 = u[j + 1] + off;
        const float *restrict p2 = u[j + 2] + off, *restrict p3 = u[j + 3] + off;
        double c0 = coef[j], c1 = coef[j + 1], c2 = coef[j + 2], c3 = coef[j + 3];
        for (size_t i = 0; i < m; i++)
            acc[i] += (c0 * (double)p0[i] + c1 * (double)p1[i]) +
                      (c2 * (double)p2[i] + c3 * (double)p3[i]);
    }
    for (; j < k; j++) {
        const float *restrict p = u[j] + off;
        double c = coef[j];
        for (size_t i = 0; i < m; i++)
            acc[i] += c * (double)p[i];
    }
}

static inline __attribute__((always_inline)) void
wsum_body(const float *const *u, size_t k, size_t n, const double *coef, double inv,
          float *restrict out)
{
    double acc[WS_BLOCK];
    for (size_t b = 0; b < n; b += WS_BLOCK) {
        size_t m = n - b < WS_BLOCK ? n - b : WS_BLOCK;
        for (size_t i = 0; i < m; i++)
            acc[i] = 0;
        wsum_block(u, k, b, m, coef, acc);
        for (size_t i = 0; i < m; i++)
            out[b + i] = (float)(acc[i] * inv);
    }
}

static inline __attribute__((always_inline)) void
fold_many_body(const float *const *u, size_t k, size_t n, const double *coef, double *restrict sum)
{
    for (size_t b = 0; b < n; b += WS_BLOCK) {
        size_t m = n - b < WS_BLOCK ? n - b : WS_BLOCK;
        wsum_block(u, k, b, m, coef, sum + b);
    }
}

static inline __attribute__((always_inline)) void
fold_one_body(double *restrict sum, const float *restrict u, size_t n, double c)
{
    for (size_t i = 0; i < n; i++)
        sum[i] += c * (double)u[i];
}

static void wsum_plain(const float *const *u, size_t k, size_t n, const double *coef, double inv,
                       float *out)
{
    wsum_body(u, k, n, coef, inv, out);
}

static void fold_many_plain(const float *const *u, size_t k, size_t n, const double *coef,
                            double *sum)
{
    fold_many_body(u, k, n, coef, sum);
}

static void fold_one_plain(double *sum, const float *u, size_t n, double c)
{
    fold_one_body(sum, u, n, c);
}

#ifdef FLC_HAVE_AVX2_CLONE
__attribute__((target("avx2"))) static void
wsum_avx2(const float *const *u, size_t k, size_t n, const double *coef, double inv, float *out)
{
    wsum_body(u, k, n, coef, inv, out);
}

__attribute__((target("avx2"))) static void
fold_many_avx2(const float *const *u, size_t k, size_t n, const double *coef, double *sum)
{
    fold_many_body(u, k, n, coef, sum);
}

__attribute__((target("avx2"))) static void
fold_one_avx2(double *sum, const float *u, size_t n, double c)
{
    fold_one_body(sum, u, n, c);
}

static int use_avx2(void)
{
    return __builtin_cpu_supports("avx2");
}
#else
static int use_avx2(void)
{
    return 0;
}
#endif

void flc_merge_wsum(const float *const *u, size_t k, size_t n, const double *coef, double inv,
                    float *out)
{
#ifdef FLC_HAVE_AVX2_CLONE
    if (use_avx2()) {
        wsum_avx2(u, k, n, coef, inv, out);
        return;
    }
#endif
    wsum_plain(u, k, n, coef, inv, out);
}

static void fold_many(const float *const *u, size_t k, size_t n, const double *coef, double *sum)
{
#ifdef FLC_HAVE_AVX2_CLONE
    if (use_avx2()) {
        fold_many_avx2(u, k, n, coef, sum);
        return;
    }
#endif
    fold_many_plain(u, k, n, coef, sum);
}

static void fold_one(double *sum, const float *u, size_t n, double c)
{
#ifdef FLC_HAVE_AVX2_CLONE
    if (use_avx2()) {
        fold_one_avx2(sum, u, n, c);
        return;
    }
#endif
    fold_one_plain(sum, u, n, c);
}

/* ------------------------------------------------------------ accumulator */

struct flc_merge_acc {
    flc_merge_rule_t rule;
    size_t n;
    double *sum;   /* running sum of weight*scale*u, n doubles */
    size_t count;  /* updates folded */
    double weight; /* total weight folded (the FedAvg divisor) */
};

flc_merge_acc_t *flc_merge_acc_new(const flc_merge_rule_t *r, size_t n, flc_err_t *e)
{
    if (r == NULL) {
        flc_err_set(e, FLC_EINVAL, "merge accumulator: no rule given");
        return NULL;
    }
    if (flc_merge_rule_check(r, e))
        return NULL;
    if (!flc_merge_rule_streams(r)) {
        flc_err_set(e, FLC_EINVAL, "merge rule %s needs every update at once and cannot stream",
                    flc_merge_kind_name(r->kind));
        return NULL;
    }
    flc_merge_acc_t *acc = calloc(1, sizeof *acc);
    if (acc == NULL || (acc->sum = calloc(n ? n : 1, sizeof *acc->sum)) == NULL) {
        free(acc);
        flc_err_set(e, FLC_ENOMEM, "merge accumulator: cannot allocate %zu doubles", n);
        return NULL;
    }
    acc->rule = *r;
    acc->n = n;
    return acc;
}

void flc_merge_acc_free(flc_merge_acc_t *acc)
{
    if (acc == NULL)
        return;
    free(acc->sum);
    free(acc);
}

void flc_merge_acc_reset(flc_merge_acc_t *acc)
{
    memset(acc->sum, 0, acc->n * sizeof *acc->sum);
    acc->count = 0;
    acc->weight = 0;
}

size_t flc_merge_acc_count(const flc_merge_acc_t *acc)
{
    return acc->count;
}

double flc_merge_acc_weight(const flc_merge_acc_t *acc)
{
    return acc->weight;
}

/* The checks a single fold shares with a batch: length and weight. */
static int fold_args(const flc_merge_acc_t *acc, const float *u, size_t n, double weight,
                     flc_err_t *e)
{
    const char *rule = flc_merge_kind_name(acc->rule.kind);
    if (n != acc->n)
        return flc_err_set(e, FLC_EDIM, "merge %s: update %zu has %zu floats, expected %zu", rule,
                           acc->count, n, acc->n);
    if (u == NULL && n > 0)
        return flc_err_set(e, FLC_EINVAL, "merge %s: update %zu is missing (NULL)", rule,
                           acc->count);
    if (!isfinite(weight) || weight < 0)
        return flc_err_set(e, FLC_EINVAL, "merge %s: update %zu has weight %g (must be finite "
                           "and >= 0)", rule, acc->count, weight);
    return FLC_OK;
}

static int nonfinite_err(const flc_merge_acc_t *acc, const float *u, size_t n, flc_err_t *e)
{
    size_t pos = 0;
    flc_merge_check_finite(u, n, &pos);
    return flc_err_set(e, FLC_ENONFINITE, "merge %s: update %zu holds %s at element %zu",
                       flc_merge_kind_name(acc->rule.kind), acc->count,
                       isnan(u[pos]) ? "NaN" : (u[pos] > 0 ? "+Inf" : "-Inf"), pos);
}

/* Adds weight*scale*u after the whole update has been checked, so that a bad
 * update leaves the sum exactly as it was. */
static int fold_checked(flc_merge_acc_t *acc, const float *u, double weight, double scale,
                        int checked, flc_err_t *e)
{
    if (!checked && flc_merge_check_finite(u, acc->n, NULL))
        return nonfinite_err(acc, u, acc->n, e);
    double w = flc_merge_rule_weighted(&acc->rule) ? weight : 1.0;
    fold_one(acc->sum, u, acc->n, w * scale);
    acc->count++;
    acc->weight += w;
    return FLC_OK;
}

int flc_merge_acc_fold(flc_merge_acc_t *acc, const float *u, size_t n, double weight, double norm,
                       flc_err_t *e)
{
    int rc = fold_args(acc, u, n, weight, e);
    if (rc)
        return rc;
    double scale = 1.0;
    int checked = 0;
    if (acc->rule.clip > 0) {
        if (norm < 0) {
            /* The norm pass doubles as the finite check: a sum of squares in
             * double is finite exactly when every value is. */
            double ss = flc_merge_sumsq(u, n);
            if (!isfinite(ss))
                return nonfinite_err(acc, u, n, e);
            norm = sqrt(ss);
            checked = 1;
        } else if (!isfinite(norm)) {
            return flc_err_set(e, FLC_EINVAL, "merge %s: update %zu has norm %g",
                               flc_merge_kind_name(acc->rule.kind), acc->count, norm);
        }
        scale = flc_merge_clip_scale(norm, acc->rule.clip);
    }
    return fold_checked(acc, u, weight, scale, checked, e);
}

int flc_merge_acc_fold_scaled(flc_merge_acc_t *acc, const float *u, size_t n, double weight,
                              double scale, flc_err_t *e)
{
    int rc = fold_args(acc, u, n, weight, e);
    if (rc)
        return rc;
    if (!isfinite(scale) || scale < 0)
        return flc_err_set(e, FLC_EINVAL, "merge %s: update %zu has scale %g (must be finite and "
                           ">= 0)", flc_merge_kind_name(acc->rule.kind), acc->count, scale);
    return fold_checked(acc, u, weight, scale, 0, e);
}

/* Coefficients weight*scale of a batch and their weight total; NULL when out
 * of memory. */
static double *batch_coefs(const flc_merge_rule_t *r, const flc_merge_batch_t *b, double *total,
                           size_t *clipped)
{
    double *c = malloc(b->k * sizeof *c);
    if (c == NULL)
        return NULL;
    size_t nclip = flc_merge_batch_scales(r, b, c);
    int weighted = flc_merge_rule_weighted(r);
    double t = 0;
    for (size_t i = 0; i < b->k; i++) {
        double w = weighted && b->weight ? b->weight[i] : 1.0;
        c[i] *= w;
        t += w;
    }
    *total = t;
    if (clipped)
        *clipped = nclip;
    return c;
}

int flc_merge_acc_fold_batch(flc_merge_acc_t *acc, const flc_merge_batch_t *b, flc_err_t *e)
{
    if (b && b->n != acc->n)
        return flc_err_set(e, FLC_EDIM, "merge %s: batch slices have %zu floats, expected %zu",
                           flc_merge_kind_name(acc->rule.kind), b->n, acc->n);
    int rc = flc_merge_batch_check(&acc->rule, b, e);
    if (rc)
        return rc;
    double total;
    double *c = batch_coefs(&acc->rule, b, &total, NULL);
    if (c == NULL)
        return flc_err_set(e, FLC_ENOMEM, "merge: cannot allocate %zu coefficients", b->k);
    fold_many(b->u, b->k, b->n, c, acc->sum);
    free(c);
    acc->count += b->k;
    acc->weight += total;
    return FLC_OK;
}

int flc_merge_acc_finish(flc_merge_acc_t *acc, flc_merge_state_t *st, float *out, flc_err_t *e)
{
    const flc_merge_rule_t *r = &acc->rule;
    if (acc->count == 0 || !(acc->weight > 0))
        return flc_err_set(e, FLC_EINVAL, "merge %s: nothing to merge (%zu updates, total weight "
                           "%g)", flc_merge_kind_name(r->kind), acc->count, acc->weight);
    if (flc_merge_rule_has_state(r) && st == NULL)
        return flc_err_set(e, FLC_EINVAL, "merge %s: needs its server state",
                           flc_merge_kind_name(r->kind));
    if (st && flc_merge_rule_has_state(r) && (st->kind != r->kind || st->n != acc->n))
        return flc_err_set(e, FLC_EINVAL, "merge %s: server state is for %s over %zu floats, not "
                           "%zu", flc_merge_kind_name(r->kind), flc_merge_kind_name(st->kind),
                           st->n, acc->n);
    double inv = 1.0 / acc->weight;
    for (size_t i = 0; i < acc->n; i++)
        out[i] = (float)(acc->sum[i] * inv);
    if (flc_merge_rule_has_state(r))
        return flc_merge_server_step(r, st, out, out, acc->n, e);
    return FLC_OK;
}
