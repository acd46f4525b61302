/* What `flcache train` does so that an interrupted run leaves nothing
 * behind (issue 13, finding 3): the workers die with the driver, and the
 * job's step series "J/steps" (every key under fl:{J/steps/, which only a
 * running training needs) is removed, or expires soon when nobody is left
 * to remove it. The epochs' RoundMeta of J, what a user keeps, is never
 * touched.
 *
 * - SIGINT / SIGTERM: the handler SIGKILLs every pool instance (their
 *   process group, flc_pool_kill_all) and records the signal; the driver's
 *   main thread sees the batch end, removes the step keys, says so, and
 *   dies of the signal as the program's own handler would. A second signal
 *   gives up the cleaning (the janitor below still does it).
 * - SIGKILL of the driver: the instances die with it (PR_SET_PDEATHSIG, see
 *   runtime/pool.h). The keys are removed by the janitor, a child forked at
 *   start (before any thread) in its own process group: it waits on a pipe
 *   the driver holds; end of file without the driver's "done" means the
 *   driver died, and the janitor waits for the instances' group to empty,
 *   then removes the step keys itself. Only against an external cache
 *   (FLCACHE_REDIS): an embedded server dies with the driver.
 * - Both killed at once (a cgroup kill, a crash of the machine's
 *   supervisor): the driver renews a TTL on every step key while the run
 *   goes (a SCAN of fl:{J/steps/ every few seconds), so what is left
 *   expires within 2 x --step-timeout + 10 min. The workers write every
 *   step value (updates, merged shards) with that expiry already
 *   (workers/sgd_worker.c); the small keys of the last steps in flight
 *   (close flags, done lists, roster and shard sets) written since the last
 *   sweep have none: the workers delete a step's keys two steps later, so
 *   that is at most three steps' small keys. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "cache/store_ops.h"
#include "cli/cli.h"
#include "cli/train.h"

#define SWEEP_EVERY_S 2.0
#define JANITOR_WAIT_MS 5000 /* for the instances to be gone after the driver */

static volatile sig_atomic_t caught;
static struct sigaction old_int, old_term;

static void on_stop(int sig)
{
    flc_pool_kill_all();
    if (caught) {
        /* Second signal: stop cleaning, die the way the program would. */
        sigaction(sig, sig == SIGINT ? &old_int : &old_term, NULL);
        raise(sig); /* delivered when this handler returns */
        return;
    }
    caught = sig;
}

int flc_train_signal(void)
{
    return caught;
}

/* One message to the janitor: 'G' + the instances' process group, or 'D'
 * (done: the driver cleaned up, nothing to do). */
typedef struct guard_msg {
    char type;
    int pgid;
} guard_msg_t;

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* The janitor's life (a child of the driver, no thread, never returns). */
static void janitor(int rfd, const flc_config_t *cfg, const char *job)
{
    /* Out of the driver's group, so a kill of that group leaves it to
     * clean; not the terminal's foreground group either (no Ctrl-C). */
    setpgid(0, 0);
    int pgid = 0;
    for (;;) {
        guard_msg_t m;
        ssize_t n = read(rfd, &m, sizeof m);
        if (n < 0 && errno == EINTR)
            continue;
        if (n == (ssize_t)sizeof m && m.type == 'D')
            _exit(0);
        if (n == (ssize_t)sizeof m && m.type == 'G') {
            pgid = m.pgid;
            continue;
        }
        break; /* end of file: the driver is gone without cleaning */
    }
    /* Its instances got SIGKILL as it died; wait for them to be gone, so
     * nothing writes a step key after the removal. */
    for (unsigned t = 0; pgid > 1 && t < JANITOR_WAIT_MS && kill(-pgid, 0) == 0; t += 20)
        sleep_ms(20);
    sleep_ms(100); /* commands already sent are the server's to finish */
    flc_store_opts_t so;
    flc_cold_opts_t cold;
    flc_config_store_opts(cfg, &so, &cold);
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(cfg->redis, &so, &e);
    uint64_t keys = 0;
    int rc = s != NULL ? flc_train_clean_steps(s, job, &keys, &e) : e.code;
    fprintf(stderr, "flcache train: the driver of job %s died; %s%s (%llu step keys)\n", job,
            rc == FLC_OK ? "removed its step keys" : "could not remove its step keys: ",
            rc == FLC_OK ? "" : flc_err_msg(&e), (unsigned long long)keys);
    flc_store_close(s);
    _exit(rc == FLC_OK ? 0 : 1);
}

void flc_train_guard_start(flc_train_guard_t *g, const flc_config_t *cfg, const char *job,
                           unsigned step_timeout_ms)
{
    memset(g, 0, sizeof *g);
    g->fd = -1;
    g->ttl_ms = 2ull * step_timeout_ms + 600000ull;
    g->next_sweep_s = flc_now_s() + SWEEP_EVERY_S;
    caught = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    g->installed = 1;
    if (cfg->redis == NULL)
        return; /* an embedded server: nothing outlives the driver */
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return; /* no janitor: the TTL still bounds a leak */
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[1]);
        janitor(p[0], cfg, job);
    }
    close(p[0]);
    if (pid < 0) {
        close(p[1]);
        return;
    }
    g->janitor = pid;
    g->fd = p[1];
}

static void send_msg(flc_train_guard_t *g, char type, int pgid)
{
    if (g->fd < 0)
        return;
    guard_msg_t m;
    memset(&m, 0, sizeof m);
    m.type = type;
    m.pgid = pgid;
    ssize_t w;
    do {
        w = write(g->fd, &m, sizeof m);
    } while (w < 0 && errno == EINTR);
}

void flc_train_guard_tick(flc_train_guard_t *g, flc_store_t *s, const char *job,
                          flc_pool_t *pool)
{
    if (caught && pool != NULL)
        flc_pool_kill(pool); /* the handler ran before they were forked */
    int pg = pool != NULL ? (int)flc_pool_group(pool) : 0;
    if (pg > 1 && pg != g->pgid_sent) {
        send_msg(g, 'G', pg);
        g->pgid_sent = pg;
    }
    double now = flc_now_s();
    if (caught || now < g->next_sweep_s)
        return;
    char steps[FLC_NAME_MAX + 1];
    flc_err_t e = {0};
    flc_store_job_report_t rep;
    if (flc_sgd_steps_job(steps, sizeof steps, job, &e) == FLC_OK)
        flc_store_job_expire(s, steps, g->ttl_ms, &rep); /* best effort: a backstop */
    /* A SCAN of the whole keyspace: on a big cache, sweep less often. */
    double took = flc_now_s() - now;
    g->next_sweep_s = flc_now_s() + (took * 20 > SWEEP_EVERY_S ? took * 20 : SWEEP_EVERY_S);
}

int flc_train_clean_steps(flc_store_t *s, const char *job, uint64_t *keys, flc_err_t *e)
{
    *keys = 0;
    /* Everything under fl:{J/steps/ (SCAN: keys no index names too, such
     * as a push cut short), then the progress list, which is J's own. */
    char steps[FLC_NAME_MAX + 1];
    int rc = flc_sgd_steps_job(steps, sizeof steps, job, e);
    if (rc != FLC_OK)
        return rc;
    flc_store_job_report_t rep;
    /* Twice: a worker SIGKILLed a moment ago may have left its last
     * commands in its socket, which the kernel still delivers and Redis
     * then runs, after a first sweep (seen in CI: one step key came back). */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1)
            flc_sleep_ms(150);
        rc = flc_store_job_rm(s, steps, 0, &rep);
        if (rc != FLC_OK && rc != FLC_ENOTFOUND)
            return flc_err_set(e, rc, "%s", flc_store_errstr(s));
        *keys += rc == FLC_OK ? rep.keys : 0;
    }
    return flc_sgd_cleanup(s, job, e);
}

void flc_train_guard_end(flc_train_guard_t *g)
{
    if (g->fd >= 0) {
        send_msg(g, 'D', 0);
        close(g->fd);
        g->fd = -1;
    }
    if (g->janitor > 0) {
        while (waitpid(g->janitor, NULL, 0) < 0 && errno == EINTR) {
        }
        g->janitor = 0;
    }
    if (g->installed) {
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        g->installed = 0;
    }
    if (caught) /* die of it, as the program's own handler does */
        raise(caught);
}
