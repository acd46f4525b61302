/* The simulation driver's round loop (see sim.h for the protocol): one
 * round's sampling, merger threads and client invocations, its close, the
 * global model's step and evaluation, and the run over the rounds with its
 * checkpoints. What a run holds is set up by sim_setup.c, the clients are
 * sampled by sim_clients.c, the merger threads live in sim_mergers.c and
 * records are written by sim_record.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "base/clock.h"
#include "base/log.h"
#include "cache/store_failover.h"
#include "cache/store_ops.h"
#include "cache/store_resume.h"
#include "clients/sim_driver_internal.h"

static int run_round(sim_t *sm, uint32_t round, flc_sim_round_t *out, flc_err_t *e)
{
    const flc_sim_cfg_t *c = sm->c;
    size_t k = (size_t)c->per_round < sm->neligible ? (size_t)c->per_round : sm->neligible;
    uint64_t t0 = flc_now_ns();
    memset(out, 0, sizeof *out);
    out->round = round;
    out->accuracy = out->loss = -1;
    sim_client_t *cl = calloc(k, sizeof *cl);
    char **names = calloc(k, sizeof *names);
    cJSON **evs = calloc(k, sizeof *evs);
    flc_sim_inv_t *inv = calloc(k, sizeof *inv);
    int rc = cl && names && evs && inv ? FLC_OK : flc_err_set(e, FLC_ENOMEM, "out of memory");
    size_t ninv = 0;
    /* Room for this round's updates and model before the clients write
     * (a little over: frame headers, metadata). */
    if (rc == FLC_OK && sm->policy != NULL &&
        flc_store_make_room(sm->s, (uint64_t)(k + 2) * sm->P * sizeof(float) * 11 / 10) ==
            FLC_ENOMEM)
        FLC_WARN("round %u: the cold tier could not make room; writes may be refused", round);
    if (rc == FLC_OK) {
        sim_sample(sm, round, cl, k);
        for (size_t i = 0; i < k; i++) {
            names[i] = cl[i].name;
            if (cl[i].dropped)
                continue;
            cl[i].inv = (long)ninv;
            if ((evs[ninv++] = sim_client_event(sm, round, &cl[i])) == NULL)
                rc = flc_err_set(e, FLC_ENOMEM, "out of memory for client events");
        }
    }
    uint64_t rd0 = flc_store_bytes_read(sm->s), wr0 = flc_store_bytes_written(sm->s);
    /* Placed: the owner of each shard's keys this round, where its merger
     * goes; all of them before any merger starts. */
    for (uint32_t s = 0; rc == FLC_OK && s < sm->S; s++) {
        flc_store_node_t nd;
        sm->m[s].node[0] = '\0';
        if (sm->placed && flc_store_shard_node(sm->s, c->job, round, s, &nd) != FLC_OK)
            rc = sim_store_err(sm->s, e);
        else if (sm->placed)
            snprintf(sm->m[s].node, sizeof sm->m[s].node, "%s", nd.addr);
    }
    /* The driver opens the round (roster, rounds, shards, clients) and
     * later folds its RoundMeta: the mergers write only their shard's keys
     * (docs/architecture.md, "A user per role"). */
    for (uint32_t s = 0; rc == FLC_OK && s < sm->S; s++)
        if (flc_store_round_begin(sm->s, c->job, sm->S, round, s, (const char *const *)names,
                                  k) != FLC_OK)
            rc = sim_store_err(sm->s, e);
    for (uint32_t s = 0; rc == FLC_OK && s < sm->S; s++) {
        sim_merger_t *mt = &sm->m[s];
        memset(&mt->err, 0, sizeof mt->err);
        mt->cfg = (flc_rs_merger_cfg_t){.job = c->job, .round = round, .shard = s,
                                     .num_shards = sm->S, .model_size = sm->P,
                                     .rule = sm->rule, .expected = (const char *const *)names,
                                     .n_expected = k, .deadline_ms = c->deadline_ms,
                                     .readers = 1, .state = mt->state,
                                     .driver_records = 1,
                                     /* the round's Gram partials for later queries, when
                                      * they are cheap next to the round itself (K^2 P
                                      * flops; K = 100 of a 100k model: ~0.1 s); beside a
                                      * cold tier too, since a push refused while these
                                      * reads' replies fill the cache is tried again
                                      * (store_put.c put_shard_tiered) */
                                     .derive_stats = c->keep_updates &&
                                                     (double)k * (double)k * (double)sm->P <= 2e9};
        atomic_store(&mt->done, 0);
        if (pthread_create(&mt->t, NULL, sim_merger_main, mt) != 0)
            rc = flc_err_set(e, FLC_EIO, "cannot start the merger thread of shard %u", s);
        else
            mt->started = 1;
    }
    uint64_t tc = flc_now_ns();
    uint64_t failovers0 = flc_store_failovers(sm->s);
    if (rc == FLC_OK && ninv > 0)
        rc = c->invoke(c->invoke_user, evs, ninv, inv, e);
    /* On a cluster: acknowledged updates a failover took along are sent
     * again while the mergers still wait (sim_failover.c). */
    if (rc == FLC_OK && ninv > 0)
        rc = sim_resend_lost(sm->s, c, round, sm->S, cl, k, evs, inv, failovers0, out, e);
    out->clients_ms = (double)(flc_now_ns() - tc) / 1e6;
    sim_close_and_join(sm, t0 + (uint64_t)c->round_timeout_ms * 1000000ull);
    /* The clients' updates are in: the policy must know them before the
     * driver writes anything more, so it can spill them to make room. */
    if (sm->policy != NULL)
        flc_store_track_round(sm->s, c->job, round);

    /* A merger that could not be placed is a configuration error (a node
     * missing from the map, a namespace that cannot be entered): the run
     * stops, naming the node, instead of keeping the old model every round. */
    for (uint32_t s = 0; rc == FLC_OK && s < sm->S; s++)
        if (sm->m[s].place_failed)
            rc = flc_err_set(e, sm->m[s].err.code ? sm->m[s].err.code : FLC_EIO,
                             "the merger of shard %u: %s", s, flc_err_msg(&sm->m[s].err));

    /* A merge that failed in itself (the rule refused the round, as Krum
     * with f too large for the participants; memory; a refused write) would
     * fail again every round: the run stops, naming it, instead of
     * recording rounds with the old model. A round nobody could be merged
     * in (no update in time: FLC_ETIMEOUT) or cut by a lost connection
     * (FLC_ECONN: a failover) stays a round that was not merged, named in
     * its merge_error. */
    for (uint32_t s = 0; rc == FLC_OK && s < sm->S; s++) {
        const sim_merger_t *mt = &sm->m[s];
        if (mt->rc != FLC_OK && mt->rc != FLC_ETIMEOUT && mt->rc != FLC_ECONN)
            rc = flc_err_set(e, mt->rc, "the merger of shard %u failed: %s", s,
                             flc_err_msg(&mt->err));
    }

    /* The round's RoundMeta from the shards' reports (also of a failed
     * merge: then "failed: ..."); the driver's fields follow in
     * sim_record_round. A lost connection (a failover of the job records'
     * node) is retried for up to 10 s, as the merger's close is. */
    int reported = 0;
    for (uint32_t s = 0; s < sm->S; s++)
        reported |= sm->m[s].cfg.round == round && !sm->m[s].place_failed;
    if (reported) {
        flc_err_t me = {0};
        int mr = flc_rs_round_meta(sm->s, &sm->m[0].cfg, &me);
        for (unsigned w = 100, spent = 0; mr == FLC_ECONN && spent < 10000; spent += w) {
            flc_sleep_ms(w);
            mr = flc_rs_round_meta(sm->s, &sm->m[0].cfg, &me);
        }
        if (mr != FLC_OK && mr != FLC_ENOTFOUND && rc == FLC_OK)
            rc = flc_err_set(e, mr, "round %u's metadata: %s", round, me.msg);
    }

    int merged = rc == FLC_OK;
    out->merge_error[0] = '\0';
    for (uint32_t s = 0; s < sm->S; s++) {
        sim_merger_t *mt = &sm->m[s];
        if (mt->rc != FLC_OK) {
            /* Say why: a round that keeps the old model silently is what hid
             * the multi-krum wake-up bug. */
            if (merged)
                snprintf(out->merge_error, sizeof out->merge_error, "shard %u: %s", s,
                         flc_err_msg(&mt->err));
            merged = 0;
        }
        out->merge_ms = mt->rep.merge_ms > out->merge_ms ? mt->rep.merge_ms : out->merge_ms;
        out->wait_ms = mt->rep.wait_ms > out->wait_ms ? mt->rep.wait_ms : out->wait_ms;
    }
    /* An acknowledged update that no merger got was lost (a failover):
     * the round fails naming it rather than merge without it. */
    const flc_rs_report_t *reps[sm->S ? sm->S : 1];
    for (uint32_t s = 0; s < sm->S; s++)
        reps[s] = &sm->m[s].rep;
    if (rc == FLC_OK)
        sim_name_lost(cl, k, inv, reps, sm->S, out);
    if (out->lost > 0) {
        if (merged)
            snprintf(out->merge_error, sizeof out->merge_error, "updates lost in a failover "
                     "and not resent: %.200s", out->lost_names);
        merged = 0;
    }
    if (merged) {
        flc_err_t pe = {0};
        if (flc_rs_pull(sm->s, c->job, round, sm->S, sm->P, c->round_timeout_ms, sm->delta,
                        &pe) == FLC_OK) {
            for (size_t i = 0; i < sm->P; i++)
                sm->global[i] += sm->delta[i];
        } else {
            snprintf(out->merge_error, sizeof out->merge_error, "pull: %s", flc_err_msg(&pe));
            merged = 0;
        }
    }
    out->merged = merged;
    uint64_t te = flc_now_ns();
    if (rc == FLC_OK && sm->model != NULL)
        rc = flc_model_evaluate(sm->model, sm->global, sm->test, NULL, sm->test->n,
                                &out->accuracy, &out->loss, e);
    out->eval_ms = (double)(flc_now_ns() - te) / 1e6;
    if (rc == FLC_OK)
        rc = sim_put_global(sm->s, sm->gjob, round, sm->P, sm->global, e);
    out->round_ms = (double)(flc_now_ns() - t0) / 1e6;

    if (rc == FLC_OK) {
        sim_round_rec_t rec = {.round = round, .cl = cl, .k = k, .inv = inv, .out = out,
                               .started_ms = flc_wall_ms() - (uint64_t)out->round_ms};
        rc = sim_dp_round(&sm->dp, c, &sm->rule, inv, k, sm->neligible, &rec, e);
        for (uint32_t s = 0; s < sm->S; s++) {
            rec.bytes_read += sm->m[s].rd;
            rec.bytes_written += sm->m[s].wr;
            double gb = (double)c->memory_mb / 1024.0;
            rec.merge_cost_usd += (sm->m[s].rep.merge_ms + sm->m[s].rep.wait_ms) / 1000.0 *
                                  gb * c->price_per_gb_s;
        }
        rec.bytes_read += flc_store_bytes_read(sm->s) - rd0;
        rec.bytes_written += flc_store_bytes_written(sm->s) - wr0;
        rc = sim_record_round(sm->s, c, sm->P, &rec, e);
        /* Let the policy know what other processes wrote this round. */
        if (rc == FLC_OK && sm->policy != NULL) {
            flc_store_track_round(sm->s, sm->gjob, round);
            flc_store_round_closed(sm->s, c->job, round);
        }
    }
    if (rc == FLC_OK && !c->keep_updates && flc_store_delete_round(sm->s, c->job, round) != 0)
        rc = sim_store_err(sm->s, e);
    /* Models of rounds no client will read again. */
    if (rc == FLC_OK && !c->keep_updates && round >= 2)
        flc_store_delete_round(sm->s, sm->gjob, round - 2);

    for (uint32_t s = 0; s < sm->S; s++)
        flc_rs_report_free(&sm->m[s].rep);
    for (size_t i = 0; i < k && evs; i++)
        cJSON_Delete(evs[i]);
    for (size_t i = 0; i < ninv && inv; i++)
        cJSON_Delete(inv[i].result);
    free(cl);
    free(names);
    free(evs);
    free(inv);
    return rc;
}

int flc_sim_run(const flc_sim_cfg_t *cfg, flc_sim_progress_t progress, void *user,
                flc_sim_result_t *res, flc_err_t *e)
{
    memset(res, 0, sizeof *res);
    flc_sim_cfg_t c = *cfg;
    int rc = flc_sim_cfg_finish(&c, e);
    if (rc != FLC_OK)
        return rc;
    /* The in-process invoker without settings runs the clients with the
     * driver's store options. */
    flc_sim_inproc_t inproc = {.store_opts = c.store_opts};
    if (c.invoke == flc_sim_invoke_inproc && c.invoke_user == NULL)
        c.invoke_user = &inproc;
    uint64_t t0 = flc_now_ns();
    sim_t sm = {.c = &c};
    res->rounds = calloc((size_t)c.rounds, sizeof *res->rounds);
    if (res->rounds == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    rc = sim_setup(&sm, res, e);
    /* Resume (sim_resume.c): the checkpoint of the last closed round, then
     * its global model; a fresh run drops an old checkpoint of the job. */
    flc_merge_state_t **states = calloc(sm.S ? sm.S : 1, sizeof *states);
    sim_resume_t rs = {.P = sm.P, .S = sm.S, .eligible = sm.eligible,
                       .neligible = sm.neligible, .states = states, .rule = &sm.rule,
                       .dp = &sm.dp};
    if (rc == FLC_OK && states == NULL)
        rc = flc_err_set(e, FLC_ENOMEM, "out of memory");
    for (uint32_t k = 0; rc == FLC_OK && k < sm.S; k++)
        states[k] = sm.m[k].state;
    if (rc == FLC_OK && c.resume && (rc = sim_resume_load(sm.s, &c, &rs, e)) == FLC_OK) {
        flc_shard_t g = {0};
        if (flc_store_get_merged(sm.s, sm.gjob, rs.round, 0, &g, sm.global, sm.P) != FLC_OK ||
            g.values != sm.global || g.count != sm.P)
            rc = flc_err_set(e, FLC_EDATA, "cannot resume job '%s': its global model of round "
                             "%u: %s", c.job, rs.round, g.count != sm.P && g.values
                             ? "another model size" : flc_store_errstr(sm.s));
        flc_shard_release(&g);
        res->resumed_after = rs.round;
        res->resumed_partial = rs.partial;
    } else if (rc == FLC_OK && flc_store_ckpt_del(sm.s, c.job) != FLC_OK) {
        rc = sim_store_err(sm.s, e);
    }
    for (int r = (int)rs.round + 1; rc == FLC_OK && r <= c.rounds; r++) {
        flc_sim_round_t *out = &res->rounds[res->nrounds];
        rc = run_round(&sm, (uint32_t)r, out, e);
        if (rc != FLC_OK) {
            flc_err_wrap(e, "round %d: ", r);
            break;
        }
        res->nrounds++;
        rs.round = (uint32_t)r;
        if ((rc = sim_resume_save(sm.s, &c, &rs, e)) != FLC_OK) {
            flc_err_wrap(e, "round %d's checkpoint: ", r);
            break;
        }
        res->cost_usd += out->cost_usd;
        res->bytes += out->bytes;
        if (progress)
            progress(out, c.rounds, (double)(flc_now_ns() - t0) / 1e9, user);
    }
    res->wall_ms = (double)(flc_now_ns() - t0) / 1e6;
    free(states);
    sim_teardown(&sm);
    return rc;
}
