/* report_internal.h - what the report's files share inside report/: the
 * job's data as read from the cache, and the section writers. */
#ifndef FLC_REPORT_INTERNAL_H
#define FLC_REPORT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "proto/flcache.pb-c.h"
#include "report/html.h"
#include "report/report.h"
#include "report/svg.h"

/* Everything the page shows, read once. */
typedef struct rep_data {
    const char *job;
    int train;                   /* a `flcache train` job (epochs), else a simulation */
    size_t nr;
    uint32_t *rounds;            /* ascending */
    double *x;                   /* rounds as doubles, for the plots */
    Flcache__RoundMeta **meta;   /* per round, NULL when it has none */
    Flcache__ModelUpdate ***ups; /* per round, its update records */
    size_t *nups;
    size_t nc;                   /* clients seen in any round (sorted by name) */
    char **clients;
    unsigned char *faulty;       /* per client: ground truth says faulty */
    int truth;                   /* some update carries the ground truth */
    double *susp;                /* nc x nr outlier suspicion, NaN: no update */
    size_t susp_rounds;          /* rounds the outlier query answered */
    char susp_err[300];          /* why a round had no answer (the first such) */
} rep_data_t;

/* Reads the job (rounds, metadata, updates, suspicion) into d. */
int rep_load(flc_store_t *s, const flc_report_opts_t *o, rep_data_t *d, flc_err_t *e);
void rep_free(rep_data_t *d);

/* metric `key` of round i, NaN when absent. */
double rep_metric(const rep_data_t *d, size_t i, const char *key);
/* note `key` of the first round that has it, or NULL. */
const char *rep_note(const rep_data_t *d, const char *key);
/* hyperparameter `key` of the first round that has it, or NaN. */
double rep_hyper(const rep_data_t *d, const char *key);
/* the label / metric of an update, "" / NaN when absent. */
const char *rep_label(const Flcache__ModelUpdate *u, const char *key);
double rep_umetric(const Flcache__ModelUpdate *u, const char *key);
/* index of client name in d->clients, or -1. */
long rep_client(const rep_data_t *d, const char *name);

/* A section: <section id=...><h2>title</h2><p class="how">how to read it</p>. */
void rep_section_open(flc_html_t *o, const char *id, const char *title, const char *how);
void rep_section_close(flc_html_t *o);
/* A paragraph saying why a section has no plot. */
void rep_absent(flc_html_t *o, const char *why);
/* A line plot of series ys[s] over the rounds (NaN: gap), with an optional
 * marker at round `mark` (mark < 0: none). */
void rep_lines(flc_html_t *o, const rep_data_t *d, const char *title, const char *ylabel,
               const double *const *ys, const char *const *names, size_t ns, int yzero,
               double mark, const char *mark_label);

/* The sections of a simulated job (report_sim.c; buf: 5 x nr doubles). */
void rep_sec_accuracy(const rep_data_t *d, double *acc, double *tl, double *trl,
                      flc_html_t *o);
void rep_sec_participation(const rep_data_t *d, flc_html_t *o, double *buf);
void rep_sec_time_cost(const rep_data_t *d, flc_html_t *o, double *buf);
void rep_sec_heat(const rep_data_t *d, flc_html_t *o);

/* The sections of a simulated job / a training job. */
int rep_sim_sections(flc_store_t *s, const flc_report_opts_t *o, const rep_data_t *d,
                     flc_html_t *out, flc_err_t *e);
int rep_train_sections(const rep_data_t *d, flc_html_t *out);

/* The job's tune record (report_tune.c): *found says whether it has one;
 * *rec is NULL when it has none or it is not JSON (the section then says
 * so). FLC_OK, or the store's error. */
struct cJSON;
int rep_tune_load(flc_store_t *s, const char *job, struct cJSON **rec, int *found,
                  flc_err_t *e);
/* The sizing section: time and cost against memory (rec may be NULL: a
 * record that did not parse). */
void rep_tune_section(const struct cJSON *rec, flc_html_t *o);

#endif
