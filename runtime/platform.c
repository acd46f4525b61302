/* One invocation on AWS Lambda or OpenWhisk as a driver needs it (see
 * platform.h): the answer as a result object, throttling retried with
 * backoff, and the platform's bill read back from its own records. */
#include "runtime/platform.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/clock.h"
#include "base/event.h"
#include "base/log.h"

const char *flc_platform_name(int platform)
{
    switch (platform) {
    case FLC_PLATFORM_LOCAL: return "local";
    case FLC_PLATFORM_LAMBDA: return "lambda";
    case FLC_PLATFORM_OPENWHISK: return "openwhisk";
    default: return "unknown";
    }
}

int flc_platform_parse(const char *s, int *out, flc_err_t *e)
{
    static const struct { const char *name; int p; } names[] = {
        {"local", FLC_PLATFORM_LOCAL},   {"lambda", FLC_PLATFORM_LAMBDA},
        {"aws-lambda", FLC_PLATFORM_LAMBDA}, {"openwhisk", FLC_PLATFORM_OPENWHISK},
        {"ow", FLC_PLATFORM_OPENWHISK},
    };
    for (size_t i = 0; s != NULL && i < sizeof names / sizeof *names; i++)
        if (strcasecmp(s, names[i].name) == 0) {
            *out = names[i].p;
            return FLC_OK;
        }
    return flc_err_set(e, FLC_EINVAL, "platform '%.64s' is none of local, lambda, openwhisk",
                       s != NULL ? s : "");
}

void flc_remote_out_clear(flc_remote_out_t *out)
{
    if (out == NULL)
        return;
    cJSON_Delete(out->reply);
    memset(out, 0, sizeof *out);
}

char *flc_base64_decode(const char *s, size_t *len)
{
    size_t n = strlen(s);
    unsigned char *out = malloc(n * 3 / 4 + 4);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;
    for (const char *c = s; *c && *c != '='; c++) {
        int v;
        if (*c >= 'A' && *c <= 'Z') v = *c - 'A';
        else if (*c >= 'a' && *c <= 'z') v = *c - 'a' + 26;
        else if (*c >= '0' && *c <= '9') v = *c - '0' + 52;
        else if (*c == '+') v = 62;
        else if (*c == '/') v = 63;
        else if (*c == ' ' || *c == '\r' || *c == '\n' || *c == '\t') continue;
        else {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    out[o] = '\0';
    if (len != NULL)
        *len = o;
    return (char *)out;
}

/* The number after "<name>: " in line, or -1. */
static double report_field(const char *line, const char *name)
{
    const char *p = strstr(line, name);
    if (p == NULL)
        return -1;
    p += strlen(name);
    if (*p++ != ':')
        return -1;
    char *end;
    double v = strtod(p, &end);
    return end == p ? -1 : v;
}

int flc_lambda_report_parse(const char *log, flc_remote_out_t *out)
{
    const char *line = log;
    const char *rep = NULL;
    while (line != NULL && *line) { /* the last REPORT line of the tail */
        if (strncmp(line, "REPORT ", 7) == 0)
            rep = line;
        const char *nl = strchr(line, '\n');
        line = nl != NULL ? nl + 1 : NULL;
    }
    if (rep == NULL)
        return 0;
    size_t n = strcspn(rep, "\n");
    char buf[1024];
    snprintf(buf, sizeof buf, "%.*s", (int)(n < sizeof buf ? n : sizeof buf - 1), rep);
    /* "Billed Duration" first: "Duration:" also matches inside it. */
    double billed = report_field(buf, "Billed Duration");
    double init = report_field(buf, "Init Duration");
    double mem = report_field(buf, "Memory Size");
    double used = report_field(buf, "Max Memory Used");
    const char *d = strstr(buf, "\tDuration:");
    double dur = d != NULL ? report_field(d + 1, "Duration") : -1;
    if (dur >= 0) out->duration_ms = dur;
    if (billed >= 0) out->billed_ms = (uint64_t)llround(billed);
    if (mem > 0) out->memory_mb = (unsigned)llround(mem);
    if (used >= 0) out->max_memory_kb = (uint64_t)llround(used) * 1024;
    if (init >= 0) {
        out->init_ms = init;
        out->cold = 1;
    }
    return 1;
}

/* The function's result object from a reply body, else an error. */
static void take_reply(flc_remote_out_t *out, cJSON *v, const char *what)
{
    if (!cJSON_IsObject(v)) {
        cJSON_Delete(v);
        snprintf(out->error, sizeof out->error, "%s answered a result that is not a JSON object",
                 what);
        return;
    }
    out->reply = v;
    out->ok = flc_ev_bool(v, "ok", 0);
    if (!out->ok)
        snprintf(out->error, sizeof out->error, "%s",
                 flc_ev_str(v, "error", "function answered ok:false"));
}

/* Reads a Lambda answer into out. Returns 1 when throttled (retry), 0
 * when settled, or a negative FLC_E* with *e set. */
static int lambda_answer(const flc_remote_cfg_t *cfg, const char *fn, flc_http_resp_t *r,
                         flc_remote_out_t *out, flc_err_t *e)
{
    (void)cfg;
    snprintf(out->id, sizeof out->id, "%s", r->request_id);
    if (r->log_result != NULL) {
        char *log = flc_base64_decode(r->log_result, NULL);
        if (log != NULL)
            flc_lambda_report_parse(log, out);
        free(log);
    }
    cJSON *v = cJSON_Parse(r->body != NULL ? r->body : "");
    if (r->status == 429 || strcmp(r->error_type, "TooManyRequestsException") == 0) {
        cJSON_Delete(v);
        return 1;
    }
    if (r->status == 200 && r->fn_error[0] != '\0') {
        /* The runtime posted to /error, or died: {"errorMessage", "errorType"} */
        const char *type = flc_ev_str(v, "errorType", "");
        out->function_error = 1;
        out->crashed = strncmp(type, "Runtime.", 8) == 0;
        out->timed_out = strcmp(type, "Sandbox.Timedout") == 0;
        snprintf(out->error, sizeof out->error, "lambda function error (%s%s%s): %.400s",
                 r->fn_error, *type ? ", " : "", type,
                 flc_ev_str(v, "errorMessage", r->body != NULL ? r->body : "?"));
        cJSON_Delete(v);
        return 0;
    }
    if (r->status == 200) {
        take_reply(out, v, "lambda");
        return 0;
    }
    int rc = flc_err_set(e, r->status == 403 || r->status == 401 ? FLC_EAUTH : FLC_EPROTO,
                         "lambda: invoking %s answered HTTP %ld%s%s: %.300s", fn, r->status,
                         r->error_type[0] ? " " : "", r->error_type,
                         flc_ev_str(v, "message", flc_ev_str(v, "Message",
                                    r->body != NULL ? r->body : "")));
    cJSON_Delete(v);
    return rc;
}

/* The value of annotation `key` of an activation record, or NULL. */
static const cJSON *annotation(const cJSON *rec, const char *key)
{
    const cJSON *a;
    cJSON_ArrayForEach(a, cJSON_GetObjectItemCaseSensitive(rec, "annotations"))
        if (strcmp(flc_ev_str(a, "key", ""), key) == 0)
            return cJSON_GetObjectItemCaseSensitive(a, "value");
    return NULL;
}

/* Reads an OpenWhisk activation record (blocking=true) into out. Same
 * returns as lambda_answer. */
static int ow_answer(const char *fn, flc_http_resp_t *r, flc_remote_out_t *out, flc_err_t *e)
{
    cJSON *v = cJSON_Parse(r->body != NULL ? r->body : "");
    if (r->status == 429) {
        cJSON_Delete(v);
        return 1;
    }
    if ((r->status == 200 || r->status == 502) && cJSON_IsObject(v) &&
        cJSON_GetObjectItemCaseSensitive(v, "response") != NULL) {
        snprintf(out->id, sizeof out->id, "%s", flc_ev_str(v, "activationId", ""));
        double d = flc_ev_num(v, "duration", -1);
        if (d >= 0) {
            out->duration_ms = d;
            out->billed_ms = (uint64_t)ceil(d) > 0 ? (uint64_t)ceil(d) : 1;
        }
        out->memory_mb = (unsigned)flc_ev_int(annotation(v, "limits"), "memory", 0);
        const cJSON *init = annotation(v, "initTime");
        if (cJSON_IsNumber(init)) {
            out->init_ms = init->valuedouble;
            out->cold = 1;
        }
        cJSON *resp = cJSON_GetObjectItemCaseSensitive(v, "response");
        cJSON *result = cJSON_DetachItemFromObjectCaseSensitive(resp, "result");
        const char *status = flc_ev_str(resp, "status", "");
        if (strcmp(status, "success") == 0) {
            take_reply(out, result, "openwhisk");
        } else {
            /* The action answered {"error":...} (flcache-fn's ok:false does)
             * or the platform failed it: the result still says why. */
            out->function_error = strcmp(status, "application error") != 0;
            out->timed_out = cJSON_IsTrue(annotation(v, "timeout"));
            if (cJSON_IsObject(result) && cJSON_GetObjectItem(result, "ok") != NULL) {
                take_reply(out, result, "openwhisk");
            } else {
                snprintf(out->error, sizeof out->error, "openwhisk action %s (%s): %.400s", fn,
                         status, flc_ev_str(result, "error", "no result"));
                cJSON_Delete(result);
            }
        }
        cJSON_Delete(v);
        return 0;
    }
    int rc;
    if (r->status == 202 && flc_ev_str(v, "activationId", NULL) != NULL) {
        snprintf(out->id, sizeof out->id, "%s", flc_ev_str(v, "activationId", ""));
        rc = 2; /* still running: the caller polls its record */
    } else if (r->status == 202)
        rc = flc_err_set(e, FLC_EPROTO, "openwhisk: action %s: HTTP 202 without an "
                         "activation id", fn);
    else
        rc = flc_err_set(e, r->status == 401 || r->status == 403 ? FLC_EAUTH : FLC_EPROTO,
                         "openwhisk: invoking %s answered HTTP %ld: %.300s", fn, r->status,
                         flc_ev_str(v, "error", r->body != NULL ? r->body : ""));
    cJSON_Delete(v);
    return rc;
}

/* Polls the record of activation out->id until it is there or until
 * deadline_ns (OpenWhisk answers 404 while it runs). */
static int ow_poll(const flc_remote_cfg_t *cfg, const char *fn, uint64_t deadline_ns,
                   flc_remote_out_t *out, flc_err_t *e)
{
    char id[sizeof out->id];
    snprintf(id, sizeof id, "%s", out->id);
    for (unsigned wait = 100;; wait = wait < 1000 ? wait * 2 : 1000) {
        if (flc_now_ns() + (uint64_t)wait * 1000000u > deadline_ns)
            return flc_err_set(e, FLC_ETIMEOUT, "openwhisk: action %s (activation %s) did "
                               "not end in time", fn, id);
        flc_sleep_ms(wait);
        if (cfg->abort != NULL && *cfg->abort)
            return flc_err_set(e, FLC_ECLOSED, "openwhisk: stopped waiting for activation %s",
                               id);
        flc_http_req_t req;
        flc_http_resp_t resp;
        memset(&resp, 0, sizeof resp);
        flc_ow_cfg_t oc = cfg->ow;
        oc.timeout_ms = 30000;
        int rc = flc_ow_build_activation(&oc, id, &req, e);
        req.abort = cfg->abort;
        if (rc == 0)
            rc = flc_http_send(&req, &resp, e);
        flc_http_req_clear(&req);
        if (rc == 0 && resp.status != 404)
            rc = ow_answer(fn, &resp, out, e);
        else if (rc == 0)
            rc = 2;
        flc_http_resp_clear(&resp);
        if (rc != 2)
            return rc == 1 ? 2 : rc; /* a 429 on a poll: poll again */
    }
}

/* Full jitter (AWS's advice): a uniform wait in [base/2, base]. */
static unsigned backoff(unsigned base, unsigned attempt, unsigned cap)
{
    uint64_t w = (uint64_t)base << (attempt < 20 ? attempt : 20);
    if (w > cap)
        w = cap;
    uint64_t half = w / 2;
    return (unsigned)(half + (flc_now_ns() % (w - half + 1)));
}

int flc_remote_invoke(const flc_remote_cfg_t *cfg, const char *event, unsigned timeout_ms,
                      flc_remote_out_t *out, flc_err_t *e)
{
    memset(out, 0, sizeof *out);
    const char *fn = cfg->function != NULL && *cfg->function ? cfg->function
                                                             : FLC_REMOTE_FUNCTION_DEFAULT;
    unsigned retries = cfg->throttle_retries ? cfg->throttle_retries : 8;
    unsigned base = cfg->backoff_ms ? cfg->backoff_ms : 100;
    unsigned cap = cfg->backoff_max_ms ? cfg->backoff_max_ms : 5000;
    int rc = FLC_OK;
    uint64_t deadline = flc_now_ns() + (uint64_t)(timeout_ms ? timeout_ms : 300000) * 1000000u;
    for (unsigned attempt = 0;; attempt++) {
        flc_http_req_t req;
        flc_http_resp_t resp;
        memset(&resp, 0, sizeof resp);
        if (cfg->platform == FLC_PLATFORM_LAMBDA) {
            flc_lambda_cfg_t lc = cfg->lambda;
            lc.log_tail = 1;
            lc.async = 0;
            if (timeout_ms > 0)
                lc.timeout_ms = (long)timeout_ms + 5000; /* the network's share */
            rc = flc_lambda_build(&lc, fn, event, &req, e);
        } else if (cfg->platform == FLC_PLATFORM_OPENWHISK) {
            flc_ow_cfg_t oc = cfg->ow;
            oc.activation = 1;
            if (timeout_ms > 0)
                oc.timeout_ms = (long)timeout_ms + 5000;
            rc = flc_ow_build(&oc, fn, event, &req, e);
        } else {
            rc = flc_err_set(e, FLC_EINVAL, "platform %s is not remote",
                             flc_platform_name(cfg->platform));
        }
        req.abort = cfg->abort;
        if (rc == 0)
            rc = flc_http_send(&req, &resp, e);
        flc_http_req_clear(&req);
        if (rc == 0) {
            out->elapsed_ms = resp.elapsed_ms;
            rc = cfg->platform == FLC_PLATFORM_LAMBDA ? lambda_answer(cfg, fn, &resp, out, e)
                                                      : ow_answer(fn, &resp, out, e);
        }
        flc_http_resp_clear(&resp);
        if (rc == 2) /* OpenWhisk: past the blocking wait */
            rc = ow_poll(cfg, fn, deadline, out, e);
        while (rc == 2) /* ow_poll: a throttled poll */
            rc = ow_poll(cfg, fn, deadline, out, e);
        if (rc != 1)
            break;
        if (attempt >= retries) {
            rc = flc_err_set(e, FLC_EPROTO, "%s: %s throttled (HTTP 429) %u times; gave up",
                             flc_platform_name(cfg->platform), fn, attempt + 1);
            break;
        }
        out->throttled++;
        unsigned w = backoff(base, attempt, cap);
        FLC_DEBUG("%s: %s throttled, retry %u in %u ms", flc_platform_name(cfg->platform), fn,
                  attempt + 1, w);
        flc_sleep_ms(w);
        if (cfg->abort != NULL && *cfg->abort) {
            rc = flc_err_set(e, FLC_ECLOSED, "%s: %s: stopped while backing off",
                             flc_platform_name(cfg->platform), fn);
            break;
        }
    }
    if (rc != 0)
        snprintf(out->error, sizeof out->error, "%s", flc_err_msg(e));
    return rc;
}
