/* The training images as federated clients hold them: Fashion-MNIST train
 * pixels kept as bytes (one quarter of the float data set's memory), loaded
 * once per process and shared by every client invocation the process runs
 * (a warm function instance keeps it, the way a Lambda keeps globals).
 *
 * The reading is ml/dataset_idx.h's (flc_data_load_fashion_u8); what is
 * the client's own is which split it holds (train, 10 classes), the
 * per-process shared copy, and turning a client's index list into the
 * float rows it trains on (flc_cdata_gather, with the label-flip fault). */
#ifndef FLC_CLIENTS_CLIENT_DATA_H
#define FLC_CLIENTS_CLIENT_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "ml/dataset.h"

/* n samples of dim pixels (784) as bytes in px (NULL in a labels-only
 * set, whose dim is 0), n labels in y, num_classes 10. */
typedef flc_dataset_u8_t flc_cdata_t;

/* Reads the train labels of Fashion-MNIST from dir (NULL:
 * FLC_FASHION_DIR), the first `limit` when limit > 0, without the
 * images: what a driver needs to split the data over clients. px is NULL.
 * Free with flc_cdata_free. FLC_EIO names a file that cannot be opened,
 * FLC_EDATA a bad header, a label not in 0..9 or a truncated file. */
int flc_cdata_load_labels(const char *dir, size_t limit, flc_cdata_t **out, flc_err_t *e);

/* Reads train images and labels (first `limit` when > 0) as bytes. */
int flc_cdata_load(const char *dir, size_t limit, flc_cdata_t **out, flc_err_t *e);

void flc_cdata_free(flc_cdata_t *d);

/* The process-wide shared set for (dir, limit), loaded on first use and kept
 * (thread-safe). A request for another (dir, limit) replaces it once no
 * caller holds it (callers release with flc_cdata_release). */
int flc_cdata_acquire(const char *dir, size_t limit, const flc_cdata_t **out, flc_err_t *e);
void flc_cdata_release(const flc_cdata_t *d);

/* Builds the float data set of samples idx[0..n) (pixels / 255 by
 * flc_data_px_scale, labels copied; flip_labels != 0 maps label y to
 * num_classes-1-y, the label-flip fault). Indexes must be < d->n
 * (FLC_EINVAL naming the first bad one). Caller frees *out with
 * flc_data_free. */
int flc_cdata_gather(const flc_cdata_t *d, const uint32_t *idx, size_t n, int flip_labels,
                     flc_dataset_t **out, flc_err_t *e);

#endif
