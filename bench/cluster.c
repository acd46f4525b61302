/* bench/cluster: flcache scaled out over a Redis Cluster on emulated nodes
 * (issue 12, point 7). One JSON line per measurement, "bench":"cluster".
 *
 * "case":"round": one reduce-scatter round (W contributors, default 8, push
 * a model of N2 floats, default 6.5M = 26 MB, split in S shards, default 15;
 * S mergers merge; every contributor reads the merged model back) on a
 * testbed of 1, 2 and 3 cache nodes whose links are shaped to 1 Gbit/s with
 * tbf (scripts/testbed.sh --rate 1gbit), no replicas, the client
 * namespace's own link unshaped. Contributors and the driver are threads of
 * this process running inside the testbed's client namespace, so every byte
 * they move to or from a node crosses that node's shaped link; they talk to
 * the cluster through the cluster-aware store (FLCACHE_REDIS = the seed
 * URL), which routes each shard's keys ({J/s<s>~<k>}) to the node owning them.
 * The mergers are placed (issue 12, point 4): merger k's thread enters the
 * network namespace of the node owning shard k that round (the testbed's
 * FLCACHE_NODES map, cli/place.h) before opening its store, and reads the
 * W updates from and writes the merged shard to that node over its unix
 * socket: its own shard's bytes never cross a link. FLCACHE_BENCH_PLACE=0
 * keeps them in the client namespace, as before ("placement" says which).
 *
 * The testbed script needs at least 3 masters (redis-cli --cluster
 * create), so the bench brings up one 3-master testbed and measures 3
 * nodes, then empties n3 (redis-cli --cluster rebalance with weight 0) and
 * measures 2, then empties n2 and measures 1: "nodes" counts the masters
 * that own slots; an emptied master holds no keys and carries only
 * cluster-bus gossip. The 1-node round is the baseline of the same run
 * ("speedup_vs_1_node"; issue goal: 3 nodes >= 2.5x).
 *
 * The physical limit is in the same line: the bytes that crossed the node
 * links are read from every node's veth counters (eth0 in its namespace,
 * rx and tx) around each round; "link_bytes" is their sum over all node
 * links, "busiest_link_bytes" the busiest direction of the busiest link
 * (tbf shapes each direction on its own, so that is what bounds the round),
 * "link_limit_ms" its time at the link rate (125 MB/s) and
 * "ratio_to_link_limit" = round_ms / link_limit_ms (1.0 = the links are
 * the only cost). Shard placement is by hash of the tag, so it changes
 * with the round number: "busiest_node_shards" gives, per timed round, how
 * many of the S shards the busiest node held. "cpu_busy" is the share of
 * the machine's CPU time (every core, every process: /proc/stat) that was
 * busy during the round (median): near 1, the cores bound the round, not
 * the links.
 *
 * "round_ms" is the median of FLCACHE_BENCH_REPS (default 3) rounds after
 * one warm-up round. Knobs: FLCACHE_BENCH_W, FLCACHE_BENCH_N2,
 * FLCACHE_BENCH_S, FLCACHE_BENCH_NODES (which node counts, e.g. "1,3"),
 * FLCACHE_BENCH_GBIT (node link rate, default 1),
 * FLCACHE_SOURCE_DIR (where scripts/testbed.sh is; default: found from the
 * binary's path). Needs root (namespaces, tc): without it one "skipped"
 * line per case and exit 0. The "failover" case runs last, on a testbed
 * of its own with one replica per master (bench_failover.c).
 *
 * "case":"query" (bench/bench_query_cluster.c): norms, outliers, clusters
 * and similarity of a round of N clients (default 100) at 1 and 25 MB on a
 * fresh 3-master testbed, node links at 1 and 10 Gbit/s, answered by shard
 * workers next to the data (partials recomputed or cached) and by the
 * central aggregator in the client namespace. Flags: --case
 * round|query|failover|all, and for the query case --clients, --sizes, --rates,
 * --reps, --shards, --threads (--help).
 *
 * The testbed is brought down on every path out (failure, SIGINT/TERM/HUP
 * included); `ip netns` shows nothing of it afterwards. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aggregator/merge.h"
#include "aggregator/reduce_scatter.h"
#include "base/clock.h"
#include "bench/bench_query_cluster.h"
#include "bench/bench_failover.h"
#include "bench/bench_round.h"
#include "bench/bench_testbed.h"
#include "bench/bench_util.h"
#include "cache/keys.h"
#include "cache/slot.h"
#include "cli/place.h"

#define BENCH "cluster"
/* The node links' rate: the 1 Gbit/s, or FLCACHE_BENCH_GBIT (an
 * integer; 10 shows what the round costs when the links stop bounding it). */
static int g_gbit = 1;
static char LINK_RATE[16] = "1gbit";
#define LINK_BYTES_PER_S (125e6 * g_gbit)
#define MAX_REPS 32

/* ------------------------------------------------------------ the round */

/* One node count's results. */
typedef struct result {
    int nodes, reps, ran, right;
    double ms[MAX_REPS], link[MAX_REPS], busiest[MAX_REPS], cpu[MAX_REPS];
    int busiest_shards[MAX_REPS];
    double round_ms, link_bytes, busiest_bytes, cpu_busy;
} result_t;

static int measure(const bench_tb_t *tb, bench_round_t *c, int nodes, result_t *res)
{
    flc_err_t e = {0};
    flc_store_t *admin = flc_store_open(c->url, bench_store_opts(), &e);
    static signed char owner[FLC_SLOT_COUNT];
    if (admin == NULL || bench_tb_slot_owners(admin, tb, owner) != 0) {
        fprintf(stderr, "cluster: %d node(s): slot map: %s\n", nodes, flc_err_msg(&e));
        flc_store_close(admin);
        return -1;
    }
    int owning[BENCH_TB_MASTERS] = {0};
    for (int sl = 0; sl < FLC_SLOT_COUNT; sl++)
        if (owner[sl] >= 0)
            owning[(int)owner[sl]] = 1;
    if (owning[0] + owning[1] + owning[2] != nodes) {
        fprintf(stderr, "cluster: %d node(s) wanted, %d own slots\n", nodes,
                owning[0] + owning[1] + owning[2]);
        flc_store_close(admin);
        return -1;
    }
    res->nodes = nodes;
    for (int r = -1; r < res->reps && !c->failed; r++) {
        c->round = (uint32_t)(100 * nodes + r + 1); /* r = -1: the warm-up */
        for (uint32_t i = 0; i < c->W; i++)
            memset(c->model[i], 0, c->n * sizeof(float));
        uint64_t rx0[BENCH_TB_MASTERS], tx0[BENCH_TB_MASTERS], rx1[BENCH_TB_MASTERS], tx1[BENCH_TB_MASTERS];
        int cnt = 0;
        for (int k = 0; k < BENCH_TB_MASTERS; k++)
            cnt |= bench_tb_link_counters(tb, k, &rx0[k], &tx0[k]);
        double b0, a0, b1, a1;
        bench_cpu_times(&b0, &a0);
        double t = bench_round_run(c, 1, NULL);
        bench_cpu_times(&b1, &a1);
        for (int k = 0; k < BENCH_TB_MASTERS; k++)
            cnt |= bench_tb_link_counters(tb, k, &rx1[k], &tx1[k]);
        if (cnt != 0) {
            fprintf(stderr, "cluster: cannot read the veth counters (ip -s -j link)\n");
            c->failed = 1;
        }
        /* the merged model must be the weighted average: spot-check two */
        for (uint64_t at = 0; at < c->n && !c->failed; at += c->n / 2 + 1) {
            double num = 0, den = 0;
            for (uint32_t i = 0; i < c->W; i++)
                num += (double)(1 + i) * c->u[i][at], den += 1 + i;
            double want = num / den, got = c->model[c->W - 1][at];
            if (got - want > 1e-5 || want - got > 1e-5) {
                fprintf(stderr, "cluster: round %u: model[%llu] = %g, want %g\n", c->round,
                        (unsigned long long)at, got, want);
                res->right = 0;
            }
        }
        flc_store_delete_round(admin, "bench", c->round);
        if (r < 0 || c->failed)
            continue;
        double sum = 0, busiest = 0;
        for (int k = 0; k < BENCH_TB_MASTERS; k++) {
            double drx = (double)(rx1[k] - rx0[k]), dtx = (double)(tx1[k] - tx0[k]);
            sum += drx + dtx;
            busiest = drx > busiest ? drx : busiest;
            busiest = dtx > busiest ? dtx : busiest;
        }
        int per[BENCH_TB_MASTERS] = {0}, most = 0;
        for (uint32_t s = 0; s < c->S; s++) {
            int k = owner[flc_key_shard_slot("bench", s, c->S)]; /* fixed across rounds */
            if (k >= 0 && ++per[k] > most)
                most = per[k];
        }
        res->ms[r] = t * 1e3;
        res->link[r] = sum;
        res->busiest[r] = busiest;
        res->busiest_shards[r] = most;
        res->cpu[r] = a1 > a0 ? (b1 - b0) / (a1 - a0) : 0;
        res->ran = r + 1;
        char phases[200];
        bench_round_phases(c, phases, sizeof phases);
        fprintf(stderr, "cluster: %d node(s) round %u: %.0f ms, busiest link %.1f MB (%d of %u "
                "shards), cpu %.2f; %s\n", nodes, c->round, t * 1e3, busiest / 1e6, most, c->S,
                res->cpu[r], phases);
    }
    flc_store_close(admin);
    if (c->failed || res->ran < res->reps)
        return -1;
    double tmp[MAX_REPS];
    memcpy(tmp, res->ms, sizeof tmp);
    res->round_ms = bench_median(tmp, (size_t)res->reps);
    memcpy(tmp, res->link, sizeof tmp);
    res->link_bytes = bench_median(tmp, (size_t)res->reps);
    memcpy(tmp, res->busiest, sizeof tmp);
    res->busiest_bytes = bench_median(tmp, (size_t)res->reps);
    memcpy(tmp, res->cpu, sizeof tmp);
    res->cpu_busy = bench_median(tmp, (size_t)res->reps);
    return 0;
}

static void emit(const result_t *r, const bench_round_t *c, const result_t *one)
{
    cJSON *o = bench_line(BENCH, "round");
    cJSON_AddNumberToObject(o, "nodes", r->nodes);
    cJSON_AddNumberToObject(o, "masters_up", BENCH_TB_MASTERS);
    cJSON_AddStringToObject(o, "link_rate", LINK_RATE);
    cJSON_AddStringToObject(o, "client_link", "unshaped");
    cJSON_AddStringToObject(o, "placement",
                            c->place.enter ? "mergers next to their shard's node (its "
                                             "namespace, unix socket), contributors in the "
                                             "client namespace"
                                           : "contributors and mergers in the client namespace");
    cJSON_AddNumberToObject(o, "model_mb", (double)c->n * sizeof(float) / 1e6);
    cJSON_AddNumberToObject(o, "workers", c->W);
    cJSON_AddNumberToObject(o, "shards", c->S);
    cJSON_AddNumberToObject(o, "reps", r->reps);
    cJSON_AddNumberToObject(o, "round_ms", r->round_ms);
    cJSON_AddItemToObject(o, "rounds_ms", cJSON_CreateDoubleArray(r->ms, r->reps));
    if (one && one->round_ms > 0)
        cJSON_AddNumberToObject(o, "speedup_vs_1_node", one->round_ms / r->round_ms);
    else
        cJSON_AddNullToObject(o, "speedup_vs_1_node");
    double limit_ms = r->busiest_bytes / LINK_BYTES_PER_S * 1e3;
    cJSON_AddNumberToObject(o, "link_bytes", r->link_bytes);
    cJSON_AddNumberToObject(o, "busiest_link_bytes", r->busiest_bytes);
    cJSON_AddNumberToObject(o, "link_limit_ms", limit_ms);
    cJSON_AddNumberToObject(o, "ratio_to_link_limit", limit_ms > 0 ? r->round_ms / limit_ms : 0);
    cJSON_AddItemToObject(o, "busiest_node_shards",
                          cJSON_CreateIntArray(r->busiest_shards, r->reps));
    /* The other limit: near 1, the round waits on the CPUs, not the links. */
    cJSON_AddNumberToObject(o, "cpu_busy", r->cpu_busy);
    cJSON_AddBoolToObject(o, "result_checked", r->right);
    bench_emit(o);
}

static void emit_skipped(const char *name, const char *why)
{
    cJSON *o = bench_line(BENCH, name);
    cJSON_AddStringToObject(o, "skipped", why);
    bench_emit(o);
}

/* ------------------------------------------------------------ the query case */

/* Every node link at gbit (<= 0: unshaped), through the testbed script. */
static int qc_set_rate(void *user, double gbit)
{
    (void)user;
    char args[64], out[1024];
    for (int k = 1; k <= BENCH_TB_MASTERS; k++) {
        if (gbit > 0)
            snprintf(args, sizeof args, "rate n%d %.0fmbit", k, gbit * 1000);
        else
            snprintf(args, sizeof args, "rate n%d none", k);
        if (bench_tb_sh(out, sizeof out, args) != 0) {
            fprintf(stderr, "cluster: query: %s: %s\n", args, out);
            return -1;
        }
    }
    return 0;
}

static int qc_link_bytes(void *user, uint64_t *bytes)
{
    const bench_tb_t *tb = user;
    *bytes = 0;
    for (int k = 0; k < BENCH_TB_MASTERS; k++) {
        uint64_t rx, tx;
        if (bench_tb_link_counters(tb, k, &rx, &tx) != 0) {
            fprintf(stderr, "cluster: query: cannot read n%d's veth counters\n", k + 1);
            return -1;
        }
        *bytes += rx + tx;
    }
    return 0;
}

/* A fresh testbed (the round case leaves its slots on one node), the query
 * case inside its client namespace, the testbed down again. 0 or -1. */
static int query_case(const bench_qc_opts_t *o)
{
    static bench_tb_t tb;
    static char env[16384], nodes[4096];
    memset(&tb, 0, sizeof tb);
    int rc = bench_tb_up(&tb, LINK_RATE) == 0 && bench_tb_sh(env, sizeof env, "env") == 0 ? 0 : -1;
    bench_env_value(env, "FLCACHE_NODES", nodes, sizeof nodes);
    if (rc == 0 && nodes[0] == '\0') {
        fprintf(stderr, "cluster: query: testbed env prints no FLCACHE_NODES\n");
        rc = -1;
    }
    if (rc == 0)
        rc = bench_tb_enter_client_ns(&tb);
    if (rc == 0) {
        bench_qc_testbed_t q = {.seed = tb.seed, .node_map = nodes, .set_rate = qc_set_rate,
                                .link_bytes = qc_link_bytes, .user = &tb};
        rc = bench_qc_run(&q, o);
    }
    bench_tb_down();
    return rc;
}

static size_t env_size(const char *name, size_t def)
{
    const char *s = getenv(name);
    long long v = s ? atoll(s) : 0;
    return v > 0 ? (size_t)v : def;
}

int main(int argc, char **argv)
{
    bench_qc_opts_t qo;
    int prc = bench_qc_parse(argc, argv, &qo);
    if (prc != 0)
        return prc > 0 ? 0 : 2;
    bench_config();
    signal(SIGPIPE, SIG_IGN);
    if (geteuid() != 0) {
        emit_skipped("round", "needs root: the testbed (scripts/testbed.sh) makes network "
                              "namespaces and tc qdiscs");
        emit_skipped("query", "needs root: the testbed (scripts/testbed.sh) makes network "
                              "namespaces and tc qdiscs");
        emit_skipped("failover", "needs root: the testbed makes network namespaces");
        return 0;
    }
    g_gbit = (int)env_size("FLCACHE_BENCH_GBIT", 1);
    snprintf(LINK_RATE, sizeof LINK_RATE, "%dgbit", g_gbit);
    uint32_t W = (uint32_t)env_size("FLCACHE_BENCH_W", 8);
    /* 15: five shards on each of 3 nodes (8 gave 3/3/2), and 1.7 MB
     * each, under the store's 2 MB split, so every shard is one SET (a
     * bigger value goes as a hash, which redis-server copies once more) */
    uint32_t S = (uint32_t)env_size("FLCACHE_BENCH_S", 15);
    uint64_t n = env_size("FLCACHE_BENCH_N2", 6500000);
    int reps = bench_reps(3);
    const char *pl = getenv("FLCACHE_BENCH_PLACE");
    int place = !(pl && strcmp(pl, "0") == 0);
    if (W > 64)
        W = 64;
    if (S > 64)
        S = 64;
    if (reps > MAX_REPS)
        reps = MAX_REPS;
    int want[BENCH_TB_MASTERS + 1] = {0};
    const char *nl = getenv("FLCACHE_BENCH_NODES");
    for (const char *p = nl && *nl ? nl : "1,2,3"; *p && qo.run_round; p++)
        if (*p >= '1' && *p <= '0' + BENCH_TB_MASTERS)
            want[*p - '0'] = 1;

    bench_tb_init();

    bench_round_t c = {.tag = "cluster", .W = W, .S = S, .n = n};
    c.u = calloc(W, sizeof *c.u);
    c.model = calloc(W, sizeof *c.model);
    c.names = calloc(W, sizeof *c.names);
    char (*names)[16] = calloc(W, sizeof *names);
    for (uint32_t i = 0; i < W; i++) {
        c.u[i] = malloc(n * sizeof(float));
        c.model[i] = malloc(n * sizeof(float));
        unsigned x = 50 + i;
        for (uint64_t j = 0; j < n; j++) {
            x = x * 1103515245u + 12345u;
            c.u[i][j] = (float)((x >> 8) & 0xffff) / 65536.0f - 0.5f;
        }
        snprintf(names[i], sizeof names[i], "c%u", i);
        c.names[i] = names[i];
    }

    bench_tb_t tb = {0};
    result_t res[BENCH_TB_MASTERS + 1];
    memset(res, 0, sizeof res);
    int fails = 0;
    if (!qo.run_round) {
        /* --case query */
    } else if (bench_tb_up(&tb, LINK_RATE) != 0 || bench_tb_enter_client_ns(&tb) != 0 ||
               (place && bench_tb_place(&tb, &c.place) != 0)) {
        fails = 1;
    } else {
        c.url = tb.seed;
        /* 3 first: the cluster as formed; then empty n3, then n2 */
        for (int nodes = BENCH_TB_MASTERS; nodes >= 1 && !fails; nodes--) {
            if (!want[nodes])
                continue;
            res[nodes].reps = reps;
            res[nodes].right = 1;
            if (bench_tb_use_nodes(&tb, nodes) != 0 || measure(&tb, &c, nodes, &res[nodes]) != 0)
                fails = 1;
        }
    }
    bench_tb_down();
    for (int nodes = 1; nodes <= BENCH_TB_MASTERS; nodes++)
        if (res[nodes].ran == reps && res[nodes].reps > 0)
            emit(&res[nodes], &c, res[1].ran == reps ? &res[1] : NULL);
    if (qo.run_query && query_case(&qo) != 0)
        fails = 1;
    /* Its own testbed, with replicas (bench_failover.c). */
    if (qo.run_failover && bench_failover(bench_tb_script(), bench_tb_root_ns()) != 0)
        fails = 1;

    for (uint32_t i = 0; i < W; i++)
        free(c.u[i]), free(c.model[i]);
    free(c.u), free(c.model), free(c.names), free(names), free(c.node);
    bench_tb_place_free();
    for (int nodes = 1; nodes <= BENCH_TB_MASTERS; nodes++)
        fails |= want[nodes] && !res[nodes].right;
    return fails ? 1 : 0;
}
