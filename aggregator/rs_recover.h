/* Private to aggregator/: the merger's recovery after a Redis Cluster
 * failover (rs_recover.c), called from the merger's loop (rs_merger.c). */
#ifndef FLC_AGGREGATOR_RS_RECOVER_H
#define FLC_AGGREGATOR_RS_RECOVER_H

#include <stdint.h>

#include "aggregator/reduce_scatter.h"

typedef struct flc_rs_recover {
    uint64_t failovers; /* the store's count when last looked at */
    int started;
} flc_rs_recover_t;

/* Call after every wait for arrivals (whatever it returned). When the
 * store's failover count moved since the last call (the first call only
 * records it), asks the shard's node which expected clients not yet seen
 * (seen[i] == 0) have their update stored and announced, and adds those to
 * *found (their arrival token was lost in flight, popped on the dead
 * master): the merger takes them as arrivals. The
 * others are logged as lost-in-failover candidates (or not sent yet: the
 * merger cannot tell; the driver, who knows what was acknowledged, can).
 * A failure to ask is not fatal: returns it, *found empty. */
int flc_rs_recover(flc_store_t *s, const flc_rs_merger_cfg_t *cfg, const unsigned char *seen,
                   flc_rs_recover_t *st, flc_strlist_t *found);

/* 1 when an operation that failed with FLC_ECONN on s may be tried again
 * once: s is a Redis Cluster store, which follows a failover by itself
 * before it sends anything (the merger closes its shard again, and
 * rs_recover takes what the first close may have drained). */
int flc_rs_recover_retry(const flc_store_t *s);

/* The wait before an operation that failed with rc is tried again: when
 * rc is FLC_ECONN and s follows failovers (flc_rs_recover_retry), sleeps
 * (50 ms, doubling up to 250 ms) and returns 1, for about 20 s in all, as
 * long as a promotion may take; else returns 0. b starts zeroed:
 *     flc_rs_backoff_t b = {0};
 *     while (flc_rs_recover_backoff(s, rc, &b))
 *         rc = the operation again; */
typedef struct flc_rs_backoff {
    unsigned spent_ms, next_ms;
} flc_rs_backoff_t;

int flc_rs_recover_backoff(const flc_store_t *s, int rc, flc_rs_backoff_t *b);

/* Pushes `readers` done tokens (token: "ok" or "error: ..."), once more
 * when a failover cut the push: a reader pops one token per round, so
 * extra ones are harmless, while missing ones would leave the readers
 * waiting until their timeout. */
int flc_rs_notify_done(flc_store_t *s, const flc_rs_merger_cfg_t *cfg, const char *token,
                       unsigned readers);

#endif
