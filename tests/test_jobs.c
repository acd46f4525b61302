/* `flcache run` (issue 19, jobs/): every workload on a few real flcache-fn
 * functions of the local pool against a real redis-server, at small sizes,
 * and its result check against one process: identical word counts, matmul
 * within its relative-error bound, identical convolution and Mandelbrot
 * pixels (static and dynamic tiles), identical forest predictions and an
 * accuracy within 3 points of python3-sklearn's forest. Plus the command
 * itself, once, with --json. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "base/event.h"
#include "harness.h"
#include "jobs/job.h"
#include "runtime/pool.h"

static flc_fixture_t fx;

/* Runs o on W functions of a fresh pool; fatal unless every function
 * succeeded. */
static void run(flc_job_opts_t *o, flc_job_report_t *rep)
{
    char fn[4096], job[64];
    snprintf(fn, sizeof fn, "%s/flcache-fn", flc_t_build_dir());
    snprintf(job, sizeof job, "t-%s-%d-%d", o->workload, o->workers, (int)getpid());
    o->job = job;
    o->redis = fx.unix_url;
    flc_pool_cfg_t pc;
    flc_pool_cfg_init(&pc);
    pc.fn_path = fn;
    pc.concurrency = (unsigned)o->workers;
    static const char *const env[] = {"OPENBLAS_NUM_THREADS=1", NULL};
    pc.env = env;
    flc_err_t e = {0};
    flc_pool_t *pool = flc_pool_new(&pc, &e);
    CHECK(pool != NULL, "the pool starts %s: %s", fn, flc_err_msg(&e));
    flc_store_t *s = flc_store_open(fx.unix_url, NULL, &e);
    CHECK(s != NULL, "the driver opens the cache: %s", flc_err_msg(&e));
    int rc = flc_job_run(o, pool, s, rep, &e);
    flc_pool_free(pool);
    flc_store_close(s);
    CHECK(rc == 0, "%s on %d functions ran: %s", o->workload, o->workers, flc_err_msg(&e));
    CHECK(rep->checked, "%s: the single-process check ran", o->workload);
    printf("# %s W=%d: %.1f ms, one process %.1f ms; check: %s\n", o->workload, o->workers,
           rep->wall_ms, rep->single_ms, rep->check);
}

static double metric(const flc_job_report_t *r, const char *name)
{
    return flc_ev_num(r->metrics, name, -1);
}

TEST(wordcount_counts_identical)
{
    flc_job_opts_t o;
    flc_job_opts_init(&o);
    o.workload = "wordcount";
    o.workers = 3;
    o.reducers = 2;
    o.size = 300000;
    flc_job_report_t r;
    run(&o, &r);
    CHECK(r.check_ok, "every word's count equals one process's: %s", r.check);
    EXPECT(r.nfns == 5, "3 maps and 2 reducers reported (%zu)", r.nfns);
    EXPECT(metric(&r, "corpus_bytes") == 300000, "the corpus was cut at 300000 bytes (%g)",
           metric(&r, "corpus_bytes"));
    EXPECT(metric(&r, "distinct_words") > 1000, "a real corpus: %g distinct words",
           metric(&r, "distinct_words"));
    EXPECT(metric(&r, "shuffle_bytes") > 0, "shuffle bytes reported (%g)",
           metric(&r, "shuffle_bytes"));
    const cJSON *top = cJSON_GetObjectItem(r.metrics, "top");
    EXPECT(cJSON_GetArraySize(top) == 10, "the top 10 words (%d)", cJSON_GetArraySize(top));
    EXPECT(r.fns[0].compute_ms > 0 && r.fns[0].peak_rss_kb > 0 && r.fns[0].cost_usd > 0,
           "map 0 has compute %.2f ms, peak %llu kB, cost %g", r.fns[0].compute_ms,
           (unsigned long long)r.fns[0].peak_rss_kb, r.fns[0].cost_usd);
    flc_job_report_clear(&r);
}

TEST(matmul_within_error_bound)
{
    int ws[] = {4, 3};
    for (int i = 0; i < 2; i++) {
        flc_job_opts_t o;
        flc_job_opts_init(&o);
        o.workload = "matmul";
        o.workers = ws[i];
        o.size = 250;
        flc_job_report_t r;
        run(&o, &r);
        double rel = metric(&r, "max_rel_error");
        CHECK(r.check_ok && rel >= 0 && rel <= 1e-4,
              "W=%d: max relative error %.3g against one sgemm is within 1e-4", ws[i], rel);
        EXPECT(metric(&r, "gflops") > 0 && metric(&r, "gflops_one_process") > 0,
               "GFLOP/s of both reported");
        flc_job_report_clear(&r);
    }
}

TEST(conv_pixels_identical)
{
    flc_job_opts_t o;
    flc_job_opts_init(&o);
    o.workload = "conv";
    o.workers = 3;
    o.size = 97;
    o.batch = 3;
    flc_job_report_t r;
    run(&o, &r);
    CHECK(r.check_ok, "the convolution equals one process's pixel for pixel: %s", r.check);
    flc_job_report_clear(&r);
}

TEST(mandelbrot_pixels_identical)
{
    char png[256];
    snprintf(png, sizeof png, "/tmp/flc-test-mandel-%d.png", (int)getpid());
    for (int dyn = 0; dyn <= 1; dyn++) {
        flc_job_opts_t o;
        flc_job_opts_init(&o);
        o.workload = "mandelbrot";
        o.workers = 3;
        o.size = 160;
        o.tiles = 4;
        o.iters = 300;
        o.dynamic = dyn;
        o.png = png;
        flc_job_report_t r;
        run(&o, &r);
        CHECK(r.check_ok, "%s tiles: the image equals one process's render: %s",
              dyn ? "dynamic" : "static", r.check);
        EXPECT(metric(&r, "tile_skew") > 1.5, "tile costs are skewed (max/mean %.2f)",
               metric(&r, "tile_skew"));
        flc_job_report_clear(&r);
    }
    FILE *f = fopen(png, "rb");
    unsigned char head[8] = {0};
    size_t n = f ? fread(head, 1, 8, f) : 0;
    if (f)
        fclose(f);
    unlink(png);
    CHECK(n == 8 && memcmp(head, "\x89PNG\r\n\x1a\n", 8) == 0, "a PNG file was written");
}

TEST(forest_predictions_identical_and_near_sklearn)
{
    flc_job_opts_t o;
    flc_job_opts_init(&o);
    o.workload = "forest";
    o.workers = 2;
    o.size = 2000;
    o.trees = 12;
    o.depth = 12;
    o.seed = 7;
    flc_job_report_t r;
    run(&o, &r);
    CHECK(r.check_ok, "the forest's predictions equal one process's: %s", r.check);
    double acc = metric(&r, "accuracy");
    EXPECT(acc > 0.7, "the forest learned Fashion-MNIST: accuracy %.4f", acc);
    const char *src = getenv("FLCACHE_SOURCE_DIR");
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s/jobs/forest_sklearn.py /usr/share/datasets/fashion-mnist "
             "%lld %g 12 12 7 2>&1", src ? src : ".", o.size, metric(&r, "test_samples"));
    flc_job_report_clear(&r);
    if (system("/usr/bin/python3 -c 'import sklearn' 2>/dev/null") != 0)
        flc_t_skip("python3-sklearn is not installed (scripts/setup.sh installs it)");
    int rc = flc_t_run(cmd, out, sizeof out);
    cJSON *j = rc == 0 ? cJSON_Parse(out) : NULL;
    CHECK(j != NULL, "sklearn's forest ran: %s", out);
    double sk = flc_ev_num(j, "accuracy", -1);
    cJSON_Delete(j);
    CHECK(fabs(sk - acc) <= 0.03, "accuracy %.4f within 3 points of sklearn's %.4f", acc, sk);
}

TEST(cli_run_json)
{
    char cmd[1024], out[65536];
    snprintf(cmd, sizeof cmd, "FLCACHE_REDIS=%s %s/flcache run conv --workers 2 --size 40 "
             "--batch 2 --json 2>&1", fx.unix_url, flc_t_build_dir());
    int rc = flc_t_run(cmd, out, sizeof out);
    CHECK(rc == 0, "flcache run conv exits 0: %s", out);
    cJSON *j = cJSON_Parse(strchr(out, '{') ? strchr(out, '{') : out);
    CHECK(j != NULL, "the output is one JSON object: %s", out);
    EXPECT(cJSON_IsTrue(cJSON_GetObjectItem(j, "check_ok")), "check_ok is true");
    EXPECT(cJSON_GetArraySize(cJSON_GetObjectItem(j, "functions")) == 2, "2 functions listed");
    cJSON_Delete(j);
    snprintf(cmd, sizeof cmd, "%s/flcache run nosuch 2>&1", flc_t_build_dir());
    rc = flc_t_run(cmd, out, sizeof out);
    EXPECT(rc == 2, "an unknown workload is a usage error (exit %d): %s", rc, out);
    snprintf(cmd, sizeof cmd, "%s/flcache run matmul --workers 0 2>&1", flc_t_build_dir());
    rc = flc_t_run(cmd, out, sizeof out);
    EXPECT(rc == 2 && strstr(out, "--workers needs an integer in 1..1024, not '0'") != NULL,
           "--workers 0 is a usage error naming the range (exit %d): %s", rc, out);
    snprintf(cmd, sizeof cmd, "%s/flcache run --help 2>&1", flc_t_build_dir());
    rc = flc_t_run(cmd, out, sizeof out);
    EXPECT(rc == 0 && strstr(out, "usage: flcache run") != NULL && strstr(out, "--dynamic"),
           "flcache run --help lists the options (exit %d)", rc);
    snprintf(cmd, sizeof cmd, "FLCACHE_REDIS=%s %s/flcache run matmul --workers 2 --size 9000 "
             "--quiet 2>&1", fx.unix_url, flc_t_build_dir());
    rc = flc_t_run(cmd, out, sizeof out);
    EXPECT(rc == 1 && strstr(out, "over 8192") != NULL,
           "matmul over 8192 is refused naming the limit (exit %d): %s", rc, out);
}

static void setup(void)
{
    flc_fixture_start(&fx, 0);
}

static void teardown(void)
{
    flc_fixture_stop(&fx);
}

static const flc_t_case_t cases[] = {
    TEST_ENTRY(wordcount_counts_identical), TEST_ENTRY(matmul_within_error_bound),
    TEST_ENTRY(conv_pixels_identical), TEST_ENTRY(mandelbrot_pixels_identical),
    TEST_ENTRY(forest_predictions_identical_and_near_sklearn), TEST_ENTRY(cli_run_json)};

int main(int argc, char **argv)
{
    return flc_t_main(argc, argv, cases, sizeof cases / sizeof cases[0], setup, teardown);
}
