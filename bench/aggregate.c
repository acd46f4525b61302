/* bench/aggregate: how fast the aggregator merges.
 *
 * Section 1 (memory): in-memory merge throughput of every rule, in GB/s of
 * update bytes (k updates x n floats x 4 bytes per merge), side by side with
 * memcpy and cblas_saxpy over the same buffers in the same run. saxpy is the
 * baseline: a merge that folds k updates by k saxpy calls is the obvious way
 * to write FedAvg. One JSON line per case, with "gbps" and "ratio_to_saxpy";
 * each case's saxpy is timed beside it, one saxpy run before each of its
 * runs ("saxpy_gbps" on its line), so a ratio holds on a shared machine.
 *
 * Section 2 (round): one whole round through a private redis-server: W
 * contributors (default 8) push a model of N2 floats (default 6.5M, 26 MB),
 * the mergers merge, every contributor reads the merged model back. Done
 * with reduce-scatter (S = W mergers) and AllReduce-to-one (S = 1), side by
 * side with raw Redis moving the same bytes once in and once out (each
 * contributor SETs its update as pipelined chunks and GETs as many back).
 * "ratio_to_raw" = round time / raw time (goal: within 1.5x). The fair
 * baseline is "raw_same_bytes": raw pipelined Redis moving the protocol's
 * own (3W+1) x M bytes in its phases ("ratio_to_same_bytes" on the
 * reduce_scatter and allreduce_one lines; issue 14 goal: <= 1.15 at W = 8
 * and 16). Contributors and
 * mergers are threads with their own connections, standing in for functions.
 * Knobs: FLCACHE_BENCH_W, FLCACHE_BENCH_N2. `--memory` or `--round` runs one
 * section only.
 *
 * `--large` (only when asked: issue 14 goal 4, bench_large.c): 6 clients x
 * 1 GiB updates over 8 shards, clients and mergers as processes, one line
 * per rule family with update_gbps, ratio_to_same_bytes and every merger's
 * peak RSS; FLCACHE_BENCH_LARGE_MB makes it small.
 *
 * Knobs: FLCACHE_BENCH_K (updates, default 8), FLCACHE_BENCH_N (floats per
 * update, default 4M), FLCACHE_BENCH_REPS (timed repetitions, default 5; the
 * median is reported), FLCACHE_BENCH_BLAS_THREADS (OpenBLAS threads, default
 * 1: the merge kernels are single-threaded, so the baseline is too),
 * FLCACHE_BENCH_CASES (comma-separated case names of the memory section,
 * e.g. "fedavg-stream,median": only those, beside saxpy and memcpy, which
 * always run so that every ratio has its baseline from the same run). */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "aggregator/merge.h"
#include "aggregator/reduce_scatter.h"
#include "cache/embed.h"
#include "cache/shard_codec.h"
#include "cache/store_ops.h"
#include "cache/store_raw.h"
#include "base/clock.h"
#include "bench/bench_large.h"
#include "bench/bench_round.h"
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

/* Every update searched for a NaN or Inf, as each push and merger does
 * (flc_find_nonfinite): a read-only pass, bound by memcpy's read half. */
static int case_scan(mem_ctx_t *c, void *arg)
{
    (void)arg;
    int found = 0;
    for (size_t j = 0; j < c->k; j++)
        found |= flc_find_nonfinite(c->u[j], c->n) >= 0;
    return found ? -1 : 0; /* the updates are finite: found would be a bug */
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

/* Median seconds of fn and of saxpy over reps runs, each run of fn right
 * after one of saxpy: on a shared machine the load changes within seconds,
 * and a ratio to a saxpy timed once at the start measured the load as much
 * as the kernel. *saxpy_sec gets saxpy's median; < 0 on error. */
static double time_beside_saxpy(mem_ctx_t *c, mem_case_fn fn, void *arg, double *saxpy_sec)
{
    if (fn(c, arg))
        return -1;
    double *t = malloc(2 * (size_t)c->reps * sizeof *t), *ts = t + c->reps;
    for (int r = 0; r < c->reps; r++) {
        double t0 = flc_now_s();
        case_saxpy(c, NULL);
        double t1 = flc_now_s();
        if (fn(c, arg)) {
            free(t);
            return -1;
        }
        t[r] = flc_now_s() - t1;
        ts[r] = t1 - t0;
    }
    double med = bench_median(t, (size_t)c->reps);
    *saxpy_sec = bench_median(ts, (size_t)c->reps);
    free(t);
    return med;
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
    const char *wanted = getenv("FLCACHE_BENCH_CASES");
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
    if (bench_case_wanted(wanted, "nonfinite-scan")) {
        double scan = time_case(&c, case_scan, NULL);
        if (scan > 0) {
            cJSON *o = mem_line(&c, "nonfinite-scan", scan, saxpy, threads);
            cJSON_AddNumberToObject(o, "ratio_to_memcpy", copy / scan);
            bench_emit(o);
        } else {
            fprintf(stderr, "aggregate: nonfinite-scan found a NaN in finite updates\n");
        }
    }

    int fails = 0;
    for (size_t i = 0; i < sizeof mem_cases / sizeof mem_cases[0]; i++) {
        if (!bench_case_wanted(wanted, mem_cases[i].name))
            continue;
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
        double beside = saxpy;
        double sec = time_beside_saxpy(&c, case_rule, &a, &beside);
        if (sec < 0) {
            fails++;
        } else {
            cJSON *o = mem_line(&c, mem_cases[i].name, sec, beside, threads);
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

/* ------------------------------------- section 2: a round through Redis */

/* The same bytes as the round's pushes and reads, moved by raw Redis:
 * contributor i SETs its update as chunk-sized pipelined values and GETs
 * them back (what redis-benchmark -P measures), W at once. */
static void *raw_contributor(void *p)
{
    bench_round_arg_t *a = p;
    bench_round_t *c = a->c;
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(c->url, bench_store_opts(), &e);
    size_t bytes = c->n * sizeof(float), chunk = FLC_STORE_CHUNK_DEFAULT;
    size_t nk = (bytes + chunk - 1) / chunk;
    const char *buf = (const char *)c->u[a->i];
    char *dst = (char *)c->model[a->i];
    for (int pass = 0; pass < 2 && s != NULL; pass++) {
        for (size_t k = 0; k < nk; k++) {
            char key[64];
            snprintf(key, sizeof key, "raw:%u:%u:%zu", c->round, a->i, k);
            size_t len = bytes - k * chunk < chunk ? bytes - k * chunk : chunk;
            redisReply *r;
            /* one command per call keeps this simple; the chunks are big
             * enough that the round trip is a small part of each */
            const char *argv[] = {pass == 0 ? "SET" : "GET", key, buf + k * chunk};
            size_t lens[] = {3, strlen(key), len};
            if (flc_store_command(s, &r, pass == 0 ? 3 : 2, argv, lens) != 0) {
                c->failed = 1;
                break;
            }
            if (pass == 1 && r->type == REDIS_REPLY_STRING)
                memcpy(dst + k * chunk, r->str, (size_t)r->len);
            freeReplyObject(r);
        }
    }
    flc_store_close(s);
    return NULL;
}

/* The same bytes as today's protocol, (3W+1) x M, moved by raw pipelined
 * Redis (issue 14 goal 2): contributor i SETs its update (W x M in all);
 * then, as merger i, GETs the i-th W-th of every update (W x M) and SETs a
 * W-th of a model (M); then GETs the whole model (W x M). Phases are
 * separated by barriers, as the protocol's are by its data dependencies.
 * Each phase pipelines BENCH_RAW_BATCH chunk commands per round trip
 * (bench_raw_chunks). This
 * baseline stays fixed even if the protocol later moves fewer bytes. */
static pthread_barrier_t raw_barrier;

static void *raw_same_bytes_contributor(void *p)
{
    bench_round_arg_t *a = p;
    bench_round_t *c = a->c;
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(c->url, bench_store_opts(), &e);
    size_t bytes = c->n * sizeof(float), chunk = FLC_STORE_CHUNK_DEFAULT;
    size_t nk = (bytes + chunk - 1) / chunk;
    size_t lo = nk * a->i / c->W, hi = nk * (a->i + 1) / c->W; /* this merger's chunks */
    char prefix[64], *scratch = malloc(bytes);
    int rc = s != NULL && scratch != NULL ? 0 : -1;
    snprintf(prefix, sizeof prefix, "same:%u:u%u", c->round, a->i);
    if (rc == 0) /* W pushes */
        rc = bench_raw_chunks(s, "SET", prefix, 0, nk, bytes, (const char *)c->u[a->i], NULL);
    pthread_barrier_wait(&raw_barrier);
    for (uint32_t j = 0; rc == 0 && j < c->W; j++) { /* W merger reads of a W-th each */
        snprintf(prefix, sizeof prefix, "same:%u:u%u", c->round, j);
        rc = bench_raw_chunks(s, "GET", prefix, lo, hi, bytes, NULL, scratch);
    }
    snprintf(prefix, sizeof prefix, "same:%u:m", c->round);
    if (rc == 0) /* one merged write, a W-th per merger */
        rc = bench_raw_chunks(s, "SET", prefix, lo, hi, bytes, scratch, NULL);
    pthread_barrier_wait(&raw_barrier);
    if (rc == 0) /* W reads of the model */
        rc = bench_raw_chunks(s, "GET", prefix, 0, nk, bytes, NULL, (char *)c->model[a->i]);
    if (rc != 0)
        c->failed = 1;
    free(scratch);
    flc_store_close(s);
    return NULL;
}

static int section_round(void)
{
    uint32_t W = (uint32_t)env_size("FLCACHE_BENCH_W", 8);
    uint64_t n = env_size("FLCACHE_BENCH_N2", 6500000);
    int reps = bench_reps(3);
    if (W == 0 || W > 32)
        W = 8;
    flc_err_t e = {0};
    flc_embed_opts_t eo = {.tcp_port = -1};
    flc_embed_t *srv = flc_embed_start(&eo, &e);
    if (srv == NULL) {
        fprintf(stderr, "aggregate: %s\n", flc_err_msg(&e));
        return 1;
    }
    bench_round_t c = {.tag = "aggregate", .url = flc_embed_url(srv), .W = W, .n = n};
    c.u = calloc(W, sizeof *c.u);
    c.model = calloc(W, sizeof *c.model);
    c.names = calloc(W, sizeof *c.names);
    char (*names)[16] = calloc(W, sizeof *names);
    for (uint32_t i = 0; i < W; i++) {
        c.u[i] = malloc(n * sizeof(float));
        c.model[i] = malloc(n * sizeof(float));
        fill(c.u[i], n, 50 + i);
        memset(c.model[i], 0, n * sizeof(float));
        snprintf(names[i], sizeof names[i], "c%u", i);
        c.names[i] = names[i];
    }
    flc_store_t *admin = flc_store_open(c.url, bench_store_opts(), &e);
    double *t_raw = calloc((size_t)reps, sizeof(double));
    double *t_same = calloc((size_t)reps, sizeof(double));
    double *t_rs = calloc((size_t)reps, sizeof(double));
    double *t_one = calloc((size_t)reps, sizeof(double));
    for (int r = 0; r < reps && !c.failed; r++) {
        c.round = (uint32_t)r;
        t_raw[r] = bench_round_run(&c, 0, raw_contributor);
        redisReply *rep;
        if (flc_store_commandf(admin, &rep, "FLUSHDB") == 0)
            freeReplyObject(rep);
        pthread_barrier_init(&raw_barrier, NULL, W);
        t_same[r] = bench_round_run(&c, 0, raw_same_bytes_contributor);
        pthread_barrier_destroy(&raw_barrier);
        if (flc_store_commandf(admin, &rep, "FLUSHDB") == 0)
            freeReplyObject(rep);
        c.S = W;
        c.round = (uint32_t)(2 * r + 1000);
        t_rs[r] = bench_round_run(&c, 1, NULL);
        /* The whole job, its shard count with it: key schema 2 fixes a
         * job's S, and allreduce-to-one runs the same job with S = 1. */
        flc_store_forget_job(admin, "bench");
        c.S = 1;
        c.round = (uint32_t)(2 * r + 1001);
        t_one[r] = bench_round_run(&c, 1, NULL);
        flc_store_forget_job(admin, "bench");
    }
    /* The models read back must be the weighted average: spot-check one. */
    double num = 0, den = 0;
    for (uint32_t i = 0; i < W; i++)
        num += (double)(1 + i) * c.u[i][n / 2], den += 1 + i;
    int right = !c.failed && (float)(num / den) == c.model[W - 1][n / 2];
    double raw = bench_median(t_raw, (size_t)reps);
    double same = bench_median(t_same, (size_t)reps);
    double mb = (double)n * sizeof(float) / 1e6;
    const char *names2[] = {"raw_set_get", "reduce_scatter", "allreduce_one", "raw_same_bytes"};
    double *times[] = {t_raw, t_rs, t_one, t_same};
    for (int k = 0; k < 4 && !c.failed; k++) {
        double t = bench_median(times[k], (size_t)reps);
        cJSON *o = bench_line(BENCH, names2[k]);
        cJSON_AddStringToObject(o, "section", "round");
        cJSON_AddNumberToObject(o, "workers", W);
        cJSON_AddNumberToObject(o, "shards", k == 1 || k == 3 ? W : 1);
        cJSON_AddNumberToObject(o, "model_mb", mb);
        cJSON_AddNumberToObject(o, "reps", reps);
        cJSON_AddNumberToObject(o, "round_ms", t * 1e3);
        cJSON_AddNumberToObject(o, "ratio_to_raw", t / raw);
        /* the fair baseline: raw Redis moving the protocol's own bytes */
        if (k == 1 || k == 2)
            cJSON_AddNumberToObject(o, "ratio_to_same_bytes", t / same);
        cJSON_AddNumberToObject(o, "bytes_moved_mb", k == 0 ? 2 * W * mb : (3 * W + 1) * mb);
        if (k == 1 || k == 2)
            cJSON_AddBoolToObject(o, "result_checked", right);
        bench_emit(o);
    }
    flc_store_close(admin);
    for (uint32_t i = 0; i < W; i++)
        free(c.u[i]), free(c.model[i]);
    free(c.u), free(c.model), free(c.names), free(names);
    free(t_raw), free(t_same), free(t_rs), free(t_one);
    flc_embed_stop(srv);
    return c.failed || !right;
}

int main(int argc, char **argv)
{
    bench_config();
    signal(SIGPIPE, SIG_IGN);
    if (argc > 1 && strcmp(argv[1], "--large") == 0) /* not by default: 6 GiB of updates */
        return bench_large_run() ? 1 : 0;
    int only_mem = argc > 1 && strcmp(argv[1], "--memory") == 0;
    int only_round = argc > 1 && strcmp(argv[1], "--round") == 0;
    int fails = only_round ? 0 : section_memory();
    if (!only_mem)
        fails += section_round();
    return fails ? 1 : 0;
}
