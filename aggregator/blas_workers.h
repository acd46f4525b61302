/* OpenBLAS's own threads while the query engine's workers call BLAS at
 * once. Each worker's sgemm would otherwise ask OpenBLAS's pool for every
 * core, and the callers spin in its queue (sched_yield): a cold
 * `flcache query schedule --by accuracy` at FLStore's size spent 30% of its
 * CPU in exec_blas_async and the yields, and took 1.6 s with OpenBLAS's
 * default of one thread per core against 0.9-1.3 s with one (perf, the
 * testbed, 2026-11-30). The workers are the parallelism: while any pool of
 * two or more runs, OpenBLAS gets one thread, and the count it had before
 * is set back when the last pool ends (counted: the global model's pool
 * runs beside the round's). OpenBLAS's count is the process's, so another
 * thread's BLAS call in that window runs on one core too. */
#ifndef FLC_AGGREGATOR_BLAS_WORKERS_H
#define FLC_AGGREGATOR_BLAS_WORKERS_H

/* A pool of `workers` threads starts (fewer than 2: nothing changes). */
void flc_blas_workers_begin(int workers);

/* That pool ended (the same `workers` as its begin). */
void flc_blas_workers_end(int workers);

#endif
