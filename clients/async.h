/* Asynchronous federated learning in simulation: `flcache simulate --mode
 * async` (FedBuff, Nguyen et al. AISTATS 2022), and `--mode sync-clock`,
 * synchronous FedAvg on the same simulated clock (its baseline).
 *
 * Clients run continuously: C of them train at once, each on the global
 * model version current when it started; its local training takes a
 * simulated time, the client's work (FLC_ASYNC_MS_PER_SAMPLE per sample and
 * epoch) plus a delay drawn from the straggler distribution (--straggler-ms).
 * When one finishes, its delta arrives with staleness tau = versions applied
 * since it started, and a new client (uniform among those not busy) starts
 * on the current model. Every K arrivals (the buffer) the server takes one
 * step: version v -> v+1 (aggregator/async.h: staleness weights, the
 * merger). An arrival with tau > max_staleness is refused: its update is
 * stored, listed in the version's roster and recorded as rejected, but not
 * folded (queries still find it).
 *
 * Why a simulated clock: who arrives when, and so every buffer and every
 * staleness, depends only on the seed, not on how fast this machine trains
 * (clients/async_sched.c schedules without training anything). Runs are
 * reproducible to the bit and fast: the driver then runs each buffer's
 * clients at once as client functions (each reads its own base version of
 * "<J>/g" and pushes into version v's keys, clients/client.h base_round),
 * starts one merger per shard (flc_async_merge_run), pulls the merged delta,
 * steps, evaluates and stores version v as round v of "<J>/g". Wall time is
 * not simulated time: sync and async are compared in simulated time.
 *
 * sync-clock: K clients start together on version v, the version is applied
 * when the last of them arrived (its time is the slowest client's), then K
 * new ones start: exactly FedAvg's rounds, staleness 0, timed on the clock.
 *
 * Records (the synchronous ones, version for round: clients/sim_record.c),
 * plus per update (ModelUpdate metrics): staleness, base_version,
 * staleness_weight, sim_start_ms, sim_end_ms; per version (RoundMeta):
 * metrics version, sim_time_ms, staleness_mean, staleness_max,
 * refused_stale; notes mode (async | sync-clock) and staleness; hyper-
 * parameters buffer, concurrency, max_staleness. `flcache query history`
 * shows such a job by version, `query client` with staleness. */
#ifndef FLC_CLIENTS_ASYNC_H
#define FLC_CLIENTS_ASYNC_H

#include <stddef.h>
#include <stdint.h>

#include "aggregator/async.h"
#include "clients/sim.h"

struct flc_rng;

/* Simulated compute time of a client per training sample and local epoch. */
#define FLC_ASYNC_MS_PER_SAMPLE 1.0

typedef enum flc_async_mode {
    FLC_ASYNC_MODE_SYNC = 0,   /* the synchronous driver (clients/sim.h), wall clock */
    FLC_ASYNC_MODE_ASYNC,      /* FedBuff on the simulated clock */
    FLC_ASYNC_MODE_SYNC_CLOCK, /* FedAvg rounds on the simulated clock */
} flc_async_mode_t;

/* "sync", "async", "sync-clock" -> *out; FLC_EINVAL for anything else. */
int flc_async_mode_parse(const char *name, flc_async_mode_t *out);
const char *flc_async_mode_name(flc_async_mode_t m);

typedef struct flc_async_cfg {
    flc_async_mode_t mode;
    const char *staleness;  /* staleness function spec (aggregator/async.h); NULL: constant */
    int max_staleness;      /* arrivals with tau > this are refused; -1: none */
    size_t buffer;          /* K: arrivals per server step; 0: the sim cfg's per_round */
    size_t concurrency;     /* C: clients training at once; 0: 2 x buffer (sync-clock: K) */
} flc_async_cfg_t;

/* One arrival, as the scheduler decides it. */
typedef struct flc_async_arrival {
    uint32_t client;       /* client index i of "c<i>" */
    uint32_t base;         /* the version it trained on */
    uint32_t staleness;    /* versions applied while it trained */
    int refused;           /* staleness > max_staleness: not folded */
    double start_ms, end_ms; /* simulated */
    double delay_ms;       /* the straggler part of end - start */
} flc_async_arrival_t;

typedef struct flc_async_sched flc_async_sched_t;

/* The clients' schedule. base_ms[i] is client i's compute time (0 for a
 * client with no sample, never chosen), eligible[0..neligible) the clients
 * that can be chosen; both are copied. FLC_EINVAL when concurrency or buffer
 * is 0 or larger than the eligible clients. */
int flc_async_sched_new(const flc_async_cfg_t *a, int barrier, const double *base_ms,
                        size_t nclients, const uint32_t *eligible, size_t neligible,
                        const flc_sim_straggler_t *straggler, uint64_t seed,
                        flc_async_sched_t **out, flc_err_t *e);
void flc_async_sched_free(flc_async_sched_t *s);

/* The arrivals of the next version's buffer, in arrival order: every
 * arrival until `buffer` were accepted (refused ones among them). *arr is
 * the scheduler's array, valid until the next call; *t_ms receives the
 * simulated time at which the version is applied. FLC_ENOMEM only. */
int flc_async_sched_next(flc_async_sched_t *s, const flc_async_arrival_t **arr, size_t *n,
                         double *t_ms, flc_err_t *e);

/* One version of an async run beyond what flc_sim_round_t says. */
typedef struct flc_async_version {
    double sim_ms;          /* simulated time the version was applied */
    double staleness_mean;  /* over the buffer's accepted arrivals */
    uint32_t staleness_max;
    size_t refused;         /* arrivals refused as too stale */
} flc_async_version_t;

typedef struct flc_async_result {
    flc_sim_result_t sim;        /* rounds[i] is version i+1 */
    flc_async_version_t *versions; /* sim.nrounds entries */
} flc_async_result_t;

/* Checks that c and a can run asynchronously (before flc_sim_cfg_finish:
 * a deadline is refused): FLC_EINVAL naming what is not supported (a rule
 * that does not stream, central or local DP, dropout, a deadline, synthetic
 * models) or a bad staleness spec. */
int flc_async_cfg_check(const flc_sim_cfg_t *c, const flc_async_cfg_t *a, flc_err_t *e);

/* Runs c (the simulation's settings; rounds = versions) in a's mode
 * (async or sync-clock; blocks). progress as flc_sim_run's. Refused with
 * FLC_EINVAL: what flc_async_cfg_check refuses. With c->place on a Redis
 * Cluster each version's merger of shard s runs next to the node owning s,
 * as the synchronous driver's do. Free with flc_async_result_free. */
int flc_async_run(const flc_sim_cfg_t *c, const flc_async_cfg_t *a, flc_sim_progress_t progress,
                  void *user, flc_async_result_t *res, flc_err_t *e);
void flc_async_result_free(flc_async_result_t *r);

/* The result as JSON (flc_sim_result_json's, plus mode, staleness, buffer,
 * concurrency and per round sim_ms, staleness_mean, staleness_max,
 * refused); new object. */
struct cJSON *flc_async_result_json(const flc_sim_cfg_t *c, const flc_async_cfg_t *a,
                                    const flc_async_result_t *r);

#endif
