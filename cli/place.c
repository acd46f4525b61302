/* The node map (FLCACHE_NODES) and the thread placement built on it; see
 * place.h. The map is parsed once by the program; placing a thread is one
 * setns (runtime/pool.h), so a merger thread of the simulation driver runs
 * in the namespace of its shard's node exactly as a placed function would. */
#include "cli/place.h"

#include <stdlib.h>
#include <string.h>

#include "runtime/pool.h"

typedef struct node_entry {
    char *addr, *ns, *sock; /* one allocation each, owned */
} node_entry_t;

struct flc_cli_nodes {
    node_entry_t *v;
    size_t n;
};

void flc_cli_nodes_free(flc_cli_nodes_t *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->n; i++) {
        free(n->v[i].addr);
        free(n->v[i].ns);
        free(n->v[i].sock);
    }
    free(n->v);
    free(n);
}

size_t flc_cli_nodes_count(const flc_cli_nodes_t *n)
{
    return n ? n->n : 0;
}

static char *dup_n(const char *p, size_t len)
{
    char *d = malloc(len + 1);
    if (d) {
        memcpy(d, p, len);
        d[len] = '\0';
    }
    return d;
}

/* One entry "addr=ns:sock" of len bytes at p into *x. */
static int parse_entry(const char *p, size_t len, node_entry_t *x, unsigned idx, flc_err_t *e)
{
    const char *eq = memchr(p, '=', len);
    const char *colon = eq ? memchr(eq + 1, ':', len - (size_t)(eq + 1 - p)) : NULL;
    if (eq == NULL || colon == NULL || eq == p || colon == eq + 1 ||
        (size_t)(colon + 1 - p) >= len)
        return flc_err_set(e, FLC_EINVAL, "FLCACHE_NODES entry %u '%.*s' is not "
                           "host:port=namespace:/path/to/redis.sock", idx,
                           (int)(len > 120 ? 120 : len), p);
    const char *port = memchr(p, ':', (size_t)(eq - p));
    if (port == NULL || port + 1 == eq)
        return flc_err_set(e, FLC_EINVAL, "FLCACHE_NODES entry %u: address '%.*s' has no port",
                           idx, (int)(eq - p), p);
    const char *sock = colon + 1;
    if (sock[0] != '/')
        return flc_err_set(e, FLC_EINVAL, "FLCACHE_NODES entry %u: socket '%.*s' is not an "
                           "absolute path", idx, (int)(len - (size_t)(sock - p)), sock);
    x->ns = dup_n(eq + 1, (size_t)(colon - eq - 1));
    x->addr = dup_n(p, (size_t)(eq - p));
    x->sock = dup_n(sock, len - (size_t)(sock - p));
    if (!x->ns || !x->addr || !x->sock)
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    /* a name the pool could place (no '/', not . or ..); "" is refused above */
    if (strchr(x->ns, '/') != NULL || strcmp(x->ns, ".") == 0 || strcmp(x->ns, "..") == 0)
        return flc_err_set(e, FLC_EINVAL, "FLCACHE_NODES entry %u: '%s' is not a network "
                           "namespace name", idx, x->ns);
    return FLC_OK;
}

int flc_cli_nodes_parse(const char *text, flc_cli_nodes_t **out, flc_err_t *e)
{
    *out = NULL;
    if (text == NULL || text[0] == '\0')
        return FLC_OK;
    flc_cli_nodes_t *n = calloc(1, sizeof *n);
    size_t cap = 1;
    for (const char *c = text; *c; c++)
        cap += *c == ',';
    if (n == NULL || (n->v = calloc(cap, sizeof *n->v)) == NULL) {
        free(n);
        return flc_err_set(e, FLC_ENOMEM, "out of memory");
    }
    const char *p = text;
    for (unsigned idx = 1;; idx++) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > 0) {
            int rc = parse_entry(p, len, &n->v[n->n], idx, e);
            n->n++;
            if (rc != FLC_OK) {
                flc_cli_nodes_free(n);
                return rc;
            }
        }
        if (end == NULL)
            break;
        p = end + 1;
    }
    *out = n;
    return FLC_OK;
}

int flc_cli_nodes_find(const flc_cli_nodes_t *n, const char *node_addr, const char **ns,
                       const char **sock)
{
    for (size_t i = 0; n && node_addr && i < n->n; i++)
        if (strcmp(n->v[i].addr, node_addr) == 0) {
            *ns = n->v[i].ns;
            *sock = n->v[i].sock;
            return FLC_OK;
        }
    return FLC_ENOTFOUND;
}

static int enter(void *user, const char *node_addr, flc_store_opts_t *opts, flc_err_t *e)
{
    const char *ns, *sock;
    if (flc_cli_nodes_find(user, node_addr, &ns, &sock) != FLC_OK)
        return flc_err_set(e, FLC_ENOTFOUND, "node %s is not in FLCACHE_NODES: cannot place "
                           "work next to it", node_addr ? node_addr : "(none)");
    char msg[256];
    int rc = flc_pool_place_enter_thread(ns, msg, sizeof msg);
    if (rc != 0)
        return flc_err_set(e, rc, "next to node %s: %s", node_addr, msg);
    const flc_cli_nodes_t *n = user;
    for (size_t i = 0; i < n->n; i++)
        if (n->v[i].sock == sock)
            opts->local_node = n->v[i].addr; /* the map's copy outlives the caller's */
    opts->local_sock = sock;
    return FLC_OK;
}

flc_place_t flc_cli_place(const flc_cli_nodes_t *n)
{
    flc_place_t p = {NULL, NULL};
    if (n != NULL) {
        p.enter = enter;
        p.user = (void *)n;
    }
    return p;
}
