/* The evaluation query kinds (issue 17) on jobs with planted ground truth,
 * against a real redis-server, every number checked against an
 * independent computation with ml/model.h (flc_model_evaluate on models
 * built here from whole vectors, where the query sums per-shard partials):
 *   - accuracy and loss of every client's model (global + update) and of
 *     the aggregate, softmax and mlp, the update cut into 3 shards that
 *     split rows of softmax's W and hidden units of the mlp's W1, and the
 *     bytes the shard workers move (softmax: B x C sums per shard; mlp: B
 *     x the units each shard holds, a unit cut by an edge counted by both);
 *   - a job whose clients are known good (updates along a teacher model)
 *     or sign-flipped (20%): schedule --by accuracy picks only good ones,
 *     incentives pay them, faults finds the flippers with precision and
 *     recall 1, leave-one-out by accuracy equals the reference on these
 *     hand-made vectors, personalize --by accuracy returns the weighted
 *     model the test rebuilds;
 *   - two groups with different teachers, the evaluation set drawn from
 *     group A's: the personalized model of the best clients is group A's
 *     and beats the global (FedAvg) model there;
 *   - the targets on `flcache simulate` jobs with 20% label- or
 *     sign-flippers (non-IID, alpha 0.5): faults precision/recall >= 0.8;
 *   - OpenBLAS runs on one thread while any pool of shard workers runs, one
 *     worker's too (its bits depend on its thread count). */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include <cblas.h>

#include "aggregator/blas_workers.h"
#include "aggregator/query.h"
#include "aggregator/reduce_scatter.h"
#include "ml/dataset.h"
#include "ml/dataset_idx.h"
#include "ml/model.h"
#include "tests/harness.h"

#define S 3
#define NS 60 /* evaluation samples */
#define IN 12
#define C 3
#define MAXC 10

static flc_fixture_t g_fx;

typedef struct job {
    const char *name;
    int kind; /* FLC_MODEL_* */
    size_t hidden, P, n;
    char names[MAXC][8];
    const char *exp[MAXC];
    float g[256], u[MAXC][256];
    const char *fault[MAXC];
    flc_dataset_t *ds;
} job_t;

typedef struct marg {
    job_t *j;
    uint32_t shard;
    int rc;
} marg_t;

static void *merger(void *p)
{
    marg_t *a = p;
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(g_fx.unix_url, NULL, &e);
    flc_rs_merger_cfg_t c = {.job = a->j->name, .round = 1, .shard = a->shard, .num_shards = S,
                             .model_size = a->j->P, .expected = a->j->exp,
                             .n_expected = a->j->n, .deadline_ms = 10000, .readers = 1};
    flc_merge_rule_init(&c.rule, "fedavg", NULL);
    flc_rs_report_t rep;
    a->rc = flc_rs_merger_run(s, &c, &rep, &e);
    if (a->rc)
        printf("# merger: %s\n", e.msg);
    flc_rs_report_free(&rep);
    flc_store_close(s);
    return NULL;
}

static flc_store_t *open_store(void)
{
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(g_fx.unix_url, NULL, &e);
    if (s == NULL)
        flc_t_fatal("connect: %s", e.msg);
    return s;
}

static flc_model_t *model_of(const job_t *j)
{
    flc_model_desc_t d;
    flc_model_t *m = NULL;
    flc_err_t e = {0};
    if (flc_model_desc_init(&d, j->kind == FLC_MODEL_MLP ? "mlp" : "softmax", IN, j->hidden, C,
                            &e) != 0 ||
        flc_model_new(&d, NS, &m, &e) != 0)
        flc_t_fatal("model: %s", e.msg);
    return m;
}

/* Stores j: its evaluation set, the global model of round 0 (J/g), round 1
 * with every client's update (equal weights) and metadata, merged. */
static void store_job(job_t *j)
{
    flc_store_t *s = open_store();
    flc_err_t e = {0};
    flc_query_evalset_t es = {.kind = j->kind, .in = IN, .hidden = j->hidden, .out = C,
                              .n = NS, .x = j->ds->x, .y = j->ds->y};
    if (flc_query_evalset_put(s, j->name, &es, &e) != 0)
        flc_t_fatal("eval set: %s", e.msg);
    flc_shard_t g = {.round = 0, .num_shards = 1, .count = j->P, .model_size = j->P,
                     .values = j->g};
    snprintf(g.job, sizeof g.job, "%s/g", j->name);
    if (flc_store_put_merged(s, &g) != 0)
        flc_t_fatal("global: %s", flc_store_errstr(s));
    pthread_t th[S];
    marg_t ma[S];
    for (uint32_t k = 0; k < S; k++) {
        ma[k] = (marg_t){j, k, 0};
        pthread_create(&th[k], NULL, merger, &ma[k]);
    }
    for (size_t i = 0; i < j->n; i++) {
        flc_rs_push_cfg_t pc = {.job = j->name, .round = 1, .client = j->names[i],
                                .num_shards = S, .model_size = j->P, .num_samples = 10};
        if (flc_rs_push(s, &pc, j->u[i], &e) != 0)
            flc_t_fatal("push: %s", e.msg);
        Flcache__ModelUpdate u = FLCACHE__MODEL_UPDATE__INIT;
        Flcache__ModelUpdate__LabelsEntry lab = FLCACHE__MODEL_UPDATE__LABELS_ENTRY__INIT;
        Flcache__ModelUpdate__LabelsEntry *labs[] = {&lab};
        u.job = (char *)j->name;
        u.round = 1;
        u.client = j->names[i];
        u.num_samples = 10;
        u.status = "accepted";
        lab.key = "fault";
        lab.value = (char *)(j->fault[i] ? j->fault[i] : "none");
        u.n_labels = 1;
        u.labels = labs;
        if (flc_store_put_update_meta(s, &u) != 0)
            flc_t_fatal("meta: %s", flc_store_errstr(s));
    }
    for (uint32_t k = 0; k < S; k++)
        pthread_join(th[k], NULL);
    flc_store_close(s);
}

static void job_init(job_t *j, const char *name, int kind, size_t hidden, size_t n)
{
    memset(j, 0, sizeof *j);
    j->name = name;
    j->kind = kind;
    j->hidden = kind == FLC_MODEL_MLP ? hidden : 0;
    j->P = kind == FLC_MODEL_MLP ? IN * hidden + hidden + hidden * C + C : IN * C + C;
    j->n = n;
    for (size_t i = 0; i < n; i++) {
        snprintf(j->names[i], sizeof j->names[i], "c%zu", i);
        j->exp[i] = j->names[i];
    }
    flc_err_t e = {0};
    if (flc_data_new(NS, IN, C, &j->ds, &e) != 0)
        flc_t_fatal("data: %s", e.msg);
    flc_t_fill(j->ds->x, NS * IN, 77);
}

/* Labels of j's evaluation set: the predictions of teacher t. */
static void label_by(job_t *j, const float *t)
{
    flc_model_t *m = model_of(j);
    flc_err_t e = {0};
    if (flc_model_predict(m, t, j->ds->x, NS, j->ds->y, &e) != 0)
        flc_t_fatal("predict: %s", e.msg);
    flc_model_free(m);
}

/* Accuracy and loss of g + sum_i c[i] u_i, computed on whole vectors. */
static double ref_eval(const job_t *j, const double *c, double *loss)
{
    float w[256];
    for (size_t x = 0; x < j->P; x++) {
        double v = j->g[x];
        for (size_t i = 0; i < j->n; i++)
            v += c[i] * j->u[i][x];
        w[x] = (float)v;
    }
    flc_model_t *m = model_of(j);
    double acc = 0, l = 0;
    flc_err_t e = {0};
    if (flc_model_evaluate(m, w, j->ds, NULL, 0, &acc, &l, &e) != 0)
        flc_t_fatal("evaluate: %s", e.msg);
    flc_model_free(m);
    if (loss)
        *loss = l;
    return acc;
}

static Flcache__QueryAnswer *ask(const char *job, flc_query_kind_t kind, int by_acc, unsigned k,
                                 float **model, uint64_t *mlen)
{
    flc_store_t *s = open_store();
    flc_query_req_t q = {.kind = kind, .job = job, .round_from = 1, .round_to = 1,
                         .by_accuracy = by_acc, .k = k, .samples = NS, .url = g_fx.unix_url,
                         .model_out = model, .model_len = mlen};
    Flcache__QueryAnswer *a = NULL;
    flc_err_t e = {0};
    if (flc_query_run(s, &q, &a, &e) != 0)
        printf("# query %s: %s\n", flc_query_kind_name(kind), e.msg);
    flc_store_close(s);
    return a;
}

static const Flcache__QueryRow *row_of(const Flcache__QueryAnswer *a, const char *key)
{
    for (size_t i = 0; a && i < a->n_rows; i++)
        if (strcmp(a->rows[i]->key, key) == 0)
            return a->rows[i];
    return NULL;
}

static double summary(const Flcache__QueryAnswer *a, const char *key)
{
    for (size_t i = 0; a && i < a->n_summary; i++)
        if (strcmp(a->summary[i]->key, key) == 0)
            return a->summary[i]->value;
    return NAN;
}

static job_t g_soft, g_mlp, g_plant, g_groups;
static float g_teacher[256], g_teacher_b[256];

static void setup(void)
{
    flc_fixture_start(&g_fx, 0);
    /* Random global model and updates: accuracy to be matched exactly. */
    job_init(&g_soft, "evs", FLC_MODEL_SOFTMAX, 0, 6);
    job_init(&g_mlp, "evm", FLC_MODEL_MLP, 5, 6);
    job_t *rj[] = {&g_soft, &g_mlp};
    for (int r = 0; r < 2; r++) {
        job_t *j = rj[r];
        float t[256];
        flc_t_fill(t, j->P, 5 + r);
        label_by(j, t);
        flc_t_fill(j->g, j->P, 11 + r);
        for (size_t i = 0; i < j->n; i++) {
            flc_t_fill(j->u[i], j->P, 100 + 10 * r + (unsigned)i);
            for (size_t x = 0; x < j->P; x++)
                j->u[i][x] = 0.5f * j->u[i][x] + 0.3f * t[x];
        }
        store_job(j);
    }
    /* Planted: 8 clients along the teacher (accuracy 1), 2 sign-flipped
     * strongly enough that the FedAvg points the other way. */
    job_init(&g_plant, "evp", FLC_MODEL_SOFTMAX, 0, 10);
    flc_t_fill(g_teacher, g_plant.P, 42);
    label_by(&g_plant, g_teacher);
    for (size_t i = 0; i < g_plant.n; i++) {
        double a = i < 8 ? 1.0 + 0.1 * (double)i : -6.0;
        for (size_t x = 0; x < g_plant.P; x++)
            g_plant.u[i][x] = (float)a * g_teacher[x];
        g_plant.fault[i] = i < 8 ? "none" : "sign-flip";
    }
    store_job(&g_plant);
    /* Two groups: c0..c3 learn teacher A, c4..c9 teacher B; the evaluation
     * set is group A's data (labelled by A). */
    job_init(&g_groups, "evg", FLC_MODEL_SOFTMAX, 0, 10);
    flc_t_fill(g_teacher_b, g_groups.P, 43);
    label_by(&g_groups, g_teacher);
    for (size_t i = 0; i < g_groups.n; i++)
        for (size_t x = 0; x < g_groups.P; x++)
            g_groups.u[i][x] = i < 4 ? g_teacher[x] : g_teacher_b[x];
    store_job(&g_groups);
}

static void teardown(void)
{
    flc_fixture_stop(&g_fx);
}

static void check_exact(job_t *j)
{
    Flcache__QueryAnswer *a = ask(j->name, FLC_Q_ACCURACY, 0, 0, NULL, NULL);
    CHECK(a != NULL && a->n_rows == j->n, "%s: accuracy answers one row per client",
          j->name);
    int ok = 1;
    double c[MAXC] = {0};
    for (size_t i = 0; i < j->n; i++) {
        c[i] = 1;
        double loss, acc = ref_eval(j, c, &loss);
        c[i] = 0;
        const Flcache__QueryRow *r = row_of(a, j->names[i]);
        printf("# %s %s: accuracy %.4f (reference %.4f), loss %.5f (reference %.5f)\n",
               j->name, j->names[i], r ? r->values[0] : NAN, acc, r ? r->values[1] : NAN, loss);
        ok &= r && r->values[0] == acc && fabs(r->values[1] - loss) < 1e-4 * (1 + loss);
    }
    double g0 = ref_eval(j, c, NULL);
    for (size_t i = 0; i < j->n; i++)
        c[i] = 1.0 / (double)j->n;
    double agg = ref_eval(j, c, NULL);
    EXPECT(ok, "%s: every client's accuracy equals flc_model_evaluate of global + update on "
           "the same %d samples, loss within 1e-4", j->name, NS);
    EXPECT(summary(a, "global_accuracy") == g0 && summary(a, "aggregate_accuracy") == agg,
           "%s: global model %.4f (ref %.4f), merged aggregate %.4f (ref %.4f)", j->name,
           summary(a, "global_accuracy"), g0, summary(a, "aggregate_accuracy"), agg);
    /* What each shard's slice [o, o + cnt) moves per delta (the clients and
     * the aggregate): softmax (W and b its first layer, input-major): NS x C
     * sums when it reaches them; mlp (W1 unit-major, IN floats a unit):
     * NS x the units it touches, and its floats of b1, W2, b2. The global
     * model's are computed next to it too, as one shard. */
    int mlp = j->kind == FLC_MODEL_MLP;
    size_t H = mlp ? j->hidden : C;
    uint64_t fe = mlp ? (uint64_t)IN * H : (uint64_t)IN * C + C, want = 0;
    for (uint32_t k = 0; k <= S; k++) {
        uint64_t o = 0, cnt = j->P; /* k == S: the global model, one shard */
        if (k < S)
            flc_rs_shard_range(j->P, S, k, &o, &cnt);
        uint64_t end = o + cnt, cols = 0;
        if (o < fe)
            cols = mlp ? ((end < fe ? end : fe) + IN - 1) / IN - o / IN : C;
        uint64_t later = end > fe ? end - (o > fe ? o : fe) : 0;
        want += (k < S ? j->n + 1 : 1) * (NS * cols + later) * sizeof(float);
    }
    EXPECT(a->bytes_moved == want && a->bytes_read == (j->n + 2) * j->P * sizeof(float),
           "%s: bytes moved %llu (want %llu: first-layer sums, not updates), read %llu "
           "(updates, aggregate, global)", j->name, (unsigned long long)a->bytes_moved,
           (unsigned long long)want, (unsigned long long)a->bytes_read);
    flcache__query_answer__free_unpacked(a, NULL);
}

TEST(accuracy_softmax_exact)
{
    check_exact(&g_soft);
}

TEST(accuracy_mlp_exact)
{
    check_exact(&g_mlp);
}

TEST(planted_schedule_incentives_faults)
{
    Flcache__QueryAnswer *a = ask("evp", FLC_Q_SCHEDULE, 1, 8, NULL, NULL);
    int ok = a && a->n_rows == 8;
    for (size_t i = 0; ok && i < a->n_rows; i++)
        ok &= strcmp(a->rows[i]->key, "c8") != 0 && strcmp(a->rows[i]->key, "c9") != 0 &&
              a->rows[i]->values[1] == 1.0;
    EXPECT(ok, "schedule --by accuracy --k 8: the 8 good clients, each accuracy 1");
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
    a = ask("evp", FLC_Q_INCENTIVES, 0, 0, NULL, NULL);
    ok = a && a->n_rows == 10;
    for (size_t i = 0; ok && i < 10; i++) {
        const Flcache__QueryRow *r = row_of(a, g_plant.names[i]);
        /* mean accuracy: (8 x 1 + 2 x acc_bad) / 10 */
        ok &= r && (i < 8 ? r->values[0] > 0 : r->values[0] < 0);
    }
    EXPECT(ok, "incentives: the good clients earn tokens, the flippers lose them");
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
    a = ask("evp", FLC_Q_FAULTS, 0, 0, NULL, NULL);
    EXPECT(a && summary(a, "precision") == 1.0 && summary(a, "recall") == 1.0 &&
               a->n_rows == 10 && (strcmp(a->rows[0]->key, "c8") == 0 ||
                                   strcmp(a->rows[0]->key, "c9") == 0),
           "faults: the two sign-flippers rank first, precision %.2f recall %.2f",
           summary(a, "precision"), summary(a, "recall"));
    if (a)
        flcache__query_answer__free_unpacked(a, NULL);
}

TEST(planted_leave_one_out)
{
    Flcache__QueryAnswer *a = ask("evp", FLC_Q_CONTRIBUTION, 1, 0, NULL, NULL);
    CHECK(a && a->n_rows == 10, "contribution --by accuracy: one row per client");
    double c[MAXC], all = 0;
    for (size_t i = 0; i < 10; i++)
        c[i] = 0.1;
    all = ref_eval(&g_plant, c, NULL);
    int ok = 1;
    for (size_t i = 0; i < 10; i++) {
        for (size_t k = 0; k < 10; k++)
            c[k] = k == i ? 0 : 1.0 / 9;
        double want = all - ref_eval(&g_plant, c, NULL);
        const Flcache__QueryRow *r = row_of(a, g_plant.names[i]);
        printf("# %s: loo_drop %.4f, reference %.4f\n", g_plant.names[i],
               r ? r->values[0] : NAN, want);
        ok &= r && fabs(r->values[0] - want) < 1e-12;
    }
    EXPECT(ok, "leave-one-out accuracy drop equals the reference built from whole vectors");
    EXPECT(row_of(a, "c8")->values[0] < 0 && row_of(a, "c9")->values[0] < 0,
           "leaving a flipper out raises the FedAvg's accuracy (negative contribution)");
    flcache__query_answer__free_unpacked(a, NULL);
}

TEST(personalize_by_accuracy_model)
{
    float *model = NULL;
    uint64_t mlen = 0;
    Flcache__QueryAnswer *a = ask("evp", FLC_Q_PERSONALIZE, 1, 3, &model, &mlen);
    CHECK(a && a->n_rows == 3 && model && mlen == g_plant.P,
          "personalize --by accuracy --k 3: three members and the model");
    double c[MAXC] = {0};
    for (size_t r = 0; r < 3; r++) {
        int i = atoi(a->rows[r]->key + 1);
        c[i] = a->rows[r]->values[1];
        EXPECT(i < 8 && a->rows[r]->values[0] == 1.0, "member %s is a good client",
               a->rows[r]->key);
    }
    double maxd = 0;
    for (size_t x = 0; x < g_plant.P; x++) {
        double v = g_plant.g[x];
        for (size_t i = 0; i < 10; i++)
            v += c[i] * g_plant.u[i][x];
        maxd = fmax(maxd, fabs(v - model[x]));
    }
    EXPECT(maxd < 1e-5, "the model is global + accuracy-weighted mean of the members' updates "
           "(max difference %.2g)", maxd);
    EXPECT(summary(a, "personalized_accuracy") == ref_eval(&g_plant, c, NULL) &&
               summary(a, "personalized_accuracy") == 1.0,
           "its accuracy %.3f is the reference's and 1", summary(a, "personalized_accuracy"));
    free(model);
    flcache__query_answer__free_unpacked(a, NULL);
}

TEST(personalized_beats_global_on_its_group)
{
    Flcache__QueryAnswer *a = ask("evg", FLC_Q_PERSONALIZE, 1, 4, NULL, NULL);
    CHECK(a && a->n_rows == 4, "personalize --by accuracy --k 4 on group A's data");
    int ok = 1;
    for (size_t r = 0; r < 4; r++)
        ok &= atoi(a->rows[r]->key + 1) < 4;
    double p = summary(a, "personalized_accuracy"), f = summary(a, "fedavg_accuracy");
    EXPECT(ok, "the members are group A's clients c0..c3");
    EXPECT(p == 1.0 && p > f, "group A's personalized model %.3f beats the global FedAvg %.3f "
           "on group A's data", p, f);
    flcache__query_answer__free_unpacked(a, NULL);
}

TEST(no_eval_set_named)
{
    flc_store_t *s = open_store();
    flc_query_req_t q = {.kind = FLC_Q_ACCURACY, .job = "evx", .round_from = 1, .round_to = 1};
    /* a job with rounds and no evaluation set */
    float u[4] = {1, 2, 3, 4};
    flc_err_t e = {0};
    flc_shard_t sh = {.round = 1, .num_shards = 1, .count = 4, .model_size = 4, .values = u};
    snprintf(sh.job, sizeof sh.job, "evx");
    snprintf(sh.client, sizeof sh.client, "c0");
    if (flc_store_put_update(s, &sh) != 0)
        flc_t_fatal("put: %s", flc_store_errstr(s));
    Flcache__QueryAnswer *a = NULL;
    int rc = flc_query_run(s, &q, &a, &e);
    EXPECT(rc == FLC_ENOTFOUND && strstr(e.msg, "no evaluation set") &&
               strstr(e.msg, "eval-set"),
           "a job without an evaluation set is refused, saying how to add one: %s", e.msg);
    flc_store_close(s);
}

/* An mlp's evaluation set of version 1 was stored beside updates whose W1
 * was input-major: evaluating them as unit-major would answer wrongly, so
 * the query refuses, saying why; a softmax's (layout unchanged) is read. */
TEST(old_mlp_eval_set_refused)
{
    flc_store_t *s = open_store();
    flc_err_t e = {0};
    float x[IN] = {0}, lab[6 + 1] = {1, 2, IN, 4, C, 1, 0}; /* v1, mlp, 1 sample */
    flc_shard_t xs = {.round = 0, .num_shards = 1, .count = IN, .model_size = IN, .values = x};
    snprintf(xs.job, sizeof xs.job, "evo/eval");
    flc_shard_t ys = xs;
    ys.round = 1, ys.count = ys.model_size = 7, ys.values = lab;
    if (flc_store_put_merged(s, &xs) != 0 || flc_store_put_merged(s, &ys) != 0)
        flc_t_fatal("put: %s", flc_store_errstr(s));
    flc_query_evalset_t es;
    int rc = flc_query_evalset_get(s, "evo", 0, &es, &e);
    EXPECT(rc == FLC_EDATA && strstr(e.msg, "input-major") && strstr(e.msg, "evo"),
           "an mlp's version-1 evaluation set is refused, naming the job and why: %s", e.msg);
    lab[1] = 1, lab[3] = 0; /* the same for a softmax */
    if (flc_store_put_merged(s, &ys) != 0)
        flc_t_fatal("put: %s", flc_store_errstr(s));
    rc = flc_query_evalset_get(s, "evo", 0, &es, &e);
    EXPECT(rc == FLC_OK && es.kind == FLC_QUERY_MODEL_SOFTMAX && es.n == 1 && es.in == IN,
           "a softmax's version-1 set is read (rc %d)", rc);
    if (rc == FLC_OK)
        flc_query_evalset_free(&es);
    flc_store_close(s);
}

/* Issue 17 point 3: 2 of 10 clients (20%) send -6x an honest update, so
 * the FedAvg aggregate points their way and the cosine-to-FedAvg score
 * ranks them first; against the Multi-Krum centre none ranks in the top
 * half. */
TEST(robust_contribution_flippers)
{
    job_t j;
    job_init(&j, "evr", FLC_MODEL_SOFTMAX, 0, 10);
    float dir[256], noise[256];
    flc_t_fill(dir, j.P, 9);
    for (size_t i = 0; i < j.n; i++) {
        flc_t_fill(noise, j.P, 200 + (unsigned)i);
        for (size_t x = 0; x < j.P; x++)
            j.u[i][x] = (i == 3 || i == 7 ? -6.0f : 1.0f) * (dir[x] + 0.3f * noise[x]);
    }
    label_by(&j, dir);
    store_job(&j);
    Flcache__QueryAnswer *a = ask("evr", FLC_Q_CONTRIBUTION, 0, 0, NULL, NULL);
    CHECK(a && a->n_rows == 10 && a->num_numeric == 4 &&
              strcmp(a->columns[3], "robust_contribution") == 0,
          "contribution has the robust_contribution column beside the FedAvg one");
    int fed_top = 0, rob_top = 0;
    for (int col = 0; col < 4; col += 3) {
        int *top = col == 0 ? &fed_top : &rob_top;
        for (int f = 3; f <= 7; f += 4) { /* how many rank above the flipper */
            double v = row_of(a, j.names[f])->values[col];
            int above = 0;
            for (size_t i = 0; i < 10; i++)
                above += row_of(a, j.names[i])->values[col] > v;
            *top += above < 5;
        }
    }
    printf("# flippers in the top half: %d by cos to FedAvg, %d by cos to the Krum centre\n",
           fed_top, rob_top);
    EXPECT(rob_top == 0, "robust_contribution: neither flipper ranks in the top half");
    EXPECT(fed_top == 2, "the FedAvg score, pulled by them, ranks both in the top half (why "
           "the robust one is there)");
    flcache__query_answer__free_unpacked(a, NULL);
    flc_data_free(j.ds);
}

/* The command line and the function role: `flcache query accuracy
 * --samples`, `schedule --by accuracy`, and the event's "by" and "samples". */
TEST(cli_and_function_role)
{
    char cmd[1024], out[16384];
    snprintf(cmd, sizeof cmd, "FLCACHE_REDIS='%s' %s/flcache query schedule --by accuracy "
             "--job evp --round 1 --k 3 --samples %d --json", g_fx.unix_url, flc_t_build_dir(),
             NS);
    int rc = flc_t_run(cmd, out, sizeof out);
    cJSON *j = rc == 0 ? cJSON_Parse(out) : NULL;
    cJSON *rows = j ? cJSON_GetObjectItem(j, "rows") : NULL;
    EXPECT(rows && cJSON_GetArraySize(rows) == 3,
           "flcache query schedule --by accuracy --k 3 --json: 3 rows (exit %d)", rc);
    cJSON_Delete(j);
    snprintf(cmd, sizeof cmd, "FLCACHE_REDIS='%s' %s/flcache query schedule --by bogus --job evp",
             g_fx.unix_url, flc_t_build_dir());
    rc = flc_t_run(cmd, out, sizeof out);
    EXPECT(rc == 2, "--by bogus is a usage error (exit %d)", rc);
    cJSON *ev = cJSON_Parse("{\"kind\":\"incentives\",\"job\":\"evp\",\"round\":1,"
                            "\"samples\":60}");
    cJSON *res = NULL;
    flc_err_t e = {0};
    flc_store_cfg_t sc = {.url = g_fx.unix_url};
    rc = flc_query_fn(&sc, ev, &res, &e);
    rows = res ? cJSON_GetObjectItem(res, "rows") : NULL;
    EXPECT(rc == 0 && rows && cJSON_GetArraySize(rows) == 10,
           "the query role answers incentives for the 10 clients (%s)", e.msg);
    cJSON_Delete(ev);
    cJSON_Delete(res);
    ev = cJSON_Parse("{\"kind\":\"schedule\",\"job\":\"evp\",\"by\":\"bogus\"}");
    res = NULL;
    rc = flc_query_fn(&sc, ev, &res, &e);
    EXPECT(rc == FLC_EINVAL && strstr(e.msg, "'by'"), "event \"by\":\"bogus\" refused: %s",
           e.msg);
    cJSON_Delete(ev);
    cJSON_Delete(res);
}

/* `flcache eval-set` stores the first N test samples as simulate loads
 * them, with the model descriptor; read back exactly. */
TEST(eval_set_command)
{
    flc_dataset_t *ref = NULL;
    flc_err_t e = {0};
    if (flc_data_load_fashion(NULL, 0, 50, &ref, &e) != 0)
        flc_t_skip("no Fashion-MNIST here: %s", e.msg);
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof cmd, "FLCACHE_REDIS='%s' %s/flcache eval-set --job evc --model mlp "
             "--hidden 7 --samples 50", g_fx.unix_url, flc_t_build_dir());
    int rc = flc_t_run(cmd, out, sizeof out);
    CHECK(rc == 0, "flcache eval-set --job evc --model mlp --hidden 7 --samples 50 (exit %d: %s)",
          rc, out);
    flc_store_t *s = open_store();
    flc_query_evalset_t es;
    rc = flc_query_evalset_get(s, "evc", 0, &es, &e);
    CHECK(rc == 0 && es.n == 50 && es.kind == FLC_QUERY_MODEL_MLP && es.in == 784 &&
              es.hidden == 7 && es.out == 10,
          "read back: 50 samples for an mlp 784-7-10 (%s)", e.msg);
    EXPECT(memcmp(es.x, ref->x, 50 * 784 * sizeof(float)) == 0 &&
               memcmp(es.y, ref->y, 50 * sizeof(int32_t)) == 0,
           "inputs and labels are the test split's first 50, bit for bit");
    flc_query_evalset_free(&es);
    flc_data_free(ref);
    flc_store_close(s);
}

/* The targets on simulated planted faults: `flcache simulate` (50
 * non-IID clients, alpha 0.5, 20 per round, 5 rounds, 20% faulty) stores
 * its evaluation set itself; `faults` over the rounds finds the faulty
 * clients with precision and recall >= 0.8, and the accuracy-weighted
 * model of the 5 best clients beats the global model. */
TEST(simulated_fault_targets)
{
    flc_dataset_t *probe = NULL;
    flc_err_t e = {0};
    if (flc_data_load_fashion(NULL, 0, 1, &probe, &e) != 0)
        flc_t_skip("no Fashion-MNIST here: %s", e.msg);
    flc_data_free(probe);
    static const char *faults[] = {"label-flip", "sign-flip"};
    for (int f = 0; f < 2; f++) {
        char cmd[1024], out[8192], job[16];
        snprintf(job, sizeof job, "sim%d", f);
        snprintf(cmd, sizeof cmd, "FLCACHE_REDIS='%s' %s/flcache simulate --job %s --clients 50 "
                 "--per-round 20 --rounds 5 --alpha 0.5 --faulty 0.2 --fault %s --shards 2 "
                 "--inproc --quiet --subset 20000 --test-subset 1000", g_fx.unix_url,
                 flc_t_build_dir(), job, faults[f]);
        int rc = flc_t_run(cmd, out, sizeof out);
        CHECK(rc == 0, "simulate %s (exit %d)", faults[f], rc);
        flc_store_t *s = open_store();
        flc_query_req_t q = {.kind = FLC_Q_FAULTS, .job = job, .round_from = 1, .round_to = 5,
                             .url = g_fx.unix_url};
        Flcache__QueryAnswer *a = NULL;
        rc = flc_query_run(s, &q, &a, &e);
        double p = summary(a, "precision"), r = summary(a, "recall");
        EXPECT(rc == 0 && p >= 0.8 && r >= 0.8, "faults over rounds 1..5, 20%% %s: precision "
               "%.2f, recall %.2f (target 0.8) %s", faults[f], p, r, e.msg);
        if (a)
            flcache__query_answer__free_unpacked(a, NULL);
        a = NULL;
        q = (flc_query_req_t){.kind = FLC_Q_PERSONALIZE, .by_accuracy = 1, .k = 5, .job = job,
                              .round_from = 5, .round_to = 5, .url = g_fx.unix_url};
        rc = flc_query_run(s, &q, &a, &e);
        double pa = summary(a, "personalized_accuracy"), ga = summary(a, "global_accuracy");
        EXPECT(rc == 0 && pa > ga, "%s: the 5 best clients' accuracy-weighted model %.3f beats "
               "the global model %.3f on the evaluation set", faults[f], pa, ga);
        if (a)
            flcache__query_answer__free_unpacked(a, NULL);
        flc_store_close(s);
    }
}

/* A pool of one (the global model's worker) beside a pool of three (the
 * round's): OpenBLAS has one thread from the first begin to the last end,
 * whichever starts first, and its own count after. */
TEST(one_blas_thread_while_any_pool_runs)
{
    openblas_set_num_threads(2);
    int before = openblas_get_num_threads();
    if (before < 2)
        flc_t_skip("OpenBLAS here runs %d thread(s): nothing to take away", before);
    flc_blas_workers_begin(1);
    int one = openblas_get_num_threads();
    flc_blas_workers_begin(3);
    flc_blas_workers_end(3);
    int still = openblas_get_num_threads();
    flc_blas_workers_end(1);
    int after = openblas_get_num_threads();
    EXPECT(one == 1 && still == 1 && after == before, "OpenBLAS threads: %d before, %d while "
           "a pool of one runs, %d after a pool of three beside it ended, %d after both "
           "(want %d, 1, 1, %d)", before, one, still, after, before, before);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(one_blas_thread_while_any_pool_runs),
                 TEST_ENTRY(accuracy_softmax_exact),
                 TEST_ENTRY(accuracy_mlp_exact), TEST_ENTRY(planted_schedule_incentives_faults),
                 TEST_ENTRY(planted_leave_one_out), TEST_ENTRY(personalize_by_accuracy_model),
                 TEST_ENTRY(personalized_beats_global_on_its_group), TEST_ENTRY(no_eval_set_named),
                 TEST_ENTRY(old_mlp_eval_set_refused),
                 TEST_ENTRY(robust_contribution_flippers), TEST_ENTRY(cli_and_function_role),
                 TEST_ENTRY(eval_set_command), TEST_ENTRY(simulated_fault_targets))
