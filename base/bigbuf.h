/* Big scratch buffers (hundreds of MB: a query worker's rows, a merger's
 * accumulators) mapped on their own and populated in one call.
 *
 * Why: on the VMs this runs on (paravirtualized, 2 vCPUs) every page fault
 * is a trap to the hypervisor; perf showed a cold query spending about a
 * fifth of its CPU in faults on freshly malloc'd rows (220 MB per shard at
 * 25 MB updates, 4 KiB at a time). MADV_POPULATE_WRITE takes them all in
 * one system call (a hint: where refused, the pages fault in as touched).
 * No MADV_HUGEPAGE: with the kernel's "madvise" defrag (Debian's default)
 * a huge-page fault compacts memory synchronously when none is free, and
 * on this VM, hours into its life, that made a cold `query schedule --by
 * accuracy` at FLStore's size spend 376-489 ms making its 122 MB of buffers
 * against 63-70 ms in 4 KiB pages (1.44-1.59 s against 0.95-1.02 s in all,
 * four runs each, alternating, 2026-11-30). Earlier the hint had helped;
 * it only pays when free huge pages are at hand. */
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

/* The same for memory that must come from malloc (a buffer handed to a
 * caller who frees it): the whole pages inside p .. p + bytes populated
 * now; their contents are kept. Below FLC_BIG_MIN: nothing. */
void flc_big_prefault(void *p, size_t bytes);

#endif
