/* The local function platform (see pool.h): a libuv loop on the pool's own
 * thread owns every instance; other threads only queue batches and wait.
 *
 * Life of an invocation: flc_pool_start appends it to `incoming` under the
 * mutex and wakes the loop (uv_async). The loop moves it to `pending`, and
 * dispatch() gives it to an idle instance or forks a new one, writes the
 * event line to the instance's stdin, and arms the timeout (and the memory
 * watchdog). The answer is the next line on the instance's stdout. If
 * stdout reaches EOF first, the instance died: it is reaped with wait4 (for
 * ru_maxrss and the exit status) and the invocation is retried, reported as
 * a timeout, or reported as a crash.
 *
 * An instance is freed only after all five of its libuv handles closed
 * (three pipes, two timers), counted in `handles`. */
#include "runtime/pool.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "base/clock.h"
#include "base/log.h"
#include "runtime/cost.h"
#include "base/event.h"
#include "runtime/pool_proc.h"

extern char **environ;

#define WATCH_EVERY_MS 10    /* memory watchdog period */
#define REAP_EVERY_MS 2      /* polling for an exiting child */
#define REAP_KILL_AFTER_MS 2000
#define STDERR_TAIL 2048

typedef struct inv {
    flc_batch_t *batch;
    size_t index;
    char *line; /* event + '\n' */
    size_t len;
    int attempts;
    struct inv *next;
} inv_t;

struct flc_batch {
    flc_pool_t *pool;
    inv_t *invs;
    flc_inv_rec_t *recs;
    size_t n;
    size_t done; /* under pool->mu */
};

enum { INST_IDLE, INST_BUSY, INST_DEAD };

typedef struct inst {
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
    char tail[STDERR_TAIL];
    size_t tlen;
    inv_t *cur;
    int invocations;
    uint64_t t_spawn, t_start; /* ns */
    int timed_out, oom, reaped;
    uint64_t oom_rss_kb, reap_deadline;
    int wstatus;
    struct rusage ru;
    struct inst *next, *prev;
} inst_t;

struct flc_pool {
    flc_pool_cfg_t cfg;
    char *fn_path;
    char **envp;
    uint64_t as_limit;        /* bytes, 0 = no rlimit */
    uint64_t watch_limit_kb;  /* 0 = no watchdog */
    pthread_t thread;
    uv_loop_t loop;
    uv_async_t wake;
    uv_timer_t stop_timer;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    inv_t *in_head, *in_tail; /* incoming, under mu */
    int stopping;             /* under mu */
    /* loop thread only: */
    int stopped;
    inv_t *pend_head, *pend_tail;
    inst_t *insts;
    unsigned ninst, busy, idle, alive;
    uint64_t cold_starts, invocations; /* read under mu by stats */
};

static void dispatch(flc_pool_t *p);
static void maybe_finish_stop(flc_pool_t *p);

/* ---------- records ---------- */

const char *flc_inv_status_name(int status)
{
    switch (status) {
    case FLC_INV_OK: return "ok";
    case FLC_INV_ERROR: return "error";
    case FLC_INV_TIMEOUT: return "timeout";
    case FLC_INV_CRASH: return "crash";
    default: return "unknown";
    }
}

const cJSON *flc_inv_result(const flc_inv_rec_t *rec)
{
    return rec->reply != NULL ? cJSON_GetObjectItemCaseSensitive(rec->reply, "result") : NULL;
}

cJSON *flc_inv_rec_json(const flc_inv_rec_t *r)
{
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return NULL;
    cJSON_AddStringToObject(o, "status", flc_inv_status_name(r->status));
    cJSON_AddBoolToObject(o, "cold", r->cold);
    cJSON_AddNumberToObject(o, "attempts", r->attempts);
    cJSON_AddNumberToObject(o, "pid", r->pid);
    cJSON_AddNumberToObject(o, "duration_ms", r->duration_ms);
    cJSON_AddNumberToObject(o, "billed_ms", (double)r->billed_ms);
    cJSON_AddNumberToObject(o, "peak_rss_kb", (double)r->peak_rss_kb);
    cJSON_AddNumberToObject(o, "compute_ms", r->compute_ms);
    cJSON_AddNumberToObject(o, "comm_ms", r->comm_ms);
    cJSON_AddNumberToObject(o, "gb_s", r->gb_s);
    cJSON_AddNumberToObject(o, "cost_usd", r->cost_usd);
    if (r->status != FLC_INV_OK)
        cJSON_AddStringToObject(o, "error", r->error);
    return o;
}

void flc_inv_rec_clear(flc_inv_rec_t *rec)
{
    if (rec == NULL)
        return;
    cJSON_Delete(rec->reply);
    memset(rec, 0, sizeof *rec);
}

/* Finishes inv with the record already filled in (status, times, error):
 * adds the billing figures and counts it done for its batch. */
static void complete(flc_pool_t *p, inv_t *inv)
{
    flc_inv_rec_t *r = &inv->batch->recs[inv->index];
    r->attempts = inv->attempts;
    r->billed_ms = flc_cost_billed_ms(r->duration_ms);
    r->gb_s = flc_cost_gb_s(p->cfg.memory_mb, r->billed_ms);
    r->cost_usd = flc_cost_usd(p->cfg.memory_mb, r->billed_ms, p->cfg.price_per_gb_s,
                               p->cfg.price_per_request);
    pthread_mutex_lock(&p->mu);
    flc_batch_t *b = inv->batch;
    if (++b->done == b->n)
        pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Completes inv without having run it (cannot start, pool closed). */
static void fail_unrun(flc_pool_t *p, inv_t *inv, const char *msg)
{
    flc_inv_rec_t *r = &inv->batch->recs[inv->index];
    r->status = FLC_INV_ERROR;
    snprintf(r->error, sizeof r->error, "%s", msg);
    complete(p, inv);
}

static void push_pending(flc_pool_t *p, inv_t *inv, int front)
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

/* ---------- instance handles ---------- */

static void on_handle_closed(uv_handle_t *h)
{
    inst_t *it = h->data;
    if (--it->handles > 0)
        return;
    flc_pool_t *p = it->pool;
    if (it->prev != NULL)
        it->prev->next = it->next;
    else
        p->insts = it->next;
    if (it->next != NULL)
        it->next->prev = it->prev;
    p->ninst--;
    free(it->wbuf);
    free(it->rbuf);
    free(it);
    maybe_finish_stop(p);
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, on_handle_closed);
}

/* Tells an instance to exit: EOF on its stdin ends the local-mode loop. */
static void retire(inst_t *it)
{
    if (!it->in_closed) {
        it->in_closed = 1;
        close_handle((uv_handle_t *)&it->in);
    }
}

/* Keeps the last STDERR_TAIL bytes the instance wrote to stderr. */
static void keep_tail(inst_t *it, const char *s, size_t n)
{
    if (n >= STDERR_TAIL) {
        memcpy(it->tail, s + n - STDERR_TAIL, STDERR_TAIL);
        it->tlen = STDERR_TAIL;
        return;
    }
    if (it->tlen + n > STDERR_TAIL) {
        size_t drop = it->tlen + n - STDERR_TAIL;
        memmove(it->tail, it->tail + drop, it->tlen - drop);
        it->tlen -= drop;
    }
    memcpy(it->tail + it->tlen, s, n);
    it->tlen += n;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    buf->base = malloc(suggested);
    buf->len = buf->base != NULL ? suggested : 0;
}

static void on_err_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    inst_t *it = s->data;
    if (n > 0) {
        keep_tail(it, buf->base, (size_t)n);
        if (it->pool->cfg.forward_stderr) {
            ssize_t w = write(STDERR_FILENO, buf->base, (size_t)n);
            (void)w;
        }
    } else if (n < 0) {
        uv_read_stop(s);
    }
    free(buf->base);
}

/* The last non-empty line of the stderr tail, for error messages. */
static void tail_line(const inst_t *it, char *out, size_t cap)
{
    size_t end = it->tlen;
    while (end > 0 && (it->tail[end - 1] == '\n' || it->tail[end - 1] == '\r'))
        end--;
    size_t start = end;
    while (start > 0 && it->tail[start - 1] != '\n')
        start--;
    size_t n = end - start < cap - 1 ? end - start : cap - 1;
    memcpy(out, it->tail + start, n);
    out[n] = '\0';
}

/* ---------- invocation outcome ---------- */

static double since_ms(uint64_t t0)
{
    return (double)(flc_now_ns() - t0) / 1e6;
}

static void stop_timers(inst_t *it)
{
    uv_timer_stop(&it->timeout);
    uv_timer_stop(&it->watch);
}

/* A result line arrived for the current invocation. */
static void on_result_line(inst_t *it, const char *line, size_t len)
{
    flc_pool_t *p = it->pool;
    inv_t *inv = it->cur;
    if (inv == NULL) {
        FLC_WARN("pool: instance %d printed a line with no invocation: %.80s", (int)it->pid,
                 line);
        return;
    }
    stop_timers(it);
    flc_inv_rec_t *r = &inv->batch->recs[inv->index];
    r->duration_ms = since_ms(it->t_start);
    r->pid = (int)it->pid;
    r->peak_rss_kb = flc_proc_status_kb(it->pid, "VmHWM");
    flc_err_t e = {0};
    cJSON *reply = flc_ev_parse(line, len, &e);
    if (reply == NULL) {
        r->status = FLC_INV_ERROR;
        snprintf(r->error, sizeof r->error, "instance %d answered a line that is not a JSON "
                 "result: %s", (int)it->pid, flc_err_msg(&e));
    } else {
        r->reply = reply;
        r->compute_ms = flc_ev_num(reply, "compute_ms", 0);
        r->comm_ms = flc_ev_num(reply, "comm_ms", 0);
        if (flc_ev_bool(reply, "ok", 0)) {
            r->status = FLC_INV_OK;
        } else {
            r->status = FLC_INV_ERROR;
            snprintf(r->error, sizeof r->error, "%s",
                     flc_ev_str(reply, "error", "function answered ok:false"));
        }
    }
    it->cur = NULL;
    it->invocations++;
    it->state = INST_IDLE;
    p->busy--;
    p->idle++;
    pthread_mutex_lock(&p->mu);
    p->invocations++;
    pthread_mutex_unlock(&p->mu);
    complete(p, inv);
    if (p->cfg.cold_only || p->stopped) {
        it->state = INST_DEAD; /* stdout EOF will follow */
        p->idle--;
        retire(it);
    }
    dispatch(p);
}

/* Everything about the death of an instance is known (stdout EOF, reaped):
 * settle its invocation and close its handles. */
static void finish_death(inst_t *it)
{
    flc_pool_t *p = it->pool;
    /* Whatever it wrote to stderr before dying is in the pipe by now. */
    char buf[4096];
    ssize_t n;
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&it->err, &fd) == 0)
        while ((n = read(fd, buf, sizeof buf)) > 0)
            keep_tail(it, buf, (size_t)n);
    if (it->state == INST_IDLE)
        p->idle--;
    p->alive--;
    inv_t *inv = it->cur;
    if (inv != NULL) {
        stop_timers(it);
        p->busy--;
        pthread_mutex_lock(&p->mu);
        p->invocations++;
        pthread_mutex_unlock(&p->mu);
        flc_inv_rec_t *r = &inv->batch->recs[inv->index];
        r->duration_ms = since_ms(it->t_start);
        r->pid = (int)it->pid;
        r->peak_rss_kb = (uint64_t)it->ru.ru_maxrss;
        char how[96], last[256];
        flc_proc_describe(it->wstatus, how, sizeof how);
        tail_line(it, last, sizeof last);
        if (it->timed_out) {
            r->status = FLC_INV_TIMEOUT;
            snprintf(r->error, sizeof r->error, "timed out after %u ms (instance %d killed)",
                     p->cfg.timeout_ms, (int)it->pid);
        } else if (p->stopped) {
            r->status = FLC_INV_ERROR;
            snprintf(r->error, sizeof r->error, "pool closed during the invocation");
        } else {
            r->status = FLC_INV_CRASH;
            if (it->oom)
                snprintf(r->error, sizeof r->error,
                         "memory limit: instance %d resident set reached %.1f MB, limit %.0f MB",
                         (int)it->pid, (double)it->oom_rss_kb / 1024.0,
                         (double)p->watch_limit_kb / 1024.0);
            else
                snprintf(r->error, sizeof r->error, "instance %d %s%s%.300s", (int)it->pid, how,
                         last[0] ? "; stderr: " : "", last);
        }
        it->cur = NULL;
        if (r->status == FLC_INV_CRASH && inv->attempts <= (int)p->cfg.retries) {
            FLC_INFO("pool: retrying after: %s", r->error);
            cJSON_Delete(r->reply);
            memset(r, 0, sizeof *r);
            push_pending(p, inv, 1);
        } else {
            complete(p, inv);
        }
    }
    it->state = INST_DEAD;
    it->in_closed = 1;
    close_handle((uv_handle_t *)&it->in);
    close_handle((uv_handle_t *)&it->out);
    close_handle((uv_handle_t *)&it->err);
    close_handle((uv_handle_t *)&it->timeout);
    close_handle((uv_handle_t *)&it->watch);
    dispatch(p);
}

static int try_reap(inst_t *it)
{
    pid_t r;
    do {
        r = wait4(it->pid, &it->wstatus, WNOHANG, &it->ru);
    } while (r < 0 && errno == EINTR);
    if (r == it->pid || (r < 0 && errno == ECHILD)) {
        it->reaped = 1;
        return 1;
    }
    return 0;
}

static void on_reap_poll(uv_timer_t *t)
{
    inst_t *it = t->data;
    if (try_reap(it)) {
        uv_timer_stop(t);
        finish_death(it);
    } else if (flc_now_ns() > it->reap_deadline) {
        kill(it->pid, SIGKILL); /* closed stdout but will not exit */
        it->reap_deadline = UINT64_MAX;
    }
}

/* stdout reached EOF: the process is exiting. */
static void on_stdout_closed(inst_t *it)
{
    uv_read_stop((uv_stream_t *)&it->out);
    uv_timer_stop(&it->timeout);
    uv_timer_stop(&it->watch);
    if (try_reap(it)) {
        finish_death(it);
        return;
    }
    it->reap_deadline = flc_now_ns() + (uint64_t)REAP_KILL_AFTER_MS * 1000000u;
    uv_timer_start(&it->watch, on_reap_poll, REAP_EVERY_MS, REAP_EVERY_MS);
}

static void on_out_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    inst_t *it = s->data;
    if (n < 0) {
        free(buf->base);
        on_stdout_closed(it);
        return;
    }
    if (n > 0) {
        if (it->rlen + (size_t)n + 1 > it->rcap) {
            size_t cap = it->rcap ? it->rcap : 8192;
            while (cap < it->rlen + (size_t)n + 1)
                cap *= 2;
            char *nb = realloc(it->rbuf, cap);
            if (nb == NULL) {
                free(buf->base);
                kill(it->pid, SIGKILL);
                return;
            }
            it->rbuf = nb;
            it->rcap = cap;
        }
        memcpy(it->rbuf + it->rlen, buf->base, (size_t)n);
        it->rlen += (size_t)n;
        /* Lines are handled in order; a result may arrive in many reads. */
        char *nl;
        while (it->rlen > 0 && (nl = memchr(it->rbuf, '\n', it->rlen)) != NULL) {
            size_t len = (size_t)(nl - it->rbuf);
            *nl = '\0';
            if (len > 0)
                on_result_line(it, it->rbuf, len);
            size_t rest = it->rlen - len - 1;
            memmove(it->rbuf, nl + 1, rest);
            it->rlen = rest;
        }
    }
    free(buf->base);
}

static void on_timeout(uv_timer_t *t)
{
    inst_t *it = t->data;
    if (it->cur != NULL && !it->timed_out) {
        it->timed_out = 1;
        kill(it->pid, SIGKILL);
    }
}

static void on_watch(uv_timer_t *t)
{
    inst_t *it = t->data;
    flc_pool_t *p = it->pool;
    if (it->cur == NULL || it->oom)
        return;
    uint64_t rss = flc_proc_status_kb(it->pid, "VmRSS");
    if (rss > p->watch_limit_kb) {
        it->oom = 1;
        it->oom_rss_kb = rss;
        kill(it->pid, SIGKILL);
    }
}

static void on_written(uv_write_t *req, int status)
{
    /* A failed write means the instance is gone; its stdout EOF settles
     * the invocation, so nothing to do here. */
    (void)req;
    (void)status;
}

/* ---------- instances ---------- */

static int init_handle(flc_pool_t *p, inst_t *it, uv_pipe_t *h, int fd)
{
    uv_pipe_init(&p->loop, h, 0);
    h->data = it;
    it->handles++;
    return uv_pipe_open(h, fd);
}

/* Forks a new instance; NULL with msg filled when it cannot start. */
static inst_t *spawn(flc_pool_t *p, char *msg, size_t cap)
{
    inst_t *it = calloc(1, sizeof *it);
    if (it == NULL) {
        snprintf(msg, cap, "out of memory for a new instance");
        return NULL;
    }
    flc_proc_t pr;
    uint64_t t0 = flc_now_ns();
    if (flc_proc_spawn(p->fn_path, p->envp, p->as_limit, &pr, msg, cap) != 0) {
        free(it);
        return NULL;
    }
    it->pool = p;
    it->pid = pr.pid;
    it->t_spawn = t0;
    it->state = INST_IDLE;
    int rc = init_handle(p, it, &it->in, pr.in_fd);
    rc |= init_handle(p, it, &it->out, pr.out_fd);
    rc |= init_handle(p, it, &it->err, pr.err_fd);
    uv_timer_init(&p->loop, &it->timeout);
    uv_timer_init(&p->loop, &it->watch);
    it->timeout.data = it->watch.data = it;
    it->handles += 2;
    it->next = p->insts;
    if (p->insts != NULL)
        p->insts->prev = it;
    p->insts = it;
    p->ninst++;
    p->alive++;
    p->idle++;
    pthread_mutex_lock(&p->mu);
    p->cold_starts++;
    pthread_mutex_unlock(&p->mu);
    if (rc == 0) {
        rc = uv_read_start((uv_stream_t *)&it->out, on_alloc, on_out_read);
        rc |= uv_read_start((uv_stream_t *)&it->err, on_alloc, on_err_read);
    }
    if (rc != 0) /* cannot watch it: let it die and be reaped as a crash */
        kill(it->pid, SIGKILL);
    return it;
}

static void start_on(flc_pool_t *p, inst_t *it, inv_t *inv)
{
    flc_inv_rec_t *r = &inv->batch->recs[inv->index];
    int cold = it->invocations == 0;
    inv->attempts++;
    r->cold = cold;
    r->pid = (int)it->pid;
    it->cur = inv;
    it->state = INST_BUSY;
    it->timed_out = it->oom = 0;
    p->idle--;
    p->busy++;
    if (cold) {
        it->t_start = it->t_spawn;
    } else {
        flc_proc_reset_hwm(it->pid);
        it->t_start = flc_now_ns();
    }
    free(it->wbuf);
    it->wbuf = malloc(inv->len);
    if (it->wbuf == NULL) {
        kill(it->pid, SIGKILL);
        return;
    }
    memcpy(it->wbuf, inv->line, inv->len);
    uv_buf_t b = uv_buf_init(it->wbuf, (unsigned)inv->len);
    if (uv_write(&it->wreq, (uv_stream_t *)&it->in, &b, 1, on_written) != 0)
        kill(it->pid, SIGKILL);
    uv_timer_start(&it->timeout, on_timeout, p->cfg.timeout_ms, 0);
    if (p->watch_limit_kb > 0)
        uv_timer_start(&it->watch, on_watch, WATCH_EVERY_MS, WATCH_EVERY_MS);
}

static inst_t *find_idle(flc_pool_t *p)
{
    for (inst_t *it = p->insts; it != NULL; it = it->next)
        if (it->state == INST_IDLE && !it->in_closed)
            return it;
    return NULL;
}

/* Starts pending invocations while slots are free, then trims idle
 * instances down to max_warm. */
static void dispatch(flc_pool_t *p)
{
    while (p->pend_head != NULL && p->busy < p->cfg.concurrency) {
        inv_t *inv = p->pend_head;
        p->pend_head = inv->next;
        if (p->pend_head == NULL)
            p->pend_tail = NULL;
        if (p->stopped) {
            fail_unrun(p, inv, "pool closed before the invocation started");
            continue;
        }
        inst_t *it = p->cfg.cold_only ? NULL : find_idle(p);
        if (it == NULL) {
            char msg[512];
            it = spawn(p, msg, sizeof msg);
            if (it == NULL) {
                fail_unrun(p, inv, msg);
                continue;
            }
        }
        start_on(p, it, inv);
    }
    if (p->pend_head == NULL)
        for (inst_t *it = p->insts; it != NULL && p->idle > p->cfg.max_warm; it = it->next)
            if (it->state == INST_IDLE && !it->in_closed) {
                it->state = INST_DEAD;
                p->idle--;
                retire(it);
            }
}

/* ---------- loop thread ---------- */

static void on_stop_timer(uv_timer_t *t)
{
    flc_pool_t *p = t->data;
    for (inst_t *it = p->insts; it != NULL; it = it->next)
        if (!it->reaped)
            kill(it->pid, SIGKILL);
}

static void maybe_finish_stop(flc_pool_t *p)
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
    inv_t *list = p->in_head;
    p->in_head = p->in_tail = NULL;
    int stopping = p->stopping;
    pthread_mutex_unlock(&p->mu);
    while (list != NULL) {
        inv_t *next = list->next;
        push_pending(p, list, 0);
        list = next;
    }
    if (stopping && !p->stopped) {
        p->stopped = 1;
        for (inst_t *it = p->insts; it != NULL; it = it->next) {
            if (it->state == INST_BUSY)
                kill(it->pid, SIGKILL);
            else if (it->state == INST_IDLE) {
                it->state = INST_DEAD;
                p->idle--;
            }
            retire(it);
        }
        uv_timer_start(&p->stop_timer, on_stop_timer, REAP_KILL_AFTER_MS, REAP_KILL_AFTER_MS);
    }
    dispatch(p);
    maybe_finish_stop(p);
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

static int is_asan_build(void)
{
#if defined(__SANITIZE_ADDRESS__)
    return 1;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    return 1;
#endif
#endif
    return 0;
}

/* Picks the memory enforcement from cfg->mem_mode, the build and
 * FLCACHE_POOL_MEM. */
static void memory_limits(flc_pool_t *p)
{
    int mode = p->cfg.mem_mode;
    const char *env = getenv("FLCACHE_POOL_MEM");
    if (env != NULL) {
        if (strcmp(env, "rlimit") == 0) mode = FLC_MEM_RLIMIT;
        else if (strcmp(env, "watch") == 0) mode = FLC_MEM_WATCH;
        else if (strcmp(env, "both") == 0) mode = FLC_MEM_BOTH;
        else if (strcmp(env, "off") == 0) mode = FLC_MEM_OFF;
    }
    int asan = is_asan_build();
    if (mode == FLC_MEM_AUTO)
        mode = asan ? FLC_MEM_WATCH : FLC_MEM_BOTH;
    uint64_t mb = p->cfg.memory_mb;
    if ((mode == FLC_MEM_RLIMIT || mode == FLC_MEM_BOTH) && !asan)
        p->as_limit = (mb + p->cfg.as_slack_mb) << 20;
    if (mode == FLC_MEM_WATCH || mode == FLC_MEM_BOTH)
        p->watch_limit_kb = (mb << 10) * (asan ? FLC_POOL_ASAN_MEM_SCALE : 1);
}

/* environ plus cfg->env, copied once (instances must not see later setenv
 * races from other threads). */
static char **build_env(const char *const *extra)
{
    size_t n = 0, m = 0;
    while (environ != NULL && environ[n] != NULL)
        n++;
    while (extra != NULL && extra[m] != NULL)
        m++;
    char **envp = calloc(n + m + 1, sizeof *envp);
    if (envp == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < m; i++)
        envp[k++] = strdup(extra[i]);
    for (size_t i = 0; i < n; i++) {
        /* extra settings win over the inherited ones */
        const char *eq = strchr(environ[i], '=');
        size_t nl = eq != NULL ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        int dup = 0;
        for (size_t j = 0; j < m && !dup; j++)
            dup = strncmp(extra[j], environ[i], nl) == 0 && extra[j][nl] == '=';
        if (!dup)
            envp[k++] = strdup(environ[i]);
    }
    for (size_t i = 0; i < k; i++)
        if (envp[i] == NULL) {
            for (size_t j = 0; j < k; j++)
                free(envp[j]);
            free(envp);
            return NULL;
        }
    return envp;
}

static void free_env(char **envp)
{
    if (envp == NULL)
        return;
    for (size_t i = 0; envp[i] != NULL; i++)
        free(envp[i]);
    free(envp);
}

flc_pool_t *flc_pool_new(const flc_pool_cfg_t *cfg, flc_err_t *e)
{
    if (cfg == NULL || cfg->fn_path == NULL || *cfg->fn_path == '\0') {
        flc_err_set(e, FLC_EINVAL, "pool: no function binary configured (fn_path)");
        return NULL;
    }
    if (access(cfg->fn_path, X_OK) != 0) {
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
    p->fn_path = strdup(cfg->fn_path);
    p->envp = build_env(cfg->env);
    p->cfg.fn_path = p->fn_path;
    memory_limits(p);
    if (p->fn_path == NULL || p->envp == NULL) {
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
    return p;
fail:
    free(p->fn_path);
    free_env(p->envp);
    free(p);
    return NULL;
}

void flc_pool_free(flc_pool_t *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = 1;
    pthread_mutex_unlock(&p->mu);
    uv_async_send(&p->wake);
    pthread_join(p->thread, NULL);
    uv_loop_close(&p->loop);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->fn_path);
    free_env(p->envp);
    free(p);
}

const flc_pool_cfg_t *flc_pool_config(const flc_pool_t *p)
{
    return &p->cfg;
}

/* One event line: the text as given when it holds no newline, else
 * re-encoded compactly (a raw newline would split the event in two). */
static char *event_line(const char *ev, size_t *len)
{
    char *line = NULL;
    if (strchr(ev, '\n') == NULL && strchr(ev, '\r') == NULL) {
        size_t n = strlen(ev);
        line = malloc(n + 2);
        if (line != NULL) {
            memcpy(line, ev, n);
            line[n] = '\n';
            line[n + 1] = '\0';
            *len = n + 1;
        }
        return line;
    }
    cJSON *v = cJSON_Parse(ev);
    char *s = v != NULL ? flc_ev_print(v) : NULL;
    cJSON_Delete(v);
    if (s == NULL) { /* not JSON: send it flattened, the function will say so */
        s = strdup(ev);
        for (char *c = s; c != NULL && *c; c++)
            if (*c == '\n' || *c == '\r')
                *c = ' ';
    }
    if (s == NULL)
        return NULL;
    size_t n = strlen(s);
    line = realloc(s, n + 2);
    if (line == NULL) {
        free(s);
        return NULL;
    }
    line[n] = '\n';
    line[n + 1] = '\0';
    *len = n + 1;
    return line;
}

static void batch_free(flc_batch_t *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->invs[i].line);
    free(b->invs);
    free(b);
}

flc_batch_t *flc_pool_start(flc_pool_t *p, const char *const *events, size_t n,
                            flc_inv_rec_t *recs, flc_err_t *e)
{
    if (p == NULL || (n > 0 && (events == NULL || recs == NULL))) {
        flc_err_set(e, FLC_EINVAL, "pool: invoke needs a pool, events and records");
        return NULL;
    }
    flc_batch_t *b = calloc(1, sizeof *b);
    inv_t *invs = calloc(n > 0 ? n : 1, sizeof *invs);
    if (b == NULL || invs == NULL) {
        free(b);
        free(invs);
        flc_err_set(e, FLC_ENOMEM, "pool: out of memory for a batch of %zu", n);
        return NULL;
    }
    b->pool = p;
    b->invs = invs;
    b->recs = recs;
    b->n = n;
    for (size_t i = 0; i < n; i++) {
        memset(&recs[i], 0, sizeof recs[i]);
        if (events[i] == NULL) {
            b->n = i;
            batch_free(b);
            flc_err_set(e, FLC_EINVAL, "pool: event %zu of the batch is NULL", i);
            return NULL;
        }
        invs[i].batch = b;
        invs[i].index = i;
        invs[i].line = event_line(events[i], &invs[i].len);
        if (invs[i].line == NULL) {
            b->n = i;
            batch_free(b);
            flc_err_set(e, FLC_ENOMEM, "pool: out of memory copying event %zu", i);
            return NULL;
        }
        invs[i].next = i + 1 < n ? &invs[i + 1] : NULL;
    }
    pthread_mutex_lock(&p->mu);
    if (p->stopping) {
        pthread_mutex_unlock(&p->mu);
        batch_free(b);
        flc_err_set(e, FLC_ECLOSED, "pool: closed");
        return NULL;
    }
    if (n > 0) {
        if (p->in_tail != NULL)
            p->in_tail->next = &invs[0];
        else
            p->in_head = &invs[0];
        p->in_tail = &invs[n - 1];
    }
    pthread_mutex_unlock(&p->mu);
    uv_async_send(&p->wake);
    return b;
}

size_t flc_batch_done(flc_batch_t *b)
{
    pthread_mutex_lock(&b->pool->mu);
    size_t d = b->done;
    pthread_mutex_unlock(&b->pool->mu);
    return d;
}

int flc_batch_wait(flc_batch_t *b, unsigned timeout_ms)
{
    flc_pool_t *p = b->pool;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&p->mu);
    while (b->done < b->n) {
        if (timeout_ms == 0) {
            pthread_cond_wait(&p->cv, &p->mu);
        } else if (pthread_cond_timedwait(&p->cv, &p->mu, &until) == ETIMEDOUT &&
                   b->done < b->n) {
            pthread_mutex_unlock(&p->mu);
            return FLC_ETIMEOUT;
        }
    }
    pthread_mutex_unlock(&p->mu);
    batch_free(b);
    return FLC_OK;
}

int flc_pool_invoke(flc_pool_t *p, const char *const *events, size_t n, flc_inv_rec_t *recs,
                    flc_err_t *e)
{
    flc_batch_t *b = flc_pool_start(p, events, n, recs, e);
    if (b == NULL)
        return e != NULL && e->code != 0 ? e->code : FLC_EINVAL;
    return flc_batch_wait(b, 0);
}

int flc_pool_invoke_json(flc_pool_t *p, const cJSON *const *events, size_t n,
                         flc_inv_rec_t *recs, flc_err_t *e)
{
    char **texts = calloc(n > 0 ? n : 1, sizeof *texts);
    if (texts == NULL)
        return flc_err_set(e, FLC_ENOMEM, "pool: out of memory for %zu events", n);
    int rc = FLC_OK;
    for (size_t i = 0; i < n && rc == 0; i++)
        if ((texts[i] = flc_ev_print(events[i])) == NULL)
            rc = flc_err_set(e, FLC_EINVAL, "pool: event %zu cannot be printed as JSON", i);
    if (rc == 0)
        rc = flc_pool_invoke(p, (const char *const *)texts, n, recs, e);
    for (size_t i = 0; i < n; i++)
        free(texts[i]);
    free(texts);
    return rc;
}

void flc_pool_stats(flc_pool_t *p, flc_pool_stats_t *st)
{
    memset(st, 0, sizeof *st);
    pthread_mutex_lock(&p->mu);
    st->cold_starts = p->cold_starts;
    st->invocations = p->invocations;
    pthread_mutex_unlock(&p->mu);
    /* alive/idle are loop-thread counters; a racy read is fine for stats
     * but is done through atomics-free copies, so call it between batches
     * for exact figures. */
    st->alive = __atomic_load_n(&p->alive, __ATOMIC_RELAXED);
    st->idle = __atomic_load_n(&p->idle, __ATOMIC_RELAXED);
}
