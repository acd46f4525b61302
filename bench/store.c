/* bench/store: put and get throughput of 1 MB and 16 MB shards through the
 * store, over the unix socket and TCP, side by side with raw Redis moving the
 * same bytes in the same run:
 *   raw_pipelined  the bytes as chunk-sized SETs / GETs of plain keys,
 *                  pipelined (what redis-benchmark -P measures): Redis's ceiling
 *   raw_single     one SET / GET of the whole value through redisCommand
 *                  (the hiredis 0.14 large-value trap docs/architecture.md describes)
 *   redis_benchmark  the redis-benchmark tool itself (-d bytes -c 1), if installed
 * One JSON line per (op, transport, size), with ratio_to_raw = store / raw_pipelined
 * (goal >= 0.77, i.e. within 1.3x). A final sweep varies the chunk size.
 *
 * Usage: bench/store [--quick]   (FLCACHE_BENCH_REPS scales repetitions) */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "bench/bench_util.h"
#include "cache/embed.h"
#include "cache/store.h"
#include "cache/store_raw.h"

typedef struct {
    double put_gbps, get_gbps, put_p50_ms, get_p50_ms;
} result_t;

static void die(const char *what, const char *msg)
{
    bench_die("bench/store", what, msg);
}

static result_t run_store(flc_store_t *st, float *v, size_t n, int reps)
{
    flc_shard_t sh = {0};
    snprintf(sh.job, sizeof sh.job, "bench");
    snprintf(sh.client, sizeof sh.client, "w0");
    sh.num_shards = 1;
    sh.count = n;
    sh.model_size = n;
    sh.values = v;
    double *tp = calloc(reps, sizeof *tp), *tg = calloc(reps, sizeof *tg);
    float *dst = malloc(n * sizeof *dst);
    double put_total = 0, get_total = 0;
    for (int i = 0; i < reps; i++) {
        sh.round = (uint32_t)i;
        uint64_t t0 = flc_now_ns();
        if (flc_store_put_update(st, &sh) != 0)
            die("put", flc_store_errstr(st));
        uint64_t t1 = flc_now_ns();
        flc_shard_t out;
        if (flc_store_get_update(st, "bench", (uint32_t)i, 0, "w0", &out, dst, n) != 0)
            die("get", flc_store_errstr(st));
        uint64_t t2 = flc_now_ns();
        tp[i] = (t1 - t0) / 1e6;
        tg[i] = (t2 - t1) / 1e6;
        put_total += tp[i];
        get_total += tg[i];
        if (memcmp(dst, v, n * sizeof *v) != 0)
            die("get", "data differs");
        flc_store_delete_round(st, "bench", (uint32_t)i);
    }
    double bytes = (double)n * sizeof(float);
    result_t r = {bytes * reps / (put_total / 1e3) / 1e9, bytes * reps / (get_total / 1e3) / 1e9,
                  bench_median(tp, reps), bench_median(tg, reps)};
    free(tp);
    free(tg);
    free(dst);
    return r;
}

/* The same bytes as chunk-sized plain SETs into fresh keys, pipelined; then
 * GETs; then (untimed) DEL. Fresh keys deleted after each rep give Redis the
 * same allocation pattern as the store's put / get / delete_round, so the
 * ratio compares protocol cost, not allocator luck. */
static result_t run_raw_pipelined(redisContext *c, const char *buf, size_t bytes, size_t chunk,
                                  int reps)
{
    size_t nk = (bytes + chunk - 1) / chunk;
    double put_total = 0, get_total = 0;
    double *tp = calloc(reps, sizeof *tp), *tg = calloc(reps, sizeof *tg);
    char *dst = malloc(bytes);
    for (int i = 0; i < reps; i++) {
        uint64_t t0 = flc_now_ns();
        for (size_t k = 0; k < nk; k++) {
            size_t len = bytes - k * chunk < chunk ? bytes - k * chunk : chunk;
            char key[64];
            snprintf(key, sizeof key, "raw:%d:%zu", i, k);
            const char *argv[] = {"SET", key, buf + k * chunk};
            size_t lens[] = {3, strlen(key), len};
            redisAppendCommandArgv(c, 3, argv, lens);
            int done = 0; /* flush per chunk: see cache/store_put.c */
            while (!done)
                if (redisBufferWrite(c, &done) != REDIS_OK)
                    die("raw SET", c->errstr);
        }
        for (size_t k = 0; k < nk; k++) {
            redisReply *r;
            if (redisGetReply(c, (void **)&r) != REDIS_OK)
                die("raw SET", c->errstr);
            freeReplyObject(r);
        }
        uint64_t t1 = flc_now_ns();
        for (size_t k = 0; k < nk; k++) {
            char key[64];
            snprintf(key, sizeof key, "raw:%d:%zu", i, k);
            redisAppendCommand(c, "GET %s", key);
        }
        for (size_t k = 0; k < nk; k++) {
            redisReply *r;
            if (redisGetReply(c, (void **)&r) != REDIS_OK)
                die("raw GET", c->errstr);
            memcpy(dst + k * chunk, r->str, r->len);
            freeReplyObject(r);
        }
        uint64_t t2 = flc_now_ns();
        for (size_t k = 0; k < nk; k++) {
            char key[64];
            snprintf(key, sizeof key, "raw:%d:%zu", i, k);
            redisAppendCommand(c, "DEL %s", key);
        }
        for (size_t k = 0; k < nk; k++) {
            redisReply *r;
            if (redisGetReply(c, (void **)&r) != REDIS_OK)
                die("raw DEL", c->errstr);
            freeReplyObject(r);
        }
        tp[i] = (t1 - t0) / 1e6;
        tg[i] = (t2 - t1) / 1e6;
        put_total += tp[i];
        get_total += tg[i];
    }
    redisReply *r = redisCommand(c, "FLUSHDB");
    freeReplyObject(r);
    result_t res = {bytes * (double)reps / (put_total / 1e3) / 1e9,
                    bytes * (double)reps / (get_total / 1e3) / 1e9, bench_median(tp, reps),
                    bench_median(tg, reps)};
    free(tp);
    free(tg);
    free(dst);
    return res;
}

static result_t run_raw_single(redisContext *c, const char *buf, size_t bytes, int reps)
{
    double put_total = 0, get_total = 0;
    double *tp = calloc(reps, sizeof *tp), *tg = calloc(reps, sizeof *tg);
    for (int i = 0; i < reps; i++) {
        uint64_t t0 = flc_now_ns();
        redisReply *r = redisCommand(c, "SET raw %b", buf, bytes);
        if (r == NULL)
            die("raw single SET", c->errstr);
        freeReplyObject(r);
        uint64_t t1 = flc_now_ns();
        r = redisCommand(c, "GET raw");
        if (r == NULL)
            die("raw single GET", c->errstr);
        freeReplyObject(r);
        uint64_t t2 = flc_now_ns();
        tp[i] = (t1 - t0) / 1e6;
        tg[i] = (t2 - t1) / 1e6;
        put_total += tp[i];
        get_total += tg[i];
    }
    result_t res = {bytes * (double)reps / (put_total / 1e3) / 1e9,
                    bytes * (double)reps / (get_total / 1e3) / 1e9, bench_median(tp, reps),
                    bench_median(tg, reps)};
    free(tp);
    free(tg);
    return res;
}

/* Runs redis-benchmark for SET and GET of `bytes`-byte values; GB/s or 0. */
static result_t run_redis_benchmark(const flc_embed_t *e, int tcp, size_t bytes, int reps)
{
    result_t res = {0};
    char cmd[512];
    if (tcp)
        snprintf(cmd, sizeof cmd,
                 "redis-benchmark -h 127.0.0.1 -p %d -t set,get -d %zu -n %d -c 1 --csv 2>/dev/null",
                 flc_embed_port(e), bytes, reps);
    else
        snprintf(cmd, sizeof cmd,
                 "redis-benchmark -s %s/redis.sock -t set,get -d %zu -n %d -c 1 --csv 2>/dev/null",
                 flc_embed_dir(e), bytes, reps);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return res;
    char line[512];
    while (fgets(line, sizeof line, p)) {
        double rps;
        if (sscanf(line, "\"SET\",\"%lf\"", &rps) == 1)
            res.put_gbps = rps * (double)bytes / 1e9;
        else if (sscanf(line, "\"GET\",\"%lf\"", &rps) == 1)
            res.get_gbps = rps * (double)bytes / 1e9;
    }
    pclose(p);
    return res;
}

static void emit(const char *op, const char *transport, size_t bytes, int reps, double gbps,
                 double p50, double raw, double single, double rb, size_t chunk)
{
    cJSON *o = bench_line("store", op);
    cJSON_AddStringToObject(o, "transport", transport);
    cJSON_AddNumberToObject(o, "bytes", (double)bytes);
    cJSON_AddNumberToObject(o, "chunk", (double)chunk);
    cJSON_AddNumberToObject(o, "reps", reps);
    cJSON_AddNumberToObject(o, "gbps", gbps);
    cJSON_AddNumberToObject(o, "p50_ms", p50);
    cJSON_AddNumberToObject(o, "raw_pipelined_gbps", raw);
    cJSON_AddNumberToObject(o, "ratio_to_raw", raw > 0 ? gbps / raw : 0);
    cJSON_AddNumberToObject(o, "raw_single_gbps", single);
    if (rb > 0)
        cJSON_AddNumberToObject(o, "redis_benchmark_gbps", rb);
    bench_emit(o);
}

int main(int argc, char **argv)
{
    bench_config();
    signal(SIGPIPE, SIG_IGN);
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    flc_err_t err = {0};
    flc_embed_opts_t eo = {.tcp_port = -1};
    flc_embed_t *e = flc_embed_start(&eo, &err);
    if (e == NULL)
        die("redis-server", flc_err_msg(&err));
    size_t sizes[] = {1u << 20, 16u << 20};
    const char *names[] = {"unix", "tcp"};
    const char *urls[] = {flc_embed_url(e), flc_embed_tcp_url(e)};
    size_t maxn = sizes[1] / sizeof(float);
    float *v = malloc(maxn * sizeof *v);
    for (size_t i = 0; i < maxn; i++)
        v[i] = (float)i * 0.5f;
    for (int t = 0; t < 2; t++) {
        flc_store_t *st = flc_store_open(urls[t], bench_store_opts(), &err);
        if (st == NULL)
            die("open", flc_err_msg(&err));
        struct timeval tv = {60, 0};
        char sock[300];
        snprintf(sock, sizeof sock, "%s/redis.sock", flc_embed_dir(e));
        redisContext *c = t == 0 ? redisConnectUnixWithTimeout(sock, tv)
                   : redisConnectWithTimeout("127.0.0.1", flc_embed_port(e), tv);
        if (c == NULL || c->err)
            die("raw connect", c ? c->errstr : "oom");
        c->reader->maxbuf = 0;
        for (int k = 0; k < 2; k++) {
            size_t n = sizes[k] / sizeof(float);
            int reps = bench_reps(k == 0 ? (quick ? 20 : 200) : (quick ? 3 : 20));
            size_t chunk = flc_store_chunk_bytes(st);
            /* warm-up */
            run_store(st, v, n, 1);
            /* Each side runs its reps in a block, in its own steady state
             * (buffers and server memory reused, as in a training loop).
             * Alternating rep by rep measured both sides 3-10x slower: in
             * this VM a fresh page costs ~10 us to fault in, and switching
             * between allocation patterns keeps memory fresh. */
            result_t s = run_store(st, v, n, reps);
            result_t raw = run_raw_pipelined(c, (const char *)v, sizes[k], chunk, reps);
            result_t one = run_raw_single(c, (const char *)v, sizes[k], reps < 5 ? reps : 5);
            result_t rb = run_redis_benchmark(e, t == 1, sizes[k], k == 0 ? 100 : 10);
            emit("put", names[t], sizes[k], reps, s.put_gbps, s.put_p50_ms, raw.put_gbps,
                 one.put_gbps, rb.put_gbps, chunk);
            emit("get", names[t], sizes[k], reps, s.get_gbps, s.get_p50_ms, raw.get_gbps,
                 one.get_gbps, rb.get_gbps, chunk);
        }
        redisFree(c);
        flc_store_close(st);
    }
    /* Chunk-size sweep for 16 MB over the unix socket. */
    flc_store_t *st = flc_store_open(urls[0], bench_store_opts(), &err);
    size_t chunks[] = {64u << 10, 256u << 10, 1u << 20, 4u << 20};
    for (int i = 0; i < 4; i++) {
        flc_store_set_chunk_bytes(st, chunks[i]);
        int reps = bench_reps(quick ? 3 : 10);
        result_t s = run_store(st, v, maxn, reps);
        cJSON *o = bench_line("store", "chunk_sweep");
        cJSON_AddStringToObject(o, "transport", "unix");
        cJSON_AddNumberToObject(o, "bytes", (double)sizes[1]);
        cJSON_AddNumberToObject(o, "chunk", (double)chunks[i]);
        cJSON_AddNumberToObject(o, "put_gbps", s.put_gbps);
        cJSON_AddNumberToObject(o, "get_gbps", s.get_gbps);
        bench_emit(o);
    }
    flc_store_close(st);
    free(v);
    flc_embed_stop(e);
    return 0;
}
