/* aggregator/merge: every rule on small vectors whose results were worked
 * out by hand (the expected numbers are written below), rule descriptors,
 * and the error cases (unknown rule, bad parameter, NaN/Inf, lengths). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "aggregator/merge.h"
#include "tests/harness.h"

/* |got - want| <= tol * max(1, |want|) for every element. */
static int near(const float *got, const double *want, size_t n, double tol)
{
    for (size_t i = 0; i < n; i++) {
        double scale = fabs(want[i]) > 1 ? fabs(want[i]) : 1;
        if (!(fabs((double)got[i] - want[i]) <= tol * scale)) {
            printf("# element %zu: got %.9g, want %.9g\n", i, (double)got[i], want[i]);
            return 0;
        }
    }
    return 1;
}

/* Passes ok through and prints the error message the call left. */
static int show(int ok, const flc_err_t *e)
{
    printf("#   says: %s\n", flc_err_msg(e));
    return ok;
}

static int close_to(double got, double want)
{
    return fabs(got - want) <= 1e-9 * (fabs(want) > 1 ? fabs(want) : 1);
}

static flc_merge_rule_t rule(const char *spec)
{
    flc_merge_rule_t r;
    flc_err_t e = {0};
    if (flc_merge_rule_parse(&r, spec, &e))
        flc_t_fatal("rule '%s': %s", spec, flc_err_msg(&e));
    return r;
}

/* Runs spec over the updates u (k of n floats) into out. */
static int run(const char *spec, const float *const *u, size_t k, size_t n, const double *w,
               float *out, flc_merge_state_t *st, unsigned char *used)
{
    flc_merge_rule_t r = rule(spec);
    flc_merge_batch_t b = {.u = u, .k = k, .n = n, .weight = w};
    flc_merge_info_t info = {.used = used};
    flc_err_t e = {0};
    int rc = flc_merge_run(&r, st, &b, out, &info, &e);
    if (rc)
        printf("# %s: %s\n", spec, flc_err_msg(&e));
    return rc;
}

/* Five updates of four floats; the fifth is an outlier. */
static const float A0[4] = {1, 2, 3, 4}, A1[4] = {3, 0, -1, 8}, A2[4] = {-2, 4, 5, 0},
                   A3[4] = {0, 1, 2, 10}, A4[4] = {100, -100, 7, 1};

TEST(averages)
{
    const float *u[5] = {A0, A1, A2, A3, A4};
    const double w[3] = {1, 2, 3};
    float out[4];

    /* (1*A0 + 2*A1 + 3*A2) / 6 = [1, 14, 16, 20] / 6 */
    const double fedavg[4] = {1.0 / 6, 14.0 / 6, 16.0 / 6, 20.0 / 6};
    CHECK(run("fedavg", u, 3, 4, w, out, NULL, NULL) == 0 && near(out, fedavg, 4, 1e-7),
          "fedavg weighs by num_samples: [1,14,16,20]/6");
    /* (A0 + A1 + A2) / 3 = [2, 6, 7, 12] / 3, weights ignored */
    const double mean[4] = {2.0 / 3, 2, 7.0 / 3, 4};
    CHECK(run("mean", u, 3, 4, w, out, NULL, NULL) == 0 && near(out, mean, 4, 1e-7),
          "mean ignores weights: [2,6,7,12]/3");
    CHECK(run("fedavg", u, 3, 4, NULL, out, NULL, NULL) == 0 && near(out, mean, 4, 1e-7),
          "fedavg without weights is the mean");

    /* norms 5, 10, 1; clip 2 -> factors 0.4, 0.2, 1:
     * [1.2,1.6,0,0] + [0,0,1.2,1.6] + [1,0,0,0] = [2.2,1.6,1.2,1.6], / 3 */
    static const float C0[4] = {3, 4, 0, 0}, C1[4] = {0, 0, 6, 8}, C2[4] = {1, 0, 0, 0};
    const float *c[3] = {C0, C1, C2};
    const double clipped[4] = {2.2 / 3, 1.6 / 3, 1.2 / 3, 1.6 / 3};
    CHECK(run("mean:clip=2", c, 3, 4, NULL, out, NULL, NULL) == 0 && near(out, clipped, 4, 1e-7),
          "clipping to norm 2 scales updates of norm 5 and 10 by 0.4 and 0.2");
    /* weighted clip, weights 1,1,2: ([1.2,1.6,0,0]+[0,0,1.2,1.6]+2*[1,0,0,0]) / 4 */
    const double w2[3] = {1, 1, 2};
    const double wclip[4] = {3.2 / 4, 1.6 / 4, 1.2 / 4, 1.6 / 4};
    CHECK(run("fedavg:clip=2", c, 3, 4, w2, out, NULL, NULL) == 0 && near(out, wclip, 4, 1e-7),
          "clipped fedavg: [3.2,1.6,1.2,1.6]/4");

    /* The streaming accumulator gives the same numbers one update at a time;
     * with norms given from outside (as a shard's merger would). */
    flc_err_t e = {0};
    flc_merge_rule_t r = rule("fedavg:clip=2");
    flc_merge_acc_t *acc = flc_merge_acc_new(&r, 4, &e);
    const double norms[3] = {5, 10, 1};
    int rc = 0;
    for (int i = 0; i < 3; i++)
        rc |= flc_merge_acc_fold(acc, c[i], 4, w2[i], norms[i], &e);
    rc |= flc_merge_acc_finish(acc, NULL, out, &e);
    CHECK(rc == 0 && near(out, wclip, 4, 1e-7) && flc_merge_acc_count(acc) == 3 &&
              flc_merge_acc_weight(acc) == 4,
          "streaming fold with given norms equals the batch result (3 updates, weight 4)");
    flc_merge_acc_reset(acc);
    rc = flc_merge_acc_fold_scaled(acc, C0, 4, 1, 0.4, &e);
    rc |= flc_merge_acc_fold_scaled(acc, C1, 4, 1, 0.2, &e);
    rc |= flc_merge_acc_fold(acc, C2, 4, 2, -1, &e); /* norm of the slice itself: 1 */
    rc |= flc_merge_acc_finish(acc, NULL, out, &e);
    CHECK(rc == 0 && near(out, wclip, 4, 1e-7), "fold with precomputed scales, after reset");
    flc_merge_acc_free(acc);
}

TEST(robust_rules)
{
    const float *u[5] = {A0, A1, A2, A3, A4};
    float out[4];
    /* k=3: middles of {1,3,-2} {2,0,4} {3,-1,5} {4,8,0} */
    const double med3[4] = {1, 2, 3, 4};
    CHECK(run("median", u, 3, 4, NULL, out, NULL, NULL) == 0 && near(out, med3, 4, 0),
          "median of 3 = [1,2,3,4]");
    /* k=4: sorted columns [-2,0,1,3] [0,1,2,4] [-1,2,3,5] [0,4,8,10] */
    const double med4[4] = {0.5, 1.5, 2.5, 6};
    CHECK(run("median", u, 4, 4, NULL, out, NULL, NULL) == 0 && near(out, med4, 4, 0),
          "median of 4 averages the two middle values: [0.5,1.5,2.5,6]");
    /* k=5 with the outlier: [-2,0,1,3,100] [-100,0,1,2,4] [-1,2,3,5,7] [0,1,4,8,10] */
    const double med5[4] = {1, 1, 3, 4};
    CHECK(run("median", u, 5, 4, NULL, out, NULL, NULL) == 0 && near(out, med5, 4, 0),
          "median of 5 ignores the outlier: [1,1,3,4]");
    /* trim 0.2 of 5 cuts one each side: [0,1,3] [0,1,2] [2,3,5] [1,4,8] */
    const double trim5[4] = {4.0 / 3, 1, 10.0 / 3, 13.0 / 3};
    CHECK(run("trimmed-mean:trim=0.2", u, 5, 4, NULL, out, NULL, NULL) == 0 &&
              near(out, trim5, 4, 1e-7),
          "trimmed mean (trim 0.2 of 5) = [4/3, 1, 10/3, 13/3]");
    /* default trim 0.1 of 5 cuts nothing: the plain mean [102,-93,16,23]/5 */
    const double trim0[4] = {102.0 / 5, -93.0 / 5, 16.0 / 5, 23.0 / 5};
    CHECK(run("trimmed-mean", u, 5, 4, NULL, out, NULL, NULL) == 0 && near(out, trim0, 4, 1e-7),
          "trimmed mean with floor(0.1*5)=0 cut is the mean");
    CHECK(flc_merge_trim_count(0.3, 10) == 3 && flc_merge_trim_count(0.1, 9) == 0 &&
              flc_merge_trim_count(0.49, 4) == 1,
          "trim count is floor(trim*k): 3 of 10 at 0.3, 0 of 9 at 0.1, 1 of 4 at 0.49");
}

TEST(krum)
{
    /* Points e=[10,10] b=[1,0] d=[1,1.5] c=[0,1] a=[0,0]; f=1 -> 2 neighbours.
     * Scores: e 153.25+181=334.25, b 1+2=3, d 1.25+2.25=3.5, c 1+1.25=2.25,
     * a 1+1=2. Krum picks a (index 4); order a, c, b, d, e. */
    static const float P0[2] = {10, 10}, P1[2] = {1, 0}, P2[2] = {1, 1.5f}, P3[2] = {0, 1},
                       P4[2] = {0, 0};
    const float *u[5] = {P0, P1, P2, P3, P4};
    float out[2];
    unsigned char used[5];
    const double krum[2] = {0, 0};
    CHECK(run("krum", u, 5, 2, NULL, out, NULL, used) == 0 && near(out, krum, 2, 0) &&
              used[4] == 1 && used[0] + used[1] + used[2] + used[3] == 0,
          "krum (f auto = 1) picks [0,0], update 4");
    const double mk3[2] = {1.0 / 3, 1.0 / 3};
    CHECK(run("multi-krum:f=1,m=3", u, 5, 2, NULL, out, NULL, used) == 0 &&
              near(out, mk3, 2, 1e-7) && used[0] == 0 && used[2] == 0 && used[1] && used[3],
          "multi-krum m=3 averages a, c, b: [1/3, 1/3]");
    const double mk4[2] = {0.5, 0.625};
    CHECK(run("multi-krum", u, 5, 2, NULL, out, NULL, used) == 0 && near(out, mk4, 2, 1e-7) &&
              used[0] == 0,
          "multi-krum default m = k-f = 4 drops only [10,10]: [0.5, 0.625]");

    /* The same selection from two one-coordinate shards' partial distances. */
    double D[25] = {0}, score[5];
    flc_err_t e = {0};
    const float *s0[5], *s1[5];
    for (int i = 0; i < 5; i++) {
        s0[i] = u[i];
        s1[i] = u[i] + 1;
    }
    int rc = flc_merge_sqdist_partial(s0, 5, 1, NULL, D, &e);
    rc |= flc_merge_sqdist_partial(s1, 5, 1, NULL, D, &e);
    CHECK(rc == 0 && close_to(D[0 * 5 + 1], 181) && close_to(D[1 * 5 + 0], 181) &&
              close_to(D[2 * 5 + 4], 3.25) && D[3 * 5 + 3] == 0,
          "summed shard partials give whole distances (e-b 181, d-a 3.25)");
    size_t sel[5];
    rc = flc_merge_krum_select(D, 5, 1, 5, sel, score, &e);
    CHECK(rc == 0 && sel[0] == 4 && sel[1] == 3 && sel[2] == 1 && sel[3] == 2 && sel[4] == 0 &&
              close_to(score[4], 2) && close_to(score[3], 2.25) && close_to(score[0], 334.25),
          "krum order from shard sums: 4,3,1,2,0 with scores 2, 2.25, ..., 334.25");
    double G[25] = {0};
    rc = flc_merge_gram_partial(u, 5, 2, NULL, G, &e);
    CHECK(rc == 0 && G[0] == 200 && G[1] == 10 && G[5] == 10 && G[2 * 5 + 3] == 1.5,
          "Gram partial holds dot products (e.e 200, e.b 10, d.c 1.5)");
    CHECK(show(flc_merge_krum_select(D, 5, 3, 1, sel, NULL, &e) == FLC_EINVAL, &e),
          "krum with f=3 and 5 updates is refused");
}

TEST(server_optimizers)
{
    /* deltas [1,-2,0] and [3,0,0]: pseudo-gradient g = [2,-1,0] */
    static const float D0[3] = {1, -2, 0}, D1[3] = {3, 0, 0};
    const float *u[2] = {D0, D1};
    float out[3];
    struct {
        const char *spec;
        double r1[3], r2[3];
    } cases[] = {
        /* m = g, then 0.9 g + g */
        {"fedavgm", {2, -1, 0}, {3.8, -1.9, 0}},
        /* m = 0.1 g; v = 0.99 tau^2 + 0.01 g^2; out = 0.01 m / (sqrt v + 1e-3) */
        {"fedadam", {0.00995012624, -0.00990050489, 0}, {0.0134210906, -0.0133736107, 0}},
        /* v = tau^2 + 0.01 g^2 (sign(v - g^2) = -1), third stays tau^2 */
        {"fedyogi", {0.009950125, -0.00990049999, 0}, {0.0133876128, -0.0133403648, 0}},
        /* v = tau^2 + g^2, eta 0.1 */
        {"fedadagrad", {0.00999500125, -0.009990005, 0}, {0.0134302798, -0.0134255325, 0}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        flc_merge_rule_t r = rule(cases[c].spec);
        flc_err_t e = {0};
        flc_merge_state_t *st = flc_merge_state_new(&r, 3, &e);
        int ok1 = run(cases[c].spec, u, 2, 3, NULL, out, st, NULL) == 0 &&
                  near(out, cases[c].r1, 3, 1e-6);
        int ok2 = run(cases[c].spec, u, 2, 3, NULL, out, st, NULL) == 0 &&
                  near(out, cases[c].r2, 3, 1e-6);
        CHECK(st && ok1 && ok2 && st->rounds == 2, "%s: two server steps match the hand values",
              cases[c].spec);
        /* streaming: the same first step through the accumulator */
        flc_merge_state_reset(st, &r);
        flc_merge_acc_t *acc = flc_merge_acc_new(&r, 3, &e);
        int rc = flc_merge_acc_fold(acc, D0, 3, 10, -1, &e);
        rc |= flc_merge_acc_fold(acc, D1, 3, 1, -1, &e);
        rc |= flc_merge_acc_finish(acc, st, out, &e);
        CHECK(rc == 0 && near(out, cases[c].r1, 3, 1e-6),
              "%s: streaming fold + finish = first step (weights ignored by default)",
              cases[c].spec);
        CHECK(flc_merge_acc_finish(acc, NULL, out, &e) == FLC_EINVAL,
              "%s: finish without server state is refused", cases[c].spec);
        flc_merge_acc_free(acc);
        flc_merge_state_free(st);
    }
    /* weighted pseudo-gradient: weights 3,1 -> g = [1.5,-1.5,0]; fedavgm eta 0.5 */
    flc_merge_rule_t r = rule("fedavgm:weighted=1,server_lr=0.5");
    flc_merge_state_t *st = flc_merge_state_new(&r, 3, NULL);
    const double w[2] = {3, 1}, want[3] = {0.75, -0.75, 0};
    flc_merge_batch_t b = {.u = u, .k = 2, .n = 3, .weight = w};
    CHECK(flc_merge_run(&r, st, &b, out, NULL, NULL) == 0 && near(out, want, 3, 1e-7),
          "fedavgm weighted=1 uses num_samples: 0.5 * [1.5,-1.5,0]");
    flc_merge_state_free(st);
}

TEST(descriptors)
{
    flc_merge_rule_t r;
    flc_err_t e = {0};
    CHECK(flc_merge_rule_init(&r, "fedadam", &e) == 0 && r.server_lr == 0.01 && r.beta1 == 0.9 &&
              r.beta2 == 0.99 && r.tau == 1e-3 && r.clip == 0,
          "fedadam defaults: eta 0.01, beta1 0.9, beta2 0.99, tau 1e-3");
    CHECK(flc_merge_rule_parse(&r, " fedyogi : eta = 0.03 , tau=1e-4,clip=5 ", &e) == 0 &&
              r.kind == FLC_MERGE_FEDYOGI && r.server_lr == 0.03 && r.tau == 1e-4 && r.clip == 5,
          "spec with spaces and the eta alias parses");
    CHECK(flc_merge_rule_parse(&r, "trimmed_mean:trim_beta=0.25", &e) == 0 &&
              r.kind == FLC_MERGE_TRIMMED_MEAN && r.trim == 0.25,
          "'_' stands for '-', trim_beta is trim");
    char buf[160];
    flc_merge_rule_parse(&r, "fedadam:server_lr=0.1,tau=1e-9", &e);
    flc_merge_rule_format(&r, buf, sizeof buf);
    CHECK(strcmp(buf, "fedadam:server_lr=0.1,beta1=0.9,beta2=0.99,tau=1e-09,clip=0,weighted=0") ==
              0, "canonical format: '%s'", buf);
    flc_merge_rule_t back;
    CHECK(flc_merge_rule_parse(&back, buf, &e) == 0 && memcmp(&back, &r, sizeof r) == 0,
          "the canonical format parses back to the same rule");
    int need = flc_merge_rule_format(&r, buf, 8);
    CHECK(need == (int)strlen("fedadam:server_lr=0.1,beta1=0.9,beta2=0.99,tau=1e-09,clip=0,"
                              "weighted=0") && strcmp(buf, "fedadam") == 0,
          "format into a short buffer truncates and returns the needed length (%d)", need);

    cJSON *j = cJSON_Parse("{\"rule\":\"multi-krum\",\"f\":2,\"params\":{\"m\":4,\"clip\":1.5}}");
    CHECK(flc_merge_rule_from_json(&r, j, &e) == 0 && r.kind == FLC_MERGE_MULTI_KRUM && r.f == 2 &&
              r.m == 4 && r.clip == 1.5,
          "JSON object with flat and nested params");
    cJSON_Delete(j);
    j = cJSON_Parse("{\"rule\":\"fedavgm\",\"weighted\":true}");
    CHECK(flc_merge_rule_from_json(&r, j, &e) == 0 && r.weighted == 1, "JSON booleans are 0/1");
    cJSON_Delete(j);
    j = cJSON_Parse("\"median:clip=3\"");
    CHECK(flc_merge_rule_from_json(&r, j, &e) == 0 && r.kind == FLC_MERGE_MEDIAN && r.clip == 3,
          "JSON string is a spec");
    cJSON_Delete(j);
    j = cJSON_Parse("{\"rule\":\"fedavg\",\"momentum\":\"x\"}");
    CHECK(show(flc_merge_rule_from_json(&r, j, &e) == FLC_EINVAL && strstr(e.msg, "momentum"), &e),
          "JSON non-number parameter is refused");
    cJSON_Delete(j);

    CHECK(show(flc_merge_rule_parse(&r, "fedsgd", &e) == FLC_EINVAL && strstr(e.msg, "fedsgd"), &e),
          "unknown rule is named");
    CHECK(show(flc_merge_rule_parse(&r, "fedadam:beta2=1", &e) == FLC_EINVAL && strstr(e.msg, "beta2"), &e),
          "beta2 = 1 is out of range");
    CHECK(show(flc_merge_rule_parse(&r, "median:momentum=0.5", &e) == FLC_EINVAL &&
              strstr(e.msg, "does not apply"), &e),
          "a parameter of another rule is refused");
    CHECK(flc_merge_rule_parse(&r, "krum:f=1.5", &e) == FLC_EINVAL, "f must be an integer");
    CHECK(show(flc_merge_rule_parse(&r, "fedavg:clip=abc", &e) == FLC_EINVAL &&
              strstr(e.msg, "not a number"), &e), "non-number value");
    CHECK(flc_merge_rule_parse(&r, "fedavg:clip", &e) == FLC_EINVAL, "key without value");
    CHECK(flc_merge_rule_parse(&r, "trimmed-mean:trim=0.5", &e) == FLC_EINVAL, "trim 0.5 refused");
    CHECK(flc_merge_rule_parse(&r, "fedavg:tau=1", &e) == FLC_EINVAL, "tau does not apply to fedavg");

    int streams = 0, state = 0;
    const char *all[] = {"fedavg", "mean", "fedavgm", "fedadam", "fedyogi", "fedadagrad",
                         "median", "trimmed-mean", "krum", "multi-krum"};
    for (int i = 0; i < 10; i++) {
        flc_merge_rule_init(&r, all[i], NULL);
        streams |= flc_merge_rule_streams(&r) << i;
        state |= flc_merge_rule_has_state(&r) << i;
        if (strcmp(flc_merge_kind_name(r.kind), all[i]) != 0)
            CHECK(0, "kind name of %s", all[i]);
    }
    CHECK(streams == 0x3f && state == 0x3c,
          "fedavg, mean and the 4 server optimizers stream; only the optimizers keep state");
    CHECK(show(flc_merge_acc_new(&r, 4, &e) == NULL && e.code == FLC_EINVAL, &e),
          "no accumulator for multi-krum");
}

TEST(errors_named)
{
    float bad[5] = {1, 2, 3, 4, 5};
    float good[5] = {1, 1, 1, 1, 1};
    float out[5];
    const float *u[3] = {good, good, bad};
    flc_merge_rule_t r = rule("fedavg");
    flc_err_t e = {0};
    bad[3] = NAN;
    flc_merge_batch_t b = {.u = u, .k = 3, .n = 5};
    CHECK(show(flc_merge_run(&r, NULL, &b, out, NULL, &e) == FLC_ENONFINITE &&
              strstr(e.msg, "update 2") && strstr(e.msg, "NaN at element 3"), &e),
          "NaN is refused naming update and element");
    bad[3] = 4;
    bad[0] = -INFINITY;
    r = rule("median");
    CHECK(show(flc_merge_run(&r, NULL, &b, out, NULL, &e) == FLC_ENONFINITE &&
              strstr(e.msg, "-Inf at element 0"), &e), "-Inf too");
    size_t pos = 99;
    CHECK(flc_merge_check_finite(bad, 5, &pos) == FLC_ENONFINITE && pos == 0 &&
              flc_merge_check_finite(good, 5, NULL) == 0, "finite check finds element 0");
    bad[0] = 1;
    const size_t len[3] = {5, 4, 5};
    b.len = len;
    CHECK(show(flc_merge_run(&r, NULL, &b, out, NULL, &e) == FLC_EDIM && strstr(e.msg, "update 1") &&
              strstr(e.msg, "4 floats"), &e), "length mismatch");
    b.len = NULL;
    const double w[3] = {1, -1, 1};
    b.weight = w;
    r = rule("fedavg");
    CHECK(show(flc_merge_run(&r, NULL, &b, out, NULL, &e) == FLC_EINVAL && strstr(e.msg, "weight"), &e),
          "negative weight");
    const double w0[3] = {0, 0, 0};
    b.weight = w0;
    CHECK(flc_merge_run(&r, NULL, &b, out, NULL, &e) == FLC_EINVAL, "all-zero weights: %s",
          flc_err_msg(&e));
    b.weight = NULL;
    b.k = 0;
    CHECK(flc_merge_run(&r, NULL, &b, out, NULL, &e) == FLC_EINVAL, "no updates: %s",
          flc_err_msg(&e));
    b.k = 3;
    r = rule("fedadam");
    CHECK(show(flc_merge_run(&r, NULL, &b, out, NULL, &e) == FLC_EINVAL && strstr(e.msg, "state"), &e),
          "server optimizer without state");
    flc_merge_state_t *st = flc_merge_state_new(&r, 4, &e);
    CHECK(show(flc_merge_run(&r, st, &b, out, NULL, &e) == FLC_EINVAL && st->rounds == 0, &e),
          "state of the wrong length");
    flc_merge_state_free(st);
    flc_merge_state_free(NULL);
    r = rule("krum");
    b.k = 2;
    CHECK(flc_merge_run(&r, NULL, &b, out, NULL, &e) == FLC_EINVAL, "krum of 2 updates: %s",
          flc_err_msg(&e));

    /* The accumulator refuses a bad update and keeps what it had. */
    r = rule("mean");
    flc_merge_acc_t *acc = flc_merge_acc_new(&r, 5, &e);
    bad[4] = INFINITY;
    int rc1 = flc_merge_acc_fold(acc, good, 5, 1, -1, &e);
    int rc2 = flc_merge_acc_fold(acc, bad, 5, 1, -1, &e);
    CHECK(rc1 == 0 && rc2 == FLC_ENONFINITE && strstr(e.msg, "update 1") &&
              strstr(e.msg, "+Inf at element 4"), "fold refuses +Inf naming fold 1: %s",
          flc_err_msg(&e));
    CHECK(flc_merge_acc_fold(acc, good, 4, 1, -1, &e) == FLC_EDIM, "fold of 4 floats into 5: %s",
          flc_err_msg(&e));
    const float *bb[2] = {good, bad};
    flc_merge_batch_t b2 = {.u = bb, .k = 2, .n = 5};
    CHECK(flc_merge_acc_fold_batch(acc, &b2, &e) == FLC_ENONFINITE, "batch fold refuses +Inf");
    const double want[5] = {1, 1, 1, 1, 1};
    CHECK(flc_merge_acc_finish(acc, NULL, out, &e) == 0 && flc_merge_acc_count(acc) == 1 &&
              near(out, want, 5, 0), "after the refusals the accumulator holds only the good one");
    flc_merge_acc_reset(acc);
    CHECK(flc_merge_acc_finish(acc, NULL, out, &e) == FLC_EINVAL, "finish of nothing: %s",
          flc_err_msg(&e));
    flc_merge_acc_free(acc);
    flc_merge_acc_free(NULL);
}

TEST_LIST(TEST_ENTRY(averages), TEST_ENTRY(robust_rules), TEST_ENTRY(krum),
          TEST_ENTRY(server_optimizers), TEST_ENTRY(descriptors), TEST_ENTRY(errors_named))
