/* The pool's remote backend (pool.h, cfg.remote): the same batches, records
 * and waits as the local platform, but each invocation is sent to AWS Lambda
 * or OpenWhisk (runtime/platform.h) instead of to a local process.
 *
 * `concurrency` threads take invocations from one queue, so at most that
 * many are in flight, the local pool's limit; a throttled invocation keeps
 * its slot while it backs off, which is what slows the driver down to the
 * rate the platform allows. The libuv loop is not involved: an HTTP call
 * blocks its thread, and nothing here is a process to watch. A record gets
 * the platform's billed duration and memory when the platform reported
 * them (the pool's memory_mb and the measured round trip otherwise), and
 * the cost at the pool's prices. */
#include "runtime/pool_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/event.h"
#include "base/log.h"
#include "runtime/cost.h"
#include "runtime/platform.h"

struct flc_pool_remote {
    flc_remote_cfg_t cfg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    flc_inv_t *head, *tail;
    int stop;
    volatile int abort;  /* flc_pool_kill: in-flight requests stop */
    unsigned nthreads;
    pthread_t *threads;
};

/* Fills inv's record from out and counts it done. */
static void complete(flc_pool_t *p, flc_inv_t *inv, flc_remote_out_t *out, int rc)
{
    flc_inv_rec_t *r = &inv->batch->recs[inv->index];
    const char *where = flc_platform_name(p->remote->cfg.platform);
    r->duration_ms = out->elapsed_ms;
    r->cold = out->cold;
    if (rc == FLC_ETIMEOUT) {
        r->status = FLC_INV_TIMEOUT;
    } else if (rc != 0) {
        r->status = FLC_INV_ERROR;
    } else if (out->timed_out) {
        r->status = FLC_INV_TIMEOUT;
    } else if (out->crashed) {
        r->status = FLC_INV_CRASH;
    } else {
        r->status = out->ok ? FLC_INV_OK : FLC_INV_ERROR;
    }
    if (r->status != FLC_INV_OK) { /* the platform's id lets the user find its log */
        char id[sizeof out->id + 16] = "";
        if (out->id[0])
            snprintf(id, sizeof id, " (request %s)", out->id);
        snprintf(r->error, sizeof r->error, "%.380s%s", out->error, id);
    }
    r->reply = out->reply;
    out->reply = NULL;
    if (r->reply != NULL) {
        r->compute_ms = flc_ev_num(r->reply, "compute_ms", 0);
        r->comm_ms = flc_ev_num(r->reply, "comm_ms", 0);
        r->pid = (int)flc_ev_int(r->reply, "pid", 0);
    }
    r->peak_rss_kb = out->max_memory_kb > 0 ? out->max_memory_kb
                     : r->reply != NULL ? (uint64_t)flc_ev_int(r->reply, "rss_kb", 0)
                                        : 0;
    r->attempts = inv->attempts;
    r->billed_ms = out->billed_ms > 0 ? out->billed_ms : flc_cost_billed_ms(r->duration_ms);
    unsigned mem = out->memory_mb > 0 ? out->memory_mb : p->cfg.memory_mb;
    r->gb_s = flc_cost_gb_s(mem, r->billed_ms);
    r->cost_usd = flc_cost_usd(mem, r->billed_ms, p->cfg.price_per_gb_s,
                               p->cfg.price_per_request);
    snprintf(r->placement, sizeof r->placement, "%s", inv->placement ? inv->placement : "");
    FLC_DEBUG("%s: invocation %zu %s in %.1f ms (billed %llu ms at %u MB, %d throttled)", where,
              inv->index, flc_inv_status_name(r->status), r->duration_ms,
              (unsigned long long)r->billed_ms, mem, out->throttled);
    pthread_mutex_lock(&p->mu);
    p->invocations++;
    if (r->cold)
        p->cold_starts++;
    pthread_mutex_unlock(&p->mu);
    flc_inv_count_done(p, inv);
}

static void run_one(flc_pool_t *p, flc_inv_t *inv)
{
    flc_remote_out_t out;
    flc_err_t e = {0};
    /* The line ends in '\n' for a local instance; a request body has none. */
    if (inv->len > 0 && inv->line[inv->len - 1] == '\n')
        inv->line[--inv->len] = '\0';
    int rc;
    for (;;) {
        inv->attempts++;
        rc = flc_remote_invoke(&p->remote->cfg, inv->line, p->cfg.timeout_ms, &out, &e);
        inv->attempts += out.throttled;
        /* A runtime that died is retried like a local crash. */
        if (rc == 0 && out.crashed && (unsigned)inv->attempts <= p->cfg.retries) {
            flc_remote_out_clear(&out);
            continue;
        }
        break;
    }
    complete(p, inv, &out, rc);
    flc_remote_out_clear(&out);
}

static void *worker(void *arg)
{
    flc_pool_t *p = arg;
    struct flc_pool_remote *rm = p->remote;
    pthread_mutex_lock(&rm->mu);
    for (;;) {
        while (rm->head == NULL && !rm->stop)
            pthread_cond_wait(&rm->cv, &rm->mu);
        if (rm->head == NULL)
            break;
        flc_inv_t *inv = rm->head;
        rm->head = inv->next;
        if (rm->head == NULL)
            rm->tail = NULL;
        int stop = rm->stop;
        pthread_mutex_unlock(&rm->mu);
        if (stop)
            flc_inv_fail_unrun(p, inv, "pool closed before the invocation started");
        else
            run_one(p, inv);
        pthread_mutex_lock(&rm->mu);
    }
    pthread_mutex_unlock(&rm->mu);
    return NULL;
}

int flc_pool_remote_start(flc_pool_t *p, const flc_remote_cfg_t *cfg, flc_err_t *e)
{
    struct flc_pool_remote *rm = calloc(1, sizeof *rm);
    unsigned n = p->cfg.concurrency;
    if (rm == NULL || (rm->threads = calloc(n, sizeof *rm->threads)) == NULL) {
        free(rm);
        return flc_err_set(e, FLC_ENOMEM, "pool: out of memory for %u remote slots", n);
    }
    rm->cfg = *cfg;
    rm->cfg.abort = &rm->abort;
    pthread_mutex_init(&rm->mu, NULL);
    pthread_cond_init(&rm->cv, NULL);
    p->remote = rm;
    for (; rm->nthreads < n; rm->nthreads++) {
        /* Small stacks: a slot only waits on libcurl. */
        pthread_attr_t a;
        pthread_attr_init(&a);
        pthread_attr_setstacksize(&a, 256u << 10);
        int rc = pthread_create(&rm->threads[rm->nthreads], &a, worker, p);
        pthread_attr_destroy(&a);
        if (rc != 0) {
            flc_pool_remote_stop(p);
            return flc_err_set(e, FLC_EIO, "pool: cannot start remote slot %u of %u",
                               rm->nthreads, n);
        }
    }
    return FLC_OK;
}

void flc_pool_remote_queue(flc_pool_t *p, flc_inv_t *first, flc_inv_t *last)
{
    struct flc_pool_remote *rm = p->remote;
    pthread_mutex_lock(&rm->mu);
    if (rm->stop) { /* killed: nothing is sent any more */
        pthread_mutex_unlock(&rm->mu);
        for (flc_inv_t *inv = first, *next; inv != NULL; inv = next) {
            next = inv == last ? NULL : inv->next;
            flc_inv_fail_unrun(p, inv, "pool killed before the invocation started");
        }
        return;
    }
    if (rm->tail != NULL)
        rm->tail->next = first;
    else
        rm->head = first;
    rm->tail = last;
    last->next = NULL;
    pthread_cond_broadcast(&rm->cv);
    pthread_mutex_unlock(&rm->mu);
}

void flc_pool_remote_stop(flc_pool_t *p)
{
    struct flc_pool_remote *rm = p->remote;
    if (rm == NULL)
        return;
    pthread_mutex_lock(&rm->mu);
    rm->stop = 1;
    pthread_cond_broadcast(&rm->cv);
    pthread_mutex_unlock(&rm->mu);
    /* Invocations in flight finish (their HTTP timeouts bound them);
     * queued ones end as "pool closed". */
    for (unsigned i = 0; i < rm->nthreads; i++)
        pthread_join(rm->threads[i], NULL);
    pthread_mutex_destroy(&rm->mu);
    pthread_cond_destroy(&rm->cv);
    free(rm->threads);
    free(rm);
    p->remote = NULL;
}

void flc_pool_remote_abort(flc_pool_t *p)
{
    struct flc_pool_remote *rm = p->remote;
    if (rm == NULL)
        return;
    __atomic_store_n(&rm->abort, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_lock(&rm->mu);
    rm->stop = 1; /* the queued ones end "pool closed" */
    pthread_cond_broadcast(&rm->cv);
    pthread_mutex_unlock(&rm->mu);
}
