/* The merger of one shard for one round: open the round (the job indexes
 * and the roster of expected clients), wait for arrivals (one BLPOP over
 * the arrival lists of the expected clients not seen yet, never polling),
 * fold or collect each update as it lands, close the shard, merge, write
 * the merged shard, record the report and wake the readers. See
 * reduce_scatter.h for the protocol. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/dp.h"
#include "aggregator/query.h"
#include "aggregator/rs_internal.h"
#include "aggregator/rs_recover.h"
#include "aggregator/tracker.h"
#include "base/clock.h"
#include "base/crc32c.h"
#include "base/log.h"
#include "cache/encode.h"
#include "cache/keys.h"
#include "cache/store_ops.h"

/* Everything one merger run holds; freed by merger_free. */
typedef struct merger {
    flc_store_t *s;
    const flc_rs_merger_cfg_t *cfg;
    flc_rs_report_t *rep;
    uint64_t offset, count;
    unsigned char *seen;      /* per expected client: arrived (accepted or rejected) */
    const char **pending;     /* expected clients not seen yet (the wait's lists) */
    size_t *pending_idx;      /* their indexes in cfg->expected */
    size_t npending;
    flc_merge_acc_t *acc;     /* streaming rules */
    float *buf;               /* where the next update is read */
    float **kept;             /* collecting rules: the updates, in arrival order */
    double *weight, *norm;    /* per kept update */
    size_t nkept;
    long *kept_idx;           /* per kept update: its index in cfg->expected */
    long kept_idx_next;       /* expected index of the update being taken */
    size_t arrived;           /* distinct expected clients announced */
    flc_err_t oom;            /* set when the merger itself ran out of memory */
    flc_merge_state_t *own_state; /* state loaded from the cache, saved after */
    flc_rs_recover_t recover; /* the store's failover count last seen (rs_recover.c) */
    int notified;             /* the done tokens went with the merged shard */
    const flc_rs_own_t *own;  /* this process's own contributor, or NULL */
} merger_t;

static void merger_free(merger_t *m)
{
    free(m->seen);
    free(m->pending);
    free(m->pending_idx);
    flc_merge_acc_free(m->acc);
    free(m->buf);
    for (size_t i = 0; i < m->nkept; i++)
        free(m->kept[i]);
    free(m->kept);
    free(m->weight);
    free(m->norm);
    free(m->kept_idx);
    flc_merge_state_free(m->own_state);
}

static float *new_buf(uint64_t n)
{
    return malloc((size_t)(n ? n : 1) * sizeof(float));
}

static void reject(merger_t *m, const char *client, const char *fmt, const char *why)
{
    char line[400];
    snprintf(line, sizeof line, "%s: ", client);
    size_t l = strlen(line);
    snprintf(line + l, sizeof line - l, fmt, why);
    flc_strlist_add(&m->rep->rejected, line, strlen(line));
    FLC_INFO("merger %s/%u/%u rejected %s", m->cfg->job, m->cfg->round,
             m->cfg->shard, line);
}

#define TAKE_LOST 2 /* take(): the update went with a dead master; not taken */

/* An encoded update's blocks for the accumulator (flc_merge_acc_fold_fn). */
static void decode_block(void *user, size_t off, size_t m, float *dst)
{
    flc_enc_decode_range(user, off, m, dst);
}

/* A streaming rule decodes an encoded update as it folds (no decoded
 * copy); a collecting rule keeps the update, so it reads it decoded. */
static int read_update(merger_t *m, const char *client, flc_shard_t *sh)
{
    const flc_rs_merger_cfg_t *cfg = m->cfg;
    const flc_rs_own_t *own = m->own;
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
 * accepted, 1 when it was rejected (recorded), TAKE_LOST when a failover
 * took it (nothing recorded), or a negative FLC_E* when the store failed
 * (the round cannot go on). */
static int take(merger_t *m, const char *client)
{
    const flc_rs_merger_cfg_t *cfg = m->cfg;
    flc_shard_t sh = {0};
    int rc = read_update(m, client, &sh);
    /* A read cut by a failover (its node killed after the token was
     * popped) is read again from the promoted replica, as long as a
     * promotion may take. Found 2026-11-29: this read used to fail, and the
     * merger then went on to close the shard with the client counted as
     * seen but never folded, so a training step merged 3 of 4 gradients
     * and said "ok" (a different model, exit 0). */
    int cut = 0;
    for (unsigned w = 50, spent = 0;
         rc == FLC_ECONN && flc_rs_recover_retry(m->s) && spent < 20000;
         spent += w, w = w * 2 > 250 ? 250 : w * 2) {
        cut = 1;
        flc_sleep_ms(w);
        rc = read_update(m, client, &sh);
    }
    if (cut && rc == FLC_ENOTFOUND) {
        /* Gone with the dead master, announcement and all: like one never
         * sent. Its sender pushes it again (or the round names it missing). */
        FLC_INFO("merger %s/%u/%u: the update of %s went with a dead master; waiting for it "
                 "again", cfg->job, cfg->round, cfg->shard, client);
        return TAKE_LOST;
    }
    if (rc == FLC_ECONN || rc == FLC_ETIMEOUT || rc == FLC_ENOMEM)
        return rc;
    if (rc != FLC_OK) {
        reject(m, client, "%s", flc_store_errstr(m->s));
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
        reject(m, client, "%s", why);
        return 1;
    }
    double w = sh.weight > 0 ? sh.weight : (sh.num_samples ? (double)sh.num_samples : 1.0);
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
            m->buf = new_buf(m->count);
            if (m->buf == NULL) {
                flc_err_set(&m->oom, FLC_ENOMEM, "out of memory for update %zu of shard %u",
                            m->nkept + 1, cfg->shard);
                return FLC_ENOMEM;
            }
        }
    }
    if (rc != FLC_OK) {
        reject(m, client, "%s", me.msg);
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
static int arrival(merger_t *m, size_t x)
{
    if (m->seen[x]) {
        m->rep->duplicates++; /* a retried push: the update was counted once */
        return FLC_OK;
    }
    m->kept_idx_next = (long)x;
    int t = take(m, m->cfg->expected[x]);
    if (t < 0 || t == TAKE_LOST)
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

/* Waits for the expected clients until all arrived or the deadline (from
 * t0) passed, taking each as it lands; *waited accumulates the blocked
 * time. One BLPOP over the lists of the clients not seen yet, so a client
 * that arrived is not waited for again. Returns the store's error (in *e)
 * when it failed; FLC_OK at the deadline too. */
/* After a failover: takes the updates that are stored but whose arrival
 * was lost with the dead master (rs_recover.c); nothing otherwise. */
static int take_recovered(merger_t *m)
{
    const flc_rs_merger_cfg_t *cfg = m->cfg;
    flc_strlist_t found;
    int rc = FLC_OK;
    if (flc_rs_recover(m->s, cfg, m->seen, &m->recover, &found) != FLC_OK)
        return FLC_OK; /* warned there; the clients count as missing if never seen */
    for (size_t i = 0; rc == FLC_OK && i < found.n; i++)
        for (size_t x = 0; x < cfg->n_expected; x++)
            if (!m->seen[x] && strcmp(cfg->expected[x], found.items[i]) == 0) {
                rc = arrival(m, x);
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
        for (size_t i = 0; i < n; i++) /* arrival() reorders pending: indexes first */
            if (got[i])
                idx[k++] = m->pending_idx[i];
        for (size_t i = 0; rc == FLC_OK && i < k; i++)
            rc = arrival(m, idx[i]);
    }
    free(got), free(idx);
    return rc;
}

static int wait_arrivals(merger_t *m, uint64_t t0, unsigned deadline, uint64_t *waited,
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
        if ((rc = take_recovered(m)) != FLC_OK) {
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
        if ((rc = arrival(m, got)) != FLC_OK)
            *e = m->oom.code ? m->oom : *flc_store_error(m->s);
        else if ((rc = sweep_arrivals(m)) != FLC_OK)
            *e = m->oom.code ? m->oom : *flc_store_error(m->s);
    }
    return rc;
}

/* Marks the shard closed and takes what is still queued on the expected
 * clients' arrival lists, atomically (flc_store_close_shard, one round trip
 * that also gives the merger lock back): an update announced after this
 * sees the closed flag (its push returns FLC_ECLOSED, store_put.c
 * ARRIVE_IF_OPEN); one announced before arrived in time and is taken like
 * any other; further tokens of a client are repeats. */
static int close_shard(merger_t *m)
{
    const flc_rs_merger_cfg_t *cfg = m->cfg;
    unsigned *tokens = calloc(cfg->n_expected, sizeof *tokens);
    if (tokens == NULL)
        return flc_err_set(&m->oom, FLC_ENOMEM, "out of memory closing shard %u", cfg->shard);
    int rc = flc_store_close_shard(m->s, cfg->job, cfg->round, cfg->shard, cfg->expected,
                                   cfg->n_expected, tokens);
    for (size_t i = 0; rc == FLC_OK && i < cfg->n_expected; i++)
        for (unsigned k = 0; rc == FLC_OK && k < tokens[i]; k++)
            rc = arrival(m, i);
    free(tokens);
    return rc;
}

/* Writes the merged shard; an ephemeral round's done tokens go with it. */
static int put_merged(merger_t *m, const flc_shard_t *agg, unsigned readers)
{
    const flc_rs_merger_cfg_t *cfg = m->cfg;
    if (cfg->ephemeral)
        return flc_store_put_merged_done(m->s, agg, cfg->driver_records, "ok", readers);
    return cfg->driver_records ? flc_store_put_merged_opened(m->s, agg)
                               : flc_store_put_merged(m->s, agg);
}

static int merge_and_write(merger_t *m, flc_err_t *e)
{
    const flc_rs_merger_cfg_t *cfg = m->cfg;
    flc_merge_state_t *st = cfg->state;
    int rc;
    if (flc_merge_rule_has_state(&cfg->rule) && st == NULL) {
        m->own_state = flc_merge_state_new(&cfg->rule, m->count, e);
        if (m->own_state == NULL)
            return e->code;
        rc = flc_rs_state_load(m->s, cfg->job, cfg->shard, m->own_state, e);
        if (rc != FLC_OK && rc != FLC_ENOTFOUND)
            return rc;
        flc_err_clear(e);
        st = m->own_state;
    }
    float *out = m->buf; /* free again: every accepted update is folded or kept */
    if (m->acc != NULL) {
        rc = flc_merge_acc_finish(m->acc, st, out, e);
        if (rc == FLC_OK) /* central DP: noise in the aggregate, not in the stored updates */
            rc = flc_dp_noise_mean(&cfg->rule, flc_merge_acc_count(m->acc), out, m->count, e);
    } else {
        unsigned char *used = calloc(m->nkept ? m->nkept : 1, 1);
        if (used == NULL)
            return flc_err_set(e, FLC_ENOMEM, "out of memory");
        flc_merge_batch_t b = {.u = (const float *const *)m->kept, .k = m->nkept,
                               .n = m->count, .weight = m->weight, .norm = m->norm};
        flc_merge_info_t info = {.used = used};
        int krum = cfg->rule.kind == FLC_MERGE_KRUM || cfg->rule.kind == FLC_MERGE_MULTI_KRUM;
        int bulyan = cfg->rule.kind == FLC_MERGE_BULYAN; /* ties by client id: always here */
        if (krum || bulyan) { /* krum: ties by client id, also on one shard (rs_krum.c) */
            /* One selection for the whole model, agreed through the cache. */
            double *scale = malloc((m->nkept ? m->nkept : 1) * sizeof *scale);
            rc = scale ? FLC_OK : flc_err_set(e, FLC_ENOMEM, "out of memory");
            if (rc == FLC_OK) {
                flc_merge_batch_scales(&cfg->rule, &b, scale);
                unsigned wait = cfg->deadline_ms ? cfg->deadline_ms : 60000;
                rc = bulyan ? flc_rs_bulyan(m->s, cfg, m->kept, m->kept_idx, m->nkept,
                                            m->count, scale, wait, out, used, e)
                            : flc_rs_krum(m->s, cfg, m->kept, m->kept_idx, m->nkept, m->count,
                                          scale, wait, out, used, e);
            }
            free(scale);
        } else {
            rc = flc_merge_run(&cfg->rule, st, &b, out, &info, e);
        }
        if (rc == FLC_OK) {
            /* Krum leaves some out: they are rejected, not participants. */
            flc_strlist_t kept = {0};
            for (size_t i = 0; i < m->nkept; i++) {
                const char *c = m->rep->participants.items[i];
                if (used[i])
                    flc_strlist_add(&kept, c, strlen(c));
                else
                    reject(m, c, "not selected by %s", flc_merge_kind_name(cfg->rule.kind));
            }
            flc_strlist_free(&m->rep->participants);
            m->rep->participants = kept;
        }
        free(used);
    }
    if (rc != FLC_OK)
        return rc;
    if (m->own_state != NULL && (rc = flc_rs_state_save(m->s, cfg->job, cfg->shard,
                                                        m->own_state, e)) != FLC_OK)
        return rc;
    flc_shard_t agg = {.round = cfg->round, .shard = cfg->shard, .num_shards = cfg->num_shards,
                       .offset = m->offset, .count = m->count, .model_size = cfg->model_size,
                       .created_ms = flc_wall_ms(), .values = out};
    snprintf(agg.job, sizeof agg.job, "%s", cfg->job);
    agg.weight = m->acc ? flc_merge_acc_weight(m->acc) : (double)m->nkept;
    agg.num_samples = (uint64_t)agg.weight;
    /* With driver_records the driver opened the round for every shard,
     * indexes included: the merger writes its shard's keys only. An
     * ephemeral round records nothing between the merged shard and the
     * readers' wake-up, so its done tokens go in the same round trip. */
    unsigned readers = cfg->readers ? cfg->readers : (unsigned)cfg->n_expected;
    int put = put_merged(m, &agg, readers);
    /* Cut by a failover: written again through the new map, for as long
     * as a promotion may take (the same bytes; extra done tokens are
     * harmless, a reader takes one). */
    for (unsigned w = 50, spent = 0;
         put == FLC_ECONN && flc_rs_recover_retry(m->s) && spent < 20000;
         spent += w, w = w * 2 > 250 ? 250 : w * 2) {
        flc_sleep_ms(w);
        put = put_merged(m, &agg, readers);
    }
    if (put == FLC_OK && cfg->ephemeral)
        m->notified = 1;
    if (put != FLC_OK ||
        (!cfg->ephemeral &&
         flc_track_put(m->s, cfg->job, cfg->round, cfg->shard, "hot") != FLC_OK)) {
        *e = *flc_store_error(m->s);
        return e->code;
    }
    if (m->own != NULL && m->own->merged_out != NULL)
        memcpy(m->own->merged_out, out, m->count * sizeof *out);
    if (flc_log_level() >= FLC_LOG_DEBUG)
        FLC_DEBUG("merger %s/%u/%u wrote the merged shard of %zu participants: crc32c %08x",
                  cfg->job, cfg->round, cfg->shard, m->rep->participants.n,
                  flc_crc32c(0, out, m->count * sizeof *out));
    return FLC_OK;
}

/* Caches this shard's Gram partial for the queries (best effort: a failure
 * only means the first query computes it). */
static void derive_stats(flc_store_t *s, const flc_rs_merger_cfg_t *cfg)
{
    flc_strlist_t cl = {0};
    if (flc_store_list_clients(s, cfg->job, cfg->round, &cl) != FLC_OK || cl.n == 0) {
        flc_strlist_free(&cl);
        return;
    }
    flc_query_gram_t g = {.n = cl.n, .clients = cl.items};
    g.G = calloc((cl.n + 1) * (cl.n + 1), sizeof *g.G);
    flc_err_t e = {0};
    if (g.G != NULL &&
        flc_query_gram_shard(s, cfg->job, cfg->round, cfg->shard, 1, &g, &e) != FLC_OK)
        FLC_INFO("merger %s/%u/%u: no derived statistics: %s", cfg->job, cfg->round,
                 cfg->shard, e.msg);
    flc_query_gram_free(&g); /* frees cl's strings too */
}

static int fail_readers(merger_t *m, const flc_err_t *why)
{
    const flc_rs_merger_cfg_t *cfg = m->cfg;
    char token[300];
    snprintf(token, sizeof token, "error: %s", why->msg);
    unsigned readers = cfg->readers ? cfg->readers : (unsigned)cfg->n_expected;
    flc_rs_notify_done(m->s, cfg, token, readers);
    return why->code ? why->code : FLC_EIO; /* never report success for a failed merge */
}

int flc_rs_merger_run(flc_store_t *s, const flc_rs_merger_cfg_t *cfg, flc_rs_report_t *rep,
                      flc_err_t *e)
{
    return flc_rs_merger_run_own(s, cfg, NULL, rep, e);
}

int flc_rs_merger_run_own(flc_store_t *s, const flc_rs_merger_cfg_t *cfg,
                          const flc_rs_own_t *own, flc_rs_report_t *rep, flc_err_t *e)
{
    memset(rep, 0, sizeof *rep);
    rep->shard = cfg->shard;
    if (cfg->num_shards == 0 || cfg->shard >= cfg->num_shards || cfg->model_size < cfg->num_shards)
        return flc_err_set(e, FLC_EINVAL, "merger: shard %u of %u shards of a %llu-float model "
                           "does not exist", cfg->shard, cfg->num_shards,
                           (unsigned long long)cfg->model_size);
    if (cfg->n_expected == 0)
        return flc_err_set(e, FLC_EINVAL, "merger of shard %u: no expected clients", cfg->shard);
    if (flc_merge_rule_check(&cfg->rule, e) != FLC_OK)
        return e->code;
    uint64_t t0 = flc_now_ns();
    uint64_t read0 = flc_store_bytes_read(s);
    merger_t m = {.s = s, .cfg = cfg, .rep = rep, .own = own};
    flc_rs_shard_range(cfg->model_size, cfg->num_shards, cfg->shard, &m.offset, &m.count);

    /* The job's schema record (one shard count per job; a job of an older
     * key schema refused); the round's indexes, which the clients no
     * longer write (the roster of expected clients above all), go in the
     * open's round trip below. With driver_records the driver wrote them:
     * the schema is only read. */
    if (flc_store_job_begin(s, cfg->job, cfg->num_shards) != FLC_OK) {
        *e = *flc_store_error(s);
        return e->code;
    }
    /* A merger retried after it already closed the shard must not wait for
     * arrivals that were consumed: say so instead. One merger per shard: a
     * second invocation (an at-least-once retry while the first still
     * runs) would split the arrivals between them. Both looks in one round
     * trip (flc_store_merger_open), with the round's indexes. */
    int already, mine;
    uint64_t ttl = (uint64_t)(cfg->deadline_ms ? cfg->deadline_ms : 60000) + 60000;
    if (flc_store_merger_open(s, cfg->job, cfg->round, cfg->shard, ttl,
                              cfg->driver_records ? NULL : cfg->expected, cfg->n_expected, &already,
                              &mine) != FLC_OK) {
        *e = *flc_store_error(s);
        return e->code;
    }
    if (already)
        return flc_err_set(e, FLC_ECLOSED, "shard %u of round %u of job %s is already merged",
                           cfg->shard, cfg->round, cfg->job);
    if (!mine) {
        char who[400];
        flc_store_merger_holder(s, cfg->job, cfg->round, cfg->shard, who, sizeof who);
        return flc_err_set(e, FLC_EDUP, "shard %u of round %u of job %s already has a merger "
                           "running: %s", cfg->shard, cfg->round, cfg->job, who);
    }

    int rc = FLC_OK;
    m.seen = calloc(cfg->n_expected, 1);
    m.pending = malloc(cfg->n_expected * sizeof *m.pending);
    m.pending_idx = malloc(cfg->n_expected * sizeof *m.pending_idx);
    for (size_t i = 0; m.pending && m.pending_idx && i < cfg->n_expected; i++) {
        m.pending[i] = cfg->expected[i];
        m.pending_idx[i] = i;
    }
    m.npending = cfg->n_expected;
    m.buf = new_buf(m.count);
    if (flc_merge_rule_streams(&cfg->rule)) {
        m.acc = flc_merge_acc_new(&cfg->rule, m.count, e);
        if (m.acc == NULL)
            rc = e->code;
    } else {
        m.kept = calloc(cfg->n_expected, sizeof *m.kept);
        m.weight = calloc(cfg->n_expected, sizeof *m.weight);
        m.norm = calloc(cfg->n_expected, sizeof *m.norm);
        m.kept_idx = calloc(cfg->n_expected, sizeof *m.kept_idx);
        if (m.kept == NULL || m.weight == NULL || m.norm == NULL || m.kept_idx == NULL)
            rc = flc_err_set(e, FLC_ENOMEM, "out of memory");
    }
    if (rc == FLC_OK && (m.seen == NULL || m.buf == NULL || m.pending == NULL ||
                         m.pending_idx == NULL))
        rc = flc_err_set(e, FLC_ENOMEM, "out of memory for a %llu-float shard",
                         (unsigned long long)m.count);

    unsigned deadline = cfg->deadline_ms ? cfg->deadline_ms : 60000;
    uint64_t waited = 0;
    flc_strlist_t none;
    flc_rs_recover(s, cfg, m.seen, &m.recover, &none); /* records the store's count */
    for (size_t x = 0; rc == FLC_OK && own && own->update && x < cfg->n_expected; x++)
        if (strcmp(cfg->expected[x], own->client) == 0) { /* from memory, first */
            if ((rc = arrival(&m, x)) != FLC_OK)
                *e = m.oom.code ? m.oom : *flc_store_error(s);
            break;
        }
    if (rc == FLC_OK)
        rc = wait_arrivals(&m, t0, deadline, &waited, e);
    if (rc != FLC_OK) /* never closed: give the shard back for a retry */
        flc_store_merger_unlock(s, cfg->job, cfg->round, cfg->shard);
    if (rc == FLC_OK) {
        rc = close_shard(&m);
        /* Cut by a failover: closed again (the script is idempotent for
         * the protocol), for as long as the promotion may take, then
         * recovered. Only the close: a wait that failed stays failed. */
        for (unsigned w = 50, spent = 0;
             rc == FLC_ECONN && flc_rs_recover_retry(s) && spent < 20000;
             spent += w, w = w * 2 > 250 ? 250 : w * 2) {
            flc_sleep_ms(w);
            rc = close_shard(&m);
        }
    }
    if (rc == FLC_OK)
        rc = take_recovered(&m);
    if (rc != FLC_OK)
        *e = m.oom.code ? m.oom : *flc_store_error(s);
    for (size_t i = 0; rc == FLC_OK && i < cfg->n_expected; i++)
        if (!m.seen[i])
            flc_strlist_add(&rep->missing, cfg->expected[i], strlen(cfg->expected[i]));
    if (rc == FLC_OK && rep->participants.n + rep->rejected.n != m.arrived)
        /* Every client seen was taken or rejected; anything else would
         * leave a client out of the merge without naming it. */
        rc = flc_err_set(e, FLC_EDATA, "shard %u of round %u of job %s: %zu clients arrived "
                         "but %zu were merged and %zu rejected (merger bookkeeping)", cfg->shard,
                         cfg->round, cfg->job, m.arrived, rep->participants.n,
                         rep->rejected.n);
    if (rc == FLC_OK && rep->participants.n == 0)
        rc = flc_err_set(e, FLC_ETIMEOUT, "shard %u of round %u of job %s: no update could be "
                         "merged (%zu missing, %zu rejected) within %u ms", cfg->shard,
                         cfg->round, cfg->job, rep->missing.n, rep->rejected.n, deadline);
    if (rc == FLC_OK)
        rc = merge_and_write(&m, e);
    rep->wait_ms = (double)waited / 1e6;
    rep->merge_ms = (double)(flc_now_ns() - t0 - waited) / 1e6;
    rep->bytes_read = flc_store_bytes_read(s) - read0;
    merger_free(&m);
    if (rc != FLC_OK) {
        flc_err_t keep = *e;
        snprintf(rep->error, sizeof rep->error, "%s", flc_err_msg(e));
        if (!cfg->ephemeral)
            flc_rs_report_store(s, cfg, rep, e); /* best effort: the round's record */
        *e = keep;
        return fail_readers(&m, e);
    }
    if (!cfg->ephemeral && (rc = flc_rs_report_store(s, cfg, rep, e)) != FLC_OK)
        return fail_readers(&m, e);
    unsigned readers = cfg->readers ? cfg->readers : (unsigned)cfg->n_expected;
    if (!m.notified && flc_rs_notify_done(s, cfg, "ok", readers) != FLC_OK) {
        *e = *flc_store_error(s);
        return e->code;
    }
    if (cfg->derive_stats)
        derive_stats(s, cfg); /* after the readers were woken: off their critical path */
    return FLC_OK;
}
