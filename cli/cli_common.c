/* Connection set-up and clean-up shared by all subcommands. */
#include "cli/cli.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

void flc_cli_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "flcache %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

int flc_cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
            return 1;
    return 0;
}

void flc_cli_bytes(char *out, size_t outlen, double b)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (b >= 1024 && i < 4)
        b /= 1024, i++;
    snprintf(out, outlen, i ? "%.1f %s" : "%.0f %s", b, u[i]);
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
        setenv("FLCACHE_REDIS", url, 1);
        flc_config_store_defaults(cfg, url);
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
        unsetenv("FLCACHE_REDIS");
        flc_config_store_defaults(c->cfg, NULL);
    }
}

int flc_cli_opt_int(const char *cmd, const char *opt, const char *v, long long min,
                    long long max, long long *out)
{
    char *end = NULL;
    int digits = v != NULL && (isdigit((unsigned char)*v) ||
                               (*v == '-' && isdigit((unsigned char)v[1])));
    errno = 0;
    long long x = digits ? strtoll(v, &end, 10) : 0;
    if (!digits || *end != '\0' || errno == ERANGE || x < min || x > max) {
        flc_cli_error(cmd, "%s needs an integer in %lld..%lld, not '%s'", opt, min, max,
                      v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}

int flc_cli_opt_num(const char *cmd, const char *opt, const char *v, double min, int strict,
                    double *out)
{
    char *end = NULL;
    double x = v ? strtod(v, &end) : NAN;
    if (v == NULL || end == v || *end != '\0' || !isfinite(x) || x < min ||
        (strict && x == min)) {
        flc_cli_error(cmd, "%s needs a number %s %g, not '%s'", opt, strict ? ">" : ">=", min,
                      v ? v : "");
        return -1;
    }
    *out = x;
    return 0;
}
