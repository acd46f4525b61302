/* Encoded pushes (issue 16 point 7): a contributor's update cut into shards
 * as flc_rs_push does, each shard's payload in the job's encoding
 * (cache/encode.h), with top-k's error feedback: the client adds the
 * residual it left out last time (read from the cache under its own keys,
 * cache/store_enc.h) before it selects, and stores what it leaves out now. */
#ifndef FLC_AGGREGATOR_RS_ENCODE_H
#define FLC_AGGREGATOR_RS_ENCODE_H

#include "aggregator/reduce_scatter.h"
#include "cache/encode.h"

/* flc_rs_push with the payloads in enc (NULL or f32: flc_rs_push itself).
 * The frames' update_norm is the norm of what a reader decodes (what the
 * mergers fold and clip). Top-k residuals are written after the push, also
 * when it found the round closed (the update is stored, kept for queries). */
int flc_rs_push_enc(flc_store_t *s, const flc_rs_push_cfg_t *cfg, const flc_enc_t *enc,
                    const float *update, flc_err_t *e);

/* Encoding of the shards of one push (rs_encode.c, used by rs_contrib.c). */
typedef struct flc_rs_encoded {
    uint8_t *payload;   /* every shard's payload, one after the other */
    size_t *at;         /* per shard: where its payload starts */
    uint64_t *nnz;      /* per shard */
    float *resid;       /* topk: the new residual of the whole model; else NULL */
    uint32_t *from;     /* topk: per shard, the round its old residual came from */
    double norm;        /* of what a reader decodes */
} flc_rs_encoded_t;

int flc_rs_encode(flc_store_t *s, const flc_rs_push_cfg_t *cfg, const flc_enc_t *enc,
                  const float *update, flc_rs_encoded_t *out, flc_err_t *e);

/* Stores the top-k residuals of out (nothing for other encodings). */
int flc_rs_encode_commit(flc_store_t *s, const flc_rs_push_cfg_t *cfg,
                         const flc_rs_encoded_t *out, flc_err_t *e);

void flc_rs_encoded_free(flc_rs_encoded_t *out);

#endif
