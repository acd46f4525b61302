/* Where the query engine's shard workers run (issue 12, point 4): a round's
 * shards grouped by the cache node that owns them, so a worker placed next
 * to a node (its network namespace on the testbed, talking to the node over
 * its unix socket) reads that node's updates without crossing a network
 * link, and only the (N+1)x(N+1) Gram partials travel. Grouping is what
 * lets one thread serve several shards of a node from one connection, and
 * enter a node once rather than once per shard.
 *
 * The groups are handed out under the planner's lock (query_gram.c): a
 * worker keeps to its group while it has shards, then helps the group with
 * the fewest workers, so every node gets a worker before any gets two. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/query_internal.h"
#include "base/clock.h"
#include "base/log.h"
#include "cache/store_ops.h"

void flc_query_plan_free(flc_query_plan_t *p)
{
    if (p == NULL)
        return;
    free(p->addr);
    free(p->order);
    free(p->start);
    free(p->next);
    free(p->workers);
    memset(p, 0, sizeof *p);
}

int flc_query_plan_make(flc_store_t *s, const char *job, uint32_t round,
                        const flc_track_where_t *where, size_t ns, int placed,
                        flc_query_plan_t *p, flc_err_t *e)
{
    memset(p, 0, sizeof *p);
    char(*node)[300] = calloc(ns ? ns : 1, sizeof *node); /* per shard: its node, or "" */
    p->addr = calloc(ns ? ns : 1, sizeof *p->addr);
    p->order = calloc(ns ? ns : 1, sizeof *p->order);
    p->start = calloc(ns + 1, sizeof *p->start);
    p->next = calloc(ns ? ns : 1, sizeof *p->next);
    p->workers = calloc(ns ? ns : 1, sizeof *p->workers);
    if (!node || !p->addr || !p->order || !p->start || !p->next || !p->workers) {
        free(node);
        flc_query_plan_free(p);
        return flc_err_set(e, FLC_ENOMEM, "out of memory planning %zu shard workers", ns);
    }
    /* All or nothing: a shard without a cluster node means one server (or a
     * slot nobody serves, which the worker's read will report). The nodes
     * are counted placed or not: the default number of workers is one per
     * node serving the round (query_gram.c). */
    for (size_t i = 0; i < ns; i++) {
        flc_store_node_t nd;
        if (flc_store_shard_node(s, job, round, where[i].shard, &nd) != FLC_OK ||
            nd.id[0] == '\0' || nd.addr[0] == '\0')
            placed = 0;
        else
            snprintf(node[i], sizeof node[i], "%s", nd.addr);
    }
    p->nodes = 1;
    for (size_t i = 1; i < ns; i++) {
        size_t k = 0;
        while (k < i && strcmp(node[k], node[i]) != 0)
            k++;
        p->nodes += k == i && node[i][0] != '\0';
    }
    if (!placed)
        for (size_t i = 0; i < ns; i++)
            node[i][0] = '\0';
    /* Groups in order of first appearance; shards keep tracker order inside. */
    size_t len = 0;
    for (size_t i = 0; i < ns; i++) {
        int seen = 0;
        for (size_t g = 0; g < p->ngroups && !seen; g++)
            seen = strcmp(p->addr[g], node[i]) == 0;
        if (seen)
            continue;
        size_t g = p->ngroups++;
        snprintf(p->addr[g], sizeof p->addr[g], "%s", node[i]);
        p->start[g] = len;
        for (size_t k = i; k < ns; k++)
            if (strcmp(node[k], node[i]) == 0)
                p->order[len++] = k;
    }
    p->start[p->ngroups] = len;
    for (size_t g = 0; g < p->ngroups; g++)
        p->next[g] = p->start[g];
    free(node);
    return FLC_OK;
}

long flc_query_plan_take(flc_query_plan_t *p, long *grp)
{
    long g = *grp;
    if (g < 0 || p->next[g] >= p->start[g + 1]) {
        long best = -1;
        for (size_t c = 0; c < p->ngroups; c++) {
            if (p->next[c] >= p->start[c + 1])
                continue;
            size_t left = p->start[c + 1] - p->next[c];
            if (best < 0 || p->workers[c] < p->workers[best] ||
                (p->workers[c] == p->workers[best] &&
                 left > p->start[best + 1] - p->next[best]))
                best = (long)c;
        }
        if (g >= 0)
            p->workers[g]--;
        *grp = g = best;
        if (g < 0)
            return -1;
        p->workers[g]++;
    }
    return (long)p->order[p->next[g]++];
}

int flc_query_node_url(const flc_url_t *caller, const char *addr, char *out, size_t cap,
                       flc_err_t *e)
{
    flc_url_t u = *caller;
    const char *colon = strrchr(addr, ':');
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : 0;
    const char *h = addr;
    size_t hl = colon ? (size_t)(colon - addr) : 0;
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') /* [v6]:port */
        h++, hl -= 2;
    if (colon == NULL || end == colon + 1 || *end != '\0' || port <= 0 || port > 65535 ||
        hl == 0 || hl >= sizeof u.host)
        return flc_err_set(e, FLC_EINVAL, "node address '%.200s' is not host:port", addr);
    u.kind = FLC_URL_TCP;
    memcpy(u.host, h, hl);
    u.host[hl] = '\0';
    u.port = (int)port;
    u.path[0] = '\0';
    if (flc_url_format(&u, out, cap) != FLC_OK)
        return flc_err_set(e, FLC_EINVAL, "the URL of node %.200s is too long", addr);
    return FLC_OK;
}

static flc_store_t *worker_open(const char *url, const flc_store_opts_t *opts, int qclass,
                                flc_err_t *e)
{
    flc_store_t *s = flc_store_open(url, opts, e);
    if (s != NULL && qclass >= 0)
        flc_store_set_query_class(s, qclass);
    return s;
}

int flc_query_worker_store(const flc_place_t *place, const flc_query_plan_t *plan, long grp,
                           long prev, const flc_url_t *caller_ep, const char *url,
                           const flc_store_opts_t *url_opts, flc_store_opts_t *opts,
                           int qclass, flc_store_t **s, flc_err_t *e)
{
    const char *near = plan->addr[grp]; /* from the slot map, never the tracker */
    if (near[0] == '\0') { /* unplaced: the caller's own URL, opened once */
        if (*s == NULL && (*s = worker_open(url, url_opts, qclass, e)) == NULL)
            return e->code;
        return FLC_OK;
    }
    if (grp == prev)
        return FLC_OK; /* still next to that node */
    flc_store_close(*s);
    *s = NULL;
    flc_url_t node_ep = *caller_ep;
    node_ep.cluster = FLC_URL_CLUSTER_YES;
    char node_url[1200];
    uint64_t t0 = flc_now_ns();
    int rc = place->enter(place->user, near, opts, e);
    uint64_t t1 = flc_now_ns();
    if (rc == FLC_OK)
        rc = flc_query_node_url(&node_ep, near, node_url, sizeof node_url, e);
    if (rc == FLC_OK && (*s = worker_open(node_url, opts, qclass, e)) == NULL)
        rc = e->code;
    if (rc == FLC_OK)
        FLC_DEBUG("query: worker next to %s: entered in %.2f ms, connected in %.2f ms", near,
                  (double)(t1 - t0) / 1e6, (double)(flc_now_ns() - t1) / 1e6);
    return rc;
}
