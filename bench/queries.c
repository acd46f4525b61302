/* bench/queries: the FLStore comparison on one machine, in one run.
 *
 * A job of N clients (default 100) per round, S shards (default 4), is
 * stored once; then each query is answered three ways on the same data:
 *   (a) next_to_data   the query engine: shard workers (2, one per core) read each
 *                      shard over the node's unix socket and moves only the
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
#include "cache/embed.h"
#include "cache/keys.h"
#include "cache/store_raw.h"

#define BENCH "queries"
#define S 4

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "bench/queries: %s: %s\n", what, msg);
    exit(1);
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

/* ---- memory and read rate: the query in its own process ------------------ */

/* This process's peak resident KiB (VmHWM of its own address space). */
static long hwm_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            kb = atol(line + 6);
    if (f)
        fclose(f);
    return kb;
}

/* --one-query KIND URL MB: the cold query, then one JSON line with its time,
 * bytes read next to the data and this process's peak. */
static int one_query(const char *kind, const char *url, const char *mb)
{
    bench_config();
    openblas_set_num_threads(1);
    flc_query_kind_t kd;
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(url, bench_store_opts(), &e);
    if (s == NULL || flc_query_kind_parse(kind, &kd) != 0)
        die("one query", s ? kind : e.msg);
    flc_query_req_t q = {.kind = kd, .job = "qb", .round_from = 1, .round_to = 1, .k = 2,
                         .seed = 1, .url = url, .no_cache = 1, .threads = 2,
                         .store_opts = bench_store_opts(),
                         .mem_budget = (size_t)atol(mb) << 20};
    Flcache__QueryAnswer *ans = NULL;
    uint64_t t0 = flc_now_ns();
    if (flc_query_run(s, &q, &ans, &e) != 0)
        die(kind, e.msg);
    double ms = (double)(flc_now_ns() - t0) / 1e6;
    printf("%.3f %llu %ld\n", ms, (unsigned long long)ans->bytes_read, hwm_kb());
    flcache__query_answer__free_unpacked(ans, NULL);
    flc_store_close(s);
    return 0;
}

/* Runs --one-query in a new process: its ms, bytes read and peak KiB. */
static void query_process(const char *kind, const char *url, unsigned mb, double *ms,
                          uint64_t *bytes, long *peak)
{
    int fd[2];
    char mbs[16];
    snprintf(mbs, sizeof mbs, "%u", mb);
    if (pipe(fd) != 0)
        die("pipe", kind);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        execl("/proc/self/exe", "queries", "--one-query", kind, url, mbs, (char *)NULL);
        _exit(127);
    }
    close(fd[1]);
    char line[256] = "";
    FILE *f = fdopen(fd[0], "r");
    if (f == NULL || fgets(line, sizeof line, f) == NULL)
        line[0] = '\0';
    if (f)
        fclose(f);
    int st = 0;
    waitpid(pid, &st, 0);
    unsigned long long b = 0;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || sscanf(line, "%lf %llu %ld", ms, &b, peak) != 3)
        die("query process", kind);
    *bytes = b;
}

/* Raw pipelined reads of round 1's stored updates and merged shards (GET of
 * a string, HGET of each chunk field of a hash), 32 commands per round trip,
 * each reply copied out as a reader would: GB/s, the median of 3 passes. */
static double raw_get_gbps(const char *url, uint64_t *bytes_out)
{
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(url, bench_store_opts(), &e);
    if (s == NULL)
        die("raw get", e.msg);
    size_t cap = 64, n = 0;
    char(*cmd)[2][FLC_KEY_MAX] = malloc(cap * sizeof *cmd); /* key, field ("" = GET) */
    for (uint32_t k = 0; k < S; k++) {
        char tag[FLC_TAG_MAX];
        flc_key_shard_tag(tag, "qb", k, S);
        for (unsigned i = 0; i <= g_n; i++) {
            char key[FLC_KEY_MAX];
            if (i < g_n)
                flc_key_update(key, tag, 1, g_names[i]);
            else
                flc_key_shard(key, tag, 1, "agg");
            redisReply *r = NULL;
            long long fields = 0;
            if (flc_store_commandf(s, &r, "HLEN %s", key) == 0 && r->type == REDIS_REPLY_INTEGER)
                fields = r->integer;
            freeReplyObject(r);
            r = NULL;
            if (fields > 0 && flc_store_commandf(s, &r, "HEXISTS %s h", key) == 0 &&
                r->type == REDIS_REPLY_INTEGER)
                fields -= r->integer; /* the head field is not payload */
            freeReplyObject(r);
            for (long long f = 0; f < (fields > 0 ? fields : 1); f++) {
                if (n == cap)
                    cmd = realloc(cmd, (cap *= 2) * sizeof *cmd);
                snprintf(cmd[n][0], FLC_KEY_MAX, "%s", key);
                if (fields > 0)
                    snprintf(cmd[n][1], FLC_KEY_MAX, "%lld", f);
                else
                    cmd[n][1][0] = '\0';
                n++;
            }
        }
    }
    char *sink = malloc(16 << 20);
    double t[3];
    uint64_t bytes = 0;
    for (int pass = -1; pass < 3; pass++) { /* pass -1 warms up (first-touch faults) */
        bytes = 0;
        uint64_t t0 = flc_now_ns();
        for (size_t a = 0; a < n; a += 32) {
            size_t m = n - a < 32 ? n - a : 32;
            int argc[32];
            const char *argv[32][3];
            const char *const *av[32];
            redisReply *out[32];
            for (size_t i = 0; i < m; i++) {
                int get = cmd[a + i][1][0] == '\0';
                argv[i][0] = get ? "GET" : "HGET";
                argv[i][1] = cmd[a + i][0];
                argv[i][2] = cmd[a + i][1];
                argc[i] = get ? 2 : 3;
                av[i] = argv[i];
            }
            if (flc_store_pipeline(s, m, argc, av, out) != 0)
                die("raw get", flc_store_errstr(s));
            for (size_t i = 0; i < m; i++) {
                if (out[i] && out[i]->type == REDIS_REPLY_STRING) {
                    size_t l = out[i]->len < (16 << 20) ? out[i]->len : (16 << 20);
                    memcpy(sink, out[i]->str, l);
                    bytes += out[i]->len;
                }
                freeReplyObject(out[i]);
            }
        }
        if (pass >= 0)
            t[pass] = (double)(flc_now_ns() - t0) / 1e9;
    }
    free(sink);
    free(cmd);
    flc_store_close(s);
    *bytes_out = bytes;
    return (double)bytes / bench_median(t, 3) / 1e9;
}

/* One line per vector kind: the cold query in its own process (peak RSS,
 * read rate) against raw pipelined GETs of the same values, this run. */
static void memory_section(const char *url, double mb)
{
    const char *env = getenv("FLCACHE_BENCH_BUDGET_MB");
    unsigned budget = env ? (unsigned)atoi(env) : 0;
    uint64_t raw_bytes = 0;
    double raw = raw_get_gbps(url, &raw_bytes);
    static const char *const kinds[] = {"norms", "outliers", "clusters", "similarity"};
    int reps = bench_reps(3) < 3 ? bench_reps(3) : 3;
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        double gbps[3], ms = 0;
        uint64_t bytes = 0;
        long peak = 0;
        for (int r = 0; r < reps; r++) {
            long p = 0;
            query_process(kinds[k], url, budget, &ms, &bytes, &p);
            gbps[r] = (double)bytes / (ms / 1e3) / 1e9;
            peak = p > peak ? p : peak;
        }
        double g = bench_median(gbps, (size_t)reps);
        cJSON *o = bench_line(BENCH, kinds[k]);
        cJSON_AddStringToObject(o, "system", "next_to_data_cold_process");
        cJSON_AddNumberToObject(o, "model_mb", mb);
        cJSON_AddNumberToObject(o, "clients", g_n);
        cJSON_AddNumberToObject(o, "shards", S);
        cJSON_AddNumberToObject(o, "requests", reps);
        cJSON_AddNumberToObject(o, "memory_budget_mb",
                                budget ? budget : (double)(flc_query_mem_budget() >> 20));
        cJSON_AddNumberToObject(o, "peak_rss_mb", peak / 1024.0);
        cJSON_AddNumberToObject(o, "bytes_read", (double)bytes);
        cJSON_AddNumberToObject(o, "read_gbps", g);
        cJSON_AddNumberToObject(o, "raw_get_bytes", (double)raw_bytes);
        cJSON_AddNumberToObject(o, "raw_get_gbps", raw);
        cJSON_AddNumberToObject(o, "read_ratio_to_raw", raw > 0 ? g / raw : 0);
        bench_emit(o);
    }
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
    if (argc == 5 && strcmp(argv[1], "--one-query") == 0)
        return one_query(argv[2], argv[3], argv[4]);
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
        memory_section(flc_embed_url(srv), mb);
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
                                         .threads = 2, .store_opts = bench_store_opts()};
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
