/* bench_query_cluster.c - the "query" case of bench/cluster (see
 * bench_query_cluster.h and docs/cluster.md, "Queries next to the data").
 *
 * One round per model size is stored straight through the store from the
 * client namespace (N clients' updates in S shards, and the merged mean),
 * with the links unshaped so storing takes seconds, not what the query
 * measures. Then, per link rate and kind, the three systems ask the same
 * query of the same round through the same engine (flc_query_run), so the
 * arithmetic is the same and only where the shard workers run differs:
 * - cache_central: no placement, partials recomputed: the workers are
 *   threads here, in the client namespace, and pull every update of their
 *   shards over the node links (4 in parallel unless --threads says
 *   otherwise: a central aggregator that reads its shards concurrently,
 *   not a strawman; the engine's default would take 2 at N = 100, where
 *   the memory budget holds two workers' chunk tails, and ran 17-25 s
 *   against 13 s with 4);
 * - next_to_data_cold: the workers enter their shard's node namespace
 *   (cli/place.c, FLCACHE_NODES of the testbed), partials recomputed;
 * - next_to_data_warm: placed, the partials cached beside the shards (one
 *   untimed query fills the cache first).
 * The placed workers are threads of this process too: their partials reach
 * the caller through memory, where a deployment would send them over the
 * network ("bytes_moved" says how much: S (N+1)^2 doubles, ~1 MB at N=100,
 * 8 ms at 1 Gbit/s). "link_bytes" are the bytes that crossed the node links
 * during the query (veth counters, rx + tx summed over the nodes). */
#include "bench/bench_query_cluster.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/query.h"
#include "base/clock.h"
#include "bench/bench_util.h"
#include "cache/store_ops.h"
#include "cli/place.h"

#define FLOATS_PER_MB 262144.0 /* the "1 MB": 2^18 floats */
#define STORE_THREADS 4
#define MAX_REPS 32
#define JOB "bq"

static const char *const usage =
    "usage: cluster [--case round|query|failover|all] [--clients N] [--sizes MB,...] "
    "[--rates GBIT,...]\n"
    "               [--reps R] [--shards S] [--threads T]\n"
    "  query case defaults: --clients 100 --sizes 1,25 --rates 1,10 --reps 3 --shards 12\n";

/* "1,25" into v (at most BENCH_QC_MAX values > 0). */
static int num_list(const char *s, double *v, int *n)
{
    *n = 0;
    while (s && *s && *n < BENCH_QC_MAX) {
        char *end;
        double x = strtod(s, &end);
        if (end == s || !(x > 0) || (*end != ',' && *end != '\0'))
            return -1;
        v[(*n)++] = x;
        s = *end ? end + 1 : end;
    }
    return *n > 0 && (s == NULL || *s == '\0') ? 0 : -1;
}

int bench_qc_parse(int argc, char **argv, bench_qc_opts_t *o)
{
    *o = (bench_qc_opts_t){.run_round = 1, .run_query = 1, .run_failover = 1, .clients = 100, .nsizes = 2,
                           .sizes_mb = {1, 25}, .nrates = 2, .rates_gbit = {1, 10},
                           .reps = 3, .shards = 12};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return 1;
        }
        static const char *const known[] = {"--case",   "--clients", "--sizes", "--rates",
                                            "--reps",   "--shards",  "--threads"};
        int is_known = 0;
        for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
            is_known |= strcmp(a, known[k]) == 0;
        if (!is_known) {
            fprintf(stderr, "cluster: unknown option '%s'\n%s", a, usage);
            return -1;
        }
        char *end = NULL;
        long x = v ? strtol(v, &end, 10) : 0;
        int is_int = strcmp(a, "--case") != 0 && strcmp(a, "--sizes") != 0 &&
                     strcmp(a, "--rates") != 0;
        int bad = v == NULL || (is_int && (end == v || *end != '\0'));
        if (bad)
            ;
        else if (strcmp(a, "--case") == 0) {
            o->run_round = strcmp(v, "round") == 0 || strcmp(v, "all") == 0;
            o->run_query = strcmp(v, "query") == 0 || strcmp(v, "all") == 0;
            o->run_failover = strcmp(v, "failover") == 0 || strcmp(v, "all") == 0;
            bad = !o->run_round && !o->run_query && !o->run_failover;
        } else if (strcmp(a, "--clients") == 0) {
            bad = x < 2 || x > 10000;
            o->clients = (unsigned)x;
        } else if (strcmp(a, "--sizes") == 0) {
            bad = num_list(v, o->sizes_mb, &o->nsizes) != 0;
        } else if (strcmp(a, "--rates") == 0) {
            bad = num_list(v, o->rates_gbit, &o->nrates) != 0;
        } else if (strcmp(a, "--reps") == 0) {
            bad = x < 1 || x > MAX_REPS;
            o->reps = (int)x;
        } else if (strcmp(a, "--shards") == 0) {
            bad = x < 1 || x > 1024;
            o->shards = (unsigned)x;
        } else if (strcmp(a, "--threads") == 0) {
            bad = x < 0 || x > 64;
            o->threads = (int)x;
        }
        if (bad) {
            fprintf(stderr, "cluster: bad value for %s: '%s'\n%s", a, v ? v : "(none)", usage);
            return -1;
        }
        i++;
    }
    return 0;
}

/* ---------------------------------------------------------- the round */

typedef struct store_job {
    const char *url;
    uint32_t round, N, S;
    uint64_t n;
    unsigned next; /* next client, under lock */
    pthread_mutex_t lock;
    float *mean;   /* sum of every update / N, under lock */
    int failed;
} store_job_t;

/* Client i's update: uniform noise around one of two directions (so
 * `clusters` has two to find), every tenth client an outlier. */
static void make_update(unsigned i, float *u, uint64_t n)
{
    unsigned x = 1000003u * (i + 1);
    float bias = i % 2 ? 0.1f : -0.1f, scale = i % 10 == 9 ? -5.0f : 1.0f;
    for (uint64_t k = 0; k < n; k++) {
        x = x * 1103515245u + 12345u;
        u[k] = scale * ((float)((x >> 8) & 0xffff) / 65536.0f - 0.5f + (k % 2 ? bias : -bias));
    }
}

static void *store_worker(void *p)
{
    store_job_t *j = p;
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(j->url, bench_store_opts(), &e);
    float *u = malloc(j->n * sizeof *u), *sum = calloc(j->n, sizeof *sum);
    if (s == NULL || u == NULL || sum == NULL) {
        fprintf(stderr, "cluster: query: storing: %s\n", s ? "out of memory" : e.msg);
        j->failed = 1;
    }
    for (;;) {
        pthread_mutex_lock(&j->lock);
        unsigned i = j->next++;
        int stop = j->failed || i >= j->N;
        pthread_mutex_unlock(&j->lock);
        if (stop)
            break;
        make_update(i, u, j->n);
        for (uint64_t k = 0; k < j->n; k++)
            sum[k] += u[k];
        for (uint32_t sh = 0; sh < j->S && !j->failed; sh++) {
            flc_shard_t d = {.round = j->round, .shard = sh, .num_shards = j->S,
                             .model_size = j->n, .weight = 1, .num_samples = 1};
            snprintf(d.job, sizeof d.job, JOB);
            snprintf(d.client, sizeof d.client, "c%03u", i);
            d.offset = j->n * sh / j->S;
            d.count = j->n * (sh + 1) / j->S - d.offset;
            d.values = u + d.offset;
            if (flc_store_put_update(s, &d) != 0) {
                fprintf(stderr, "cluster: query: put %s shard %u: %s\n", d.client, sh,
                        flc_store_errstr(s));
                j->failed = 1;
            }
        }
    }
    pthread_mutex_lock(&j->lock);
    for (uint64_t k = 0; sum && k < j->n; k++)
        j->mean[k] += sum[k] / (float)j->N;
    pthread_mutex_unlock(&j->lock);
    free(u);
    free(sum);
    flc_store_close(s);
    return NULL;
}

/* Stores round `round` of N clients, n floats in S shards, and its mean. */
static int store_round(const char *url, uint32_t round, uint32_t N, uint32_t S, uint64_t n)
{
    store_job_t j = {.url = url, .round = round, .N = N, .S = S, .n = n};
    j.mean = calloc(n, sizeof *j.mean);
    if (j.mean == NULL)
        return -1;
    pthread_mutex_init(&j.lock, NULL);
    pthread_t th[STORE_THREADS];
    for (int t = 0; t < STORE_THREADS; t++)
        pthread_create(&th[t], NULL, store_worker, &j);
    for (int t = 0; t < STORE_THREADS; t++)
        pthread_join(th[t], NULL);
    pthread_mutex_destroy(&j.lock);
    flc_err_t e = {0};
    flc_store_t *s = j.failed ? NULL : flc_store_open(url, bench_store_opts(), &e);
    for (uint32_t sh = 0; s && sh < S && !j.failed; sh++) {
        flc_shard_t d = {.round = round, .shard = sh, .num_shards = S, .model_size = n,
                         .weight = N, .num_samples = N};
        snprintf(d.job, sizeof d.job, JOB);
        d.offset = n * sh / S;
        d.count = n * (sh + 1) / S - d.offset;
        d.values = j.mean + d.offset;
        if (flc_store_put_merged(s, &d) != 0) {
            fprintf(stderr, "cluster: query: merged shard %u: %s\n", sh, flc_store_errstr(s));
            j.failed = 1;
        }
    }
    flc_store_close(s);
    free(j.mean);
    return j.failed ? -1 : 0;
}

/* Shards per node of the round, busiest first, into per[0..*nn). */
static void node_shards(flc_store_t *s, uint32_t round, uint32_t S, int *per, int *nn)
{
    char addr[BENCH_QC_MAX][300];
    *nn = 0;
    for (uint32_t sh = 0; sh < S; sh++) {
        flc_store_node_t nd;
        if (flc_store_shard_node(s, JOB, round, sh, &nd) != 0)
            continue;
        int k = 0;
        while (k < *nn && strcmp(addr[k], nd.addr) != 0)
            k++;
        if (k == *nn && *nn < BENCH_QC_MAX) {
            snprintf(addr[k], sizeof addr[k], "%s", nd.addr);
            per[(*nn)++] = 0;
        }
        if (k < *nn)
            per[k]++;
    }
    for (int a = 0; a < *nn; a++) /* busiest first */
        for (int b = a + 1; b < *nn; b++)
            if (per[b] > per[a]) {
                int t = per[a];
                per[a] = per[b], per[b] = t;
            }
}

/* ---------------------------------------------------------- the systems */

enum { CENTRAL, COLD, WARM, NSYS };
static const char *const sys_name[NSYS] = {"cache_central", "next_to_data_cold",
                                           "next_to_data_warm"};
static const char *const sys_where[NSYS] = {
    "shard workers in the client namespace, reading over the node links",
    "shard workers in their shard's node namespace (FLCACHE_NODES)",
    "shard workers in their shard's node namespace, cached partials"};

typedef struct measured {
    double ms[MAX_REPS], link[MAX_REPS], cpu[MAX_REPS];
    double p50_ms, link_bytes, cpu_busy;
    uint64_t bytes_read, bytes_moved;
    Flcache__QueryAnswer *first; /* the first rep's answer, to compare */
} measured_t;

static int ask(const bench_qc_testbed_t *tb, const bench_qc_opts_t *o, flc_store_t *s,
               flc_query_kind_t kind, uint32_t round, const flc_place_t *place, int no_cache,
               Flcache__QueryAnswer **a)
{
    flc_query_req_t q = {.kind = kind, .job = JOB, .round_from = round, .round_to = round,
                         .k = 2, .seed = 1, .url = tb->seed, .store_opts = bench_store_opts(),
                         .threads = o->threads ? o->threads : place == NULL ? 4 : 0,
                         .no_cache = no_cache};
    if (place != NULL)
        q.place = *place;
    flc_err_t e = {0};
    if (flc_query_run(s, &q, a, &e) != 0) {
        fprintf(stderr, "cluster: query %s of round %u: %s\n", flc_query_kind_name(kind),
                round, e.msg);
        return -1;
    }
    return 0;
}

static int measure(const bench_qc_testbed_t *tb, const bench_qc_opts_t *o, flc_store_t *s,
                   flc_query_kind_t kind, uint32_t round, int sys, const flc_place_t *place,
                   measured_t *m)
{
    memset(m, 0, sizeof *m);
    const flc_place_t *pl = sys == CENTRAL ? NULL : place;
    int no_cache = sys != WARM;
    Flcache__QueryAnswer *a = NULL;
    if (sys == WARM) { /* fill the cache (once per round; later it is read) */
        if (ask(tb, o, s, kind, round, pl, 0, &a) != 0)
            return -1;
        flcache__query_answer__free_unpacked(a, NULL);
    }
    for (int r = 0; r < o->reps; r++) {
        uint64_t b0 = 0, b1 = 0;
        if (tb->link_bytes(tb->user, &b0) != 0)
            return -1;
        double cb0, ca0, cb1, ca1;
        bench_cpu_times(&cb0, &ca0);
        uint64_t t0 = flc_now_ns();
        if (ask(tb, o, s, kind, round, pl, no_cache, &a) != 0)
            return -1;
        m->ms[r] = (double)(flc_now_ns() - t0) / 1e6;
        bench_cpu_times(&cb1, &ca1);
        m->cpu[r] = ca1 > ca0 ? (cb1 - cb0) / (ca1 - ca0) : 0;
        if (tb->link_bytes(tb->user, &b1) != 0)
            return -1;
        m->link[r] = (double)(b1 - b0);
        m->bytes_read = a->bytes_read;
        m->bytes_moved = a->bytes_moved;
        if (r == 0)
            m->first = a;
        else
            flcache__query_answer__free_unpacked(a, NULL);
    }
    double t[MAX_REPS];
    memcpy(t, m->ms, sizeof t);
    m->p50_ms = bench_median(t, (size_t)o->reps);
    memcpy(t, m->link, sizeof t);
    m->link_bytes = bench_median(t, (size_t)o->reps);
    memcpy(t, m->cpu, sizeof t);
    m->cpu_busy = bench_median(t, (size_t)o->reps);
    return 0;
}

/* The same rows, keys, text and values (the "nodes" note and timings aside). */
static int same_answer(const Flcache__QueryAnswer *a, const Flcache__QueryAnswer *b)
{
    if (a == NULL || b == NULL || a->n_rows != b->n_rows || a->n_rows == 0)
        return 0;
    for (size_t i = 0; i < a->n_rows; i++) {
        const Flcache__QueryRow *x = a->rows[i], *y = b->rows[i];
        if (strcmp(x->key, y->key) != 0 || x->n_values != y->n_values || x->n_text != y->n_text)
            return 0;
        for (size_t v = 0; v < x->n_values; v++)
            if (x->values[v] != y->values[v] && !(isnan(x->values[v]) && isnan(y->values[v])))
                return 0;
        for (size_t v = 0; v < x->n_text; v++)
            if (strcmp(x->text[v], y->text[v]) != 0)
                return 0;
    }
    return 1;
}

static void emit(const bench_qc_opts_t *o, double mb, double gbit, flc_query_kind_t kind,
                 int sys, const measured_t *m, const measured_t *central, const int *per,
                 int nn, int checked)
{
    cJSON *j = bench_line("cluster", "query");
    cJSON_AddStringToObject(j, "system", sys_name[sys]);
    cJSON_AddStringToObject(j, "kind", flc_query_kind_name(kind));
    cJSON_AddNumberToObject(j, "model_mb", mb);
    cJSON_AddNumberToObject(j, "link_gbit", gbit);
    cJSON_AddNumberToObject(j, "n_clients", o->clients);
    cJSON_AddNumberToObject(j, "shards", o->shards);
    cJSON_AddItemToObject(j, "node_shards", cJSON_CreateIntArray(per, nn));
    cJSON_AddStringToObject(j, "placement", sys_where[sys]);
    cJSON_AddNumberToObject(j, "reps", o->reps);
    cJSON_AddNumberToObject(j, "p50_ms", m->p50_ms);
    cJSON_AddItemToObject(j, "runs_ms", cJSON_CreateDoubleArray(m->ms, o->reps));
    cJSON_AddNumberToObject(j, "ratio_to_central",
                            central->p50_ms > 0 ? m->p50_ms / central->p50_ms : 0);
    cJSON_AddNumberToObject(j, "link_bytes", m->link_bytes);
    cJSON_AddNumberToObject(j, "cpu_busy", m->cpu_busy); /* near 1: the cores bound it */
    cJSON_AddNumberToObject(j, "link_bytes_ratio_to_central",
                            central->link_bytes > 0 ? m->link_bytes / central->link_bytes : 0);
    cJSON_AddNumberToObject(j, "bytes_read", (double)m->bytes_read);
    cJSON_AddNumberToObject(j, "bytes_moved", (double)m->bytes_moved);
    /* The goal: at 25 MB over 1 Gbit/s, cold <= 0.35x, warm <= 0.01x. */
    if (sys != CENTRAL && fabs(mb - 25) < 1e-9 && fabs(gbit - 1) < 1e-9) {
        double goal = sys == COLD ? 0.35 : 0.01;
        cJSON_AddNumberToObject(j, "goal", goal);
        cJSON_AddBoolToObject(j, "met", central->p50_ms > 0 && m->p50_ms / central->p50_ms <= goal);
    }
    cJSON_AddBoolToObject(j, "result_checked", checked);
    bench_emit(j);
}

int bench_qc_run(const bench_qc_testbed_t *tb, const bench_qc_opts_t *o)
{
    static const flc_query_kind_t kinds[] = {FLC_Q_NORMS, FLC_Q_OUTLIERS, FLC_Q_CLUSTERS,
                                             FLC_Q_SIMILARITY};
    flc_cli_nodes_t *map = NULL;
    flc_err_t e = {0};
    if (flc_cli_nodes_parse(tb->node_map, &map, &e) != 0 || map == NULL) {
        fprintf(stderr, "cluster: query: the testbed's node map: %s\n",
                map ? "" : e.msg[0] ? e.msg : "empty");
        return -1;
    }
    flc_place_t place = flc_cli_place(map);
    flc_store_t *s = flc_store_open(tb->seed, bench_store_opts(), &e);
    int rc = s ? 0 : -1, wrong = 0;
    if (s == NULL)
        fprintf(stderr, "cluster: query: %s\n", e.msg);
    for (int si = 0; rc == 0 && si < o->nsizes; si++) {
        double mb = o->sizes_mb[si];
        uint64_t n = (uint64_t)llround(mb * FLOATS_PER_MB);
        uint32_t round = 1 + (uint32_t)si;
        uint64_t t0 = flc_now_ns();
        if (tb->set_rate(tb->user, 0) != 0 ||
            store_round(tb->seed, round, o->clients, o->shards, n < 1 ? 1 : n) != 0) {
            rc = -1;
            break;
        }
        int per[BENCH_QC_MAX], nn = 0;
        node_shards(s, round, o->shards, per, &nn);
        fprintf(stderr, "cluster: query: round %u, %u clients x %.3g MB in %u shards stored "
                "in %.1f s\n", round, o->clients, mb, o->shards,
                (double)(flc_now_ns() - t0) / 1e9);
        for (int ri = 0; rc == 0 && ri < o->nrates; ri++) {
            double gbit = o->rates_gbit[ri];
            if (tb->set_rate(tb->user, gbit) != 0) {
                rc = -1;
                break;
            }
            for (size_t k = 0; rc == 0 && k < sizeof kinds / sizeof kinds[0]; k++) {
                measured_t m[NSYS];
                memset(m, 0, sizeof m);
                for (int sys = 0; rc == 0 && sys < NSYS; sys++)
                    rc = measure(tb, o, s, kinds[k], round, sys, &place, &m[sys]);
                for (int sys = 0; rc == 0 && sys < NSYS; sys++) {
                    int ok = same_answer(m[CENTRAL].first, m[sys].first);
                    emit(o, mb, gbit, kinds[k], sys, &m[sys], &m[CENTRAL], per, nn, ok);
                    fprintf(stderr, "cluster: query: %.3g MB, %g Gbit/s, %s, %s: %.1f ms "
                            "(%.3fx central), %.3g MB over the links%s\n", mb, gbit,
                            flc_query_kind_name(kinds[k]), sys_name[sys], m[sys].p50_ms,
                            m[sys].p50_ms / m[CENTRAL].p50_ms, m[sys].link_bytes / 1e6,
                            ok ? "" : ", ANSWER DIFFERS FROM CENTRAL");
                    wrong += !ok; /* reported, and the exit status, but measured on */
                }
                for (int sys = 0; sys < NSYS; sys++)
                    if (m[sys].first)
                        flcache__query_answer__free_unpacked(m[sys].first, NULL);
            }
        }
        flc_store_delete_round(s, JOB, round); /* the memory for the next size */
    }
    flc_store_close(s);
    flc_cli_nodes_free(map);
    return rc == 0 && wrong == 0 ? 0 : -1;
}
