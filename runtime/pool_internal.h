/* Private to runtime/'s local pool (pool.h): the pool's, batches' and
 * instances' fields and the calls between the three files of the pool:
 *   pool.c           the pool: its loop thread, the queue, dispatch, new/free
 *   pool_instance.c  one instance's life: spawn, write an event, read the
 *                    result line, timeout and memory watchdog, death, reaping
 *   pool_batch.c     batches and records: start, wait, invoke, billing
 *   pool_place.c     placement names, the event member, the namespace path
 * Everything here runs on the pool's loop thread unless it says "under mu".
 * Never included outside runtime/. */
#ifndef FLC_RUNTIME_POOL_INTERNAL_H
#define FLC_RUNTIME_POOL_INTERNAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <uv.h>

#include "runtime/pool.h"

#define FLC_POOL_KILL_AFTER_MS 2000 /* SIGKILL what has not exited by then */
#define FLC_POOL_STDERR_TAIL 2048   /* bytes of an instance's stderr kept */

typedef struct flc_inv {
    flc_batch_t *batch;
    size_t index;
    char *line; /* event + '\n' */
    size_t len;
    char *placement; /* owned; NULL = none (resolved when queued) */
    int attempts;
    struct flc_inv *next;
} flc_inv_t;

struct flc_batch {
    flc_pool_t *pool;
    flc_inv_t *invs;
    flc_inv_rec_t *recs;
    size_t n;
    size_t done; /* under pool->mu */
    size_t first_failed; /* 1 + index of the first invocation that ended not ok; 0: none
                            (under pool->mu) */
};

enum { FLC_INST_IDLE, FLC_INST_BUSY, FLC_INST_DEAD };

typedef struct flc_inst {
    flc_pool_t *pool;
    pid_t pid;
    int state;
    uv_pipe_t in, out, err;
    uv_timer_t timeout, watch;
    uv_write_t wreq;
    int handles;    /* still open */
    int in_closed;  /* stdin closed: told to exit */
    char *wbuf;     /* the line being written (owned copy) */
    char *rbuf;     /* stdout bytes not yet a full line */
    size_t rlen, rcap;
    char tail[FLC_POOL_STDERR_TAIL];
    size_t tlen;
    flc_inv_t *cur;
    char *placement; /* owned; NULL = none: it only runs invocations placed alike */
    struct flc_cpucg *cg; /* its CPU quota group (cfg.cpu_mb_per_vcpu), or NULL */
    int invocations;
    uint64_t t_spawn, t_start; /* ns */
    int timed_out, oom, reaped;
    uint64_t oom_rss_kb, reap_deadline;
    int wstatus;
    struct rusage ru;
    struct flc_inst *next, *prev;
} flc_inst_t;

struct flc_pool {
    flc_pool_cfg_t cfg;
    char *fn_path;
    char **envp;
    char *placement;          /* cfg.placement copied; NULL = none */
    uint64_t as_limit;        /* bytes, 0 = no rlimit */
    uint64_t watch_limit_kb;  /* 0 = no watchdog */
    pthread_t thread;
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t stop_timer;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    flc_inv_t *in_head, *in_tail; /* incoming, under mu */
    int stopping;                 /* under mu */
    int kill_req;                 /* under mu: flc_pool_kill ran; warm ones are dying */
    /* loop thread only: */
    int stopped;
    flc_inv_t *pend_head, *pend_tail;
    flc_inst_t *insts;
    unsigned ninst, busy;
    unsigned unreaped; /* instances forked and not yet reaped */
    pid_t pgid;        /* their process group while one lives, else 0 (also in the
                          process-wide table flc_pool_kill_all reads) */
    int group_slot;    /* that table's slot, -1: none */
    unsigned idle, alive; /* written here through flc_pool_count, read by stats */
    struct flc_pool_remote *remote; /* cfg.remote's backend (pool_remote.c), or NULL */
    uint64_t cold_starts, invocations; /* read under mu by stats */
};

/* Adds d to one of the counters idle and alive. Only the loop thread writes
 * them, but flc_pool_stats reads them from the caller's thread with an atomic
 * load; a plain ++ beside that load is a data race (ThreadSanitizer), so
 * every write is atomic too. Relaxed: the figures order nothing. */
static inline void flc_pool_count(unsigned *counter, int d)
{
    __atomic_add_fetch(counter, (unsigned)d, __ATOMIC_RELAXED);
}

/* ---- pool.c ---- */

/* Starts pending invocations while slots are free, then trims idle
 * instances down to max_warm. */
void flc_pool_dispatch(flc_pool_t *p);

/* Queues inv to run (front = 1: next, for a retry). */
void flc_pool_push_pending(flc_pool_t *p, flc_inv_t *inv, int front);

/* Once the pool is stopping and its last instance is gone, closes the
 * loop's own handles so uv_run returns. */
void flc_pool_maybe_finish_stop(flc_pool_t *p);

/* Records the pool's process group (0: none now) where flc_pool_kill_all
 * finds it. */
void flc_pool_set_group(flc_pool_t *p, pid_t pgid);

/* ---- pool_instance.c ---- */

/* Forks a new (idle) instance placed in placement (NULL: none) and starts
 * reading its stdout and stderr; NULL with msg filled when it cannot start
 * (naming the placement when it could not be entered). */
flc_inst_t *flc_inst_spawn(flc_pool_t *p, const char *placement, char *msg, size_t cap);

/* Runs inv on the idle instance it: writes the event line, arms the timeout
 * and the memory watchdog. */
void flc_inst_start(flc_pool_t *p, flc_inst_t *it, flc_inv_t *inv);

/* Tells an instance to exit: EOF on its stdin ends the local-mode loop. */
void flc_inst_retire(flc_inst_t *it);

/* ---- pool_batch.c ---- */

/* Finishes inv with the record already filled in (status, times, error):
 * adds the billing figures and counts it done for its batch (under mu). */
void flc_inv_complete(flc_pool_t *p, flc_inv_t *inv);

/* Completes inv without having run it (cannot start, pool closed). */
void flc_inv_fail_unrun(flc_pool_t *p, flc_inv_t *inv, const char *msg);

/* Counts inv done for its batch, its record final (under mu; any thread). */
void flc_inv_count_done(flc_pool_t *p, flc_inv_t *inv);

/* ---- pool_remote.c (cfg.remote: Lambda or OpenWhisk) ---- */

struct flc_remote_cfg;

/* Starts p->remote: concurrency threads that send invocations to cfg's
 * platform. 0, or FLC_ENOMEM / FLC_EIO. */
int flc_pool_remote_start(flc_pool_t *p, const struct flc_remote_cfg *cfg, flc_err_t *e);

/* Queues the linked invocations first..last (any thread). */
void flc_pool_remote_queue(flc_pool_t *p, flc_inv_t *first, flc_inv_t *last);

/* Waits for the invocations in flight, fails the queued ones ("pool
 * closed") and frees p->remote. NULL remote: nothing. */
void flc_pool_remote_stop(flc_pool_t *p);

/* flc_pool_kill for a remote pool: in-flight requests stop at once (their
 * invocations end as errors), queued ones are not sent. */
void flc_pool_remote_abort(flc_pool_t *p);

/* ---- pool_place.c ---- */

/* 0 when name is a placement name or "" (none), else FLC_EINVAL with msg
 * saying what a name may be. */
int flc_pool_place_check(const char *name, char *msg, size_t cap);

/* The event's top-level "placement" string (borrowed) in *out, NULL when it
 * has none (or null); FLC_EINVAL with msg when it is not a string. */
int flc_pool_place_from_json(const cJSON *ev, const char **out, char *msg, size_t cap);

/* The same from event text: *out a malloc'ed copy or NULL; text that is not
 * JSON has none. FLC_EINVAL as above, FLC_ENOMEM. */
int flc_pool_place_from_text(const char *ev, char **out, char *msg, size_t cap);

/* 1 when a and b are the same placement (both NULL, or equal names). */
int flc_pool_place_same(const char *a, const char *b);

/* The file of the network namespace name: /var/run/netns/<name>. */
void flc_pool_place_path(const char *name, char *buf, size_t cap);

#endif
