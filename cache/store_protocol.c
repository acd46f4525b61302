/* The round protocol's small operations (store_ops.h): the merger's lock and
 * close (the merger's start, flc_store_round_begin, is in store_jobs.c), the per-round hashes with one field per shard (merge reports, Krum
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
    int rc = flc_store_shard_key(s, key, job, round, shard, "closed");
    if (rc != FLC_OK)
        return rc;
    const char *argv[] = {"EXISTS", key};
    redisReply *r;
    rc = flc_store_command(s, &r, 2, argv, NULL);
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
    int rc = flc_store_shard_key(s, key, job, round, shard, "merger");
    if (rc != FLC_OK)
        return rc;
    snprintf(pid, sizeof pid, "%d", (int)getpid()); /* who holds it, for people */
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)ttl_ms);
    const char *argv[] = {"SET", key, pid, "NX", "PX", ttl};
    redisReply *r;
    rc = flc_store_command(s, &r, 6, argv, NULL);
    if (rc != FLC_OK)
        return rc;
    *mine = r->type == REDIS_REPLY_STATUS; /* OK; nil when another holds it */
    freeReplyObject(r);
    return FLC_OK;
}

int flc_store_merger_unlock(flc_store_t *s, const char *job, uint32_t round, uint32_t shard)
{
    char key[FLC_KEY_MAX];
    int rc = flc_store_shard_key(s, key, job, round, shard, "merger");
    if (rc != FLC_OK)
        return rc;
    const char *argv[] = {"DEL", key};
    return flc_store_command(s, NULL, 2, argv, NULL);
}

/* Sets the closed flag (KEYS[1]) and drains the arrival lists KEYS[2..]:
 * returns, per list, how many tokens it held. One script, so no arrival
 * (store_put.c, ARRIVE_IF_OPEN) falls between the flag and the drain. */
static const char CLOSE_AND_DRAIN[] =
    "redis.call('SET', KEYS[1], '1') "
    "local out = {} "
    "for i = 2, #KEYS do "
    "  local n = redis.call('LLEN', KEYS[i]) "
    "  if n > 0 then redis.call('DEL', KEYS[i]) end "
    "  out[i - 1] = n "
    "end "
    "return out";

int flc_store_close_shard(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                          const char *const *clients, size_t n, unsigned *tokens)
{
    for (size_t i = 0; i < n; i++)
        tokens[i] = 0;
    char tag[FLC_TAG_MAX], k_closed[FLC_KEY_MAX], k_owner[FLC_KEY_MAX], nk[24];
    int rc = flc_store_shard_tag(s, job, shard, tag);
    if (rc != FLC_OK)
        return rc;
    flc_key_shard(k_closed, tag, round, "closed");
    flc_key_shard(k_owner, tag, round, "merger");
    snprintf(nk, sizeof nk, "%zu", n + 1);
    char (*keys)[FLC_KEY_MAX] = malloc((n ? n : 1) * sizeof *keys);
    const char **ev = malloc((n + 4) * sizeof *ev);
    if (keys == NULL || ev == NULL) {
        free(keys), free(ev);
        return flc_err_set(&s->err, FLC_ENOMEM, "closing shard %u of round %u of job %s: out "
                           "of memory for %zu clients", shard, round, job, n);
    }
    ev[0] = "EVAL", ev[1] = CLOSE_AND_DRAIN, ev[2] = nk, ev[3] = k_closed;
    for (size_t i = 0; i < n; i++) {
        flc_key_arrival(keys[i], tag, round, clients[i]);
        ev[4 + i] = keys[i];
    }
    /* Then the merger's ownership key goes, in the same round trip. */
    const char *del[] = {"DEL", k_owner};
    const char *const *cmds[] = {ev, del};
    const int argc[] = {(int)n + 4, 2};
    redisReply *rs[2];
    rc = flc_store_pipeline(s, 2, argc, cmds, rs);
    free(keys), free(ev);
    if (rc != FLC_OK)
        return rc;
    const redisReply *r = rs[0];
    if (r->type == REDIS_REPLY_ERROR)
        rc = flc_store_reply_error(s, r, "closing the shard");
    else if (r->type != REDIS_REPLY_ARRAY || r->elements != n)
        rc = flc_err_set(&s->err, FLC_EPROTO, "closing shard %u of round %u of job %s: the "
                         "close script answered %zu counts for %zu clients", shard, round, job,
                         r->type == REDIS_REPLY_ARRAY ? r->elements : 0, n);
    for (size_t i = 0; rc == FLC_OK && i < n; i++)
        tokens[i] = r->element[i]->type == REDIS_REPLY_INTEGER ? (unsigned)r->element[i]->integer
                                                               : 0;
    freeReplyObject(rs[0]);
    freeReplyObject(rs[1]);
    if (rc != FLC_OK)
        return flc_err_wrap(&s->err, "closing shard %u of round %u of job %s: ", shard, round,
                            job);
    return FLC_OK;
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
    int rc = flc_store_shard_key(s, key, job, round, shard, "gram");
    if (rc != FLC_OK)
        return rc;
    snprintf(what, sizeof what, "Gram partial of shard %u of round %u of job %s", shard, round,
             job);
    return blob_get(s, key, what, blob, len);
}

int flc_store_gram_put(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                       const void *blob, size_t len)
{
    char key[FLC_KEY_MAX];
    int rc = flc_store_shard_key(s, key, job, round, shard, "gram");
    return rc != FLC_OK ? rc : blob_put(s, key, blob, len);
}

int flc_store_opt_state_get(flc_store_t *s, const char *job, uint32_t shard, char **blob,
                            size_t *len)
{
    char key[FLC_KEY_MAX], what[160], tag[FLC_TAG_MAX];
    int rc = flc_store_shard_tag(s, job, shard, tag);
    if (rc != FLC_OK)
        return rc;
    flc_key_opt_state(key, tag);
    snprintf(what, sizeof what, "server state of shard %u of job %s", shard, job);
    return blob_get(s, key, what, blob, len);
}

int flc_store_opt_state_put(flc_store_t *s, const char *job, uint32_t shard, const void *blob,
                            size_t len)
{
    char key[FLC_KEY_MAX], tag[FLC_TAG_MAX];
    int rc = flc_store_shard_tag(s, job, shard, tag);
    if (rc != FLC_OK)
        return rc;
    flc_key_opt_state(key, tag);
    return blob_put(s, key, blob, len);
}
