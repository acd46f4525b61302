/* Update stamps (flc_store_update_stamps), the versions the Gram cache of the
 * queries checks its partials against, on a real redis-server:
 *   - a missing update stamps 0, two different updates stamp differently;
 *   - a rewritten update (a chunked one too) changes its stamp, an untouched
 *     one keeps it;
 *   - stamping a chunked value (a hash of 256 KiB chunks) sends a few KB,
 *     not its first chunk: counted from the server's own output counter.
 *     (A query of 100 clients of 25 MB over 12 shards had read 307 MB of
 *     chunks only to stamp them, issue 12.) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "cache/store.h"
#include "cache/store_ops.h"
#include "cache/store_raw.h"
#include "tests/harness.h"

#define BIG 600000 /* floats: 2.4 MB, over 8 chunks of 256 KiB, so a hash */

static flc_fixture_t fx;

static void setup(void)
{
    flc_fixture_start(&fx, 0);
}

static void teardown(void)
{
    flc_fixture_stop(&fx);
}

static void put(flc_store_t *s, const char *client, float *v, uint64_t n)
{
    flc_shard_t sh = {.round = 1, .shard = 0, .num_shards = 1, .offset = 0, .count = n,
                      .model_size = n, .weight = 1, .num_samples = 1,
                      .created_ms = flc_wall_ms(), .values = v};
    snprintf(sh.job, sizeof sh.job, "st");
    snprintf(sh.client, sizeof sh.client, "%s", client);
    if (flc_store_put_update(s, &sh) != 0)
        flc_t_fatal("put %s: %s", client, flc_store_errstr(s));
}

static long long net_output_bytes(flc_store_t *s)
{
    redisReply *r = NULL;
    long long v = -1;
    if (flc_store_commandf(s, &r, "INFO stats") == 0 && r && r->type == REDIS_REPLY_STRING) {
        const char *p = strstr(r->str, "total_net_output_bytes:");
        if (p)
            v = atoll(p + strlen("total_net_output_bytes:"));
    }
    if (r)
        freeReplyObject(r);
    return v;
}

static int stamp(flc_store_t *s, char **clients, size_t n, uint64_t *out)
{
    int rc = flc_store_update_stamps(s, "st", 1, 0, clients, n, out);
    CHECK(rc == 0, "stamps of %zu updates (%s)", n, rc ? flc_store_errstr(s) : "ok");
    return rc;
}

TEST(stamps_follow_values)
{
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(fx.unix_url, NULL, &e);
    CHECK(s != NULL, "open %s (%s)", fx.unix_url, s ? "ok" : e.msg);
    flc_store_job_shards(s, "st", 1);
    float *v = malloc(BIG * sizeof *v);
    flc_t_fill(v, BIG, 5);
    put(s, "big1", v, BIG);
    put(s, "big2", v, BIG); /* the same payload: the header (client, time) differs */
    put(s, "small", v, 1000);
    char *clients[] = {"big1", "big2", "small", "absent"};
    uint64_t a[4], b[4];
    stamp(s, clients, 4, a);
    CHECK(a[0] && a[1] && a[2] && a[3] == 0 && a[0] != a[1] && a[0] != a[2],
          "three stored updates stamp nonzero and differently, a missing one 0");

    long long before = net_output_bytes(s);
    stamp(s, clients, 2, b);
    long long sent = net_output_bytes(s) - before;
    CHECK(before >= 0 && sent > 0 && sent < 20000,
          "stamping two chunked 2.4 MB updates: the server sent %lld bytes (one first "
          "chunk alone is 262144)", sent);
    CHECK(b[0] == a[0] && b[1] == a[1], "asked again, unchanged updates keep their stamps");

    v[BIG - 1] += 1.0f; /* a rewrite: new header time, last chunk changed */
    flc_sleep_ms(2);
    put(s, "big1", v, BIG);
    put(s, "small", v, 500); /* shorter */
    stamp(s, clients, 4, b);
    CHECK(b[0] != a[0] && b[1] == a[1] && b[2] != a[2] && b[3] == 0,
          "rewritten chunked and plain updates change their stamps, the untouched one keeps "
          "its own");
    free(v);
    flc_store_close(s);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(stamps_follow_values))
