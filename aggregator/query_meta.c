/* Metadata queries: they read round and update metadata only, never an
 * update. history (per round), client (one client across rounds), schedule
 * (whom to pick next, from everyone's history). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/query_internal.h"

int flc_query_rounds(flc_store_t *s, const flc_query_req_t *q, uint32_t **rounds, size_t *n,
                     flc_err_t *e)
{
    uint32_t *all = NULL;
    size_t na = 0;
    int rc = flc_store_list_rounds(s, q->job, &all, &na);
    if (rc == FLC_ENOTFOUND || (rc == FLC_OK && na == 0)) {
        free(all);
        return flc_err_set(e, FLC_ENOTFOUND, "unknown job '%s' (no rounds in the cache)",
                           q->job);
    }
    if (rc != FLC_OK) {
        *e = *flc_store_error(s);
        return rc;
    }
    size_t k = 0;
    for (size_t i = 0; i < na; i++)
        if (q->all_rounds || (all[i] >= q->round_from && all[i] <= q->round_to))
            all[k++] = all[i];
    if (k == 0) {
        free(all);
        if (q->round_from == q->round_to)
            return flc_err_set(e, FLC_ENOTFOUND, "job %s has no round %u", q->job,
                               q->round_from);
        return flc_err_set(e, FLC_ENOTFOUND, "job %s has no rounds in %u..%u", q->job,
                           q->round_from, q->round_to);
    }
    *rounds = all;
    *n = k;
    return FLC_OK;
}

/* The first of the metric names (NULL-terminated) that m has, or NaN. The
 * drivers say "test_accuracy" (train, simulate); others may say "accuracy". */
static double round_metric(const Flcache__RoundMeta *m, const char *const *keys)
{
    for (; *keys; keys++)
        for (size_t i = 0; i < m->n_metrics; i++)
            if (strcmp(m->metrics[i]->key, *keys) == 0)
                return m->metrics[i]->value;
    return NAN;
}

static const char *const ACC_KEYS[] = {"test_accuracy", "accuracy", NULL};
/* central DP's epsilon after the round (clients/sim.c, at delta "dp_delta") */
static const char *const DP_KEYS[] = {"dp_epsilon", NULL};
/* asynchronous jobs (clients/async.h): simulated time, staleness of the buffer */
static const char *const SIM[] = {"sim_time_ms", NULL};
static const char *const ST[] = {"staleness_mean", NULL};
static const char *const STM[] = {"staleness_max", NULL};
static const char *const LOSS_KEYS[] = {"test_loss", "loss", NULL};

/* An asynchronous job's rounds are model versions (clients/async.h): its
 * RoundMeta notes say mode async or sync-clock. */
static int async_job(flc_store_t *s, const char *job, uint32_t round)
{
    Flcache__RoundMeta *m = NULL;
    if (flc_store_get_round_meta(s, job, round, &m) != FLC_OK)
        return 0;
    int yes = 0;
    for (size_t i = 0; i < m->n_notes; i++)
        if (strcmp(m->notes[i]->key, "mode") == 0 && strcmp(m->notes[i]->value, "sync") != 0)
            yes = 1;
    flcache__round_meta__free_unpacked(m, NULL);
    return yes;
}

#define ASYNC_NOTE "rows are model versions of an asynchronous job (a server step every " \
                   "buffer of arrivals), not rounds"

int flc_query_history(flc_store_t *s, const flc_query_req_t *q, Flcache__QueryAnswer **out,
                      flc_err_t *e)
{
    uint32_t *rounds;
    size_t nr;
    int rc = flc_query_rounds(s, q, &rounds, &nr, e);
    if (rc != FLC_OK)
        return rc;
    static const char *num[] = {"accuracy", "loss", "participants", "missing", "rejected",
                                "round_ms", "wait_ms", "merge_ms", "bytes_read", "cost_usd",
                                "epsilon", "sim_s", "staleness", "max_staleness"};
    static const char *text[] = {"rule", "status"};
    int as = nr > 0 && async_job(s, q->job, rounds[0]);
    size_t nn = as ? 14 : 11; /* async: simulated time and staleness too */
    Flcache__QueryAnswer *a = flc_query_answer_new(q->job, "history", num, nn, text, 2);
    if (a != NULL && as)
        flc_query_answer_note(a, "version", ASYNC_NOTE);
    if (a == NULL) {
        free(rounds);
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    }
    size_t nometa = 0;
    for (size_t i = 0; i < nr && rc == FLC_OK; i++) {
        Flcache__RoundMeta *m = NULL;
        int r = flc_store_get_round_meta(s, q->job, rounds[i], &m);
        if (r == FLC_ENOTFOUND) {
            /* Listed in the index without metadata (a round still open, or
             * one whose merger died before writing it): a row that says so,
             * never a round left out in silence (issue 13 finding 9). */
            double v[14];
            for (size_t k = 0; k < 14; k++)
                v[k] = NAN;
            const char *t[] = {"", "no metadata"};
            char key[16];
            snprintf(key, sizeof key, "%u", rounds[i]);
            flc_query_answer_row(a, key, v, t);
            nometa++;
            continue;
        }
        if (r != FLC_OK) {
            *e = *flc_store_error(s);
            rc = r;
            break;
        }
        double v[] = {round_metric(m, ACC_KEYS), round_metric(m, LOSS_KEYS),
                      (double)m->n_participants, (double)m->n_missing, (double)m->n_rejected,
                      m->round_ms, m->wait_ms, m->merge_ms, (double)m->bytes_read, m->cost_usd,
                      round_metric(m, DP_KEYS), round_metric(m, SIM) / 1000,
                      round_metric(m, ST), round_metric(m, STM)};
        const char *t[] = {m->rule, m->status};
        char key[16];
        snprintf(key, sizeof key, "%u", rounds[i]);
        flc_query_answer_row(a, key, v, t);
        a->bytes_read += flcache__round_meta__get_packed_size(m);
        flcache__round_meta__free_unpacked(m, NULL);
    }
    free(rounds);
    a->bytes_moved = a->bytes_read;
    if (nometa > 0) {
        char note[200];
        snprintf(note, sizeof note, "%zu round(s) listed without round metadata (status \"no "
                 "metadata\"): still open, or their merger failed", nometa);
        flc_query_answer_note(a, "no_metadata", note);
    }
    *out = a;
    return rc;
}

/* A ModelUpdate metric, NaN when absent. */
static double update_metric(const Flcache__ModelUpdate *u, const char *key)
{
    for (size_t i = 0; i < u->n_metrics; i++)
        if (strcmp(u->metrics[i]->key, key) == 0)
            return u->metrics[i]->value;
    return NAN;
}

static const char *label(const Flcache__ModelUpdate *u, const char *key)
{
    for (size_t i = 0; i < u->n_labels; i++)
        if (strcmp(u->labels[i]->key, key) == 0)
            return u->labels[i]->value;
    return "";
}

int flc_query_client(flc_store_t *s, const flc_query_req_t *q, Flcache__QueryAnswer **out,
                     flc_err_t *e)
{
    if (q->client == NULL || !*q->client)
        return flc_err_set(e, FLC_EINVAL, "client query: which client? (--client C)");
    uint32_t *rounds = NULL;
    size_t nr = 0;
    int rc = flc_store_client_rounds(s, q->job, q->client, &rounds, &nr);
    if (rc != FLC_OK && rc != FLC_ENOTFOUND) {
        *e = *flc_store_error(s);
        return rc;
    }
    if (nr == 0) {
        free(rounds);
        uint32_t *jr = NULL;
        size_t njr = 0;
        int known = flc_store_list_rounds(s, q->job, &jr, &njr) == FLC_OK && njr > 0;
        free(jr);
        return known ? flc_err_set(e, FLC_ENOTFOUND, "unknown client '%s' in job %s",
                                   q->client, q->job)
                     : flc_err_set(e, FLC_ENOTFOUND, "unknown job '%s'", q->job);
    }
    static const char *num[] = {"num_samples", "loss", "update_norm", "duration_ms",
                                "local_steps", "base_version", "staleness"};
    static const char *text[] = {"status", "reason", "fault"};
    int as = async_job(s, q->job, rounds[0]); /* async: the version trained on, staleness */
    Flcache__QueryAnswer *a = flc_query_answer_new(q->job, "client", num, as ? 7 : 5, text, 3);
    if (a != NULL && as)
        flc_query_answer_note(a, "version", ASYNC_NOTE);
    if (a == NULL) {
        free(rounds);
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    }
    size_t shown = 0;
    for (size_t i = 0; i < nr && rc != FLC_ENOMEM; i++) {
        if (!q->all_rounds && (rounds[i] < q->round_from || rounds[i] > q->round_to))
            continue;
        Flcache__ModelUpdate *u = NULL;
        int r = flc_store_get_update_meta(s, q->job, rounds[i], q->client, &u);
        if (r == FLC_ENOTFOUND)
            continue; /* listed, but its metadata expired or was never written */
        if (r != FLC_OK) { /* undecodable: refuse, naming client and round */
            *e = *flc_store_error(s);
            free(rounds);
            flcache__query_answer__free_unpacked(a, NULL);
            return r;
        }
        double v[] = {(double)u->num_samples, u->loss, u->update_norm, u->duration_ms,
                      u->local_steps, update_metric(u, "base_version"),
                      update_metric(u, "staleness")};
        const char *t[] = {u->status, u->reason, label(u, "fault")};
        char key[16];
        snprintf(key, sizeof key, "%u", rounds[i]);
        rc = flc_query_answer_row(a, key, v, t);
        a->bytes_read += flcache__model_update__get_packed_size(u);
        flcache__model_update__free_unpacked(u, NULL);
        shown++;
    }
    free(rounds);
    a->bytes_moved = a->bytes_read;
    flc_query_answer_summary(a, "rounds", (double)shown);
    *out = a;
    return rc == FLC_ENOMEM ? flc_err_set(e, rc, "out of memory") : FLC_OK;
}

/* ---- schedule ------------------------------------------------------------ */

typedef struct cand {
    char *name;
    unsigned invited, took_part;
    uint32_t last;      /* last round taken part in */
    double loss_sum;
    unsigned loss_n;
    double samples;
} cand_t;

static cand_t *cand_get(cand_t **v, size_t *n, const char *name)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*v)[i].name, name) == 0)
            return &(*v)[i];
    cand_t *nv = realloc(*v, (*n + 1) * sizeof *nv);
    if (nv == NULL)
        return NULL;
    *v = nv;
    cand_t *c = &nv[(*n)++];
    memset(c, 0, sizeof *c);
    c->name = strdup(name);
    return c->name ? c : NULL;
}

static int by_score_desc(const void *a, const void *b)
{
    double x = ((const double *)a)[0], y = ((const double *)b)[0];
    return x < y ? 1 : x > y ? -1 : 0;
}

int flc_query_schedule(flc_store_t *s, const flc_query_req_t *q, Flcache__QueryAnswer **out,
                       flc_err_t *e)
{
    uint32_t *rounds;
    size_t nr;
    int rc = flc_query_rounds(s, q, &rounds, &nr, e);
    if (rc != FLC_OK)
        return rc;
    cand_t *c = NULL;
    size_t nc = 0;
    uint64_t bytes = 0;
    uint32_t now = rounds[nr - 1] + 1;
    size_t nometa = 0;
    for (size_t i = 0; i < nr; i++) {
        Flcache__RoundMeta *m = NULL;
        int mr = flc_store_get_round_meta(s, q->job, rounds[i], &m);
        if (mr != FLC_OK && mr != FLC_ENOTFOUND) { /* undecodable: refuse, naming it */
            *e = *flc_store_error(s);
            for (size_t k = 0; k < nc; k++)
                free(c[k].name);
            free(c);
            free(rounds);
            return mr;
        }
        nometa += mr == FLC_ENOTFOUND; /* invitations unknown: said in a note */
        if (mr == FLC_OK) {
            for (size_t k = 0; k < m->n_expected; k++) {
                cand_t *x = cand_get(&c, &nc, m->expected[k]);
                if (x)
                    x->invited++;
            }
            bytes += flcache__round_meta__get_packed_size(m);
            flcache__round_meta__free_unpacked(m, NULL);
        }
        Flcache__ModelUpdate **u = NULL;
        size_t nu = 0;
        int r = flc_store_get_round_update_metas(s, q->job, rounds[i], &u, &nu);
        if (r == FLC_ENOTFOUND)
            continue;
        if (r != FLC_OK) { /* one undecodable record: refuse, naming its client */
            *e = *flc_store_error(s);
            for (size_t k = 0; k < nc; k++)
                free(c[k].name);
            free(c);
            free(rounds);
            return r;
        }
        for (size_t k = 0; k < nu; k++) {
            cand_t *x = cand_get(&c, &nc, u[k]->client);
            if (x == NULL)
                continue;
            int accepted = u[k]->status == NULL || !*u[k]->status ||
                           strcmp(u[k]->status, "accepted") == 0;
            if (accepted) {
                x->took_part++;
                x->last = rounds[i];
            }
            if (isfinite(u[k]->loss)) {
                x->loss_sum += u[k]->loss;
                x->loss_n++;
            }
            x->samples = (double)u[k]->num_samples;
            bytes += flcache__model_update__get_packed_size(u[k]);
        }
        flc_store_free_update_metas(u, nu);
    }
    free(rounds);
    if (nc == 0)
        return flc_err_set(e, FLC_ENOTFOUND, "job %s has no client history to schedule from",
                           q->job);
    /* Oort-style utility: statistical (loss x sqrt(samples): clients whose
     * data the model fits worst and who have much of it), times reliability
     * (took part / invited), plus a bonus for staleness so nobody starves. */
    double *score = malloc(nc * 2 * sizeof *score);
    if (score == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    for (size_t i = 0; i < nc; i++) {
        cand_t *x = &c[i];
        double loss = x->loss_n ? x->loss_sum / x->loss_n : 1.0;
        double rel = x->invited ? (double)x->took_part / x->invited : 1.0;
        double stale = x->took_part ? (double)(now - x->last) : (double)now;
        score[2 * i] = loss * sqrt(x->samples > 0 ? x->samples : 1) * (0.5 + 0.5 * rel) *
                       (1.0 + 0.1 * stale);
        score[2 * i + 1] = (double)i;
    }
    qsort(score, nc, 2 * sizeof *score, by_score_desc);
    unsigned k = q->k ? q->k : 10;
    static const char *num[] = {"rank", "score", "mean_loss", "num_samples", "reliability",
                                "rounds_since"};
    static const char *text[] = {"why"};
    Flcache__QueryAnswer *a = flc_query_answer_new(q->job, "schedule", num, 6, text, 1);
    for (size_t r = 0; a && r < nc && r < k; r++) {
        cand_t *x = &c[(size_t)score[2 * r + 1]];
        double loss = x->loss_n ? x->loss_sum / x->loss_n : NAN;
        double rel = x->invited ? (double)x->took_part / x->invited : 1.0;
        double stale = x->took_part ? (double)(now - x->last) : (double)now;
        char why[200];
        snprintf(why, sizeof why, "%s loss, %.0f samples, %s, %s",
                 !x->loss_n ? "unknown" : loss > 1.0 ? "high" : "moderate", x->samples,
                 rel >= 0.9 ? "reliable" : rel >= 0.5 ? "sometimes drops out" : "often drops out",
                 stale >= 5 ? "not picked for a while" : "picked recently");
        double v[] = {(double)(r + 1), score[2 * r], loss, x->samples, rel, stale};
        const char *t[] = {why};
        flc_query_answer_row(a, x->name, v, t);
    }
    for (size_t i = 0; i < nc; i++)
        free(c[i].name);
    free(c);
    free(score);
    if (a == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    a->bytes_read = a->bytes_moved = bytes;
    flc_query_answer_note(a, "score", "mean local loss x sqrt(samples) x (0.5 + 0.5 reliability) x "
                            "(1 + 0.1 rounds since last picked)");
    if (nometa > 0) {
        char note[160];
        snprintf(note, sizeof note, "%zu round(s) without round metadata: their invitations "
                 "are unknown, so reliability counts only the others", nometa);
        flc_query_answer_note(a, "no_metadata", note);
    }
    *out = a;
    return FLC_OK;
}
