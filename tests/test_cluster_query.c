/* Query workers placed next to their shard (issue 12, point 4) on a real
 * Redis Cluster: the testbed of scripts/testbed.sh, 3 masters, no replicas,
 * the node map it prints (FLCACHE_NODES) and cli/place.c's callback.
 * - placed and unplaced queries give the same answers: norms, outliers,
 *   similarity and clusters (same seed), partials recomputed and cached;
 * - the placed workers really ran next to the data: every node that owns a
 *   shard of the round was entered, by a thread that was then inside that
 *   node's network namespace with the node's socket in its store options,
 *   and a placed query with the partials recomputed moved a small fraction
 *   of the bytes the unplaced (central) one moved over the node links, read
 *   from the nodes' veth counters (bytes, not time: a correctness property);
 * - `flcache query` places its workers with FLCACHE_NODES and exits 1 on a
 *   malformed map.
 *
 * Each case runs in its own process, which joins the testbed's client
 * namespace (the caller's place: drivers and central baselines run there).
 * Needs root; skips without it unless CI=true, as the testbed fixture does. */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "aggregator/query.h"
#include "cache/store_ops.h"
#include "cli/place.h"
#include "tests/harness.h"

static flc_testbed_t tb;
static char skip_why[160];
static char node_map[2048]; /* FLCACHE_NODES of the testbed */

/* The value of KEY='value' in `testbed.sh env`'s output. */
static void env_value(const char *env, const char *key, char *dst, size_t cap)
{
    char pat[64];
    snprintf(pat, sizeof pat, "%s='", key);
    const char *p = strstr(env, pat);
    dst[0] = '\0';
    if (p != NULL)
        snprintf(dst, cap, "%.*s", (int)strcspn(p + strlen(pat), "'"), p + strlen(pat));
}

static void setup(void)
{
    if (!flc_testbed_usable(skip_why, sizeof skip_why))
        return;
    flc_testbed_up(&tb, 3, 0, "10gbit");
    static char out[16384];
    if (flc_testbed_sh(&tb, out, sizeof out, "env") != 0)
        flc_t_fatal("testbed env: %s", out);
    env_value(out, "FLCACHE_NODES", node_map, sizeof node_map);
    if (node_map[0] == '\0')
        flc_t_fatal("testbed env prints no FLCACHE_NODES: %s", out);
}

static void teardown(void)
{
    flc_testbed_down(&tb);
}

static void need_testbed(void)
{
    flc_testbed_case(&tb, skip_why);
}

static flc_store_t *open_seed(void)
{
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(tb.seed, NULL, &e);
    if (s == NULL)
        flc_t_fatal("open %s: %s", tb.seed, e.msg);
    return s;
}

/* Stores a round of N clients' updates of n floats in S shards, and the
 * merged (mean) shards, straight through the store: the last client is an
 * outlier (its update is -6 times a random one). */
static void store_round(const char *job, uint32_t round, uint32_t N, uint32_t S, uint64_t n)
{
    flc_store_t *s = open_seed();
    float *u = malloc(n * sizeof *u), *mean = calloc(n, sizeof *mean);
    if (u == NULL || mean == NULL)
        flc_t_fatal("out of memory");
    unsigned x = 7 + round;
    for (uint32_t i = 0; i < N; i++) {
        for (uint64_t k = 0; k < n; k++) {
            x = x * 1103515245u + 12345u;
            u[k] = (float)((x >> 8) & 0xffff) / 65536.0f - 0.5f + (i % 2 ? 0.2f : -0.2f);
            if (i == N - 1)
                u[k] *= -6;
            mean[k] += u[k] / (float)N;
        }
        for (uint32_t sh = 0; sh < S; sh++) {
            flc_shard_t d = {.round = round, .shard = sh, .num_shards = S, .model_size = n,
                             .weight = 1, .num_samples = 1};
            snprintf(d.job, sizeof d.job, "%s", job);
            snprintf(d.client, sizeof d.client, "c%02u", i);
            d.offset = n * sh / S;
            d.count = n * (sh + 1) / S - d.offset;
            d.values = u + d.offset;
            if (flc_store_put_update(s, &d) != 0)
                flc_t_fatal("put %s shard %u: %s", d.client, sh, flc_store_errstr(s));
        }
    }
    for (uint32_t sh = 0; sh < S; sh++) {
        flc_shard_t d = {.round = round, .shard = sh, .num_shards = S, .model_size = n,
                         .weight = N, .num_samples = N};
        snprintf(d.job, sizeof d.job, "%s", job);
        d.offset = n * sh / S;
        d.count = n * (sh + 1) / S - d.offset;
        d.values = mean + d.offset;
        if (flc_store_put_merged(s, &d) != 0)
            flc_t_fatal("put merged shard %u: %s", sh, flc_store_errstr(s));
    }
    free(u);
    free(mean);
    flc_store_close(s);
}

/* A place callback that records what cli/place.c's did: which node each
 * enter named, and whether the thread was then in that node's namespace
 * with the node's socket in its store options. */
typedef struct rec_place {
    const flc_cli_nodes_t *map;
    flc_place_t inner;
    pthread_mutex_t lock;
    int n, bad;
    char addr[256][64];
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
         here.st_ino == want.st_ino && here.st_dev == want.st_dev && opts->local_sock &&
         strcmp(opts->local_sock, sock) == 0 && opts->local_node &&
         strcmp(opts->local_node, addr) == 0;
    pthread_mutex_lock(&r->lock);
    if (r->n < 256)
        snprintf(r->addr[r->n++], sizeof r->addr[0], "%s", addr);
    r->bad += !ok;
    pthread_mutex_unlock(&r->lock);
    return rc;
}

static Flcache__QueryAnswer *ask(const char *job, flc_query_kind_t kind, const flc_place_t *pl,
                                 int no_cache)
{
    flc_store_t *s = open_seed();
    flc_query_req_t q = {.kind = kind, .job = job, .round_from = 1, .round_to = 1,
                         .url = tb.seed, .k = 2, .seed = 7, .no_cache = no_cache};
    if (pl != NULL)
        q.place = *pl;
    flc_err_t e = {0};
    Flcache__QueryAnswer *a = NULL;
    if (flc_query_run(s, &q, &a, &e) != 0)
        printf("# %s %s: %s\n", flc_query_kind_name(kind), pl ? "placed" : "unplaced", e.msg);
    flc_store_close(s);
    return a;
}

/* Rows, keys, text and values equal; *worst the largest value difference. */
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
            if (isnan(x->values[j]) != isnan(y->values[j]))
                return 0;
            *worst = d > *worst ? d : *worst;
        }
        for (size_t j = 0; j < x->n_text; j++)
            if (strcmp(x->text[j], y->text[j]) != 0)
                return 0;
    }
    return *worst == 0;
}

TEST(placed_answers_equal_unplaced)
{
    need_testbed();
    const uint32_t N = 10, S = 6;
    store_round("pq", 1, N, S, 30011);
    flc_cli_nodes_t *map = NULL;
    flc_err_t e = {0};
    CHECK(flc_cli_nodes_parse(node_map, &map, &e) == 0 && flc_cli_nodes_count(map) == 3,
          "the testbed's node map parses: 3 nodes (%s)", e.msg);
    rec_place_t rec = {.map = map, .inner = flc_cli_place(map)};
    pthread_mutex_init(&rec.lock, NULL);
    flc_place_t pl = {rec_enter, &rec};

    const flc_query_kind_t kinds[] = {FLC_Q_NORMS, FLC_Q_OUTLIERS, FLC_Q_SIMILARITY,
                                      FLC_Q_CLUSTERS};
    for (int k = 0; k < 4; k++) {
        Flcache__QueryAnswer *central = ask("pq", kinds[k], NULL, 1);
        Flcache__QueryAnswer *cold = ask("pq", kinds[k], &pl, 1);
        Flcache__QueryAnswer *fill = ask("pq", kinds[k], &pl, 0); /* computes and caches */
        Flcache__QueryAnswer *warm = ask("pq", kinds[k], &pl, 0); /* reads the cache */
        double w1 = 0, w2 = 0, w3 = 0;
        EXPECT(same_answer(central, cold, &w1) && same_answer(central, fill, &w2) &&
                   same_answer(central, warm, &w3),
               "%s: placed (recomputed, then cached twice) = unplaced: %zu rows, max diff "
               "%.3g / %.3g / %.3g",
               flc_query_kind_name(kinds[k]), central ? central->n_rows : 0, w1, w2, w3);
        if (warm && cold)
            EXPECT(warm->bytes_read == 0 && cold->bytes_read > 0,
                   "%s: the cached placed query read no update (%llu bytes), the recomputed "
                   "one read %llu",
                   flc_query_kind_name(kinds[k]), (unsigned long long)warm->bytes_read,
                   (unsigned long long)cold->bytes_read);
        flcache__query_answer__free_unpacked(central, NULL);
        flcache__query_answer__free_unpacked(cold, NULL);
        flcache__query_answer__free_unpacked(fill, NULL);
        flcache__query_answer__free_unpacked(warm, NULL);
    }
    /* Who was entered: exactly the owners of the round's shards. */
    flc_store_t *s = open_seed();
    char owners[8][300];
    int nown = 0;
    for (uint32_t sh = 0; sh < S; sh++) {
        flc_store_node_t nd;
        CHECK(flc_store_shard_node(s, "pq", 1, sh, &nd) == 0, "shard %u has an owner", sh);
        int seen = 0;
        for (int i = 0; i < nown; i++)
            seen |= strcmp(owners[i], nd.addr) == 0;
        if (!seen && nown < 8)
            snprintf(owners[nown++], sizeof owners[0], "%s", nd.addr);
    }
    flc_store_close(s);
    int missing = 0, stray = 0;
    for (int i = 0; i < nown; i++) {
        int seen = 0;
        for (int k = 0; k < rec.n; k++)
            seen |= strcmp(rec.addr[k], owners[i]) == 0;
        missing += !seen;
    }
    for (int k = 0; k < rec.n; k++) {
        int own = 0;
        for (int i = 0; i < nown; i++)
            own |= strcmp(rec.addr[k], owners[i]) == 0;
        stray += !own;
    }
    CHECK(rec.n >= nown * 3 && missing == 0 && stray == 0,
          "the 3 placed queries per kind entered each of the %d nodes owning the 6 shards "
          "(%d enters, %d owners never entered, %d enters of other nodes)",
          nown, rec.n, missing, stray);
    CHECK(rec.bad == 0,
          "after every enter the worker thread was in the node's namespace with its socket "
          "and address in the store options (%d of %d were not)", rec.bad, rec.n);
    flc_cli_nodes_free(map);
}

/* rx + tx of every node's end of its link. */
static uint64_t link_bytes(void)
{
    uint64_t sum = 0;
    for (int k = 1; k <= tb.nodes; k++) {
        char cmd[160];
        static char out[8192];
        snprintf(cmd, sizeof cmd, "ip -n %s-n%d -s -j link show dev eth0 2>&1", tb.name, k);
        int rc = flc_t_run(cmd, out, sizeof out);
        cJSON *j = rc == 0 ? cJSON_Parse(out) : NULL;
        cJSON *st = cJSON_GetObjectItem(cJSON_GetArrayItem(j, 0), "stats64");
        cJSON *r = cJSON_GetObjectItem(cJSON_GetObjectItem(st, "rx"), "bytes");
        cJSON *t = cJSON_GetObjectItem(cJSON_GetObjectItem(st, "tx"), "bytes");
        if (!cJSON_IsNumber(r) || !cJSON_IsNumber(t))
            CHECK(0, "byte counters of n%d's eth0 (%s, exit %d): %.200s", k, cmd, rc, out);
        sum += (uint64_t)r->valuedouble + (uint64_t)t->valuedouble;
        cJSON_Delete(j);
    }
    return sum;
}

TEST(placed_workers_read_next_to_the_data)
{
    need_testbed();
    const uint32_t N = 8, S = 6;
    const uint64_t n = 250000; /* 1 MB a client: 8 MB for the central query to pull */
    store_round("pl", 1, N, S, n);
    flc_cli_nodes_t *map = NULL;
    flc_err_t e = {0};
    CHECK(flc_cli_nodes_parse(node_map, &map, &e) == 0, "the node map parses (%s)", e.msg);
    flc_place_t pl = flc_cli_place(map);
    uint64_t b0 = link_bytes();
    Flcache__QueryAnswer *central = ask("pl", FLC_Q_NORMS, NULL, 1);
    uint64_t b1 = link_bytes();
    Flcache__QueryAnswer *placed = ask("pl", FLC_Q_NORMS, &pl, 1);
    uint64_t b2 = link_bytes();
    double worst = 0;
    CHECK(same_answer(central, placed, &worst), "norms placed = unplaced (max diff %.3g)",
          worst);
    uint64_t bc = b1 - b0, bp = b2 - b1, data = (N + 1) * n * sizeof(float);
    CHECK(bc >= data,
          "the central query pulled the round over the node links: %llu bytes crossed, the "
          "round's updates and merged model are %llu",
          (unsigned long long)bc, (unsigned long long)data);
    CHECK(bp * 20 < bc,
          "the placed query, partials recomputed next to each shard, moved under 1/20 of "
          "that over the node links: %llu bytes (%.4f of central; the Gram partials are "
          "%d x %u^2 doubles = %u bytes)",
          (unsigned long long)bp, (double)bp / (double)bc, (int)S, N + 1,
          (unsigned)(S * (N + 1) * (N + 1) * 8));
    EXPECT(placed->bytes_read == central->bytes_read && placed->bytes_read >= data,
           "both read the same %llu bytes of updates (placed: %llu), only in other places",
           (unsigned long long)central->bytes_read, (unsigned long long)placed->bytes_read);
    flcache__query_answer__free_unpacked(central, NULL);
    flcache__query_answer__free_unpacked(placed, NULL);
    flc_cli_nodes_free(map);
}

TEST(cli_places_with_the_node_map)
{
    need_testbed();
    store_round("pc", 1, 6, 6, 4001);
    static char out[65536];
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "env FLCACHE_REDIS='%s' FLCACHE_NODES='%s' %s/flcache query outliers --job pc "
             "--round 1 --no-cache 2>&1",
             tb.seed, node_map, flc_t_build_dir());
    int rc = flc_t_run(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "c05") != NULL && strstr(out, "note: nodes:") != NULL,
          "flcache query outliers with FLCACHE_NODES answers, every client listed and the "
          "nodes named (exit %d)%s%.400s", rc, rc ? ": " : "", rc ? out : "");
    snprintf(cmd, sizeof cmd,
             "env FLCACHE_REDIS='%s' FLCACHE_NODES='10.213.0.11:6379=nosocket' "
             "%s/flcache query norms --job pc --round 1 2>&1",
             tb.seed, flc_t_build_dir());
    rc = flc_t_run(cmd, out, sizeof out);
    CHECK(rc == 1 && strstr(out, "FLCACHE_NODES") != NULL,
          "a malformed FLCACHE_NODES is exit 1 naming it (exit %d: %.200s)", rc, out);
    /* a node missing from the map: the query fails naming it, not silently unplaced */
    snprintf(cmd, sizeof cmd,
             "env FLCACHE_REDIS='%s' FLCACHE_NODES='10.9.9.9:6379=nons:/nonexistent.sock' "
             "%s/flcache query norms --job pc --round 1 --no-cache 2>&1",
             tb.seed, flc_t_build_dir());
    rc = flc_t_run(cmd, out, sizeof out);
    CHECK(rc == 1 && strstr(out, "not in FLCACHE_NODES") != NULL,
          "a map without the shards' nodes fails the query naming the node (exit %d: %.200s)",
          rc, out);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(placed_answers_equal_unplaced),
                 TEST_ENTRY(placed_workers_read_next_to_the_data),
                 TEST_ENTRY(cli_places_with_the_node_map))
