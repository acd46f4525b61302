/* Raw Redis commands on a store's connection. Private to cache/, and open
 * to tests/ and bench/ where they check Redis directly: everything above
 * cache/ goes through the named operations of store.h and store_ops.h, so
 * that which node a command is sent to (Redis Cluster) is decided in one
 * place. scripts/check_layers.sh flags an include of this header anywhere
 * else (docs/architecture.md, "Two rules the table cannot say"). */
#ifndef FLC_CACHE_STORE_RAW_H
#define FLC_CACHE_STORE_RAW_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "cache/store.h"

/* Runs one command given as argv (binary-safe) and returns its reply in *out
 * (caller frees with freeReplyObject), or drops it when out is NULL (a
 * command run for its effect). A Redis error reply is returned as
 * FLC_EPROTO with the server's message; *out is then NULL. */
int flc_store_command(flc_store_t *s, redisReply **out, int argc, const char **argv,
                      const size_t *argvlen);

/* Runs n commands (argv[i] of argc[i] NUL-terminated strings) in one round
 * trip: all sent, then all n replies read into out[i] (caller frees each;
 * Redis error replies are returned as replies). Only I/O errors fail. */
int flc_store_pipeline(flc_store_t *s, size_t n, const int *argc, const char *const *const *argv,
                       redisReply **out);

/* flc_store_pipeline with binary-safe arguments: lens[i][j] is the length
 * of argv[i][j]. No transactions (a redirected MULTI is not sent again):
 * for benchmarks moving raw values (bench/aggregate's same-bytes baseline). */
int flc_store_pipeline_bin(flc_store_t *s, size_t n, const int *argc,
                           const char *const *const *argv, const size_t *const *lens,
                           redisReply **out);

/* printf-style variant of flc_store_command (hiredis format: %s, %b, %d...). */
int flc_store_commandf(flc_store_t *s, redisReply **out, const char *fmt, ...);

#endif
