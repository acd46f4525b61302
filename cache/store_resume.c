/* The job checkpoint value fl:{J/j}:resume (see store_resume.h), a job
 * record (store_record.c). */
#include "cache/store_resume.h"

#include "cache/store_record.h"

int flc_store_ckpt_get(flc_store_t *s, const char *job, char **blob, size_t *len)
{
    return flc_store_record_get(s, job, "resume", "checkpoint",
                                "to resume from: no round of it was closed, it does not exist, "
                                "or it ran with --mode async, which keeps none",
                                blob, len);
}

int flc_store_ckpt_put(flc_store_t *s, const char *job, const void *blob, size_t len)
{
    return flc_store_record_put(s, job, "resume", "checkpoint", blob, len);
}

int flc_store_ckpt_del(flc_store_t *s, const char *job)
{
    return flc_store_record_del(s, job, "resume");
}
