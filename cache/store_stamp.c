/* Update stamps: the versions the query engine's caches (Gram partials,
 * evaluation sums) are checked against. An update's stamp changes whenever
 * the update is rewritten, and is read in the server from a few bytes of
 * the value (its head field), never the value itself. Split from
 * store_get.c, which reads the values. */
#include "cache/store_internal.h"

#include "cache/store_put_head.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- update stamps (the Gram cache's versions) --------------------------- */

#define STAMP_BYTES 4104 /* frame prefix + the largest header */

/* An update's stamp: its kind (1 a plain value, 2 a hash of chunks, 3 a
 * hash of chunks with its head field), its length (bytes, or fields) and
 * what identifies its contents: the head field "h" (frame header and the
 * payload's CRC-32C, store_put_head.h: ~100 bytes), else its first
 * STAMP_BYTES bytes, which hold the frame header. Run in the server so that
 * only those bytes come back; only a hash without h (written before the
 * head field, or by the Python writer) still copies its first chunk into
 * Lua (HGET has no range): 0.8 ms per 256 KiB chunk, which made a warm query
 * of 100 clients x 12 shards of 25 MB 2x slower than its goal (issue 12).
 * One script call stamps up to STAMP_BATCH updates (KEYS; all of one shard,
 * so one hash slot and node): a call per update cost 15-60 us of the
 * server's time each, most of it the call itself. EVAL_RO: a read-only
 * script, allowed to the query role's read-only user and to replicas. */
#define STAMP_BATCH 128
#define STAMP_SCRIPT                                                                      \
    "local n, out = tonumber(ARGV[1]), {} "                                                \
    "for i, k in ipairs(KEYS) do "                                                        \
    "local t = redis.call('TYPE', k)['ok'] "                                               \
    "if t == 'string' then "                                                              \
    "out[i] = {1, redis.call('STRLEN', k), redis.call('GETRANGE', k, 0, n - 1)} "          \
    "elseif t == 'hash' then local h = redis.call('HGET', k, '" FLC_HEAD_FIELD "') "       \
    "if h then out[i] = {3, redis.call('HLEN', k), h} else "                              \
    "local c = redis.call('HGET', k, '0') or '' "                                         \
    "out[i] = {2, redis.call('HLEN', k), string.sub(c, 1, n)} end "                       \
    "else out[i] = {0, 0, ''} end end "                                                   \
    "return out"

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* The stamp of one element of the script's answer; 0 for a missing update. */
static uint64_t stamp_of(const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[0]->integer <= 0 ||
        r->element[1]->type != REDIS_REPLY_INTEGER || r->element[2]->type != REDIS_REPLY_STRING)
        return 0;
    uint64_t h = 1469598103934665603ull;
    h = fnv(h, &r->element[0]->integer, sizeof r->element[0]->integer);
    h = fnv(h, &r->element[1]->integer, sizeof r->element[1]->integer);
    h = fnv(h, r->element[2]->str, (size_t)r->element[2]->len);
    return h | 1;
}

int flc_store_merged_stamp(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                           uint64_t *stamp)
{
    *stamp = 0;
    flc_err_clear(&s->err);
    char key[FLC_KEY_MAX], hi[16];
    int rc = flc_store_shard_key(s, key, job, round, shard, "agg");
    if (rc != FLC_OK)
        return rc;
    snprintf(hi, sizeof hi, "%d", STAMP_BYTES);
    const char *a[] = {"EVAL_RO", STAMP_SCRIPT, "1", key, hi};
    redisReply *r = NULL;
    if ((rc = flc_store_command(s, &r, 5, a, NULL)) != FLC_OK)
        return rc;
    if (r->type == REDIS_REPLY_ERROR)
        rc = flc_store_reply_error(s, r, "merged stamp");
    else if (r->type == REDIS_REPLY_ARRAY && r->elements == 1)
        *stamp = stamp_of(r->element[0]); /* the script answers one stamp per key */
    freeReplyObject(r);
    return rc;
}

int flc_store_update_stamps(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                            char *const *clients, size_t n, uint64_t *stamps)
{
    flc_err_clear(&s->err);
    if (flc_name_check_job(job, &s->err))
        return s->err.code;
    int rc = flc_store_ensure(s);
    if (rc != FLC_OK)
        return rc;
    char (*keys)[FLC_KEY_MAX] = malloc((n ? n : 1) * sizeof *keys);
    const char **argv = malloc((STAMP_BATCH + 4) * sizeof *argv);
    if (keys == NULL || argv == NULL) {
        free(keys), free(argv);
        return flc_err_set(&s->err, FLC_ENOMEM, "out of memory for %zu update stamps", n);
    }
    char hi[16];
    snprintf(hi, sizeof hi, "%d", STAMP_BYTES);
    size_t calls = 0;
    for (size_t i = 0; rc == FLC_OK && i < n; i += STAMP_BATCH, calls++) {
        size_t b = n - i < STAMP_BATCH ? n - i : STAMP_BATCH;
        char nk[16];
        snprintf(nk, sizeof nk, "%zu", b);
        argv[0] = "EVAL_RO";
        argv[1] = STAMP_SCRIPT;
        argv[2] = nk;
        for (size_t k = 0; rc == FLC_OK && k < b; k++) {
            rc = flc_store_update_key(s, keys[i + k], job, round, shard, clients[i + k]);
            argv[3 + k] = keys[i + k];
        }
        argv[3 + b] = hi;
        if (rc == FLC_OK)
            rc = flc_store_append(s, (int)b + 4, argv, NULL);
    }
    if (rc == FLC_OK && calls > 0)
        rc = flc_store_flush(s, "update stamp");
    /* Every reply is read even after a bad one, so the connection stays in
     * step; a missing update is stamp 0. */
    int bad = FLC_OK;
    for (size_t c = 0; rc == FLC_OK && c < calls; c++) {
        redisReply *r = NULL;
        rc = flc_store_read(s, &r, "update stamp");
        if (rc != FLC_OK)
            break;
        size_t i = c * STAMP_BATCH, b = n - i < STAMP_BATCH ? n - i : STAMP_BATCH;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == b) {
            for (size_t k = 0; k < b; k++)
                stamps[i + k] = stamp_of(r->element[k]);
        } else if (bad == FLC_OK) {
            bad = r->type == REDIS_REPLY_ERROR
                      ? flc_store_reply_error(s, r, "update stamp")
                      : flc_err_set(&s->err, FLC_EDATA, "the stamp script answered %zu "
                                    "stamps for %zu updates", r->type == REDIS_REPLY_ARRAY
                                    ? r->elements : 0, b);
        }
        freeReplyObject(r);
    }
    free(keys);
    free(argv);
    rc = rc ? rc : bad;
    if (rc != FLC_OK)
        return flc_err_wrap(&s->err, "stamping the updates of shard %u of round %u of job %s: ",
                            shard, round, job);
    return FLC_OK;
}
