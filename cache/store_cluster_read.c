/* store_cluster_read.c - replies of the store's queued commands on a Redis
 * Cluster, and the redirects met there (store_cluster.h).
 *
 * Redirects, when a reply is read:
 * - MOVED: the slot lives elsewhere now. The map gets that slot
 *   (flc_cluster_map_apply_moved, which also marks a full refresh due; it is
 *   done before the next batch, never while replies are in flight) and the
 *   command goes to the new owner.
 * - ASK: the slot is migrating and this key is already on the target:
 *   ASKING and the command, pipelined on the target's connection (ASKING
 *   holds for the next command only), once; the map is not touched.
 * - TRYAGAIN (multi-key command while its keys are split by a migration),
 *   CLUSTERDOWN (no owner yet, during a failover) and UNBLOCKED (a BLPOP
 *   released because its master became a replica): back off, refresh the
 *   map for the last two, resend to the slot's owner.
 * Resending is safe for every command, RPUSH and INCR included: a node
 * answers MOVED/ASK/TRYAGAIN/CLUSTERDOWN before executing anything, and an
 * UNBLOCKED BLPOP popped nothing. Only the redirected command is resent; the
 * replies of the commands behind it are read first (kept aside) so that the
 * resent command's reply is the next one on its connection, and the order
 * of the redirected commands among themselves stays the order they were
 * issued in. Redirects stop after CL_MAX_REDIRECTS or CL_DEADLINE_MS (about
 * 2 x a 2-4 s node timeout + 2 s); the last error reply then goes to the
 * caller, which reports it as on one node.
 *
 * Inside MULTI ... EXEC a redirected command is not resent on its own (EXEC
 * then aborts and nothing ran): flc_store_pipeline resends the whole
 * transaction (store_raw.c).
 *
 * A connection error closes the connections with replies in flight (their
 * streams are out of step), marks the map for a refresh, and fails the
 * operation as on one node; the next operation reconnects. When a node
 * cannot be connected to at routing time, the map is refreshed from another
 * node and the routing retried with backoff until the deadline (nothing was
 * sent yet, so that retry is always safe). */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "cache/store_cluster.h"
#include "cache/store_cluster_internal.h"

/* Redirects followed by every store of the process (for tests and
 * benches: flc_store_cl_counts). */
static atomic_ulong n_moved, n_ask, n_retry, n_replayed;

unsigned long flc_store_cl_replayed(void)
{
    return atomic_load(&n_replayed);
}

int flc_store_cl_lost(flc_store_t *s, const char *what, const char *detail)
{
    flc_err_set(&s->err, FLC_ECONN, "%s: %s: %s", s->url_text, what, detail);
    flc_store_cl_drop(s);
    return FLC_ECONN;
}

void flc_store_cl_counts(unsigned long *moved, unsigned long *ask, unsigned long *retry)
{
    *moved = atomic_load(&n_moved);
    *ask = atomic_load(&n_ask);
    *retry = atomic_load(&n_retry);
}

/* ---- replies and redirects ------------------------------------------------ */

static int get_reply(flc_store_t *s, unsigned node, redisContext *c, redisReply **r,
                     const char *what)
{
    void *reply = NULL;
    if (redisGetReply(c, &reply) != REDIS_OK || reply == NULL) {
        s->c = c;
        s->cl->cur = node;
        return flc_store_io_error(s, what);
    }
    *r = reply;
    return FLC_OK;
}

/* Reads queued command e's reply. When e's node closed the connection
 * (its master killed: EOF or reset, not a timeout), the commands without
 * a reply are sent again to their slots' new owners if all of them may run
 * twice (flc_store_cl_replay, store_cluster_fail.c) and e's reply is read
 * from there; otherwise the batch fails as on one server. */
static int reply_of(flc_store_t *s, pend_t *e, redisReply **r, const char *what)
{
    for (;;) {
        redisContext *c = e->ctx;
        void *reply = NULL;
        if (redisGetReply(c, &reply) == REDIS_OK && reply != NULL) {
            *r = reply;
            return FLC_OK;
        }
        int gone = c->err == REDIS_ERR_EOF ||
                   (c->err == REDIS_ERR_IO && errno != EAGAIN && errno != EWOULDBLOCK);
        if (!gone) {
            s->c = c;
            s->cl->cur = e->node;
            return flc_store_io_error(s, what);
        }
        char detail[160];
        snprintf(detail, sizeof detail, "%s", c->errstr[0] ? c->errstr : "connection lost");
        if (flc_store_cl_replay(s, e->node, what) != FLC_OK)
            return flc_store_cl_lost(s, what, detail);
        atomic_fetch_add(&n_replayed, 1);
    }
}

/* Reads the replies of every queued command after the oldest into their
 * stash, so that a resent command's reply is the next one on any
 * connection. */
static int drain(flc_store_t *s, const char *what)
{
    flc_store_cluster_t *cl = s->cl;
    for (size_t i = cl->head + 1; i < cl->n; i++) {
        pend_t *p = &cl->q[i];
        if (p->stash == NULL) {
            /* Not reply_of: the command being settled is resent by settle
             * itself, so a replay of the batch here would send it twice. */
            int rc = get_reply(s, p->node, p->ctx, &p->stash, what);
            if (rc != FLC_OK)
                return rc;
        }
    }
    return FLC_OK;
}

/* Sends e's command (after ASKING when asking) to node and reads its reply. */
static int resend(flc_store_t *s, pend_t *e, unsigned node, int asking, redisReply **r,
                  const char *what)
{
    flc_store_cluster_t *cl = s->cl;
    redisContext *c;
    int rc = flc_store_cl_conn(s, node, &c);
    if (rc != FLC_OK)
        return rc;
    if (asking && redisAppendCommand(c, "ASKING") != REDIS_OK)
        return get_reply(s, node, c, r, what);
    if (flc_store_cl_append_pend(c, e) != REDIS_OK)
        return get_reply(s, node, c, r, what);
    if (cl->block_ms)
        redisSetTimeout(c, flc_store_cl_tv(cl->block_ms));
    redisReply *ok = NULL;
    rc = asking ? get_reply(s, node, c, &ok, what) : FLC_OK;
    if (ok)
        freeReplyObject(ok); /* ASKING's +OK */
    if (rc == FLC_OK)
        rc = get_reply(s, node, c, r, what);
    if (cl->block_ms && s->c != NULL && rc == FLC_OK)
        redisSetTimeout(c, flc_store_cl_tv(s->opts.io_timeout_ms));
    if (rc == FLC_OK)
        e->node = node, e->ctx = c;
    return rc;
}

/* Follows *r's redirects until e's command got an answer from the node
 * that owns its key (see the file's comment for why resending is safe). */
static int settle(flc_store_t *s, pend_t *e, redisReply **r, const char *what)
{
    flc_store_cluster_t *cl = s->cl;
    uint64_t t0 = flc_store_cl_now_ms();
    unsigned wait = 0;
    for (int hops = 0;;) {
        flc_cluster_redirect_t rd;
        flc_cluster_reply_t kind = flc_cluster_classify(*r, &rd);
        if (kind == FLC_CLUSTER_R_OK || kind == FLC_CLUSTER_R_OTHER ||
            kind == FLC_CLUSTER_R_CROSSSLOT || kind == FLC_CLUSTER_R_IOERR)
            return FLC_OK;
        atomic_fetch_add(kind == FLC_CLUSTER_R_MOVED ? &n_moved
                         : kind == FLC_CLUSTER_R_ASK ? &n_ask
                                                     : &n_retry,
                         1);
        flc_err_t e2;
        char asked[256];
        snprintf(asked, sizeof asked, "%s", cl->map.nodes[e->node].host);
        if (e->in_tx || !e->keyed) {
            /* Not resent alone (see the file's comment); the map learns. */
            if (kind == FLC_CLUSTER_R_MOVED)
                flc_cluster_map_apply_moved(&cl->map, &rd, asked, &e2);
            else if (kind != FLC_CLUSTER_R_ASK)
                cl->map.refresh_pending = 1;
            return FLC_OK;
        }
        /* Redirects count against the hops (a loop of them is a broken
         * cluster); waits for a failover only against the deadline. */
        hops += kind == FLC_CLUSTER_R_MOVED || kind == FLC_CLUSTER_R_ASK;
        if (hops > CL_MAX_REDIRECTS || flc_store_cl_now_ms() - t0 > CL_DEADLINE_MS)
            return FLC_OK; /* the caller reports the last error reply */
        int rc = drain(s, what);
        if (rc != FLC_OK)
            return rc;
        int target = -1, asking = 0;
        switch (kind) {
        case FLC_CLUSTER_R_MOVED:
            target = flc_cluster_map_apply_moved(&cl->map, &rd, asked, &e2);
            break;
        case FLC_CLUSTER_R_ASK:
            target = flc_cluster_map_node_for(&cl->map, &rd, asked, &e2);
            asking = 1;
            break;
        case FLC_CLUSTER_R_TRYAGAIN:
            flc_store_cl_backoff(&wait, 10, 200);
            target = (int)flc_cluster_map_owner(&cl->map, e->slot);
            break;
        default: /* CLUSTERDOWN, UNBLOCKED */
            flc_store_cl_backoff(&wait, 50, 250);
            flc_cluster_conn_refresh(cl->cc, &cl->map, -1, 1, NULL, &e2);
            target = (int)flc_cluster_map_owner(&cl->map, e->slot);
            break;
        }
        if (target < 0 || target == (int)FLC_CLUSTER_NO_NODE) {
            flc_store_cl_backoff(&wait, 50, 250);
            continue; /* the same reply once more: refresh, look again */
        }
        redisReply *nr = NULL;
        rc = resend(s, e, (unsigned)target, asking, &nr, what);
        if (rc == FLC_ECONN && s->c != NULL && flc_store_cl_now_ms() - t0 <= CL_DEADLINE_MS) {
            /* The target cannot be reached (a dead master a stale MOVED
             * names): nothing was sent; the owner may change. */
            flc_store_cl_backoff(&wait, 50, 250);
            flc_cluster_conn_refresh(cl->cc, &cl->map, target, 1, NULL, &e2);
            target = (int)flc_cluster_map_owner(&cl->map, e->slot);
            if (target == (int)FLC_CLUSTER_NO_NODE)
                continue;
            rc = resend(s, e, (unsigned)target, 0, &nr, what);
            if (rc == FLC_ECONN && s->c != NULL)
                continue;
        }
        if (rc != FLC_OK)
            return rc;
        freeReplyObject(*r);
        *r = nr;
    }
}

static int settle_busy(flc_store_t *s, pend_t *e, redisReply **r, const char *what)
{
    /* While a redirect is settled the replies behind it are read aside
     * (drain) and its own is in hand: a failed connect must not read. */
    int was = s->cl->busy;
    s->cl->busy = 1;
    int rc = settle(s, e, r, what);
    if (s->cl != NULL)
        s->cl->busy = was;
    return rc;
}

/* The oldest command's reply rep in hand: its redirects followed, the
 * queue moved on. */
static int finish(flc_store_t *s, pend_t *e, redisReply *rep, redisReply **r, const char *what)
{
    int rc = settle_busy(s, e, &rep, what);
    if (rc != FLC_OK) {
        if (rep)
            freeReplyObject(rep);
        return rc;
    }
    *r = rep;
    return FLC_OK;
}

/* One more reply of the queue read: past its last, the batch is over. */
static void advance(flc_store_cluster_t *cl)
{
    if (cl->head < cl->n) { /* an I/O error in settle cleared the queue */
        /* The batch's answered commands are kept (their text, nothing
         * more than the batch already held) until its last reply: a
         * replay sends the dead node's share of the batch again whole
         * (store_cluster_fail.c). */
        if (++cl->head == cl->n) {
            for (size_t i = 0; i < cl->n; i++)
                flc_store_cl_pend_free(&cl->q[i]);
            cl->head = cl->n = 0;
            cl->batch++; /* nothing due: the next commands are a new batch */
        }
    }
}

int flc_store_cl_read(flc_store_t *s, redisReply **r, const char *what)
{
    flc_store_cluster_t *cl = s->cl;
    *r = NULL;
    if (cl->head == cl->n)
        return flc_err_set(&s->err, FLC_EPROTO, "%s: %s: no reply is due", s->url_text, what);
    pend_t *e = &cl->q[cl->head];
    redisReply *rep = e->stash;
    e->stash = NULL;
    int rc = rep ? FLC_OK : reply_of(s, e, &rep, what);
    if (rc != FLC_OK)
        return rc; /* the queue is gone with the connections */
    rc = finish(s, e, rep, r, what);
    if (rc == FLC_OK)
        advance(cl);
    return rc;
}

int flc_store_cl_read_with(flc_store_t *s, int (*get)(redisContext *c, void *priv, void **reply),
                           void *priv, const char *(*err_of)(void *priv), redisReply **r,
                           int *direct, const char *what)
{
    flc_store_cluster_t *cl = s->cl;
    *r = NULL;
    *direct = 0;
    if (cl->head == cl->n || cl->q[cl->head].stash != NULL || cl->q[cl->head].ctx == NULL)
        return flc_store_cl_read(s, r, what);
    pend_t *e = &cl->q[cl->head];
    void *reply = NULL;
    if (get(e->ctx, priv, &reply) != REDIS_OK || reply == NULL) /* the connection broke: the ordinary path follows the failover */
        return flc_store_cl_read(s, r, what);
    const char *msg = err_of(priv);
    if (msg == NULL) {
        *direct = 1;
        advance(cl);
        return FLC_OK;
    }
    /* An error reply (a redirect, or one for the caller): as an object,
     * so settle can follow it. Made as hiredis makes replies (malloc). */
    redisReply *er = calloc(1, sizeof *er);
    char *str = strdup(msg);
    if (er == NULL || str == NULL) {
        free(er);
        free(str);
        return flc_err_set(&s->err, FLC_ENOMEM, "%s: out of memory", what);
    }
    er->type = REDIS_REPLY_ERROR;
    er->str = str;
    er->len = strlen(str);
    int rc = finish(s, e, er, r, what);
    if (rc == FLC_OK)
        advance(cl);
    return rc;
}

void flc_store_cl_block_ms(flc_store_t *s, unsigned ms)
{
    s->cl->block_ms = ms;
}

