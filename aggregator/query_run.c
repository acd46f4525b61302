/* The query engine's front door: names, dispatch, timing, and the "query"
 * function role. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "aggregator/query_internal.h"
#include "base/clock.h"
#include "base/event.h"

static const char *const kind_names[FLC_Q_NKINDS] = {
    "history", "client", "norms", "similarity", "outliers",
    "clusters", "personalize", "contribution", "schedule", "accuracy", "incentives", "faults"};

int flc_query_kind_parse(const char *name, flc_query_kind_t *out)
{
    for (int k = 0; name && k < FLC_Q_NKINDS; k++)
        if (strcmp(name, kind_names[k]) == 0) {
            *out = (flc_query_kind_t)k;
            return FLC_OK;
        }
    return FLC_EINVAL;
}

const char *flc_query_kind_name(flc_query_kind_t k)
{
    return (unsigned)k < FLC_Q_NKINDS ? kind_names[k] : "?";
}

int flc_query_run(flc_store_t *s, const flc_query_req_t *q, Flcache__QueryAnswer **out,
                  flc_err_t *e)
{
    *out = NULL;
    flc_err_clear(e);
    if (q->job == NULL || flc_name_check(q->job, "job", e) != FLC_OK)
        return q->job ? e->code : flc_err_set(e, FLC_EINVAL, "which job? (--job J)");
    if (!q->all_rounds && q->round_from > q->round_to)
        return flc_err_set(e, FLC_EINVAL, "round range %u:%u is empty", q->round_from,
                           q->round_to);
    /* Shard workers open their own connections, with the caller's store
     * options; without q->url they reach s's server (flc_query_gram). */
    flc_store_cfg_t at = {.url = q->url != NULL && *q->url ? q->url : NULL};
    if (q->store_opts != NULL)
        at.opts = *q->store_opts;
    /* Tag the reads with the query's access pattern: the caching policy
     * learns from it and `store stats` reports hit rates per class. */
    int qc = q->kind == FLC_Q_HISTORY ? FLC_QC_AGGREGATE
             : q->kind == FLC_Q_CLIENT || q->kind == FLC_Q_CONTRIBUTION ||
                     q->kind == FLC_Q_SCHEDULE
                 ? FLC_QC_CLIENT
                 : FLC_QC_ROUND;
    int old_qc = flc_store_set_query_class(s, qc);
    uint64_t t0 = flc_now_ns();
    int rc;
    int eval = q->kind == FLC_Q_ACCURACY || q->kind == FLC_Q_INCENTIVES ||
               q->kind == FLC_Q_FAULTS ||
               (q->by_accuracy && (q->kind == FLC_Q_SCHEDULE || q->kind == FLC_Q_PERSONALIZE ||
                                   q->kind == FLC_Q_CONTRIBUTION));
    switch (eval ? FLC_Q_ACCURACY : q->kind) {
    case FLC_Q_ACCURACY:
        rc = flc_query_evaluate(s, q, &at, out, e);
        break;
    case FLC_Q_HISTORY:
        rc = flc_query_history(s, q, out, e);
        break;
    case FLC_Q_CLIENT:
        rc = flc_query_client(s, q, out, e);
        break;
    case FLC_Q_SCHEDULE:
        rc = flc_query_schedule(s, q, out, e);
        break;
    case FLC_Q_PERSONALIZE:
        rc = flc_query_personalize(s, q, &at, out, e);
        break;
    case FLC_Q_NORMS:
    case FLC_Q_SIMILARITY:
    case FLC_Q_OUTLIERS:
    case FLC_Q_CLUSTERS:
    case FLC_Q_CONTRIBUTION:
        rc = flc_query_vectors(s, q, &at, out, e);
        break;
    default:
        return flc_err_set(e, FLC_EINVAL, "unknown query kind %d", (int)q->kind);
    }
    flc_store_set_query_class(s, old_qc);
    if (rc != FLC_OK && *out) {
        flcache__query_answer__free_unpacked(*out, NULL);
        *out = NULL;
    }
    if (*out)
        (*out)->elapsed_ms = (double)(flc_now_ns() - t0) / 1e6;
    return rc;
}

/* An optional whole-number field of the query event, 0..2^32-1. */
static int ev_uint(const cJSON *ev, const char *name, unsigned dflt, unsigned *out, flc_err_t *e)
{
    long long v;
    int rc = flc_ev_opt_int(ev, name, 0, 4294967295LL, dflt, &v, e);
    if (rc == FLC_OK)
        *out = (unsigned)v;
    return rc;
}

int flc_query_fn(const flc_store_cfg_t *sc, const cJSON *ev, cJSON **result, flc_err_t *e)
{
    *result = NULL;
    const char *kind = NULL;
    flc_query_req_t q = {0};
    if (flc_ev_need_str(ev, "kind", &kind, e) != FLC_OK)
        return e->code;
    if (flc_query_kind_parse(kind, &q.kind) != FLC_OK)
        return flc_err_set(e, FLC_EINVAL, "event field 'kind' must be one of history, client, "
                           "norms, similarity, outliers, clusters, personalize, contribution, "
                           "schedule, accuracy, incentives, faults, not \"%.64s\"", kind);
    const char *by = NULL;
    unsigned from = 0, to = 0, round = 0;
    long long threads = 0, budget_mb = 0;
    int all = 0;
    int has_from = flc_ev_has(ev, "round_from");
    if (flc_ev_need_str(ev, "job", &q.job, e) || ev_uint(ev, "round", 0, &round, e) ||
        ev_uint(ev, "round_from", round, &from, e) ||
        ev_uint(ev, "round_to", has_from ? from : round, &to, e) ||
        ev_uint(ev, "k", 0, &q.k, e) || ev_uint(ev, "cluster", 0, &q.cluster, e) ||
        ev_uint(ev, "seed", 1, &q.seed, e) || flc_ev_opt_bool(ev, "all_rounds", 0, &all, e) ||
        flc_ev_opt_str(ev, "client", NULL, &q.client, e) ||
        ev_uint(ev, "samples", 0, &q.samples, e) ||
        flc_ev_opt_bool(ev, "no_cache", 0, &q.no_cache, e) ||
        flc_ev_opt_int(ev, "threads", 0, 64, 0, &threads, e) ||
        flc_ev_opt_int(ev, "memory_budget_mb", 0, 1048576, 0, &budget_mb, e) ||
        flc_ev_opt_str(ev, "by", NULL, &by, e) ||
        flc_ev_opt_str(ev, "redis", NULL, &q.url, e))
        return e->code;
    if (by != NULL && strcmp(by, "accuracy") != 0 && strcmp(by, "default") != 0)
        return flc_err_set(e, FLC_EINVAL, "event field 'by' must be \"accuracy\" or "
                           "\"default\", not \"%.64s\"", by);
    q.by_accuracy = by != NULL && strcmp(by, "accuracy") == 0;
    q.threads = (int)threads;
    q.mem_budget = (size_t)budget_mb << 20;
    q.round_from = from;
    q.round_to = to;
    q.all_rounds = all || (!flc_ev_has(ev, "round") && !has_from);
    flc_store_t *s = flc_store_open_cfg(sc, q.url, e);
    if (s == NULL)
        return e->code;
    /* The shard workers go where s went, with the same options. */
    if (q.url == NULL && sc != NULL)
        q.url = sc->url;
    if (sc != NULL)
        q.store_opts = &sc->opts;
    Flcache__QueryAnswer *a = NULL;
    int rc = flc_query_run(s, &q, &a, e);
    if (rc == FLC_OK) {
        *result = flc_query_answer_json(a);
        flcache__query_answer__free_unpacked(a, NULL);
        if (*result == NULL)
            rc = flc_err_set(e, FLC_ENOMEM, "out of memory");
    }
    flc_store_close(s);
    return rc;
}
