/* store_cluster_pieces.c - a command whose value is sent from the
 * caller's memory on a Redis Cluster (flc_store_cl_send_pieces,
 * store_cluster.h): routed as store_cluster.c routes, the node's queued
 * output flushed first, then one sendmsg of the head text and the pieces,
 * so a 256 KiB chunk is never copied into hiredis's buffer; the big pieces
 * are borrowed for a resend after a failover, the small ones copied. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cache/slot.h"
#include "cache/store_cluster.h"
#include "cache/store_cluster_internal.h"

/* Writes iov[0..n) to fd completely (iov is consumed): 0, or the errno. */
static int write_iov(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL); /* EPIPE, not SIGPIPE */
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno ? errno : EIO;
        }
        while (n > 0 && (size_t)w >= iov->iov_len)
            w -= (ssize_t)iov->iov_len, iov++, n--;
        if (n > 0)
            iov->iov_base = (char *)iov->iov_base + w, iov->iov_len -= (size_t)w;
    }
    return 0;
}

/* Pieces up to this size are copied for a resend, bigger ones borrowed. */
#define BORROW_MIN 8192

/* The copying path of flc_store_cl_send_pieces: the whole text, queued. */
static int send_copied(flc_store_t *s, const char *head, size_t hl, const struct iovec *pieces,
                       int n, const char *what)
{
    size_t len = hl + 2;
    for (int i = 0; i < n; i++)
        len += pieces[i].iov_len;
    char *cmd = malloc(len), *o = cmd;
    if (cmd == NULL)
        return flc_err_set(&s->err, FLC_ENOMEM, "%s: out of memory for %zu bytes", what, len);
    memcpy(o, head, hl), o += hl;
    for (int i = 0; i < n; i++)
        memcpy(o, pieces[i].iov_base, pieces[i].iov_len), o += pieces[i].iov_len;
    memcpy(o, "\r\n", 2);
    return flc_store_cl_send(s, cmd, len, what);
}

int flc_store_cl_send_pieces(flc_store_t *s, const char *head, size_t hl, const char *key,
                             const struct iovec *pieces, int n, int idem, const char *what)
{
    flc_store_cluster_t *cl = s->cl;
    if (cl->multi || cl->in_tx) /* a transaction's commands go through the queue */
        return send_copied(s, head, hl, pieces, n, what);
    uint16_t slot = flc_slot_of(key, strlen(key));
    unsigned node;
    redisContext *c;
    int rc = flc_store_cl_route_slot(s, slot, &node, &c);
    if (rc != FLC_OK) {
        if (cl->head < cl->n) { /* as flc_store_cl_push: start clean */
            flc_err_t keep = s->err;
            flc_store_cl_drop(s);
            s->err = keep;
        }
        return rc;
    }
    /* The node's queued output first: its commands run before this one. A
     * failure there is a lost connection: the command joins the queue the
     * ordinary way, and the flush follows the failover. */
    int done = c->obuf[0] == '\0';
    while (!done)
        if (redisBufferWrite(c, &done) != REDIS_OK)
            return send_copied(s, head, hl, pieces, n, what);
    /* Small pieces (a frame header, on its caller's stack, which a
     * deferred batch leaves before its replies are read) are copied after
     * the head text; only the big ones (the values) are borrowed. */
    size_t small = 0;
    for (int i = 0; i < n; i++)
        small += pieces[i].iov_len <= BORROW_MIN ? pieces[i].iov_len : 0;
    pend_t p = {.len = hl, .node = node, .ctx = c, .slot = slot, .keyed = 1, .body_idem = idem,
                .nbody = n + 1};
    p.cmd = malloc(hl + small);
    p.body = malloc((size_t)(n + 1) * sizeof *p.body);
    if (p.cmd == NULL || p.body == NULL) {
        flc_store_cl_pend_free(&p);
        return flc_err_set(&s->err, FLC_ENOMEM, "%s: out of memory", what);
    }
    memcpy(p.cmd, head, hl);
    char *own = p.cmd + hl;
    for (int i = 0; i < n; i++) {
        p.body[i] = pieces[i];
        if (pieces[i].iov_len <= BORROW_MIN) {
            memcpy(own, pieces[i].iov_base, pieces[i].iov_len);
            p.body[i].iov_base = own;
            own += pieces[i].iov_len;
        }
    }
    p.body[n] = (struct iovec){(void *)"\r\n", 2};
    flc_store_cl_mark_written(s, node);
    if ((rc = flc_store_cl_enqueue_pend(s, p, 0)) != FLC_OK)
        return rc;
    cl->cur = node;
    s->c = c;
    struct iovec iov[FLC_STORE_MAX_PIECES + 2];
    int niov = 0;
    iov[niov++] = (struct iovec){(void *)head, hl};
    for (int i = 0; i < n && niov < FLC_STORE_MAX_PIECES + 1; i++)
        iov[niov++] = pieces[i];
    iov[niov++] = (struct iovec){(void *)"\r\n", 2};
    int err = write_iov(c->fd, iov, niov);
    if (err == 0)
        return FLC_OK;
    /* Part of it may be on the wire: this connection's stream is lost. */
    char detail[160];
    snprintf(detail, sizeof detail, "%s", err == EAGAIN || err == EWOULDBLOCK
                                              ? "no progress within the I/O timeout"
                                              : strerror(err));
    if (err != EAGAIN && err != EWOULDBLOCK && flc_store_cl_replay(s, node, what) == FLC_OK)
        return FLC_OK; /* sent again to the slot's new owner (a failover) */
    return flc_store_cl_lost(s, what, detail);
}
