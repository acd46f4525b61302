/* Reading the environment once into an flc_config_t, checking it, and
 * handing its values to the libraries' option structs (see config.h for the
 * table of variables). Values with a syntax (sizes, levels, modes, counts)
 * are checked here, at start-up, so a typo is an error naming the variable
 * instead of a setting silently ignored. */
#include "cli/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/log.h"
#include "policies/policy.h"

/* The variable's value, or NULL when it is unset or empty. */
static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && *v != '\0' ? v : NULL;
}

/* A byte count: digits, optionally k, m or g (times 1024^n), optionally
 * followed by "b" or "ib" ("256k", "512MiB"). Above 0 and within size_t. */
static int parse_size(const char *name, const char *v, size_t *out, flc_err_t *e)
{
    const char *p = v;
    unsigned long long x = 0;
    int ok = isdigit((unsigned char)*p);
    for (; ok && isdigit((unsigned char)*p); p++) {
        if (x > (ULLONG_MAX - 9) / 10)
            ok = 0;
        x = x * 10 + (unsigned long long)(*p - '0');
    }
    unsigned shift = 0;
    if (ok && *p != '\0') {
        const char *units = "kmg";
        const char *u = strchr(units, tolower((unsigned char)*p));
        if (u == NULL) {
            ok = 0;
        } else {
            shift = 10u * (unsigned)(u - units + 1);
            p++;
            if (strcasecmp(p, "b") == 0 || strcasecmp(p, "ib") == 0)
                p += strlen(p);
        }
    }
    if (ok && *p != '\0')
        ok = 0;
    if (ok && (x == 0 || x > (unsigned long long)(SIZE_MAX >> shift)))
        ok = 0;
    if (!ok)
        return flc_err_set(e, FLC_EINVAL,
                           "%s='%.64s' is not a size: use a number of bytes above 0, "
                           "optionally with k, m or g (\"256k\")",
                           name, v);
    *out = (size_t)(x << shift);
    return FLC_OK;
}

/* Frees a string after overwriting it: secrets do not linger in freed memory. */
static void drop(char **s)
{
    if (*s == NULL)
        return;
    volatile char *p = *s;
    while (*p)
        *p++ = '\0';
    free(*s);
    *s = NULL;
}

/* How a variable's value is checked and stored. */
enum { V_STR, V_SIZE, V_LEVEL, V_POOL_MEM, V_COUNT, V_PLATFORM };

/* The table of variables (config.h lists them with their meaning). The
 * ones with a syntax come first, so the first error reported is about them.
 * fallback: a second name read when the first is unset. */
static const struct var {
    const char *name, *fallback;
    int kind;
    size_t off;
} vars[] = {
    {"FLCACHE_LOG", NULL, V_LEVEL, offsetof(flc_config_t, log_level)},
    {"FLCACHE_POOL_MEM", NULL, V_POOL_MEM, offsetof(flc_config_t, pool_mem)},
    {"FLCACHE_PLATFORM", NULL, V_PLATFORM, offsetof(flc_config_t, platform)},
    {"FLCACHE_FUNCTION", NULL, V_STR, offsetof(flc_config_t, function)},
    {"FLCACHE_POOL_CPU", NULL, V_COUNT, offsetof(flc_config_t, pool_cpu)},
    {"FLCACHE_LAMBDA_MAX_EVENTS", NULL, V_COUNT, offsetof(flc_config_t, lambda_max_events)},
    {"FLCACHE_CHUNK", NULL, V_SIZE, offsetof(flc_config_t, chunk_bytes)},
    {"FLCACHE_MAX_MSG", NULL, V_SIZE, offsetof(flc_config_t, max_msg_bytes)},
    {"FLCACHE_WAIT_REPLICAS", NULL, V_COUNT, offsetof(flc_config_t, wait_replicas)},
    {"FLCACHE_WAIT_MS", NULL, V_COUNT, offsetof(flc_config_t, wait_ms)},
    {"FLCACHE_REDIS", NULL, V_STR, offsetof(flc_config_t, redis)},
    {"FLCACHE_COLD", NULL, V_STR, offsetof(flc_config_t, cold)},
    {"FLCACHE_COLD_BUCKET", NULL, V_STR, offsetof(flc_config_t, cold_bucket)},
    {"FLCACHE_COLD_REGION", NULL, V_STR, offsetof(flc_config_t, cold_region)},
    {"FLCACHE_POLICY", NULL, V_STR, offsetof(flc_config_t, policy)},
    {"FLCACHE_NODES", NULL, V_STR, offsetof(flc_config_t, nodes)},
    {"AWS_REGION", NULL, V_STR, offsetof(flc_config_t, aws_region)},
    {"AWS_DEFAULT_REGION", NULL, V_STR, offsetof(flc_config_t, aws_default_region)},
    {"AWS_ACCESS_KEY_ID", NULL, V_STR, offsetof(flc_config_t, aws_access_key)},
    {"AWS_SECRET_ACCESS_KEY", NULL, V_STR, offsetof(flc_config_t, aws_secret_key)},
    {"AWS_SESSION_TOKEN", NULL, V_STR, offsetof(flc_config_t, aws_session_token)},
    {"FLCACHE_LAMBDA_ENDPOINT", NULL, V_STR, offsetof(flc_config_t, lambda_endpoint)},
    {"__OW_API_HOST", "WSK_APIHOST", V_STR, offsetof(flc_config_t, ow_apihost)},
    {"__OW_API_KEY", "WSK_AUTH", V_STR, offsetof(flc_config_t, ow_auth)},
    {"__OW_NAMESPACE", "WSK_NAMESPACE", V_STR, offsetof(flc_config_t, ow_namespace)},
    {"FLCACHE_DATA_DIR", NULL, V_STR, offsetof(flc_config_t, data_dir)},
    {"FLCACHE_REDIS_SERVER", NULL, V_STR, offsetof(flc_config_t, redis_server)},
    {"FLCACHE_REDIS_MALLOC_CONF", NULL, V_STR, offsetof(flc_config_t, redis_malloc_conf)},
    {"TMPDIR", NULL, V_STR, offsetof(flc_config_t, tmpdir)},
    {"FLCACHE_FN", NULL, V_STR, offsetof(flc_config_t, fn_path)},
    {"AWS_LAMBDA_RUNTIME_API", NULL, V_STR, offsetof(flc_config_t, lambda_runtime_api)},
    {"OPENBLAS_NUM_THREADS", NULL, V_STR, offsetof(flc_config_t, openblas_threads)},
};
enum { NVARS = sizeof vars / sizeof *vars };

static int parse_level(const char *name, const char *v, int *out, flc_err_t *e)
{
    if (flc_log_level_parse(v, out) != FLC_OK)
        return flc_err_set(e, FLC_EINVAL,
                           "%s='%.64s' is not a level: use off, error, warn, info or debug",
                           name, v);
    return FLC_OK;
}

static int parse_pool_mem(const char *name, const char *v, int *out, flc_err_t *e)
{
    static const struct {
        const char *name;
        int mode;
    } modes[] = {{"rlimit", FLC_MEM_RLIMIT},
                 {"watch", FLC_MEM_WATCH},
                 {"both", FLC_MEM_BOTH},
                 {"off", FLC_MEM_OFF}};
    for (size_t i = 0; i < sizeof modes / sizeof *modes; i++)
        if (strcmp(v, modes[i].name) == 0) {
            *out = modes[i].mode;
            return FLC_OK;
        }
    return flc_err_set(e, FLC_EINVAL,
                       "%s='%.64s' is not a mode: use rlimit, watch, both or off", name, v);
}

static int parse_count(const char *name, const char *v, long *out, flc_err_t *e)
{
    char *end = NULL;
    errno = 0;
    long n = isdigit((unsigned char)*v) ? strtol(v, &end, 10) : -1;
    if (n < 0 || *end != '\0' || errno == ERANGE)
        return flc_err_set(e, FLC_EINVAL, "%s='%.64s' is not a whole number (0 or more)", name, v);
    *out = n;
    return FLC_OK;
}

/* Stores variable x's value v (NULL: unset) into c, checked by its kind;
 * the field keeps its value when v is refused. */
static int put(flc_config_t *c, const struct var *x, const char *v, flc_err_t *e)
{
    void *f = (char *)c + x->off;
    switch (x->kind) {
    case V_LEVEL:
    case V_POOL_MEM: {
        int n = -1;
        int rc = v == NULL           ? FLC_OK
                 : x->kind == V_LEVEL ? parse_level(x->name, v, &n, e)
                                      : parse_pool_mem(x->name, v, &n, e);
        if (rc == FLC_OK)
            *(int *)f = n;
        return rc;
    }
    case V_PLATFORM: {
        int n = FLC_PLATFORM_LOCAL;
        flc_err_t pe = {0};
        if (v != NULL && flc_platform_parse(v, &n, &pe) != FLC_OK)
            return flc_err_set(e, FLC_EINVAL, "%s='%.64s' is not a platform: use local, lambda "
                               "or openwhisk", x->name, v);
        *(int *)f = n;
        return FLC_OK;
    }
    case V_COUNT: {
        long n = 0;
        int rc = v == NULL ? FLC_OK : parse_count(x->name, v, &n, e);
        if (rc == FLC_OK)
            *(long *)f = n;
        return rc;
    }
    case V_SIZE: {
        size_t n = 0;
        int rc = v == NULL ? FLC_OK : parse_size(x->name, v, &n, e);
        if (rc == FLC_OK)
            *(size_t *)f = n;
        return rc;
    }
    default: {
        char *copy = NULL;
        if (v != NULL && (copy = strdup(v)) == NULL)
            return flc_err_set(e, FLC_ENOMEM, "out of memory reading %s", x->name);
        drop((char **)f);
        *(char **)f = copy;
        return FLC_OK;
    }
    }
}

int flc_config_read(flc_config_t *c, flc_err_t *e)
{
    memset(c, 0, sizeof *c);
    c->log_level = -1;
    c->pool_mem = -1;
    int rc = FLC_OK;
    for (size_t i = 0; rc == FLC_OK && i < NVARS; i++) {
        const char *v = env(vars[i].name);
        if (v == NULL && vars[i].fallback != NULL)
            v = env(vars[i].fallback);
        rc = put(c, &vars[i], v, e);
    }
    if (rc != FLC_OK)
        flc_config_clear(c);
    return rc;
}

int flc_config_set(flc_config_t *c, const char *name, const char *value, flc_err_t *e)
{
    for (size_t i = 0; i < NVARS; i++)
        if (strcmp(name, vars[i].name) == 0 ||
            (vars[i].fallback != NULL && strcmp(name, vars[i].fallback) == 0))
            return put(c, &vars[i], value != NULL && *value != '\0' ? value : NULL, e);
    return flc_err_set(e, FLC_ENOTFOUND, "%.64s is not a variable flcache reads", name);
}

void flc_config_clear(flc_config_t *c)
{
    if (c == NULL)
        return;
    char **all[] = {&c->redis, &c->cold, &c->cold_bucket, &c->cold_region, &c->policy, &c->nodes,
                    &c->aws_region, &c->aws_default_region, &c->aws_access_key,
                    &c->aws_secret_key, &c->aws_session_token, &c->lambda_endpoint,
                    &c->ow_apihost, &c->ow_auth, &c->ow_namespace, &c->data_dir,
                    &c->redis_server, &c->redis_malloc_conf, &c->tmpdir, &c->fn_path, &c->lambda_runtime_api,
                    &c->openblas_threads, &c->function};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        drop(all[i]);
    memset(c, 0, sizeof *c);
    c->log_level = -1;
    c->pool_mem = -1;
}

/* ---- the program's copy ------------------------------------------------- */

static flc_config_t g_program = {.log_level = -1, .pool_mem = -1};

int flc_config_start(int default_level, flc_err_t *e)
{
    flc_config_clear(&g_program);
    int rc = flc_config_read(&g_program, e);
    if (rc != FLC_OK)
        return rc;
    flc_log_set_level(g_program.log_level >= 0 ? g_program.log_level : default_level);
    return FLC_OK;
}

const flc_config_t *flc_config_program(void)
{
    return &g_program;
}

/* ---- option structs ------------------------------------------------------ */

void flc_config_cold_opts(const flc_config_t *c, flc_cold_opts_t *o)
{
    memset(o, 0, sizeof *o);
    o->bucket = c->cold_bucket;
    o->region = c->cold_region != NULL ? c->cold_region : c->aws_region;
    o->access_key = c->aws_access_key;
    o->secret_key = c->aws_secret_key;
    o->session_token = c->aws_session_token;
}

void flc_config_store_opts(const flc_config_t *c, flc_store_opts_t *o, flc_cold_opts_t *cold)
{
    memset(o, 0, sizeof *o);
    o->chunk_bytes = c->chunk_bytes;
    o->max_msg_bytes = c->max_msg_bytes;
    o->wait_replicas = (unsigned)c->wait_replicas;
    o->wait_timeout_ms = (unsigned)c->wait_ms;
    o->cold_url = c->cold != NULL ? c->cold : "";
    flc_config_cold_opts(c, cold);
    o->cold_opts = cold;
}

void flc_config_store_cfg(const flc_config_t *c, flc_store_cfg_t *sc, flc_cold_opts_t *cold)
{
    sc->url = c->redis;
    flc_config_store_opts(c, &sc->opts, cold);
}

flc_policy_t *flc_config_policy(const flc_config_t *c, flc_err_t *e)
{
    flc_err_clear(e);
    if (c->cold == NULL)
        return NULL;
    return flc_pol_new(c->policy != NULL ? c->policy : "workload", e);
}

void flc_config_embed_opts(const flc_config_t *c, flc_embed_opts_t *o)
{
    o->server_bin = c->redis_server;
    o->malloc_conf = c->redis_malloc_conf;
    o->tmpdir = c->tmpdir;
}

void flc_config_pool_cfg(const flc_config_t *c, flc_pool_cfg_t *pc)
{
    if (c->pool_mem >= 0)
        pc->mem_mode = c->pool_mem;
    if (c->pool_cpu > 0)
        pc->cpu_mb_per_vcpu = (unsigned)c->pool_cpu;
}

void flc_config_lambda_cfg(const flc_config_t *c, flc_lambda_cfg_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->region = c->aws_region != NULL ? c->aws_region : c->aws_default_region;
    cfg->access_key = c->aws_access_key;
    cfg->secret_key = c->aws_secret_key;
    cfg->session_token = c->aws_session_token;
    cfg->endpoint = c->lambda_endpoint;
}

void flc_config_ow_cfg(const flc_config_t *c, flc_ow_cfg_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->apihost = c->ow_apihost;
    cfg->auth = c->ow_auth;
    cfg->ns = c->ow_namespace;
}

void flc_config_remote_cfg(const flc_config_t *c, int platform, flc_remote_cfg_t *rc)
{
    memset(rc, 0, sizeof *rc);
    rc->platform = platform;
    rc->function = c->function;
    flc_config_lambda_cfg(c, &rc->lambda);
    flc_config_ow_cfg(c, &rc->ow);
}
