/* The request tracker (see tracker.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/tracker.h"
#include "cache/store_ops.h"

int flc_track_put(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                  const char *tier)
{
    flc_store_node_t nd;
    int rc = flc_store_shard_node(s, job, round, shard, &nd);
    if (rc != FLC_OK)
        return rc;
    char val[700];
    snprintf(val, sizeof val, "%s|%s|%s|%s", flc_store_url(s), tier, nd.id, nd.addr);
    return flc_store_track_put(s, job, round, shard, val);
}

/* Reads one entry: "url|tier|id|addr", or "url|tier" as written before
 * node ids were recorded. The new form is told by its tier field (the
 * third '|' from the end opens it), since a URL may hold a '|'. */
static void parse_entry(const char *v, flc_track_where_t *w)
{
    const char *b[3] = {0}; /* the last three '|' of v, last first */
    int nb = 0;
    for (const char *p = v + strlen(v); p > v && nb < 3;)
        if (*--p == '|')
            b[nb++] = p;
    if (nb == 3) {
        size_t tl = (size_t)(b[1] - b[2] - 1);
        if ((tl == 3 && strncmp(b[2] + 1, "hot", 3) == 0) ||
            (tl == 4 && strncmp(b[2] + 1, "cold", 4) == 0)) {
            snprintf(w->node, sizeof w->node, "%.*s", (int)(b[2] - v), v);
            snprintf(w->tier, sizeof w->tier, "%.*s", (int)tl, b[2] + 1);
            snprintf(w->node_id, sizeof w->node_id, "%.*s", (int)(b[0] - b[1] - 1), b[1] + 1);
            snprintf(w->addr, sizeof w->addr, "%s", b[0] + 1);
            return;
        }
    }
    const char *bar = strrchr(v, '|');
    snprintf(w->node, sizeof w->node, "%.*s", bar ? (int)(bar - v) : (int)strlen(v), v);
    snprintf(w->tier, sizeof w->tier, "%s", bar ? bar + 1 : "hot");
    w->node_id[0] = '\0';
    snprintf(w->addr, sizeof w->addr, "%s", w->node);
}

static int by_shard(const void *a, const void *b)
{
    const flc_track_where_t *x = a, *y = b;
    return x->shard < y->shard ? -1 : x->shard > y->shard;
}

int flc_track_round(flc_store_t *s, const char *job, uint32_t round, flc_track_where_t **out,
                    size_t *n)
{
    *out = NULL;
    *n = 0;
    flc_store_fields_t f;
    int rc = flc_store_track_getall(s, job, round, &f);
    if (rc != FLC_OK)
        return rc;
    size_t m = f.n;
    flc_track_where_t *w = NULL;
    if (m > 0) {
        w = calloc(m, sizeof *w);
        for (size_t i = 0; w && i < m; i++) {
            w[i].shard = f.v[i].shard;
            parse_entry(f.v[i].value, &w[i]);
        }
    }
    flc_store_fields_free(&f);
    if (m > 0) {
        if (w == NULL)
            return FLC_ENOMEM;
        qsort(w, m, sizeof *w, by_shard);
        *out = w;
        *n = m;
        return FLC_OK;
    }
    /* Not tracked: every shard the round's index names, on this node. */
    uint32_t *shards = NULL;
    size_t ns = 0;
    rc = flc_store_list_shards(s, job, round, &shards, &ns);
    if (rc == FLC_OK && ns == 0)
        rc = FLC_ENOTFOUND;
    if (rc == FLC_OK) {
        w = calloc(ns, sizeof *w);
        for (size_t i = 0; w && i < ns; i++) {
            w[i].shard = shards[i];
            snprintf(w[i].node, sizeof w[i].node, "%s", flc_store_url(s));
            snprintf(w[i].tier, sizeof w[i].tier, "hot");
            flc_store_node_t nd;
            if (flc_store_shard_node(s, job, round, shards[i], &nd) == FLC_OK) {
                snprintf(w[i].node_id, sizeof w[i].node_id, "%s", nd.id);
                snprintf(w[i].addr, sizeof w[i].addr, "%s", nd.addr);
            } else {
                snprintf(w[i].addr, sizeof w[i].addr, "%s", w[i].node);
            }
        }
        rc = w ? FLC_OK : FLC_ENOMEM;
        *out = w;
        *n = w ? ns : 0;
    }
    free(shards);
    return rc;
}
