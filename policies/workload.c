/* The workload policy: learns what to keep hot from the mix of query classes.
 *
 * What it learns, from every tagged read (flc_store_set_query_class):
 *  - the share of each query class, decayed (recent reads weigh more);
 *  - client heat: each new client-class query (a run of reads of one
 *    client) adds 1 to that client's heat and decays every other client's
 *    by 0.85, so a client read twice in the last few client queries is
 *    "hot" (heat >= 1.5) and a one-off history scan is not.
 * What it does with it:
 *  - victims: merged shards last (history and merges need them, and they are
 *    small); the newest rounds' updates are kept in proportion to the share
 *    of round queries (clustering, outliers, similarity read all clients of
 *    the latest round); hot clients' updates in proportion to the share of
 *    client queries; everything else goes first, least recent first;
 *  - re-warm on a miss only what will be read again: a hot client's update,
 *    the newest rounds, merged shards. One-off reads of an old round or a
 *    cold client are served from the cold tier without evicting anything;
 *  - prefetch when a round closes: the hot clients' updates that are cold. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policies/pol_table.h"

#define TIER 1e15
#define MAX_HEAT 256
#define HOT_HEAT 1.5
#define HEAT_DECAY 0.85
#define SHARE_DECAY 0.995

typedef struct heat {
    char client[FLC_NAME_MAX + 1];
    double h;
} heat_t;

typedef struct wl {
    double w[FLC_QC_COUNT];
    double agg_span; /* how many recent rounds aggregate queries reach back */
    heat_t heat[MAX_HEAT];
    int nheat;
    char last_client[FLC_NAME_MAX + 1];
} wl_t;

static double heat_of(const wl_t *w, const char *client)
{
    for (int i = 0; i < w->nheat; i++)
        if (strcmp(w->heat[i].client, client) == 0)
            return w->heat[i].h;
    return 0;
}

static void heat_add(wl_t *w, const char *client)
{
    int at = -1, coldest = 0;
    for (int i = 0; i < w->nheat; i++) {
        w->heat[i].h *= HEAT_DECAY;
        if (strcmp(w->heat[i].client, client) == 0)
            at = i;
        if (w->heat[i].h < w->heat[coldest].h)
            coldest = i;
    }
    if (at < 0) {
        at = w->nheat < MAX_HEAT ? w->nheat++ : coldest;
        snprintf(w->heat[at].client, sizeof w->heat[at].client, "%s", client);
        w->heat[at].h = 0;
    }
    w->heat[at].h += 1;
}

/* The newest round written: the one round queries read once it closes.
 * (Not the one before as well: two rounds of updates can fill the cache.) */
static int latest(pol_t *p, const pol_entry_t *e)
{
    pol_job_t *j = pol_job(p, e->o.job);
    return j == NULL || e->o.round >= j->max_round;
}

static double share(const wl_t *w, int qc)
{
    double sum = 0;
    for (int i = 0; i < FLC_QC_COUNT; i++)
        sum += w->w[i];
    return sum > 0 ? w->w[qc] / sum : 0;
}

/* What keeping e hot is worth, from the learned mix (higher stays). */
static double value(pol_t *p, const pol_entry_t *e)
{
    wl_t *w = p->ext;
    pol_job_t *j = pol_job(p, e->o.job);
    uint32_t newest = j ? j->max_round : e->o.round;
    if (e->o.kind == FLC_OBJ_MERGED) {
        /* Merged shards within the reach of recent history queries are read
         * once per round; older ones only by training (rarely). */
        int recent = (double)e->o.round + w->agg_span > (double)newest;
        return recent ? 2 + 2 * share(w, FLC_QC_AGGREGATE) : 0.75;
    }
    double v = 0;
    if (latest(p, e))
        v += 1 + 3 * share(w, FLC_QC_ROUND);
    double h = heat_of(w, e->o.client);
    if (h >= HOT_HEAT)
        v += 1 + share(w, FLC_QC_CLIENT) * (h < 3 ? h : 3);
    return v;
}

static double wl_score(pol_t *p, const pol_entry_t *e)
{
    return value(p, e) * TIER + (double)e->tick;
}

/* Re-warm a miss only when it is worth more than the least valuable hot
 * object it would push out: a client-history scan longer than the room left
 * would otherwise evict, one by one, the very updates it reads next (the
 * cyclic-scan trap of LRU). */
static int wl_rewarm(pol_t *p, const pol_entry_t *e, int qc)
{
    double v = value(p, e);
    if (v <= 0)
        return 0;
    double least = -1;
    for (size_t i = 0; i < p->n; i++) {
        const pol_entry_t *x = &p->e[i];
        if (x->live && x->hot && x != e) {
            double xv = value(p, x);
            if (least < 0 || xv < least)
                least = xv;
        }
    }
    return least < 0 || v > least + 0.25;
}

static void wl_learn(pol_t *p, const pol_entry_t *e, int qc, int hit)
{
    wl_t *w = p->ext;
    for (int i = 0; i < FLC_QC_COUNT; i++)
        w->w[i] *= SHARE_DECAY;
    w->w[qc] += 1;
    if (qc == FLC_QC_AGGREGATE && e->o.kind == FLC_OBJ_MERGED) {
        pol_job_t *j = pol_job(p, e->o.job);
        double back = j && j->max_round >= e->o.round ? j->max_round - e->o.round + 1.0 : 1.0;
        w->agg_span = back > w->agg_span ? back : w->agg_span * 0.999;
    }
    if (qc == FLC_QC_CLIENT && e->o.kind == FLC_OBJ_UPDATE &&
        strcmp(w->last_client, e->o.client) != 0) {
        heat_add(w, e->o.client);
        snprintf(w->last_client, sizeof w->last_client, "%s", e->o.client);
    } else if (qc != FLC_QC_CLIENT) {
        w->last_client[0] = '\0'; /* the next client read starts a new query */
    }
}

static int cmp_heat(const void *a, const void *b)
{
    double x = ((const heat_t *)a)->h, y = ((const heat_t *)b)->h;
    return (x < y) - (x > y);
}

static size_t wl_prefetch(pol_t *p, uint64_t budget, flc_obj_t *out, size_t max)
{
    wl_t *w = p->ext;
    heat_t hot[MAX_HEAT];
    int nh = 0;
    for (int i = 0; i < w->nheat; i++)
        if (w->heat[i].h >= HOT_HEAT)
            hot[nh++] = w->heat[i];
    qsort(hot, (size_t)nh, sizeof *hot, cmp_heat);
    size_t k = 0;
    uint64_t used = 0;
    for (int c = 0; c < nh && k < max; c++)
        for (size_t i = 0; i < p->n && k < max; i++) {
            pol_entry_t *e = &p->e[i];
            if (!e->live || e->hot || e->o.kind != FLC_OBJ_UPDATE ||
                strcmp(e->o.client, hot[c].client) != 0)
                continue;
            if (used + e->o.bytes > budget)
                return k;
            used += e->o.bytes;
            out[k++] = e->o;
        }
    return k;
}

flc_policy_t *flc_pol_workload_new(void)
{
    pol_hooks_t h = {.score = wl_score, .rewarm = wl_rewarm, .learn = wl_learn,
                     .prefetch = wl_prefetch};
    pol_t *p = pol_create("workload", &h);
    if (p == NULL)
        return NULL;
    p->ext = calloc(1, sizeof(wl_t));
    if (p->ext == NULL) {
        flc_pol_free(&p->pub);
        return NULL;
    }
    return &p->pub;
}
