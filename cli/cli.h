/* Shared pieces of the `flcache` command: the subcommand entry points, exit
 * codes, and the cache connection every subcommand uses (FLCACHE_REDIS, or a
 * private embedded redis-server started for the duration of the command).
 * Options are parsed by cli/opt.h. */
#ifndef FLC_CLI_CLI_H
#define FLC_CLI_CLI_H

#include <stdio.h>

#include "cache/embed.h"
#include "cache/store.h"
#include "cli/config.h"
#include "runtime/pool.h"

enum { FLC_EXIT_OK = 0, FLC_EXIT_RUNTIME = 1, FLC_EXIT_USAGE = 2 };

typedef struct flc_cli_conn {
    flc_embed_t *embedded; /* NULL when FLCACHE_REDIS points elsewhere */
    flc_store_t *store;
    char url[512];         /* what function processes should connect to */
    const flc_config_t *cfg; /* the configuration it was opened with */
} flc_cli_conn_t;

/* Opens the cache: cfg->redis (FLCACHE_REDIS) when set, else starts an
 * embedded redis-server (stopped by flc_cli_disconnect, or on Ctrl-C).
 * c->url is the URL either way; function instances get it through
 * flc_cli_pool_start. opts may be NULL: the configuration's store settings.
 * Prints the error and returns FLC_EXIT_RUNTIME on failure. */
int flc_cli_connect(flc_cli_conn_t *c, const flc_config_t *cfg, const flc_store_opts_t *opts);
void flc_cli_disconnect(flc_cli_conn_t *c);

/* Installs SIGINT/SIGTERM/SIGHUP handlers that stop the embedded server and
 * then die of the signal. */
void flc_cli_install_signals(void);

/* Prints "flcache <cmd>: <message>" to stderr. */
void flc_cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Formats a byte count as "12.3 MiB". */
void flc_cli_bytes(char *out, size_t outlen, double bytes);

/* Prints j on stdout, indented when pretty, then a newline (nothing when j
 * is NULL or cannot be printed). */
struct cJSON;
void flc_cli_print_json(const struct cJSON *j, int pretty);

/* The job name of a run: job, unless it is NULL or the library's
 * placeholder (the prefix itself); then "<prefix>-<unix time>-<pid>",
 * written into buf, so two runs never share a job by accident. */
const char *flc_cli_job_name(const char *job, const char *prefix, char *buf, size_t len);

/* A duration "<n><unit>", unit ms, s, m, h, d or w ("90s", "12h", "7d"),
 * into *ms: 0, or -1 when v is not one (cli/cli_time.c). */
int flc_cli_duration_ms(const char *v, uint64_t *ms);

/* A point in time for --before: an ISO date "2026-01-31" (midnight UTC),
 * "2026-01-31T12:00[:00][Z]" (UTC), or a duration back from now_ms ("7d":
 * a week ago), into *ms (Unix ms): 0, or -1 when v is none of these. */
int flc_cli_when_ms(const char *v, uint64_t now_ms, uint64_t *ms);

/* The help of --ttl (simulate, train), and the end of a run that has one:
 * every key of the job (cache/store_ops.h flc_store_job_expire) gets the
 * expiry ttl_ms from now, so the whole job expires together, ttl after its
 * run ended; prints what was set, or the error (then returns
 * FLC_EXIT_RUNTIME). */
#define FLC_CLI_TTL_HELP                                                                  \
    "expire every key of the job DURATION (90m, 12h, 7d, 2w) after the run ends; keys "  \
    "the run's own stores write carry it from the start, so an interrupted run leaks "  \
    "nothing for long (the client functions' keys get it at the end). Cold-tier copies " \
    "do not expire: `flcache store rm` removes them"
int flc_cli_job_ttl(const char *cmd, flc_store_t *s, const char *job, uint64_t ttl_ms);

/* "2026-01-31T12:00:00Z" for Unix ms (UTC). */
void flc_cli_iso_time(char *out, size_t outlen, uint64_t ms);

/* The environment paragraph of the help of the commands that start
 * function processes (train, simulate). */
#define FLC_CLI_ENV_HELP                                                          \
    "environment: FLCACHE_REDIS (the cache; unset: a private redis-server for the\n" \
    "run), FLCACHE_FN (the flcache-fn binary; default: next to flcache).\n"

/* Starts the local function platform (runtime/pool.h) for subcommand cmd:
 * up to concurrency flcache-fn instances at once ($FLCACHE_FN, else the
 * flcache-fn next to this program), as many kept warm, each with memory_mb
 * enforced and billed at price USD per GB-second, each invocation limited
 * to timeout_s; OpenBLAS runs single-threaded in them (many run at once),
 * and their FLCACHE_REDIS is conn's cache (the embedded server when the
 * command started one). Prints the error and returns NULL on failure;
 * flc_pool_free ends it. */
flc_pool_t *flc_cli_pool_start(const char *cmd, const flc_cli_conn_t *conn,
                               unsigned concurrency, unsigned memory_mb, unsigned timeout_s,
                               double price);

/* Subcommands: argv[0] is the subcommand name. Return an FLC_EXIT_* code. */
int flc_cmd_version(int argc, char **argv);
int flc_cmd_train(int argc, char **argv);
int flc_cmd_query(int argc, char **argv);
int flc_cmd_simulate(int argc, char **argv);
int flc_cmd_store(int argc, char **argv);
int flc_cmd_run(int argc, char **argv);
int flc_cmd_tune(int argc, char **argv);
int flc_cmd_up(int argc, char **argv);
int flc_cmd_export(int argc, char **argv);
int flc_cmd_evalset(int argc, char **argv);
int flc_cmd_down(int argc, char **argv);
int flc_cmd_report(int argc, char **argv);
int flc_cmd_package(int argc, char **argv);

/* The function binary the local platform runs: $FLCACHE_FN, else the
 * flcache-fn next to this program, else "flcache-fn". */
void flc_cli_fn_path(char *out, size_t len);

/* The line `train` and `simulate` print at their end: the command that
 * makes job's report (cli/cmd_report.c); nothing when c's cache was a
 * private one, gone with the run. */
void flc_cli_report_hint(FILE *f, const flc_cli_conn_t *c, const char *job);

int flc_cmd_aggregate(int argc, char **argv);

#endif
