/* Encoding a contributor's shards before the push (see rs_encode.h). The
 * client side of top-k error feedback: e = update + residual, send the top
 * k of e, keep e - sent for the next round. One pass per shard; the
 * decoded copy of a shard ("sent") is scratch of the shard's size. */
#include "aggregator/rs_encode.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cache/store_enc.h"

void flc_rs_encoded_free(flc_rs_encoded_t *out)
{
    if (out == NULL)
        return;
    free(out->payload);
    free(out->at);
    free(out->nnz);
    free(out->resid);
    free(out->from);
    memset(out, 0, sizeof *out);
}

int flc_rs_encode(flc_store_t *s, const flc_rs_push_cfg_t *cfg, const flc_enc_t *enc,
                  const float *update, flc_rs_encoded_t *out, flc_err_t *e)
{
    memset(out, 0, sizeof *out);
    uint32_t S = cfg->num_shards;
    uint64_t P = cfg->model_size, maxc = 0;
    size_t total = 0;
    out->at = calloc(S, sizeof *out->at);
    out->nnz = calloc(S, sizeof *out->nnz);
    int rc = out->at && out->nnz ? FLC_OK : flc_err_set(e, FLC_ENOMEM, "out of memory");
    for (uint32_t k = 0; rc == FLC_OK && k < S; k++) {
        uint64_t off, cnt;
        flc_rs_shard_range(P, S, k, &off, &cnt);
        out->at[k] = total;
        total += flc_enc_payload_bytes(enc->kind, cnt, flc_enc_topk_k(cnt, enc->frac));
        maxc = cnt > maxc ? cnt : maxc;
    }
    float *sent = NULL, *x = NULL;
    if (rc == FLC_OK) {
        out->payload = malloc(total ? total : 1);
        sent = malloc((size_t)(maxc ? maxc : 1) * sizeof *sent);
        if (enc->kind == FLC_ENC_TOPK) {
            out->resid = malloc((size_t)(P ? P : 1) * sizeof *out->resid);
            out->from = calloc(S, sizeof *out->from);
            x = malloc((size_t)(maxc ? maxc : 1) * sizeof *x);
        }
        if (out->payload == NULL || sent == NULL ||
            (enc->kind == FLC_ENC_TOPK && (out->resid == NULL || out->from == NULL || x == NULL)))
            rc = flc_err_set(e, FLC_ENOMEM, "out of memory encoding a %llu-float update",
                             (unsigned long long)P);
    }
    double ss = 0;
    for (uint32_t k = 0; rc == FLC_OK && k < S; k++) {
        uint64_t off, cnt;
        flc_rs_shard_range(P, S, k, &off, &cnt);
        const float *src = update + off;
        if (enc->kind == FLC_ENC_TOPK) {
            /* what was left out last time comes back first */
            if (flc_store_resid_get(s, cfg->job, S, k, cfg->client, cfg->round, x, cnt,
                                    &out->from[k]) != FLC_OK) {
                *e = *flc_store_error(s);
                rc = e->code;
                break;
            }
            for (uint64_t i = 0; i < cnt; i++)
                x[i] += src[i];
            src = x;
        }
        rc = flc_enc_encode(enc, src, cnt, out->payload + out->at[k], &out->nnz[k], sent, e);
        for (uint64_t i = 0; rc == FLC_OK && i < cnt; i++) {
            ss += (double)sent[i] * sent[i];
            if (out->resid != NULL)
                out->resid[off + i] = src[i] - sent[i];
        }
    }
    out->norm = sqrt(ss);
    free(sent);
    free(x);
    if (rc != FLC_OK)
        flc_rs_encoded_free(out);
    return rc;
}

int flc_rs_encode_commit(flc_store_t *s, const flc_rs_push_cfg_t *cfg,
                         const flc_rs_encoded_t *out, flc_err_t *e)
{
    if (out->resid == NULL)
        return FLC_OK;
    for (uint32_t k = 0; k < cfg->num_shards; k++) {
        uint64_t off, cnt;
        flc_rs_shard_range(cfg->model_size, cfg->num_shards, k, &off, &cnt);
        if (flc_store_resid_put(s, cfg->job, cfg->num_shards, k, cfg->client, cfg->round,
                                out->resid + off, cnt, out->from[k]) != FLC_OK) {
            *e = *flc_store_error(s);
            return e->code;
        }
    }
    return FLC_OK;
}
