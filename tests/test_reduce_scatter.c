/* Reduce-scatter and AllReduce-to-one through a real redis-server: W = 1, 2, 8
 * contributors and S = 1, 4, 16 shards over a model size no S divides, every
 * merge rule against the in-memory merge of the whole model, server state
 * carried between rounds through the cache, a contributor that never comes
 * (deadline), a duplicate push, a late push, NaN/Inf and wrong dimensions,
 * the round metadata, the aggregator function's JSON entry, and 48 queued
 * arrivals taken in one sweep.
 *
 * Contributors and mergers run in threads, each with its own connection, as
 * separate functions would. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "aggregator/reduce_scatter.h"
#include "cache/store_ops.h"
#include "cache/store_raw.h"
#include "tests/harness.h"

static flc_fixture_t g_fx;
static char g_names[16][8];
static const char *g_expected[16];

static flc_store_t *open_store(void)
{
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(g_fx.unix_url, NULL, &e);
    if (s == NULL)
        flc_t_fatal("connect: %s", flc_err_msg(&e));
    return s;
}

/* ---- one round with threads ---------------------------------------------- */

typedef struct round_spec {
    const char *job;
    uint32_t round, W, S;
    uint64_t n;
    flc_merge_rule_t rule;
    float **u;          /* W updates */
    uint64_t *samples;  /* W sample counts */
    unsigned char *skip;/* contributors that never push (optional) */
    unsigned deadline_ms;
    flc_merge_state_t **state; /* per shard, or NULL (state in the cache) */
} round_spec_t;

typedef struct contrib_arg {
    const round_spec_t *sp;
    uint32_t w;
    float *model; /* what this contributor read back */
    int push_rc, pull_rc;
    char err[256];
} contrib_arg_t;

typedef struct merger_arg {
    const round_spec_t *sp;
    uint32_t shard;
    flc_rs_report_t rep;
    int rc;
    char err[256];
} merger_arg_t;

static void *contributor(void *p)
{
    contrib_arg_t *a = p;
    const round_spec_t *sp = a->sp;
    flc_store_t *s = open_store();
    flc_err_t e = {0};
    flc_rs_push_cfg_t c = {.job = sp->job, .round = sp->round, .client = g_names[a->w],
                           .num_shards = sp->S, .model_size = sp->n,
                           .num_samples = sp->samples ? sp->samples[a->w] : 0};
    a->push_rc = flc_rs_push(s, &c, sp->u[a->w], &e);
    a->pull_rc = flc_rs_pull(s, sp->job, sp->round, sp->S, sp->n, 20000, a->model, &e);
    snprintf(a->err, sizeof a->err, "%s", e.msg);
    flc_store_close(s);
    return NULL;
}

static void *merger(void *p)
{
    merger_arg_t *a = p;
    const round_spec_t *sp = a->sp;
    flc_store_t *s = open_store();
    flc_err_t e = {0};
    unsigned pushing = 0;
    for (uint32_t w = 0; w < sp->W; w++)
        pushing += !(sp->skip && sp->skip[w]);
    flc_rs_merger_cfg_t cfg = {.job = sp->job, .round = sp->round, .shard = a->shard,
                            .num_shards = sp->S, .model_size = sp->n, .rule = sp->rule,
                            .expected = g_expected, .n_expected = sp->W,
                            .deadline_ms = sp->deadline_ms ? sp->deadline_ms : 20000,
                            .readers = pushing,
                            .state = sp->state ? sp->state[a->shard] : NULL};
    a->rc = flc_rs_merger_run(s, &cfg, &a->rep, &e);
    snprintf(a->err, sizeof a->err, "%s", e.msg);
    flc_store_close(s);
    return NULL;
}

/* Runs the round; models[w] gets what contributor w read back. Returns 0
 * when every push, merge and pull succeeded. reps (S entries) may be NULL. */
static int run_round(const round_spec_t *sp, float **models, flc_rs_report_t *reps)
{
    contrib_arg_t ca[16];
    merger_arg_t ma[16];
    pthread_t ct[16], mt[16];
    for (uint32_t k = 0; k < sp->S; k++) {
        ma[k] = (merger_arg_t){.sp = sp, .shard = k};
        pthread_create(&mt[k], NULL, merger, &ma[k]);
    }
    for (uint32_t w = 0; w < sp->W; w++) {
        ca[w] = (contrib_arg_t){.sp = sp, .w = w, .model = models[w]};
        if (!(sp->skip && sp->skip[w]))
            pthread_create(&ct[w], NULL, contributor, &ca[w]);
    }
    int bad = 0;
    for (uint32_t w = 0; w < sp->W; w++) {
        if (sp->skip && sp->skip[w])
            continue;
        pthread_join(ct[w], NULL);
        if (ca[w].push_rc || ca[w].pull_rc) {
            printf("# contributor %u: push %d pull %d: %s\n", w, ca[w].push_rc, ca[w].pull_rc,
                   ca[w].err);
            bad = 1;
        }
    }
    for (uint32_t k = 0; k < sp->S; k++) {
        pthread_join(mt[k], NULL);
        if (ma[k].rc) {
            printf("# merger %u: %d: %s\n", k, ma[k].rc, ma[k].err);
            for (size_t i = 0; i < ma[k].rep.rejected.n; i++)
                printf("#   rejected %s\n", ma[k].rep.rejected.items[i]);
            bad = 1;
        }
        if (reps)
            reps[k] = ma[k].rep;
        else
            flc_rs_report_free(&ma[k].rep);
    }
    return bad;
}

static double max_rel_diff(const float *a, const float *b, uint64_t n)
{
    double worst = 0;
    for (uint64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / (fabs((double)b[i]) + 1e-6);
        if (!(d <= worst))
            worst = d; /* NaN counts as worst */
    }
    return worst;
}

static float **alloc_models(uint32_t W, uint64_t n)
{
    float **m = calloc(W, sizeof *m);
    for (uint32_t w = 0; w < W; w++)
        m[w] = calloc(n, sizeof(float));
    return m;
}

static void free_models(float **m, uint32_t W)
{
    for (uint32_t w = 0; w < W; w++)
        free(m[w]);
    free(m);
}

/* ---- 1. FedAvg over W x S, against a double reference -------------------- */

TEST(fedavg_grid)
{
    const uint32_t Ws[] = {1, 2, 8}, Ss[] = {1, 4, 16};
    const uint64_t n = 1003; /* divisible by none of 4, 16 */
    float *u[8];
    uint64_t samples[8];
    for (int w = 0; w < 8; w++) {
        u[w] = malloc(n * sizeof(float));
        flc_t_fill(u[w], n, 100 + w);
        samples[w] = 10 + 7 * w;
    }
    float *ref = malloc(n * sizeof(float));
    uint32_t round = 0;
    for (int i = 0; i < 3; i++) {
        for (int j = 0; j < 3; j++) {
            uint32_t W = Ws[i], S = Ss[j];
            double tot = 0;
            for (uint32_t w = 0; w < W; w++)
                tot += (double)samples[w];
            for (uint64_t x = 0; x < n; x++) {
                double acc = 0;
                for (uint32_t w = 0; w < W; w++)
                    acc += (double)samples[w] * u[w][x];
                ref[x] = (float)(acc / tot);
            }
            char job[16]; /* a job keeps one shard count: one job per S */
            snprintf(job, sizeof job, "grid%u", S);
            round_spec_t sp = {.job = job, .round = ++round, .W = W, .S = S, .n = n,
                               .u = u, .samples = samples};
            flc_merge_rule_init(&sp.rule, "fedavg", NULL);
            float **models = alloc_models(W, n);
            int bad = run_round(&sp, models, NULL);
            double worst = 0;
            int same = 1;
            for (uint32_t w = 0; w < W; w++) {
                double d = max_rel_diff(models[w], ref, n);
                worst = d > worst ? d : worst;
                same &= memcmp(models[w], models[0], n * sizeof(float)) == 0;
            }
            CHECK(!bad && worst <= 1e-6 && same,
                  "W=%u S=%u n=%llu: weighted FedAvg read back by every contributor equals the "
                  "reference (max rel diff %.2g), identical bytes everywhere", W, S,
                  (unsigned long long)n, worst);
            free_models(models, W);
        }
    }
    /* The round's metadata, written by the last merger of round 9 (W=8 S=16). */
    flc_store_t *s = open_store();
    Flcache__RoundMeta *m = NULL;
    int rc = flc_store_get_round_meta(s, "grid16", 9, &m);
    CHECK(rc == 0 && m->n_participants == 8 && m->n_missing == 0 && m->n_rejected == 0 &&
              m->num_shards == 16 && m->model_size == n && strcmp(m->status, "closed") == 0 &&
              strncmp(m->rule, "fedavg", 6) == 0 && m->bytes_read >= 8 * n * sizeof(float) &&
              m->merge_ms > 0,
          "round metadata: 8 participants, none missing, 16 shards, rule, bytes read %llu, "
          "merge %.2f ms, wait %.2f ms",
          m ? (unsigned long long)m->bytes_read : 0ULL, m ? m->merge_ms : 0.0,
          m ? m->wait_ms : 0.0);
    if (m)
        flcache__round_meta__free_unpacked(m, NULL);
    flc_store_close(s);
    for (int w = 0; w < 8; w++)
        free(u[w]);
    free(ref);
}

/* ---- 2. every rule, sharded vs whole-model in memory --------------------- */

TEST(rules_sharded_vs_whole)
{
    static const char *rules[] = {"fedavg", "mean", "fedavgm", "fedadam", "fedyogi",
                                  "fedadagrad", "median", "trimmed-mean:trim=0.2", "krum:f=1",
                                  "multi-krum:f=1,m=3", "mean:clip=2"};
    const uint32_t W = 5, S = 4;
    const uint64_t n = 203;
    float *u[5];
    uint64_t samples[5];
    for (uint32_t w = 0; w < W; w++) {
        u[w] = malloc(n * sizeof(float));
        flc_t_fill(u[w], n, 300 + w);
        samples[w] = 5 + w;
    }
    for (uint64_t x = 0; x < n; x++)
        u[4][x] += 50.0f; /* one outlier, far in every shard: Krum drops it everywhere */
    uint32_t round = 0;
    for (size_t i = 0; i < sizeof rules / sizeof *rules; i++) {
        flc_merge_rule_t r;
        flc_err_t e = {0};
        if (flc_merge_rule_parse(&r, rules[i], &e) != 0)
            flc_t_fatal("rule %s: %s", rules[i], e.msg);
        int stateful = flc_merge_rule_has_state(&r);
        flc_merge_state_t *whole = stateful ? flc_merge_state_new(&r, n, NULL) : NULL;
        char job[32];
        snprintf(job, sizeof job, "rule%zu", i);
        double worst = 0;
        int bad = 0;
        size_t krum_rejected = 0;
        /* Two rounds, so server state must survive in the cache between them. */
        for (int rr = 0; rr < (stateful ? 2 : 1); rr++) {
            float *ref = malloc(n * sizeof(float));
            double wts[5], norms[5];
            for (uint32_t w = 0; w < W; w++) {
                wts[w] = (double)samples[w];
                norms[w] = sqrt(flc_merge_sumsq(u[w], n));
            }
            flc_merge_batch_t b = {.u = (const float *const *)u, .k = W, .n = n,
                                   .weight = wts, .norm = norms};
            if (flc_merge_run(&r, whole, &b, ref, NULL, &e) != 0)
                flc_t_fatal("reference %s: %s", rules[i], e.msg);
            round_spec_t sp = {.job = job, .round = ++round, .W = W, .S = S, .n = n, .u = u,
                               .samples = samples, .rule = r};
            float **models = alloc_models(W, n);
            flc_rs_report_t reps[4];
            bad |= run_round(&sp, models, reps);
            double d = max_rel_diff(models[0], ref, n);
            worst = d > worst ? d : worst;
            for (uint32_t k = 0; k < S; k++) {
                krum_rejected += reps[k].rejected.n;
                flc_rs_report_free(&reps[k]);
            }
            free_models(models, W);
            free(ref);
        }
        int krum = strncmp(rules[i], "krum", 4) == 0 || strncmp(rules[i], "multi-krum", 10) == 0;
        CHECK(!bad && worst <= 1e-5 && (!krum || krum_rejected >= S),
              "rule %s via 4 shards equals the whole-model merge (max rel diff %.2g)%s", rules[i],
              worst, stateful ? " over 2 rounds, state kept in the cache"
                              : krum ? ", outlier rejected by every shard" : "");
        flc_merge_state_free(whole);
    }
    for (uint32_t w = 0; w < W; w++)
        free(u[w]);
}

/* ---- 3. deadline, duplicate, late, NaN, wrong dimensions ----------------- */

/* Three contributors' updates of n = 100, all elements w + 1 (caller frees
 * with free_models). */
static float **fault_updates(void)
{
    float **u = alloc_models(3, 100);
    for (int w = 0; w < 3; w++)
        for (uint64_t x = 0; x < 100; x++)
            u[w][x] = (float)(w + 1);
    return u;
}

/* Round `round` of job `job`, W = 3, S = 2, rule mean, where c2 never comes:
 * merged at the 400 ms deadline from c0 and c1. Fills models and reps. */
static int deadline_round(const char *job, float **u, float **models, flc_rs_report_t *reps)
{
    static unsigned char skip[3] = {0, 0, 1};
    round_spec_t sp = {.job = job, .round = 1, .W = 3, .S = 2, .n = 100, .u = u,
                       .skip = skip, .deadline_ms = 400};
    flc_merge_rule_init(&sp.rule, "mean", NULL);
    return run_round(&sp, models, reps);
}

TEST(missing_contributor_deadline)
{
    const uint64_t n = 100;
    float **u = fault_updates();
    float **models = alloc_models(3, n);
    flc_rs_report_t reps[2];
    int bad = deadline_round("faults", u, models, reps);
    CHECK(!bad && models[0][0] == 1.5f && models[1][n - 1] == 1.5f && reps[0].missing.n == 1 &&
              strcmp(reps[0].missing.items[0], "c2") == 0 && reps[1].participants.n == 2,
          "missing contributor: merged at the 400 ms deadline from the 2 that came (mean 1.5), "
          "c2 listed as missing");
    for (int k = 0; k < 2; k++)
        flc_rs_report_free(&reps[k]);
    flc_store_t *s = open_store();
    Flcache__RoundMeta *m = NULL;
    flc_store_get_round_meta(s, "faults", 1, &m);
    CHECK(m && m->n_missing == 1 && strcmp(m->missing[0], "c2") == 0 && m->n_participants == 2 &&
              m->wait_ms >= 300,
          "round metadata lists c2 as missing and the wait (%.0f ms)", m ? m->wait_ms : 0.0);
    if (m)
        flcache__round_meta__free_unpacked(m, NULL);
    flc_store_close(s);
    free_models(models, 3);
    free_models(u, 3);
}

/* Late: c2 pushes after the round closed; kept for queries, not merged. */
TEST(late_push_refused)
{
    const uint64_t n = 100;
    float **u = fault_updates();
    float **models = alloc_models(3, n);
    flc_rs_report_t reps[2];
    CHECK(deadline_round("late", u, models, reps) == 0, "round 1 of job late closed at its deadline");
    for (int k = 0; k < 2; k++)
        flc_rs_report_free(&reps[k]);
    flc_store_t *s = open_store();
    flc_err_t e = {0};
    flc_rs_push_cfg_t late = {.job = "late", .round = 1, .client = "c2", .num_shards = 2,
                              .model_size = n};
    int rc = flc_rs_push(s, &late, u[2], &e);
    flc_shard_t got = {0};
    int kept = flc_store_get_update(s, "late", 1, 0, "c2", &got, NULL, 0) == 0 &&
               got.values[0] == 3.0f;
    flc_shard_release(&got);
    CHECK(rc == FLC_ECLOSED && strstr(e.msg, "closed") && strstr(e.msg, "c2") && kept,
          "late push refused with ECLOSED (%s) and kept in the cache", e.msg);
    flc_store_close(s);
    free_models(models, 3);
    free_models(u, 3);
}

/* Duplicate: c0 pushes twice (a retried function) before the round; counted
 * once. c0 does not read back here: c1 and c2 do. */
TEST(duplicate_push_counted_once)
{
    const uint64_t n = 100;
    float **u = fault_updates();
    float **models = alloc_models(3, n);
    flc_rs_report_t reps[2];
    flc_store_t *s = open_store();
    flc_err_t e = {0};
    unsigned char skip0[3] = {1, 0, 0};
    round_spec_t dup = {.job = "faults", .round = 2, .W = 3, .S = 2, .n = n, .u = u,
                        .skip = skip0, .deadline_ms = 5000};
    flc_merge_rule_init(&dup.rule, "mean", NULL);
    flc_rs_push_cfg_t c0 = {.job = "faults", .round = 2, .client = "c0", .num_shards = 2,
                            .model_size = n};
    flc_rs_push(s, &c0, u[0], &e);
    flc_rs_push(s, &c0, u[0], &e);
    int bad = run_round(&dup, models, reps);
    CHECK(!bad && models[2][5] == 2.0f && reps[0].duplicates == 1 && reps[0].participants.n == 3,
          "duplicate push counted once (mean of 1,2,3 = %.3g, %zu duplicate)", models[2][5],
          reps[0].duplicates);
    for (int k = 0; k < 2; k++)
        flc_rs_report_free(&reps[k]);
    flc_store_close(s);
    free_models(models, 3);
    free_models(u, 3);
}

/* The calls of a command so far (INFO commandstats), -1 when not told. */
static long long command_calls(flc_store_t *s, const char *cmd)
{
    redisReply *r = NULL;
    long long n = -1;
    char tag[64];
    snprintf(tag, sizeof tag, "cmdstat_%s:calls=", cmd);
    if (flc_store_commandf(s, &r, "INFO commandstats") == 0 && r->type == REDIS_REPLY_STRING) {
        const char *p = strstr(r->str, tag);
        n = p ? atoll(p + strlen(tag)) : 0;
    }
    if (r)
        freeReplyObject(r);
    return n;
}

/* 48 clients (above the merger's sweep threshold, rs_merger.c) whose
 * updates all landed before the merger started, one of them twice: the
 * first wake-up takes one, the sweep the 47 others in one round trip, the
 * repeat is counted at the close; the mean is exact and the merger blocked
 * at most twice (it used to make one BLPOP over every pending list per
 * arrival: O(K^2) keys for K clients). */
TEST(queued_arrivals_taken_together)
{
    enum { K = 48 };
    const uint64_t n = 64;
    static char names[K][8];
    static const char *exp[K];
    float *u = malloc(n * sizeof *u), *ref = calloc(n, sizeof *ref), *got = calloc(n, sizeof *got);
    flc_store_t *s = open_store();
    flc_err_t e = {0};
    int pushed = 1;
    for (int k = 0; k < K; k++) {
        snprintf(names[k], sizeof names[k], "q%d", k);
        exp[k] = names[k];
        for (uint64_t x = 0; x < n; x++)
            u[x] = (float)(k + 1) * 0.5f + (float)x;
        for (uint64_t x = 0; x < n; x++)
            ref[x] += u[x] / K; /* the mean, checked to float rounding below */
        flc_rs_push_cfg_t c = {.job = "swept", .round = 1, .client = names[k],
                               .num_shards = 1, .model_size = n};
        pushed &= flc_rs_push(s, &c, u, &e) == 0;
        if (k == 7)
            pushed &= flc_rs_push(s, &c, u, &e) == 0; /* a retried push */
    }
    CHECK(pushed, "%d updates pushed before any merger ran (%s)", K, e.msg);
    long long blpop0 = command_calls(s, "blpop");
    flc_rs_merger_cfg_t mc = {.job = "swept", .round = 1, .shard = 0, .num_shards = 1,
                              .model_size = n, .expected = exp, .n_expected = K,
                              .deadline_ms = 10000, .readers = 1};
    flc_merge_rule_init(&mc.rule, "mean", NULL);
    flc_rs_report_t rep = {0};
    int rc = flc_rs_merger_run(s, &mc, &rep, &e);
    long long blpops = command_calls(s, "blpop") - blpop0;
    int pulled = rc == 0 && flc_rs_pull(s, "swept", 1, 1, n, 5000, got, &e) == 0;
    double worst = pulled ? max_rel_diff(got, ref, n) : 1;
    CHECK(rc == 0 && pulled && rep.participants.n == K && rep.duplicates == 1 && worst < 1e-5,
          "all %d queued arrivals merged (%zu participants, %zu duplicate), the mean exact to "
          "%.1g (%s)", K, rep.participants.n, rep.duplicates, worst, e.msg);
    CHECK(blpops >= 1 && blpops <= 2, "the merger blocked %lld time(s) for %d queued arrivals",
          blpops, K);
    flc_rs_report_free(&rep);
    flc_store_close(s);
    free(u), free(ref), free(got);
}

/* The merger of round `round`, shard `shard` of job faults (rule mean, 3
 * expected, 300 ms deadline). */
static flc_rs_merger_cfg_t fault_merger(uint32_t round, uint32_t shard)
{
    flc_rs_merger_cfg_t mc = {.job = "faults", .round = round, .shard = shard, .num_shards = 2,
                           .model_size = 100, .expected = g_expected, .n_expected = 3,
                           .deadline_ms = 300, .readers = 1};
    flc_merge_rule_init(&mc.rule, "mean", NULL);
    return mc;
}

/* Round 3, one sequence on purpose: a NaN refused by the push, then an Inf
 * and a wrong size written around it rejected by the merger, which then has
 * closed the shard for a second run. */
TEST(nonfinite_and_wrong_size_rejected)
{
    const uint64_t n = 100;
    float **u = fault_updates();
    flc_store_t *s = open_store();
    flc_err_t e = {0};
    flc_shard_t got = {0};
    /* NaN: flc_rs_push refuses it up front, storing nothing. */
    u[1][37] = NAN;
    flc_rs_push_cfg_t c1 = {.job = "faults", .round = 3, .client = "c1", .num_shards = 2,
                            .model_size = n};
    int rc = flc_rs_push(s, &c1, u[1], &e);
    int none = flc_store_get_update(s, "faults", 3, 0, "c1", &got, NULL, 0) == FLC_ENOTFOUND;
    CHECK(rc == FLC_ENONFINITE && strstr(e.msg, "element 37") && strstr(e.msg, "c1") && none,
          "NaN refused before storing: %s", e.msg);
    /* ...and a merger refuses one written around flc_rs_push, naming the client. */
    flc_shard_t raw = {.round = 3, .shard = 1, .num_shards = 2, .offset = 50, .count = 50,
                       .model_size = n, .values = u[1] + 50};
    u[1][60] = INFINITY;
    snprintf(raw.job, sizeof raw.job, "faults");
    snprintf(raw.client, sizeof raw.client, "c1");
    flc_store_put_update(s, &raw);
    /* and a client whose update has the wrong model size */
    float *wide = calloc(120, sizeof(float));
    flc_rs_push_cfg_t c2 = {.job = "faults", .round = 3, .client = "c2", .num_shards = 2,
                            .model_size = 120};
    flc_rs_push(s, &c2, wide, &e);
    free(wide);
    flc_rs_push_cfg_t c0 = {.job = "faults", .round = 3, .client = "c0", .num_shards = 2,
                            .model_size = n};
    flc_rs_push(s, &c0, u[0], &e);
    flc_rs_merger_cfg_t mc = fault_merger(3, 1);
    flc_rs_report_t rep;
    rc = flc_rs_merger_run(s, &mc, &rep, &e);
    int named_inf = 0, named_dim = 0;
    for (size_t i = 0; i < rep.rejected.n; i++) {
        named_inf |= strncmp(rep.rejected.items[i], "c1:", 3) == 0 &&
                     strstr(rep.rejected.items[i], "Inf at element 60") != NULL;
        named_dim |= strncmp(rep.rejected.items[i], "c2:", 3) == 0 &&
                     strstr(rep.rejected.items[i], "wrong dimensions") != NULL;
    }
    for (size_t i = 0; i < rep.rejected.n; i++)
        printf("    # rejected %s\n", rep.rejected.items[i]);
    size_t merged = rep.participants.n;
    flc_rs_report_free(&rep);
    CHECK(rc == 0 && named_inf && named_dim && merged == 1,
          "merger rejects Inf (client and element named) and a wrong model size, merges c0");
    rc = flc_rs_merger_run(s, &mc, &rep, &e);
    CHECK(rc == FLC_ECLOSED, "running the same shard's merger again: %s", e.msg);
    flc_rs_report_free(&rep);
    flc_store_close(s);
    free_models(u, 3);
}

/* A second merger of a shard whose first merger still runs is refused. */
TEST(second_merger_refused)
{
    flc_store_t *s = open_store();
    flc_err_t e = {0};
    redisReply *own = NULL;
    char tag[FLC_TAG_MAX], key[FLC_KEY_MAX];
    flc_key_shard_tag(tag, "faults", 0, 2);
    flc_key_shard(key, tag, 5, "merger");
    flc_store_commandf(s, &own, "SET %s 1 PX 10000", key);
    if (own)
        freeReplyObject(own);
    flc_rs_merger_cfg_t mc = fault_merger(5, 0);
    flc_rs_report_t rep;
    int rc = flc_rs_merger_run(s, &mc, &rep, &e);
    CHECK(rc == FLC_EDUP && strstr(e.msg, "already has a merger"), "second merger: %s", e.msg);
    flc_rs_report_free(&rep);
    flc_store_close(s);
}

/* A merger's open cut by a failover after it ran (its reply lost, the lock
 * replicated) is run again by its caller through the same store: that
 * open finds the lock its own, where a merger through another store is
 * still refused (CI 2026-11-30: `train` through a master kill stopped on
 * "already has a merger running" naming its own process). The cut is the
 * open run alone here; the rerun must then merge all three updates. */
TEST(merger_rerun_through_its_store_owns_its_lock)
{
    float **u = fault_updates();
    flc_store_t *s = open_store(), *other = open_store();
    flc_err_t e = {0};
    for (int i = 0; i < 3; i++) {
        flc_rs_push_cfg_t c = {.job = "faults", .round = 6, .client = g_expected[i],
                               .num_shards = 2, .model_size = 100};
        CHECK(flc_rs_push(s, &c, u[i], &e) == FLC_OK, "push of %s: %s", g_expected[i], e.msg);
    }
    int closed = 1, mine = 0;
    int rc = flc_store_merger_open(s, "faults", 6, 0, 10000, NULL, 0, &closed, &mine);
    CHECK(rc == FLC_OK && !closed && mine, "the first open took the lock (%d)", rc);
    flc_rs_merger_cfg_t mc = fault_merger(6, 0);
    flc_rs_report_t rep;
    rc = flc_rs_merger_run(other, &mc, &rep, &e);
    CHECK(rc == FLC_EDUP && strstr(e.msg, "already has a merger"),
          "a merger through another store is refused: %s", e.msg);
    flc_rs_report_free(&rep);
    e = (flc_err_t){0};
    rc = flc_rs_merger_run(s, &mc, &rep, &e);
    CHECK(rc == FLC_OK && rep.participants.n == 3,
          "the rerun through the open's store merges (%d, %zu participants%s%s)", rc,
          rep.participants.n, e.msg[0] ? ": " : "", e.msg);
    flc_rs_report_free(&rep);
    flc_store_close(other);
    flc_store_close(s);
    free_models(u, 3);
}

/* Nobody at all: the merger fails and readers are told, not left waiting. */
TEST(empty_round_fails_readers)
{
    const uint64_t n = 100;
    flc_store_t *s = open_store();
    flc_err_t e = {0};
    /* both shards' mergers: a reader starts at a shard of its own */
    int rc = FLC_OK;
    for (uint32_t k = 0; k < 2; k++) {
        flc_rs_merger_cfg_t mc = fault_merger(4, k);
        flc_rs_report_t rep;
        int r = flc_rs_merger_run(s, &mc, &rep, k == 0 ? &e : &(flc_err_t){0});
        rc = k == 0 ? r : rc;
        flc_rs_report_free(&rep);
    }
    float out[100];
    flc_err_t e2 = {0};
    int prc = flc_rs_pull(s, "faults", 4, 2, n, 2000, out, &e2);
    CHECK(rc == FLC_ETIMEOUT && prc != 0 && strstr(e2.msg, "no update"),
          "empty round: merger fails (%s); a reader learns it: %s", e.msg, e2.msg);
    flc_store_close(s);
}

/* ---- 4. the aggregator function's JSON entry ------------------------------ */

TEST(aggregator_function_entry)
{
    flc_store_t *s = open_store();
    flc_err_t e = {0};
    const uint64_t n = 10;
    float a[10], b[10];
    for (int i = 0; i < 10; i++)
        a[i] = (float)i, b[i] = (float)(3 * i);
    flc_rs_push_cfg_t c = {.job = "fn", .round = 7, .client = "c0", .num_shards = 1,
                           .model_size = n, .num_samples = 1};
    flc_rs_push(s, &c, a, &e);
    c.client = "c1";
    c.num_samples = 3;
    flc_rs_push(s, &c, b, &e);
    char ev[512];
    snprintf(ev, sizeof ev,
             "{\"job\":\"fn\",\"round\":7,\"model_size\":10,\"rule\":\"fedavg\","
             "\"expected\":[\"c0\",\"c1\"],\"deadline_ms\":3000,\"readers\":1,\"redis\":\"%s\"}",
             g_fx.unix_url);
    cJSON *event = cJSON_Parse(ev), *res = NULL;
    int rc = flc_rs_aggregator_fn(NULL, event, &res, NULL, NULL, &e);
    float out[10];
    int prc = flc_rs_pull(s, "fn", 7, 1, n, 2000, out, &e);
    CHECK(rc == 0 && cJSON_GetArraySize(cJSON_GetObjectItem(res, "participants")) == 2 &&
              prc == 0 && out[4] == (1 * 4.0f + 3 * 12.0f) / 4.0f,
          "aggregator_run(event) merges the round (fedavg weights 1 and 3: out[4] = %g)",
          out[4]);
    cJSON_Delete(res);
    cJSON_Delete(event);
    static const char *bad[] = {
        "{\"round\":1,\"model_size\":10,\"expected\":[\"a\"]}",
        "{\"job\":\"fn\",\"round\":-1,\"model_size\":10,\"expected\":[\"a\"]}",
        "{\"job\":\"fn\",\"round\":1,\"model_size\":10,\"expected\":[]}",
        "{\"job\":\"fn\",\"round\":1,\"model_size\":10,\"expected\":[\"a\"],\"rule\":\"best\"}"};
    static const char *want[] = {"'job'", "'round'", "'expected'", "best"};
    int all = 1;
    for (int i = 0; i < 4; i++) {
        event = cJSON_Parse(bad[i]);
        rc = flc_rs_aggregator_fn(NULL, event, &res, NULL, NULL, &e);
        all &= rc == FLC_EINVAL && strstr(e.msg, want[i]) != NULL && res == NULL;
        printf("#   %s -> %s\n", bad[i], e.msg);
        cJSON_Delete(event);
    }
    CHECK(all, "bad aggregator events are refused naming the field");
    flc_store_close(s);
}

static void setup(void)
{
    for (int i = 0; i < 16; i++) {
        snprintf(g_names[i], sizeof g_names[i], "c%d", i);
        g_expected[i] = g_names[i];
    }
    flc_fixture_start(&g_fx, 0);
}

static void teardown(void)
{
    flc_fixture_stop(&g_fx);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(fedavg_grid), TEST_ENTRY(rules_sharded_vs_whole),
                 TEST_ENTRY(missing_contributor_deadline), TEST_ENTRY(late_push_refused),
                 TEST_ENTRY(duplicate_push_counted_once),
                 TEST_ENTRY(nonfinite_and_wrong_size_rejected), TEST_ENTRY(second_merger_refused),
                 TEST_ENTRY(merger_rerun_through_its_store_owns_its_lock),
                 TEST_ENTRY(empty_round_fails_readers), TEST_ENTRY(aggregator_function_entry),
                 TEST_ENTRY(queued_arrivals_taken_together))
