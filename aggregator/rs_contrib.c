/* The contributor's and the reader's side of reduce-scatter: splitting an
 * update into shards and pushing them (through a failover, and waiting for
 * replication when the store is asked to), and rebuilding the model from
 * the merged shards once each merger signals. */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "aggregator/reduce_scatter.h"
#include "aggregator/rs_encode.h"
#include "base/clock.h"
#include "base/crc32c.h"
#include "base/log.h"
#include "cache/keys.h"
#include "cache/store_failover.h"
#include "cache/store_ops.h"

void flc_rs_shard_range(uint64_t n, uint32_t S, uint32_t s, uint64_t *offset, uint64_t *count)
{
    uint64_t base = n / S, rem = n % S;
    *count = base + (s < rem ? 1 : 0);
    *offset = (uint64_t)s * base + (s < rem ? s : rem);
}

static int check_layout(const char *job, uint32_t S, uint64_t n, flc_err_t *e)
{
    if (S == 0)
        return flc_err_set(e, FLC_EINVAL, "job %s: num_shards must be at least 1", job);
    if (n < S)
        return flc_err_set(e, FLC_EDIM, "job %s: a model of %llu floats cannot be split into %u "
                           "shards", job, (unsigned long long)n, S);
    return FLC_OK;
}

/* Pushes the shards and, when the store is asked to, waits until the
 * nodes' replicas have them (flc_store_replicated: an acknowledged update
 * then survives its master's failover). On a Redis Cluster a push cut by a
 * lost connection (its master killed) is pushed again, whole, once the
 * store follows the new map, for up to RS_PUSH_RETRY_MS: the whole push is
 * idempotent for the protocol (the value is rewritten with the same bytes,
 * the client set is a set, and a merger counts a repeated arrival once),
 * even though its arrival script alone is not for the store. The same goes
 * for a replication wait cut by a lost connection: what the dead node had
 * may be gone, so the update is pushed again. */
#define RS_PUSH_RETRY_MS 20000u
static int push_through_failover(flc_store_t *s, const flc_rs_push_cfg_t *cfg,
                                 const flc_shard_t *shards, uint32_t n, int *was_closed)
{
    uint64_t t0 = flc_now_ns();
    unsigned wait = 0;
    for (;;) {
        int rc = flc_store_put_updates_if_open(s, shards, n, was_closed);
        if (rc == FLC_OK) {
            char what[FLC_NAME_MAX + 16];
            snprintf(what, sizeof what, "update of %s", cfg->client);
            rc = flc_store_replicated(s, what);
        }
        if (rc == FLC_OK && wait > 0) {
            /* A shard found closed on a push sent again: the cut attempt's
             * arrival may have run and been taken by its merger, which then
             * closed. Not "late", then: if it was not taken, the merger
             * lists the client as missing, which the driver (sim) or the
             * step (train) names. */
            for (uint32_t k = 0; k < n; k++)
                was_closed[k] = 0;
        }
        if (rc != FLC_ECONN || !flc_store_fails_over(s) ||
            flc_now_ns() - t0 > (uint64_t)RS_PUSH_RETRY_MS * 1000000u)
            return rc;
        wait = wait ? (wait * 2 > 250 ? 250 : wait * 2) : 50;
        flc_sleep_ms(wait);
    }
}

static int push(flc_store_t *s, const flc_rs_push_cfg_t *cfg, const flc_enc_t *enc,
                const unsigned char *skip, const float *update, flc_err_t *e);

/* An order of the S shards of a round for one client's push or one
 * reader's pull (malloc'd; NULL when out of memory), for the r-th client or
 * reader: on a Redis Cluster consecutive shards lie on different nodes,
 * round robin over the owners, and the r-th starts at node r mod m (of m
 * nodes, in the order their first shards come) with that node's (r / m)-th
 * shard; on one node the rotation from shard r mod S.
 * Why: a push or a pull talks to one node at a time, and neighbouring
 * shards of a job often lie on one node (their tags are placed by the
 * slot table, cache/keys.h): a client that took several of one node's
 * shards in a row fed that node's link alone meanwhile
 * (bench/cluster's round, 3 nodes: the push took 0.8-0.95 s and the pull
 * 0.65-0.9 s where the busiest link needs 0.56 s each way); and readers
 * that alternated nodes from neighbouring starts (the same node first)
 * went through the nodes in step, all reading one node's shard at a time
 * while the other links idled (a trace: every reader on the same shard's
 * node at once, each read 115-130 ms instead of ~40). */
static uint32_t *spread_order(flc_store_t *s, const char *job, uint32_t round, uint32_t S,
                              uint32_t r)
{
    uint32_t *order = malloc(S * sizeof *order);
    unsigned *owner = malloc(S * sizeof *owner);
    unsigned *node = malloc(S * sizeof *node); /* the distinct owners, first come */
    uint32_t *cnt = calloc(S, sizeof *cnt), *at = calloc(S, sizeof *at);
    if (order == NULL || owner == NULL || node == NULL || cnt == NULL || at == NULL) {
        free(order), free(owner), free(node), free(cnt), free(at);
        return NULL;
    }
    if (flc_store_shard_owners(s, job, round, S, owner) != FLC_OK)
        for (uint32_t k = 0; k < S; k++) /* no map: the plain rotation */
            owner[k] = 0;
    /* owner[k] becomes the node's index in node[]; cnt[i] its shards */
    uint32_t m = 0;
    for (uint32_t k = 0; k < S; k++) {
        uint32_t i = 0;
        while (i < m && node[i] != owner[k])
            i++;
        if (i == m)
            node[m++] = owner[k];
        owner[k] = i;
        cnt[i]++;
    }
    /* start[i]: where node i's shards begin in a list grouped by node */
    uint32_t *start = node; /* node[] is not needed any more */
    for (uint32_t i = 0, sum = 0; i < m; sum += cnt[i], i++)
        start[i] = sum;
    uint32_t *byn = malloc(S * sizeof *byn); /* shards grouped by node, index order */
    if (byn == NULL) {
        free(order), free(owner), free(node), free(cnt), free(at);
        return NULL;
    }
    for (uint32_t k = 0; k < S; k++)
        byn[start[owner[k]] + at[owner[k]]++] = k;
    /* pass p takes shard (off + p) of every node still holding one, the
     * nodes from r mod m on */
    uint32_t n = 0, off = r / m;
    for (uint32_t p = 0; n < S; p++)
        for (uint32_t j = 0; j < m; j++) {
            uint32_t i = (r + j) % m;
            if (p < cnt[i])
                order[n++] = byn[start[i] + (off + p) % cnt[i]];
        }
    free(owner), free(node), free(cnt), free(at), free(byn);
    return order;
}

int flc_rs_push(flc_store_t *s, const flc_rs_push_cfg_t *cfg, const float *update, flc_err_t *e)
{
    return push(s, cfg, NULL, NULL, update, e);
}

int flc_rs_push_skip(flc_store_t *s, const flc_rs_push_cfg_t *cfg, const unsigned char *skip,
                     const float *update, flc_err_t *e)
{
    return push(s, cfg, NULL, skip, update, e);
}

int flc_rs_push_enc(flc_store_t *s, const flc_rs_push_cfg_t *cfg, const flc_enc_t *enc,
                    const float *update, flc_err_t *e)
{
    return push(s, cfg, enc, NULL, update, e);
}

static int push(flc_store_t *s, const flc_rs_push_cfg_t *cfg, const flc_enc_t *enc,
                const unsigned char *skip, const float *update, flc_err_t *e)
{
    if (enc != NULL && enc->kind == FLC_ENC_F32)
        enc = NULL; /* the plain frame */
    if (enc != NULL && skip != NULL) /* its merger would take the floats, not the code */
        return flc_err_set(e, FLC_EINVAL, "update of client %s: skipped shards need float32 "
                           "pushes", cfg->client);
    int rc = check_layout(cfg->job, cfg->num_shards, cfg->model_size, e);
    if (rc != FLC_OK)
        return rc;
    /* Refuse NaN/Inf before anything is stored: a merger would refuse the
     * shard anyway, and a half-pushed update helps nobody. The norm's pass
     * finds them: a double sum of squares of finite floats cannot overflow
     * (each at most 1.2e77), so it is finite exactly when every element is
     * (one pass over the update instead of two; only a bad one is searched). */
    double ss = flc_merge_sumsq(update, cfg->model_size);
    size_t pos;
    if (!isfinite(ss) && flc_merge_check_finite(update, cfg->model_size, &pos) != FLC_OK)
        return flc_err_set(e, FLC_ENONFINITE, "update of client %s for round %u of job %s has "
                           "%s at element %zu; not pushed", cfg->client, cfg->round, cfg->job,
                           isnan(update[pos]) ? "NaN" : "Inf", pos);
    double norm = sqrt(ss);
    /* Encoded (rs_encode.c): the payloads, and top-k's residuals to keep. */
    flc_rs_encoded_t ed = {0};
    if (enc != NULL && (rc = flc_rs_encode(s, cfg, enc, update, &ed, e)) != FLC_OK)
        return rc;
    if (enc != NULL)
        norm = ed.norm;
    flc_shard_t sh = {0};
    if (snprintf(sh.job, sizeof sh.job, "%s", cfg->job) >= (int)sizeof sh.job ||
        snprintf(sh.client, sizeof sh.client, "%s", cfg->client) >= (int)sizeof sh.client)
        return flc_rs_encoded_free(&ed),
               flc_err_set(e, FLC_EINVAL, "job or client name over %d characters", FLC_NAME_MAX);
    sh.round = cfg->round;
    sh.num_shards = cfg->num_shards;
    sh.model_size = cfg->model_size;
    sh.num_samples = cfg->num_samples;
    sh.weight = cfg->num_samples ? (double)cfg->num_samples : 1.0;
    sh.update_norm = norm;
    sh.created_ms = flc_wall_ms();
    /* All shards in one pipelined round trip (one per shard would make a
     * reduce-scatter push cost S round trips). */
    flc_shard_t *shards = malloc(cfg->num_shards * sizeof *shards);
    int *was_closed = calloc(cfg->num_shards, sizeof *was_closed);
    if (shards == NULL || was_closed == NULL) {
        free(shards), free(was_closed);
        flc_rs_encoded_free(&ed);
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    }
    uint32_t npush = 0;
    uint32_t *at = malloc(cfg->num_shards * sizeof *at); /* push order -> shard */
    /* Each client starts at a node and shard of its own. */
    uint32_t r = flc_crc32c(0, cfg->client, strlen(cfg->client));
    uint32_t *order = at ? spread_order(s, cfg->job, cfg->round, cfg->num_shards, r) : NULL;
    if (order == NULL) {
        free(shards), free(was_closed), free(at);
        flc_rs_encoded_free(&ed);
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    }
    for (uint32_t j = 0; j < cfg->num_shards; j++) {
        uint32_t k = order[j], i = npush;
        if (skip != NULL && skip[k])
            continue; /* its merger takes it from memory */
        at[npush++] = k;
        shards[i] = sh;
        shards[i].shard = k;
        flc_rs_shard_range(cfg->model_size, cfg->num_shards, k, &shards[i].offset,
                           &shards[i].count);
        shards[i].values = (float *)(update + shards[i].offset);
        if (enc != NULL) { /* the encoded payload in place of the floats */
            shards[i].encoding = (uint32_t)enc->kind;
            shards[i].nnz = ed.nnz[k];
            shards[i].values = (float *)(void *)(ed.payload + ed.at[k]);
        }
    }
    if (flc_log_level() >= FLC_LOG_DEBUG) /* the data path's trace (rs_merger.c) */
        FLC_DEBUG("push of %s for %s/%u: %llu floats, crc32c %08x", cfg->client, cfg->job,
                  cfg->round, (unsigned long long)cfg->model_size,
                  flc_crc32c(0, update, cfg->model_size * sizeof *update));
    free(order);
    rc = npush ? push_through_failover(s, cfg, shards, npush, was_closed) : FLC_OK;
    free(shards);
    /* Stored (also when a shard was closed: the update is kept) */
    int cr = rc == FLC_OK ? flc_rs_encode_commit(s, cfg, &ed, e) : FLC_OK;
    flc_rs_encoded_free(&ed);
    if (cr != FLC_OK) {
        free(was_closed), free(at);
        return cr;
    }
    if (rc != FLC_OK) {
        free(was_closed), free(at);
        *e = *flc_store_error(s);
        return e->code;
    }
    char closed[512] = "";
    size_t nclosed = 0;
    for (uint32_t i = 0; i < npush; i++) {
        uint32_t k = at[i]; /* was_closed follows the push order */
        if (was_closed[i]) {
            /* the merger has gone; the update stays for queries */
            size_t l = strlen(closed);
            if (l + 16 < sizeof closed)
                snprintf(closed + l, sizeof closed - l, "%s%u", nclosed ? "," : "", k);
            nclosed++;
        }
    }
    free(was_closed);
    free(at);
    if (nclosed)
        return flc_err_set(e, FLC_ECLOSED, "round %u of job %s is closed (shard%s %s): update "
                           "of client %s kept for queries but not merged", cfg->round, cfg->job,
                           nclosed > 1 ? "s" : "", closed, cfg->client);
    return FLC_OK;
}

int flc_rs_pull(flc_store_t *s, const char *job, uint32_t round, uint32_t num_shards,
                uint64_t model_size, unsigned timeout_ms, float *model, flc_err_t *e)
{
    return flc_rs_pull_except(s, job, round, num_shards, model_size, timeout_ms, NULL, model, e);
}

static int pull_in_order(flc_store_t *s, const char *job, uint32_t round, uint32_t num_shards,
                         uint64_t model_size, unsigned timeout_ms, const unsigned char *have,
                         const uint32_t *order, float *model, flc_err_t *e);

int flc_rs_pull_except(flc_store_t *s, const char *job, uint32_t round, uint32_t num_shards,
                       uint64_t model_size, unsigned timeout_ms, const unsigned char *have,
                       float *model, flc_err_t *e)
{
    int rc = check_layout(job, num_shards, model_size, e);
    if (rc != FLC_OK)
        return rc;
    /* The reader knows the job's shard count: where its shards live. */
    if (flc_store_job_shards(s, job, num_shards) != FLC_OK) {
        *e = *flc_store_error(s);
        return e->code;
    }
    /* Shard by shard: reading shard k overlaps with later mergers still
     * working, and each wait is on one key (fine on a Redis Cluster).
     * Readers start at different nodes (threads of one process at
     * successive ones) and alternate nodes (spread_order), so concurrent
     * pulls spread over the nodes' links instead of all reading one. */
    static atomic_uint next_reader;
    uint32_t pid = (uint32_t)getpid();
    uint32_t r = atomic_fetch_add(&next_reader, 1u) + flc_crc32c(0, &pid, sizeof pid);
    uint32_t *order = spread_order(s, job, round, num_shards, r);
    if (order == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    rc = pull_in_order(s, job, round, num_shards, model_size, timeout_ms, have, order, model, e);
    free(order);
    return rc;
}

#define PULL_NOT_YET 1

/* Waits up to wait_ms for shard k's done token and reads the merged shard
 * into model. PULL_NOT_YET when no token came within wait_ms (e untouched);
 * t0 and timeout_ms bound the waits of a failover. */
static int pull_one(flc_store_t *s, const char *job, uint32_t round, uint32_t num_shards,
                    uint64_t model_size, uint32_t k, unsigned wait_ms, uint64_t t0,
                    unsigned timeout_ms, float *model, flc_err_t *e)
{
    char token[256];
    uint64_t off, cnt;
    flc_rs_shard_range(model_size, num_shards, k, &off, &cnt);
    flc_shard_t m = {0};
    /* The wait and the read in one round trip (the read runs once the
     * token is there). */
    int rc = flc_store_wait_get_merged(s, job, round, k, wait_ms, token, sizeof token, &m,
                                       model + off, cnt);
    /* Its node died (a failover) before the token came back: wait
     * again on the promoted replica, within the round's timeout, then
     * read (below); cut after the token came back: only the read is
     * made again (below). */
    int waited = rc != FLC_ECONN || token[0] != '\0';
    for (unsigned w = 50; !waited && rc == FLC_ECONN && flc_store_fails_over(s);
         w = w * 2 > 250 ? 250 : w * 2) {
        double spent = (double)(flc_now_ns() - t0) / 1e6;
        if (spent + w >= timeout_ms)
            break;
        flc_sleep_ms(w);
        unsigned left = timeout_ms - (unsigned)spent - w;
        rc = flc_store_wait(s, job, round, k, "done", left, token, sizeof token);
        if (rc == FLC_OK && strncmp(token, "ok", 2) == 0) {
            rc = FLC_ECONN; /* the read is still to be made, below */
            break;
        }
    }
    if (rc == FLC_ETIMEOUT && token[0] == '\0')
        return PULL_NOT_YET; /* (with a token, the read after it timed out: an error) */
    if (rc == FLC_OK && strncmp(token, "ok", 2) != 0)
        return flc_err_set(e, FLC_EINVAL, "round %u of job %s: merger of shard %u failed: %s",
                           round, job, k, token);
    /* A read cut by a lost connection (a failover) is read again. */
    for (unsigned wait = 100, spent2 = 0;
         rc == FLC_ECONN && flc_store_fails_over(s) && spent2 < RS_PUSH_RETRY_MS;
         spent2 += wait, wait = wait * 2 > 1000 ? 1000 : wait * 2) {
        flc_sleep_ms(wait);
        rc = flc_store_get_merged(s, job, round, k, &m, model + off, cnt);
    }
    if (rc != FLC_OK) {
        *e = *flc_store_error(s);
        return rc;
    }
    int fits = m.values == model + off && m.offset == off && m.count == cnt;
    flc_shard_release(&m);
    if (fits && flc_log_level() >= FLC_LOG_DEBUG)
        FLC_DEBUG("pull of %s/%u shard %u: crc32c %08x", job, round, k,
                  flc_crc32c(0, model + off, cnt * sizeof *model));
    if (!fits)
        return flc_err_set(e, FLC_EDIM, "round %u of job %s: merged shard %u holds %llu "
                           "floats at %llu, expected %llu at %llu", round, job, k,
                           (unsigned long long)m.count, (unsigned long long)m.offset,
                           (unsigned long long)cnt, (unsigned long long)off);
    return FLC_OK;
}

/* Reads the shards in the given order, each wait up to the time left. (A
 * reader that went on to shards already merged, waiting on each due shard
 * a few ms at a time, was slower on the cluster bench: its reads of merged
 * values behind waits that had just timed out crossed the links for
 * nothing.) */
static int pull_in_order(flc_store_t *s, const char *job, uint32_t round, uint32_t num_shards,
                         uint64_t model_size, unsigned timeout_ms, const unsigned char *have,
                         const uint32_t *order, float *model, flc_err_t *e)
{
    uint64_t t0 = flc_now_ns();
    for (uint32_t i = 0; i < num_shards; i++) {
        uint32_t k = order[i];
        if (have != NULL && have[k])
            continue; /* merged in this process, already in model */
        double spent = (double)(flc_now_ns() - t0) / 1e6;
        unsigned left = spent >= timeout_ms ? 1 : timeout_ms - (unsigned)spent;
        int rc = pull_one(s, job, round, num_shards, model_size, k, left, t0, timeout_ms, model,
                          e);
        if (rc == PULL_NOT_YET)
            return flc_err_set(e, FLC_ETIMEOUT, "round %u of job %s: shard %u and %u more not "
                               "merged within %u ms", round, job, k, num_shards - 1 - i,
                               timeout_ms);
        if (rc != FLC_OK)
            return rc;
    }
    return FLC_OK;
}
