/* flcache-fn: the one function binary. It registers the roles and hands
 * control to the runtime (runtime/fn.h), which picks the mode: local
 * (JSON lines on stdin/stdout, driven by the local pool), OpenWhisk native
 * action (argv[1]) or AWS Lambda custom runtime (AWS_LAMBDA_RUNTIME_API).
 *
 * Roles registered here:
 *   probe       a platform self-check, not a workload: it echoes its event
 *               and, on request, sleeps, allocates and touches memory, burns
 *               CPU, fails or crashes, so the runtime tests and
 *               `flcache-fn '<json>'` smoke tests can exercise timeouts,
 *               memory limits and retries.
 *   worker      synchronous SGD worker (workers/sgd_worker.h): trains with
 *               its peers through the cache and answers loss, accuracy,
 *               checksum.
 *   client      one federated client's round (clients/client.h): trains on
 *               its samples and pushes its delta (`flcache simulate`).
 *   aggregator  the merger of one shard of one round
 *               (aggregator/reduce_scatter.h).
 *   query       one query answered next to the data (aggregator/query.h).
 * To add a role, add one line to the `roles` table in main().
 *
 * Its own arguments (--help, --local, an OpenWhisk event) are read with the
 * flcache option parser (cli/opt.h), so usage errors read as the flcache
 * command's do. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "aggregator/query.h"
#include "aggregator/reduce_scatter.h"
#include "base/clock.h"
#include "base/log.h"
#include "cli/config.h"
#include "cli/opt.h"
#include "clients/client.h"
#include "base/event.h"
#include "runtime/fn.h"
#include "workers/sgd_worker.h"

/* Spins for ms milliseconds of wall time doing arithmetic the compiler
 * cannot drop. */
static double burn(double ms)
{
    uint64_t end = flc_now_ns() + (uint64_t)(ms * 1e6);
    volatile double x = 1.0;
    while (flc_now_ns() < end)
        for (int i = 0; i < 10000; i++)
            x = x * 1.0000001 + 1e-9;
    return x;
}

/* probe event fields, all optional:
 *   alloc_mb N     map N MB and write every page (ok:false if refused)
 *   burn_ms N      spin the CPU for N ms (reported as compute time)
 *   sleep_ms N     sleep N ms after allocating (reported as communication
 *                  time: it stands for waiting on the network)
 *   fail "msg"     return an error with that message
 *   crash true     abort() the process
 *   crash_once "path"  abort() unless path exists; creates it first, so a
 *                  retried invocation succeeds (tests of retries)
 *   print "text"   printf text to stdout (must not corrupt local mode)
 * result: {"echo": <event>, "pid": N, "allocated_mb": N} */
static int probe(const cJSON *event, cJSON **result, flc_fn_ctx_t *ctx)
{
    /* Every field is read before any is acted on: a bad one fails the
     * probe without half of it done. */
    const char *print, *once, *fail;
    int crash;
    long long mb, sleep_ms;
    double burn_ms;
    flc_err_t *e = &ctx->err;
    if (flc_ev_opt_str(event, "print", NULL, &print, e) ||
        flc_ev_opt_str(event, "crash_once", NULL, &once, e) ||
        flc_ev_opt_bool(event, "crash", 0, &crash, e) ||
        flc_ev_opt_str(event, "fail", NULL, &fail, e) ||
        flc_ev_opt_int(event, "alloc_mb", 0, 1048576, 0, &mb, e) ||
        flc_ev_opt_num(event, "burn_ms", 0, 86400000, 0, &burn_ms, e) ||
        flc_ev_opt_int(event, "sleep_ms", 0, 86400000, 0, &sleep_ms, e))
        return e->code;
    if (print != NULL) {
        printf("%s\n", print);
        fflush(stdout);
    }
    if (once != NULL && access(once, F_OK) != 0) {
        int fd = open(once, O_CREAT | O_WRONLY, 0600);
        if (fd >= 0)
            close(fd);
        abort();
    }
    if (crash)
        abort();
    if (fail != NULL)
        return flc_err_set(&ctx->err, FLC_EINVAL, "probe asked to fail: %s", fail);

    char *mem = NULL;
    size_t bytes = 0;
    if (mb > 0) {
        /* mmap, not malloc: the memory really returns to the system at the
         * end (a sanitizer's quarantine would keep freed blocks resident),
         * so a warm instance's next peak RSS starts low again. */
        bytes = (size_t)mb << 20;
        mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (mem == MAP_FAILED)
            return flc_err_set(&ctx->err, FLC_ENOMEM, "probe cannot allocate %lld MB: %s", mb,
                               strerror(errno));
        long page = sysconf(_SC_PAGESIZE);
        for (size_t i = 0; i < bytes; i += (size_t)page)
            mem[i] = (char)i;
    }
    if (burn_ms > 0) {
        burn(burn_ms);
        flc_fn_add_compute(ctx, burn_ms);
    }
    if (sleep_ms > 0) {
        uint64_t t0 = flc_now_ns();
        flc_sleep_ms((unsigned)sleep_ms);
        flc_fn_add_comm(ctx, (double)(flc_now_ns() - t0) / 1e6);
    }
    if (mem != NULL)
        munmap(mem, bytes);

    cJSON *r = cJSON_CreateObject();
    cJSON_AddItemToObject(r, "echo", cJSON_Duplicate(event, 1));
    cJSON_AddNumberToObject(r, "pid", (double)getpid());
    cJSON_AddNumberToObject(r, "allocated_mb", (double)mb);
    *result = r;
    return 0;
}

/* The "worker" role: the SGD worker reports its own compute / comm split. */
static int worker(const cJSON *event, cJSON **result, flc_fn_ctx_t *ctx)
{
    double compute = -1, comm = -1;
    int rc = flc_sgd_worker_fn(event, result, &compute, &comm, &ctx->err);
    if (compute >= 0 && comm >= 0) {
        ctx->compute_ms = compute;
        ctx->comm_ms = comm;
    }
    return rc;
}

/* The "client" role: one federated client's round (clients/client.h). */
static int client(const cJSON *event, cJSON **result, flc_fn_ctx_t *ctx)
{
    double compute = -1, comm = -1;
    int rc = flc_client_fn(event, result, &compute, &comm, &ctx->err);
    if (compute >= 0 && comm >= 0) {
        ctx->compute_ms = compute;
        ctx->comm_ms = comm;
    }
    return rc;
}

/* The "aggregator" role: the merger of one shard of one round. Its wait
 * for arrivals is communication, not compute. */
static int aggregator(const cJSON *event, cJSON **result, flc_fn_ctx_t *ctx)
{
    double compute = -1, comm = -1;
    int rc = flc_rs_aggregator_fn(event, result, &compute, &comm, &ctx->err);
    if (compute >= 0 && comm >= 0) {
        ctx->compute_ms = compute;
        ctx->comm_ms = comm;
    }
    return rc;
}

/* The "query" role: one query, answered next to the data. */
static int query(const cJSON *event, cJSON **result, flc_fn_ctx_t *ctx)
{
    return flc_query_fn(event, result, &ctx->err);
}

typedef struct role {
    const char *name;
    flc_fn_handler_t handler;
    const char *help;
} role_t;

typedef struct fn_opts {
    int local;
    const char *event;
} fn_opts_t;

/* The OpenWhisk event: a JSON object. */
static int event_parse(const char *v, void *dest, const char **need)
{
    *need = "a JSON object ('{\"role\":...}')";
    if (v[0] != '{')
        return -1;
    ((fn_opts_t *)dest)->event = v;
    return 0;
}

static const flc_opt_t options[] = {
    {.name = "EVENT", .type = FLC_OPT_CUSTOM, .custom = event_parse, .flags = FLC_OPT_POSITIONAL,
     .help = "OpenWhisk native action: run this one event, the result is the last line on "
             "stdout"},
    {.name = "local", .type = FLC_OPT_FLAG, FLC_OPT_AT(fn_opts_t, local),
     .help = "local mode (also without arguments): JSON events on stdin, one result line "
             "each on stdout"},
    {0},
};

int main(int argc, char **argv)
{
    static const role_t roles[] = {
        {"probe", probe, "platform self-check: echo; sleep_ms, burn_ms, alloc_mb, fail, crash"},
        {"worker", worker, "synchronous SGD worker: job, rank, workers, model, epochs, batch, "
                           "lr, comm (see workers/sgd_worker.h)"},
        {"client", client, "federated client: job, round, client, indices, model, lr, "
                           "local_epochs, mu, fault, delay_ms (see clients/client.h)"},
        {"aggregator", aggregator, "merger of one shard of one round: job, round, shard, "
                                   "num_shards, model_size, rule, expected, deadline_ms "
                                   "(see aggregator/reduce_scatter.h)"},
        {"query", query, "a query next to the data: kind, job, round | round_from/round_to, "
                         "client, k, cluster, seed (see aggregator/query.h)"},
    };
    enum { NROLES = sizeof roles / sizeof *roles };
    /* The help's epilog lists the roles from the table above. */
    char epilog[2048];
    size_t at = (size_t)snprintf(epilog, sizeof epilog,
                                 "With AWS_LAMBDA_RUNTIME_API=host:port set, flcache-fn is an "
                                 "AWS Lambda custom\nruntime and reads its events from that "
                                 "API.\n\nroles (the event's \"role\"):\n");
    for (size_t i = 0; i < NROLES && at < sizeof epilog; i++)
        at += (size_t)snprintf(epilog + at, sizeof epilog - at, "  %-12s %s\n", roles[i].name,
                               roles[i].help);
    const flc_opt_cmd_t cmd = {
        .prog = "flcache-fn",
        .synopsis = "[--local | EVENT]",
        .about = "The function binary of flcache: it receives JSON events, runs the role each\n"
                 "names and answers one JSON result per event.\n",
        .epilog = epilog,
        .opts = options,
    };
    fn_opts_t o = {0};
    int rc;
    if (!flc_opt_parse(&cmd, argc, argv, &o, sizeof o, &rc))
        return rc;
    if (o.local && o.event)
        return flc_opt_usage_error(&cmd, "--local and EVENT: give one of them");
    flc_err_t cfg_err = {0};
    if (flc_config_start(FLC_LOG_OFF, &cfg_err) != FLC_OK) {
        fprintf(stderr, "flcache-fn: %s\n", flc_err_msg(&cfg_err));
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* a vanished server is an error to report, not a kill */
    flc_fn_table_t *t = flc_fn_table_new();
    if (t == NULL) {
        fprintf(stderr, "flcache-fn: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < NROLES; i++)
        flc_fn_register(t, roles[i].name, roles[i].handler, NULL, roles[i].help);
    /* The runtime picks the mode from what is left: the event, or none. */
    char *mode_argv[] = {argv[0], (char *)o.event, NULL};
    rc = flc_fn_main(t, o.event ? 2 : 1, mode_argv);
    flc_fn_table_free(t);
    return rc;
}
