/* The simulation driver's merger threads (see sim.h, "Why mergers are
 * threads of the driver"): one per shard and round, each with its own
 * store, placed next to its shard's node on a cluster, and the early close
 * that wakes them once every invoked client has returned. Started by the
 * round loop (sim.c). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "base/clock.h"
#include "cache/store_ops.h"
#include "clients/sim_driver_internal.h"

/* Moves this round's merger thread next to the node owning its shard and
 * makes sure its store was opened there: its sockets then live in that
 * node's namespace and reach the node over its unix socket (opts.local_node
 * / local_sock, set by enter). Each round's thread starts where the driver
 * is, so it enters every round (one setns) even when the store is kept: a
 * reconnect then happens next to the node too. */
static int merger_place(sim_merger_t *mt)
{
    const flc_sim_cfg_t *c = mt->c;
    flc_store_opts_t o = c->store_opts ? *c->store_opts : (flc_store_opts_t){0};
    int rc = c->place.enter(c->place.user, mt->node, &o, &mt->err);
    if (rc != FLC_OK || (mt->s != NULL && strcmp(mt->placed_at, mt->node) == 0))
        return rc;
    atomic_store(&mt->client_id, -1);
    flc_store_close(mt->s);
    mt->placed_at[0] = '\0';
    if ((mt->s = flc_store_open(c->redis, &o, &mt->err)) == NULL)
        return mt->err.code ? mt->err.code : FLC_ECONN;
    long long id;
    if (flc_store_conn_id(mt->s, &id) != FLC_OK)
        return sim_store_err(mt->s, &mt->err);
    atomic_store(&mt->client_id, id);
    snprintf(mt->placed_at, sizeof mt->placed_at, "%s", mt->node);
    return FLC_OK;
}

void *sim_merger_main(void *arg)
{
    sim_merger_t *mt = arg;
    mt->rd = mt->wr = 0;
    mt->place_failed = 0;
    if (mt->node[0] != '\0' && (mt->rc = merger_place(mt)) != FLC_OK) {
        flc_err_wrap(&mt->err, "placing the merger next to node %s: ", mt->node);
        mt->place_failed = 1;
        atomic_store(&mt->done, 1);
        return NULL;
    }
    uint64_t rd0 = flc_store_bytes_read(mt->s), wr0 = flc_store_bytes_written(mt->s);
    mt->rc = flc_rs_merger_run(mt->s, &mt->cfg, &mt->rep, &mt->err);
    mt->rd = flc_store_bytes_read(mt->s) - rd0;
    mt->wr = flc_store_bytes_written(mt->s) - wr0;
    atomic_store(&mt->done, 1);
    return NULL;
}

/* Wakes every merger still blocked on its arrivals list as if its deadline
 * had passed, and joins them all. Called once every invoked client has
 * returned: their pushes are all announced, so nothing else can arrive. A
 * merger that is busy (not blocked) when asked is asked again. */
void sim_close_and_join(sim_t *sm, uint64_t give_up_ns)
{
    /* Sharded Krum's and Multi-Krum's mergers also block while they
     * exchange distance matrices (aggregator/rs_krum.c), and a wake-up there
     * would fail the merge: they keep their deadline instead. */
    int krum = flc_merge_rule_selects(&sm->rule);
    int early = !(sm->S > 1 && krum);
    for (; early;) {
        int waiting = 0;
        for (uint32_t k = 0; k < sm->S; k++) {
            sim_merger_t *mt = &sm->m[k];
            if (!mt->started || atomic_load(&mt->done))
                continue;
            waiting = 1;
            /* Any store of the same cache can wake the merger: on a
             * cluster the store finds the node the blocked connection
             * talks to (flc_store_wake_id, cache/store_ops.h). */
            long long id = atomic_load(&mt->client_id); /* -1: a placed merger's
                                                          * store is not open yet */
            if (id >= 0)
                flc_store_wake_id(sm->s, id);
        }
        if (!waiting || flc_now_ns() > give_up_ns)
            break;
        flc_sleep_ms(2);
    }
    for (uint32_t k = 0; k < sm->S; k++)
        if (sm->m[k].started) {
            pthread_join(sm->m[k].t, NULL);
            sm->m[k].started = 0;
        }
}
