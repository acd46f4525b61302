/* Feature standardization: fits means and inverse standard deviations
 * (per feature or one for all) and applies them in place. Sums are kept in
 * double, because 47M pixels summed in float would lose the low digits. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ml/norm.h"

int flc_norm_fit(const flc_dataset_t *ds, int mode, flc_norm_t *norm, flc_err_t *err)
{
    memset(norm, 0, sizeof *norm);
    if (ds == NULL || ds->n == 0 || (mode != FLC_NORM_GLOBAL && mode != FLC_NORM_FEATURE))
        return flc_err_set(err, FLC_EINVAL, "normalization: empty data set or bad mode %d", mode);
    size_t k = mode == FLC_NORM_FEATURE ? ds->dim : 1;
    double *sum = calloc(2 * k, sizeof(double));
    norm->mean = malloc(k * sizeof(float));
    norm->inv_std = malloc(k * sizeof(float));
    if (sum == NULL || norm->mean == NULL || norm->inv_std == NULL) {
        free(sum);
        flc_norm_release(norm);
        return flc_err_set(err, FLC_ENOMEM, "normalization: out of memory");
    }
    double *sq = sum + k;
    /* Sums in double: 47M pixels in float would lose the low digits. */
    for (size_t i = 0; i < ds->n; i++) {
        const float *row = ds->x + i * ds->dim;
        for (size_t j = 0; j < ds->dim; j++) {
            size_t c = mode == FLC_NORM_FEATURE ? j : 0;
            sum[c] += row[j];
            sq[c] += (double)row[j] * row[j];
        }
    }
    double cnt = mode == FLC_NORM_FEATURE ? (double)ds->n : (double)ds->n * ds->dim;
    for (size_t c = 0; c < k; c++) {
        double mean = sum[c] / cnt;
        double var = sq[c] / cnt - mean * mean;
        double sd = var > 0 ? sqrt(var) : 0.0;
        norm->mean[c] = (float)mean;
        /* A constant feature (a border pixel that is always 0) stays
         * centred but unscaled instead of dividing by ~0. */
        norm->inv_std[c] = sd > 1e-6 ? (float)(1.0 / sd) : 1.0f;
    }
    free(sum);
    norm->mode = mode;
    norm->dim = ds->dim;
    return 0;
}

int flc_norm_apply(const flc_norm_t *norm, flc_dataset_t *ds, flc_err_t *err)
{
    if (norm->dim != ds->dim)
        return flc_err_set(err, FLC_EDIM, "normalization fitted on %zu features, data has %zu",
                           norm->dim, ds->dim);
    for (size_t i = 0; i < ds->n; i++) {
        float *row = ds->x + i * ds->dim;
        if (norm->mode == FLC_NORM_FEATURE) {
            for (size_t j = 0; j < ds->dim; j++)
                row[j] = (row[j] - norm->mean[j]) * norm->inv_std[j];
        } else {
            float m = norm->mean[0], s = norm->inv_std[0];
            for (size_t j = 0; j < ds->dim; j++)
                row[j] = (row[j] - m) * s;
        }
    }
    return 0;
}

void flc_norm_release(flc_norm_t *norm)
{
    if (norm == NULL)
        return;
    free(norm->mean);
    free(norm->inv_std);
    memset(norm, 0, sizeof *norm);
}
