/* The "failover" case of bench/cluster (issue 12 point 7; docs/cluster.md,
 * Failover): what a master's SIGKILL in the middle of a round costs, and
 * what waiting for replication (Redis WAIT 1) costs every round.
 *
 * On its own testbed of 3 masters with 1 replica each (node timeout 2 s,
 * links 10 Gbit/s; name "flcbf"), from the client namespace, with the
 * simulate driver (clients/sim.h) and a synthetic model (K clients push
 * noise updates of P floats in S shards; FedAvg):
 * - "round_ms": the median round with no kill (FLCACHE_BENCH_REPS rounds
 *   after one warm-up), pushes not waiting and waiting for 1 replica;
 *   "wait_cost_ms" is the difference, per round;
 * - a run of 2 rounds whose clients all wait 1 s before pushing (a
 *   straggler delay, so that the round is open when the master dies), with
 *   the master of shard 0 (never the seed node) SIGKILLed 0.4 s into the
 *   run: "kill_to_close_ms" from the kill to the end of that round (the
 *   driver's progress call after its records), "promoted_ms" from the kill
 *   until the store names another owner for the shard, "updates_resent"
 *   the clients the driver invoked again because a failover lost their
 *   acknowledged update, "round_merged" whether the round merged (1) or
 *   failed naming what was lost (0). The killed node is started again
 *   (it rejoins as a replica) before the next run.
 * Knobs: FLCACHE_BENCH_FO_P (floats per update, default 1,000,000),
 * FLCACHE_BENCH_FO_K (clients, 8), FLCACHE_BENCH_FO_S (shards, 6). */
#define _GNU_SOURCE
#include "bench/bench_failover.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/clock.h"
#include "bench/bench_util.h"
#include "cache/store_ops.h"
#include "clients/sim.h"

#define FO_NAME "flcbf"
#define FO_NODES 6

typedef struct fo {
    const char *script;
    char seed[200], client_ns[64];
    char addr[FO_NODES + 1][32];
    uint64_t P;
    int K, S, reps;
} fo_t;


static int fo_sh(const fo_t *f, char *out, size_t cap, const char *args)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "timeout 180 sh '%s' --name " FO_NAME " %s 2>&1", f->script, args);
    return bench_run(cmd, out, cap);
}

static uint64_t env_num(const char *name, uint64_t def)
{
    const char *v = getenv(name);
    long long x = v && *v ? atoll(v) : 0;
    return x > 0 ? (uint64_t)x : def;
}

/* The testbed node k (of nk) serving shard of (job, round); 0 if unknown. */
static int fo_node_of(const fo_t *f, const char *job, uint32_t round, uint32_t shard)
{
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(f->seed, NULL, &e);
    flc_store_node_t nd;
    int k = 0;
    /* shard tags follow from the job's shard count (key schema 2) */
    if (s != NULL && flc_store_job_shards(s, job, (uint32_t)f->S) == 0 &&
        flc_store_shard_node(s, job, round, shard, &nd) == 0)
        for (int i = 1; i <= FO_NODES; i++) {
            size_t l = strlen(f->addr[i]);
            if (l && strncmp(nd.addr, f->addr[i], l) == 0 && nd.addr[l] == ':')
                k = i;
        }
    flc_store_close(s);
    return k;
}

static void sim_cfg(const fo_t *f, flc_sim_cfg_t *c, flc_sim_inproc_t *ip, const char *job,
                    const flc_store_opts_t *o, int rounds, const char *straggler)
{
    flc_sim_cfg_init(c);
    c->job = job;
    c->clients = f->K;
    c->per_round = f->K;
    c->rounds = rounds;
    c->synthetic_params = (size_t)f->P;
    c->num_shards = (uint32_t)f->S;
    c->seed = 5;
    c->straggler = straggler;
    c->deadline_ms = 60000;
    c->round_timeout_ms = 120000;
    c->keep_updates = 0;
    c->redis = f->seed;
    c->store_opts = o;
    *ip = (flc_sim_inproc_t){.threads = (unsigned)f->K, .store_opts = o};
    c->invoke = flc_sim_invoke_inproc;
    c->invoke_user = ip;
}

/* Median round (after the first) of a run with no kill; -1 on failure. */
static double plain_rounds(const fo_t *f, const flc_store_opts_t *o, const char *job,
                           cJSON *all)
{
    flc_sim_cfg_t c;
    flc_sim_inproc_t ip;
    flc_sim_result_t res;
    flc_err_t e = {0};
    sim_cfg(f, &c, &ip, job, o, f->reps + 1, NULL);
    if (flc_sim_run(&c, NULL, NULL, &res, &e) != 0) {
        fprintf(stderr, "cluster failover: %s: %s\n", job, e.msg);
        return -1;
    }
    double v[64];
    size_t n = 0;
    for (size_t r = 1; r < res.nrounds && n < 64; r++) {
        v[n++] = res.rounds[r].round_ms;
        cJSON_AddItemToArray(all, cJSON_CreateNumber(res.rounds[r].round_ms));
    }
    flc_sim_result_free(&res);
    return n ? bench_median(v, n) : -1;
}

typedef struct kill_run {
    const fo_t *f;
    const char *job;
    int victim;
    double t0, kill_s, promoted_s, close_s;
    int rc;
} kill_run_t;

static void *killer(void *p)
{
    kill_run_t *k = p;
    char out[2048], args[64];
    flc_sleep_ms(400);
    k->kill_s = flc_now_s() - k->t0;
    snprintf(args, sizeof args, "kill n%d", k->victim);
    k->rc = fo_sh(k->f, out, sizeof out, args);
    for (int i = 0; i < 600; i++) {
        int now = fo_node_of(k->f, k->job, 1, 0);
        if (now != 0 && now != k->victim)
            break;
        flc_sleep_ms(50);
    }
    k->promoted_s = flc_now_s() - k->t0;
    return NULL;
}

static void on_round(const flc_sim_round_t *r, int rounds, double elapsed_s, void *user)
{
    (void)rounds, (void)elapsed_s;
    kill_run_t *k = user;
    if (r->round == 1)
        k->close_s = flc_now_s() - k->t0;
}

/* One killed run; fills the line. 0, or -1 when it failed. */
static int killed_run(const fo_t *f, const flc_store_opts_t *o, const char *prefix, cJSON *line)
{
    char job[32];
    int victim = 0;
    for (int i = 0; i < 200 && victim == 0; i++) {
        snprintf(job, sizeof job, "%s%d", prefix, i);
        int k = fo_node_of(f, job, 1, 0);
        if (k > 0 && strstr(f->seed, f->addr[k]) == NULL) /* never the seed node */
            victim = k;
    }
    if (victim == 0) {
        cJSON_AddStringToObject(line, "error", "no job with shard 0 away from the seed node");
        return -1;
    }
    flc_sim_cfg_t c;
    flc_sim_inproc_t ip;
    flc_sim_result_t res;
    flc_err_t e = {0};
    sim_cfg(f, &c, &ip, job, o, 2, "fixed:1000");
    kill_run_t k = {.f = f, .job = job, .victim = victim, .t0 = flc_now_s()};
    pthread_t t;
    pthread_create(&t, NULL, killer, &k);
    int rc = flc_sim_run(&c, on_round, &k, &res, &e);
    pthread_join(t, NULL);
    char out[4096], args[64];
    snprintf(args, sizeof args, "start n%d", victim);
    fo_sh(f, out, sizeof out, args);
    int back = fo_sh(f, out, sizeof out, "wait 60");
    if (rc != 0 || k.rc != 0 || res.nrounds < 1) {
        cJSON_AddStringToObject(line, "error", rc ? e.msg : "the kill failed");
        return -1;
    }
    cJSON_AddNumberToObject(line, "killed_node", victim);
    cJSON_AddNumberToObject(line, "kill_to_close_ms", (k.close_s - k.kill_s) * 1000);
    cJSON_AddNumberToObject(line, "promoted_ms", (k.promoted_s - k.kill_s) * 1000);
    cJSON_AddNumberToObject(line, "updates_resent", (double)res.rounds[0].resent);
    cJSON_AddStringToObject(line, "resent", res.rounds[0].resent_names);
    cJSON_AddNumberToObject(line, "round_merged", res.rounds[0].merged);
    cJSON_AddNumberToObject(line, "killed_round_ms", res.rounds[0].round_ms);
    if (!res.rounds[0].merged)
        cJSON_AddStringToObject(line, "merge_error", res.rounds[0].merge_error);
    flc_sim_result_free(&res);
    return back == 0 ? 0 : -1;
}

int bench_failover(const char *script, int root_ns)
{
    fo_t f = {.script = script, .P = env_num("FLCACHE_BENCH_FO_P", 1000000),
              .K = (int)env_num("FLCACHE_BENCH_FO_K", 8), .S = (int)env_num("FLCACHE_BENCH_FO_S", 6),
              .reps = bench_reps(3)};
    static char out[16384];
    fo_sh(&f, out, sizeof out, "down"); /* what a killed run left */
    int fails = 0;
    if (fo_sh(&f, out, sizeof out, "up --masters 3 --replicas 1") != 0 ||
        fo_sh(&f, out, sizeof out, "env") != 0) {
        fprintf(stderr, "cluster failover: testbed: %s\n", out);
        fo_sh(&f, out, sizeof out, "down");
        return 1;
    }
    bench_env_value(out, "FLC_TESTBED_SEED", f.seed, sizeof f.seed);
    bench_env_value(out, "FLC_TESTBED_CLIENT_NS", f.client_ns, sizeof f.client_ns);
    for (int k = 1; k <= FO_NODES; k++) {
        char key[48];
        snprintf(key, sizeof key, "FLC_TESTBED_ADDR_n%d", k);
        bench_env_value(out, key, f.addr[k], sizeof f.addr[k]);
    }
    char path[128];
    snprintf(path, sizeof path, "/var/run/netns/%s", f.client_ns);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
        perror(path);
        fails = 1;
    }
    if (fd >= 0)
        close(fd);

    flc_store_opts_t o[2];
    o[0] = o[1] = *bench_store_opts();
    o[0].wait_replicas = 0;
    o[1].wait_replicas = 1;
    o[1].wait_timeout_ms = o[1].wait_timeout_ms ? o[1].wait_timeout_ms : 1000;
    cJSON *line[2] = {NULL, NULL};
    double round_ms[2] = {-1, -1};
    for (int w = 0; w < 2 && !fails; w++) {
        line[w] = bench_line("cluster", "failover");
        cJSON_AddNumberToObject(line[w], "wait_replicas", o[w].wait_replicas);
        cJSON_AddNumberToObject(line[w], "wait_timeout_ms", w ? o[w].wait_timeout_ms : 0);
        cJSON_AddNumberToObject(line[w], "masters", 3);
        cJSON_AddNumberToObject(line[w], "replicas_per_master", 1);
        cJSON_AddNumberToObject(line[w], "node_timeout_ms", 2000);
        cJSON_AddNumberToObject(line[w], "model_mb", (double)f.P * 4 / 1e6);
        cJSON_AddNumberToObject(line[w], "clients", f.K);
        cJSON_AddNumberToObject(line[w], "shards", f.S);
        cJSON *all = cJSON_CreateArray();
        round_ms[w] = plain_rounds(&f, &o[w], w ? "fbw1" : "fbw0", all);
        cJSON_AddNumberToObject(line[w], "round_ms", round_ms[w]);
        cJSON_AddItemToObject(line[w], "rounds_ms", all);
        if (round_ms[w] < 0 || killed_run(&f, &o[w], w ? "fbk1x" : "fbk0x", line[w]) != 0)
            fails = 1;
    }
    if (line[1] != NULL && round_ms[0] >= 0 && round_ms[1] >= 0)
        cJSON_AddNumberToObject(line[1], "wait_cost_ms", round_ms[1] - round_ms[0]);
    if (line[0] != NULL)
        cJSON_AddNumberToObject(line[0], "wait_cost_ms", 0);
    if (root_ns >= 0)
        setns(root_ns, CLONE_NEWNET);
    fo_sh(&f, out, sizeof out, "down");
    for (int w = 0; w < 2; w++)
        if (line[w] != NULL)
            bench_emit(line[w]);
    return fails;
}
