/* The remote platforms' failure paths and bills (issue 21), against the
 * stand-ins of tests/platform_fakes.h: throttling (on demand and past a
 * reserved concurrency) retried with backoff and counted as attempts; a
 * Lambda function error (the runtime's /error), a handler's ok:false and an
 * OpenWhisk application error arrive with their messages and request ids;
 * a wrong secret (botocore refuses the signature) or key is refused
 * without showing it; an Invoke by full function ARN passes botocore
 * (issue 13); billing from the REPORT line and the activation record, at
 * the platform's memory; a Lambda timeout is status timeout; an OpenWhisk
 * activation past the blocking wait is polled to its end. No cache needed. */
#include "base/event.h"
#include "tests/platform_fakes.h"

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

TEST_LIST(TEST_ENTRY(report_line_parse), TEST_ENTRY(lambda_throttling_retried),
          TEST_ENTRY(openwhisk_throttling_retried), TEST_ENTRY(lambda_errors_arn_and_billing),
          TEST_ENTRY(openwhisk_errors_and_billing), TEST_ENTRY(openwhisk_long_activation_polled),
          TEST_ENTRY(lambda_timeout))
