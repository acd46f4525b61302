/* cluster_map.h - a Redis Cluster's slot map and node table, and the reading
 * of the cluster's redirect errors: the routing half of the cluster client
 * (cache/cluster_conn.h holds the connections).
 *
 * The map is filled from CLUSTER SLOTS (works on every server from 3.0; 7.0's
 * CLUSTER SHARDS has known bugs, see docs/cluster.md "Routing"). Nodes are
 * known by "host:port" as the cluster announces them, and a node keeps its
 * index for the life of the map: a refresh updates roles and ids in place,
 * appends new addresses and marks the ones it no longer lists as gone. So
 * anything indexed by node (cluster_conn's connections) survives a refresh,
 * and a connection to an address that is still in the cluster is kept.
 *
 * Not thread-safe: one map per store, as one store per thread. */
#ifndef FLC_CACHE_CLUSTER_MAP_H
#define FLC_CACHE_CLUSTER_MAP_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "base/error.h"
#include "cache/slot.h"

#define FLC_CLUSTER_NO_NODE 0xFFFFu      /* owner[] of a slot no node serves */
#define FLC_CLUSTER_MAX_NODES 4096u      /* more is a malformed reply */
#define FLC_CLUSTER_REFRESH_MIN_MS 1000u /* at most one full refresh a second */

typedef enum flc_cluster_role {
    FLC_CLUSTER_GONE = 0,    /* no longer in the last CLUSTER SLOTS */
    FLC_CLUSTER_MASTER = 1,  /* serves slots (or was named by a MOVED) */
    FLC_CLUSTER_REPLICA = 2, /* listed under a master */
} flc_cluster_role_t;

typedef struct flc_cluster_node {
    char host[256]; /* as announced (IP or hostname), never empty */
    int port;
    char id[41]; /* 40 hex digits; "" when only a MOVED named it */
    flc_cluster_role_t role;
    int master;    /* a replica's master (node index); -1 otherwise */
    int nreplicas; /* a master's replicas in the last fetch */
    int nslots;    /* slots it owns in the map */
} flc_cluster_node_t;

typedef struct flc_cluster_map {
    flc_cluster_node_t *nodes; /* [0 .. nnodes); indexes stable, see above */
    size_t nnodes, cap;
    uint16_t owner[FLC_SLOT_COUNT]; /* slot -> node index or FLC_CLUSTER_NO_NODE */
    uint64_t version;               /* bumped by every change (fetch or MOVED) */
    uint64_t owner_changes;         /* fetches and MOVEDs that gave an owned slot another
                                     * owner (a failover, a reshard): a store's callers
                                     * compare it to notice a node changed under them */
    uint64_t fetched_ms;            /* monotonic ms of the last fetch attempt; 0: never */
    unsigned refresh_min_ms;        /* 0 at init means FLC_CLUSTER_REFRESH_MIN_MS */
    int refresh_pending;            /* a MOVED was applied: a full refresh is due */
} flc_cluster_map_t;

/* Sets up an empty map (every slot unowned). */
void flc_cluster_map_init(flc_cluster_map_t *m);

/* Frees the node table; the map is empty (and reusable) after. NULL: no-op. */
void flc_cluster_map_free(flc_cluster_map_t *m);

/* Sends CLUSTER SLOTS on c and replaces the map with the answer (see
 * flc_cluster_map_parse). asked_host is the host c is connected to, used for
 * nodes announced with an empty or NIL endpoint; NULL takes c's TCP host.
 * Counts as a refresh for flc_cluster_map_refresh_due even when it fails.
 * FLC_ECONN / FLC_ETIMEOUT / FLC_EPROTO on an I/O error (c is then unusable:
 * the caller closes it), FLC_EINVAL "cluster support disabled" for a server
 * that is not a cluster node, FLC_EAUTH, and as the parser; the map is
 * unchanged on any error. */
int flc_cluster_map_fetch(flc_cluster_map_t *m, redisContext *c, const char *asked_host,
                          flc_err_t *e);

/* Replaces the map with a CLUSTER SLOTS reply r (as hiredis hands it over):
 * ranges [start, end, master, replica...], each node [endpoint, port, id?,
 * metadata?] (servers before 7.0 send 2 or 3 elements). An endpoint that is
 * NIL or "" means asked_host; "?" is a node nobody can reach: skipped, its
 * slots stay unowned. A reply of no ranges (a node that owns no slots yet) is
 * FLC_ENOTFOUND; anything malformed is FLC_EPROTO naming the range and node.
 * The map is unchanged on error. */
int flc_cluster_map_parse(flc_cluster_map_t *m, const redisReply *r, const char *asked_host,
                          flc_err_t *e);

/* The node serving slot, or FLC_CLUSTER_NO_NODE. */
static inline unsigned flc_cluster_map_owner(const flc_cluster_map_t *m, uint16_t slot)
{
    return slot < FLC_SLOT_COUNT ? m->owner[slot] : FLC_CLUSTER_NO_NODE;
}

/* The node serving key (flc_slot_of), or FLC_CLUSTER_NO_NODE. */
unsigned flc_cluster_map_lookup(const flc_cluster_map_t *m, const char *key, size_t len);

/* The index of host:port in the table, or -1. */
int flc_cluster_map_find(const flc_cluster_map_t *m, const char *host, int port);

/* Slots with an owner (16384 when the cluster covers every slot). */
unsigned flc_cluster_map_covered(const flc_cluster_map_t *m);

/* ---- redirects and errors ------------------------------------------------ */

/* What a reply means for routing (flc_cluster_classify). */
typedef enum flc_cluster_reply {
    FLC_CLUSTER_R_OK = 0,      /* not an error reply: the command ran */
    FLC_CLUSTER_R_MOVED,       /* the slot lives elsewhere: patch the map, resend */
    FLC_CLUSTER_R_ASK,         /* migrating: resend this one command, after ASKING, there */
    FLC_CLUSTER_R_TRYAGAIN,    /* multi-key command during a migration: back off, resend */
    FLC_CLUSTER_R_CLUSTERDOWN, /* cluster down or slot unserved: back off, refresh, resend */
    FLC_CLUSTER_R_CROSSSLOT,   /* keys in different slots: the caller's bug, never resend */
    FLC_CLUSTER_R_UNBLOCKED,   /* a blocked command released by a role change: refresh, resend */
    FLC_CLUSTER_R_IOERR,       /* no reply (NULL): the connection is broken */
    FLC_CLUSTER_R_OTHER,       /* any other error reply: the caller's answer */
} flc_cluster_reply_t;

/* A MOVED or ASK: "MOVED <slot> <host>:<port>" (hiredis strips the '-'). */
typedef struct flc_cluster_redirect {
    uint16_t slot;
    char host[256]; /* "" when the server announced no endpoint: use the
                       host the command was sent to */
    int port;
} flc_cluster_redirect_t;

/* Parses the text after "MOVED " or "ASK " as well as the whole message:
 * msg is "MOVED 3999 127.0.0.1:6381", "ASK 3999 [::1]:6381" or
 * "MOVED 5061 :47005". The address splits at its last ':' (IPv6 hosts may be
 * bracketed or not; brackets are removed). FLC_EPROTO naming the message when
 * it is not a MOVED/ASK, the slot is not 0..16383 or the port not 1..65535.
 * *kind (may be NULL) gets FLC_CLUSTER_R_MOVED or FLC_CLUSTER_R_ASK. */
int flc_cluster_redirect_parse(const char *msg, size_t len, flc_cluster_reply_t *kind,
                               flc_cluster_redirect_t *rd, flc_err_t *e);

/* Classifies an error message by its first word (MOVED, ASK, TRYAGAIN,
 * CLUSTERDOWN, CROSSSLOT, UNBLOCKED; else OTHER). For MOVED and ASK, rd (may
 * be NULL) is filled; a MOVED/ASK that does not parse is OTHER. */
flc_cluster_reply_t flc_cluster_classify_msg(const char *msg, size_t len,
                                             flc_cluster_redirect_t *rd);

/* Classifies a reply: NULL is IOERR, a non-error reply OK, an error reply as
 * flc_cluster_classify_msg. */
flc_cluster_reply_t flc_cluster_classify(const redisReply *r, flc_cluster_redirect_t *rd);

/* "MOVED", "ASK", ... for messages. */
const char *flc_cluster_reply_name(flc_cluster_reply_t k);

/* Points slot at the node a MOVED names (asked_host fills an empty host),
 * adding it as a master when the table does not know it, and marks a full
 * refresh pending (the spec: a slot seldom moves alone). Returns the node
 * index (>= 0), or FLC_EINVAL / FLC_ENOMEM. */
int flc_cluster_map_apply_moved(flc_cluster_map_t *m, const flc_cluster_redirect_t *rd,
                                const char *asked_host, flc_err_t *e);

/* Index of the node an ASK (or MOVED) names, added as a master when new,
 * without changing any slot: ASK is for one command only. */
int flc_cluster_map_node_for(flc_cluster_map_t *m, const flc_cluster_redirect_t *rd,
                             const char *asked_host, flc_err_t *e);

/* ---- errors of a node's answer ------------------------------------------ */

/* Fills e for an I/O failure on c (NULL reply) while doing what on node
 * ("10.0.0.11:6379"): FLC_ETIMEOUT when the socket timed out, FLC_EPROTO for
 * a protocol error, FLC_ENOMEM, otherwise FLC_ECONN. Returns the code. A
 * context that failed is unusable from then on (hiredis): close it. */
int flc_cluster_io_error(const redisContext *c, const char *node, const char *what, flc_err_t *e);

/* Fills e for an unexpected reply r (an error or the wrong type) to what on
 * node: FLC_EAUTH for NOAUTH/WRONGPASS/NOPERM, FLC_EINVAL for "cluster
 * support disabled", FLC_ENOMEM for OOM, otherwise FLC_EPROTO. */
int flc_cluster_reply_error(const redisReply *r, const char *node, const char *what, flc_err_t *e);

/* ---- refresh policy and mode --------------------------------------------- */

/* 1 when a full refresh may run now: force, or refresh_min_ms (1 s) have
 * passed since the last fetch (now_ms on the monotonic clock, as
 * flc_now_ns() / 1000000). A MOVED inside the window only patches its slot. */
int flc_cluster_map_refresh_due(const flc_cluster_map_t *m, uint64_t now_ms, int force);

/* Whether the server behind c runs in cluster mode: INFO cluster's
 * cluster_enabled, or, where INFO is refused (renamed, ACL), CLUSTER INFO's
 * "cluster support disabled" error. *is_cluster = 1 or 0. FLC_ECONN etc. on
 * an I/O error, FLC_EAUTH, FLC_EPROTO when neither answer says. */
int flc_cluster_detect(redisContext *c, int *is_cluster, flc_err_t *e);

#endif
