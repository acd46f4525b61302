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
    int rc = flc_store_blob_get(s, key, what, blob, len);
    if (rc == FLC_ENOTFOUND)
        flc_err_set(&s->err, FLC_ENOTFOUND, "job '%s' has no %s (%s)", job, what, absent);
    return rc;
}

int flc_store_record_put(flc_store_t *s, const char *job, const char *name, const char *what,
                         const void *blob, size_t len)
{
    flc_err_clear(&s->err);
    if (flc_name_check_job(job, &s->err))
        return s->err.code;
    char key[FLC_KEY_MAX];
    flc_key_job(key, job, name);
    int rc = flc_store_blob_set(s, key, blob, len);
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
