/* flcache.h - the public C API of libflcache, and nothing else.
 *
 * One header for programs that link the installed library
 * (`pkg-config --cflags --libs flcache`): open a store on Redis (redis://,
 * rediss://, unix://, a Redis Cluster), pick a merge rule, push updates and
 * pull merged models with the reduce-scatter protocol, run a round's merger
 * in-process, and ask the query engine about a job. docs/api.md lists every
 * function here with one line, and what stays internal.
 *
 * Why a header of its own instead of the layer headers: those pull in the
 * cold tier, caching policies, shard frames and the generated protobuf
 * types, which are free to change between versions; a user of this header
 * sees only C types, so a program built against it needs no hiredis,
 * protobuf-c or cJSON headers. The shared library exports exactly the
 * functions declared here (a version script generated from this file).
 *
 * The types here are the library's own types, declared again. Each block
 * is skipped when the internal header that defines it came first (the guard
 * macros below), so the library's test tests/test_install_api.c can include
 * both: the compiler then checks every prototype against the internal one,
 * and the test compares every struct's size and field offsets.
 *
 * Conventions: every function that can fail returns 0 or a negative FLC_E*
 * code and fills the flc_err_t it is given (may be NULL) with a sentence
 * naming what was wrong; *_open pairs with *_close, *_new with *_free, and
 * those accept NULL. A store is one connection: use one per thread.
 * Processes using a store should ignore SIGPIPE (signal(SIGPIPE, SIG_IGN)),
 * so that a server going away returns FLC_ECONN instead of killing them. */
#ifndef FLCACHE_FLCACHE_H
#define FLCACHE_FLCACHE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors -------------------------------------------------------------- */

#ifndef FLC_BASE_ERROR_H
enum {
    FLC_OK = 0,
    FLC_EINVAL = -1,     /* bad argument, usage or configuration */
    FLC_ENOMEM = -2,     /* allocation failed */
    FLC_ECONN = -3,      /* cannot connect, or the connection was lost */
    FLC_ETIMEOUT = -4,   /* no answer within the deadline */
    FLC_EPROTO = -5,     /* the server answered something unexpected */
    FLC_EDATA = -6,      /* bytes fail validation (truncated, corrupt, mismatch) */
    FLC_ENOTFOUND = -7,  /* unknown job, round, client or key */
    FLC_ETOOBIG = -8,    /* a message is over the configured size limit */
    FLC_EIO = -9,        /* file, process or system call failed */
    FLC_EDIM = -10,      /* dimensions do not match */
    FLC_ENONFINITE = -11,/* NaN or Inf in an update */
    FLC_ECLOSED = -12,   /* the round is already closed */
    FLC_EDUP = -13,      /* duplicate (already counted) */
    FLC_EAUTH = -14,     /* authentication refused */
    FLC_ECHECKSUM = -15, /* stored checksum does not match the data */
};

#define FLC_ERRMSG_LEN 256

typedef struct flc_err {
    int code;                 /* 0 or FLC_E* */
    char msg[FLC_ERRMSG_LEN]; /* one sentence naming what was wrong */
} flc_err_t;
#endif

/* Short fixed description of a code ("connection refused or lost"). */
const char *flc_strerror(int code);

/* The message of *e, or flc_strerror(code) when the message is empty. */
const char *flc_err_msg(const flc_err_t *e);

/* Clears *e to FLC_OK with an empty message. */
void flc_err_clear(flc_err_t *e);

/* ---- the store ----------------------------------------------------------- */

#ifndef FLC_CACHE_STORE_H
typedef struct flc_store flc_store_t;
typedef struct flc_cold_opts flc_cold_opts_t; /* internal: leave cold_opts NULL */

/* A field left 0 / NULL takes the built-in default. */
typedef struct flc_store_opts {
    size_t chunk_bytes;          /* 0: 256 KiB */
    size_t max_msg_bytes;        /* 0: 512 MiB */
    unsigned connect_timeout_ms; /* 0: 5000 */
    unsigned io_timeout_ms;      /* 0: 30000 */
    uint64_t ttl_ms;             /* expiry of every shard and metadata key written; 0: none */
    const char *cold_url;        /* cold tier (file:// or s3://) to fetch spilled values
                                    back from; NULL or "": none */
    const flc_cold_opts_t *cold_opts; /* NULL: built-in */
    const char *local_node;      /* cluster: "host:port" of the node next to this
                                    process; NULL: none */
    const char *local_sock;      /* its unix socket path, used instead of TCP */
    unsigned wait_replicas;      /* after a push, wait for this many replicas (WAIT) */
    unsigned wait_timeout_ms;    /* ... at most this long; 0: 1000 */
} flc_store_opts_t;

/* A list of strings; free with flc_strlist_free. */
typedef struct flc_strlist {
    char **items;
    size_t n;
} flc_strlist_t;

/* Where a thread runs (queries on a cluster): enter() moves the calling
 * thread next to node_addr and fills opts->local_node / local_sock. Leave it
 * zero to run everything in the caller's place. */
typedef struct flc_place {
    int (*enter)(void *user, const char *node_addr, flc_store_opts_t *opts, flc_err_t *e);
    void *user;
} flc_place_t;
#endif

/* Connects to url: redis://[user:pass@]host:port[/db], rediss://... (TLS),
 * unix:///path/to/sock, or any node of a Redis Cluster (found by itself).
 * opts may be NULL. Returns NULL and fills *err on failure. */
flc_store_t *flc_store_open(const char *url, const flc_store_opts_t *opts, flc_err_t *err);

/* Closes the connection and frees s. NULL is a no-op. */
void flc_store_close(flc_store_t *s);

/* The last error of s (code and sentence). */
const flc_err_t *flc_store_error(const flc_store_t *s);
const char *flc_store_errstr(const flc_store_t *s);

/* The URL s is connected to, password redacted. */
const char *flc_store_url(const flc_store_t *s);

int flc_store_ping(flc_store_t *s);

/* Every job with a schema record, sorted. */
int flc_store_list_jobs(flc_store_t *s, flc_strlist_t *out);

/* Rounds of a job in ascending order; *rounds is malloc'd (caller frees).
 * FLC_ENOTFOUND when the job is unknown. */
int flc_store_list_rounds(flc_store_t *s, const char *job, uint32_t **rounds, size_t *n);

/* Clients of a round's roster that stored an update, sorted. */
int flc_store_list_clients(flc_store_t *s, const char *job, uint32_t round, flc_strlist_t *out);

/* Deletes every key of a round and removes it from the job's indexes. */
int flc_store_delete_round(flc_store_t *s, const char *job, uint32_t round);

/* Frees the strings and the array; the list is left empty. */
void flc_strlist_free(flc_strlist_t *l);

/* ---- merge rules ---------------------------------------------------------- */

#ifndef FLC_AGGREGATOR_MERGE_H
typedef enum flc_merge_kind {
    FLC_MERGE_FEDAVG = 0,   /* sum(w_i u_i) / sum(w_i), w_i = num_samples */
    FLC_MERGE_MEAN,         /* sum(u_i) / k */
    FLC_MERGE_FEDAVGM,      /* server momentum (Hsu et al. 2019) */
    FLC_MERGE_FEDADAM,      /* Reddi et al. 2021, Algorithm 2 */
    FLC_MERGE_FEDYOGI,
    FLC_MERGE_FEDADAGRAD,
    FLC_MERGE_MEDIAN,       /* coordinate-wise median */
    FLC_MERGE_TRIMMED_MEAN, /* coordinate-wise, floor(trim*k) cut each side */
    FLC_MERGE_KRUM,         /* Blanchard et al. 2017 */
    FLC_MERGE_MULTI_KRUM,   /* mean of the m best Krum scores */
    FLC_MERGE_BULYAN,       /* El Mhamdi et al. 2018: Krum selection, then trimmed mean */
    FLC_MERGE_NKINDS
} flc_merge_kind_t;

/* A rule and its parameters: fill it with flc_merge_rule_init or
 * flc_merge_rule_parse, then change parameters with flc_merge_rule_set. */
typedef struct flc_merge_rule {
    flc_merge_kind_t kind;
    double server_lr; /* eta: fedavgm 1, fedadam/fedyogi 0.01, fedadagrad 0.1 */
    double momentum;  /* fedavgm server momentum, default 0.9 */
    double beta1;     /* adaptive rules: first moment decay, default 0.9 */
    double beta2;     /* fedadam/fedyogi: second moment decay, default 0.99 */
    double tau;       /* adaptive rules: adaptivity, default 1e-3 */
    double clip;      /* every rule: clip each update to this L2 norm; 0 = off */
    double trim;      /* trimmed-mean: fraction cut each side, [0,0.5), default 0.1 */
    int f;            /* krum/multi-krum: Byzantine updates; -1 = (k-3)/2 */
    int m;            /* multi-krum: updates averaged; 0 = k - f */
    int weighted;     /* server optimizers: pseudo-gradient weighted by samples */
    double noise;     /* mean: central DP noise multiplier (sd noise*clip/k); 0 = off */
} flc_merge_rule_t;

/* k updates of one slice, all in memory. Only u, k and n are required. */
typedef struct flc_merge_batch {
    const float *const *u; /* k pointers to n floats each */
    size_t k;              /* number of updates */
    size_t n;              /* floats in the slice */
    const size_t *len;     /* optional: the length each update really has (checked == n) */
    const double *weight;  /* optional: num_samples per update (default 1) */
    const double *norm;    /* optional: whole-update L2 norms for clipping */
    const double *scale;   /* optional: factor applied to each update; overrides clipping */
} flc_merge_batch_t;

/* What a merge did. All fields optional. */
typedef struct flc_merge_info {
    unsigned char *used; /* caller's array of k: 1 when the update entered the result */
    size_t clipped;      /* out: updates scaled down by clipping */
} flc_merge_info_t;

/* Server-optimizer state (m, v) of one slice between rounds: opaque. */
typedef struct flc_merge_state flc_merge_state_t;
#endif

/* Sets *r to rule `name` ("fedavg", "mean", "fedavgm", "fedadam", "fedyogi",
 * "fedadagrad", "median", "trimmed-mean", "krum", "multi-krum", "bulyan") with its
 * default parameters. FLC_EINVAL for an unknown name. */
int flc_merge_rule_init(flc_merge_rule_t *r, const char *name, flc_err_t *e);

/* Sets one parameter by name (server_lr, momentum, beta1, beta2, tau, clip,
 * trim, f, m, weighted); FLC_EINVAL naming it when unknown, not for r's rule,
 * or out of range (r unchanged). */
int flc_merge_rule_set(flc_merge_rule_t *r, const char *key, double value, flc_err_t *e);

/* Parses "name" or "name:key=value,key=value", e.g. "fedadam:server_lr=0.03". */
int flc_merge_rule_parse(flc_merge_rule_t *r, const char *spec, flc_err_t *e);

/* Checks every parameter of r against its range; 0 or FLC_EINVAL. */
int flc_merge_rule_check(const flc_merge_rule_t *r, flc_err_t *e);

/* Writes the canonical spec of r into buf (parses back to an equal rule);
 * returns what snprintf returns. */
int flc_merge_rule_format(const flc_merge_rule_t *r, char *buf, size_t len);

/* Canonical name of a kind ("trimmed-mean"), "?" when out of range. */
const char *flc_merge_kind_name(flc_merge_kind_t kind);

/* 1 when the rule folds updates one at a time (fedavg, mean, server optimizers). */
int flc_merge_rule_streams(const flc_merge_rule_t *r);

/* 1 when the rule keeps server state between rounds (flc_merge_state_t). */
int flc_merge_rule_has_state(const flc_merge_rule_t *r);

/* 1 when the rule weighs updates by their sample counts. */
int flc_merge_rule_weighted(const flc_merge_rule_t *r);

/* Merges batch b in memory with rule r into out[0..n) (out may not alias an
 * update). st is required when flc_merge_rule_has_state(r); it is advanced
 * by one round. info may be NULL. FLC_EDIM, FLC_ENONFINITE name the update. */
int flc_merge_run(const flc_merge_rule_t *r, flc_merge_state_t *st, const flc_merge_batch_t *b,
                  float *out, flc_merge_info_t *info, flc_err_t *e);

/* New server state of n floats for rule r (which must have state). */
flc_merge_state_t *flc_merge_state_new(const flc_merge_rule_t *r, size_t n, flc_err_t *e);

/* Frees st; NULL is a no-op. */
void flc_merge_state_free(flc_merge_state_t *st);

/* ---- reduce-scatter: push, merge, pull ----------------------------------- */

#ifndef FLC_AGGREGATOR_REDUCE_SCATTER_H
typedef struct flc_rs_push_cfg {
    const char *job;
    uint32_t round;
    const char *client;
    uint32_t num_shards;
    uint64_t model_size;
    uint64_t num_samples; /* merge weight of weighted rules (FedAvg); 0 counts as 1 */
} flc_rs_push_cfg_t;

typedef struct flc_rs_merger_cfg {
    const char *job;
    uint32_t round;
    uint32_t shard;
    uint32_t num_shards;
    uint64_t model_size;
    flc_merge_rule_t rule;
    const char *const *expected; /* clients to wait for (the round's roster) */
    size_t n_expected;
    unsigned deadline_ms;        /* from the call; 0: wait 60 s */
    unsigned readers;            /* done tokens to push (one per pull); 0: n_expected */
    flc_merge_state_t *state;    /* stateful rules: in-memory state, or NULL: in the cache */
    int ephemeral;               /* 1: a round nobody will query: no report or metadata */
    int derive_stats;            /* 1: cache the shard's Gram partial for later queries */
    int driver_records;          /* 1: a driver opened the round and writes its RoundMeta;
                                  * the merger writes no job-wide key */
    size_t window_bytes;         /* bytes of a big shard folded and written at a time, so
                                  * the merger's memory is bounded by its shard: 0 = 8 MiB;
                                  * FLC_RS_WINDOW_WHOLE = whole values */
} flc_rs_merger_cfg_t;

#define FLC_RS_WINDOW_WHOLE ((size_t)-1)

/* What one shard's merge did. */
typedef struct flc_rs_report {
    uint32_t shard;
    flc_strlist_t participants; /* merged, in arrival order */
    flc_strlist_t missing;      /* expected, never arrived */
    flc_strlist_t rejected;     /* "client: reason" */
    size_t duplicates;          /* arrivals ignored as repeats */
    size_t clipped;             /* updates scaled down by clipping */
    uint64_t bytes_read;
    double wait_ms;             /* blocked waiting for arrivals */
    double merge_ms;            /* reading, checking, folding and writing */
    char error[256];            /* why the merge failed ("" when it did not) */
} flc_rs_report_t;
#endif

/* Shard s of a model of n floats split into S: the first n % S shards are
 * one float longer. */
void flc_rs_shard_range(uint64_t n, uint32_t S, uint32_t s, uint64_t *offset, uint64_t *count);

/* Pushes update[0..model_size) as num_shards shards under the client's own
 * keys and announces its arrival. FLC_ENONFINITE (nothing stored) for a
 * NaN/Inf; FLC_ECLOSED when a shard's merger had already closed the round
 * (the update is kept for queries, not merged). */
int flc_rs_push(flc_store_t *s, const flc_rs_push_cfg_t *cfg, const float *update,
                flc_err_t *e);

/* Waits (blocking, up to timeout_ms in all) until every shard is merged,
 * then reads the merged model into model[0..model_size). FLC_ETIMEOUT names
 * the shards still missing; a merger's failure is passed on. */
int flc_rs_pull(flc_store_t *s, const char *job, uint32_t round, uint32_t num_shards,
                uint64_t model_size, unsigned timeout_ms, float *model, flc_err_t *e);

/* Runs the merger of one shard for one round: blocks until every expected
 * client arrived or the deadline, merges with cfg->rule, writes the merged
 * shard, the report (also filled into *rep: free with flc_rs_report_free)
 * and the readers' done tokens. */
int flc_rs_merger_run(flc_store_t *s, const flc_rs_merger_cfg_t *cfg, flc_rs_report_t *rep,
                      flc_err_t *e);

void flc_rs_report_free(flc_rs_report_t *r);

/* ---- queries -------------------------------------------------------------- */

#ifndef FLC_AGGREGATOR_QUERY_H
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
    FLC_Q_INCENTIVES,  /* accuracy minus the round's mean */
    FLC_Q_FAULTS,      /* FedDebug-style fault localisation */
    FLC_Q_NKINDS
} flc_query_kind_t;

/* A question about a job; zero what does not apply (docs/queries.md). */
typedef struct flc_query_req {
    flc_query_kind_t kind;
    const char *job;
    uint32_t round_from, round_to; /* inclusive; one round: from == to */
    int all_rounds;                /* history/contribution/schedule: every round */
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
    const flc_store_opts_t *store_opts; /* the shard workers' options; NULL: built-in */
    int threads;                   /* shard workers in parallel; 0: one per cache node
                                    * (unplaced over several nodes, and the evaluation
                                    * kinds: min(S, 4)) */
    int no_cache;                  /* recompute Gram partials even when cached */
    int by_accuracy;               /* schedule, personalize, contribution: by accuracy on
                                    * the job's evaluation set */
    unsigned samples;              /* evaluation kinds: samples used (0: automatic) */
    flc_place_t place;             /* where shard workers run; zero: the caller's place */
    size_t mem_budget;             /* bytes of update rows the query's workers hold at
                                    * once (0: 64 MiB; docs/queries.md) */
} flc_query_req_t;
#endif

/* "history" -> *out = FLC_Q_HISTORY; FLC_EINVAL (*out untouched) otherwise. */
int flc_query_kind_parse(const char *name, flc_query_kind_t *out);
const char *flc_query_kind_name(flc_query_kind_t k);

/* Runs a query and returns its answer as JSON text, the same object
 * `flcache query --json` prints ({"job","kind","columns","rows",
 * "summary","notes","bytes_read","bytes_moved","elapsed_ms"}). *json is
 * malloc'd: the caller frees it with free(). */
int flc_query_json(flc_store_t *s, const flc_query_req_t *req, char **json, flc_err_t *e);

#ifdef __cplusplus
}
#endif

#endif
