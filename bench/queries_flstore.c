/* bench/queries --flstore (this binary, queries_flstore, which
 * `bench/queries --flstore` runs): FLStore's own setting and workloads
 * (issue 17 point 6). 250 clients, 10 per round, an MLP of --hidden 14000
 * (11.1 M parameters, 44.5 MB per update, ResNet18-sized), 20 rounds
 * stored; for the last round, FLStore's workloads are answered
 *   next_to_data_cold  by the query engine, its shard workers next to the
 *                      shards' nodes, partials recomputed (--no-cache),
 *   next_to_data_warm  the same with the cached partials (Gram partials;
 *                      the evaluated numbers and evaluation sums of
 *                      query_evalres.h and query_evalcache.h, filled by
 *                      one untimed query) or, for average, the merged
 *                      aggregate,
 *   cache_central      by a central aggregator that pulls every update of
 *                      the round (and the global model) shard by shard in
 *                      parallel, one connection per shard, and computes
 *                      there with the same kernels (ml/model.h for the
 *                      evaluations: on the samples the engine evaluated,
 *                      its answer's "samples", with every core).
 * One JSON line per (workload, system): p50_ms, ratio_to_central, bytes
 * moved, the machine's busy CPU per request (cpu_s, and cpu_floor_ms: that
 * spread over every core, the shortest the same work could take on this
 * one machine), and cost two ways: FLStore's (time x hourly price: 0.922 $/h for
 * the aggregator VM, 0.11988 $/h for a ~2 GB function, one function per
 * shard worker) in "usd", and flcache's GB-s price of the same functions in
 * "usd_gbs". Updates are synthetic (the evaluation set is synthetic too:
 * the timings are real, the accuracies meaningless).
 *
 * Usage: queries_flstore [--url URL] [--hidden H] [--rounds R] [--clients N]
 *                        [--per-round K] [--shards S]
 * Without --url it starts a private redis-server and both sides run on this
 * machine (unix socket against loopback TCP). With --url (a Redis Cluster:
 * scripts/bench-flstore.sh runs it on the testbed, in the client namespace,
 * the node links at 1 Gbit/s) the central aggregator reads across the node
 * links and, with FLCACHE_NODES set (`scripts/testbed.sh env`), every
 * next-to-data worker enters its shard's node namespace first (cli/place.h).
 * Knobs: FLCACHE_BENCH_REPS (requests per workload, default 3),
 * FLCACHE_BENCH_CASES (comma-separated workloads to run; default all). */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>

#include "aggregator/query.h"
#include "aggregator/reduce_scatter.h"
#include "base/bigbuf.h"
#include "base/clock.h"
#include "bench/bench_central.h"
#include "bench/bench_util.h"
#include "cache/embed.h"
#include "cache/store_ops.h"
#include "cli/place.h"
#include "ml/dataset.h"
#include "ml/model.h"

#define BENCH "queries"
#define EVAL_N 1000
#define MAX_S 64
#define USD_VM_H 0.922      /* FLStore's aggregator VM, $/h */
#define USD_FN_H 0.11988    /* FLStore's ~2 GB function, $/h */
#define USD_GBS 0.0000166667

static size_t g_hidden = 14000, g_P;
static int g_cores = 1; /* online CPUs: the central aggregator's BLAS threads */
static unsigned g_rounds = 20, g_clients = 250, g_k = 10;
static unsigned S = 6; /* 2 per master on 3: the testbed's nodes hold equal shares */
static const char *g_url, *g_central_url; /* the engine's; the central aggregator's */
static flc_place_t g_place;              /* enter set: workers next to the nodes */
static uint64_t g_read;                  /* bytes the last engine query read */
static size_t g_samples;                 /* samples the last evaluation query used */
static double g_acc[64];                 /* schedule_accuracy's answer per client, or NAN */
static int g_checked = -1;               /* the engine's accuracies equal central's: 1, 0, -1 n/a */
static double g_acc_diff;                /* their largest difference */
static char g_names[64][16];

static void die(const char *what, const char *msg)
{
    bench_die(BENCH_CENTRAL_NAME, what, msg);
}

static void fill(float *v, uint64_t n, unsigned seed, float scale)
{
    uint64_t x = 0x9e3779b97f4a7c15ull * (seed + 1);
    for (uint64_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        v[i] = scale * (float)((double)(x >> 11) / 4503599627370496.0 - 1.0);
    }
}

typedef struct marg {
    uint32_t round, shard;
    const char **exp;
} marg_t;

static void *merger(void *p)
{
    marg_t *a = p;
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(g_url, bench_store_opts(), &e);
    flc_rs_merger_cfg_t c = {.job = "fls", .round = a->round, .shard = a->shard, .num_shards = S,
                             .model_size = g_P, .expected = a->exp, .n_expected = g_k,
                             .deadline_ms = 600000, .readers = 1};
    flc_merge_rule_init(&c.rule, "fedavg", NULL);
    flc_rs_report_t rep;
    if (s == NULL || flc_rs_merger_run(s, &c, &rep, &e) != 0)
        die("merger", e.msg);
    flc_rs_report_free(&rep);
    flc_store_close(s);
    return NULL;
}

/* Round r's K clients (rotating through the N), their updates, the merge,
 * and the global model of round r-1 they started from. */
static void store_round(flc_store_t *st, uint32_t r, float *u, float *g)
{
    const char *exp[64];
    for (unsigned i = 0; i < g_k; i++) {
        snprintf(g_names[i], sizeof g_names[i], "c%03u", ((r - 1) * g_k + i) % g_clients);
        exp[i] = g_names[i];
    }
    flc_shard_t gs = {.round = r - 1, .num_shards = 1, .count = g_P, .model_size = g_P,
                      .values = g};
    snprintf(gs.job, sizeof gs.job, "fls/g");
    /* Only the model the measured (last) round started from: 20 global
     * models would add 0.9 GB at --hidden 14000 and no workload reads them. */
    if (r == g_rounds && flc_store_put_merged(st, &gs) != 0)
        die("global model", flc_store_errstr(st));
    pthread_t th[MAX_S];
    marg_t ma[MAX_S];
    for (uint32_t k = 0; k < S; k++) {
        ma[k] = (marg_t){r, k, exp};
        pthread_create(&th[k], NULL, merger, &ma[k]);
    }
    flc_err_t e = {0};
    for (unsigned i = 0; i < g_k; i++) {
        fill(u, g_P, 1000 * r + i, i % 5 == 4 ? -0.02f : 0.01f); /* 20% sign-flipped */
        flc_rs_push_cfg_t pc = {.job = "fls", .round = r, .client = g_names[i],
                                .num_shards = S, .model_size = g_P, .num_samples = 50 + i};
        if (flc_rs_push(st, &pc, u, &e) != 0)
            die("push", e.msg);
    }
    for (uint32_t k = 0; k < S; k++)
        pthread_join(th[k], NULL);
}

/* ---- next to the data ------------------------------------------------------ */

typedef struct avg {
    uint32_t r, shard;
    int warm;
    float *acc; /* the mean model: this shard's range */
} avg_t;

/* average next to shard k's node: cold, the mean of its K updates; warm,
 * its merged shard. Only the shard's mean leaves the node. */
static void *avg_shard(void *p)
{
    avg_t *a = p;
    flc_err_t e = {0};
    flc_store_opts_t opts = *bench_store_opts();
    flc_store_t *s = flc_store_open(g_url, &opts, &e);
    flc_store_node_t nd;
    if (s != NULL && g_place.enter != NULL &&
        flc_store_shard_node(s, "fls", a->r, a->shard, &nd) == 0) { /* go next to it */
        flc_store_close(s);
        s = NULL;
        if (g_place.enter(g_place.user, nd.addr, &opts, &e) == 0)
            s = flc_store_open(g_url, &opts, &e);
    }
    if (s == NULL)
        die("average", e.msg);
    uint64_t o, n;
    flc_rs_shard_range(g_P, S, a->shard, &o, &n);
    flc_shard_t sh = {0};
    if (a->warm) {
        if (flc_store_get_merged(s, "fls", a->r, a->shard, &sh, a->acc + o, n) != 0)
            die("merged", flc_store_errstr(s));
    } else {
        /* populated at once (base/bigbuf.h), as the engine's buffers are */
        float *buf = flc_buf_alloc(n * sizeof *buf);
        for (unsigned i = 0; buf && i < g_k; i++) {
            if (flc_store_get_update(s, "fls", a->r, a->shard, g_names[i], &sh, buf, n) != 0)
                die("update", flc_store_errstr(s));
            cblas_saxpy((int)n, 1.0f / (float)g_k, buf, 1, a->acc + o, 1);
        }
        flc_buf_free(buf, n * sizeof *buf);
    }
    flc_store_close(s);
    return NULL;
}

static uint64_t engine_run(flc_store_t *s, const char *wl, uint32_t r, int warm)
{
    flc_query_req_t q = {.job = "fls", .round_from = r, .round_to = r, .seed = 1,
                         .url = g_url, .no_cache = !warm, .threads = g_place.enter ? 0 : 2,
                         .store_opts = bench_store_opts(), .k = 5, .place = g_place};
    float *model = NULL;
    uint64_t mlen = 0;
    if (strcmp(wl, "average") == 0) { /* a thread per shard, next to its node */
        float *acc = flc_buf_alloc(g_P * sizeof *acc);
        if (acc == NULL)
            die("average", "out of memory");
        pthread_t th[MAX_S];
        avg_t aa[MAX_S];
        for (uint32_t k = 0; k < S; k++) {
            aa[k] = (avg_t){r, k, warm, acc};
            pthread_create(&th[k], NULL, avg_shard, &aa[k]);
        }
        for (uint32_t k = 0; k < S; k++)
            pthread_join(th[k], NULL);
        flc_buf_free(acc, g_P * sizeof *acc);
        return g_P * sizeof(float);
    }
    if (strcmp(wl, "kmeans3") == 0)
        q.kind = FLC_Q_CLUSTERS, q.k = 3;
    else if (strcmp(wl, "malicious5") == 0)
        q.kind = FLC_Q_OUTLIERS;
    else if (strcmp(wl, "schedule_similarity") == 0)
        q.kind = FLC_Q_NORMS;
    else if (strcmp(wl, "schedule_accuracy") == 0)
        q.kind = FLC_Q_SCHEDULE, q.by_accuracy = 1;
    else if (strcmp(wl, "personalize") == 0)
        q.kind = FLC_Q_PERSONALIZE, q.by_accuracy = 1, q.model_out = &model,
        q.model_len = &mlen;
    else
        q.kind = FLC_Q_CONTRIBUTION, q.by_accuracy = 1;
    Flcache__QueryAnswer *a = NULL;
    flc_err_t e = {0};
    if (flc_query_run(s, &q, &a, &e) != 0)
        die(wl, e.msg);
    uint64_t moved = a->bytes_moved;
    g_read = a->bytes_read;
    for (size_t i = 0; i < a->n_summary; i++)
        if (strcmp(a->summary[i]->key, "samples") == 0)
            g_samples = (size_t)a->summary[i]->value;
    if (q.kind == FLC_Q_SCHEDULE) /* rows: client, then rank, accuracy, rounds */
        for (size_t i = 0; i < a->n_rows; i++)
            for (unsigned j = 0; j < g_k; j++)
                if (strcmp(a->rows[i]->key, g_names[j]) == 0 && a->rows[i]->n_values > 1)
                    g_acc[j] = a->rows[i]->values[1];
    flcache__query_answer__free_unpacked(a, NULL);
    free(model);
    return moved;
}

/* cpu_s: the machine's busy CPU seconds per request. On this one machine
 * the testbed's nodes, the shard workers and the caller share g_cores
 * cores, so cpu_s / cores is the shortest the request could take here
 * doing the same work ("cpu_floor_ms"; "floor_ratio_to_central" is that
 * over central's p50: the ratio a perfectly overlapped run would reach). */
static void emit(const char *wl, const char *system, double *ms, int n, double central_p50,
                 uint64_t moved, uint64_t read, int functions, double cpu_s)
{
    double p50 = bench_percentile(ms, (size_t)n, 50);
    cJSON *o = bench_line(BENCH, wl);
    cJSON_AddStringToObject(o, "system", system);
    cJSON_AddStringToObject(o, "setting", "flstore");
    cJSON_AddNumberToObject(o, "model_mb", (double)g_P * 4 / 1e6);
    cJSON_AddNumberToObject(o, "clients", g_clients);
    cJSON_AddNumberToObject(o, "per_round", g_k);
    cJSON_AddNumberToObject(o, "rounds_stored", g_rounds);
    cJSON_AddNumberToObject(o, "shards", S);
    cJSON_AddBoolToObject(o, "cluster", g_url != NULL && strncmp(g_url, "unix:", 5) != 0);
    cJSON_AddBoolToObject(o, "placed", g_place.enter != NULL &&
                                           strcmp(system, "cache_central") != 0);
    cJSON_AddNumberToObject(o, "requests", n);
    cJSON_AddNumberToObject(o, "p50_ms", p50);
    cJSON_AddNumberToObject(o, "ratio_to_central", central_p50 > 0 ? p50 / central_p50 : NAN);
    double floor_ms = cpu_s / g_cores * 1e3;
    cJSON_AddNumberToObject(o, "cpu_s", cpu_s);
    cJSON_AddNumberToObject(o, "cores", g_cores);
    cJSON_AddNumberToObject(o, "cpu_floor_ms", floor_ms);
    cJSON_AddNumberToObject(o, "floor_ratio_to_central",
                            central_p50 > 0 ? floor_ms / central_p50 : NAN);
    cJSON_AddNumberToObject(o, "bytes_moved", (double)moved);
    cJSON_AddNumberToObject(o, "bytes_read", (double)read); /* next to the data */
    if (g_samples) /* an evaluation: both sides evaluate these samples */
        cJSON_AddNumberToObject(o, "samples", (double)g_samples);
    if (g_checked >= 0) {
        cJSON_AddBoolToObject(o, "result_checked", g_checked);
        cJSON_AddNumberToObject(o, "max_accuracy_diff", g_acc_diff);
    }
    double h = p50 / 3.6e6;
    cJSON_AddNumberToObject(o, "usd", functions ? h * USD_FN_H * functions : h * USD_VM_H);
    cJSON_AddNumberToObject(o, "usd_gbs", p50 / 1e3 * 2.0 * (functions ? functions : 1) *
                                              USD_GBS);
    bench_emit(o);
}

int main(int argc, char **argv)
{
    bench_config();
    int i0 = argc > 1 && strcmp(argv[1], "--flstore") == 0 ? 2 : 1;
    const char *url = NULL;
    for (int i = i0; i < argc; i += 2) {
        long v = i + 1 < argc ? atol(argv[i + 1]) : 0;
        if (strcmp(argv[i], "--url") == 0 && i + 1 < argc)
            url = argv[i + 1];
        else if (strcmp(argv[i], "--shards") == 0 && v > 0 && v <= MAX_S)
            S = (unsigned)v;
        else if (strcmp(argv[i], "--hidden") == 0 && v > 0)
            g_hidden = (size_t)v;
        else if (strcmp(argv[i], "--rounds") == 0 && v > 0)
            g_rounds = (unsigned)v;
        else if (strcmp(argv[i], "--clients") == 0 && v > 0)
            g_clients = (unsigned)v;
        else if (strcmp(argv[i], "--per-round") == 0 && v >= 4 && v <= 64)
            g_k = (unsigned)v;
        else
            die("usage", "queries_flstore [--url URL] [--hidden H] [--rounds R] [--clients N] "
                "[--per-round K (4..64)] [--shards S (1..64)]");
    }
    int reps = bench_reps(3);
    reps = reps > 16 ? 16 : reps;
    openblas_set_num_threads(1);
    long nc = sysconf(_SC_NPROCESSORS_ONLN);
    g_cores = nc > 0 ? (int)nc : 1;
    flc_err_t e = {0};
    flc_model_desc_t d;
    flc_model_t *m = NULL;
    flc_dataset_t *ds = NULL;
    if (flc_model_desc_init(&d, "mlp", 784, g_hidden, 10, &e) != 0 ||
        flc_model_new(&d, 250, &m, &e) != 0 || flc_data_new(EVAL_N, 784, 10, &ds, &e) != 0)
        die("model", e.msg);
    g_P = m->nparams;
    fill(ds->x, (uint64_t)EVAL_N * 784, 7, 1.0f);
    for (size_t i = 0; i < EVAL_N; i++)
        ds->y[i] = (int32_t)(i % 10);
    flc_embed_t *srv = NULL;
    flc_cli_nodes_t *map = NULL;
    if (url == NULL) { /* a private server: engine on its socket, central over TCP */
        flc_embed_opts_t eo = {.tcp_port = -1};
        if ((srv = flc_embed_start(&eo, &e)) == NULL)
            die("redis-server", e.msg);
        g_url = flc_embed_url(srv);
        g_central_url = flc_embed_tcp_url(srv);
    } else { /* a cluster: everyone at its seed; workers placed by the node map */
        g_url = g_central_url = url;
        if (flc_cli_nodes_parse(getenv("FLCACHE_NODES"), &map, &e) != 0)
            die("FLCACHE_NODES", e.msg);
        g_place = flc_cli_place(map);
    }
    flc_store_t *su = flc_store_open(g_url, bench_store_opts(), &e);
    if (url != NULL && su != NULL) /* the redacted URL: no password in the log */
        fprintf(stderr, "bench/queries --flstore: %s, next-to-data workers %s\n",
                flc_store_url(su), map ? "placed on the nodes (FLCACHE_NODES)"
                                       : "NOT placed (no FLCACHE_NODES)");
    flc_store_t *stcp = su ? flc_store_open(g_central_url, bench_store_opts(), &e) : NULL;
    float *u = malloc(g_P * sizeof *u), *g = malloc(g_P * sizeof *g);
    float *tmp = malloc(g_P * sizeof *tmp);
    bench_central_t c = {.url = g_central_url, .job = "fls", .s = stcp, .P = g_P, .K = g_k,
                         .S = S, .names = g_names, .cores = g_cores,
                         .M = malloc((size_t)g_k * g_P * sizeof(float)),
                         .g = malloc(g_P * sizeof(float)), .m = m, .ds = ds};
    if (!su || !stcp || !u || !g || !tmp || !c.M || !c.g)
        die("setup", e.msg[0] ? e.msg : "out of memory");
    flc_query_evalset_t es = {.kind = FLC_QUERY_MODEL_MLP, .in = 784, .hidden = g_hidden,
                              .out = 10, .n = EVAL_N, .x = ds->x, .y = ds->y};
    if (flc_query_evalset_put(su, "fls", &es, &e) != 0)
        die("eval set", e.msg);
    fprintf(stderr, "bench/queries --flstore: storing %u rounds of %u updates of %.1f MB...\n",
            g_rounds, g_k, (double)g_P * 4 / 1e6);
    flc_model_init_params(m, g, 1);
    for (uint32_t r = 1; r <= g_rounds; r++)
        store_round(su, r, u, g);
    static const char *wls[] = {"average", "kmeans3", "malicious5", "schedule_similarity",
                                "schedule_accuracy", "personalize", "loo_contribution"};
    const char *wanted = getenv("FLCACHE_BENCH_CASES"); /* e.g. "average,personalize" */
    for (size_t w = 0; w < sizeof wls / sizeof *wls; w++) {
        if (!bench_case_wanted(wanted, wls[w]))
            continue;
        double cold[16], warm[16], cen[16], cpu[3] = {0}, b0, b1, a0, a1;
        uint64_t mc = 0, mw = 0, rc = 0, rw = 0;
        g_samples = 0, g_checked = -1, g_acc_diff = 0;
        for (unsigned i = 0; i < 64; i++)
            g_acc[i] = c.acc[i] = NAN;
        engine_run(su, wls[w], g_rounds, 1); /* untimed: fills the caches warm reads */
        for (int r = 0; r < reps; r++) {
            /* cpu[]: the machine's busy CPU seconds (every process: the
             * bench, the testbed's redis-servers) per request */
            bench_cpu_times(&b0, &a0);
            uint64_t t0 = flc_now_ns();
            g_read = 0;
            mc = engine_run(su, wls[w], g_rounds, 0);
            rc = g_read;
            cold[r] = (double)(flc_now_ns() - t0) / 1e6;
            bench_cpu_times(&b1, &a1);
            cpu[0] += (b1 - b0) / reps;
            t0 = flc_now_ns();
            g_read = 0;
            mw = engine_run(su, wls[w], g_rounds, 1);
            rw = g_read;
            warm[r] = (double)(flc_now_ns() - t0) / 1e6;
            bench_cpu_times(&b0, &a0);
            cpu[1] += (b0 - b1) / reps;
            t0 = flc_now_ns();
            c.samples = g_samples;
            bench_central_run(&c, wls[w], g_rounds, tmp);
            cen[r] = (double)(flc_now_ns() - t0) / 1e6;
            bench_cpu_times(&b1, &a1);
            cpu[2] += (b1 - b0) / reps;
        }
        /* The top clients' accuracies as the engine gave them, against the
         * central aggregator's forward passes of the same models on the
         * same samples: equal but for the float sums' order, which may
         * move a sample across an argmax tie (allowed: 2 samples). */
        for (unsigned i = 0; i < g_k; i++)
            if (!isnan(g_acc[i])) {
                double d = fabs(g_acc[i] - c.acc[i]);
                g_acc_diff = d > g_acc_diff || isnan(d) ? d : g_acc_diff;
                g_checked = g_checked != 0 && d <= 2.0 / (double)g_samples + 1e-12;
            }
        if (g_checked == 0)
            fprintf(stderr, "bench/queries --flstore: %s: the engine's accuracies differ from "
                    "central's by up to %.4f on %zu samples\n", wls[w], g_acc_diff, g_samples);
        double cs[16];
        memcpy(cs, cen, sizeof cs);
        double cp50 = bench_percentile(cs, (size_t)reps, 50);
        emit(wls[w], "next_to_data_cold", cold, reps, cp50, mc, rc, S, cpu[0]);
        emit(wls[w], "next_to_data_warm", warm, reps, cp50, mw, rw, S, cpu[1]);
        emit(wls[w], "cache_central", cen, reps, cp50, c.moved, 0, 0, cpu[2]);
    }
    free(u), free(g), free(tmp), free(c.M), free(c.g);
    flc_model_free(m);
    flc_data_free(ds);
    flc_store_close(su);
    flc_store_close(stcp);
    flc_embed_stop(srv);
    flc_cli_nodes_free(map);
    return 0;
}
