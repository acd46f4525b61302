/* store_cluster_fail.c - the store's side of a Redis Cluster failover
 * (issue 12 point 5): noticing a dead node connection before anything is
 * sent on it, counting what callers need to notice that a node changed
 * under them (flc_store_failovers), and remembering which nodes were
 * written to, for the replication wait (store_wait.c).
 *
 * Why probe a connection before a batch: a master SIGKILLed while one of
 * our connections to it sits idle leaves that connection closed by the
 * kernel (FIN or RST queued on our socket), but hiredis only finds out when
 * it reads. A pipeline written on it then fails after it was "sent", and a
 * pipeline that may have run cannot be resent (store_cluster.c), so every
 * process that merely had talked to the dead master would fail its next
 * pipeline even after the replica took over. An idle Redis connection is
 * never readable (no reply is due and RESP2 has no pushes), so a zero-time
 * poll() that says readable means the server is gone: the connection is
 * remade before anything is sent, which is always safe. One poll per node
 * per batch of commands, none on one server. */
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cache/store_cluster.h"
#include "cache/store_cluster_internal.h"
#include "cache/store_failover.h"

int flc_store_cl_node_state(flc_store_cluster_t *cl, unsigned node)
{
    if (node < cl->nnode_state)
        return FLC_OK;
    size_t n = (size_t)node + 8;
    uint64_t *p = realloc(cl->probed, n * sizeof *p);
    if (p == NULL)
        return FLC_ENOMEM;
    cl->probed = p;
    unsigned char *w = realloc(cl->written, n);
    if (w == NULL)
        return FLC_ENOMEM;
    cl->written = w;
    for (size_t i = cl->nnode_state; i < n; i++)
        p[i] = UINT64_MAX, w[i] = 0;
    cl->nnode_state = n;
    return FLC_OK;
}

/* 1 when c (node's connection, nothing due on it) must be remade: it is
 * the first use of node in this batch and the socket is readable, i.e. the
 * server closed it (see the file's comment). */
int flc_store_cl_stale(flc_store_t *s, unsigned node, redisContext *c)
{
    flc_store_cluster_t *cl = s->cl;
    if (flc_store_cl_node_state(cl, node) != FLC_OK || cl->probed[node] == cl->batch)
        return 0;
    cl->probed[node] = cl->batch;
    if (c->fd < 0)
        return 0;
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    if (poll(&p, 1, 0) <= 0)
        return 0;
    if ((p.revents & (POLLIN | POLLHUP | POLLERR)) == 0)
        return 0;
    cl->lost++;
    if (s->c == c) /* the caller closes it: nothing may keep naming it */
        s->c = NULL;
    return 1;
}

/* 1 for the commands the store sends that write nothing (the replication
 * wait skips nodes that were only read). */
int flc_store_cl_reads_only(const char *a, size_t al)
{
    static const char *const reads[] = {"GET",    "GETRANGE", "HGET",   "HGETALL", "HKEYS",
                                        "HVALS",  "HLEN",     "HEXISTS", "EXISTS", "SMEMBERS",
                                        "SISMEMBER", "SCARD", "ZRANGE", "ZCARD",   "LRANGE",
                                        "LLEN",   "STRLEN",   "TTL",    "PTTL",    "TYPE",
                                        "MEMORY", "OBJECT"};
    for (size_t i = 0; i < sizeof reads / sizeof *reads; i++)
        if (al == strlen(reads[i]) && strncasecmp(a, reads[i], al) == 0)
            return 1;
    return 0;
}

void flc_store_cl_mark_written(flc_store_t *s, unsigned node)
{
    if (flc_store_cl_node_state(s->cl, node) == FLC_OK)
        s->cl->written[node] = 1;
}

uint64_t flc_store_failovers(const flc_store_t *s)
{
    if (s->cl == NULL)
        return 0;
    return s->cl->lost + s->cl->map.owner_changes;
}

int flc_store_fails_over(const flc_store_t *s)
{
    return s->cl != NULL;
}

/* ---- a node lost with replies due: sending again what may run twice ------ */

/* 1 when every command of the batch that went to node dead (answered or
 * not: what the dead master answered may not have reached its replica) is
 * keyed, outside a transaction and has the same effect run twice
 * (flc_store_cl_idempotent): shard writes as one SET, reads, index
 * updates. A batch with anything else there (an arrival script, an RPUSH,
 * EXEC) fails as a lost connection does, since part of it may have run. */
static int replayable(const flc_store_cluster_t *cl, unsigned dead)
{
    for (size_t i = 0; i < cl->n; i++) {
        const pend_t *p = &cl->q[i];
        if (p->node == dead &&
            (!p->keyed || p->in_tx || !flc_store_cl_pend_idempotent(p)))
            return 0;
    }
    return 1;
}

/* Reads into their stash the replies due on every connection but dead's,
 * so that no live stream holds a reply when commands are appended to it. */
static int drain_live(flc_store_cluster_t *cl, unsigned dead)
{
    for (size_t i = cl->head; i < cl->n; i++) {
        pend_t *p = &cl->q[i];
        if (p->stash != NULL || p->node == dead || p->ctx == NULL)
            continue;
        void *r = NULL;
        if (redisGetReply(p->ctx, &r) != REDIS_OK || r == NULL)
            return FLC_ECONN; /* a second node lost: give up */
        p->stash = r;
    }
    return FLC_OK;
}

int flc_store_cl_stash_all(flc_store_cluster_t *cl)
{
    return drain_live(cl, FLC_CLUSTER_NO_NODE);
}

static int flush_all(flc_store_cluster_t *cl)
{
    for (size_t i = 0; i < cl->n; i++) {
        redisContext *c = cl->q[i].ctx;
        int done = c == NULL || c->obuf[0] == '\0';
        while (!done)
            if (redisBufferWrite(c, &done) != REDIS_OK)
                return FLC_ECONN;
    }
    return FLC_OK;
}

static int replay(flc_store_t *s, unsigned dead, const char *what);

/* 1 when every command of dead's share has an owner other than dead that
 * can be connected to. */
static int owners_ready(flc_store_t *s, unsigned dead)
{
    flc_store_cluster_t *cl = s->cl;
    for (size_t i = 0; i < cl->n; i++) {
        const pend_t *p = &cl->q[i];
        redisContext *c;
        unsigned o = flc_cluster_map_owner(&cl->map, p->slot);
        if (p->node == dead &&
            (o == FLC_CLUSTER_NO_NODE || o == dead || flc_store_cl_conn(s, o, &c) != FLC_OK))
            return 0;
    }
    return 1;
}

/* Sends the command of entry i to its slot's owner (appended, not
 * flushed); the entry then belongs to that node. */
static int move_entry(flc_store_t *s, size_t i)
{
    flc_store_cluster_t *cl = s->cl;
    pend_t *p = &cl->q[i];
    unsigned o = flc_cluster_map_owner(&cl->map, p->slot);
    redisContext *c;
    if (flc_store_cl_conn(s, o, &c) != FLC_OK ||
        flc_store_cl_append_pend(c, p) != REDIS_OK)
        return FLC_ECONN;
    if (cl->block_ms)
        redisSetTimeout(c, flc_store_cl_tv(cl->block_ms));
    p->node = o, p->ctx = c;
    return FLC_OK;
}

int flc_store_cl_replay(flc_store_t *s, unsigned dead, const char *what)
{
    flc_store_cluster_t *cl = s->cl;
    int was = cl->busy;
    cl->busy = 1; /* nothing is read aside from here on (flc_store_cl_conn) */
    int rc = replay(s, dead, what);
    cl->busy = was;
    return rc;
}

static int replay(flc_store_t *s, unsigned dead, const char *what)
{
    flc_store_cluster_t *cl = s->cl;
    (void)what;
    if (!replayable(cl, dead) || drain_live(cl, dead) != FLC_OK)
        return FLC_ECONN;
    /* s->c (the store's "current connection", which callers set timeouts
     * on) must not outlive the context it names. */
    int was_current = 0;
    for (size_t i = 0; i < cl->n; i++)
        if (cl->q[i].node == dead) {
            was_current |= s->c != NULL && s->c == cl->q[i].ctx;
            cl->q[i].ctx = NULL; /* closed with it */
        }
    if (was_current || cl->cur == dead) {
        s->c = NULL;
        cl->cur = FLC_CLUSTER_NO_NODE;
    }
    flc_store_cl_close_node(cl, dead);
    cl->lost++;
    uint64_t t0 = flc_store_cl_now_ms();
    unsigned wait = 0;
    for (;;) {
        if (flc_store_cl_now_ms() - t0 > CL_DEADLINE_MS)
            return FLC_ECONN;
        flc_store_cl_backoff(&wait, 50, 250);
        flc_err_t e2; /* a failed refresh keeps the old map */
        flc_cluster_conn_refresh(cl->cc, &cl->map, (int)dead, 1, NULL, &e2);
        if (owners_ready(s, dead))
            break;
    }
    /* First what dead had answered (or whose reply is kept aside): its
     * effect may not have reached the replica. Sent and read now, their
     * new answers dropped (the caller has, or will get, the first ones). */
    size_t *old = malloc((cl->n ? cl->n : 1) * sizeof *old), nold = 0;
    if (old == NULL)
        return FLC_ENOMEM;
    int rc = FLC_OK;
    for (size_t i = 0; rc == FLC_OK && i < cl->n; i++)
        if (cl->q[i].node == dead && (i < cl->head || cl->q[i].stash != NULL)) {
            rc = move_entry(s, i);
            old[nold++] = i;
        }
    if (rc == FLC_OK && nold > 0)
        rc = flush_all(cl);
    for (size_t j = 0; rc == FLC_OK && j < nold; j++) {
        void *r = NULL;
        if (redisGetReply(cl->q[old[j]].ctx, &r) != REDIS_OK || r == NULL)
            rc = FLC_ECONN;
        else
            freeReplyObject(r);
    }
    free(old);
    /* Then the ones still waiting for a reply, read by the caller as usual. */
    for (size_t i = cl->head; rc == FLC_OK && i < cl->n; i++)
        if (cl->q[i].node == dead && cl->q[i].stash == NULL) {
            rc = move_entry(s, i);
            if (rc == FLC_OK && s->c == NULL) { /* the command's new home */
                s->c = cl->q[i].ctx;
                cl->cur = cl->q[i].node;
            }
        }
    if (rc == FLC_OK)
        rc = flush_all(cl);
    return rc;
}
