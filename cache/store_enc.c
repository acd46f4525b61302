/* Error-feedback residuals of top-k clients in the cache (see store_enc.h):
 * one GET after one ZREVRANGEBYSCORE to read, SET + ZADD (and the cleanup of
 * older rounds) to write, all on the shard's node. */
#include "cache/store_enc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/keys.h"
#include "cache/store_internal.h"

static int tag_of(flc_store_t *s, const char *job, uint32_t S, uint32_t shard,
                  const char *client, char *tag)
{
    flc_err_clear(&s->err);
    if (flc_name_check_job(job, &s->err) || flc_name_check(client, "client", &s->err))
        return s->err.code;
    int rc = flc_store_job_shards(s, job, S);
    return rc != FLC_OK ? rc : flc_store_shard_tag(s, job, shard, tag);
}

int flc_store_resid_get(flc_store_t *s, const char *job, uint32_t S, uint32_t shard,
                        const char *client, uint32_t round, float *dst, size_t n,
                        uint32_t *from)
{
    char tag[FLC_TAG_MAX], idx[FLC_KEY_MAX], key[FLC_KEY_MAX], max[16];
    *from = 0;
    memset(dst, 0, n * sizeof *dst);
    int rc = tag_of(s, job, S, shard, client, tag);
    if (rc != FLC_OK || round <= 1)
        return rc;
    flc_key_residual(idx, tag, client, 0);
    snprintf(max, sizeof max, "%u", round - 1);
    const char *zr[] = {"ZREVRANGEBYSCORE", idx, max, "-inf", "LIMIT", "0", "1"};
    redisReply *r;
    if ((rc = flc_store_command(s, &r, 7, zr, NULL)) != FLC_OK)
        return rc;
    unsigned long prev = 0;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
        r->element[0]->type == REDIS_REPLY_STRING)
        prev = strtoul(r->element[0]->str, NULL, 10);
    freeReplyObject(r);
    if (prev == 0 || prev >= round)
        return FLC_OK;
    flc_key_residual(key, tag, client, (uint32_t)prev);
    const char *get[] = {"GET", key};
    if ((rc = flc_store_command(s, &r, 2, get, NULL)) != FLC_OK)
        return rc;
    if (r->type != REDIS_REPLY_STRING)
        rc = FLC_OK; /* expired with the job's ttl: start again from zero */
    else if ((size_t)r->len != n * sizeof *dst)
        rc = flc_err_set(&s->err, FLC_EDATA, "residual of client %s for shard %u of job %s "
                         "(round %lu) has %zu bytes, the shard %zu floats", client, shard, job,
                         prev, (size_t)r->len, n);
    else {
        memcpy(dst, r->str, n * sizeof *dst);
        *from = (uint32_t)prev;
    }
    freeReplyObject(r);
    return rc;
}

int flc_store_resid_put(flc_store_t *s, const char *job, uint32_t S, uint32_t shard,
                        const char *client, uint32_t round, const float *v, size_t n,
                        uint32_t from)
{
    char tag[FLC_TAG_MAX], idx[FLC_KEY_MAX], key[FLC_KEY_MAX], rnd[16], ttl[24];
    int rc = tag_of(s, job, S, shard, client, tag);
    if (rc != FLC_OK)
        return rc;
    flc_key_residual(idx, tag, client, 0);
    flc_key_residual(key, tag, client, round);
    snprintf(rnd, sizeof rnd, "%u", round);
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)s->opts.ttl_ms);
    const char *set[] = {"SET", key, (const char *)v, "PX", ttl};
    size_t lens[] = {3, strlen(key), n * sizeof *v, 2, strlen(ttl)};
    if ((rc = flc_store_command(s, NULL, s->opts.ttl_ms ? 5 : 3, set, lens)) != FLC_OK)
        return flc_err_wrap(&s->err, "writing the residual %s: ", key);
    const char *zadd[] = {"ZADD", idx, rnd, rnd};
    if ((rc = flc_store_command(s, NULL, 4, zadd, NULL)) != FLC_OK)
        return rc;
    if (s->opts.ttl_ms) {
        const char *px[] = {"PEXPIRE", idx, ttl};
        if ((rc = flc_store_command(s, NULL, 3, px, NULL)) != FLC_OK)
            return rc;
    }
    if (from <= 1)
        return FLC_OK;
    /* Older than the one read: no attempt of a later round reads them. */
    char below[16];
    snprintf(below, sizeof below, "(%u", from);
    const char *zr[] = {"ZRANGEBYSCORE", idx, "-inf", below};
    redisReply *r;
    if ((rc = flc_store_command(s, &r, 4, zr, NULL)) != FLC_OK)
        return rc;
    for (size_t i = 0; rc == FLC_OK && r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        flc_key_residual(key, tag, client, (uint32_t)strtoul(r->element[i]->str, NULL, 10));
        const char *del[] = {"UNLINK", key};
        rc = flc_store_command(s, NULL, 2, del, NULL);
    }
    freeReplyObject(r);
    const char *zrem[] = {"ZREMRANGEBYSCORE", idx, "-inf", below};
    return rc != FLC_OK ? rc : flc_store_command(s, NULL, 4, zrem, NULL);
}
