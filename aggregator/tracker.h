/* The request tracker: where each (job, round, shard) lives, so a query is
 * routed to a worker next to the data it needs without scanning keys.
 *
 * One small hash per round, fl:{J}:where:<r>, field = shard index, value =
 * "<node URL, credentials redacted>|<tier>" (tier: hot, or cold once the
 * shard's updates were spilled to the object store). Written by the shard's
 * merger when it closes the round (and by whoever moves the shard later);
 * read by the query planner. */
#ifndef FLC_AGGREGATOR_TRACKER_H
#define FLC_AGGREGATOR_TRACKER_H

#include <stdint.h>

#include "cache/store.h"

typedef struct flc_track_where {
    uint32_t shard;
    char node[300]; /* redacted URL of the node holding the shard */
    char tier[16];  /* "hot" | "cold" */
} flc_track_where_t;

/* Records that shard `shard` of round `round` is on s's node, in `tier`. */
int flc_track_put(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                  const char *tier);

/* The placement of every shard of a round, by shard index (*out malloc'd,
 * *n entries). Rounds recorded before the tracker (or written without a
 * merger) fall back to the round's shard index with s's own node, tier
 * "hot". FLC_ENOTFOUND when the round has no shards at all. */
int flc_track_round(flc_store_t *s, const char *job, uint32_t round, flc_track_where_t **out,
                    size_t *n);

#endif
