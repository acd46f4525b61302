/* flcache error codes and the error value that carries a sentence.
 *
 * Every fallible function returns an int: 0 (FLC_OK) or a negative FLC_E*
 * code. Where the caller needs to know *what* went wrong, the function also
 * fills an flc_err_t whose message names the thing ("shard 3 of round 12:
 * payload has 4000 floats, header says 4096"). Objects that can fail keep
 * their last error in an embedded flc_err_t, the way hiredis keeps
 * c->err / c->errstr. */
#ifndef FLC_BASE_ERROR_H
#define FLC_BASE_ERROR_H

#include <stddef.h>

enum {
    FLC_OK = 0,
    FLC_EINVAL = -1,     /* bad argument, usage or configuration */
    FLC_ENOMEM = -2,     /* allocation failed */
    FLC_ECONN = -3,      /* cannot connect, or the connection was lost */
    FLC_ETIMEOUT = -4,   /* no answer within the deadline */
    FLC_EPROTO = -5,     /* the server answered something unexpected */
    FLC_EDATA = -6,      /* bytes fail validation (truncated, corrupt, mismatch) */
    FLC_ENOTFOUND = -7,  /* unknown job, round, client or key */
    FLC_ETOOBIG = -8,    /* a message is over the configured size limit */
    FLC_EIO = -9,        /* file, process or system call failed */
    FLC_EDIM = -10,      /* dimensions do not match */
    FLC_ENONFINITE = -11,/* NaN or Inf in an update */
    FLC_ECLOSED = -12,   /* the round is already closed */
    FLC_EDUP = -13,      /* duplicate (already counted) */
    FLC_EAUTH = -14,     /* authentication refused */
    FLC_ECHECKSUM = -15, /* stored checksum does not match the data */
};

#define FLC_ERRMSG_LEN 256

typedef struct flc_err {
    int code;                 /* 0 or FLC_E* */
    char msg[FLC_ERRMSG_LEN]; /* one sentence naming what was wrong */
} flc_err_t;

/* Short fixed description of a code ("connection refused or lost"). */
const char *flc_strerror(int code);

/* Sets *e (when e is not NULL) to code and a printf-formatted message, and
 * returns code, so callers can write `return flc_err_set(e, FLC_EDATA, ...)`. */
int flc_err_set(flc_err_t *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefixes the existing message of *e with a printf-formatted context
 * ("round 12: " + old message) and returns e->code. */
int flc_err_wrap(flc_err_t *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Clears *e to FLC_OK with an empty message. */
void flc_err_clear(flc_err_t *e);

/* The message of *e, or flc_strerror(code) when the message is empty. */
const char *flc_err_msg(const flc_err_t *e);

#endif
