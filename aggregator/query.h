/* The query engine: non-training questions about a job's rounds, answered
 * next to the data.
 *
 * Metadata queries (history, client, schedule) read round and update
 * metadata only. Vector queries (norms, similarity, outliers, clusters,
 * contribution) need dot products between whole updates; a dot product over
 * the model is the sum of per-shard dot products, so each shard's Gram
 * partial - the (N+1)x(N+1) matrix of the round's N client updates and the
 * merged update, restricted to that shard - is computed by a worker next to
 * the shard (flc_query_gram_shard: reads the shard's updates from its own
 * node, OpenBLAS ssyrk per block accumulated in double), cached beside them
 * (fl:{T}:r:<r>:gram), and only these small matrices move. `personalize`
 * averages one cluster's updates shard by shard, next to each shard, and
 * moves only the resulting model.
 *
 * Every answer is a table (Flcache__QueryAnswer): numeric columns, then text
 * columns, one row per client / round, plus bytes read next to the data and
 * bytes moved to the caller. */
#ifndef FLC_AGGREGATOR_QUERY_H
#define FLC_AGGREGATOR_QUERY_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "cache/store.h"
#include "proto/flcache.pb-c.h"

typedef enum flc_query_kind {
    FLC_Q_HISTORY = 0,
    FLC_Q_CLIENT,
    FLC_Q_NORMS,
    FLC_Q_SIMILARITY,
    FLC_Q_OUTLIERS,
    FLC_Q_CLUSTERS,
    FLC_Q_PERSONALIZE,
    FLC_Q_CONTRIBUTION,
    FLC_Q_SCHEDULE,
    FLC_Q_ACCURACY,    /* every client's model of a round on the job's evaluation set */
    FLC_Q_INCENTIVES,  /* accuracy minus the round's mean (FLStore's tokens) */
    FLC_Q_FAULTS,      /* FedDebug-style: whose model behaves unlike the others */
    FLC_Q_NKINDS
} flc_query_kind_t;

typedef struct flc_query_req {
    flc_query_kind_t kind;
    const char *job;
    uint32_t round_from, round_to; /* inclusive; one round: from == to */
    int all_rounds;                /* history/contribution/schedule: every round of the job */
    const char *client;            /* client query */
    unsigned k;                    /* clusters, personalize: K (default 2); schedule: K
                                    * (default 10) */
    unsigned cluster;              /* personalize: which of the K clusters */
    float **model_out;             /* personalize: when set, receives the cluster's
                                    * model (malloc'd, *model_len floats) */
    uint64_t *model_len;
    unsigned seed;                 /* k-means++ seeding */
    const char *url;               /* where shard workers connect; NULL: the store's own
                                    * server, with its credentials */
    const flc_store_opts_t *store_opts; /* the shard workers' store options (chunk, cold
                                    * tier: the updates they read may be spilled);
                                    * NULL: built-in */
    int threads;                   /* shard workers in parallel; 0: one per cache node
                                    * serving the round's shards, unplaced over several
                                    * nodes min(S, 4) and at least one per node (the
                                    * evaluation kinds: with place one per node, else
                                    * min(S, 4)) */
    int no_cache;                  /* recompute Gram partials and evaluation sums even
                                    * when cached (neither read nor written) */
    int by_accuracy;               /* schedule: top K by accuracy on the evaluation set;
                                    * personalize: the best K clients by accuracy,
                                    * accuracy-weighted; contribution: leave-one-out
                                    * accuracy of the FedAvg aggregate */
    unsigned samples;              /* evaluation kinds: evaluation samples used (0: as
                                    * many as keep the bytes moved below one update's:
                                    * an mlp's, a quarter of it) */
    flc_place_t place;             /* where shard workers run: with enter set, each worker
                                    * thread enters the node that owns its shards (on a
                                    * cluster) before it opens its store, so it reads them
                                    * there and only the Gram partials cross the network.
                                    * Zero: in the caller's place, as on one server */
    size_t mem_budget;             /* bytes of update rows the Gram workers of this query
                                    * hold at once, all of them together (split among
                                    * them; blocks of coordinates are read to fit).
                                    * 0: flc_query_mem_budget() */
} flc_query_req_t;

/* "history" -> *out = FLC_Q_HISTORY; FLC_EINVAL (*out untouched) for an
 * unknown name or NULL. */
int flc_query_kind_parse(const char *name, flc_query_kind_t *out);
const char *flc_query_kind_name(flc_query_kind_t k);

/* Runs a query; *out is a new answer (flcache__query_answer__free_unpacked).
 * Errors name the unknown job, round or client, or a bad parameter. */
int flc_query_run(flc_store_t *s, const flc_query_req_t *req, Flcache__QueryAnswer **out,
                  flc_err_t *e);

/* The "query" function role: event {"kind":"outliers","job":"J","round":3,
 * "k":2, "redis":"unix:///..."} -> the answer as JSON (flc_query_answer_json).
 * The store, and its shard workers' connections, are opened with sc's
 * options at the event's "redis", else at sc->url (sc may be NULL: built-in
 * options, the event must name the cache). */
struct cJSON;
int flc_query_fn(const flc_store_cfg_t *sc, const struct cJSON *event, struct cJSON **result,
                 flc_err_t *e);

/* The answer as JSON: {"job","kind","columns":[...],"rows":[{"key":..,
 * <column>: value ...}], "bytes_read", "bytes_moved", "elapsed_ms"}. */
struct cJSON *flc_query_answer_json(const Flcache__QueryAnswer *a);

/* Runs a query (flc_query_run) and returns the answer as JSON text, the
 * object flc_query_answer_json builds; *json is malloc'd (caller frees).
 * The public API's query call (include/flcache/flcache.h). */
int flc_query_json(flc_store_t *s, const flc_query_req_t *req, char **json, flc_err_t *e);

/* ---- the evaluation set (query_evalset.c) ------------------------------
 *
 * A held-out labelled set stored with the job, as series "<J>/eval"
 * (flc_store_put_merged, one shard): round 0 holds the inputs (n x in
 * floats, already normalised as the model sees them), round 1 a header
 * [2, kind, in, hidden, out, n] then the n labels, as floats (exact below
 * 2^24). The model descriptor travels with the set, so a query knows how to
 * evaluate a job's updates without the program that trained it; the
 * version says their layout (ml/model.h: 2, an mlp's W1 unit-major; an
 * mlp's set of version 1 is refused, a softmax's read). */
#define FLC_QUERY_MODEL_SOFTMAX 1 /* the values of ml/model.h's FLC_MODEL_* */
#define FLC_QUERY_MODEL_MLP 2

typedef struct flc_query_evalset {
    int kind;               /* FLC_QUERY_MODEL_* */
    size_t in, hidden, out; /* the model's inputs, hidden units (mlp), classes */
    size_t n;               /* samples */
    size_t stored;          /* samples the stored set holds (set by a read; n may be
                             * fewer: the first ones) */
    float *x;               /* n x in, row-major */
    int32_t *y;             /* n labels in 0..out-1 */
} flc_query_evalset_t;

/* Stores es as job's evaluation set (replacing one stored before).
 * FLC_EINVAL naming what is wrong with es (kind, sizes, a label). */
int flc_query_evalset_put(flc_store_t *s, const char *job, const flc_query_evalset_t *es,
                          flc_err_t *e);

/* Reads job's evaluation set, its first `limit` samples (0: all), into *es
 * (flc_query_evalset_free). FLC_ENOTFOUND naming the job when it has none
 * ("flcache eval-set" stores one). */
int flc_query_evalset_get(flc_store_t *s, const char *job, size_t limit, flc_query_evalset_t *es,
                          flc_err_t *e);
void flc_query_evalset_free(flc_query_evalset_t *es);

/* flc_query_evalset_get in two halves, so a query can decide how many
 * samples it uses (and whether it needs the inputs at all: a warm answer
 * does not) before reading them: _labels reads the header and the labels
 * (es->x NULL), _inputs the first es->n samples' inputs into es->x. */
int flc_query_evalset_get_labels(flc_store_t *s, const char *job, flc_query_evalset_t *es,
                                 flc_err_t *e);
int flc_query_evalset_get_inputs(flc_store_t *s, const char *job, flc_query_evalset_t *es,
                                 flc_err_t *e);

/* A stamp of job's stored evaluation set (its inputs' and its labels'
 * flc_store_merged_stamp: a set stored again has another), without reading
 * it. FLC_ENOTFOUND when either part is missing. */
int flc_query_evalset_stamp(flc_store_t *s, const char *job, uint64_t *stamp);

/* Number of floats of the model es describes. */
uint64_t flc_query_evalset_nparams(const flc_query_evalset_t *es);

/* ---- the pieces, for tests and the benchmark --------------------------- */

/* The Gram data of one round: n clients (sorted by name), G is (n+1)x(n+1)
 * row-major in double, the last row/column being the merged update (zero
 * when the round has no merged shards). */
typedef struct flc_query_gram_s {
    size_t n;
    char **clients;
    double *G;
    uint64_t bytes_read;  /* read next to the data */
    uint64_t bytes_moved; /* partials moved to the caller */
    char *nodes; /* which node served each shard, "shard 0: 10.0.0.11:6379, ..." or
                    "all 6 shards: <URL>" on one node (malloc'd; NULL: unknown) */
    unsigned char *bad; /* per client: 1 when its update holds a NaN or Inf (its row and
                           column are zero, not its values); NULL: not tracked */
    float *scratch;     /* the rows a worker reads a shard into, kept from shard to
                           shard, populated at once (base/bigbuf.h): fresh pages cost a
                           fault each (a 25 MB round's shard is 220 MB of rows) */
    size_t scratch_cap; /* floats in scratch */
    size_t mem_budget;  /* flc_query_gram_shard: bytes of rows it may hold (a window of
                           coordinates of every update); 0: flc_query_mem_budget() */
} flc_query_gram_t;

/* The memory a Gram worker holds does not grow with the number of updates
 * N or the shard's size: it reads block [a, a+L) of coordinates of every
 * update (and the merged shard) at once and accumulates G += X X^T, with L
 * chosen so the N+1 rows of L floats (and one chunk per update kept
 * between windows, store_part.h) fit the budget; at least one block of
 * 4096 coordinates per row, so a budget below (N+1) x (16 KiB + a chunk)
 * is exceeded by that floor. Updates stored encoded (fp16, top-k) cannot be
 * read by window: they are read whole and held, outside the budget.
 *
 * A window is at most 8 MiB of rows whatever the budget (larger ones cost
 * redis-server fresh pages for its replies, query_gram_rows.c), so what a
 * worker holds is about min(budget, 8 MiB + one chunk per update).
 *
 * 64 MiB by default: the allowance issue 14 gives a merger beside its
 * shard (goal 4: peak <= 2 x shard + 64 MB), which holds full 8 MiB windows
 * and a chunk (256 KiB) per update up to ~200 updates; past that windows
 * shrink, down to the floor. */
#define FLC_QUERY_MEM_BUDGET_DEFAULT ((size_t)64 << 20)

/* The budget used where none is given (a request's or a Gram's mem_budget
 * of 0): FLC_QUERY_MEM_BUDGET_DEFAULT until set. A program sets it once,
 * before it starts threads (flcache simulate --memory-budget: its
 * in-process mergers derive the round's statistics through the Gram);
 * 0 restores the default. */
void flc_query_mem_budget_set(size_t bytes);
size_t flc_query_mem_budget(void);

void flc_query_gram_free(flc_query_gram_t *g);

/* G[0..m*m) = M M^T (both triangles, in double) for the m rows of cols
 * floats in M (row-major): OpenBLAS ssyrk over blocks of 4096 columns, each
 * block's float sums added in double. FLC_ENOMEM only. */
int flc_query_gram_of_rows(const float *M, size_t m, size_t cols, double *G);

/* Computes (or reads from its cache) the Gram partial of one shard: reads
 * the round's client updates of shard `shard` and the merged shard, adds
 * their pairwise dot products into g (g->n and g->clients must be set,
 * g->G zeroed (n+1)^2). */
int flc_query_gram_shard(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                         int use_cache, flc_query_gram_t *g, flc_err_t *e);

/* The whole round's Gram: one worker per shard (threads, own connections to
 * at->url with at->opts; at NULL or at->url NULL: s's own server with its
 * credentials), partials summed. */
int flc_query_gram(flc_store_t *s, const flc_store_cfg_t *at, const char *job, uint32_t round,
                   int threads, int use_cache, flc_query_gram_t *g, flc_err_t *e);

/* flc_query_gram with the workers placed: with place and place->enter set,
 * on a cluster, the round's shards are grouped by the node owning them now
 * (the slot map) and every worker thread calls place->enter for its group's
 * node before it opens a store there (at->opts plus what enter fills:
 * local_node, local_sock), connecting to that node as the caller connects
 * (credentials, db); a worker done with its group helps another, entering
 * that node first. An enter that fails fails the query with its message.
 * The calling thread never moves. On one server nothing is placed. */
int flc_query_gram_placed(flc_store_t *s, const flc_store_cfg_t *at, const flc_place_t *place,
                          const char *job, uint32_t round, int threads, int use_cache,
                          flc_query_gram_t *g, flc_err_t *e);

/* flc_query_gram_placed within mem_budget bytes of rows for all its
 * workers together (0: flc_query_mem_budget()): each worker gets an equal
 * share, and unless threads or a placement ask for more workers, fewer
 * workers run when a share would fall below the floor of (N+1) rows of one
 * block and one chunk each. */
int flc_query_gram_run(flc_store_t *s, const flc_store_cfg_t *at, const flc_place_t *place,
                       const char *job, uint32_t round, int threads, int use_cache,
                       size_t mem_budget, flc_query_gram_t *g, flc_err_t *e);

/* Kernel k-means on a Gram matrix (k-means++ seeding from `seed`, then
 * Lloyd iterations, all from dot products): assign[n], inertia. Equal to
 * k-means on the vectors themselves. */
int flc_query_kmeans(const double *G, size_t ld, size_t n, unsigned k, unsigned seed,
                     int *assign, double *inertia, flc_err_t *e);

#endif
