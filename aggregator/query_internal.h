/* Private to aggregator/query*.c: answer building and the per-kind runners. */
#ifndef FLC_AGGREGATOR_QUERY_INTERNAL_H
#define FLC_AGGREGATOR_QUERY_INTERNAL_H

#include "aggregator/query.h"

/* A new empty answer with numeric then text columns; NULL when out of memory. */
Flcache__QueryAnswer *flc_query_answer_new(const char *job, const char *kind,
                                           const char *const *num, size_t nnum,
                                           const char *const *text, size_t ntext);

/* Appends a row: vals has num_numeric values, text the text columns (NULL
 * entries print as ""). */
int flc_query_answer_row(Flcache__QueryAnswer *a, const char *key, const double *vals,
                         const char *const *text);
void flc_query_answer_summary(Flcache__QueryAnswer *a, const char *key, double value);
void flc_query_answer_note(Flcache__QueryAnswer *a, const char *key, const char *text);

/* The rounds of req in [from, to] that the job has (ascending, malloc'd);
 * FLC_ENOTFOUND naming the job or the range when there are none. */
int flc_query_rounds(flc_store_t *s, const flc_query_req_t *req, uint32_t **rounds, size_t *n,
                     flc_err_t *e);

/* The runners: each builds *out for its kind. */
int flc_query_history(flc_store_t *s, const flc_query_req_t *q, Flcache__QueryAnswer **out,
                      flc_err_t *e);
int flc_query_client(flc_store_t *s, const flc_query_req_t *q, Flcache__QueryAnswer **out,
                     flc_err_t *e);
int flc_query_schedule(flc_store_t *s, const flc_query_req_t *q, Flcache__QueryAnswer **out,
                       flc_err_t *e);
/* at: where the shard workers connect and with which store options (see
 * flc_query_gram); flc_query_run fills it. */
int flc_query_vectors(flc_store_t *s, const flc_query_req_t *q, const flc_store_cfg_t *at,
                      Flcache__QueryAnswer **out, flc_err_t *e);
int flc_query_personalize(flc_store_t *s, const flc_query_req_t *q, const flc_store_cfg_t *at,
                          Flcache__QueryAnswer **out, flc_err_t *e);

#endif
