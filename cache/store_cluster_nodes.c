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

/* Masters by their first slot, then replicas by their master's place. */
static int rank(const flc_cluster_map_t *m, unsigned i)
{
    const flc_cluster_node_t *nd = &m->nodes[i];
    unsigned base = i;
    if (nd->role == FLC_CLUSTER_REPLICA && nd->master >= 0)
        base = (unsigned)nd->master;
    int first = FLC_SLOT_COUNT;
    for (unsigned a = 0; a < FLC_SLOT_COUNT; a++)
        if (m->owner[a] == base) {
            first = (int)a;
            break;
        }
    return first * 2 + (nd->role == FLC_CLUSTER_REPLICA);
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
    size_t total = cl->map.nnodes;
    unsigned *idx = malloc((total + 1) * sizeof *idx);
    int *key = malloc((total + 1) * sizeof *key);
    flc_store_node_t *v = calloc(total + 1, sizeof *v);
    if (idx == NULL || key == NULL || v == NULL) {
        free(idx), free(key), free(v);
        return flc_err_set(&s->err, FLC_ENOMEM, "out of memory listing %zu nodes", total);
    }
    size_t k = 0;
    for (size_t i = 0; i < total; i++)
        if (cl->map.nodes[i].role != FLC_CLUSTER_GONE &&
            (cl->map.nodes[i].role == FLC_CLUSTER_REPLICA || cl->map.nodes[i].nslots > 0)) {
            idx[k] = (unsigned)i;
            key[k++] = rank(&cl->map, (unsigned)i);
        }
    for (size_t i = 1; i < k; i++) /* insertion sort: a handful of nodes */
        for (size_t j = i; j > 0 && key[j - 1] > key[j]; j--) {
            int t = key[j];
            key[j] = key[j - 1], key[j - 1] = t;
            unsigned u = idx[j];
            idx[j] = idx[j - 1], idx[j - 1] = u;
        }
    /* Describe them all first: a node that fails may trigger a map refresh
     * (indexes stay, but roles may change under the loop). */
    for (size_t i = 0; i < k; i++)
        describe(&cl->map, idx[i], &v[i]);
    for (size_t i = 0; i < k; i++) {
        v[i].reachable = flc_store_cl_use_node(s, idx[i]) == FLC_OK && ask_node(s, &v[i]) == FLC_OK;
        if (!v[i].reachable)
            v[i].keys = v[i].used_memory = 0;
    }
    flc_err_clear(&s->err);
    /* Keyless commands go back to a master (the last node may be a replica). */
    (void)flc_store_ensure(s); /* the list stands even if no master answers now */
    flc_err_clear(&s->err);
    free(idx), free(key);
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
    flc_key_shard(key, job, round, shard, "agg");
    unsigned owner = flc_cluster_map_lookup(&cl->map, key, strlen(key));
    if (owner == FLC_CLUSTER_NO_NODE || owner >= cl->map.nnodes)
        return flc_err_set(&s->err, FLC_ENOTFOUND, "%s: no node serves shard %u of round %u "
                           "of job %s (slot %u)", s->url_text, shard, round, job,
                           (unsigned)flc_slot_of(key, strlen(key)));
    describe(&cl->map, owner, node);
    node->reachable = 1;
    return FLC_OK;
}
