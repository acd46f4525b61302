/* Server optimizers: FedAvgM (server momentum, Hsu et al. 2019) and the
 * adaptive FedOpt family FedAdagrad, FedAdam and FedYogi (Reddi et al. 2021,
 * "Adaptive Federated Optimization", Algorithm 2).
 *
 * The pseudo-gradient g is the mean client delta of the round. The state
 * (m, and v for the adaptive rules) is per slice, so the merger of each
 * shard keeps its own and the shards' steps together equal the whole-model
 * step: every update below is element-wise. As in the paper there is no bias
 * correction and v starts at tau^2. Each element is computed in double and
 * stored as float. */
#include "aggregator/merge.h"

#include <math.h>
#include <stdlib.h>

flc_merge_state_t *flc_merge_state_new(const flc_merge_rule_t *r, size_t n, flc_err_t *e)
{
    if (r == NULL || !flc_merge_rule_has_state(r)) {
        flc_err_set(e, FLC_EINVAL, "merge rule %s keeps no server state",
                    r ? flc_merge_kind_name(r->kind) : "(none)");
        return NULL;
    }
    if (flc_merge_rule_check(r, e))
        return NULL;
    flc_merge_state_t *st = calloc(1, sizeof *st);
    if (st == NULL)
        goto oom;
    st->m = malloc((n ? n : 1) * sizeof *st->m);
    if (st->m == NULL)
        goto oom;
    if (r->kind != FLC_MERGE_FEDAVGM) {
        st->v = malloc((n ? n : 1) * sizeof *st->v);
        if (st->v == NULL)
            goto oom;
    }
    st->n = n;
    flc_merge_state_reset(st, r);
    return st;
oom:
    flc_merge_state_free(st);
    flc_err_set(e, FLC_ENOMEM, "merge %s: cannot allocate server state of %zu floats",
                flc_merge_kind_name(r->kind), n);
    return NULL;
}

void flc_merge_state_free(flc_merge_state_t *st)
{
    if (st == NULL)
        return;
    free(st->m);
    free(st->v);
    free(st);
}

void flc_merge_state_reset(flc_merge_state_t *st, const flc_merge_rule_t *r)
{
    st->kind = r->kind;
    st->rounds = 0;
    for (size_t i = 0; i < st->n; i++)
        st->m[i] = 0;
    if (st->v) {
        float v0 = (float)(r->tau * r->tau);
        for (size_t i = 0; i < st->n; i++)
            st->v[i] = v0;
    }
}

static void step_momentum(const flc_merge_rule_t *r, float *restrict m, const float *g, float *out,
                          size_t n)
{
    double beta = r->momentum, eta = r->server_lr;
    for (size_t i = 0; i < n; i++) {
        double mi = beta * (double)m[i] + (double)g[i];
        m[i] = (float)mi;
        out[i] = (float)(eta * mi);
    }
}

static void step_adaptive(const flc_merge_rule_t *r, float *restrict m, float *restrict v,
                          const float *g, float *out, size_t n)
{
    double b1 = r->beta1, b2 = r->beta2, tau = r->tau, eta = r->server_lr;
    for (size_t i = 0; i < n; i++) {
        double gi = (double)g[i], g2 = gi * gi;
        double mi = b1 * (double)m[i] + (1.0 - b1) * gi;
        double vi = (double)v[i];
        switch (r->kind) {
        case FLC_MERGE_FEDADAGRAD:
            vi = vi + g2;
            break;
        case FLC_MERGE_FEDADAM:
            vi = b2 * vi + (1.0 - b2) * g2;
            break;
        default: /* FedYogi: v moves toward g^2 by at most (1-beta2) g^2 */
            vi = vi - (1.0 - b2) * g2 * (double)((vi > g2) - (vi < g2));
            break;
        }
        m[i] = (float)mi;
        v[i] = (float)vi;
        out[i] = (float)(eta * mi / (sqrt(vi) + tau));
    }
}

int flc_merge_server_step(const flc_merge_rule_t *r, flc_merge_state_t *st, const float *g,
                          float *out, size_t n, flc_err_t *e)
{
    const char *rule = r ? flc_merge_kind_name(r->kind) : "(none)";
    if (r == NULL || !flc_merge_rule_has_state(r))
        return flc_err_set(e, FLC_EINVAL, "merge rule %s has no server step", rule);
    if (st == NULL)
        return flc_err_set(e, FLC_EINVAL, "merge %s: needs its server state", rule);
    if (st->kind != r->kind || st->n != n)
        return flc_err_set(e, FLC_EINVAL, "merge %s: server state is for %s over %zu floats, "
                           "not %zu", rule, flc_merge_kind_name(st->kind), st->n, n);
    if (r->kind != FLC_MERGE_FEDAVGM && st->v == NULL)
        return flc_err_set(e, FLC_EINVAL, "merge %s: server state has no second moment", rule);
    if (r->kind == FLC_MERGE_FEDAVGM)
        step_momentum(r, st->m, g, out, n);
    else
        step_adaptive(r, st->m, st->v, g, out, n);
    st->rounds++;
    return FLC_OK;
}
