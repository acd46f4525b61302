/* store_tune.h - the record `flcache tune` leaves for a job's report (issue
 * 20: the sizing curve "as a plot in the report"): one small opaque value
 * per job at fl:{J/j}:tune (the probes, the fitted model, the curve and the
 * choice; the format is tune's JSON, cli/cmd_tune.c), read by report/.
 * Under the job's hash tag, so `flcache job rm` removes it with the rest. */
#ifndef FLC_CACHE_STORE_TUNE_H
#define FLC_CACHE_STORE_TUNE_H

#include <stddef.h>

#include "cache/store.h"

/* *blob is malloc'd and NUL-terminated (caller frees). FLC_ENOTFOUND naming
 * the job when it has no tune record. */
int flc_store_tune_get(flc_store_t *s, const char *job, char **blob, size_t *len);

/* Replaces the job's tune record (with the store's ttl when it has one). */
int flc_store_tune_put(flc_store_t *s, const char *job, const void *blob, size_t len);

#endif
