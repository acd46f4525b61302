/* Reading a stored shard window by window (store_part.h): the open, which
 * reads and checks the header (the windows are store_part_window.c's). The
 * layout read is store_put.c's: a plain string holding the frame, or a hash
 * whose fields "0".."n-1" are the frame's chunks of one size (the last
 * shorter) and "h" its head. */
#include "cache/store_internal.h"

#include "base/crc32c.h"
#include "cache/encode.h"
#include "cache/store_part.h"
#include "cache/store_put_head.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HDR_MAX (FLC_FRAME_PREFIX + FLC_FRAME_HEADER_MAX)

/* STRLEN, HLEN, HSTRLEN of field 0, the head field and the string's first
 * HDR_MAX bytes, in one round trip (the wrong type's command answers a
 * short WRONGTYPE). *hdr points at the frame's first bytes in the store's
 * scratch buffer (or the head field's copy of them). */
typedef struct opened {
    long long len, fields, chunk0; /* -1: not that type */
    char head[FLC_HEAD_MAX];
    size_t head_len;
    int has_head;
    size_t hdr_len;
} opened_t;

static int read_sizes(flc_store_t *s, const char *key, opened_t *o)
{
    char hi[24];
    snprintf(hi, sizeof hi, "%u", HDR_MAX - 1);
    const char *c0[] = {"STRLEN", key}, *c1[] = {"HLEN", key};
    const char *c2[] = {"HSTRLEN", key, "0"}, *c3[] = {"HGET", key, FLC_HEAD_FIELD};
    const char *c4[] = {"GETRANGE", key, "0", hi};
    int rc = flc_store_append(s, 2, c0, NULL);
    rc = rc ? rc : flc_store_append(s, 2, c1, NULL);
    rc = rc ? rc : flc_store_append(s, 3, c2, NULL);
    rc = rc ? rc : flc_store_append(s, 3, c3, NULL);
    rc = rc ? rc : flc_store_append(s, 4, c4, NULL);
    rc = rc ? rc : flc_store_flush(s, "STRLEN");
    long long *ints[] = {&o->len, &o->fields, &o->chunk0};
    for (int k = 0; k < 4 && rc == FLC_OK; k++) {
        redisReply *r = NULL;
        rc = flc_store_read(s, &r, k == 3 ? "HGET" : "STRLEN");
        if (rc == FLC_OK && k < 3)
            *ints[k] = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
        if (rc == FLC_OK && k == 3 && r->type == REDIS_REPLY_STRING && r->len <= sizeof o->head) {
            o->has_head = 1;
            o->head_len = r->len;
            memcpy(o->head, r->str, r->len);
        }
        freeReplyObject(r);
    }
    if (rc != FLC_OK)
        return rc;
    rc = flc_store_read_into(s, s->scratch, HDR_MAX, &o->hdr_len, "GETRANGE");
    if (rc != FLC_OK && s->c == NULL)
        return rc;
    if (rc != FLC_OK) /* WRONGTYPE: a hash */
        o->hdr_len = 0;
    flc_err_clear(&s->err);
    return FLC_OK;
}

/* A hash without a head field (older, or the Python writer): its header
 * is at the start of field 0, read whole (one chunk). */
static int read_field0(flc_store_t *s, const char *key, size_t len0)
{
    const char *c[] = {"HGET", key, "0"};
    size_t got = 0;
    int rc = flc_store_grow_scratch(s, len0);
    rc = rc ? rc : flc_store_append(s, 3, c, NULL);
    rc = rc ? rc : flc_store_flush(s, "HGET");
    rc = rc ? rc : flc_store_read_into(s, s->scratch, len0, &got, "HGET");
    if (rc == FLC_OK && got != len0)
        rc = flc_err_set(&s->err, FLC_EDATA, "chunk 0 has %zu bytes, expected %zu (key %s)", got,
                         len0, key);
    return rc;
}

static int open_key(flc_store_t *s, const char *key, const char *what, flc_store_part_t *p)
{
    memset(p, 0, sizeof *p);
    snprintf(p->key, sizeof p->key, "%s", key);
    flc_store_in_step(s, "an earlier operation");
    opened_t o = {0};
    int rc = flc_store_ensure(s);
    rc = rc ? rc : flc_store_grow_scratch(s, HDR_MAX);
    rc = rc ? rc : read_sizes(s, key, &o);
    if (rc != FLC_OK)
        return flc_err_wrap(&s->err, "reading %s: ", what);
    int hashed = o.fields > 0;
    if (!hashed && o.len <= 0)
        return flc_err_set(&s->err, FLC_ENOTFOUND, "%s: not in the cache (key %s)", what, key);
    const uint8_t *hdr = (const uint8_t *)s->scratch;
    size_t hdr_len = o.hdr_len;
    if (hashed && o.chunk0 <= 0)
        return flc_err_set(&s->err, FLC_EDATA, "%s: a hash of chunks without chunk 0 (key %s)",
                           what, key);
    if (hashed && o.has_head && o.head_len > FLC_HEAD_FIXED) {
        hdr = (const uint8_t *)o.head + FLC_HEAD_FIXED; /* the head repeats the header */
        hdr_len = o.head_len - FLC_HEAD_FIXED;
    } else if (hashed) {
        if ((rc = read_field0(s, key, (size_t)o.chunk0)) != FLC_OK)
            return flc_err_wrap(&s->err, "reading %s: ", what);
        hdr_len = (size_t)o.chunk0;
    }
    flc_shard_t h = {0};
    rc = flc_shard_decode_header(hdr, hdr_len, s->opts.max_msg_bytes, &h, &p->off, &p->flen,
                                 &s->err);
    if (rc != FLC_OK)
        return flc_err_wrap(&s->err, "reading %s (key %s): ", what, key);
    long long nchunks = hashed ? o.fields - (o.has_head ? 1 : 0) : 0;
    if (!hashed && (unsigned long long)o.len != p->flen)
        return flc_err_set(&s->err, FLC_EDATA, "%s: header claims a %zu-byte frame, the value "
                           "has %lld bytes (key %s)", what, p->flen, o.len, key);
    if (hashed && ((size_t)o.chunk0 < p->off || (size_t)o.chunk0 > p->flen ||
                   (unsigned long long)nchunks != (p->flen + o.chunk0 - 1) / o.chunk0))
        return flc_err_set(&s->err, FLC_EDATA, "%s: header claims a %zu-byte frame, the value "
                           "has %lld chunks of %lld bytes (key %s)", what, p->flen, nchunks,
                           o.chunk0, key);
    if (hashed && o.has_head && hdr == (const uint8_t *)s->scratch)
        return flc_err_set(&s->err, FLC_EDATA, "%s: the head field is not a head (key %s; "
                           "written by something else?)", what, key);
    if (h.encoding != FLC_ENC_F32)
        return flc_err_set(&s->err, FLC_EINVAL, "%s is stored encoded (%s): read it whole, a "
                           "window of it is not a range of coordinates", what,
                           flc_enc_name((int)h.encoding));
    if (p->flen - p->off != h.count * sizeof(float))
        return flc_err_set(&s->err, FLC_EDATA, "%s: payload has %zu bytes, header says %llu "
                           "floats (key %s)", what, p->flen - p->off,
                           (unsigned long long)h.count, key);
    p->chunk = hashed ? (size_t)o.chunk0 : 0;
    p->head_crc = flc_crc32c(0, hdr, p->off);
    p->head = h;
    return FLC_OK;
}

int flc_store_part_open(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                        const char *client, flc_store_part_t *p)
{
    flc_err_clear(&s->err);
    if (flc_name_check_job(job, &s->err) || (client && flc_name_check(client, "client", &s->err)))
        return s->err.code;
    char key[FLC_KEY_MAX], what[256];
    int rc = client ? flc_store_update_key(s, key, job, round, shard, client)
                    : flc_store_shard_key(s, key, job, round, shard, "agg");
    if (rc != FLC_OK)
        return rc;
    if (client)
        snprintf(what, sizeof what, "update of client %s for shard %u of round %u of job %s",
                 client, shard, round, job);
    else
        snprintf(what, sizeof what, "merged shard %u of round %u of job %s", shard, round, job);
    rc = open_key(s, key, what, p);
    if (rc == FLC_OK)
        rc = flc_store_check_origin(s, &p->head, job, round, shard, client, what);
    return rc;
}
