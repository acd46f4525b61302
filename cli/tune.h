/* tune.h - private to `flcache tune` (issue 20 part 2, docs/tune.md):
 * tune_model.c fits time and cost against memory from a few probes,
 * cmd_tune.c runs the probes and prints the curve, tune_record.c writes the
 * result as JSON and stores it for the job's report. */
#ifndef FLC_CLI_TUNE_H
#define FLC_CLI_TUNE_H

#include <stddef.h>

/* One probe: the job run once at memory_mb, whole or a part of it. */
typedef struct flc_tune_probe {
    unsigned memory_mb;
    int ok;            /* the job succeeded (a failure at a size: too little memory) */
    double time_s;     /* the job's own time (its wall_s / wall_ms), else the probe's;
                          extrapolated to the whole job when part < 1 */
    double cost_usd;   /* what its functions were billed (extrapolated likewise) */
    double probe_s;    /* how long the probe took, start to end */
    int cut;           /* stopped once it could no longer meet the deadline */
    double part;       /* the share of the job's work it ran: 1 whole, else a short
                          probe whose time_s and cost_usd are extrapolated */
    double measured_s, measured_usd; /* what the run itself reported */
} flc_tune_probe_t;

/* How a probe runs part of a job (cmd_tune_probe.c): a train job on a
 * share of its samples for one epoch, a simulate job for some of its
 * rounds; the whole job's time is extrapolated from the probe's measured
 * fixed part (the time outside the units it timed) and its time per unit.
 * Planned from a probe of the whole job. */
typedef struct flc_tune_part {
    int kind;               /* 0: every probe whole; FLC_TUNE_PART_TRAIN / _SIM */
    double part;            /* the share a short probe runs (about) */
    long samples, test;     /* train: the whole job's training and test samples */
    long steps, epochs;     /* train: its steps per epoch and epochs */
    long p_samples, p_test; /* train: what a short probe loads (for one epoch) */
    long rounds, p_rounds;  /* simulate: the whole job's rounds and a probe's */
    double peak_mb;         /* the whole run's largest function resident set */
} flc_tune_part_t;
enum { FLC_TUNE_PART_TRAIN = 1, FLC_TUNE_PART_SIM = 2 };

struct cJSON;

/* Runs `flcache JOB... [part's options] --memory mb --json` with CPU
 * proportional to memory (none with no_cpu), fills *p. cut_s > 0: the run
 * is stopped (SIGTERM) after that long and counts as a miss (p->cut).
 * plan NULL or kind 0: the job whole. keep: when not NULL, the job's JSON
 * report (the caller frees it; NULL when there was none). */
void flc_tune_probe_run(char **job, int njob, unsigned mb, double cut_s, int no_cpu,
                        int verbose, const flc_tune_part_t *plan, flc_tune_probe_t *p,
                        struct cJSON **keep);

/* Plans short probes of the job from its whole run's JSON report: 1 when
 * they pay and can be extrapolated, else 0 (every probe whole). A probe
 * runs about part (in (0, 1)) of the job, more where needed: at least 8
 * steps per epoch, 2 rounds, and 0.25 s of the timed units at the whole
 * run's size; a probe must stay under 3/4 of the job. */
int flc_tune_part_plan(char **job, int njob, const struct cJSON *whole, double part,
                       flc_tune_part_t *plan);

/* The whole job's time from a short probe's JSON report j whose job
 * reported t seconds (see cmd_tune_probe.c for how), or -1 when j lacks
 * what the extrapolation needs. */
double flc_tune_part_extrapolate(const flc_tune_part_t *plan, const struct cJSON *j, double t);

/* Lambda's sizes a sweep visits and the table shows (those in LO..HI). */
#define FLC_TUNE_GRID {128, 256, 512, 1024, 1769, 2048, 3008, 4096, 6144, 8192, 10240}
enum { FLC_TUNE_NGRID = 11, FLC_TUNE_NFINE = 48 /* points of the plotted curve */ };

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

/* One tune's outcome, as printed with --json and stored for the report. */
typedef struct flc_tune_result {
    char **job;                 /* the job's command line (njob words) */
    int njob;
    int sweep, no_cpu;
    unsigned lo, hi;
    double deadline_s;          /* 0: none */
    const flc_tune_probe_t *p;
    int np;
    const flc_tune_model_t *m;
    int fitted;
    unsigned pick;              /* 0: none */
    double probe_total_s;
} flc_tune_result_t;

/* The result as one JSON object: the probes, the model, the curve over the
 * grid ("curve") and on FLC_TUNE_NFINE log-spaced sizes ("curve_fine", what
 * a plot draws), the choice. NULL when out of memory. */
struct cJSON *flc_tune_json(const flc_tune_result_t *r);

/* The job's name on its command line (`--job NAME` or `--job=NAME`), or
 * NULL. */
const char *flc_tune_job_name(char **job, int njob);

/* Stores the result's JSON as job's tune record in the cache FLCACHE_REDIS
 * names (cache/store_tune.h), where `flcache report --job NAME` plots it.
 * Without FLCACHE_REDIS the probes' cache was private and is gone, so
 * nothing is stored and stderr says so. Returns 0 or -1 (printed). */
int flc_tune_record(const flc_tune_result_t *r, const char *job);

#endif
