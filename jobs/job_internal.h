/* What the workloads of jobs/ share: moving bytes through the cache under a
 * partition's hash tag, running a phase of invocations on the pool with a
 * progress line, and the function-side context. Not installed. */
#ifndef FLC_JOBS_JOB_INTERNAL_H
#define FLC_JOBS_JOB_INTERNAL_H

#include "cache/shard_codec.h"
#include "jobs/job.h"

/* Intermediate data in the cache. A value is stored as an update shard of
 * job J, round = the phase, shard = the partition (its hash tag
 * fl:{J/s<part>~k}: everything of one partition on one node), client = the
 * value's name ("m3", "a", ...). Bytes travel as the float32 payload,
 * unchanged (nothing reads them as numbers); the byte length is the shard's
 * num_samples. comm_ms and bytes add up what this side moved. */
typedef struct flc_job_xfer {
    flc_store_t *s;
    const char *job;
    uint32_t nparts;  /* partitions of the job: fixed per job (the tag depends on it) */
    double comm_ms;
    uint64_t bytes;
} flc_job_xfer_t;

int flc_job_put(flc_job_xfer_t *x, uint32_t round, uint32_t part, const char *name,
                const void *buf, size_t len, flc_err_t *e);

/* Reads a value: its bytes are sh->values (len bytes; flc_shard_release). */
int flc_job_get(flc_job_xfer_t *x, uint32_t round, uint32_t part, const char *name,
                flc_shard_t *sh, size_t *len, flc_err_t *e);

/* The driver of one run. */
typedef struct flc_job_ctx {
    const flc_job_opts_t *o;
    flc_pool_t *pool;
    flc_job_report_t *rep;
    flc_job_xfer_t x;        /* the driver's own cache traffic (assembling results) */
    int begun;         /* the job's schema record (its partitions) is written */
} flc_job_ctx_t;

/* A new event for task with the run's job, cache URL and partitions. */
cJSON *flc_job_event(const flc_job_ctx_t *c, const char *task);

/* Deletes the events left in ev[0..n) (those no phase took) and clears them. */
void flc_job_events_free(cJSON **ev, size_t n);

/* Runs n events at once (events freed here and their slots cleared), shows "<label> k/n" on the
 * progress line, appends a record per invocation to the report (names[i]).
 * res[i] (may be NULL) gets a copy of each function's result. Fails with
 * the first function that did not succeed. */
int flc_job_phase(flc_job_ctx_t *c, const char *label, cJSON **events, char (*names)[48],
                  size_t n, cJSON **res, flc_err_t *e);

/* Milliseconds since t0_ns (flc_now_ns). */
double flc_job_ms(uint64_t t0_ns);

/* The function side of one invocation. */
typedef struct flc_job_task {
    const cJSON *ev;
    const char *data_dir;
    flc_job_xfer_t x;
} flc_job_task_t;

/* Drivers (each in its workload's file). */
int flc_job_wordcount(flc_job_ctx_t *c, flc_err_t *e);
int flc_job_matmul(flc_job_ctx_t *c, flc_err_t *e);
int flc_job_conv(flc_job_ctx_t *c, flc_err_t *e);
int flc_job_mandelbrot(flc_job_ctx_t *c, flc_err_t *e);
int flc_job_forest(flc_job_ctx_t *c, flc_err_t *e);
int flc_job_infer(flc_job_ctx_t *c, flc_err_t *e);

/* Tasks (the event's "task"). */
int flc_job_wordcount_map(flc_job_task_t *f, cJSON **res, flc_err_t *e);
int flc_job_wordcount_reduce(flc_job_task_t *f, cJSON **res, flc_err_t *e);
int flc_job_matmul_block(flc_job_task_t *f, cJSON **res, flc_err_t *e);
int flc_job_conv_rows(flc_job_task_t *f, cJSON **res, flc_err_t *e);
int flc_job_mandelbrot_tiles(flc_job_task_t *f, cJSON **res, flc_err_t *e);
int flc_job_forest_train(flc_job_task_t *f, cJSON **res, flc_err_t *e);
int flc_job_forest_eval(flc_job_task_t *f, cJSON **res, flc_err_t *e);
int flc_job_infer_stage(flc_job_task_t *f, cJSON **res, flc_err_t *e);
int flc_job_infer_cols(flc_job_task_t *f, cJSON **res, flc_err_t *e);

#endif
