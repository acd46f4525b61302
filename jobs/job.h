/* `flcache run WORKLOAD`: the serverless workloads beside FL (issue 19) on
 * the same function platform and cache. Each workload (wordcount, matmul,
 * conv, mandelbrot, forest) is a driver that cuts the job into W function
 * invocations on the local pool (runtime/pool.h), whose intermediate data
 * go through the cache under one hash tag per partition, and a function
 * side (flc_job_fn, the "job" role of flcache-fn) that runs one task. The
 * driver also computes the same result in one process and checks the
 * distributed one against it, so every run says whether it was right.
 *
 * Events are the JSON objects every adapter takes (local pool, Lambda,
 * OpenWhisk): {"role":"job","task":"wordcount.map","job":J,"redis":URL,...}. */
#ifndef FLC_JOBS_JOB_H
#define FLC_JOBS_JOB_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "base/error.h"
#include "cache/store.h"
#include "runtime/pool.h"

/* What a run asks. A size left 0 takes the workload's default. */
typedef struct flc_job_opts {
    const char *workload;  /* wordcount | matmul | conv | mandelbrot | forest | infer */
    const char *job;       /* job name in the cache (its keys are fl:{job/...) */
    const char *redis;     /* URL the functions connect to */
    int workers;           /* W functions (mappers, grid cells, row slabs, ...) */
    int reducers;          /* wordcount: R reducer partitions; 0: W */
    long long size;        /* wordcount: corpus bytes (0: all); matmul: N;
                              conv: image side; mandelbrot: width; forest:
                              training samples */
    int batch;             /* conv: images in the batch; infer: samples */
    int layers;            /* infer: MLP layers (0: 8); --size is their width */
    const char *split;     /* infer: "layers" (pipeline, default) or "columns" */
    int micro;             /* infer pipeline: micro-batches (0: one per function) */
    int trees;             /* forest: trees in all */
    int depth;             /* forest: maximum depth */
    int tiles;             /* mandelbrot: tiles per side */
    int iters;             /* mandelbrot: maximum iterations */
    int dynamic;           /* mandelbrot: functions take tiles from a queue */
    int top;               /* wordcount: words in the result */
    uint64_t seed;
    const char *corpus;    /* wordcount: a file or directory; NULL: the default */
    const char *data_dir;  /* forest: Fashion-MNIST; NULL: the package's */
    const char *png;       /* mandelbrot: write the image here (.png or .pgm) */
    int check;             /* 1: compute in one process and compare */
    int progress;          /* 1: a progress line on stderr */
} flc_job_opts_t;

/* Fills the defaults (workload and job still to set). */
void flc_job_opts_init(flc_job_opts_t *o);

/* The names of the workloads, NULL-ended (for the option parser). */
extern const char *const flc_job_workloads[];

/* One function invocation as the summary shows it. */
typedef struct flc_job_fnrec {
    char name[48];         /* "map 3", "block 1,2", ... */
    int status;            /* enum flc_inv_status */
    int cold;
    double duration_ms;
    double compute_ms;
    double comm_ms;
    uint64_t peak_rss_kb;
    double cost_usd;
    char error[256];
} flc_job_fnrec_t;

/* What a run measured. */
typedef struct flc_job_report {
    char workload[16];
    int workers;
    double wall_ms;        /* first invocation started -> result assembled */
    double single_ms;      /* the same result computed in this process */
    int checked;           /* 1: the check ran */
    int check_ok;
    char check[256];       /* what was compared and how it came out */
    flc_job_fnrec_t *fns;
    size_t nfns;
    double compute_ms, comm_ms, cost_usd; /* sums over the functions */
    uint64_t peak_rss_kb;  /* the largest of any function */
    uint64_t cache_bytes;  /* bytes the functions and driver moved through the cache */
    cJSON *metrics;        /* workload-specific numbers (object, owned) */
} flc_job_report_t;

/* Runs o->workload on pool with store (the driver's connection to the
 * cache o->redis names), fills *rep (flc_job_report_clear). Returns 0 when
 * every function succeeded (the check may still have failed: rep->check_ok),
 * else a negative FLC_E* with *e naming the function and why. The job's
 * keys are removed at the end. */
int flc_job_run(const flc_job_opts_t *o, flc_pool_t *pool, flc_store_t *store,
                flc_job_report_t *rep, flc_err_t *e);

void flc_job_report_clear(flc_job_report_t *rep);

/* The summary table (per function: compute, comm, peak memory, cost). */
void flc_job_report_print(const flc_job_report_t *rep, FILE *f);

/* The report as one JSON object (caller frees). */
cJSON *flc_job_report_json(const flc_job_report_t *rep);

/* The function side: runs the event's "task" with the cache the event's
 * "redis" (else sc->url) names. data_dir: Fashion-MNIST (NULL: default). */
int flc_job_fn(const flc_store_cfg_t *sc, const char *data_dir, const cJSON *event,
               cJSON **result, double *compute_ms, double *comm_ms, flc_err_t *e);

#endif
