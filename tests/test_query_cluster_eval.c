/* The evaluation kinds' shard workers placed next to their shards (issue
 * 17 point 1) on a real Redis Cluster: the testbed of scripts/testbed.sh, 3
 * masters, its node map and cli/place.c's callback, as test_cluster_query
 * does for the Gram kinds.
 * - `accuracy` placed equals `accuracy` unplaced (every number), on a
 *   softmax job of 6 shards over 3 nodes;
 * - every enter named a node owning a shard of the round, and left the
 *   worker thread in that node's network namespace with its socket.
 * Needs root; skips without it unless CI=true, as the testbed fixture does. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "aggregator/query.h"
#include "cli/place.h"
#include "tests/harness.h"

#define IN 20
#define C 4
#define NS 80
#define N 6
#define S 6

static flc_testbed_t tb;
static char skip_why[160];
static char node_map[2048];

static void setup(void)
{
    if (!flc_testbed_usable(skip_why, sizeof skip_why))
        return;
    flc_testbed_up(&tb, 3, 0, "10gbit");
    static char out[16384];
    if (flc_testbed_sh(&tb, out, sizeof out, "env") != 0)
        flc_t_fatal("testbed env: %s", out);
    const char *p = strstr(out, "FLCACHE_NODES='");
    if (p == NULL)
        flc_t_fatal("testbed env prints no FLCACHE_NODES: %s", out);
    p += strlen("FLCACHE_NODES='");
    snprintf(node_map, sizeof node_map, "%.*s", (int)strcspn(p, "'"), p);
}

static void teardown(void)
{
    flc_testbed_down(&tb);
}

static flc_store_t *open_seed(void)
{
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(tb.seed, NULL, &e);
    if (s == NULL)
        flc_t_fatal("open %s: %s", tb.seed, e.msg);
    return s;
}

/* Job "ce": its evaluation set, global model of round 0, round 1's N
 * updates in S shards and the merged mean, straight through the store. */
static void store_job(void)
{
    enum { P = IN * C + C };
    static float x[NS * IN], g[P], u[P], mean[P];
    static int32_t y[NS];
    flc_t_fill(x, NS * IN, 3);
    flc_t_fill(g, P, 4);
    for (int i = 0; i < NS; i++)
        y[i] = i % C;
    flc_store_t *s = open_seed();
    flc_err_t e = {0};
    flc_query_evalset_t es = {.kind = FLC_QUERY_MODEL_SOFTMAX, .in = IN, .out = C, .n = NS,
                              .x = x, .y = y};
    if (flc_query_evalset_put(s, "ce", &es, &e) != 0)
        flc_t_fatal("eval set: %s", e.msg);
    flc_shard_t gs = {.round = 0, .num_shards = 1, .count = P, .model_size = P, .values = g};
    snprintf(gs.job, sizeof gs.job, "ce/g");
    if (flc_store_put_merged(s, &gs) != 0)
        flc_t_fatal("global: %s", flc_store_errstr(s));
    for (uint32_t i = 0; i < N; i++) {
        flc_t_fill(u, P, 10 + i);
        for (int k = 0; k < P; k++)
            mean[k] += u[k] / N;
        for (uint32_t sh = 0; sh < S; sh++) {
            flc_shard_t d = {.round = 1, .shard = sh, .num_shards = S, .model_size = P,
                             .weight = 1, .num_samples = 1};
            snprintf(d.job, sizeof d.job, "ce");
            snprintf(d.client, sizeof d.client, "c%u", i);
            d.offset = (uint64_t)P * sh / S;
            d.count = (uint64_t)P * (sh + 1) / S - d.offset;
            d.values = u + d.offset;
            if (flc_store_put_update(s, &d) != 0)
                flc_t_fatal("put: %s", flc_store_errstr(s));
        }
    }
    for (uint32_t sh = 0; sh < S; sh++) {
        flc_shard_t d = {.round = 1, .shard = sh, .num_shards = S, .model_size = P, .weight = N,
                         .num_samples = N};
        snprintf(d.job, sizeof d.job, "ce");
        d.offset = (uint64_t)P * sh / S;
        d.count = (uint64_t)P * (sh + 1) / S - d.offset;
        d.values = mean + d.offset;
        if (flc_store_put_merged(s, &d) != 0)
            flc_t_fatal("merged: %s", flc_store_errstr(s));
    }
    flc_store_close(s);
}

typedef struct rec_place {
    const flc_cli_nodes_t *map;
    flc_place_t inner;
    pthread_mutex_t lock;
    int n, bad;
} rec_place_t;

static int rec_enter(void *user, const char *addr, flc_store_opts_t *opts, flc_err_t *e)
{
    rec_place_t *r = user;
    int rc = r->inner.enter(r->inner.user, addr, opts, e);
    const char *ns = NULL, *sock = NULL;
    char path[128];
    struct stat here, want;
    int ok = rc == 0 && flc_cli_nodes_find(r->map, addr, &ns, &sock) == 0;
    if (ok)
        snprintf(path, sizeof path, "/var/run/netns/%s", ns);
    ok = ok && stat("/proc/thread-self/ns/net", &here) == 0 && stat(path, &want) == 0 &&
         here.st_ino == want.st_ino && opts->local_sock && strcmp(opts->local_sock, sock) == 0;
    pthread_mutex_lock(&r->lock);
    r->n++;
    r->bad += !ok;
    pthread_mutex_unlock(&r->lock);
    return rc;
}

static Flcache__QueryAnswer *ask(const flc_place_t *pl)
{
    flc_store_t *s = open_seed();
    flc_query_req_t q = {.kind = FLC_Q_ACCURACY, .job = "ce", .round_from = 1, .round_to = 1,
                         .url = tb.seed, .samples = NS,
                         .no_cache = 1}; /* both compute: placed against unplaced */
    if (pl != NULL)
        q.place = *pl;
    flc_err_t e = {0};
    Flcache__QueryAnswer *a = NULL;
    if (flc_query_run(s, &q, &a, &e) != 0)
        printf("# accuracy %s: %s\n", pl ? "placed" : "unplaced", e.msg);
    flc_store_close(s);
    return a;
}

TEST(placed_accuracy_equals_unplaced)
{
    flc_testbed_case(&tb, skip_why);
    store_job();
    flc_cli_nodes_t *map = NULL;
    flc_err_t e = {0};
    CHECK(flc_cli_nodes_parse(node_map, &map, &e) == 0, "the node map parses (%s)", e.msg);
    rec_place_t rec = {.map = map, .inner = flc_cli_place(map)};
    pthread_mutex_init(&rec.lock, NULL);
    flc_place_t pl = {rec_enter, &rec};
    Flcache__QueryAnswer *central = ask(NULL), *placed = ask(&pl);
    int same = central && placed && central->n_rows == N && placed->n_rows == N;
    for (size_t i = 0; same && i < N; i++)
        for (size_t k = 0; k < central->rows[i]->n_values; k++) {
            double a = central->rows[i]->values[k], b = placed->rows[i]->values[k];
            same &= strcmp(central->rows[i]->key, placed->rows[i]->key) == 0 &&
                    (a == b || (isnan(a) && isnan(b)));
        }
    EXPECT(same, "accuracy placed next to the shards' nodes = unplaced: %d rows, every value",
           N);
    EXPECT(placed && placed->bytes_moved == central->bytes_moved && placed->bytes_read > 0,
           "the same bytes read (%llu) and counted as moved (%llu)",
           placed ? (unsigned long long)placed->bytes_read : 0ULL,
           placed ? (unsigned long long)placed->bytes_moved : 0ULL);
    CHECK(rec.n >= 1 && rec.bad == 0, "%d enters, each left the worker in its node's namespace "
          "with the node's socket (%d did not)", rec.n, rec.bad);
    flcache__query_answer__free_unpacked(central, NULL);
    flcache__query_answer__free_unpacked(placed, NULL);
    flc_cli_nodes_free(map);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(placed_accuracy_equals_unplaced))
