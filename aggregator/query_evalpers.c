/* personalize --by accuracy (query_evalq.c calls it per round): the K most
 * accurate clients of the round, weighted by their accuracy; the
 * personalized model's accuracy from the kept products, and the model
 * itself (when asked) built next to the shards, the global model's slice
 * read next to its node and each member's weighted slice added there, so
 * one model moves, not K + 1.
 *
 * The model is cached too: built, it is written as the series "<J>/p" of
 * the round (one piece per shard of the round, placed by their own tags)
 * and the round's cached numbers record the pieces' stamp
 * (flc_query_evpers_stamp). A later query whose numbers hold, with the
 * same K, reads the pieces next to their nodes (44.5 MB at FLStore's size
 * instead of K updates and the global model) when their stamp still
 * equals the recorded one, before and after the read; anything else
 * builds it again. --no-cache neither reads nor writes them; deleting the
 * round deletes them (cache/store_drop.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/merge.h"
#include "aggregator/query_evalwork.h"
#include "aggregator/query_evalres.h"
#include "aggregator/query_internal.h"
#include "aggregator/reduce_scatter.h"
#include "base/bigbuf.h"
#include "base/clock.h"
#include "base/log.h"

/* global + sum_i c[i] u_i into *q->model_out, the members' weighted slices
 * summed next to the shards (query_evalwork.c): one model moves, not K.
 * The global model is read next to its node too (model mode on its
 * series, coefficient 1: 0 + g is g), before the members are added in. */
static int personal_model(flc_store_t *s, const flc_query_req_t *q, const flc_store_cfg_t *at,
                          uint32_t round, uint64_t P, char **clients, size_t n, const double *c,
                          Flcache__QueryAnswer *a, uint32_t *shards, flc_err_t *e)
{
    char gj[FLC_NAME_MAX + 1];
    snprintf(gj, sizeof gj, "%s/g", q->job);
    float *model = calloc(P, sizeof *model);
    flc_track_where_t *where = NULL, gwhere = {.shard = 0};
    flc_query_eval_t counts = {0};
    char *grow[1] = {NULL};
    const double one[1] = {1.0};
    flc_query_evwork_t gw = {.job = gj, .round = round - 1, .P = P, .where = &gwhere,
                             .ns = 1, .rows = grow, .nrows = 1, .model = model, .coef = one,
                             .ev = &counts};
    flc_query_evwork_t w = {.job = q->job, .round = round, .P = P, .rows = clients,
                            .nrows = n, .model = model, .coef = c, .ev = &counts};
    int rc = model ? FLC_OK : flc_err_set(e, FLC_ENOMEM, "out of memory for the model");
    if (rc == FLC_OK && (rc = flc_query_eval_shards(s, at, q, &gw, e)) != FLC_OK)
        rc = flc_err_wrap(e, "the global model of round %u (%s): ", round - 1, gj);
    if (rc == FLC_OK && (flc_track_round(s, q->job, round, &where, &w.ns) != FLC_OK ||
                         w.ns == 0))
        rc = flc_err_set(e, FLC_ENOTFOUND, "round %u of job %s has no shards", round, q->job);
    w.where = where;
    *shards = (uint32_t)w.ns;
    if (rc == FLC_OK)
        rc = flc_query_eval_shards(s, at, q, &w, e);
    free(where);
    if (rc != FLC_OK)
        return free(model), rc;
    a->bytes_read += counts.bytes_read;
    a->bytes_moved += counts.bytes_moved;
    *q->model_out = model;
    *q->model_len = P;
    return FLC_OK;
}

/* The cached model's pieces into a new *model (P floats) when the numbers
 * v record them and their stamp holds before and after the read; else
 * FLC_ENOTFOUND (the caller builds it). */
static int cached_model(flc_store_t *s, const flc_query_req_t *q, const flc_store_cfg_t *at,
                        uint32_t round, uint64_t P, const flc_query_evnum_t *v,
                        Flcache__QueryAnswer *a, float **model)
{
    uint32_t S = v->pers_shards;
    uint64_t t0 = flc_now_ns();
    if (v->digest == 0 || v->pers_stamp == 0 || S == 0 || S > 64 ||
        flc_query_evpers_stamp(s, q->job, round, S) != v->pers_stamp)
        return FLC_ENOTFOUND;
    char pj[FLC_NAME_MAX + 1];
    flc_query_pers_series(pj, q->job); /* fits: its stamp was read */
    flc_track_where_t where[64] = {{0}};
    for (uint32_t k = 0; k < S; k++)
        where[k].shard = k;
    char *row[1] = {NULL};
    const double one[1] = {1.0};
    flc_query_eval_t counts = {0};
    /* every float is read into it; the caller frees it (malloc), populated
     * now (fresh pages faulted one by one cost more than the read here) */
    float *m = malloc(P * sizeof *m);
    flc_big_prefault(m, P * sizeof *m);
    flc_query_evwork_t w = {.job = pj, .round = round, .P = P, .where = where, .ns = S,
                            .rows = row, .nrows = 1, .model = m, .coef = one, .ev = &counts,
                            .direct = 1};
    flc_err_t e = {0};
    uint64_t t1 = flc_now_ns();
    int rc = m ? flc_query_eval_shards(s, at, q, &w, &e) : FLC_ENOMEM;
    uint64_t t2 = flc_now_ns();
    if (rc == FLC_OK && flc_query_evpers_stamp(s, q->job, round, S) != v->pers_stamp)
        rc = FLC_ENOTFOUND; /* rewritten while read: a mix of two models */
    if (rc != FLC_OK) {
        FLC_DEBUG("personalize: round %u of job %s: the cached model not used (%s)", round,
                  q->job, rc == FLC_ENOTFOUND ? "rewritten" : e.msg);
        free(m);
        return FLC_ENOTFOUND;
    }
    FLC_DEBUG("personalize: round %u of job %s: the cached model's stamps and memory in "
              "%.1f ms, its %u pieces read in %.1f ms, stamps again in %.1f ms", round, q->job,
              (double)(t1 - t0) / 1e6, S, (double)(t2 - t1) / 1e6,
              (double)(flc_now_ns() - t2) / 1e6);
    a->bytes_read += counts.bytes_read;
    a->bytes_moved += counts.bytes_moved;
    *model = m;
    return FLC_OK;
}

/* The built model as the round's pieces of "<J>/p", and their stamp into
 * the round's numbers: best effort (refused, e.g. for a read-only user,
 * the model is built every time, the same). */
static void cache_model(flc_store_t *s, const flc_query_req_t *q, uint32_t round, uint64_t P,
                        uint32_t S, const float *model, const flc_query_evnum_t *v)
{
    flc_shard_t sh = {.round = round, .num_shards = S, .model_size = P,
                      .created_ms = flc_wall_ms()};
    if (v->digest == 0 || S == 0 || S > 64 || flc_query_pers_series(sh.job, q->job) != FLC_OK)
        return;
    /* in the pieces' header: a rewrite has another stamp */
    sh.update_norm = sqrt(flc_merge_sumsq(model, P));
    for (uint32_t k = 0; k < S; k++) {
        flc_rs_shard_range(P, S, k, &sh.offset, &sh.count);
        sh.shard = k;
        sh.values = (float *)model + sh.offset;
        if (flc_store_put_merged(s, &sh) != FLC_OK) {
            FLC_DEBUG("personalize: round %u of job %s: the model not cached: %s", round,
                      q->job, flc_store_errstr(s));
            return;
        }
    }
    flc_query_evnum_t kept = *v; /* the same numbers, and where the model is */
    kept.pers_shards = S;
    kept.pers_stamp = flc_query_evpers_stamp(s, q->job, round, S);
    if (kept.pers_stamp != 0)
        flc_query_evnum_put(s, q->job, round, v->digest, &kept);
}

void flc_query_pers_weights(const double *acc, size_t n, size_t K, double *ord, double *c)
{
    for (size_t i = 0; i < n; i++) {
        ord[2 * i] = acc[i];
        ord[2 * i + 1] = (double)i;
        c[i] = 0;
    }
    c[n] = 0;
    qsort(ord, n, 2 * sizeof *ord, flc_query_by_key_desc);
    double sum = 0;
    for (size_t r = 0; r < K; r++)
        sum += ord[2 * r] > 0 ? ord[2 * r] : 0;
    for (size_t r = 0; r < K; r++) {
        size_t i = (size_t)ord[2 * r + 1];
        c[i] = sum > 0 ? (ord[2 * r] > 0 ? ord[2 * r] : 0) / sum : 1.0 / (double)K;
    }
}

/* personalize --by accuracy: the K most accurate clients of the round,
 * weighted by their accuracy, from the round's numbers (its accuracy is
 * v->pers_acc, evaluated from the kept products); the model (when asked)
 * is read member by member, shard by shard. */
int flc_query_eval_personalize(flc_store_t *s, const flc_query_req_t *q,
                               const flc_store_cfg_t *at, const flc_query_evnum_t *v,
                               uint32_t round, uint64_t P, Flcache__QueryAnswer *a, flc_err_t *e)
{
    size_t n = v->n, K = flc_query_pers_k(q, n);
    double *ord = malloc(2 * n * sizeof *ord), *c = calloc(n + 1, sizeof *c);
    int rc = ord && c ? FLC_OK : flc_err_set(e, FLC_ENOMEM, "out of memory");
    if (rc == FLC_OK)
        flc_query_pers_weights(v->acc, n, K, ord, c);
    for (size_t r = 0; rc == FLC_OK && r < K; r++) {
        size_t i = (size_t)ord[2 * r + 1];
        double row[] = {ord[2 * r], c[i]};
        flc_query_answer_row(a, v->clients[i], row, NULL);
    }
    flc_query_answer_summary(a, "personalized_accuracy", v->pers_acc);
    flc_query_answer_summary(a, "global_accuracy", v->global_acc);
    flc_query_answer_summary(a, "fedavg_accuracy", v->fedavg_acc);
    flc_query_answer_summary(a, "members", (double)K);
    float *cached = NULL;
    if (rc == FLC_OK && q->model_out &&
        cached_model(s, q, at, round, P, v, a, &cached) == FLC_OK) {
        *q->model_out = cached;
        *q->model_len = P;
        flc_query_answer_note(a, "cached_model", "the personalized model read from its cached "
                              "pieces (series <job>/p), checked against their stamps; "
                              "--no-cache builds it again");
    } else if (rc == FLC_OK && q->model_out) { /* global + sum c_i u_i, next to the shards */
        uint32_t S = 0;
        rc = personal_model(s, q, at, round, P, v->clients, n, c, a, &S, e);
        if (rc == FLC_OK)
            cache_model(s, q, round, P, S, *q->model_out, v);
    }
    free(ord), free(c);
    return rc;
}

size_t flc_query_pers_k(const flc_query_req_t *q, size_t n)
{
    size_t K = q->k ? q->k : 5;
    return K < n ? K : n;
}
