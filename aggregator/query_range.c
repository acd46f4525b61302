/* Vector queries over a range of rounds (--rounds A:B), answered per
 * client: norms and cosines as trajectories, how often outliers flagged
 * each client, and how stable the clusters stay from round to round.
 * Each round is asked on its own (the one-round answer of query_vec.c,
 * from that round's Gram matrix) and the rows are folded by client name;
 * a client absent from a round is simply not counted there. `similarity`
 * refuses a range: its answer is an N x N matrix per round. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/query_internal.h"

#define TRAJ 480 /* characters of a trajectory text before it is cut */

typedef struct per {
    char *name, *truth;
    double rounds, s0, s1, mn0, mx0, mn1, flagged, last;
    char traj[TRAJ];
    size_t len;
    int *cl; /* clusters: its cluster per round, -1 when absent */
} per_t;

static per_t *per_get(per_t **v, size_t *n, const char *name, size_t nr)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*v)[i].name, name) == 0)
            return &(*v)[i];
    per_t *nv = realloc(*v, (*n + 1) * sizeof *nv);
    if (nv == NULL)
        return NULL;
    *v = nv;
    per_t *p = &nv[*n];
    memset(p, 0, sizeof *p);
    p->mn0 = p->mn1 = INFINITY;
    p->mx0 = -INFINITY;
    p->name = strdup(name);
    p->cl = malloc(nr * sizeof *p->cl);
    if (p->name == NULL || p->cl == NULL) {
        free(p->name), free(p->cl);
        return NULL;
    }
    for (size_t r = 0; r < nr; r++)
        p->cl[r] = -1;
    (*n)++;
    return p;
}

static void traj_add(per_t *p, const char *fmt, uint32_t round, double a, double b)
{
    if (p->len >= TRAJ - 40) {
        if (p->len < TRAJ - 4)
            p->len += (size_t)snprintf(p->traj + p->len, TRAJ - p->len, " ...");
        return;
    }
    p->len += (size_t)snprintf(p->traj + p->len, TRAJ - p->len, fmt, p->len ? " " : "", round,
                               a, b);
}

/* Of the client pairs present in rounds x and y, the share that are
 * together in both or apart in both (the Rand index of the two
 * clusterings); for client i alone when i >= 0. NaN with no pair. */
static double rand_index(const per_t *v, size_t n, size_t x, size_t y, long i)
{
    double same = 0, all = 0;
    for (size_t a = 0; a < n; a++) {
        if (i >= 0 && a != (size_t)i)
            continue;
        for (size_t b = i >= 0 ? 0 : a + 1; b < n; b++) {
            if (b == a || v[a].cl[x] < 0 || v[a].cl[y] < 0 || v[b].cl[x] < 0 || v[b].cl[y] < 0)
                continue;
            all++;
            same += (v[a].cl[x] == v[b].cl[x]) == (v[a].cl[y] == v[b].cl[y]);
        }
    }
    return all > 0 ? same / all : NAN;
}

int flc_query_vectors_range(flc_store_t *s, const flc_query_req_t *q, const flc_store_cfg_t *at,
                            const uint32_t *rounds, size_t nr, Flcache__QueryAnswer **out,
                            flc_err_t *e)
{
    if (q->kind == FLC_Q_SIMILARITY)
        return flc_err_set(e, FLC_EINVAL, "similarity is an N x N matrix per round: ask one "
                           "round (--round R), not the %zu rounds %u..%u", nr, rounds[0],
                           rounds[nr - 1]);
    const char *kind = flc_query_kind_name(q->kind);
    static const char *c_norm[] = {"rounds", "norm_mean", "norm_min", "norm_max", "cos_mean",
                                   "cos_min"};
    static const char *c_out[] = {"rounds", "flagged", "flag_rate", "suspicion_mean",
                                  "best_rank"};
    static const char *c_cl[] = {"rounds", "last_cluster", "stay_rate"};
    static const char *t_norm[] = {"trajectory"}, *t_out[] = {"truth"}, *t_cl[] = {"clusters"};
    Flcache__QueryAnswer *a =
        q->kind == FLC_Q_NORMS      ? flc_query_answer_new(q->job, kind, c_norm, 6, t_norm, 1)
        : q->kind == FLC_Q_OUTLIERS ? flc_query_answer_new(q->job, kind, c_out, 5, t_out, 1)
                                    : flc_query_answer_new(q->job, kind, c_cl, 3, t_cl, 1);
    if (a == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    per_t *v = NULL;
    size_t n = 0;
    int rc = FLC_OK;
    double tp = 0, fp = 0, fn = 0, known = 0;
    for (size_t r = 0; rc == FLC_OK && r < nr; r++) {
        flc_query_req_t one = *q;
        one.all_rounds = 0;
        one.round_from = one.round_to = rounds[r];
        Flcache__QueryAnswer *ar = NULL;
        if ((rc = flc_query_vectors(s, &one, at, &ar, e)) != FLC_OK)
            break;
        a->bytes_read += ar->bytes_read;
        a->bytes_moved += ar->bytes_moved;
        for (size_t k = 0; k < ar->n_notes; k++) /* left-out clients and such, per round */
            if (strcmp(ar->notes[k]->key, "nodes") != 0 &&
                strcmp(ar->notes[k]->key, "suspicion") != 0)
                flc_query_answer_note(a, ar->notes[k]->key, ar->notes[k]->value);
        for (size_t i = 0; rc == FLC_OK && i < ar->n_rows; i++) {
            const Flcache__QueryRow *row = ar->rows[i];
            per_t *p = per_get(&v, &n, row->key, nr);
            if (p == NULL) {
                rc = flc_err_set(e, FLC_ENOMEM, "out of memory");
                break;
            }
            const double *x = row->values;
            p->rounds++;
            if (q->kind == FLC_Q_NORMS) {
                p->s0 += x[0];
                p->s1 += isnan(x[1]) ? 0 : x[1];
                p->mn0 = x[0] < p->mn0 ? x[0] : p->mn0;
                p->mx0 = x[0] > p->mx0 ? x[0] : p->mx0;
                p->mn1 = x[1] < p->mn1 ? x[1] : p->mn1;
                traj_add(p, "%s%u:%.3g/%.2f", rounds[r], x[0], x[1]);
            } else if (q->kind == FLC_Q_OUTLIERS) {
                p->flagged += x[8];
                p->s0 += x[1];
                p->mn0 = x[0] < p->mn0 ? x[0] : p->mn0;
                if (p->truth == NULL && row->n_text > 0 && *row->text[0])
                    p->truth = strdup(row->text[0]);
            } else {
                p->cl[r] = (int)x[0];
                p->last = x[0];
            }
        }
        flcache__query_answer__free_unpacked(ar, NULL);
    }
    for (size_t i = 0; rc == FLC_OK && i < n; i++) {
        per_t *p = &v[i];
        const char *t[1] = {p->traj};
        if (q->kind == FLC_Q_NORMS) {
            double x[] = {p->rounds, p->s0 / p->rounds, p->mn0, p->mx0, p->s1 / p->rounds,
                          p->mn1};
            flc_query_answer_row(a, p->name, x, t);
        } else if (q->kind == FLC_Q_OUTLIERS) {
            double rate = p->flagged / p->rounds;
            double x[] = {p->rounds, p->flagged, rate, p->s0 / p->rounds, p->mn0};
            t[0] = p->truth ? p->truth : "";
            flc_query_answer_row(a, p->name, x, t);
            if (p->truth) { /* judged faulty when flagged in more than half its rounds */
                int bad = strcmp(p->truth, "none") != 0;
                known++;
                tp += rate > 0.5 && bad;
                fp += rate > 0.5 && !bad;
                fn += rate <= 0.5 && bad;
            }
        } else {
            double stay = 0, pairs = 0; /* its co-membership kept from round to round */
            size_t len = 0;
            for (size_t r = 0; r < nr; r++) {
                if (p->cl[r] >= 0 && len < TRAJ - 40)
                    len += (size_t)snprintf(p->traj + len, TRAJ - len, "%s%u:%d", len ? " " : "",
                                            rounds[r], p->cl[r]);
                if (r + 1 < nr) {
                    double ri = rand_index(v, n, r, r + 1, (long)i);
                    if (!isnan(ri))
                        stay += ri, pairs++;
                }
            }
            double x[] = {p->rounds, p->last, pairs ? stay / pairs : NAN};
            flc_query_answer_row(a, p->name, x, t);
        }
    }
    if (rc == FLC_OK && q->kind == FLC_Q_OUTLIERS && known > 0) {
        flc_query_answer_summary(a, "flagged", tp + fp);
        flc_query_answer_summary(a, "precision", tp + fp ? tp / (tp + fp) : 1.0);
        flc_query_answer_summary(a, "recall", tp + fn ? tp / (tp + fn) : 1.0);
        flc_query_answer_note(a, "flag_rate", "rounds flagged / rounds present; precision and "
                              "recall judge a client faulty when it is flagged in more than "
                              "half of its rounds");
    }
    if (rc == FLC_OK && q->kind == FLC_Q_CLUSTERS) {
        for (size_t r = 0; r + 1 < nr; r++) {
            char key[48];
            snprintf(key, sizeof key, "stability_%u_%u", rounds[r], rounds[r + 1]);
            flc_query_answer_summary(a, key, rand_index(v, n, r, r + 1, -1));
        }
        flc_query_answer_note(a, "stay_rate", "per client, the share of the others it stays "
                              "together with or apart from from one round to the next; "
                              "stability_A_B: the same over all pairs (Rand index)");
    }
    if (rc == FLC_OK) {
        flc_query_answer_summary(a, "round_from", rounds[0]);
        flc_query_answer_summary(a, "round_to", rounds[nr - 1]);
        flc_query_answer_summary(a, "rounds", (double)nr);
    }
    for (size_t i = 0; i < n; i++)
        free(v[i].name), free(v[i].truth), free(v[i].cl);
    free(v);
    if (rc != FLC_OK) {
        flcache__query_answer__free_unpacked(a, NULL);
        return rc;
    }
    *out = a;
    return FLC_OK;
}
