/* cluster_conn.h - the connections of a Redis Cluster client: one hiredis
 * context per node of a cluster_map, made when first asked for, with the
 * seed URL's timeouts and credentials, over a unix socket for a node the
 * caller says is co-located; plus the seed's own connection, the start-up
 * (is the seed a cluster node? fetch the map from it) and the rate-limited
 * map refresh, which needs both the map and the connections.
 *
 * Connections are indexed like the map's nodes, whose indexes never change
 * (cluster_map.h), so a refresh keeps every connection to an address that is
 * still in the cluster. A context that returned an I/O error is unusable
 * (hiredis): the caller closes it with flc_cluster_conn_close and the next
 * flc_cluster_conn_get connects again, at most once per reconnect_min_ms
 * after a failed connect, so a dead node costs one refused connect per
 * window, not one per command.
 *
 * Blocking commands (BLPOP) must not run on these contexts with a block time
 * over io_timeout_ms: hiredis poisons a context whose read timed out (see
 * docs/cluster.md). As with the store, the process should ignore SIGPIPE:
 * a write to a node that just died would otherwise kill it. Not
 * thread-safe: one per store. */
#ifndef FLC_CACHE_CLUSTER_CONN_H
#define FLC_CACHE_CLUSTER_CONN_H

#include <hiredis/hiredis.h>

#include "base/error.h"
#include "cache/cluster_map.h"
#include "cache/url.h"

#define FLC_CLUSTER_MAX_COLOCATED 8

typedef struct flc_cluster_conn_opts {
    unsigned connect_timeout_ms; /* 0: 5000 (as the store) */
    unsigned io_timeout_ms;      /* 0: 30000 (as the store) */
    unsigned reconnect_min_ms;   /* after a failed connect to a node; 0: 100 */
    /* The node this process runs next to ("host:port" as the cluster map
     * names it) and its unix socket (flc_store_opts_t.local_node /
     * local_sock): flc_cluster_conn_new colocates it, so that node, the
     * seed too when it is that node, is reached over the socket. NULL or
     * "": none. Borrowed for the call only. */
    const char *local_node;
    const char *local_sock;
} flc_cluster_conn_opts_t;

typedef struct flc_cluster_conn flc_cluster_conn_t;

/* A connection table for the cluster seed names (redis://[user:pw@]host:port
 * or unix://...; its user and password are sent as AUTH on every node
 * connection). Connects to nothing yet. opts may be NULL. NULL and *e on
 * failure: FLC_ENOMEM, or FLC_EINVAL for a local_node that is not
 * host:port or a local_sock too long for a socket. */
flc_cluster_conn_t *flc_cluster_conn_new(const flc_url_t *seed, const flc_cluster_conn_opts_t *opts,
                                         flc_err_t *e);

/* Closes every connection and frees cc. NULL: no-op. */
void flc_cluster_conn_free(flc_cluster_conn_t *cc);

/* Says that the node announced as host:port is reachable through the unix
 * socket path (a function placed next to it): flc_cluster_conn_get connects
 * to it there instead of over TCP, and so does flc_cluster_conn_seed when
 * the seed URL names that node (call this before the bootstrap). FLC_EINVAL
 * beyond FLC_CLUSTER_MAX_COLOCATED or for a path that does not fit a
 * socket. */
int flc_cluster_conn_colocate(flc_cluster_conn_t *cc, const char *host, int port, const char *path,
                              flc_err_t *e);

/* Splits "host:port" (host may be a bracketed IPv6 address; the split is
 * at the last ':') into host (cap bytes) and *port. FLC_EINVAL naming addr
 * when it has no host, no port, a port outside 1..65535 or a host too long. */
int flc_cluster_addr_split(const char *addr, char *host, size_t cap, int *port, flc_err_t *e);

/* The connection to the seed URL itself (connected and authenticated when
 * first asked), for detection and the first fetch. *out is borrowed: valid
 * until flc_cluster_conn_close_seed or _free. FLC_ECONN, FLC_EAUTH, ... */
int flc_cluster_conn_seed(flc_cluster_conn_t *cc, redisContext **out, flc_err_t *e);
void flc_cluster_conn_close_seed(flc_cluster_conn_t *cc);

/* The connection to node of map m, connected (and authenticated) now if it
 * has none or its last one failed. *out is borrowed, valid until that node is
 * closed or cc freed. FLC_EINVAL for a node not in m; FLC_ECONN when the
 * connect fails or failed less than reconnect_min_ms ago; FLC_EAUTH when the
 * node refuses the credentials; FLC_ETIMEOUT. */
int flc_cluster_conn_get(flc_cluster_conn_t *cc, const flc_cluster_map_t *m, unsigned node,
                         redisContext **out, flc_err_t *e);

/* Closes node's connection (after an I/O error on it); the next get connects
 * again. Out-of-range or unconnected: no-op. */
void flc_cluster_conn_close(flc_cluster_conn_t *cc, unsigned node);

/* 1 when node has an open connection and it is over a unix socket. */
int flc_cluster_conn_is_unix(const flc_cluster_conn_t *cc, unsigned node);

/* Start-up: connects to the seed and asks whether it is a cluster node
 * (flc_cluster_detect). When it is, fills m from the seed's CLUSTER SLOTS and,
 * when the seed is one of the nodes by host:port, keeps its connection as that
 * node's. *is_cluster = 0 leaves m untouched (the caller's single-node path).
 * FLC_EINVAL for a cluster seed URL with a db other than 0 (a cluster has only
 * db 0); otherwise as flc_cluster_conn_seed, flc_cluster_detect and
 * flc_cluster_map_fetch. */
int flc_cluster_conn_bootstrap(flc_cluster_conn_t *cc, flc_cluster_map_t *m, int *is_cluster,
                               flc_err_t *e);

/* Refreshes m with CLUSTER SLOTS from one node that answers: masters first,
 * then replicas, then the seed, skipping nodes that are gone and the node
 * avoid (the one that just failed; -1: none). Rate-limited: unless force, does
 * nothing while flc_cluster_map_refresh_due says no; *refreshed (may be NULL)
 * says whether the map was replaced. A node that fails is closed and the
 * next one tried; the error of the last one is returned when none answers. */
int flc_cluster_conn_refresh(flc_cluster_conn_t *cc, flc_cluster_map_t *m, int avoid, int force,
                             int *refreshed, flc_err_t *e);

#endif
