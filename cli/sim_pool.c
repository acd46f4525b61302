/* The simulation driver's clients as pool invocations (see sim_pool.h). */
#include <stdio.h>
#include <stdlib.h>

#include <cjson/cJSON.h>

#include "cli/sim_pool.h"
#include "runtime/pool.h"

int flc_sim_pool_invoke(void *user, cJSON *const *events, size_t n, flc_sim_inv_t *out,
                        flc_err_t *e)
{
    flc_pool_t *pool = user;
    flc_inv_rec_t *recs = calloc(n ? n : 1, sizeof *recs);
    if (recs == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    int rc = flc_pool_invoke_json(pool, (const cJSON *const *)events, n, recs, e);
    for (size_t i = 0; rc == FLC_OK && i < n; i++) {
        const cJSON *res = flc_inv_result(&recs[i]);
        out[i].ok = recs[i].status == FLC_INV_OK && cJSON_IsObject(res);
        out[i].result = out[i].ok ? cJSON_Duplicate(res, 1) : NULL;
        if (!out[i].ok)
            snprintf(out[i].error, sizeof out[i].error, "%s: %.200s",
                     flc_inv_status_name(recs[i].status), recs[i].error);
        out[i].duration_ms = recs[i].duration_ms;
        out[i].cost_usd = recs[i].cost_usd;
        out[i].cold = recs[i].cold;
    }
    for (size_t i = 0; i < n; i++)
        flc_inv_rec_clear(&recs[i]);
    free(recs);
    return rc;
}
