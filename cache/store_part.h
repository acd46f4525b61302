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

/* ---- window after window: a reader -----------------------------------------
 *
 * Two things a blocked computation (the Gram of a shard's updates, block of
 * coordinates after block) needs that flc_store_part_read does not give:
 *
 * - Every chunk read once. A window rarely ends on a chunk edge (each
 *   value's frame header has its own length), so consecutive windows share
 *   a chunk; reading it for both made windows smaller than a chunk read up
 *   to twice their bytes. The reader keeps, per part, the chunk a window
 *   ended inside (its "tail", at most one chunk: FLC_STORE_PART_TAIL_BYTES)
 *   and the next window starts from it. A plain string is read on the same
 *   grid of chunk-sized GETRANGEs, so it costs as many commands as a whole
 *   read however small the windows.
 * - Redis working while the caller computes. flc_store_part_send asks for
 *   a window and returns; flc_store_part_recv reads it. Sending window b+1
 *   before computing on window b lets redis-server look the chunks up and
 *   copy them into its reply buffers meanwhile, so the caller needs one
 *   window buffer, not two (the window waits in Redis's output buffer).
 *
 * One window at a time may be outstanding, and nothing else may use the
 * store between a send and its recv: the store refuses every other
 * operation meanwhile (FLC_EINVAL, saying so), since it would read the
 * window's replies as its own. */
typedef struct flc_store_part_reader {
    const flc_store_part_t *parts; /* borrowed, n of them, of one shard */
    size_t n;
    struct flc_store_part_tail *tails; /* per part */
    char *tail_mem;                    /* every tail's buffer, one block */
    size_t tail_mem_cap;
    struct flc_store_part_piece *pcs;  /* the window sent */
    size_t npc, cap;
    size_t next_send;                  /* pieces [0, next_send) asked for */
    size_t inflight;                   /* bytes asked for and not yet read */
    uint64_t first;
    size_t count;
    int sent;
} flc_store_part_reader_t;

/* Bytes of memory a reader may keep per part besides the caller's windows:
 * one chunk of a hash (its own chunk size) or the store's chunk size for a
 * string. */
size_t flc_store_part_tail_bytes(const flc_store_t *s, const flc_store_part_t *p);

/* A reader of parts[0..n) (which must outlive it). FLC_ENOMEM only. */
int flc_store_part_reader_init(flc_store_t *s, flc_store_part_reader_t *r,
                               const flc_store_part_t *parts, size_t n);

/* Asks for floats [first, first+count) of every part (one pipeline, sent
 * now; nothing read). FLC_EINVAL for a window outside a part or a window
 * already outstanding; I/O errors as the store's. */
int flc_store_part_send(flc_store_t *s, flc_store_part_reader_t *r, uint64_t first,
                        size_t count);

/* Reads the window sent into dst[i] (count floats each), checked as
 * flc_store_part_read checks. After an error the tails are dropped (the
 * next window reads its chunks again) and the connection is in step. */
int flc_store_part_recv(flc_store_t *s, flc_store_part_reader_t *r, float *const *dst);

/* Frees what the reader holds (not the parts); NULL or zeroed: no-op. A
 * window sent and not received is read and dropped, so the store stays in
 * step. */
void flc_store_part_reader_free(flc_store_t *s, flc_store_part_reader_t *r);

#endif
