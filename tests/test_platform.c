/* --platform lambda|openwhisk end to end (issue 21), against stand-ins that
 * check what the services check: tests/fake_lambda.py (SigV4 verified by
 * botocore, a real flcache-fn behind a fake Runtime API, throttling and
 * function errors as Lambda answers them, the REPORT line) and
 * tests/fake_openwhisk.py (basic auth, blocking invocations, activation
 * records, flcache-fn as a native action).
 *   - the same simulate and train give the same models (bytes of the
 *     exported global model; the training checksum) on the local pool and
 *     through each platform;
 *   - throttling is retried with backoff until the invocations pass;
 *   - a function error comes back with its message; a wrong signature or
 *     key is refused, naming the HTTP status, never the secret;
 *   - an Invoke by full function ARN passes botocore's check (issue 13);
 *   - the records carry the platform's billed duration and memory;
 *   - `flcache package` zips run: the Lambda zip's bootstrap serves the
 *     fake's Runtime API, the OpenWhisk zip's exec answers an event. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/event.h"
#include "runtime/platform.h"
#include "runtime/pool.h"
#include "tests/harness.h"

#define REGION "eu-west-1"
#define AKID "AKIDFLCPLATFORM"
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzzPLATFORM"
#define WRONG "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzzWRONG00"
#define OW_AUTH "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:platformKEY123"
#define ARN "arn:aws:lambda:" REGION ":123456789012:function:flcache-fn"

static flc_fixture_t fx;

typedef struct fake {
    pid_t pid;
    int in; /* its stdin: closing it stops the fake and its instances */
    char url[64];
    char log[256];
} fake_t;

/* Starts tests/<script> with args (NULL-ended); skips without python3 or
 * botocore. */
static void fake_start(fake_t *f, const char *script, const char *const *args)
{
    const char *src = getenv("FLCACHE_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/%s", src && *src ? src : "..", script);
    if (access("/usr/bin/python3", X_OK) != 0)
        flc_t_skip("no /usr/bin/python3 to run %s", path);
    static int n;
    snprintf(f->log, sizeof f->log, "/tmp/flc-platform-%d-%d.log", (int)getpid(), n++);
    unlink(f->log);
    const char *argv[40] = {"python3", path, "--log", f->log};
    int k = 4;
    for (int i = 0; args[i] != NULL && k < 39; i++)
        argv[k++] = args[i];
    argv[k] = NULL;
    int in[2], out[2];
    CHECK(pipe(in) == 0 && pipe(out) == 0, "pipes for %s", script);
    f->pid = fork();
    if (f->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        execv("/usr/bin/python3", (char *const *)argv);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    f->in = in[1];
    char line[256] = "";
    FILE *fp = fdopen(out[0], "r");
    if (fp == NULL || fgets(line, sizeof line, fp) == NULL)
        line[0] = '\0';
    if (fp != NULL)
        fclose(fp);
    if (strncmp(line, "NOBOTOCORE", 10) == 0)
        flc_t_skip("botocore is missing: %s", line + 11);
    int port = 0;
    CHECK(sscanf(line, "PORT %d", &port) == 1, "%s listens (said '%.60s')", script, line);
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d", port);
}

static void fake_stop(fake_t *f)
{
    close(f->in);
    for (int i = 0; i < 300 && waitpid(f->pid, NULL, WNOHANG) == 0; i++)
        flc_sleep_ms(10);
    kill(f->pid, SIGKILL);
    waitpid(f->pid, NULL, 0);
}

/* Lines of the fake's log that start with prefix; printed when show. */
static int log_count(const fake_t *f, const char *prefix, int show)
{
    FILE *fp = fopen(f->log, "r");
    char line[4096];
    int n = 0;
    while (fp != NULL && fgets(line, sizeof line, fp) != NULL)
        if (strncmp(line, prefix, strlen(prefix)) == 0) {
            n++;
            if (show)
                fprintf(stderr, "# fake: %s", line);
        }
    if (fp != NULL)
        fclose(fp);
    return n;
}

static void lambda_start(fake_t *f, const char *bootstrap, const char *extra1,
                         const char *extra2)
{
    char bs[1024];
    snprintf(bs, sizeof bs, "%s/flcache-fn", flc_t_build_dir());
    const char *args[] = {"--region", REGION, "--access-key", AKID, "--secret", SECRET,
                          "--bootstrap", bootstrap ? bootstrap : bs, "--memory", "512",
                          "--env", "OPENBLAS_NUM_THREADS=1", extra1, extra2, NULL};
    fake_start(f, "fake_lambda.py", args);
}

static void ow_start(fake_t *f, const char *exec, const char *extra1, const char *extra2)
{
    char ex[1024];
    snprintf(ex, sizeof ex, "%s/flcache-fn", flc_t_build_dir());
    const char *args[] = {"--auth", OW_AUTH, "--exec", exec ? exec : ex, "--memory", "256",
                          "--env", "OPENBLAS_NUM_THREADS=1", extra1, extra2, NULL};
    fake_start(f, "fake_openwhisk.py", args);
}

/* The environment a command needs to reach the fake. */
static void platform_env(char *out, size_t cap, const char *platform, const fake_t *f)
{
    if (f == NULL)
        snprintf(out, cap, "FLCACHE_REDIS=%s", fx.unix_url);
    else if (strcmp(platform, "lambda") == 0)
        snprintf(out, cap, "FLCACHE_REDIS=%s AWS_REGION=" REGION " AWS_ACCESS_KEY_ID=" AKID
                 " AWS_SECRET_ACCESS_KEY='" SECRET "' FLCACHE_LAMBDA_ENDPOINT=%s",
                 fx.unix_url, f->url);
    else
        snprintf(out, cap, "FLCACHE_REDIS=%s WSK_APIHOST=%s WSK_AUTH='" OW_AUTH "' "
                 "WSK_NAMESPACE=guest", fx.unix_url, f->url);
}

/* A small simulate of job on platform; its global model exported to npy. */
static int simulate(const char *platform, const fake_t *f, const char *job, const char *npy,
                    char *out, size_t cap)
{
    char env[1024], cmd[4096];
    platform_env(env, sizeof env, platform, f);
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
    platform_env(env, sizeof env, platform, f);
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

/* A pool sending to f on platform, function fn. */
static flc_pool_t *remote_pool(int platform, const fake_t *f, const char *secret,
                               const char *fn, flc_remote_cfg_t *rc, unsigned conc)
{
    memset(rc, 0, sizeof *rc);
    rc->platform = platform;
    rc->function = fn;
    rc->lambda = (flc_lambda_cfg_t){.region = REGION, .access_key = AKID,
                                    .secret_key = secret, .endpoint = f->url};
    rc->ow = (flc_ow_cfg_t){.apihost = f->url, .auth = secret, .ns = "guest"};
    rc->backoff_ms = 20;
    flc_pool_cfg_t pc;
    flc_pool_cfg_init(&pc);
    pc.remote = rc;
    pc.concurrency = conc;
    pc.memory_mb = 2048; /* what the pool would bill without the platform's figure */
    pc.timeout_ms = 30000;
    flc_err_t e = {0};
    flc_pool_t *p = flc_pool_new(&pc, &e);
    CHECK(p != NULL, "a pool on %s starts (%s)", flc_platform_name(platform), e.msg);
    return p;
}

static void throttled(int platform)
{
    fake_t f;
    flc_remote_cfg_t rc;
    if (platform == FLC_PLATFORM_LAMBDA)
        lambda_start(&f, NULL, "--throttle=3", "--concurrency=2");
    else
        ow_start(&f, NULL, "--throttle=3", "--concurrency=2");
    flc_pool_t *p = remote_pool(platform, &f, platform == FLC_PLATFORM_LAMBDA ? SECRET : OW_AUTH,
                                NULL, &rc, 4);
    const char *ev[4] = {"{\"role\":\"echo\",\"i\":0}", "{\"role\":\"echo\",\"i\":1}",
                         "{\"role\":\"echo\",\"i\":2}", "{\"role\":\"echo\",\"i\":3}"};
    flc_inv_rec_t recs[4];
    flc_err_t e = {0};
    CHECK(flc_pool_invoke(p, ev, 4, recs, &e) == 0, "4 invocations, 4 at once (%s)", e.msg);
    int ok = 0, attempts = 0;
    for (int i = 0; i < 4; i++) {
        const cJSON *echo = cJSON_GetObjectItem(flc_inv_result(&recs[i]), "echo");
        ok += recs[i].status == FLC_INV_OK && flc_ev_int(echo, "i", -1) == i;
        attempts += recs[i].attempts;
        if (recs[i].status != FLC_INV_OK)
            fprintf(stderr, "# %d: %s\n", i, recs[i].error);
        flc_inv_rec_clear(&recs[i]);
    }
    int thr = log_count(&f, "THROTTLE", 0);
    EXPECT(ok == 4, "every invocation answered its own event after the throttling (%d of 4)",
           ok);
    EXPECT(thr >= 3 && attempts == 4 + thr,
           "%s throttled %d requests (3 on demand, the rest over its concurrency of 2); the "
           "records count them as attempts (%d)", flc_platform_name(platform), thr, attempts);
    flc_pool_free(p);
    fake_stop(&f);
}

TEST(lambda_throttling_retried)
{
    throttled(FLC_PLATFORM_LAMBDA);
}

TEST(openwhisk_throttling_retried)
{
    throttled(FLC_PLATFORM_OPENWHISK);
}

TEST(lambda_errors_arn_and_billing)
{
    fake_t f;
    flc_remote_cfg_t rc;
    lambda_start(&f, NULL, NULL, NULL);
    flc_pool_t *p = remote_pool(FLC_PLATFORM_LAMBDA, &f, SECRET, ARN, &rc, 2);
    const char *ev[3] = {"{\"role\":\"echo\",\"x\":1}", "[1,2,3]", "{\"role\":\"nosuchrole\"}"};
    flc_inv_rec_t r[3];
    flc_err_t e = {0};
    CHECK(flc_pool_invoke(p, ev, 3, r, &e) == 0, "3 invocations by ARN (%s)", e.msg);
    EXPECT(r[0].status == FLC_INV_OK, "invoked by full function ARN: botocore accepted the "
           "signature ('%s')", r[0].error);
    EXPECT(strstr(r[1].error, "Unhandled") && strstr(r[1].error, "flcache.BadEvent") &&
               strstr(r[1].error, "request "),
           "an event the runtime posts to /error: a function error with its type, message and "
           "request id: '%s'", r[1].error);
    EXPECT(r[2].status == FLC_INV_ERROR && strstr(r[2].error, "nosuchrole"),
           "a handler's ok:false comes back with its message: '%s'", r[2].error);
    EXPECT(r[0].billed_ms >= 1 && r[0].billed_ms >= (uint64_t)r[0].compute_ms &&
               r[0].gb_s > 0 && r[0].gb_s == 0.5 * (double)r[0].billed_ms / 1000.0,
           "billed %llu ms at the function's 512 MB (REPORT line), not the pool's 2048: "
           "%.6f GB-s", (unsigned long long)r[0].billed_ms, r[0].gb_s);
    EXPECT(r[0].peak_rss_kb > 0 && r[0].peak_rss_kb % 1024 == 0,
           "peak memory is the REPORT's Max Memory Used (%llu kB)",
           (unsigned long long)r[0].peak_rss_kb);
    for (int i = 0; i < 3; i++)
        flc_inv_rec_clear(&r[i]);
    flc_pool_free(p);
    EXPECT(log_count(&f, "FAIL", 1) == 0 && log_count(&f, "OK", 0) == 3,
           "the fake's botocore check passed all 3 requests");

    /* The wrong secret: refused by the signature check, named, not shown. */
    p = remote_pool(FLC_PLATFORM_LAMBDA, &f, WRONG, NULL, &rc, 1);
    CHECK(flc_pool_invoke(p, ev, 1, r, &e) == 0, "an invocation with the wrong secret");
    EXPECT(r[0].status == FLC_INV_ERROR && strstr(r[0].error, "HTTP 403") &&
               strstr(r[0].error, "InvalidSignatureException"),
           "refused: '%s'", r[0].error);
    EXPECT(strstr(r[0].error, WRONG) == NULL && strstr(r[0].error, SECRET) == NULL,
           "the error does not contain the secret");
    EXPECT(log_count(&f, "FAIL", 0) == 1, "the fake refused exactly that request");
    flc_inv_rec_clear(&r[0]);
    flc_pool_free(p);
    fake_stop(&f);
}

TEST(openwhisk_errors_and_billing)
{
    fake_t f;
    flc_remote_cfg_t rc;
    ow_start(&f, NULL, NULL, NULL);
    flc_pool_t *p = remote_pool(FLC_PLATFORM_OPENWHISK, &f, OW_AUTH, NULL, &rc, 2);
    const char *ev[2] = {"{\"role\":\"echo\",\"x\":1}", "{\"role\":\"nosuchrole\"}"};
    flc_inv_rec_t r[2];
    flc_err_t e = {0};
    CHECK(flc_pool_invoke(p, ev, 2, r, &e) == 0, "2 activations (%s)", e.msg);
    EXPECT(r[0].status == FLC_INV_OK && r[0].gb_s == 0.25 * (double)r[0].billed_ms / 1000.0,
           "billed the activation's duration (%llu ms) at its limits' 256 MB: %.6f GB-s",
           (unsigned long long)r[0].billed_ms, r[0].gb_s);
    EXPECT(r[1].status == FLC_INV_ERROR && strstr(r[1].error, "nosuchrole"),
           "an application error (HTTP 502) comes back with the function's message: '%s'",
           r[1].error);
    flc_inv_rec_clear(&r[0]);
    flc_inv_rec_clear(&r[1]);
    flc_pool_free(p);
    p = remote_pool(FLC_PLATFORM_OPENWHISK, &f, "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:wrong", NULL,
                    &rc, 1);
    CHECK(flc_pool_invoke(p, ev, 1, r, &e) == 0, "an activation with the wrong key");
    EXPECT(r[0].status == FLC_INV_ERROR && strstr(r[0].error, "HTTP 401") &&
               strstr(r[0].error, "wrong") == NULL,
           "refused, without the key: '%s'", r[0].error);
    flc_inv_rec_clear(&r[0]);
    flc_pool_free(p);
    fake_stop(&f);
}

TEST(openwhisk_long_activation_polled)
{
    /* Past OpenWhisk's blocking wait (60 s; 150 ms here) the answer is 202
     * with the activation id; the invoker polls the activation record. */
    fake_t f;
    flc_remote_cfg_t rc;
    char ex[1024];
    snprintf(ex, sizeof ex, "%s/flcache-fn-test", flc_t_build_dir());
    ow_start(&f, ex, "--blocking-ms=150", NULL);
    flc_pool_t *p = remote_pool(FLC_PLATFORM_OPENWHISK, &f, OW_AUTH, NULL, &rc, 1);
    const char *ev[1] = {"{\"role\":\"probe\",\"sleep_ms\":700}"};
    flc_inv_rec_t r;
    flc_err_t e = {0};
    CHECK(flc_pool_invoke(p, ev, 1, &r, &e) == 0, "a 700 ms activation (%s)", e.msg);
    EXPECT(r.status == FLC_INV_OK && r.billed_ms >= 700,
           "its result and its billed duration (%llu ms) came from the polled record (%s)",
           (unsigned long long)r.billed_ms, r.error);
    EXPECT(log_count(&f, "BLOCKING-TIMEOUT", 0) == 1, "the blocking wait did run out");
    flc_inv_rec_clear(&r);
    flc_pool_free(p);
    fake_stop(&f);
}

TEST(lambda_timeout)
{
    /* A function past its configured timeout: Lambda stops it and answers
     * a function error Sandbox.Timedout, which the record calls a timeout. */
    fake_t f;
    flc_remote_cfg_t rc;
    char bs[1024];
    snprintf(bs, sizeof bs, "%s/flcache-fn-test", flc_t_build_dir());
    lambda_start(&f, bs, "--timeout-s=0.5", NULL);
    flc_pool_t *p = remote_pool(FLC_PLATFORM_LAMBDA, &f, SECRET, NULL, &rc, 1);
    const char *ev[2] = {"{\"role\":\"probe\",\"sleep_ms\":3000}", "{\"role\":\"probe\"}"};
    flc_inv_rec_t r[2];
    flc_err_t e = {0};
    CHECK(flc_pool_invoke(p, ev, 2, r, &e) == 0, "a 3 s invocation of a 0.5 s function");
    EXPECT(r[0].status == FLC_INV_TIMEOUT && strstr(r[0].error, "Task timed out"),
           "status timeout, Lambda's message: '%s'", r[0].error);
    EXPECT(r[1].status == FLC_INV_OK && r[1].cold,
           "the next invocation runs on a fresh instance (%s)", r[1].error);
    flc_inv_rec_clear(&r[0]);
    flc_inv_rec_clear(&r[1]);
    flc_pool_free(p);
    fake_stop(&f);
}

TEST(package_zips_run)
{
    char dir[128], cmd[2048], out[8192];
    snprintf(dir, sizeof dir, "/tmp/flc-package-%d", (int)getpid());
    snprintf(cmd, sizeof cmd,
             "rm -rf %s && mkdir -p %s && cd %s && %s/flcache package lambda --out l.zip && "
             "%s/flcache package openwhisk --out ow/o.zip && mkdir l o && cd l && unzip -q ../l.zip "
             "&& cd ../o && unzip -q ../ow/o.zip",
             dir, dir, dir, flc_t_build_dir(), flc_t_build_dir());
    if (flc_t_run("command -v zip && command -v unzip", out, sizeof out) != 0)
        flc_t_skip("no zip or unzip program (Debian packages zip, unzip)");
    int rc = flc_t_run(cmd, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "bootstrap, flcache-fn and"),
          "flcache package lambda and openwhisk: exit 0 (%d: %.400s)", rc, out);
    snprintf(cmd, sizeof cmd, "ls %s/l/lib | grep -c 'ld-linux\\|libc.so\\|libcurl'", dir);
    flc_t_run(cmd, out, sizeof out);
    EXPECT(atoi(out) >= 3, "the zip carries the loader, libc and libcurl (%d)", atoi(out));
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

/* The billing readers without a network: Lambda's REPORT line (as AWS
 * prints it, tab-separated, inside a base64 log tail) and a platform name. */
TEST(report_line_parse)
{
    const char *log = "START RequestId: 8f50 Version: $LATEST\n"
                      "some output line with Duration: 999 ms in it\n"
                      "END RequestId: 8f50\n"
                      "REPORT RequestId: 8f50\tDuration: 15.74 ms\tBilled Duration: 16 ms\t"
                      "Memory Size: 128 MB\tMax Memory Used: 56 MB\tInit Duration: 131.69 ms\t\n";
    flc_remote_out_t o;
    memset(&o, 0, sizeof o);
    CHECK(flc_lambda_report_parse(log, &o) == 1, "a REPORT line is found");
    EXPECT(o.duration_ms == 15.74 && o.billed_ms == 16 && o.memory_mb == 128 &&
               o.max_memory_kb == 56 * 1024 && o.init_ms == 131.69 && o.cold == 1,
           "duration %.2f, billed %llu, memory %u MB, max used %llu kB, init %.2f, cold",
           o.duration_ms, (unsigned long long)o.billed_ms, o.memory_mb,
           (unsigned long long)o.max_memory_kb, o.init_ms);
    memset(&o, 0, sizeof o);
    int found = flc_lambda_report_parse("REPORT RequestId: x\tDuration: 2.00 ms\tBilled "
                                        "Duration: 2 ms\tMemory Size: 1769 MB\tMax Memory "
                                        "Used: 30 MB\t", &o);
    EXPECT(found == 1 && o.cold == 0 && o.memory_mb == 1769 && o.billed_ms == 2,
           "a warm REPORT (no Init Duration): not cold, %u MB", o.memory_mb);
    EXPECT(flc_lambda_report_parse("START\nEND\n", &o) == 0, "no REPORT line: 0");
    size_t n = 0;
    char *d = flc_base64_decode("UkVQT1JUIFJlcXVlc3RJZDo=\n", &n);
    EXPECT(d != NULL && n == 17 && strcmp(d, "REPORT RequestId:") == 0,
           "base64 of the log tail decodes (%s)", d ? d : "NULL");
    free(d);
    EXPECT(flc_base64_decode("not*base64", &n) == NULL, "a non-base64 header is refused");
    int p = -1;
    flc_err_t e = {0};
    EXPECT(flc_platform_parse("OpenWhisk", &p, &e) == 0 && p == FLC_PLATFORM_OPENWHISK &&
               flc_platform_parse("gcf", &p, &e) == FLC_EINVAL && strstr(e.msg, "gcf"),
           "platform names parse; an unknown one is named: '%s'", e.msg);
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

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(report_line_parse), TEST_ENTRY(lambda_same_models),
                 TEST_ENTRY(openwhisk_same_models), TEST_ENTRY(lambda_throttling_retried),
                 TEST_ENTRY(openwhisk_throttling_retried),
                 TEST_ENTRY(lambda_errors_arn_and_billing),
                 TEST_ENTRY(openwhisk_errors_and_billing),
                 TEST_ENTRY(openwhisk_long_activation_polled), TEST_ENTRY(lambda_timeout),
                 TEST_ENTRY(package_zips_run))
