/* The AWS Lambda custom-runtime loop (the "bootstrap" side of the Runtime
 * API, 2018-06-01) over libcurl:
 *
 *   GET  http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/invocation/next
 *        -> event body, Lambda-Runtime-Aws-Request-Id, -Deadline-Ms, -Trace-Id
 *   POST .../runtime/invocation/<request id>/response   the result JSON
 *   POST .../runtime/invocation/<request id>/error      when the event is not
 *        a JSON object: {"errorMessage":..., "errorType":"flcache.BadEvent"}
 *
 * Handler failures are *not* sent to /error: they become an ok:false result
 * posted to /response, so every mode answers the same shape and the invoker
 * reads one format. One easy handle is reused so the connection to the
 * Runtime API stays open between invocations. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "base/event.h"
#include "runtime/fn.h"

typedef struct rt_buf {
    char *p;
    size_t n, cap;
} rt_buf_t;

typedef struct rt_next {
    char request_id[256];
    char trace_id[512];
    uint64_t deadline_ms;
} rt_next_t;

static size_t body_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
    rt_buf_t *b = ud;
    size_t add = size * nmemb;
    if (b->n + add + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + add + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (p == NULL)
            return 0; /* makes curl fail the transfer with a write error */
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, ptr, add);
    b->n += add;
    b->p[b->n] = '\0';
    return add;
}

/* Copies the value of header line "Name: value\r\n" into out when the name
 * matches (case-insensitive, as HTTP says). */
static void header_value(const char *line, size_t n, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    if (n <= nl + 1 || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return;
    const char *v = line + nl + 1;
    const char *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    size_t len = (size_t)(end - v) < cap - 1 ? (size_t)(end - v) : cap - 1;
    memcpy(out, v, len);
    out[len] = '\0';
}

static size_t next_header_cb(char *line, size_t size, size_t nitems, void *ud)
{
    rt_next_t *nx = ud;
    size_t n = size * nitems;
    char deadline[32] = "";
    header_value(line, n, "Lambda-Runtime-Aws-Request-Id", nx->request_id,
                 sizeof nx->request_id);
    header_value(line, n, "Lambda-Runtime-Trace-Id", nx->trace_id, sizeof nx->trace_id);
    header_value(line, n, "Lambda-Runtime-Deadline-Ms", deadline, sizeof deadline);
    if (deadline[0] != '\0')
        nx->deadline_ms = strtoull(deadline, NULL, 10);
    return n;
}

/* GET .../invocation/next. Blocks as long as Lambda keeps the instance frozen. */
static int get_next(CURL *c, const char *base, rt_buf_t *body, rt_next_t *nx, flc_err_t *e)
{
    char url[1024];
    snprintf(url, sizeof url, "%s/invocation/next", base);
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 0L); /* long poll: no deadline */
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, next_header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, nx);
    CURLcode cc = curl_easy_perform(c);
    if (cc != CURLE_OK)
        return flc_err_set(e, FLC_ECONN, "GET %s: %s", url, curl_easy_strerror(cc));
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200)
        return flc_err_set(e, FLC_EPROTO, "GET %s answered HTTP %ld", url, status);
    if (nx->request_id[0] == '\0')
        return flc_err_set(e, FLC_EPROTO, "GET %s: no Lambda-Runtime-Aws-Request-Id header",
                           url);
    return FLC_OK;
}

/* POSTs body to .../invocation/<id>/<what>; extra_header may be NULL. */
static int post(CURL *c, const char *base, const char *id, const char *what, const char *body,
                const char *extra_header, flc_err_t *e)
{
    char url[1024];
    snprintf(url, sizeof url, "%s/invocation/%s/%s", base, id, what);
    rt_buf_t sink = {0};
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Expect:"); /* no 100-continue round trip */
    if (extra_header != NULL)
        h = curl_slist_append(h, extra_header);
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
    CURLcode cc = curl_easy_perform(c);
    curl_slist_free_all(h);
    int rc = FLC_OK;
    if (cc != CURLE_OK) {
        rc = flc_err_set(e, FLC_ECONN, "POST %s: %s", url, curl_easy_strerror(cc));
    } else {
        long status = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        if (status < 200 || status > 299)
            rc = flc_err_set(e, FLC_EPROTO, "POST %s answered HTTP %ld: %.200s", url, status,
                             sink.p != NULL ? sink.p : "");
    }
    free(sink.p);
    return rc;
}

static char *bad_event_body(const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "errorMessage", msg);
    cJSON_AddStringToObject(o, "errorType", "flcache.BadEvent");
    char *s = flc_ev_print(o);
    cJSON_Delete(o);
    return s;
}

int flc_fn_run_lambda(const flc_fn_table_t *t, const char *api, long max_events, flc_err_t *e)
{
    if (api == NULL || *api == '\0')
        return flc_err_set(e, FLC_EINVAL, "AWS_LAMBDA_RUNTIME_API is empty");
    char base[512];
    snprintf(base, sizeof base, "http://%s/2018-06-01/runtime", api);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURL *c = curl_easy_init();
    if (c == NULL) {
        curl_global_cleanup();
        return flc_err_set(e, FLC_ENOMEM, "cannot create a libcurl handle");
    }
    int rc = FLC_OK;
    for (long k = 0; max_events <= 0 || k < max_events; k++) {
        rt_buf_t body = {0};
        rt_next_t nx = {0};
        rc = get_next(c, base, &body, &nx, e);
        if (rc != 0) {
            free(body.p);
            break;
        }
        /* The custom-runtime contract: the function's X-Ray trace header is
         * published to the handler's process as _X_AMZN_TRACE_ID (AWS SDKs
         * and tracers read it there). It is written, never read, here. */
        if (nx.trace_id[0] != '\0')
            setenv("_X_AMZN_TRACE_ID", nx.trace_id, 1);
        flc_err_t pe = {0};
        cJSON *event = flc_ev_parse(body.p != NULL ? body.p : "", body.n, &pe);
        free(body.p);
        if (event == NULL) {
            char *err = bad_event_body(flc_err_msg(&pe));
            rc = post(c, base, nx.request_id, "error", err != NULL ? err : "{}",
                      "Lambda-Runtime-Function-Error-Type: flcache.BadEvent", e);
            free(err);
        } else {
            cJSON *res = flc_fn_dispatch(t, event, "lambda", nx.request_id, nx.deadline_ms);
            cJSON_Delete(event);
            char *line = flc_ev_print(res);
            cJSON_Delete(res);
            if (line == NULL) {
                char *err = bad_event_body("out of memory building the result");
                rc = post(c, base, nx.request_id, "error", err != NULL ? err : "{}", NULL, e);
                free(err);
            } else {
                rc = post(c, base, nx.request_id, "response", line, NULL, e);
                free(line);
            }
        }
        if (rc == FLC_ECONN)
            break;
        if (rc != 0) { /* the API refused this one answer; keep serving */
            fprintf(stderr, "flcache-fn: %s\n", flc_err_msg(e));
            rc = FLC_OK;
        }
    }
    curl_easy_cleanup(c);
    curl_global_cleanup();
    return rc;
}
