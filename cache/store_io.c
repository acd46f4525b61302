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
 * Receiving: hiredis still parses replies (its reader keeps one grown
 * buffer), but with reply-object callbacks that copy a bulk string straight
 * into the caller's destination instead of allocating a reply per chunk. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

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
        int rc = flc_store_cl_read_with(s, &into_fns, &in, into_error, &r, &direct, what);
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
    redisReader *rd = s->c->reader;
    redisReplyObjectFunctions *fn = rd->fn;
    void *priv = rd->privdata;
    rd->fn = &into_fns;
    rd->privdata = &in;
    void *reply = NULL;
    int ok = redisGetReply(s->c, &reply) == REDIS_OK && reply != NULL;
    rd->fn = fn;
    rd->privdata = priv;
    if (!ok)
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
