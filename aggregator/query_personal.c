/* personalize: the merged model of one cluster of clients. The clusters come
 * from the round's Gram matrix (kernel k-means, the same seeding as
 * `clusters`); the members' updates are averaged (weighted by samples) shard
 * by shard where each shard lives, and only the resulting model moves. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/query_internal.h"

int flc_query_personalize(flc_store_t *s, const flc_query_req_t *q, const flc_store_cfg_t *at,
                          Flcache__QueryAnswer **out, flc_err_t *e)
{
    uint32_t *rounds;
    size_t nr;
    int rc = flc_query_rounds(s, q, &rounds, &nr, e);
    if (rc != FLC_OK)
        return rc;
    uint32_t round = rounds[0];
    free(rounds);
    if (nr > 1) /* one model per round: which one would be a guess */
        return flc_err_set(e, FLC_EINVAL, "personalize builds one round's model: ask one round "
                           "(--round R), not %zu rounds", nr);
    unsigned K = q->k ? q->k : 2;
    if (q->cluster >= K)
        return flc_err_set(e, FLC_EINVAL, "personalize: cluster %u does not exist (K = %u: "
                           "0..%u)", q->cluster, K, K - 1);
    flc_query_gram_t g;
    rc = flc_query_gram_run(s, at, &q->place, q->job, round, q->threads, !q->no_cache,
                            q->mem_budget, &g, e);
    if (rc != FLC_OK)
        return rc;
    /* A poisoned update is neither clustered nor averaged in (and named). */
    size_t *keep = malloc((g.n + 1) * sizeof *keep);
    size_t dropped = keep ? flc_query_drop_non_finite(&g, round, keep, NULL) : 0;
    free(keep);
    size_t n = g.n, m = n + 1;
    int *assign = malloc((n + 1) * sizeof *assign);
    double inertia;
    rc = assign ? flc_query_kmeans(g.G, m, n, K, q->seed, assign, &inertia, e)
                : flc_err_set(e, FLC_ENOMEM, "out of memory");
    uint32_t *shards = NULL;
    size_t ns = 0;
    if (rc == FLC_OK && flc_store_list_shards(s, q->job, round, &shards, &ns) != FLC_OK) {
        *e = *flc_store_error(s);
        rc = e->code;
    }
    static const char *num[] = {"offset", "count", "members", "norm"};
    Flcache__QueryAnswer *a =
        rc == FLC_OK ? flc_query_answer_new(q->job, "personalize", num, 4, NULL, 0) : NULL;
    if (rc == FLC_OK && a == NULL)
        rc = flc_err_set(e, FLC_ENOMEM, "out of memory");
    if (rc == FLC_OK && dropped > 0) {
        char note[96];
        snprintf(note, sizeof note, "round %u: %zu update(s) holding NaN or Inf left out "
                 "(`outliers` names them)", round, dropped);
        flc_query_answer_note(a, "non_finite", note);
    }
    float *model = NULL;
    uint64_t model_len = 0;
    size_t members = 0;
    for (size_t i = 0; rc == FLC_OK && i < n; i++)
        members += assign[i] == (int)q->cluster;
    for (size_t k = 0; rc == FLC_OK && k < ns; k++) {
        double *acc = NULL, wsum = 0;
        flc_shard_t sh = {0};
        uint64_t off = 0, cnt = 0;
        for (size_t i = 0; rc == FLC_OK && i < n; i++) {
            if (assign[i] != (int)q->cluster)
                continue;
            int r = flc_store_get_update(s, q->job, round, shards[k], g.clients[i], &sh, NULL, 0);
            if (r == FLC_ENOTFOUND)
                continue;
            if (r != FLC_OK) {
                *e = *flc_store_error(s);
                rc = r;
                break;
            }
            if (model == NULL) {
                model_len = sh.model_size;
                model = calloc(model_len ? model_len : 1, sizeof *model);
            }
            if (acc == NULL) {
                off = sh.offset, cnt = sh.count;
                acc = calloc(cnt ? cnt : 1, sizeof *acc);
            }
            if (model == NULL || acc == NULL || sh.count != cnt || sh.offset != off ||
                sh.offset > model_len || cnt > model_len - sh.offset) {
                rc = model && acc ? flc_err_set(e, FLC_EDIM, "client %s: shard %u differs in "
                                                "size or place from the others", g.clients[i],
                                                shards[k])
                                  : flc_err_set(e, FLC_ENOMEM, "out of memory");
                flc_shard_release(&sh);
                break;
            }
            double w = sh.num_samples ? (double)sh.num_samples : 1;
            for (uint64_t x = 0; x < cnt; x++)
                acc[x] += w * sh.values[x];
            wsum += w;
            a->bytes_read += cnt * sizeof(float);
            flc_shard_release(&sh);
        }
        double nrm = 0;
        for (uint64_t x = 0; rc == FLC_OK && acc && x < cnt; x++) {
            model[off + x] = (float)(acc[x] / wsum);
            nrm += (double)model[off + x] * model[off + x];
        }
        if (rc == FLC_OK && acc) {
            double v[] = {(double)off, (double)cnt, (double)members, sqrt(nrm)};
            char key[16];
            snprintf(key, sizeof key, "shard %u", shards[k]);
            flc_query_answer_row(a, key, v, NULL);
        }
        free(acc);
    }
    if (rc == FLC_OK) {
        a->bytes_moved = g.bytes_moved + model_len * sizeof(float);
        a->bytes_read += g.bytes_read;
        if (g.nodes)
            flc_query_answer_note(a, "nodes", g.nodes);
        flc_query_answer_summary(a, "round", round);
        flc_query_answer_summary(a, "cluster", q->cluster);
        flc_query_answer_summary(a, "members", (double)members);
        flc_query_answer_summary(a, "model_size", (double)model_len);
        if (q->model_out) {
            *q->model_out = model;
            *q->model_len = model_len;
            model = NULL;
        }
        *out = a;
    } else if (a) {
        flcache__query_answer__free_unpacked(a, NULL);
    }
    free(model);
    free(shards);
    free(assign);
    flc_query_gram_free(&g);
    return rc;
}
