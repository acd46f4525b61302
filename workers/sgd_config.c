/* The SGD worker's configuration and result as values and as JSON (the
 * worker event a driver sends, the result a worker answers), the model
 * checksum, the step-job and progress key names, and the clean-up a driver
 * runs after a training. The training loop itself is in sgd_worker.c. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/event.h"
#include "aggregator/merge.h"
#include "cache/keys.h"
#include "cache/store_ops.h"
#include "ml/model.h"
#include "workers/sgd_worker.h"

void flc_sgd_cfg_init(flc_sgd_cfg_t *c)
{
    memset(c, 0, sizeof *c);
    c->job = "train";
    c->workers = 1;
    c->model = "softmax";
    c->epochs = 1;
    c->comm = FLC_SGD_COMM_RS;
    c->seed = FLC_SGD_SEED_DEFAULT;
}

const char *flc_sgd_comm_name(int comm)
{
    return comm == FLC_SGD_COMM_ONE  ? "allreduce-one"
           : comm == FLC_SGD_COMM_PS ? "ps"
                                     : "reduce-scatter";
}

int flc_sgd_comm_parse(const char *name, int *out)
{
    if (name == NULL)
        return FLC_EINVAL;
    if (strcmp(name, "reduce-scatter") == 0 || strcmp(name, "reduce_scatter") == 0 ||
        strcmp(name, "rs") == 0) {
        *out = FLC_SGD_COMM_RS;
        return FLC_OK;
    }
    if (strcmp(name, "allreduce-one") == 0 || strcmp(name, "allreduce_one") == 0 ||
        strcmp(name, "one") == 0) {
        *out = FLC_SGD_COMM_ONE;
        return FLC_OK;
    }
    if (strcmp(name, "ps") == 0 || strcmp(name, "parameter-server") == 0) {
        *out = FLC_SGD_COMM_PS;
        return FLC_OK;
    }
    return FLC_EINVAL;
}

int flc_sgd_steps_job(char *out, size_t outlen, const char *job, flc_err_t *e)
{
    if (job == NULL || strlen(job) + 6 > FLC_NAME_MAX || outlen < strlen(job) + 7)
        return flc_err_set(e, FLC_EINVAL, "job name '%s' is too long: at most %d characters "
                           "(the step exchanges use '<job>/steps')", job ? job : "(null)",
                           FLC_NAME_MAX - 6);
    snprintf(out, outlen, "%s/steps", job);
    return FLC_OK;
}

int flc_sgd_cfg_finish(flc_sgd_cfg_t *c, flc_err_t *e)
{
    char steps[FLC_NAME_MAX + 1];
    if (flc_name_check(c->job, "job", e) != FLC_OK)
        return e->code;
    if (flc_sgd_steps_job(steps, sizeof steps, c->job, e) != FLC_OK)
        return e->code;
    if (c->workers < 1 || c->workers > 1024)
        return flc_err_set(e, FLC_EINVAL, "workers must be 1..1024, not %d", c->workers);
    if (c->rank < 0 || c->rank >= c->workers)
        return flc_err_set(e, FLC_EINVAL, "rank %d is outside 0..%d (workers = %d)", c->rank,
                           c->workers - 1, c->workers);
    if (c->model == NULL || (strcmp(c->model, "softmax") != 0 && strcmp(c->model, "mlp") != 0))
        return flc_err_set(e, FLC_EINVAL, "model must be softmax or mlp, not '%s'",
                           c->model ? c->model : "(null)");
    flc_merge_rule_t rule;
    if (c->rule != NULL && flc_merge_rule_parse(&rule, c->rule, e) != FLC_OK)
        return e->code;
    if (c->hidden > 65536)
        return flc_err_set(e, FLC_EINVAL, "hidden must be at most 65536, not %zu", c->hidden);
    if (c->epochs < 1 || c->epochs > 100000)
        return flc_err_set(e, FLC_EINVAL, "epochs must be 1..100000, not %d", c->epochs);
    if (c->resume_after < 0 || c->resume_after >= c->epochs)
        return flc_err_set(e, FLC_EINVAL, "job %s already ran %d epochs: ask more with --epochs "
                           "(the job's total), not %d", c->job ? c->job : "?", c->resume_after,
                           c->epochs);
    if (c->batch == 0)
        c->batch = FLC_SGD_BATCH_DEFAULT;
    if (c->batch > 65536)
        return flc_err_set(e, FLC_EINVAL, "batch must be 1..65536, not %zu", c->batch);
    if (c->lr == 0)
        c->lr = strcmp(c->model, "mlp") == 0 ? FLC_SGD_LR_MLP : FLC_SGD_LR_SOFTMAX;
    if (!(c->lr > 0) || !isfinite(c->lr))
        return flc_err_set(e, FLC_EINVAL, "lr must be a positive number, not %g", c->lr);
    if (c->comm != FLC_SGD_COMM_RS && c->comm != FLC_SGD_COMM_ONE && c->comm != FLC_SGD_COMM_PS)
        return flc_err_set(e, FLC_EINVAL, "comm must be reduce-scatter, allreduce-one or ps");
    if (c->comm == FLC_SGD_COMM_PS && (c->rule != NULL && strcmp(c->rule, "mean") != 0))
        return flc_err_set(e, FLC_EINVAL, "comm ps averages the gradients: rule '%s' needs "
                           "reduce-scatter or allreduce-one", c->rule);
    if (c->num_shards == 0)
        c->num_shards = c->comm == FLC_SGD_COMM_RS ? (uint32_t)c->workers : 1;
    if (c->comm == FLC_SGD_COMM_PS && c->num_shards != 1)
        return flc_err_set(e, FLC_EINVAL, "ps has no shards, not %u", c->num_shards);
    if (c->comm == FLC_SGD_COMM_ONE && c->num_shards != 1)
        return flc_err_set(e, FLC_EINVAL, "allreduce-one uses one shard, not %u", c->num_shards);
    if (c->num_shards > 65536)
        return flc_err_set(e, FLC_EINVAL, "num_shards must be 1..65536, not %u", c->num_shards);
    if (c->step_timeout_ms == 0)
        c->step_timeout_ms = FLC_SGD_STEP_TIMEOUT_DEFAULT;
    if (c->memory_mb > 0 && !(c->price_per_gb_s >= 0))
        return flc_err_set(e, FLC_EINVAL, "price_per_gb_s must not be negative");
    return FLC_OK;
}

cJSON *flc_sgd_cfg_to_json(const flc_sgd_cfg_t *c)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    cJSON_AddStringToObject(o, "role", "worker");
    cJSON_AddStringToObject(o, "job", c->job);
    cJSON_AddNumberToObject(o, "rank", c->rank);
    cJSON_AddNumberToObject(o, "workers", c->workers);
    cJSON_AddStringToObject(o, "model", c->model);
    if (c->hidden)
        cJSON_AddNumberToObject(o, "hidden", (double)c->hidden);
    cJSON_AddNumberToObject(o, "epochs", c->epochs);
    if (c->batch)
        cJSON_AddNumberToObject(o, "batch", (double)c->batch);
    if (c->lr)
        cJSON_AddNumberToObject(o, "lr", c->lr);
    cJSON_AddStringToObject(o, "comm", flc_sgd_comm_name(c->comm));
    if (c->rule)
        cJSON_AddStringToObject(o, "rule", c->rule);
    if (c->init)
        cJSON_AddStringToObject(o, "init", c->init);
    if (c->num_shards)
        cJSON_AddNumberToObject(o, "num_shards", c->num_shards);
    if (c->data_dir)
        cJSON_AddStringToObject(o, "data", c->data_dir);
    if (c->subset)
        cJSON_AddNumberToObject(o, "subset", (double)c->subset);
    if (c->test_subset)
        cJSON_AddNumberToObject(o, "test_subset", (double)c->test_subset);
    cJSON_AddNumberToObject(o, "seed", (double)c->seed);
    if (c->redis)
        cJSON_AddStringToObject(o, "redis", c->redis);
    if (c->ps)
        cJSON_AddStringToObject(o, "ps", c->ps);
    if (c->step_timeout_ms)
        cJSON_AddNumberToObject(o, "step_timeout_ms", c->step_timeout_ms);
    if (c->progress_every)
        cJSON_AddNumberToObject(o, "progress_every", c->progress_every);
    if (c->resume_after)
        cJSON_AddNumberToObject(o, "resume_after", c->resume_after);
    if (c->resume_args)
        cJSON_AddStringToObject(o, "resume_args", c->resume_args);
    if (c->memory_mb) {
        cJSON_AddNumberToObject(o, "memory_mb", c->memory_mb);
        cJSON_AddNumberToObject(o, "price_per_gb_s", c->price_per_gb_s);
    }
    return o;
}

int flc_sgd_cfg_from_json(flc_sgd_cfg_t *c, const cJSON *ev, flc_err_t *e)
{
    long long rank = 0, workers = 1, hidden = 0, epochs = 1, batch = 0, shards = 0, subset = 0;
    long long tsub = 0, seed = (long long)c->seed, tmo = 0, every = 0, mem = 0, resume = 0;
    const char *comm = NULL;
    /* The three that say which worker this is come first: without them
     * nothing else matters. The others default to the values of *c. */
    if (flc_ev_need_str(ev, "job", &c->job, e) ||
        flc_ev_need_int(ev, "rank", 0, 4095, &rank, e) ||
        flc_ev_need_int(ev, "workers", 0, 1024, &workers, e) ||
        flc_ev_opt_str(ev, "model", c->model, &c->model, e) ||
        flc_ev_opt_str(ev, "comm", NULL, &comm, e) ||
        flc_ev_opt_str(ev, "rule", c->rule, &c->rule, e) ||
        flc_ev_opt_str(ev, "init", c->init, &c->init, e) ||
        flc_ev_opt_str(ev, "data", c->data_dir, &c->data_dir, e) ||
        flc_ev_opt_str(ev, "redis", c->redis, &c->redis, e) ||
        flc_ev_opt_str(ev, "ps", c->ps, &c->ps, e) ||
        flc_ev_opt_int(ev, "hidden", 0, 65536, 0, &hidden, e) ||
        flc_ev_opt_int(ev, "epochs", 0, 100000, 1, &epochs, e) ||
        flc_ev_opt_int(ev, "batch", 0, 65536, 0, &batch, e) ||
        flc_ev_opt_int(ev, "num_shards", 0, 65536, 0, &shards, e) ||
        flc_ev_opt_int(ev, "subset", 0, 1000000000, 0, &subset, e) ||
        flc_ev_opt_int(ev, "test_subset", 0, 1000000000, 0, &tsub, e) ||
        flc_ev_opt_int(ev, "seed", 0, 9000000000000000LL, seed, &seed, e) ||
        flc_ev_opt_int(ev, "step_timeout_ms", 0, 86400000, 0, &tmo, e) ||
        flc_ev_opt_int(ev, "progress_every", 0, 1000000000, 0, &every, e) ||
        flc_ev_opt_int(ev, "memory_mb", 0, 1048576, 0, &mem, e) ||
        flc_ev_opt_int(ev, "resume_after", 0, 100000, 0, &resume, e) ||
        flc_ev_opt_str(ev, "resume_args", c->resume_args, &c->resume_args, e) ||
        flc_ev_opt_num(ev, "lr", 0, INFINITY, c->lr, &c->lr, e) ||
        flc_ev_opt_num(ev, "price_per_gb_s", 0, INFINITY, c->price_per_gb_s,
                       &c->price_per_gb_s, e))
        return e->code;
    if (comm != NULL && flc_sgd_comm_parse(comm, &c->comm) != FLC_OK)
        return flc_err_set(e, FLC_EINVAL, "event field 'comm' must be reduce-scatter, "
                           "allreduce-one or ps, not '%s'", comm);
    c->rank = (int)rank;
    c->workers = (int)workers;
    c->hidden = (size_t)hidden;
    c->epochs = (int)epochs;
    c->batch = (size_t)batch;
    c->num_shards = (uint32_t)shards;
    c->subset = (size_t)subset;
    c->test_subset = (size_t)tsub;
    c->seed = (uint64_t)seed;
    c->step_timeout_ms = (unsigned)tmo;
    c->progress_every = (unsigned)every;
    c->memory_mb = (unsigned)mem;
    c->resume_after = (int)resume;
    return flc_sgd_cfg_finish(c, e);
}

uint64_t flc_fnv1a64(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

cJSON *flc_sgd_result_json(const flc_sgd_result_t *r)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)r->checksum);
    cJSON_AddNumberToObject(o, "rank", r->rank);
    cJSON_AddNumberToObject(o, "steps", (double)r->steps);
    cJSON_AddNumberToObject(o, "steps_per_epoch", (double)r->steps_per_epoch);
    cJSON_AddNumberToObject(o, "train_samples", (double)r->train_samples);
    cJSON_AddNumberToObject(o, "nparams", (double)r->nparams);
    cJSON_AddNumberToObject(o, "final_loss", r->final_loss);
    if (r->accuracy >= 0) {
        cJSON_AddNumberToObject(o, "accuracy", r->accuracy);
        cJSON_AddNumberToObject(o, "test_loss", r->test_loss);
    } else {
        cJSON_AddNullToObject(o, "accuracy");
        cJSON_AddNullToObject(o, "test_loss");
    }
    cJSON_AddStringToObject(o, "checksum", hex);
    cJSON_AddNumberToObject(o, "load_ms", r->load_ms);
    cJSON_AddNumberToObject(o, "compute_ms", r->compute_ms);
    cJSON_AddNumberToObject(o, "comm_ms", r->comm_ms);
    cJSON_AddNumberToObject(o, "merge_ms", r->merge_ms);
    cJSON_AddNumberToObject(o, "wait_ms", r->wait_ms);
    cJSON_AddNumberToObject(o, "cleanup_ms", r->cleanup_ms);
    cJSON_AddNumberToObject(o, "eval_ms", r->eval_ms);
    cJSON_AddNumberToObject(o, "start_wait_ms", r->start_wait_ms);
    cJSON_AddNumberToObject(o, "wall_ms", r->wall_ms);
    return o;
}

int flc_sgd_cleanup(flc_store_t *s, const char *job, flc_err_t *e)
{
    char steps[FLC_NAME_MAX + 1];
    if (flc_sgd_steps_job(steps, sizeof steps, job, e) != FLC_OK)
        return e->code;
    uint32_t *rounds = NULL;
    size_t n = 0;
    int rc = flc_store_list_rounds(s, steps, &rounds, &n);
    if (rc == FLC_ENOTFOUND)
        rc = FLC_OK;
    for (size_t i = 0; rc == FLC_OK && i < n; i++) {
        rc = flc_store_delete_round(s, steps, rounds[i]); /* tracker key included */
    }
    free(rounds);
    if (rc == FLC_OK)
        rc = flc_store_forget_job(s, steps);
    if (rc == FLC_OK)
        rc = flc_store_progress_del(s, job);
    if (rc == FLC_OK)
        rc = flc_store_barrier_del(s, steps, 0, 0);
    if (rc != FLC_OK)
        return flc_err_set(e, rc, "cleaning up the step rounds of job %s: %s", job,
                           flc_store_errstr(s));
    return FLC_OK;
}
