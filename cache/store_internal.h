/* Private to cache/: the store's fields and the connection helpers shared by
 * store.c (connection, shards, lists) and store_meta.c (metadata, indexes). */
#ifndef FLC_CACHE_STORE_INTERNAL_H
#define FLC_CACHE_STORE_INTERNAL_H

#include "cache/store.h"
#include "cache/url.h"

struct flc_store {
    redisContext *c;      /* NULL after a connection error: reconnect on next call */
    flc_url_t url;
    char url_text[300];   /* redacted */
    flc_store_opts_t opts;
    flc_err_t err;
    uint64_t bytes_written, bytes_read;
    uint64_t tmp_counter; /* unique names of tmp keys of this writer */
    char *scratch;        /* first chunk of a read lands here (no allocation per read) */
    size_t scratch_cap;
};

/* Connects when there is no live connection. */
int flc_store_ensure(flc_store_t *s);

/* Turns a hiredis context error into an FLC code and message about `what`,
 * and drops the connection so the next call reconnects. */
int flc_store_io_error(flc_store_t *s, const char *what);

/* Appends one command to the output buffer (not yet sent). */
int flc_store_append(flc_store_t *s, int argc, const char **argv, const size_t *lens);

/* Writes the whole output buffer to the socket. */
int flc_store_flush(flc_store_t *s, const char *what);

/* Reads the next reply into *r (caller frees). Redis error replies are
 * returned as replies; only I/O problems are errors here. */
int flc_store_read(flc_store_t *s, redisReply **r, const char *what);

/* Sets an error from a Redis error reply (OOM, WRONGTYPE, NOAUTH, ...). */
int flc_store_reply_error(flc_store_t *s, const redisReply *r, const char *what);

/* Most pieces flc_store_send_pieces takes for its last argument. */
#define FLC_STORE_MAX_PIECES 8

struct iovec;

/* Sends argv[0..argc) followed by one last argument made of `pieces`,
 * writing the pieces from the caller's memory (no copy). Flushes pending
 * commands first so the order holds; read the reply as usual. */
int flc_store_send_pieces(flc_store_t *s, int argc, const char **argv,
                          const struct iovec *pieces, int npieces, const char *what);

/* Reads the next reply, which should be a bulk string or nil, copying the
 * string into dst (when it fits in cap) without allocating a reply; *len is
 * its length (0 for nil). Error replies become FLC errors; the connection
 * stays in step. */
int flc_store_read_into(flc_store_t *s, char *dst, size_t cap, size_t *len, const char *what);

#endif
