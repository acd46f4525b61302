/* Placement of threads next to cache nodes (issue 12): the node map of the
 * configuration (FLCACHE_NODES) and the flc_place_t callback built on it.
 *
 * FLCACHE_NODES lists, for each cache node a process may run next to, its
 * address as the cluster map names it, the network namespace to run in and
 * its unix socket, comma-separated:
 *   10.213.0.11:6379=flt-n1:/tmp/flc-testbed-flt/n1/redis.sock,...
 * (`scripts/testbed.sh env` prints it). A merger or query worker of shard s
 * then enters the namespace of the node owning s and talks to that node over
 * the socket; without the variable nothing is placed. */
#ifndef FLC_CLI_PLACE_H
#define FLC_CLI_PLACE_H

#include <stddef.h>

#include "base/error.h"
#include "cache/store.h"

typedef struct flc_cli_nodes flc_cli_nodes_t;

/* Parses text (NULL or "": *out = NULL, no map). FLC_EINVAL naming the entry
 * and what is wrong with it (never more of the text than that entry). */
int flc_cli_nodes_parse(const char *text, flc_cli_nodes_t **out, flc_err_t *e);

void flc_cli_nodes_free(flc_cli_nodes_t *n);

/* Entries in the map. */
size_t flc_cli_nodes_count(const flc_cli_nodes_t *n);

/* The namespace and socket of node_addr ("host:port"), or FLC_ENOTFOUND. */
int flc_cli_nodes_find(const flc_cli_nodes_t *n, const char *node_addr, const char **ns,
                       const char **sock);

/* The place callback over n (n outlives every use): enter() moves the calling
 * thread into the node's namespace and sets opts->local_node / local_sock.
 * A node missing from the map is FLC_ENOTFOUND naming it. n == NULL gives a
 * callback-less place (nothing is placed). */
flc_place_t flc_cli_place(const flc_cli_nodes_t *n);

#endif
