/* The parameter-server exchange (workers/ps.h, `flcache train --comm ps`,
 * issue 20 part 3): the same model as reduce-scatter and allreduce-one for
 * the same seed (checksums), over a unix socket and TCP on loopback; the
 * bound on what summation order can change (at most one float ulp of the
 * mean); a worker that goes away fails the server at once. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "aggregator/merge.h"
#include "base/clock.h"
#include "tests/harness.h"
#include "workers/ps.h"

typedef struct trained {
    int rc, identical;
    char checksum[32];
    double accuracy, epoch_s;
} trained_t;

/* flcache train with a private redis-server, --json; args are appended. */
static trained_t train(const char *args)
{
    static char out[1 << 20];
    char cmd[1024];
    trained_t t = {0};
    snprintf(cmd, sizeof cmd, "env -u FLCACHE_REDIS %s/flcache train --epochs 1 --subset 3000 "
             "--test-subset 500 --json --quiet %s 2>/dev/null", flc_t_build_dir(), args);
    t.rc = flc_t_run(cmd, out, sizeof out);
    cJSON *j = cJSON_Parse(out);
    if (j != NULL) {
        t.identical = cJSON_IsTrue(cJSON_GetObjectItem(j, "identical_models"));
        const char *s = cJSON_GetStringValue(cJSON_GetObjectItem(j, "checksum"));
        snprintf(t.checksum, sizeof t.checksum, "%s", s ? s : "");
        t.accuracy = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "accuracy"));
        t.epoch_s = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "epoch_s"));
        cJSON_Delete(j);
    }
    printf("    # train %s: exit %d, checksum %s, accuracy %.4f, epoch %.3f s\n", args, t.rc,
           t.checksum, t.accuracy, t.epoch_s);
    return t;
}

TEST(ps_same_model_as_reduce_scatter)
{
    trained_t rs = train("--workers 3 --model softmax --comm reduce-scatter");
    trained_t one = train("--workers 3 --model softmax --comm allreduce-one");
    trained_t ps = train("--workers 3 --model softmax --comm ps");
    CHECK(rs.rc == 0 && one.rc == 0 && ps.rc == 0, "all three exchanges trained (exit 0)");
    CHECK(ps.identical, "every ps worker ends with the same model");
    CHECK(rs.checksum[0] && strcmp(rs.checksum, ps.checksum) == 0,
          "ps's model is reduce-scatter's, bit for bit (%s vs %s)", ps.checksum, rs.checksum);
    CHECK(strcmp(one.checksum, ps.checksum) == 0, "and allreduce-one's (%s)", one.checksum);
    CHECK(rs.accuracy == ps.accuracy, "so the accuracy is the same (%.4f)", ps.accuracy);
}

TEST(ps_mlp_over_tcp)
{
    trained_t rs = train("--workers 2 --model mlp --hidden 32 --comm reduce-scatter");
    trained_t ps = train("--workers 2 --model mlp --hidden 32 --comm ps "
                         "--ps-addr tcp:127.0.0.1:0");
    CHECK(ps.rc == 0 && ps.identical, "an MLP trains through a ps on TCP loopback (exit %d)",
          ps.rc);
    CHECK(strcmp(rs.checksum, ps.checksum) == 0, "the same model as reduce-scatter (%s vs %s)",
          ps.checksum, rs.checksum);
}

/* One float ulp of x (the gap to the next float away from zero). */
static double ulp(float x)
{
    float a = fabsf(x);
    return (double)(nextafterf(a, INFINITY) - a);
}

TEST(sum_order_bound)
{
    /* The server folds in rank order, a merger in arrival order: the
     * worst case for the claim in ps.h is values whose exponents are far
     * apart, where a double sum rounds. Both orders of 8 such updates. */
    enum { W = 8, N = 4096 };
    static float u[W][N], a[N], b[N];
    uint64_t s = 12345;
    for (int k = 0; k < W; k++)
        for (int i = 0; i < N; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            double m = (double)(s >> 40) / 16777216.0 - 0.5;
            u[k][i] = (float)ldexp(m, (int)((s >> 20) % 80) - 40); /* 2^-40 .. 2^40 */
        }
    flc_merge_rule_t rule;
    flc_err_t e = {0};
    flc_merge_rule_parse(&rule, "mean", &e);
    flc_merge_acc_t *acc = flc_merge_acc_new(&rule, N, &e);
    for (int k = 0; k < W; k++)
        flc_merge_acc_fold(acc, u[k], N, 1.0, -1, &e);
    flc_merge_acc_finish(acc, NULL, a, &e);
    flc_merge_acc_reset(acc);
    for (int k = W - 1; k >= 0; k--)
        flc_merge_acc_fold(acc, u[k], N, 1.0, -1, &e);
    flc_merge_acc_finish(acc, NULL, b, &e);
    flc_merge_acc_free(acc);
    int differ = 0;
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / ulp(a[i]);
        differ += a[i] != b[i];
        if (d > worst)
            worst = d;
    }
    printf("    # %d of %d means differ between the two orders; worst %.0f ulp\n", differ, N,
           worst);
    CHECK(worst <= 1.0, "two fold orders of 8 updates spanning 2^-40..2^40 differ by at most "
          "1 float ulp of the mean (worst %.0f)", worst);
}

TEST(worker_gone_fails_the_server)
{
    char addr[160], sock[128];
    snprintf(sock, sizeof sock, "unix:/tmp/flc-ps-test-%d.sock", (int)getpid());
    flc_err_t e = {0};
    int lfd = flc_ps_listen(sock, addr, sizeof addr, &e);
    CHECK(lfd >= 0, "listening at %s", addr);
    pid_t srv = fork();
    if (srv == 0) {
        uint32_t steps;
        flc_err_t se = {0};
        int rc = flc_ps_serve(lfd, 2, 5000, &steps, &se);
        fprintf(stderr, "    # server: %s\n", se.msg);
        _exit(rc == FLC_EDATA ? 3 : rc == FLC_OK ? 0 : 4);
    }
    close(lfd);
    float w[4] = {1, 2, 3, 4}, g[5] = {1, 1, 1, 1, 0.5f}, loss;
    int a = flc_ps_connect(addr, 0, 2, w, 4, 0.5f, 2000, &e);
    int b = flc_ps_connect(addr, 1, 2, w, 4, 0.5f, 2000, &e);
    CHECK(a >= 0 && b >= 0, "two workers said hello");
    close(b); /* worker 1 dies before step 1 */
    uint64_t t0 = flc_now_ns();
    int rc = flc_ps_step(a, 1, g, 4, w, &loss, 5000, &e);
    double ms = (double)(flc_now_ns() - t0) / 1e6;
    CHECK(rc == FLC_ECONN, "worker 0's step fails: %s", e.msg);
    CHECK(ms < 2000, "at once (%.0f ms), not at its timeout", ms);
    int st = 0;
    waitpid(srv, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3, "the server ended with FLC_EDATA naming the "
          "step (exit %d)", WEXITSTATUS(st));
    close(a);
    unlink(addr + 5);
}

TEST(one_step_by_hand)
{
    char addr[160];
    flc_err_t e = {0};
    int lfd = flc_ps_listen("tcp:127.0.0.1:0", addr, sizeof addr, &e);
    CHECK(lfd >= 0 && strncmp(addr, "tcp:127.0.0.1:", 14) == 0 && strcmp(addr + 14, "0") != 0,
          "listening on a port picked by the kernel: %s", addr);
    pid_t srv = fork();
    if (srv == 0) {
        uint32_t steps;
        flc_err_t se = {0};
        int rc = flc_ps_serve(lfd, 2, 5000, &steps, &se);
        _exit(rc == FLC_OK && steps == 1 ? 0 : 1);
    }
    close(lfd);
    float w0[3] = {1, 2, 3}, w1[3] = {9, 9, 9}; /* rank 0's model is the server's */
    int a = flc_ps_connect(addr, 0, 2, w0, 3, 0.5f, 2000, &e);
    int b = flc_ps_connect(addr, 1, 2, w1, 3, 0.5f, 2000, &e);
    float ga[4] = {1, 0, 2, 1.0f}, gb[4] = {3, 2, 0, 3.0f}, ma[3], mb[3], la, lb;
    /* two workers push at once: one in a child */
    pid_t kid = fork();
    if (kid == 0)
        _exit(flc_ps_step(b, 1, gb, 3, mb, &lb, 5000, &e) == FLC_OK && mb[0] == 0.0f ? 0 : 1);
    int rc = flc_ps_step(a, 1, ga, 3, ma, &la, 5000, &e);
    int st = 0;
    waitpid(kid, &st, 0);
    CHECK(rc == FLC_OK && WIFEXITED(st) && WEXITSTATUS(st) == 0, "both workers got step 1");
    CHECK(ma[0] == 0.0f && ma[1] == 1.5f && ma[2] == 2.5f,
          "model = w0 - 0.5 * mean gradient = (%g, %g, %g), expected (0, 1.5, 2.5)", ma[0],
          ma[1], ma[2]);
    CHECK(la == 2.0f, "the mean loss comes back (%g)", la);
    close(a);
    close(b);
    waitpid(srv, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the server ends after 1 step when both close");
}

TEST_LIST(TEST_ENTRY(one_step_by_hand), TEST_ENTRY(worker_gone_fails_the_server),
          TEST_ENTRY(sum_order_bound), TEST_ENTRY(ps_same_model_as_reduce_scatter),
          TEST_ENTRY(ps_mlp_over_tcp))
