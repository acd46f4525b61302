/* store_failover.h - what the layers above the store need to live through a
 * Redis Cluster failover without losing an update silently (issue 12 point
 * 5; docs/cluster.md "Failover").
 *
 * When a master is SIGKILLed its replica is promoted within seconds, and
 * the store follows the new map by itself: idempotent single commands and
 * blocking pops are sent again, a connection the dead master closed is
 * remade before anything is written on it, and routing waits (with backoff,
 * up to the cluster deadline) while no node serves a slot. What the store
 * cannot know is what the dead master had acknowledged but not yet passed
 * to its replica (Redis replicates asynchronously): those writes are gone
 * on the new master. The callers who know what they wrote find out with
 * these operations:
 * - flc_store_failovers: a counter that moves when a node changed under
 *   this store (a node connection found dead or refused, a slot given
 *   another owner); compare it before and after a piece of work;
 * - flc_store_updates_present: which of a list of clients' updates of a
 *   shard the (new) owner holds;
 * - flc_store_replicated: Redis WAIT on every node written since the last
 *   call, so that an update acknowledged to its client survives a failover
 *   (flc_store_opts_t.wait_replicas). */
#ifndef FLC_CACHE_STORE_FAILOVER_H
#define FLC_CACHE_STORE_FAILOVER_H

#include <stddef.h>
#include <stdint.h>

#include "cache/store.h"

/* 1 when s can see a failover (a Redis Cluster), 0 on one server. */
int flc_store_fails_over(const flc_store_t *s);

/* Node connections this store found dead or could not make, plus changes
 * of a slot's owner in its map; only ever grows. 0 on one server. */
uint64_t flc_store_failovers(const flc_store_t *s);

/* present[i] = 1 when the update of clients[i] for (job, round, shard) is
 * stored (whole: its value is written by one SET or published by RENAME),
 * else 0 (not sent, or lost): one pipelined round trip to the shard's node
 * (which the store waits for, during a failover). On key schema 2 the
 * announcement is a token the merger pops, so it cannot be asked for: a
 * push between its value and its token counts as present a moment early. */
int flc_store_updates_present(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                              const char *const *clients, size_t n, unsigned char *present);

/* With the store's wait_replicas > 0: waits (Redis WAIT) until that many
 * replicas of every node written since the last call acknowledged the
 * writes, at most wait_timeout_ms (0: 1000) per node, all nodes at once.
 * FLC_ETIMEOUT when fewer did, with a message naming what (the caller's
 * words, "update of c3"), the node and the counts: "update of c3
 * acknowledged by 0 of 1 replicas of node 10.213.0.12:6379 within 1000 ms";
 * FLC_ECONN when a node went away meanwhile (the writes may be lost: write
 * again). On a cluster, a node that has fewer replicas than asked (its
 * old master still down after a failover) passes when every replica it has
 * acknowledged (counted: flc_store_wait_short). 0 without doing anything
 * when wait_replicas is 0. */
int flc_store_replicated(flc_store_t *s, const char *what);

/* Replication waits this store accepted with fewer replicas than asked
 * because a node had no more (a promoted replica whose old master is still
 * down: all of its replicas acknowledged); such writes survive no further
 * failover until the node has its replicas back. Cluster only; 0 on one
 * server, where a shortfall is always an error. */
uint64_t flc_store_wait_short(const flc_store_t *s);

/* The store's wait_replicas (0: pushes do not wait). */
unsigned flc_store_wait_replicas(const flc_store_t *s);

#endif
