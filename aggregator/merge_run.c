/* flc_merge_run: one call that merges a batch of updates with any rule.
 *
 * It validates the batch once (lengths, weights; NaN/Inf are found by the
 * kernels as they read each block, merge_internal.h), works out each
 * update's pre-merge factor (clipping), and hands the slice to the rule's
 * own file: averaging (merge_avg.c), server optimizers (merge_server_opt.c),
 * median / trimmed mean (merge_robust.c), Krum (merge_krum.c) or Bulyan
 * (merge_bulyan.c). */
#include "aggregator/merge.h"
#include "aggregator/dp.h"
#include "aggregator/merge_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double flc_merge_apply_weights(const flc_merge_rule_t *r, const flc_merge_batch_t *b,
                               double *coef)
{
    int weighted = flc_merge_rule_weighted(r);
    double total = 0;
    for (size_t i = 0; i < b->k; i++) {
        double w = weighted && b->weight ? b->weight[i] : 1.0;
        coef[i] *= w;
        total += w;
    }
    return total;
}

/* fedavg, mean and the server optimizers' pseudo-gradient; the kernel
 * checks for NaN/Inf as it reads. */
static int run_average(const flc_merge_rule_t *r, const flc_merge_batch_t *b, double *coef,
                       float *out, flc_err_t *e)
{
    double total = flc_merge_apply_weights(r, b, coef);
    size_t j, pos;
    if (flc_merge_wsum(b->u, b->k, b->n, coef, 1.0 / total, out, &j, &pos))
        return flc_err_set(e, FLC_ENONFINITE, "merge %s: update %zu holds %s at element %zu",
                           flc_merge_kind_name(r->kind), j,
                           isnan(b->u[j][pos]) ? "NaN" : (b->u[j][pos] > 0 ? "+Inf" : "-Inf"),
                           pos);
    return FLC_OK;
}

static int run_krum(const flc_merge_rule_t *r, const flc_merge_batch_t *b, const double *s,
                    float *out, unsigned char *used, flc_err_t *e)
{
    int f;
    size_t m;
    int rc = flc_merge_krum_params(r, b->k, &f, &m, e);
    if (rc)
        return rc;
    size_t k = b->k;
    double *D = calloc(k * k, sizeof *D);
    size_t *sel = malloc(m * sizeof *sel);
    if (D == NULL || sel == NULL) {
        rc = flc_err_set(e, FLC_ENOMEM, "merge %s: cannot allocate a %zux%zu distance matrix",
                         flc_merge_kind_name(r->kind), k, k);
        goto out;
    }
    rc = flc_merge_sqdist_partial_x(b->u, k, b->n, s, 1, D, e);
    if (rc == FLC_OK)
        rc = flc_merge_krum_select(D, k, f, m, sel, NULL, e);
    if (rc == FLC_OK)
        rc = flc_merge_mean_of(b->u, sel, m, b->n, s, out, e);
    if (rc == FLC_OK && used) {
        for (size_t i = 0; i < k; i++)
            used[i] = 0;
        for (size_t i = 0; i < m; i++)
            used[sel[i]] = 1;
    }
out:
    free(D);
    free(sel);
    return rc;
}

/* Bulyan over the batch; ties go to the lower index (the batch's order). */
static int run_bulyan(const flc_merge_rule_t *r, const flc_merge_batch_t *b, const double *s,
                      float *out, unsigned char *used, flc_err_t *e)
{
    int f;
    size_t theta, beta, k = b->k;
    int rc = flc_merge_bulyan_params(r, k, &f, &theta, &beta, e);
    if (rc)
        return rc;
    double *D = calloc(k * k, sizeof *D);
    size_t *sel = malloc(theta * sizeof *sel);
    if (D == NULL || sel == NULL)
        rc = flc_err_set(e, FLC_ENOMEM, "merge bulyan: cannot allocate a %zux%zu distance "
                         "matrix", k, k);
    if (rc == FLC_OK)
        rc = flc_merge_sqdist_partial_x(b->u, k, b->n, s, 1, D, e);
    if (rc == FLC_OK)
        rc = flc_merge_bulyan_select(D, k, f, theta, NULL, sel, e);
    if (rc == FLC_OK)
        rc = flc_merge_bulyan_trim(b->u, sel, theta, beta, b->n, s, NULL, out, e);
    if (rc == FLC_OK && used) {
        memset(used, 0, k);
        for (size_t i = 0; i < theta; i++)
            used[sel[i]] = 1;
    }
    free(D);
    free(sel);
    return rc;
}

int flc_merge_run(const flc_merge_rule_t *r, flc_merge_state_t *st, const flc_merge_batch_t *b,
                  float *out, flc_merge_info_t *info, flc_err_t *e)
{
    if (r == NULL)
        return flc_err_set(e, FLC_EINVAL, "merge: no rule given");
    int rc = flc_merge_rule_check(r, e);
    if (rc)
        return rc;
    /* Every kernel scans for NaN/Inf as it reads a block (merge_internal.h):
     * a scan up front would be one more pass over all k updates from memory. */
    rc = flc_merge_batch_check_args(r, b, e);
    if (rc)
        return rc;
    int averaging = r->kind == FLC_MERGE_FEDAVG || r->kind == FLC_MERGE_MEAN ||
                    flc_merge_rule_has_state(r);
    const char *rule = flc_merge_kind_name(r->kind);
    if (flc_merge_rule_has_state(r)) {
        if (st == NULL)
            return flc_err_set(e, FLC_EINVAL, "merge %s: needs its server state", rule);
        if (st->kind != r->kind || st->n != b->n)
            return flc_err_set(e, FLC_EINVAL, "merge %s: server state is for %s over %zu floats, "
                               "not %zu", rule, flc_merge_kind_name(st->kind), st->n, b->n);
    }
    double *s = malloc(b->k * sizeof *s);
    if (s == NULL)
        return flc_err_set(e, FLC_ENOMEM, "merge %s: cannot allocate %zu factors", rule, b->k);
    size_t clipped = flc_merge_batch_scales(r, b, s);
    int scaled = 0;
    for (size_t i = 0; i < b->k; i++)
        scaled |= s[i] != 1.0;
    const double *sf = scaled ? s : NULL;
    if (info) {
        info->clipped = clipped;
        if (info->used)
            for (size_t i = 0; i < b->k; i++)
                info->used[i] = 1;
    }
    switch (r->kind) {
    case FLC_MERGE_FEDAVG:
    case FLC_MERGE_MEAN:
        rc = run_average(r, b, s, out, e);
        if (rc == FLC_OK)
            rc = flc_dp_noise_mean(r, b->k, out, b->n, e);
        break;
    case FLC_MERGE_FEDAVGM:
    case FLC_MERGE_FEDADAM:
    case FLC_MERGE_FEDYOGI:
    case FLC_MERGE_FEDADAGRAD:
        rc = run_average(r, b, s, out, e);
        if (rc == FLC_OK)
            rc = flc_merge_server_step(r, st, out, out, b->n, e);
        break;
    case FLC_MERGE_MEDIAN:
        rc = flc_merge_median_x(b->u, b->k, b->n, sf, 1, out, e);
        break;
    case FLC_MERGE_TRIMMED_MEAN:
        rc = flc_merge_trimmed_mean_x(b->u, b->k, b->n, sf, r->trim, 1, out, e);
        break;
    case FLC_MERGE_KRUM:
    case FLC_MERGE_MULTI_KRUM:
        rc = run_krum(r, b, sf, out, info ? info->used : NULL, e);
        break;
    case FLC_MERGE_BULYAN:
        rc = run_bulyan(r, b, sf, out, info ? info->used : NULL, e);
        break;
    default:
        rc = flc_err_set(e, FLC_EINVAL, "merge: unknown rule kind %d", (int)r->kind);
        break;
    }
    free(s);
    /* The robust kernels found a NaN/Inf, or failed otherwise (Krum's f, for
     * one) on a batch the up-front scan would have refused first: the scan's
     * message and precedence, as before the scan moved into the kernels. */
    int scan;
    if (rc && !averaging && (scan = flc_merge_batch_check(r, b, e)) != FLC_OK)
        return scan;
    return rc;
}
