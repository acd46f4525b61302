/* The request tracker (see tracker.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/tracker.h"
#include "cache/store_ops.h"

int flc_track_put(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                  const char *tier)
{
    char val[340];
    snprintf(val, sizeof val, "%s|%s", flc_store_url(s), tier);
    return flc_store_track_put(s, job, round, shard, val);
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
            const char *v = f.v[i].value;
            const char *bar = strrchr(v, '|');
            w[i].shard = f.v[i].shard;
            snprintf(w[i].node, sizeof w[i].node, "%.*s", bar ? (int)(bar - v) : (int)strlen(v),
                     v);
            snprintf(w[i].tier, sizeof w[i].tier, "%s", bar ? bar + 1 : "hot");
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
        }
        rc = w ? FLC_OK : FLC_ENOMEM;
        *out = w;
        *n = w ? ns : 0;
    }
    free(shards);
    return rc;
}
