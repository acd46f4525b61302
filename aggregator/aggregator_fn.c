/* The aggregator function: a JSON event in, the merger of one shard run,
 * its report out (see reduce_scatter.h for the event's fields). This is what
 * flcache-fn's "aggregator" role calls; it holds no state between calls. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "aggregator/event_field.h"
#include "aggregator/rs_internal.h"

static int get_uint(const cJSON *ev, const char *name, int required, double dflt, double max,
                    double *out, flc_err_t *e)
{
    return flc_event_uint(ev, "aggregator", name, required, dflt, max, out, e);
}

int flc_aggregator_run(const cJSON *ev, cJSON **result, flc_err_t *e)
{
    *result = NULL;
    if (!cJSON_IsObject(ev))
        return flc_err_set(e, FLC_EINVAL, "aggregator event must be a JSON object");
    const cJSON *job = cJSON_GetObjectItemCaseSensitive(ev, "job");
    if (!cJSON_IsString(job))
        return flc_err_set(e, FLC_EINVAL, "aggregator event: 'job' must be a string");
    double round = 0, shard = 0, nshards = 1, msize = 0, deadline = 0, readers = 0;
    if (get_uint(ev, "round", 1, 0, 4294967295.0, &round, e) ||
        get_uint(ev, "shard", 0, 0, 65535, &shard, e) ||
        get_uint(ev, "num_shards", 0, 1, 65536, &nshards, e) ||
        get_uint(ev, "model_size", 1, 0, 9.0e15, &msize, e) ||
        get_uint(ev, "deadline_ms", 0, 60000, 86400000, &deadline, e) ||
        get_uint(ev, "readers", 0, 0, 1000000, &readers, e))
        return e->code;
    flc_merger_cfg_t cfg = {.job = job->valuestring, .round = (uint32_t)round,
                            .shard = (uint32_t)shard, .num_shards = (uint32_t)nshards,
                            .model_size = (uint64_t)msize, .deadline_ms = (unsigned)deadline,
                            .readers = (unsigned)readers};
    cfg.derive_stats = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ev, "derive_stats"));
    const cJSON *rule = cJSON_GetObjectItemCaseSensitive(ev, "rule");
    int rc = rule ? flc_merge_rule_from_json(&cfg.rule, rule, e)
                  : flc_merge_rule_init(&cfg.rule, "fedavg", e);
    if (rc != FLC_OK)
        return rc;
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(ev, "expected");
    int n = cJSON_IsArray(exp) ? cJSON_GetArraySize(exp) : 0;
    if (n == 0)
        return flc_err_set(e, FLC_EINVAL, "aggregator event: 'expected' must be a non-empty "
                           "array of client names");
    const char **names = calloc((size_t)n, sizeof *names);
    if (names == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        const cJSON *it = cJSON_GetArrayItem(exp, i);
        if (!cJSON_IsString(it)) {
            free(names);
            return flc_err_set(e, FLC_EINVAL, "aggregator event: expected[%d] is not a string",
                               i);
        }
        names[i] = it->valuestring;
    }
    cfg.expected = names;
    cfg.n_expected = (size_t)n;

    const cJSON *url = cJSON_GetObjectItemCaseSensitive(ev, "redis");
    flc_store_t *s = cJSON_IsString(url) ? flc_store_open(url->valuestring, NULL, e)
                                         : flc_store_open_env(NULL, e);
    if (s == NULL) {
        free(names);
        return e->code;
    }
    flc_merge_report_t rep;
    rc = flc_merger_run(s, &cfg, &rep, e);
    if (rc == FLC_OK) {
        *result = flc_rs_report_json(&rep);
        if (*result == NULL)
            rc = flc_err_set(e, FLC_ENOMEM, "out of memory");
    }
    flc_merge_report_free(&rep);
    flc_store_close(s);
    free(names);
    return rc;
}
