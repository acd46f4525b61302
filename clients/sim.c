/* The simulation driver's round loop (see sim.h for the protocol): the
 * split, client sampling, merger threads with early close, the global
 * model's step and evaluation. Records are written by sim_record.c. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/clock.h"
#include "base/log.h"
#include "cache/keys.h"
#include "cache/store_failover.h"
#include "cache/store_ops.h"
#include "cache/store_resume.h"
#include "clients/client.h"
#include "clients/client_data.h"
#include "clients/sim_evalset.h"
#include "clients/sim_internal.h"
#include "ml/dataset_idx.h"
#include "ml/model.h"
#include "ml/tensor_file.h"
#include "ml/partition.h"
#include "ml/rng.h"

/* One shard's merger, a thread of the driver with its own connection. */
typedef struct merger_th {
    pthread_t t;
    int started;
    flc_store_t *s;
    atomic_llong client_id;  /* its connection's id, for flc_store_wake_id; -1: none (yet) */
    flc_rs_merger_cfg_t cfg;
    flc_merge_state_t *state;
    flc_rs_report_t rep;
    flc_err_t err;
    int rc;
    atomic_int done;
    uint64_t rd, wr;         /* value bytes its store moved this round */
    /* Placement (cfg.place): the round's owner of the shard, where the
     * thread goes before it uses its store, and the node the store was
     * opened next to (reopened when the owner changes). */
    const flc_sim_cfg_t *c;
    char node[300];
    char placed_at[300];
    int place_failed;
} merger_th_t;

typedef struct sim {
    const flc_sim_cfg_t *c;
    flc_store_t *s;
    flc_parts_t *parts;
    uint32_t *eligible;
    size_t neligible;
    unsigned char *faulty;   /* one flag per client */
    size_t nfaulty;
    flc_dataset_t *test;
    flc_model_t *model;
    float *global, *delta;
    size_t P;
    merger_th_t *m;
    uint32_t S;
    flc_merge_rule_t rule;
    char gjob[FLC_NAME_MAX + 1];
    flc_policy_t *policy;    /* c->policy when the store has a cold tier, else NULL */
    flc_sim_straggler_t straggler; /* c->straggler, parsed once */
    int placed;              /* mergers are placed next to their shard's node (cfg.place
                              * on a cluster): their stores are opened by their threads */
    sim_dp_t dp;             /* differential privacy state (clients/sim_dp.c) */
} sim_t;


/* Moves this round's merger thread next to the node owning its shard and
 * makes sure its store was opened there: its sockets then live in that
 * node's namespace and reach the node over its unix socket (opts.local_node
 * / local_sock, set by enter). Each round's thread starts where the driver
 * is, so it enters every round (one setns) even when the store is kept: a
 * reconnect then happens next to the node too. */
static int merger_place(merger_th_t *mt)
{
    const flc_sim_cfg_t *c = mt->c;
    flc_store_opts_t o = c->store_opts ? *c->store_opts : (flc_store_opts_t){0};
    int rc = c->place.enter(c->place.user, mt->node, &o, &mt->err);
    if (rc != FLC_OK || (mt->s != NULL && strcmp(mt->placed_at, mt->node) == 0))
        return rc;
    atomic_store(&mt->client_id, -1);
    flc_store_close(mt->s);
    mt->placed_at[0] = '\0';
    if ((mt->s = flc_store_open(c->redis, &o, &mt->err)) == NULL)
        return mt->err.code ? mt->err.code : FLC_ECONN;
    long long id;
    if (flc_store_conn_id(mt->s, &id) != FLC_OK)
        return sim_store_err(mt->s, &mt->err);
    atomic_store(&mt->client_id, id);
    snprintf(mt->placed_at, sizeof mt->placed_at, "%s", mt->node);
    return FLC_OK;
}

static void *merger_main(void *arg)
{
    merger_th_t *mt = arg;
    mt->rd = mt->wr = 0;
    mt->place_failed = 0;
    if (mt->node[0] != '\0' && (mt->rc = merger_place(mt)) != FLC_OK) {
        flc_err_wrap(&mt->err, "placing the merger next to node %s: ", mt->node);
        mt->place_failed = 1;
        atomic_store(&mt->done, 1);
        return NULL;
    }
    uint64_t rd0 = flc_store_bytes_read(mt->s), wr0 = flc_store_bytes_written(mt->s);
    mt->rc = flc_rs_merger_run(mt->s, &mt->cfg, &mt->rep, &mt->err);
    mt->rd = flc_store_bytes_read(mt->s) - rd0;
    mt->wr = flc_store_bytes_written(mt->s) - wr0;
    atomic_store(&mt->done, 1);
    return NULL;
}

/* Data, split, faulty set, test set, model, global model, mergers. */
static int setup(sim_t *sm, flc_sim_result_t *res, flc_err_t *e)
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
        flc_model_desc_t d;
        rc = flc_data_load_fashion(c->data_dir, 0, c->test_subset, &sm->test, e);
        if (rc == FLC_OK)
            rc = flc_model_desc_init(&d, c->model, sm->test->dim, c->hidden,
                                     (size_t)sm->test->num_classes, e);
        if (rc == FLC_OK)
            rc = flc_model_new(&d, 500, &sm->model, e);
        if (rc != FLC_OK)
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
    if (c->place.enter != NULL) {
        flc_store_node_t nd;
        if (flc_store_shard_node(sm->s, c->job, 1, 0, &nd) != FLC_OK)
            return sim_store_err(sm->s, e);
        sm->placed = strcmp(nd.role, "server") != 0; /* one server: nothing to be next to */
    }
    sm->S = c->num_shards;
    if (sm->P < sm->S)
        return flc_err_set(e, FLC_EINVAL, "a %zu-float model cannot be cut into %u shards",
                           sm->P, sm->S);
    sm->m = calloc(sm->S, sizeof *sm->m);
    if (sm->m == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    for (uint32_t k = 0; k < sm->S; k++) {
        merger_th_t *mt = &sm->m[k];
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

static void teardown(sim_t *sm)
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

static int cmp_client(const void *a, const void *b)
{
    int x = ((const sim_client_t *)a)->idx, y = ((const sim_client_t *)b)->idx;
    return (x > y) - (x < y);
}

/* Samples K eligible clients (partial Fisher-Yates over the eligible list,
 * whose order carries on from round to round: reproducible from the seed)
 * and decides dropouts and delays from the round's own stream. */
static void sample(sim_t *sm, uint32_t round, sim_client_t *cl, size_t k)
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

static cJSON *client_event(const sim_t *sm, uint32_t round, const sim_client_t *x)
{
    const flc_sim_cfg_t *c = sm->c;
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    cJSON_AddStringToObject(o, "role", "client");
    cJSON_AddStringToObject(o, "job", c->job);
    cJSON_AddNumberToObject(o, "round", round);
    cJSON_AddStringToObject(o, "client", x->name);
    cJSON_AddStringToObject(o, "redis", c->redis);
    cJSON_AddStringToObject(o, "global_job", sm->gjob);
    cJSON_AddNumberToObject(o, "num_shards", sm->S);
    cJSON_AddNumberToObject(o, "seed", (double)c->seed);
    cJSON_AddStringToObject(o, "fault", x->faulty ? flc_client_fault_name(c->fault) : "none");
    cJSON_AddNumberToObject(o, "fault_scale", c->fault_scale);
    if (c->ldp_clip > 0) {
        cJSON_AddNumberToObject(o, "ldp_clip", c->ldp_clip);
        cJSON_AddNumberToObject(o, "ldp_noise", c->ldp_noise);
    }
    cJSON_AddNumberToObject(o, "delay_ms", x->delay_ms);
    if (c->encoding != NULL)
        cJSON_AddStringToObject(o, "encoding", c->encoding);
    if (c->store_opts != NULL && c->store_opts->ttl_ms)
        cJSON_AddNumberToObject(o, "ttl_ms", (double)c->store_opts->ttl_ms);
    if (c->synthetic_params) {
        cJSON_AddNumberToObject(o, "synthetic_params", (double)c->synthetic_params);
        return o;
    }
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
    size_t n = flc_parts_get(sm->parts, x->idx, &ix);
    cJSON *a = cJSON_AddArrayToObject(o, "indices");
    for (size_t i = 0; a && i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(ix[i]));
    return o;
}

/* Wakes every merger still blocked on its arrivals list as if its deadline
 * had passed, and joins them all. Called once every invoked client has
 * returned: their pushes are all announced, so nothing else can arrive. A
 * merger that is busy (not blocked) when asked is asked again. */
static void close_and_join(sim_t *sm, uint64_t give_up_ns)
{
    /* Sharded Krum's and Multi-Krum's mergers also block while they
     * exchange distance matrices (aggregator/rs_krum.c), and a wake-up there
     * would fail the merge: they keep their deadline instead. */
    int krum = flc_merge_rule_selects(&sm->rule);
    int early = !(sm->S > 1 && krum);
    for (; early;) {
        int waiting = 0;
        for (uint32_t k = 0; k < sm->S; k++) {
            merger_th_t *mt = &sm->m[k];
            if (!mt->started || atomic_load(&mt->done))
                continue;
            waiting = 1;
            /* Any store of the same cache can wake the merger: on a
             * cluster the store finds the node the blocked connection
             * talks to (flc_store_wake_id, cache/store_ops.h). */
            long long id = atomic_load(&mt->client_id); /* -1: a placed merger's
                                                          * store is not open yet */
            if (id >= 0)
                flc_store_wake_id(sm->s, id);
        }
        if (!waiting || flc_now_ns() > give_up_ns)
            break;
        flc_sleep_ms(2);
    }
    for (uint32_t k = 0; k < sm->S; k++)
        if (sm->m[k].started) {
            pthread_join(sm->m[k].t, NULL);
            sm->m[k].started = 0;
        }
}

static int run_round(sim_t *sm, uint32_t round, flc_sim_round_t *out, flc_err_t *e)
{
    const flc_sim_cfg_t *c = sm->c;
    size_t k = (size_t)c->per_round < sm->neligible ? (size_t)c->per_round : sm->neligible;
    uint64_t t0 = flc_now_ns();
    memset(out, 0, sizeof *out);
    out->round = round;
    out->accuracy = out->loss = -1;
    sim_client_t *cl = calloc(k, sizeof *cl);
    char **names = calloc(k, sizeof *names);
    cJSON **evs = calloc(k, sizeof *evs);
    flc_sim_inv_t *inv = calloc(k, sizeof *inv);
    int rc = cl && names && evs && inv ? FLC_OK : flc_err_set(e, FLC_ENOMEM, "out of memory");
    size_t ninv = 0;
    /* Room for this round's updates and model before the clients write
     * (a little over: frame headers, metadata). */
    if (rc == FLC_OK && sm->policy != NULL &&
        flc_store_make_room(sm->s, (uint64_t)(k + 2) * sm->P * sizeof(float) * 11 / 10) ==
            FLC_ENOMEM)
        FLC_WARN("round %u: the cold tier could not make room; writes may be refused", round);
    if (rc == FLC_OK) {
        sample(sm, round, cl, k);
        for (size_t i = 0; i < k; i++) {
            names[i] = cl[i].name;
            if (cl[i].dropped)
                continue;
            cl[i].inv = (long)ninv;
            if ((evs[ninv++] = client_event(sm, round, &cl[i])) == NULL)
                rc = flc_err_set(e, FLC_ENOMEM, "out of memory for client events");
        }
    }
    uint64_t rd0 = flc_store_bytes_read(sm->s), wr0 = flc_store_bytes_written(sm->s);
    /* Placed: the owner of each shard's keys this round, where its merger
     * goes; all of them before any merger starts. */
    for (uint32_t s = 0; rc == FLC_OK && s < sm->S; s++) {
        flc_store_node_t nd;
        sm->m[s].node[0] = '\0';
        if (sm->placed && flc_store_shard_node(sm->s, c->job, round, s, &nd) != FLC_OK)
            rc = sim_store_err(sm->s, e);
        else if (sm->placed)
            snprintf(sm->m[s].node, sizeof sm->m[s].node, "%s", nd.addr);
    }
    /* The driver opens the round (roster, rounds, shards, clients) and
     * later folds its RoundMeta: the mergers write only their shard's keys
     * (docs/architecture.md, "A user per role"). */
    for (uint32_t s = 0; rc == FLC_OK && s < sm->S; s++)
        if (flc_store_round_begin(sm->s, c->job, sm->S, round, s, (const char *const *)names,
                                  k) != FLC_OK)
            rc = sim_store_err(sm->s, e);
    for (uint32_t s = 0; rc == FLC_OK && s < sm->S; s++) {
        merger_th_t *mt = &sm->m[s];
        memset(&mt->err, 0, sizeof mt->err);
        mt->cfg = (flc_rs_merger_cfg_t){.job = c->job, .round = round, .shard = s,
                                     .num_shards = sm->S, .model_size = sm->P,
                                     .rule = sm->rule, .expected = (const char *const *)names,
                                     .n_expected = k, .deadline_ms = c->deadline_ms,
                                     .readers = 1, .state = mt->state,
                                     .driver_records = 1,
                                     /* the round's Gram partials for later queries, when
                                      * they are cheap next to the round itself (K^2 P
                                      * flops; K = 100 of a 100k model: ~0.1 s), and not
                                      * beside a cold tier: that cache runs at its memory
                                      * limit, and reading the round back while the next
                                      * round's clients push made a push fail there
                                      * (test_sim_cold, 3-5 runs in 10 since the reads go
                                      * by windows; not root-caused). Queries compute
                                      * them when asked. */
                                     .derive_stats = c->keep_updates && sm->policy == NULL &&
                                                     (double)k * (double)k * (double)sm->P <= 2e9};
        atomic_store(&mt->done, 0);
        if (pthread_create(&mt->t, NULL, merger_main, mt) != 0)
            rc = flc_err_set(e, FLC_EIO, "cannot start the merger thread of shard %u", s);
        else
            mt->started = 1;
    }
    uint64_t tc = flc_now_ns();
    uint64_t failovers0 = flc_store_failovers(sm->s);
    if (rc == FLC_OK && ninv > 0)
        rc = c->invoke(c->invoke_user, evs, ninv, inv, e);
    /* On a cluster: acknowledged updates a failover took along are sent
     * again while the mergers still wait (sim_failover.c). */
    if (rc == FLC_OK && ninv > 0)
        rc = sim_resend_lost(sm->s, c, round, sm->S, cl, k, evs, inv, failovers0, out, e);
    out->clients_ms = (double)(flc_now_ns() - tc) / 1e6;
    close_and_join(sm, t0 + (uint64_t)c->round_timeout_ms * 1000000ull);
    /* The clients' updates are in: the policy must know them before the
     * driver writes anything more, so it can spill them to make room. */
    if (sm->policy != NULL)
        flc_store_track_round(sm->s, c->job, round);

    /* A merger that could not be placed is a configuration error (a node
     * missing from the map, a namespace that cannot be entered): the run
     * stops, naming the node, instead of keeping the old model every round. */
    for (uint32_t s = 0; rc == FLC_OK && s < sm->S; s++)
        if (sm->m[s].place_failed)
            rc = flc_err_set(e, sm->m[s].err.code ? sm->m[s].err.code : FLC_EIO,
                             "the merger of shard %u: %s", s, flc_err_msg(&sm->m[s].err));

    /* A merge that failed in itself (the rule refused the round, as Krum
     * with f too large for the participants; memory; a refused write) would
     * fail again every round: the run stops, naming it, instead of
     * recording rounds with the old model. A round nobody could be merged
     * in (no update in time: FLC_ETIMEOUT) or cut by a lost connection
     * (FLC_ECONN: a failover) stays a round that was not merged, named in
     * its merge_error. */
    for (uint32_t s = 0; rc == FLC_OK && s < sm->S; s++) {
        const merger_th_t *mt = &sm->m[s];
        if (mt->rc != FLC_OK && mt->rc != FLC_ETIMEOUT && mt->rc != FLC_ECONN)
            rc = flc_err_set(e, mt->rc, "the merger of shard %u failed: %s", s,
                             flc_err_msg(&mt->err));
    }

    /* The round's RoundMeta from the shards' reports (also of a failed
     * merge: then "failed: ..."); the driver's fields follow in
     * sim_record_round. A lost connection (a failover of the job records'
     * node) is retried for up to 10 s, as the merger's close is. */
    int reported = 0;
    for (uint32_t s = 0; s < sm->S; s++)
        reported |= sm->m[s].cfg.round == round && !sm->m[s].place_failed;
    if (reported) {
        flc_err_t me = {0};
        int mr = flc_rs_round_meta(sm->s, &sm->m[0].cfg, &me);
        for (unsigned w = 100, spent = 0; mr == FLC_ECONN && spent < 10000; spent += w) {
            flc_sleep_ms(w);
            mr = flc_rs_round_meta(sm->s, &sm->m[0].cfg, &me);
        }
        if (mr != FLC_OK && mr != FLC_ENOTFOUND && rc == FLC_OK)
            rc = flc_err_set(e, mr, "round %u's metadata: %s", round, me.msg);
    }

    int merged = rc == FLC_OK;
    out->merge_error[0] = '\0';
    for (uint32_t s = 0; s < sm->S; s++) {
        merger_th_t *mt = &sm->m[s];
        if (mt->rc != FLC_OK) {
            /* Say why: a round that keeps the old model silently is what hid
             * the multi-krum wake-up bug. */
            if (merged)
                snprintf(out->merge_error, sizeof out->merge_error, "shard %u: %s", s,
                         flc_err_msg(&mt->err));
            merged = 0;
        }
        out->merge_ms = mt->rep.merge_ms > out->merge_ms ? mt->rep.merge_ms : out->merge_ms;
        out->wait_ms = mt->rep.wait_ms > out->wait_ms ? mt->rep.wait_ms : out->wait_ms;
    }
    /* An acknowledged update that no merger got was lost (a failover):
     * the round fails naming it rather than merge without it. */
    const flc_rs_report_t *reps[sm->S ? sm->S : 1];
    for (uint32_t s = 0; s < sm->S; s++)
        reps[s] = &sm->m[s].rep;
    if (rc == FLC_OK)
        sim_name_lost(cl, k, inv, reps, sm->S, out);
    if (out->lost > 0) {
        if (merged)
            snprintf(out->merge_error, sizeof out->merge_error, "updates lost in a failover "
                     "and not resent: %.200s", out->lost_names);
        merged = 0;
    }
    if (merged) {
        flc_err_t pe = {0};
        if (flc_rs_pull(sm->s, c->job, round, sm->S, sm->P, c->round_timeout_ms, sm->delta,
                        &pe) == FLC_OK) {
            for (size_t i = 0; i < sm->P; i++)
                sm->global[i] += sm->delta[i];
        } else {
            snprintf(out->merge_error, sizeof out->merge_error, "pull: %s", flc_err_msg(&pe));
            merged = 0;
        }
    }
    out->merged = merged;
    uint64_t te = flc_now_ns();
    if (rc == FLC_OK && sm->model != NULL)
        rc = flc_model_evaluate(sm->model, sm->global, sm->test, NULL, sm->test->n,
                                &out->accuracy, &out->loss, e);
    out->eval_ms = (double)(flc_now_ns() - te) / 1e6;
    if (rc == FLC_OK)
        rc = sim_put_global(sm->s, sm->gjob, round, sm->P, sm->global, e);
    out->round_ms = (double)(flc_now_ns() - t0) / 1e6;

    if (rc == FLC_OK) {
        sim_round_rec_t rec = {.round = round, .cl = cl, .k = k, .inv = inv, .out = out,
                               .started_ms = flc_wall_ms() - (uint64_t)out->round_ms};
        rc = sim_dp_round(&sm->dp, c, &sm->rule, inv, k, sm->neligible, &rec, e);
        for (uint32_t s = 0; s < sm->S; s++) {
            rec.bytes_read += sm->m[s].rd;
            rec.bytes_written += sm->m[s].wr;
            double gb = (double)c->memory_mb / 1024.0;
            rec.merge_cost_usd += (sm->m[s].rep.merge_ms + sm->m[s].rep.wait_ms) / 1000.0 *
                                  gb * c->price_per_gb_s;
        }
        rec.bytes_read += flc_store_bytes_read(sm->s) - rd0;
        rec.bytes_written += flc_store_bytes_written(sm->s) - wr0;
        rc = sim_record_round(sm->s, c, sm->P, &rec, e);
        /* Let the policy know what other processes wrote this round. */
        if (rc == FLC_OK && sm->policy != NULL) {
            flc_store_track_round(sm->s, sm->gjob, round);
            flc_store_round_closed(sm->s, c->job, round);
        }
    }
    if (rc == FLC_OK && !c->keep_updates && flc_store_delete_round(sm->s, c->job, round) != 0)
        rc = sim_store_err(sm->s, e);
    /* Models of rounds no client will read again. */
    if (rc == FLC_OK && !c->keep_updates && round >= 2)
        flc_store_delete_round(sm->s, sm->gjob, round - 2);

    for (uint32_t s = 0; s < sm->S; s++)
        flc_rs_report_free(&sm->m[s].rep);
    for (size_t i = 0; i < k && evs; i++)
        cJSON_Delete(evs[i]);
    for (size_t i = 0; i < ninv && inv; i++)
        cJSON_Delete(inv[i].result);
    free(cl);
    free(names);
    free(evs);
    free(inv);
    return rc;
}

int flc_sim_run(const flc_sim_cfg_t *cfg, flc_sim_progress_t progress, void *user,
                flc_sim_result_t *res, flc_err_t *e)
{
    memset(res, 0, sizeof *res);
    flc_sim_cfg_t c = *cfg;
    int rc = flc_sim_cfg_finish(&c, e);
    if (rc != FLC_OK)
        return rc;
    /* The in-process invoker without settings runs the clients with the
     * driver's store options. */
    flc_sim_inproc_t inproc = {.store_opts = c.store_opts};
    if (c.invoke == flc_sim_invoke_inproc && c.invoke_user == NULL)
        c.invoke_user = &inproc;
    uint64_t t0 = flc_now_ns();
    sim_t sm = {.c = &c};
    res->rounds = calloc((size_t)c.rounds, sizeof *res->rounds);
    if (res->rounds == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    rc = setup(&sm, res, e);
    /* Resume (sim_resume.c): the checkpoint of the last closed round, then
     * its global model; a fresh run drops an old checkpoint of the job. */
    flc_merge_state_t **states = calloc(sm.S ? sm.S : 1, sizeof *states);
    sim_resume_t rs = {.P = sm.P, .S = sm.S, .eligible = sm.eligible,
                       .neligible = sm.neligible, .states = states, .rule = &sm.rule,
                       .dp = &sm.dp};
    if (rc == FLC_OK && states == NULL)
        rc = flc_err_set(e, FLC_ENOMEM, "out of memory");
    for (uint32_t k = 0; rc == FLC_OK && k < sm.S; k++)
        states[k] = sm.m[k].state;
    if (rc == FLC_OK && c.resume && (rc = sim_resume_load(sm.s, &c, &rs, e)) == FLC_OK) {
        flc_shard_t g = {0};
        if (flc_store_get_merged(sm.s, sm.gjob, rs.round, 0, &g, sm.global, sm.P) != FLC_OK ||
            g.values != sm.global || g.count != sm.P)
            rc = flc_err_set(e, FLC_EDATA, "cannot resume job '%s': its global model of round "
                             "%u: %s", c.job, rs.round, g.count != sm.P && g.values
                             ? "another model size" : flc_store_errstr(sm.s));
        flc_shard_release(&g);
        res->resumed_after = rs.round;
        res->resumed_partial = rs.partial;
    } else if (rc == FLC_OK && flc_store_ckpt_del(sm.s, c.job) != FLC_OK) {
        rc = sim_store_err(sm.s, e);
    }
    for (int r = (int)rs.round + 1; rc == FLC_OK && r <= c.rounds; r++) {
        flc_sim_round_t *out = &res->rounds[res->nrounds];
        rc = run_round(&sm, (uint32_t)r, out, e);
        if (rc != FLC_OK) {
            flc_err_wrap(e, "round %d: ", r);
            break;
        }
        res->nrounds++;
        rs.round = (uint32_t)r;
        if ((rc = sim_resume_save(sm.s, &c, &rs, e)) != FLC_OK) {
            flc_err_wrap(e, "round %d's checkpoint: ", r);
            break;
        }
        res->cost_usd += out->cost_usd;
        res->bytes += out->bytes;
        if (progress)
            progress(out, c.rounds, (double)(flc_now_ns() - t0) / 1e9, user);
    }
    res->wall_ms = (double)(flc_now_ns() - t0) / 1e6;
    free(states);
    teardown(&sm);
    return rc;
}
