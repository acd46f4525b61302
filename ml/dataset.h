/* A data set in memory: what the models train on and the loaders, the
 * normalization, the partitions and the batcher work on.
 *
 * A data set is dense and row-major: sample i is x[i*dim .. i*dim+dim) with
 * label y[i] in 0..num_classes-1, so a minibatch is a plain matrix for
 * BLAS. Partitions and client splits (ml/partition.h) never copy samples;
 * they are lists of sample indices, and a batcher (ml/batcher.h) gathers
 * the rows of one minibatch into its own buffer. */
#ifndef FLC_ML_DATASET_H
#define FLC_ML_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef struct flc_dataset {
    size_t n;             /* samples */
    size_t dim;           /* features per sample */
    int num_classes;      /* labels are 0..num_classes-1 */
    float *x;             /* n*dim floats, row-major, owned */
    int32_t *y;           /* n labels, owned */
} flc_dataset_t;

/* Allocates an n x dim data set with zeroed x and y. Free with
 * flc_data_free. Returns 0, FLC_EINVAL or FLC_ENOMEM. */
int flc_data_new(size_t n, size_t dim, int num_classes, flc_dataset_t **out, flc_err_t *err);

/* Frees a data set; NULL is a no-op. */
void flc_data_free(flc_dataset_t *ds);

/* Copies the samples idx[0..n) of ds into a new data set (for a worker that
 * wants its partition contiguous). Caller frees *out. */
int flc_data_subset(const flc_dataset_t *ds, const uint32_t *idx, size_t n, flc_dataset_t **out,
                    flc_err_t *err);

/* Counts labels: counts[c] for c < ds->num_classes (caller's array). */
void flc_data_label_counts(const flc_dataset_t *ds, const uint32_t *idx, size_t n, size_t *counts);

#endif
