/* The federated simulation end to end against a real redis-server, on a
 * small Fashion-MNIST subset so it stays fast under sanitizers:
 *   - the Dirichlet split of the driver covers every sample exactly once,
 *     and the byte loader agrees with the float loader;
 *   - the same seed gives the same accuracies, another seed other ones;
 *   - a short FedAvg run improves test accuracy over the initial model, and
 *     leaves RoundMeta and one ModelUpdate per sampled client in the store;
 *   - dropouts are listed as missing and marked "dropped"; with a deadline,
 *     stragglers are rejected as late, marked "late", and their update is
 *     still in the cache;
 *   - Krum never selects sign-flipping clients (ground truth labels);
 *   - the same through real function processes on the local pool: this
 *     test binary re-executes itself as the function (FLC_SIM_TEST_FN=1)
 *     with the `client` role registered, like flcache-fn does. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cache/store.h"
#include "cli/sim_pool.h"
#include "clients/client.h"
#include "clients/client_data.h"
#include "clients/sim.h"
#include "ml/dataset_idx.h"
#include "ml/partition.h"
#include "runtime/fn.h"
#include "runtime/pool.h"
#include "tests/harness.h"

static flc_fixture_t fx;

/* ---- the function side, when the pool runs this binary ---- */

static int client_role(const cJSON *ev, cJSON **res, flc_fn_ctx_t *ctx)
{
    double c = -1, m = -1;
    int rc = flc_client_fn(NULL, NULL, ev, res, &c, &m, &ctx->err); /* the event names all */
    if (c >= 0 && m >= 0) {
        ctx->compute_ms = c;
        ctx->comm_ms = m;
    }
    return rc;
}

static int as_function(int argc, char **argv)
{
    flc_fn_table_t *t = flc_fn_table_new();
    flc_fn_register(t, "client", client_role, NULL, "federated client");
    int rc = flc_fn_main(t, argc, argv, NULL, 0);
    flc_fn_table_free(t);
    return rc;
}

/* ---- helpers ---- */

static flc_sim_inproc_t threads = {.threads = 4};

static void base_cfg(flc_sim_cfg_t *c, const char *job)
{
    flc_sim_cfg_init(c);
    c->job = job;
    c->clients = 20;
    c->per_round = 5;
    c->rounds = 3;
    c->alpha = 0.5;
    c->subset = 3000;
    c->test_subset = 1000;
    c->lr = 0.1;
    c->redis = fx.unix_url;
    c->invoke_user = &threads;
}

static int run(const flc_sim_cfg_t *c, flc_sim_result_t *res)
{
    flc_err_t e = {0};
    flc_sim_clear(c->redis, NULL, c->job, &e);
    int rc = flc_sim_run(c, NULL, NULL, res, &e);
    if (rc != 0)
        printf("# run %s: %s\n", c->job, flc_err_msg(&e));
    return rc;
}

static const char *label(const Flcache__ModelUpdate *u, const char *k)
{
    for (size_t i = 0; i < u->n_labels; i++)
        if (strcmp(u->labels[i]->key, k) == 0)
            return u->labels[i]->value;
    return "";
}

static int has(char **v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return 1;
    return 0;
}

static double metric(const Flcache__RoundMeta *m, const char *k)
{
    for (size_t i = 0; i < m->n_metrics; i++)
        if (strcmp(m->metrics[i]->key, k) == 0)
            return m->metrics[i]->value;
    return NAN;
}

/* ---- tests ---- */

TEST(split)
{
    flc_err_t e = {0};
    flc_cdata_t *lab = NULL, *full = NULL;
    flc_dataset_t *ref = NULL;
    int rc = flc_cdata_load_labels(NULL, 0, &lab, &e);
    CHECK(rc == 0 && lab->n == 60000, "all 60000 train labels load without the images");
    if (rc != 0)
        return;
    rc = flc_cdata_load(NULL, 500, &full, &e);
    flc_data_load_fashion(NULL, 1, 500, &ref, &e);
    int same = rc == 0 && ref != NULL;
    for (size_t i = 0; same && i < 500 * 784; i++)
        same = fabsf(full->px[i] / 255.0f - ref->x[i]) < 1e-6f && full->y[i / 784] == ref->y[i / 784];
    CHECK(same, "byte pixels / 255 and labels equal the float loader's on 500 samples");
    flc_cdata_free(full);
    flc_data_free(ref);

    int Ns[] = {100, 10000};
    double alphas[] = {0.5, 0.1};
    for (int t = 0; t < 2; t++) {
        flc_parts_t *p = NULL;
        rc = flc_split_dirichlet(lab->y, lab->n, 10, Ns[t], alphas[t], 7, 0, &p, &e);
        unsigned char *seen = calloc(lab->n, 1);
        size_t dup = 0, total = 0, empty = 0;
        for (int k = 0; rc == 0 && k < Ns[t]; k++) {
            const uint32_t *ix;
            size_t n = flc_parts_get(p, k, &ix);
            empty += n == 0;
            for (size_t i = 0; i < n; i++) {
                dup += seen[ix[i]]++ > 0;
                total++;
            }
        }
        size_t covered = 0;
        for (size_t i = 0; i < lab->n; i++)
            covered += seen[i] == 1;
        CHECK(rc == 0 && dup == 0 && total == 60000 && covered == 60000,
              "Dirichlet split over N=%d alpha=%g covers each of 60000 samples exactly once "
              "(%zu clients without data)", Ns[t], alphas[t], empty);
        free(seen);
        flc_parts_free(p);
    }
    flc_cdata_free(lab);
}

TEST(repro_and_learning)
{
    flc_sim_cfg_t c;
    flc_sim_result_t a = {0}, b = {0}, d = {0};
    base_cfg(&c, "rep-a");
    c.rounds = 4;
    int ra = run(&c, &a);
    c.job = "rep-b";
    int rb = run(&c, &b);
    c.job = "rep-c";
    c.seed = 2;
    int rd = run(&c, &d);
    CHECK(ra == 0 && rb == 0 && rd == 0 && a.nrounds == 4 && b.nrounds == 4,
          "three 4-round runs complete");
    if (ra || rb || rd)
        return;
    int same = 1, differ = 0;
    for (size_t i = 0; i < 4; i++) {
        same &= a.rounds[i].accuracy == b.rounds[i].accuracy &&
                a.rounds[i].loss == b.rounds[i].loss;
        differ |= a.rounds[i].accuracy != d.rounds[i].accuracy;
    }
    CHECK(same && a.init_accuracy == b.init_accuracy,
          "same seed, same accuracy and loss in every round (%.4f %.4f %.4f %.4f)",
          a.rounds[0].accuracy, a.rounds[1].accuracy, a.rounds[2].accuracy, a.rounds[3].accuracy);
    CHECK(differ, "another seed gives other accuracies");
    CHECK(a.rounds[3].accuracy > a.init_accuracy + 0.25,
          "4 FedAvg rounds raise test accuracy from %.1f%% to %.1f%%", a.init_accuracy * 100,
          a.rounds[3].accuracy * 100);

    /* The history in the store. */
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(fx.unix_url, NULL, &e);
    Flcache__RoundMeta *m = NULL;
    int rc = flc_store_get_round_meta(s, "rep-a", 4, &m);
    CHECK(rc == 0 && m->n_participants == 5 && m->n_expected == 5 && m->n_missing == 0,
          "round 4's RoundMeta lists the 5 sampled clients as expected and participants");
    if (rc == 0) {
        CHECK(fabs(metric(m, "test_accuracy") - a.rounds[3].accuracy) < 1e-12 &&
                  metric(m, "test_loss") > 0 && metric(m, "train_loss") > 0,
              "it holds the round's test accuracy, test loss and train loss");
        CHECK(m->n_hyperparams >= 15 && m->round_ms > 0 && m->bytes_read > 0 &&
                  m->bytes_written > 0 && m->n_notes >= 4,
              "and hyperparameters, notes, round time and bytes moved");
        Flcache__ModelUpdate **u = NULL;
        size_t n = 0;
        rc = flc_store_get_round_update_metas(s, "rep-a", 4, &u, &n);
        int good = rc == 0 && n == 5;
        for (size_t i = 0; good && i < n; i++)
            good = u[i]->num_samples > 0 && u[i]->loss > 0 && u[i]->update_norm > 0 &&
                   u[i]->duration_ms > 0 && strcmp(u[i]->status, "accepted") == 0 &&
                   has(m->participants, m->n_participants, u[i]->client) &&
                   strcmp(label(u[i], "fault"), "none") == 0;
        CHECK(good, "one ModelUpdate per client: samples, loss, norm, duration, status, labels");
        flc_store_free_update_metas(u, n);
        flcache__round_meta__free_unpacked(m, NULL);
    }
    flc_shard_t g = {0};
    CHECK(flc_store_get_merged(s, "rep-a/g", 4, 0, &g, NULL, 0) == 0 && g.count == 7850,
          "the global model of round 4 is stored as job rep-a/g");
    flc_shard_release(&g);
    flc_store_close(s);
    flc_sim_result_free(&a);
    flc_sim_result_free(&b);
    flc_sim_result_free(&d);
}

TEST(dropout_closes_round)
{
    flc_sim_cfg_t c;
    flc_sim_result_t r = {0};
    base_cfg(&c, "drop");
    c.per_round = 10;
    c.rounds = 2;
    c.dropout = 0.4;
    flc_sim_inproc_t many = {.threads = 10};
    c.invoke_user = &many;
    int rc = run(&c, &r);
    CHECK(rc == 0 && r.nrounds == 2, "a run with 40%% dropout completes");
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(fx.unix_url, NULL, &e);
    size_t dropped = 0, ok = 1;
    for (uint32_t round = 1; rc == 0 && round <= 2; round++) {
        Flcache__RoundMeta *m = NULL;
        Flcache__ModelUpdate **u = NULL;
        size_t n = 0;
        if (flc_store_get_round_meta(s, "drop", round, &m) != 0 ||
            flc_store_get_round_update_metas(s, "drop", round, &u, &n) != 0) {
            ok = 0;
            break;
        }
        ok &= n == 10 && m->n_missing + m->n_participants == 10;
        for (size_t i = 0; i < n; i++) {
            int d = strcmp(u[i]->status, "dropped") == 0;
            dropped += d;
            ok &= d == (strcmp(label(u[i], "dropout"), "1") == 0);
            ok &= d == has(m->missing, m->n_missing, u[i]->client);
            ok &= (!d) == has(m->participants, m->n_participants, u[i]->client);
        }
        ok &= metric(m, "dropped") == (double)m->n_missing;
        flc_store_free_update_metas(u, n);
        flcache__round_meta__free_unpacked(m, NULL);
    }
    CHECK(ok && dropped > 0 && r.rounds[0].dropped + r.rounds[1].dropped == dropped,
          "the %zu dropped clients are missing in RoundMeta, 'dropped' with label dropout=1, "
          "all others participants", dropped);
    CHECK(rc == 0 && r.rounds[0].round_ms < 20000,
          "rounds with dropouts close when the last client returns (%.0f ms), not after the "
          "default 600 s deadline", r.rounds[0].round_ms);
    EXPECT(rc == 0 && r.rounds[0].merged && r.rounds[0].merge_error[0] == '\0',
           "a merged round carries no merge error");
    flc_sim_result_free(&r);

    /* Everyone drops out: the round cannot merge, and says why (in the result
     * and in its RoundMeta notes) instead of silently keeping the model. */
    base_cfg(&c, "dropall");
    c.per_round = 3;
    c.rounds = 1;
    c.dropout = 0.999;
    rc = run(&c, &r);
    Flcache__RoundMeta *m = NULL;
    int stored = rc == 0 && flc_store_get_round_meta(s, "dropall", 1, &m) == 0;
    const char *note = NULL;
    for (size_t i = 0; stored && i < m->n_notes; i++)
        if (strcmp(m->notes[i]->key, "merge_error") == 0)
            note = m->notes[i]->value;
    CHECK(rc == 0 && !r.rounds[0].merged && strstr(r.rounds[0].merge_error, "no update") &&
              note != NULL && strcmp(note, r.rounds[0].merge_error) == 0,
          "a round nobody reached is not merged and says why: %s",
          rc == 0 ? r.rounds[0].merge_error : "run failed");
    if (m != NULL)
        flcache__round_meta__free_unpacked(m, NULL);
    flc_sim_result_free(&r);
    flc_store_close(s);
}

/* Deadline: 30% of clients wait 2.5 s, the round closes after 1.2 s. */
TEST(deadline_marks_stragglers_late)
{
    flc_sim_cfg_t c;
    flc_sim_result_t r = {0};
    flc_sim_inproc_t many = {.threads = 10};
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(fx.unix_url, NULL, &e);
    base_cfg(&c, "late");
    c.per_round = 10;
    c.rounds = 1;
    c.straggler = "slow:0.3:2500";
    c.deadline_ms = 1200;
    c.invoke_user = &many;
    int rc = run(&c, &r);
    CHECK(rc == 0 && r.nrounds == 1, "a run with stragglers and a 1200 ms deadline completes");
    Flcache__RoundMeta *m = NULL;
    Flcache__ModelUpdate **u = NULL;
    size_t n = 0, late = 0;
    int ok = rc == 0 && flc_store_get_round_meta(s, "late", 1, &m) == 0 &&
         flc_store_get_round_update_metas(s, "late", 1, &u, &n) == 0 && n == 10;
    for (size_t i = 0; ok && i < n; i++) {
        int slow = strcmp(label(u[i], "straggler_ms"), "2500") == 0;
        int is_late = strcmp(u[i]->status, "late") == 0;
        late += is_late;
        ok &= slow == is_late;
        ok &= is_late == !has(m->participants, m->n_participants, u[i]->client);
        char line[96];
        snprintf(line, sizeof line, "%s: late (pushed after the round closed)", u[i]->client);
        ok &= is_late == has(m->rejected, m->n_rejected, line);
        flc_shard_t sh = {0};
        ok &= flc_store_get_update(s, "late", 1, 0, u[i]->client, &sh, NULL, 0) == 0;
        flc_shard_release(&sh);
    }
    CHECK(ok && late > 0 && late == r.rounds[0].late && m->n_missing == 0,
          "the %zu stragglers past the deadline are rejected as late in RoundMeta, marked "
          "'late', and every update is still in the cache", late);
    if (m)
        flcache__round_meta__free_unpacked(m, NULL);
    flc_store_free_update_metas(u, n);
    flc_store_close(s);
    flc_sim_result_free(&r);
}

TEST(krum_rejects_sign_flippers)
{
    flc_sim_cfg_t c;
    flc_sim_result_t r = {0};
    base_cfg(&c, "krum");
    c.per_round = 10;
    c.rounds = 2;
    c.strategy = FLC_SIM_KRUM;
    c.faulty = 0.3;
    c.fault = FLC_FAULT_SIGN_FLIP;
    int rc = run(&c, &r);
    CHECK(rc == 0 && r.faulty_clients == 6, "6 of 20 clients are faulty (exactly 30%%)");
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(fx.unix_url, NULL, &e);
    size_t faulty_seen = 0, selected_faulty = 0, ok = rc == 0;
    for (uint32_t round = 1; ok && round <= 2; round++) {
        Flcache__RoundMeta *m = NULL;
        Flcache__ModelUpdate **u = NULL;
        size_t n = 0;
        ok = flc_store_get_round_meta(s, "krum", round, &m) == 0 &&
             flc_store_get_round_update_metas(s, "krum", round, &u, &n) == 0;
        for (size_t i = 0; ok && i < n; i++) {
            int f = strcmp(label(u[i], "fault"), "sign-flip") == 0;
            faulty_seen += f;
            selected_faulty += f && has(m->participants, m->n_participants, u[i]->client);
            if (!has(m->participants, m->n_participants, u[i]->client))
                ok &= strcmp(u[i]->status, "rejected") == 0 && strstr(u[i]->reason, "krum");
        }
        ok &= m && m->n_participants == 1;
        if (m)
            flcache__round_meta__free_unpacked(m, NULL);
        flc_store_free_update_metas(u, n);
    }
    CHECK(ok && faulty_seen > 0 && selected_faulty == 0,
          "Krum selects one update per round, never one of the %zu sign-flipping ones; the "
          "others are 'rejected' naming krum", faulty_seen);
    flc_store_close(s);
    flc_sim_result_free(&r);
}

static char g_self[4096]; /* this binary, which the pool runs as the client function */

TEST(pool_client_functions)
{
    flc_pool_cfg_t pc;
    flc_pool_cfg_init(&pc);
    pc.fn_path = g_self;
    pc.concurrency = 3;
    static const char *const env[] = {"FLC_SIM_TEST_FN=1", "OPENBLAS_NUM_THREADS=1", NULL};
    pc.env = env;
    flc_err_t e = {0};
    flc_pool_t *pool = flc_pool_new(&pc, &e);
    CHECK(pool != NULL, "the local pool starts with this test as the client function");
    if (pool == NULL)
        return;
    flc_sim_cfg_t c;
    flc_sim_result_t r = {0};
    base_cfg(&c, "pool");
    c.rounds = 2;
    c.strategy = FLC_SIM_FEDADAM;
    c.invoke = flc_sim_pool_invoke;
    c.invoke_user = pool;
    int rc = run(&c, &r);
    CHECK(rc == 0 && r.nrounds == 2 && r.rounds[1].participants == 5 && r.cost_usd > 0,
          "two FedAdam rounds of 5 client functions on the pool: all merged, cost $%.7f",
          r.cost_usd);
    CHECK(rc == 0 && r.rounds[1].accuracy > r.init_accuracy,
          "FedAdam improves accuracy (%.1f%% -> %.1f%%)", r.init_accuracy * 100,
          r.rounds[1].accuracy * 100);
    flc_sim_result_free(&r);
    flc_pool_free(pool);
}

TEST(config_errors)
{
    flc_sim_cfg_t c;
    flc_err_t e = {0};
    base_cfg(&c, "cfg");
    c.per_round = 30;
    CHECK(flc_sim_cfg_finish(&c, &e) == FLC_EINVAL && strstr(e.msg, "per-round"),
          "K > N is refused naming per-round");
    base_cfg(&c, "cfg");
    c.straggler = "gauss:3";
    CHECK(flc_sim_cfg_finish(&c, &e) == FLC_EINVAL && strstr(e.msg, "gauss:3"),
          "an unknown straggler distribution is refused, named");
    base_cfg(&c, "cfg");
    c.job = "bad/job";
    CHECK(flc_sim_cfg_finish(&c, &e) == FLC_EINVAL, "a job name with '/' is refused");
    int strategy = -1, bad = -7, fault = -1;
    CHECK(flc_sim_strategy_parse("trimmed-mean", &strategy) == FLC_OK &&
              strategy == FLC_SIM_TRIMMED_MEAN &&
              flc_sim_strategy_parse("fedsgd", &bad) == FLC_EINVAL && bad == -7 &&
              flc_client_fault_parse("label_flip", &fault) == FLC_OK &&
              fault == FLC_FAULT_LABEL_FLIP,
          "strategy and fault names parse; an unknown one is FLC_EINVAL");
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    ssize_t n = readlink("/proc/self/exe", g_self, sizeof g_self - 1);
    g_self[n > 0 ? n : 0] = '\0';
    flc_fixture_start(&fx, 0);
}

static void teardown(void)
{
    flc_fixture_stop(&fx);
}

static const flc_t_case_t cases[] = {
    TEST_ENTRY(config_errors), TEST_ENTRY(split), TEST_ENTRY(repro_and_learning),
    TEST_ENTRY(dropout_closes_round), TEST_ENTRY(deadline_marks_stragglers_late),
    TEST_ENTRY(krum_rejects_sign_flippers), TEST_ENTRY(pool_client_functions)};

/* Its own main: started by the pool with FLC_SIM_TEST_FN set, this binary is
 * the client function instead of the test. */
int main(int argc, char **argv)
{
    if (getenv("FLC_SIM_TEST_FN") != NULL)
        return as_function(argc, argv);
    return flc_t_main(argc, argv, cases, sizeof cases / sizeof cases[0], setup, teardown);
}
