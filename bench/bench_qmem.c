/* The memory section of bench/queries (issue 14 goal 5): each vector kind
 * answered cold in a process of its own, which reports its peak resident
 * memory and how fast it read the round, beside raw pipelined GETs of the
 * same stored values in the same run (bench_qmem.h). A helper of its own
 * so bench/queries.c stays one idea: the FLStore comparison. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cblas.h>

#include "aggregator/query.h"
#include "base/clock.h"
#include "bench/bench_qmem.h"
#include "bench/bench_util.h"
#include "cache/keys.h"
#include "cache/store_raw.h"
#include "runtime/pool_proc.h"

static void die(const char *what, const char *msg)
{
    bench_die("bench/queries", what, msg);
}

int bench_qmem_one_query(const char *job, const char *kind, const char *url, const char *mb)
{
    bench_config();
    openblas_set_num_threads(1);
    flc_query_kind_t kd;
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(url, bench_store_opts(), &e);
    if (s == NULL || flc_query_kind_parse(kind, &kd) != 0)
        die("one query", s ? kind : e.msg);
    flc_query_req_t q = {.kind = kd, .job = job, .round_from = 1, .round_to = 1, .k = 2,
                         .seed = 1, .url = url, .no_cache = 1,
                         .store_opts = bench_store_opts(),
                         .mem_budget = (size_t)atol(mb) << 20};
    Flcache__QueryAnswer *ans = NULL;
    uint64_t t0 = flc_now_ns();
    if (flc_query_run(s, &q, &ans, &e) != 0)
        die(kind, e.msg);
    double ms = (double)(flc_now_ns() - t0) / 1e6;
    printf("%.3f %llu %ld\n", ms, (unsigned long long)ans->bytes_read,
           (long)flc_proc_status_kb(getpid(), "VmHWM"));
    flcache__query_answer__free_unpacked(ans, NULL);
    flc_store_close(s);
    return 0;
}

/* Runs --one-query in a new process: its ms, bytes read and peak KiB. */
static void query_process(const char *job, const char *kind, const char *url, unsigned mb,
                          double *ms, uint64_t *bytes, long *peak)
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
        execl("/proc/self/exe", "queries", "--one-query", job, kind, url, mbs, (char *)NULL);
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
static double raw_get_gbps(const char *url, const char *job, uint32_t S,
                           const char *const *names, unsigned n_clients, uint64_t *bytes_out)
{
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(url, bench_store_opts(), &e);
    if (s == NULL)
        die("raw get", e.msg);
    size_t cap = 64, n = 0;
    char(*cmd)[2][FLC_KEY_MAX] = malloc(cap * sizeof *cmd); /* key, field ("" = GET) */
    for (uint32_t k = 0; k < S; k++) {
        char tag[FLC_TAG_MAX];
        flc_key_shard_tag(tag, job, k, S);
        for (unsigned i = 0; i <= n_clients; i++) {
            char key[FLC_KEY_MAX];
            if (i < n_clients)
                flc_key_update(key, tag, 1, names[i]);
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

void bench_qmem_section(const char *bench, const char *url, const char *job, uint32_t S,
                        const char *const *names, unsigned n_clients, double mb)
{
    const char *env = getenv("FLCACHE_BENCH_BUDGET_MB");
    unsigned budget = env ? (unsigned)atoi(env) : 0;
    uint64_t raw_bytes = 0;
    double raw = raw_get_gbps(url, job, S, names, n_clients, &raw_bytes);
    static const char *const kinds[] = {"norms", "outliers", "clusters", "similarity"};
    int reps = bench_reps(3) < 3 ? bench_reps(3) : 3;
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        double gbps[3], ms = 0;
        uint64_t bytes = 0;
        long peak = 0;
        for (int r = 0; r < reps; r++) {
            long p = 0;
            query_process(job, kinds[k], url, budget, &ms, &bytes, &p);
            gbps[r] = (double)bytes / (ms / 1e3) / 1e9;
            peak = p > peak ? p : peak;
        }
        double g = bench_median(gbps, (size_t)reps);
        cJSON *o = bench_line(bench, kinds[k]);
        cJSON_AddStringToObject(o, "system", "next_to_data_cold_process");
        cJSON_AddNumberToObject(o, "model_mb", mb);
        cJSON_AddNumberToObject(o, "clients", n_clients);
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

