/* Private to aggregator/: pieces of the reduce-scatter merger shared between
 * its files (rs_merger.c runs the round, rs_report.c records it, rs_state.c
 * keeps server-optimizer state in the cache). */
#ifndef FLC_AGGREGATOR_RS_INTERNAL_H
#define FLC_AGGREGATOR_RS_INTERNAL_H

#include "aggregator/reduce_scatter.h"

struct cJSON;

/* The report as a JSON object (new; caller deletes). NULL when out of memory. */
struct cJSON *flc_rs_report_json(const flc_rs_report_t *rep);

/* Stores rep in fl:{J/j}:merges:<r> (field = shard). When every shard of the
 * round has reported, folds the reports into the round's RoundMeta (keeping
 * what a driver already wrote there: hyperparameters, metrics, notes). */
int flc_rs_report_store(flc_store_t *s, const flc_rs_merger_cfg_t *cfg,
                        const flc_rs_report_t *rep, flc_err_t *e);

/* Loads the server state of (job, shard) from the cache into st, when there
 * is one (FLC_ENOTFOUND otherwise, st untouched). */
int flc_rs_state_load(flc_store_t *s, const char *job, uint32_t shard, flc_merge_state_t *st,
                      flc_err_t *e);

/* Saves st as the server state of (job, shard). */
int flc_rs_state_save(flc_store_t *s, const char *job, uint32_t shard,
                      const flc_merge_state_t *st, flc_err_t *e);

/* Krum / Multi-Krum with one selection shared by all shards' mergers: this
 * shard's kept updates (kept_idx: their indexes in cfg->expected; scale:
 * their pre-merge factors) take part in a whole-model selection through
 * the cache. Writes this shard's merge into out[0..count) and marks the
 * selected updates in used[0..nkept). Waits up to wait_ms for the others. */
int flc_rs_krum(flc_store_t *s, const flc_rs_merger_cfg_t *cfg, float *const *kept,
                const long *kept_idx, size_t nkept, uint64_t count, const double *scale,
                unsigned wait_ms, float *out, unsigned char *used, flc_err_t *e);

/* The whole model's pairwise squared distances of the expected clients'
 * updates, into D (n_expected^2, indexes of cfg->expected): this shard's
 * partial from its kept updates, summed with every other shard's through the
 * cache when there are several (as flc_rs_krum does). present[x] ends 1 for
 * the clients every shard kept. */
int flc_rs_dist_exchange(flc_store_t *s, const flc_rs_merger_cfg_t *cfg, float *const *kept,
                         const long *kept_idx, size_t nkept, uint64_t count, const double *scale,
                         unsigned wait_ms, double *D, unsigned char *present, flc_err_t *e);

/* Bulyan with one selection for the whole model (flc_rs_dist_exchange), ties
 * broken by client id, then the coordinate-wise step on this shard's slice.
 * Arguments as flc_rs_krum; used marks the theta selected updates. */
int flc_rs_bulyan(flc_store_t *s, const flc_rs_merger_cfg_t *cfg, float *const *kept,
                  const long *kept_idx, size_t nkept, uint64_t count, const double *scale,
                  unsigned wait_ms, float *out, unsigned char *used, flc_err_t *e);

#endif
