/* The shard workers of one round's evaluation (query_evalwork.c), shared by
 * the evaluation (query_eval.c: every delta's first-layer sums) and the
 * model a personalize query returns (a weighted mix of updates, built
 * shard by shard next to the data, so only the mixed slices move). */
#ifndef FLC_AGGREGATOR_QUERY_EVALWORK_H
#define FLC_AGGREGATOR_QUERY_EVALWORK_H

#include <pthread.h>

#include "aggregator/query_internal.h"

/* The shard workers of one round's evaluation, placed as the Gram's
 * (query_gram.c): each takes shards off the plan, enters the node that owns
 * them when the request places workers, reads every delta's slice there and
 * adds its first-layer sums into the shared rows under the lock. Only these
 * sums (and the later-layer floats) leave the node. */
typedef struct flc_query_evwork {
    const char *url, *job;
    const flc_store_opts_t *opts;
    const flc_place_t *place;
    uint32_t round;
    uint64_t P;
    const flc_track_where_t *where;
    size_t ns;
    flc_query_plan_t plan;
    char **rows;          /* nrows - 1 client names, then NULL: the aggregate */
    size_t nrows;
    unsigned char *got;   /* nrows x ns: 1 read, 2 not finite, 0 missing */
    size_t *next;         /* per row: the shard (index into where) to fold next */
    float **pend;         /* nrows x ns: a shard's sums waiting for the ones before */
    float **spare;        /* folded copies kept for the next wait (fresh pages fault one by
                           * one on these VMs); freed by flc_query_eval_shards */
    size_t nspare, capspare;
    float *edge;          /* mlp: nrows x ns x 2 x B, each slice's first and last column
                           * (units other slices may share), added in shard order once
                           * the workers are done; made and freed by
                           * flc_query_eval_shards */
    uint32_t *edge_col;   /* nrows x ns x 2: their columns, UINT32_MAX: none */
    flc_query_eval_t *ev; /* D, S2, bytes: under lock */
    int use_cache;        /* read and write the shards' cached partials */
    uint64_t set_id, names; /* what they must have been computed for */
    pthread_mutex_t lock;
    int rc;
    flc_err_t err;
    float *model;         /* model mode: receives sum_r coef[r] x row r's update */
    const double *coef;   /* model mode: per row (rows are clients only) */
    int direct;           /* model mode, one row of coefficient 1 whose shard k holds
                           * floats flc_rs_shard_range(P, ns, k): read into the model
                           * where they belong, no buffer and no sum (where[k].shard
                           * must be k) */
    pthread_t th[64];     /* the workers started, between _start and _finish */
    int started;
    int blas_pool;        /* the pool's size given to flc_blas_workers_begin */
    char own[1200];       /* the URL they connect to when at is NULL */
} flc_query_evwork_t;

/* Runs the workers over every shard of the round (j->where, j->ns) for the
 * rows of j, placed as q asks (q->place, q->threads; at: where they
 * connect, NULL: s's own server). Fills the rest of j. */
int flc_query_eval_shards(flc_store_t *s, const flc_store_cfg_t *at, const flc_query_req_t *q,
                          flc_query_evwork_t *j, flc_err_t *e);

/* flc_query_eval_shards in two halves, so that two jobs' workers run at
 * once (the global model's beside the round's): _start plans (with s) and
 * starts the workers; _finish waits for them and returns what
 * flc_query_eval_shards would. s is not used in between. After a _start
 * that failed, no _finish. */
int flc_query_eval_start(flc_store_t *s, const flc_store_cfg_t *at, const flc_query_req_t *q,
                         flc_query_evwork_t *j, flc_err_t *e);
int flc_query_eval_finish(flc_query_evwork_t *j, flc_err_t *e);

/* Adds the slice v = model[off .. off+cnt) to the first-layer products Z:
 * B rows of the ncols columns flc_query_eval_cols gives it (row stride
 * ncols), and copies its later-layer floats into L (ev->L2 floats; NULL
 * when the slice has none): query_eval.c. */
void flc_query_eval_add_slice(const flc_query_eval_t *ev, uint64_t off, uint64_t cnt,
                              const float *v, float *Z, float *L);

#endif
