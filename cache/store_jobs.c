/* Jobs as the store knows them: each job keeps one shard count S, recorded
 * with the key-schema version in fl:{J/j}:schema (HSETNX, so the first run
 * decides), and its shard keys carry tags that depend on S (keys.h). This
 * file keeps the store's table of known counts, reads and writes the
 * schema record, refuses a job stored with schema 1 or with another S, and
 * builds shard keys from it. It also opens a round: the job indexes its
 * mergers write (roster, rounds, shards, clients), since clients no longer
 * write any shared key. */
#include "cache/store_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct flc_store_job *job_find(flc_store_t *s, const char *job)
{
    for (unsigned i = 0; i < s->njobs; i++)
        if (strcmp(s->jobs[i].name, job) == 0)
            return &s->jobs[i];
    return NULL;
}

static struct flc_store_job *job_add(flc_store_t *s, const char *job, uint32_t S)
{
    struct flc_store_job *j = job_find(s, job);
    if (j == NULL) {
        if (s->njobs < FLC_STORE_JOBS)
            j = &s->jobs[s->njobs++];
        else
            j = &s->jobs[s->jobs_next++ % FLC_STORE_JOBS];
        snprintf(j->name, sizeof j->name, "%s", job);
        j->recorded = 0;
    }
    j->S = S;
    return j;
}

void flc_store_job_drop(flc_store_t *s, const char *job)
{
    struct flc_store_job *j = job_find(s, job);
    if (j != NULL)
        *j = s->jobs[--s->njobs];
}

static int mismatch(flc_store_t *s, const char *job, uint32_t had, uint32_t asked)
{
    return flc_err_set(&s->err, FLC_EINVAL, "job '%s' was stored with %u shards; this run "
                       "asks %u", job, had, asked);
}

static int v1_refusal(flc_store_t *s, const char *job, const char *version)
{
    return flc_err_set(&s->err, FLC_EDATA, "job '%s' was stored with flcache key schema %s; "
                       "this flcache reads schema %d: run the job again (its old keys match "
                       "fl:{%s}*, fl:{%s/[0-9]* and fl:{%s/state/*)", job, version,
                       FLC_KEY_SCHEMA_VERSION, job, job, job);
}

int flc_store_job_shards(flc_store_t *s, const char *job, uint32_t S)
{
    flc_err_clear(&s->err);
    if (flc_name_check_job(job, &s->err) != FLC_OK)
        return s->err.code;
    if (S == 0)
        return flc_err_set(&s->err, FLC_EINVAL, "job '%s': a job has at least 1 shard", job);
    struct flc_store_job *j = job_find(s, job);
    if (j != NULL && j->S != S)
        return mismatch(s, job, j->S, S);
    job_add(s, job, S);
    return FLC_OK;
}

int flc_store_job_check_v1(flc_store_t *s, const char *job)
{
    char k_v1[FLC_KEY_MAX];
    flc_key_v1_rounds(k_v1, job);
    const char *argv[] = {"EXISTS", k_v1};
    redisReply *r;
    int rc = flc_store_command(s, &r, 2, argv, NULL);
    if (rc == FLC_EAUTH) {
        /* An ACL confined to the job's schema-2 keys (fl:{J/...) may not
         * read fl:{J}: such a user could not have used the old keys either. */
        flc_err_clear(&s->err);
        return FLC_OK;
    }
    if (rc != FLC_OK)
        return rc;
    int v1 = r->type == REDIS_REPLY_INTEGER && r->integer > 0;
    freeReplyObject(r);
    return v1 ? v1_refusal(s, job, "1") : FLC_OK;
}

/* Reads the schema record: *S = 0 when there is none. A record of another
 * version is refused. */
static int schema_read(flc_store_t *s, const char *job, uint32_t *S)
{
    *S = 0;
    char key[FLC_KEY_MAX];
    flc_key_job(key, job, "schema");
    const char *argv[] = {"HMGET", key, "version", "shards"};
    redisReply *r;
    int rc = flc_store_command(s, &r, 4, argv, NULL);
    if (rc != FLC_OK)
        return rc;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[0]->type == REDIS_REPLY_STRING) {
        char version[32];
        snprintf(version, sizeof version, "%.*s", (int)r->element[0]->len, r->element[0]->str);
        unsigned long v = strtoul(version, NULL, 10);
        if (v != FLC_KEY_SCHEMA_VERSION)
            rc = v1_refusal(s, job, version);
        else if (r->element[1]->type == REDIS_REPLY_STRING)
            *S = (uint32_t)strtoul(r->element[1]->str, NULL, 10);
    }
    freeReplyObject(r);
    return rc;
}

int flc_store_job_S(flc_store_t *s, const char *job, uint32_t *S)
{
    *S = 0;
    struct flc_store_job *j = job_find(s, job);
    if (j != NULL) {
        *S = j->S;
        return FLC_OK;
    }
    uint32_t got;
    int rc = schema_read(s, job, &got);
    if (rc != FLC_OK)
        return rc;
    if (got == 0) {
        if ((rc = flc_store_job_check_v1(s, job)) != FLC_OK)
            return rc;
        return flc_err_set(&s->err, FLC_ENOTFOUND, "job '%s' has no schema record "
                           "(fl:{%s/j}:schema), so its number of shards is unknown: unknown "
                           "job, or nothing of it was merged yet", job, job);
    }
    struct flc_store_job *n = job_add(s, job, got);
    n->recorded = 1;
    *S = got;
    return FLC_OK;
}

int flc_store_job_begin(flc_store_t *s, const char *job, uint32_t S)
{
    flc_err_clear(&s->err);
    if (flc_name_check_job(job, &s->err) != FLC_OK)
        return s->err.code;
    if (S == 0)
        return flc_err_set(&s->err, FLC_EINVAL, "job '%s': a job has at least 1 shard", job);
    struct flc_store_job *j = job_find(s, job);
    if (j != NULL && j->recorded)
        return j->S == S ? FLC_OK : mismatch(s, job, j->S, S);
    uint32_t had;
    int rc = schema_read(s, job, &had);
    if (rc == FLC_OK && had == 0) {
        /* A new job, unless an older flcache stored it. */
        if ((rc = flc_store_job_check_v1(s, job)) != FLC_OK)
            return rc;
        char key[FLC_KEY_MAX], ver[16], shards[16];
        flc_key_job(key, job, "schema");
        snprintf(ver, sizeof ver, "%d", FLC_KEY_SCHEMA_VERSION);
        snprintf(shards, sizeof shards, "%u", S);
        char ttl[24]; /* the expiry in the same write as the record */
        snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)s->opts.ttl_ms);
        const char *c1[] = {"HSETNX", key, "version", ver};
        const char *c2[] = {"HSETNX", key, "shards", shards};
        const char *c3[] = {"PEXPIRE", key, ttl};
        const char *const *cmds[] = {c1, c2, c3};
        const int argc[] = {4, 4, 3};
        redisReply *rs[3];
        int nc = s->opts.ttl_ms ? 3 : 2;
        rc = flc_store_pipeline(s, (size_t)nc, argc, cmds, rs);
        if (rc == FLC_OK) {
            for (int i = 0; i < nc && rc == FLC_OK; i++)
                if (rs[i]->type == REDIS_REPLY_ERROR)
                    rc = flc_store_reply_error(s, rs[i], "HSETNX");
            for (int i = 0; i < nc; i++)
                freeReplyObject(rs[i]);
        }
        /* Read back: another run starting the job at the same time may
         * have won the HSETNX with its own count. */
        if (rc == FLC_OK)
            rc = schema_read(s, job, &had);
    }
    if (rc != FLC_OK)
        return rc;
    if (had != S)
        return mismatch(s, job, had, S);
    job_add(s, job, S)->recorded = 1;
    return FLC_OK;
}

int flc_store_shard_tag(flc_store_t *s, const char *job, uint32_t shard, char *tag)
{
    uint32_t S;
    int rc = flc_store_job_S(s, job, &S);
    if (rc != FLC_OK)
        return rc;
    if (shard >= S)
        return flc_err_set(&s->err, FLC_EINVAL, "job '%s' has %u shards: there is no shard %u",
                           job, S, shard);
    flc_key_shard_tag(tag, job, shard, S);
    return FLC_OK;
}

int flc_store_shard_key(flc_store_t *s, char *out, const char *job, uint32_t round,
                        uint32_t shard, const char *suffix)
{
    char tag[FLC_TAG_MAX];
    int rc = flc_store_shard_tag(s, job, shard, tag);
    if (rc == FLC_OK)
        flc_key_shard(out, tag, round, suffix);
    return rc;
}

int flc_store_update_key(flc_store_t *s, char *out, const char *job, uint32_t round,
                         uint32_t shard, const char *client)
{
    char tag[FLC_TAG_MAX];
    int rc = flc_store_shard_tag(s, job, shard, tag);
    if (rc == FLC_OK)
        flc_key_update(out, tag, round, client);
    return rc;
}

/* ---- opening a round ------------------------------------------------------ */

int flc_store_round_begin(flc_store_t *s, const char *job, uint32_t S, uint32_t round,
                          uint32_t shard, const char *const *clients, size_t n)
{
    int rc = flc_store_job_begin(s, job, S);
    if (rc != FLC_OK)
        return rc;
    char k_roster[FLC_KEY_MAX], k_rounds[FLC_KEY_MAX], k_shards[FLC_KEY_MAX],
        k_clients[FLC_KEY_MAX], rnd[16], shd[16];
    flc_key_job_round(k_roster, job, "roster", round);
    flc_key_job(k_rounds, job, "rounds");
    flc_key_job_round(k_shards, job, "shards", round);
    flc_key_job(k_clients, job, "clients");
    snprintf(rnd, sizeof rnd, "%u", round);
    snprintf(shd, sizeof shd, "%u", shard);
    const char **roster = malloc((n + 2) * sizeof *roster);
    const char **all = malloc((n + 2) * sizeof *all);
    if (roster == NULL || all == NULL) {
        free(roster), free(all);
        return flc_err_set(&s->err, FLC_ENOMEM, "out of memory for %zu clients", n);
    }
    roster[0] = all[0] = "SADD";
    roster[1] = k_roster;
    all[1] = k_clients;
    for (size_t i = 0; i < n; i++)
        roster[2 + i] = all[2 + i] = clients[i];
    /* SADD and ZADD are idempotent: every shard's merger writes the same.
     * With a ttl, each key's PEXPIRE goes in the same pipeline, sent in one
     * write: a SIGKILL cannot fall between a key and its expiry (it did, in
     * tests/test_ttl_kill.c, when the expiries were a second round trip). */
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)s->opts.ttl_ms);
    const char *c3[] = {"ZADD", k_rounds, rnd, rnd}, *c4[] = {"SADD", k_shards, shd};
    const char *e1[] = {"PEXPIRE", k_roster, ttl}, *e2[] = {"PEXPIRE", k_clients, ttl},
               *e3[] = {"PEXPIRE", k_rounds, ttl}, *e4[] = {"PEXPIRE", k_shards, ttl};
    const char *const *cmds[8];
    int argc[8];
    size_t ncmd = 0;
    if (n > 0) {
        cmds[ncmd] = roster, argc[ncmd++] = (int)n + 2;
        cmds[ncmd] = all, argc[ncmd++] = (int)n + 2;
    }
    cmds[ncmd] = c3, argc[ncmd++] = 4;
    cmds[ncmd] = c4, argc[ncmd++] = 3;
    if (s->opts.ttl_ms) {
        if (n > 0) {
            cmds[ncmd] = e1, argc[ncmd++] = 3;
            cmds[ncmd] = e2, argc[ncmd++] = 3;
        }
        cmds[ncmd] = e3, argc[ncmd++] = 3;
        cmds[ncmd] = e4, argc[ncmd++] = 3;
    }
    redisReply *rs[8];
    rc = flc_store_pipeline(s, ncmd, argc, cmds, rs);
    free(roster), free(all);
    if (rc != FLC_OK)
        return rc;
    for (size_t i = 0; i < ncmd; i++) {
        if (rc == FLC_OK && rs[i]->type == REDIS_REPLY_ERROR)
            rc = flc_store_reply_error(s, rs[i], "indexing the round");
        freeReplyObject(rs[i]);
    }
    if (rc != FLC_OK)
        return flc_err_wrap(&s->err, "round %u of job %s: ", round, job);
    return FLC_OK;
}

int flc_store_index_expire(flc_store_t *s, const char *job, uint32_t round)
{
    flc_err_clear(&s->err);
    if (s->opts.ttl_ms == 0)
        return FLC_OK;
    if (flc_name_check_job(job, &s->err))
        return s->err.code;
    char k[5][FLC_KEY_MAX];
    flc_key_job(k[0], job, "schema");
    flc_key_job(k[1], job, "rounds");
    flc_key_job(k[2], job, "clients");
    flc_key_job_round(k[3], job, "shards", round);
    flc_key_job_round(k[4], job, "roster", round);
    const char *keys[] = {k[0], k[1], k[2], k[3], k[4]};
    return flc_store_expire_written(s, 5, keys);
}
