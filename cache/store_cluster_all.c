/* store_cluster_all.c - what goes to every master of a Redis Cluster:
 * whole-server commands (FLUSHDB, FLUSHALL, DBSIZE, KEYS: their answers
 * combined), and CLIENT ID / CLIENT UNBLOCK (store_ops.h): a connection id
 * is per node, and the node a store will block on is known only when it
 * blocks, so the store's "id" is a token given as a name to all its node
 * connections, and a wake finds that name on every master. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "base/clock.h"
#include "cache/store_cluster.h"
#include "cache/store_cluster_internal.h"

/* ---- whole-server commands -------------------------------------------------- */

int flc_store_cl_whole_server(const char *cmd, size_t len)
{
    const char *a[1] = {0};
    size_t al[1] = {0};
    if (flc_store_cl_args(cmd, len, a, al, 1) < 1)
        return 0;
    static const char *const all[] = {"FLUSHDB", "FLUSHALL", "DBSIZE", "KEYS"};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (al[0] == strlen(all[i]) && strncasecmp(a[0], all[i], al[0]) == 0)
            return 1;
    return 0;
}

/* Adds r's answer to *acc (the first reply becomes *acc): integers summed,
 * arrays concatenated, an error kept over anything else. */
static int combine(flc_store_t *s, redisReply **acc, redisReply *r)
{
    redisReply *a = *acc;
    if (a == NULL || r->type == REDIS_REPLY_ERROR) {
        if (a)
            freeReplyObject(a);
        *acc = r;
        return FLC_OK;
    }
    if (a->type == REDIS_REPLY_INTEGER && r->type == REDIS_REPLY_INTEGER) {
        a->integer += r->integer;
    } else if (a->type == REDIS_REPLY_ARRAY && r->type == REDIS_REPLY_ARRAY && r->elements) {
        redisReply **v = realloc(a->element, (a->elements + r->elements) * sizeof *v);
        if (v == NULL) {
            freeReplyObject(r);
            return flc_err_set(&s->err, FLC_ENOMEM, "out of memory combining replies");
        }
        memcpy(v + a->elements, r->element, r->elements * sizeof *v);
        a->element = v;
        a->elements += r->elements;
        r->elements = 0; /* they belong to a now */
    }
    freeReplyObject(r);
    return FLC_OK;
}

int flc_store_cl_all_masters(flc_store_t *s, const char *cmd, size_t len, redisReply **out,
                             const char *what)
{
    *out = NULL;
    unsigned m[64];
    size_t n = 0;
    int rc = flc_store_cl_masters(s, m, 64, &n);
    for (size_t i = 0; rc == FLC_OK && i < n; i++) {
        char *copy = malloc(len);
        if (copy == NULL) {
            rc = flc_err_set(&s->err, FLC_ENOMEM, "out of memory");
            break;
        }
        memcpy(copy, cmd, len);
        redisReply *r = NULL;
        if ((rc = flc_store_cl_use_node(s, m[i])) != FLC_OK) {
            free(copy);
            break;
        }
        rc = flc_store_cl_push(s, copy, len); /* keyless: to that node */
        if (rc == FLC_OK)
            rc = flc_store_cl_flush(s, what);
        if (rc == FLC_OK)
            rc = flc_store_cl_read(s, &r, what);
        if (rc == FLC_OK)
            rc = combine(s, out, r);
    }
    if (rc != FLC_OK && *out) {
        freeReplyObject(*out);
        *out = NULL;
    }
    return rc;
}

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
    int rc = flc_store_cl_masters(s, m, 64, &n), first = rc;
    for (size_t i = 0; i < n; i++) {
        redisReply *r;
        /* A master that cannot be asked (killed, its replica not promoted
         * yet) does not keep the others' waiters blocked: the caller asks
         * again, and the map follows the failover. */
        if ((rc = flc_store_cl_use_node(s, m[i])) != FLC_OK ||
            (rc = flc_store_commandf(s, &r, "CLIENT LIST TYPE normal")) != FLC_OK) {
            first = first == FLC_OK ? rc : first;
            continue;
        }
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
        first = first == FLC_OK ? rc : first;
    }
    return first;
}
