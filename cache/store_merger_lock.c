/* The merger's hold on its shard (store_ops.h): whether the shard is
 * closed, the lock a merger takes before it opens a round (its value says
 * which process holds it, so a rerun on the same host takes over the lock
 * of a merger that died), the open, who holds it, the unlock and the
 * close. Split from store_protocol.c, which keeps the small per-round
 * records and the values kept next to a shard. */
#include "cache/store_internal.h"

#include <errno.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "cache/keys.h"

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

/* holder_id and " #<n>", n new for every open, unless this store's last
 * open was of the same lock key: then that open's value again. A merger's
 * open resent by the store after a failover cut its reply (the first
 * attempt may have run and been replicated), or run again by its caller
 * for the same reason (workers/sgd_exchange.c merge_shard: CI 2026-11-30,
 * a `train` through a master kill stopped on "shard 0 already has a merger
 * running" naming its own process), must find the lock its own; a merger
 * of the same shard through another store (another thread of the same
 * process) must not. */
static void holder_id_once(flc_store_t *s, const char *key, char *out, size_t cap)
{
    static atomic_ulong opens;
    if (strcmp(s->open_key, key) == 0 && s->open_holder[0]) {
        snprintf(out, cap, "%s", s->open_holder);
        return;
    }
    holder_id(out, cap);
    size_t l = strlen(out);
    snprintf(out + l, cap - l, " #%lu", atomic_fetch_add(&opens, 1) + 1);
    snprintf(s->open_key, sizeof s->open_key, "%s", key);
    snprintf(s->open_holder, sizeof s->open_holder, "%s", out);
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
 * was taken (SET NX PX) or is already this open's (ARGV[1], holder_id_once:
 * the open was resent after a failover cut its reply, and the first
 * attempt had run), 0 when another holds it. Both keys share the
 * shard's tag, so it runs on its node of a Redis Cluster. */
static const char OPEN_SHARD[] =
    "if redis.call('EXISTS', KEYS[1]) == 1 then return 2 end "
    "if redis.call('GET', KEYS[2]) == ARGV[1] then "
    "  redis.call('PEXPIRE', KEYS[2], ARGV[2]) return 1 end "
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
    holder_id_once(s, k_owner, me, sizeof me); /* the same in a resend of this open */
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

