/* Recording what a shard's merge did: the report as JSON (the aggregator
 * function's result, and what is stored per shard), and the round's
 * RoundMeta folded from all shards' reports by whichever merger finishes
 * last. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "aggregator/rs_internal.h"
#include "base/clock.h"
#include "cache/store_ops.h"

void flc_rs_report_free(flc_rs_report_t *r)
{
    if (r == NULL)
        return;
    flc_strlist_free(&r->participants);
    flc_strlist_free(&r->missing);
    flc_strlist_free(&r->rejected);
}

static cJSON *list_json(const flc_strlist_t *l)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && i < l->n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(l->items[i]));
    return a;
}

cJSON *flc_rs_report_json(const flc_rs_report_t *rep)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    cJSON_AddNumberToObject(o, "shard", rep->shard);
    cJSON_AddItemToObject(o, "participants", list_json(&rep->participants));
    cJSON_AddItemToObject(o, "missing", list_json(&rep->missing));
    cJSON_AddItemToObject(o, "rejected", list_json(&rep->rejected));
    cJSON_AddNumberToObject(o, "duplicates", (double)rep->duplicates);
    cJSON_AddNumberToObject(o, "clipped", (double)rep->clipped);
    cJSON_AddNumberToObject(o, "bytes_read", (double)rep->bytes_read);
    cJSON_AddNumberToObject(o, "wait_ms", rep->wait_ms);
    cJSON_AddNumberToObject(o, "merge_ms", rep->merge_ms);
    if (rep->error[0])
        cJSON_AddStringToObject(o, "error", rep->error);
    return o;
}

/* A growing array of strings for protobuf-c's repeated string fields. */
typedef struct names {
    char **v;
    size_t n;
} names_t;

static int names_has(const names_t *a, const char *s)
{
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i], s) == 0)
            return 1;
    return 0;
}

static void names_add(names_t *a, const char *s)
{
    if (names_has(a, s))
        return;
    char **v = realloc(a->v, (a->n + 1) * sizeof *v);
    char *c = strdup(s);
    if (v == NULL || c == NULL) {
        free(c);
        a->v = v ? v : a->v;
        return; /* metadata is best effort under memory pressure */
    }
    a->v = v;
    a->v[a->n++] = c;
}

static void names_free(names_t *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
}

static void add_array(names_t *a, const cJSON *arr, const char *prefix)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        if (!cJSON_IsString(it))
            continue;
        char buf[320];
        snprintf(buf, sizeof buf, "%s%s", prefix, it->valuestring);
        names_add(a, buf);
    }
}

/* Builds the RoundMeta from every shard's report. */
static int fold_round_meta(flc_store_t *s, const flc_rs_merger_cfg_t *cfg,
                           const flc_store_fields_t *all, flc_err_t *e)
{
    Flcache__RoundMeta *old = NULL;
    int rc = flc_store_get_round_meta(s, cfg->job, cfg->round, &old);
    if (rc != FLC_OK && rc != FLC_ENOTFOUND) {
        *e = *flc_store_error(s);
        return rc;
    }
    names_t expected = {0}, merged_any = {0}, missing = {0}, rejected = {0}, participants = {0};
    double wait_ms = 0, merge_ms = 0;
    uint64_t bytes = 0;
    size_t nshards = 0;
    /* A shard whose merge failed: nothing was merged in this round, whatever
     * the other shards did (the model is not stepped), so the round is
     * "failed: <why>" with no participants, never "closed". */
    char failed[300] = "";
    for (size_t i = 0; i < cfg->n_expected; i++)
        names_add(&expected, cfg->expected[i]);
    /* A client takes part in the round when every shard merged it. */
    cJSON **reps = calloc(all->n + 1, sizeof *reps);
    for (size_t i = 0; reps && i < all->n; i++) {
        cJSON *j = cJSON_ParseWithLength(all->v[i].value, all->v[i].len);
        if (j == NULL)
            continue;
        reps[nshards++] = j;
        add_array(&merged_any, cJSON_GetObjectItem(j, "participants"), "");
        add_array(&missing, cJSON_GetObjectItem(j, "missing"), "");
        char prefix[32];
        snprintf(prefix, sizeof prefix, "shard %d: ",
                 (int)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "shard")));
        add_array(&rejected, cJSON_GetObjectItem(j, "rejected"), prefix);
        double w = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "wait_ms"));
        double m = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "merge_ms"));
        wait_ms = w > wait_ms ? w : wait_ms; /* shards merge in parallel: the slowest counts */
        merge_ms = m > merge_ms ? m : merge_ms;
        bytes += (uint64_t)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "bytes_read"));
        const char *err = cJSON_GetStringValue(cJSON_GetObjectItem(j, "error"));
        if (err != NULL && failed[0] == '\0')
            snprintf(failed, sizeof failed, "failed: shard %d: %s",
                     (int)cJSON_GetNumberValue(cJSON_GetObjectItem(j, "shard")), err);
    }
    for (size_t c = 0; c < merged_any.n; c++) {
        size_t in = 0;
        for (size_t k = 0; k < nshards; k++) {
            const cJSON *it;
            cJSON_ArrayForEach(it, cJSON_GetObjectItem(reps[k], "participants"))
                if (cJSON_IsString(it) && strcmp(it->valuestring, merged_any.v[c]) == 0) {
                    in++;
                    break;
                }
        }
        if (in == nshards && failed[0] == '\0')
            names_add(&participants, merged_any.v[c]);
    }
    for (size_t k = 0; k < nshards; k++)
        cJSON_Delete(reps[k]);
    free(reps);

    Flcache__RoundMeta m = FLCACHE__ROUND_META__INIT;
    if (old != NULL) /* keep the driver's fields: hyperparams, metrics, notes, cost */
        m = *old;
    char rule[256];
    flc_merge_rule_format(&cfg->rule, rule, sizeof rule);
    m.job = (char *)cfg->job;
    m.round = cfg->round;
    m.rule = rule;
    m.num_shards = cfg->num_shards;
    m.model_size = cfg->model_size;
    m.n_expected = expected.n, m.expected = expected.v;
    m.n_participants = participants.n, m.participants = participants.v;
    m.n_missing = missing.n, m.missing = missing.v;
    m.n_rejected = rejected.n, m.rejected = rejected.v;
    m.wait_ms = wait_ms;
    m.merge_ms = merge_ms;
    m.bytes_read = bytes;
    m.closed_ms = flc_wall_ms();
    m.status = failed[0] ? failed : "closed";
    rc = flc_store_put_round_meta(s, &m);
    if (rc != FLC_OK)
        *e = *flc_store_error(s);
    if (old != NULL)
        flcache__round_meta__free_unpacked(old, NULL);
    names_free(&expected), names_free(&merged_any), names_free(&missing);
    names_free(&rejected), names_free(&participants);
    return rc;
}

int flc_rs_report_store(flc_store_t *s, const flc_rs_merger_cfg_t *cfg,
                        const flc_rs_report_t *rep, flc_err_t *e)
{
    cJSON *j = flc_rs_report_json(rep);
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (text == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory for the merge report");
    flc_store_fields_t all;
    int rc = flc_store_merge_report_put(s, cfg->job, cfg->round, cfg->shard, text, &all);
    free(text);
    if (rc != FLC_OK) {
        *e = *flc_store_error(s);
        return rc;
    }
    /* The last shard to report writes the round's metadata. Two mergers
     * finishing together may both see all reports: both then write the same
     * fold, which is harmless. */
    if (all.n >= cfg->num_shards && !cfg->driver_records)
        rc = fold_round_meta(s, cfg, &all, e);
    flc_store_fields_free(&all);
    return rc;
}

int flc_rs_round_meta(flc_store_t *s, const flc_rs_merger_cfg_t *cfg, flc_err_t *e)
{
    flc_store_fields_t all;
    if (flc_store_merge_report_getall(s, cfg->job, cfg->round, &all) != FLC_OK) {
        *e = *flc_store_error(s);
        return e->code;
    }
    int rc = all.n > 0 ? fold_round_meta(s, cfg, &all, e)
                       : flc_err_set(e, FLC_ENOTFOUND, "round %u of job %s: no shard reported",
                                     cfg->round, cfg->job);
    flc_store_fields_free(&all);
    return rc;
}
