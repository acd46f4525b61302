/* Round and update metadata: RoundMeta at fl:{J/j}:meta:<r> (written by
 * the merger or the driver), and each client's ModelUpdate at
 * fl:{J/j}:c:<c>:um:<r> with its history fl:{J/j}:c:<c>:rounds (written by
 * the client, under its own keys). A round's updates are found through
 * its roster (store_index.c). */
#include "cache/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    if (flc_name_check_job(m->job, &s->err))
        return s->err.code;
    char what[128], key[FLC_KEY_MAX], k_rounds[FLC_KEY_MAX], rnd[16];
    snprintf(what, sizeof what, "metadata of round %u of job %s", m->round, m->job);
    /* A round's record names the job's shard count: the job begins here
     * too (its schema record; once per store), so a job with metadata only
     * (an SGD job's epochs) is listed and versioned like any other. */
    if (m->num_shards > 0 && flc_store_job_begin(s, m->job, m->num_shards) != FLC_OK)
        return flc_err_wrap(&s->err, "storing %s: ", what);
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
    const char *argv[] = {"ZADD", k_rounds, rnd, rnd};
    return flc_store_run_expiring(s, 4, argv, k_rounds, NULL, "ZADD");
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

int flc_store_get_round_meta(flc_store_t *s, const char *job, uint32_t round,
                             Flcache__RoundMeta **out)
{
    flc_err_clear(&s->err);
    *out = NULL;
    if (flc_name_check_job(job, &s->err))
        return s->err.code;
    char key[FLC_KEY_MAX], what[128];
    flc_key_job_round(key, job, "meta", round);
    snprintf(what, sizeof what, "metadata of round %u of job %s", round, job);
    redisReply *r;
    int rc = get_value(s, key, what, &r);
    if (rc == FLC_ENOTFOUND)
        return flc_store_not_found_round(s, job, round, "metadata");
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
    if (flc_name_check_job(u->job, &s->err) || flc_name_check(u->client, "client", &s->err))
        return s->err.code;
    char what[160], k_um[FLC_KEY_MAX], k_hist[FLC_KEY_MAX], rnd[16];
    snprintf(what, sizeof what, "metadata of the update of client %s in round %u of job %s",
             u->client, u->round, u->job);
    size_t len = flcache__model_update__get_packed_size(u);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL)
        return flc_err_set(&s->err, FLC_ENOMEM, "%s: out of memory", what);
    flcache__model_update__pack(u, buf);
    flc_key_client_meta(k_um, u->job, u->client, u->round);
    flc_key_client_rounds(k_hist, u->job, u->client);
    snprintf(rnd, sizeof rnd, "%u", u->round);
    /* The client's own two keys, one round trip; with the store's ttl the
     * metadata expires like the update it describes. */
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)s->opts.ttl_ms);
    const char *set[] = {"SET", k_um, (const char *)buf, "PX", ttl};
    size_t setl[] = {3, strlen(k_um), len, 2, strlen(ttl)};
    const char *zadd[] = {"ZADD", k_hist, rnd, rnd};
    int rc = flc_store_ensure(s);
    if (rc == FLC_OK)
        rc = flc_store_append(s, s->opts.ttl_ms ? 5 : 3, set, setl);
    if (rc == FLC_OK)
        rc = flc_store_append(s, 4, zadd, NULL);
    const char *pex[] = {"PEXPIRE", k_hist, ttl}; /* in the same write as the ZADD */
    if (rc == FLC_OK && s->opts.ttl_ms)
        rc = flc_store_append(s, 3, pex, NULL);
    free(buf);
    if (rc == FLC_OK)
        rc = flc_store_flush(s, "SET");
    if (rc == FLC_OK)
        rc = flc_store_read_replies(s, s->opts.ttl_ms ? 3 : 2, "SET", NULL);
    if (rc != FLC_OK)
        return flc_err_wrap(&s->err, "storing %s (key %s): ", what, k_um);
    s->bytes_written += len;
    return FLC_OK;
}

int flc_store_get_update_meta(flc_store_t *s, const char *job, uint32_t round,
                              const char *client, Flcache__ModelUpdate **out)
{
    flc_err_clear(&s->err);
    *out = NULL;
    if (flc_name_check_job(job, &s->err) || flc_name_check(client, "client", &s->err))
        return s->err.code;
    char k_um[FLC_KEY_MAX];
    flc_key_client_meta(k_um, job, client, round);
    const char *argv[] = {"GET", k_um};
    redisReply *r;
    int rc = flc_store_command(s, &r, 2, argv, NULL);
    if (rc != FLC_OK)
        return rc;
    if (r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        if (flc_store_job_check_v1(s, job) != FLC_OK)
            return s->err.code;
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
    if (flc_name_check_job(job, &s->err))
        return s->err.code;
    flc_strlist_t roster = {0};
    int rc = flc_store_roster(s, job, round, &roster);
    if (rc != FLC_OK)
        return rc;
    size_t m = roster.n;
    /* One GET per roster client, pipelined: every key has the job's tag. */
    char (*keys)[FLC_KEY_MAX] = malloc((m ? m : 1) * sizeof *keys);
    const char *(*argv)[2] = malloc((m ? m : 1) * sizeof *argv);
    const char *const **cmds = malloc((m ? m : 1) * sizeof *cmds);
    int *argc = malloc((m ? m : 1) * sizeof *argc);
    redisReply **rs = calloc(m ? m : 1, sizeof *rs);
    Flcache__ModelUpdate **v = calloc(m ? m : 1, sizeof *v);
    if (keys == NULL || argv == NULL || cmds == NULL || argc == NULL || rs == NULL || v == NULL)
        rc = flc_err_set(&s->err, FLC_ENOMEM, "out of memory for %zu update records", m);
    for (size_t i = 0; rc == FLC_OK && i < m; i++) {
        flc_key_client_meta(keys[i], job, roster.items[i], round);
        argv[i][0] = "GET";
        argv[i][1] = keys[i];
        cmds[i] = argv[i];
        argc[i] = 2;
    }
    if (rc == FLC_OK && m > 0)
        rc = flc_store_pipeline(s, m, argc, cmds, rs);
    size_t k = 0;
    for (size_t i = 0; rc == FLC_OK && i < m; i++) {
        const redisReply *e = rs[i];
        if (e->type != REDIS_REPLY_STRING)
            continue; /* a roster client that stored no metadata */
        s->bytes_read += e->len;
        v[k] = flcache__model_update__unpack(NULL, e->len, (const uint8_t *)e->str);
        if (v[k] == NULL)
            rc = flc_err_set(&s->err, FLC_EDATA, "update metadata of client %s in round %u of "
                             "job %s is not a valid protobuf", roster.items[i], round, job);
        else
            k++;
    }
    for (size_t i = 0; rs && i < m; i++)
        if (rs[i])
            freeReplyObject(rs[i]);
    free(keys), free(argv), free(cmds), free(argc), free(rs);
    flc_strlist_free(&roster);
    if (rc != FLC_OK) {
        flc_store_free_update_metas(v, k);
        return rc;
    }
    *out = v;
    *n = k;
    return FLC_OK;
}
