/* `flcache query --platform lambda|openwhisk`: the query engine runs as one
 * `query` function on that platform (aggregator/query_run.c flc_query_fn),
 * next to the data the way a deployment places it, and the driver prints
 * its answer. The event names the same cache the command opened, so the
 * answer is the one the engine would give here. */
#include <stdio.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "aggregator/query.h"
#include "cli/platform.h"
#include "runtime/cost.h"
#include "runtime/pool.h"

int flc_cli_query_remote(const flc_cli_conn_t *c, const flc_query_req_t *q, int want_out)
{
    if (want_out) {
        flc_cli_error("query", "--out needs the model here: run personalize with "
                      "--platform local (a function's result carries no model)");
        return FLC_EXIT_USAGE;
    }
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "role", "query");
    cJSON_AddStringToObject(ev, "kind", flc_query_kind_name(q->kind));
    cJSON_AddStringToObject(ev, "job", q->job);
    if (q->all_rounds) {
        cJSON_AddTrueToObject(ev, "all_rounds");
    } else {
        cJSON_AddNumberToObject(ev, "round_from", q->round_from);
        cJSON_AddNumberToObject(ev, "round_to", q->round_to);
    }
    if (q->client != NULL)
        cJSON_AddStringToObject(ev, "client", q->client);
    if (q->k > 0)
        cJSON_AddNumberToObject(ev, "k", q->k);
    cJSON_AddNumberToObject(ev, "cluster", q->cluster);
    cJSON_AddNumberToObject(ev, "seed", q->seed);
    /* Every option that changes the answer or how it is computed travels:
     * without by, samples and no_cache the function answered another
     * question (ranked by the default score, on every evaluation sample,
     * from the cached partials) than the same command with --platform local. */
    cJSON_AddStringToObject(ev, "by", q->by_accuracy ? "accuracy" : "default");
    if (q->samples > 0)
        cJSON_AddNumberToObject(ev, "samples", q->samples);
    if (q->no_cache)
        cJSON_AddTrueToObject(ev, "no_cache");
    if (q->threads > 0)
        cJSON_AddNumberToObject(ev, "threads", q->threads);
    if (q->mem_budget > 0)
        cJSON_AddNumberToObject(ev, "memory_budget_mb", (double)(q->mem_budget >> 20));
    cJSON_AddStringToObject(ev, "redis", c->url);
    flc_pool_t *pool = flc_cli_pool_start("query", c, 1, 1024, 300, FLC_LAMBDA_X86_PRICE_GB_S);
    int exit_code = FLC_EXIT_RUNTIME;
    if (pool != NULL) {
        flc_inv_rec_t rec;
        flc_err_t e = {0};
        const cJSON *evs[1] = {ev};
        if (flc_pool_invoke_json(pool, evs, 1, &rec, &e) != FLC_OK) {
            flc_cli_error("query", "%s", flc_err_msg(&e));
        } else if (rec.status != FLC_INV_OK || flc_inv_result(&rec) == NULL) {
            flc_cli_error("query", "the query function failed (%s): %s",
                          flc_inv_status_name(rec.status), rec.error);
        } else {
            flc_cli_print_json(flc_inv_result(&rec), 1);
            fprintf(stderr, "flcache query: answered on %s in %.1f ms (billed %llu ms, "
                    "$%.8f)\n", flc_platform_name(flc_cli_platform()), rec.duration_ms,
                    (unsigned long long)rec.billed_ms, rec.cost_usd);
            exit_code = FLC_EXIT_OK;
        }
        flc_inv_rec_clear(&rec);
        flc_pool_free(pool);
    }
    cJSON_Delete(ev);
    return exit_code;
}
