/* The merger's side of a Redis Cluster failover (issue 12 point 5).
 *
 * A merger blocks on its shard's arrivals list. When the shard's master is
 * killed, the store sends the blocking pop again to the promoted replica
 * (cache/store_failover.h), and arrivals go on from there. Two things can
 * have been lost with the dead master, since Redis replicates
 * asynchronously: an update and its announcement together (the client was
 * told "stored"; only the driver, who knows that, can have it pushed
 * again), or only the token: one the dead master had popped for this
 * merger when the connection broke. In the second case the update is there
 * and nothing will announce it again, so the merger would count its client
 * as missing. After every failover the merger therefore asks the new owner
 * which of the clients it still waits for have their update stored
 * (flc_store_updates_present), and takes those now (a token arriving later
 * is a duplicate, counted once). One whose value is gone was lost with the
 * dead master: the client's driver, or the worker itself, pushes it again. */
#include <stdlib.h>
#include <string.h>

#include "aggregator/rs_recover.h"
#include "base/clock.h"
#include "base/log.h"
#include "cache/store_failover.h"

int flc_rs_recover(flc_store_t *s, const flc_rs_merger_cfg_t *cfg, const unsigned char *seen,
                   flc_rs_recover_t *st, flc_strlist_t *found)
{
    memset(found, 0, sizeof *found);
    uint64_t now = flc_store_failovers(s);
    if (!st->started || now == st->failovers) {
        st->started = 1;
        st->failovers = now;
        return FLC_OK;
    }
    st->failovers = now;
    size_t n = 0;
    const char **ask = malloc((cfg->n_expected ? cfg->n_expected : 1) * sizeof *ask);
    unsigned char *present = calloc(cfg->n_expected ? cfg->n_expected : 1, 1);
    if (ask == NULL || present == NULL) {
        free(ask), free(present);
        return FLC_ENOMEM;
    }
    for (size_t i = 0; i < cfg->n_expected; i++)
        if (!seen[i])
            ask[n++] = cfg->expected[i];
    int rc = flc_store_updates_present(s, cfg->job, cfg->round, cfg->shard, ask, n, present);
    for (size_t i = 0; rc == FLC_OK && i < n; i++) {
        if (present[i]) {
            FLC_INFO("merger %s/%u/%u: update of %s is stored but its arrival was lost in a "
                     "failover: taken now", cfg->job, cfg->round, cfg->shard, ask[i]);
            if (flc_strlist_add(found, ask[i], strlen(ask[i])) != FLC_OK)
                rc = FLC_ENOMEM;
        } else {
            FLC_INFO("merger %s/%u/%u: after a failover, no update of %s (lost with the "
                     "dead master, or not sent yet)", cfg->job, cfg->round, cfg->shard, ask[i]);
        }
    }
    if (rc != FLC_OK) {
        FLC_WARN("merger %s/%u/%u: after a failover, could not ask which updates are stored: "
                 "%s", cfg->job, cfg->round, cfg->shard, flc_store_errstr(s));
        flc_strlist_free(found);
    }
    free(ask);
    free(present);
    return rc;
}

int flc_rs_recover_retry(const flc_store_t *s)
{
    return flc_store_fails_over(s);
}

int flc_rs_recover_backoff(const flc_store_t *s, int rc, flc_rs_backoff_t *b)
{
    if (rc != FLC_ECONN || !flc_rs_recover_retry(s) || b->spent_ms >= 20000)
        return 0;
    unsigned w = b->next_ms ? b->next_ms : 50;
    flc_sleep_ms(w);
    b->spent_ms += w;
    b->next_ms = w * 2 > 250 ? 250 : w * 2;
    return 1;
}

int flc_rs_notify_done(flc_store_t *s, const flc_rs_merger_cfg_t *cfg, const char *token,
                       unsigned readers)
{
    int rc = flc_store_notify(s, cfg->job, cfg->round, cfg->shard, "done", token, readers);
    if (rc == FLC_ECONN && flc_rs_recover_retry(s))
        rc = flc_store_notify(s, cfg->job, cfg->round, cfg->shard, "done", token, readers);
    return rc;
}
