/* store_cluster.c - the store's routing on a Redis Cluster (store_cluster.h).
 *
 * One queue of commands whose replies are still to read, each remembered as
 * its RESP text with the node and connection it went to. Commands are
 * appended to their node's hiredis output buffer as they come, so a
 * pipeline of many hash tags becomes one pipeline per node, flushed
 * together, and its replies are read back in submission order.
 *
 * Commands are routed here; what a command's text says (its key, whether
 * it may run twice) is read in cluster_cmd.c; a value sent from the
 * caller's memory goes out in store_cluster_pieces.c; replies and
 * redirects are read in store_cluster_read.c; what goes to every master
 * (whole-server commands, the wake of a blocked store) is in
 * store_cluster_all.c.
 *
 * A connection error closes the connections with replies in flight (their
 * streams are out of step), marks the map for a refresh, and fails the
 * operation as on one node; the next operation reconnects. When a node
 * cannot be connected to at routing time, the map is refreshed from another
 * node and the routing retried with backoff until the deadline (nothing was
 * sent yet, so that retry is always safe). */
#include "cache/store_cluster.h"

#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "base/clock.h"
#include "cache/slot.h"
#include "cache/store_cluster_internal.h"

uint64_t flc_store_cl_now_ms(void)
{
    return flc_now_ns() / 1000000u;
}

struct timeval flc_store_cl_tv(unsigned ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (long)(ms % 1000) * 1000};
    return tv;
}

int flc_store_is_cluster(const flc_store_t *s)
{
    return s->cl != NULL;
}

/* ---- start and end --------------------------------------------------------- */

int flc_store_cl_start(flc_store_t *s, int *is_cluster)
{
    *is_cluster = 0;
    flc_store_cluster_t *cl = calloc(1, sizeof *cl);
    if (cl == NULL)
        return flc_err_set(&s->err, FLC_ENOMEM, "out of memory");
    flc_cluster_map_init(&cl->map);
    cl->cur = FLC_CLUSTER_NO_NODE;
    cl->token = -1;
    flc_cluster_conn_opts_t co = {.connect_timeout_ms = s->opts.connect_timeout_ms,
                                  .io_timeout_ms = s->opts.io_timeout_ms,
                                  .local_node = s->opts.local_node,
                                  .local_sock = s->opts.local_sock};
    cl->cc = flc_cluster_conn_new(&s->url, &co, &s->err);
    int rc = cl->cc ? flc_cluster_conn_bootstrap(cl->cc, &cl->map, is_cluster, &s->err)
                    : s->err.code;
    if (rc == FLC_OK && !*is_cluster && s->url.cluster == FLC_URL_CLUSTER_YES)
        rc = flc_err_set(&s->err, FLC_EINVAL, "%s: the URL says cluster=yes, but the server "
                         "is not a cluster node (INFO cluster: cluster_enabled:0)",
                         s->url_text);
    if (rc == FLC_OK && *is_cluster) {
        flc_cluster_conn_close_seed(cl->cc); /* routing uses the node connections */
        s->cl = cl;
        return FLC_OK;
    }
    flc_cluster_conn_free(cl->cc);
    flc_cluster_map_free(&cl->map);
    free(cl);
    return rc;
}

static void queue_clear(flc_store_cluster_t *cl)
{
    for (size_t i = 0; i < cl->n; i++) { /* answered ones keep their text too */
        flc_store_cl_pend_free(&cl->q[i]);
        if (i >= cl->head && cl->q[i].stash)
            freeReplyObject(cl->q[i].stash);
    }
    cl->head = cl->n = 0;
    cl->batch++;
    free(cl->multi);
    cl->multi = NULL;
    cl->in_tx = 0;
}

void flc_store_cl_free(flc_store_t *s)
{
    flc_store_cluster_t *cl = s->cl;
    if (cl == NULL)
        return;
    queue_clear(cl);
    free(cl->q);
    free(cl->named);
    free(cl->probed);
    free(cl->written);
    flc_cluster_conn_free(cl->cc);
    flc_cluster_map_free(&cl->map);
    free(cl);
    s->cl = NULL;
    s->c = NULL; /* it was one of the table's connections */
}

void flc_store_cl_close_node(flc_store_cluster_t *cl, unsigned node)
{
    flc_cluster_conn_close(cl->cc, node);
    if (node < cl->nnamed)
        cl->named[node] = NULL;
}

size_t flc_store_cl_forget_due(flc_store_t *s)
{
    flc_store_cluster_t *cl = s->cl;
    size_t due = cl->n - cl->head;
    if (due == 0)
        return 0;
    /* Their connections would hand those replies to the next commands:
     * closed (remade on next use), not read, since a node may be dead. */
    for (size_t i = cl->head; i < cl->n; i++)
        flc_store_cl_close_node(cl, cl->q[i].node);
    queue_clear(cl);
    s->c = NULL;
    cl->cur = FLC_CLUSTER_NO_NODE;
    return due;
}

void flc_store_cl_drop(flc_store_t *s)
{
    flc_store_cluster_t *cl = s->cl;
    for (size_t i = cl->head; i < cl->n; i++)
        flc_store_cl_close_node(cl, cl->q[i].node);
    if (cl->cur != FLC_CLUSTER_NO_NODE)
        flc_store_cl_close_node(cl, cl->cur);
    queue_clear(cl);
    cl->map.refresh_pending = 1;
    cl->lost++; /* a node connection lost: flc_store_failovers */
    s->c = NULL;
}

/* ---- reading a command's name and key from its RESP text -------------- */

/* ---- routing ---------------------------------------------------------------- */

static int has_pending_on(const flc_store_cluster_t *cl, unsigned node)
{
    for (size_t i = cl->head; i < cl->n; i++)
        if (cl->q[i].node == node)
            return 1;
    return 0;
}

/* Names a connection made after flc_store_conn_id (a wake must find it). */
static void name_conn(flc_store_cluster_t *cl, unsigned node, redisContext *c)
{
    if (cl->token < 0 || (node < cl->nnamed && cl->named[node] == c) || has_pending_on(cl, node))
        return;
    if (node >= cl->nnamed) {
        redisContext **v = realloc(cl->named, (node + 1) * sizeof *v);
        if (v == NULL)
            return;
        memset(v + cl->nnamed, 0, (node + 1 - cl->nnamed) * sizeof *v);
        cl->named = v, cl->nnamed = node + 1;
    }
    redisReply *r = redisCommand(c, "CLIENT SETNAME flc-w-%lld", cl->token);
    if (r != NULL && r->type != REDIS_REPLY_ERROR)
        cl->named[node] = c;
    if (r != NULL)
        freeReplyObject(r);
}

void flc_store_cl_backoff(unsigned *ms, unsigned first, unsigned cap)
{
    *ms = *ms == 0 ? first : (*ms * 2 > cap ? cap : *ms * 2);
    flc_sleep_ms(*ms);
}

/* The connection of node, made now if needed; on failure the map is
 * refreshed from another node (the caller looks the owner up again). */
int flc_store_cl_conn(flc_store_t *s, unsigned node, redisContext **c)
{
    flc_store_cluster_t *cl = s->cl;
    int rc = flc_cluster_conn_get(cl->cc, &cl->map, node, c, &s->err);
    if (rc == FLC_OK && flc_store_cl_stale(s, node, *c)) {
        /* Its server closed it (a killed master): remade before anything
         * is sent on it, so the batch fails over like a refused connect. */
        flc_store_cl_close_node(cl, node);
        cl->map.refresh_pending = 1;
        rc = flc_cluster_conn_get(cl->cc, &cl->map, node, c, &s->err);
    }
    if (rc == FLC_OK) {
        (*c)->reader->maxbuf = 0; /* as the single-node connection (store_conn.c) */
        name_conn(cl, node, *c);
        return FLC_OK;
    }
    cl->lost++;
    /* With replies due, the refresh (CLUSTER SLOTS on some node's
     * connection) would read one of them: they are read aside first, so a
     * batch routed while its node is down still follows the failover. */
    if (cl->head == cl->n || cl->busy || flc_store_cl_stash_all(cl) == FLC_OK) {
        flc_err_t e2;
        flc_cluster_conn_refresh(cl->cc, &cl->map, (int)node, 1, NULL, &e2);
    } else {
        cl->map.refresh_pending = 1;
    }
    return rc;
}

int flc_store_cl_route_slot(flc_store_t *s, uint16_t slot, unsigned *node, redisContext **c)
{
    flc_store_cluster_t *cl = s->cl;
    uint64_t t0 = flc_store_cl_now_ms();
    unsigned wait = 0;
    for (;;) {
        unsigned nd = flc_cluster_map_owner(&cl->map, slot);
        int rc;
        if (nd != FLC_CLUSTER_NO_NODE) {
            rc = flc_store_cl_conn(s, nd, c);
            if (rc == FLC_OK) {
                *node = nd;
                return FLC_OK;
            }
        } else {
            rc = flc_err_set(&s->err, FLC_ECONN, "%s: no node serves slot %u", s->url_text,
                             slot);
            if (cl->head == cl->n || cl->busy || flc_store_cl_stash_all(cl) == FLC_OK) {
                flc_err_t e2;
                flc_cluster_conn_refresh(cl->cc, &cl->map, -1, 1, NULL, &e2);
            }
        }
        if (flc_store_cl_now_ms() - t0 > CL_DEADLINE_MS)
            return flc_err_wrap(&s->err, "slot %u, after %u ms: ", slot, CL_DEADLINE_MS);
        flc_store_cl_backoff(&wait, 50, 250);
    }
}

int flc_store_cl_use_node(flc_store_t *s, unsigned node)
{
    redisContext *c;
    int rc = flc_store_cl_conn(s, node, &c);
    if (rc != FLC_OK)
        return rc;
    s->cl->cur = node;
    s->c = c;
    return FLC_OK;
}

int flc_store_cl_route_key(flc_store_t *s, const char *key)
{
    unsigned node;
    redisContext *c;
    int rc = flc_store_cl_route_slot(s, flc_slot_of(key, strlen(key)), &node, &c);
    if (rc != FLC_OK)
        return rc;
    s->cl->cur = node;
    s->c = c;
    return FLC_OK;
}

int flc_store_cl_masters(flc_store_t *s, unsigned *nodes, size_t cap, size_t *n)
{
    flc_store_cluster_t *cl = s->cl;
    *n = 0;
    for (size_t i = 0; i < cl->map.nnodes && *n < cap; i++)
        if (cl->map.nodes[i].role == FLC_CLUSTER_MASTER && cl->map.nodes[i].nslots > 0)
            nodes[(*n)++] = (unsigned)i;
    return *n ? FLC_OK
              : flc_err_set(&s->err, FLC_ECONN, "%s: the cluster map has no master with slots",
                            s->url_text);
}

int flc_store_cl_ensure(flc_store_t *s)
{
    flc_store_cluster_t *cl = s->cl;
    if (cl->head == cl->n && cl->map.refresh_pending) {
        flc_err_t e2; /* a failed refresh keeps the old map: routing still tries */
        flc_cluster_conn_refresh(cl->cc, &cl->map, -1, 0, NULL, &e2);
    }
    if (cl->cur != FLC_CLUSTER_NO_NODE && cl->map.nodes[cl->cur].role == FLC_CLUSTER_MASTER &&
        flc_store_cl_use_node(s, cl->cur) == FLC_OK)
        return FLC_OK;
    unsigned m[64];
    size_t n = 0;
    int rc = flc_store_cl_masters(s, m, 64, &n);
    for (size_t i = 0; i < n; i++)
        if ((rc = flc_store_cl_use_node(s, m[i])) == FLC_OK)
            return FLC_OK;
    return rc;
}

/* ---- the queue -------------------------------------------------------------- */

void flc_store_cl_pend_free(pend_t *p)
{
    free(p->cmd);
    free(p->body);
    p->cmd = NULL;
    p->body = NULL;
    p->nbody = 0;
}

int flc_store_cl_pend_idempotent(const pend_t *p)
{
    return p->body ? p->body_idem : flc_store_cl_idempotent(p->cmd, p->len);
}

int flc_store_cl_append_pend(redisContext *c, const pend_t *p)
{
    if (p->body == NULL)
        return redisAppendFormattedCommand(c, p->cmd, p->len);
    /* A resend (redirect, failover): rare, so the borrowed bytes are
     * copied here rather than kept. */
    size_t len = p->len;
    for (int i = 0; i < p->nbody; i++)
        len += p->body[i].iov_len;
    char *text = malloc(len), *o = text;
    if (text == NULL)
        return REDIS_ERR;
    memcpy(o, p->cmd, p->len), o += p->len;
    for (int i = 0; i < p->nbody; i++)
        memcpy(o, p->body[i].iov_base, p->body[i].iov_len), o += p->body[i].iov_len;
    int rc = redisAppendFormattedCommand(c, text, len);
    free(text);
    return rc;
}

int flc_store_cl_enqueue_pend(flc_store_t *s, pend_t p, int append)
{
    flc_store_cluster_t *cl = s->cl;
    if (cl->n == cl->cap) {
        size_t cap = cl->cap ? cl->cap * 2 : 64;
        pend_t *q = realloc(cl->q, cap * sizeof *q);
        if (q == NULL) {
            flc_store_cl_pend_free(&p);
            return flc_err_set(&s->err, FLC_ENOMEM, "out of memory queueing a command");
        }
        cl->q = q, cl->cap = cap;
    }
    if (append && redisAppendFormattedCommand(p.ctx, p.cmd, p.len) != REDIS_OK) {
        flc_store_cl_pend_free(&p);
        s->c = p.ctx;
        return flc_store_io_error(s, "queueing a command");
    }
    p.in_tx = cl->in_tx;
    cl->q[cl->n++] = p;
    return FLC_OK;
}

static int enqueue(flc_store_t *s, char *cmd, size_t len, unsigned node, redisContext *c,
                   uint16_t slot, int keyed)
{
    return flc_store_cl_enqueue_pend(
        s, (pend_t){.cmd = cmd, .len = len, .node = node, .ctx = c, .slot = slot, .keyed = keyed},
        1);
}

int flc_store_cl_push(flc_store_t *s, char *cmd, size_t len)
{
    flc_store_cluster_t *cl = s->cl;
    const char *key = NULL;
    size_t klen = 0;
    int kind = flc_store_cl_key_of(cmd, len, &key, &klen);
    if (kind == FLC_CL_MULTI) {
        /* Its node is the node of the transaction's first key. */
        free(cl->multi);
        cl->multi = cmd, cl->multi_len = len;
        return FLC_OK;
    }
    unsigned node;
    redisContext *c;
    uint16_t slot = 0;
    int rc;
    if (kind == FLC_CL_KEYED) {
        slot = flc_slot_of(key, klen);
        rc = flc_store_cl_route_slot(s, slot, &node, &c);
    } else {
        rc = cl->cur == FLC_CLUSTER_NO_NODE ? flc_store_cl_ensure(s) : FLC_OK;
        node = cl->cur;
        if (rc == FLC_OK)
            rc = flc_store_cl_conn(s, node, &c);
    }
    if (rc != FLC_OK) {
        free(cmd);
        /* The batch cannot be completed: what it queued already would
         * leave replies due behind the error, and the next operation
         * would read them as its own. Start clean (as after a lost
         * connection); the caller reports rc. */
        if (cl->head < cl->n) {
            flc_err_t keep = s->err;
            flc_store_cl_drop(s);
            s->err = keep;
        }
        return rc;
    }
    if (cl->block_ms) /* a BLPOP: its connection must outwait it (store_notify.c) */
        redisSetTimeout(c, flc_store_cl_tv(cl->block_ms));
    if (cl->multi) {
        char *m = cl->multi;
        cl->multi = NULL;
        cl->in_tx = 1;
        if ((rc = enqueue(s, m, cl->multi_len, node, c, slot, kind == FLC_CL_KEYED)) != FLC_OK) {
            free(cmd);
            return rc;
        }
    }
    const char *a[1] = {0};
    size_t al[1] = {0};
    flc_store_cl_args(cmd, len, a, al, 1);
    int ends_tx = flc_store_cl_is_cmd(a[0], al[0], "EXEC") ||
                  flc_store_cl_is_cmd(a[0], al[0], "DISCARD");
    if (kind == FLC_CL_KEYED && !flc_store_cl_reads_only(a[0], al[0]))
        flc_store_cl_mark_written(s, node); /* flc_store_replicated waits for it */
    rc = enqueue(s, cmd, len, node, c, slot, kind == FLC_CL_KEYED);
    if (ends_tx)
        cl->in_tx = 0;
    cl->cur = node;
    s->c = c;
    return rc;
}

int flc_store_cl_send(flc_store_t *s, char *cmd, size_t len, const char *what)
{
    int rc = flc_store_cl_push(s, cmd, len);
    return rc == FLC_OK ? flc_store_cl_flush(s, what) : rc;
}

int flc_store_cl_flush(flc_store_t *s, const char *what)
{
    flc_store_cluster_t *cl = s->cl;
    for (size_t i = cl->head; i < cl->n; i++) {
        redisContext *c = cl->q[i].ctx;
        if (cl->q[i].stash != NULL)
            continue; /* answered: its output went out long ago */
        int done = c->obuf[0] == '\0'; /* hiredis: an empty sds when all went out */
        while (!done) {
            if (redisBufferWrite(c, &done) != REDIS_OK) {
                /* Its node closed the connection (a killed master): send
                 * the batch's commands there again through the new map
                 * when they may run twice (store_cluster_fail.c). */
                if (c->err == REDIS_ERR_IO && errno != EAGAIN && errno != EWOULDBLOCK) {
                    char detail[160];
                    snprintf(detail, sizeof detail, "%s", c->errstr);
                    if (flc_store_cl_replay(s, cl->q[i].node, what) == FLC_OK)
                        break; /* the replayed commands were written */
                    return flc_store_cl_lost(s, what, detail);
                }
                s->c = c;
                cl->cur = cl->q[i].node;
                return flc_store_io_error(s, what);
            }
        }
    }
    return FLC_OK;
}

