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
 * `--memory M --json` (cmd_tune_probe.c); the first runs the job whole,
 * later ones of a train or simulate job run part of it and extrapolate. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

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
    double part;         /* --part: the share of the job a short probe runs */
    int json, sweep, no_cpu, verbose;
    flc_tune_part_t plan; /* how probes after the first run part of the job */
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
    {.name = "part", .type = FLC_OPT_NUM, .meta = "F", FLC_OPT_AT(tune_opts_t, part),
     .min = 0, .min_open = 1, .max = 1,
     .help = "probes after the first run this share of a train or simulate job (its samples "
             "for one epoch, or its rounds) and extrapolate the whole job's time; 1: every "
             "probe runs the job whole"},
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
        "it once more to check. Make the job short (one epoch, a subset): the first\n"
        "probe runs it whole; later probes of a train or simulate job run part of it\n"
        "(--part) and extrapolate its time, marked ~ (with a deadline, a probe that can\n"
        "no longer meet it is stopped). Tune's options may stand anywhere (--memory is\n"
        "its range); each probe sets the job's own --memory and --json. With the\n"
        "job's own --job J and FLCACHE_REDIS set, the result is kept for `flcache report\n"
        "--job J`, which plots time and cost against memory. Example:\n"
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
        if (p[i].ok && p[i].probe_s - p[i].measured_s > su)
            su = p[i].probe_s - p[i].measured_s;
    if (o->deadline_s <= 0 || !isfinite(su))
        return 0;
    return 1.25 * o->deadline_s + (su > 0 ? su : 0);
}

/* A tune's probe at mb, appended to p[0..*np), cut at the deadline (a
 * short probe too: its job's whole time is at least its own). The first
 * runs the job whole and plans how the later ones run part of it. */
static void next_probe(tune_opts_t *o, char **job, int njob, unsigned mb,
                       flc_tune_probe_t *p, int *np)
{
    double cut = cut_after(o, p, *np);
    cJSON *whole = NULL;
    flc_tune_probe_run(job, njob, mb, cut, o->no_cpu, o->verbose, &o->plan, &p[*np],
                       *np == 0 ? &whole : NULL);
    if (*np == 0 && p[0].ok && flc_tune_part_plan(job, njob, whole, o->part, &o->plan) &&
        o->verbose)
        fprintf(stderr, "flcache tune: later probes run part of the job (%s) and extrapolate\n",
                o->plan.kind == FLC_TUNE_PART_TRAIN ? "a share of its samples, one epoch"
                                                    : "some of its rounds");
    cJSON_Delete(whole);
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
        const char *x = k >= 0 && p[k].part < 1 ? "~" : ""; /* extrapolated */
        if (k >= 0 && p[k].ok)
            snprintf(pt, sizeof pt, "%s%.3f", x, p[k].time_s),
                snprintf(pc, sizeof pc, "%s%.3g", x, p[k].cost_usd);
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
        /* exhaustive: every size whole, never cut */
        flc_tune_probe_run(job, njob, sizes[i], 0, o->no_cpu, o->verbose, NULL, &p[(*np)++],
                           NULL);
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
    tune_opts_t o = {.lo = 128, .hi = 10240, .budget = 4, .part = 0.25};
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
            /* A short probe holds less data than the job: no size the
             * whole run's functions outgrew (the platform stops an
             * instance at its memory size). */
            if (o.plan.kind && o.plan.peak_mb >= max_bad)
                max_bad = (unsigned)ceil(o.plan.peak_mb);
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
        if (o.plan.kind)
            printf("           ~ extrapolated: probes after the first ran %s (about %.0f%%)\n",
                   o.plan.kind == FLC_TUNE_PART_TRAIN ? "part of the samples for one epoch"
                                                      : "some of the rounds",
                   100 * (o.plan.kind == FLC_TUNE_PART_TRAIN
                              ? (double)o.plan.p_samples / o.plan.samples / o.plan.epochs
                              : (double)o.plan.p_rounds / o.plan.rounds));
        if (recorded)
            printf("report     flcache report --job %s (the curve as a plot)\n", name);
    }
    if (pick == 0) {
        flc_cli_error("tune", "no size in %u..%u MB %s", o.lo, o.hi,
                      o.deadline_s > 0 ? "meets the deadline" : "ran the job");
        rc = FLC_EXIT_RUNTIME;
    } else {
        if (!o.json)
            printf("recommend  %u MB%s\n", pick, o.sweep ? " (cheapest probed)"
                   : probed(p, np, pick) >= 0 && p[probed(p, np, pick)].part < 1
                       ? " (time and cost extrapolated from a short probe)" : "");
        rc = FLC_EXIT_OK;
    }
    flc_embed_stop(srv);
    free(mine);
    free(job);
    return rc;
}
