/* `flcache`: the command-line tool. Dispatches to one subcommand per file
 * (cli/cmd_*.c) through the table below. Exit codes: 0 ok, 1 runtime error,
 * 2 usage error. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "base/log.h"
#include "cli/cli.h"
#include "cli/config.h"

typedef struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} command_t;

static const command_t commands[] = {
    {"train", flc_cmd_train, "synchronous distributed SGD on W worker functions"},
    {"simulate", flc_cmd_simulate, "federated learning with N simulated clients, K per round, "
                                   "round history in the cache"},
    {"aggregate", flc_cmd_aggregate, "merge one round of a job whose clients push from outside "
                                     "flcache (python/flcache)"},
    {"query", flc_cmd_query, "ask about a job's rounds: history, outliers, clusters, ..."},
    {"report", flc_cmd_report, "one HTML page of a job's rounds: plots of accuracy, "
                               "participation, outliers, clients"},
    {"store", flc_cmd_store, "the cache and its jobs: `store stats`, `ls`, `rm JOB`, "
                             "`expire --before WHEN`"},
    {"run", flc_cmd_run, "a serverless workload on W functions: wordcount, matmul, conv, "
                         "mandelbrot, forest"},
    {"tune", flc_cmd_tune, "recommend the memory size of a train, simulate or run job: a few "
                           "probes, a fitted time/cost curve"},
    {"export", flc_cmd_export, "write a global model, a merged round or a client's update to "
                               "an .npy or .safetensors file"},
    {"package", flc_cmd_package, "build the deployment zip of flcache-fn for AWS Lambda or "
                                 "OpenWhisk"},
    {"eval-set", flc_cmd_evalset, "store a held-out evaluation set with a job (for `query "
                                  "accuracy`)"},
    {"up", flc_cmd_up, "start a long-lived, persistent private redis-server; print its URL"},
    {"down", flc_cmd_down, "stop the server started by `flcache up`"},
    {"version", flc_cmd_version, "print versions of flcache and its libraries"},
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: flcache <command> [options]\n"
            "\n"
            "flcache stores federated-learning model updates in a Redis cache, merges them\n"
            "next to the data and answers questions about every round.\n"
            "\n"
            "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f,
            "\n"
            "Run `flcache <command> --help` for the options of one command.\n"
            "\n"
            "environment:\n"
            "  FLCACHE_REDIS   the cache: redis://[user:password@]host:port[/db] or\n"
            "                  unix:///path/to/redis.sock. Unset: every command starts a\n"
            "                  private redis-server on a unix socket and stops it on exit\n"
            "                  (throwaway: nothing on disk; `flcache up` keeps one).\n"
            "  FLCACHE_LOG     error|warn|info|debug (default warn)\n"
            "  FLCACHE_REDIS_MALLOC_CONF  jemalloc options of a private redis-server\n"
            "                  (default dirty_decay_ms:5000,muzzy_decay_ms:-1: freed pages\n"
            "                  kept 5 s for the next reads, then given back lazily;\n"
            "                  \"default\": jemalloc's own)\n"
            "  FLCACHE_CHUNK   chunk size for large values (default 256k)\n"
            "  FLCACHE_MAX_MSG largest accepted message (default 512m)\n"
            "\n"
            "exit codes: 0 ok, 1 runtime error, 2 usage error\n");
}

int main(int argc, char **argv)
{
    flc_err_t cfg_err = {0};
    if (flc_config_start(FLC_LOG_WARN, &cfg_err) != FLC_OK) {
        fprintf(stderr, "flcache: %s\n", flc_err_msg(&cfg_err));
        return FLC_EXIT_USAGE;
    }
    signal(SIGPIPE, SIG_IGN); /* a vanished server is an error to report, not a kill */
    if (argc < 2) {
        usage(stderr);
        return FLC_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return FLC_EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0)
        return flc_cmd_version(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++) {
        if (strcmp(cmd, commands[i].name) == 0) {
            flc_cli_install_signals();
            return commands[i].run(argc - 1, argv + 1);
        }
    }
    fprintf(stderr, "flcache: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return FLC_EXIT_USAGE;
}
