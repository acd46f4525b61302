/* Reading a stored shard window by window: the floats [first, first+count)
 * of a float32 update (or merged shard) without reading the rest.
 *
 * Why: a merger that folds a 128 MiB shard, or a query worker that forms
 * the Gram matrix of N updates, needs at any moment only a block of
 * coordinates of each value. Reading whole values makes their memory grow
 * with the shard (and with N for the Gram: (N+1) shards at once); reading
 * windows bounds it by the window, whatever the shard's size or the number
 * of clients (issue 14, goals 4 and 5).
 *
 * A part is opened once (its header read and checked against what is
 * stored, as a whole read checks it: sizes, the head field, the key it was
 * written for), then read window by window; the windows of many parts of
 * one shard go out in one pipeline. A window reads only the chunks that
 * cover it (a hash of chunk fields: HGET of those fields; a string:
 * GETRANGE), copied straight into the destination except at its two edges.
 *
 * Only float32 values can be read by window (an encoded value's bytes do
 * not map to coordinates): opening another one is FLC_EINVAL, saying so,
 * and the caller reads it whole. A value not in the cache (a spilled one
 * lives in the cold tier) is FLC_ENOTFOUND: the whole read
 * (flc_store_get_update) also asks the cold tier. */
#ifndef FLC_CACHE_STORE_PART_H
#define FLC_CACHE_STORE_PART_H

#include <stddef.h>
#include <stdint.h>

#include "cache/keys.h"
#include "cache/shard_codec.h"
#include "cache/store.h"

typedef struct flc_store_part {
    char key[FLC_KEY_MAX];
    flc_shard_t head;  /* the value's header; head.values is NULL */
    size_t off;        /* bytes of the frame before the payload */
    size_t flen;       /* bytes of the whole frame */
    size_t chunk;      /* bytes per chunk field of a hash; 0: a plain string */
    uint32_t head_crc; /* CRC-32C of the frame's first off bytes, rechecked
                        * when chunk 0 is read: a value rewritten between
                        * the open and a window is an error, not a mix */
} flc_store_part_t;

/* Opens client's update of (job, round, shard) (client NULL: the merged
 * shard) for reading by window: one round trip (two for a hash written
 * without a head field). */
int flc_store_part_open(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                        const char *client, flc_store_part_t *p);

/* Reads floats [first, first+count) of every part of parts[0..n) into
 * dst[i] (count floats each), in one pipeline. The parts must be of one
 * shard (one node of a cluster) and hold at least first+count floats. A
 * value that changed since its open (other sizes, another header) is
 * FLC_EDATA naming its key; the connection stays in step. */
int flc_store_part_read(flc_store_t *s, const flc_store_part_t *parts, size_t n, uint64_t first,
                        size_t count, float *const *dst);

#endif
