/* ps_internal.h - what the parameter server's files share (not installed). */
#ifndef FLC_WORKERS_PS_INTERNAL_H
#define FLC_WORKERS_PS_INTERNAL_H

#include "workers/ps.h"

#define FLC_PS_HELLO 0x48504c46u /* "FLPH" */
#define FLC_PS_PUSH 0x47504c46u  /* "FLPG" */
#define FLC_PS_MODEL 0x4d504c46u /* "FLPM" */

typedef struct flc_ps_hello {
    uint32_t tag, rank, workers, pad;
    uint64_t nparams;
    float lr;
    uint32_t pad2;
} flc_ps_hello_t;

typedef struct flc_ps_head {
    uint32_t tag, step;
} flc_ps_head_t;

/* Connects to addr, retrying while the server is not yet listening (up to
 * timeout_ms). The descriptor, or a negative FLC_E*. */
int flc_ps_connect_raw(const char *addr, unsigned timeout_ms, flc_err_t *e);

#endif
