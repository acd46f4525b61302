/* cache/cluster_map and cache/cluster_conn against a real Redis Cluster: the
 * testbed of scripts/testbed.sh (3 masters, 1 replica each, a password, in
 * network namespaces). The map from CLUSTER SLOTS covers every slot; every
 * slot's owner serves its keys without a redirect; after slots move the old
 * map gets MOVED and one patch routes right; ASK during a hand-made migration
 * is followed with ASKING; after a master is killed a refresh shows its
 * replica as the owner; cluster mode is told apart from a plain server.
 *
 * Each case runs in its own process, which joins the testbed's client
 * namespace (the node addresses exist only there). Needs root; skips
 * without it unless CI=true, as the testbed fixture does. The case that
 * kills a master runs last and puts the node back. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "cache/cluster_conn.h"
#include "cache/cluster_map.h"
#include "cache/slot.h"
#include "cache/url.h"
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

/* Skips without a testbed; otherwise moves this case's process into the
 * client namespace, where the node addresses are. */
static void need_testbed(void)
{
    flc_testbed_case(&tb, skip_why);
}

/* A cluster client's two halves, opened on the testbed's seed. */
typedef struct client {
    flc_cluster_map_t map;
    flc_cluster_conn_t *cc;
    int first_replicas; /* replicas in the map bootstrap fetched */
    double waited_s;    /* until CLUSTER SLOTS listed all of them */
} client_t;

static double wait_replicas(client_t *cl, int want, double max_s);

static void client_open(client_t *cl)
{
    flc_url_t u;
    flc_err_t e = {0};
    CHECK(flc_url_parse(tb.seed, &u, &e) == 0, "the seed URL parses: %s", e.msg);
    flc_cluster_conn_opts_t o = {.io_timeout_ms = 5000, .connect_timeout_ms = 2000};
    cl->cc = flc_cluster_conn_new(&u, &o, &e);
    CHECK(cl->cc != NULL, "a connection table: %s", e.msg);
    flc_cluster_map_init(&cl->map);
    int is_cluster = -1;
    int rc = flc_cluster_conn_bootstrap(cl->cc, &cl->map, &is_cluster, &e);
    CHECK(rc == 0 && is_cluster == 1, "bootstrap from the seed: a cluster, map fetched (%s)",
          rc ? e.msg : "ok");
    cl->first_replicas = 0;
    for (size_t i = 0; i < cl->map.nnodes; i++)
        cl->first_replicas += cl->map.nodes[i].role == FLC_CLUSTER_REPLICA;
    cl->waited_s = wait_replicas(cl, tb.replicas * tb.masters, 20);
    if (cl->waited_s < 0)
        flc_t_fatal("CLUSTER SLOTS did not list %d replicas within 20 s", tb.replicas * tb.masters);
}

static int count_replicas(const flc_cluster_map_t *m)
{
    int n = 0;
    for (size_t i = 0; i < m->nnodes; i++)
        n += m->nodes[i].role == FLC_CLUSTER_REPLICA;
    return n;
}

/* CLUSTER SLOTS leaves out a replica whose replication offset, as the
 * cluster bus last reported it, is 0: a replica of a fresh cluster with no
 * writes yet (seen here for a few seconds after `testbed.sh up`). Refreshes
 * until want replicas are listed; returns the seconds it took, or -1. */
static double wait_replicas(client_t *cl, int want, double max_s)
{
    double t0 = flc_now_s();
    flc_err_t e = {0};
    while (count_replicas(&cl->map) < want) {
        if (flc_now_s() - t0 > max_s)
            return -1;
        flc_sleep_ms(250);
        flc_cluster_conn_refresh(cl->cc, &cl->map, -1, 1, NULL, &e);
    }
    return flc_now_s() - t0;
}

static void client_close(client_t *cl)
{
    flc_cluster_conn_free(cl->cc);
    flc_cluster_map_free(&cl->map);
}

static redisContext *conn(client_t *cl, unsigned node)
{
    redisContext *c = NULL;
    flc_err_t e = {0};
    if (flc_cluster_conn_get(cl->cc, &cl->map, node, &c, &e) != 0)
        flc_t_fatal("no connection to node %u: %s", node, e.msg);
    return c;
}

/* keys[s]: a key whose slot is s ("k<n>", the first n that lands there). */
static char keys[FLC_SLOT_COUNT][12];

static void key_table(void)
{
    if (keys[0][0])
        return;
    unsigned left = FLC_SLOT_COUNT;
    for (unsigned n = 0; left; n++) {
        char k[12];
        int len = snprintf(k, sizeof k, "k%u", n);
        uint16_t s = flc_slot_of(k, (size_t)len);
        if (!keys[s][0]) {
            memcpy(keys[s], k, (size_t)len + 1);
            left--;
        }
    }
}

/* Testbed node number (n<k>) of a map node, by address; 0 if none. */
static int tb_node(const flc_cluster_node_t *nd)
{
    for (int k = 1; k <= tb.nodes; k++)
        if (strcmp(tb.addr[k], nd->host) == 0 && nd->port == 6379)
            return k;
    return 0;
}

static unsigned first_slot_of(const flc_cluster_map_t *m, unsigned node)
{
    for (unsigned s = 0; s < FLC_SLOT_COUNT; s++)
        if (m->owner[s] == node)
            return s;
    return FLC_SLOT_COUNT;
}

/* A command whose reply must be OK-ish (status or string), freed here. */
static int run_ok(redisContext *c, const char *what, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    int ok = r && r->type != REDIS_REPLY_ERROR;
    if (!ok)
        flc_t_fatal("%s: %s", what, r ? r->str : c->errstr);
    freeReplyObject(r);
    return ok;
}

TEST(map_covers_all_slots)
{
    need_testbed();
    client_t cl;
    client_open(&cl);
    flc_cluster_map_t *m = &cl.map;
    printf("    # the first map listed %d of 3 replicas; all 3 after %.1f s\n", cl.first_replicas,
           cl.waited_s);
    EXPECT(flc_cluster_map_covered(m) == FLC_SLOT_COUNT, "all 16384 slots have an owner (%u)",
           flc_cluster_map_covered(m));
    CHECK(m->nnodes == 6, "6 nodes in the table (got %zu)", m->nnodes);
    int masters = 0, replicas = 0, sum = 0, known = 0;
    for (size_t i = 0; i < m->nnodes; i++) {
        const flc_cluster_node_t *nd = &m->nodes[i];
        known += tb_node(nd) > 0 && strlen(nd->id) == 40;
        if (nd->role == FLC_CLUSTER_MASTER) {
            masters++;
            sum += nd->nslots;
            EXPECT(nd->nreplicas == 1 && nd->nslots > 5000,
                   "master n%d (%s:%d) owns %d slots with %d replica", tb_node(nd), nd->host,
                   nd->port, nd->nslots, nd->nreplicas);
        } else if (nd->role == FLC_CLUSTER_REPLICA) {
            replicas++;
            EXPECT(nd->master >= 0 && m->nodes[nd->master].role == FLC_CLUSTER_MASTER &&
                       nd->nslots == 0,
                   "replica n%d follows master n%d", tb_node(nd),
                   nd->master >= 0 ? tb_node(&m->nodes[nd->master]) : -1);
        }
    }
    EXPECT(masters == 3 && replicas == 3 && sum == FLC_SLOT_COUNT,
           "3 masters (%d) owning 16384 slots (%d), 3 replicas (%d)", masters, sum, replicas);
    EXPECT(known == 6, "every node is a testbed address on 6379 with a 40-character id (%d)",
           known);
    /* The map agrees with what testbed.sh status says about each master. */
    flc_testbed_node_t v[FLC_TESTBED_MAX_NODES];
    int n = flc_testbed_status(&tb, v, FLC_TESTBED_MAX_NODES, NULL);
    int agree = 0, listed = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(v[i].role, "master") != 0)
            continue;
        listed++;
        unsigned lo = (unsigned)atoi(v[i].slots); /* "0-5460" */
        int idx = flc_cluster_map_find(m, v[i].addr, 6379);
        agree += idx >= 0 && m->owner[lo] == (unsigned)idx;
    }
    EXPECT(listed == 3 && agree == 3, "status's 3 masters own their first slot in the map (%d)",
           agree);
    /* The server's CLUSTER KEYSLOT agrees with flc_slot_of. */
    redisContext *c = conn(&cl, 0);
    int same = 0;
    for (int i = 0; i < 50; i++) {
        char k[32];
        int len = snprintf(k, sizeof k, i % 2 ? "fl:{job/%d/1}:u:c" : "x%d", i * 7919);
        redisReply *r = redisCommand(c, "CLUSTER KEYSLOT %b", k, (size_t)len);
        same += r && r->type == REDIS_REPLY_INTEGER && r->integer == flc_slot_of(k, (size_t)len);
        freeReplyObject(r);
    }
    EXPECT(same == 50, "CLUSTER KEYSLOT matches flc_slot_of for 50 keys (%d)", same);
    client_close(&cl);
}

TEST(owners_answer_without_moved)
{
    need_testbed();
    key_table();
    client_t cl;
    client_open(&cl);
    const flc_cluster_map_t *m = &cl.map;
    /* ~200 slots spread over the space, plus both ends of every run of
     * slots with one owner (where an off-by-one would show). */
    unsigned slots[400], n = 0;
    for (unsigned i = 0; i < 200; i++)
        slots[n++] = (i * 16384u) / 200u + (i * 37u) % 81u;
    for (unsigned s = 0; s < FLC_SLOT_COUNT && n + 2 <= 400; s++) {
        if (s == 0 || m->owner[s] != m->owner[s - 1])
            slots[n++] = s;
        if (s == FLC_SLOT_COUNT - 1 || m->owner[s] != m->owner[s + 1])
            slots[n++] = s;
    }
    int served = 0, moved = 0, other = 0;
    for (unsigned i = 0; i < n; i++) {
        unsigned s = slots[i] % FLC_SLOT_COUNT, node = m->owner[s];
        const char *k = keys[s];
        CHECK(node != FLC_CLUSTER_NO_NODE, "slot %u has an owner", s);
        redisReply *r = redisCommand(conn(&cl, node), "GET %s", k);
        flc_cluster_reply_t kind = flc_cluster_classify(r, NULL);
        served += kind == FLC_CLUSTER_R_OK;
        moved += kind == FLC_CLUSTER_R_MOVED;
        if (kind != FLC_CLUSTER_R_OK && other++ < 3)
            printf("    # slot %u key %s on node %u: %s\n", s, k, node,
                   r && r->str ? r->str : "no reply");
        freeReplyObject(r);
    }
    EXPECT(n >= 206 && served == (int)n && moved == 0,
           "GET of a key in each of %u slots (200 sampled + every range edge) answered by the "
           "map's owner: %d served, %d MOVED",
           n, served, moved);
    client_close(&cl);
}

TEST(nodes_authenticate_and_colocate)
{
    need_testbed();
    client_t cl;
    client_open(&cl);
    int pong = 0;
    for (unsigned i = 0; i < cl.map.nnodes; i++) {
        redisReply *r = redisCommand(conn(&cl, i), "PING");
        pong += r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
        freeReplyObject(r);
    }
    EXPECT(pong == 6,
           "all 6 nodes, replicas too, answer PING on connections made with the "
           "seed's password (%d)",
           pong);
    /* A wrong password is refused on a node the seed URL never named. */
    flc_url_t u;
    flc_err_t e = {0};
    flc_url_parse(tb.seed, &u, &e);
    snprintf(u.password, sizeof u.password, "wrong");
    flc_cluster_conn_t *bad = flc_cluster_conn_new(&u, NULL, &e);
    redisContext *c = NULL;
    unsigned far = cl.map.nnodes - 1;
    int rc = flc_cluster_conn_get(bad, &cl.map, far, &c, &e);
    EXPECT(rc == FLC_EAUTH && strstr(e.msg, cl.map.nodes[far].host) != NULL,
           "a wrong password: FLC_EAUTH naming the node: %s", e.msg);
    flc_cluster_conn_free(bad);
    /* Co-located with n1: its connection is n1's unix socket. */
    flc_url_parse(tb.seed, &u, &e);
    flc_cluster_conn_t *co = flc_cluster_conn_new(&u, NULL, &e);
    char sock[160];
    snprintf(sock, sizeof sock, "%s/n1/redis.sock", tb.dir);
    CHECK(flc_cluster_conn_colocate(co, tb.addr[1], 6379, sock, &e) == 0, "co-located with n1");
    int n1 = flc_cluster_map_find(&cl.map, tb.addr[1], 6379);
    CHECK(n1 >= 0, "n1 (%s) is in the map", tb.addr[1]);
    rc = flc_cluster_conn_get(co, &cl.map, (unsigned)n1, &c, &e);
    CHECK(rc == 0, "a connection to n1: %s", rc ? e.msg : "ok");
    redisReply *r = redisCommand(c, "PING");
    EXPECT(flc_cluster_conn_is_unix(co, (unsigned)n1) && r && r->type == REDIS_REPLY_STATUS,
           "it is over the unix socket %s, authenticated (PING: %s)", sock,
           r && r->str ? r->str : "-");
    freeReplyObject(r);
    int other = n1 == 0 ? 1 : 0;
    flc_cluster_conn_get(co, &cl.map, (unsigned)other, &c, &e);
    EXPECT(!flc_cluster_conn_is_unix(co, (unsigned)other), "another node is over TCP");
    /* A refresh through n1's socket still names nodes by their addresses. */
    flc_cluster_map_t m2;
    flc_cluster_map_init(&m2);
    flc_cluster_conn_get(co, &cl.map, (unsigned)n1, &c, &e);
    rc = flc_cluster_map_fetch(&m2, c, tb.addr[1], &e);
    EXPECT(rc == 0 && flc_cluster_map_covered(&m2) == FLC_SLOT_COUNT && m2.nnodes == 6,
           "CLUSTER SLOTS over the socket gives the same 6 nodes, 16384 slots");
    flc_cluster_map_free(&m2);
    flc_cluster_conn_free(co);
    client_close(&cl);
}

TEST(moved_after_reshard)
{
    need_testbed();
    key_table();
    client_t cl;
    client_open(&cl);
    flc_cluster_map_t *m = &cl.map;
    unsigned a = m->owner[0], b = FLC_CLUSTER_NO_NODE;
    for (unsigned i = 0; i < m->nnodes && b == FLC_CLUSTER_NO_NODE; i++)
        if (i != a && m->nodes[i].role == FLC_CLUSTER_MASTER)
            b = i;
    CHECK(b != FLC_CLUSTER_NO_NODE, "two masters: n%d gives, n%d takes", tb_node(&m->nodes[a]),
          tb_node(&m->nodes[b]));
    /* A value in each of a's first 5 slots, to find again after the move. */
    unsigned lo = first_slot_of(m, a);
    int a_slots = m->nodes[a].nslots;
    for (unsigned s = lo; s < lo + 5; s++)
        run_ok(conn(&cl, a), "SET on the owner", "SET %s v%u", keys[s], s);
    char out[16384];
    int rc = flc_testbed_sh(&tb, out, sizeof out,
                            "exec client redis-cli -a %s --no-auth-warning --cluster reshard "
                            "%s:6379 --cluster-from %s --cluster-to %s --cluster-slots 3 "
                            "--cluster-yes",
                            tb.password, m->nodes[a].host, m->nodes[a].id, m->nodes[b].id);
    CHECK(rc == 0, "redis-cli --cluster reshard moves 3 slots from n%d to n%d (exit %d)",
          tb_node(&m->nodes[a]), tb_node(&m->nodes[b]), rc);
    /* What moved, by a fresh map; the old one is left as it was. */
    client_t now;
    client_open(&now);
    unsigned moved[16], nm = 0;
    for (unsigned s = 0; s < FLC_SLOT_COUNT; s++) {
        const flc_cluster_node_t *was = &m->nodes[m->owner[s]];
        const flc_cluster_node_t *is = &now.map.nodes[now.map.owner[s]];
        if (strcmp(was->host, is->host) != 0 && nm < 16)
            moved[nm++] = s;
    }
    client_close(&now);
    CHECK(nm == 3, "3 slots changed owner (%u), first %u", nm, nm ? moved[0] : 0);
    int got_moved = 0, routed = 0, values = 0;
    for (unsigned i = 0; i < nm; i++) {
        unsigned s = moved[i];
        redisReply *r = redisCommand(conn(&cl, m->owner[s]), "GET %s", keys[s]);
        flc_cluster_redirect_t rd;
        flc_err_t e = {0};
        if (flc_cluster_classify(r, &rd) == FLC_CLUSTER_R_MOVED && rd.slot == s) {
            got_moved++;
            int to = flc_cluster_map_apply_moved(m, &rd, m->nodes[a].host, &e);
            routed += to == (int)b && flc_cluster_map_lookup(m, keys[s], strlen(keys[s])) == b;
        }
        freeReplyObject(r);
        r = redisCommand(conn(&cl, m->owner[s]), "GET %s", keys[s]);
        char want[16];
        snprintf(want, sizeof want, "v%u", s);
        int here = r && r->type == REDIS_REPLY_STRING && strcmp(r->str, want) == 0;
        int nil = r && r->type == REDIS_REPLY_NIL;
        values += here || (nil && (s < lo || s >= lo + 5));
        freeReplyObject(r);
    }
    EXPECT(got_moved == 3, "the old map's owner answers MOVED <slot> for each (%d)", got_moved);
    EXPECT(routed == 3, "applying each MOVED routes its slot to n%d (%d)", tb_node(&m->nodes[b]),
           routed);
    EXPECT(values == 3, "the patched route serves each key, the values moved along (%d)", values);
    EXPECT(m->refresh_pending && m->nodes[a].nslots == a_slots - 3,
           "a full refresh is pending; n%d has 3 slots fewer (%d of %d)", tb_node(&m->nodes[a]),
           m->nodes[a].nslots, a_slots);
    int refreshed = 0;
    flc_err_t e = {0};
    rc = flc_cluster_conn_refresh(cl.cc, m, -1, 1, &refreshed, &e);
    EXPECT(rc == 0 && refreshed && !m->refresh_pending && m->owner[moved[0]] == b,
           "a forced refresh agrees with the patches: %s", rc ? e.msg : "ok");
    rc = flc_cluster_conn_refresh(cl.cc, m, -1, 0, &refreshed, &e);
    EXPECT(rc == 0 && !refreshed, "another refresh within the second is skipped (rate limit)");
    client_close(&cl);
}

TEST(ask_during_migration)
{
    need_testbed();
    client_t cl;
    client_open(&cl);
    flc_cluster_map_t *m = &cl.map;
    const char *k = "{askme}k";
    unsigned s = flc_slot_of(k, strlen(k)), a = m->owner[s], b = FLC_CLUSTER_NO_NODE;
    for (unsigned i = 0; i < m->nnodes && b == FLC_CLUSTER_NO_NODE; i++)
        if (i != a && m->nodes[i].role == FLC_CLUSTER_MASTER)
            b = i;
    CHECK(a != FLC_CLUSTER_NO_NODE && b != FLC_CLUSTER_NO_NODE, "slot %u: n%d migrating to n%d", s,
          tb_node(&m->nodes[a]), tb_node(&m->nodes[b]));
    redisContext *ca = conn(&cl, a), *cb = conn(&cl, b);
    /* The spec's order: IMPORTING on the target first, then MIGRATING. */
    run_ok(cb, "IMPORTING on the target", "CLUSTER SETSLOT %u IMPORTING %s", s, m->nodes[a].id);
    run_ok(ca, "MIGRATING on the source", "CLUSTER SETSLOT %u MIGRATING %s", s, m->nodes[b].id);
    /* The key lives on the target only, as if MIGRATE had moved it. */
    redisAppendCommand(cb, "ASKING");
    redisAppendCommand(cb, "SET %s there", k);
    redisReply *r1 = NULL, *r2 = NULL;
    redisGetReply(cb, (void **)&r1);
    redisGetReply(cb, (void **)&r2);
    CHECK(r2 && r2->type == REDIS_REPLY_STATUS, "ASKING + SET puts the key on the target");
    freeReplyObject(r1);
    freeReplyObject(r2);

    redisReply *r = redisCommand(ca, "GET %s", k);
    flc_cluster_redirect_t rd;
    flc_cluster_reply_t kind = flc_cluster_classify(r, &rd);
    EXPECT(kind == FLC_CLUSTER_R_ASK && rd.slot == s,
           "GET on the source (key not there, slot migrating): %s", r && r->str ? r->str : "-");
    freeReplyObject(r);
    flc_err_t e = {0};
    uint64_t v = m->version;
    int t = flc_cluster_map_node_for(m, &rd, m->nodes[a].host, &e);
    EXPECT(t == (int)b && m->owner[s] == a && m->version == v,
           "the ASK names n%d; the map still routes the slot to n%d", tb_node(&m->nodes[b]),
           tb_node(&m->nodes[a]));
    /* ASKING + GET pipelined on the target: the +OK, then the value. */
    redisAppendCommand(cb, "ASKING");
    redisAppendCommand(cb, "GET %s", k);
    redisGetReply(cb, (void **)&r1);
    redisGetReply(cb, (void **)&r2);
    EXPECT(r1 && r1->type == REDIS_REPLY_STATUS && r2 && r2->type == REDIS_REPLY_STRING &&
               strcmp(r2->str, "there") == 0,
           "ASKING + GET on the target returns the value");
    freeReplyObject(r1);
    freeReplyObject(r2);
    r = redisCommand(cb, "GET %s", k);
    kind = flc_cluster_classify(r, &rd);
    EXPECT(kind == FLC_CLUSTER_R_MOVED && rd.slot == s,
           "without ASKING the target sends it back: %s", r && r->str ? r->str : "-");
    freeReplyObject(r);
    /* ASKING is one-shot: a command in between uses it up. */
    redisAppendCommand(cb, "ASKING");
    redisAppendCommand(cb, "PING");
    redisAppendCommand(cb, "GET %s", k);
    redisReply *r3 = NULL;
    redisGetReply(cb, (void **)&r1);
    redisGetReply(cb, (void **)&r2);
    redisGetReply(cb, (void **)&r3);
    EXPECT(flc_cluster_classify(r3, NULL) == FLC_CLUSTER_R_MOVED,
           "ASKING; PING; GET: the GET is MOVED (ASKING must come right before the command)");
    freeReplyObject(r1);
    freeReplyObject(r2);
    freeReplyObject(r3);
    /* Put things back: the key off the target, the slot stable. */
    redisAppendCommand(cb, "ASKING");
    redisAppendCommand(cb, "DEL %s", k);
    redisGetReply(cb, (void **)&r1);
    redisGetReply(cb, (void **)&r2);
    freeReplyObject(r1);
    freeReplyObject(r2);
    run_ok(ca, "STABLE on the source", "CLUSTER SETSLOT %u STABLE", s);
    run_ok(cb, "STABLE on the target", "CLUSTER SETSLOT %u STABLE", s);
    r = redisCommand(ca, "GET %s", k);
    EXPECT(r && r->type == REDIS_REPLY_NIL, "after STABLE the source answers for the slot again");
    freeReplyObject(r);
    client_close(&cl);
}

TEST(mode_detected)
{
    /* A plain redis-server first, over its unix socket, before joining the
     * testbed's namespace (the socket is a path: it works from anywhere).
     * This half needs no root. */
    flc_fixture_t fx;
    flc_fixture_start(&fx, 0);
    flc_url_t u;
    flc_err_t e = {0};
    CHECK(flc_url_parse(fx.unix_url, &u, &e) == 0, "the fixture's URL parses");
    flc_cluster_conn_t *cc = flc_cluster_conn_new(&u, NULL, &e);
    flc_cluster_map_t m;
    flc_cluster_map_init(&m);
    int is_cluster = -1;
    int rc = flc_cluster_conn_bootstrap(cc, &m, &is_cluster, &e);
    EXPECT(rc == 0 && is_cluster == 0 && m.nnodes == 0 && flc_cluster_map_covered(&m) == 0,
           "a plain redis-server is not a cluster; the map stays empty (%s)", rc ? e.msg : "ok");
    redisContext *c = NULL;
    flc_cluster_conn_seed(cc, &c, &e);
    rc = flc_cluster_map_fetch(&m, c, "localhost", &e);
    EXPECT(rc == FLC_EINVAL && strstr(e.msg, "cluster support disabled"),
           "CLUSTER SLOTS there is FLC_EINVAL: %s", e.msg);
    flc_cluster_conn_free(cc);
    flc_fixture_stop(&fx);

    need_testbed();
    flc_url_parse(tb.seed, &u, &e);
    cc = flc_cluster_conn_new(&u, NULL, &e);
    CHECK(flc_cluster_conn_seed(cc, &c, &e) == 0, "the seed answers: %s", e.msg);
    is_cluster = -1;
    rc = flc_cluster_detect(c, &is_cluster, &e);
    EXPECT(rc == 0 && is_cluster == 1, "the testbed's seed is a cluster node");
    /* A replica says so too. */
    flc_cluster_conn_free(cc);
    client_t cl;
    client_open(&cl);
    unsigned rep = 0;
    while (rep < cl.map.nnodes && cl.map.nodes[rep].role != FLC_CLUSTER_REPLICA)
        rep++;
    CHECK(rep < cl.map.nnodes, "a replica in the map");
    is_cluster = -1;
    rc = flc_cluster_detect(conn(&cl, rep), &is_cluster, &e);
    EXPECT(rc == 0 && is_cluster == 1, "replica n%d is a cluster node too",
           tb_node(&cl.map.nodes[rep]));
    client_close(&cl);
    flc_cluster_map_free(&m);
}

TEST(replica_owns_after_master_killed)
{
    need_testbed();
    char out[4096];
    CHECK(flc_testbed_sh(&tb, out, sizeof out, "wait 30") == 0,
          "the cluster is whole, replicas in sync");
    key_table();
    client_t cl;
    client_open(&cl);
    flc_cluster_map_t *m = &cl.map;
    unsigned mi = m->owner[FLC_SLOT_COUNT - 1], ri = FLC_CLUSTER_NO_NODE;
    for (unsigned i = 0; i < m->nnodes; i++)
        if (m->nodes[i].role == FLC_CLUSTER_REPLICA && m->nodes[i].master == (int)mi)
            ri = i;
    CHECK(ri != FLC_CLUSTER_NO_NODE, "master n%d has replica n%d", tb_node(&m->nodes[mi]),
          ri != FLC_CLUSTER_NO_NODE ? tb_node(&m->nodes[ri]) : -1);
    int victim = tb_node(&m->nodes[mi]), heir = tb_node(&m->nodes[ri]);
    unsigned s = FLC_SLOT_COUNT - 1;
    const char *k = keys[s];
    run_ok(conn(&cl, mi), "SET on the master", "SET %s before", k);
    redisReply *w = redisCommand(conn(&cl, mi), "WAIT 1 5000");
    EXPECT(w && w->type == REDIS_REPLY_INTEGER && w->integer == 1, "the replica has it (WAIT)");
    freeReplyObject(w);
    redisContext *heir_c = conn(&cl, ri); /* the refreshes must keep it */
    int heir_closed = 0;

    /* Timed from before the kill verb: it returns only once the process is
     * gone (up to seconds when the zombie waits to be reaped), so timing from
     * its return would flatter the failover. */
    double t0 = flc_now_s(), t_ioerr = -1, t_map = -1, t_served = -1, t_down = -1;
    CHECK(flc_testbed_sh(&tb, out, sizeof out, "kill n%d", victim) == 0, "kill n%d", victim);
    double t_killed = flc_now_s() - t0;
    flc_err_t e = {0};
    redisReply *r = redisCommand(conn(&cl, mi), "GET %s", k);
    if (flc_cluster_classify(r, NULL) == FLC_CLUSTER_R_IOERR) {
        t_ioerr = flc_now_s() - t0;
        flc_cluster_conn_close(cl.cc, mi);
    }
    freeReplyObject(r);
    while (t_served < 0 && flc_now_s() - t0 < 20) {
        int refreshed = 0;
        if (t_map < 0 && flc_cluster_conn_refresh(cl.cc, m, (int)mi, 1, &refreshed, &e) == 0 &&
            m->owner[s] == ri)
            t_map = flc_now_s() - t0;
        redisContext *c = NULL;
        if (flc_cluster_conn_get(cl.cc, m, ri, &c, &e) == 0) {
            r = redisCommand(c, "GET %s", k);
            flc_cluster_reply_t kind = flc_cluster_classify(r, NULL);
            if (kind == FLC_CLUSTER_R_CLUSTERDOWN && t_down < 0)
                t_down = flc_now_s() - t0;
            if (kind == FLC_CLUSTER_R_OK && t_map >= 0) {
                t_served = flc_now_s() - t0;
                EXPECT(r->type == REDIS_REPLY_STRING && strcmp(r->str, "before") == 0,
                       "the promoted replica serves the value written before the kill");
            }
            if (kind == FLC_CLUSTER_R_IOERR) {
                flc_cluster_conn_close(cl.cc, ri);
                heir_closed = 1;
            }
            freeReplyObject(r);
        }
        if (t_served < 0)
            flc_sleep_ms(200);
    }
    printf("    # n%d killed (the kill verb returned at %.1f s): its connection failed at "
           "%.1f s, CLUSTERDOWN seen at %.1f s, the map named n%d owner at %.1f s, served at "
           "%.1f s\n",
           victim, t_killed, t_ioerr, t_down, heir, t_map, t_served);
    EXPECT(t_ioerr >= 0 && t_ioerr <= t_killed + 1,
           "the dead master's connection fails as soon as it is gone (%.1f s)", t_ioerr);
    EXPECT(t_map >= 0 && t_map < 10,
           "a refresh names replica n%d owner of slot %u within 10 s (%.1f s; node timeout 2 s)",
           heir, s, t_map);
    EXPECT(t_served >= 0, "n%d serves the slot (%.1f s)", heir, t_served);
    EXPECT(m->nodes[ri].role == FLC_CLUSTER_MASTER && m->nodes[mi].role == FLC_CLUSTER_GONE &&
               m->nodes[ri].nslots >= 5461 - 3,
           "n%d is a master with its slots; the dead n%d is gone from the map", heir, victim);
    redisContext *c = NULL;
    flc_cluster_conn_get(cl.cc, m, ri, &c, &e);
    EXPECT(heir_closed || c == heir_c,
           "n%d's connection from before the kill is still the one "
           "used: refreshes keep connections",
           heir);

    CHECK(flc_testbed_sh(&tb, out, sizeof out, "start n%d", victim) == 0, "start n%d", victim);
    int back = flc_testbed_sh(&tb, out, sizeof out, "wait 40") == 0;
    int refreshed = 0, rc = 0;
    /* CLUSTER SLOTS leaves out a replica whose replication offset is still 0,
     * so the rejoined node can take a moment to be listed: refresh until it is
     * (or 15 s), as a client would on its next refresh. */
    double t_back = flc_now_s();
    do {
        rc = flc_cluster_conn_refresh(cl.cc, m, -1, 1, &refreshed, &e);
        if (rc == 0 && m->nodes[mi].role == FLC_CLUSTER_REPLICA && m->nodes[mi].master == (int)ri)
            break;
        flc_sleep_ms(250);
    } while (flc_now_s() - t_back < 15);
    EXPECT(back && rc == 0 && m->nodes[mi].role == FLC_CLUSTER_REPLICA &&
               m->nodes[mi].master == (int)ri,
           "n%d came back as a replica of n%d, same node index (%s)", victim, heir,
           rc ? e.msg : "ok");
    client_close(&cl);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(map_covers_all_slots),
                 TEST_ENTRY(owners_answer_without_moved),
                 TEST_ENTRY(nodes_authenticate_and_colocate), TEST_ENTRY(mode_detected),
                 TEST_ENTRY(moved_after_reshard), TEST_ENTRY(ask_during_migration),
                 TEST_ENTRY(replica_owns_after_master_killed))
