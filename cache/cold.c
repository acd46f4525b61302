/* The cold tier's API: opens the backend the URL names (cold_file.c for
 * file://, cold_s3.c for http(s)://), sends each call to it, keeps the
 * counters, and owns what both backends share: the object trailer (CRC-32C
 * and length, checked on every read) and the encoding of keys into object
 * names. */
#include "cache/cold_internal.h"

#include <stdlib.h>
#include <string.h>

#include "base/crc32c.h"

/* ---- trailer and names ------------------------------------------------------ */

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

void flc_cold_trailer(const void *data, size_t len, uint8_t out[FLC_COLD_TRAILER])
{
    memcpy(out, "FLCK", 4);
    put_le32(out + 4, flc_crc32c(0, data, len));
    put_le64(out + 8, len);
}

int flc_cold_verify(flc_cold_t *c, const char *key, const uint8_t *obj, size_t n,
                    size_t *body_len)
{
    if (n < FLC_COLD_TRAILER || memcmp(obj + n - FLC_COLD_TRAILER, "FLCK", 4) != 0)
        return flc_err_set(&c->err, FLC_ECHECKSUM,
                           "cold object of %s: %zu bytes without a checksum trailer "
                           "(truncated or not written by flcache)", key, n);
    const uint8_t *t = obj + n - FLC_COLD_TRAILER;
    size_t body = n - FLC_COLD_TRAILER;
    uint64_t want_len = get_le(t + 8, 8);
    if (want_len != body)
        return flc_err_set(&c->err, FLC_ECHECKSUM,
                           "cold object of %s: %zu bytes, its trailer says %llu (truncated)",
                           key, body, (unsigned long long)want_len);
    uint32_t want = (uint32_t)get_le(t + 4, 4), got = flc_crc32c(0, obj, body);
    if (want != got)
        return flc_err_set(&c->err, FLC_ECHECKSUM,
                           "cold object of %s: CRC-32C %08x, its trailer says %08x (corrupt)",
                           key, got, want);
    *body_len = body;
    return FLC_OK;
}

void flc_cold_object_name(const char *key, char *out, size_t outlen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)key; *p && o + 4 < outlen; p++) {
        unsigned ch = *p;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '.' || ch == '_' || ch == '-') {
            out[o++] = (char)ch;
        } else {
            out[o++] = '~';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        }
    }
    out[o] = '\0';
}

/* ---- API ---------------------------------------------------------------------- */

flc_cold_t *flc_cold_open(const char *url, const flc_cold_opts_t *opts, flc_err_t *err)
{
    flc_cold_opts_t o = {0};
    if (opts)
        o = *opts;
    if (url == NULL || *url == '\0') {
        flc_err_set(err, FLC_EINVAL, "cold tier: no URL");
        return NULL;
    }
    flc_cold_t *c = calloc(1, sizeof *c);
    if (c == NULL) {
        flc_err_set(err, FLC_ENOMEM, "out of memory");
        return NULL;
    }
    int rc = FLC_OK;
    if (strncmp(url, "file://", 7) == 0) {
        c->kind = FLC_COLD_FILE;
        rc = flc_cold_file_open(c, url, &o);
    } else if (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0) {
        c->kind = FLC_COLD_S3;
        rc = flc_cold_s3_open(c, url, &o);
    } else {
        rc = flc_err_set(&c->err, FLC_EINVAL,
                         "cold tier URL '%s': expected file://, http:// or https://", url);
    }
    if (rc != FLC_OK) {
        if (err)
            *err = c->err;
        flc_cold_close(c);
        return NULL;
    }
    return c;
}

void flc_cold_close(flc_cold_t *c)
{
    if (c == NULL)
        return;
    if (c->kind == FLC_COLD_S3)
        flc_cold_s3_close(c);
    free(c);
}

int flc_cold_put(flc_cold_t *c, const char *key, const void *data, size_t len)
{
    flc_err_clear(&c->err);
    c->st.puts++;
    return c->kind == FLC_COLD_FILE ? flc_cold_file_put(c, key, data, len)
                                    : flc_cold_s3_put(c, key, data, len);
}

int flc_cold_get(flc_cold_t *c, const char *key, uint8_t **data, size_t *len)
{
    flc_err_clear(&c->err);
    *data = NULL;
    *len = 0;
    c->st.gets++;
    uint8_t *obj = NULL;
    size_t n = 0;
    int rc = c->kind == FLC_COLD_FILE ? flc_cold_file_get(c, key, &obj, &n)
                                      : flc_cold_s3_get(c, key, &obj, &n);
    if (rc == FLC_ENOTFOUND)
        c->st.misses++;
    if (rc != FLC_OK)
        return rc;
    c->st.bytes_got += n;
    size_t body;
    rc = flc_cold_verify(c, key, obj, n, &body);
    if (rc != FLC_OK) {
        free(obj);
        return rc;
    }
    *data = obj; /* the trailer stays behind the body, unused */
    *len = body;
    return FLC_OK;
}

int flc_cold_del(flc_cold_t *c, const char *key)
{
    flc_err_clear(&c->err);
    c->st.dels++;
    return c->kind == FLC_COLD_FILE ? flc_cold_file_del(c, key) : flc_cold_s3_del(c, key);
}

int flc_cold_del_prefix(flc_cold_t *c, const char *key_prefix, int dry_run, uint64_t *n,
                        uint64_t *bytes)
{
    flc_err_clear(&c->err);
    *n = *bytes = 0;
    /* Keys are encoded byte by byte, so the encoded prefix is the prefix of
     * every encoded name. */
    char name[FLC_COLD_NAME_MAX];
    flc_cold_object_name(key_prefix, name, sizeof name);
    if (name[0] == '\0')
        return flc_err_set(&c->err, FLC_EINVAL, "cold tier: refusing to delete by an empty "
                           "prefix (every object)");
    return c->kind == FLC_COLD_FILE ? flc_cold_file_del_prefix(c, name, dry_run, n, bytes)
                                    : flc_cold_s3_del_prefix(c, name, dry_run, n, bytes);
}

const flc_err_t *flc_cold_error(const flc_cold_t *c)
{
    return &c->err;
}

const char *flc_cold_errstr(const flc_cold_t *c)
{
    return flc_err_msg(&c->err);
}

int flc_cold_is_local(const flc_cold_t *c)
{
    return c->kind == FLC_COLD_FILE;
}

void flc_cold_get_stats(const flc_cold_t *c, flc_cold_stats_t *st)
{
    *st = c->st;
}

int flc_cold_locate(const flc_cold_t *c, const char *key, char *out, size_t outlen)
{
    if (c->kind == FLC_COLD_FILE)
        flc_cold_file_path(c, key, out, outlen);
    else
        flc_cold_s3_object_url(c, key, out, outlen);
    return FLC_OK;
}