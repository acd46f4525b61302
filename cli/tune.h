/* tune.h - private to `flcache tune` (issue 20 part 2, docs/tune.md):
 * tune_model.c fits time and cost against memory from a few probes,
 * cmd_tune.c runs the probes and prints the curve. */
#ifndef FLC_CLI_TUNE_H
#define FLC_CLI_TUNE_H

#include <stddef.h>

/* One probe: the job run once at memory_mb. */
typedef struct flc_tune_probe {
    unsigned memory_mb;
    int ok;            /* the job succeeded (a failure at a size: too little memory) */
    double time_s;     /* the job's own time (its wall_s / wall_ms), else the probe's */
    double cost_usd;   /* what its functions were billed */
    double probe_s;    /* how long the probe took, start to end */
} flc_tune_probe_t;

/* time(m) = a + b / min(m, sat): a does not scale with CPU (waiting, I/O,
 * process starts), b is CPU work in s x MB (so b / 1769 is its seconds on
 * one vCPU), sat is the size past which more CPU no longer helps (the
 * machine's cores or the job's threads; 0: none in the range). cost(m) =
 * k x m x time(m): k is the billed GB-s per MB-second of job time (about
 * functions / 1024 x price when all functions run the whole time). */
typedef struct flc_tune_model {
    double a, b, sat, k;
    double err;        /* root mean square relative error of time at the probes */
    int n;             /* probes fitted */
} flc_tune_model_t;

/* Fits the model to the ok probes (at least 2; sat only from 4, searched
 * on a log grid between the probes: 3 points would fit it to any noise).
 * Returns 0, or -1 when fewer than 2 probes succeeded. */
int flc_tune_fit(const flc_tune_probe_t *p, size_t n, flc_tune_model_t *m);

double flc_tune_time(const flc_tune_model_t *m, double memory_mb);
double flc_tune_cost(const flc_tune_model_t *m, double memory_mb);

/* The cheapest size in lo..hi (a multiple of step, or lo / hi) whose
 * predicted time is at most deadline_s (0: no deadline), never below
 * min_ok (the smallest size known to work) nor at or below max_bad (the
 * largest known to fail). 0 when none meets the deadline. */
unsigned flc_tune_pick(const flc_tune_model_t *m, unsigned lo, unsigned hi, unsigned step,
                       double deadline_s, unsigned max_bad);

#endif
