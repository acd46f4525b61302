/* Batches and records of the local pool (pool.h): other threads queue a
 * batch of invocations and wait for it; the loop thread completes each one
 * with its billing figures. A batch's `done` count and the pool's condition
 * variable are the only things the two sides share, under the pool's mutex. */
#include "runtime/pool_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "runtime/cost.h"
#include "base/event.h"

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
    if (r->placement[0] != '\0')
        cJSON_AddStringToObject(o, "placement", r->placement);
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
void flc_inv_complete(flc_pool_t *p, flc_inv_t *inv)
{
    flc_inv_rec_t *r = &inv->batch->recs[inv->index];
    r->attempts = inv->attempts;
    /* Here, not at the start: a retry clears the record. */
    snprintf(r->placement, sizeof r->placement, "%s", inv->placement ? inv->placement : "");
    r->billed_ms = flc_cost_billed_ms(r->duration_ms);
    r->gb_s = flc_cost_gb_s(p->cfg.memory_mb, r->billed_ms);
    r->cost_usd = flc_cost_usd(p->cfg.memory_mb, r->billed_ms, p->cfg.price_per_gb_s,
                               p->cfg.price_per_request);
    flc_inv_count_done(p, inv);
}

void flc_inv_count_done(flc_pool_t *p, flc_inv_t *inv)
{
    flc_inv_rec_t *r = &inv->batch->recs[inv->index];
    pthread_mutex_lock(&p->mu);
    flc_batch_t *b = inv->batch;
    if (r->status != FLC_INV_OK && b->first_failed == 0)
        b->first_failed = inv->index + 1;
    if (++b->done == b->n)
        pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Completes inv without having run it (cannot start, pool closed). */
void flc_inv_fail_unrun(flc_pool_t *p, flc_inv_t *inv, const char *msg)
{
    flc_inv_rec_t *r = &inv->batch->recs[inv->index];
    r->status = FLC_INV_ERROR;
    snprintf(r->error, sizeof r->error, "%s", msg);
    flc_inv_complete(p, inv);
}

/* ---------- batches ---------- */

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
    for (size_t i = 0; i < b->n; i++) {
        free(b->invs[i].line);
        free(b->invs[i].placement);
    }
    free(b->invs);
    free(b);
}

/* Where invocation i runs: the caller's placement, else the event's
 * member, else the pool's default; "" is none (NULL in inv). */
static int resolve_placement(flc_pool_t *p, const char *event, const char *given,
                             flc_inv_t *inv, size_t i, flc_err_t *e)
{
    char why[320];
    char *member = NULL;
    int rc = 0;
    if (given == NULL && (rc = flc_pool_place_from_text(event, &member, why, sizeof why)) != 0)
        return flc_err_set(e, rc, "pool: event %zu: %s", i, why);
    const char *pl = given != NULL ? given : member != NULL ? member : p->placement;
    if (pl != NULL && (rc = flc_pool_place_check(pl, why, sizeof why)) != 0) {
        free(member);
        return flc_err_set(e, rc, "pool: event %zu: %s", i, why);
    }
    if (pl != NULL && *pl != '\0' && (inv->placement = strdup(pl)) == NULL)
        rc = flc_err_set(e, FLC_ENOMEM, "pool: out of memory copying placement %zu", i);
    free(member);
    return rc;
}

flc_batch_t *flc_pool_start_placed(flc_pool_t *p, const char *const *events,
                                   const char *const *placements, size_t n,
                                   flc_inv_rec_t *recs, flc_err_t *e)
{
    if (p == NULL || (n > 0 && (events == NULL || recs == NULL))) {
        flc_err_set(e, FLC_EINVAL, "pool: invoke needs a pool, events and records");
        return NULL;
    }
    flc_batch_t *b = calloc(1, sizeof *b);
    flc_inv_t *invs = calloc(n > 0 ? n : 1, sizeof *invs);
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
        if (resolve_placement(p, events[i], placements != NULL ? placements[i] : NULL,
                              &invs[i], i, e) != 0) {
            b->n = i + 1;
            batch_free(b);
            return NULL;
        }
        invs[i].line = event_line(events[i], &invs[i].len);
        if (invs[i].line == NULL) {
            b->n = i + 1;
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
    if (n > 0 && p->remote != NULL) {
        pthread_mutex_unlock(&p->mu);
        flc_pool_remote_queue(p, &invs[0], &invs[n - 1]); /* Lambda, OpenWhisk */
        return b;
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

flc_batch_t *flc_pool_start(flc_pool_t *p, const char *const *events, size_t n,
                            flc_inv_rec_t *recs, flc_err_t *e)
{
    return flc_pool_start_placed(p, events, NULL, n, recs, e);
}

flc_batch_t *flc_pool_start_json(flc_pool_t *p, const cJSON *const *events, size_t n,
                                 flc_inv_rec_t *recs, flc_err_t *e)
{
    char **texts = calloc(n > 0 ? n : 1, sizeof *texts);
    const char **places = calloc(n > 0 ? n : 1, sizeof *places);
    flc_batch_t *b = NULL;
    int rc = FLC_OK;
    if (texts == NULL || places == NULL)
        rc = flc_err_set(e, FLC_ENOMEM, "pool: out of memory for %zu events", n);
    char why[320];
    for (size_t i = 0; i < n && rc == 0; i++) {
        /* Read from the object, so the printed text is not parsed again. */
        if (flc_pool_place_from_json(events[i], &places[i], why, sizeof why) != 0)
            rc = flc_err_set(e, FLC_EINVAL, "pool: event %zu: %s", i, why);
        else if ((texts[i] = flc_ev_print(events[i])) == NULL)
            rc = flc_err_set(e, FLC_EINVAL, "pool: event %zu cannot be printed as JSON", i);
    }
    if (rc == 0)
        b = flc_pool_start_placed(p, (const char *const *)texts, places, n, recs, e);
    for (size_t i = 0; texts != NULL && i < n; i++)
        free(texts[i]);
    free(texts);
    free(places);
    return b;
}

size_t flc_batch_done(flc_batch_t *b)
{
    pthread_mutex_lock(&b->pool->mu);
    size_t d = b->done;
    pthread_mutex_unlock(&b->pool->mu);
    return d;
}

int flc_batch_first_failed(flc_batch_t *b, size_t *index)
{
    pthread_mutex_lock(&b->pool->mu);
    size_t f = b->first_failed;
    pthread_mutex_unlock(&b->pool->mu);
    if (f == 0)
        return 0;
    *index = f - 1;
    return 1;
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
    flc_batch_t *b = flc_pool_start_json(p, events, n, recs, e);
    if (b == NULL)
        return e != NULL && e->code != 0 ? e->code : FLC_EINVAL;
    return flc_batch_wait(b, 0);
}
