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
    return 1;
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
