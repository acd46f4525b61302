/* The local function platform: a pool of flcache-fn processes driven by a
 * libuv loop on the pool's own thread, the way a serverless platform runs
 * function instances.
 *
 * - Each invocation is one JSON event written as a line to an instance's
 *   stdin; the instance answers one result line (runtime/fn.h local mode).
 * - An idle (warm) instance is reused; when none is idle a new (cold) one is
 *   forked. At most `concurrency` invocations run at once; after a batch at
 *   most `max_warm` idle instances are kept, the rest are told to exit.
 * - Memory: RLIMIT_AS = memory_mb + as_slack_mb is set in the child before
 *   exec, and a watchdog kills an instance whose resident set passes
 *   memory_mb (like Lambda's limit). Under AddressSanitizer or
 *   ThreadSanitizer (whose shadow memory needs terabytes of address space)
 *   the rlimit is skipped and the watchdog limit is scaled by
 *   FLC_POOL_ASAN_MEM_SCALE.
 *   cfg.mem_mode picks the mode; the programs let FLCACHE_POOL_MEM=
 *   rlimit|watch|both|off override it (cli/config.h).
 * - Timeout: the instance is killed (SIGKILL), status "timeout", no retry.
 * - A crash (the process dies mid-invocation: signal, exit, memory kill) is
 *   retried on a fresh instance up to `retries` more times.
 * - Placement: an invocation may name where its instance must run, so a
 *   shard's merger runs next to the node that holds the shard. On this local
 *   platform a placement is the name of a Linux network namespace (made by
 *   `ip netns add NAME`, i.e. /var/run/netns/NAME): the child enters it
 *   after fork, before exec (setns, which needs root). Warm instances are
 *   kept per placement: one placed in A never runs an invocation for B or
 *   for no placement. A namespace that cannot be entered is that
 *   invocation's error, naming it; the instance never runs elsewhere
 *   instead. Where it comes from, first wins: the placements array of
 *   flc_pool_start_placed, the event's top-level "placement" string member
 *   (so drivers building JSON events can ask per event; the function sees
 *   the member too and ignores it), cfg.placement. "" means none: the
 *   driver's own namespace. AWS Lambda and OpenWhisk have no such hint
 *   (their platform places instances); there the member travels in the
 *   event and is ignored (docs/functions.md).
 *
 * Thread safety: every function may be called from any thread, and several
 * batches may be in flight on one pool at once (a driver may start an
 * aggregator batch, then invoke clients, then wait for both). Batches share
 * the concurrency limit, so it must cover everything that has to run at the
 * same time. The pool ignores nothing process-wide: SIGPIPE is blocked only
 * on its own thread. */
#ifndef FLC_RUNTIME_POOL_H
#define FLC_RUNTIME_POOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <cjson/cJSON.h>

#include "base/error.h"

#define FLC_POOL_ASAN_MEM_SCALE 2

/* 1 when this program was built with ASan or TSan: their shadow memory
 * needs terabytes of address space (no RLIMIT_AS) and counts as resident,
 * so the pool watches FLC_POOL_ASAN_MEM_SCALE x an instance's memory. */
int flc_pool_sanitized(void);

enum flc_mem_mode {
    FLC_MEM_AUTO = 0, /* both, or watch only (scaled) in an ASan or TSan build */
    FLC_MEM_RLIMIT,   /* RLIMIT_AS only */
    FLC_MEM_WATCH,    /* resident-set watchdog only */
    FLC_MEM_BOTH,
    FLC_MEM_OFF,
};

typedef struct flc_pool_cfg {
    const char *fn_path;     /* the function binary (flcache-fn); required */
    unsigned memory_mb;      /* configured memory; 0 -> 1024 */
    unsigned as_slack_mb;    /* address space above memory_mb for RLIMIT_AS
                                (libraries map more than they touch); 0 -> 256 */
    unsigned timeout_ms;     /* per invocation; 0 -> 60000 */
    unsigned concurrency;    /* invocations running at once; 0 -> 64 */
    unsigned max_warm;       /* idle instances kept; 0 -> concurrency */
    unsigned retries;        /* extra attempts after a crash; default 0 */
    int cold_only;           /* 1: never reuse an instance (every start cold) */
    double price_per_gb_s;   /* 0 -> FLC_LAMBDA_X86_PRICE_GB_S */
    double price_per_request;/* default 0 (AWS: FLC_LAMBDA_PRICE_REQUEST) */
    int mem_mode;            /* enum flc_mem_mode; 0: auto */
    int forward_stderr;      /* 1: copy instances' stderr to ours (always
                                when FLCACHE_LOG=debug); the last 2 KB are
                                kept for crash messages either way */
    const char *const *env;  /* extra "NAME=value" for instances, NULL-ended */
    unsigned cpu_mb_per_vcpu;/* 0: instances share the machine's CPUs freely;
                                else each gets memory_mb / this CPUs, a cgroup
                                quota (runtime/cpu_cgroup.h; AWS Lambda: 1769,
                                FLC_CPUCG_MB_PER_VCPU); needs root */
    const char *placement;   /* default placement of invocations that name none
                                (a network namespace here, see above); NULL or
                                "" = the driver's own; copied */
    const struct flc_remote_cfg *remote; /* not NULL and not local: every invocation
                                goes to AWS Lambda or OpenWhisk instead of a local
                                process (runtime/platform.h, pool_remote.c), at most
                                concurrency at once; fn_path, memory enforcement and
                                placement do not apply there. Copied; its strings are
                                borrowed and must outlive the pool */
} flc_pool_cfg_t;

/* A placement's name is at most this long minus one: 1..127 characters,
 * no '/', not "." or ".." (a file name under /var/run/netns). */
#define FLC_POOL_PLACEMENT_MAX 128

enum flc_inv_status {
    FLC_INV_OK = 0,  /* the function answered ok:true */
    FLC_INV_ERROR,   /* it answered ok:false, or could not be started */
    FLC_INV_TIMEOUT, /* killed at timeout_ms */
    FLC_INV_CRASH,   /* the process died mid-invocation, on every attempt */
};

/* One invocation as the platform saw it. Filled by the pool; release with
 * flc_inv_rec_clear. All times are of the last attempt. */
typedef struct flc_inv_rec {
    int status;            /* enum flc_inv_status */
    int cold;              /* 1: the instance was started for this attempt */
    int attempts;          /* 1 + retries used */
    int pid;               /* instance that ran the last attempt */
    double duration_ms;    /* event written (cold: fork) -> result read */
    uint64_t billed_ms;    /* duration rounded up to a whole ms, >= 1 */
    uint64_t peak_rss_kb;  /* peak resident set of the instance during the
                              invocation (VmHWM, reset per invocation when
                              the kernel allows; wait4 ru_maxrss if it died) */
    double compute_ms;     /* the function's own split, from its result */
    double comm_ms;
    double gb_s;           /* billed GB-seconds at memory_mb */
    double cost_usd;       /* gb_s * price_per_gb_s + price_per_request */
    char placement[FLC_POOL_PLACEMENT_MAX]; /* where it was to run; "" = none */
    char error[512];       /* why, when status != OK */
    cJSON *reply;          /* the whole result object the function printed
                              (ok, error, result, compute_ms, ...), or NULL */
} flc_inv_rec_t;

typedef struct flc_pool flc_pool_t;
typedef struct flc_batch flc_batch_t;

typedef struct flc_pool_stats {
    uint64_t cold_starts;  /* instances forked so far */
    uint64_t invocations;  /* attempts finished so far */
    unsigned alive;        /* instances running now (busy or idle) */
    unsigned idle;         /* warm instances waiting */
} flc_pool_stats_t;

/* Fills *cfg with the defaults (fn_path NULL). */
void flc_pool_cfg_init(flc_pool_cfg_t *cfg);

/* Starts a pool (its loop thread; no instance yet). cfg is copied. Returns
 * NULL with *e set when the binary is not executable, cfg.placement is not
 * a placement name, or a resource fails. */
flc_pool_t *flc_pool_new(const flc_pool_cfg_t *cfg, flc_err_t *e);

/* Stops every instance (stdin closed: warm ones exit at EOF; SIGKILL after
 * 2 s), joins the thread and frees the pool. Wait for every batch started on
 * the pool before freeing it: flc_batch_wait needs the pool. */
void flc_pool_free(flc_pool_t *p);

/* Invokes n events (JSON objects as text, one line each; newlines inside are
 * re-encoded) concurrently and waits for all: recs[i] is the record of
 * events[i]. Returns 0 when every invocation finished (check each status),
 * FLC_EINVAL/FLC_ENOMEM when the batch could not be queued (FLC_EINVAL also
 * for a "placement" member that is not a string or not a placement name). */
int flc_pool_invoke(flc_pool_t *p, const char *const *events, size_t n, flc_inv_rec_t *recs,
                    flc_err_t *e);

/* The same with events as cJSON objects (printed compactly first). */
int flc_pool_invoke_json(flc_pool_t *p, const cJSON *const *events, size_t n,
                         flc_inv_rec_t *recs, flc_err_t *e);

/* Asynchronous form: queues the batch and returns at once. recs must stay
 * valid until flc_batch_wait returns. NULL with *e set on failure. */
flc_batch_t *flc_pool_start(flc_pool_t *p, const char *const *events, size_t n,
                            flc_inv_rec_t *recs, flc_err_t *e);

/* flc_pool_start with a placement per event: placements (may be NULL) [i]
 * not NULL wins over events[i]'s "placement" member and cfg.placement; ""
 * is no placement. FLC_EINVAL (no batch) when one is not a placement name. */
flc_batch_t *flc_pool_start_placed(flc_pool_t *p, const char *const *events,
                                   const char *const *placements, size_t n,
                                   flc_inv_rec_t *recs, flc_err_t *e);

/* flc_pool_start with events as cJSON objects (printed compactly; the
 * caller may free them when it returns). */
flc_batch_t *flc_pool_start_json(flc_pool_t *p, const cJSON *const *events, size_t n,
                                 flc_inv_rec_t *recs, flc_err_t *e);

/* How many invocations of b have finished (non-blocking). */
size_t flc_batch_done(flc_batch_t *b);

/* 1 with *index set when an invocation of b has already ended not ok (the
 * first such, in completion order; its record recs[*index] is final and may
 * be read now), else 0. Non-blocking: a driver whose invocations depend on
 * each other (synchronous SGD) stops the rest at once instead of waiting
 * for their own timeouts. */
int flc_batch_first_failed(flc_batch_t *b, size_t *index);

/* Waits until every invocation of b finished (timeout_ms 0 = forever),
 * then frees b. Returns 0, or FLC_ETIMEOUT (b stays valid, wait again). */
int flc_batch_wait(flc_batch_t *b, unsigned timeout_ms);

/* Counters of the pool at this moment. */
void flc_pool_stats(flc_pool_t *p, flc_pool_stats_t *st);

/* "ok", "error", "timeout" or "crash". */
const char *flc_inv_status_name(int status);

/* The handler's "result" member of rec->reply (borrowed), or NULL. */
const cJSON *flc_inv_result(const flc_inv_rec_t *rec);

/* The record as a JSON object (status, cold, attempts, pid, duration_ms,
 * billed_ms, peak_rss_kb, compute_ms, comm_ms, gb_s, cost_usd, placement
 * when there was one, error when not ok);
 * the caller frees it with cJSON_Delete. */
cJSON *flc_inv_rec_json(const flc_inv_rec_t *rec);

/* Frees rec->reply and zeroes rec. */
void flc_inv_rec_clear(flc_inv_rec_t *rec);

/* Owned instances. Every instance is started with PR_SET_PDEATHSIG
 * (SIGKILL) from the pool's loop thread, which lives until flc_pool_free has
 * stopped them, so none outlives its pool's process (a SIGKILLed driver
 * included), and in one process group per pool (not the driver's: a
 * terminal's Ctrl-C reaches the driver, whose handler decides). */

/* SIGKILLs every instance of p now (its process group), from any thread:
 * their invocations end as crashes ("killed by signal 9"). 1 when there was
 * a group to signal, else 0. */
int flc_pool_kill(flc_pool_t *p);

/* The process group of p's instances while one lives, else 0. */
pid_t flc_pool_group(flc_pool_t *p);

/* SIGKILLs every instance of every pool of this process. Async-signal-safe
 * (atomic loads and kill): for a SIGINT/SIGTERM handler. */
void flc_pool_kill_all(void);

/* Moves the calling thread (only it: setns of a network namespace is per
 * thread) into the placement `name`, the way the pool's instances are
 * placed: for a thread that works next to one cache node (cli/place.c).
 * 0, or FLC_EINVAL / FLC_EIO with msg naming the placement and why. */
int flc_pool_place_enter_thread(const char *name, char *msg, size_t cap);

#endif
