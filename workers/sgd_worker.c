/* One synchronous SGD worker from start to end, and the "worker" role of
 * flcache-fn: load and standardize the data, keep this worker's IID part,
 * then for every step compute the minibatch gradient, exchange it through
 * the cache (sgd_exchange.c) and apply the mean. Worker 0 also evaluates
 * and records every epoch and reports progress (sgd_record.c). See
 * sgd_worker.h for the key scheme and the protocol. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/clock.h"
#include "ml/batcher.h"
#include "ml/dataset_idx.h"
#include "ml/model.h"
#include "ml/tensor_file.h"
#include "ml/norm.h"
#include "ml/partition.h"
#include "workers/sgd_worker.h"
#include "workers/sgd_worker_internal.h"

#define EVAL_BATCH 256
#define STEP_VALUE_TTL_MS 600000ull /* + 2 x step timeout: a step value's expiry */

static void worker_free(sgd_worker_t *w)
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
    free(w->mine);
    free(w->step_ms);
    if (w->ps_fd >= 0)
        close(w->ps_fd); /* the parameter server ends when every worker closed */
    flc_store_close(w->s);
}

/* Loads the train set, standardizes it with statistics of the whole loaded
 * set (identical in every worker), keeps this worker's IID part; rank 0 also
 * loads and standardizes the test set. */
static int load_data(sgd_worker_t *w, flc_err_t *e)
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

static int setup(sgd_worker_t *w, flc_store_t **meta_s, flc_err_t *e)
{
    const flc_sgd_cfg_t *c = &w->c;
    snprintf(w->name, sizeof w->name, "w%d", c->rank);
    flc_sgd_steps_job(w->steps_job, sizeof w->steps_job, c->job, e);
    w->names = calloc((size_t)c->workers, sizeof *w->names);
    if (w->names == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    for (int i = 0; i < c->workers; i++) {
        char nm[16];
        snprintf(nm, sizeof nm, "w%d", i);
        if ((w->names[i] = strdup(nm)) == NULL)
            return flc_err_set(e, FLC_ENOMEM, "out of memory");
    }
    flc_store_cfg_t sc = {.url = c->redis};
    if (c->store_opts != NULL)
        sc.opts = *c->store_opts;
    /* Rank 0's epoch RoundMeta of J is history a user keeps: it goes
     * through a store with the caller's options. */
    if (c->rank == 0 && (*meta_s = flc_store_open_cfg(&sc, NULL, e)) == NULL)
        return e->code;
    /* Every value this store writes is a step's (J/steps), which a running
     * training deletes two steps later: written with an expiry, so that if
     * the driver and everything with it is killed, the model-sized values
     * of the steps in flight do not stay forever (cli/train_guard.c). */
    uint64_t step_ttl = 2ull * c->step_timeout_ms + STEP_VALUE_TTL_MS;
    if (sc.opts.ttl_ms == 0 || sc.opts.ttl_ms > step_ttl)
        sc.opts.ttl_ms = step_ttl;
    w->s = flc_store_open_cfg(&sc, NULL, e);
    if (w->s == NULL)
        return e->code;
    uint64_t t0 = flc_now_ns();
    int rc = load_data(w, e);
    w->r->load_ms = sgd_ms_since(t0);
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
    w->mine = calloc(c->num_shards ? c->num_shards : 1, 1);
    w->step_ms = malloc(w->steps * sizeof(double));
    if (w->w == NULL || w->grad == NULL || w->merged == NULL || w->mine == NULL ||
        w->step_ms == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory for a %zu-parameter model",
                           w->nparams);
    flc_model_init_params(w->m, w->w, c->seed);
    if (c->init != NULL && (rc = flc_tfile_load_into(c->init, w->w, w->nparams, e)) != FLC_OK)
        return rc;
    /* Each worker shuffles its own part with its own stream. */
    return flc_batcher_new(w->train, NULL, 0, c->batch, 1, 1,
                           c->seed * 1000003ULL + (uint64_t)c->rank + 1, &w->b, e);
}

/* The step loop over every epoch; meta_s (rank 0) stores the epochs'
 * RoundMeta. */
static int train(sgd_worker_t *w, flc_store_t *meta_s, flc_err_t *e)
{
    const flc_sgd_cfg_t *c = &w->c;
    flc_sgd_result_t *r = w->r;
    unsigned every = c->progress_every ? c->progress_every
                                       : (unsigned)(w->steps / 10 ? w->steps / 10 : 1);
    uint32_t g = (uint32_t)(c->resume_after * w->steps); /* resumed: the steps before */
    for (int ep = 1 + c->resume_after; ep <= c->epochs; ep++) {
        sgd_epoch_stats_t st = {.epoch = ep, .started_ms = flc_wall_ms()};
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
            double t_comp = sgd_ms_since(t0);
            uint64_t t1 = flc_now_ns();
            if ((rc = sgd_exchange(w, g, e)) != FLC_OK)
                return rc;
            double t_comm = sgd_ms_since(t1);
            uint64_t t2 = flc_now_ns();
            if (c->comm != FLC_SGD_COMM_PS) /* the server stepped the model */
                flc_model_sgd_step(w->nparams, w->w, w->merged, (float)c->lr);
            t_comp += sgd_ms_since(t2);
            lsum += w->merged[w->nparams];
            st.compute_ms += t_comp;
            st.comm_ms += t_comm;
            w->step_ms[k] = sgd_ms_since(t0);
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
                sgd_progress(w, p);
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
        st.eval_ms = sgd_ms_since(v0);
        st.compute_ms += st.eval_ms;
        r->eval_ms += st.eval_ms;
        r->compute_ms += st.eval_ms;
        r->accuracy = st.acc;
        r->test_loss = st.test_loss;
        st.epoch_ms = sgd_ms_since(e0);
        st.bytes_read = flc_store_bytes_read(w->s) - rd0;
        st.bytes_written = flc_store_bytes_written(w->s) - wr0;
        flc_store_t *steps_s = w->s;
        w->s = meta_s; /* the epoch's record outlives the steps: no step expiry */
        rc = sgd_put_epoch_meta(w, &st, e);
        if (rc == FLC_OK) /* the model and checkpoint of the closed epoch */
            rc = sgd_resume_save(w, meta_s, ep, e);
        w->s = steps_s;
        if (rc != FLC_OK)
            return rc;
    }
    r->steps = g;
    if (c->rank == 0) {
        /* Rounds g-1 and g may still be read by slower workers: let them
         * expire (a driver deletes them sooner with flc_sgd_cleanup). */
        for (uint32_t k = g > 1 ? g - 1 : 1; k <= g && g > 0; k++)
            flc_store_drop_known_round(w->s, w->steps_job, k, c->num_shards,
                                       (const char *const *)w->names, (size_t)c->workers,
                                       LAST_ROUNDS_TTL_MS);
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "type", "done");
        cJSON_AddNumberToObject(p, "gstep", g);
        sgd_progress(w, p);
    }
    return FLC_OK;
}

int flc_sgd_run(const flc_sgd_cfg_t *cin, flc_sgd_result_t *r, flc_err_t *e)
{
    memset(r, 0, sizeof *r);
    r->rank = cin->rank;
    r->accuracy = r->test_loss = -1;
    uint64_t t0 = flc_now_ns();
    sgd_worker_t w = {.c = *cin, .r = r, .ps_fd = -1};
    flc_store_t *meta_s = NULL;
    int rc = flc_sgd_cfg_finish(&w.c, e);
    if (rc == FLC_OK)
        rc = setup(&w, &meta_s, e);
    if (rc == FLC_OK)
        rc = sgd_resume_load(&w, meta_s ? meta_s : w.s, e);
    if (rc == FLC_OK) {
        r->nparams = w.nparams;
        r->steps_per_epoch = w.steps;
        r->train_samples = w.train->n;
        r->compute_ms = r->load_ms;
        uint64_t t1 = flc_now_ns();
        rc = sgd_start_barrier(&w, e);
        r->start_wait_ms = sgd_ms_since(t1);
    }
    if (rc == FLC_OK) {
        rc = train(&w, meta_s, e);
    }
    if (rc == FLC_OK) {
        r->checksum = flc_fnv1a64(w.w, w.nparams * sizeof(float));
    } else if (w.s != NULL) {
        cJSON *p = cJSON_CreateObject();
        cJSON_AddStringToObject(p, "type", "error");
        cJSON_AddNumberToObject(p, "rank", w.c.rank);
        cJSON_AddStringToObject(p, "error", flc_err_msg(e));
        sgd_progress(&w, p);
    }
    r->wall_ms = sgd_ms_since(t0);
    worker_free(&w);
    flc_store_close(meta_s);
    return rc;
}

int flc_sgd_worker_fn(const flc_store_cfg_t *sc, const char *data_dir, const cJSON *event,
                      cJSON **result, double *compute_ms, double *comm_ms, flc_err_t *e)
{
    *result = NULL;
    flc_sgd_cfg_t c;
    flc_sgd_cfg_init(&c);
    c.data_dir = data_dir;
    if (sc != NULL) {
        c.redis = sc->url;
        c.store_opts = &sc->opts;
    }
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
