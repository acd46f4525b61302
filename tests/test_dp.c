/* Differential privacy (issue 16 point 3): the RDP accountant of the sampled
 * Gaussian mechanism against values computed independently, by numerical
 * integration with scipy under /usr/bin/python3 (A_alpha = E_{z~N(0,s^2)}
 * [(mu(z)/mu0(z))^alpha], mu = (1-q) N(0,s^2) + q N(1,s^2), Mironov-Talwar-
 * Zhang 2019 eq. (3)), not against its own closed form; the epsilon after
 * T rounds from those integrals; and the central-DP noise: its standard
 * deviation as asked, different on every call. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/dp.h"
#include "aggregator/merge.h"
#include "cache/store.h"
#include "clients/sim.h"
#include "tests/harness.h"

static flc_fixture_t fx;

static char g_out[65536];

static const char *py =
    "import sys, math\n"
    "import numpy as np\n"
    "from scipy import integrate\n"
    "from scipy.stats import norm\n"
    "def log_a(q, s, a):\n"
    "    # log of the integral of N(z; 0, s^2) ((1-q) + q exp((2z-1)/(2s^2)))^a, done in\n"
    "    # log space around the integrand's peak so large a cannot overflow\n"
    "    def lf(z):\n"
    "        return norm.logpdf(z, 0, s) + a * np.logaddexp(math.log1p(-q) if q < 1 else"
    " -np.inf, (math.log(q) + (2*z - 1) / (2*s*s)))\n"
    "    zs = np.linspace(-30*s - 5, a + 30*s + 5, 20001)\n"
    "    m = float(np.max(lf(zs)))\n"
    "    val, _ = integrate.quad(lambda z: math.exp(lf(z) - m), -30*s - 5, a + 30*s + 5,"
    " limit=1000, epsabs=0, epsrel=1e-12, points=[0.0, 0.5, 1.0, float(zs[np.argmax(lf(zs))])])\n"
    "    return m + math.log(val)\n"
    "worst = 0.0; bad = 0; n = 0\n"
    "for line in open(sys.argv[1]):\n"
    "    w = line.split()\n"
    "    if w[0] == 'A':\n"
    "        q, s, a, la = float(w[1]), float(w[2]), int(w[3]), float(w[4])\n"
    "        ref = log_a(q, s, a); n += 1\n"
    "        d = abs(ref - la) / max(1.0, abs(ref)); worst = max(worst, d)\n"
    "        if d > 1e-7: bad += 1; print('A mismatch q=%g sigma=%g alpha=%d: flcache %.12g"
    " scipy %.12g' % (q, s, a, la, ref))\n"
    "    elif w[0] == 'E':\n"
    "        q, s, T, delta, eps = float(w[1]), float(w[2]), int(w[3]), float(w[4]), float(w[5])\n"
    "        best = min(T * log_a(q, s, a) / (a - 1) + math.log(1 / delta) / (a - 1)"
    " for a in [int(x) for x in w[6:]])\n"
    "        d = abs(best - eps) / best; worst = max(worst, d)\n"
    "        print('epsilon q=%g sigma=%g T=%d delta=%g: flcache %.6f scipy %.6f' % (q, s, T,"
    " delta, eps, best))\n"
    "        if d > 1e-6: bad += 1\n"
    "print('%d integrals, worst relative difference %.3g, %d mismatches' % (n, worst, bad))\n"
    "sys.exit(1 if bad else 0)\n";

TEST(accountant_vs_scipy_integration)
{
    char dir[] = "/tmp/flc-dp-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "a temporary directory");
    char vals[256], script[256], cmd[1024];
    snprintf(vals, sizeof vals, "%s/vals.txt", dir);
    snprintf(script, sizeof script, "%s/check.py", dir);
    FILE *f = fopen(script, "w");
    fputs(py, f);
    fclose(f);
    f = fopen(vals, "w");
    /* Sampling rates and noise of FL deployments (q = K/N = 0.01..0.1,
     * sigma 0.7..4), and q = 1 (every client every round). */
    static const double qs[] = {0.01, 0.05, 0.1, 1.0}, sig[] = {0.7, 1.1, 4.0};
    static const int al[] = {2, 3, 8, 32};
    int nA = 0;
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 4; k++) {
                double la;
                flc_dp_rdp_sgm(qs[i], sig[j], al[k], &la);
                fprintf(f, "A %.17g %.17g %d %.17g\n", qs[i], sig[j], al[k], la);
                nA++;
            }
    /* epsilon after T rounds: a few orders around the one flcache picked */
    static const struct { double q, s; int T; } runs[] = {{0.1, 1.1, 50}, {0.01, 1.0, 1000},
                                                          {1.0, 4.0, 10}};
    for (int r = 0; r < 3; r++) {
        flc_dp_acct_t a;
        flc_dp_acct_init(&a);
        flc_err_t e = {0};
        CHECK(flc_dp_acct_step(&a, runs[r].q, runs[r].s, (uint64_t)runs[r].T, &e) == 0,
              "accountant step q=%g sigma=%g", runs[r].q, runs[r].s);
        int ord = 0;
        double eps = flc_dp_acct_epsilon(&a, 1e-5, &ord);
        printf("# flcache: q=%g sigma=%g T=%d: epsilon %.4f at delta 1e-5 (order %d)\n",
               runs[r].q, runs[r].s, runs[r].T, eps, ord);
        fprintf(f, "E %.17g %.17g %d 1e-5 %.17g", runs[r].q, runs[r].s, runs[r].T, eps);
        for (int i = 0; i < FLC_DP_NORDERS; i++) /* python takes the min over the same orders */
            if (abs(flc_dp_order(i) - ord) <= 24)
                fprintf(f, " %d", flc_dp_order(i));
        fprintf(f, "\n");
    }
    fclose(f);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s", script, vals);
    int rc = flc_t_run(cmd, g_out, sizeof g_out);
    printf("# %s", g_out);
    EXPECT(rc == 0, "log A_alpha of %d (q, sigma, alpha) and epsilon of 3 runs agree with "
           "scipy.integrate.quad to 1e-7 / 1e-6 relative", nA);
    /* What the accountant must do whatever the formula: more rounds cost
     * more, more noise costs less. */
    flc_dp_acct_t a, b2, c2;
    flc_dp_acct_init(&a), flc_dp_acct_init(&b2), flc_dp_acct_init(&c2);
    flc_dp_acct_step(&a, 0.01, 1.1, 1000, NULL);
    flc_dp_acct_step(&b2, 0.01, 1.1, 2000, NULL);
    flc_dp_acct_step(&c2, 0.01, 2.0, 1000, NULL);
    double e1 = flc_dp_acct_epsilon(&a, 1e-5, NULL), e2 = flc_dp_acct_epsilon(&b2, 1e-5, NULL),
           e3 = flc_dp_acct_epsilon(&c2, 1e-5, NULL);
    EXPECT(e2 > e1 && e3 < e1 && flc_dp_acct_epsilon(&(flc_dp_acct_t){0}, 1e-5, NULL) == 0,
           "epsilon grows with rounds (%.3f -> %.3f), shrinks with noise (%.3f), 0 before any "
           "round", e1, e2, e3);
    flc_err_t e = {0};
    EXPECT(flc_dp_acct_step(&a, 1.5, 1, 1, &e) == FLC_EINVAL && strstr(e.msg, "q = 1.5"),
           "q = 1.5 refused: %s", e.msg);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
}

TEST(noise_has_the_asked_spread)
{
    enum { N = 200000 };
    float *v = calloc(N, sizeof *v), *w = calloc(N, sizeof *w);
    flc_err_t e = {0};
    CHECK(flc_dp_add_noise(v, N, 0.5, &e) == 0 && flc_dp_add_noise(w, N, 0.5, &e) == 0,
          "noise added twice");
    double s = 0, ss = 0;
    int same = 0;
    for (int i = 0; i < N; i++) {
        s += v[i];
        ss += (double)v[i] * v[i];
        same += v[i] == w[i];
    }
    double mean = s / N, sd = sqrt(ss / N - mean * mean);
    EXPECT(fabs(mean) < 0.01 && fabs(sd - 0.5) < 0.01, "mean %.4f ~ 0, sd %.4f ~ 0.5", mean,
           sd);
    EXPECT(same < 10, "two calls draw different noise (%d equal values)", same);
    free(v), free(w);
}

TEST(central_dp_rule)
{
    flc_merge_rule_t r;
    flc_err_t e = {0};
    CHECK(flc_merge_rule_parse(&r, "mean:clip=1,noise=2", &e) == 0 && r.noise == 2,
          "mean:clip=1,noise=2 parses (%s)", e.msg);
    EXPECT(flc_merge_rule_parse(&r, "mean:noise=2", &e) == FLC_EINVAL &&
               strstr(e.msg, "noise needs clip"),
           "noise without clip refused: %s", e.msg);
    EXPECT(flc_merge_rule_parse(&r, "median:clip=1,noise=2", &e) == FLC_EINVAL &&
               strstr(e.msg, "'noise' does not apply"),
           "noise on median refused: %s", e.msg);
    /* k updates far beyond the clip: the mean is clipped, noise sd = noise*C/k. */
    enum { K = 4, N = 50000 };
    float *u[K];
    for (int i = 0; i < K; i++) {
        u[i] = malloc(N * sizeof(float));
        for (int c = 0; c < N; c++)
            u[i][c] = 0;
        u[i][0] = 10; /* norm 10, clipped to 1 */
    }
    flc_merge_rule_parse(&r, "mean:clip=1,noise=2", &e);
    float *out = malloc(N * sizeof *out);
    flc_merge_batch_t b = {.u = (const float *const *)u, .k = K, .n = N};
    CHECK(flc_merge_run(&r, NULL, &b, out, NULL, &e) == 0, "merged (%s)", e.msg);
    double ss = 0;
    for (int c = 1; c < N; c++)
        ss += (double)out[c] * out[c];
    double sd = sqrt(ss / (N - 1));
    EXPECT(fabs(sd - 0.5) < 0.01, "noise sd %.4f = noise x clip / k = 2 x 1 / 4", sd);
    EXPECT(fabs(out[0] - 1.0) < 0.05 * 40, "coordinate 0 is the clipped mean 1 plus noise "
           "(%.3f)", out[0]);
    for (int i = 0; i < K; i++)
        free(u[i]);
    free(out);
}

/* A simulated job with --rule mean:clip=1,noise=1.2: every round's metadata
 * carries the epsilon the accountant gives for that many rounds at q = K/N,
 * and `query history` shows it. */
TEST(sim_records_epsilon)
{
    flc_sim_cfg_t c;
    flc_sim_cfg_init(&c);
    c.job = "dp";
    c.clients = 20;
    c.per_round = 5;
    c.rounds = 3;
    c.synthetic_params = 200;
    c.seed = 1;
    c.redis = fx.unix_url;
    c.rule = "mean:clip=1,noise=1.2";
    flc_sim_result_t r = {0};
    flc_err_t e = {0};
    flc_sim_clear(c.redis, NULL, c.job, &e);
    CHECK(flc_sim_run(&c, NULL, NULL, &r, &e) == 0, "3 DP rounds ran (%s)", e.msg);
    flc_sim_result_free(&r);
    flc_store_t *s = flc_store_open(fx.unix_url, NULL, &e);
    flc_dp_acct_t a;
    flc_dp_acct_init(&a);
    for (uint32_t round = 1; round <= 3; round++) {
        flc_dp_acct_step(&a, 5.0 / 20.0, 1.2, 1, NULL);
        double want = flc_dp_acct_epsilon(&a, 1e-5, NULL), got = NAN, delta = NAN;
        Flcache__RoundMeta *m = NULL;
        if (s && flc_store_get_round_meta(s, "dp", round, &m) == 0)
            for (size_t i = 0; i < m->n_metrics; i++) {
                if (strcmp(m->metrics[i]->key, "dp_epsilon") == 0)
                    got = m->metrics[i]->value;
                if (strcmp(m->metrics[i]->key, "dp_delta") == 0)
                    delta = m->metrics[i]->value;
            }
        EXPECT(got == want && delta == 1e-5, "round %u: dp_epsilon %.4f at delta %g in the "
               "metadata (accountant: %.4f)", round, got, delta, want);
        if (m)
            flcache__round_meta__free_unpacked(m, NULL);
    }
    flc_store_close(s);
}

/* Local DP: what the clients push (and the cache keeps) is clipped to C and
 * noised with sd sigma*C per coordinate, so its norm is about C sqrt(1 +
 * P sigma^2); the accountant's epsilon is recorded as for central DP. */
TEST(local_dp_clients_clip_and_noise)
{
    enum { P = 400 };
    const double C = 1e-3;
    double norms[2] = {0, 0}, worst_clip = 0;
    for (int run = 0; run < 2; run++) {
        flc_sim_cfg_t c;
        flc_sim_cfg_init(&c);
        c.job = run ? "ldp-noise" : "ldp-clip";
        c.clients = 10;
        c.per_round = 5;
        c.rounds = 2;
        c.synthetic_params = P; /* deltas of norm ~ 0.006, well above C */
        c.redis = fx.unix_url;
        c.ldp_clip = C;
        c.ldp_noise = run ? 1.0 : 0;
        flc_sim_result_t r = {0};
        flc_err_t e = {0};
        flc_sim_clear(c.redis, NULL, c.job, &e);
        CHECK(flc_sim_run(&c, NULL, NULL, &r, &e) == 0, "%s: 2 rounds (%s)", c.job, e.msg);
        flc_sim_result_free(&r);
        flc_store_t *s = flc_store_open(fx.unix_url, NULL, &e);
        Flcache__ModelUpdate **u = NULL;
        size_t n = 0;
        CHECK(s && flc_store_get_round_update_metas(s, c.job, 2, &u, &n) == 0 && n == 5,
              "%s: 5 update records in round 2", c.job);
        for (size_t i = 0; i < n; i++) {
            norms[run] += u[i]->update_norm / (double)n;
            if (!run && u[i]->update_norm > worst_clip)
                worst_clip = u[i]->update_norm;
        }
        flc_store_free_update_metas(u, n);
        Flcache__RoundMeta *m = NULL;
        double eps = NAN;
        if (flc_store_get_round_meta(s, c.job, 2, &m) == 0)
            for (size_t i = 0; i < m->n_metrics; i++)
                if (strcmp(m->metrics[i]->key, "dp_epsilon") == 0)
                    eps = m->metrics[i]->value;
        if (m)
            flcache__round_meta__free_unpacked(m, NULL);
        flc_dp_acct_t a;
        flc_dp_acct_init(&a);
        flc_dp_acct_step(&a, 0.5, 1.0, 2, NULL);
        if (run)
            EXPECT(eps == flc_dp_acct_epsilon(&a, 1e-5, NULL), "ldp sigma 1, q 0.5, 2 rounds: "
                   "epsilon %.3f in round 2's metadata", eps);
        else
            EXPECT(isnan(eps), "clipping alone (no noise) reports no epsilon");
        flc_store_close(s);
    }
    EXPECT(worst_clip <= C * (1 + 1e-5) && norms[0] > 0.99 * C,
           "clip only: every pushed update has norm <= C = %g (largest %.6g)", C, worst_clip);
    double want = C * sqrt(1.0 + P);
    EXPECT(fabs(norms[1] - want) < 0.1 * want, "clip + noise sigma 1: mean pushed norm %.5f ~ "
           "C sqrt(1 + P) = %.5f", norms[1], want);
}

/* Adaptive clipping: without noise on the count (the rule has none), the
 * clip follows Andrew et al.'s geometric update exactly: every update below
 * C = 1 (norms ~0.006), so b = 1 and C shrinks by exp(-0.2 (1 - 0.5)) a
 * round; the metadata records the C each round used. */
TEST(adaptive_clipping_follows_the_quantile)
{
    EXPECT(fabs(flc_dp_update_noise(1.2, 1.0) - 1.5) < 1e-12 &&
               flc_dp_update_noise(1.0, 0.5) < 0,
           "update noise (z^-2 - (2 sigma_b)^-2)^-1/2: 1.5 for z 1.2, sigma_b 1; none left for "
           "z 1, sigma_b 0.5");
    flc_sim_cfg_t c;
    flc_sim_cfg_init(&c);
    c.job = "adapt";
    c.clients = 10;
    c.per_round = 5;
    c.rounds = 3;
    c.synthetic_params = 400;
    c.redis = fx.unix_url;
    c.rule = "mean:clip=1";
    c.dp_quantile = 0.5;
    flc_sim_result_t r = {0};
    flc_err_t e = {0};
    flc_sim_clear(c.redis, NULL, c.job, &e);
    CHECK(flc_sim_run(&c, NULL, NULL, &r, &e) == 0, "3 rounds with adaptive clipping (%s)",
          e.msg);
    flc_sim_result_free(&r);
    flc_store_t *s = flc_store_open(fx.unix_url, NULL, &e);
    for (uint32_t round = 1; round <= 3; round++) {
        Flcache__RoundMeta *m = NULL;
        double got = NAN, want = exp(-0.1 * (round - 1));
        if (flc_store_get_round_meta(s, c.job, round, &m) == 0)
            for (size_t i = 0; i < m->n_metrics; i++)
                if (strcmp(m->metrics[i]->key, "dp_clip") == 0)
                    got = m->metrics[i]->value;
        EXPECT(fabs(got - want) < 1e-12, "round %u clipped at %.6f = exp(-0.1 x %u)", round, got,
               round - 1);
        if (m)
            flcache__round_meta__free_unpacked(m, NULL);
    }
    flc_store_close(s);
    c.rule = "median";
    EXPECT(flc_sim_cfg_finish(&c, &e) == FLC_EINVAL && strstr(e.msg, "clip=C"),
           "dp-quantile without a clip refused: %s", e.msg);
}

static void setup(void)
{
    flc_fixture_start(&fx, 0);
}

static void teardown(void)
{
    flc_fixture_stop(&fx);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(accountant_vs_scipy_integration),
                 TEST_ENTRY(noise_has_the_asked_spread), TEST_ENTRY(central_dp_rule),
                 TEST_ENTRY(sim_records_epsilon), TEST_ENTRY(local_dp_clients_clip_and_noise),
                 TEST_ENTRY(adaptive_clipping_follows_the_quantile))
