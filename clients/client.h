/* The federated client function ("client" role of flcache-fn): one sampled
 * client's work in one round of a simulation.
 *
 *   1. read the global model of the previous round from the cache (the
 *      driver's merged-shard record of job "<J>/g", round r-1, one shard);
 *   2. train a local copy for local_epochs passes over the client's own
 *      samples (an index list into Fashion-MNIST train, carried in the
 *      event: a client's data is never copied anywhere) with minibatch SGD,
 *      adding the FedProx proximal term mu/2 ||w - w_global||^2 when mu > 0;
 *   3. apply the client's fault, if it is a faulty one (ground truth of the
 *      simulation): label-flip (trains on label 9-y), sign-flip (sends
 *      -scale * delta), noise (sends Gaussian noise of scale * ||delta||);
 *   4. wait delay_ms (a straggler), then push the delta (local - global) with
 *      reduce-scatter (flc_rs_push, weight = num_samples). A push after the
 *      round closed returns FLC_ECLOSED: the update stays in the cache for
 *      queries and the client reports status "late".
 *
 * Event (JSON), fields with defaults in brackets:
 *   job, round (>= 1), client, indices [array of sample indexes], redis
 *   [the role's store URL], global_job ["<job>/g"], model ["softmax"], hidden [0],
 *   lr [0.05], batch [32], local_epochs [1], mu [0], seed [1], data_dir
 *   [the role's data dir],
 *   subset [0: all], num_shards [1], fault ["none"], fault_scale [4],
 *   delay_ms [0], base_round [round - 1: the global model it trains on; asynchronous
 *   FL (clients/async.h) trains on an older version and pushes into the buffer of
 *   `round`], synthetic_params [0: real training; P: no data, the delta
 *   is small uniform noise of P floats, for benchmarks of the merge path].
 * Result: client, status (accepted|late), num_samples, loss (mean local
 *   loss of the last epoch), loss_start (mean loss of the first epoch),
 *   update_norm (of what was sent), local_steps, compute_ms, comm_ms,
 *   delay_ms, bytes_read, bytes_written, wall_ms. */
#ifndef FLC_CLIENTS_CLIENT_H
#define FLC_CLIENTS_CLIENT_H

#include "base/error.h"
#include "cache/store.h"

struct cJSON;

enum {
    FLC_FAULT_NONE = 0,
    FLC_FAULT_SIGN_FLIP,
    FLC_FAULT_LABEL_FLIP,
    FLC_FAULT_NOISE,
};

/* "none", "sign-flip", "label-flip", "noise" <-> FLC_FAULT_*; "?" for a
 * value out of range. parse sets *out and returns 0, or FLC_EINVAL (*out
 * untouched) for an unknown name or NULL ('_' may stand for '-'). */
const char *flc_client_fault_name(int fault);
int flc_client_fault_parse(const char *name, int *out);

/* Runs the client role on event; on success *result is a new object (the
 * result above). The store is opened with sc's options at the event's
 * "redis", else at sc->url; the data comes from the event's "data_dir",
 * else data_dir, else FLC_FASHION_DIR (sc and data_dir may be NULL).
 * *compute_ms / *comm_ms (either may be NULL) receive the client's own
 * split for the platform's record. Errors: FLC_EINVAL naming
 * a bad event field, FLC_EIO for the data, FLC_ECONN / FLC_ENOTFOUND for
 * the cache (no global model for round r-1). A late push is not an error. */
int flc_client_fn(const flc_store_cfg_t *sc, const char *data_dir, const struct cJSON *event,
                  struct cJSON **result, double *compute_ms, double *comm_ms, flc_err_t *e);

#endif
