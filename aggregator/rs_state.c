/* Server-optimizer state (FedAvgM momentum, FedAdam/Yogi/Adagrad moments) of
 * one shard, kept in the cache between rounds so that a stateless aggregator
 * function can run a stateful rule. One value per (job, shard) under the
 * shard's own hash tag, fl:{J/state/s}:opt, laid out as
 *   u32 kind | u32 has_v | u64 rounds | u64 n | m[n] floats | v[n] floats. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/rs_internal.h"
#include "cache/keys.h"

#define STATE_HEAD 24u

static void state_key(char *key, const char *job, uint32_t shard)
{
    snprintf(key, FLC_KEY_MAX, "fl:{%s/state/%u}:opt", job, shard);
}

int flc_rs_state_load(flc_store_t *s, const char *job, uint32_t shard, flc_merge_state_t *st,
                      flc_err_t *e)
{
    char key[FLC_KEY_MAX];
    state_key(key, job, shard);
    redisReply *r;
    if (flc_store_commandf(s, &r, "GET %s", key) != FLC_OK) {
        *e = *flc_store_error(s);
        return e->code;
    }
    int rc = FLC_OK;
    if (r->type != REDIS_REPLY_STRING) {
        rc = flc_err_set(e, FLC_ENOTFOUND, "no server state for shard %u of job %s", shard, job);
    } else {
        uint32_t kind, has_v;
        uint64_t rounds, n;
        if ((size_t)r->len >= STATE_HEAD) {
            memcpy(&kind, r->str, 4);
            memcpy(&has_v, r->str + 4, 4);
            memcpy(&rounds, r->str + 8, 8);
            memcpy(&n, r->str + 16, 8);
        }
        size_t want = (size_t)r->len >= STATE_HEAD
                          ? STATE_HEAD + (has_v ? 2 : 1) * (size_t)n * sizeof(float)
                          : 0;
        if ((size_t)r->len < STATE_HEAD || (size_t)r->len != want)
            rc = flc_err_set(e, FLC_EDATA, "server state of shard %u of job %s is corrupt "
                             "(%zu bytes)", shard, job, (size_t)r->len);
        else if (kind != (uint32_t)st->kind || n != st->n || (has_v != 0) != (st->v != NULL))
            rc = flc_err_set(e, FLC_EDIM, "server state of shard %u of job %s was made for "
                             "rule %s over %llu floats, not %s over %zu", shard, job,
                             flc_merge_kind_name((flc_merge_kind_t)kind),
                             (unsigned long long)n, flc_merge_kind_name(st->kind), st->n);
        else {
            st->rounds = rounds;
            memcpy(st->m, r->str + STATE_HEAD, n * sizeof(float));
            if (has_v)
                memcpy(st->v, r->str + STATE_HEAD + n * sizeof(float), n * sizeof(float));
        }
    }
    freeReplyObject(r);
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
    char key[FLC_KEY_MAX];
    state_key(key, job, shard);
    redisReply *r;
    const char *argv[] = {"SET", key, buf};
    size_t lens[] = {3, strlen(key), len};
    int rc = flc_store_command(s, &r, 3, argv, lens);
    free(buf);
    if (rc != FLC_OK) {
        *e = *flc_store_error(s);
        return rc;
    }
    freeReplyObject(r);
    return FLC_OK;
}
