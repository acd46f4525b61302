/* The data lifecycle (issue 13): removing, expiring and keeping jobs.
 * - `flcache store rm x` removes exactly job x's keys (its series x/g
 *   included), counted by SCAN before and after, and its cold-tier copies
 *   (a file:// tier, updates spilled for real), while jobs named x.g and xy
 *   stay whole (keys and cold copies, which still read back); --dry-run
 *   removes nothing; an unknown job exits 1 naming it; a series name exits 2;
 * - `flcache store expire --before 7d` removes a job whose last round closed
 *   30 days ago (its RoundMeta's closed_ms written so: no sleeping), keeps a
 *   new one and one whose rounds carry no time; `store ls` dates them;
 * - `simulate --ttl 2h` leaves every key of the job with an expiry of at
 *   most 2 h, a job run without it none;
 * - `flcache up` is persistent: a job simulated into it is there again
 *   (`query history`) after `down` and `up` in the same directory; with
 *   --no-persist it is gone.
 * - on a Redis Cluster (the testbed, 3 masters), rm and the expiry sweep
 *   reach the job's keys on every master that holds some, and only them.
 * The store cases share one redis-server (emptied by each case); the up
 * cases run the real binary in their own directories; the cluster case
 * brings up its own small testbed (no replicas). */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "cache/store.h"
#include "cache/store_cluster.h"
#include "cache/store_ops.h"
#include "cache/store_raw.h"
#include "tests/harness.h"

#define S 2
#define N 64 /* floats per shard */

static flc_fixture_t fx;
static char g_bin[1024];
static char g_out[65536];
static char g_root[64];
static char g_hist[4096]; /* what query history said after the second up */

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    snprintf(g_bin, sizeof g_bin, "%s/flcache", flc_t_build_dir());
    if (access(g_bin, X_OK) != 0)
        flc_t_fatal("%s is not built", g_bin);
    snprintf(g_root, sizeof g_root, "/tmp/flc-life-XXXXXX");
    if (mkdtemp(g_root) == NULL)
        flc_t_fatal("cannot create a temp directory: %s", strerror(errno));
    flc_fixture_start(&fx, 0);
}

static void teardown(void)
{
    flc_fixture_stop(&fx);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_root);
    if (system(cmd) != 0)
        fprintf(stderr, "# could not remove %s\n", g_root);
}

/* Runs `flcache ARGS` against the fixture (and the cold tier in cold_dir
 * when not NULL); output in g_out. */
static int cli(const char *cold_dir, const char *args)
{
    char cmd[2048], cold[600] = "";
    if (cold_dir)
        snprintf(cold, sizeof cold, "FLCACHE_COLD=file://%s ", cold_dir);
    snprintf(cmd, sizeof cmd, "env FLCACHE_REDIS=%s %s%s %s", fx.unix_url, cold, g_bin, args);
    int rc = flc_t_run(cmd, g_out, sizeof g_out);
    printf("    # flcache %s: exit %d: %s", args, rc, g_out);
    return rc;
}

static flc_store_t *open_store(const char *cold_dir)
{
    char url[600];
    snprintf(url, sizeof url, "file://%s", cold_dir ? cold_dir : "");
    flc_store_opts_t o = {.cold_url = cold_dir ? url : NULL};
    flc_err_t err;
    flc_store_t *s = flc_store_open(fx.unix_url, &o, &err);
    if (s == NULL)
        flc_t_fatal("open store: %s", err.msg);
    return s;
}

static void flush(flc_store_t *s)
{
    redisReply *r;
    CHECK(flc_store_commandf(s, &r, "FLUSHALL") == FLC_OK, "FLUSHALL");
    freeReplyObject(r);
}

/* Keys matching pattern (SCAN, as an operator would count them). */
static long long count_keys(flc_store_t *s, const char *pattern)
{
    long long n = 0;
    char cursor[32] = "0";
    do {
        redisReply *r;
        if (flc_store_commandf(s, &r, "SCAN %s MATCH %s COUNT 1000", cursor, pattern) != FLC_OK)
            return -1;
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        n += (long long)r->element[1]->elements;
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return n;
}

static long long dbsize(flc_store_t *s)
{
    redisReply *r;
    if (flc_store_commandf(s, &r, "DBSIZE") != FLC_OK)
        return -1;
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

static void shard_of(flc_shard_t *sh, const char *job, uint32_t r, uint32_t s, int c, float *v)
{
    memset(sh, 0, sizeof *sh);
    snprintf(sh->job, sizeof sh->job, "%.64s", job);
    if (c >= 0)
        snprintf(sh->client, sizeof sh->client, "c%d", c);
    sh->round = r;
    sh->shard = s;
    sh->num_shards = S;
    sh->offset = (uint64_t)s * N;
    sh->count = N;
    sh->model_size = (uint64_t)S * N;
    sh->weight = 1;
    flc_t_fill(v, N, r * 1000 + s * 100 + (unsigned)(c + 1));
    sh->values = v;
}

/* A job as a run leaves it: `rounds` rounds of 3 clients' updates on S
 * shards, merged shards, update metadata, RoundMeta closed at closed_ms
 * (0: no RoundMeta, an undated job), and a model in its series job/g. */
static void write_job(flc_store_t *s, const char *job, uint32_t rounds, uint64_t closed_ms)
{
    float v[N];
    for (uint32_t r = 1; r <= rounds; r++) {
        for (uint32_t k = 0; k < S; k++) {
            flc_shard_t sh;
            for (int c = 0; c < 3; c++) {
                shard_of(&sh, job, r, k, c, v);
                CHECK(flc_store_put_update(s, &sh) == FLC_OK, "%s: update r%u s%u c%d (%s)", job,
                      r, k, c, flc_store_errstr(s));
            }
            shard_of(&sh, job, r, k, -1, v);
            CHECK(flc_store_put_merged(s, &sh) == FLC_OK, "%s: merged r%u s%u (%s)", job, r, k,
                  flc_store_errstr(s));
        }
        for (int c = 0; c < 3 && closed_ms; c++) {
            Flcache__ModelUpdate u = FLCACHE__MODEL_UPDATE__INIT;
            char cl[8];
            snprintf(cl, sizeof cl, "c%d", c);
            u.job = (char *)job, u.client = cl, u.round = r, u.num_samples = 10;
            CHECK(flc_store_put_update_meta(s, &u) == FLC_OK, "%s: update meta", job);
        }
        if (closed_ms) {
            Flcache__RoundMeta m = FLCACHE__ROUND_META__INIT;
            m.job = (char *)job, m.round = r, m.num_shards = S, m.status = "closed";
            m.started_ms = closed_ms - 1000 + r, m.closed_ms = closed_ms - 500 + r;
            CHECK(flc_store_put_round_meta(s, &m) == FLC_OK, "%s: round meta", job);
        }
    }
    char g[80];
    snprintf(g, sizeof g, "%.60s/g", job);
    float w[N * S];
    flc_shard_t sh;
    shard_of(&sh, g, 1, 0, -1, w);
    sh.num_shards = 1, sh.shard = 0, sh.offset = 0;
    CHECK(flc_store_put_merged(s, &sh) == FLC_OK, "%s: a model (%s)", g, flc_store_errstr(s));
}

/* Spills client c's update of (job, round 1, shard 0) to the cold tier. */
static void spill(flc_store_t *s, const char *job, int c)
{
    flc_obj_t o = {.round = 1, .shard = 0, .kind = FLC_OBJ_UPDATE, .num_shards = S};
    snprintf(o.job, sizeof o.job, "%s", job);
    snprintf(o.client, sizeof o.client, "c%d", c);
    CHECK(flc_store_spill(s, &o) == FLC_OK, "%s: c%d's update spilled (%s)", job, c,
          flc_store_errstr(s));
}

/* Objects of the cold directory whose name starts with the encoded prefix
 * of fl:{job/ (cold.c: ':' '{' '/' become ~3A ~7B ~2F). */
static int cold_objects(const char *dir, const char *job)
{
    char prefix[128];
    snprintf(prefix, sizeof prefix, "fl~3A~7B%s~2F", job);
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    if (d)
        closedir(d);
    return n;
}

static int has(const char *s)
{
    return strstr(g_out, s) != NULL;
}

TEST(rm_removes_exactly_the_job)
{
    char cold[96];
    snprintf(cold, sizeof cold, "%s/cold-rm", g_root);
    flc_store_t *s = open_store(cold);
    flush(s);
    write_job(s, "x", 2, flc_wall_ms());
    write_job(s, "x.g", 2, flc_wall_ms());
    write_job(s, "xy", 1, flc_wall_ms());
    spill(s, "x", 0);
    spill(s, "x", 1);
    spill(s, "x.g", 2);
    long long all = dbsize(s), nx = count_keys(s, "fl:{x/*"), ng = count_keys(s, "fl:{x.g/*"),
              nxy = count_keys(s, "fl:{xy/*");
    CHECK(nx > 20 && ng > 20 && nxy > 10 && all == nx + ng + nxy + count_keys(s, "fl:tier"),
          "3 jobs written: x %lld keys, x.g %lld, xy %lld, %lld in all", nx, ng, nxy, all);
    CHECK(cold_objects(cold, "x") == 2 && cold_objects(cold, "x.g") == 1,
          "x has 2 cold objects, x.g 1");

    CHECK(cli(cold, "store rm x --dry-run") == 0 && has("would remove job 'x'"),
          "--dry-run says what it would remove");
    char want[96];
    snprintf(want, sizeof want, "%lld keys", nx);
    CHECK(has(want) && has("2 cold objects"), "and counts %s and 2 cold objects", want);
    CHECK(dbsize(s) == all && cold_objects(cold, "x") == 2, "--dry-run removed nothing");

    CHECK(cli(cold, "store rm x") == 0 && has("removed job 'x'") && has(want) &&
              has("on 1 node") && has("2 cold objects"),
          "rm x: exit 0, reports %s on 1 node and 2 cold objects", want);
    EXPECT(count_keys(s, "fl:{x/*") == 0, "no key of x (nor x/g) is left");
    EXPECT(dbsize(s) == all - nx, "exactly x's keys went: %lld left of %lld", dbsize(s), all);
    EXPECT(count_keys(s, "fl:{x.g/*") == ng && count_keys(s, "fl:{xy/*") == nxy,
           "x.g keeps its %lld keys, xy its %lld", ng, nxy);
    EXPECT(cold_objects(cold, "x") == 0 && cold_objects(cold, "x.g") == 1,
           "x's cold objects went, x.g's stayed");
    float v[N];
    flc_shard_t got;
    EXPECT(flc_store_get_update(s, "x.g", 1, 0, "c2", &got, v, N) == FLC_OK && got.count == N,
           "x.g's spilled update still reads back from the cold tier (%s)", flc_store_errstr(s));

    CHECK(cli(cold, "store rm x") == 1 && has("no job 'x'"), "rm x again: exit 1, names x");
    CHECK(cli(NULL, "store rm nosuchjob") == 1 && has("no job 'nosuchjob'"),
          "an unknown job: exit 1, named");
    CHECK(cli(NULL, "store rm x.g/g") == 2 && dbsize(s) == all - nx,
          "a series name (x.g/g) is refused (exit 2), nothing removed");
    flc_store_close(s);
}

TEST(expire_before_removes_old_jobs)
{
    flc_store_t *s = open_store(NULL);
    flush(s);
    uint64_t now = flc_wall_ms(), month = 30ull * 86400000ull;
    write_job(s, "old", 2, now - month);
    write_job(s, "new", 2, now);
    write_job(s, "undated", 1, 0);
    long long nnew = count_keys(s, "fl:{new/*"), nund = count_keys(s, "fl:{undated/*");

    CHECK(cli(NULL, "store ls") == 0 && has("old") && has("new") && has("undated"),
          "store ls lists the 3 jobs");
    char when[32];
    time_t t = (time_t)((now - month - 500 + 2) / 1000);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M", gmtime(&t));
    EXPECT(has(when), "and dates old by its last round (%s)", when);

    CHECK(cli(NULL, "store expire --before 7d --dry-run") == 0 &&
              has("would remove job 'old'") && !has("job 'new'"),
          "--dry-run names old only");
    CHECK(count_keys(s, "fl:{old/*") > 0, "and removed nothing");
    CHECK(cli(NULL, "store expire --before 7d") == 0 && has("removed job 'old'") &&
              has("kept job 'undated'") && !has("removed job 'new'"),
          "expire --before 7d: removes old, keeps undated, says so");
    EXPECT(count_keys(s, "fl:{old/*") == 0, "no key of old is left");
    EXPECT(count_keys(s, "fl:{new/*") == nnew && count_keys(s, "fl:{undated/*") == nund,
           "new keeps its %lld keys, undated its %lld", nnew, nund);
    CHECK(cli(NULL, "store expire --before 2020-01-01") == 0 && has("removed 0 of 2"),
          "an ISO date before every job removes none");
    CHECK(cli(NULL, "store expire --before yesterday") == 2, "a WHEN that is neither: exit 2");
    flc_store_close(s);
}

/* The S3 backend finds a job's cold copies by listing (ListObjectsV2 with
 * the encoded prefix): x's two spilled updates go, x.g's stays readable. */
TEST(rm_reaches_s3_cold_copies)
{
    flc_s3rver_t s3;
    char why[512];
    if (flc_s3rver_start(&s3, why, sizeof why) != 0)
        flc_t_skip("%s", why);
    flc_cold_opts_t co = {.access_key = "S3RVER", .secret_key = "S3RVER", .create_bucket = 1};
    flc_store_opts_t o = {.cold_url = s3.url, .cold_opts = &co};
    flc_err_t err;
    flc_store_t *s = flc_store_open(fx.unix_url, &o, &err);
    CHECK(s != NULL, "a store with the S3 cold tier at %s (%s)", s3.url, s ? "" : err.msg);
    flush(s);
    write_job(s, "x", 1, flc_wall_ms());
    write_job(s, "x.g", 1, flc_wall_ms());
    spill(s, "x", 0);
    spill(s, "x", 1);
    spill(s, "x.g", 2);
    flc_store_job_report_t r;
    int rc = flc_store_job_rm(s, "x", 1, &r);
    CHECK(rc == FLC_OK && r.cold_objects == 2 && r.cold_bytes > 0,
          "dry run: 2 cold objects of x listed (%llu, %llu bytes; %s)",
          (unsigned long long)r.cold_objects, (unsigned long long)r.cold_bytes,
          flc_store_errstr(s));
    rc = flc_store_job_rm(s, "x", 0, &r);
    CHECK(rc == FLC_OK && r.cold_objects == 2 && r.keys > 10,
          "rm: %llu keys and %llu cold objects removed", (unsigned long long)r.keys,
          (unsigned long long)r.cold_objects);
    float v[N];
    flc_shard_t got;
    EXPECT(flc_store_get_update(s, "x.g", 1, 0, "c2", &got, v, N) == FLC_OK,
           "x.g's spilled update still reads back from S3 (%s)", flc_store_errstr(s));
    rc = flc_store_job_rm(s, "x", 1, &r);
    EXPECT(rc == FLC_ENOTFOUND && r.cold_objects == 0,
           "nothing of x is left, in Redis or S3 (%s)", flc_store_errstr(s));
    flc_store_close(s);
    flc_s3rver_stop(&s3);
}

/* KEYS pattern on a cluster: the store sends it to every master and
 * concatenates the answers (store_cluster_all.c). */
static long long keys_all(flc_store_t *s, const char *pattern)
{
    redisReply *r;
    if (flc_store_commandf(s, &r, "KEYS %s", pattern) != FLC_OK)
        return -1;
    long long n = (long long)r->elements;
    freeReplyObject(r);
    return n;
}

/* On a Redis Cluster (the testbed, 3 masters): rm finds the job's keys on
 * every master they sit on, and only them; expire reaches every master too. */
TEST(rm_on_every_master)
{
    char why[160];
    if (!flc_testbed_usable(why, sizeof why))
        flc_t_skip("%s", why);
    flc_testbed_t tb;
    flc_testbed_up(&tb, 3, 0, "10gbit");
    if (flc_testbed_join_client(&tb, why, sizeof why) != 0)
        flc_t_fatal("%s", why);
    flc_err_t err;
    flc_store_t *s = flc_store_open(tb.seed, NULL, &err);
    CHECK(s != NULL && flc_store_is_cluster(s), "a cluster store at the seed (%s)",
          s ? "" : err.msg);
    write_job(s, "x", 2, flc_wall_ms());
    write_job(s, "x.g", 1, flc_wall_ms());
    long long nx = keys_all(s, "fl:{x/*"), ng = keys_all(s, "fl:{x.g/*");
    CHECK(nx > 20 && ng > 10, "x has %lld keys, x.g %lld, over the masters", nx, ng);
    flc_store_job_report_t r;
    int rc = flc_store_job_expire(s, "x.g", 3600000, &r);
    EXPECT(rc == FLC_OK && (long long)r.keys == ng && r.nodes >= 2,
           "expire x.g: all %lld keys got the expiry (%llu, on %u masters)", ng,
           (unsigned long long)r.keys, r.nodes);
    rc = flc_store_job_rm(s, "x", 0, &r);
    EXPECT(rc == FLC_OK && (long long)r.keys == nx && r.nodes >= 2,
           "rm x: %llu keys on %u masters (KEYS counted %lld) (%s)", (unsigned long long)r.keys,
           r.nodes, nx, flc_store_errstr(s));
    EXPECT(keys_all(s, "fl:{x/*") == 0 && keys_all(s, "fl:{x.g/*") == ng,
           "no key of x is left on any master; x.g keeps its %lld", ng);
    flc_store_close(s);
    flc_testbed_down(&tb);
}

/* PTTL of every key of job: *none keys without an expiry, *over keys above
 * max_ms; returns the keys seen. */
static int ttls(flc_store_t *s, const char *job, long long max_ms, int *none, int *over)
{
    char pattern[96], cursor[32] = "0";
    snprintf(pattern, sizeof pattern, "fl:{%s/*", job);
    int n = 0;
    *none = *over = 0;
    do {
        redisReply *r;
        CHECK(flc_store_commandf(s, &r, "SCAN %s MATCH %s COUNT 1000", cursor, pattern) == 0,
              "SCAN");
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            redisReply *t;
            CHECK(flc_store_commandf(s, &t, "PTTL %s", r->element[1]->element[i]->str) == 0,
                  "PTTL");
            *none += t->integer < 0;
            *over += t->integer > max_ms;
            n++;
            freeReplyObject(t);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return n;
}

TEST(simulate_ttl_expires_every_key)
{
    flc_store_t *s = open_store(NULL);
    flush(s);
    int rc = cli(NULL, "simulate --clients 6 --per-round 3 --rounds 2 --subset 300 --inproc "
                       "--job withttl --ttl 2h");
    if (rc != 0 && (has("Fashion") || has("dataset")))
        flc_t_skip("no Fashion-MNIST data here");
    CHECK(rc == 0 && has("expires at"), "simulate --ttl 2h: exit 0, says when the job expires");
    CHECK(cli(NULL, "simulate --clients 6 --per-round 3 --rounds 1 --subset 300 --inproc "
                    "--job nottl") == 0, "simulate without --ttl");
    int none, over;
    int n = ttls(s, "withttl", 2 * 3600 * 1000, &none, &over);
    EXPECT(n > 20 && none == 0 && over == 0,
           "all %d keys of withttl (its models withttl/g too) expire within 2 h (%d without "
           "an expiry, %d later)", n, none, over);
    n = ttls(s, "nottl", 2 * 3600 * 1000, &none, &over);
    EXPECT(n > 10 && none == n, "the %d keys of nottl have no expiry (%d)", n, none);
    flc_store_close(s);
}

/* ---- flcache up ---------------------------------------------------------- */

static int up_cmd(const char *dir, const char *args)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "env -u FLCACHE_REDIS %s %s --dir %s", g_bin, args, dir);
    int rc = flc_t_run(cmd, g_out, sizeof g_out);
    printf("    # flcache %s --dir %s: exit %d: %s", args, dir, rc, g_out);
    return rc;
}

static int in_up(const char *dir, const char *args)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "env FLCACHE_REDIS=unix://%s/redis.sock %s %s", dir, g_bin, args);
    int rc = flc_t_run(cmd, g_out, sizeof g_out);
    printf("    # flcache %s: exit %d: %.400s%s", args, rc, g_out, strlen(g_out) > 400 ? "...\n" : "");
    return rc;
}

/* up (with flags), a tiny simulation, down, up again: 1 when the job's
 * rounds are back (query history lists rounds 1 and 2). */
static int history_survives(const char *name, const char *flags)
{
    char dir[128], up[64];
    snprintf(dir, sizeof dir, "%s/%s", g_root, name);
    snprintf(up, sizeof up, "up%s%s", *flags ? " " : "", flags);
    CHECK(up_cmd(dir, up) == 0, "%s", up);
    int rc = in_up(dir, "simulate --clients 6 --per-round 3 --rounds 2 --subset 300 --inproc "
                        "--job hist");
    if (rc != 0 && (has("Fashion") || has("dataset"))) {
        up_cmd(dir, "down --purge");
        flc_t_skip("no Fashion-MNIST data here");
    }
    CHECK(rc == 0, "a job simulated into it");
    CHECK(in_up(dir, "query history --job hist") == 0, "its history is there");
    CHECK(up_cmd(dir, "down") == 0, "down");
    CHECK(up_cmd(dir, up) == 0, "%s again in the same directory", up);
    rc = in_up(dir, "query history --job hist --json");
    int back = rc == 0 && has("\"key\":\t\"2\"");
    snprintf(g_hist, sizeof g_hist, "%.4000s", g_out);
    CHECK(up_cmd(dir, "down --purge") == 0, "down --purge");
    CHECK(access(dir, F_OK) != 0, "down --purge left no directory");
    return back;
}

TEST(up_is_persistent)
{
    EXPECT(history_survives("persist", "") == 1,
           "after down and up, query history finds the job's rounds");
}

TEST(up_no_persist_forgets)
{
    EXPECT(history_survives("nopersist", "--no-persist") == 0,
           "with --no-persist the job is gone after down and up");
    EXPECT(strstr(g_hist, "unknown job 'hist'") != NULL, "query says the job is unknown");
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(rm_removes_exactly_the_job),
                 TEST_ENTRY(rm_reaches_s3_cold_copies), TEST_ENTRY(rm_on_every_master),
                 TEST_ENTRY(expire_before_removes_old_jobs),
                 TEST_ENTRY(simulate_ttl_expires_every_key), TEST_ENTRY(up_is_persistent),
                 TEST_ENTRY(up_no_persist_forgets))
