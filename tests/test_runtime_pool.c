/* runtime/pool: the local function platform running real flcache-fn
 * processes (the probe role): round trip, concurrency, warm reuse, timeout,
 * crash retries, memory limit, billing records, async batches. */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "runtime/cost.h"
#include "base/event.h"
#include "runtime/pool.h"
#include "runtime/pool_proc.h"
#include "tests/harness.h"

static char g_fn[1024];

static flc_pool_t *pool_with(unsigned concurrency, unsigned timeout_ms, unsigned retries,
                             unsigned memory_mb)
{
    flc_pool_cfg_t cfg;
    flc_pool_cfg_init(&cfg);
    cfg.fn_path = g_fn;
    cfg.concurrency = concurrency;
    cfg.timeout_ms = timeout_ms;
    cfg.retries = retries;
    if (memory_mb)
        cfg.memory_mb = memory_mb;
    flc_err_t e = {0};
    flc_pool_t *p = flc_pool_new(&cfg, &e);
    if (p == NULL)
        flc_t_fatal("cannot start a pool: %s", flc_err_msg(&e));
    return p;
}

static void clear_all(flc_inv_rec_t *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        flc_inv_rec_clear(&r[i]);
}

static int all_status(const flc_inv_rec_t *r, size_t n, int status)
{
    for (size_t i = 0; i < n; i++)
        if (r[i].status != status)
            return 0;
    return 1;
}

TEST(round_trip_and_records)
{
    flc_pool_t *p = pool_with(4, 10000, 0, 512);
    const char *ev[] = {"{\"role\":\"probe\",\"x\":42,\"burn_ms\":30,\"sleep_ms\":20}"};
    flc_inv_rec_t r[1];
    flc_err_t e = {0};
    CHECK(flc_pool_invoke(p, ev, 1, r, &e) == 0, "a batch of one event runs");
    CHECK(r[0].status == FLC_INV_OK, "probe answers ok (%s)", r[0].error);
    const cJSON *res = flc_inv_result(&r[0]);
    const cJSON *echo = cJSON_GetObjectItem(res, "echo");
    CHECK(flc_ev_int(echo, "x", 0) == 42, "the event comes back in the result (x=42)");
    CHECK(r[0].cold == 1 && r[0].attempts == 1, "first invocation is cold, one attempt");
    CHECK(r[0].pid > 0 && flc_ev_int(res, "pid", 0) == r[0].pid,
          "record pid %d is the instance that answered", r[0].pid);
    CHECK(fabs(r[0].compute_ms - 30.0) < 1e-9, "compute_ms is the function's own report (%.2f)",
          r[0].compute_ms);
    CHECK(r[0].comm_ms >= 19.0 && r[0].comm_ms < 500, "comm_ms covers the 20 ms sleep (%.2f)",
          r[0].comm_ms);
    CHECK(r[0].duration_ms >= 50.0, "duration %.2f ms covers compute and comm", r[0].duration_ms);
    CHECK(r[0].billed_ms >= r[0].duration_ms && (double)r[0].billed_ms < r[0].duration_ms + 1.0,
          "billed %llu ms is duration %.3f rounded up to a whole ms",
          (unsigned long long)r[0].billed_ms, r[0].duration_ms);
    double gb_s = 512.0 / 1024.0 * (double)r[0].billed_ms / 1000.0;
    CHECK(fabs(r[0].gb_s - gb_s) < 1e-12, "GB-s = 0.5 GB x billed seconds (%.6f)", r[0].gb_s);
    CHECK(fabs(r[0].cost_usd - gb_s * FLC_LAMBDA_X86_PRICE_GB_S) < 1e-15,
          "cost = GB-s x default Lambda price (%.3e USD)", r[0].cost_usd);
    CHECK(r[0].peak_rss_kb > 1000 && r[0].peak_rss_kb < 512 * 1024,
          "peak RSS is measured (%llu kB)", (unsigned long long)r[0].peak_rss_kb);
    cJSON *j = flc_inv_rec_json(&r[0]);
    CHECK(strcmp(flc_ev_str(j, "status", ""), "ok") == 0 && flc_ev_bool(j, "cold", 0) == 1,
          "record prints as JSON with status and cold");
    cJSON_Delete(j);
    clear_all(r, 1);

    /* Event text with newlines inside is re-encoded into one line; bad
     * JSON is the function's error, and the warm instance survives it. */
    const char *ev2[] = {"{\n \"role\": \"probe\",\n \"y\": 7\n}", "this is not json",
                         "{\"role\":\"probe\",\"print\":\"stray output\"}"};
    flc_inv_rec_t r2[3];
    CHECK(flc_pool_invoke(p, ev2, 3, r2, &e) == 0, "second batch runs");
    CHECK(r2[0].status == FLC_INV_OK &&
              flc_ev_int(cJSON_GetObjectItem(flc_inv_result(&r2[0]), "echo"), "y", 0) == 7,
          "an event spanning lines arrives whole");
    CHECK(r2[1].status == FLC_INV_ERROR && strstr(r2[1].error, "not valid JSON") != NULL,
          "bad JSON is reported as an error: '%s'", r2[1].error);
    CHECK(r2[2].status == FLC_INV_OK, "a handler printing to stdout does not corrupt results");
    clear_all(r2, 3);
    flc_pool_free(p);
}

TEST(concurrency_and_warm)
{
    enum { N = 6 };
    flc_pool_t *p = pool_with(N, 20000, 0, 0);
    const char *ev[N];
    for (int i = 0; i < N; i++)
        ev[i] = "{\"role\":\"probe\",\"sleep_ms\":400}";
    flc_inv_rec_t r[N];
    flc_err_t e = {0};
    uint64_t t0 = flc_now_ns();
    CHECK(flc_pool_invoke(p, ev, N, r, &e) == 0, "batch of %d runs", N);
    double wall = (double)(flc_now_ns() - t0) / 1e6;
    CHECK(all_status(r, N, FLC_INV_OK), "all %d invocations ok", N);
    CHECK(wall < 1600.0, "%d x 400 ms ran concurrently in %.0f ms (serial: 2400)", N, wall);
    int pids[N], cold = 0;
    for (int i = 0; i < N; i++) {
        pids[i] = r[i].pid;
        cold += r[i].cold;
    }
    int distinct = 0;
    for (int i = 0; i < N; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++)
            seen |= pids[j] == pids[i];
        distinct += !seen;
    }
    CHECK(distinct == N && cold == N, "%d distinct cold instances (%d cold)", distinct, cold);
    clear_all(r, N);
    flc_pool_stats_t st;
    flc_pool_stats(p, &st);
    uint64_t starts = st.cold_starts;

    for (int i = 0; i < N; i++)
        ev[i] = "{\"role\":\"probe\",\"burn_ms\":5}";
    CHECK(flc_pool_invoke(p, ev, N, r, &e) == 0, "second batch runs");
    int warm_same = 1;
    for (int i = 0; i < N; i++) {
        int known = 0;
        for (int j = 0; j < N; j++)
            known |= r[i].pid == pids[j];
        warm_same &= r[i].status == FLC_INV_OK && r[i].cold == 0 && known;
    }
    CHECK(warm_same, "second batch runs warm on the same processes");
    flc_pool_stats(p, &st);
    CHECK(st.cold_starts == starts, "no new instance was started (%llu)",
          (unsigned long long)st.cold_starts);
    clear_all(r, N);
    flc_pool_free(p);

    /* The concurrency limit holds: 4 x 150 ms on 2 slots takes >= 300 ms. */
    p = pool_with(2, 20000, 0, 0);
    for (int i = 0; i < 4; i++)
        ev[i] = "{\"role\":\"probe\",\"sleep_ms\":150}";
    t0 = flc_now_ns();
    flc_pool_invoke(p, ev, 4, r, &e);
    wall = (double)(flc_now_ns() - t0) / 1e6;
    CHECK(all_status(r, 4, FLC_INV_OK) && wall >= 295.0,
          "concurrency 2 runs 4 x 150 ms in two waves (%.0f ms)", wall);
    flc_pool_stats(p, &st);
    CHECK(st.cold_starts == 2, "only 2 instances were needed (%llu)",
          (unsigned long long)st.cold_starts);
    clear_all(r, 4);
    flc_pool_free(p);
}

TEST(timeout_and_errors)
{
    flc_pool_t *p = pool_with(2, 1500, 0, 0); /* room for a cold start under ASan on a busy machine */
    const char *ev[] = {"{\"role\":\"probe\",\"sleep_ms\":5000}",
                        "{\"role\":\"probe\",\"fail\":\"on purpose\"}"};
    flc_inv_rec_t r[2];
    flc_err_t e = {0};
    uint64_t t0 = flc_now_ns();
    flc_pool_invoke(p, ev, 2, r, &e);
    double wall = (double)(flc_now_ns() - t0) / 1e6;
    CHECK(r[0].status == FLC_INV_TIMEOUT, "a 5 s sleep with a 1500 ms timeout is '%s'",
          flc_inv_status_name(r[0].status));
    CHECK(strstr(r[0].error, "timed out after 1500 ms") != NULL, "timeout message: '%s'",
          r[0].error);
    CHECK(wall < 4000 && r[0].duration_ms >= 1495 && r[0].billed_ms >= 1500,
          "the instance was killed at the deadline (%.0f ms)", r[0].duration_ms);
    CHECK(kill(r[0].pid, 0) != 0, "the timed-out process %d is gone", r[0].pid);
    CHECK(r[1].status == FLC_INV_ERROR && strcmp(r[1].error, "probe asked to fail: on purpose") == 0,
          "a handler error is status error with its message: '%s'", r[1].error);
    int failed_pid = r[1].pid;
    clear_all(r, 2);
    const char *ok[] = {"{\"role\":\"probe\"}"};
    flc_pool_invoke(p, ok, 1, r, &e);
    CHECK(r[0].status == FLC_INV_OK && r[0].pid == failed_pid && r[0].cold == 0,
          "the instance whose handler failed stays warm and serves the next event");
    clear_all(r, 1);
    flc_pool_free(p);
}

TEST(crash_retries)
{
    flc_pool_t *p = pool_with(2, 10000, 2, 0);
    const char *ev[] = {"{\"role\":\"probe\",\"crash\":true}"};
    flc_inv_rec_t r[1];
    flc_err_t e = {0};
    flc_pool_invoke(p, ev, 1, r, &e);
    CHECK(r[0].status == FLC_INV_CRASH, "an aborting function is '%s'",
          flc_inv_status_name(r[0].status));
    CHECK(r[0].attempts == 3, "it was tried 1 + 2 retries = %d times", r[0].attempts);
    CHECK(strstr(r[0].error, "signal 6") != NULL, "crash message names the signal: '%s'",
          r[0].error);
    flc_pool_stats_t st;
    flc_pool_stats(p, &st);
    CHECK(st.cold_starts == 3, "each attempt ran on a fresh instance (%llu starts)",
          (unsigned long long)st.cold_starts);
    clear_all(r, 1);

    char dir[] = "/tmp/flc_rt_XXXXXX", path[64], evtext[160];
    if (mkdtemp(dir) == NULL)
        flc_t_fatal("mkdtemp failed");
    snprintf(path, sizeof path, "%s/crashed", dir);
    snprintf(evtext, sizeof evtext, "{\"role\":\"probe\",\"crash_once\":\"%s\"}", path);
    const char *ev2[] = {evtext};
    flc_pool_invoke(p, ev2, 1, r, &e);
    CHECK(r[0].status == FLC_INV_OK && r[0].attempts == 2 && r[0].cold == 1,
          "a crash followed by success reports ok after 2 attempts (%s, %d)",
          flc_inv_status_name(r[0].status), r[0].attempts);
    clear_all(r, 1);
    unlink(path);
    rmdir(dir);
    flc_pool_free(p);

    p = pool_with(1, 10000, 0, 0);
    flc_pool_invoke(p, ev, 1, r, &e);
    CHECK(r[0].status == FLC_INV_CRASH && r[0].attempts == 1, "retries 0: one attempt only");
    clear_all(r, 1);
    flc_pool_free(p);
}

TEST(memory_limit)
{
    flc_pool_t *p = pool_with(2, 20000, 0, 128);
    const char *ev[] = {"{\"role\":\"probe\",\"alloc_mb\":1024,\"sleep_ms\":300}",
                        "{\"role\":\"probe\",\"alloc_mb\":48,\"sleep_ms\":50}"};
    flc_inv_rec_t r[2];
    flc_err_t e = {0};
    flc_pool_invoke(p, ev, 2, r, &e);
    CHECK(r[0].status == FLC_INV_ERROR || r[0].status == FLC_INV_CRASH,
          "1024 MB in a 128 MB function fails (%s)", flc_inv_status_name(r[0].status));
    CHECK(strstr(r[0].error, "allocate") != NULL || strstr(r[0].error, "memory") != NULL,
          "the failure is about memory: '%s'", r[0].error);
    CHECK(r[1].status == FLC_INV_OK, "48 MB fits in 128 MB (%s)", r[1].error);
    CHECK(r[1].peak_rss_kb >= 48 * 1024, "peak RSS %llu kB covers the 48 MB touched",
          (unsigned long long)r[1].peak_rss_kb);
    clear_all(r, 2);
    flc_pool_free(p);

    /* Peak RSS is per invocation on a warm instance (VmHWM is reset between
     * invocations), where the kernel lets us reset it. */
    if (flc_proc_reset_hwm(getpid()) == 0) {
        p = pool_with(1, 20000, 0, 256);
        const char *big[] = {"{\"role\":\"probe\",\"alloc_mb\":64}"};
        const char *small[] = {"{\"role\":\"probe\"}"};
        flc_pool_invoke(p, big, 1, r, &e);
        flc_pool_invoke(p, small, 1, r + 1, &e);
        CHECK(r[0].status == FLC_INV_OK && r[1].status == FLC_INV_OK && r[1].cold == 0 &&
                  r[0].peak_rss_kb >= 64 * 1024 && r[1].peak_rss_kb + 32 * 1024 < r[0].peak_rss_kb,
              "warm peak RSS is per invocation (%llu kB after %llu kB)",
              (unsigned long long)r[1].peak_rss_kb, (unsigned long long)r[0].peak_rss_kb);
        clear_all(r, 2);
        flc_pool_free(p);
    }
}

typedef struct side {
    flc_pool_t *p;
    int rc, ok;
} side_t;

static void *other_thread(void *arg)
{
    side_t *s = arg;
    const char *ev[] = {"{\"role\":\"probe\",\"k\":1}", "{\"role\":\"probe\",\"k\":2}"};
    flc_inv_rec_t r[2];
    flc_err_t e = {0};
    s->rc = flc_pool_invoke(s->p, ev, 2, r, &e);
    s->ok = all_status(r, 2, FLC_INV_OK);
    clear_all(r, 2);
    return NULL;
}

TEST(async_and_threads)
{
    flc_pool_t *p = pool_with(4, 20000, 0, 0);
    const char *slow[] = {"{\"role\":\"probe\",\"sleep_ms\":600}"};
    flc_inv_rec_t ra[1], rb[2];
    flc_err_t e = {0};
    flc_batch_t *a = flc_pool_start(p, slow, 1, ra, &e);
    CHECK(a != NULL, "an asynchronous batch starts");
    const char *fast[] = {"{\"role\":\"probe\"}", "{\"role\":\"probe\"}"};
    CHECK(flc_pool_invoke(p, fast, 2, rb, &e) == 0 && all_status(rb, 2, FLC_INV_OK),
          "a second batch on the same pool runs while the first is in flight");
    CHECK(flc_batch_done(a) == 0, "the slow batch is still running");
    CHECK(flc_batch_wait(a, 10) == FLC_ETIMEOUT, "a short wait times out and keeps the batch");
    CHECK(flc_batch_wait(a, 0) == 0 && ra[0].status == FLC_INV_OK, "then it completes ok");
    clear_all(ra, 1);
    clear_all(rb, 2);

    /* Another thread drives a second pool while this one runs a batch. */
    flc_pool_t *q = pool_with(2, 20000, 0, 0);
    side_t s = {.p = q};
    pthread_t th;
    pthread_create(&th, NULL, other_thread, &s);
    CHECK(flc_pool_invoke(p, fast, 2, rb, &e) == 0 && all_status(rb, 2, FLC_INV_OK),
          "this thread's batch is ok");
    pthread_join(th, NULL);
    CHECK(s.rc == 0 && s.ok, "the other thread's batch on its own pool is ok");
    clear_all(rb, 2);
    flc_pool_free(q);

    /* max_warm trims idle instances after a batch. */
    flc_pool_free(p);
    flc_pool_cfg_t cfg;
    flc_pool_cfg_init(&cfg);
    cfg.fn_path = g_fn;
    cfg.concurrency = 3;
    cfg.max_warm = 1;
    p = flc_pool_new(&cfg, &e);
    const char *three[] = {"{\"role\":\"probe\",\"sleep_ms\":100}",
                           "{\"role\":\"probe\",\"sleep_ms\":100}",
                           "{\"role\":\"probe\",\"sleep_ms\":100}"};
    flc_inv_rec_t r3[3];
    flc_pool_invoke(p, three, 3, r3, &e);
    flc_pool_stats_t st;
    for (int i = 0; i < 200; i++) {
        flc_pool_stats(p, &st);
        if (st.alive == 1)
            break;
        flc_sleep_ms(10);
    }
    CHECK(all_status(r3, 3, FLC_INV_OK) && st.alive == 1 && st.idle == 1,
          "max_warm 1 keeps one of 3 instances (alive %u, idle %u)", st.alive, st.idle);
    clear_all(r3, 3);
    flc_pool_free(p);

    cfg.max_warm = 0;
    cfg.cold_only = 1;
    p = flc_pool_new(&cfg, &e);
    flc_pool_invoke(p, fast, 1, rb, &e);
    flc_pool_invoke(p, fast, 1, rb + 1, &e);
    CHECK(rb[0].cold && rb[1].cold, "cold_only starts every invocation cold");
    clear_all(rb, 2);
    flc_pool_free(p);

    cfg.fn_path = "/nonexistent/flcache-fn";
    CHECK(flc_pool_new(&cfg, &e) == NULL && strstr(e.msg, "/nonexistent/flcache-fn") != NULL,
          "a missing binary is refused by name: '%s'", e.msg);
}

static void setup(void)
{
    const char *dir = getenv("FLCACHE_BUILD_DIR");
    snprintf(g_fn, sizeof g_fn, "%s/flcache-fn", dir != NULL ? dir : ".");
    if (access(g_fn, X_OK) != 0)
        flc_t_fatal("%s is not built (set FLCACHE_BUILD_DIR)", g_fn);
}

TEST_LIST_SHARED(setup, NULL, TEST_ENTRY(round_trip_and_records),
                 TEST_ENTRY(concurrency_and_warm), TEST_ENTRY(timeout_and_errors),
                 TEST_ENTRY(crash_retries), TEST_ENTRY(memory_limit),
                 TEST_ENTRY(async_and_threads))
