/* A job's progress list (store_ops.h): records a worker appends while it
 * trains and a driver consumes as they come, fl:{J}:progress. The driver may
 * never come, so every push renews the list's expiry; both go in one round
 * trip, since a push happens on the training's step path. */
#include "cache/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/keys.h"

int flc_store_progress_push(flc_store_t *s, const char *job, const char *rec, uint64_t ttl_ms)
{
    char key[FLC_KEY_MAX], ttl[24];
    flc_key_job(key, job, "progress");
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)ttl_ms);
    const char *c1[] = {"RPUSH", key, rec}, *c2[] = {"PEXPIRE", key, ttl};
    const char *const *cmds[] = {c1, c2};
    const int argc[] = {3, 3};
    redisReply *rs[2];
    int rc = flc_store_pipeline(s, 2, argc, cmds, rs);
    if (rc != FLC_OK)
        return rc;
    if (rs[0]->type == REDIS_REPLY_ERROR)
        rc = flc_store_reply_error(s, rs[0], "RPUSH");
    else if (rs[1]->type == REDIS_REPLY_ERROR)
        rc = flc_store_reply_error(s, rs[1], "PEXPIRE");
    freeReplyObject(rs[0]);
    freeReplyObject(rs[1]);
    return rc;
}

/* A new NUL-terminated copy of a string reply into *rec. */
static int take_string(flc_store_t *s, const redisReply *r, char **rec)
{
    *rec = malloc((size_t)r->len + 1);
    if (*rec == NULL)
        return flc_err_set(&s->err, FLC_ENOMEM, "out of memory for a %zu-byte progress record",
                           (size_t)r->len);
    memcpy(*rec, r->str, (size_t)r->len);
    (*rec)[r->len] = '\0';
    return FLC_OK;
}

int flc_store_progress_wait(flc_store_t *s, const char *job, unsigned timeout_ms, char **rec)
{
    *rec = NULL;
    char key[FLC_KEY_MAX];
    flc_key_job(key, job, "progress");
    redisReply *r;
    int rc = flc_store_blpop(s, key, timeout_ms, &r);
    if (rc != FLC_OK)
        return rc;
    rc = take_string(s, r->element[1], rec);
    freeReplyObject(r);
    return rc;
}

int flc_store_progress_pop(flc_store_t *s, const char *job, char **rec)
{
    *rec = NULL;
    char key[FLC_KEY_MAX];
    flc_key_job(key, job, "progress");
    const char *argv[] = {"LPOP", key};
    redisReply *r;
    int rc = flc_store_command(s, &r, 2, argv, NULL);
    if (rc != FLC_OK)
        return rc;
    if (r->type == REDIS_REPLY_STRING)
        rc = take_string(s, r, rec);
    else
        rc = flc_err_set(&s->err, FLC_ENOTFOUND, "no progress record on %s", key);
    freeReplyObject(r);
    return rc;
}

int flc_store_progress_del(flc_store_t *s, const char *job)
{
    char key[FLC_KEY_MAX];
    flc_key_job(key, job, "progress");
    const char *argv[] = {"UNLINK", key};
    return flc_store_command(s, NULL, 2, argv, NULL);
}
