/* tune_record.c - `flcache tune`'s result as JSON (--json) and as the
 * job's tune record in the cache, which `flcache report --job NAME` draws
 * as time and cost against memory (issue 20: the curve "as a plot in the
 * report"; report/report_tune.c). One JSON shape for both, so what a user
 * reads with --json is what the report plots. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "cache/store_tune.h"
#include "cli/cli.h"
#include "cli/config.h"
#include "cli/tune.h"
#include "runtime/cpu_cgroup.h"

static const unsigned grid[] = FLC_TUNE_GRID;

static int probed(const flc_tune_result_t *r, unsigned mb)
{
    for (int i = 0; i < r->np; i++)
        if (r->p[i].memory_mb == mb)
            return i;
    return -1;
}

static void add_point(cJSON *arr, const flc_tune_model_t *m, double mb)
{
    cJSON *x = cJSON_CreateObject();
    cJSON_AddNumberToObject(x, "memory_mb", mb);
    cJSON_AddNumberToObject(x, "vcpus", flc_cpucg_vcpus((unsigned)lround(mb), 0));
    cJSON_AddNumberToObject(x, "time_s", flc_tune_time(m, mb));
    cJSON_AddNumberToObject(x, "cost_usd", flc_tune_cost(m, mb));
    cJSON_AddItemToArray(arr, x);
}

cJSON *flc_tune_json(const flc_tune_result_t *r)
{
    cJSON *j = cJSON_CreateObject(), *a = cJSON_AddArrayToObject(j, "job");
    for (int i = 0; i < r->njob; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(r->job[i]));
    cJSON_AddStringToObject(j, "mode", r->sweep ? "sweep" : "tune");
    cJSON_AddNumberToObject(j, "memory_lo", r->lo);
    cJSON_AddNumberToObject(j, "memory_hi", r->hi);
    cJSON_AddNumberToObject(j, "deadline_s", r->deadline_s);
    cJSON_AddBoolToObject(j, "cpu_follows_memory", !r->no_cpu);
    cJSON *pa = cJSON_AddArrayToObject(j, "probes");
    for (int i = 0; i < r->np; i++) {
        const flc_tune_probe_t *p = &r->p[i];
        cJSON *x = cJSON_CreateObject();
        cJSON_AddNumberToObject(x, "memory_mb", p->memory_mb);
        cJSON_AddBoolToObject(x, "ok", p->ok);
        cJSON_AddNumberToObject(x, "time_s", p->time_s);
        cJSON_AddNumberToObject(x, "cost_usd", p->cost_usd);
        cJSON_AddNumberToObject(x, "probe_s", p->probe_s);
        if (p->cut)
            cJSON_AddBoolToObject(x, "cut_at_deadline", 1);
        if (p->part < 1) { /* a short probe: time and cost are extrapolated */
            cJSON_AddBoolToObject(x, "extrapolated", 1);
            cJSON_AddNumberToObject(x, "part", p->part);
            cJSON_AddNumberToObject(x, "measured_time_s", p->measured_s);
            cJSON_AddNumberToObject(x, "measured_cost_usd", p->measured_usd);
        }
        cJSON_AddItemToArray(pa, x);
    }
    cJSON_AddNumberToObject(j, "probe_time_s", r->probe_total_s);
    const flc_tune_model_t *m = r->m;
    if (r->fitted) {
        cJSON *mo = cJSON_AddObjectToObject(j, "model");
        cJSON_AddNumberToObject(mo, "a_s", m->a);
        cJSON_AddNumberToObject(mo, "b_s_at_1_vcpu", m->b / FLC_CPUCG_MB_PER_VCPU);
        cJSON_AddNumberToObject(mo, "saturation_mb", m->sat);
        cJSON_AddNumberToObject(mo, "k_usd_per_mb_s", m->k);
        cJSON_AddNumberToObject(mo, "rms_rel_error", m->err);
        cJSON *cu = cJSON_AddArrayToObject(j, "curve");
        for (int i = 0; i < FLC_TUNE_NGRID; i++)
            if (grid[i] >= r->lo && grid[i] <= r->hi)
                add_point(cu, m, grid[i]);
        /* Log-spaced: the curve bends at small sizes (1/m) and a plot
         * over the range needs its points there. */
        cJSON *fi = cJSON_AddArrayToObject(j, "curve_fine");
        for (int i = 0; i < FLC_TUNE_NFINE; i++)
            add_point(fi, m, r->hi > r->lo ? r->lo * pow((double)r->hi / r->lo,
                                                         (double)i / (FLC_TUNE_NFINE - 1))
                                           : r->lo);
    }
    cJSON_AddNumberToObject(j, "recommended_mb", r->pick);
    int k = probed(r, r->pick);
    if (r->pick && r->fitted) {
        cJSON_AddNumberToObject(j, "predicted_time_s", flc_tune_time(m, r->pick));
        cJSON_AddNumberToObject(j, "predicted_cost_usd", flc_tune_cost(m, r->pick));
    }
    /* The choice's probe: measured when it ran the job whole, else
     * extrapolated from a part (and said so). */
    if (k >= 0 && r->p[k].ok) {
        int x = r->p[k].part < 1;
        cJSON_AddNumberToObject(j, x ? "extrapolated_time_s" : "measured_time_s",
                                r->p[k].time_s);
        cJSON_AddNumberToObject(j, x ? "extrapolated_cost_usd" : "measured_cost_usd",
                                r->p[k].cost_usd);
    }
    return j;
}

const char *flc_tune_job_name(char **job, int njob)
{
    for (int i = 0; i < njob; i++) {
        if (strcmp(job[i], "--job") == 0 && i + 1 < njob)
            return job[i + 1];
        if (strncmp(job[i], "--job=", 6) == 0)
            return job[i] + 6;
    }
    return NULL;
}

int flc_tune_record(const flc_tune_result_t *r, const char *job)
{
    const flc_config_t *cfg = flc_config_program();
    if (cfg->redis == NULL) {
        flc_cli_error("tune", "no tune record stored for job %s: FLCACHE_REDIS is unset, so "
                      "the probes ran on a private cache that is gone; set it to keep the "
                      "record for `flcache report`", job);
        return -1;
    }
    cJSON *j = flc_tune_json(r);
    char *text = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    if (text == NULL) {
        flc_cli_error("tune", "out of memory for job %s's tune record", job);
        return -1;
    }
    flc_cli_conn_t c;
    int rc = -1;
    if (flc_cli_connect(&c, cfg, NULL) == FLC_EXIT_OK) {
        if (flc_store_tune_put(c.store, job, text, strlen(text)) == FLC_OK)
            rc = 0;
        else
            flc_cli_error("tune", "%s", flc_store_errstr(c.store));
        flc_cli_disconnect(&c);
    }
    free(text);
    return rc;
}
