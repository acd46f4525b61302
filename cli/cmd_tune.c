/* `flcache tune JOB-COMMAND... [--memory LO..HI] [--deadline S] [--budget N]`:
 * which memory size should a job's functions get? It runs the job (a
 * `train`, `simulate` or `run` command line, made short by the user) a few
 * times at chosen sizes with CPU proportional to memory (as on AWS Lambda:
 * FLCACHE_POOL_CPU=1769 for the probes, runtime/cpu_cgroup.h), fits time
 * and cost against memory (tune_model.c), and recommends the cheapest size
 * whose predicted time meets the deadline, then probes that size to check.
 * The curve is printed as a table, or with --json as one object. --sweep
 * probes every size of the grid instead (what bench/tune compares against).
 * Each probe is this program run again with the job's arguments plus
 * `--memory M --json`, its stdout read as the job's JSON report. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/clock.h"
#include "cache/embed.h"
#include "cli/cli.h"
#include "cli/config.h"
#include "cli/opt.h"
#include "cli/tune.h"
#include "runtime/cpu_cgroup.h"

#define MAX_PROBES 32

typedef struct tune_opts {
    const char *job;     /* the positional: train | simulate | run (checked) */
    unsigned lo, hi;
    double deadline_s;
    int budget;
    int json, sweep, no_cpu, verbose;
} tune_opts_t;

static const char *const job_cmds[] = {"train", "simulate", "run", NULL};

/* Lambda's sizes a sweep visits (those inside LO..HI, plus LO and HI). */
static const unsigned grid[] = FLC_TUNE_GRID;
enum { NGRID = FLC_TUNE_NGRID };

static int range_parse(const char *v, void *dest, const char **need)
{
    *need = "LO..HI in MB with 128 <= LO <= HI <= 10240";
    tune_opts_t *o = dest;
    unsigned lo, hi;
    char tail;
    if (sscanf(v, "%u..%u%c", &lo, &hi, &tail) != 2 || lo < 128 || hi > 10240 || lo > hi)
        return -1;
    o->lo = lo, o->hi = hi;
    return 0;
}

static const flc_opt_t options[] = {
    {.name = "JOB-COMMAND", .type = FLC_OPT_STR, FLC_OPT_AT(tune_opts_t, job),
     .choices = job_cmds, .flags = FLC_OPT_POSITIONAL | FLC_OPT_REQUIRED,
     .help = "train, simulate or run, followed by that command's own options"},
    {.name = "memory", .type = FLC_OPT_CUSTOM, .meta = "LO..HI", .custom = range_parse,
     .def = "128..10240", .help = "the sizes to choose from, in MB"},
    {.name = "deadline", .type = FLC_OPT_NUM, .meta = "S", FLC_OPT_AT(tune_opts_t, deadline_s),
     .min = 0, .min_open = 1, .def = "none: the cheapest size",
     .help = "the job must finish within S seconds (its own reported time)"},
    {.name = "budget", .type = FLC_OPT_INT, .meta = "N", FLC_OPT_AT(tune_opts_t, budget),
     .imin = 2, .imax = MAX_PROBES, .help = "probes at most (the last checks the choice)"},
    {.name = "sweep", .type = FLC_OPT_FLAG, FLC_OPT_AT(tune_opts_t, sweep),
     .help = "probe every grid size in LO..HI instead (exhaustive; for comparison)"},
    {.name = "no-cpu", .type = FLC_OPT_FLAG, FLC_OPT_AT(tune_opts_t, no_cpu),
     .help = "do not tie CPU to memory (the probes then share the machine's CPUs)"},
    {.name = "json", .type = FLC_OPT_FLAG, FLC_OPT_AT(tune_opts_t, json),
     .help = "print probes, model, curve and choice as one JSON object"},
    {.name = "verbose", .type = FLC_OPT_FLAG, FLC_OPT_AT(tune_opts_t, verbose),
     .help = "one line on stderr per probe"},
    {0},
};

static const flc_opt_cmd_t tune_cmd = {
    .prog = "flcache tune",
    .synopsis = "JOB-COMMAND... [--memory LO..HI] [--deadline S] [--budget N] [--json]",
    .about =
        "Recommends the memory size of a job's functions: runs the job a few times at\n"
        "chosen sizes with CPU proportional to memory (1 vCPU at 1769 MB, as on AWS\n"
        "Lambda; a cgroup quota per function, which needs root), fits its time and cost\n"
        "against memory, and picks the cheapest size that meets the deadline, then runs\n"
        "it once more to check. Make the job short (one epoch, a subset): every probe\n"
        "runs it whole (with a deadline, a probe that can no longer meet it is\n"
        "stopped). Tune's options may stand anywhere (--memory is its range);\n"
        "each probe sets the job's own --memory and --json. With the job's own\n"
        "--job J and FLCACHE_REDIS set, the result is kept for `flcache report --job J`,\n"
        "which plots time and cost against memory. Example:\n"
        "  flcache tune run mandelbrot --workers 2 --size 512 --deadline 2 --job m512\n",
    .epilog = "exit codes: 0 a size was recommended, 1 no size meets the deadline or the\n"
              "probes failed, 2 usage error\n",
    .opts = options,
};

/* 1 when arg (with its value when the option takes one) is tune's own. */
static int tune_option(const char *arg, int *takes_value)
{
    if (strncmp(arg, "--", 2) != 0)
        return 0;
    size_t l = strcspn(arg + 2, "=");
    for (const flc_opt_t *o = options; o->name != NULL; o++)
        if (!(o->flags & FLC_OPT_POSITIONAL) && strlen(o->name) == l &&
            strncmp(o->name, arg + 2, l) == 0) {
            *takes_value = o->type != FLC_OPT_FLAG && arg[2 + l] != '=';
            return 1;
        }
    return strcmp(arg, "--help") == 0 ? (*takes_value = 0, 1) : 0;
}

/* Runs the job once at mb; fills *p. cut_s > 0: the probe is stopped
 * (SIGTERM) once it has run that long, since its job can then no longer
 * meet the deadline; it counts as a miss (p->cut, not ok) instead of
 * spending the rest of a slow size's run. */
static void probe(const tune_opts_t *o, char **job, int njob, unsigned mb, double cut_s,
                  flc_tune_probe_t *p)
{
    memset(p, 0, sizeof *p);
    p->memory_mb = mb;
    char **argv = calloc((size_t)njob + 6, sizeof *argv);
    char mbtext[16];
    snprintf(mbtext, sizeof mbtext, "%u", mb);
    int k = 0;
    argv[k++] = "flcache";
    for (int i = 0; i < njob; i++)
        argv[k++] = job[i];
    argv[k++] = "--memory";
    argv[k++] = mbtext;
    argv[k++] = "--json";
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
        if (!o->verbose) {
            int dn = open("/dev/null", O_WRONLY);
            if (dn >= 0)
                dup2(dn, 2);
        }
        setenv("FLCACHE_POOL_CPU", o->no_cpu ? "0" : FLC_OPT_STRING(FLC_CPUCG_MB_PER_VCPU), 1);
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    close(fd[1]);
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    ssize_t n;
    while (out != NULL) {
        if (cut_s > 0 && pid > 0 && !p->cut) {
            double left = cut_s - (double)(flc_now_ns() - t0) / 1e9;
            struct pollfd pf = {.fd = fd[0], .events = POLLIN};
            int pr = left > 0 ? poll(&pf, 1, (int)(left * 1000) + 1) : 0;
            if (pr < 0 || (pr == 0 && (double)(flc_now_ns() - t0) / 1e9 < cut_s))
                continue; /* a signal, or woken a little early */
            if (pr == 0) {
                kill(pid, SIGTERM); /* its pool's instances die with it (PDEATHSIG) */
                p->cut = 1;
            }
        }
        if ((n = read(fd[0], out + len, cap - len - 1)) == 0)
            break;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        len += (size_t)n;
        if (len + 1 == cap) {
            char *m = realloc(out, cap *= 2);
            if (m == NULL)
                break;
            out = m;
        }
    }
    close(fd[0]);
    int st = 0;
    while (pid > 0 && waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    p->probe_s = (double)(flc_now_ns() - t0) / 1e9;
    cJSON *j = NULL;
    if (out != NULL) {
        out[len] = '\0';
        j = cJSON_Parse(out);
    }
    const cJSON *ws = cJSON_GetObjectItem(j, "wall_s"), *wm = cJSON_GetObjectItem(j, "wall_ms");
    p->time_s = cJSON_IsNumber(ws) ? ws->valuedouble
                : cJSON_IsNumber(wm) ? wm->valuedouble / 1000
                                     : p->probe_s;
    const cJSON *c = cJSON_GetObjectItem(j, "cost_usd");
    p->cost_usd = cJSON_IsNumber(c) ? c->valuedouble : 0;
    p->ok = !p->cut && pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 && j != NULL &&
            p->time_s > 0;
    if (o->verbose)
        fprintf(stderr, "flcache tune: %u MB: %s, %.3f s, %.3g USD (probe %.2f s)\n", mb,
                p->ok ? "ok" : p->cut ? "cut at the deadline" : "failed", p->time_s,
                p->cost_usd, p->probe_s);
    cJSON_Delete(j);
    free(out);
    free(argv);
}

/* When a probe can be stopped: its job's time can no longer meet the
 * deadline once the probe has run the deadline plus the start-up the
 * probes so far spent outside the job's own time (their most: start-up
 * that runs in a function is slower at small sizes), with a quarter of the
 * deadline to spare for noise. Before any probe succeeded, or without a
 * deadline, never. */
static double cut_after(const tune_opts_t *o, const flc_tune_probe_t *p, int np)
{
    double su = -INFINITY;
    for (int i = 0; i < np; i++)
        if (p[i].ok && p[i].probe_s - p[i].time_s > su)
            su = p[i].probe_s - p[i].time_s;
    if (o->deadline_s <= 0 || !isfinite(su))
        return 0;
    return 1.25 * o->deadline_s + (su > 0 ? su : 0);
}

/* A tune's probe at mb, appended to p[0..*np), cut at the deadline. */
static void next_probe(const tune_opts_t *o, char **job, int njob, unsigned mb,
                       flc_tune_probe_t *p, int *np)
{
    double cut = cut_after(o, p, *np);
    probe(o, job, njob, mb, cut, &p[*np]);
    (*np)++;
}

static unsigned clamp(double v, unsigned lo, unsigned hi)
{
    return v < lo ? lo : v > hi ? hi : (unsigned)lround(v);
}

static int probed(const flc_tune_probe_t *p, int n, unsigned mb)
{
    for (int i = 0; i < n; i++)
        if (p[i].memory_mb == mb)
            return i;
    return -1;
}

/* The sizes a tune probes first: one vCPU, then, with a deadline, half of
 * it (two points on the CPU-bound part give a and b; the half-vCPU probe
 * takes about a + 2b, while the bottom of the range, 128 MB, takes a + 14b:
 * measured on 2026-11-29, probing the bottom made tune spend 0.40-0.58 of
 * an exhaustive sweep's probe time, the goal being a third). Without a
 * deadline the cheapest size is wanted whatever its time, so the second
 * probe is the bottom of the range, where a job whose time does not follow
 * its CPU (waiting on the cache, loading) is cheapest; a slow probe is cut
 * once it can no longer meet a deadline (cut_after). */
static int first_sizes(const tune_opts_t *o, unsigned *s)
{
    s[0] = clamp(FLC_CPUCG_MB_PER_VCPU, o->lo, o->hi);
    if (o->deadline_s > 0)
        s[1] = clamp(s[0] / 2.0, o->lo, o->hi);
    else
        s[1] = s[0] != o->lo ? o->lo : o->hi;
    if (s[1] == s[0])
        s[1] = s[0] != o->lo ? o->lo : o->hi;
    return s[1] != s[0] ? 2 : 1;
}

/* The next size after probes that could not be fitted (failed or cut):
 * the size a probe at m_i (time t_i) proves meets the deadline D, since a
 * job's time grows at most as 1/m below it (time = a + b / m with a >= 0:
 * time(m) <= t_i m_i / m), so t_i m_i / D; else twice the largest failure. */
static unsigned after_failures(const tune_opts_t *o, const flc_tune_probe_t *p, int np,
                               unsigned max_bad)
{
    double sure = INFINITY;
    for (int i = 0; i < np && o->deadline_s > 0; i++)
        if (p[i].ok && p[i].time_s <= o->deadline_s &&
            p[i].time_s * p[i].memory_mb / o->deadline_s < sure)
            sure = p[i].time_s * p[i].memory_mb / o->deadline_s;
    unsigned m = isfinite(sure) ? (unsigned)(ceil(sure / 64) * 64) : 0;
    return m > max_bad && probed(p, np, clamp(m, o->lo, o->hi)) < 0
               ? clamp(m, o->lo, o->hi)
               : clamp(max_bad * 2.0, o->lo, o->hi);
}

static void print_table(const tune_opts_t *o, const flc_tune_probe_t *p, int np,
                        const flc_tune_model_t *m, int fitted, unsigned pick)
{
    printf("memory MB   vCPU  time s (model)  cost USD (model)  probe: time s  cost USD%s\n",
           o->deadline_s > 0 ? "  deadline" : "");
    unsigned rows[NGRID + MAX_PROBES + 2];
    int nr = 0;
    for (int i = 0; i < NGRID; i++)
        if (grid[i] >= o->lo && grid[i] <= o->hi)
            rows[nr++] = grid[i];
    for (int i = 0; i < np; i++)
        rows[nr++] = p[i].memory_mb;
    if (pick)
        rows[nr++] = pick;
    for (int i = 1; i < nr; i++) /* sort, unique */
        for (int j = i; j > 0 && rows[j] < rows[j - 1]; j--) {
            unsigned t = rows[j];
            rows[j] = rows[j - 1];
            rows[j - 1] = t;
        }
    for (int i = 0; i < nr; i++) {
        if (i > 0 && rows[i] == rows[i - 1])
            continue;
        unsigned mb = rows[i];
        int k = probed(p, np, mb);
        char pt[32] = "", pc[32] = "", dl[16] = "";
        if (k >= 0 && p[k].ok)
            snprintf(pt, sizeof pt, "%.3f", p[k].time_s), snprintf(pc, sizeof pc, "%.3g",
                                                                    p[k].cost_usd);
        else if (k >= 0 && p[k].cut)
            snprintf(pt, sizeof pt, "> %.3f", p[k].time_s);
        else if (k >= 0)
            snprintf(pt, sizeof pt, "failed");
        if (o->deadline_s > 0 && fitted)
            snprintf(dl, sizeof dl, "%s", flc_tune_time(m, mb) <= o->deadline_s ? "meets"
                                                                              : "misses");
        printf("%9u  %5.2f  %14.3f  %16.3g  %13s  %8s  %s%s\n", mb,
               flc_cpucg_vcpus(mb, 0), fitted ? flc_tune_time(m, mb) : NAN,
               fitted ? flc_tune_cost(m, mb) : NAN, pt, pc, dl, mb == pick ? "  <- chosen" : "");
    }
}

/* The exhaustive sweep: the cheapest probed size meeting the deadline. */
static unsigned sweep(const tune_opts_t *o, char **job, int njob, flc_tune_probe_t *p, int *np)
{
    unsigned sizes[NGRID + 2];
    int n = 0;
    sizes[n++] = o->lo;
    for (int i = 0; i < NGRID; i++)
        if (grid[i] > o->lo && grid[i] < o->hi)
            sizes[n++] = grid[i];
    if (o->hi > o->lo)
        sizes[n++] = o->hi;
    unsigned best = 0;
    double best_cost = INFINITY;
    for (int i = 0; i < n; i++) {
        probe(o, job, njob, sizes[i], 0, &p[(*np)++]); /* exhaustive: never cut */
        const flc_tune_probe_t *q = &p[*np - 1];
        if (q->ok && (o->deadline_s <= 0 || q->time_s <= o->deadline_s) &&
            q->cost_usd < best_cost) {
            best_cost = q->cost_usd;
            best = q->memory_mb;
        }
    }
    return best;
}

int flc_cmd_tune(int argc, char **argv)
{
    tune_opts_t o = {.lo = 128, .hi = 10240, .budget = 4};
    /* tune's own options go to the parser; the rest is the job's command
     * line, kept in order. */
    char **mine = calloc((size_t)argc + 1, sizeof *mine);
    char **job = calloc((size_t)argc + 1, sizeof *job);
    if (mine == NULL || job == NULL) {
        free(mine);
        free(job);
        return FLC_EXIT_RUNTIME;
    }
    int nm = 0, nj = 0, tv;
    mine[nm++] = argv[0];
    for (int i = 1; i < argc; i++) {
        if (tune_option(argv[i], &tv)) {
            mine[nm++] = argv[i];
            if (tv && i + 1 < argc)
                mine[nm++] = argv[++i];
        } else {
            job[nj++] = argv[i];
        }
    }
    if (nj > 0)
        mine[nm++] = job[0];
    int rc;
    if (!flc_opt_parse(&tune_cmd, nm, mine, &o, sizeof o, &rc)) {
        free(mine);
        free(job);
        return rc;
    }
    /* One private redis-server for every probe (unless FLCACHE_REDIS names
     * one): a probe then pays its job, not a server start, so the probe
     * time is spent where the sizes differ. */
    flc_embed_t *srv = NULL;
    if (flc_config_program()->redis == NULL) {
        flc_err_t e = {0};
        flc_embed_opts_t eo = {0};
        flc_config_embed_opts(flc_config_program(), &eo);
        if ((srv = flc_embed_start(&eo, &e)) != NULL)
            setenv("FLCACHE_REDIS", flc_embed_url(srv), 1);
    }
    flc_tune_probe_t p[MAX_PROBES + NGRID];
    int np = 0, fitted = 0;
    flc_tune_model_t m = {0};
    unsigned pick = 0, max_bad = 0;
    if (o.sweep) {
        pick = sweep(&o, job, nj, p, &np);
        fitted = flc_tune_fit(p, (size_t)np, &m) == 0;
    } else {
        unsigned first[2];
        int nf = first_sizes(&o, first);
        for (int i = 0; i < nf; i++)
            next_probe(&o, job, nj, first[i], p, &np);
        /* Fit, pick, check the pick; a size that fails or misses the
         * deadline joins the fit and the next pick avoids it. */
        while (1) {
            /* Time falls with memory: a size that failed or was measured
             * over the deadline rules out every size up to it. */
            for (int i = 0; i < np; i++)
                if ((!p[i].ok || (o.deadline_s > 0 && p[i].time_s > o.deadline_s)) &&
                    p[i].memory_mb > max_bad)
                    max_bad = p[i].memory_mb;
            fitted = flc_tune_fit(p, (size_t)np, &m) == 0;
            unsigned up = after_failures(&o, p, np, max_bad);
            if (!fitted && np < o.budget && max_bad < o.hi && probed(p, np, up) < 0) {
                next_probe(&o, job, nj, up, p, &np); /* failures: go up */
                continue;
            }
            pick = fitted ? flc_tune_pick(&m, o.lo, o.hi, 64, o.deadline_s, max_bad) : 0;
            if (pick == 0 || probed(p, np, pick) >= 0 || np >= o.budget)
                break;
            unsigned top = 0;
            for (int i = 0; i < np; i++)
                top = p[i].ok && p[i].memory_mb > top ? p[i].memory_mb : top;
            /* Above every probe the fit extrapolates: the top of the range
             * first (saturation), then the pick again. */
            unsigned next = pick > top && probed(p, np, o.hi) < 0 && np + 1 < o.budget ? o.hi
                                                                                        : pick;
            next_probe(&o, job, nj, next, p, &np);
        }
        /* A choice the budget left unchecked, one its probe refuted, or one
         * another probe beat on measured cost (the model is only a model)
         * gives way to the cheapest probe that met the deadline. */
        int k = probed(p, np, pick);
        double best = k >= 0 && p[k].ok && (o.deadline_s <= 0 || p[k].time_s <= o.deadline_s)
                          ? p[k].cost_usd
                          : INFINITY;
        if (best == INFINITY)
            pick = 0;
        for (int i = 0; i < np; i++)
            if (p[i].ok && (o.deadline_s <= 0 || p[i].time_s <= o.deadline_s) &&
                p[i].cost_usd < best)
                best = p[i].cost_usd, pick = p[i].memory_mb;
    }
    double total = 0;
    for (int i = 0; i < np; i++)
        total += p[i].probe_s;
    flc_tune_result_t res = {.job = job, .njob = nj, .sweep = o.sweep, .no_cpu = o.no_cpu,
                             .lo = o.lo, .hi = o.hi, .deadline_s = o.deadline_s, .p = p,
                             .np = np, .m = &m, .fitted = fitted, .pick = pick,
                             .probe_total_s = total};
    /* The job's name (its own --job) keeps the result for its report. */
    const char *name = flc_tune_job_name(job, nj);
    int recorded = name != NULL && flc_tune_record(&res, name) == 0;
    if (o.json) {
        cJSON *j = flc_tune_json(&res);
        flc_cli_print_json(j, 1);
        cJSON_Delete(j);
    } else {
        print_table(&o, p, np, &m, fitted, pick);
        if (fitted)
            printf("model      time = %.3f s + %.3f s at 1 vCPU / vCPUs (rms error %.0f%%)\n",
                   m.a, m.b / FLC_CPUCG_MB_PER_VCPU, 100 * m.err);
        if (fitted && m.sat > 0)
            printf("           more CPU stops helping past %.0f MB\n", m.sat);
        printf("probes     %d, %.1f s in all%s\n", np, total, o.no_cpu ? "" :
               ", CPU proportional to memory (1 vCPU at 1769 MB)");
        if (recorded)
            printf("report     flcache report --job %s (the curve as a plot)\n", name);
    }
    if (pick == 0) {
        flc_cli_error("tune", "no size in %u..%u MB %s", o.lo, o.hi,
                      o.deadline_s > 0 ? "meets the deadline" : "ran the job");
        rc = FLC_EXIT_RUNTIME;
    } else {
        if (!o.json)
            printf("recommend  %u MB%s\n", pick, o.sweep ? " (cheapest probed)" : "");
        rc = FLC_EXIT_OK;
    }
    flc_embed_stop(srv);
    free(mine);
    free(job);
    return rc;
}
