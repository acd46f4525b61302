/* Numeric fields of the JSON events the aggregator's functions take
 * (aggregator_fn.c, query_run.c). */
#ifndef FLC_AGGREGATOR_EVENT_FIELD_H
#define FLC_AGGREGATOR_EVENT_FIELD_H

#include "base/error.h"

struct cJSON;

/* Reads field `name` of ev as a whole number in 0..max into *out; absent,
 * it is dflt, or FLC_EINVAL ("<what> event: 'name' is missing") when
 * required. Anything else is FLC_EINVAL naming the field and the range. */
int flc_event_uint(const struct cJSON *ev, const char *what, const char *name, int required,
                   double dflt, double max, double *out, flc_err_t *e);

#endif
