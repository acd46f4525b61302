/* The buffered merger of asynchronous FL (FedBuff): one shard's fold of one
 * version's buffer, with each delta weighted by its staleness. It writes
 * what the synchronous merger writes for a round (merged shard, report,
 * done tokens, tracker entry, Gram partial), keyed by version, so pulls,
 * RoundMeta and queries need nothing new. Unlike rs_merger.c it does not
 * wait for arrivals: the driver's simulated clock decides the buffer, and
 * every client in it has pushed before the merger runs, so the fold goes in
 * buffer order and gives the same bits on every run (aggregator/async.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aggregator/async.h"
#include "aggregator/query.h"
#include "aggregator/rs_internal.h"
#include "aggregator/rs_recover.h"
#include "aggregator/tracker.h"
#include "base/clock.h"
#include "base/log.h"
#include "cache/store_ops.h"

static void reject(flc_rs_report_t *rep, const char *client, const char *why)
{
    char line[400];
    snprintf(line, sizeof line, "%s: %s", client, why);
    flc_strlist_add(&rep->rejected, line, strlen(line));
}

static int store_fail(flc_store_t *s, flc_err_t *e)
{
    *e = *flc_store_error(s);
    return e->code ? e->code : FLC_ECONN;
}

/* Reads client x's shard into buf and folds it with its staleness weight.
 * FLC_OK when folded, 1 when rejected (recorded), negative when the store
 * failed. */
static int fold_one(flc_store_t *s, const flc_async_merge_cfg_t *cfg, size_t x,
                    flc_merge_acc_t *acc, float *buf, uint64_t off, uint64_t count,
                    flc_rs_report_t *rep)
{
    const flc_rs_merger_cfg_t *rs = &cfg->rs;
    const char *client = rs->expected[x];
    flc_shard_t sh = {0};
    int rc = flc_store_get_update(s, rs->job, rs->round, rs->shard, client, &sh, buf, count);
    if (rc == FLC_ECONN || rc == FLC_ETIMEOUT || rc == FLC_ENOMEM)
        return rc;
    if (rc != FLC_OK) {
        reject(rep, client, flc_store_errstr(s));
        return 1;
    }
    if (sh.values != buf || sh.offset != off || sh.count != count ||
        sh.model_size != rs->model_size || sh.num_shards != rs->num_shards) {
        char why[200];
        snprintf(why, sizeof why, "wrong dimensions: %llu floats at %llu of a %llu-float "
                 "model, expected %llu at %llu of %llu", (unsigned long long)sh.count,
                 (unsigned long long)sh.offset, (unsigned long long)sh.model_size,
                 (unsigned long long)count, (unsigned long long)off,
                 (unsigned long long)rs->model_size);
        flc_shard_release(&sh);
        reject(rep, client, why);
        return 1;
    }
    double w = flc_shard_merge_weight(&sh);
    double sc = cfg->scale ? cfg->scale[x] : 1.0;
    if (rs->rule.clip > 0) {
        double norm = sh.update_norm > 0 ? sh.update_norm : sqrt(flc_merge_sumsq(buf, count));
        double c = flc_merge_clip_scale(norm, rs->rule.clip);
        rep->clipped += c < 1;
        sc *= c;
    }
    flc_err_t me = {0};
    if (flc_merge_acc_fold_scaled(acc, buf, count, w, sc, &me) != FLC_OK) {
        size_t pos;
        if (flc_merge_check_finite(buf, count, &pos) != FLC_OK)
            snprintf(me.msg, sizeof me.msg, "%s at element %llu", isnan(buf[pos]) ? "NaN" : "Inf",
                     (unsigned long long)(off + pos));
        reject(rep, client, me.msg);
        return 1;
    }
    flc_strlist_add(&rep->participants, client, strlen(client));
    return FLC_OK;
}

/* The merge of the buffer: finish (server step with in-memory or cached
 * state), write the merged shard and its tracker entry. */
static int finish_and_write(flc_store_t *s, const flc_rs_merger_cfg_t *rs, flc_merge_acc_t *acc,
                            float *out, uint64_t off, uint64_t count, flc_err_t *e)
{
    flc_merge_state_t *st = rs->state, *own = NULL;
    int rc = FLC_OK;
    if (flc_merge_rule_has_state(&rs->rule) && st == NULL) {
        if ((own = flc_merge_state_new(&rs->rule, count, e)) == NULL)
            return e->code;
        rc = flc_rs_state_load(s, rs->job, rs->shard, own, e);
        if (rc == FLC_ENOTFOUND)
            rc = FLC_OK, flc_err_clear(e);
        st = own;
    }
    if (rc == FLC_OK)
        rc = flc_merge_acc_finish(acc, st, out, e);
    if (rc == FLC_OK && own != NULL)
        rc = flc_rs_state_save(s, rs->job, rs->shard, own, e);
    flc_merge_state_free(own);
    if (rc != FLC_OK)
        return rc;
    flc_shard_t agg = {.round = rs->round, .shard = rs->shard, .num_shards = rs->num_shards,
                       .offset = off, .count = count, .model_size = rs->model_size,
                       .created_ms = flc_wall_ms(), .values = out};
    snprintf(agg.job, sizeof agg.job, "%s", rs->job);
    agg.weight = flc_merge_acc_weight(acc);
    agg.num_samples = (uint64_t)agg.weight;
    /* The driver opened the version for every shard: no index writes. */
    if (flc_store_put_merged_opened(s, &agg) != FLC_OK ||
        flc_track_put(s, rs->job, rs->round, rs->shard, "hot") != FLC_OK)
        return store_fail(s, e);
    return FLC_OK;
}

/* This shard's Gram partial for the queries (best effort). */
static void derive_stats(flc_store_t *s, const flc_rs_merger_cfg_t *rs)
{
    flc_strlist_t cl = {0};
    if (flc_store_list_clients(s, rs->job, rs->round, &cl) != FLC_OK || cl.n == 0) {
        flc_strlist_free(&cl);
        return;
    }
    flc_query_gram_t g = {.n = cl.n, .clients = cl.items};
    g.G = calloc((cl.n + 1) * (cl.n + 1), sizeof *g.G);
    flc_err_t e = {0};
    if (g.G != NULL && flc_query_gram_shard(s, rs->job, rs->round, rs->shard, 1, &g, &e) != 0)
        FLC_INFO("async merger %s/%u/%u: no derived statistics: %s", rs->job, rs->round,
                 rs->shard, e.msg);
    flc_query_gram_free(&g);
}

int flc_async_merge_run(flc_store_t *s, const flc_async_merge_cfg_t *cfg, flc_rs_report_t *rep,
                        flc_err_t *e)
{
    const flc_rs_merger_cfg_t *rs = &cfg->rs;
    memset(rep, 0, sizeof *rep);
    rep->shard = rs->shard;
    if (rs->num_shards == 0 || rs->shard >= rs->num_shards || rs->model_size < rs->num_shards)
        return flc_err_set(e, FLC_EINVAL, "async merger: shard %u of %u shards of a %llu-float "
                           "model does not exist", rs->shard, rs->num_shards,
                           (unsigned long long)rs->model_size);
    if (rs->n_expected == 0 || !rs->driver_records)
        return flc_err_set(e, FLC_EINVAL, "async merger of shard %u: needs the buffer's clients "
                           "and a driver that opened version %u", rs->shard, rs->round);
    if (flc_merge_rule_check(&rs->rule, e) != FLC_OK)
        return e->code;
    if (!flc_merge_rule_streams(&rs->rule) || rs->rule.noise > 0)
        return flc_err_set(e, FLC_EINVAL, "asynchronous FL folds each arrival into a buffer: "
                           "rule %s does not stream (fedavg, mean, fedavgm, fedadam, fedyogi, "
                           "fedadagrad do; central DP noise is not supported)",
                           flc_merge_kind_name(rs->rule.kind));
    uint64_t t0 = flc_now_ns(), read0 = flc_store_bytes_read(s);
    uint64_t off, count;
    flc_rs_shard_range(rs->model_size, rs->num_shards, rs->shard, &off, &count);
    if (flc_store_job_begin(s, rs->job, rs->num_shards) != FLC_OK)
        return store_fail(s, e);

    /* Close first: the arrivals are all in (the driver invoked the buffer's
     * clients and they returned), the close drains their tokens, and a push
     * for this version after it is refused as late. */
    unsigned *tokens = calloc(rs->n_expected, sizeof *tokens);
    float *buf = malloc((size_t)(count ? count : 1) * sizeof *buf);
    flc_merge_acc_t *acc = flc_merge_acc_new(&rs->rule, count, e);
    int rc = acc == NULL ? e->code : FLC_OK;
    if (rc == FLC_OK && (tokens == NULL || buf == NULL))
        rc = flc_err_set(e, FLC_ENOMEM, "out of memory for a %llu-float shard",
                         (unsigned long long)count);
    if (rc == FLC_OK && flc_store_close_shard(s, rs->job, rs->round, rs->shard, rs->expected,
                                              rs->n_expected, tokens) != FLC_OK)
        rc = store_fail(s, e);
    for (size_t x = 0; rc == FLC_OK && x < rs->n_expected; x++) {
        const char *c = rs->expected[x];
        if (tokens[x] == 0)
            flc_strlist_add(&rep->missing, c, strlen(c)); /* its invocation failed */
        else if (cfg->refuse != NULL && cfg->refuse[x] != NULL) {
            /* A decision about the whole update: one line in the
             * version's record (shard 0's), not one per shard. */
            if (rs->shard == 0)
                reject(rep, c, cfg->refuse[x]);
        }
        else if ((rc = fold_one(s, cfg, x, acc, buf, off, count, rep)) > 0)
            rc = FLC_OK;
        else if (rc < 0)
            store_fail(s, e);
    }
    if (rc == FLC_OK && rep->participants.n == 0)
        rc = flc_err_set(e, FLC_ETIMEOUT, "shard %u of version %u of job %s: no update could be "
                         "merged (%zu missing, %zu rejected)", rs->shard, rs->round, rs->job,
                         rep->missing.n, rep->rejected.n);
    if (rc == FLC_OK)
        rc = finish_and_write(s, rs, acc, buf, off, count, e);
    rep->merge_ms = (double)(flc_now_ns() - t0) / 1e6;
    rep->bytes_read = flc_store_bytes_read(s) - read0;
    flc_merge_acc_free(acc);
    free(buf);
    free(tokens);
    unsigned readers = rs->readers ? rs->readers : (unsigned)rs->n_expected;
    if (rc != FLC_OK) {
        flc_err_t keep = *e;
        snprintf(rep->error, sizeof rep->error, "%s", flc_err_msg(e));
        flc_rs_report_store(s, rs, rep, e); /* best effort: the version's record */
        char token[300];
        snprintf(token, sizeof token, "error: %s", keep.msg);
        flc_rs_notify_done(s, rs, token, readers);
        *e = keep;
        return keep.code ? keep.code : FLC_EIO;
    }
    if ((rc = flc_rs_report_store(s, rs, rep, e)) != FLC_OK)
        return rc;
    if (flc_rs_notify_done(s, rs, "ok", readers) != FLC_OK)
        return store_fail(s, e);
    if (rs->derive_stats)
        derive_stats(s, rs);
    return FLC_OK;
}
