/* bench_large.c - bench/aggregate --large: W clients x M-byte float32
 * updates (default 6 x 1 GiB) merged by reduce-scatter over S shards
 * (default 8) through one private redis-server, against raw pipelined Redis
 * moving the protocol's (3W+1) x M bytes (the round section's
 * raw_same_bytes, here with processes). Issue 14 goal 4.
 *
 * Every client and every merger is a forked process: a client holds its
 * update (and reads the merged model back into the same buffer), a merger
 * holds what flc_rs_merger_run holds, so its peak RSS (VmHWM, reset by
 * clear_refs at its start after giving the parent's heap back) is its own.
 * Goals beside each line: streaming rules (fedavg) <= 2 x shard + 64 MB,
 * collecting ones (median) <= K x shard + 64 MB; ratio_to_same_bytes
 * <= 1.15. The clock runs from the moment every process has its data (a
 * shared barrier) to the last client's read back.
 *
 * Knobs: FLCACHE_BENCH_LARGE_MB (MiB per update, default 1024; without it
 * 512 when the machine's available memory cannot hold the 1 GiB run),
 * FLCACHE_BENCH_LARGE_W (clients, 6), FLCACHE_BENCH_LARGE_S (shards, 8),
 * FLCACHE_BENCH_LARGE_RULES ("fedavg,median"), FLCACHE_BENCH_LARGE_WINDOW_KB
 * (the mergers' window; 0: their default). */
#include "bench/bench_large.h"

#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "aggregator/reduce_scatter.h"
#include "base/clock.h"
#include "bench/bench_round.h"
#include "bench/bench_util.h"
#include "cache/embed.h"
#include "cache/store_ops.h"
#include "cache/store_raw.h"
#include "runtime/pool_proc.h"

#define MAXP 64
#define SPOTS 8
#define JOB "large"

/* Shared between the bench and its processes (one anonymous shared map). */
typedef struct shared {
    pthread_barrier_t go;    /* every process has its data, and the bench */
    pthread_barrier_t phase; /* raw: between its phases, among the W */
    uint64_t done_ns[MAXP];  /* a client's read back ended */
    double rss_mb[MAXP];     /* a merger's peak RSS */
    double merge_ms[MAXP];
    float spot[SPOTS];       /* client 0's merged model at spot_at */
    int failed;
} shared_t;

typedef struct large {
    const char *url;
    uint32_t W, S, round;
    uint64_t n; /* floats per update */
    size_t window;
    const char *rule;
    shared_t *sh;
    uint64_t spot_at[SPOTS];
} large_t;

/* Update i's float j: a hash of (i, j), so any coordinate of any update
 * can be recomputed for the check without holding the updates. */
static inline float val(uint32_t i, uint64_t j)
{
    uint64_t z = (i + 1) * 0x9E3779B97F4A7C15ull + j * 0xBF58476D1CE4E5B9ull;
    z ^= z >> 31, z *= 0x94D049BB133111EBull, z ^= z >> 29;
    return (float)((double)(z >> 40) / (double)(1u << 24) * 2.0 - 1.0);
}

static float *make_update(const large_t *L, uint32_t i)
{
    float *u = malloc(L->n * sizeof *u);
    for (uint64_t j = 0; u != NULL && j < L->n; j++)
        u[j] = val(i, j);
    return u;
}

static void fail(large_t *L, const char *who, unsigned i, const char *msg)
{
    fprintf(stderr, "aggregate --large: %s %u: %s\n", who, i, msg);
    L->sh->failed = 1;
}

static void client(large_t *L, unsigned i)
{
    flc_err_t e = {0};
    float *u = make_update(L, i);
    flc_store_t *s = flc_store_open(L->url, bench_store_opts(), &e);
    pthread_barrier_wait(&L->sh->go);
    if (u == NULL || s == NULL) {
        fail(L, "client", i, u ? flc_err_msg(&e) : "out of memory");
    } else {
        flc_rs_push_cfg_t pc = {.job = JOB, .round = L->round, .client = NULL,
                                .num_shards = L->S, .model_size = L->n, .num_samples = 1 + i};
        char name[16];
        snprintf(name, sizeof name, "c%u", i);
        pc.client = name;
        if (flc_rs_push(s, &pc, u, &e) != 0 ||
            flc_rs_pull(s, JOB, L->round, L->S, L->n, 600000, u, &e) != 0)
            fail(L, "client", i, flc_err_msg(&e));
    }
    L->sh->done_ns[i] = flc_now_ns();
    for (int k = 0; i == 0 && u != NULL && k < SPOTS; k++)
        L->sh->spot[k] = u[L->spot_at[k]];
    flc_store_close(s);
    free(u);
}

static void merger(large_t *L, unsigned k)
{
    /* The bench's freed heap is resident and inherited: given back, then
     * the peak counted from here (VmHWM := VmRSS). */
    malloc_trim(0);
    flc_proc_reset_hwm(getpid());
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(L->url, bench_store_opts(), &e);
    const char *names[MAXP];
    char nm[MAXP][16];
    for (uint32_t i = 0; i < L->W; i++)
        snprintf(nm[i], sizeof nm[i], "c%u", i), names[i] = nm[i];
    flc_rs_merger_cfg_t mc = {.job = JOB, .round = L->round, .shard = k, .num_shards = L->S,
                              .model_size = L->n, .expected = names, .n_expected = L->W,
                              .deadline_ms = 600000, .readers = L->W,
                              .window_bytes = L->window};
    flc_merge_rule_init(&mc.rule, L->rule, &e);
    pthread_barrier_wait(&L->sh->go);
    flc_rs_report_t rep = {0};
    if (s == NULL || flc_rs_merger_run(s, &mc, &rep, &e) != 0)
        fail(L, "merger", k, flc_err_msg(&e));
    L->sh->rss_mb[k] = (double)flc_proc_status_kb(getpid(), "VmHWM") / 1024.0;
    L->sh->merge_ms[k] = rep.merge_ms;
    flc_rs_report_free(&rep);
    flc_store_close(s);
}

/* The round section's raw_same_bytes with processes: client i SETs its
 * update (W x M), GETs its W-th of every update (W x M) and SETs it back
 * as a W-th of a model (M), then GETs the whole model (W x M). */
static void raw_client(large_t *L, unsigned i)
{
    flc_err_t e = {0};
    float *u = make_update(L, i);
    size_t bytes = L->n * sizeof(float), chunk = FLC_STORE_CHUNK_DEFAULT;
    size_t nk = (bytes + chunk - 1) / chunk;
    size_t lo = nk * i / L->W, hi = nk * (i + 1) / L->W;
    char *scratch = malloc((hi - lo) * chunk);
    flc_store_t *s = flc_store_open(L->url, bench_store_opts(), &e);
    char prefix[64];
    int rc = u && scratch && s ? 0 : -1;
    pthread_barrier_wait(&L->sh->go);
    snprintf(prefix, sizeof prefix, "same:u%u", i);
    if (rc == 0)
        rc = bench_raw_chunks(s, "SET", prefix, 0, nk, bytes, (const char *)u, NULL);
    pthread_barrier_wait(&L->sh->phase);
    for (uint32_t j = 0; rc == 0 && j < L->W; j++) {
        snprintf(prefix, sizeof prefix, "same:u%u", j);
        rc = bench_raw_chunks(s, "GET", prefix, lo, hi, bytes, NULL, scratch);
    }
    snprintf(prefix, sizeof prefix, "same:m");
    if (rc == 0)
        rc = bench_raw_chunks(s, "SET", prefix, lo, hi, bytes, scratch, NULL);
    pthread_barrier_wait(&L->sh->phase);
    if (rc == 0)
        rc = bench_raw_chunks(s, "GET", prefix, 0, nk, bytes, NULL, (char *)u);
    if (rc != 0)
        fail(L, "raw client", i, s ? flc_store_errstr(s) : flc_err_msg(&e));
    L->sh->done_ns[i] = flc_now_ns();
    flc_store_close(s);
    free(u), free(scratch);
}

/* Forks nc processes of fn (and nm of mergers when given), releases them
 * together and returns the seconds from then to the last client's end. */
static double run_procs(large_t *L, void (*fn)(large_t *, unsigned), unsigned nc, unsigned nm)
{
    pthread_barrierattr_t ba;
    pthread_barrierattr_init(&ba);
    pthread_barrierattr_setpshared(&ba, PTHREAD_PROCESS_SHARED);
    pthread_barrier_init(&L->sh->go, &ba, nc + nm + 1);
    pthread_barrier_init(&L->sh->phase, &ba, nc);
    pid_t pid[2 * MAXP];
    unsigned np = 0;
    fflush(NULL);
    for (unsigned k = 0; k < nm + nc; k++) {
        pid_t p = fork();
        if (p == 0) {
            if (k < nm)
                merger(L, k);
            else
                fn(L, k - nm);
            _exit(L->sh->failed ? 1 : 0);
        }
        if (p > 0)
            pid[np++] = p;
    }
    pthread_barrier_wait(&L->sh->go);
    uint64_t t0 = flc_now_ns(), last = t0;
    for (unsigned k = 0; k < np; k++) {
        int st = 0;
        if (waitpid(pid[k], &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            L->sh->failed = 1; /* killed (the OOM killer) or failed */
    }
    for (unsigned i = 0; i < nc; i++)
        last = L->sh->done_ns[i] > last ? L->sh->done_ns[i] : last;
    pthread_barrier_destroy(&L->sh->go);
    pthread_barrier_destroy(&L->sh->phase);
    return (double)(last - t0) / 1e9;
}

/* used_memory or used_memory_peak of INFO memory, in MB. */
static double redis_mb(flc_store_t *admin, const char *field)
{
    redisReply *r;
    double mb = -1;
    if (flc_store_commandf(admin, &r, "INFO memory") != 0)
        return mb;
    char pat[64];
    snprintf(pat, sizeof pat, "\n%s:", field);
    const char *p = r->type == REDIS_REPLY_STRING ? strstr(r->str, pat) : NULL;
    if (p)
        mb = atof(p + strlen(pat)) / 1e6;
    freeReplyObject(r);
    return mb;
}

static void redis_do(flc_store_t *admin, const char *cmd)
{
    redisReply *r;
    if (flc_store_commandf(admin, &r, cmd) == 0)
        freeReplyObject(r);
}

/* The merged model's spots against the rule computed here from val(). */
static int spots_right(const large_t *L, int median)
{
    for (int k = 0; k < SPOTS; k++) {
        float v[MAXP];
        double num = 0, den = 0, want;
        for (uint32_t i = 0; i < L->W; i++) {
            v[i] = val(i, L->spot_at[k]);
            num += (1.0 + i) * v[i], den += 1.0 + i;
        }
        if (median) { /* insertion sort; even W: the mean of the middle two */
            for (uint32_t a = 1; a < L->W; a++)
                for (uint32_t b = a; b > 0 && v[b - 1] > v[b]; b--) {
                    float t = v[b];
                    v[b] = v[b - 1], v[b - 1] = t;
                }
            want = L->W % 2 ? v[L->W / 2] : ((double)v[L->W / 2 - 1] + v[L->W / 2]) / 2;
        } else {
            want = num / den;
        }
        if (fabs(L->sh->spot[k] - want) > 1e-6)
            return 0;
    }
    return 1;
}

static size_t env_num(const char *name, size_t def)
{
    const char *s = getenv(name);
    long long v = s ? atoll(s) : 0;
    return v > 0 ? (size_t)v : def;
}

static double mem_available_mb(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    double mb = 0;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "MemAvailable:", 13) == 0)
            mb = atof(line + 13) / 1024.0;
    if (f)
        fclose(f);
    return mb;
}

int bench_large_run(void)
{
    size_t mb = env_num("FLCACHE_BENCH_LARGE_MB", 1024), fell_from = 0;
    uint32_t W = (uint32_t)env_num("FLCACHE_BENCH_LARGE_W", 6);
    uint32_t S = (uint32_t)env_num("FLCACHE_BENCH_LARGE_S", 8);
    const char *rules = getenv("FLCACHE_BENCH_LARGE_RULES");
    rules = rules && *rules ? rules : "fedavg,median";
    if (W > MAXP || S > MAXP || W == 0 || S == 0) {
        fprintf(stderr, "aggregate --large: W and S must be 1..%d\n", MAXP);
        return 1;
    }
    /* The run's peak: the clients' updates, Redis holding them and the
     * merged model (the mergers hold windows: aggregator/rs_defer.c). */
    double need = (2.0 * W + 1.2) * (double)mb;
    if (getenv("FLCACHE_BENCH_LARGE_MB") == NULL && need > 0.9 * mem_available_mb()) {
        fell_from = mb;
        mb /= 2;
        fprintf(stderr, "aggregate --large: %zu MiB updates need ~%.0f MB, %.0f MB available: "
                "running %zu MiB\n", fell_from, need, mem_available_mb(), mb);
    }
    large_t L = {.W = W, .S = S, .n = (uint64_t)mb * 1024 * 1024 / sizeof(float),
                 .window = env_num("FLCACHE_BENCH_LARGE_WINDOW_KB", 0) * 1024};
    L.sh = mmap(NULL, sizeof *L.sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (L.sh == MAP_FAILED)
        return 1;
    for (int k = 0; k < SPOTS; k++) /* both ends, shard edges, the middle */
        L.spot_at[k] = k == SPOTS - 1 ? L.n - 1 : L.n / (SPOTS - 1) * (uint64_t)k + (uint64_t)k;
    flc_err_t e = {0};
    flc_embed_opts_t eo = {.tcp_port = -1}; /* no maxmemory, nothing on disk */
    flc_embed_t *srv = flc_embed_start(&eo, &e);
    flc_store_t *admin = srv ? flc_store_open(flc_embed_url(srv), bench_store_opts(), &e) : NULL;
    if (admin == NULL) {
        fprintf(stderr, "aggregate --large: %s\n", flc_err_msg(&e));
        flc_embed_stop(srv);
        return 1;
    }
    L.url = flc_embed_url(srv);
    /* One raw round first, untimed: the private server keeps the pages it
     * frees (embed.c), so every timed run, raw or protocol, then finds
     * its memory faulted in; without it the first timed run (raw) paid
     * for faulting ~W x M bytes into redis-server that the protocol run
     * after it reused (sys time was 60% of the CPU at 1 GiB). */
    memset(L.sh, 0, sizeof *L.sh);
    run_procs(&L, raw_client, W, 0);
    redis_do(admin, "FLUSHALL");
    int fails = 0;
    char list[256];
    snprintf(list, sizeof list, "%s", rules);
    for (char *save = NULL, *rule = strtok_r(list, ",", &save); rule;
         rule = strtok_r(NULL, ",", &save), L.round++) {
        L.rule = rule;
        memset(L.sh, 0, sizeof *L.sh);
        double raw = run_procs(&L, raw_client, W, 0);
        redis_do(admin, "FLUSHALL");
        redis_do(admin, "CONFIG RESETSTAT"); /* the peak from here */
        int failed = L.sh->failed;
        memset(L.sh, 0, sizeof *L.sh);
        double t = run_procs(&L, client, W, S);
        failed |= L.sh->failed;
        double used = redis_mb(admin, "used_memory"), peak = redis_mb(admin, "used_memory_peak");
        flc_store_forget_job(admin, JOB);
        redis_do(admin, "FLUSHALL");
        int median = strcmp(rule, "median") == 0;
        int streams = strcmp(rule, "fedavg") == 0 || strcmp(rule, "mean") == 0;
        int right = !failed && (streams || median ? spots_right(&L, median) : 1);
        double shard_mb = (double)L.n / S * sizeof(float) / 1e6;
        double max_rss = 0;
        cJSON *o = bench_line("aggregate", "large");
        cJSON_AddStringToObject(o, "rule", rule);
        cJSON_AddStringToObject(o, "family", streams ? "streaming" : "collecting");
        cJSON_AddNumberToObject(o, "workers", W);
        cJSON_AddNumberToObject(o, "shards", S);
        cJSON_AddNumberToObject(o, "update_mb", (double)L.n * sizeof(float) / 1e6);
        if (fell_from)
            cJSON_AddNumberToObject(o, "fell_back_from_mib", (double)fell_from);
        cJSON_AddNumberToObject(o, "shard_mb", shard_mb);
        cJSON_AddNumberToObject(o, "round_ms", t * 1e3);
        cJSON_AddNumberToObject(o, "raw_same_bytes_ms", raw * 1e3);
        cJSON_AddNumberToObject(o, "update_gbps", W * (double)L.n * sizeof(float) / 1e9 / t);
        cJSON_AddNumberToObject(o, "ratio_to_same_bytes", t / raw);
        cJSON *each = cJSON_AddArrayToObject(o, "merger_peak_rss_mb_each");
        double longest = 0;
        for (uint32_t k = 0; k < S; k++) {
            cJSON_AddItemToArray(each, cJSON_CreateNumber(round(L.sh->rss_mb[k] * 10) / 10));
            max_rss = L.sh->rss_mb[k] > max_rss ? L.sh->rss_mb[k] : max_rss;
            longest = L.sh->merge_ms[k] > longest ? L.sh->merge_ms[k] : longest;
        }
        cJSON_AddNumberToObject(o, "merger_peak_rss_mb", max_rss);
        cJSON_AddNumberToObject(o, "merger_rss_goal_mb",
                                (streams ? 2.0 : (double)W) * shard_mb + 64);
        cJSON_AddNumberToObject(o, "longest_merge_ms", longest);
        cJSON_AddNumberToObject(o, "redis_used_mb", used);
        cJSON_AddNumberToObject(o, "redis_peak_mb", peak);
        cJSON_AddBoolToObject(o, "result_checked", right);
        bench_emit(o);
        fails += !right;
    }
    flc_store_close(admin);
    flc_embed_stop(srv);
    munmap(L.sh, sizeof *L.sh);
    return fails;
}
