/* The cold tier's API, the object trailer (CRC-32C) and the file:// backend.
 *
 * file:// objects are files named after the encoded key in one directory. A
 * put writes "<name>.tmp.<pid>.<n>", fsyncs it (unless disabled), and renames
 * it over "<name>": a process killed mid-put leaves at most a tmp file, never
 * a half object under the real name, and the rename is the acknowledgement
 * the store waits for before it deletes the Redis copy. */
#include "cache/cold_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* ---- CRC-32C --------------------------------------------------------------- */

static uint32_t crc_table[8][256];
static int crc_ready;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xff];
    crc_ready = 1;
}

/* Slice-by-8: about 1-2 GB/s, for CPUs without SSE4.2. */
static uint32_t crc_soft(uint32_t crc, const uint8_t *p, size_t n)
{
    if (!crc_ready)
        crc_init();
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= crc;
        crc = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^
              crc_table[5][(w >> 16) & 0xff] ^ crc_table[4][(w >> 24) & 0xff] ^
              crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
              crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
        p += 8;
        n -= 8;
    }
    while (n--)
        crc = (crc >> 8) ^ crc_table[0][(crc ^ *p++) & 0xff];
    return crc;
}

#if defined(__x86_64__)
/* The crc32 instruction: about 10 GB/s, so checksumming never dominates a
 * spill or a fetch. */
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t n)
{
    uint64_t c = crc;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = __builtin_ia32_crc32di(c, w);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--)
        c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}
#endif

uint32_t flc_crc32c(uint32_t crc, const void *buf, size_t n)
{
    crc = ~crc;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2"))
        return ~crc_hw(crc, buf, n);
#endif
    return ~crc_soft(crc, buf, n);
}

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

/* ---- file:// backend -------------------------------------------------------- */

static void file_path(const flc_cold_t *c, const char *key, char *out, size_t outlen)
{
    char name[FLC_COLD_NAME_MAX];
    flc_cold_object_name(key, name, sizeof name);
    snprintf(out, outlen, "%s/%s", c->dir, name);
}

static int mkdir_p(const char *dir)
{
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    return mkdir(tmp, 0700) != 0 && errno != EEXIST ? -1 : 0;
}

static int file_put(flc_cold_t *c, const char *key, const void *data, size_t len)
{
    char path[1200], tmp[1300];
    file_path(c, key, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp.%d.%llu", path, (int)getpid(),
             (unsigned long long)++c->tmp_counter);
    uint8_t trailer[FLC_COLD_TRAILER];
    flc_cold_trailer(data, len, trailer);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return flc_err_set(&c->err, FLC_EIO, "cold tier: cannot create %s: %s", tmp,
                           strerror(errno));
    struct iovec iov[2] = {{(void *)data, len}, {trailer, sizeof trailer}};
    size_t left = len + sizeof trailer;
    int i = 0;
    while (left > 0) {
        ssize_t w = writev(fd, iov + i, 2 - i);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            return flc_err_set(&c->err, FLC_EIO, "cold tier: writing %s: %s", tmp, strerror(e));
        }
        left -= (size_t)w;
        while (i < 2 && (size_t)w >= iov[i].iov_len) {
            w -= (ssize_t)iov[i].iov_len;
            i++;
        }
        if (i < 2) {
            iov[i].iov_base = (char *)iov[i].iov_base + w;
            iov[i].iov_len -= (size_t)w;
        }
    }
    if (c->fsync && fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return flc_err_set(&c->err, FLC_EIO, "cold tier: fsync %s: %s", tmp, strerror(e));
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return flc_err_set(&c->err, FLC_EIO, "cold tier: rename to %s: %s", path, strerror(e));
    }
    c->st.bytes_put += len + sizeof trailer;
    return FLC_OK;
}

static int file_get(flc_cold_t *c, const char *key, uint8_t **obj, size_t *n)
{
    char path[1200];
    file_path(c, key, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return flc_err_set(&c->err, FLC_ENOTFOUND, "cold tier: no object for %s", key);
        return flc_err_set(&c->err, FLC_EIO, "cold tier: cannot open %s: %s", path,
                           strerror(errno));
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return flc_err_set(&c->err, FLC_EIO, "cold tier: stat %s: %s", path, strerror(errno));
    }
    size_t size = (size_t)sb.st_size;
    uint8_t *buf = malloc(size ? size : 1);
    if (buf == NULL) {
        close(fd);
        return flc_err_set(&c->err, FLC_ENOMEM, "cold tier: no memory for %zu bytes", size);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    *obj = buf;
    *n = got;
    return FLC_OK;
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
        const char *dir = url + 7;
        size_t dl = strlen(dir);
        while (dl > 1 && dir[dl - 1] == '/')
            dl--;
        if (dir[0] != '/' || dl >= sizeof c->dir) {
            rc = flc_err_set(&c->err, FLC_EINVAL,
                             "cold tier URL '%s': expected file:///absolute/dir", url);
        } else {
            memcpy(c->dir, dir, dl);
            c->dir[dl] = '\0';
            c->fsync = !o.no_fsync;
            snprintf(c->url, sizeof c->url, "file://%.500s", c->dir);
            if (mkdir_p(c->dir) != 0)
                rc = flc_err_set(&c->err, FLC_EIO, "cold tier: cannot create %s: %s", c->dir,
                                 strerror(errno));
        }
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

flc_cold_t *flc_cold_open_env(const flc_cold_opts_t *opts, flc_err_t *err)
{
    const char *url = getenv("FLCACHE_COLD");
    if (url == NULL || *url == '\0') {
        flc_err_set(err, FLC_ENOTFOUND, "FLCACHE_COLD is not set");
        return NULL;
    }
    return flc_cold_open(url, opts, err);
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
    return c->kind == FLC_COLD_FILE ? file_put(c, key, data, len)
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
    int rc = c->kind == FLC_COLD_FILE ? file_get(c, key, &obj, &n)
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
    if (c->kind == FLC_COLD_S3)
        return flc_cold_s3_del(c, key);
    char path[1200];
    file_path(c, key, path, sizeof path);
    if (unlink(path) != 0 && errno != ENOENT)
        return flc_err_set(&c->err, FLC_EIO, "cold tier: cannot delete %s: %s", path,
                           strerror(errno));
    return FLC_OK;
}

const flc_err_t *flc_cold_error(const flc_cold_t *c)
{
    return &c->err;
}

const char *flc_cold_errstr(const flc_cold_t *c)
{
    return flc_err_msg(&c->err);
}

const char *flc_cold_url(const flc_cold_t *c)
{
    return c->url;
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
        file_path(c, key, out, outlen);
    else
        flc_cold_s3_object_url(c, key, out, outlen);
    return FLC_OK;
}
