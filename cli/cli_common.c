/* What the subcommands share: connection set-up and clean-up, error lines,
 * byte counts, JSON output, job names and the function platform. */
#include "cli/cli.h"

#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/clock.h"
#include "base/log.h"
#include "cli/platform.h"
#include "runtime/cost.h"

void flc_cli_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "flcache %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

void flc_cli_bytes(char *out, size_t outlen, double b)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4)
        b /= 1024, i++;
    snprintf(out, outlen, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

void flc_cli_print_json(const cJSON *j, int pretty)
{
    char *t = j ? (pretty ? cJSON_Print(j) : cJSON_PrintUnformatted(j)) : NULL;
    if (t)
        printf("%s\n", t);
    cJSON_free(t);
}

const char *flc_cli_job_name(const char *job, const char *prefix, char *buf, size_t len)
{
    if (job != NULL && strcmp(job, prefix) != 0)
        return job;
    snprintf(buf, len, "%s-%llu-%d", prefix, (unsigned long long)(flc_wall_ms() / 1000),
             (int)getpid());
    return buf;
}

/* The function binary: $FLCACHE_FN, else flcache-fn next to this program
 * (/proc/self/exe), else plain "flcache-fn". */
void flc_cli_fn_path(char *out, size_t len)
{
    const char *env = flc_config_program()->fn_path; /* FLCACHE_FN */
    if (env != NULL && *env) {
        snprintf(out, len, "%s", env);
        return;
    }
    char self[PATH_MAX - 16]; /* room for "/flcache-fn" in out */
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        snprintf(out, len, "flcache-fn");
        return;
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    snprintf(out, len, "%s/flcache-fn", self);
}

flc_pool_t *flc_cli_pool_start(const char *cmd, const flc_cli_conn_t *conn,
                               unsigned concurrency, unsigned memory_mb, unsigned timeout_s,
                               double price)
{
    /* --platform / FLCACHE_PLATFORM: the same pool, its invocations sent
     * to Lambda or OpenWhisk (runtime/platform.h). */
    int platform = flc_cli_platform();
    flc_remote_cfg_t remote;
    flc_config_remote_cfg(flc_config_program(), platform, &remote);
    if (platform != FLC_PLATFORM_LOCAL && conn->embedded != NULL) {
        flc_cli_error(cmd, "the functions run on %s, which cannot reach the private "
                      "redis-server of this run: set FLCACHE_REDIS to a cache they reach",
                      flc_platform_name(platform));
        return NULL;
    }
    char fn[PATH_MAX];
    flc_cli_fn_path(fn, sizeof fn);
    /* The instances' environment is built here, not by setenv on this
     * process: the configuration was read once at start, and an embedded
     * server's URL exists only in conn. The pool copies these strings. */
    char redis[sizeof conn->url + 16];
    snprintf(redis, sizeof redis, "FLCACHE_REDIS=%s", conn->url);
    const char *const env[] = {"OPENBLAS_NUM_THREADS=1", redis, NULL};
    flc_pool_cfg_t pc;
    flc_pool_cfg_init(&pc);
    pc.fn_path = fn;
    pc.memory_mb = memory_mb;
    pc.timeout_ms = timeout_s * 1000u;
    pc.concurrency = concurrency;
    pc.max_warm = concurrency;
    pc.price_per_gb_s = price;
    pc.env = env;
    flc_config_pool_cfg(flc_config_program(), &pc); /* FLCACHE_POOL_MEM */
    if (platform != FLC_PLATFORM_LOCAL) {
        pc.remote = &remote;
        if (platform == FLC_PLATFORM_LAMBDA) /* Lambda bills each request too */
            pc.price_per_request = FLC_LAMBDA_PRICE_REQUEST;
    }
    flc_err_t e = {0};
    flc_pool_t *pool = flc_pool_new(&pc, &e);
    if (pool == NULL)
        flc_cli_error(cmd, "cannot start the function platform: %s", flc_err_msg(&e));
    return pool;
}

static void on_signal(int sig)
{
    flc_embed_emergency_stop();
    signal(sig, SIG_DFL);
    raise(sig);
}

void flc_cli_install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

int flc_cli_connect(flc_cli_conn_t *c, const flc_config_t *cfg, const flc_store_opts_t *opts)
{
    memset(c, 0, sizeof *c);
    c->cfg = cfg;
    flc_err_t err = {0};
    const char *url = cfg->redis;
    if (url == NULL) {
        flc_embed_opts_t eo = {0};
        flc_config_embed_opts(cfg, &eo);
        c->embedded = flc_embed_start(&eo, &err);
        if (c->embedded == NULL) {
            fprintf(stderr, "flcache: cannot start the embedded redis-server: %s\n",
                    flc_err_msg(&err));
            return FLC_EXIT_RUNTIME;
        }
        url = flc_embed_url(c->embedded);
        FLC_INFO("embedded redis-server at %s", url);
    }
    snprintf(c->url, sizeof c->url, "%s", url);
    flc_store_opts_t so;
    flc_cold_opts_t cold;
    if (opts == NULL) {
        flc_config_store_opts(cfg, &so, &cold);
        opts = &so;
    }
    c->store = flc_store_open(url, opts, &err);
    if (c->store == NULL) {
        fprintf(stderr, "flcache: cannot open the cache: %s\n", flc_err_msg(&err));
        flc_cli_disconnect(c);
        return FLC_EXIT_RUNTIME;
    }
    return FLC_EXIT_OK;
}

void flc_cli_disconnect(flc_cli_conn_t *c)
{
    flc_store_close(c->store);
    c->store = NULL;
    if (c->embedded) {
        flc_embed_stop(c->embedded);
        c->embedded = NULL;
    }
}
