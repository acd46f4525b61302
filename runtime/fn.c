/* The function-side dispatcher: the role table, the result envelope, and the
 * local and OpenWhisk modes (the Lambda loop is in lambda_runtime.c).
 *
 * The table is a small array searched by name: a binary registers a handful
 * of roles once at start, so nothing fancier pays for itself. */
#include "runtime/fn.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/event.h"

#define FLC_FN_MAX_ROLES 32

typedef struct fn_role {
    char *name;
    char *help;
    flc_fn_handler_t handler;
    void *user;
} fn_role_t;

struct flc_fn_table {
    fn_role_t roles[FLC_FN_MAX_ROLES];
    int n;
};

flc_fn_table_t *flc_fn_table_new(void)
{
    return calloc(1, sizeof(flc_fn_table_t));
}

void flc_fn_table_free(flc_fn_table_t *t)
{
    if (t == NULL)
        return;
    for (int i = 0; i < t->n; i++) {
        free(t->roles[i].name);
        free(t->roles[i].help);
    }
    free(t);
}

static const fn_role_t *find_role(const flc_fn_table_t *t, const char *name)
{
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->roles[i].name, name) == 0)
            return &t->roles[i];
    return NULL;
}

int flc_fn_register(flc_fn_table_t *t, const char *name, flc_fn_handler_t handler, void *user,
                    const char *help)
{
    if (t == NULL || name == NULL || *name == '\0' || handler == NULL)
        return FLC_EINVAL;
    if (find_role(t, name) != NULL)
        return FLC_EDUP;
    if (t->n == FLC_FN_MAX_ROLES)
        return FLC_ETOOBIG;
    fn_role_t *r = &t->roles[t->n];
    r->name = strdup(name);
    r->help = strdup(help != NULL ? help : "");
    if (r->name == NULL || r->help == NULL) {
        free(r->name);
        free(r->help);
        return FLC_ENOMEM;
    }
    r->handler = handler;
    r->user = user;
    t->n++;
    return FLC_OK;
}

void flc_fn_add_compute(flc_fn_ctx_t *ctx, double ms)
{
    ctx->compute_ms = (ctx->compute_ms < 0 ? 0 : ctx->compute_ms) + ms;
}

void flc_fn_add_comm(flc_fn_ctx_t *ctx, double ms)
{
    ctx->comm_ms = (ctx->comm_ms < 0 ? 0 : ctx->comm_ms) + ms;
}

/* Fills the fields every result carries, ok or not. */
static void envelope(cJSON *out, const char *role, double compute_ms, double comm_ms,
                     double handler_ms)
{
    struct rusage ru;
    long rss_kb = getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : 0;
    if (role != NULL)
        cJSON_AddStringToObject(out, "role", role);
    cJSON_AddNumberToObject(out, "compute_ms", compute_ms);
    cJSON_AddNumberToObject(out, "comm_ms", comm_ms);
    cJSON_AddNumberToObject(out, "handler_ms", handler_ms);
    cJSON_AddNumberToObject(out, "pid", (double)getpid());
    cJSON_AddNumberToObject(out, "rss_kb", (double)rss_kb);
}

static cJSON *error_result(const char *role, const char *msg)
{
    cJSON *out = cJSON_CreateObject();
    if (out == NULL)
        return NULL;
    cJSON_AddFalseToObject(out, "ok");
    cJSON_AddStringToObject(out, "error", msg);
    envelope(out, role, 0, 0, 0);
    return out;
}

cJSON *flc_fn_dispatch(const flc_fn_table_t *t, const cJSON *event, const char *mode,
                       const char *request_id, uint64_t deadline_ms)
{
    const char *role = NULL;
    flc_err_t re = {0};
    if (flc_ev_need_str(event, "role", &role, &re) != FLC_OK)
        return error_result(NULL, re.msg);
    const fn_role_t *r = find_role(t, role);
    if (r == NULL) {
        char msg[256];
        snprintf(msg, sizeof msg, "unknown role '%.64s' (flcache-fn --help lists roles)", role);
        return error_result(role, msg);
    }
    flc_fn_ctx_t ctx = {
        .mode = mode != NULL ? mode : "inproc",
        .role = r->name,
        .request_id = request_id != NULL ? request_id : "",
        .deadline_ms = deadline_ms,
        .user = r->user,
        .compute_ms = -1,
        .comm_ms = -1,
    };
    cJSON *result = NULL;
    uint64_t t0 = flc_now_ns();
    int rc = r->handler(event, &result, &ctx);
    double handler_ms = (double)(flc_now_ns() - t0) / 1e6;

    double comm = ctx.comm_ms < 0 ? 0 : ctx.comm_ms;
    double compute = ctx.compute_ms;
    if (compute < 0) /* not reported: whatever was not communication */
        compute = handler_ms > comm ? handler_ms - comm : 0;

    cJSON *out = cJSON_CreateObject();
    if (out == NULL) {
        cJSON_Delete(result);
        return NULL;
    }
    if (rc == 0) {
        cJSON_AddTrueToObject(out, "ok");
        cJSON_AddItemToObject(out, "result", result != NULL ? result : cJSON_CreateNull());
    } else {
        cJSON_Delete(result);
        const char *msg = ctx.err.msg[0] != '\0' ? ctx.err.msg : flc_strerror(rc);
        cJSON_AddFalseToObject(out, "ok");
        cJSON_AddStringToObject(out, "error", msg);
        cJSON_AddNumberToObject(out, "code", rc);
    }
    envelope(out, r->name, compute, comm, handler_ms);
    return out;
}

char *flc_fn_dispatch_text(const flc_fn_table_t *t, const char *text, size_t len,
                           const char *mode, const char *request_id, uint64_t deadline_ms)
{
    flc_err_t e = {0};
    cJSON *event = flc_ev_parse(text, len, &e);
    cJSON *out = event != NULL ? flc_fn_dispatch(t, event, mode, request_id, deadline_ms)
                               : error_result(NULL, flc_err_msg(&e));
    cJSON_Delete(event);
    char *line = flc_ev_print(out);
    cJSON_Delete(out);
    return line;
}

static int blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return 0;
    return 1;
}

int flc_fn_run_local(const flc_fn_table_t *t, FILE *in, FILE *out)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int rc = FLC_OK;
    while ((n = getline(&line, &cap, in)) >= 0) {
        if (blank(line, (size_t)n))
            continue;
        char *res = flc_fn_dispatch_text(t, line, (size_t)n, "local", "", 0);
        if (res == NULL) {
            /* Out of memory building the answer: still answer, so the
             * platform is not left waiting for a line that never comes. */
            fputs("{\"ok\":false,\"error\":\"out of memory building the result\"}\n", out);
        } else {
            fputs(res, out);
            fputc('\n', out);
            free(res);
        }
        if (fflush(out) != 0 || ferror(out)) {
            rc = FLC_EIO;
            break;
        }
    }
    free(line);
    return rc;
}

int flc_fn_run_openwhisk(const flc_fn_table_t *t, const char *arg, FILE *out)
{
    char *res = flc_fn_dispatch_text(t, arg, strlen(arg), "openwhisk", "", 0);
    /* A newline first: anything a handler printed without one must not
     * share the last line with the result. */
    fputc('\n', out);
    fputs(res != NULL ? res : "{\"ok\":false,\"error\":\"out of memory building the result\"}",
          out);
    fputc('\n', out);
    free(res);
    return fflush(out) == 0 ? FLC_OK : FLC_EIO;
}

static void usage(const flc_fn_table_t *t, FILE *f)
{
    fprintf(f,
            "usage: flcache-fn            local mode: JSON events on stdin, results on stdout\n"
            "       flcache-fn '<json>'   OpenWhisk native action: result is the last line\n"
            "       AWS_LAMBDA_RUNTIME_API=host:port flcache-fn   AWS Lambda custom runtime\n"
            "roles:\n");
    for (int i = 0; i < t->n; i++)
        fprintf(f, "  %-12s %s\n", t->roles[i].name, t->roles[i].help);
}

int flc_fn_main(const flc_fn_table_t *t, int argc, char **argv, const char *lambda_api,
                long max_events)
{
    if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(t, stdout);
        return 0;
    }
    if (lambda_api != NULL && *lambda_api != '\0') {
        flc_err_t e = {0};
        int rc = flc_fn_run_lambda(t, lambda_api, max_events, &e);
        if (rc != 0)
            fprintf(stderr, "flcache-fn: lambda runtime: %s\n", flc_err_msg(&e));
        return rc == 0 ? 0 : 1;
    }
    if (argc > 1 && argv[1][0] == '{')
        return flc_fn_run_openwhisk(t, argv[1], stdout) == 0 ? 0 : 1;
    if (argc > 1 && strcmp(argv[1], "--local") != 0) {
        fprintf(stderr, "flcache-fn: unknown argument '%s'\n", argv[1]);
        usage(t, stderr);
        return 2;
    }
    /* Results go to a private copy of stdout; fd 1 becomes stderr, so a
     * handler's printf cannot interleave with the result lines. */
    fflush(stdout);
    /* CLOEXEC: a helper process a handler starts must not hold the result
     * pipe open, or the platform would not see this instance exit. */
    int fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    FILE *out = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (out == NULL) {
        perror("flcache-fn: cannot duplicate stdout");
        return 1;
    }
    dup2(STDERR_FILENO, STDOUT_FILENO);
    int rc = flc_fn_run_local(t, stdin, out);
    fclose(out);
    return rc == 0 ? 0 : 1;
}
