/* A job's indexes and what is found through them: the jobs (their schema
 * records, found by SCAN), a job's rounds, a round's shards, roster and
 * clients, a client's rounds. Every
 * listing of a job reads an index kept by the writers with the job's
 * credentials (mergers, drivers; keys.h); only the list of jobs scans.
 * Deleting, expiring and forgetting what they list is store_drop.c's. */
#include "cache/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void flc_strlist_free(flc_strlist_t *l)
{
    if (l == NULL)
        return;
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

/* Appends a copy of str[0..len) to l. */
int flc_strlist_add(flc_strlist_t *l, const char *str, size_t len)
{
    char **v = realloc(l->items, (l->n + 1) * sizeof *v);
    if (v == NULL)
        return FLC_ENOMEM;
    l->items = v;
    char *c = malloc(len + 1);
    if (c == NULL)
        return FLC_ENOMEM;
    memcpy(c, str, len);
    c[len] = '\0';
    l->items[l->n++] = c;
    return FLC_OK;
}

/* Copies the string elements of an array reply into a sorted list. */
static int reply_to_strlist(flc_store_t *s, const redisReply *r, flc_strlist_t *out)
{
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++)
        if (flc_strlist_add(out, r->element[i]->str, r->element[i]->len) != FLC_OK)
            return flc_err_set(&s->err, FLC_ENOMEM, "out of memory");
    if (out->n > 1)
        qsort(out->items, out->n, sizeof *out->items, cmp_str);
    return FLC_OK;
}

/* Copies an array reply of decimal numbers into a sorted malloc'd array. */
static int reply_to_u32s(flc_store_t *s, const redisReply *r, uint32_t **v, size_t *n)
{
    *v = malloc((r->elements ? r->elements : 1) * sizeof **v);
    if (*v == NULL)
        return flc_err_set(&s->err, FLC_ENOMEM, "out of memory");
    for (size_t i = 0; i < r->elements; i++)
        (*v)[i] = (uint32_t)strtoul(r->element[i]->str, NULL, 10);
    *n = r->elements;
    qsort(*v, *n, sizeof **v, cmp_u32);
    return FLC_OK;
}

int flc_store_key_command(flc_store_t *s, redisReply **r, const char *cmd, const char *key,
                       const char *a1, const char *a2)
{
    const char *argv[] = {cmd, key, a1, a2};
    return flc_store_command(s, r, a1 ? (a2 ? 4 : 3) : 2, argv, NULL);
}

int flc_store_not_found_round(flc_store_t *s, const char *job, uint32_t round, const char *what)
{
    char k_rounds[FLC_KEY_MAX];
    flc_key_job(k_rounds, job, "rounds");
    redisReply *r;
    if (flc_store_key_command(s, &r, "ZCARD", k_rounds, NULL, NULL) != FLC_OK)
        return s->err.code;
    long long n = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
    freeReplyObject(r);
    if (n == 0) {
        if (flc_store_job_check_v1(s, job) != FLC_OK)
            return s->err.code;
        return flc_err_set(&s->err, FLC_ENOTFOUND, "unknown job '%s' (no rounds stored)", job);
    }
    return flc_err_set(&s->err, FLC_ENOTFOUND, "job '%s' has no %s for round %u", job, what,
                       round);
}

/* ---- listing ----------------------------------------------------------------- */

/* Adds the jobs whose schema records one server holds (SCAN, keyless: to
 * the node the store talks to now). */
static int scan_jobs(flc_store_t *s, flc_strlist_t *out)
{
    char cursor[32] = "0";
    static const char head[] = "fl:{", tail[] = "/j}:schema";
    do {
        const char *argv[] = {"SCAN", cursor, "MATCH", FLC_KEY_SCHEMA_MATCH, "COUNT", "1000"};
        redisReply *r;
        int rc = flc_store_command(s, &r, 6, argv, NULL);
        if (rc != FLC_OK)
            return rc;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING) {
            freeReplyObject(r);
            return flc_err_set(&s->err, FLC_EPROTO, "SCAN: unexpected reply");
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        const redisReply *keys = r->element[1];
        for (size_t i = 0; rc == FLC_OK && i < keys->elements; i++) {
            const char *k = keys->element[i]->str;
            size_t kl = keys->element[i]->len, hl = sizeof head - 1, tl = sizeof tail - 1;
            if (kl <= hl + tl || memcmp(k, head, hl) != 0 || memcmp(k + kl - tl, tail, tl) != 0)
                continue;
            const char *name = k + hl;
            size_t nl = kl - hl - tl;
            if (memchr(name, '/', nl) != NULL)
                continue; /* a series (J/g, J/steps): part of its job */
            int seen = 0;
            for (size_t j = 0; j < out->n && !seen; j++)
                seen = strlen(out->items[j]) == nl && memcmp(out->items[j], name, nl) == 0;
            if (!seen && flc_strlist_add(out, name, nl) != FLC_OK)
                rc = flc_err_set(&s->err, FLC_ENOMEM, "out of memory");
        }
        freeReplyObject(r);
        if (rc != FLC_OK)
            return rc;
    } while (strcmp(cursor, "0") != 0);
    return FLC_OK;
}

int flc_store_list_jobs(flc_store_t *s, flc_strlist_t *out)
{
    flc_err_clear(&s->err);
    memset(out, 0, sizeof *out);
    int rc = flc_store_ensure(s);
    if (rc == FLC_OK && !flc_store_is_cluster(s)) {
        rc = scan_jobs(s, out);
    } else if (rc == FLC_OK) { /* every master holds some */
        unsigned m[64];
        size_t n = 0;
        rc = flc_store_cl_masters(s, m, 64, &n);
        for (size_t i = 0; rc == FLC_OK && i < n; i++)
            if ((rc = flc_store_cl_use_node(s, m[i])) == FLC_OK)
                rc = scan_jobs(s, out);
    }
    if (rc != FLC_OK) {
        flc_strlist_free(out);
        return rc;
    }
    if (out->n > 1)
        qsort(out->items, out->n, sizeof *out->items, cmp_str);
    return FLC_OK;
}

int flc_store_list_rounds(flc_store_t *s, const char *job, uint32_t **rounds, size_t *n)
{
    flc_err_clear(&s->err);
    *rounds = NULL;
    *n = 0;
    if (flc_name_check_job(job, &s->err))
        return s->err.code;
    char key[FLC_KEY_MAX];
    flc_key_job(key, job, "rounds");
    redisReply *r;
    int rc = flc_store_key_command(s, &r, "ZRANGE", key, "0", "-1");
    if (rc != FLC_OK)
        return rc;
    if (r->elements == 0) {
        freeReplyObject(r);
        if (flc_store_job_check_v1(s, job) != FLC_OK)
            return s->err.code;
        return flc_err_set(&s->err, FLC_ENOTFOUND, "unknown job '%s' (no rounds stored)", job);
    }
    rc = reply_to_u32s(s, r, rounds, n);
    freeReplyObject(r);
    return rc;
}

int flc_store_list_shards(flc_store_t *s, const char *job, uint32_t round, uint32_t **shards,
                          size_t *n)
{
    flc_err_clear(&s->err);
    *shards = NULL;
    *n = 0;
    if (flc_name_check_job(job, &s->err))
        return s->err.code;
    char key[FLC_KEY_MAX];
    flc_key_job_round(key, job, "shards", round);
    redisReply *r;
    int rc = flc_store_key_command(s, &r, "SMEMBERS", key, NULL, NULL);
    if (rc != FLC_OK)
        return rc;
    rc = reply_to_u32s(s, r, shards, n);
    freeReplyObject(r);
    return rc;
}

int flc_store_roster(flc_store_t *s, const char *job, uint32_t round, flc_strlist_t *out)
{
    memset(out, 0, sizeof *out);
    char key[FLC_KEY_MAX];
    flc_key_job_round(key, job, "roster", round);
    redisReply *r;
    int rc = flc_store_key_command(s, &r, "SMEMBERS", key, NULL, NULL);
    if (rc != FLC_OK)
        return rc;
    rc = reply_to_strlist(s, r, out);
    freeReplyObject(r);
    if (rc != FLC_OK)
        flc_strlist_free(out);
    return rc;
}

/* Marks found[i] for the clients whose update of shard `shard` exists:
 * one pipelined EXISTS per client not found yet, on the shard's node; with
 * a cold tier, one not in Redis may have been spilled there. */
static int exists_on_shard(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                           const char *const *items, size_t m, unsigned char *found)
{
    char tag[FLC_TAG_MAX];
    int rc = flc_store_shard_tag(s, job, shard, tag);
    if (rc != FLC_OK)
        return rc;
    char (*keys)[FLC_KEY_MAX] = malloc((m ? m : 1) * sizeof *keys);
    const char *(*argv)[2] = malloc((m ? m : 1) * sizeof *argv);
    const char *const **cmds = malloc((m ? m : 1) * sizeof *cmds);
    int *argc = malloc((m ? m : 1) * sizeof *argc);
    size_t *who = malloc((m ? m : 1) * sizeof *who);
    redisReply **rs = calloc(m ? m : 1, sizeof *rs);
    if (keys == NULL || argv == NULL || cmds == NULL || argc == NULL || who == NULL ||
        rs == NULL)
        rc = flc_err_set(&s->err, FLC_ENOMEM, "out of memory for %zu clients", m);
    size_t k = 0;
    for (size_t i = 0; rc == FLC_OK && i < m; i++) {
        if (found[i])
            continue;
        flc_key_update(keys[k], tag, round, items[i]);
        argv[k][0] = "EXISTS";
        argv[k][1] = keys[k];
        cmds[k] = argv[k];
        argc[k] = 2;
        who[k++] = i;
    }
    if (rc == FLC_OK && k > 0)
        rc = flc_store_pipeline(s, k, argc, cmds, rs);
    for (size_t j = 0; rc == FLC_OK && j < k; j++) {
        if (rs[j]->type == REDIS_REPLY_INTEGER && rs[j]->integer > 0) {
            found[who[j]] = 1;
        } else if (s->tier) { /* spilled: in the cold tier, not in Redis */
            flc_obj_t o;
            flc_store_obj_of(s, &o, job, round, shard, items[who[j]]);
            found[who[j]] = (unsigned char)flc_tier_has_cold(s, &o);
        }
    }
    for (size_t j = 0; rs && j < k; j++)
        if (rs[j])
            freeReplyObject(rs[j]);
    free(keys), free(argv), free(cmds), free(argc), free(who), free(rs);
    return rc;
}

int flc_store_updates_exist(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                            const char *const *clients, size_t n, unsigned char *found)
{
    flc_err_clear(&s->err);
    for (size_t i = 0; i < n; i++)
        found[i] = 0;
    if (flc_name_check_job(job, &s->err))
        return s->err.code;
    return exists_on_shard(s, job, round, shard, clients, n, found);
}

int flc_store_list_clients(flc_store_t *s, const char *job, uint32_t round, flc_strlist_t *out)
{
    memset(out, 0, sizeof *out);
    uint32_t *shards;
    size_t ns;
    int rc = flc_store_list_shards(s, job, round, &shards, &ns);
    if (rc != FLC_OK)
        return rc;
    if (ns == 0) {
        free(shards);
        return flc_store_not_found_round(s, job, round, "updates");
    }
    flc_strlist_t roster;
    rc = flc_store_roster(s, job, round, &roster);
    unsigned char *found = calloc(roster.n ? roster.n : 1, 1);
    if (rc == FLC_OK && found == NULL)
        rc = flc_err_set(&s->err, FLC_ENOMEM, "out of memory");
    /* Shard by shard, asking only for clients not found yet: usually every
     * client is on the first shard. */
    for (size_t i = 0; rc == FLC_OK && i < ns; i++)
        rc = exists_on_shard(s, job, round, shards[i], (const char *const *)roster.items,
                             roster.n, found);
    for (size_t i = 0; rc == FLC_OK && i < roster.n; i++)
        if (found[i] && flc_strlist_add(out, roster.items[i], strlen(roster.items[i])) != FLC_OK)
            rc = flc_err_set(&s->err, FLC_ENOMEM, "out of memory");
    free(found);
    free(shards);
    flc_strlist_free(&roster);
    if (rc != FLC_OK)
        flc_strlist_free(out);
    return rc; /* sorted: the roster is */
}

int flc_store_client_rounds(flc_store_t *s, const char *job, const char *client,
                            uint32_t **rounds, size_t *n)
{
    flc_err_clear(&s->err);
    *rounds = NULL;
    *n = 0;
    if (flc_name_check_job(job, &s->err) || flc_name_check(client, "client", &s->err))
        return s->err.code;
    char key[FLC_KEY_MAX];
    flc_key_client_rounds(key, job, client);
    redisReply *r;
    int rc = flc_store_key_command(s, &r, "ZRANGE", key, "0", "-1");
    if (rc != FLC_OK)
        return rc;
    if (r->elements == 0) {
        freeReplyObject(r);
        if (flc_store_job_check_v1(s, job) != FLC_OK)
            return s->err.code;
        return flc_err_set(&s->err, FLC_ENOTFOUND, "job '%s' has no history of client '%s'",
                           job, client);
    }
    rc = reply_to_u32s(s, r, rounds, n);
    freeReplyObject(r);
    return rc;
}
