/* The request tracker: where each (job, round, shard) lives, so a query is
 * routed to a worker next to the data it needs without scanning keys.
 *
 * One small record per shard and round, fl:{J/j}:s<s>:where:<r>, value =
 * "<store URL, credentials redacted>|<tier>|<node id>|<node address>"
 * (tier: hot, or cold once the shard's updates were spilled to the object
 * store). The URL is the one the writer connected to, which on a Redis
 * Cluster is the seed for every merger; so the node that owns the shard's
 * slot is recorded too, from the slot map (id "" and the URL as address on
 * one server). Entries of before, "<URL>|<tier>", still read (id "",
 * address = URL). Written by the shard's merger when it closes the round
 * (and by whoever moves the shard later); read by the query planner.
 *
 * What an entry says is never where anyone connects: it is a value whoever
 * may write the job's keys can write, and connecting where it points would
 * hand the caller's user and password to that host (issue 13 finding 1).
 * Shard workers connect with the caller's own URL, or to the node the
 * cluster's own slot map (CLUSTER SLOTS) names; entries report which node
 * and tier served a shard. */
#ifndef FLC_AGGREGATOR_TRACKER_H
#define FLC_AGGREGATOR_TRACKER_H

#include <stdint.h>

#include "cache/store.h"

typedef struct flc_track_where {
    uint32_t shard;
    char node[300];    /* redacted URL to reach the shard by (what the writer used) */
    char tier[16];     /* "hot" | "cold" */
    char node_id[41];  /* cluster id of the node owning the shard's slot; "" on one server */
    char addr[300];    /* that node's "host:port"; one server: its redacted URL */
} flc_track_where_t;

/* Records that shard `shard` of round `round` is on s's node, in `tier`,
 * with the node that owns its slot now (flc_store_shard_node). */
int flc_track_put(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                  const char *tier);

/* The placement of every shard of a round, by shard index (*out malloc'd,
 * *n entries). Rounds recorded before the tracker (or written without a
 * merger) fall back to the round's shard index with s's own node, tier
 * "hot". FLC_ENOTFOUND when the round has no shards at all. */
int flc_track_round(flc_store_t *s, const char *job, uint32_t round, flc_track_where_t **out,
                    size_t *n);

#endif
