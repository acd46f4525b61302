/* The evaluation kinds' cached per-shard partials (issue 17's open part,
 * aggregator/query_evalcache.c), against a real redis-server:
 *   - a warm answer (accuracy, faults, contribution and personalize --by
 *     accuracy) is the cold one exactly (every value, bit for bit), and
 *     the warm query read the cached values, not the updates nor the
 *     global model (bytes_read is the cached values' bytes);
 *   - a rewritten update, and a new evaluation set, make the cached values
 *     stale: the next answer is the freshly computed one;
 *   - the cached values are under the job's key prefix fl:{J/ (the job's
 *     ACL user writes them), and a read-only query user, refused the write,
 *     gets the same answer and leaves nothing behind;
 *   - sums bigger than half the updates they came from are not kept;
 *   - the evaluated numbers (query_evalres.h) answer a warm query alone
 *     (only their bytes read), bit for bit as cold, the job's user writes
 *     them and a read-only user reads them, and new weights (metadata
 *     written again) make them stale;
 *   - personalize's model is cached as the series J/p: a warm query reads
 *     it (the numbers and the model's bytes only) bit for bit as built; a
 *     piece written over, or another K, builds it again; deleting the
 *     round deletes it.
 * Each case has its own job (the cases share one server). */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/query.h"
#include "aggregator/reduce_scatter.h"
#include "cache/keys.h"
#include "cache/store_raw.h"
#include "tests/harness.h"

#define S 3
/* Evaluation samples: few, so that the cached sums are under half the
 * updates' bytes (query_evalwork.c keeps them only then). */
#define NS 3
#define IN 48
#define HID 5
#define C 3
#define N 5
#define P (IN * HID + HID + HID * C + C)

static flc_fixture_t g_fx;

typedef struct marg {
    const char *job;
    const char **exp;
    uint32_t shard;
} marg_t;

static flc_store_t *open_url(const char *url)
{
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(url, NULL, &e);
    if (s == NULL)
        flc_t_fatal("connect: %s", e.msg);
    return s;
}

static void *merger(void *p)
{
    marg_t *a = p;
    flc_err_t e = {0};
    flc_store_t *s = open_url(g_fx.unix_url);
    flc_rs_merger_cfg_t c = {.job = a->job, .round = 1, .shard = a->shard, .num_shards = S,
                             .model_size = P, .expected = a->exp, .n_expected = N,
                             .deadline_ms = 10000, .readers = 1};
    flc_merge_rule_init(&c.rule, "fedavg", NULL);
    flc_rs_report_t rep;
    if (flc_rs_merger_run(s, &c, &rep, &e) != 0)
        printf("# merger: %s\n", e.msg);
    flc_rs_report_free(&rep);
    flc_store_close(s);
    return NULL;
}

#define NS_BIG 40 /* samples whose sums outweigh the updates: not kept */
static size_t g_ns = NS;  /* the evaluation set's samples and the queries' */

static void put_evalset(flc_store_t *s, const char *job, unsigned seed)
{
    static float x[NS_BIG * IN];
    static int32_t y[NS_BIG];
    flc_t_fill(x, g_ns * IN, seed);
    for (size_t i = 0; i < g_ns; i++)
        y[i] = (int32_t)((i * 7 + seed) % C);
    flc_query_evalset_t es = {.kind = FLC_QUERY_MODEL_MLP, .in = IN, .hidden = HID, .out = C,
                              .n = g_ns, .x = x, .y = y};
    flc_err_t e = {0};
    if (flc_query_evalset_put(s, job, &es, &e) != 0)
        flc_t_fatal("eval set: %s", e.msg);
}

/* Job `job`: an mlp's evaluation set, global model of round 0 and round 1
 * with N clients' updates in S shards, merged. */
static void store_job(const char *job)
{
    flc_store_t *s = open_url(g_fx.unix_url);
    put_evalset(s, job, 77);
    float g[P], u[P];
    flc_t_fill(g, P, 11);
    flc_shard_t gs = {.round = 0, .num_shards = 1, .count = P, .model_size = P, .values = g};
    snprintf(gs.job, sizeof gs.job, "%s/g", job);
    if (flc_store_put_merged(s, &gs) != 0)
        flc_t_fatal("global: %s", flc_store_errstr(s));
    static char names[N][8];
    const char *exp[N];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "c%d", i);
        exp[i] = names[i];
    }
    pthread_t th[S];
    marg_t ma[S];
    for (uint32_t k = 0; k < S; k++) {
        ma[k] = (marg_t){job, exp, k};
        pthread_create(&th[k], NULL, merger, &ma[k]);
    }
    flc_err_t e = {0};
    for (int i = 0; i < N; i++) {
        flc_t_fill(u, P, 100 + (unsigned)i);
        flc_rs_push_cfg_t pc = {.job = job, .round = 1, .client = names[i], .num_shards = S,
                                .model_size = P, .num_samples = 10 + (uint64_t)i};
        if (flc_rs_push(s, &pc, u, &e) != 0)
            flc_t_fatal("push: %s", e.msg);
    }
    for (uint32_t k = 0; k < S; k++)
        pthread_join(th[k], NULL);
    flc_store_close(s);
}

static Flcache__QueryAnswer *ask(const char *url, const char *job, flc_query_kind_t kind,
                                 int no_cache)
{
    flc_store_t *s = open_url(url);
    flc_query_req_t q = {.kind = kind, .job = job, .round_from = 1, .round_to = 1, .k = 3,
                         .by_accuracy = kind != FLC_Q_ACCURACY && kind != FLC_Q_FAULTS,
                         .samples = g_ns, .url = url, .no_cache = no_cache};
    Flcache__QueryAnswer *a = NULL;
    flc_err_t e = {0};
    if (flc_query_run(s, &q, &a, &e) != 0)
        printf("# query %s of %s: %s\n", flc_query_kind_name(kind), job, e.msg);
    flc_store_close(s);
    return a;
}

/* Same rows, keys and values bit for bit, and the same summary. */
static int same(const Flcache__QueryAnswer *a, const Flcache__QueryAnswer *b)
{
    if (a == NULL || b == NULL || a->n_rows != b->n_rows || a->n_rows == 0 ||
        a->n_summary != b->n_summary)
        return 0;
    for (size_t i = 0; i < a->n_rows; i++) {
        const Flcache__QueryRow *x = a->rows[i], *y = b->rows[i];
        if (strcmp(x->key, y->key) != 0 || x->n_values != y->n_values)
            return 0;
        if (x->n_values && memcmp(x->values, y->values, x->n_values * sizeof *x->values) != 0)
            return 0;
    }
    for (size_t i = 0; i < a->n_summary; i++)
        if (strcmp(a->summary[i]->key, b->summary[i]->key) != 0 ||
            memcmp(&a->summary[i]->value, &b->summary[i]->value, sizeof(double)) != 0)
            return 0;
    return 1;
}

/* The answer's note `key`, NULL when it has none. */
static const char *note(const Flcache__QueryAnswer *a, const char *key)
{
    for (size_t i = 0; a && i < a->n_notes; i++)
        if (strcmp(a->notes[i]->key, key) == 0)
            return a->notes[i]->value;
    return NULL;
}

static void drop(Flcache__QueryAnswer *a)
{
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
}

/* The job's cached values: how many keys, the bytes they hold (without the
 * 16 framing bytes of each), and whether every key starts with fl:{J/. */
static size_t cached(const char *job, uint64_t *bytes, int *under_job)
{
    flc_store_t *s = open_url(g_fx.unix_url);
    char pat[128], pre[96];
    snprintf(pat, sizeof pat, "fl:{%s*:evsum", job);
    snprintf(pre, sizeof pre, "fl:{%s/", job);
    const char *kv[] = {"KEYS", pat};
    redisReply *r = NULL;
    if (flc_store_command(s, &r, 2, kv, NULL) != 0 || r->type != REDIS_REPLY_ARRAY)
        flc_t_fatal("KEYS %s: %s", pat, flc_store_errstr(s));
    size_t n = r->elements;
    *bytes = 0;
    *under_job = 1;
    for (size_t i = 0; i < n; i++) {
        const char *key = r->element[i]->str;
        *under_job &= strncmp(key, pre, strlen(pre)) == 0;
        const char *hv[] = {"HVALS", key};
        redisReply *v = NULL;
        if (flc_store_command(s, &v, 2, hv, NULL) != 0 || v->type != REDIS_REPLY_ARRAY)
            flc_t_fatal("HVALS %s", key);
        for (size_t f = 0; f < v->elements; f++)
            *bytes += (uint64_t)v->element[f]->len;
        *bytes -= 16;
        freeReplyObject(v);
    }
    freeReplyObject(r);
    flc_store_close(s);
    return n;
}

/* Bytes of the cached value of (job, round, shard) (without its framing),
 * 0 when none. */
static uint64_t key_bytes(const char *job, uint32_t round, uint32_t shard, uint32_t ns)
{
    char tag[FLC_TAG_MAX], key[FLC_KEY_MAX];
    flc_key_shard_tag(tag, job, shard, ns);
    flc_key_shard(key, tag, round, "evsum");
    flc_store_t *s = open_url(g_fx.unix_url);
    const char *hv[] = {"HVALS", key};
    redisReply *v = NULL;
    if (flc_store_command(s, &v, 2, hv, NULL) != 0 || v->type != REDIS_REPLY_ARRAY)
        flc_t_fatal("HVALS %s", key);
    uint64_t b = 0;
    for (size_t f = 0; f < v->elements; f++)
        b += (uint64_t)v->element[f]->len;
    freeReplyObject(v);
    flc_store_close(s);
    return b ? b - 16 : 0;
}

/* The key of the job's cached numbers of round 1 (shard 0's tag). */
static void numbers_key(const char *job, char *key)
{
    char tag[FLC_TAG_MAX];
    flc_key_shard_tag(tag, job, 0, S);
    flc_key_shard(key, tag, 1, "evres");
}

/* Bytes of the job's cached numbers of round 1, 0 when none. */
static uint64_t numbers_bytes(const char *job)
{
    char key[FLC_KEY_MAX];
    numbers_key(job, key);
    flc_store_t *s = open_url(g_fx.unix_url);
    const char *sl[] = {"STRLEN", key};
    redisReply *r = NULL;
    if (flc_store_command(s, &r, 2, sl, NULL) != 0 || r->type != REDIS_REPLY_INTEGER)
        flc_t_fatal("STRLEN %s", key);
    uint64_t b = (uint64_t)r->integer;
    freeReplyObject(r);
    flc_store_close(s);
    return b;
}

/* Drops the job's cached numbers of round 1 (the next query with the
 * cache answers from the cached products). */
static void unnumber(const char *job)
{
    char key[FLC_KEY_MAX];
    numbers_key(job, key);
    flc_store_t *s = open_url(g_fx.unix_url);
    const char *del[] = {"DEL", key};
    if (flc_store_command(s, NULL, 2, del, NULL) != 0)
        flc_t_fatal("DEL %s", key);
    flc_store_close(s);
}

/* Drops the job's cached values, the round's and the global model's, and
 * its cached numbers (the next query with the cache is cold). */
static void uncache(const char *job)
{
    unnumber(job);
    for (uint32_t k = 0; k <= S; k++) {
        char tag[FLC_TAG_MAX], key[FLC_KEY_MAX], gj[64];
        snprintf(gj, sizeof gj, "%s/g", job);
        if (k < S)
            flc_key_shard_tag(tag, job, k, S);
        else
            flc_key_shard_tag(tag, gj, 0, 1);
        flc_key_shard(key, tag, k < S ? 1 : 0, "evsum");
        flc_store_t *s = open_url(g_fx.unix_url);
        const char *del[] = {"DEL", key};
        if (flc_store_command(s, NULL, 2, del, NULL) != 0)
            flc_t_fatal("DEL %s", key);
        flc_store_close(s);
    }
}

static void setup(void)
{
    flc_fixture_start(&g_fx, 0);
}

/* With 40 samples every shard's sums (40 x 5 floats a row) outweigh its
 * updates (87-88 floats): reading them back would move more than reading
 * the updates, so nothing is kept and a second query recomputes. */
TEST(sums_bigger_than_the_updates_are_not_kept)
{
    g_ns = NS_BIG;
    store_job("ebig");
    Flcache__QueryAnswer *cold = ask(g_fx.unix_url, "ebig", FLC_Q_ACCURACY, 0);
    unnumber("ebig"); /* (the numbers are kept: they are small) */
    Flcache__QueryAnswer *again = ask(g_fx.unix_url, "ebig", FLC_Q_ACCURACY, 0);
    uint64_t bytes = 0;
    int under = 0;
    size_t nk = cached("ebig", &bytes, &under);
    CHECK(cold && again && same(cold, again), "two answers, equal");
    EXPECT(nk == 0 && again->bytes_read == cold->bytes_read &&
               cold->bytes_read == (N + 2) * P * sizeof(float),
           "no cached value (%zu), the second query read the updates again (%llu bytes, "
           "first %llu)", nk, (unsigned long long)(again ? again->bytes_read : 0),
           (unsigned long long)(cold ? cold->bytes_read : 0));
    flcache__query_answer__free_unpacked(cold, NULL);
    flcache__query_answer__free_unpacked(again, NULL);
    g_ns = NS;
}

static void teardown(void)
{
    flc_fixture_stop(&g_fx);
}

TEST(warm_equals_cold)
{
    store_job("ewc");
    static const flc_query_kind_t kinds[] = {FLC_Q_ACCURACY, FLC_Q_FAULTS, FLC_Q_CONTRIBUTION,
                                             FLC_Q_PERSONALIZE};
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++) {
        uncache("ewc");
        Flcache__QueryAnswer *ref = ask(g_fx.unix_url, "ewc", kinds[k], 1); /* bypass */
        Flcache__QueryAnswer *cold = ask(g_fx.unix_url, "ewc", kinds[k], 0);
        unnumber("ewc"); /* the products, not the numbers */
        Flcache__QueryAnswer *warm = ask(g_fx.unix_url, "ewc", kinds[k], 0);
        uint64_t nb = numbers_bytes("ewc");
        Flcache__QueryAnswer *num = ask(g_fx.unix_url, "ewc", kinds[k], 0);
        uint64_t bytes = 0;
        int under = 0;
        size_t nk = cached("ewc", &bytes, &under);
        const char *kn = flc_query_kind_name(kinds[k]);
        CHECK(ref && cold && warm && num, "%s: four answers", kn);
        EXPECT(same(ref, cold) && same(cold, warm) && same(warm, num), "%s: --no-cache, cold, "
               "warm from the cached products and warm from the cached numbers: answers "
               "equal bit for bit (%zu rows)", kn, ref->n_rows);
        EXPECT(nb > 0 && num->bytes_read == nb && num->bytes_moved == nb,
               "%s: from the numbers, only their %llu bytes read and moved (read %llu, "
               "moved %llu)", kn, (unsigned long long)nb, (unsigned long long)num->bytes_read,
               (unsigned long long)num->bytes_moved);
        const char *said = note(num, "cached");
        EXPECT(said && strstr(said, "1 of 1 round") && !note(cold, "cached") &&
                   !note(warm, "cached"),
               "%s: the answer from the numbers says so (\"%s\"), the computed ones do not",
               kn, said ? said : "(no note)");
        EXPECT(nk == S + 1 && under && ref->bytes_read == (N + 2) * P * sizeof(float) &&
                   cold->bytes_read == ref->bytes_read && warm->bytes_read == bytes,
               "%s: %zu cached values (want %d: the shards' and the global model's); read "
               "%llu bytes cold (updates, aggregate, global), %llu warm (want the %llu cached "
               "bytes)", kn, nk, S + 1,
               (unsigned long long)cold->bytes_read, (unsigned long long)warm->bytes_read,
               (unsigned long long)bytes);
        EXPECT(warm->bytes_moved == cold->bytes_moved, "%s: the same %llu bytes of sums "
               "leave the nodes cold and warm", kn, (unsigned long long)warm->bytes_moved);
        drop(ref), drop(cold), drop(warm), drop(num);
    }
}

/* A client's metadata written with another num_samples (its update
 * untouched): the FedAvg and leave-one-out numbers depend on the weights,
 * so the cached numbers no longer fit and are computed again. */
TEST(new_weights_invalidate_the_numbers)
{
    store_job("eww");
    Flcache__QueryAnswer *before = ask(g_fx.unix_url, "eww", FLC_Q_CONTRIBUTION, 0);
    uint64_t nb = numbers_bytes("eww");
    flc_store_t *s = open_url(g_fx.unix_url);
    /* (the pushes wrote no metadata: every weight was 1) */
    Flcache__ModelUpdate u = FLCACHE__MODEL_UPDATE__INIT;
    u.job = "eww", u.round = 1, u.client = "c3", u.num_samples = 1000;
    CHECK(flc_store_put_update_meta(s, &u) == 0, "c3's metadata written: num_samples 1000 "
          "(the weight was 1) (%s)", flc_store_errstr(s));
    flc_store_close(s);
    Flcache__QueryAnswer *after = ask(g_fx.unix_url, "eww", FLC_Q_CONTRIBUTION, 0);
    Flcache__QueryAnswer *fresh = ask(g_fx.unix_url, "eww", FLC_Q_CONTRIBUTION, 1);
    CHECK(before && after && fresh, "three answers");
    EXPECT(nb > 0 && same(after, fresh) && !same(before, after) && after->bytes_read > nb,
           "after the new weight the answer is computed again (%llu bytes read, the numbers "
           "are %llu) and equals --no-cache's, not the one before", 
           (unsigned long long)after->bytes_read, (unsigned long long)nb);
    drop(before), drop(after), drop(fresh);
}

/* Client c2's update of shard 1 written again with other values (as a
 * repair would): the cached values of shard 1 no longer fit. */
TEST(rewritten_update_invalidates)
{
    store_job("ewr");
    Flcache__QueryAnswer *before = ask(g_fx.unix_url, "ewr", FLC_Q_ACCURACY, 0);
    Flcache__QueryAnswer *warm = ask(g_fx.unix_url, "ewr", FLC_Q_ACCURACY, 0);
    CHECK(same(before, warm), "warm answer before the rewrite equals the cold one");
    flc_store_t *s = open_url(g_fx.unix_url);
    flc_shard_t sh = {0};
    if (flc_store_get_update(s, "ewr", 1, 1, "c2", &sh, NULL, 0) != 0)
        flc_t_fatal("get: %s", flc_store_errstr(s));
    float v[P];
    memcpy(v, sh.values, sh.count * sizeof *v);
    for (uint64_t x = 0; x < sh.count; x++)
        v[x] = -3.0f * v[x];
    sh.values = v;
    sh.created_ms += 1;
    flc_store_put_update(s, &sh); /* refused arrival (closed); the value is replaced */
    flc_shard_t back = {0};
    CHECK(flc_store_get_update(s, "ewr", 1, 1, "c2", &back, NULL, 0) == 0 &&
              back.values[0] == v[0],
          "c2's update of shard 1 now holds the new values (%g)", (double)v[0]);
    flc_shard_release(&back);
    flc_shard_release(&sh);
    flc_store_close(s);
    Flcache__QueryAnswer *after = ask(g_fx.unix_url, "ewr", FLC_Q_ACCURACY, 0);
    Flcache__QueryAnswer *fresh = ask(g_fx.unix_url, "ewr", FLC_Q_ACCURACY, 1);
    CHECK(after && fresh && after->n_rows == N, "answers after the rewrite");
    EXPECT(same(after, fresh), "after the rewrite the cached answer is the recomputed one");
    const Flcache__QueryRow *r0 = before->rows[2], *r1 = after->rows[2];
    EXPECT(strcmp(r1->key, "c2") == 0 && r0->values[1] != r1->values[1],
           "c2's loss changed with its update: %.6f before, %.6f after", r0->values[1],
           r1->values[1]);
    uint64_t o1, n1;
    flc_rs_shard_range(P, S, 1, &o1, &n1);
    uint64_t want = key_bytes("ewr/g", 0, 0, 1) + key_bytes("ewr", 1, 0, S) +
                    key_bytes("ewr", 1, 2, S) + (N + 1) * n1 * sizeof(float);
    EXPECT(after->bytes_read == want, "only the stale shard was read again: %llu bytes read "
           "(want the global model's, shard 0's and 2's cached sums, shard 1's %d updates: "
           "%llu)",
           (unsigned long long)after->bytes_read, N + 1, (unsigned long long)want);
    drop(before), drop(warm), drop(after), drop(fresh);
}

TEST(new_eval_set_invalidates)
{
    store_job("ewe");
    Flcache__QueryAnswer *old = ask(g_fx.unix_url, "ewe", FLC_Q_ACCURACY, 0);
    flc_store_t *s = open_url(g_fx.unix_url);
    put_evalset(s, "ewe", 78); /* other inputs and labels */
    flc_store_close(s);
    Flcache__QueryAnswer *now = ask(g_fx.unix_url, "ewe", FLC_Q_ACCURACY, 0);
    Flcache__QueryAnswer *fresh = ask(g_fx.unix_url, "ewe", FLC_Q_ACCURACY, 1);
    CHECK(old && now && fresh, "three answers");
    EXPECT(!same(old, now) && same(now, fresh), "with a new evaluation set the answer is the "
           "recomputed one, not the cached one (c0's accuracy %.3f before, %.3f now)",
           old->rows[0]->values[0], now->rows[0]->values[0]);
    EXPECT(now->bytes_read == fresh->bytes_read, "and every update was read again (%llu bytes)",
           (unsigned long long)now->bytes_read);
    drop(old), drop(now), drop(fresh);
}

/* The job's ACL user (pattern fl:{J/ and a star) writes the cached values; the read-only
 * query user of docs/architecture.md is refused and computes each time. */
TEST(cache_key_under_job_pattern)
{
    store_job("ewa");
    flc_store_t *admin = open_url(g_fx.unix_url);
    const char *u1[] = {"ACL", "SETUSER", "ewajob", "on", ">pw", "~fl:{ewa/*", "+@all"};
    const char *u2[] = {"ACL", "SETUSER", "ewaq", "on", ">pw", "%R~fl:{ewa/*", "+@all",
                        "-@write"};
    CHECK(flc_store_command(admin, NULL, 7, u1, NULL) == 0 &&
              flc_store_command(admin, NULL, 8, u2, NULL) == 0,
          "ACL users: the job's and a read-only query user");
    const char *hp = g_fx.tcp_url + strlen("redis://");
    char ujob[256], uq[256];
    snprintf(ujob, sizeof ujob, "redis://ewajob:pw@%s", hp);
    snprintf(uq, sizeof uq, "redis://ewaq:pw@%s", hp);
    Flcache__QueryAnswer *ro = ask(uq, "ewa", FLC_Q_ACCURACY, 0);
    uint64_t bytes = 0;
    int under = 0;
    size_t n0 = cached("ewa", &bytes, &under);
    Flcache__QueryAnswer *job = ask(ujob, "ewa", FLC_Q_ACCURACY, 0);
    size_t n1 = cached("ewa", &bytes, &under);
    uint64_t nb = numbers_bytes("ewa");
    char nkey[FLC_KEY_MAX];
    numbers_key("ewa", nkey);
    unnumber("ewa");
    Flcache__QueryAnswer *warm = ask(uq, "ewa", FLC_Q_ACCURACY, 0);
    Flcache__QueryAnswer *num = ask(ujob, "ewa", FLC_Q_ACCURACY, 0);
    Flcache__QueryAnswer *ronum = ask(uq, "ewa", FLC_Q_ACCURACY, 0);
    CHECK(ro && job && warm && num && ronum, "answers for both users");
    EXPECT(n0 == 0 && same(ro, job), "the read-only user's query cached nothing (%zu values) "
           "and answered as the job's user does", n0);
    EXPECT(nb > 0 && strncmp(nkey, "fl:{ewa/", 8) == 0 && same(num, ronum) &&
               ronum->bytes_read == nb,
           "the job's user cached the numbers (%llu bytes at %s), the read-only user answers "
           "from them (%llu bytes read)", (unsigned long long)nb, nkey,
           (unsigned long long)ronum->bytes_read);
    drop(num), drop(ronum);
    EXPECT(n1 == S + 1 && under, "the job's user cached %zu values (want %d), every key "
           "under fl:{ewa/", n1, S + 1);
    EXPECT(same(job, warm) && warm->bytes_read == bytes,
           "the read-only user reads them: same answer, %llu bytes read (the %llu cached "
           "bytes)", (unsigned long long)warm->bytes_read,
           (unsigned long long)bytes);
    drop(ro), drop(job), drop(warm);
    flc_store_close(admin);
}

/* personalize --by accuracy with the model, K members (0: the default). */
static Flcache__QueryAnswer *ask_model(const char *job, unsigned k, int no_cache, float **model)
{
    flc_store_t *s = open_url(g_fx.unix_url);
    uint64_t len = 0;
    *model = NULL;
    flc_query_req_t q = {.kind = FLC_Q_PERSONALIZE, .job = job, .round_from = 1, .round_to = 1,
                         .k = k, .by_accuracy = 1, .samples = g_ns, .url = g_fx.unix_url,
                         .no_cache = no_cache, .model_out = model, .model_len = &len};
    Flcache__QueryAnswer *a = NULL;
    flc_err_t e = {0};
    if (flc_query_run(s, &q, &a, &e) != 0)
        printf("# personalize of %s: %s\n", job, e.msg);
    if (a && len != P)
        printf("# personalize of %s: a model of %llu floats\n", job, (unsigned long long)len);
    flc_store_close(s);
    return a;
}

/* Shards listed for round 1 of the job's series J/p (its cached models). */
static size_t pieces(const char *job)
{
    char pj[64];
    snprintf(pj, sizeof pj, "%s/p", job);
    flc_store_t *s = open_url(g_fx.unix_url);
    uint32_t *sh = NULL;
    size_t n = 0;
    (void)flc_store_list_shards(s, pj, 1, &sh, &n);
    free(sh);
    flc_store_close(s);
    return n;
}

TEST(personalized_model_cached)
{
    store_job("epm");
    float *ref = NULL, *built = NULL, *warm = NULL, *rebuilt = NULL, *k2 = NULL, *back = NULL;
    Flcache__QueryAnswer *a0 = ask_model("epm", 0, 1, &ref);
    size_t p0 = pieces("epm");
    Flcache__QueryAnswer *a1 = ask_model("epm", 0, 0, &built);
    size_t p1 = pieces("epm");
    uint64_t nb = numbers_bytes("epm");
    Flcache__QueryAnswer *a2 = ask_model("epm", 0, 0, &warm);
    CHECK(a0 && a1 && a2 && ref && built && warm, "three answers with their models");
    size_t pb = P * sizeof(float);
    EXPECT(p0 == 0 && p1 == S, "--no-cache cached no model (%zu pieces), the first query "
           "with the cache wrote it in %zu pieces (want %d)", p0, p1, S);
    EXPECT(memcmp(ref, built, pb) == 0 && memcmp(built, warm, pb) == 0 && same(a0, a2),
           "the model read back is the built one bit for bit, and so is the answer");
    EXPECT(note(a2, "cached_model") && !note(a1, "cached_model") && !note(a0, "cached_model"),
           "only the warm answer says it read the cached model");
    EXPECT(a2->bytes_read == nb + pb, "warm: read the numbers and the model, %llu bytes "
           "(want %llu + %zu)", (unsigned long long)a2->bytes_read, (unsigned long long)nb, pb);
    /* A piece written over (another model's): built again, and cached anew. */
    flc_store_t *s = open_url(g_fx.unix_url);
    float junk[P];
    flc_t_fill(junk, P, 999);
    uint64_t o, n;
    flc_rs_shard_range(P, S, 1, &o, &n);
    flc_shard_t sh = {.job = "epm/p", .round = 1, .shard = 1, .num_shards = S, .offset = o,
                      .count = n, .model_size = P, .values = junk + o};
    CHECK(flc_store_put_merged(s, &sh) == 0, "piece 1 written over");
    Flcache__QueryAnswer *a3 = ask_model("epm", 0, 0, &rebuilt);
    Flcache__QueryAnswer *a4 = ask_model("epm", 2, 0, &k2);
    Flcache__QueryAnswer *a5 = ask_model("epm", 0, 0, &back);
    CHECK(a3 && a4 && a5 && rebuilt && k2 && back, "three more answers");
    EXPECT(memcmp(rebuilt, ref, pb) == 0 && !note(a3, "cached_model"),
           "a piece written over is not used: the model built again, equal to the reference");
    EXPECT(memcmp(k2, ref, pb) != 0 && !note(a4, "cached_model") &&
               memcmp(back, ref, pb) == 0 && !note(a5, "cached_model"),
           "K = 2 builds its own model (not the default K's, 5), and the default K "
           "after it builds its own again");
    CHECK(flc_store_delete_round(s, "epm", 1) == 0, "round 1 deleted");
    const char *ex[] = {"EXISTS", NULL};
    char key[FLC_KEY_MAX], tag[FLC_TAG_MAX];
    long long left = 0;
    for (uint32_t k = 0; k < S; k++) {
        flc_key_shard_tag(tag, "epm/p", k, S);
        flc_key_shard(key, tag, 1, "agg");
        ex[1] = key;
        redisReply *r = NULL;
        if (flc_store_command(s, &r, 2, ex, NULL) == 0 && r->type == REDIS_REPLY_INTEGER)
            left += r->integer;
        freeReplyObject(r);
    }
    EXPECT(left == 0 && pieces("epm") == 0, "deleting the round deleted the cached model "
           "(%lld pieces left)", left);
    flc_store_close(s);
    drop(a0), drop(a1), drop(a2), drop(a3), drop(a4), drop(a5);
    free(ref), free(built), free(warm), free(rebuilt), free(k2), free(back);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(warm_equals_cold),
                 TEST_ENTRY(personalized_model_cached),
                 TEST_ENTRY(new_weights_invalidate_the_numbers),
                 TEST_ENTRY(rewritten_update_invalidates), TEST_ENTRY(new_eval_set_invalidates),
                 TEST_ENTRY(cache_key_under_job_pattern),
                 TEST_ENTRY(sums_bigger_than_the_updates_are_not_kept))
