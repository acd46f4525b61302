/* store_put_head.h - the head field "h" of a chunked value (private to cache/).
 *
 * A value over FLC_STORE_SPLIT chunks is a hash of chunk fields "0".."n-1"
 * (store_put.c). Beside them every writer of cache/ puts one small field:
 *
 *   h = "FLH1" | u32le CRC-32C of the payload | the frame's prefix and header
 *
 * (the frame's first bytes exactly as field "0" starts, see shard_codec.h).
 * It exists for the query engine's Gram cache: an update's stamp
 * (flc_store_update_stamps) must change with every rewrite, and reading it
 * must not copy the 256 KiB field "0" (Redis has no HGET of a range; a warm
 * query of 100 clients x 12 shards of 25 MB spent most of its time copying
 * 1200 first chunks into Lua, issue 12). With h the stamp is one HGET of
 * ~100 bytes, and the payload's checksum covers a rewrite whose header is
 * unchanged (a writer that leaves created_ms 0).
 *
 * Readers take hashes with or without h (values written before it, or by
 * the Python writer, which has no CRC-32C): the chunk count is HLEN less
 * one when h exists, and get_shard refuses a value whose h does not repeat
 * its field "0"'s header, so a stamp taken from h always names the header
 * of the value that is read. */
#ifndef FLC_CACHE_STORE_PUT_HEAD_H
#define FLC_CACHE_STORE_PUT_HEAD_H

#include <stddef.h>
#include <stdint.h>

#include "cache/shard_codec.h"

#define FLC_HEAD_FIELD "h"
#define FLC_HEAD_MAGIC "FLH1"
#define FLC_HEAD_FIXED 8u /* magic + CRC-32C */
#define FLC_HEAD_MAX (FLC_HEAD_FIXED + FLC_FRAME_PREFIX + FLC_FRAME_HEADER_MAX)

/* Writes h of the frame whose prefix and header are head[0..hl) and whose
 * payload is payload[0..pl) into out (FLC_HEAD_MAX bytes); returns its
 * length, FLC_HEAD_FIXED + hl (hl <= FLC_FRAME_PREFIX + FLC_FRAME_HEADER_MAX). */
size_t flc_store_head_make(uint8_t *out, const uint8_t *head, size_t hl, const void *payload,
                           size_t pl);

/* As flc_store_head_make with the payload's CRC-32C already computed (a
 * writer that streams the payload window by window, store_put_stream.c). */
size_t flc_store_head_make_crc(uint8_t *out, const uint8_t *head, size_t hl, uint32_t crc);

/* h of the whole frame buf[0..len) (the cold tier's copy of a value), into
 * out as above; 0 when buf does not start with a frame prefix and a header
 * that fits in it (then the value is written without h). */
size_t flc_store_head_of_frame(uint8_t *out, const uint8_t *buf, size_t len);

/* 1 when h[0..hlen) is the head field of a frame whose first off bytes
 * (prefix and header) are frame[0..off): the magic, the length and the
 * header bytes (the checksum is not checked: that needs the payload). */
int flc_store_head_matches(const char *h, size_t hlen, const uint8_t *frame, size_t off);

#endif
