/* Check counting, printing, and the redis-server fixture for the tests. */
#include "tests/harness.h"

#include <stdarg.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static int g_checks, g_failed;

int flc_t_check(int ok, const char *file, int line, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    g_checks++;
    if (ok) {
        printf("ok - %s\n", msg);
    } else {
        g_failed++;
        printf("not ok - %s (%s:%d)\n", msg, file, line);
    }
    fflush(stdout);
    return ok;
}

int flc_t_failed(void)
{
    return g_failed;
}

int flc_t_done(void)
{
    printf("# %d checks, %d failed\n", g_checks, g_failed);
    return g_failed == 0 && g_checks > 0 ? 0 : 1;
}

void flc_t_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("not ok - fatal: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    exit(1);
}

void flc_fixture_start(flc_fixture_t *fx, size_t maxmemory)
{
    signal(SIGPIPE, SIG_IGN); /* as every store user should (cache/store.h) */
    flc_err_t err = {0};
    flc_embed_opts_t o = {.tcp_port = -1, .maxmemory = maxmemory};
    fx->srv = flc_embed_start(&o, &err);
    if (fx->srv == NULL)
        flc_t_fatal("cannot start redis-server for the test: %s", flc_err_msg(&err));
    fx->unix_url = flc_embed_url(fx->srv);
    fx->tcp_url = flc_embed_tcp_url(fx->srv);
    printf("# redis-server pid %d at %s and %s\n", (int)flc_embed_pid(fx->srv), fx->unix_url,
           fx->tcp_url);
}

void flc_fixture_stop(flc_fixture_t *fx)
{
    flc_embed_stop(fx->srv);
    fx->srv = NULL;
}

void flc_t_fill(float *v, size_t n, unsigned seed)
{
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        v[i] = (float)((double)(s >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
    }
}

int flc_t_run(const char *cmdline, char *out, size_t cap)
{
    char *full = malloc(strlen(cmdline) + 8);
    if (full == NULL)
        flc_t_fatal("out of memory");
    sprintf(full, "%s 2>&1", cmdline);
    FILE *p = popen(full, "r");
    free(full);
    if (p == NULL)
        flc_t_fatal("cannot run '%s'", cmdline);
    size_t n = 0;
    if (cap > 0) {
        n = fread(out, 1, cap - 1, p);
        out[n] = '\0';
    }
    char sink[4096]; /* drain what did not fit, so the child never blocks */
    while (fread(sink, 1, sizeof sink, p) > 0) {
    }
    int st = pclose(p);
    if (st == -1)
        return -1;
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    return 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

const char *flc_t_build_dir(void)
{
    const char *d = getenv("FLCACHE_BUILD_DIR");
    return d && *d ? d : ".";
}
