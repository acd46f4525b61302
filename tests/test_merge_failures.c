/* Merge failures reach the driver and the exit code (issue 13, finding 6).
 * - a Krum merge that cannot run (f = 2 needs 5 updates; dropouts leave 2):
 *   `flcache simulate` exits 1 naming the merger's error, and the round's
 *   RoundMeta says "failed: ..." with no participants, never "closed";
 * - a merger lock left by a crashed merger (its process gone, this host) is
 *   taken over, so a rerun of the round merges instead of failing;
 * - a lock held by a live process is refused with a message that names the
 *   process, the lock key and its expiry.
 * One shared redis-server; each case uses its own job. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "aggregator/merge.h"
#include "aggregator/reduce_scatter.h"
#include "cache/store.h"
#include "cache/store_ops.h"
#include "tests/harness.h"

static flc_fixture_t fx;
static char g_out[65536];

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    flc_fixture_start(&fx, 0);
}

static void teardown(void)
{
    flc_fixture_stop(&fx);
}

static int cli(const char *args)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "env FLCACHE_REDIS=%s %s/flcache %s", fx.unix_url,
             flc_t_build_dir(), args);
    int rc = flc_t_run(cmd, g_out, sizeof g_out);
    printf("    # flcache %s: exit %d: %.1500s\n", args, rc, g_out);
    return rc;
}

static flc_store_t *open_store(void)
{
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(fx.unix_url, NULL, &e);
    if (s == NULL)
        flc_t_fatal("connect: %s", flc_err_msg(&e));
    return s;
}

TEST(krum_failure_fails_the_run)
{
    /* f = 2 with 5 sampled: Krum needs all 5; the seeded dropouts leave
     * fewer in round 1. Before: each round "not merged", exit 0, RoundMeta
     * "closed". */
    int rc = cli("simulate --inproc --strategy krum --krum-f 2 --per-round 5 --dropout 0.5 "
                 "--clients 20 --rounds 3 --subset 2000 --test-subset 200 --job kf --quiet");
    EXPECT(rc == 1, "simulate exits 1 (got %d)", rc);
    EXPECT(strstr(g_out, "merger of shard 0 failed: merge krum: f = 2 needs at least") != NULL,
           "stderr names the merger's error");
    rc = cli("query history --job kf --json");
    EXPECT(rc == 0, "history of the failed job answers");
    EXPECT(strstr(g_out, "\"closed\"") == NULL, "no round is recorded as closed");
    EXPECT(strstr(g_out, "failed: shard 0: merge krum") != NULL,
           "round 1's status is 'failed: shard 0: merge krum ...'");
    EXPECT(strstr(g_out, "\"key\":\t\"2\"") == NULL && strstr(g_out, "\"key\":\t\"1\"") != NULL,
           "round 1 is listed, no round after it ran");
}

/* One client's update of round 1 of job, then a merger for its shard 0. */
static int merge_one(const char *job, flc_rs_report_t *rep, flc_err_t *e)
{
    flc_store_t *s = open_store();
    float u[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    flc_rs_push_cfg_t pc = {.job = job, .round = 1, .client = "c1", .num_shards = 1,
                            .model_size = 8};
    int rc = flc_rs_push(s, &pc, u, e);
    CHECK(rc == FLC_OK, "c1 pushes its update (%s)", e->msg);
    const char *exp[] = {"c1"};
    flc_rs_merger_cfg_t mc = {.job = job, .round = 1, .shard = 0, .num_shards = 1,
                              .model_size = 8, .expected = exp, .n_expected = 1,
                              .deadline_ms = 2000, .readers = 1};
    CHECK(flc_merge_rule_init(&mc.rule, "fedavg", e) == FLC_OK, "fedavg rule");
    rc = flc_rs_merger_run(s, &mc, rep, e);
    flc_store_close(s);
    return rc;
}

/* A child that takes the merger lock of (job, 1, 0) for 10 min, then either
 * exits at once (a crashed merger) or sleeps (a live one). */
static pid_t lock_holder(const char *job, int stay)
{
    int p[2];
    CHECK(pipe(p) == 0, "pipe");
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        flc_store_t *s = open_store();
        int mine = 0;
        flc_store_job_begin(s, job, 1);
        int rc = flc_store_merger_lock(s, job, 1, 0, 600000, &mine);
        char c = rc == FLC_OK && mine ? 'y' : 'n';
        if (write(p[1], &c, 1) != 1)
            _exit(1);
        if (stay)
            pause();
        _exit(0);
    }
    close(p[1]);
    char c = 0;
    CHECK(read(p[0], &c, 1) == 1 && c == 'y', "process %d took the merger lock", (int)pid);
    close(p[0]);
    return pid;
}

TEST(dead_holders_lock_is_taken_over)
{
    pid_t pid = lock_holder("lk1", 0);
    waitpid(pid, NULL, 0);
    printf("    # holder %d is gone, its lock stays (10 min)\n", (int)pid);
    flc_rs_report_t rep;
    flc_err_t e = {0};
    int rc = merge_one("lk1", &rep, &e);
    EXPECT(rc == FLC_OK, "the merger of the rerun takes the stale lock over and merges (%d: %s)",
           rc, e.msg);
    EXPECT(rep.participants.n == 1, "c1 merged");
    flc_rs_report_free(&rep);
}

TEST(live_holder_is_named)
{
    pid_t pid = lock_holder("lk2", 1);
    flc_rs_report_t rep;
    flc_err_t e = {0};
    int rc = merge_one("lk2", &rep, &e);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    printf("    # %s\n", e.msg);
    char want[64];
    snprintf(want, sizeof want, "process %d on host", (int)pid);
    EXPECT(rc == FLC_EDUP, "a lock held by a live merger is refused (%d)", rc);
    EXPECT(strstr(e.msg, want) != NULL, "the message names the holder: '%s'", want);
    EXPECT(strstr(e.msg, ":r:1:merger") != NULL && strstr(e.msg, "expires in") != NULL,
           "the message names the lock key and its expiry");
    flc_rs_report_free(&rep);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(krum_failure_fails_the_run),
                 TEST_ENTRY(dead_holders_lock_is_taken_over), TEST_ENTRY(live_holder_is_named))
