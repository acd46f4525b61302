/* What a simulation run holds before its first round (sim_setup) and its
 * release (sim_teardown): the label split, the faulty set, the test set and
 * model, the global model (round 0 in the store), the job's schema record
 * and one merger slot per shard. Apart from the round loop (sim.c) because
 * it runs once and touches everything the rounds only use. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "cache/store_ops.h"
#include "clients/client_data.h"
#include "clients/sim_driver_internal.h"
#include "clients/sim_evalset.h"
#include "ml/dataset_idx.h"
#include "ml/tensor_file.h"

/* Data, split, faulty set, test set, model, global model, mergers. */
int sim_setup(sim_t *sm, flc_sim_result_t *res, flc_err_t *e)
{
    const flc_sim_cfg_t *c = sm->c;
    snprintf(sm->gjob, sizeof sm->gjob, "%s/g", c->job);
    int rc = sim_rule_for(c, &sm->rule, e);
    if (rc != FLC_OK)
        return rc;
    if ((rc = sim_dp_setup(&sm->dp, c, &sm->rule, e)) != FLC_OK)
        return rc;
    if ((rc = flc_sim_straggler_parse(c->straggler, &sm->straggler, e)) != FLC_OK)
        return rc;
    if ((sm->s = flc_store_open(c->redis, c->store_opts, e)) == NULL)
        return e->code;
    /* With a cold tier (store_opts->cold_url), the driver is the process
     * that keeps Redis under maxmemory: it knows every round's objects (it
     * tracks them as rounds close) and makes room before each round's
     * updates land, choosing what to spill by the caller's policy. */
    if (flc_store_has_tier(sm->s) && c->policy != NULL) {
        sm->policy = c->policy;
        if (flc_store_set_policy(sm->s, sm->policy) != FLC_OK)
            return sim_store_err(sm->s, e);
    }

    /* The split: labels only (the images stay with the clients). */
    if (c->synthetic_params == 0) {
        flc_cdata_t *labels = NULL;
        rc = flc_cdata_load_labels(c->data_dir, c->subset, &labels, e);
        if (rc == FLC_OK)
            rc = flc_split_dirichlet(labels->y, labels->n, labels->num_classes, c->clients,
                                     c->alpha, c->seed, 0, &sm->parts, e);
        flc_cdata_free(labels);
        if (rc != FLC_OK)
            return rc;
    }
    sm->eligible = malloc((size_t)c->clients * sizeof *sm->eligible);
    sm->faulty = calloc((size_t)c->clients, 1);
    if (sm->eligible == NULL || sm->faulty == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory for %d clients", c->clients);
    for (int i = 0; i < c->clients; i++) {
        const uint32_t *ix;
        if (sm->parts == NULL || flc_parts_get(sm->parts, i, &ix) > 0)
            sm->eligible[sm->neligible++] = (uint32_t)i;
    }
    if (sm->neligible == 0)
        return flc_err_set(e, FLC_EINVAL, "no client holds any sample");

    /* Exactly round(faulty * N) faulty clients, a seeded choice. */
    if ((rc = sim_faulty_set(c, sm->faulty, &sm->nfaulty, e)) != FLC_OK)
        return rc;

    if (c->synthetic_params == 0) {
        if ((rc = sim_load_model(c, &sm->test, &sm->model, e)) != FLC_OK)
            return rc;
        sm->P = sm->model->nparams;
    } else {
        sm->P = c->synthetic_params;
    }
    sm->global = calloc(sm->P, sizeof *sm->global);
    sm->delta = calloc(sm->P, sizeof *sm->delta);
    if (sm->global == NULL || sm->delta == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory for a %zu-float model", sm->P);
    res->nparams = sm->P;
    res->eligible = sm->neligible;
    res->faulty_clients = sm->nfaulty;
    res->init_accuracy = res->init_loss = -1;
    if (sm->model != NULL) {
        flc_model_init_params(sm->model, sm->global, c->seed);
        if (c->init != NULL && (rc = flc_tfile_load_into(c->init, sm->global, sm->P, e)))
            return rc;
        rc = flc_model_evaluate(sm->model, sm->global, sm->test, NULL, sm->test->n,
                                &res->init_accuracy, &res->init_loss, e);
        if (rc != FLC_OK)
            return rc;
    }
    /* Resumed: round 0 is there already (and the model comes from the
     * last closed round, sim_resume.c). */
    if (!c->resume && (rc = sim_put_global(sm->s, sm->gjob, 0, sm->P, sm->global, e)) != FLC_OK)
        return rc;
    /* The evaluation set the query engine's accuracy kinds use (issue 17):
     * an extra for the queries, so a cache too small for it (maxmemory
     * without room, found by scripts/memcheck.sh) costs those queries, not
     * the run; they say that the job has no evaluation set. */
    if (sm->model != NULL && flc_sim_evalset_put(sm->s, c->job, sm->model, sm->test, e)) {
        FLC_WARN("simulate: job %s: no evaluation set stored (the accuracy kinds of "
                 "`flcache query` will say so): %s", c->job, flc_err_msg(e));
        flc_err_clear(e);
    }

    /* The driver begins the job (schema record with S): the shard tags,
     * and so the nodes the mergers are placed next to, follow from S. */
    if (flc_store_job_begin(sm->s, c->job, c->num_shards) != FLC_OK)
        return sim_store_err(sm->s, e);
    /* Mergers: one connection each, kept for the whole run (placed: kept
     * while their shard's owner stays the same; opened by their threads). */
    if ((rc = sim_placed(sm->s, c, &sm->placed, e)) != FLC_OK)
        return rc;
    sm->S = c->num_shards;
    if (sm->P < sm->S)
        return flc_err_set(e, FLC_EINVAL, "a %zu-float model cannot be cut into %u shards",
                           sm->P, sm->S);
    sm->m = calloc(sm->S, sizeof *sm->m);
    if (sm->m == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    for (uint32_t k = 0; k < sm->S; k++) {
        sim_merger_t *mt = &sm->m[k];
        mt->c = c;
        atomic_init(&mt->client_id, -1);
        long long id;
        if (!sm->placed && (mt->s = flc_store_open(c->redis, c->store_opts, e)) == NULL)
            return e->code;
        if (!sm->placed && flc_store_conn_id(mt->s, &id) != FLC_OK)
            return sim_store_err(mt->s, e);
        if (!sm->placed)
            atomic_store(&mt->client_id, id);
        if (flc_merge_rule_has_state(&sm->rule)) {
            uint64_t off, cnt;
            flc_rs_shard_range(sm->P, sm->S, k, &off, &cnt);
            if ((mt->state = flc_merge_state_new(&sm->rule, cnt, e)) == NULL)
                return e->code;
        }
    }
    return FLC_OK;
}

void sim_teardown(sim_t *sm)
{
    for (uint32_t k = 0; sm->m && k < sm->S; k++) {
        flc_store_close(sm->m[k].s);
        flc_merge_state_free(sm->m[k].state);
    }
    free(sm->m);
    flc_store_close(sm->s); /* the policy is the caller's */
    flc_parts_free(sm->parts);
    free(sm->eligible);
    free(sm->faulty);
    flc_data_free(sm->test);
    flc_model_free(sm->model);
    free(sm->global);
    free(sm->delta);
}
