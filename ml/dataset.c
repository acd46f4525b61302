/* A data set's life cycle: allocation, freeing (of float and of byte data
 * sets), a contiguous copy of some of its samples (a worker keeps only its
 * part) and label counts. */
#include <stdlib.h>
#include <string.h>

#include "ml/dataset.h"

int flc_data_new(size_t n, size_t dim, int num_classes, flc_dataset_t **out, flc_err_t *err)
{
    if (out != NULL)
        *out = NULL;
    if (out == NULL || n == 0 || dim == 0 || num_classes < 1 || n > SIZE_MAX / dim / sizeof(float))
        return flc_err_set(err, FLC_EINVAL, "data set of %zu x %zu with %d classes is invalid", n,
                           dim, num_classes);
    flc_dataset_t *ds = calloc(1, sizeof *ds);
    if (ds != NULL) {
        ds->x = calloc(n * dim, sizeof(float));
        ds->y = calloc(n, sizeof(int32_t));
    }
    if (ds == NULL || ds->x == NULL || ds->y == NULL) {
        flc_data_free(ds);
        return flc_err_set(err, FLC_ENOMEM, "out of memory for a data set of %zu x %zu floats", n,
                           dim);
    }
    ds->n = n;
    ds->dim = dim;
    ds->num_classes = num_classes;
    *out = ds;
    return 0;
}

void flc_data_free(flc_dataset_t *ds)
{
    if (ds == NULL)
        return;
    free(ds->x);
    free(ds->y);
    free(ds);
}

int flc_data_u8_new(size_t n, size_t dim, int num_classes, flc_dataset_u8_t **out,
                    flc_err_t *err)
{
    if (out != NULL)
        *out = NULL;
    if (out == NULL || n == 0 || num_classes < 1 || (dim > 0 && n > SIZE_MAX / dim) ||
        n > SIZE_MAX / sizeof(int32_t))
        return flc_err_set(err, FLC_EINVAL, "byte data set of %zu x %zu with %d classes is invalid",
                           n, dim, num_classes);
    flc_dataset_u8_t *ds = calloc(1, sizeof *ds);
    if (ds != NULL) {
        ds->px = dim > 0 ? calloc(n * dim, 1) : NULL;
        ds->y = calloc(n, sizeof(int32_t));
    }
    if (ds == NULL || (dim > 0 && ds->px == NULL) || ds->y == NULL) {
        flc_data_u8_free(ds);
        return flc_err_set(err, FLC_ENOMEM, "out of memory for a data set of %zu x %zu bytes", n,
                           dim);
    }
    ds->n = n;
    ds->dim = dim;
    ds->num_classes = num_classes;
    *out = ds;
    return 0;
}

void flc_data_u8_free(flc_dataset_u8_t *ds)
{
    if (ds == NULL)
        return;
    free(ds->px);
    free(ds->y);
    free(ds);
}

int flc_data_subset(const flc_dataset_t *ds, const uint32_t *idx, size_t n, flc_dataset_t **out,
                    flc_err_t *err)
{
    *out = NULL;
    for (size_t i = 0; i < n; i++)
        if (idx[i] >= ds->n)
            return flc_err_set(err, FLC_EINVAL, "subset index %u is out of range (%zu samples)",
                               idx[i], ds->n);
    int rc = flc_data_new(n, ds->dim, ds->num_classes, out, err);
    if (rc != 0)
        return rc;
    flc_dataset_t *s = *out;
    for (size_t i = 0; i < n; i++) {
        memcpy(s->x + i * ds->dim, ds->x + (size_t)idx[i] * ds->dim, ds->dim * sizeof(float));
        s->y[i] = ds->y[idx[i]];
    }
    return 0;
}

void flc_data_label_counts(const flc_dataset_t *ds, const uint32_t *idx, size_t n, size_t *counts)
{
    memset(counts, 0, (size_t)ds->num_classes * sizeof(size_t));
    if (idx == NULL)
        n = ds->n;
    for (size_t i = 0; i < n; i++) {
        int32_t c = ds->y[idx ? idx[i] : i];
        if (c >= 0 && c < ds->num_classes)
            counts[c]++;
    }
}
