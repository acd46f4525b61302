/* store_rm.c - a whole job's lifecycle: removing it (`flcache store rm`),
 * giving every key of it an expiry (`--ttl`), and dating it (`store ls`,
 * `store expire --before`).
 *
 * Every key of job J starts with "fl:{J/" and no other job's does (key
 * schema 2: names hold no '/', the series J/g and J/steps are under it), so
 * "all of J" is the SCAN pattern fl:{J/ followed by * on every master, and nothing is
 * missed that the indexes do not name (an unexpected client's update, a
 * crashed run's tmp or lock keys). SCAN walks the whole keyspace of each
 * master, in steps of COUNT 1000 keys: a cost proportional to the cache, paid
 * only by these commands, never by a round or a query. Each found batch is
 * handled in one pipeline, one key per command (a job's keys sit under many
 * hash tags, so a multi-key UNLINK would cross slots on a cluster); UNLINK
 * frees the memory in the server's background thread.
 *
 * The cold tier's copies are found by listing the backend with the encoded
 * prefix of "fl:{J/" (cold.h flc_cold_del_prefix), for the same reason. */
#include "cache/cold_tier_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RM_SCAN_COUNT "1000"

/* The pattern fl:{J/ then * , with the glob characters of J escaped. Valid names hold none
 * ([A-Za-z0-9_.@+-]); '{' and '/' are literal in Redis globs. */
static void job_pattern(char *out, size_t cap, const char *job)
{
    size_t o = (size_t)snprintf(out, cap, "fl:{");
    for (const char *p = job; *p && o + 4 < cap; p++) {
        if (strchr("*?[]\\^", *p))
            out[o++] = '\\';
        out[o++] = *p;
    }
    snprintf(out + o, cap - o, "/*");
}

typedef enum { OP_RM, OP_COUNT, OP_EXPIRE } op_t;

typedef struct walk {
    op_t op;
    const char *ttl; /* OP_EXPIRE: milliseconds, or NULL: PERSIST */
    flc_store_job_report_t *rep;
} walk_t;

/* One batch of keys found on a node: MEMORY USAGE and UNLINK (rm), MEMORY
 * USAGE alone (dry run), PEXPIRE / PERSIST (expiry), in one pipeline. */
static int handle_batch(flc_store_t *s, const redisReply *keys, walk_t *w, uint64_t *found)
{
    size_t nk = keys->elements, per = w->op == OP_RM ? 2 : 1, n = nk * per;
    if (nk == 0)
        return FLC_OK;
    const char ***cmds = malloc(n * sizeof *cmds);
    const char **args = malloc(n * 5 * sizeof *args);
    int *argc = malloc(n * sizeof *argc);
    redisReply **rs = calloc(n, sizeof *rs);
    int rc = FLC_OK;
    if (!cmds || !args || !argc || !rs) {
        rc = flc_err_set(&s->err, FLC_ENOMEM, "out of memory for %zu keys", nk);
        goto out;
    }
    for (size_t i = 0; i < nk; i++) {
        const char *k = keys->element[i]->str;
        for (size_t j = 0; j < per; j++) {
            size_t c = i * per + j;
            const char **a = args + c * 5;
            cmds[c] = a;
            if (w->op == OP_EXPIRE) {
                a[0] = w->ttl ? "PEXPIRE" : "PERSIST", a[1] = k, a[2] = w->ttl;
                argc[c] = w->ttl ? 3 : 2;
            } else if (j == 0) {
                /* SAMPLES 0: every element of a hash of chunks, exact. */
                a[0] = "MEMORY", a[1] = "USAGE", a[2] = k, a[3] = "SAMPLES", a[4] = "0";
                argc[c] = 5;
            } else {
                a[0] = "UNLINK", a[1] = k;
                argc[c] = 2;
            }
        }
    }
    rc = flc_store_pipeline(s, n, argc, (const char *const *const *)cmds, rs);
    for (size_t c = 0; rc == FLC_OK && c < n; c++) {
        const redisReply *r = rs[c];
        if (r->type == REDIS_REPLY_ERROR) {
            rc = flc_store_reply_error(s, r, cmds[c][0]);
            break;
        }
        size_t j = c % per;
        if (w->op == OP_EXPIRE) {
            if (r->type == REDIS_REPLY_INTEGER && r->integer == 1)
                w->rep->keys++, (*found)++;
        } else if (j == 0) {
            if (r->type == REDIS_REPLY_INTEGER)
                w->rep->bytes += (uint64_t)r->integer;
            if (w->op == OP_COUNT && r->type == REDIS_REPLY_INTEGER)
                w->rep->keys++, (*found)++; /* nil: gone since the SCAN */
        } else if (r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
            w->rep->keys++, (*found)++;
        }
    }
out:
    for (size_t c = 0; rs && c < n; c++)
        if (rs[c])
            freeReplyObject(rs[c]);
    free(rs), free(argc), free(args), free(cmds);
    return rc;
}

/* SCAN the node the store talks to now (cluster: node) for the pattern,
 * handling each batch. */
static int walk_node(flc_store_t *s, const char *pattern, int cluster, unsigned node, walk_t *w,
                     uint64_t *found)
{
    char cursor[32] = "0";
    do {
        /* The batch's keyed commands move the store's keyless node: back
         * to this one before each SCAN step. */
        int rc = cluster ? flc_store_cl_use_node(s, node) : FLC_OK;
        if (rc != FLC_OK)
            return rc;
        const char *argv[] = {"SCAN", cursor, "MATCH", pattern, "COUNT", RM_SCAN_COUNT};
        redisReply *r;
        if ((rc = flc_store_command(s, &r, 6, argv, NULL)) != FLC_OK)
            return rc;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING ||
            r->element[1]->type != REDIS_REPLY_ARRAY) {
            rc = r->type == REDIS_REPLY_ERROR
                     ? flc_store_reply_error(s, r, "SCAN")
                     : flc_err_set(&s->err, FLC_EPROTO, "SCAN %s: unexpected reply", pattern);
            freeReplyObject(r);
            return rc;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        rc = handle_batch(s, r->element[1], w, found);
        freeReplyObject(r);
        if (rc != FLC_OK)
            return rc;
    } while (strcmp(cursor, "0") != 0);
    return FLC_OK;
}

/* Every master (or the one server): rep->keys, rep->bytes, rep->nodes. */
static int walk_job(flc_store_t *s, const char *job, walk_t *w)
{
    char pattern[FLC_KEY_MAX];
    job_pattern(pattern, sizeof pattern, job);
    int rc = flc_store_ensure(s);
    if (rc != FLC_OK)
        return rc;
    if (!flc_store_is_cluster(s)) {
        uint64_t found = 0;
        rc = walk_node(s, pattern, 0, 0, w, &found);
        w->rep->nodes += found > 0;
        return rc;
    }
    unsigned m[64];
    size_t n = 0;
    rc = flc_store_cl_masters(s, m, 64, &n);
    for (size_t i = 0; rc == FLC_OK && i < n; i++) {
        uint64_t found = 0;
        rc = walk_node(s, pattern, 1, m[i], w, &found);
        w->rep->nodes += found > 0;
    }
    return rc;
}

/* A job, or one series of it ("J/steps": fl:{J/steps/ then *, only that
 * series; `flcache train` removes an interrupted run's steps so). */
static int check_job(flc_store_t *s, const char *job)
{
    flc_err_clear(&s->err);
    return flc_name_check_job(job, &s->err);
}

/* The store forgets the shard counts it knew of the job and its series. */
static void drop_known(flc_store_t *s, const char *job)
{
    static const char *const series[] = {"", "/g", "/steps"};
    for (size_t i = 0; i < sizeof series / sizeof *series; i++) {
        char name[FLC_NAME_MAX + 16];
        snprintf(name, sizeof name, "%s%s", job, series[i]);
        flc_store_job_drop(s, name);
    }
}

int flc_store_job_rm(flc_store_t *s, const char *job, int dry_run, flc_store_job_report_t *rep)
{
    memset(rep, 0, sizeof *rep);
    int rc = check_job(s, job);
    if (rc != FLC_OK)
        return rc;
    walk_t w = {.op = dry_run ? OP_COUNT : OP_RM, .rep = rep};
    rc = walk_job(s, job, &w);
    if (rc != FLC_OK)
        return flc_err_wrap(&s->err, "removing job '%s': ", job);
    if (!dry_run)
        drop_known(s, job);
    if (s->tier != NULL && s->tier->cold != NULL) {
        char prefix[FLC_KEY_MAX];
        snprintf(prefix, sizeof prefix, "fl:{%s/", job);
        rc = flc_cold_del_prefix(s->tier->cold, prefix, dry_run, &rep->cold_objects,
                                 &rep->cold_bytes);
        if (rc != FLC_OK)
            return flc_err_set(&s->err, rc, "removing job '%s' from the cold tier: %s", job,
                               flc_cold_errstr(s->tier->cold));
    }
    if (rep->keys == 0 && rep->cold_objects == 0)
        return flc_err_set(&s->err, FLC_ENOTFOUND, "no job '%s' in the cache (no key matches "
                           "fl:{%s/*%s)", job, job, s->tier ? ", nothing in the cold tier" : "");
    return FLC_OK;
}

int flc_store_job_expire(flc_store_t *s, const char *job, uint64_t ttl_ms,
                         flc_store_job_report_t *rep)
{
    memset(rep, 0, sizeof *rep);
    int rc = check_job(s, job);
    if (rc != FLC_OK)
        return rc;
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%llu", (unsigned long long)ttl_ms);
    walk_t w = {.op = OP_EXPIRE, .ttl = ttl_ms ? ttl : NULL, .rep = rep};
    rc = walk_job(s, job, &w);
    if (rc != FLC_OK)
        return flc_err_wrap(&s->err, "setting the expiry of job '%s': ", job);
    return FLC_OK;
}

/* The last round of one series of the job and its time (RoundMeta
 * closed_ms, else started_ms). */
static int series_last(flc_store_t *s, const char *name, int own, flc_store_job_age_t *a)
{
    char key[FLC_KEY_MAX];
    flc_key_job(key, name, "rounds");
    const char *c1[] = {"ZCARD", key}, *c2[] = {"ZRANGE", key, "-1", "-1"};
    const char *const *cmds[] = {c1, c2};
    const int argc[] = {2, 4};
    redisReply *rs[2];
    int rc = flc_store_pipeline(s, 2, argc, cmds, rs);
    if (rc != FLC_OK)
        return rc;
    uint32_t last = 0;
    long long nr = rs[0]->type == REDIS_REPLY_INTEGER ? rs[0]->integer : 0;
    int has = rs[1]->type == REDIS_REPLY_ARRAY && rs[1]->elements == 1;
    if (has)
        last = (uint32_t)strtoul(rs[1]->element[0]->str, NULL, 10);
    freeReplyObject(rs[0]);
    freeReplyObject(rs[1]);
    if (!has)
        return FLC_OK;
    if (own) {
        a->rounds = (uint64_t)nr;
        a->last_round = last;
    }
    Flcache__RoundMeta *m = NULL;
    rc = flc_store_get_round_meta(s, name, last, &m);
    if (rc == FLC_ENOTFOUND) {
        flc_err_clear(&s->err);
        return FLC_OK;
    }
    if (rc != FLC_OK)
        return rc;
    uint64_t t = m->closed_ms > m->started_ms ? m->closed_ms : m->started_ms;
    if (t > a->last_ms)
        a->last_ms = t;
    flcache__round_meta__free_unpacked(m, NULL);
    return FLC_OK;
}

int flc_store_job_age(flc_store_t *s, const char *job, flc_store_job_age_t *a)
{
    memset(a, 0, sizeof *a);
    int rc = check_job(s, job);
    if (rc != FLC_OK)
        return rc;
    /* The job's own rounds; the series' (models J/g, steps J/steps) can be
     * newer than the last recorded round of a run that was cut short. */
    static const char *const series[] = {"", "/g", "/steps"};
    for (size_t i = 0; rc == FLC_OK && i < sizeof series / sizeof *series; i++) {
        char name[FLC_NAME_MAX + 16];
        snprintf(name, sizeof name, "%s%s", job, series[i]);
        if (strlen(name) <= FLC_NAME_MAX) /* a longer series cannot exist */
            rc = series_last(s, name, i == 0, a);
    }
    return rc == FLC_OK ? FLC_OK : flc_err_wrap(&s->err, "dating job '%s': ", job);
}
