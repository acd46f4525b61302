/* Shared pieces of the `flcache` command: the subcommand entry points, exit
 * codes, and the cache connection every subcommand uses (FLCACHE_REDIS, or a
 * private embedded redis-server started for the duration of the command). */
#ifndef FLC_CLI_CLI_H
#define FLC_CLI_CLI_H

#include "cache/embed.h"
#include "cache/store.h"
#include "cli/config.h"

enum { FLC_EXIT_OK = 0, FLC_EXIT_RUNTIME = 1, FLC_EXIT_USAGE = 2 };

typedef struct flc_cli_conn {
    flc_embed_t *embedded; /* NULL when FLCACHE_REDIS points elsewhere */
    flc_store_t *store;
    char url[512];         /* what function processes should connect to */
    const flc_config_t *cfg; /* the configuration it was opened with */
} flc_cli_conn_t;

/* Opens the cache: cfg->redis (FLCACHE_REDIS) when set, else starts an
 * embedded redis-server (stopped by flc_cli_disconnect, or on Ctrl-C) and
 * exports its URL as FLCACHE_REDIS so child processes reach the same server
 * (and makes it this process's default store URL). opts may be NULL: the
 * configuration's store settings. Prints the error and returns
 * FLC_EXIT_RUNTIME on failure. */
int flc_cli_connect(flc_cli_conn_t *c, const flc_config_t *cfg, const flc_store_opts_t *opts);
void flc_cli_disconnect(flc_cli_conn_t *c);

/* Installs SIGINT/SIGTERM/SIGHUP handlers that stop the embedded server and
 * then die of the signal. */
void flc_cli_install_signals(void);

/* Prints "flcache <cmd>: <message>" to stderr. */
void flc_cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Returns 1 when argv has -h or --help. */
int flc_cli_wants_help(int argc, char **argv);

/* Option values. Each parses v (the word after option opt of subcommand
 * cmd) or prints "flcache <cmd>: <opt> needs ..., not '<v>'" and returns
 * -1; v may be NULL (a missing value).
 *   _int: an integer in min..max          _num: a finite number >= min
 *   (strictly above min when strict is 1) */
int flc_cli_opt_int(const char *cmd, const char *opt, const char *v, long long min,
                    long long max, long long *out);
int flc_cli_opt_num(const char *cmd, const char *opt, const char *v, double min, int strict,
                    double *out);

/* Formats a byte count as "12.3 MiB". */
void flc_cli_bytes(char *out, size_t outlen, double bytes);

/* Subcommands: argv[0] is the subcommand name. Return an FLC_EXIT_* code. */
int flc_cmd_version(int argc, char **argv);
int flc_cmd_train(int argc, char **argv);
int flc_cmd_query(int argc, char **argv);
int flc_cmd_simulate(int argc, char **argv);
int flc_cmd_store(int argc, char **argv);
int flc_cmd_up(int argc, char **argv);
int flc_cmd_down(int argc, char **argv);

#endif
