/* simulate's evaluation set: the ml types turned into the query engine's
 * (the aggregator layer knows no ml/), stored with the job. */
#include "clients/sim_evalset.h"

#include "aggregator/query.h"

int flc_sim_evalset_put(flc_store_t *s, const char *job, const flc_model_t *m,
                        const flc_dataset_t *test, flc_err_t *e)
{
    flc_query_evalset_t es = {
        .kind = m->d.kind == FLC_MODEL_MLP ? FLC_QUERY_MODEL_MLP : FLC_QUERY_MODEL_SOFTMAX,
        .in = m->d.in, .hidden = m->d.hidden, .out = m->d.out,
        .n = test->n < FLC_SIM_EVALSET_SAMPLES ? test->n : FLC_SIM_EVALSET_SAMPLES,
        .x = test->x, .y = test->y};
    return flc_query_evalset_put(s, job, &es, e);
}
