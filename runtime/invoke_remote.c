/* Remote invokers over libcurl: AWS Lambda Invoke and OpenWhisk actions
 * (see invoke_remote.h). Request building is kept free of I/O so it can be
 * unit-tested; flc_http_send is the only function that talks to a network. */
#include "runtime/invoke_remote.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <signal.h>
#include <time.h>

#include <curl/curl.h>

#include "base/clock.h"
#include "base/event.h"
#include "runtime/sigv4.h"

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    int n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (s == NULL)
        return NULL;
    va_start(ap, f);
    vsnprintf(s, (size_t)n + 1, f, ap);
    va_end(ap);
    return s;
}

/* Percent-encodes s for a URL path; bytes in `keep` stay as they are on top
 * of RFC 3986's unreserved set. Returns malloc'ed text. */
static char *path_escape(const char *s, const char *keep)
{
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1);
    if (out == NULL)
        return NULL;
    char *o = out;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if ((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
            *c == '-' || *c == '_' || *c == '.' || *c == '~' || (keep && strchr(keep, *c))) {
            *o++ = (char)*c;
        } else {
            sprintf(o, "%%%02X", *c);
            o += 3;
        }
    }
    *o = '\0';
    return out;
}

static const char *nonempty(const char *s)
{
    return s != NULL && *s != '\0' ? s : NULL;
}

void flc_http_req_clear(flc_http_req_t *req)
{
    if (req == NULL)
        return;
    free(req->url);
    for (int i = 0; i < req->nheaders; i++)
        free(req->headers[i]);
    free(req->aws_sigv4);
    if (req->userpwd != NULL) /* the secret does not linger in freed memory */
        memset(req->userpwd, 0, strlen(req->userpwd));
    free(req->userpwd);
    memset(req, 0, sizeof *req);
}

static int add_header(flc_http_req_t *req, char *h)
{
    if (h == NULL || req->nheaders == FLC_HTTP_MAX_HEADERS) {
        free(h);
        return FLC_ENOMEM;
    }
    req->headers[req->nheaders++] = h;
    return FLC_OK;
}

int flc_lambda_build(const flc_lambda_cfg_t *cfg, const char *function, const char *payload,
                     flc_http_req_t *req, flc_err_t *e)
{
    memset(req, 0, sizeof *req);
    if (cfg == NULL || nonempty(cfg->region) == NULL)
        return flc_err_set(e, FLC_EINVAL, "lambda: no region (set AWS_REGION)");
    if (nonempty(cfg->access_key) == NULL || nonempty(cfg->secret_key) == NULL)
        return flc_err_set(e, FLC_EINVAL, "lambda: no credentials (set AWS_ACCESS_KEY_ID and "
                                          "AWS_SECRET_ACCESS_KEY)");
    if (nonempty(function) == NULL)
        return flc_err_set(e, FLC_EINVAL, "lambda: no function name");
    if (strchr(cfg->region, '/') != NULL || strchr(cfg->region, ':') != NULL)
        return flc_err_set(e, FLC_EINVAL, "lambda: region '%s' is not a region name",
                           cfg->region);
    /* ':' stays: an ARN is a valid path segment; the signer encodes it once
     * in the canonical URI ("%3A"), as AWS does (runtime/sigv4.h). */
    char *fn = path_escape(function, ":");
    char *q = nonempty(cfg->qualifier) ? path_escape(cfg->qualifier, NULL) : NULL;
    char *base = nonempty(cfg->endpoint)
                     ? fmt("%s", cfg->endpoint)
                     : fmt("https://lambda.%s.amazonaws.com", cfg->region);
    if (fn != NULL && base != NULL) {
        size_t bl = strlen(base);
        while (bl > 0 && base[bl - 1] == '/')
            base[--bl] = '\0';
        req->url = q != NULL ? fmt("%s/2015-03-31/functions/%s/invocations?Qualifier=%s", base,
                                   fn, q)
                             : fmt("%s/2015-03-31/functions/%s/invocations", base, fn);
    }
    free(fn);
    free(q);
    free(base);
    req->method = "POST";
    req->body = payload != NULL ? payload : "{}";
    req->body_len = strlen(req->body);
    req->aws_sigv4 = fmt("aws:amz:%s:lambda", cfg->region);
    req->userpwd = fmt("%s:%s", cfg->access_key, cfg->secret_key);
    req->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 900000;
    int rc = add_header(req, fmt("Content-Type: application/json"));
    rc |= add_header(req, fmt("X-Amz-Invocation-Type: %s",
                              cfg->async ? "Event" : "RequestResponse"));
    if (cfg->log_tail)
        rc |= add_header(req, fmt("X-Amz-Log-Type: Tail"));
    if (nonempty(cfg->session_token))
        rc |= add_header(req, fmt("X-Amz-Security-Token: %s", cfg->session_token));
    /* No "Expect:" line (flc_http_send skips the 100-continue wait instead):
     * the signer skips removal directives, but a header list without one
     * is the same on every libcurl. */
    if (rc != 0 || req->url == NULL || req->aws_sigv4 == NULL || req->userpwd == NULL)
        return flc_err_set(e, FLC_ENOMEM, "lambda: out of memory building the request");
    return FLC_OK;
}

int flc_ow_build(const flc_ow_cfg_t *cfg, const char *action, const char *payload,
                 flc_http_req_t *req, flc_err_t *e)
{
    memset(req, 0, sizeof *req);
    if (cfg == NULL || nonempty(cfg->apihost) == NULL)
        return flc_err_set(e, FLC_EINVAL, "openwhisk: no API host (set __OW_API_HOST or "
                                          "WSK_APIHOST)");
    if (nonempty(cfg->auth) == NULL || strchr(cfg->auth, ':') == NULL)
        return flc_err_set(e, FLC_EINVAL, "openwhisk: auth must be 'user:key' (set "
                                          "__OW_API_KEY or WSK_AUTH)");
    if (nonempty(action) == NULL)
        return flc_err_set(e, FLC_EINVAL, "openwhisk: no action name");
    const char *host = cfg->apihost;
    int has_scheme = strncmp(host, "http://", 7) == 0 || strncmp(host, "https://", 8) == 0;
    char *base = fmt("%s%s", has_scheme ? "" : "https://", host);
    char *ns = path_escape(nonempty(cfg->ns) ? cfg->ns : "_", NULL);
    char *act = path_escape(action, "/"); /* "package/action" keeps its slash */
    if (base != NULL && ns != NULL && act != NULL) {
        size_t bl = strlen(base);
        while (bl > 0 && base[bl - 1] == '/')
            base[--bl] = '\0';
        req->url = fmt("%s/api/v1/namespaces/%s/actions/%s?blocking=true%s", base, ns, act,
                       cfg->activation ? "" : "&result=true");
    }
    free(base);
    free(ns);
    free(act);
    req->method = "POST";
    req->body = payload != NULL ? payload : "{}";
    req->body_len = strlen(req->body);
    req->userpwd = fmt("%s", cfg->auth);
    req->basic_auth = 1;
    req->insecure = cfg->insecure;
    req->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 70000;
    int rc = add_header(req, fmt("Content-Type: application/json"));
    rc |= add_header(req, fmt("Expect:"));
    if (rc != 0 || req->url == NULL || req->userpwd == NULL)
        return flc_err_set(e, FLC_ENOMEM, "openwhisk: out of memory building the request");
    return FLC_OK;
}

int flc_ow_build_activation(const flc_ow_cfg_t *cfg, const char *id, flc_http_req_t *req,
                            flc_err_t *e)
{
    int rc = flc_ow_build(cfg, "x", "", req, e); /* checks, auth, headers */
    if (rc != 0)
        return rc;
    char *q = strstr(req->url, "/actions/x?");
    char *aid = path_escape(id != NULL ? id : "", NULL);
    char *url = q != NULL && aid != NULL
                    ? fmt("%.*s/activations/%s", (int)(q - req->url), req->url, aid)
                    : NULL;
    free(aid);
    free(req->url);
    req->url = url;
    req->method = "GET";
    if (url == NULL)
        return flc_err_set(e, FLC_ENOMEM, "openwhisk: out of memory building the request");
    return FLC_OK;
}

static volatile sig_atomic_t g_abort_all;

void flc_http_abort_all(void)
{
    g_abort_all = 1;
}

/* libcurl's progress callback: nonzero stops the transfer. */
static int abort_cb(void *ud, curl_off_t dlt, curl_off_t dln, curl_off_t ult, curl_off_t uln)
{
    (void)dlt, (void)dln, (void)ult, (void)uln;
    const volatile int *abort = ud;
    return g_abort_all || (abort != NULL && *abort);
}

static size_t body_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
    flc_http_resp_t *r = ud;
    size_t add = size * nmemb;
    char *p = realloc(r->body, r->len + add + 1);
    if (p == NULL)
        return 0;
    memcpy(p + r->len, ptr, add);
    r->body = p;
    r->len += add;
    p[r->len] = '\0';
    return add;
}

/* Copies the value of the header line if its name is `name` into out. */
static int header_value(const char *line, size_t n, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    if (n <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
        return 0;
    const char *v = line + nl + 1;
    while (v < line + n && *v == ' ')
        v++;
    size_t len = 0;
    while (v + len < line + n && v[len] != '\r' && v[len] != '\n' && len < cap - 1)
        len++;
    memcpy(out, v, len);
    out[len] = '\0';
    return 1;
}

static size_t header_cb(char *line, size_t size, size_t nitems, void *ud)
{
    flc_http_resp_t *r = ud;
    size_t n = size * nitems;
    if (header_value(line, n, "X-Amz-Function-Error", r->fn_error, sizeof r->fn_error) ||
        header_value(line, n, "x-amzn-ErrorType", r->error_type, sizeof r->error_type) ||
        header_value(line, n, "x-amzn-RequestId", r->request_id, sizeof r->request_id))
        return n;
    static const char logname[] = "X-Amz-Log-Result";
    if (n > sizeof logname && strncasecmp(line, logname, sizeof logname - 1) == 0 &&
        line[sizeof logname - 1] == ':' && r->log_result == NULL) {
        char *v = malloc(n + 1);
        if (v != NULL && header_value(line, n, logname, v, n + 1))
            r->log_result = v;
        else
            free(v);
    }
    return n;
}

/* Adds the SigV4 headers for req's scope ("aws:amz:<region>:<service>")
 * and "AKID:SECRET" to *h. */
static int sign(const flc_http_req_t *req, struct curl_slist **h, flc_err_t *e)
{
    char region[64] = "", service[64] = "";
    if (sscanf(req->aws_sigv4, "aws:amz:%63[^:]:%63s", region, service) != 2)
        return flc_err_set(e, FLC_EINVAL, "http: SigV4 scope '%s' is not aws:amz:REGION:SERVICE",
                           req->aws_sigv4);
    const char *colon = req->userpwd != NULL ? strchr(req->userpwd, ':') : NULL;
    if (colon == NULL)
        return flc_err_set(e, FLC_EINVAL, "http: SigV4 needs an access key and a secret");
    char akid[256];
    snprintf(akid, sizeof akid, "%.*s", (int)(colon - req->userpwd), req->userpwd);
    flc_sigv4_in_t in = {.method = req->method != NULL ? req->method : "POST",
                         .url = req->url,
                         .headers = (const char *const *)req->headers,
                         .nheaders = req->nheaders,
                         .body = req->body,
                         .body_len = req->body_len,
                         .region = region,
                         .service = service,
                         .access_key = akid,
                         .secret_key = colon + 1,
                         .now = time(NULL)};
    char *add[4];
    int rc = flc_sigv4_sign(&in, add, e);
    for (int i = 0; rc == 0 && i < 4; i++) {
        *h = curl_slist_append(*h, add[i]);
        free(add[i]);
    }
    return rc;
}

int flc_http_send(const flc_http_req_t *req, flc_http_resp_t *resp, flc_err_t *e)
{
    memset(resp, 0, sizeof *resp);
    if (req == NULL || req->url == NULL)
        return flc_err_set(e, FLC_EINVAL, "http: request has no URL");
    CURL *c = curl_easy_init();
    if (c == NULL)
        return flc_err_set(e, FLC_ENOMEM, "http: cannot create a libcurl handle");
    struct curl_slist *h = NULL;
    for (int i = 0; i < req->nheaders; i++)
        h = curl_slist_append(h, req->headers[i]);
    if (req->aws_sigv4 != NULL) {
        int rc = sign(req, &h, e);
        if (rc != 0) {
            curl_slist_free_all(h);
            curl_easy_cleanup(c);
            return rc;
        }
    }
    curl_easy_setopt(c, CURLOPT_URL, req->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (req->method != NULL && strcmp(req->method, "GET") == 0) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, req->method != NULL ? req->method : "POST");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, req->body != NULL ? req->body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, req->timeout_ms);
    curl_easy_setopt(c, CURLOPT_EXPECT_100_TIMEOUT_MS, 0L); /* big bodies: no 100 wait */
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, resp);
    if (req->userpwd != NULL && req->aws_sigv4 == NULL)
        curl_easy_setopt(c, CURLOPT_USERPWD, req->userpwd);
    if (req->aws_sigv4 == NULL && req->basic_auth)
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
    if (req->insecure) {
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, abort_cb);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, (void *)req->abort);
    uint64_t t0 = flc_now_ns();
    CURLcode cc = g_abort_all || (req->abort && *req->abort) ? CURLE_ABORTED_BY_CALLBACK
                                                             : curl_easy_perform(c);
    resp->elapsed_ms = (double)(flc_now_ns() - t0) / 1e6;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &resp->status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (cc == CURLE_ABORTED_BY_CALLBACK)
        return flc_err_set(e, FLC_ECLOSED, "http: %s %s: stopped (the driver was interrupted "
                           "or its pool killed)", req->method != NULL ? req->method : "POST",
                           req->url);
    if (cc == CURLE_OPERATION_TIMEDOUT)
        return flc_err_set(e, FLC_ETIMEOUT, "http: %s %s: no answer within %ld ms",
                           req->method != NULL ? req->method : "POST", req->url,
                           req->timeout_ms);
    if (cc != CURLE_OK)
        return flc_err_set(e, FLC_ECONN, "http: %s %s: %s",
                           req->method != NULL ? req->method : "POST", req->url,
                           curl_easy_strerror(cc));
    return FLC_OK;
}

void flc_http_resp_clear(flc_http_resp_t *resp)
{
    if (resp == NULL)
        return;
    free(resp->body);
    free(resp->log_result);
    memset(resp, 0, sizeof *resp);
}

static cJSON *error_reply(const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddFalseToObject(o, "ok");
    cJSON_AddStringToObject(o, "error", msg);
    return o;
}

/* The answer body as a result object: the JSON itself when it is an
 * object, else an ok:false reply quoting it. */
static cJSON *body_reply(const flc_http_resp_t *r, const char *what)
{
    flc_err_t pe = {0};
    cJSON *v = flc_ev_parse(r->body != NULL ? r->body : "", r->len, &pe);
    if (v != NULL)
        return v;
    char msg[512];
    snprintf(msg, sizeof msg, "%s answered something that is not a JSON object: %.300s", what,
             r->body != NULL ? r->body : "");
    return error_reply(msg);
}

int flc_lambda_invoke(const flc_lambda_cfg_t *cfg, const char *function, const char *payload,
                      cJSON **reply, flc_err_t *e)
{
    *reply = NULL;
    flc_http_req_t req;
    flc_http_resp_t resp;
    int rc = flc_lambda_build(cfg, function, payload, &req, e);
    if (rc == 0)
        rc = flc_http_send(&req, &resp, e);
    flc_http_req_clear(&req);
    if (rc != 0)
        return rc;
    if (resp.status == 202 && cfg->async) {
        *reply = cJSON_CreateObject();
        cJSON_AddTrueToObject(*reply, "ok");
        cJSON_AddTrueToObject(*reply, "queued");
    } else if (resp.status == 200 && resp.fn_error[0] != '\0') {
        /* The runtime posted to /error: {"errorMessage":..., "errorType":...} */
        cJSON *v = cJSON_Parse(resp.body != NULL ? resp.body : "");
        char msg[512];
        snprintf(msg, sizeof msg, "lambda function error (%s): %s", resp.fn_error,
                 flc_ev_str(v, "errorMessage", resp.body != NULL ? resp.body : "?"));
        cJSON_Delete(v);
        *reply = error_reply(msg);
    } else if (resp.status == 200) {
        *reply = body_reply(&resp, "lambda");
    } else {
        cJSON *v = cJSON_Parse(resp.body != NULL ? resp.body : "");
        rc = flc_err_set(e, resp.status == 403 || resp.status == 401 ? FLC_EAUTH : FLC_EPROTO,
                         "lambda: invoking %s answered HTTP %ld: %.300s", function,
                         resp.status,
                         flc_ev_str(v, "message", flc_ev_str(v, "Message",
                                    resp.body != NULL ? resp.body : "")));
        cJSON_Delete(v);
    }
    flc_http_resp_clear(&resp);
    return rc;
}

int flc_ow_invoke(const flc_ow_cfg_t *cfg, const char *action, const char *payload,
                  cJSON **reply, flc_err_t *e)
{
    *reply = NULL;
    flc_http_req_t req;
    flc_http_resp_t resp;
    int rc = flc_ow_build(cfg, action, payload, &req, e);
    if (rc == 0)
        rc = flc_http_send(&req, &resp, e);
    flc_http_req_clear(&req);
    if (rc != 0)
        return rc;
    cJSON *v = cJSON_Parse(resp.body != NULL ? resp.body : "");
    if (resp.status == 200) {
        *reply = body_reply(&resp, "openwhisk");
    } else if (resp.status == 202) {
        rc = flc_err_set(e, FLC_ETIMEOUT, "openwhisk: action %s still running after the "
                         "blocking wait (activation %s)", action,
                         flc_ev_str(v, "activationId", "?"));
    } else if (resp.status == 502 && cJSON_IsObject(v)) {
        /* The action ran and failed (application or developer error). */
        char msg[512];
        snprintf(msg, sizeof msg, "openwhisk action error: %s",
                 flc_ev_str(v, "error", resp.body != NULL ? resp.body : ""));
        *reply = error_reply(msg);
    } else {
        rc = flc_err_set(e, resp.status == 401 || resp.status == 403 ? FLC_EAUTH : FLC_EPROTO,
                         "openwhisk: invoking %s answered HTTP %ld: %.300s", action,
                         resp.status,
                         flc_ev_str(v, "error", resp.body != NULL ? resp.body : ""));
    }
    cJSON_Delete(v);
    flc_http_resp_clear(&resp);
    return rc;
}
