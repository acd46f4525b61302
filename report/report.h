/* report.h - `flcache report`: one self-contained HTML page about a job.
 *
 * The page is made from what the cache holds and nothing else: the rounds'
 * RoundMeta, every update's ModelUpdate, and the query engine's answers
 * (outliers per round, the Gram matrix and k-means of one round,
 * contribution), computed next to the data like any query. A simulated job
 * (flcache simulate) gets accuracy and loss, participation, time and cost,
 * outlier suspicion per client and round, a 2-D map of one round's clients
 * and the contribution ranking; a training job (flcache train) gets loss,
 * accuracy, step time, the compute/communication split and cost per epoch.
 * Plots are inline SVG (report/svg.h); the page has no script and loads
 * nothing. docs/report.md says what each section shows. */
#ifndef FLC_REPORT_REPORT_H
#define FLC_REPORT_REPORT_H

#include <stdint.h>

#include "base/error.h"
#include "cache/store.h"
#include "report/html.h"

typedef struct flc_report_opts {
    const char *job;
    int have_round;       /* the map's round is `round`; else the last round with updates */
    uint32_t round;
    unsigned k;           /* clusters of the map (0: 2) */
    unsigned seed;        /* k-means++ seed */
    const char *url;      /* where the query's shard workers connect (NULL: s's server) */
    const flc_store_opts_t *store_opts; /* their store options (NULL: built-in) */
    flc_place_t place;    /* where they run on a cluster (zero: here) */
    const char *command;  /* the command that made the page, shown on it (may be NULL) */
} flc_report_opts_t;

/* Writes the page of job o->job into out (appended). FLC_ENOTFOUND names an
 * unknown job; a section whose data is missing (no updates left, no
 * accuracy recorded) says so on the page instead of failing the report.
 * FLC_ENOMEM when the page could not be built. */
int flc_report_write(flc_store_t *s, const flc_report_opts_t *o, flc_html_t *out,
                     flc_err_t *e);

/* Classical multidimensional scaling from a Gram matrix: the n points whose
 * pairwise distances are those of the vectors G holds (G[i*ld+j] = <v_i,
 * v_j>), in 2-D: xy[2*i], xy[2*i+1]. The centred Gram matrix J G J is
 * decomposed by LAPACK's dsyevr (OpenBLAS) and the two largest eigenpairs
 * give the coordinates; *explained (may be NULL) is their share of the
 * positive spectrum. FLC_EINVAL for n == 0, FLC_ENOMEM, FLC_EDATA when the
 * eigen-solver fails. */
int flc_report_mds(const double *G, size_t ld, size_t n, double *xy, double *explained,
                   flc_err_t *e);

#endif
