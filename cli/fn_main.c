/* flcache-fn: the one function binary. It registers the roles and hands
 * control to the runtime (runtime/fn.h), which picks the mode: local
 * (JSON lines on stdin/stdout, driven by the local pool), OpenWhisk native
 * action (argv[1]) or AWS Lambda custom runtime (AWS_LAMBDA_RUNTIME_API).
 *
 * Roles registered here:
 *   echo        a deployment check, not a workload: answers its event, pid
 *               and network namespace, and does nothing else
 *               (`flcache-fn '{"role":"echo"}'`, the Lambda smoke test).
 *   probe       test builds only (build/flcache-fn-test, this file compiled
 *               with FLC_FN_TEST_ROLES by tests/CMakeLists.txt): the runtime
 *               tests' self-check, which on request sleeps, allocates and
 *               touches memory, burns CPU, fails, crashes, creates a file at
 *               a path the event names (crash_once) or connects anywhere.
 *               Whoever can send an event to a deployed function could do
 *               all that, so the binary users deploy (flcache-fn) has no
 *               probe and answers it as an unknown role (issue 13).
 *   worker      synchronous SGD worker (workers/sgd_worker.h): trains with
 *               its peers through the cache and answers loss, accuracy,
 *               checksum.
 *   client      one federated client's round (clients/client.h): trains on
 *               its samples and pushes its delta (`flcache simulate`).
 *   aggregator  the merger of one shard of one round
 *               (aggregator/reduce_scatter.h).
 *   query       one query answered next to the data (aggregator/query.h).
 *   job         one task of a `flcache run` workload (jobs/job.h): a word
 *               count's map or reduce, a matrix block, a row slab, tiles, trees.
 * To add a role, add one line to the `roles` table in main().
 *
 * The roles' configuration: this program reads the environment once
 * (cli/config.h) and gives every role the same fn_env_t as the user pointer
 * of flc_fn_register: the cache URL (FLCACHE_REDIS) and store options
 * (FLCACHE_CHUNK, FLCACHE_MAX_MSG, FLCACHE_COLD and its S3 settings) as a
 * flc_store_cfg_t, and the data dir (FLCACHE_DATA_DIR). Each handler passes
 * them to its library entry point; an event's own "redis" (or data dir)
 * still wins for that event. In OpenWhisk mode the event's FLCACHE_*
 * string parameters are applied to the configuration first (an action's
 * bound parameters are its environment there).
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
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>

#include "aggregator/query.h"
#include "aggregator/reduce_scatter.h"
#include "base/clock.h"
#include "base/log.h"
#include "cli/config.h"
#include "cli/opt.h"
#include "clients/client.h"
#include "jobs/job.h"
#include "base/event.h"
#include "runtime/fn.h"
#include "workers/sgd_worker.h"

/* The "echo" role: the event back, with where it ran. Reads nothing
 * else, writes nothing, connects nowhere. */
static cJSON *where_ran(const cJSON *event)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddItemToObject(r, "echo", cJSON_Duplicate(event, 1));
    cJSON_AddNumberToObject(r, "pid", (double)getpid());
    char ns[64];
    ssize_t nl = readlink("/proc/self/ns/net", ns, sizeof ns - 1);
    ns[nl > 0 ? nl : 0] = '\0';
    cJSON_AddStringToObject(r, "netns", ns);
    return r;
}

static int echo(const cJSON *event, cJSON **result, flc_fn_ctx_t *ctx)
{
    (void)ctx;
    *result = where_ran(event);
    return 0;
}

#ifdef FLC_FN_TEST_ROLES
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

/* The probe's "connect": opens target ("unix:PATH" or "tcp:A.B.C.D:PORT"),
 * sends a Redis PING and reports {"ok":true,"reply":"+PONG"} or
 * {"ok":false,"error":"..."}, so the platform tests can see what an
 * instance reaches from where it was placed. Waits at most 2 s. */
static cJSON *probe_connect(const char *target)
{
    cJSON *o = cJSON_CreateObject();
    struct sockaddr_storage sa;
    socklen_t len = 0;
    memset(&sa, 0, sizeof sa);
    const char *bad = NULL;
    if (strncmp(target, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&sa;
        un->sun_family = AF_UNIX;
        if (strlen(target + 5) >= sizeof un->sun_path)
            bad = "socket path too long";
        else
            snprintf(un->sun_path, sizeof un->sun_path, "%s", target + 5);
        len = sizeof *un;
    } else if (strncmp(target, "tcp:", 4) == 0) {
        struct sockaddr_in *in = (struct sockaddr_in *)&sa;
        char host[64];
        const char *colon = strrchr(target + 4, ':');
        size_t hl = colon != NULL ? (size_t)(colon - target - 4) : 0;
        in->sin_family = AF_INET;
        if (colon == NULL || hl >= sizeof host)
            bad = "expected tcp:A.B.C.D:PORT";
        else {
            memcpy(host, target + 4, hl);
            host[hl] = '\0';
            in->sin_port = htons((uint16_t)atoi(colon + 1));
            if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
                bad = "expected tcp:A.B.C.D:PORT";
        }
        len = sizeof *in;
    } else {
        bad = "expected unix:PATH or tcp:A.B.C.D:PORT";
    }
    char reply[64] = "";
    int fd = -1;
    if (bad == NULL) {
        fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct timeval tv = {.tv_sec = 2};
        if (fd >= 0) {
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        }
        ssize_t n = -1;
        if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, len) == 0 &&
            write(fd, "PING\r\n", 6) == 6)
            n = read(fd, reply, sizeof reply - 1);
        if (n <= 0)
            bad = n == 0 ? "connection closed" : strerror(errno);
        else
            reply[strcspn(reply, "\r\n")] = '\0';
    }
    if (fd >= 0)
        close(fd);
    cJSON_AddBoolToObject(o, "ok", bad == NULL);
    if (bad != NULL)
        cJSON_AddStringToObject(o, "error", bad);
    else
        cJSON_AddStringToObject(o, "reply", reply);
    return o;
}

/* probe event fields, all optional:
 *   alloc_mb N     map N MB and write every page (ok:false if refused)
 *   burn_ms N      spin the CPU for N ms (reported as compute time)
 *   spin_m N       a fixed N million arithmetic steps; the result adds
 *                  spin_wall_ms and spin_cpu_ms (their ratio is the CPU
 *                  share the instance got)
 *   sleep_ms N     sleep N ms after allocating (reported as communication
 *                  time: it stands for waiting on the network)
 *   fail "msg"     return an error with that message
 *   crash true     abort() the process
 *   crash_once "path"  abort() unless path exists; creates it first, so a
 *                  retried invocation succeeds (tests of retries)
 *   print "text"   printf text to stdout (must not corrupt local mode)
 *   connect "unix:PATH" | "tcp:A.B.C.D:PORT"  connect there and PING
 *                  (what a placed instance can reach; see probe_connect)
 * result: {"echo": <event>, "pid": N, "allocated_mb": N,
 *          "netns": "net:[4026531840]" (the instance's network namespace,
 *          readlink /proc/self/ns/net; "" if unreadable),
 *          "connect": {...} when asked} */
static int probe(const cJSON *event, cJSON **result, flc_fn_ctx_t *ctx)
{
    /* Every field is read before any is acted on: a bad one fails the
     * probe without half of it done. */
    const char *print, *once, *fail, *target;
    int crash;
    long long mb, sleep_ms;
    double burn_ms, spin_m;
    flc_err_t *e = &ctx->err;
    if (flc_ev_opt_str(event, "print", NULL, &print, e) ||
        flc_ev_opt_str(event, "crash_once", NULL, &once, e) ||
        flc_ev_opt_bool(event, "crash", 0, &crash, e) ||
        flc_ev_opt_str(event, "fail", NULL, &fail, e) ||
        flc_ev_opt_str(event, "connect", NULL, &target, e) ||
        flc_ev_opt_int(event, "alloc_mb", 0, 1048576, 0, &mb, e) ||
        flc_ev_opt_num(event, "burn_ms", 0, 86400000, 0, &burn_ms, e) ||
        flc_ev_opt_num(event, "spin_m", 0, 1e6, 0, &spin_m, e) ||
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
    double spin_wall = 0, spin_cpu = 0;
    if (spin_m > 0) {
        struct timespec c0, c1;
        uint64_t t0 = flc_now_ns();
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
        volatile double x = 1.0;
        for (long long i = 0; i < (long long)(spin_m * 1e6); i++)
            x = x * 1.0000001 + 1e-9;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
        spin_wall = (double)(flc_now_ns() - t0) / 1e6;
        spin_cpu = (double)(c1.tv_sec - c0.tv_sec) * 1e3 + (double)(c1.tv_nsec - c0.tv_nsec) / 1e6;
        flc_fn_add_compute(ctx, spin_wall);
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

    cJSON *r = where_ran(event);
    cJSON_AddNumberToObject(r, "allocated_mb", (double)mb);
    if (spin_m > 0) {
        cJSON_AddNumberToObject(r, "spin_wall_ms", spin_wall);
        cJSON_AddNumberToObject(r, "spin_cpu_ms", spin_cpu);
    }
    if (target != NULL)
        cJSON_AddItemToObject(r, "connect", probe_connect(target));
    *result = r;
    return 0;
}

#endif /* FLC_FN_TEST_ROLES */

/* What every role is handed (ctx->user), built once from the configuration. */
typedef struct fn_env {
    flc_store_cfg_t store;  /* FLCACHE_REDIS and the store options */
    flc_cold_opts_t cold;   /* store.opts.cold_opts points here */
    const char *data_dir;   /* FLCACHE_DATA_DIR; NULL: FLC_FASHION_DIR */
    int blas_one;           /* OPENBLAS_NUM_THREADS is unset */
} fn_env_t;

/* The "worker" role: the SGD worker reports its own compute / comm split. */
static int worker(const cJSON *event, cJSON **result, flc_fn_ctx_t *ctx)
{
    const fn_env_t *env = ctx->user;
    /* One BLAS thread per worker unless the deployment says otherwise: W
     * workers share the machine's cores, and BLAS threads would fight over
     * them. The program decides, not the library: only it knows what else
     * runs beside it (the local pool sets OPENBLAS_NUM_THREADS=1 for every
     * instance; on Lambda or OpenWhisk it is unset unless the deployment
     * sets it). */
    if (env->blas_one)
        openblas_set_num_threads(1);
    return flc_sgd_worker_fn(&env->store, env->data_dir, event, result, &ctx->compute_ms,
                             &ctx->comm_ms, &ctx->err);
}

/* The "client" role: one federated client's round (clients/client.h). */
static int client(const cJSON *event, cJSON **result, flc_fn_ctx_t *ctx)
{
    const fn_env_t *env = ctx->user;
    return flc_client_fn(&env->store, env->data_dir, event, result, &ctx->compute_ms,
                         &ctx->comm_ms, &ctx->err);
}

/* The "aggregator" role: the merger of one shard of one round. Its wait
 * for arrivals is communication, not compute. */
static int aggregator(const cJSON *event, cJSON **result, flc_fn_ctx_t *ctx)
{
    const fn_env_t *env = ctx->user;
    return flc_rs_aggregator_fn(&env->store, event, result, &ctx->compute_ms,
                                &ctx->comm_ms, &ctx->err);
}

/* The "query" role: one query, answered next to the data. */
static int query(const cJSON *event, cJSON **result, flc_fn_ctx_t *ctx)
{
    const fn_env_t *env = ctx->user;
    return flc_query_fn(&env->store, event, result, &ctx->err);
}

/* The "job" role: one task of a `flcache run` workload. */
static int job(const cJSON *event, cJSON **result, flc_fn_ctx_t *ctx)
{
    const fn_env_t *env = ctx->user;
    if (env->blas_one)
        openblas_set_num_threads(1); /* as the worker: W functions share the cores */
    return flc_job_fn(&env->store, env->data_dir, event, result, &ctx->compute_ms,
                      &ctx->comm_ms, &ctx->err);
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

/* OpenWhisk has no per-action environment: an action's bound parameters
 * (`wsk action update --param FLCACHE_REDIS redis://...`) arrive as
 * top-level fields of every event. The FLCACHE_* string fields are applied
 * to c as variables, with the environment's checks; a name that is no
 * variable is left to the role (it may be an event field). An event that
 * is not a JSON object is left for the runtime to report. */
static int apply_params(flc_config_t *c, const char *event, flc_err_t *e)
{
    cJSON *ev = cJSON_Parse(event);
    int rc = FLC_OK;
    const cJSON *m = cJSON_IsObject(ev) ? ev->child : NULL;
    for (; m != NULL && rc == FLC_OK; m = m->next) {
        if (m->string == NULL || strncmp(m->string, "FLCACHE_", 8) != 0 || !cJSON_IsString(m))
            continue;
        rc = flc_config_set(c, m->string, m->valuestring, e);
        if (rc == FLC_ENOTFOUND) {
            rc = FLC_OK;
            flc_err_clear(e);
        } else if (rc != FLC_OK) {
            flc_err_wrap(e, "event parameter: ");
        }
    }
    cJSON_Delete(ev);
    return rc;
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
        {"echo", echo, "deployment check: answers the event, pid and netns"},
#ifdef FLC_FN_TEST_ROLES
        {"probe", probe,
         "test self-check: echo, netns; sleep_ms, burn_ms, alloc_mb, fail, crash, connect"},
#endif
        {"worker", worker, "synchronous SGD worker: job, rank, workers, model, epochs, batch, "
                           "lr, comm (see workers/sgd_worker.h)"},
        {"client", client, "federated client: job, round, client, indices, model, lr, "
                           "local_epochs, mu, fault, delay_ms (see clients/client.h)"},
        {"aggregator", aggregator, "merger of one shard of one round: job, round, shard, "
                                   "num_shards, model_size, rule, expected, deadline_ms "
                                   "(see aggregator/reduce_scatter.h)"},
        {"query", query, "a query next to the data: kind, job, round | round_from/round_to, "
                         "client, k, cluster, seed, by, samples, no_cache, threads "
                         "(see aggregator/query.h)"},
        {"job", job, "a task of `flcache run`: task, job, nparts, ... (see jobs/job.h)"},
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
    /* The configuration: the environment, then (OpenWhisk) the event's
     * parameters over it, before anything is built from it. */
    flc_config_t cfg;
    flc_err_t cfg_err = {0};
    if (flc_config_read(&cfg, &cfg_err) != FLC_OK) {
        fprintf(stderr, "flcache-fn: %s\n", flc_err_msg(&cfg_err));
        return 2;
    }
    if (o.event != NULL && apply_params(&cfg, o.event, &cfg_err) != FLC_OK) {
        /* The action's result is the last stdout line: say it there too. */
        cJSON *r = cJSON_CreateObject();
        cJSON_AddFalseToObject(r, "ok");
        cJSON_AddStringToObject(r, "error", flc_err_msg(&cfg_err));
        char *line = cJSON_PrintUnformatted(r);
        printf("\n%s\n", line != NULL ? line : "{\"ok\":false}");
        cJSON_free(line);
        cJSON_Delete(r);
        fprintf(stderr, "flcache-fn: %s\n", flc_err_msg(&cfg_err));
        flc_config_clear(&cfg);
        return 2;
    }
    flc_log_set_level(cfg.log_level >= 0 ? cfg.log_level : FLC_LOG_OFF);
    fn_env_t env = {.data_dir = cfg.data_dir, .blas_one = cfg.openblas_threads == NULL};
    flc_config_store_cfg(&cfg, &env.store, &env.cold);

    signal(SIGPIPE, SIG_IGN); /* a vanished server is an error to report, not a kill */
    flc_fn_table_t *t = flc_fn_table_new();
    if (t == NULL) {
        fprintf(stderr, "flcache-fn: out of memory\n");
        flc_config_clear(&cfg);
        return 1;
    }
    for (size_t i = 0; i < NROLES; i++)
        flc_fn_register(t, roles[i].name, roles[i].handler, &env, roles[i].help);
    /* The runtime picks the mode from what is left: the Lambda API, the
     * event, or none. */
    char *mode_argv[] = {argv[0], (char *)o.event, NULL};
    rc = flc_fn_main(t, o.event ? 2 : 1, mode_argv, cfg.lambda_runtime_api,
                     cfg.lambda_max_events);
    flc_fn_table_free(t);
    flc_config_clear(&cfg);
    return rc;
}
