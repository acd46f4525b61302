/* Error codes to sentences, and the small helpers that fill flc_err_t. */
#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *flc_strerror(int code)
{
    switch (code) {
    case FLC_OK: return "ok";
    case FLC_EINVAL: return "invalid argument";
    case FLC_ENOMEM: return "out of memory";
    case FLC_ECONN: return "connection refused or lost";
    case FLC_ETIMEOUT: return "timed out";
    case FLC_EPROTO: return "protocol error";
    case FLC_EDATA: return "bad data";
    case FLC_ENOTFOUND: return "not found";
    case FLC_ETOOBIG: return "message too big";
    case FLC_EIO: return "I/O error";
    case FLC_EDIM: return "dimension mismatch";
    case FLC_ENONFINITE: return "NaN or Inf in values";
    case FLC_ECLOSED: return "round closed";
    case FLC_EDUP: return "duplicate";
    case FLC_EAUTH: return "authentication failed";
    case FLC_ECHECKSUM: return "checksum mismatch";
    default: return "unknown error";
    }
}

int flc_err_set(flc_err_t *e, int code, const char *fmt, ...)
{
    if (e == NULL)
        return code;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return code;
}

int flc_err_wrap(flc_err_t *e, const char *fmt, ...)
{
    if (e == NULL)
        return FLC_EINVAL;
    char prefix[FLC_ERRMSG_LEN], old[FLC_ERRMSG_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    snprintf(old, sizeof old, "%s", flc_err_msg(e));
    /* prefix + old, cut to fit; spelled out because snprintf("%s%s") into a
     * buffer the size of each part trips -Wformat-truncation. */
    size_t pl = strlen(prefix), ol = strlen(old);
    if (pl > sizeof e->msg - 1)
        pl = sizeof e->msg - 1;
    if (ol > sizeof e->msg - 1 - pl)
        ol = sizeof e->msg - 1 - pl;
    memmove(e->msg, prefix, pl);
    memcpy(e->msg + pl, old, ol);
    e->msg[pl + ol] = '\0';
    return e->code;
}

void flc_err_clear(flc_err_t *e)
{
    if (e == NULL)
        return;
    e->code = FLC_OK;
    e->msg[0] = '\0';
}

const char *flc_err_msg(const flc_err_t *e)
{
    if (e == NULL)
        return "";
    return e->msg[0] ? e->msg : flc_strerror(e->code);
}
