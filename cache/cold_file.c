/* The cold tier's file:// backend: one file per object, named after the
 * encoded key, in one directory.
 *
 * A put writes "<name>.tmp.<pid>.<n>", fsyncs it (unless disabled), and renames
 * it over "<name>": a process killed mid-put leaves at most a tmp file, never
 * a half object under the real name, and the rename is the acknowledgement
 * the store waits for before it deletes the Redis copy. */
#include "cache/cold_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

void flc_cold_file_path(const flc_cold_t *c, const char *key, char *out, size_t outlen)
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

int flc_cold_file_put(flc_cold_t *c, const char *key, const void *data, size_t len)
{
    char path[1200], tmp[1300];
    flc_cold_file_path(c, key, path, sizeof path);
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

int flc_cold_file_get(flc_cold_t *c, const char *key, uint8_t **obj, size_t *n)
{
    char path[1200];
    flc_cold_file_path(c, key, path, sizeof path);
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

int flc_cold_file_open(flc_cold_t *c, const char *url, const flc_cold_opts_t *o)
{
    const char *dir = url + 7;
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/')
        dl--;
    if (dir[0] != '/' || dl >= sizeof c->dir)
        return flc_err_set(&c->err, FLC_EINVAL,
                           "cold tier URL '%s': expected file:///absolute/dir", url);
    memcpy(c->dir, dir, dl);
    c->dir[dl] = '\0';
    c->fsync = !o->no_fsync;
    if (mkdir_p(c->dir) != 0)
        return flc_err_set(&c->err, FLC_EIO, "cold tier: cannot create %s: %s", c->dir,
                           strerror(errno));
    return FLC_OK;
}

int flc_cold_file_del(flc_cold_t *c, const char *key)
{
    char path[1200];
    flc_cold_file_path(c, key, path, sizeof path);
    if (unlink(path) != 0 && errno != ENOENT)
        return flc_err_set(&c->err, FLC_EIO, "cold tier: cannot delete %s: %s", path,
                           strerror(errno));
    return FLC_OK;
}

int flc_cold_file_del_prefix(flc_cold_t *c, const char *name_prefix, int dry_run, uint64_t *n,
                             uint64_t *bytes)
{
    DIR *d = opendir(c->dir);
    if (d == NULL)
        return errno == ENOENT ? FLC_OK
                               : flc_err_set(&c->err, FLC_EIO, "cold tier: cannot list %s: %s",
                                             c->dir, strerror(errno));
    size_t pl = strlen(name_prefix);
    int rc = FLC_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, name_prefix, pl) != 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (!dry_run && unlinkat(dirfd(d), de->d_name, 0) != 0 && errno != ENOENT) {
            rc = flc_err_set(&c->err, FLC_EIO, "cold tier: cannot delete %s/%s: %s", c->dir,
                             de->d_name, strerror(errno));
            break;
        }
        (*n)++;
        *bytes += (uint64_t)st.st_size;
        if (!dry_run)
            c->st.dels++;
    }
    closedir(d);
    return rc;
}
