/* runtime/fn: the role table and result envelope in-process, local mode over
 * memory streams, and the flcache-fn binary in OpenWhisk mode (argv[1],
 * result on the last stdout line) and local mode (JSON lines on a pipe). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/event.h"
#include "runtime/fn.h"
#include "tests/harness.h"

static int h_add(const cJSON *ev, cJSON **result, flc_fn_ctx_t *ctx)
{
    long long a, b;
    if (flc_ev_need_int(ev, "a", -1000, 1000, &a, &ctx->err) != 0 ||
        flc_ev_need_int(ev, "b", -1000, 1000, &b, &ctx->err) != 0)
        return ctx->err.code;
    flc_fn_add_comm(ctx, 2.5);
    flc_fn_add_comm(ctx, 0.5);
    *result = cJSON_CreateNumber((double)(a + b + *(int *)ctx->user));
    return 0;
}

static int h_slow(const cJSON *ev, cJSON **result, flc_fn_ctx_t *ctx)
{
    flc_sleep_ms(30);
    ctx->comm_ms = 10; /* report only comm: compute defaults to the rest */
    *result = NULL;    /* becomes JSON null */
    return 0;
}

static int h_leaky_fail(const cJSON *ev, cJSON **result, flc_fn_ctx_t *ctx)
{
    *result = cJSON_CreateString("partial"); /* must be freed by the platform */
    return FLC_EDATA;                        /* no message: the code's text is used */
}

TEST(dispatch)
{
    flc_fn_table_t *t = flc_fn_table_new();
    static int bias = 100;
    CHECK(flc_fn_register(t, "add", h_add, &bias, "adds a and b") == 0, "register a role");
    CHECK(flc_fn_register(t, "add", h_add, NULL, NULL) == FLC_EDUP, "a role name is unique");
    CHECK(flc_fn_register(t, "", h_add, NULL, NULL) == FLC_EINVAL, "an empty name is refused");
    flc_fn_register(t, "slow", h_slow, NULL, NULL);
    flc_fn_register(t, "leaky", h_leaky_fail, NULL, NULL);

    cJSON *ev = cJSON_Parse("{\"role\":\"add\",\"a\":2,\"b\":3}");
    cJSON *r = flc_fn_dispatch(t, ev, NULL, NULL, 0);
    CHECK(flc_ev_bool(r, "ok", 0) == 1 && flc_ev_int(r, "result", 0) == 105,
          "add role answers ok with 2+3+user 100 = %lld", flc_ev_int(r, "result", 0));
    CHECK(strcmp(flc_ev_str(r, "role", ""), "add") == 0, "the result names its role");
    CHECK(flc_ev_num(r, "comm_ms", 0) == 3.0, "comm_ms accumulates the handler's reports (3.0)");
    CHECK(flc_ev_num(r, "compute_ms", -1) >= 0 && flc_ev_num(r, "handler_ms", -1) >= 0,
          "compute_ms and handler_ms are present");
    CHECK(flc_ev_int(r, "pid", 0) == getpid() && flc_ev_int(r, "rss_kb", 0) > 0,
          "the envelope carries pid and rss_kb");
    cJSON_Delete(r);
    cJSON_Delete(ev);

    ev = cJSON_Parse("{\"role\":\"add\",\"a\":2}");
    r = flc_fn_dispatch(t, ev, NULL, NULL, 0);
    CHECK(flc_ev_bool(r, "ok", 1) == 0 &&
              strcmp(flc_ev_str(r, "error", ""), "event field 'b' is missing") == 0,
          "a handler error becomes ok:false with its message: '%s'", flc_ev_str(r, "error", ""));
    CHECK(cJSON_GetObjectItem(r, "result") == NULL, "a failed result has no 'result'");
    cJSON_Delete(r);
    cJSON_Delete(ev);

    ev = cJSON_Parse("{\"role\":\"slow\"}");
    r = flc_fn_dispatch(t, ev, "local", NULL, 0);
    double compute = flc_ev_num(r, "compute_ms", -1), handler = flc_ev_num(r, "handler_ms", -1);
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(r, "result")), "a NULL result is JSON null");
    CHECK(handler >= 29.0 && compute > 18.0 && compute < handler - 9.9,
          "unreported compute is handler time minus comm (%.1f of %.1f)", compute, handler);
    cJSON_Delete(r);
    cJSON_Delete(ev);

    ev = cJSON_Parse("{\"role\":\"leaky\"}");
    r = flc_fn_dispatch(t, ev, NULL, NULL, 0);
    CHECK(!flc_ev_bool(r, "ok", 1) && strlen(flc_ev_str(r, "error", "")) > 0 &&
              flc_ev_int(r, "code", 0) == FLC_EDATA,
          "a failure without a message uses the code's text: '%s'", flc_ev_str(r, "error", ""));
    cJSON_Delete(r);
    cJSON_Delete(ev);

    char *line = flc_fn_dispatch_text(t, "{\"role\":\"nobody\"}", 17, NULL, NULL, 0);
    CHECK(line != NULL && strstr(line, "unknown role 'nobody'") != NULL &&
              strstr(line, "\"ok\":false") != NULL,
          "an unknown role is named: %s", line);
    free(line);
    line = flc_fn_dispatch_text(t, "[1,2]", 5, NULL, NULL, 0);
    CHECK(line != NULL && strstr(line, "not an object") != NULL, "a JSON array is refused");
    free(line);

    /* Local mode over memory streams: blank lines skipped, one line each. */
    const char *input = "{\"role\":\"add\",\"a\":1,\"b\":1}\n\n{oops\n{\"role\":\"add\",\"a\":5,"
                        "\"b\":-5}\n";
    FILE *in = fmemopen((void *)input, strlen(input), "r");
    char *outbuf = NULL;
    size_t outlen = 0;
    FILE *out = open_memstream(&outbuf, &outlen);
    CHECK(flc_fn_run_local(t, in, out) == 0, "local mode runs to EOF");
    fclose(in);
    fclose(out);
    int lines = 0;
    for (char *c = outbuf; c != NULL && *c; c++)
        lines += *c == '\n';
    CHECK(lines == 3, "3 events in, 3 result lines out (%d)", lines);
    char *l2 = strchr(outbuf, '\n') + 1, *l3 = strchr(l2, '\n') + 1;
    CHECK(strncmp(outbuf, "{\"ok\":true,\"result\":102", 23) == 0, "line 1 is 1+1+100");
    CHECK(strncmp(l2, "{\"ok\":false", 11) == 0, "line 2 reports the bad JSON");
    CHECK(strncmp(l3, "{\"ok\":true,\"result\":100", 23) == 0, "line 3 is 5-5+100");
    free(outbuf);
    flc_fn_table_free(t);
    flc_fn_table_free(NULL);
}

/* Runs fn with argv and stdin text; returns its stdout (malloc'ed). */
static char *run(const char *fn, const char *arg, const char *stdin_text, int *status)
{
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0)
        flc_t_fatal("pipe failed");
    pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        execl(fn, fn, arg, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    if (stdin_text != NULL && write(in[1], stdin_text, strlen(stdin_text)) < 0)
        flc_t_fatal("write failed");
    close(in[1]);
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    ssize_t k;
    while ((k = read(out[0], buf + n, cap - n - 1)) > 0)
        n += (size_t)k;
    buf[n] = '\0';
    close(out[0]);
    waitpid(pid, status, 0);
    return buf;
}

TEST(binary)
{
    const char *dir = getenv("FLCACHE_BUILD_DIR");
    char fn[1024];
    snprintf(fn, sizeof fn, "%s/flcache-fn-test", dir != NULL ? dir : ".");
    if (access(fn, X_OK) != 0)
        flc_t_fatal("%s is not built (set FLCACHE_BUILD_DIR)", fn);
    int st;
    char *o = run(fn, "{\"role\":\"probe\",\"v\":\"ow\",\"print\":\"log line\"}", NULL, &st);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "OpenWhisk mode exits 0");
    size_t n = strlen(o);
    while (n > 0 && o[n - 1] == '\n')
        o[--n] = '\0';
    char *last = strrchr(o, '\n');
    last = last != NULL ? last + 1 : o;
    cJSON *r = cJSON_Parse(last);
    const cJSON *echo = cJSON_GetObjectItem(cJSON_GetObjectItem(r, "result"), "echo");
    CHECK(flc_ev_bool(r, "ok", 0) && strcmp(flc_ev_str(echo, "v", ""), "ow") == 0,
          "OpenWhisk mode: the last stdout line is the result echoing the event");
    CHECK(strstr(o, "log line") != NULL && strstr(last, "log line\n") == NULL,
          "the handler's own output stays above the result line");
    cJSON_Delete(r);
    free(o);

    o = run(fn, "{\"role\":\"probe\",\"fail\":\"x\"}", NULL, &st);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 && strstr(o, "\"ok\":false") != NULL,
          "OpenWhisk mode reports a handler failure as ok:false, exit 0");
    free(o);

    o = run(fn, NULL, "{\"role\":\"probe\",\"n\":1}\n{\"role\":\"probe\",\"n\":2}\n", &st);
    char *second = strchr(o, '\n');
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 && second != NULL &&
              strstr(o, "\"n\":1") != NULL && strstr(second, "\"n\":2") != NULL,
          "local mode: two events on stdin, two result lines, exit 0 at EOF");
    free(o);

    o = run(fn, "--help", NULL, &st);
    CHECK(strstr(o, "probe") != NULL, "--help lists the probe role");
    free(o);
    o = run(fn, "--bogus", NULL, &st);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 2, "an unknown option exits 2");
    free(o);
}

TEST_LIST(TEST_ENTRY(dispatch), TEST_ENTRY(binary))
