/* The driver's side shared by every workload: events, phases of
 * invocations on the pool with a progress line, the report (table and
 * JSON), and the function side's dispatch on the event's "task". */
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "base/event.h"
#include "cache/store_ops.h"
#include "jobs/job_internal.h"

const char *const flc_job_workloads[] = {"wordcount", "matmul", "conv", "mandelbrot", "forest",
                                         "infer", NULL};

void flc_job_opts_init(flc_job_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->workers = 4;
    o->top = 10;
    o->trees = 16;
    o->depth = 12;
    o->tiles = 8;
    o->iters = 1000;
    o->batch = 8;
    o->seed = 1;
    o->check = 1;
}

cJSON *flc_job_event(const flc_job_ctx_t *c, const char *task)
{
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "role", "job");
    cJSON_AddStringToObject(ev, "task", task);
    cJSON_AddStringToObject(ev, "job", c->o->job);
    if (c->o->redis != NULL)
        cJSON_AddStringToObject(ev, "redis", c->o->redis);
    cJSON_AddNumberToObject(ev, "nparts", c->x.nparts);
    return ev;
}

void flc_job_events_free(cJSON **ev, size_t n)
{
    for (size_t i = 0; ev != NULL && i < n; i++) {
        cJSON_Delete(ev[i]);
        ev[i] = NULL;
    }
}

int flc_job_phase(flc_job_ctx_t *c, const char *label, cJSON **events, char (*names)[48],
                  size_t n, cJSON **res, flc_err_t *e)
{
    flc_inv_rec_t *recs = calloc(n ? n : 1, sizeof *recs);
    char **text = calloc(n ? n : 1, sizeof *text);
    int rc = recs && text ? FLC_OK : flc_err_set(e, FLC_ENOMEM, "out of memory for %s", label);
    for (size_t i = 0; rc == FLC_OK && i < n; i++)
        if ((text[i] = cJSON_PrintUnformatted(events[i])) == NULL)
            rc = flc_err_set(e, FLC_ENOMEM, "out of memory for the events of %s", label);
    flc_job_events_free(events, n);
    /* Readers find a partition's tag from the job's schema record (its
     * number of partitions), written once before the first phase. */
    if (rc == FLC_OK && !c->begun) {
        if (flc_store_job_begin(c->x.s, c->o->job, c->x.nparts) != FLC_OK)
            rc = flc_err_set(e, FLC_EIO, "job %s: %s", c->o->job, flc_store_errstr(c->x.s));
        c->begun = rc == FLC_OK;
    }
    flc_batch_t *b = NULL;
    if (rc == FLC_OK &&
        (b = flc_pool_start(c->pool, (const char *const *)text, n, recs, e)) == NULL)
        rc = e->code ? e->code : FLC_EIO;
    if (b != NULL) {
        /* Waits in slices (the wait returns as soon as the batch is done,
         * so the slices cost no latency) to redraw the progress line. */
        size_t shown = (size_t)-1;
        do {
            size_t d = flc_batch_done(b);
            if (c->o->progress && d != shown) {
                fprintf(stderr, "\r[%s] %s %zu/%zu   ", c->o->workload, label, d, n);
                fflush(stderr);
                shown = d;
            }
        } while (flc_batch_wait(b, 200) == FLC_ETIMEOUT);
        if (c->o->progress)
            fprintf(stderr, "\r[%s] %s %zu/%zu   \n", c->o->workload, label, n, n);
    }
    flc_job_report_t *r = c->rep;
    flc_job_fnrec_t *grown = rc == FLC_OK ? realloc(r->fns, (r->nfns + n) * sizeof *grown) : NULL;
    if (rc == FLC_OK && grown == NULL)
        rc = flc_err_set(e, FLC_ENOMEM, "out of memory for the report");
    if (grown != NULL)
        r->fns = grown;
    for (size_t i = 0; rc == FLC_OK && i < n; i++) {
        flc_job_fnrec_t *f = &r->fns[r->nfns++];
        memset(f, 0, sizeof *f);
        snprintf(f->name, sizeof f->name, "%s", names[i]);
        f->status = recs[i].status;
        f->cold = recs[i].cold;
        f->duration_ms = recs[i].duration_ms;
        f->compute_ms = recs[i].compute_ms;
        f->comm_ms = recs[i].comm_ms;
        f->peak_rss_kb = recs[i].peak_rss_kb;
        f->cost_usd = recs[i].cost_usd;
        snprintf(f->error, sizeof f->error, "%s", recs[i].error);
        r->compute_ms += f->compute_ms;
        r->comm_ms += f->comm_ms;
        r->cost_usd += f->cost_usd;
        if (f->peak_rss_kb > r->peak_rss_kb)
            r->peak_rss_kb = f->peak_rss_kb;
        const cJSON *out = flc_inv_result(&recs[i]);
        if (recs[i].status == FLC_INV_OK) {
            r->cache_bytes += (uint64_t)flc_ev_num(out, "cache_bytes", 0);
            if (res != NULL)
                res[i] = cJSON_Duplicate(out, 1);
        }
    }
    for (size_t i = 0; rc == FLC_OK && i < n; i++)
        if (recs[i].status != FLC_INV_OK)
            rc = flc_err_set(e, FLC_EIO, "%s (%s) failed: %s: %s", names[i], label,
                             flc_inv_status_name(recs[i].status), recs[i].error);
    for (size_t i = 0; i < n; i++) {
        if (recs)
            flc_inv_rec_clear(&recs[i]);
        if (text)
            cJSON_free(text[i]);
    }
    free(recs);
    free(text);
    return rc;
}

int flc_job_run(const flc_job_opts_t *o, flc_pool_t *pool, flc_store_t *store,
                flc_job_report_t *rep, flc_err_t *e)
{
    memset(rep, 0, sizeof *rep);
    snprintf(rep->workload, sizeof rep->workload, "%s", o->workload ? o->workload : "");
    rep->workers = o->workers;
    rep->metrics = cJSON_CreateObject();
    flc_job_ctx_t c = {.o = o, .pool = pool, .rep = rep, .x = {.s = store, .job = o->job}};
    if (o->workers < 1)
        return flc_err_set(e, FLC_EINVAL, "workers must be at least 1, not %d", o->workers);
    if (flc_name_check_job(o->job, e) != FLC_OK)
        return e->code;
    int rc;
    const char *w = o->workload ? o->workload : "";
    if (strcmp(w, "wordcount") == 0)
        rc = flc_job_wordcount(&c, e);
    else if (strcmp(w, "matmul") == 0)
        rc = flc_job_matmul(&c, e);
    else if (strcmp(w, "conv") == 0)
        rc = flc_job_conv(&c, e);
    else if (strcmp(w, "mandelbrot") == 0)
        rc = flc_job_mandelbrot(&c, e);
    else if (strcmp(w, "forest") == 0)
        rc = flc_job_forest(&c, e);
    else if (strcmp(w, "infer") == 0)
        rc = flc_job_infer(&c, e);
    else
        rc = flc_err_set(e, FLC_EINVAL, "unknown workload '%s' (wordcount, matmul, conv, "
                         "mandelbrot, forest, infer)", w);
    rep->cache_bytes += c.x.bytes;
    flc_store_job_report_t jr;
    memset(&jr, 0, sizeof jr);
    flc_store_job_rm(store, o->job, 0, &jr); /* intermediate data are the run's only */
    return rc;
}

void flc_job_report_clear(flc_job_report_t *rep)
{
    free(rep->fns);
    cJSON_Delete(rep->metrics);
    memset(rep, 0, sizeof *rep);
}

void flc_job_report_print(const flc_job_report_t *r, FILE *f)
{
    fprintf(f, "%-16s %-7s %4s %10s %10s %10s %8s %12s\n", "function", "status", "cold",
            "total ms", "compute ms", "comm ms", "peak MB", "cost USD");
    for (size_t i = 0; i < r->nfns; i++) {
        const flc_job_fnrec_t *x = &r->fns[i];
        fprintf(f, "%-16s %-7s %4s %10.1f %10.1f %10.1f %8.1f %12.3g\n", x->name,
                flc_inv_status_name(x->status), x->cold ? "yes" : "no", x->duration_ms,
                x->compute_ms, x->comm_ms, (double)x->peak_rss_kb / 1024.0, x->cost_usd);
    }
    fprintf(f, "%-16s %-7s %4s %10.1f %10.1f %10.1f %8.1f %12.3g\n", "all", "", "",
            r->wall_ms, r->compute_ms, r->comm_ms, (double)r->peak_rss_kb / 1024.0,
            r->cost_usd);
    fprintf(f, "\n%s with %d functions: %.1f ms (one process: %.1f ms, speedup %.2f), "
            "compute/comm %.2f, %.1f MiB through the cache, cost %.3g USD\n",
            r->workload, r->workers, r->wall_ms, r->single_ms,
            r->wall_ms > 0 ? r->single_ms / r->wall_ms : 0,
            r->comm_ms > 0 ? r->compute_ms / r->comm_ms : 0,
            (double)r->cache_bytes / 1048576.0, r->cost_usd);
    for (const cJSON *m = r->metrics ? r->metrics->child : NULL; m; m = m->next) {
        if (cJSON_IsNumber(m))
            fprintf(f, "  %-22s %g\n", m->string, m->valuedouble);
        else if (cJSON_IsString(m))
            fprintf(f, "  %-22s %s\n", m->string, m->valuestring);
        else if (cJSON_IsArray(m)) { /* wordcount's top words: [word, count] pairs */
            fprintf(f, "  %-22s", m->string);
            const cJSON *p;
            cJSON_ArrayForEach(p, m) {
                const cJSON *w = cJSON_GetArrayItem(p, 0), *n = cJSON_GetArrayItem(p, 1);
                if (cJSON_IsString(w) && cJSON_IsNumber(n))
                    fprintf(f, " %s %.0f", w->valuestring, n->valuedouble);
            }
            fprintf(f, "\n");
        }
    }
    if (r->checked)
        fprintf(f, "check: %s: %s\n", r->check_ok ? "ok" : "FAILED", r->check);
}

cJSON *flc_job_report_json(const flc_job_report_t *r)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "workload", r->workload);
    cJSON_AddNumberToObject(j, "workers", r->workers);
    cJSON_AddNumberToObject(j, "wall_ms", r->wall_ms);
    cJSON_AddNumberToObject(j, "single_ms", r->single_ms);
    cJSON_AddNumberToObject(j, "speedup", r->wall_ms > 0 ? r->single_ms / r->wall_ms : 0);
    cJSON_AddNumberToObject(j, "compute_ms", r->compute_ms);
    cJSON_AddNumberToObject(j, "comm_ms", r->comm_ms);
    cJSON_AddNumberToObject(j, "compute_comm_ratio",
                            r->comm_ms > 0 ? r->compute_ms / r->comm_ms : 0);
    cJSON_AddNumberToObject(j, "peak_rss_kb", (double)r->peak_rss_kb);
    cJSON_AddNumberToObject(j, "cost_usd", r->cost_usd);
    cJSON_AddNumberToObject(j, "cache_bytes", (double)r->cache_bytes);
    if (r->checked) {
        cJSON_AddBoolToObject(j, "check_ok", r->check_ok);
        cJSON_AddStringToObject(j, "check", r->check);
    }
    cJSON_AddItemToObject(j, "metrics", cJSON_Duplicate(r->metrics, 1));
    cJSON *fa = cJSON_AddArrayToObject(j, "functions");
    for (size_t i = 0; i < r->nfns; i++) {
        const flc_job_fnrec_t *x = &r->fns[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", x->name);
        cJSON_AddStringToObject(o, "status", flc_inv_status_name(x->status));
        cJSON_AddBoolToObject(o, "cold", x->cold);
        cJSON_AddNumberToObject(o, "duration_ms", x->duration_ms);
        cJSON_AddNumberToObject(o, "compute_ms", x->compute_ms);
        cJSON_AddNumberToObject(o, "comm_ms", x->comm_ms);
        cJSON_AddNumberToObject(o, "peak_rss_kb", (double)x->peak_rss_kb);
        cJSON_AddNumberToObject(o, "cost_usd", x->cost_usd);
        if (x->status != FLC_INV_OK)
            cJSON_AddStringToObject(o, "error", x->error);
        cJSON_AddItemToArray(fa, o);
    }
    return j;
}

typedef struct task {
    const char *name;
    int (*fn)(flc_job_task_t *f, cJSON **res, flc_err_t *e);
} task_t;

static const task_t tasks[] = {
    {"wordcount.map", flc_job_wordcount_map},     {"wordcount.reduce", flc_job_wordcount_reduce},
    {"matmul.block", flc_job_matmul_block},    {"conv.rows", flc_job_conv_rows},
    {"mandelbrot.tiles", flc_job_mandelbrot_tiles},  {"forest.train", flc_job_forest_train},
    {"forest.eval", flc_job_forest_eval},
    {"infer.stage", flc_job_infer_stage},   {"infer.cols", flc_job_infer_cols},
};

int flc_job_fn(const flc_store_cfg_t *sc, const char *data_dir, const cJSON *event,
               cJSON **result, double *compute_ms, double *comm_ms, flc_err_t *e)
{
    const char *task, *job, *redis;
    long long nparts;
    if (flc_ev_need_str(event, "task", &task, e) || flc_ev_need_str(event, "job", &job, e) ||
        flc_ev_opt_str(event, "redis", NULL, &redis, e) ||
        flc_ev_need_int(event, "nparts", 1, 1 << 20, &nparts, e))
        return e->code;
    const task_t *t = NULL;
    for (size_t i = 0; i < sizeof tasks / sizeof *tasks; i++)
        if (strcmp(tasks[i].name, task) == 0)
            t = &tasks[i];
    if (t == NULL)
        return flc_err_set(e, FLC_EINVAL, "event field 'task': unknown task '%s'", task);
    uint64_t t0 = flc_now_ns();
    flc_store_t *s = flc_store_open_cfg(sc, redis, e);
    if (s == NULL)
        return e->code ? e->code : FLC_ECONN;
    flc_job_task_t f = {.ev = event, .data_dir = flc_ev_str(event, "data", data_dir),
                        .x = {.s = s,
                              .job = job,
                              .nparts = (uint32_t)nparts,
                              .comm_ms = flc_job_ms(t0)}};
    uint64_t t1 = flc_now_ns();
    *result = NULL;
    int rc = t->fn(&f, result, e);
    double total = flc_job_ms(t1);
    flc_store_close(s);
    if (rc == FLC_OK && *result != NULL)
        cJSON_AddNumberToObject(*result, "cache_bytes", (double)f.x.bytes);
    *comm_ms = f.x.comm_ms;
    *compute_ms = total - (f.x.comm_ms - (double)(t1 - t0) / 1e6);
    if (*compute_ms < 0)
        *compute_ms = 0;
    return rc;
}
