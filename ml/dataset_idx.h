/* Loading data sets from IDX files, the format of MNIST and Fashion-MNIST
 * (the data set workers and federated clients train on), gzip-compressed
 * or plain. */
#ifndef FLC_ML_DATASET_IDX_H
#define FLC_ML_DATASET_IDX_H

#include <stddef.h>

#include "base/error.h"
#include "ml/dataset.h"

/* Where Debian's dataset-fashion-mnist package puts the files;
 * FLCACHE_DATA_DIR overrides it. */
#define FLC_FASHION_DIR "/usr/share/datasets/fashion-mnist"

/* Loads an IDX image file (magic 0x00000803, unsigned bytes, n x rows x cols)
 * and its IDX label file (magic 0x00000801), each gzip-compressed or plain.
 * Pixels are scaled to [0, 1] (byte / 255). limit > 0 keeps only the first
 * `limit` samples (and reads no further). num_classes > 0 fixes the class
 * count and rejects larger labels; 0 infers max label + 1.
 * Errors: FLC_EIO when a file cannot be opened (the message names the path
 * and the Debian package), FLC_EDATA for a bad magic number, bad dimensions,
 * image/label count mismatch, out-of-range labels, or truncated/corrupt
 * gzip data (the message says which file and what was wrong). */
int flc_data_load_idx(const char *images_path, const char *labels_path, size_t limit,
                      int num_classes, flc_dataset_t **out, flc_err_t *err);

/* Loads Fashion-MNIST from dir (NULL: $FLCACHE_DATA_DIR, else
 * FLC_FASHION_DIR): the 60000-sample train split when train != 0, else the
 * 10000-sample t10k split; limit as in flc_data_load_idx; 10 classes. */
int flc_data_load_fashion(const char *dir, int train, size_t limit, flc_dataset_t **out,
                          flc_err_t *err);

#endif
