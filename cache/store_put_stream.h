/* Writing a merged shard window by window, from a fill callback, without
 * the whole shard in the writer's memory.
 *
 * Why: a merger of a 128 MiB shard that folds its updates window by window
 * (issue 14 goal 4: peak memory <= 2 x shard for the streaming rules) would
 * still need the whole merged shard as floats to hand it to
 * flc_store_put_merged. Here the writer asks the caller for one window of
 * floats at a time (the merger converts that window of its double sums, or
 * computes that block of coordinates' median) and sends it as the chunk
 * fields that cover it.
 *
 * The value written is byte for byte what flc_store_put_merged* writes
 * (store_put.c): a hash of chunk fields "0".."n-1" (field 0 starts with the
 * frame's prefix and header) and the head field "h", whose payload CRC-32C
 * is computed window by window, built under a tmp key and published by
 * RENAME with the indexes and done tokens in that round trip, so a reader
 * never sees half a value. A value of up to FLC_STORE_SPLIT chunks, which
 * store_put.c writes as one string, is filled whole (at most 8 chunks)
 * and written by flc_store_put_merged*. */
#ifndef FLC_CACHE_STORE_PUT_STREAM_H
#define FLC_CACHE_STORE_PUT_STREAM_H

#include <stddef.h>
#include <stdint.h>

#include "cache/store.h"

/* Writes the merged shard's floats [first, first+count) into dst. Returns
 * 0, or a negative FLC_E* (the caller keeps its own message): the write is
 * then abandoned and its tmp key deleted. Called with increasing first,
 * each float once per write attempt. */
typedef int (*flc_store_fill_fn)(void *user, uint64_t first, size_t count, float *dst);

typedef struct flc_store_stream {
    flc_store_fill_fn fill;
    void *user;
    size_t window;     /* floats per fill call; 0: 2 MiB of floats. Raised to a chunk */
    int opened;        /* 1: its driver indexed the round (flc_store_put_merged_opened) */
    const char *token; /* with copies > 0: done tokens pushed in the publishing round trip */
    unsigned copies;   /* (flc_store_put_merged_done) */
    uint32_t crc;      /* out: CRC-32C of the payload written */
} flc_store_stream_t;

/* Stores the merged shard described by hdr (hdr->values is not read: its
 * floats come from how->fill) as flc_store_put_merged_done would store it
 * with hdr's values. Memory: one window of floats and one chunk. Errors as
 * flc_store_put_merged (in the store's error); a fill that failed returns
 * its code, the store's message saying the values could not be made. */
int flc_store_put_merged_stream(flc_store_t *s, const flc_shard_t *hdr, flc_store_stream_t *how);

#endif
