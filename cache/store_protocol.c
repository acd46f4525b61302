/* The round protocol's small operations (store_ops.h): the merger's lock and
 * close (the merger's start, flc_store_round_begin, is in store_jobs.c), the
 * per-shard records of a round (merge reports, Krum partials, the request
 * tracker: one key per shard, fl:{J/j}:s<s>:<what>:<r>) and the small values kept next to a shard
 * (Gram partial, server-optimizer state). Each is one or two commands; the
 * close is one pipelined round trip, as it was in the merger. The value
 * layouts belong to their writers in aggregator/: here they are bytes. */
#include "cache/store_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "cache/keys.h"

int flc_store_run_expiring(flc_store_t *s, int argc, const char **argv, const char *key,
                           redisReply **out, const char *what)
{
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)s->opts.ttl_ms);
    const char *ex[] = {"PEXPIRE", key, ttl};
    const char *const *cmds[] = {argv, ex};
    const int ac[] = {argc, 3};
    size_t n = s->opts.ttl_ms ? 2 : 1;
    redisReply *rs[2] = {NULL, NULL};
    int rc = flc_store_pipeline(s, n, ac, cmds, rs);
    for (size_t i = 0; rc == FLC_OK && i < n; i++)
        if (rs[i]->type == REDIS_REPLY_ERROR)
            rc = flc_store_reply_error(s, rs[i], i ? "PEXPIRE" : what);
    if (out != NULL && rc == FLC_OK) {
        *out = rs[0];
        rs[0] = NULL;
    }
    for (size_t i = 0; i < n; i++)
        if (rs[i])
            freeReplyObject(rs[i]);
    return rc;
}

int flc_store_expire_written(flc_store_t *s, size_t n, const char *const *keys)
{
    if (s->opts.ttl_ms == 0 || n == 0)
        return FLC_OK;
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)s->opts.ttl_ms);
    const char *(*argv)[3] = malloc(n * sizeof *argv);
    const char *const **cmds = malloc(n * sizeof *cmds);
    int *argc = malloc(n * sizeof *argc);
    redisReply **rs = calloc(n, sizeof *rs);
    int rc = argv && cmds && argc && rs
                 ? FLC_OK
                 : flc_err_set(&s->err, FLC_ENOMEM, "out of memory for %zu expiries", n);
    for (size_t i = 0; rc == FLC_OK && i < n; i++) {
        argv[i][0] = "PEXPIRE", argv[i][1] = keys[i], argv[i][2] = ttl;
        cmds[i] = argv[i], argc[i] = 3;
    }
    if (rc == FLC_OK)
        rc = flc_store_pipeline(s, n, argc, cmds, rs);
    for (size_t i = 0; rc == FLC_OK && i < n; i++)
        if (rs[i]->type == REDIS_REPLY_ERROR)
            rc = flc_store_reply_error(s, rs[i], "PEXPIRE");
    for (size_t i = 0; rs && i < n; i++)
        if (rs[i])
            freeReplyObject(rs[i]);
    free(argv), free(cmds), free(argc), free(rs);
    return rc;
}

void flc_store_fields_free(flc_store_fields_t *f)
{
    if (f == NULL)
        return;
    for (size_t i = 0; i < f->n; i++)
        free(f->v[i].value);
    free(f->v);
    f->v = NULL;
    f->n = 0;
}

/* A copy of len bytes, NUL-terminated; NULL when out of memory. */
static char *copy_bytes(const char *p, size_t len)
{
    char *c = malloc(len + 1);
    if (c != NULL) {
        memcpy(c, p, len);
        c[len] = '\0';
    }
    return c;
}

int flc_store_blob_get(flc_store_t *s, const char *key, const char *what, char **blob,
                    size_t *len)
{
    *blob = NULL;
    *len = 0;
    const char *argv[] = {"GET", key};
    redisReply *r;
    int rc = flc_store_command(s, &r, 2, argv, NULL);
    if (rc != FLC_OK)
        return rc;
    if (r->type != REDIS_REPLY_STRING)
        rc = flc_err_set(&s->err, FLC_ENOTFOUND, "%s: not in the cache (key %s)", what, key);
    else if ((*blob = copy_bytes(r->str, (size_t)r->len)) == NULL)
        rc = flc_err_set(&s->err, FLC_ENOMEM, "%s: out of memory for %zu bytes", what,
                         (size_t)r->len);
    else
        *len = (size_t)r->len;
    freeReplyObject(r);
    return rc;
}

int flc_store_blob_set(flc_store_t *s, const char *key, const void *blob, size_t len)
{
    char ttl[24]; /* SET ... PX: the value and its expiry in one command */
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)s->opts.ttl_ms);
    const char *argv[] = {"SET", key, blob, "PX", ttl};
    size_t lens[] = {3, strlen(key), len, 2, strlen(ttl)};
    return flc_store_command(s, NULL, s->opts.ttl_ms ? 5 : 3, argv, lens);
}

/* flc_store_blob_set, its error naming the key. */
static int blob_put(flc_store_t *s, const char *key, const void *blob, size_t len)
{
    int rc = flc_store_blob_set(s, key, blob, len);
    return rc == FLC_OK ? rc : flc_err_wrap(&s->err, "writing %s: ", key);
}

/* ---- the merger of one shard -------------------------------------------- */

int flc_store_shard_closed(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                           int *closed)
{
    *closed = 0;
    char key[FLC_KEY_MAX];
    int rc = flc_store_shard_key(s, key, job, round, shard, "closed");
    if (rc != FLC_OK)
        return rc;
    const char *argv[] = {"EXISTS", key};
    redisReply *r;
    rc = flc_store_command(s, &r, 2, argv, NULL);
    if (rc != FLC_OK)
        return rc;
    *closed = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return FLC_OK;
}

/* The lock's value: "<pid> <host>", who holds it, for people and for
 * taking over the lock of a merger that died on this host. */
static void holder_id(char *out, size_t cap)
{
    char host[128] = "?";
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "?");
    host[sizeof host - 1] = '\0';
    snprintf(out, cap, "%d %s", (int)getpid(), host);
}

/* 1 when value names a process of this host that no longer exists (a
 * crashed run's merger): its lock is stale. A holder on another host, or
 * one whose value is not ours to read, is never judged. */
static int holder_dead(const char *value)
{
    char me[160], host[160];
    holder_id(me, sizeof me);
    int pid = 0;
    if (sscanf(value, "%d %159s", &pid, host) != 2 || pid <= 0 || pid == (int)getpid())
        return 0;
    const char *my_host = strchr(me, ' ');
    if (my_host == NULL || strcmp(my_host + 1, host) != 0)
        return 0;
    return kill(pid, 0) != 0 && errno == ESRCH;
}

/* Replaces the lock's value only if it is still the stale one read: two
 * reruns taking over together, one wins. */
static const char TAKE_OVER[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end "
    "return 0";

int flc_store_merger_lock(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                          uint64_t ttl_ms, int *mine)
{
    *mine = 0;
    char key[FLC_KEY_MAX], me[200], ttl[24];
    int rc = flc_store_shard_key(s, key, job, round, shard, "merger");
    if (rc != FLC_OK)
        return rc;
    holder_id(me, sizeof me);
    if (s->opts.ttl_ms && s->opts.ttl_ms < ttl_ms)
        ttl_ms = s->opts.ttl_ms; /* no key of a --ttl job outlives it */
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)ttl_ms);
    const char *argv[] = {"SET", key, me, "NX", "PX", ttl};
    redisReply *r;
    rc = flc_store_command(s, &r, 6, argv, NULL);
    if (rc != FLC_OK)
        return rc;
    *mine = r->type == REDIS_REPLY_STATUS; /* OK; nil when another holds it */
    freeReplyObject(r);
    if (*mine)
        return FLC_OK;
    /* Held: by a merger of a run that crashed on this host (its process is
     * gone), the lock is taken over, so a rerun does not wait out its
     * expiry; otherwise flc_store_merger_holder says who holds it. */
    const char *get[] = {"GET", key};
    if ((rc = flc_store_command(s, &r, 2, get, NULL)) != FLC_OK)
        return rc;
    char old[200] = "";
    if (r->type == REDIS_REPLY_STRING)
        snprintf(old, sizeof old, "%.*s", (int)r->len, r->str);
    freeReplyObject(r);
    if (old[0] == '\0' || !holder_dead(old))
        return FLC_OK;
    const char *ev[] = {"EVAL", TAKE_OVER, "1", key, old, me, ttl};
    if ((rc = flc_store_command(s, &r, 7, ev, NULL)) != FLC_OK)
        return rc;
    *mine = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    if (*mine)
        FLC_WARN("%s: took over the merger lock of process %s, which is gone", key, old);
    return FLC_OK;
}

/* The merger's first look at its shard and its lock in one script, one
 * round trip: 2 when the shard is closed (nothing taken), 1 when the lock
 * was taken (SET NX PX), 0 when another holds it. Both keys share the
 * shard's tag, so it runs on its node of a Redis Cluster. */
static const char OPEN_SHARD[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 2 end "
    "if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end "
    "return 0";

int flc_store_merger_open(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                          uint64_t ttl_ms, const char *const *clients, size_t n, int *closed,
                          int *mine)
{
    *closed = 0, *mine = 0;
    if (clients == NULL)
        n = 0;
    char tag[FLC_TAG_MAX], k_closed[FLC_KEY_MAX], k_owner[FLC_KEY_MAX], me[200], ttl[24];
    int rc = flc_store_shard_tag(s, job, shard, tag);
    if (rc != FLC_OK)
        return rc;
    flc_key_shard(k_closed, tag, round, "closed");
    flc_key_shard(k_owner, tag, round, "merger");
    holder_id(me, sizeof me);
    uint64_t lock_ms = s->opts.ttl_ms && s->opts.ttl_ms < ttl_ms ? s->opts.ttl_ms : ttl_ms;
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)lock_ms);
    /* With clients, the round's indexes in the same round trip: the
     * round, this shard, the roster (what flc_store_delete_round goes by)
     * and the job's clients, each with the store's ttl. */
    char k_rounds[FLC_KEY_MAX], k_shards[FLC_KEY_MAX], k_roster[FLC_KEY_MAX],
        k_clients[FLC_KEY_MAX], rnd[16], shd[16], sttl[24];
    flc_key_job(k_rounds, job, "rounds");
    flc_key_job(k_clients, job, "clients");
    flc_key_job_round(k_shards, job, "shards", round);
    flc_key_job_round(k_roster, job, "roster", round);
    snprintf(rnd, sizeof rnd, "%u", round);
    snprintf(shd, sizeof shd, "%u", shard);
    snprintf(sttl, sizeof sttl, "%llu", (unsigned long long)s->opts.ttl_ms);
    const char **roster = malloc((n + 2) * sizeof *roster);
    const char **all = malloc((n + 2) * sizeof *all);
    if (roster == NULL || all == NULL) {
        free(roster), free(all);
        return flc_err_set(&s->err, FLC_ENOMEM, "out of memory for %zu clients", n);
    }
    roster[0] = all[0] = "SADD", roster[1] = k_roster, all[1] = k_clients;
    for (size_t i = 0; i < n; i++)
        roster[2 + i] = all[2 + i] = clients[i];
    const char *ev[] = {"EVAL", OPEN_SHARD, "2", k_closed, k_owner, me, ttl};
    const char *zadd[] = {"ZADD", k_rounds, rnd, rnd}, *sadd[] = {"SADD", k_shards, shd};
    const char *e1[] = {"PEXPIRE", k_rounds, sttl}, *e2[] = {"PEXPIRE", k_shards, sttl},
               *e3[] = {"PEXPIRE", k_roster, sttl}, *e4[] = {"PEXPIRE", k_clients, sttl};
    const char *const *cmds[9] = {ev, zadd, sadd, roster, all};
    int argc[9] = {7, 4, 3, (int)n + 2, (int)n + 2};
    size_t ncmd = clients == NULL ? 1 : n == 0 ? 3 : 5;
    if (clients != NULL && s->opts.ttl_ms) {
        cmds[ncmd] = e1, argc[ncmd++] = 3;
        cmds[ncmd] = e2, argc[ncmd++] = 3;
        if (n > 0) {
            cmds[ncmd] = e3, argc[ncmd++] = 3;
            cmds[ncmd] = e4, argc[ncmd++] = 3;
        }
    }
    redisReply *rs[9] = {NULL};
    rc = flc_store_pipeline(s, ncmd, argc, cmds, rs);
    free(roster), free(all);
    if (rc != FLC_OK)
        return rc;
    long long got = -1;
    for (size_t i = 0; i < ncmd; i++) {
        if (rc == FLC_OK && rs[i]->type == REDIS_REPLY_ERROR)
            rc = flc_store_reply_error(s, rs[i], i == 0 ? "opening the shard"
                                                        : "indexing the round");
        if (i == 0 && rs[i]->type == REDIS_REPLY_INTEGER)
            got = rs[i]->integer;
        freeReplyObject(rs[i]);
    }
    if (rc == FLC_OK && got < 0)
        rc = flc_err_set(&s->err, FLC_EPROTO, "unexpected answer to the open script");
    if (rc != FLC_OK)
        return flc_err_wrap(&s->err, "opening shard %u of round %u of job %s: ", shard, round,
                            job);
    if (got == 2) {
        *closed = 1;
        return FLC_OK;
    }
    if (got == 1) {
        *mine = 1;
        return FLC_OK;
    }
    /* Held: maybe by a crashed run's merger on this host (taken over). */
    return flc_store_merger_lock(s, job, round, shard, ttl_ms, mine);
}

int flc_store_merger_holder(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                            char *out, size_t cap)
{
    char key[FLC_KEY_MAX];
    snprintf(out, cap, "unknown");
    int rc = flc_store_shard_key(s, key, job, round, shard, "merger");
    if (rc != FLC_OK)
        return rc;
    const char *get[] = {"GET", key}, *pttl[] = {"PTTL", key};
    redisReply *r;
    if ((rc = flc_store_command(s, &r, 2, get, NULL)) != FLC_OK)
        return rc;
    char who[200] = "";
    if (r->type == REDIS_REPLY_STRING)
        snprintf(who, sizeof who, "%.*s", (int)r->len, r->str);
    freeReplyObject(r);
    if ((rc = flc_store_command(s, &r, 2, pttl, NULL)) != FLC_OK)
        return rc;
    long long ms = r->type == REDIS_REPLY_INTEGER ? r->integer : -2;
    freeReplyObject(r);
    int pid = 0;
    char host[160] = "?";
    if (who[0] == '\0' || ms == -2)
        snprintf(out, cap, "nobody any more (lock key %s is gone)", key);
    else if (sscanf(who, "%d %159s", &pid, host) >= 1)
        snprintf(out, cap, "process %d on host %s (lock key %s, expires in %lld s; if that "
                 "process is gone, DEL the key or wait)", pid, host, key, ms / 1000);
    else
        snprintf(out, cap, "'%.60s' (lock key %s, expires in %lld s)", who, key, ms / 1000);
    return FLC_OK;
}

int flc_store_merger_unlock(flc_store_t *s, const char *job, uint32_t round, uint32_t shard)
{
    char key[FLC_KEY_MAX];
    int rc = flc_store_shard_key(s, key, job, round, shard, "merger");
    if (rc != FLC_OK)
        return rc;
    const char *argv[] = {"DEL", key};
    return flc_store_command(s, NULL, 2, argv, NULL);
}

/* Sets the closed flag (KEYS[1]) and drains the arrival lists KEYS[2..]:
 * returns, per list, how many tokens it held. One script, so no arrival
 * (store_put.c, ARRIVE_IF_OPEN) falls between the flag and the drain. */
static const char CLOSE_AND_DRAIN[] =
    "redis.call('SET', KEYS[1], '1') "
    "local out = {} "
    "for i = 2, #KEYS do "
    "  local n = redis.call('LLEN', KEYS[i]) "
    "  if n > 0 then redis.call('DEL', KEYS[i]) end "
    "  out[i - 1] = n "
    "end "
    "return out";

int flc_store_close_shard(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                          const char *const *clients, size_t n, unsigned *tokens)
{
    for (size_t i = 0; i < n; i++)
        tokens[i] = 0;
    char tag[FLC_TAG_MAX], k_closed[FLC_KEY_MAX], k_owner[FLC_KEY_MAX], nk[24];
    int rc = flc_store_shard_tag(s, job, shard, tag);
    if (rc != FLC_OK)
        return rc;
    flc_key_shard(k_closed, tag, round, "closed");
    flc_key_shard(k_owner, tag, round, "merger");
    snprintf(nk, sizeof nk, "%zu", n + 1);
    char (*keys)[FLC_KEY_MAX] = malloc((n ? n : 1) * sizeof *keys);
    const char **ev = malloc((n + 4) * sizeof *ev);
    if (keys == NULL || ev == NULL) {
        free(keys), free(ev);
        return flc_err_set(&s->err, FLC_ENOMEM, "closing shard %u of round %u of job %s: out "
                           "of memory for %zu clients", shard, round, job, n);
    }
    ev[0] = "EVAL", ev[1] = CLOSE_AND_DRAIN, ev[2] = nk, ev[3] = k_closed;
    for (size_t i = 0; i < n; i++) {
        flc_key_arrival(keys[i], tag, round, clients[i]);
        ev[4 + i] = keys[i];
    }
    /* Then the merger's ownership key goes, in the same round trip. */
    const char *del[] = {"DEL", k_owner};
    /* With the store's ttl the flag expires like the round it closes (in
     * the same round trip). */
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)s->opts.ttl_ms);
    const char *exp[] = {"PEXPIRE", k_closed, ttl};
    const char *const *cmds[] = {ev, del, exp};
    const int argc[] = {(int)n + 4, 2, 3};
    redisReply *rs[3] = {NULL, NULL, NULL};
    rc = flc_store_pipeline(s, s->opts.ttl_ms ? 3 : 2, argc, cmds, rs);
    free(keys), free(ev);
    if (rc != FLC_OK)
        return rc;
    const redisReply *r = rs[0];
    if (r->type == REDIS_REPLY_ERROR)
        rc = flc_store_reply_error(s, r, "closing the shard");
    else if (r->type != REDIS_REPLY_ARRAY || r->elements != n)
        rc = flc_err_set(&s->err, FLC_EPROTO, "closing shard %u of round %u of job %s: the "
                         "close script answered %zu counts for %zu clients", shard, round, job,
                         r->type == REDIS_REPLY_ARRAY ? r->elements : 0, n);
    for (size_t i = 0; rc == FLC_OK && i < n; i++)
        tokens[i] = r->element[i]->type == REDIS_REPLY_INTEGER ? (unsigned)r->element[i]->integer
                                                               : 0;
    freeReplyObject(rs[0]);
    freeReplyObject(rs[1]);
    if (rs[2])
        freeReplyObject(rs[2]);
    if (rc != FLC_OK)
        return flc_err_wrap(&s->err, "closing shard %u of round %u of job %s: ", shard, round,
                            job);
    return FLC_OK;
}

/* ---- per-round records ---------------------------------------------------- */

/* Shard s's record `what` of a round is its own key fl:{J/j}:s<s>:<what>:<r>
 * (keys.h says why); reading them all is one pipelined GET per shard of the
 * job (its S from the schema record), all on the job's tag. */
static int rec_put(flc_store_t *s, const char *job, const char *what, uint32_t round,
                   uint32_t shard, const void *blob, size_t len)
{
    char key[FLC_KEY_MAX];
    flc_key_job_shard(key, job, shard, what, round);
    char ttl[24]; /* SET ... PX: the value and its expiry in one command */
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)s->opts.ttl_ms);
    const char *argv[] = {"SET", key, blob, "PX", ttl};
    size_t lens[] = {3, strlen(key), len, 2, strlen(ttl)};
    int rc = flc_store_command(s, NULL, s->opts.ttl_ms ? 5 : 3, argv, lens);
    return rc == FLC_OK ? rc : flc_err_wrap(&s->err, "writing %s: ", key);
}

/* GETs every shard's record into *out (the shards that have one); with put
 * (this shard's text record) the SET goes first in the same round trip. */
static int rec_getall(flc_store_t *s, const char *job, const char *what, uint32_t round,
                      uint32_t put_shard, const char *put, flc_store_fields_t *out)
{
    out->v = NULL;
    out->n = 0;
    uint32_t S = 0;
    if (flc_store_job_S(s, job, &S) != FLC_OK) {
        if (s->err.code != FLC_ENOTFOUND)
            return s->err.code;
        flc_err_clear(&s->err);
        S = 0; /* no schema record: nothing was merged, no records */
    }
    if (put != NULL && put_shard >= S)
        S = put_shard + 1;
    size_t n = S + (put != NULL);
    char (*keys)[FLC_KEY_MAX] = malloc((n ? n : 1) * sizeof *keys);
    const char *(*argv)[3] = malloc((n ? n : 1) * sizeof *argv);
    const char *const **cmds = malloc((n ? n : 1) * sizeof *cmds);
    int *argc = malloc((n ? n : 1) * sizeof *argc);
    redisReply **rs = calloc(n ? n : 1, sizeof *rs);
    out->v = calloc(S ? S : 1, sizeof *out->v);
    int rc = keys && argv && cmds && argc && rs && out->v
                 ? FLC_OK
                 : flc_err_set(&s->err, FLC_ENOMEM, "out of memory for %u shard records", S);
    size_t i = 0;
    char ttl[24]; /* SET ... PX: the value and its expiry in one command */
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)s->opts.ttl_ms);
    const char *setpx[5];
    if (rc == FLC_OK && put != NULL) {
        flc_key_job_shard(keys[i], job, put_shard, what, round);
        setpx[0] = "SET", setpx[1] = keys[i], setpx[2] = put, setpx[3] = "PX", setpx[4] = ttl;
        cmds[i] = setpx, argc[i] = s->opts.ttl_ms ? 5 : 3, i++;
    }
    for (uint32_t k = 0; rc == FLC_OK && k < S; k++, i++) {
        flc_key_job_shard(keys[i], job, k, what, round);
        argv[i][0] = "GET", argv[i][1] = keys[i];
        cmds[i] = argv[i], argc[i] = 2;
    }
    if (rc == FLC_OK && n > 0)
        rc = flc_store_pipeline(s, n, argc, cmds, rs);
    size_t first = put != NULL;
    if (rc == FLC_OK && put != NULL && rs[0]->type == REDIS_REPLY_ERROR)
        rc = flc_store_reply_error(s, rs[0], "SET");
    for (size_t j = first; rc == FLC_OK && j < n; j++) {
        const redisReply *r = rs[j];
        if (r->type == REDIS_REPLY_ERROR) {
            rc = flc_store_reply_error(s, r, "GET");
            break;
        }
        if (r->type != REDIS_REPLY_STRING)
            continue;
        flc_store_field_t *o = &out->v[out->n];
        o->shard = (uint32_t)(j - first);
        o->len = (size_t)r->len;
        o->value = copy_bytes(r->str, o->len);
        if (o->value == NULL)
            rc = flc_err_set(&s->err, FLC_ENOMEM, "out of memory for a %zu-byte record",
                             (size_t)r->len);
        else
            out->n++;
    }
    for (size_t j = 0; rs && j < n; j++)
        if (rs[j])
            freeReplyObject(rs[j]);
    free(keys), free(argv), free(cmds), free(argc), free(rs);
    if (rc != FLC_OK)
        flc_store_fields_free(out);
    return rc;
}

int flc_store_merge_report_put(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                               const char *report, flc_store_fields_t *all)
{
    if (all == NULL)
        return rec_put(s, job, "merges", round, shard, report, strlen(report));
    /* SET then every shard's GET in one round trip: the same answers as
     * one after the other on this connection, one wait fewer per merge. */
    return rec_getall(s, job, "merges", round, shard, report, all);
}

int flc_store_merge_report_getall(flc_store_t *s, const char *job, uint32_t round,
                                  flc_store_fields_t *out)
{
    return rec_getall(s, job, "merges", round, 0, NULL, out);
}

int flc_store_krum_partial_put(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                               const void *blob, size_t len)
{
    return rec_put(s, job, "krum", round, shard, blob, len);
}

int flc_store_krum_partial_getall(flc_store_t *s, const char *job, uint32_t round,
                                  flc_store_fields_t *out)
{
    return rec_getall(s, job, "krum", round, 0, NULL, out);
}

int flc_store_track_put(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                        const char *where)
{
    return rec_put(s, job, "where", round, shard, where, strlen(where));
}

int flc_store_track_getall(flc_store_t *s, const char *job, uint32_t round,
                           flc_store_fields_t *out)
{
    return rec_getall(s, job, "where", round, 0, NULL, out);
}

int flc_store_gram_get(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                       char **blob, size_t *len)
{
    char key[FLC_KEY_MAX], what[160];
    int rc = flc_store_shard_key(s, key, job, round, shard, "gram");
    if (rc != FLC_OK)
        return rc;
    snprintf(what, sizeof what, "Gram partial of shard %u of round %u of job %s", shard, round,
             job);
    return flc_store_blob_get(s, key, what, blob, len);
}

int flc_store_gram_put(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                       const void *blob, size_t len)
{
    char key[FLC_KEY_MAX];
    int rc = flc_store_shard_key(s, key, job, round, shard, "gram");
    return rc != FLC_OK ? rc : blob_put(s, key, blob, len);
}

int flc_store_opt_state_get(flc_store_t *s, const char *job, uint32_t shard, char **blob,
                            size_t *len)
{
    char key[FLC_KEY_MAX], what[160], tag[FLC_TAG_MAX];
    int rc = flc_store_shard_tag(s, job, shard, tag);
    if (rc != FLC_OK)
        return rc;
    flc_key_opt_state(key, tag);
    snprintf(what, sizeof what, "server state of shard %u of job %s", shard, job);
    return flc_store_blob_get(s, key, what, blob, len);
}

int flc_store_opt_state_put(flc_store_t *s, const char *job, uint32_t shard, const void *blob,
                            size_t len)
{
    char key[FLC_KEY_MAX], tag[FLC_TAG_MAX];
    int rc = flc_store_shard_tag(s, job, shard, tag);
    if (rc != FLC_OK)
        return rc;
    flc_key_opt_state(key, tag);
    return blob_put(s, key, blob, len);
}
