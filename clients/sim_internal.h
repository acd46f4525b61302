/* Private to the simulation driver (sim.c runs rounds, sim_record.c writes
 * their records into the store). */
#ifndef FLC_CLIENTS_SIM_INTERNAL_H
#define FLC_CLIENTS_SIM_INTERNAL_H

#include "aggregator/dp.h"
#include "aggregator/merge.h"
#include "aggregator/reduce_scatter.h"
#include "clients/sim.h"

/* One sampled client of a round. */
typedef struct sim_client {
    int idx;              /* client number i of "c<i>" */
    char name[24];
    size_t num_samples;
    int dropped, faulty;
    double delay_ms;
    long inv;             /* its slot in the round's invocations, -1 if not invoked */
} sim_client_t;

/* What the driver knows about a finished round, for its records. */
typedef struct sim_round_rec {
    uint32_t round;
    sim_client_t *cl;     /* K sampled */
    size_t k;
    flc_sim_inv_t *inv;   /* invoked ones */
    flc_sim_round_t *out; /* the summary, completed by sim_record_round */
    uint64_t started_ms;
    uint64_t bytes_read, bytes_written; /* driver and mergers */
    double merge_cost_usd;
    double dp_epsilon;    /* central DP: privacy spent after this round at dp_delta
                           * (aggregator/dp.h); < 0 without DP */
    double dp_delta;
    double dp_clip;       /* adaptive clipping: the clip norm this round used; < 0: fixed */
} sim_round_rec_t;

/* Shared by the synchronous and asynchronous drivers (clients/sim_choices.c). */

/* The merge rule of c: --rule, or the strategy's with its options. */
int sim_rule_for(const flc_sim_cfg_t *c, flc_merge_rule_t *r, flc_err_t *e);

/* Exactly round(faulty * N) faulty clients, a seeded choice, flagged in
 * flags[0..N) (zeroed by the caller); their count into *nfaulty. */
int sim_faulty_set(const flc_sim_cfg_t *c, unsigned char *flags, size_t *nfaulty, flc_err_t *e);

/* A client's event (clients/client.h reads it) with what both drivers
 * put in it: the job, round, client, cache, global series gjob, S shards,
 * seed, fault and the keys' TTL; the caller adds its own. NULL when out of
 * memory. */
struct cJSON *sim_event_new(const flc_sim_cfg_t *c, const char *gjob, uint32_t S,
                            uint32_t round, const sim_client_t *x);

/* The training half of a client's event (clients/client.h reads it): the
 * model and its hyper-parameters, the data directory and the client's
 * sample indices (partition parts, client idx). */
struct cJSON;
struct flc_parts;
void sim_event_training(struct cJSON *o, const flc_sim_cfg_t *c, const struct flc_parts *parts,
                        int idx);

/* The test split (the evaluation data) and the model of c (--model,
 * --hidden) sized by it. */
struct flc_dataset;
struct flc_model;
int sim_load_model(const flc_sim_cfg_t *c, struct flc_dataset **test, struct flc_model **model,
                   flc_err_t *e);

/* *placed = 1 when c places mergers (c->place) and the store is a cluster
 * (on one server there is nothing to be next to). */
int sim_placed(flc_store_t *s, const flc_sim_cfg_t *c, int *placed, flc_err_t *e);

/* The store's last error copied into e (FLC_ECONN when it has no code). */
int sim_store_err(flc_store_t *s, flc_err_t *e);

/* Writes global (P floats) as round `round` of the series gjob ("<J>/g",
 * one shard) with its index expiry. */
int sim_put_global(flc_store_t *s, const char *gjob, uint32_t round, size_t P, float *global,
                   flc_err_t *e);

/* Differential privacy of a simulation (clients/sim_dp.c). */
typedef struct sim_dp {
    flc_dp_acct_t acct; /* privacy spent so far */
    double z;           /* the noise multiplier the accountant counts (central or local) */
} sim_dp_t;

/* Before the first round: zeroes d and, with adaptive clipping of a noised
 * rule, lowers rule->noise to what is left for the updates once the count's
 * noise is paid (FLC_EINVAL when nothing is left). */
int sim_dp_setup(sim_dp_t *d, const flc_sim_cfg_t *c, flc_merge_rule_t *rule, flc_err_t *e);

/* After round rec->round merged with rule: one more round in the accountant
 * (q = k / neligible) into rec->dp_epsilon / dp_delta, the clip it used into
 * rec->dp_clip, then with adaptive clipping the clip for the next round from
 * the k invocations' update norms. Sets those rec fields in every case. */
int sim_dp_round(sim_dp_t *d, const flc_sim_cfg_t *c, flc_merge_rule_t *rule,
                 const flc_sim_inv_t *inv, size_t k, size_t neligible, sim_round_rec_t *rec,
                 flc_err_t *e);

/* Resume (clients/sim_resume.c): the driver's state a checkpoint holds. */
typedef struct sim_resume {
    uint32_t round;             /* the last closed round */
    size_t P;
    uint32_t S;
    uint32_t *eligible;         /* the driver's sampling order (borrowed) */
    size_t neligible;
    flc_merge_state_t **states; /* per shard; NULL entries for a rule without state */
    flc_merge_rule_t *rule;     /* its clip follows adaptive clipping */
    sim_dp_t *dp;
    int partial;                /* set by load: round + 1 had begun; it was cleared */
} sim_resume_t;

/* Writes the job's checkpoint after round r->round was recorded. */
int sim_resume_save(flc_store_t *s, const flc_sim_cfg_t *c, const sim_resume_t *r, flc_err_t *e);

/* Reads the job's checkpoint into r (the order, states, clip and accountant
 * it points to), refusing (FLC_EINVAL, naming the option) a run whose
 * options differ from the job's, FLC_ENOTFOUND when there is none; then
 * deletes the round after it if it had begun (r->partial). */
int sim_resume_load(flc_store_t *s, const flc_sim_cfg_t *c, sim_resume_t *r, flc_err_t *e);

/* Completes the round's RoundMeta (metrics, hyperparameters, notes, bytes,
 * cost) and writes one ModelUpdate per sampled client; fills the counts of
 * rec->out from the merge outcome. */
int sim_record_round(flc_store_t *s, const flc_sim_cfg_t *c, size_t nparams,
                     sim_round_rec_t *rec, flc_err_t *e);

/* On a Redis Cluster, after the invoked clients returned and before the
 * mergers are woken: invokes again every acknowledged client whose update
 * some shard's node no longer holds (lost in a failover), and, when a
 * failover was seen (that, or the driver store's flc_store_failovers moved
 * from failovers0), every client whose invocation failed; their outcomes
 * replace inv[]. Fills out->resent / resent_names, and out->lost /
 * lost_names with what is still missing after that (the round then fails).
 * Nothing on one server. (clients/sim_failover.c) */
int sim_resend_lost(flc_store_t *s, const flc_sim_cfg_t *c, uint32_t round, uint32_t S,
                    sim_client_t *cl, size_t k, struct cJSON *const *evs, flc_sim_inv_t *inv,
                    uint64_t failovers0, flc_sim_round_t *out, flc_err_t *e);

/* After the mergers closed: an acknowledged client that a shard's merger
 * lists as missing was lost after the check above; adds it to out->lost /
 * lost_names. reps[0..S): each shard's report (NULL: none). */
void sim_name_lost(const sim_client_t *cl, size_t k, const flc_sim_inv_t *inv,
                   const flc_rs_report_t *const *reps, uint32_t S, flc_sim_round_t *out);

#endif
