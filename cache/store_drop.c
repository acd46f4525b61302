/* Deleting, expiring and forgetting what a job's indexes list
 * (store_index.c): every key of a round (its updates, arrivals, merged
 * shards, records, metadata) found through the indexes, then one pipelined
 * command per key; and a job's own indexes. Nothing is found by scanning,
 * so this works with a job's credentials alone and on a Redis Cluster. */
#include "cache/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every key of a round into *keys (from the indexes), and its roster into
 * *clients (whose histories name the round). */
static int round_keys(flc_store_t *s, const char *job, uint32_t round, flc_strlist_t *keys,
                      flc_strlist_t *clients)
{
    memset(keys, 0, sizeof *keys);
    memset(clients, 0, sizeof *clients);
    uint32_t *shards;
    size_t ns;
    int rc = flc_store_list_shards(s, job, round, &shards, &ns);
    if (rc == FLC_OK)
        rc = flc_store_roster(s, job, round, clients);
    char key[FLC_KEY_MAX], tag[FLC_TAG_MAX];
    /* (no :ready / :go: the start barrier has its own deletion) */
    static const char *suffixes[] = {"agg",   "done",  "closed", "krumready",
                                     "gram",  "evsum", "evres",  "merger"};
    for (size_t i = 0; rc == FLC_OK && i < ns; i++) {
        if ((rc = flc_store_shard_tag(s, job, shards[i], tag)) != FLC_OK)
            break;
        for (size_t j = 0; rc == FLC_OK && j < clients->n; j++) {
            /* (tmp keys of half-written values expire on their own) */
            flc_key_update(key, tag, round, clients->items[j]);
            rc = flc_strlist_add(keys, key, strlen(key));
            flc_key_arrival(key, tag, round, clients->items[j]);
            rc = rc ? rc : flc_strlist_add(keys, key, strlen(key));
        }
        for (size_t k = 0; rc == FLC_OK && k < sizeof suffixes / sizeof *suffixes; k++) {
            flc_key_shard(key, tag, round, suffixes[k]);
            rc = flc_strlist_add(keys, key, strlen(key));
        }
    }
    for (size_t i = 0; rc == FLC_OK && i < ns; i++) { /* per-shard records */
        static const char *sr[] = {"merges", "krum", "where"};
        for (size_t k = 0; rc == FLC_OK && k < 3; k++) {
            flc_key_job_shard(key, job, shards[i], sr[k], round);
            rc = flc_strlist_add(keys, key, strlen(key));
        }
    }
    free(shards);
    static const char *jr[] = {"meta", "shards", "roster"};
    for (size_t k = 0; rc == FLC_OK && k < sizeof jr / sizeof *jr; k++) {
        flc_key_job_round(key, job, jr[k], round);
        rc = flc_strlist_add(keys, key, strlen(key));
    }
    for (size_t j = 0; rc == FLC_OK && j < clients->n; j++) {
        flc_key_client_meta(key, job, clients->items[j], round);
        rc = flc_strlist_add(keys, key, strlen(key));
    }
    if (rc == FLC_ENOMEM && s->err.code == FLC_OK)
        flc_err_set(&s->err, FLC_ENOMEM, "out of memory listing the keys of round %u", round);
    if (rc != FLC_OK) {
        flc_strlist_free(keys);
        flc_strlist_free(clients);
    }
    return rc;
}

/* Runs cmd (+ arg) on every key, pipelined: one round trip per node
 * (single-key commands, so this also holds on a Redis Cluster). */
static int each_key(flc_store_t *s, const flc_strlist_t *keys, const char *cmd, const char *arg)
{
    int rc = FLC_OK;
    for (size_t i = 0; i < keys->n && rc == FLC_OK; i++) {
        const char *argv[] = {cmd, keys->items[i], arg};
        rc = flc_store_append(s, arg ? 3 : 2, argv, NULL);
    }
    if (rc == FLC_OK && keys->n)
        rc = flc_store_flush(s, cmd);
    if (rc == FLC_OK && keys->n)
        rc = flc_store_read_replies(s, (int)keys->n, cmd, NULL);
    return rc;
}

/* The series round r of job holds what queries cached for it (J/p), into
 * out: 1 when it has any, 0 when not (or job is itself a series), or the
 * store's (negative) error. Deleted and expired with the round, so a cached
 * personalized model does not outlive the updates it was built from. */
static int cached_series(flc_store_t *s, const char *job, uint32_t round, char *out, size_t cap)
{
    if (strchr(job, '/') != NULL ||
        snprintf(out, cap, "%s/" FLC_SERIES_PERS, job) > FLC_NAME_MAX)
        return 0;
    uint32_t *shards = NULL;
    size_t n = 0;
    int rc = flc_store_list_shards(s, out, round, &shards, &n);
    free(shards);
    if (rc == FLC_ENOTFOUND)
        flc_err_clear(&s->err);
    return rc == FLC_OK ? n > 0 : rc == FLC_ENOTFOUND ? 0 : rc; /* FLC_E* are negative */
}

int flc_store_delete_round(flc_store_t *s, const char *job, uint32_t round)
{
    flc_err_clear(&s->err);
    if (flc_name_check_job(job, &s->err))
        return s->err.code;
    /* Cold copies first, while the indexes that name them still exist. */
    if (s->tier && flc_tier_delete_round(s, job, round) != FLC_OK)
        return s->err.code;
    flc_strlist_t keys, clients;
    int rc = round_keys(s, job, round, &keys, &clients);
    if (rc == FLC_OK)
        rc = flc_store_ensure(s);
    if (rc == FLC_OK)
        rc = each_key(s, &keys, "UNLINK", NULL);
    char key[FLC_KEY_MAX], rnd[16];
    snprintf(rnd, sizeof rnd, "%u", round);
    for (size_t i = 0; i < clients.n && rc == FLC_OK; i++) {
        flc_key_client_rounds(key, job, clients.items[i]);
        rc = flc_store_key_command(s, NULL, "ZREM", key, rnd, NULL);
    }
    if (rc == FLC_OK) {
        flc_key_job(key, job, "rounds");
        rc = flc_store_key_command(s, NULL, "ZREM", key, rnd, NULL);
    }
    flc_strlist_free(&keys);
    flc_strlist_free(&clients);
    char series[FLC_NAME_MAX + 8];
    int has = rc == FLC_OK ? cached_series(s, job, round, series, sizeof series) : 0;
    if (has < 0)
        return s->err.code;
    return has ? flc_store_delete_round(s, series, round) : rc;
}

int flc_store_drop_known_round(flc_store_t *s, const char *job, uint32_t round, uint32_t S,
                               const char *const *clients, size_t n, uint64_t ttl_ms)
{
    flc_err_clear(&s->err);
    if (flc_name_check_job(job, &s->err))
        return s->err.code;
    flc_strlist_t keys = {0};
    char key[FLC_KEY_MAX], tag[FLC_TAG_MAX];
    static const char *suffixes[] = {"agg", "done", "closed", "krumready", "gram", "merger"};
    static const char *sr[] = {"merges", "krum", "where"};
    static const char *jr[] = {"meta", "shards", "roster"};
    int rc = FLC_OK;
    for (uint32_t sh = 0; rc == FLC_OK && sh < S; sh++) {
        if ((rc = flc_store_shard_tag(s, job, sh, tag)) != FLC_OK)
            break;
        for (size_t j = 0; rc == FLC_OK && j < n; j++) {
            flc_key_update(key, tag, round, clients[j]);
            rc = flc_strlist_add(&keys, key, strlen(key));
            flc_key_arrival(key, tag, round, clients[j]);
            rc = rc ? rc : flc_strlist_add(&keys, key, strlen(key));
        }
        for (size_t k = 0; rc == FLC_OK && k < sizeof suffixes / sizeof *suffixes; k++) {
            flc_key_shard(key, tag, round, suffixes[k]);
            rc = flc_strlist_add(&keys, key, strlen(key));
        }
        for (size_t k = 0; rc == FLC_OK && k < 3; k++) {
            flc_key_job_shard(key, job, sh, sr[k], round);
            rc = flc_strlist_add(&keys, key, strlen(key));
        }
    }
    for (size_t k = 0; rc == FLC_OK && k < 3; k++) {
        flc_key_job_round(key, job, jr[k], round);
        rc = flc_strlist_add(&keys, key, strlen(key));
    }
    if (rc == FLC_ENOMEM && s->err.code == FLC_OK)
        flc_err_set(&s->err, FLC_ENOMEM, "out of memory listing the keys of round %u", round);
    if (rc == FLC_OK)
        rc = flc_store_ensure(s);
    char ttl[24], rnd[16];
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)ttl_ms);
    snprintf(rnd, sizeof rnd, "%u", round);
    /* Every key, and the round out of the rounds index, in one round trip
     * (per node) when deleting. */
    for (size_t i = 0; rc == FLC_OK && i < keys.n; i++) {
        const char *argv[] = {ttl_ms ? "PEXPIRE" : "UNLINK", keys.items[i], ttl};
        rc = flc_store_append(s, ttl_ms ? 3 : 2, argv, NULL);
    }
    int ncmd = (int)keys.n;
    if (rc == FLC_OK && ttl_ms == 0) {
        flc_key_job(key, job, "rounds");
        const char *zrem[] = {"ZREM", key, rnd};
        rc = flc_store_append(s, 3, zrem, NULL);
        ncmd++;
    }
    if (rc == FLC_OK && ncmd)
        rc = flc_store_flush(s, "UNLINK");
    if (rc == FLC_OK && ncmd)
        rc = flc_store_read_replies(s, ncmd, "UNLINK", NULL);
    flc_strlist_free(&keys);
    return rc;
}

int flc_store_expire_round(flc_store_t *s, const char *job, uint32_t round, uint64_t ttl_ms)
{
    flc_err_clear(&s->err);
    if (flc_name_check_job(job, &s->err))
        return s->err.code;
    flc_strlist_t keys, clients;
    int rc = round_keys(s, job, round, &keys, &clients);
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)ttl_ms);
    if (rc == FLC_OK)
        rc = flc_store_ensure(s);
    if (rc == FLC_OK)
        rc = ttl_ms ? each_key(s, &keys, "PEXPIRE", ttl) : each_key(s, &keys, "PERSIST", NULL);
    flc_strlist_free(&keys);
    flc_strlist_free(&clients);
    char series[FLC_NAME_MAX + 8];
    int has = rc == FLC_OK ? cached_series(s, job, round, series, sizeof series) : 0;
    if (has < 0)
        return s->err.code;
    return has ? flc_store_expire_round(s, series, round, ttl_ms) : rc;
}

int flc_store_forget_job(flc_store_t *s, const char *job)
{
    flc_err_clear(&s->err);
    if (flc_name_check_job(job, &s->err))
        return s->err.code;
    flc_strlist_t keys = {0};
    static const char *what[] = {"rounds", "clients", "schema"};
    char key[FLC_KEY_MAX];
    int rc = FLC_OK;
    for (size_t i = 0; rc == FLC_OK && i < sizeof what / sizeof *what; i++) {
        flc_key_job(key, job, what[i]);
        if (flc_strlist_add(&keys, key, strlen(key)) != FLC_OK)
            rc = flc_err_set(&s->err, FLC_ENOMEM, "out of memory");
    }
    if (rc == FLC_OK)
        rc = flc_store_ensure(s);
    if (rc == FLC_OK)
        rc = each_key(s, &keys, "UNLINK", NULL);
    flc_strlist_free(&keys);
    flc_store_job_drop(s, job);
    return rc;
}
