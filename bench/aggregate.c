/* bench/aggregate: how fast the aggregator merges.
 *
 * Section 1 (memory): in-memory merge throughput of every rule, in GB/s of
 * update bytes (k updates x n floats x 4 bytes per merge), side by side with
 * memcpy and cblas_saxpy over the same buffers in the same run. saxpy is the
 * baseline: a merge that folds k updates by k saxpy calls is the obvious way
 * to write FedAvg. One JSON line per case, with "gbps" and "ratio_to_saxpy".
 *
 * Section 2 (a reduce-scatter round through Redis) is appended to main()
 * later; each section is one function that prints its own lines.
 *
 * Knobs: FLCACHE_BENCH_K (updates, default 8), FLCACHE_BENCH_N (floats per
 * update, default 4M), FLCACHE_BENCH_REPS (timed repetitions, default 5; the
 * median is reported), FLCACHE_BENCH_BLAS_THREADS (OpenBLAS threads, default
 * 1: the merge kernels are single-threaded, so the baseline is too). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "aggregator/merge.h"
#include "base/clock.h"
#include "bench/bench_util.h"

#define BENCH "aggregate"

static size_t env_size(const char *name, size_t def)
{
    const char *s = getenv(name);
    long long v = s ? atoll(s) : 0;
    return v > 0 ? (size_t)v : def;
}

/* ------------------------------------------------ section 1: in memory */

/* Reproducible pseudo-random floats in [-1, 1) (xorshift). */
static void fill(float *v, size_t n, unsigned seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v[i] = (float)((double)(s >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
    }
}

typedef struct mem_ctx {
    size_t k, n;
    float **u;
    double *w;
    float *out;
    int reps;
} mem_ctx_t;

typedef int (*mem_case_fn)(mem_ctx_t *c, void *arg);

/* Median seconds of reps runs of fn after one untimed warm-up; < 0 on error. */
static double time_case(mem_ctx_t *c, mem_case_fn fn, void *arg)
{
    if (fn(c, arg))
        return -1;
    double *t = malloc((size_t)c->reps * sizeof *t);
    for (int r = 0; r < c->reps; r++) {
        double t0 = flc_now_s();
        if (fn(c, arg)) {
            free(t);
            return -1;
        }
        t[r] = flc_now_s() - t0;
    }
    double med = bench_median(t, (size_t)c->reps);
    free(t);
    return med;
}

static int case_memcpy(mem_ctx_t *c, void *arg)
{
    for (size_t j = 0; j < c->k; j++)
        memcpy(c->out, c->u[j], c->n * sizeof(float));
    return 0;
}

/* y = sum_j w_j u_j by k saxpy calls (what a plain FedAvg would do). */
static int case_saxpy(mem_ctx_t *c, void *arg)
{
    memset(c->out, 0, c->n * sizeof(float));
    for (size_t j = 0; j < c->k; j++)
        cblas_saxpy((int)c->n, (float)c->w[j], c->u[j], 1, c->out, 1);
    return 0;
}

typedef struct rule_arg {
    flc_merge_rule_t rule;
    flc_merge_state_t *st;
    flc_merge_acc_t *acc;
    int stream; /* 0 batch run, 1 one fold per update, 2 one batch fold */
} rule_arg_t;

static int case_rule(mem_ctx_t *c, void *arg)
{
    rule_arg_t *a = arg;
    flc_err_t e = {0};
    flc_merge_batch_t b = {.u = (const float *const *)c->u, .k = c->k, .n = c->n, .weight = c->w};
    int rc;
    if (a->stream == 0) {
        rc = flc_merge_run(&a->rule, a->st, &b, c->out, NULL, &e);
    } else {
        flc_merge_acc_reset(a->acc);
        rc = 0;
        if (a->stream == 1)
            for (size_t j = 0; j < c->k && rc == 0; j++)
                rc = flc_merge_acc_fold(a->acc, c->u[j], c->n, c->w[j], -1, &e);
        else
            rc = flc_merge_acc_fold_batch(a->acc, &b, &e);
        if (rc == 0)
            rc = flc_merge_acc_finish(a->acc, a->st, c->out, &e);
    }
    if (rc)
        fprintf(stderr, "aggregate: %s: %s\n", flc_merge_kind_name(a->rule.kind), flc_err_msg(&e));
    return rc;
}

static cJSON *mem_line(const mem_ctx_t *c, const char *name, double sec, double saxpy_sec,
                       int threads)
{
    double bytes = (double)c->k * (double)c->n * sizeof(float);
    cJSON *o = bench_line(BENCH, name);
    cJSON_AddStringToObject(o, "section", "memory");
    cJSON_AddNumberToObject(o, "k", (double)c->k);
    cJSON_AddNumberToObject(o, "n", (double)c->n);
    cJSON_AddNumberToObject(o, "update_bytes", bytes);
    cJSON_AddNumberToObject(o, "seconds", sec);
    cJSON_AddNumberToObject(o, "gbps", bytes / sec / 1e9);
    cJSON_AddNumberToObject(o, "saxpy_gbps", bytes / saxpy_sec / 1e9);
    cJSON_AddNumberToObject(o, "ratio_to_saxpy", saxpy_sec / sec);
    cJSON_AddNumberToObject(o, "blas_threads", threads);
    return o;
}

/* The rules measured, as specs, and how each is driven. */
static const struct {
    const char *name;
    const char *spec;
    int stream;
} mem_cases[] = {
    {"fedavg", "fedavg", 0},
    {"fedavg-stream", "fedavg", 1},
    {"fedavg-fold-batch", "fedavg", 2},
    {"mean", "mean", 0},
    {"mean-clip", "mean:clip=1", 0},
    {"mean-clip-stream", "mean:clip=1", 1},
    {"fedavgm", "fedavgm", 0},
    {"fedadam", "fedadam", 0},
    {"fedyogi", "fedyogi", 0},
    {"fedadagrad", "fedadagrad", 0},
    {"median", "median", 0},
    {"trimmed-mean", "trimmed-mean:trim=0.125", 0},
    {"krum", "krum", 0},
    {"multi-krum", "multi-krum", 0},
};

static int section_memory(void)
{
    mem_ctx_t c = {0};
    c.k = env_size("FLCACHE_BENCH_K", 8);
    c.n = env_size("FLCACHE_BENCH_N", (size_t)4 << 20);
    c.reps = bench_reps(5);
    int threads = (int)env_size("FLCACHE_BENCH_BLAS_THREADS", 1);
    openblas_set_num_threads(threads);

    c.u = calloc(c.k, sizeof *c.u);
    c.w = calloc(c.k, sizeof *c.w);
    c.out = malloc(c.n * sizeof *c.out);
    if (c.u == NULL || c.w == NULL || c.out == NULL)
        return 1;
    for (size_t j = 0; j < c.k; j++) {
        c.u[j] = malloc(c.n * sizeof(float));
        if (c.u[j] == NULL)
            return 1;
        fill(c.u[j], c.n, (unsigned)j + 1);
        c.w[j] = (double)(10 + 7 * j);
    }

    double saxpy = time_case(&c, case_saxpy, NULL);
    double copy = time_case(&c, case_memcpy, NULL);
    bench_emit(mem_line(&c, "saxpy", saxpy, saxpy, threads));
    bench_emit(mem_line(&c, "memcpy", copy, saxpy, threads));

    int fails = 0;
    for (size_t i = 0; i < sizeof mem_cases / sizeof mem_cases[0]; i++) {
        rule_arg_t a = {0};
        flc_err_t e = {0};
        if (flc_merge_rule_parse(&a.rule, mem_cases[i].spec, &e)) {
            fprintf(stderr, "aggregate: %s\n", flc_err_msg(&e));
            fails++;
            continue;
        }
        a.stream = mem_cases[i].stream;
        if (flc_merge_rule_has_state(&a.rule))
            a.st = flc_merge_state_new(&a.rule, c.n, &e);
        if (a.stream)
            a.acc = flc_merge_acc_new(&a.rule, c.n, &e);
        double sec = time_case(&c, case_rule, &a);
        if (sec < 0) {
            fails++;
        } else {
            cJSON *o = mem_line(&c, mem_cases[i].name, sec, saxpy, threads);
            cJSON_AddStringToObject(o, "rule", mem_cases[i].spec);
            cJSON_AddStringToObject(o, "mode", a.stream == 0   ? "batch"
                                               : a.stream == 1 ? "fold-each"
                                                               : "fold-batch");
            bench_emit(o);
        }
        flc_merge_acc_free(a.acc);
        flc_merge_state_free(a.st);
    }
    for (size_t j = 0; j < c.k; j++)
        free(c.u[j]);
    free(c.u);
    free(c.w);
    free(c.out);
    return fails;
}

int main(void)
{
    int fails = section_memory();
    /* section 2 (reduce-scatter round through Redis) goes here */
    return fails ? 1 : 0;
}
