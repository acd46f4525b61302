/* bench_central.c - the central aggregator of bench/queries --flstore
 * (bench_central.h). */
#include "bench/bench_central.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "aggregator/query.h"
#include "aggregator/reduce_scatter.h"
#include "bench/bench_util.h"
#include "cache/store_ops.h"

#define MAX_S 64

static void die(const char *what, const char *msg)
{
    bench_die(BENCH_CENTRAL_NAME, what, msg);
}

typedef struct pull {
    bench_central_t *c;
    uint32_t r, shard;
    uint64_t moved;
} pull_t;

/* One shard's K updates, over the central aggregator's own connection. */
static void *pull_shard(void *p)
{
    pull_t *a = p;
    const bench_central_t *c = a->c;
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(c->url, bench_store_opts(), &e);
    if (s == NULL)
        die("central connect", e.msg);
    uint64_t o, n;
    flc_rs_shard_range(c->P, c->S, a->shard, &o, &n);
    for (unsigned i = 0; i < c->K; i++) {
        flc_shard_t sh = {0};
        if (flc_store_get_update(s, c->job, a->r, a->shard, c->names[i], &sh,
                                 c->M + i * c->P + o, n) != 0)
            die("central pull", flc_store_errstr(s));
        a->moved += n * sizeof(float);
    }
    flc_store_close(s);
    return NULL;
}

/* Every update of round r (and the global model), shard by shard in
 * parallel: a central aggregator that reads all its links at once. */
static void pull_all(bench_central_t *c, uint32_t r, int with_global)
{
    c->moved = 0;
    pthread_t th[MAX_S];
    pull_t pa[MAX_S];
    for (uint32_t k = 0; k < c->S && k < MAX_S; k++) {
        pa[k] = (pull_t){c, r, k, 0};
        pthread_create(&th[k], NULL, pull_shard, &pa[k]);
    }
    if (with_global) {
        char gj[80];
        snprintf(gj, sizeof gj, "%s/g", c->job);
        flc_shard_t sh = {0};
        if (flc_store_get_merged(c->s, gj, r - 1, 0, &sh, c->g, c->P) != 0)
            die("central global", flc_store_errstr(c->s));
        c->moved += c->P * sizeof(float);
    }
    for (uint32_t k = 0; k < c->S && k < MAX_S; k++) {
        pthread_join(th[k], NULL);
        c->moved += pa[k].moved;
    }
}

/* Accuracy of g + sum_i w[i] u_i, computed centrally on the whole vector. */
static double central_acc(bench_central_t *c, const double *w, float *tmp)
{
    memcpy(tmp, c->g, c->P * sizeof *tmp);
    for (unsigned i = 0; i < c->K; i++)
        if (w[i] != 0)
            cblas_saxpy((int)c->P, (float)w[i], c->M + i * c->P, 1, tmp, 1);
    double acc = 0;
    flc_err_t e = {0};
    /* The same question as the engine's: its samples, not the whole set. */
    flc_dataset_t view = *c->ds;
    view.n = c->samples < view.n ? c->samples : view.n;
    if (flc_model_evaluate(c->m, tmp, &view, NULL, 0, &acc, NULL, &e) != 0)
        die("central evaluate", e.msg);
    return acc;
}

void bench_central_run(bench_central_t *c, const char *wl, uint32_t r, float *tmp)
{
    double G[64 * 64], w[64] = {0}, acc[64];
    int assign[64];
    double inertia;
    flc_err_t e = {0};
    const unsigned K = c->K;
    int eval = strstr(wl, "accuracy") || strcmp(wl, "personalize") == 0 ||
               strcmp(wl, "loo_contribution") == 0;
    pull_all(c, r, eval);
    if (strcmp(wl, "average") == 0) {
        memset(tmp, 0, c->P * sizeof *tmp);
        for (unsigned i = 0; i < K; i++)
            cblas_saxpy((int)c->P, 1.0f / (float)K, c->M + i * c->P, 1, tmp, 1);
    } else if (!eval) { /* the Gram kinds: the same kernel as the engine's */
        if (flc_query_gram_of_rows(c->M, K, c->P, G) != 0)
            die("central gram", "out of memory");
        if (strcmp(wl, "kmeans3") == 0 &&
            flc_query_kmeans(G, K, K, 3, 1, assign, &inertia, &e) != 0)
            die("central kmeans", e.msg);
    } else {
        /* A central aggregator is one machine: its BLAS uses every core
         * (the engine's shard workers run one thread each, side by side). */
        openblas_set_num_threads(c->cores);
        for (unsigned i = 0; i < K; i++) {
            w[i] = 1;
            acc[i] = c->acc[i] = central_acc(c, w, tmp);
            w[i] = 0;
        }
        if (strcmp(wl, "loo_contribution") == 0)
            for (unsigned i = 0; i < K; i++) {
                for (unsigned j = 0; j < K; j++)
                    w[j] = j == i ? 0 : 1.0 / (K - 1);
                (void)central_acc(c, w, tmp);
            }
        if (strcmp(wl, "personalize") == 0) {
            double sum = 0;
            for (unsigned i = 0; i < 5 && i < K; i++)
                sum += acc[i];
            for (unsigned i = 0; i < K; i++)
                w[i] = i < 5 && sum > 0 ? acc[i] / sum : 0;
            (void)central_acc(c, w, tmp);
        }
        openblas_set_num_threads(1);
    }
}
