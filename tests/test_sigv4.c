/* The SigV4 signatures libcurl makes for flcache, checked by someone else
 * (issue 13): tests/sigv4_check.py recomputes each request's signature with
 * botocore (python3-botocore) in a loopback fake AWS endpoint and refuses a
 * wrong one as AWS does (HTTP 403, SignatureDoesNotMatch). s3rver and the
 * other tests' fake servers accept any signature, so only here does a wrong
 * signature or a wrong secret fail.
 *   - Lambda Invoke (runtime/invoke_remote.c, signed by runtime/sigv4.c):
 *     plain name, session token, qualifier, async, and a full function ARN
 *     (libcurl 7.88's own signing left the ARN's ':' unencoded in the
 *     canonical URI, which AWS and this check refuse; issue 13);
 *   - the S3 cold tier (cache/cold_s3.c): bucket HEAD/PUT, object PUT, GET,
 *     DELETE, the listing by prefix of `store rm`, through the library and through `flcache` (FLCACHE_COLD).
 * With the wrong secret every request is refused and flcache's error says
 * HTTP 403 without ever containing the secret. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/event.h"
#include "cache/cold.h"
#include "runtime/invoke_remote.h"
#include "tests/harness.h"

#define REGION "eu-west-1"
#define AKID "AKIDFLCACHETEST"
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzzSECRET"
#define WRONG "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzzWRONG1"

typedef struct verifier {
    pid_t pid;
    int in;   /* its stdin: closing it stops the verifier */
    int port;
    char log[128];
    char url[64];
} verifier_t;

static char g_dir[64]; /* this runner's temp directory (logs) */

/* Starts tests/sigv4_check.py for service; skips the case when botocore is
 * missing (scripts/setup.sh installs python3-botocore). */
static void verifier_start(verifier_t *v, const char *service)
{
    const char *src = getenv("FLCACHE_SOURCE_DIR");
    char script[1024];
    snprintf(script, sizeof script, "%s/tests/sigv4_check.py", src && *src ? src : "..");
    if (access("/usr/bin/python3", X_OK) != 0)
        flc_t_skip("no /usr/bin/python3 to run %s", script);
    static int n;
    snprintf(v->log, sizeof v->log, "%s/%s-%d-%d.log", g_dir, service, (int)getpid(), n++);
    int in[2], out[2];
    CHECK(pipe(in) == 0 && pipe(out) == 0, "pipes for the verifier");
    v->pid = fork();
    if (v->pid < 0)
        flc_t_fatal("fork: %s", strerror(errno));
    if (v->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        execl("/usr/bin/python3", "python3", script, "--service", service, "--region", REGION,
              "--access-key", AKID, "--secret", SECRET, "--log", v->log, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    v->in = in[1];
    char line[256] = "";
    FILE *f = fdopen(out[0], "r");
    if (f == NULL || fgets(line, sizeof line, f) == NULL)
        line[0] = '\0';
    if (f != NULL)
        fclose(f);
    if (strncmp(line, "NOBOTOCORE", 10) == 0) {
        waitpid(v->pid, NULL, 0);
        flc_t_skip("botocore is missing: %s", line + 11);
    }
    CHECK(sscanf(line, "PORT %d", &v->port) == 1, "%s listens (said '%.60s')", script, line);
    snprintf(v->url, sizeof v->url, "http://127.0.0.1:%d", v->port);
}

static void verifier_stop(verifier_t *v)
{
    close(v->in);
    for (int i = 0; i < 300 && waitpid(v->pid, NULL, WNOHANG) == 0; i++)
        flc_sleep_ms(10);
    kill(v->pid, SIGKILL);
    waitpid(v->pid, NULL, 0);
}

/* Counts the verifier's "OK ..." and "FAIL ..." lines; prints the FAILs. */
static void verdicts(const verifier_t *v, int *ok, int *fail)
{
    *ok = *fail = 0;
    FILE *f = fopen(v->log, "r");
    char line[4096];
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        if (strncmp(line, "OK ", 3) == 0)
            (*ok)++;
        else if (strncmp(line, "FAIL ", 5) == 0) {
            (*fail)++;
            fprintf(stderr, "# verifier: %s", line);
        }
    }
    if (f != NULL)
        fclose(f);
}

static cJSON *invoke(const flc_lambda_cfg_t *lc, const char *fn, int *rc, flc_err_t *e)
{
    cJSON *reply = NULL;
    *rc = flc_lambda_invoke(lc, fn, "{\"role\":\"echo\",\"n\":3}", &reply, e);
    return reply;
}

TEST(lambda_signature)
{
    verifier_t v;
    verifier_start(&v, "lambda");
    flc_lambda_cfg_t lc = {.region = REGION, .access_key = AKID, .secret_key = SECRET,
                           .endpoint = v.url, .timeout_ms = 10000};
    flc_err_t e = {0};
    int rc, ok, fail;
    cJSON *r = invoke(&lc, "flcache-fn", &rc, &e);
    const cJSON *res = cJSON_GetObjectItem(r, "result");
    EXPECT(rc == 0 && flc_ev_bool(r, "ok", 0) &&
               strcmp(flc_ev_str(res, "sigv4", ""), "verified") == 0,
           "an Invoke signed by libcurl passes botocore's check (%s)", rc ? e.msg : "ok");
    cJSON_Delete(r);
    lc.session_token = "FQoGZXIvYXdzEtoken/with+chars=";
    r = invoke(&lc, "flcache-fn", &rc, &e);
    EXPECT(rc == 0 && flc_ev_bool(r, "ok", 0), "with a session token (%s)", rc ? e.msg : "ok");
    cJSON_Delete(r);
    lc.qualifier = "live";
    r = invoke(&lc, "flcache-fn", &rc, &e);
    EXPECT(rc == 0 && flc_ev_bool(r, "ok", 0), "with a qualifier (?Qualifier=live) (%s)",
           rc ? e.msg : "ok");
    cJSON_Delete(r);
    lc.qualifier = NULL;
    lc.async = 1;
    r = invoke(&lc, "flcache-fn", &rc, &e);
    EXPECT(rc == 0, "asynchronous (Event) invoke (%s)", rc ? e.msg : "ok");
    cJSON_Delete(r);
    lc.async = 0;
    r = invoke(&lc, "arn:aws:lambda:" REGION ":123456789012:function:flcache-fn", &rc, &e);
    EXPECT(rc == 0 && flc_ev_bool(r, "ok", 0), "by full function ARN (%s)", rc ? e.msg : "ok");
    cJSON_Delete(r);
    verdicts(&v, &ok, &fail);
    EXPECT(ok == 5 && fail == 0, "the verifier accepted all 5 requests (%d ok, %d refused)", ok,
           fail);

    lc.secret_key = WRONG;
    r = invoke(&lc, "flcache-fn", &rc, &e);
    EXPECT(rc == FLC_EAUTH && r == NULL && strstr(e.msg, "HTTP 403") != NULL &&
               strstr(e.msg, "signature") != NULL,
           "the wrong secret: refused, FLC_EAUTH quoting AWS: '%s'", e.msg);
    EXPECT(strstr(e.msg, WRONG) == NULL && strstr(e.msg, SECRET) == NULL,
           "the error does not contain the secret");
    verdicts(&v, &ok, &fail);
    EXPECT(fail == 1, "the verifier refused exactly that request (%d refused)", fail);
    verifier_stop(&v);
}

static flc_cold_opts_t s3_opts(const char *secret)
{
    flc_cold_opts_t o = {.bucket = "flc-sig", .region = REGION, .access_key = AKID,
                         .secret_key = secret, .create_bucket = 1, .timeout_ms = 10000};
    return o;
}

TEST(s3_signature)
{
    verifier_t v;
    verifier_start(&v, "s3");
    flc_err_t err = {0};
    flc_cold_opts_t o = s3_opts(SECRET);
    flc_cold_t *c = flc_cold_open(v.url, &o, &err);
    CHECK(c != NULL, "open %s: the bucket HEAD and PUT pass the check (%s)", v.url, err.msg);
    const char *key = "fl:{job@1+x/3/0}:u:client 7";
    float val[300];
    flc_t_fill(val, 300, 5);
    EXPECT(flc_cold_put(c, key, val, sizeof val) == FLC_OK, "put (%s)", flc_cold_errstr(c));
    uint8_t *got = NULL;
    size_t gl = 0;
    int rc = flc_cold_get(c, key, &got, &gl);
    EXPECT(rc == FLC_OK && gl == sizeof val && memcmp(got, val, gl) == 0,
           "get returns the bytes (rc %d: %s)", rc, flc_cold_errstr(c));
    free(got);
    EXPECT(flc_cold_del(c, key) == FLC_OK, "delete (%s)", flc_cold_errstr(c));
    uint64_t nobj = 0, nbytes = 0; /* `store rm`'s listing (ListObjectsV2, a query string) */
    EXPECT(flc_cold_del_prefix(c, "fl:{job@1+x/", 1, &nobj, &nbytes) == FLC_OK,
           "list by prefix (%s)", flc_cold_errstr(c));
    rc = flc_cold_get(c, key, &got, &gl);
    EXPECT(rc == FLC_ENOTFOUND, "a signed GET of the deleted object is a miss (%d)", rc);
    flc_cold_close(c);
    o.session_token = "IQoJb3JpZ2luX2VjE/token+x=";
    c = flc_cold_open(v.url, &o, &err);
    EXPECT(c != NULL && flc_cold_put(c, key, "x", 1) == FLC_OK,
           "with a session token (%s)", c ? flc_cold_errstr(c) : err.msg);
    flc_cold_close(c);
    int ok, fail;
    verdicts(&v, &ok, &fail);
    EXPECT(ok == 9 && fail == 0, "the verifier accepted all 9 requests (%d ok, %d refused)", ok,
           fail);

    o = s3_opts(WRONG);
    c = flc_cold_open(v.url, &o, &err);
    EXPECT(c == NULL && err.code == FLC_EAUTH && strstr(err.msg, "HTTP 403") != NULL,
           "the wrong secret: open fails with FLC_EAUTH: '%s'", err.msg);
    EXPECT(strstr(err.msg, WRONG) == NULL && strstr(err.msg, SECRET) == NULL,
           "the error does not contain the secret");
    flc_cold_close(c);
    verdicts(&v, &ok, &fail);
    EXPECT(fail == 1, "the verifier refused it as SignatureDoesNotMatch (%d refused)", fail);
    verifier_stop(&v);
}

/* The same through the `flcache` command, configured by the environment:
 * a store whose cold tier refuses the signature is an error naming HTTP 403,
 * exit 1, and nothing printed holds the secret. */
TEST(cli_wrong_secret)
{
    verifier_t v;
    verifier_start(&v, "s3");
    flc_err_t err = {0};
    flc_cold_opts_t o = s3_opts(SECRET);
    o.bucket = "flc-cli"; /* flcache does not create the bucket: make it */
    flc_cold_t *c = flc_cold_open(v.url, &o, &err);
    CHECK(c != NULL, "bucket flc-cli made (%s)", err.msg);
    flc_cold_close(c);
    char cmd[2048], out[16384];
    const char *fmt = "env -u FLCACHE_REDIS FLCACHE_COLD=%s FLCACHE_COLD_BUCKET=flc-cli "
                      "AWS_REGION=" REGION " AWS_ACCESS_KEY_ID=" AKID
                      " AWS_SECRET_ACCESS_KEY='%s' %s/flcache store stats";
    snprintf(cmd, sizeof cmd, fmt, v.url, SECRET, flc_t_build_dir());
    int rc = flc_t_run(cmd, out, sizeof out);
    fprintf(stderr, "# right secret: exit %d: %s", rc, out);
    int ok, fail;
    verdicts(&v, &ok, &fail);
    EXPECT(rc == 0 && ok >= 1 && fail == 0,
           "flcache store stats with the right secret: exit 0, %d signed requests passed", ok);
    snprintf(cmd, sizeof cmd, fmt, v.url, WRONG, flc_t_build_dir());
    rc = flc_t_run(cmd, out, sizeof out);
    fprintf(stderr, "# wrong secret: exit %d: %s", rc, out);
    EXPECT(rc == 1 && strstr(out, "HTTP 403") != NULL,
           "with the wrong secret: exit 1 and an error naming HTTP 403 (exit %d)", rc);
    EXPECT(strstr(out, WRONG) == NULL && strstr(out, SECRET) == NULL,
           "nothing flcache printed contains the secret");
    verdicts(&v, &ok, &fail);
    EXPECT(fail >= 1, "the verifier refused its signature (%d refused)", fail);
    verifier_stop(&v);
}

static void setup(void)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/flc-sigv4-XXXXXX");
    if (mkdtemp(g_dir) == NULL)
        flc_t_fatal("cannot create a temp directory: %s", strerror(errno));
    signal(SIGPIPE, SIG_IGN);
}

static void teardown(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "# could not remove %s\n", g_dir);
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(lambda_signature), TEST_ENTRY(s3_signature),
                 TEST_ENTRY(cli_wrong_secret))
