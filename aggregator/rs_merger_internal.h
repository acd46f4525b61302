/* Private to the merger (rs_merger.c runs a shard's round, rs_take.c
 * takes its updates as they arrive): the state of one merger run. */
#ifndef FLC_AGGREGATOR_RS_MERGER_INTERNAL_H
#define FLC_AGGREGATOR_RS_MERGER_INTERNAL_H

#include "aggregator/reduce_scatter.h"
#include "aggregator/rs_recover.h"
#include "cache/store.h"

/* Everything one merger run holds; freed by merger_free. */
typedef struct merger {
    flc_store_t *s;
    const flc_rs_merger_cfg_t *cfg;
    flc_rs_report_t *rep;
    uint64_t offset, count;
    unsigned char *seen;      /* per expected client: arrived (accepted or rejected) */
    const char **pending;     /* expected clients not seen yet (the wait's lists) */
    size_t *pending_idx;      /* their indexes in cfg->expected */
    size_t npending;
    flc_merge_acc_t *acc;     /* streaming rules */
    float *buf;               /* where the next update is read */
    float **kept;             /* collecting rules: the updates, in arrival order */
    double *weight, *norm;    /* per kept update */
    size_t nkept;
    long *kept_idx;           /* per kept update: its index in cfg->expected */
    long kept_idx_next;       /* expected index of the update being taken */
    size_t arrived;           /* distinct expected clients announced */
    flc_err_t oom;            /* set when the merger itself ran out of memory */
    flc_merge_state_t *own_state; /* state loaded from the cache, saved after */
    flc_rs_recover_t recover; /* the store's failover count last seen (rs_recover.c) */
    int notified;             /* the done tokens went with the merged shard */
    const flc_rs_own_t *own;  /* this process's own contributor, or NULL */
} merger_t;

/* A zeroed update buffer of n floats (NULL when out of memory). */
float *rs_new_buf(uint64_t n);

/* Records client as rejected with why (fmt is "%s"-like, as reject's). */
void rs_reject(merger_t *m, const char *client, const char *fmt, const char *why);

/* Handles an arrival of expected client x: a repeat is counted, a new one
 * is taken. Negative only when the store failed. */
int rs_arrival(merger_t *m, size_t x);

/* After a failover: takes the updates that are stored but whose arrival
 * was lost with the dead master (rs_recover.c); nothing otherwise. */
int rs_take_recovered(merger_t *m);

/* Waits for the expected clients until all arrived or the deadline (from
 * t0) passed, taking each as it lands; *waited accumulates the blocked
 * time. FLC_OK at the deadline too; the store's error in *e otherwise. */
int rs_wait_arrivals(merger_t *m, uint64_t t0, unsigned deadline, uint64_t *waited,
                     flc_err_t *e);

#endif
