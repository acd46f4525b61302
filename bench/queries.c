/* bench/queries: the FLStore comparison on one machine, in one run.
 *
 * A job of N clients (default 100) per round, S shards (default 4), is
 * stored once; then each query is answered three ways on the same data:
 *   (a) next_to_data   the query engine: its shard worker (the default, one
 *                      per cache node) reads each shard over the node's unix
 *                      socket and moves only the
 *                      (N+1)^2 Gram partial; "cold" recomputes the partials
 *                      (--no-cache), "warm" reads the ones cached beside
 *                      the shards by the previous request;
 *   (b) cache_central  a central aggregator pulls every needed update from
 *                      Redis over TCP and computes the same dot products;
 *   (c) object_central a central aggregator pulls them from an object store
 *                      through libcurl: files (file://) always, and an
 *                      S3-protocol server on loopback (s3rver) when
 *                      scripts/s3rver.sh has installed one.
 * One JSON line per (model size, query, system) with p50/p99 latency over
 * the requests, bytes moved to the caller, and the ratios to (a).
 *
 * Memory and read rate (issue 14 goal 5): each vector kind is also run cold
 * in a process of its own (this program again, --one-query), which reports
 * its peak RSS (VmHWM: a forked child's maxrss would count this process's
 * pages) and how fast it read the round: "system":"next_to_data_cold_process"
 * with peak_rss_mb, read_gbps (bytes read next to the data / query time),
 * memory_budget_mb, and raw_get_gbps: raw pipelined GETs (HGETs of the chunk
 * fields) of the same stored values on one connection in the same run,
 * read_ratio_to_raw = read_gbps / raw_get_gbps (goal >= 0.8).
 *
 * Usage: bench/queries [--quick]  (--quick: N=20 and 1 MB only)
 *        bench/queries --flstore [...]  FLStore's setting and workloads: runs
 *        queries_flstore beside this binary (bench/queries_flstore.c)
 * Knobs: FLCACHE_BENCH_N, FLCACHE_BENCH_REPS (requests per query, default 5),
 * FLCACHE_BENCH_BUDGET_MB (the query processes' --memory-budget; default the
 * library's). */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cblas.h>

#include "aggregator/query.h"
#include "aggregator/reduce_scatter.h"
#include "base/clock.h"
#include "bench/bench_util.h"
#include "cache/cold.h"
#include "bench/bench_qmem.h"
#include "cache/embed.h"

#define BENCH "queries"
#define S 4

static void die(const char *what, const char *msg)
{
    bench_die("bench/queries", what, msg);
}

static unsigned g_n; /* clients per round */

/* Reproducible values in [-1, 1). */
static void bench_fill(float *v, uint64_t n, unsigned seed)
{
    uint64_t x = 0x9e3779b97f4a7c15ull * (seed + 1);
    for (uint64_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        v[i] = (float)((double)(x >> 11) / 4503599627370496.0 - 1.0);
    }
}
static char (*g_names)[16];

/* ---- the central aggregators (b) and (c) -------------------------------- */

typedef int (*fetch_fn)(void *src, uint32_t round, uint32_t shard, const char *client,
                        float *dst, uint64_t cap, uint64_t *got);

static int fetch_redis(void *src, uint32_t round, uint32_t shard, const char *client,
                       float *dst, uint64_t cap, uint64_t *got)
{
    flc_shard_t sh = {0};
    int rc = flc_store_get_update(src, "qb", round, shard, client, &sh, dst, cap);
    *got = sh.count;
    if (rc == 0 && sh.values != dst)
        flc_shard_release(&sh);
    return rc;
}

static int fetch_object(void *src, uint32_t round, uint32_t shard, const char *client,
                        float *dst, uint64_t cap, uint64_t *got)
{
    char key[128];
    snprintf(key, sizeof key, "fl:{qb/%u/%u}:u:%s", round, shard, client);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = flc_cold_get(src, key, &buf, &len);
    if (rc != 0)
        return rc;
    flc_shard_t sh = {0};
    rc = flc_shard_decode(buf, len, SIZE_MAX, &sh, NULL);
    if (rc == 0 && sh.count <= cap)
        memcpy(dst, sh.values, sh.count * sizeof(float));
    *got = sh.count;
    flc_shard_release(&sh);
    free(buf);
    return rc;
}

/* Pulls all N updates of a round whole to the center and computes the N x N
 * Gram matrix there (the work (a) splits by shard). Returns bytes moved. */
static uint64_t central_gram(fetch_fn fetch, void *src, uint32_t round, uint64_t n,
                             double *G)
{
    float *M = malloc((size_t)g_n * n * sizeof *M);
    if (M == NULL)
        die("central", "out of memory");
    uint64_t moved = 0, off = 0;
    for (uint32_t k = 0; k < S; k++) {
        uint64_t cnt = 0;
        for (unsigned i = 0; i < g_n; i++) {
            /* shard k of client i lands at its offset in client i's row */
            float *row = M + (size_t)i * n;
            uint64_t o = 0, c = 0;
            flc_rs_shard_range(n, S, k, &o, &c);
            if (fetch(src, round, k, g_names[i], row + o, c, &cnt) != 0)
                die("central fetch", g_names[i]);
            moved += cnt * sizeof(float);
        }
        off += cnt;
    }
    if (flc_query_gram_of_rows(M, g_n, n, G) != 0) /* the engine's own kernel, centrally */
        die("central", "out of memory");
    free(M);
    return moved;
}

/* ---- storing the job ----------------------------------------------------- */

typedef struct marg {
    const char *url;
    uint32_t round, shard;
    uint64_t n;
} marg_t;

static void *merger(void *p)
{
    marg_t *a = p;
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(a->url, bench_store_opts(), &e);
    const char **exp = malloc(g_n * sizeof *exp);
    for (unsigned i = 0; i < g_n; i++)
        exp[i] = g_names[i];
    flc_rs_merger_cfg_t c = {.job = "qb", .round = a->round, .shard = a->shard, .num_shards = S,
                          .model_size = a->n, .expected = exp, .n_expected = g_n,
                          .deadline_ms = 600000, .readers = 1};
    flc_merge_rule_init(&c.rule, "fedavg", NULL);
    flc_rs_report_t rep;
    if (s == NULL || flc_rs_merger_run(s, &c, &rep, &e) != 0)
        die("merger", e.msg);
    flc_rs_report_free(&rep);
    free(exp);
    flc_store_close(s);
    return NULL;
}

static void store_job(const char *url, flc_store_t *st, flc_cold_t *const *cold, int ncold,
                      uint32_t rounds, uint64_t n)
{
    float *u = malloc(n * sizeof *u);
    for (uint32_t r = 1; r <= rounds; r++) {
        pthread_t th[S];
        marg_t ma[S];
        for (uint32_t k = 0; k < S; k++) {
            ma[k] = (marg_t){url, r, k, n};
            pthread_create(&th[k], NULL, merger, &ma[k]);
        }
        flc_err_t e = {0};
        for (unsigned i = 0; i < g_n; i++) {
            bench_fill(u, n, 1000 * r + i);
            if (i % 10 == 9) /* a few sign-flipped updates, for outliers */
                for (uint64_t x = 0; x < n; x++)
                    u[x] = -2 * u[x];
            flc_rs_push_cfg_t pc = {.job = "qb", .round = r, .client = g_names[i],
                                    .num_shards = S, .model_size = n, .num_samples = 10 + i};
            if (flc_rs_push(st, &pc, u, &e) != 0)
                die("push", e.msg);
            for (uint32_t k = 0; k < S; k++) { /* the same frames into the object stores */
                flc_shard_t sh = {.round = r, .shard = k, .num_shards = S, .model_size = n,
                                  .num_samples = 10 + i, .weight = 10 + i};
                snprintf(sh.job, sizeof sh.job, "qb");
                snprintf(sh.client, sizeof sh.client, "%s", g_names[i]);
                flc_rs_shard_range(n, S, k, &sh.offset, &sh.count);
                sh.values = u + sh.offset;
                uint8_t *frame;
                size_t flen;
                if (flc_shard_encode(&sh, &frame, &flen, &e) != 0)
                    die("encode", e.msg);
                char key[128];
                snprintf(key, sizeof key, "fl:{qb/%u/%u}:u:%s", r, k, g_names[i]);
                for (int c = 0; c < ncold; c++)
                    if (flc_cold_put(cold[c], key, frame, flen) != 0)
                        die("object put", flc_cold_errstr(cold[c]));
                free(frame);
            }
        }
        for (uint32_t k = 0; k < S; k++)
            pthread_join(th[k], NULL);
    }
    free(u);
}

/* ---- s3rver on loopback, when installed ----------------------------------- */

static pid_t start_s3rver(char *url, size_t len, char *dir)
{
    FILE *p = popen("./scripts/s3rver.sh path 2>/dev/null || "
                    "\"$FLCACHE_SOURCE_DIR\"/scripts/s3rver.sh path 2>/dev/null", "r");
    char bin[1024] = "";
    if (p == NULL || fgets(bin, sizeof bin, p) == NULL) {
        if (p)
            pclose(p);
        return 0;
    }
    pclose(p);
    bin[strcspn(bin, "\n")] = '\0';
    int port = flc_embed_unused_port(NULL);
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    pid_t pid = fork();
    if (pid == 0) {
        freopen("/dev/null", "w", stdout);
        execl(bin, bin, "--directory", dir, "--port", ps, "--address", "127.0.0.1", "--silent",
              (char *)NULL);
        _exit(127);
    }
    snprintf(url, len, "http://127.0.0.1:%d", port);
    flc_sleep_ms(1500); /* node starts slowly; the first request retries below */
    return pid;
}

/* ---- measuring ------------------------------------------------------------ */

typedef struct sample {
    double ms[32];
    int n;
    uint64_t moved;
} sample_t;

static void emit(const char *query, const char *system, double mb, const sample_t *x,
                 const sample_t *a_cold, const sample_t *a_warm)
{
    double t[32];
    memcpy(t, x->ms, (size_t)x->n * sizeof *t);
    double p50 = bench_percentile(t, (size_t)x->n, 50), p99 = bench_percentile(t, (size_t)x->n, 99);
    memcpy(t, a_cold->ms, (size_t)a_cold->n * sizeof *t);
    double ac = bench_percentile(t, (size_t)a_cold->n, 50);
    memcpy(t, a_warm->ms, (size_t)a_warm->n * sizeof *t);
    double aw = bench_percentile(t, (size_t)a_warm->n, 50);
    cJSON *o = bench_line(BENCH, query);
    cJSON_AddStringToObject(o, "system", system);
    cJSON_AddNumberToObject(o, "model_mb", mb);
    cJSON_AddNumberToObject(o, "clients", g_n);
    cJSON_AddNumberToObject(o, "shards", S);
    cJSON_AddNumberToObject(o, "requests", x->n);
    cJSON_AddNumberToObject(o, "p50_ms", p50);
    cJSON_AddNumberToObject(o, "p99_ms", p99);
    cJSON_AddNumberToObject(o, "bytes_moved", (double)x->moved);
    cJSON_AddNumberToObject(o, "a_cold_over_this", ac / p50);
    cJSON_AddNumberToObject(o, "a_warm_over_this", aw / p50);
    bench_emit(o);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--flstore") == 0) {
        /* FLStore's setting is its own program (one idea per file). */
        char path[4096];
        snprintf(path, sizeof path, "%s", argv[0]);
        char *slash = strrchr(path, '/');
        snprintf(slash ? slash + 1 : path, sizeof path - (size_t)(slash ? slash + 1 - path : 0),
                 "queries_flstore");
        execv(path, argv);
        die("--flstore", "cannot run queries_flstore beside this program");
    }
    if (argc == 6 && strcmp(argv[1], "--one-query") == 0)
        return bench_qmem_one_query(argv[2], argv[3], argv[4], argv[5]);
    bench_config();
    signal(SIGPIPE, SIG_IGN);
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    g_n = (unsigned)(getenv("FLCACHE_BENCH_N") ? atoi(getenv("FLCACHE_BENCH_N")) : quick ? 20 : 100);
    if (g_n < 4 || g_n > 1000)
        g_n = 100;
    int reps = bench_reps(5);
    if (reps > 32)
        reps = 32;
    g_names = calloc(g_n, sizeof *g_names);
    for (unsigned i = 0; i < g_n; i++)
        snprintf(g_names[i], sizeof g_names[i], "c%03u", i);
    openblas_set_num_threads(1);

    uint64_t sizes[] = {262144, 6553600}; /* 1 MB and 25 MB of float32 */
    int nsizes = quick ? 1 : 2;
    for (int si = 0; si < nsizes; si++) {
        uint64_t n = sizes[si];
        double mb = (double)n * 4 / (1 << 20);
        flc_err_t e = {0};
        flc_embed_opts_t eo = {.tcp_port = -1};
        flc_embed_t *srv = flc_embed_start(&eo, &e);
        if (srv == NULL)
            die("redis-server", e.msg);
        flc_store_t *su = flc_store_open(flc_embed_url(srv), bench_store_opts(), &e);
        flc_store_t *stcp = flc_store_open(flc_embed_tcp_url(srv), bench_store_opts(), &e);
        char fdir[] = "/tmp/flcache-bq-XXXXXX", sdir[] = "/tmp/flcache-s3-XXXXXX";
        if (su == NULL || stcp == NULL || mkdtemp(fdir) == NULL || mkdtemp(sdir) == NULL)
            die("setup", e.msg);
        char furl[300], s3url[64] = "";
        snprintf(furl, sizeof furl, "file://%s", fdir);
        flc_cold_opts_t fo = {.no_fsync = 1};
        flc_cold_t *cold[2] = {flc_cold_open(furl, &fo, &e), NULL};
        if (cold[0] == NULL)
            die("object store", e.msg);
        /* FLCACHE_BENCH_MEMORY_ONLY: the memory section alone (no object
         * stores, no central aggregators), for a quick look at one size. */
        int memory_only = getenv("FLCACHE_BENCH_MEMORY_ONLY") != NULL;
        pid_t s3pid = memory_only ? 0 : start_s3rver(s3url, sizeof s3url, sdir);
        if (s3pid > 0) {
            flc_cold_opts_t so = {.access_key = "S3RVER", .secret_key = "S3RVER",
                                  .create_bucket = 1};
            for (int t = 0; t < 20 && cold[1] == NULL; t++) {
                cold[1] = flc_cold_open(s3url, &so, &e);
                if (cold[1] == NULL)
                    flc_sleep_ms(500);
            }
        }
        if (cold[1] == NULL && !memory_only)
            fprintf(stderr, "bench/queries: no S3-protocol server (%s); object store = files "
                            "only (run scripts/s3rver.sh install to add one)\n",
                    s3pid > 0 ? e.msg : "s3rver not installed");
        int ncold = memory_only ? 0 : cold[1] ? 2 : 1;
        fprintf(stderr, "bench/queries: storing %u clients x 2 rounds of %.0f MB...\n", g_n, mb);
        store_job(flc_embed_url(srv), su, cold, ncold, 2, n);
        const char **names = malloc(g_n * sizeof *names);
        for (unsigned i = 0; i < g_n; i++)
            names[i] = g_names[i];
        bench_qmem_section(BENCH, flc_embed_url(srv), "qb", S, names, g_n, mb);
        free(names);
        if (memory_only)
            goto done;

        static const flc_query_kind_t kinds[] = {FLC_Q_NORMS, FLC_Q_OUTLIERS, FLC_Q_CLUSTERS,
                                                 FLC_Q_SIMILARITY, FLC_Q_HISTORY};
        double *G = malloc((size_t)g_n * g_n * sizeof *G);
        for (size_t qi = 0; qi < sizeof kinds / sizeof *kinds; qi++) {
            flc_query_kind_t kd = kinds[qi];
            const char *qname = flc_query_kind_name(kd);
            int vec = kd != FLC_Q_HISTORY;
            sample_t a_cold, a_warm, b, c[2];
            memset(&a_cold, 0, sizeof a_cold), memset(&a_warm, 0, sizeof a_warm);
            memset(&b, 0, sizeof b), memset(c, 0, sizeof c);
            for (int r = 0; r < reps; r++) {
                for (int warm = 0; warm < 2; warm++) {
                    flc_query_req_t q = {.kind = kd, .job = "qb", .round_from = 1,
                                         .round_to = 1, .all_rounds = !vec, .k = 2, .seed = 1,
                                         .url = flc_embed_url(srv), .no_cache = !warm,
                                         .store_opts = bench_store_opts()};
                    Flcache__QueryAnswer *ans = NULL;
                    uint64_t t0 = flc_now_ns();
                    if (flc_query_run(su, &q, &ans, &e) != 0)
                        die(qname, e.msg);
                    sample_t *x = warm ? &a_warm : &a_cold;
                    x->ms[x->n++] = (double)(flc_now_ns() - t0) / 1e6;
                    x->moved = ans->bytes_moved;
                    flcache__query_answer__free_unpacked(ans, NULL);
                }
                /* (b) and (c): pull to the center, compute there. For history
                 * both read the round metadata; (c) reads it from Redis too,
                 * since metadata is never spilled. */
                uint64_t t0 = flc_now_ns();
                b.moved = vec ? central_gram(fetch_redis, stcp, 1, n, G) : 0;
                if (!vec) {
                    flc_query_req_t q = {.kind = kd, .job = "qb", .all_rounds = 1};
                    Flcache__QueryAnswer *ans = NULL;
                    flc_query_run(stcp, &q, &ans, &e);
                    b.moved = ans ? ans->bytes_moved : 0;
                    if (ans)
                        flcache__query_answer__free_unpacked(ans, NULL);
                }
                b.ms[b.n++] = (double)(flc_now_ns() - t0) / 1e6;
                for (int ci = 0; ci < ncold; ci++) {
                    t0 = flc_now_ns();
                    c[ci].moved = vec ? central_gram(fetch_object, cold[ci], 1, n, G) : b.moved;
                    c[ci].ms[c[ci].n++] = vec ? (double)(flc_now_ns() - t0) / 1e6
                                              : b.ms[b.n - 1];
                }
            }
            emit(qname, "next_to_data_cold", mb, &a_cold, &a_cold, &a_warm);
            emit(qname, "next_to_data_warm", mb, &a_warm, &a_cold, &a_warm);
            emit(qname, "cache_central_tcp", mb, &b, &a_cold, &a_warm);
            emit(qname, "object_central_file", mb, &c[0], &a_cold, &a_warm);
            if (ncold > 1)
                emit(qname, "object_central_s3", mb, &c[1], &a_cold, &a_warm);
        }
        free(G);
    done:
        for (int ci = 0; ci < 2; ci++)
            flc_cold_close(cold[ci]);
        if (s3pid > 0) {
            kill(s3pid, SIGTERM);
            waitpid(s3pid, NULL, 0);
        }
        char cmd[200];
        snprintf(cmd, sizeof cmd, "rm -rf %s %s", fdir, sdir);
        if (system(cmd) != 0)
            fprintf(stderr, "bench/queries: could not remove %s\n", fdir);
        flc_store_close(su);
        flc_store_close(stcp);
        flc_embed_stop(srv);
    }
    free(g_names);
    return 0;
}
