/* Zero-copy paths for shard payloads, next to hiredis rather than through it.
 *
 * Sending: hiredis formats every command into a fresh buffer and then appends
 * it to its output buffer, so a chunk is copied twice into freshly allocated
 * memory. In this VM a fresh page costs a fault (~10 us per 4 KB) and glibc
 * returns big freed blocks to the kernel, so those copies, not Redis, set the
 * put speed (perf: 60% of bench/store in page faults under memmove). Here the
 * RESP framing is built in a small stack buffer and the payload goes from the
 * caller's memory to the socket with one sendmsg.
 *
 * Receiving: hiredis parses replies, with reply-object callbacks that copy
 * a bulk string into the caller's destination instead of allocating a reply
 * per chunk. A big bulk string does not go through hiredis at all: hiredis
 * reads a socket 16 KiB at a time and appends each read to its buffer, so a
 * 256 KiB chunk cost 16 read calls (each a wake-up of the reading thread
 * while the server sends) and two copies (perf, 3-node round of
 * bench/cluster: 5% of the CPU in those copies, with the merger reads on
 * the round's critical path). Once its "$<len>\r\n" line is in hiredis's
 * buffer, the bytes already there are copied out and the rest is received
 * straight into the destination with one call (read_bulk_direct). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <hiredis/sds.h>

#include "cache/store_internal.h"

/* Writes iov[0..n) completely; iov is consumed. */
static int write_all(flc_store_t *s, struct iovec *iov, int n, const char *what)
{
    while (n > 0) {
        /* sendmsg with MSG_NOSIGNAL, not writev: a server that went away
         * must give us EPIPE, not kill the process with SIGPIPE. */
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(s->c->fd, &mh, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            int code = errno == EAGAIN || errno == EWOULDBLOCK ? FLC_ETIMEOUT : FLC_ECONN;
            flc_err_set(&s->err, code, "%s: %s: %s", s->url_text, what,
                        code == FLC_ETIMEOUT ? "no progress within the I/O timeout"
                                             : strerror(errno));
            redisFree(s->c); /* a command went out half: the stream is lost */
            s->c = NULL;
            return code;
        }
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return FLC_OK;
}

int flc_store_send_pieces(flc_store_t *s, int argc, const char **argv,
                          const struct iovec *pieces, int npieces, const char *what)
{
    int rc = flc_store_flush(s, what); /* keep the command order */
    if (rc != FLC_OK)
        return rc;
    if (npieces > FLC_STORE_MAX_PIECES)
        return flc_err_set(&s->err, FLC_EINVAL, "%s: %d pieces, at most %d", what, npieces,
                           FLC_STORE_MAX_PIECES);
    char head[1024];
    size_t total = 0;
    for (int i = 0; i < npieces; i++)
        total += pieces[i].iov_len;
    int hl = snprintf(head, sizeof head, "*%d\r\n", argc + 1);
    for (int i = 0; i < argc && hl < (int)sizeof head; i++)
        hl += snprintf(head + hl, sizeof head - (size_t)hl, "$%zu\r\n%s\r\n", strlen(argv[i]),
                       argv[i]);
    if (hl < (int)sizeof head)
        hl += snprintf(head + hl, sizeof head - (size_t)hl, "$%zu\r\n", total);
    if (hl >= (int)sizeof head)
        return flc_err_set(&s->err, FLC_EINVAL, "%s: command arguments too long", what);
    if (s->cl) {
        /* On a cluster too, straight from the caller's memory (the queue
         * keeps the pieces for a resend after a redirect or a failover).
         * The store's writers send SET, PSETEX and HSET this way: the same
         * effect run twice. (Set aside for a day while a divergence of
         * `train` through a master kill was looked for: it was the merger
         * merging without an update whose read the kill cut, fixed in the
         * merger, not this path.) */
        int idem = strcmp(argv[0], "SET") == 0 || strcmp(argv[0], "PSETEX") == 0 ||
                   strcmp(argv[0], "HSET") == 0;
        return flc_store_cl_send_pieces(s, head, (size_t)hl, argc > 1 ? argv[1] : "", pieces,
                                        npieces, idem, what);
    }
    struct iovec iov[FLC_STORE_MAX_PIECES + 2];
    iov[0] = (struct iovec){head, (size_t)hl};
    memcpy(iov + 1, pieces, (size_t)npieces * sizeof *iov);
    iov[npieces + 1] = (struct iovec){"\r\n", 2};
    return write_all(s, iov, npieces + 2, what);
}

/* ---- reading a bulk reply into the caller's memory ---------------------- */

typedef struct into {
    char *dst;
    size_t cap, len;
    int type; /* REDIS_REPLY_* of the reply, 0 before one arrived */
    char msg[160];
} into_t;

static void *into_string(const redisReadTask *t, char *str, size_t len)
{
    into_t *in = t->privdata;
    if (t->parent != NULL) /* inside an array: not ours, just note it */
        return in;
    in->type = t->type;
    if (t->type == REDIS_REPLY_STRING) {
        in->len = len;
        if (len > 0 && len <= in->cap)
            memcpy(in->dst, str, len);
    } else {
        snprintf(in->msg, sizeof in->msg, "%.*s", (int)(len < 159 ? len : 159), str);
    }
    return in;
}

static void *into_array(const redisReadTask *t, int n)
{
    (void)n;
    into_t *in = t->privdata;
    if (t->parent == NULL)
        in->type = REDIS_REPLY_ARRAY;
    return in;
}

static void *into_integer(const redisReadTask *t, long long v)
{
    (void)v;
    into_t *in = t->privdata;
    if (t->parent == NULL)
        in->type = REDIS_REPLY_INTEGER;
    return in;
}

static void *into_nil(const redisReadTask *t)
{
    into_t *in = t->privdata;
    if (t->parent == NULL)
        in->type = REDIS_REPLY_NIL;
    return in;
}

static void into_free(void *p)
{
    (void)p; /* nothing was allocated */
}

static redisReplyObjectFunctions into_fns = {into_string, into_array, into_integer, into_nil,
                                             into_free};

/* The error text of the reply read into in, or NULL when it was no error. */
static const char *into_error(void *priv)
{
    into_t *in = priv;
    return in->type == REDIS_REPLY_ERROR ? in->msg : NULL;
}

/* Bulk strings from this size on bypass hiredis's buffer (see the top). */
#define DIRECT_MIN (64u * 1024u)

/* The rest of a bulk string straight from c's socket: n bytes into dst,
 * then its "\r\n". A failure leaves the stream cut mid-reply: c->err is
 * set as hiredis sets it for an I/O error, so every later read fails and
 * the caller drops the connection. */
static int recv_rest(redisContext *c, char *dst, size_t n)
{
    char crlf[2];
    for (int part = 0; part < 2; part++) {
        char *p = part ? crlf : dst;
        size_t want = part ? 2 : n;
        while (want > 0) {
            ssize_t r = recv(c->fd, p, want, MSG_WAITALL);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                int timeout = r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
                c->err = timeout || r < 0 ? REDIS_ERR_IO : REDIS_ERR_EOF;
                snprintf(c->errstr, sizeof c->errstr, "%s",
                         r == 0 ? "Server closed the connection"
                         : timeout ? "Resource temporarily unavailable" : strerror(errno));
                return REDIS_ERR;
            }
            p += r;
            want -= (size_t)r;
        }
    }
    if (crlf[0] != '\r' || crlf[1] != '\n') {
        c->err = REDIS_ERR_PROTOCOL;
        snprintf(c->errstr, sizeof c->errstr, "a bulk string not followed by CRLF");
        return REDIS_ERR;
    }
    return REDIS_OK;
}

/* Reads the next reply of the blocking context c into in when it is a bulk
 * string of DIRECT_MIN..in->cap bytes not yet whole in hiredis's buffer:
 * 1 when done (*reply = in), 0 when hiredis should read it as usual (its
 * buffer is as before, plus what was read to see the header), REDIS_ERR
 * (-1) when the connection failed (c->err set). Only at a reply boundary
 * (no reply half parsed: ridx -1), which is where every read of the store
 * starts. */
static int read_bulk_direct(redisContext *c, into_t *in, void **reply)
{
    redisReader *rd = c->reader;
    if (in->dst == NULL || in->cap < DIRECT_MIN || rd->ridx != -1 || !(c->flags & REDIS_BLOCK))
        return 0;
    char *nl;
    while ((nl = memchr(rd->buf + rd->pos, '\n', rd->len - rd->pos)) == NULL) {
        if (rd->len - rd->pos > 32) /* no bulk header is that long */
            return 0;
        if (redisBufferRead(c) != REDIS_OK)
            return REDIS_ERR;
    }
    const char *h = rd->buf + rd->pos;
    if (h[0] != '$' || nl - h < 3 || nl[-1] != '\r')
        return 0;
    size_t n = 0;
    for (const char *d = h + 1; d < nl - 1; d++) {
        if (*d < '0' || *d > '9' || n > in->cap)
            return 0; /* nil ($-1), or more than fits: hiredis's way */
        n = n * 10 + (size_t)(*d - '0');
    }
    size_t head = (size_t)(nl + 1 - h), have = rd->len - rd->pos - head;
    /* Direct only while some of the payload is still to come: the bytes
     * buffered are then all payload (fewer than n, so they fit), and the
     * "\r\n" is wholly unread. */
    if (n < DIRECT_MIN || n > in->cap || have >= n)
        return 0; /* small, too big, or all here: one copy out of the buffer */
    memcpy(in->dst, h + head, have);
    sdsclear(rd->buf); /* every buffered byte was this reply's */
    rd->pos = rd->len = 0;
    if (recv_rest(c, in->dst + have, n - have) != REDIS_OK)
        return REDIS_ERR;
    in->type = REDIS_REPLY_STRING;
    in->len = n;
    *reply = in;
    return 1;
}

/* The next reply of c into in: a big bulk string straight from the socket,
 * anything else through hiredis with the into_fns callbacks. Returns like
 * redisGetReply. */
static int get_reply_into(redisContext *c, void *priv, void **reply)
{
    into_t *in = priv;
    *reply = NULL;
    int d = read_bulk_direct(c, in, reply);
    if (d != 0)
        return d > 0 ? REDIS_OK : REDIS_ERR;
    redisReader *rd = c->reader;
    redisReplyObjectFunctions *fn = rd->fn;
    void *old = rd->privdata;
    rd->fn = &into_fns;
    rd->privdata = in;
    int rc = redisGetReply(c, reply);
    rd->fn = fn;
    rd->privdata = old;
    return rc;
}

/* What the reply read into in means for flc_store_read_into. */
static int into_result(flc_store_t *s, const into_t *in, size_t *len, const char *what)
{
    *len = in->type == REDIS_REPLY_STRING ? in->len : 0;
    if (in->type == REDIS_REPLY_ERROR) {
        redisReply r = {.type = REDIS_REPLY_ERROR, .str = (char *)in->msg, .len = strlen(in->msg)};
        return flc_store_reply_error(s, &r, what);
    }
    if (in->type != REDIS_REPLY_STRING && in->type != REDIS_REPLY_NIL)
        return flc_err_set(&s->err, FLC_EPROTO, "%s: expected a bulk string, got reply type %d",
                           what, in->type);
    return FLC_OK;
}

int flc_store_read_into(flc_store_t *s, char *dst, size_t cap, size_t *len, const char *what)
{
    if (s->cl) {
        /* Through the cluster queue (redirects are followed there), with
         * the same reader functions: a bulk reply is copied once, from the
         * connection's buffer; a reply read aside earlier or after a
         * redirect comes as an object and is copied from there. */
        into_t in = {.dst = dst, .cap = cap};
        redisReply *r = NULL;
        int direct = 0;
        int rc = flc_store_cl_read_with(s, get_reply_into, &in, into_error, &r, &direct, what);
        if (rc != FLC_OK)
            return rc;
        if (direct)
            return into_result(s, &in, len, what);
        *len = r->type == REDIS_REPLY_STRING ? (size_t)r->len : 0;
        if (r->type == REDIS_REPLY_STRING && *len > 0 && *len <= cap)
            memcpy(dst, r->str, *len);
        if (r->type == REDIS_REPLY_ERROR)
            rc = flc_store_reply_error(s, r, what);
        else if (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_NIL)
            rc = flc_err_set(&s->err, FLC_EPROTO, "%s: expected a bulk string, got reply type %d",
                             what, r->type);
        freeReplyObject(r);
        return rc;
    }
    into_t in = {.dst = dst, .cap = cap};
    void *reply = NULL;
    if (get_reply_into(s->c, &in, &reply) != REDIS_OK || reply == NULL)
        return flc_store_io_error(s, what);
    return into_result(s, &in, len, what);
}

const char *flc_store_client_version(void)
{
#define FLC_STR_(x) #x
#define FLC_STR(x) FLC_STR_(x)
    return "hiredis " FLC_STR(HIREDIS_MAJOR) "." FLC_STR(HIREDIS_MINOR) "." FLC_STR(HIREDIS_PATCH);
#undef FLC_STR
#undef FLC_STR_
}
