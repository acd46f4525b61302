/* Server statistics (flcache store stats): keys, memory and version of the
 * server, or summed over the masters of a cluster. */
#include "cache/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reads "name:value" from an INFO text. */
static uint64_t info_field(const char *info, const char *name, char *text, size_t textlen)
{
    size_t nl = strlen(name);
    for (const char *p = info; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            if (text) {
                size_t n = strcspn(v, "\r\n");
                snprintf(text, textlen, "%.*s", (int)n, v);
            }
            return strtoull(v, NULL, 10);
        }
    }
    return 0;
}

/* Adds DBSIZE (on a cluster: the sum over its masters, store_cluster_all.c)
 * to *st. */
static int stats_keys(flc_store_t *s, flc_store_stats_t *st)
{
    redisReply *r;
    int rc = flc_store_commandf(s, &r, "DBSIZE");
    if (rc != FLC_OK)
        return rc;
    st->keys += (uint64_t)r->integer;
    freeReplyObject(r);
    return FLC_OK;
}

/* Adds one server's memory to *st (the version of the first). */
static int stats_of_server(flc_store_t *s, flc_store_stats_t *st)
{
    redisReply *r;
    int rc = flc_store_commandf(s, &r, "INFO memory");
    if (rc != FLC_OK)
        return rc;
    st->used_memory += info_field(r->str, "used_memory", NULL, 0);
    st->maxmemory += info_field(r->str, "maxmemory", NULL, 0);
    freeReplyObject(r);
    rc = flc_store_commandf(s, &r, "INFO server");
    if (rc != FLC_OK)
        return rc;
    if (st->redis_version[0] == '\0')
        info_field(r->str, "redis_version", st->redis_version, sizeof st->redis_version);
    freeReplyObject(r);
    return FLC_OK;
}

int flc_store_stats(flc_store_t *s, flc_store_stats_t *st)
{
    flc_err_clear(&s->err);
    memset(st, 0, sizeof *st);
    int rc = stats_keys(s, st);
    if (rc != FLC_OK || !flc_store_is_cluster(s))
        return rc != FLC_OK ? rc : stats_of_server(s, st);
    /* A cluster: the sums over its masters (replicas hold copies). */
    unsigned m[64];
    size_t n = 0;
    rc = flc_store_ensure(s);
    if (rc == FLC_OK)
        rc = flc_store_cl_masters(s, m, 64, &n);
    for (size_t i = 0; rc == FLC_OK && i < n; i++)
        if ((rc = flc_store_cl_use_node(s, m[i])) == FLC_OK)
            rc = stats_of_server(s, st);
    return rc;
}
