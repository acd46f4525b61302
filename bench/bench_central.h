/* The central aggregator of bench/queries --flstore (queries_flstore.c):
 * FLStore's "cache + central aggregator" baseline. It pulls every update of
 * a round (and the global model, for the evaluation workloads) whole over
 * its own connections, one per shard in parallel, and computes there with
 * the engine's kernels (ml/model.h for the evaluations, on the samples the
 * engine evaluated, with every core). */
#ifndef FLC_BENCH_CENTRAL_H
#define FLC_BENCH_CENTRAL_H

#include <stddef.h>
#include <stdint.h>

#include "cache/store.h"
#include "ml/dataset.h"
#include "ml/model.h"

/* The name both say their errors under. */
#define BENCH_CENTRAL_NAME "bench/queries --flstore"

typedef struct bench_central {
    const char *url;   /* where it connects (the testbed's seed, or loopback TCP) */
    const char *job;   /* the round's job; its global models are job "<job>/g" */
    flc_store_t *s;    /* its own connection, at url */
    uint64_t P;        /* floats per update */
    unsigned K, S;     /* updates per round, shards */
    char (*names)[16]; /* the round's K clients */
    int cores;         /* its BLAS threads for the evaluations */
    float *M;          /* K x P, the pulled updates */
    float *g;          /* P, the pulled global model */
    flc_model_t *m;
    flc_dataset_t *ds; /* the evaluation set; its first `samples` are evaluated */
    size_t samples;    /* the engine's answer's sample count (set before a run) */
    uint64_t moved;    /* bytes the last run pulled */
    double acc[64];    /* each client's model's accuracy, from the last evaluation */
} bench_central_t;

/* Workload wl ("average", "kmeans3", "malicious5", "schedule_similarity",
 * "schedule_accuracy", "personalize", "loo_contribution") of round r; tmp
 * holds P floats. Exits the bench on an error (a baseline that fails has
 * nothing to compare). */
void bench_central_run(bench_central_t *c, const char *wl, uint32_t r, float *tmp);

#endif
