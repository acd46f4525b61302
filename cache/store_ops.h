/* Named store operations for the protocols built above the shard store: the
 * merger's lock and close, the small per-round records (merge reports, Krum
 * partials, the request tracker, Gram partials, server-optimizer state), the
 * SGD workers' start barrier and progress list, and waking a blocked
 * connection. Each says what it is for; none shows a Redis command or reply
 * to its caller, so every key is built (cache/keys.h) and every command
 * routed in cache/ alone: that is where Redis Cluster support goes.
 *
 * A header apart from store.h because store.h is the shard store (values,
 * metadata, indexes, cold tier) and already long; these are the
 * coordination operations its users need besides, one or two per use.
 *
 * Every function returns 0 or a negative FLC_E* and keeps the sentence in
 * the store (flc_store_errstr), as store.h's do. Names (job) are checked by
 * the callers' own paths before they get here. */
#ifndef FLC_CACHE_STORE_OPS_H
#define FLC_CACHE_STORE_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "cache/store.h"

/* ---- one record per shard: the small per-round records --------------------
 *
 * The merge reports, the Krum partials and the tracker entries of a round are
 * one key per shard, fl:{J/j}:s<s>:<what>:<r> (so an ACL can give each
 * shard's merger its own records only, docs/architecture.md). Reading them
 * back (one pipelined GET per shard of the job) gives an flc_store_fields_t. */

typedef struct flc_store_field {
    uint32_t shard; /* the field name, a shard index */
    char *value;    /* the value, NUL-terminated after len bytes (binary-safe) */
    size_t len;
} flc_store_field_t;

typedef struct flc_store_fields {
    flc_store_field_t *v;
    size_t n;
} flc_store_fields_t;

/* Frees the values and the array; the set is left empty. NULL is a no-op. */
void flc_store_fields_free(flc_store_fields_t *f);

/* ---- the merger of one shard (store_merger_lock.c) ------------------------- */

/* Opens round for its merger of shard: begins the job with S shards
 * (flc_store_job_begin: schema record, refusals) and writes the job
 * indexes clients no longer write: the expected clients in the round's
 * roster fl:{J/j}:roster:<r> and the job's clients, the round in
 * fl:{J/j}:rounds, the shard in fl:{J/j}:shards:<r>. Idempotent: every
 * shard's merger writes the same. */
int flc_store_round_begin(flc_store_t *s, const char *job, uint32_t S, uint32_t round,
                          uint32_t shard, const char *const *clients, size_t n);

/* *closed = 1 when the merger of (job, round, shard) already closed it
 * (fl:{T}:r:<r>:closed exists), else 0. */
int flc_store_shard_closed(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                           int *closed);

/* Takes the shard's merger lock (fl:{T}:r:<r>:merger, SET NX with a ttl_ms
 * expiry, holding "<pid> <host>"): *mine = 1 when taken, 0 when another
 * merger holds it. A lock whose holder is a process of this host that is
 * gone (a crashed run) is taken over. */
int flc_store_merger_lock(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                          uint64_t ttl_ms, int *mine);

/* flc_store_shard_closed and flc_store_merger_lock in one round trip (a
 * script): *closed = 1 when the shard is closed (the lock is then not
 * taken), else *mine as flc_store_merger_lock says. With clients (not
 * NULL) the same round trip indexes the round as flc_store_delete_round
 * needs it: the round in the job's rounds, the shard in shards:<r>, the
 * clients in roster:<r> and the job's clients (with the store's ttl):
 * what flc_store_round_begin writes after its flc_store_job_begin. */
int flc_store_merger_open(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                          uint64_t ttl_ms, const char *const *clients, size_t n, int *closed,
                          int *mine);

/* Describes who holds the shard's merger lock, for a refusal's message:
 * "process P on host H (lock key K, expires in N s; ...)". */
int flc_store_merger_holder(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                            char *out, size_t cap);

/* Gives the merger lock back (a merger that failed before closing). */
int flc_store_merger_unlock(flc_store_t *s, const char *job, uint32_t round, uint32_t shard);

/* Takes, without waiting, one arrival token from each of clients[0..n)'s
 * lists that has one (one script over their lists, all in the shard's
 * slot): got[i] = 1 when client i's list gave a token, else 0. A merger
 * calls it after a wake-up, so that the arrivals that landed meanwhile
 * cost one round trip together instead of one BLPOP over every pending
 * list each (with 10,000 clients a round that was O(K^2) keys sent and
 * scanned: 12 of a round's 19 s, bench/simulate). */
int flc_store_take_arrived(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                           const char *const *clients, size_t n, unsigned char *got);

/* Waits for the first arrival token of any of clients[0..n) on the shard
 * (one BLPOP over their arrival lists fl:{T}:c:<c>:a:<r>, all in the
 * shard's slot), up to timeout_ms (FLC_ETIMEOUT). *which is the index of
 * the client whose list gave it: told by the list, not by the token, so a
 * client cannot announce another. */
int flc_store_wait_arrival(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                           const char *const *clients, size_t n, unsigned timeout_ms,
                           size_t *which);

/* found[i] = 1 when client i's update of (job, round, shard) is stored (in
 * Redis, or spilled to the cold tier), else 0: one pipelined EXISTS on the
 * shard's node. (A merger re-checking its expected clients, e.g. after a
 * failover.) */
int flc_store_updates_exist(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                            const char *const *clients, size_t n, unsigned char *found);

/* The close protocol, one round trip: a script sets :closed and drains the
 * arrival lists of clients[0..n) (the round's expected clients), then the
 * merger lock goes. Marks the shard closed and takes what is still queued
 * atomically with it, so an update announced after this sees the closed
 * flag (flc_store_put_updates_if_open says closed) and one announced before
 * is counted in tokens[i] (tokens left on client i's list; 0 when none).
 * The lock goes last: the closed flag guards the shard from then on. */
int flc_store_close_shard(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                          const char *const *clients, size_t n, unsigned *tokens);

/* ---- per-round records (store_protocol.c) ---------------------------------- */

/* Stores shard's merge report (JSON text) in fl:{J/j}:merges:<r>. When all is
 * not NULL it then gets every report of the round so far, in the same round
 * trip (the last shard to report folds them into the RoundMeta). */
int flc_store_merge_report_put(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                               const char *report, flc_store_fields_t *all);

/* Stores shard's Krum partial (len bytes, binary) in fl:{J/j}:krum:<r>. */
int flc_store_krum_partial_put(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                               const void *blob, size_t len);

/* Every shard's Krum partial of the round. */
int flc_store_krum_partial_getall(flc_store_t *s, const char *job, uint32_t round,
                                  flc_store_fields_t *out);

/* Records where shard's merged value lives (the request tracker's
 * "node|tier" text) in fl:{J/j}:where:<r>. */
int flc_store_track_put(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                        const char *where);

/* Every shard's merge report of the round (none: out->n = 0). */
int flc_store_merge_report_getall(flc_store_t *s, const char *job, uint32_t round,
                                  flc_store_fields_t *out);

/* Every tracker entry of the round (none: out->n = 0). */
int flc_store_track_getall(flc_store_t *s, const char *job, uint32_t round,
                           flc_store_fields_t *out);

/* ---- small values next to a shard (store_protocol.c) -----------------------
 *
 * Read back as a new buffer *blob of *len bytes (NUL-terminated after them;
 * the caller frees it). FLC_ENOTFOUND when there is no value. The layouts
 * are their writers' (aggregator/). */

/* One stamp per client of what is stored at its update of (job, round,
 * shard): a hash of the value's type and length (STRLEN, or HLEN of a
 * chunked value) and of a chunked value's head field (frame header and
 * payload CRC-32C, store_put_head.h), a string's first 4104 bytes (frame
 * prefix and header, whose created_ms and update_norm change with every
 * rewrite); 0 when there is none. One pipelined round trip; read-only.
 * Cached Gram partials record them. */
int flc_store_update_stamps(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                            char *const *clients, size_t n, uint64_t *stamps);

/* The same stamp of the merged shard of (job, round, shard) (0: none); the
 * evaluation cache records the aggregate's and the global model's. */
int flc_store_merged_stamp(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                           uint64_t *stamp);

/* The cached Gram partial of (job, round, shard), fl:{T}:r:<r>:gram. */
int flc_store_gram_get(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                       char **blob, size_t *len);
int flc_store_gram_put(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                       const void *blob, size_t len);

/* The evaluated numbers of a round (aggregator/query_evalres.c: every
 * client's accuracy and the rest an evaluation query answers from),
 * fl:{T}:r:<r>:evres on shard 0's tag T: one small value per round. */
int flc_store_evres_get(flc_store_t *s, const char *job, uint32_t round, char **blob,
                        size_t *len);
int flc_store_evres_put(flc_store_t *s, const char *job, uint32_t round, const void *blob,
                        size_t len);

/* The server-optimizer state of shard across rounds, fl:{T}:opt: the same
 * tag T as the shard's round data, so both live on one node. */
int flc_store_opt_state_get(flc_store_t *s, const char *job, uint32_t shard, char **blob,
                            size_t *len);
int flc_store_opt_state_put(flc_store_t *s, const char *job, uint32_t shard, const void *blob,
                            size_t len);

/* ---- the start barrier (store_notify.c) -------------------------------------
 *
 * W processes line up on (job, round, shard): each increments the counter
 * fl:{J/j}:b:<r>:<s>:ready, the one that makes it W releases W tokens on
 * fl:{J/j}:b:<r>:<s>:go, and every one waits for a token (BLPOP, no
 * polling). Job-level keys: workers line up before they know where any
 * shard lives. */

/* Increments the counter and renews its expiry (ttl_ms) in one round trip;
 * *n is the count after this one (-1 when the reply was not a number). */
int flc_store_barrier_incr(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                           uint64_t ttl_ms, long long *n);

/* Deletes the counter and pushes `copies` tokens, in one round trip. */
int flc_store_barrier_release(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                              unsigned copies);

/* Waits for one token, as flc_store_wait (FLC_ETIMEOUT after timeout_ms). */
int flc_store_barrier_wait(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                           unsigned timeout_ms);

/* Deletes the counter and the token list (cleaning up after a job). */
int flc_store_barrier_del(flc_store_t *s, const char *job, uint32_t round, uint32_t shard);

/* ---- a job's progress list (store_progress.c) --------------------------------
 *
 * fl:{J/j}:progress: records (JSON text) appended by a worker and consumed by a
 * driver, which may never come: the list expires. */

/* Appends rec and renews the list's expiry (ttl_ms), in one round trip. */
int flc_store_progress_push(flc_store_t *s, const char *job, const char *rec, uint64_t ttl_ms);

/* Takes the first record, waiting up to timeout_ms for one (BLPOP); *rec is
 * a new string (caller frees). FLC_ETIMEOUT when none came. */
int flc_store_progress_wait(flc_store_t *s, const char *job, unsigned timeout_ms, char **rec);

/* Takes the first record without waiting; FLC_ENOTFOUND when the list is
 * empty. *rec as flc_store_progress_wait. */
int flc_store_progress_pop(flc_store_t *s, const char *job, char **rec);

/* Deletes the list. */
int flc_store_progress_del(flc_store_t *s, const char *job);

/* ---- job indexes (store_meta.c) -------------------------------------------- */

/* Deletes a job's own records: its schema record (so a later run may use
 * another shard count), its index of rounds and of clients; the rounds
 * themselves go with flc_store_delete_round first. */
int flc_store_forget_job(flc_store_t *s, const char *job);

/* ---- a whole job: removal, expiry, age (store_rm.c) --------------------------
 *
 * "All of job J" is every key whose name starts with fl:{J/ on every master (SCAN: the
 * series J/g and J/steps, keys no index names, locks and tmp keys included)
 * and every cold-tier object of those keys (the backend's listing). These
 * scan the whole keyspace, so they are for the lifecycle commands, never a
 * round's path. job is a user's job name (flc_name_check: no series). */

typedef struct flc_store_job_report {
    uint64_t keys;         /* keys removed / counted / given the expiry */
    uint64_t bytes;        /* their MEMORY USAGE (rm and its dry run) */
    unsigned nodes;        /* servers (masters) that held some */
    uint64_t cold_objects; /* cold-tier objects removed / counted */
    uint64_t cold_bytes;
} flc_store_job_report_t;

/* Removes every key of job on every master and its cold-tier objects
 * (dry_run: counts them, removes nothing), filling *rep. FLC_ENOTFOUND
 * naming the job when there was nothing of it. */
int flc_store_job_rm(flc_store_t *s, const char *job, int dry_run, flc_store_job_report_t *rep);

/* Gives every key of job the expiry ttl_ms from now (0: removes expiries),
 * so the whole job expires together; rep->keys counts the keys set. Keys
 * written after this keep the expiry their writer gives (the store's
 * ttl_ms). Cold-tier objects have no expiry: `store rm` removes them. */
int flc_store_job_expire(flc_store_t *s, const char *job, uint64_t ttl_ms,
                         flc_store_job_report_t *rep);

typedef struct flc_store_job_age {
    uint64_t rounds;     /* rounds in the job's index */
    uint32_t last_round; /* the highest of them */
    uint64_t last_ms;    /* wall-clock ms of its last round (RoundMeta closed_ms, else
                            started_ms; the newest over J, J/g, J/steps); 0: unknown */
} flc_store_job_age_t;

/* How old job is: its rounds and the time of its last one. */
int flc_store_job_age(flc_store_t *s, const char *job, flc_store_job_age_t *a);

/* ---- waking a blocked connection (store_conn.c) ------------------------------
 *
 * A thread blocked in a wait (flc_store_wait on its own store) is woken from
 * another store by the blocked connection's id, as if its timeout had
 * passed. On a Redis Cluster ids are per node and the blocked connection's
 * node is only known once its wait starts, so there the "id" is a token
 * the store gives all its node connections as their name (CLIENT SETNAME
 * flc-w-<token>), and the wake looks the name up on every master (CLIENT
 * LIST) and unblocks it there: any store on the same cluster can wake it. */

/* The server's id of s's connection (CLIENT ID; -1 when the reply was not a
 * number). It changes when the store reconnects. On a cluster: the token
 * above (>= 0, kept across reconnects; connections made later are named
 * too). */
int flc_store_conn_id(flc_store_t *s, long long *id);

/* Wakes the connection with that id if it is blocked (CLIENT UNBLOCK id
 * TIMEOUT: its wait returns FLC_ETIMEOUT); a connection that is not blocked
 * is left alone. s must talk to the same server (on a cluster: the same
 * cluster) as the blocked one. */
int flc_store_wake_id(flc_store_t *s, long long id);

/* ---- the nodes behind the store (store_cluster_nodes.c) ------------------
 *
 * Which node holds what, for `flcache store stats`, the request tracker and
 * query answers. On a Redis Cluster a node is known by its id and the
 * address the cluster announces; one server has no cluster id. */

typedef struct flc_store_node {
    char id[41];        /* cluster node id (40 hex); "" on one server */
    char addr[300];     /* "host:port" as announced; one server: its redacted URL */
    char role[8];       /* "master", "replica", or "server" (not a cluster) */
    char master_id[41]; /* a replica's master; "" otherwise */
    char master_addr[300];
    char slots[200];    /* slot ranges it serves, "0-5460,10923"; "" for none
                           (ends in "..." when they do not fit) */
    uint32_t nslots;    /* slots it serves */
    uint64_t keys;      /* INFO keyspace db0 keys */
    uint64_t used_memory; /* INFO memory used_memory */
    int reachable;      /* 0: the node did not answer (keys, memory unknown) */
} flc_store_node_t;

/* Every node of the cluster behind s (masters by first slot, then replicas
 * by their master), each asked for its keys and memory over the store's own
 * connection to it; the map is refreshed first so roles are current. A
 * node that does not answer is listed with reachable = 0. On one server
 * *n = 0 (nothing to add to flc_store_stats). *out malloc'd. */
int flc_store_nodes(flc_store_t *s, flc_store_node_t **out, size_t *n);

/* The node that owns shard `shard` of a round (the slot of its hash tag
 * {J/s<s>~<k>}, from the store's slot map): id, addr, role, slots of the owner;
 * keys and memory are not asked (0). On one server: the server (id "",
 * addr its redacted URL, role "server"). FLC_ENOTFOUND when no node serves
 * the slot. */
int flc_store_shard_node(flc_store_t *s, const char *job, uint32_t round, uint32_t shard,
                         flc_store_node_t *node);

/* owner[k] = an index of the node owning shard k of a round, for k <
 * num_shards (equal indexes: the same node), from the slot map as it is,
 * without a round trip: for spreading work over the nodes, not for
 * routing. All 0 on one server. */
int flc_store_shard_owners(flc_store_t *s, const char *job, uint32_t round, uint32_t num_shards,
                           unsigned *owner);

#endif
