/* Numeric event fields (see event_field.h). */
#include <stdint.h>

#include <cjson/cJSON.h>

#include "aggregator/event_field.h"

int flc_event_uint(const cJSON *ev, const char *what, const char *name, int required,
                   double dflt, double max, double *out, flc_err_t *e)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(ev, name);
    if (it == NULL) {
        if (required)
            return flc_err_set(e, FLC_EINVAL, "%s event: '%s' is missing", what, name);
        *out = dflt;
        return FLC_OK;
    }
    if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble > max ||
        it->valuedouble != (double)(uint64_t)it->valuedouble)
        return flc_err_set(e, FLC_EINVAL, "%s event: '%s' must be an integer in 0..%.0f", what,
                           name, max);
    *out = it->valuedouble;
    return FLC_OK;
}
