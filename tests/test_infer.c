/* `flcache run infer` (issue 20 part 4, jobs/infer.c): an MLP's forward
 * pass split across real flcache-fn functions by layers (a pipeline over
 * micro-batches) and by columns (tensor-parallel, an all-gather through
 * the cache after every layer), checked against the same pass in one
 * process; and a model larger than one function's memory that runs once it
 * is split. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/event.h"
#include "harness.h"
#include "jobs/job.h"
#include "runtime/pool.h"

static flc_fixture_t fx;

/* Runs o on a fresh pool of functions with memory_mb; returns flc_job_run's
 * code. */
static int run(flc_job_opts_t *o, unsigned memory_mb, flc_job_report_t *rep, flc_err_t *e)
{
    char fn[4096], job[64];
    snprintf(fn, sizeof fn, "%s/flcache-fn", flc_t_build_dir());
    snprintf(job, sizeof job, "t-infer-%d-%d", o->workers, (int)getpid());
    o->job = job;
    o->redis = fx.unix_url;
    flc_pool_cfg_t pc;
    flc_pool_cfg_init(&pc);
    pc.fn_path = fn;
    pc.concurrency = (unsigned)o->workers;
    pc.memory_mb = memory_mb;
    static const char *const env[] = {"OPENBLAS_NUM_THREADS=1", NULL};
    pc.env = env;
    flc_pool_t *pool = flc_pool_new(&pc, e);
    CHECK(pool != NULL, "the pool starts %s: %s", fn, flc_err_msg(e));
    flc_store_t *s = flc_store_open(fx.unix_url, NULL, e);
    CHECK(s != NULL, "the driver opens the cache: %s", flc_err_msg(e));
    int rc = flc_job_run(o, pool, s, rep, e);
    flc_pool_free(pool);
    flc_store_close(s);
    printf("    # infer %s W=%d: %.1f ms, one process %.1f ms; %s; %s\n",
           o->split ? o->split : "layers", o->workers, rep->wall_ms, rep->single_ms, rep->check,
           rc ? flc_err_msg(e) : "ok");
    return rc;
}

static double metric(const flc_job_report_t *r, const char *name)
{
    return flc_ev_num(r->metrics, name, -1);
}

TEST(pipeline_matches_one_process)
{
    flc_job_opts_t o;
    flc_job_opts_init(&o);
    o.workload = "infer";
    o.workers = 3;
    o.size = 192;
    o.layers = 7; /* 2, 2, 3 layers per stage */
    o.batch = 13; /* 4 micro-batches of 3, 3, 3, 4 */
    o.micro = 4;
    flc_job_report_t r;
    flc_err_t e = {0};
    CHECK(run(&o, 1024, &r, &e) == 0, "a 3-stage pipeline ran");
    CHECK(r.checked && r.check_ok, "its output matches one process: %s", r.check);
    CHECK(metric(&r, "micro_batches") == 4 && metric(&r, "throughput_samples_s") > 0,
          "4 micro-batches, throughput %.1f samples/s", metric(&r, "throughput_samples_s"));
    flc_job_report_clear(&r);
}

TEST(columns_match_one_process)
{
    flc_job_opts_t o;
    flc_job_opts_init(&o);
    o.workload = "infer";
    o.split = "columns";
    o.workers = 3;
    o.size = 200; /* 66, 67, 67 columns */
    o.layers = 4;
    o.batch = 5;
    flc_job_report_t r;
    flc_err_t e = {0};
    CHECK(run(&o, 1024, &r, &e) == 0, "tensor-parallel over 3 functions ran");
    CHECK(r.checked && r.check_ok, "its output matches one process: %s", r.check);
    flc_job_report_clear(&r);
}

TEST(too_big_for_one_function)
{
    /* 16 layers of 1024 x 1024: 64 MB of weights. A 64 MB function
     * cannot hold them (the platform kills it); split over 4 it holds
     * 16 MB. */
    flc_job_opts_t o;
    flc_job_opts_init(&o);
    o.workload = "infer";
    o.workers = 1;
    o.size = 1024;
    o.layers = 16;
    o.batch = 4;
    flc_job_report_t r;
    flc_err_t e = {0};
    /* A sanitizer build's pool watches FLC_POOL_ASAN_MEM_SCALE x the memory
     * (its shadow memory counts as resident): the single function gets that
     * much less, so the model is too big for it in every build. */
    unsigned one = 64 / (flc_pool_sanitized() ? FLC_POOL_ASAN_MEM_SCALE : 1);
    int rc = run(&o, one, &r, &e);
    CHECK(rc != 0 && (strstr(e.msg, "memory") || strstr(e.msg, "crash")),
          "on one %u MB function (as the pool counts it) the 64 MB model fails: %s",
          one * (flc_pool_sanitized() ? FLC_POOL_ASAN_MEM_SCALE : 1), e.msg);
    flc_job_report_clear(&r);
    o.workers = 4;
    memset(&e, 0, sizeof e);
    CHECK(run(&o, 64, &r, &e) == 0 && r.check_ok, "split by layers over 4 it runs: %s",
          r.check);
    CHECK(metric(&r, "weights_mb_per_function") < 16.1, "each function holds %.1f MB",
          metric(&r, "weights_mb_per_function"));
    flc_job_report_clear(&r);
    o.split = "columns";
    memset(&e, 0, sizeof e);
    CHECK(run(&o, 64, &r, &e) == 0 && r.check_ok, "and split by columns over 4: %s", r.check);
    flc_job_report_clear(&r);
}

static void setup(void)
{
    flc_fixture_start(&fx, 0);
}

static void teardown(void)
{
    flc_fixture_stop(&fx);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(pipeline_matches_one_process),
                 TEST_ENTRY(columns_match_one_process), TEST_ENTRY(too_big_for_one_function))
