/* store_cluster_wake.c - CLIENT ID / CLIENT UNBLOCK on a Redis Cluster
 * (store_ops.h): a connection id is per node, and the node a store will
 * block on is known only when it blocks, so the store's "id" is a token
 * given as a name to all its node connections, and a wake finds that name
 * on every master. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/clock.h"
#include "cache/store_cluster.h"
#include "cache/store_cluster_internal.h"

/* ---- waking a blocked connection ---------------------------------------- */

int flc_store_cl_conn_id(flc_store_t *s, long long *id)
{
    flc_store_cluster_t *cl = s->cl;
    static atomic_uint counter;
    if (cl->token < 0) {
        uint64_t t = flc_now_ns() / 1000u;
        cl->token = (long long)((((uint64_t)getpid() & 0xFFFFFu) << 36) |
                                ((t & 0xFFFFu) << 20) | (atomic_fetch_add(&counter, 1) & 0xFFFFFu));
    }
    /* Name the connections to every master now: the BLPOP that a wake is
     * for may go to any of them. Later connections are named when made. */
    unsigned m[64];
    size_t n = 0;
    int rc = flc_store_cl_masters(s, m, 64, &n);
    for (size_t i = 0; rc == FLC_OK && i < n; i++) {
        redisContext *c;
        rc = flc_store_cl_conn(s, m[i], &c);
    }
    *id = rc == FLC_OK ? cl->token : -1;
    return rc;
}

int flc_store_cl_wake_id(flc_store_t *s, long long id)
{
    char name[48];
    snprintf(name, sizeof name, " name=flc-w-%lld ", id);
    unsigned m[64];
    size_t n = 0;
    int rc = flc_store_cl_masters(s, m, 64, &n);
    for (size_t i = 0; rc == FLC_OK && i < n; i++) {
        redisReply *r;
        if ((rc = flc_store_cl_use_node(s, m[i])) != FLC_OK ||
            (rc = flc_store_commandf(s, &r, "CLIENT LIST TYPE normal")) != FLC_OK)
            break;
        long long ids[16];
        int nid = 0;
        for (const char *p = r->str; p && (p = strstr(p, name)) != NULL && nid < 16; p++) {
            const char *line = p;
            while (line > r->str && line[-1] != '\n')
                line--;
            if (strncmp(line, "id=", 3) == 0)
                ids[nid++] = atoll(line + 3);
        }
        freeReplyObject(r);
        for (int k = 0; rc == FLC_OK && k < nid; k++)
            if ((rc = flc_store_commandf(s, &r, "CLIENT UNBLOCK %lld TIMEOUT", ids[k])) == FLC_OK)
                freeReplyObject(r);
    }
    return rc;
}
