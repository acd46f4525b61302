/* Reading the environment once into an flc_config_t, checking it, and
 * handing its values to the libraries' option structs (see config.h for the
 * table of variables). Values with a syntax (sizes, levels, modes, counts)
 * are checked here, at start-up, so a typo is an error naming the variable
 * instead of a setting silently ignored. */
#include "cli/config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/log.h"

/* The variable's value, or NULL when it is unset or empty. */
static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && *v != '\0' ? v : NULL;
}

/* *out = a copy of the first set variable of a, b (b may be NULL). */
static int take(char **out, const char *a, const char *b, flc_err_t *e)
{
    const char *v = env(a);
    if (v == NULL && b != NULL)
        v = env(b);
    if (v == NULL)
        return FLC_OK;
    *out = strdup(v);
    if (*out == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory reading %s", a);
    return FLC_OK;
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

static int read_sizes(flc_config_t *c, flc_err_t *e)
{
    const char *v;
    if ((v = env("FLCACHE_CHUNK")) != NULL &&
        parse_size("FLCACHE_CHUNK", v, &c->chunk_bytes, e) != FLC_OK)
        return FLC_EINVAL;
    if ((v = env("FLCACHE_MAX_MSG")) != NULL &&
        parse_size("FLCACHE_MAX_MSG", v, &c->max_msg_bytes, e) != FLC_OK)
        return FLC_EINVAL;
    return FLC_OK;
}

static int read_modes(flc_config_t *c, flc_err_t *e)
{
    const char *v;
    c->log_level = -1;
    if ((v = env("FLCACHE_LOG")) != NULL &&
        (c->log_level = flc_log_level_from_name(v)) < 0)
        return flc_err_set(e, FLC_EINVAL,
                           "FLCACHE_LOG='%.64s' is not a level: use off, error, warn, info or "
                           "debug",
                           v);
    c->pool_mem = -1;
    if ((v = env("FLCACHE_POOL_MEM")) != NULL) {
        static const struct {
            const char *name;
            int mode;
        } modes[] = {{"rlimit", FLC_MEM_RLIMIT},
                     {"watch", FLC_MEM_WATCH},
                     {"both", FLC_MEM_BOTH},
                     {"off", FLC_MEM_OFF}};
        for (size_t i = 0; i < sizeof modes / sizeof *modes; i++)
            if (strcmp(v, modes[i].name) == 0)
                c->pool_mem = modes[i].mode;
        if (c->pool_mem < 0)
            return flc_err_set(e, FLC_EINVAL,
                               "FLCACHE_POOL_MEM='%.64s' is not a mode: use rlimit, watch, "
                               "both or off",
                               v);
    }
    if ((v = env("FLCACHE_LAMBDA_MAX_EVENTS")) != NULL) {
        char *end = NULL;
        errno = 0;
        long n = isdigit((unsigned char)*v) ? strtol(v, &end, 10) : -1;
        if (n < 0 || *end != '\0' || errno == ERANGE)
            return flc_err_set(e, FLC_EINVAL,
                               "FLCACHE_LAMBDA_MAX_EVENTS='%.64s' is not a count of events",
                               v);
        c->lambda_max_events = n;
    }
    return FLC_OK;
}

static int read_strings(flc_config_t *c, flc_err_t *e)
{
    const struct {
        char **field;
        const char *name, *fallback;
    } vars[] = {
        {&c->redis, "FLCACHE_REDIS", NULL},
        {&c->cold, "FLCACHE_COLD", NULL},
        {&c->cold_bucket, "FLCACHE_COLD_BUCKET", NULL},
        {&c->cold_region, "FLCACHE_COLD_REGION", NULL},
        {&c->policy, "FLCACHE_POLICY", NULL},
        {&c->aws_region, "AWS_REGION", NULL},
        {&c->aws_default_region, "AWS_DEFAULT_REGION", NULL},
        {&c->aws_access_key, "AWS_ACCESS_KEY_ID", NULL},
        {&c->aws_secret_key, "AWS_SECRET_ACCESS_KEY", NULL},
        {&c->aws_session_token, "AWS_SESSION_TOKEN", NULL},
        {&c->lambda_endpoint, "FLCACHE_LAMBDA_ENDPOINT", NULL},
        {&c->ow_apihost, "__OW_API_HOST", "WSK_APIHOST"},
        {&c->ow_auth, "__OW_API_KEY", "WSK_AUTH"},
        {&c->ow_namespace, "__OW_NAMESPACE", "WSK_NAMESPACE"},
        {&c->data_dir, "FLCACHE_DATA_DIR", NULL},
        {&c->redis_server, "FLCACHE_REDIS_SERVER", NULL},
        {&c->tmpdir, "TMPDIR", NULL},
        {&c->fn_path, "FLCACHE_FN", NULL},
        {&c->lambda_runtime_api, "AWS_LAMBDA_RUNTIME_API", NULL},
    };
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        if (take(vars[i].field, vars[i].name, vars[i].fallback, e) != FLC_OK)
            return FLC_ENOMEM;
    return FLC_OK;
}

int flc_config_read(flc_config_t *c, flc_err_t *e)
{
    memset(c, 0, sizeof *c);
    int rc = read_modes(c, e);
    if (rc == FLC_OK)
        rc = read_sizes(c, e);
    if (rc == FLC_OK)
        rc = read_strings(c, e);
    if (rc != FLC_OK)
        flc_config_clear(c);
    return rc;
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

void flc_config_clear(flc_config_t *c)
{
    if (c == NULL)
        return;
    char **all[] = {&c->redis, &c->cold, &c->cold_bucket, &c->cold_region, &c->policy,
                    &c->aws_region, &c->aws_default_region, &c->aws_access_key,
                    &c->aws_secret_key, &c->aws_session_token, &c->lambda_endpoint,
                    &c->ow_apihost, &c->ow_auth, &c->ow_namespace, &c->data_dir,
                    &c->redis_server, &c->tmpdir, &c->fn_path, &c->lambda_runtime_api};
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
    flc_config_store_defaults(&g_program, NULL);
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
    o->cold_url = c->cold != NULL ? c->cold : "";
    flc_config_cold_opts(c, cold);
    o->cold_opts = cold;
}

void flc_config_store_defaults(const flc_config_t *c, const char *url)
{
    /* flc_store_set_defaults keeps the pointer: this copy must outlive the
     * stores, as c must. */
    static flc_cold_opts_t cold;
    flc_store_opts_t o;
    flc_config_store_opts(c, &o, &cold);
    flc_store_set_defaults(url != NULL ? url : c->redis, &o);
}

void flc_config_embed_opts(const flc_config_t *c, flc_embed_opts_t *o)
{
    o->server_bin = c->redis_server;
    o->tmpdir = c->tmpdir;
}

void flc_config_pool_cfg(const flc_config_t *c, flc_pool_cfg_t *pc)
{
    if (c->pool_mem >= 0)
        pc->mem_mode = c->pool_mem;
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
