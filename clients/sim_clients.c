/* The clients of a simulation round: which K of the eligible ones are
 * sampled (with their dropouts and straggler delays, all from the seed) and
 * the event each one's `client` function is invoked with (clients/client.h
 * reads it). The round loop (sim.c) invokes them. */
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "clients/client.h"
#include "clients/sim_driver_internal.h"
#include "ml/rng.h"

static int cmp_client(const void *a, const void *b)
{
    int x = ((const sim_client_t *)a)->idx, y = ((const sim_client_t *)b)->idx;
    return (x > y) - (x < y);
}

/* Samples K eligible clients (partial Fisher-Yates over the eligible list,
 * whose order carries on from round to round: reproducible from the seed)
 * and decides dropouts and delays from the round's own stream. */
void sim_sample(sim_t *sm, uint32_t round, sim_client_t *cl, size_t k)
{
    const flc_sim_cfg_t *c = sm->c;
    flc_rng_t r;
    flc_rng_seed2(&r, c->seed, 0x5A3D0000ull + round);
    for (size_t i = 0; i < k; i++) {
        size_t j = i + (size_t)flc_rng_below(&r, sm->neligible - i);
        uint32_t t = sm->eligible[i];
        sm->eligible[i] = sm->eligible[j], sm->eligible[j] = t;
        cl[i].idx = (int)sm->eligible[i];
    }
    qsort(cl, k, sizeof *cl, cmp_client);
    for (size_t i = 0; i < k; i++) {
        sim_client_t *x = &cl[i];
        flc_sim_client_name(x->name, sizeof x->name, x->idx);
        const uint32_t *ix;
        x->num_samples = sm->parts ? flc_parts_get(sm->parts, x->idx, &ix) : 1;
        x->faulty = sm->faulty[x->idx];
        x->dropped = c->dropout > 0 && flc_rng_uniform(&r) < c->dropout;
        x->delay_ms = flc_sim_straggler_draw(&sm->straggler, &r);
        x->inv = -1;
    }
}

cJSON *sim_client_event(const sim_t *sm, uint32_t round, const sim_client_t *x)
{
    const flc_sim_cfg_t *c = sm->c;
    cJSON *o = sim_event_new(c, sm->gjob, sm->S, round, x);
    if (o == NULL)
        return NULL;
    if (c->ldp_clip > 0) {
        cJSON_AddNumberToObject(o, "ldp_clip", c->ldp_clip);
        cJSON_AddNumberToObject(o, "ldp_noise", c->ldp_noise);
    }
    cJSON_AddNumberToObject(o, "delay_ms", x->delay_ms);
    if (c->encoding != NULL)
        cJSON_AddStringToObject(o, "encoding", c->encoding);
    if (c->synthetic_params) {
        cJSON_AddNumberToObject(o, "synthetic_params", (double)c->synthetic_params);
        return o;
    }
    sim_event_training(o, c, sm->parts, x->idx);
    return o;
}
