/* Raw commands on the store's connection (store_raw.h): one command, a
 * pipeline of them, and the append / flush / read steps the store's own
 * pipelines are built from. Nothing here knows a key or a protocol. */
#include "cache/store_internal.h"

#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/clock.h"
#include "cache/cluster_map.h"

int flc_store_append(flc_store_t *s, int argc, const char **argv, const size_t *lens)
{
    if (s->cl) {
        char *cmd = NULL;
        int len = redisFormatCommandArgv(&cmd, argc, argv, lens);
        if (len < 0)
            return flc_err_set(&s->err, FLC_ENOMEM, "out of memory building %s", argv[0]);
        return flc_store_cl_push(s, cmd, (size_t)len);
    }
    if (redisAppendCommandArgv(s->c, argc, argv, lens) != REDIS_OK)
        return flc_store_io_error(s, "building a command");
    return FLC_OK;
}

int flc_store_flush(flc_store_t *s, const char *what)
{
    if (s->cl)
        return flc_store_cl_flush(s, what);
    int done = 0;
    while (!done) {
        if (redisBufferWrite(s->c, &done) != REDIS_OK)
            return flc_store_io_error(s, what);
    }
    return FLC_OK;
}

int flc_store_read(flc_store_t *s, redisReply **r, const char *what)
{
    if (s->cl)
        return flc_store_cl_read(s, r, what);
    void *reply = NULL;
    if (redisGetReply(s->c, &reply) != REDIS_OK || reply == NULL)
        return flc_store_io_error(s, what);
    *r = reply;
    return FLC_OK;
}

static int pipeline_once(flc_store_t *s, size_t n, const int *argc,
                         const char *const *const *argv, const size_t *const *lens,
                         redisReply **out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = NULL;
    int rc = flc_store_ensure(s);
    for (size_t i = 0; rc == FLC_OK && i < n; i++)
        rc = flc_store_append(s, argc[i], (const char **)argv[i], lens ? lens[i] : NULL);
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

int flc_store_pipeline_bin(flc_store_t *s, size_t n, const int *argc,
                           const char *const *const *argv, const size_t *const *lens,
                           redisReply **out)
{
    return pipeline_once(s, n, argc, argv, lens, out);
}

/* 1 when a reply says the transaction it belongs to did not run because a
 * command of it was redirected (cluster). */
static int tx_redirected(const redisReply *r)
{
    flc_cluster_redirect_t rd;
    if (r == NULL || r->type != REDIS_REPLY_ERROR)
        return 0;
    if (strncmp(r->str, "EXECABORT", 9) == 0)
        return 1;
    flc_cluster_reply_t k = flc_cluster_classify(r, &rd);
    return k == FLC_CLUSTER_R_MOVED || k == FLC_CLUSTER_R_ASK || k == FLC_CLUSTER_R_TRYAGAIN ||
           k == FLC_CLUSTER_R_CLUSTERDOWN;
}

int flc_store_pipeline(flc_store_t *s, size_t n, const int *argc, const char *const *const *argv,
                       redisReply **out)
{
    int rc = pipeline_once(s, n, argc, argv, NULL, out);
    if (s->cl == NULL || rc != FLC_OK)
        return rc;
    /* On a cluster a redirected command inside MULTI is not resent alone
     * (store_cluster.c): EXEC aborted, nothing of the transaction ran, and
     * the map has learnt the new owner, so the whole pipeline goes again
     * (its commands outside the transaction are idempotent where the store
     * uses one). Bounded like the redirects: 10 s. */
    int has_multi = 0;
    for (size_t i = 0; i < n; i++)
        has_multi |= strcasecmp(argv[i][0], "MULTI") == 0;
    for (unsigned wait = 10, spent = 0; has_multi && spent < 10000; spent += wait, wait *= 2) {
        int again = 0;
        for (size_t i = 0; i < n; i++)
            again |= tx_redirected(out[i]);
        if (!again)
            break;
        for (size_t i = 0; i < n; i++)
            freeReplyObject(out[i]);
        flc_sleep_ms(wait > 1000 ? (wait = 1000) : wait);
        if ((rc = flc_store_ensure(s)) != FLC_OK || (rc = pipeline_once(s, n, argc, argv, NULL, out)))
            return rc;
    }
    return FLC_OK;
}

/* Sends one formatted command on a cluster and reads its reply as
 * flc_store_command does. A command that can run twice with the same effect
 * (flc_store_cl_idempotent) is sent again when its node's connection was
 * lost (a master killed: EOF, then refused connects until its replica is
 * promoted), after a backoff and a map refresh, until the cluster deadline;
 * others fail as on one server, since they may have run. */
static int cluster_command(flc_store_t *s, redisReply **out, char *cmd, int len,
                           const char *what)
{
    if (len < 0)
        return flc_err_set(&s->err, FLC_ENOMEM, "out of memory building %s", what);
    if (flc_store_cl_whole_server(cmd, (size_t)len)) {
        redisReply *r = NULL;
        int rc = flc_store_cl_all_masters(s, cmd, (size_t)len, &r, what);
        free(cmd);
        if (rc == FLC_OK && r->type == REDIS_REPLY_ERROR) {
            rc = flc_store_reply_error(s, r, what);
            freeReplyObject(r);
            r = NULL;
        }
        *out = r;
        return rc;
    }
    int again = flc_store_cl_idempotent(cmd, (size_t)len);
    uint64_t t0 = flc_now_ns();
    unsigned wait = 0;
    for (;;) {
        char *copy = again ? malloc((size_t)len) : NULL;
        if (copy)
            memcpy(copy, cmd, (size_t)len);
        redisReply *r = NULL;
        int rc = flc_store_cl_push(s, cmd, (size_t)len); /* takes cmd */
        if (rc == FLC_OK)
            rc = flc_store_cl_flush(s, what);
        if (rc == FLC_OK)
            rc = flc_store_cl_read(s, &r, what);
        if (rc == FLC_ECONN && copy &&
            flc_now_ns() - t0 < (uint64_t)FLC_STORE_CL_DEADLINE_MS * 1000000u) {
            flc_store_cl_backoff(&wait, 100, 1000);
            (void)flc_store_ensure(s); /* the map refresh, when due */
            cmd = copy;
            continue;
        }
        free(copy);
        if (rc != FLC_OK)
            return rc;
        if (r->type == REDIS_REPLY_ERROR) {
            rc = flc_store_reply_error(s, r, what);
            freeReplyObject(r);
            return rc;
        }
        *out = r;
        return FLC_OK;
    }
}

static int command(flc_store_t *s, redisReply **out, int argc, const char **argv,
                   const size_t *argvlen)
{
    *out = NULL;
    int rc = flc_store_ensure(s);
    if (rc != FLC_OK)
        return rc;
    if (s->cl) {
        char *cmd = NULL;
        int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
        return cluster_command(s, out, cmd, len, argv[0]);
    }
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

int flc_store_command(flc_store_t *s, redisReply **out, int argc, const char **argv,
                      const size_t *argvlen)
{
    redisReply *r = NULL;
    int rc = command(s, &r, argc, argv, argvlen);
    if (out != NULL)
        *out = r;
    else if (r != NULL)
        freeReplyObject(r);
    return rc;
}

int flc_store_commandf(flc_store_t *s, redisReply **out, const char *fmt, ...)
{
    *out = NULL;
    int rc = flc_store_ensure(s);
    if (rc != FLC_OK)
        return rc;
    char what[32];
    snprintf(what, sizeof what, "%.*s", (int)strcspn(fmt, " "), fmt);
    va_list ap;
    va_start(ap, fmt);
    if (s->cl) {
        char *cmd = NULL;
        int len = redisvFormatCommand(&cmd, fmt, ap);
        va_end(ap);
        return cluster_command(s, out, cmd, len, what);
    }
    redisReply *r = redisvCommand(s->c, fmt, ap);
    va_end(ap);
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
