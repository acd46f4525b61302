/* Resuming a simulation (issue 16 point 5, clients/sim_resume.c):
 *   - 10 rounds straight and 5 + resume 5 give bit-identical global models
 *     (and the same accuracies), with a server optimizer (fedadam: its
 *     state comes from the checkpoint) and top-k error feedback (the
 *     residuals from the clients' keys), over 2 shards;
 *   - the real CLI SIGKILLed in the middle of round 4 resumes with
 *     `simulate --resume J`: it says on stderr that it continues after round
 *     3 and that round 4 had begun, runs rounds 4..8 and ends with the model
 *     of a run that was never killed;
 *   - refusals: a job without a checkpoint, another model shape, another
 *     option that changes the result, a job that already ran its rounds;
 *   - `flcache train`: 4 epochs straight = 2 + `train --resume` to 4.
 * Clients run one at a time (threads 1, --concurrency 1) so the updates
 * are folded in the same order in both runs: a double sum in another order
 * may round differently in its last bit. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "cache/store.h"
#include "cache/store_raw.h"
#include "clients/sim.h"
#include "tests/harness.h"

static flc_fixture_t fx;
static flc_sim_inproc_t one = {.threads = 1};

static void need_data(void)
{
    if (access("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", R_OK) != 0)
        flc_t_skip("no Fashion-MNIST (Debian package dataset-fashion-mnist)");
}

static void cfg(flc_sim_cfg_t *c, const char *job, int rounds)
{
    flc_sim_cfg_init(c);
    c->job = job;
    c->clients = 20;
    c->per_round = 4;
    c->rounds = rounds;
    c->subset = 2000;
    c->test_subset = 300;
    c->strategy = FLC_SIM_FEDADAM;
    c->encoding = "topk:0.2";
    c->num_shards = 2;
    c->redis = fx.unix_url;
    c->invoke_user = &one;
}

static int run(const flc_sim_cfg_t *c, flc_sim_result_t *res, flc_err_t *e)
{
    if (!c->resume)
        flc_sim_clear(c->redis, NULL, c->job, e);
    int rc = flc_sim_run(c, NULL, NULL, res, e);
    if (rc != 0)
        printf("# %s: %s\n", c->job, flc_err_msg(e));
    return rc;
}

/* The global model of round r of job J, bytes compared. */
static int same_model(const char *a, const char *b, uint32_t r, size_t *n)
{
    char ga[80], gb[80];
    snprintf(ga, sizeof ga, "%s/g", a);
    snprintf(gb, sizeof gb, "%s/g", b);
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(fx.unix_url, NULL, &e);
    flc_shard_t x = {0}, y = {0};
    int ok = s && flc_store_get_merged(s, ga, r, 0, &x, NULL, 0) == 0 &&
             flc_store_get_merged(s, gb, r, 0, &y, NULL, 0) == 0 && x.count == y.count &&
             memcmp(x.values, y.values, x.count * sizeof(float)) == 0;
    *n = x.count;
    if (!ok)
        printf("# comparing %s and %s round %u: %s\n", ga, gb, r, s ? flc_store_errstr(s) : e.msg);
    flc_shard_release(&x);
    flc_shard_release(&y);
    flc_store_close(s);
    return ok;
}

TEST(five_plus_five_bit_identical)
{
    need_data();
    flc_sim_cfg_t c;
    flc_sim_result_t a = {0}, b = {0}, r = {0};
    flc_err_t e = {0};
    cfg(&c, "rz-straight", 10);
    int ra = run(&c, &a, &e);
    cfg(&c, "rz-split", 5);
    int rb = run(&c, &b, &e);
    cfg(&c, "rz-split", 10);
    c.resume = 1;
    int rr = rb ? -1 : run(&c, &r, &e);
    CHECK(ra == 0 && rb == 0 && rr == 0 && a.nrounds == 10 && b.nrounds == 5 &&
              r.nrounds == 5 && r.resumed_after == 5 && !r.resumed_partial,
          "10 rounds straight; 5 rounds, then resumed after round 5 for rounds 6..10");
    size_t n = 0;
    int same = ra == 0 && rr == 0 && same_model("rz-straight", "rz-split", 10, &n);
    CHECK(same && n == 7850, "round 10's global models are bit-identical (%zu floats; fedadam state and topk "
          "residuals carried over)", n);
    int acc = ra == 0 && rr == 0;
    for (size_t i = 0; acc && i < 5; i++)
        acc = a.rounds[5 + i].accuracy == r.rounds[i].accuracy &&
              r.rounds[i].round == 6 + (uint32_t)i;
    CHECK(acc, "rounds 6..10 have the same test accuracy in both (round 10: %.4f)",
          ra == 0 ? a.rounds[9].accuracy : -1);
    flc_sim_result_free(&a);
    flc_sim_result_free(&b);
    flc_sim_result_free(&r);
}

static pid_t start_cli(const char *log, char *const *args)
{
    pid_t pid = fork();
    if (pid == 0) {
        char bin[1024], url[600];
        snprintf(bin, sizeof bin, "%s/flcache", flc_t_build_dir());
        snprintf(url, sizeof url, "FLCACHE_REDIS=%s", fx.unix_url);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        putenv(url);
        char *argv[40] = {bin};
        for (int i = 0; args[i] && i < 38; i++)
            argv[i + 1] = args[i];
        execv(bin, argv);
        _exit(127);
    }
    return pid;
}

static int wait_exit(pid_t pid)
{
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static long long exists(flc_store_t *s, const char *key)
{
    redisReply *r = NULL;
    long long v = -1;
    if (flc_store_commandf(s, &r, "EXISTS %s", key) == 0 && r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    if (r)
        freeReplyObject(r);
    return v;
}

#define SIM_ARGS                                                                          \
    "simulate", "--clients", "20", "--per-round", "4", "--subset", "2000", "--test-subset", \
        "300", "--rule", "fedavgm:momentum=0.9", "--shards", "2", "--encoding", "int8",     \
        "--inproc", "--concurrency", "1", "--quiet", "--rounds", "8", "--straggler-ms",     \
        "fixed:150"

TEST(sigkill_mid_round_resumes)
{
    need_data();
    char log[128], log2[128], log3[128];
    snprintf(log, sizeof log, "/tmp/flc-resume-%d-a.log", (int)getpid());
    snprintf(log2, sizeof log2, "/tmp/flc-resume-%d-b.log", (int)getpid());
    snprintf(log3, sizeof log3, "/tmp/flc-resume-%d-c.log", (int)getpid());
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(fx.unix_url, NULL, &e);
    /* the run that is never killed */
    char *straight[] = {SIM_ARGS, "--job", "rk-straight", NULL};
    int rs = wait_exit(start_cli(log3, straight));
    CHECK(rs == 0, "the uninterrupted 8-round run exits 0");
    char *first[] = {SIM_ARGS, "--job", "rk", NULL};
    pid_t pid = start_cli(log, first);
    /* round 4 has begun once its roster is written; each client then
     * waits 150 ms before it pushes, so the kill lands inside the round */
    double t0 = flc_now_s();
    int begun = 0;
    while (!begun && flc_now_s() - t0 < 60) {
        begun = exists(s, "fl:{rk/j}:roster:4") == 1;
        if (!begun)
            flc_sleep_ms(5);
    }
    flc_sleep_ms(200); /* a client or two of round 4 pushed */
    kill(pid, SIGKILL);
    int st = wait_exit(pid);
    CHECK(begun && st == 128 + SIGKILL && exists(s, "fl:{rk/j}:meta:4") == 0,
          "the driver was SIGKILLed inside round 4 (its roster written, no RoundMeta)");
    char *again[] = {"simulate", "--resume", "rk", NULL};
    int rr = wait_exit(start_cli(log2, again));
    char out[8192] = "";
    FILE *f = fopen(log2, "r");
    size_t got = f ? fread(out, 1, sizeof out - 1, f) : 0;
    out[got] = '\0';
    if (f)
        fclose(f);
    CHECK(rr == 0 && strstr(out, "resuming job rk after round 3") &&
              strstr(out, "round 4 had begun when its last run stopped"),
          "`simulate --resume rk` exits %d and says on stderr that it continues after round 3 "
          "and that round 4 had begun", rr);
    size_t n = 0;
    int same = rr == 0 && rs == 0 && same_model("rk-straight", "rk", 8, &n);
    CHECK(same && n == 7850,
          "round 8's model equals the uninterrupted run's, bit for bit (%zu floats)", n);
    CHECK(exists(s, "fl:{rk/j}:meta:8") == 1 && exists(s, "fl:{rk/j}:meta:4") == 1,
          "rounds 4..8 are recorded");
    if (rr == 0 && rs == 0) { /* the logs stay for a failed run */
        unlink(log);
        unlink(log2);
        unlink(log3);
    }
    flc_store_close(s);
}

TEST(refusals)
{
    need_data();
    flc_sim_cfg_t c;
    flc_sim_result_t r = {0};
    flc_err_t e = {0};
    cfg(&c, "rz-ref", 2);
    int rc = run(&c, &r, &e);
    flc_sim_result_free(&r);
    CHECK(rc == 0, "a 2-round job to resume");
    cfg(&c, "rz-none", 4);
    c.resume = 1;
    rc = flc_sim_run(&c, NULL, NULL, &r, &e);
    flc_sim_result_free(&r);
    CHECK(rc == FLC_ENOTFOUND && strstr(e.msg, "job 'rz-none' has no checkpoint"),
          "a job never run: %s", e.msg);
    cfg(&c, "rz-ref", 4);
    c.resume = 1;
    c.model = "mlp";
    rc = flc_sim_run(&c, NULL, NULL, &r, &e);
    flc_sim_result_free(&r);
    CHECK(rc == FLC_EINVAL && strstr(e.msg, "--model 'softmax'") &&
              strstr(e.msg, "another model shape"), "another model: %s", e.msg);
    cfg(&c, "rz-ref", 4);
    c.resume = 1;
    c.num_shards = 3;
    rc = flc_sim_run(&c, NULL, NULL, &r, &e);
    flc_sim_result_free(&r);
    CHECK(rc != 0 && (strstr(e.msg, "--shards 2") || strstr(e.msg, "2 shards")),
          "another shard count: %s", e.msg);
    cfg(&c, "rz-ref", 4);
    c.resume = 1;
    c.lr = 0.3;
    rc = flc_sim_run(&c, NULL, NULL, &r, &e);
    flc_sim_result_free(&r);
    CHECK(rc == FLC_EINVAL && strstr(e.msg, "--lr 0.1") && strstr(e.msg, "0.3"),
          "another learning rate: %s", e.msg);
    cfg(&c, "rz-ref", 2);
    c.resume = 1;
    rc = flc_sim_run(&c, NULL, NULL, &r, &e);
    flc_sim_result_free(&r);
    CHECK(rc == FLC_EINVAL && strstr(e.msg, "already ran 2 rounds"),
          "a job that ran its rounds: %s", e.msg);
}

/* `flcache train` (workers as flcache-fn processes): 4 epochs straight and
 * 2 + `--resume` to 4 end with the same model; another --model is refused. */
TEST(train_two_plus_two)
{
    need_data();
    char log[128];
    snprintf(log, sizeof log, "/tmp/flc-resume-%d-t.log", (int)getpid());
    char *a[] = {"train", "--workers", "2", "--subset", "2000", "--test-subset", "200",
                 "--quiet", "--epochs", "4", "--job", "rt-straight", NULL};
    char *b[] = {"train", "--workers", "2", "--subset", "2000", "--test-subset", "200",
                 "--quiet", "--epochs", "2", "--job", "rt-split", NULL};
    char *c[] = {"train", "--resume", "rt-split", "--epochs", "4", NULL};
    char *d[] = {"train", "--resume", "rt-split", "--epochs", "6", "--model", "mlp", NULL};
    int ra = wait_exit(start_cli(log, a)), rb = wait_exit(start_cli(log, b));
    int rc = wait_exit(start_cli(log, c));
    char out[8192] = "";
    FILE *f = fopen(log, "r");
    size_t got = f ? fread(out, 1, sizeof out - 1, f) : 0;
    out[got] = '\0';
    if (f)
        fclose(f);
    CHECK(ra == 0 && rb == 0 && rc == 0 &&
              strstr(out, "resuming job rt-split after epoch 2, its last closed epoch"),
          "train 4 epochs; train 2 epochs, then `train --resume rt-split --epochs 4` (exit "
          "%d %d %d) says it resumes after epoch 2", ra, rb, rc);
    size_t n = 0;
    int same = ra == 0 && rc == 0 && same_model("rt-straight", "rt-split", 4, &n);
    CHECK(same && n == 7850, "epoch 4's models are bit-identical (%zu floats)", n);
    int rd = wait_exit(start_cli(log, d));
    f = fopen(log, "r");
    got = f ? fread(out, 1, sizeof out - 1, f) : 0;
    out[got] = '\0';
    if (f)
        fclose(f);
    CHECK(rd != 0 && strstr(out, "--model 'softmax'") && strstr(out, "'mlp'"),
          "resuming with another --model fails naming it (exit %d)", rd);
    if (same)
        unlink(log);
}

static void setup(void)
{
    flc_fixture_start(&fx, 0);
}

static void teardown(void)
{
    flc_fixture_stop(&fx);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(five_plus_five_bit_identical),
                 TEST_ENTRY(sigkill_mid_round_resumes), TEST_ENTRY(refusals),
                 TEST_ENTRY(train_two_plus_two))
