/* Vector queries from the round's Gram matrix (query_gram.c): norms,
 * similarity, outliers, clusters and contribution. Everything here is
 * arithmetic on an (N+1)x(N+1) matrix of dot products; no update is read. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/merge.h"
#include "aggregator/query_internal.h"

static double cosv(const double *G, size_t m, size_t i, size_t j)
{
    double d = sqrt(G[i * m + i] * G[j * m + j]);
    return d > 0 ? G[i * m + j] / d : 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Robust z-scores: (x - median) / (1.4826 MAD), 0 when MAD is 0. */
static void robust_z(const double *x, size_t n, double *z)
{
    double *t = malloc(n * sizeof *t);
    if (t == NULL) {
        memset(z, 0, n * sizeof *z);
        return;
    }
    memcpy(t, x, n * sizeof *t);
    qsort(t, n, sizeof *t, cmp_double);
    double med = n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
    for (size_t i = 0; i < n; i++)
        t[i] = fabs(x[i] - med);
    qsort(t, n, sizeof *t, cmp_double);
    double mad = 1.4826 * (n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2);
    for (size_t i = 0; i < n; i++)
        z[i] = mad > 0 ? (x[i] - med) / mad : 0;
    free(t);
}

static int is_faulty(const char *f)
{
    return f && *f && strcmp(f, "none") != 0;
}

/* One round's answer from its Gram matrix. The caller sized its per-client
 * arrays (contribution) or columns (similarity) for `expect` clients from
 * an earlier listing; a round that gained a client since (a late push) is
 * refused rather than written past those arrays. */
/* The "nodes" note: which node served each shard. A query over several
 * rounds (contribution) says it round by round, in one note. */
static void note_nodes(Flcache__QueryAnswer *a, int per_round, uint32_t round, const char *text)
{
    char head[32] = "";
    if (per_round)
        snprintf(head, sizeof head, "round %u: ", round);
    for (size_t i = 0; i < a->n_notes; i++)
        if (strcmp(a->notes[i]->key, "nodes") == 0) {
            size_t len = strlen(a->notes[i]->value) + strlen(head) + strlen(text) + 3;
            char *v = malloc(len);
            if (v == NULL)
                return;
            snprintf(v, len, "%s; %s%s", a->notes[i]->value, head, text);
            free(a->notes[i]->value);
            a->notes[i]->value = v;
            return;
        }
    size_t len = strlen(head) + strlen(text) + 1;
    char *v = malloc(len);
    if (v == NULL)
        return;
    snprintf(v, len, "%s%s", head, text);
    flc_query_answer_note(a, "nodes", v);
    free(v);
}

static int q_round(flc_store_t *s, const flc_query_req_t *q, const flc_store_cfg_t *at,
                   uint32_t round,
                   Flcache__QueryAnswer *a, double *contrib_acc, double *loo_acc,
                   double *robust_acc, size_t expect, flc_err_t *e)
{
    flc_query_gram_t g;
    int rc = flc_query_gram_run(s, at, &q->place, q->job, round, q->threads, !q->no_cache,
                                q->mem_budget, &g, e);
    if (rc != FLC_OK)
        return rc;
    if (expect && g.n != expect) {
        size_t got = g.n;
        flc_query_gram_free(&g);
        return flc_err_set(e, FLC_EDATA, "round %u of job %s changed while it was queried (%zu "
                           "clients, then %zu); ask again", round, q->job, expect, got);
    }
    size_t n0 = g.n;
    size_t *keep = malloc((n0 + 1) * sizeof *keep);
    if (keep == NULL) {
        flc_query_gram_free(&g);
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i <= n0; i++)
        keep[i] = i;
    flc_query_drop_non_finite(&g, round, keep, a);
    size_t n = g.n, m = n + 1;
    const double *G = g.G;
    a->bytes_read += g.bytes_read;
    a->bytes_moved += g.bytes_moved;
    if (g.nodes)
        note_nodes(a, q->kind == FLC_Q_CONTRIBUTION, round, g.nodes);
    double *w = malloc((n + 1) * sizeof *w), *tmp = malloc((3 * n + n0 + 1) * sizeof *tmp);
    char **fault = calloc(n + 1, sizeof *fault);
    int *assign = malloc((n + 1) * sizeof *assign);
    if (!w || !tmp || !fault || !assign) {
        rc = flc_err_set(e, FLC_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = flc_query_client_facts(s, q->job, round, g.clients, g.n, w, fault, a, e)) !=
        FLC_OK)
        goto out;
    int has_agg = G[n * m + n] > 0 && isfinite(G[n * m + n]);
    switch (q->kind) {
    case FLC_Q_NORMS:
        for (size_t i = 0; i < n; i++) {
            double v[] = {sqrt(G[i * m + i]), has_agg ? cosv(G, m, i, n) : NAN, w[i]};
            flc_query_answer_row(a, g.clients[i], v, NULL);
        }
        flc_query_answer_summary(a, "aggregate_norm", sqrt(G[n * m + n]));
        break;
    case FLC_Q_SIMILARITY:
        for (size_t i = 0; i < n; i++) {
            double *v = tmp; /* a column per client listed, NaN for one left out */
            for (size_t j = 0; j < n0; j++)
                v[j] = NAN;
            for (size_t j = 0; j < n; j++)
                v[keep[j]] = cosv(G, m, i, j);
            flc_query_answer_row(a, g.clients[i], v, NULL);
        }
        break;
    case FLC_Q_OUTLIERS: {
        /* Three views of "unlike the others": direction against the most
         * central update (Krum's choice: the aggregate itself can be
         * dragged by attackers with large weights), size (robust z of the
         * norm), and Krum's score (sum of squared distances to the nearest
         * n-f-2 others). */
        double *D = malloc(n * n * sizeof *D), *score = malloc(n * sizeof *score);
        double *norms = tmp, *zn = tmp + n, *zk = tmp + 2 * n;
        if (D == NULL || score == NULL) {
            free(D), free(score);
            rc = flc_err_set(e, FLC_ENOMEM, "out of memory");
            goto out;
        }
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < n; j++) {
                double d = G[i * m + i] - 2 * G[i * m + j] + G[j * m + j];
                D[i * n + j] = i == j ? 0 : (d > 0 ? d : 0);
            }
        size_t sel = 0;
        int krum_ok = n >= 3 && flc_merge_krum_select(D, n, -1, 1, &sel, score, NULL) == FLC_OK;
        for (size_t i = 0; i < n; i++) {
            norms[i] = sqrt(G[i * m + i]);
            if (!krum_ok)
                score[i] = 0;
        }
        robust_z(norms, n, zn);
        robust_z(score, n, zk);
        size_t tp = 0, fp = 0, fn = 0, truth_known = 0;
        double *order = malloc(n * 2 * sizeof *order);
        size_t ref = krum_ok ? sel : n; /* fall back to the aggregate */
        for (size_t i = 0; order && i < n; i++) {
            double c = cosv(G, m, i, ref);
            double susp = (1 - c) / 2 + fabs(zn[i]) / 6 + (zk[i] > 0 ? zk[i] / 6 : 0);
            order[2 * i] = -susp;
            order[2 * i + 1] = (double)i;
        }
        if (order)
            qsort(order, n, 2 * sizeof *order, cmp_double);
        for (size_t r = 0; order && r < n; r++) {
            size_t i = (size_t)order[2 * r + 1];
            double c = has_agg ? cosv(G, m, i, n) : NAN, cc = cosv(G, m, i, ref);
            /* Non-IID clients disagree a little by nature (cos slightly
             * below 0 is common); an attacker points clearly the other way
             * or stands out in size or isolation. */
            int flagged = cc < -0.5 || fabs(zn[i]) > 3.5 || zk[i] > 3.5;
            double v[] = {(double)(r + 1), -order[2 * r], cc, c, norms[i], zn[i], score[i],
                          zk[i], (double)flagged};
            const char *t[] = {fault[i] ? fault[i] : ""};
            flc_query_answer_row(a, g.clients[i], v, t);
            truth_known += fault[i] != NULL;
            tp += flagged && is_faulty(fault[i]);
            fp += flagged && !is_faulty(fault[i]);
            fn += !flagged && is_faulty(fault[i]);
        }
        free(order);
        flc_query_answer_summary(a, "flagged", (double)(tp + fp));
        if (truth_known) {
            flc_query_answer_summary(a, "precision",
                                     tp + fp ? (double)tp / (double)(tp + fp) : 1.0);
            flc_query_answer_summary(a, "recall",
                                     tp + fn ? (double)tp / (double)(tp + fn) : 1.0);
        }
        free(D), free(score);
        break;
    }
    case FLC_Q_CLUSTERS: {
        unsigned K = q->k ? q->k : 2;
        double inertia = 0;
        rc = flc_query_kmeans(G, m, n, K, q->seed, assign, &inertia, e);
        if (rc != FLC_OK)
            goto out;
        for (size_t i = 0; i < n; i++) {
            double v[] = {(double)assign[i], sqrt(G[i * m + i])};
            flc_query_answer_row(a, g.clients[i], v, NULL);
        }
        flc_query_answer_summary(a, "inertia", inertia);
        for (unsigned c = 0; c < K; c++) {
            size_t sz = 0;
            for (size_t i = 0; i < n; i++)
                sz += assign[i] == (int)c;
            char key[32];
            snprintf(key, sizeof key, "size_%u", c);
            flc_query_answer_summary(a, key, (double)sz);
        }
        break;
    }
    case FLC_Q_CONTRIBUTION: {
        /* FedAvg aggregate A = sum w_i u_i / W from dot products:
         *   u_i.A = sum_j w_j G_ij / W,   A.A = sum_jk w_j w_k G_jk / W^2,
         * leave-one-out shift ||A - A_-i|| = w_i / (W - w_i) ||u_i - A||. */
        double W = 0, AA = 0;
        for (size_t i = 0; i < n; i++)
            W += w[i];
        double *uA = tmp;
        for (size_t i = 0; i < n; i++) {
            uA[i] = 0;
            for (size_t j = 0; j < n; j++)
                uA[i] += w[j] * G[i * m + j];
            uA[i] /= W;
        }
        for (size_t i = 0; i < n; i++)
            AA += w[i] * uA[i];
        AA /= W;
        /* The robust reference: the Multi-Krum centre R, the mean of the
         * n - f updates with the lowest Krum scores (f = (n-3)/2), from the
         * same Gram matrix: u_i.R = mean_j in sel G_ij. Attackers that pull
         * the FedAvg aggregate are outside sel, so they cannot pull R. */
        double *D = n >= 3 ? malloc(n * n * sizeof *D) : NULL;
        size_t *sel = n >= 3 ? malloc(n * sizeof *sel) : NULL;
        size_t msel = 0;
        if (D && sel) {
            for (size_t i = 0; i < n; i++)
                for (size_t j = 0; j < n; j++) {
                    double d = G[i * m + i] - 2 * G[i * m + j] + G[j * m + j];
                    D[i * n + j] = i == j ? 0 : (d > 0 ? d : 0);
                }
            int f = (int)((n - 3) / 2);
            msel = n - (size_t)f;
            if (flc_merge_krum_select(D, n, f, msel, sel, NULL, NULL) != FLC_OK)
                msel = 0;
        }
        double RR = 0;
        for (size_t x = 0; x < msel; x++)
            for (size_t y = 0; y < msel; y++)
                RR += G[sel[x] * m + sel[y]];
        RR = msel ? RR / ((double)msel * (double)msel) : 0;
        for (size_t i = 0; i < n; i++) {
            double uR = 0;
            for (size_t x = 0; x < msel; x++)
                uR += G[i * m + sel[x]];
            uR = msel ? uR / (double)msel : 0;
            double d = sqrt(G[i * m + i] * (RR > 0 ? RR : 0));
            if (robust_acc)
                robust_acc[keep[i]] += msel && d > 0 ? w[i] / W * uR / d : NAN;
        }
        free(D), free(sel);
        for (size_t i = 0; i < n; i++) {
            double d2 = G[i * m + i] - 2 * uA[i] + AA;
            double loo = W > w[i] ? w[i] / (W - w[i]) * sqrt(d2 > 0 ? d2 : 0) : NAN;
            double nu = sqrt(G[i * m + i]), nA = sqrt(AA > 0 ? AA : 0);
            double c = nu > 0 && nA > 0 ? uA[i] / (nu * nA) : 0;
            contrib_acc[keep[i]] += w[i] / W * c;
            loo_acc[keep[i]] += loo;
        }
        break;
    }
    default:
        break;
    }
out:
    for (size_t i = 0; fault && i < n; i++)
        free(fault[i]);
    free(fault), free(w), free(tmp), free(assign), free(keep);
    flc_query_gram_free(&g);
    return rc;
}

int flc_query_vectors(flc_store_t *s, const flc_query_req_t *q, const flc_store_cfg_t *at,
                      Flcache__QueryAnswer **out, flc_err_t *e)
{
    const char *kind = flc_query_kind_name(q->kind);
    if (q->kind == FLC_Q_CONTRIBUTION) {
        /* Summed over the rounds: clients are matched by name across rounds. */
        uint32_t *rounds;
        size_t nr;
        int rc = flc_query_rounds(s, q, &rounds, &nr, e);
        if (rc != FLC_OK)
            return rc;
        static const char *num[] = {"contribution", "loo_shift", "rounds",
                                    "robust_contribution"};
        Flcache__QueryAnswer *a = flc_query_answer_new(q->job, kind, num, 4, NULL, 0);
        if (a == NULL) {
            free(rounds);
            return flc_err_set(e, FLC_ENOMEM, "out of memory");
        }
        flc_strlist_t names = {0};
        double *acc = NULL;
        for (size_t r = 0; r < nr && rc == FLC_OK; r++) {
            flc_strlist_t cl = {0};
            int lr = flc_store_list_clients(s, q->job, rounds[r], &cl);
            if (lr != FLC_OK && lr != FLC_ENOTFOUND) {
                *e = *flc_store_error(s);
                rc = lr;
                flc_strlist_free(&cl);
                break;
            }
            if (cl.n == 0) { /* listed, but no update of it is left: said, not hidden */
                flc_strlist_free(&cl);
                char note[96];
                snprintf(note, sizeof note, "round %u: no client updates, left out", rounds[r]);
                flc_query_answer_note(a, "left_out", note);
                continue;
            }
            double *c = calloc(cl.n, sizeof *c), *l = calloc(cl.n, sizeof *l);
            double *rb = calloc(cl.n, sizeof *rb);
            rc = c && l && rb ? q_round(s, q, at, rounds[r], a, c, l, rb, cl.n, e)
                              : flc_err_set(e, FLC_ENOMEM, "out of memory");
            for (size_t i = 0; rc == FLC_OK && i < cl.n; i++) {
                size_t k = 0;
                while (k < names.n && strcmp(names.items[k], cl.items[i]) != 0)
                    k++;
                if (k == names.n) {
                    double *na = realloc(acc, (names.n + 1) * 4 * sizeof *na);
                    if (na == NULL || flc_strlist_add(&names, cl.items[i],
                                                      strlen(cl.items[i])) != FLC_OK) {
                        acc = na ? na : acc;
                        rc = flc_err_set(e, FLC_ENOMEM, "out of memory");
                        break;
                    }
                    acc = na;
                    acc[4 * k] = acc[4 * k + 1] = acc[4 * k + 2] = acc[4 * k + 3] = 0;
                }
                acc[4 * k] += c[i];
                acc[4 * k + 1] += l[i];
                acc[4 * k + 2] += 1;
                acc[4 * k + 3] += rb[i];
            }
            free(c), free(l), free(rb);
            flc_strlist_free(&cl);
        }
        for (size_t k = 0; rc == FLC_OK && k < names.n; k++)
            flc_query_answer_row(a, names.items[k], acc + 4 * k, NULL);
        flc_query_answer_note(a, "contribution",
                              "sum over rounds of (w_i / W) cos(u_i, FedAvg aggregate)");
        flc_query_answer_note(a, "loo_shift",
                              "sum over rounds of how far the FedAvg aggregate moves "
                              "when the client is left out");
        flc_query_answer_note(a, "robust_contribution",
                              "sum over rounds of (w_i / W) cos(u_i, R), R the Multi-Krum "
                              "centre (mean of the n - f most central updates, f = (n-3)/2): "
                              "attackers cannot pull it as they pull the FedAvg aggregate");
        free(acc);
        flc_strlist_free(&names);
        free(rounds);
        if (rc != FLC_OK) {
            flcache__query_answer__free_unpacked(a, NULL);
            return rc;
        }
        *out = a;
        return FLC_OK;
    }
    uint32_t *rounds;
    size_t nr;
    int rc = flc_query_rounds(s, q, &rounds, &nr, e);
    if (rc != FLC_OK)
        return rc;
    if (nr > 1) { /* answered per client over the range (query_range.c) */
        rc = flc_query_vectors_range(s, q, at, rounds, nr, out, e);
        free(rounds);
        return rc;
    }
    uint32_t round = rounds[0];
    free(rounds);
    Flcache__QueryAnswer *a = NULL;
    if (q->kind == FLC_Q_NORMS) {
        static const char *num[] = {"norm", "cos_to_aggregate", "num_samples"};
        a = flc_query_answer_new(q->job, kind, num, 3, NULL, 0);
    } else if (q->kind == FLC_Q_OUTLIERS) {
        static const char *num[] = {"rank", "suspicion", "cos_to_center", "cos_to_aggregate",
                                    "norm", "norm_z", "krum_score", "krum_z", "flagged"};
        static const char *text[] = {"truth"};
        a = flc_query_answer_new(q->job, kind, num, 9, text, 1);
        if (a)
            flc_query_answer_note(a, "suspicion",
                                  "(1 - cos to the most central update)/2 + |norm z|/6 + "
                                  "max(krum z, 0)/6 (robust z-scores); flagged: that cos "
                                  "< -0.5 or a z over 3.5");
    } else if (q->kind == FLC_Q_CLUSTERS) {
        static const char *num[] = {"cluster", "norm"};
        a = flc_query_answer_new(q->job, kind, num, 2, NULL, 0);
    } else if (q->kind == FLC_Q_SIMILARITY) {
        flc_strlist_t cl = {0};
        if (flc_store_list_clients(s, q->job, round, &cl) != FLC_OK) {
            *e = *flc_store_error(s);
            return e->code;
        }
        a = flc_query_answer_new(q->job, kind, (const char *const *)cl.items, cl.n, NULL, 0);
        flc_strlist_free(&cl);
    }
    if (a == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    rc = q_round(s, q, at, round, a, NULL, NULL, NULL,
                 q->kind == FLC_Q_SIMILARITY ? a->num_numeric : 0, e);
    if (rc != FLC_OK) {
        flcache__query_answer__free_unpacked(a, NULL);
        return rc;
    }
    flc_query_answer_summary(a, "round", round);
    *out = a;
    return FLC_OK;
}
