/* cluster_map.c - the slot map of a Redis Cluster from CLUSTER SLOTS, the
 * reading of MOVED / ASK and the other cluster errors, the refresh rate
 * limit and cluster-mode detection (see cluster_map.h).
 *
 * A fetch parses into copies (node table, owner table) and swaps them in
 * only when the whole reply was understood, so a bad reply never leaves a
 * half-updated map behind. */
#include "cache/cluster_map.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/clock.h"

void flc_cluster_map_init(flc_cluster_map_t *m)
{
    memset(m, 0, sizeof *m);
    for (size_t s = 0; s < FLC_SLOT_COUNT; s++)
        m->owner[s] = FLC_CLUSTER_NO_NODE;
}

void flc_cluster_map_free(flc_cluster_map_t *m)
{
    if (m == NULL)
        return;
    free(m->nodes);
    unsigned min = m->refresh_min_ms;
    flc_cluster_map_init(m);
    m->refresh_min_ms = min;
}

int flc_cluster_map_find(const flc_cluster_map_t *m, const char *host, int port)
{
    for (size_t i = 0; i < m->nnodes; i++)
        if (m->nodes[i].port == port && strcmp(m->nodes[i].host, host) == 0)
            return (int)i;
    return -1;
}

unsigned flc_cluster_map_lookup(const flc_cluster_map_t *m, const char *key, size_t len)
{
    return m->owner[flc_slot_of(key, len)];
}

unsigned flc_cluster_map_covered(const flc_cluster_map_t *m)
{
    unsigned n = 0;
    for (size_t s = 0; s < FLC_SLOT_COUNT; s++)
        n += m->owner[s] != FLC_CLUSTER_NO_NODE;
    return n;
}

/* A node table being built: the map's nodes copied, grown as needed. */
typedef struct table {
    flc_cluster_node_t *v;
    size_t n, cap;
} table_t;

static int table_find_or_add(table_t *t, const char *host, int port, flc_err_t *e)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i].port == port && strcmp(t->v[i].host, host) == 0)
            return (int)i;
    if (strlen(host) >= sizeof t->v[0].host)
        return flc_err_set(e, FLC_EPROTO, "cluster node host '%.40s...' is too long", host);
    if (t->n >= FLC_CLUSTER_MAX_NODES)
        return flc_err_set(e, FLC_EPROTO, "cluster lists more than %u nodes",
                           FLC_CLUSTER_MAX_NODES);
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 8;
        flc_cluster_node_t *v = realloc(t->v, cap * sizeof *v);
        if (v == NULL)
            return flc_err_set(e, FLC_ENOMEM, "out of memory for %zu cluster nodes", cap);
        t->v = v;
        t->cap = cap;
    }
    flc_cluster_node_t *d = &t->v[t->n];
    memset(d, 0, sizeof *d);
    snprintf(d->host, sizeof d->host, "%s", host);
    d->port = port;
    d->master = -1;
    return (int)t->n++;
}

/* One node entry of a range: [endpoint, port, id?, metadata?]. Returns its
 * index in t, or -1: with *rc FLC_OK a node to skip ("?" or port 0), else
 * the error (FLC_EINVAL is -1 too, hence the separate *rc). */
static int parse_node(table_t *t, const redisReply *n, const char *asked_host, size_t range,
                      size_t k, int *rc, flc_err_t *e)
{
    *rc = FLC_OK;
    if (n->type != REDIS_REPLY_ARRAY || n->elements < 2 ||
        n->element[1]->type != REDIS_REPLY_INTEGER ||
        (n->element[0]->type != REDIS_REPLY_STRING && n->element[0]->type != REDIS_REPLY_NIL)) {
        *rc = flc_err_set(e, FLC_EPROTO,
                          "CLUSTER SLOTS range %zu node %zu: not [endpoint, port, ...]", range, k);
        return -1;
    }
    const redisReply *ep = n->element[0];
    long long port = n->element[1]->integer;
    const char *host = ep->type == REDIS_REPLY_STRING ? ep->str : "";
    if (strcmp(host, "?") == 0 || port == 0)
        return -1; /* the server says nobody can reach it: leave its slots unowned */
    if (port < 0 || port > 65535) {
        *rc = flc_err_set(e, FLC_EPROTO, "CLUSTER SLOTS range %zu node %zu: port %lld", range, k,
                          port);
        return -1;
    }
    if (host[0] == '\0') { /* NIL or "": the host we asked (cluster-slots docs) */
        if (asked_host == NULL || asked_host[0] == '\0') {
            *rc = flc_err_set(e, FLC_EPROTO,
                              "CLUSTER SLOTS range %zu node %zu announces no endpoint and the "
                              "host asked is unknown",
                              range, k);
            return -1;
        }
        host = asked_host;
    }
    int i = table_find_or_add(t, host, (int)port, e);
    if (i < 0) {
        *rc = i;
        return -1;
    }
    if (n->elements >= 3 && n->element[2]->type == REDIS_REPLY_STRING) {
        if (n->element[2]->len > 40) {
            *rc = flc_err_set(e, FLC_EPROTO, "CLUSTER SLOTS range %zu node %zu: id of %zu bytes",
                              range, k, n->element[2]->len);
            return -1;
        }
        snprintf(t->v[i].id, sizeof t->v[i].id, "%s", n->element[2]->str);
    }
    return i;
}

static int parse_ranges(table_t *t, uint16_t *owner, const redisReply *r, const char *asked_host,
                        flc_err_t *e)
{
    for (size_t j = 0; j < r->elements; j++) {
        const redisReply *g = r->element[j];
        if (g->type != REDIS_REPLY_ARRAY || g->elements < 3 ||
            g->element[0]->type != REDIS_REPLY_INTEGER ||
            g->element[1]->type != REDIS_REPLY_INTEGER)
            return flc_err_set(e, FLC_EPROTO,
                               "CLUSTER SLOTS range %zu: not [start, end, master, ...]", j);
        long long lo = g->element[0]->integer, hi = g->element[1]->integer;
        if (lo < 0 || hi < lo || hi >= FLC_SLOT_COUNT)
            return flc_err_set(e, FLC_EPROTO, "CLUSTER SLOTS range %zu: slots %lld-%lld", j, lo,
                               hi);
        int rc;
        int mi = parse_node(t, g->element[2], asked_host, j, 0, &rc, e);
        if (rc != FLC_OK)
            return rc;
        if (mi < 0)
            continue; /* unreachable master: the range stays unowned */
        t->v[mi].role = FLC_CLUSTER_MASTER;
        t->v[mi].master = -1;
        for (long long s = lo; s <= hi; s++)
            owner[s] = (uint16_t)mi;
        for (size_t k = 3; k < g->elements; k++) {
            int ri = parse_node(t, g->element[k], asked_host, j, k - 2, &rc, e);
            if (rc != FLC_OK)
                return rc;
            if (ri < 0 || ri == mi)
                continue;
            /* A master with several ranges lists its replicas in each: count once. */
            if (t->v[ri].role == FLC_CLUSTER_REPLICA && t->v[ri].master == mi)
                continue;
            t->v[ri].role = FLC_CLUSTER_REPLICA;
            t->v[ri].master = mi;
            t->v[mi].nreplicas++;
        }
    }
    return FLC_OK;
}

int flc_cluster_map_parse(flc_cluster_map_t *m, const redisReply *r, const char *asked_host,
                          flc_err_t *e)
{
    if (r == NULL || r->type != REDIS_REPLY_ARRAY)
        return flc_cluster_reply_error(r, asked_host ? asked_host : "seed", "CLUSTER SLOTS", e);
    if (r->elements == 0)
        return flc_err_set(e, FLC_ENOTFOUND,
                           "CLUSTER SLOTS on %s: no slots assigned yet (ask another node)",
                           asked_host ? asked_host : "the seed");
    table_t t = {NULL, 0, 0};
    uint16_t *owner = malloc(sizeof m->owner);
    if (m->nnodes) {
        t.v = malloc(m->nnodes * sizeof *t.v);
        t.n = t.cap = t.v ? m->nnodes : 0;
    }
    if (owner == NULL || (m->nnodes && t.v == NULL)) {
        free(owner);
        free(t.v);
        return flc_err_set(e, FLC_ENOMEM, "out of memory for the slot map");
    }
    if (m->nnodes)
        memcpy(t.v, m->nodes, m->nnodes * sizeof *t.v);
    for (size_t i = 0; i < t.n; i++) { /* what the reply does not list is gone */
        t.v[i].role = FLC_CLUSTER_GONE;
        t.v[i].master = -1;
        t.v[i].nreplicas = 0;
        t.v[i].nslots = 0;
    }
    for (size_t s = 0; s < FLC_SLOT_COUNT; s++)
        owner[s] = FLC_CLUSTER_NO_NODE;
    int rc = parse_ranges(&t, owner, r, asked_host, e);
    if (rc != FLC_OK) {
        free(owner);
        free(t.v);
        return rc;
    }
    int moved = 0; /* a slot that had an owner now has another (or none) */
    for (size_t s = 0; s < FLC_SLOT_COUNT; s++) {
        if (owner[s] != FLC_CLUSTER_NO_NODE)
            t.v[owner[s]].nslots++;
        moved |= m->owner[s] != FLC_CLUSTER_NO_NODE && owner[s] != m->owner[s];
    }
    m->owner_changes += (uint64_t)moved;
    free(m->nodes);
    m->nodes = t.v;
    m->nnodes = t.n;
    m->cap = t.cap;
    memcpy(m->owner, owner, sizeof m->owner);
    free(owner);
    m->version++;
    m->refresh_pending = 0;
    return FLC_OK;
}

int flc_cluster_map_fetch(flc_cluster_map_t *m, redisContext *c, const char *asked_host,
                          flc_err_t *e)
{
    m->fetched_ms = flc_now_ns() / 1000000u;
    if (asked_host == NULL && c->connection_type == REDIS_CONN_TCP)
        asked_host = c->tcp.host;
    char where[300];
    if (c->connection_type == REDIS_CONN_UNIX)
        snprintf(where, sizeof where, "unix:%s", c->unix_sock.path);
    else
        snprintf(where, sizeof where, "%s:%d", c->tcp.host, c->tcp.port);
    redisReply *r = redisCommand(c, "CLUSTER SLOTS");
    if (r == NULL)
        return flc_cluster_io_error(c, where, "CLUSTER SLOTS", e);
    int rc = r->type == REDIS_REPLY_ARRAY ? flc_cluster_map_parse(m, r, asked_host, e)
                                          : flc_cluster_reply_error(r, where, "CLUSTER SLOTS", e);
    freeReplyObject(r);
    return rc;
}

/* ---- redirects ---------------------------------------------------------- */

static int parse_uint(const char *p, size_t n, long max, long *out)
{
    long v = 0;
    if (n == 0 || n > 6)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return -1;
        v = v * 10 + (p[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

int flc_cluster_redirect_parse(const char *msg, size_t len, flc_cluster_reply_t *kind,
                               flc_cluster_redirect_t *rd, flc_err_t *e)
{
    flc_cluster_reply_t k;
    size_t at;
    if (len > 6 && memcmp(msg, "MOVED ", 6) == 0)
        k = FLC_CLUSTER_R_MOVED, at = 6;
    else if (len > 4 && memcmp(msg, "ASK ", 4) == 0)
        k = FLC_CLUSTER_R_ASK, at = 4;
    else
        return flc_err_set(e, FLC_EPROTO, "'%.*s' is not a MOVED or ASK redirect",
                           (int)(len > 80 ? 80 : len), msg);
    const char *p = msg + at, *end = msg + len;
    const char *sp = memchr(p, ' ', (size_t)(end - p));
    const char *colon = NULL;
    for (const char *q = end; sp && q > sp + 1; q--)
        if (q[-1] == ':') {
            colon = q - 1;
            break;
        }
    long slot, port;
    if (sp == NULL || colon == NULL || parse_uint(p, (size_t)(sp - p), FLC_SLOT_COUNT - 1, &slot) ||
        parse_uint(colon + 1, (size_t)(end - colon - 1), 65535, &port) || port == 0)
        return flc_err_set(
            e, FLC_EPROTO, "malformed redirect '%.*s' (want %s <slot> <host>:<port>)",
            (int)(len > 120 ? 120 : len), msg, k == FLC_CLUSTER_R_MOVED ? "MOVED" : "ASK");
    const char *h = sp + 1;
    size_t hl = (size_t)(colon - h);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') /* [::1]:6379 */
        h++, hl -= 2;
    if (hl >= sizeof rd->host || memchr(h, ' ', hl))
        return flc_err_set(e, FLC_EPROTO, "malformed redirect '%.*s': bad host",
                           (int)(len > 120 ? 120 : len), msg);
    rd->slot = (uint16_t)slot;
    memcpy(rd->host, h, hl);
    rd->host[hl] = '\0';
    rd->port = (int)port;
    if (kind)
        *kind = k;
    return FLC_OK;
}

static int first_word_is(const char *msg, size_t len, const char *w)
{
    size_t n = strlen(w);
    return len >= n && memcmp(msg, w, n) == 0 && (len == n || msg[n] == ' ');
}

flc_cluster_reply_t flc_cluster_classify_msg(const char *msg, size_t len,
                                             flc_cluster_redirect_t *rd)
{
    if (first_word_is(msg, len, "MOVED") || first_word_is(msg, len, "ASK")) {
        flc_cluster_redirect_t tmp;
        flc_cluster_reply_t k;
        if (flc_cluster_redirect_parse(msg, len, &k, rd ? rd : &tmp, NULL) != FLC_OK)
            return FLC_CLUSTER_R_OTHER;
        return k;
    }
    static const struct {
        const char *word;
        flc_cluster_reply_t kind;
    } words[] = {{"TRYAGAIN", FLC_CLUSTER_R_TRYAGAIN},
                 {"CLUSTERDOWN", FLC_CLUSTER_R_CLUSTERDOWN},
                 {"CROSSSLOT", FLC_CLUSTER_R_CROSSSLOT},
                 {"UNBLOCKED", FLC_CLUSTER_R_UNBLOCKED}};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (first_word_is(msg, len, words[i].word))
            return words[i].kind;
    return FLC_CLUSTER_R_OTHER;
}

flc_cluster_reply_t flc_cluster_classify(const redisReply *r, flc_cluster_redirect_t *rd)
{
    if (r == NULL)
        return FLC_CLUSTER_R_IOERR;
    if (r->type != REDIS_REPLY_ERROR)
        return FLC_CLUSTER_R_OK;
    return flc_cluster_classify_msg(r->str, r->len, rd);
}

const char *flc_cluster_reply_name(flc_cluster_reply_t k)
{
    static const char *names[] = {"OK",        "MOVED",     "ASK",   "TRYAGAIN", "CLUSTERDOWN",
                                  "CROSSSLOT", "UNBLOCKED", "IOERR", "OTHER"};
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

int flc_cluster_map_node_for(flc_cluster_map_t *m, const flc_cluster_redirect_t *rd,
                             const char *asked_host, flc_err_t *e)
{
    const char *host = rd->host[0] ? rd->host : asked_host;
    if (host == NULL || host[0] == '\0')
        return flc_err_set(e, FLC_EINVAL,
                           "redirect of slot %u to port %d names no host and the host asked is "
                           "unknown",
                           rd->slot, rd->port);
    table_t t = {m->nodes, m->nnodes, m->cap};
    int i = table_find_or_add(&t, host, rd->port, e);
    m->nodes = t.v;
    m->nnodes = t.n;
    m->cap = t.cap;
    if (i >= 0 && m->nodes[i].role != FLC_CLUSTER_MASTER) {
        /* Redirects point at masters; a replica named here was just promoted. */
        if (m->nodes[i].role == FLC_CLUSTER_REPLICA && m->nodes[i].master >= 0)
            m->nodes[m->nodes[i].master].nreplicas--;
        m->nodes[i].role = FLC_CLUSTER_MASTER;
        m->nodes[i].master = -1;
    }
    return i;
}

int flc_cluster_map_apply_moved(flc_cluster_map_t *m, const flc_cluster_redirect_t *rd,
                                const char *asked_host, flc_err_t *e)
{
    if (rd->slot >= FLC_SLOT_COUNT)
        return flc_err_set(e, FLC_EINVAL, "MOVED of slot %u: no such slot", rd->slot);
    int i = flc_cluster_map_node_for(m, rd, asked_host, e);
    if (i < 0)
        return i;
    unsigned old = m->owner[rd->slot];
    if (old != (unsigned)i) {
        if (old != FLC_CLUSTER_NO_NODE) {
            m->nodes[old].nslots--;
            m->owner_changes++;
        }
        m->nodes[i].nslots++;
        m->owner[rd->slot] = (uint16_t)i;
    }
    m->version++;
    m->refresh_pending = 1;
    return i;
}

/* ---- errors, refresh policy, mode --------------------------------------- */

int flc_cluster_io_error(const redisContext *c, const char *node, const char *what, flc_err_t *e)
{
    int saved = errno;
    if (c == NULL)
        return flc_err_set(e, FLC_ECONN, "%s: %s: no connection", node, what);
    int code = FLC_ECONN;
    const char *detail = c->errstr[0] ? c->errstr : "connection lost";
    if (c->err == REDIS_ERR_IO &&
        (saved == EAGAIN || saved == EWOULDBLOCK || strstr(c->errstr, "temporarily unavailable")))
        code = FLC_ETIMEOUT, detail = "no answer within the I/O timeout";
    else if (c->err == REDIS_ERR_PROTOCOL)
        code = FLC_EPROTO;
    else if (c->err == REDIS_ERR_OOM)
        code = FLC_ENOMEM;
    return flc_err_set(e, code, "%s: %s: %s", node, what, detail);
}

int flc_cluster_reply_error(const redisReply *r, const char *node, const char *what, flc_err_t *e)
{
    if (r == NULL)
        return flc_err_set(e, FLC_EPROTO, "%s: %s: no reply", node, what);
    if (r->type != REDIS_REPLY_ERROR)
        return flc_err_set(e, FLC_EPROTO, "%s: %s: unexpected reply type %d", node, what, r->type);
    int code = FLC_EPROTO;
    if (strncmp(r->str, "NOAUTH", 6) == 0 || strncmp(r->str, "WRONGPASS", 9) == 0 ||
        strncmp(r->str, "NOPERM", 6) == 0)
        code = FLC_EAUTH;
    else if (strstr(r->str, "cluster support disabled"))
        code = FLC_EINVAL;
    else if (strncmp(r->str, "OOM", 3) == 0)
        code = FLC_ENOMEM;
    return flc_err_set(e, code, "%s: %s: %s", node, what, r->str);
}

int flc_cluster_map_refresh_due(const flc_cluster_map_t *m, uint64_t now_ms, int force)
{
    uint64_t min = m->refresh_min_ms ? m->refresh_min_ms : FLC_CLUSTER_REFRESH_MIN_MS;
    return force || m->fetched_ms == 0 || now_ms < m->fetched_ms || now_ms - m->fetched_ms >= min;
}

int flc_cluster_detect(redisContext *c, int *is_cluster, flc_err_t *e)
{
    char where[300];
    if (c->connection_type == REDIS_CONN_UNIX)
        snprintf(where, sizeof where, "unix:%s", c->unix_sock.path);
    else
        snprintf(where, sizeof where, "%s:%d", c->tcp.host, c->tcp.port);
    redisReply *r = redisCommand(c, "INFO cluster");
    if (r == NULL)
        return flc_cluster_io_error(c, where, "INFO cluster", e);
    const char *p = r->type == REDIS_REPLY_STRING ? strstr(r->str, "cluster_enabled:") : NULL;
    if (p && (p[16] == '0' || p[16] == '1')) {
        *is_cluster = p[16] == '1';
        freeReplyObject(r);
        return FLC_OK;
    }
    int rc = r->type == REDIS_REPLY_ERROR ? flc_cluster_reply_error(r, where, "INFO cluster", e)
                                          : FLC_OK;
    freeReplyObject(r);
    if (rc == FLC_EAUTH)
        return rc;
    /* INFO renamed or not allowed: a non-cluster server refuses CLUSTER INFO. */
    r = redisCommand(c, "CLUSTER INFO");
    if (r == NULL)
        return flc_cluster_io_error(c, where, "CLUSTER INFO", e);
    rc = FLC_OK;
    if (r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:"))
        *is_cluster = 1;
    else if (r->type == REDIS_REPLY_ERROR && strstr(r->str, "cluster support disabled"))
        *is_cluster = 0;
    else
        rc = r->type == REDIS_REPLY_ERROR
                 ? flc_cluster_reply_error(r, where, "CLUSTER INFO", e)
                 : flc_err_set(e, FLC_EPROTO,
                               "%s: neither INFO cluster nor CLUSTER INFO says "
                               "whether it is a cluster node",
                               where);
    freeReplyObject(r);
    return rc;
}
