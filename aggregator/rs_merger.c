/* The merger of one shard for one round: open the round (the job indexes
 * and the roster of expected clients), wait for arrivals (one BLPOP over
 * the arrival lists of the expected clients not seen yet, never polling),
 * fold or collect each update as it lands, close the shard, merge, write
 * the merged shard and wake the readers (one round trip), then record the
 * report. See
 * reduce_scatter.h for the protocol; taking the updates is rs_take.c's. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/dp.h"
#include "aggregator/query.h"
#include "aggregator/rs_internal.h"
#include "aggregator/rs_merger_internal.h"
#include "aggregator/rs_recover.h"
#include "aggregator/tracker.h"
#include "base/clock.h"
#include "base/crc32c.h"
#include "base/log.h"
#include "cache/encode.h"
#include "cache/keys.h"
#include "cache/store_ops.h"

static void merger_free(merger_t *m)
{
    free(m->seen);
    free(m->pending);
    free(m->pending_idx);
    flc_merge_acc_free(m->acc);
    rs_free_buf(m->buf, m->count);
    rs_free_buf(m->wbuf, m->win);
    for (size_t i = 0; i < m->nkept; i++)
        rs_free_buf(m->kept[i], m->count);
    free(m->kept);
    free(m->parts);
    free(m->weight);
    free(m->norm);
    free(m->kept_idx);
    flc_merge_state_free(m->own_state);
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
            rc = rs_arrival(m, i);
    free(tokens);
    return rc;
}

/* Writes the merged shard (from agg's values, or window by window through
 * how) with the readers' done tokens in the same round trip: what a reader
 * needs is the merged shard; the round's records (tracker, report, the
 * round's metadata) follow, off the readers' critical path. They went
 * first until 2026-11-30: on a cluster the job's records may live on
 * another node, behind a node link busy with the round's pulls, and the
 * readers waited for those round trips (bench/cluster's round, 3 nodes:
 * the last merger finished 80-130 ms after the last push). A driver that
 * reads the round's metadata waits for its mergers to return first
 * (clients/sim.c). */
static int put_merged(merger_t *m, const flc_shard_t *agg, unsigned readers,
                      flc_store_stream_t *how)
{
    const flc_rs_merger_cfg_t *cfg = m->cfg;
    if (how != NULL) {
        how->opened = cfg->driver_records;
        how->token = "ok";
        how->copies = readers;
        return flc_store_put_merged_stream(m->s, agg, how);
    }
    return flc_store_put_merged_done(m->s, agg, cfg->driver_records, "ok", readers);
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
    /* Written window by window (rs_window.c): no whole output. Else the
     * whole-update buffer is free again (every accepted update is folded
     * or kept), or made now. */
    int streams = rs_merged_streams(m);
    if (!streams && m->buf == NULL && (m->buf = rs_new_buf(m->count)) == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory for the merged shard %u",
                           cfg->shard);
    float *out = m->buf;
    rs_fill_t fill = {0};
    flc_store_stream_t how;
    if (streams) { /* median and trimmed mean use every kept update: participants stay */
        rc = rs_fill_init(m, &fill, &how, e);
    } else if (m->acc != NULL) {
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
                    rs_reject(m, c, "not selected by %s", flc_merge_kind_name(cfg->rule.kind));
            }
            flc_strlist_free(&m->rep->participants);
            m->rep->participants = kept;
        }
        free(used);
    }
    if (rc != FLC_OK) {
        rs_fill_free(&fill);
        return rc;
    }
    if (m->own_state != NULL && (rc = flc_rs_state_save(m->s, cfg->job, cfg->shard,
                                                        m->own_state, e)) != FLC_OK)
        return rc;
    flc_shard_t agg = {.round = cfg->round, .shard = cfg->shard, .num_shards = cfg->num_shards,
                       .offset = m->offset, .count = m->count, .model_size = cfg->model_size,
                       .created_ms = flc_wall_ms(), .values = out};
    snprintf(agg.job, sizeof agg.job, "%s", cfg->job);
    /* With driver_records the driver opened the round for every shard,
     * indexes included: the merger writes its shard's keys only. */
    unsigned readers = cfg->readers ? cfg->readers : (unsigned)cfg->n_expected;
    flc_rs_backoff_t b = {0};
    int put;
    for (;;) {
        agg.weight = m->acc ? flc_merge_acc_weight(m->acc) : (double)m->nkept;
        agg.num_samples = (uint64_t)agg.weight;
        flc_err_clear(e); /* a window's failure is told apart by its code */
        put = put_merged(m, &agg, readers, streams ? &how : NULL);
        /* Cut by a failover: written again through the new map, for as
         * long as a promotion may take (the same bytes; extra done tokens
         * are harmless, a reader takes one). */
        while (flc_rs_recover_backoff(m->s, put, &b)) {
            put = put_merged(m, &agg, readers, streams ? &how : NULL);
        }
        /* An update read at close refused by a window, or changed or gone
         * since its arrival: taken out or followed, then written again
         * from window 0 (the tmp key was dropped; nobody saw it). */
        int redo = put != FLC_OK && streams && m->acc == NULL ? rs_defer_redo(&fill, e) : 0;
        if (redo < 0) {
            rs_fill_free(&fill);
            return redo;
        }
        if (redo == 0)
            break;
    }
    rs_fill_free(&fill);
    if (put == FLC_OK)
        m->notified = 1;
    if (put != FLC_OK && streams && e->code != FLC_OK) /* a window failed: its own words */
        return e->code;
    if (put != FLC_OK ||
        (!cfg->ephemeral &&
         flc_track_put(m->s, cfg->job, cfg->round, cfg->shard, "hot") != FLC_OK)) {
        *e = *flc_store_error(m->s);
        return e->code;
    }
    if (!streams && m->own != NULL && m->own->merged_out != NULL) /* streamed: by the fill */
        memcpy(m->own->merged_out, out, m->count * sizeof *out);
    if (flc_log_level() >= FLC_LOG_DEBUG)
        FLC_DEBUG("merger %s/%u/%u wrote the merged shard of %zu participants: crc32c %08x",
                  cfg->job, cfg->round, cfg->shard, m->rep->participants.n,
                  streams ? how.crc : flc_crc32c(0, out, m->count * sizeof *out));
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

/* Tells the readers the merge failed, unless they were told it succeeded
 * (the merged shard is written and right; what failed was recording it:
 * the merger's own result says so). */
static int fail_readers(merger_t *m, const flc_err_t *why)
{
    const flc_rs_merger_cfg_t *cfg = m->cfg;
    if (m->notified)
        return why->code ? why->code : FLC_EIO;
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
    /* Windows only when the shard is bigger than one: a small shard is
     * read and written whole, as before, in fewer round trips. */
    size_t wb = cfg->window_bytes ? cfg->window_bytes : RS_WINDOW_DEFAULT;
    if (wb != FLC_RS_WINDOW_WHOLE && m.count > wb / sizeof(float))
        m.win = wb / sizeof(float) ? wb / sizeof(float) : 1;
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
        /* Merged window by window: the updates are read then too (rs_defer.c). */
        if (rc == FLC_OK && rs_merged_streams(&m) &&
            (m.parts = calloc(cfg->n_expected, sizeof *m.parts)) == NULL)
            rc = flc_err_set(e, FLC_ENOMEM, "out of memory");
    }
    if (m.win && m.acc != NULL)
        m.wbuf = rs_new_buf(m.win);
    if (rc == FLC_OK && (m.seen == NULL || (m.win && m.acc != NULL && m.wbuf == NULL) ||
                         m.pending == NULL || m.pending_idx == NULL))
        rc = flc_err_set(e, FLC_ENOMEM, "out of memory for a %llu-float shard",
                         (unsigned long long)m.count);

    unsigned deadline = cfg->deadline_ms ? cfg->deadline_ms : 60000;
    uint64_t waited = 0;
    flc_strlist_t none;
    flc_rs_recover(s, cfg, m.seen, &m.recover, &none); /* records the store's count */
    for (size_t x = 0; rc == FLC_OK && own && own->update && x < cfg->n_expected; x++)
        if (strcmp(cfg->expected[x], own->client) == 0) { /* from memory, first */
            if ((rc = rs_arrival(&m, x)) != FLC_OK)
                *e = m.oom.code ? m.oom : *flc_store_error(s);
            break;
        }
    if (rc == FLC_OK)
        rc = rs_wait_arrivals(&m, t0, deadline, &waited, e);
    if (rc != FLC_OK) /* never closed: give the shard back for a retry */
        flc_store_merger_unlock(s, cfg->job, cfg->round, cfg->shard);
    if (rc == FLC_OK) {
        rc = close_shard(&m);
        /* Cut by a failover: closed again (the script is idempotent for
         * the protocol), for as long as the promotion may take, then
         * recovered. Only the close: a wait that failed stays failed. */
        flc_rs_backoff_t b = {0};
        while (flc_rs_recover_backoff(s, rc, &b)) {
            rc = close_shard(&m);
        }
    }
    if (rc == FLC_OK)
        rc = rs_take_recovered(&m);
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
