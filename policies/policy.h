/* Caching policies: what stays hot in Redis, what is spilled to the cold
 * tier first, what is re-warmed and prefetched. Each policy is a small
 * module behind the interface of cache/cold_policy.h (on_put, on_get,
 * on_round_closed, choose_victims, prefetch), chosen per job by a spec:
 *
 *   lru        least recently used object is spilled first; every object read
 *              back from the cold tier is re-warmed (the baseline)
 *   window:K   update shards of the last K rounds stay hot; older rounds keep
 *              only merged shards hot (metadata and statistics are never
 *              spilled); older updates go oldest round first
 *   workload   learns from the mix of query classes (flc_store_set_query_class):
 *              keeps the latest round's updates hot while round queries
 *              (clustering, outliers, similarity) are frequent, keeps the
 *              histories of clients that are queried repeatedly, always keeps
 *              merged shards; re-warms only what the mix says will be read
 *              again, and when a round closes prefetches the hot clients'
 *              histories
 *
 * Attach one to a store with flc_store_attach_tier. A policy is not thread
 * safe (one per store, like the store). */
#ifndef FLC_POLICIES_POLICY_H
#define FLC_POLICIES_POLICY_H

#include "base/error.h"
#include "cache/cold_policy.h"

/* Creates the policy named by spec ("lru", "window:K" with K >= 1,
 * "workload"). NULL with FLC_EINVAL in *err for an unknown spec. */
flc_policy_t *flc_pol_new(const char *spec, flc_err_t *err);

flc_policy_t *flc_pol_lru_new(void);
flc_policy_t *flc_pol_window_new(unsigned k);
flc_policy_t *flc_pol_workload_new(void);

/* Frees p. NULL is a no-op. */
void flc_pol_free(flc_policy_t *p);

/* 1 when the policy believes o is in Redis, 0 when cold, -1 when unknown. */
int flc_pol_is_hot(const flc_policy_t *p, const flc_obj_t *o);

/* Objects the policy tracks (live, hot or cold). */
size_t flc_pol_count(const flc_policy_t *p);

#endif
