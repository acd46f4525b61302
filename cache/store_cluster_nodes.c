/* store_cluster_nodes.c - the nodes behind a store (store_ops.h): the node
 * list of `flcache store stats` (every node's role, slots, keys, memory) and
 * the owner of a shard, for the request tracker and query answers. Here
 * because it needs the cluster map and the per-node connections, which live
 * in cache/ alone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/keys.h"
#include "cache/slot.h"
#include "cache/store_cluster.h"
#include "cache/store_cluster_internal.h"
#include "cache/url.h"

/* The slot ranges node serves as "a-b,c,d-e" (ending in "..." when they do
 * not fit), and how many slots that is. */
static uint32_t slot_ranges(const flc_cluster_map_t *m, unsigned node, char *out, size_t cap)
{
    uint32_t count = 0;
    size_t len = 0;
    int full = 0;
    out[0] = '\0';
    for (unsigned a = 0; a < FLC_SLOT_COUNT;) {
        if (m->owner[a] != node) {
            a++;
            continue;
        }
        unsigned b = a;
        while (b + 1 < FLC_SLOT_COUNT && m->owner[b + 1] == node)
            b++;
        count += b - a + 1;
        if (!full) {
            char r[24];
            int k = a == b ? snprintf(r, sizeof r, "%s%u", len ? "," : "", a)
                           : snprintf(r, sizeof r, "%s%u-%u", len ? "," : "", a, b);
            if (len + (size_t)k + 4 < cap) {
                memcpy(out + len, r, (size_t)k + 1);
                len += (size_t)k;
            } else {
                memcpy(out + len, "...", 4);
                full = 1;
            }
        }
        a = b + 1;
    }
    return count;
}

/* Fills what the map says of node i (not keys or memory). */
static void describe(const flc_cluster_map_t *m, unsigned i, flc_store_node_t *d)
{
    const flc_cluster_node_t *nd = &m->nodes[i];
    memset(d, 0, sizeof *d);
    snprintf(d->id, sizeof d->id, "%s", nd->id);
    snprintf(d->addr, sizeof d->addr, "%s:%d", nd->host, nd->port);
    snprintf(d->role, sizeof d->role, "%s",
             nd->role == FLC_CLUSTER_REPLICA ? "replica" : "master");
    if (nd->role == FLC_CLUSTER_REPLICA && nd->master >= 0 && (size_t)nd->master < m->nnodes) {
        const flc_cluster_node_t *ma = &m->nodes[nd->master];
        snprintf(d->master_id, sizeof d->master_id, "%s", ma->id);
        snprintf(d->master_addr, sizeof d->master_addr, "%s:%d", ma->host, ma->port);
    }
    d->nslots = slot_ranges(m, i, d->slots, sizeof d->slots);
}

/* Reads "name:value" from an INFO text (0 when absent). */
static uint64_t info_u64(const char *info, const char *name)
{
    size_t nl = strlen(name);
    for (const char *p = info; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, name, nl) == 0 && p[nl] == ':')
            return strtoull(p + nl + 1, NULL, 10);
    return 0;
}

/* Asks node (already current) for its keys and memory. */
static int ask_node(flc_store_t *s, flc_store_node_t *d)
{
    redisReply *r;
    int rc = flc_store_commandf(s, &r, "INFO keyspace");
    if (rc != FLC_OK)
        return rc;
    if (r->type == REDIS_REPLY_STRING) {
        const char *db0 = strstr(r->str, "db0:keys=");
        d->keys = db0 ? strtoull(db0 + 9, NULL, 10) : 0;
    }
    freeReplyObject(r);
    if ((rc = flc_store_commandf(s, &r, "INFO memory")) != FLC_OK)
        return rc;
    if (r->type == REDIS_REPLY_STRING)
        d->used_memory = info_u64(r->str, "used_memory");
    freeReplyObject(r);
    return FLC_OK;
}

/* One line of CLUSTER NODES: "<id> <ip:port@cport[,hostname]> <flags>
 * <master> <ping> <pong> <epoch> <link> <slot>...". 0 for a line to skip
 * (no address yet, a handshake). */
static int parse_line(const char *line, size_t len, flc_store_node_t *d)
{
    char buf[8192];
    if (len >= sizeof buf)
        len = sizeof buf - 1;
    memcpy(buf, line, len);
    buf[len] = '\0';
    char *f[9] = {0}, *save = NULL, *t = strtok_r(buf, " ", &save);
    int nf = 0;
    for (; t && nf < 8; t = strtok_r(NULL, " ", &save))
        f[nf++] = t;
    if (nf < 8 || strstr(f[2], "noaddr") || strstr(f[2], "handshake"))
        return 0;
    memset(d, 0, sizeof *d);
    snprintf(d->id, sizeof d->id, "%s", f[0]);
    snprintf(d->addr, sizeof d->addr, "%.*s", (int)strcspn(f[1], "@,"), f[1]);
    int replica = strstr(f[2], "slave") != NULL;
    snprintf(d->role, sizeof d->role, "%s", replica ? "replica" : "master");
    if (replica && strcmp(f[3], "-") != 0)
        snprintf(d->master_id, sizeof d->master_id, "%s", f[3]);
    d->reachable = strstr(f[2], "fail") == NULL || strstr(f[2], "fail?") != NULL;
    size_t sl = 0;
    for (; t; t = strtok_r(NULL, " ", &save)) { /* slots and ranges; [..] are migrations */
        if (t[0] == '[')
            continue;
        unsigned a = (unsigned)strtoul(t, NULL, 10), b = a;
        const char *dash = strchr(t, '-');
        if (dash)
            b = (unsigned)strtoul(dash + 1, NULL, 10);
        if (a >= FLC_SLOT_COUNT || b >= FLC_SLOT_COUNT || b < a)
            continue;
        d->nslots += b - a + 1;
        if (sl + strlen(t) + 5 < sizeof d->slots)
            sl += (size_t)snprintf(d->slots + sl, sizeof d->slots - sl, "%s%s", sl ? "," : "", t);
        else if (sl + 4 <= sizeof d->slots && strcmp(d->slots + sl - 3, "...") != 0)
            sl += (size_t)snprintf(d->slots + sl, sizeof d->slots - sl, "...");
    }
    return 1;
}

/* The first slot of a master (16384 for none). */
static unsigned first_slot(const flc_store_node_t *d)
{
    return d->nslots ? (unsigned)strtoul(d->slots, NULL, 10) : FLC_SLOT_COUNT;
}

/* Sort key: masters by first slot, each followed by its replicas. */
static unsigned long order_of(const flc_store_node_t *v, size_t n, size_t i)
{
    const flc_store_node_t *m = &v[i];
    if (strcmp(v[i].role, "replica") == 0)
        for (size_t k = 0; k < n; k++)
            if (strcmp(v[k].id, v[i].master_id) == 0)
                m = &v[k];
    return (unsigned long)first_slot(m) * 2 + (m != &v[i]);
}

/* Asks node d for its keys and memory: over the store's own connection
 * when the map knows it, else (a replica CLUSTER SLOTS leaves out until it
 * has synced) over a connection of its own with the store's credentials. */
static void ask_any(flc_store_t *s, flc_store_node_t *d)
{
    char host[256];
    const char *colon = strrchr(d->addr, ':');
    int port = colon ? atoi(colon + 1) : 0;
    snprintf(host, sizeof host, "%.*s", colon ? (int)(colon - d->addr) : 0, d->addr);
    int at = flc_cluster_map_find(&s->cl->map, host, port);
    if (at >= 0 && s->cl->map.nodes[at].role != FLC_CLUSTER_GONE) {
        d->reachable = flc_store_cl_use_node(s, (unsigned)at) == FLC_OK && ask_node(s, d) == FLC_OK;
        return;
    }
    flc_url_t u = s->url;
    u.kind = FLC_URL_TCP;
    snprintf(u.host, sizeof u.host, "%s", host);
    u.port = port;
    u.cluster = FLC_URL_CLUSTER_NO;
    char url[1200];
    flc_err_t e = {0};
    flc_store_t *one = NULL;
    if (host[0] && port > 0 && flc_url_format(&u, url, sizeof url) == FLC_OK)
        one = flc_store_open(url, &s->opts, &e);
    d->reachable = one != NULL && ask_node(one, d) == FLC_OK;
    flc_store_close(one);
}

/* From the map alone (CLUSTER NODES refused, as an ACL may): the nodes
 * CLUSTER SLOTS listed. */
static size_t from_map(flc_store_t *s, flc_store_node_t *v)
{
    flc_store_cluster_t *cl = s->cl;
    size_t k = 0;
    for (size_t i = 0; i < cl->map.nnodes; i++)
        if (cl->map.nodes[i].role == FLC_CLUSTER_REPLICA ||
            (cl->map.nodes[i].role == FLC_CLUSTER_MASTER && cl->map.nodes[i].nslots > 0))
            describe(&cl->map, (unsigned)i, &v[k++]);
    return k;
}

int flc_store_nodes(flc_store_t *s, flc_store_node_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    flc_err_clear(&s->err);
    if (!flc_store_is_cluster(s))
        return FLC_OK;
    int rc = flc_store_ensure(s);
    if (rc != FLC_OK)
        return rc;
    flc_store_cluster_t *cl = s->cl;
    if (cl->head == cl->n) { /* roles change on failover: ask the cluster now */
        flc_err_t e2;
        flc_cluster_conn_refresh(cl->cc, &cl->map, -1, 1, NULL, &e2);
    }
    /* CLUSTER NODES, not the map: CLUSTER SLOTS leaves out replicas that
     * have not finished their first sync, and the list is of every node. */
    redisReply *r = NULL;
    rc = flc_store_commandf(s, &r, "CLUSTER NODES");
    size_t cap = cl->map.nnodes + 1;
    if (rc == FLC_OK && r->type == REDIS_REPLY_STRING)
        for (const char *p = r->str; *p; p++)
            cap += *p == '\n';
    flc_store_node_t *v = calloc(cap, sizeof *v);
    if (v == NULL) {
        if (r)
            freeReplyObject(r);
        return flc_err_set(&s->err, FLC_ENOMEM, "out of memory listing %zu nodes", cap);
    }
    size_t k = 0;
    if (rc == FLC_OK && r->type == REDIS_REPLY_STRING) {
        for (const char *p = r->str; p && *p && k < cap;) {
            size_t len = strcspn(p, "\r\n");
            k += len && parse_line(p, len, &v[k]);
            p += len;
            p += strspn(p, "\r\n");
        }
        for (size_t i = 0; i < k; i++) /* a replica's master by address too */
            for (size_t j = 0; v[i].master_id[0] && j < k; j++)
                if (strcmp(v[j].id, v[i].master_id) == 0)
                    snprintf(v[i].master_addr, sizeof v[i].master_addr, "%s", v[j].addr);
    } else {
        k = from_map(s, v);
    }
    if (r)
        freeReplyObject(r);
    for (size_t i = 1; i < k; i++) /* insertion sort: a handful of nodes */
        for (size_t j = i; j > 0 && order_of(v, k, j - 1) > order_of(v, k, j); j--) {
            flc_store_node_t t = v[j];
            v[j] = v[j - 1], v[j - 1] = t;
        }
    for (size_t i = 0; i < k; i++) {
        if (!v[i].reachable)
            continue; /* the cluster says it failed: no connect timeout for it */
        ask_any(s, &v[i]);
        if (!v[i].reachable)
            v[i].keys = v[i].used_memory = 0;
    }
    (void)flc_store_ensure(s); /* keyless commands back to a master; the list stands anyway */
    flc_err_clear(&s->err);
    *out = v;
    *n = k;
    return FLC_OK;
}

int flc_store_shard_node(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                         flc_store_node_t *node)
{
    memset(node, 0, sizeof *node);
    flc_err_clear(&s->err);
    if (!flc_store_is_cluster(s)) {
        snprintf(node->addr, sizeof node->addr, "%s", s->url_text);
        snprintf(node->role, sizeof node->role, "server");
        node->reachable = 1;
        return FLC_OK;
    }
    flc_store_cluster_t *cl = s->cl;
    if (cl->head == cl->n && cl->map.refresh_pending) {
        flc_err_t e2; /* a failed refresh keeps the old map, still the best guess */
        flc_cluster_conn_refresh(cl->cc, &cl->map, -1, 0, NULL, &e2);
    }
    char key[FLC_KEY_MAX];
    int rc = flc_store_shard_key(s, key, job, round, shard, "agg");
    if (rc != FLC_OK)
        return rc;
    unsigned owner = flc_cluster_map_lookup(&cl->map, key, strlen(key));
    if (owner == FLC_CLUSTER_NO_NODE || owner >= cl->map.nnodes)
        return flc_err_set(&s->err, FLC_ENOTFOUND, "%s: no node serves shard %u of round %u "
                           "of job %s (slot %u)", s->url_text, shard, round, job,
                           (unsigned)flc_slot_of(key, strlen(key)));
    describe(&cl->map, owner, node);
    node->reachable = 1;
    return FLC_OK;
}

int flc_store_shard_owners(flc_store_t *s, const char *job, uint32_t round, uint32_t num_shards,
                           unsigned *owner)
{
    flc_err_clear(&s->err);
    for (uint32_t k = 0; k < num_shards; k++)
        owner[k] = 0;
    if (!flc_store_is_cluster(s))
        return FLC_OK;
    flc_store_cluster_t *cl = s->cl;
    for (uint32_t k = 0; k < num_shards; k++) {
        char key[FLC_KEY_MAX];
        int rc = flc_store_shard_key(s, key, job, round, k, "agg");
        if (rc != FLC_OK)
            return rc;
        unsigned o = flc_cluster_map_lookup(&cl->map, key, strlen(key));
        owner[k] = o == FLC_CLUSTER_NO_NODE ? 0 : o; /* a guess is enough for an order */
    }
    return FLC_OK;
}
