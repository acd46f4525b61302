/* --platform lambda|openwhisk end to end (issue 21), against the stand-ins
 * of tests/platform_fakes.h, which check what the services check
 * (tests/fake_lambda.py: SigV4 verified by botocore, a real flcache-fn
 * behind a fake Runtime API; tests/fake_openwhisk.py: basic auth, blocking
 * invocations, activation records, flcache-fn as a native action):
 *   - the same simulate and train give the same models (the exported global
 *     model byte for byte; the training checksum) on the local pool and
 *     through each platform, with their costs from the platform's records;
 *   - `flcache package` zips run: the Lambda zip's bootstrap serves the
 *     fake's Runtime API, the OpenWhisk zip's exec answers an event.
 * The failure paths and bills are in test_platform_errors.c. */
#include "base/event.h"
#include "tests/platform_fakes.h"

static flc_fixture_t fx;

/* A small simulate of job on platform; its global model exported to npy. */
static int simulate(const char *platform, const fake_t *f, const char *job, const char *npy,
                    char *out, size_t cap)
{
    char env[1024], cmd[4096];
    fake_env(env, sizeof env, platform, f, fx.unix_url);
    snprintf(cmd, sizeof cmd,
             "%s %s/flcache simulate --clients 6 --per-round 3 --rounds 2 --subset 1200 "
             "--test-subset 500 --seed 11 --concurrency 3 --job %s --platform %s --quiet --json "
             "&& %s %s/flcache export --job %s -o %s",
             env, flc_t_build_dir(), job, platform, env, flc_t_build_dir(), job, npy);
    return flc_t_run(cmd, out, cap);
}

static int same_file(const char *a, const char *b)
{
    char cmd[1024], out[256];
    snprintf(cmd, sizeof cmd, "cmp %s %s", a, b);
    return flc_t_run(cmd, out, sizeof out) == 0;
}

static void same_simulation(const char *platform, fake_t *f)
{
    char out[16384], a[128], b[128], job[64];
    /* The local run is the baseline of both platforms' cases: made once per
     * runner (the cases' parent), removed by its teardown. */
    snprintf(a, sizeof a, "/tmp/flc-platform-%d-local.npy", (int)getppid());
    snprintf(b, sizeof b, "/tmp/flc-platform-%d-%s.npy", (int)getpid(), platform);
    snprintf(job, sizeof job, "plat-sim-local-%d", (int)getpid());
    int rc = access(a, R_OK) == 0 ? 0 : simulate("local", NULL, job, a, out, sizeof out);
    CHECK(rc == 0, "simulate on the local pool: exit 0 (%d: %.300s)", rc, rc ? out : "");
    snprintf(job, sizeof job, "plat-sim-%s-%d", platform, (int)getpid());
    rc = simulate(platform, f, job, b, out, sizeof out);
    CHECK(rc == 0, "simulate --platform %s: exit 0 (%d: %.600s)", platform, rc, out);
    const char *cost = strstr(out, "\"cost_usd\":");
    EXPECT(cost != NULL && atof(cost + 11) > 0, "the run's cost comes from the platform's "
           "records (%.30s)", cost ? cost : "none");
    EXPECT(same_file(a, b), "the global model after round 2 is the same bytes as on the "
           "local pool (%s vs %s)", a, b);
    EXPECT(log_count(f, "OK", 0) >= 6, "the fake ran the 6 client invocations (%d)",
           log_count(f, "OK", 0));
    unlink(b);
}

/* A small train on platform: the JSON's checksum into sum. */
static int train(const char *platform, const fake_t *f, const char *job, char *sum,
                 size_t cap)
{
    char env[1024], cmd[4096], out[16384];
    fake_env(env, sizeof env, platform, f, fx.unix_url);
    snprintf(cmd, sizeof cmd,
             "%s %s/flcache train --workers 2 --subset 2000 --test-subset 500 --epochs 1 "
             "--seed 5 --job %s --platform %s --json --quiet",
             env, flc_t_build_dir(), job, platform);
    int rc = flc_t_run(cmd, out, sizeof out);
    const char *c = strstr(out, "\"checksum\":\"");
    snprintf(sum, cap, "%.*s", c ? (int)strcspn(c + 12, "\"") : 0, c ? c + 12 : "");
    if (rc != 0 || strstr(out, "\"identical_models\":true") == NULL)
        fprintf(stderr, "# train --platform %s: %.800s\n", platform, out);
    return rc != 0 ? rc : strstr(out, "\"identical_models\":true") == NULL ? 99 : 0;
}

static void same_training(const char *platform, fake_t *f)
{
    char local[128] = "", remote[128], job[64], path[128];
    snprintf(path, sizeof path, "/tmp/flc-platform-%d-local.sum", (int)getppid());
    FILE *fp = fopen(path, "r"); /* the baseline, as for simulate */
    int rc = fp != NULL && fscanf(fp, "%127s", local) == 1 ? 0 : -1;
    if (fp != NULL)
        fclose(fp);
    if (rc != 0) {
        snprintf(job, sizeof job, "plat-train-local-%d", (int)getpid());
        rc = train("local", NULL, job, local, sizeof local);
        if (rc == 0 && *local && (fp = fopen(path, "w")) != NULL) {
            fprintf(fp, "%s\n", local);
            fclose(fp);
        }
    }
    CHECK(rc == 0 && *local, "train on the local pool: exit 0, identical workers (%d)", rc);
    snprintf(job, sizeof job, "plat-train-%s-%d", platform, (int)getpid());
    rc = train(platform, f, job, remote, sizeof remote);
    CHECK(rc == 0 && *remote, "train --platform %s: exit 0, identical workers (%d)", platform,
          rc);
    EXPECT(strcmp(local, remote) == 0, "the trained model's checksum is the local pool's "
           "(%s vs %s)", local, remote);
}

TEST(lambda_same_models)
{
    fake_t f;
    lambda_start(&f, NULL, NULL, NULL);
    same_simulation("lambda", &f);
    same_training("lambda", &f);
    EXPECT(log_count(&f, "FAIL", 1) == 0, "botocore accepted every signature");
    fake_stop(&f);
}

TEST(openwhisk_same_models)
{
    fake_t f;
    ow_start(&f, NULL, NULL, NULL);
    same_simulation("openwhisk", &f);
    same_training("openwhisk", &f);
    fake_stop(&f);
}

TEST(package_zips_run)
{
    char dir[128], cmd[2048], out[8192];
    snprintf(dir, sizeof dir, "/tmp/flc-package-%d", (int)getpid());
    snprintf(cmd, sizeof cmd,
             "rm -rf %s && mkdir -p %s/in && cd %s && echo 42 > in/d.txt && "
             "%s/flcache package lambda --out l.zip && "
             "%s/flcache package openwhisk --out ow/o.zip --data in && mkdir l o && cd l && "
             "unzip -q ../l.zip && cd ../o && unzip -q ../ow/o.zip",
             dir, dir, dir, flc_t_build_dir(), flc_t_build_dir());
    if (flc_t_run("command -v zip && command -v unzip", out, sizeof out) != 0)
        flc_t_skip("no zip or unzip program (Debian packages zip, unzip)");
    int rc = flc_t_run(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "bootstrap, flcache-fn and"),
          "flcache package lambda and openwhisk: exit 0 (%d: %.400s)", rc, out);
    snprintf(cmd, sizeof cmd, "ls %s/l/lib | grep -c 'ld-linux\\|libc.so\\|libcurl'", dir);
    flc_t_run(cmd, out, sizeof out);
    EXPECT(atoi(out) >= 3, "the zip carries the loader, libc and libcurl (%d)", atoi(out));
    /* --data: the files in data/, and the entry script pointing
     * FLCACHE_DATA_DIR there (its exec line swapped for `env`). */
    snprintf(cmd, sizeof cmd, "cat %s/o/data/d.txt && test ! -e %s/l/data && "
             "sed '$d' %s/o/exec > %s/o/envcheck && echo env >> %s/o/envcheck && "
             "env -i sh %s/o/envcheck | grep FLCACHE_DATA_DIR", dir, dir, dir, dir, dir, dir);
    rc = flc_t_run(cmd, out, sizeof out);
    char want[160];
    snprintf(want, sizeof want, "FLCACHE_DATA_DIR=%s/o/data", dir);
    EXPECT(rc == 0 && strncmp(out, "42", 2) == 0 && strstr(out, want),
           "--data packs the directory's files as data/ (only when asked) and the entry "
           "script sets %s: %.200s", want, out);
    snprintf(cmd, sizeof cmd, "env -i %s/o/exec '{\"role\":\"echo\",\"y\":2}' | tail -1", dir);
    rc = flc_t_run(cmd, out, sizeof out);
    EXPECT(rc == 0 && strstr(out, "\"ok\":true") && strstr(out, "\"y\":2"),
           "the OpenWhisk zip's exec answers an event with an empty environment: %.200s", out);

    fake_t f;
    snprintf(cmd, sizeof cmd, "%s/l/bootstrap", dir);
    lambda_start(&f, cmd, NULL, NULL);
    flc_remote_cfg_t r;
    flc_pool_t *p = remote_pool(FLC_PLATFORM_LAMBDA, &f, SECRET, NULL, &r, 1);
    const char *ev[1] = {"{\"role\":\"echo\",\"z\":3}"};
    flc_inv_rec_t rec;
    flc_err_t e = {0};
    CHECK(flc_pool_invoke(p, ev, 1, &rec, &e) == 0, "invoke the packaged function");
    const cJSON *echo = cJSON_GetObjectItem(flc_inv_result(&rec), "echo");
    EXPECT(rec.status == FLC_INV_OK && flc_ev_int(echo, "z", 0) == 3 && rec.cold,
           "the Lambda zip's bootstrap serves the Runtime API: a cold start answering the "
           "event (%s)", rec.error);
    flc_inv_rec_clear(&rec);
    flc_pool_free(p);
    fake_stop(&f);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    flc_t_run(cmd, out, sizeof out);
}

/* The deploy scripts' dry runs: the exact calls, and the cache URL's
 * AUTH token never printed. */
TEST(deploy_dry_runs_hide_the_token)
{
    char dir[128], cmd[2048], out[8192];
    snprintf(dir, sizeof dir, "/tmp/flc-deploy-%d", (int)getpid());
    const char *env = "DRY_RUN=1 NO_VPC=1 FLCACHE_REDIS=rediss://:t0ken-xyz@cache.example:6379";
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s && head -c 1000 /dev/zero > %s/f.zip && "
             "env %s sh %s/scripts/deploy-lambda.sh %s/f.zip 2>&1",
             dir, dir, dir, env, flc_t_source_dir(), dir);
    int rc = flc_t_run(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "aws lambda create-function") &&
              strstr(out, "--runtime provided.al2023") && strstr(out, "--zip-file fileb://") &&
              strstr(out, "rediss://:***@cache.example:6379") && !strstr(out, "t0ken-xyz"),
          "deploy-lambda.sh DRY_RUN=1: create-function with the zip in the request, the "
          "token masked (exit %d)", rc);
    snprintf(cmd, sizeof cmd, "env %s S3_BUCKET=bkt sh %s/scripts/deploy-lambda.sh %s/f.zip 2>&1",
             env, flc_t_source_dir(), dir);
    rc = flc_t_run(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "aws s3 cp") && strstr(out, "s3://bkt/f.zip") &&
              strstr(out, "--code S3Bucket=bkt,S3Key=f.zip") && !strstr(out, "--zip-file") &&
              !strstr(out, "t0ken-xyz"),
          "with S3_BUCKET the zip goes through S3 (exit %d)", rc);
    snprintf(cmd, sizeof cmd, "env %s sh %s/scripts/deploy-openwhisk.sh %s/f.zip 2>&1; rm -rf %s",
             env, flc_t_source_dir(), dir, dir);
    rc = flc_t_run(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "wsk action update") && strstr(out, "--native") &&
              !strstr(out, "t0ken-xyz"),
          "deploy-openwhisk.sh DRY_RUN=1: action update --native, the token masked (exit %d)",
          rc);
}

static void setup(void)
{
    flc_fixture_start(&fx, 0);
}

static void teardown(void)
{
    char path[128];
    snprintf(path, sizeof path, "/tmp/flc-platform-%d-local.npy", (int)getpid());
    unlink(path);
    snprintf(path, sizeof path, "/tmp/flc-platform-%d-local.sum", (int)getpid());
    unlink(path);
    flc_fixture_stop(&fx);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(lambda_same_models),
                 TEST_ENTRY(openwhisk_same_models), TEST_ENTRY(package_zips_run),
                 TEST_ENTRY(deploy_dry_runs_hide_the_token))
