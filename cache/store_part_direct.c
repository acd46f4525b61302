/* Window replies read straight off the socket (store_part_direct.h).
 *
 * hiredis reads a socket 16 KiB at a time into its own buffer and copies
 * each bulk string out of it: for a window of chunk-sized replies that was
 * two copies and 16 read calls per chunk, and a worker read at a quarter
 * of raw GET speed. On one server (no cluster queue in between) a window's
 * replies are read here instead: the RESP header through a small buffer,
 * the payload with one recv straight into its destination. Only when
 * hiredis holds no unread bytes (every earlier reply was consumed: the
 * window's replies are then the next bytes on the socket). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cache/store_internal.h"
#include "cache/store_part_direct.h"

int flc_store_part_direct_lost(flc_store_t *s, int code, const char *why)
{
    flc_err_set(&s->err, code, "%s: reading a window: %s", s->url_text, why);
    redisFree(s->c); /* the stream is lost mid-reply */
    s->c = NULL;
    return code;
}

/* Receives into dst up to n bytes (at least one); errors drop the connection. */
static int direct_recv(flc_store_t *s, flc_store_part_direct_t *d, char *dst, size_t n,
                       size_t *got, int all)
{
    ssize_t r;
    do
        r = recv(d->fd, dst, n, all ? MSG_WAITALL : 0);
    while (r < 0 && errno == EINTR);
    if (r > 0) {
        *got = (size_t)r;
        return FLC_OK;
    }
    if (r == 0)
        return flc_store_part_direct_lost(s, FLC_ECONN, "the server closed the connection");
    int timeout = errno == EAGAIN || errno == EWOULDBLOCK;
    return flc_store_part_direct_lost(s, timeout ? FLC_ETIMEOUT : FLC_ECONN,
                                      timeout ? "no answer within the I/O timeout"
                                              : strerror(errno));
}

/* The next line (without \r\n) into line (cap bytes). */
static int direct_line(flc_store_t *s, flc_store_part_direct_t *d, char *line, size_t cap)
{
    for (;;) {
        char *nl = d->len > d->pos ? memchr(d->buf + d->pos, '\n', d->len - d->pos) : NULL;
        if (nl != NULL) {
            size_t l = (size_t)(nl - (d->buf + d->pos));
            if (l == 0 || d->buf[d->pos + l - 1] != '\r' || l > cap)
                return flc_store_part_direct_lost(s, FLC_EPROTO, "a reply line that is not RESP");
            memcpy(line, d->buf + d->pos, l - 1);
            line[l - 1] = '\0';
            d->pos += l + 1;
            return FLC_OK;
        }
        if (d->pos > 0) {
            memmove(d->buf, d->buf + d->pos, d->len - d->pos);
            d->len -= d->pos, d->pos = 0;
        }
        size_t got = 0;
        if (d->len == sizeof d->buf)
            return flc_store_part_direct_lost(s, FLC_EPROTO, "a reply line longer than 16 KiB");
        int rc = direct_recv(s, d, d->buf + d->len, sizeof d->buf - d->len, &got, 0);
        if (rc != FLC_OK)
            return rc;
        d->len += got;
    }
}

/* The next n bytes into dst (NULL: dropped): first what the buffer holds,
 * then straight from the socket. */
static int direct_bytes(flc_store_t *s, flc_store_part_direct_t *d, char *dst, size_t n)
{
    size_t take = d->len - d->pos < n ? d->len - d->pos : n;
    if (dst != NULL)
        memcpy(dst, d->buf + d->pos, take);
    d->pos += take;
    n -= take;
    dst = dst ? dst + take : NULL;
    while (n > 0) {
        size_t got = 0;
        int rc = dst != NULL ? direct_recv(s, d, dst, n, &got, 1)
                             : direct_recv(s, d, d->buf, n < sizeof d->buf ? n : sizeof d->buf,
                                           &got, 0);
        if (rc != FLC_OK)
            return rc;
        n -= got;
        dst = dst ? dst + got : NULL;
    }
    return FLC_OK;
}

/* One bulk reply as flc_store_read_into reads it: into dst when it fits
 * cap (else dropped), *len its length (0 for nil); an error reply is an
 * error with the connection in step. */
int flc_store_part_direct_bulk(flc_store_t *s, flc_store_part_direct_t *d, char *dst, size_t cap,
                                size_t *len)
{
    char line[256];
    int rc = direct_line(s, d, line, sizeof line);
    if (rc != FLC_OK)
        return rc;
    *len = 0;
    if (line[0] == '-')
        return flc_err_set(&s->err, FLC_EPROTO, "%s: GET: %s", s->url_text, line + 1);
    if (line[0] != '$')
        return flc_store_part_direct_lost(s, FLC_EPROTO, "expected a bulk string");
    long long n = atoll(line + 1);
    if (n < 0)
        return FLC_OK; /* nil */
    *len = (size_t)n;
    rc = direct_bytes(s, d, (size_t)n <= cap ? dst : NULL, (size_t)n);
    return rc ? rc : direct_bytes(s, d, NULL, 2); /* the \r\n after it */
}

