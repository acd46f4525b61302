/* flcache-fn: the one function binary. It registers the roles and hands
 * control to the runtime (runtime/fn.h), which picks the mode: local
 * (JSON lines on stdin/stdout, driven by the local pool), OpenWhisk native
 * action (argv[1]) or AWS Lambda custom runtime (AWS_LAMBDA_RUNTIME_API).
 *
 * Roles registered here:
 *   probe  a platform self-check, not a workload: it echoes its event and,
 *          on request, sleeps, allocates and touches memory, burns CPU,
 *          fails or crashes, so the runtime tests and `flcache-fn '<json>'`
 *          smoke tests can exercise timeouts, memory limits and retries.
 *   worker synchronous SGD worker (workers/sgd_worker.h): trains with its
 *          peers through the cache and answers loss, accuracy, checksum.
 * To add a role, add one line to the `roles` table in main(). */
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
#include "clients/client.h"
#include "runtime/event.h"
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
    const char *print = flc_ev_str(event, "print", NULL);
    if (print != NULL) {
        printf("%s\n", print);
        fflush(stdout);
    }
    const char *once = flc_ev_str(event, "crash_once", NULL);
    if (once != NULL && access(once, F_OK) != 0) {
        int fd = open(once, O_CREAT | O_WRONLY, 0600);
        if (fd >= 0)
            close(fd);
        abort();
    }
    if (flc_ev_bool(event, "crash", 0))
        abort();
    const char *fail = flc_ev_str(event, "fail", NULL);
    if (fail != NULL)
        return flc_err_set(&ctx->err, FLC_EINVAL, "probe asked to fail: %s", fail);

    long long mb = flc_ev_int(event, "alloc_mb", 0);
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
    double burn_ms = flc_ev_num(event, "burn_ms", 0);
    if (burn_ms > 0) {
        burn(burn_ms);
        flc_fn_add_compute(ctx, burn_ms);
    }
    long long sleep_ms = flc_ev_int(event, "sleep_ms", 0);
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
    cJSON_AddNumberToObject(r, "allocated_mb", (double)(mb > 0 ? mb : 0));
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

/* The "aggregator" role: the merger of one shard of one round. */
static int aggregator(const cJSON *event, cJSON **result, flc_fn_ctx_t *ctx)
{
    return flc_aggregator_run(event, result, &ctx->err);
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
    for (size_t i = 0; i < sizeof roles / sizeof *roles; i++)
        flc_fn_register(t, roles[i].name, roles[i].handler, NULL, roles[i].help);
    int rc = flc_fn_main(t, argc, argv);
    flc_fn_table_free(t);
    return rc;
}
