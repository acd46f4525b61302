/* The cold tier's counters: this process's own (flc_store_tier_stats), and
 * the ones every process adds into the hash fl:tier in Redis, so that
 * `flcache store stats` sees the whole deployment. A flush sends only what
 * changed since the last one, as HINCRBY deltas. */
#include "cache/cold_tier_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void flc_store_tier_stats(const flc_store_t *s, flc_tier_stats_t *st)
{
    memset(st, 0, sizeof *st);
    if (s->tier == NULL)
        return;
    *st = s->tier->st;
    st->maxmemory = s->tier->maxmem;
    st->used_estimate = s->tier->est_used;
    if (s->tier->pol && s->tier->pol->ops->bytes)
        s->tier->pol->ops->bytes(s->tier->pol, &st->hot_bytes, &st->cold_bytes);
}

#define NCOUNTERS (8 + 2 * FLC_QC_COUNT)

/* The per-class counter names ("hits:round"). They live in the caller's
 * frame, not in statics: stores in several threads flush at once (in-process
 * clients, mergers), and a shared buffer rewritten by one while another reads
 * it is a data race (ThreadSanitizer over test_sim_cold). */
typedef struct qc_names {
    char hits[FLC_QC_COUNT][24], misses[FLC_QC_COUNT][24];
} qc_names_t;

/* Names and addresses of the counters kept in fl:tier; the class names are
 * written into *qn, which must outlive names. */
static void counters(flc_tier_stats_t *st, qc_names_t *qn, const char **names, uint64_t **vals)
{
    const char *fixed[] = {"spills", "spill_bytes", "fetches", "fetch_bytes",
                           "rewarms", "prefetches", "spill_skipped", "cold_bytes"};
    uint64_t *fv[] = {&st->spills, &st->spill_bytes, &st->fetches, &st->fetch_bytes,
                      &st->rewarms, &st->prefetches, &st->spill_skipped, &st->cold_bytes};
    for (int i = 0; i < 8; i++)
        names[i] = fixed[i], vals[i] = fv[i];
    for (int q = 0; q < FLC_QC_COUNT; q++) {
        snprintf(qn->hits[q], sizeof qn->hits[q], "hits:%s", flc_qclass_name(q));
        snprintf(qn->misses[q], sizeof qn->misses[q], "misses:%s", flc_qclass_name(q));
        names[8 + 2 * q] = qn->hits[q], vals[8 + 2 * q] = &st->hits[q];
        names[9 + 2 * q] = qn->misses[q], vals[9 + 2 * q] = &st->misses[q];
    }
}

int flc_store_tier_flush(flc_store_t *s)
{
    struct flc_tier *t = s->tier;
    if (t == NULL)
        return FLC_OK;
    /* cold_bytes is shared as a running sum of what spills added. */
    t->st.cold_bytes = t->st.spill_bytes;
    qc_names_t qn;
    const char *names[NCOUNTERS];
    uint64_t *now[NCOUNTERS], *then[NCOUNTERS];
    counters(&t->st, &qn, names, now);
    counters(&t->flushed, &qn, names, then);
    int rc = FLC_OK;
    for (int i = 0; i < NCOUNTERS && rc == FLC_OK; i++) {
        uint64_t d = *now[i] - *then[i];
        if (d == 0)
            continue;
        redisReply *r;
        char v[24];
        snprintf(v, sizeof v, "%llu", (unsigned long long)d);
        rc = flc_store_commandf(s, &r, "HINCRBY fl:tier %s %s", names[i], v);
        if (rc == FLC_OK) {
            freeReplyObject(r);
            *then[i] = *now[i];
        }
    }
    return rc;
}

int flc_store_tier_read(flc_store_t *s, flc_tier_stats_t *st)
{
    memset(st, 0, sizeof *st);
    redisReply *r;
    int rc = flc_store_commandf(s, &r, "HGETALL fl:tier");
    if (rc != FLC_OK)
        return rc;
    qc_names_t qn;
    const char *names[NCOUNTERS];
    uint64_t *vals[NCOUNTERS];
    counters(st, &qn, names, vals);
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2)
        for (int k = 0; k < NCOUNTERS; k++)
            if (strcmp(r->element[i]->str, names[k]) == 0)
                *vals[k] = strtoull(r->element[i + 1]->str, NULL, 10);
    freeReplyObject(r);
    return FLC_OK;
}
