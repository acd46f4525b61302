/* The federated client function: read the global model, train locally on
 * the client's index list, apply the client's (simulated) fault, wait out
 * its straggler delay and push the delta by reduce-scatter. See client.h. */
#include "clients/client.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "aggregator/dp.h"
#include "aggregator/reduce_scatter.h"
#include "aggregator/rs_encode.h"
#include "base/clock.h"
#include "base/event.h"
#include "clients/client_data.h"
#include "ml/batcher.h"
#include "ml/model.h"
#include "ml/rng.h"

const char *flc_client_fault_name(int fault)
{
    switch (fault) {
    case FLC_FAULT_NONE: return "none";
    case FLC_FAULT_SIGN_FLIP: return "sign-flip";
    case FLC_FAULT_LABEL_FLIP: return "label-flip";
    case FLC_FAULT_NOISE: return "noise";
    default: return "?";
    }
}

int flc_client_fault_parse(const char *name, int *out)
{
    if (name == NULL)
        return FLC_EINVAL;
    char buf[32];
    size_t i = 0;
    for (; name[i] && i + 1 < sizeof buf; i++)
        buf[i] = name[i] == '_' ? '-' : name[i];
    buf[i] = '\0';
    for (int f = FLC_FAULT_NONE; f <= FLC_FAULT_NOISE; f++)
        if (strcmp(buf, flc_client_fault_name(f)) == 0) {
            *out = f;
            return FLC_OK;
        }
    return FLC_EINVAL;
}

typedef struct client_cfg {
    const char *job, *client, *redis, *model, *data_dir, *fault_s;
    char global_job[80];
    uint32_t round, num_shards;
    uint32_t base_round; /* the global model's version it trains on: round - 1, or the
                          * event's base_round (asynchronous FL: clients/async.h) */
    size_t hidden, batch, subset, synthetic;
    int epochs, fault;
    double lr, mu, fault_scale, delay_ms;
    double ldp_clip, ldp_noise; /* local DP (aggregator/dp.h); 0: off */
    uint64_t seed;
    uint64_t ttl_ms;  /* the run's --ttl: every key this client writes expires */
    flc_enc_t enc;    /* the job's update encoding (cache/encode.h); f32: plain frames */
    uint32_t *idx;
    size_t nidx;
} client_cfg_t;

/* Reads the event (base/event.h's rules; ranges as the simulate command
 * allows them, or what the types hold) into *c; "redis" and "data_dir"
 * default to the role's (NULL when it has none). c->idx is new memory the
 * caller frees, also on failure. */
static int parse_event(const cJSON *ev, const char *redis, const char *data_dir,
                       client_cfg_t *c, flc_err_t *e)
{
    memset(c, 0, sizeof *c);
    long long round, hidden, batch, subset, synthetic, shards, epochs, seed, ttl, base;
    const char *g, *enc_s;
    if (flc_ev_need_str(ev, "job", &c->job, e) || flc_ev_need_str(ev, "client", &c->client, e) ||
        flc_ev_need_int(ev, "round", 1, 4294967295LL, &round, e) ||
        flc_ev_opt_str(ev, "redis", redis, &c->redis, e) ||
        flc_ev_opt_str(ev, "global_job", NULL, &g, e) ||
        flc_ev_opt_str(ev, "model", "softmax", &c->model, e) ||
        flc_ev_opt_str(ev, "data_dir", data_dir, &c->data_dir, e) ||
        flc_ev_opt_int(ev, "hidden", 0, 65536, 0, &hidden, e) ||
        flc_ev_opt_int(ev, "batch", 1, 65536, 32, &batch, e) ||
        flc_ev_opt_int(ev, "subset", 0, 1000000000, 0, &subset, e) ||
        flc_ev_opt_int(ev, "synthetic_params", 0, 1000000000, 0, &synthetic, e) ||
        flc_ev_opt_int(ev, "num_shards", 1, 65536, 1, &shards, e) ||
        flc_ev_opt_int(ev, "local_epochs", 1, 100000, 1, &epochs, e) ||
        flc_ev_opt_num(ev, "lr", 0, INFINITY, 0.05, &c->lr, e) ||
        flc_ev_opt_num(ev, "mu", 0, INFINITY, 0, &c->mu, e) ||
        flc_ev_opt_int(ev, "seed", 0, 9007199254740992LL, 1, &seed, e) ||
        flc_ev_opt_num(ev, "delay_ms", 0, 86400000, 0, &c->delay_ms, e) ||
        flc_ev_opt_num(ev, "fault_scale", 0, INFINITY, 4, &c->fault_scale, e) ||
        flc_ev_opt_num(ev, "ldp_clip", 0, INFINITY, 0, &c->ldp_clip, e) ||
        flc_ev_opt_num(ev, "ldp_noise", 0, INFINITY, 0, &c->ldp_noise, e) ||
        flc_ev_opt_str(ev, "fault", "none", &c->fault_s, e) ||
        flc_ev_opt_str(ev, "encoding", "f32", &enc_s, e) ||
        flc_ev_opt_int(ev, "ttl_ms", 0, 9007199254740992LL, 0, &ttl, e) ||
        flc_ev_opt_int(ev, "base_round", -1, round - 1, -1, &base, e))
        return e->code;
    c->ttl_ms = (uint64_t)ttl;
    c->round = (uint32_t)round;
    c->base_round = base >= 0 ? (uint32_t)base : c->round - 1;
    c->hidden = (size_t)hidden;
    c->batch = (size_t)batch;
    c->subset = (size_t)subset;
    c->synthetic = (size_t)synthetic;
    c->num_shards = (uint32_t)shards;
    c->epochs = (int)epochs;
    c->seed = (uint64_t)seed;
    if (c->redis == NULL)
        return flc_err_set(e, FLC_EINVAL, "client %s: no 'redis' in the event and FLCACHE_REDIS "
                           "is unset", c->client);
    if (g != NULL)
        snprintf(c->global_job, sizeof c->global_job, "%s", g);
    else
        snprintf(c->global_job, sizeof c->global_job, "%s/g", c->job);
    if (flc_enc_parse(enc_s, &c->enc, e) != FLC_OK)
        return flc_err_wrap(e, "event field 'encoding': ");
    if (flc_client_fault_parse(c->fault_s, &c->fault) != FLC_OK)
        return flc_err_set(e, FLC_EINVAL, "event field 'fault' must be none, sign-flip, "
                           "label-flip or noise, not '%.64s'", c->fault_s);
    if (!(c->lr > 0)) /* the reader's range is >= 0; zero would not train */
        return flc_err_set(e, FLC_EINVAL, "event field 'lr' must be a number > 0, not %g",
                           c->lr);
    if (c->synthetic != 0)
        return FLC_OK;
    const cJSON *ix;
    if (flc_ev_need_array(ev, "indices", &ix, e) != FLC_OK)
        return e->code;
    c->nidx = (size_t)cJSON_GetArraySize(ix);
    c->idx = malloc((c->nidx ? c->nidx : 1) * sizeof *c->idx);
    if (c->idx == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory for %zu indices", c->nidx);
    size_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, ix)
    {
        long long v;
        if (flc_ev_item_int(it, "indices", i, 0, 4294967295LL, &v, e) != FLC_OK)
            return e->code;
        c->idx[i++] = (uint32_t)v;
    }
    return FLC_OK;
}

/* Local training: E epochs of minibatch SGD from w (the global model) on
 * ds, FedProx term towards ref when mu > 0. Fills the mean loss of the
 * first and last epochs and the number of steps. */
static int train(const client_cfg_t *c, flc_model_t *m, const flc_dataset_t *ds, float *w,
                 const float *ref, float *grad, double *loss0, double *loss1, uint64_t *steps,
                 flc_err_t *e)
{
    flc_batcher_t *b = NULL;
    uint64_t bseed = c->seed * 0x9E3779B97F4A7C15ull ^ ((uint64_t)c->round << 32) ^
                     (uint64_t)strtoull(c->client + (c->client[0] == 'c'), NULL, 10);
    int rc = flc_batcher_new(ds, NULL, ds->n, c->batch, 1, 0, bseed, &b, e);
    for (int ep = 0; rc == FLC_OK && ep < c->epochs; ep++) {
        if (ep > 0)
            flc_batcher_epoch(b);
        const float *x;
        const int32_t *y;
        size_t bs;
        double sum = 0;
        size_t seen = 0;
        while (rc == FLC_OK && (bs = flc_batcher_next(b, &x, &y)) > 0) {
            float loss;
            rc = flc_model_loss_grad(m, w, x, y, bs, grad, &loss, e);
            if (rc != FLC_OK)
                break;
            if (c->mu > 0)
                loss += (float)flc_model_add_prox(m->nparams, grad, w, ref, (float)c->mu);
            flc_model_sgd_step(m->nparams, w, grad, (float)c->lr);
            sum += (double)loss * (double)bs;
            seen += bs;
            (*steps)++;
        }
        double mean = seen ? sum / (double)seen : 0;
        if (ep == 0)
            *loss0 = mean;
        *loss1 = mean;
    }
    flc_batcher_free(b);
    return rc;
}

/* The fault of a malicious client, applied to the delta d[0..n). */
static void apply_fault(const client_cfg_t *c, float *d, size_t n)
{
    if (c->fault == FLC_FAULT_SIGN_FLIP) {
        for (size_t i = 0; i < n; i++)
            d[i] = (float)(-c->fault_scale * d[i]);
    } else if (c->fault == FLC_FAULT_NOISE) {
        double norm = 0;
        for (size_t i = 0; i < n; i++)
            norm += (double)d[i] * d[i];
        norm = sqrt(norm);
        /* Gaussian noise with the same expected norm as scale * ||d||. */
        double sd = c->fault_scale * (norm > 0 ? norm : 1e-3) / sqrt((double)n);
        flc_rng_t r;
        flc_rng_seed2(&r, c->seed ^ 0xBADC0FFEEull, (uint64_t)c->round << 20 ^ n);
        for (size_t i = 0; i < n; i++)
            d[i] = (float)(sd * flc_rng_normal(&r));
    }
}

static cJSON *make_result(const client_cfg_t *c, const char *status, size_t nsamples,
                          double loss0, double loss1, double norm, uint64_t steps,
                          double compute, double comm, uint64_t rd, uint64_t wr, double wall)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    cJSON_AddStringToObject(o, "client", c->client);
    cJSON_AddStringToObject(o, "status", status);
    cJSON_AddNumberToObject(o, "num_samples", (double)nsamples);
    cJSON_AddNumberToObject(o, "loss", loss1);
    cJSON_AddNumberToObject(o, "loss_start", loss0);
    cJSON_AddNumberToObject(o, "update_norm", norm);
    cJSON_AddNumberToObject(o, "local_steps", (double)steps);
    cJSON_AddNumberToObject(o, "compute_ms", compute);
    cJSON_AddNumberToObject(o, "comm_ms", comm);
    cJSON_AddNumberToObject(o, "delay_ms", c->delay_ms);
    cJSON_AddNumberToObject(o, "bytes_read", (double)rd);
    cJSON_AddNumberToObject(o, "bytes_written", (double)wr);
    cJSON_AddNumberToObject(o, "wall_ms", wall);
    return o;
}

int flc_client_fn(const flc_store_cfg_t *sc, const char *data_dir, const cJSON *event,
                  cJSON **result, double *compute_ms, double *comm_ms, flc_err_t *e)
{
    *result = NULL;
    uint64_t t0 = flc_now_ns();
    double comm = 0, compute = 0;
    client_cfg_t c;
    int rc = parse_event(event, sc != NULL ? sc->url : NULL, data_dir, &c, e);
    const flc_cdata_t *data = NULL;
    flc_dataset_t *ds = NULL;
    flc_model_t *m = NULL;
    flc_store_t *s = NULL;
    float *w = NULL, *ref = NULL, *grad = NULL;
    size_t P = 0;
    double loss0 = 0, loss1 = 0, norm = 0;
    uint64_t steps = 0;
    const char *status = "accepted";

    /* Data and model first: a client that cannot train should fail before
     * it touches the cache. */
    if (rc == FLC_OK && c.synthetic == 0) {
        rc = flc_cdata_acquire(c.data_dir, c.subset, &data, e);
        if (rc == FLC_OK)
            rc = flc_cdata_gather(data, c.idx, c.nidx, c.fault == FLC_FAULT_LABEL_FLIP, &ds, e);
        flc_model_desc_t d;
        if (rc == FLC_OK)
            rc = flc_model_desc_init(&d, c.model, data->dim, c.hidden, (size_t)data->num_classes,
                                     e);
        if (rc == FLC_OK)
            rc = flc_model_new(&d, c.batch, &m, e);
        if (rc == FLC_OK)
            P = m->nparams;
    } else if (rc == FLC_OK) {
        P = c.synthetic;
    }
    if (rc == FLC_OK) {
        w = malloc(P * sizeof *w);
        ref = malloc(P * sizeof *ref);
        grad = m ? malloc(P * sizeof *grad) : NULL;
        if (w == NULL || ref == NULL || (m != NULL && grad == NULL))
            rc = flc_err_set(e, FLC_ENOMEM, "client %s: out of memory for a %zu-float model",
                             c.client, P);
    }
    compute += (double)(flc_now_ns() - t0) / 1e6;

    /* The global model of the previous round. */
    uint64_t t1 = flc_now_ns();
    /* The event's ttl_ms (simulate --ttl) over the role's store options:
     * the update, its arrival and metadata expire from the start. */
    flc_store_opts_t so = sc != NULL ? sc->opts : (flc_store_opts_t){0};
    if (c.ttl_ms)
        so.ttl_ms = c.ttl_ms;
    if (rc == FLC_OK && (s = flc_store_open(c.redis, &so, e)) == NULL)
        rc = e->code;
    if (rc == FLC_OK) {
        flc_shard_t g = {0};
        rc = flc_store_get_merged(s, c.global_job, c.base_round, 0, &g, ref, P);
        if (rc != FLC_OK)
            flc_err_set(e, rc, "client %s: no global model for round %u (%s)", c.client,
                        c.base_round, flc_store_errstr(s));
        else if (g.values != ref || g.count != P)
            rc = flc_err_set(e, FLC_EDIM, "client %s: the global model has %llu floats, the "
                             "model needs %zu", c.client, (unsigned long long)g.count, P);
        flc_shard_release(&g);
    }
    comm += (double)(flc_now_ns() - t1) / 1e6;

    uint64_t t2 = flc_now_ns();
    if (rc == FLC_OK && m != NULL) {
        memcpy(w, ref, P * sizeof *w);
        if (ds->n > 0)
            rc = train(&c, m, ds, w, ref, grad, &loss0, &loss1, &steps, e);
        for (size_t i = 0; rc == FLC_OK && i < P; i++)
            w[i] -= ref[i]; /* the delta */
    } else if (rc == FLC_OK) {
        flc_rng_t r;
        flc_rng_seed2(&r, c.seed, (uint64_t)c.round << 24 ^ (uint64_t)(uintptr_t)c.client[1]);
        for (size_t i = 0; i < P; i++)
            w[i] = (float)((flc_rng_uniform(&r) - 0.5) * 1e-3);
    }
    if (rc == FLC_OK) {
        apply_fault(&c, w, P);
        /* Local DP last: what leaves the client is clipped and noised,
         * whatever it computed (a faulty client may of course skip it). */
        rc = flc_dp_local(w, P, c.ldp_clip, c.ldp_noise, e);
    }
    if (rc == FLC_OK) {
        double ss = 0;
        for (size_t i = 0; i < P; i++)
            ss += (double)w[i] * w[i];
        norm = sqrt(ss);
    }
    compute += (double)(flc_now_ns() - t2) / 1e6;

    if (rc == FLC_OK && c.delay_ms > 0)
        flc_sleep_ms((unsigned)c.delay_ms); /* a slow device or network: neither */

    uint64_t t3 = flc_now_ns();
    if (rc == FLC_OK) {
        flc_rs_push_cfg_t pc = {.job = c.job, .round = c.round, .client = c.client,
                                .num_shards = c.num_shards, .model_size = P,
                                .num_samples = m ? ds->n : 1};
        rc = flc_rs_push_enc(s, &pc, &c.enc, w, e);
        if (rc == FLC_ECLOSED) {
            status = "late";
            rc = FLC_OK;
            flc_err_clear(e);
        }
    }
    comm += (double)(flc_now_ns() - t3) / 1e6;

    if (rc == FLC_OK) {
        *result = make_result(&c, status, m ? ds->n : 0, loss0, loss1, norm, steps, compute,
                              comm, flc_store_bytes_read(s), flc_store_bytes_written(s),
                              (double)(flc_now_ns() - t0) / 1e6);
        if (*result == NULL)
            rc = flc_err_set(e, FLC_ENOMEM, "out of memory for the result");
    }
    if (compute_ms)
        *compute_ms = compute;
    if (comm_ms)
        *comm_ms = comm;
    flc_store_close(s);
    free(w);
    free(ref);
    free(grad);
    flc_model_free(m);
    flc_data_free(ds);
    flc_cdata_release(data);
    free(c.idx);
    return rc;
}
