/* Notification lists: pushing tokens and waiting for one (BLPOP, never
 * polling), a merger's wait for its expected clients' arrivals (one BLPOP
 * over their lists), and the start barrier built on them (store_ops.h). */
#include "cache/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int flc_store_notify(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                     const char *list, const char *value, unsigned copies)
{
    flc_err_clear(&s->err);
    if (flc_name_check_job(job, &s->err))
        return s->err.code;
    if (copies == 0)
        return FLC_OK;
    char key[FLC_KEY_MAX];
    int rc = flc_store_shard_key(s, key, job, round, shard, list);
    if (rc == FLC_OK)
        rc = flc_store_ensure(s);
    if (rc != FLC_OK)
        return rc;
    /* One RPUSH with `copies` values. */
    const char **argv = malloc((copies + 2) * sizeof *argv);
    if (argv == NULL)
        return flc_err_set(&s->err, FLC_ENOMEM, "out of memory");
    argv[0] = "RPUSH";
    argv[1] = key;
    for (unsigned i = 0; i < copies; i++)
        argv[2 + i] = value;
    rc = flc_store_run_expiring(s, (int)copies + 2, argv, key, NULL, "RPUSH");
    free(argv);
    return rc;
}

int flc_store_blpop_keys(flc_store_t *s, const char *const *keys, size_t n, unsigned timeout_ms,
                        redisReply **elem)
{
    *elem = NULL;
    char secs[32];
    snprintf(secs, sizeof secs, "%.3f", timeout_ms / 1000.0);
    int rc = flc_store_ensure(s);
    if (rc != FLC_OK)
        return rc;
    const char **argv = malloc((n + 2) * sizeof *argv);
    if (argv == NULL)
        return flc_err_set(&s->err, FLC_ENOMEM, "out of memory for a wait on %zu lists", n);
    argv[0] = "BLPOP";
    for (size_t i = 0; i < n; i++)
        argv[1 + i] = keys[i];
    argv[n + 1] = secs;
    /* The socket must outwait the server-side BLPOP timeout, or hiredis
     * gives up on the connection. On a cluster that is the key's node's
     * connection (and any node a redirect sends the BLPOP to; the keys share
     * one slot): nothing else is in flight on it while this store blocks,
     * and its timeout comes back after, so the connection other commands
     * use stays sound. */
    unsigned block = timeout_ms + s->opts.io_timeout_ms;
    if (s->cl) {
        if ((rc = flc_store_cl_route_key(s, keys[0])) != FLC_OK) {
            free(argv);
            return rc;
        }
        flc_store_cl_block_ms(s, block);
    }
    flc_store_set_timeout(s, block);
    redisReply *r;
    rc = flc_store_command(s, &r, (int)n + 2, argv, NULL);
    free(argv);
    flc_store_set_timeout(s, s->opts.io_timeout_ms);
    if (s->cl)
        flc_store_cl_block_ms(s, 0);
    if (rc != FLC_OK)
        return rc;
    const char *name = n == 1 ? keys[0] : "arrival lists";
    if (r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        return flc_err_set(&s->err, FLC_ETIMEOUT, "nothing on %s within %u ms", name,
                           timeout_ms);
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return flc_err_set(&s->err, FLC_EPROTO, "BLPOP %s: unexpected reply", name);
    }
    *elem = r;
    return FLC_OK;
}

int flc_store_blpop(flc_store_t *s, const char *key, unsigned timeout_ms, redisReply **elem)
{
    return flc_store_blpop_keys(s, &key, 1, timeout_ms, elem);
}

int flc_store_wait(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                   const char *list, unsigned timeout_ms, char *out, size_t outlen)
{
    flc_err_clear(&s->err);
    if (flc_name_check_job(job, &s->err))
        return s->err.code;
    if (timeout_ms == 0)
        return flc_err_set(&s->err, FLC_EINVAL, "waiting on %s needs a timeout", list);
    char key[FLC_KEY_MAX];
    int rc = flc_store_shard_key(s, key, job, round, shard, list);
    if (rc != FLC_OK)
        return rc;
    redisReply *r;
    rc = flc_store_blpop(s, key, timeout_ms, &r);
    if (rc != FLC_OK)
        return rc;
    if (out && outlen)
        snprintf(out, outlen, "%.*s", (int)r->element[1]->len, r->element[1]->str);
    freeReplyObject(r);
    return FLC_OK;
}

int flc_store_wait_arrival(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                           const char *const *clients, size_t n, unsigned timeout_ms,
                           size_t *which)
{
    flc_err_clear(&s->err);
    *which = 0;
    if (n == 0 || timeout_ms == 0)
        return flc_err_set(&s->err, FLC_EINVAL, "waiting for arrivals needs clients and a "
                           "timeout");
    char tag[FLC_TAG_MAX];
    int rc = flc_store_shard_tag(s, job, shard, tag);
    if (rc != FLC_OK)
        return rc;
    char (*keys)[FLC_KEY_MAX] = malloc(n * sizeof *keys);
    const char **kv = malloc(n * sizeof *kv);
    if (keys == NULL || kv == NULL) {
        free(keys), free(kv);
        return flc_err_set(&s->err, FLC_ENOMEM, "out of memory for %zu arrival lists", n);
    }
    for (size_t i = 0; i < n; i++) {
        flc_key_arrival(keys[i], tag, round, clients[i]);
        kv[i] = keys[i];
    }
    redisReply *r;
    rc = flc_store_blpop_keys(s, kv, n, timeout_ms, &r);
    if (rc == FLC_OK) {
        rc = flc_err_set(&s->err, FLC_EPROTO, "shard %u of round %u of job %s: BLPOP answered "
                         "from %.*s, not a list it waited on", shard, round, job,
                         (int)r->element[0]->len, r->element[0]->str);
        for (size_t i = 0; i < n; i++)
            if (strcmp(keys[i], r->element[0]->str) == 0) {
                *which = i;
                flc_err_clear(&s->err);
                rc = FLC_OK;
                break;
            }
        freeReplyObject(r);
    }
    free(keys), free(kv);
    return rc;
}

/* LPOP of each list; 1 where one gave a token. */
#define TAKE_ARRIVED_SCRIPT                                                                 \
    "local out = {} for i, k in ipairs(KEYS) do "                                          \
    "out[i] = redis.call('LPOP', k) and 1 or 0 end return out"

int flc_store_take_arrived(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                           const char *const *clients, size_t n, unsigned char *got)
{
    flc_err_clear(&s->err);
    memset(got, 0, n);
    if (n == 0)
        return FLC_OK;
    char tag[FLC_TAG_MAX];
    int rc = flc_store_shard_tag(s, job, shard, tag);
    if (rc != FLC_OK)
        return rc;
    char (*keys)[FLC_KEY_MAX] = malloc(n * sizeof *keys);
    const char **argv = malloc((n + 3) * sizeof *argv);
    if (keys == NULL || argv == NULL) {
        free(keys), free(argv);
        return flc_err_set(&s->err, FLC_ENOMEM, "out of memory for %zu arrival lists", n);
    }
    char nk[24];
    snprintf(nk, sizeof nk, "%zu", n);
    argv[0] = "EVAL", argv[1] = TAKE_ARRIVED_SCRIPT, argv[2] = nk;
    for (size_t i = 0; i < n; i++) {
        flc_key_arrival(keys[i], tag, round, clients[i]);
        argv[3 + i] = keys[i];
    }
    redisReply *r = NULL;
    rc = flc_store_command(s, &r, (int)n + 3, argv, NULL);
    if (rc == FLC_OK && r->type == REDIS_REPLY_ARRAY && r->elements == n) {
        for (size_t i = 0; i < n; i++)
            got[i] = r->element[i]->type == REDIS_REPLY_INTEGER && r->element[i]->integer == 1;
    } else if (rc == FLC_OK) {
        rc = r->type == REDIS_REPLY_ERROR
                 ? flc_store_reply_error(s, r, "taking arrivals")
                 : flc_err_set(&s->err, FLC_EPROTO, "taking arrivals: %zu answers for %zu "
                               "lists", r->type == REDIS_REPLY_ARRAY ? r->elements : 0, n);
    }
    if (r)
        freeReplyObject(r);
    free(keys), free(argv);
    return rc;
}

/* ---- the start barrier ---------------------------------------------------- */

int flc_store_barrier_incr(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                           uint64_t ttl_ms, long long *n)
{
    *n = -1;
    char key[FLC_KEY_MAX], ttl[24];
    flc_key_barrier(key, job, round, shard, "ready");
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)ttl_ms);
    const char *c1[] = {"INCR", key}, *c2[] = {"PEXPIRE", key, ttl};
    const char *const *cmds[] = {c1, c2};
    const int argc[] = {2, 3};
    redisReply *rs[2];
    int rc = flc_store_pipeline(s, 2, argc, cmds, rs);
    if (rc != FLC_OK)
        return rc;
    if (rs[0]->type == REDIS_REPLY_ERROR) /* the expiry is best effort */
        rc = flc_store_reply_error(s, rs[0], "INCR");
    else
        *n = rs[0]->type == REDIS_REPLY_INTEGER ? rs[0]->integer : -1;
    freeReplyObject(rs[0]);
    freeReplyObject(rs[1]);
    return rc;
}

int flc_store_barrier_release(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                              unsigned copies)
{
    char k_ready[FLC_KEY_MAX], k_go[FLC_KEY_MAX];
    flc_key_barrier(k_ready, job, round, shard, "ready");
    flc_key_barrier(k_go, job, round, shard, "go");
    const char **push = malloc((copies + 2) * sizeof *push);
    if (push == NULL)
        return flc_err_set(&s->err, FLC_ENOMEM, "out of memory");
    push[0] = "RPUSH";
    push[1] = k_go;
    for (unsigned i = 0; i < copies; i++)
        push[2 + i] = "go";
    /* The counter goes first (a late retry counts from 0 again), then the
     * tokens, in one round trip. */
    char ttl[24]; /* the tokens' expiry in the same pipeline (one write) */
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)s->opts.ttl_ms);
    const char *c1[] = {"UNLINK", k_ready};
    const char *c3[] = {"PEXPIRE", k_go, ttl};
    const char *const *cmds[] = {c1, push, c3};
    const int argc[] = {2, (int)copies + 2, 3};
    redisReply *rs[3];
    size_t n = copies ? (s->opts.ttl_ms ? 3 : 2) : 1;
    int rc = flc_store_pipeline(s, n, argc, cmds, rs);
    free(push);
    if (rc != FLC_OK)
        return rc;
    for (size_t i = 1; i < n; i++) /* the UNLINK is best effort */
        if (rc == FLC_OK && rs[i]->type == REDIS_REPLY_ERROR)
            rc = flc_store_reply_error(s, rs[i], i == 1 ? "RPUSH" : "PEXPIRE");
    for (size_t i = 0; i < n; i++)
        freeReplyObject(rs[i]);
    return rc;
}

int flc_store_barrier_wait(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                           unsigned timeout_ms)
{
    flc_err_clear(&s->err);
    if (timeout_ms == 0)
        return flc_err_set(&s->err, FLC_EINVAL, "waiting at the start barrier needs a timeout");
    char key[FLC_KEY_MAX];
    flc_key_barrier(key, job, round, shard, "go");
    redisReply *r;
    int rc = flc_store_blpop(s, key, timeout_ms, &r);
    if (rc == FLC_OK)
        freeReplyObject(r);
    return rc;
}

int flc_store_barrier_del(flc_store_t *s, const char *job, uint32_t round, uint32_t shard)
{
    char k_ready[FLC_KEY_MAX], k_go[FLC_KEY_MAX];
    flc_key_barrier(k_ready, job, round, shard, "ready");
    flc_key_barrier(k_go, job, round, shard, "go");
    const char *argv[] = {"UNLINK", k_ready, k_go}; /* one hash tag: one slot */
    return flc_store_command(s, NULL, 3, argv, NULL);
}
