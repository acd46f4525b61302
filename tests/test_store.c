/* cache/store against a real redis-server: shard round trips (1, 1e3, 4e6
 * floats, bit-exact) over the unix socket and TCP, chunk boundaries, caller
 * buffers, metadata round trips, listings, BLPOP wake-up, TTL and deletion.
 * One shared server; every case starts by emptying it (connect_empty), so
 * what a case reads is what it wrote itself. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "cache/store.h"
#include "cache/store_ops.h"
#include "cache/store_raw.h"
#include "tests/harness.h"

static flc_shard_t make_shard(const char *job, uint32_t round, const char *client,
                              uint32_t shard, uint32_t nshards, uint64_t offset, uint64_t count,
                              uint64_t model, float *values)
{
    flc_shard_t s = {0};
    snprintf(s.job, sizeof s.job, "%s", job);
    snprintf(s.client, sizeof s.client, "%s", client);
    s.round = round;
    s.shard = shard;
    s.num_shards = nshards;
    s.offset = offset;
    s.count = count;
    s.model_size = model;
    s.weight = 12.5;
    s.num_samples = 125;
    s.values = values;
    return s;
}

static void round_trip(flc_store_t *st, const char *via, uint64_t n)
{
    float *v = malloc(n * sizeof *v);
    flc_t_fill(v, n, (unsigned)n);
    v[0] = -0.0f; /* sign of zero survives only a bit-exact path */
    flc_shard_t sh = make_shard("rt", 1, "c1", 0, 1, 0, n, n, v);
    int rc = flc_store_put_update(st, &sh);
    CHECK(rc == 0, "%s: put of %llu floats (%s)", via, (unsigned long long)n,
          rc ? flc_store_errstr(st) : "ok");
    flc_shard_t out = {0};
    rc = flc_store_get_update(st, "rt", 1, 0, "c1", &out, NULL, 0);
    CHECK(rc == 0 && out.count == n && memcmp(out.values, v, n * sizeof *v) == 0,
          "%s: get of %llu floats is bit-exact", via, (unsigned long long)n);
    CHECK(out.weight == 12.5 && out.num_samples == 125 && strcmp(out.client, "c1") == 0 &&
              out.model_size == n,
          "%s: header fields survive (weight, num_samples, client, model size)", via);
    flc_shard_release(&out);
    free(v);
}

struct waiter {
    const char *url;
    uint64_t woke_ns;
    char got[64];
    int rc;
};

static void *wait_thread(void *arg)
{
    struct waiter *w = arg;
    flc_err_t e;
    flc_store_t *st = flc_store_open(w->url, NULL, &e);
    if (st == NULL) {
        w->rc = e.code;
        return NULL;
    }
    /* A merger's wait: one BLPOP over the expected clients' arrival lists. */
    const char *clients[] = {"worker6", "worker7"};
    size_t which = 9;
    flc_store_job_shards(st, "bl", 2);
    w->rc = flc_store_wait_arrival(st, "bl", 3, 1, clients, 2, 5000, &which);
    snprintf(w->got, sizeof w->got, "%s", w->rc == 0 && which < 2 ? clients[which] : "?");
    w->woke_ns = flc_now_ns();
    flc_store_close(st);
    return NULL;
}

static flc_fixture_t fx;

static void setup(void)
{
    flc_fixture_start(&fx, 0);
}

static void teardown(void)
{
    flc_fixture_stop(&fx);
}

/* Empties the shared server and connects to it over the unix socket (*su)
 * and TCP (*st). */
static void connect_empty(flc_store_t **su, flc_store_t **st)
{
    flc_err_t e = {0};
    *su = flc_store_open(fx.unix_url, NULL, &e);
    *st = flc_store_open(fx.tcp_url, NULL, &e);
    if (*su == NULL || *st == NULL)
        flc_t_fatal("cannot connect: %s", flc_err_msg(&e));
    redisReply *r = NULL;
    if (flc_store_commandf(*su, &r, "FLUSHALL") != 0)
        flc_t_fatal("FLUSHALL: %s", flc_store_errstr(*su));
    freeReplyObject(r);
}

static void close_both(flc_store_t *su, flc_store_t *st)
{
    flc_store_close(su);
    flc_store_close(st);
}

/* 8192 reproducible floats (seed 7); the caller frees them. */
static float *values8k(void)
{
    float *v = malloc(8192 * sizeof *v);
    flc_t_fill(v, 8192, 7);
    return v;
}

static void put_round_meta_rt1(flc_store_t *su)
{
    Flcache__RoundMeta meta = FLCACHE__ROUND_META__INIT;
    meta.job = "rt";
    meta.round = 1;
    meta.rule = "fedavg";
    char *parts[] = {"c1", "c2"}, *miss[] = {"c3"};
    meta.n_participants = 2;
    meta.participants = parts;
    meta.n_missing = 1;
    meta.missing = miss;
    Flcache__RoundMeta__MetricsEntry acc = FLCACHE__ROUND_META__METRICS_ENTRY__INIT;
    acc.key = "accuracy";
    acc.value = 0.8125;
    Flcache__RoundMeta__MetricsEntry *accs[] = {&acc};
    meta.n_metrics = 1;
    meta.metrics = accs;
    meta.merge_ms = 1.5;
    meta.bytes_read = 123456789012ull;
    CHECK(flc_store_put_round_meta(su, &meta) == 0, "put round metadata");
}

static void put_update_metas_rt1(flc_store_t *su)
{
    Flcache__ModelUpdate um = FLCACHE__MODEL_UPDATE__INIT;
    um.job = "rt";
    um.round = 1;
    um.client = "c1";
    um.loss = 0.25;
    um.num_samples = 600;
    CHECK(flc_store_put_update_meta(su, &um) == 0, "put update metadata");
    um.client = "c2";
    um.loss = 0.5;
    flc_store_put_update_meta(su, &um);
}

/* The two jobs the listing, TTL and stats cases read: rt (4 shards) with
 * round 1 (shard 0 of an update from c1, merged shard 2, round metadata,
 * update metadata of c1 and c2) and round 2 (shard 1 from c2), and job ch.
 * (A job keeps one shard count: it places the job's keys.) */
static void put_jobs_rt_and_ch(flc_store_t *su, float *v)
{
    flc_shard_t c1 = make_shard("rt", 1, "c1", 0, 4, 0, 1000, 4000, v);
    flc_shard_t m = make_shard("rt", 1, "", 2, 4, 3000, 1000, 4000, v);
    flc_shard_t ch = make_shard("ch", 1, "c", 0, 1, 0, 10, 8192, v);
    flc_shard_t c2 = make_shard("rt", 2, "c2", 1, 4, 10, 10, 40, v);
    CHECK(flc_store_put_update(su, &c1) == 0 && flc_store_put_merged(su, &m) == 0 &&
              flc_store_put_update(su, &ch) == 0,
          "put job rt round 1 (update of c1, merged shard 2) and job ch");
    put_round_meta_rt1(su);
    put_update_metas_rt1(su);
    CHECK(flc_store_put_update(su, &c2) == 0, "put job rt round 2 (shard 1 of 2 from c2)");
}

TEST(ping_unix_and_tcp)
{
    flc_store_t *su, *st;
    connect_empty(&su, &st);
    CHECK(flc_store_ping(su) == 0 && flc_store_ping(st) == 0, "PING over unix socket and TCP");
    close_both(su, st);
}

/* Round trips of 1, 1e3 and 4e6 floats over both transports. */
TEST(round_trip_sizes)
{
    flc_store_t *su, *st;
    connect_empty(&su, &st);
    uint64_t sizes[] = {1, 1000, 4000000};
    for (int i = 0; i < 3; i++) {
        round_trip(su, "unix", sizes[i]);
        round_trip(st, "tcp", sizes[i]);
    }
    close_both(su, st);
}

/* A tiny chunk size makes the frame end exactly on, one byte before and one
 * float after a chunk boundary. */
TEST(chunk_boundaries)
{
    flc_store_t *su, *st;
    connect_empty(&su, &st);
    flc_store_set_chunk_bytes(su, 4096);
    float *v = values8k();
    flc_shard_t probe = make_shard("ch", 1, "c", 0, 1, 0, 1, 8192, v);
    uint8_t head[FLC_FRAME_PREFIX + FLC_FRAME_HEADER_MAX];
    size_t hl;
    flc_shard_encode_header(&probe, head, sizeof head, &hl, NULL);
    /* header length does not depend on count for these small counts except
     * through the varint; recompute per case */
    int all_ok = 1;
    for (int k = 1; k <= 4; k++) {
        for (int delta = -1; delta <= 1; delta++) {
            uint64_t count = (k * 4096 - hl) / 4 + (uint64_t)delta;
            flc_shard_t sh = make_shard("ch", 1, "c", 0, 1, 0, count, 8192, v);
            flc_shard_encode_header(&sh, head, sizeof head, &hl, NULL);
            int rc = flc_store_put_update(su, &sh);
            flc_shard_t out = {0};
            rc = rc ? rc : flc_store_get_update(su, "ch", 1, 0, "c", &out, NULL, 0);
            int ok = rc == 0 && out.count == count &&
                     memcmp(out.values, v, count * sizeof *v) == 0;
            if (!ok)
                printf("    # boundary case k=%d delta=%d failed: %s\n", k, delta,
                       flc_store_errstr(su));
            all_ok &= ok;
            flc_shard_release(&out);
        }
    }
    free(v);
    close_both(su, st);
    CHECK(all_ok, "frames ending at, before and after 1-4 chunk boundaries read back exact");
}

/* A reader whose chunk size differs from the writer's (FLCACHE_CHUNK set
 * differently in two functions) still reads both layouts: a multi-chunk hash
 * written with 4 KB chunks, and a one-chunk string bigger than the reader's
 * chunk. */
TEST(chunk_size_mismatch)
{
    flc_store_t *su, *st;
    connect_empty(&su, &st);
    float *v = values8k();
    flc_store_set_chunk_bytes(su, 4096);
    flc_shard_t w4k = make_shard("ch", 2, "c", 0, 1, 0, 8192, 8192, v);
    int rc = flc_store_put_update(su, &w4k);
    flc_store_set_chunk_bytes(su, FLC_STORE_CHUNK_DEFAULT);
    flc_shard_t out = {0};
    rc = rc ? rc : flc_store_get_update(su, "ch", 2, 0, "c", &out, NULL, 0);
    EXPECT(rc == 0 && out.count == 8192 && memcmp(out.values, v, 8192 * sizeof *v) == 0,
           "32 KB value written in 4 KB chunks read back exact with 256 KB chunks");
    flc_shard_release(&out);
    /* Into a caller's 8192 floats the reader expects one chunk, a string,
     * and asks only STRLEN and GETRANGE: the hash answers otherwise and is
     * read the full way; a missing value is still "not in the cache". */
    float *into = calloc(8192, sizeof *into);
    rc = flc_store_get_update(su, "ch", 2, 0, "c", &out, into, 8192);
    EXPECT(rc == 0 && out.count == 8192 && memcmp(into, v, 8192 * sizeof *v) == 0,
           "the hash read into a caller's buffer sized for one chunk: exact");
    flc_shard_release(&out);
    rc = flc_store_get_update(su, "ch", 2, 0, "nobody", &out, into, 8192);
    EXPECT(rc == FLC_ENOTFOUND && strstr(flc_store_errstr(su), "not in the cache") != NULL,
           "a missing value read into a caller's buffer: %s", flc_store_errstr(su));
    free(into);
    rc = flc_store_put_update(su, &w4k);
    flc_store_set_chunk_bytes(su, 4096);
    rc = rc ? rc : flc_store_get_update(su, "ch", 2, 0, "c", &out, NULL, 0);
    EXPECT(rc == 0 && out.count == 8192 && memcmp(out.values, v, 8192 * sizeof *v) == 0,
           "32 KB one-chunk value read back exact with 4 KB chunks");
    flc_shard_release(&out);
    free(v);
    close_both(su, st);
}

/* Reading into a caller buffer, and a merged shard at an offset. */
TEST(caller_buffer_and_offset)
{
    flc_store_t *su, *st;
    connect_empty(&su, &st);
    float *v = values8k();
    flc_shard_t m = make_shard("rt", 1, "", 2, 4, 3000, 1000, 4000, v);
    CHECK(flc_store_put_merged(su, &m) == 0, "put merged shard 2 of 4 (offset 3000)");
    float dst[1000];
    flc_shard_t out = {0};
    int rc = flc_store_get_merged(st, "rt", 1, 2, &out, dst, 1000);
    CHECK(rc == 0 && out.values == dst && out.owned == NULL && out.offset == 3000 &&
              memcmp(dst, v, sizeof dst) == 0,
          "merged shard read into the caller's buffer, offset kept");
    rc = flc_store_get_merged(st, "rt", 1, 2, &out, dst, 999);
    CHECK(rc == 0 && out.values != dst && out.owned != NULL,
          "a too-small caller buffer gets an owned array instead");
    flc_shard_release(&out);
    free(v);
    close_both(su, st);
}

TEST(round_meta_round_trip)
{
    flc_store_t *su, *st;
    connect_empty(&su, &st);
    put_round_meta_rt1(su);
    Flcache__RoundMeta *gm = NULL;
    int rc = flc_store_get_round_meta(st, "rt", 1, &gm);
    CHECK(rc == 0 && gm && strcmp(gm->rule, "fedavg") == 0 && gm->n_participants == 2 &&
              strcmp(gm->participants[1], "c2") == 0 && gm->n_missing == 1 &&
              gm->n_metrics == 1 && gm->metrics[0]->value == 0.8125 &&
              gm->bytes_read == 123456789012ull && gm->merge_ms == 1.5,
          "round metadata round-trips (rule, participants, missing, metrics, sizes)");
    if (gm)
        flcache__round_meta__free_unpacked(gm, NULL);
    rc = flc_store_get_round_meta(st, "rt", 99, &gm);
    EXPECT(rc == FLC_ENOTFOUND && strstr(flc_store_errstr(st), "round 99"),
           "unknown round is reported: %s", flc_store_errstr(st));
    rc = flc_store_get_round_meta(st, "nojob", 1, &gm);
    EXPECT(rc == FLC_ENOTFOUND && strstr(flc_store_errstr(st), "unknown job 'nojob'"),
           "unknown job is reported: %s", flc_store_errstr(st));
    close_both(su, st);
}

TEST(update_meta_round_trip)
{
    flc_store_t *su, *st;
    connect_empty(&su, &st);
    put_update_metas_rt1(su);
    /* A round's updates are its roster's (its mergers write it). */
    const char *roster[] = {"c1", "c2"};
    CHECK(flc_store_round_begin(su, "rt", 4, 1, 0, roster, 2) == 0, "roster of round 1: c1, c2");
    Flcache__ModelUpdate *gu = NULL;
    int rc = flc_store_get_update_meta(st, "rt", 1, "c1", &gu);
    EXPECT(rc == 0 && gu->loss == 0.25 && gu->num_samples == 600,
           "update metadata round-trips");
    if (gu)
        flcache__model_update__free_unpacked(gu, NULL);
    Flcache__ModelUpdate **all;
    size_t nall;
    rc = flc_store_get_round_update_metas(st, "rt", 1, &all, &nall);
    EXPECT(rc == 0 && nall == 2, "all update metadata of a round: %zu entries", nall);
    flc_store_free_update_metas(all, nall);
    close_both(su, st);
}

/* Listings from the indexes. */
TEST(listings)
{
    flc_store_t *su, *st;
    connect_empty(&su, &st);
    float *v = values8k();
    put_jobs_rt_and_ch(su, v);
    flc_strlist_t jobs, clients;
    flc_store_list_jobs(st, &jobs);
    int has_rt = 0, has_ch = 0;
    for (size_t i = 0; i < jobs.n; i++) {
        has_rt |= strcmp(jobs.items[i], "rt") == 0;
        has_ch |= strcmp(jobs.items[i], "ch") == 0;
    }
    EXPECT(jobs.n == 2 && has_rt && has_ch, "jobs listed: rt and ch");
    flc_strlist_free(&jobs);
    uint32_t *rounds;
    size_t nr;
    int rc = flc_store_list_rounds(st, "rt", &rounds, &nr);
    EXPECT(rc == 0 && nr == 2 && rounds[0] == 1 && rounds[1] == 2, "rounds of rt: 1 and 2");
    free(rounds);
    rc = flc_store_list_clients(st, "rt", 1, &clients);
    EXPECT(rc == 0 && clients.n == 1 && strcmp(clients.items[0], "c1") == 0,
           "clients of round 1 (with shards) listed");
    flc_strlist_free(&clients);
    rc = flc_store_client_rounds(st, "rt", "c2", &rounds, &nr);
    EXPECT(rc == 0 && nr == 1 && rounds[0] == 1, "client c2's history holds round 1");
    free(rounds);
    free(v);
    close_both(su, st);
}

/* BLPOP wake-up: a waiter blocks, a put wakes it with the client id. */
TEST(blpop_wakeup)
{
    flc_store_t *su, *st;
    connect_empty(&su, &st);
    float *v = values8k();
    struct waiter w = {.url = fx.unix_url};
    pthread_t th;
    pthread_create(&th, NULL, wait_thread, &w);
    flc_sleep_ms(200);
    uint64_t t_put = flc_now_ns();
    flc_shard_t bl = make_shard("bl", 3, "worker7", 1, 2, 0, 10, 20, v);
    flc_store_put_update(su, &bl);
    pthread_join(th, NULL);
    double lat_ms = (double)(w.woke_ns - t_put) / 1e6;
    EXPECT(w.rc == 0 && strcmp(w.got, "worker7") == 0 && lat_ms < 200,
           "BLPOP waiter woke with 'worker7' (told by its list) %.2f ms after the put", lat_ms);
    const char *c7[] = {"worker7"};
    size_t which;
    int rc = flc_store_wait_arrival(su, "bl", 3, 1, c7, 1, 100, &which);
    EXPECT(rc == FLC_ETIMEOUT, "an empty arrival list times out after 100 ms: %s",
           flc_store_errstr(su));
    CHECK(flc_store_notify(su, "bl", 3, 1, "done", "ok", 3) == 0, "push 3 done tokens");
    int got3 = 0;
    for (int i = 0; i < 4; i++)
        got3 += flc_store_wait(st, "bl", 3, 1, "done", 100, w.got, sizeof w.got) == 0;
    EXPECT(got3 == 3, "exactly 3 waiters get a token (%d)", got3);
    free(v);
    close_both(su, st);
}

TEST(ttl_and_delete)
{
    flc_store_t *su, *st;
    connect_empty(&su, &st);
    float *v = values8k();
    put_jobs_rt_and_ch(su, v);
    CHECK(flc_store_expire_round(su, "rt", 2, 60000) == 0, "expire round 2 in 60 s");
    redisReply *r;
    char tag1[FLC_TAG_MAX], tag0[FLC_TAG_MAX], tag2[FLC_TAG_MAX], key[FLC_KEY_MAX];
    flc_key_shard_tag(tag0, "rt", 0, 4);
    flc_key_shard_tag(tag1, "rt", 1, 4);
    flc_key_shard_tag(tag2, "rt", 2, 4);
    flc_key_update(key, tag1, 2, "c2");
    flc_store_commandf(su, &r, "PTTL %s", key);
    EXPECT(r->integer > 50000 && r->integer <= 60000, "update key has its TTL (%lld ms)",
           r->integer);
    freeReplyObject(r);
    CHECK(flc_store_delete_round(su, "rt", 1) == 0, "delete round 1");
    flc_shard_t out = {0};
    int rc = flc_store_get_update(st, "rt", 1, 0, "c1", &out, NULL, 0);
    EXPECT(rc == FLC_ENOTFOUND, "deleted update is gone: %s", flc_store_errstr(st));
    Flcache__RoundMeta *gm = NULL;
    rc = flc_store_get_round_meta(st, "rt", 1, &gm);
    EXPECT(rc == FLC_ENOTFOUND, "deleted round metadata is gone");
    uint32_t *rounds;
    size_t nr;
    flc_store_list_rounds(st, "rt", &rounds, &nr);
    EXPECT(nr == 1 && rounds[0] == 2, "round index keeps only round 2");
    free(rounds);
    char k_upd[FLC_KEY_MAX], k_agg[FLC_KEY_MAX], k_arr[FLC_KEY_MAX];
    flc_key_update(k_upd, tag0, 1, "c1");
    flc_key_arrival(k_arr, tag0, 1, "c1");
    flc_key_shard(k_agg, tag2, 1, "agg");
    flc_store_commandf(su, &r, "EXISTS %s %s %s fl:{rt/j}:c:c1:um:1 fl:{rt/j}:roster:1 "
                       "fl:{rt/j}:meta:1", k_upd, k_arr, k_agg);
    EXPECT(r->integer == 0, "no key of round 1 is left (update, arrival list, merged, "
           "metadata, roster)");
    freeReplyObject(r);
    free(v);
    close_both(su, st);
}

TEST(stats)
{
    flc_store_t *su, *st;
    connect_empty(&su, &st);
    float *v = values8k();
    put_jobs_rt_and_ch(su, v);
    flc_store_stats_t ss;
    int rc = flc_store_stats(st, &ss);
    CHECK(rc == 0 && ss.keys > 0 && ss.used_memory > 0 &&
              strncmp(ss.redis_version, "7", 1) == 0,
          "stats: %llu keys, %llu bytes used, redis %s", (unsigned long long)ss.keys,
          (unsigned long long)ss.used_memory, ss.redis_version);
    free(v);
    close_both(su, st);
}

/* Many shards of one update in one call: a one-SET shard before a
 * hash-stored one, the second already closed by its merger; then a bad
 * shard in the batch. The connection must stay in step throughout. */
TEST(batched_push)
{
    flc_store_t *su, *st;
    connect_empty(&su, &st);
    redisReply *r;
    flc_store_set_chunk_bytes(su, 4096);
    float *big = malloc(10000 * sizeof *big);
    flc_t_fill(big, 10000, 9);
    flc_shard_t two[2] = {make_shard("pb", 1, "c", 0, 2, 0, 100, 10100, big),
                          make_shard("pb", 1, "c", 1, 2, 100, 10000, 10100, big)};
    char tag[FLC_TAG_MAX], key[FLC_KEY_MAX];
    flc_key_shard_tag(tag, "pb", 1, 2);
    flc_key_shard(key, tag, 1, "closed");
    flc_store_commandf(su, &r, "SET %s 1", key);
    freeReplyObject(r);
    int cl[2] = {-1, -1};
    int rc = flc_store_put_updates_if_open(su, two, 2, cl);
    redisReply *ok = NULL, *got = NULL;
    flc_store_commandf(su, &ok, "SET pb:probe hello");
    flc_store_commandf(su, &got, "GET pb:probe");
    flc_shard_t back = {0};
    int rb = flc_store_get_update(su, "pb", 1, 1, "c", &back, NULL, 0);
    EXPECT(rc == 0 && cl[0] == 0 && cl[1] == 1 && got && got->type == REDIS_REPLY_STRING &&
               strcmp(got->str, "hello") == 0 && rb == 0 && back.count == 10000 &&
               memcmp(back.values, big, 10000 * sizeof *big) == 0,
           "batched push of a string shard and a hash shard: closed flags {%d,%d} land on the "
           "right shards, values intact, replies in step", cl[0], cl[1]);
    flc_shard_release(&back);
    if (ok)
        freeReplyObject(ok);
    if (got)
        freeReplyObject(got);
    two[1].values = NULL;
    two[0].round = two[1].round = 2;
    rc = flc_store_put_updates_if_open(su, two, 2, cl);
    flc_store_commandf(su, &got, "GET pb:probe");
    redisReply *ex = NULL;
    flc_key_shard_tag(tag, "pb", 0, 2);
    flc_key_update(key, tag, 2, "c");
    flc_store_commandf(su, &ex, "EXISTS %s", key);
    EXPECT(rc == FLC_EINVAL && strstr(flc_store_errstr(su), "no values") && got &&
               got->type == REDIS_REPLY_STRING && ex && ex->integer == 0,
           "a bad shard refuses the whole batch before anything is sent: %s",
           flc_store_errstr(su));
    if (got)
        freeReplyObject(got);
    if (ex)
        freeReplyObject(ex);
    flc_store_set_chunk_bytes(su, FLC_STORE_CHUNK_DEFAULT);
    free(big);
    close_both(su, st);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(ping_unix_and_tcp), TEST_ENTRY(round_trip_sizes),
                 TEST_ENTRY(chunk_boundaries), TEST_ENTRY(chunk_size_mismatch),
                 TEST_ENTRY(caller_buffer_and_offset), TEST_ENTRY(round_meta_round_trip),
                 TEST_ENTRY(update_meta_round_trip), TEST_ENTRY(listings),
                 TEST_ENTRY(blpop_wakeup), TEST_ENTRY(ttl_and_delete), TEST_ENTRY(stats),
                 TEST_ENTRY(batched_push))
