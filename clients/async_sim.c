/* The asynchronous simulation driver (clients/async.h): the same data,
 * split, faulty set, model and records as the synchronous driver (sim.c),
 * with the rounds replaced by versions on a simulated clock. For each
 * version: the scheduler (async_sched.c) says which arrivals make its
 * buffer; the driver opens the version (roster = the buffer), runs the
 * buffer's clients at once (each trains on its own base version and pushes
 * into this version's keys), then one merger thread per shard folds the
 * buffer with staleness weights (flc_async_merge_run), and the driver pulls,
 * steps, evaluates, stores the model as round v of "<J>/g" and records. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/clock.h"
#include "cache/store_ops.h"
#include "clients/async.h"
#include "clients/async_internal.h"
#include "clients/client.h"
#include "clients/client_data.h"
#include "ml/dataset_idx.h"
#include "ml/model.h"
#include "ml/partition.h"
#include "ml/rng.h"
#include "ml/tensor_file.h"

/* One shard's merger, a thread of the driver with its own connection. */
typedef struct amerger {
    pthread_t t;
    flc_store_t *s;
    flc_merge_state_t *state;
    flc_async_merge_cfg_t cfg;
    flc_rs_report_t rep;
    flc_err_t err;
    int rc;
    uint64_t rd, wr;
    /* Placement (cfg.place on a cluster, as sim.c's mergers): the node that
     * owns the shard this version, and the one its store was opened next to. */
    const flc_sim_cfg_t *c;
    char node[300], placed_at[300];
} amerger_t;

typedef struct asim {
    const flc_sim_cfg_t *c;
    const flc_async_cfg_t *a;
    flc_store_t *s;
    flc_parts_t *parts;
    uint32_t *eligible;
    size_t neligible;
    unsigned char *faulty;
    size_t nfaulty;
    flc_dataset_t *test;
    flc_model_t *model;
    float *global, *delta;
    size_t P;
    uint32_t S;
    amerger_t *m;
    flc_merge_rule_t rule;
    flc_async_stale_t stale;
    flc_async_sched_t *sched;
    char gjob[FLC_NAME_MAX + 1];
    int placed; /* mergers run next to their shard's node (their threads open their stores) */
} asim_t;

/* Data, split, faulty set, test set, model, global model 0, mergers, and
 * the schedule. */
static int setup(asim_t *sm, flc_sim_result_t *res, flc_err_t *e)
{
    const flc_sim_cfg_t *c = sm->c;
    snprintf(sm->gjob, sizeof sm->gjob, "%s/g", c->job);
    int rc = sim_rule_for(c, &sm->rule, e);
    if (rc == FLC_OK)
        rc = flc_async_stale_parse(sm->a->staleness, &sm->stale, e);
    flc_sim_straggler_t straggler;
    if (rc == FLC_OK)
        rc = flc_sim_straggler_parse(c->straggler, &straggler, e);
    if (rc != FLC_OK)
        return rc;
    if ((sm->s = flc_store_open(c->redis, c->store_opts, e)) == NULL)
        return e->code;
    flc_cdata_t *labels = NULL;
    rc = flc_cdata_load_labels(c->data_dir, c->subset, &labels, e);
    if (rc == FLC_OK)
        rc = flc_split_dirichlet(labels->y, labels->n, labels->num_classes, c->clients, c->alpha,
                                 c->seed, 0, &sm->parts, e);
    flc_cdata_free(labels);
    if (rc != FLC_OK)
        return rc;
    sm->eligible = malloc((size_t)c->clients * sizeof *sm->eligible);
    sm->faulty = calloc((size_t)c->clients, 1);
    double *base_ms = calloc((size_t)c->clients, sizeof *base_ms);
    if (sm->eligible == NULL || sm->faulty == NULL || base_ms == NULL) {
        free(base_ms);
        return flc_err_set(e, FLC_ENOMEM, "out of memory for %d clients", c->clients);
    }
    for (int i = 0; i < c->clients; i++) {
        const uint32_t *ix;
        size_t n = flc_parts_get(sm->parts, i, &ix);
        base_ms[i] = FLC_ASYNC_MS_PER_SAMPLE * (double)n * c->local_epochs;
        if (n > 0)
            sm->eligible[sm->neligible++] = (uint32_t)i;
    }
    /* The same faulty set as the synchronous driver's for a seed. */
    if ((rc = sim_faulty_set(c, sm->faulty, &sm->nfaulty, e)) != FLC_OK)
        return rc;
    flc_async_cfg_t a = *sm->a;
    if (a.buffer == 0)
        a.buffer = (size_t)c->per_round;
    if (a.concurrency == 0)
        a.concurrency = 2 * a.buffer;
    rc = flc_async_sched_new(&a, sm->a->mode == FLC_ASYNC_MODE_SYNC_CLOCK, base_ms,
                             (size_t)c->clients, sm->eligible, sm->neligible, &straggler,
                             c->seed, &sm->sched, e);
    free(base_ms);
    if (rc != FLC_OK)
        return rc;

    if ((rc = sim_load_model(c, &sm->test, &sm->model, e)) != FLC_OK)
        return rc;
    sm->P = sm->model->nparams;
    sm->global = calloc(sm->P, sizeof *sm->global);
    sm->delta = calloc(sm->P, sizeof *sm->delta);
    if (sm->global == NULL || sm->delta == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory for a %zu-float model", sm->P);
    res->nparams = sm->P;
    res->eligible = sm->neligible;
    res->faulty_clients = sm->nfaulty;
    flc_model_init_params(sm->model, sm->global, c->seed);
    if (c->init != NULL && (rc = flc_tfile_load_into(c->init, sm->global, sm->P, e)) != FLC_OK)
        return rc;
    rc = flc_model_evaluate(sm->model, sm->global, sm->test, NULL, sm->test->n,
                            &res->init_accuracy, &res->init_loss, e);
    if (rc == FLC_OK)
        rc = sim_put_global(sm->s, sm->gjob, 0, sm->P, sm->global, e);
    if (rc != FLC_OK)
        return rc;
    if (flc_store_job_begin(sm->s, c->job, c->num_shards) != FLC_OK)
        return sim_store_err(sm->s, e);
    sm->S = c->num_shards;
    if (sm->P < sm->S)
        return flc_err_set(e, FLC_EINVAL, "a %zu-float model cannot be cut into %u shards",
                           sm->P, sm->S);
    if ((sm->m = calloc(sm->S, sizeof *sm->m)) == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    if ((rc = sim_placed(sm->s, c, &sm->placed, e)) != FLC_OK)
        return rc;
    for (uint32_t k = 0; k < sm->S; k++) {
        sm->m[k].c = c;
        if (!sm->placed && (sm->m[k].s = flc_store_open(c->redis, c->store_opts, e)) == NULL)
            return e->code;
        if (flc_merge_rule_has_state(&sm->rule)) {
            uint64_t off, cnt;
            flc_rs_shard_range(sm->P, sm->S, k, &off, &cnt);
            if ((sm->m[k].state = flc_merge_state_new(&sm->rule, cnt, e)) == NULL)
                return e->code;
        }
    }
    return FLC_OK;
}

static void teardown(asim_t *sm)
{
    for (uint32_t k = 0; sm->m && k < sm->S; k++) {
        flc_store_close(sm->m[k].s);
        flc_merge_state_free(sm->m[k].state);
    }
    free(sm->m);
    flc_async_sched_free(sm->sched);
    flc_store_close(sm->s);
    flc_parts_free(sm->parts);
    free(sm->eligible);
    free(sm->faulty);
    flc_data_free(sm->test);
    flc_model_free(sm->model);
    free(sm->global);
    free(sm->delta);
}

/* Moves this version's merger thread next to the node owning its shard
 * (one setns: each version's thread starts where the driver is) and opens
 * its store there when it was not open next to that node already. */
static int merger_place(amerger_t *mt)
{
    const flc_sim_cfg_t *c = mt->c;
    flc_store_opts_t o = c->store_opts ? *c->store_opts : (flc_store_opts_t){0};
    int rc = c->place.enter(c->place.user, mt->node, &o, &mt->err);
    if (rc != FLC_OK || (mt->s != NULL && strcmp(mt->placed_at, mt->node) == 0))
        return rc;
    flc_store_close(mt->s);
    mt->placed_at[0] = '\0';
    if ((mt->s = flc_store_open(c->redis, &o, &mt->err)) == NULL)
        return mt->err.code ? mt->err.code : FLC_ECONN;
    snprintf(mt->placed_at, sizeof mt->placed_at, "%s", mt->node);
    return FLC_OK;
}

static void *merger_main(void *arg)
{
    amerger_t *mt = arg;
    if (mt->node[0] != '\0' && (mt->rc = merger_place(mt)) != FLC_OK) {
        flc_err_wrap(&mt->err, "placing the merger next to node %s: ", mt->node);
        return NULL;
    }
    uint64_t rd0 = flc_store_bytes_read(mt->s), wr0 = flc_store_bytes_written(mt->s);
    mt->rc = flc_async_merge_run(mt->s, &mt->cfg, &mt->rep, &mt->err);
    mt->rd = flc_store_bytes_read(mt->s) - rd0;
    mt->wr = flc_store_bytes_written(mt->s) - wr0;
    return NULL;
}

/* Client x's event: train on version base, push into version v. */
static cJSON *client_event(const asim_t *sm, uint32_t v, uint32_t base, const sim_client_t *x)
{
    const flc_sim_cfg_t *c = sm->c;
    cJSON *o = sim_event_new(c, sm->gjob, sm->S, v, x);
    if (o == NULL)
        return NULL;
    cJSON_AddNumberToObject(o, "base_round", base);
    sim_event_training(o, c, sm->parts, x->idx);
    return o;
}

/* Mergers of version v over the buffer (all pushed already), joined. */
static int merge_version(asim_t *sm, uint32_t v, const char *const *names, const double *scale,
                         const char *const *refuse, size_t n, flc_err_t *e)
{
    int rc = FLC_OK;
    uint32_t started = 0;
    for (uint32_t k = 0; k < sm->S; k++) { /* placed: every owner before any merger starts */
        flc_store_node_t nd;
        sm->m[k].node[0] = '\0';
        if (sm->placed && flc_store_shard_node(sm->s, sm->c->job, v, k, &nd) != FLC_OK)
            return sim_store_err(sm->s, e);
        if (sm->placed)
            snprintf(sm->m[k].node, sizeof sm->m[k].node, "%s", nd.addr);
    }
    for (uint32_t k = 0; k < sm->S; k++) {
        amerger_t *mt = &sm->m[k];
        memset(&mt->err, 0, sizeof mt->err);
        memset(&mt->rep, 0, sizeof mt->rep);
        mt->rc = FLC_EIO; /* until its thread ran */
        mt->cfg = (flc_async_merge_cfg_t){
            .rs = {.job = sm->c->job, .round = v, .shard = k, .num_shards = sm->S,
                   .model_size = sm->P, .rule = sm->rule, .expected = names, .n_expected = n,
                   .readers = 1, .state = mt->state, .driver_records = 1,
                   /* the Gram partials for later queries, when cheap next to
                    * the version (as sim.c decides for a round) */
                   .derive_stats = sm->c->keep_updates &&
                                   (double)n * (double)n * (double)sm->P <= 2e9},
            .scale = scale, .refuse = refuse};
        if (pthread_create(&mt->t, NULL, merger_main, mt) != 0) {
            rc = flc_err_set(e, FLC_EIO, "cannot start the merger thread of shard %u", k);
            break;
        }
        started++;
    }
    for (uint32_t k = 0; k < started; k++)
        pthread_join(sm->m[k].t, NULL);
    for (uint32_t k = 0; rc == FLC_OK && k < sm->S; k++)
        if (sm->m[k].rc != FLC_OK && sm->m[k].rc != FLC_ETIMEOUT)
            rc = flc_err_set(e, sm->m[k].rc, "the merger of shard %u failed: %s", k,
                             flc_err_msg(&sm->m[k].err));
    if (rc == FLC_OK && started == sm->S) {
        int mr = flc_rs_round_meta(sm->s, &sm->m[0].cfg.rs, e);
        if (mr != FLC_OK && mr != FLC_ENOTFOUND)
            rc = mr;
    }
    return rc;
}

/* One version: schedule, clients, mergers, step, evaluation, records. */
static int run_version(asim_t *sm, uint32_t v, flc_sim_round_t *out, flc_async_version_t *ver,
                       flc_err_t *e)
{
    const flc_sim_cfg_t *c = sm->c;
    uint64_t t0 = flc_now_ns();
    memset(out, 0, sizeof *out);
    memset(ver, 0, sizeof *ver);
    out->round = v;
    out->accuracy = out->loss = -1;
    const flc_async_arrival_t *arr;
    size_t n;
    int rc = flc_async_sched_next(sm->sched, &arr, &n, &ver->sim_ms, e);
    if (rc != FLC_OK)
        return rc;
    sim_client_t *cl = calloc(n, sizeof *cl);
    const char **names = calloc(n, sizeof *names);
    const char **refuse = calloc(n, sizeof *refuse);
    char (*why)[80] = calloc(n, sizeof *why);
    double *scale = calloc(n, sizeof *scale);
    cJSON **evs = calloc(n, sizeof *evs);
    flc_sim_inv_t *inv = calloc(n, sizeof *inv);
    if (!cl || !names || !refuse || !why || !scale || !evs || !inv)
        rc = flc_err_set(e, FLC_ENOMEM, "out of memory");
    size_t accepted = 0;
    for (size_t i = 0; rc == FLC_OK && i < n; i++) {
        sim_client_t *x = &cl[i];
        const uint32_t *ix;
        x->idx = (int)arr[i].client;
        flc_sim_client_name(x->name, sizeof x->name, x->idx);
        x->num_samples = flc_parts_get(sm->parts, x->idx, &ix);
        x->faulty = sm->faulty[x->idx];
        x->delay_ms = arr[i].delay_ms;
        x->inv = (long)i;
        names[i] = x->name;
        scale[i] = flc_async_stale_weight(&sm->stale, arr[i].staleness);
        if (arr[i].refused) {
            snprintf(why[i], sizeof why[i], "too stale (staleness %u > max %d); kept for queries",
                     arr[i].staleness, sm->a->max_staleness);
            refuse[i] = why[i];
            ver->refused++;
        } else {
            accepted++;
            ver->staleness_mean += arr[i].staleness;
            if (arr[i].staleness > ver->staleness_max)
                ver->staleness_max = arr[i].staleness;
        }
        if ((evs[i] = client_event(sm, v, arr[i].base, x)) == NULL)
            rc = flc_err_set(e, FLC_ENOMEM, "out of memory for client events");
    }
    ver->staleness_mean = accepted ? ver->staleness_mean / (double)accepted : 0;
    uint64_t rd0 = flc_store_bytes_read(sm->s), wr0 = flc_store_bytes_written(sm->s);
    for (uint32_t k = 0; rc == FLC_OK && k < sm->S; k++)
        if (flc_store_round_begin(sm->s, c->job, sm->S, v, k, names, n) != FLC_OK)
            rc = sim_store_err(sm->s, e);
    uint64_t tc = flc_now_ns();
    if (rc == FLC_OK)
        rc = c->invoke(c->invoke_user, evs, n, inv, e);
    out->clients_ms = (double)(flc_now_ns() - tc) / 1e6;
    if (rc == FLC_OK)
        rc = merge_version(sm, v, names, scale, refuse, n, e);

    int merged = rc == FLC_OK;
    for (uint32_t k = 0; k < sm->S; k++) {
        amerger_t *mt = &sm->m[k];
        if (mt->rc != FLC_OK && merged) {
            snprintf(out->merge_error, sizeof out->merge_error, "shard %u: %s", k,
                     flc_err_msg(&mt->err));
            merged = 0;
        }
        out->merge_ms = mt->rep.merge_ms > out->merge_ms ? mt->rep.merge_ms : out->merge_ms;
    }
    if (merged) {
        flc_err_t pe = {0};
        if (flc_rs_pull(sm->s, c->job, v, sm->S, sm->P, c->round_timeout_ms, sm->delta, &pe) ==
            FLC_OK) {
            for (size_t i = 0; i < sm->P; i++)
                sm->global[i] += sm->delta[i];
        } else {
            snprintf(out->merge_error, sizeof out->merge_error, "pull: %s", flc_err_msg(&pe));
            merged = 0;
        }
    }
    out->merged = merged;
    uint64_t te = flc_now_ns();
    if (rc == FLC_OK)
        rc = flc_model_evaluate(sm->model, sm->global, sm->test, NULL, sm->test->n,
                                &out->accuracy, &out->loss, e);
    out->eval_ms = (double)(flc_now_ns() - te) / 1e6;
    if (rc == FLC_OK)
        rc = sim_put_global(sm->s, sm->gjob, v, sm->P, sm->global, e);
    out->round_ms = (double)(flc_now_ns() - t0) / 1e6;
    if (rc == FLC_OK) {
        sim_round_rec_t rec = {.round = v, .cl = cl, .k = n, .inv = inv, .out = out,
                               .started_ms = flc_wall_ms() - (uint64_t)out->round_ms,
                               .dp_epsilon = -1, .dp_clip = -1};
        for (uint32_t k = 0; k < sm->S; k++) {
            rec.bytes_read += sm->m[k].rd;
            rec.bytes_written += sm->m[k].wr;
            rec.merge_cost_usd += sm->m[k].rep.merge_ms / 1000.0 *
                                  ((double)c->memory_mb / 1024.0) * c->price_per_gb_s;
        }
        rec.bytes_read += flc_store_bytes_read(sm->s) - rd0;
        rec.bytes_written += flc_store_bytes_written(sm->s) - wr0;
        rc = sim_record_round(sm->s, c, sm->P, &rec, e);
        if (rc == FLC_OK)
            rc = async_record_version(sm->s, c, sm->a, &sm->stale, v, arr, n, ver, e);
    }
    if (rc == FLC_OK && !c->keep_updates && flc_store_delete_round(sm->s, c->job, v) != 0)
        rc = sim_store_err(sm->s, e);
    for (uint32_t k = 0; k < sm->S; k++)
        flc_rs_report_free(&sm->m[k].rep);
    for (size_t i = 0; i < n && evs; i++)
        cJSON_Delete(evs[i]);
    for (size_t i = 0; i < n && inv; i++)
        cJSON_Delete(inv[i].result);
    free(cl), free(names), free(refuse), free(why), free(scale), free(evs), free(inv);
    return rc;
}

int flc_async_run(const flc_sim_cfg_t *cfg, const flc_async_cfg_t *a,
                  flc_sim_progress_t progress, void *user, flc_async_result_t *res,
                  flc_err_t *e)
{
    memset(res, 0, sizeof *res);
    if (a->mode != FLC_ASYNC_MODE_ASYNC && a->mode != FLC_ASYNC_MODE_SYNC_CLOCK)
        return flc_err_set(e, FLC_EINVAL, "flc_async_run runs --mode async or sync-clock");
    int rc = flc_async_cfg_check(cfg, a, e);
    if (rc != FLC_OK)
        return rc;
    flc_sim_cfg_t c = *cfg;
    rc = flc_sim_cfg_finish(&c, e);
    if (rc != FLC_OK)
        return rc;
    flc_sim_inproc_t inproc = {.store_opts = c.store_opts};
    if (c.invoke == flc_sim_invoke_inproc && c.invoke_user == NULL)
        c.invoke_user = &inproc;
    uint64_t t0 = flc_now_ns();
    asim_t sm = {.c = &c, .a = a};
    flc_sim_result_t *r = &res->sim;
    r->rounds = calloc((size_t)c.rounds, sizeof *r->rounds);
    res->versions = calloc((size_t)c.rounds, sizeof *res->versions);
    if (r->rounds == NULL || res->versions == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    r->init_accuracy = r->init_loss = -1;
    rc = setup(&sm, r, e);
    for (int v = 1; rc == FLC_OK && v <= c.rounds; v++) {
        flc_sim_round_t *out = &r->rounds[r->nrounds];
        rc = run_version(&sm, (uint32_t)v, out, &res->versions[r->nrounds], e);
        if (rc != FLC_OK) {
            flc_err_wrap(e, "version %d: ", v);
            break;
        }
        r->nrounds++;
        r->cost_usd += out->cost_usd;
        r->bytes += out->bytes;
        if (progress)
            progress(out, c.rounds, (double)(flc_now_ns() - t0) / 1e9, user);
    }
    r->wall_ms = (double)(flc_now_ns() - t0) / 1e6;
    teardown(&sm);
    return rc;
}

void flc_async_result_free(flc_async_result_t *r)
{
    flc_sim_result_free(&r->sim);
    free(r->versions);
    r->versions = NULL;
}
