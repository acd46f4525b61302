/* The configuration side of asynchronous runs (clients/async.h): mode
 * names, what the async modes support (checked once, by the CLI as usage
 * errors and by flc_async_run). The choices shared with the synchronous
 * driver (the merge rule of a strategy, the faulty set) are in
 * clients/sim_choices.c. */
#include <string.h>

#include "clients/async_internal.h"

const char *flc_async_mode_name(flc_async_mode_t m)
{
    return m == FLC_ASYNC_MODE_ASYNC ? "async" : m == FLC_ASYNC_MODE_SYNC_CLOCK ? "sync-clock"
                                                                              : "sync";
}

int flc_async_mode_parse(const char *name, flc_async_mode_t *out)
{
    for (int m = FLC_ASYNC_MODE_SYNC; name != NULL && m <= FLC_ASYNC_MODE_SYNC_CLOCK; m++)
        if (strcmp(name, flc_async_mode_name((flc_async_mode_t)m)) == 0) {
            *out = (flc_async_mode_t)m;
            return FLC_OK;
        }
    return FLC_EINVAL;
}

/* What the asynchronous driver does not do (yet), refused by name. */
static int check_supported(const flc_sim_cfg_t *c, const flc_merge_rule_t *r, flc_err_t *e)
{
    if (c->deadline_ms > 0) /* checked before flc_sim_cfg_finish fills it in */
        return flc_err_set(e, FLC_EINVAL, "asynchronous modes do not support --deadline-ms: "
                           "the buffer, not a clock, closes a version");
    const char *no = c->dropout > 0         ? "--dropout (a client that never reports)"
                     : c->ldp_clip > 0      ? "local DP (--ldp-clip)"
                     : c->dp_quantile > 0   ? "adaptive clipping (--dp-quantile)"
                     : r->noise > 0         ? "central DP noise"
                     : c->synthetic_params  ? "synthetic models"
                                            : NULL;
    if (no != NULL)
        return flc_err_set(e, FLC_EINVAL, "asynchronous modes do not support %s", no);
    if (!flc_merge_rule_streams(r))
        return flc_err_set(e, FLC_EINVAL, "asynchronous modes fold each arrival into the buffer: "
                           "rule %s does not stream (fedavg, mean, fedavgm, fedadam, fedyogi "
                           "and fedadagrad do)", flc_merge_kind_name(r->kind));
    return FLC_OK;
}

int flc_async_cfg_check(const flc_sim_cfg_t *c, const flc_async_cfg_t *a, flc_err_t *e)
{
    flc_merge_rule_t r;
    flc_async_stale_t st;
    int rc = sim_rule_for(c, &r, e);
    if (rc == FLC_OK)
        rc = check_supported(c, &r, e);
    if (rc == FLC_OK)
        rc = flc_async_stale_parse(a->staleness, &st, e);
    return rc;
}
