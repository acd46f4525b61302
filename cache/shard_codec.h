/* Tensor shards and their stored form, the shard frame.
 *
 * A frame is   "FLS1" | u32le header_len | TensorShard header (protobuf) | payload
 * where the payload is `count` float32 values, little-endian, stored raw after
 * the header so a reader can copy network bytes straight into an aligned float
 * array (see proto/flcache.proto), or the same values in the encoding the
 * header's `encoding` field names (cache/encode.h: fp16, bf16, int8, topk). Decoding validates everything a reader
 * relies on: magic, header size, names, shard < num_shards, offset + count <=
 * model_size, frame length == header + 4*count, and a size limit. */
#ifndef FLC_CACHE_SHARD_CODEC_H
#define FLC_CACHE_SHARD_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "cache/keys.h"

#define FLC_FRAME_MAGIC "FLS1"
#define FLC_FRAME_PREFIX 8u             /* magic + header length */
#define FLC_FRAME_HEADER_MAX 4096u      /* headers are names and numbers: small */

typedef struct flc_shard {
    char job[FLC_NAME_MAX + 1];
    uint32_t round;
    char client[FLC_NAME_MAX + 1]; /* "" for a merged shard */
    uint32_t shard;                /* index, < num_shards */
    uint32_t num_shards;
    uint64_t offset;               /* first element in the flat model */
    uint64_t count;                /* float32 elements here */
    uint64_t model_size;           /* elements in the whole model */
    double weight;                 /* merge weight (FedAvg: num_samples) */
    uint64_t num_samples;
    uint64_t created_ms;
    double update_norm;            /* L2 norm of the whole update (0: unknown) */
    uint32_t encoding;             /* FLC_ENC_* (cache/encode.h) of what values points to:
                                    * F32 (0) count floats; else the encoded payload
                                    * (flc_shard_payload_bytes bytes). Reads decode to
                                    * F32 unless asked for the raw payload */
    uint64_t nnz;                  /* topk: coordinates in the payload */
    float *values;                 /* count floats (or the encoded payload, see above) */
    void *owned;                   /* allocation behind values to free, or NULL if borrowed */
} flc_shard_t;

/* The weight a merge gives s: its weight, else its sample count, else 1
 * (a header written without either counts once). */
static inline double flc_shard_merge_weight(const flc_shard_t *s)
{
    return s->weight > 0 ? s->weight : (s->num_samples ? (double)s->num_samples : 1.0);
}

/* Bytes of s's payload in its encoding (4 * count for float32); 0 for an
 * unknown encoding. */
size_t flc_shard_payload_bytes(const flc_shard_t *s);

/* Frees what s owns (values when owned) and clears values. */
void flc_shard_release(flc_shard_t *s);

/* Allocates count floats, 64-byte aligned, owned by s (values uninitialized). */
int flc_shard_alloc(flc_shard_t *s, uint64_t count, flc_err_t *err);

/* Checks header consistency (names, indexes, ranges). what names the shard in
 * messages is derived from the fields themselves. */
int flc_shard_check(const flc_shard_t *s, flc_err_t *err);

/* Returns the index of the first NaN/Inf in v[0..n), or -1 when all finite. */
int64_t flc_find_nonfinite(const float *v, size_t n);

/* Writes "shard 3 of round 12 of job J from client c" into out. */
void flc_shard_describe(const flc_shard_t *s, char *out, size_t outlen);

/* Encodes the frame prefix and header of s into out[0..cap); *len = bytes
 * written (payload not included). */
int flc_shard_encode_header(const flc_shard_t *s, uint8_t *out, size_t cap, size_t *len,
                            flc_err_t *err);

/* Parses prefix and header from buf[0..len) (which may be just the first
 * part of a frame). Fills the header fields of *s (values untouched),
 * *payload_off (where the floats start) and *frame_len (whole frame size).
 * Fails with FLC_EDATA on corruption, FLC_ETOOBIG over max_bytes. */
int flc_shard_decode_header(const uint8_t *buf, size_t len, size_t max_bytes, flc_shard_t *s,
                            size_t *payload_off, size_t *frame_len, flc_err_t *err);

/* Encodes a whole frame into a new malloc'd buffer *out (caller frees). */
int flc_shard_encode(const flc_shard_t *s, uint8_t **out, size_t *len, flc_err_t *err);

/* Decodes a whole frame; s->values is a new owned copy (flc_shard_release),
 * float32 whatever the frame's encoding (checked, then decoded: s->encoding
 * is then FLC_ENC_F32). */
int flc_shard_decode(const uint8_t *buf, size_t len, size_t max_bytes, flc_shard_t *s,
                     flc_err_t *err);

#endif
