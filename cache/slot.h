/* slot.h - which of a Redis Cluster's 16384 hash slots a key lives in.
 *
 * The rule is the server's (keyHashSlot in redis' cluster.c, cluster-spec
 * "Keys distribution model"): CRC16-XMODEM of the key's hash tag, modulo
 * 16384. flcache puts every key of one (job, round, shard) under the tag
 * {J/s<s>~<k>} (cache/keys.h), so all of them share a slot and one node. */
#ifndef FLC_CACHE_SLOT_H
#define FLC_CACHE_SLOT_H

#include <stddef.h>
#include <stdint.h>

#define FLC_SLOT_COUNT 16384

/* CRC16 with the parameters Redis Cluster uses (XMODEM: width 16, poly
 * 0x1021, init 0, not reflected, xorout 0); "123456789" gives 0x31C3. */
uint16_t flc_slot_crc16(const void *buf, size_t len);

/* The hash slot (0..16383) of the key's len bytes (binary: NUL is a byte
 * like any other). When the key holds a '{' followed later by a '}' with at
 * least one byte between the first such pair, only those bytes are hashed;
 * otherwise the whole key is. The empty key is slot 0. */
uint16_t flc_slot_of(const char *key, size_t len);

/* The bytes flc_slot_of hashes: sets *part_len and returns where they start
 * inside key (the whole key when it has no usable hash tag). */
const char *flc_slot_hash_part(const char *key, size_t len, size_t *part_len);

#endif
