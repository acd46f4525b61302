/* The key schema, version 2 (docs/architecture.md, "Key schema").
 *
 * Every key of job J starts with "fl:{J/", so an ACL key pattern of that
 * prefix and a '*' is exactly job J (names cannot hold '/'). Sub-series of a job are stored as
 * jobs named "J/<series>" (the simulation's global models J/g, the SGD
 * steps J/steps, the evaluation set J/eval, the personalized models that
 * queries cached for J's rounds J/p): their keys start with fl:{J/ too.
 * Deleting or expiring round r of J does the same to round r of J/p.
 *
 * Job-level keys share the tag {J/j} (one node per job):
 *   fl:{J/j}:schema          hash: version "2", shards S (written once, HSETNX)
 *   fl:{J/j}:meta:<r>        RoundMeta
 *   fl:{J/j}:rounds          sorted set of rounds (score = round)
 *   fl:{J/j}:shards:<r>      set of shard indexes of round r
 *   fl:{J/j}:roster:<r>      set: the round's expected clients (its mergers write it)
 *   fl:{J/j}:s<s>:merges:<r> shard s's merge report (JSON)
 *   fl:{J/j}:s<s>:where:<r>  shard s's "node|tier|id|addr" (the request tracker)
 *   fl:{J/j}:s<s>:krum:<r>   shard s's partial pairwise distances (Krum)
 *   fl:{J/j}:clients         set of all clients of the job
 *   fl:{J/j}:progress        list: an SGD job's progress records (JSON)
 *   fl:{J/j}:b:<r>:<s>:ready, :go  start barrier of SGD workers (INCR counter; tokens)
 *   fl:{J/j}:c:<c>:um:<r>    ModelUpdate of client c in round r (the client writes it)
 *   fl:{J/j}:c:<c>:rounds    sorted set: rounds client c took part in (the client writes it)
 * Shard s of a job split into S shards has the tag {J/s<s>~<k>}, the same in
 * every round, so its round data and its optimizer state stay on one node;
 * the salt k makes the tag's slot flc_key_shard_slot(J, s, S), so a job's
 * shards are spread evenly over the slots (flc_key_shard_tag):
 *   fl:{T}:opt               server-optimizer state (m, v) of shard s
 *   fl:{T}:r:<r>:agg         merged shard (shard frame)
 *   fl:{T}:r:<r>:done        list: tokens pushed when the merged shard is written
 *   fl:{T}:r:<r>:closed      string: set when the merger closed the shard
 *   fl:{T}:r:<r>:merger      string: the running merger's ownership (SET NX PX)
 *   fl:{T}:r:<r>:gram        string: cached Gram partial of the round on this shard
 *   fl:{T}:r:<r>:evsum       hash: cached evaluation partials of the round on this shard
 *   fl:{T}:r:<r>:evres       string: cached evaluated numbers of the round (shard 0's T)
 *   fl:{T}:r:<r>:krumready   list: a token per shard that published its Krum partial
 *   fl:{T}:c:<c>:u:<r>       update shard of client c (shard frame; the client writes it)
 *   fl:{T}:c:<c>:a:<r>       list: client c's arrival tokens (the client RPUSHes)
 * so everything client c writes matches fl:{J/<tag>}:c:<c>:<rest> (an ACL
 * pattern with '*' for <tag> and <rest>; docs/architecture.md shows one).
 * Global: fl:tier (the cold tier's counters, the store's own). Jobs are
 * listed by scanning for their schema records (FLC_KEY_SCHEMA_MATCH).
 *
 * Names (job, client) are 1..64 characters of [A-Za-z0-9_.@+-]; anything
 * else could break the schema ('{', '}', ':', '/'). The store also takes
 * "name/series" job names (flc_name_check_job), at most 64 characters in
 * all. */
#ifndef FLC_CACHE_KEYS_H
#define FLC_CACHE_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

#define FLC_NAME_MAX 64
#define FLC_KEY_MAX 192
/* A shard tag "J/s<s>~<k>": the job, "/s", 10 digits, '~', 8 digits. */
#define FLC_TAG_MAX (FLC_NAME_MAX + 24)

#define FLC_KEY_SCHEMA_VERSION 2

/* The series of job J holding the models queries cached for J's rounds
 * (aggregator/query_evalpers.c): "J/" FLC_SERIES_PERS. */
#define FLC_SERIES_PERS "p"

/* Checks a job or client name; what = "job" or "client" for the message. */
int flc_name_check(const char *name, const char *what, flc_err_t *err);

/* Checks a job name as the store takes it: a name, or "name/series" with
 * both parts names (a job's sub-series: J/g, J/steps), at most FLC_NAME_MAX
 * characters in all. */
int flc_name_check_job(const char *job, flc_err_t *err);

/* The slot shard s of a job split into S shards is placed on: the centre
 * of cell s of S equal cells of the slot space, rotated per job (by its
 * CRC16, moved on where that would unbalance 2..16 equal slot ranges). With
 * nodes owning equal contiguous slot ranges their shard counts then differ
 * by at most one. */
uint16_t flc_key_shard_slot(const char *job, uint32_t shard, uint32_t S);

/* The tag of shard s: "J/s<s>~<k>" with the smallest k whose slot is
 * flc_key_shard_slot(J, s, S). The search (about 16k CRC16s) runs once per
 * (job, shard, S) and process: results are kept in a small table. out holds
 * FLC_TAG_MAX bytes. */
void flc_key_shard_tag(char *out, const char *job, uint32_t shard, uint32_t S);

/* fl:{J/j}:<what> (what = "schema", "rounds", "clients", "progress") */
void flc_key_job(char *out, const char *job, const char *what);

/* fl:{J/j}:<what>:<r> (what = "meta", "shards", "roster") */
void flc_key_job_round(char *out, const char *job, const char *what, uint32_t round);

/* fl:{J/j}:s<s>:<what>:<r>: a record shard s's merger writes about round r
 * (what = "merges": its merge report, "where": its tracker entry, "krum":
 * its Krum partial). One key per shard, not a field of a job hash, so an ACL
 * pattern fl:{J/j}:s<s>:* gives each merger its own records and no other's;
 * on the job's tag, so a reader gets all S in one pipelined round trip. */
void flc_key_job_shard(char *out, const char *job, uint32_t shard, const char *what,
                       uint32_t round);

/* fl:{J/j}:c:<c>:um:<r> */
void flc_key_client_meta(char *out, const char *job, const char *client, uint32_t round);

/* fl:{J/j}:c:<c>:rounds */
void flc_key_client_rounds(char *out, const char *job, const char *client);

/* fl:{T}:r:<r>:<suffix> for the shard tag T (flc_key_shard_tag); suffix is
 * "agg", "done", "closed", "merger", "gram", "evsum", "evres", "krumready". */
void flc_key_shard(char *out, const char *tag, uint32_t round, const char *suffix);

/* fl:{T}:c:<c>:u:<r> */
void flc_key_update(char *out, const char *tag, uint32_t round, const char *client);

/* fl:{T}:c:<c>:a:<r> */
void flc_key_arrival(char *out, const char *tag, uint32_t round, const char *client);

/* fl:{T}:opt */
void flc_key_opt_state(char *out, const char *tag);

/* fl:{T}:c:<c>:ef:<r> (round > 0) and its index fl:{T}:c:<c>:ef (round 0):
 * client c's top-k error-feedback residual of the shard, kept under its own
 * keys so a client function without memory finds it (cache/store_enc.c) */
void flc_key_residual(char *out, const char *tag, const char *client, uint32_t round);

/* fl:{J/j}:b:<r>:<s>:<what>: the start barrier of W workers (what =
 * "ready", "go"), job-level: the workers line up before any shard key. */
void flc_key_barrier(char *out, const char *job, uint32_t round, uint32_t shard,
                     const char *what);

/* fl:{J}:rounds: the round index of schema 1, which tells a job stored by
 * an older flcache. */
void flc_key_v1_rounds(char *out, const char *job);

/* SCAN pattern of every job's schema record (series included). */
#define FLC_KEY_SCHEMA_MATCH "fl:{*/j}:schema"
#define FLC_KEY_TIER "fl:tier"

#endif
