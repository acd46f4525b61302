/* `flcache tune` (issue 20 part 2, cli/tune_model.c, cli/cmd_tune.c): the
 * model fit recovers a known curve, the pick is the cheapest size meeting
 * the deadline, the command recommends a size for a small real job within
 * its probe budget (needs root for the CPU quotas) and stops a probe that
 * can no longer meet the deadline, and with the job's
 * --job it leaves a record that `flcache report` plots. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli/tune.h"
#include "runtime/cpu_cgroup.h"
#include "tests/harness.h"

/* Probes of time = 0.2 + 2 s at 1 vCPU / vCPUs, flat past 3538 MB (2
 * vCPUs: a 2-core machine), cost = 2e-8 x m x time. */
static void synth(flc_tune_probe_t *p, const unsigned *mb, int n)
{
    for (int i = 0; i < n; i++) {
        double m = mb[i] < 3538 ? mb[i] : 3538;
        p[i].memory_mb = mb[i];
        p[i].ok = 1;
        p[i].time_s = 0.2 + 2.0 * 1769 / m;
        p[i].cost_usd = 2e-8 * mb[i] * p[i].time_s;
    }
}

TEST(fit_recovers_a_known_curve)
{
    flc_tune_probe_t p[4];
    unsigned mb[4] = {476, 1769, 10240, 6144};
    synth(p, mb, 4);
    flc_tune_model_t m;
    CHECK(flc_tune_fit(p, 4, &m) == 0, "4 probes fit");
    /* sat comes from a grid, so a and b are near, not exact */
    CHECK(fabs(m.a - 0.2) < 0.01 && fabs(m.b / 1769 - 2.0) < 0.02,
          "a = %.4f s (0.2), b = %.4f s at 1 vCPU (2.0)", m.a, m.b / 1769);
    CHECK(fabs(m.sat - 3538) < 3538 * 0.04, "CPU saturation at %.0f MB (3538, within the "
          "grid's 4%% steps)", m.sat);
    CHECK(fabs(flc_tune_time(&m, 1024) - (0.2 + 2.0 * 1769 / 1024)) < 0.01,
          "predicted time at 1024 MB %.4f s", flc_tune_time(&m, 1024));
    CHECK(fabs(flc_tune_time(&m, 8192) - 1.2) < 0.05, "and at 8192 MB %.3f s (1.2: no gain "
          "past 2 vCPUs)", flc_tune_time(&m, 8192));
    CHECK(fabs(m.k - 2e-8) < 1e-14, "cost per MB-second %.3g (2e-8)", m.k);
    flc_tune_probe_t one[1];
    synth(one, mb, 1);
    CHECK(flc_tune_fit(one, 1, &m) != 0, "one probe is not enough to fit");
}

TEST(pick_cheapest_meeting_deadline)
{
    flc_tune_model_t m = {.a = 0.2, .b = 2.0 * 1769, .sat = 0, .k = 2e-8};
    /* time <= 1.0 needs 2 x 1769 / 0.8 = 4422.5 MB: the next 64 MB step */
    unsigned pick = flc_tune_pick(&m, 128, 10240, 64, 1.0, 0);
    CHECK(pick == 4480, "deadline 1 s: %u MB (the smallest multiple of 64 over 4422.5)", pick);
    CHECK(flc_tune_pick(&m, 128, 10240, 64, 0, 0) == 128, "no deadline: the smallest size");
    CHECK(flc_tune_pick(&m, 128, 10240, 64, 0, 1000) == 1024, "sizes up to a failed 1000 MB "
          "are skipped");
    CHECK(flc_tune_pick(&m, 128, 2048, 64, 1.0, 0) == 0, "nothing in 128..2048 meets 1 s");
}

TEST(tune_recommends_for_a_small_job)
{
    if (geteuid() != 0)
        flc_t_skip("CPU quotas need root");
    flc_err_t e = {0};
    flc_cpucg_t *g = flc_cpucg_new(1024, 0, &e);
    if (g == NULL)
        flc_t_skip("%s", flc_err_msg(&e));
    flc_cpucg_free(g);
    static char out[1 << 18];
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "env -u FLCACHE_REDIS %s/flcache tune run mandelbrot --workers 1 "
             "--size 128 --iters 500 --quiet --memory 256..2048 --deadline 30 --budget 3 "
             "--json 2>/dev/null", flc_t_build_dir());
    int rc = flc_t_run(cmd, out, sizeof out);
    cJSON *j = cJSON_Parse(out);
    CHECK(rc == 0 && j != NULL, "flcache tune exits 0 with a JSON report (exit %d)", rc);
    double mb = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "recommended_mb"));
    int probes = cJSON_GetArraySize(cJSON_GetObjectItem(j, "probes"));
    double t = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "measured_time_s"));
    CHECK(probes >= 2 && probes <= 3, "%d probes within the budget of 3", probes);
    CHECK(mb >= 256 && mb <= 1769, "recommends %.0f MB: a small size, since 30 s is generous",
          mb);
    CHECK(t > 0 && t <= 30, "the recommendation was probed: %.3f s <= 30", t);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(j, "curve")) >= 4, "the curve is reported");
    cJSON_Delete(j);
    /* A deadline nothing meets: the 1-vCPU probe misses it, and the second
     * probe, at half a vCPU (885 MB, cli/cmd_tune.c first_sizes), is stopped
     * once it has run the deadline plus the first probe's start-up. */
    /* (in a subshell: flc_t_run adds 2>&1, and the error line must not
     * come before the JSON) */
    snprintf(cmd, sizeof cmd, "(env -u FLCACHE_REDIS %s/flcache tune run mandelbrot --workers 1 "
             "--size 256 --iters 2000 --quiet --memory 128..1769 --deadline 0.001 --budget 2 "
             "--json 2>/dev/null)", flc_t_build_dir());
    rc = flc_t_run(cmd, out, sizeof out);
    j = cJSON_Parse(out);
    const cJSON *p1 = cJSON_GetArrayItem(cJSON_GetObjectItem(j, "probes"), 1);
    double p0s = cJSON_GetNumberValue(cJSON_GetObjectItem(
        cJSON_GetArrayItem(cJSON_GetObjectItem(j, "probes"), 0), "probe_s"));
    double p1s = cJSON_GetNumberValue(cJSON_GetObjectItem(p1, "probe_s"));
    CHECK(rc == 1 && p1 != NULL, "no size meets 1 ms: exit 1 with 2 probes (exit %d)", rc);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(p1, "memory_mb")) == 885 &&
              cJSON_IsTrue(cJSON_GetObjectItem(p1, "cut_at_deadline")),
          "the second probe, at 885 MB (half a vCPU), was cut at the deadline");
    CHECK(p1s < p0s + 0.5, "after %.2f s, about the 1-vCPU probe's %.2f s start-up and job, "
          "not its whole run", p1s, p0s);
    cJSON_Delete(j);
    snprintf(cmd, sizeof cmd, "%s/flcache tune --memory 64..128 run mandelbrot",
             flc_t_build_dir());
    rc = flc_t_run(cmd, out, sizeof out);
    CHECK(rc == 2 && strstr(out, "--memory"), "a range below 128 MB is a usage error (exit %d)",
          rc);
}

/* With the job's own --job and FLCACHE_REDIS, tune stores its result and
 * the job's report draws it: a point per probe at the time and cost the
 * JSON reported, the pick marked. */
TEST(tune_record_in_report)
{
    if (geteuid() != 0)
        flc_t_skip("CPU quotas need root");
    flc_err_t e = {0};
    flc_cpucg_t *g = flc_cpucg_new(1024, 0, &e);
    if (g == NULL)
        flc_t_skip("%s", flc_err_msg(&e));
    flc_cpucg_free(g);
    flc_fixture_t fx;
    flc_fixture_start(&fx, 0);
    static char out[1 << 18], page[1 << 18];
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "FLCACHE_REDIS=%s %s/flcache tune run mandelbrot --workers 1 "
             "--size 128 --iters 300 --quiet --job sized --memory 256..2048 --budget 2 "
             "--json 2>/dev/null", fx.unix_url, flc_t_build_dir());
    int rc = flc_t_run(cmd, out, sizeof out);
    cJSON *j = cJSON_Parse(out);
    CHECK(rc == 0 && j != NULL, "flcache tune --job sized exits 0 with JSON (exit %d)", rc);
    snprintf(cmd, sizeof cmd, "FLCACHE_REDIS=%s %s/flcache report --job sized -o - 2>/dev/null",
             fx.unix_url, flc_t_build_dir());
    rc = flc_t_run(cmd, page, sizeof page);
    CHECK(rc == 0 && strstr(page, "<section id=\"tune\">"), "its report has the sizing "
          "section (exit %d)", rc);
    const cJSON *x;
    int n = 0;
    cJSON_ArrayForEach(x, cJSON_GetObjectItem(j, "probes")) {
        char t[96], c[96];
        double mb = cJSON_GetNumberValue(cJSON_GetObjectItem(x, "memory_mb"));
        snprintf(t, sizeof t, "data-mb=\"%g\" data-v=\"%.6g\"", mb,
                 cJSON_GetNumberValue(cJSON_GetObjectItem(x, "time_s")));
        snprintf(c, sizeof c, "data-mb=\"%g\" data-v=\"%.6g\"", mb,
                 cJSON_GetNumberValue(cJSON_GetObjectItem(x, "cost_usd")));
        EXPECT(strstr(page, t) && strstr(page, c), "probe %d on both plots: %s, %s", n, t, c);
        n++;
    }
    CHECK(n == 2, "2 probes (the budget)");
    char pick[64];
    snprintf(pick, sizeof pick, "<g class=\"pick\" data-mb=\"%g\">",
             cJSON_GetNumberValue(cJSON_GetObjectItem(j, "recommended_mb")));
    EXPECT(strstr(page, pick) != NULL, "the pick marked: %s", pick);
    cJSON_Delete(j);
    flc_fixture_stop(&fx);
}

TEST_LIST(TEST_ENTRY(fit_recovers_a_known_curve), TEST_ENTRY(pick_cheapest_meeting_deadline),
          TEST_ENTRY(tune_recommends_for_a_small_job), TEST_ENTRY(tune_record_in_report))
