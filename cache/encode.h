/* Update encodings: fewer bytes per update (issue 16 point 7). A job picks
 * one (`--encoding f32|fp16|bf16|int8|topk:FRACTION`); each shard frame says
 * which its payload uses (TensorShard.encoding, docs/protocol.md), so a
 * reader never has to know the job's choice.
 *
 *   f32   count float32 (the plain frame, byte for byte as before)
 *   fp16  count IEEE-754 binary16, round to nearest even; values beyond
 *         +-65504 are clamped. |x - y| <= 2^-11 |x| + 2^-25 (relative
 *         2^-11 for |x| >= 2^-14, absolute 2^-25 below, in the subnormals)
 *   bf16  count bfloat16 (the upper half of a float32), round to nearest
 *         even. |x - y| <= 2^-8 |x| (normal floats)
 *   int8  count int8, then ceil(count / 256) float32 scales: block b of 256
 *         elements has scale s_b = max|x| / 127 and q = round(x / s_b) in
 *         -127..127, so |x - s_b q| <= s_b / 2 (plus the float rounding of
 *         the product). The scales last so a reader decodes in place
 *   topk  nnz uint32 indexes (strictly increasing, < count), then nnz
 *         float32 values: the nnz = ceil(frac * count) coordinates of largest
 *         magnitude (ties: lower index), exact; every other coordinate is 0.
 *         frac <= 0.5: above it the frame would outgrow float32
 *
 * All little-endian. Decoding is by blocks (flc_enc_decode_range), so a
 * merger folds an encoded update without a decoded copy of it; everything
 * else (queries, export, the cold tier) gets float32 from the store's
 * reads, which decode. flc_enc_check validates a payload from outside
 * before anything decodes it: a check that passes means every decoded
 * value is finite. */
#ifndef FLC_CACHE_ENCODE_H
#define FLC_CACHE_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

enum {
    FLC_ENC_F32 = 0,
    FLC_ENC_FP16 = 1,
    FLC_ENC_BF16 = 2,
    FLC_ENC_INT8 = 3,
    FLC_ENC_TOPK = 4,
    FLC_ENC_COUNT
};

#define FLC_ENC_INT8_BLOCK 256u
#define FLC_ENC_TOPK_MAX 0.5

/* An encoding as a job chooses it. */
typedef struct flc_enc {
    int kind;    /* FLC_ENC_* */
    double frac; /* topk: fraction of each shard's coordinates kept, (0, 0.5] */
} flc_enc_t;

/* Parses "f32", "fp16", "bf16", "int8" or "topk:FRACTION" (NULL or "": f32).
 * FLC_EINVAL naming the spec otherwise. */
int flc_enc_parse(const char *spec, flc_enc_t *out, flc_err_t *e);

/* The spec back ("topk:0.01"). */
void flc_enc_format(const flc_enc_t *enc, char *out, size_t len);

/* "f32", "fp16", ... ; "?" for an unknown kind. */
const char *flc_enc_name(int kind);

/* Coordinates topk keeps of a count-element shard: ceil(frac * count),
 * at least 1 when count > 0. */
uint64_t flc_enc_topk_k(uint64_t count, double frac);

/* Payload bytes of count elements in kind (nnz for topk); 0 for an unknown
 * kind or a size that overflows. */
size_t flc_enc_payload_bytes(int kind, uint64_t count, uint64_t nnz);

/* Encodes x[0..n) into out (flc_enc_payload_bytes bytes, *nnz for topk:
 * flc_enc_topk_k). When sent is not NULL it receives what a reader will
 * decode (the client's error feedback keeps x - sent). x must be finite. */
int flc_enc_encode(const flc_enc_t *enc, const float *x, size_t n, void *out, uint64_t *nnz,
                   float *sent, flc_err_t *e);

/* Checks an encoded payload of n elements (len bytes): the size, finite
 * halves / scales / values, topk indexes strictly increasing and < n.
 * FLC_EDATA naming what is wrong (what names the shard). */
int flc_enc_check(int kind, const void *p, size_t len, uint64_t n, uint64_t nnz,
                  const char *what, flc_err_t *e);

/* A checked payload read block by block: flc_enc_decode_range writes
 * elements [off, off + m) into dst. Blocks must come in increasing order
 * (topk walks its indexes with a cursor); off 0 starts over. */
typedef struct flc_enc_view {
    int kind;
    const uint8_t *p;
    uint64_t n, nnz;
    uint64_t cursor; /* topk: first index entry not yet passed */
} flc_enc_view_t;

void flc_enc_view_init(flc_enc_view_t *v, int kind, const void *p, uint64_t n, uint64_t nnz);
void flc_enc_decode_range(flc_enc_view_t *v, size_t off, size_t m, float *dst);

/* Decodes in place: buf holds the payload at its start and has room for n
 * floats; afterwards it holds the n floats. The payload must be checked. */
int flc_enc_decode_inplace(int kind, void *buf, uint64_t n, uint64_t nnz, flc_err_t *e);

#endif
