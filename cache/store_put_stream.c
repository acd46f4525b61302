/* store_put_stream.c - a merged shard written window by window from a fill
 * callback (store_put_stream.h). The layout is store_put.c's hash of
 * chunks; what differs is where the payload comes from: one window of
 * floats at a time, a chunk field that straddles two windows assembled in
 * a chunk-sized carry buffer, the head field's CRC-32C summed as the
 * windows are filled and the head written last (the tmp key is invisible
 * until the RENAME, so the order of its fields does not matter). */
#include "cache/store_internal.h"

#include "base/crc32c.h"
#include "cache/encode.h"
#include "cache/store_put_head.h"
#include "cache/store_put_stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#define WINDOW_DEFAULT (512u * 1024u) /* floats: 2 MiB */

/* The payload as a sequence of windows: [lo, hi) are the payload bytes in
 * buf, next the first float not filled yet. */
typedef struct win {
    flc_store_stream_t *how;
    const flc_shard_t *hdr;
    float *buf;
    size_t floats; /* capacity of buf */
    size_t lo, hi;
    uint64_t next;
    uint32_t crc;
} win_t;

static int win_next(flc_store_t *s, win_t *w, const char *what)
{
    uint64_t left = w->hdr->count - w->next;
    size_t n = left < w->floats ? (size_t)left : w->floats;
    int rc = w->how->fill(w->how->user, w->next, n, w->buf);
    if (rc != FLC_OK)
        return flc_err_set(&s->err, rc < 0 ? rc : FLC_EIO, "%s: its values could not be made "
                           "(floats %llu..%llu)", what, (unsigned long long)w->next,
                           (unsigned long long)(w->next + n));
    w->crc = flc_crc32c(w->crc, w->buf, n * sizeof(float));
    w->lo = (size_t)w->next * sizeof(float);
    w->hi = w->lo + n * sizeof(float);
    w->next += n;
    return FLC_OK;
}

/* A value of at most FLC_STORE_SPLIT chunks: filled whole and written as
 * store_put.c writes it (one string). */
static int put_small(flc_store_t *s, const flc_shard_t *hdr, flc_store_stream_t *how,
                     const char *what)
{
    flc_shard_t sh = *hdr;
    float *v = malloc((size_t)(sh.count ? sh.count : 1) * sizeof *v);
    if (v == NULL)
        return flc_err_set(&s->err, FLC_ENOMEM, "%s: out of memory", what);
    int rc = how->fill(how->user, 0, (size_t)sh.count, v);
    if (rc != FLC_OK)
        rc = flc_err_set(&s->err, rc < 0 ? rc : FLC_EIO, "%s: its values could not be made",
                         what);
    if (rc == FLC_OK) {
        how->crc = flc_crc32c(0, v, (size_t)sh.count * sizeof *v);
        sh.values = v;
        rc = flc_store_put_merged_done(s, &sh, how->opened, how->token, how->copies);
    }
    free(v);
    return rc;
}

/* Reads the replies of the commands sent so far (the last ones may still
 * sit in the output buffer: flushed first). */
static int settle(flc_store_t *s, int *pending)
{
    int rc = flc_store_flush(s, "HSET");
    rc = rc ? rc : flc_store_read_replies(s, *pending, "HSET", NULL);
    *pending = 0;
    return rc;
}

/* Phase 1: the chunk fields and the head under tmp. Replies are read after
 * every window, so a cluster's resend queue (which keeps each command until
 * its reply) holds one window, not the shard. */
static int send_chunks(flc_store_t *s, win_t *w, const char *tmp, const uint8_t *head, size_t hl,
                       char *carry, const char *what)
{
    size_t chunk = s->opts.chunk_bytes, pl = (size_t)w->hdr->count * sizeof(float);
    int pending = 0;
    const char *exp[] = {"PEXPIRE", tmp, "600000"}; /* orphans expire */
    int rc = FLC_OK;
    unsigned field = 0;
    for (size_t a = 0; rc == FLC_OK && a < pl; field++) {
        size_t b = field == 0 ? chunk - hl : a + chunk;
        b = b < pl ? b : pl;
        while (rc == FLC_OK && a >= w->hi) { /* the field starts in the next window */
            rc = settle(s, &pending);
            rc = rc ? rc : win_next(s, w, what);
        }
        if (rc != FLC_OK)
            break;
        struct iovec piece[2];
        int np = 0;
        if (field == 0)
            piece[np++] = (struct iovec){(void *)head, hl};
        if (b <= w->hi) {
            piece[np++] = (struct iovec){(char *)w->buf + (a - w->lo), b - a};
        } else { /* straddles two windows: assembled in carry */
            size_t m = w->hi - a;
            memcpy(carry, (char *)w->buf + (a - w->lo), m);
            rc = settle(s, &pending);
            rc = rc ? rc : win_next(s, w, what);
            if (rc != FLC_OK)
                break;
            memcpy(carry + m, w->buf, b - a - m);
            piece[np++] = (struct iovec){carry, b - a};
        }
        char f[16];
        snprintf(f, sizeof f, "%u", field);
        const char *set[] = {"HSET", tmp, f};
        rc = flc_store_send_pieces(s, 3, set, piece, np, "HSET");
        pending++;
        if (rc == FLC_OK && field == 0) {
            rc = flc_store_append(s, 3, exp, NULL);
            pending++;
        }
        a = b;
    }
    if (rc == FLC_OK && w->next != w->hdr->count)
        rc = flc_err_set(&s->err, FLC_EPROTO, "%s: %llu of %llu floats written (store bug)",
                         what, (unsigned long long)w->next,
                         (unsigned long long)w->hdr->count);
    if (rc == FLC_OK) { /* the head field, now that the payload's CRC is known */
        uint8_t hf[FLC_HEAD_MAX];
        size_t hfl = flc_store_head_make_crc(hf, head, hl, w->crc);
        const char *hs[] = {"HSET", tmp, FLC_HEAD_FIELD, (const char *)hf};
        size_t lens[] = {4, strlen(tmp), strlen(FLC_HEAD_FIELD), hfl};
        rc = flc_store_append(s, 4, hs, lens);
        pending++;
        rc = rc ? rc : flc_store_flush(s, "HSET");
    }
    if (rc == FLC_OK || s->c != NULL) { /* the connection stays in step */
        int r = flc_store_read_replies(s, pending, "HSET", NULL);
        rc = rc ? rc : r;
    }
    return rc;
}

/* Phase 2: publish, expire or persist, index and notify, one round trip. */
static int publish(flc_store_t *s, const flc_shard_t *hdr, const char *tag, const char *key,
                   const char *tmp, const flc_store_stream_t *how)
{
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)s->opts.ttl_ms);
    int ncmd = 2;
    const char *ren[] = {"RENAME", tmp, key};
    const char *exp[] = {"PEXPIRE", key, ttl};
    const char *per[] = {"PERSIST", key};
    int rc = flc_store_append(s, 3, ren, NULL);
    rc = rc ? rc
            : s->opts.ttl_ms ? flc_store_append(s, 3, exp, NULL) : flc_store_append(s, 2, per, NULL);
    rc = rc ? rc
            : flc_store_append_merged_tail(s, hdr, tag, key, how->opened, how->token, how->copies,
                                           &ncmd);
    rc = rc ? rc : flc_store_flush(s, "RENAME");
    return rc ? rc : flc_store_read_replies(s, ncmd, "RENAME", NULL);
}

static int put_once(flc_store_t *s, const flc_shard_t *hdr, flc_store_stream_t *how,
                    const char *what, uint64_t total)
{
    if (s->tier && flc_tier_before_put(s, total) != FLC_OK)
        return flc_err_wrap(&s->err, "making room for %s: ", what);
    uint8_t head[FLC_FRAME_PREFIX + FLC_FRAME_HEADER_MAX];
    size_t hl;
    int rc = flc_shard_encode_header(hdr, head, sizeof head, &hl, &s->err);
    if (rc != FLC_OK)
        return rc;
    char tag[FLC_TAG_MAX], key[FLC_KEY_MAX], tmp[FLC_KEY_MAX + 32];
    flc_key_shard_tag(tag, hdr->job, hdr->shard, hdr->num_shards);
    flc_key_shard(key, tag, hdr->round, "agg");
    snprintf(tmp, sizeof tmp, "%s~tmp.%d.%llu", key, (int)getpid(),
             (unsigned long long)++s->tmp_counter);
    size_t chunk = s->opts.chunk_bytes;
    win_t w = {.how = how, .hdr = hdr, .floats = how->window ? how->window : WINDOW_DEFAULT};
    if (w.floats < chunk / sizeof(float) + 1) /* a field straddles at most two windows */
        w.floats = chunk / sizeof(float) + 1;
    if (w.floats > hdr->count)
        w.floats = (size_t)hdr->count;
    w.buf = malloc(w.floats * sizeof *w.buf);
    char *carry = malloc(chunk);
    if (w.buf == NULL || carry == NULL)
        rc = flc_err_set(&s->err, FLC_ENOMEM, "%s: out of memory for a window", what);
    rc = rc ? rc : win_next(s, &w, what);
    rc = rc ? rc : send_chunks(s, &w, tmp, head, hl, carry, what);
    free(carry);
    free(w.buf);
    if (rc == FLC_OK) {
        how->crc = w.crc;
        rc = publish(s, hdr, tag, key, tmp, how);
    } else if (s->c != NULL) { /* refused (OOM...) or a failed fill: drop the partial tmp key */
        flc_err_t keep = s->err;
        const char *del[] = {"DEL", tmp};
        flc_store_command(s, NULL, 2, del, NULL);
        s->err = keep;
    }
    if (rc != FLC_OK)
        return flc_err_wrap(&s->err, "storing %s (key %s): ", what, key);
    s->bytes_written += total;
    if (s->tier)
        flc_tier_after_put(s, hdr, 1, total);
    return FLC_OK;
}

int flc_store_put_merged_stream(flc_store_t *s, const flc_shard_t *sh, flc_store_stream_t *how)
{
    flc_err_clear(&s->err);
    flc_shard_t hdr = *sh;
    hdr.client[0] = '\0';
    hdr.values = NULL;
    hdr.encoding = FLC_ENC_F32; /* a merged shard is floats */
    char what[256];
    flc_shard_describe(&hdr, what, sizeof what);
    if (how == NULL || how->fill == NULL)
        return flc_err_set(&s->err, FLC_EINVAL, "%s: no fill function", what);
    uint8_t head[FLC_FRAME_PREFIX + FLC_FRAME_HEADER_MAX];
    size_t hl;
    if (flc_shard_encode_header(&hdr, head, sizeof head, &hl, &s->err) != FLC_OK)
        return s->err.code;
    /* store_put.c's choice between a string and a hash, on the same bytes */
    uint64_t total = hl + flc_shard_payload_bytes(&hdr);
    size_t chunk = s->opts.chunk_bytes;
    if (total <= FLC_STORE_SPLIT * chunk)
        return put_small(s, &hdr, how, what);
    if (total > s->opts.max_msg_bytes)
        return flc_err_set(&s->err, FLC_ETOOBIG, "%s: %llu bytes is over the message limit of "
                           "%zu", what, (unsigned long long)total, s->opts.max_msg_bytes);
    int rc = flc_store_ensure(s);
    rc = rc ? rc : flc_store_job_shards(s, hdr.job, hdr.num_shards);
    rc = rc ? rc : flc_store_job_begin(s, hdr.job, hdr.num_shards);
    if (rc != FLC_OK)
        return flc_err_wrap(&s->err, "storing %s: ", what);
    flc_store_in_step(s, "an earlier operation");
    rc = put_once(s, &hdr, how, what, total);
    if (rc == FLC_ENOMEM && s->tier && s->c) { /* as put_shard_tiered: make room, once more */
        flc_err_t first = s->err;
        if (flc_store_make_room(s, 2 * total) == FLC_OK)
            rc = put_once(s, &hdr, how, what, total);
        else
            s->err = first;
    }
    return rc;
}
