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
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Floats per block of the kernels: a block's double sums (4 KB) stay in L1,
 * and k rows of it in L1/L2, so the finite check and the sums read each
 * update from memory once. */
#define WS_BLOCK 512

#if defined(__GNUC__) && defined(__x86_64__)
#define FLC_HAVE_AVX2_CLONE 1
#endif

/* A bad value found by a kernel: which update and which element. */
typedef struct bad_at {
    size_t update, pos;
} bad_at_t;

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

/* Checks the block [off, off+m) of every update; fills *bad on failure. */
static inline __attribute__((always_inline)) int
rows_finite(const float *const *u, size_t k, size_t off, size_t m, bad_at_t *bad)
{
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
        if (!rows_finite(u, k, b, m, bad))
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
        if (!rows_finite(u, k, b, m, bad)) {
            for (size_t r = 0; r < b; r += WS_BLOCK)
                wsum_block(u, k, r, WS_BLOCK, coef, -1.0, sum + r);
            return FLC_ENONFINITE;
        }
        wsum_block(u, k, b, m, coef, 1.0, sum + b);
    }
    return FLC_OK;
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

/* sum += sum_j coef_j u_j, all or nothing (see fold_body). */
static int fold(const float *const *u, size_t k, size_t n, const double *coef, double *sum,
                bad_at_t *bad)
{
#ifdef FLC_HAVE_AVX2_CLONE
    if (__builtin_cpu_supports("avx2"))
        return fold_avx2(u, k, n, coef, sum, bad);
#endif
    return fold_plain(u, k, n, coef, sum, bad);
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

static const char *nonfinite_name(float v)
{
    return isnan(v) ? "NaN" : (v > 0 ? "+Inf" : "-Inf");
}

/* Adds weight*scale*u; a NaN/Inf is found while adding and leaves the sum
 * as it was (see fold_body). */
static int fold_one(flc_merge_acc_t *acc, const float *u, double weight, double scale,
                    flc_err_t *e)
{
    double w = flc_merge_rule_weighted(&acc->rule) ? weight : 1.0;
    double c = w * scale;
    bad_at_t bad;
    if (fold(&u, 1, acc->n, &c, acc->sum, &bad))
        return flc_err_set(e, FLC_ENONFINITE, "merge %s: update %zu holds %s at element %zu",
                           flc_merge_kind_name(acc->rule.kind), acc->count,
                           nonfinite_name(u[bad.pos]), bad.pos);
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
    if (acc->rule.clip > 0) {
        if (norm < 0) {
            /* a NaN/Inf makes the norm NaN/Inf, which clips nothing; the
             * fold then finds and refuses it */
            norm = sqrt(flc_merge_sumsq(u, n));
            if (!isfinite(norm))
                norm = 0;
        } else if (!isfinite(norm)) {
            return flc_err_set(e, FLC_EINVAL, "merge %s: update %zu has norm %g",
                               flc_merge_kind_name(acc->rule.kind), acc->count, norm);
        }
        scale = flc_merge_clip_scale(norm, acc->rule.clip);
    }
    return fold_one(acc, u, weight, scale, e);
}

int flc_merge_acc_fold_fn(flc_merge_acc_t *acc, size_t n, double weight, double norm,
                          flc_merge_block_fn get, void *user, flc_err_t *e)
{
    float blk[WS_BLOCK];
    const float *u = blk;
    int rc = fold_args(acc, blk, n, weight, e);
    if (rc)
        return rc;
    double scale = 1.0;
    if (acc->rule.clip > 0) {
        if (norm < 0) {
            double ss = 0;
            for (size_t b = 0; b < n; b += WS_BLOCK) {
                size_t m = n - b < WS_BLOCK ? n - b : WS_BLOCK;
                get(user, b, m, blk);
                ss += flc_merge_sumsq(blk, m);
            }
            norm = isfinite(ss) ? sqrt(ss) : 0;
        } else if (!isfinite(norm)) {
            return flc_err_set(e, FLC_EINVAL, "merge %s: update %zu has norm %g",
                               flc_merge_kind_name(acc->rule.kind), acc->count, norm);
        }
        scale = flc_merge_clip_scale(norm, acc->rule.clip);
    }
    double w = flc_merge_rule_weighted(&acc->rule) ? weight : 1.0;
    double c = w * scale, minus = -c;
    bad_at_t bad;
    for (size_t b = 0; b < n; b += WS_BLOCK) {
        size_t m = n - b < WS_BLOCK ? n - b : WS_BLOCK;
        get(user, b, m, blk);
        if (fold(&u, 1, m, &c, acc->sum + b, &bad)) {
            float v = blk[bad.pos];
            /* take back the blocks already added, as fold_body does */
            for (size_t r = 0; r < b; r += WS_BLOCK) {
                get(user, r, WS_BLOCK, blk);
                fold(&u, 1, WS_BLOCK, &minus, acc->sum + r, &bad);
            }
            return flc_err_set(e, FLC_ENONFINITE, "merge %s: update %zu holds %s at element "
                               "%zu", flc_merge_kind_name(acc->rule.kind), acc->count,
                               nonfinite_name(v), b + bad.pos);
        }
    }
    acc->count++;
    acc->weight += w;
    return FLC_OK;
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
    return fold_one(acc, u, weight, scale, e);
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
    int rc = flc_merge_batch_check_args(&acc->rule, b, e);
    if (rc)
        return rc;
    double total;
    double *c = batch_coefs(&acc->rule, b, &total, NULL);
    if (c == NULL)
        return flc_err_set(e, FLC_ENOMEM, "merge: cannot allocate %zu coefficients", b->k);
    bad_at_t bad;
    rc = fold(b->u, b->k, b->n, c, acc->sum, &bad);
    free(c);
    if (rc)
        return flc_err_set(e, FLC_ENONFINITE, "merge %s: update %zu holds %s at element %zu",
                           flc_merge_kind_name(acc->rule.kind), bad.update,
                           nonfinite_name(b->u[bad.update][bad.pos]), bad.pos);
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
