/* Bytes through the cache for the workloads: a value is an update shard of
 * the job under its partition's hash tag (job_internal.h says why), so the
 * cache's own put/get (chunking, pipelining, cluster routing) carries it and
 * no new key kind is needed. */
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"
#include "jobs/job_internal.h"

static int store_err(flc_job_xfer_t *x, flc_err_t *e)
{
    const flc_err_t *se = flc_store_error(x->s);
    return flc_err_set(e, se->code ? se->code : FLC_EIO, "%s", se->msg);
}

int flc_job_put(flc_job_xfer_t *x, uint32_t round, uint32_t part, const char *name,
                const void *buf, size_t len, flc_err_t *e)
{
    uint64_t t0 = flc_now_ns();
    flc_shard_t sh;
    memset(&sh, 0, sizeof sh);
    snprintf(sh.job, sizeof sh.job, "%s", x->job);
    snprintf(sh.client, sizeof sh.client, "%s", name);
    sh.round = round;
    sh.shard = part;
    sh.num_shards = x->nparts;
    size_t count = (len + 3) / 4;
    if (count == 0)
        count = 1; /* an empty value still exists: one padding float */
    sh.count = sh.model_size = count;
    sh.num_samples = len;
    sh.weight = 1;
    sh.created_ms = flc_wall_ms();
    float *pad = NULL;
    if (len % 4 != 0 || len == 0 || ((uintptr_t)buf & 3u) != 0) {
        pad = calloc(count, sizeof *pad);
        if (pad == NULL)
            return flc_err_set(e, FLC_ENOMEM, "out of memory for value %s of partition %u", name,
                               part);
        if (len)
            memcpy(pad, buf, len);
        sh.values = pad;
    } else {
        sh.values = (float *)buf;
    }
    int closed = 0;
    int rc = flc_store_put_updates_if_open(x->s, &sh, 1, &closed);
    free(pad);
    x->comm_ms += flc_job_ms(t0);
    if (rc != FLC_OK)
        return store_err(x, e);
    x->bytes += len;
    return FLC_OK;
}

int flc_job_get(flc_job_xfer_t *x, uint32_t round, uint32_t part, const char *name,
                flc_shard_t *sh, size_t *len, flc_err_t *e)
{
    uint64_t t0 = flc_now_ns();
    memset(sh, 0, sizeof *sh);
    int rc = flc_store_get_update(x->s, x->job, round, part, name, sh, NULL, 0);
    x->comm_ms += flc_job_ms(t0);
    if (rc != FLC_OK)
        return store_err(x, e);
    if (sh->num_samples > sh->count * 4) {
        flc_shard_release(sh);
        return flc_err_set(e, FLC_EDATA, "value %s of partition %u of job %s says %llu bytes "
                           "but holds %llu", name, part, x->job,
                           (unsigned long long)sh->num_samples,
                           (unsigned long long)sh->count * 4);
    }
    *len = (size_t)sh->num_samples;
    x->bytes += *len;
    return FLC_OK;
}

double flc_job_ms(uint64_t t0_ns)
{
    return (double)(flc_now_ns() - t0_ns) / 1e6;
}
