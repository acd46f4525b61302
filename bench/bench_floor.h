/* The exchange's floor (issue 14 goal 3), for bench/train: five sequential
 * round trips with one SGD step's payloads (model of n floats in S shards),
 * each the median of 21 on s's idle connection: the push (the S shards,
 * pipelined SETs), the merger's wake (a BLPOP that finds its token), the
 * merged write (the largest shard), the reader's wake, the pull (the S
 * shards, pipelined GETs). The parts go to part[5]; their sum is returned.
 * Exits the bench with a message when Redis refuses a command. */
#ifndef FLC_BENCH_FLOOR_H
#define FLC_BENCH_FLOOR_H

#include <stdint.h>

#include "cache/store.h"

double bench_exchange_floor(flc_store_t *s, uint64_t n, uint32_t S, double part[5]);

#endif
