/* Private to `flcache simulate` (cmd_simulate.c runs it,
 * cmd_simulate_opts.c reads and checks its options and prints --help,
 * cmd_simulate_report.c prints its progress and final table). */
#ifndef FLC_CLI_CMD_SIMULATE_H
#define FLC_CLI_CMD_SIMULATE_H

#include <stdint.h>

#include "clients/async.h"
#include "clients/sim.h"

typedef struct flc_simulate_opts {
    flc_sim_cfg_t c;
    unsigned concurrency, memory_mb, timeout_s;
    double price;
    int json, quiet, inproc;
    int fault;      /* -1 until --fault is given (it needs --faulty) */
    char job[64];
    uint64_t ttl_ms; /* --ttl; 0: none */
    /* Asynchronous FL (clients/async.h): --mode, --staleness, --max-staleness,
     * --buffer; --concurrency is then the clients training at once. */
    int mode, buffer;
    flc_async_cfg_t a;
    const char *resume; /* --resume JOB */
    unsigned memory_budget_mb; /* --memory-budget; 0: the library's default */
} flc_simulate_opts_t;

/* Reads the options into *o and checks them together. Returns 1 to go on,
 * else 0 with the exit code in *rc (help printed, or a usage error). */
int flc_simulate_parse(int argc, char **argv, flc_simulate_opts_t *o, int *rc);

/* The progress callback of both drivers (user: the flc_simulate_opts_t):
 * a round that was not merged, and unless --quiet a line per round with
 * the ETA, on stderr. */
void flc_simulate_progress(const flc_sim_round_t *r, int rounds, double elapsed, void *user);

/* Peak resident set of this process (driver and mergers) in MiB. */
double flc_simulate_peak_mb(void);

/* The final table of a synchronous run on stdout. */
void flc_simulate_table(const flc_simulate_opts_t *o, const flc_sim_result_t *r);

/* The async modes' final table on stdout. */
void flc_simulate_async_table(const flc_simulate_opts_t *o, const flc_async_result_t *ar);

#endif
