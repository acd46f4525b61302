/* Server-optimizer state (FedAvgM momentum, FedAdam/Yogi/Adagrad moments) of
 * one shard, kept in the cache between rounds so that a stateless aggregator
 * function can run a stateful rule. One value per (job, shard) under the
 * shard's hash tag, fl:{T}:opt (flc_store_opt_state_get/put), so it lives
 * on the node of the shard's round data and its merger,
 * laid out as
 *   u32 kind | u32 has_v | u64 rounds | u64 n | m[n] floats | v[n] floats. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/rs_internal.h"
#include "cache/store_ops.h"

#define STATE_HEAD 24u

int flc_rs_state_load(flc_store_t *s, const char *job, uint32_t shard, flc_merge_state_t *st,
                      flc_err_t *e)
{
    char *blob;
    size_t len;
    int rc = flc_store_opt_state_get(s, job, shard, &blob, &len);
    if (rc == FLC_ENOTFOUND)
        return flc_err_set(e, FLC_ENOTFOUND, "no server state for shard %u of job %s", shard,
                           job);
    if (rc != FLC_OK) {
        *e = *flc_store_error(s);
        return e->code;
    }
    uint32_t kind = 0, has_v = 0;
    uint64_t rounds = 0, n = 0;
    if (len >= STATE_HEAD) {
        memcpy(&kind, blob, 4);
        memcpy(&has_v, blob + 4, 4);
        memcpy(&rounds, blob + 8, 8);
        memcpy(&n, blob + 16, 8);
    }
    size_t want = len >= STATE_HEAD
                      ? STATE_HEAD + (has_v ? 2 : 1) * (size_t)n * sizeof(float)
                      : 0;
    if (len < STATE_HEAD || len != want)
        rc = flc_err_set(e, FLC_EDATA, "server state of shard %u of job %s is corrupt "
                         "(%zu bytes)", shard, job, len);
    else if (kind != (uint32_t)st->kind || n != st->n || (has_v != 0) != (st->v != NULL))
        rc = flc_err_set(e, FLC_EDIM, "server state of shard %u of job %s was made for "
                         "rule %s over %llu floats, not %s over %zu", shard, job,
                         flc_merge_kind_name((flc_merge_kind_t)kind),
                         (unsigned long long)n, flc_merge_kind_name(st->kind), st->n);
    else {
        st->rounds = rounds;
        memcpy(st->m, blob + STATE_HEAD, n * sizeof(float));
        if (has_v)
            memcpy(st->v, blob + STATE_HEAD + n * sizeof(float), n * sizeof(float));
    }
    free(blob);
    return rc;
}

int flc_rs_state_save(flc_store_t *s, const char *job, uint32_t shard,
                      const flc_merge_state_t *st, flc_err_t *e)
{
    uint32_t kind = (uint32_t)st->kind, has_v = st->v != NULL;
    uint64_t rounds = st->rounds, n = st->n;
    size_t len = STATE_HEAD + (has_v ? 2 : 1) * st->n * sizeof(float);
    char *buf = malloc(len);
    if (buf == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory saving server state");
    memcpy(buf, &kind, 4);
    memcpy(buf + 4, &has_v, 4);
    memcpy(buf + 8, &rounds, 8);
    memcpy(buf + 16, &n, 8);
    memcpy(buf + STATE_HEAD, st->m, st->n * sizeof(float));
    if (has_v)
        memcpy(buf + STATE_HEAD + st->n * sizeof(float), st->v, st->n * sizeof(float));
    int rc = flc_store_opt_state_put(s, job, shard, buf, len);
    free(buf);
    if (rc != FLC_OK) {
        *e = *flc_store_error(s);
        return rc;
    }
    return FLC_OK;
}
