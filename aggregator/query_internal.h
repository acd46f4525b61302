/* Private to aggregator/query*.c: answer building and the per-kind runners. */
#ifndef FLC_AGGREGATOR_QUERY_INTERNAL_H
#define FLC_AGGREGATOR_QUERY_INTERNAL_H

#include "aggregator/query.h"
#include "aggregator/tracker.h"
#include "cache/url.h"

/* A new empty answer with numeric then text columns; NULL when out of memory. */
Flcache__QueryAnswer *flc_query_answer_new(const char *job, const char *kind,
                                           const char *const *num, size_t nnum,
                                           const char *const *text, size_t ntext);

/* Appends a row: vals has num_numeric values, text the text columns (NULL
 * entries print as ""). */
int flc_query_answer_row(Flcache__QueryAnswer *a, const char *key, const double *vals,
                         const char *const *text);
void flc_query_answer_summary(Flcache__QueryAnswer *a, const char *key, double value);
void flc_query_answer_note(Flcache__QueryAnswer *a, const char *key, const char *text);

/* The rounds of req in [from, to] that the job has (ascending, malloc'd);
 * FLC_ENOTFOUND naming the job or the range when there are none. */
int flc_query_rounds(flc_store_t *s, const flc_query_req_t *req, uint32_t **rounds, size_t *n,
                     flc_err_t *e);

/* The runners: each builds *out for its kind. */
int flc_query_history(flc_store_t *s, const flc_query_req_t *q, Flcache__QueryAnswer **out,
                      flc_err_t *e);
int flc_query_client(flc_store_t *s, const flc_query_req_t *q, Flcache__QueryAnswer **out,
                     flc_err_t *e);
int flc_query_schedule(flc_store_t *s, const flc_query_req_t *q, Flcache__QueryAnswer **out,
                       flc_err_t *e);
/* at: where the shard workers connect and with which store options (see
 * flc_query_gram); flc_query_run fills it. */
int flc_query_vectors(flc_store_t *s, const flc_query_req_t *q, const flc_store_cfg_t *at,
                      Flcache__QueryAnswer **out, flc_err_t *e);
/* norms, outliers, clusters over several rounds, per client (query_range.c);
 * similarity refuses. */
int flc_query_vectors_range(flc_store_t *s, const flc_query_req_t *q, const flc_store_cfg_t *at,
                            const uint32_t *rounds, size_t nr, Flcache__QueryAnswer **out,
                            flc_err_t *e);
int flc_query_personalize(flc_store_t *s, const flc_query_req_t *q, const flc_store_cfg_t *at,
                          Flcache__QueryAnswer **out, flc_err_t *e);

/* Leaves the clients whose update holds a NaN or Inf (g->bad, or a
 * non-finite diagonal) out of g (query_facts.c): g->n, g->clients and g->G
 * shrink; keep[0..new n] are the indexes before (keep has g->n + 1
 * entries; the aggregate stays last). The clients left out are named in a's
 * note "non_finite" when a is not NULL. Returns how many were left out. */
size_t flc_query_drop_non_finite(flc_query_gram_t *g, uint32_t round, size_t *keep,
                                 Flcache__QueryAnswer *a);

/* Ground truth of a simulation (labels["fault"], NULL when none) and
 * weights (num_samples, 1 when unknown) of the n clients named in
 * clients (query_facts.c). a's note "no_metadata" names those without. */
int flc_query_client_facts(flc_store_t *s, const char *job, uint32_t round, char *const *clients,
                           size_t n, double *w, char **fault, Flcache__QueryAnswer *a,
                           flc_err_t *e);

/* ---- Gram partials in bounded memory (query_gram_rows.c) ----------------- */

/* P[i*m+j] += the float sums of M's rows i, j (j >= i: the upper triangle)
 * over cols columns, 4096 at a time (into Gb, m x m: an sgemv per row or
 * one ssyrk), each block's sums added in double: the one kernel of every
 * Gram, so whole rows and windows of them give the same bits. M is m rows
 * of stride ld.
 * nonfinite (NULL: not kept): [i] = 1 when a block's sum of row i's squares
 * is NaN or Inf. */
void flc_query_gram_add_blocks(const float *M, size_t m, size_t ld, size_t cols, float *Gb,
                               double *P, unsigned char *nonfinite);

/* Columns per window for m rows of cnt floats within budget bytes, tails
 * of them kept by the reader, and m rows of a window within 2 MiB (unless
 * that leaves a row fewer than 16384 floats): a multiple of 4096 (at least
 * one), at most cnt. */
size_t flc_query_gram_window(size_t budget, size_t m, size_t tails, size_t cnt);

/* Shard `shard`'s partial of the g->n clients and the merged shard into P
 * ((n+1)^2, zeroed by the caller; both triangles), read in windows within
 * g->mem_budget (0: flc_query_mem_budget()) into g->scratch; bad[i] = 1 for
 * a client whose update holds a NaN or Inf (its row and column are zero);
 * g->bytes_read grows by the floats read. FLC_ENOTFOUND when the shard has
 * nothing, FLC_EDIM naming a client of another size, the store's errors. */
int flc_query_gram_compute(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                           flc_query_gram_t *g, double *P, unsigned char *bad, flc_err_t *e);

/* ---- one round evaluated on the job's evaluation set (query_eval.c) ------
 *
 * Every model of the round is the global model of the round before plus a
 * delta (a client's update, or the merged aggregate). The first layer is
 * linear in its weights, so each delta's first-layer products on the
 * evaluation inputs, X dW1 (B x H), are assembled from what each shard
 * computes: an mlp's W1 is unit-major (ml/model.h), so a shard holding
 * whole hidden units computes those units' columns, and only a unit cut by
 * the shard's edge is a sum of two shards' partials; softmax's W is
 * input-major, so every shard adds partials to all C columns. They are
 * kept per delta, and any weighted mix of deltas (FedAvg, leave one out,
 * accuracy-weighted personalization) is evaluated from them without reading
 * an update again. */
typedef struct flc_query_eval {
    uint32_t round;
    size_t n;            /* clients, sorted by name; delta n is the aggregate */
    char **clients;
    double *w;           /* num_samples (1 when unknown) */
    char **fault;        /* simulation ground truth or NULL, per client */
    int kind;            /* FLC_QUERY_MODEL_* */
    size_t in, B, H, C;  /* inputs, samples, first-layer width, classes */
    size_t L2;           /* floats after the first layer's weights (mlp: b1, W2, b2;
                          * softmax: 0, its b is added into the columns) */
    const float *x;      /* B x in (the evaluation set's) */
    const int32_t *y;    /* B labels */
    float *Zg;           /* B x H: the global model's first-layer products */
    float *g2;           /* L2: the global model's later layers */
    float *D;            /* (n + 1) x B x H: each delta's first-layer products */
    size_t D_bytes;      /* D's size (flc_buf_alloc) */
    float *scratch;      /* one block of rows of products, then L2 + 1: where
                          * flc_query_eval_mix builds a model (one thread evaluates
                          * at a time) */
    size_t scratch_bytes;
    float *S2;           /* (n + 1) x L2: each delta's later layers */
    int has_agg;         /* the round has merged shards (delta n) */
    double global_acc;   /* the global model of the round before */
    char *left_out;      /* the note naming clients left out (NULL: none) */
    uint64_t bytes_read, bytes_moved, update_bytes; /* update_bytes: one update */
} flc_query_eval_t;

/* Evaluates round `round` of q->job on es: reads the global model of the
 * round before ("<J>/g") and every client's update shard by shard (and the
 * merged shards) with shard workers placed as the Gram's (at: where they
 * connect, q->place, q->threads), keeping the per-delta partials. Clients whose update is
 * incomplete or not finite are left out and named in a's note (a may be
 * NULL). */
/* Where the first layer's weights end in the flat vector, and the later-
 * layer floats (ev->L2) begin: the mlp's b1 is a later-layer float (each
 * of its columns then has one writer); softmax's b is added into its
 * columns. */
uint64_t flc_query_eval_layer1_end(const flc_query_eval_t *ev);

/* The first-layer columns [*c0, *c0 + *ncols) that the slice
 * model[off .. off+cnt) computes (ncols 0: the slice has none). */
void flc_query_eval_cols(const flc_query_eval_t *ev, uint64_t off, uint64_t cnt, size_t *c0,
                         size_t *ncols);

int flc_query_eval_round(flc_store_t *s, const flc_query_req_t *q, const flc_store_cfg_t *at,
                         const flc_query_evalset_t *es, uint32_t round, flc_query_eval_t *ev,
                         Flcache__QueryAnswer *a, flc_err_t *e);
void flc_query_eval_free(flc_query_eval_t *ev);

/* Samples a mix builds at a time (query_evalmix.c); ev->scratch holds
 * that many rows of products, then L2 + 1 floats. */
size_t flc_query_eval_block_rows(const flc_query_eval_t *ev);

/* Accuracy and mean loss of the model global + sum_i c[i] delta_i (c has
 * n + 1 entries, c[n] the aggregate's). pred (B) and act (B x H: hidden
 * activations of an mlp, logits of a softmax) receive the predictions and
 * activations when not NULL. FLC_ENOMEM only. */
int flc_query_eval_mix(const flc_query_eval_t *ev, const double *c, double *acc, double *loss,
                       int32_t *pred, float *act);

/* personalize --by accuracy on one evaluated round (query_evalpers.c),
 * from its numbers v (query_evalres.h; v->pers_acc for
 * flc_query_pers_k members): the K best clients' rows and weights into a,
 * the personalized, global and FedAvg accuracies as its summary, and with
 * q->model_out the model (P floats) built next to the shards. */
struct flc_query_evnum;
int flc_query_eval_personalize(flc_store_t *s, const flc_query_req_t *q,
                               const flc_store_cfg_t *at, const struct flc_query_evnum *v,
                               uint32_t round, uint64_t P, Flcache__QueryAnswer *a,
                               flc_err_t *e);

/* The members personalize takes of n clients: q->k (default 5), at most n. */
size_t flc_query_pers_k(const flc_query_req_t *q, size_t n);

/* Their weights: ord (2n) gets the (accuracy, index) pairs best first, c
 * (n + 1) the K best's accuracy over the K's sum (1/K each when none is
 * above 0), 0 for the others and the aggregate. */
void flc_query_pers_weights(const double *acc, size_t n, size_t K, double *ord, double *c);

/* qsort order of (key, index) double pairs, largest key first. */
int flc_query_by_key_desc(const void *a, const void *b);

/* qsort order of C strings (char *), by strcmp: the order an evaluation's
 * rows and its cached numbers' digest list a round's clients in. */
int flc_query_by_name(const void *a, const void *b);

/* Accuracy of every leave-one-out FedAvg model, client i's left out:
 * global + (sum_j w_j delta_j - w_i delta_i) / (W - w_i) (W the sum of the
 * n weights w), the sum made once instead of n - 1 terms per model; NAN
 * where no weight is left. acc has n entries. FLC_ENOMEM only. */
int flc_query_eval_loo(const flc_query_eval_t *ev, const double *w, double *acc);

/* The numbers of round r that q's kind needs, into *v (query_evalnum.c):
 * the cached ones when they fit (query_evalres.h: their digest is what the
 * round holds now for es's stamp set_stamp and es->n samples; set_stamp 0, as for
 * --no-cache: neither read nor written;
 * they have what the kind needs; the weights are the updates' now), else
 * the round evaluated (es's inputs read the first time) and its numbers
 * cached. *fault: the clients' ground truth (v->n entries or NULL; the
 * caller frees them); *cached: 1 when the numbers were the cached ones.
 * bytes_read/moved and notes go to a. */
struct flc_query_evnum;
int flc_query_round_numbers(flc_store_t *s, const flc_query_req_t *q, const flc_store_cfg_t *at,
                            flc_query_evalset_t *es, uint64_t set_stamp, uint32_t r,
                            struct flc_query_evnum *v, char ***fault, int *cached,
                            Flcache__QueryAnswer *a, flc_err_t *e);

/* The median of v[0..n) (n > 0; v is sorted in place). */
double flc_query_median(double *v, size_t n);

/* The evaluation kinds (query_evalq.c): accuracy, incentives, faults, and
 * the --by accuracy views of schedule, personalize and contribution. */
int flc_query_evaluate(flc_store_t *s, const flc_query_req_t *q, const flc_store_cfg_t *at,
                       Flcache__QueryAnswer **out, flc_err_t *e);

/* ---- where the shard workers run (query_place.c) ------------------------
 *
 * The planner groups a round's shards by the node that owns them; a worker
 * thread works through one group at a time, next to that group's node when
 * the request has a place callback. Unplaced, there is one group, the
 * shards in tracker order, and the workers run where the caller does. */
typedef struct flc_query_plan {
    size_t ngroups;
    char (*addr)[300]; /* per group: the node's "host:port"; "" = not placed */
    size_t *order;     /* indexes into the tracker entries, grouped by node */
    size_t *start;     /* group g holds order[start[g] .. start[g + 1]) */
    size_t *next;      /* the next of group g to hand out */
    int *workers;      /* threads on group g now */
    size_t nodes;      /* cache nodes owning the shards, placed or not (1: one
                        * server, or not known) */
} flc_query_plan_t;

/* Plans the ns shards of where[]. placed: ask the store which node owns
 * each shard now (flc_store_shard_node: the slot map, not the tracker,
 * which may predate a resharding) and group by it; when any shard has no
 * cluster node (one server, a slot nobody serves) nothing is placed.
 * FLC_ENOMEM only. */
int flc_query_plan_make(flc_store_t *s, const char *job, uint32_t round,
                        const flc_track_where_t *where, size_t ns, int placed,
                        flc_query_plan_t *p, flc_err_t *e);
void flc_query_plan_free(flc_query_plan_t *p);

/* The next shard for a worker now on group *grp (-1: none yet), under the
 * caller's lock: its own group while it has shards, else the group with the
 * fewest workers (then the most shards left), *grp updated. The tracker
 * index, or -1 when every shard is handed out. */
long flc_query_plan_take(flc_query_plan_t *p, long *grp);

/* The URL of node addr ("host:port") as the caller connects: the caller's
 * URL (credentials, db, cluster flag) with addr's host and port. FLC_EINVAL
 * naming addr when it is not host:port or out (cap bytes) is too small. */
int flc_query_node_url(const flc_url_t *caller, const char *addr, char *out, size_t cap,
                       flc_err_t *e);

/* A shard worker's store for plan group grp, its group before being prev
 * (-1: none): when the group is placed and new to the worker, *s is closed
 * and the worker enters the group's node (place->enter, which fills opts
 * with how to reach it locally) and opens the node itself: the caller's
 * URL caller_ep with the node's host and port, flagged cluster=yes (the
 * planner found it in the slot map: no probe connection). Unplaced, the
 * first call opens the caller's own url with url_opts: never an address
 * the tracker names, which anyone with write access to the job may have
 * written (connecting there would hand it the caller's credentials; issue
 * 13 finding 1); the store then follows the cluster's slot map. A store
 * opened here gets query class qclass (flc_store_set_query_class) unless
 * qclass < 0. */
int flc_query_worker_store(const flc_place_t *place, const flc_query_plan_t *plan, long grp,
                           long prev, const flc_url_t *caller_ep, const char *url,
                           const flc_store_opts_t *url_opts, flc_store_opts_t *opts,
                           int qclass, flc_store_t **s, flc_err_t *e);

#endif
