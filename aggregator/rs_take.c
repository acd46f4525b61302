/* Taking a merger's updates as they arrive: the wait on the expected
 * clients' arrival lists (one BLPOP over the pending ones, and a sweep of
 * what is already queued), reading each update (again on the promoted
 * replica when a failover cuts the read) and folding or keeping it, and
 * the rejections. Split from rs_merger.c, which opens, closes and merges
 * the round. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/rs_merger_internal.h"
#include "base/clock.h"
#include "base/crc32c.h"
#include "base/bigbuf.h"
#include "base/log.h"
#include "cache/encode.h"
#include "cache/store_ops.h"

/* Populated when big (flc_buf_alloc): a merger is new every round, and
 * the first read into a fresh malloc'd buffer took its page faults one
 * 4 KiB page at a time, each a trap to the hypervisor on these VMs
 * (bench/cluster's round, 3 nodes: every merger's first take cost 18-27 ms
 * of CPU, 12-18 ms populated, against ~1 ms for the next ones; all mergers
 * at once, at the start of the pushes). */
float *rs_new_buf(uint64_t n)
{
    return flc_buf_alloc((size_t)(n ? n : 1) * sizeof(float));
}

void rs_free_buf(float *p, uint64_t n)
{
    flc_buf_free(p, (size_t)(n ? n : 1) * sizeof(float));
}

void rs_reject(merger_t *m, const char *client, const char *fmt, const char *why)
{
    char line[400];
    snprintf(line, sizeof line, "%s: ", client);
    size_t l = strlen(line);
    snprintf(line + l, sizeof line - l, fmt, why);
    flc_strlist_add(&m->rep->rejected, line, strlen(line));
    FLC_INFO("merger %s/%u/%u rejected %s", m->cfg->job, m->cfg->round,
             m->cfg->shard, line);
}


/* An encoded update's blocks for the accumulator (flc_merge_acc_fold_fn). */
static void decode_block(void *user, size_t off, size_t m, float *dst)
{
    flc_enc_decode_range(user, off, m, dst);
}

/* The whole-update buffer, made when a whole update is first read (a
 * merger that folds by windows never needs one). */
static int ensure_buf(merger_t *m)
{
    if (m->buf == NULL && (m->buf = rs_new_buf(m->count)) == NULL)
        return flc_err_set(&m->oom, FLC_ENOMEM, "out of memory for a %llu-float update of "
                           "shard %u", (unsigned long long)m->count, m->cfg->shard);
    return FLC_OK;
}

/* A streaming rule decodes an encoded update as it folds (no decoded
 * copy); a collecting rule keeps the update, so it reads it decoded (one
 * merged window by window reads float32 ones at close: rs_defer.c). */
static int read_update(merger_t *m, const char *client, flc_shard_t *sh)
{
    const flc_rs_merger_cfg_t *cfg = m->cfg;
    const flc_rs_own_t *own = m->own;
    if (ensure_buf(m) != FLC_OK)
        return FLC_ENOMEM;
    if (own != NULL && own->update != NULL && strcmp(client, own->client) == 0) {
        /* This process's own contributor: its update is in memory, never
         * pushed for this shard; the frame it would have read, checked the
         * same way below. */
        memcpy(m->buf, own->update, m->count * sizeof *m->buf);
        memset(sh, 0, sizeof *sh);
        sh->values = m->buf;
        sh->offset = m->offset, sh->count = m->count;
        sh->model_size = cfg->model_size, sh->num_shards = cfg->num_shards;
        sh->shard = cfg->shard, sh->round = cfg->round;
        sh->weight = own->weight;
        sh->update_norm = own->norm;
        return FLC_OK;
    }
    return m->acc != NULL ? flc_store_get_update_raw(m->s, cfg->job, cfg->round, cfg->shard,
                                                     client, sh, m->buf, m->count)
                          : flc_store_get_update(m->s, cfg->job, cfg->round, cfg->shard, client,
                                                 sh, m->buf, m->count);
}

/* Reads one arrived update and folds or keeps it. Returns FLC_OK when it was
 * accepted, 1 when it was rejected (recorded), RS_TAKE_LOST when a failover
 * took it (nothing recorded), or a negative FLC_E* when the store failed
 * (the round cannot go on). */
static int take(merger_t *m, const char *client)
{
    const flc_rs_merger_cfg_t *cfg = m->cfg;
    if (m->win > 0 && m->acc != NULL &&
        (m->own == NULL || m->own->update == NULL || strcmp(client, m->own->client) != 0)) {
        int t = rs_take_windowed(m, client);
        if (t != RS_TAKE_WHOLE)
            return t;
    }
    if (m->acc == NULL && m->parts != NULL &&
        (m->own == NULL || m->own->update == NULL || strcmp(client, m->own->client) != 0)) {
        int t = rs_take_deferred(m, client);
        if (t != RS_TAKE_WHOLE)
            return t;
    }
    flc_shard_t sh = {0};
    int rc = read_update(m, client, &sh);
    /* A read cut by a failover (its node killed after the token was
     * popped) is read again from the promoted replica, as long as a
     * promotion may take. Found 2026-11-29: this read used to fail, and the
     * merger then went on to close the shard with the client counted as
     * seen but never folded, so a training step merged 3 of 4 gradients
     * and said "ok" (a different model, exit 0). */
    int cut = 0;
    flc_rs_backoff_t b = {0};
    while (flc_rs_recover_backoff(m->s, rc, &b)) {
        cut = 1;
        rc = read_update(m, client, &sh);
    }
    if (cut && rc == FLC_ENOTFOUND) {
        /* Gone with the dead master, announcement and all: like one never
         * sent. Its sender pushes it again (or the round names it missing). */
        FLC_INFO("merger %s/%u/%u: the update of %s went with a dead master; waiting for it "
                 "again", cfg->job, cfg->round, cfg->shard, client);
        return RS_TAKE_LOST;
    }
    if (rc == FLC_ECONN || rc == FLC_ETIMEOUT || rc == FLC_ENOMEM)
        return rc;
    if (rc != FLC_OK) {
        rs_reject(m, client, "%s", flc_store_errstr(m->s));
        return 1;
    }
    /* An encoded payload larger than the shard's floats (top-k of half an
     * odd-sized shard) comes in its own buffer: folded from there. */
    int owned = sh.values != m->buf && sh.encoding == FLC_ENC_F32;
    if (owned || sh.offset != m->offset || sh.count != m->count ||
        sh.model_size != cfg->model_size || sh.num_shards != cfg->num_shards) {
        char why[200];
        snprintf(why, sizeof why, "wrong dimensions: %llu floats at %llu of a %llu-float model "
                 "in %u shards, expected %llu at %llu of %llu in %u",
                 (unsigned long long)sh.count, (unsigned long long)sh.offset,
                 (unsigned long long)sh.model_size, sh.num_shards,
                 (unsigned long long)m->count, (unsigned long long)m->offset,
                 (unsigned long long)cfg->model_size, cfg->num_shards);
        flc_shard_release(&sh);
        rs_reject(m, client, "%s", why);
        return 1;
    }
    double w = flc_shard_merge_weight(&sh);
    double norm = sh.update_norm > 0 ? sh.update_norm : -1.0;
    if (cfg->rule.clip > 0) {
        double nn = norm > 0 ? norm
                    : sh.encoding != FLC_ENC_F32 ? 0 /* pushes always carry it */
                                                 : sqrt(flc_merge_sumsq(m->buf, m->count));
        if (nn > cfg->rule.clip)
            m->rep->clipped++;
    }
    flc_err_t me = {0};
    if (m->acc != NULL && sh.encoding != FLC_ENC_F32) {
        flc_enc_view_t v; /* checked by the read */
        flc_enc_view_init(&v, (int)sh.encoding, sh.values, m->count, sh.nnz);
        rc = flc_merge_acc_fold_fn(m->acc, m->count, w, norm, decode_block, &v, &me);
        flc_shard_release(&sh);
    } else if (m->acc != NULL) {
        rc = flc_merge_acc_fold(m->acc, m->buf, m->count, w, norm, &me);
        size_t pos;
        if (rc == FLC_ENONFINITE && flc_merge_check_finite(m->buf, m->count, &pos) != FLC_OK)
            flc_err_set(&me, rc, "%s at element %llu", isnan(m->buf[pos]) ? "NaN" : "Inf",
                        (unsigned long long)(m->offset + pos)); /* in model coordinates */
    } else {
        size_t pos;
        rc = flc_merge_check_finite(m->buf, m->count, &pos);
        if (rc != FLC_OK)
            flc_err_set(&me, rc, "%s at element %llu", isnan(m->buf[pos]) ? "NaN" : "Inf",
                        (unsigned long long)(m->offset + pos));
        if (rc == FLC_OK && !(w >= 0 && isfinite(w)))
            rc = flc_err_set(&me, FLC_EINVAL, "bad weight %g", w);
        if (rc == FLC_OK) {
            m->kept_idx[m->nkept] = m->kept_idx_next;
            m->kept[m->nkept] = m->buf;
            m->weight[m->nkept] = w;
            m->norm[m->nkept] = norm > 0 ? norm : sqrt(flc_merge_sumsq(m->buf, m->count));
            m->nkept++;
            m->buf = NULL; /* the next read makes one: K kept, not K + 1 */
        }
    }
    if (rc != FLC_OK) {
        rs_reject(m, client, "%s", me.msg);
        return 1;
    }
    flc_strlist_add(&m->rep->participants, client, strlen(client));
    /* The data path's trace (FLCACHE_LOG=debug): what each merger took and
     * wrote, comparable between two runs of the same job (a checksum of
     * the bytes, computed only when the trace is on). */
    if (flc_log_level() >= FLC_LOG_DEBUG) {
        const float *v = m->acc ? m->buf : m->kept[m->nkept - 1];
        FLC_DEBUG("merger %s/%u/%u took %s: %llu floats, crc32c %08x", cfg->job, cfg->round,
                  cfg->shard, client, (unsigned long long)m->count,
                  flc_crc32c(0, v, m->count * sizeof *v));
    }
    return FLC_OK;
}

/* Handles an arrival of expected client x: a repeat is counted, a new one
 * is taken. Negative only when the store failed. An unexpected client
 * cannot arrive: the merger waits only on expected clients' lists, so its
 * update stays under its own keys, unmerged and out of the roster. */
int rs_arrival(merger_t *m, size_t x)
{
    if (m->seen[x]) {
        m->rep->duplicates++; /* a retried push: the update was counted once */
        return FLC_OK;
    }
    m->kept_idx_next = (long)x;
    int t = take(m, m->cfg->expected[x]);
    if (t < 0 || t == RS_TAKE_LOST)
        return t < 0 ? t : FLC_OK; /* not seen: still waited for */
    /* Seen only now that it was taken or rejected: a client marked seen
     * whose update was never folded would be neither a participant nor
     * missing (the merge would silently leave it out). */
    m->seen[x] = 1;
    m->arrived++;
    for (size_t i = 0; i < m->npending; i++)
        if (m->pending_idx[i] == x) { /* no longer waited for */
            m->pending[i] = m->pending[m->npending - 1];
            m->pending_idx[i] = m->pending_idx[m->npending - 1];
            m->npending--;
            break;
        }
    return FLC_OK;
}

/* After a failover: takes the updates that are stored but whose arrival
 * was lost with the dead master (rs_recover.c); nothing otherwise. */
int rs_take_recovered(merger_t *m)
{
    const flc_rs_merger_cfg_t *cfg = m->cfg;
    flc_strlist_t found;
    int rc = FLC_OK;
    if (flc_rs_recover(m->s, cfg, m->seen, &m->recover, &found) != FLC_OK)
        return FLC_OK; /* warned there; the clients count as missing if never seen */
    for (size_t i = 0; rc == FLC_OK && i < found.n; i++)
        for (size_t x = 0; x < cfg->n_expected; x++)
            if (!m->seen[x] && strcmp(cfg->expected[x], found.items[i]) == 0) {
                rc = rs_arrival(m, x);
                break;
            }
    flc_strlist_free(&found);
    return rc;
}

/* Above this many clients still waited for, a wake-up also takes every
 * arrival that landed meanwhile in one round trip (flc_store_take_arrived)
 * instead of one BLPOP over all pending lists per arrival, which made a
 * round of K clients send and scan O(K^2) keys. Below it the BLPOPs are
 * cheap and the sweep would only add a round trip. */
#define SWEEP_MIN_PENDING 32

/* Takes the arrivals that are already queued (see SWEEP_MIN_PENDING). A
 * failed sweep is left to the next BLPOP (which meets the same failover);
 * negative only when taking an update failed in the store. */
static int sweep_arrivals(merger_t *m)
{
    const flc_rs_merger_cfg_t *cfg = m->cfg;
    size_t n = m->npending;
    if (n < SWEEP_MIN_PENDING)
        return FLC_OK;
    unsigned char *got = malloc(n);
    size_t *idx = malloc(n * sizeof *idx);
    int rc = FLC_OK;
    if (got != NULL && idx != NULL &&
        flc_store_take_arrived(m->s, cfg->job, cfg->round, cfg->shard, m->pending, n, got) ==
            FLC_OK) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) /* rs_arrival() reorders pending: indexes first */
            if (got[i])
                idx[k++] = m->pending_idx[i];
        for (size_t i = 0; rc == FLC_OK && i < k; i++)
            rc = rs_arrival(m, idx[i]);
    }
    free(got), free(idx);
    return rc;
}

/* Waits for the expected clients until all arrived or the deadline (from
 * t0) passed, taking each as it lands; *waited accumulates the blocked
 * time. One BLPOP over the lists of the clients not seen yet, so a client
 * that arrived is not waited for again. Returns the store's error (in *e)
 * when it failed; FLC_OK at the deadline too. */
int rs_wait_arrivals(merger_t *m, uint64_t t0, unsigned deadline, uint64_t *waited,
                         flc_err_t *e)
{
    const flc_rs_merger_cfg_t *cfg = m->cfg;
    int rc = FLC_OK;
    unsigned backoff = 0; /* ms, while a failover is under way */
    while (rc == FLC_OK && m->npending > 0) {
        double spent = (double)(flc_now_ns() - t0) / 1e6;
        if (spent >= deadline)
            break;
        size_t which;
        uint64_t w0 = flc_now_ns();
        int wr = flc_store_wait_arrival(m->s, cfg->job, cfg->round, cfg->shard, m->pending,
                                        m->npending, deadline - (unsigned)spent, &which);
        *waited += flc_now_ns() - w0;
        size_t got = wr == FLC_OK ? m->pending_idx[which] : 0; /* before pending changes */
        if ((rc = rs_take_recovered(m)) != FLC_OK) {
            *e = m->oom.code ? m->oom : *flc_store_error(m->s);
            return rc;
        }
        if (wr == FLC_ETIMEOUT)
            break;
        if (wr == FLC_ECONN && flc_rs_recover_retry(m->s)) {
            /* Its node died (a failover on a cluster): wait again once the
             * store follows the promoted replica, until the deadline; what
             * the dead node lost is found by take_recovered above. */
            backoff = backoff ? (backoff * 2 > 250 ? 250 : backoff * 2) : 50;
            flc_sleep_ms(backoff);
            continue;
        }
        if (wr != FLC_OK) {
            *e = *flc_store_error(m->s);
            return wr;
        }
        backoff = 0;
        if ((rc = rs_arrival(m, got)) != FLC_OK)
            *e = m->oom.code ? m->oom : *flc_store_error(m->s);
        else if ((rc = sweep_arrivals(m)) != FLC_OK)
            *e = m->oom.code ? m->oom : *flc_store_error(m->s);
    }
    return rc;
}

