/* store_cluster.h - the store's Redis Cluster routing. Private to cache/,
 * and open to tests/ and bench/ (flc_store_is_cluster, flc_store_cl_counts),
 * as store_raw.h is.
 *
 * When the store's server is a cluster node (flc_store_open asked it, or the
 * URL said ?cluster=yes), s->cl is set and every command the store's files
 * build goes through here instead of straight onto one hiredis context:
 *
 * - each command is routed by its key (argv[1]; KEYS[1] of EVAL; the key of
 *   MEMORY USAGE) to the node that owns the key's slot in the map, appended
 *   to that node's connection and remembered (its RESP text) in a FIFO of
 *   commands whose replies are still to read;
 * - a flush writes every node's pending output, so a pipeline whose commands
 *   span hash tags is one round trip per node, all nodes at once;
 * - replies are read in submission order, each from the connection its
 *   command went to. A redirect reply is handled there (MOVED, ASK,
 *   TRYAGAIN, CLUSTERDOWN, UNBLOCKED: see store_cluster_read.c) and the one
 *   command resent, so the callers see the reply the right node gave.
 *
 * Keyless commands (PING, CLIENT, INFO, EXEC...) go to the node of the last
 * routed command, or the node flc_store_cl_use_node chose; MULTI waits for
 * the first keyed command after it. s->c always names the connection of the
 * last routed command, so the store's "s->c == NULL: connection lost"
 * checks keep working. */
#ifndef FLC_CACHE_STORE_CLUSTER_H
#define FLC_CACHE_STORE_CLUSTER_H

#include <stddef.h>
#include <sys/uio.h>

#include <hiredis/hiredis.h>

typedef struct flc_store flc_store_t;
typedef struct flc_store_cluster flc_store_cluster_t;

/* Makes s a cluster client from its URL (s->url): the connection table, the
 * map from the seed. *is_cluster = 0 (and nothing kept) when the seed turns
 * out not to be a cluster node and the URL did not force it. Errors go to
 * s->err. */
int flc_store_cl_start(flc_store_t *s, int *is_cluster);

/* How long redirects, retries and reconnects of one command may take:
 * about 2 x a 2-4 s cluster-node-timeout + 2 s. */
#define FLC_STORE_CL_DEADLINE_MS 10000u

/* Frees the routing state and every node connection. NULL cl: no-op. */
void flc_store_cl_free(flc_store_t *s);

/* Makes sure s->c is a live connection to some node (the current one, else
 * any master), doing a pending map refresh first when nothing is in flight. */
int flc_store_cl_ensure(flc_store_t *s);

/* Queues one formatted command (RESP text `cmd` of len bytes, which the
 * store takes over and frees): routed, appended to its node's output. */
int flc_store_cl_push(flc_store_t *s, char *cmd, size_t len);

/* Queues a formatted command and writes every node's pending output:
 * flc_store_cl_push, then flc_store_cl_flush. */
int flc_store_cl_send(flc_store_t *s, char *cmd, size_t len, const char *what);

/* The zero-copy path of store_io.c on a cluster: a command whose text is
 * head (every argument but the last, and the last one's "$<len>\r\n") and
 * then the last argument's bytes in pieces[0..n) of the caller's memory.
 * Routed by key; the node's pending output is written first (order), then
 * head, pieces and "\r\n" go to its socket with one sendmsg, nothing
 * copied. Pieces over 8 KB (values) must stay valid until the batch's last
 * reply is read (a redirect or a failover sends the command again); smaller
 * ones (frame headers) are copied for that. idem: the command has
 * the same effect run twice (SET, PSETEX, HSET). */
int flc_store_cl_send_pieces(flc_store_t *s, const char *head, size_t hl, const char *key,
                             const struct iovec *pieces, int n, int idem, const char *what);

/* Reads the oldest queued command's reply as flc_store_cl_read does, but
 * with get(ctx, priv, &reply) (redisGetReply's contract) reading it from
 * its connection, so a bulk reply can go straight to the caller's memory.
 * *direct = 1 when the reply was read that way and err_of(priv) said it is
 * no error; else *direct = 0 and *r is a reply object (one read aside
 * earlier, one sent again after a redirect, or the error reply) as
 * flc_store_cl_read gives. */
int flc_store_cl_read_with(flc_store_t *s, int (*get)(redisContext *c, void *priv, void **reply),
                           void *priv,
                           const char *(*err_of)(void *priv), redisReply **r, int *direct,
                           const char *what);

/* Writes every node's pending output. */
int flc_store_cl_flush(flc_store_t *s, const char *what);

/* Reads the reply of the oldest queued command into *r (caller frees),
 * following redirects. Error replies other than redirects are returned as
 * replies, as on one node; only I/O problems (and redirects that never
 * settle within the deadline) are errors. */
int flc_store_cl_read(flc_store_t *s, redisReply **r, const char *what);

/* Drops the connection of the node s->c belongs to and of every node with
 * replies still to read (their streams are out of step), forgets the queue
 * and schedules a map refresh. s->c becomes NULL. */
void flc_store_cl_drop(flc_store_t *s);

/* Routes the following keyless commands, and sets s->c, to the node owning
 * key (the connection a BLPOP on it will use). */
int flc_store_cl_route_key(flc_store_t *s, const char *key);

/* The masters of the current map: *n node indexes into nodes (cap at
 * most). */
int flc_store_cl_masters(flc_store_t *s, unsigned *nodes, size_t cap, size_t *n);

/* Routes the following keyless commands to node (and connects s->c to it). */
int flc_store_cl_use_node(flc_store_t *s, unsigned node);

/* The socket I/O timeout a blocking command needs on whichever node it is
 * (re)sent to; 0: the store's normal timeout. */
void flc_store_cl_block_ms(flc_store_t *s, unsigned ms);

/* CLIENT ID / CLIENT UNBLOCK on a cluster (store_ops.h): the id is a token
 * naming every connection of this store (CLIENT SETNAME flc-w-<token>), and
 * the wake unblocks that name's connection on every master. */
int flc_store_cl_conn_id(flc_store_t *s, long long *id);
int flc_store_cl_wake_id(flc_store_t *s, long long id);

/* MOVED, ASK and other redirects (TRYAGAIN, CLUSTERDOWN, UNBLOCKED) that
 * stores of this process have met so far. */
void flc_store_cl_counts(unsigned long *moved, unsigned long *ask, unsigned long *retry);

/* Batches that stores of this process sent again because a node closed
 * its connection with replies due (store_cluster_fail.c). */
unsigned long flc_store_cl_replayed(void);

/* 1 when the formatted command has the same effect run once or twice
 * (reads, SET, DEL, HSET, SADD, PEXPIRE, ...: not RPUSH, INCR, LPOP, EVAL),
 * so it may be sent again after its connection was lost. */
int flc_store_cl_idempotent(const char *cmd, size_t len);

/* Sleeps first ms, then twice the last time, up to cap (*ms keeps it). */
void flc_store_cl_backoff(unsigned *ms, unsigned first, unsigned cap);

/* 1 for a whole-server command (FLUSHDB, FLUSHALL, DBSIZE, KEYS), which on
 * a cluster means every master. */
int flc_store_cl_whole_server(const char *cmd, size_t len);

/* Sends the formatted command cmd (not taken) to every master and combines
 * the replies into *out (caller frees): integers summed (DBSIZE), arrays
 * concatenated (KEYS), an error reply of any master returned as it is. */
int flc_store_cl_all_masters(flc_store_t *s, const char *cmd, size_t len, redisReply **out,
                             const char *what);

/* 1 when s is a cluster client. */
int flc_store_is_cluster(const flc_store_t *s);

#endif
