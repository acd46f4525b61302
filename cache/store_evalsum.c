/* The cached evaluation partials next to a shard (store_evalsum.h): one
 * large value per (job, round, shard) at fl:{T}:r:<r>:evsum.
 *
 * Why not blob_get/blob_put as the Gram partial: the value is tens of MB at
 * the model size, and one GET or SET of that through hiredis 0.14
 * runs at a tenth of a GB/s (docs/architecture.md, "the large-value trap").
 * So the value is a hash of FIELD-byte fields: written from the caller's
 * memory with flc_store_send_pieces under a tmp key in the same slot, then
 * published by RENAME (a reader never sees half of it), and read with
 * pipelined HGETs copied straight into one buffer.
 *
 * The HGETs of one read are separate commands, so a RENAME of a newer value
 * can land between two of them. The value is therefore framed by a
 * generation number, the same 8 bytes first and last, unique per write: a
 * read whose first and last fields come from different writes sees two
 * numbers and answers "not found" (the caller recomputes). Every field in
 * between was read after the first and before the last, so from the same
 * write. */
#include "cache/store_evalsum.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/bigbuf.h"
#include "base/clock.h"
#include "cache/keys.h"
#include "cache/store_internal.h"

/* Bytes per hash field: the store's default chunk. hiredis 0.14 moves its
 * read buffer after every 16 KB read, so a reply costs its size squared
 * over 32 KB in memmove: 1 MiB fields made a warm evaluation slower than
 * recomputing it (bench/queries --flstore --hidden 2000), 256 KiB ones are
 * what the shard reads use (docs/architecture.md, "Measured choices"). */
#define FIELD (256u << 10)

static int evsum_key(flc_store_t *s, char *key, const char *job, uint32_t round, uint32_t shard)
{
    return flc_store_shard_key(s, key, job, round, shard, "evsum");
}

int flc_store_evalsum_put(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                          const void *blob, size_t len)
{
    flc_err_clear(&s->err);
    char key[FLC_KEY_MAX], tmp[FLC_KEY_MAX + 40];
    int rc = evsum_key(s, key, job, round, shard);
    if (rc == FLC_OK)
        rc = flc_store_ensure(s);
    if (rc != FLC_OK)
        return rc;
    uint64_t gen = ((uint64_t)getpid() << 40) ^ (flc_wall_ms() << 12) ^ ++s->tmp_counter;
    snprintf(tmp, sizeof tmp, "%s~tmp.%d.%llu", key, (int)getpid(),
             (unsigned long long)s->tmp_counter);
    /* The value: gen | blob | gen, cut into FIELD-byte fields. */
    size_t total = len + 16, field = 0;
    int ncmd = 0;
    const struct iovec seg[3] = {{&gen, 8}, {(void *)blob, len}, {&gen, 8}};
    for (size_t off = 0; rc == FLC_OK && off < total; off += FIELD, field++) {
        size_t end = total - off < FIELD ? total : off + FIELD, at = 0;
        struct iovec pc[3];
        int np = 0;
        for (int k = 0; k < 3; at += seg[k].iov_len, k++) { /* seg k's part in [off, end) */
            size_t lo = off > at ? off : at, hi = end < at + seg[k].iov_len ? end
                                                                           : at + seg[k].iov_len;
            if (hi > lo)
                pc[np++] = (struct iovec){(char *)seg[k].iov_base + (lo - at), hi - lo};
        }
        char f[24];
        snprintf(f, sizeof f, "%zu", field);
        const char *argv[] = {"HSET", tmp, f};
        rc = flc_store_send_pieces(s, 3, argv, pc, np, "HSET");
        ncmd++;
    }
    if (rc == FLC_OK) {
        const char *exp[] = {"PEXPIRE", tmp, "600000"}; /* an orphan goes by itself */
        rc = flc_store_append(s, 3, exp, NULL);
        ncmd++;
    }
    if (rc == FLC_OK)
        rc = flc_store_flush(s, "HSET");
    if (rc == FLC_OK)
        rc = flc_store_read_replies(s, ncmd, "HSET", NULL);
    if (rc != FLC_OK) {
        flc_err_t keep = s->err;
        if (s->c != NULL || s->cl != NULL) { /* refused (NOPERM, OOM): drop the tmp key */
            const char *del[] = {"DEL", tmp};
            redisReply *r = NULL;
            if (flc_store_command(s, &r, 2, del, NULL) == FLC_OK && r)
                freeReplyObject(r);
        }
        s->err = keep;
        return flc_err_wrap(&s->err, "caching the evaluation partials (key %s): ", key);
    }
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)s->opts.ttl_ms);
    const char *ren[] = {"RENAME", tmp, key};
    const char *exp[] = {"PEXPIRE", key, ttl};
    const char *per[] = {"PERSIST", key};
    rc = flc_store_append(s, 3, ren, NULL);
    if (rc == FLC_OK)
        rc = s->opts.ttl_ms ? flc_store_append(s, 3, exp, NULL) : flc_store_append(s, 2, per, NULL);
    if (rc == FLC_OK)
        rc = flc_store_flush(s, "RENAME");
    if (rc == FLC_OK)
        rc = flc_store_read_replies(s, 2, "RENAME", NULL);
    return rc == FLC_OK ? rc : flc_err_wrap(&s->err, "caching the evaluation partials "
                                            "(key %s): ", key);
}

int flc_store_evalsum_get(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                          char **blob, size_t *len, size_t *bcap)
{
    *blob = NULL;
    *len = *bcap = 0;
    flc_err_clear(&s->err);
    flc_store_in_step(s, "an earlier operation");
    char key[FLC_KEY_MAX];
    int rc = evsum_key(s, key, job, round, shard);
    if (rc == FLC_OK)
        rc = flc_store_ensure(s);
    if (rc != FLC_OK)
        return rc;
    const char *hl[] = {"HLEN", key};
    redisReply *r = NULL;
    if ((rc = flc_store_command(s, &r, 2, hl, NULL)) != FLC_OK)
        return rc;
    long long n = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);
    if (n <= 0 || (unsigned long long)n > (SIZE_MAX - 64) / FIELD)
        return flc_err_set(&s->err, FLC_ENOTFOUND, "evaluation partials of shard %u of round "
                           "%u of job %s: not in the cache (key %s)", shard, round, job, key);
    size_t cap = (size_t)n * FIELD;
    char *buf = flc_big_alloc(cap + 1);
    uint64_t gen0 = 0;
    if (buf == NULL)
        return flc_err_set(&s->err, FLC_ENOMEM, "out of memory for %zu bytes of evaluation "
                           "partials", cap);
    for (long long i = 0; rc == FLC_OK && i < n; i++) {
        char f[24];
        snprintf(f, sizeof f, "%lld", i);
        const char *hg[] = {"HGET", key, f};
        rc = flc_store_append(s, 3, hg, NULL);
    }
    if (rc == FLC_OK)
        rc = flc_store_flush(s, "HGET");
    size_t off = 0;
    int short_read = 0;
    int bad = FLC_OK;
    for (long long i = 0; rc == FLC_OK && i < n; i++) { /* every reply: stay in step */
        size_t l = 0;
        int r = flc_store_read_into(s, buf + off, cap - off, &l, "HGET");
        if (r != FLC_OK && s->c == NULL)
            rc = r; /* connection gone: nothing more to read */
        else if (r != FLC_OK)
            bad = bad ? bad : r;
        else if (l > cap - off || (l < FIELD && i + 1 < n) || l < (i == 0 ? 8u : 1u)) {
            short_read = 1; /* replaced in between, or not ours: recompute */
        } else if (i == 0) { /* the generation aside: the value starts at buf */
            memcpy(&gen0, buf, 8);
            memmove(buf, buf + 8, l - 8);
            off = l - 8;
        } else {
            off += l;
        }
    }
    if (rc == FLC_OK)
        rc = bad;
    uint64_t gen1 = ~gen0;
    if (rc == FLC_OK && !short_read && off >= 8)
        memcpy(&gen1, buf + off - 8, 8);
    if (rc == FLC_OK && gen0 != gen1)
        rc = flc_err_set(&s->err, FLC_ENOTFOUND, "evaluation partials of shard %u of round %u "
                         "of job %s: replaced while read (key %s)", shard, round, job, key);
    if (rc != FLC_OK) {
        flc_big_free(buf, cap + 1);
        return rc;
    }
    *len = off - 8;
    buf[*len] = '\0';
    *blob = buf;
    *bcap = cap + 1;
    return FLC_OK;
}
