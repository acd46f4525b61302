/* cmd_tune_probe.c - one probe of `flcache tune` (tune.h), whole or short.
 *
 * A probe is this program run again with the job's arguments plus
 * `--memory M --json`, CPU proportional to memory, its stdout read as the
 * job's JSON report. A short probe runs part of the job's work and
 * extrapolates the whole job's time, because a probe that costs as much as
 * a sweep's probe cannot use a third of a sweep's time in 3 or 4 probes
 * (docs/tune.md: the softmax training, 0.44-0.66 of the sweep). What is
 * cut is what the job itself times per unit, so the time it does not cover
 * is measured, not assumed:
 *   train     a share of the samples (--subset, --test-subset in
 *             proportion), one epoch (--epochs 1): the job reports its
 *             loading (load_s, proportional to the samples loaded) and its
 *             epoch (epoch_s, and its median step step_ms_p50); the rest
 *             of its wall_s (function starts, connects, the end) is the
 *             fixed part, kept as measured. The whole job: fixed + load_s x
 *             samples ratio + epochs x (epoch_s + the steps it did not run
 *             x step_ms_p50).
 *   simulate  some of its rounds (--rounds): fixed = wall - rounds 2.. (the
 *             first round, with its cold starts, counts as fixed), then
 *             the mean of rounds 2.. for each of the whole job's rounds
 *             after the first.
 * Billed cost is extrapolated in proportion to time (functions are billed
 * for the time they run). A `run` workload is always probed whole. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/clock.h"
#include "cli/opt.h"
#include "cli/tune.h"
#include "runtime/cpu_cgroup.h"

#define MIN_STEPS 8          /* a short train probe's steps per epoch, at least */
/* What a short probe times (the units it extrapolates from) lasts at least
 * this long at the whole run's size: 2.5 periods of the CPU quota (100 ms,
 * runtime/cpu_cgroup.h), since a function below one vCPU runs in bursts of
 * its quota and a shorter measure of it is mostly where the bursts fell. */
#define MIN_TIMED_S 0.25
#define FASHION_TEST 10000   /* the t10k split: --test-subset 0 (or more) means all */

static double num(const cJSON *o, const char *k, double def)
{
    const cJSON *it = cJSON_GetObjectItem(o, k);
    return cJSON_IsNumber(it) ? it->valuedouble : def;
}

/* The value of the job's --name V / --name=V (the last), or NULL. */
static const char *job_opt(char **job, int njob, const char *name)
{
    const char *v = NULL;
    size_t l = strlen(name);
    for (int i = 1; i < njob; i++)
        if (strncmp(job[i], "--", 2) == 0 && strncmp(job[i] + 2, name, l) == 0) {
            if (job[i][2 + l] == '=')
                v = job[i] + 3 + l;
            else if (job[i][2 + l] == '\0' && i + 1 < njob)
                v = job[i + 1];
        }
    return v;
}

int flc_tune_part_plan(char **job, int njob, const cJSON *whole, double part,
                       flc_tune_part_t *plan)
{
    memset(plan, 0, sizeof *plan);
    plan->part = part;
    if (whole == NULL || njob < 1 || !(part > 0 && part < 1) ||
        job_opt(job, njob, "resume") != NULL)
        return 0;
    const cJSON *inv, *x;
    cJSON_ArrayForEach(inv, cJSON_GetObjectItem(whole, "invocations"))
        if (num(inv, "peak_rss_kb", 0) / 1024 > plan->peak_mb)
            plan->peak_mb = num(inv, "peak_rss_kb", 0) / 1024;
    if (strcmp(job[0], "train") == 0) {
        long n = 0;
        cJSON_ArrayForEach(inv, cJSON_GetObjectItem(whole, "invocations"))
            n += (long)num(cJSON_GetObjectItem(inv, "result"), "train_samples", 0);
        long w = (long)num(whole, "workers", 0), b = (long)num(whole, "batch", 0);
        plan->steps = (long)num(whole, "steps_per_epoch", 0);
        plan->epochs = (long)num(whole, "epochs", 0);
        if (n <= 0 || w <= 0 || b <= 0 || plan->steps <= 0 || plan->epochs <= 0)
            return 0;
        const char *t = job_opt(job, njob, "test-subset");
        long test = t ? atol(t) : 0;
        plan->samples = n;
        plan->test = test <= 0 || test > FASHION_TEST ? FASHION_TEST : test;
        long p = (long)ceil(n * part), least = MIN_STEPS * w * b;
        double timed = num(whole, "load_s", 0) + num(whole, "epoch_s", 0); /* all samples */
        long enough = timed > 0 ? (long)ceil(n * MIN_TIMED_S / timed) : n;
        p = p > least ? p : least;
        plan->p_samples = p > enough ? p : enough;
        plan->p_test = lround((double)plan->test * plan->p_samples / n);
        if (plan->p_test < 1)
            plan->p_test = 1;
        /* Short enough to pay: at most 3/4 of the samples or of the epochs. */
        if (plan->p_samples * 4 > n * 3 && plan->epochs < 2)
            return 0;
        if (plan->p_samples > n)
            plan->p_samples = n, plan->p_test = plan->test;
        plan->kind = FLC_TUNE_PART_TRAIN;
        return 1;
    }
    if (strcmp(job[0], "simulate") == 0) {
        const char *mode = job_opt(job, njob, "mode");
        const cJSON *r = cJSON_GetObjectItem(whole, "rounds");
        long nr = cJSON_GetArraySize(r);
        if ((mode != NULL && strcmp(mode, "sync") != 0) || nr < 3)
            return 0;
        cJSON_ArrayForEach(x, r)
            if (!cJSON_IsNumber(cJSON_GetObjectItem(x, "round_ms")))
                return 0;
        double later = 0; /* rounds 2.. */
        for (long i = 1; i < nr; i++)
            later += num(cJSON_GetArrayItem(r, (int)i), "round_ms", 0) / 1000;
        long p = (long)ceil(nr * part), enough = later > 0 ? 1 + (long)ceil(
                                                    MIN_TIMED_S / (later / (nr - 1))) : nr;
        p = p > 2 ? p : 2;
        plan->rounds = nr;
        plan->p_rounds = p > enough ? p : enough;
        if (plan->p_rounds * 4 > nr * 3)
            return 0;
        plan->kind = FLC_TUNE_PART_SIM;
        return 1;
    }
    return 0;
}

double flc_tune_part_extrapolate(const flc_tune_part_t *plan, const cJSON *j, double t)
{
    if (plan->kind == FLC_TUNE_PART_TRAIN) {
        long n = 0;
        const cJSON *inv;
        cJSON_ArrayForEach(inv, cJSON_GetObjectItem(j, "invocations"))
            n += (long)num(cJSON_GetObjectItem(inv, "result"), "train_samples", 0);
        double load = num(j, "load_s", -1), epoch = num(j, "epoch_s", -1);
        double ep = num(j, "epochs", 0), steps = num(j, "steps_per_epoch", 0);
        if (n <= 0 || load < 0 || epoch < 0 || ep <= 0 || steps <= 0)
            return -1;
        double fixed = t - load - ep * epoch;
        /* The probe's epoch as measured, plus the steps it did not run at
         * its median step (rank 0's, exchange included): what an epoch
         * does once (evaluate, store its record) and its first steps'
         * warm-up (about 25 ms here, so that a 16-step epoch's mean step
         * came out 1.5-2x a 64-step one's) are counted once, as in the
         * whole job. Without the median, the whole epoch scales. */
        double p50 = num(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "epoch_detail"), 0),
                         "step_ms_p50", -1000) / 1000;
        double one = p50 >= 0 && plan->steps >= steps ? epoch + (plan->steps - steps) * p50
                                                      : epoch * plan->steps / steps;
        return (fixed > 0 ? fixed : 0) + load * plan->samples / n + plan->epochs * one;
    }
    const cJSON *r = cJSON_GetObjectItem(j, "rounds");
    int nr = cJSON_GetArraySize(r);
    if (plan->kind != FLC_TUNE_PART_SIM || nr < 2)
        return -1;
    double later = 0; /* rounds 2.. */
    for (int i = 1; i < nr; i++)
        later += num(cJSON_GetArrayItem(r, i), "round_ms", 0) / 1000;
    return t - later + later / (nr - 1) * (double)(plan->rounds - 1);
}

/* The job's arguments for this probe: its own, the part's, --memory, --json. */
static char **probe_argv(char **job, int njob, unsigned mb, const flc_tune_part_t *plan,
                         char (*txt)[24])
{
    char **argv = calloc((size_t)njob + 12, sizeof *argv);
    if (argv == NULL)
        return NULL;
    int k = 0;
    argv[k++] = "flcache";
    for (int i = 0; i < njob; i++)
        argv[k++] = job[i]; /* the parser keeps an option's last value */
    if (plan != NULL && plan->kind == FLC_TUNE_PART_TRAIN) {
        snprintf(txt[0], 24, "%ld", plan->p_samples);
        snprintf(txt[1], 24, "%ld", plan->p_test);
        argv[k++] = "--subset", argv[k++] = txt[0];
        argv[k++] = "--test-subset", argv[k++] = txt[1];
        argv[k++] = "--epochs", argv[k++] = "1";
    } else if (plan != NULL && plan->kind == FLC_TUNE_PART_SIM) {
        snprintf(txt[0], 24, "%ld", plan->p_rounds);
        argv[k++] = "--rounds", argv[k++] = txt[0];
    }
    snprintf(txt[2], 24, "%u", mb);
    argv[k++] = "--memory", argv[k++] = txt[2];
    argv[k++] = "--json";
    return argv;
}

/* Reads the child's stdout into a new string (NULL: out of memory); stops
 * the child (SIGTERM, *cut = 1) once cut_s > 0 seconds have passed since t0. */
static char *read_report(int fd, pid_t pid, uint64_t t0, double cut_s, int *cut)
{
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    ssize_t n;
    while (out != NULL) {
        if (cut_s > 0 && pid > 0 && !*cut) {
            double left = cut_s - (double)(flc_now_ns() - t0) / 1e9;
            struct pollfd pf = {.fd = fd, .events = POLLIN};
            int pr = left > 0 ? poll(&pf, 1, (int)(left * 1000) + 1) : 0;
            if (pr < 0 || (pr == 0 && (double)(flc_now_ns() - t0) / 1e9 < cut_s))
                continue; /* a signal, or woken a little early */
            if (pr == 0) {
                kill(pid, SIGTERM); /* its pool's instances die with it (PDEATHSIG) */
                *cut = 1;
            }
        }
        if ((n = read(fd, out + len, cap - len - 1)) == 0)
            break;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        len += (size_t)n;
        if (len + 1 == cap) {
            char *m = realloc(out, cap *= 2);
            if (m == NULL) {
                free(out);
                return NULL;
            }
            out = m;
        }
    }
    if (out != NULL)
        out[len] = '\0';
    return out;
}

void flc_tune_probe_run(char **job, int njob, unsigned mb, double cut_s, int no_cpu,
                        int verbose, const flc_tune_part_t *plan, flc_tune_probe_t *p,
                        cJSON **keep)
{
    memset(p, 0, sizeof *p);
    p->memory_mb = mb;
    p->part = 1;
    if (keep != NULL)
        *keep = NULL;
    if (plan != NULL && plan->kind == 0)
        plan = NULL;
    char txt[3][24];
    char **argv = probe_argv(job, njob, mb, plan, txt);
    int fd[2];
    if (argv == NULL || pipe(fd) != 0) {
        free(argv);
        return;
    }
    uint64_t t0 = flc_now_ns();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fd[1], 1);
        close(fd[0]);
        close(fd[1]);
        if (!verbose) {
            int dn = open("/dev/null", O_WRONLY);
            if (dn >= 0)
                dup2(dn, 2);
        }
        setenv("FLCACHE_POOL_CPU", no_cpu ? "0" : FLC_OPT_STRING(FLC_CPUCG_MB_PER_VCPU), 1);
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    close(fd[1]);
    char *out = read_report(fd[0], pid, t0, cut_s, &p->cut);
    close(fd[0]);
    int st = 0;
    while (pid > 0 && waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    p->probe_s = (double)(flc_now_ns() - t0) / 1e9;
    cJSON *j = out != NULL ? cJSON_Parse(out) : NULL;
    p->measured_s = num(j, "wall_s", num(j, "wall_ms", -1000) / 1000);
    if (p->measured_s < 0)
        p->measured_s = p->probe_s;
    p->measured_usd = num(j, "cost_usd", 0);
    p->time_s = p->measured_s;
    p->cost_usd = p->measured_usd;
    p->ok = !p->cut && pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 && j != NULL &&
            p->time_s > 0;
    if (p->ok && plan != NULL) {
        double t = flc_tune_part_extrapolate(plan, j, p->measured_s);
        p->part = plan->kind == FLC_TUNE_PART_TRAIN
                      ? (double)plan->p_samples / plan->samples / plan->epochs
                      : (double)plan->p_rounds / plan->rounds;
        p->ok = t > 0; /* a report it cannot extend is no point for the fit */
        if (p->ok) {
            p->time_s = t;
            p->cost_usd = p->measured_usd * t / p->measured_s;
        }
    }
    if (verbose)
        fprintf(stderr, "flcache tune: %u MB: %s, %.3f s, %.3g USD%s (probe %.2f s)\n", mb,
                p->ok ? "ok" : p->cut ? "cut at the deadline" : "failed", p->time_s,
                p->cost_usd, p->part < 1 ? " extrapolated from a part" : "", p->probe_s);
    if (verbose && j != NULL && (p->part < 1 || keep != NULL) && cJSON_IsNumber(
                                                    cJSON_GetObjectItem(j, "load_s")))
        fprintf(stderr, "flcache tune:   its run: %.3f s = loading %.3f s + %g epoch(s) of "
                "%.3f s + the rest\n", p->measured_s, num(j, "load_s", 0),
                num(j, "epochs", 0), num(j, "epoch_s", 0));
    if (keep != NULL)
        *keep = j;
    else
        cJSON_Delete(j);
    free(out);
    free(argv);
}
