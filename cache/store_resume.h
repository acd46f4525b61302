/* A run's checkpoint (issue 16 point 5): what a driver needs to continue a
 * job from its last closed round that the round's records do not hold
 * (sampling order, server-optimizer state, privacy accounting, the run's
 * options), one opaque value per job at fl:{J/j}:resume, written with one
 * SET after the round is recorded, so it always names a closed round. The
 * format is the driver's (clients/sim_resume.c). */
#ifndef FLC_CACHE_STORE_RESUME_H
#define FLC_CACHE_STORE_RESUME_H

#include <stddef.h>

#include "cache/store.h"

/* *blob is malloc'd (caller frees). FLC_ENOTFOUND naming the job when it
 * has no checkpoint. */
int flc_store_ckpt_get(flc_store_t *s, const char *job, char **blob, size_t *len);

/* Replaces the job's checkpoint (with the store's ttl when it has one). */
int flc_store_ckpt_put(flc_store_t *s, const char *job, const void *blob, size_t len);

/* Removes it (a fresh run of the job). */
int flc_store_ckpt_del(flc_store_t *s, const char *job);

#endif
