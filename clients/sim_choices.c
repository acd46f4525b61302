/* What the synchronous (sim.c) and asynchronous (async_sim.c) drivers
 * choose and write alike: the merge rule of a strategy, the seeded faulty
 * set, the global model series "<J>/g". One copy, so a seed gives both
 * drivers the same rule and the same faulty clients. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/clock.h"
#include "cache/store_ops.h"
#include "clients/client.h"
#include "clients/sim_internal.h"
#include "ml/dataset_idx.h"
#include "ml/model.h"
#include "ml/partition.h"
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

cJSON *sim_event_new(const flc_sim_cfg_t *c, const char *gjob, uint32_t S, uint32_t round,
                     const sim_client_t *x)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    cJSON_AddStringToObject(o, "role", "client");
    cJSON_AddStringToObject(o, "job", c->job);
    cJSON_AddNumberToObject(o, "round", round);
    cJSON_AddStringToObject(o, "client", x->name);
    cJSON_AddStringToObject(o, "redis", c->redis);
    cJSON_AddStringToObject(o, "global_job", gjob);
    cJSON_AddNumberToObject(o, "num_shards", S);
    cJSON_AddNumberToObject(o, "seed", (double)c->seed);
    cJSON_AddStringToObject(o, "fault", x->faulty ? flc_client_fault_name(c->fault) : "none");
    cJSON_AddNumberToObject(o, "fault_scale", c->fault_scale);
    if (c->store_opts != NULL && c->store_opts->ttl_ms)
        cJSON_AddNumberToObject(o, "ttl_ms", (double)c->store_opts->ttl_ms);
    return o;
}

void sim_event_training(struct cJSON *o, const flc_sim_cfg_t *c, const flc_parts_t *parts,
                        int idx)
{
    cJSON_AddStringToObject(o, "model", c->model);
    cJSON_AddNumberToObject(o, "hidden", (double)c->hidden);
    cJSON_AddNumberToObject(o, "lr", c->lr);
    cJSON_AddNumberToObject(o, "batch", (double)c->batch);
    cJSON_AddNumberToObject(o, "local_epochs", c->local_epochs);
    cJSON_AddNumberToObject(o, "mu", c->mu);
    if (c->data_dir)
        cJSON_AddStringToObject(o, "data_dir", c->data_dir);
    cJSON_AddNumberToObject(o, "subset", (double)c->subset);
    const uint32_t *ix;
    size_t n = flc_parts_get(parts, idx, &ix);
    cJSON *a = cJSON_AddArrayToObject(o, "indices");
    for (size_t i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(ix[i]));
}

int sim_load_model(const flc_sim_cfg_t *c, flc_dataset_t **test, flc_model_t **model,
                   flc_err_t *e)
{
    flc_model_desc_t d;
    int rc = flc_data_load_fashion(c->data_dir, 0, c->test_subset, test, e);
    if (rc == FLC_OK)
        rc = flc_model_desc_init(&d, c->model, (*test)->dim, c->hidden,
                                 (size_t)(*test)->num_classes, e);
    if (rc == FLC_OK)
        rc = flc_model_new(&d, 500, model, e);
    return rc;
}

int sim_placed(flc_store_t *s, const flc_sim_cfg_t *c, int *placed, flc_err_t *e)
{
    *placed = 0;
    if (c->place.enter == NULL)
        return FLC_OK;
    flc_store_node_t nd;
    if (flc_store_shard_node(s, c->job, 1, 0, &nd) != FLC_OK)
        return sim_store_err(s, e);
    *placed = strcmp(nd.role, "server") != 0; /* one server: nothing to be next to */
    return FLC_OK;
}
