/* The Redis Cluster testbed of bench/cluster (bench_testbed.c): up with 3
 * masters and no replicas (scripts/testbed.sh), down on every path out
 * (signals included), its client namespace, placement next to a node, and
 * the counters and slot map the round and query cases measure against.
 * bench/cluster.c holds the cases; this holds the testbed they run on. */
#ifndef FLC_BENCH_TESTBED_H
#define FLC_BENCH_TESTBED_H

#include <stddef.h>
#include <stdint.h>

#include "cache/store.h"
#include "cli/place.h"

#define BENCH_TB_MASTERS 3

typedef struct bench_tb {
    char seed[256], password[128], client_ns[64];
    char ns[BENCH_TB_MASTERS][64], addr[BENCH_TB_MASTERS][64], id[BENCH_TB_MASTERS][64];
    char nodes_map[4096]; /* FLCACHE_NODES of `testbed.sh env` */
} bench_tb_t;

/* Finds scripts/testbed.sh (FLCACHE_SOURCE_DIR, else from the binary's
 * path), names the testbed "cb<pid>", opens this process's own network
 * namespace and installs the SIGINT/TERM/HUP handler that brings a testbed
 * of ours down. Call once, before bench_tb_up. */
void bench_tb_init(void);

/* The script's path and an fd of this process's own network namespace
 * (-1 if it could not be opened), for cases with a testbed of their own. */
const char *bench_tb_script(void);
int bench_tb_root_ns(void);

/* Runs `testbed.sh --name <ours> <args>` (timeout 180 s); out gets its
 * output. 0, or the command's failure. */
int bench_tb_sh(char *out, size_t cap, const char *args);

/* Brings up the 3-master testbed with node links at rate ("1gbit"), fills
 * *tb from `testbed.sh env`, sets REDISCLI_AUTH and FLCACHE_REDIS, and keeps
 * emptied masters masters. 0 or -1 (what failed on stderr); the testbed is
 * to be brought down with bench_tb_down either way. */
int bench_tb_up(bench_tb_t *tb, const char *rate);

/* Back to our own namespace, then the testbed down; no-op without one. */
void bench_tb_down(void);

/* This process (and the threads it starts) into the testbed's client
 * namespace. 0 or -1. */
int bench_tb_enter_client_ns(const bench_tb_t *tb);

/* *out = the callback that moves a thread into a node's namespace and points
 * its stores at that node's unix socket (cli/place.h). -1 when the map does
 * not parse or misses a node of the testbed. bench_tb_place_free frees the
 * parsed map. */
int bench_tb_place(const bench_tb_t *tb, flc_place_t *out);
void bench_tb_place_free(void);

/* Leaves the slots on n1..n<nodes> only (the others get weight 0). 0 or -1. */
int bench_tb_use_nodes(const bench_tb_t *tb, int nodes);

/* Bytes received and sent by node k's end of its link. 0 or -1. */
int bench_tb_link_counters(const bench_tb_t *tb, int k, uint64_t *rx, uint64_t *tx);

/* owner[FLC_SLOT_COUNT]: which node (0..) owns each slot, from CLUSTER SLOTS
 * through s; -1 unknown. 0 or -1. */
int bench_tb_slot_owners(flc_store_t *s, const bench_tb_t *tb, signed char *owner);

#endif
