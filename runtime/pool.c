/* The local function platform (see pool.h): a libuv loop on the pool's own
 * thread owns every instance; other threads only queue batches and wait.
 *
 * Life of an invocation: flc_pool_start (pool_batch.c) appends it to
 * `incoming` under the mutex and wakes the loop (uv_async). The loop moves it
 * to `pending`, and dispatch gives it to an idle instance or forks a new one
 * (pool_instance.c), which runs it and completes its record. This file is the
 * pool itself: the loop thread, the queue, dispatch and the warm-instance
 * limit, stopping, and the configuration (defaults, memory enforcement). */
#include "runtime/pool_internal.h"
#include "runtime/cpu_cgroup.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "runtime/cost.h"
#include "runtime/platform.h"
#include "runtime/pool_proc.h"

void flc_pool_push_pending(flc_pool_t *p, flc_inv_t *inv, int front)
{
    inv->next = NULL;
    if (p->pend_head == NULL) {
        p->pend_head = p->pend_tail = inv;
    } else if (front) {
        inv->next = p->pend_head;
        p->pend_head = inv;
    } else {
        p->pend_tail->next = inv;
        p->pend_tail = inv;
    }
}

/* An idle instance placed where inv must run: an instance never crosses
 * from one placement to another (it lives in its network namespace). */
static flc_inst_t *find_idle(flc_pool_t *p, const flc_inv_t *inv)
{
    for (flc_inst_t *it = p->insts; it != NULL; it = it->next)
        if (it->state == FLC_INST_IDLE && !it->in_closed &&
            flc_pool_place_same(it->placement, inv->placement))
            return it;
    return NULL;
}

/* Starts pending invocations while slots are free, then trims idle
 * instances down to max_warm. */
void flc_pool_dispatch(flc_pool_t *p)
{
    while (p->pend_head != NULL && p->busy < p->cfg.concurrency) {
        flc_inv_t *inv = p->pend_head;
        p->pend_head = inv->next;
        if (p->pend_head == NULL)
            p->pend_tail = NULL;
        if (p->stopped) {
            flc_inv_fail_unrun(p, inv, "pool closed before the invocation started");
            continue;
        }
        flc_inst_t *it = p->cfg.cold_only ? NULL : find_idle(p, inv);
        if (it == NULL) {
            char msg[512];
            it = flc_inst_spawn(p, inv->placement, msg, sizeof msg);
            if (it == NULL) {
                flc_inv_fail_unrun(p, inv, msg);
                continue;
            }
        }
        flc_inst_start(p, it, inv);
    }
    if (p->pend_head == NULL)
        for (flc_inst_t *it = p->insts; it != NULL && p->idle > p->cfg.max_warm; it = it->next)
            if (it->state == FLC_INST_IDLE && !it->in_closed) {
                it->state = FLC_INST_DEAD;
                flc_pool_count(&p->idle, -1);
                flc_inst_retire(it);
            }
}

/* ---------- process groups ---------- */

/* Every live pool's process group, for flc_pool_kill_all, which a signal
 * handler calls: it may only read these with atomic loads (no lock, no
 * list). A slot is taken for a pool's life under groups_mu. */
#define GROUPS_MAX 64
static pid_t groups[GROUPS_MAX];
static unsigned char group_used[GROUPS_MAX];
static pthread_mutex_t groups_mu = PTHREAD_MUTEX_INITIALIZER;

static int group_slot_take(void)
{
    int slot = -1;
    pthread_mutex_lock(&groups_mu);
    for (int i = 0; i < GROUPS_MAX && slot < 0; i++)
        if (!group_used[i]) {
            group_used[i] = 1;
            slot = i;
        }
    pthread_mutex_unlock(&groups_mu);
    return slot;
}

static void group_slot_give(int slot)
{
    if (slot < 0)
        return;
    __atomic_store_n(&groups[slot], 0, __ATOMIC_SEQ_CST);
    pthread_mutex_lock(&groups_mu);
    group_used[slot] = 0;
    pthread_mutex_unlock(&groups_mu);
}

void flc_pool_set_group(flc_pool_t *p, pid_t pgid)
{
    __atomic_store_n(&p->pgid, pgid, __ATOMIC_SEQ_CST);
    if (p->group_slot >= 0)
        __atomic_store_n(&groups[p->group_slot], pgid, __ATOMIC_SEQ_CST);
}

void flc_pool_kill_all(void)
{
    flc_http_abort_all(); /* remote pools: stop waiting for their invocations */
    for (int i = 0; i < GROUPS_MAX; i++) {
        pid_t g = __atomic_load_n(&groups[i], __ATOMIC_SEQ_CST);
        if (g > 1)
            kill(-g, SIGKILL);
    }
}

pid_t flc_pool_group(flc_pool_t *p)
{
    return __atomic_load_n(&p->pgid, __ATOMIC_SEQ_CST);
}

int flc_pool_kill(flc_pool_t *p)
{
    /* The loop first forgets its warm instances (they are dying), so an
     * invocation started after this call never lands on one. */
    flc_pool_remote_abort(p);
    pthread_mutex_lock(&p->mu);
    p->kill_req = 1;
    pthread_mutex_unlock(&p->mu);
    uv_async_send(&p->wake);
    pid_t g = __atomic_load_n(&p->pgid, __ATOMIC_SEQ_CST);
    return g > 1 && kill(-g, SIGKILL) == 0 ? 1 : 0;
}

/* ---------- loop thread ---------- */

static void on_stop_timer(uv_timer_t *t)
{
    flc_pool_t *p = t->data;
    for (flc_inst_t *it = p->insts; it != NULL; it = it->next)
        if (!it->reaped)
            kill(it->pid, SIGKILL);
}

void flc_pool_maybe_finish_stop(flc_pool_t *p)
{
    if (p->stopped && p->ninst == 0 && !uv_is_closing((uv_handle_t *)&p->wake)) {
        uv_close((uv_handle_t *)&p->wake, NULL);
        uv_close((uv_handle_t *)&p->stop_timer, NULL);
    }
}

static void on_wake(uv_async_t *a)
{
    flc_pool_t *p = a->data;
    pthread_mutex_lock(&p->mu);
    flc_inv_t *list = p->in_head;
    p->in_head = p->in_tail = NULL;
    int stopping = p->stopping, killed = p->kill_req;
    p->kill_req = 0;
    pthread_mutex_unlock(&p->mu);
    if (killed) /* flc_pool_kill: the warm ones got SIGKILL too */
        for (flc_inst_t *it = p->insts; it != NULL; it = it->next)
            if (it->state == FLC_INST_IDLE && !it->in_closed) {
                it->state = FLC_INST_DEAD;
                flc_pool_count(&p->idle, -1);
                flc_inst_retire(it);
            }
    while (list != NULL) {
        flc_inv_t *next = list->next;
        flc_pool_push_pending(p, list, 0);
        list = next;
    }
    if (stopping && !p->stopped) {
        p->stopped = 1;
        for (flc_inst_t *it = p->insts; it != NULL; it = it->next) {
            if (it->state == FLC_INST_BUSY)
                kill(it->pid, SIGKILL);
            else if (it->state == FLC_INST_IDLE) {
                it->state = FLC_INST_DEAD;
                flc_pool_count(&p->idle, -1);
            }
            flc_inst_retire(it);
        }
        uv_timer_start(&p->stop_timer, on_stop_timer, FLC_POOL_KILL_AFTER_MS,
                       FLC_POOL_KILL_AFTER_MS);
    }
    flc_pool_dispatch(p);
    flc_pool_maybe_finish_stop(p);
}

static void *loop_main(void *arg)
{
    flc_pool_t *p = arg;
    /* Signals belong to the application's threads; a write to a dead
     * instance's pipe raises SIGPIPE here, where blocked it only makes the
     * write fail with EPIPE. Children clear the mask before exec. */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    uv_run(&p->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* ---------- public API ---------- */

void flc_pool_cfg_init(flc_pool_cfg_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->memory_mb = 1024;
    cfg->as_slack_mb = 256;
    cfg->timeout_ms = 60000;
    cfg->concurrency = 64;
    cfg->price_per_gb_s = FLC_LAMBDA_X86_PRICE_GB_S;
}

/* ASan and TSan reserve terabytes of shadow address space at start-up, so
 * an instance under RLIMIT_AS dies before main; both are treated alike. */
int flc_pool_sanitized(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return 1;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
    return 1;
#endif
#endif
    return 0;
}

/* Picks the memory enforcement from cfg->mem_mode (the program applies
 * FLCACHE_POOL_MEM there) and the build. */
static void memory_limits(flc_pool_t *p)
{
    int mode = p->cfg.mem_mode;
    int asan = flc_pool_sanitized();
    if (mode == FLC_MEM_AUTO)
        mode = asan ? FLC_MEM_WATCH : FLC_MEM_BOTH;
    uint64_t mb = p->cfg.memory_mb;
    if ((mode == FLC_MEM_RLIMIT || mode == FLC_MEM_BOTH) && !asan)
        p->as_limit = (mb + p->cfg.as_slack_mb) << 20;
    if (mode == FLC_MEM_WATCH || mode == FLC_MEM_BOTH)
        p->watch_limit_kb = (mb << 10) * (asan ? FLC_POOL_ASAN_MEM_SCALE : 1);
}

flc_pool_t *flc_pool_new(const flc_pool_cfg_t *cfg, flc_err_t *e)
{
    int remote = cfg != NULL && cfg->remote != NULL &&
                 cfg->remote->platform != FLC_PLATFORM_LOCAL;
    if (!remote && (cfg == NULL || cfg->fn_path == NULL || *cfg->fn_path == '\0')) {
        flc_err_set(e, FLC_EINVAL, "pool: no function binary configured (fn_path)");
        return NULL;
    }
    char why[256];
    if (cfg->placement != NULL && flc_pool_place_check(cfg->placement, why, sizeof why) != 0) {
        flc_err_set(e, FLC_EINVAL, "pool: default %s", why);
        return NULL;
    }
    if (!remote && access(cfg->fn_path, X_OK) != 0) {
        flc_err_set(e, FLC_EINVAL, "pool: function binary %s is not executable: %s",
                    cfg->fn_path, strerror(errno));
        return NULL;
    }
    flc_pool_t *p = calloc(1, sizeof *p);
    if (p == NULL) {
        flc_err_set(e, FLC_ENOMEM, "pool: out of memory");
        return NULL;
    }
    p->cfg = *cfg;
    if (p->cfg.memory_mb == 0) p->cfg.memory_mb = 1024;
    if (p->cfg.as_slack_mb == 0) p->cfg.as_slack_mb = 256;
    if (p->cfg.timeout_ms == 0) p->cfg.timeout_ms = 60000;
    if (p->cfg.concurrency == 0) p->cfg.concurrency = 64;
    if (p->cfg.max_warm == 0) p->cfg.max_warm = p->cfg.concurrency;
    if (!(p->cfg.price_per_gb_s > 0)) p->cfg.price_per_gb_s = FLC_LAMBDA_X86_PRICE_GB_S;
    if (flc_log_level() >= FLC_LOG_DEBUG) p->cfg.forward_stderr = 1;
    p->cfg.env = NULL; /* copied into envp; the caller's array may go away */
    p->fn_path = strdup(remote && cfg->fn_path == NULL ? "" : cfg->fn_path);
    p->envp = flc_proc_env_new(cfg->env);
    p->cfg.fn_path = p->fn_path;
    int placed = cfg->placement != NULL && *cfg->placement != '\0';
    p->placement = placed ? strdup(cfg->placement) : NULL;
    p->cfg.placement = p->placement;
    memory_limits(p);
    if (p->cfg.cpu_mb_per_vcpu > 0) {
        /* Groups a killed driver left behind go first; then one group is
         * made and removed, so a machine without a writable controller
         * fails here, naming it, rather than at every invocation. */
        flc_cpucg_sweep(0);
        flc_cpucg_t *g = flc_cpucg_new(p->cfg.memory_mb, p->cfg.cpu_mb_per_vcpu, e);
        if (g == NULL) {
            flc_err_wrap(e, "pool: CPU proportional to memory: ");
            p->group_slot = -1;
            goto fail;
        }
        flc_cpucg_free(g);
    }
    p->group_slot = group_slot_take(); /* none left: the pool still works, unkillable by
                                          flc_pool_kill_all (PDEATHSIG still holds) */
    if (p->fn_path == NULL || p->envp == NULL || (placed && p->placement == NULL)) {
        flc_err_set(e, FLC_ENOMEM, "pool: out of memory");
        goto fail;
    }
    int rc = uv_loop_init(&p->loop);
    if (rc != 0) {
        flc_err_set(e, FLC_EIO, "pool: cannot start an event loop: %s", uv_strerror(rc));
        goto fail;
    }
    uv_async_init(&p->loop, &p->wake, on_wake);
    p->wake.data = p;
    uv_timer_init(&p->loop, &p->stop_timer);
    p->stop_timer.data = p;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if ((rc = pthread_create(&p->thread, NULL, loop_main, p)) != 0) {
        flc_err_set(e, FLC_EIO, "pool: cannot start its thread: %s", strerror(rc));
        uv_close((uv_handle_t *)&p->wake, NULL);
        uv_close((uv_handle_t *)&p->stop_timer, NULL);
        uv_run(&p->loop, UV_RUN_DEFAULT);
        uv_loop_close(&p->loop);
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
        goto fail;
    }
    if (remote && flc_pool_remote_start(p, cfg->remote, e) != 0) {
        p->cfg.remote = NULL;
        flc_pool_free(p);
        return NULL;
    }
    p->cfg.remote = NULL; /* copied into p->remote */
    return p;
fail:
    group_slot_give(p->group_slot);
    free(p->fn_path);
    free(p->placement);
    flc_proc_env_free(p->envp);
    free(p);
    return NULL;
}

void flc_pool_free(flc_pool_t *p)
{
    if (p == NULL)
        return;
    flc_pool_remote_stop(p);
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_mutex_unlock(&p->mu);
    uv_async_send(&p->wake);
    pthread_join(p->thread, NULL);
    if (p->cfg.cpu_mb_per_vcpu > 0)
        flc_cpucg_sweep(0); /* every instance is reaped: dead owners' groups, the base */
    group_slot_give(p->group_slot);
    uv_loop_close(&p->loop);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->fn_path);
    free(p->placement);
    flc_proc_env_free(p->envp);
    free(p);
}

void flc_pool_stats(flc_pool_t *p, flc_pool_stats_t *st)
{
    memset(st, 0, sizeof *st);
    pthread_mutex_lock(&p->mu);
    st->cold_starts = p->cold_starts;
    st->invocations = p->invocations;
    pthread_mutex_unlock(&p->mu);
    /* alive/idle are the loop thread's counters, written atomically
     * (flc_pool_count): mid-batch they may be a moment old; between
     * batches they are exact. */
    st->alive = __atomic_load_n(&p->alive, __ATOMIC_RELAXED);
    st->idle = __atomic_load_n(&p->idle, __ATOMIC_RELAXED);
}
