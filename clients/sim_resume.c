/* Resuming a simulation (issue 16 point 5): after every closed round the
 * driver writes the job's checkpoint (cache/store_resume.h), and
 * `simulate --resume J` continues from it, so that 10 rounds straight and
 * 5 + resume 5 give bit-identical models. The round's own records already
 * hold the global model (job J/g, round r, float32 as used); the checkpoint
 * holds what they do not:
 *   - the sampling order (the eligible list the partial Fisher-Yates
 *     carries from round to round; each round's own draws are seeded by
 *     (seed, round) and need nothing);
 *   - each shard's server-optimizer state (m, v, steps), which the mergers
 *     keep in memory between rounds;
 *   - the privacy accountant and the adaptive clip norm;
 *   - the options that decide the result, compared with the resuming run's
 *     (a conflict is refused, naming the option), and the CLI's arguments.
 * Top-k residuals are the clients' own keys and need nothing here.
 *
 * Layout: "FLR1" | u32 json_len | JSON | u32 eligible[neligible] | per
 * shard with state: u32 has_v | u64 n | u64 steps | m[n] | v[n] floats.
 * One SET after the round's records, so a driver killed at any point
 * leaves the checkpoint of a closed round; the round it was in (begun,
 * partly recorded) is deleted before it runs again. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/log.h"
#include "cache/store_resume.h"
#include "clients/client.h"
#include "clients/sim_internal.h"

#define MAGIC "FLR1"

/* The options that decide the result, by their CLI names. */
static cJSON *opts_json(const flc_sim_cfg_t *c, size_t P, uint32_t S)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", c->synthetic_params ? "synthetic" : c->model);
    cJSON_AddNumberToObject(o, "hidden", (double)c->hidden);
    cJSON_AddNumberToObject(o, "params", (double)P);
    cJSON_AddNumberToObject(o, "shards", S);
    cJSON_AddNumberToObject(o, "clients", c->clients);
    cJSON_AddNumberToObject(o, "per-round", c->per_round);
    cJSON_AddNumberToObject(o, "seed", (double)c->seed);
    cJSON_AddNumberToObject(o, "alpha", c->alpha);
    cJSON_AddNumberToObject(o, "subset", (double)c->subset);
    cJSON_AddNumberToObject(o, "local-epochs", c->local_epochs);
    cJSON_AddNumberToObject(o, "lr", c->lr);
    cJSON_AddNumberToObject(o, "batch", (double)c->batch);
    cJSON_AddNumberToObject(o, "mu", c->mu);
    cJSON_AddStringToObject(o, "strategy", flc_sim_strategy_name(c->strategy));
    cJSON_AddStringToObject(o, "rule", c->rule ? c->rule : "");
    cJSON_AddNumberToObject(o, "server-lr", c->server_lr);
    cJSON_AddNumberToObject(o, "trim", c->trim);
    cJSON_AddNumberToObject(o, "krum-f", c->krum_f);
    cJSON_AddStringToObject(o, "encoding", c->encoding ? c->encoding : "f32");
    cJSON_AddNumberToObject(o, "faulty", c->faulty);
    cJSON_AddStringToObject(o, "fault", flc_client_fault_name(c->fault));
    cJSON_AddNumberToObject(o, "fault-scale", c->fault_scale);
    cJSON_AddNumberToObject(o, "dropout", c->dropout);
    cJSON_AddStringToObject(o, "straggler-ms", c->straggler ? c->straggler : "none");
    cJSON_AddNumberToObject(o, "ldp-clip", c->ldp_clip);
    cJSON_AddNumberToObject(o, "ldp-noise", c->ldp_noise);
    cJSON_AddNumberToObject(o, "dp-quantile", c->dp_quantile);
    cJSON_AddStringToObject(o, "init", c->init ? c->init : "");
    return o;
}

/* FLC_EINVAL naming the first option the run asks differently. */
static int opts_compare(const char *job, const cJSON *was, const cJSON *now, flc_err_t *e)
{
    const cJSON *w, *n;
    cJSON_ArrayForEach(n, now)
    {
        w = cJSON_GetObjectItemCaseSensitive(was, n->string);
        int same = w != NULL && (cJSON_IsNumber(n) ? cJSON_IsNumber(w) &&
                                                         w->valuedouble == n->valuedouble
                                                   : cJSON_IsString(w) &&
                                                         strcmp(w->valuestring,
                                                                n->valuestring) == 0);
        if (same)
            continue;
        char a[80] = "?", b[80];
        if (w != NULL && cJSON_IsNumber(w))
            snprintf(a, sizeof a, "%.15g", w->valuedouble);
        else if (w != NULL && cJSON_IsString(w))
            snprintf(a, sizeof a, "'%.60s'", w->valuestring);
        if (cJSON_IsNumber(n))
            snprintf(b, sizeof b, "%.15g", n->valuedouble);
        else
            snprintf(b, sizeof b, "'%.60s'", n->valuestring);
        static const char *const shape[] = {"model", "hidden", "shards"};
        int is_shape = 0;
        for (size_t i = 0; i < 3; i++)
            is_shape |= strcmp(n->string, shape[i]) == 0;
        if (strcmp(n->string, "params") == 0)
            return flc_err_set(e, FLC_EINVAL, "cannot resume job '%s': its model has %s "
                               "parameters, this run's %s (another model shape)", job, a, b);
        return flc_err_set(e, FLC_EINVAL, "cannot resume job '%s': it was run with --%s %s, "
                           "this run asks %s (%s)", job, n->string, a, b,
                           is_shape ? "another model shape" : "resume with the job's own "
                           "options");
    }
    return FLC_OK;
}

int sim_resume_save(flc_store_t *s, const flc_sim_cfg_t *c, const sim_resume_t *r, flc_err_t *e)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "round", r->round);
    cJSON_AddNumberToObject(j, "rounds", c->rounds);
    cJSON_AddNumberToObject(j, "eligible", (double)r->neligible);
    cJSON_AddNumberToObject(j, "clip", r->rule->clip);
    cJSON_AddNumberToObject(j, "dp_rounds", (double)r->dp->acct.rounds);
    cJSON *rdp = cJSON_AddArrayToObject(j, "dp_rdp");
    for (int i = 0; rdp && i < FLC_DP_NORDERS; i++)
        cJSON_AddItemToArray(rdp, cJSON_CreateNumber(r->dp->acct.rdp[i]));
    cJSON_AddItemToObject(j, "opts", opts_json(c, r->P, r->S));
    cJSON_AddStringToObject(j, "args", c->resume_args ? c->resume_args : "");
    char *js = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (js == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory for the checkpoint");
    size_t jl = strlen(js), len = 8 + jl + r->neligible * 4;
    for (uint32_t k = 0; k < r->S; k++)
        if (r->states[k] != NULL)
            len += 20 + (r->states[k]->v ? 2 : 1) * r->states[k]->n * sizeof(float);
    char *b = malloc(len), *p = b;
    if (b == NULL) {
        free(js);
        return flc_err_set(e, FLC_ENOMEM, "out of memory for a %zu-byte checkpoint", len);
    }
    uint32_t u = (uint32_t)jl;
    memcpy(p, MAGIC, 4), p += 4;
    memcpy(p, &u, 4), p += 4;
    memcpy(p, js, jl), p += jl;
    memcpy(p, r->eligible, r->neligible * 4), p += r->neligible * 4;
    for (uint32_t k = 0; k < r->S; k++) {
        const flc_merge_state_t *st = r->states[k];
        if (st == NULL)
            continue;
        uint32_t has_v = st->v != NULL;
        uint64_t n = st->n, steps = st->rounds;
        memcpy(p, &has_v, 4), p += 4;
        memcpy(p, &n, 8), p += 8;
        memcpy(p, &steps, 8), p += 8;
        memcpy(p, st->m, n * sizeof(float)), p += n * sizeof(float);
        if (has_v)
            memcpy(p, st->v, n * sizeof(float)), p += n * sizeof(float);
    }
    free(js);
    int rc = flc_store_ckpt_put(s, c->job, b, len);
    free(b);
    if (rc != FLC_OK)
        *e = *flc_store_error(s);
    return rc;
}

/* Reads the states after the eligible list; FLC_EDATA when they do not fit. */
static int load_states(const char *job, const char *p, const char *end, const sim_resume_t *r,
                       flc_err_t *e)
{
    for (uint32_t k = 0; k < r->S; k++) {
        flc_merge_state_t *st = r->states[k];
        if (st == NULL)
            continue;
        uint32_t has_v;
        uint64_t n, steps;
        if (end - p < 20)
            return flc_err_set(e, FLC_EDATA, "job %s's checkpoint has no server state for "
                               "shard %u", job, k);
        memcpy(&has_v, p, 4), memcpy(&n, p + 4, 8), memcpy(&steps, p + 12, 8), p += 20;
        size_t need = (has_v ? 2 : 1) * (size_t)n * sizeof(float);
        if (n != st->n || (has_v != 0) != (st->v != NULL) || (size_t)(end - p) < need)
            return flc_err_set(e, FLC_EDATA, "job %s's checkpoint: the server state of shard "
                               "%u is not for this rule over %zu floats", job, k, st->n);
        memcpy(st->m, p, n * sizeof(float)), p += n * sizeof(float);
        if (has_v)
            memcpy(st->v, p, n * sizeof(float)), p += n * sizeof(float);
        st->rounds = steps;
    }
    return p == end ? FLC_OK
                    : flc_err_set(e, FLC_EDATA, "job %s's checkpoint has %zu bytes too many "
                                  "(server state of another rule?)", job, (size_t)(end - p));
}

int sim_resume_load(flc_store_t *s, const flc_sim_cfg_t *c, sim_resume_t *r, flc_err_t *e)
{
    char *b = NULL;
    size_t len = 0;
    if (flc_store_ckpt_get(s, c->job, &b, &len) != FLC_OK) {
        *e = *flc_store_error(s);
        return e->code;
    }
    uint32_t jl = 0;
    if (len >= 8)
        memcpy(&jl, b + 4, 4);
    cJSON *j = len >= 8 && memcmp(b, MAGIC, 4) == 0 && jl <= len - 8
                   ? cJSON_ParseWithLength(b + 8, jl) : NULL;
    const cJSON *rd = cJSON_GetObjectItemCaseSensitive(j, "round");
    const cJSON *ne = cJSON_GetObjectItemCaseSensitive(j, "eligible");
    const cJSON *cl = cJSON_GetObjectItemCaseSensitive(j, "clip");
    const cJSON *dr = cJSON_GetObjectItemCaseSensitive(j, "dp_rounds");
    const cJSON *rdp = cJSON_GetObjectItemCaseSensitive(j, "dp_rdp");
    int rc = FLC_OK;
    if (!cJSON_IsNumber(rd) || !cJSON_IsNumber(ne) || !cJSON_IsNumber(cl) ||
        !cJSON_IsNumber(dr) || cJSON_GetArraySize(rdp) != FLC_DP_NORDERS)
        rc = flc_err_set(e, FLC_EDATA, "job %s's checkpoint is not one this flcache wrote",
                         c->job);
    if (rc == FLC_OK) {
        cJSON *now = opts_json(c, r->P, r->S);
        rc = opts_compare(c->job, cJSON_GetObjectItemCaseSensitive(j, "opts"), now, e);
        cJSON_Delete(now);
    }
    if (rc == FLC_OK && (size_t)ne->valuedouble != r->neligible)
        rc = flc_err_set(e, FLC_EINVAL, "cannot resume job '%s': %g clients held data, now "
                         "%zu (another data set?)", c->job, ne->valuedouble, r->neligible);
    if (rc == FLC_OK && (uint32_t)rd->valuedouble >= (uint32_t)c->rounds)
        rc = flc_err_set(e, FLC_EINVAL, "job '%s' already ran %g rounds: ask more with "
                         "--rounds (the job's total)", c->job, rd->valuedouble);
    const char *p = b + 8 + jl, *end = b + len;
    if (rc == FLC_OK && (size_t)(end - p) < r->neligible * 4)
        rc = flc_err_set(e, FLC_EDATA, "job %s's checkpoint is cut short", c->job);
    if (rc == FLC_OK) {
        memcpy(r->eligible, p, r->neligible * 4);
        rc = load_states(c->job, p + r->neligible * 4, end, r, e);
    }
    if (rc == FLC_OK) {
        r->round = (uint32_t)rd->valuedouble;
        r->rule->clip = cl->valuedouble;
        r->dp->acct.rounds = (uint64_t)dr->valuedouble;
        for (int i = 0; i < FLC_DP_NORDERS; i++)
            r->dp->acct.rdp[i] = cJSON_GetArrayItem(rdp, i)->valuedouble;
    }
    cJSON_Delete(j);
    free(b);
    if (rc != FLC_OK)
        return rc;
    /* The round the last run was in when it stopped: begun (its roster and
     * shards written, updates pushed, perhaps merged and partly recorded)
     * but never checkpointed. Its keys go, so it runs again from scratch. */
    char gjob[FLC_NAME_MAX + 1];
    snprintf(gjob, sizeof gjob, "%s/g", c->job);
    uint32_t next = r->round + 1, *sh = NULL, *gr = NULL;
    size_t nsh = 0, ngr = 0;
    r->partial = 0;
    if (flc_store_list_shards(s, c->job, next, &sh, &nsh) == FLC_OK && nsh > 0)
        r->partial = 1;
    if (flc_store_list_rounds(s, gjob, &gr, &ngr) == FLC_OK)
        for (size_t i = 0; i < ngr; i++)
            r->partial |= gr[i] > r->round;
    free(sh);
    free(gr);
    if (r->partial)
        FLC_WARN("job %s: round %u had begun when its last run stopped: its partial records "
                 "are removed and it runs again", c->job, next);
    if (r->partial && (flc_store_delete_round(s, c->job, next) != FLC_OK ||
                       flc_store_delete_round(s, gjob, next) != FLC_OK)) {
        *e = *flc_store_error(s);
        return flc_err_wrap(e, "clearing round %u of job %s to run it again: ", next, c->job);
    }
    return FLC_OK;
}

int flc_sim_resume_args(const char *redis, const flc_store_opts_t *opts, const char *job,
                        char **args, uint32_t *round, flc_err_t *e)
{
    *args = NULL;
    flc_store_t *s = flc_store_open(redis, opts, e);
    if (s == NULL)
        return e->code;
    char *b = NULL;
    size_t len = 0;
    int rc = flc_store_ckpt_get(s, job, &b, &len);
    if (rc != FLC_OK)
        *e = *flc_store_error(s);
    flc_store_close(s);
    uint32_t jl = 0;
    if (rc == FLC_OK && len >= 8)
        memcpy(&jl, b + 4, 4);
    cJSON *j = rc == FLC_OK && len >= 8 && memcmp(b, MAGIC, 4) == 0 && jl <= len - 8
                   ? cJSON_ParseWithLength(b + 8, jl) : NULL;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "args");
    const cJSON *rd = cJSON_GetObjectItemCaseSensitive(j, "round");
    if (rc == FLC_OK && (!cJSON_IsString(a) || !cJSON_IsNumber(rd)))
        rc = flc_err_set(e, FLC_EDATA, "job %s's checkpoint is not one this flcache wrote", job);
    if (rc == FLC_OK && (*args = strdup(a->valuestring)) == NULL)
        rc = flc_err_set(e, FLC_ENOMEM, "out of memory");
    if (rc == FLC_OK && round != NULL)
        *round = (uint32_t)rd->valuedouble;
    cJSON_Delete(j);
    free(b);
    return rc;
}
