/* `flcache train`'s output: the progress line while the workers run (from
 * worker 0's records on the job's progress list, read with BLPOP), and the
 * summary when they are done (invocation records of the platform, worker
 * results, and the epochs' RoundMeta read back from the cache). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/clock.h"
#include "cache/store_ops.h"
#include "cli/cli.h"
#include "cli/train.h"

static void fmt_eta(char *out, size_t len, double s)
{
    if (s < 0 || s > 360000)
        snprintf(out, len, "-");
    else if (s >= 3600)
        snprintf(out, len, "%d:%02d:%02d", (int)s / 3600, ((int)s / 60) % 60, (int)s % 60);
    else
        snprintf(out, len, "%d:%02d", (int)s / 60, (int)s % 60);
}

/* Draws one progress record. A terminal gets a line rewritten in place at
 * every step record; a log gets one line per epoch. Returns 1 for worker
 * 0's last record ("done"). */
static int show(const flc_train_opts_t *o, flc_train_run_t *run, const char *txt)
{
    cJSON *p = cJSON_Parse(txt);
    if (p == NULL)
        return 0;
    const char *type = cJSON_GetStringValue(cJSON_GetObjectItem(p, "type"));
    double num[8];
    static const char *const names[] = {"epoch", "epochs", "step", "steps", "gstep",
                                        "total", "loss", "accuracy"};
    for (int i = 0; i < 8; i++) {
        const cJSON *it = cJSON_GetObjectItem(p, names[i]);
        num[i] = cJSON_IsNumber(it) ? it->valuedouble : -1;
    }
    double now = flc_now_s(), gstep = num[4], total = num[5];
    if (type && (strcmp(type, "step") == 0 || strcmp(type, "epoch") == 0) &&
        gstep > run->last_gstep)
        run->last_gstep = gstep;
    if (type && strcmp(type, "step") == 0 && run->first_s == 0) {
        run->first_s = now;
        run->first_gstep = gstep;
    }
    if (type && strcmp(type, "epoch") == 0)
        run->last_acc = num[7];
    double eta = -1;
    if (run->first_s > 0 && gstep > run->first_gstep)
        eta = (now - run->first_s) / (gstep - run->first_gstep) * (total - gstep);
    char etas[32], acc[32];
    fmt_eta(etas, sizeof etas, eta);
    if (run->last_acc >= 0)
        snprintf(acc, sizeof acc, "%.2f%%", 100 * run->last_acc);
    else
        snprintf(acc, sizeof acc, "-");
    int tty = isatty(STDERR_FILENO);
    if (type && strcmp(type, "error") == 0) {
        run->errors++;
        const cJSON *rank = cJSON_GetObjectItem(p, "rank");
        fprintf(stderr, "%sflcache train: worker %d failed: %s\n", run->line_open ? "\n" : "",
                cJSON_IsNumber(rank) ? rank->valueint : -1,
                cJSON_GetStringValue(cJSON_GetObjectItem(p, "error")));
        run->line_open = 0;
    } else if (!o->quiet && type && strcmp(type, "step") == 0 && tty) {
        fprintf(stderr, "\r\033[Kepoch %d/%d  step %d/%d  loss %.4f  acc %s  ETA %s",
                (int)num[0], (int)num[1], (int)num[2], (int)num[3], num[6], acc, etas);
        run->line_open = 1;
    } else if (!o->quiet && type && strcmp(type, "epoch") == 0) {
        const cJSON *ems = cJSON_GetObjectItem(p, "epoch_ms");
        fprintf(stderr, "%sepoch %d/%d  step %d/%d  loss %.4f  acc %s  %.2f s  ETA %s\n",
                tty ? "\r\033[K" : "", (int)num[0], (int)num[1], (int)gstep, (int)total, num[6],
                acc, cJSON_IsNumber(ems) ? ems->valuedouble / 1000 : 0, etas);
        run->line_open = 0;
    }
    fflush(stderr);
    int done = type && strcmp(type, "done") == 0;
    cJSON_Delete(p);
    return done;
}

/* Worker k ended not ok while the others still run: they cannot finish a
 * synchronous step without it and would wait out 2 x --step-timeout, so
 * they are stopped now and the run fails naming k. */
static void stop_on_failure(const flc_train_opts_t *o, flc_train_run_t *run, flc_batch_t *b,
                            size_t n)
{
    size_t k;
    if (run->failed >= 0 || !flc_batch_first_failed(b, &k) || flc_batch_done(b) >= n)
        return;
    run->failed = (int)k;
    if (flc_train_signal())
        return; /* an interruption, said elsewhere */
    const flc_inv_rec_t *r = &run->recs[k];
    fprintf(stderr, "%sflcache train: worker %d %s after step %.0f of job %s: %s; stopping the "
            "other %zu worker%s (synchronous SGD cannot go on without it)\n",
            run->line_open ? "\n" : "", (int)k,
            r->status == FLC_INV_CRASH ? "crashed" : r->status == FLC_INV_TIMEOUT ? "timed out"
                                                                                   : "failed",
            run->last_gstep > 0 ? run->last_gstep : 0, o->cfg.job, r->error,
            n - flc_batch_done(b), n - flc_batch_done(b) == 1 ? "" : "s");
    run->line_open = 0;
    if (run->pool != NULL)
        flc_pool_kill(run->pool);
}

void flc_train_follow(flc_store_t *s, const flc_train_opts_t *o, flc_train_run_t *run,
                      flc_batch_t *b, size_t n)
{
    run->last_acc = -1;
    int store_ok = 1, done = 0;
    /* The wait wakes on every record; the bound notices a worker that
     * ended without a last record (a crash) and a signal. After worker 0's
     * "done" no record is due: the wait is on the workers' return, or the
     * run's time (wall_s) would include up to 500 ms of a BLPOP that
     * nothing answers (tune measured it as fixed time, docs/tune.md). */
    while (flc_batch_done(b) < n) {
        if (run->guard != NULL)
            flc_train_guard_tick(run->guard, s, o->cfg.job, run->pool);
        stop_on_failure(o, run, b, n);
        if (flc_train_signal() || run->failed >= 0 || done) {
            if (flc_batch_wait(b, 200) == FLC_OK)
                b = NULL;
            if (b == NULL)
                break;
            continue;
        }
        char *rec = NULL;
        int rc = store_ok ? flc_store_progress_wait(s, o->cfg.job, 500, &rec) : FLC_ECONN;
        if (rc != FLC_OK && rc != FLC_ETIMEOUT) {
            store_ok = 0; /* the workers will fail too; wait for them */
            break;
        }
        if (rec != NULL)
            done = show(o, run, rec);
        free(rec);
    }
    if (b != NULL)
        flc_batch_wait(b, 0);
    for (int i = 0; store_ok && !flc_train_signal() && i < 100000; i++) {
        char *rec = NULL;
        if (flc_store_progress_pop(s, o->cfg.job, &rec) != FLC_OK)
            break; /* empty (or the store failed) */
        show(o, run, rec);
        free(rec);
    }
    if (run->line_open)
        fputc('\n', stderr);
    run->line_open = 0;
}

static double meta_metric(const Flcache__RoundMeta *m, const char *k)
{
    for (size_t i = 0; i < m->n_metrics; i++)
        if (strcmp(m->metrics[i]->key, k) == 0)
            return m->metrics[i]->value;
    return -1;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *it = cJSON_GetObjectItem(o, k);
    return cJSON_IsNumber(it) ? it->valuedouble : -1;
}

/* Every worker's compute and communication totals, added to the last
 * epoch's RoundMeta as worker<k>_compute_ms / worker<k>_comm_ms: the
 * workers report their split to the driver only, and `flcache report`
 * draws it per worker from the cache (issue 18). Best effort: the run's
 * result does not depend on it. */
static void store_worker_split(flc_store_t *s, const flc_sgd_cfg_t *c, int W,
                               const double *wcomp, const double *wcomm)
{
    Flcache__RoundMeta *m = NULL;
    if (W <= 0 || flc_store_get_round_meta(s, c->job, (uint32_t)c->epochs, &m) != FLC_OK)
        return;
    size_t n = m->n_metrics, add = 2 * (size_t)W;
    Flcache__RoundMeta__MetricsEntry *ents = calloc(add, sizeof *ents);
    Flcache__RoundMeta__MetricsEntry **all = calloc(n + add, sizeof *all);
    char (*keys)[40] = calloc(add, sizeof *keys);
    if (ents != NULL && all != NULL && keys != NULL) {
        for (size_t i = 0; i < n; i++)
            all[i] = m->metrics[i];
        for (size_t j = 0; j < add; j++) {
            flcache__round_meta__metrics_entry__init(&ents[j]);
            snprintf(keys[j], sizeof keys[j], "worker%zu_%s", j / 2,
                     j % 2 ? "comm_ms" : "compute_ms");
            ents[j].key = keys[j];
            ents[j].value = j % 2 ? wcomm[j / 2] : wcomp[j / 2];
            all[n + j] = &ents[j];
        }
        Flcache__RoundMeta__MetricsEntry **old = m->metrics;
        m->metrics = all;
        m->n_metrics = n + add;
        flc_store_put_round_meta(s, m);
        m->metrics = old; /* freed with m, as unpacked */
        m->n_metrics = n;
    }
    free(ents), free(all), free(keys);
    flcache__round_meta__free_unpacked(m, NULL);
}

int flc_train_report(flc_store_t *s, const flc_train_opts_t *o, flc_train_run_t *run)
{
    const flc_sgd_cfg_t *c = &o->cfg;
    int W = c->workers, ok = 1, same = 1;
    const char *sum0 = NULL;
    double comp = 0, comm = 0, load = 0, gb_s = 0, cost = 0;
    const cJSON *res0 = NULL;
    cJSON *root = cJSON_CreateObject(), *inv = cJSON_CreateArray();
    double *wcomp = calloc(W > 0 ? (size_t)W : 1, sizeof *wcomp);
    double *wcomm = calloc(W > 0 ? (size_t)W : 1, sizeof *wcomm);
    for (int k = 0; k < W; k++) {
        const flc_inv_rec_t *rec = &run->recs[k];
        cJSON *rj = flc_inv_rec_json(rec);
        const cJSON *res = flc_inv_result(rec);
        if (rj && res)
            cJSON_AddItemToObject(rj, "result", cJSON_Duplicate(res, 1));
        cJSON_AddItemToArray(inv, rj);
        gb_s += rec->gb_s;
        cost += rec->cost_usd;
        if (rec->status != FLC_INV_OK || res == NULL) {
            ok = 0;
            if (!o->json && run->failed >= 0 && k != run->failed &&
                rec->status == FLC_INV_CRASH)
                fprintf(stderr, "flcache train: worker %d: stopped after worker %d failed\n", k,
                        run->failed);
            else if (!o->json)
                fprintf(stderr, "flcache train: worker %d: %s: %s\n", k,
                        flc_inv_status_name(rec->status), rec->error);
            continue;
        }
        if (k == 0)
            res0 = res;
        const char *sum = cJSON_GetStringValue(cJSON_GetObjectItem(res, "checksum"));
        if (sum0 == NULL)
            sum0 = sum;
        else if (sum == NULL || strcmp(sum, sum0) != 0)
            same = 0;
        /* Training steps only: loading and worker 0's evaluation are shown apart. */
        double ck = num(res, "compute_ms") - num(res, "load_ms") - num(res, "eval_ms");
        comp += ck / W;
        comm += num(res, "comm_ms") / W;
        if (wcomp != NULL && wcomm != NULL)
            wcomp[k] = ck, wcomm[k] = num(res, "comm_ms");
        double l = num(res, "load_ms");
        load = l > load ? l : load;
    }
    same = same && ok && sum0 != NULL;
    if (ok && wcomp != NULL && wcomm != NULL)
        store_worker_split(s, c, W, wcomp, wcomm);
    free(wcomp), free(wcomm);
    cJSON *epochs = cJSON_CreateArray();
    double ep_ms = 0;
    int nep = 0;
    for (int ep = 1; ok && ep <= c->epochs; ep++) {
        Flcache__RoundMeta *m = NULL;
        if (flc_store_get_round_meta(s, c->job, (uint32_t)ep, &m) != FLC_OK)
            continue;
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "epoch", ep);
        static const char *const keys[] = {"train_loss", "test_accuracy", "test_loss",
                                           "epoch_ms", "step_ms_mean", "step_ms_p50",
                                           "compute_ms", "comm_ms", "cost_usd"};
        for (size_t i = 0; i < sizeof keys / sizeof *keys; i++)
            cJSON_AddNumberToObject(e, keys[i], meta_metric(m, keys[i]));
        ep_ms += m->round_ms;
        nep++;
        cJSON_AddItemToArray(epochs, e);
        flcache__round_meta__free_unpacked(m, NULL);
    }
    double per_epoch = nep ? ep_ms / nep / 1000 : 0;
    double acc = res0 ? num(res0, "accuracy") : -1;
    cJSON_AddBoolToObject(root, "ok", ok && same);
    cJSON_AddStringToObject(root, "job", c->job);
    cJSON_AddStringToObject(root, "model", c->model);
    cJSON_AddNumberToObject(root, "nparams", res0 ? num(res0, "nparams") : 0);
    cJSON_AddNumberToObject(root, "workers", W);
    cJSON_AddStringToObject(root, "comm", flc_sgd_comm_name(c->comm));
    cJSON_AddNumberToObject(root, "num_shards", c->num_shards);
    cJSON_AddNumberToObject(root, "epochs", c->epochs);
    cJSON_AddNumberToObject(root, "batch", (double)c->batch);
    cJSON_AddNumberToObject(root, "lr", c->lr);
    cJSON_AddNumberToObject(root, "steps_per_epoch", res0 ? num(res0, "steps_per_epoch") : 0);
    cJSON_AddNumberToObject(root, "accuracy", acc);
    cJSON_AddNumberToObject(root, "test_loss", res0 ? num(res0, "test_loss") : -1);
    cJSON_AddNumberToObject(root, "final_loss", res0 ? num(res0, "final_loss") : -1);
    cJSON_AddBoolToObject(root, "identical_models", same);
    cJSON_AddStringToObject(root, "checksum", sum0 ? sum0 : "");
    cJSON_AddNumberToObject(root, "wall_s", run->wall_s);
    cJSON_AddNumberToObject(root, "epoch_s", per_epoch);
    cJSON_AddNumberToObject(root, "load_s", load / 1000);
    cJSON_AddNumberToObject(root, "compute_ms_per_worker", comp);
    cJSON_AddNumberToObject(root, "comm_ms_per_worker", comm);
    cJSON_AddNumberToObject(root, "comm_fraction", comp + comm > 0 ? comm / (comp + comm) : 0);
    cJSON_AddNumberToObject(root, "memory_mb", o->memory_mb);
    cJSON_AddNumberToObject(root, "gb_s", gb_s);
    cJSON_AddNumberToObject(root, "cost_usd", cost);
    cJSON_AddNumberToObject(root, "cost_per_epoch_usd", cost / c->epochs);
    cJSON_AddItemToObject(root, "epoch_detail", epochs);
    cJSON_AddItemToObject(root, "invocations", inv);
    if (o->json) {
        char *txt = cJSON_PrintUnformatted(root);
        puts(txt ? txt : "{}");
        cJSON_free(txt);
    } else if (ok) {
        if (c->comm == FLC_SGD_COMM_PS)
            printf("trained %s (%.0f parameters) with %d workers through a parameter-server "
                   "process, job %s\n", c->model, num(res0, "nparams"), W, c->job);
        else
            printf("trained %s (%.0f parameters) with %d workers, %s over %u shard%s, job %s\n",
                   c->model, num(res0, "nparams"), W, flc_sgd_comm_name(c->comm),
                   c->num_shards, c->num_shards > 1 ? "s" : "", c->job);
        printf("  %d epochs of %.0f steps, batch %zu per worker (%zu in all), lr %g\n",
               c->epochs, num(res0, "steps_per_epoch"), c->batch, c->batch * (size_t)W, c->lr);
        printf("  epoch  train loss  test acc  time (s)  step (ms)  compute  comm\n");
        for (int i = 0; i < cJSON_GetArraySize(epochs); i++) {
            const cJSON *e = cJSON_GetArrayItem(epochs, i);
            double cp = num(e, "compute_ms"), cm = num(e, "comm_ms");
            printf("  %5.0f  %10.4f  %7.2f%%  %8.2f  %9.2f  %6.0f%%  %3.0f%%\n", num(e, "epoch"),
                   num(e, "train_loss"), 100 * num(e, "test_accuracy"),
                   num(e, "epoch_ms") / 1000, num(e, "step_ms_mean"),
                   cp + cm > 0 ? 100 * cp / (cp + cm) : 0, cp + cm > 0 ? 100 * cm / (cp + cm) : 0);
        }
        printf("accuracy   %.2f%% on the test set (test loss %.4f, train loss %.4f)\n",
               100 * acc, num(res0, "test_loss"), num(res0, "final_loss"));
        printf("time       %.2f s in all, %.2f s per epoch, %.2f s loading data\n", run->wall_s,
               per_epoch, load / 1000);
        printf("split      compute %.0f%% / communication %.0f%% of the steps (per worker %.2f s "
               "/ %.2f s)\n",
               comp + comm > 0 ? 100 * comp / (comp + comm) : 0,
               comp + comm > 0 ? 100 * comm / (comp + comm) : 0, comp / 1000, comm / 1000);
        printf("cost       $%.6f for %d x %u MB (%.2f GB-s at $%.10f per GB-s), $%.6f per epoch\n",
               cost, W, o->memory_mb, gb_s, o->price, cost / c->epochs);
        if (same)
            printf("models     identical on all %d workers (FNV-1a %s)\n", W, sum0);
        else
            printf("models     DIFFER between workers (checksums do not match)\n");
    }
    fflush(stdout);
    if (ok && !same && !o->json)
        fprintf(stderr, "flcache train: the workers' models differ\n");
    cJSON_Delete(root);
    return ok && same ? FLC_EXIT_OK : FLC_EXIT_RUNTIME;
}
