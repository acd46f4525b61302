/* Raw commands on the store's connection (store_raw.h): one command, a
 * pipeline of them, and the append / flush / read steps the store's own
 * pipelines are built from. Nothing here knows a key or a protocol. */
#include "cache/store_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int flc_store_append(flc_store_t *s, int argc, const char **argv, const size_t *lens)
{
    if (redisAppendCommandArgv(s->c, argc, argv, lens) != REDIS_OK)
        return flc_store_io_error(s, "building a command");
    return FLC_OK;
}

int flc_store_flush(flc_store_t *s, const char *what)
{
    int done = 0;
    while (!done) {
        if (redisBufferWrite(s->c, &done) != REDIS_OK)
            return flc_store_io_error(s, what);
    }
    return FLC_OK;
}

int flc_store_read(flc_store_t *s, redisReply **r, const char *what)
{
    void *reply = NULL;
    if (redisGetReply(s->c, &reply) != REDIS_OK || reply == NULL)
        return flc_store_io_error(s, what);
    *r = reply;
    return FLC_OK;
}

int flc_store_pipeline(flc_store_t *s, size_t n, const int *argc, const char *const *const *argv,
                       redisReply **out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = NULL;
    int rc = flc_store_ensure(s);
    for (size_t i = 0; rc == FLC_OK && i < n; i++)
        rc = flc_store_append(s, argc[i], (const char **)argv[i], NULL);
    if (rc == FLC_OK)
        rc = flc_store_flush(s, argv[0][0]);
    for (size_t i = 0; rc == FLC_OK && i < n; i++)
        rc = flc_store_read(s, &out[i], argv[i][0]);
    if (rc != FLC_OK)
        for (size_t i = 0; i < n; i++)
            if (out[i]) {
                freeReplyObject(out[i]);
                out[i] = NULL;
            }
    return rc;
}

int flc_store_command(flc_store_t *s, redisReply **out, int argc, const char **argv,
                      const size_t *argvlen)
{
    *out = NULL;
    int rc = flc_store_ensure(s);
    if (rc != FLC_OK)
        return rc;
    redisReply *r = redisCommandArgv(s->c, argc, argv, argvlen);
    if (r == NULL)
        return flc_store_io_error(s, argv[0]);
    if (r->type == REDIS_REPLY_ERROR) {
        rc = flc_store_reply_error(s, r, argv[0]);
        freeReplyObject(r);
        return rc;
    }
    *out = r;
    return FLC_OK;
}

int flc_store_commandf(flc_store_t *s, redisReply **out, const char *fmt, ...)
{
    *out = NULL;
    int rc = flc_store_ensure(s);
    if (rc != FLC_OK)
        return rc;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(s->c, fmt, ap);
    va_end(ap);
    char what[32];
    snprintf(what, sizeof what, "%.*s", (int)strcspn(fmt, " "), fmt);
    if (r == NULL)
        return flc_store_io_error(s, what);
    if (r->type == REDIS_REPLY_ERROR) {
        rc = flc_store_reply_error(s, r, what);
        freeReplyObject(r);
        return rc;
    }
    *out = r;
    return FLC_OK;
}

int flc_store_read_replies(flc_store_t *s, int n, const char *what, long long *last)
{
    int first = FLC_OK;
    for (int i = 0; i < n; i++) {
        redisReply *r = NULL;
        int rc = flc_store_read(s, &r, what);
        if (rc != FLC_OK)
            return rc; /* connection gone: nothing more to read */
        if (r->type == REDIS_REPLY_ERROR && first == FLC_OK)
            first = flc_store_reply_error(s, r, what);
        if (last && i == n - 1)
            *last = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
        freeReplyObject(r);
    }
    return first;
}
