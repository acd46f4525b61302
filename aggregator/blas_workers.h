/* OpenBLAS's own threads while the query engine's workers call BLAS at
 * once. Each worker's sgemm would otherwise ask OpenBLAS's pool for every
 * core, and the callers spin in its queue (sched_yield): a cold
 * `flcache query schedule --by accuracy` at FLStore's size spent 30% of its
 * CPU in exec_blas_async and the yields, and took 1.6 s with OpenBLAS's
 * default of one thread per core against 0.9-1.3 s with one (perf, the
 * testbed, 2026-11-30). The workers are the parallelism: while any pool
 * runs, OpenBLAS gets one thread, and the count it had before is set back
 * when the last pool ends (counted: the global model's pool runs beside
 * the round's). A pool of one worker too: OpenBLAS's bits depend on its
 * thread count (it tiles the product differently; 1 and 2 threads differ
 * in the last bit of a third of a 300 x 37 x 784 sgemm's entries), and the
 * global model's one worker, started before the round's pool, ran its
 * sgemms with 2 threads or 1 depending on which came first: the same query
 * gave losses differing in the 9th digit under load. OpenBLAS's count is
 * the process's, so another thread's BLAS call in that window runs on one
 * core too. */
#ifndef FLC_AGGREGATOR_BLAS_WORKERS_H
#define FLC_AGGREGATOR_BLAS_WORKERS_H

/* A pool of `workers` threads starts (none: nothing changes). */
void flc_blas_workers_begin(int workers);

/* That pool ended (the same `workers` as its begin). */
void flc_blas_workers_end(int workers);

#endif
