/* The stand-ins of the remote platforms for tests/test_platform*.c:
 * tests/fake_lambda.py and tests/fake_openwhisk.py started on loopback for
 * one case (closing their stdin stops them and their function instances),
 * their logs, and a pool that sends to them. Header-only: each test file is
 * its own program (tests/CMakeLists.txt). */
#ifndef FLC_TESTS_PLATFORM_FAKES_H
#define FLC_TESTS_PLATFORM_FAKES_H

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "runtime/platform.h"
#include "runtime/pool.h"
#include "tests/harness.h"

#define REGION "eu-west-1"
#define AKID "AKIDFLCPLATFORM"
#define SECRET "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzzPLATFORM"
#define WRONG "wJalrXUtnFEMI/K7MDENG+bPxRfiCYzzWRONG00"
#define OW_AUTH "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:platformKEY123"
#define ARN "arn:aws:lambda:" REGION ":123456789012:function:flcache-fn"

typedef struct fake {
    pid_t pid;
    int in; /* its stdin: closing it stops the fake and its instances */
    char url[64];
    char log[256];
} fake_t;

/* Starts tests/<script> with args (NULL-ended); skips without python3 or
 * botocore. */
static inline void fake_start(fake_t *f, const char *script, const char *const *args)
{
    const char *src = getenv("FLCACHE_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/%s", src && *src ? src : "..", script);
    if (access("/usr/bin/python3", X_OK) != 0)
        flc_t_skip("no /usr/bin/python3 to run %s", path);
    static int n;
    snprintf(f->log, sizeof f->log, "/tmp/flc-platform-%d-%d.log", (int)getpid(), n++);
    unlink(f->log);
    const char *argv[40] = {"/usr/bin/python3", path, "--log", f->log};
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
    line[strcspn(line, "\n")] = '\0';
    if (strncmp(line, "NOBOTOCORE", 10) == 0)
        flc_t_skip("botocore is missing: %s", line + 11);
    int port = 0;
    CHECK(sscanf(line, "PORT %d", &port) == 1, "%s listens (said '%.60s')", script, line);
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d", port);
}

static inline void fake_stop(fake_t *f)
{
    close(f->in);
    for (int i = 0; i < 300 && waitpid(f->pid, NULL, WNOHANG) == 0; i++)
        flc_sleep_ms(10);
    kill(f->pid, SIGKILL);
    waitpid(f->pid, NULL, 0);
}

/* Lines of the fake's log that start with prefix; printed when show. */
static inline int log_count(const fake_t *f, const char *prefix, int show)
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

static inline void lambda_start(fake_t *f, const char *bootstrap, const char *extra1,
                         const char *extra2)
{
    char bs[1024];
    snprintf(bs, sizeof bs, "%s/flcache-fn", flc_t_build_dir());
    const char *args[] = {"--region", REGION, "--access-key", AKID, "--secret", SECRET,
                          "--bootstrap", bootstrap ? bootstrap : bs, "--memory", "512",
                          "--env", "OPENBLAS_NUM_THREADS=1", extra1, extra2, NULL};
    fake_start(f, "fake_lambda.py", args);
}

static inline void ow_start(fake_t *f, const char *exec, const char *extra1, const char *extra2)
{
    char ex[1024];
    snprintf(ex, sizeof ex, "%s/flcache-fn", flc_t_build_dir());
    const char *args[] = {"--auth", OW_AUTH, "--exec", exec ? exec : ex, "--memory", "256",
                          "--env", "OPENBLAS_NUM_THREADS=1", extra1, extra2, NULL};
    fake_start(f, "fake_openwhisk.py", args);
}

/* The environment (VAR=value words for a shell command) a command needs to
 * run its functions on platform through f with the cache at redis_url; f
 * NULL: the local pool. */
static inline void fake_env(char *out, size_t cap, const char *platform, const fake_t *f,
                            const char *redis_url)
{
    if (f == NULL)
        snprintf(out, cap, "FLCACHE_REDIS=%s", redis_url);
    else if (strcmp(platform, "lambda") == 0)
        snprintf(out, cap, "FLCACHE_REDIS=%s AWS_REGION=" REGION " AWS_ACCESS_KEY_ID=" AKID
                 " AWS_SECRET_ACCESS_KEY='" SECRET "' FLCACHE_LAMBDA_ENDPOINT=%s",
                 redis_url, f->url);
    else
        snprintf(out, cap, "FLCACHE_REDIS=%s WSK_APIHOST=%s WSK_AUTH='" OW_AUTH "' "
                 "WSK_NAMESPACE=guest", redis_url, f->url);
}

/* A pool sending to f on platform, function fn. */
static inline flc_pool_t *remote_pool(int platform, const fake_t *f, const char *secret,
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

#endif
