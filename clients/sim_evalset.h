/* The evaluation set `flcache simulate` stores with its job (issue 17):
 * a part of the test split it evaluates the global model on, and the model
 * descriptor, so the query engine's evaluation kinds can run every client's
 * model next to the updates (aggregator/query.h, "the evaluation set"). */
#ifndef FLC_CLIENTS_SIM_EVALSET_H
#define FLC_CLIENTS_SIM_EVALSET_H

#include "base/error.h"
#include "cache/store.h"
#include "ml/dataset.h"
#include "ml/model.h"

#define FLC_SIM_EVALSET_SAMPLES 1000 /* 3 MB of inputs: what a query evaluates on */

/* Stores the first FLC_SIM_EVALSET_SAMPLES samples of test (fewer when it
 * has fewer) as job's evaluation set for model m. */
int flc_sim_evalset_put(flc_store_t *s, const char *job, const flc_model_t *m,
                        const flc_dataset_t *test, flc_err_t *e);

#endif
