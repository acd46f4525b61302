/* What the store's cold tier (cold_tier.c) does with a whole round: at its
 * close the policy may prefetch cold objects back into Redis within the
 * memory budget; a round's objects are tracked (told to the policy with
 * their sizes) or forgotten when the round is deleted. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cache/cold_tier_internal.h"

int flc_store_round_closed(flc_store_t *s, const char *job, uint32_t round)
{
    struct flc_tier *t = s->tier;
    if (t == NULL || t->pol == NULL)
        return FLC_OK;
    t->pol->ops->on_round_closed(t->pol, job, round);
    uint64_t budget = UINT64_MAX;
    if (t->maxmem) {
        flc_tier_info_used(s, &t->est_used);
        budget = t->low > t->est_used ? t->low - t->est_used : 0;
    }
    if (budget == 0)
        return FLC_OK;
    flc_obj_t v[MAX_VICTIMS];
    size_t n = t->pol->ops->prefetch(t->pol, budget, v, MAX_VICTIMS);
    t->busy++;
    int rc = FLC_OK;
    for (size_t i = 0; i < n && rc == FLC_OK; i++) {
        char key[FLC_KEY_MAX];
        flc_obj_key(&v[i], key);
        uint8_t *buf;
        size_t len;
        int crc = flc_cold_get(t->cold, key, &buf, &len);
        if (crc != FLC_OK)
            continue; /* a prefetch is a hint: a missing object is not an error */
        int w = 0;
        rc = flc_tier_write_raw(s, key, buf, len, &w);
        free(buf);
        t->st.fetches++;
        t->st.fetch_bytes += len;
        if (rc == FLC_OK) {
            if (w) {
                t->st.prefetches++;
                t->est_used += len + VALUE_OVERHEAD(len);
            }
            t->pol->ops->on_moved(t->pol, &v[i], 0);
        }
    }
    t->busy--;
    return rc;
}

int flc_tier_has_cold(flc_store_t *s, const flc_obj_t *o)
{
    struct flc_tier *t = s->tier;
    if (t == NULL || t->cold == NULL)
        return 0;
    char key[FLC_KEY_MAX], where[1200];
    flc_obj_key(o, key);
    if (flc_cold_is_local(t->cold)) { /* a file: its presence is enough */
        struct stat st;
        return flc_cold_locate(t->cold, key, where, sizeof where) == FLC_OK &&
               stat(where, &st) == 0;
    }
    uint8_t *buf = NULL; /* S3: no HEAD in the cold tier's interface, so a read */
    size_t len = 0;
    int rc = flc_cold_get(t->cold, key, &buf, &len);
    free(buf);
    return rc == FLC_OK;
}

/* Calls fn for every update and merged shard of a round, from the round's
 * indexes (its shards, and its roster's clients on each). */
static int for_round_objects(flc_store_t *s, const char *job, uint32_t round,
                             int (*fn)(flc_store_t *, flc_obj_t *))
{
    uint32_t *shards = NULL, S = 0;
    size_t ns = 0;
    flc_strlist_t roster = {0};
    int rc = flc_store_list_shards(s, job, round, &shards, &ns);
    if (rc == FLC_OK && ns > 0)
        rc = flc_store_job_S(s, job, &S);
    if (rc == FLC_OK && ns > 0)
        rc = flc_store_roster(s, job, round, &roster);
    for (size_t i = 0; i < ns && rc == FLC_OK; i++) {
        for (size_t j = 0; j <= roster.n && rc == FLC_OK; j++) {
            flc_obj_t o = {.round = round, .shard = shards[i], .num_shards = S};
            snprintf(o.job, sizeof o.job, "%s", job);
            o.kind = j < roster.n ? FLC_OBJ_UPDATE : FLC_OBJ_MERGED;
            if (j < roster.n)
                snprintf(o.client, sizeof o.client, "%s", roster.items[j]);
            rc = fn(s, &o);
        }
    }
    flc_strlist_free(&roster);
    free(shards);
    return rc;
}

static int track_one(flc_store_t *s, flc_obj_t *o)
{
    char key[FLC_KEY_MAX];
    flc_obj_key(o, key);
    redisReply *m;
    int rc = flc_store_commandf(s, &m, "MEMORY USAGE %s SAMPLES 0", key);
    if (rc != FLC_OK)
        return rc;
    if (m->type == REDIS_REPLY_INTEGER) {
        o->bytes = (uint64_t)m->integer;
        s->tier->pol->ops->on_put(s->tier->pol, o);
    }
    freeReplyObject(m);
    return FLC_OK;
}

int flc_store_track_round(flc_store_t *s, const char *job, uint32_t round)
{
    if (s->tier == NULL || s->tier->pol == NULL)
        return FLC_OK;
    return for_round_objects(s, job, round, track_one);
}

static int delete_one(flc_store_t *s, flc_obj_t *o)
{
    flc_tier_deleted(s, o);
    return FLC_OK;
}

int flc_tier_delete_round(flc_store_t *s, const char *job, uint32_t round)
{
    int rc = for_round_objects(s, job, round, delete_one);
    return rc == FLC_ENOTFOUND ? FLC_OK : rc;
}
