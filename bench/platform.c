/* bench/platform: the overhead of one invocation through the remote
 * platforms' stand-ins (tests/fake_lambda.py, tests/fake_openwhisk.py) with
 * the local pool measured in the same run as the baseline.
 *
 * Each platform runs the `echo` role (no work: what is measured is the
 * platform's path) FLCACHE_BENCH_REPS times one after the other (default
 * 30; the first is cold), then the same number as batches of 4 at once.
 * One JSON line per platform and case: median and p90 of the round trip the
 * driver saw, the billed ms the platform reported, and the ratio to the
 * local pool's median. What the stand-ins add over a real service: a Python
 * HTTP server per request and (Lambda) SigV4 checked by botocore, so these
 * are an upper bound of the client side's share, not of AWS's network.
 * Needs /usr/bin/python3 with botocore; FLCACHE_SOURCE_DIR (default the
 * current directory) finds the fakes. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench_util.h"
#include "base/clock.h"
#include "runtime/platform.h"
#include "runtime/pool.h"

#define AK "AKIDBENCH"
#define SK "benchSECRETkey"
#define OWAUTH "bench:KEY"

typedef struct fake {
    pid_t pid;
    int in;
    char url[64];
} fake_t;

static int fake_start(fake_t *f, const char *script, const char *fn)
{
    const char *src = getenv("FLCACHE_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/%s", src && *src ? src : ".", script);
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0)
        return -1;
    f->pid = fork();
    if (f->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        if (strstr(script, "lambda"))
            execl("/usr/bin/python3", "python3", path, "--region", "us-east-1", "--access-key",
                  AK, "--secret", SK, "--bootstrap", fn, "--log", "/dev/null", (char *)NULL);
        else
            execl("/usr/bin/python3", "python3", path, "--auth", OWAUTH, "--exec", fn, "--log",
                  "/dev/null", (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    f->in = in[1];
    char line[128] = "";
    FILE *fp = fdopen(out[0], "r");
    if (fp == NULL || fgets(line, sizeof line, fp) == NULL)
        line[0] = '\0';
    if (fp != NULL)
        fclose(fp);
    int port;
    if (sscanf(line, "PORT %d", &port) != 1) {
        fprintf(stderr, "bench platform: %s did not start (%s)\n", path, line);
        return -1;
    }
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d", port);
    return 0;
}

static void fake_stop(fake_t *f)
{
    close(f->in);
    for (int i = 0; i < 300 && waitpid(f->pid, NULL, WNOHANG) == 0; i++)
        flc_sleep_ms(10);
    kill(f->pid, SIGKILL);
    waitpid(f->pid, NULL, 0);
}

typedef struct result {
    double median, p90, billed, cold_ms;
} result_t;

/* reps invocations of echo in batches of batch on a pool for platform. */
static int measure(const char *fn, int platform, const fake_t *f, int reps, int batch,
                   result_t *res)
{
    flc_remote_cfg_t rc = {.platform = platform,
                           .lambda = {.region = "us-east-1", .access_key = AK,
                                      .secret_key = SK, .endpoint = f ? f->url : NULL},
                           .ow = {.apihost = f ? f->url : NULL, .auth = OWAUTH}};
    flc_pool_cfg_t pc;
    flc_pool_cfg_init(&pc);
    pc.fn_path = fn;
    pc.concurrency = (unsigned)batch;
    pc.memory_mb = 1024;
    pc.remote = platform != FLC_PLATFORM_LOCAL ? &rc : NULL;
    flc_err_t e = {0};
    flc_pool_t *p = flc_pool_new(&pc, &e);
    if (p == NULL) {
        fprintf(stderr, "bench platform: %s\n", e.msg);
        return -1;
    }
    double *d = calloc((size_t)reps, sizeof *d);
    double billed = 0;
    int n = 0, bad = 0;
    const char *ev[8];
    flc_inv_rec_t recs[8];
    for (int i = 0; i < batch; i++)
        ev[i] = "{\"role\":\"echo\",\"bench\":1}";
    while (n < reps) {
        int k = reps - n < batch ? reps - n : batch;
        if (flc_pool_invoke(p, ev, (size_t)k, recs, &e) != 0)
            bad++;
        for (int i = 0; i < k; i++) {
            bad += recs[i].status != FLC_INV_OK;
            if (n == 0 && i == 0)
                res->cold_ms = recs[i].duration_ms;
            d[n + i] = recs[i].duration_ms;
            billed += (double)recs[i].billed_ms;
            flc_inv_rec_clear(&recs[i]);
        }
        n += k;
    }
    flc_pool_free(p);
    /* The first batch holds the cold starts: left out of the warm figures. */
    int skip = reps > batch ? batch : 0;
    res->median = bench_median(d + skip, (size_t)(reps - skip));
    res->p90 = bench_percentile(d + skip, (size_t)(reps - skip), 90);
    res->billed = billed / reps;
    free(d);
    return bad ? -1 : 0;
}

int main(void)
{
    bench_config();
    char fn[4096];
    bench_fn_path(fn, sizeof fn);
    int reps = bench_reps(30);
    if (access("/usr/bin/python3", X_OK) != 0) {
        fprintf(stderr, "bench platform: needs /usr/bin/python3 (with python3-botocore)\n");
        return 1;
    }
    fake_t lam, ow;
    if (fake_start(&lam, "fake_lambda.py", fn) != 0 || fake_start(&ow, "fake_openwhisk.py", fn))
        return 1;
    static const int batches[2] = {1, 4};
    int rc = 0;
    for (int b = 0; b < 2; b++) {
        result_t local = {0}, r[2] = {{0}};
        rc |= measure(fn, FLC_PLATFORM_LOCAL, NULL, reps, batches[b], &local);
        rc |= measure(fn, FLC_PLATFORM_LAMBDA, &lam, reps, batches[b], &r[0]);
        rc |= measure(fn, FLC_PLATFORM_OPENWHISK, &ow, reps, batches[b], &r[1]);
        for (int i = 0; i < 2; i++) {
            cJSON *o = bench_line("platform", batches[b] == 1 ? "echo_sequential"
                                                              : "echo_batch4");
            cJSON_AddStringToObject(o, "platform", i == 0 ? "lambda-fake" : "openwhisk-fake");
            cJSON_AddNumberToObject(o, "reps", reps);
            cJSON_AddNumberToObject(o, "median_ms", r[i].median);
            cJSON_AddNumberToObject(o, "p90_ms", r[i].p90);
            cJSON_AddNumberToObject(o, "cold_ms", r[i].cold_ms);
            cJSON_AddNumberToObject(o, "billed_ms_mean", r[i].billed);
            cJSON_AddNumberToObject(o, "local_median_ms", local.median);
            cJSON_AddNumberToObject(o, "local_cold_ms", local.cold_ms);
            cJSON_AddNumberToObject(o, "overhead_ms", r[i].median - local.median);
            cJSON_AddNumberToObject(o, "ratio", local.median > 0 ? r[i].median / local.median : 0);
            bench_emit(o);
        }
    }
    fake_stop(&lam);
    fake_stop(&ow);
    return rc ? 1 : 0;
}
