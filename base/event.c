/* event.c - JSON events over cJSON: parse, print, and the strict readers of
 * event fields with their one set of rules and one wording (see event.h).
 *
 * Every strict reader is the same three steps: look the member up (absent
 * and null are "missing", `lookup`), check its JSON type, check its value;
 * a failure at any step is one sentence built by `missing` or `refuse`, so
 * the wording cannot drift between types. Array items go through the same checks under the label
 * "name[i]". */
#include "base/event.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

cJSON *flc_ev_parse(const char *text, size_t len, flc_err_t *e)
{
    if (text == NULL) {
        flc_err_set(e, FLC_EINVAL, "event is missing (NULL text)");
        return NULL;
    }
    const char *end = NULL;
    cJSON *v = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (v == NULL) {
        size_t at = end != NULL && end >= text ? (size_t)(end - text) : 0;
        flc_err_set(e, FLC_EDATA, "event is not valid JSON (error near byte %zu of %zu)", at,
                    len);
        return NULL;
    }
    if (!cJSON_IsObject(v)) {
        cJSON_Delete(v);
        flc_err_set(e, FLC_EDATA, "event is JSON but not an object");
        return NULL;
    }
    return v;
}

char *flc_ev_print(const cJSON *v)
{
    return v == NULL ? NULL : cJSON_PrintUnformatted(v);
}

/* ---- strict readers ---------------------------------------------------- */

/* Writes a number as a message shows it: whole numbers without a fraction
 * or exponent (4294967296, not 4.29497e+09), others in short %g form. */
static void fmt_num(char *buf, size_t cap, double d)
{
    if (isfinite(d) && d == floor(d) && fabs(d) < 1e17)
        snprintf(buf, cap, "%.0f", d);
    else
        snprintf(buf, cap, "%.15g", d);
}

/* What a member is, for "..., not <what>": numbers and bools by value,
 * strings by value when short, other types by kind. */
static void describe(char *buf, size_t cap, const cJSON *m)
{
    if (cJSON_IsNumber(m))
        fmt_num(buf, cap, m->valuedouble);
    else if (cJSON_IsBool(m))
        snprintf(buf, cap, "%s", cJSON_IsTrue(m) ? "true" : "false");
    else if (cJSON_IsString(m) && m->valuestring != NULL && strlen(m->valuestring) <= 32)
        snprintf(buf, cap, "\"%s\"", m->valuestring);
    else if (cJSON_IsString(m))
        snprintf(buf, cap, "a string");
    else if (cJSON_IsArray(m))
        snprintf(buf, cap, "an array");
    else if (cJSON_IsObject(m))
        snprintf(buf, cap, "an object");
    else
        snprintf(buf, cap, "null");
}

/* The one sentence: "event field '<label>' must be <want>, not <what m is>". */
static int refuse(flc_err_t *e, const char *label, const char *want, const cJSON *m)
{
    char what[48];
    describe(what, sizeof what, m);
    return flc_err_set(e, FLC_EINVAL, "event field '%s' must be %s, not %s", label, want, what);
}

static int missing(flc_err_t *e, const char *label)
{
    return flc_err_set(e, FLC_EINVAL, "event field '%s' is missing", label);
}

/* Looks up name in ev. Returns 1 with *m set when the member is present
 * and not null; 0 when it is absent (or null) and optional; FLC_EINVAL
 * when it is absent and required, or ev is not an object. */
static int lookup(const cJSON *ev, const char *name, int required, const cJSON **m,
                  flc_err_t *e)
{
    if (!cJSON_IsObject(ev) || name == NULL)
        return flc_err_set(e, FLC_EINVAL, "event is not a JSON object (reading field '%s')",
                           name != NULL ? name : "?");
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(ev, name);
    if (it == NULL || cJSON_IsNull(it))
        return required ? missing(e, name) : 0;
    *m = it;
    return 1;
}

int flc_ev_has(const cJSON *ev, const char *name)
{
    const cJSON *m = NULL;
    return lookup(ev, name, 0, &m, NULL) == 1;
}

/* The checks of an integer on a present member m. */
static int check_int(const cJSON *m, const char *label, long long min, long long max,
                     long long *out, flc_err_t *e)
{
    double d = cJSON_IsNumber(m) ? m->valuedouble : NAN;
    /* The bound on |d| keeps the conversion defined whatever max is. */
    if (!isfinite(d) || d != floor(d) || d < (double)min || d > (double)max ||
        fabs(d) >= 9.2e18) {
        char want[96];
        snprintf(want, sizeof want, "an integer in %lld..%lld", min, max);
        return refuse(e, label, want, m);
    }
    *out = (long long)d;
    return FLC_OK;
}

static int get_int(const cJSON *ev, const char *name, int required, long long min,
                   long long max, long long dflt, long long *out, flc_err_t *e)
{
    const cJSON *m = NULL;
    int rc = lookup(ev, name, required, &m, e);
    if (rc <= 0) {
        if (rc == 0)
            *out = dflt;
        return rc;
    }
    return check_int(m, name, min, max, out, e);
}

int flc_ev_need_int(const cJSON *ev, const char *name, long long min, long long max,
                    long long *out, flc_err_t *e)
{
    return get_int(ev, name, 1, min, max, 0, out, e);
}

int flc_ev_opt_int(const cJSON *ev, const char *name, long long min, long long max,
                   long long dflt, long long *out, flc_err_t *e)
{
    return get_int(ev, name, 0, min, max, dflt, out, e);
}

/* "a number in 0..1", "a number >= 0", "a number <= 5", "a finite number". */
static void num_want(char *buf, size_t cap, double min, double max)
{
    char lo[32], hi[32];
    fmt_num(lo, sizeof lo, min);
    fmt_num(hi, sizeof hi, max);
    if (isfinite(min) && isfinite(max))
        snprintf(buf, cap, "a number in %s..%s", lo, hi);
    else if (isfinite(min))
        snprintf(buf, cap, "a number >= %s", lo);
    else if (isfinite(max))
        snprintf(buf, cap, "a number <= %s", hi);
    else
        snprintf(buf, cap, "a finite number");
}

static int get_num(const cJSON *ev, const char *name, int required, double min, double max,
                   double dflt, double *out, flc_err_t *e)
{
    const cJSON *m = NULL;
    int rc = lookup(ev, name, required, &m, e);
    if (rc <= 0) {
        if (rc == 0)
            *out = dflt;
        return rc;
    }
    double d = cJSON_IsNumber(m) ? m->valuedouble : NAN;
    if (!isfinite(d) || d < min || d > max) {
        char want[96];
        num_want(want, sizeof want, min, max);
        return refuse(e, name, want, m);
    }
    *out = d;
    return FLC_OK;
}

int flc_ev_need_num(const cJSON *ev, const char *name, double min, double max, double *out,
                    flc_err_t *e)
{
    return get_num(ev, name, 1, min, max, 0, out, e);
}

int flc_ev_opt_num(const cJSON *ev, const char *name, double min, double max, double dflt,
                   double *out, flc_err_t *e)
{
    return get_num(ev, name, 0, min, max, dflt, out, e);
}

static int check_str(const cJSON *m, const char *label, const char **out, flc_err_t *e)
{
    if (!cJSON_IsString(m) || m->valuestring == NULL)
        return refuse(e, label, "a string", m);
    *out = m->valuestring;
    return FLC_OK;
}

static int get_str(const cJSON *ev, const char *name, int required, const char *dflt,
                   const char **out, flc_err_t *e)
{
    const cJSON *m = NULL;
    int rc = lookup(ev, name, required, &m, e);
    if (rc <= 0) {
        if (rc == 0)
            *out = dflt;
        return rc;
    }
    return check_str(m, name, out, e);
}

int flc_ev_need_str(const cJSON *ev, const char *name, const char **out, flc_err_t *e)
{
    return get_str(ev, name, 1, NULL, out, e);
}

int flc_ev_opt_str(const cJSON *ev, const char *name, const char *dflt, const char **out,
                   flc_err_t *e)
{
    return get_str(ev, name, 0, dflt, out, e);
}

static int get_bool(const cJSON *ev, const char *name, int required, int dflt, int *out,
                    flc_err_t *e)
{
    const cJSON *m = NULL;
    int rc = lookup(ev, name, required, &m, e);
    if (rc <= 0) {
        if (rc == 0)
            *out = dflt;
        return rc;
    }
    if (!cJSON_IsBool(m))
        return refuse(e, name, "true or false", m);
    *out = cJSON_IsTrue(m) ? 1 : 0;
    return FLC_OK;
}

int flc_ev_need_bool(const cJSON *ev, const char *name, int *out, flc_err_t *e)
{
    return get_bool(ev, name, 1, 0, out, e);
}

int flc_ev_opt_bool(const cJSON *ev, const char *name, int dflt, int *out, flc_err_t *e)
{
    return get_bool(ev, name, 0, dflt, out, e);
}

int flc_ev_need_array(const cJSON *ev, const char *name, const cJSON **out, flc_err_t *e)
{
    const cJSON *m = NULL;
    int rc = lookup(ev, name, 1, &m, e);
    if (rc < 0)
        return rc;
    if (!cJSON_IsArray(m))
        return refuse(e, name, "an array", m);
    *out = m;
    return FLC_OK;
}

int flc_ev_item_int(const cJSON *it, const char *name, size_t i, long long min, long long max,
                    long long *out, flc_err_t *e)
{
    char label[96];
    snprintf(label, sizeof label, "%s[%zu]", name, i);
    return check_int(it, label, min, max, out, e);
}

int flc_ev_item_str(const cJSON *it, const char *name, size_t i, const char **out,
                    flc_err_t *e)
{
    char label[96];
    snprintf(label, sizeof label, "%s[%zu]", name, i);
    return check_str(it, label, out, e);
}

/* ---- soft getters (results and replies) -------------------------------- */

static const cJSON *member(const cJSON *obj, const char *name)
{
    if (!cJSON_IsObject(obj) || name == NULL)
        return NULL;
    return cJSON_GetObjectItemCaseSensitive(obj, name);
}

const char *flc_ev_str(const cJSON *obj, const char *name, const char *dflt)
{
    const cJSON *m = member(obj, name);
    return cJSON_IsString(m) && m->valuestring != NULL ? m->valuestring : dflt;
}

double flc_ev_num(const cJSON *obj, const char *name, double dflt)
{
    const cJSON *m = member(obj, name);
    return cJSON_IsNumber(m) ? m->valuedouble : dflt;
}

long long flc_ev_int(const cJSON *obj, const char *name, long long dflt)
{
    const cJSON *m = member(obj, name);
    if (!cJSON_IsNumber(m) || !isfinite(m->valuedouble))
        return dflt;
    /* valuedouble keeps the full precision (valueint saturates at INT_MAX). */
    double d = m->valuedouble;
    if (d > 9.2e18 || d < -9.2e18)
        return dflt;
    return (long long)d;
}

int flc_ev_bool(const cJSON *obj, const char *name, int dflt)
{
    const cJSON *m = member(obj, name);
    if (cJSON_IsBool(m))
        return cJSON_IsTrue(m);
    if (cJSON_IsNumber(m))
        return m->valuedouble != 0.0;
    return dflt;
}
