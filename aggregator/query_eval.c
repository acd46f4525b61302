/* One round evaluated on the job's evaluation set, decomposed by shard.
 *
 * A client's model of round r is the global model of round r-1 ("<J>/g")
 * plus its update. Both model kinds start with a layer linear in its
 * weights (softmax: the logits; mlp: the hidden pre-activations), so for
 * an update cut into shards, X dW1 is assembled from what each shard's
 * slice of the first layer gives:
 *  - mlp: W1 is unit-major ([hidden x in], ml/model.h), so a shard holding
 *    units j0..j1 computes their columns X dW1[j0..j1, :]^T whole (one
 *    sgemm), and a unit cut by the shard's edge gets a partial dot product
 *    from each of its two shards (an sgemv), added in shard order. A
 *    shard worker moves B x (its units) floats per update, and all shards
 *    together B x H (plus the cut units' second halves) whatever their
 *    number; b1, W2 and b2 move as the later-layer floats of the shard
 *    holding them, and the caller adds b1 before the ReLU;
 *  - softmax: W is input-major ([in x C]): a shard covering rows i0..i1
 *    adds X[:, i0..i1] dW[i0..i1, :] (plus a rank-1 sger for a row cut by
 *    its edge) and b to all C columns: B x C floats per shard.
 * B is chosen so that this is less than the update itself (query_evalq.c).
 *
 * The partials are kept per delta: FedAvg, leave-one-out and accuracy-
 * weighted mixes are linear in the deltas, so flc_query_eval_mix
 * (query_evalmix.c) evaluates any of them from the kept sums without
 * reading an update again.
 *
 * The shard workers (query_evalwork.c) are placed as the Gram's
 * (query_gram.c): with the request's place callback each enters the node
 * owning its shards and reads them there, or replays the shard's cached
 * sums (query_evalcache.h); bytes_moved counts the sums that leave it
 * (docs/queries.md says which bytes). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "aggregator/query_evalcache.h"
#include "aggregator/query_evalwork.h"
#include "aggregator/tracker.h"
#include "base/bigbuf.h"
#include "base/clock.h"
#include "base/log.h"
#include "cache/store_ops.h"

uint64_t flc_query_eval_layer1_end(const flc_query_eval_t *ev)
{
    uint64_t w = (uint64_t)ev->in * ev->H;
    return ev->kind == FLC_QUERY_MODEL_MLP ? w : w + ev->H;
}

void flc_query_eval_cols(const flc_query_eval_t *ev, uint64_t off, uint64_t cnt, size_t *c0,
                         size_t *ncols)
{
    uint64_t fe = flc_query_eval_layer1_end(ev), end = off + cnt < fe ? off + cnt : fe;
    *c0 = 0, *ncols = 0;
    if (cnt == 0 || off >= fe)
        return;
    if (ev->kind != FLC_QUERY_MODEL_MLP) { /* input-major: every column */
        *ncols = ev->H;
        return;
    }
    *c0 = (size_t)(off / ev->in);
    *ncols = (size_t)((end + ev->in - 1) / ev->in) - *c0;
}

/* The mlp's units in model[off .. end) (end within W1) into Z's columns
 * from c0 (row stride ldz): whole units in one sgemm (Z = X dW1^T, beta 0:
 * the products as computed, whatever else the shard holds), a unit cut by
 * the slice's edge as an sgemv over the inputs the slice has. */
static void add_units(const flc_query_eval_t *ev, uint64_t off, uint64_t end, const float *v,
                      size_t c0, size_t ldz, float *Z)
{
    const size_t B = ev->B, in = ev->in;
    uint64_t p = off;
    while (p < end) {
        size_t j = (size_t)(p / in), i = (size_t)(p % in);
        if (i == 0 && p + in <= end) {
            size_t units = (size_t)((end - p) / in);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)B, (int)units, (int)in,
                        1.0f, ev->x, (int)in, v + (p - off), (int)in, 0.0f, Z + (j - c0),
                        (int)ldz);
            p += (uint64_t)units * in;
        } else {
            uint64_t stop = (uint64_t)(j + 1) * in;
            stop = stop < end ? stop : end;
            cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)B, (int)(stop - p), 1.0f, ev->x + i,
                        (int)in, v + (p - off), 1, 0.0f, Z + (j - c0), (int)ldz);
            p = stop;
        }
    }
}

/* Softmax's W (input-major) and b in model[off .. end): row by row, full
 * rows in one sgemm, added to all H columns of Z. */
static void add_rows(const flc_query_eval_t *ev, uint64_t off, uint64_t end, const float *v,
                     float *Z)
{
    const size_t B = ev->B, H = ev->H, in = ev->in;
    const uint64_t w1 = (uint64_t)in * H, b1 = w1 + H;
    const float *X = ev->x;
    uint64_t p = off;
    while (p < end && p < w1) {
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
    for (; p < end && p < b1; p++) {
        float bv = v[p - off];
        size_t h = (size_t)(p - w1);
        for (size_t b = 0; b < B; b++)
            Z[b * H + h] += bv;
    }
}

void flc_query_eval_add_slice(const flc_query_eval_t *ev, uint64_t off, uint64_t cnt,
                              const float *v, float *Z, float *L)
{
    const uint64_t fe = flc_query_eval_layer1_end(ev), end = off + cnt;
    size_t c0, ncols;
    flc_query_eval_cols(ev, off, cnt, &c0, &ncols);
    if (ncols > 0 && ev->kind == FLC_QUERY_MODEL_MLP)
        add_units(ev, off, end < fe ? end : fe, v, c0, ncols, Z);
    else if (ncols > 0)
        add_rows(ev, off, end < fe ? end : fe, v, Z);
    if (end > fe && L != NULL) {
        uint64_t p = off > fe ? off : fe;
        memcpy(L + (p - fe), v + (p - off), (size_t)(end - p) * sizeof *v);
    }
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
    free(ev->clients), free(ev->fault), free(ev->w), free(ev->left_out);
    free(ev->Zg), free(ev->g2), free(ev->S2);
    flc_buf_free(ev->D, ev->D_bytes);
    flc_buf_free(ev->scratch, ev->scratch_bytes);
    memset(ev, 0, sizeof *ev);
}

int flc_query_by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The global model's first-layer products (ev->Zg) and later layers
 * (ev->g2), by a shard worker next to the node that holds it (series gj,
 * round gr, one shard), cached there like a round's partials (its stamp is
 * the merged shard's): a warm query moves B x H products, not the model.
 * Its worker runs beside the round's (global_start, then global_finish). */
typedef struct global {
    flc_query_eval_t gev; /* ev's sizes; its one row is ev's global sums */
    char *rows[1];
    unsigned char got;
    size_t next;
    float *pend;
    flc_track_where_t where;
    flc_query_evwork_t w;
    const char *gj;
    uint32_t gr;
} global_t;

static int global_start(flc_store_t *s, const flc_query_req_t *q, const flc_store_cfg_t *at,
                        flc_query_eval_t *ev, const char *gj, uint32_t gr, uint64_t set_id,
                        global_t *g, flc_err_t *e)
{
    memset(g, 0, sizeof *g);
    g->gev = *ev;
    g->gev.D = ev->Zg;
    g->gev.S2 = ev->g2;
    g->gev.bytes_read = g->gev.bytes_moved = 0;
    g->gj = gj;
    g->gr = gr;
    g->w = (flc_query_evwork_t){.job = gj, .round = gr, .P = ev->update_bytes / sizeof(float),
                                .where = &g->where, .ns = 1, .rows = g->rows, .nrows = 1,
                                .got = &g->got, .next = &g->next, .pend = &g->pend,
                                .ev = &g->gev, .use_cache = !q->no_cache, .set_id = set_id,
                                .names = flc_query_evcache_names(g->rows, 0)};
    int rc = flc_query_eval_start(s, at, q, &g->w, e);
    return rc == FLC_OK ? rc : flc_err_wrap(e, "the global model of round %u (%s): ", gr, gj);
}

static int global_finish(global_t *g, flc_query_eval_t *ev, flc_err_t *e)
{
    int rc = flc_query_eval_finish(&g->w, e);
    free(g->pend);
    if (rc != FLC_OK)
        return flc_err_wrap(e, "the global model of round %u (%s): ", g->gr, g->gj);
    if (g->got != 1)
        return flc_err_set(e, g->got ? FLC_EDATA : FLC_ENOTFOUND, "the global model of round "
                           "%u (%s) is %s", g->gr, g->gj, g->got ? "not finite" : "gone");
    ev->bytes_read += g->gev.bytes_read;
    ev->bytes_moved += g->gev.bytes_moved;
    return FLC_OK;
}

int flc_query_eval_round(flc_store_t *s, const flc_query_req_t *q, const flc_store_cfg_t *at,
                         const flc_query_evalset_t *es, uint32_t round, flc_query_eval_t *ev,
                         Flcache__QueryAnswer *a, flc_err_t *e)
{
    memset(ev, 0, sizeof *ev);
    ev->round = round;
    ev->kind = es->kind;
    ev->in = es->in;
    ev->B = es->n;
    ev->H = es->kind == FLC_QUERY_MODEL_MLP ? es->hidden : es->out;
    ev->C = es->out;
    ev->L2 = es->kind == FLC_QUERY_MODEL_MLP ? es->hidden + es->hidden * es->out + es->out : 0;
    ev->x = es->x;
    ev->y = es->y;
    uint64_t P = flc_query_evalset_nparams(es);
    ev->update_bytes = P * sizeof(float);
    if (round == 0)
        return flc_err_set(e, FLC_EINVAL, "round 0 is the initial model: accuracy evaluates "
                           "the updates of rounds 1 and later");
    char gj[FLC_NAME_MAX + 1];
    snprintf(gj, sizeof gj, "%s/g", q->job);
    uint64_t gstamp = 0; /* is it there? (read next to its node below) */
    int rc = flc_store_merged_stamp(s, gj, round - 1, 0, &gstamp);
    if (rc == FLC_OK && gstamp == 0)
        return flc_err_set(e, FLC_ENOTFOUND, "job %s has no global model of round %u (series "
                           "%s): the clients' models of round %u are that model plus their "
                           "updates", q->job, round - 1, gj, round);
    if (rc != FLC_OK) {
        *e = *flc_store_error(s);
        return rc;
    }
    uint64_t t0 = flc_now_ns();
    flc_strlist_t cl = {0};
    flc_query_evwork_t j = {.job = q->job, .round = round, .P = P, .ev = ev};
    rc = flc_store_list_clients(s, q->job, round, &cl);
    if (rc != FLC_OK && rc != FLC_ENOTFOUND) {
        *e = *flc_store_error(s);
        goto out;
    }
    flc_track_where_t *where = NULL;
    if (cl.n == 0 || flc_track_round(s, q->job, round, &where, &j.ns) != FLC_OK || j.ns == 0) {
        free(where);
        rc = flc_err_set(e, FLC_ENOTFOUND, "round %u of job %s has no client updates", round,
                         q->job);
        goto out;
    }
    j.where = where;
    qsort(cl.items, cl.n, sizeof *cl.items, flc_query_by_name);
    size_t n = cl.n, BH = ev->B * ev->H;
    j.nrows = n + 1;
    j.rows = calloc(n + 1, sizeof *j.rows);
    j.got = calloc((n + 1) * j.ns, 1);
    j.next = calloc(n + 1, sizeof *j.next);
    j.pend = calloc((n + 1) * j.ns, sizeof *j.pend);
    ev->clients = calloc(n, sizeof *ev->clients);
    ev->fault = calloc(n, sizeof *ev->fault);
    ev->w = malloc(n * sizeof *ev->w);
    ev->Zg = calloc(BH, sizeof *ev->Zg);
    ev->g2 = calloc(ev->L2 + 1, sizeof *ev->g2);
    /* (n + 1) x B x H floats, 122 MB at FLStore's size: populated in one
     * call (base/bigbuf.h), not a fault per 4 KiB page as the rows fill */
    ev->D_bytes = (n + 1) * BH * sizeof *ev->D;
    ev->D = flc_buf_alloc(ev->D_bytes);
    ev->scratch_bytes = (flc_query_eval_block_rows(ev) * ev->H + ev->L2 + 1) * sizeof *ev->scratch;
    ev->scratch = flc_buf_alloc(ev->scratch_bytes);
    ev->S2 = calloc((n + 1) * ev->L2 + 1, sizeof *ev->S2);
    if (!j.rows || !j.got || !j.next || !j.pend || !ev->clients || !ev->fault || !ev->w ||
        !ev->Zg || !ev->g2 || !ev->D || !ev->S2 || !ev->scratch) {
        rc = flc_err_set(e, FLC_ENOMEM, "out of memory evaluating %zu clients on %zu samples",
                         n, ev->B);
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        j.rows[i] = cl.items[i];
    j.use_cache = !q->no_cache;
    j.names = flc_query_evcache_names(j.rows, n);
    j.set_id = flc_query_evcache_set_id(ev->kind, ev->in, ev->H, ev->C, ev->L2, ev->B, ev->x,
                                        ev->y);
    /* The global model's worker beside the round's: both read and compute
     * at once (one after the other, the global's 44.5 MB read and sgemm
     * at FLStore's size were a fifth of a cold query). */
    global_t *g = malloc(sizeof *g);
    if (g == NULL) {
        rc = flc_err_set(e, FLC_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = global_start(s, q, at, ev, gj, round - 1, j.set_id, g, e)) != FLC_OK) {
        free(g);
        goto out;
    }
    flc_err_t ge = {0};
    uint64_t t1 = flc_now_ns();
    rc = flc_query_eval_shards(s, at, q, &j, e);
    uint64_t t2 = flc_now_ns();
    int grc = global_finish(g, ev, &ge);
    uint64_t t3 = flc_now_ns();
    free(g);
    if (rc == FLC_OK && grc != FLC_OK) {
        rc = grc;
        *e = ge;
    }
    if (rc != FLC_OK)
        goto out;
    /* Keep the rows read on every shard, finite; compact them in order. */
    char left[600] = "";
    size_t len = 0, nleft = 0;
    for (size_t r = 0; r <= n; r++) {
        int whole = 1;
        for (size_t k = 0; k < j.ns; k++)
            whole &= j.got[r * j.ns + k] == 1;
        if (r == n) { /* the aggregate, last after the clients kept */
            ev->has_agg = whole;
            if (ev->n != n) {
                memmove(ev->D + ev->n * BH, ev->D + n * BH, BH * sizeof *ev->D);
                memmove(ev->S2 + ev->n * ev->L2, ev->S2 + n * ev->L2, ev->L2 * sizeof *ev->S2);
            }
            break;
        }
        if (!whole) { /* incomplete or not finite: named, not evaluated */
            if (len < sizeof left - 80)
                len += (size_t)snprintf(left + len, sizeof left - len, "%s%s", nleft ? ", " : "",
                                        cl.items[r]);
            nleft++;
            continue;
        }
        if ((ev->clients[ev->n] = strdup(cl.items[r])) == NULL) {
            rc = flc_err_set(e, FLC_ENOMEM, "out of memory");
            goto out;
        }
        if (ev->n != r) {
            memmove(ev->D + ev->n * BH, ev->D + r * BH, BH * sizeof *ev->D);
            memmove(ev->S2 + ev->n * ev->L2, ev->S2 + r * ev->L2, ev->L2 * sizeof *ev->S2);
        }
        ev->n++;
    }
    if (ev->n == 0) {
        rc = flc_err_set(e, FLC_ENOTFOUND, "round %u of job %s: no client has a complete, "
                         "finite update to evaluate", round, q->job);
        goto out;
    }
    if (nleft) {
        char note[720];
        snprintf(note, sizeof note, "round %u: %zu client(s) without a complete, finite update "
                 "left out: %s%s", round, nleft, left, len >= sizeof left - 80 ? ", ..." : "");
        if (a)
            flc_query_answer_note(a, "left_out", note);
        ev->left_out = strdup(note); /* NULL without memory: only a cached value lacks it */
    }
    rc = flc_query_client_facts(s, q->job, round, ev->clients, ev->n, ev->w, ev->fault, a, e);
    if (rc == FLC_OK) {
        double *c = calloc(ev->n + 1, sizeof *c);
        rc = c ? flc_query_eval_mix(ev, c, &ev->global_acc, NULL, NULL, NULL) : FLC_ENOMEM;
        free(c);
        if (rc != FLC_OK)
            rc = flc_err_set(e, FLC_ENOMEM, "out of memory");
    }
    FLC_DEBUG("evaluation: round %u of job %s: %zu rows x %zu shards listed and buffers made "
              "in %.1f ms, shard workers %.1f ms, the global model's %.1f ms more, rows kept "
              "and facts in %.1f ms", round, q->job, n + 1, j.ns, (double)(t1 - t0) / 1e6,
              (double)(t2 - t1) / 1e6, (double)(t3 - t2) / 1e6,
              (double)(flc_now_ns() - t3) / 1e6);
out:
    flc_strlist_free(&cl);
    free((void *)j.where);
    free(j.rows);
    free(j.got);
    for (size_t i = 0; j.pend && i < j.nrows * j.ns; i++)
        free(j.pend[i]); /* rows with a missing shard never fold theirs */
    free(j.pend);
    free(j.next);
    if (rc != FLC_OK)
        flc_query_eval_free(ev);
    return rc;
}
