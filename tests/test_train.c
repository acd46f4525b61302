/* Synchronous SGD end to end: W real flcache-fn "worker" functions on the
 * local pool train on a Fashion-MNIST subset through a real redis-server,
 * for W = 2 and 4 and both exchange modes. Checks accuracy well above chance
 * (10%), bit-identical models on every worker (checksums), the epoch's
 * RoundMeta and progress records in the cache, and that step rounds do not
 * pile up. Failure cases: a missing data dir (the error names the path), a
 * worker that never shows up (the others fail naming it instead of hanging),
 * and, when the `flcache train` command is linked in, the CLI's exit codes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/clock.h"
#include "cache/store.h"
#include "cache/store_raw.h"
#include "runtime/pool.h"
#include "tests/harness.h"
#include "workers/sgd_worker.h"

static flc_fixture_t fx;
/* A case's own pool and store (open_case/close_case): neither a pool's
 * threads nor a connection can be shared with the runner across a fork. */
static flc_pool_t *pool;
static flc_store_t *store;

static void open_case(void)
{
    flc_err_t e = {0};
    store = flc_store_open(fx.unix_url, NULL, &e);
    if (store == NULL)
        flc_t_fatal("store: %s", flc_err_msg(&e));
    char fn[1024];
    snprintf(fn, sizeof fn, "%s/flcache-fn", flc_t_build_dir());
    static const char *const env[] = {"OPENBLAS_NUM_THREADS=1", NULL};
    flc_pool_cfg_t pc;
    flc_pool_cfg_init(&pc);
    pc.fn_path = fn;
    pc.concurrency = 4;
    pc.timeout_ms = 120000;
    pc.env = env;
    pool = flc_pool_new(&pc, &e);
    if (pool == NULL)
        flc_t_fatal("pool: %s", flc_err_msg(&e));
}

static void close_case(void)
{
    flc_pool_free(pool);
    flc_store_close(store);
}

typedef struct outcome {
    int ok;              /* every invocation answered ok */
    int same;            /* every checksum equal */
    double acc, loss;    /* worker 0 */
    double steps;
    char err[512];       /* first error */
} outcome_t;

/* Runs workers ranks[0..n) of a W-worker job and waits for them. */
static outcome_t run(const flc_sgd_cfg_t *base, const int *ranks, int n)
{
    outcome_t out = {.ok = 1, .same = 1, .acc = -1};
    cJSON **evs = calloc((size_t)n, sizeof *evs);
    flc_inv_rec_t *recs = calloc((size_t)n, sizeof *recs);
    for (int i = 0; i < n; i++) {
        flc_sgd_cfg_t c = *base;
        c.rank = ranks[i];
        c.redis = fx.unix_url;
        evs[i] = flc_sgd_cfg_to_json(&c);
    }
    flc_err_t e = {0};
    if (flc_pool_invoke_json(pool, (const cJSON *const *)evs, (size_t)n, recs, &e) != 0)
        flc_t_fatal("pool: %s", flc_err_msg(&e));
    const char *sum0 = NULL;
    for (int i = 0; i < n; i++) {
        const cJSON *res = flc_inv_result(&recs[i]);
        if (recs[i].status != FLC_INV_OK || res == NULL) {
            if (out.ok)
                snprintf(out.err, sizeof out.err, "%s", recs[i].error);
            out.ok = 0;
            continue;
        }
        const char *sum = cJSON_GetStringValue(cJSON_GetObjectItem(res, "checksum"));
        if (sum0 == NULL)
            sum0 = sum;
        else if (sum == NULL || strcmp(sum, sum0) != 0)
            out.same = 0;
        if (ranks[i] == 0) {
            out.acc = cJSON_GetNumberValue(cJSON_GetObjectItem(res, "accuracy"));
            out.loss = cJSON_GetNumberValue(cJSON_GetObjectItem(res, "final_loss"));
            out.steps = cJSON_GetNumberValue(cJSON_GetObjectItem(res, "steps"));
        }
    }
    for (int i = 0; i < n; i++) {
        cJSON_Delete(evs[i]);
        flc_inv_rec_clear(&recs[i]);
    }
    free(evs);
    free(recs);
    return out;
}

static void base_cfg(flc_sgd_cfg_t *c, const char *job, int W, const char *model, int comm)
{
    flc_sgd_cfg_init(c);
    c->job = job;
    c->workers = W;
    c->model = model;
    c->comm = comm;
    c->subset = 4000;
    c->test_subset = 2000;
    c->epochs = 1;
    c->batch = 32;
    c->step_timeout_ms = 60000;
}

/* Counts step rounds still indexed for job J/steps. */
static size_t step_rounds(const char *job)
{
    char steps[80];
    snprintf(steps, sizeof steps, "%s/steps", job);
    uint32_t *r = NULL;
    size_t n = 0;
    flc_store_list_rounds(store, steps, &r, &n);
    free(r);
    return n;
}

static void train_case(const char *job, int W, const char *model, int comm, double min_acc)
{
    flc_sgd_cfg_t c;
    base_cfg(&c, job, W, model, comm);
    int ranks[8];
    for (int i = 0; i < W; i++)
        ranks[i] = i;
    double t0 = flc_now_s();
    outcome_t o = run(&c, ranks, W);
    const char *cm = flc_sgd_comm_name(comm);
    CHECK(o.ok, "%s W=%d %s: every worker succeeded%s%s", model, W, cm, o.ok ? "" : ": ",
          o.err);
    if (!o.ok)
        return;
    CHECK(o.acc > min_acc, "%s W=%d %s: test accuracy %.3f > %.2f after 1 epoch (%.1f s)", model,
          W, cm, o.acc, min_acc, flc_now_s() - t0);
    CHECK(o.same, "%s W=%d %s: all %d workers hold bit-identical models", model, W, cm, W);
    double want = (double)((4000 / W) / 32);
    CHECK(o.steps == want, "%s W=%d %s: %.0f steps taken = floor(floor(4000/W)/32) = %.0f", model,
          W, cm, o.steps, want);

    Flcache__RoundMeta *m = NULL;
    int rc = flc_store_get_round_meta(store, job, 1, &m);
    CHECK(rc == FLC_OK, "%s W=%d %s: epoch 1 RoundMeta stored under job %s", model, W, cm, job);
    if (rc == FLC_OK) {
        double acc = -1, eps = -1;
        for (size_t i = 0; i < m->n_metrics; i++) {
            if (strcmp(m->metrics[i]->key, "test_accuracy") == 0)
                acc = m->metrics[i]->value;
            if (strcmp(m->metrics[i]->key, "steps") == 0)
                eps = m->metrics[i]->value;
        }
        CHECK(acc == o.acc && eps == want && m->n_participants == (size_t)W &&
                  m->num_shards == (comm == FLC_SGD_COMM_RS ? (uint32_t)W : 1u),
              "%s W=%d %s: RoundMeta holds accuracy %.4f, %.0f steps, %zu participants, %u "
              "shards", model, W, cm, acc, eps, m->n_participants, m->num_shards);
        flcache__round_meta__free_unpacked(m, NULL);
    }
    /* Progress: worker 0's records, the last one "done". */
    char key[FLC_KEY_MAX];
    flc_key_job(key, job, "progress");
    redisReply *r = NULL;
    if (flc_store_commandf(store, &r, "LRANGE %s 0 -1", key) == FLC_OK) {
        int epoch = 0, done = 0;
        for (size_t i = 0; i < r->elements; i++) {
            epoch += strstr(r->element[i]->str, "\"type\":\"epoch\"") != NULL;
            done += strstr(r->element[i]->str, "\"type\":\"done\"") != NULL;
        }
        CHECK(epoch == 1 && done == 1 && r->elements >= 3,
              "%s W=%d %s: progress list has %zu records, %d epoch and %d done", model, W, cm,
              r->elements, epoch, done);
        freeReplyObject(r);
    }
    size_t left = step_rounds(job);
    CHECK(left <= 2, "%s W=%d %s: only the last %zu step rounds are left in the cache", model, W,
          cm, left);
    flc_err_t e = {0};
    rc = flc_sgd_cleanup(store, job, &e);
    CHECK(rc == FLC_OK && step_rounds(job) == 0, "%s W=%d %s: cleanup removes them (%s)", model,
          W, cm, flc_err_msg(&e));
    /* KEYS is fine in a test: proves the per-step deletion misses nothing. */
    if (flc_store_commandf(store, &r, "KEYS fl:{%s/steps*", job) == FLC_OK) {
        CHECK(r->elements == 0, "%s W=%d %s: no key of the step exchanges is left (%zu, first %s)",
              model, W, cm, r->elements, r->elements ? r->element[0]->str : "-");
        freeReplyObject(r);
    }
    if (flc_store_commandf(store, &r, "KEYS fl:{%s/j}:*", job) == FLC_OK) {
        /* and, since train --resume (issue 16), the checkpoint of the last epoch */
        CHECK(r->elements == 4, "%s W=%d %s: the job keeps only its epoch metadata, round "
              "index, schema record and resume checkpoint (%zu keys)", model, W, cm,
              r->elements);
        freeReplyObject(r);
    }
}

TEST(bad_data_dir)
{
    open_case();
    flc_sgd_cfg_t c;
    base_cfg(&c, "bad-data", 2, "softmax", FLC_SGD_COMM_RS);
    c.data_dir = "/nonexistent/fashion-dir";
    int ranks[] = {0, 1};
    double t0 = flc_now_s();
    outcome_t o = run(&c, ranks, 2);
    CHECK(!o.ok && strstr(o.err, "/nonexistent/fashion-dir/train-images-idx3-ubyte") != NULL,
          "missing data dir: the workers fail naming the file (%s)", o.err);
    CHECK(flc_now_s() - t0 < 10, "missing data dir: they fail at once (%.1f s)",
          flc_now_s() - t0);
    close_case();
}

TEST(worker_never_starts)
{
    open_case();
    flc_sgd_cfg_t c;
    base_cfg(&c, "missing-w", 2, "softmax", FLC_SGD_COMM_RS);
    c.step_timeout_ms = 1500;
    int ranks[] = {0}; /* w1 never starts */
    double t0 = flc_now_s();
    outcome_t o = run(&c, ranks, 1);
    double dt = flc_now_s() - t0;
    CHECK(!o.ok && strstr(o.err, "not all 2 workers"),
          "a worker that never starts: the others fail at the start barrier (%s)", o.err);
    CHECK(dt < 10, "... within the step timeout, not a hang (%.1f s)", dt);
    flc_sgd_cleanup(store, "missing-w", NULL);
    close_case();
}

/* w1 stops after epoch 1 (as if it died): w0's merge of the next step lacks
 * it and the training fails naming it. */
TEST(worker_stops_early)
{
    open_case();
    flc_sgd_cfg_t c;
    base_cfg(&c, "quit-w", 2, "softmax", FLC_SGD_COMM_RS);
    c.step_timeout_ms = 1500;
    c.epochs = 2;
    flc_sgd_cfg_t c1 = c;
    c1.epochs = 1;
    c1.rank = 1;
    c1.redis = fx.unix_url;
    c.rank = 0;
    c.redis = fx.unix_url;
    cJSON *evs[2] = {flc_sgd_cfg_to_json(&c), flc_sgd_cfg_to_json(&c1)};
    flc_inv_rec_t recs[2];
    memset(recs, 0, sizeof recs);
    flc_err_t e = {0};
    double t0 = flc_now_s();
    if (flc_pool_invoke_json(pool, (const cJSON *const *)evs, 2, recs, &e) != 0)
        flc_t_fatal("pool: %s", flc_err_msg(&e));
    double dt = flc_now_s() - t0;
    CHECK(recs[1].status == FLC_INV_OK, "the worker that stops early returns ok (%s)",
          recs[1].error);
    CHECK(recs[0].status == FLC_INV_ERROR && strstr(recs[0].error, "missing (first: w1)"),
          "the other fails the next step naming w1 (%s)", recs[0].error);
    CHECK(dt < 15, "... after one step timeout, not a hang (%.1f s)", dt);
    for (int i = 0; i < 2; i++) {
        cJSON_Delete(evs[i]);
        flc_inv_rec_clear(&recs[i]);
    }
    flc_sgd_cleanup(store, "quit-w", NULL);
    close_case();
}

TEST(bad_event)
{
    flc_sgd_cfg_t c;
    flc_sgd_cfg_init(&c);
    flc_err_t e = {0};
    cJSON *ev = cJSON_Parse("{\"job\":\"j\",\"rank\":3,\"workers\":2}");
    int rc = flc_sgd_cfg_from_json(&c, ev, &e);
    CHECK(rc == FLC_EINVAL && strstr(e.msg, "rank 3"), "rank >= workers refused (%s)", e.msg);
    cJSON_Delete(ev);
    ev = cJSON_Parse("{\"job\":\"j\",\"workers\":2}");
    rc = flc_sgd_cfg_from_json(&c, ev, &e);
    CHECK(rc == FLC_EINVAL && strstr(e.msg, "'rank' is missing"), "missing rank named (%s)",
          e.msg);
    cJSON_Delete(ev);
    ev = cJSON_Parse("{\"job\":\"j\",\"rank\":0,\"workers\":2,\"comm\":\"ring\"}");
    rc = flc_sgd_cfg_from_json(&c, ev, &e);
    CHECK(rc == FLC_EINVAL && strstr(e.msg, "ring"), "unknown comm named (%s)", e.msg);
    cJSON_Delete(ev);
    flc_sgd_cfg_init(&c);
    c.workers = 4;
    c.model = "mlp";
    rc = flc_sgd_cfg_finish(&c, &e);
    CHECK(rc == FLC_OK && c.lr == FLC_SGD_LR_MLP &&
              c.num_shards == 4 && c.batch == FLC_SGD_BATCH_DEFAULT,
          "defaults: mlp lr %g, %u shards for reduce-scatter, batch %zu", c.lr, c.num_shards,
          c.batch);
    CHECK(flc_fnv1a64("a", 1) == 0xaf63dc4c8601ec8cULL, "FNV-1a 64 of \"a\" is the reference");
}

/* The CLI, when this build's flcache has the train command. */
TEST(cli_train)
{
    char cmd[1024], out[8192];
    const char *bd = flc_t_build_dir();
    snprintf(cmd, sizeof cmd, "%s/flcache train --help", bd);
    if (flc_t_run(cmd, out, sizeof out) != 0)
        flc_t_skip("this flcache has no train command yet (cli/main.c)");
    CHECK(strstr(out, "--comm") && strstr(out, "--subset"), "flcache train --help lists options");
    snprintf(cmd, sizeof cmd,
             "FLCACHE_REDIS=%s %s/flcache train --workers 2 --subset 3000 --test-subset 1000 "
             "--epochs 1 --job cli-run --json --quiet",
             fx.unix_url, bd);
    int rc = flc_t_run(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "\"identical_models\":true") != NULL,
          "flcache train --workers 2: exit 0, identical models (exit %d)", rc);
    snprintf(cmd, sizeof cmd, "FLCACHE_REDIS=%s %s/flcache train --data /nonexistent/fm-dir",
             fx.unix_url, bd);
    rc = flc_t_run(cmd, out, sizeof out);
    CHECK(rc == 1 && strstr(out, "/nonexistent/fm-dir") != NULL,
          "flcache train --data <missing>: exit 1 naming the path (exit %d)", rc);
    snprintf(cmd, sizeof cmd, "%s/flcache train --workers 0", bd);
    rc = flc_t_run(cmd, out, sizeof out);
    CHECK(rc == 2 && strstr(out, "--workers"), "flcache train --workers 0: exit 2 (exit %d)", rc);
}

static void setup(void)
{
    flc_fixture_start(&fx, 0);
}

static void teardown(void)
{
    flc_fixture_stop(&fx);
}

static void train_in_case(const char *job, int W, const char *model, int comm, double min_acc)
{
    open_case();
    train_case(job, W, model, comm, min_acc);
    close_case();
}

TEST(reduce_scatter_2_workers)
{
    train_in_case("rs2", 2, "softmax", FLC_SGD_COMM_RS, 0.6);
}

TEST(reduce_scatter_4_workers)
{
    train_in_case("rs4", 4, "softmax", FLC_SGD_COMM_RS, 0.6);
}

TEST(allreduce_to_one_4_workers)
{
    train_in_case("one4", 4, "softmax", FLC_SGD_COMM_ONE, 0.6);
}

TEST(mlp_2_workers)
{
    train_in_case("mlp2", 2, "mlp", FLC_SGD_COMM_RS, 0.6);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(bad_event), TEST_ENTRY(reduce_scatter_2_workers),
                 TEST_ENTRY(reduce_scatter_4_workers), TEST_ENTRY(allreduce_to_one_4_workers),
                 TEST_ENTRY(mlp_2_workers), TEST_ENTRY(bad_data_dir),
                 TEST_ENTRY(worker_never_starts), TEST_ENTRY(worker_stops_early),
                 TEST_ENTRY(cli_train))
