/* The bytes of one Redis value exactly as the store wrote it, for the cold
 * tier to move: read before a spill (a string, or the hash of chunk fields
 * "0".."n-1" the store uses for big values) and written back on a re-warm
 * or a prefetch in the same layout, never over a newer value. A hash's head
 * field "h" (store_put_head.h) is not part of the bytes: the copy holds the
 * frame alone, and the head is made again from it when written back. */
#include "cache/cold_tier_internal.h"
#include "cache/store_put_head.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

/* Reads the bytes of key (a string, or a hash of chunk fields "0".."n-1")
 * into a new malloc'd *buf. FLC_ENOTFOUND when the key does not exist. */
int flc_tier_read_raw(flc_store_t *s, const char *key, uint8_t **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    redisReply *r;
    int rc = flc_store_commandf(s, &r, "GET %s", key);
    if (rc == FLC_OK) {
        int found = r->type == REDIS_REPLY_STRING;
        if (found) {
            *buf = malloc(r->len ? r->len : 1);
            if (*buf)
                memcpy(*buf, r->str, r->len);
            *len = r->len;
        }
        freeReplyObject(r);
        if (!found)
            return flc_err_set(&s->err, FLC_ENOTFOUND, "%s is not in the cache", key);
        return *buf ? FLC_OK : flc_err_set(&s->err, FLC_ENOMEM, "out of memory");
    }
    if (s->c == NULL || strstr(s->err.msg, "WRONGTYPE") == NULL)
        return rc;
    flc_err_clear(&s->err);
    rc = flc_store_commandf(s, &r, "HLEN %s", key);
    if (rc != FLC_OK)
        return rc;
    long long n = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);
    rc = flc_store_commandf(s, &r, "HEXISTS %s %s", key, FLC_HEAD_FIELD);
    if (rc != FLC_OK)
        return rc;
    n -= r->type == REDIS_REPLY_INTEGER && r->integer == 1; /* chunks, not fields */
    freeReplyObject(r);
    if (n <= 0)
        return flc_err_set(&s->err, FLC_ENOTFOUND, "%s is not in the cache", key);
    for (long long i = 0; i < n && rc == FLC_OK; i++) {
        char f[24];
        snprintf(f, sizeof f, "%lld", i);
        const char *argv[] = {"HGET", key, f};
        rc = flc_store_append(s, 3, argv, NULL);
    }
    rc = rc ? rc : flc_store_flush(s, "HGET");
    size_t cap = 0;
    int bad = FLC_OK;
    for (long long i = 0; i < n && rc == FLC_OK; i++) {
        rc = flc_store_read(s, &r, "HGET");
        if (rc != FLC_OK)
            break;
        if (r->type != REDIS_REPLY_STRING) {
            bad = flc_err_set(&s->err, FLC_EDATA, "%s: chunk %lld is missing", key, i);
        } else if (bad == FLC_OK) {
            if (*len + r->len > cap) {
                size_t nc = (*len + r->len) * (size_t)(i == 0 ? n : 2);
                uint8_t *p = realloc(*buf, nc);
                if (p == NULL)
                    bad = flc_err_set(&s->err, FLC_ENOMEM, "out of memory");
                else
                    *buf = p, cap = nc;
            }
            if (bad == FLC_OK) {
                memcpy(*buf + *len, r->str, r->len);
                *len += r->len;
            }
        }
        freeReplyObject(r);
    }
    rc = rc ? rc : bad;
    if (rc != FLC_OK) {
        free(*buf);
        *buf = NULL;
        *len = 0;
    }
    return rc;
}

/* Writes bytes back under key unless the key exists (a newer value wins):
 * SET NX for a value of up to FLC_STORE_SPLIT chunks, else a hash of chunk
 * fields built under a tmp key and published with RENAMENX, the layout
 * put_shard uses. *written = 0 when the key already existed. */
int flc_tier_write_raw(flc_store_t *s, const char *key, const uint8_t *buf, size_t len,
                     int *written)
{
    *written = 0;
    size_t chunk = s->opts.chunk_bytes;
    redisReply *r;
    int rc;
    if (len <= FLC_STORE_SPLIT * chunk) {
        const char *argv[] = {"SET", key, (const char *)buf, "NX"};
        size_t lens[] = {3, strlen(key), len, 2};
        rc = flc_store_command(s, &r, 4, argv, lens);
        if (rc != FLC_OK)
            return rc;
        *written = r->type == REDIS_REPLY_STATUS;
        freeReplyObject(r);
        return FLC_OK;
    }
    char tmp[FLC_KEY_MAX + 32];
    snprintf(tmp, sizeof tmp, "%s~warm.%llu", key, (unsigned long long)++s->tmp_counter);
    int n = 0, nrep = 0;
    rc = flc_store_ensure(s);
    for (size_t off = 0; rc == FLC_OK && off < len; off += chunk, n++) {
        char f[16];
        snprintf(f, sizeof f, "%d", n);
        const char *argv[] = {"HSET", tmp, f};
        struct iovec piece = {(void *)(buf + off), len - off < chunk ? len - off : chunk};
        rc = flc_store_send_pieces(s, 3, argv, &piece, 1, "HSET");
        nrep++;
    }
    /* The head field, as put_shard writes it (bytes that are no frame: none). */
    uint8_t hf[FLC_HEAD_MAX];
    size_t hfl = flc_store_head_of_frame(hf, buf, len);
    if (rc == FLC_OK && hfl > 0) {
        const char *argv[] = {"HSET", tmp, FLC_HEAD_FIELD, (const char *)hf};
        size_t lens[] = {4, strlen(tmp), strlen(FLC_HEAD_FIELD), hfl};
        rc = flc_store_append(s, 4, argv, lens);
        rc = rc ? rc : flc_store_flush(s, "HSET");
        nrep++;
    }
    /* Read every reply even after an error one (OOM...), so the connection
     * stays in step; only a lost connection stops the loop. */
    int bad = FLC_OK;
    for (int i = 0; rc == FLC_OK && i < nrep; i++) {
        rc = flc_store_read(s, &r, "HSET");
        if (rc == FLC_OK) {
            if (r->type == REDIS_REPLY_ERROR && bad == FLC_OK)
                bad = flc_store_reply_error(s, r, "HSET");
            freeReplyObject(r);
        }
    }
    rc = rc ? rc : bad;
    if (rc == FLC_OK)
        rc = flc_store_commandf(s, &r, "RENAMENX %s %s", tmp, key);
    if (rc == FLC_OK) {
        *written = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
        freeReplyObject(r);
    }
    if (!*written && s->c) {
        redisReply *d = redisCommand(s->c, "DEL %s", tmp);
        if (d)
            freeReplyObject(d);
    }
    return rc;
}
