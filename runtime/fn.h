/* The function side of the platform: one binary (flcache-fn) that receives a
 * JSON event, dispatches on its "role" through a role table, and answers one
 * JSON result. Role handlers live in the upper layers and are registered by
 * cli/fn_main.c; this layer only knows the table.
 *
 * Every result has the same shape, in every mode:
 *   {"ok":true, "role":"worker", "result":<handler's value>,
 *    "compute_ms":12.5, "comm_ms":3.1, "handler_ms":15.9,
 *    "pid":1234, "rss_kb":40960}
 *   {"ok":false, "role":"worker", "error":"event field 'rank' is missing", ...}
 * A failing handler never ends a warm instance: its error becomes ok:false.
 *
 * Modes (flc_fn_main picks one):
 *   local      events as JSON lines on stdin, one result line on stdout each;
 *              the instance stays warm until EOF (the local pool drives this).
 *   openwhisk  event as argv[1], the result is the last line on stdout.
 *   lambda     AWS_LAMBDA_RUNTIME_API set: the custom-runtime loop
 *              (next / response / error) over libcurl, see lambda_runtime.c.
 *
 * This layer reads no configuration: the program passes the Lambda API
 * address, and hands its roles what they need through the user pointer of
 * flc_fn_register (cli/fn_main.c, docs/functions.md). */
#ifndef FLC_RUNTIME_FN_H
#define FLC_RUNTIME_FN_H

#include <stdint.h>
#include <stdio.h>

#include <cjson/cJSON.h>

#include "base/error.h"

/* What a handler sees besides its event, and how it reports back. */
typedef struct flc_fn_ctx {
    const char *mode;       /* "local", "openwhisk", "lambda" or "inproc" */
    const char *role;       /* the role being run */
    const char *request_id; /* Lambda request id, else "" */
    uint64_t deadline_ms;   /* wall-clock deadline (ms since epoch), 0 = none */
    void *user;             /* the pointer given to flc_fn_register */
    /* Set by the handler (or accumulated with flc_fn_add_*): its own compute
     * and communication time in ms. Left negative, compute_ms defaults to
     * the handler's wall time minus comm_ms, and comm_ms to 0. */
    double compute_ms;
    double comm_ms;
    /* On failure the handler returns a negative FLC_E* code and fills err
     * (flc_err_set(&ctx->err, ...)); the message becomes "error". */
    flc_err_t err;
} flc_fn_ctx_t;

/* A role handler. On success returns 0 and sets *result to a new cJSON the
 * platform takes ownership of (NULL becomes JSON null). On failure returns a
 * negative code with ctx->err set; any *result is freed and ignored. */
typedef int (*flc_fn_handler_t)(const cJSON *event, cJSON **result, flc_fn_ctx_t *ctx);

typedef struct flc_fn_table flc_fn_table_t;

/* An empty role table; NULL when out of memory. Free with flc_fn_table_free. */
flc_fn_table_t *flc_fn_table_new(void);
void flc_fn_table_free(flc_fn_table_t *t);

/* Registers handler under role name (copied). user is passed in ctx->user;
 * help is one line for `flcache-fn --help` (may be NULL). FLC_EDUP when the
 * name is taken, FLC_EINVAL on an empty name or NULL handler. */
int flc_fn_register(flc_fn_table_t *t, const char *name, flc_fn_handler_t handler, void *user,
                    const char *help);

/* Adds ms to the handler's reported compute / communication time. */
void flc_fn_add_compute(flc_fn_ctx_t *ctx, double ms);
void flc_fn_add_comm(flc_fn_ctx_t *ctx, double ms);

/* Runs one event through the table and returns the result object (never
 * NULL unless out of memory; errors are ok:false results). mode, request_id
 * and deadline_ms are copied into the handler's ctx (NULL -> "inproc"/""). */
cJSON *flc_fn_dispatch(const flc_fn_table_t *t, const cJSON *event, const char *mode,
                       const char *request_id, uint64_t deadline_ms);

/* Same from text: parses text[0..len) first; a parse error becomes an
 * ok:false result. Returns a malloc'ed compact line (free()), NULL if OOM. */
char *flc_fn_dispatch_text(const flc_fn_table_t *t, const char *text, size_t len,
                           const char *mode, const char *request_id, uint64_t deadline_ms);

/* Local mode: reads events, one JSON per line, from in until EOF, and writes
 * one result line per event to out, flushed. Blank lines are skipped.
 * Returns 0 at EOF, FLC_EIO when out cannot be written. */
int flc_fn_run_local(const flc_fn_table_t *t, FILE *in, FILE *out);

/* OpenWhisk native action: dispatches the event text arg and writes the
 * result as the last line of out. Returns 0 (the action result carries
 * ok/error). Bound parameters (`wsk action update --param FLCACHE_REDIS
 * redis://...`) arrive in the event; the program applies them to its
 * configuration before it builds its roles (cli/fn_main.c). */
int flc_fn_run_openwhisk(const flc_fn_table_t *t, const char *arg, FILE *out);

/* AWS Lambda custom runtime loop against api ("host:port", the value of
 * AWS_LAMBDA_RUNTIME_API). Runs until the Runtime API cannot be reached,
 * or after max_events events when max_events > 0 (tests). Returns 0 after
 * max_events, else the error that ended the loop, with *e set.
 * Implemented in lambda_runtime.c. */
int flc_fn_run_lambda(const flc_fn_table_t *t, const char *api, long max_events, flc_err_t *e);

/* The main of flcache-fn: `--help` lists roles; lambda_api not NULL or
 * empty (the program's AWS_LAMBDA_RUNTIME_API) -> lambda mode, ending
 * after max_events events when max_events > 0 (FLCACHE_LAMBDA_MAX_EVENTS,
 * for tests); argv[1] starting with '{' -> openwhisk mode; otherwise (or
 * `--local`) local mode. In local mode stdout is moved aside so stray
 * prints by handlers go to stderr and cannot corrupt the result stream.
 * Returns the exit code. */
int flc_fn_main(const flc_fn_table_t *t, int argc, char **argv, const char *lambda_api,
                long max_events);

#endif
