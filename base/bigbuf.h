/* Big scratch buffers (hundreds of MB: a query worker's rows, a merger's
 * accumulators) mapped in huge pages and populated in one call.
 *
 * Why: on the VMs this runs on (paravirtualized, 2 vCPUs) every page fault
 * is a trap to the hypervisor; perf showed a cold query spending about a
 * fifth of its CPU in faults on freshly malloc'd rows (220 MB per shard at
 * 25 MB updates, 4 KiB at a time). Transparent huge pages (asked for with
 * MADV_HUGEPAGE, the kernel's "madvise" mode) cut the faults 512-fold and
 * MADV_POPULATE_WRITE takes them all in one system call. Both are hints:
 * where refused, the buffer is ordinary anonymous memory. */
#ifndef FLC_BASE_BIGBUF_H
#define FLC_BASE_BIGBUF_H

#include <stddef.h>

/* bytes of zeroed memory, or NULL. Free with flc_big_free(p, bytes). */
void *flc_big_alloc(size_t bytes);

/* Frees what flc_big_alloc(bytes) returned; NULL: no-op. */
void flc_big_free(void *p, size_t bytes);

/* bytes of zeroed memory for a buffer made afresh every round or request
 * (a merger's sums and update buffers): from flc_big_alloc when at least
 * FLC_BIG_MIN bytes (populated: one call instead of a fault per page),
 * calloc below (a mapping of its own is not worth it). NULL when out of
 * memory. Free with flc_buf_free(p, bytes), the same bytes. */
#define FLC_BIG_MIN ((size_t)1 << 20)
void *flc_buf_alloc(size_t bytes);
void flc_buf_free(void *p, size_t bytes);

/* The same hints for memory that must come from malloc (a buffer handed to
 * a caller who frees it): the whole pages inside p .. p + bytes in huge
 * pages where the kernel can, and populated now; their contents are kept.
 * Below FLC_BIG_MIN: nothing. */
void flc_big_prefault(void *p, size_t bytes);

#endif
