/* A flat float32 vector in a file other tools read: NumPy's .npy and
 * Hugging Face's .safetensors, written and read directly (both are a small
 * header and the raw little-endian floats; no library needed).
 *
 * Layout written (docs/simulate.md, "Export and import"):
 *  - npy: "\x93NUMPY", version 1.0, a u16 LE header length, the header
 *    "{'descr': '<f4', 'fortran_order': False, 'shape': (n,), }" padded with
 *    spaces and a final '\n' so the data starts at a multiple of 64, then n
 *    float32 LE.
 *  - safetensors: a u64 LE header length, the JSON header
 *    {"__metadata__":{...strings...},"<name>":{"dtype":"F32","shape":[n],
 *    "data_offsets":[0,4n]}} padded with spaces to a multiple of 8, then n
 *    float32 LE.
 * The vector is the model's flat parameter vector (ml/model.h,
 * flc_model_layout: softmax W then b; mlp W1, b1, W2, b2). */
#ifndef FLC_ML_TENSOR_FILE_H
#define FLC_ML_TENSOR_FILE_H

#include <stddef.h>

#include "base/error.h"

typedef enum { FLC_TFILE_NPY = 0, FLC_TFILE_SAFETENSORS } flc_tfile_format_t;

/* "npy" or "safetensors" into *f; FLC_EINVAL naming anything else. */
int flc_tfile_format_parse(const char *s, flc_tfile_format_t *f, flc_err_t *e);

/* Writes v[0..n) to path in format f. safetensors names the tensor `name`
 * and stores the nmeta key/value string pairs meta[2i], meta[2i+1] as
 * __metadata__ (keys and values must not need JSON escaping beyond '"' and
 * '\\', which are escaped); npy ignores both. The file is written under a
 * temporary name and renamed, so a reader never sees half of it. */
int flc_tfile_write(const char *path, flc_tfile_format_t f, const float *v, size_t n,
                    const char *name, const char *const *meta, size_t nmeta, flc_err_t *e);

/* Reads a float32 vector from an npy file ('<f4', C order, any shape:
 * flattened) or a safetensors file (one F32 tensor; with several, the one
 * named "params"), recognised by their magic. *v is malloc'd (caller
 * frees), *n its length. FLC_EIO when the file cannot be read, FLC_EDATA
 * naming what is wrong in it. */
int flc_tfile_read(const char *path, float **v, size_t *n, flc_err_t *e);

/* Reads path (as flc_tfile_read) into dst[0..n): a model to start from.
 * FLC_EDIM naming both lengths when the file holds another number of
 * floats (another model or hidden size). */
int flc_tfile_load_into(const char *path, float *dst, size_t n, flc_err_t *e);

#endif
