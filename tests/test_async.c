/* Asynchronous FL (issue 16 point 1, clients/async.h, aggregator/async.h):
 * the staleness functions' values; the simulated clock's schedule on a
 * hand-made case whose arrivals and staleness can be worked out by hand;
 * one shard merger's fold of a hand-made buffer against sum n s delta /
 * sum n computed here in double; two runs of a seed with identical models
 * and identical version/staleness records; and too-stale updates refused,
 * recorded as rejected and still in the cache for queries. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aggregator/async.h"
#include "aggregator/query.h"
#include "cache/store.h"
#include "cache/store_ops.h"
#include "clients/async.h"
#include "ml/dataset_idx.h"
#include "tests/harness.h"

static flc_fixture_t fx;
static void setup(void) { flc_fixture_start(&fx, 0); }
static void teardown(void) { flc_fixture_stop(&fx); }

TEST(stale_weights)
{
    flc_async_stale_t s;
    flc_err_t e = {0};
    CHECK(flc_async_stale_parse("constant", &s, &e) == 0, "constant parses");
    EXPECT(flc_async_stale_weight(&s, 7) == 1.0, "constant: s(7) = 1");
    CHECK(flc_async_stale_parse("poly:0.5", &s, &e) == 0, "poly:0.5 parses");
    EXPECT(flc_async_stale_weight(&s, 0) == 1.0, "poly:0.5: s(0) = 1");
    EXPECT(flc_async_stale_weight(&s, 3) == 0.5, "poly:0.5: s(3) = 1/sqrt(4) = 0.5");
    CHECK(flc_async_stale_parse("hinge:10,4", &s, &e) == 0, "hinge:10,4 parses");
    EXPECT(flc_async_stale_weight(&s, 4) == 1.0, "hinge:10,4: s(4) = 1 (tau <= b)");
    EXPECT(flc_async_stale_weight(&s, 6) == 1.0 / 21.0, "hinge:10,4: s(6) = 1/(10*2+1)");
    char buf[64];
    flc_async_stale_format(&s, buf, sizeof buf);
    EXPECT(strcmp(buf, "hinge:10,4") == 0, "formats back as '%s'", buf);
    const char *bad[] = {"poly", "poly:-1", "hinge:1", "hinge:1,2,3", "linear:1", "poly:x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        memset(&e, 0, sizeof e);
        int rc = flc_async_stale_parse(bad[i], &s, &e);
        EXPECT(rc == FLC_EINVAL && strstr(e.msg, bad[i]) != NULL, "'%s' refused: %s", bad[i],
               e.msg);
    }
}

/* Three clients with compute times 100, 250 and 400 ms, all three in
 * flight (C = N), one arrival per step (K = 1): whoever arrives is the only
 * free client, so it starts again at once and the whole schedule follows
 * by hand:  t=100 c0 (tau 0) v1; 200 c0 (0) v2; 250 c1 (2) v3;
 * 300 c0 (1) v4; 400 c2 (4, before c0's restart at 400) v5; 400 c0 (1) v6. */
TEST(schedule_by_hand)
{
    double base[3] = {100, 250, 400};
    uint32_t elig[3] = {0, 1, 2};
    flc_sim_straggler_t none = {0};
    flc_async_cfg_t a = {.mode = FLC_ASYNC_MODE_ASYNC, .buffer = 1, .concurrency = 3,
                         .max_staleness = -1};
    flc_async_sched_t *s = NULL;
    flc_err_t e = {0};
    CHECK(flc_async_sched_new(&a, 0, base, 3, elig, 3, &none, 1, &s, &e) == 0, "scheduler: %s",
          e.msg);
    const struct { uint32_t c, tau, base; double t; } want[] = {
        {0, 0, 0, 100}, {0, 0, 1, 200}, {1, 2, 0, 250}, {0, 1, 2, 300}, {2, 4, 0, 400},
        {0, 1, 4, 400}};
    for (size_t v = 0; v < 6; v++) {
        const flc_async_arrival_t *arr;
        size_t n;
        double t;
        CHECK(flc_async_sched_next(s, &arr, &n, &t, &e) == 0, "version %zu", v + 1);
        EXPECT(n == 1 && arr[0].client == want[v].c && arr[0].staleness == want[v].tau &&
                   arr[0].base == want[v].base && t == want[v].t,
               "version %zu: c%u trained on v%u arrives at %g ms with staleness %u (got c%u "
               "v%u %g ms tau %u)", v + 1, want[v].c, want[v].base, want[v].t, want[v].tau,
               arr[0].client, arr[0].base, t, arr[0].staleness);
    }
    flc_async_sched_free(s);

    /* The same with max staleness 3: c2's arrival (tau 4) is refused and
     * the fifth buffer takes c0's (tau 0) too. */
    a.max_staleness = 3;
    CHECK(flc_async_sched_new(&a, 0, base, 3, elig, 3, &none, 1, &s, &e) == 0, "again");
    const flc_async_arrival_t *arr;
    size_t n;
    double t;
    for (int v = 0; v < 5; v++)
        CHECK(flc_async_sched_next(s, &arr, &n, &t, &e) == 0, "version %d", v + 1);
    EXPECT(n == 2 && arr[0].client == 2 && arr[0].refused && arr[0].staleness == 4 &&
               arr[1].client == 0 && !arr[1].refused && arr[1].staleness == 0,
           "version 5: c2 refused (staleness 4 > 3), then c0 accepted with staleness 0");
    flc_async_sched_free(s);
}

/* A buffer of four hand-made updates (n = 1, 2, 3, 4; staleness 0, 1, 3
 * and a refused one) folded by two shard mergers with poly:1 weights
 * (1, 1/2, 1/4): the pulled merge must be sum n s u / sum n over the three
 * folded, to one float rounding; the refused one is reported as rejected
 * and its update is still in the cache. */
TEST(merge_hand_made)
{
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(fx.unix_url, NULL, &e);
    CHECK(s != NULL, "store: %s", e.msg);
    const char *job = "am1";
    const uint32_t S = 2, v = 3;
    enum { P = 10 };
    const char *names[] = {"c1", "c2", "c3", "c4"};
    float u[4][P];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < P; j++)
            u[i][j] = (float)((i + 1) * 0.1 + j * 0.01 * (i % 2 ? -1 : 1));
    for (uint32_t k = 0; k < S; k++)
        CHECK(flc_store_round_begin(s, job, S, v, k, names, 4) == 0, "version opened");
    for (int i = 0; i < 4; i++) {
        flc_rs_push_cfg_t pc = {.job = job, .round = v, .client = names[i], .num_shards = S,
                                .model_size = P, .num_samples = (uint64_t)(i + 1)};
        CHECK(flc_rs_push(s, &pc, u[i], &e) == 0, "push %s: %s", names[i], e.msg);
    }
    flc_async_stale_t st;
    flc_async_stale_parse("poly:1", &st, &e);
    uint32_t tau[4] = {0, 1, 3, 9};
    double sc[4];
    for (int i = 0; i < 4; i++)
        sc[i] = flc_async_stale_weight(&st, tau[i]);
    const char *refuse[4] = {NULL, NULL, NULL, "too stale (staleness 9 > max 5)"};
    flc_merge_rule_t rule;
    flc_merge_rule_init(&rule, "fedavg", &e);
    for (uint32_t k = 0; k < S; k++) {
        flc_async_merge_cfg_t mc = {
            .rs = {.job = job, .round = v, .shard = k, .num_shards = S, .model_size = P,
                   .rule = rule, .expected = names, .n_expected = 4, .readers = 1,
                   .driver_records = 1},
            .scale = sc, .refuse = refuse};
        flc_rs_report_t rep;
        CHECK(flc_async_merge_run(s, &mc, &rep, &e) == 0, "shard %u merged: %s", k, e.msg);
        if (k == 0)
            EXPECT(rep.participants.n == 3 && rep.rejected.n == 1 &&
                       strstr(rep.rejected.items[0], "c4: too stale") != NULL,
                   "shard 0: 3 folded, c4 rejected ('%s')",
                   rep.rejected.n ? rep.rejected.items[0] : "");
        else
            EXPECT(rep.participants.n == 3 && rep.rejected.n == 0,
                   "shard %u: 3 folded (the refusal is reported once, by shard 0)", k);
        flc_rs_report_free(&rep);
    }
    float got[P];
    CHECK(flc_rs_pull(s, job, v, S, P, 5000, got, &e) == 0, "pulled: %s", e.msg);
    double worst = 0;
    for (int j = 0; j < P; j++) {
        double num = 0, den = 0;
        for (int i = 0; i < 3; i++)
            num += (i + 1) * sc[i] * (double)u[i][j], den += i + 1;
        double d = fabs((double)got[j] - num / den) / fmax(fabs(num / den), 1e-30);
        worst = d > worst ? d : worst;
    }
    EXPECT(worst <= 6e-8, "merged = sum n s u / sum n (weights 1, 1/2, 1/4; worst relative "
           "error %.2g)", worst);
    flc_shard_t sh = {0};
    EXPECT(flc_store_get_update(s, job, v, 1, "c4", &sh, NULL, 0) == 0 &&
               sh.values[0] == u[3][sh.offset],
           "the refused update of c4 is still in the cache");
    flc_shard_release(&sh);
    flc_rs_push_cfg_t late = {.job = job, .round = v, .client = "c1", .num_shards = S,
                              .model_size = P, .num_samples = 1};
    EXPECT(flc_rs_push(s, &late, u[0], &e) == FLC_ECLOSED,
           "a push into the merged version is refused as late");
    flc_store_close(s);
}

static void cfg_for(flc_sim_cfg_t *c, flc_async_cfg_t *a, const char *job)
{
    flc_sim_cfg_init(c);
    c->job = job;
    c->clients = 12;
    c->per_round = 3;
    c->rounds = 5;
    c->subset = 1200;
    c->test_subset = 300;
    c->num_shards = 2;
    c->seed = 7;
    c->straggler = "pareto:100:1.5";
    c->redis = fx.unix_url;
    *a = (flc_async_cfg_t){.mode = FLC_ASYNC_MODE_ASYNC, .staleness = "poly:0.5",
                           .max_staleness = -1, .buffer = 3, .concurrency = 6};
}

static int run(const flc_sim_cfg_t *c, const flc_async_cfg_t *a, flc_async_result_t *r)
{
    flc_err_t e = {0};
    flc_sim_clear(c->redis, NULL, c->job, &e);
    int rc = flc_async_run(c, a, NULL, NULL, r, &e);
    if (rc != 0)
        printf("# %s: %s\n", c->job, flc_err_msg(&e));
    return rc;
}

static double metric(const Flcache__ModelUpdate *u, const char *k)
{
    for (size_t i = 0; i < u->n_metrics; i++)
        if (strcmp(u->metrics[i]->key, k) == 0)
            return u->metrics[i]->value;
    return NAN;
}

/* "c3:v0:s2|c5:v1:s1|..." of version v's updates (roster order). */
static void records(flc_store_t *s, const char *job, uint32_t v, char *out, size_t len)
{
    Flcache__ModelUpdate **u = NULL;
    size_t n = 0;
    out[0] = '\0';
    if (flc_store_get_round_update_metas(s, job, v, &u, &n) != 0)
        return;
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(out);
        snprintf(out + l, len - l, "%s:v%g:s%g:%s|", u[i]->client, metric(u[i], "base_version"),
                 metric(u[i], "staleness"), u[i]->status);
    }
    flc_store_free_update_metas(u, n);
}

static float *model(flc_store_t *s, const char *job, uint32_t v, size_t *n)
{
    char g[80];
    snprintf(g, sizeof g, "%s/g", job);
    flc_shard_t sh = {0};
    if (flc_store_get_merged(s, g, v, 0, &sh, NULL, 0) != 0)
        return NULL;
    *n = (size_t)sh.count;
    float *m = malloc(*n * sizeof *m);
    memcpy(m, sh.values, *n * sizeof *m);
    flc_shard_release(&sh);
    return m;
}

TEST(determinism)
{
    if (access(FLC_FASHION_DIR, R_OK) != 0)
        flc_t_skip("no Fashion-MNIST at %s", FLC_FASHION_DIR);
    flc_sim_cfg_t c1, c2;
    flc_async_cfg_t a1, a2;
    cfg_for(&c1, &a1, "adet1");
    cfg_for(&c2, &a2, "adet2");
    flc_async_result_t r1, r2;
    CHECK(run(&c1, &a1, &r1) == 0, "first run");
    CHECK(run(&c2, &a2, &r2) == 0, "second run");
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(fx.unix_url, NULL, &e);
    CHECK(s != NULL, "store");
    int same_rec = 1, stale_seen = 0;
    char x1[2048], x2[2048];
    for (uint32_t v = 1; v <= 5; v++) {
        records(s, "adet1", v, x1, sizeof x1);
        records(s, "adet2", v, x2, sizeof x2);
        printf("    # version %u: %s\n", v, x1);
        same_rec &= x1[0] != '\0' && strcmp(x1, x2) == 0;
        stale_seen |= r1.versions[v - 1].staleness_max > 0;
        EXPECT(r1.versions[v - 1].sim_ms == r2.versions[v - 1].sim_ms,
               "version %u applied at the same simulated time (%.1f ms)", v,
               r1.versions[v - 1].sim_ms);
    }
    EXPECT(same_rec, "identical version and staleness records per update");
    EXPECT(stale_seen, "some update arrived stale (the test exercises staleness)");
    size_t n1 = 0, n2 = 0;
    float *m1 = model(s, "adet1", 5, &n1), *m2 = model(s, "adet2", 5, &n2);
    CHECK(m1 && m2 && n1 == n2, "both version-5 models stored (%zu floats)", n1);
    EXPECT(memcmp(m1, m2, n1 * sizeof *m1) == 0, "identical model bits after 5 versions");
    EXPECT(r1.sim.rounds[4].accuracy == r2.sim.rounds[4].accuracy &&
               r1.sim.rounds[4].accuracy > r1.sim.init_accuracy,
           "same accuracy %.4f, above the initial %.4f", r1.sim.rounds[4].accuracy,
           r1.sim.init_accuracy);
    free(m1), free(m2);
    flc_async_result_free(&r1);
    flc_async_result_free(&r2);
    flc_store_close(s);
}

TEST(too_stale_rejected)
{
    if (access(FLC_FASHION_DIR, R_OK) != 0)
        flc_t_skip("no Fashion-MNIST at %s", FLC_FASHION_DIR);
    flc_sim_cfg_t c;
    flc_async_cfg_t a;
    cfg_for(&c, &a, "astale");
    c.rounds = 4;
    a.max_staleness = 0; /* with 6 in flight and buffers of 3, most arrive stale */
    flc_async_result_t r;
    CHECK(run(&c, &a, &r) == 0, "run with --max-staleness 0");
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(fx.unix_url, NULL, &e);
    CHECK(s != NULL, "store");
    size_t refused = 0, checked = 0;
    for (uint32_t v = 1; v <= 4; v++) {
        refused += r.versions[v - 1].refused;
        EXPECT(r.versions[v - 1].staleness_max == 0, "version %u merged only fresh updates", v);
        Flcache__ModelUpdate **u = NULL;
        size_t n = 0;
        CHECK(flc_store_get_round_update_metas(s, "astale", v, &u, &n) == 0, "records of %u", v);
        for (size_t i = 0; i < n; i++) {
            if (metric(u[i], "staleness") == 0)
                continue;
            checked++;
            flc_shard_t sh = {0};
            int kept = flc_store_get_update(s, "astale", v, 0, u[i]->client, &sh, NULL, 0) == 0;
            flc_shard_release(&sh);
            EXPECT(strcmp(u[i]->status, "rejected") == 0 && strstr(u[i]->reason, "too stale") &&
                       kept,
                   "v%u %s (staleness %g): status %s, '%s', update kept: %d", v, u[i]->client,
                   metric(u[i], "staleness"), u[i]->status, u[i]->reason, kept);
        }
        flc_store_free_update_metas(u, n);
    }
    CHECK(refused > 0 && checked == refused, "%zu refused arrivals, each recorded", refused);
    /* The query layer sees them: history by version with staleness
     * columns, the client's rows with its staleness. */
    flc_query_req_t q = {.kind = FLC_Q_HISTORY, .job = "astale", .all_rounds = 1};
    Flcache__QueryAnswer *qa = NULL;
    CHECK(flc_query_run(s, &q, &qa, &e) == 0, "history: %s", e.msg);
    int versions = 0, rej = 0;
    for (size_t i = 0; i < qa->n_notes; i++)
        versions |= strcmp(qa->notes[i]->key, "version") == 0;
    for (size_t i = 0; i < qa->n_rows; i++)
        rej += (int)qa->rows[i]->values[4];
    EXPECT(versions && qa->num_numeric == 14 && (size_t)rej == refused,
           "history by version (%d), 14 numeric columns (%u), %d rejected", versions,
           qa->num_numeric, rej);
    flcache__query_answer__free_unpacked(qa, NULL);
    flc_async_result_free(&r);
    flc_store_close(s);
}

/* The command line refuses what the asynchronous modes cannot do, before
 * any cache is touched (exit 2, naming it). */
TEST(cli_usage)
{
    char bin[1100], cmd[1400], out[4096];
    snprintf(bin, sizeof bin, "%s/flcache", flc_t_build_dir());
    if (access(bin, X_OK) != 0)
        flc_t_skip("%s is not built (set FLCACHE_BUILD_DIR)", bin);
    static const struct { const char *args, *says; } c[] = {
        {"--buffer 3", "--buffer, --staleness and --max-staleness need --mode async"},
        {"--mode async --staleness poly:x", "staleness function 'poly:x' is not one of"},
        {"--mode async --strategy median", "rule median does not stream"},
        {"--mode async --dropout 0.1", "do not support --dropout"},
        {"--mode async --deadline-ms 100", "do not support --deadline-ms"},
        {"--mode later", "--mode"},
    };
    for (size_t i = 0; i < sizeof c / sizeof *c; i++) {
        snprintf(cmd, sizeof cmd, "FLCACHE_REDIS=unix:///nonexistent %s simulate %s 2>&1", bin,
                 c[i].args);
        int rc = flc_t_run(cmd, out, sizeof out);
        EXPECT(rc == 2 && strstr(out, c[i].says) != NULL, "simulate %s: exit %d, says '%s'",
               c[i].args, rc, c[i].says);
    }
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(stale_weights), TEST_ENTRY(schedule_by_hand),
                 TEST_ENTRY(merge_hand_made), TEST_ENTRY(determinism),
                 TEST_ENTRY(too_stale_rejected), TEST_ENTRY(cli_usage))
