/* Invoking flcache-fn on a real cloud over libcurl: AWS Lambda (Invoke API,
 * SigV4 signed by runtime/sigv4.c at send time) and Apache OpenWhisk
 * (blocking action invocation, basic auth).
 *
 * Building a request is a pure function (flc_lambda_build, flc_ow_build)
 * that fills an flc_http_req_t: URL, headers, body and the auth options to
 * give libcurl. Unit tests check it without a network; flc_http_send only
 * runs when a deployment is configured. */
#ifndef FLC_RUNTIME_INVOKE_REMOTE_H
#define FLC_RUNTIME_INVOKE_REMOTE_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "base/error.h"

#define FLC_HTTP_MAX_HEADERS 12

/* One HTTP request, ready for libcurl. Strings are owned (malloc'ed) by the
 * request, except body which is borrowed from the caller's payload. */
typedef struct flc_http_req {
    const char *method;                     /* "POST" */
    char *url;
    char *headers[FLC_HTTP_MAX_HEADERS];    /* "Name: value" */
    int nheaders;
    const char *body;                       /* borrowed */
    size_t body_len;
    char *aws_sigv4;   /* "aws:amz:<region>:<service>": flc_http_send signs the request
                          with SigV4 for that scope (runtime/sigv4.h), or NULL */
    char *userpwd;     /* "AKID:SECRET" (SigV4) or CURLOPT_USERPWD "user:key" (basic) */
    int basic_auth;    /* 1: CURLOPT_HTTPAUTH = CURLAUTH_BASIC */
    int insecure;      /* 1: do not verify the TLS peer (OpenWhisk -i) */
    long timeout_ms;   /* whole transfer */
    const volatile int *abort; /* not NULL and nonzero: the transfer stops (FLC_ECLOSED) */
} flc_http_req_t;

typedef struct flc_http_resp {
    long status;           /* HTTP status */
    char *body;            /* NUL-terminated, owned */
    size_t len;
    char fn_error[64];     /* Lambda X-Amz-Function-Error ("Unhandled"), or "" */
    char error_type[96];   /* x-amzn-ErrorType ("TooManyRequestsException"), or "" */
    char request_id[96];   /* x-amzn-RequestId, or "" */
    char *log_result;      /* X-Amz-Log-Result (base64 of the log's tail), owned, or NULL */
    double elapsed_ms;     /* request sent -> answer read, as the caller saw it */
} flc_http_resp_t;

typedef struct flc_lambda_cfg {
    /* The programs fill the first five from AWS_REGION (or
     * AWS_DEFAULT_REGION), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
     * AWS_SESSION_TOKEN and FLCACHE_LAMBDA_ENDPOINT (cli/config.h). */
    const char *region;        /* "eu-west-1"; required */
    const char *access_key;    /* required */
    const char *secret_key;    /* required */
    const char *session_token; /* or NULL */
    const char *endpoint;      /* NULL -> https://lambda.<region>.amazonaws.com
                                  (set for LocalStack or a loopback test) */
    const char *qualifier;     /* version or alias, or NULL */
    int async;                 /* 1: InvocationType Event (no result) */
    int log_tail;              /* 1: X-Amz-Log-Type Tail: the answer carries the log's
                                  last 4 KB with the REPORT line (billed duration,
                                  memory) in X-Amz-Log-Result */
    long timeout_ms;           /* 0 -> 900000, Lambda's longest run */
} flc_lambda_cfg_t;

/* The programs fill apihost, auth and ns from __OW_API_HOST / __OW_API_KEY /
 * __OW_NAMESPACE, else WSK_APIHOST / WSK_AUTH / WSK_NAMESPACE. */
typedef struct flc_ow_cfg {
    const char *apihost;   /* "https://host[:port]" (a bare host means https) */
    const char *auth;      /* "user:key", as in ~/.wskprops AUTH; required */
    const char *ns;        /* namespace; NULL or "" -> "_" (the key's own) */
    int insecure;          /* 1: accept a self-signed certificate */
    int activation;        /* 1: ask for the whole activation record (blocking=true
                              without result=true): duration, limits, initTime */
    long timeout_ms;       /* 0 -> 70000 (blocking waits up to 60 s) */
} flc_ow_cfg_t;

/* The Lambda Invoke request for function (name or ARN) with the JSON
 * payload: POST <endpoint>/2015-03-31/functions/<function>/invocations
 * [?Qualifier=q], Content-Type application/json, X-Amz-Invocation-Type,
 * X-Amz-Security-Token when a session token is set, SigV4 through libcurl.
 * Returns 0, or FLC_EINVAL naming the missing setting; *req is cleared on
 * entry and must be released with flc_http_req_clear either way. */
int flc_lambda_build(const flc_lambda_cfg_t *cfg, const char *function, const char *payload,
                     flc_http_req_t *req, flc_err_t *e);

/* The OpenWhisk request: POST <apihost>/api/v1/namespaces/<ns>/actions/
 * <action>?blocking=true&result=true (cfg->activation: without
 * &result=true) with basic auth "user:key".
 * action may be "package/action". Same contract as flc_lambda_build. */
int flc_ow_build(const flc_ow_cfg_t *cfg, const char *action, const char *payload,
                 flc_http_req_t *req, flc_err_t *e);

/* GET <apihost>/api/v1/namespaces/<ns>/activations/<id>: the record of an
 * activation that outlived a blocking wait (HTTP 202). Same contract. */
int flc_ow_build_activation(const flc_ow_cfg_t *cfg, const char *id, flc_http_req_t *req,
                            flc_err_t *e);

void flc_http_req_clear(flc_http_req_t *req);

/* Sends req with libcurl and fills *resp (cleared on entry; release with
 * flc_http_resp_clear). Returns 0 when an HTTP answer arrived, whatever its
 * status, or FLC_ECONN / FLC_ETIMEOUT with *e naming the URL. */
int flc_http_send(const flc_http_req_t *req, flc_http_resp_t *resp, flc_err_t *e);

void flc_http_resp_clear(flc_http_resp_t *resp);

/* Stops every flc_http_send of this process now and from now on (they
 * return FLC_ECLOSED): for a SIGINT/SIGTERM handler, async-signal-safe (one
 * atomic store), so an interrupted driver does not wait out the remote
 * invocations it started (the platform still runs them to their end). */
void flc_http_abort_all(void);

/* Invokes a deployed flcache-fn and returns its result object in *reply
 * (the same {"ok":..., "result":..., "compute_ms":...} shape as the local
 * pool; a Lambda function error or an OpenWhisk action error becomes
 * {"ok":false,"error":...}). Returns 0 when *reply was set, else the
 * transport or HTTP error with *e set. Async Lambda calls set *reply to
 * {"ok":true,"queued":true}. The caller frees *reply with cJSON_Delete. */
int flc_lambda_invoke(const flc_lambda_cfg_t *cfg, const char *function, const char *payload,
                      cJSON **reply, flc_err_t *e);
int flc_ow_invoke(const flc_ow_cfg_t *cfg, const char *action, const char *payload,
                  cJSON **reply, flc_err_t *e);

#endif
