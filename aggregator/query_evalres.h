/* The evaluated numbers of one round, cached beside it (issue 17: a cached
 * evaluation query at 0.01x of a central aggregator's time). The cached
 * products of query_evalcache.h save the sgemms, but a warm query still
 * reads B x H floats per model (122 MB at FLStore's size) and mixes them
 * again; what the evaluation kinds answer from is a few numbers per
 * client. These are kept at fl:{T}:r:<r>:evres (cache/store_ops.h), one
 * small value per round, with a digest of everything they were computed
 * from: the evaluation set's stamp and sample count, the round's clients,
 * every update's and merged shard's stamp on every shard, and the global
 * model's stamp. A warm query reads the stamps (two round trips a shard,
 * no update, no product, not even the evaluation set) and the value.
 *
 * The weights (the updates' num_samples, read from their metadata) are
 * kept too and compared on a hit: metadata written again without the
 * update makes the value stale. Values are the cold computation's doubles,
 * so a warm answer is the cold one bit for bit. */
#ifndef FLC_AGGREGATOR_QUERY_EVALRES_H
#define FLC_AGGREGATOR_QUERY_EVALRES_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "cache/store.h"

/* What a value holds beyond every client's accuracy and loss. */
enum {
    FLC_EVNUM_LOO = 1,    /* leave-one-out drops */
    FLC_EVNUM_FAULTS = 2, /* fault scores and disagreement */
    FLC_EVNUM_PERS = 4,   /* the personalized model's accuracy (pers_k members) */
};

typedef struct flc_query_evnum {
    size_t n;                          /* clients evaluated */
    char **clients;                    /* n names, the evaluation's order (sorted) */
    double *w, *acc, *loss;            /* n each: weight, accuracy, mean loss */
    double *loo, *fs, *dis;            /* n each; NaN where not computed */
    double global_acc, fedavg_acc, agg_acc; /* agg_acc NaN: no aggregate */
    unsigned what;                     /* FLC_EVNUM_* */
    uint32_t pers_k;
    double pers_acc;
    uint32_t pers_shards;              /* the personalized model cached in that many */
    uint64_t pers_stamp;               /* pieces of stamp flc_query_evpers_stamp; 0: none */
    char *left_out;                    /* the evaluation's left_out note ("" none) */
    uint64_t digest;                   /* what it is valid for (not kept; 0: not cached) */
} flc_query_evnum_t;

/* Room for n clients (names NULL, numbers NaN). FLC_ENOMEM. */
int flc_query_evnum_init(flc_query_evnum_t *v, size_t n);
void flc_query_evnum_free(flc_query_evnum_t *v);

/* The digest of what round `round` of job would be evaluated from, for an
 * evaluation set of stamp set_stamp used with B samples. FLC_ENOTFOUND
 * when a part is missing (no clients, shards or global model): the caller
 * evaluates, which names what is missing. */
int flc_query_evnum_digest(flc_store_t *s, const char *job, uint32_t round, uint64_t set_stamp,
                           size_t B, uint64_t *digest);

/* The round's cached numbers when they were computed for digest:
 * FLC_OK with *v filled and *bytes the value's size, FLC_ENOTFOUND
 * otherwise (none, another digest, malformed). */
int flc_query_evnum_get(flc_store_t *s, const char *job, uint32_t round, uint64_t digest,
                        flc_query_evnum_t *v, uint64_t *bytes);

/* The series holding job's cached personalized models, "<job>/p", into
 * out (FLC_NAME_MAX + 1 bytes): FLC_OK, or FLC_EINVAL when the name would
 * be too long (such a job's model is built every time). */
int flc_query_pers_series(char *out, const char *job);

/* The personalized model of round `round` of job, cached by personalize
 * --by accuracy (query_evalpers.c) as the series "<job>/p" of that round in
 * `shards` pieces: a digest of every piece's stamp (flc_store_merged_stamp),
 * 0 when a piece is missing. Its answer's numbers record it
 * (pers_shards, pers_stamp); the pieces are used only while it holds. */
uint64_t flc_query_evpers_stamp(flc_store_t *s, const char *job, uint32_t round,
                                uint32_t shards);

/* Writes v for digest, best effort (a read-only user is refused: it
 * evaluates every time, with the same answers). */
void flc_query_evnum_put(flc_store_t *s, const char *job, uint32_t round, uint64_t digest,
                         const flc_query_evnum_t *v);

#endif
