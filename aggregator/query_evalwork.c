/* The shard workers of an evaluation query (query_evalwork.h): placed as
 * the Gram's (query_gram.c), each takes shards off the plan, enters the node
 * that owns them when the request places workers, and there either replays
 * the shard's cached partial sums (query_evalcache.h) or reads every delta's
 * slice, computes them (and caches them); the sums are folded into the
 * shared rows in shard order. In model mode they instead add the weighted
 * slices of the members' updates into the model, each shard's range its own
 * (disjoint: no lock), so only the mixed slices leave the nodes. */
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include "aggregator/blas_workers.h"
#include "aggregator/query_evalcache.h"
#include "aggregator/query_evalwork.h"
#include "aggregator/reduce_scatter.h"
#include "base/bigbuf.h"
#include "cache/store_ops.h"

typedef flc_query_evwork_t eval_job_t;



/* Adds shard k's sums of row r (Z: B x H, L: the later-layer floats) into
 * the row, under j->lock, in shard order whatever order the workers finish
 * in: float sums depend on their order, and placed and unplaced (or
 * differently timed) runs must give the same bits. A shard ahead of its
 * turn waits in a copy. Softmax's rows only, whose every column is every
 * shard's (its W is input-major); an mlp's go through fold_units. */
static int fold(eval_job_t *j, size_t r, size_t k, const float *Z, const float *L)
{
    flc_query_eval_t *ev = j->ev;
    size_t BH = ev->B * ev->H;
    if (j->next[r] != k) {
        float *c = j->nspare ? j->spare[--j->nspare] : malloc((BH + ev->L2 + 1) * sizeof *c);
        if (c == NULL)
            return FLC_ENOMEM;
        memcpy(c, Z, BH * sizeof *c);
        memcpy(c + BH, L, ev->L2 * sizeof *c);
        j->pend[r * j->ns + k] = c;
        return FLC_OK;
    }
    for (;;) {
        cblas_saxpy((int)BH, 1.0f, Z, 1, ev->D + r * BH, 1);
        if (ev->L2)
            cblas_saxpy((int)ev->L2, 1.0f, L, 1, ev->S2 + r * ev->L2, 1);
        float **done = &j->pend[r * j->ns + j->next[r]];
        if (*done != NULL) { /* a copy just folded: kept for the next wait */
            float **sp = j->nspare < j->capspare
                             ? j->spare
                             : realloc(j->spare, (j->capspare * 2 + 8) * sizeof *sp);
            if (sp != NULL && sp != j->spare)
                j->spare = sp, j->capspare = j->capspare * 2 + 8;
            if (sp != NULL)
                j->spare[j->nspare++] = *done;
            else
                free(*done);
            *done = NULL;
        }
        size_t nx = ++j->next[r];
        if (nx >= j->ns || j->pend[r * j->ns + nx] == NULL)
            return FLC_OK;
        Z = j->pend[r * j->ns + nx];
        L = Z + BH;
    }
}

/* An mlp's slice of row r from shard k: the columns between its first and
 * last are units no other slice touches (ml/model.h: unit-major W1), added
 * into the row's zeros without a lock or an order (0 + x is x whoever adds
 * it); the first and last column, which a neighbouring slice may share,
 * are kept aside and added in shard order at the end (edge_sums), so the
 * bits do not depend on which worker came first. The later-layer floats
 * (b1, W2, b2) are each in one slice only: the others add exact zeros. */
static void fold_units(eval_job_t *j, size_t r, size_t k, const float *Z, const float *L,
                       size_t c0, size_t ncols, int has_l)
{
    flc_query_eval_t *ev = j->ev;
    const size_t B = ev->B, H = ev->H;
    float *row = ev->D + r * B * H + c0;
    for (size_t b = 0; ncols > 2 && b < B; b++)
        cblas_saxpy((int)(ncols - 2), 1.0f, Z + b * ncols + 1, 1, row + b * H + 1, 1);
    size_t at = (r * j->ns + k) * 2;
    for (size_t e = 0; e < 2; e++) {
        size_t c = e == 0 ? 0 : ncols - 1;
        int used = ncols > e; /* a slice of one column keeps it once */
        j->edge_col[at + e] = used ? (uint32_t)(c0 + c) : UINT32_MAX;
        for (size_t b = 0; used && b < B; b++)
            j->edge[(at + e) * B + b] = Z[b * ncols + c];
    }
    if (has_l && ev->L2) {
        pthread_mutex_lock(&j->lock);
        cblas_saxpy((int)ev->L2, 1.0f, L, 1, ev->S2 + r * ev->L2, 1);
        pthread_mutex_unlock(&j->lock);
    }
}

/* The kept edge columns into their rows, shard by shard in order. */
static void edge_sums(eval_job_t *j)
{
    flc_query_eval_t *ev = j->ev;
    const size_t B = ev->B, H = ev->H;
    for (size_t r = 0; r < j->nrows; r++)
        for (size_t k = 0; k < j->ns; k++)
            for (size_t e = 0; e < 2; e++) {
                size_t at = (r * j->ns + k) * 2 + e;
                if (j->edge_col[at] == UINT32_MAX)
                    continue;
                float *d = ev->D + r * B * H + j->edge_col[at];
                for (size_t b = 0; b < B; b++)
                    d[b * H] += j->edge[at * B + b];
            }
}

/* Row r of shard k read (or replayed from the cache): its sums into the
 * row, in shard order, and the bytes it stands for. Z and L are the
 * worker's (fold keeps a copy of what must wait). */
static int take_row(eval_job_t *j, size_t r, size_t k, const flc_query_evrow_t *w,
                    uint64_t read, float *Z, float *L)
{
    flc_query_eval_t *ev = j->ev;
    size_t ncols = w->touches ? w->ncols : 0;
    if (w->status == 1 && j->edge != NULL)
        fold_units(j, r, k, Z, L, w->c0, ncols, w->has_l);
    pthread_mutex_lock(&j->lock);
    int rc = FLC_OK;
    if (w->status == 1 && j->edge == NULL)
        rc = fold(j, r, k, Z, L);
    if (rc == FLC_OK && w->status != 0)
        j->got[r * j->ns + k] = w->status;
    ev->bytes_read += read;
    /* What leaves the node: B x ncols products when the slice touches the
     * first layer, and its later-layer floats. */
    if (rc == FLC_OK && w->status == 1)
        ev->bytes_moved += (ev->B * ncols + w->later) * sizeof(float);
    pthread_mutex_unlock(&j->lock);
    return rc;
}

/* Shard k from its cached partials (query_evalcache.h) when they fit:
 * FLC_ENOTFOUND when they do not (the caller computes). */
static int eval_cached(flc_store_t *s, eval_job_t *j, size_t k, const flc_query_evkey_t *key,
                       float *Z, float *L, flc_err_t *e)
{
    flc_query_eval_t *ev = j->ev;
    flc_query_evrow_t *rows = calloc(j->nrows, sizeof *rows);
    char *blob = NULL;
    size_t len = 0, cap = 0;
    if (rows == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    int rc = flc_query_evcache_get(s, j->job, j->round, j->where[k].shard, key, &blob, &len,
                                   &cap, rows);
    for (size_t r = 0; rc == FLC_OK && r < j->nrows; r++) {
        const flc_query_evrow_t *w = &rows[r];
        if (w->status == 1 && w->Z == NULL) /* zeros where the slice has none, as computed */
            memset(Z, 0, ev->B * ev->H * sizeof *Z);
        if (w->status == 1 && w->L == NULL)
            memset(L, 0, (ev->L2 + 1) * sizeof *L);
        /* the cached sums are folded where they were read (fold copies what waits) */
        if (take_row(j, r, k, w, r == 0 ? len : 0, w->Z ? (float *)w->Z : Z,
                     w->L ? (float *)w->L : L) != FLC_OK)
            rc = flc_err_set(e, FLC_ENOMEM, "out of memory");
    }
    flc_big_free(blob, cap);
    free(rows);
    return rc;
}

/* The worker's buffer for the updates it reads, kept from one read to the
 * next (a fresh 7-45 MB malloc per read faulted every page in again: a
 * third of a cold evaluation's read time); grown when a read did not fit. */
typedef struct readbuf {
    float *v;
    size_t cap; /* floats */
} readbuf_t;

static void readbuf_fit(readbuf_t *rb, uint64_t count)
{
    if (count <= rb->cap)
        return;
    flc_buf_free(rb->v, rb->cap * sizeof(float));
    rb->cap = (size_t)count;
    rb->v = flc_buf_alloc(rb->cap * sizeof(float));
    if (rb->v == NULL)
        rb->cap = 0; /* the store then allocates per read */
}

/* Row `who`'s slice on `shard` (NULL: the series' merged shard) into rb
 * when it fits there. */
static int read_row(flc_store_t *s, const eval_job_t *j, uint32_t shard, const char *who,
                    flc_shard_t *sh, const readbuf_t *rb)
{
    return who ? flc_store_get_update(s, j->job, j->round, shard, who, sh, rb->v, rb->cap)
               : flc_store_get_merged(s, j->job, j->round, shard, sh, rb->v, rb->cap);
}

/* Direct model mode: shard k read straight into its place in the model
 * (a cached model's pieces: 44.5 MB through an intermediate buffer and a
 * sum took 170 ms on the testbed, this is a read). */
static int direct_shard(flc_store_t *s, eval_job_t *j, size_t k, flc_err_t *e)
{
    uint32_t shard = j->where[k].shard;
    uint64_t off, cnt;
    flc_rs_shard_range(j->P, (uint32_t)j->ns, shard, &off, &cnt);
    readbuf_t in = {.v = j->model + off, .cap = (size_t)cnt};
    flc_shard_t sh = {0};
    int rc = read_row(s, j, shard, j->rows[0], &sh, &in);
    if (rc != FLC_OK) {
        *e = *flc_store_error(s);
        return rc;
    }
    if (sh.offset != off || sh.count != cnt || sh.model_size != j->P) {
        flc_shard_release(&sh);
        return flc_err_set(e, FLC_EDIM, "round %u of %s, shard %u: floats %llu..%llu of %llu, "
                           "not %llu..%llu of %llu", j->round, j->job, shard,
                           (unsigned long long)sh.offset,
                           (unsigned long long)(sh.offset + sh.count),
                           (unsigned long long)sh.model_size, (unsigned long long)off,
                           (unsigned long long)(off + cnt), (unsigned long long)j->P);
    }
    if (sh.values != in.v) /* the store read it elsewhere (it did not fit, or encoded) */
        memcpy(in.v, sh.values, cnt * sizeof *in.v);
    flc_shard_release(&sh);
    pthread_mutex_lock(&j->lock);
    j->ev->bytes_read += cnt * sizeof(float);
    j->ev->bytes_moved += cnt * sizeof(float);
    pthread_mutex_unlock(&j->lock);
    return FLC_OK;
}

/* Model mode: shard k's slice of sum_r coef[r] x update_r into j->model,
 * members in row order (the same sums, element by element, whatever order
 * the shards come in); a NULL row is the series' merged shard (the global
 * model, read next to its node like an update). The slice is this
 * shard's alone: no lock. */
static int model_shard(flc_store_t *s, eval_job_t *j, size_t k, readbuf_t *rb, flc_err_t *e)
{
    if (j->direct)
        return direct_shard(s, j, k, e);
    uint32_t shard = j->where[k].shard;
    uint64_t read = 0, moved = 0;
    for (size_t r = 0; r < j->nrows; r++) {
        if (j->coef[r] == 0)
            continue;
        const char *who = j->rows[r];
        flc_shard_t sh = {0};
        int rc = read_row(s, j, shard, who, &sh, rb);
        if (rc != FLC_OK) {
            *e = *flc_store_error(s);
            return rc;
        }
        if (sh.offset > j->P || sh.count > j->P - sh.offset) {
            flc_shard_release(&sh);
            return flc_err_set(e, FLC_EDIM, "round %u, %s%s, shard %u: floats %llu.. "
                               "%llu of a model of %llu", j->round, who ? "client " : "",
                               who ? who : "the merged model", shard,
                               (unsigned long long)sh.offset,
                               (unsigned long long)(sh.offset + sh.count),
                               (unsigned long long)j->P);
        }
        float *m = j->model + sh.offset, c = (float)j->coef[r];
        for (uint64_t x = 0; x < sh.count; x++)
            m[x] += c * sh.values[x];
        read += sh.count * sizeof(float);
        moved = sh.count * sizeof(float); /* the mixed slice, once */
        uint64_t count = sh.count;
        flc_shard_release(&sh);
        readbuf_fit(rb, count);
    }
    pthread_mutex_lock(&j->lock);
    j->ev->bytes_read += read;
    j->ev->bytes_moved += moved;
    pthread_mutex_unlock(&j->lock);
    return FLC_OK;
}

static int eval_shard(flc_store_t *s, eval_job_t *j, size_t k, float *Z, float *L,
                      readbuf_t *rb, flc_err_t *e)
{
    if (j->model != NULL)
        return model_shard(s, j, k, rb, e);
    flc_query_eval_t *ev = j->ev;
    uint32_t shard = j->where[k].shard;
    uint64_t first = flc_query_eval_layer1_end(ev);
    size_t n = j->nrows - 1;
    /* The stamps are taken before the updates are read, as the Gram's: an
     * update rewritten in between leaves a value that no longer fits. */
    uint64_t *stamps = j->use_cache ? calloc(n + 1, sizeof *stamps) : NULL;
    flc_query_evkey_t key = {.set_id = j->set_id, .names = j->names, .nrows = j->nrows,
                             .B = ev->B, .H = ev->H, .L2 = ev->L2, .stamps = stamps};
    flc_query_evcache_t wr = {0};
    int caching = stamps != NULL &&
                  flc_store_update_stamps(s, j->job, j->round, shard, j->rows, n, stamps) ==
                      FLC_OK &&
                  flc_store_merged_stamp(s, j->job, j->round, shard, &stamps[n]) == FLC_OK;
    if (caching) {
        int rc = eval_cached(s, j, k, &key, Z, L, e);
        if (rc != FLC_ENOTFOUND) {
            free(stamps);
            return rc;
        }
        caching = flc_query_evcache_begin(&wr, &key) == FLC_OK;
    }
    free(stamps);
    uint64_t read_bytes = 0; /* of the updates, to weigh the cache against them */
    for (size_t r = 0; r < j->nrows; r++) {
        const char *who = j->rows[r];
        flc_shard_t sh = {0};
        int rc = read_row(s, j, shard, who, &sh, rb);
        if (rc == FLC_ENOTFOUND)
            continue; /* status 0 in the cache too */
        if (rc != FLC_OK) {
            *e = *flc_store_error(s);
            flc_query_evcache_free(&wr);
            return rc;
        }
        if (sh.model_size != j->P || sh.offset > j->P || sh.count > j->P - sh.offset) {
            flc_shard_release(&sh);
            flc_query_evcache_free(&wr);
            return flc_err_set(e, FLC_EDIM, "round %u, %s%s, shard %u: a model of %llu floats "
                               "(offset %llu, %llu floats), the evaluation set's model has %llu",
                               j->round, who ? "client " : "the aggregate", who ? who : "",
                               shard, (unsigned long long)sh.model_size,
                               (unsigned long long)sh.offset, (unsigned long long)sh.count,
                               (unsigned long long)j->P);
        }
        flc_query_evrow_t w = {.status = 2};
        if (flc_find_nonfinite(sh.values, sh.count) < 0) {
            size_t c0, ncols;
            flc_query_eval_cols(ev, sh.offset, sh.count, &c0, &ncols);
            memset(Z, 0, ev->B * ncols * sizeof *Z);
            memset(L, 0, (ev->L2 + 1) * sizeof *L);
            flc_query_eval_add_slice(ev, sh.offset, sh.count, sh.values, Z, ev->L2 ? L : NULL);
            w.status = 1;
            w.later = sh.offset + sh.count > first
                          ? sh.offset + sh.count - (sh.offset > first ? sh.offset : first)
                          : 0;
            w.touches = ncols > 0;
            w.c0 = (uint32_t)c0;
            w.ncols = (uint32_t)ncols;
            w.has_l = w.later > 0 && ev->L2 > 0;
            w.Z = Z;
            w.L = L;
        }
        read_bytes += sh.count * sizeof(float);
        if (caching) /* before the fold, which may keep Z */
            flc_query_evcache_row(&wr, r, &w);
        rc = take_row(j, r, k, &w, sh.count * sizeof(float), Z, L);
        uint64_t count = sh.count;
        flc_shard_release(&sh); /* not rb's: only what the store allocated */
        readbuf_fit(rb, count);
        if (rc != FLC_OK) {
            flc_query_evcache_free(&wr);
            return flc_err_set(e, FLC_ENOMEM, "out of memory");
        }
    }
    /* Kept only when reading the sums moves at most half the bytes of
     * reading the updates again: with the default sample count the sums
     * are about as big as the updates (eval_samples), and a warm query
     * then read as much as a cold one and was slower (FLStore's setting,
     * --hidden 14000: 2.9 s cached against 1.9 s recomputed). */
    if (caching && flc_query_evcache_len(&wr) * 2 <= read_bytes)
        flc_query_evcache_put(s, j->job, j->round, shard, &wr);
    else
        flc_query_evcache_free(&wr);
    return FLC_OK;
}

static void *eval_worker(void *p)
{
    eval_job_t *j = p;
    flc_err_t e = {0};
    flc_store_opts_t opts = {0};
    if (j->opts != NULL)
        opts = *j->opts;
    flc_store_t *s = NULL;
    flc_url_t caller_ep = {0};
    readbuf_t rb = {0};
    /* the round's shards are P / ns floats, give or take one */
    readbuf_fit(&rb, j->P / (j->ns ? j->ns : 1) + 1);
    float *Z = malloc(j->ev->B * j->ev->H * sizeof *Z);
    float *L = malloc((j->ev->L2 + 1) * sizeof *L);
    int rc = Z && L ? flc_url_parse(j->url, &caller_ep, &e)
                    : flc_err_set(&e, FLC_ENOMEM, "out of memory");
    long grp = -1;
    while (rc == FLC_OK) {
        pthread_mutex_lock(&j->lock);
        long prev = grp;
        long k = j->rc == FLC_OK ? flc_query_plan_take(&j->plan, &grp) : -1;
        pthread_mutex_unlock(&j->lock);
        if (k < 0)
            break;
        /* next to the node, as the Gram workers go */
        rc = flc_query_worker_store(j->place, &j->plan, grp, prev, &caller_ep, j->url, j->opts,
                                    &opts, -1, &s, &e);
        if (rc == FLC_OK)
            rc = eval_shard(s, j, (size_t)k, Z, L, &rb, &e);
    }
    pthread_mutex_lock(&j->lock);
    if (rc != FLC_OK && j->rc == FLC_OK) {
        j->rc = rc;
        j->err = e;
    }
    pthread_mutex_unlock(&j->lock);
    free(Z), free(L);
    flc_buf_free(rb.v, rb.cap * sizeof(float));
    flc_store_close(s);
    return NULL;
}

/* Runs the workers over every shard of the round for the rows of j. */
int flc_query_eval_start(flc_store_t *s, const flc_store_cfg_t *at, const flc_query_req_t *q,
                         eval_job_t *j, flc_err_t *e)
{
    j->url = at != NULL ? at->url : NULL;
    j->opts = at != NULL ? &at->opts : NULL;
    j->started = 0;
    if (j->url == NULL) { /* s's own server, with its credentials */
        if (flc_store_url_full(s, j->own, sizeof j->own) != FLC_OK)
            return flc_err_set(e, FLC_EINVAL, "the URL of %s is too long for the shard "
                               "workers", flc_store_url(s));
        j->url = j->own;
    }
    j->place = &q->place;
    int placed = q->place.enter != NULL;
    if (flc_query_plan_make(s, j->job, j->round, j->where, j->ns, placed, &j->plan, e) !=
        FLC_OK)
        return e->code;
    placed = j->plan.ngroups > 0 && j->plan.addr[0][0] != '\0';
    pthread_mutex_init(&j->lock, NULL);
    if (j->model == NULL && j->ev->kind == FLC_QUERY_MODEL_MLP) {
        j->edge = malloc(j->nrows * j->ns * 2 * j->ev->B * sizeof *j->edge);
        j->edge_col = malloc(j->nrows * j->ns * 2 * sizeof *j->edge_col);
        if (j->edge == NULL || j->edge_col == NULL) {
            free(j->edge), free(j->edge_col);
            j->edge = NULL, j->edge_col = NULL;
            pthread_mutex_destroy(&j->lock);
            flc_query_plan_free(&j->plan);
            return flc_err_set(e, FLC_ENOMEM, "out of memory");
        }
        memset(j->edge_col, 0xff, j->nrows * j->ns * 2 * sizeof *j->edge_col);
    }
    /* Placed: one worker per node (as the Gram's: a node's redis-server
     * answers one read at a time, and the sgemms share the machine's
     * cores); unplaced: min(S, 4). */
    int nt = q->threads > 0 ? q->threads
             : placed       ? (int)j->plan.ngroups
                            : (j->ns < 4 ? (int)j->ns : 4);
    nt = nt > 64 ? 64 : nt;
    j->blas_pool = nt;
    flc_blas_workers_begin(nt);
    for (int t = 0; t < nt; t++)
        if (pthread_create(&j->th[j->started], NULL, eval_worker, j) == 0)
            j->started++;
    if (j->started == 0 && !placed)
        eval_worker(j);
    else if (j->started == 0)
        j->rc = flc_err_set(&j->err, FLC_ENOMEM, "no thread for the shard workers");
    return FLC_OK;
}

int flc_query_eval_finish(eval_job_t *j, flc_err_t *e)
{
    for (int t = 0; t < j->started; t++)
        pthread_join(j->th[t], NULL);
    j->started = 0;
    flc_blas_workers_end(j->blas_pool);
    j->blas_pool = 0;
    if (j->edge != NULL && j->rc == FLC_OK)
        edge_sums(j);
    free(j->edge), free(j->edge_col);
    j->edge = NULL, j->edge_col = NULL;
    pthread_mutex_destroy(&j->lock);
    flc_query_plan_free(&j->plan);
    for (size_t i = 0; i < j->nspare; i++)
        free(j->spare[i]);
    free(j->spare);
    j->spare = NULL;
    j->nspare = j->capspare = 0;
    if (j->rc != FLC_OK)
        *e = j->err;
    return j->rc;
}

int flc_query_eval_shards(flc_store_t *s, const flc_store_cfg_t *at, const flc_query_req_t *q,
                          eval_job_t *j, flc_err_t *e)
{
    int rc = flc_query_eval_start(s, at, q, j, e);
    return rc != FLC_OK ? rc : flc_query_eval_finish(j, e);
}
