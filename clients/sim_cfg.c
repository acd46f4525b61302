/* The simulation's configuration (defaults, checks, strategy names,
 * straggler distributions), the in-process invoker, and the result as
 * JSON. The round loop itself is in sim.c, its records in sim_record.c. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "aggregator/merge.h"
#include "cache/encode.h"
#include "cache/keys.h"
#include "cache/store.h"
#include "cache/store_ops.h"
#include "clients/client.h"
#include "clients/sim.h"
#include "ml/rng.h"

static const char *const strategy_names[FLC_SIM_NSTRATEGIES] = {
    "fedavg", "fedprox", "fedadam", "fedyogi", "median", "trimmed-mean", "krum", "multi-krum"};

const char *flc_sim_strategy_name(int s)
{
    return s >= 0 && s < FLC_SIM_NSTRATEGIES ? strategy_names[s] : "?";
}

int flc_sim_strategy_parse(const char *name, int *out)
{
    if (name == NULL)
        return FLC_EINVAL;
    for (int s = 0; s < FLC_SIM_NSTRATEGIES; s++)
        if (strcmp(name, strategy_names[s]) == 0) {
            *out = s;
            return FLC_OK;
        }
    if (strcmp(name, "trimmed_mean") == 0) {
        *out = FLC_SIM_TRIMMED_MEAN;
        return FLC_OK;
    }
    return FLC_EINVAL;
}

void flc_sim_client_name(char *out, size_t len, int i)
{
    snprintf(out, len, "c%d", i);
}

void flc_sim_cfg_init(flc_sim_cfg_t *c)
{
    memset(c, 0, sizeof *c);
    c->job = "sim";
    c->clients = 100;
    c->per_round = 10;
    c->rounds = 50;
    c->alpha = 0.5;
    c->local_epochs = 1;
    c->strategy = FLC_SIM_FEDAVG;
    c->model = "softmax";
    c->krum_f = -1;
    c->seed = 1;
    c->keep_updates = 1;
}

/* Parses "kind:a[:b]" into its numbers; returns the kind's index or -1. */
static int straggler_kind(const char *spec, double *a, double *b)
{
    *a = *b = 0;
    if (spec == NULL || *spec == '\0' || strcmp(spec, "none") == 0)
        return 0;
    static const char *const kinds[] = {"none", "fixed", "uniform", "exp", "slow", "pareto"};
    static const int nargs[] = {0, 1, 2, 1, 2, 2};
    for (int k = 1; k < 6; k++) {
        size_t l = strlen(kinds[k]);
        if (strncmp(spec, kinds[k], l) != 0 || spec[l] != ':')
            continue;
        char *end;
        *a = strtod(spec + l + 1, &end);
        if (nargs[k] == 2) {
            if (*end != ':')
                return -1;
            *b = strtod(end + 1, &end);
        }
        if (*end != '\0' || !isfinite(*a) || !isfinite(*b) || *a < 0 || *b < 0)
            return -1;
        if (k == 2 && *b < *a)
            return -1;
        if (k == 4 && *a > 1)
            return -1;
        if (k == 5 && !(*b > 0)) /* pareto's shape */
            return -1;
        return k;
    }
    return -1;
}

int flc_sim_straggler_parse(const char *spec, flc_sim_straggler_t *out, flc_err_t *e)
{
    double a, b;
    int kind = straggler_kind(spec, &a, &b);
    if (kind < 0)
        return flc_err_set(e, FLC_EINVAL, "straggler distribution '%s' is not one of none, "
                           "fixed:MS, uniform:LO:HI, exp:MEAN, slow:FRAC:MS, pareto:SCALE:SHAPE", spec);
    *out = (flc_sim_straggler_t){.kind = kind, .a = a, .b = b};
    return FLC_OK;
}

double flc_sim_straggler_draw(const flc_sim_straggler_t *d, struct flc_rng *r)
{
    switch (d->kind) {
    case 1: return d->a;
    case 2: return d->a + (d->b - d->a) * flc_rng_uniform(r);
    case 3: return -d->a * log(1.0 - flc_rng_uniform(r));
    case 4: return flc_rng_uniform(r) < d->a ? d->b : 0;
    /* Heavy-tailed (Lomax, Pareto II from 0): P(X > x) = (1 + x/SCALE)^-SHAPE;
     * shape 1.5 has a mean of 2 x SCALE and no variance. */
    case 5: return d->a * (pow(1.0 - flc_rng_uniform(r), -1.0 / d->b) - 1.0);
    default: return 0; /* none */
    }
}

int flc_sim_cfg_finish(flc_sim_cfg_t *c, flc_err_t *e)
{
    flc_err_t ne = {0};
    if (c->job == NULL || strlen(c->job) > FLC_NAME_MAX - 4 ||
        flc_name_check(c->job, "job", &ne) != FLC_OK)
        return flc_err_set(e, FLC_EINVAL, "job name '%s' must be 1..%d characters of "
                           "[A-Za-z0-9_.@+-]", c->job ? c->job : "", FLC_NAME_MAX - 4);
    if (c->clients < 1 || c->clients > 10000000)
        return flc_err_set(e, FLC_EINVAL, "clients must be in 1..10000000, not %d", c->clients);
    if (c->per_round < 1 || c->per_round > c->clients)
        return flc_err_set(e, FLC_EINVAL, "per-round must be in 1..%d (the clients), not %d",
                           c->clients, c->per_round);
    if (c->rounds < 1)
        return flc_err_set(e, FLC_EINVAL, "rounds must be at least 1, not %d", c->rounds);
    if (!(c->alpha > 0) || !isfinite(c->alpha))
        return flc_err_set(e, FLC_EINVAL, "alpha must be a positive number, not %g", c->alpha);
    if (c->local_epochs < 1)
        return flc_err_set(e, FLC_EINVAL, "local-epochs must be at least 1");
    if (c->strategy < 0 || c->strategy >= FLC_SIM_NSTRATEGIES)
        return flc_err_set(e, FLC_EINVAL, "unknown strategy %d", c->strategy);
    flc_merge_rule_t rule;
    if (c->rule != NULL && flc_merge_rule_parse(&rule, c->rule, e) != FLC_OK)
        return e->code;
    if (!(c->ldp_clip >= 0) || !(c->ldp_noise >= 0) || !isfinite(c->ldp_clip) ||
        !isfinite(c->ldp_noise))
        return flc_err_set(e, FLC_EINVAL, "ldp-clip and ldp-noise must be >= 0");
    if (c->dp_quantile != 0 && !(c->dp_quantile > 0 && c->dp_quantile < 1))
        return flc_err_set(e, FLC_EINVAL, "dp-quantile must be in (0, 1), not %g",
                           c->dp_quantile);
    if (c->dp_quantile > 0 && (c->rule == NULL || !(rule.clip > 0)))
        return flc_err_set(e, FLC_EINVAL, "dp-quantile adapts the rule's clip: give --rule "
                           "with clip=C (the initial clip norm)");
    if (c->ldp_noise > 0 && c->ldp_clip == 0)
        return flc_err_set(e, FLC_EINVAL, "ldp-noise needs ldp-clip > 0 (the noise's sd is "
                           "ldp-noise x ldp-clip)");
    if (c->model == NULL || (strcmp(c->model, "softmax") != 0 && strcmp(c->model, "mlp") != 0))
        return flc_err_set(e, FLC_EINVAL, "model must be softmax or mlp, not '%s'",
                           c->model ? c->model : "");
    if (c->strategy == FLC_SIM_FEDPROX && c->mu == 0)
        c->mu = 0.01;
    if (c->mu < 0 || !isfinite(c->mu))
        return flc_err_set(e, FLC_EINVAL, "mu must be >= 0, not %g", c->mu);
    if (c->lr == 0) /* [0,1] pixels: softmax learns fastest near 0.1 (docs/simulate.md) */
        c->lr = strcmp(c->model, "mlp") == 0 ? 0.05 : 0.1;
    if (!(c->lr > 0) || !isfinite(c->lr))
        return flc_err_set(e, FLC_EINVAL, "lr must be a positive number, not %g", c->lr);
    if (c->batch == 0)
        c->batch = 32;
    if (c->server_lr == 0)
        c->server_lr = 0.03;
    if (!(c->server_lr > 0) || !isfinite(c->server_lr))
        return flc_err_set(e, FLC_EINVAL, "server-lr must be a positive number");
    if (c->trim == 0)
        c->trim = 0.2;
    if (!(c->trim > 0 && c->trim < 0.5))
        return flc_err_set(e, FLC_EINVAL, "trim must be in (0, 0.5), not %g", c->trim);
    if (c->dropout < 0 || c->dropout >= 1 || !isfinite(c->dropout))
        return flc_err_set(e, FLC_EINVAL, "dropout must be in [0, 1), not %g", c->dropout);
    flc_sim_straggler_t st;
    if (flc_sim_straggler_parse(c->straggler, &st, e) != FLC_OK)
        return e->code;
    flc_enc_t enc;
    if (flc_enc_parse(c->encoding, &enc, e) != FLC_OK)
        return e->code;
    if (c->faulty < 0 || c->faulty > 1 || !isfinite(c->faulty))
        return flc_err_set(e, FLC_EINVAL, "faulty must be a fraction in [0, 1], not %g",
                           c->faulty);
    if (c->faulty > 0 && c->fault == FLC_FAULT_NONE)
        c->fault = FLC_FAULT_SIGN_FLIP;
    if (c->fault < FLC_FAULT_NONE || c->fault > FLC_FAULT_NOISE)
        return flc_err_set(e, FLC_EINVAL, "unknown fault %d", c->fault);
    if (c->fault_scale == 0)
        c->fault_scale = 4;
    if (!(c->fault_scale > 0) || !isfinite(c->fault_scale))
        return flc_err_set(e, FLC_EINVAL, "fault-scale must be a positive number");
    if (c->num_shards == 0)
        c->num_shards = 1;
    if (c->round_timeout_ms == 0)
        c->round_timeout_ms = 600000;
    if (c->deadline_ms == 0 || c->deadline_ms > c->round_timeout_ms)
        c->deadline_ms = c->round_timeout_ms;
    if (c->memory_mb == 0)
        c->memory_mb = 1024;
    if (c->price_per_gb_s == 0)
        c->price_per_gb_s = 0.0000166667;
    if (c->redis == NULL || *c->redis == '\0')
        return flc_err_set(e, FLC_EINVAL, "no cache: set redis (the cache URL)");
    if (c->invoke == NULL)
        c->invoke = flc_sim_invoke_inproc;
    return FLC_OK;
}

/* ---- the in-process invoker --------------------------------------------- */

typedef struct inproc {
    flc_store_cfg_t store; /* no URL: the events name it */
    cJSON *const *events;
    flc_sim_inv_t *out;
    size_t n, next;
    pthread_mutex_t lock;
} inproc_t;

static void *inproc_thread(void *arg)
{
    inproc_t *ip = arg;
    for (;;) {
        pthread_mutex_lock(&ip->lock);
        size_t i = ip->next++;
        pthread_mutex_unlock(&ip->lock);
        if (i >= ip->n)
            return NULL;
        flc_sim_inv_t *o = &ip->out[i];
        flc_err_t e = {0};
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        int rc = flc_client_fn(&ip->store, NULL, ip->events[i], &o->result, NULL, NULL, &e);
        clock_gettime(CLOCK_MONOTONIC, &b);
        o->duration_ms = (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
        o->ok = rc == FLC_OK;
        if (!o->ok)
            snprintf(o->error, sizeof o->error, "%s", flc_err_msg(&e));
    }
}

int flc_sim_invoke_inproc(void *user, cJSON *const *events, size_t n, flc_sim_inv_t *out,
                          flc_err_t *e)
{
    const flc_sim_inproc_t *how = user;
    unsigned threads = how != NULL ? how->threads : 0;
    if (threads == 0)
        threads = 2;
    if (threads > n)
        threads = (unsigned)(n ? n : 1);
    inproc_t ip = {.events = events, .out = out, .n = n};
    if (how != NULL && how->store_opts != NULL)
        ip.store.opts = *how->store_opts;
    pthread_mutex_init(&ip.lock, NULL);
    pthread_t *t = calloc(threads, sizeof *t);
    if (t == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory for %u client threads", threads);
    unsigned started = 0;
    for (; started < threads; started++)
        if (pthread_create(&t[started], NULL, inproc_thread, &ip) != 0)
            break;
    if (started == 0)
        inproc_thread(&ip);
    for (unsigned i = 0; i < started; i++)
        pthread_join(t[i], NULL);
    free(t);
    pthread_mutex_destroy(&ip.lock);
    return FLC_OK;
}

/* ---- clearing a job -------------------------------------------------- */

int flc_sim_clear(const char *redis, const flc_store_opts_t *opts, const char *job,
                  flc_err_t *e)
{
    flc_store_t *s = flc_store_open(redis, opts, e);
    if (s == NULL)
        return e->code;
    char jobs[2][FLC_NAME_MAX + 8];
    snprintf(jobs[0], sizeof jobs[0], "%s", job);
    snprintf(jobs[1], sizeof jobs[1], "%s/g", job);
    int rc = FLC_OK;
    for (int j = 0; rc == FLC_OK && j < 2; j++) {
        uint32_t *rounds = NULL;
        size_t n = 0;
        int lr = flc_store_list_rounds(s, jobs[j], &rounds, &n);
        if (lr == FLC_ENOTFOUND)
            continue;
        if (lr != FLC_OK) {
            rc = flc_err_set(e, lr, "%s", flc_store_errstr(s));
            break;
        }
        for (size_t i = 0; rc == FLC_OK && i < n; i++)
            if (flc_store_delete_round(s, jobs[j], rounds[i]) != FLC_OK)
                rc = flc_err_set(e, flc_store_error(s)->code, "%s", flc_store_errstr(s));
        free(rounds);
        /* The job's own records too: the rerun may split into another S. */
        if (rc == FLC_OK && flc_store_forget_job(s, jobs[j]) != FLC_OK)
            rc = flc_err_set(e, flc_store_error(s)->code, "%s", flc_store_errstr(s));
    }
    flc_store_close(s);
    return rc;
}

/* ---- the result as JSON --------------------------------------------------- */

static cJSON *round_json(const flc_sim_round_t *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "round", r->round);
    cJSON_AddNumberToObject(o, "accuracy", r->accuracy);
    cJSON_AddNumberToObject(o, "loss", r->loss);
    cJSON_AddNumberToObject(o, "train_loss", r->train_loss);
    cJSON_AddNumberToObject(o, "sampled", (double)r->sampled);
    cJSON_AddNumberToObject(o, "participants", (double)r->participants);
    cJSON_AddNumberToObject(o, "missing", (double)r->missing);
    cJSON_AddNumberToObject(o, "rejected", (double)r->rejected);
    cJSON_AddNumberToObject(o, "dropped", (double)r->dropped);
    cJSON_AddNumberToObject(o, "late", (double)r->late);
    cJSON_AddNumberToObject(o, "faulty_sampled", (double)r->faulty_sampled);
    cJSON_AddNumberToObject(o, "round_ms", r->round_ms);
    cJSON_AddNumberToObject(o, "clients_ms", r->clients_ms);
    cJSON_AddNumberToObject(o, "merge_ms", r->merge_ms);
    cJSON_AddNumberToObject(o, "wait_ms", r->wait_ms);
    cJSON_AddNumberToObject(o, "eval_ms", r->eval_ms);
    cJSON_AddNumberToObject(o, "bytes", (double)r->bytes);
    cJSON_AddNumberToObject(o, "cost_usd", r->cost_usd);
    cJSON_AddBoolToObject(o, "merged", r->merged);
    return o;
}

cJSON *flc_sim_result_json(const flc_sim_cfg_t *c, const flc_sim_result_t *r)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    cJSON_AddStringToObject(o, "job", c->job);
    cJSON_AddStringToObject(o, "strategy", flc_sim_strategy_name(c->strategy));
    if (c->rule != NULL)
        cJSON_AddStringToObject(o, "rule", c->rule);
    cJSON_AddStringToObject(o, "model", c->synthetic_params ? "synthetic" : c->model);
    cJSON_AddNumberToObject(o, "clients", c->clients);
    cJSON_AddNumberToObject(o, "per_round", c->per_round);
    cJSON_AddNumberToObject(o, "alpha", c->alpha);
    cJSON_AddNumberToObject(o, "eligible_clients", (double)r->eligible);
    cJSON_AddNumberToObject(o, "faulty_clients", (double)r->faulty_clients);
    cJSON_AddStringToObject(o, "fault", flc_client_fault_name(c->fault));
    cJSON_AddNumberToObject(o, "nparams", (double)r->nparams);
    cJSON_AddNumberToObject(o, "init_accuracy", r->init_accuracy);
    cJSON_AddNumberToObject(o, "init_loss", r->init_loss);
    double best = -1;
    for (size_t i = 0; i < r->nrounds; i++)
        best = r->rounds[i].accuracy > best ? r->rounds[i].accuracy : best;
    cJSON_AddNumberToObject(o, "final_accuracy",
                            r->nrounds ? r->rounds[r->nrounds - 1].accuracy : r->init_accuracy);
    cJSON_AddNumberToObject(o, "best_accuracy", best);
    cJSON_AddNumberToObject(o, "wall_ms", r->wall_ms);
    cJSON_AddNumberToObject(o, "cost_usd", r->cost_usd);
    cJSON_AddNumberToObject(o, "bytes", (double)r->bytes);
    cJSON *a = cJSON_AddArrayToObject(o, "rounds");
    for (size_t i = 0; i < r->nrounds; i++)
        cJSON_AddItemToArray(a, round_json(&r->rounds[i]));
    return o;
}

void flc_sim_result_free(flc_sim_result_t *r)
{
    if (r == NULL)
        return;
    free(r->rounds);
    memset(r, 0, sizeof *r);
}
