/* The configuration side of asynchronous runs (clients/async.h): mode
 * names, what the async modes support (checked once, by the CLI as usage
 * errors and by flc_async_run), and the choices shared with the
 * synchronous driver (the merge rule of a strategy, the faulty set), so a
 * seed gives both drivers the same faulty clients. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "clients/async_internal.h"
#include "ml/rng.h"

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

int async_rule_for(const flc_sim_cfg_t *c, flc_merge_rule_t *r, flc_err_t *e)
{
    static const char *const names[FLC_SIM_NSTRATEGIES] = {
        "fedavg", "fedavg", "fedadam", "fedyogi", "median", "trimmed-mean", "krum", "multi-krum"};
    if (c->rule != NULL)
        return flc_merge_rule_parse(r, c->rule, e);
    int rc = flc_merge_rule_init(r, names[c->strategy], e);
    if (rc == FLC_OK && (c->strategy == FLC_SIM_FEDADAM || c->strategy == FLC_SIM_FEDYOGI))
        rc = flc_merge_rule_set(r, "server_lr", c->server_lr, e);
    return rc;
}

size_t async_faulty_set(const flc_sim_cfg_t *c, unsigned char *flags)
{
    size_t nf = (size_t)llround(c->faulty * c->clients);
    uint32_t *perm = nf ? malloc((size_t)c->clients * sizeof *perm) : NULL;
    if (perm == NULL)
        return 0;
    for (int i = 0; i < c->clients; i++)
        perm[i] = (uint32_t)i;
    flc_rng_t r;
    flc_rng_seed2(&r, c->seed, 0xFA017ull);
    for (size_t i = 0; i < nf; i++) {
        size_t j = i + (size_t)flc_rng_below(&r, (uint64_t)c->clients - i);
        uint32_t t = perm[i];
        perm[i] = perm[j], perm[j] = t;
        flags[perm[i]] = 1;
    }
    free(perm);
    return nf;
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
    int rc = async_rule_for(c, &r, e);
    if (rc == FLC_OK)
        rc = check_supported(c, &r, e);
    if (rc == FLC_OK)
        rc = flc_async_stale_parse(a->staleness, &st, e);
    return rc;
}
