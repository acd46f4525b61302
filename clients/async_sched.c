/* The simulated clock of asynchronous FL: which client trains on which
 * version, and when each arrives (clients/async.h). Nothing here trains or
 * touches the cache; the schedule depends only on the seed, the clients'
 * compute times and the straggler distribution, so the driver can decide a
 * whole buffer before running it, and two runs of a seed agree exactly.
 *
 * A client stays busy from its start until the buffer it arrived in is
 * applied, so no client is in one buffer twice (its update key is per
 * version). When every client is busy, a freed slot waits for the next
 * step. Ties in arrival time go to the client started first. */
#include <stdlib.h>
#include <string.h>

#include "clients/async.h"
#include "ml/rng.h"

typedef struct fly {
    uint32_t client, base;
    double start, end, delay;
    uint64_t seq;
} fly_t;

struct flc_async_sched {
    int barrier;
    size_t C, K;
    int max_stale;
    double *base_ms;
    uint32_t *eligible;
    size_t neligible, nbusy;
    unsigned char *busy;          /* per client index */
    flc_sim_straggler_t st;
    flc_rng_t pick, delay;
    fly_t *fly;                   /* in flight, at most C */
    size_t nfly, idle;
    uint32_t version;
    double now;
    uint64_t seq;
    int started;
    flc_async_arrival_t *out;     /* the last buffer */
    size_t nout, capout;
};

int flc_async_sched_new(const flc_async_cfg_t *a, int barrier, const double *base_ms,
                        size_t nclients, const uint32_t *eligible, size_t neligible,
                        const flc_sim_straggler_t *straggler, uint64_t seed,
                        flc_async_sched_t **out, flc_err_t *e)
{
    *out = NULL;
    size_t K = a->buffer, C = barrier ? a->buffer : a->concurrency;
    if (K == 0 || C == 0 || K > neligible || C > neligible)
        return flc_err_set(e, FLC_EINVAL, "buffer %zu and concurrency %zu must be in 1..%zu "
                           "(the clients with data)", K, C, neligible);
    flc_async_sched_t *s = calloc(1, sizeof *s);
    if (s == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    s->barrier = barrier;
    s->K = K, s->C = C;
    s->max_stale = a->max_staleness;
    s->base_ms = malloc((nclients ? nclients : 1) * sizeof *s->base_ms);
    s->busy = calloc(nclients ? nclients : 1, 1);
    s->eligible = malloc(neligible * sizeof *s->eligible);
    s->fly = calloc(C, sizeof *s->fly);
    if (s->base_ms == NULL || s->busy == NULL || s->eligible == NULL || s->fly == NULL) {
        flc_async_sched_free(s);
        return flc_err_set(e, FLC_ENOMEM, "out of memory for %zu clients", nclients);
    }
    memcpy(s->base_ms, base_ms, nclients * sizeof *s->base_ms);
    memcpy(s->eligible, eligible, neligible * sizeof *s->eligible);
    s->neligible = neligible;
    s->st = *straggler;
    flc_rng_seed2(&s->pick, seed, 0xA5A1C0000ull);
    flc_rng_seed2(&s->delay, seed, 0xA5DE1A70ull);
    *out = s;
    return FLC_OK;
}

void flc_async_sched_free(flc_async_sched_t *s)
{
    if (s == NULL)
        return;
    free(s->base_ms);
    free(s->busy);
    free(s->eligible);
    free(s->fly);
    free(s->out);
    free(s);
}

/* Starts a client at time t on the current version: uniform among the
 * eligible clients not busy (rejection draws from the seeded stream), or
 * one more idle slot when all are busy. */
static void start_one(flc_async_sched_t *s, double t)
{
    if (s->nbusy >= s->neligible) {
        s->idle++;
        return;
    }
    uint32_t c;
    do
        c = s->eligible[flc_rng_below(&s->pick, s->neligible)];
    while (s->busy[c]);
    s->busy[c] = 1;
    s->nbusy++;
    double d = flc_sim_straggler_draw(&s->st, &s->delay);
    s->fly[s->nfly++] = (fly_t){.client = c, .base = s->version, .start = t, .delay = d,
                                .end = t + s->base_ms[c] + d, .seq = s->seq++};
}

/* The version is applied: the buffer's clients are free again, and the
 * slots that waited start now. */
static void step(flc_async_sched_t *s)
{
    s->version++;
    for (size_t i = 0; i < s->nout; i++)
        if (s->busy[s->out[i].client]) {
            s->busy[s->out[i].client] = 0;
            s->nbusy--;
        }
    size_t idle = s->idle;
    s->idle = 0;
    for (size_t i = 0; i < idle; i++)
        start_one(s, s->now);
}

int flc_async_sched_next(flc_async_sched_t *s, const flc_async_arrival_t **arr, size_t *n,
                         double *t_ms, flc_err_t *e)
{
    if (!s->started && !s->barrier)
        for (size_t i = 0; i < s->C; i++)
            start_one(s, 0);
    s->started = 1;
    if (s->barrier)
        for (size_t i = 0; i < s->K; i++)
            start_one(s, s->now);
    s->nout = 0;
    size_t accepted = 0;
    while (accepted < s->K && s->nfly > 0) {
        size_t j = 0;
        for (size_t i = 1; i < s->nfly; i++)
            if (s->fly[i].end < s->fly[j].end ||
                (s->fly[i].end == s->fly[j].end && s->fly[i].seq < s->fly[j].seq))
                j = i;
        fly_t f = s->fly[j];
        s->fly[j] = s->fly[--s->nfly];
        s->now = f.end;
        if (s->nout == s->capout) {
            size_t cap = s->capout ? 2 * s->capout : 2 * s->K + 8;
            flc_async_arrival_t *p = realloc(s->out, cap * sizeof *p);
            if (p == NULL)
                return flc_err_set(e, FLC_ENOMEM, "out of memory for %zu arrivals", cap);
            s->out = p, s->capout = cap;
        }
        uint32_t tau = s->version - f.base;
        int refused = !s->barrier && s->max_stale >= 0 && tau > (uint32_t)s->max_stale;
        s->out[s->nout++] = (flc_async_arrival_t){.client = f.client, .base = f.base,
                                                  .staleness = tau, .refused = refused,
                                                  .start_ms = f.start, .end_ms = f.end,
                                                  .delay_ms = f.delay};
        accepted += !refused;
        if (s->barrier)
            continue;
        if (accepted == s->K)
            step(s); /* the replacement of the K-th starts on the new version */
        start_one(s, s->now);
    }
    /* Barrier: the round ends with its last client. Otherwise only when
     * every client was busy and the in-flight ones ran out before K were
     * accepted (tiny N, many refused): the step takes what arrived. */
    if (s->barrier || accepted < s->K)
        step(s);
    *arr = s->out;
    *n = s->nout;
    *t_ms = s->now;
    return FLC_OK;
}
