/* The evaluation query kinds, FLStore's evaluation workloads on top of one
 * round's evaluation (query_eval.c):
 *   accuracy      every client's model (global of the round before + its
 *                 update) on the job's evaluation set, and the aggregate's
 *   incentives    accuracy minus the round's mean, summed over the rounds
 *                 (FLStore's incentive tokens)
 *   faults        FedDebug-style fault localisation: on every evaluation
 *                 input, how far a client's neuron activations are from the
 *                 clients' coordinate-wise median, and how often its
 *                 prediction differs from the majority's; flagged by robust
 *                 z-score, precision/recall against a simulation's truth
 *   schedule --by accuracy      the K most accurate clients
 *   contribution --by accuracy  leave-one-out: how much the FedAvg
 *                 aggregate's accuracy drops without the client
 *   personalize --by accuracy   the accuracy-weighted mean of the K best
 *                 clients' models, with its accuracy
 * Over --rounds A:B every kind answers per client over the range, from
 * each round's numbers (query_evalnum.c: cached, or computed from the
 * round evaluated next to the data). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/query_evalres.h"
#include "aggregator/query_evalwork.h"
#include "aggregator/query_internal.h"

/* Suspicion = max(z_act, 0) + max(z_disagree, 0) + max(-z_accuracy, 0)
 * (robust z-scores across the round's clients); flagged above FAULT_SUSP.
 * One view alone misses a kind of fault: a sign-flipper's activations are
 * far from everyone's, a label-flipper's less so under non-IID data but it
 * also disagrees with the majority and scores low on held-out data. */
#define FAULT_SUSP 3.0

/* Per client, accumulated over the rounds (matched by name). */
typedef struct acc {
    char *name;
    char *truth;
    double rounds, acc, loss, gain, incentive, loo, fscore, disagree, flagged, susp;
} acc_t;

typedef struct tally {
    acc_t *v;
    size_t n;
    double tp, fp, fn, truth_known;
} tally_t;

static acc_t *tally_get(tally_t *t, const char *name)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i].name, name) == 0)
            return &t->v[i];
    acc_t *nv = realloc(t->v, (t->n + 1) * sizeof *nv);
    if (nv == NULL)
        return NULL;
    t->v = nv;
    acc_t *x = &nv[t->n];
    memset(x, 0, sizeof *x);
    if ((x->name = strdup(name)) == NULL)
        return NULL;
    t->n++;
    return x;
}

static void tally_free(tally_t *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i].name), free(t->v[i].truth);
    free(t->v);
}

/* (x - median) / (1.4826 MAD) into z; 0 where the MAD is 0. */
static void robust_z(const double *x, size_t n, double *z, double *t)
{
    memcpy(t, x, n * sizeof *t);
    double med = flc_query_median(t, n);
    for (size_t i = 0; i < n; i++)
        t[i] = fabs(x[i] - med);
    double mad = 1.4826 * flc_query_median(t, n);
    for (size_t i = 0; i < n; i++)
        z[i] = mad > 1e-12 ? (x[i] - med) / mad : 0;
}

static int is_faulty(const char *f)
{
    return f && *f && strcmp(f, "none") != 0;
}

/* One round's numbers into the tally (fault[i]: client i's ground truth
 * or NULL). */
static int tally_round(const flc_query_req_t *q, const flc_query_evnum_t *v, char *const *fault,
                       tally_t *t)
{
    size_t n = v->n;
    int want_loo = q->kind == FLC_Q_CONTRIBUTION || q->kind == FLC_Q_ACCURACY;
    int want_faults = q->kind == FLC_Q_FAULTS || q->kind == FLC_Q_ACCURACY;
    double *z = calloc(3 * n + 1, sizeof *z), *zd = z + n, *za = z + 2 * n;
    double *tmp = malloc((n + 1) * sizeof *tmp);
    int rc = z && tmp ? FLC_OK : FLC_ENOMEM;
    double mean = 0;
    for (size_t i = 0; i < n; i++)
        mean += v->acc[i] / (double)n;
    if (rc == FLC_OK && want_faults && n >= 3) {
        robust_z(v->fs, n, z, tmp);
        robust_z(v->dis, n, zd, tmp);
        robust_z(v->acc, n, za, tmp);
    }
    for (size_t i = 0; rc == FLC_OK && i < n; i++) {
        double loo = want_loo ? v->loo[i] : NAN;
        acc_t *x = tally_get(t, v->clients[i]);
        if (x == NULL) {
            rc = FLC_ENOMEM;
            break;
        }
        if (x->truth == NULL && fault[i])
            x->truth = strdup(fault[i]);
        double susp = (z[i] > 0 ? z[i] : 0) + (zd[i] > 0 ? zd[i] : 0) + (za[i] < 0 ? -za[i] : 0);
        int flagged = n >= 3 && susp > FAULT_SUSP;
        x->susp += n >= 3 ? susp : 0;
        x->rounds += 1;
        x->acc += v->acc[i];
        x->loss += v->loss[i];
        x->gain += v->acc[i] - v->global_acc;
        x->incentive += v->acc[i] - mean;
        x->loo += isnan(loo) ? 0 : loo;
        x->fscore += want_faults ? v->fs[i] : 0;
        x->disagree += want_faults ? v->dis[i] : 0;
        x->flagged += flagged;
    }
    free(z), free(tmp);
    return rc;
}

/* Samples evaluated: q->samples, else as many as keep what the shard
 * workers move per update well below the update: an mlp's shards move
 * B x hidden products in all (query_eval.c), so B = P / (4 hidden) moves a
 * quarter of the update (198 samples for an mlp on 784 inputs, whatever
 * the hidden width or shard count; the sgemms grow with B too); a
 * softmax's S shards move S x B x C, so B < P / (S C) keeps it below the
 * update. At least 100 when the set has them (fewer make accuracy too
 * coarse; the note then says how much moves). */
static size_t eval_samples(const flc_query_req_t *q, const flc_query_evalset_t *es, size_t S)
{
    if (q->samples)
        return q->samples < es->n ? q->samples : es->n;
    uint64_t P = flc_query_evalset_nparams(es);
    int mlp = es->kind == FLC_QUERY_MODEL_MLP;
    size_t H = mlp ? es->hidden : es->out;
    size_t B = (size_t)(P / ((uint64_t)(mlp ? 4 : (S ? S : 1)) * H));
    B = B < 100 ? 100 : B;
    return B < es->n ? B : es->n;
}

int flc_query_by_key_desc(const void *a, const void *b)
{
    double x = ((const double *)a)[0], y = ((const double *)b)[0];
    return x < y ? 1 : x > y ? -1 : 0;
}

int flc_query_evaluate(flc_store_t *s, const flc_query_req_t *q, const flc_store_cfg_t *at,
                       Flcache__QueryAnswer **out, flc_err_t *e)
{
    uint32_t *rounds = NULL, *shards = NULL;
    size_t nr = 0, ns = 0;
    int rc = flc_query_rounds(s, q, &rounds, &nr, e);
    if (rc != FLC_OK)
        return rc;
    if (nr > 0 && rounds[0] == 0) { /* round 0 is the initial model, not updates */
        memmove(rounds, rounds + 1, (nr - 1) * sizeof *rounds);
        nr--;
    }
    if (nr == 0) {
        free(rounds);
        return flc_err_set(e, FLC_ENOTFOUND, "job %s has no round of updates in the range",
                           q->job);
    }
    if (q->kind == FLC_Q_PERSONALIZE && nr > 1) {
        free(rounds);
        return flc_err_set(e, FLC_EINVAL, "personalize builds one round's model: ask --round R, "
                           "not a range");
    }
    /* The set's stamp before its labels: a set stored again in between
     * makes numbers that no later digest asks for, never a stale answer.
     * Its inputs are read only when a round is evaluated. */
    uint64_t set_stamp = 0; /* 0: the cached numbers are not looked at */
    if (!q->no_cache && flc_query_evalset_stamp(s, q->job, &set_stamp) != FLC_OK)
        set_stamp = 0;
    flc_query_evalset_t es;
    if ((rc = flc_query_evalset_get_labels(s, q->job, &es, e)) != FLC_OK) {
        free(rounds);
        return rc;
    }
    if (flc_store_list_shards(s, q->job, rounds[0], &shards, &ns) != FLC_OK)
        ns = 1;
    free(shards);
    es.n = eval_samples(q, &es, ns);
    const char *kind = flc_query_kind_name(q->kind);
    Flcache__QueryAnswer *a = NULL;
    static const char *c_acc[] = {"accuracy", "loss", "gain", "incentive", "loo_drop",
                                  "fault_score", "disagreement", "flagged", "rounds"};
    static const char *c_inc[] = {"tokens", "accuracy", "rounds"};
    static const char *c_flt[] = {"rank",     "suspicion", "fault_score", "disagreement",
                                  "accuracy", "flagged",   "rounds"};
    static const char *c_sch[] = {"rank", "accuracy", "rounds"};
    static const char *c_con[] = {"loo_drop", "accuracy", "rounds"};
    static const char *c_per[] = {"accuracy", "weight"};
    static const char *truth[] = {"truth"};
    switch (q->kind) {
    case FLC_Q_ACCURACY: a = flc_query_answer_new(q->job, kind, c_acc, 9, truth, 1); break;
    case FLC_Q_INCENTIVES: a = flc_query_answer_new(q->job, kind, c_inc, 3, NULL, 0); break;
    case FLC_Q_FAULTS: a = flc_query_answer_new(q->job, kind, c_flt, 7, truth, 1); break;
    case FLC_Q_SCHEDULE: a = flc_query_answer_new(q->job, kind, c_sch, 3, NULL, 0); break;
    case FLC_Q_CONTRIBUTION: a = flc_query_answer_new(q->job, kind, c_con, 3, NULL, 0); break;
    default: a = flc_query_answer_new(q->job, kind, c_per, 2, NULL, 0); break;
    }
    tally_t t = {0};
    size_t ncached = 0; /* rounds answered from their cached numbers */
    double sum_fed = 0, sum_agg = 0, sum_glob = 0, nagg = 0;
    rc = a ? FLC_OK : flc_err_set(e, FLC_ENOMEM, "out of memory");
    for (size_t r = 0; rc == FLC_OK && r < nr; r++) {
        flc_query_evnum_t v;
        char **fault = NULL;
        int cached = 0;
        rc = flc_query_round_numbers(s, q, at, &es, set_stamp, rounds[r], &v, &fault, &cached,
                                     a, e);
        ncached += cached;
        if (rc != FLC_OK)
            break;
        if (q->kind == FLC_Q_PERSONALIZE) {
            rc = flc_query_eval_personalize(s, q, at, &v, rounds[r],
                                            flc_query_evalset_nparams(&es), a, e);
        } else {
            if (tally_round(q, &v, fault, &t) != FLC_OK)
                rc = flc_err_set(e, FLC_ENOMEM, "out of memory");
            sum_fed += v.fedavg_acc;
            sum_glob += v.global_acc;
            if (!isnan(v.agg_acc))
                sum_agg += v.agg_acc, nagg++;
        }
        for (size_t i = 0; fault && i < v.n; i++)
            free(fault[i]);
        free(fault);
        flc_query_evnum_free(&v);
    }
    /* Rows: by name (accuracy), else by the kind's key, best first. */
    /* A client is judged faulty when its suspicion over its rounds of the
     * range averages above FAULT_SUSP: precision and recall count clients. */
    for (size_t i = 0; i < t.n; i++) {
        acc_t *x = &t.v[i];
        int faulty = x->rounds > 0 && x->susp / x->rounds > FAULT_SUSP;
        if (x->truth) {
            t.truth_known++;
            t.tp += faulty && is_faulty(x->truth);
            t.fp += faulty && !is_faulty(x->truth);
            t.fn += !faulty && is_faulty(x->truth);
        }
    }
    double *ord = rc == FLC_OK ? malloc((2 * t.n + 1) * sizeof *ord) : NULL;
    for (size_t i = 0; ord && i < t.n; i++) {
        acc_t *x = &t.v[i];
        ord[2 * i] = q->kind == FLC_Q_INCENTIVES      ? x->incentive
                     : q->kind == FLC_Q_FAULTS        ? x->susp / x->rounds
                     : q->kind == FLC_Q_SCHEDULE      ? x->acc / x->rounds
                     : q->kind == FLC_Q_CONTRIBUTION  ? x->loo
                                                      : -(double)i;
        ord[2 * i + 1] = (double)i;
    }
    if (ord)
        qsort(ord, t.n, 2 * sizeof *ord, flc_query_by_key_desc);
    size_t show = q->kind == FLC_Q_SCHEDULE ? (q->k ? q->k : 10) : t.n;
    for (size_t r = 0; ord && r < t.n && r < show; r++) {
        acc_t *x = &t.v[(size_t)ord[2 * r + 1]];
        double k = x->rounds, rank = (double)(r + 1);
        const char *tx[] = {x->truth ? x->truth : ""};
        double va[] = {x->acc / k, x->loss / k, x->gain / k, x->incentive / k, x->loo / k,
                       x->fscore / k, x->disagree / k, x->flagged, k};
        double vi[] = {x->incentive, x->acc / k, k};
        double vf[] = {rank, x->susp / k, x->fscore / k, x->disagree / k, x->acc / k,
                       x->flagged, k};
        double vs[] = {rank, x->acc / k, k};
        double vc[] = {x->loo, x->acc / k, k};
        const double *v = q->kind == FLC_Q_ACCURACY     ? va
                          : q->kind == FLC_Q_INCENTIVES ? vi
                          : q->kind == FLC_Q_FAULTS     ? vf
                          : q->kind == FLC_Q_SCHEDULE   ? vs
                                                        : vc;
        flc_query_answer_row(a, x->name, v, tx);
    }
    free(ord);
    if (rc == FLC_OK && q->kind != FLC_Q_PERSONALIZE) {
        flc_query_answer_summary(a, "global_accuracy", sum_glob / (double)nr);
        flc_query_answer_summary(a, "fedavg_accuracy", sum_fed / (double)nr);
        if (nagg > 0)
            flc_query_answer_summary(a, "aggregate_accuracy", sum_agg / nagg);
        if ((q->kind == FLC_Q_FAULTS || q->kind == FLC_Q_ACCURACY) && t.truth_known > 0) {
            flc_query_answer_summary(a, "flagged", t.tp + t.fp);
            flc_query_answer_summary(a, "precision", t.tp + t.fp ? t.tp / (t.tp + t.fp) : 1.0);
            flc_query_answer_summary(a, "recall", t.tp + t.fn ? t.tp / (t.tp + t.fn) : 1.0);
        }
    }
    if (rc == FLC_OK) {
        flc_query_answer_summary(a, "samples", (double)es.n);
        flc_query_answer_summary(a, "rounds", (double)nr);
        int mlp = es.kind == FLC_QUERY_MODEL_MLP;
        size_t H = mlp ? es.hidden : es.out;
        char moves[200], note[480];
        if (mlp)
            snprintf(moves, sizeof moves, "moves the %zu samples' products for the hidden "
                     "units its slice holds, %zu x %zu in all per update (%.1f KB, and b1, "
                     "W2, b2), instead of the", es.n, es.n, H, (double)es.n * H * 4 / 1e3);
        else
            snprintf(moves, sizeof moves, "moves %zu x %zu first-layer sums per update it "
                     "touches (%.1f KB) instead of its slice of the", es.n, H,
                     (double)es.n * H * 4 / 1e3);
        snprintf(note, sizeof note, "each client's model = global model of the round before "
                 "+ its update, on %zu samples of the job's evaluation set; a shard worker "
                 "%s %.3g MB update", es.n, moves,
                 (double)flc_query_evalset_nparams(&es) * 4 / 1e6);
        flc_query_answer_note(a, "evaluation", note);
        if (ncached > 0) {
            snprintf(note, sizeof note, "%zu of %zu round(s) answered from their cached "
                     "evaluated numbers, checked against every update's stamp; --no-cache "
                     "evaluates again", ncached, nr);
            flc_query_answer_note(a, "cached", note);
        }
        if (q->kind == FLC_Q_FAULTS || q->kind == FLC_Q_ACCURACY)
            flc_query_answer_note(a, "fault_score", "mean over inputs of the distance of the "
                                  "client's activations to the clients' median, over its mean; "
                                  "suspicion: max(z, 0) of it + max(z, 0) of disagreement + "
                                  "max(-z, 0) of accuracy (robust z in the round); flagged: "
                                  "rounds with suspicion > 3; precision/recall count clients "
                                  "whose mean suspicion is > 3");
        if (q->kind == FLC_Q_CONTRIBUTION || q->kind == FLC_Q_ACCURACY)
            flc_query_answer_note(a, "loo_drop", "accuracy of the FedAvg of the round's "
                                  "clients minus that without the client");
    }
    tally_free(&t);
    free(rounds);
    flc_query_evalset_free(&es);
    if (rc != FLC_OK) {
        if (a)
            flcache__query_answer__free_unpacked(a, NULL);
        return rc;
    }
    *out = a;
    return FLC_OK;
}
