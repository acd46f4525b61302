/* Differential privacy of a simulation (issue 16 point 3), kept out of the
 * round loop: the accountant's step per round (central DP's noise, or local
 * DP's, both at the sampling rate q = K / eligible clients, reported at
 * FLC_SIM_DP_DELTA) and adaptive clipping's update of the clip norm from
 * the norms the clients report (Andrew et al. 2021: eta 0.2, count noise
 * sigma_b = K/20). The arithmetic is aggregator/dp*.c. */
#include <cjson/cJSON.h>

#include "clients/sim_internal.h"

int sim_dp_setup(sim_dp_t *d, const flc_sim_cfg_t *c, flc_merge_rule_t *rule, flc_err_t *e)
{
    flc_dp_acct_init(&d->acct);
    d->z = rule->noise > 0 ? rule->noise : c->ldp_noise;
    if (c->dp_quantile > 0 && rule->noise > 0) {
        /* Adaptive clipping spends part of z on the count's noise. */
        double sb = (double)c->per_round / 20, zd = flc_dp_update_noise(rule->noise, sb);
        if (zd < 0)
            return flc_err_set(e, FLC_EINVAL, "adaptive clipping: noise %g is too small for "
                               "the count's noise K/20 = %g", rule->noise, sb);
        rule->noise = zd;
    }
    return FLC_OK;
}

int sim_dp_round(sim_dp_t *d, const flc_sim_cfg_t *c, flc_merge_rule_t *rule,
                 const flc_sim_inv_t *inv, size_t k, size_t neligible, sim_round_rec_t *rec,
                 flc_err_t *e)
{
    rec->dp_epsilon = -1;
    rec->dp_delta = 0;
    rec->dp_clip = c->dp_quantile > 0 ? rule->clip : -1;
    if (d->z > 0 && neligible > 0 &&
        flc_dp_acct_step(&d->acct, (double)k / (double)neligible, d->z, 1, NULL) == FLC_OK) {
        rec->dp_delta = FLC_SIM_DP_DELTA;
        rec->dp_epsilon = flc_dp_acct_epsilon(&d->acct, rec->dp_delta, NULL);
    }
    if (!(c->dp_quantile > 0))
        return FLC_OK;
    size_t below = 0, sent = 0; /* sent updates within the clip norm */
    for (size_t i = 0; i < k; i++) {
        const cJSON *n =
            inv[i].ok ? cJSON_GetObjectItemCaseSensitive(inv[i].result, "update_norm") : NULL;
        if (cJSON_IsNumber(n)) {
            sent++;
            below += n->valuedouble <= rule->clip;
        }
    }
    return flc_dp_clip_adapt(&rule->clip, below, sent, c->dp_quantile, 0.2,
                             rule->noise > 0 ? (double)c->per_round / 20 : 0, e);
}
