/* Reading shards: the first chunks of a value in one round trip (it may be a
 * string or a hash of chunks, see store_put.c), the rest pipelined, every
 * chunk copied straight into the destination; a miss handed to the cold
 * tier. See store.h for the protocol. */
#include "cache/store_internal.h"

#include "cache/encode.h"
#include "cache/store_put_head.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Makes the scratch buffer hold at least n bytes (kept between calls). */
int flc_store_grow_scratch(flc_store_t *s, size_t n)
{
    if (s->scratch_cap >= n)
        return FLC_OK;
    char *p = realloc(s->scratch, n);
    if (p == NULL)
        return flc_err_set(&s->err, FLC_ENOMEM, "out of memory for a %zu-byte read buffer", n);
    s->scratch = p;
    s->scratch_cap = n;
    return FLC_OK;
}

/* The spillable object behind a get or delete (for the cold tier). */
void flc_store_obj_of(flc_store_t *s, flc_obj_t *o, const char *job, uint32_t round, uint32_t shard,
                      const char *client)
{
    memset(o, 0, sizeof *o);
    snprintf(o->job, sizeof o->job, "%s", job);
    o->round = round;
    o->shard = shard;
    uint32_t S = 0; /* known by now: the caller built the object's key */
    o->num_shards = flc_store_job_S(s, job, &S) == FLC_OK ? S : 1;
    o->kind = client ? FLC_OBJ_UPDATE : FLC_OBJ_MERGED;
    snprintf(o->client, sizeof o->client, "%s", client ? client : "");
}

/* ---- shard get ----------------------------------------------------------- */

/* Reads and drops n replies (speculative reads that were not needed). */
static void drain(flc_store_t *s, int n)
{
    flc_err_t keep = s->err;
    for (size_t len; n > 0 && s->c != NULL; n--)
        flc_store_read_into(s, NULL, 0, &len, "GETRANGE");
    s->err = keep;
}

/* Speculative GETRANGEs sent with the first request: a value stored as one
 * string (up to FLC_STORE_SPLIT chunks) then arrives in a single round trip
 * instead of two (the first chunk's header says how much follows). Beyond
 * the value's end they answer "", on a hash a short WRONGTYPE error. */
#define SPEC_READS (FLC_STORE_SPLIT - 1)

/* A wait in front of a read (flc_store_wait_get_merged): BLPOP on list,
 * sent in the same round trip as the read's first requests, which Redis
 * runs once the pop returns (a connection's commands run in order, also
 * after it was blocked). */
typedef struct get_wait {
    const char *list;
    unsigned timeout_ms;
    char *token;
    size_t cap;
} get_wait_t;

#define GET_NOT_OK 1 /* get_shard with a wait: the token was not "ok", nothing read */

/* Sends BLPOP w->list with the socket's timeout beyond the server's (as
 * flc_store_blpop_keys does); its reply is read by get_wait_reply. */
static int get_wait_send(flc_store_t *s, const get_wait_t *w)
{
    char secs[32];
    snprintf(secs, sizeof secs, "%.3f", w->timeout_ms / 1000.0);
    unsigned block = w->timeout_ms + s->opts.io_timeout_ms;
    if (s->cl) {
        int rc = flc_store_cl_route_key(s, w->list);
        if (rc != FLC_OK)
            return rc;
        flc_store_cl_block_ms(s, block);
    }
    flc_store_set_timeout(s, block);
    const char *bl[] = {"BLPOP", w->list, secs};
    return flc_store_append(s, 3, bl, NULL);
}

/* Reads the BLPOP's reply: FLC_OK with the token in w->token, FLC_ETIMEOUT
 * when nothing came; the socket's timeout is given back either way. */
static int get_wait_reply(flc_store_t *s, const get_wait_t *w)
{
    redisReply *r = NULL;
    int rc = flc_store_read(s, &r, "BLPOP");
    flc_store_set_timeout(s, s->opts.io_timeout_ms);
    if (s->cl)
        flc_store_cl_block_ms(s, 0);
    if (rc != FLC_OK)
        return rc;
    if (r->type == REDIS_REPLY_NIL)
        rc = flc_err_set(&s->err, FLC_ETIMEOUT, "nothing on %s within %u ms", w->list,
                         w->timeout_ms);
    else if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
             r->element[1]->type != REDIS_REPLY_STRING)
        rc = flc_err_set(&s->err, FLC_EPROTO, "BLPOP %s: unexpected reply", w->list);
    else
        snprintf(w->token, w->cap, "%.*s", (int)r->element[1]->len, r->element[1]->str);
    freeReplyObject(r);
    return rc;
}

/* Reads and drops n replies of any type (a read that is not wanted). */
static void drop_replies(flc_store_t *s, int n)
{
    flc_err_t keep = s->err;
    for (; n > 0 && s->c != NULL; n--) {
        redisReply *r = NULL;
        if (flc_store_read(s, &r, "GETRANGE") == FLC_OK && r)
            freeReplyObject(r);
    }
    s->err = keep;
}

static int get_shard(flc_store_t *s, const char *key, const char *what, flc_shard_t *out,
                     float *dst, size_t dst_cap, int raw, const get_wait_t *wait, int lean_ok)
{
    flc_err_clear(&s->err);
    flc_store_in_step(s, "an earlier operation"); /* a read starts in step */
    int rc = flc_store_ensure(s);
    if (rc != FLC_OK)
        return rc;
    if (wait != NULL && (rc = get_wait_send(s, wait)) != FLC_OK)
        return rc;
    /* A value is a plain string (up to FLC_STORE_SPLIT chunks) or a hash of
     * chunk fields (put_shard). Ask for both first chunks in one round trip;
     * the one of the wrong type answers with a short WRONGTYPE error. Both
     * land in the store's scratch buffer, so a read allocates nothing. */
    size_t chunk = s->opts.chunk_bytes;
    if (flc_store_grow_scratch(s, chunk) != FLC_OK)
        return s->err.code;
    /* A caller that knows the shard's size (dst_cap floats) gets no more
     * speculative reads than such a frame can fill: a small shard is read
     * with 4 commands, not 4 + SPEC_READS (Redis runs every command of
     * every reader of a step; a bigger value than expected is read below,
     * in the pipelined rest). */
    int spec = SPEC_READS;
    if (dst != NULL && dst_cap > 0) {
        size_t most = FLC_FRAME_PREFIX + FLC_FRAME_HEADER_MAX + 8 + dst_cap * sizeof(float);
        size_t need = (most + chunk - 1) / chunk - 1;
        spec = need < (size_t)SPEC_READS ? (int)need : SPEC_READS;
    }
    char hi[32];
    snprintf(hi, sizeof hi, "%zu", chunk - 1);
    const char *gr[] = {"GETRANGE", key, "0", hi};
    const char *hg[] = {"HGET", key, "0"};
    /* The value's real size first (STRLEN of a string, HLEN of a hash of
     * chunks; the other type answers a short WRONGTYPE): a header is
     * believed only as far as the bytes behind it, before anything is
     * allocated or read for it (issue 13 finding 5: a 76-byte value that
     * claims 100M floats must not cost 400 MB and millions of reads). */
    const char *sl[] = {"STRLEN", key};
    const char *hl[] = {"HLEN", key};
    /* A hash's head field (store_put_head.h): HLEN counts it, and it must
     * repeat the header field 0 starts with (a stamp reads it alone). */
    const char *hh[] = {"HGET", key, FLC_HEAD_FIELD};
    /* A value the caller expects within one chunk is a plain string as every
     * writer stores it (store_put.c: a string up to FLC_STORE_SPLIT chunks):
     * then the first round trip asks only its STRLEN and first chunk, 2
     * commands instead of 5 (Redis runs every command of every reader: a
     * W = 8 SGD step makes 14 such reads per worker, docs/performance.md).
     * A hash or a missing key answers otherwise and is asked the full way. */
    int lean = lean_ok && spec == 0 && dst != NULL && dst_cap > 0;
    int asked = lean ? 2 : 5 + spec; /* STRLEN, [HLEN, HGET h,] GETRANGE, [HGET 0, spec] */
    rc = flc_store_append(s, 2, sl, NULL);
    if (rc == FLC_OK && !lean)
        rc = flc_store_append(s, 2, hl, NULL);
    if (rc == FLC_OK && !lean)
        rc = flc_store_append(s, 3, hh, NULL);
    if (rc == FLC_OK)
        rc = flc_store_append(s, 4, gr, NULL);
    if (rc == FLC_OK && !lean)
        rc = flc_store_append(s, 3, hg, NULL);
    for (int j = 1; rc == FLC_OK && j <= spec; j++) {
        char lo[32], h2[32];
        snprintf(lo, sizeof lo, "%zu", (size_t)j * chunk);
        snprintf(h2, sizeof h2, "%zu", (size_t)(j + 1) * chunk - 1);
        const char *g[] = {"GETRANGE", key, lo, h2};
        rc = flc_store_append(s, 4, g, NULL);
    }
    if (rc == FLC_OK)
        rc = flc_store_flush(s, "GETRANGE");
    if (wait != NULL && rc != FLC_OK) {
        flc_store_set_timeout(s, s->opts.io_timeout_ms);
        if (s->cl)
            flc_store_cl_block_ms(s, 0);
    }
    if (wait != NULL && rc == FLC_OK) {
        rc = get_wait_reply(s, wait);
        if (rc == FLC_OK && strncmp(wait->token, "ok", 2) != 0)
            rc = GET_NOT_OK; /* a failed merger: what is there is not its shard */
        if (rc != FLC_OK && s->c != NULL) {
            drop_replies(s, asked); /* every one: the next operation reads its own */
            return rc;
        }
    }
    long long real_len = -1, real_fields = -1; /* STRLEN, HLEN; -1: not that type */
    char head_f[FLC_HEAD_MAX];
    size_t head_len = 0;
    int has_head = 0, head_bad = 0; /* field h: there; longer than any head */
    for (int k = 0; k < (lean ? 1 : 3) && rc == FLC_OK; k++) {
        redisReply *r = NULL;
        rc = flc_store_read(s, &r, k == 2 ? "HGET" : k ? "HLEN" : "STRLEN");
        if (rc == FLC_OK && k < 2 && r->type == REDIS_REPLY_INTEGER)
            *(k ? &real_fields : &real_len) = r->integer;
        if (rc == FLC_OK && k == 2 && r->type == REDIS_REPLY_STRING) {
            has_head = 1;
            head_bad = r->len > sizeof head_f;
            head_len = head_bad ? 0 : r->len;
            memcpy(head_f, r->str, head_len);
        }
        if (r)
            freeReplyObject(r);
    }
    if (has_head && real_fields > 0)
        real_fields--; /* chunks, not fields */
    if (rc != FLC_OK) /* the connection is gone; the caller reconnects */
        return flc_err_wrap(&s->err, "reading %s: ", what);
    size_t len_s = 0, len_h = 0;
    int rs = rc == FLC_OK ? flc_store_read_into(s, s->scratch, chunk, &len_s, "GETRANGE") : rc;
    int rh = lean ? FLC_ENOTFOUND
             : s->c ? flc_store_read_into(s, s->scratch, len_s ? 0 : chunk, &len_h, "HGET")
                    : rs;
    if (s->c == NULL) /* connection lost: *err already says so */
        return flc_err_wrap(&s->err, "reading %s: ", what);
    if (lean && (real_len <= 0 || rs != FLC_OK)) { /* not a string: the full way (no wait) */
        flc_err_clear(&s->err);
        return get_shard(s, key, what, out, dst, dst_cap, raw, NULL, 0);
    }
    int pending = spec;
    int hashed = rh == FLC_OK && len_h > 0;
    if (hashed) { /* the speculative reads hit a hash: drop them */
        drain(s, pending);
        pending = 0;
    }
    if (!hashed && rs != FLC_OK) { /* neither a string nor a hash */
        drain(s, pending);
        return flc_err_wrap(&s->err, "reading %s: ", what);
    }
    flc_err_clear(&s->err);
    size_t len0 = hashed ? len_h : len_s;
    if (len0 == 0 && has_head) {
        drain(s, pending);
        return flc_err_set(&s->err, FLC_EDATA, "%s: the value has a head field but no chunk 0 "
                           "(key %s)", what, key);
    }
    if (len0 == 0) {
        drain(s, pending);
        return flc_err_set(&s->err, FLC_ENOTFOUND, "%s: not in the cache (key %s)", what, key);
    }
    if (hashed && len0 > chunk) {
        /* Written with a bigger chunk than ours: fetch field 0 again whole. */
        if (flc_store_grow_scratch(s, len0) != FLC_OK)
            return s->err.code;
        rc = flc_store_append(s, 3, hg, NULL);
        rc = rc ? rc : flc_store_flush(s, "HGET");
        rc = rc ? rc : flc_store_read_into(s, s->scratch, len0, &len0, "HGET");
        if (rc != FLC_OK)
            return flc_err_wrap(&s->err, "reading %s: ", what);
    }
    flc_shard_t h = {0};
    size_t off, flen;
    rc = flc_shard_decode_header((const uint8_t *)s->scratch, len0, s->opts.max_msg_bytes, &h,
                                 &off, &flen, &s->err);
    /* What the header claims against what is stored: a string holds the
     * whole frame; a hash ceil(flen / len0) fields of field 0's size. */
    if (rc == FLC_OK && !hashed && real_len >= 0 && (unsigned long long)real_len != flen)
        rc = flc_err_set(&s->err, FLC_EDATA, "header claims a %zu-byte frame (%llu floats), "
                         "the value has %lld bytes (key %s)", flen,
                         (unsigned long long)h.count, real_len, key);
    if (rc == FLC_OK && hashed &&
        (real_fields < 1 || (unsigned long long)real_fields != (flen + len0 - 1) / len0))
        rc = flc_err_set(&s->err, FLC_EDATA, "header claims a %zu-byte frame (%llu floats), "
                         "the value has %lld chunks of %zu bytes (key %s)", flen,
                         (unsigned long long)h.count, real_fields, len0, key);
    if (rc == FLC_OK && has_head &&
        (head_bad || !flc_store_head_matches(head_f, head_len, (const uint8_t *)s->scratch, off)))
        rc = flc_err_set(&s->err, FLC_EDATA, "the head field of the value does not repeat the "
                         "header of its first chunk (key %s; written by something else?)", key);
    /* In a hash, field 0 is one whole chunk of the writer's size (which may
     * differ from ours), or the whole value. */
    if (hashed && rc == FLC_OK && len0 > flen)
        rc = flc_err_set(&s->err, FLC_EDATA, "first chunk has %zu bytes, header implies %zu in "
                         "all (overwritten?)", len0, flen);
    if (hashed)
        chunk = len0;
    size_t expect0 = flen < chunk ? flen : chunk;
    if (rc == FLC_OK && len0 != expect0)
        rc = flc_err_set(&s->err, FLC_EDATA, "value has %zu bytes in its first chunk, header "
                         "implies %zu (truncated or overwritten)", len0, expect0);
    if (rc != FLC_OK) {
        drain(s, pending);
        return flc_err_wrap(&s->err, "reading %s: ", what);
    }
    /* float32 or encoded (cache/encode.h): decoded in place below unless
     * raw, so the destination holds the larger of the two */
    size_t pl = flc_shard_payload_bytes(&h);
    uint64_t room = (pl + 3) / 4 > h.count ? (pl + 3) / 4 : h.count;
    if (dst != NULL && dst_cap >= room) {
        h.values = dst;
        h.owned = NULL;
    } else if (flc_shard_alloc(&h, room, &s->err) != FLC_OK) {
        drain(s, pending);
        return s->err.code;
    }
    char *p = (char *)h.values;
    size_t got = len0 - off;
    memcpy(p, s->scratch + off, got);

    /* A string: the speculative replies hold chunks 1..spec. */
    int bad = FLC_OK;
    for (int j = 1; pending > 0; j++, pending--) {
        size_t start = (size_t)j * chunk;
        size_t want = start < flen ? (flen - start < chunk ? flen - start : chunk) : 0, len = 0;
        int r = flc_store_read_into(s, want ? p + got : NULL, want, &len, "GETRANGE");
        if (r != FLC_OK && s->c == NULL) {
            rc = r; /* connection gone */
            break;
        }
        if (bad == FLC_OK && (r != FLC_OK || len != want))
            bad = r != FLC_OK ? r
                              : flc_err_set(&s->err, FLC_EDATA,
                                            "chunk %d has %zu bytes, expected %zu (value "
                                            "changed while reading)", j, len, want);
        else if (bad == FLC_OK)
            got += want;
    }

    /* The rest (a hash, or a string longer than the speculation): every
     * HGET (or GETRANGE) pipelined, copying replies as they arrive, with at
     * most FLC_STORE_READ_FLIGHT bytes asked for and not read (sent all at
     * once, bench/aggregate --large's 6 clients pulling 1 GiB made Redis
     * fault in ~5 GB more than the raw baseline's reads). */
    size_t from = hashed ? chunk : (size_t)(spec + 1) * chunk;
    int first_field = hashed ? 1 : spec + 1;
    int n = from < flen ? (int)((flen - from + chunk - 1) / chunk) : 0, sent = 0;
    int flight = FLC_STORE_READ_FLIGHT / chunk > 1 ? (int)(FLC_STORE_READ_FLIGHT / chunk) : 1;
    for (int i = 0; rc == FLC_OK && i < n; i++) {
        if (sent < n && bad == FLC_OK && sent - i <= flight / 2) { /* ask for more */
            int upto = i + flight < n ? i + flight : n;
            for (; rc == FLC_OK && sent < upto; sent++) {
                char lo[32], hi2[32];
                size_t start = from + (size_t)sent * chunk;
                size_t end = start + chunk < flen ? start + chunk : flen;
                snprintf(lo, sizeof lo, "%zu", start);
                snprintf(hi2, sizeof hi2, "%zu", end - 1);
                snprintf(hi, sizeof hi, "%d", first_field + sent);
                const char *g[] = {"GETRANGE", key, lo, hi2};
                const char *gh[] = {"HGET", key, hi};
                rc = hashed ? flc_store_append(s, 3, gh, NULL) : flc_store_append(s, 4, g, NULL);
            }
            rc = rc ? rc : flc_store_flush(s, "GET");
        }
        if (rc != FLC_OK || i >= sent) /* refused mid-way: nothing more was asked for */
            break;
        size_t want = flen - off - got < chunk ? flen - off - got : chunk, len = 0;
        int r = flc_store_read_into(s, p + got, want, &len, "GET");
        if (r != FLC_OK && s->c == NULL) {
            rc = r; /* connection gone */
        } else if (bad == FLC_OK && (r != FLC_OK || len != want)) {
            /* Keep reading so the connection stays in step. */
            bad = r != FLC_OK ? r
                              : flc_err_set(&s->err, FLC_EDATA,
                                            "chunk %d has %zu bytes, expected %zu (value "
                                            "changed while reading)", first_field + i, len,
                                            want);
        } else if (bad == FLC_OK) {
            got += want;
        }
    }
    if (rc == FLC_OK)
        rc = bad;
    if (rc == FLC_OK && s->err.code != FLC_OK)
        rc = s->err.code;
    if (rc == FLC_OK && got != pl)
        rc = flc_err_set(&s->err, FLC_EDATA, "payload has %zu bytes, header says %zu", got, pl);
    if (rc == FLC_OK && h.encoding != FLC_ENC_F32)
        rc = flc_enc_check((int)h.encoding, h.values, pl, h.count, h.nnz, what, &s->err);
    if (rc == FLC_OK && h.encoding != FLC_ENC_F32 && !raw) {
        rc = flc_enc_decode_inplace((int)h.encoding, h.values, h.count, h.nnz, &s->err);
        h.encoding = FLC_ENC_F32;
        h.nnz = 0;
        /* decoded, it fits the caller's floats after all (a payload larger
         * than its floats was read beside them) */
        if (rc == FLC_OK && h.owned != NULL && dst != NULL && dst_cap >= h.count) {
            memcpy(dst, h.values, (size_t)h.count * sizeof(float));
            flc_shard_release(&h);
            h.values = dst;
        }
    }
    if (rc != FLC_OK) {
        flc_shard_release(&h);
        return flc_err_wrap(&s->err, "reading %s: ", what);
    }
    s->bytes_read += flen;
    *out = h;
    return FLC_OK;
}

/* A value is believed only under the key it names (issue 13 finding 9): a
 * frame copied from another client's, round's or shard's key decodes fine,
 * and would be merged or queried as this one. client NULL: a merged shard. */
int flc_store_check_origin(flc_store_t *s, const flc_shard_t *h, const char *job, uint32_t round,
                           uint32_t shard, const char *client, const char *what)
{
    const char *c = client ? client : "";
    if (strcmp(h->job, job) == 0 && h->round == round && h->shard == shard &&
        strcmp(h->client, c) == 0)
        return FLC_OK;
    return flc_err_set(&s->err, FLC_EDATA, "%s: the stored value says it is shard %u of round "
                       "%u of job %s from %s%s (copied under another key?)", what, h->shard, h->round,
                       h->job, h->client[0] ? "client " : "the merger", h->client);
}

static int get_update(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                      const char *client, flc_shard_t *out, float *dst, size_t dst_cap, int raw)
{
    flc_err_clear(&s->err);
    if (flc_name_check_job(job, &s->err) || flc_name_check(client, "client", &s->err))
        return s->err.code;
    char key[FLC_KEY_MAX], what[256];
    int rc = flc_store_update_key(s, key, job, round, shard, client);
    if (rc != FLC_OK)
        return rc;
    snprintf(what, sizeof what, "update of client %s for shard %u of round %u of job %s",
             client, shard, round, job);
    rc = get_shard(s, key, what, out, dst, dst_cap, raw, NULL, 1);
    if (rc == FLC_OK && (rc = flc_store_check_origin(s, out, job, round, shard, client, what)) != FLC_OK)
        flc_shard_release(out);
    if (s->tier) {
        flc_obj_t o;
        flc_store_obj_of(s, &o, job, round, shard, client);
        int hot = rc;
        rc = flc_tier_after_get(s, rc, &o, what, out, dst, dst_cap);
        if (hot == FLC_ENOTFOUND && rc == FLC_OK && /* a cold copy: the same check */
            (rc = flc_store_check_origin(s, out, job, round, shard, client, what)) != FLC_OK)
            flc_shard_release(out);
    }
    return rc;
}

int flc_store_get_update(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                         const char *client, flc_shard_t *out, float *dst, size_t dst_cap)
{
    return get_update(s, job, round, shard, client, out, dst, dst_cap, 0);
}

int flc_store_get_update_raw(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                             const char *client, flc_shard_t *out, float *dst, size_t dst_cap)
{
    return get_update(s, job, round, shard, client, out, dst, dst_cap, 1);
}

static int get_merged(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                      flc_shard_t *out, float *dst, size_t dst_cap, get_wait_t *wait)
{
    flc_err_clear(&s->err);
    if (flc_name_check_job(job, &s->err))
        return s->err.code;
    char key[FLC_KEY_MAX], what[256], list[FLC_KEY_MAX];
    int rc = flc_store_shard_key(s, key, job, round, shard, "agg");
    if (rc == FLC_OK && wait != NULL)
        rc = flc_store_shard_key(s, list, job, round, shard, "done");
    if (rc != FLC_OK)
        return rc;
    if (wait != NULL)
        wait->list = list;
    snprintf(what, sizeof what, "merged shard %u of round %u of job %s", shard, round, job);
    rc = get_shard(s, key, what, out, dst, dst_cap, 0, wait, 1);
    if (rc == GET_NOT_OK)
        return FLC_OK; /* the token says why; nothing read */
    if (wait != NULL && rc == FLC_ETIMEOUT)
        return rc;
    if (rc == FLC_OK && (rc = flc_store_check_origin(s, out, job, round, shard, NULL, what)) != FLC_OK)
        flc_shard_release(out);
    if (s->tier) {
        flc_obj_t o;
        flc_store_obj_of(s, &o, job, round, shard, NULL);
        int hot = rc;
        rc = flc_tier_after_get(s, rc, &o, what, out, dst, dst_cap);
        if (hot == FLC_ENOTFOUND && rc == FLC_OK && /* a cold copy: the same check */
            (rc = flc_store_check_origin(s, out, job, round, shard, NULL, what)) != FLC_OK)
            flc_shard_release(out);
    }
    return rc;
}

int flc_store_get_merged(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                         flc_shard_t *out, float *dst, size_t dst_cap)
{
    return get_merged(s, job, round, shard, out, dst, dst_cap, NULL);
}

int flc_store_wait_get_merged(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                              unsigned timeout_ms, char *token, size_t cap, flc_shard_t *out,
                              float *dst, size_t dst_cap)
{
    memset(out, 0, sizeof *out);
    if (cap)
        token[0] = '\0';
    if (timeout_ms == 0 || cap < 3)
        return flc_err_set(&s->err, FLC_EINVAL, "waiting for merged shard %u needs a timeout "
                           "and room for its token", shard);
    if (s->tier != NULL) { /* a cold copy may answer the read: the two steps apart */
        int rc = flc_store_wait(s, job, round, shard, "done", timeout_ms, token, cap);
        if (rc != FLC_OK || strncmp(token, "ok", 2) != 0)
            return rc;
        return flc_store_get_merged(s, job, round, shard, out, dst, dst_cap);
    }
    get_wait_t w = {.timeout_ms = timeout_ms, .token = token, .cap = cap};
    return get_merged(s, job, round, shard, out, dst, dst_cap, &w);
}
