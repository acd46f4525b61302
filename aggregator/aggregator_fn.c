/* The aggregator function: a JSON event in, the merger of one shard run,
 * its report out (see reduce_scatter.h for the event's fields). This is what
 * flcache-fn's "aggregator" role calls; it holds no state between calls.
 * Event fields are read by base/event.h's rules, like every role's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "aggregator/rs_internal.h"
#include "base/clock.h"
#include "base/event.h"

/* Reads the event into *cfg; cfg->expected is a new array of names
 * borrowed from ev (the caller frees the array, not the names). */
static int read_event(const cJSON *ev, flc_rs_merger_cfg_t *cfg, const char **url, flc_err_t *e)
{
    const char *job = NULL;
    long long round = 0, shard = 0, nshards = 1, msize = 0, deadline = 0, readers = 0;
    long long window = 0;
    int derive = 0;
    const cJSON *exp = NULL;
    if (flc_ev_need_str(ev, "job", &job, e) ||
        flc_ev_need_int(ev, "round", 0, 4294967295LL, &round, e) ||
        flc_ev_opt_int(ev, "shard", 0, 65535, 0, &shard, e) ||
        flc_ev_opt_int(ev, "num_shards", 0, 65536, 1, &nshards, e) ||
        flc_ev_need_int(ev, "model_size", 0, 9000000000000000LL, &msize, e) ||
        flc_ev_opt_int(ev, "deadline_ms", 0, 86400000, 60000, &deadline, e) ||
        flc_ev_opt_int(ev, "readers", 0, 1000000, 0, &readers, e) ||
        /* bytes folded and written at a time (issue 14: a merger's memory
         * bounded by its shard); 0: the merger's default */
        flc_ev_opt_int(ev, "window_bytes", 0, 1LL << 40, 0, &window, e) ||
        flc_ev_opt_bool(ev, "derive_stats", 0, &derive, e) ||
        flc_ev_opt_str(ev, "redis", NULL, url, e) ||
        flc_ev_need_array(ev, "expected", &exp, e))
        return e->code;
    *cfg = (flc_rs_merger_cfg_t){.job = job, .round = (uint32_t)round, .shard = (uint32_t)shard,
                              .num_shards = (uint32_t)nshards, .model_size = (uint64_t)msize,
                              .deadline_ms = (unsigned)deadline, .readers = (unsigned)readers,
                              .derive_stats = derive, .window_bytes = (size_t)window};
    int n = cJSON_GetArraySize(exp);
    if (n == 0)
        return flc_err_set(e, FLC_EINVAL, "event field 'expected' must be a non-empty array of "
                           "client names, not []");
    /* The rule is a string or an object: merge_rule.c reads its own shape. */
    const cJSON *rule = cJSON_GetObjectItemCaseSensitive(ev, "rule");
    int rc = rule ? flc_merge_rule_from_json(&cfg->rule, rule, e)
                  : flc_merge_rule_init(&cfg->rule, "fedavg", e);
    if (rc != FLC_OK)
        return rc;
    const char **names = calloc((size_t)n, sizeof *names);
    if (names == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    size_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, exp)
    {
        if (flc_ev_item_str(it, "expected", i, &names[i], e) != FLC_OK) {
            free(names);
            return e->code;
        }
        i++;
    }
    cfg->expected = names;
    cfg->n_expected = (size_t)n;
    return FLC_OK;
}

int flc_rs_aggregator_fn(const flc_store_cfg_t *sc, const cJSON *ev, cJSON **result,
                         double *compute_ms, double *comm_ms, flc_err_t *e)
{
    *result = NULL;
    flc_rs_merger_cfg_t cfg;
    const char *url = NULL;
    int rc = read_event(ev, &cfg, &url, e);
    if (rc != FLC_OK)
        return rc;
    uint64_t t0 = flc_now_ns();
    flc_store_t *s = flc_store_open_cfg(sc, url, e);
    double open_ms = (double)(flc_now_ns() - t0) / 1e6;
    if (s == NULL) {
        free((void *)cfg.expected);
        return e->code;
    }
    flc_rs_report_t rep;
    rc = flc_rs_merger_run(s, &cfg, &rep, e);
    /* Connecting and the blocked wait for arrivals are communication; the
     * merge proper (its own reads and writes included: the merger does not
     * time them apart) is compute. */
    if (comm_ms != NULL)
        *comm_ms = open_ms + rep.wait_ms;
    if (compute_ms != NULL)
        *compute_ms = rep.merge_ms;
    if (rc == FLC_OK) {
        *result = flc_rs_report_json(&rep);
        if (*result == NULL)
            rc = flc_err_set(e, FLC_ENOMEM, "out of memory");
    }
    flc_rs_report_free(&rep);
    flc_store_close(s);
    free((void *)cfg.expected);
    return rc;
}
