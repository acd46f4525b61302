/* runtime/invoke_remote request building (no network), runtime/cost
 * arithmetic and base/event getters. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/config.h"
#include "runtime/cost.h"
#include "base/event.h"
#include "runtime/invoke_remote.h"
#include "tests/harness.h"

static int has_header(const flc_http_req_t *r, const char *h)
{
    for (int i = 0; i < r->nheaders; i++)
        if (strcmp(r->headers[i], h) == 0)
            return 1;
    return 0;
}

TEST(lambda_request)
{
    flc_lambda_cfg_t cfg = {.region = "eu-west-1", .access_key = "AKIDEXAMPLE",
                            .secret_key = "wJalrXUtnFEMI/K7MDENG", .session_token = "FQoGtoken"};
    flc_http_req_t req;
    flc_err_t e = {0};
    const char *payload = "{\"role\":\"worker\",\"rank\":3}";
    CHECK(flc_lambda_build(&cfg, "flcache-fn", payload, &req, &e) == 0, "lambda request builds");
    CHECK(strcmp(req.url, "https://lambda.eu-west-1.amazonaws.com/2015-03-31/functions/"
                          "flcache-fn/invocations") == 0,
          "lambda URL: %s", req.url);
    CHECK(strcmp(req.method, "POST") == 0 && req.body == payload &&
              req.body_len == strlen(payload),
          "POST with the payload as body");
    CHECK(strcmp(req.aws_sigv4, "aws:amz:eu-west-1:lambda") == 0,
          "SigV4 provider string for CURLOPT_AWS_SIGV4: %s", req.aws_sigv4);
    CHECK(strcmp(req.userpwd, "AKIDEXAMPLE:wJalrXUtnFEMI/K7MDENG") == 0 && !req.basic_auth,
          "SigV4 credentials go in CURLOPT_USERPWD, not basic auth");
    CHECK(has_header(&req, "Content-Type: application/json") &&
              has_header(&req, "X-Amz-Invocation-Type: RequestResponse") &&
              has_header(&req, "X-Amz-Security-Token: FQoGtoken"),
          "content type, synchronous invocation type and session token headers");
    CHECK(req.timeout_ms == 900000, "default timeout is Lambda's 15 minutes");
    flc_http_req_clear(&req);

    cfg.session_token = NULL;
    cfg.async = 1;
    cfg.qualifier = "live";
    cfg.endpoint = "http://127.0.0.1:4566/";
    CHECK(flc_lambda_build(&cfg, "arn:aws:lambda:eu-west-1:123456789012:function:fl fn", "{}",
                           &req, &e) == 0,
          "ARN, qualifier and endpoint override build");
    CHECK(strcmp(req.url, "http://127.0.0.1:4566/2015-03-31/functions/arn:aws:lambda:eu-west-1:"
                          "123456789012:function:fl%20fn/invocations?Qualifier=live") == 0,
          "ARN keeps ':' and escapes the space; endpoint slash trimmed: %s", req.url);
    CHECK(has_header(&req, "X-Amz-Invocation-Type: Event"), "async uses invocation type Event");
    int token = 0;
    for (int i = 0; i < req.nheaders; i++)
        token |= strncmp(req.headers[i], "X-Amz-Security-Token", 20) == 0;
    CHECK(!token, "no security token header without a session token");
    flc_http_req_clear(&req);

    cfg.secret_key = NULL;
    CHECK(flc_lambda_build(&cfg, "f", "{}", &req, &e) == FLC_EINVAL &&
              strstr(e.msg, "AWS_SECRET_ACCESS_KEY") != NULL,
          "missing credentials are named: '%s'", e.msg);
    flc_http_req_clear(&req);
    cfg.secret_key = "s";
    cfg.region = NULL;
    CHECK(flc_lambda_build(&cfg, "f", "{}", &req, &e) == FLC_EINVAL &&
              strstr(e.msg, "AWS_REGION") != NULL,
          "a missing region is named: '%s'", e.msg);
    flc_http_req_clear(&req);

    setenv("AWS_REGION", "ap-south-1", 1);
    setenv("AWS_ACCESS_KEY_ID", "AK", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "SK", 1);
    unsetenv("AWS_SESSION_TOKEN");
    flc_config_t conf;
    CHECK(flc_config_read(&conf, &e) == 0, "the configuration reads: %s", e.msg);
    flc_config_lambda_cfg(&conf, &cfg);
    CHECK(cfg.region && cfg.access_key && cfg.secret_key &&
              strcmp(cfg.region, "ap-south-1") == 0 && strcmp(cfg.access_key, "AK") == 0 &&
              strcmp(cfg.secret_key, "SK") == 0 && cfg.session_token == NULL,
          "lambda settings come from the standard AWS variables");
    flc_config_clear(&conf);
}

TEST(openwhisk_request)
{
    flc_ow_cfg_t cfg = {.apihost = "openwhisk.example.org", .auth = "23bc46b1:123zO3xZCL",
                        .ns = "guest@example.org_dev"};
    flc_http_req_t req;
    flc_err_t e = {0};
    CHECK(flc_ow_build(&cfg, "flcache/fn", "{\"role\":\"query\"}", &req, &e) == 0,
          "openwhisk request builds");
    CHECK(strcmp(req.url, "https://openwhisk.example.org/api/v1/namespaces/"
                          "guest%40example.org_dev/actions/flcache/fn?blocking=true&result=true") ==
              0,
          "openwhisk URL (https default, namespace escaped, package kept): %s", req.url);
    CHECK(req.basic_auth == 1 && strcmp(req.userpwd, "23bc46b1:123zO3xZCL") == 0 &&
              req.aws_sigv4 == NULL,
          "basic auth with user:key");
    CHECK(has_header(&req, "Content-Type: application/json") && req.timeout_ms == 70000,
          "JSON content type and a timeout above the 60 s blocking wait");
    flc_http_req_clear(&req);

    cfg.apihost = "http://172.17.0.1:3233/";
    cfg.ns = NULL;
    cfg.insecure = 1;
    CHECK(flc_ow_build(&cfg, "fn", "{}", &req, &e) == 0 &&
              strcmp(req.url, "http://172.17.0.1:3233/api/v1/namespaces/_/actions/fn"
                              "?blocking=true&result=true") == 0 &&
              req.insecure == 1,
          "explicit scheme kept, default namespace '_': %s", req.url);
    flc_http_req_clear(&req);
    cfg.auth = "nocolon";
    CHECK(flc_ow_build(&cfg, "fn", "{}", &req, &e) == FLC_EINVAL && strstr(e.msg, "user:key"),
          "auth without ':' is refused: '%s'", e.msg);
    flc_http_req_clear(&req);
}

TEST(cost_and_event)
{
    CHECK(flc_cost_billed_ms(0.2) == 1 && flc_cost_billed_ms(0) == 1 &&
              flc_cost_billed_ms(12.0) == 12 && flc_cost_billed_ms(12.0001) == 13,
          "billing rounds up to whole ms, at least 1");
    CHECK(fabs(flc_cost_gb_s(2048, 1500) - 3.0) < 1e-12, "2 GB for 1.5 s is 3 GB-s");
    CHECK(fabs(flc_cost_usd(1024, 1000, FLC_LAMBDA_X86_PRICE_GB_S, 0) - 0.0000166667) < 1e-15,
          "1 GB-s costs the Lambda x86 price");
    CHECK(fabs(flc_cost_usd(128, 100, 1.0, FLC_LAMBDA_PRICE_REQUEST) -
               (0.125 * 0.1 + 0.0000002)) < 1e-12,
          "the request fee is added when configured");

    flc_err_t e = {0};
    cJSON *ev = flc_ev_parse("{\"s\":\"x\",\"i\":3,\"f\":2.5,\"b\":true}", 33, &e);
    CHECK(ev != NULL, "event parses");
    CHECK(strcmp(flc_ev_str(ev, "s", ""), "x") == 0 && flc_ev_int(ev, "i", 0) == 3 &&
              flc_ev_num(ev, "f", 0) == 2.5 && flc_ev_bool(ev, "b", 0) == 1 &&
              flc_ev_int(ev, "missing", -7) == -7 && strcmp(flc_ev_str(ev, "i", "d"), "d") == 0,
          "typed getters and defaults");
    long long v;
    CHECK(flc_ev_need_int(ev, "i", 0, 2, &v, &e) == FLC_EINVAL &&
              strcmp(e.msg, "event field 'i' must be an integer in 0..2, not 3") == 0,
          "range errors name the field: '%s'", e.msg);
    CHECK(flc_ev_need_int(ev, "f", 0, 9, &v, &e) == FLC_EINVAL && strstr(e.msg, "integer"),
          "2.5 is not an integer");
    const char *s;
    CHECK(flc_ev_need_str(ev, "nope", &s, &e) == FLC_EINVAL &&
              strcmp(e.msg, "event field 'nope' is missing") == 0,
          "missing fields are named");
    cJSON_Delete(ev);
    CHECK(flc_ev_parse("{\"a\":", 5, &e) == NULL && e.code == FLC_EDATA, "truncated JSON fails");
    CHECK(flc_ev_parse("42", 2, &e) == NULL && strstr(e.msg, "not an object"),
          "a number is not an event");
}

TEST_LIST(TEST_ENTRY(lambda_request), TEST_ENTRY(openwhisk_request), TEST_ENTRY(cost_and_event))
