/* The query engine on a small job with known answers, against a real
 * redis-server: the per-shard Gram partials sum to brute-force dot products
 * over whole vectors; norms, similarity and contribution equal references;
 * two well-separated groups are found exactly by `clusters` and
 * `personalize` returns one group's weighted mean; planted sign-flippers top
 * `outliers` with precision and recall 1; history, client and schedule read
 * the metadata; unknown job, round and client are named; the Gram cache
 * makes a repeated query read nothing next to the data; the `query`
 * function's JSON entry; on one server the node facts of issue 12 (tracker
 * node, the answers' "nodes" note, `store stats`) name the one server and
 * leave the stats output as it was. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "aggregator/query.h"
#include "aggregator/reduce_scatter.h"
#include "aggregator/tracker.h"
#include "cache/store_ops.h"
#include "cache/store_raw.h"
#include "tests/harness.h"

#define N 12
#define NDIM 301
#define S 3

static flc_fixture_t g_fx;
static char g_names[N][8];
static const char *g_exp[N];
static float g_u[2][N][NDIM];   /* round 1 and round 2 updates */
static uint64_t g_samples[N];

typedef struct marg {
    const char *job;
    uint32_t round, shard;
    int rc;
} marg_t;

static void *merger(void *p)
{
    marg_t *a = p;
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(g_fx.unix_url, NULL, &e);
    flc_rs_merger_cfg_t c = {.job = a->job, .round = a->round, .shard = a->shard, .num_shards = S,
                          .model_size = NDIM, .expected = g_exp, .n_expected = N,
                          .deadline_ms = 10000, .readers = 1, .derive_stats = a->round == 2};
    flc_merge_rule_init(&c.rule, "fedavg", NULL);
    flc_rs_report_t rep;
    a->rc = flc_rs_merger_run(s, &c, &rep, &e);
    if (a->rc)
        printf("# merger: %s\n", e.msg);
    flc_rs_report_free(&rep);
    flc_store_close(s);
    return NULL;
}

/* Stores round r of job: every client's update and metadata, then the merge. */
static void store_round(flc_store_t *s, const char *job, uint32_t r)
{
    pthread_t th[S];
    marg_t ma[S];
    for (uint32_t k = 0; k < S; k++) {
        ma[k] = (marg_t){job, r, k, 0};
        pthread_create(&th[k], NULL, merger, &ma[k]);
    }
    flc_err_t e = {0};
    for (int i = 0; i < N; i++) {
        flc_rs_push_cfg_t pc = {.job = job, .round = r, .client = g_names[i], .num_shards = S,
                                .model_size = NDIM, .num_samples = g_samples[i]};
        if (flc_rs_push(s, &pc, g_u[r - 1][i], &e) != 0)
            flc_t_fatal("push: %s", e.msg);
        Flcache__ModelUpdate u = FLCACHE__MODEL_UPDATE__INIT;
        Flcache__ModelUpdate__LabelsEntry lab = FLCACHE__MODEL_UPDATE__LABELS_ENTRY__INIT;
        Flcache__ModelUpdate__LabelsEntry *labs[] = {&lab};
        u.job = (char *)job; /* protobuf-c fields are not const */
        u.round = r;
        u.client = g_names[i];
        u.num_samples = g_samples[i];
        u.loss = 0.5 + 0.1 * i + r;
        u.status = "accepted";
        lab.key = "fault";
        lab.value = (r == 2 && i >= N - 2) ? "sign_flip" : "none";
        u.n_labels = 1;
        u.labels = labs;
        if (flc_store_put_update_meta(s, &u) != 0)
            flc_t_fatal("meta: %s", flc_store_errstr(s));
    }
    for (uint32_t k = 0; k < S; k++)
        pthread_join(th[k], NULL);
}

static double dotd(const float *a, const float *b)
{
    double s = 0;
    for (int x = 0; x < NDIM; x++)
        s += (double)a[x] * b[x];
    return s;
}

static double relerr(double got, double want)
{
    return fabs(got - want) / (fabs(want) + 1e-9);
}

static const Flcache__QueryRow *row_of(const Flcache__QueryAnswer *a, const char *key)
{
    for (size_t i = 0; i < a->n_rows; i++)
        if (strcmp(a->rows[i]->key, key) == 0)
            return a->rows[i];
    return NULL;
}

static double summary(const Flcache__QueryAnswer *a, const char *key)
{
    for (size_t i = 0; i < a->n_summary; i++)
        if (strcmp(a->summary[i]->key, key) == 0)
            return a->summary[i]->value;
    return NAN;
}

static Flcache__QueryAnswer *run(flc_store_t *s, flc_query_req_t q, flc_err_t *e)
{
    Flcache__QueryAnswer *a = NULL;
    q.job = q.job ? q.job : "qj";
    q.url = g_fx.unix_url;
    if (flc_query_run(s, &q, &a, e) != 0)
        return NULL;
    return a;
}

/* The data every case reads: job "qj" with rounds 1 and 2 stored and merged,
 * round 1 with a driver's accuracy. Round 1: two groups around far-apart
 * centers. Round 2: one common direction plus noise; the last two clients
 * send it negated, scaled. Made once by the shared fixture; the cases only
 * read it (and the Gram partials cached on the way give the same answers). */
static void make_updates(void)
{
    float ca[NDIM], cb[NDIM], dir[NDIM], noise[NDIM];
    flc_t_fill(ca, NDIM, 1);
    flc_t_fill(cb, NDIM, 2);
    flc_t_fill(dir, NDIM, 3);
    for (int i = 0; i < N; i++) {
        snprintf(g_names[i], sizeof g_names[i], "c%02d", i);
        g_exp[i] = g_names[i];
        g_samples[i] = 10 + 3 * (uint64_t)i;
        flc_t_fill(noise, NDIM, 100 + i);
        for (int x = 0; x < NDIM; x++) {
            g_u[0][i][x] = (i < N / 2 ? 5 * ca[x] : 5 * cb[x]) + 0.1f * noise[x];
            g_u[1][i][x] = dir[x] + 0.3f * noise[x];
            if (i >= N - 2)
                g_u[1][i][x] = -3.0f * g_u[1][i][x];
        }
    }
}

static flc_store_t *open_store(void)
{
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(g_fx.unix_url, NULL, &e);
    if (s == NULL)
        flc_t_fatal("connect: %s", e.msg);
    return s;
}

static void setup(void)
{
    flc_fixture_start(&g_fx, 0);
    make_updates();
    flc_store_t *s = open_store();
    store_round(s, "qj", 1);
    store_round(s, "qj", 2);
    /* A driver's metrics for round 1, as simulate writes them. */
    Flcache__RoundMeta *rm = NULL;
    if (flc_store_get_round_meta(s, "qj", 1, &rm) == 0) {
        Flcache__RoundMeta__MetricsEntry acc = FLCACHE__ROUND_META__METRICS_ENTRY__INIT;
        Flcache__RoundMeta__MetricsEntry *ms[] = {&acc};
        acc.key = "accuracy";
        acc.value = 0.75;
        Flcache__RoundMeta copy = *rm;
        copy.n_metrics = 1;
        copy.metrics = ms;
        flc_store_put_round_meta(s, &copy);
        flcache__round_meta__free_unpacked(rm, NULL);
    }
    flc_store_close(s);
}

static void teardown(void)
{
    flc_fixture_stop(&g_fx);
}

/* Sum of every client's samples. */
static double total_samples(void)
{
    double W = 0;
    for (int i = 0; i < N; i++)
        W += (double)g_samples[i];
    return W;
}

/* The samples-weighted mean of round r's updates (r = 1 or 2). */
static void aggregate(int r, float *agg)
{
    double W = total_samples();
    for (int x = 0; x < NDIM; x++) {
        double t = 0;
        for (int j = 0; j < N; j++)
            t += (double)g_samples[j] * g_u[r - 1][j][x];
        agg[x] = (float)(t / W);
    }
}

TEST(tracker_places_shards)
{
    flc_store_t *s = open_store();
    flc_track_where_t *where = NULL;
    size_t nw = 0;
    int trc = flc_track_round(s, "qj", 1, &where, &nw);
    int placed = trc == 0 && nw == S;
    for (size_t i = 0; placed && i < nw; i++)
        placed &= where[i].shard == i && strcmp(where[i].tier, "hot") == 0 &&
                  strcmp(where[i].node, flc_store_url(s)) == 0;
    CHECK(placed, "tracker: the 3 shards of round 1 are hot on %s",
          nw ? where[0].node : "?");
    free(where);
    flc_store_close(s);
}

TEST(gram_vs_brute_force)
{
    flc_store_t *s = open_store();
    flc_err_t e = {0};
    flc_query_gram_t g;
    flc_store_cfg_t at = {.url = g_fx.unix_url};
    int rc = flc_query_gram(s, &at, "qj", 1, 2, 0, &g, &e);
    float agg[NDIM];
    aggregate(1, agg);
    double worst = 0;
    for (int i = 0; rc == 0 && i <= N; i++)
        for (int j = 0; j <= N; j++) {
            const float *a = i < N ? g_u[0][i] : agg, *b = j < N ? g_u[0][j] : agg;
            double d = relerr(g.G[i * (N + 1) + j], dotd(a, b));
            worst = d > worst ? d : worst;
        }
    CHECK(rc == 0 && g.n == N && worst < 1e-4,
          "Gram of 12 updates + aggregate summed over 3 shards equals whole-vector dot products "
          "(max rel err %.1e)", worst);
    flc_query_gram_free(&g);
    flc_store_close(s);
}

TEST(norms_vs_reference)
{
    flc_store_t *s = open_store();
    flc_err_t e = {0};
    float agg[NDIM];
    aggregate(1, agg);
    Flcache__QueryAnswer *a = run(s, (flc_query_req_t){.kind = FLC_Q_NORMS, .round_from = 1,
                                                       .round_to = 1}, &e);
    int ok = a && a->n_rows == N;
    for (int i = 0; ok && i < N; i++) {
        const Flcache__QueryRow *r = row_of(a, g_names[i]);
        double n2 = sqrt(dotd(g_u[0][i], g_u[0][i]));
        double c = dotd(g_u[0][i], agg) / (n2 * sqrt(dotd(agg, agg)));
        ok &= r && relerr(r->values[0], n2) < 1e-4 && fabs(r->values[1] - c) < 1e-4 &&
              r->values[2] == (double)g_samples[i];
    }
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
    flc_store_close(s);
    CHECK(ok, "norms: every client's norm and cosine to the aggregate equal the reference");
}

/* On a job of its own ("qc", round 1 as qj's), so no other case has cached
 * its Gram partials before the first query. */
TEST(gram_cache_reused)
{
    flc_store_t *s = open_store();
    flc_err_t e = {0};
    store_round(s, "qc", 1);
    flc_query_req_t q = {.kind = FLC_Q_NORMS, .job = "qc", .round_from = 1, .round_to = 1};
    Flcache__QueryAnswer *a = run(s, q, &e);
    CHECK(a && a->n_rows == N, "norms of job qc: %s", a ? "12 rows" : e.msg);
    uint64_t first_read = a ? a->bytes_read : 0;
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
    a = run(s, q, &e);
    CHECK(a && first_read >= N * NDIM * 4 && a->bytes_read == 0 && a->bytes_moved > 0 &&
              a->bytes_moved < first_read,
          "repeated query reads the cached Gram partials: %llu bytes next to the data the "
          "first time, 0 the second (moved %llu)", (unsigned long long)first_read,
          a ? (unsigned long long)a->bytes_moved : 0ULL);
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
    flc_store_close(s);
}

TEST(similarity_vs_reference)
{
    flc_store_t *s = open_store();
    flc_err_t e = {0};
    Flcache__QueryAnswer *a =
        run(s, (flc_query_req_t){.kind = FLC_Q_SIMILARITY, .round_from = 1, .round_to = 1}, &e);
    int ok = a && a->n_rows == N && a->num_numeric == N;
    for (int i = 0; ok && i < N; i++)
        for (int j = 0; j < N; j++) {
            double c = dotd(g_u[0][i], g_u[0][j]) /
                       sqrt(dotd(g_u[0][i], g_u[0][i]) * dotd(g_u[0][j], g_u[0][j]));
            ok &= fabs(a->rows[i]->values[j] - c) < 1e-4;
        }
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
    flc_store_close(s);
    CHECK(ok, "similarity: the 12x12 cosine matrix equals the reference");
}

/* The cluster (0 or 1) that K=2 clustering with seed 7 gives the first
 * group, or -1 when the query failed. */
static int first_group_cluster(flc_store_t *s, flc_err_t *e, int *exact, double *inertia)
{
    Flcache__QueryAnswer *a = run(s, (flc_query_req_t){.kind = FLC_Q_CLUSTERS, .round_from = 1,
                                                       .round_to = 1, .k = 2, .seed = 7}, e);
    int ok = a && a->n_rows == N;
    int ga = ok ? (int)row_of(a, g_names[0])->values[0] : -1;
    for (int i = 0; ok && i < N; i++)
        ok &= (int)row_of(a, g_names[i])->values[0] == (i < N / 2 ? ga : 1 - ga);
    *exact = ok && summary(a, "size_0") == 6 && summary(a, "size_1") == 6;
    *inertia = a ? summary(a, "inertia") : NAN;
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
    return ga;
}

TEST(kmeans_planted)
{
    flc_store_t *s = open_store();
    flc_err_t e = {0};
    int exact;
    double inertia;
    first_group_cluster(s, &e, &exact, &inertia);
    flc_store_close(s);
    CHECK(exact, "clusters K=2: the two planted groups found exactly (inertia %.3g)", inertia);
}

TEST(personalize_group_mean)
{
    flc_store_t *s = open_store();
    flc_err_t e = {0};
    int exact;
    double inertia;
    int ga = first_group_cluster(s, &e, &exact, &inertia);
    CHECK(ga >= 0, "clusters K=2 answered: %s", ga >= 0 ? "yes" : e.msg);
    float *model = NULL;
    uint64_t mlen = 0;
    Flcache__QueryAnswer *a =
        run(s, (flc_query_req_t){.kind = FLC_Q_PERSONALIZE, .round_from = 1, .round_to = 1,
                                 .k = 2, .seed = 7, .cluster = (unsigned)ga,
                                 .model_out = &model, .model_len = &mlen}, &e);
    double worst = 0;
    double wa = 0;
    for (int i = 0; i < N / 2; i++)
        wa += (double)g_samples[i];
    for (int x = 0; model && x < NDIM; x++) {
        double m = 0;
        for (int i = 0; i < N / 2; i++)
            m += (double)g_samples[i] * g_u[0][i][x];
        double d = relerr(model[x], m / wa);
        worst = d > worst ? d : worst;
    }
    int ok = a && model && mlen == NDIM && worst < 1e-5 && summary(a, "members") == 6;
    free(model);
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
    flc_store_close(s);
    CHECK(ok, "personalize: the first group's model is its members' weighted mean (max rel err "
              "%.1e), moved once", worst);
}

/* Outliers on round 2: the two sign-flippers first. Its mergers derived the
 * statistics when the round closed: the query reads no update. */
TEST(outliers_planted)
{
    flc_store_t *s = open_store();
    flc_err_t e = {0};
    Flcache__QueryAnswer *a =
        run(s, (flc_query_req_t){.kind = FLC_Q_OUTLIERS, .round_from = 2, .round_to = 2}, &e);
    EXPECT(a && a->bytes_read == 0,
           "round 2's mergers cached the Gram partials on close: outliers read %llu bytes of "
           "updates", a ? (unsigned long long)a->bytes_read : 0ULL);
    int ok = a && a->n_rows == N;
    for (int r = 0; ok && r < 2; r++)
        ok &= strcmp(a->rows[r]->key, g_names[N - 1]) == 0 ||
              strcmp(a->rows[r]->key, g_names[N - 2]) == 0;
    EXPECT(ok && summary(a, "precision") == 1 && summary(a, "recall") == 1,
           "outliers: planted sign-flippers ranked first, precision %.2f recall %.2f against the "
           "ground truth", a ? summary(a, "precision") : NAN, a ? summary(a, "recall") : NAN);
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
    flc_store_close(s);
}

TEST(contribution_vs_reference)
{
    flc_store_t *s = open_store();
    flc_err_t e = {0};
    double W = total_samples();
    Flcache__QueryAnswer *a =
        run(s, (flc_query_req_t){.kind = FLC_Q_CONTRIBUTION, .round_from = 1, .round_to = 2},
            &e);
    int ok = a && a->n_rows == N;
    for (int i = 0; ok && i < N; i++) {
        double want = 0;
        for (int r = 0; r < 2; r++) {
            float A[NDIM];
            aggregate(r + 1, A);
            want += (double)g_samples[i] / W * dotd(g_u[r][i], A) /
                    sqrt(dotd(g_u[r][i], g_u[r][i]) * dotd(A, A));
        }
        const Flcache__QueryRow *row = row_of(a, g_names[i]);
        ok &= row && fabs(row->values[0] - want) < 1e-4 && row->values[2] == 2;
    }
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
    flc_store_close(s);
    CHECK(ok, "contribution summed over rounds 1..2 equals the reference");
}

TEST(metadata_queries)
{
    flc_store_t *s = open_store();
    flc_err_t e = {0};
    Flcache__QueryAnswer *a = run(s, (flc_query_req_t){.kind = FLC_Q_HISTORY, .all_rounds = 1}, &e);
    EXPECT(a && a->n_rows == 2 && a->rows[0]->values[0] == 0.75 && a->rows[0]->values[2] == N &&
               strncmp(a->rows[0]->text[0], "fedavg", 6) == 0,
           "history: 2 rounds, round 1 accuracy 0.75, 12 participants, rule fedavg");
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
    a = run(s, (flc_query_req_t){.kind = FLC_Q_CLIENT, .client = "c11", .all_rounds = 1}, &e);
    EXPECT(a && a->n_rows == 2 && a->rows[1]->values[0] == (double)g_samples[11] &&
               fabs(a->rows[1]->values[1] - (0.5 + 1.1 + 2)) < 1e-9 &&
               strcmp(a->rows[1]->text[2], "sign_flip") == 0,
           "client c11: 2 rounds with samples, loss and its fault label");
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
    a = run(s, (flc_query_req_t){.kind = FLC_Q_SCHEDULE, .all_rounds = 1, .k = 3}, &e);
    EXPECT(a && a->n_rows == 3 && a->rows[0]->values[1] >= a->rows[1]->values[1] &&
               a->rows[1]->values[1] >= a->rows[2]->values[1] && *a->rows[0]->text[0],
           "schedule K=3: three clients ranked by score, each explained (first: %s, '%s')",
           a ? a->rows[0]->key : "?", a ? a->rows[0]->text[0] : "?");
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
    flc_store_close(s);
}

TEST(unknown_names_refused)
{
    flc_store_t *s = open_store();
    flc_err_t e = {0};
    Flcache__QueryAnswer *a =
        run(s, (flc_query_req_t){.kind = FLC_Q_HISTORY, .job = "nojob", .all_rounds = 1}, &e);
    EXPECT(a == NULL && e.code == FLC_ENOTFOUND && strstr(e.msg, "nojob"), "unknown job: %s",
           e.msg);
    a = run(s, (flc_query_req_t){.kind = FLC_Q_NORMS, .round_from = 9, .round_to = 9}, &e);
    EXPECT(a == NULL && e.code == FLC_ENOTFOUND && strstr(e.msg, "round 9"), "unknown round: %s",
           e.msg);
    a = run(s, (flc_query_req_t){.kind = FLC_Q_CLIENT, .client = "zed", .all_rounds = 1}, &e);
    EXPECT(a == NULL && e.code == FLC_ENOTFOUND && strstr(e.msg, "zed"), "unknown client: %s",
           e.msg);
    a = run(s, (flc_query_req_t){.kind = FLC_Q_CLUSTERS, .round_from = 1, .round_to = 1,
                                 .k = 40}, &e);
    EXPECT(a == NULL && e.code == FLC_EINVAL && strstr(e.msg, "K must"), "K too large: %s",
           e.msg);
    flc_store_close(s);
}

TEST(query_function_json)
{
    flc_err_t e = {0};
    char ev[300];
    snprintf(ev, sizeof ev, "{\"kind\":\"outliers\",\"job\":\"qj\",\"round\":2,\"redis\":\"%s\"}",
             g_fx.unix_url);
    cJSON *event = cJSON_Parse(ev), *res = NULL;
    int rc = flc_query_fn(NULL, event, &res, &e);
    const cJSON *rows = cJSON_GetObjectItem(res, "rows");
    int ok = rc == 0 && cJSON_GetArraySize(rows) == N &&
             cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetArrayItem(rows, 0), "rank")) == 1;
    cJSON_Delete(res);
    cJSON_Delete(event);
    CHECK(ok, "query function event -> JSON answer with ranked rows");
}

/* ... and as the `query` role of flcache-fn on the local platform. */
TEST(query_role_of_flcache_fn)
{
    char cmd[1200], outb[65536];
    snprintf(cmd, sizeof cmd,
             "echo '{\"role\":\"query\",\"kind\":\"clusters\",\"job\":\"qj\",\"round\":1,"
             "\"k\":2,\"seed\":7,\"redis\":\"%s\"}' | %s/flcache-fn",
             g_fx.unix_url, flc_t_build_dir());
    int rc = flc_t_run(cmd, outb, sizeof outb);
    cJSON *fr = cJSON_Parse(outb);
    const cJSON *sum = cJSON_GetObjectItem(cJSON_GetObjectItem(fr, "result"), "summary");
    int ok = rc == 0 && cJSON_IsTrue(cJSON_GetObjectItem(fr, "ok")) &&
             cJSON_GetNumberValue(cJSON_GetObjectItem(sum, "size_0")) == 6;
    cJSON_Delete(fr);
    CHECK(ok, "flcache-fn role query: clusters of round 1 answered by a function (sizes 6/6)");
}

/* A password-protected server whose tracker names the node by TCP while the
 * query connects by the unix socket: the shard workers carry the caller's
 * credentials to the tracked node. On a server of its own, since it sets a
 * password the other cases do not know. */
TEST(password_server_by_tcp_and_unix)
{
    flc_fixture_t own;
    flc_fixture_start(&own, 0);
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(own.unix_url, NULL, &e);
    if (s == NULL)
        flc_t_fatal("connect: %s", e.msg);
    redisReply *pr = NULL;
    flc_store_commandf(s, &pr, "CONFIG SET requirepass s3cret");
    if (pr)
        freeReplyObject(pr);
    flc_store_close(s);
    char tcp_pw[300], unix_pw[400];
    snprintf(tcp_pw, sizeof tcp_pw, "redis://:s3cret@%s", own.tcp_url + strlen("redis://"));
    snprintf(unix_pw, sizeof unix_pw, "unix://:s3cret@%s",
             strstr(own.unix_url + strlen("unix://"), "/"));
    flc_store_t *st = flc_store_open(tcp_pw, NULL, &e);
    int prc = st ? 0 : -1;
    for (int i = 0; st && i < 3; i++) {
        flc_rs_push_cfg_t pc = {.job = "pw", .round = 1, .client = g_names[i], .num_shards = 1,
                                .model_size = NDIM};
        prc |= flc_rs_push(st, &pc, g_u[0][i], &e);
    }
    flc_rs_merger_cfg_t mc = {.job = "pw", .round = 1, .num_shards = 1, .model_size = NDIM,
                           .expected = g_exp, .n_expected = 3, .deadline_ms = 3000,
                           .readers = 1};
    flc_merge_rule_init(&mc.rule, "mean", NULL);
    flc_rs_report_t prep;
    if (st)
        prc |= flc_rs_merger_run(st, &mc, &prep, &e);
    flc_rs_report_free(&prep);
    flc_store_close(st);
    flc_store_t *su = flc_store_open(unix_pw, NULL, &e);
    Flcache__QueryAnswer *pa = NULL;
    flc_query_req_t pq = {.kind = FLC_Q_NORMS, .job = "pw", .round_from = 1, .round_to = 1,
                          .url = unix_pw, .no_cache = 1};
    int rc = su ? flc_query_run(su, &pq, &pa, &e) : -1;
    int ok = prc == 0 && rc == 0 && pa && pa->n_rows == 3;
    if (pa)
        flcache__query_answer__free_unpacked(pa, NULL);
    flc_store_close(su);
    flc_fixture_stop(&own);
    CHECK(ok, "password-protected server, tracker naming the TCP node, query over the unix "
              "socket: %s", rc == 0 ? "answered" : e.msg);
}

/* The node facts on one server: the tracker's node is the server (no
 * cluster id), entries written before node ids read as they did, a vector
 * answer's "nodes" note names the one server for every shard, `flcache
 * query` prints it under the table, and `flcache store stats` prints what it
 * printed before (no node list, in the table or the JSON). */
TEST(one_server_names_its_node)
{
    flc_store_t *s = open_store();
    flc_store_node_t *nodes = NULL;
    size_t nn = 7;
    int nrc = flc_store_nodes(s, &nodes, &nn);
    CHECK(nrc == 0 && nn == 0, "one server: no node list (%zu nodes)", nn);
    free(nodes);
    flc_track_where_t *w = NULL;
    size_t nw = 0;
    int ok = flc_track_round(s, "qj", 1, &w, &nw) == 0 && nw == S;
    for (size_t i = 0; ok && i < nw; i++)
        ok &= w[i].node_id[0] == '\0' && strcmp(w[i].addr, flc_store_url(s)) == 0;
    CHECK(ok, "tracker: no node id on one server, the address is its URL (%s)",
          nw ? w[0].addr : "?");
    free(w);
    /* Entries as written before node ids: "<url>|<tier>". (A job's records
     * are one key per shard, read for the S of its schema record: begin it.) */
    ok = flc_store_job_begin(s, "qold", 3) == 0 && flc_store_track_put(s, "qold", 1, 0, "unix:///old/redis.sock|cold") == 0 &&
         flc_store_track_put(s, "qold", 1, 1, "redis://10.0.0.5:6379|hot") == 0 &&
         flc_store_track_put(s, "qold", 1, 2, "redis://a|b:1|hot|0123|h:1") == 0;
    w = NULL;
    nw = 0;
    ok = ok && flc_track_round(s, "qold", 1, &w, &nw) == 0 && nw == 3 &&
         strcmp(w[0].node, "unix:///old/redis.sock") == 0 && strcmp(w[0].tier, "cold") == 0 &&
         w[0].node_id[0] == '\0' && strcmp(w[0].addr, w[0].node) == 0 &&
         strcmp(w[1].node, "redis://10.0.0.5:6379") == 0 && strcmp(w[1].tier, "hot") == 0 &&
         strcmp(w[2].node, "redis://a|b:1") == 0 && strcmp(w[2].node_id, "0123") == 0 &&
         strcmp(w[2].addr, "h:1") == 0;
    CHECK(ok, "tracker: old \"url|tier\" entries still read (node, tier; address = URL), "
              "new ones split from the right");
    free(w);
    flc_err_t e = {0};
    Flcache__QueryAnswer *a = run(s, (flc_query_req_t){.kind = FLC_Q_NORMS, .round_from = 1,
                                                       .round_to = 1}, &e);
    char want[400];
    snprintf(want, sizeof want, "all 3 shards: %s", flc_store_url(s));
    const char *got = NULL;
    for (size_t i = 0; a && i < a->n_notes; i++)
        if (strcmp(a->notes[i]->key, "nodes") == 0)
            got = a->notes[i]->value;
    CHECK(got && strcmp(got, want) == 0, "norms: the nodes note is \"%s\" (got \"%s\")", want,
          got ? got : "none");
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
    flc_store_close(s);

    char cmd[1200];
    static char out[65536];
    snprintf(cmd, sizeof cmd, "FLCACHE_REDIS='%s' %s/flcache query norms --job qj --round 1 2>&1",
             g_fx.unix_url, flc_t_build_dir());
    int rc = flc_t_run(cmd, out, sizeof out);
    snprintf(want, sizeof want, "\nnote: nodes: all 3 shards: %s\n", g_fx.unix_url);
    const char *table = strstr(out, "norm");
    const char *line = strstr(out, want);
    CHECK(rc == 0 && table && line && line > table, "flcache query prints \"%.*s\" under the table",
          (int)strlen(want) - 2, want + 1);
    snprintf(cmd, sizeof cmd, "FLCACHE_REDIS='%s' %s/flcache store stats 2>&1", g_fx.unix_url,
             flc_t_build_dir());
    rc = flc_t_run(cmd, out, sizeof out);
    /* The lines of before, in their order, and nothing about nodes. */
    static const char *const heads[] = {"cache     ", "keys      ", "memory    ", "hot       ",
                                        "cold      ", "jobs      "};
    const char *p = out;
    ok = rc == 0;
    for (size_t i = 0; ok && i < sizeof heads / sizeof *heads; i++) {
        const char *q = strstr(p, heads[i]);
        ok = q != NULL && (q == out || q[-1] == '\n');
        p = q ? q + 1 : p;
    }
    CHECK(ok && strstr(out, "nodes") == NULL && strstr(out, "replica") == NULL,
          "store stats on one server: cache, keys, memory, hot, cold, jobs as before, no node "
          "list (exit %d)", rc);
    snprintf(cmd, sizeof cmd, "FLCACHE_REDIS='%s' %s/flcache store stats --json", g_fx.unix_url,
             flc_t_build_dir());
    rc = flc_t_run(cmd, out, sizeof out);
    cJSON *j = rc == 0 ? cJSON_Parse(out) : NULL;
    CHECK(j && cJSON_GetObjectItem(j, "keys") && cJSON_GetObjectItem(j, "jobs") &&
              cJSON_GetObjectItem(j, "nodes") == NULL,
          "store stats --json on one server: keys and jobs, no \"nodes\"");
    cJSON_Delete(j);
}

/* Issue 17 point 4: vector queries over --rounds 1:2 answer per client over
 * both rounds; similarity refuses a range instead of using its first round. */
TEST(vector_queries_over_rounds)
{
    flc_store_t *s = open_store();
    flc_err_t e = {0};
    Flcache__QueryAnswer *a = run(s, (flc_query_req_t){.kind = FLC_Q_NORMS, .round_from = 1,
                                                       .round_to = 2}, &e);
    int ok = a && a->n_rows == N;
    for (int i = 0; ok && i < N; i++) {
        const Flcache__QueryRow *r = row_of(a, g_names[i]);
        double n1 = sqrt(dotd(g_u[0][i], g_u[0][i])), n2 = sqrt(dotd(g_u[1][i], g_u[1][i]));
        ok &= r && r->values[0] == 2 && relerr(r->values[1], (n1 + n2) / 2) < 1e-4 &&
              relerr(r->values[2], fmin(n1, n2)) < 1e-4 && relerr(r->values[3], fmax(n1, n2)) <
              1e-4 && r->n_text == 1 && strstr(r->text[0], "1:") && strstr(r->text[0], " 2:");
    }
    EXPECT(ok, "norms --rounds 1:2: per client 2 rounds, mean, min and max of both rounds' "
           "norms, and the trajectory text");
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
    a = run(s, (flc_query_req_t){.kind = FLC_Q_OUTLIERS, .round_from = 1, .round_to = 2}, &e);
    ok = a && a->n_rows == N;
    for (int i = 0; ok && i < N; i++) {
        const Flcache__QueryRow *r = row_of(a, g_names[i]);
        ok &= r && r->values[0] == 2 && r->values[1] == (i >= N - 2 ? 1 : 0);
    }
    EXPECT(ok && summary(a, "rounds") == 2,
           "outliers --rounds 1:2: each flipper flagged in 1 of its 2 rounds (round 2), "
           "nobody else");
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
    a = run(s, (flc_query_req_t){.kind = FLC_Q_CLUSTERS, .round_from = 1, .round_to = 2}, &e);
    EXPECT(a && a->n_rows == N && !isnan(summary(a, "stability_1_2")),
           "clusters --rounds 1:2: one row per client and the stability between the rounds "
           "(%.3f)", a ? summary(a, "stability_1_2") : NAN);
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
    a = run(s, (flc_query_req_t){.kind = FLC_Q_SIMILARITY, .round_from = 1, .round_to = 2}, &e);
    EXPECT(a == NULL && strstr(e.msg, "similarity") && strstr(e.msg, "--round R"),
           "similarity --rounds 1:2 is refused with a message: %s", e.msg);
    flc_store_close(s);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(tracker_places_shards),
                 TEST_ENTRY(gram_vs_brute_force), TEST_ENTRY(norms_vs_reference),
                 TEST_ENTRY(gram_cache_reused), TEST_ENTRY(similarity_vs_reference),
                 TEST_ENTRY(kmeans_planted), TEST_ENTRY(personalize_group_mean),
                 TEST_ENTRY(outliers_planted), TEST_ENTRY(contribution_vs_reference),
                 TEST_ENTRY(metadata_queries), TEST_ENTRY(unknown_names_refused),
                 TEST_ENTRY(query_function_json), TEST_ENTRY(query_role_of_flcache_fn),
                 TEST_ENTRY(password_server_by_tcp_and_unix),
                 TEST_ENTRY(one_server_names_its_node), TEST_ENTRY(vector_queries_over_rounds))
