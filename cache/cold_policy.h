/* The interface between the store and a caching policy (policies/), and the
 * query classes reads are tagged with.
 *
 * The store owns the mechanics (spill before evict, fetch back, keeping
 * Redis under maxmemory); a policy only decides: which hot objects to spill
 * when room is needed (choose_victims), whether an object fetched back from
 * the cold tier goes back into Redis (on_get's answer), and what to bring
 * back ahead of need (prefetch, asked after a round closes). It learns from
 * on_put / on_get / on_round_closed. The interface lives here, in cache/,
 * because the store calls it; the policies themselves live one layer up.
 *
 * Spillable objects are update shards and merged shards: metadata, indexes
 * and derived statistics are small and always stay in Redis. */
#ifndef FLC_CACHE_COLD_POLICY_H
#define FLC_CACHE_COLD_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "cache/keys.h"

/* What kind of query a read serves (flc_store_set_query_class). */
enum {
    FLC_QC_OTHER = 0,     /* untagged: training, merges, tools */
    FLC_QC_ROUND = 1,     /* all clients of one round: clustering, outliers, similarity */
    FLC_QC_CLIENT = 2,    /* one client across rounds: history, contribution, scheduling */
    FLC_QC_AGGREGATE = 3, /* merged models, metadata and statistics only: round history */
    FLC_QC_COUNT = 4
};

/* "other", "round", "client", "aggregate"; "?" out of range. */
const char *flc_qclass_name(int qc);

enum { FLC_OBJ_UPDATE = 1, FLC_OBJ_MERGED = 2 };

/* One spillable object: an update shard (client set) or a merged shard. */
typedef struct flc_obj {
    char job[FLC_NAME_MAX + 1];
    uint32_t round;
    uint32_t shard;
    char client[FLC_NAME_MAX + 1]; /* "" for a merged shard */
    int kind;                      /* FLC_OBJ_* */
    uint32_t num_shards;           /* the job's shard count (it places the key) */
    uint64_t bytes;                /* size of the stored value */
} flc_obj_t;

/* The Redis key of o (keys.h): fl:{T}:c:<client>:u:<r> or fl:{T}:r:<r>:agg
 * of shard o->shard's tag T (o->num_shards places it). */
void flc_obj_key(const flc_obj_t *o, char out[FLC_KEY_MAX]);

typedef struct flc_policy flc_policy_t;

typedef struct flc_policy_ops {
    const char *name;
    /* o was written to Redis (it is hot). */
    void (*on_put)(flc_policy_t *p, const flc_obj_t *o);
    /* o was read for a query of class qc; hit = 1 when Redis had it, 0 when
     * it came from the cold tier. For a miss, return 1 to put it back into
     * Redis (re-warm), 0 to leave it cold. The answer is ignored on a hit. */
    int (*on_get)(flc_policy_t *p, const flc_obj_t *o, int qc, int hit);
    /* Every merged shard of round has been written (the round closed). */
    void (*on_round_closed)(flc_policy_t *p, const char *job, uint32_t round);
    /* Fills out[0..max) with hot objects to spill, first to go first, whose
     * bytes add up to at least need when there are enough; returns how many. */
    size_t (*choose_victims)(flc_policy_t *p, uint64_t need, flc_obj_t *out, size_t max);
    /* Fills out[0..max) with cold objects worth re-warming now, up to budget
     * bytes in all; returns how many. */
    size_t (*prefetch)(flc_policy_t *p, uint64_t budget, flc_obj_t *out, size_t max);
    /* o left Redis (spilled: cold = 1) or was deleted everywhere (cold = -1),
     * or came back into Redis (cold = 0). */
    void (*on_moved)(flc_policy_t *p, const flc_obj_t *o, int cold);
    /* Bytes of the objects the policy knows, hot and cold. */
    void (*bytes)(const flc_policy_t *p, uint64_t *hot, uint64_t *cold);
    void (*free)(flc_policy_t *p);
} flc_policy_ops_t;

struct flc_policy {
    const flc_policy_ops_t *ops;
    void *state;
    char spec[32]; /* "lru", "window:4", "workload" */
};

#endif
