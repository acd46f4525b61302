/* Private to `flcache train` (cmd_train.c runs it, train_report.c follows
 * its progress and prints its summary). */
#ifndef FLC_CLI_TRAIN_H
#define FLC_CLI_TRAIN_H

#include "cache/store.h"
#include "runtime/pool.h"
#include "workers/sgd_worker.h"

typedef struct flc_train_opts {
    flc_sgd_cfg_t cfg;  /* the workers' configuration (rank and redis set per worker) */
    unsigned memory_mb; /* each worker function's memory */
    double price;       /* USD per GB-second */
    unsigned timeout_s; /* per worker invocation */
    int json, quiet;
    char job[64];       /* the generated job name when --job is not given */
    uint64_t ttl_ms;    /* --ttl: every key of the job expires this long after the run; 0: none */
} flc_train_opts_t;

typedef struct flc_train_run {
    flc_inv_rec_t *recs; /* one per worker, filled by the pool */
    double t0, wall_s;   /* driver clock: workers started, and how long until all returned */
    double first_s;      /* when the first step record arrived (for the ETA) */
    double first_gstep;
    double last_acc;     /* accuracy of the last epoch record, -1 before */
    int errors;          /* error records seen */
    int line_open;       /* a \r progress line is on the terminal */
} flc_train_run_t;

/* Follows worker 0's progress records (BLPOP on the job's progress list)
 * and draws the progress line on stderr until all n invocations of b have
 * returned. */
void flc_train_follow(flc_store_t *s, const flc_train_opts_t *o, flc_train_run_t *run,
                      flc_batch_t *b, size_t n);

/* Prints the summary (or JSON with o->json) from the invocation records and
 * the epochs' RoundMeta. Returns FLC_EXIT_OK when every worker succeeded
 * and all hold the same model, else FLC_EXIT_RUNTIME. */
int flc_train_report(flc_store_t *s, const flc_train_opts_t *o, flc_train_run_t *run);

#endif
