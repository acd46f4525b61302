/* store_cluster_internal.h - shared by store_cluster.c (routing, the
 * queue), store_cluster_read.c (replies, redirects) and
 * store_cluster_all.c (every master: whole-server commands, CLIENT ID /
 * UNBLOCK); nothing else. */
#ifndef FLC_CACHE_STORE_CLUSTER_INTERNAL_H
#define FLC_CACHE_STORE_CLUSTER_INTERNAL_H

#include <stdint.h>
#include <sys/time.h>
#include <sys/uio.h>

#include "cache/cluster_conn.h"
#include "cache/cluster_map.h"
#include "cache/store_internal.h"

#define CL_MAX_REDIRECTS 16
#define CL_DEADLINE_MS FLC_STORE_CL_DEADLINE_MS

typedef struct pend {
    char *cmd; /* RESP text, owned (hiredis format functions: free()); with a
                * body, only the text before the last argument's bytes */
    size_t len;
    /* A command written straight from the caller's memory
     * (flc_store_cl_send_pieces): the last argument's bytes and its "\r\n";
     * pieces over 8 KB borrowed from the caller until the batch's last
     * reply is read (the store's writers read it before they return; a
     * deferred batch's values are its caller's), smaller ones copied into
     * cmd after the head text. NULL otherwise. */
    struct iovec *body;
    int nbody;
    int body_idem; /* flc_store_cl_idempotent of the whole command */
    unsigned node;
    redisContext *ctx;  /* the connection it was appended to */
    redisReply *stash;  /* its reply, read early (another command was resent) */
    uint16_t slot;
    int keyed, in_tx;
} pend_t;

struct flc_store_cluster {
    flc_cluster_map_t map;
    flc_cluster_conn_t *cc;
    pend_t *q;
    size_t head, n, cap; /* q[head .. n) wait for their replies */
    unsigned cur;        /* node of keyless commands (FLC_CLUSTER_NO_NODE: none yet) */
    char *multi;         /* a MULTI waiting for its transaction's node */
    size_t multi_len;
    int in_tx;
    unsigned block_ms;
    long long token; /* CLIENT SETNAME flc-w-<token>; -1: not named */
    redisContext **named;
    size_t nnamed;
    /* Failover (issue 12 point 5, store_wait.c). */
    uint64_t lost;      /* node connections found dead or refused (flc_store_failovers) */
    uint64_t batch;     /* bumped whenever no reply is due: a new batch starts */
    uint64_t *probed;   /* per node: the batch its connection was last checked in */
    unsigned char *written; /* per node: written to since the last flc_store_replicated */
    size_t nnode_state; /* entries of probed and written */
    int busy;           /* settling a redirect or replaying: every reply due is read
                         * aside already (or its node is dead), so a failed connect
                         * refreshes the map without reading anything */
    uint64_t wait_short; /* replication waits accepted with every replica a node had,
                          * fewer than asked (flc_store_wait_short) */
};

/* Grows probed / written to cover node; FLC_ENOMEM when it cannot. */
int flc_store_cl_node_state(flc_store_cluster_t *cl, unsigned node);

/* 1 when node's connection c must be remade before this batch uses it: its
 * server closed it (store_cluster_fail.c); counted in flc_store_failovers. */
int flc_store_cl_stale(flc_store_t *s, unsigned node, redisContext *c);

/* Reads every reply due into its command's stash, so that no socket holds
 * an unread reply and the map can be refreshed over any connection
 * (routing a batch while a node is down). FLC_ECONN when a node fails. */
int flc_store_cl_stash_all(flc_store_cluster_t *cl);

/* Replies still due when an operation that reads all of its own ends (a
 * failover's replay or an error path left them): their connections are
 * closed and the queue cleared, so no later command gets an earlier one's
 * reply. Returns how many were due (0: nothing done). */
size_t flc_store_cl_forget_due(flc_store_t *s);

/* Closes node's connection (and forgets its CLIENT SETNAME). */
void flc_store_cl_close_node(flc_store_cluster_t *cl, unsigned node);

/* node's connection broke with replies due. When every command without a
 * reply may run twice (reads, SET, HSET, SADD, ...), sends the ones that
 * were on node again, each to its slot's owner once the map names a
 * reachable one (a promoted replica), until the cluster deadline: 0, and
 * the caller reads on. Otherwise FLC_ECONN and node's connection may be
 * closed already: the caller fails the batch (flc_store_cl_lost). */
int flc_store_cl_replay(flc_store_t *s, unsigned node, const char *what);

/* Fails the batch after a lost connection whose context is gone: the
 * error names what and detail, every connection with replies due is
 * closed, the queue forgotten (as flc_store_io_error does). */
int flc_store_cl_lost(flc_store_t *s, const char *what, const char *detail);

/* 1 for a command name (a, al bytes) that writes nothing: the replication
 * wait skips nodes that were only read. */
int flc_store_cl_reads_only(const char *a, size_t al);

/* Notes that a write went to node (for flc_store_replicated). */
void flc_store_cl_mark_written(flc_store_t *s, unsigned node);

uint64_t flc_store_cl_now_ms(void);
struct timeval flc_store_cl_tv(unsigned ms);

/* The connection of node, made (and named, after flc_store_conn_id) now if
 * needed; on failure the map is refreshed from another node when no reply
 * is in flight (the caller looks the owner up again). */
int flc_store_cl_conn(flc_store_t *s, unsigned node, redisContext **c);

/* The node owning slot and its connection, retrying (nothing sent yet)
 * until the deadline while no node serves the slot or its owner cannot be
 * reached (store_cluster.c). */
int flc_store_cl_route_slot(flc_store_t *s, uint16_t slot, unsigned *node, redisContext **c);

/* Queues *p (its text and body taken over: freed on failure too), and
 * appends its command to p->ctx's output when append (store_cluster.c). */
int flc_store_cl_enqueue_pend(flc_store_t *s, pend_t p, int append);

/* Appends entry p's whole command to c's output (a borrowed body copied). */
int flc_store_cl_append_pend(redisContext *c, const pend_t *p);

/* 1 when p's command has the same effect run twice (flc_store_cl_idempotent). */
int flc_store_cl_pend_idempotent(const pend_t *p);

/* Frees what p owns of its command. */
void flc_store_cl_pend_free(pend_t *p);

/* ---- commands read from their RESP text (cluster_cmd.c) ---- */

/* Up to max arguments of a formatted command into a[] / al[]; the count of
 * arguments the command has (0 when the text does not parse). */
int flc_store_cl_args(const char *cmd, size_t len, const char **a, size_t *al, int max);

/* How a command is routed: by its key (*key, *klen: argv[1] for all the
 * store uses, a script's first key, MEMORY USAGE's argument), to any node
 * (no key), or it opens a transaction (queued until EXEC). */
enum { FLC_CL_KEYED, FLC_CL_KEYLESS, FLC_CL_MULTI };

/* 1 when argument a (al bytes) is the command name `name`, any case. */
int flc_store_cl_is_cmd(const char *a, size_t al, const char *name);
int flc_store_cl_key_of(const char *cmd, size_t len, const char **key, size_t *klen);

#endif
