/* Loading data sets from IDX files, the format of MNIST and Fashion-MNIST
 * (the data set workers and federated clients train on), gzip-compressed
 * or plain. One reader gives either floats in [0, 1] (what the models
 * train on) or the bytes of the file (what a process that holds the whole
 * set for many small trainings keeps, at a quarter of the memory). */
#ifndef FLC_ML_DATASET_IDX_H
#define FLC_ML_DATASET_IDX_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "ml/dataset.h"

/* Where Debian's dataset-fashion-mnist package puts the files; the
 * programs' FLCACHE_DATA_DIR (or --data), passed down as dir, overrides it. */
#define FLC_FASHION_DIR "/usr/share/datasets/fashion-mnist"

/* Loads an IDX image file (magic 0x00000803, unsigned bytes, n x rows x cols)
 * and its IDX label file (magic 0x00000801), each gzip-compressed or plain.
 * Pixels are scaled to [0, 1] (flc_data_px_scale). limit > 0 keeps only the
 * first `limit` samples (and reads no further). num_classes > 0 fixes the
 * class count and rejects larger labels; 0 infers max label + 1.
 * Errors: FLC_EIO when a file cannot be opened (the message names the path
 * and the Debian package), FLC_EDATA for a bad magic number, bad dimensions,
 * image/label count mismatch, out-of-range labels, or truncated/corrupt
 * gzip data (the message says which file and what was wrong). */
int flc_data_load_idx(const char *images_path, const char *labels_path, size_t limit,
                      int num_classes, flc_dataset_t **out, flc_err_t *err);

/* As flc_data_load_idx, with the same checks and errors, but the pixels
 * stay the file's bytes (out->px, not scaled). images_path NULL reads the
 * labels only (out->dim 0, out->px NULL): what a driver needs to split a
 * data set it does not train on; a label file without labels is then
 * FLC_EDATA. Caller frees *out with flc_data_u8_free. */
int flc_data_load_idx_u8(const char *images_path, const char *labels_path, size_t limit,
                         int num_classes, flc_dataset_u8_t **out, flc_err_t *err);

/* The Fashion-MNIST directory: dir when it is not NULL or empty, else
 * FLC_FASHION_DIR (the programs pass FLCACHE_DATA_DIR down as dir). The
 * string returned is dir or the constant (not owned). */
const char *flc_data_fashion_dir(const char *dir);

/* Loads Fashion-MNIST from flc_data_fashion_dir(dir): the 60000-sample
 * train split when train != 0, else the 10000-sample t10k split; limit as
 * in flc_data_load_idx; 10 classes. */
int flc_data_load_fashion(const char *dir, int train, size_t limit, flc_dataset_t **out,
                          flc_err_t *err);

/* As flc_data_load_fashion, pixels as bytes (flc_data_load_idx_u8);
 * labels_only != 0 reads the split's labels and not its images. */
int flc_data_load_fashion_u8(const char *dir, int train, size_t limit, int labels_only,
                             flc_dataset_u8_t **out, flc_err_t *err);

/* x[k] = px[k] / 255 for k < n: the one scaling of IDX pixel bytes to
 * [0, 1], used by the float loader and by whoever turns rows of a byte
 * data set into floats, so both give the same floats bit for bit. */
void flc_data_px_scale(float *restrict x, const uint8_t *restrict px, size_t n);

#endif
