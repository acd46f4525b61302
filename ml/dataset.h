/* A data set in memory: what the models train on and the loaders, the
 * normalization, the partitions and the batcher work on.
 *
 * A data set is dense and row-major: sample i is x[i*dim .. i*dim+dim) with
 * label y[i] in 0..num_classes-1, so a minibatch is a plain matrix for
 * BLAS. Partitions and client splits (ml/partition.h) never copy samples;
 * they are lists of sample indices, and a batcher (ml/batcher.h) gathers
 * the rows of one minibatch into its own buffer.
 *
 * flc_dataset_u8_t is the same set with its pixels kept as the bytes of
 * the file (one quarter of the floats' memory): what a process that holds
 * the whole set but trains on small parts of it keeps (a client function),
 * turning only the rows it trains on into floats. */
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

typedef struct flc_dataset_u8 {
    size_t n;             /* samples */
    size_t dim;           /* bytes per sample; 0 in a labels-only set */
    int num_classes;      /* labels are 0..num_classes-1 */
    uint8_t *px;          /* n*dim bytes, row-major, owned; NULL when dim is 0 */
    int32_t *y;           /* n labels, owned */
} flc_dataset_u8_t;

/* Allocates an n x dim data set with zeroed x and y. Free with
 * flc_data_free. Returns 0, FLC_EINVAL or FLC_ENOMEM. */
int flc_data_new(size_t n, size_t dim, int num_classes, flc_dataset_t **out, flc_err_t *err);

/* Frees a data set; NULL is a no-op. */
void flc_data_free(flc_dataset_t *ds);

/* Allocates an n x dim byte data set with zeroed px and y; dim 0 makes a
 * labels-only set (px NULL). Free with flc_data_u8_free. Returns 0,
 * FLC_EINVAL or FLC_ENOMEM. */
int flc_data_u8_new(size_t n, size_t dim, int num_classes, flc_dataset_u8_t **out,
                    flc_err_t *err);

/* Frees a byte data set; NULL is a no-op. */
void flc_data_u8_free(flc_dataset_u8_t *ds);

/* Copies the samples idx[0..n) of ds into a new data set (for a worker that
 * wants its partition contiguous). Caller frees *out. */
int flc_data_subset(const flc_dataset_t *ds, const uint32_t *idx, size_t n, flc_dataset_t **out,
                    flc_err_t *err);

/* Counts labels: counts[c] for c < ds->num_classes (caller's array). */
void flc_data_label_counts(const flc_dataset_t *ds, const uint32_t *idx, size_t n, size_t *counts);

#endif
