/* Failover without silent loss (issue 12, point 5), on a real Redis Cluster:
 * the testbed of scripts/testbed.sh with 3 masters and 1 replica each. A
 * master is SIGKILLed in the middle of a round; its replica is promoted
 * within seconds; the store follows the new map, and the round either
 * completes with the same global model as the same seeded run without a
 * kill, or fails naming exactly the clients whose acknowledged updates were
 * lost (the driver resends them first). Each case brings the killed node
 * back (testbed.sh start) and waits for the cluster to be whole again.
 *
 * - simulate_survives_a_master_kill: a synthetic-model simulate (6 clients,
 *   6 shards, 2 rounds, half the clients of each round straggling 4 s) with
 *   the master of shard 0 killed 1.5 s into round 1, after the first
 *   pushes: every round merges all 6 clients and the final model is
 *   bit-identical to the run without a kill; anything resent is named;
 * - lost_updates_are_resent_and_named: the same, but the killed master's
 *   replica is cut off (its link down) before the round, so the updates the
 *   master acknowledges are certainly not replicated; the master's own link
 *   goes down as it is killed (otherwise the kernel delivers what the dead
 *   process had sent), and comes back once the replica is promoted. The
 *   acknowledged updates on it are lost: the driver finds them missing,
 *   resends exactly those clients, names them, and the model is still the
 *   reference's;
 * - wait_for_a_replica: pushes with wait_replicas = 1 (Redis WAIT) fail,
 *   naming the node and the counts, while the replica is cut off; with the
 *   replica there, a master kill in the middle of a round needs no resend
 *   (every acknowledged update was on the replica) and gives the reference
 *   model; the round time with and without the wait is printed;
 * - train_survives_a_master_kill: `flcache train` W=4 with a master killed
 *   mid-run finishes with the checksum of the same run without a kill, or
 *   fails within a bounded time naming the workers whose updates were lost.
 *
 * Needs root; skips without it unless CI=true, as the testbed fixture does.
 * About 2 minutes, most of it four failovers and restarts. */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aggregator/reduce_scatter.h"
#include "base/clock.h"
#include "cache/slot.h"
#include "cache/store_failover.h"
#include "cache/store_ops.h"
#include "clients/sim.h"
#include "tests/harness.h"

static flc_testbed_t tb;
static char skip_why[160];

static void setup(void)
{
    if (!flc_testbed_usable(skip_why, sizeof skip_why))
        return;
    flc_testbed_up(&tb, 3, 1, "10gbit");
}

static void teardown(void)
{
    flc_testbed_down(&tb);
}

static void need_testbed(void)
{
    flc_testbed_case(&tb, skip_why);
}

static flc_store_t *open_seed(const flc_store_opts_t *o)
{
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(tb.seed, o, &e);
    if (s == NULL)
        flc_t_fatal("open %s: %s", tb.seed, e.msg);
    return s;
}

#define S 6 /* shards of the simulate runs */

/* The testbed node (k of nk) serving shard `shard` of (job, round); 0
 * when it cannot be told (also from a thread: no fatal here). */
static int node_of(const char *job, uint32_t round, uint32_t shard)
{
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(tb.seed, NULL, &e);
    flc_store_node_t nd;
    int k = 0;
    /* shard tags follow from S (key schema 2): the runs' S, and one shard
     * for the global models' series */
    if (s != NULL && flc_store_job_shards(s, job, strchr(job, '/') ? 1 : S) == 0 &&
        flc_store_shard_node(s, job, round, shard, &nd) == 0)
        for (int i = 1; i <= tb.nodes; i++)
            if (strncmp(nd.addr, tb.addr[i], strlen(tb.addr[i])) == 0 &&
                nd.addr[strlen(tb.addr[i])] == ':')
                k = i;
    flc_store_close(s);
    return k;
}

/* The replica of node nk, from `testbed.sh status`; 0 when none. */
static int replica_of(int k)
{
    flc_testbed_node_t nodes[16];
    int n = flc_testbed_status(&tb, nodes, 16, NULL);
    char want[24];
    snprintf(want, sizeof want, "replica:n%d", k);
    for (int i = 0; i < n; i++)
        if (strcmp(nodes[i].role, want) == 0)
            return atoi(nodes[i].name + 1);
    return 0;
}

/* The testbed node of the seed URL (n1): every store opens through it. */
static int seed_node(void)
{
    for (int i = 1; i <= tb.nodes; i++) {
        const char *p = strstr(tb.seed, tb.addr[i]);
        if (p != NULL && p[strlen(tb.addr[i])] == ':')
            return i;
    }
    return 0;
}

/* 1 when slot lies in ranges ("0-5460,10923", as flc_store_node_t.slots). */
static int slot_in(const char *ranges, unsigned slot)
{
    for (const char *p = ranges; *p;) {
        char *end;
        unsigned long a = strtoul(p, &end, 10), b = a;
        if (*end == '-')
            b = strtoul(end + 1, &end, 10);
        if (slot >= a && slot <= b)
            return 1;
        if (*end != ',')
            break;
        p = end + 1;
    }
    return 0;
}

/* The testbed master serving the hash tag {tag}; 0 when it cannot be told. */
static int tag_node(const char *tag)
{
    char key[128];
    snprintf(key, sizeof key, "{%s}", tag);
    unsigned slot = flc_slot_of(key, strlen(key));
    flc_store_t *s = open_seed(NULL);
    flc_store_node_t *nv = NULL;
    size_t n = 0;
    int k = 0;
    if (flc_store_nodes(s, &nv, &n) == 0)
        for (size_t i = 0; i < n && k == 0; i++)
            if (strcmp(nv[i].role, "master") == 0 && slot_in(nv[i].slots, slot))
                for (int j = 1; j <= tb.nodes; j++)
                    if (strncmp(nv[i].addr, tb.addr[j], strlen(tb.addr[j])) == 0 &&
                        nv[i].addr[strlen(tb.addr[j])] == ':')
                        k = j;
    free(nv);
    flc_store_close(s);
    return k;
}

/* A job whose shard 0 of round 1 is served by a master that is not the
 * seed node (a store opened while its seed is down cannot find the others:
 * docs/cluster.md, Failover) and, with apart_from_global, not the master
 * serving its global models ("<job>/g", round 0; a cut-off replica must not
 * cost the initial model) nor its job records (the tags {J/j} and {J/g/j}:
 * the schema record, roster and indexes; a cut-off replica would lose them,
 * and every later round of the job would fail, saying so). */
static void pick_job(char *job, size_t cap, const char *prefix, int apart_from_global)
{
    for (int i = 0; i < 200; i++) {
        snprintf(job, cap, "%s%d", prefix, i);
        char g[64], jt[80], gt[80];
        snprintf(g, sizeof g, "%s/g", job);
        snprintf(jt, sizeof jt, "%s/j", job);
        snprintf(gt, sizeof gt, "%s/g/j", job);
        int a = node_of(job, 1, 0), b = apart_from_global ? node_of(g, 0, 0) : -1;
        if (a > 0 && a != seed_node() && b != 0 && a != b &&
            (!apart_from_global || (tag_node(jt) != a && tag_node(gt) != a)))
            return;
    }
    flc_t_fatal("no job name with shard 0 away from the seed (and the global model)");
}

static void bring_back(int k)
{
    char out[4096];
    flc_testbed_sh(&tb, out, sizeof out, "link n%d up", k);
    CHECK(flc_testbed_sh(&tb, out, sizeof out, "start n%d", k) == 0 &&
              flc_testbed_sh(&tb, out, sizeof out, "wait 60") == 0,
          "n%d restarted and the cluster whole again (%.200s)", k, out);
}

/* ---- the simulate runs ------------------------------------------------------ */

#define K 6
#define ROUNDS 2
#define P 6000

static void sim_cfg(flc_sim_cfg_t *c, flc_sim_inproc_t *ip, const char *job,
                    const flc_store_opts_t *o, const char *straggler)
{
    flc_sim_cfg_init(c);
    c->job = job;
    c->clients = K;
    c->per_round = K;
    c->rounds = ROUNDS;
    c->synthetic_params = P;
    c->num_shards = S;
    c->seed = 11;
    c->straggler = straggler;
    c->deadline_ms = 60000;
    c->round_timeout_ms = 120000;
    c->redis = tb.seed;
    c->store_opts = o;
    *ip = (flc_sim_inproc_t){.threads = K, .store_opts = o};
    c->invoke = flc_sim_invoke_inproc;
    c->invoke_user = ip;
}

/* The final global model of job (round ROUNDS of "<job>/g"), malloc'd. */
static float *final_model(const char *job)
{
    char g[64];
    snprintf(g, sizeof g, "%s/g", job);
    flc_store_t *s = open_seed(NULL);
    float *m = malloc(P * sizeof *m);
    flc_shard_t sh = {0};
    int rc = flc_store_get_merged(s, g, ROUNDS, 0, &sh, m, P);
    int ok = rc == 0 && sh.values == m && sh.count == P;
    if (!ok)
        printf("# no final model of %s: %s\n", job, flc_store_errstr(s));
    flc_shard_release(&sh);
    flc_store_close(s);
    if (!ok) {
        free(m);
        return NULL;
    }
    return m;
}

/* The reference: the same seeded run, no straggler, no kill. */
static float *reference(const char *job)
{
    flc_sim_cfg_t c;
    flc_sim_inproc_t ip;
    flc_sim_result_t res;
    flc_err_t e = {0};
    sim_cfg(&c, &ip, job, NULL, NULL);
    int rc = flc_sim_run(&c, NULL, NULL, &res, &e);
    CHECK(rc == 0 && res.nrounds == ROUNDS, "reference run %s: %s", job, e.msg);
    flc_sim_result_free(&res);
    return final_model(job);
}

/* What a kill thread does: after delay_ms, optionally the victim's link
 * down first, the kill, then the cut-off replica's link up, then (with
 * the victim's link down) wait until the victim's slots have a new owner
 * and bring its link up. */
typedef struct killer {
    int victim, replica_cut; /* replica_cut: its link is down; up it after the kill */
    int link_down_first;
    unsigned delay_ms;
    const char *job;          /* whose shard 0 of round 1 the victim serves */
    double kill_s, promoted_s; /* since the run's start */
    double t0;
    int rc;
} killer_t;

static void *killer_main(void *p)
{
    killer_t *k = p;
    char out[4096];
    flc_sleep_ms(k->delay_ms);
    if (k->link_down_first)
        flc_testbed_sh(&tb, out, sizeof out, "link n%d down", k->victim);
    k->kill_s = flc_now_s() - k->t0;
    k->rc = flc_testbed_sh(&tb, out, sizeof out, "kill n%d", k->victim);
    if (k->replica_cut)
        flc_testbed_sh(&tb, out, sizeof out, "link n%d up", k->replica_cut);
    /* Until another node serves the victim's shard (at most 30 s). */
    for (int i = 0; i < 300; i++) {
        int now = node_of(k->job, 1, 0);
        if (now != 0 && now != k->victim)
            break;
        flc_sleep_ms(100);
    }
    k->promoted_s = flc_now_s() - k->t0;
    if (k->link_down_first)
        flc_testbed_sh(&tb, out, sizeof out, "link n%d up", k->victim);
    return NULL;
}

/* Runs job with a kill as k says; checks the outcome against ref. */
static void run_with_kill(const char *job, const flc_store_opts_t *o, killer_t *k,
                          const float *ref, size_t *resent_total, char *resent, size_t cap)
{
    flc_sim_cfg_t c;
    flc_sim_inproc_t ip;
    flc_sim_result_t res;
    flc_err_t e = {0};
    sim_cfg(&c, &ip, job, o, "slow:0.5:4000");
    pthread_t t;
    k->job = job;
    k->t0 = flc_now_s();
    pthread_create(&t, NULL, killer_main, k);
    int rc = flc_sim_run(&c, NULL, NULL, &res, &e);
    double took = flc_now_s() - k->t0;
    pthread_join(t, NULL);
    printf("# %s: kill of n%d at %.2f s, its shard served again at %.2f s, run %.2f s\n", job,
           k->victim, k->kill_s, k->promoted_s, took);
    CHECK(rc == 0 && res.nrounds == ROUNDS && k->rc == 0,
          "%s: the run finishes its %d rounds through the kill of n%d (%s)", job, ROUNDS,
          k->victim, e.msg);
    *resent_total = 0;
    resent[0] = '\0';
    int all_merged = 1;
    for (size_t r = 0; r < res.nrounds; r++) {
        const flc_sim_round_t *x = &res.rounds[r];
        printf("# round %u: %.0f ms, %zu participants, merged %d, resent %zu [%s], lost %zu "
               "[%s]%s%s\n", x->round, x->round_ms, x->participants, x->merged, x->resent,
               x->resent_names, x->lost, x->lost_names, x->merge_error[0] ? ": " : "",
               x->merge_error);
        *resent_total += x->resent;
        if (x->resent_names[0])
            snprintf(resent + strlen(resent), cap - strlen(resent), "%s%s", resent[0] ? "; " : "",
                     x->resent_names);
        if (!x->merged) {
            all_merged = 0;
            /* A failed round must say whom it lost. */
            EXPECT(x->lost > 0 && x->lost_names[0] && strstr(x->merge_error, x->lost_names),
                   "round %u failed naming the lost clients [%s]: %s", x->round, x->lost_names,
                   x->merge_error);
        } else {
            /* Nothing lost unnamed: every sampled client was merged. */
            EXPECT(x->participants == K && x->missing == 0 && x->lost == 0,
                   "round %u merged all %d clients (%zu participants, %zu missing)", x->round, K,
                   x->participants, x->missing);
        }
    }
    /* Nothing lost from the store either: every client's update of the
     * killed round is there, on every shard (later queries read them). */
    flc_store_t *s = open_seed(NULL);
    const char *cl[K];
    char cn[K][8];
    int stored = 0;
    for (int i = 0; i < K; i++)
        snprintf(cn[i], sizeof cn[i], "c%d", i), cl[i] = cn[i];
    for (uint32_t sh = 0; sh < S; sh++) {
        unsigned char present[K];
        if (flc_store_updates_present(s, job, 1, sh, cl, K, present) == 0)
            for (int i = 0; i < K; i++)
                stored += present[i];
    }
    flc_store_close(s);
    EXPECT(stored == K * S, "%s: all %d updates of round 1 are stored on all %d shards after "
           "the failover (%d of %d)", job, K, S, stored, K * S);
    float *got = final_model(job);
    if (all_merged)
        CHECK(got != NULL && memcmp(got, ref, P * sizeof *ref) == 0,
              "%s: every round merged and the final model is bit-identical to the run "
              "without a kill", job);
    free(got);
    flc_sim_result_free(&res);
}

TEST(simulate_survives_a_master_kill)
{
    need_testbed();
    float *ref = reference("fref1");
    CHECK(ref != NULL, "the reference model");
    char job[32];
    pick_job(job, sizeof job, "fkill", 0);
    int victim = node_of(job, 1, 0);
    CHECK(victim > 0, "shard 0 of round 1 of %s is served by n%d", job, victim);
    killer_t k = {.victim = victim, .delay_ms = 1500};
    size_t resent;
    char names[512];
    run_with_kill(job, NULL, &k, ref, &resent, names, sizeof names);
    printf("# %zu client(s) resent: %s\n", resent, names[0] ? names : "none");
    bring_back(victim);
    free(ref);
}

TEST(lost_updates_are_resent_and_named)
{
    need_testbed();
    char job[32];
    pick_job(job, sizeof job, "floss", 1);
    float *ref = reference("fref2");
    CHECK(ref != NULL, "the reference model");
    int victim = node_of(job, 1, 0), cut = replica_of(victim);
    CHECK(victim > 0 && cut > 0, "shard 0 of round 1 of %s is served by n%d, its replica n%d",
          job, victim, cut);
    char out[4096];
    CHECK(flc_testbed_sh(&tb, out, sizeof out, "link n%d down", cut) == 0,
          "n%d cut off: what n%d acknowledges from now on stays on n%d", cut, victim, victim);
    killer_t k = {.victim = victim, .replica_cut = cut, .link_down_first = 1, .delay_ms = 1500};
    size_t resent;
    char names[512];
    run_with_kill(job, NULL, &k, ref, &resent, names, sizeof names);
    printf("# resent after the failover: %s\n", names[0] ? names : "none");
    /* The fast half of round 1 pushed before the kill: their updates on the
     * victim's shards were acknowledged and never replicated. */
    EXPECT(resent >= 1, "acknowledged updates lost with n%d were found and resent (%zu: %s)",
           victim, resent, names);
    /* Exactly those: the clients of round 1 that did not straggle (their
     * records carry the delay drawn for them) pushed before the kill. */
    char fast[256] = "";
    flc_store_t *s = open_seed(NULL);
    for (int i = 0; i < K; i++) {
        char c[8];
        snprintf(c, sizeof c, "c%d", i);
        Flcache__ModelUpdate *u = NULL;
        if (flc_store_get_update_meta(s, job, 1, c, &u) != 0)
            continue;
        for (size_t j = 0; j < u->n_labels; j++)
            if (strcmp(u->labels[j]->key, "straggler_ms") == 0 &&
                strcmp(u->labels[j]->value, "0") == 0)
                snprintf(fast + strlen(fast), sizeof fast - strlen(fast), "%s%s",
                         fast[0] ? ", " : "", c);
        flcache__model_update__free_unpacked(u, NULL);
    }
    flc_store_close(s);
    EXPECT(strcmp(fast, names) == 0, "the resent clients are exactly the ones that pushed "
           "before the kill: resent [%s], pushed before [%s]", names, fast);
    bring_back(victim);
    free(ref);
}

TEST(wait_for_a_replica)
{
    need_testbed();
    flc_store_opts_t w = {.wait_replicas = 1, .wait_timeout_ms = 500};
    /* With the replica cut off, a push cannot be acknowledged by it. */
    char job[32];
    pick_job(job, sizeof job, "fwait", 0);
    int victim = node_of(job, 1, 0), cut = replica_of(victim);
    CHECK(victim > 0 && cut > 0, "shard 0 of round 1 of fwait: n%d, its replica n%d", victim,
          cut);
    char out[4096];
    CHECK(flc_testbed_sh(&tb, out, sizeof out, "link n%d down", cut) == 0, "n%d cut off", cut);
    flc_store_t *s = open_seed(&w);
    float u[64];
    flc_t_fill(u, 64, 3);
    /* S shards, as node_of placed them: the victim holds shard 0 */
    flc_rs_push_cfg_t pc = {.job = job, .round = 1, .client = "c3", .num_shards = S,
                            .model_size = 64, .num_samples = 1};
    flc_err_t e = {0};
    int rc = flc_rs_push(s, &pc, u, &e);
    char want[128];
    snprintf(want, sizeof want, "replicas of node %s:6379 within 500 ms", tb.addr[victim]);
    flc_testbed_sh(&tb, out, sizeof out, "link n%d up", cut);
    EXPECT(rc == FLC_ETIMEOUT && strstr(e.msg, "update of c3 acknowledged by 0 of 1") &&
               strstr(e.msg, want),
           "a push waiting for 1 replica of a cut-off replica fails: %s", e.msg);
    flc_store_close(s);
    CHECK(flc_testbed_sh(&tb, out, sizeof out, "wait 30") == 0, "n%d back in sync", cut);

    /* The round time with and without the wait, no kill. */
    float *ref = reference("fref3");
    CHECK(ref != NULL, "the reference model");
    double ms[2];
    for (int i = 0; i < 2; i++) {
        flc_sim_cfg_t c;
        flc_sim_inproc_t ip;
        flc_sim_result_t res;
        sim_cfg(&c, &ip, i ? "fwt1" : "fwt0", i ? &w : NULL, NULL);
        flc_err_clear(&e);
        CHECK(flc_sim_run(&c, NULL, NULL, &res, &e) == 0, "timing run: %s", e.msg);
        ms[i] = (res.rounds[0].round_ms + res.rounds[1].round_ms) / 2;
        flc_sim_result_free(&res);
    }
    printf("# round of %d clients x %d shards: %.1f ms without waiting, %.1f ms with WAIT 1\n",
           K, S, ms[0], ms[1]);

    pick_job(job, sizeof job, "fwkill", 0);
    victim = node_of(job, 1, 0);
    CHECK(victim > 0, "shard 0 of round 1 of %s: n%d", job, victim);
    killer_t k = {.victim = victim, .delay_ms = 1500};
    size_t resent;
    char names[512];
    run_with_kill(job, &w, &k, ref, &resent, names, sizeof names);
    EXPECT(resent == 0, "with WAIT 1 no acknowledged update was lost: %zu resent (%s)", resent,
           names);
    bring_back(victim);
    free(ref);
}

/* ---- a merger's read cut by the kill ------------------------------------------ */

typedef struct merger_run {
    const char *job;
    const char *const *expected;
    flc_rs_report_t rep;
    flc_err_t e;
    int rc;
    uint64_t failovers;
} merger_run_t;

#define CUT_SHARD_FLOATS 500000u /* 2 MB: two seconds on an 8 Mbit/s link */

static void *merger_main(void *p)
{
    merger_run_t *r = p;
    flc_store_t *s = open_seed(NULL);
    flc_rs_merger_cfg_t mc = {.job = r->job, .round = 1, .shard = 0, .num_shards = S,
                              .model_size = (uint64_t)S * CUT_SHARD_FLOATS,
                              .expected = r->expected, .n_expected = 4, .deadline_ms = 40000,
                              .readers = 1};
    flc_merge_rule_parse(&mc.rule, "mean", &r->e);
    r->rc = flc_rs_merger_run(s, &mc, &r->rep, &r->e);
    r->failovers = flc_store_failovers(s);
    flc_store_close(s);
    return NULL;
}

/* The merger pops c3's token, and the kill cuts its read of c3's update
 * (2 MB crossing the victim's link slowed to 8 Mbit/s take two seconds;
 * the kill comes in the middle). Before 2026-11-29 the merger counted c3 seen
 * and merged the other three, naming nobody (a training step merged 3 of 4
 * gradients and exit 0). Now the read is made again on the promoted
 * replica, or, if the update went with the dead master, c3 is waited for
 * until its push arrives again. */
static void cut_read(const char *prefix, int wait);

TEST(a_read_cut_by_the_kill_is_read_again)
{
    cut_read("fcut", 0);
}

/* The same with the pushes waiting for a replica: c3's wait is cut by the
 * kill too. Before 2026-11-29 that left the pusher's store a reply behind
 * (the push's replay or the wait's error path), so the next read got
 * STRLEN's answer for HLEN and refused the merged shard ("header claims a
 * 2000046-byte frame, the value has 2000046 chunks"): 3 of 4 runs.
 * flc_store_in_step now forgets such replies with their connections. */
TEST(a_replication_wait_cut_by_the_kill_leaves_the_store_in_step)
{
    cut_read("fcutw", 1);
}

static void cut_read(const char *prefix, int wait)
{
    need_testbed();
    char job[32];
    pick_job(job, sizeof job, prefix, 0);
    int victim = node_of(job, 1, 0);
    CHECK(victim > 0, "shard 0 of round 1 of %s: n%d", job, victim);
    const uint64_t n = (uint64_t)S * CUT_SHARD_FLOATS;
    float *u[4], *want = calloc(CUT_SHARD_FLOATS, sizeof *want);
    const char *names[4] = {"c0", "c1", "c2", "c3"};
    flc_store_opts_t w = {.wait_replicas = 1, .wait_timeout_ms = 20000};
    flc_store_t *s = open_seed(wait ? &w : NULL);
    flc_err_t e = {0};
    for (int i = 0; i < 4; i++) {
        u[i] = malloc(n * sizeof *u[i]);
        flc_t_fill(u[i], n, 100 + i);
        for (uint64_t j = 0; j < CUT_SHARD_FLOATS; j++)
            want[j] += u[i][j] / 4; /* checked to 1e-6 below, not bit-exact */
    }
    for (int i = 0; i < 3; i++) {
        flc_rs_push_cfg_t pc = {.job = job, .round = 1, .client = names[i], .num_shards = S,
                                .model_size = n, .num_samples = 1};
        CHECK(flc_rs_push(s, &pc, u[i], &e) == 0, "push of %s: %s", names[i], e.msg);
    }
    merger_run_t mr = {.job = job, .expected = names};
    pthread_t mt;
    pthread_create(&mt, NULL, merger_main, &mr);
    flc_sleep_ms(1000); /* the merger took c0-c2 and waits for c3 */
    char out[4096];
    CHECK(flc_testbed_sh(&tb, out, sizeof out, "rate n%d 8mbit", victim) == 0,
          "n%d's link slowed to 8 Mbit/s: %.200s", victim, out);
    /* c3's push: 2 s up to the victim, then the merger's read (2 s, up to
     * 4 s shared with the replication) on the victim's way out; killed at
     * 3 s, a second inside the read whichever way the timing leans.
     * (Not with a replication wait: a wait cut by the kill once left the
     * store's connection a reply behind, docs/reliability.md, open.) */
    killer_t k = {.victim = victim, .delay_ms = 3000, .job = job, .t0 = flc_now_s()};
    pthread_t kt;
    pthread_create(&kt, NULL, killer_main, &k);
    flc_rs_push_cfg_t pc = {.job = job, .round = 1, .client = "c3", .num_shards = S,
                            .model_size = n, .num_samples = 1};
    int prc = flc_rs_push(s, &pc, u[3], &e);
    pthread_join(kt, NULL);
    /* As a worker whose store saw the failover does (sgd_exchange.c): if
     * the update went with the dead master, push it again. */
    unsigned char present = 0;
    const char *c3[] = {"c3"};
    int again = 0;
    if (prc == 0 && flc_store_updates_present(s, job, 1, 0, c3, 1, &present) == 0 && !present) {
        again = 1;
        prc = flc_rs_push(s, &pc, u[3], &e);
    }
    pthread_join(mt, NULL);
    printf("# c3's update %s\n", again ? "went with the dead master: pushed again"
                                        : "was on the promoted replica");
    printf("# push of c3: %s; kill of n%d at %.2f s, served again at %.2f s; the merger saw "
           "%llu failover event(s)\n", prc == 0 ? "ok" : e.msg, victim, k.kill_s,
           k.promoted_s, (unsigned long long)mr.failovers);
    flc_testbed_sh(&tb, out, sizeof out, "rate n%d 10gbit", victim);
    size_t part = mr.rep.participants.n, miss = mr.rep.missing.n, rej = mr.rep.rejected.n;
    CHECK(part + miss + rej == 4, "every expected client is merged, missing or rejected: %zu + "
          "%zu + %zu of 4 (merger: %s)", part, miss, rej, mr.rc == 0 ? "ok" : mr.e.msg);
    EXPECT(mr.rc == 0 && part == 4, "the merger took all 4 updates through the kill (%zu; %s)",
           part, mr.rc == 0 ? "ok" : mr.e.msg);
    if (mr.rc == 0 && part == 4) {
        float *got = malloc(CUT_SHARD_FLOATS * sizeof *got);
        flc_shard_t m = {0};
        int grc = flc_store_get_merged(s, job, 1, 0, &m, got, CUT_SHARD_FLOATS);
        double err = 0;
        for (uint64_t j = 0; grc == 0 && j < CUT_SHARD_FLOATS; j++)
            err = fmax(err, fabs((double)got[j] - want[j]));
        flc_shard_release(&m);
        CHECK(grc == 0 && err < 1e-6, "the merged shard is the mean of the 4 updates (max "
              "error %.2g)%s%s", err, grc ? ": " : "", grc ? flc_store_errstr(s) : "");
        free(got);
    }
    flc_rs_report_free(&mr.rep);
    flc_store_close(s);
    for (int i = 0; i < 4; i++)
        free(u[i]);
    free(want);
    bring_back(victim);
}

/* ---- train ------------------------------------------------------------------- */

typedef struct train_kill {
    const char *log;  /* the training's output, as it is written */
    int victim, rc;
    double at_s;      /* when the kill went out, seconds after the watch began */
} train_kill_t;

/* Kills the victim once the training has finished its first epoch (its
 * "epoch 1/" line): a kill at a fixed time landed during data loading on a
 * fast machine (CI 2026-11-29 18:02), before any step, which tests nothing
 * of a failover mid-training. Gives up (no kill, rc -1) after 120 s. */
static void *train_killer(void *p)
{
    train_kill_t *k = p;
    char out[4096], buf[8192];
    double t0 = flc_now_s();
    k->rc = -1;
    while (flc_now_s() - t0 < 120) {
        FILE *f = fopen(k->log, "r");
        size_t n = f ? fread(buf, 1, sizeof buf - 1, f) : 0;
        if (f)
            fclose(f);
        buf[n] = '\0';
        if (strstr(buf, "epoch 1/") != NULL) {
            k->at_s = flc_now_s() - t0;
            k->rc = flc_testbed_sh(&tb, out, sizeof out, "kill n%d", k->victim);
            break;
        }
        flc_sleep_ms(20);
    }
    return NULL;
}

/* `flcache train` W=4 on the testbed; its output also goes to log (when
 * not NULL) while it runs, for the killer to watch. */
static int train(const char *job, const char *log, char *out, size_t cap, double *secs)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "env FLCACHE_REDIS='%s' %s/flcache train --workers 4 --epochs 4 --subset 12000 "
             "--test-subset 500 --step-timeout 20000 --job %s > %s 2>&1; rc=$?; cat %s; exit $rc",
             tb.seed, flc_t_build_dir(), job, log, log);
    double t0 = flc_now_s();
    int rc = flc_t_run(cmd, out, cap);
    *secs = flc_now_s() - t0;
    return rc;
}

static void grab(const char *out, const char *tag, char *v, size_t cap)
{
    const char *p = strstr(out, tag);
    v[0] = '\0';
    if (p)
        snprintf(v, cap, "%.*s", (int)strcspn(p + strlen(tag), " )\n"), p + strlen(tag));
}

TEST(train_survives_a_master_kill)
{
    need_testbed();
    static char o1[65536], o2[65536];
    double t1, t2;
    char log0[64], log1[64];
    snprintf(log0, sizeof log0, "/tmp/flc-ftr0-%d.log", (int)getpid());
    snprintf(log1, sizeof log1, "/tmp/flc-ftr1-%d.log", (int)getpid());
    unlink(log1);
    int r1 = train("ftr0", log0, o1, sizeof o1, &t1);
    unlink(log0);
    if (r1 != 0 && strstr(o1, "fashion") != NULL)
        flc_t_skip("no Fashion-MNIST here: %.200s", o1);
    char h1[64], h2[64];
    grab(o1, "FNV-1a ", h1, sizeof h1);
    CHECK(r1 == 0 && h1[0], "the reference training: %.1f s, model %s%.300s", t1, h1,
          r1 ? o1 : "");
    /* A master other than the seed, killed after the first epoch. */
    char job[32];
    pick_job(job, sizeof job, "ftr1x", 0);
    int victim = node_of(job, 1, 0);
    CHECK(victim > 0, "the victim: n%d, a master other than the seed", victim);
    train_kill_t k = {.log = log1, .victim = victim};
    pthread_t t;
    pthread_create(&t, NULL, train_killer, &k);
    int r2 = train("ftr1", log1, o2, sizeof o2, &t2);
    pthread_join(t, NULL);
    unlink(log1);
    CHECK(k.rc == 0, "n%d was killed after the first epoch (at %.1f s of %.1f s)", victim,
          k.at_s, t2);
    grab(o2, "FNV-1a ", h2, sizeof h2);
    printf("# train with n%d killed at %.1f s: exit %d in %.1f s, model %s (reference %s)\n",
           victim, k.at_s, r2, t2, h2, h1);
    if (r2 == 0) {
        CHECK(strcmp(h1, h2) == 0, "training through the kill of n%d ends with the reference "
              "model %s (got %s)", victim, h1, h2);
    } else {
        printf("# flcache train said:\n%s\n", o2);
        /* The step failed naming the workers whose updates were lost,
         * within the pulls' bound (2 x the 20 s step timeout) plus the
         * failover: seen in about 1 run of 10, after 46 s (docs/cluster.md,
         * Failover: the merger names it after one step timeout; why the
         * run took two is not known yet). */
        /* Named either way: "lost in a failover" when the merger's store
         * saw the failover, "missing (first: wN)" when it did not (CI,
         * 2026-11-29 18:02, when the kill still landed during loading: the
         * merger's connections were made after it, and w1 was missing at
         * step 8). */
        CHECK(t2 < t1 + 2 * 20 + 15 &&
                  (strstr(o2, "lost in a failover") || strstr(o2, "missing (first: w")) &&
                  strstr(o2, "w"),
              "training through the kill of n%d fails in %.1f s naming the lost workers: "
              "%.300s", victim, t2, o2);
    }
    bring_back(victim);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(simulate_survives_a_master_kill),
                 TEST_ENTRY(lost_updates_are_resent_and_named), TEST_ENTRY(wait_for_a_replica),
                 TEST_ENTRY(a_read_cut_by_the_kill_is_read_again),
                 TEST_ENTRY(a_replication_wait_cut_by_the_kill_leaves_the_store_in_step),
                 TEST_ENTRY(train_survives_a_master_kill))
