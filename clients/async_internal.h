/* Private to the asynchronous simulation (async_sim.c drives versions,
 * async_record.c adds their records and the pieces shared with the
 * synchronous driver's choices). */
#ifndef FLC_CLIENTS_ASYNC_INTERNAL_H
#define FLC_CLIENTS_ASYNC_INTERNAL_H

#include "clients/async.h"
#include "clients/sim_internal.h"

/* After sim_record_round wrote version v's records: adds the asynchronous
 * fields (clients/async.h, "Records") to each arrival's ModelUpdate and to
 * the version's RoundMeta. */
int async_record_version(flc_store_t *s, const flc_sim_cfg_t *c, const flc_async_cfg_t *a,
                         const flc_async_stale_t *stale, uint32_t v,
                         const flc_async_arrival_t *arr, size_t n,
                         const flc_async_version_t *ver, flc_err_t *e);

#endif
