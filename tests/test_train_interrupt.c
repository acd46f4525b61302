/* An interrupted or broken `flcache train` (issue 13, findings 3 and 4):
 * the real CLI trains W = 2 workers on a Fashion-MNIST subset against the
 * fixture's external redis-server, with small steps (batch 10, many
 * epochs: a few ms per step, so a run lasts far longer than a case waits),
 * and is then
 *   - sent SIGINT or SIGTERM (what `timeout` and supervisors send to the
 *     driver alone): within a few seconds no flcache-fn of the run is left,
 *     no fl:{J/steps/ key remains, the finished epochs' RoundMeta stays;
 *   - SIGKILLed: the workers die with it (PR_SET_PDEATHSIG), and its
 *     janitor removes the step keys;
 *   - SIGKILLed with its janitor (nobody left to clean): the workers die,
 *     and the step series' long-lived keys carry a TTL (the per-step keys
 *     are deleted by the workers two steps after they are written);
 *   - left running while one of its flcache-fn workers is SIGKILLed: it
 *     fails within seconds (not 2 x --step-timeout) naming the worker.
 * The workers are found as the driver's children in /proc (comm
 * "flcache-fn"); the janitor is its child named "flcache". */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "cache/store.h"
#include "cache/store_raw.h"
#include "tests/harness.h"

static flc_fixture_t fx;

/* A process's parent and state from /proc/<pid>/stat; 0 when gone. */
static int proc_stat(pid_t pid, pid_t *ppid, char *state, char *comm, size_t cap)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *l = strchr(buf, '('), *r = strrchr(buf, ')');
    if (l == NULL || r == NULL)
        return 0;
    size_t cl = (size_t)(r - l - 1) < cap - 1 ? (size_t)(r - l - 1) : cap - 1;
    memcpy(comm, l + 1, cl);
    comm[cl] = '\0';
    int pp = 0;
    if (sscanf(r + 2, "%c %d", state, &pp) != 2)
        return 0;
    *ppid = pp;
    return 1;
}

/* The children of parent named comm (up to max) into out; their count. */
static int children(pid_t parent, const char *comm, pid_t *out, int max)
{
    DIR *d = opendir("/proc");
    int n = 0;
    struct dirent *de;
    while (d != NULL && (de = readdir(d)) != NULL && n < max) {
        pid_t pid = (pid_t)atoi(de->d_name);
        pid_t pp;
        char st, c[64];
        if (pid > 0 && proc_stat(pid, &pp, &st, c, sizeof c) && pp == parent && st != 'Z' &&
            strcmp(c, comm) == 0)
            out[n++] = pid;
    }
    if (d != NULL)
        closedir(d);
    return n;
}

/* 1 while pid runs (a zombie has ended). */
static int alive(pid_t pid)
{
    pid_t pp;
    char st, c[64];
    return proc_stat(pid, &pp, &st, c, sizeof c) && st != 'Z';
}

/* The step round a per-step key names (":r:<g>:..." or a trailing
 * ":<g>"), 0 for the series' own keys (":schema", ":rounds", ...). */
static long key_round(const char *k)
{
    const char *r = strstr(k, "}:r:");
    if (r != NULL)
        return atol(r + 4);
    const char *c = strrchr(k, ':');
    return c != NULL && c[1] >= '0' && c[1] <= '9' ? atol(c + 1) : 0;
}

/* Keys matching pattern; *no_ttl: how many have no expiry, *old_no_ttl:
 * how many of those are not of the last 3 step rounds present (or not of a
 * round at all). */
static long long scan_keys(flc_store_t *s, const char *pattern, int *no_ttl, int *old_no_ttl)
{
    long long n = 0;
    long maxr = 0, rounds[4096];
    int nr = 0;
    *no_ttl = 0;
    char cursor[32] = "0";
    do {
        redisReply *r = NULL;
        if (flc_store_commandf(s, &r, "SCAN %s MATCH %s COUNT 1000", cursor, pattern) != 0 ||
            r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 2)
            flc_t_fatal("SCAN %s: %s", pattern, flc_store_errstr(s));
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        for (size_t i = 0; i < r->element[1]->elements; i++) {
            const char *k = r->element[1]->element[i]->str;
            long g = key_round(k);
            maxr = g > maxr ? g : maxr;
            redisReply *t = NULL;
            if (flc_store_commandf(s, &t, "PTTL %s", k) == 0 && t != NULL &&
                t->type == REDIS_REPLY_INTEGER && t->integer == -1) {
                (*no_ttl)++;
                if (nr < 4096)
                    rounds[nr++] = g;
                if (old_no_ttl != NULL && n < 3)
                    printf("    # e.g. no TTL: %s\n", k);
            }
            freeReplyObject(t);
            n++;
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    if (old_no_ttl != NULL) {
        *old_no_ttl = 0;
        for (int i = 0; i < nr; i++)
            *old_no_ttl += rounds[i] == 0 || rounds[i] < maxr - 2;
        printf("    # %lld keys, %d without a TTL, last step round %ld\n", n, *no_ttl, maxr);
    }
    return n;
}

static long long count_keys(flc_store_t *s, const char *pattern, int *no_ttl)
{
    return scan_keys(s, pattern, no_ttl, NULL);
}

static long long pttl(flc_store_t *s, const char *key)
{
    redisReply *r = NULL;
    long long v = -3;
    if (flc_store_commandf(s, &r, "PTTL %s", key) == 0 && r != NULL &&
        r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    freeReplyObject(r);
    return v;
}

typedef struct run {
    pid_t cli;
    char log[256];
    pid_t workers[2];
    char job[32];
} run_t;

/* Starts `flcache train` for job (2 workers, small steps, many epochs),
 * its output into a file, and waits until both workers run and steps are
 * being exchanged. */
static void start_train(run_t *r, const char *job, flc_store_t *s)
{
    memset(r, 0, sizeof *r);
    if (access("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", R_OK) != 0)
        flc_t_skip("no Fashion-MNIST (Debian package dataset-fashion-mnist)");
    snprintf(r->job, sizeof r->job, "%s", job);
    snprintf(r->log, sizeof r->log, "/tmp/flc-train-int-%d-%s.log", (int)getpid(), job);
    char bin[1024], url[600];
    snprintf(bin, sizeof bin, "%s/flcache", flc_t_build_dir());
    snprintf(url, sizeof url, "FLCACHE_REDIS=%s", fx.unix_url);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(r->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        putenv(url);
        execl(bin, bin, "train", "--workers", "2", "--subset", "2000", "--test-subset", "200",
              "--batch", "10", "--epochs", "200", "--quiet", "--job", job, (char *)NULL);
        _exit(127);
    }
    r->cli = pid;
    char rounds[128];
    snprintf(rounds, sizeof rounds, "fl:{%s/steps/j}:rounds", job);
    double t0 = flc_now_s();
    int n = 0;
    while (flc_now_s() - t0 < 20) {
        n = children(pid, "flcache-fn", r->workers, 2);
        if (n == 2 && pttl(s, rounds) != -2)
            break;
        flc_sleep_ms(20);
    }
    if (n != 2)
        flc_t_fatal("flcache train did not start its 2 workers within 20 s (see %s)", r->log);
    flc_sleep_ms(2500); /* past the first TTL sweep (every 2 s) */
}

static int wait_cli(pid_t pid, double limit_s, double *took)
{
    double t0 = flc_now_s();
    int st = 0;
    while (waitpid(pid, &st, WNOHANG) == 0) {
        if (flc_now_s() - t0 > limit_s) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            *took = -1;
            return st;
        }
        flc_sleep_ms(10);
    }
    *took = flc_now_s() - t0;
    return st;
}

/* Seconds until both workers are gone (-1: still there after limit_s). */
static double workers_gone(const run_t *r, double limit_s)
{
    double t0 = flc_now_s();
    while (alive(r->workers[0]) || alive(r->workers[1])) {
        if (flc_now_s() - t0 > limit_s)
            return -1;
        flc_sleep_ms(10);
    }
    return flc_now_s() - t0;
}

static int log_has(const run_t *r, const char *what)
{
    char buf[16384];
    FILE *f = fopen(r->log, "r");
    size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
    if (f)
        fclose(f);
    buf[n] = '\0';
    return strstr(buf, what) != NULL;
}

static flc_store_t *open_store(void)
{
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(fx.unix_url, NULL, &e);
    if (s == NULL)
        flc_t_fatal("store: %s", flc_err_msg(&e));
    return s;
}

static void interrupt_case(int sig, const char *job)
{
    flc_store_t *s = open_store();
    run_t r;
    start_train(&r, job, s);
    char pat[96], meta[96];
    snprintf(pat, sizeof pat, "fl:{%s/steps/*", job);
    int no_ttl;
    long long before = count_keys(s, pat, &no_ttl);
    kill(r.cli, sig);
    double took;
    int st = wait_cli(r.cli, 10, &took);
    CHECK(took >= 0 && took < 5, "the driver ended %.2f s after %s (< 5 s)", took,
          strsignal(sig));
    EXPECT(WIFSIGNALED(st) && WTERMSIG(st) == sig, "it died of %s (wait status %#x)",
           strsignal(sig), (unsigned)st);
    double gone = workers_gone(&r, 5);
    CHECK(gone >= 0, "both flcache-fn workers (pids %d %d) are gone (%.2f s after the driver)",
          (int)r.workers[0], (int)r.workers[1], gone);
    long long after = count_keys(s, pat, &no_ttl);
    CHECK(before > 0 && after == 0, "%lld keys under fl:{%s/steps/ during the run, %lld after",
          before, job, after);
    snprintf(meta, sizeof meta, "fl:{%s/j}:meta:1", job);
    EXPECT(pttl(s, meta) == -1, "epoch 1's RoundMeta (%s) stays, with no TTL", meta);
    EXPECT(log_has(&r, "interrupted by") && log_has(&r, "step keys of job"),
           "the driver said it was interrupted and what it removed");
    unlink(r.log);
    flc_store_close(s);
}

TEST(sigint_stops_workers_and_removes_step_keys)
{
    interrupt_case(SIGINT, "int-int");
}

TEST(sigterm_stops_workers_and_removes_step_keys)
{
    interrupt_case(SIGTERM, "int-term");
}

TEST(sigkill_workers_die_janitor_cleans)
{
    flc_store_t *s = open_store();
    run_t r;
    start_train(&r, "int-kill", s);
    pid_t jan[1] = {0};
    int nj = children(r.cli, "flcache", jan, 1);
    CHECK(nj == 1, "the driver has its janitor (pid %d)", (int)jan[0]);
    kill(r.cli, SIGKILL);
    double took;
    wait_cli(r.cli, 10, &took);
    double gone = workers_gone(&r, 5);
    CHECK(gone >= 0, "SIGKILL of the driver: both workers are gone %.2f s later", gone);
    const char *pat = "fl:{int-kill/steps/*";
    int no_ttl;
    long long left = -1;
    double t0 = flc_now_s();
    while (flc_now_s() - t0 < 8 && (left = count_keys(s, pat, &no_ttl)) > 0)
        flc_sleep_ms(50);
    CHECK(left == 0, "the janitor removed every fl:{int-kill/steps/ key (%lld left after "
          "%.2f s)", left, flc_now_s() - t0);
    /* it sweeps twice (cli/train_guard.c), 150 ms apart, then exits */
    for (double t1 = flc_now_s(); alive(jan[0]) && flc_now_s() - t1 < 3;)
        flc_sleep_ms(20);
    EXPECT(!alive(jan[0]), "the janitor has exited");
    unlink(r.log);
    flc_store_close(s);
}

TEST(sigkill_with_janitor_leaves_keys_with_ttl)
{
    flc_store_t *s = open_store();
    run_t r;
    start_train(&r, "int-kill2", s);
    pid_t jan[1] = {0};
    int nj = children(r.cli, "flcache", jan, 1);
    CHECK(nj == 1, "the driver has its janitor (pid %d)", (int)jan[0]);
    kill(jan[0], SIGKILL); /* nobody left to clean */
    kill(r.cli, SIGKILL);
    double took;
    wait_cli(r.cli, 10, &took);
    double gone = workers_gone(&r, 5);
    CHECK(gone >= 0, "both workers are gone %.2f s after the SIGKILL", gone);
    flc_sleep_ms(300);
    int no_ttl, old_no_ttl;
    long long left = scan_keys(s, "fl:{int-kill2/steps/*", &no_ttl, &old_no_ttl);
    static const char *const lasting[] = {"fl:{int-kill2/steps/j}:rounds",
                                          "fl:{int-kill2/steps/j}:schema",
                                          "fl:{int-kill2/steps/j}:clients"};
    for (size_t i = 0; i < 3; i++) {
        long long t = pttl(s, lasting[i]);
        CHECK(t > 0 && t <= 2LL * 120000 + 600000, "%s expires (PTTL %lld ms)", lasting[i], t);
    }
    /* Keys written since the last sweep have none yet: only the steps in
     * flight (the workers delete a step's keys two steps later). */
    CHECK(left > 0 && old_no_ttl == 0,
          "of %lld step keys left, the %d without a TTL are all of the last 3 steps in flight "
          "(%d are not)", left, no_ttl, old_no_ttl);
    int v_no, a_no;
    long long nv = count_keys(s, "fl:{int-kill2/steps/*:u:*", &v_no);
    long long na = count_keys(s, "fl:{int-kill2/steps/*:agg", &a_no);
    CHECK(nv + na > 0 && v_no == 0 && a_no == 0,
          "every model-sized value left (%lld updates, %lld merged shards) was written with "
          "an expiry (%d, %d without)", nv, na, v_no, a_no);
    /* What the TTL would do later, now. */
    redisReply *rr = NULL;
    flc_store_commandf(s, &rr, "EVAL %s 0",
                       "for _,k in ipairs(redis.call('KEYS','fl:{int-kill2/steps/*')) do "
                       "redis.call('UNLINK',k) end return 0");
    freeReplyObject(rr);
    unlink(r.log);
    flc_store_close(s);
}

TEST(worker_crash_fails_the_run_within_seconds)
{
    flc_store_t *s = open_store();
    run_t r;
    start_train(&r, "int-crash", s);
    pid_t victim = r.workers[1];
    kill(victim, SIGKILL);
    double took;
    int st = wait_cli(r.cli, 30, &took);
    CHECK(took >= 0 && took < 5, "the driver ended %.2f s after worker pid %d was SIGKILLed "
          "(< 5 s; --step-timeout is 120 s)", took, (int)victim);
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 1, "exit 1 (wait status %#x)", (unsigned)st);
    char named[64];
    snprintf(named, sizeof named, "instance %d killed by signal 9", (int)victim);
    CHECK((log_has(&r, "worker 0 crashed after step") || log_has(&r, "worker 1 crashed after "
          "step")) && log_has(&r, named),
          "stderr names the worker that crashed, the step and its instance (%s)", named);
    EXPECT(log_has(&r, "stopped after worker"), "and says the other worker was stopped");
    double gone = workers_gone(&r, 5);
    CHECK(gone >= 0, "no worker of the run is left");
    int no_ttl;
    EXPECT(count_keys(s, "fl:{int-crash/steps/*", &no_ttl) == 0,
           "the failed run's step keys were removed");
    unlink(r.log);
    flc_store_close(s);
}

static void setup(void)
{
    flc_fixture_start(&fx, 0);
}

static void teardown(void)
{
    flc_fixture_stop(&fx);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(sigint_stops_workers_and_removes_step_keys),
                 TEST_ENTRY(sigterm_stops_workers_and_removes_step_keys),
                 TEST_ENTRY(sigkill_workers_die_janitor_cleans),
                 TEST_ENTRY(sigkill_with_janitor_leaves_keys_with_ttl),
                 TEST_ENTRY(worker_crash_fails_the_run_within_seconds))
