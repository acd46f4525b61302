/* One function instance of the local pool (pool_internal.h), on the pool's
 * loop thread: a forked flcache-fn with its three pipes and two timers.
 *
 * An invocation writes the event line to the instance's stdin and arms the
 * timeout (and the memory watchdog); the answer is the next line on its
 * stdout. If stdout reaches EOF first, the instance died: it is reaped with
 * wait4 (for ru_maxrss and the exit status) and the invocation is retried,
 * reported as a timeout, or reported as a crash. The last bytes of its
 * stderr are kept for that message.
 *
 * An instance is freed only after all five of its libuv handles closed
 * (three pipes, two timers), counted in `handles`. */
#include "runtime/pool_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/event.h"
#include "runtime/cpu_cgroup.h"
#include "runtime/pool_proc.h"

#define WATCH_EVERY_MS 10 /* memory watchdog period */
#define REAP_EVERY_MS 2   /* polling for an exiting child */

/* ---------- instance handles ---------- */

static void on_handle_closed(uv_handle_t *h)
{
    flc_inst_t *it = h->data;
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
    free(it->placement);
    flc_cpucg_free(it->cg); /* its process is reaped: the group is empty */
    free(it);
    flc_pool_maybe_finish_stop(p);
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, on_handle_closed);
}

/* Tells an instance to exit: EOF on its stdin ends the local-mode loop. */
void flc_inst_retire(flc_inst_t *it)
{
    if (!it->in_closed) {
        it->in_closed = 1;
        close_handle((uv_handle_t *)&it->in);
    }
}

/* Keeps the last FLC_POOL_STDERR_TAIL bytes the instance wrote to stderr. */
static void keep_tail(flc_inst_t *it, const char *s, size_t n)
{
    if (n >= FLC_POOL_STDERR_TAIL) {
        memcpy(it->tail, s + n - FLC_POOL_STDERR_TAIL, FLC_POOL_STDERR_TAIL);
        it->tlen = FLC_POOL_STDERR_TAIL;
        return;
    }
    if (it->tlen + n > FLC_POOL_STDERR_TAIL) {
        size_t drop = it->tlen + n - FLC_POOL_STDERR_TAIL;
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
    flc_inst_t *it = s->data;
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
static void tail_line(const flc_inst_t *it, char *out, size_t cap)
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

static void stop_timers(flc_inst_t *it)
{
    uv_timer_stop(&it->timeout);
    uv_timer_stop(&it->watch);
}

/* A result line arrived for the current invocation. */
static void on_result_line(flc_inst_t *it, const char *line, size_t len)
{
    flc_pool_t *p = it->pool;
    flc_inv_t *inv = it->cur;
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
    it->state = FLC_INST_IDLE;
    p->busy--;
    flc_pool_count(&p->idle, 1);
    pthread_mutex_lock(&p->mu);
    p->invocations++;
    pthread_mutex_unlock(&p->mu);
    flc_inv_complete(p, inv);
    if (p->cfg.cold_only || p->stopped) {
        it->state = FLC_INST_DEAD; /* stdout EOF will follow */
        flc_pool_count(&p->idle, -1);
        flc_inst_retire(it);
    }
    flc_pool_dispatch(p);
}

/* Everything about the death of an instance is known (stdout EOF, reaped):
 * settle its invocation and close its handles. */
static void finish_death(flc_inst_t *it)
{
    flc_pool_t *p = it->pool;
    /* Whatever it wrote to stderr before dying is in the pipe by now. */
    char buf[4096];
    ssize_t n;
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&it->err, &fd) == 0)
        while ((n = read(fd, buf, sizeof buf)) > 0)
            keep_tail(it, buf, (size_t)n);
    if (it->state == FLC_INST_IDLE)
        flc_pool_count(&p->idle, -1);
    flc_pool_count(&p->alive, -1);
    flc_inv_t *inv = it->cur;
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
            flc_pool_push_pending(p, inv, 1);
        } else {
            flc_inv_complete(p, inv);
        }
    }
    it->state = FLC_INST_DEAD;
    it->in_closed = 1;
    close_handle((uv_handle_t *)&it->in);
    close_handle((uv_handle_t *)&it->out);
    close_handle((uv_handle_t *)&it->err);
    close_handle((uv_handle_t *)&it->timeout);
    close_handle((uv_handle_t *)&it->watch);
    flc_pool_dispatch(p);
}

static int try_reap(flc_inst_t *it)
{
    pid_t r;
    do {
        r = wait4(it->pid, &it->wstatus, WNOHANG, &it->ru);
    } while (r < 0 && errno == EINTR);
    if (r == it->pid || (r < 0 && errno == ECHILD)) {
        it->reaped = 1;
        /* The group is empty once its last member is reaped: forget it
         * before its number can name anything else. */
        if (--it->pool->unreaped == 0)
            flc_pool_set_group(it->pool, 0);
        return 1;
    }
    return 0;
}

static void on_reap_poll(uv_timer_t *t)
{
    flc_inst_t *it = t->data;
    if (try_reap(it)) {
        uv_timer_stop(t);
        finish_death(it);
    } else if (flc_now_ns() > it->reap_deadline) {
        kill(it->pid, SIGKILL); /* closed stdout but will not exit */
        it->reap_deadline = UINT64_MAX;
    }
}

/* stdout reached EOF: the process is exiting. */
static void on_stdout_closed(flc_inst_t *it)
{
    uv_read_stop((uv_stream_t *)&it->out);
    uv_timer_stop(&it->timeout);
    uv_timer_stop(&it->watch);
    if (try_reap(it)) {
        finish_death(it);
        return;
    }
    it->reap_deadline = flc_now_ns() + (uint64_t)FLC_POOL_KILL_AFTER_MS * 1000000u;
    uv_timer_start(&it->watch, on_reap_poll, REAP_EVERY_MS, REAP_EVERY_MS);
}

static void on_out_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    flc_inst_t *it = s->data;
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
    flc_inst_t *it = t->data;
    if (it->cur != NULL && !it->timed_out) {
        it->timed_out = 1;
        kill(it->pid, SIGKILL);
    }
}

static void on_watch(uv_timer_t *t)
{
    flc_inst_t *it = t->data;
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

/* ---------- spawn and start ---------- */

static int init_handle(flc_pool_t *p, flc_inst_t *it, uv_pipe_t *h, int fd)
{
    uv_pipe_init(&p->loop, h, 0);
    h->data = it;
    it->handles++;
    return uv_pipe_open(h, fd);
}

/* Forks a new instance; NULL with msg filled when it cannot start. */
flc_inst_t *flc_inst_spawn(flc_pool_t *p, const char *placement, char *msg, size_t cap)
{
    flc_inst_t *it = calloc(1, sizeof *it);
    if (it == NULL || (placement != NULL && (it->placement = strdup(placement)) == NULL)) {
        free(it);
        snprintf(msg, cap, "out of memory for a new instance");
        return NULL;
    }
    char netns[FLC_POOL_PLACEMENT_MAX + 32];
    if (placement != NULL)
        flc_pool_place_path(placement, netns, sizeof netns);
    flc_proc_t pr;
    uint64_t t0 = flc_now_ns();
    char why[384];
    flc_err_t ce = {0};
    if (p->cfg.cpu_mb_per_vcpu > 0 &&
        (it->cg = flc_cpucg_new(p->cfg.memory_mb, p->cfg.cpu_mb_per_vcpu, &ce)) == NULL) {
        snprintf(msg, cap, "%s", ce.msg);
        free(it->placement);
        free(it);
        return NULL;
    }
    /* Owned: dies with the loop thread (PR_SET_PDEATHSIG), in the pool's
     * process group (a new one when no instance lives). */
    if (flc_proc_spawn_cg(p->fn_path, p->envp, p->as_limit, placement != NULL ? netns : NULL,
                          p->unreaped ? p->pgid : 0, flc_cpucg_procs_fd(it->cg), &pr, why,
                          sizeof why) != 0) {
        flc_cpucg_free(it->cg);
        if (placement != NULL)
            snprintf(msg, cap, "placement '%s': %s", placement, why);
        else
            snprintf(msg, cap, "%s", why);
        free(it->placement);
        free(it);
        return NULL;
    }
    it->pool = p;
    it->pid = pr.pid;
    p->unreaped++;
    if (pr.pgid != p->pgid)
        flc_pool_set_group(p, pr.pgid);
    it->t_spawn = t0;
    it->state = FLC_INST_IDLE;
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
    flc_pool_count(&p->alive, 1);
    flc_pool_count(&p->idle, 1);
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

void flc_inst_start(flc_pool_t *p, flc_inst_t *it, flc_inv_t *inv)
{
    flc_inv_rec_t *r = &inv->batch->recs[inv->index];
    int cold = it->invocations == 0;
    inv->attempts++;
    r->cold = cold;
    r->pid = (int)it->pid;
    it->cur = inv;
    it->state = FLC_INST_BUSY;
    it->timed_out = it->oom = 0;
    flc_pool_count(&p->idle, -1);
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
