/* What the synchronous (sim.c) and asynchronous (async_sim.c) drivers
 * choose and write alike: the merge rule of a strategy, the seeded faulty
 * set, the global model series "<J>/g". One copy, so a seed gives both
 * drivers the same rule and the same faulty clients. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/clock.h"
#include "cache/store_ops.h"
#include "clients/sim_internal.h"
#include "ml/rng.h"

int sim_rule_for(const flc_sim_cfg_t *c, flc_merge_rule_t *r, flc_err_t *e)
{
    static const char *const names[FLC_SIM_NSTRATEGIES] = {
        "fedavg", "fedavg", "fedadam", "fedyogi", "median", "trimmed-mean", "krum", "multi-krum"};
    if (c->rule != NULL) /* --rule: the spec says everything about the merge */
        return flc_merge_rule_parse(r, c->rule, e);
    int rc = flc_merge_rule_init(r, names[c->strategy], e);
    if (rc == FLC_OK && (c->strategy == FLC_SIM_FEDADAM || c->strategy == FLC_SIM_FEDYOGI))
        rc = flc_merge_rule_set(r, "server_lr", c->server_lr, e);
    if (rc == FLC_OK && c->strategy == FLC_SIM_TRIMMED_MEAN)
        rc = flc_merge_rule_set(r, "trim", c->trim, e);
    if (rc == FLC_OK && (c->strategy == FLC_SIM_KRUM || c->strategy == FLC_SIM_MULTI_KRUM) &&
        c->krum_f >= 0)
        rc = flc_merge_rule_set(r, "f", c->krum_f, e);
    return rc;
}

int sim_faulty_set(const flc_sim_cfg_t *c, unsigned char *flags, size_t *nfaulty, flc_err_t *e)
{
    size_t nf = (size_t)llround(c->faulty * c->clients);
    *nfaulty = 0;
    if (nf == 0)
        return FLC_OK;
    uint32_t *perm = malloc((size_t)c->clients * sizeof *perm);
    if (perm == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory choosing %zu faulty clients of %d", nf,
                           c->clients);
    for (int i = 0; i < c->clients; i++)
        perm[i] = (uint32_t)i;
    flc_rng_t r;
    flc_rng_seed2(&r, c->seed, 0xFA017ull);
    for (size_t i = 0; i < nf; i++) { /* a partial Fisher-Yates shuffle */
        size_t j = i + (size_t)flc_rng_below(&r, (uint64_t)c->clients - i);
        uint32_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
        flags[perm[i]] = 1;
    }
    free(perm);
    *nfaulty = nf;
    return FLC_OK;
}

int sim_store_err(flc_store_t *s, flc_err_t *e)
{
    return flc_err_set(e, flc_store_error(s)->code ? flc_store_error(s)->code : FLC_ECONN, "%s",
                       flc_store_errstr(s));
}

int sim_put_global(flc_store_t *s, const char *gjob, uint32_t round, size_t P,
                   float *global, flc_err_t *e)
{
    flc_shard_t g = {.round = round, .shard = 0, .num_shards = 1, .offset = 0, .count = P,
                     .model_size = P, .created_ms = flc_wall_ms(), .values = global};
    snprintf(g.job, sizeof g.job, "%s", gjob);
    /* The model and the indexes the put writes beside it carry the store's
     * ttl (--ttl); the series' schema record, written once, gets it again
     * here each round, so a long run's series outlives no round by more. */
    if (flc_store_put_merged(s, &g) != FLC_OK || flc_store_index_expire(s, gjob, round) != FLC_OK)
        return sim_store_err(s, e);
    return FLC_OK;
}
