/* store_wait.c - making sure an update survives a failover, and finding
 * out which did not (store_failover.h).
 *
 * Redis replicates asynchronously: a master acknowledges a write before its
 * replica has it, and a master SIGKILLed in between takes the write along.
 * WAIT n t blocks the connection that wrote until n replicas acknowledged
 * everything it wrote, or t ms passed, and says how many did. The store
 * knows which nodes its commands wrote to (store_cluster.c marks them), so
 * flc_store_replicated sends WAIT to exactly those, pipelined (the nodes
 * wait in parallel: the cost is the slowest node's replication, not the
 * sum). WAIT must go on the connection that wrote, which on a cluster is
 * the store's one connection per node.
 *
 * flc_store_updates_present is the other way round: after a failover, who
 * wrote what asks whether the new owner has it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "cache/keys.h"
#include "cache/store_cluster_internal.h"
#include "cache/store_failover.h"
#include "cache/store_internal.h"

unsigned flc_store_wait_replicas(const flc_store_t *s)
{
    return s->opts.wait_replicas;
}

/* The replica count of a WAIT reply r on node, checked against want. */
static int check_ack(flc_store_t *s, const redisReply *r, const char *node, unsigned want,
                     unsigned ms, const char *what)
{
    if (r->type == REDIS_REPLY_ERROR)
        return flc_store_reply_error(s, r, "WAIT");
    long long got = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (got >= (long long)want)
        return FLC_OK;
    return flc_err_set(&s->err, FLC_ETIMEOUT, "%s acknowledged by %lld of %u replicas of node "
                       "%s within %u ms", what, got < 0 ? 0 : got, want, node, ms);
}

/* The replicas node has now (INFO replication's connected_slaves), or -1. */
static long long replicas_of(flc_store_t *s, unsigned node)
{
    redisReply *r = NULL;
    if (flc_store_cl_use_node(s, node) != FLC_OK ||
        flc_store_commandf(s, &r, "INFO replication") != FLC_OK)
        return -1;
    const char *p = r->type == REDIS_REPLY_STRING ? strstr(r->str, "connected_slaves:") : NULL;
    long long n = p ? atoll(p + strlen("connected_slaves:")) : -1;
    freeReplyObject(r);
    return n;
}

/* One server: WAIT on its connection. */
static int wait_one(flc_store_t *s, unsigned want, unsigned ms, const char *what)
{
    redisReply *r = NULL;
    int rc = flc_store_commandf(s, &r, "WAIT %u %u", want, ms);
    if (rc != FLC_OK)
        return flc_err_wrap(&s->err, "%s: waiting for %u replica%s: ", what, want,
                            want == 1 ? "" : "s");
    rc = check_ack(s, r, s->url_text, want, ms, what);
    freeReplyObject(r);
    return rc;
}

static int replicated(flc_store_t *s, const char *what);

int flc_store_replicated(flc_store_t *s, const char *what)
{
    int rc = replicated(s, what);
    flc_store_in_step(s, "a replication wait");
    return rc;
}

static int replicated(flc_store_t *s, const char *what)
{
    unsigned want = s->opts.wait_replicas;
    unsigned ms = s->opts.wait_timeout_ms ? s->opts.wait_timeout_ms : 1000;
    if (want == 0)
        return FLC_OK;
    flc_err_clear(&s->err);
    if (s->cl == NULL)
        return wait_one(s, want, ms, what);
    flc_store_cluster_t *cl = s->cl;
    size_t n = 0, cap = cl->nnode_state;
    unsigned *nodes = malloc((cap ? cap : 1) * sizeof *nodes);
    if (nodes == NULL)
        return flc_err_set(&s->err, FLC_ENOMEM, "out of memory");
    for (size_t i = 0; i < cap; i++)
        if (cl->written[i]) {
            nodes[n++] = (unsigned)i;
            cl->written[i] = 0;
        }
    /* WAIT blocks up to ms on each node: the sockets outwait it. */
    flc_store_cl_block_ms(s, ms + s->opts.io_timeout_ms);
    char arg_n[16], arg_ms[16];
    snprintf(arg_n, sizeof arg_n, "%u", want);
    snprintf(arg_ms, sizeof arg_ms, "%u", ms);
    const char *argv[] = {"WAIT", arg_n, arg_ms};
    int rc = FLC_OK;
    size_t sent = 0, short_of = 0;
    long long *got = malloc((n ? n : 1) * sizeof *got);
    if (got == NULL) {
        free(nodes);
        return flc_err_set(&s->err, FLC_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++)
        got[i] = -1;
    for (; rc == FLC_OK && sent < n; sent++) {
        /* Keyless: it goes to the node flc_store_cl_use_node chose. */
        rc = flc_store_cl_use_node(s, nodes[sent]);
        if (rc == FLC_OK)
            rc = flc_store_append(s, 3, argv, NULL);
    }
    if (rc == FLC_OK)
        rc = flc_store_flush(s, "WAIT");
    int first = FLC_OK;
    for (size_t i = 0; rc == FLC_OK && i < sent; i++) {
        redisReply *r = NULL;
        const flc_cluster_node_t *nd = &cl->map.nodes[nodes[i]];
        char node[300];
        snprintf(node, sizeof node, "%s:%d", nd->host, nd->port);
        if ((rc = flc_store_read(s, &r, "WAIT")) != FLC_OK)
            break;
        int c = check_ack(s, r, node, want, ms, what);
        if (c == FLC_ETIMEOUT)
            got[i] = r->integer;
        if (c != FLC_OK && first == FLC_OK)
            first = c;
        short_of += c == FLC_ETIMEOUT;
        freeReplyObject(r);
    }
    /* A node with fewer replicas than asked for (a promoted replica whose
     * old master is still down) cannot do better: every replica it has
     * acknowledged the writes, which is all the durability the cluster can
     * offer until the dead node is back. That is accepted, and counted
     * (flc_store_wait_short); a replica that is there but did not answer
     * in time (cut off, lagging) is not. */
    if (rc == FLC_OK && first == FLC_ETIMEOUT && short_of > 0) {
        flc_err_t keep = s->err;
        int all_had = 1;
        for (size_t i = 0; i < sent && all_had; i++)
            if (got[i] >= 0) {
                long long have = replicas_of(s, nodes[i]);
                all_had = have >= 0 && have < (long long)want && got[i] >= have;
            }
        if (all_had) {
            cl->wait_short++;
            first = FLC_OK;
            flc_err_clear(&s->err);
        } else {
            s->err = keep;
        }
    }
    flc_store_cl_block_ms(s, 0);
    for (size_t i = 0; i < sent; i++) /* the normal I/O timeout again */
        if (flc_store_cl_use_node(s, nodes[i]) == FLC_OK)
            flc_store_set_timeout(s, s->opts.io_timeout_ms);
    free(nodes);
    free(got);
    if (rc != FLC_OK) /* a node went away: what it had may be lost */
        return flc_err_wrap(&s->err, "%s: waiting for %u replica%s: ", what, want,
                            want == 1 ? "" : "s");
    if (first != FLC_OK)
        s->err.code = first;
    return first;
}

int flc_store_updates_present(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                              const char *const *clients, size_t n, unsigned char *present)
{
    /* On key schema 2 a client's announcement is a token on its own arrival
     * list, which the merger pops: once popped, nothing tells "announced"
     * from "in flight". The value itself is whole when it exists (one SET,
     * or a chunk hash published by RENAME), so presence is the value: a
     * push caught between its value and its token is taken a moment early,
     * and its token then counts as a repeat. */
    return flc_store_updates_exist(s, job, round, shard, clients, n, present);
}

uint64_t flc_store_wait_short(const flc_store_t *s)
{
    return s->cl ? s->cl->wait_short : 0;
}
