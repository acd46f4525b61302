/* The synchronous SGD worker (LambdaML-style data-parallel training on
 * functions): W workers each own one IID part of the training set, and at
 * every step each computes its minibatch gradient, exchanges it through the
 * cache with the reduce-scatter protocol (aggregator/reduce_scatter.h), and
 * applies the averaged gradient. Every worker applies the same merged bytes
 * read from the cache, so all W models stay bit-identical (the result's
 * checksum lets a driver assert it).
 *
 * Data: every worker loads the same train set (the first `subset` samples
 * when subset > 0), fits per-feature standardization on all of it (same
 * statistics everywhere), splits it with flc_split_iid(n, W, seed) and keeps
 * only its part, so no worker talks to another to learn its data. Every
 * worker takes the same number of steps per epoch: floor(floor(n/W) / batch)
 * (the smallest part, short batches dropped).
 *
 * Communication modes:
 *   reduce-scatter  S = W shards; worker k pushes its W shards, then runs
 *                   the merger of shard k (flc_rs_merger_run), then pulls.
 *   allreduce-one   S = 1 shard; worker 0 runs the only merger.
 * The rule is "mean"; expected contributors and readers are w0..w{W-1}.
 * The exchanged vector is the gradient with the minibatch loss appended
 * (nparams + 1 floats), so the merge also yields the mean loss over workers.
 *
 * Key scheme (job J; see cache/keys.h for the shard-level keys):
 *   job "J/steps", round g = global step 1..E*steps: the step exchanges
 *     (fl:{J/steps/s<s>~<k>}:c:w<k>:u:<g>, :r:<g>:agg, :r:<g>:done, ...). Rounds are
 *     deleted as training goes: after its pull of step g, worker (g mod W)
 *     deletes round g-2 (every worker has finished reading it, since every
 *     worker pushed g only after pulling g-1), with one multi-key UNLINK
 *     per shard. The last rounds are given a
 *     10-minute expiry; a driver deletes them at once with flc_sgd_cleanup.
 *   fl:{J/steps/s0~<k>}:r:0:ready and :go: the start barrier (an INCR counter and
 *     a list of W tokens) that lines the workers up after loading data.
 *   job "J", round e = epoch 1..E: RoundMeta written by worker 0 after its
 *     test evaluation (flc_store_put_round_meta): metrics train_loss,
 *     test_accuracy, test_loss, steps, step_ms_mean, step_ms_p50,
 *     step_ms_max, compute_ms, comm_ms, merge_ms, wait_ms, eval_ms,
 *     epoch_ms; round_ms = epoch wall time; cost_usd = W * epoch seconds *
 *     memory GB * price when memory_mb > 0 (an estimate: the platform bills
 *     whole invocations); hyperparams lr, batch, workers, epochs, hidden,
 *     num_shards, seed, subset; notes model, comm, steps_job.
 *   fl:{J/j}:progress: a list of JSON records RPUSHed by worker 0 (a driver
 *     BLPOPs it; nobody polls):
 *       {"type":"step","epoch":e,"epochs":E,"step":s,"steps":n,"gstep":g,
 *        "total":T,"loss":l,"step_ms":t}            every progress_every steps
 *       {"type":"epoch","epoch":e,...,"loss":l,"accuracy":a,"epoch_ms":t}
 *       {"type":"done","gstep":T}
 *     and by any worker that fails: {"type":"error","rank":k,"error":"..."}.
 *     The list expires after an hour.
 *
 * A worker whose merge finds a contributor missing or rejected (a worker
 * died or was too slow for step_timeout_ms) fails the training: synchronous
 * SGD has no partial steps. */
#ifndef FLC_WORKERS_SGD_WORKER_H
#define FLC_WORKERS_SGD_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "cache/store.h"

struct cJSON;

enum {
    FLC_SGD_COMM_RS = 0,  /* reduce-scatter: S = W, worker k merges shard k */
    FLC_SGD_COMM_ONE = 1, /* allreduce-to-one: S = 1, worker 0 merges */
    FLC_SGD_COMM_PS = 2,  /* parameter server (workers/ps.h): gradients go to one
                             long-lived process over a socket, the model comes back */
};

/* Defaults (README and `flcache train --help` quote them). */
#define FLC_SGD_BATCH_DEFAULT 64
#define FLC_SGD_LR_SOFTMAX 0.05
#define FLC_SGD_LR_MLP 0.1
#define FLC_SGD_STEP_TIMEOUT_DEFAULT 120000u
#define FLC_SGD_SEED_DEFAULT 1

/* One worker's configuration. Strings are borrowed (from the event or the
 * caller) and must outlive flc_sgd_run. */
typedef struct flc_sgd_cfg {
    const char *job;         /* 1..58 characters of [A-Za-z0-9_.@+-] */
    int rank;                /* 0..workers-1 */
    int workers;             /* W >= 1 */
    const char *model;       /* "softmax" or "mlp" */
    size_t hidden;           /* mlp hidden units; 0: FLC_MLP_HIDDEN_DEFAULT */
    int epochs;              /* >= 1 */
    size_t batch;            /* per worker; 0: FLC_SGD_BATCH_DEFAULT */
    double lr;               /* 0: by model (FLC_SGD_LR_*) */
    int comm;                /* FLC_SGD_COMM_* */
    const char *init;        /* .npy/.safetensors file of the model to start from, read
                              * by every worker (so a path all of them see); NULL: seed */
    const char *rule;        /* merge rule spec of the gradients (README's rule table);
                              * NULL: "mean" */
    uint32_t num_shards;     /* 0: W (reduce-scatter) or 1 (allreduce-one) */
    const char *data_dir;    /* Fashion-MNIST dir; NULL: FLC_FASHION_DIR */
    size_t subset;           /* train samples used (first N); 0: all */
    size_t test_subset;      /* test samples evaluated (first N); 0: all */
    uint64_t seed;           /* model init, split and shuffles */
    const char *redis;       /* cache URL (required by flc_sgd_run) */
    const char *ps;          /* comm ps: the server's address, "unix:PATH" or
                              * "tcp:127.0.0.1:PORT" (workers/ps.h) */
    const flc_store_opts_t *store_opts; /* the worker's store options; NULL: built-in */
    unsigned step_timeout_ms;/* per exchange; 0: FLC_SGD_STEP_TIMEOUT_DEFAULT */
    unsigned progress_every; /* steps between progress records; 0: ~10 per epoch */
    unsigned memory_mb;      /* function memory, for the cost estimate; 0: no cost */
    double price_per_gb_s;   /* USD per GB-second for the estimate */
    int resume_after;        /* > 0: continue job from this closed epoch (workers/sgd_resume.c):
                              * the model of job "<job>/g" round resume_after, the shuffles
                              * replayed; 0: a new run */
    const char *resume_args; /* stored in each epoch's checkpoint for `train --resume` (the
                              * CLI's arguments, JSON); NULL: none */
} flc_sgd_cfg_t;

/* What one worker reports at the end. */
typedef struct flc_sgd_result {
    int rank;
    uint64_t steps;          /* steps taken (epochs * steps per epoch) */
    size_t steps_per_epoch;
    size_t train_samples;    /* this worker's part */
    size_t nparams;
    double final_loss;       /* mean train loss over workers, last epoch */
    double accuracy;         /* test accuracy after the last epoch (worker 0), else -1 */
    double test_loss;        /* worker 0, else -1 */
    uint64_t checksum;       /* FNV-1a 64 of the final parameter bytes */
    double load_ms;          /* loading and preparing data (counted as compute) */
    double compute_ms;       /* gradients, steps, evaluation, loading */
    double comm_ms;          /* push, merge (incl. waiting for others), pull, cleanup */
    double merge_ms;         /* part of comm_ms: this worker's merger work */
    double wait_ms;          /* part of comm_ms: its merger waiting for arrivals */
    double cleanup_ms;       /* part of comm_ms: deleting old step rounds */
    double eval_ms;          /* part of compute_ms: test evaluation (worker 0) */
    double start_wait_ms;    /* waiting for every worker to load (neither compute nor comm) */
    double wall_ms;
} flc_sgd_result_t;

/* Fills *c with the defaults above (job "train", rank 0, W 1, softmax,
 * 1 epoch, reduce-scatter). */
void flc_sgd_cfg_init(flc_sgd_cfg_t *c);

/* Fills the defaults that depend on other fields (lr by model, batch,
 * num_shards by comm, step timeout) and checks every field; FLC_EINVAL
 * naming the bad field. */
int flc_sgd_cfg_finish(flc_sgd_cfg_t *c, flc_err_t *e);

/* "reduce-scatter" / "allreduce-one" <-> FLC_SGD_COMM_*. parse also takes
 * "reduce_scatter", "rs", "allreduce_one" and "one"; it sets *out and
 * returns 0, or FLC_EINVAL (*out untouched) for an unknown name or NULL. */
const char *flc_sgd_comm_name(int comm);
int flc_sgd_comm_parse(const char *name, int *out);

/* The worker event for c ({"role":"worker","job":...,"rank":...}); new
 * object, the caller frees with cJSON_Delete. NULL when out of memory. */
struct cJSON *flc_sgd_cfg_to_json(const flc_sgd_cfg_t *c);

/* Reads a worker event into *c (after flc_sgd_cfg_init; strings borrowed
 * from ev) and finishes it. FLC_EINVAL naming the missing or bad field. */
int flc_sgd_cfg_from_json(flc_sgd_cfg_t *c, const struct cJSON *ev, flc_err_t *e);

/* Runs one worker to the end (blocks for the whole training). Fails with
 * FLC_EIO naming the data path, FLC_ECONN for the cache, FLC_ETIMEOUT when
 * a step's exchange did not complete within step_timeout_ms, FLC_EDATA when
 * a merge lacked a worker. On failure it also pushes an error record on the
 * progress list when the cache is reachable. */
int flc_sgd_run(const flc_sgd_cfg_t *c, flc_sgd_result_t *r, flc_err_t *e);

/* The result as JSON: rank, steps, steps_per_epoch, train_samples,
 * nparams, final_loss, accuracy (null unless worker 0), test_loss,
 * checksum (16 hex digits), load_ms, compute_ms, comm_ms, merge_ms,
 * wait_ms, cleanup_ms, eval_ms, start_wait_ms, wall_ms. New object; NULL when out of memory. */
struct cJSON *flc_sgd_result_json(const flc_sgd_result_t *r);

/* The "worker" role of flcache-fn: event -> config -> flc_sgd_run ->
 * *result (flc_sgd_result_json). The event's "redis" and "data" win over
 * sc->url and data_dir; the store takes sc's options (sc and data_dir may
 * be NULL). *compute_ms / *comm_ms (either may be NULL) receive the
 * worker's split for the platform's record. BLAS threads are the caller's
 * business: W workers on one machine want one each (flcache-fn sees to it). */
int flc_sgd_worker_fn(const flc_store_cfg_t *sc, const char *data_dir,
                      const struct cJSON *event, struct cJSON **result, double *compute_ms,
                      double *comm_ms, flc_err_t *e);

/* FNV-1a 64-bit hash of n bytes (the model checksum). */
uint64_t flc_fnv1a64(const void *p, size_t n);

/* "J/steps" into out (outlen >= FLC_NAME_MAX + 1); FLC_EINVAL when job is
 * too long to leave room for the suffix. */
int flc_sgd_steps_job(char *out, size_t outlen, const char *job, flc_err_t *e);

/* Deletes what a finished (or failed) training left behind: every remaining
 * step round of "J/steps", its entry in the job index, the progress list
 * and the start barrier's keys. Epoch metadata of J stays. Call after every
 * worker returned (or before starting a job name again). */
int flc_sgd_cleanup(flc_store_t *s, const char *job, flc_err_t *e);

/* The checkpoint of job's last closed epoch (written by worker 0 after
 * each epoch, workers/sgd_resume.c): the stored arguments (cfg.resume_args,
 * malloc'd, caller frees) and that epoch. FLC_ENOTFOUND naming the job
 * when it has none. */
int flc_sgd_resume_args(flc_store_t *s, const char *job, char **args, int *epoch,
                        flc_err_t *e);

#endif
