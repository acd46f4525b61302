/* cache/store and shard frames on bad days: server down, server killed in
 * the middle of a pipelined put, restart and reconnect, truncated and corrupt
 * frames, element-count mismatch, oversized messages, a full cache (OOM), a
 * wrong password, unknown rounds. Each error must be a code and a sentence,
 * and must not lose what was already stored. The cases that only read and
 * write keys share one server; the ones that fill it, kill it or restart it
 * start their own. */
#include <pthread.h>
#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "cache/embed.h"
#include "cache/store.h"
#include "cache/store_raw.h"
#include "tests/harness.h"

static flc_shard_t shard_of(const char *job, const char *client, uint64_t n, float *v)
{
    flc_shard_t s = {0};
    snprintf(s.job, sizeof s.job, "%s", job);
    snprintf(s.client, sizeof s.client, "%s", client);
    s.round = 1;
    s.num_shards = 1;
    s.count = n;
    s.model_size = n;
    s.values = v;
    return s;
}

struct killer {
    flc_fixture_t *fx;
    unsigned after_ms;
};

static void *kill_later(void *arg)
{
    struct killer *k = arg;
    flc_sleep_ms(k->after_ms);
    flc_embed_kill(k->fx->srv);
    return NULL;
}

static void raw_set(flc_store_t *st, const char *key, const void *buf, size_t len)
{
    redisReply *r;
    const char *argv[] = {"SET", key, buf};
    size_t lens[] = {3, strlen(key), len};
    if (flc_store_command(st, &r, 3, argv, lens) == 0)
        freeReplyObject(r);
}

#define N 4000000 /* floats in a big update: 16 MB */

static flc_fixture_t fx;

static void setup(void)
{
    flc_fixture_start(&fx, 0);
}

static void teardown(void)
{
    flc_fixture_stop(&fx);
}

static flc_store_t *open_store(const flc_fixture_t *on)
{
    flc_err_t e = {0};
    flc_store_t *st = flc_store_open(on->unix_url, NULL, &e);
    if (st == NULL)
        flc_t_fatal("cannot connect: %s", flc_err_msg(&e));
    return st;
}

/* N reproducible floats (seed 3); the caller frees them. */
static float *big_values(void)
{
    float *v = malloc(N * sizeof *v);
    flc_t_fill(v, N, 3);
    return v;
}

/* Stores the 1000-float update of client "keep" (job err, round 1) that the
 * failures must not lose. */
static void put_keep(flc_store_t *st, float *v)
{
    flc_shard_t small = shard_of("err", "keep", 1000, v);
    CHECK(flc_store_put_update(st, &small) == 0, "store a 1000-float update to keep");
}

/* Server down: nothing listens on a fresh free port. */
TEST(server_down)
{
    flc_err_t e = {0};
    int port = flc_embed_unused_port(&e);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d", port);
    flc_store_t *none = flc_store_open(url, NULL, &e);
    EXPECT(none == NULL && e.code == FLC_ECONN && strstr(e.msg, url) != NULL,
           "server down: open fails with ECONN naming the URL: %s", e.msg);
    none = flc_store_open("unix:///nonexistent/redis.sock", NULL, &e);
    EXPECT(none == NULL && e.code == FLC_ECONN, "missing unix socket: %s", e.msg);
}

/* Truncated, cut, short and corrupt frames, decoded without a server. */
TEST(frame_decode_errors)
{
    flc_err_t e = {0};
    float *v = big_values();
    uint8_t *frame;
    size_t flen;
    flc_shard_t f = shard_of("err", "trunc", 4096, v);
    flc_shard_encode(&f, &frame, &flen, NULL);
    flc_shard_t out = {0};
    int rc = flc_shard_decode(frame, flen - 100, SIZE_MAX, &out, &e);
    EXPECT(rc == FLC_EDATA && strstr(e.msg, "truncated"), "decode of a truncated frame: %s",
           e.msg);
    rc = flc_shard_decode(frame, 20, SIZE_MAX, &out, &e);
    EXPECT(rc == FLC_EDATA, "decode of a frame cut inside its header: %s", e.msg);
    /* Element-count mismatch: header says 4096 floats, payload holds 4000. */
    rc = flc_shard_decode(frame, flen - 96 * 4, SIZE_MAX, &out, &e);
    EXPECT(rc == FLC_EDATA && strstr(e.msg, "payload has 4000 floats, header says 4096"),
           "count mismatch named: %s", e.msg);
    free(frame);
    /* Corrupt header. */
    uint8_t junk[64] = "FLS1\x10\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff";
    rc = flc_shard_decode(junk, sizeof junk, SIZE_MAX, &out, &e);
    EXPECT(rc == FLC_EDATA, "corrupt protobuf header: %s", e.msg);
    free(v);
}

/* The key of client's update of round 1, shard 0 of 1, of job err. */
static const char *err_key(char *key, const char *client)
{
    char tag[FLC_TAG_MAX];
    flc_key_shard_tag(tag, "err", 0, 1);
    flc_key_update(key, tag, 1, client);
    return key;
}

/* A truncated frame and a value that is no frame, written raw under the keys
 * a reader will ask for. */
TEST(bad_values_read)
{
    float *v = big_values();
    flc_store_t *st = open_store(&fx);
    uint8_t *frame;
    size_t flen;
    flc_shard_t f = shard_of("err", "trunc", 4096, v);
    flc_shard_encode(&f, &frame, &flen, NULL);
    flc_shard_t out = {0};
    char key[FLC_KEY_MAX];
    flc_store_job_shards(st, "err", 1); /* the reader knows where the job's shard lives */
    raw_set(st, err_key(key, "trunc"), frame, flen - 96);
    free(frame);
    int rc = flc_store_get_update(st, "err", 1, 0, "trunc", &out, NULL, 0);
    EXPECT(rc == FLC_EDATA, "store read of a truncated value: %s", flc_store_errstr(st));
    raw_set(st, err_key(key, "junk"), "hello world", 11);
    rc = flc_store_get_update(st, "err", 1, 0, "junk", &out, NULL, 0);
    EXPECT(rc == FLC_EDATA && strstr(flc_store_errstr(st), "magic"),
           "a value that is not a frame: %s", flc_store_errstr(st));
    flc_store_close(st);
    free(v);
}

/* A multi-chunk value missing one chunk (evicted field, partial copy). */
TEST(missing_chunk)
{
    float *v = big_values();
    flc_store_t *st = open_store(&fx);
    flc_shard_t out = {0};
    flc_shard_t hole = shard_of("err", "hole", N, v);
    int rc = flc_store_put_update(st, &hole);
    redisReply *hr = NULL;
    char key[FLC_KEY_MAX];
    if (rc == 0 && flc_store_commandf(st, &hr, "HDEL %s 5", err_key(key, "hole")) == 0)
        freeReplyObject(hr);
    rc = flc_store_get_update(st, "err", 1, 0, "hole", &out, NULL, 0);
    /* Since issue 13 (finding 5) the chunk count is checked against the
     * header before anything is allocated: 61 of 62 chunks is refused there. */
    CHECK(rc == FLC_EDATA && strstr(flc_store_errstr(st), "the value has 61 chunks"),
          "a 16 MB value with a chunk missing: %s", flc_store_errstr(st));
    flc_store_close(st);
    free(v);
}

/* Header inconsistent with the model: shard outside 0..num_shards-1,
 * elements beyond the model; a job name that breaks the key schema. */
TEST(bad_headers_refused)
{
    float v[10] = {0};
    flc_store_t *st = open_store(&fx);
    flc_shard_t bad = shard_of("err", "bad", 10, v);
    bad.shard = 4;
    bad.num_shards = 4;
    int rc = flc_store_put_update(st, &bad);
    EXPECT(rc == FLC_EDATA && strstr(flc_store_errstr(st), "shard index 4"),
           "shard index out of range refused: %s", flc_store_errstr(st));
    bad.shard = 0;
    bad.offset = 5;
    rc = flc_store_put_update(st, &bad);
    EXPECT(rc == FLC_EDIM && strstr(flc_store_errstr(st), "outside the model"),
           "elements outside the model refused: %s", flc_store_errstr(st));
    flc_shard_t badname = shard_of("a{b", "c", 1, v);
    rc = flc_store_put_update(st, &badname);
    EXPECT(rc == FLC_EINVAL && strstr(flc_store_errstr(st), "'{'"),
           "job name breaking the key schema refused: %s", flc_store_errstr(st));
    /* A series is one '/': job/series, both parts names. */
    flc_shard_t series = shard_of("a/b/c", "c", 1, v);
    rc = flc_store_put_update(st, &series);
    EXPECT(rc == FLC_EINVAL && strstr(flc_store_errstr(st), "<job>/<series>"),
           "a job name with two '/' refused: %s", flc_store_errstr(st));
    flc_store_close(st);
}

/* Oversized: a store with a 1 MB message limit. */
TEST(message_limit)
{
    flc_err_t e = {0};
    float *v = big_values();
    flc_store_t *st = open_store(&fx);
    flc_shard_t out = {0};
    flc_store_opts_t lim = {.max_msg_bytes = 1 << 20};
    flc_store_t *sl = flc_store_open(fx.unix_url, &lim, &e);
    flc_shard_t big = shard_of("err", "big", 300000, v); /* 1.2 MB */
    int rc = flc_store_put_update(sl, &big);
    EXPECT(rc == FLC_ETOOBIG && strstr(flc_store_errstr(sl), "limit"),
           "put over the message limit: %s", flc_store_errstr(sl));
    CHECK(flc_store_put_update(st, &big) == 0, "the same shard fits a store with the default limit");
    rc = flc_store_get_update(sl, "err", 1, 0, "big", &out, NULL, 0);
    EXPECT(rc == FLC_ETOOBIG, "get over the message limit refused before allocating: %s",
           flc_store_errstr(sl));
    flc_store_close(sl);
    flc_store_close(st);
    free(v);
}

TEST(unknown_round_and_job)
{
    float *v = big_values();
    flc_store_t *st = open_store(&fx);
    put_keep(st, v);
    flc_shard_t out = {0};
    int rc = flc_store_get_update(st, "err", 7, 0, "keep", &out, NULL, 0);
    EXPECT(rc == FLC_ENOTFOUND && strstr(flc_store_errstr(st), "round 7"),
           "unknown round: %s", flc_store_errstr(st));
    uint32_t *rounds;
    size_t nr;
    rc = flc_store_list_rounds(st, "nosuchjob", &rounds, &nr);
    EXPECT(rc == FLC_ENOTFOUND && strstr(flc_store_errstr(st), "nosuchjob"), "unknown job: %s",
           flc_store_errstr(st));
    flc_store_close(st);
    free(v);
}

TEST(wrong_password)
{
    flc_err_t e = {0};
    char purl[400];
    snprintf(purl, sizeof purl, "unix://:wrong@%s", fx.unix_url + 7);
    flc_store_t *sp = flc_store_open(purl, NULL, &e);
    CHECK(sp == NULL && e.code == FLC_EAUTH, "wrong password refused: %s", e.msg);
}

/* Full cache: maxmemory 20 MB, a 16 MB put fails with OOM part-way; the
 * earlier update stays readable and no tmp key is left behind. On a server
 * of its own, since it fills it. */
TEST(full_cache_oom)
{
    flc_fixture_t own;
    flc_fixture_start(&own, 0);
    float *v = big_values();
    flc_store_t *st = open_store(&own);
    put_keep(st, v);
    flc_shard_t out = {0};
    redisReply *r;
    flc_store_commandf(st, &r, "CONFIG SET maxmemory 20mb");
    freeReplyObject(r);
    flc_shard_t huge = shard_of("err", "huge", N, v);
    flc_store_put_update(st, &huge);
    flc_shard_t huge2 = shard_of("err", "huge2", N, v);
    int rc = flc_store_put_update(st, &huge2);
    EXPECT(rc == FLC_ENOMEM && strstr(flc_store_errstr(st), "OOM"),
           "put into a full cache fails: %s", flc_store_errstr(st));
    char key[FLC_KEY_MAX];
    flc_store_commandf(st, &r, "EXISTS %s", err_key(key, "huge2"));
    EXPECT(r->integer == 0, "the failed update is not visible");
    freeReplyObject(r);
    flc_store_commandf(st, &r, "DBSIZE");
    long long keys_after = r->integer;
    freeReplyObject(r);
    flc_store_commandf(st, &r, "SCAN 0 MATCH *~tmp* COUNT 1000");
    EXPECT(r->element[1]->elements == 0, "no tmp key left behind (%lld keys in db)", keys_after);
    freeReplyObject(r);
    rc = flc_store_get_update(st, "err", 1, 0, "keep", &out, NULL, 0);
    EXPECT(rc == 0 && memcmp(out.values, v, 1000 * 4) == 0,
           "the earlier update is intact after the failure");
    flc_shard_release(&out);
    flc_store_close(st);
    free(v);
    flc_fixture_stop(&own);
}

/* Server killed in the middle of pipelined puts (small chunks make each put
 * thousands of commands long), then restarted: the same store reconnects.
 * One sequence on purpose (the restart is of the server the kill stopped),
 * on a server of its own. */
TEST(killed_mid_pipeline_then_restart)
{
    flc_err_t e = {0};
    flc_fixture_t own;
    flc_fixture_start(&own, 0);
    float *v = big_values();
    flc_store_t *st = open_store(&own);
    put_keep(st, v);
    flc_shard_t out = {0};
    flc_store_set_chunk_bytes(st, 4096);
    struct killer k = {.fx = &own, .after_ms = 30};
    pthread_t th;
    pthread_create(&th, NULL, kill_later, &k);
    int failed_at = -1;
    uint64_t t0 = flc_now_ns();
    for (int i = 0; i < 200 && failed_at < 0; i++) {
        flc_shard_t h = shard_of("err", "during", N, v);
        if (flc_store_put_update(st, &h) != 0)
            failed_at = i;
    }
    pthread_join(th, NULL);
    int rc = flc_store_error(st)->code;
    CHECK(failed_at >= 0 && (rc == FLC_ECONN || rc == FLC_ETIMEOUT),
          "put fails cleanly when the server dies mid-pipeline (after %.0f ms): %s",
          (flc_now_ns() - t0) / 1e6, flc_store_errstr(st));
    rc = flc_store_get_update(st, "err", 1, 0, "keep", &out, NULL, 0);
    CHECK(rc == FLC_ECONN, "calls while the server is down fail with ECONN: %s",
          flc_store_errstr(st));

    /* Restart: the same store reconnects on its next call. */
    CHECK(flc_embed_restart(own.srv, &e) == 0, "server restarted");
    flc_store_set_chunk_bytes(st, FLC_STORE_CHUNK_DEFAULT);
    flc_shard_t small = shard_of("err", "keep", 1000, v);
    rc = flc_store_put_update(st, &small);
    CHECK(rc == 0, "the store reconnects by itself after a restart");
    rc = flc_store_get_update(st, "err", 1, 0, "keep", &out, NULL, 0);
    CHECK(rc == 0 && memcmp(out.values, v, 1000 * 4) == 0, "and reads again");
    flc_shard_release(&out);
    flc_store_close(st);
    free(v);
    flc_fixture_stop(&own);
}

/* Whether the allocator of the server at url reports the line "opt.<what>"
 * (MEMORY MALLOC-STATS prints jemalloc's options; the process's environ
 * is overwritten by redis-server's process title). */
static int jemalloc_says(const char *url, const char *what)
{
    flc_err_t e = {0};
    flc_store_t *st = flc_store_open(url, NULL, &e);
    redisReply *r = NULL;
    int yes = st != NULL && flc_store_commandf(st, &r, "MEMORY MALLOC-STATS") == 0 &&
              (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS) &&
              strstr(r->str, what) != NULL;
    if (r)
        freeReplyObject(r);
    flc_store_close(st);
    return yes;
}

/* A private server keeps its freed pages 5 s and gives them back lazily
 * unless told otherwise (embed.c: faults cost a trap on these VMs), also
 * once restarted; "default" gives jemalloc's own decay; other options are
 * passed as they are. */
TEST(private_server_malloc_conf)
{
    const char *kept = "opt.dirty_decay_ms: 5000", *muzzy = "opt.muzzy_decay_ms: -1";
    flc_err_t e = {0};
    flc_embed_t *srv = flc_embed_start(NULL, &e);
    CHECK(srv != NULL, "a private server starts: %s", e.msg);
    EXPECT(jemalloc_says(flc_embed_url(srv), kept) && jemalloc_says(flc_embed_url(srv), muzzy),
           "its allocator keeps freed pages 5 s, then lazily (%s, %s)", kept, muzzy);
    EXPECT(flc_embed_kill(srv) == 0 && flc_embed_restart(srv, &e) == 0 &&
               jemalloc_says(flc_embed_url(srv), kept), "and again after a restart");
    flc_embed_stop(srv);
    flc_embed_opts_t o = {.malloc_conf = "default"};
    srv = flc_embed_start(&o, &e);
    CHECK(srv != NULL, "a private server with \"default\" starts: %s", e.msg);
    EXPECT(!jemalloc_says(flc_embed_url(srv), kept), "its allocator purges (jemalloc's default)");
    flc_embed_stop(srv);
    o.malloc_conf = "dirty_decay_ms:12345";
    srv = flc_embed_start(&o, &e);
    CHECK(srv != NULL, "a private server with dirty_decay_ms:12345 starts: %s", e.msg);
    EXPECT(jemalloc_says(flc_embed_url(srv), "opt.dirty_decay_ms: 12345"),
           "its allocator has the caller's option instead");
    flc_embed_stop(srv);
}

TEST(nonfinite_search)
{
    float *v = big_values();
    EXPECT(flc_find_nonfinite(v, N) == -1, "finite vector has no NaN/Inf");
    v[1234567] = 0.0f / 0.0f;
    EXPECT(flc_find_nonfinite(v, N) == 1234567, "NaN found at its index");
    v[1234567] = 1.0f;
    v[N - 1] = 1.0f / 0.0f;
    EXPECT(flc_find_nonfinite(v, N) == (int64_t)N - 1, "Inf found at the last index");
    v[N - 1] = 1.0f;
    v[7] = FLT_MAX, v[8] = -FLT_MAX, v[9] = FLT_MIN / 4; /* the largest, a denormal */
    EXPECT(flc_find_nonfinite(v, N) == -1, "+-FLT_MAX and a denormal are finite");
    v[4100] = -1.0f / 0.0f;
    EXPECT(flc_find_nonfinite(v, N) == 4100, "-Inf found in the second block");
    free(v);
}

/* A reader waiting for a merged shard whose merger failed gets the
 * merger's "error: ..." token, and a wait that times out gets FLC_ETIMEOUT;
 * either way its connection stays in step: the read commands sent with the
 * wait are all answered and dropped, so the next operation reads its own
 * reply (found 2026-11-30: one was left behind, and the next read of the
 * same store took the dropped read's reply as its own). */
static void error_token_case(const char *job, uint64_t n)
{
    flc_store_t *s = flc_fixture_open(&fx, NULL);
    float *v = malloc(n * sizeof *v), *back = malloc(n * sizeof *back);
    for (uint64_t i = 0; i < n; i++)
        v[i] = (float)i * 0.5f;
    CHECK(flc_store_job_begin(s, job, 1) == 0 &&
          flc_store_notify(s, job, 1, 0, "done", "error: merge median: no updates", 1) == 0,
          "%s: the failed merger's token pushed: %s", job, flc_store_errstr(s));
    char token[200];
    flc_shard_t m = {0};
    int rc = flc_store_wait_get_merged(s, job, 1, 0, 2000, token, sizeof token, &m, back, n);
    EXPECT(rc == 0 && strncmp(token, "error: ", 7) == 0, "%s: the wait returns the merger's "
           "token '%s' (rc %d) and reads nothing", job, token, rc);
    /* A wait that times out (nothing pushed for round 2) drops its reads too. */
    rc = flc_store_wait_get_merged(s, job, 2, 0, 200, token, sizeof token, &m, back, n);
    EXPECT(rc == FLC_ETIMEOUT, "%s: a wait with no token times out (rc %d)", job, rc);
    flc_shard_t u = shard_of(job, "c0", n, v);
    CHECK(flc_store_put_update(s, &u) == 0, "%s: a put after it: %s", job, flc_store_errstr(s));
    flc_shard_t got = {0};
    rc = flc_store_get_update(s, job, 1, 0, "c0", &got, back, n);
    EXPECT(rc == 0 && got.count == n && memcmp(back, v, n * sizeof *v) == 0,
           "%s: the next read on the same store reads its own value (rc %d: %s)", job, rc,
           rc ? flc_store_errstr(s) : "ok");
    flc_shard_release(&got);
    free(v), free(back);
    flc_store_close(s);
}

TEST(error_token_leaves_the_store_in_step)
{
    error_token_case("et1", 1000);     /* a small shard: one chunk, no speculative reads */
    error_token_case("et2", 300000);   /* 1.2 MB: speculative reads of the next chunks */
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(server_down), TEST_ENTRY(frame_decode_errors),
                 TEST_ENTRY(bad_values_read), TEST_ENTRY(missing_chunk),
                 TEST_ENTRY(bad_headers_refused), TEST_ENTRY(message_limit),
                 TEST_ENTRY(unknown_round_and_job), TEST_ENTRY(wrong_password),
                 TEST_ENTRY(full_cache_oom), TEST_ENTRY(killed_mid_pipeline_then_restart),
                 TEST_ENTRY(private_server_malloc_conf), TEST_ENTRY(nonfinite_search),
                 TEST_ENTRY(error_token_leaves_the_store_in_step))
