/* Private to cache/store_part*.c: a window's replies read straight off a
 * single server's socket (store_part_direct.c says why). */
#ifndef FLC_CACHE_STORE_PART_DIRECT_H
#define FLC_CACHE_STORE_PART_DIRECT_H

#include <stddef.h>

#include "cache/store.h"

typedef struct flc_store_part_direct {
    int fd;          /* the store's socket, read only through here meanwhile */
    size_t pos, len; /* unread bytes buf[pos..len) */
    char buf[16384];
} flc_store_part_direct_t;

/* One bulk reply as flc_store_read_into reads it: into dst when it fits
 * cap (else dropped), *len its length (0 for nil). An error reply is
 * FLC_EPROTO with the connection in step; an I/O or protocol error drops
 * the connection (s's hiredis context is freed). */
int flc_store_part_direct_bulk(flc_store_t *s, flc_store_part_direct_t *d, char *dst, size_t cap,
                                size_t *len);

/* Sets the error (code, why) and drops the connection: the stream is lost. */
int flc_store_part_direct_lost(flc_store_t *s, int code, const char *why);

#endif
