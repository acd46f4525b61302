/* `flcache query` and `flcache run` with --platform lambda|openwhisk (issue
 * 21), against the stand-ins of tests/platform_fakes.h: the same command
 * gives, through each fake, the answer it gives on the local pool, and the
 * fake really ran the functions (its log counts the invocations).
 *
 * - query: one small simulated job (6 clients, 4 model shards, a faulty
 *   client, 2 rounds) made once per runner on the local pool; then norms,
 *   similarity, outliers, clusters, contribution with --no-cache (so the
 *   shard workers inside the query function recompute the Gram partials:
 *   its bytes_read is compared too, which a cached answer would not match),
 *   accuracy, schedule --by accuracy, personalize and faults with --no-cache
 *   too (the evaluation kinds: their per-shard sums are cached, so a query
 *   after the local one would otherwise read what the local one left; the
 *   cache itself is test_query_evalcache's). Each is exactly one function
 *   invocation on the platform.
 * - run: wordcount (2 mappers, 2 reducers on 300 KB of the fortunes corpus)
 *   and mandelbrot (2 functions, 4x4 tiles, --png): the report's counts,
 *   check and metrics, and the image file byte for byte.
 *
 * What is not compared: measured times, costs and memory (wall_ms,
 * elapsed_ms, *_ms, cost_usd, peak_rss_kb, cold, the skews), and the
 * image's file name. Numbers are compared to 1e-9 relative (see
 * numbers_close for why that bound, and why they are in practice the same
 * bits: the case prints how many were). The fakes start once per case
 * (one per platform), each serving all the commands of that case.
 * The other platform cases are in test_platform.c and
 * test_platform_errors.c. */
#include <math.h>

#include <cjson/cJSON.h>

#include "tests/platform_fakes.h"

static flc_fixture_t fx;

/* Every file of this test is /tmp/flc-pjobs-<runner pid>-...: the local
 * baselines the cases share and each case's own outputs, all removed by the
 * runner's teardown, also after a failed case (cases are the runner's
 * children, so getppid() names it). */
static void runner_path(char *out, size_t cap, pid_t runner, const char *what)
{
    snprintf(out, cap, "/tmp/flc-pjobs-%d-%s", (int)runner, what);
}

/* The job the query cases ask about: simulated once per runner on the local
 * pool (whatever platform later asks, the data are the same keys). */
static void query_job(char *job, size_t cap)
{
    snprintf(job, cap, "pjobs-q-%d", (int)getppid());
    char mark[128], cmd[2048], out[16384], env[1024];
    runner_path(mark, sizeof mark, getppid(), "simulated");
    if (access(mark, F_OK) == 0)
        return;
    fake_env(env, sizeof env, "local", NULL, fx.unix_url);
    snprintf(cmd, sizeof cmd,
             "%s %s/flcache simulate --clients 6 --per-round 4 --rounds 2 --subset 1200 "
             "--test-subset 300 --shards 4 --faulty 0.2 --fault sign-flip --seed 7 "
             "--concurrency 4 --job %s --quiet",
             env, flc_t_build_dir(), job);
    int rc = flc_t_run(cmd, out, sizeof out);
    CHECK(rc == 0, "the queried job: simulate 2 rounds of 4 clients, 4 shards, on the local "
          "pool: exit 0 (%d: %.400s)", rc, rc ? out : "");
    FILE *fp = fopen(mark, "w");
    if (fp != NULL)
        fclose(fp);
}

/* Runs `flcache <args> --platform P` with its stdout into file; returns the
 * exit code, stderr in err. */
static int cli(const char *platform, const fake_t *f, const char *args, const char *file,
               char *err, size_t cap)
{
    char env[1024], cmd[4096];
    fake_env(env, sizeof env, platform, f, fx.unix_url);
    /* Grouped: flc_t_run's 2>&1 then sends stderr to err, not into file. */
    snprintf(cmd, sizeof cmd, "{ %s %s/flcache %s --platform %s > %s; }", env,
             flc_t_build_dir(), args, platform, file);
    return flc_t_run(cmd, err, cap);
}

/* The JSON a command printed into file; NULL (the text shown) when it is
 * not JSON. */
static cJSON *read_json(const char *file)
{
    FILE *fp = fopen(file, "rb");
    if (fp == NULL)
        return NULL;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    cJSON *j = cJSON_Parse(buf);
    if (j == NULL)
        fprintf(stderr, "# %s is not JSON: %.400s\n", file, buf);
    return j;
}

/* How two answers' numbers compare. A query function and the local command
 * run the same engine on the same keys; what can differ is the order in
 * which the shard workers (threads) add their Gram partials, each a sum of
 * OpenBLAS float blocks in double. Adding S float-valued doubles is exact
 * (so order-free) unless their exponents lie more than ~27 apart; otherwise
 * each of the S-1 additions rounds once, so a Gram entry moves by at most
 * S * 2^-53 * sum_s |G_ij,s| <= S * 1.1e-16 * sqrt(G_ii G_jj) (Cauchy-Schwarz
 * over the shards): a cosine by at most S * 1.1e-16, a norm relatively by
 * as much. 1e-9 relative leaves the derived scores (z-scores, shares, which
 * scale those errors by at most the job's condition) a wide margin while a
 * real difference (another round, client, sample count, a missing option)
 * is far larger. */
typedef struct cmp {
    int numbers, same_bits;
    double max_rel;
    char why[512];
} cmp_t;

static int numbers_close(double a, double b, cmp_t *c)
{
    c->numbers++;
    if (memcmp(&a, &b, sizeof a) == 0) {
        c->same_bits++;
        return 1;
    }
    double scale = fmax(1.0, fmax(fabs(a), fabs(b)));
    double rel = fabs(a - b) / scale;
    if (rel > c->max_rel)
        c->max_rel = rel;
    return rel <= 1e-9;
}

static int skipped(const char *key, const char *const *skip)
{
    for (int i = 0; key != NULL && skip[i] != NULL; i++)
        if (strcmp(key, skip[i]) == 0)
            return 1;
    return 0;
}

/* 1 when a and b hold the same members in the same order, but the keys in
 * skip (at any depth), with the same strings and close numbers; else 0 and
 * the first difference in c->why (at path). */
static int json_same(const cJSON *a, const cJSON *b, const char *const *skip, const char *path,
                     cmp_t *c)
{
    if (a == NULL || b == NULL || (a->type & 0xff) != (b->type & 0xff)) {
        snprintf(c->why, sizeof c->why, "%s: %s on the local pool, %s on the platform", path,
                 a == NULL ? "missing" : "present", b == NULL ? "missing" : "another type");
        return 0;
    }
    if (cJSON_IsNumber(a)) {
        if (numbers_close(a->valuedouble, b->valuedouble, c))
            return 1;
        snprintf(c->why, sizeof c->why, "%s: %.17g on the local pool, %.17g on the platform",
                 path, a->valuedouble, b->valuedouble);
        return 0;
    }
    if (cJSON_IsString(a)) {
        if (strcmp(a->valuestring, b->valuestring) == 0)
            return 1;
        snprintf(c->why, sizeof c->why, "%s: \"%.150s\" on the local pool, \"%.150s\" on the "
                 "platform", path, a->valuestring, b->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(a) && !cJSON_IsObject(a))
        return 1; /* true, false, null: the type said it */
    const cJSON *x = a->child, *y = b->child;
    for (int i = 0;; i++) {
        while (x != NULL && skipped(x->string, skip))
            x = x->next;
        while (y != NULL && skipped(y->string, skip))
            y = y->next;
        if (x == NULL && y == NULL)
            return 1;
        char sub[256];
        if (cJSON_IsArray(a))
            snprintf(sub, sizeof sub, "%s[%d]", path, i);
        else
            snprintf(sub, sizeof sub, "%s.%s", path, x ? x->string : y->string);
        if (x != NULL && y != NULL && cJSON_IsObject(a) && strcmp(x->string, y->string) != 0) {
            snprintf(c->why, sizeof c->why, "%s: member %s on the local pool, %s on the "
                     "platform", path, x->string, y->string);
            return 0;
        }
        if (!json_same(x, y, skip, sub, c))
            return 0;
        x = x->next;
        y = y->next;
    }
}

/* ---- query ---- */

static const char *const queries[] = {
    "norms --round 2 --no-cache",
    "similarity --round 2 --no-cache",
    "outliers --rounds 1:2 --no-cache",
    "clusters --round 2 --k 2 --seed 3 --no-cache",
    "contribution --no-cache",
    "accuracy --round 2 --samples 120 --no-cache",
    "schedule --by accuracy --k 2 --samples 120 --no-cache",
    "personalize --round 2 --k 2 --cluster 1 --seed 3 --no-cache",
    "faults --round 2 --samples 120 --no-cache",
    "history",
    NULL,
};

/* Measured, not computed: the answer's time. */
static const char *const query_skip[] = {"elapsed_ms", NULL};

static void same_queries(const char *platform, fake_t *f)
{
    char job[64], args[512], a[160], b[160], err[8192];
    query_job(job, sizeof job);
    for (int i = 0; queries[i] != NULL; i++) {
        snprintf(args, sizeof args, "query %s --job %s --json", queries[i], job);
        snprintf(a, sizeof a, "/tmp/flc-pjobs-%d-q%d-local.json", (int)getppid(), i);
        snprintf(b, sizeof b, "/tmp/flc-pjobs-%d-q%d-%s.json", (int)getppid(), i, platform);
        int rc = access(a, R_OK) == 0 ? 0 : cli("local", NULL, args, a, err, sizeof err);
        CHECK(rc == 0, "flcache query %s on the local pool: exit 0 (%d: %.300s)", queries[i],
              rc, rc ? err : "");
        int before = log_count(f, "OK", 0);
        rc = cli(platform, f, args, b, err, sizeof err);
        int ran = log_count(f, "OK", 0) - before;
        CHECK(rc == 0, "flcache query %s --platform %s: exit 0 (%d: %.400s)", queries[i],
              platform, rc, err);
        EXPECT(ran == 1, "the fake ran the query as 1 function invocation (%d)", ran);
        cJSON *la = read_json(a), *ra = read_json(b);
        cmp_t c = {0};
        int same = json_same(la, ra, query_skip, "answer", &c);
        const cJSON *rows = cJSON_GetObjectItem(la, "rows");
        EXPECT(same && cJSON_GetArraySize(rows) > 0,
               "query %s --platform %s: the local pool's answer (%d rows; %d numbers, %d the "
               "same bits, largest relative difference %.3g)%s%s",
               queries[i], platform, cJSON_GetArraySize(rows), c.numbers, c.same_bits,
               c.max_rel, same ? "" : ": ", c.why);
        if (strstr(queries[i], "--no-cache") != NULL)
            EXPECT(cJSON_GetNumberValue(cJSON_GetObjectItem(ra, "bytes_read")) > 0,
                   "the function's shard workers read the updates (bytes_read %.0f): "
                   "recomputed, not the cached partials",
                   cJSON_GetNumberValue(cJSON_GetObjectItem(ra, "bytes_read")));
        cJSON_Delete(la);
        cJSON_Delete(ra);
        unlink(b);
    }
}

/* ---- run ---- */

typedef struct workload {
    const char *name;
    const char *args; /* %s: the image file */
    int invocations;  /* the functions one run invokes */
} workload_t;

static const workload_t workloads[] = {
    {"wordcount", "run wordcount --workers 2 --reducers 2 --size 300000 --top 12", 4},
    {"mandelbrot", "run mandelbrot --workers 2 --size 192 --tiles 4 --iters 300 --png %s", 2},
    {NULL, NULL, 0},
};

/* Measured per run or naming the run's own file. */
static const char *const run_skip[] = {
    "wall_ms",     "single_ms",  "speedup",      "compute_ms", "comm_ms",
    "compute_comm_ratio",        "peak_rss_kb",  "cost_usd",   "duration_ms",
    "cold",        "tile_ms_max", "tile_ms_mean", "tile_skew", "function_skew",
    "image_file",  NULL};

static void same_runs(const char *platform, fake_t *f)
{
    char args[1024], a[160], b[160], pa[160], pb[160], err[8192], fmt[512];
    for (int i = 0; workloads[i].name != NULL; i++) {
        const workload_t *w = &workloads[i];
        snprintf(a, sizeof a, "/tmp/flc-pjobs-%d-%s-local.json", (int)getppid(), w->name);
        snprintf(pa, sizeof pa, "/tmp/flc-pjobs-%d-%s-local.png", (int)getppid(), w->name);
        snprintf(b, sizeof b, "/tmp/flc-pjobs-%d-%s-%s.json", (int)getppid(), w->name, platform);
        snprintf(pb, sizeof pb, "/tmp/flc-pjobs-%d-%s-%s.png", (int)getppid(), w->name,
                 platform);
        snprintf(fmt, sizeof fmt, "%s --seed 3 --json --quiet", w->args);
        snprintf(args, sizeof args, fmt, pa);
        int rc = access(a, R_OK) == 0 ? 0 : cli("local", NULL, args, a, err, sizeof err);
        CHECK(rc == 0, "flcache %s on the local pool: exit 0, checked (%d: %.300s)", w->name,
              rc, rc ? err : "");
        snprintf(args, sizeof args, fmt, pb);
        int before = log_count(f, "OK", 0);
        rc = cli(platform, f, args, b, err, sizeof err);
        int ran = log_count(f, "OK", 0) - before;
        CHECK(rc == 0, "flcache %s --platform %s: exit 0, its check passed (%d: %.400s)",
              w->name, platform, rc, err);
        EXPECT(ran == w->invocations, "the fake ran the %d functions of %s (%d)",
               w->invocations, w->name, ran);
        cJSON *la = read_json(a), *ra = read_json(b);
        cmp_t c = {0};
        int same = json_same(la, ra, run_skip, "report", &c);
        EXPECT(same && cJSON_IsTrue(cJSON_GetObjectItem(ra, "check_ok")),
               "%s --platform %s: the local pool's report (%s; %d numbers, %d the same "
               "bits)%s%s", w->name, platform,
               cJSON_GetStringValue(cJSON_GetObjectItem(ra, "check")), c.numbers,
               c.same_bits, same ? "" : ": ", c.why);
        if (strstr(w->args, "--png") != NULL) {
            char cmd[512], out[256];
            snprintf(cmd, sizeof cmd, "cmp %s %s", pa, pb);
            EXPECT(flc_t_run(cmd, out, sizeof out) == 0, "%s --platform %s: the image is "
                   "the local pool's, byte for byte (%s vs %s)", w->name, platform, pa, pb);
        }
        cJSON_Delete(la);
        cJSON_Delete(ra);
        unlink(b);
        unlink(pb);
    }
}

/* What a remote platform cannot do is refused before any function runs,
 * saying why (the train and simulate refusals are in test_cli_options.c):
 * a personalized model written to a file (a function's result carries no
 * model), and a run whose cache is a private redis-server of this process
 * (no function elsewhere reaches it). */
TEST(refusals)
{
    char job[64], env[1024], cmd[4096], out[8192], file[128];
    fake_t none = {.url = "http://127.0.0.1:9"}; /* never contacted: refused first */
    query_job(job, sizeof job);
    snprintf(file, sizeof file, "/tmp/flc-pjobs-%d-model.f32", (int)getppid());
    fake_env(env, sizeof env, "lambda", &none, fx.unix_url);
    snprintf(cmd, sizeof cmd, "%s %s/flcache query personalize --job %s --round 2 --k 2 "
             "--cluster 0 --out %s --platform lambda", env, flc_t_build_dir(), job, file);
    int rc = flc_t_run(cmd, out, sizeof out);
    EXPECT(rc == 2 && strstr(out, "--out needs the model here: run personalize with "
                             "--platform local") != NULL && access(file, F_OK) != 0,
           "query personalize --out --platform lambda: exit 2 (%d), naming --out and the way "
           "out, no file: %.300s", rc, out);
    fake_env(env, sizeof env, "openwhisk", &none, fx.unix_url);
    snprintf(cmd, sizeof cmd, "env -u FLCACHE_REDIS %s %s/flcache run mandelbrot --workers 2 "
             "--size 64 --tiles 2 --quiet --platform openwhisk",
             strchr(env, ' ') + 1, flc_t_build_dir());
    rc = flc_t_run(cmd, out, sizeof out);
    EXPECT(rc == 1 && strstr(out, "the functions run on openwhisk, which cannot reach the "
                             "private redis-server of this run: set FLCACHE_REDIS") != NULL,
           "run --platform openwhisk without FLCACHE_REDIS: exit 1 (%d), saying to set "
           "FLCACHE_REDIS: %.300s", rc, out);
}

TEST(lambda_same_answers)
{
    fake_t f;
    lambda_start(&f, NULL, NULL, NULL);
    same_queries("lambda", &f);
    same_runs("lambda", &f);
    EXPECT(log_count(&f, "FAIL", 1) == 0, "botocore accepted every signature");
    fake_stop(&f);
}

TEST(openwhisk_same_answers)
{
    fake_t f;
    ow_start(&f, NULL, NULL, NULL);
    same_queries("openwhisk", &f);
    same_runs("openwhisk", &f);
    fake_stop(&f);
}

static void setup(void)
{
    flc_fixture_start(&fx, 0);
}

static void teardown(void)
{
    char cmd[256], out[256];
    snprintf(cmd, sizeof cmd, "rm -f /tmp/flc-pjobs-%d-*", (int)getpid());
    flc_t_run(cmd, out, sizeof out);
    flc_fixture_stop(&fx);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(lambda_same_answers),
                 TEST_ENTRY(openwhisk_same_answers), TEST_ENTRY(refusals))
