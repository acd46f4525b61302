/* The testbed fixture: a Redis Cluster of several nodes on this machine, each
 * node in its own network namespace behind a tc-shaped link, made and removed
 * by scripts/testbed.sh (which says how it is built). The fixture only drives
 * the script, so a test sees exactly what a person running it by hand sees.
 *
 * Namespaces and tc need root. A case skips without it, except under CI=true,
 * where the scale-out tests not running must be seen as a failure. */
#define _GNU_SOURCE /* setns */
#include "tests/harness.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define OUT_CAP 16384

int flc_testbed_usable(char *why, size_t whylen)
{
    const char *ci = getenv("CI");
    if (geteuid() == 0 || (ci != NULL && strcmp(ci, "true") == 0))
        return 1;
    snprintf(why, whylen, "the testbed needs root (ip netns, tc); run as root, or CI=true to fail");
    return 0;
}

int flc_testbed_sh(const flc_testbed_t *tb, char *out, size_t cap, const char *fmt, ...)
{
    char args[1024], cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    /* timeout: a wedged script fails the case instead of hanging the runner */
    snprintf(cmd, sizeof cmd, "timeout 150 sh '%s' --name %s --state-dir '%s' %s", tb->script,
             tb->name, tb->dir, args);
    return flc_t_run(cmd, out, cap);
}

/* Copies the value of `export KEY='value'` or `KEY=value` in env's output. */
static void env_value(const char *env, const char *key, char *dst, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, "%s=", key);
    const char *p = strstr(env, pat);
    dst[0] = '\0';
    if (p == NULL)
        return;
    p += strlen(pat);
    char end = ' ';
    if (*p == '\'')
        end = *p++;
    size_t n = 0;
    while (p[n] && p[n] != end && p[n] != '\n' && n + 1 < cap)
        n++;
    memcpy(dst, p, n);
    dst[n] = '\0';
}

static void down_tracked(void *tb)
{
    flc_testbed_down(tb);
}

void flc_testbed_up(flc_testbed_t *tb, int masters, int replicas, const char *rate)
{
    static int made; /* testbeds this process made, for unique names */
    char why[160];
    if (!flc_testbed_usable(why, sizeof why))
        flc_t_skip("%s", why);
    if (geteuid() != 0)
        flc_t_fatal("testbed: needs root (ip netns, tc) and CI=true: not skipping");
    memset(tb, 0, sizeof *tb);
    tb->home_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    if (masters * (1 + replicas) > FLC_TESTBED_MAX_NODES)
        flc_t_fatal("testbed: %d x (1 + %d) nodes: the fixture keeps at most %d", masters,
                    replicas, FLC_TESTBED_MAX_NODES);
    /* t<pid><letter>: at most 8 characters, as the script wants */
    snprintf(tb->name, sizeof tb->name, "t%d%c", (int)(getpid() % 100000), 'a' + made++ % 26);
    snprintf(tb->dir, sizeof tb->dir, "/tmp/flc-testbed-%s", tb->name);
    const char *src = getenv("FLCACHE_SOURCE_DIR");
    snprintf(tb->script, sizeof tb->script, "%s/scripts/testbed.sh", src && *src ? src : ".");
    tb->masters = masters;
    tb->replicas = replicas;
    tb->nodes = masters * (1 + replicas);

    char *out = malloc(OUT_CAP);
    if (out == NULL)
        flc_t_fatal("out of memory");
    int rc = flc_testbed_sh(tb, out, OUT_CAP, "up --masters %d --replicas %d --rate %s", masters,
                            replicas, rate);
    if (rc != 0) {
        flc_t_fatal("testbed %s: '%s up --masters %d --replicas %d --rate %s' exit %d: %s",
                    tb->name, tb->script, masters, replicas, rate, rc, out);
    }
    tb->owner = getpid();
    flc_t_track(tb, down_tracked);
    rc = flc_testbed_sh(tb, out, OUT_CAP, "env");
    if (rc != 0)
        flc_t_fatal("testbed %s: env exit %d: %s", tb->name, rc, out);
    env_value(out, "FLC_TESTBED_SEED", tb->seed, sizeof tb->seed);
    env_value(out, "FLC_TESTBED_PASSWORD", tb->password, sizeof tb->password);
    env_value(out, "FLC_TESTBED_CLIENT_NS", tb->client_ns, sizeof tb->client_ns);
    env_value(out, "FLC_TESTBED_CLIENT_ADDR", tb->addr[0], sizeof tb->addr[0]);
    for (int k = 1; k <= tb->nodes; k++) {
        char key[48];
        snprintf(key, sizeof key, "FLC_TESTBED_ADDR_n%d", k);
        env_value(out, key, tb->addr[k], sizeof tb->addr[k]);
        if (tb->addr[k][0] == '\0')
            flc_t_fatal("testbed %s: env has no %s: %s", tb->name, key, out);
    }
    free(out);
    if (!tb->seed[0] || !tb->password[0] || !tb->client_ns[0])
        flc_t_fatal("testbed %s: env lacks the seed, password or client namespace", tb->name);
    printf("# testbed %s: %d masters x %d replicas, links %s, seed redis://:***@%s:6379, "
           "state %s\n",
           tb->name, masters, replicas, rate, tb->addr[1], tb->dir);
    fflush(stdout);
}

void flc_testbed_down(flc_testbed_t *tb)
{
    if (tb->owner != getpid())
        return; /* a case's process never removes the runner's testbed */
    flc_t_untrack(tb);
    tb->owner = 0;
    if (tb->home_ns >= 0) {
        if (setns(tb->home_ns, CLONE_NEWNET) != 0)
            perror("testbed: back to the runner's namespace");
        close(tb->home_ns);
        tb->home_ns = -1;
    }
    char out[4096];
    int rc = flc_testbed_sh(tb, out, sizeof out, "down");
    if (rc != 0)
        flc_t_fatal("testbed %s: down exit %d: %s", tb->name, rc, out);
}

int flc_testbed_status(const flc_testbed_t *tb, flc_testbed_node_t *nodes, int max, char *state)
{
    char *out = malloc(OUT_CAP);
    if (out == NULL)
        flc_t_fatal("out of memory");
    if (state)
        snprintf(state, 64, "cluster_state:unknown (status failed)");
    if (flc_testbed_sh(tb, out, OUT_CAP, "status") != 0) {
        free(out);
        return -1;
    }
    int n = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#' && state) {
            const char *p = strstr(line, "cluster_state:");
            if (p)
                snprintf(state, 64, "%.*s", (int)strcspn(p, " "), p);
            continue;
        }
        if (line[0] != 'n' || line[1] < '0' || line[1] > '9' || n >= max)
            continue;
        flc_testbed_node_t *d = &nodes[n];
        char pid[16], server[8], link[8];
        memset(d, 0, sizeof *d);
        if (sscanf(line, "%15s %31s %15s %31s %95s %15s %7s %7s", d->name, d->ns, d->addr,
                   d->role, d->slots, pid, server, link) != 8)
            continue;
        d->pid = atoi(pid);
        d->up = strcmp(server, "up") == 0;
        d->link_up = strcmp(link, "up") == 0;
        n++;
    }
    free(out);
    return n;
}

int flc_testbed_join_client(const flc_testbed_t *tb, char *err, size_t cap)
{
    char path[96];
    snprintf(path, sizeof path, "/var/run/netns/%s", tb->client_ns);
    int ns = open(path, O_RDONLY | O_CLOEXEC);
    if (ns < 0 || setns(ns, CLONE_NEWNET) != 0) {
        snprintf(err, cap, "cannot join the client namespace %s", path);
        if (ns >= 0)
            close(ns);
        return -1;
    }
    close(ns);
    return 0;
}

void flc_testbed_case(const flc_testbed_t *tb, const char *skip_why)
{
    if (skip_why[0])
        flc_t_skip("%s", skip_why);
    if (tb->name[0] == '\0')
        flc_t_fatal("the shared testbed is not up");
    signal(SIGPIPE, SIG_IGN);
    char why[160]; /* the longest namespace path and its sentence fit */
    if (flc_testbed_join_client(tb, why, sizeof why) != 0)
        flc_t_fatal("%s", why);
}
