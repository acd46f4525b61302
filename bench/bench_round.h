/* A reduce-scatter round driven by threads, shared by bench/aggregate (one
 * server) and bench/cluster (a testbed cluster): S mergers and W
 * contributors, each thread with its own store, FedAvg over the W updates. */
#ifndef FLC_BENCH_ROUND_H
#define FLC_BENCH_ROUND_H

#include <stdint.h>

#include "cache/store.h"

typedef struct bench_round {
    const char *tag;     /* the benchmark's name, for messages */
    const char *url;     /* the cache the threads open */
    uint32_t W, S, round;
    uint64_t n;          /* model size in floats */
    float **u;           /* W updates */
    float **model;       /* W read-back models */
    const char **names;  /* W contributor names */
    int failed;          /* set by any thread that failed */
    /* Placement (issue 12): with enter set, merger k moves its thread next
     * to the node owning shard k this round and opens its store there (over
     * that node's unix socket); zero: mergers run where the caller does. */
    flc_place_t place;
    char (*node)[300];   /* filled by bench_round_run when placing: shard k's owner */
    /* Where the round's time went, ms from its start (bench_round_run):
     * per contributor, store opened / pushed / pulled; per merger, merged
     * (its done tokens pushed) and the merge's own time (reading, folding,
     * writing: its report's merge_ms). */
    uint64_t t0_ns;
    double opened_ms[128], pushed_ms[128], pulled_ms[128], merged_ms[128], merge_ms[128];
} bench_round_t;

/* What each thread gets: the round and its index (contributor i or shard i). */
typedef struct bench_round_arg {
    bench_round_t *c;
    uint32_t i;
} bench_round_arg_t;

/* Contributor i: pushes u[i] in S shards, then pulls the merged model into
 * model[i]. Merger i: merges shard i of the W updates (FedAvg). */
void *bench_round_contributor(void *arg);
void *bench_round_merger(void *arg);

/* Runs the round: S mergers (none when with_mergers is 0) and W
 * contributor threads (contributor NULL: bench_round_contributor), with
 * SIGINT/SIGTERM/SIGHUP blocked in them so a benchmark's handler runs on the
 * main thread. Returns the wall seconds from the first start to the last
 * join. At most 128 threads. With c->place, the owners of the S shards are
 * looked up first, before the clock starts (the lookup is the driver's). */
double bench_round_run(bench_round_t *c, int with_mergers, void *(*contributor)(void *));

/* The phases of the last bench_round_run, for a log line: the latest
 * store open, push end, merge end and pull end (ms from the start) and the
 * longest merge_ms, into buf. */
void bench_round_phases(const bench_round_t *c, char *buf, size_t cap);

/* Raw pipelined Redis, the baseline of the round sections: runs cmd (SET
 * or GET) on chunks [k0, k1) (FLC_STORE_CHUNK_DEFAULT bytes each, of a
 * value of `bytes`) of keys "<prefix>:<k>", values from src (SET) or into
 * dst (GET), both pointing at chunk k0's bytes; BENCH_RAW_BATCH commands
 * per round trip. 0, or -1 on any error. */
#define BENCH_RAW_BATCH 8
int bench_raw_chunks(flc_store_t *s, const char *cmd, const char *prefix, size_t k0, size_t k1,
                     size_t bytes, const char *src, char *dst);

#endif
