/* Where functions run: the local pool, AWS Lambda or Apache OpenWhisk, and
 * one remote invocation done the way a driver needs it.
 *
 * The commands never talk to a platform directly: they use the pool of
 * runtime/pool.h, and a pool whose cfg.remote names Lambda or OpenWhisk
 * sends each event there instead of to a local process (pool_remote.c). So
 * train, simulate, query and `flcache run` keep one code path, and a record
 * (flc_inv_rec_t) says the same things whatever ran the function.
 *
 * flc_remote_invoke is that one invocation: the event to the platform, its
 * answer as a result object, throttling retried with exponential backoff
 * (Lambda HTTP 429 TooManyRequestsException, OpenWhisk 429), and the
 * platform's own bill read back: Lambda's REPORT line (Billed Duration,
 * Memory Size, Max Memory Used, Init Duration) from X-Amz-Log-Result
 * (X-Amz-Log-Type Tail), OpenWhisk's activation record (duration, the
 * limits annotation's memory, initTime). */
#ifndef FLC_RUNTIME_PLATFORM_H
#define FLC_RUNTIME_PLATFORM_H

#include <stdint.h>

#include <cjson/cJSON.h>

#include "base/error.h"
#include "runtime/invoke_remote.h"

enum flc_platform {
    FLC_PLATFORM_LOCAL = 0,   /* the local pool (runtime/pool.h) */
    FLC_PLATFORM_LAMBDA,      /* AWS Lambda Invoke */
    FLC_PLATFORM_OPENWHISK,   /* OpenWhisk blocking action invocation */
};

/* "local", "lambda", "openwhisk". */
const char *flc_platform_name(int platform);

/* The platform named s (also "ow", "aws-lambda") into *out: 0, or
 * FLC_EINVAL naming s. */
int flc_platform_parse(const char *s, int *out, flc_err_t *e);

#define FLC_REMOTE_FUNCTION_DEFAULT "flcache-fn"

typedef struct flc_remote_cfg {
    int platform;             /* enum flc_platform (not LOCAL) */
    const char *function;     /* Lambda function name or ARN, OpenWhisk action
                                 ("pkg/action"); NULL: "flcache-fn" */
    flc_lambda_cfg_t lambda;  /* platform LAMBDA (log_tail is set per call) */
    flc_ow_cfg_t ow;          /* platform OPENWHISK (activation is set per call) */
    unsigned throttle_retries;/* extra attempts after a throttled answer; 0 -> 8 */
    unsigned backoff_ms;      /* first wait; doubled each time; 0 -> 100 */
    unsigned backoff_max_ms;  /* longest wait; 0 -> 5000 */
    const volatile int *abort;/* nonzero: stop waiting (FLC_ECLOSED): the pool's kill */
} flc_remote_cfg_t;

/* One remote invocation as the driver and the platform saw it. */
typedef struct flc_remote_out {
    int ok;                /* the function answered ok:true */
    int function_error;    /* 1: the platform reported the function failed
                              (Lambda X-Amz-Function-Error, OpenWhisk action
                              error): error names it */
    int crashed;           /* Lambda Runtime.ExitError: the runtime died */
    int timed_out;         /* the platform stopped it at its timeout (Lambda
                              Sandbox.Timedout, OpenWhisk "exceeded its time
                              limits") */
    int throttled;         /* throttled answers that were retried */
    cJSON *reply;          /* the function's result object, or NULL; owned */
    char error[512];       /* why, when !ok */
    double elapsed_ms;     /* the driver's round trip (last attempt) */
    double duration_ms;    /* the platform's duration, 0 when not reported */
    uint64_t billed_ms;    /* the platform's billed duration, 0 when not reported */
    unsigned memory_mb;    /* the function's configured memory, 0 when unknown */
    uint64_t max_memory_kb;/* peak memory the platform measured, 0 when unknown */
    double init_ms;        /* cold start (Lambda Init Duration, OpenWhisk initTime) */
    int cold;              /* 1: an instance was started for it */
    char id[96];           /* request id / activation id */
} flc_remote_out_t;

/* Invokes cfg's function with the JSON event text (one object) and waits at
 * most timeout_ms (0: the platform's default). Returns 0 when the platform
 * answered (out->ok says whether the function did; out->reply is the
 * result object), FLC_ETIMEOUT when it did not answer in time, FLC_EAUTH
 * for a refused signature or key (HTTP 401/403, message quoting the
 * platform), FLC_EPROTO when still throttled after every retry ("throttled")
 * or for another HTTP error, FLC_ECONN when it cannot be reached; *e and out->error name the function. Clear *out
 * with flc_remote_out_clear either way. */
int flc_remote_invoke(const flc_remote_cfg_t *cfg, const char *event, unsigned timeout_ms,
                      flc_remote_out_t *out, flc_err_t *e);

void flc_remote_out_clear(flc_remote_out_t *out);

/* Reads a Lambda REPORT line out of a log tail (text, not base64) into
 * out: duration_ms, billed_ms, memory_mb, max_memory_kb, init_ms and cold.
 * 1 when a REPORT line was found, else 0. */
int flc_lambda_report_parse(const char *log, flc_remote_out_t *out);

/* Decodes standard base64 (whitespace skipped) into a malloc'ed,
 * NUL-ended string; NULL when s is not base64 or memory runs out. */
char *flc_base64_decode(const char *s, size_t *len);

#endif
