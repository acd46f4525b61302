/* A job's small records: one value at fl:{J/j}:<name>, read and written
 * whole (the resume checkpoint, store_resume.c; the tune result,
 * store_tune.c). One GET, one SET with the store's expiry. */
#include "cache/store_record.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/keys.h"
#include "cache/store_internal.h"

int flc_store_record_get(flc_store_t *s, const char *job, const char *name, const char *what,
                         const char *absent, char **blob, size_t *len)
{
    *blob = NULL;
    *len = 0;
    flc_err_clear(&s->err);
    if (flc_name_check_job(job, &s->err))
        return s->err.code;
    char key[FLC_KEY_MAX];
    flc_key_job(key, job, name);
    const char *argv[] = {"GET", key};
    redisReply *r;
    int rc = flc_store_command(s, &r, 2, argv, NULL);
    if (rc != FLC_OK)
        return rc;
    if (r->type != REDIS_REPLY_STRING)
        rc = flc_err_set(&s->err, FLC_ENOTFOUND, "job '%s' has no %s (%s)", job, what, absent);
    else if ((*blob = malloc((size_t)r->len + 1)) == NULL)
        rc = flc_err_set(&s->err, FLC_ENOMEM, "out of memory for job %s's %s", job, what);
    else {
        memcpy(*blob, r->str, (size_t)r->len);
        (*blob)[r->len] = '\0'; /* JSON records are read as strings */
        *len = (size_t)r->len;
    }
    freeReplyObject(r);
    return rc;
}

int flc_store_record_put(flc_store_t *s, const char *job, const char *name, const char *what,
                         const void *blob, size_t len)
{
    flc_err_clear(&s->err);
    if (flc_name_check_job(job, &s->err))
        return s->err.code;
    char key[FLC_KEY_MAX], ttl[24];
    flc_key_job(key, job, name);
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)s->opts.ttl_ms);
    const char *argv[] = {"SET", key, blob, "PX", ttl};
    size_t lens[] = {3, strlen(key), len, 2, strlen(ttl)};
    int rc = flc_store_command(s, NULL, s->opts.ttl_ms ? 5 : 3, argv, lens);
    return rc == FLC_OK ? rc : flc_err_wrap(&s->err, "writing job %s's %s: ", job, what);
}

int flc_store_record_del(flc_store_t *s, const char *job, const char *name)
{
    flc_err_clear(&s->err);
    if (flc_name_check_job(job, &s->err))
        return s->err.code;
    char key[FLC_KEY_MAX];
    flc_key_job(key, job, name);
    const char *argv[] = {"UNLINK", key};
    return flc_store_command(s, NULL, 2, argv, NULL);
}
