/* `flcache up` / `flcache down`: a long-lived private redis-server for a
 * series of commands, so their rounds accumulate in one cache. The server
 * lives in a per-user directory (default /tmp/flcache-up-<uid>) holding its
 * socket, log and pid file; `up` is idempotent (an answering server is reused). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "cli/cli.h"

static void up_usage(FILE *f)
{
    fprintf(f,
            "usage: flcache up [--dir DIR] [--port N] [--maxmemory BYTES]\n"
            "       flcache down [--dir DIR]\n"
            "\n"
            "`up` starts a redis-server that outlives the command (persistence off) and\n"
            "prints the line to export so later commands use it:\n"
            "  eval \"$(flcache up)\"   # sets FLCACHE_REDIS\n"
            "`down` stops it and removes its directory.\n"
            "\n"
            "options:\n"
            "  --dir DIR          where socket, log and pid live (default /tmp/flcache-up-<uid>)\n"
            "  --port N           also listen on 127.0.0.1:N (default: unix socket only)\n"
            "  --maxmemory BYTES  memory limit of the server (default: none)\n");
}

static void default_dir(char *out, size_t n)
{
    const char *tmp = flc_config_program()->tmpdir; /* TMPDIR */
    snprintf(out, n, "%s/flcache-up-%u", tmp && *tmp ? tmp : "/tmp", (unsigned)getuid());
}

static int parse(int argc, char **argv, char *dir, size_t dirlen, int *port, size_t *maxmem)
{
    default_dir(dir, dirlen);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--dir") == 0 && i + 1 < argc) {
            snprintf(dir, dirlen, "%s", argv[++i]);
        } else if (port && strcmp(a, "--port") == 0 && i + 1 < argc) {
            *port = atoi(argv[++i]);
            if (*port <= 0 || *port > 65535) {
                flc_cli_error(argv[0], "--port must be 1..65535");
                return FLC_EXIT_USAGE;
            }
        } else if (maxmem && strcmp(a, "--maxmemory") == 0 && i + 1 < argc) {
            *maxmem = strtoull(argv[++i], NULL, 10);
        } else {
            flc_cli_error(argv[0], "unknown option '%s'", a);
            up_usage(stderr);
            return FLC_EXIT_USAGE;
        }
    }
    return FLC_EXIT_OK;
}

int flc_cmd_up(int argc, char **argv)
{
    if (flc_cli_wants_help(argc, argv)) {
        up_usage(stdout);
        return FLC_EXIT_OK;
    }
    char dir[256], sock[300], pidf[300];
    int port = 0;
    size_t maxmem = 0;
    int rc = parse(argc, argv, dir, sizeof dir, &port, &maxmem);
    if (rc != FLC_EXIT_OK)
        return rc;
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
    flc_embed_opts_t o = {.tcp_port = port, .maxmemory = maxmem, .dir = dir, .detach = 1};
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
    if (flc_cli_wants_help(argc, argv)) {
        up_usage(stdout);
        return FLC_EXIT_OK;
    }
    char dir[256], path[320];
    int rc = parse(argc, argv, dir, sizeof dir, NULL, NULL);
    if (rc != FLC_EXIT_OK)
        return rc;
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
