/* Least privilege on a real redis-server (issue 13; docs/architecture.md
 * "Access control"): a whole round of job R run with one Redis user per
 * role -- each shard's merger confined to its shard, clients to their own
 * keys, the driver to the job, queries read-only -- and each user refused
 * what its role must not do: a merger writing another shard's records or
 * merged shard or a client's update, the query user writing anything (the
 * query computes without its Gram cache), a job's users reading another
 * job. tests/test_keys.c has the client/job layout this builds on. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/query.h"
#include "aggregator/reduce_scatter.h"
#include "base/clock.h"
#include "cache/keys.h"
#include "cache/store_ops.h"
#include "cache/store_raw.h"
#include "tests/harness.h"

#define ACL_S 2
#define ACL_N 10

static flc_fixture_t fx;
static const char *const acl_clients[] = {"c1", "c2"};

static void setup(void)
{
    flc_fixture_start(&fx, 0);
}

static void teardown(void)
{
    flc_fixture_stop(&fx);
}

static flc_store_t *open_url(const char *url)
{
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(url, NULL, &e);
    if (s == NULL)
        flc_t_fatal("connect to %s: %s", url, flc_err_msg(&e));
    return s;
}

/* redis://user:pw@host:port from the fixture's TCP URL. */
static void user_url(char *out, size_t cap, const char *user)
{
    const char *hp = fx.tcp_url + strlen("redis://");
    snprintf(out, cap, "redis://%s:pw@%s", user, hp);
}

typedef struct role_merger {
    char url[512];
    uint32_t shard;
    int rc;
    flc_rs_report_t rep;
    char err[FLC_ERRMSG_LEN];
} role_merger_t;

static void *role_merge(void *p)
{
    role_merger_t *m = p;
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(m->url, NULL, &e);
    if (s == NULL) {
        m->rc = e.code;
        snprintf(m->err, sizeof m->err, "%s", e.msg);
        return NULL;
    }
    flc_rs_merger_cfg_t mc = {.job = "R", .round = 1, .shard = m->shard, .num_shards = ACL_S,
                              .model_size = ACL_N, .expected = acl_clients, .n_expected = 2,
                              .deadline_ms = 10000, .readers = 1, .derive_stats = 1,
                              .driver_records = 1};
    flc_merge_rule_init(&mc.rule, "fedavg", NULL);
    m->rc = flc_rs_merger_run(s, &mc, &m->rep, &e);
    snprintf(m->err, sizeof m->err, "%s", e.msg);
    flc_store_close(s);
    return NULL;
}

static int setuser(flc_store_t *admin, const char *const *rules, int n)
{
    const char *argv[24] = {"ACL", "SETUSER"};
    for (int i = 0; i < n; i++)
        argv[2 + i] = rules[i];
    return flc_store_command(admin, NULL, 2 + n, argv, NULL);
}

/* The layout of docs/architecture.md ("Access control"), one user per role,
 * through a whole round of job R (2 shards, clients c1 and c2): each
 * shard's merger as its own user, clients as theirs, the pull as the
 * driver (the job's user), queries as a read-only user. Then each user
 * trying what its role must not do. */
TEST(acl_user_per_role_round)
{
    flc_store_t *admin = open_url(fx.unix_url);
    char t0[FLC_TAG_MAX], t1[FLC_TAG_MAX];
    flc_key_shard_tag(t0, "R", 0, ACL_S);
    flc_key_shard_tag(t1, "R", 1, ACL_S);
    int ok = 1;
    for (uint32_t k = 0; k < ACL_S; k++) {
        char name[8], r[5][128], own[32];
        const char *tag = k ? t1 : t0;
        snprintf(name, sizeof name, "m%u", k);
        snprintf(r[0], sizeof r[0], "~fl:{%s}:r:*", tag);     /* its round data */
        snprintf(r[1], sizeof r[1], "~fl:{%s}:opt", tag);     /* its optimizer state */
        snprintf(r[2], sizeof r[2], "~fl:{%s}:c:*:a:*", tag); /* arrivals it consumes */
        snprintf(own, sizeof own, "~fl:{R/j}:s%u:*", k);      /* its records */
        /* The driver opens the round (schema, roster, clients, round and
         * shard indexes) and writes its RoundMeta (driver_records): the
         * merger writes its own shard's keys and records only. */
        const char *rules[] = {name, "reset", "on", ">pw", "%R~fl:{R/*", r[0], r[1], r[2], own,
                               "+@all"};
        ok &= setuser(admin, rules, 10) == 0;
    }
    static const char *const c1[] = {"rc1", "reset", "on", ">pw", "%R~fl:{R/*",
                                     "~fl:{R/*}:c:c1:*", "+@all"};
    static const char *const c2[] = {"rc2", "reset", "on", ">pw", "%R~fl:{R/*",
                                     "~fl:{R/*}:c:c2:*", "+@all"};
    static const char *const drv[] = {"driverR", "reset", "on", ">pw", "~fl:{R/*", "+@all"};
    static const char *const qry[] = {"queryR", "reset", "on", ">pw", "%R~fl:{R/*", "+@all",
                                      "-@write"};
    ok &= setuser(admin, c1, 7) == 0 && setuser(admin, c2, 7) == 0 &&
          setuser(admin, drv, 6) == 0 && setuser(admin, qry, 7) == 0;
    CHECK(ok, "users m0 m1 (shard-scoped), rc1 rc2, driverR, queryR (%%R~fl:{R/* -@write) "
          "created (%s)", flc_store_errstr(admin));

    char um[ACL_S][256], u1[256], u2[256], ud[256], uq[256];
    for (uint32_t k = 0; k < ACL_S; k++) {
        char name[8];
        snprintf(name, sizeof name, "m%u", k);
        user_url(um[k], sizeof um[k], name);
    }
    user_url(u1, sizeof u1, "rc1");
    user_url(u2, sizeof u2, "rc2");
    user_url(ud, sizeof ud, "driverR");
    user_url(uq, sizeof uq, "queryR");
    /* The driver opens the round: the job's schema, indexes and roster. */
    flc_store_t *sd = open_url(ud);
    int ob = 0;
    for (uint32_t k = 0; k < ACL_S; k++)
        ob |= flc_store_round_begin(sd, "R", ACL_S, 1, k, acl_clients, 2);
    CHECK(ob == 0, "driverR opens round 1 (%s)", flc_store_errstr(sd));
    role_merger_t m[ACL_S];
    pthread_t th[ACL_S];
    for (uint32_t k = 0; k < ACL_S; k++) {
        memset(&m[k], 0, sizeof m[k]);
        snprintf(m[k].url, sizeof m[k].url, "%s", um[k]);
        m[k].shard = k;
        pthread_create(&th[k], NULL, role_merge, &m[k]);
    }
    flc_sleep_ms(200);
    flc_store_t *s1 = open_url(u1), *s2 = open_url(u2);
    float v1[ACL_N], v2[ACL_N];
    for (int i = 0; i < ACL_N; i++)
        v1[i] = (float)i, v2[i] = (float)(3 * i);
    flc_err_t e1 = {0}, e2 = {0};
    flc_rs_push_cfg_t p1 = {.job = "R", .round = 1, .client = "c1", .num_shards = ACL_S,
                            .model_size = ACL_N, .num_samples = 1};
    flc_rs_push_cfg_t p2 = p1;
    p2.client = "c2";
    int r1 = flc_rs_push(s1, &p1, v1, &e1), r2 = flc_rs_push(s2, &p2, v2, &e2);
    Flcache__ModelUpdate mu = FLCACHE__MODEL_UPDATE__INIT;
    mu.job = "R", mu.round = 1, mu.client = "c1", mu.num_samples = 1;
    int rm = flc_store_put_update_meta(s1, &mu);
    mu.client = "c2";
    rm |= flc_store_put_update_meta(s2, &mu);
    for (uint32_t k = 0; k < ACL_S; k++)
        pthread_join(th[k], NULL);
    CHECK(r1 == 0 && r2 == 0 && rm == 0, "clients push updates and metadata as rc1, rc2 (%s%s)",
          e1.msg, e2.msg);
    CHECK(m[0].rc == 0 && m[1].rc == 0 && m[0].rep.participants.n == 2 &&
              m[1].rep.participants.n == 2,
          "each shard's merger, as its own user, merged c1 and c2 and wrote its records and "
          "its Gram partial (%s%s)", m[0].err, m[1].err);
    for (uint32_t k = 0; k < ACL_S; k++)
        flc_rs_report_free(&m[k].rep);
    flc_rs_merger_cfg_t fold = {.job = "R", .round = 1, .num_shards = ACL_S,
                                .model_size = ACL_N, .expected = acl_clients, .n_expected = 2};
    flc_merge_rule_init(&fold.rule, "fedavg", NULL);
    flc_err_t ef = {0};
    CHECK(flc_rs_round_meta(sd, &fold, &ef) == 0, "driverR folds the shards' reports into the "
          "round's metadata (%s)", ef.msg);
    float model[ACL_N];
    flc_err_t ed = {0};
    int rp = flc_rs_pull(sd, "R", 1, ACL_S, ACL_N, 5000, model, &ed);
    int mean = rp == 0;
    for (int i = 0; mean && i < ACL_N; i++)
        mean = model[i] == 2.0f * (float)i;
    CHECK(mean, "the driver pulls the merged model, the mean of both (%s)", ed.msg);

    /* Queries as the read-only user: every kind that reads this round; the
     * Gram cache is written by the mergers, so a fresh one is refused and the
     * query computes without it. */
    flc_store_t *sq = open_url(uq);
    static const flc_query_kind_t kinds[] = {FLC_Q_HISTORY, FLC_Q_NORMS, FLC_Q_SIMILARITY,
                                             FLC_Q_CLUSTERS, FLC_Q_CONTRIBUTION,
                                             FLC_Q_SCHEDULE};
    size_t answered = 0;
    char why[600] = "";
    for (size_t i = 0; i < sizeof kinds / sizeof *kinds; i++) {
        flc_query_req_t q = {.kind = kinds[i], .job = "R", .round_from = 1, .round_to = 1,
                             .url = uq, .k = 2};
        Flcache__QueryAnswer *a = NULL;
        flc_err_t eq = {0};
        if (flc_query_run(sq, &q, &a, &eq) == 0 && a && a->n_rows > 0)
            answered++;
        else
            snprintf(why + strlen(why), sizeof why - strlen(why), " %s: %s;",
                     flc_query_kind_name(kinds[i]), eq.msg);
        if (a)
            flcache__query_answer__free_unpacked(a, NULL);
    }
    CHECK(answered == sizeof kinds / sizeof *kinds, "queryR answers history, norms, similarity, "
          "clusters, contribution, schedule (%zu)%s", answered, why);
    for (uint32_t k = 0; k < ACL_S; k++) { /* now without cached partials */
        char gk[FLC_KEY_MAX];
        flc_key_shard(gk, k ? t1 : t0, 1, "gram");
        redisReply *dr = NULL;
        flc_store_commandf(admin, &dr, "DEL %s", gk);
        if (dr)
            freeReplyObject(dr);
    }
    flc_query_req_t q = {.kind = FLC_Q_OUTLIERS, .job = "R", .round_from = 1, .round_to = 1,
                         .url = uq};
    Flcache__QueryAnswer *a = NULL;
    flc_err_t eq = {0};
    int qr = flc_query_run(sq, &q, &a, &eq);
    int rows = a ? (int)a->n_rows : 0;
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
    char *blob = NULL;
    size_t blen = 0;
    int cached = flc_store_gram_get(admin, "R", 1, 0, &blob, &blen) == 0;
    free(blob);
    CHECK(qr == 0 && rows == 2 && !cached, "queryR with no cached partials: answered (%d rows), "
          "computed without caching (%s)", rows, qr ? eq.msg : "nothing cached");
    char cmd[1024];
    static char out[65536];
    snprintf(cmd, sizeof cmd, "FLCACHE_REDIS='%s' %s/flcache query outliers --job R --round 1 "
             "2>&1", uq, flc_t_build_dir());
    int crc = flc_t_run(cmd, out, sizeof out);
    CHECK(crc == 0 && strstr(out, "c1") && strstr(out, "c2") && strstr(out, "pw@") == NULL,
          "`flcache query outliers` as queryR: exit %d, both clients listed", crc);
    int w = flc_store_gram_put(sq, "R", 1, 0, "x", 1);
    EXPECT(w == FLC_EAUTH, "queryR writing a Gram partial: %s", flc_store_errstr(sq));
    Flcache__RoundMeta rmeta = FLCACHE__ROUND_META__INIT;
    rmeta.job = "R", rmeta.round = 1;
    w = flc_store_put_round_meta(sq, &rmeta);
    EXPECT(w == FLC_EAUTH, "queryR writing round metadata: %s", flc_store_errstr(sq));

    /* A merger reaches its own shard only. */
    flc_store_t *sm0 = open_url(um[0]);
    w = flc_store_track_put(sm0, "R", 1, 1, "redis://evil:1|hot||evil:1");
    EXPECT(w == FLC_EAUTH && strstr(flc_store_errstr(sm0), "fl:{R/j}:s1:where:1"),
           "m0 writing shard 1's tracker entry: %s", flc_store_errstr(sm0));
    w = flc_store_merge_report_put(sm0, "R", 1, 1, "{}", NULL);
    EXPECT(w == FLC_EAUTH, "m0 writing shard 1's merge report: %s", flc_store_errstr(sm0));
    float z[ACL_N] = {0};
    flc_shard_t agg = {.round = 1, .shard = 1, .num_shards = ACL_S, .offset = ACL_N / 2,
                       .count = ACL_N - ACL_N / 2, .model_size = ACL_N, .values = z};
    snprintf(agg.job, sizeof agg.job, "R");
    flc_store_job_shards(sm0, "R", ACL_S);
    w = flc_store_put_merged(sm0, &agg);
    EXPECT(w == FLC_EAUTH, "m0 writing shard 1's merged shard: %s", flc_store_errstr(sm0));
    flc_shard_t upd = agg;
    upd.shard = 0, upd.offset = 0, upd.count = ACL_N / 2;
    snprintf(upd.client, sizeof upd.client, "c1");
    w = flc_store_put_update(sm0, &upd);
    EXPECT(w == FLC_EAUTH, "m0 overwriting c1's update of its own shard: %s",
           flc_store_errstr(sm0));
    /* ... nor the round's roster, the job's clients and schema, nor its
     * metadata: the driver's (before: every merger could rewrite them). */
    w = flc_store_round_begin(sm0, "R", ACL_S, 2, 0, acl_clients, 2);
    EXPECT(w == FLC_EAUTH, "m0 opening a round (roster, clients): %s", flc_store_errstr(sm0));
    w = flc_store_put_round_meta(sm0, &rmeta);
    EXPECT(w == FLC_EAUTH, "m0 writing round metadata: %s", flc_store_errstr(sm0));
    /* ... nor the job's round and shard indexes (its merged shard of a
     * driver-opened round is put without them) */
    agg.shard = 0, agg.offset = 0, agg.count = ACL_N / 2;
    w = flc_store_put_merged(sm0, &agg);
    EXPECT(w == FLC_EAUTH, "m0 indexing a round (its own shard's merged put with the "
           "indexes): %s", flc_store_errstr(sm0));
    w = flc_store_put_merged_opened(sm0, &agg);
    EXPECT(w == 0, "m0 putting its own shard's merged shard without the indexes: %s",
           w ? flc_store_errstr(sm0) : "ok");
    w = flc_store_track_put(sm0, "R", 2, 0, "redis://self|hot||self:1");
    EXPECT(w == 0, "m0 writing its own tracker entry: %s", w ? flc_store_errstr(sm0) : "ok");
    /* One job's users do not reach another job. */
    Flcache__RoundMeta *km = NULL;
    w = flc_store_get_round_meta(sd, "K", 1, &km);
    EXPECT(w == FLC_EAUTH, "driverR reading job K: %s", flc_store_errstr(sd));
    w = flc_store_get_round_meta(sq, "J", 1, &km);
    EXPECT(w == FLC_EAUTH, "queryR reading job J: %s", flc_store_errstr(sq));
    flc_store_close(sm0);
    flc_store_close(sq);
    flc_store_close(sd);
    flc_store_close(s1);
    flc_store_close(s2);
    flc_store_close(admin);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(acl_user_per_role_round))
