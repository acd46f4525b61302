/* A job's small records, one value each at fl:{J/j}:<name> (key schema in
 * docs/architecture.md): read, written and removed whole. */
#ifndef FLC_CACHE_STORE_RECORD_H
#define FLC_CACHE_STORE_RECORD_H

#include <stddef.h>

#include "cache/store.h"

/* *blob: a new NUL-terminated copy (caller frees), *len its length. what
 * names the record in messages: FLC_ENOTFOUND "job 'J' has no <what>
 * (<absent>)" when missing. */
int flc_store_record_get(flc_store_t *s, const char *job, const char *name, const char *what,
                         const char *absent, char **blob, size_t *len);

/* Writes it whole, with the store's expiry (ttl_ms) when it has one. */
int flc_store_record_put(flc_store_t *s, const char *job, const char *name, const char *what,
                         const void *blob, size_t len);

int flc_store_record_del(flc_store_t *s, const char *job, const char *name);

#endif
