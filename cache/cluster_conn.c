/* cluster_conn.c - per-node hiredis connections of a cluster client, its
 * start-up from a seed URL and the map refresh (see cluster_conn.h).
 *
 * Every connection is made the way the store makes its one (cache/store.c):
 * the same connect and I/O timeouts, the reader's buffer kept between
 * replies, AUTH [user] password from the URL. A cluster redirects to nodes
 * the seed URL never named, so the credentials have to travel with the
 * table, and go out on every new connection (spec: redirect targets too).
 * The node a placed function runs next to (opts.local_node) is reached over
 * its unix socket, seed included; every other node over TCP, or TLS when
 * the seed is rediss:// (cache/tls.h), with the seed's TLS settings. */
#include "cache/cluster_conn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "base/clock.h"
#include "cache/tls.h"

typedef struct node_conn {
    redisContext *c;
    char host[256];     /* the address it was made for: a node index keeps its */
    int port;           /* address, but a stale slot is never trusted blindly */
    uint64_t failed_ms; /* monotonic ms of the last failed connect; 0: none */
} node_conn_t;

typedef struct colocated {
    char host[256];
    int port;
    char path[108];
} colocated_t;

struct flc_cluster_conn {
    flc_url_t seed;
    char seed_text[512]; /* redacted, for messages */
    flc_cluster_conn_opts_t opts;
    redisContext *seed_c;
    node_conn_t *v;
    size_t n;
    colocated_t co[FLC_CLUSTER_MAX_COLOCATED];
    size_t nco;
};

static uint64_t now_ms(void)
{
    return flc_now_ns() / 1000000u;
}

static struct timeval tv_ms(unsigned ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (long)(ms % 1000) * 1000};
    return tv;
}

flc_cluster_conn_t *flc_cluster_conn_new(const flc_url_t *seed, const flc_cluster_conn_opts_t *opts,
                                         flc_err_t *e)
{
    flc_cluster_conn_t *cc = calloc(1, sizeof *cc);
    if (cc == NULL) {
        flc_err_set(e, FLC_ENOMEM, "out of memory for a cluster connection table");
        return NULL;
    }
    cc->seed = *seed;
    flc_url_redacted(seed, cc->seed_text, sizeof cc->seed_text);
    if (opts)
        cc->opts = *opts;
    if (cc->opts.connect_timeout_ms == 0)
        cc->opts.connect_timeout_ms = 5000;
    if (cc->opts.io_timeout_ms == 0)
        cc->opts.io_timeout_ms = 30000;
    if (cc->opts.reconnect_min_ms == 0)
        cc->opts.reconnect_min_ms = 100;
    cc->opts.local_node = cc->opts.local_sock = NULL; /* borrowed for this call only */
    if (opts && opts->local_node && opts->local_node[0] && opts->local_sock &&
        opts->local_sock[0]) {
        char host[256];
        int port = 0;
        if (flc_cluster_addr_split(opts->local_node, host, sizeof host, &port, e) != FLC_OK ||
            flc_cluster_conn_colocate(cc, host, port, opts->local_sock, e) != FLC_OK) {
            free(cc);
            return NULL;
        }
    }
    return cc;
}

int flc_cluster_addr_split(const char *addr, char *host, size_t cap, int *port, flc_err_t *e)
{
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    char *end = NULL;
    long p = colon ? strtol(colon + 1, &end, 10) : 0;
    const char *h = addr;
    size_t hl = colon ? (size_t)(colon - addr) : 0;
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']')
        h++, hl -= 2;
    if (colon == NULL || hl == 0 || end == colon + 1 || *end != '\0' || p < 1 || p > 65535 ||
        hl >= cap)
        return flc_err_set(e, FLC_EINVAL, "node address '%.100s' is not host:port",
                           addr ? addr : "(null)");
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (int)p;
    return FLC_OK;
}

void flc_cluster_conn_free(flc_cluster_conn_t *cc)
{
    if (cc == NULL)
        return;
    for (size_t i = 0; i < cc->n; i++)
        if (cc->v[i].c)
            redisFree(cc->v[i].c);
    if (cc->seed_c)
        redisFree(cc->seed_c);
    free(cc->v);
    free(cc);
}

int flc_cluster_conn_colocate(flc_cluster_conn_t *cc, const char *host, int port, const char *path,
                              flc_err_t *e)
{
    if (cc->nco == FLC_CLUSTER_MAX_COLOCATED)
        return flc_err_set(e, FLC_EINVAL, "co-located node %s:%d: at most %d co-located nodes",
                           host, port, FLC_CLUSTER_MAX_COLOCATED);
    colocated_t *d = &cc->co[cc->nco];
    if (strlen(host) >= sizeof d->host || strlen(path) >= sizeof d->path || path[0] == '\0')
        return flc_err_set(e, FLC_EINVAL,
                           "co-located node %.64s:%d: bad host or socket path "
                           "'%.64s' (at most %zu bytes)",
                           host, port, path, sizeof d->path - 1);
    snprintf(d->host, sizeof d->host, "%s", host);
    snprintf(d->path, sizeof d->path, "%s", path);
    d->port = port;
    cc->nco++;
    return FLC_OK;
}

static const char *colocated_path(const flc_cluster_conn_t *cc, const char *host, int port)
{
    for (size_t i = 0; i < cc->nco; i++)
        if (cc->co[i].port == port && strcmp(cc->co[i].host, host) == 0)
            return cc->co[i].path;
    return NULL;
}

/* Sends AUTH with the seed's credentials (if any) on a fresh context.
 * Returns FLC_OK, or the error (the caller frees c). */
static int authenticate(flc_cluster_conn_t *cc, redisContext *c, const char *name, flc_err_t *e)
{
    if (cc->seed.password[0] == '\0')
        return FLC_OK;
    redisReply *r = cc->seed.user[0]
                        ? redisCommand(c, "AUTH %s %s", cc->seed.user, cc->seed.password)
                        : redisCommand(c, "AUTH %s", cc->seed.password);
    if (r == NULL)
        return flc_cluster_io_error(c, name, "AUTH", e);
    int rc = FLC_OK;
    if (r->type == REDIS_REPLY_ERROR) {
        flc_cluster_reply_error(r, name, "AUTH", e);
        rc = e ? (e->code = FLC_EAUTH) : FLC_EAUTH;
    }
    freeReplyObject(r);
    return rc;
}

/* Connects (unix socket when path is set, TCP otherwise), sets the I/O
 * timeout and authenticates. */
static int connect_to(flc_cluster_conn_t *cc, const char *host, int port, const char *path,
                      const char *name, redisContext **out, flc_err_t *e)
{
    struct timeval ct = tv_ms(cc->opts.connect_timeout_ms);
    redisContext *c = NULL;
    if (cc->seed.tls && path == NULL) {
        /* rediss:// seed: every node over TLS with the seed's CA, client
         * certificate and sni= (redirect targets and the map's nodes
         * included); the certificate must name the node's address as the
         * map gives it, unless sni= names them all. */
        flc_err_t te = {0};
        int rc = flc_tls_connect(&cc->seed, host, port, cc->opts.connect_timeout_ms, &c, &te);
        if (rc != FLC_OK)
            return flc_err_set(e, rc, "cannot connect to %s: %s", name, te.msg);
    } else {
        c = path ? redisConnectUnixWithTimeout(path, ct) : redisConnectWithTimeout(host, port, ct);
    }
    if (c == NULL)
        return flc_err_set(e, FLC_ENOMEM, "%s: cannot allocate a connection", name);
    if (c->err) {
        flc_err_set(e, FLC_ECONN, "cannot connect to %s: %s", name, c->errstr);
        redisFree(c);
        return FLC_ECONN;
    }
    redisSetTimeout(c, tv_ms(cc->opts.io_timeout_ms));
    c->reader->maxbuf = 0; /* as the store: keep the reader's buffer (store.c) */
    int rc = authenticate(cc, c, name, e);
    if (rc != FLC_OK) {
        redisFree(c);
        return rc;
    }
    *out = c;
    return FLC_OK;
}

int flc_cluster_conn_seed(flc_cluster_conn_t *cc, redisContext **out, flc_err_t *e)
{
    if (cc->seed_c && cc->seed_c->err) {
        redisFree(cc->seed_c);
        cc->seed_c = NULL;
    }
    if (cc->seed_c == NULL) {
        /* A seed that is the co-located node is reached over its socket
         * too: then no TCP connection to it is ever made. */
        const char *path = cc->seed.kind == FLC_URL_UNIX
                               ? cc->seed.path
                               : colocated_path(cc, cc->seed.host, cc->seed.port);
        char name[600];
        snprintf(name, sizeof name, "%s%s%s%s", cc->seed_text,
                 path && cc->seed.kind == FLC_URL_TCP ? " (unix:" : "",
                 path && cc->seed.kind == FLC_URL_TCP ? path : "",
                 path && cc->seed.kind == FLC_URL_TCP ? ")" : "");
        int rc = connect_to(cc, cc->seed.host, cc->seed.port, path, name, &cc->seed_c, e);
        if (rc != FLC_OK)
            return rc;
    }
    *out = cc->seed_c;
    return FLC_OK;
}

void flc_cluster_conn_close_seed(flc_cluster_conn_t *cc)
{
    if (cc && cc->seed_c) {
        redisFree(cc->seed_c);
        cc->seed_c = NULL;
    }
}

static int grow(flc_cluster_conn_t *cc, size_t n, flc_err_t *e)
{
    if (n <= cc->n)
        return FLC_OK;
    node_conn_t *v = realloc(cc->v, n * sizeof *v);
    if (v == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory for %zu node connections", n);
    memset(v + cc->n, 0, (n - cc->n) * sizeof *v);
    cc->v = v;
    cc->n = n;
    return FLC_OK;
}

void flc_cluster_conn_close(flc_cluster_conn_t *cc, unsigned node)
{
    if (cc == NULL || node >= cc->n || cc->v[node].c == NULL)
        return;
    redisFree(cc->v[node].c);
    cc->v[node].c = NULL;
}

int flc_cluster_conn_is_unix(const flc_cluster_conn_t *cc, unsigned node)
{
    return node < cc->n && cc->v[node].c && cc->v[node].c->connection_type == REDIS_CONN_UNIX;
}

int flc_cluster_conn_get(flc_cluster_conn_t *cc, const flc_cluster_map_t *m, unsigned node,
                         redisContext **out, flc_err_t *e)
{
    if (node >= m->nnodes)
        return flc_err_set(e, FLC_EINVAL, "cluster node %u: the map has %zu nodes", node,
                           m->nnodes);
    int rc = grow(cc, m->nnodes, e);
    if (rc != FLC_OK)
        return rc;
    const flc_cluster_node_t *nd = &m->nodes[node];
    node_conn_t *s = &cc->v[node];
    int same = s->port == nd->port && strcmp(s->host, nd->host) == 0;
    if (s->c && (s->c->err || !same))
        flc_cluster_conn_close(cc, node);
    if (s->c) {
        *out = s->c;
        return FLC_OK;
    }
    char name[300];
    snprintf(name, sizeof name, "cluster node %s:%d", nd->host, nd->port);
    uint64_t now = now_ms();
    if (same && s->failed_ms && now - s->failed_ms < cc->opts.reconnect_min_ms)
        return flc_err_set(e, FLC_ECONN, "%s: its connect failed %llu ms ago; next try in %llu ms",
                           name, (unsigned long long)(now - s->failed_ms),
                           (unsigned long long)(cc->opts.reconnect_min_ms - (now - s->failed_ms)));
    snprintf(s->host, sizeof s->host, "%s", nd->host);
    s->port = nd->port;
    const char *path = colocated_path(cc, nd->host, nd->port);
    if (path)
        snprintf(name + strlen(name), sizeof name - strlen(name), " (unix:%s)", path);
    rc = connect_to(cc, nd->host, nd->port, path, name, &s->c, e);
    s->failed_ms = rc == FLC_OK ? 0 : (now ? now : 1);
    if (rc == FLC_OK)
        *out = s->c;
    return rc;
}

int flc_cluster_conn_bootstrap(flc_cluster_conn_t *cc, flc_cluster_map_t *m, int *is_cluster,
                               flc_err_t *e)
{
    redisContext *c;
    int rc = flc_cluster_conn_seed(cc, &c, e);
    if (rc == FLC_OK)
        rc = flc_cluster_detect(c, is_cluster, e);
    if (rc != FLC_OK) {
        flc_cluster_conn_close_seed(cc);
        return rc;
    }
    if (!*is_cluster)
        return FLC_OK;
    if (cc->seed.db != 0)
        return flc_err_set(e, FLC_EINVAL, "%s is a Redis Cluster node: a cluster has only db 0",
                           cc->seed_text);
    int tcp = cc->seed.kind == FLC_URL_TCP;
    rc = flc_cluster_map_fetch(m, c, tcp ? cc->seed.host : NULL, e);
    if (rc != FLC_OK) {
        if (c->err)
            flc_cluster_conn_close_seed(cc);
        return flc_err_wrap(e, "cluster seed %s: ", cc->seed_text);
    }
    int i = tcp ? flc_cluster_map_find(m, cc->seed.host, cc->seed.port) : -1;
    if (i >= 0 && grow(cc, m->nnodes, NULL) == FLC_OK && cc->v[i].c == NULL) {
        /* The seed is node i: one connection to it, not two (over the unix
         * socket when it is the co-located node, as flc_cluster_conn_seed
         * made it). */
        cc->v[i].c = cc->seed_c;
        snprintf(cc->v[i].host, sizeof cc->v[i].host, "%s", m->nodes[i].host);
        cc->v[i].port = m->nodes[i].port;
        cc->seed_c = NULL;
    }
    return FLC_OK;
}

/* One refresh attempt from node i (or the seed when i < 0). */
static int refresh_from(flc_cluster_conn_t *cc, flc_cluster_map_t *m, int i, flc_err_t *e)
{
    redisContext *c;
    if (i < 0) {
        int rc = flc_cluster_conn_seed(cc, &c, e);
        if (rc != FLC_OK)
            return rc;
        rc = flc_cluster_map_fetch(m, c, cc->seed.kind == FLC_URL_TCP ? cc->seed.host : NULL, e);
        if (rc != FLC_OK && c->err)
            flc_cluster_conn_close_seed(cc);
        return rc;
    }
    int rc = flc_cluster_conn_get(cc, m, (unsigned)i, &c, e);
    if (rc != FLC_OK)
        return rc;
    /* The node's own host for NIL endpoints: a unix connection has none. */
    char host[256];
    snprintf(host, sizeof host, "%s", m->nodes[i].host);
    rc = flc_cluster_map_fetch(m, c, host, e);
    if (rc != FLC_OK && c->err)
        flc_cluster_conn_close(cc, (unsigned)i);
    return rc;
}

int flc_cluster_conn_refresh(flc_cluster_conn_t *cc, flc_cluster_map_t *m, int avoid, int force,
                             int *refreshed, flc_err_t *e)
{
    if (refreshed)
        *refreshed = 0;
    if (!flc_cluster_map_refresh_due(m, now_ms(), force))
        return FLC_OK;
    flc_err_t last = {FLC_ECONN, "no cluster node to ask"};
    /* The table can grow during a fetch; the nodes to try are fixed first. */
    size_t n = m->nnodes;
    int *order = malloc((n + 1) * sizeof *order);
    if (order == NULL)
        return flc_err_set(e, FLC_ENOMEM, "out of memory for a cluster refresh");
    size_t k = 0;
    for (int pass = 0; pass < 2; pass++) {
        flc_cluster_role_t want = pass == 0 ? FLC_CLUSTER_MASTER : FLC_CLUSTER_REPLICA;
        for (size_t i = 0; i < n; i++)
            if (m->nodes[i].role == want && (int)i != avoid)
                order[k++] = (int)i;
    }
    order[k++] = -1; /* the seed, last */
    int rc = FLC_ECONN;
    for (size_t j = 0; j < k; j++) {
        rc = refresh_from(cc, m, order[j], &last);
        if (rc == FLC_OK)
            break;
    }
    free(order);
    if (rc != FLC_OK)
        return flc_err_set(e, last.code,
                           "cluster map refresh: no node answered CLUSTER SLOTS "
                           "(last: %s)",
                           last.msg);
    if (refreshed)
        *refreshed = 1;
    return FLC_OK;
}
