/* `flcache up` / `flcache down`: a long-lived private redis-server for a
 * series of commands, so their rounds accumulate in one cache. The server
 * lives in a per-user directory (default /tmp/flcache-up-<uid>) holding its
 * socket, log and pid file; `up` is idempotent (an answering server is reused). */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "cli/cli.h"
#include "cli/opt.h"

typedef struct up_opts {
    const char *dir;
    int port;               /* 0: unix socket only */
    size_t maxmem;          /* 0: no limit */
    char default_dir[256];
} up_opts_t;

#define DIR_OPTION                                                                  \
    {.name = "dir", .type = FLC_OPT_STR, .meta = "DIR", FLC_OPT_AT(up_opts_t, dir), \
     .help = "where socket, log and pid live"}

static const flc_opt_t up_options[] = {
    DIR_OPTION,
    {.name = "port", .type = FLC_OPT_INT, .meta = "N", FLC_OPT_AT(up_opts_t, port), .imin = 1,
     .imax = 65535, .def = "unix socket only", .help = "also listen on 127.0.0.1:N"},
    {.name = "maxmemory", .type = FLC_OPT_INT, .meta = "BYTES", FLC_OPT_AT(up_opts_t, maxmem),
     .imin = 0, .imax = LLONG_MAX, .def = "none", .help = "memory limit of the server"},
    {0},
};

static const flc_opt_t down_options[] = {DIR_OPTION, {0}};

static const flc_opt_cmd_t up_cmd = {
    .prog = "flcache up",
    .synopsis = "[--dir DIR] [--port N] [--maxmemory BYTES]",
    .about =
        "Starts a redis-server that outlives the command (persistence off) and prints\n"
        "the line to export so later commands use it:\n"
        "  eval \"$(flcache up)\"   # sets FLCACHE_REDIS\n"
        "A server already answering in DIR is reused. `flcache down` stops it and\n"
        "removes its directory.\n",
    .opts = up_options,
};

static const flc_opt_cmd_t down_cmd = {
    .prog = "flcache down",
    .synopsis = "[--dir DIR]",
    .about = "Stops the redis-server started by `flcache up` and removes its directory.\n",
    .opts = down_options,
};

static void default_dir(char *out, size_t n)
{
    const char *tmp = flc_config_program()->tmpdir; /* TMPDIR */
    snprintf(out, n, "%s/flcache-up-%u", tmp && *tmp ? tmp : "/tmp", (unsigned)getuid());
}

/* The options of up or down; the default DIR is per user. */
static int parse(const flc_opt_cmd_t *cmd, int argc, char **argv, up_opts_t *o, int *rc)
{
    memset(o, 0, sizeof *o);
    default_dir(o->default_dir, sizeof o->default_dir);
    o->dir = o->default_dir;
    return flc_opt_parse(cmd, argc, argv, o, sizeof *o, rc);
}

int flc_cmd_up(int argc, char **argv)
{
    up_opts_t u;
    int rc;
    if (!parse(&up_cmd, argc, argv, &u, &rc))
        return rc;
    const char *dir = u.dir;
    char sock[300], pidf[300];
    snprintf(sock, sizeof sock, "%s/redis.sock", dir);
    snprintf(pidf, sizeof pidf, "%s/redis.pid", dir);
    char url[320];
    snprintf(url, sizeof url, "unix://%s", sock);
    flc_err_t err = {0};
    flc_store_t *probe = access(sock, F_OK) == 0 ? flc_store_open(url, NULL, &err) : NULL;
    if (probe) {
        flc_store_close(probe);
        printf("export FLCACHE_REDIS=%s\n", url);
        fprintf(stderr, "flcache up: already running at %s\n", url);
        return FLC_EXIT_OK;
    }
    flc_embed_opts_t o = {.tcp_port = u.port, .maxmemory = u.maxmem, .dir = dir, .detach = 1};
    flc_config_embed_opts(flc_config_program(), &o); /* FLCACHE_REDIS_SERVER */
    flc_embed_t *e = flc_embed_start(&o, &err);
    if (e == NULL) {
        flc_cli_error("up", "%s", flc_err_msg(&err));
        return FLC_EXIT_RUNTIME;
    }
    FILE *f = fopen(pidf, "w");
    if (f) {
        fprintf(f, "%d\n", (int)flc_embed_pid(e));
        fclose(f);
    }
    printf("export FLCACHE_REDIS=%s\n", flc_embed_url(e));
    if (flc_embed_tcp_url(e))
        fprintf(stderr, "flcache up: also listening at %s\n", flc_embed_tcp_url(e));
    fprintf(stderr, "flcache up: redis-server pid %d in %s; stop it with `flcache down`\n",
            (int)flc_embed_pid(e), dir);
    flc_embed_forget(e); /* the server outlives us */
    return FLC_EXIT_OK;
}

int flc_cmd_down(int argc, char **argv)
{
    up_opts_t u;
    int rc;
    if (!parse(&down_cmd, argc, argv, &u, &rc))
        return rc;
    const char *dir = u.dir;
    char path[320];
    snprintf(path, sizeof path, "%s/redis.pid", dir);
    FILE *f = fopen(path, "r");
    int pid = 0;
    if (f == NULL || fscanf(f, "%d", &pid) != 1 || pid <= 0) {
        if (f)
            fclose(f);
        flc_cli_error("down", "no server started by `flcache up` in %s", dir);
        return FLC_EXIT_RUNTIME;
    }
    fclose(f);
    if (kill(pid, SIGTERM) != 0 && errno != ESRCH) {
        flc_cli_error("down", "cannot stop pid %d: %s", pid, strerror(errno));
        return FLC_EXIT_RUNTIME;
    }
    for (int i = 0; i < 200 && kill(pid, 0) == 0; i++)
        flc_sleep_ms(10);
    unlink(path);
    snprintf(path, sizeof path, "%s/redis.sock", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/redis.log", dir);
    unlink(path);
    rmdir(dir);
    fprintf(stderr, "flcache down: stopped redis-server pid %d\n", pid);
    return FLC_EXIT_OK;
}
