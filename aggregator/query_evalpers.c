/* personalize --by accuracy (query_evalq.c calls it per round): the K most
 * accurate clients of the round, weighted by their accuracy; the
 * personalized model's accuracy from the kept products, and the model
 * itself (when asked) built next to the shards, the global model's slice
 * read next to its node and each member's weighted slice added there, so
 * one model moves, not K + 1. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/query_evalwork.h"
#include "aggregator/query_evalres.h"
#include "aggregator/query_internal.h"

/* global + sum_i c[i] u_i into *q->model_out, the members' weighted slices
 * summed next to the shards (query_evalwork.c): one model moves, not K.
 * The global model is read next to its node too (model mode on its
 * series, coefficient 1: 0 + g is g), before the members are added in. */
static int personal_model(flc_store_t *s, const flc_query_req_t *q, const flc_store_cfg_t *at,
                          uint32_t round, uint64_t P, char **clients, size_t n, const double *c,
                          Flcache__QueryAnswer *a, flc_err_t *e)
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
    if (rc == FLC_OK && q->model_out) /* global + sum c_i u_i, next to the shards */
        rc = personal_model(s, q, at, round, P, v->clients, n, c, a, e);
    free(ord), free(c);
    return rc;
}

size_t flc_query_pers_k(const flc_query_req_t *q, size_t n)
{
    size_t K = q->k ? q->k : 5;
    return K < n ? K : n;
}
