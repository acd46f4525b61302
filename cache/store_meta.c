/* Round and update metadata, the job/round/client indexes, deletion, expiry
 * and server statistics. Every listing reads an index kept up to date by the
 * writers (keys.h); nothing here uses KEYS or SCAN. */
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
    for (size_t i = 0; i < r->elements; i++)
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

static int packed_set(flc_store_t *s, const char *key, const uint8_t *buf, size_t len,
                      const char *what)
{
    redisReply *r;
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)s->opts.ttl_ms);
    const char *argv[] = {"SET", key, (const char *)buf, "PX", ttl};
    size_t lens[] = {3, strlen(key), len, 2, strlen(ttl)};
    int rc = flc_store_command(s, &r, s->opts.ttl_ms ? 5 : 3, argv, lens);
    if (rc != FLC_OK)
        return flc_err_wrap(&s->err, "storing %s: ", what);
    freeReplyObject(r);
    s->bytes_written += len;
    return FLC_OK;
}

int flc_store_put_round_meta(flc_store_t *s, const Flcache__RoundMeta *m)
{
    flc_err_clear(&s->err);
    if (flc_name_check(m->job, "job", &s->err))
        return s->err.code;
    char what[128], key[FLC_KEY_MAX], k_rounds[FLC_KEY_MAX], rnd[16];
    snprintf(what, sizeof what, "metadata of round %u of job %s", m->round, m->job);
    size_t len = flcache__round_meta__get_packed_size(m);
    if (len > s->opts.max_msg_bytes)
        return flc_err_set(&s->err, FLC_ETOOBIG, "%s: %zu bytes is over the limit of %zu", what,
                           len, s->opts.max_msg_bytes);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL)
        return flc_err_set(&s->err, FLC_ENOMEM, "%s: out of memory", what);
    flcache__round_meta__pack(m, buf);
    flc_key_job_round(key, m->job, "meta", m->round);
    int rc = packed_set(s, key, buf, len, what);
    free(buf);
    if (rc != FLC_OK)
        return rc;
    flc_key_job(k_rounds, m->job, "rounds");
    snprintf(rnd, sizeof rnd, "%u", m->round);
    redisReply *r;
    rc = flc_store_commandf(s, &r, "ZADD %s %s %s", k_rounds, rnd, rnd);
    if (rc != FLC_OK)
        return rc;
    freeReplyObject(r);
    rc = flc_store_commandf(s, &r, "SADD %s %s", FLC_KEY_JOBS, m->job);
    if (rc == FLC_OK)
        freeReplyObject(r);
    return rc;
}

/* GETs key; FLC_ENOTFOUND with `what` when absent. *r is a string reply. */
static int get_value(flc_store_t *s, const char *key, const char *what, redisReply **r)
{
    int rc = flc_store_commandf(s, r, "GET %s", key);
    if (rc != FLC_OK)
        return flc_err_wrap(&s->err, "reading %s: ", what);
    if ((*r)->type == REDIS_REPLY_NIL) {
        freeReplyObject(*r);
        *r = NULL;
        return flc_err_set(&s->err, FLC_ENOTFOUND, "%s: not found", what);
    }
    if ((*r)->type != REDIS_REPLY_STRING) {
        freeReplyObject(*r);
        *r = NULL;
        return flc_err_set(&s->err, FLC_EPROTO, "%s: key %s is not a string", what, key);
    }
    s->bytes_read += (*r)->len;
    return FLC_OK;
}

/* Distinguishes "unknown job" from "unknown round" for messages. */
static int not_found_round(flc_store_t *s, const char *job, uint32_t round, const char *what)
{
    char k_rounds[FLC_KEY_MAX];
    flc_key_job(k_rounds, job, "rounds");
    redisReply *r;
    if (flc_store_commandf(s, &r, "ZCARD %s", k_rounds) != FLC_OK)
        return s->err.code;
    long long n = r->integer;
    freeReplyObject(r);
    if (n == 0)
        return flc_err_set(&s->err, FLC_ENOTFOUND, "unknown job '%s' (no rounds stored)", job);
    return flc_err_set(&s->err, FLC_ENOTFOUND, "job '%s' has no %s for round %u", job, what,
                       round);
}

int flc_store_get_round_meta(flc_store_t *s, const char *job, uint32_t round,
                             Flcache__RoundMeta **out)
{
    flc_err_clear(&s->err);
    *out = NULL;
    if (flc_name_check(job, "job", &s->err))
        return s->err.code;
    char key[FLC_KEY_MAX], what[128];
    flc_key_job_round(key, job, "meta", round);
    snprintf(what, sizeof what, "metadata of round %u of job %s", round, job);
    redisReply *r;
    int rc = get_value(s, key, what, &r);
    if (rc == FLC_ENOTFOUND)
        return not_found_round(s, job, round, "metadata");
    if (rc != FLC_OK)
        return rc;
    *out = flcache__round_meta__unpack(NULL, r->len, (const uint8_t *)r->str);
    freeReplyObject(r);
    if (*out == NULL)
        return flc_err_set(&s->err, FLC_EDATA, "%s: not a valid RoundMeta protobuf", what);
    return FLC_OK;
}

int flc_store_put_update_meta(flc_store_t *s, const Flcache__ModelUpdate *u)
{
    flc_err_clear(&s->err);
    if (flc_name_check(u->job, "job", &s->err) || flc_name_check(u->client, "client", &s->err))
        return s->err.code;
    char what[160], k_um[FLC_KEY_MAX], k_hist[FLC_KEY_MAX], k_clients[FLC_KEY_MAX], rnd[16];
    snprintf(what, sizeof what, "metadata of the update of client %s in round %u of job %s",
             u->client, u->round, u->job);
    size_t len = flcache__model_update__get_packed_size(u);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL)
        return flc_err_set(&s->err, FLC_ENOMEM, "%s: out of memory", what);
    flcache__model_update__pack(u, buf);
    flc_key_job_round(k_um, u->job, "um", u->round);
    flc_key_client(k_hist, u->job, u->client);
    flc_key_job(k_clients, u->job, "clients");
    snprintf(rnd, sizeof rnd, "%u", u->round);
    int rc = flc_store_ensure(s);
    if (rc != FLC_OK) {
        free(buf);
        return rc;
    }
    const char *hset[] = {"HSET", k_um, u->client, (const char *)buf};
    size_t hsetl[] = {4, strlen(k_um), strlen(u->client), len};
    const char *zadd[] = {"ZADD", k_hist, rnd, rnd};
    const char *sadd[] = {"SADD", k_clients, u->client};
    rc = flc_store_append(s, 4, hset, hsetl);
    if (rc == FLC_OK)
        rc = flc_store_append(s, 4, zadd, NULL);
    if (rc == FLC_OK)
        rc = flc_store_append(s, 3, sadd, NULL);
    free(buf);
    if (rc == FLC_OK)
        rc = flc_store_flush(s, "HSET");
    int first = FLC_OK;
    for (int i = 0; rc == FLC_OK && i < 3; i++) {
        redisReply *r;
        rc = flc_store_read(s, &r, "HSET");
        if (rc == FLC_OK) {
            if (r->type == REDIS_REPLY_ERROR && first == FLC_OK)
                first = flc_store_reply_error(s, r, "HSET");
            freeReplyObject(r);
        }
    }
    rc = rc ? rc : first;
    if (rc != FLC_OK)
        return flc_err_wrap(&s->err, "storing %s: ", what);
    s->bytes_written += len;
    return FLC_OK;
}

int flc_store_get_update_meta(flc_store_t *s, const char *job, uint32_t round,
                              const char *client, Flcache__ModelUpdate **out)
{
    flc_err_clear(&s->err);
    *out = NULL;
    if (flc_name_check(job, "job", &s->err) || flc_name_check(client, "client", &s->err))
        return s->err.code;
    char k_um[FLC_KEY_MAX];
    flc_key_job_round(k_um, job, "um", round);
    redisReply *r;
    int rc = flc_store_commandf(s, &r, "HGET %s %s", k_um, client);
    if (rc != FLC_OK)
        return rc;
    if (r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return flc_err_set(&s->err, FLC_ENOTFOUND,
                           "job '%s' has no update metadata of client '%s' in round %u", job,
                           client, round);
    }
    s->bytes_read += r->len;
    *out = flcache__model_update__unpack(NULL, r->len, (const uint8_t *)r->str);
    freeReplyObject(r);
    if (*out == NULL)
        return flc_err_set(&s->err, FLC_EDATA,
                           "update metadata of client %s in round %u is not a valid protobuf",
                           client, round);
    return FLC_OK;
}

void flc_store_free_update_metas(Flcache__ModelUpdate **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        if (v[i])
            flcache__model_update__free_unpacked(v[i], NULL);
    free(v);
}

int flc_store_get_round_update_metas(flc_store_t *s, const char *job, uint32_t round,
                                     Flcache__ModelUpdate ***out, size_t *n)
{
    flc_err_clear(&s->err);
    *out = NULL;
    *n = 0;
    if (flc_name_check(job, "job", &s->err))
        return s->err.code;
    char k_um[FLC_KEY_MAX];
    flc_key_job_round(k_um, job, "um", round);
    redisReply *r;
    int rc = flc_store_commandf(s, &r, "HVALS %s", k_um);
    if (rc != FLC_OK)
        return rc;
    Flcache__ModelUpdate **v = calloc(r->elements ? r->elements : 1, sizeof *v);
    if (v == NULL) {
        freeReplyObject(r);
        return flc_err_set(&s->err, FLC_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        s->bytes_read += e->len;
        v[i] = flcache__model_update__unpack(NULL, e->len, (const uint8_t *)e->str);
        if (v[i] == NULL) {
            flc_store_free_update_metas(v, i);
            freeReplyObject(r);
            return flc_err_set(&s->err, FLC_EDATA,
                               "update metadata in round %u of job %s is not a valid protobuf",
                               round, job);
        }
    }
    *n = r->elements;
    *out = v;
    freeReplyObject(r);
    return FLC_OK;
}

int flc_store_list_jobs(flc_store_t *s, flc_strlist_t *out)
{
    flc_err_clear(&s->err);
    memset(out, 0, sizeof *out);
    redisReply *r;
    int rc = flc_store_commandf(s, &r, "SMEMBERS %s", FLC_KEY_JOBS);
    if (rc != FLC_OK)
        return rc;
    rc = reply_to_strlist(s, r, out);
    freeReplyObject(r);
    return rc;
}

int flc_store_list_rounds(flc_store_t *s, const char *job, uint32_t **rounds, size_t *n)
{
    flc_err_clear(&s->err);
    *rounds = NULL;
    *n = 0;
    if (flc_name_check(job, "job", &s->err))
        return s->err.code;
    char key[FLC_KEY_MAX];
    flc_key_job(key, job, "rounds");
    redisReply *r;
    int rc = flc_store_commandf(s, &r, "ZRANGE %s 0 -1", key);
    if (rc != FLC_OK)
        return rc;
    if (r->elements == 0) {
        freeReplyObject(r);
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
    if (flc_name_check(job, "job", &s->err))
        return s->err.code;
    char key[FLC_KEY_MAX];
    flc_key_job_round(key, job, "shards", round);
    redisReply *r;
    int rc = flc_store_commandf(s, &r, "SMEMBERS %s", key);
    if (rc != FLC_OK)
        return rc;
    rc = reply_to_u32s(s, r, shards, n);
    freeReplyObject(r);
    return rc;
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
        return not_found_round(s, job, round, "updates");
    }
    /* Union of the per-shard client sets (they live in different hash slots,
     * so SUNION is not an option on a cluster). */
    for (size_t i = 0; i < ns && rc == FLC_OK; i++) {
        char key[FLC_KEY_MAX];
        flc_key_shard(key, job, round, shards[i], "clients");
        redisReply *r;
        rc = flc_store_commandf(s, &r, "SMEMBERS %s", key);
        if (rc != FLC_OK)
            break;
        for (size_t j = 0; j < r->elements && rc == FLC_OK; j++) {
            int seen = 0;
            for (size_t k = 0; k < out->n && !seen; k++)
                seen = strcmp(out->items[k], r->element[j]->str) == 0;
            if (!seen && flc_strlist_add(out, r->element[j]->str, r->element[j]->len) != FLC_OK)
                rc = flc_err_set(&s->err, FLC_ENOMEM, "out of memory");
        }
        freeReplyObject(r);
    }
    free(shards);
    if (rc != FLC_OK) {
        flc_strlist_free(out);
        return rc;
    }
    if (out->n > 1)
        qsort(out->items, out->n, sizeof *out->items, cmp_str);
    return FLC_OK;
}

int flc_store_client_rounds(flc_store_t *s, const char *job, const char *client,
                            uint32_t **rounds, size_t *n)
{
    flc_err_clear(&s->err);
    *rounds = NULL;
    *n = 0;
    if (flc_name_check(job, "job", &s->err) || flc_name_check(client, "client", &s->err))
        return s->err.code;
    char key[FLC_KEY_MAX];
    flc_key_client(key, job, client);
    redisReply *r;
    int rc = flc_store_commandf(s, &r, "ZRANGE %s 0 -1", key);
    if (rc != FLC_OK)
        return rc;
    if (r->elements == 0) {
        freeReplyObject(r);
        return flc_err_set(&s->err, FLC_ENOTFOUND, "job '%s' has no history of client '%s'",
                           job, client);
    }
    rc = reply_to_u32s(s, r, rounds, n);
    freeReplyObject(r);
    return rc;
}

/* Collects every key of a round into *keys (from the indexes). */
static int round_keys(flc_store_t *s, const char *job, uint32_t round, flc_strlist_t *keys,
                      flc_strlist_t *clients)
{
    memset(keys, 0, sizeof *keys);
    memset(clients, 0, sizeof *clients);
    uint32_t *shards;
    size_t ns;
    int rc = flc_store_list_shards(s, job, round, &shards, &ns);
    if (rc != FLC_OK)
        return rc;
    char key[FLC_KEY_MAX];
    static const char *suffixes[] = {"agg", "arrivals", "done", "clients", "closed",
                                     "krumready", "gram", "merger"};
    /* Every shard's client set in one pipelined round trip. */
    char (*ckeys)[FLC_KEY_MAX] = malloc((ns ? ns : 1) * sizeof *ckeys);
    const char *(*argv)[2] = malloc((ns ? ns : 1) * sizeof *argv);
    const char *const **cmds = malloc((ns ? ns : 1) * sizeof *cmds);
    int *argc = malloc((ns ? ns : 1) * sizeof *argc);
    redisReply **rs = calloc(ns ? ns : 1, sizeof *rs);
    if (ckeys == NULL || argv == NULL || cmds == NULL || argc == NULL || rs == NULL)
        rc = flc_err_set(&s->err, FLC_ENOMEM, "out of memory");
    for (size_t i = 0; rc == FLC_OK && i < ns; i++) {
        flc_key_shard(ckeys[i], job, round, shards[i], "clients");
        argv[i][0] = "SMEMBERS";
        argv[i][1] = ckeys[i];
        cmds[i] = argv[i];
        argc[i] = 2;
    }
    if (rc == FLC_OK && ns > 0)
        rc = flc_store_pipeline(s, ns, argc, cmds, rs);
    for (size_t i = 0; rc == FLC_OK && i < ns; i++) {
        for (size_t j = 0; rs[i]->type == REDIS_REPLY_ARRAY && j < rs[i]->elements; j++) {
            flc_key_update(key, job, round, shards[i], rs[i]->element[j]->str);
            /* (tmp keys of half-written values expire on their own) */
            if (flc_strlist_add(keys, key, strlen(key)) != FLC_OK)
                rc = flc_err_set(&s->err, FLC_ENOMEM, "out of memory");
        }
        for (size_t k = 0; k < sizeof suffixes / sizeof *suffixes; k++) {
            flc_key_shard(key, job, round, shards[i], suffixes[k]);
            flc_strlist_add(keys, key, strlen(key));
        }
    }
    for (size_t i = 0; rs && i < ns; i++)
        if (rs[i])
            freeReplyObject(rs[i]);
    free(ckeys), free(argv), free(cmds), free(argc), free(rs);
    free(shards);
    if (rc != FLC_OK)
        return rc;
    /* Clients with metadata in this round (their history entries). */
    char k_um[FLC_KEY_MAX];
    flc_key_job_round(k_um, job, "um", round);
    redisReply *r;
    rc = flc_store_commandf(s, &r, "HKEYS %s", k_um);
    if (rc != FLC_OK)
        return rc;
    reply_to_strlist(s, r, clients);
    freeReplyObject(r);
    static const char *jr[] = {"meta", "shards", "um", "merges", "krum", "where"};
    for (size_t k = 0; k < 6; k++) {
        flc_key_job_round(key, job, jr[k], round);
        flc_strlist_add(keys, key, strlen(key));
    }
    return FLC_OK;
}

int flc_store_delete_round(flc_store_t *s, const char *job, uint32_t round)
{
    flc_err_clear(&s->err);
    if (flc_name_check(job, "job", &s->err))
        return s->err.code;
    /* Cold copies first, while the indexes that name them still exist. */
    if (s->tier && flc_tier_delete_round(s, job, round) != FLC_OK)
        return s->err.code;
    flc_strlist_t keys, clients;
    int rc = round_keys(s, job, round, &keys, &clients);
    /* One pipelined UNLINK per key: one round trip for the whole round
     * (single-key commands, so this also holds on a Redis Cluster). */
    for (size_t i = 0; i < keys.n && rc == FLC_OK; i++) {
        const char *argv[] = {"UNLINK", keys.items[i]};
        rc = flc_store_append(s, 2, argv, NULL);
    }
    if (rc == FLC_OK && keys.n)
        rc = flc_store_flush(s, "UNLINK");
    for (size_t i = 0; i < keys.n && rc == FLC_OK; i++) {
        redisReply *r;
        rc = flc_store_read(s, &r, "UNLINK");
        if (rc == FLC_OK)
            freeReplyObject(r);
    }
    char key[FLC_KEY_MAX], rnd[16];
    snprintf(rnd, sizeof rnd, "%u", round);
    for (size_t i = 0; i < clients.n && rc == FLC_OK; i++) {
        flc_key_client(key, job, clients.items[i]);
        redisReply *r;
        rc = flc_store_commandf(s, &r, "ZREM %s %s", key, rnd);
        if (rc == FLC_OK)
            freeReplyObject(r);
    }
    if (rc == FLC_OK) {
        flc_key_job(key, job, "rounds");
        redisReply *r;
        rc = flc_store_commandf(s, &r, "ZREM %s %s", key, rnd);
        if (rc == FLC_OK)
            freeReplyObject(r);
    }
    flc_strlist_free(&keys);
    flc_strlist_free(&clients);
    return rc;
}

int flc_store_expire_round(flc_store_t *s, const char *job, uint32_t round, uint64_t ttl_ms)
{
    flc_err_clear(&s->err);
    if (flc_name_check(job, "job", &s->err))
        return s->err.code;
    flc_strlist_t keys, clients;
    int rc = round_keys(s, job, round, &keys, &clients);
    for (size_t i = 0; i < keys.n && rc == FLC_OK; i++) {
        redisReply *r;
        if (ttl_ms)
            rc = flc_store_commandf(s, &r, "PEXPIRE %s %llu", keys.items[i],
                                    (unsigned long long)ttl_ms);
        else
            rc = flc_store_commandf(s, &r, "PERSIST %s", keys.items[i]);
        if (rc == FLC_OK)
            freeReplyObject(r);
    }
    flc_strlist_free(&keys);
    flc_strlist_free(&clients);
    return rc;
}

int flc_store_forget_job(flc_store_t *s, const char *job)
{
    char key[FLC_KEY_MAX];
    redisReply *r;
    int rc = flc_store_commandf(s, &r, "SREM %s %s", FLC_KEY_JOBS, job);
    if (rc == FLC_OK) {
        freeReplyObject(r);
        flc_key_job(key, job, "rounds");
        rc = flc_store_commandf(s, &r, "UNLINK %s", key);
    }
    if (rc == FLC_OK)
        freeReplyObject(r);
    return rc;
}

/* Reads "name:value" from an INFO text. */
static uint64_t info_field(const char *info, const char *name, char *text, size_t textlen)
{
    size_t nl = strlen(name);
    for (const char *p = info; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
        if (strncmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            if (text) {
                size_t n = strcspn(v, "\r\n");
                snprintf(text, textlen, "%.*s", (int)n, v);
            }
            return strtoull(v, NULL, 10);
        }
    }
    return 0;
}

/* Adds DBSIZE (on a cluster: the sum over its masters, store_cluster_all.c)
 * to *st. */
static int stats_keys(flc_store_t *s, flc_store_stats_t *st)
{
    redisReply *r;
    int rc = flc_store_commandf(s, &r, "DBSIZE");
    if (rc != FLC_OK)
        return rc;
    st->keys += (uint64_t)r->integer;
    freeReplyObject(r);
    return FLC_OK;
}

/* Adds one server's memory to *st (the version of the first). */
static int stats_of_server(flc_store_t *s, flc_store_stats_t *st)
{
    redisReply *r;
    int rc = flc_store_commandf(s, &r, "INFO memory");
    if (rc != FLC_OK)
        return rc;
    st->used_memory += info_field(r->str, "used_memory", NULL, 0);
    st->maxmemory += info_field(r->str, "maxmemory", NULL, 0);
    freeReplyObject(r);
    rc = flc_store_commandf(s, &r, "INFO server");
    if (rc != FLC_OK)
        return rc;
    if (st->redis_version[0] == '\0')
        info_field(r->str, "redis_version", st->redis_version, sizeof st->redis_version);
    freeReplyObject(r);
    return FLC_OK;
}

int flc_store_stats(flc_store_t *s, flc_store_stats_t *st)
{
    flc_err_clear(&s->err);
    memset(st, 0, sizeof *st);
    int rc = stats_keys(s, st);
    if (rc != FLC_OK || !flc_store_is_cluster(s))
        return rc != FLC_OK ? rc : stats_of_server(s, st);
    /* A cluster: the sums over its masters (replicas hold copies). */
    unsigned m[64];
    size_t n = 0;
    rc = flc_store_ensure(s);
    if (rc == FLC_OK)
        rc = flc_store_cl_masters(s, m, 64, &n);
    for (size_t i = 0; rc == FLC_OK && i < n; i++)
        if ((rc = flc_store_cl_use_node(s, m[i])) == FLC_OK)
            rc = stats_of_server(s, st);
    return rc;
}
