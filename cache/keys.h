/* The key schema (docs/architecture.md, "Key schema"). All keys of one (job, round,
 * shard) share the Redis Cluster hash tag {J/r/s}, so they live on one node
 * next to that shard's aggregator:
 *   fl:{J/r/s}:u:<client>    update shard of one client (shard frame)
 *   fl:{J/r/s}:agg           merged shard (shard frame)
 *   fl:{J/r/s}:arrivals      list: client ids pushed on arrival (BLPOP wakes the merger)
 *   fl:{J/r/s}:done          list: tokens pushed when the merged shard is written
 *   fl:{J/r/s}:clients       set: clients that wrote this shard
 * Job-level keys share the tag {J}:
 *   fl:{J}:meta:<r>          RoundMeta
 *   fl:{J}:rounds            sorted set of rounds (score = round)
 *   fl:{J}:shards:<r>        set of shard indexes written in round r
 *   fl:{J}:um:<r>            hash client -> ModelUpdate (per-update metadata)
 *   fl:{J}:client:<c>        sorted set of rounds client c took part in
 *   fl:{J}:clients           set of all clients of the job
 *   fl:jobs                  set of all jobs
 * Names (job, client) are 1..64 characters of [A-Za-z0-9_.@+-]; anything else
 * could break the schema ('{', '}', ':', '/'). */
#ifndef FLC_CACHE_KEYS_H
#define FLC_CACHE_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

#define FLC_NAME_MAX 64
#define FLC_KEY_MAX 192

/* Checks a job or client name; what = "job" or "client" for the message. */
int flc_name_check(const char *name, const char *what, flc_err_t *err);

/* fl:{J/r/s}:<suffix> where suffix is "agg", "arrivals", "done", "clients". */
void flc_key_shard(char *out, const char *job, uint32_t round, uint32_t shard, const char *suffix);

/* fl:{J/r/s}:u:<client> */
void flc_key_update(char *out, const char *job, uint32_t round, uint32_t shard,
                    const char *client);

/* fl:{J}:<what> (what = "rounds", "clients") */
void flc_key_job(char *out, const char *job, const char *what);

/* fl:{J}:<what>:<r> (what = "meta", "shards", "um") */
void flc_key_job_round(char *out, const char *job, const char *what, uint32_t round);

/* fl:{J}:client:<c> */
void flc_key_client(char *out, const char *job, const char *client);

#define FLC_KEY_JOBS "fl:jobs"

#endif
