/* The records a simulation round leaves in the store: the driver's part of
 * the RoundMeta (the mergers wrote participants, missing, rejected, wait and
 * merge times; the driver adds test accuracy and loss, hyperparameters,
 * notes, timings, bytes moved and cost) and one ModelUpdate per sampled
 * client with its statistics, final status and ground-truth labels. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/clock.h"
#include "clients/client.h"
#include "clients/sim_internal.h"

/* Small map<string,double> builders for protobuf-c map entries. */
#define MAXKV 40
typedef struct kv {
    Flcache__RoundMeta__MetricsEntry e[MAXKV];
    Flcache__RoundMeta__MetricsEntry *p[MAXKV];
    size_t n;
} kv_t;

static void kv_add(kv_t *m, const char *k, double v)
{
    if (m->n >= MAXKV)
        return;
    Flcache__RoundMeta__MetricsEntry init = FLCACHE__ROUND_META__METRICS_ENTRY__INIT;
    m->e[m->n] = init;
    m->e[m->n].key = (char *)k;
    m->e[m->n].value = v;
    m->p[m->n] = &m->e[m->n];
    m->n++;
}

typedef struct kvh {
    Flcache__RoundMeta__HyperparamsEntry e[MAXKV];
    Flcache__RoundMeta__HyperparamsEntry *p[MAXKV];
    size_t n;
} kvh_t;

static void kvh_add(kvh_t *m, const char *k, double v)
{
    if (m->n >= MAXKV)
        return;
    Flcache__RoundMeta__HyperparamsEntry init = FLCACHE__ROUND_META__HYPERPARAMS_ENTRY__INIT;
    m->e[m->n] = init;
    m->e[m->n].key = (char *)k;
    m->e[m->n].value = v;
    m->p[m->n] = &m->e[m->n];
    m->n++;
}

#define MAXNOTES 10
typedef struct notes {
    Flcache__RoundMeta__NotesEntry e[MAXNOTES];
    Flcache__RoundMeta__NotesEntry *p[MAXNOTES];
    size_t n;
} notes_t;

static void note_add(notes_t *m, const char *k, const char *v)
{
    if (m->n >= MAXNOTES)
        return;
    Flcache__RoundMeta__NotesEntry init = FLCACHE__ROUND_META__NOTES_ENTRY__INIT;
    m->e[m->n] = init;
    m->e[m->n].key = (char *)k;
    m->e[m->n].value = (char *)(v ? v : "");
    m->p[m->n] = &m->e[m->n];
    m->n++;
}

static int in_list(char **v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], name) == 0)
            return 1;
    return 0;
}

/* The reason a merger gave for rejecting client `name` ("shard 0: c3: why"),
 * or NULL. */
static const char *rejected_reason(const Flcache__RoundMeta *m, const char *name)
{
    size_t l = strlen(name);
    for (size_t i = 0; m && i < m->n_rejected; i++) {
        const char *r = m->rejected[i];
        if (strncmp(r, "shard ", 6) == 0 && (r = strstr(r, ": ")) != NULL)
            r += 2;
        else
            r = m->rejected[i];
        if (strncmp(r, name, l) == 0 && r[l] == ':')
            return r + l + 1 + (r[l + 1] == ' ');
    }
    return NULL;
}

static double num(const cJSON *o, const char *k)
{
    return cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(o, k));
}

/* Writes client x's ModelUpdate with its final status. */
static int put_update_meta(flc_store_t *s, const flc_sim_cfg_t *c, const sim_round_rec_t *rec,
                           const sim_client_t *x, const char *status, const char *reason)
{
    const flc_sim_inv_t *iv = x->inv >= 0 ? &rec->inv[x->inv] : NULL;
    const cJSON *res = iv && iv->ok ? iv->result : NULL;
    Flcache__ModelUpdate u = FLCACHE__MODEL_UPDATE__INIT;
    u.job = (char *)c->job;
    u.round = rec->round;
    u.client = (char *)x->name;
    u.num_samples = x->num_samples;
    u.local_epochs = (uint32_t)c->local_epochs;
    u.status = (char *)status;
    u.reason = (char *)(reason ? reason : "");
    u.created_ms = flc_wall_ms();
    Flcache__ModelUpdate__MetricsEntry me[4], *mp[4];
    size_t nm = 0;
    if (res != NULL) {
        u.loss = num(res, "loss");
        u.update_norm = num(res, "update_norm");
        u.local_steps = (uint32_t)num(res, "local_steps");
        u.compute_ms = num(res, "compute_ms");
        u.comm_ms = num(res, "comm_ms");
        static const char *const keys[] = {"loss_start", "bytes_read", "bytes_written",
                                           "wall_ms"};
        for (; nm < 4; nm++) {
            Flcache__ModelUpdate__MetricsEntry init =
                FLCACHE__MODEL_UPDATE__METRICS_ENTRY__INIT;
            me[nm] = init;
            me[nm].key = (char *)keys[nm];
            me[nm].value = num(res, keys[nm]);
            mp[nm] = &me[nm];
        }
    }
    if (iv != NULL)
        u.duration_ms = iv->duration_ms;
    u.n_metrics = nm;
    u.metrics = mp;
    /* Ground truth, so debugging queries can be scored against it. */
    char delay[32];
    snprintf(delay, sizeof delay, "%.0f", x->delay_ms);
    const char *lk[] = {"fault", "faulty", "dropout", "straggler_ms"};
    const char *lv[] = {x->faulty ? flc_client_fault_name(c->fault) : "none", x->faulty ? "1" : "0",
                        x->dropped ? "1" : "0", delay};
    Flcache__ModelUpdate__LabelsEntry le[4], *lp[4];
    for (int i = 0; i < 4; i++) {
        Flcache__ModelUpdate__LabelsEntry init = FLCACHE__MODEL_UPDATE__LABELS_ENTRY__INIT;
        le[i] = init;
        le[i].key = (char *)lk[i];
        le[i].value = (char *)lv[i];
        lp[i] = &le[i];
    }
    u.n_labels = 4;
    u.labels = lp;
    return flc_store_put_update_meta(s, &u);
}

int sim_record_round(flc_store_t *s, const flc_sim_cfg_t *c, size_t nparams,
                     sim_round_rec_t *rec, flc_err_t *e)
{
    flc_sim_round_t *out = rec->out;
    Flcache__RoundMeta *old = NULL;
    int rc = flc_store_get_round_meta(s, c->job, rec->round, &old);
    if (rc != FLC_OK && rc != FLC_ENOTFOUND)
        return flc_err_set(e, rc, "%s", flc_store_errstr(s));

    /* Each sampled client's final status, and the round's counts. */
    double loss_sum = 0, w_sum = 0, inv_max = 0, inv_sum = 0, client_cost = 0;
    size_t faulty_merged = 0, ninv = 0, cold = 0, failed = 0;
    /* Late clients did arrive, after the close: the merger lists them as
     * missing; the round's record lists them as rejected, reason "late". */
    char **missing = calloc(rec->k + 1, sizeof *missing);
    char **rejected = calloc(rec->k + (old ? old->n_rejected : 0) + 1, sizeof *rejected);
    char (*late_lines)[96] = calloc(rec->k + 1, sizeof *late_lines);
    size_t nmissing = 0, nrejected = 0;
    if (missing == NULL || rejected == NULL || late_lines == NULL) {
        free(missing), free(rejected), free(late_lines);
        if (old)
            flcache__round_meta__free_unpacked(old, NULL);
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    }
    for (size_t i = 0; old && i < old->n_rejected; i++)
        rejected[nrejected++] = old->rejected[i];
    uint64_t crd = 0, cwr = 0;
    out->sampled = rec->k;
    for (size_t i = 0; i < rec->k; i++) {
        const sim_client_t *x = &rec->cl[i];
        const flc_sim_inv_t *iv = x->inv >= 0 ? &rec->inv[x->inv] : NULL;
        const char *status, *reason = NULL;
        char why[300];
        out->faulty_sampled += (size_t)x->faulty;
        if (iv != NULL) {
            ninv++;
            inv_sum += iv->duration_ms;
            inv_max = iv->duration_ms > inv_max ? iv->duration_ms : inv_max;
            client_cost += iv->cost_usd;
            cold += (size_t)iv->cold;
            if (iv->ok) {
                crd += (uint64_t)num(iv->result, "bytes_read");
                cwr += (uint64_t)num(iv->result, "bytes_written");
            }
        }
        int participant = old && in_list(old->participants, old->n_participants, x->name);
        const char *rej = old ? rejected_reason(old, x->name) : NULL;
        if (x->dropped) {
            status = "dropped", reason = "dropped out (simulated): never reported";
            out->dropped++;
        } else if (iv == NULL || !iv->ok) {
            snprintf(why, sizeof why, "invocation failed: %s", iv ? iv->error : "not invoked");
            status = "dropped", reason = why;
            failed++;
        } else if (participant) {
            status = "accepted";
            double w = (double)x->num_samples;
            loss_sum += w * num(iv->result, "loss");
            w_sum += w;
            faulty_merged += (size_t)x->faulty;
        } else if (strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(iv->result, "status")),
                          "late") == 0 ||
                   (rej && strstr(rej, "late"))) {
            status = "late", reason = "pushed after the round closed; kept for queries";
            out->late++;
            if (old && in_list(old->missing, old->n_missing, x->name)) {
                snprintf(late_lines[i], sizeof late_lines[i], "%s: late (pushed after the "
                         "round closed)", x->name);
                rejected[nrejected++] = late_lines[i];
            }
        } else {
            status = "rejected", reason = rej ? rej : "not merged";
        }
        if (put_update_meta(s, c, rec, x, status, reason) != FLC_OK) {
            rc = flc_err_set(e, flc_store_error(s)->code, "%s", flc_store_errstr(s));
            break;
        }
    }
    for (size_t i = 0; old && i < old->n_missing; i++) {
        int late = 0;
        for (size_t j = 0; j < rec->k; j++)
            if (late_lines[j][0] && strcmp(rec->cl[j].name, old->missing[i]) == 0)
                late = 1;
        if (!late)
            missing[nmissing++] = old->missing[i];
    }
    out->participants = old ? old->n_participants : 0;
    out->missing = old ? nmissing : rec->k;
    out->rejected = old ? nrejected : 0;
    out->train_loss = w_sum > 0 ? loss_sum / w_sum : -1;
    out->bytes = rec->bytes_read + rec->bytes_written + crd + cwr;
    out->cost_usd = client_cost + rec->merge_cost_usd;

    kv_t met = {0};
    kvh_t hyp = {0};
    notes_t notes = {0};
    if (out->accuracy >= 0) {
        kv_add(&met, "test_accuracy", out->accuracy);
        kv_add(&met, "test_loss", out->loss);
    }
    if (out->train_loss >= 0)
        kv_add(&met, "train_loss", out->train_loss);
    if (rec->dp_epsilon >= 0) {
        kv_add(&met, "dp_epsilon", rec->dp_epsilon);
        kv_add(&met, "dp_delta", rec->dp_delta);
    }
    if (rec->dp_clip >= 0)
        kv_add(&met, "dp_clip", rec->dp_clip);
    kv_add(&met, "sampled", (double)out->sampled);
    kv_add(&met, "participants", (double)out->participants);
    kv_add(&met, "missing", (double)out->missing);
    kv_add(&met, "rejected", (double)out->rejected);
    kv_add(&met, "dropped", (double)out->dropped);
    kv_add(&met, "late", (double)out->late);
    kv_add(&met, "failed", (double)failed);
    kv_add(&met, "resent", (double)out->resent);
    kv_add(&met, "faulty_sampled", (double)out->faulty_sampled);
    kv_add(&met, "faulty_merged", (double)faulty_merged);
    kv_add(&met, "merged", out->merged);
    kv_add(&met, "clients_ms", out->clients_ms);
    kv_add(&met, "client_ms_mean", ninv ? inv_sum / (double)ninv : 0);
    kv_add(&met, "client_ms_max", inv_max);
    kv_add(&met, "cold_starts", (double)cold);
    kv_add(&met, "eval_ms", out->eval_ms);
    kv_add(&met, "client_cost_usd", client_cost);
    kv_add(&met, "aggregator_cost_usd", rec->merge_cost_usd);
    kvh_add(&hyp, "clients", c->clients);
    kvh_add(&hyp, "per_round", c->per_round);
    kvh_add(&hyp, "rounds", c->rounds);
    kvh_add(&hyp, "alpha", c->alpha);
    kvh_add(&hyp, "local_epochs", c->local_epochs);
    kvh_add(&hyp, "lr", c->lr);
    kvh_add(&hyp, "batch", (double)c->batch);
    kvh_add(&hyp, "mu", c->mu);
    kvh_add(&hyp, "server_lr", c->server_lr);
    kvh_add(&hyp, "trim", c->trim);
    kvh_add(&hyp, "krum_f", c->krum_f);
    kvh_add(&hyp, "dropout", c->dropout);
    kvh_add(&hyp, "deadline_ms", c->deadline_ms);
    kvh_add(&hyp, "faulty", c->faulty);
    kvh_add(&hyp, "fault_scale", c->fault_scale);
    kvh_add(&hyp, "seed", (double)c->seed);
    kvh_add(&hyp, "num_shards", c->num_shards);
    kvh_add(&hyp, "nparams", (double)nparams);
    kvh_add(&hyp, "hidden", (double)c->hidden);
    kvh_add(&hyp, "subset", (double)c->subset);
    note_add(&notes, "strategy", flc_sim_strategy_name(c->strategy));
    note_add(&notes, "model", c->synthetic_params ? "synthetic" : c->model);
    note_add(&notes, "fault", flc_client_fault_name(c->fault));
    note_add(&notes, "straggler", c->straggler ? c->straggler : "none");
    note_add(&notes, "encoding", c->encoding ? c->encoding : "f32");
    char gjob[80];
    snprintf(gjob, sizeof gjob, "%s/g", c->job);
    note_add(&notes, "models_job", gjob);
    note_add(&notes, "data", c->synthetic_params ? "synthetic" : "fashion-mnist");
    if (rec->out->merge_error[0])
        note_add(&notes, "merge_error", rec->out->merge_error);
    /* A failover during the round (sim_failover.c): who was sent again,
     * and whose acknowledged update is still lost. */
    if (rec->out->resent_names[0])
        note_add(&notes, "resent_after_failover", rec->out->resent_names);
    if (rec->out->lost_names[0])
        note_add(&notes, "lost_in_failover", rec->out->lost_names);

    Flcache__RoundMeta m = FLCACHE__ROUND_META__INIT;
    if (old != NULL)
        m = *old; /* the mergers' fields; the arrays stay owned by old */
    m.job = (char *)c->job;
    m.round = rec->round;
    if (old != NULL) {
        m.n_missing = nmissing, m.missing = missing;
        m.n_rejected = nrejected, m.rejected = rejected;
    } else { /* no merger report: nothing was merged */
        m.status = "closed";
        m.num_shards = c->num_shards;
        m.model_size = nparams;
    }
    m.n_metrics = met.n, m.metrics = met.p;
    m.n_hyperparams = hyp.n, m.hyperparams = hyp.p;
    m.n_notes = notes.n, m.notes = notes.p;
    m.round_ms = out->round_ms;
    m.bytes_read = rec->bytes_read + crd;
    m.bytes_written = rec->bytes_written + cwr;
    m.cost_usd = out->cost_usd;
    m.started_ms = rec->started_ms;
    if (rc == FLC_OK && flc_store_put_round_meta(s, &m) != FLC_OK)
        rc = flc_err_set(e, flc_store_error(s)->code, "%s", flc_store_errstr(s));
    if (old != NULL)
        flcache__round_meta__free_unpacked(old, NULL);
    free(missing), free(rejected), free(late_lines);
    return rc;
}
