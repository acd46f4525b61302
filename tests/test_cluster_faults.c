/* Faults on the cluster testbed during `flcache simulate` (issue 13): the
 * real binary, run from the client namespace against a Redis Cluster of 3
 * masters with a replica each (scripts/testbed.sh), while
 * - partition_mid_run: one master's link is down for 3 s (`testbed.sh link
 *   nK down`, then up: this kernel has no netem), once round 2 began;
 * - master_kill_mid_run: one master is SIGKILLed once round 2 began (its
 *   replica is promoted), brought back after the run;
 * each run must end within a bound (never a hang: the case kills it at
 * 75 s and fails), and either complete every round, each recorded closed
 * with all of its clients merged or named on stderr as not merged with the
 * clients whose updates were lost, or exit 1 naming the round that failed;
 * never exit 0 with a round that silently merged fewer clients. No
 * message shows the cluster's password, nor does `store stats`' node list
 * while the killed node is down. The victim is a master other than
 * the seed node (n1), which every store opens through.
 * Needs root; skips without it unless CI=true. About a minute. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/clock.h"
#include "cache/store.h"
#include "tests/harness.h"

#define ROUNDS 6
#define K 4

static flc_testbed_t tb;
static char skip_why[160];
static char g_out[262144];

static void setup(void)
{
    if (!flc_testbed_usable(skip_why, sizeof skip_why))
        return;
    flc_testbed_up(&tb, 3, 1, "10gbit");
}

static void teardown(void)
{
    flc_testbed_down(&tb);
}

/* A master that is not n1 (the seed): its number, or 0. */
static int victim_master(void)
{
    flc_testbed_node_t nodes[16];
    int n = flc_testbed_status(&tb, nodes, 16, NULL);
    for (int i = 0; i < n; i++)
        if (strcmp(nodes[i].role, "master") == 0 && strcmp(nodes[i].name, "n1") != 0)
            return atoi(nodes[i].name + 1);
    return 0;
}

/* Rounds of job with a RoundMeta (the zset the driver and mergers write). */
static long long rounds_done(flc_store_t *s, const char *job)
{
    uint32_t *r = NULL;
    size_t n = 0;
    if (flc_store_list_rounds(s, job, &r, &n) != FLC_OK)
        n = 0;
    free(r);
    return (long long)n;
}

/* Runs `flcache simulate` for job in the background (output into a file),
 * calls fault(victim) once round 2 has begun (in the job's rounds index), and waits for the run
 * up to 75 s. Returns its exit code (-1: it hung and was killed). */
static int run_with_fault(const char *job, int victim, void (*fault)(int), double *fault_s,
                          double *took_s)
{
    char log[64];
    snprintf(log, sizeof log, "/tmp/flc-faults-%d.log", (int)getpid());
    double t0 = flc_now_s();
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        setpgid(0, 0);
        setenv("FLCACHE_REDIS", tb.seed, 1);
        if (freopen(log, "w", stdout) == NULL || dup2(1, 2) < 0)
            _exit(126);
        char bin[600], rounds[16], k[16];
        snprintf(bin, sizeof bin, "%s/flcache", flc_t_build_dir());
        snprintf(rounds, sizeof rounds, "%d", ROUNDS);
        snprintf(k, sizeof k, "%d", K);
        execl(bin, bin, "simulate", "--job", job, "--rounds", rounds, "--per-round", k,
              "--clients", "12", "--shards", "6", "--subset", "1200", "--test-subset", "100",
              "--timeout", "40", "--concurrency", k, "--quiet", (char *)NULL);
        _exit(127);
    }
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(tb.seed, NULL, &e);
    CHECK(s != NULL, "open the seed (%s)", e.msg);
    int faulted = 0, st = 0, rc = -1;
    for (;;) {
        pid_t w = waitpid(pid, &st, WNOHANG);
        if (w == pid) {
            rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            break;
        }
        if (!faulted && rounds_done(s, job) >= 2) {
            *fault_s = flc_now_s() - t0;
            fault(victim);
            faulted = 1;
        }
        if (flc_now_s() - t0 > 75) {
            kill(-pid, SIGKILL);
            waitpid(pid, &st, 0);
            break;
        }
        flc_sleep_ms(50);
    }
    flc_store_close(s);
    *took_s = flc_now_s() - t0;
    FILE *f = fopen(log, "r");
    size_t n = f ? fread(g_out, 1, sizeof g_out - 1, f) : 0;
    g_out[n] = '\0';
    if (f)
        fclose(f);
    unlink(log);
    printf("    # %s: fault on n%d at %.1f s (%s), exit %d after %.1f s; output: %.1500s\n", job,
           victim, *fault_s, faulted ? "done" : "never: the run ended first", rc, *took_s,
           g_out);
    EXPECT(faulted, "the fault came while the run was going");
    return rc;
}

/* The outcome rule: completed (every round closed with its K clients), or
 * exit 1 naming the failed round; never a hang; no password anywhere. */
static void check_outcome(const char *job, int rc)
{
    EXPECT(rc != -1, "the run ended by itself within 75 s (no hang)");
    EXPECT(strstr(g_out, tb.password) == NULL, "no message shows the cluster's password");
    if (rc == 0) {
        char cmd[1200], out[65536];
        snprintf(cmd, sizeof cmd, "env FLCACHE_REDIS='%s' %s/flcache query history --job %s "
                 "--json", tb.seed, flc_t_build_dir(), job);
        int qrc = flc_t_run(cmd, out, sizeof out);
        int closed = 0, full = 0, named = 0, rows = 0;
        cJSON *j = cJSON_Parse(out);
        const cJSON *row;
        cJSON_ArrayForEach(row, cJSON_GetObjectItem(j, "rows"))
        {
            const char *st = cJSON_GetStringValue(cJSON_GetObjectItem(row, "status"));
            const char *key = cJSON_GetStringValue(cJSON_GetObjectItem(row, "key"));
            int ok = st != NULL && strcmp(st, "closed") == 0 &&
                     cJSON_GetNumberValue(cJSON_GetObjectItem(row, "participants")) == K;
            rows++;
            closed += st != NULL && strcmp(st, "closed") == 0;
            full += ok;
            /* A round short of clients must have been named on stderr
             * ("round R was not merged (updates lost in a failover and not
             * resent: c3)"): a loss is allowed, a silent one is not. */
            char want[64];
            snprintf(want, sizeof want, "round %s was not merged", key ? key : "?");
            if (!ok && strstr(g_out, want) != NULL && strstr(g_out, "lost") != NULL)
                named++;
        }
        cJSON_Delete(j);
        printf("    # history: exit %d, %d rows, %d closed, %d with all %d clients, %d short "
               "and named\n", qrc, rows, closed, full, K, named);
        EXPECT(qrc == 0 && rows == ROUNDS, "exit 0: all %d rounds are in the history", ROUNDS);
        EXPECT(full + named == ROUNDS, "exit 0: every round merged all %d clients, or stderr "
               "named the round and what was lost", K);
    } else {
        EXPECT(rc == 1, "otherwise exit 1 (a runtime error), not a crash (%d)", rc);
        EXPECT(strstr(g_out, "round ") != NULL, "stderr names the round that failed");
        EXPECT(strstr(g_out, "lost") == NULL || strstr(g_out, "resent: c") != NULL,
               "updates lost are named by client");
    }
}

static void partition(int victim)
{
    char out[4096];
    flc_testbed_sh(&tb, out, sizeof out, "link n%d down", victim);
    flc_sleep_ms(3000);
    flc_testbed_sh(&tb, out, sizeof out, "link n%d up", victim);
}

static void node_kill(int victim)
{
    char out[4096];
    flc_testbed_sh(&tb, out, sizeof out, "kill n%d", victim);
}

TEST(partition_mid_run)
{
    flc_testbed_case(&tb, skip_why);
    int victim = victim_master();
    CHECK(victim > 0, "a master other than the seed: n%d", victim);
    double fs = 0, took = 0;
    int rc = run_with_fault("part1", victim, partition, &fs, &took);
    check_outcome("part1", rc);
    char out[4096];
    CHECK(flc_testbed_sh(&tb, out, sizeof out, "wait 30") == 0, "the cluster is whole again");
}

TEST(master_kill_mid_run)
{
    flc_testbed_case(&tb, skip_why);
    int victim = victim_master();
    CHECK(victim > 0, "a master other than the seed: n%d", victim);
    double fs = 0, took = 0;
    int rc = run_with_fault("kill1", victim, node_kill, &fs, &took);
    check_outcome("kill1", rc);
    /* The node list while n<victim> is still down: it is named, without
     * the password (cache/store_cluster_nodes.c opens nodes the map no
     * longer serves with the seed's credentials). */
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "env FLCACHE_REDIS='%s' %s/flcache store stats", tb.seed,
             flc_t_build_dir());
    int src = flc_t_run(cmd, g_out, sizeof g_out);
    printf("    # store stats with n%d down: exit %d: %.1200s\n", victim, src, g_out);
    EXPECT(src == 0 || src == 1, "store stats ends (exit %d)", src);
    EXPECT(strstr(g_out, tb.password) == NULL, "the node list shows no password");
    char out[4096];
    CHECK(flc_testbed_sh(&tb, out, sizeof out, "start n%d", victim) == 0 &&
              flc_testbed_sh(&tb, out, sizeof out, "wait 60") == 0,
          "n%d restarted, the cluster whole again", victim);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(partition_mid_run), TEST_ENTRY(master_kill_mid_run))
