/* Byte-sized Fashion-MNIST for client functions: IDX gzip readers that keep
 * pixels as uint8 (47 MB for the 60000 training images instead of 188 MB of
 * floats, which matters when a dozen client instances run at once), the
 * process-wide shared copy, and the gather of one client's rows. */
#include "clients/client_data.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "ml/dataset_idx.h"

static const char *data_dir(const char *dir)
{
    if (dir != NULL && *dir)
        return dir;
    const char *env = getenv("FLCACHE_DATA_DIR");
    return env && *env ? env : FLC_FASHION_DIR;
}

static uint32_t be32(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* Opens an IDX gzip file, checks its magic and reads its dimensions. */
static gzFile idx_open(const char *path, uint32_t magic, uint32_t *dims, int ndims, flc_err_t *e)
{
    gzFile f = gzopen(path, "rb");
    if (f == NULL) {
        flc_err_set(e, FLC_EIO, "cannot open %s (install the Debian package "
                    "dataset-fashion-mnist or set FLCACHE_DATA_DIR)", path);
        return NULL;
    }
    gzbuffer(f, 1 << 17);
    unsigned char h[16];
    int want = 4 + 4 * ndims;
    if (gzread(f, h, (unsigned)want) != want || be32(h) != magic) {
        flc_err_set(e, FLC_EDATA, "%s: not an IDX file with magic 0x%08x", path, magic);
        gzclose(f);
        return NULL;
    }
    for (int i = 0; i < ndims; i++)
        dims[i] = be32(h + 4 + 4 * i);
    return f;
}

static int read_labels(const char *dir, size_t limit, flc_cdata_t *d, flc_err_t *e)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte.gz", data_dir(dir));
    uint32_t n;
    gzFile f = idx_open(path, 0x00000801, &n, 1, e);
    if (f == NULL)
        return e->code;
    d->n = limit > 0 && limit < n ? limit : n;
    d->num_classes = 10;
    unsigned char *b = malloc(d->n ? d->n : 1);
    d->y = malloc((d->n ? d->n : 1) * sizeof *d->y);
    int rc = FLC_OK;
    if (b == NULL || d->y == NULL)
        rc = flc_err_set(e, FLC_ENOMEM, "out of memory for %zu labels", d->n);
    else if (gzread(f, b, (unsigned)d->n) != (int)d->n)
        rc = flc_err_set(e, FLC_EDATA, "%s: truncated after fewer than %zu labels", path, d->n);
    for (size_t i = 0; rc == FLC_OK && i < d->n; i++) {
        if (b[i] >= 10)
            rc = flc_err_set(e, FLC_EDATA, "%s: label %u of sample %zu is not in 0..9", path,
                             b[i], i);
        d->y[i] = b[i];
    }
    free(b);
    gzclose(f);
    return rc;
}

int flc_cdata_load_labels(const char *dir, size_t limit, flc_cdata_t **out, flc_err_t *e)
{
    *out = NULL;
    flc_cdata_t *d = calloc(1, sizeof *d);
    if (d == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    d->dim = 784;
    int rc = read_labels(dir, limit, d, e);
    if (rc != FLC_OK) {
        flc_cdata_free(d);
        return rc;
    }
    *out = d;
    return FLC_OK;
}

int flc_cdata_load(const char *dir, size_t limit, flc_cdata_t **out, flc_err_t *e)
{
    flc_cdata_t *d = NULL;
    int rc = flc_cdata_load_labels(dir, limit, &d, e);
    if (rc != FLC_OK)
        return rc;
    char path[1024];
    snprintf(path, sizeof path, "%s/train-images-idx3-ubyte.gz", data_dir(dir));
    uint32_t dims[3];
    gzFile f = idx_open(path, 0x00000803, dims, 3, e);
    if (f == NULL) {
        flc_cdata_free(d);
        return e->code;
    }
    if (dims[0] < d->n || dims[1] * dims[2] != 784) {
        rc = flc_err_set(e, FLC_EDATA, "%s: %u images of %ux%u, expected %zu of 28x28", path,
                         dims[0], dims[1], dims[2], d->n);
    } else if ((d->px = malloc(d->n * d->dim)) == NULL) {
        rc = flc_err_set(e, FLC_ENOMEM, "out of memory for %zu images", d->n);
    } else {
        size_t total = d->n * d->dim, got = 0;
        while (got < total) {
            size_t want = total - got > (1u << 30) ? (1u << 30) : total - got;
            int r = gzread(f, d->px + got, (unsigned)want);
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        if (got != total)
            rc = flc_err_set(e, FLC_EDATA, "%s: truncated after %zu of %zu bytes", path, got,
                             total);
    }
    gzclose(f);
    if (rc != FLC_OK) {
        flc_cdata_free(d);
        return rc;
    }
    *out = d;
    return FLC_OK;
}

void flc_cdata_free(flc_cdata_t *d)
{
    if (d == NULL)
        return;
    free(d->px);
    free(d->y);
    free(d);
}

/* The shared copy: one per process, reference-counted so a request for
 * other data never frees a set another thread is training on. */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static flc_cdata_t *g_data;
static char g_dir[1024];
static size_t g_limit;
static int g_refs;

int flc_cdata_acquire(const char *dir, size_t limit, const flc_cdata_t **out, flc_err_t *e)
{
    pthread_mutex_lock(&g_lock);
    const char *want = data_dir(dir);
    int rc = FLC_OK;
    if (g_data == NULL || strcmp(g_dir, want) != 0 || g_limit != limit) {
        if (g_data != NULL && g_refs > 0) {
            rc = flc_err_set(e, FLC_EINVAL, "client data %s (limit %zu) is in use; another set "
                             "was asked for", g_dir, g_limit);
        } else {
            flc_cdata_free(g_data);
            g_data = NULL;
            rc = flc_cdata_load(want, limit, &g_data, e);
            if (rc == FLC_OK) {
                snprintf(g_dir, sizeof g_dir, "%s", want);
                g_limit = limit;
            }
        }
    }
    if (rc == FLC_OK) {
        g_refs++;
        *out = g_data;
    }
    pthread_mutex_unlock(&g_lock);
    return rc;
}

void flc_cdata_release(const flc_cdata_t *d)
{
    if (d == NULL)
        return;
    pthread_mutex_lock(&g_lock);
    if (d == g_data && g_refs > 0)
        g_refs--;
    pthread_mutex_unlock(&g_lock);
}

int flc_cdata_gather(const flc_cdata_t *d, const uint32_t *idx, size_t n, int flip_labels,
                     flc_dataset_t **out, flc_err_t *e)
{
    *out = NULL;
    for (size_t i = 0; i < n; i++)
        if (idx[i] >= d->n)
            return flc_err_set(e, FLC_EINVAL, "sample index %u is past the %zu samples loaded",
                               idx[i], d->n);
    flc_dataset_t *ds = NULL;
    int rc = flc_data_new(n ? n : 1, d->dim, d->num_classes, &ds, e);
    if (rc != FLC_OK)
        return rc;
    ds->n = n;
    const float inv = 1.0f / 255.0f;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *src = d->px + (size_t)idx[i] * d->dim;
        float *dst = ds->x + i * d->dim;
        for (size_t j = 0; j < d->dim; j++)
            dst[j] = (float)src[j] * inv;
        int32_t y = d->y[idx[i]];
        ds->y[i] = flip_labels ? d->num_classes - 1 - y : y;
    }
    *out = ds;
    return FLC_OK;
}
