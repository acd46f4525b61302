/* Private to policies/: the object table every policy keeps (one entry per
 * update or merged shard it has seen: hot or cold, size, last access), the
 * generic halves of the interface, and the per-policy hooks. */
#ifndef FLC_POLICIES_POL_TABLE_H
#define FLC_POLICIES_POL_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "policies/policy.h"

typedef struct pol_entry {
    flc_obj_t o;
    uint64_t tick;  /* last put or get */
    uint8_t hot;    /* in Redis */
    uint8_t live;   /* 0 once deleted */
} pol_entry_t;

#define POL_MAX_JOBS 16

typedef struct pol_job {
    char name[FLC_NAME_MAX + 1];
    uint32_t max_round;    /* newest round written */
    uint32_t closed_round; /* newest round closed */
    int has_closed;
} pol_job_t;

typedef struct pol pol_t;

/* What makes one policy differ from another. */
typedef struct pol_hooks {
    /* Lower is spilled first. */
    double (*score)(pol_t *p, const pol_entry_t *e);
    /* On a miss (read from the cold tier): re-warm? */
    int (*rewarm)(pol_t *p, const pol_entry_t *e, int qc);
    /* Every get, before rewarm is asked (learning). NULL: nothing. */
    void (*learn)(pol_t *p, const pol_entry_t *e, int qc, int hit);
    /* Cold objects to bring back; NULL: none. */
    size_t (*prefetch)(pol_t *p, uint64_t budget, flc_obj_t *out, size_t max);
} pol_hooks_t;

struct pol {
    flc_policy_t pub;
    pol_hooks_t hooks;
    pol_entry_t *e;
    size_t n, cap;
    uint32_t *idx; /* open addressing: entry index + 1, 0 = empty */
    size_t idx_cap;
    uint64_t tick;
    uint64_t hot_bytes, cold_bytes;
    pol_job_t jobs[POL_MAX_JOBS];
    int njobs;
    unsigned window_k; /* window:K */
    void *ext;         /* policy's own state (workload) */
};

/* A new policy with the generic ops and the given hooks; spec names it. */
pol_t *pol_create(const char *spec, const pol_hooks_t *hooks);

/* The entry of o, created (cold, not live-counted) when create and absent. */
pol_entry_t *pol_find(pol_t *p, const flc_obj_t *o, int create);

/* The job's record (created when absent, NULL when the table of jobs is full). */
pol_job_t *pol_job(pol_t *p, const char *job);

#endif
