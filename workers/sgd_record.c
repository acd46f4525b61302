/* What an SGD worker reports while it trains: progress records on the
 * job's progress list (every worker, for errors; worker 0 for steps and
 * epochs) and worker 0's RoundMeta of every epoch (timings, loss,
 * accuracy, hyperparameters), so a driver or a query can follow a
 * training without asking the workers. */
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "base/clock.h"
#include "cache/store.h"
#include "cache/store_ops.h"
#include "workers/sgd_worker_internal.h"

/* Expiry of the progress list, which a driver may never read. */
#define PROGRESS_TTL_MS 3600000u

/* Appends one progress record (best effort: progress is for people). */
void sgd_progress(sgd_worker_t *w, cJSON *rec)
{
    char *txt = rec ? cJSON_PrintUnformatted(rec) : NULL;
    cJSON_Delete(rec);
    if (txt == NULL || w->s == NULL) {
        free(txt);
        return;
    }
    flc_store_progress_push(w->s, w->c.job, txt, PROGRESS_TTL_MS);
    cJSON_free(txt);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#define ADD_KV(arr, n, ptrs, k, v)                                                             \
    do {                                                                                       \
        (arr)[n].key = (char *)(k);                                                            \
        (arr)[n].value = (v);                                                                  \
        (ptrs)[n] = &(arr)[n];                                                                 \
        (n)++;                                                                                 \
    } while (0)

/* Stores the epoch's RoundMeta under job c->job, round = epoch. */
int sgd_put_epoch_meta(sgd_worker_t *w, const sgd_epoch_stats_t *st, flc_err_t *e)
{
    const flc_sgd_cfg_t *c = &w->c;
    double sorted_p50 = 0, mean = 0, mx = 0;
    if (w->steps > 0) {
        for (size_t i = 0; i < w->steps; i++) {
            mean += w->step_ms[i];
            mx = w->step_ms[i] > mx ? w->step_ms[i] : mx;
        }
        mean /= (double)w->steps;
        qsort(w->step_ms, w->steps, sizeof(double), cmp_double);
        sorted_p50 = w->step_ms[w->steps / 2];
    }
    double cost = c->memory_mb ? (double)c->workers * st->epoch_ms / 1000.0 *
                                     (double)c->memory_mb / 1024.0 * c->price_per_gb_s
                               : 0;
    Flcache__RoundMeta__MetricsEntry me[16], *mp[16];
    Flcache__RoundMeta__HyperparamsEntry he[10], *hp[10];
    Flcache__RoundMeta__NotesEntry ne[4], *np[4];
    for (int i = 0; i < 16; i++)
        flcache__round_meta__metrics_entry__init(&me[i]);
    for (int i = 0; i < 10; i++)
        flcache__round_meta__hyperparams_entry__init(&he[i]);
    for (int i = 0; i < 4; i++)
        flcache__round_meta__notes_entry__init(&ne[i]);
    size_t nm = 0, nh = 0, nn = 0;
    ADD_KV(me, nm, mp, "train_loss", st->loss);
    ADD_KV(me, nm, mp, "test_accuracy", st->acc);
    ADD_KV(me, nm, mp, "test_loss", st->test_loss);
    ADD_KV(me, nm, mp, "steps", (double)w->steps);
    ADD_KV(me, nm, mp, "step_ms_mean", mean);
    ADD_KV(me, nm, mp, "step_ms_p50", sorted_p50);
    ADD_KV(me, nm, mp, "step_ms_max", mx);
    ADD_KV(me, nm, mp, "compute_ms", st->compute_ms);
    ADD_KV(me, nm, mp, "comm_ms", st->comm_ms);
    ADD_KV(me, nm, mp, "merge_ms", st->merge_ms);
    ADD_KV(me, nm, mp, "wait_ms", st->wait_ms);
    ADD_KV(me, nm, mp, "eval_ms", st->eval_ms);
    ADD_KV(me, nm, mp, "epoch_ms", st->epoch_ms);
    if (c->memory_mb)
        ADD_KV(me, nm, mp, "cost_usd", cost);
    ADD_KV(he, nh, hp, "lr", c->lr);
    ADD_KV(he, nh, hp, "batch", (double)c->batch);
    ADD_KV(he, nh, hp, "workers", c->workers);
    ADD_KV(he, nh, hp, "epochs", c->epochs);
    ADD_KV(he, nh, hp, "hidden", (double)w->m->d.hidden);
    ADD_KV(he, nh, hp, "num_shards", c->num_shards);
    ADD_KV(he, nh, hp, "seed", (double)c->seed);
    ADD_KV(he, nh, hp, "subset", (double)c->subset);
    ADD_KV(he, nh, hp, "memory_mb", c->memory_mb);
    ADD_KV(ne, nn, np, "model", (char *)c->model);
    ADD_KV(ne, nn, np, "comm", (char *)flc_sgd_comm_name(c->comm));
    ADD_KV(ne, nn, np, "steps_job", w->steps_job);
    ADD_KV(ne, nn, np, "data", (char *)(c->data_dir ? c->data_dir : "default"));

    Flcache__RoundMeta m = FLCACHE__ROUND_META__INIT;
    m.job = (char *)c->job;
    m.round = (uint32_t)st->epoch;
    m.rule = "mean";
    m.num_shards = c->num_shards;
    m.model_size = w->nparams;
    m.n_expected = m.n_participants = (size_t)c->workers;
    m.expected = m.participants = w->names;
    m.n_metrics = nm;
    m.metrics = mp;
    m.n_hyperparams = nh;
    m.hyperparams = hp;
    m.n_notes = nn;
    m.notes = np;
    m.wait_ms = st->wait_ms;
    m.merge_ms = st->merge_ms;
    m.round_ms = st->epoch_ms;
    m.bytes_read = st->bytes_read;
    m.bytes_written = st->bytes_written;
    m.cost_usd = cost;
    m.started_ms = st->started_ms;
    m.closed_ms = flc_wall_ms();
    m.status = "closed";
    if (flc_store_put_round_meta(w->s, &m) != FLC_OK)
        return flc_err_set(e, flc_store_error(w->s)->code, "epoch %d metadata: %s", st->epoch,
                           flc_store_errstr(w->s));
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "type", "epoch");
    cJSON_AddNumberToObject(p, "epoch", st->epoch);
    cJSON_AddNumberToObject(p, "epochs", c->epochs);
    cJSON_AddNumberToObject(p, "loss", st->loss);
    cJSON_AddNumberToObject(p, "accuracy", st->acc);
    cJSON_AddNumberToObject(p, "test_loss", st->test_loss);
    cJSON_AddNumberToObject(p, "epoch_ms", st->epoch_ms);
    cJSON_AddNumberToObject(p, "compute_ms", st->compute_ms);
    cJSON_AddNumberToObject(p, "comm_ms", st->comm_ms);
    cJSON_AddNumberToObject(p, "step_ms_mean", mean);
    cJSON_AddNumberToObject(p, "gstep", (double)w->steps * st->epoch);
    cJSON_AddNumberToObject(p, "total", (double)w->steps * c->epochs);
    sgd_progress(w, p);
    return FLC_OK;
}
