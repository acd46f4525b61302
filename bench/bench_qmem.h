/* The memory section of bench/queries (issue 14 goal 5), bench_qmem.c. */
#ifndef FLC_BENCH_QMEM_H
#define FLC_BENCH_QMEM_H

#include <stdint.h>

/* For every vector kind: the cold query of round 1 of job (S shards,
 * n_clients clients named names, stored at url) run in a new process (this
 * program with --one-query, which must call bench_qmem_one_query), one JSON
 * line "system":"next_to_data_cold_process" with peak_rss_mb (its VmHWM),
 * read_gbps, memory_budget_mb ($FLCACHE_BENCH_BUDGET_MB, else the
 * library's), and raw_get_gbps: raw pipelined GETs (HGETs of the chunk
 * fields) of the same stored values, read_ratio_to_raw. */
void bench_qmem_section(const char *bench, const char *url, const char *job, uint32_t S,
                        const char *const *names, unsigned n_clients, double mb);

/* The child's side (--one-query JOB KIND URL MB): runs the cold query with
 * budget MB MiB (0: default) and prints "ms bytes_read peak_kb". Returns
 * the exit code. */
int bench_qmem_one_query(const char *job, const char *kind, const char *url, const char *mb);

#endif
