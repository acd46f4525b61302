/* Placement of work next to cache nodes (issue 12, point 4), on a testbed of
 * 3 masters (scripts/testbed.sh):
 * - a store opened in node n1's namespace with local_node = n1 reaches n1
 *   (the seed URL's node too) over n1's unix socket and n2, n3 over TCP
 *   from n1's address, as the nodes' CLIENT LIST shows, and round-trips
 *   shards owned by each master;
 * - a simulate (in-process clients, synthetic model, S = 6; fedadam and
 *   multi-krum) with its
 *   mergers placed by the FLCACHE_NODES map (cli/place.h) leaves the same
 *   global models and merged shards, bit for bit, as the same run without
 *   placement, and counts the same bytes; after every round, each node's
 *   CLIENT LIST shows one unix-socket merger connection per shard it owns
 *   that round, and no merger connection from the client namespace (the
 *   unplaced run, checked the same way, shows the opposite: the check fails
 *   for mergers left in the client namespace);
 * - a map without a node that owns a shard stops the run with an error
 *   naming the node; `flcache simulate` says so before the first round, and
 *   a map that does not parse is a clear error (exit 1 both);
 * - on one server (a fixture of its own, no testbed needed), only a store
 *   told local_node = the URL's address uses the socket; without it, TCP.
 *
 * The mergers' connections are recognised by the name every store gives
 * its connections when asked for its id (flc-w-<token>, store_cluster_all.c),
 * which only mergers (and the first case's store) ask for. Needs root;
 * skips without it unless CI=true, as the testbed fixture does. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cluster_conn.h"
#include "cache/cluster_map.h"
#include "cache/store_ops.h"
#include "cache/store_raw.h"
#include "cache/url.h"
#include "cli/place.h"
#include "clients/sim.h"
#include "tests/harness.h"

static flc_testbed_t tb;
static char skip_why[160];

static void setup(void)
{
    if (!flc_testbed_usable(skip_why, sizeof skip_why))
        return;
    flc_testbed_up(&tb, 3, 0, "10gbit");
}

static void teardown(void)
{
    flc_testbed_down(&tb);
}

static void need_testbed(void)
{
    flc_testbed_case(&tb, skip_why);
}

/* The testbed's FLCACHE_NODES, as `testbed.sh env` prints it. */
static void node_map(char *out, size_t cap)
{
    static char env[16384];
    CHECK(flc_testbed_sh(&tb, env, sizeof env, "env") == 0, "testbed.sh env runs");
    const char *p = strstr(env, "FLCACHE_NODES='");
    CHECK(p != NULL, "testbed.sh env prints FLCACHE_NODES");
    p += strlen("FLCACHE_NODES='");
    snprintf(out, cap, "%.*s", (int)strcspn(p, "'"), p);
}

/* "host:port" of node k (1..3), the port the seed URL names. */
static void node_addr(int k, char *out, size_t cap)
{
    const char *port = strrchr(tb.seed, ':');
    snprintf(out, cap, "%s:%s", tb.addr[k], port ? port + 1 : "6379");
}

/* Which testbed node (1..3) addr ("host:port") is; 0 when none. */
static int node_of(const char *addr)
{
    char a[80];
    for (int k = 1; k <= tb.masters; k++) {
        node_addr(k, a, sizeof a);
        if (strcmp(a, addr) == 0)
            return k;
    }
    return 0;
}

/* The test's own connections to every node, made in the client namespace. */
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

/* One CLIENT LIST line of a connection named flc-w-*. */
typedef struct named_conn {
    long long token;
    char ip[64]; /* the peer's address without the port; "" over a unix socket */
    int unix_;   /* flags has U and addr is a path */
} named_conn_t;

/* The named (flc-w-*) normal connections of node k, up to max. -1 when the
 * node cannot be asked. */
static int named_conns(view_t *v, int k, named_conn_t *out, int max)
{
    char host[64];
    snprintf(host, sizeof host, "%s", tb.addr[k]);
    const char *port = strrchr(tb.seed, ':');
    int i = flc_cluster_map_find(&v->map, host, port ? atoi(port + 1) : 6379);
    redisContext *c = NULL;
    flc_err_t e = {0};
    if (i < 0 || flc_cluster_conn_get(v->cc, &v->map, (unsigned)i, &c, &e) != 0)
        return -1;
    redisReply *r = redisCommand(c, "CLIENT LIST TYPE normal");
    if (r == NULL || r->type != REDIS_REPLY_STRING) {
        if (r)
            freeReplyObject(r);
        return -1;
    }
    int n = 0;
    for (const char *line = r->str; line && *line && n < max;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char buf[1024];
        snprintf(buf, sizeof buf, "%.*s", (int)len, line);
        const char *name = strstr(buf, " name=flc-w-");
        const char *addr = strstr(buf, " addr=");
        const char *flags = strstr(buf, " flags=");
        if (name && addr && flags) {
            named_conn_t *x = &out[n++];
            x->token = atoll(name + strlen(" name=flc-w-"));
            addr += strlen(" addr=");
            size_t al = strcspn(addr, " ");
            x->unix_ = addr[0] == '/' && strchr(flags + 7, 'U') != NULL &&
                       strcspn(flags + 7, " ") > strcspn(flags + 7, "U");
            x->ip[0] = '\0';
            if (addr[0] != '/') {
                const char *colon = memchr(addr, ':', al);
                snprintf(x->ip, sizeof x->ip, "%.*s", (int)(colon ? colon - addr : (long)al),
                         addr);
            }
        }
        line = end ? end + 1 : NULL;
    }
    freeReplyObject(r);
    return n;
}

/* ---- 1. one placed store ------------------------------------------------------------ */

typedef struct placed {
    flc_place_t place;
    const char *node;
    flc_store_t *s;
    long long id;
    flc_err_t e;
} placed_t;

/* On its own thread (the runner's thread stays in the client namespace):
 * enters the node's namespace, opens the store there, names its
 * connections. The store is used afterwards from the main thread; its
 * sockets stay where they were made. */
static void *open_placed(void *p)
{
    placed_t *x = p;
    flc_store_opts_t o = {0};
    if (x->place.enter(x->place.user, x->node, &o, &x->e) == 0 &&
        (x->s = flc_store_open(tb.seed, &o, &x->e)) != NULL &&
        flc_store_conn_id(x->s, &x->id) != 0)
        snprintf(x->e.msg, sizeof x->e.msg, "conn id: %s", flc_store_errstr(x->s));
    return NULL;
}

TEST(store_reaches_its_node_over_the_unix_socket)
{
    need_testbed();
    char map[4096], n1[80];
    node_map(map, sizeof map);
    node_addr(1, n1, sizeof n1);
    flc_cli_nodes_t *nodes = NULL;
    flc_err_t e = {0};
    CHECK(flc_cli_nodes_parse(map, &nodes, &e) == 0 && flc_cli_nodes_count(nodes) == 3,
          "FLCACHE_NODES of the testbed parses: 3 nodes (%s)", e.msg);
    CHECK(strstr(tb.seed, n1) != NULL, "the seed URL is node n1 (%s)", n1);
    view_t v;
    view_open(&v);

    placed_t x = {.place = flc_cli_place(nodes), .node = n1, .id = -1};
    pthread_t t;
    pthread_create(&t, NULL, open_placed, &x);
    pthread_join(t, NULL);
    CHECK(x.s != NULL && x.id >= 0, "a store opened in n1's namespace with local_node %s (%s)",
          n1, x.e.msg);

    /* Round trips of shards (over one chunk) owned by each master. */
    enum { P = 70000 };
    float *in = malloc(P * sizeof *in), *back = malloc(P * sizeof *back);
    int covered[4] = {0}, same = 1, tried = 0;
    for (uint32_t k = 0; k < 60 && !(covered[1] && covered[2] && covered[3]); k++, tried++) {
        for (size_t i = 0; i < P; i++)
            in[i] = (float)k * 0.5f + (float)i * 1e-3f;
        flc_shard_t sh = {.round = 1, .shard = k, .num_shards = 60, .offset = 0, .count = P,
                          .model_size = P, .values = in};
        snprintf(sh.job, sizeof sh.job, "pl-rt");
        flc_store_node_t nd;
        flc_shard_t out = {0};
        int ok = flc_store_put_merged(x.s, &sh) == 0 &&
                 flc_store_get_merged(x.s, "pl-rt", 1, k, &out, back, P) == 0 && out.count == P &&
                 memcmp(back, in, P * sizeof *in) == 0 &&
                 flc_store_shard_node(x.s, "pl-rt", 1, k, &nd) == 0;
        flc_shard_release(&out);
        if (!ok)
            printf("#   shard %u: %s\n", k, flc_store_errstr(x.s));
        same &= ok;
        if (ok)
            covered[node_of(nd.addr)] = 1;
    }
    EXPECT(same && covered[1] && covered[2] && covered[3],
           "%d shards of 280 KB written and read back bit-exact through the placed store, "
           "owned by n1 %d, n2 %d, n3 %d", tried, covered[1], covered[2], covered[3]);

    /* Where its connections come from, as each node sees them. */
    for (int k = 1; k <= 3; k++) {
        named_conn_t c[32];
        int n = named_conns(&v, k, c, 32), mine = 0, unix_ = 0, from_n1 = 0;
        for (int i = 0; i < n; i++)
            if (c[i].token == x.id) {
                mine++;
                unix_ += c[i].unix_;
                from_n1 += strcmp(c[i].ip, tb.addr[1]) == 0;
            }
        if (k == 1)
            EXPECT(mine == 1 && unix_ == 1,
                   "n1 (its own node, and the seed URL's) sees the store once, over its unix "
                   "socket (addr a path, flags U): %d connection(s), %d unix", mine, unix_);
        else
            EXPECT(mine == 1 && unix_ == 0 && from_n1 == 1,
                   "n%d sees the store once, over TCP from n1's address %s: %d connection(s), "
                   "%d unix, %d from n1", k, tb.addr[1], mine, unix_, from_n1);
    }
    free(in);
    free(back);
    flc_store_close(x.s);
    view_close(&v);
    flc_cli_nodes_free(nodes);
}

/* ---- 2. a simulate with placed mergers ------------------------------------------------ */

typedef struct watch {
    view_t *v;
    flc_store_t *s; /* the test's store, for the shards' owners */
    const char *job;
    uint32_t S;
    int rounds, placed_ok, unplaced_ok;
    char why[400];
} watch_t;

/* After every round (the mergers' stores are open): the merger connections
 * of each node against the owners of the round's shards. */
static void watch_round(const flc_sim_round_t *r, int rounds, double elapsed, void *user)
{
    (void)rounds, (void)elapsed;
    watch_t *w = user;
    int owned[4] = {0};
    for (uint32_t s = 0; s < w->S; s++) {
        flc_store_node_t nd;
        if (flc_store_shard_node(w->s, w->job, r->round, s, &nd) == 0)
            owned[node_of(nd.addr)]++;
    }
    named_conn_t c[3][64];
    int n[3];
    for (int k = 1; k <= 3; k++)
        n[k - 1] = named_conns(w->v, k, c[k - 1], 64);
    /* placed: on each node one unix connection per shard it owns, and every
     * TCP connection of a merger from the node its unix connection is on */
    int placed = 1, unplaced = 1, total = 0, from_client = 0;
    for (int k = 1; k <= 3; k++) {
        int unix_ = 0;
        placed &= n[k - 1] >= 0;
        for (int i = 0; i < n[k - 1]; i++) {
            named_conn_t *x = &c[k - 1][i];
            total++;
            unix_ += x->unix_;
            from_client += !x->unix_ && strcmp(x->ip, tb.addr[0]) == 0;
            unplaced &= !x->unix_ && strcmp(x->ip, tb.addr[0]) == 0;
            if (x->unix_)
                continue;
            int home = 0; /* the node this merger's unix connection is on */
            for (int j = 1; j <= 3; j++)
                for (int q = 0; q < n[j - 1]; q++)
                    if (c[j - 1][q].token == x->token && c[j - 1][q].unix_)
                        home = j;
            placed &= home != 0 && strcmp(x->ip, tb.addr[home]) == 0;
        }
        placed &= unix_ == owned[k];
        snprintf(w->why + strlen(w->why), sizeof w->why - strlen(w->why),
                 "%sr%u n%d: %d unix / %d shards", strlen(w->why) ? ", " : "", r->round, k,
                 unix_, owned[k]);
    }
    placed &= from_client == 0 && total == (int)w->S * 3;
    unplaced &= total == (int)w->S * 3;
    snprintf(w->why + strlen(w->why), sizeof w->why - strlen(w->why),
             " (%d merger connections, %d from the client)", total, from_client);
    w->rounds++;
    w->placed_ok += placed;
    w->unplaced_ok += unplaced;
}

/* The stored global models (rounds 0..R of J/g) and merged shards of jobs
 * a and b, byte for byte; *n counts what was compared. */
static int models_match(flc_store_t *s, const char *a, const char *b, uint32_t R, uint32_t S,
                        int *n, char *why, size_t cap)
{
    *n = 0;
    for (uint32_t r = 0; r <= R; r++)
        for (uint32_t k = 0; k < (r ? S : 0) + 1; k++) {
            int global = r == 0 || k == S;
            char ja[80], jb[80];
            snprintf(ja, sizeof ja, "%s%s", a, global ? "/g" : "");
            snprintf(jb, sizeof jb, "%s%s", b, global ? "/g" : "");
            uint32_t sh = global ? 0 : k;
            flc_shard_t x = {0}, y = {0};
            int rx = flc_store_get_merged(s, ja, r, sh, &x, NULL, 0);
            int ry = flc_store_get_merged(s, jb, r, sh, &y, NULL, 0);
            int ok = rx == 0 && ry == 0 && x.count == y.count && x.count > 0 &&
                     x.offset == y.offset && memcmp(x.values, y.values, x.count * 4) == 0;
            if (!ok)
                snprintf(why, cap, "round %u shard %u: read %d / %d, %llu / %llu floats", r, sh,
                         rx, ry, (unsigned long long)x.count, (unsigned long long)y.count);
            flc_shard_release(&x);
            flc_shard_release(&y);
            if (!ok)
                return 0;
            ++*n;
        }
    return 1;
}

static void sim_cfg(flc_sim_cfg_t *c, const char *job, flc_sim_inproc_t *threads)
{
    flc_sim_cfg_init(c);
    c->job = job;
    c->redis = tb.seed;
    c->clients = 12;
    c->per_round = 6;
    c->rounds = 3;
    c->strategy = FLC_SIM_FEDADAM;
    c->seed = 7;
    c->num_shards = 6;
    c->synthetic_params = 60000;
    c->invoke_user = threads;
}

/* One strategy: the same run unplaced (job <tag>-no) and placed (<tag>-on),
 * compared. */
static void placed_vs_unplaced(view_t *v, flc_store_t *s, flc_cli_nodes_t *nodes, int strategy,
                               const char *tag)
{
    flc_sim_inproc_t threads = {.threads = 3};
    char jobs[2][32];
    snprintf(jobs[0], sizeof jobs[0], "%s-no", tag);
    snprintf(jobs[1], sizeof jobs[1], "%s-on", tag);
    const char *sname = flc_sim_strategy_name(strategy);
    watch_t w[2];
    flc_sim_result_t res[2];
    memset(res, 0, sizeof res);
    int rc[2];
    char err[2][256];
    for (int i = 0; i < 2; i++) {
        flc_err_t e = {0};
        flc_sim_cfg_t c;
        sim_cfg(&c, jobs[i], &threads);
        c.strategy = strategy;
        if (i == 1)
            c.place = flc_cli_place(nodes);
        w[i] = (watch_t){.v = v, .s = s, .job = jobs[i], .S = c.num_shards};
        flc_sim_clear(c.redis, NULL, c.job, &e);
        rc[i] = flc_sim_run(&c, watch_round, &w[i], &res[i], &e);
        snprintf(err[i], sizeof err[i], "%s", rc[i] ? flc_err_msg(&e) : "");
    }
    CHECK(rc[0] == 0 && rc[1] == 0, "%s: both runs (N=12 K=6 R=3 S=6, 60000 floats) "
          "finish: %s / %s", sname, err[0][0] ? err[0] : "ok", err[1][0] ? err[1] : "ok");

    EXPECT(w[1].rounds == 3 && w[1].placed_ok == 3,
           "%s placed: after each of the %d rounds, every node has one unix-socket merger "
           "connection per shard it owns, and every merger's TCP connections come from its "
           "node's address, none from the client namespace: %d of 3 rounds (%s)",
           sname, w[1].rounds, w[1].placed_ok, w[1].why);
    EXPECT(w[0].rounds == 3 && w[0].unplaced_ok == 3 && w[0].placed_ok == 0,
           "%s unplaced (the check's control): every merger connection comes from the client "
           "namespace over TCP in %d of 3 rounds, and the placement check fails in all of "
           "them (%d passed) (%s)", sname, w[0].unplaced_ok, w[0].placed_ok, w[0].why);

    char why[300] = "";
    int n = 0;
    int same = models_match(s, jobs[0], jobs[1], 3, 6, &n, why, sizeof why);
    EXPECT(same && n == 4 + 3 * 6,
           "%s: the placed run's %d stored models (J/g rounds 0-3, merged shards) are the "
           "unplaced run's, bit for bit%s%s", sname, n, why[0] ? ": " : "", why);
    int merged = 1, bytes = 1;
    for (size_t r = 0; r < res[0].nrounds && r < res[1].nrounds; r++) {
        const flc_sim_round_t *a = &res[0].rounds[r], *b = &res[1].rounds[r];
        merged &= a->merged && b->merged && a->participants == b->participants;
        double d = (double)a->bytes - (double)b->bytes;
        /* the same values move (job names of one length); metadata with
         * timings may differ by a few bytes (varints), a merger store left
         * uncounted by ~1.7 MB */
        bytes &= a->bytes > 6u * 60000u * 4u && (d < 0 ? -d : d) <= 0.001 * (double)a->bytes;
        printf("#   %s round %zu: %llu / %llu bytes\n", sname, r + 1,
               (unsigned long long)a->bytes, (unsigned long long)b->bytes);
    }
    EXPECT(res[0].nrounds == 3 && res[1].nrounds == 3 && merged,
           "%s: every round of both runs merged the same participants", sname);
    EXPECT(bytes, "%s: the bytes each round moved through the cache (driver, mergers, "
                  "clients) are counted alike, within 0.1%%, placed or not", sname);
    flc_sim_result_free(&res[0]);
    flc_sim_result_free(&res[1]);
}

TEST(placed_mergers_match_the_unplaced_run)
{
    need_testbed();
    char map[4096];
    node_map(map, sizeof map);
    flc_cli_nodes_t *nodes = NULL;
    flc_err_t e = {0};
    CHECK(flc_cli_nodes_parse(map, &nodes, &e) == 0, "FLCACHE_NODES parses (%s)", e.msg);
    view_t v;
    view_open(&v);
    flc_store_t *s = flc_store_open(tb.seed, NULL, &e);
    CHECK(s != NULL, "the test's store (%s)", e.msg);
    /* fedadam: server state kept by each merger across its reopened stores;
     * multi-krum: mergers exchange distance matrices through the other
     * shards' nodes, and are not woken early */
    placed_vs_unplaced(&v, s, nodes, FLC_SIM_FEDADAM, "pla");
    placed_vs_unplaced(&v, s, nodes, FLC_SIM_MULTI_KRUM, "plk");
    flc_store_close(s);
    view_close(&v);
    flc_cli_nodes_free(nodes);
}

/* ---- 3. a node missing from the map --------------------------------------------------- */

/* FLCACHE_NODES without the entry of node k. */
static void map_without(const char *map, int k, char *out, size_t cap)
{
    char a[80];
    node_addr(k, a, sizeof a);
    out[0] = '\0';
    for (const char *p = map; *p;) {
        size_t len = strcspn(p, ",");
        if (!(strncmp(p, a, strlen(a)) == 0 && p[strlen(a)] == '='))
            snprintf(out + strlen(out), cap - strlen(out), "%s%.*s", out[0] ? "," : "",
                     (int)len, p);
        p += len + (p[len] == ',');
    }
}

static int cli(const char *nodes, const char *args, char *out, size_t cap)
{
    char cmd[6000];
    snprintf(cmd, sizeof cmd,
             "ip netns exec %s env FLCACHE_REDIS='%s' FLCACHE_NODES='%s' %s/flcache %s 2>&1",
             tb.client_ns, tb.seed, nodes, flc_t_build_dir(), args);
    return flc_t_run(cmd, out, cap);
}

TEST(a_node_missing_from_the_map_is_named)
{
    need_testbed();
    char map[4096], partial[4096], a[80];
    node_map(map, sizeof map);
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(tb.seed, NULL, &e);
    CHECK(s != NULL, "the test's store (%s)", e.msg);
    /* the node owning shard 0 of round 1 leaves the map (the shard tags
     * follow from the job's shard count, which the run will use) */
    flc_sim_inproc_t threads = {.threads = 2};
    flc_sim_cfg_t c;
    sim_cfg(&c, "pl-miss", &threads);
    flc_sim_clear(c.redis, NULL, c.job, &e);
    CHECK(flc_store_job_shards(s, "pl-miss", c.num_shards) == 0, "S of pl-miss (%s)",
          flc_store_errstr(s));
    flc_store_node_t nd;
    CHECK(flc_store_shard_node(s, "pl-miss", 1, 0, &nd) == 0 && node_of(nd.addr) > 0,
          "shard 0 of round 1 of pl-miss is on a testbed node (%s)", nd.addr);
    int k = node_of(nd.addr);
    map_without(map, k, partial, sizeof partial);
    node_addr(k, a, sizeof a);
    flc_cli_nodes_t *nodes = NULL;
    CHECK(flc_cli_nodes_parse(partial, &nodes, &e) == 0 && flc_cli_nodes_count(nodes) == 2,
          "a map of the other 2 nodes (%s)", e.msg);

    c.rounds = 1;
    c.place = flc_cli_place(nodes);
    flc_sim_result_t res;
    flc_sim_clear(c.redis, NULL, c.job, &e);
    int rc = flc_sim_run(&c, NULL, NULL, &res, &e);
    EXPECT(rc != 0 && strstr(e.msg, a) && strstr(e.msg, "FLCACHE_NODES") &&
               strstr(e.msg, "shard 0"),
           "the run stops with an error naming node n%d (%s) and the shard: %s", k, a,
           rc ? e.msg : "it ran");
    flc_sim_result_free(&res);

    /* the command checks the map before the first round */
    static char out[8192];
    char missing3[4096], want[160];
    map_without(map, 3, missing3, sizeof missing3);
    node_addr(3, want, sizeof want);
    char want_msg[200];
    snprintf(want_msg, sizeof want_msg, "node %s", want);
    int crc = cli(missing3, "simulate --rounds 1 --clients 4 --per-round 2 --inproc --quiet",
                  out, sizeof out);
    EXPECT(crc == 1 && strstr(out, want_msg) && strstr(out, "not in FLCACHE_NODES") &&
               !strstr(out, "round 1"),
           "flcache simulate with n3 missing from FLCACHE_NODES: exit %d, before any round, "
           "naming it: %.300s", crc, out);
    crc = cli("10.213.0.11:6379", "simulate --rounds 1 --clients 4 --per-round 2 --inproc",
              out, sizeof out);
    EXPECT(crc == 1 && strstr(out, "FLCACHE_NODES entry 1"),
           "an FLCACHE_NODES that does not parse: exit %d, naming the entry: %.300s", crc, out);
    flc_store_close(s);
    flc_cli_nodes_free(nodes);
}

/* ---- 4. one server ----------------------------------------------------------------- */

/* 1 when the store's connection is over a unix socket (CLIENT INFO flags). */
static int over_unix(flc_store_t *s)
{
    redisReply *r = NULL;
    if (flc_store_commandf(s, &r, "CLIENT INFO") != 0)
        return -1;
    const char *f = r->type == REDIS_REPLY_STRING ? strstr(r->str, " flags=") : NULL;
    int u = f && strcspn(f + 7, " ") > strcspn(f + 7, "U");
    freeReplyObject(r);
    return u;
}

TEST(one_server_takes_the_socket_only_when_told)
{
    flc_fixture_t fx;
    flc_fixture_start(&fx, 0);
    const char *port = strrchr(fx.tcp_url, ':');
    char local[64], sock[256];
    snprintf(local, sizeof local, "127.0.0.1:%s", port ? port + 1 : "0");
    snprintf(sock, sizeof sock, "%s", fx.unix_url + strlen("unix://"));
    flc_err_t e = {0};
    flc_store_t *plain = flc_store_open(fx.tcp_url, NULL, &e);
    flc_store_opts_t o = {.local_node = local, .local_sock = sock};
    flc_store_t *near = flc_store_open(fx.tcp_url, &o, &e);
    flc_store_opts_t other = {.local_node = "127.0.0.1:1", .local_sock = sock};
    flc_store_t *far = flc_store_open(fx.tcp_url, &other, &e);
    CHECK(plain && near && far, "three stores on one server (%s)", e.msg);
    EXPECT(over_unix(plain) == 0, "without local_node the store connects over TCP, as before");
    EXPECT(over_unix(near) == 1 && flc_store_ping(near) == 0,
           "with local_node = the URL's %s it connects over the server's socket", local);
    EXPECT(over_unix(far) == 0, "with local_node naming another server: TCP");
    flc_store_close(plain);
    flc_store_close(near);
    flc_store_close(far);
    flc_fixture_stop(&fx);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(store_reaches_its_node_over_the_unix_socket),
                 TEST_ENTRY(placed_mergers_match_the_unplaced_run),
                 TEST_ENTRY(a_node_missing_from_the_map_is_named),
                 TEST_ENTRY(one_server_takes_the_socket_only_when_told))
