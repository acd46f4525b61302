/* `flcache report`: the SVG pieces (round-number ticks, escaping of client
 * ids that hold markup), classical MDS against known distances, the page
 * of a 100-client x 50-round job under 500 KB, and the page of a small
 * simulated job with faulty clients opened in a real browser: Debian's
 * chromium, headless, whose DOM must hold one plot per section with a mark
 * per round and client, whose console must stay silent, and whose
 * screenshot must not be blank (tests/report_check.py reads both). Without
 * chromium the browser case skips, saying so; under CI=true it fails. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/clock.h"
#include "clients/sim.h"
#include "report/report.h"
#include "report/svg.h"
#include "cache/store_ops.h"
#include "cache/store_tune.h"
#include "tests/harness.h"

static flc_fixture_t fx;
static char g_out[65536];

static size_t count(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

TEST(ticks_at_round_numbers)
{
    double t[16];
    int n = flc_svg_ticks(0, 1, 5, 0, t, 16);
    CHECK(n == 6 && fabs(t[1] - 0.2) < 1e-12 && fabs(t[5] - 1) < 1e-12,
          "0..1 in about 5 parts: 6 ticks 0, 0.2, .. 1 (got %d, t1 %g)", n, n > 1 ? t[1] : -1);
    n = flc_svg_ticks(1, 50, 8, 1, t, 16);
    CHECK(n == 10 && t[0] == 5 && t[9] == 50, "rounds 1..50: ticks 5, 10, .. 50 (got %d: %g..%g)",
          n, t[0], t[n - 1]);
    n = flc_svg_ticks(1, 3, 8, 1, t, 16);
    CHECK(n == 3 && t[0] == 1 && t[2] == 3, "rounds 1..3: integer ticks 1, 2, 3, never 1.5");
    n = flc_svg_ticks(0.000013, 0.000041, 5, 0, t, 16);
    char lab[32];
    flc_svg_tick_label(lab, sizeof lab, t[0], flc_svg_step(0.000013, 0.000041, 5, 0));
    CHECK(n == 6 && strcmp(lab, "1.5e-05") == 0 && fabs(t[5] - 4e-5) < 1e-15,
          "dollars 1.3e-5..4.1e-5: 6 ticks 5e-6 apart from 1.5e-05 (got %d from %s)", n, lab);
    flc_svg_tick_label(lab, sizeof lab, 0.30000000000000004, 0.1);
    CHECK(strcmp(lab, "0.3") == 0, "0.1 steps are labelled with one decimal (0.3, got %s)", lab);
}

TEST(client_ids_with_markup_are_text)
{
    const char *rows[] = {"c1", "<script>alert(1)</script>", "a\"b'&c"};
    unsigned char mk[] = {0, 1, 0};
    double cols[] = {1, 2};
    double v[] = {0.1, 0.2, 0.9, NAN, 0.3, 0.4};
    flc_html_t h = {0};
    flc_svg_heat(&h, "t<i>", rows, mk, 3, cols, 2, v, 1, "round", "client");
    flc_svg_hbars(&h, "bars", rows, v, mk, 3, "x");
    CHECK(!flc_html_failed(&h) && h.p, "the plots were written");
    EXPECT(strstr(h.p, "<script") == NULL && strstr(h.p, "<i>") == NULL,
           "no markup of the ids or the title reaches the page");
    EXPECT(strstr(h.p, "&lt;script&gt;alert(1)&lt;/script&gt;") != NULL,
           "the id is shown escaped");
    EXPECT(strstr(h.p, "a&quot;b&#39;&amp;c") != NULL, "quotes and & are entities");
    EXPECT(count(h.p, "<rect class=\"h") == 5, "5 heat cells for 5 finite values (%zu)",
           count(h.p, "<rect class=\"h"));
    EXPECT(count(h.p, "class=\"truth\"") == 2, "the faulty row is marked in both plots (%zu)",
           count(h.p, "class=\"truth\""));
    flc_html_free(&h);
}

TEST(mds_keeps_distances)
{
    /* 6 points in a plane embedded in 5-D: MDS must give back their
     * pairwise distances exactly (up to rotation). */
    enum { N = 6, D = 5 };
    double P[N][2] = {{0, 0}, {3, 0}, {0, 4}, {-2, 1}, {5, 5}, {1, -3}};
    double V[N][D], G[N * N], xy[2 * N], expl = 0;
    for (int i = 0; i < N; i++)
        for (int k = 0; k < D; k++) /* x along (1,1,0,0,1)/sqrt3, y along (0,0,1,-1,0)/sqrt2 */
            V[i][k] = P[i][0] * (k == 0 || k == 1 || k == 4) / sqrt(3) +
                      P[i][1] * (k == 2 ? 1 : k == 3 ? -1 : 0) / sqrt(2) + 7;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            G[i * N + j] = 0;
            for (int k = 0; k < D; k++)
                G[i * N + j] += V[i][k] * V[j][k];
        }
    flc_err_t e = {0};
    CHECK(flc_report_mds(G, N, N, xy, &expl, &e) == FLC_OK, "MDS of 6 points: %s", e.msg);
    double worst = 0;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            double d0 = hypot(P[i][0] - P[j][0], P[i][1] - P[j][1]);
            double d1 = hypot(xy[2 * i] - xy[2 * j], xy[2 * i + 1] - xy[2 * j + 1]);
            worst = fmax(worst, fabs(d0 - d1));
        }
    CHECK(worst < 1e-9, "pairwise distances kept (worst error %.2g)", worst);
    CHECK(fabs(expl - 1) < 1e-9, "two axes hold all the spread of planar points (%.6f)", expl);
    CHECK(flc_report_mds(G, N, 0, xy, NULL, &e) == FLC_EINVAL, "no points: FLC_EINVAL");
}

/* 100 clients, all of them in each of 50 rounds, 10 faulty: the largest
 * page the issue asks about, from a real (synthetic-update) simulation. */
TEST(page_100x50_under_500kb)
{
    flc_sim_cfg_t c;
    flc_sim_cfg_init(&c);
    c.job = "big";
    c.clients = 100;
    c.per_round = 100;
    c.rounds = 50;
    c.faulty = 0.1;
    c.synthetic_params = 64;
    c.redis = fx.unix_url;
    flc_sim_inproc_t threads = {.threads = 4};
    c.invoke_user = &threads;
    flc_sim_result_t res;
    memset(&res, 0, sizeof res);
    flc_err_t e = {0};
    double t0 = flc_now_s();
    int rc = flc_sim_cfg_finish(&c, &e);
    rc = rc ? rc : flc_sim_run(&c, NULL, NULL, &res, &e);
    size_t nr = res.nrounds;
    flc_sim_result_free(&res);
    CHECK(rc == FLC_OK && nr == 50, "simulated 100 clients x 50 rounds in %.1f s: %s",
          (flc_now_s() - t0), rc ? e.msg : "ok");
    flc_store_t *s = flc_store_open(fx.unix_url, NULL, &e);
    CHECK(s != NULL, "store: %s", e.msg);
    flc_report_opts_t o = {.job = "big", .seed = 1};
    flc_html_t page = {0};
    t0 = flc_now_s();
    rc = flc_report_write(s, &o, &page, &e);
    CHECK(rc == FLC_OK, "report written in %.1f s: %s", (flc_now_s() - t0),
          rc ? e.msg : "ok");
    CHECK(page.len < 500 * 1024, "page is %.1f KB, under 500 KB", (double)page.len / 1024);
    EXPECT(count(page.p, "<rect class=\"h") == 5000, "heat map: 5000 cells (%zu)",
           count(page.p, "<rect class=\"h"));
    EXPECT(count(page.p, "<g class=\"stack\"") == 150,
           "participation, time and cost: 50 stacks each (%zu)",
           count(page.p, "<g class=\"stack\""));
    EXPECT(strstr(page.p, "No accuracy recorded") != NULL,
           "a job without evaluation says so instead of plotting zeros");
    flc_html_free(&page);
    o.job = "nosuch";
    rc = flc_report_write(s, &o, &page, &e);
    CHECK(rc == FLC_ENOTFOUND && strstr(e.msg, "nosuch"), "unknown job: FLC_ENOTFOUND naming it "
          "(%s)", e.msg);
    flc_html_free(&page);
    flc_store_close(s);
}

/* A training job's page: its five sections, a point per epoch and series. */
TEST(train_job_page)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "FLCACHE_REDIS=%s %s/flcache train --workers 2 --epochs 2 "
             "--subset 1000 --test-subset 300 --job trainjob --quiet", fx.unix_url,
             flc_t_build_dir());
    int rc = flc_t_run(cmd, g_out, sizeof g_out);
    CHECK(rc == 0, "flcache train ran (exit %d)", rc);
    CHECK(strstr(g_out, "report: flcache report --job trainjob -o trainjob.html") != NULL,
          "train printed the report command at its end");
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(fx.unix_url, NULL, &e);
    CHECK(s != NULL, "store: %s", e.msg);
    flc_report_opts_t o = {.job = "trainjob"};
    flc_html_t page = {0};
    rc = flc_report_write(s, &o, &page, &e);
    flc_store_close(s);
    CHECK(rc == FLC_OK, "report of the training job: %s", rc ? e.msg : "ok");
    const char *ids[] = {"loss", "accuracy", "steps", "split", "cost"};
    for (int i = 0; i < 5; i++) {
        char want[64];
        snprintf(want, sizeof want, "<section id=\"%s\">", ids[i]);
        EXPECT(strstr(page.p, want) != NULL, "section %s is there", ids[i]);
    }
    /* lines: loss 2 series, accuracy 1, step time 3, cost 2, over 2 epochs */
    EXPECT(count(page.p, "<circle class=") == 16, "16 points: 8 series x 2 epochs (%zu)",
           count(page.p, "<circle class="));
    EXPECT(count(page.p, "<g class=\"stack\"") == 4,
           "compute/communication: a bar per epoch (worker 0) and one per worker (2): %zu",
           count(page.p, "<g class=\"stack\""));
    EXPECT(strstr(page.p, "compute and communication per worker") != NULL,
           "the per-worker split is drawn from what train stored");
    EXPECT(strstr(page.p, "training job") && !strstr(page.p, "id=\"outliers\""),
           "it is told a training job: no client sections");
    flc_html_free(&page);
}

/* A job of outside clients with update records only (no update vectors,
 * no accuracy), whose updates carry a staleness as an asynchronous round
 * would: the staleness section draws it, and every section without its
 * data says so instead of failing the page. */
TEST(staleness_and_absent_sections)
{
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(fx.unix_url, NULL, &e);
    CHECK(s != NULL, "store: %s", e.msg);
    const char *clients[] = {"a1", "a2", "a3"};
    for (uint32_t r = 1; r <= 3; r++) {
        CHECK(flc_store_round_begin(s, "async", 1, r, 0, clients, 3) == FLC_OK,
              "round %u begun: %s", r, flc_store_errstr(s));
        Flcache__RoundMeta m = FLCACHE__ROUND_META__INIT;
        m.job = "async", m.round = r, m.rule = "fedbuff", m.status = "closed";
        m.round_ms = 100 * r, m.wait_ms = 60, m.merge_ms = 10;
        CHECK(flc_store_put_round_meta(s, &m) == FLC_OK, "RoundMeta %u", r);
        for (int c = 0; c < 3; c++) {
            Flcache__ModelUpdate u = FLCACHE__MODEL_UPDATE__INIT;
            Flcache__ModelUpdate__MetricsEntry me = FLCACHE__MODEL_UPDATE__METRICS_ENTRY__INIT;
            Flcache__ModelUpdate__MetricsEntry *mp = &me;
            me.key = "staleness", me.value = (double)(c * r);
            u.job = "async", u.round = r, u.client = (char *)clients[c];
            u.status = "accepted", u.n_metrics = 1, u.metrics = &mp;
            CHECK(flc_store_put_update_meta(s, &u) == FLC_OK, "update record %u/%s", r,
                  clients[c]);
        }
    }
    flc_report_opts_t o = {.job = "async"};
    flc_html_t page = {0};
    int rc = flc_report_write(s, &o, &page, &e);
    flc_store_close(s);
    CHECK(rc == FLC_OK, "the page is made without update vectors: %s", rc ? e.msg : "ok");
    const char *sec = strstr(page.p, "<section id=\"staleness\">");
    CHECK(sec != NULL, "staleness section");
    EXPECT(strstr(sec, "data-kind=\"line\"") != NULL && count(sec, "<circle class=") == 6,
           "staleness drawn: mean and max over 3 rounds, 6 points (%zu)",
           count(sec, "<circle class="));
    EXPECT(strstr(sec, "max staleness, round 3: 6") != NULL, "round 3's max is 2 x 3 = 6");
    EXPECT(count(page.p, "<p class=\"absent\">") >= 5,
           "accuracy, loss, cost, outliers, map say why they are empty (%zu)",
           count(page.p, "<p class=\"absent\">"));
    EXPECT(strstr(page.p, "No accuracy recorded") &&
               strstr(page.p, "No round&#39;s updates could be scored") &&
               strstr(page.p, "No map"),
           "each in a sentence naming the gap");
    EXPECT(count(page.p, "<g class=\"stack\"") == 6, "participation and time still drawn");
    flc_html_free(&page);
}

/* A job sized by `flcache tune`: its tune record (tune's JSON, stored by
 * hand here with known values) becomes the sizing section, alone when the
 * job has no rounds: a point per probe at its measured time and cost, the
 * model as a line, the pick and the deadline as marks. */
TEST(tune_section)
{
    static const char rec[] =
        "{\"mode\":\"tune\",\"memory_lo\":128,\"memory_hi\":4096,\"deadline_s\":1.5,"
        "\"probes\":[{\"memory_mb\":1769,\"ok\":true,\"time_s\":0.7,\"cost_usd\":2.1e-05,"
        "\"probe_s\":1.1},{\"memory_mb\":476,\"ok\":true,\"time_s\":2.25,"
        "\"cost_usd\":1.8e-05,\"probe_s\":2.6},{\"memory_mb\":896,\"ok\":true,"
        "\"time_s\":1.3,\"cost_usd\":1.9e-05,\"probe_s\":1.7},{\"memory_mb\":128,"
        "\"ok\":false,\"cut_at_deadline\":true,\"time_s\":2.4,\"cost_usd\":0,"
        "\"probe_s\":2.4}],\"probe_time_s\":7.8,"
        "\"model\":{\"a_s\":0.2,\"b_s_at_1_vcpu\":0.5,\"saturation_mb\":0,"
        "\"k_usd_per_mb_s\":1.6e-8,\"rms_rel_error\":0.03},"
        "\"curve_fine\":[{\"memory_mb\":128,\"time_s\":7.1,\"cost_usd\":1.5e-05},"
        "{\"memory_mb\":1024,\"time_s\":1.06,\"cost_usd\":1.7e-05},"
        "{\"memory_mb\":4096,\"time_s\":0.42,\"cost_usd\":2.7e-05}],"
        "\"recommended_mb\":896,\"predicted_time_s\":1.19,\"predicted_cost_usd\":1.7e-05,"
        "\"measured_time_s\":1.3,\"measured_cost_usd\":1.9e-05}";
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(fx.unix_url, NULL, &e);
    CHECK(s != NULL, "store: %s", e.msg);
    CHECK(flc_store_tune_put(s, "sized", rec, strlen(rec)) == FLC_OK, "tune record stored: %s",
          flc_store_errstr(s));
    flc_report_opts_t o = {.job = "sized"};
    flc_html_t page = {0};
    int rc = flc_report_write(s, &o, &page, &e);
    CHECK(rc == FLC_OK, "a job with only a tune record gets a page: %s", rc ? e.msg : "ok");
    const char *sec = strstr(page.p, "<section id=\"tune\">");
    CHECK(sec != NULL, "the sizing section is there");
    EXPECT(count(sec, "data-kind=\"scatter\"") == 2, "two plots: time and cost (%zu)",
           count(sec, "data-kind=\"scatter\""));
    const char *want[] = {"data-mb=\"1769\" data-v=\"0.7\"", "data-mb=\"476\" data-v=\"2.25\"",
                          "data-mb=\"896\" data-v=\"1.3\"", "data-mb=\"1769\" data-v=\"2.1e-05\"",
                          "data-mb=\"476\" data-v=\"1.8e-05\"",
                          "data-mb=\"896\" data-v=\"1.9e-05\""};
    for (int i = 0; i < 6; i++)
        EXPECT(strstr(sec, want[i]) != NULL, "%s probe point %s", i < 3 ? "time" : "cost",
               want[i]);
    EXPECT(count(sec, "class=\"c1 probe\"") == 6, "6 measured probe points: 3 per plot (%zu)",
           count(sec, "class=\"c1 probe\""));
    EXPECT(count(sec, "class=\"flt probe cut\" data-mb=\"128\" data-v=\"2.4\"") == 1,
           "the probe cut at the deadline: a ring on the time plot only");
    EXPECT(count(sec, "data-series=\"model\"") == 2, "the model's curve on both plots");
    EXPECT(count(sec, "<g class=\"pick\" data-mb=\"896\">") == 2,
           "the recommendation (896 MB) marked on both plots");
    EXPECT(count(sec, "class=\"mark\" data-v=\"1.5\"") == 1,
           "the deadline (1.5 s) on the time plot");
    EXPECT(strstr(sec, "896 MB: predicted 1.190 s") != NULL, "the choice in words");
    EXPECT(strstr(page.p, "<section id=\"loss\">") == NULL, "no job sections without rounds");
    flc_html_free(&page);
    CHECK(flc_store_tune_put(s, "sized", "{not json", 9) == FLC_OK, "a broken record");
    rc = flc_report_write(s, &o, &page, &e);
    EXPECT(rc == FLC_OK && strstr(page.p, "could not be read") != NULL,
           "a record that is not JSON: the section says so (%s)", rc ? e.msg : "ok");
    flc_html_free(&page);
    flc_store_close(s);
}

/* What a user sees when the page cannot be made. */
TEST(cli_errors)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "env -u FLCACHE_REDIS %s/flcache report --job nosuch -o "
             "/tmp/flc-report-never.html", flc_t_build_dir());
    int rc = flc_t_run(cmd, g_out, sizeof g_out);
    CHECK(rc == 1 && strstr(g_out, "unknown job 'nosuch'") && strstr(g_out, "FLCACHE_REDIS"),
          "no FLCACHE_REDIS: exit 1, the job is unknown to the private cache, and the "
          "message says to set FLCACHE_REDIS (exit %d: %.200s)", rc, g_out);
    CHECK(access("/tmp/flc-report-never.html", F_OK) != 0, "no page was written");
    snprintf(cmd, sizeof cmd, "FLCACHE_REDIS=%s %s/flcache report --job nosuch",
             fx.unix_url, flc_t_build_dir());
    rc = flc_t_run(cmd, g_out, sizeof g_out);
    CHECK(rc == 1 && strstr(g_out, "unknown job 'nosuch'") && !strstr(g_out, "FLCACHE_REDIS"),
          "an unknown job in a real cache: exit 1 naming it (%.200s)", g_out);
    snprintf(cmd, sizeof cmd, "%s/flcache report -o x.html", flc_t_build_dir());
    rc = flc_t_run(cmd, g_out, sizeof g_out);
    CHECK(rc == 2 && strstr(g_out, "missing --job J"), "no --job: usage error, exit 2 (%d)",
          rc);
}

/* The chromium command of the issue: headless, no sandbox (root in CI), no
 * GPU, no background networking, a fresh profile, logging to stderr. */
static int chromium(const char *bin, const char *dir, const char *what, const char *url,
                    const char *out, const char *log)
{
    int shot = strcmp(what, "shot") == 0;
    char cmd[4096];
    /* In a subshell: flc_t_run appends 2>&1, which must not take the log. */
    snprintf(cmd, sizeof cmd, "(timeout 60 %s --headless --no-sandbox --disable-gpu "
             "--disable-background-networking --user-data-dir=%s/profile-%s "
             "--enable-logging=stderr --hide-scrollbars --window-size=800,1200 %s%s %s "
             "%s%s 2>%s)", bin, dir, what, shot ? "--screenshot=" : "--dump-dom",
             shot ? out : "", url, shot ? "" : ">", shot ? "" : out, log);
    return flc_t_run(cmd, g_out, sizeof g_out);
}

static const char *find_chromium(void)
{
    static const char *const bins[] = {"/usr/bin/chromium", "/usr/bin/chromium-browser", NULL};
    for (int i = 0; bins[i]; i++)
        if (access(bins[i], X_OK) == 0)
            return bins[i];
    return NULL;
}

TEST(browser_opens_simulated_job)
{
    const char *bin = find_chromium();
    if (bin == NULL) {
        const char *ci = getenv("CI");
        CHECK(!(ci && strcmp(ci, "true") == 0), "CI=true needs chromium (scripts/setup.sh "
              "installs it): no /usr/bin/chromium");
        flc_t_skip("no chromium (/usr/bin/chromium): `apt-get install chromium` or "
                   "scripts/setup.sh; under CI=true this fails");
    }
    char dir[] = "/tmp/flc-report-XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "temp dir");
    const char *src = getenv("FLCACHE_SOURCE_DIR");
    char cmd[4096], page[600], dom[600], shot[600], log[600], check[1200];
    snprintf(page, sizeof page, "%s/job.html", dir);
    snprintf(dom, sizeof dom, "%s/dom.html", dir);
    snprintf(shot, sizeof shot, "%s/shot.png", dir);
    snprintf(log, sizeof log, "%s/chromium.log", dir);
    snprintf(check, sizeof check, "/usr/bin/python3 %s/tests/report_check.py",
             src ? src : ".");
    /* A small simulated job with faulty clients; every client in every
     * round, so the expected marks are rounds x clients exactly. */
    enum { R = 5, N = 10 };
    snprintf(cmd, sizeof cmd, "FLCACHE_REDIS=%s %s/flcache simulate --clients %d "
             "--per-round %d --rounds %d --faulty 0.2 --strategy median --subset 2000 "
             "--test-subset 500 --inproc --quiet --job webjob", fx.unix_url,
             flc_t_build_dir(), N, N, R);
    int rc = flc_t_run(cmd, g_out, sizeof g_out);
    CHECK(rc == 0, "simulate ran (exit %d)", rc);
    CHECK(strstr(g_out, "report: flcache report --job webjob -o webjob.html") != NULL,
          "simulate printed the report command at its end");
    snprintf(cmd, sizeof cmd, "FLCACHE_REDIS=%s %s/flcache report --job webjob -o %s",
             fx.unix_url, flc_t_build_dir(), page);
    rc = flc_t_run(cmd, g_out, sizeof g_out);
    struct stat sb;
    long long size = rc == 0 && stat(page, &sb) == 0 ? (long long)sb.st_size : -1;
    g_out[strcspn(g_out, "\n")] = '\0';
    CHECK(size > 10000, "flcache report wrote %s (%lld bytes): %.200s", page, size, g_out);
    char url[700];
    snprintf(url, sizeof url, "file://%s", page);
    double t0 = flc_now_s();
    rc = chromium(bin, dir, "dom", url, dom, log);
    CHECK(rc == 0, "chromium --dump-dom exit %d (%.1f s)", rc, (flc_now_s() - t0));
    snprintf(cmd, sizeof cmd, "%s dom %s %d %d", check, dom, R, N);
    rc = flc_t_run(cmd, g_out, sizeof g_out);
    printf("%s", g_out);
    EXPECT(rc == 0, "the DOM has one plot per section, a mark per round and client");
    snprintf(cmd, sizeof cmd, "%s console %s", check, log);
    rc = flc_t_run(cmd, g_out, sizeof g_out);
    printf("%s", g_out);
    EXPECT(rc == 0, "no console errors while the page loaded");
    t0 = flc_now_s();
    rc = chromium(bin, dir, "shot", url, shot, log);
    CHECK(rc == 0, "chromium --screenshot exit %d (%.1f s)", rc, (flc_now_s() - t0));
    snprintf(cmd, sizeof cmd, "%s png %s 20", check, shot);
    rc = flc_t_run(cmd, g_out, sizeof g_out);
    printf("%s", g_out);
    EXPECT(rc == 0, "the screenshot is not blank");
    /* The console check can fail: a page that logs an error is caught. */
    char bad[600];
    snprintf(bad, sizeof bad, "%s/bad.html", dir);
    FILE *f = fopen(bad, "w");
    CHECK(f != NULL, "probe page");
    fputs("<!DOCTYPE html><p>x</p><script>console.error('probe')</script>", f);
    fclose(f);
    snprintf(url, sizeof url, "file://%s", bad);
    rc = chromium(bin, dir, "bad", url, dom, log);
    snprintf(cmd, sizeof cmd, "%s console %s", check, log);
    int bad_rc = flc_t_run(cmd, g_out, sizeof g_out);
    EXPECT(rc == 0 && bad_rc == 1, "a page that logs a console error is caught by the same "
           "check (chromium exit %d, check exit %d: %.200s)", rc, bad_rc, g_out);
    snprintf(cmd, sizeof cmd, getenv("KEEP") ? "true %s" : "rm -rf %s", dir);
    if (system(cmd) != 0)
        printf("# could not remove %s\n", dir);
}

static void setup(void)
{
    flc_fixture_start(&fx, 0);
}

static void teardown(void)
{
    flc_fixture_stop(&fx);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(ticks_at_round_numbers),
                 TEST_ENTRY(client_ids_with_markup_are_text), TEST_ENTRY(mds_keeps_distances),
                 TEST_ENTRY(page_100x50_under_500kb), TEST_ENTRY(train_job_page),
                 TEST_ENTRY(staleness_and_absent_sections), TEST_ENTRY(tune_section),
                 TEST_ENTRY(cli_errors),
                 TEST_ENTRY(browser_opens_simulated_job))
