/* event.h - the one reader of JSON events and of the fields they carry.
 *
 * A function event is the JSON object a role of flcache-fn receives (probe,
 * worker, client, aggregator, query). Every role reads its fields through the
 * strict readers below, so all of them apply one set of rules and say one
 * sentence when a field is wrong:
 *   - an integer is a whole number in [min, max]: 1.5, 1e300 and "3" are
 *     errors, never truncated or saturated;
 *   - a number is finite and in [min, max] (an infinite bound means none);
 *   - a string is a JSON string; a bool is JSON true or false (1 is not one);
 *   - a required field that is absent is an error; an optional one takes its
 *     default; a field that is present with the wrong type is an error,
 *     never silently the default. JSON null counts as absent (it is how a
 *     driver in another language says "not set").
 * Every message names the field and what was wanted:
 *   event field 'batch' must be an integer in 1..65536, not 1.5
 *   event field 'job' is missing
 *   event field 'model' must be a string, not 3
 * All of them are FLC_EINVAL.
 *
 * The soft getters at the end take their default on anything unexpected.
 * They are for reading results and replies (a function's result line, a
 * cloud API's answer), where an absent or odd field is normal and the reader
 * has no one to refuse it to; they are not for events.
 *
 * It lives in base/ because every layer that runs a role (runtime, the
 * aggregator, workers, clients, cli) must see it. */
#ifndef FLC_BASE_EVENT_H
#define FLC_BASE_EVENT_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "base/error.h"

/* Parses text[0..len) as a JSON object. Returns a new cJSON the caller frees
 * with cJSON_Delete, or NULL with *e naming where the text is not JSON
 * (FLC_EDATA), is not an object (FLC_EDATA) or is NULL (FLC_EINVAL). */
cJSON *flc_ev_parse(const char *text, size_t len, flc_err_t *e);

/* Prints v as one compact line (no newline inside: strings are escaped).
 * Returns a malloc'ed string the caller frees with free(), or NULL when out
 * of memory. */
char *flc_ev_print(const cJSON *v);

/* ---- strict readers: for events --------------------------------------- */

/* 1 when ev is an object with a member `name` that is not null, else 0. */
int flc_ev_has(const cJSON *ev, const char *name);

/* Integer member in [min, max]. need: absent is an error; opt: absent gives
 * dflt. 0 and *out set, or FLC_EINVAL with *e naming the field, the range
 * and what it was (*out untouched). Exact for |values| up to 2^53. */
int flc_ev_need_int(const cJSON *ev, const char *name, long long min, long long max,
                    long long *out, flc_err_t *e);
int flc_ev_opt_int(const cJSON *ev, const char *name, long long min, long long max,
                   long long dflt, long long *out, flc_err_t *e);

/* Finite number member in [min, max] (-INFINITY / INFINITY: no bound). */
int flc_ev_need_num(const cJSON *ev, const char *name, double min, double max, double *out,
                    flc_err_t *e);
int flc_ev_opt_num(const cJSON *ev, const char *name, double min, double max, double dflt,
                   double *out, flc_err_t *e);

/* String member; *out is borrowed from ev (lives as long as ev). */
int flc_ev_need_str(const cJSON *ev, const char *name, const char **out, flc_err_t *e);
int flc_ev_opt_str(const cJSON *ev, const char *name, const char *dflt, const char **out,
                   flc_err_t *e);

/* Bool member (JSON true / false): *out is 1 or 0. */
int flc_ev_need_bool(const cJSON *ev, const char *name, int *out, flc_err_t *e);
int flc_ev_opt_bool(const cJSON *ev, const char *name, int dflt, int *out, flc_err_t *e);

/* Array member (possibly empty); *out is borrowed from ev. Its items are
 * read with the item readers below. */
int flc_ev_need_array(const cJSON *ev, const char *name, const cJSON **out, flc_err_t *e);

/* Item i of the array field `name` (it, from cJSON_ArrayForEach), read by
 * the same rules; messages call it 'name[i]'. */
int flc_ev_item_int(const cJSON *it, const char *name, size_t i, long long min, long long max,
                    long long *out, flc_err_t *e);
int flc_ev_item_str(const cJSON *it, const char *name, size_t i, const char **out,
                    flc_err_t *e);

/* ---- soft getters: for results and replies, not for events ------------ */

/* The member `name` of obj, or dflt when obj is not an object, the member is
 * missing, or it has another type (flc_ev_int: also when not finite or
 * beyond +-9.2e18, and a fraction is truncated; flc_ev_bool: a number counts
 * as true when non-zero). */
const char *flc_ev_str(const cJSON *obj, const char *name, const char *dflt);
double flc_ev_num(const cJSON *obj, const char *name, double dflt);
long long flc_ev_int(const cJSON *obj, const char *name, long long dflt);
int flc_ev_bool(const cJSON *obj, const char *name, int dflt);

#endif
