/* The round protocol's small operations (store_ops.h): writes that expire
 * with the store's ttl, whole-value GET/SET, the per-shard records of a
 * round (merge reports, Krum partials, the request tracker: one key per
 * shard, fl:{J/j}:s<s>:<what>:<r>) and the small values kept next to a
 * shard (Gram partial, server-optimizer state). Each is one or two
 * commands. The value layouts belong to their writers in aggregator/: here
 * they are bytes. The merger's lock and close are store_merger_lock.c's;
 * its start, flc_store_round_begin, is in store_jobs.c. */
#include "cache/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/keys.h"

int flc_store_run_expiring(flc_store_t *s, int argc, const char **argv, const char *key,
                           redisReply **out, const char *what)
{
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)s->opts.ttl_ms);
    const char *ex[] = {"PEXPIRE", key, ttl};
    const char *const *cmds[] = {argv, ex};
    const int ac[] = {argc, 3};
    size_t n = s->opts.ttl_ms ? 2 : 1;
    redisReply *rs[2] = {NULL, NULL};
    int rc = flc_store_pipeline(s, n, ac, cmds, rs);
    for (size_t i = 0; rc == FLC_OK && i < n; i++)
        if (rs[i]->type == REDIS_REPLY_ERROR)
            rc = flc_store_reply_error(s, rs[i], i ? "PEXPIRE" : what);
    if (out != NULL && rc == FLC_OK) {
        *out = rs[0];
        rs[0] = NULL;
    }
    for (size_t i = 0; i < n; i++)
        if (rs[i])
            freeReplyObject(rs[i]);
    return rc;
}

int flc_store_expire_written(flc_store_t *s, size_t n, const char *const *keys)
{
    if (s->opts.ttl_ms == 0 || n == 0)
        return FLC_OK;
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)s->opts.ttl_ms);
    const char *(*argv)[3] = malloc(n * sizeof *argv);
    const char *const **cmds = malloc(n * sizeof *cmds);
    int *argc = malloc(n * sizeof *argc);
    redisReply **rs = calloc(n, sizeof *rs);
    int rc = argv && cmds && argc && rs
                 ? FLC_OK
                 : flc_err_set(&s->err, FLC_ENOMEM, "out of memory for %zu expiries", n);
    for (size_t i = 0; rc == FLC_OK && i < n; i++) {
        argv[i][0] = "PEXPIRE", argv[i][1] = keys[i], argv[i][2] = ttl;
        cmds[i] = argv[i], argc[i] = 3;
    }
    if (rc == FLC_OK)
        rc = flc_store_pipeline(s, n, argc, cmds, rs);
    for (size_t i = 0; rc == FLC_OK && i < n; i++)
        if (rs[i]->type == REDIS_REPLY_ERROR)
            rc = flc_store_reply_error(s, rs[i], "PEXPIRE");
    for (size_t i = 0; rs && i < n; i++)
        if (rs[i])
            freeReplyObject(rs[i]);
    free(argv), free(cmds), free(argc), free(rs);
    return rc;
}

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

int flc_store_blob_get(flc_store_t *s, const char *key, const char *what, char **blob,
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

int flc_store_blob_set(flc_store_t *s, const char *key, const void *blob, size_t len)
{
    char ttl[24]; /* SET ... PX: the value and its expiry in one command */
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)s->opts.ttl_ms);
    const char *argv[] = {"SET", key, blob, "PX", ttl};
    size_t lens[] = {3, strlen(key), len, 2, strlen(ttl)};
    return flc_store_command(s, NULL, s->opts.ttl_ms ? 5 : 3, argv, lens);
}

/* flc_store_blob_set, its error naming the key. */
static int blob_put(flc_store_t *s, const char *key, const void *blob, size_t len)
{
    int rc = flc_store_blob_set(s, key, blob, len);
    return rc == FLC_OK ? rc : flc_err_wrap(&s->err, "writing %s: ", key);
}

/* ---- per-round records ---------------------------------------------------- */

/* Shard s's record `what` of a round is its own key fl:{J/j}:s<s>:<what>:<r>
 * (keys.h says why); reading them all is one pipelined GET per shard of the
 * job (its S from the schema record), all on the job's tag. */
static int rec_put(flc_store_t *s, const char *job, const char *what, uint32_t round,
                   uint32_t shard, const void *blob, size_t len)
{
    char key[FLC_KEY_MAX];
    flc_key_job_shard(key, job, shard, what, round);
    char ttl[24]; /* SET ... PX: the value and its expiry in one command */
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)s->opts.ttl_ms);
    const char *argv[] = {"SET", key, blob, "PX", ttl};
    size_t lens[] = {3, strlen(key), len, 2, strlen(ttl)};
    int rc = flc_store_command(s, NULL, s->opts.ttl_ms ? 5 : 3, argv, lens);
    return rc == FLC_OK ? rc : flc_err_wrap(&s->err, "writing %s: ", key);
}

/* GETs every shard's record into *out (the shards that have one); with put
 * (this shard's text record) the SET goes first in the same round trip. */
static int rec_getall(flc_store_t *s, const char *job, const char *what, uint32_t round,
                      uint32_t put_shard, const char *put, flc_store_fields_t *out)
{
    out->v = NULL;
    out->n = 0;
    uint32_t S = 0;
    if (flc_store_job_S(s, job, &S) != FLC_OK) {
        if (s->err.code != FLC_ENOTFOUND)
            return s->err.code;
        flc_err_clear(&s->err);
        S = 0; /* no schema record: nothing was merged, no records */
    }
    if (put != NULL && put_shard >= S)
        S = put_shard + 1;
    size_t n = S + (put != NULL);
    char (*keys)[FLC_KEY_MAX] = malloc((n ? n : 1) * sizeof *keys);
    const char *(*argv)[3] = malloc((n ? n : 1) * sizeof *argv);
    const char *const **cmds = malloc((n ? n : 1) * sizeof *cmds);
    int *argc = malloc((n ? n : 1) * sizeof *argc);
    redisReply **rs = calloc(n ? n : 1, sizeof *rs);
    out->v = calloc(S ? S : 1, sizeof *out->v);
    int rc = keys && argv && cmds && argc && rs && out->v
                 ? FLC_OK
                 : flc_err_set(&s->err, FLC_ENOMEM, "out of memory for %u shard records", S);
    size_t i = 0;
    char ttl[24]; /* SET ... PX: the value and its expiry in one command */
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)s->opts.ttl_ms);
    const char *setpx[5];
    if (rc == FLC_OK && put != NULL) {
        flc_key_job_shard(keys[i], job, put_shard, what, round);
        setpx[0] = "SET", setpx[1] = keys[i], setpx[2] = put, setpx[3] = "PX", setpx[4] = ttl;
        cmds[i] = setpx, argc[i] = s->opts.ttl_ms ? 5 : 3, i++;
    }
    for (uint32_t k = 0; rc == FLC_OK && k < S; k++, i++) {
        flc_key_job_shard(keys[i], job, k, what, round);
        argv[i][0] = "GET", argv[i][1] = keys[i];
        cmds[i] = argv[i], argc[i] = 2;
    }
    if (rc == FLC_OK && n > 0)
        rc = flc_store_pipeline(s, n, argc, cmds, rs);
    size_t first = put != NULL;
    if (rc == FLC_OK && put != NULL && rs[0]->type == REDIS_REPLY_ERROR)
        rc = flc_store_reply_error(s, rs[0], "SET");
    for (size_t j = first; rc == FLC_OK && j < n; j++) {
        const redisReply *r = rs[j];
        if (r->type == REDIS_REPLY_ERROR) {
            rc = flc_store_reply_error(s, r, "GET");
            break;
        }
        if (r->type != REDIS_REPLY_STRING)
            continue;
        flc_store_field_t *o = &out->v[out->n];
        o->shard = (uint32_t)(j - first);
        o->len = (size_t)r->len;
        o->value = copy_bytes(r->str, o->len);
        if (o->value == NULL)
            rc = flc_err_set(&s->err, FLC_ENOMEM, "out of memory for a %zu-byte record",
                             (size_t)r->len);
        else
            out->n++;
    }
    for (size_t j = 0; rs && j < n; j++)
        if (rs[j])
            freeReplyObject(rs[j]);
    free(keys), free(argv), free(cmds), free(argc), free(rs);
    if (rc != FLC_OK)
        flc_store_fields_free(out);
    return rc;
}

int flc_store_merge_report_put(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                               const char *report, flc_store_fields_t *all)
{
    if (all == NULL)
        return rec_put(s, job, "merges", round, shard, report, strlen(report));
    /* SET then every shard's GET in one round trip: the same answers as
     * one after the other on this connection, one wait fewer per merge. */
    return rec_getall(s, job, "merges", round, shard, report, all);
}

int flc_store_merge_report_getall(flc_store_t *s, const char *job, uint32_t round,
                                  flc_store_fields_t *out)
{
    return rec_getall(s, job, "merges", round, 0, NULL, out);
}

int flc_store_krum_partial_put(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                               const void *blob, size_t len)
{
    return rec_put(s, job, "krum", round, shard, blob, len);
}

int flc_store_krum_partial_getall(flc_store_t *s, const char *job, uint32_t round,
                                  flc_store_fields_t *out)
{
    return rec_getall(s, job, "krum", round, 0, NULL, out);
}

int flc_store_track_put(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                        const char *where)
{
    return rec_put(s, job, "where", round, shard, where, strlen(where));
}

int flc_store_track_getall(flc_store_t *s, const char *job, uint32_t round,
                           flc_store_fields_t *out)
{
    return rec_getall(s, job, "where", round, 0, NULL, out);
}

int flc_store_gram_get(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                       char **blob, size_t *len)
{
    char key[FLC_KEY_MAX], what[160];
    int rc = flc_store_shard_key(s, key, job, round, shard, "gram");
    if (rc != FLC_OK)
        return rc;
    snprintf(what, sizeof what, "Gram partial of shard %u of round %u of job %s", shard, round,
             job);
    return flc_store_blob_get(s, key, what, blob, len);
}

int flc_store_gram_put(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                       const void *blob, size_t len)
{
    char key[FLC_KEY_MAX];
    int rc = flc_store_shard_key(s, key, job, round, shard, "gram");
    return rc != FLC_OK ? rc : blob_put(s, key, blob, len);
}

int flc_store_evres_get(flc_store_t *s, const char *job, uint32_t round, char **blob,
                        size_t *len)
{
    char key[FLC_KEY_MAX], what[160];
    int rc = flc_store_shard_key(s, key, job, round, 0, "evres");
    if (rc != FLC_OK)
        return rc;
    snprintf(what, sizeof what, "evaluated numbers of round %u of job %s", round, job);
    return flc_store_blob_get(s, key, what, blob, len);
}

int flc_store_evres_put(flc_store_t *s, const char *job, uint32_t round, const void *blob,
                        size_t len)
{
    char key[FLC_KEY_MAX];
    int rc = flc_store_shard_key(s, key, job, round, 0, "evres");
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
    return flc_store_blob_get(s, key, what, blob, len);
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
