/* bench/bench_testbed.c: the Redis Cluster testbed of bench/cluster
 * (scripts/testbed.sh on network namespaces, node links shaped with tbf):
 * bringing it up and down, entering its client namespace, placing threads
 * next to a node (cli/place.h), emptying masters, and reading what the bench
 * measures against (veth byte counters, the slot map). Apart from the round
 * and query cases so bench/cluster.c holds only what it measures.
 *
 * The testbed's name, the script's path, this process's own namespace and
 * whether a testbed of ours may exist are globals of this file only: the
 * signal handler (on_signal) must reach them without arguments, and it stays
 * async-signal-safe (setns, fork, execl, waitpid, _exit). bench_tb_init sets
 * them all before it installs the handler. */
#define _GNU_SOURCE
#include "bench/bench_testbed.h"

#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/clock.h"
#include "bench/bench_util.h"
#include "cache/slot.h"
#include "cache/store_raw.h"

/* "cb<pid>": not the tests' names (t<pid><letter>), and two benches at once
 * (two sessions on one machine) do not take each other's testbed down. Set
 * by find_script, before any signal handler can read it. */
static char g_tb_name[16] = "cb";

static char g_script[PATH_MAX];
static int g_root_ns = -1;            /* this process's own network namespace */
static volatile sig_atomic_t g_up = 0; /* a testbed of ours may exist */

static void find_script(void)
{
    snprintf(g_tb_name, sizeof g_tb_name, "cb%d", (int)(getpid() % 100000));
    const char *src = getenv("FLCACHE_SOURCE_DIR");
    if (src && *src) {
        snprintf(g_script, sizeof g_script, "%s/scripts/testbed.sh", src);
        return;
    }
    /* build/bench/cluster -> ../../scripts/testbed.sh */
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        for (int up = 0; up < 3; up++) {
            char *sl = strrchr(exe, '/');
            if (sl == NULL)
                break;
            *sl = '\0';
        }
        snprintf(g_script, sizeof g_script, "%.*s/scripts/testbed.sh", PATH_MAX - 32, exe);
        if (access(g_script, R_OK) == 0)
            return;
    }
    snprintf(g_script, sizeof g_script, "scripts/testbed.sh");
}


int bench_tb_sh(char *out, size_t cap, const char *args)
{
    char cmd[PATH_MAX + 512];
    snprintf(cmd, sizeof cmd, "timeout 180 sh '%s' --name %s %s 2>&1", g_script, g_tb_name, args);
    return bench_run(cmd, out, cap);
}

/* Back to our own namespace (teardown kills every process inside the
 * testbed's namespaces, this one too if it were still in the client's). */
static void leave_client_ns(void)
{
    if (g_root_ns >= 0)
        setns(g_root_ns, CLONE_NEWNET);
}

void bench_tb_down(void)
{
    if (!g_up)
        return;
    leave_client_ns();
    char out[4096];
    if (bench_tb_sh(out, sizeof out, "down") != 0)
        fprintf(stderr, "cluster: testbed down failed: %s\n", out);
    g_up = 0;
}

/* Only async-signal-safe calls: the worker threads block these signals,
 * so this runs on the main thread, which leaves the client namespace first. */
static void on_signal(int sig)
{
    if (g_root_ns >= 0)
        setns(g_root_ns, CLONE_NEWNET);
    if (g_up) {
        pid_t p = fork();
        if (p == 0) {
            execl("/bin/sh", "sh", g_script, "--name", g_tb_name, "down", (char *)NULL);
            _exit(127);
        }
        if (p > 0)
            waitpid(p, NULL, 0);
    }
    _exit(128 + sig);
}

void bench_tb_init(void)
{
    find_script();
    g_root_ns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

const char *bench_tb_script(void)
{
    return g_script;
}

int bench_tb_root_ns(void)
{
    return g_root_ns;
}

/* ------------------------------------------------------------ placement */

/* The testbed's node map (FLCACHE_NODES as `testbed.sh env` prints it),
 * parsed once; every case that places work next to a node (the round's
 * mergers, the query workers) takes its callback from here. */
static flc_cli_nodes_t *g_nodes;

/* *out = the callback that moves a thread into a node's namespace and points
 * its stores at that node's unix socket (cli/place.h). -1 when the map does
 * not parse or misses a node of the testbed. */
int bench_tb_place(const bench_tb_t *tb, flc_place_t *out)
{
    flc_err_t e = {0};
    if (g_nodes == NULL && flc_cli_nodes_parse(tb->nodes_map, &g_nodes, &e) != 0) {
        fprintf(stderr, "cluster: FLCACHE_NODES of the testbed: %s\n", flc_err_msg(&e));
        return -1;
    }
    for (int k = 0; k < BENCH_TB_MASTERS; k++) {
        char a[80];
        const char *ns, *sock;
        snprintf(a, sizeof a, "%s:6379", tb->addr[k]);
        if (flc_cli_nodes_find(g_nodes, a, &ns, &sock) != 0) {
            fprintf(stderr, "cluster: the testbed's FLCACHE_NODES has no node %s\n", a);
            return -1;
        }
    }
    *out = flc_cli_place(g_nodes);
    return 0;
}

void bench_tb_place_free(void)
{
    flc_cli_nodes_free(g_nodes);
    g_nodes = NULL;
}

int bench_tb_up(bench_tb_t *tb, const char *rate)
{
    static char out[16384];
    /* a testbed left by a killed run of this bench goes first */
    bench_tb_sh(out, sizeof out, "down");
    g_up = 1;
    char up[96];
    snprintf(up, sizeof up, "up --masters 3 --replicas 0 --rate %s", rate);
    if (bench_tb_sh(out, sizeof out, up) != 0) {
        fprintf(stderr, "cluster: testbed up failed:\n%s\n", out);
        return -1;
    }
    if (bench_tb_sh(out, sizeof out, "env") != 0) {
        fprintf(stderr, "cluster: testbed env failed:\n%s\n", out);
        return -1;
    }
    bench_env_value(out, "FLC_TESTBED_SEED", tb->seed, sizeof tb->seed);
    bench_env_value(out, "FLC_TESTBED_PASSWORD", tb->password, sizeof tb->password);
    bench_env_value(out, "FLC_TESTBED_CLIENT_NS", tb->client_ns, sizeof tb->client_ns);
    bench_env_value(out, "FLCACHE_NODES", tb->nodes_map, sizeof tb->nodes_map);
    for (int k = 0; k < BENCH_TB_MASTERS; k++) {
        char key[64];
        snprintf(key, sizeof key, "FLC_TESTBED_NS_n%d", k + 1);
        bench_env_value(out, key, tb->ns[k], sizeof tb->ns[k]);
        snprintf(key, sizeof key, "FLC_TESTBED_ADDR_n%d", k + 1);
        bench_env_value(out, key, tb->addr[k], sizeof tb->addr[k]);
        if (!tb->ns[k][0] || !tb->addr[k][0]) {
            fprintf(stderr, "cluster: testbed env names no node n%d:\n%s\n", k + 1, out);
            return -1;
        }
    }
    if (!tb->seed[0] || !tb->client_ns[0]) {
        fprintf(stderr, "cluster: testbed env has no seed or client namespace:\n%s\n", out);
        return -1;
    }
    /* redis-cli below takes the password from the environment, not argv */
    setenv("REDISCLI_AUTH", tb->password, 1);
    setenv("FLCACHE_REDIS", tb->seed, 1);
    for (int k = 0; k < BENCH_TB_MASTERS; k++) {
        char cmd[256];
        snprintf(cmd, sizeof cmd, "ip netns exec %s redis-cli -h %s -p 6379 cluster myid 2>&1",
                 tb->ns[k], tb->addr[k]);
        if (bench_run(cmd, tb->id[k], sizeof tb->id[k]) != 0 || strlen(tb->id[k]) < 40) {
            fprintf(stderr, "cluster: node n%d's id: %s\n", k + 1, tb->id[k]);
            return -1;
        }
        tb->id[k][40] = '\0';
        /* Redis 7 turns a master that lost its last slot into a replica of
         * the slots' new owner, which would then stream every write of the
         * remaining nodes over their links: the emptied masters must stay
         * idle masters. */
        char out[256];
        snprintf(cmd, sizeof cmd,
                 "ip netns exec %s redis-cli -h %s -p 6379 config set "
                 "cluster-allow-replica-migration no 2>&1",
                 tb->ns[k], tb->addr[k]);
        if (bench_run(cmd, out, sizeof out) != 0 || strncmp(out, "OK", 2) != 0) {
            fprintf(stderr, "cluster: n%d: cluster-allow-replica-migration: %s\n", k + 1, out);
            return -1;
        }
    }
    return 0;
}

int bench_tb_enter_client_ns(const bench_tb_t *tb)
{
    char path[128];
    snprintf(path, sizeof path, "/var/run/netns/%s", tb->client_ns);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
        perror(path);
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return 0;
}

/* Leaves the slots on n1..n<nodes> only: the other masters get weight 0
 * and redis-cli moves their (empty) slots to the rest. */
int bench_tb_use_nodes(const bench_tb_t *tb, int nodes)
{
    if (nodes >= BENCH_TB_MASTERS)
        return 0;
    char cmd[1024], w[512] = "";
    for (int k = nodes; k < BENCH_TB_MASTERS; k++)
        snprintf(w + strlen(w), sizeof w - strlen(w), " %s=0", tb->id[k]);
    snprintf(cmd, sizeof cmd,
             "redis-cli --cluster rebalance %s:6379 --cluster-weight%s --cluster-yes 2>&1",
             tb->addr[0], w);
    static char out[1 << 16];
    uint64_t t0 = flc_now_ns();
    if (bench_run(cmd, out, sizeof out) != 0) {
        fprintf(stderr, "cluster: rebalance to %d node(s) failed:\n%s\n", nodes, out);
        return -1;
    }
    if (bench_tb_sh(out, sizeof out, "wait 60") != 0) {
        fprintf(stderr, "cluster: after rebalance: %s\n", out);
        return -1;
    }
    /* no node may have become a replica (see bench_tb_up) */
    snprintf(cmd, sizeof cmd, "redis-cli -h %s -p 6379 cluster nodes 2>&1 | grep -c slave",
             tb->addr[0]);
    bench_run(cmd, out, sizeof out);
    if (atoi(out) != 0) {
        fprintf(stderr, "cluster: after rebalance %d node(s) are replicas\n", atoi(out));
        return -1;
    }
    fprintf(stderr, "cluster: slots moved to n1..n%d in %.1f s\n", nodes,
            (double)(flc_now_ns() - t0) / 1e9);
    return 0;
}

/* Bytes received and sent by node k's end of its link. */
int bench_tb_link_counters(const bench_tb_t *tb, int k, uint64_t *rx, uint64_t *tx)
{
    char cmd[256];
    static char out[8192];
    snprintf(cmd, sizeof cmd, "ip -n %s -s -j link show dev eth0 2>&1", tb->ns[k]);
    if (bench_run(cmd, out, sizeof out) != 0)
        return -1;
    cJSON *j = cJSON_Parse(out);
    cJSON *st = cJSON_GetObjectItem(cJSON_GetArrayItem(j, 0), "stats64");
    cJSON *r = cJSON_GetObjectItem(cJSON_GetObjectItem(st, "rx"), "bytes");
    cJSON *t = cJSON_GetObjectItem(cJSON_GetObjectItem(st, "tx"), "bytes");
    int ok = cJSON_IsNumber(r) && cJSON_IsNumber(t);
    if (ok)
        *rx = (uint64_t)r->valuedouble, *tx = (uint64_t)t->valuedouble;
    cJSON_Delete(j);
    return ok ? 0 : -1;
}

/* Which node (0..) owns each slot, from CLUSTER SLOTS; -1 unknown. */
int bench_tb_slot_owners(flc_store_t *s, const bench_tb_t *tb, signed char *owner)
{
    memset(owner, -1, FLC_SLOT_COUNT);
    redisReply *r;
    if (flc_store_commandf(s, &r, "CLUSTER SLOTS") != 0)
        return -1;
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 1)
            continue;
        const char *ip = e->element[2]->element[0]->str;
        for (int k = 0; k < BENCH_TB_MASTERS; k++)
            if (ip && strcmp(ip, tb->addr[k]) == 0)
                for (long long sl = e->element[0]->integer;
                     sl <= e->element[1]->integer && sl < FLC_SLOT_COUNT; sl++)
                    owner[sl] = (signed char)k;
    }
    freeReplyObject(r);
    return 0;
}
