/* The object table shared by every policy and the generic halves of the
 * policy interface: bookkeeping of hot/cold objects and their sizes, and
 * choose_victims as "sort the hot objects by the policy's score, take the
 * lowest until enough bytes". Tables hold thousands of objects, and victims
 * are chosen in batches only when Redis nears its limit, so a scan and a
 * sort per batch cost far less than the spills they order. */
#include "policies/pol_table.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t obj_hash(const flc_obj_t *o)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *c = o->job; *c; c++)
        h = (h ^ (uint8_t)*c) * 1099511628211ull;
    for (const char *c = o->client; *c; c++)
        h = (h ^ (uint8_t)*c) * 1099511628211ull;
    h = (h ^ o->round) * 1099511628211ull;
    h = (h ^ o->shard) * 1099511628211ull;
    h = (h ^ (uint64_t)o->kind) * 1099511628211ull;
    return h ^ (h >> 29);
}

static int obj_eq(const flc_obj_t *a, const flc_obj_t *b)
{
    return a->round == b->round && a->shard == b->shard && a->kind == b->kind &&
           strcmp(a->client, b->client) == 0 && strcmp(a->job, b->job) == 0;
}

static int reindex(pol_t *p, size_t cap)
{
    uint32_t *idx = calloc(cap, sizeof *idx);
    if (idx == NULL)
        return -1;
    for (size_t i = 0; i < p->n; i++) {
        size_t h = obj_hash(&p->e[i].o) & (cap - 1);
        while (idx[h])
            h = (h + 1) & (cap - 1);
        idx[h] = (uint32_t)i + 1;
    }
    free(p->idx);
    p->idx = idx;
    p->idx_cap = cap;
    return 0;
}

pol_entry_t *pol_find(pol_t *p, const flc_obj_t *o, int create)
{
    if (p->idx_cap) {
        size_t h = obj_hash(o) & (p->idx_cap - 1);
        while (p->idx[h]) {
            pol_entry_t *e = &p->e[p->idx[h] - 1];
            if (obj_eq(&e->o, o))
                return e;
            h = (h + 1) & (p->idx_cap - 1);
        }
    }
    if (!create)
        return NULL;
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 256;
        pol_entry_t *v = realloc(p->e, cap * sizeof *v);
        if (v == NULL)
            return NULL;
        p->e = v;
        p->cap = cap;
    }
    pol_entry_t *e = &p->e[p->n++];
    memset(e, 0, sizeof *e);
    e->o = *o;
    e->o.bytes = 0;
    if (p->n * 2 > p->idx_cap) {
        if (reindex(p, p->idx_cap ? p->idx_cap * 2 : 512) != 0) {
            p->n--;
            return NULL;
        }
    } else {
        size_t h = obj_hash(o) & (p->idx_cap - 1);
        while (p->idx[h])
            h = (h + 1) & (p->idx_cap - 1);
        p->idx[h] = (uint32_t)p->n;
    }
    return e;
}

pol_job_t *pol_job(pol_t *p, const char *job)
{
    for (int i = 0; i < p->njobs; i++)
        if (strcmp(p->jobs[i].name, job) == 0)
            return &p->jobs[i];
    if (p->njobs == POL_MAX_JOBS)
        return NULL;
    pol_job_t *j = &p->jobs[p->njobs++];
    memset(j, 0, sizeof *j);
    snprintf(j->name, sizeof j->name, "%s", job);
    return j;
}

/* Moves e to hot (1), cold (0) or deleted (-1), keeping the byte sums. */
static void set_state(pol_t *p, pol_entry_t *e, int state, uint64_t bytes)
{
    if (e->live)
        *(e->hot ? &p->hot_bytes : &p->cold_bytes) -= e->o.bytes;
    if (bytes)
        e->o.bytes = bytes;
    e->live = state >= 0;
    e->hot = state == 1;
    if (e->live)
        *(e->hot ? &p->hot_bytes : &p->cold_bytes) += e->o.bytes;
}

/* ---- the generic ops ------------------------------------------------------- */

static void g_on_put(flc_policy_t *pub, const flc_obj_t *o)
{
    pol_t *p = (pol_t *)pub;
    pol_entry_t *e = pol_find(p, o, 1);
    if (e == NULL)
        return;
    set_state(p, e, 1, o->bytes);
    e->tick = ++p->tick;
    pol_job_t *j = pol_job(p, o->job);
    if (j && o->round > j->max_round)
        j->max_round = o->round;
}

static int g_on_get(flc_policy_t *pub, const flc_obj_t *o, int qc, int hit)
{
    pol_t *p = (pol_t *)pub;
    pol_entry_t *e = pol_find(p, o, 1);
    if (e == NULL)
        return 0;
    if (hit && !(e->live && e->hot))
        set_state(p, e, 1, o->bytes); /* written by another process */
    else if (!hit && !(e->live && !e->hot))
        set_state(p, e, 0, o->bytes);
    e->tick = ++p->tick;
    pol_job_t *j = pol_job(p, o->job);
    if (j && o->round > j->max_round)
        j->max_round = o->round;
    if (p->hooks.learn)
        p->hooks.learn(p, e, qc, hit);
    return hit ? 0 : p->hooks.rewarm(p, e, qc);
}

static void g_on_round_closed(flc_policy_t *pub, const char *job, uint32_t round)
{
    pol_job_t *j = pol_job((pol_t *)pub, job);
    if (j && (!j->has_closed || round > j->closed_round)) {
        j->closed_round = round;
        j->has_closed = 1;
    }
}

typedef struct cand {
    double score;
    size_t i;
} cand_t;

static int cmp_cand(const void *a, const void *b)
{
    const cand_t *x = a, *y = b;
    if (x->score != y->score)
        return x->score < y->score ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

static size_t g_choose_victims(flc_policy_t *pub, uint64_t need, flc_obj_t *out, size_t max)
{
    pol_t *p = (pol_t *)pub;
    cand_t *c = malloc((p->n ? p->n : 1) * sizeof *c);
    if (c == NULL)
        return 0;
    size_t nc = 0;
    for (size_t i = 0; i < p->n; i++)
        if (p->e[i].live && p->e[i].hot)
            c[nc++] = (cand_t){p->hooks.score(p, &p->e[i]), i};
    qsort(c, nc, sizeof *c, cmp_cand);
    size_t k = 0;
    uint64_t got = 0;
    for (; k < nc && k < max && got < need; k++) {
        out[k] = p->e[c[k].i].o;
        got += out[k].bytes;
    }
    free(c);
    return k;
}

static size_t g_prefetch(flc_policy_t *pub, uint64_t budget, flc_obj_t *out, size_t max)
{
    pol_t *p = (pol_t *)pub;
    return p->hooks.prefetch ? p->hooks.prefetch(p, budget, out, max) : 0;
}

static void g_on_moved(flc_policy_t *pub, const flc_obj_t *o, int cold)
{
    pol_t *p = (pol_t *)pub;
    pol_entry_t *e = pol_find(p, o, cold >= 0);
    if (e == NULL)
        return;
    set_state(p, e, cold < 0 ? -1 : cold ? 0 : 1, o->bytes);
}

static void g_bytes(const flc_policy_t *pub, uint64_t *hot, uint64_t *cold)
{
    const pol_t *p = (const pol_t *)pub;
    *hot = p->hot_bytes;
    *cold = p->cold_bytes;
}

static void g_free(flc_policy_t *pub)
{
    pol_t *p = (pol_t *)pub;
    free(p->e);
    free(p->idx);
    free(p->ext);
    free(p);
}

static const flc_policy_ops_t generic_ops = {
    .name = "generic",
    .on_put = g_on_put,
    .on_get = g_on_get,
    .on_round_closed = g_on_round_closed,
    .choose_victims = g_choose_victims,
    .prefetch = g_prefetch,
    .on_moved = g_on_moved,
    .bytes = g_bytes,
    .free = g_free,
};

pol_t *pol_create(const char *spec, const pol_hooks_t *hooks)
{
    pol_t *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->pub.ops = &generic_ops;
    p->pub.state = p;
    snprintf(p->pub.spec, sizeof p->pub.spec, "%s", spec);
    p->hooks = *hooks;
    return p;
}

void flc_pol_free(flc_policy_t *p)
{
    if (p)
        p->ops->free(p);
}

int flc_pol_is_hot(const flc_policy_t *pub, const flc_obj_t *o)
{
    pol_entry_t *e = pol_find((pol_t *)pub, o, 0);
    return e == NULL || !e->live ? -1 : e->hot;
}

size_t flc_pol_count(const flc_policy_t *pub)
{
    const pol_t *p = (const pol_t *)pub;
    size_t n = 0;
    for (size_t i = 0; i < p->n; i++)
        n += p->e[i].live;
    return n;
}
