/* In-memory merge rules of the aggregator, over float32 vectors.
 *
 * Every function works on a *slice*: a contiguous run of n floats of the flat
 * model. The same code therefore merges a whole model (AllReduce-to-one) or one
 * shard of it (reduce-scatter); nothing here knows which.
 *
 * Three ways in:
 *  - flc_merge_run(): one call, all k updates in memory, any rule.
 *  - flc_merge_acc_*: a streaming accumulator for the rules that allow it
 *    (FedAvg, mean, the server optimizers, each with optional clipping): fold
 *    one update at a time as it lands, then finish().
 *  - building blocks for sharded robust rules: per-slice median / trimmed
 *    mean, and for Krum the partial pairwise squared-distance matrix of a
 *    slice, which the shards' mergers sum before one Krum selection.
 *
 * What comes out: averaging and robust rules return the aggregate of their
 * inputs (in the inputs' own space: weights in -> weights out, deltas in ->
 * delta out). Server-optimizer rules (FedAvgM, FedAdam, FedYogi, FedAdagrad,
 * Reddi et al. 2021) take client *deltas* (client model minus global model)
 * and return the server step: the caller sets x <- x + out.
 *
 * Precision: sums are accumulated in double and rounded to float once, so
 * FedAvg and mean equal a double-precision reference loop to within one float
 * rounding per element, whatever the number of updates.
 *
 * Errors: FLC_EINVAL (unknown rule, bad parameter, bad weight, too few
 * updates), FLC_EDIM (an update of the wrong length), FLC_ENONFINITE (NaN or
 * Inf; the message names the index of the update and of the element),
 * FLC_ENOMEM. Messages go to the flc_err_t when one is given. */
#ifndef FLC_AGGREGATOR_MERGE_H
#define FLC_AGGREGATOR_MERGE_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

struct cJSON;

/* ---------------------------------------------------------------- rules */

typedef enum flc_merge_kind {
    FLC_MERGE_FEDAVG = 0,   /* sum(w_i u_i) / sum(w_i), w_i = num_samples */
    FLC_MERGE_MEAN,         /* sum(u_i) / k */
    FLC_MERGE_FEDAVGM,      /* server momentum (Hsu et al. 2019) */
    FLC_MERGE_FEDADAM,      /* Reddi et al. 2021, Algorithm 2 */
    FLC_MERGE_FEDYOGI,
    FLC_MERGE_FEDADAGRAD,
    FLC_MERGE_MEDIAN,       /* coordinate-wise median */
    FLC_MERGE_TRIMMED_MEAN, /* coordinate-wise, floor(trim*k) cut each side */
    FLC_MERGE_KRUM,         /* Blanchard et al. 2017 */
    FLC_MERGE_MULTI_KRUM,   /* mean of the m best Krum scores */
    FLC_MERGE_BULYAN,       /* El Mhamdi et al. 2018: Krum selection, then trimmed mean */
    FLC_MERGE_NKINDS
} flc_merge_kind_t;

/* A rule and its parameters. Fill it with flc_merge_rule_init() (defaults
 * from the literature), then flc_merge_rule_set() / _parse() / _from_json().
 * Parameters that do not apply to the rule keep their defaults and are
 * rejected by _set() so that typos do not pass silently. */
typedef struct flc_merge_rule {
    flc_merge_kind_t kind;
    double server_lr; /* eta: fedavgm 1, fedadam/fedyogi 0.01, fedadagrad 0.1 */
    double momentum;  /* fedavgm server momentum, default 0.9 */
    double beta1;     /* adaptive rules: first moment decay, default 0.9 */
    double beta2;     /* fedadam/fedyogi: second moment decay, default 0.99 */
    double tau;       /* adaptive rules: adaptivity, default 1e-3 */
    double clip;      /* every rule: clip each update to this L2 norm; 0 = off */
    double trim;      /* trimmed-mean: fraction cut each side, [0,0.5), default 0.1 */
    int f;            /* krum/multi-krum: Byzantine updates; -1 = (k-3)/2 (bulyan: (k-3)/4) */
    int m;            /* multi-krum: updates averaged; 0 = k - f */
    int weighted;     /* server optimizers: pseudo-gradient weighted by samples (0 = plain mean, as in the paper) */
    double noise;     /* mean: central DP noise multiplier sigma; the mean of the k clipped
                       * updates gets Gaussian noise of sd sigma*clip/k (needs clip); 0 = off */
} flc_merge_rule_t;

/* Sets *r to rule `name` ("fedavg", "mean", "fedavgm", "fedadam", "fedyogi",
 * "fedadagrad", "median", "trimmed-mean", "krum", "multi-krum", "bulyan"; '_' may stand
 * for '-') with its default parameters. FLC_EINVAL for an unknown name. */
int flc_merge_rule_init(flc_merge_rule_t *r, const char *name, flc_err_t *e);

/* Sets one parameter by name: server_lr (alias eta), momentum, beta1, beta2,
 * tau, clip, trim (alias trim_beta), f, m, weighted. FLC_EINVAL, naming the
 * parameter, when the name is unknown, does not apply to r's rule, or the
 * value is out of range (r is then unchanged). */
int flc_merge_rule_set(flc_merge_rule_t *r, const char *key, double value, flc_err_t *e);

/* Parses "name" or "name:key=value,key=value" (spaces allowed around tokens),
 * e.g. "fedadam:server_lr=0.03,tau=1e-4" or "trimmed-mean:trim=0.2". */
int flc_merge_rule_parse(flc_merge_rule_t *r, const char *spec, flc_err_t *e);

/* Reads a rule from JSON: a string (parsed as by _parse) or an object with a
 * "rule" (or "name") string and numeric (or boolean) parameters, e.g.
 * {"rule":"multi-krum","f":2,"m":5}. */
int flc_merge_rule_from_json(flc_merge_rule_t *r, const struct cJSON *j, flc_err_t *e);

/* Checks every parameter of r against its range; 0 or FLC_EINVAL. */
int flc_merge_rule_check(const flc_merge_rule_t *r, flc_err_t *e);

/* Writes the canonical spec of r ("fedadam:server_lr=0.01,beta1=0.9,...",
 * every parameter that applies) into buf; returns what snprintf returns. The
 * output parses back to an equal rule. */
int flc_merge_rule_format(const flc_merge_rule_t *r, char *buf, size_t len);

/* Canonical name of a kind ("trimmed-mean"), "?" when out of range. */
const char *flc_merge_kind_name(flc_merge_kind_t kind);

/* 1 when the rule folds updates one at a time (flc_merge_acc_*): fedavg,
 * mean and the server optimizers. Median, trimmed mean and Krum need every
 * update of the round at once. */
int flc_merge_rule_streams(const flc_merge_rule_t *r);

/* 1 when the rule selects whole updates from their pairwise distances
 * (krum, multi-krum, bulyan): sharded, its mergers must exchange partial
 * distance matrices and agree on one selection (aggregator/rs_krum.c). */
int flc_merge_rule_selects(const flc_merge_rule_t *r);

/* 1 when the rule keeps server state between rounds (flc_merge_state_t). */
int flc_merge_rule_has_state(const flc_merge_rule_t *r);

/* 1 when the rule weighs updates by their sample counts (fedavg, and the
 * server optimizers with weighted=1). */
int flc_merge_rule_weighted(const flc_merge_rule_t *r);

/* ------------------------------------------------- checks and clipping */

/* 0 when v[0..n) holds only finite values; FLC_ENONFINITE otherwise, with
 * *pos (when not NULL) set to the first NaN/Inf. Reads v once, vectorized. */
int flc_merge_check_finite(const float *v, size_t n, size_t *pos);

/* Sum of squares of v[0..n) in double. Per-shard sums add up to the squared
 * norm of the whole update. Not finite when v holds NaN/Inf. */
double flc_merge_sumsq(const float *v, size_t n);

/* Clipping factor min(1, clip / norm); 1 when clip <= 0 or norm <= clip. */
double flc_merge_clip_scale(double norm, double clip);

/* ----------------------------------------------------- a batch of updates */

/* k updates of one slice, all in memory. Only u, k and n are required. */
typedef struct flc_merge_batch {
    const float *const *u; /* k pointers to n floats each */
    size_t k;              /* number of updates */
    size_t n;              /* floats in the slice */
    const size_t *len;     /* optional: the length each update really has (checked == n) */
    const double *weight;  /* optional: num_samples per update (default 1) */
    const double *norm;    /* optional: whole-update L2 norms for clipping; needed when the
                            * slice is a shard (default: norm of the slice itself) */
    const double *scale;   /* optional: factor applied to each update before merging;
                            * overrides clipping (a sharded caller may precompute it) */
} flc_merge_batch_t;

/* Validates a batch for rule r: k > 0, no NULL update, lengths equal n
 * (FLC_EDIM), weights finite and >= 0 with a positive total when the rule
 * weighs, and every value finite (FLC_ENONFINITE naming update and element). */
int flc_merge_batch_check(const flc_merge_rule_t *r, const flc_merge_batch_t *b, flc_err_t *e);

/* flc_merge_batch_check without the NaN/Inf scan, for callers whose kernel
 * checks values as it reads them (the averaging rules do). */
int flc_merge_batch_check_args(const flc_merge_rule_t *r, const flc_merge_batch_t *b,
                               flc_err_t *e);

/* Per-update factors the rule applies before merging (b->scale, or clipping
 * from b->norm / the slices' own norms, or 1) into s[0..k). Returns how many
 * updates were clipped (factor < 1). */
size_t flc_merge_batch_scales(const flc_merge_rule_t *r, const flc_merge_batch_t *b, double *s);

/* What a merge did, for the round's metadata. All fields optional. */
typedef struct flc_merge_info {
    unsigned char *used; /* caller's array of k: 1 when the update entered the result
                          * (Krum rejects some; other rules use all) */
    size_t clipped;      /* out: updates scaled down by clipping */
} flc_merge_info_t;

typedef struct flc_merge_state flc_merge_state_t;

/* Merges batch b with rule r into out[0..n) (out may not alias an update).
 * st is required when flc_merge_rule_has_state(r) and must have been made for
 * the same rule kind and length; it is advanced by one round. info may be NULL.
 * On error out is left undefined and st unchanged. */
int flc_merge_run(const flc_merge_rule_t *r, flc_merge_state_t *st, const flc_merge_batch_t *b,
                  float *out, flc_merge_info_t *info, flc_err_t *e);

/* -------------------------------------------------- averaging (merge_avg.c) */

/* out[i] = inv * sum_j coef[j] * u[j][i], accumulated in double, for a slice
 * of n floats. The kernel reads each update once, checking each block for
 * NaN/Inf just before adding it, and writes out once. Returns 0, or
 * FLC_ENONFINITE with the update index and element in *bad_update and
 * *bad_pos (either may be NULL); out is then partly written. */
int flc_merge_wsum(const float *const *u, size_t k, size_t n, const double *coef, double inv,
                   float *out, size_t *bad_update, size_t *bad_pos);

/* The streaming accumulator: a running weighted sum in double of one slice. */
typedef struct flc_merge_acc flc_merge_acc_t;

/* A new accumulator of n floats for a streaming rule (flc_merge_rule_streams);
 * NULL with *e set otherwise or when out of memory. The rule is copied. */
flc_merge_acc_t *flc_merge_acc_new(const flc_merge_rule_t *r, size_t n, flc_err_t *e);

/* Frees acc; NULL is a no-op. */
void flc_merge_acc_free(flc_merge_acc_t *acc);

/* Empties acc for the next round (keeps its rule and length). */
void flc_merge_acc_reset(flc_merge_acc_t *acc);

/* Folds one update u[0..n) with `weight` samples (ignored by unweighted
 * rules). With clipping on, `norm` is the whole update's L2 norm when the
 * slice is a shard, or negative to use the slice's own norm (one more pass
 * over u). Errors: FLC_EDIM when n differs from the accumulator's length,
 * FLC_EINVAL for a negative or non-finite weight, FLC_ENONFINITE (message
 * names the update by its fold index, and the element). A refused update
 * leaves the sum as it was: the NaN/Inf check runs block by block just
 * before each block is added (so the update is read once), and blocks
 * already added are subtracted again, which restores each double sum to
 * within one rounding (~1e-16 of it, invisible in the float result). */
int flc_merge_acc_fold(flc_merge_acc_t *acc, const float *u, size_t n, double weight, double norm,
                       flc_err_t *e);

/* As _fold, with the pre-merge factor given directly (clipping already
 * decided by the caller): adds weight*scale*u, counts weight. */
int flc_merge_acc_fold_scaled(flc_merge_acc_t *acc, const float *u, size_t n, double weight,
                              double scale, flc_err_t *e);

/* An update that is not a float array (an encoded payload, cache/encode.h):
 * get writes its elements [off, off + m) into dst, m <= 512, blocks in
 * increasing order, off 0 again to start over. */
typedef void (*flc_merge_block_fn)(void *user, size_t off, size_t m, float *dst);

/* As _fold, reading the update block by block through get (no full copy):
 * the same sums as decoding it whole and folding that. A norm < 0 with
 * clipping on costs one more pass through get. */
int flc_merge_acc_fold_fn(flc_merge_acc_t *acc, size_t n, double weight, double norm,
                          flc_merge_block_fn get, void *user, flc_err_t *e);

/* Folds every update of b at once (one pass over acc instead of k); faster
 * than k single folds when several updates are ready. All or nothing: on
 * error acc is unchanged. */
int flc_merge_acc_fold_batch(flc_merge_acc_t *acc, const flc_merge_batch_t *b, flc_err_t *e);

/* Updates folded so far, and their total weight. */
size_t flc_merge_acc_count(const flc_merge_acc_t *acc);
double flc_merge_acc_weight(const flc_merge_acc_t *acc);

/* Writes the merge of everything folded into out[0..n): the average, or for
 * a server optimizer the step computed from that average with state st
 * (advanced by one round). FLC_EINVAL when nothing (or zero total weight) was
 * folded. acc keeps its sum; reset it for the next round. */
int flc_merge_acc_finish(flc_merge_acc_t *acc, flc_merge_state_t *st, float *out, flc_err_t *e);

/* Folding one update window by window (a merger that reads a big shard a
 * few MB at a time, issue 14 goal 4): _begin checks the weight and the
 * whole update's norm (clipping needs it given: norm >= 0 when clip > 0,
 * else FLC_EINVAL; a caller without it folds whole) and fixes the
 * coefficient; _fold adds u[0..m) at coordinates [first, first+m), with
 * the same kernel and so the same bits as one _fold of the whole update;
 * _end counts the update. A window holding a NaN/Inf is FLC_ENONFINITE
 * with *bad (window-relative) set and that window left as it was: the
 * caller takes the earlier windows back with _unfold (the same subtraction
 * _fold does within one update) and does not call _end. */
typedef struct flc_merge_acc_part {
    double c, w; /* coefficient weight*scale, and the weight counted */
    int first;   /* the round's first update: written, not added */
} flc_merge_acc_part_t;

int flc_merge_acc_part_begin(flc_merge_acc_t *acc, double weight, double norm,
                             flc_merge_acc_part_t *p, flc_err_t *e);
int flc_merge_acc_part_fold(flc_merge_acc_t *acc, const flc_merge_acc_part_t *p, const float *u,
                            size_t first, size_t m, size_t *bad, flc_err_t *e);
void flc_merge_acc_part_unfold(flc_merge_acc_t *acc, const flc_merge_acc_part_t *p,
                               const float *u, size_t first, size_t m);
void flc_merge_acc_part_end(flc_merge_acc_t *acc, const flc_merge_acc_part_t *p);

/* The average's coordinates [first, first+m) into out[0..m): the same
 * floats flc_merge_acc_finish writes there, for the rules without server
 * state (FLC_EINVAL for the others, and when nothing was folded). m = 0
 * only checks. */
int flc_merge_acc_finish_range(const flc_merge_acc_t *acc, size_t first, size_t m, float *out,
                               flc_err_t *e);

/* ---------------------------------- server optimizers (merge_server_opt.c) */

/* Server state of one slice, kept by the caller between rounds (the
 * reduce-scatter merger keeps one per shard). m and v are plain arrays of n
 * floats so they can be stored and loaded as they are. */
struct flc_merge_state {
    flc_merge_kind_t kind; /* the rule it was made for */
    size_t n;              /* floats in the slice */
    uint64_t rounds;       /* server steps taken */
    float *m;              /* first moment / momentum buffer, starts at 0 */
    float *v;              /* second moment (adaptive rules; NULL for fedavgm), starts at tau^2 */
};

/* New state of n floats for rule r (which must have state); NULL with *e set
 * otherwise. v starts at tau^2 as in Reddi et al. (v_{-1} >= tau^2). */
flc_merge_state_t *flc_merge_state_new(const flc_merge_rule_t *r, size_t n, flc_err_t *e);

/* Frees st; NULL is a no-op. */
void flc_merge_state_free(flc_merge_state_t *st);

/* Puts st back to its initial values (m = 0, v = tau^2, rounds = 0). */
void flc_merge_state_reset(flc_merge_state_t *st, const flc_merge_rule_t *r);

/* One server step from the pseudo-gradient g[0..n) (the mean client delta):
 *   fedavgm:    m = momentum*m + g;                          out = eta*m
 *   adaptive:   m = beta1*m + (1-beta1)*g
 *     fedadagrad v = v + g^2
 *     fedadam    v = beta2*v + (1-beta2)*g^2
 *     fedyogi    v = v - (1-beta2)*g^2*sign(v - g^2)
 *               out = eta * m / (sqrt(v) + tau)
 * out may equal g. FLC_EINVAL when st does not fit r or n. */
int flc_merge_server_step(const flc_merge_rule_t *r, flc_merge_state_t *st, const float *g,
                          float *out, size_t n, flc_err_t *e);

/* --------------------------------------- robust, per slice (merge_robust.c) */

/* Coordinate-wise median of s_j*u[j] (s = NULL: factors 1) into out[0..n);
 * for even k the mean of the two middle values. FLC_ENOMEM only. */
int flc_merge_median(const float *const *u, size_t k, size_t n, const double *s, float *out,
                     flc_err_t *e);

/* Coordinate-wise trimmed mean: drops the t = floor(trim*k) smallest and t
 * largest values of each coordinate and averages the rest (in double). */
int flc_merge_trimmed_mean(const float *const *u, size_t k, size_t n, const double *s, double trim,
                           float *out, flc_err_t *e);

/* Values cut from each side by the trimmed mean of k updates. */
size_t flc_merge_trim_count(double trim, size_t k);

/* ------------------------------------------ Krum, sharded (merge_krum.c) */

/* Adds the Gram matrix of the slice, G[i*k+j] += sum_c s_i u_i[c] s_j u_j[c],
 * in double, into the k*k row-major matrix G (both triangles). Per-shard Grams
 * sum to the whole model's Gram (dot products, norms). */
int flc_merge_gram_partial(const float *const *u, size_t k, size_t n, const double *s, double *G,
                           flc_err_t *e);

/* Adds the pairwise squared distances of the slice, D[i*k+j] +=
 * sum_c (s_i u_i[c] - s_j u_j[c])^2, into the k*k row-major matrix D (zero
 * diagonal, symmetric). Computed through a Gram matrix (BLAS dsyrk) of the
 * slice centred per block, which keeps the subtraction from cancelling.
 * Per-shard partials sum to the whole model's distances. */
int flc_merge_sqdist_partial(const float *const *u, size_t k, size_t n, const double *s, double *D,
                             flc_err_t *e);

/* Krum selection from the whole-model squared distances D (k*k): score_i =
 * sum of the k-f-2 smallest D[i][j], j != i; writes the indices of the m
 * lowest scores (ties: lower index first) into sel[0..m), best first, and the
 * scores into score[0..k) when not NULL. f < 0 means (k-3)/2. FLC_EINVAL when
 * k < f+3 or m is not in 1..k. */
int flc_merge_krum_select(const double *D, size_t k, int f, size_t m, size_t *sel, double *score,
                          flc_err_t *e);

/* Number of updates Multi-Krum averages for rule r and k updates (1 for
 * krum), and the f it uses; FLC_EINVAL when k is too small. */
int flc_merge_krum_params(const flc_merge_rule_t *r, size_t k, int *f, size_t *m, flc_err_t *e);

/* out[0..n) = mean of s_j*u[j] over the m indices in sel (double sums), the
 * Multi-Krum average of one slice. FLC_ENOMEM only. */
int flc_merge_mean_of(const float *const *u, const size_t *sel, size_t m, size_t n, const double *s,
                      float *out, flc_err_t *e);

/* ------------------------------------------------ Bulyan (merge_bulyan.c) */

/* f, theta = k - 2f (updates Krum selects one by one) and beta = theta - 2f
 * (values averaged per coordinate) of Bulyan for rule r and k updates;
 * f < 0 in r means (k-3)/4. FLC_EINVAL when k < 4f + 3. */
int flc_merge_bulyan_params(const flc_merge_rule_t *r, size_t k, int *f, size_t *theta,
                            size_t *beta, flc_err_t *e);

/* Bulyan's selection from the whole-model squared distances D (k*k): theta
 * rounds of Krum, each over the updates not selected yet (score = sum of the
 * max(1, r-f-2) smallest distances to the r-1 others still in the set), the
 * winner moved to sel (sel[0..theta), in selection order). Scores equal to
 * within 1e-9 of the largest score of the round are ties, won by the lower
 * rank[i] (the rank of the update's client id; NULL: its index), so rounding
 * differences between shard counts cannot change the choice. */
int flc_merge_bulyan_select(const double *D, size_t k, int f, size_t theta, const size_t *rank,
                            size_t *sel, flc_err_t *e);

/* Bulyan's second step on one slice: for each coordinate, the beta values of
 * s_j*u[sel[j]] (j < theta) closest to their median (ties: lower rank of the
 * update, rank indexed like u; NULL: index) averaged in double into out. */
int flc_merge_bulyan_trim(const float *const *u, const size_t *sel, size_t theta, size_t beta,
                          size_t n, const double *s, const size_t *rank, float *out,
                          flc_err_t *e);

#endif
