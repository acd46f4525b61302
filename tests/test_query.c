/* The query engine on a small job with known answers, against a real
 * redis-server: the per-shard Gram partials sum to brute-force dot products
 * over whole vectors; norms, similarity and contribution equal references;
 * two well-separated groups are found exactly by `clusters` and
 * `personalize` returns one group's weighted mean; planted sign-flippers top
 * `outliers` with precision and recall 1; history, client and schedule read
 * the metadata; unknown job, round and client are named; the Gram cache
 * makes a repeated query read nothing next to the data; the `query`
 * function's JSON entry. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "aggregator/query.h"
#include "aggregator/reduce_scatter.h"
#include "aggregator/tracker.h"
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
    uint32_t round, shard;
    int rc;
} marg_t;

static void *merger(void *p)
{
    marg_t *a = p;
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(g_fx.unix_url, NULL, &e);
    flc_merger_cfg_t c = {.job = "qj", .round = a->round, .shard = a->shard, .num_shards = S,
                          .model_size = NDIM, .expected = g_exp, .n_expected = N,
                          .deadline_ms = 10000, .readers = 1, .derive_stats = a->round == 2};
    flc_merge_rule_init(&c.rule, "fedavg", NULL);
    flc_merge_report_t rep;
    a->rc = flc_merger_run(s, &c, &rep, &e);
    if (a->rc)
        printf("# merger: %s\n", e.msg);
    flc_merge_report_free(&rep);
    flc_store_close(s);
    return NULL;
}

/* Stores round r: every client's update and metadata, then the merge. */
static void store_round(flc_store_t *s, uint32_t r)
{
    pthread_t th[S];
    marg_t ma[S];
    for (uint32_t k = 0; k < S; k++) {
        ma[k] = (marg_t){r, k, 0};
        pthread_create(&th[k], NULL, merger, &ma[k]);
    }
    flc_err_t e = {0};
    for (int i = 0; i < N; i++) {
        flc_rs_push_cfg_t pc = {.job = "qj", .round = r, .client = g_names[i], .num_shards = S,
                                .model_size = NDIM, .num_samples = g_samples[i]};
        if (flc_rs_push(s, &pc, g_u[r - 1][i], &e) != 0)
            flc_t_fatal("push: %s", e.msg);
        Flcache__ModelUpdate u = FLCACHE__MODEL_UPDATE__INIT;
        Flcache__ModelUpdate__LabelsEntry lab = FLCACHE__MODEL_UPDATE__LABELS_ENTRY__INIT;
        Flcache__ModelUpdate__LabelsEntry *labs[] = {&lab};
        u.job = "qj";
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

int main(void)
{
    flc_fixture_start(&g_fx, 0);
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(g_fx.unix_url, NULL, &e);
    if (s == NULL)
        flc_t_fatal("connect: %s", e.msg);
    /* Round 1: two groups around far-apart centers. Round 2: one common
     * direction plus noise; the last two clients send it negated, scaled. */
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
    store_round(s, 1);
    store_round(s, 2);
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

    /* 0. The tracker knows where every shard of round 1 lives. */
    flc_where_t *where = NULL;
    size_t nw = 0;
    int trc = flc_track_round(s, "qj", 1, &where, &nw);
    int placed = trc == 0 && nw == S;
    for (size_t i = 0; placed && i < nw; i++)
        placed &= where[i].shard == i && strcmp(where[i].tier, "hot") == 0 &&
                  strcmp(where[i].node, flc_store_url(s)) == 0;
    CHECK(placed, "tracker: the 3 shards of round 1 are hot on %s",
          nw ? where[0].node : "?");
    free(where);

    /* 1. Gram partials vs brute force, including the merged row. */
    flc_gram_t g;
    int rc = flc_query_gram(s, g_fx.unix_url, "qj", 1, 2, 0, &g, &e);
    float agg[NDIM];
    double W = 0;
    for (int i = 0; i < N; i++)
        W += (double)g_samples[i];
    for (int x = 0; x < NDIM; x++) {
        double a = 0;
        for (int i = 0; i < N; i++)
            a += (double)g_samples[i] * g_u[0][i][x];
        agg[x] = (float)(a / W);
    }
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
    flc_gram_free(&g);

    /* 2. norms, similarity. */
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
    CHECK(ok, "norms: every client's norm and cosine to the aggregate equal the reference");
    uint64_t first_read = a ? a->bytes_read : 0;
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
    a = run(s, (flc_query_req_t){.kind = FLC_Q_NORMS, .round_from = 1, .round_to = 1}, &e);
    CHECK(a && first_read >= N * NDIM * 4 && a->bytes_read == 0 && a->bytes_moved > 0 &&
              a->bytes_moved < first_read,
          "repeated query reads the cached Gram partials: %llu bytes next to the data the "
          "first time, 0 the second (moved %llu)", (unsigned long long)first_read,
          a ? (unsigned long long)a->bytes_moved : 0ULL);
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
    a = run(s, (flc_query_req_t){.kind = FLC_Q_SIMILARITY, .round_from = 1, .round_to = 1}, &e);
    ok = a && a->n_rows == N && a->num_numeric == N;
    for (int i = 0; ok && i < N; i++)
        for (int j = 0; j < N; j++) {
            double c = dotd(g_u[0][i], g_u[0][j]) /
                       sqrt(dotd(g_u[0][i], g_u[0][i]) * dotd(g_u[0][j], g_u[0][j]));
            ok &= fabs(a->rows[i]->values[j] - c) < 1e-4;
        }
    CHECK(ok, "similarity: the 12x12 cosine matrix equals the reference");
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);

    /* 3. clusters and personalize. */
    a = run(s, (flc_query_req_t){.kind = FLC_Q_CLUSTERS, .round_from = 1, .round_to = 1, .k = 2,
                                 .seed = 7}, &e);
    ok = a && a->n_rows == N;
    int ga = ok ? (int)row_of(a, g_names[0])->values[0] : -1;
    for (int i = 0; ok && i < N; i++)
        ok &= (int)row_of(a, g_names[i])->values[0] == (i < N / 2 ? ga : 1 - ga);
    CHECK(ok && summary(a, "size_0") == 6 && summary(a, "size_1") == 6,
          "clusters K=2: the two planted groups found exactly (inertia %.3g)",
          a ? summary(a, "inertia") : NAN);
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
    float *model = NULL;
    uint64_t mlen = 0;
    a = run(s, (flc_query_req_t){.kind = FLC_Q_PERSONALIZE, .round_from = 1, .round_to = 1,
                                 .k = 2, .seed = 7, .cluster = (unsigned)ga,
                                 .model_out = &model, .model_len = &mlen}, &e);
    worst = 0;
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
    CHECK(a && model && mlen == NDIM && worst < 1e-5 && summary(a, "members") == 6,
          "personalize: the first group's model is its members' weighted mean (max rel err "
          "%.1e), moved once", worst);
    free(model);
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);

    /* 4. outliers on round 2: the two sign-flippers first. Its mergers
     * derived the statistics when the round closed: the query reads no
     * update. */
    a = run(s, (flc_query_req_t){.kind = FLC_Q_OUTLIERS, .round_from = 2, .round_to = 2}, &e);
    CHECK(a && a->bytes_read == 0,
          "round 2's mergers cached the Gram partials on close: outliers read %llu bytes of "
          "updates", a ? (unsigned long long)a->bytes_read : 0ULL);
    ok = a && a->n_rows == N;
    for (int r = 0; ok && r < 2; r++)
        ok &= strcmp(a->rows[r]->key, g_names[N - 1]) == 0 ||
              strcmp(a->rows[r]->key, g_names[N - 2]) == 0;
    CHECK(ok && summary(a, "precision") == 1 && summary(a, "recall") == 1,
          "outliers: planted sign-flippers ranked first, precision %.2f recall %.2f against the "
          "ground truth", a ? summary(a, "precision") : NAN, a ? summary(a, "recall") : NAN);
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);

    /* 5. contribution over rounds 1..2 vs the reference. */
    a = run(s, (flc_query_req_t){.kind = FLC_Q_CONTRIBUTION, .round_from = 1, .round_to = 2},
            &e);
    ok = a && a->n_rows == N;
    for (int i = 0; ok && i < N; i++) {
        double want = 0;
        for (int r = 0; r < 2; r++) {
            float A[NDIM];
            for (int x = 0; x < NDIM; x++) {
                double t = 0;
                for (int j = 0; j < N; j++)
                    t += (double)g_samples[j] * g_u[r][j][x];
                A[x] = (float)(t / W);
            }
            want += (double)g_samples[i] / W * dotd(g_u[r][i], A) /
                    sqrt(dotd(g_u[r][i], g_u[r][i]) * dotd(A, A));
        }
        const Flcache__QueryRow *row = row_of(a, g_names[i]);
        ok &= row && fabs(row->values[0] - want) < 1e-4 && row->values[2] == 2;
    }
    CHECK(ok, "contribution summed over rounds 1..2 equals the reference");
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);

    /* 6. metadata queries. */
    a = run(s, (flc_query_req_t){.kind = FLC_Q_HISTORY, .all_rounds = 1}, &e);
    CHECK(a && a->n_rows == 2 && a->rows[0]->values[0] == 0.75 && a->rows[0]->values[2] == N &&
              strncmp(a->rows[0]->text[0], "fedavg", 6) == 0,
          "history: 2 rounds, round 1 accuracy 0.75, 12 participants, rule fedavg");
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
    a = run(s, (flc_query_req_t){.kind = FLC_Q_CLIENT, .client = "c11", .all_rounds = 1}, &e);
    CHECK(a && a->n_rows == 2 && a->rows[1]->values[0] == (double)g_samples[11] &&
              fabs(a->rows[1]->values[1] - (0.5 + 1.1 + 2)) < 1e-9 &&
              strcmp(a->rows[1]->text[2], "sign_flip") == 0,
          "client c11: 2 rounds with samples, loss and its fault label");
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
    a = run(s, (flc_query_req_t){.kind = FLC_Q_SCHEDULE, .all_rounds = 1, .k = 3}, &e);
    CHECK(a && a->n_rows == 3 && a->rows[0]->values[1] >= a->rows[1]->values[1] &&
              a->rows[1]->values[1] >= a->rows[2]->values[1] && *a->rows[0]->text[0],
          "schedule K=3: three clients ranked by score, each explained (first: %s, '%s')",
          a ? a->rows[0]->key : "?", a ? a->rows[0]->text[0] : "?");
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);

    /* 7. errors. */
    a = run(s, (flc_query_req_t){.kind = FLC_Q_HISTORY, .job = "nojob", .all_rounds = 1}, &e);
    CHECK(a == NULL && e.code == FLC_ENOTFOUND && strstr(e.msg, "nojob"), "unknown job: %s",
          e.msg);
    a = run(s, (flc_query_req_t){.kind = FLC_Q_NORMS, .round_from = 9, .round_to = 9}, &e);
    CHECK(a == NULL && e.code == FLC_ENOTFOUND && strstr(e.msg, "round 9"), "unknown round: %s",
          e.msg);
    a = run(s, (flc_query_req_t){.kind = FLC_Q_CLIENT, .client = "zed", .all_rounds = 1}, &e);
    CHECK(a == NULL && e.code == FLC_ENOTFOUND && strstr(e.msg, "zed"), "unknown client: %s",
          e.msg);
    a = run(s, (flc_query_req_t){.kind = FLC_Q_CLUSTERS, .round_from = 1, .round_to = 1,
                                 .k = 40}, &e);
    CHECK(a == NULL && e.code == FLC_EINVAL && strstr(e.msg, "K must"), "K too large: %s",
          e.msg);

    /* 8. the query function. */
    char ev[300];
    snprintf(ev, sizeof ev, "{\"kind\":\"outliers\",\"job\":\"qj\",\"round\":2,\"redis\":\"%s\"}",
             g_fx.unix_url);
    cJSON *event = cJSON_Parse(ev), *res = NULL;
    rc = flc_query_fn(event, &res, &e);
    const cJSON *rows = cJSON_GetObjectItem(res, "rows");
    CHECK(rc == 0 && cJSON_GetArraySize(rows) == N &&
              cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetArrayItem(rows, 0), "rank")) == 1,
          "query function event -> JSON answer with ranked rows");
    cJSON_Delete(res);
    cJSON_Delete(event);

    /* 9. ... and as the `query` role of flcache-fn on the local platform. */
    char cmd[1200], outb[65536];
    snprintf(cmd, sizeof cmd,
             "echo '{\"role\":\"query\",\"kind\":\"clusters\",\"job\":\"qj\",\"round\":1,"
             "\"k\":2,\"seed\":7,\"redis\":\"%s\"}' | %s/flcache-fn",
             g_fx.unix_url, flc_t_build_dir());
    rc = flc_t_run(cmd, outb, sizeof outb);
    cJSON *fr = cJSON_Parse(outb);
    const cJSON *sum = cJSON_GetObjectItem(cJSON_GetObjectItem(fr, "result"), "summary");
    CHECK(rc == 0 && cJSON_IsTrue(cJSON_GetObjectItem(fr, "ok")) &&
              cJSON_GetNumberValue(cJSON_GetObjectItem(sum, "size_0")) == 6,
          "flcache-fn role query: clusters of round 1 answered by a function (sizes 6/6)");
    cJSON_Delete(fr);

    /* 10. A password-protected server whose tracker names the node by TCP
     * while the query connects by the unix socket: the shard workers carry
     * the caller's credentials to the tracked node. */
    redisReply *pr = NULL;
    flc_store_commandf(s, &pr, "CONFIG SET requirepass s3cret");
    if (pr)
        freeReplyObject(pr);
    flc_store_close(s);
    char tcp_pw[300], unix_pw[400];
    snprintf(tcp_pw, sizeof tcp_pw, "redis://:s3cret@%s", g_fx.tcp_url + strlen("redis://"));
    snprintf(unix_pw, sizeof unix_pw, "unix://:s3cret@%s",
             strstr(g_fx.unix_url + strlen("unix://"), "/"));
    flc_store_t *st = flc_store_open(tcp_pw, NULL, &e);
    int prc = st ? 0 : -1;
    for (int i = 0; st && i < 3; i++) {
        flc_rs_push_cfg_t pc = {.job = "pw", .round = 1, .client = g_names[i], .num_shards = 1,
                                .model_size = NDIM};
        prc |= flc_rs_push(st, &pc, g_u[0][i], &e);
    }
    flc_merger_cfg_t mc = {.job = "pw", .round = 1, .num_shards = 1, .model_size = NDIM,
                           .expected = g_exp, .n_expected = 3, .deadline_ms = 3000,
                           .readers = 1};
    flc_merge_rule_init(&mc.rule, "mean", NULL);
    flc_merge_report_t prep;
    if (st)
        prc |= flc_merger_run(st, &mc, &prep, &e);
    flc_merge_report_free(&prep);
    flc_store_close(st);
    flc_store_t *su = flc_store_open(unix_pw, NULL, &e);
    Flcache__QueryAnswer *pa = NULL;
    flc_query_req_t pq = {.kind = FLC_Q_NORMS, .job = "pw", .round_from = 1, .round_to = 1,
                          .url = unix_pw, .no_cache = 1};
    rc = su ? flc_query_run(su, &pq, &pa, &e) : -1;
    CHECK(prc == 0 && rc == 0 && pa && pa->n_rows == 3,
          "password-protected server, tracker naming the TCP node, query over the unix socket: "
          "%s", rc == 0 ? "answered" : e.msg);
    if (pa)
        flcache__query_answer__free_unpacked(pa, NULL);
    flc_store_close(su);
    flc_fixture_stop(&g_fx);
    return flc_t_done();
}
