/* store_put_head.c - the head field "h" of a chunked value: built by the
 * writers (store_put.c, the cold tier's copy in cold_tier_raw.c), checked
 * by the reader (store_get.c). Layout and why: store_put_head.h. */
#include "cache/store_put_head.h"

#include <string.h>

#include "base/crc32c.h"

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

size_t flc_store_head_make_crc(uint8_t *out, const uint8_t *head, size_t hl, uint32_t crc)
{
    if (hl > FLC_FRAME_PREFIX + FLC_FRAME_HEADER_MAX)
        hl = FLC_FRAME_PREFIX + FLC_FRAME_HEADER_MAX; /* the encoder never makes one */
    memcpy(out, FLC_HEAD_MAGIC, 4);
    put_le32(out + 4, crc);
    memcpy(out + FLC_HEAD_FIXED, head, hl);
    return FLC_HEAD_FIXED + hl;
}

size_t flc_store_head_make(uint8_t *out, const uint8_t *head, size_t hl, const void *payload,
                           size_t pl)
{
    return flc_store_head_make_crc(out, head, hl, flc_crc32c(0, payload, pl));
}

size_t flc_store_head_of_frame(uint8_t *out, const uint8_t *buf, size_t len)
{
    if (len < FLC_FRAME_PREFIX || memcmp(buf, FLC_FRAME_MAGIC, 4) != 0)
        return 0;
    uint32_t n = (uint32_t)buf[4] | (uint32_t)buf[5] << 8 | (uint32_t)buf[6] << 16 |
                 (uint32_t)buf[7] << 24;
    if (n > FLC_FRAME_HEADER_MAX || FLC_FRAME_PREFIX + (size_t)n > len)
        return 0;
    size_t hl = FLC_FRAME_PREFIX + n;
    return flc_store_head_make(out, buf, hl, buf + hl, len - hl);
}

int flc_store_head_matches(const char *h, size_t hlen, const uint8_t *frame, size_t off)
{
    return hlen == FLC_HEAD_FIXED + off && memcmp(h, FLC_HEAD_MAGIC, 4) == 0 &&
           memcmp(h + FLC_HEAD_FIXED, frame, off) == 0;
}
