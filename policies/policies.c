/* The lru and window:K policies, and flc_pol_new (policy by spec).
 *
 * lru: score = last access, every miss is re-warmed: the textbook baseline,
 * which a scan over a long client history (or an old round) flushes.
 *
 * window:K: scores put merged shards above the updates of the last K rounds,
 * and those above older updates, which go oldest round first (LRU within a
 * round). A miss is re-warmed only inside the window, so reading an old
 * round does not push the current rounds out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policies/pol_table.h"

/* Scores are compared as doubles; ticks stay far below 2^50. */
#define TIER 1e15

static double lru_score(pol_t *p, const pol_entry_t *e)
{
    return (double)e->tick;
}

static int lru_rewarm(pol_t *p, const pol_entry_t *e, int qc)
{
    return 1;
}

flc_policy_t *flc_pol_lru_new(void)
{
    pol_hooks_t h = {.score = lru_score, .rewarm = lru_rewarm};
    pol_t *p = pol_create("lru", &h);
    return p ? &p->pub : NULL;
}

static int in_window(pol_t *p, const pol_entry_t *e)
{
    pol_job_t *j = pol_job(p, e->o.job);
    uint32_t newest = j ? j->max_round : e->o.round;
    return e->o.round + p->window_k > newest;
}

static double window_score(pol_t *p, const pol_entry_t *e)
{
    if (e->o.kind == FLC_OBJ_MERGED)
        return 3 * TIER + (double)e->tick;
    if (in_window(p, e))
        return 2 * TIER + (double)e->tick;
    return (double)e->o.round * 1e9 + (double)e->tick;
}

static int window_rewarm(pol_t *p, const pol_entry_t *e, int qc)
{
    return e->o.kind == FLC_OBJ_MERGED || in_window(p, e);
}

flc_policy_t *flc_pol_window_new(unsigned k)
{
    char spec[32];
    snprintf(spec, sizeof spec, "window:%u", k ? k : 1);
    pol_hooks_t h = {.score = window_score, .rewarm = window_rewarm};
    pol_t *p = pol_create(spec, &h);
    if (p == NULL)
        return NULL;
    p->window_k = k ? k : 1;
    return &p->pub;
}

flc_policy_t *flc_pol_new(const char *spec, flc_err_t *err)
{
    flc_policy_t *p = NULL;
    if (spec && strcmp(spec, "lru") == 0) {
        p = flc_pol_lru_new();
    } else if (spec && strcmp(spec, "workload") == 0) {
        p = flc_pol_workload_new();
    } else if (spec && strncmp(spec, "window:", 7) == 0) {
        char *end;
        unsigned long k = strtoul(spec + 7, &end, 10);
        if (*end != '\0' || k == 0 || k > 1000000) {
            flc_err_set(err, FLC_EINVAL, "policy '%s': window size K must be 1..1000000", spec);
            return NULL;
        }
        p = flc_pol_window_new((unsigned)k);
    } else {
        flc_err_set(err, FLC_EINVAL, "unknown policy '%s' (expected lru, window:K or workload)",
                    spec ? spec : "(null)");
        return NULL;
    }
    if (p == NULL)
        flc_err_set(err, FLC_ENOMEM, "out of memory");
    return p;
}
