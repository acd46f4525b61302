/* The key schema (docs/architecture.md, "Key schema"). All keys of one (job, round,
 * shard) share the Redis Cluster hash tag {J/r/s}, so they live on one node
 * next to that shard's aggregator (flc_key_shard, flc_key_update):
 *   fl:{J/r/s}:u:<client>    update shard of one client (shard frame)
 *   fl:{J/r/s}:agg           merged shard (shard frame)
 *   fl:{J/r/s}:arrivals      list: client ids pushed on arrival (BLPOP wakes the merger)
 *   fl:{J/r/s}:done          list: tokens pushed when the merged shard is written
 *   fl:{J/r/s}:clients       set: clients that wrote this shard
 *   fl:{J/r/s}:closed        string: set when the merger closed the shard
 *   fl:{J/r/s}:merger        string: the running merger's ownership (SET NX PX)
 *   fl:{J/r/s}:gram          string: cached Gram partial of the round on this shard
 *   fl:{J/r/s}:krumready     list: a token per shard that published its Krum partial
 *   fl:{J/r/s}:ready         string: start-barrier counter (INCR) of SGD workers
 *   fl:{J/r/s}:go            list: start-barrier tokens, one per worker
 * A shard's state across rounds has the tag {J/state/s} (flc_key_opt_state):
 *   fl:{J/state/s}:opt       string: server-optimizer state (m, v) of shard s
 * Job-level keys share the tag {J} (flc_key_job, flc_key_job_round, flc_key_client):
 *   fl:{J}:meta:<r>          RoundMeta
 *   fl:{J}:rounds            sorted set of rounds (score = round)
 *   fl:{J}:shards:<r>        set of shard indexes written in round r
 *   fl:{J}:um:<r>            hash client -> ModelUpdate (per-update metadata)
 *   fl:{J}:merges:<r>        hash shard -> merge report (JSON)
 *   fl:{J}:where:<r>         hash shard -> "node|tier" (the request tracker)
 *   fl:{J}:krum:<r>          hash shard -> partial pairwise distances (Krum)
 *   fl:{J}:client:<c>        sorted set of rounds client c took part in
 *   fl:{J}:clients           set of all clients of the job
 *   fl:{J}:progress          list: an SGD job's progress records (JSON)
 * Global keys:
 *   fl:jobs                  set of all jobs (FLC_KEY_JOBS)
 *   fl:tier                  hash: the cold tier's shared counters (FLC_KEY_TIER)
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

/* fl:{J/r/s}:<suffix> where suffix is "agg", "arrivals", "done", "clients",
 * "closed", "merger", "gram", "krumready", "ready", "go". */
void flc_key_shard(char *out, const char *job, uint32_t round, uint32_t shard, const char *suffix);

/* fl:{J/r/s}:u:<client> */
void flc_key_update(char *out, const char *job, uint32_t round, uint32_t shard,
                    const char *client);

/* fl:{J}:<what> (what = "rounds", "clients", "progress") */
void flc_key_job(char *out, const char *job, const char *what);

/* fl:{J}:<what>:<r> (what = "meta", "shards", "um", "merges", "where", "krum") */
void flc_key_job_round(char *out, const char *job, const char *what, uint32_t round);

/* fl:{J}:client:<c> */
void flc_key_client(char *out, const char *job, const char *client);

/* fl:{J/state/s}:opt */
void flc_key_opt_state(char *out, const char *job, uint32_t shard);

#define FLC_KEY_JOBS "fl:jobs"
#define FLC_KEY_TIER "fl:tier"

#endif
