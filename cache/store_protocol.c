/* The round protocol's small operations (store_ops.h): the merger's lock and
 * close, the per-round hashes with one field per shard (merge reports, Krum
 * partials, the request tracker) and the small values kept next to a shard
 * (Gram partial, server-optimizer state). Each is one or two commands; the
 * close is one pipelined round trip, as it was in the merger. The value
 * layouts belong to their writers in aggregator/: here they are bytes. */
#include "cache/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache/keys.h"

void flc_store_fields_free(flc_store_fields_t *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->n; i++)
        free(f->v[i].value);
    free(f->v);
    f->v = NULL;
    f->n = 0;
}

/* A copy of len bytes, NUL-terminated; NULL when out of memory. */
static char *copy_bytes(const char *p, size_t len)
{
    char *c = malloc(len + 1);
    if (c != NULL) {
        memcpy(c, p, len);
        c[len] = '\0';
    }
    return c;
}

/* Turns an HGETALL reply (field = shard index) into *out. A reply that is
 * not an array (no such key) gives an empty set. */
static int fields_of(flc_store_t *s, const redisReply *r, flc_store_fields_t *out)
{
    out->v = NULL;
    out->n = 0;
    size_t m = r->type == REDIS_REPLY_ARRAY ? r->elements / 2 : 0;
    if (m == 0)
        return FLC_OK;
    out->v = calloc(m, sizeof *out->v);
    if (out->v == NULL)
        return flc_err_set(&s->err, FLC_ENOMEM, "out of memory for %zu hash fields", m);
    for (size_t i = 0; i < m; i++) {
        const redisReply *f = r->element[2 * i], *v = r->element[2 * i + 1];
        flc_store_field_t *o = &out->v[out->n];
        o->shard = f->str ? (uint32_t)strtoul(f->str, NULL, 10) : 0;
        o->len = v->str ? (size_t)v->len : 0;
        o->value = copy_bytes(v->str ? v->str : "", o->len);
        if (o->value == NULL) {
            flc_store_fields_free(out);
            return flc_err_set(&s->err, FLC_ENOMEM, "out of memory for hash field of %zu bytes",
                               (size_t)v->len);
        }
        out->n++;
    }
    return FLC_OK;
}

/* HSET key <shard> blob (binary-safe). */
static int hash_put(flc_store_t *s, const char *key, uint32_t shard, const void *blob,
                    size_t len)
{
    char field[16];
    snprintf(field, sizeof field, "%u", shard);
    const char *argv[] = {"HSET", key, field, blob};
    size_t lens[] = {4, strlen(key), strlen(field), len};
    return flc_store_command(s, NULL, 4, argv, lens);
}

/* HGETALL key into *out. */
static int hash_getall(flc_store_t *s, const char *key, flc_store_fields_t *out)
{
    out->v = NULL;
    out->n = 0;
    const char *argv[] = {"HGETALL", key};
    redisReply *r;
    int rc = flc_store_command(s, &r, 2, argv, NULL);
    if (rc != FLC_OK)
        return rc;
    rc = fields_of(s, r, out);
    freeReplyObject(r);
    return rc;
}

/* GET key into a new buffer; FLC_ENOTFOUND (naming what) when there is none. */
static int blob_get(flc_store_t *s, const char *key, const char *what, char **blob,
                    size_t *len)
{
    *blob = NULL;
    *len = 0;
    const char *argv[] = {"GET", key};
    redisReply *r;
    int rc = flc_store_command(s, &r, 2, argv, NULL);
    if (rc != FLC_OK)
        return rc;
    if (r->type != REDIS_REPLY_STRING)
        rc = flc_err_set(&s->err, FLC_ENOTFOUND, "%s: not in the cache (key %s)", what, key);
    else if ((*blob = copy_bytes(r->str, (size_t)r->len)) == NULL)
        rc = flc_err_set(&s->err, FLC_ENOMEM, "%s: out of memory for %zu bytes", what,
                         (size_t)r->len);
    else
        *len = (size_t)r->len;
    freeReplyObject(r);
    return rc;
}

/* SET key blob (binary-safe). */
static int blob_put(flc_store_t *s, const char *key, const void *blob, size_t len)
{
    const char *argv[] = {"SET", key, blob};
    size_t lens[] = {3, strlen(key), len};
    return flc_store_command(s, NULL, 3, argv, lens);
}

/* ---- the merger of one shard -------------------------------------------- */

int flc_store_shard_closed(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                           int *closed)
{
    *closed = 0;
    char key[FLC_KEY_MAX];
    flc_key_shard(key, job, round, shard, "closed");
    const char *argv[] = {"EXISTS", key};
    redisReply *r;
    int rc = flc_store_command(s, &r, 2, argv, NULL);
    if (rc != FLC_OK)
        return rc;
    *closed = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return FLC_OK;
}

int flc_store_merger_lock(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                          uint64_t ttl_ms, int *mine)
{
    *mine = 0;
    char key[FLC_KEY_MAX], pid[24], ttl[24];
    flc_key_shard(key, job, round, shard, "merger");
    snprintf(pid, sizeof pid, "%d", (int)getpid()); /* who holds it, for people */
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)ttl_ms);
    const char *argv[] = {"SET", key, pid, "NX", "PX", ttl};
    redisReply *r;
    int rc = flc_store_command(s, &r, 6, argv, NULL);
    if (rc != FLC_OK)
        return rc;
    *mine = r->type == REDIS_REPLY_STATUS; /* OK; nil when another holds it */
    freeReplyObject(r);
    return FLC_OK;
}

int flc_store_merger_unlock(flc_store_t *s, const char *job, uint32_t round, uint32_t shard)
{
    char key[FLC_KEY_MAX];
    flc_key_shard(key, job, round, shard, "merger");
    const char *argv[] = {"DEL", key};
    return flc_store_command(s, NULL, 2, argv, NULL);
}

int flc_store_close_shard(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                          flc_strlist_t *left)
{
    left->items = NULL;
    left->n = 0;
    char k_closed[FLC_KEY_MAX], k_arr[FLC_KEY_MAX], k_owner[FLC_KEY_MAX];
    flc_key_shard(k_closed, job, round, shard, "closed");
    flc_key_shard(k_arr, job, round, shard, "arrivals");
    flc_key_shard(k_owner, job, round, shard, "merger");
    /* One pipelined round trip: MULTI, SET, LRANGE, DEL, EXEC; then the
     * merger's ownership key goes (the closed flag guards the shard now).
     * The arrival script (store_put.c, ARRIVE_IF_OPEN) checks :closed in the
     * same atomic step as its push, so no arrival falls between the two. */
    const char *c1[] = {"MULTI"}, *c2[] = {"SET", k_closed, "1"};
    const char *c3[] = {"LRANGE", k_arr, "0", "-1"}, *c4[] = {"DEL", k_arr}, *c5[] = {"EXEC"};
    const char *c6[] = {"DEL", k_owner};
    const char *const *cmds[] = {c1, c2, c3, c4, c5, c6};
    const int argc[] = {1, 3, 4, 2, 1, 2};
    redisReply *rs[6];
    int rc = flc_store_pipeline(s, 6, argc, cmds, rs);
    if (rc != FLC_OK)
        return rc;
    const redisReply *r = rs[4]; /* EXEC: [OK, the arrivals, count deleted] */
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
        r->element[1]->type == REDIS_REPLY_ARRAY) {
        const redisReply *l = r->element[1];
        for (size_t i = 0; rc == FLC_OK && i < l->elements; i++)
            if (flc_strlist_add(left, l->element[i]->str, (size_t)l->element[i]->len) != FLC_OK)
                rc = flc_err_set(&s->err, FLC_ENOMEM, "closing shard %u of round %u of job %s: "
                                 "out of memory for %zu arrivals", shard, round, job,
                                 l->elements);
    }
    for (int i = 0; i < 6; i++)
        freeReplyObject(rs[i]);
    if (rc != FLC_OK)
        flc_strlist_free(left);
    return rc;
}

/* ---- per-round records ---------------------------------------------------- */

int flc_store_merge_report_put(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                               const char *report, flc_store_fields_t *all)
{
    char key[FLC_KEY_MAX];
    flc_key_job_round(key, job, "merges", round);
    if (all == NULL)
        return hash_put(s, key, shard, report, strlen(report));
    all->v = NULL;
    all->n = 0;
    /* HSET then HGETALL in one round trip: the same answers as one after
     * the other on this connection, one wait fewer per merge. */
    char field[16];
    snprintf(field, sizeof field, "%u", shard);
    const char *c1[] = {"HSET", key, field, report}, *c2[] = {"HGETALL", key};
    const char *const *cmds[] = {c1, c2};
    const int argc[] = {4, 2};
    redisReply *rs[2];
    int rc = flc_store_pipeline(s, 2, argc, cmds, rs);
    if (rc != FLC_OK)
        return rc;
    if (rs[0]->type == REDIS_REPLY_ERROR)
        rc = flc_store_reply_error(s, rs[0], "HSET");
    else if (rs[1]->type == REDIS_REPLY_ERROR)
        rc = flc_store_reply_error(s, rs[1], "HGETALL");
    else
        rc = fields_of(s, rs[1], all);
    freeReplyObject(rs[0]);
    freeReplyObject(rs[1]);
    return rc;
}

int flc_store_krum_partial_put(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                               const void *blob, size_t len)
{
    char key[FLC_KEY_MAX];
    flc_key_job_round(key, job, "krum", round);
    return hash_put(s, key, shard, blob, len);
}

int flc_store_krum_partial_getall(flc_store_t *s, const char *job, uint32_t round,
                                  flc_store_fields_t *out)
{
    char key[FLC_KEY_MAX];
    flc_key_job_round(key, job, "krum", round);
    return hash_getall(s, key, out);
}

int flc_store_track_put(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                        const char *where)
{
    char key[FLC_KEY_MAX];
    flc_key_job_round(key, job, "where", round);
    return hash_put(s, key, shard, where, strlen(where));
}

int flc_store_track_getall(flc_store_t *s, const char *job, uint32_t round,
                           flc_store_fields_t *out)
{
    char key[FLC_KEY_MAX];
    flc_key_job_round(key, job, "where", round);
    return hash_getall(s, key, out);
}

/* ---- small values next to a shard ----------------------------------------- */

int flc_store_gram_get(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                       char **blob, size_t *len)
{
    char key[FLC_KEY_MAX], what[160];
    flc_key_shard(key, job, round, shard, "gram");
    snprintf(what, sizeof what, "Gram partial of shard %u of round %u of job %s", shard, round,
             job);
    return blob_get(s, key, what, blob, len);
}

int flc_store_gram_put(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                       const void *blob, size_t len)
{
    char key[FLC_KEY_MAX];
    flc_key_shard(key, job, round, shard, "gram");
    return blob_put(s, key, blob, len);
}

int flc_store_opt_state_get(flc_store_t *s, const char *job, uint32_t shard, char **blob,
                            size_t *len)
{
    char key[FLC_KEY_MAX], what[160];
    flc_key_opt_state(key, job, shard);
    snprintf(what, sizeof what, "server state of shard %u of job %s", shard, job);
    return blob_get(s, key, what, blob, len);
}

int flc_store_opt_state_put(flc_store_t *s, const char *job, uint32_t shard, const void *blob,
                            size_t len)
{
    char key[FLC_KEY_MAX];
    flc_key_opt_state(key, job, shard);
    return blob_put(s, key, blob, len);
}
