/* One synchronous SGD worker from start to end: load and standardize the
 * data, keep this worker's IID part, then for every step compute the
 * minibatch gradient, exchange it through the cache (push, run the mergers
 * this worker owns, pull), and apply the mean. Worker 0 also evaluates and
 * records every epoch and reports progress. See sgd_worker.h for the key
 * scheme and the protocol. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <cjson/cJSON.h>

#include "aggregator/reduce_scatter.h"
#include "base/clock.h"
#include "base/log.h"
#include "cache/keys.h"
#include "ml/batcher.h"
#include "ml/dataset_idx.h"
#include "ml/model.h"
#include "ml/norm.h"
#include "ml/partition.h"
#include "workers/sgd_worker.h"

/* Expiry of what a driver may never read (progress, the last step rounds). */
#define PROGRESS_TTL_MS 3600000u
#define LAST_ROUNDS_TTL_MS 600000u
#define EVAL_BATCH 256

typedef struct worker {
    flc_sgd_cfg_t c;
    flc_store_t *s;
    char name[16];                   /* "w<rank>" */
    char steps_job[FLC_NAME_MAX + 1];
    char progress_key[FLC_KEY_MAX];
    char **names;                    /* w0..w{W-1}: expected contributors */
    flc_dataset_t *train, *test;     /* this worker's part; the test set (rank 0) */
    flc_model_t *m;
    flc_batcher_t *b;
    float *w, *grad, *merged;        /* nparams, nparams + 1, nparams + 1 */
    size_t nparams, steps;           /* steps per epoch */
    double *step_ms;                 /* this epoch's step times (rank 0) */
    flc_sgd_result_t *r;
} worker_t;

static double ms_since(uint64_t t0)
{
    return (double)(flc_now_ns() - t0) / 1e6;
}

static void worker_free(worker_t *w)
{
    if (w->names != NULL)
        for (int i = 0; i < w->c.workers; i++)
            free(w->names[i]);
    free(w->names);
    flc_data_free(w->train);
    flc_data_free(w->test);
    flc_batcher_free(w->b);
    flc_model_free(w->m);
    free(w->w);
    free(w->grad);
    free(w->merged);
    free(w->step_ms);
    flc_store_close(w->s);
}

/* RPUSHes one progress record (best effort: progress is for people). */
static void progress(worker_t *w, cJSON *rec)
{
    char *txt = rec ? cJSON_PrintUnformatted(rec) : NULL;
    cJSON_Delete(rec);
    if (txt == NULL || w->s == NULL) {
        free(txt);
        return;
    }
    redisReply *r;
    if (flc_store_commandf(w->s, &r, "RPUSH %s %s", w->progress_key, txt) == FLC_OK)
        freeReplyObject(r);
    if (flc_store_commandf(w->s, &r, "PEXPIRE %s %u", w->progress_key, PROGRESS_TTL_MS) ==
        FLC_OK)
        freeReplyObject(r);
    cJSON_free(txt);
}

/* Loads the train set, standardizes it with statistics of the whole loaded
 * set (identical in every worker), keeps this worker's IID part; rank 0 also
 * loads and standardizes the test set. */
static int load_data(worker_t *w, flc_err_t *e)
{
    const flc_sgd_cfg_t *c = &w->c;
    flc_dataset_t *all = NULL;
    flc_parts_t *parts = NULL;
    flc_norm_t nm = {0};
    int rc = flc_data_load_fashion(c->data_dir, 1, c->subset, &all, e);
    if (rc == FLC_OK && all->n < (size_t)c->workers * c->batch)
        rc = flc_err_set(e, FLC_EINVAL, "%zu training samples cannot give %d workers one batch "
                         "of %zu each", all->n, c->workers, c->batch);
    if (rc == FLC_OK)
        rc = flc_norm_fit(all, FLC_NORM_FEATURE, &nm, e);
    if (rc == FLC_OK)
        rc = flc_split_iid(all->n, c->workers, c->seed, &parts, e);
    if (rc == FLC_OK) {
        const uint32_t *idx;
        size_t n = flc_parts_get(parts, c->rank, &idx);
        rc = flc_data_subset(all, idx, n, &w->train, e);
        /* Same step count everywhere: the smallest part's full batches. */
        w->steps = (all->n / (size_t)c->workers) / c->batch;
    }
    flc_data_free(all);
    flc_parts_free(parts);
    if (rc == FLC_OK)
        rc = flc_norm_apply(&nm, w->train, e);
    if (rc == FLC_OK && c->rank == 0) {
        rc = flc_data_load_fashion(c->data_dir, 0, c->test_subset, &w->test, e);
        if (rc == FLC_OK)
            rc = flc_norm_apply(&nm, w->test, e);
    }
    flc_norm_release(&nm);
    return rc;
}

static int setup(worker_t *w, flc_err_t *e)
{
    const flc_sgd_cfg_t *c = &w->c;
    snprintf(w->name, sizeof w->name, "w%d", c->rank);
    flc_sgd_steps_job(w->steps_job, sizeof w->steps_job, c->job, e);
    flc_sgd_progress_key(w->progress_key, sizeof w->progress_key, c->job);
    w->names = calloc((size_t)c->workers, sizeof *w->names);
    if (w->names == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    for (int i = 0; i < c->workers; i++) {
        char nm[16];
        snprintf(nm, sizeof nm, "w%d", i);
        if ((w->names[i] = strdup(nm)) == NULL)
            return flc_err_set(e, FLC_ENOMEM, "out of memory");
    }
    /* io timeout above the longest blocking wait: the store also bounds it. */
    flc_store_opts_t so = {0};
    w->s = c->redis ? flc_store_open(c->redis, &so, e) : flc_store_open_env(&so, e);
    if (w->s == NULL)
        return e->code;
    uint64_t t0 = flc_now_ns();
    int rc = load_data(w, e);
    w->r->load_ms = ms_since(t0);
    if (rc != FLC_OK)
        return rc;
    flc_model_desc_t d;
    size_t maxb = c->batch > EVAL_BATCH ? c->batch : EVAL_BATCH;
    if ((rc = flc_model_desc_init(&d, c->model, w->train->dim, c->hidden,
                                  (size_t)w->train->num_classes, e)) != FLC_OK ||
        (rc = flc_model_new(&d, maxb, &w->m, e)) != FLC_OK)
        return rc;
    w->nparams = w->m->nparams;
    if (w->nparams + 1 < c->num_shards)
        return flc_err_set(e, FLC_EINVAL, "a model of %zu parameters cannot be cut into %u "
                           "shards", w->nparams, c->num_shards);
    w->w = malloc(w->nparams * sizeof(float));
    w->grad = malloc((w->nparams + 1) * sizeof(float));
    w->merged = malloc((w->nparams + 1) * sizeof(float));
    w->step_ms = malloc(w->steps * sizeof(double));
    if (w->w == NULL || w->grad == NULL || w->merged == NULL || w->step_ms == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory for a %zu-parameter model",
                           w->nparams);
    flc_model_init_params(w->m, w->w, c->seed);
    /* Each worker shuffles its own part with its own stream. */
    return flc_batcher_new(w->train, NULL, 0, c->batch, 1, 1,
                           c->seed * 1000003ULL + (uint64_t)c->rank + 1, &w->b, e);
}

/* Waits until all W workers have loaded their data, so that the first
 * step's exchange does not count the slowest loader as communication: each
 * worker INCRs fl:{J.steps/0/0}:ready, the one that makes it W pushes W
 * tokens on fl:{J.steps/0/0}:go, and every worker BLPOPs one (steps start
 * at round 1, so round 0 is free for this). */
static int start_barrier(worker_t *w, flc_err_t *e)
{
    char key[FLC_KEY_MAX], tok[16];
    flc_key_shard(key, w->steps_job, 0, 0, "ready");
    redisReply *r;
    int rc = flc_store_commandf(w->s, &r, "INCR %s", key);
    if (rc != FLC_OK)
        return flc_err_set(e, rc, "start barrier: %s", flc_store_errstr(w->s));
    long long n = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    if (flc_store_commandf(w->s, &r, "PEXPIRE %s %u", key, LAST_ROUNDS_TTL_MS) == FLC_OK)
        freeReplyObject(r);
    if (n == w->c.workers) {
        if (flc_store_commandf(w->s, &r, "UNLINK %s", key) == FLC_OK)
            freeReplyObject(r);
        if (flc_store_notify(w->s, w->steps_job, 0, 0, "go", "go", (unsigned)w->c.workers) !=
            FLC_OK)
            return flc_err_set(e, flc_store_error(w->s)->code, "start barrier: %s",
                               flc_store_errstr(w->s));
    } else if (n < 1 || n > w->c.workers) {
        return flc_err_set(e, FLC_EDATA, "start barrier of job %s counted %lld workers of %d: "
                           "is another training with this job name running?", w->c.job, n,
                           w->c.workers);
    }
    rc = flc_store_wait(w->s, w->steps_job, 0, 0, "go", w->c.step_timeout_ms, tok, sizeof tok);
    if (rc == FLC_ETIMEOUT)
        return flc_err_set(e, rc, "start barrier: not all %d workers of job %s started within "
                           "%u ms", w->c.workers, w->c.job, w->c.step_timeout_ms);
    if (rc != FLC_OK)
        return flc_err_set(e, rc, "start barrier: %s", flc_store_errstr(w->s));
    return FLC_OK;
}

/* Runs the merger of one shard of step g and refuses a partial merge. */
static int merge_shard(worker_t *w, uint32_t g, uint32_t shard, flc_err_t *e)
{
    const flc_sgd_cfg_t *c = &w->c;
    flc_merger_cfg_t mc = {.job = w->steps_job, .round = g, .shard = shard,
                           .num_shards = c->num_shards, .model_size = w->nparams + 1,
                           .expected = (const char *const *)w->names,
                           .n_expected = (size_t)c->workers, .deadline_ms = c->step_timeout_ms,
                           .readers = (unsigned)c->workers,
                           .ephemeral = 1}; /* a step: deleted two steps later, never queried */
    if (flc_merge_rule_init(&mc.rule, "mean", e) != FLC_OK)
        return e->code;
    flc_merge_report_t rep;
    int rc = flc_merger_run(w->s, &mc, &rep, e);
    w->r->merge_ms += rep.merge_ms;
    w->r->wait_ms += rep.wait_ms;
    if (rc == FLC_OK && (rep.missing.n > 0 || rep.rejected.n > 0))
        rc = flc_err_set(e, FLC_EDATA, "step %u, shard %u: %zu worker(s) missing (first: %s) "
                         "and %zu rejected (first: %s) after %u ms; synchronous SGD cannot go on",
                         g, shard, rep.missing.n, rep.missing.n ? rep.missing.items[0] : "-",
                         rep.rejected.n, rep.rejected.n ? rep.rejected.items[0] : "-",
                         c->step_timeout_ms);
    flc_merge_report_free(&rep);
    return rc;
}

/* Deletes step round g. flc_store_delete_round finds the round's keys
 * from its indexes and unlinks them in one pipelined round trip, so the
 * step's critical path pays about S + 4 round trips for it, and the list of
 * what a round consists of lives in one place (cache/store_meta.c). */
static int drop_step_round(worker_t *w, uint32_t g)
{
    return flc_store_delete_round(w->s, w->steps_job, g);
}

/* One exchange: push the gradient (+ loss), merge the shards this worker
 * owns, pull the mean into w->merged, then delete an old step round when it
 * is this worker's turn. */
static int exchange(worker_t *w, uint32_t g, flc_err_t *e)
{
    const flc_sgd_cfg_t *c = &w->c;
    flc_rs_push_cfg_t pc = {.job = w->steps_job, .round = g, .client = w->name,
                            .num_shards = c->num_shards, .model_size = w->nparams + 1,
                            .num_samples = c->batch};
    int rc = flc_rs_push(w->s, &pc, w->grad, e);
    if (rc != FLC_OK)
        return flc_err_wrap(e, "step %u, push of %s: ", g, w->name);
    for (uint32_t sh = (uint32_t)c->rank; sh < c->num_shards; sh += (uint32_t)c->workers)
        if ((rc = merge_shard(w, g, sh, e)) != FLC_OK)
            return rc;
    rc = flc_rs_pull(w->s, w->steps_job, g, c->num_shards, w->nparams + 1,
                     2 * c->step_timeout_ms, w->merged, e);
    if (rc != FLC_OK)
        return flc_err_wrap(e, "step %u, pull by %s: ", g, w->name);
    /* Everyone pushed g only after pulling g-1: round g-2 is read by all. */
    if (g > 2 && g % (uint32_t)c->workers == (uint32_t)c->rank) {
        uint64_t t0 = flc_now_ns();
        rc = drop_step_round(w, g - 2);
        w->r->cleanup_ms += ms_since(t0);
        if (rc != FLC_OK)
            return flc_err_set(e, rc, "step %u: deleting step round %u: %s", g, g - 2,
                               flc_store_errstr(w->s));
    }
    return FLC_OK;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Epoch statistics worker 0 records. */
typedef struct epoch_stats {
    int epoch;
    double loss, acc, test_loss, compute_ms, comm_ms, merge_ms, wait_ms, eval_ms, epoch_ms;
    uint64_t started_ms, bytes_read, bytes_written;
} epoch_stats_t;

#define ADD_KV(arr, n, ptrs, k, v)                                                             \
    do {                                                                                       \
        (arr)[n].key = (char *)(k);                                                            \
        (arr)[n].value = (v);                                                                  \
        (ptrs)[n] = &(arr)[n];                                                                 \
        (n)++;                                                                                 \
    } while (0)

/* Stores the epoch's RoundMeta under job c->job, round = epoch. */
static int put_epoch_meta(worker_t *w, const epoch_stats_t *st, flc_err_t *e)
{
    const flc_sgd_cfg_t *c = &w->c;
    double sorted_p50 = 0, mean = 0, mx = 0;
    if (w->steps > 0) {
        for (size_t i = 0; i < w->steps; i++) {
            mean += w->step_ms[i];
            mx = w->step_ms[i] > mx ? w->step_ms[i] : mx;
        }
        mean /= (double)w->steps;
        qsort(w->step_ms, w->steps, sizeof(double), cmp_double);
        sorted_p50 = w->step_ms[w->steps / 2];
    }
    double cost = c->memory_mb ? (double)c->workers * st->epoch_ms / 1000.0 *
                                     (double)c->memory_mb / 1024.0 * c->price_per_gb_s
                               : 0;
    Flcache__RoundMeta__MetricsEntry me[16], *mp[16];
    Flcache__RoundMeta__HyperparamsEntry he[10], *hp[10];
    Flcache__RoundMeta__NotesEntry ne[4], *np[4];
    for (int i = 0; i < 16; i++)
        flcache__round_meta__metrics_entry__init(&me[i]);
    for (int i = 0; i < 10; i++)
        flcache__round_meta__hyperparams_entry__init(&he[i]);
    for (int i = 0; i < 4; i++)
        flcache__round_meta__notes_entry__init(&ne[i]);
    size_t nm = 0, nh = 0, nn = 0;
    ADD_KV(me, nm, mp, "train_loss", st->loss);
    ADD_KV(me, nm, mp, "test_accuracy", st->acc);
    ADD_KV(me, nm, mp, "test_loss", st->test_loss);
    ADD_KV(me, nm, mp, "steps", (double)w->steps);
    ADD_KV(me, nm, mp, "step_ms_mean", mean);
    ADD_KV(me, nm, mp, "step_ms_p50", sorted_p50);
    ADD_KV(me, nm, mp, "step_ms_max", mx);
    ADD_KV(me, nm, mp, "compute_ms", st->compute_ms);
    ADD_KV(me, nm, mp, "comm_ms", st->comm_ms);
    ADD_KV(me, nm, mp, "merge_ms", st->merge_ms);
    ADD_KV(me, nm, mp, "wait_ms", st->wait_ms);
    ADD_KV(me, nm, mp, "eval_ms", st->eval_ms);
    ADD_KV(me, nm, mp, "epoch_ms", st->epoch_ms);
    if (c->memory_mb)
        ADD_KV(me, nm, mp, "cost_usd", cost);
    ADD_KV(he, nh, hp, "lr", c->lr);
    ADD_KV(he, nh, hp, "batch", (double)c->batch);
    ADD_KV(he, nh, hp, "workers", c->workers);
    ADD_KV(he, nh, hp, "epochs", c->epochs);
    ADD_KV(he, nh, hp, "hidden", (double)w->m->d.hidden);
    ADD_KV(he, nh, hp, "num_shards", c->num_shards);
    ADD_KV(he, nh, hp, "seed", (double)c->seed);
    ADD_KV(he, nh, hp, "subset", (double)c->subset);
    ADD_KV(he, nh, hp, "memory_mb", c->memory_mb);
    ADD_KV(ne, nn, np, "model", (char *)c->model);
    ADD_KV(ne, nn, np, "comm", (char *)flc_sgd_comm_name(c->comm));
    ADD_KV(ne, nn, np, "steps_job", w->steps_job);
    ADD_KV(ne, nn, np, "data", (char *)(c->data_dir ? c->data_dir : "default"));

    Flcache__RoundMeta m = FLCACHE__ROUND_META__INIT;
    m.job = (char *)c->job;
    m.round = (uint32_t)st->epoch;
    m.rule = "mean";
    m.num_shards = c->num_shards;
    m.model_size = w->nparams;
    m.n_expected = m.n_participants = (size_t)c->workers;
    m.expected = m.participants = w->names;
    m.n_metrics = nm;
    m.metrics = mp;
    m.n_hyperparams = nh;
    m.hyperparams = hp;
    m.n_notes = nn;
    m.notes = np;
    m.wait_ms = st->wait_ms;
    m.merge_ms = st->merge_ms;
    m.round_ms = st->epoch_ms;
    m.bytes_read = st->bytes_read;
    m.bytes_written = st->bytes_written;
    m.cost_usd = cost;
    m.started_ms = st->started_ms;
    m.closed_ms = flc_wall_ms();
    m.status = "closed";
    if (flc_store_put_round_meta(w->s, &m) != FLC_OK)
        return flc_err_set(e, flc_store_error(w->s)->code, "epoch %d metadata: %s", st->epoch,
                           flc_store_errstr(w->s));
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "type", "epoch");
    cJSON_AddNumberToObject(p, "epoch", st->epoch);
    cJSON_AddNumberToObject(p, "epochs", c->epochs);
    cJSON_AddNumberToObject(p, "loss", st->loss);
    cJSON_AddNumberToObject(p, "accuracy", st->acc);
    cJSON_AddNumberToObject(p, "test_loss", st->test_loss);
    cJSON_AddNumberToObject(p, "epoch_ms", st->epoch_ms);
    cJSON_AddNumberToObject(p, "compute_ms", st->compute_ms);
    cJSON_AddNumberToObject(p, "comm_ms", st->comm_ms);
    cJSON_AddNumberToObject(p, "step_ms_mean", mean);
    cJSON_AddNumberToObject(p, "gstep", (double)w->steps * st->epoch);
    cJSON_AddNumberToObject(p, "total", (double)w->steps * c->epochs);
    progress(w, p);
    return FLC_OK;
}

/* The step loop over every epoch. */
static int train(worker_t *w, flc_err_t *e)
{
    const flc_sgd_cfg_t *c = &w->c;
    flc_sgd_result_t *r = w->r;
    unsigned every = c->progress_every ? c->progress_every
                                       : (unsigned)(w->steps / 10 ? w->steps / 10 : 1);
    uint32_t g = 0;
    for (int ep = 1; ep <= c->epochs; ep++) {
        epoch_stats_t st = {.epoch = ep, .started_ms = flc_wall_ms()};
        uint64_t e0 = flc_now_ns(), rd0 = flc_store_bytes_read(w->s);
        uint64_t wr0 = flc_store_bytes_written(w->s);
        double mg0 = r->merge_ms, wt0 = r->wait_ms, lsum = 0;
        if (ep > 1)
            flc_batcher_epoch(w->b);
        for (size_t k = 0; k < w->steps; k++) {
            g++;
            uint64_t t0 = flc_now_ns();
            const float *x;
            const int32_t *y;
            size_t bs = flc_batcher_next(w->b, &x, &y);
            if (bs != c->batch)
                return flc_err_set(e, FLC_EINVAL, "worker %d: batch %zu of epoch %d has %zu "
                                   "samples, expected %zu", c->rank, k, ep, bs, c->batch);
            float loss;
            int rc = flc_model_loss_grad(w->m, w->w, x, y, bs, w->grad, &loss, e);
            if (rc != FLC_OK)
                return rc;
            w->grad[w->nparams] = loss;
            double t_comp = ms_since(t0);
            uint64_t t1 = flc_now_ns();
            if ((rc = exchange(w, g, e)) != FLC_OK)
                return rc;
            double t_comm = ms_since(t1);
            uint64_t t2 = flc_now_ns();
            flc_model_sgd_step(w->nparams, w->w, w->merged, (float)c->lr);
            t_comp += ms_since(t2);
            lsum += w->merged[w->nparams];
            st.compute_ms += t_comp;
            st.comm_ms += t_comm;
            w->step_ms[k] = ms_since(t0);
            if (c->rank == 0 && ((k + 1) % every == 0 || k + 1 == w->steps)) {
                cJSON *p = cJSON_CreateObject();
                cJSON_AddStringToObject(p, "type", "step");
                cJSON_AddNumberToObject(p, "epoch", ep);
                cJSON_AddNumberToObject(p, "epochs", c->epochs);
                cJSON_AddNumberToObject(p, "step", (double)(k + 1));
                cJSON_AddNumberToObject(p, "steps", (double)w->steps);
                cJSON_AddNumberToObject(p, "gstep", g);
                cJSON_AddNumberToObject(p, "total", (double)w->steps * c->epochs);
                cJSON_AddNumberToObject(p, "loss", lsum / (double)(k + 1));
                cJSON_AddNumberToObject(p, "step_ms", w->step_ms[k]);
                progress(w, p);
            }
        }
        st.loss = w->steps ? lsum / (double)w->steps : 0;
        r->final_loss = st.loss;
        r->compute_ms += st.compute_ms;
        r->comm_ms += st.comm_ms;
        st.merge_ms = r->merge_ms - mg0;
        st.wait_ms = r->wait_ms - wt0;
        if (c->rank != 0)
            continue;
        uint64_t v0 = flc_now_ns();
        int rc = flc_model_evaluate(w->m, w->w, w->test, NULL, 0, &st.acc, &st.test_loss, e);
        if (rc != FLC_OK)
            return rc;
        st.eval_ms = ms_since(v0);
        st.compute_ms += st.eval_ms;
        r->eval_ms += st.eval_ms;
        r->compute_ms += st.eval_ms;
        r->accuracy = st.acc;
        r->test_loss = st.test_loss;
        st.epoch_ms = ms_since(e0);
        st.bytes_read = flc_store_bytes_read(w->s) - rd0;
        st.bytes_written = flc_store_bytes_written(w->s) - wr0;
        if ((rc = put_epoch_meta(w, &st, e)) != FLC_OK)
            return rc;
    }
    r->steps = g;
    if (c->rank == 0) {
        /* Rounds g-1 and g may still be read by slower workers: let them
         * expire (a driver deletes them sooner with flc_sgd_cleanup). */
        for (uint32_t k = g > 1 ? g - 1 : 1; k <= g && g > 0; k++)
            flc_store_expire_round(w->s, w->steps_job, k, LAST_ROUNDS_TTL_MS);
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "type", "done");
        cJSON_AddNumberToObject(p, "gstep", g);
        progress(w, p);
    }
    return FLC_OK;
}

int flc_sgd_run(const flc_sgd_cfg_t *cin, flc_sgd_result_t *r, flc_err_t *e)
{
    memset(r, 0, sizeof *r);
    r->rank = cin->rank;
    r->accuracy = r->test_loss = -1;
    uint64_t t0 = flc_now_ns();
    worker_t w = {.c = *cin, .r = r};
    int rc = flc_sgd_cfg_finish(&w.c, e);
    if (rc == FLC_OK)
        rc = setup(&w, e);
    if (rc == FLC_OK) {
        r->nparams = w.nparams;
        r->steps_per_epoch = w.steps;
        r->train_samples = w.train->n;
        r->compute_ms = r->load_ms;
        uint64_t t1 = flc_now_ns();
        rc = start_barrier(&w, e);
        r->start_wait_ms = ms_since(t1);
    }
    if (rc == FLC_OK) {
        rc = train(&w, e);
    }
    if (rc == FLC_OK) {
        r->checksum = flc_fnv1a64(w.w, w.nparams * sizeof(float));
    } else if (w.s != NULL) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "type", "error");
        cJSON_AddNumberToObject(p, "rank", w.c.rank);
        cJSON_AddStringToObject(p, "error", flc_err_msg(e));
        progress(&w, p);
    }
    r->wall_ms = ms_since(t0);
    worker_free(&w);
    return rc;
}

int flc_sgd_worker_fn(const cJSON *event, cJSON **result, double *compute_ms, double *comm_ms,
                      flc_err_t *e)
{
    *result = NULL;
    /* One thread per worker unless the deployment says otherwise: W workers
     * share the machine's cores, and BLAS threads would fight over them. */
    if (getenv("OPENBLAS_NUM_THREADS") == NULL)
        openblas_set_num_threads(1);
    flc_sgd_cfg_t c;
    flc_sgd_cfg_init(&c);
    int rc = flc_sgd_cfg_from_json(&c, event, e);
    if (rc != FLC_OK)
        return rc;
    flc_sgd_result_t r;
    rc = flc_sgd_run(&c, &r, e);
    if (compute_ms)
        *compute_ms = r.compute_ms;
    if (comm_ms)
        *comm_ms = r.comm_ms;
    if (rc != FLC_OK)
        return rc;
    *result = flc_sgd_result_json(&r);
    return *result ? FLC_OK : flc_err_set(e, FLC_ENOMEM, "out of memory");
}
