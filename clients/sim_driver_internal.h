/* Private to the synchronous simulation driver: its state, shared by
 * sim.c (the round loop), sim_setup.c (what a run holds before its first
 * round), sim_clients.c (the round's sampled clients and their events) and
 * sim_mergers.c (the merger threads). The asynchronous driver
 * (clients/async_sim.c) has its own. */
#ifndef FLC_CLIENTS_SIM_DRIVER_INTERNAL_H
#define FLC_CLIENTS_SIM_DRIVER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "cache/keys.h"
#include "cache/store.h"
#include "clients/sim_internal.h"
#include "ml/model.h"
#include "ml/partition.h"

/* One shard's merger, a thread of the driver with its own connection. */
typedef struct sim_merger {
    pthread_t t;
    int started;
    flc_store_t *s;
    atomic_llong client_id;  /* its connection's id, for flc_store_wake_id; -1: none (yet) */
    flc_rs_merger_cfg_t cfg;
    flc_merge_state_t *state;
    flc_rs_report_t rep;
    flc_err_t err;
    int rc;
    atomic_int done;
    uint64_t rd, wr;         /* value bytes its store moved this round */
    /* Placement (cfg.place): the round's owner of the shard, where the
     * thread goes before it uses its store, and the node the store was
     * opened next to (reopened when the owner changes). */
    const flc_sim_cfg_t *c;
    char node[300];
    char placed_at[300];
    int place_failed;
} sim_merger_t;

typedef struct sim {
    const flc_sim_cfg_t *c;
    flc_store_t *s;
    flc_parts_t *parts;
    uint32_t *eligible;
    size_t neligible;
    unsigned char *faulty;   /* one flag per client */
    size_t nfaulty;
    flc_dataset_t *test;
    flc_model_t *model;
    float *global, *delta;
    size_t P;
    sim_merger_t *m;
    uint32_t S;
    flc_merge_rule_t rule;
    char gjob[FLC_NAME_MAX + 1];
    flc_policy_t *policy;    /* c->policy when the store has a cold tier, else NULL */
    flc_sim_straggler_t straggler; /* c->straggler, parsed once */
    int placed;              /* mergers are placed next to their shard's node (cfg.place
                              * on a cluster): their stores are opened by their threads */
    sim_dp_t dp;             /* differential privacy state (clients/sim_dp.c) */
} sim_t;

/* Data, split, faulty set, test set, model, global model, mergers
 * (sim_setup.c). sm->c is set by the caller; the rest is filled here and
 * freed by sim_teardown, also after a failure. */
int sim_setup(sim_t *sm, flc_sim_result_t *res, flc_err_t *e);

/* Frees what sim_setup filled in (the policy is the caller's). */
void sim_teardown(sim_t *sm);

/* Samples the round's k clients into cl[0..k), with their dropouts and
 * delays (sim_clients.c). */
void sim_sample(sim_t *sm, uint32_t round, sim_client_t *cl, size_t k);

/* The client event the function of x is invoked with; a new object (NULL
 * when out of memory), the caller deletes it. */
struct cJSON *sim_client_event(const sim_t *sm, uint32_t round, const sim_client_t *x);

/* A merger thread's body (pthread_create, arg: its sim_merger_t); its
 * outcome is left in the sim_merger_t (sim_mergers.c). */
void *sim_merger_main(void *arg);

/* Wakes the mergers still waiting once every invoked client returned, and
 * joins them all (sim_mergers.c). */
void sim_close_and_join(sim_t *sm, uint64_t give_up_ns);

#endif
