/* Input checks shared by every merge rule: finiteness, lengths, weights, and
 * the per-update clipping factors.
 *
 * The finite check is the store's (flc_find_nonfinite, cache/shard_codec.h:
 * exponent bits, a block at a time, vectorized), so a push, a merger and a
 * rule judge a value alike. */
#include "aggregator/merge.h"

#include <math.h>
#include <string.h>

#include "cache/shard_codec.h"

int flc_merge_check_finite(const float *v, size_t n, size_t *pos)
{
    int64_t at = flc_find_nonfinite(v, n);
    if (at < 0)
        return FLC_OK;
    if (pos)
        *pos = (size_t)at;
    return FLC_ENONFINITE;
}

double flc_merge_sumsq(const float *v, size_t n)
{
    /* Squares of floats are exact in double; eight running sums keep the
     * loop free of a serial dependence. (OpenBLAS dsdot was measured 7e-9
     * off the double reference here, which is enough to move a clipped
     * update's factor, so it is not used.) */
    double s[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            s[j] += (double)v[i + j] * (double)v[i + j];
    for (; i < n; i++)
        s[0] += (double)v[i] * (double)v[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

double flc_merge_clip_scale(double norm, double clip)
{
    if (!(clip > 0) || !(norm > clip))
        return 1.0;
    return clip / norm;
}

/* Names what is wrong with value v of update i ("NaN", "+Inf"). */
static const char *nonfinite_name(float v)
{
    if (isnan(v))
        return "NaN";
    return v > 0 ? "+Inf" : "-Inf";
}

int flc_merge_batch_check_args(const flc_merge_rule_t *r, const flc_merge_batch_t *b,
                               flc_err_t *e)
{
    if (b == NULL || b->k == 0 || b->u == NULL)
        return flc_err_set(e, FLC_EINVAL, "merge %s: no updates to merge",
                           r ? flc_merge_kind_name(r->kind) : "?");
    const char *rule = flc_merge_kind_name(r->kind);
    int weighted = flc_merge_rule_weighted(r);
    double total = 0;
    for (size_t i = 0; i < b->k; i++) {
        if (b->u[i] == NULL && b->n > 0)
            return flc_err_set(e, FLC_EINVAL, "merge %s: update %zu is missing (NULL)", rule, i);
        if (b->len && b->len[i] != b->n)
            return flc_err_set(e, FLC_EDIM, "merge %s: update %zu has %zu floats, expected %zu",
                               rule, i, b->len[i], b->n);
        if (b->weight) {
            double w = b->weight[i];
            if (!isfinite(w) || w < 0)
                return flc_err_set(e, FLC_EINVAL, "merge %s: update %zu has weight %g (must be "
                                   "finite and >= 0)", rule, i, w);
            total += w;
        } else {
            total += 1;
        }
        if (b->scale && (!isfinite(b->scale[i]) || b->scale[i] < 0))
            return flc_err_set(e, FLC_EINVAL, "merge %s: update %zu has scale %g (must be "
                               "finite and >= 0)", rule, i, b->scale[i]);
        if (b->norm && (!isfinite(b->norm[i]) || b->norm[i] < 0))
            return flc_err_set(e, FLC_EINVAL, "merge %s: update %zu has norm %g (must be "
                               "finite and >= 0)", rule, i, b->norm[i]);
    }
    if (weighted && !(total > 0))
        return flc_err_set(e, FLC_EINVAL, "merge %s: the %zu updates have total weight 0", rule,
                           b->k);
    return FLC_OK;
}

int flc_merge_batch_check(const flc_merge_rule_t *r, const flc_merge_batch_t *b, flc_err_t *e)
{
    int rc = flc_merge_batch_check_args(r, b, e);
    if (rc)
        return rc;
    const char *rule = flc_merge_kind_name(r->kind);
    for (size_t i = 0; i < b->k; i++) {
        size_t pos;
        if (flc_merge_check_finite(b->u[i], b->n, &pos))
            return flc_err_set(e, FLC_ENONFINITE, "merge %s: update %zu holds %s at element %zu",
                               rule, i, nonfinite_name(b->u[i][pos]), pos);
    }
    return FLC_OK;
}

size_t flc_merge_batch_scales(const flc_merge_rule_t *r, const flc_merge_batch_t *b, double *s)
{
    size_t clipped = 0;
    for (size_t i = 0; i < b->k; i++) {
        if (b->scale)
            s[i] = b->scale[i];
        else if (r->clip > 0)
            s[i] = flc_merge_clip_scale(b->norm ? b->norm[i] : sqrt(flc_merge_sumsq(b->u[i], b->n)),
                                        r->clip);
        else
            s[i] = 1.0;
        clipped += s[i] < 1.0;
    }
    return clipped;
}
