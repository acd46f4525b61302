/* JSON event helpers shared by the function side (fn.c) and the platform
 * (pool.c): parse an event, print one compact line, and read typed fields
 * with defaults or with an error that names the missing or bad field. */
#ifndef FLC_BASE_EVENT_H
#define FLC_BASE_EVENT_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "base/error.h"

/* Parses text[0..len) as a JSON object. Returns a new cJSON the caller frees
 * with cJSON_Delete, or NULL with *e naming where the text is not JSON or not
 * an object. */
cJSON *flc_ev_parse(const char *text, size_t len, flc_err_t *e);

/* Prints v as one compact line (no newline inside: strings are escaped).
 * Returns a malloc'ed string the caller frees with free(), or NULL when out
 * of memory. */
char *flc_ev_print(const cJSON *v);

/* Typed getters: the member `name` of obj, or dflt when obj is not an object,
 * the member is missing, or it has another type. */
const char *flc_ev_str(const cJSON *obj, const char *name, const char *dflt);
double flc_ev_num(const cJSON *obj, const char *name, double dflt);
long long flc_ev_int(const cJSON *obj, const char *name, long long dflt);
int flc_ev_bool(const cJSON *obj, const char *name, int dflt);

/* Required string member: 0 and *out set (borrowed from obj), or FLC_EINVAL
 * with *e saying "event field 'name' is missing" or "... is not a string". */
int flc_ev_need_str(const cJSON *obj, const char *name, const char **out, flc_err_t *e);

/* Required integer member in [min, max]: 0 and *out set, or FLC_EINVAL with
 * *e naming the field and the allowed range. */
int flc_ev_need_int(const cJSON *obj, const char *name, long long min, long long max,
                    long long *out, flc_err_t *e);

#endif
