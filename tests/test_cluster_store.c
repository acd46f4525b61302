/* The store on a real Redis Cluster: the testbed of scripts/testbed.sh
 * (3 masters, 1 replica each, a password, in network namespaces), against
 * a single redis-server (the harness fixture) given the same work:
 * - shards bigger than one chunk, and than 8 chunks (the hash form), stored
 *   and read back bit-exact (whole and by window) on keys of each of the 3
 *   masters, each found on the master that owns its slot;
 * - one push of S = 12 shards spread over all masters;
 * - a reduce-scatter round W = 4, S = 6 across nodes: FedAvg equals the
 *   reference and the single server's bytes;
 * - norms and outliers of a round stored across nodes equal the single
 *   server's answer;
 * - rounds keep running while `redis-cli --cluster reshard` moves the slots
 *   of the job's keys: every round completes, with the single server's
 *   results, and the store followed MOVED / ASK to get there;
 * - `flcache train` W=4 and `flcache simulate` run against the seed URL in
 *   the client namespace: the same model checksum / aggregates as on one
 *   server;
 * - every merge rule and every query kind (issue 12, point 6): for each of
 *   the 8 simulate strategies, the same seeded run (N=12 K=6 R=2 S=6) on the
 *   cluster and on one server leaves bit-identical global models and merged
 *   shards, and the 9 query kinds give the same answers but for measured
 *   times, byte counts and the "nodes" note (listed at the case);
 * - ?cluster=yes|no on the URL overrides what the store detects;
 * - a store blocked in a wait on any node is woken by its id from another;
 * - DBSIZE, KEYS, FLUSHALL and the store's stats cover every master;
 * - the nodes (issue 12, point 4): flc_store_nodes lists the testbed's 3
 *   masters and 3 replicas with ids, roles and slots summing to 16384; the
 *   request tracker names the true owner of every shard of a round spread
 *   over all 3 masters; a query answer's "nodes" note names those 3 nodes,
 *   and `flcache store stats` / `flcache query` print them;
 * - metadata writes and reads (idempotent commands) go on through the
 *   SIGKILL of their master: retried until its replica took over.
 *
 * Each case runs in its own process, which joins the testbed's client
 * namespace (the node addresses exist only there; the single server's unix
 * socket is a path, reachable from there too). Needs root; skips without it
 * unless CI=true, as the testbed fixture does. The reshard case runs last:
 * it leaves the slots where it moved them. */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "aggregator/query.h"
#include "aggregator/reduce_scatter.h"
#include "aggregator/tracker.h"
#include "base/clock.h"
#include "cache/cluster_conn.h"
#include "cache/cluster_map.h"
#include "cache/keys.h"
#include "cache/slot.h"
#include "cache/store_cluster.h"
#include "cache/store_ops.h"
#include "cache/store_part.h"
#include "cache/store_raw.h"
#include "cache/url.h"
#include "clients/sim.h"
#include "tests/harness.h"

static flc_testbed_t tb;
static flc_fixture_t fx; /* the single server */
static char skip_why[160];
static char g_names[16][8];
static const char *g_expected[16];

static void setup(void)
{
    for (int i = 0; i < 16; i++) {
        snprintf(g_names[i], sizeof g_names[i], "c%d", i);
        g_expected[i] = g_names[i];
    }
    flc_fixture_start(&fx, 0);
    if (!flc_testbed_usable(skip_why, sizeof skip_why))
        return;
    flc_testbed_up(&tb, 3, 1, "10gbit");
}

static void teardown(void)
{
    flc_testbed_down(&tb);
    flc_fixture_stop(&fx);
}

static void need_testbed(void)
{
    flc_testbed_case(&tb, skip_why);
}

static flc_store_t *open_at(const char *url, size_t chunk)
{
    flc_err_t e = {0};
    flc_store_opts_t o = {.chunk_bytes = chunk};
    flc_store_t *s = flc_store_open(url, &o, &e);
    if (s == NULL)
        flc_t_fatal("open %s: %s", url, e.msg);
    return s;
}

/* The map and node connections of the test itself, to see where keys are. */
typedef struct view {
    flc_cluster_map_t map;
    flc_cluster_conn_t *cc;
} view_t;

static void view_open(view_t *v)
{
    flc_url_t u;
    flc_err_t e = {0};
    CHECK(flc_url_parse(tb.seed, &u, &e) == 0, "the seed parses: %s", e.msg);
    v->cc = flc_cluster_conn_new(&u, NULL, &e);
    flc_cluster_map_init(&v->map);
    int is = 0;
    CHECK(v->cc && flc_cluster_conn_bootstrap(v->cc, &v->map, &is, &e) == 0 && is,
          "a map from the seed (%s)", e.msg);
}

static void view_close(view_t *v)
{
    flc_cluster_conn_free(v->cc);
    flc_cluster_map_free(&v->map);
}

static unsigned owner_of(const view_t *v, const char *key)
{
    return flc_cluster_map_lookup(&v->map, key, strlen(key));
}

/* 1 when node has key (EXISTS on that node's own connection: no redirect). */
static int node_has(view_t *v, unsigned node, const char *key)
{
    redisContext *c = NULL;
    flc_err_t e = {0};
    if (flc_cluster_conn_get(v->cc, &v->map, node, &c, &e) != 0)
        return 0;
    redisReply *r = redisCommand(c, "EXISTS %s", key);
    int has = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    if (r)
        freeReplyObject(r);
    return has;
}

static int masters_of(const view_t *v, unsigned *m)
{
    int n = 0;
    for (size_t i = 0; i < v->map.nnodes && n < 8; i++)
        if (v->map.nodes[i].role == FLC_CLUSTER_MASTER && v->map.nodes[i].nslots > 0)
            m[n++] = (unsigned)i;
    return n;
}

/* ---- 1. round trip on each master ------------------------------------------ */

static int put_get(flc_store_t *s, const char *job, uint32_t round, const char *client,
                   uint64_t n, unsigned seed)
{
    float *v = malloc(n * sizeof *v);
    flc_t_fill(v, n, seed);
    flc_shard_t sh = {.round = round, .shard = 0, .num_shards = 1, .offset = 0, .count = n,
                      .model_size = n, .weight = 1, .num_samples = 1, .values = v};
    snprintf(sh.job, sizeof sh.job, "%s", job);
    snprintf(sh.client, sizeof sh.client, "%s", client);
    int ok = flc_store_put_update(s, &sh) == 0;
    flc_shard_t got = {0};
    ok = ok && flc_store_get_update(s, job, round, 0, client, &got, NULL, 0) == 0 &&
         got.count == n && memcmp(got.values, v, n * sizeof *v) == 0;
    /* and by window (cache/store_part.h): a third of it from its middle */
    flc_store_part_t part;
    float *w = malloc(n / 3 * sizeof *w), *d[] = {w};
    ok = ok && flc_store_part_open(s, job, round, 0, client, &part) == 0 &&
         flc_store_part_read(s, &part, 1, n / 3, n / 3, d) == 0 &&
         memcmp(w, v + n / 3, n / 3 * sizeof *v) == 0;
    free(w);
    if (!ok)
        printf("# %s round %u client %s: %s\n", job, round, client, flc_store_errstr(s));
    flc_shard_release(&got);
    free(v);
    return ok;
}

TEST(round_trip_on_each_master)
{
    need_testbed();
    view_t v;
    view_open(&v);
    unsigned m[8];
    int nm = masters_of(&v, m);
    CHECK(nm == 3, "3 masters in the map (%d)", nm);
    flc_store_t *s = open_at(tb.seed, 4096); /* 4 KiB chunks: small values, many chunks */
    CHECK(flc_store_is_cluster(s), "the store detected a cluster from the seed");
    for (int i = 0; i < nm; i++) {
        /* A job whose shard-0 tag lands on master m[i] (a shard's tag is the
         * same in every round: the job name picks the node). */
        char key[FLC_KEY_MAX], job[16], tag[FLC_TAG_MAX];
        uint32_t r = 1;
        for (int j = 0; j < 1000; j++) {
            snprintf(job, sizeof job, "rt%d", j);
            flc_key_shard_tag(tag, job, 0, 1);
            flc_key_update(key, tag, r, "a");
            if (owner_of(&v, key) == m[i])
                break;
        }
        int a = put_get(s, job, r, "a", 2000, 10 + i);   /* 8 KB: 2 chunks, a string */
        int b = put_get(s, job, r, "b", 20000, 20 + i);  /* 80 KB: 20 chunks, a hash */
        char kb[FLC_KEY_MAX];
        flc_key_update(kb, tag, r, "b");
        CHECK(a && b && node_has(&v, m[i], key) && node_has(&v, m[i], kb),
              "job %s on %s:%d: 2-chunk and 20-chunk shards read back bit-exact, whole and "
              "by window, stored on the slot's owner",
              job, v.map.nodes[m[i]].host, v.map.nodes[m[i]].port);
    }
    unsigned long mv, ask, retry;
    flc_store_cl_counts(&mv, &ask, &retry);
    EXPECT(mv == 0 && ask == 0, "routed straight to the owners: no MOVED (%lu), no ASK (%lu)",
           mv, ask);
    flc_store_close(s);
    view_close(&v);
}

/* ---- 2. one push spanning every node --------------------------------------- */

TEST(batched_push_spans_nodes)
{
    need_testbed();
    view_t v;
    view_open(&v);
    const uint32_t S = 12;
    const uint64_t n = 12 * 3001;
    const uint32_t r = 1;
    /* The schema places a job's S shard tags on evenly spaced slots: with
     * 3 masters of equal slot ranges, S = 12 puts exactly 4 on each, and a
     * shard's tag (so its rounds and its optimizer state) on one node. */
    unsigned per[8] = {0};
    int same = 1;
    for (uint32_t k = 0; k < S; k++) {
        char tag[FLC_TAG_MAX], k0[FLC_KEY_MAX], k5[FLC_KEY_MAX], ko[FLC_KEY_MAX];
        flc_key_shard_tag(tag, "bp", k, S);
        flc_key_update(k0, tag, 0, "p");
        flc_key_shard(k5, tag, 5, "agg");
        flc_key_opt_state(ko, tag);
        unsigned o = owner_of(&v, k0);
        if (o < 8)
            per[o]++;
        same &= owner_of(&v, k5) == o && owner_of(&v, ko) == o;
    }
    unsigned nm3[8];
    int nm = masters_of(&v, nm3);
    CHECK(nm == 3 && per[nm3[0]] == 4 && per[nm3[1]] == 4 && per[nm3[2]] == 4,
          "12 shard tags of job bp: %u / %u / %u on the 3 masters (4 each)", per[nm3[0]],
          per[nm3[1]], per[nm3[2]]);
    CHECK(same, "round 0 and round 5 of every shard and its optimizer state share its node");
    float *u = malloc(n * sizeof *u);
    flc_t_fill(u, n, 5);
    flc_store_t *s = open_at(tb.seed, 0);
    flc_err_t e = {0};
    flc_rs_push_cfg_t c = {.job = "bp", .round = r, .client = "p", .num_shards = S,
                           .model_size = n, .num_samples = 3};
    int rc = flc_rs_push(s, &c, u, &e);
    CHECK(rc == 0, "one push of 12 shards over 3 masters (%s)", e.msg);
    int good = 0, placed = 0;
    for (uint32_t k = 0; k < S; k++) {
        uint64_t off, cnt;
        flc_rs_shard_range(n, S, k, &off, &cnt);
        flc_shard_t got = {0};
        good += flc_store_get_update(s, "bp", r, k, "p", &got, NULL, 0) == 0 &&
                got.count == cnt && memcmp(got.values, u + off, cnt * sizeof *u) == 0;
        flc_shard_release(&got);
        char key[FLC_KEY_MAX], tag[FLC_TAG_MAX];
        flc_key_shard_tag(tag, "bp", k, S);
        flc_key_update(key, tag, r, "p");
        placed += node_has(&v, owner_of(&v, key), key);
    }
    CHECK(good == (int)S && placed == (int)S,
          "all 12 shards read back bit-exact (%d) and each lies on its slot's owner (%d)", good,
          placed);
    flc_store_close(s);
    free(u);
    view_close(&v);
}

/* ---- reduce-scatter rounds ----------------------------------------------------- */

typedef struct round_spec {
    const char *url, *job;
    uint32_t round, W, S;
    uint64_t n;
    float **u;
    uint64_t *samples;
} round_spec_t;

typedef struct arg {
    const round_spec_t *sp;
    uint32_t i;
    float *model;
    int rc;
    char err[256];
} arg_t;

static void *contributor(void *p)
{
    arg_t *a = p;
    const round_spec_t *sp = a->sp;
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(sp->url, NULL, &e);
    if (s != NULL) {
        flc_rs_push_cfg_t c = {.job = sp->job, .round = sp->round, .client = g_names[a->i],
                               .num_shards = sp->S, .model_size = sp->n,
                               .num_samples = sp->samples[a->i]};
        a->rc = flc_rs_push(s, &c, sp->u[a->i], &e);
        if (a->rc == 0)
            a->rc = flc_rs_pull(s, sp->job, sp->round, sp->S, sp->n, 30000, a->model, &e);
    } else {
        a->rc = e.code ? e.code : -1;
    }
    snprintf(a->err, sizeof a->err, "%s", e.msg);
    flc_store_close(s);
    return NULL;
}

static void *merger(void *p)
{
    arg_t *a = p;
    const round_spec_t *sp = a->sp;
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(sp->url, NULL, &e);
    flc_rs_report_t rep = {0};
    if (s != NULL) {
        flc_rs_merger_cfg_t cfg = {.job = sp->job, .round = sp->round, .shard = a->i,
                                   .num_shards = sp->S, .model_size = sp->n,
                                   .expected = g_expected, .n_expected = sp->W,
                                   .deadline_ms = 30000, .readers = sp->W};
        flc_merge_rule_init(&cfg.rule, "fedavg", NULL);
        a->rc = flc_rs_merger_run(s, &cfg, &rep, &e);
    } else {
        a->rc = e.code ? e.code : -1;
    }
    snprintf(a->err, sizeof a->err, "%s", e.msg);
    flc_rs_report_free(&rep);
    flc_store_close(s);
    return NULL;
}

/* Runs one round; models[w] gets what contributor w read. 0 when all went well. */
static int run_round(const round_spec_t *sp, float **models)
{
    arg_t ca[16], ma[16];
    pthread_t ct[16], mt[16];
    for (uint32_t k = 0; k < sp->S; k++) {
        ma[k] = (arg_t){.sp = sp, .i = k};
        pthread_create(&mt[k], NULL, merger, &ma[k]);
    }
    for (uint32_t w = 0; w < sp->W; w++) {
        ca[w] = (arg_t){.sp = sp, .i = w, .model = models[w]};
        pthread_create(&ct[w], NULL, contributor, &ca[w]);
    }
    int bad = 0;
    for (uint32_t w = 0; w < sp->W; w++) {
        pthread_join(ct[w], NULL);
        if (ca[w].rc)
            printf("# %s round %u contributor %u: %s\n", sp->job, sp->round, w, ca[w].err);
        bad |= ca[w].rc != 0;
    }
    for (uint32_t k = 0; k < sp->S; k++) {
        pthread_join(mt[k], NULL);
        if (ma[k].rc)
            printf("# %s round %u merger %u: %s\n", sp->job, sp->round, k, ma[k].err);
        bad |= ma[k].rc != 0;
    }
    return bad;
}

/* Updates of round r: deterministic from (r, w). */
static void make_updates(float **u, uint64_t *samples, uint32_t W, uint64_t n, uint32_t r)
{
    for (uint32_t w = 0; w < W; w++) {
        flc_t_fill(u[w], n, 1000 * r + w);
        samples[w] = 5 + 3 * w + r % 4;
    }
}

static float **alloc_rows(uint32_t k, uint64_t n)
{
    float **m = calloc(k, sizeof *m);
    for (uint32_t i = 0; i < k; i++)
        m[i] = calloc(n, sizeof(float));
    return m;
}

static void free_rows(float **m, uint32_t k)
{
    for (uint32_t i = 0; i < k; i++)
        free(m[i]);
    free(m);
}

/* ---- 3. a reduce-scatter round across nodes ------------------------------------- */

TEST(reduce_scatter_round_across_nodes)
{
    need_testbed();
    const uint32_t W = 4, S = 6;
    const uint64_t n = 6007;
    float **u = alloc_rows(W, n), **mc = alloc_rows(W, n), **ms = alloc_rows(W, n);
    uint64_t samples[4];
    make_updates(u, samples, W, n, 1);
    round_spec_t sp = {.url = tb.seed, .job = "rsx", .round = 1, .W = W, .S = S, .n = n,
                       .u = u, .samples = samples};
    int bad = run_round(&sp, mc);
    sp.url = fx.unix_url;
    int bad1 = run_round(&sp, ms);
    double tot = 0, worst = 0;
    for (uint32_t w = 0; w < W; w++)
        tot += (double)samples[w];
    for (uint64_t x = 0; x < n; x++) {
        double acc = 0;
        for (uint32_t w = 0; w < W; w++)
            acc += (double)samples[w] * u[w][x];
        double d = fabs(mc[0][x] - acc / tot) / (fabs(acc / tot) + 1e-6);
        worst = d > worst || d != d ? d : worst;
    }
    int same = 1;
    for (uint32_t w = 0; w < W; w++)
        same &= memcmp(mc[w], ms[0], n * sizeof(float)) == 0;
    CHECK(!bad && !bad1 && worst <= 1e-6 && same,
          "W=4 S=6 on 3 masters: FedAvg equals the reference (max rel diff %.2g) and the "
          "single server's bytes on every contributor",
          worst);
    free_rows(u, W);
    free_rows(mc, W);
    free_rows(ms, W);
}

/* ---- 4. queries on a round stored across nodes ------------------------------------ */

static Flcache__QueryAnswer *query(const char *url, flc_query_kind_t kind)
{
    flc_err_t e = {0};
    flc_store_t *s = open_at(url, 0);
    flc_query_req_t q = {.kind = kind, .job = "qx", .round_from = 1, .round_to = 1, .url = url};
    Flcache__QueryAnswer *a = NULL;
    if (flc_query_run(s, &q, &a, &e) != 0)
        printf("# query at %s: %s\n", url, e.msg);
    flc_store_close(s);
    return a;
}

static int same_answer(const Flcache__QueryAnswer *a, const Flcache__QueryAnswer *b,
                       double *worst)
{
    *worst = 0;
    if (a == NULL || b == NULL || a->n_rows != b->n_rows || a->n_rows == 0)
        return 0;
    for (size_t i = 0; i < a->n_rows; i++) {
        const Flcache__QueryRow *x = a->rows[i], *y = b->rows[i];
        if (strcmp(x->key, y->key) != 0 || x->n_values != y->n_values ||
            x->n_text != y->n_text)
            return 0;
        for (size_t j = 0; j < x->n_values; j++) {
            double d = fabs(x->values[j] - y->values[j]);
            *worst = d > *worst ? d : *worst;
        }
        for (size_t j = 0; j < x->n_text; j++)
            if (strcmp(x->text[j], y->text[j]) != 0)
                return 0;
    }
    return *worst == 0;
}

TEST(queries_across_nodes_match_one_server)
{
    need_testbed();
    const uint32_t W = 8, S = 6;
    const uint64_t n = 4099;
    float **u = alloc_rows(W, n), **m = alloc_rows(W, n);
    uint64_t samples[8];
    make_updates(u, samples, W, n, 3);
    for (uint64_t x = 0; x < n; x++) /* one outlier */
        u[7][x] = -6 * u[7][x];
    round_spec_t sp = {.url = tb.seed, .job = "qx", .round = 1, .W = W, .S = S, .n = n,
                       .u = u, .samples = samples};
    int bad = run_round(&sp, m);
    sp.url = fx.unix_url;
    bad |= run_round(&sp, m);
    CHECK(!bad, "round 1 of job qx stored on the cluster and on the single server");
    const flc_query_kind_t kinds[] = {FLC_Q_NORMS, FLC_Q_OUTLIERS};
    for (int k = 0; k < 2; k++) {
        Flcache__QueryAnswer *a = query(tb.seed, kinds[k]), *b = query(fx.unix_url, kinds[k]);
        double worst = 0;
        CHECK(same_answer(a, b, &worst),
              "%s over 6 shards on 3 masters: the single server's rows, keys and values "
              "(max diff %.3g)",
              flc_query_kind_name(kinds[k]), worst);
        flcache__query_answer__free_unpacked(a, NULL);
        flcache__query_answer__free_unpacked(b, NULL);
    }
    free_rows(u, W);
    free_rows(m, W);
}

/* ---- 5. rounds during a live resharding ------------------------------------------- */

typedef struct loop {
    const char *url, *job;
    uint32_t rounds_done, max_rounds;
    atomic_int stop;
    float **out; /* [max_rounds] models read by contributor 0 */
    int bad;
} loop_t;

enum { RW = 2, RS = 6, RN = 3001 };

static void *round_loop(void *p)
{
    loop_t *l = p;
    float **u = alloc_rows(RW, RN), **m = alloc_rows(RW, RN);
    uint64_t samples[RW];
    for (uint32_t r = 1; r <= l->max_rounds && !atomic_load(&l->stop); r++) {
        make_updates(u, samples, RW, RN, r);
        round_spec_t sp = {.url = l->url, .job = l->job, .round = r, .W = RW, .S = RS,
                           .n = RN, .u = u, .samples = samples};
        l->bad |= run_round(&sp, m);
        memcpy(l->out[r - 1], m[0], RN * sizeof(float));
        l->rounds_done = r;
    }
    free_rows(u, RW);
    free_rows(m, RW);
    return NULL;
}

TEST(rounds_complete_during_reshard)
{
    need_testbed();
    view_t v;
    view_open(&v);
    unsigned a = v.map.owner[0], b = FLC_CLUSTER_NO_NODE;
    for (unsigned i = 0; i < v.map.nnodes && b == FLC_CLUSTER_NO_NODE; i++)
        if (i != a && v.map.nodes[i].role == FLC_CLUSTER_MASTER && v.map.nodes[i].nslots > 0)
            b = i;
    CHECK(b != FLC_CLUSTER_NO_NODE, "a giving and a taking master");
    /* A job whose job-level tag {J/j} lies in the slots that move (the
     * giver's lowest ones), so every round writes into a migrating slot. */
    const unsigned moving = 400;
    unsigned lo = 0;
    while (v.map.owner[lo] != a)
        lo++;
    static char job[16];
    for (int i = 0;; i++) {
        char tag[24];
        snprintf(job, sizeof job, "mv%d", i);
        snprintf(tag, sizeof tag, "%s/j", job);
        uint16_t sl = flc_slot_of(tag, strlen(tag));
        if (sl >= lo && sl < lo + moving && v.map.owner[sl] == a)
            break;
    }
    const uint32_t max_rounds = 400;
    loop_t lc = {.url = tb.seed, .job = job, .max_rounds = max_rounds};
    lc.out = alloc_rows(max_rounds, RN);
    pthread_t t;
    pthread_create(&t, NULL, round_loop, &lc);
    flc_sleep_ms(300);
    uint32_t before = lc.rounds_done;
    char out[65536];
    double t0 = flc_now_s();
    int rc = flc_testbed_sh(&tb, out, sizeof out,
                            "exec client redis-cli -a %s --no-auth-warning --cluster reshard "
                            "%s:6379 --cluster-from %s --cluster-to %s --cluster-slots %u "
                            "--cluster-yes",
                            tb.password, v.map.nodes[a].host, v.map.nodes[a].id,
                            v.map.nodes[b].id, moving);
    double took = flc_now_s() - t0;
    uint32_t during = lc.rounds_done - before;
    flc_sleep_ms(300); /* a few rounds on the new map */
    atomic_store(&lc.stop, 1);
    pthread_join(t, NULL);
    CHECK(rc == 0, "redis-cli --cluster reshard moved %u slots from %s to %s in %.1f s", moving,
          v.map.nodes[a].host, v.map.nodes[b].host, took);
    unsigned long mv, ask, retry;
    flc_store_cl_counts(&mv, &ask, &retry);
    printf("# %u rounds in all, %u while the reshard ran; redirects followed: MOVED %lu, "
           "ASK %lu, retries %lu\n",
           lc.rounds_done, during, mv, ask, retry);
    CHECK(!lc.bad && lc.rounds_done > before && during > 0,
          "every round completed, %u of them during the reshard", during);
    EXPECT(mv + ask > 0, "the store met and followed redirects (MOVED %lu, ASK %lu)", mv, ask);
    /* The same rounds on one server. */
    loop_t l1 = {.url = fx.unix_url, .job = job, .max_rounds = lc.rounds_done};
    l1.out = alloc_rows(lc.rounds_done, RN);
    round_loop(&l1);
    int same = 0;
    for (uint32_t r = 0; r < lc.rounds_done; r++)
        same += memcmp(lc.out[r], l1.out[r], RN * sizeof(float)) == 0;
    CHECK(!l1.bad && same == (int)lc.rounds_done,
          "all %u rounds give the single server's models, bit for bit (%d equal)",
          lc.rounds_done, same);
    free_rows(lc.out, max_rounds);
    free_rows(l1.out, lc.rounds_done);
    view_close(&v);
}

/* ---- 6. the CLI against the seed URL ------------------------------------------------- */

/* Runs flcache with FLCACHE_REDIS=url (in the client namespace when ns). */
static int cli(const char *ns, const char *url, const char *args, char *out, size_t cap)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s%s env FLCACHE_REDIS='%s' %s/flcache %s 2>&1",
             ns ? "ip netns exec " : "", ns ? ns : "", url, flc_t_build_dir(), args);
    return flc_t_run(cmd, out, cap);
}

static void grab(const char *out, const char *tag, char *v, size_t cap)
{
    const char *p = strstr(out, tag);
    v[0] = '\0';
    if (p)
        snprintf(v, cap, "%.*s", (int)strcspn(p + strlen(tag), " )\n"), p + strlen(tag));
}

TEST(cli_train_and_simulate_as_on_one_server)
{
    need_testbed();
    static char o1[65536], o2[65536];
    const char *train = "train --workers 4 --epochs 1 --subset 4000 --test-subset 1000";
    int r1 = cli(tb.client_ns, tb.seed, train, o1, sizeof o1);
    int r2 = cli(NULL, fx.unix_url, train, o2, sizeof o2);
    if (r2 != 0 && strstr(o2, "fashion") != NULL)
        flc_t_skip("no Fashion-MNIST here: %.200s", o2);
    char h1[64], h2[64];
    grab(o1, "FNV-1a ", h1, sizeof h1);
    grab(o2, "FNV-1a ", h2, sizeof h2);
    CHECK(r1 == 0 && r2 == 0 && h1[0] && strcmp(h1, h2) == 0,
          "flcache train W=4 on the cluster: model %s, on one server %s (exit %d, %d)%s%.300s",
          h1, h2, r1, r2, r1 ? ": " : "", r1 ? o1 : "");
    const char *sim = "simulate --clients 20 --per-round 6 --rounds 3 --shards 6 --subset 3000 "
                      "--test-subset 500 --seed 7 --job csim";
    r1 = cli(tb.client_ns, tb.seed, sim, o1, sizeof o1);
    r2 = cli(NULL, fx.unix_url, sim, o2, sizeof o2);
    /* The aggregates: every round's accuracy and losses, and the final line
     * up to its timing. */
    char a1[1024] = "", a2[1024] = "";
    const char *outs[] = {o1, o2};
    char *as[] = {a1, a2};
    for (int i = 0; i < 2; i++) {
        for (const char *p = outs[i]; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
            int rnd;
            double acc, l1, l2;
            if (sscanf(p, " %d %lf %lf %lf", &rnd, &acc, &l1, &l2) == 4)
                snprintf(as[i] + strlen(as[i]), 1024 - strlen(as[i]), "%d:%.2f/%.4f/%.4f ",
                         rnd, acc, l1, l2);
        }
        char fin[64];
        grab(outs[i], "final accuracy ", fin, sizeof fin);
        snprintf(as[i] + strlen(as[i]), 1024 - strlen(as[i]), "final %s", fin);
    }
    CHECK(r1 == 0 && r2 == 0 && strlen(a1) > 20 && strcmp(a1, a2) == 0,
          "flcache simulate on the cluster: [%s], on one server: [%s] (exit %d, %d)", a1, a2, r1,
          r2);
}

/* ---- 6b. every merge rule and every query kind, as on one server (issue 12, point 6) --- */

/* What is compared, and what not. The runs and queries are made in this
 * process through the library (flc_sim_run, flc_query_run), so one process
 * loads the data for all 16 runs and the answers are compared as the
 * QueryAnswer messages `flcache query --json` prints, numbers bit for bit.
 * Bit for bit: every global model of the
 * job (rounds 0..R of J/g), every merged shard, the run's accuracies,
 * losses and counts, and the answer of every query kind (job, kind, columns,
 * each row's key, numbers and text, the summary, the notes). Left out, as
 * not results of the computation:
 * - the run's round_ms, clients_ms, merge_ms, wait_ms, eval_ms, wall_ms
 *   (measured times), bytes (what the stores moved) and cost_usd (priced
 *   from the measured durations);
 * - history's round_ms, wait_ms, merge_ms, bytes_read and cost_usd columns
 *   and client's duration_ms column, for the same reasons (they are those
 *   measurements, stored in the round's and the update's records);
 * - an answer's elapsed_ms, bytes_read and bytes_moved (measured time and
 *   byte counts), and its "nodes" note, which names the node that served
 *   each shard: one URL on one server, the 3 masters on the cluster. */
static int ignored_column(const char *kind, const char *col)
{
    static const char *const hist[] = {"round_ms", "wait_ms", "merge_ms", "bytes_read",
                                       "cost_usd", NULL};
    if (strcmp(kind, "history") == 0)
        for (int i = 0; hist[i]; i++)
            if (strcmp(col, hist[i]) == 0)
                return 1;
    return strcmp(kind, "client") == 0 && strcmp(col, "duration_ms") == 0;
}

static int same_bits(double a, double b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

/* 1 when a and b are the same answer (but for what ignored_column and the
 * comment above leave out); else 0 with the first difference in why. */
static int answers_match(const Flcache__QueryAnswer *a, const Flcache__QueryAnswer *b,
                         char *why, size_t cap)
{
    why[0] = '\0';
    if (a == NULL || b == NULL) {
        snprintf(why, cap, "no answer from %s", a == NULL ? "the cluster" : "one server");
        return 0;
    }
    if (strcmp(a->job, b->job) || strcmp(a->kind, b->kind) || strcmp(a->error, b->error) ||
        a->n_columns != b->n_columns || a->num_numeric != b->num_numeric ||
        a->n_rows != b->n_rows || a->n_summary != b->n_summary) {
        snprintf(why, cap, "shape: %zu/%zu columns, %zu/%zu rows, %zu/%zu summary entries",
                 a->n_columns, b->n_columns, a->n_rows, b->n_rows, a->n_summary, b->n_summary);
        return 0;
    }
    for (size_t c = 0; c < a->n_columns; c++)
        if (strcmp(a->columns[c], b->columns[c]) != 0) {
            snprintf(why, cap, "column %zu: %s / %s", c, a->columns[c], b->columns[c]);
            return 0;
        }
    for (size_t i = 0; i < a->n_rows; i++) {
        const Flcache__QueryRow *x = a->rows[i], *y = b->rows[i];
        if (strcmp(x->key, y->key) != 0 || x->n_values != y->n_values ||
            x->n_text != y->n_text) {
            snprintf(why, cap, "row %zu: key %s / %s", i, x->key, y->key);
            return 0;
        }
        for (size_t j = 0; j < x->n_values; j++)
            if (!same_bits(x->values[j], y->values[j]) &&
                !(j < a->n_columns && ignored_column(a->kind, a->columns[j]))) {
                snprintf(why, cap, "row %s, %s: %.17g / %.17g", x->key,
                         j < a->n_columns ? a->columns[j] : "?", x->values[j], y->values[j]);
                return 0;
            }
        for (size_t j = 0; j < x->n_text; j++)
            if (strcmp(x->text[j], y->text[j]) != 0) {
                snprintf(why, cap, "row %s, text %zu: '%s' / '%s'", x->key, j, x->text[j],
                         y->text[j]);
                return 0;
            }
    }
    for (size_t i = 0; i < a->n_summary; i++)
        if (strcmp(a->summary[i]->key, b->summary[i]->key) != 0 ||
            !same_bits(a->summary[i]->value, b->summary[i]->value)) {
            snprintf(why, cap, "summary %s = %.17g / %s = %.17g", a->summary[i]->key,
                     a->summary[i]->value, b->summary[i]->key, b->summary[i]->value);
            return 0;
        }
    /* The notes but "nodes", in order. */
    size_t i = 0, j = 0;
    for (;;) {
        while (i < a->n_notes && strcmp(a->notes[i]->key, "nodes") == 0)
            i++;
        while (j < b->n_notes && strcmp(b->notes[j]->key, "nodes") == 0)
            j++;
        if (i == a->n_notes || j == b->n_notes)
            break;
        if (strcmp(a->notes[i]->key, b->notes[j]->key) != 0 ||
            strcmp(a->notes[i]->value, b->notes[j]->value) != 0) {
            snprintf(why, cap, "note %s: '%.80s' / %s: '%.80s'", a->notes[i]->key,
                     a->notes[i]->value, b->notes[j]->key, b->notes[j]->value);
            return 0;
        }
        i++, j++;
    }
    if (i != a->n_notes || j != b->n_notes) {
        snprintf(why, cap, "%zu / %zu notes", a->n_notes, b->n_notes);
        return 0;
    }
    return 1;
}

/* 1 when the two runs give the same numbers but for the measured ones. */
static int runs_match(const flc_sim_result_t *a, const flc_sim_result_t *b, char *why,
                      size_t cap)
{
    why[0] = '\0';
    if (a->nrounds != b->nrounds || a->nparams != b->nparams || a->eligible != b->eligible ||
        a->faulty_clients != b->faulty_clients || !same_bits(a->init_accuracy, b->init_accuracy) ||
        !same_bits(a->init_loss, b->init_loss)) {
        snprintf(why, cap, "run: %zu/%zu rounds, initial accuracy %.17g / %.17g", a->nrounds,
                 b->nrounds, a->init_accuracy, b->init_accuracy);
        return 0;
    }
    for (size_t i = 0; i < a->nrounds; i++) {
        const flc_sim_round_t *x = &a->rounds[i], *y = &b->rounds[i];
        if (x->round != y->round || !same_bits(x->accuracy, y->accuracy) ||
            !same_bits(x->loss, y->loss) || !same_bits(x->train_loss, y->train_loss) ||
            x->sampled != y->sampled || x->participants != y->participants ||
            x->missing != y->missing || x->rejected != y->rejected ||
            x->dropped != y->dropped || x->late != y->late ||
            x->faulty_sampled != y->faulty_sampled || x->merged != y->merged) {
            snprintf(why, cap, "round %u: accuracy %.17g / %.17g, loss %.17g / %.17g, "
                     "participants %zu / %zu", x->round, x->accuracy, y->accuracy, x->loss,
                     y->loss, x->participants, y->participants);
            return 0;
        }
    }
    return 1;
}

/* The stored global models (rounds 0..R of J/g) and merged shards (rounds
 * 1..R of J) of the two stores, byte for byte; *n counts what was compared. */
static int models_match(flc_store_t *a, flc_store_t *b, const char *job, uint32_t R,
                        uint32_t S, int *n, char *why, size_t cap)
{
    char gjob[80];
    snprintf(gjob, sizeof gjob, "%s/g", job);
    why[0] = '\0';
    *n = 0;
    for (uint32_t r = 0; r <= R; r++)
        for (uint32_t k = 0; k < (r ? S : 0) + 1; k++) {
            /* k == S (or r == 0): the global model; else merged shard k. */
            int global = r == 0 || k == S;
            const char *j = global ? gjob : job;
            uint32_t sh = global ? 0 : k;
            flc_shard_t x = {0}, y = {0};
            int rx = flc_store_get_merged(a, j, r, sh, &x, NULL, 0);
            int ry = flc_store_get_merged(b, j, r, sh, &y, NULL, 0);
            int ok = rx == 0 && ry == 0 && x.count == y.count && x.count > 0 &&
                     x.offset == y.offset && x.model_size == y.model_size &&
                     memcmp(x.values, y.values, x.count * sizeof(float)) == 0;
            if (!ok)
                snprintf(why, cap, "%s round %u shard %u: read %d / %d, %llu / %llu floats%s",
                         j, r, sh, rx, ry, (unsigned long long)x.count,
                         (unsigned long long)y.count, rx == 0 && ry == 0 ? ", other bits" : "");
            flc_shard_release(&x);
            flc_shard_release(&y);
            if (!ok)
                return 0;
            ++*n;
        }
    return 1;
}

static Flcache__QueryAnswer *ask(flc_store_t *s, const char *url, flc_query_req_t q,
                                 float **model, uint64_t *mlen)
{
    flc_err_t e = {0};
    q.url = url;
    q.model_out = model;
    q.model_len = mlen;
    Flcache__QueryAnswer *a = NULL;
    if (flc_query_run(s, &q, &a, &e) != 0)
        printf("# %s of job %s at %s: %s\n", flc_query_kind_name(q.kind), q.job, url, e.msg);
    return a;
}

/* Every query kind on job J, on both stores: the answers compared. Returns
 * how many of the FLC_Q_NKINDS agree. */
static int queries_match(flc_store_t *sc, flc_store_t *s1, const char *job, uint32_t R)
{
    int agree = 0;
    /* A client of the last round, for `client`. */
    flc_strlist_t cl = {0};
    flc_store_list_clients(s1, job, R, &cl);
    char client[64] = "";
    if (cl.n)
        snprintf(client, sizeof client, "%s", cl.items[0]);
    flc_strlist_free(&cl);
    for (int k = 0; k < FLC_Q_NKINDS; k++) {
        flc_query_req_t q = {.kind = (flc_query_kind_t)k, .job = job, .round_from = R,
                             .round_to = R, .seed = 1, .k = 2, .client = client};
        q.all_rounds = k == FLC_Q_HISTORY || k == FLC_Q_CLIENT || k == FLC_Q_CONTRIBUTION ||
                       k == FLC_Q_SCHEDULE;
        if (k == FLC_Q_SCHEDULE)
            q.k = 4;
        float *ma = NULL, *mb = NULL;
        uint64_t la = 0, lb = 0;
        Flcache__QueryAnswer *a = ask(sc, tb.seed, q, &ma, &la);
        Flcache__QueryAnswer *b = ask(s1, fx.unix_url, q, &mb, &lb);
        char why[400];
        int same = answers_match(a, b, why, sizeof why) && a->n_rows > 0;
        if (same && k == FLC_Q_PERSONALIZE && !(la == lb && la > 0 && ma && mb &&
                                                memcmp(ma, mb, la * sizeof *ma) == 0)) {
            snprintf(why, sizeof why, "the cluster's model: %llu / %llu floats, other bits",
                     (unsigned long long)la, (unsigned long long)lb);
            same = 0;
        }
        if (!same)
            printf("#   %s: %s\n", flc_query_kind_name(q.kind),
                   why[0] ? why : "no rows");
        agree += same;
        free(ma);
        free(mb);
        if (a)
            flcache__query_answer__free_unpacked(a, NULL);
        if (b)
            flcache__query_answer__free_unpacked(b, NULL);
    }
    return agree;
}

TEST(every_rule_and_query_as_on_one_server)
{
    need_testbed();
    const uint32_t R = 2, S = 6;
    flc_sim_inproc_t threads = {.threads = 6};
    flc_store_t *sc = open_at(tb.seed, 0), *s1 = open_at(fx.unix_url, 0);
    for (int st = 0; st < FLC_SIM_NSTRATEGIES; st++) {
        char job[64];
        snprintf(job, sizeof job, "ev-%s", flc_sim_strategy_name(st));
        flc_sim_cfg_t c;
        flc_sim_cfg_init(&c);
        c.job = job;
        c.clients = 12;
        c.per_round = 6;
        c.rounds = (int)R;
        c.strategy = st;
        c.seed = 11;
        c.num_shards = S;
        c.subset = 1200;
        c.test_subset = 300;
        c.invoke_user = &threads;
        flc_sim_result_t res[2];
        memset(res, 0, sizeof res);
        int rc[2];
        const char *urls[2] = {tb.seed, fx.unix_url};
        char err[2][256];
        for (int i = 0; i < 2; i++) {
            flc_err_t e = {0};
            c.redis = urls[i];
            flc_sim_clear(c.redis, NULL, job, &e);
            rc[i] = flc_sim_run(&c, NULL, NULL, &res[i], &e);
            snprintf(err[i], sizeof err[i], "%s", rc[i] ? flc_err_msg(&e) : "");
        }
        if (st == 0 && rc[1] == FLC_EIO)
            flc_t_skip("no Fashion-MNIST here: %s", err[1]);
        char why[400] = "", mwhy[400] = "";
        int nm = 0;
        int ran = rc[0] == 0 && rc[1] == 0;
        int same_run = ran && runs_match(&res[0], &res[1], why, sizeof why);
        int same_models = ran && models_match(sc, s1, job, R, S, &nm, mwhy, sizeof mwhy);
        EXPECT(same_run && same_models,
               "%s, N=12 K=6 R=2 S=6 seed 11: the cluster's run and its %d stored models "
               "(J/g rounds 0-2, merged shards) are the single server's, bit for bit "
               "(final accuracy %.4f / %.4f)%s%s%s%s%s%s%s%s",
               job, nm, ran ? res[0].rounds[R - 1].accuracy : -1.0,
               ran ? res[1].rounds[R - 1].accuracy : -1.0, why[0] ? ": " : "", why,
               mwhy[0] ? ": " : "", mwhy, rc[0] ? "; on the cluster: " : "", err[0],
               rc[1] ? "; on one server: " : "", err[1]);
        if (ran) {
            int agree = queries_match(sc, s1, job, R);
            EXPECT(agree == FLC_Q_NKINDS,
                   "%s: %d of the %d query kinds answer as on one server (history, client, "
                   "norms, similarity, outliers, clusters, personalize, contribution, "
                   "schedule)",
                   job, agree, FLC_Q_NKINDS);
        }
        flc_sim_result_free(&res[0]);
        flc_sim_result_free(&res[1]);
    }
    flc_store_close(sc);
    flc_store_close(s1);
}

/* ---- 7. the URL option, and waking a blocked store ------------------------------- */

TEST(url_option_forces_the_mode)
{
    need_testbed();
    char url[300];
    flc_err_t e = {0};
    /* cluster=no on a cluster node: a single-server client, which the
     * node sends MOVED for another node's key (so the option was obeyed). */
    snprintf(url, sizeof url, "%s?cluster=no", tb.seed);
    flc_store_t *s = flc_store_open(url, NULL, &e);
    CHECK(s != NULL && !flc_store_is_cluster(s), "?cluster=no opens a single-server store (%s)",
          e.msg);
    int moved = 0;
    for (int j = 0; j < 40 && !moved; j++) { /* jobs whose one shard lies elsewhere */
        char job[16];
        snprintf(job, sizeof job, "uo%d", j);
        moved = flc_store_job_shards(s, job, 1) == 0 &&
                flc_store_notify(s, job, 1, 0, "done", "x", 1) != 0 &&
                strstr(flc_store_errstr(s), "MOVED") != NULL;
    }
    EXPECT(moved, "a key of another node gets MOVED back (%s)", flc_store_errstr(s));
    flc_store_close(s);
    snprintf(url, sizeof url, "%s?cluster=yes", tb.seed);
    s = flc_store_open(url, NULL, &e);
    CHECK(s != NULL && flc_store_is_cluster(s), "?cluster=yes opens a cluster store (%s)",
          e.msg);
    flc_store_close(s);
    snprintf(url, sizeof url, "%s?cluster=yes", fx.unix_url);
    s = flc_store_open(url, NULL, &e);
    CHECK(s == NULL && strstr(e.msg, "not a cluster node") != NULL,
          "?cluster=yes on a single server is refused: %s", e.msg);
    CHECK(flc_url_parse("redis://h?cluster=maybe", &(flc_url_t){0}, &e) != 0,
          "cluster=maybe is refused: %s", e.msg);
}

typedef struct waiter {
    flc_store_t *s;
    int rc;
    double took;
} waiter_t;

static void *wait_long(void *p)
{
    waiter_t *w = p;
    double t0 = flc_now_s();
    w->rc = flc_store_wait(w->s, "wk", 1, 3, "done", 20000, NULL, 0);
    w->took = flc_now_s() - t0;
    return NULL;
}

TEST(wake_reaches_a_store_blocked_on_any_node)
{
    need_testbed();
    waiter_t w = {.s = open_at(tb.seed, 0)};
    flc_store_job_shards(w.s, "wk", 4); /* shard 3 of 4: its node is the job's choice */
    long long id = -1;
    int idrc = flc_store_conn_id(w.s, &id);
    CHECK(idrc == 0 && id >= 0, "a wake id on a cluster (%lld)", id);
    pthread_t t;
    pthread_create(&t, NULL, wait_long, &w);
    flc_sleep_ms(300);
    flc_store_t *o = open_at(tb.seed, 0);
    int rc = flc_store_wake_id(o, id);
    pthread_join(t, NULL);
    CHECK(rc == 0 && w.rc == FLC_ETIMEOUT && w.took < 5,
          "a 20 s wait woken from another store after %.2f s (wait %d, wake %d)", w.took, w.rc,
          rc);
    /* The woken connection is still good. */
    CHECK(flc_store_notify(w.s, "wk", 1, 3, "done", "t", 1) == 0 &&
              flc_store_wait(w.s, "wk", 1, 3, "done", 1000, NULL, 0) == 0,
          "the woken store goes on working (%s)", flc_store_errstr(w.s));
    flc_store_close(o);
    flc_store_close(w.s);
}

/* ---- 8. a master killed under idempotent operations ----------------------------------- */

typedef struct meta_loop {
    atomic_int stop;
    int ops, failed, after_kill;
    atomic_int killed;
    double worst_s;
    char err[256];
} meta_loop_t;

static void *meta_ops(void *p)
{
    meta_loop_t *l = p;
    flc_store_t *s = open_at(tb.seed, 0);
    for (uint32_t r = 1; !atomic_load(&l->stop); r++) {
        double t0 = flc_now_s();
        Flcache__RoundMeta m = FLCACHE__ROUND_META__INIT, *got = NULL;
        m.job = "fk";
        m.round = r;
        m.status = "closed";
        int rc = flc_store_put_round_meta(s, &m);
        if (rc == 0)
            rc = flc_store_get_round_meta(s, "fk", r, &got);
        if (rc == 0 && got->round != r)
            rc = -1;
        if (got)
            flcache__round_meta__free_unpacked(got, NULL);
        double d = flc_now_s() - t0;
        l->worst_s = d > l->worst_s ? d : l->worst_s;
        l->ops++;
        l->after_kill += atomic_load(&l->killed);
        if (rc != 0 && l->failed++ == 0)
            snprintf(l->err, sizeof l->err, "round %u: %s", r, flc_store_errstr(s));
        flc_sleep_ms(20);
    }
    flc_store_close(s);
    return NULL;
}

TEST(metadata_survives_a_master_kill)
{
    need_testbed();
    view_t v;
    view_open(&v);
    /* The master of the job's tag {fk/j}. */
    char key[FLC_KEY_MAX];
    flc_key_job_round(key, "fk", "meta", 1);
    const char *host = v.map.nodes[owner_of(&v, key)].host;
    int victim = 0;
    for (int k = 1; k <= tb.nodes; k++)
        if (strcmp(tb.addr[k], host) == 0)
            victim = k;
    CHECK(victim > 0, "the master of {fk} is n%d (%s)", victim, host);
    meta_loop_t l = {0};
    pthread_t t;
    pthread_create(&t, NULL, meta_ops, &l);
    flc_sleep_ms(1000);
    char out[4096];
    atomic_store(&l.killed, 1);
    int rc = flc_testbed_sh(&tb, out, sizeof out, "kill n%d", victim);
    flc_sleep_ms(9000); /* failover takes 2.5-5 s here */
    atomic_store(&l.stop, 1);
    pthread_join(t, NULL);
    printf("# %d put+get pairs, %d after the kill; the longest took %.2f s\n", l.ops,
           l.after_kill, l.worst_s);
    CHECK(rc == 0 && l.failed == 0 && l.after_kill > 10,
          "SIGKILL of n%d, the job's master: all %d metadata writes and reads succeed, %d after "
          "the kill, the longest %.2f s (the failover)%s%s",
          victim, l.ops, l.after_kill, l.worst_s, l.failed ? ": " : "", l.err);
    CHECK(flc_testbed_sh(&tb, out, sizeof out, "start n%d", victim) == 0 &&
              flc_testbed_sh(&tb, out, sizeof out, "wait 40") == 0,
          "n%d restarted, the cluster whole again", victim);
    view_close(&v);
}

/* ---- 9. whole-server calls: every master ---------------------------------------------- */

TEST(whole_server_calls_cover_every_master)
{
    need_testbed();
    view_t v;
    view_open(&v);
    const uint32_t S = 12;
    const uint64_t n = 12 * 100;
    float u[12 * 100];
    flc_t_fill(u, n, 9);
    flc_store_t *s = open_at(tb.seed, 0);
    flc_err_t e = {0};
    flc_rs_push_cfg_t c = {.job = "ws", .round = 1, .client = "p", .num_shards = S,
                           .model_size = n};
    CHECK(flc_rs_push(s, &c, u, &e) == 0, "12 shards pushed (%s)", e.msg);
    /* DBSIZE of each master on its own connection. */
    unsigned m[8];
    int nm = masters_of(&v, m);
    long long per_node = 0;
    for (int i = 0; i < nm; i++) {
        redisContext *ctx = NULL;
        if (flc_cluster_conn_get(v.cc, &v.map, m[i], &ctx, &e) == 0) {
            redisReply *r = redisCommand(ctx, "DBSIZE");
            per_node += r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1000000;
            if (r)
                freeReplyObject(r);
        }
    }
    redisReply *r = NULL;
    int rc = flc_store_commandf(s, &r, "DBSIZE");
    long long all = rc == 0 ? r->integer : -1;
    if (r)
        freeReplyObject(r);
    flc_store_stats_t st;
    int src = flc_store_stats(s, &st);
    CHECK(rc == 0 && src == 0 && all == per_node && st.keys == (uint64_t)per_node &&
              st.used_memory > 0,
          "DBSIZE and store stats sum the %d masters: %lld and %llu keys, %lld counted node by "
          "node",
          nm, all, (unsigned long long)st.keys, per_node);
    rc = flc_store_commandf(s, &r, "KEYS fl:{ws/s*}:c:p:u:1");
    size_t nk = rc == 0 ? r->elements : 0;
    if (r)
        freeReplyObject(r);
    CHECK(nk == S, "KEYS finds the 12 shards on all masters (%zu)", nk);
    rc = flc_store_commandf(s, &r, "FLUSHALL");
    if (r)
        freeReplyObject(r);
    int rc2 = flc_store_stats(s, &st);
    CHECK(rc == 0 && rc2 == 0 && st.keys == 0, "FLUSHALL empties every master (%llu keys left)",
          (unsigned long long)st.keys);
    flc_store_close(s);
    view_close(&v);
}

/* ---- 9. which node holds what ------------------------------------------------- */

TEST(nodes_tracker_and_answers_name_the_owners)
{
    need_testbed();
    view_t v;
    view_open(&v);
    flc_store_t *s = open_at(tb.seed, 0);
    /* The node list against the test's own view of the map. */
    flc_store_node_t *nd = NULL;
    size_t nn = 0;
    int rc = flc_store_nodes(s, &nd, &nn);
    size_t nmaster = 0, nrep = 0, replicas_ok = 0, ids_ok = 0, up = 0;
    uint32_t slots = 0;
    for (size_t i = 0; rc == 0 && i < nn; i++) {
        const flc_store_node_t *d = &nd[i];
        int master = strcmp(d->role, "master") == 0;
        nmaster += master;
        nrep += strcmp(d->role, "replica") == 0;
        slots += master ? d->nslots : 0;
        up += d->reachable;
        int host_port = -1;
        const char *colon = strrchr(d->addr, ':');
        char host[256] = "";
        if (colon) {
            snprintf(host, sizeof host, "%.*s", (int)(colon - d->addr), d->addr);
            host_port = atoi(colon + 1);
        }
        int at = flc_cluster_map_find(&v.map, host, host_port);
        /* A master is in the test's map (CLUSTER SLOTS); a replica may not
         * be yet (left out there until its first sync). */
        int same_id = at >= 0 && strcmp(v.map.nodes[at].id, d->id) == 0;
        if (master)
            ids_ok += strlen(d->id) == 40 && same_id &&
                      (uint32_t)v.map.nodes[at].nslots == d->nslots;
        else
            ids_ok += strlen(d->id) == 40 && (at < 0 || same_id);
        for (size_t k = 0; !master && k < nn; k++)
            replicas_ok += strcmp(nd[k].role, "master") == 0 &&
                           strcmp(nd[k].id, d->master_id) == 0 &&
                           strcmp(nd[k].addr, d->master_addr) == 0;
    }
    CHECK(rc == 0 && nn == 6 && nmaster == 3 && nrep == 3,
          "store nodes: %zu listed (%zu masters, %zu replicas) of the testbed's 3 + 3", nn,
          nmaster, nrep);
    CHECK(slots == 16384 && ids_ok == nn && replicas_ok == nrep && up == nn,
          "every node's id (and a master's slot count) is the map's, masters' slots sum to %u "
          "of 16384, %zu of %zu "
          "replicas name their master, %zu of %zu answered",
          slots, replicas_ok, nrep, up, nn);
    free(nd);

    /* A round whose shards span the 3 masters: each tracker entry names the
     * owner of its shard's slot. */
    const uint32_t W = 2, S = 12;
    const uint64_t n = 12 * 50;
    float **u = alloc_rows(W, n), **m = alloc_rows(W, n);
    uint64_t samples[2];
    make_updates(u, samples, W, n, 5);
    round_spec_t sp = {.url = tb.seed, .job = "nodes", .round = 1, .W = W, .S = S, .n = n,
                       .u = u, .samples = samples};
    CHECK(run_round(&sp, m) == 0, "round 1 of job nodes: W=2 S=12 over the cluster");
    flc_track_where_t *w = NULL;
    size_t nw = 0;
    rc = flc_track_round(s, "nodes", 1, &w, &nw);
    int right = 0;
    unsigned owners[16] = {0}, nowners = 0;
    for (size_t i = 0; rc == 0 && i < nw; i++) {
        char key[FLC_KEY_MAX], tag[FLC_TAG_MAX];
        flc_key_shard_tag(tag, "nodes", w[i].shard, S);
        flc_key_shard(key, tag, 1, "agg");
        unsigned o = owner_of(&v, key);
        char addr[300];
        snprintf(addr, sizeof addr, "%s:%d", v.map.nodes[o].host, v.map.nodes[o].port);
        int ok = o < v.map.nnodes && strcmp(w[i].node_id, v.map.nodes[o].id) == 0 &&
                 strcmp(w[i].addr, addr) == 0 && node_has(&v, o, key);
        right += ok;
        if (!ok)
            printf("# shard %u: tracker %s %s, owner %s %s\n", w[i].shard, w[i].node_id,
                   w[i].addr, v.map.nodes[o].id, addr);
        unsigned k = 0;
        while (k < nowners && owners[k] != o)
            k++;
        if (k == nowners && nowners < 16)
            owners[nowners++] = o;
    }
    CHECK(rc == 0 && nw == S && right == (int)S && nowners == 3,
          "tracker: %d of %zu shards name the node that owns (and holds) their slot, %u "
          "masters among them",
          right, nw, nowners);
    free(w);

    /* The answer of a vector query names the node of every shard. */
    flc_err_t e = {0};
    flc_query_req_t q = {.kind = FLC_Q_NORMS, .job = "nodes", .round_from = 1, .round_to = 1,
                         .url = tb.seed};
    Flcache__QueryAnswer *a = NULL;
    rc = flc_query_run(s, &q, &a, &e);
    const char *note = NULL;
    for (size_t i = 0; a && i < a->n_notes; i++)
        if (strcmp(a->notes[i]->key, "nodes") == 0)
            note = a->notes[i]->value;
    int named = 0, each = 0;
    unsigned mm[8];
    int nm = masters_of(&v, mm);
    for (int i = 0; note && i < nm; i++) {
        char addr[300];
        snprintf(addr, sizeof addr, "%s:%d", v.map.nodes[mm[i]].host, v.map.nodes[mm[i]].port);
        named += strstr(note, addr) != NULL;
    }
    for (uint32_t k = 0; note && k < S; k++) {
        char key[FLC_KEY_MAX], want[340], tag[FLC_TAG_MAX];
        flc_key_shard_tag(tag, "nodes", k, S);
        flc_key_shard(key, tag, 1, "agg");
        unsigned o = owner_of(&v, key);
        snprintf(want, sizeof want, "shard %u: %s:%d", k, v.map.nodes[o].host,
                 v.map.nodes[o].port);
        const char *p = strstr(note, want);
        each += p && (p[strlen(want)] == ',' || p[strlen(want)] == '\0');
    }
    CHECK(rc == 0 && named == 3 && each == (int)S,
          "norms: the nodes note names %d distinct masters and the owner of %d of 12 shards "
          "(%.200s)",
          named, each, note ? note : e.msg);
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);

    /* What users see: the CLI in the client namespace. */
    static char out[65536];
    int crc = cli(tb.client_ns, tb.seed, "store stats --json", out, sizeof out);
    cJSON *j = crc == 0 ? cJSON_Parse(out) : NULL;
    const cJSON *jn = cJSON_GetObjectItem(j, "nodes");
    double jslots = 0;
    int jm = 0;
    for (int i = 0; i < cJSON_GetArraySize(jn); i++) {
        const cJSON *o = cJSON_GetArrayItem(jn, i);
        const char *role = cJSON_GetStringValue(cJSON_GetObjectItem(o, "role"));
        if (role && strcmp(role, "master") == 0) {
            jm++;
            jslots += cJSON_GetNumberValue(cJSON_GetObjectItem(o, "slots"));
        }
    }
    CHECK(cJSON_GetArraySize(jn) == 6 && jm == 3 && jslots == 16384,
          "store stats --json: %d nodes, %d masters with %.0f slots (exit %d)",
          cJSON_GetArraySize(jn), jm, jslots, crc);
    cJSON_Delete(j);
    crc = cli(tb.client_ns, tb.seed, "store stats", out, sizeof out);
    int rows = 0;
    for (const char *p = out; (p = strstr(p, "replica of ")) != NULL; p++)
        rows++;
    CHECK(crc == 0 && strstr(out, "nodes     6 (3 masters, 3 replicas)") && rows == 3,
          "store stats: the node table, 3 replicas each of a master (exit %d)%s%.600s", crc,
          crc ? ": " : "\n", out);
    crc = cli(tb.client_ns, tb.seed, "query norms --job nodes --round 1", out, sizeof out);
    CHECK(crc == 0 && strstr(out, "note: nodes: shard 0: "),
          "flcache query norms prints which node served each shard (exit %d)", crc);

    free_rows(u, W);
    free_rows(m, W);
    flc_store_close(s);
    view_close(&v);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(round_trip_on_each_master),
                 TEST_ENTRY(batched_push_spans_nodes),
                 TEST_ENTRY(reduce_scatter_round_across_nodes),
                 TEST_ENTRY(queries_across_nodes_match_one_server),
                 TEST_ENTRY(cli_train_and_simulate_as_on_one_server),
                 TEST_ENTRY(every_rule_and_query_as_on_one_server),
                 TEST_ENTRY(url_option_forces_the_mode),
                 TEST_ENTRY(wake_reaches_a_store_blocked_on_any_node),
                 TEST_ENTRY(whole_server_calls_cover_every_master),
                 TEST_ENTRY(nodes_tracker_and_answers_name_the_owners),
                 TEST_ENTRY(metadata_survives_a_master_kill),
                 TEST_ENTRY(rounds_complete_during_reshard))
