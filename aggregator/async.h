/* Asynchronous federated learning on the aggregator's side (FedBuff,
 * Nguyen et al. AISTATS 2022; staleness functions of FedAsync, Xie et al.
 * 2019): the weight a delta gets for the model versions it missed, and the
 * buffered merger of one shard.
 *
 * In asynchronous FL a client trains on global model version v0 and its
 * delta arrives when the server is at version v >= v0: its staleness is
 * tau = v - v0. The server folds arriving deltas into a buffer and takes a
 * step every K arrivals (version v -> v+1):
 *     merged = sum_i n_i s(tau_i) delta_i / sum_i n_i
 * (n_i the sample weight of the streaming rule: num_samples for fedavg, 1
 * for mean), then global += merged, or the server optimizer's step from it.
 * With s = 1 this is FedAvg of the buffer; FedBuff divides by K (mean). The
 * denominator does not include s: a buffer of stale deltas moves the model
 * less, which is what down-weighting means (normalizing by sum s would undo
 * it).
 *
 * Each shard's buffer lives next to its shard: the updates of version v's
 * buffer are the clients' shard frames fl:{T}:c:<c>:u:<v> (the round number
 * is the version being built), and the shard's merger folds them and
 * writes fl:{T}:r:<v>:agg, its report and done tokens exactly as the
 * synchronous merger does for a round (aggregator/reduce_scatter.h), so
 * flc_rs_pull, flc_rs_round_meta and every query read versions as rounds. */
#ifndef FLC_AGGREGATOR_ASYNC_H
#define FLC_AGGREGATOR_ASYNC_H

#include <stddef.h>
#include <stdint.h>

#include "aggregator/reduce_scatter.h"
#include "base/error.h"

/* A staleness function s(tau), tau = versions missed (>= 0):
 *   constant      s = 1
 *   poly:a        s = (1 + tau)^-a                      (a >= 0; FedBuff: 0.5)
 *   hinge:a,b     s = 1 when tau <= b, else 1 / (a (tau - b) + 1)   (a, b >= 0)
 * as defined in FedAsync (Xie et al. 2019, section 5.2). */
typedef enum flc_async_stale_kind {
    FLC_ASYNC_CONSTANT = 0,
    FLC_ASYNC_POLY,
    FLC_ASYNC_HINGE,
} flc_async_stale_kind_t;

typedef struct flc_async_stale {
    flc_async_stale_kind_t kind;
    double a, b;
} flc_async_stale_t;

/* Parses "constant", "poly:A" or "hinge:A,B" (NULL or "" is constant) into
 * *out. FLC_EINVAL naming the spec and the forms otherwise (*out untouched). */
int flc_async_stale_parse(const char *spec, flc_async_stale_t *out, flc_err_t *e);

/* s(tau) of the function (in (0, 1]). */
double flc_async_stale_weight(const flc_async_stale_t *s, uint32_t tau);

/* The canonical spec ("poly:0.5"); returns what snprintf returns. */
int flc_async_stale_format(const flc_async_stale_t *s, char *buf, size_t len);

/* One shard's fold of one version's buffer. rs says the job, version (as
 * rs.round), shard, shard count, model size, rule (a streaming rule:
 * flc_merge_rule_streams; central DP noise is not supported here), the
 * buffer's clients in arrival order (rs.expected, n_expected), readers,
 * state and derive_stats; the driver opened the version's records
 * (flc_store_round_begin: roster = the buffer) and folds its RoundMeta,
 * so rs.driver_records must be 1. Every client of the buffer has pushed
 * before the merger runs (the driver's simulated clock decides who is in
 * the buffer), so the merger reads them in buffer order and the fold,
 * hence the model, is the same bits on every run. */
typedef struct flc_async_merge_cfg {
    flc_rs_merger_cfg_t rs;
    const double *scale;        /* per expected client: its staleness weight s(tau) */
    const char *const *refuse;  /* per expected client: NULL to fold, or why it is refused
                                 * (too stale): shard 0 reports it as rejected (one line per
                                 * client in the version's RoundMeta), its update stays in
                                 * the cache for queries. NULL: none refused */
} flc_async_merge_cfg_t;

/* Folds the buffer into shard rs.shard of version rs.round: reads each
 * client's shard (a missing or malformed one, NaN/Inf, is rejected and
 * named), folds n_i s_i delta_i (with clipping: times min(1, clip/norm)),
 * finishes with the rule (server optimizers step from the weighted mean
 * with rs.state, or state kept in the cache at fl:{T}:opt), closes the
 * shard (later pushes for this version are refused), writes the merged
 * shard, the report (participants, rejected, missing) and rs.readers done
 * tokens, then the Gram partial for queries when rs.derive_stats.
 * FLC_ETIMEOUT when no update could be folded (the report says why;
 * readers get "error: ..."), FLC_EINVAL for a rule that does not stream,
 * store errors as the store gives them. */
int flc_async_merge_run(flc_store_t *s, const flc_async_merge_cfg_t *cfg, flc_rs_report_t *rep,
                        flc_err_t *e);

#endif
