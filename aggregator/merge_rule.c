/* Merge rule descriptors: names, parameters, defaults, parsing and printing.
 *
 * One table row per parameter says which rules it applies to and its range,
 * so set(), check() and format() agree by construction. Defaults follow the
 * papers: Reddi et al. 2021 (beta1 0.9, beta2 0.99, tau 1e-3), Hsu et al. 2019
 * (server momentum 0.9), Blanchard et al. 2017 (f up to (k-3)/2). */
#include "aggregator/merge.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

static const char *const kind_names[FLC_MERGE_NKINDS] = {
    "fedavg", "mean", "fedavgm", "fedadam", "fedyogi", "fedadagrad",
    "median", "trimmed-mean", "krum", "multi-krum", "bulyan",
};

/* Bit sets of kinds, for the applicability column of the table. */
#define K(x) (1u << (x))
#define K_SERVER (K(FLC_MERGE_FEDAVGM) | K(FLC_MERGE_FEDADAM) | K(FLC_MERGE_FEDYOGI) | \
                  K(FLC_MERGE_FEDADAGRAD))
#define K_ADAPT (K(FLC_MERGE_FEDADAM) | K(FLC_MERGE_FEDYOGI) | K(FLC_MERGE_FEDADAGRAD))
#define K_ALL ((1u << FLC_MERGE_NKINDS) - 1)

typedef enum { P_REAL, P_INT, P_BOOL } ptype_t;

typedef struct param {
    const char *name;
    const char *alias;
    size_t off;     /* offset of the field in flc_merge_rule_t */
    ptype_t type;
    unsigned kinds; /* rules it applies to */
    double lo, hi;  /* allowed range */
    int lo_open, hi_open;
    const char *range; /* the range in words, for messages */
} param_t;

static const param_t params[] = {
    {"server_lr", "eta", offsetof(flc_merge_rule_t, server_lr), P_REAL, K_SERVER,
     0, INFINITY, 1, 1, "> 0"},
    {"momentum", NULL, offsetof(flc_merge_rule_t, momentum), P_REAL, K(FLC_MERGE_FEDAVGM),
     0, 1, 0, 1, "in [0, 1)"},
    {"beta1", NULL, offsetof(flc_merge_rule_t, beta1), P_REAL, K_ADAPT, 0, 1, 0, 1, "in [0, 1)"},
    {"beta2", NULL, offsetof(flc_merge_rule_t, beta2), P_REAL,
     K(FLC_MERGE_FEDADAM) | K(FLC_MERGE_FEDYOGI), 0, 1, 0, 1, "in [0, 1)"},
    {"tau", NULL, offsetof(flc_merge_rule_t, tau), P_REAL, K_ADAPT, 0, INFINITY, 1, 1, "> 0"},
    {"clip", NULL, offsetof(flc_merge_rule_t, clip), P_REAL, K_ALL, 0, INFINITY, 0, 1,
     ">= 0 (0 = off)"},
    {"trim", "trim_beta", offsetof(flc_merge_rule_t, trim), P_REAL, K(FLC_MERGE_TRIMMED_MEAN),
     0, 0.5, 0, 1, "in [0, 0.5)"},
    {"f", NULL, offsetof(flc_merge_rule_t, f), P_INT,
     K(FLC_MERGE_KRUM) | K(FLC_MERGE_MULTI_KRUM) | K(FLC_MERGE_BULYAN), -1, 1e6, 0, 0,
     "an integer >= 0 (-1 = auto)"},
    {"m", NULL, offsetof(flc_merge_rule_t, m), P_INT, K(FLC_MERGE_MULTI_KRUM), 0, 1e6, 0, 0,
     "an integer >= 1 (0 = k - f)"},
    {"weighted", NULL, offsetof(flc_merge_rule_t, weighted), P_BOOL, K_SERVER, 0, 1, 0, 0,
     "0 or 1"},
    {"noise", "sigma", offsetof(flc_merge_rule_t, noise), P_REAL, K(FLC_MERGE_MEAN), 0,
     INFINITY, 0, 1, ">= 0 (0 = off; needs clip > 0)"},
};
#define NPARAMS (sizeof params / sizeof params[0])

const char *flc_merge_kind_name(flc_merge_kind_t kind)
{
    return (unsigned)kind < FLC_MERGE_NKINDS ? kind_names[kind] : "?";
}

static double get_param(const flc_merge_rule_t *r, const param_t *p)
{
    const char *base = (const char *)r + p->off;
    if (p->type == P_REAL)
        return *(const double *)base;
    return *(const int *)base;
}

static void put_param(flc_merge_rule_t *r, const param_t *p, double v)
{
    char *base = (char *)r + p->off;
    if (p->type == P_REAL)
        *(double *)base = v;
    else
        *(int *)base = (int)v;
}

static int in_range(const param_t *p, double v)
{
    if (!isfinite(v))
        return 0;
    if (p->lo_open ? v <= p->lo : v < p->lo)
        return 0;
    if (p->hi_open ? v >= p->hi : v > p->hi)
        return 0;
    if (p->type != P_REAL && v != floor(v))
        return 0;
    return 1;
}

/* Case-insensitive name compare where '_' and '-' are the same letter. */
static int name_eq(const char *a, const char *b, size_t blen)
{
    size_t i = 0;
    for (; i < blen && a[i]; i++) {
        int x = tolower((unsigned char)a[i]), y = tolower((unsigned char)b[i]);
        if (x == '_')
            x = '-';
        if (y == '_')
            y = '-';
        if (x != y)
            return 0;
    }
    return i == blen && a[i] == '\0';
}

static int init_n(flc_merge_rule_t *r, const char *name, size_t len, flc_err_t *e)
{
    int kind = -1;
    for (int k = 0; k < FLC_MERGE_NKINDS; k++)
        if (name_eq(kind_names[k], name, len))
            kind = k;
    if (kind < 0)
        return flc_err_set(e, FLC_EINVAL,
                           "unknown merge rule '%.*s' (known: fedavg, mean, fedavgm, fedadam, "
                           "fedyogi, fedadagrad, median, trimmed-mean, krum, multi-krum, "
                           "bulyan)",
                           (int)(len > 64 ? 64 : len), name);
    memset(r, 0, sizeof *r);
    r->kind = (flc_merge_kind_t)kind;
    r->server_lr = 1.0;
    r->momentum = 0.9;
    r->beta1 = 0.9;
    r->beta2 = 0.99;
    r->tau = 1e-3;
    r->clip = 0;
    r->trim = 0.1;
    r->f = -1;
    r->m = 0;
    r->weighted = 0;
    if (kind == FLC_MERGE_FEDADAM || kind == FLC_MERGE_FEDYOGI)
        r->server_lr = 0.01;
    else if (kind == FLC_MERGE_FEDADAGRAD)
        r->server_lr = 0.1;
    return FLC_OK;
}

int flc_merge_rule_init(flc_merge_rule_t *r, const char *name, flc_err_t *e)
{
    if (r == NULL || name == NULL)
        return flc_err_set(e, FLC_EINVAL, "merge rule: no rule name given");
    return init_n(r, name, strlen(name), e);
}

static const param_t *find_param(const char *key, size_t len)
{
    for (size_t i = 0; i < NPARAMS; i++)
        if (name_eq(params[i].name, key, len) ||
            (params[i].alias && name_eq(params[i].alias, key, len)))
            return &params[i];
    return NULL;
}

static int set_n(flc_merge_rule_t *r, const char *key, size_t len, double v, flc_err_t *e)
{
    const char *rule = flc_merge_kind_name(r->kind);
    int klen = (int)(len > 64 ? 64 : len);
    const param_t *p = find_param(key, len);
    if (p == NULL)
        return flc_err_set(e, FLC_EINVAL,
                           "merge rule %s: unknown parameter '%.*s' (known: server_lr, momentum, "
                           "beta1, beta2, tau, clip, trim, f, m, weighted, noise)", rule, klen, key);
    if (!(p->kinds & K(r->kind)))
        return flc_err_set(e, FLC_EINVAL, "merge rule %s: parameter '%s' does not apply to it",
                           rule, p->name);
    if (!in_range(p, v))
        return flc_err_set(e, FLC_EINVAL, "merge rule %s: %s = %g is out of range (must be %s)",
                           rule, p->name, v, p->range);
    put_param(r, p, v);
    return FLC_OK;
}

int flc_merge_rule_set(flc_merge_rule_t *r, const char *key, double value, flc_err_t *e)
{
    if (r == NULL || key == NULL)
        return flc_err_set(e, FLC_EINVAL, "merge rule: no parameter name given");
    return set_n(r, key, strlen(key), value, e);
}

static const char *skip_space(const char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    return s;
}

/* Length of s[0..len) without trailing spaces. */
static size_t trim_len(const char *s, size_t len)
{
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        len--;
    return len;
}

int flc_merge_rule_parse(flc_merge_rule_t *r, const char *spec, flc_err_t *e)
{
    if (r == NULL || spec == NULL)
        return flc_err_set(e, FLC_EINVAL, "merge rule: no rule spec given");
    const char *s = skip_space(spec);
    const char *colon = strchr(s, ':');
    size_t nlen = colon ? (size_t)(colon - s) : strlen(s);
    flc_merge_rule_t tmp;
    int rc = init_n(&tmp, s, trim_len(s, nlen), e);
    if (rc)
        return rc;
    const char *p = colon ? colon + 1 : s + nlen;
    while (*skip_space(p)) {
        p = skip_space(p);
        const char *comma = strchr(p, ',');
        size_t tlen = comma ? (size_t)(comma - p) : strlen(p);
        const char *eq = memchr(p, '=', tlen);
        if (eq == NULL)
            return flc_err_set(e, FLC_EINVAL, "merge rule '%s': '%.*s' is not key=value", spec,
                               (int)(tlen > 64 ? 64 : tlen), p);
        size_t klen = trim_len(p, (size_t)(eq - p));
        const char *vs = skip_space(eq + 1);
        size_t vlen = trim_len(vs, tlen - (size_t)(vs - p));
        char vbuf[64];
        if (vlen == 0 || vlen >= sizeof vbuf)
            return flc_err_set(e, FLC_EINVAL, "merge rule '%s': parameter '%.*s' has no number",
                               spec, (int)(klen > 64 ? 64 : klen), p);
        memcpy(vbuf, vs, vlen);
        vbuf[vlen] = '\0';
        char *end;
        double v = strtod(vbuf, &end);
        if (*end != '\0')
            return flc_err_set(e, FLC_EINVAL, "merge rule '%s': '%s' is not a number", spec, vbuf);
        rc = set_n(&tmp, p, klen, v, e);
        if (rc)
            return rc;
        p = comma ? comma + 1 : p + tlen;
    }
    if ((rc = flc_merge_rule_check(&tmp, e)) != FLC_OK)
        return rc;
    *r = tmp;
    return FLC_OK;
}

int flc_merge_rule_from_json(flc_merge_rule_t *r, const cJSON *j, flc_err_t *e)
{
    if (r == NULL || j == NULL)
        return flc_err_set(e, FLC_EINVAL, "merge rule: no JSON given");
    if (cJSON_IsString(j))
        return flc_merge_rule_parse(r, j->valuestring, e);
    if (!cJSON_IsObject(j))
        return flc_err_set(e, FLC_EINVAL, "merge rule: JSON must be a string or an object");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(j, "rule");
    if (name == NULL)
        name = cJSON_GetObjectItemCaseSensitive(j, "name");
    if (!cJSON_IsString(name))
        return flc_err_set(e, FLC_EINVAL, "merge rule: JSON object has no \"rule\" string");
    flc_merge_rule_t tmp;
    int rc = flc_merge_rule_parse(&tmp, name->valuestring, e);
    if (rc)
        return rc;
    /* Parameters may sit beside "rule" or inside a "params" object. */
    const cJSON *scopes[2] = {j, cJSON_GetObjectItemCaseSensitive(j, "params")};
    for (int s = 0; s < 2; s++) {
        const cJSON *it;
        if (scopes[s] == NULL)
            continue;
        if (!cJSON_IsObject(scopes[s]))
            return flc_err_set(e, FLC_EINVAL, "merge rule: \"params\" must be an object");
        cJSON_ArrayForEach(it, scopes[s])
        {
            if (s == 0 && (strcmp(it->string, "rule") == 0 || strcmp(it->string, "name") == 0 ||
                           strcmp(it->string, "params") == 0))
                continue;
            double v;
            if (cJSON_IsNumber(it))
                v = it->valuedouble;
            else if (cJSON_IsBool(it))
                v = cJSON_IsTrue(it) ? 1 : 0;
            else
                return flc_err_set(e, FLC_EINVAL, "merge rule %s: parameter '%s' must be a number",
                                   flc_merge_kind_name(tmp.kind), it->string);
            rc = flc_merge_rule_set(&tmp, it->string, v, e);
            if (rc)
                return rc;
        }
    }
    if ((rc = flc_merge_rule_check(&tmp, e)) != FLC_OK)
        return rc;
    *r = tmp;
    return FLC_OK;
}

int flc_merge_rule_check(const flc_merge_rule_t *r, flc_err_t *e)
{
    if (r == NULL || (unsigned)r->kind >= FLC_MERGE_NKINDS)
        return flc_err_set(e, FLC_EINVAL, "merge rule: unknown rule kind %d",
                           r ? (int)r->kind : -1);
    for (size_t i = 0; i < NPARAMS; i++) {
        const param_t *p = &params[i];
        if (!(p->kinds & K(r->kind)))
            continue;
        double v = get_param(r, p);
        if (!in_range(p, v))
            return flc_err_set(e, FLC_EINVAL, "merge rule %s: %s = %g is out of range (must be %s)",
                               flc_merge_kind_name(r->kind), p->name, v, p->range);
    }
    /* Central DP's sensitivity is the clip norm: noise without it bounds nothing. */
    if (r->noise > 0 && !(r->clip > 0))
        return flc_err_set(e, FLC_EINVAL, "merge rule %s: noise needs clip > 0 (the noise's "
                           "scale is noise x clip / k)", flc_merge_kind_name(r->kind));
    return FLC_OK;
}

/* Shortest %g form that reads back as the same double. */
static void fmt_real(char *buf, size_t len, double v)
{
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

int flc_merge_rule_format(const flc_merge_rule_t *r, char *buf, size_t len)
{
    int used = snprintf(buf, len, "%s", flc_merge_kind_name(r->kind));
    char sep = ':';
    for (size_t i = 0; i < NPARAMS && used >= 0; i++) {
        const param_t *p = &params[i];
        if (!(p->kinds & K(r->kind)))
            continue;
        char num[40];
        if (p->type == P_REAL)
            fmt_real(num, sizeof num, get_param(r, p));
        else
            snprintf(num, sizeof num, "%d", (int)get_param(r, p));
        size_t at = (size_t)used < len ? (size_t)used : (len ? len - 1 : 0);
        int w = snprintf(len ? buf + at : NULL, len ? len - at : 0, "%c%s=%s", sep, p->name, num);
        used += w;
        sep = ',';
    }
    return used;
}

int flc_merge_rule_streams(const flc_merge_rule_t *r)
{
    return r->kind == FLC_MERGE_FEDAVG || r->kind == FLC_MERGE_MEAN ||
           flc_merge_rule_has_state(r);
}

int flc_merge_rule_selects(const flc_merge_rule_t *r)
{
    return r->kind == FLC_MERGE_KRUM || r->kind == FLC_MERGE_MULTI_KRUM ||
           r->kind == FLC_MERGE_BULYAN;
}

int flc_merge_rule_has_state(const flc_merge_rule_t *r)
{
    return (K_SERVER & K(r->kind)) != 0;
}

int flc_merge_rule_weighted(const flc_merge_rule_t *r)
{
    return r->kind == FLC_MERGE_FEDAVG || (flc_merge_rule_has_state(r) && r->weighted);
}
