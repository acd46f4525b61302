/* base/event: the one set of rules for event fields, checked once here
 * (integers whole and in range, numbers finite, strings, bools, required
 * and optional fields, wrong types never becoming the default, messages that
 * name the field), then end to end: the flcache-fn roles refuse bad fields
 * with ok:false naming them, the aggregator role reports its wait for
 * arrivals as communication, not compute, and an OpenWhisk action's bound
 * parameter (FLCACHE_REDIS in the event) reaches the role as the
 * environment's would. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aggregator/reduce_scatter.h"
#include "base/event.h"
#include "tests/harness.h"

static cJSON *ev_of(const char *text)
{
    flc_err_t e = {0};
    cJSON *ev = flc_ev_parse(text, strlen(text), &e);
    if (ev == NULL)
        flc_t_fatal("test event does not parse: %s: %s", text, e.msg);
    return ev;
}

TEST(integers)
{
    cJSON *ev = ev_of("{\"batch\":1.5,\"big\":1e300,\"size\":-1,\"ok\":64,\"s\":\"3\","
                      "\"top\":9007199254740992,\"inf\":1e999}");
    flc_err_t e = {0};
    long long v = 7;
    CHECK(flc_ev_need_int(ev, "batch", 1, 65536, &v, &e) == FLC_EINVAL &&
              strcmp(e.msg, "event field 'batch' must be an integer in 1..65536, not 1.5") == 0 &&
              v == 7,
          "1.5 is not an integer, *out untouched: '%s'", e.msg);
    CHECK(flc_ev_opt_int(ev, "batch", 1, 65536, 32, &v, &e) == FLC_EINVAL,
          "a present bad optional field is an error, not its default");
    CHECK(flc_ev_need_int(ev, "big", 0, 9000000000000000LL, &v, &e) == FLC_EINVAL &&
              strstr(e.msg, "'big'") && strstr(e.msg, "not 1e+300"),
          "1e300 is out of any integer range: '%s'", e.msg);
    CHECK(flc_ev_need_int(ev, "inf", 0, 10, &v, &e) == FLC_EINVAL && strstr(e.msg, "not inf"),
          "1e999 (parsed as infinity) is refused: '%s'", e.msg);
    CHECK(flc_ev_need_int(ev, "size", 0, 1000000, &v, &e) == FLC_EINVAL &&
              strcmp(e.msg, "event field 'size' must be an integer in 0..1000000, not -1") == 0,
          "a negative size is refused: '%s'", e.msg);
    CHECK(flc_ev_need_int(ev, "ok", 0, 63, &v, &e) == FLC_EINVAL &&
              strcmp(e.msg, "event field 'ok' must be an integer in 0..63, not 64") == 0,
          "one over the maximum is refused: '%s'", e.msg);
    CHECK(flc_ev_need_int(ev, "s", 0, 10, &v, &e) == FLC_EINVAL &&
              strcmp(e.msg, "event field 's' must be an integer in 0..10, not \"3\"") == 0,
          "a string is not an integer: '%s'", e.msg);
    CHECK(flc_ev_need_int(ev, "ok", 1, 65536, &v, &e) == 0 && v == 64, "64 reads as 64");
    CHECK(flc_ev_need_int(ev, "top", 0, 9007199254740992LL, &v, &e) == 0 &&
              v == 9007199254740992LL,
          "2^53 reads exactly");
    CHECK(flc_ev_opt_int(ev, "absent", 0, 10, 5, &v, &e) == 0 && v == 5,
          "an absent optional integer is its default");
    CHECK(flc_ev_need_int(ev, "job", 0, 10, &v, &e) == FLC_EINVAL &&
              strcmp(e.msg, "event field 'job' is missing") == 0,
          "a missing required field is named: '%s'", e.msg);
    cJSON_Delete(ev);
}

TEST(numbers)
{
    cJSON *ev = ev_of("{\"lr\":0.5,\"neg\":-2,\"inf\":1e999,\"s\":\"x\"}");
    cJSON_AddItemToObject(ev, "nan", cJSON_CreateNumber(NAN)); /* an in-process event can */
    flc_err_t e = {0};
    double d = 0;
    CHECK(flc_ev_need_num(ev, "lr", 0, 1, &d, &e) == 0 && d == 0.5, "0.5 reads as 0.5");
    CHECK(flc_ev_need_num(ev, "nan", -INFINITY, INFINITY, &d, &e) == FLC_EINVAL &&
              strcmp(e.msg, "event field 'nan' must be a finite number, not nan") == 0,
          "NaN is refused: '%s'", e.msg);
    CHECK(flc_ev_opt_num(ev, "inf", 0, INFINITY, 1, &d, &e) == FLC_EINVAL &&
              strcmp(e.msg, "event field 'inf' must be a number >= 0, not inf") == 0,
          "a huge number (infinity) is refused: '%s'", e.msg);
    CHECK(flc_ev_opt_num(ev, "neg", 0, 1000, 1, &d, &e) == FLC_EINVAL &&
              strcmp(e.msg, "event field 'neg' must be a number in 0..1000, not -2") == 0,
          "a number below its range is refused: '%s'", e.msg);
    CHECK(flc_ev_opt_num(ev, "s", 0, 1, 0.1, &d, &e) == FLC_EINVAL && strstr(e.msg, "'s'"),
          "a string is not a number: '%s'", e.msg);
    CHECK(flc_ev_opt_num(ev, "absent", 0, 1, 0.25, &d, &e) == 0 && d == 0.25,
          "an absent optional number is its default");
    cJSON_Delete(ev);
}

TEST(strings_bools_arrays)
{
    cJSON *ev = ev_of("{\"model\":3,\"name\":\"m\",\"crash\":1,\"yes\":true,\"no\":false,"
                      "\"gone\":null,\"ix\":[0,1.5,2],\"names\":[\"a\",7],\"notarr\":\"x\"}");
    flc_err_t e = {0};
    const char *s = NULL;
    int b = -1;
    CHECK(flc_ev_need_str(ev, "model", &s, &e) == FLC_EINVAL &&
              strcmp(e.msg, "event field 'model' must be a string, not 3") == 0,
          "a number is not a string: '%s'", e.msg);
    CHECK(flc_ev_opt_str(ev, "model", "softmax", &s, &e) == FLC_EINVAL,
          "... also when the field is optional");
    CHECK(flc_ev_need_str(ev, "name", &s, &e) == 0 && strcmp(s, "m") == 0, "a string reads");
    CHECK(flc_ev_opt_str(ev, "absent", "dflt", &s, &e) == 0 && strcmp(s, "dflt") == 0,
          "an absent optional string is its default");
    CHECK(flc_ev_opt_bool(ev, "crash", 0, &b, &e) == FLC_EINVAL &&
              strcmp(e.msg, "event field 'crash' must be true or false, not 1") == 0,
          "1 is not a bool: '%s'", e.msg);
    CHECK(flc_ev_need_bool(ev, "yes", &b, &e) == 0 && b == 1 &&
              flc_ev_opt_bool(ev, "no", 1, &b, &e) == 0 && b == 0 &&
              flc_ev_opt_bool(ev, "absent", 1, &b, &e) == 0 && b == 1,
          "true, false and an absent bool's default");
    CHECK(flc_ev_opt_str(ev, "gone", "d", &s, &e) == 0 && strcmp(s, "d") == 0 &&
              flc_ev_need_str(ev, "gone", &s, &e) == FLC_EINVAL &&
              strcmp(e.msg, "event field 'gone' is missing") == 0 && !flc_ev_has(ev, "gone") &&
              flc_ev_has(ev, "name"),
          "null counts as absent");

    const cJSON *arr = NULL, *it;
    CHECK(flc_ev_need_array(ev, "notarr", &arr, &e) == FLC_EINVAL &&
              strcmp(e.msg, "event field 'notarr' must be an array, not \"x\"") == 0,
          "a string is not an array: '%s'", e.msg);
    CHECK(flc_ev_need_array(ev, "ix", &arr, &e) == 0 && cJSON_GetArraySize(arr) == 3,
          "an array reads");
    size_t i = 0;
    int rc = 0;
    long long v;
    cJSON_ArrayForEach(it, arr)
    {
        if ((rc = flc_ev_item_int(it, "ix", i, 0, 10, &v, &e)) != 0)
            break;
        i++;
    }
    CHECK(rc == FLC_EINVAL && i == 1 &&
              strcmp(e.msg, "event field 'ix[1]' must be an integer in 0..10, not 1.5") == 0,
          "array items follow the same rules, named 'ix[1]': '%s'", e.msg);
    flc_ev_need_array(ev, "names", &arr, &e);
    CHECK(flc_ev_item_str(cJSON_GetArrayItem(arr, 1), "names", 1, &s, &e) == FLC_EINVAL &&
              strcmp(e.msg, "event field 'names[1]' must be a string, not 7") == 0,
          "a number item is not a string: '%s'", e.msg);
    cJSON_Delete(ev);

    cJSON *notobj = cJSON_CreateArray();
    CHECK(flc_ev_need_str(notobj, "job", &s, &e) == FLC_EINVAL && strstr(e.msg, "not a JSON "
                                                                         "object"),
          "an event that is not an object is refused: '%s'", e.msg);
    cJSON_Delete(notobj);
}

/* Runs flcache-fn in local mode over the given events (one per line) and
 * returns its result lines parsed, in order; fatal when it cannot run. */
static int run_fn(const char *const *events, int n, cJSON **results)
{
    char path[] = "/tmp/flc_test_event_XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (f == NULL)
        flc_t_fatal("cannot create a temporary file");
    for (int i = 0; i < n; i++)
        fprintf(f, "%s\n", events[i]);
    fclose(f);
    char cmd[2048];
    static char out[1 << 16];
    /* flcache-fn-test: the shipped roles plus the test-only probe. */
    snprintf(cmd, sizeof cmd, "(%s/flcache-fn-test --local < %s 2>/dev/null)", flc_t_build_dir(),
             path);
    int rc = flc_t_run(cmd, out, sizeof out);
    unlink(path);
    char *line = out;
    for (int i = 0; i < n; i++) {
        char *nl = line != NULL ? strchr(line, '\n') : NULL;
        if (nl != NULL)
            *nl = '\0';
        results[i] = line != NULL ? cJSON_Parse(line) : NULL;
        line = nl != NULL ? nl + 1 : NULL;
    }
    return rc;
}

TEST(roles_refuse)
{
    static const char *const ev[] = {
        "{\"role\":\"client\",\"job\":\"j\",\"client\":\"c0\",\"round\":1.5,\"indices\":[0]}",
        "{\"role\":\"client\",\"job\":\"j\",\"client\":\"c0\",\"round\":1,\"batch\":\"32\","
        "\"indices\":[0],\"redis\":\"unix:///nonexistent\"}",
        "{\"role\":\"client\",\"job\":\"j\",\"client\":\"c0\",\"round\":1,\"indices\":[-1],"
        "\"redis\":\"unix:///nonexistent\"}",
        "{\"role\":\"worker\",\"job\":\"j\",\"rank\":0.5,\"workers\":2}",
        "{\"role\":\"aggregator\",\"job\":\"j\",\"round\":1,\"model_size\":1e300,"
        "\"expected\":[\"a\"]}",
        "{\"role\":\"query\",\"kind\":\"norms\",\"job\":\"j\",\"k\":-1}",
        "{\"role\":\"probe\",\"crash\":1}",
        "{\"role\":7}",
    };
    static const char *const want[] = {
        "event field 'round' must be an integer in 1..4294967295, not 1.5",
        "event field 'batch' must be an integer in 1..65536, not \"32\"",
        "event field 'indices[0]' must be an integer in 0..4294967295, not -1",
        "event field 'rank' must be an integer in 0..4095, not 0.5",
        "event field 'model_size' must be an integer in 0..9000000000000000, not 1e+300",
        "event field 'k' must be an integer in 0..4294967295, not -1",
        "event field 'crash' must be true or false, not 1",
        "event field 'role' must be a string, not 7",
    };
    enum { N = sizeof ev / sizeof *ev };
    cJSON *res[N];
    int rc = run_fn(ev, N, res);
    CHECK(rc == 0, "flcache-fn answers every bad event and exits 0 at EOF (exit %d)", rc);
    for (int i = 0; i < N; i++) {
        const char *err = flc_ev_str(res[i], "error", "(no result)");
        CHECK(res[i] != NULL && !flc_ev_bool(res[i], "ok", 1) && strcmp(err, want[i]) == 0,
              "role %s refuses a bad field with ok:false: '%s'",
              flc_ev_str(res[i], "role", "?"), err);
        cJSON_Delete(res[i]);
    }
}

/* One of two expected clients pushes; the merger waits out its deadline
 * for the other. That wait is communication in the aggregator's result. */
TEST(aggregator_comm)
{
    flc_fixture_t fx;
    flc_fixture_start(&fx, 0);
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(fx.unix_url, NULL, &e);
    if (s == NULL)
        flc_t_fatal("connect: %s", flc_err_msg(&e));
    float u[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    flc_rs_push_cfg_t pc = {.job = "evagg", .round = 1, .client = "c0", .num_shards = 1,
                            .model_size = 8, .num_samples = 1};
    CHECK(flc_rs_push(s, &pc, u, &e) == 0, "c0 pushes its update (%s)", e.msg);
    char ev[512];
    snprintf(ev, sizeof ev,
             "{\"role\":\"aggregator\",\"job\":\"evagg\",\"round\":1,\"model_size\":8,"
             "\"expected\":[\"c0\",\"c1\"],\"deadline_ms\":400,\"redis\":\"%s\"}",
             fx.unix_url);
    const char *evs[] = {ev};
    cJSON *res = NULL;
    run_fn(evs, 1, &res);
    double comm = flc_ev_num(res, "comm_ms", -1), compute = flc_ev_num(res, "compute_ms", -1);
    CHECK(flc_ev_bool(res, "ok", 0) && comm >= 350 && compute >= 0 && compute < comm,
          "the aggregator's wait for c1 is comm_ms (%.1f), not compute_ms (%.1f)", comm,
          compute);
    cJSON_Delete(res);
    flc_store_close(s);
    flc_fixture_stop(&fx);
}

/* Runs `flcache-fn '<event>'` (OpenWhisk mode) without FLCACHE_REDIS in its
 * environment and returns its last stdout line parsed (NULL when none
 * parses); *rc gets its exit code. */
static cJSON *run_openwhisk(const char *event, int *rc)
{
    char cmd[2048];
    static char out[1 << 16];
    snprintf(cmd, sizeof cmd, "(env -u FLCACHE_REDIS %s/flcache-fn '%s' 2>/dev/null)",
             flc_t_build_dir(), event);
    *rc = flc_t_run(cmd, out, sizeof out);
    size_t n = strlen(out);
    while (n > 0 && out[n - 1] == '\n')
        out[--n] = '\0';
    char *last = strrchr(out, '\n');
    return cJSON_Parse(last != NULL ? last + 1 : out);
}

/* `wsk action update --param FLCACHE_REDIS <url>`: OpenWhisk delivers the
 * parameter in every event; flcache-fn takes it as its FLCACHE_REDIS, so the
 * aggregator role, whose event does not name the cache, opens it. */
TEST(openwhisk_param_reaches_role)
{
    flc_fixture_t fx;
    flc_fixture_start(&fx, 0);
    flc_err_t e = {0};
    flc_store_t *s = flc_store_open(fx.unix_url, NULL, &e);
    if (s == NULL)
        flc_t_fatal("connect: %s", flc_err_msg(&e));
    float u[4] = {1, 2, 3, 4};
    flc_rs_push_cfg_t pc = {.job = "owp", .round = 1, .client = "c0", .num_shards = 1,
                            .model_size = 4, .num_samples = 1};
    CHECK(flc_rs_push(s, &pc, u, &e) == 0, "c0 pushes its update (%s)", e.msg);
    static const char agg[] = "{\"role\":\"aggregator\",\"job\":\"owp\",\"round\":1,"
                              "\"model_size\":4,\"expected\":[\"c0\"],\"deadline_ms\":3000";
    char ev[1024];
    int rc;
    snprintf(ev, sizeof ev, "%s,\"FLCACHE_REDIS\":\"%s\"}", agg, fx.unix_url);
    cJSON *r = run_openwhisk(ev, &rc);
    const cJSON *parts = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"), "participants");
    CHECK(rc == 0 && flc_ev_bool(r, "ok", 0) && cJSON_GetArraySize(parts) == 1,
          "the event's FLCACHE_REDIS parameter is the aggregator's cache: it merged c0 (%s)",
          flc_ev_str(r, "error", "ok"));
    cJSON_Delete(r);

    snprintf(ev, sizeof ev, "%s}", agg);
    r = run_openwhisk(ev, &rc);
    CHECK(rc == 0 && r != NULL && !flc_ev_bool(r, "ok", 1) &&
              strstr(flc_ev_str(r, "error", ""), "FLCACHE_REDIS") != NULL,
          "without the parameter (and the variable) the role has no cache: '%s'",
          flc_ev_str(r, "error", "(no result)"));
    cJSON_Delete(r);

    snprintf(ev, sizeof ev, "%s,\"FLCACHE_REDIS\":\"%s\",\"FLCACHE_CHUNK\":\"12q\"}", agg,
             fx.unix_url);
    r = run_openwhisk(ev, &rc);
    CHECK(rc == 2 && r != NULL && !flc_ev_bool(r, "ok", 1) &&
              strstr(flc_ev_str(r, "error", ""), "FLCACHE_CHUNK='12q' is not a size") != NULL,
          "a parameter is checked like the variable: exit 2, the result says '%s'",
          flc_ev_str(r, "error", "(no result)"));
    cJSON_Delete(r);
    flc_store_close(s);
    flc_fixture_stop(&fx);
}

TEST_LIST(TEST_ENTRY(integers), TEST_ENTRY(numbers), TEST_ENTRY(strings_bools_arrays),
          TEST_ENTRY(roles_refuse), TEST_ENTRY(aggregator_comm),
          TEST_ENTRY(openwhisk_param_reaches_role))
