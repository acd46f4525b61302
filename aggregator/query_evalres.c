/* The cached evaluated numbers of a round (query_evalres.h): the digest of
 * what they were computed from, and their layout:
 *   "FLR2" | u32 n | u64 digest | u32 what | u32 pers_k | u32 pers_shards
 *   | u64 pers_stamp | f64 global_acc, fedavg_acc, agg_acc, pers_acc
 *   | f64 w[n], acc[n], loss[n], loo[n], fs[n], dis[n]
 *   | the n names, each NUL-terminated | the left_out note, NUL-terminated
 * Doubles are copied as computed (the warm answer is the cold one bit for
 * bit); the value is a few hundred bytes a client. */
#include "aggregator/query_evalres.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/query_evalcache.h"
#include "aggregator/query_internal.h"
#include "cache/store_ops.h"

#define MAGIC "FLR2"
#define HEAD 68 /* magic, n, digest, what, pers_k, pers_shards, pers_stamp, 4 doubles */
#define DOUBLES 36 /* where the 4 doubles start */
#define PER 6   /* doubles per client */

int flc_query_evnum_digest(flc_store_t *s, const char *job, uint32_t round, uint64_t set_stamp,
                           size_t B, uint64_t *digest)
{
    *digest = 0;
    char gj[FLC_NAME_MAX + 1];
    snprintf(gj, sizeof gj, "%s/g", job);
    uint64_t h = 1469598103934665603ull, st = 0;
    h = flc_query_evcache_mix(flc_query_evcache_mix(h, set_stamp), B);
    h = flc_query_evcache_mix(h, round);
    if (round == 0 || flc_store_merged_stamp(s, gj, round - 1, 0, &st) != FLC_OK || st == 0)
        return FLC_ENOTFOUND;
    h = flc_query_evcache_mix(h, st);
    flc_strlist_t cl = {0};
    uint32_t *shards = NULL;
    size_t ns = 0;
    int rc = flc_store_list_clients(s, job, round, &cl);
    if (rc == FLC_OK && cl.n > 0)
        rc = flc_store_list_shards(s, job, round, &shards, &ns);
    if (rc != FLC_OK || cl.n == 0 || ns == 0) {
        flc_strlist_free(&cl);
        free(shards);
        return FLC_ENOTFOUND;
    }
    qsort(cl.items, cl.n, sizeof *cl.items, flc_query_by_name);
    h = flc_query_evcache_mix(h, flc_query_evcache_names(cl.items, cl.n));
    uint64_t *stamps = malloc((cl.n + 1) * sizeof *stamps);
    rc = stamps ? FLC_OK : FLC_ENOMEM;
    /* Two round trips a shard; the same stamps the cached products check. */
    for (size_t k = 0; rc == FLC_OK && k < ns; k++) {
        rc = flc_store_update_stamps(s, job, round, shards[k], cl.items, cl.n, stamps);
        if (rc == FLC_OK)
            rc = flc_store_merged_stamp(s, job, round, shards[k], &stamps[cl.n]);
        h = flc_query_evcache_mix(h, shards[k]);
        for (size_t i = 0; rc == FLC_OK && i <= cl.n; i++)
            h = flc_query_evcache_mix(h, stamps[i]);
    }
    free(stamps);
    free(shards);
    flc_strlist_free(&cl);
    if (rc != FLC_OK)
        return FLC_ENOTFOUND;
    *digest = h ? h : 1;
    return FLC_OK;
}

int flc_query_pers_series(char *out, const char *job)
{
    return snprintf(out, FLC_NAME_MAX + 1, "%s/" FLC_SERIES_PERS, job) > FLC_NAME_MAX
               ? FLC_EINVAL
               : FLC_OK;
}

uint64_t flc_query_evpers_stamp(flc_store_t *s, const char *job, uint32_t round,
                                uint32_t shards)
{
    char pj[FLC_NAME_MAX + 1];
    if (flc_query_pers_series(pj, job) != FLC_OK || shards == 0)
        return 0;
    uint64_t h = flc_query_evcache_mix(flc_query_evcache_mix(1469598103934665603ull, round),
                                       shards);
    for (uint32_t k = 0; k < shards; k++) {
        uint64_t st = 0;
        if (flc_store_merged_stamp(s, pj, round, k, &st) != FLC_OK || st == 0)
            return 0;
        h = flc_query_evcache_mix(h, st);
    }
    return h ? h : 1;
}

int flc_query_evnum_init(flc_query_evnum_t *v, size_t n)
{
    memset(v, 0, sizeof *v);
    v->n = n;
    v->clients = calloc(n ? n : 1, sizeof *v->clients);
    v->w = malloc((PER * n + 1) * sizeof *v->w);
    if (v->clients == NULL || v->w == NULL) {
        flc_query_evnum_free(v);
        return FLC_ENOMEM;
    }
    for (size_t i = 0; i < PER * n; i++)
        v->w[i] = NAN;
    v->acc = v->w + n, v->loss = v->w + 2 * n, v->loo = v->w + 3 * n;
    v->fs = v->w + 4 * n, v->dis = v->w + 5 * n;
    v->global_acc = v->fedavg_acc = v->agg_acc = v->pers_acc = NAN;
    return FLC_OK;
}

void flc_query_evnum_free(flc_query_evnum_t *v)
{
    for (size_t i = 0; v->clients && i < v->n; i++)
        free(v->clients[i]);
    free(v->clients);
    free(v->w);
    free(v->left_out);
    memset(v, 0, sizeof *v);
}

static void put32(char **p, uint32_t x)
{
    memcpy(*p, &x, 4);
    *p += 4;
}

static void put64(char **p, const void *x)
{
    memcpy(*p, x, 8);
    *p += 8;
}

void flc_query_evnum_put(flc_store_t *s, const char *job, uint32_t round, uint64_t digest,
                         const flc_query_evnum_t *v)
{
    const char *note = v->left_out ? v->left_out : "";
    size_t len = HEAD + PER * 8 * v->n + strlen(note) + 1;
    for (size_t i = 0; i < v->n; i++)
        len += strlen(v->clients[i]) + 1;
    char *buf = malloc(len), *p = buf;
    if (buf == NULL)
        return;
    memcpy(p, MAGIC, 4);
    p += 4;
    put32(&p, (uint32_t)v->n);
    put64(&p, &digest);
    put32(&p, v->what);
    put32(&p, v->pers_k);
    put32(&p, v->pers_shards);
    put64(&p, &v->pers_stamp);
    const double head[4] = {v->global_acc, v->fedavg_acc, v->agg_acc, v->pers_acc};
    for (int k = 0; k < 4; k++)
        put64(&p, &head[k]);
    memcpy(p, v->w, PER * 8 * v->n);
    p += PER * 8 * v->n;
    for (size_t i = 0; i < v->n; i++) {
        size_t l = strlen(v->clients[i]) + 1;
        memcpy(p, v->clients[i], l);
        p += l;
    }
    memcpy(p, note, strlen(note) + 1);
    flc_store_evres_put(s, job, round, buf, len); /* refused: computed again next time */
    free(buf);
}

int flc_query_evnum_get(flc_store_t *s, const char *job, uint32_t round, uint64_t digest,
                        flc_query_evnum_t *v, uint64_t *bytes)
{
    memset(v, 0, sizeof *v);
    char *blob = NULL;
    size_t len = 0;
    if (flc_store_evres_get(s, job, round, &blob, &len) != FLC_OK)
        return FLC_ENOTFOUND;
    uint32_t n = 0, what = 0, pk = 0, ps = 0;
    uint64_t d = 0, pst = 0;
    if (len >= HEAD) {
        memcpy(&n, blob + 4, 4);
        memcpy(&d, blob + 8, 8);
        memcpy(&what, blob + 16, 4);
        memcpy(&pk, blob + 20, 4);
        memcpy(&ps, blob + 24, 4);
        memcpy(&pst, blob + 28, 8);
    }
    int rc = len >= HEAD && memcmp(blob, MAGIC, 4) == 0 && d == digest && n > 0 &&
                     (len - HEAD) / (PER * 8) >= n
                 ? flc_query_evnum_init(v, n)
                 : FLC_ENOTFOUND;
    const char *p = blob, *end = blob + len;
    if (rc == FLC_OK) {
        p = blob + HEAD + (size_t)PER * 8 * n;
        double head[4];
        memcpy(head, blob + DOUBLES, sizeof head);
        v->global_acc = head[0], v->fedavg_acc = head[1], v->agg_acc = head[2];
        v->pers_acc = head[3];
        v->what = what, v->pers_k = pk;
        v->pers_shards = ps, v->pers_stamp = pst;
        v->digest = digest;
        memcpy(v->w, blob + HEAD, (size_t)PER * 8 * n);
    }
    /* names and the note: each must end inside the value */
    for (size_t i = 0; rc == FLC_OK && i <= n; i++) {
        const char *z = memchr(p, '\0', (size_t)(end - p));
        if (z == NULL || (i < n && z == p)) {
            rc = FLC_ENOTFOUND;
            break;
        }
        char *copy = strdup(p);
        if (copy == NULL)
            rc = FLC_ENOTFOUND;
        else if (i < n)
            v->clients[i] = copy;
        else
            v->left_out = copy;
        p = z + 1;
    }
    free(blob);
    if (rc != FLC_OK) {
        flc_query_evnum_free(v);
        return FLC_ENOTFOUND;
    }
    *bytes = len;
    return FLC_OK;
}
