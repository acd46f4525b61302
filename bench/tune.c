/* bench/tune: `flcache tune` against an exhaustive sweep (issue 20 part 2).
 * For each job (a CPU-bound Mandelbrot render on one function, and a short
 * softmax training on two), the sweep probes every grid size of the range
 * with CPU proportional to memory; the deadline is then set to 2x the
 * sweep's time at 1769 MB (1 vCPU), a deadline the cheapest sizes miss, and
 * `flcache tune` runs with it. One JSON line per job:
 *   sweep_best_mb / sweep_best_cost_usd  the cheapest probed size meeting it
 *   tune_mb / tune_cost_usd              tune's choice and its measured cost: by
 *                                        tune's probe there when it ran the job
 *                                        whole, else by one whole run the bench
 *                                        makes (tune_cost_from says which; not in
 *                                        tune's probe time)
 *   tune_extrapolated_cost_usd / _time_s what tune's short probe there said
 *   tune_probes_short                    tune's probes that ran part of the job
 *   cost_ratio                           tune_cost / sweep_best_cost (goal <= 1.10)
 *   probe_time_ratio                     tune's probe time / the sweep's (goal <= 1/3)
 *   tune_probes, sweep_probes, model     (a, b, saturation; rms error)
 *   tune_probes_cut                      tune's probes stopped at the deadline
 * Needs root (cgroup quotas). --tiny: smaller jobs (seconds); --only
 * mandelbrot|train. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "bench/bench_util.h"

static double num(const cJSON *o, const char *k)
{
    const cJSON *it = cJSON_GetObjectItem(o, k);
    return cJSON_IsNumber(it) ? it->valuedouble : 0;
}

static cJSON *tune(const char *flcache, const char *args, const char *job)
{
    static char out[1 << 20];
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s tune %s --json %s 2>/dev/null", flcache, args, job);
    int rc = bench_run(cmd, out, sizeof out);
    cJSON *j = cJSON_Parse(out);
    if (j == NULL)
        fprintf(stderr, "bench/tune: `%s` exit %d, no JSON\n", cmd, rc);
    return j;
}

/* The sweep's probe at mb, or NULL. */
static const cJSON *probe_at(const cJSON *j, double mb)
{
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(j, "probes"))
        if (num(p, "memory_mb") == mb)
            return p;
    return NULL;
}

static void one(const char *flcache, const char *name, const char *job, const char *range)
{
    char args[256];
    snprintf(args, sizeof args, "--memory %s --sweep", range);
    cJSON *sw = tune(flcache, args, job);
    cJSON *l = bench_line("tune", name);
    cJSON_AddStringToObject(l, "job", job);
    cJSON_AddStringToObject(l, "memory", range);
    const cJSON *at1 = sw ? probe_at(sw, 1769) : NULL;
    if (at1 == NULL || !cJSON_IsTrue(cJSON_GetObjectItem(at1, "ok"))) {
        cJSON_AddBoolToObject(l, "ok", 0);
        cJSON_AddStringToObject(l, "error", "the sweep has no good probe at 1769 MB");
        bench_emit(l);
        cJSON_Delete(sw);
        return;
    }
    double deadline = 2 * num(at1, "time_s");
    /* The sweep's answer for that deadline, from its own probes. */
    double best_mb = 0, best_cost = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(sw, "probes"))
        if (cJSON_IsTrue(cJSON_GetObjectItem(p, "ok")) && num(p, "time_s") <= deadline &&
            (best_mb == 0 || num(p, "cost_usd") < best_cost))
            best_mb = num(p, "memory_mb"), best_cost = num(p, "cost_usd");
    snprintf(args, sizeof args, "--memory %s --deadline %.3f --budget 5", range, deadline);
    cJSON *tu = tune(flcache, args, job);
    double tmb = tu ? num(tu, "recommended_mb") : 0;
    double tcost = tu ? num(tu, "measured_cost_usd") : 0;
    const cJSON *tp = tu ? probe_at(tu, tmb) : NULL;
    double ttime = tp ? num(tp, "time_s") : 0;
    /* A choice tune probed with part of the job has an extrapolated cost:
     * the cost of the choice is then measured here, by one whole run at
     * that size (a sweep of one size), outside tune's probe time. */
    cJSON *check = NULL;
    if (tmb > 0 && cJSON_GetObjectItem(tu, "measured_cost_usd") == NULL) {
        snprintf(args, sizeof args, "--memory %.0f..%.0f --sweep", tmb, tmb);
        check = tune(flcache, args, job);
        const cJSON *cp = check ? probe_at(check, tmb) : NULL;
        tcost = cp && cJSON_IsTrue(cJSON_GetObjectItem(cp, "ok")) ? num(cp, "cost_usd") : 0;
        ttime = cp ? num(cp, "time_s") : 0;
    }
    cJSON_AddNumberToObject(l, "deadline_s", deadline);
    cJSON_AddNumberToObject(l, "sweep_best_mb", best_mb);
    cJSON_AddNumberToObject(l, "sweep_best_cost_usd", best_cost);
    cJSON_AddNumberToObject(l, "sweep_probes", cJSON_GetArraySize(cJSON_GetObjectItem(sw, "probes")));
    cJSON_AddNumberToObject(l, "sweep_probe_time_s", num(sw, "probe_time_s"));
    cJSON_AddNumberToObject(l, "tune_mb", tmb);
    cJSON_AddNumberToObject(l, "tune_cost_usd", tcost);
    cJSON_AddNumberToObject(l, "tune_time_s", ttime);
    cJSON_AddStringToObject(l, "tune_cost_from", check ? "a whole run at the choice (bench)"
                                                       : "tune's own whole probe");
    if (check != NULL) {
        cJSON_AddNumberToObject(l, "tune_extrapolated_time_s", num(tu, "extrapolated_time_s"));
        cJSON_AddNumberToObject(l, "tune_extrapolated_cost_usd",
                                num(tu, "extrapolated_cost_usd"));
        cJSON_AddBoolToObject(l, "tune_time_meets_deadline", ttime > 0 && ttime <= deadline);
    }
    cJSON_AddNumberToObject(l, "tune_probes",
                            tu ? cJSON_GetArraySize(cJSON_GetObjectItem(tu, "probes")) : 0);
    cJSON_AddNumberToObject(l, "tune_probe_time_s", tu ? num(tu, "probe_time_s") : 0);
    int cut = 0, part = 0; /* probes stopped at the deadline; probes of part of the job */
    const cJSON *tprobes = tu ? cJSON_GetObjectItem(tu, "probes") : NULL;
    cJSON_ArrayForEach(p, tprobes) {
        cut += cJSON_IsTrue(cJSON_GetObjectItem(p, "cut_at_deadline"));
        part += cJSON_IsTrue(cJSON_GetObjectItem(p, "extrapolated"));
    }
    cJSON_AddNumberToObject(l, "tune_probes_cut", cut);
    cJSON_AddNumberToObject(l, "tune_probes_short", part);
    double cr = best_cost > 0 && tcost > 0 ? tcost / best_cost : 0;
    double pr = num(sw, "probe_time_s") > 0 && tu ? num(tu, "probe_time_s") / num(sw, "probe_time_s")
                                                 : 0;
    cJSON_AddNumberToObject(l, "cost_ratio", cr);
    cJSON_AddNumberToObject(l, "probe_time_ratio", pr);
    const cJSON *mo = tu ? cJSON_GetObjectItem(tu, "model") : NULL;
    if (mo != NULL)
        cJSON_AddItemToObject(l, "model", cJSON_Duplicate(mo, 1));
    cJSON_AddBoolToObject(l, "ok", tmb > 0 && cr > 0);
    cJSON_AddBoolToObject(l, "goal_cost_within_10pct", cr > 0 && cr <= 1.10);
    cJSON_AddBoolToObject(l, "goal_probe_time_third", pr > 0 && pr <= 1.0 / 3);
    bench_emit(l);
    cJSON_Delete(sw);
    cJSON_Delete(tu);
    cJSON_Delete(check);
}

int main(int argc, char **argv)
{
    bench_config();
    int tiny = 0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tiny") == 0)
            tiny = 1;
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else {
            fprintf(stderr, "usage: bench/tune [--tiny] [--only mandelbrot|train]\n");
            return 2;
        }
    }
    char flcache[PATH_MAX + 16], self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    snprintf(flcache, sizeof flcache, "%s/../flcache", self);
    if (only == NULL || strcmp(only, "mandelbrot") == 0)
        one(flcache, "mandelbrot",
            tiny ? "run mandelbrot --workers 1 --size 256 --iters 2000 --quiet"
                 : "run mandelbrot --workers 1 --size 512 --iters 3000 --quiet",
            "128..4096");
    if (only == NULL || strcmp(only, "train") == 0)
        one(flcache, "train-softmax",
            tiny ? "train --workers 2 --epochs 1 --subset 2000 --test-subset 500 --quiet"
                 : "train --workers 2 --epochs 1 --subset 32000 --test-subset 2000 --quiet",
            "256..4096");
    return 0;
}
