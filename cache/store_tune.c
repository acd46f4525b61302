/* The tune record fl:{J/j}:tune (see store_tune.h), a job record
 * (store_record.c). */
#include "cache/store_tune.h"

#include "cache/store_record.h"

int flc_store_tune_get(flc_store_t *s, const char *job, char **blob, size_t *len)
{
    return flc_store_record_get(s, job, "tune", "tune record", "no `flcache tune` stored one", blob,
                                len);
}

int flc_store_tune_put(flc_store_t *s, const char *job, const void *blob, size_t len)
{
    return flc_store_record_put(s, job, "tune", "tune record", blob, len);
}
