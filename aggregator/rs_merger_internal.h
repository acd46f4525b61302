/* Private to the merger (rs_merger.c runs a shard's round, rs_take.c
 * takes its updates as they arrive): the state of one merger run. */
#ifndef FLC_AGGREGATOR_RS_MERGER_INTERNAL_H
#define FLC_AGGREGATOR_RS_MERGER_INTERNAL_H

#include "aggregator/reduce_scatter.h"
#include "aggregator/rs_recover.h"
#include "cache/store.h"
#include "cache/store_part.h"
#include "cache/store_put_stream.h"

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
    float *buf;               /* where the next whole update is read (allocated when
                               * one is: an encoded or own update, a collecting rule) */
    size_t win;               /* floats per window (0: whole values only) */
    float *wbuf;              /* a window of an update (streaming rules) */
    float **kept;             /* collecting rules: the updates, in arrival order
                               * (NULL: read when the shard closes, rs_defer.c) */
    flc_store_part_t *parts;  /* per kept update read at close: its part */
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

/* An update buffer of n floats (NULL when out of memory). */
float *rs_new_buf(uint64_t n);
/* Frees what rs_new_buf(n) returned (NULL: nothing). */
void rs_free_buf(float *p, uint64_t n);

/* The bytes of a window when the config says 0. */
#define RS_WINDOW_DEFAULT (8u * 1024u * 1024u)

#define RS_TAKE_LOST 2  /* the update went with a dead master; not taken */
#define RS_TAKE_WHOLE 3 /* rs_take_windowed: read and fold it whole instead */

/* Opens client's update for reading by window, again on the promoted
 * replica when a failover cuts the open (*cut set): FLC_OK, RS_TAKE_LOST (it went
 * with the dead master), RS_TAKE_WHOLE (encoded, spilled, unreadable: the
 * whole read judges it) or a negative FLC_E* when the store failed. */
int rs_open_part(merger_t *m, const char *client, flc_store_part_t *p, int *cut);

/* Whether an open part's header is this merger's shard and can be taken
 * by window: FLC_OK with its merge weight and header norm (-1: none), or
 * RS_TAKE_WHOLE (other sizes, or a clipping rule without the header's
 * norm: the whole read judges or measures it). */
int rs_part_fits(const merger_t *m, const flc_store_part_t *p, double *w, double *norm);

/* Takes a streaming rule's float32 update window by window (rs_window.c):
 * FLC_OK accepted, 1 rejected (recorded), RS_TAKE_LOST, RS_TAKE_WHOLE (an
 * encoded or spilled value, one without the norm clipping needs, one the
 * whole read should judge), or a negative FLC_E* when the store failed. */
int rs_take_windowed(merger_t *m, const char *client);

/* 1 when the merged shard is written window by window: a windowed merger
 * of fedavg or mean (no server state, no central DP noise), median or
 * trimmed mean. Krum and Bulyan select whole updates; they write whole. */
int rs_merged_streams(const merger_t *m);

/* The fill of a streamed merged shard (rs_window.c): the merger, the
 * error a failed window leaves, the rows of a block of the kept updates,
 * and the windows of those read when the shard closes (rs_defer.c). */
typedef struct rs_fill {
    merger_t *m;
    flc_err_t *e;
    const float **rows;
    size_t nd;                     /* kept updates read at close */
    flc_store_part_t *dparts;      /* theirs, in kept order */
    size_t *dmap;                  /* per kept update: its index in dparts */
    float **dbuf;                  /* per read one: this window's floats */
    size_t dcap;                   /* floats in each dbuf */
    flc_store_part_reader_t reader;
    long bad;                      /* a kept update holding NaN/Inf, or -1 */
    int bad_nan;
    uint64_t bad_pos;              /* where, in model coordinates */
    int stale;                     /* a read found a value changed or gone */
    int refreshes;
} rs_fill_t;

/* Prepares f and how (fill, window) for flc_store_put_merged_stream; the
 * average's emptiness is refused here, before anything is written. */
int rs_fill_init(merger_t *m, rs_fill_t *f, flc_store_stream_t *how, flc_err_t *e);
void rs_fill_free(rs_fill_t *f);

/* Takes a collecting rule's update for reading when the shard closes
 * (rs_defer.c): FLC_OK kept (its header only), 1 rejected (recorded),
 * RS_TAKE_LOST, RS_TAKE_WHOLE (read it whole now), or a negative FLC_E*. */
int rs_take_deferred(merger_t *m, const char *client);

/* The fill's side of it: the parts to read (rs_fill_init), their window
 * [first, first+count) read (FLC_OK, or the store's error in f->e; f->stale
 * when a value changed or went), the rows of that block, the kept update
 * holding the NaN/Inf a kernel refused (f->bad), and what is freed. */
int rs_defer_init(rs_fill_t *f);
int rs_defer_read(rs_fill_t *f, uint64_t first, size_t count);
void rs_defer_rows(rs_fill_t *f, uint64_t first);
void rs_defer_find_bad(rs_fill_t *f, uint64_t first, size_t count);
void rs_defer_free(rs_fill_t *f);

/* After a streamed write failed: when a kept update was refused by a
 * window (f->bad) or a value changed or went (f->stale), takes it out or
 * follows it and prepares f for writing again from window 0 (1); 0 when
 * the failure was something else; negative (in e) when nothing is left to
 * merge or the store failed. */
int rs_defer_redo(rs_fill_t *f, flc_err_t *e);

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
