/* Private to `flcache train` (cmd_train.c runs it, train_report.c follows
 * its progress and prints its summary). */
#ifndef FLC_CLI_TRAIN_H
#define FLC_CLI_TRAIN_H

#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

#include "cache/store.h"
#include "cli/config.h"
#include "runtime/pool.h"
#include "workers/sgd_worker.h"

typedef struct flc_train_opts {
    flc_sgd_cfg_t cfg;  /* the workers' configuration (rank and redis set per worker) */
    unsigned memory_mb; /* each worker function's memory */
    double price;       /* USD per GB-second */
    unsigned timeout_s; /* per worker invocation */
    int json, quiet;
    char job[64];       /* the generated job name when --job is not given */
    char init[4096];    /* --init as an absolute path: workers may run elsewhere */
    uint64_t ttl_ms;    /* --ttl: every key of the job expires this long after the run; 0: none */
    const char *resume; /* --resume JOB */
    const char *ps_addr; /* --ps-addr (comm ps); NULL: a unix socket in a new temp dir */
} flc_train_opts_t;

/* The parameter-server process of --comm ps (train_ps.c). */
typedef struct flc_train_ps {
    pid_t pid;          /* 0: none */
    char addr[160];     /* where the workers connect ("unix:..." / "tcp:...") */
    char dir[128];      /* the temp dir of the default unix socket, "" : none */
} flc_train_ps_t;

/* Listens at addr (NULL: unix socket in a new temp dir) and forks the
 * server for W workers. FLC_EXIT_OK or FLC_EXIT_RUNTIME (said on stderr).
 * Call before the driver starts threads. */
int flc_train_ps_start(flc_train_ps_t *ps, const char *addr, int workers, unsigned timeout_ms);

/* Reaps the server (waits up to 3 s when the workers succeeded, else kills
 * it at once) and removes its socket. 1 when it ended well. */
int flc_train_ps_stop(flc_train_ps_t *ps, int workers_ok);

typedef struct flc_train_run {
    flc_inv_rec_t *recs; /* one per worker, filled by the pool */
    double t0, wall_s;   /* driver clock: workers started, and how long until all returned */
    double first_s;      /* when the first step record arrived (for the ETA) */
    double first_gstep;
    double last_acc;     /* accuracy of the last epoch record, -1 before */
    int errors;          /* error records seen */
    int line_open;       /* a \r progress line is on the terminal */
    double last_gstep;   /* the last step worker 0 reported */
    int failed;          /* rank of the first worker that ended not ok while others ran
                            (they were stopped then), -1: none */
    flc_pool_t *pool;    /* the workers' pool, to stop them */
    struct flc_train_guard *guard;
} flc_train_run_t;

/* Interruptions (train_guard.c, which says how): signal handlers, the
 * janitor that cleans after a killed driver, the TTL sweep of step keys. */
typedef struct flc_train_guard {
    int fd;             /* to the janitor, -1: none */
    pid_t janitor;      /* 0: none */
    int pgid_sent;      /* the instances' group the janitor knows */
    int installed;      /* the SIGINT/SIGTERM handlers are ours */
    uint64_t ttl_ms;    /* of step keys while the run goes */
    double next_sweep_s;
} flc_train_guard_t;

/* Installs the SIGINT/SIGTERM handlers (they SIGKILL the pool instances)
 * and, against an external cache, forks the janitor. Call before anything
 * starts a thread (the janitor is a fork). */
void flc_train_guard_start(flc_train_guard_t *g, const flc_config_t *cfg, const char *job,
                           unsigned step_timeout_ms);

/* The signal caught (SIGINT, SIGTERM), 0 when none. */
int flc_train_signal(void);

/* Called often while the workers run: stops them if a signal came before
 * they were forked, tells the janitor their group, renews the step keys'
 * TTL every few seconds. */
void flc_train_guard_tick(flc_train_guard_t *g, flc_store_t *s, const char *job,
                          flc_pool_t *pool);

/* Removes the job's step series (every key under fl:{J/steps/) and its
 * progress list; *keys: how many step keys there were. */
int flc_train_clean_steps(flc_store_t *s, const char *job, uint64_t *keys, flc_err_t *e);

/* Tells the janitor all is done and reaps it, restores the handlers, and
 * when a signal was caught dies of it (after the caller cleaned up). */
void flc_train_guard_end(flc_train_guard_t *g);

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
