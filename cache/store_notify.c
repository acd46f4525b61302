/* Notification lists: pushing tokens and waiting for one (BLPOP, never
 * polling). */
#include "cache/store_internal.h"

#include <stdio.h>
#include <stdlib.h>

int flc_store_notify(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                     const char *list, const char *value, unsigned copies)
{
    flc_err_clear(&s->err);
    if (flc_name_check(job, "job", &s->err))
        return s->err.code;
    if (copies == 0)
        return FLC_OK;
    char key[FLC_KEY_MAX];
    flc_key_shard(key, job, round, shard, list);
    int rc = flc_store_ensure(s);
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
    redisReply *r;
    rc = flc_store_command(s, &r, (int)copies + 2, argv, NULL);
    free(argv);
    if (rc == FLC_OK)
        freeReplyObject(r);
    return rc;
}

int flc_store_blpop(flc_store_t *s, const char *key, unsigned timeout_ms, redisReply **elem)
{
    *elem = NULL;
    char secs[32];
    snprintf(secs, sizeof secs, "%.3f", timeout_ms / 1000.0);
    int rc = flc_store_ensure(s);
    if (rc != FLC_OK)
        return rc;
    /* The socket must outwait the server-side BLPOP timeout. */
    flc_store_set_timeout(s, timeout_ms + s->opts.io_timeout_ms);
    redisReply *r;
    const char *argv[] = {"BLPOP", key, secs};
    rc = flc_store_command(s, &r, 3, argv, NULL);
    flc_store_set_timeout(s, s->opts.io_timeout_ms);
    if (rc != FLC_OK)
        return rc;
    if (r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        return flc_err_set(&s->err, FLC_ETIMEOUT, "nothing on %s within %u ms", key, timeout_ms);
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[1]->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return flc_err_set(&s->err, FLC_EPROTO, "BLPOP %s: unexpected reply", key);
    }
    *elem = r;
    return FLC_OK;
}

int flc_store_wait(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                   const char *list, unsigned timeout_ms, char *out, size_t outlen)
{
    flc_err_clear(&s->err);
    if (flc_name_check(job, "job", &s->err))
        return s->err.code;
    if (timeout_ms == 0)
        return flc_err_set(&s->err, FLC_EINVAL, "waiting on %s needs a timeout", list);
    char key[FLC_KEY_MAX];
    flc_key_shard(key, job, round, shard, list);
    redisReply *r;
    int rc = flc_store_blpop(s, key, timeout_ms, &r);
    if (rc != FLC_OK)
        return rc;
    if (out && outlen)
        snprintf(out, outlen, "%.*s", (int)r->element[1]->len, r->element[1]->str);
    freeReplyObject(r);
    return FLC_OK;
}
