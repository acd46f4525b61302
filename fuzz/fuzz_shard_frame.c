/* libFuzzer target: the shard frame and header decoder (cache/shard_codec.h),
 * the first code that touches a value read back from Redis or the cold tier.
 * Any input must be refused with an error or decoded into a shard that passes
 * flc_shard_check, whose frame length is what the input holds, and that
 * encodes back to a frame decoding to the same header (a decoder accepting
 * what the encoder would never write is a bug too). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/shard_codec.h"

#define MAX_BYTES (1u << 20) /* the store's limits are larger; keep runs fast */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    flc_err_t err = {0};
    flc_shard_t h = {0};
    size_t off = 0, flen = 0;
    if (flc_shard_decode_header(data, size, MAX_BYTES, &h, &off, &flen, &err) == FLC_OK) {
        if (off > size || flen < off || flen > MAX_BYTES || flc_shard_check(&h, &err) != FLC_OK)
            abort(); /* the header decoder promised a consistent header */
    }
    flc_shard_t s = {0};
    if (flc_shard_decode(data, size, MAX_BYTES, &s, &err) != FLC_OK)
        return 0;
    if (s.count * sizeof(float) + FLC_FRAME_PREFIX > size)
        abort();
    uint8_t *again = NULL;
    size_t alen = 0;
    if (flc_shard_encode(&s, &again, &alen, &err) != FLC_OK)
        abort(); /* decoded, so it must encode */
    flc_shard_t t = {0};
    if (flc_shard_decode(again, alen, MAX_BYTES, &t, &err) != FLC_OK)
        abort();
    if (strcmp(s.job, t.job) != 0 || strcmp(s.client, t.client) != 0 || s.round != t.round ||
        s.shard != t.shard || s.num_shards != t.num_shards || s.offset != t.offset ||
        s.count != t.count || s.model_size != t.model_size ||
        (s.count && memcmp(s.values, t.values, s.count * sizeof(float)) != 0))
        abort();
    free(again);
    flc_shard_release(&s);
    flc_shard_release(&t);
    return 0;
}
