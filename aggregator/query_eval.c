/* One round evaluated on the job's evaluation set, decomposed by shard.
 *
 * A client's model of round r is the global model of round r-1 ("<J>/g")
 * plus its update. Both model kinds start with a layer linear in its
 * weights (softmax: the logits; mlp: the hidden pre-activations), so for
 * an update cut into shards, X dW1 + db1 is the sum over shards of what
 * each shard's slice of W1 and b1 contributes: a shard covering rows
 * i0..i1 of W1 adds X[:, i0..i1] dW1[i0..i1, :] (one sgemm, plus a rank-1
 * sger for a row cut by the shard's edge). A shard worker therefore moves
 * B x H floats per update (B samples, H hidden units or classes) and the
 * few later-layer floats of its slice, instead of its slice of the update.
 * B is chosen so that this is less than the update itself (query_evalq.c).
 *
 * The partials are kept per delta: FedAvg, leave-one-out and accuracy-
 * weighted mixes are linear in the deltas, so flc_query_eval_mix evaluates
 * any of them from the kept sums without reading an update again.
 *
 * This version computes the partials in the query's own process with its
 * own store connection, shard by shard (bytes_moved reports what a worker
 * placed next to each shard moves; docs/queries.md says which bytes). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "aggregator/query_internal.h"

/* Adds the contribution of the slice v = model[off .. off+cnt) to the
 * first-layer sums Z (B x H) and copies its later-layer floats into L
 * (ev->L2 floats; may be NULL when the slice has none). */
static void add_slice(const flc_query_eval_t *ev, uint64_t off, uint64_t cnt, const float *v,
                      float *Z, float *L)
{
    const size_t B = ev->B, H = ev->H, in = ev->in;
    const uint64_t w1 = (uint64_t)in * H, b1 = w1 + H, end = off + cnt;
    const float *X = ev->x;
    uint64_t p = off;
    while (p < end && p < w1) { /* W1: row by row, full rows in one sgemm */
        size_t i = (size_t)(p / H), h = (size_t)(p % H);
        if (h == 0 && p + H <= end && p + H <= w1) {
            size_t rows = (size_t)((end < w1 ? end : w1) - p) / H;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)B, (int)H, (int)rows,
                        1.0f, X + i, (int)in, v + (p - off), (int)H, 1.0f, Z, (int)H);
            p += (uint64_t)rows * H;
        } else {
            uint64_t stop = (uint64_t)(i + 1) * H;
            stop = stop < end ? stop : end;
            cblas_sger(CblasRowMajor, (int)B, (int)(stop - p), 1.0f, X + i, (int)in,
                       v + (p - off), 1, Z + h, (int)H);
            p = stop;
        }
    }
    for (; p < end && p < b1; p++) { /* b1 */
        float bv = v[p - off];
        size_t h = (size_t)(p - w1);
        for (size_t b = 0; b < B; b++)
            Z[b * H + h] += bv;
    }
    if (p < end && L != NULL)
        memcpy(L + (p - b1), v + (p - off), (size_t)(end - p) * sizeof *v);
}

void flc_query_eval_free(flc_query_eval_t *ev)
{
    if (ev == NULL)
        return;
    for (size_t i = 0; i < ev->n; i++) {
        free(ev->clients[i]);
        if (ev->fault)
            free(ev->fault[i]);
    }
    free(ev->clients), free(ev->fault), free(ev->w);
    free(ev->Zg), free(ev->g2), free(ev->D), free(ev->S2);
    memset(ev, 0, sizeof *ev);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads delta `who` (a client, or NULL: the merged shards) over the round's
 * shards into D / S2 row `row`. 1 when complete, 0 when a shard is missing
 * or holds NaN/Inf (the row is then garbage, the caller drops it). */
static int read_delta(flc_store_t *s, const char *job, uint32_t round, const uint32_t *shards,
                      size_t ns, const char *who, uint64_t P, flc_query_eval_t *ev, size_t row,
                      flc_err_t *e)
{
    float *Z = ev->D + row * ev->B * ev->H, *L = ev->L2 ? ev->S2 + row * ev->L2 : NULL;
    memset(Z, 0, ev->B * ev->H * sizeof *Z);
    if (L)
        memset(L, 0, ev->L2 * sizeof *L);
    uint64_t first = (uint64_t)ev->in * ev->H + ev->H;
    for (size_t k = 0; k < ns; k++) {
        flc_shard_t sh = {0};
        int r = who ? flc_store_get_update(s, job, round, shards[k], who, &sh, NULL, 0)
                    : flc_store_get_merged(s, job, round, shards[k], &sh, NULL, 0);
        if (r == FLC_ENOTFOUND)
            return 0;
        if (r != FLC_OK) {
            *e = *flc_store_error(s);
            return r;
        }
        if (sh.model_size != P || sh.offset > P || sh.count > P - sh.offset) {
            flc_shard_release(&sh);
            return flc_err_set(e, FLC_EDIM, "round %u, %s%s, shard %u: a model of %llu floats "
                               "(offset %llu, %llu floats), the evaluation set's model has %llu",
                               round, who ? "client " : "the aggregate", who ? who : "",
                               shards[k], (unsigned long long)sh.model_size,
                               (unsigned long long)sh.offset, (unsigned long long)sh.count,
                               (unsigned long long)P);
        }
        if (flc_find_nonfinite(sh.values, sh.count) >= 0) {
            flc_shard_release(&sh);
            return 0;
        }
        add_slice(ev, sh.offset, sh.count, sh.values, Z, L);
        ev->bytes_read += sh.count * sizeof(float);
        /* A worker next to this shard moves the B x H sums when the slice
         * touches the first layer, and its later-layer floats. */
        uint64_t later = sh.offset + sh.count > first
                             ? sh.offset + sh.count - (sh.offset > first ? sh.offset : first)
                             : 0;
        ev->bytes_moved += (sh.offset < first ? ev->B * ev->H * sizeof(float) : 0) +
                           later * sizeof(float);
        flc_shard_release(&sh);
    }
    return 1;
}

int flc_query_eval_round(flc_store_t *s, const flc_query_req_t *q, const flc_query_evalset_t *es,
                         uint32_t round, flc_query_eval_t *ev, Flcache__QueryAnswer *a,
                         flc_err_t *e)
{
    memset(ev, 0, sizeof *ev);
    ev->round = round;
    ev->kind = es->kind;
    ev->in = es->in;
    ev->B = es->n;
    ev->H = es->kind == FLC_QUERY_MODEL_MLP ? es->hidden : es->out;
    ev->C = es->out;
    ev->L2 = es->kind == FLC_QUERY_MODEL_MLP ? es->hidden * es->out + es->out : 0;
    ev->x = es->x;
    ev->y = es->y;
    uint64_t P = flc_query_evalset_nparams(es);
    ev->update_bytes = P * sizeof(float);
    if (round == 0)
        return flc_err_set(e, FLC_EINVAL, "round 0 is the initial model: accuracy evaluates "
                           "the updates of rounds 1 and later");
    char gj[FLC_NAME_MAX + 1];
    snprintf(gj, sizeof gj, "%s/g", q->job);
    flc_shard_t g = {0};
    int rc = flc_store_get_merged(s, gj, round - 1, 0, &g, NULL, 0);
    if (rc == FLC_ENOTFOUND)
        return flc_err_set(e, FLC_ENOTFOUND, "job %s has no global model of round %u (series "
                           "%s): the clients' models of round %u are that model plus their "
                           "updates", q->job, round - 1, gj, round);
    if (rc != FLC_OK) {
        *e = *flc_store_error(s);
        return rc;
    }
    flc_strlist_t cl = {0};
    uint32_t *shards = NULL;
    size_t ns = 0;
    if (g.offset != 0 || g.count != P) {
        rc = flc_err_set(e, FLC_EDIM, "job %s: the global model of round %u has %llu floats, "
                         "the evaluation set's model %llu", q->job, round - 1,
                         (unsigned long long)g.count, (unsigned long long)P);
        goto out;
    }
    rc = flc_store_list_clients(s, q->job, round, &cl);
    if (rc == FLC_OK || rc == FLC_ENOTFOUND)
        rc = flc_store_list_shards(s, q->job, round, &shards, &ns);
    if (rc != FLC_OK) {
        *e = *flc_store_error(s);
        goto out;
    }
    if (cl.n == 0) {
        rc = flc_err_set(e, FLC_ENOTFOUND, "round %u of job %s lists no clients", round, q->job);
        goto out;
    }
    qsort(cl.items, cl.n, sizeof *cl.items, cmp_str);
    size_t n = cl.n, BH = ev->B * ev->H;
    ev->clients = calloc(n, sizeof *ev->clients);
    ev->fault = calloc(n, sizeof *ev->fault);
    ev->w = malloc(n * sizeof *ev->w);
    ev->Zg = malloc(BH * sizeof *ev->Zg);
    ev->g2 = malloc((ev->L2 + 1) * sizeof *ev->g2);
    ev->D = malloc((n + 1) * BH * sizeof *ev->D);
    ev->S2 = malloc(((n + 1) * ev->L2 + 1) * sizeof *ev->S2);
    if (!ev->clients || !ev->fault || !ev->w || !ev->Zg || !ev->g2 || !ev->D || !ev->S2) {
        rc = flc_err_set(e, FLC_ENOMEM, "out of memory evaluating %zu clients on %zu samples",
                         n, ev->B);
        goto out;
    }
    memset(ev->Zg, 0, BH * sizeof *ev->Zg);
    add_slice(ev, 0, P, g.values, ev->Zg, ev->g2);
    ev->bytes_read += P * sizeof(float);
    char left[600] = "";
    size_t len = 0, nleft = 0;
    for (size_t i = 0; i < n; i++) {
        int r = read_delta(s, q->job, round, shards, ns, cl.items[i], P, ev, ev->n, e);
        if (r < 0) {
            rc = r;
            goto out;
        }
        if (r == 0) { /* incomplete or not finite: named, not evaluated */
            if (len < sizeof left - 80)
                len += (size_t)snprintf(left + len, sizeof left - len, "%s%s", nleft ? ", " : "",
                                        cl.items[i]);
            nleft++;
            continue;
        }
        if ((ev->clients[ev->n] = strdup(cl.items[i])) == NULL) {
            rc = flc_err_set(e, FLC_ENOMEM, "out of memory");
            goto out;
        }
        ev->n++;
    }
    if (ev->n == 0) {
        rc = flc_err_set(e, FLC_ENOTFOUND, "round %u of job %s: no client has a complete, "
                         "finite update to evaluate", round, q->job);
        goto out;
    }
    /* The aggregate last, after the clients kept (it moves into row ev->n). */
    int r = read_delta(s, q->job, round, shards, ns, NULL, P, ev, ev->n, e);
    if (r < 0) {
        rc = r;
        goto out;
    }
    ev->has_agg = r;
    if (nleft && a) {
        char note[720];
        snprintf(note, sizeof note, "round %u: %zu client(s) without a complete, finite update "
                 "left out: %s%s", round, nleft, left, len >= sizeof left - 80 ? ", ..." : "");
        flc_query_answer_note(a, "left_out", note);
    }
    rc = flc_query_client_facts(s, q->job, round, ev->clients, ev->n, ev->w, ev->fault, a, e);
    if (rc == FLC_OK) {
        double *c = calloc(ev->n + 1, sizeof *c);
        rc = c ? flc_query_eval_mix(ev, c, &ev->global_acc, NULL, NULL, NULL) : FLC_ENOMEM;
        free(c);
        if (rc != FLC_OK)
            rc = flc_err_set(e, FLC_ENOMEM, "out of memory");
    }
out:
    flc_shard_release(&g);
    flc_strlist_free(&cl);
    free(shards);
    if (rc != FLC_OK)
        flc_query_eval_free(ev);
    return rc;
}

int flc_query_eval_mix(const flc_query_eval_t *ev, const double *c, double *acc, double *loss,
                       int32_t *pred, float *act)
{
    const size_t B = ev->B, H = ev->H, C = ev->C, BH = B * H;
    float *Z = act ? act : malloc(BH * sizeof *Z);
    float *L = malloc((ev->L2 + 1) * sizeof *L), *lg = malloc(B * C * sizeof *lg);
    if (Z == NULL || L == NULL || lg == NULL) {
        if (!act)
            free(Z);
        free(L), free(lg);
        return FLC_ENOMEM;
    }
    memcpy(Z, ev->Zg, BH * sizeof *Z);
    memcpy(L, ev->g2, ev->L2 * sizeof *L);
    for (size_t i = 0; i <= ev->n; i++) {
        if (c[i] == 0 || (i == ev->n && !ev->has_agg))
            continue;
        cblas_saxpy((int)BH, (float)c[i], ev->D + i * BH, 1, Z, 1);
        if (ev->L2)
            cblas_saxpy((int)ev->L2, (float)c[i], ev->S2 + i * ev->L2, 1, L, 1);
    }
    if (ev->kind == FLC_QUERY_MODEL_MLP) {
        for (size_t k = 0; k < BH; k++)
            Z[k] = Z[k] > 0 ? Z[k] : 0;
        const float *W2 = L, *b2 = L + H * C;
        for (size_t b = 0; b < B; b++)
            memcpy(lg + b * C, b2, C * sizeof *lg);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)B, (int)C, (int)H, 1.0f, Z,
                    (int)H, W2, (int)C, 1.0f, lg, (int)C);
    } else {
        memcpy(lg, Z, B * C * sizeof *lg);
    }
    size_t correct = 0;
    double total = 0;
    for (size_t b = 0; b < B; b++) {
        const float *z = lg + b * C;
        size_t best = 0;
        for (size_t k = 1; k < C; k++)
            if (z[k] > z[best])
                best = k;
        correct += (int32_t)best == ev->y[b];
        if (pred)
            pred[b] = (int32_t)best;
        double mx = z[best], se = 0;
        for (size_t k = 0; k < C; k++)
            se += exp((double)z[k] - mx);
        total += log(se) + mx - (double)z[ev->y[b]];
    }
    if (acc)
        *acc = B ? (double)correct / (double)B : 0;
    if (loss)
        *loss = B ? total / (double)B : 0;
    if (!act)
        free(Z);
    free(L), free(lg);
    return FLC_OK;
}
