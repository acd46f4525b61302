/* A simulation larger than the cache: Redis runs with maxmemory 6 MB
 * (noeviction) and a cold tier in a temp directory (the cold_url every store
 * of the test is opened with, as FLCACHE_COLD gives the programs'); 8 rounds
 * of 5 clients pushing 100,000-float updates (16 MB of updates, 2.7x the
 * cache) run to the end with the driver spilling (policy window:2) before
 * Redis fills, and
 * afterwards every update of every round reads back - most from the cold
 * tier - and equals what the query engine saw. The simulation is the
 * file's shared fixture (run once by the runner, its own success a check
 * there); the cases read what it left. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aggregator/query.h"
#include "clients/sim.h"
#include "policies/policy.h"
#include "tests/harness.h"

static char g_dir[] = "/tmp/flcache-simcold-XXXXXX";
static char g_cold[300];
/* Every store of this test (the driver's, the in-process clients' and
 * mergers', the cases' own and the query's shard workers') attaches the
 * cold tier, as a program's do with FLCACHE_COLD. */
static flc_store_opts_t g_opts;
static flc_fixture_t fx;

static void setup(void)
{
    if (mkdtemp(g_dir) == NULL)
        flc_t_fatal("mkdtemp");
    snprintf(g_cold, sizeof g_cold, "file://%s", g_dir);
    g_opts.cold_url = g_cold;
    flc_fixture_start(&fx, 6u << 20);
    flc_err_t e = {0};
    flc_policy_t *policy = flc_pol_new("window:2", &e);
    if (policy == NULL)
        flc_t_fatal("policy: %s", e.msg);

    flc_sim_cfg_t c;
    flc_sim_cfg_init(&c);
    c.job = "cold";
    c.clients = 20;
    c.per_round = 5;
    c.rounds = 8;
    c.synthetic_params = 100000;
    c.redis = fx.unix_url;
    c.store_opts = &g_opts;
    c.policy = policy;
    flc_sim_result_t res;
    memset(&res, 0, sizeof res);
    int rc = flc_sim_cfg_finish(&c, &e);
    rc = rc ? rc : flc_sim_run(&c, NULL, NULL, &res, &e);
    int nrounds = (int)res.nrounds;
    size_t parts = 0;
    for (size_t r = 0; r < res.nrounds; r++)
        parts += res.rounds[r].participants;
    flc_sim_result_free(&res);
    flc_pol_free(policy); /* after the run closed the stores that used it */
    CHECK(rc == 0 && nrounds == 8 && parts == 40,
          "8 rounds of 5 x 400 KB updates ran in a 6 MB Redis, %zu of 40 merged: %s", parts,
          rc ? e.msg : "ok");
}

static void teardown(void)
{
    flc_fixture_stop(&fx);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", g_dir);
}

static flc_store_t *open_store(void)
{
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(fx.unix_url, &g_opts, &e);
    if (s == NULL)
        flc_t_fatal("connect: %s", e.msg);
    return s;
}

TEST(driver_spilled)
{
    flc_store_t *s = open_store();
    flc_tier_stats_t ts;
    flc_store_tier_read(s, &ts);
    flc_store_stats_t st;
    flc_store_stats(s, &st);
    CHECK(ts.spills > 0 && st.used_memory < (6u << 20),
          "the driver spilled %llu objects; Redis uses %llu bytes of its 6 MB",
          (unsigned long long)ts.spills, (unsigned long long)st.used_memory);
    flc_store_close(s);
}

TEST(every_update_reads_back)
{
    flc_store_t *s = open_store();
    flc_tier_stats_t ts;
    size_t found = 0, want = 0, exact = 0;
    for (uint32_t r = 1; r <= 8; r++) {
        flc_strlist_t cl = {0};
        flc_store_list_clients(s, "cold", r, &cl);
        for (size_t i = 0; i < cl.n; i++) {
            want++;
            flc_shard_t sh = {0};
            if (flc_store_get_update(s, "cold", r, 0, cl.items[i], &sh, NULL, 0) == 0 &&
                sh.count == 100000) {
                found++;
                exact += sh.update_norm > 0; /* the frame's header came back intact */
            }
            flc_shard_release(&sh);
        }
        flc_strlist_free(&cl);
    }
    flc_store_tier_stats(s, &ts);
    CHECK(want == 40 && found == want && exact == want,
          "all %zu updates of the 8 rounds read back (%llu fetched from the cold tier)", found,
          (unsigned long long)ts.fetches);
    flc_store_close(s);
}

TEST(query_finds_spilled_updates)
{
    flc_store_t *s = open_store();
    flc_err_t e = {0};
    flc_query_req_t q = {.kind = FLC_Q_NORMS, .job = "cold", .round_from = 1, .round_to = 1,
                         .url = fx.unix_url, .store_opts = &g_opts, .no_cache = 1};
    Flcache__QueryAnswer *a = NULL;
    int rc = flc_query_run(s, &q, &a, &e);
    int ok = rc == 0 && a->n_rows == 5;
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
    flc_store_close(s);
    CHECK(ok, "a query of round 1 finds its 5 spilled updates: %s", rc ? e.msg : "ok");
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(driver_spilled), TEST_ENTRY(every_update_reads_back),
                 TEST_ENTRY(query_finds_spilled_updates))
