/* The streaming accumulator of the averaging rules (FedAvg, mean, the
 * server optimizers' pseudo-gradient): a running weighted sum in double of
 * one slice, folding updates one at a time as they land (or a batch of
 * them), with the kernels of merge_avg.c.
 *
 * A round's first fold writes the sum without reading it (reset does not
 * clear it), which spares a memset and a read of the n doubles per round;
 * the bits are those of 0 + c*u, as if the sum had been cleared. */
#include "aggregator/merge.h"
#include "aggregator/merge_internal.h"
#include "base/bigbuf.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define WS_BLOCK FLC_MERGE_WS_BLOCK

struct flc_merge_acc {
    flc_merge_rule_t rule;
    size_t n;
    double *sum;   /* running sum of weight*scale*u, n doubles */
    size_t count;  /* updates folded */
    int zero;      /* sum is all zeros but not written yet (after reset) */
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
    /* A big sum populated in one call (base/bigbuf.h): a merger is new
     * every round, and its first fold took the sum's page faults one 4 KiB
     * page at a time (bench/cluster's round, perf: a fifth of the mergers'
     * faults on a 1.7 MB shard; every fault traps to the hypervisor here). */
    if (acc != NULL)
        acc->sum = flc_buf_alloc(n * sizeof *acc->sum);
    if (acc == NULL || acc->sum == NULL) {
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
    flc_buf_free(acc->sum, acc->n * sizeof *acc->sum);
    free(acc);
}

/* The sum's memory as zeros for the folds that read it. */
static double *acc_sum(flc_merge_acc_t *acc)
{
    if (acc->zero) {
        memset(acc->sum, 0, acc->n * sizeof *acc->sum);
        acc->zero = 0;
    }
    return acc->sum;
}

void flc_merge_acc_reset(flc_merge_acc_t *acc)
{
    /* no memset: the next fold writes the sum without reading it */
    acc->zero = 1;
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
    flc_merge_bad_t bad;
    if (flc_merge_fold_one(u, acc->n, c, acc->zero, acc->sum, &bad))
        return flc_err_set(e, FLC_ENONFINITE, "merge %s: update %zu holds %s at element %zu",
                           flc_merge_kind_name(acc->rule.kind), acc->count,
                           nonfinite_name(u[bad.pos]), bad.pos);
    acc->zero = 0;
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
    flc_merge_bad_t bad;
    for (size_t b = 0; b < n; b += WS_BLOCK) {
        size_t m = n - b < WS_BLOCK ? n - b : WS_BLOCK;
        get(user, b, m, blk);
        if (flc_merge_fold_rows(&u, 1, m, &c, acc_sum(acc) + b, &bad)) {
            float v = blk[bad.pos];
            /* take back the blocks already added, as fold_body does */
            for (size_t r = 0; r < b; r += WS_BLOCK) {
                get(user, r, WS_BLOCK, blk);
                flc_merge_fold_rows(&u, 1, WS_BLOCK, &minus, acc->sum + r, &bad);
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
    *total = flc_merge_apply_weights(r, b, c);
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
    flc_merge_bad_t bad;
    rc = flc_merge_fold_rows(b->u, b->k, b->n, c, acc_sum(acc), &bad);
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
    const double *sum = acc_sum(acc); /* zeros only if every update had weight 0 */
    for (size_t i = 0; i < acc->n; i++)
        out[i] = (float)(sum[i] * inv);
    if (flc_merge_rule_has_state(r))
        return flc_merge_server_step(r, st, out, out, acc->n, e);
    return FLC_OK;
}

/* ---- one update window by window (merge.h, flc_merge_acc_part_*) ---- */

int flc_merge_acc_part_begin(flc_merge_acc_t *acc, double weight, double norm,
                             flc_merge_acc_part_t *p, flc_err_t *e)
{
    const char *rule = flc_merge_kind_name(acc->rule.kind);
    /* fold_args' weight check, with its message: a window is not an update */
    if (!isfinite(weight) || weight < 0)
        return flc_err_set(e, FLC_EINVAL, "merge %s: update %zu has weight %g (must be finite "
                           "and >= 0)", rule, acc->count, weight);
    double scale = 1.0;
    if (acc->rule.clip > 0) {
        if (norm < 0) /* its own norm would need a pass over the whole update first */
            return flc_err_set(e, FLC_EINVAL, "merge %s: update %zu folded by windows needs "
                               "its norm for clipping", rule, acc->count);
        if (!isfinite(norm))
            return flc_err_set(e, FLC_EINVAL, "merge %s: update %zu has norm %g", rule,
                               acc->count, norm);
        scale = flc_merge_clip_scale(norm, acc->rule.clip);
    }
    /* fold_one's coefficient, so every window adds what a whole fold adds */
    p->w = flc_merge_rule_weighted(&acc->rule) ? weight : 1.0;
    p->c = p->w * scale;
    p->first = acc->zero;
    return FLC_OK;
}

int flc_merge_acc_part_fold(flc_merge_acc_t *acc, const flc_merge_acc_part_t *p, const float *u,
                            size_t first, size_t m, size_t *bad, flc_err_t *e)
{
    if (first > acc->n || m > acc->n - first)
        return flc_err_set(e, FLC_EDIM, "merge %s: window [%zu, %zu) is outside the %zu floats",
                           flc_merge_kind_name(acc->rule.kind), first, first + m, acc->n);
    flc_merge_bad_t b;
    /* With p->first the sum is written, not read, in every window of the
     * update (acc->zero stays set until _end), as fold_one does at once. */
    if (flc_merge_fold_one(u, m, p->c, p->first, acc->sum + first, &b)) {
        *bad = b.pos;
        return flc_err_set(e, FLC_ENONFINITE, "merge %s: update %zu holds %s at element %zu",
                           flc_merge_kind_name(acc->rule.kind), acc->count,
                           nonfinite_name(u[b.pos]), first + b.pos);
    }
    return FLC_OK;
}

void flc_merge_acc_part_unfold(flc_merge_acc_t *acc, const flc_merge_acc_part_t *p,
                               const float *u, size_t first, size_t m)
{
    if (p->first) /* nothing was added: the sum still counts as zeros */
        return;
    /* What fold1_body does to the blocks before a bad one: add -c*u */
    double minus = -p->c;
    flc_merge_bad_t bad;
    flc_merge_fold_rows(&u, 1, m, &minus, acc->sum + first, &bad);
}

void flc_merge_acc_part_end(flc_merge_acc_t *acc, const flc_merge_acc_part_t *p)
{
    acc->zero = 0;
    acc->count++;
    acc->weight += p->w;
}

int flc_merge_acc_finish_range(const flc_merge_acc_t *acc, size_t first, size_t m, float *out,
                               flc_err_t *e)
{
    const flc_merge_rule_t *r = &acc->rule;
    if (acc->count == 0 || !(acc->weight > 0))
        return flc_err_set(e, FLC_EINVAL, "merge %s: nothing to merge (%zu updates, total weight "
                           "%g)", flc_merge_kind_name(r->kind), acc->count, acc->weight);
    if (flc_merge_rule_has_state(r))
        return flc_err_set(e, FLC_EINVAL, "merge %s: a server step needs the whole slice",
                           flc_merge_kind_name(r->kind));
    if (first > acc->n || m > acc->n - first)
        return flc_err_set(e, FLC_EDIM, "merge %s: range [%zu, %zu) is outside the %zu floats",
                           flc_merge_kind_name(r->kind), first, first + m, acc->n);
    double inv = 1.0 / acc->weight;
    const double *sum = acc->sum + first;
    if (acc->zero) { /* never written: finish reads zeros there */
        for (size_t i = 0; i < m; i++)
            out[i] = (float)(0.0 * inv);
        return FLC_OK;
    }
    for (size_t i = 0; i < m; i++) /* finish's loop */
        out[i] = (float)(sum[i] * inv);
    return FLC_OK;
}
