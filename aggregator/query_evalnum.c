/* The numbers of one round an evaluation query answers from
 * (query_evalres.h): read from the round's cached value when it fits, else
 * computed from the kept products of the round evaluated
 * (query_eval.c): every client's accuracy and loss, the global model's,
 * the FedAvg of the clients kept and the aggregate the round merged, and
 * what the kind needs of leave-one-out drops, FedDebug-style fault scores
 * and the personalized model's accuracy; then cached. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/query_evalres.h"
#include "aggregator/query_internal.h"
#include "base/bigbuf.h"
#include "base/clock.h"
#include "base/log.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double flc_query_median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* FedDebug-style scores of one round: per client, the mean distance of its
 * activations to the per-input median of all clients' (fscore), and the
 * share of inputs where its prediction is not the majority's. */
static int fault_scores(const flc_query_eval_t *ev, double *fscore, double *disagree)
{
    size_t n = ev->n, B = ev->B, H = ev->H, BH = B * H;
    /* every client's activations: 122 MB at FLStore's size, populated at
     * once (base/bigbuf.h) rather than faulted in page by page */
    size_t act_bytes = n * BH * sizeof(float);
    float *act = flc_buf_alloc(act_bytes);
    int32_t *pred = malloc(n * B * sizeof *pred);
    double *c = calloc(n + 1, sizeof *c), *col = malloc(n * sizeof *col);
    int rc = act && pred && c && col ? FLC_OK : FLC_ENOMEM;
    for (size_t i = 0; rc == FLC_OK && i < n; i++) {
        c[i] = 1;
        rc = flc_query_eval_mix(ev, c, NULL, NULL, pred + i * B, act + i * BH);
        c[i] = 0;
    }
    for (size_t i = 0; rc == FLC_OK && i < n; i++)
        fscore[i] = disagree[i] = 0;
    for (size_t b = 0; rc == FLC_OK && b < B; b++) {
        double *d2 = c; /* per client squared distance on input b */
        for (size_t i = 0; i < n; i++)
            d2[i] = 0;
        for (size_t h = 0; h < H; h++) {
            for (size_t i = 0; i < n; i++)
                col[i] = act[i * BH + b * H + h];
            double med = flc_query_median(col, n);
            for (size_t i = 0; i < n; i++) {
                double d = act[i * BH + b * H + h] - med;
                d2[i] += d * d;
            }
        }
        double scale = 0; /* inputs with large activations must not dominate */
        for (size_t i = 0; i < n; i++)
            scale += sqrt(d2[i]);
        scale = scale > 0 ? scale / (double)n : 1;
        for (size_t i = 0; i < n; i++)
            fscore[i] += sqrt(d2[i]) / scale / (double)B;
        unsigned votes[256] = {0}; /* classes are < 2^24, but a vote only needs the top */
        size_t best = 0;
        for (size_t i = 0; i < n; i++) {
            size_t p = (size_t)pred[i * B + b] & 255;
            if (++votes[p] > votes[best])
                best = p;
        }
        for (size_t i = 0; i < n; i++)
            disagree[i] += ((size_t)pred[i * B + b] & 255) != best ? 1.0 / (double)B : 0;
    }
    for (size_t i = 0; i <= n && c; i++)
        c[i] = 0;
    flc_buf_free(act, act_bytes);
    free(pred), free(c), free(col);
    return rc;
}

/* What q's kind answers from beyond every client's accuracy and loss. */
static unsigned needs(const flc_query_req_t *q)
{
    switch (q->kind) {
    case FLC_Q_ACCURACY: return FLC_EVNUM_LOO | FLC_EVNUM_FAULTS;
    case FLC_Q_CONTRIBUTION: return FLC_EVNUM_LOO;
    case FLC_Q_FAULTS: return FLC_EVNUM_FAULTS;
    case FLC_Q_PERSONALIZE: return FLC_EVNUM_PERS;
    default: return 0;
    }
}

/* The numbers of one evaluated round that q's kind needs (need), from the
 * kept products: every client's accuracy and loss, the global model's,
 * the FedAvg of the clients kept and the aggregate the round merged, and
 * as needed the leave-one-out drops, the fault scores (3 clients or more)
 * and the personalized model's accuracy. */
static int round_numbers(const flc_query_req_t *q, const flc_query_eval_t *ev, unsigned need,
                         flc_query_evnum_t *v)
{
    size_t n = ev->n;
    if (flc_query_evnum_init(v, n) != FLC_OK)
        return FLC_ENOMEM;
    v->what = need;
    v->global_acc = ev->global_acc;
    double *c = calloc(n + 1, sizeof *c), *ord = malloc(2 * n * sizeof *ord);
    int rc = c && ord ? FLC_OK : FLC_ENOMEM;
    double W = 0;
    for (size_t i = 0; rc == FLC_OK && i < n; i++) {
        if ((v->clients[i] = strdup(ev->clients[i])) == NULL) {
            rc = FLC_ENOMEM;
            break;
        }
        v->w[i] = ev->w[i];
        c[i] = 1;
        rc = flc_query_eval_mix(ev, c, &v->acc[i], &v->loss[i], NULL, NULL);
        c[i] = 0;
        W += ev->w[i];
    }
    /* FedAvg of the clients kept, and the aggregate the round merged. */
    for (size_t i = 0; rc == FLC_OK && i < n; i++)
        c[i] = ev->w[i] / W;
    if (rc == FLC_OK)
        rc = flc_query_eval_mix(ev, c, &v->fedavg_acc, NULL, NULL, NULL);
    if (rc == FLC_OK && ev->has_agg) {
        memset(c, 0, (n + 1) * sizeof *c);
        c[n] = 1;
        rc = flc_query_eval_mix(ev, c, &v->agg_acc, NULL, NULL, NULL);
    }
    if (rc == FLC_OK && (need & FLC_EVNUM_FAULTS) && n >= 3)
        rc = fault_scores(ev, v->fs, v->dis);
    if (rc == FLC_OK && (need & FLC_EVNUM_LOO)) { /* FedAvg without client i, for every i */
        double *loo_acc = malloc(n * sizeof *loo_acc);
        rc = loo_acc ? flc_query_eval_loo(ev, ev->w, loo_acc) : FLC_ENOMEM;
        for (size_t i = 0; rc == FLC_OK && i < n; i++)
            v->loo[i] = isnan(loo_acc[i]) ? NAN : v->fedavg_acc - loo_acc[i];
        free(loo_acc);
    }
    if (rc == FLC_OK && (need & FLC_EVNUM_PERS)) {
        v->pers_k = (uint32_t)flc_query_pers_k(q, n);
        flc_query_pers_weights(v->acc, n, v->pers_k, ord, c);
        rc = flc_query_eval_mix(ev, c, &v->pers_acc, NULL, NULL, NULL);
    }
    free(c), free(ord);
    return rc;
}

int flc_query_round_numbers(flc_store_t *s, const flc_query_req_t *q, const flc_store_cfg_t *at,
                            flc_query_evalset_t *es, uint64_t set_stamp, uint32_t r,
                            flc_query_evnum_t *v, char ***fault, int *cached,
                            Flcache__QueryAnswer *a, flc_err_t *e)
{
    unsigned need = needs(q);
    uint64_t digest = 0, bytes = 0;
    int rc = FLC_ENOTFOUND;
    *fault = NULL;
    *cached = 0;
    if (set_stamp && /* 0 for --no-cache */
        flc_query_evnum_digest(s, q->job, r, set_stamp, es->n, &digest) == FLC_OK &&
        flc_query_evnum_get(s, q->job, r, digest, v, &bytes) == FLC_OK) {
        int fits = (v->what & need) == need &&
                   (!(need & FLC_EVNUM_PERS) || v->pers_k == flc_query_pers_k(q, v->n));
        double *w = malloc((v->n + 1) * sizeof *w);
        *fault = calloc(v->n + 1, sizeof **fault);
        if (fits && w && *fault &&
            flc_query_client_facts(s, q->job, r, v->clients, v->n, w, *fault, a, e) == FLC_OK)
            fits = memcmp(w, v->w, v->n * sizeof *w) == 0;
        else
            fits = 0;
        free(w);
        if (fits) {
            if (v->left_out && v->left_out[0])
                flc_query_answer_note(a, "left_out", v->left_out);
            a->bytes_read += bytes;
            a->bytes_moved += bytes;
            *cached = 1;
            return FLC_OK;
        }
        for (size_t i = 0; *fault && i < v->n; i++)
            free((*fault)[i]);
        free(*fault);
        *fault = NULL;
        flc_query_evnum_free(v);
    }
    if (es->x == NULL && (rc = flc_query_evalset_get_inputs(s, q->job, es, e)) != FLC_OK)
        return rc;
    flc_query_eval_t ev;
    if ((rc = flc_query_eval_round(s, q, at, es, r, &ev, a, e)) != FLC_OK)
        return rc;
    a->bytes_read += ev.bytes_read;
    a->bytes_moved += ev.bytes_moved;
    uint64_t t0 = flc_now_ns();
    rc = round_numbers(q, &ev, need, v);
    FLC_DEBUG("evaluation: round %u of job %s: its numbers from the products in %.1f ms", r,
              q->job, (double)(flc_now_ns() - t0) / 1e6);
    if (rc == FLC_OK && ev.left_out && (v->left_out = strdup(ev.left_out)) == NULL)
        rc = FLC_ENOMEM;
    if (rc == FLC_OK) {
        *fault = ev.fault; /* handed over */
        ev.fault = NULL;
        if (digest) /* looked up: not --no-cache */
            flc_query_evnum_put(s, q->job, r, digest, v);
        v->digest = digest;
    }
    flc_query_eval_free(&ev);
    if (rc != FLC_OK)
        flc_query_evnum_free(v);
    return rc == FLC_ENOMEM ? flc_err_set(e, FLC_ENOMEM, "out of memory") : rc;
}
