/* The reduce-scatter protocol over the store (LambdaML's ScatterReduce,
 * without polling), and AllReduce-to-one as its one-shard case.
 *
 * The flat model of model_size floats is split into S shards
 * (flc_rs_shard_range). One round:
 *   1. every contributor pushes its update: shard s under shard s's hash tag
 *      T, fl:{T}:c:<client>:u:<r>, each frame carrying the whole update's L2
 *      norm (clipping needs it) and its weight; the store pushes a token on
 *      the client's own arrival list fl:{T}:c:<client>:a:<r>.  flc_rs_push
 *   2. the merger of shard s writes the round's roster (its expected
 *      clients), blocks on their arrival lists (one BLPOP), folds each
 *      update as it lands (streaming rules) or collects them (median, trimmed
 *      mean, Krum), until every expected contributor arrived or the deadline
 *      passed; then it closes the shard, writes fl:{T}:r:<r>:agg with one
 *      "done" token per reader (one round trip) and then records its
 *      report.                                               flc_rs_merger_run
 *   3. every reader waits for the S done tokens and reads the merged shards
 *      into the full model.                                  flc_rs_pull
 * With S = 1 this is AllReduce-to-one: one merger for the whole model.
 *
 * Edge cases, each recorded in the shard's report and the round metadata:
 *   - a contributor that never arrives: the merger merges who arrived at the
 *     deadline and lists the missing;
 *   - a duplicate arrival (a retried push): counted once;
 *   - a late update (pushed after the shard closed): stored and kept for
 *     queries, but not merged; flc_rs_push returns FLC_ECLOSED, or the
 *     merger lists it as rejected "late" when it raced with the close;
 *   - NaN/Inf, wrong dimensions: rejected, named;
 *   - an unexpected client: its update stays under its own keys; no merger
 *     waits on its list, so it is neither merged nor reported (nor listed
 *     by queries, which go by the roster).
 *
 * Server-optimizer rules keep state per shard between rounds: in memory when
 * the caller passes it (in-process use), otherwise in the cache at
 * fl:{T}:opt, on the node of the shard's round data, so stateless
 * aggregator functions can run them. */
#ifndef FLC_AGGREGATOR_REDUCE_SCATTER_H
#define FLC_AGGREGATOR_REDUCE_SCATTER_H

#include <stddef.h>
#include <stdint.h>

#include "aggregator/merge.h"
#include "base/error.h"
#include "cache/store.h"

struct cJSON;

/* Shard s of a model of n floats split into S: sizes differ by at most one,
 * the first n % S shards are one longer. */
void flc_rs_shard_range(uint64_t n, uint32_t S, uint32_t s, uint64_t *offset, uint64_t *count);

/* ---- contributors ------------------------------------------------------ */

typedef struct flc_rs_push_cfg {
    const char *job;
    uint32_t round;
    const char *client;
    uint32_t num_shards;
    uint64_t model_size;
    uint64_t num_samples; /* merge weight of weighted rules (FedAvg); 0 counts as 1 */
} flc_rs_push_cfg_t;

/* Pushes update[0..model_size) as num_shards shards. Checks NaN/Inf first
 * (FLC_ENONFINITE naming the element; nothing stored). Returns FLC_ECLOSED
 * when a shard's merger had already closed the round: the update is kept in
 * the cache for queries but will not be merged. */
int flc_rs_push(flc_store_t *s, const flc_rs_push_cfg_t *cfg, const float *update,
                flc_err_t *e);

/* flc_rs_push without the shards whose skip[k] is 1: their merger runs in
 * this process and takes the update from memory (flc_rs_merger_run_own),
 * so they are neither stored nor announced. */
int flc_rs_push_skip(flc_store_t *s, const flc_rs_push_cfg_t *cfg, const unsigned char *skip,
                     const float *update, flc_err_t *e);

/* Waits (BLPOP, up to timeout_ms in all) for every shard's done token, then
 * reads the merged shards into model[0..model_size). FLC_ETIMEOUT names the
 * shards still missing; a merger that failed passes its error on. */
int flc_rs_pull(flc_store_t *s, const char *job, uint32_t round, uint32_t num_shards,
                uint64_t model_size, unsigned timeout_ms, float *model, flc_err_t *e);

/* flc_rs_pull for the shards whose have[k] is 0 (have NULL: all): the
 * others are in model already (their merger ran in this process and
 * copied its merged shard there, flc_rs_own_t.merged_out), so they
 * are neither waited for nor read back. */
int flc_rs_pull_except(flc_store_t *s, const char *job, uint32_t round, uint32_t num_shards,
                       uint64_t model_size, unsigned timeout_ms, const unsigned char *have,
                       float *model, flc_err_t *e);

/* ---- mergers ----------------------------------------------------------- */

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
    unsigned readers;            /* done tokens to push; 0: n_expected */
    flc_merge_state_t *state;    /* stateful rules: in-memory state, or NULL: in the cache */
    int ephemeral;               /* 1: a round nobody will query (an SGD step): skip the
                                  * merge report, round metadata and tracker entry */
    int derive_stats;            /* 1: after the merge, compute this shard's Gram partial of
                                  * the round (clients x clients and the aggregate, see
                                  * aggregator/query.h) and cache it beside the shard, so
                                  * later queries read N^2 numbers instead of N updates */
    int driver_records;          /* 1: a driver opened the round (flc_store_round_begin: the
                                  * job's indexes and roster) and folds its RoundMeta
                                  * (flc_rs_round_meta): the merger writes neither, so its
                                  * ACL needs no write on any job-wide key (least privilege) */
    size_t window_bytes;         /* a streaming rule folds each float32 update, and fedavg,
                                  * mean, median and trimmed mean write the merged shard,
                                  * this many bytes at a time, so the merger's memory is
                                  * bounded by its shard (issue 14): 0 = 8 MiB;
                                  * FLC_RS_WINDOW_WHOLE = whole values (the old path) */
} flc_rs_merger_cfg_t;

#define FLC_RS_WINDOW_WHOLE ((size_t)-1)

/* What one shard's merge did; also stored in the cache (fl:{J/j}:merges:<r>,
 * field = shard) and folded into the round's RoundMeta by the last merger. */
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
    char error[256];            /* why the merge failed ("" when it did not): stored with
                                 * the report, so the round's RoundMeta says "failed"
                                 * and names it instead of listing participants */
} flc_rs_report_t;

void flc_rs_report_free(flc_rs_report_t *r);

/* The driver's side of driver_records: folds every shard's stored merge
 * report of cfg's round into its RoundMeta (participants are the clients
 * every shard merged; a shard's error makes it "failed: ..."), as the last
 * merger does otherwise. FLC_ENOTFOUND when no shard reported. */
int flc_rs_round_meta(flc_store_t *s, const flc_rs_merger_cfg_t *cfg, flc_err_t *e);

/* Runs the merger of one shard for one round (blocks until every expected
 * contributor arrived or the deadline). Writes the merged shard, the report
 * and the done tokens. Fails (and pushes "error: ..." tokens so readers do
 * not wait in vain) when no update could be merged. */
int flc_rs_merger_run(flc_store_t *s, const flc_rs_merger_cfg_t *cfg, flc_rs_report_t *rep,
                      flc_err_t *e);

/* A merger running in the process of one of its contributors (an SGD
 * worker merging its own shard): client (one of cfg->expected) is taken
 * first, from update (the shard's count floats), with the weight and
 * norm its frame would carry (weight, the whole update's L2 norm), and was
 * not pushed for this shard (flc_rs_push_skip). merged_out (not NULL)
 * receives the merged shard's floats too, so that reader takes them from
 * memory (flc_rs_pull_except). Not in the installed header: the worker's
 * own business. */
typedef struct flc_rs_own {
    const char *client;
    const float *update;
    double weight, norm;
    float *merged_out;
} flc_rs_own_t;

/* flc_rs_merger_run with own (NULL: the same as flc_rs_merger_run). */
int flc_rs_merger_run_own(flc_store_t *s, const flc_rs_merger_cfg_t *cfg,
                          const flc_rs_own_t *own, flc_rs_report_t *rep, flc_err_t *e);

/* ---- the aggregator function ------------------------------------------ */

/* The "aggregator" role: event
 *   {"job":"J", "round":3, "shard":0, "num_shards":4, "model_size":1000,
 *    "rule":"fedavg" | {"rule":"krum","f":1}, "expected":["c0","c1"],
 *    "deadline_ms":5000, "readers":2, "derive_stats":true, "window_bytes":8388608,
 *    "redis":"unix:///..."}
 * The store is opened with sc's options at the event's "redis", else at
 * sc->url (sc may be NULL: built-in options, the event must name the
 * cache). On success *result is the report as
 * JSON: participants, missing, rejected, duplicates, clipped, bytes_read,
 * wait_ms, merge_ms. Once the merger ran (ok or not), *comm_ms receives the
 * connect time plus the blocked wait for arrivals and *compute_ms the merge
 * (either may be NULL; both untouched when the event is refused). */
int flc_rs_aggregator_fn(const flc_store_cfg_t *sc, const struct cJSON *event,
                         struct cJSON **result, double *compute_ms, double *comm_ms,
                         flc_err_t *e);

#endif
