/* .npy and .safetensors files of one flat float32 vector (ml/tensor_file.h).
 * Written directly: both formats are a short header and the raw floats, and
 * a library for either would bring more code than the format has. Reading
 * accepts what we write and the common variants other tools produce (npy
 * version 1-3, any C-order shape; safetensors with other tensors beside
 * "params"), and refuses the rest naming why. The host is little-endian
 * (x86-64, arm64), as both formats' data here are. */
#include "ml/tensor_file.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int flc_tfile_format_parse(const char *s, flc_tfile_format_t *f, flc_err_t *e)
{
    if (s && strcmp(s, "npy") == 0)
        *f = FLC_TFILE_NPY;
    else if (s && strcmp(s, "safetensors") == 0)
        *f = FLC_TFILE_SAFETENSORS;
    else
        return flc_err_set(e, FLC_EINVAL, "format must be npy or safetensors, not '%s'",
                           s ? s : "");
    return FLC_OK;
}

/* Appends s to buf (cap bytes) as JSON string contents. */
static size_t json_str(char *buf, size_t at, size_t cap, const char *s)
{
    for (; *s && at + 2 < cap; s++) {
        if (*s == '"' || *s == '\\')
            buf[at++] = '\\';
        buf[at++] = *s;
    }
    buf[at] = '\0';
    return at;
}

static size_t st_header(char *h, size_t cap, size_t n, const char *name, const char *const *meta,
                        size_t nmeta)
{
    size_t at = (size_t)snprintf(h, cap, "{\"__metadata__\":{");
    for (size_t i = 0; i < nmeta && at < cap; i++) {
        at += (size_t)snprintf(h + at, cap - at, "%s\"", i ? "," : "");
        at = json_str(h, at, cap, meta[2 * i]);
        at += (size_t)snprintf(h + at, cap - at, "\":\"");
        at = json_str(h, at, cap, meta[2 * i + 1]);
        at += (size_t)snprintf(h + at, cap - at, "\"");
    }
    at += (size_t)snprintf(h + at, cap - at, "},\"");
    at = json_str(h, at, cap, name ? name : "params");
    at += (size_t)snprintf(h + at, cap - at,
                           "\":{\"dtype\":\"F32\",\"shape\":[%zu],\"data_offsets\":[0,%zu]}}",
                           n, n * sizeof(float));
    while (at % 8 != 0 && at + 1 < cap) /* the data starts 8-byte aligned */
        h[at++] = ' ';
    h[at] = '\0';
    return at;
}

int flc_tfile_write(const char *path, flc_tfile_format_t f, const float *v, size_t n,
                    const char *name, const char *const *meta, size_t nmeta, flc_err_t *e)
{
    char head[8192];
    size_t hlen;
    unsigned char pre[10];
    size_t prelen;
    if (f == FLC_TFILE_NPY) {
        int l = snprintf(head, sizeof head,
                         "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu,), }", n);
        hlen = (size_t)l;
        while ((10 + hlen + 1) % 64 != 0)
            head[hlen++] = ' ';
        head[hlen++] = '\n';
        memcpy(pre, "\x93NUMPY\x01\x00", 8);
        pre[8] = (unsigned char)(hlen & 0xff);
        pre[9] = (unsigned char)(hlen >> 8);
        prelen = 10;
    } else {
        hlen = st_header(head, sizeof head, n, name, meta, nmeta);
        if (hlen + 1 >= sizeof head)
            return flc_err_set(e, FLC_EINVAL, "%s: safetensors metadata too long", path);
        uint64_t h64 = hlen;
        for (int i = 0; i < 8; i++)
            pre[i] = (unsigned char)(h64 >> (8 * i));
        prelen = 8;
    }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *fp = fopen(tmp, "wb");
    if (fp == NULL)
        return flc_err_set(e, FLC_EIO, "cannot write %s", path);
    int ok = fwrite(pre, 1, prelen, fp) == prelen && fwrite(head, 1, hlen, fp) == hlen &&
             fwrite(v, sizeof *v, n, fp) == n;
    ok &= fclose(fp) == 0;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return flc_err_set(e, FLC_EIO, "cannot write %s (disk full or no permission?)", path);
    }
    return FLC_OK;
}

/* The whole file into a malloc'd buffer. */
static int slurp(const char *path, unsigned char **buf, size_t *len, flc_err_t *e)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return flc_err_set(e, FLC_EIO, "cannot open %s", path);
    fseek(fp, 0, SEEK_END);
    long sz = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    *buf = sz >= 0 ? malloc((size_t)sz + 1) : NULL;
    if (*buf == NULL || fread(*buf, 1, (size_t)sz, fp) != (size_t)sz) {
        free(*buf);
        fclose(fp);
        return flc_err_set(e, FLC_EIO, "cannot read %s", path);
    }
    (*buf)[sz] = '\0';
    *len = (size_t)sz;
    fclose(fp);
    return FLC_OK;
}

static int read_npy(const char *path, const unsigned char *b, size_t len, float **v, size_t *n,
                    flc_err_t *e)
{
    size_t hl, at;
    if (len < 10)
        return flc_err_set(e, FLC_EDATA, "%s: truncated npy header", path);
    if (b[6] == 1) {
        hl = b[8] | (size_t)b[9] << 8;
        at = 10;
    } else if (len >= 12) {
        hl = b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
        at = 12;
    } else {
        return flc_err_set(e, FLC_EDATA, "%s: truncated npy header", path);
    }
    if (at + hl > len)
        return flc_err_set(e, FLC_EDATA, "%s: npy header runs past the file", path);
    char *h = strndup((const char *)b + at, hl);
    if (h == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    int rc = FLC_OK;
    const char *shape = strstr(h, "'shape'");
    if (strstr(h, "'<f4'") == NULL)
        rc = flc_err_set(e, FLC_EDATA, "%s: not little-endian float32 ('<f4')", path);
    else if (strstr(h, "'fortran_order': True"))
        rc = flc_err_set(e, FLC_EDATA, "%s: Fortran order is not supported", path);
    else if (shape == NULL || (shape = strchr(shape, '(')) == NULL)
        rc = flc_err_set(e, FLC_EDATA, "%s: npy header has no shape", path);
    size_t count = 1;
    for (const char *p = shape + (rc == FLC_OK); rc == FLC_OK && *p && *p != ')';) {
        char *end;
        unsigned long long d = strtoull(p, &end, 10);
        if (end == p) {
            p++;
            continue;
        }
        count *= (size_t)d;
        p = end;
    }
    free(h);
    if (rc != FLC_OK)
        return rc;
    at += hl;
    if (len - at != count * sizeof(float))
        return flc_err_set(e, FLC_EDATA, "%s: %zu data bytes for %zu floats", path, len - at,
                           count);
    if ((*v = malloc(count ? count * sizeof(float) : 1)) == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory for %zu floats", count);
    memcpy(*v, b + at, count * sizeof(float));
    *n = count;
    return FLC_OK;
}

/* In the safetensors header h, the object of tensor `key` (start of its
 * '{'), or NULL. */
static const char *st_find(const char *h, const char *key)
{
    char pat[80];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(h, pat);
    return p ? strchr(p + strlen(pat), '{') : NULL;
}

/* The first tensor object that is not __metadata__. */
static const char *st_first(const char *h)
{
    const char *p = strstr(h, "\"dtype\"");
    while (p && p > h && *p != '{')
        p--;
    return p;
}

static int read_st(const char *path, const unsigned char *b, size_t len, float **v, size_t *n,
                   flc_err_t *e)
{
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++)
        hl |= (uint64_t)b[i] << (8 * i);
    if (hl > len - 8)
        return flc_err_set(e, FLC_EDATA, "%s: safetensors header runs past the file", path);
    char *h = strndup((const char *)b + 8, (size_t)hl);
    if (h == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    const char *t = st_find(h, "params");
    if (t == NULL)
        t = st_first(h);
    int rc = FLC_OK;
    const char *dt = t ? strstr(t, "\"dtype\"") : NULL, *off = t ? strstr(t, "\"data_offsets\"") : NULL;
    unsigned long long a = 0, z = 0;
    if (t == NULL || dt == NULL || off == NULL)
        rc = flc_err_set(e, FLC_EDATA, "%s: no tensor in the safetensors header", path);
    else if (strchr(dt + 7, '"') == NULL || strncmp(strchr(dt + 7, '"'), "\"F32\"", 5) != 0)
        rc = flc_err_set(e, FLC_EDATA, "%s: the tensor is not F32", path);
    else if (strchr(off, '[') == NULL)
        rc = flc_err_set(e, FLC_EDATA, "%s: unreadable data_offsets", path);
    else if (sscanf(strchr(off, '['), "[%llu,%llu]", &a, &z) != 2 &&
             sscanf(strchr(off, '['), "[ %llu , %llu ]", &a, &z) != 2)
        rc = flc_err_set(e, FLC_EDATA, "%s: unreadable data_offsets", path);
    free(h);
    if (rc != FLC_OK)
        return rc;
    size_t base = 8 + (size_t)hl;
    if (z < a || (z - a) % 4 != 0 || base + z > len)
        return flc_err_set(e, FLC_EDATA, "%s: data_offsets [%llu, %llu] outside the %zu data "
                           "bytes", path, a, z, len - base);
    size_t count = (size_t)(z - a) / 4;
    if ((*v = malloc(count ? count * sizeof(float) : 1)) == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory for %zu floats", count);
    memcpy(*v, b + base + a, count * sizeof(float));
    *n = count;
    return FLC_OK;
}

int flc_tfile_read(const char *path, float **v, size_t *n, flc_err_t *e)
{
    unsigned char *b = NULL;
    size_t len = 0;
    int rc = slurp(path, &b, &len, e);
    if (rc != FLC_OK)
        return rc;
    if (len >= 6 && memcmp(b, "\x93NUMPY", 6) == 0)
        rc = read_npy(path, b, len, v, n, e);
    else if (len >= 9 && b[8] == '{')
        rc = read_st(path, b, len, v, n, e);
    else
        rc = flc_err_set(e, FLC_EDATA, "%s is neither an npy nor a safetensors file", path);
    free(b);
    return rc;
}

int flc_tfile_load_into(const char *path, float *dst, size_t n, flc_err_t *e)
{
    float *v = NULL;
    size_t got = 0;
    int rc = flc_tfile_read(path, &v, &got, e);
    if (rc == FLC_OK && got != n)
        rc = flc_err_set(e, FLC_EDIM, "%s holds %zu floats; this model has %zu parameters",
                         path, got, n);
    if (rc == FLC_OK)
        memcpy(dst, v, n * sizeof *dst);
    free(v);
    return rc;
}
