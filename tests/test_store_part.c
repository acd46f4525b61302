/* Reading an update window by window (cache/store_part.h), on a real
 * redis-server with 16 KiB chunks (so a 160 KB update is a hash of chunk
 * fields and a 40 KB one a plain string):
 *   - every window (one float, windows across chunk edges, the header's
 *     chunk, the last float, the whole value) equals the same floats of a
 *     whole read, for a hash, a hash without its head field (older
 *     writers), a string and a merged shard;
 *   - the windows of several clients' updates in one pipeline land each in
 *     its own buffer, and the store counts the bytes;
 *   - refused with a message naming the thing: a missing update (not
 *     found), an fp16 update (stored encoded: read it whole), a window past
 *     the end; a value rewritten after its open (other size, or the same
 *     size with another header) is an error, never a mix of two values,
 *     and the connection stays usable;
 *   - a reader's consecutive windows, smaller than a chunk, read every
 *     chunk once (hash and string), with the next window sent before the
 *     current one is used; a reader freed with a window outstanding leaves
 *     the connection in step;
 *   - a window bigger than the reader's 4 MiB flight is asked for 4 MiB at
 *     a time and reads right; a command between its send and its receive
 *     is refused (it would read a chunk's reply as its own); a reader freed
 *     with one outstanding leaves the connection in step. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/encode.h"
#include "cache/store.h"
#include "cache/store_part.h"
#include "cache/store_raw.h"
#include "tests/harness.h"

#define CHUNK 16384
#define BIG 40960 /* floats: 160 KB, a hash of 10 chunks */
#define SMALL 10000 /* floats: 40 KB, a string */
#define NCL 3

static flc_fixture_t fx;

static void setup(void)
{
    flc_fixture_start(&fx, 0);
}

static void teardown(void)
{
    flc_fixture_stop(&fx);
}

static flc_store_t *open_store(void)
{
    static const flc_store_opts_t o = {.chunk_bytes = CHUNK};
    return flc_fixture_open(&fx, &o);
}

static void put(flc_store_t *s, const char *job, const char *c, const float *v, uint64_t n,
                uint64_t created)
{
    flc_shard_t sh = {.round = 1, .shard = 0, .num_shards = 1, .count = n, .model_size = n,
                      .weight = 1, .num_samples = 1, .created_ms = created, .values = (float *)v};
    snprintf(sh.job, sizeof sh.job, "%s", job);
    snprintf(sh.client, sizeof sh.client, "%s", c ? c : "");
    int rc = c ? flc_store_put_update(s, &sh) : flc_store_put_merged(s, &sh);
    if (rc != 0)
        flc_t_fatal("put %s of %s: %s", c ? c : "merged", job, flc_store_errstr(s));
}

/* Windows (first, count) of an n-float value checked against v. */
static int windows_match(flc_store_t *s, const flc_store_part_t *p, const float *v, uint64_t n,
                         const char *what)
{
    const uint64_t w[][2] = {{0, 1},        {0, 100},      {4090, 12},  {1000, 9000},
                             {n - 1, 1},    {n / 2, n / 2}, {0, n},      {8191, 4097}};
    float *got = malloc(n * sizeof *got);
    int ok = 1;
    for (size_t k = 0; k < sizeof w / sizeof w[0]; k++) {
        if (w[k][0] + w[k][1] > n)
            continue;
        memset(got, 0xff, n * sizeof *got);
        float *d[] = {got};
        int rc = flc_store_part_read(s, p, 1, w[k][0], w[k][1], d);
        if (rc != 0 || memcmp(got, v + w[k][0], w[k][1] * sizeof *v) != 0) {
            printf("  %s: window [%llu, +%llu) %s\n", what, (unsigned long long)w[k][0],
                   (unsigned long long)w[k][1], rc ? flc_store_errstr(s) : "differs");
            ok = 0;
        }
    }
    free(got);
    return ok;
}

TEST(windows_equal_whole_reads)
{
    flc_store_t *s = open_store();
    flc_store_job_shards(s, "pw", 1);
    float *big = malloc(BIG * sizeof *big), *small = malloc(SMALL * sizeof *small);
    flc_t_fill(big, BIG, 3);
    flc_t_fill(small, SMALL, 4);
    put(s, "pw", "hashed", big, BIG, 1000);
    put(s, "pw", "plain", small, SMALL, 1000);
    put(s, "pw", NULL, big, BIG, 1000);
    flc_store_part_t p;
    int rc = flc_store_part_open(s, "pw", 1, 0, "hashed", &p);
    CHECK(rc == 0 && p.chunk == CHUNK && p.head.count == BIG && strcmp(p.head.client, "hashed") == 0,
          "a 160 KB update opens as a hash of %zu-byte chunks of %llu floats (%s)", p.chunk,
          (unsigned long long)p.head.count, rc ? flc_store_errstr(s) : "ok");
    CHECK(windows_match(s, &p, big, BIG, "hash"),
          "its windows (one float, across chunk edges, the header's chunk, the last float, all) "
          "equal the floats written");
    rc = flc_store_part_open(s, "pw", 1, 0, "plain", &p);
    CHECK(rc == 0 && p.chunk == 0 && p.head.count == SMALL,
          "a 40 KB update opens as a plain string (%s)", rc ? flc_store_errstr(s) : "ok");
    CHECK(windows_match(s, &p, small, SMALL, "string"), "its windows equal the floats written");
    rc = flc_store_part_open(s, "pw", 1, 0, NULL, &p);
    CHECK(rc == 0 && p.head.client[0] == '\0' && windows_match(s, &p, big, BIG, "merged"),
          "the merged shard opens (client NULL) and reads by window (%s)",
          rc ? flc_store_errstr(s) : "ok");

    /* an older writer's hash: no head field, the header read from chunk 0 */
    redisReply *r = NULL;
    char key[FLC_KEY_MAX];
    flc_store_part_open(s, "pw", 1, 0, "hashed", &p);
    snprintf(key, sizeof key, "%s", p.key);
    flc_store_commandf(s, &r, "HDEL %s h", key);
    CHECK(r != NULL && r->integer == 1, "head field of %s removed", key);
    freeReplyObject(r);
    rc = flc_store_part_open(s, "pw", 1, 0, "hashed", &p);
    CHECK(rc == 0 && windows_match(s, &p, big, BIG, "no head"),
          "without a head field it opens from chunk 0 and reads the same (%s)",
          rc ? flc_store_errstr(s) : "ok");
    flc_store_close(s);
    free(big);
    free(small);
}

TEST(many_parts_one_pipeline)
{
    flc_store_t *s = open_store();
    flc_store_job_shards(s, "pm", 1);
    float *v[NCL], *got[NCL];
    flc_store_part_t p[NCL];
    char name[16];
    for (int i = 0; i < NCL; i++) {
        v[i] = malloc(BIG * sizeof(float));
        got[i] = calloc(BIG, sizeof(float));
        flc_t_fill(v[i], BIG, 10 + i);
        snprintf(name, sizeof name, "c%d", i);
        put(s, "pm", name, v[i], BIG, 1000);
        if (flc_store_part_open(s, "pm", 1, 0, name, &p[i]) != 0)
            flc_t_fatal("open %s: %s", name, flc_store_errstr(s));
    }
    uint64_t b0 = flc_store_bytes_read(s);
    int ok = 1;
    const uint64_t step = 5000; /* windows that do not line up with chunks */
    for (uint64_t a = 0; a < BIG && ok; a += step) {
        uint64_t n = BIG - a < step ? BIG - a : step;
        float *d[NCL];
        for (int i = 0; i < NCL; i++)
            d[i] = got[i] + a;
        ok = flc_store_part_read(s, p, NCL, a, n, d) == 0;
    }
    for (int i = 0; i < NCL && ok; i++)
        ok = memcmp(got[i], v[i], BIG * sizeof(float)) == 0;
    uint64_t b1 = flc_store_bytes_read(s);
    CHECK(ok, "%d updates read in %llu-float windows, each window of all of them in one "
          "pipeline: each buffer holds its own update", NCL, (unsigned long long)step);
    CHECK(b1 - b0 == (uint64_t)NCL * BIG * sizeof(float),
          "the store counted %llu bytes read (%d x %d floats)",
          (unsigned long long)(b1 - b0), NCL, BIG);
    for (int i = 0; i < NCL; i++) {
        free(v[i]);
        free(got[i]);
    }
    flc_store_close(s);
}

TEST(refusals_and_rewrites)
{
    flc_store_t *s = open_store();
    flc_store_job_shards(s, "pr", 1);
    float *v = malloc(BIG * sizeof *v), *got = malloc(BIG * sizeof *got);
    flc_t_fill(v, BIG, 5);
    flc_store_part_t p;
    int rc = flc_store_part_open(s, "pr", 1, 0, "nobody", &p);
    CHECK(rc == FLC_ENOTFOUND && strstr(flc_store_errstr(s), "nobody"),
          "a missing update: not found, naming it (%s)", flc_store_errstr(s));

    uint16_t *half = malloc(BIG * sizeof *half);
    flc_enc_t enc = {.kind = FLC_ENC_FP16};
    uint64_t nnz = 0;
    flc_err_t e = {0};
    flc_enc_encode(&enc, v, BIG, half, &nnz, NULL, &e);
    flc_shard_t sh = {.round = 1, .shard = 0, .num_shards = 1, .count = BIG, .model_size = BIG,
                      .weight = 1, .num_samples = 1, .encoding = FLC_ENC_FP16,
                      .values = (float *)(void *)half};
    snprintf(sh.job, sizeof sh.job, "pr");
    snprintf(sh.client, sizeof sh.client, "enc");
    if (flc_store_put_update(s, &sh) != 0)
        flc_t_fatal("put fp16: %s", flc_store_errstr(s));
    rc = flc_store_part_open(s, "pr", 1, 0, "enc", &p);
    CHECK(rc == FLC_EINVAL && strstr(flc_store_errstr(s), "fp16") &&
              strstr(flc_store_errstr(s), "whole"),
          "an fp16 update is refused: %s", flc_store_errstr(s));

    put(s, "pr", "c", v, BIG, 1000);
    rc = flc_store_part_open(s, "pr", 1, 0, "c", &p);
    float *d[] = {got};
    int past = flc_store_part_read(s, &p, 1, BIG - 10, 11, d);
    CHECK(rc == 0 && past == FLC_EINVAL && strstr(flc_store_errstr(s), "outside"),
          "a window past the end: %s", flc_store_errstr(s));

    put(s, "pr", "c", v, BIG / 2, 1000); /* rewritten smaller */
    rc = flc_store_part_read(s, &p, 1, BIG - 100, 100, d);
    CHECK(rc == FLC_EDATA, "rewritten smaller after the open: the window past its new end is "
          "an error: %s", flc_store_errstr(s));
    put(s, "pr", "c", v, BIG, 2000); /* the same size, another header */
    rc = flc_store_part_read(s, &p, 1, 0, 100, d);
    CHECK(rc == FLC_EDATA && strstr(flc_store_errstr(s), "header"),
          "rewritten with another header: reading its first chunk says so: %s",
          flc_store_errstr(s));
    rc = flc_store_part_open(s, "pr", 1, 0, "c", &p);
    rc = rc ? rc : flc_store_part_read(s, &p, 1, 0, BIG, d);
    CHECK(rc == 0 && memcmp(got, v, BIG * sizeof *v) == 0,
          "opened again, the connection is in step and the window exact (%s)",
          rc ? flc_store_errstr(s) : "ok");
    free(v);
    free(got);
    free(half);
    flc_store_close(s);
}

/* Calls of one command since the last CONFIG RESETSTAT (INFO commandstats). */
static long long calls(flc_store_t *s, const char *cmd)
{
    redisReply *r = NULL;
    flc_store_commandf(s, &r, "INFO commandstats");
    char pat[64];
    snprintf(pat, sizeof pat, "cmdstat_%s:calls=", cmd);
    const char *at = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, pat) : NULL;
    long long n = at ? atoll(at + strlen(pat)) : 0;
    freeReplyObject(r);
    return n;
}

static void reset_stats(flc_store_t *s)
{
    redisReply *r = NULL;
    flc_store_commandf(s, &r, "CONFIG RESETSTAT");
    freeReplyObject(r);
}

/* A reader's windows, each smaller than a chunk and none on a chunk edge,
 * read every chunk once (the tail keeps the one a window ended inside),
 * for a hash and for a string (read on the same grid); the next window is
 * sent before the current one is used, as the Gram does. */
TEST(reader_reads_each_chunk_once)
{
    flc_store_t *s = open_store();
    flc_store_job_shards(s, "pt", 1);
    float *v[2], *got[2];
    const uint64_t len[2] = {BIG, SMALL};
    const char *who[2] = {"hashed", "plain"};
    flc_store_part_t p[2];
    for (int i = 0; i < 2; i++) {
        v[i] = malloc(len[i] * sizeof(float));
        got[i] = calloc(len[i], sizeof(float));
        flc_t_fill(v[i], len[i], 20 + i);
        put(s, "pt", who[i], v[i], len[i], 1000);
        if (flc_store_part_open(s, "pt", 1, 0, who[i], &p[i]) != 0)
            flc_t_fatal("open %s: %s", who[i], flc_store_errstr(s));
    }
    flc_store_part_reader_t rd;
    CHECK(flc_store_part_reader_init(s, &rd, p, 1) == 0, "a reader of the hash");
    const size_t step = 1000; /* 4000 bytes: a quarter of a chunk */
    reset_stats(s);
    int ok = flc_store_part_send(s, &rd, 0, step) == 0;
    int twice = flc_store_part_send(s, &rd, step, step);
    EXPECT(twice == FLC_EINVAL, "a second window before the first is received is refused: %s",
           flc_store_errstr(s));
    for (uint64_t a = 0; a < BIG && ok; a += step) {
        float *d[] = {got[0] + a};
        ok = flc_store_part_recv(s, &rd, d) == 0;
        uint64_t b = a + step;
        if (ok && b < BIG)
            ok = flc_store_part_send(s, &rd, b, BIG - b < step ? BIG - b : step) == 0;
    }
    long long hget = calls(s, "hget");
    size_t chunks = (p[0].flen + CHUNK - 1) / CHUNK;
    CHECK(ok && memcmp(got[0], v[0], BIG * sizeof(float)) == 0,
          "a 160 KB hash read in %zu-float windows, each sent before the last was used, "
          "equals the update (%s)", step, ok ? "ok" : flc_store_errstr(s));
    EXPECT(hget == (long long)chunks, "every one of its %zu chunks was read once: %lld HGETs",
           chunks, hget);
    flc_store_part_reader_free(s, &rd);

    flc_store_part_reader_init(s, &rd, &p[1], 1);
    reset_stats(s);
    ok = 1;
    for (uint64_t a = 0; a < SMALL && ok; a += step) {
        float *d[] = {got[1] + a};
        size_t n = SMALL - a < step ? SMALL - a : step;
        ok = flc_store_part_send(s, &rd, a, n) == 0 && flc_store_part_recv(s, &rd, d) == 0;
    }
    long long gr = calls(s, "getrange");
    chunks = (p[1].flen + CHUNK - 1) / CHUNK;
    CHECK(ok && memcmp(got[1], v[1], SMALL * sizeof(float)) == 0,
          "a 40 KB string read the same way equals the update");
    EXPECT(gr == (long long)chunks, "read on the chunk grid: %lld GETRANGEs for its %zu "
           "chunk-sized pieces", gr, chunks);
    /* A window sent and never received: freeing the reader reads it, so
     * the store is in step for what comes next. */
    flc_store_part_send(s, &rd, 0, SMALL);
    flc_store_part_reader_free(s, &rd);
    memset(got[0], 0, BIG * sizeof(float));
    float *d[] = {got[0]};
    int rc = flc_store_part_read(s, p, 1, 0, BIG, d);
    CHECK(rc == 0 && memcmp(got[0], v[0], BIG * sizeof(float)) == 0,
          "after a reader freed with a window outstanding, the next read is exact (%s)",
          rc ? flc_store_errstr(s) : "ok");
    for (int i = 0; i < 2; i++) {
        free(v[i]);
        free(got[i]);
    }
    flc_store_close(s);
}

/* A window of several parts bigger than the reader's flight (4 MiB of
 * chunk replies asked for and unread): the send asks for the flight only
 * (at N = 100 and 256 KiB chunks a Gram window's 26 MB reply, asked for at
 * once, had made the cluster query 3-6x slower), the receive asks for the
 * rest as it reads and gets the window right. Freed with such a window
 * outstanding, the reader reads what it asked for and no more, and the
 * connection stays in step. */
TEST(window_bigger_than_the_flight)
{
    static const flc_store_opts_t o = {.chunk_bytes = 262144};
    flc_store_t *s = flc_fixture_open(&fx, &o);
    flc_store_job_shards(s, "pf", 1);
    enum { NP = 3, LEN = 2 << 20 }; /* 3 x 8 MiB, hashes of 32 chunks */
    const char *who[NP] = {"fa", "fb", "fc"};
    float *v[NP], *got[NP];
    flc_store_part_t p[NP];
    for (int i = 0; i < NP; i++) {
        v[i] = malloc((size_t)LEN * sizeof(float));
        got[i] = calloc(LEN, sizeof(float));
        flc_t_fill(v[i], LEN, 40 + i);
        put(s, "pf", who[i], v[i], LEN, 1000);
        if (flc_store_part_open(s, "pf", 1, 0, who[i], &p[i]) != 0)
            flc_t_fatal("open %s: %s", who[i], flc_store_errstr(s));
    }
    flc_store_part_reader_t rd;
    CHECK(flc_store_part_reader_init(s, &rd, p, NP) == 0, "a reader of 3 updates");
    reset_stats(s); /* nothing may use the store between a send and its recv */
    int rc = flc_store_part_send(s, &rd, 0, LEN);
    size_t asked = rd.next_send;
    EXPECT(rc == 0 && rd.inflight > 0 && rd.inflight <= (4u << 20) && asked < rd.npc,
           "sending the 24 MiB window asked for %zu bytes of it (%zu of %zu pieces)",
           rd.inflight, asked, rd.npc);
    redisReply *pr = NULL;
    int mixed = flc_store_commandf(s, &pr, "PING");
    freeReplyObject(pr);
    EXPECT(mixed == FLC_EINVAL && strstr(flc_store_errstr(s), "outstanding") != NULL,
           "a command between the send and its receive is refused, not handed a chunk's "
           "reply: %s", flc_store_errstr(s));
    rc = rc ? rc : flc_store_part_recv(s, &rd, got);
    int same = rc == 0;
    for (int i = 0; same && i < NP; i++)
        same = memcmp(got[i], v[i], (size_t)LEN * sizeof(float)) == 0;
    CHECK(same, "one window of 3 x 8 MiB (33 chunks each) equals the updates (%s)",
          rc ? flc_store_errstr(s) : "ok");
    long long hget = calls(s, "hget");
    EXPECT(rd.inflight == 0 && rd.next_send == rd.npc && hget == (long long)rd.npc,
           "the receive asked for the other %zu chunks as it read: %lld HGETs for the %zu "
           "pieces, nothing left asked for", rd.npc - asked, hget, rd.npc);
    /* Sent, never received: only what was asked for is read back. */
    rc = flc_store_part_send(s, &rd, 0, LEN);
    flc_store_part_reader_free(s, &rd);
    memset(got[1], 0, (size_t)LEN * sizeof(float));
    float *d[] = {got[1]};
    int rc2 = flc_store_part_read(s, &p[1], 1, 0, LEN, d);
    CHECK(rc == 0 && rc2 == 0 && memcmp(got[1], v[1], (size_t)LEN * sizeof(float)) == 0,
          "after a reader freed with a 24 MiB window outstanding, the next read is exact "
          "(%s)", rc2 ? flc_store_errstr(s) : "ok");
    redisReply *r = NULL;
    EXPECT(flc_store_commandf(s, &r, "PING") == 0 && r && r->type == REDIS_REPLY_STATUS &&
               strcmp(r->str, "PONG") == 0,
           "and a PING then gets its own PONG: the connection is in step");
    freeReplyObject(r);
    for (int i = 0; i < NP; i++) {
        free(v[i]);
        free(got[i]);
    }
    flc_store_close(s);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(windows_equal_whole_reads),
                 TEST_ENTRY(many_parts_one_pipeline), TEST_ENTRY(refusals_and_rewrites),
                 TEST_ENTRY(reader_reads_each_chunk_once),
                 TEST_ENTRY(window_bigger_than_the_flight))
