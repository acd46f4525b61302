/* runtime/pool: instances owned by their pool (issue 13, findings 3 and 4).
 * Real flcache-fn-test processes (the probe role): an instance dies with the
 * process that owns its pool (PR_SET_PDEATHSIG; SIGKILL of the owner alone,
 * not of its process group), instances live in the pool's own process group,
 * flc_pool_kill stops every running one at once, and a batch tells which of
 * its invocations failed while the others still run. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "runtime/pool.h"
#include "tests/harness.h"

static char g_fn[1024];

static flc_pool_t *pool_with(unsigned concurrency, unsigned timeout_ms, unsigned retries,
                             unsigned memory_mb)
{
    flc_pool_cfg_t cfg;
    flc_pool_cfg_init(&cfg);
    cfg.fn_path = g_fn;
    cfg.concurrency = concurrency;
    cfg.timeout_ms = timeout_ms;
    cfg.retries = retries;
    cfg.memory_mb = memory_mb;
    flc_err_t e = {0};
    flc_pool_t *p = flc_pool_new(&cfg, &e);
    if (p == NULL)
        flc_t_fatal("cannot start a pool: %s", flc_err_msg(&e));
    return p;
}

static void clear_all(flc_inv_rec_t *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        flc_inv_rec_clear(&r[i]);
}

/* Issue 13, finding 3: an instance never outlives its pool's process. An
 * owner process (forked here) starts a pool and a long invocation and
 * reports the instance's pid; SIGKILL of the owner alone (not of its
 * process group) ends the instance too (PR_SET_PDEATHSIG), which is in the
 * pool's own process group, not the owner's. */
TEST(instances_die_with_their_owner)
{
    int fds[2];
    CHECK(pipe(fds) == 0, "a pipe");
    pid_t owner = fork();
    if (owner == 0) {
        close(fds[0]);
        setpgid(0, 0);
        flc_pool_t *p = pool_with(2, 60000, 0, 256);
        const char *ev[] = {"{\"role\":\"probe\",\"sleep_ms\":30000}"};
        flc_inv_rec_t r[1];
        flc_err_t e = {0};
        flc_batch_t *b = flc_pool_start(p, ev, 1, r, &e);
        for (int i = 0; b != NULL && i < 500 && flc_pool_group(p) == 0; i++)
            flc_sleep_ms(10);
        pid_t g[2] = {getpgid(0), flc_pool_group(p)};
        ssize_t w = write(fds[1], g, sizeof g);
        (void)w;
        pause();
        _exit(0);
    }
    close(fds[1]);
    pid_t g[2] = {0, 0};
    ssize_t n = read(fds[0], g, sizeof g);
    close(fds[0]);
    CHECK(n == (ssize_t)sizeof g && g[1] > 1, "the owner's pool has a process group (%d)",
          (int)g[1]);
    /* The instance leads the group: it was the pool's first. */
    pid_t inst = g[1];
    EXPECT(g[1] != g[0] && getpgid(inst) == g[1],
           "instance %d is in the pool's group %d, not the owner's %d", (int)inst, (int)g[1],
           (int)g[0]);
    kill(owner, SIGKILL);
    waitpid(owner, NULL, 0);
    double t0 = flc_now_s();
    char path[64], st = '?';
    snprintf(path, sizeof path, "/proc/%d/stat", (int)inst);
    for (;;) {
        FILE *f = fopen(path, "r");
        st = 0;
        if (f != NULL) {
            char buf[256];
            if (fgets(buf, sizeof buf, f) && strrchr(buf, ')'))
                st = strrchr(buf, ')')[2];
            fclose(f);
        }
        if (st == 0 || st == 'Z' || flc_now_s() - t0 > 5)
            break;
        flc_sleep_ms(10);
    }
    CHECK(st == 0 || st == 'Z', "SIGKILL of the owner alone ended instance %d within %.2f s "
          "(state %c)", (int)inst, flc_now_s() - t0, st ? st : '-');
}

/* flc_pool_kill stops every running instance at once: their invocations
 * end as crashes, long before their timeout. */
TEST(kill_stops_running_instances)
{
    flc_pool_t *p = pool_with(3, 60000, 0, 256);
    const char *ev[] = {"{\"role\":\"probe\",\"sleep_ms\":30000}",
                        "{\"role\":\"probe\",\"sleep_ms\":30000}",
                        "{\"role\":\"probe\",\"x\":1}"};
    flc_inv_rec_t r[3];
    flc_err_t e = {0};
    flc_batch_t *b = flc_pool_start(p, ev, 3, r, &e);
    CHECK(b != NULL, "a batch of two sleepers and a quick one starts");
    size_t k = 9;
    for (int i = 0; i < 500 && flc_batch_done(b) < 1; i++)
        flc_sleep_ms(10);
    EXPECT(flc_batch_first_failed(b, &k) == 0, "no invocation has failed yet");
    double t0 = flc_now_s();
    CHECK(flc_pool_kill(p) == 1, "flc_pool_kill signals the pool's group");
    CHECK(flc_batch_wait(b, 5000) == 0, "the batch ends %.2f s later", flc_now_s() - t0);
    CHECK(r[0].status == FLC_INV_CRASH && r[1].status == FLC_INV_CRASH &&
              strstr(r[0].error, "signal 9") != NULL,
          "the sleepers ended as crashes by SIGKILL (%s)", r[0].error);
    EXPECT(r[2].status == FLC_INV_OK, "the quick one had answered ok");
    clear_all(r, 3);
    /* A new batch after the kill runs on new instances in a new group. */
    const char *ev2[] = {"{\"role\":\"probe\",\"x\":2}"};
    flc_inv_rec_t r2[1];
    CHECK(flc_pool_invoke(p, ev2, 1, r2, &e) == 0 && r2[0].status == FLC_INV_OK,
          "the pool still works after a kill (%s)", r2[0].error);
    EXPECT(flc_pool_group(p) > 1 && getpgid(r2[0].pid) == flc_pool_group(p),
           "its new instance %d is in the pool's group %d", r2[0].pid, (int)flc_pool_group(p));
    clear_all(r2, 1);
    flc_pool_free(p);
}

/* A failed invocation is visible while the rest of its batch runs. */
TEST(first_failed_while_others_run)
{
    flc_pool_t *p = pool_with(2, 60000, 0, 256);
    const char *ev[] = {"{\"role\":\"probe\",\"sleep_ms\":30000}",
                        "{\"role\":\"probe\",\"crash\":true}"};
    flc_inv_rec_t r[2];
    flc_err_t e = {0};
    flc_batch_t *b = flc_pool_start(p, ev, 2, r, &e);
    size_t k = 9;
    int seen = 0;
    for (int i = 0; b != NULL && i < 500 && !(seen = flc_batch_first_failed(b, &k)); i++)
        flc_sleep_ms(10);
    CHECK(seen && k == 1 && r[1].status == FLC_INV_CRASH,
          "the crash of invocation 1 is seen while 0 sleeps (index %zu: %s)", k, r[1].error);
    EXPECT(flc_batch_done(b) == 1, "and only it is done");
    flc_pool_kill(p);
    flc_batch_wait(b, 0);
    clear_all(r, 2);
    flc_pool_free(p);
}

static void setup(void)
{
    const char *dir = getenv("FLCACHE_BUILD_DIR");
    snprintf(g_fn, sizeof g_fn, "%s/flcache-fn-test", dir != NULL ? dir : ".");
    if (access(g_fn, X_OK) != 0)
        flc_t_fatal("%s is not built (set FLCACHE_BUILD_DIR)", g_fn);
}

TEST_LIST_SHARED(setup, NULL, TEST_ENTRY(instances_die_with_their_owner),
                 TEST_ENTRY(kill_stops_running_instances),
                 TEST_ENTRY(first_failed_while_others_run))
