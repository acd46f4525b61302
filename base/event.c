/* JSON event helpers over cJSON (see event.h). */
#include "base/event.h"

#include <math.h>
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

int flc_ev_need_str(const cJSON *obj, const char *name, const char **out, flc_err_t *e)
{
    const cJSON *m = member(obj, name);
    if (m == NULL)
        return flc_err_set(e, FLC_EINVAL, "event field '%s' is missing", name);
    if (!cJSON_IsString(m) || m->valuestring == NULL)
        return flc_err_set(e, FLC_EINVAL, "event field '%s' is not a string", name);
    *out = m->valuestring;
    return FLC_OK;
}

int flc_ev_need_int(const cJSON *obj, const char *name, long long min, long long max,
                    long long *out, flc_err_t *e)
{
    const cJSON *m = member(obj, name);
    if (m == NULL)
        return flc_err_set(e, FLC_EINVAL, "event field '%s' is missing", name);
    if (!cJSON_IsNumber(m) || !isfinite(m->valuedouble) ||
        m->valuedouble != floor(m->valuedouble))
        return flc_err_set(e, FLC_EINVAL, "event field '%s' is not an integer", name);
    double d = m->valuedouble;
    if (d < (double)min || d > (double)max)
        return flc_err_set(e, FLC_EINVAL, "event field '%s' is %.0f, allowed %lld..%lld", name,
                           d, min, max);
    *out = (long long)d;
    return FLC_OK;
}
