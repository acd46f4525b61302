/* Byte-sized Fashion-MNIST for client functions: the train split read by
 * ml/'s IDX reader with pixels kept as uint8 (47 MB for the 60000 training
 * images instead of 188 MB of floats, which matters when a dozen client
 * instances run at once), the process-wide shared copy, and the gather of
 * one client's rows. */
#include "clients/client_data.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ml/dataset_idx.h"

int flc_cdata_load_labels(const char *dir, size_t limit, flc_cdata_t **out, flc_err_t *e)
{
    return flc_data_load_fashion_u8(dir, 1, limit, 1, out, e);
}

int flc_cdata_load(const char *dir, size_t limit, flc_cdata_t **out, flc_err_t *e)
{
    return flc_data_load_fashion_u8(dir, 1, limit, 0, out, e);
}

void flc_cdata_free(flc_cdata_t *d)
{
    flc_data_u8_free(d);
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
    const char *want = flc_data_fashion_dir(dir);
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
    for (size_t i = 0; i < n; i++) {
        flc_data_px_scale(ds->x + i * d->dim, d->px + (size_t)idx[i] * d->dim, d->dim);
        int32_t y = d->y[idx[i]];
        ds->y[i] = flip_labels ? d->num_classes - 1 - y : y;
    }
    *out = ds;
    return FLC_OK;
}
