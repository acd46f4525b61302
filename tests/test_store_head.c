/* The head field "h" of a chunked value (cache/store_put_head.h) and the
 * update stamps and cached Gram partials that rely on it, on a real
 * redis-server (16 KiB chunks, so a 160 KB update is a hash of 10 chunks):
 *   - a chunked value holds its chunks and h = "FLH1", the payload's
 *     CRC-32C, the frame's prefix and header; it reads back bit-exact
 *     (HLEN counts h, which is no chunk); a string has no h;
 *   - the stamp of a chunked update reads h, not chunk 0: chunk 0 replaced
 *     in place leaves the stamp as it was, h removed changes it (the old
 *     layout still reads and stamps), a forged h is refused by the reader;
 *   - an update rewritten with the same header (same created_ms, no norm)
 *     and one value changed at its end invalidates the cached partial: the
 *     next query answers the new norm (the first-4-KB stamp of before kept
 *     the stale partial here);
 *   - spilled to the cold tier and written back, a chunked update gets the
 *     same h again, so its stamp and the cached partials stay valid. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aggregator/query.h"
#include "base/crc32c.h"
#include "cache/keys.h"
#include "cache/store.h"
#include "cache/store_ops.h"
#include "cache/store_raw.h"
#include "policies/policy.h"
#include "tests/harness.h"

#define CHUNK 16384
#define BIG 40960 /* floats: 160 KB, 10 chunks of 16 KiB */
#define NCL 4

static flc_fixture_t fx;

static void setup(void)
{
    flc_fixture_start(&fx, 0);
}

static void teardown(void)
{
    flc_fixture_stop(&fx);
}

static const flc_store_opts_t g_opts = {.chunk_bytes = CHUNK};

static flc_store_t *open_store(void)
{
    return flc_fixture_open(&fx, &g_opts);
}

/* Client c's update of round 1 of job (one shard), created_ms fixed: a
 * rewrite then has the very same header. */
static void put(flc_store_t *s, const char *job, const char *c, const float *v, uint64_t n)
{
    flc_shard_t sh = {.round = 1, .shard = 0, .num_shards = 1, .count = n, .model_size = n,
                      .weight = 1, .num_samples = 1, .created_ms = 1000, .values = (float *)v};
    snprintf(sh.job, sizeof sh.job, "%s", job);
    snprintf(sh.client, sizeof sh.client, "%s", c);
    if (flc_store_put_update(s, &sh) != 0)
        flc_t_fatal("put %s of %s: %s", c, job, flc_store_errstr(s));
}

static void update_key(char *key, const char *job, const char *c)
{
    char tag[FLC_TAG_MAX];
    flc_key_shard_tag(tag, job, 0, 1);
    flc_key_update(key, tag, 1, c);
}

/* A raw reply of one command; fatal when the command fails. */
static redisReply *cmd(flc_store_t *s, const char *fmt, const char *key)
{
    redisReply *r = NULL;
    if (flc_store_commandf(s, &r, fmt, key) != 0 || r == NULL)
        flc_t_fatal("%s %s: %s", fmt, key, flc_store_errstr(s));
    return r;
}

static uint64_t stamp_of(flc_store_t *s, const char *job, const char *c)
{
    char *cl[] = {(char *)c};
    uint64_t st = 0;
    int rc = flc_store_update_stamps(s, job, 1, 0, cl, 1, &st);
    CHECK(rc == 0, "stamp of %s's update (%s)", c, rc ? flc_store_errstr(s) : "ok");
    return st;
}

TEST(head_field_written_and_read)
{
    flc_store_t *s = open_store();
    flc_store_job_shards(s, "hw", 1);
    float *v = malloc(BIG * sizeof *v), *got = malloc(BIG * sizeof *got);
    flc_t_fill(v, BIG, 7);
    put(s, "hw", "big", v, BIG);
    put(s, "hw", "small", v, 100);
    char key[FLC_KEY_MAX];
    update_key(key, "hw", "big");
    redisReply *r = cmd(s, "HLEN %s", key);
    long long fields = r->integer;
    freeReplyObject(r);
    r = cmd(s, "HGET %s h", key);
    int is_head = r->type == REDIS_REPLY_STRING && r->len > 16 && memcmp(r->str, "FLH1", 4) == 0 &&
                  memcmp(r->str + 8, "FLS1", 4) == 0;
    uint32_t crc = 0;
    if (is_head)
        memcpy(&crc, r->str + 4, 4); /* little-endian, as this machine */
    size_t head_len = is_head ? r->len : 0;
    freeReplyObject(r);
    size_t frame = head_len - 8 + BIG * sizeof(float);
    printf("    # %s: %lld fields, head field %zu bytes\n", key, fields, head_len);
    CHECK(is_head && fields == (long long)((frame + CHUNK - 1) / CHUNK) + 1,
          "a chunked update holds %zu chunks and the head field (\"FLH1\", CRC, frame "
          "header): %lld fields", (frame + CHUNK - 1) / CHUNK, fields);
    CHECK(crc == flc_crc32c(0, v, BIG * sizeof(float)),
          "the head's checksum is the payload's CRC-32C (%08x)", crc);
    flc_shard_t out;
    int rc = flc_store_get_update(s, "hw", 1, 0, "big", &out, got, BIG);
    CHECK(rc == 0 && out.count == BIG && memcmp(got, v, BIG * sizeof *v) == 0,
          "it reads back bit-exact, the head field not taken for a chunk (%s)",
          rc ? flc_store_errstr(s) : "ok");
    update_key(key, "hw", "small");
    r = cmd(s, "TYPE %s", key);
    CHECK(r->type == REDIS_REPLY_STATUS && strcmp(r->str, "string") == 0,
          "a small update is one string, no head field (%s)", r->str ? r->str : "?");
    freeReplyObject(r);
    free(v);
    free(got);
    flc_store_close(s);
}

TEST(stamp_reads_head_not_chunk0)
{
    flc_store_t *s = open_store();
    flc_store_job_shards(s, "hs", 1);
    float *v = malloc(BIG * sizeof *v);
    flc_t_fill(v, BIG, 8);
    put(s, "hs", "c0", v, BIG);
    char key[FLC_KEY_MAX];
    update_key(key, "hs", "c0");
    uint64_t a = stamp_of(s, "hs", "c0");

    /* Chunk 0 replaced in place by bytes of its size, its header kept and
     * its payload part changed: only a stamp that reads chunk 0 sees it. */
    redisReply *r = cmd(s, "HGET %s 0", key);
    size_t n0 = r->type == REDIS_REPLY_STRING ? r->len : 0;
    char *c0 = malloc(n0 ? n0 : 1);
    memcpy(c0, r->str, n0);
    freeReplyObject(r);
    for (size_t i = n0 / 2; i < n0; i++)
        c0[i] ^= 0x5a;
    const char *hs[] = {"HSET", key, "0", c0};
    size_t lens[] = {4, strlen(key), 1, n0};
    CHECK(n0 == CHUNK && flc_store_command(s, &r, 4, hs, lens) == 0, "chunk 0 (%zu bytes) "
          "replaced in place", n0);
    freeReplyObject(r);
    uint64_t b = stamp_of(s, "hs", "c0");
    CHECK(a != 0 && b == a, "the stamp is the same after chunk 0 changed in place: it was "
          "taken from the head field alone");

    /* Without h (the layout before it, the Python writer's): counted and
     * stamped from chunk 0, still readable. */
    r = cmd(s, "HDEL %s h", key);
    freeReplyObject(r);
    uint64_t c = stamp_of(s, "hs", "c0");
    flc_shard_t out;
    int rc = flc_store_get_update(s, "hs", 1, 0, "c0", &out, NULL, 0);
    CHECK(c != 0 && c != a && rc == 0 && out.count == BIG, "without the head field the stamp "
          "changes and the value still reads as chunks 0..n-1 (%s)",
          rc ? flc_store_errstr(s) : "ok");
    flc_shard_release(&out);

    /* A head field that is not the value's header is refused, not believed. */
    r = cmd(s, "HSET %s h FLH1xxxxFLS1-not-this-header", key);
    freeReplyObject(r);
    rc = flc_store_get_update(s, "hs", 1, 0, "c0", &out, NULL, 0);
    printf("    # %s\n", rc ? flc_store_errstr(s) : "read");
    CHECK(rc == FLC_EDATA && strstr(flc_store_errstr(s), "head field") != NULL,
          "a forged head field is a data error naming it");
    if (rc == 0)
        flc_shard_release(&out);
    free(c0);
    free(v);
    flc_store_close(s);
}

/* c's norm in a norms query of round 1 of job (NAN when not there), with
 * the bytes of updates it read. */
static double norm_of(flc_store_t *s, const char *job, const char *c, uint64_t *read)
{
    flc_query_req_t q = {.kind = FLC_Q_NORMS, .job = job, .round_from = 1, .round_to = 1,
                         .url = fx.unix_url, .store_opts = &g_opts};
    Flcache__QueryAnswer *a = NULL;
    flc_err_t e = {0};
    int rc = flc_query_run(s, &q, &a, &e);
    CHECK(rc == 0, "norms of round 1 of %s (%s)", job, rc ? e.msg : "ok");
    double v = NAN;
    for (size_t i = 0; i < a->n_rows; i++)
        if (strcmp(a->rows[i]->key, c) == 0)
            v = a->rows[i]->values[0];
    *read = a->bytes_read;
    flcache__query_answer__free_unpacked(a, NULL);
    return v;
}

static double norm2(const float *v, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)v[i] * v[i];
    return sqrt(s);
}

TEST(rewrite_invalidates_cached_partial)
{
    flc_store_t *s = open_store();
    flc_store_job_shards(s, "hq", 1);
    float *v = malloc(NCL * BIG * sizeof *v);
    char names[NCL][8];
    for (int i = 0; i < NCL; i++) {
        snprintf(names[i], sizeof names[i], "c%d", i);
        flc_t_fill(v + (size_t)i * BIG, BIG, 20 + (unsigned)i);
        put(s, "hq", names[i], v + (size_t)i * BIG, BIG);
    }
    float *c2 = v + 2 * BIG;
    uint64_t read0, read1, read2, read3;
    double n0 = norm_of(s, "hq", "c2", &read0); /* computes and caches the partial */
    double n1 = norm_of(s, "hq", "c2", &read1);
    printf("    # first query read %llu bytes of updates, the second %llu\n",
           (unsigned long long)read0, (unsigned long long)read1);
    CHECK(read0 > 0 && read1 == 0 && fabs(n1 - norm2(c2, BIG)) < 1e-4 * n1 && n0 == n1,
          "asked twice, the second answer comes from the cached partial (%.4f)", n1);

    /* The same header (created_ms, sizes; no norm), a change at the end
     * of the payload, far from chunk 0. */
    c2[BIG - 1] += 100.0f;
    put(s, "hq", "c2", c2, BIG);
    double want = norm2(c2, BIG);
    double n2 = norm_of(s, "hq", "c2", &read2);
    printf("    # after the rewrite: norm %.4f (want %.4f, before %.4f), %llu bytes read\n", n2,
           want, n1, (unsigned long long)read2);
    CHECK(fabs(n2 - want) < 1e-4 * want && read2 > 0,
          "after c2 is rewritten with an unchanged header, the query recomputes: its norm is "
          "the new one");
    double n3 = norm_of(s, "hq", "c2", &read3);
    CHECK(read3 == 0 && n3 == n2, "asked again, the new partial serves it");
    free(v);
    flc_store_close(s);
}

TEST(cold_copy_keeps_head)
{
    char dir[] = "/tmp/flc-head-XXXXXX", url[64];
    if (mkdtemp(dir) == NULL)
        flc_t_fatal("mkdtemp failed");
    snprintf(url, sizeof url, "file://%s", dir);
    flc_err_t e = {0};
    flc_cold_opts_t co = {.no_fsync = 1};
    flc_cold_t *cold = flc_cold_open(url, &co, &e);
    if (cold == NULL)
        flc_t_fatal("cold: %s", e.msg);
    flc_policy_t *pol = flc_pol_lru_new();
    flc_store_t *s = open_store();
    CHECK(flc_store_attach_tier(s, cold, pol, NULL) == 0, "tier attached (%s)",
          flc_store_errstr(s));
    flc_store_job_shards(s, "hc", 1);
    float *v = malloc(BIG * sizeof *v);
    flc_t_fill(v, BIG, 9);
    put(s, "hc", "c0", v, BIG);
    char key[FLC_KEY_MAX];
    update_key(key, "hc", "c0");
    redisReply *r = cmd(s, "HGET %s h", key);
    size_t hl = r->type == REDIS_REPLY_STRING ? r->len : 0;
    char h0[8192];
    memcpy(h0, r->str, hl < sizeof h0 ? hl : 0);
    freeReplyObject(r);
    uint64_t a = stamp_of(s, "hc", "c0");

    flc_obj_t o = {.round = 1, .kind = FLC_OBJ_UPDATE, .num_shards = 1};
    snprintf(o.job, sizeof o.job, "hc");
    snprintf(o.client, sizeof o.client, "c0");
    int rc = flc_store_spill(s, &o);
    r = cmd(s, "EXISTS %s", key);
    CHECK(rc == 0 && r->integer == 0, "spilled to the cold tier, gone from Redis (%s)",
          rc ? flc_store_errstr(s) : "ok");
    freeReplyObject(r);
    float *got = malloc(BIG * sizeof *got);
    flc_shard_t out;
    rc = flc_store_get_update(s, "hc", 1, 0, "c0", &out, got, BIG);
    flc_tier_stats_t ts;
    flc_store_tier_stats(s, &ts);
    CHECK(rc == 0 && memcmp(got, v, BIG * sizeof *v) == 0 && ts.rewarms == 1,
          "read back from the cold tier bit-exact and written back into Redis (%llu "
          "re-warm; %s)", (unsigned long long)ts.rewarms, rc ? flc_store_errstr(s) : "ok");
    r = cmd(s, "HGET %s h", key);
    int same = r->type == REDIS_REPLY_STRING && r->len == hl && memcmp(r->str, h0, hl) == 0;
    freeReplyObject(r);
    uint64_t b = stamp_of(s, "hc", "c0");
    CHECK(hl > 0 && same && b == a, "written back, it has the same head field (%zu bytes) "
          "and stamp as before the spill", hl);
    flc_store_close(s);
    flc_pol_free(pol);
    flc_cold_close(cold);
    free(v);
    free(got);
    char rm[64];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    flc_t_run(rm, NULL, 0);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(head_field_written_and_read),
                 TEST_ENTRY(stamp_reads_head_not_chunk0),
                 TEST_ENTRY(rewrite_invalidates_cached_partial), TEST_ENTRY(cold_copy_keeps_head))
