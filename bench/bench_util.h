/* Shared helpers of the benchmarks: one JSON line per measurement, timing,
 * percentiles, and the store under test (FLCACHE_REDIS or a private server). */
#ifndef FLC_BENCH_UTIL_H
#define FLC_BENCH_UTIL_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "cache/store.h"

/* Prints obj as one compact JSON line on stdout and frees it. */
void bench_emit(cJSON *obj);

/* A new JSON object with "bench" and "case" set. */
cJSON *bench_line(const char *bench, const char *name);

/* p-th percentile (0..100) of v[0..n), sorting v in place. */
double bench_percentile(double *v, size_t n, double p);

/* Median of v[0..n) (sorts v). */
double bench_median(double *v, size_t n);

/* What every program does first: reads the environment (cli/config.h)
 * and sets the log level. Exits with a message on a bad setting. */
void bench_config(void);

/* The configuration's store options (FLCACHE_CHUNK, FLCACHE_MAX_MSG,
 * FLCACHE_COLD and its S3 settings), what the benchmarks open their stores
 * with; valid after bench_config. */
const flc_store_opts_t *bench_store_opts(void);

/* Repetitions from $FLCACHE_BENCH_REPS, else def. */
int bench_reps(int def);

/* 1 when case `name` is in the comma-separated list (NULL or "": every
 * case); benches pass $FLCACHE_BENCH_CASES. */
int bench_case_wanted(const char *list, const char *name);

/* The value of KEY=value or KEY='value' in `scripts/testbed.sh env` output
 * into dst ("" when absent; cut to cap - 1 characters). */
void bench_env_value(const char *env, const char *key, char *dst, size_t cap);

/* "<bench>: <what>: <msg>" on stderr, and exit 1: a bench whose set-up or
 * baseline failed has nothing to measure. */
void bench_die(const char *bench, const char *what, const char *msg)
    __attribute__((noreturn));

/* The machine's CPU time from /proc/stat's "cpu" line, in seconds: busy
 * (user, nice, system, irq, softirq, steal) and all (busy + idle + iowait),
 * summed over every CPU. Both 0 when /proc/stat cannot be read. Two calls
 * around a measurement give how much of the machine it kept busy. */
void bench_cpu_times(double *busy, double *all);

/* Runs cmd with popen, its output (the first cap - 1 bytes) into out (NULL:
 * discarded). Returns the exit status, or -1 when it could not run. */
int bench_run(const char *cmd, char *out, size_t cap);

/* The flcache-fn binary the pool starts: FLCACHE_FN, else ../flcache-fn
 * beside this program. */
void bench_fn_path(char *out, size_t len);

#endif
