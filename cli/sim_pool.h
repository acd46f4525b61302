/* Simulation clients as functions on the local platform: the adapter from
 * the simulation driver's invoke callback (clients/sim.h) to the libuv pool
 * (runtime/pool.h). It lives above both layers because clients/ may not
 * include runtime/; `flcache simulate` and test_simulate share it. */
#ifndef FLC_CLI_SIM_POOL_H
#define FLC_CLI_SIM_POOL_H

#include <stddef.h>

#include "clients/sim.h"

struct cJSON;

/* flc_sim_invoke_t over a flc_pool_t (user): runs the n client events on the
 * pool at once; out[i] is ok with a copy of the function's result object,
 * or not ok with "<status>: <error>". */
int flc_sim_pool_invoke(void *user, struct cJSON *const *events, size_t n, flc_sim_inv_t *out,
                        flc_err_t *e);

#endif
