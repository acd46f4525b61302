/* `flcache train --resume JOB` (issue 16 point 5): synchronous SGD continues
 * from the last closed epoch and ends bit-identical to a run never stopped.
 * All workers apply the same merged bytes, so the model after epoch e is
 * one vector: worker 0 stores it as round e of job "<J>/g" (float32, as
 * trained) with the job's checkpoint after it (cache/store_resume.h, one
 * SET: it always names an epoch whose model is stored):
 *   "FLT1" | JSON {"epoch", "opts": the options that decide the result,
 *                  "args": the CLI's arguments}
 * What else carries from epoch to epoch is each worker's shuffle stream
 * (ml/batcher.h), replayed from the seed: one reshuffle per epoch. The
 * step rounds a killed run left behind are cleared by the driver before
 * the workers start (flc_sgd_cleanup). A rule with server state (fedadam on
 * gradients) keeps it per step in the cache, not per epoch: refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "aggregator/merge.h"
#include "cache/store_resume.h"
#include "ml/batcher.h"
#include "workers/sgd_worker.h"
#include "workers/sgd_worker_internal.h"

#define MAGIC "FLT1"

static cJSON *opts_json(const flc_sgd_cfg_t *c, size_t P)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", c->model);
    cJSON_AddNumberToObject(o, "hidden", (double)c->hidden);
    cJSON_AddNumberToObject(o, "params", (double)P);
    cJSON_AddNumberToObject(o, "workers", c->workers);
    cJSON_AddNumberToObject(o, "batch", (double)c->batch);
    cJSON_AddNumberToObject(o, "lr", c->lr);
    cJSON_AddNumberToObject(o, "seed", (double)c->seed);
    cJSON_AddNumberToObject(o, "subset", (double)c->subset);
    cJSON_AddStringToObject(o, "comm", flc_sgd_comm_name(c->comm));
    cJSON_AddNumberToObject(o, "shards", c->num_shards);
    cJSON_AddStringToObject(o, "rule", c->rule ? c->rule : "mean");
    cJSON_AddStringToObject(o, "init", c->init ? c->init : "");
    return o;
}

int sgd_resume_save(sgd_worker_t *w, flc_store_t *s, int ep, flc_err_t *e)
{
    const flc_sgd_cfg_t *c = &w->c;
    if (c->rank != 0)
        return FLC_OK;
    flc_shard_t g = {.round = (uint32_t)ep, .shard = 0, .num_shards = 1, .count = w->nparams,
                     .model_size = w->nparams, .created_ms = flc_wall_ms(), .values = w->w};
    snprintf(g.job, sizeof g.job, "%s/g", c->job);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "epoch", ep);
    cJSON_AddItemToObject(j, "opts", opts_json(c, w->nparams));
    cJSON_AddStringToObject(j, "args", c->resume_args ? c->resume_args : "");
    char *js = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    size_t jl = js ? strlen(js) : 0;
    char *b = js ? malloc(4 + jl) : NULL;
    int rc = b ? FLC_OK : flc_err_set(e, FLC_ENOMEM, "out of memory for the checkpoint");
    if (rc == FLC_OK) {
        memcpy(b, MAGIC, 4);
        memcpy(b + 4, js, jl);
        if (flc_store_put_merged(s, &g) != FLC_OK ||
            flc_store_ckpt_put(s, c->job, b, 4 + jl) != FLC_OK) {
            *e = *flc_store_error(s);
            rc = flc_err_wrap(e, "epoch %d's checkpoint: ", ep);
        }
    }
    free(b);
    free(js);
    return rc;
}

/* The checkpoint's JSON; NULL with *e set. */
static cJSON *read_ckpt(flc_store_t *s, const char *job, flc_err_t *e)
{
    char *b = NULL;
    size_t len = 0;
    if (flc_store_ckpt_get(s, job, &b, &len) != FLC_OK) {
        *e = *flc_store_error(s);
        return NULL;
    }
    cJSON *j = len >= 4 && memcmp(b, MAGIC, 4) == 0 ? cJSON_ParseWithLength(b + 4, len - 4)
                                                    : NULL;
    free(b);
    if (j == NULL || !cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(j, "epoch")))
        flc_err_set(e, FLC_EDATA, "job %s's checkpoint is not one `flcache train` wrote (a "
                    "simulation's?)", job);
    if (j != NULL && e->code == FLC_EDATA) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

int flc_sgd_resume_args(flc_store_t *s, const char *job, char **args, int *epoch, flc_err_t *e)
{
    *args = NULL;
    flc_err_clear(e);
    cJSON *j = read_ckpt(s, job, e);
    if (j == NULL)
        return e->code;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "args");
    *epoch = (int)cJSON_GetObjectItemCaseSensitive(j, "epoch")->valuedouble;
    *args = strdup(cJSON_IsString(a) ? a->valuestring : "");
    cJSON_Delete(j);
    return *args ? FLC_OK : flc_err_set(e, FLC_ENOMEM, "out of memory");
}

int sgd_resume_load(sgd_worker_t *w, flc_store_t *s, flc_err_t *e)
{
    const flc_sgd_cfg_t *c = &w->c;
    if (c->resume_after == 0) {
        if (c->rank == 0 && flc_store_ckpt_del(s, c->job) != FLC_OK) {
            *e = *flc_store_error(s);
            return e->code;
        }
        return FLC_OK;
    }
    flc_merge_rule_t rule;
    if (c->rule != NULL && flc_merge_rule_parse(&rule, c->rule, e) == FLC_OK &&
        flc_merge_rule_has_state(&rule))
        return flc_err_set(e, FLC_EINVAL, "cannot resume job '%s': rule %s keeps server state "
                           "per step, which a checkpoint per epoch does not hold", c->job,
                           c->rule);
    flc_err_clear(e);
    cJSON *j = read_ckpt(s, c->job, e);
    if (j == NULL)
        return e->code;
    int rc = FLC_OK, done = (int)cJSON_GetObjectItemCaseSensitive(j, "epoch")->valuedouble;
    if (done != c->resume_after)
        rc = flc_err_set(e, FLC_EINVAL, "job %s's last closed epoch is %d, this run resumes "
                         "after %d (another run in between?)", c->job, done, c->resume_after);
    const cJSON *was = cJSON_GetObjectItemCaseSensitive(j, "opts"), *n;
    cJSON *now = opts_json(c, w->nparams);
    cJSON_ArrayForEach(n, now)
    {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(was, n->string);
        int same = x != NULL && (cJSON_IsNumber(n) ? cJSON_IsNumber(x) &&
                                                         x->valuedouble == n->valuedouble
                                                   : cJSON_IsString(x) &&
                                                         strcmp(x->valuestring,
                                                                n->valuestring) == 0);
        if (rc == FLC_OK && !same) {
            char a[80] = "?", b[80];
            if (cJSON_IsNumber(x))
                snprintf(a, sizeof a, "%.15g", x->valuedouble);
            else if (cJSON_IsString(x))
                snprintf(a, sizeof a, "'%.60s'", x->valuestring);
            if (cJSON_IsNumber(n))
                snprintf(b, sizeof b, "%.15g", n->valuedouble);
            else
                snprintf(b, sizeof b, "'%.60s'", n->valuestring);
            rc = flc_err_set(e, FLC_EINVAL, "cannot resume job '%s': it was run with --%s %s, "
                             "this run asks %s", c->job, n->string, a, b);
        }
    }
    cJSON_Delete(now);
    cJSON_Delete(j);
    if (rc != FLC_OK)
        return rc;
    char gjob[FLC_NAME_MAX + 1];
    snprintf(gjob, sizeof gjob, "%s/g", c->job);
    flc_shard_t g = {0};
    if (flc_store_get_merged(s, gjob, (uint32_t)done, 0, &g, w->w, w->nparams) != FLC_OK ||
        g.values != w->w || g.count != w->nparams) {
        rc = flc_err_set(e, FLC_EDATA, "cannot resume job '%s': the model of epoch %d: %s",
                         c->job, done, g.count != w->nparams && g.values
                         ? "another model size" : flc_store_errstr(s));
        flc_shard_release(&g);
        return rc;
    }
    /* the shuffles of epochs 2..done, as the loop made them */
    for (int ep = 2; ep <= done; ep++)
        flc_batcher_epoch(w->b);
    return FLC_OK;
}
