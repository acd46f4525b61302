/* The federated simulation driver: N clients holding non-IID slices of
 * Fashion-MNIST, K of them sampled per round, each run as a `client`
 * function (clients/client.h), their deltas merged by reduce-scatter
 * mergers (aggregator/reduce_scatter.h) with the chosen strategy, and a
 * complete record of every round left in the store.
 *
 * Clients are cheap: the Dirichlet(alpha) label split (flc_split_dirichlet)
 * is one array of sample indexes with N+1 offsets, and a client is the
 * slice of it that its event carries. Nothing per client is kept across
 * rounds except one fault flag byte, so the driver's memory grows with the
 * model and K, not with N. Clients with no samples (possible when N is
 * large and alpha small) are never sampled.
 *
 * One round r (1..R):
 *   1. sample K of the eligible clients (seeded: flc_rng stream r); decide
 *      which sampled clients drop out (probability `dropout`, they are never
 *      invoked) and each one's straggler delay (the `straggler` spec);
 *   2. start one merger thread per shard (flc_rs_merger_run with in-memory
 *      server state), expecting all K, deadline `deadline_ms`;
 *   3. invoke the K - dropped client functions through the invoker (the
 *      local pool from the CLI, or threads in-process) and wait for them;
 *   4. close the round: once every invoked client has returned nothing more
 *      can arrive, so mergers still waiting (for dropped clients) are woken
 *      as if their deadline had passed (CLIENT UNBLOCK ... TIMEOUT); the
 *      result is what the deadline would have given, without the wait;
 *   5. pull the merged delta, step the global model (global += merged: every
 *      strategy merges deltas, and the server optimizers return their step),
 *      evaluate it on the test set, store it as round r of job "<J>/g";
 *   6. complete the RoundMeta the mergers wrote (participants, missing,
 *      rejected, wait/merge times, bytes) with the driver's metrics,
 *      hyperparameters, notes, timings, bytes moved and cost, and write one
 *      ModelUpdate per sampled client: num_samples, local loss, update norm,
 *      duration, status (accepted | late | rejected | dropped), reason, and
 *      the ground truth as labels (fault, dropout, straggler_ms, faulty).
 * Round 0 of "<J>/g" is the initial model. Update shards of every client
 * stay in the cache (keep_updates) for queries.
 *
 * Why mergers are threads of the driver and not `aggregator` functions: a
 * merger lives for the whole round and keeps the server optimizer's state
 * in memory between rounds, the function slots of the local pool go to the
 * clients (each holds the image set), and the driver can close a round the
 * moment the last client returned (step 4). The merge code is the same one
 * the aggregator function runs (flc_rs_merger_run).
 *
 * Placement (cfg.place, issue 12): on a cluster, each merger thread runs
 * next to the node that owns its shard, as a placed aggregator function
 * would (on the testbed: in that node's network namespace, over its unix
 * socket); the driver and the client functions stay where the driver is. */
#ifndef FLC_CLIENTS_SIM_H
#define FLC_CLIENTS_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "cache/cold_policy.h"
#include "cache/store.h"

struct cJSON;
struct flc_rng;

/* Strategies: the client-side training and the server-side merge rule. */
enum {
    FLC_SIM_FEDAVG = 0, /* fedavg on deltas, weighted by num_samples */
    FLC_SIM_FEDPROX,    /* fedavg + proximal term mu in local training */
    FLC_SIM_FEDADAM,    /* server Adam step on the mean delta */
    FLC_SIM_FEDYOGI,
    FLC_SIM_MEDIAN,
    FLC_SIM_TRIMMED_MEAN,
    FLC_SIM_KRUM,
    FLC_SIM_MULTI_KRUM,
    FLC_SIM_NSTRATEGIES
};

const char *flc_sim_strategy_name(int s);
/* Sets *out to the strategy named (also "trimmed_mean") and returns 0;
 * FLC_EINVAL (*out untouched) for an unknown name or NULL. */
int flc_sim_strategy_parse(const char *name, int *out);

/* A straggler distribution (the cfg's `straggler` spec), parsed. */
typedef struct flc_sim_straggler {
    int kind;   /* 0 none, 1 fixed:A, 2 uniform:A:B, 3 exp:A, 4 slow:A:B, 5 pareto:A:B */
    double a, b;
} flc_sim_straggler_t;

/* Parses a straggler spec (see cfg; NULL, "" and "none" are none) into *out.
 * FLC_EINVAL naming the spec when it is none of the forms. */
int flc_sim_straggler_parse(const char *spec, flc_sim_straggler_t *out, flc_err_t *e);

/* Draws one delay in ms (>= 0) from d with r. */
double flc_sim_straggler_draw(const flc_sim_straggler_t *d, struct flc_rng *r);

/* One invocation's outcome, as the invoker reports it. */
typedef struct flc_sim_inv {
    int ok;                 /* the function answered a result */
    struct cJSON *result;   /* the client's result (flc_client_fn), owned; NULL unless ok */
    char error[256];        /* why not, when !ok */
    double duration_ms;     /* as the platform measured it */
    double cost_usd;        /* as the platform billed it (0 in-process) */
    int cold;               /* a new instance was started for it */
} flc_sim_inv_t;

/* Runs the n client events (each {"role":"client",...}) concurrently and
 * fills out[0..n) (zeroed by the caller); returns when all finished. A
 * non-zero return (with *e set) means the batch itself failed. */
typedef int (*flc_sim_invoke_t)(void *user, struct cJSON *const *events, size_t n,
                                flc_sim_inv_t *out, flc_err_t *e);

/* What the in-process invoker runs the clients with. The driver's events
 * name the cache ("redis") and, when the cfg has one, the data dir. */
typedef struct flc_sim_inproc {
    unsigned threads;                   /* clients at once; 0: 2 */
    const flc_store_opts_t *store_opts; /* the clients' store options (chunk, cold
                                         * tier); NULL: built-in */
} flc_sim_inproc_t;

/* The in-process invoker: user points to an flc_sim_inproc_t (NULL: all
 * defaults); runs flc_client_fn on that many threads. */
int flc_sim_invoke_inproc(void *user, struct cJSON *const *events, size_t n, flc_sim_inv_t *out,
                          flc_err_t *e);

typedef struct flc_sim_cfg {
    const char *job;        /* 1..60 characters of [A-Za-z0-9_.@+-]; "<job>/g" holds models */
    int clients;            /* N >= 1 */
    int per_round;          /* K, 1..N (capped at the eligible clients) */
    int rounds;             /* R >= 1 */
    double alpha;           /* Dirichlet concentration > 0 (large: IID) */
    int local_epochs;       /* E >= 1 */
    int strategy;           /* FLC_SIM_* */
    const char *init;       /* .npy or .safetensors file of the model to start from
                             * (flcache export writes them); NULL: seeded init */
    double ldp_clip;        /* local DP: each client clips its update to this L2 norm... */
    double ldp_noise;       /* ...and adds Gaussian noise of sd ldp_noise*ldp_clip before it
                             * pushes (aggregator/dp.h, flc_dp_local); 0: off */
    double dp_quantile;     /* central DP with adaptive clipping (Andrew et al. 2021): the
                             * rule's clip is the initial C, then follows this quantile of
                             * the update norms (eta 0.2, count noise K/20); 0: fixed C */
#define FLC_SIM_DP_DELTA 1e-5 /* the delta central DP's epsilon is reported at */
    const char *rule;       /* merge rule spec (README's rule table, e.g. "bulyan:f=1",
                             * "fedavgm:momentum=0.8"); NULL: the strategy's rule (and
                             * server_lr, trim, krum_f). The strategy still says how
                             * clients train (fedprox) */
    const char *encoding;   /* the clients' update encoding (cache/encode.h): "f32" (NULL),
                             * "fp16", "bf16", "int8", "topk:FRACTION" (with error feedback) */
    int resume;             /* 1: continue job from its last closed round (clients/sim_resume.c)
                             * instead of starting it; rounds is then the job's total */
    const char *resume_args;/* stored with each round's checkpoint, handed back by
                             * flc_sim_resume_args (the CLI keeps its options there); may be
                             * NULL */
    const char *model;      /* "softmax" | "mlp" */
    size_t hidden;          /* mlp hidden units; 0: default */
    double mu;              /* FedProx mu (fedprox: 0 -> 0.01) */
    double lr;              /* client learning rate; 0 -> 0.1 softmax, 0.05 mlp */
    size_t batch;           /* client minibatch; 0 -> 32 */
    double server_lr;       /* fedadam/fedyogi eta; 0 -> 0.03 */
    double trim;            /* trimmed-mean fraction cut per side; 0 -> 0.2 */
    int krum_f;             /* krum f; -1 -> (k-3)/2 */
    double dropout;         /* probability a sampled client never reports */
    const char *straggler;  /* NULL/"none", "fixed:MS", "uniform:LO:HI", "exp:MEAN",
                             * "slow:FRAC:MS" (a fraction FRAC of clients wait MS),
                             * "pareto:SCALE:SHAPE" (heavy-tailed, Lomax) */
    unsigned deadline_ms;   /* merger deadline per round; 0: round_timeout_ms */
    double faulty;          /* fraction of the N clients that are faulty, [0, 1] */
    int fault;              /* FLC_FAULT_* of the faulty clients */
    double fault_scale;     /* sign-flip factor / noise norm ratio; 0 -> 4 */
    uint64_t seed;
    uint32_t num_shards;    /* reduce-scatter shards; 0 -> 1 */
    const char *data_dir;   /* NULL: FLC_FASHION_DIR (the Debian path) */
    size_t subset;          /* train samples split over clients (first N); 0: all 60000 */
    size_t test_subset;     /* test samples evaluated; 0: all 10000 */
    const char *redis;      /* cache URL for the driver, mergers and clients (required) */
    const flc_store_opts_t *store_opts; /* options of the driver's and mergers' stores
                             * (chunk, cold tier); NULL: built-in */
    flc_policy_t *policy;   /* the caching policy (cache/cold_policy.h) the driver keeps
                             * Redis under maxmemory with, when its store has a cold
                             * tier; borrowed, the caller frees it after the run;
                             * NULL: none (spilled values are still fetched back) */
    unsigned round_timeout_ms; /* longest a round may take; 0 -> 600000 */
    unsigned memory_mb;     /* for the aggregator cost estimate; 0 -> 1024 */
    double price_per_gb_s;  /* 0 -> AWS Lambda x86 price */
    size_t synthetic_params;/* > 0: no data or model, clients push noise deltas of this many
                             * floats (benchmarks of the merge path); no evaluation */
    int keep_updates;       /* 1 (default by flc_sim_cfg_init): keep update shards in the
                             * cache; 0: delete each round after it is recorded */
    flc_place_t place;      /* where the mergers run (issue 12): with enter set and a
                             * Redis Cluster behind redis, each round's merger of shard
                             * s first moves its thread next to the node owning s
                             * (flc_store_shard_node) and opens its store there, so it
                             * reaches that node over its unix socket; its store is
                             * reopened when the owner changes. Zero: the mergers run
                             * where the driver does (and so on one server) */
    flc_sim_invoke_t invoke;/* NULL: flc_sim_invoke_inproc */
    void *invoke_user;      /* for flc_sim_invoke_inproc: an flc_sim_inproc_t, or NULL:
                             * 2 threads with the store_opts above */
} flc_sim_cfg_t;

/* One finished round, as the progress callback and the result see it. */
typedef struct flc_sim_round {
    uint32_t round;
    double accuracy, loss;       /* global model on the test set; -1 when not evaluated */
    double train_loss;           /* weighted mean local loss of the participants */
    size_t sampled, participants, missing, rejected, dropped, late, faulty_sampled;
    double round_ms, clients_ms, merge_ms, wait_ms, eval_ms;
    uint64_t bytes;              /* moved through the cache by everyone this round */
    double cost_usd;             /* client invocations + aggregator estimate */
    int merged;                  /* 0 when no update could be merged (model unchanged) */
    char merge_error[256];       /* why not, when merged is 0: the first failing merger's
                                  * or the pull's error ("" when merged); also kept in the
                                  * round's RoundMeta notes as merge_error */
    /* A Redis Cluster failover during the round (clients/sim_failover.c): */
    size_t resent;               /* clients invoked again: their acknowledged update was
                                  * lost, or their invocation failed, in a failover */
    char resent_names[256];      /* "c3, c7" (RoundMeta note resent_after_failover) */
    size_t lost;                 /* acknowledged updates still lost: the round failed */
    char lost_names[256];        /* "c3" (in merge_error and note lost_in_failover) */
} flc_sim_round_t;

typedef void (*flc_sim_progress_t)(const flc_sim_round_t *r, int rounds, double elapsed_s,
                                   void *user);

typedef struct flc_sim_result {
    double init_accuracy, init_loss;
    flc_sim_round_t *rounds;     /* nrounds entries */
    size_t nrounds;
    size_t nparams;
    size_t eligible;             /* clients with at least one sample */
    size_t faulty_clients;
    double wall_ms;
    double cost_usd;
    uint64_t bytes;
    uint32_t resumed_after;      /* resume: the job's last closed round it continued from */
    int resumed_partial;         /* resume: the round after it had begun (a run stopped in
                                  * it) and was cleared to run again */
} flc_sim_result_t;

/* Defaults: job "sim", N 100, K 10, R 50, alpha 0.5, E 1, fedavg, softmax,
 * seed 1, keep_updates 1, krum_f -1. */
void flc_sim_cfg_init(flc_sim_cfg_t *c);

/* Fills derived defaults and checks every field; FLC_EINVAL naming it. */
int flc_sim_cfg_finish(flc_sim_cfg_t *c, flc_err_t *e);

/* Client i's name: "c<i>". */
void flc_sim_client_name(char *out, size_t len, int i);

/* Deletes every round of job and "<job>/g" (a rerun of the same job),
 * their cold copies too when opts attach a cold tier (opts may be NULL). */
int flc_sim_clear(const char *redis, const flc_store_opts_t *opts, const char *job,
                  flc_err_t *e);

/* Runs the simulation (blocks). progress (may be NULL) is called after
 * every round. On success res holds every round; free with
 * flc_sim_result_free. Errors: FLC_EINVAL (config), FLC_EIO (data),
 * FLC_ECONN (cache), or the first client or merge failure that stopped a
 * round (clients that fail count as missing; the run stops only when the
 * platform itself fails). */
int flc_sim_run(const flc_sim_cfg_t *c, flc_sim_progress_t progress, void *user,
                flc_sim_result_t *res, flc_err_t *e);

void flc_sim_result_free(flc_sim_result_t *r);

/* The arguments the run that wrote job's checkpoint stored (cfg.resume_args;
 * "" when none) into *args (malloc'd, caller frees) and its last closed
 * round into *round (may be NULL). FLC_ENOTFOUND naming the job when it has
 * no checkpoint: it never closed a round, or does not exist. */
int flc_sim_resume_args(const char *redis, const flc_store_opts_t *opts, const char *job,
                        char **args, uint32_t *round, flc_err_t *e);

/* The result as JSON: {"init_accuracy":..,"rounds":[{...}],...}; new object. */
struct cJSON *flc_sim_result_json(const flc_sim_cfg_t *c, const flc_sim_result_t *r);

#endif
