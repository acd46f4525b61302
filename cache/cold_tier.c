/* The store's cold tier: spill before evict, transparent fetch-back, keeping
 * Redis under its memory limit, and hot/cold accounting (store.h, "cold tier
 * and caching policy").
 *
 * Memory: the store keeps an estimate of Redis's used_memory (read with INFO
 * at attach and after each round of spilling, plus the bytes written since),
 * so the put path costs no extra round trip until the estimate nears the
 * high watermark; only then does it ask Redis and spill down to the low one.
 * A put refused with OOM anyway (other writers) makes room and retries once
 * (store.c).
 *
 * Spill of one object: WATCH key; read the value's bytes (a string, or the
 * hash of chunk fields); flc_cold_put (returns once durable); MULTI; DEL;
 * EXEC. The DEL runs only after the cold tier acknowledged, so a process
 * killed at any point leaves the value in Redis, in the cold tier, or in
 * both; and WATCH aborts the DEL when someone rewrote the value meanwhile.
 *
 * Reading and writing a value's raw bytes is in cold_tier_raw.c, what the
 * tier does with a whole round (prefetch at its close, tracking, deletion)
 * in cold_tier_round.c, the counters in cold_tier_stats.c. */
#include "cache/encode.h"
#include "cache/cold_tier_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SPILL_PASSES 16

/* ---- memory ---------------------------------------------------------------- */

int flc_tier_info_used(flc_store_t *s, uint64_t *used)
{
    redisReply *r;
    int rc = flc_store_commandf(s, &r, "INFO memory");
    if (rc != FLC_OK)
        return rc;
    const char *p = r->type == REDIS_REPLY_STRING ? strstr(r->str, "used_memory:") : NULL;
    *used = p ? strtoull(p + 12, NULL, 10) : 0;
    freeReplyObject(r);
    return FLC_OK;
}

int flc_store_attach_tier(flc_store_t *s, flc_cold_t *cold, flc_policy_t *policy,
                          const flc_tier_opts_t *opts)
{
    flc_err_clear(&s->err);
    if (cold == NULL)
        return flc_err_set(&s->err, FLC_EINVAL, "attaching a cold tier: no cold tier given");
    struct flc_tier *t = s->tier ? s->tier : calloc(1, sizeof *t);
    if (t == NULL)
        return flc_err_set(&s->err, FLC_ENOMEM, "out of memory");
    flc_tier_opts_t o = {0};
    if (opts)
        o = *opts;
    t->cold = cold;
    t->pol = policy;
    t->maxmem = o.maxmemory;
    if (t->maxmem == 0) {
        redisReply *r;
        int rc = flc_store_commandf(s, &r, "CONFIG GET maxmemory");
        if (rc == FLC_OK) {
            if (r->type == REDIS_REPLY_ARRAY && r->elements == 2)
                t->maxmem = strtoull(r->element[1]->str, NULL, 10);
            freeReplyObject(r);
        }
    }
    double hi = o.high > 0 && o.high <= 1 ? o.high : 0.90;
    double lo = o.low > 0 && o.low < hi ? o.low : hi - 0.10;
    t->high = (uint64_t)(hi * (double)t->maxmem);
    t->low = (uint64_t)(lo * (double)t->maxmem);
    int rc = flc_tier_info_used(s, &t->est_used);
    s->tier = t;
    t->st.maxmemory = t->maxmem;
    return rc;
}

int flc_store_attach_cold(flc_store_t *s, const char *url, const flc_cold_opts_t *opts)
{
    if (url == NULL || *url == '\0' || s->tier != NULL)
        return FLC_OK;
    flc_err_t e = {0};
    flc_cold_t *cold = flc_cold_open(url, opts, &e);
    if (cold == NULL)
        return flc_err_set(&s->err, e.code, "%s", e.msg); /* it names the URL */
    int rc = flc_store_attach_tier(s, cold, NULL, NULL);
    if (s->tier)
        s->tier->own_cold = cold;
    else
        flc_cold_close(cold);
    return rc;
}

int flc_store_set_policy(flc_store_t *s, flc_policy_t *policy)
{
    if (s->tier == NULL)
        return flc_err_set(&s->err, FLC_EINVAL, "a policy needs a cold tier (FLCACHE_COLD)");
    s->tier->pol = policy;
    return FLC_OK;
}

int flc_store_has_tier(const flc_store_t *s)
{
    return s->tier != NULL;
}

int flc_store_set_query_class(flc_store_t *s, int qc)
{
    int old = s->qclass;
    s->qclass = qc >= 0 && qc < FLC_QC_COUNT ? qc : FLC_QC_OTHER;
    return old;
}

/* ---- spill ------------------------------------------------------------------------ */

/* Deletes KEYS[1] when it still starts with ARGV[1] (see spill_one). */
static const char DEL_IF_SAME[] =
    "#!lua flags=allow-oom\n"
    "local t = redis.call('TYPE', KEYS[1]).ok "
    "local n = string.len(ARGV[1]) "
    "local head "
    "if t == 'string' then head = redis.call('GETRANGE', KEYS[1], 0, n - 1) "
    "elseif t == 'hash' then head = string.sub(redis.call('HGET', KEYS[1], '0') or '', 1, n) "
    "else return 0 end "
    "if head ~= ARGV[1] then return 0 end "
    "redis.call('DEL', KEYS[1]) "
    "return 1";

static int spill_one(flc_store_t *s, const flc_obj_t *o, uint64_t *freed)
{
    struct flc_tier *t = s->tier;
    char key[FLC_KEY_MAX];
    flc_obj_key(o, key);
    *freed = 0;
    redisReply *r;
    int rc = flc_store_commandf(s, &r, "WATCH %s", key);
    if (rc != FLC_OK)
        return rc;
    freeReplyObject(r);
    uint8_t *buf;
    size_t len;
    rc = flc_tier_read_raw(s, key, &buf, &len);
    uint8_t head[256];
    if (rc == FLC_OK) {
        memcpy(head, buf, len < sizeof head ? len : sizeof head);
        /* The acknowledgement: nothing below runs unless the object is durable. */
        rc = flc_cold_put(t->cold, key, buf, len);
        if (rc != FLC_OK)
            flc_err_set(&s->err, rc, "spilling %s: %s", key, flc_cold_errstr(t->cold));
        free(buf);
    }
    if (rc != FLC_OK) {
        if (s->c && flc_store_commandf(s, &r, "UNWATCH") == FLC_OK)
            freeReplyObject(r);
        return rc;
    }
    int done = 0;
    rc = flc_store_commandf(s, &r, "MULTI");
    if (rc != FLC_OK)
        return rc;
    freeReplyObject(r);
    rc = flc_store_commandf(s, &r, "DEL %s", key);
    if (rc == FLC_ENOMEM) {
        /* Redis refuses to queue commands in MULTI while over maxmemory,
         * the very moment room is needed: drop the transaction and delete
         * with a script allowed to run out of memory, which checks that the
         * value still starts with the bytes we saved (the frame header
         * carries the writer's timestamp, so a rewrite changes it). */
        if (flc_store_commandf(s, &r, "DISCARD") == FLC_OK)
            freeReplyObject(r);
        size_t hl = len < 256 ? len : 256;
        const char *argv[] = {"EVAL", DEL_IF_SAME, "1", key, (const char *)head};
        size_t lens[] = {4, strlen(DEL_IF_SAME), 1, strlen(key), hl};
        rc = flc_store_command(s, &r, 5, argv, lens);
        if (rc != FLC_OK)
            return rc;
        done = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
        freeReplyObject(r);
    } else {
        if (rc != FLC_OK) { /* leave the transaction, or later commands queue */
            if (s->c && flc_store_commandf(s, &r, "DISCARD") == FLC_OK)
                freeReplyObject(r);
            return rc;
        }
        freeReplyObject(r);
        rc = flc_store_commandf(s, &r, "EXEC");
        if (rc != FLC_OK)
            return rc;
        done = r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
               r->element[0]->type == REDIS_REPLY_INTEGER && r->element[0]->integer == 1;
        freeReplyObject(r);
    }
    if (!done) { /* rewritten while we copied it: the newer value stays hot */
        t->st.spill_skipped++;
        return FLC_OK;
    }
    t->st.spills++;
    t->st.spill_bytes += len;
    *freed = len + VALUE_OVERHEAD(len);
    t->est_used = t->est_used > *freed ? t->est_used - *freed : 0;
    if (t->pol) {
        flc_obj_t moved = *o;
        moved.bytes = len;
        t->pol->ops->on_moved(t->pol, &moved, 1);
    }
    return FLC_OK;
}

int flc_store_spill(flc_store_t *s, const flc_obj_t *o)
{
    flc_err_clear(&s->err);
    if (s->tier == NULL)
        return flc_err_set(&s->err, FLC_EINVAL, "spilling needs a cold tier (flc_store_attach_tier)");
    uint64_t freed;
    return spill_one(s, o, &freed);
}

int flc_store_make_room(flc_store_t *s, uint64_t need)
{
    struct flc_tier *t = s->tier;
    if (t == NULL || t->pol == NULL)
        return flc_err_set(&s->err, FLC_EINVAL, "making room needs a cold tier and a policy");
    t->busy++;
    uint64_t freed = 0;
    int rc = FLC_OK;
    flc_obj_t v[MAX_VICTIMS];
    for (int pass = 0; pass < MAX_SPILL_PASSES && freed < need && rc == FLC_OK; pass++) {
        size_t n = t->pol->ops->choose_victims(t->pol, need - freed, v, MAX_VICTIMS);
        if (n == 0)
            break;
        for (size_t i = 0; i < n && freed < need && rc == FLC_OK; i++) {
            uint64_t f;
            rc = spill_one(s, &v[i], &f);
            if (rc == FLC_ENOTFOUND) { /* gone from Redis already (another process) */
                t->pol->ops->on_moved(t->pol, &v[i], 1);
                flc_err_clear(&s->err);
                rc = FLC_OK;
            }
            freed += f;
        }
    }
    t->busy--;
    if (rc == FLC_OK) {
        flc_tier_info_used(s, &t->est_used);
        flc_store_tier_flush(s);
    }
    if (rc == FLC_OK && freed == 0)
        rc = flc_err_set(&s->err, FLC_ENOMEM,
                         "cache is full (%llu of %llu bytes) and the %s policy has nothing left "
                         "to spill", (unsigned long long)t->est_used,
                         (unsigned long long)t->maxmem, t->pol->spec);
    return rc;
}

/* ---- hooks from store.c ------------------------------------------------------------ */

int flc_tier_before_put(flc_store_t *s, uint64_t bytes)
{
    struct flc_tier *t = s->tier;
    if (t->pol == NULL || t->maxmem == 0 || t->busy)
        return FLC_OK;
    uint64_t want = bytes + VALUE_OVERHEAD(bytes);
    if (t->est_used + want <= t->high)
        return FLC_OK;
    int rc = flc_tier_info_used(s, &t->est_used);
    if (rc != FLC_OK || t->est_used + want <= t->high)
        return rc;
    uint64_t need = t->est_used + want - t->low;
    rc = flc_store_make_room(s, need);
    /* Nothing left to spill is not fatal here: Redis may still have room
     * between the watermark and maxmemory; if not, it refuses the put. */
    if (rc == FLC_ENOMEM) {
        flc_err_clear(&s->err);
        rc = FLC_OK;
    }
    return rc;
}

void flc_tier_after_put(flc_store_t *s, const flc_shard_t *sh, int merged, uint64_t bytes)
{
    struct flc_tier *t = s->tier;
    t->est_used += bytes + VALUE_OVERHEAD(bytes);
    if (t->pol == NULL)
        return;
    flc_obj_t o = {.round = sh->round, .shard = sh->shard, .bytes = bytes,
                   .num_shards = sh->num_shards};
    o.kind = merged ? FLC_OBJ_MERGED : FLC_OBJ_UPDATE;
    snprintf(o.job, sizeof o.job, "%s", sh->job);
    snprintf(o.client, sizeof o.client, "%s", merged ? "" : sh->client);
    t->pol->ops->on_put(t->pol, &o);
    /* The last shard's merge marks the round closed (mergers of a
     * multi-shard model finish in any order; this is the usual last one). */
    if (merged && sh->shard + 1 == sh->num_shards && !t->busy)
        flc_store_round_closed(s, sh->job, sh->round);
}

/* Copies a frame's payload into *out (dst when it fits), checking it. */
static int decode_into(flc_store_t *s, const uint8_t *buf, size_t len, const char *what,
                       flc_shard_t *out, float *dst, size_t dst_cap)
{
    flc_shard_t h = {0};
    size_t off, flen;
    int rc = flc_shard_decode_header(buf, len, s->opts.max_msg_bytes, &h, &off, &flen, &s->err);
    if (rc == FLC_OK && flen != len)
        rc = flc_err_set(&s->err, FLC_EDATA, "cold object has %zu bytes, header implies %zu",
                         len, flen);
    if (rc != FLC_OK)
        return flc_err_wrap(&s->err, "reading %s from the cold tier: ", what);
    /* An encoded payload (cache/encode.h) is checked and decoded in place. */
    size_t pl = flen - off;
    uint64_t room = (pl + 3) / 4 > h.count ? (pl + 3) / 4 : h.count;
    if (h.encoding != FLC_ENC_F32 &&
        flc_enc_check((int)h.encoding, buf + off, pl, h.count, h.nnz, what, &s->err) != FLC_OK)
        return flc_err_wrap(&s->err, "reading %s from the cold tier: ", what);
    if (dst != NULL && dst_cap >= room) {
        h.values = dst;
        h.owned = NULL;
    } else if (flc_shard_alloc(&h, room, &s->err) != FLC_OK) {
        return s->err.code;
    }
    memcpy(h.values, buf + off, pl);
    if (flc_enc_decode_inplace((int)h.encoding, h.values, h.count, h.nnz, &s->err) != FLC_OK) {
        flc_shard_release(&h);
        return s->err.code;
    }
    h.encoding = FLC_ENC_F32;
    h.nnz = 0;
    if (h.owned != NULL && dst != NULL && dst_cap >= h.count) { /* it fits, decoded */
        memcpy(dst, h.values, (size_t)h.count * sizeof(float));
        flc_shard_release(&h);
        h.values = dst;
    }
    *out = h;
    return FLC_OK;
}

int flc_tier_after_get(flc_store_t *s, int rc, const flc_obj_t *o, const char *what,
                       flc_shard_t *out, float *dst, size_t dst_cap)
{
    struct flc_tier *t = s->tier;
    int qc = s->qclass;
    if (rc == FLC_OK) {
        t->st.hits[qc]++;
        if (t->pol) {
            flc_obj_t h = *o;
            h.bytes = (uint64_t)out->count * sizeof(float) + 64;
            t->pol->ops->on_get(t->pol, &h, qc, 1);
        }
        return rc;
    }
    if (rc != FLC_ENOTFOUND)
        return rc;
    flc_err_t miss = s->err;
    char key[FLC_KEY_MAX];
    flc_obj_key(o, key);
    uint8_t *buf;
    size_t len;
    int crc = flc_cold_get(t->cold, key, &buf, &len);
    if (crc == FLC_ENOTFOUND) {
        s->err = miss; /* in neither tier: the original message */
        return rc;
    }
    if (crc != FLC_OK)
        return flc_err_set(&s->err, crc, "reading %s: %s", what, flc_cold_errstr(t->cold));
    t->st.fetches++;
    t->st.fetch_bytes += len;
    t->st.misses[qc]++;
    rc = decode_into(s, buf, len, what, out, dst, dst_cap);
    if (rc == FLC_OK && t->pol) {
        flc_obj_t m = *o;
        m.bytes = len;
        if (t->pol->ops->on_get(t->pol, &m, qc, 0) && !t->busy) {
            int w = 0;
            flc_err_t keep = s->err;
            if (flc_tier_before_put(s, len) == FLC_OK &&
                flc_tier_write_raw(s, key, buf, len, &w) == FLC_OK && w) {
                t->st.rewarms++;
                t->est_used += len + VALUE_OVERHEAD(len);
                t->pol->ops->on_moved(t->pol, &m, 0);
            }
            s->err = keep; /* a failed re-warm does not fail the read */
        }
    }
    free(buf);
    return rc;
}

void flc_tier_deleted(flc_store_t *s, const flc_obj_t *o)
{
    struct flc_tier *t = s->tier;
    char key[FLC_KEY_MAX];
    flc_obj_key(o, key);
    flc_cold_del(t->cold, key);
    if (t->pol)
        t->pol->ops->on_moved(t->pol, o, -1);
}

void flc_tier_close(flc_store_t *s)
{
    if (s->tier == NULL)
        return;
    if (s->c)
        flc_store_tier_flush(s);
    flc_cold_close(s->tier->own_cold);
    free(s->tier);
    s->tier = NULL;
}
