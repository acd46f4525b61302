/* Feature standardization: (x - mean) / std with statistics fitted on one
 * data set (the train set) and applied in place to others (the test set),
 * so that both see the same transform. */
#ifndef FLC_ML_NORM_H
#define FLC_ML_NORM_H

#include <stddef.h>

#include "base/error.h"
#include "ml/dataset.h"

enum {
    FLC_NORM_GLOBAL = 1,  /* one mean and std over all features */
    FLC_NORM_FEATURE = 2, /* a mean and std per feature (column) */
};

/* Statistics fitted on one data set (the train set) and applied to others
 * (the test set) so both see the same transform. */
typedef struct flc_norm {
    int mode;
    size_t dim;
    float *mean;    /* dim values (FEATURE) or 1 (GLOBAL), owned */
    float *inv_std; /* same length; 1 where the std is ~0 (constant pixels) */
} flc_norm_t;

/* Fits mean/std of ds into *norm (allocates; release with flc_norm_release).
 * Returns 0, FLC_EINVAL (bad mode, empty set) or FLC_ENOMEM. */
int flc_norm_fit(const flc_dataset_t *ds, int mode, flc_norm_t *norm, flc_err_t *err);

/* x = (x - mean) * inv_std in place. Returns FLC_EDIM when dims differ. */
int flc_norm_apply(const flc_norm_t *norm, flc_dataset_t *ds, flc_err_t *err);

/* Frees the arrays of *norm (not norm itself) and zeroes it. */
void flc_norm_release(flc_norm_t *norm);

#endif
