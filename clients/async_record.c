/* What an asynchronous version adds to the synchronous records (written
 * first by sim_record.c, version for round): each update's staleness, the
 * version it trained on, its weight and simulated times; the version's
 * simulated time and staleness summary; and the result as JSON. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "clients/async_internal.h"

#define MORE 8

/* Client x's ModelUpdate of version v, with the asynchronous metrics added. */
static int amend_update(flc_store_t *s, const flc_sim_cfg_t *c, uint32_t v,
                        const flc_async_arrival_t *x, double weight, flc_err_t *e)
{
    char name[24];
    flc_sim_client_name(name, sizeof name, (int)x->client);
    Flcache__ModelUpdate *u = NULL;
    int rc = flc_store_get_update_meta(s, c->job, v, name, &u);
    if (rc != FLC_OK)
        return flc_err_set(e, rc, "%s", flc_store_errstr(s));
    Flcache__ModelUpdate__MetricsEntry me[MORE];
    Flcache__ModelUpdate__MetricsEntry **mp = calloc(u->n_metrics + MORE, sizeof *mp);
    if (mp == NULL) {
        flcache__model_update__free_unpacked(u, NULL);
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    }
    const char *k[] = {"staleness", "base_version", "staleness_weight", "sim_start_ms",
                       "sim_end_ms"};
    double val[] = {x->staleness, x->base, weight, x->start_ms, x->end_ms};
    size_t n = u->n_metrics;
    memcpy(mp, u->metrics, n * sizeof *mp);
    for (size_t i = 0; i < 5; i++) {
        Flcache__ModelUpdate__MetricsEntry init = FLCACHE__MODEL_UPDATE__METRICS_ENTRY__INIT;
        me[i] = init;
        me[i].key = (char *)k[i];
        me[i].value = val[i];
        mp[n++] = &me[i];
    }
    size_t n0 = u->n_metrics;
    Flcache__ModelUpdate__MetricsEntry **m0 = u->metrics;
    u->n_metrics = n, u->metrics = mp;
    if (flc_store_put_update_meta(s, u) != FLC_OK)
        rc = flc_err_set(e, flc_store_error(s)->code, "%s", flc_store_errstr(s));
    u->n_metrics = n0, u->metrics = m0; /* what free_unpacked owns */
    flcache__model_update__free_unpacked(u, NULL);
    free(mp);
    return rc;
}

/* Grows a protobuf-c map of (key, double) by the given entries; the new
 * pointer array is the caller's to free after the message is stored. */
#define ADD_ENTRIES(T, INIT, arr, cnt, keys, vals, nadd, store, outp)                          \
    do {                                                                                       \
        T **p_ = calloc((cnt) + (nadd), sizeof *p_);                                          \
        if (p_ != NULL) {                                                                     \
            memcpy(p_, (arr), (cnt) * sizeof *p_);                                            \
            for (size_t i_ = 0; i_ < (nadd); i_++) {                                          \
                T init_ = INIT;                                                                \
                (store)[i_] = init_;                                                           \
                (store)[i_].key = (char *)(keys)[i_];                                         \
                (store)[i_].value = (vals)[i_];                                                \
                p_[(cnt) + i_] = &(store)[i_];                                                 \
            }                                                                                  \
        }                                                                                      \
        (outp) = p_;                                                                           \
    } while (0)

/* The version's RoundMeta, with its simulated time and staleness summary. */
static int amend_meta(flc_store_t *s, const flc_sim_cfg_t *c, const flc_async_cfg_t *a,
                      const flc_async_stale_t *stale, uint32_t v, const flc_async_version_t *ver,
                      flc_err_t *e)
{
    Flcache__RoundMeta *m = NULL;
    int rc = flc_store_get_round_meta(s, c->job, v, &m);
    if (rc != FLC_OK)
        return flc_err_set(e, rc, "%s", flc_store_errstr(s));
    const char *mk[] = {"version", "sim_time_ms", "staleness_mean", "staleness_max",
                        "refused_stale"};
    double mv[] = {v, ver->sim_ms, ver->staleness_mean, ver->staleness_max,
                   (double)ver->refused};
    const char *hk[] = {"buffer", "concurrency", "max_staleness"};
    size_t K = a->buffer ? a->buffer : (size_t)c->per_round;
    size_t C = a->mode == FLC_ASYNC_MODE_SYNC_CLOCK ? K : a->concurrency ? a->concurrency : 2 * K;
    double hv[] = {(double)K, (double)C, a->max_staleness};
    char spec[64];
    flc_async_stale_format(stale, spec, sizeof spec);
    const char *nk[] = {"mode", "staleness"};
    const char *nv[] = {flc_async_mode_name(a->mode), spec};
    Flcache__RoundMeta__MetricsEntry ms[5], **mp;
    Flcache__RoundMeta__HyperparamsEntry hs[3], **hp;
    Flcache__RoundMeta__NotesEntry ns[2], **np;
    ADD_ENTRIES(Flcache__RoundMeta__MetricsEntry, FLCACHE__ROUND_META__METRICS_ENTRY__INIT,
                m->metrics, m->n_metrics, mk, mv, 5, ms, mp);
    ADD_ENTRIES(Flcache__RoundMeta__HyperparamsEntry,
                FLCACHE__ROUND_META__HYPERPARAMS_ENTRY__INIT, m->hyperparams, m->n_hyperparams,
                hk, hv, 3, hs, hp);
    ADD_ENTRIES(Flcache__RoundMeta__NotesEntry, FLCACHE__ROUND_META__NOTES_ENTRY__INIT, m->notes,
                m->n_notes, nk, (char **)nv, 2, ns, np);
    if (mp == NULL || hp == NULL || np == NULL) {
        rc = flc_err_set(e, FLC_ENOMEM, "out of memory");
    } else {
        Flcache__RoundMeta x = *m;
        x.metrics = mp, x.n_metrics = m->n_metrics + 5;
        x.hyperparams = hp, x.n_hyperparams = m->n_hyperparams + 3;
        x.notes = np, x.n_notes = m->n_notes + 2;
        if (flc_store_put_round_meta(s, &x) != FLC_OK)
            rc = flc_err_set(e, flc_store_error(s)->code, "%s", flc_store_errstr(s));
    }
    free(mp), free(hp), free(np);
    flcache__round_meta__free_unpacked(m, NULL);
    return rc;
}

int async_record_version(flc_store_t *s, const flc_sim_cfg_t *c, const flc_async_cfg_t *a,
                         const flc_async_stale_t *stale, uint32_t v,
                         const flc_async_arrival_t *arr, size_t n,
                         const flc_async_version_t *ver, flc_err_t *e)
{
    int rc = FLC_OK;
    for (size_t i = 0; rc == FLC_OK && i < n; i++)
        rc = amend_update(s, c, v, &arr[i], flc_async_stale_weight(stale, arr[i].staleness), e);
    if (rc == FLC_OK)
        rc = amend_meta(s, c, a, stale, v, ver, e);
    return rc;
}

cJSON *flc_async_result_json(const flc_sim_cfg_t *c, const flc_async_cfg_t *a,
                             const flc_async_result_t *r)
{
    cJSON *o = flc_sim_result_json(c, &r->sim);
    if (o == NULL)
        return NULL;
    cJSON_AddStringToObject(o, "mode", flc_async_mode_name(a->mode));
    flc_async_stale_t st;
    char spec[64] = "constant";
    if (flc_async_stale_parse(a->staleness, &st, NULL) == FLC_OK)
        flc_async_stale_format(&st, spec, sizeof spec);
    cJSON_AddStringToObject(o, "staleness", spec);
    cJSON_AddNumberToObject(o, "max_staleness", a->max_staleness);
    cJSON_AddNumberToObject(o, "buffer", (double)(a->buffer ? a->buffer : (size_t)c->per_round));
    cJSON *rounds = cJSON_GetObjectItemCaseSensitive(o, "rounds");
    size_t i = 0;
    cJSON *it;
    cJSON_ArrayForEach(it, rounds)
    {
        if (i >= r->sim.nrounds)
            break;
        const flc_async_version_t *x = &r->versions[i++];
        cJSON_AddNumberToObject(it, "sim_ms", x->sim_ms);
        cJSON_AddNumberToObject(it, "staleness_mean", x->staleness_mean);
        cJSON_AddNumberToObject(it, "staleness_max", x->staleness_max);
        cJSON_AddNumberToObject(it, "refused", (double)x->refused);
    }
    return o;
}
