/* store_cluster.c - the store's routing on a Redis Cluster (store_cluster.h).
 *
 * One queue of commands whose replies are still to read, each remembered as
 * its RESP text with the node and connection it went to. Commands are
 * appended to their node's hiredis output buffer as they come, so a
 * pipeline of many hash tags becomes one pipeline per node, flushed
 * together, and its replies are read back in submission order.
 *
 * Commands are routed here; their replies and redirects are read in
 * store_cluster_read.c; what goes to every master (whole-server commands,
 * the wake of a blocked store) is in store_cluster_all.c.
 *
 * A connection error closes the connections with replies in flight (their
 * streams are out of step), marks the map for a refresh, and fails the
 * operation as on one node; the next operation reconnects. When a node
 * cannot be connected to at routing time, the map is refreshed from another
 * node and the routing retried with backoff until the deadline (nothing was
 * sent yet, so that retry is always safe). */
#include "cache/store_cluster.h"

#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "base/clock.h"
#include "cache/slot.h"
#include "cache/store_cluster_internal.h"

uint64_t flc_store_cl_now_ms(void)
{
    return flc_now_ns() / 1000000u;
}

struct timeval flc_store_cl_tv(unsigned ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (long)(ms % 1000) * 1000};
    return tv;
}

int flc_store_is_cluster(const flc_store_t *s)
{
    return s->cl != NULL;
}

/* ---- start and end --------------------------------------------------------- */

int flc_store_cl_start(flc_store_t *s, int *is_cluster)
{
    *is_cluster = 0;
    flc_store_cluster_t *cl = calloc(1, sizeof *cl);
    if (cl == NULL)
        return flc_err_set(&s->err, FLC_ENOMEM, "out of memory");
    flc_cluster_map_init(&cl->map);
    cl->cur = FLC_CLUSTER_NO_NODE;
    cl->token = -1;
    flc_cluster_conn_opts_t co = {.connect_timeout_ms = s->opts.connect_timeout_ms,
                                  .io_timeout_ms = s->opts.io_timeout_ms,
                                  .local_node = s->opts.local_node,
                                  .local_sock = s->opts.local_sock};
    cl->cc = flc_cluster_conn_new(&s->url, &co, &s->err);
    int rc = cl->cc ? flc_cluster_conn_bootstrap(cl->cc, &cl->map, is_cluster, &s->err)
                    : s->err.code;
    if (rc == FLC_OK && !*is_cluster && s->url.cluster == FLC_URL_CLUSTER_YES)
        rc = flc_err_set(&s->err, FLC_EINVAL, "%s: the URL says cluster=yes, but the server "
                         "is not a cluster node (INFO cluster: cluster_enabled:0)",
                         s->url_text);
    if (rc == FLC_OK && *is_cluster) {
        flc_cluster_conn_close_seed(cl->cc); /* routing uses the node connections */
        s->cl = cl;
        return FLC_OK;
    }
    flc_cluster_conn_free(cl->cc);
    flc_cluster_map_free(&cl->map);
    free(cl);
    return rc;
}

static void queue_clear(flc_store_cluster_t *cl)
{
    for (size_t i = 0; i < cl->n; i++) { /* answered ones keep their text too */
        flc_store_cl_pend_free(&cl->q[i]);
        if (i >= cl->head && cl->q[i].stash)
            freeReplyObject(cl->q[i].stash);
    }
    cl->head = cl->n = 0;
    cl->batch++;
    free(cl->multi);
    cl->multi = NULL;
    cl->in_tx = 0;
}

void flc_store_cl_free(flc_store_t *s)
{
    flc_store_cluster_t *cl = s->cl;
    if (cl == NULL)
        return;
    queue_clear(cl);
    free(cl->q);
    free(cl->named);
    free(cl->probed);
    free(cl->written);
    flc_cluster_conn_free(cl->cc);
    flc_cluster_map_free(&cl->map);
    free(cl);
    s->cl = NULL;
    s->c = NULL; /* it was one of the table's connections */
}

void flc_store_cl_close_node(flc_store_cluster_t *cl, unsigned node)
{
    flc_cluster_conn_close(cl->cc, node);
    if (node < cl->nnamed)
        cl->named[node] = NULL;
}

size_t flc_store_cl_forget_due(flc_store_t *s)
{
    flc_store_cluster_t *cl = s->cl;
    size_t due = cl->n - cl->head;
    if (due == 0)
        return 0;
    /* Their connections would hand those replies to the next commands:
     * closed (remade on next use), not read, since a node may be dead. */
    for (size_t i = cl->head; i < cl->n; i++)
        flc_store_cl_close_node(cl, cl->q[i].node);
    queue_clear(cl);
    s->c = NULL;
    cl->cur = FLC_CLUSTER_NO_NODE;
    return due;
}

void flc_store_cl_drop(flc_store_t *s)
{
    flc_store_cluster_t *cl = s->cl;
    for (size_t i = cl->head; i < cl->n; i++)
        flc_store_cl_close_node(cl, cl->q[i].node);
    if (cl->cur != FLC_CLUSTER_NO_NODE)
        flc_store_cl_close_node(cl, cl->cur);
    queue_clear(cl);
    cl->map.refresh_pending = 1;
    cl->lost++; /* a node connection lost: flc_store_failovers */
    s->c = NULL;
}

/* ---- reading a command's name and key from its RESP text -------------- */

/* Up to max arguments of a formatted command into a[] / al[]; the count of
 * arguments the command has (0 when the text does not parse). */
int flc_store_cl_args(const char *p, size_t len, const char **a, size_t *al, int max)
{
    const char *end = p + len;
    if (len < 4 || *p != '*')
        return 0;
    int argc = atoi(p + 1);
    p = memchr(p, '\n', len);
    for (int i = 0; p && i < argc && i < max; i++) {
        p++;
        if (p >= end || *p != '$')
            return 0;
        size_t l = strtoul(p + 1, NULL, 10);
        p = memchr(p, '\n', (size_t)(end - p));
        if (p == NULL || (size_t)(end - p - 1) < l + 2)
            return 0;
        a[i] = p + 1;
        al[i] = l;
        p = p + 1 + l + 1; /* at the '\n' of the argument's "\r\n" */
    }
    return p ? argc : 0;
}

static int is_cmd(const char *a, size_t al, const char *name)
{
    return al == strlen(name) && strncasecmp(a, name, al) == 0;
}

enum { K_KEYED, K_KEYLESS, K_MULTI };

/* Which key routes the command: argv[1] for all the store uses, but for
 * the few it sends that have none or have it elsewhere. */
static int key_of(const char *cmd, size_t len, const char **key, size_t *klen)
{
    const char *a[4] = {0};
    size_t al[4] = {0};
    int argc = flc_store_cl_args(cmd, len, a, al, 4);
    if (argc < 1)
        return K_KEYLESS;
    static const char *const keyless[] = {
        "PING",   "CLIENT",  "INFO",      "DBSIZE", "CONFIG",   "EXEC",   "DISCARD", "UNWATCH",
        "SCRIPT", "FLUSHDB", "FLUSHALL",  "SCAN",   "KEYS",     "TIME",   "ASKING",  "WAIT",
        "SELECT", "AUTH",    "CLUSTER",   "LATENCY", "SLOWLOG", "COMMAND", "ECHO",   "RANDOMKEY",
        "ROLE",   "HELLO",   "READONLY",  "READWRITE", "DEBUG", "FUNCTION", "LASTSAVE", "SAVE",
        "BGSAVE", "MEMORY"};
    if (is_cmd(a[0], al[0], "MULTI"))
        return K_MULTI;
    if (is_cmd(a[0], al[0], "MEMORY") || is_cmd(a[0], al[0], "OBJECT")) {
        if (argc >= 3 && !is_cmd(a[1], al[1], "STATS") && !is_cmd(a[1], al[1], "DOCTOR")) {
            *key = a[2], *klen = al[2];
            return K_KEYED;
        }
        return K_KEYLESS;
    }
    for (size_t i = 0; i < sizeof keyless / sizeof *keyless; i++)
        if (is_cmd(a[0], al[0], keyless[i]))
            return K_KEYLESS;
    if (is_cmd(a[0], al[0], "EVAL") || is_cmd(a[0], al[0], "EVALSHA") ||
        is_cmd(a[0], al[0], "EVAL_RO") || is_cmd(a[0], al[0], "FCALL")) {
        if (argc >= 4 && atoi(a[2]) > 0) {
            *key = a[3], *klen = al[3];
            return K_KEYED;
        }
        return K_KEYLESS;
    }
    if (argc < 2)
        return K_KEYLESS;
    *key = a[1], *klen = al[1];
    return K_KEYED;
}

int flc_store_cl_idempotent(const char *cmd, size_t len)
{
    static const char *const same_twice[] = {
        "GET",    "GETRANGE", "HGET",   "HGETALL", "HKEYS",  "HVALS",  "HLEN",   "EXISTS",
        "SMEMBERS", "ZRANGE", "ZCARD",  "LRANGE",  "DBSIZE", "INFO",   "PING",   "MEMORY",
        "SET",    "PSETEX",   "HSET",   "DEL",     "UNLINK", "SADD",   "SREM",   "ZADD",
        "ZREM",   "PEXPIRE",  "PERSIST", "CONFIG", "SISMEMBER", "SCARD", "HEXISTS", "LLEN",
        "EVAL_RO", /* a read-only script reads the same twice */
        /* A blocking pop cut by a lost connection popped nothing, or its
         * element went with the dead node's reply: sending it again to the
         * new owner is what its caller wants either way (a token lost in
         * flight is the merger's to recover: aggregator/rs_recover.c). */
        "BLPOP"};
    const char *a[8] = {0};
    size_t al[8] = {0};
    int argc = flc_store_cl_args(cmd, len, a, al, 8);
    if (argc < 1)
        return 0;
    if (is_cmd(a[0], al[0], "SET")) /* SET NX (a lock), XX, GET answer by what was there */
        for (int i = 3; i < argc && i < 8; i++)
            if (is_cmd(a[i], al[i], "NX") || is_cmd(a[i], al[i], "XX") ||
                is_cmd(a[i], al[i], "GET"))
                return 0;
    if (is_cmd(a[0], al[0], "CLIENT")) /* LIST and ID; not UNBLOCK, KILL */
        return argc >= 2 && (is_cmd(a[1], al[1], "LIST") || is_cmd(a[1], al[1], "ID"));
    for (size_t i = 0; i < sizeof same_twice / sizeof *same_twice; i++)
        if (is_cmd(a[0], al[0], same_twice[i]))
            return 1;
    return 0;
}

/* ---- routing ---------------------------------------------------------------- */

static int has_pending_on(const flc_store_cluster_t *cl, unsigned node)
{
    for (size_t i = cl->head; i < cl->n; i++)
        if (cl->q[i].node == node)
            return 1;
    return 0;
}

/* Names a connection made after flc_store_conn_id (a wake must find it). */
static void name_conn(flc_store_cluster_t *cl, unsigned node, redisContext *c)
{
    if (cl->token < 0 || (node < cl->nnamed && cl->named[node] == c) || has_pending_on(cl, node))
        return;
    if (node >= cl->nnamed) {
        redisContext **v = realloc(cl->named, (node + 1) * sizeof *v);
        if (v == NULL)
            return;
        memset(v + cl->nnamed, 0, (node + 1 - cl->nnamed) * sizeof *v);
        cl->named = v, cl->nnamed = node + 1;
    }
    redisReply *r = redisCommand(c, "CLIENT SETNAME flc-w-%lld", cl->token);
    if (r != NULL && r->type != REDIS_REPLY_ERROR)
        cl->named[node] = c;
    if (r != NULL)
        freeReplyObject(r);
}

void flc_store_cl_backoff(unsigned *ms, unsigned first, unsigned cap)
{
    *ms = *ms == 0 ? first : (*ms * 2 > cap ? cap : *ms * 2);
    flc_sleep_ms(*ms);
}

/* The connection of node, made now if needed; on failure the map is
 * refreshed from another node (the caller looks the owner up again). */
int flc_store_cl_conn(flc_store_t *s, unsigned node, redisContext **c)
{
    flc_store_cluster_t *cl = s->cl;
    int rc = flc_cluster_conn_get(cl->cc, &cl->map, node, c, &s->err);
    if (rc == FLC_OK && flc_store_cl_stale(s, node, *c)) {
        /* Its server closed it (a killed master): remade before anything
         * is sent on it, so the batch fails over like a refused connect. */
        flc_store_cl_close_node(cl, node);
        cl->map.refresh_pending = 1;
        rc = flc_cluster_conn_get(cl->cc, &cl->map, node, c, &s->err);
    }
    if (rc == FLC_OK) {
        (*c)->reader->maxbuf = 0; /* as the single-node connection (store_conn.c) */
        name_conn(cl, node, *c);
        return FLC_OK;
    }
    cl->lost++;
    /* With replies due, the refresh (CLUSTER SLOTS on some node's
     * connection) would read one of them: they are read aside first, so a
     * batch routed while its node is down still follows the failover. */
    if (cl->head == cl->n || cl->busy || flc_store_cl_stash_all(cl) == FLC_OK) {
        flc_err_t e2;
        flc_cluster_conn_refresh(cl->cc, &cl->map, (int)node, 1, NULL, &e2);
    } else {
        cl->map.refresh_pending = 1;
    }
    return rc;
}

/* The node owning slot and its connection, retrying (nothing sent yet)
 * until the deadline while no node serves the slot or its owner cannot be
 * reached. */
static int route_slot(flc_store_t *s, uint16_t slot, unsigned *node, redisContext **c)
{
    flc_store_cluster_t *cl = s->cl;
    uint64_t t0 = flc_store_cl_now_ms();
    unsigned wait = 0;
    for (;;) {
        unsigned nd = flc_cluster_map_owner(&cl->map, slot);
        int rc;
        if (nd != FLC_CLUSTER_NO_NODE) {
            rc = flc_store_cl_conn(s, nd, c);
            if (rc == FLC_OK) {
                *node = nd;
                return FLC_OK;
            }
        } else {
            rc = flc_err_set(&s->err, FLC_ECONN, "%s: no node serves slot %u", s->url_text,
                             slot);
            if (cl->head == cl->n || cl->busy || flc_store_cl_stash_all(cl) == FLC_OK) {
                flc_err_t e2;
                flc_cluster_conn_refresh(cl->cc, &cl->map, -1, 1, NULL, &e2);
            }
        }
        if (flc_store_cl_now_ms() - t0 > CL_DEADLINE_MS)
            return flc_err_wrap(&s->err, "slot %u, after %u ms: ", slot, CL_DEADLINE_MS);
        flc_store_cl_backoff(&wait, 50, 250);
    }
}

int flc_store_cl_use_node(flc_store_t *s, unsigned node)
{
    redisContext *c;
    int rc = flc_store_cl_conn(s, node, &c);
    if (rc != FLC_OK)
        return rc;
    s->cl->cur = node;
    s->c = c;
    return FLC_OK;
}

int flc_store_cl_route_key(flc_store_t *s, const char *key)
{
    unsigned node;
    redisContext *c;
    int rc = route_slot(s, flc_slot_of(key, strlen(key)), &node, &c);
    if (rc != FLC_OK)
        return rc;
    s->cl->cur = node;
    s->c = c;
    return FLC_OK;
}

int flc_store_cl_masters(flc_store_t *s, unsigned *nodes, size_t cap, size_t *n)
{
    flc_store_cluster_t *cl = s->cl;
    *n = 0;
    for (size_t i = 0; i < cl->map.nnodes && *n < cap; i++)
        if (cl->map.nodes[i].role == FLC_CLUSTER_MASTER && cl->map.nodes[i].nslots > 0)
            nodes[(*n)++] = (unsigned)i;
    return *n ? FLC_OK
              : flc_err_set(&s->err, FLC_ECONN, "%s: the cluster map has no master with slots",
                            s->url_text);
}

int flc_store_cl_ensure(flc_store_t *s)
{
    flc_store_cluster_t *cl = s->cl;
    if (cl->head == cl->n && cl->map.refresh_pending) {
        flc_err_t e2; /* a failed refresh keeps the old map: routing still tries */
        flc_cluster_conn_refresh(cl->cc, &cl->map, -1, 0, NULL, &e2);
    }
    if (cl->cur != FLC_CLUSTER_NO_NODE && cl->map.nodes[cl->cur].role == FLC_CLUSTER_MASTER &&
        flc_store_cl_use_node(s, cl->cur) == FLC_OK)
        return FLC_OK;
    unsigned m[64];
    size_t n = 0;
    int rc = flc_store_cl_masters(s, m, 64, &n);
    for (size_t i = 0; i < n; i++)
        if ((rc = flc_store_cl_use_node(s, m[i])) == FLC_OK)
            return FLC_OK;
    return rc;
}

/* ---- the queue -------------------------------------------------------------- */

void flc_store_cl_pend_free(pend_t *p)
{
    free(p->cmd);
    free(p->body);
    p->cmd = NULL;
    p->body = NULL;
    p->nbody = 0;
}

int flc_store_cl_pend_idempotent(const pend_t *p)
{
    return p->body ? p->body_idem : flc_store_cl_idempotent(p->cmd, p->len);
}

int flc_store_cl_append_pend(redisContext *c, const pend_t *p)
{
    if (p->body == NULL)
        return redisAppendFormattedCommand(c, p->cmd, p->len);
    /* A resend (redirect, failover): rare, so the borrowed bytes are
     * copied here rather than kept. */
    size_t len = p->len;
    for (int i = 0; i < p->nbody; i++)
        len += p->body[i].iov_len;
    char *text = malloc(len), *o = text;
    if (text == NULL)
        return REDIS_ERR;
    memcpy(o, p->cmd, p->len), o += p->len;
    for (int i = 0; i < p->nbody; i++)
        memcpy(o, p->body[i].iov_base, p->body[i].iov_len), o += p->body[i].iov_len;
    int rc = redisAppendFormattedCommand(c, text, len);
    free(text);
    return rc;
}

/* Queues *p (its text and body taken over: freed on failure too), and
 * appends its command to p->ctx's output when append. */
static int enqueue_pend(flc_store_t *s, pend_t p, int append)
{
    flc_store_cluster_t *cl = s->cl;
    if (cl->n == cl->cap) {
        size_t cap = cl->cap ? cl->cap * 2 : 64;
        pend_t *q = realloc(cl->q, cap * sizeof *q);
        if (q == NULL) {
            flc_store_cl_pend_free(&p);
            return flc_err_set(&s->err, FLC_ENOMEM, "out of memory queueing a command");
        }
        cl->q = q, cl->cap = cap;
    }
    if (append && redisAppendFormattedCommand(p.ctx, p.cmd, p.len) != REDIS_OK) {
        flc_store_cl_pend_free(&p);
        s->c = p.ctx;
        return flc_store_io_error(s, "queueing a command");
    }
    p.in_tx = cl->in_tx;
    cl->q[cl->n++] = p;
    return FLC_OK;
}

static int enqueue(flc_store_t *s, char *cmd, size_t len, unsigned node, redisContext *c,
                   uint16_t slot, int keyed)
{
    return enqueue_pend(
        s, (pend_t){.cmd = cmd, .len = len, .node = node, .ctx = c, .slot = slot, .keyed = keyed},
        1);
}

int flc_store_cl_push(flc_store_t *s, char *cmd, size_t len)
{
    flc_store_cluster_t *cl = s->cl;
    const char *key = NULL;
    size_t klen = 0;
    int kind = key_of(cmd, len, &key, &klen);
    if (kind == K_MULTI) {
        /* Its node is the node of the transaction's first key. */
        free(cl->multi);
        cl->multi = cmd, cl->multi_len = len;
        return FLC_OK;
    }
    unsigned node;
    redisContext *c;
    uint16_t slot = 0;
    int rc;
    if (kind == K_KEYED) {
        slot = flc_slot_of(key, klen);
        rc = route_slot(s, slot, &node, &c);
    } else {
        rc = cl->cur == FLC_CLUSTER_NO_NODE ? flc_store_cl_ensure(s) : FLC_OK;
        node = cl->cur;
        if (rc == FLC_OK)
            rc = flc_store_cl_conn(s, node, &c);
    }
    if (rc != FLC_OK) {
        free(cmd);
        /* The batch cannot be completed: what it queued already would
         * leave replies due behind the error, and the next operation
         * would read them as its own. Start clean (as after a lost
         * connection); the caller reports rc. */
        if (cl->head < cl->n) {
            flc_err_t keep = s->err;
            flc_store_cl_drop(s);
            s->err = keep;
        }
        return rc;
    }
    if (cl->block_ms) /* a BLPOP: its connection must outwait it (store_notify.c) */
        redisSetTimeout(c, flc_store_cl_tv(cl->block_ms));
    if (cl->multi) {
        char *m = cl->multi;
        cl->multi = NULL;
        cl->in_tx = 1;
        if ((rc = enqueue(s, m, cl->multi_len, node, c, slot, kind == K_KEYED)) != FLC_OK) {
            free(cmd);
            return rc;
        }
    }
    const char *a[1] = {0};
    size_t al[1] = {0};
    flc_store_cl_args(cmd, len, a, al, 1);
    int ends_tx = is_cmd(a[0], al[0], "EXEC") || is_cmd(a[0], al[0], "DISCARD");
    if (kind == K_KEYED && !flc_store_cl_reads_only(a[0], al[0]))
        flc_store_cl_mark_written(s, node); /* flc_store_replicated waits for it */
    rc = enqueue(s, cmd, len, node, c, slot, kind == K_KEYED);
    if (ends_tx)
        cl->in_tx = 0;
    cl->cur = node;
    s->c = c;
    return rc;
}

int flc_store_cl_send(flc_store_t *s, char *cmd, size_t len, const char *what)
{
    int rc = flc_store_cl_push(s, cmd, len);
    return rc == FLC_OK ? flc_store_cl_flush(s, what) : rc;
}

/* Writes iov[0..n) to fd completely (iov is consumed): 0, or the errno. */
static int write_iov(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL); /* EPIPE, not SIGPIPE */
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno ? errno : EIO;
        }
        while (n > 0 && (size_t)w >= iov->iov_len)
            w -= (ssize_t)iov->iov_len, iov++, n--;
        if (n > 0)
            iov->iov_base = (char *)iov->iov_base + w, iov->iov_len -= (size_t)w;
    }
    return 0;
}

/* Pieces up to this size are copied for a resend, bigger ones borrowed. */
#define BORROW_MIN 8192

/* The copying path of flc_store_cl_send_pieces: the whole text, queued. */
static int send_copied(flc_store_t *s, const char *head, size_t hl, const struct iovec *pieces,
                       int n, const char *what)
{
    size_t len = hl + 2;
    for (int i = 0; i < n; i++)
        len += pieces[i].iov_len;
    char *cmd = malloc(len), *o = cmd;
    if (cmd == NULL)
        return flc_err_set(&s->err, FLC_ENOMEM, "%s: out of memory for %zu bytes", what, len);
    memcpy(o, head, hl), o += hl;
    for (int i = 0; i < n; i++)
        memcpy(o, pieces[i].iov_base, pieces[i].iov_len), o += pieces[i].iov_len;
    memcpy(o, "\r\n", 2);
    return flc_store_cl_send(s, cmd, len, what);
}

int flc_store_cl_send_pieces(flc_store_t *s, const char *head, size_t hl, const char *key,
                             const struct iovec *pieces, int n, int idem, const char *what)
{
    flc_store_cluster_t *cl = s->cl;
    if (cl->multi || cl->in_tx) /* a transaction's commands go through the queue */
        return send_copied(s, head, hl, pieces, n, what);
    uint16_t slot = flc_slot_of(key, strlen(key));
    unsigned node;
    redisContext *c;
    int rc = route_slot(s, slot, &node, &c);
    if (rc != FLC_OK) {
        if (cl->head < cl->n) { /* as flc_store_cl_push: start clean */
            flc_err_t keep = s->err;
            flc_store_cl_drop(s);
            s->err = keep;
        }
        return rc;
    }
    /* The node's queued output first: its commands run before this one. A
     * failure there is a lost connection: the command joins the queue the
     * ordinary way, and the flush follows the failover. */
    int done = c->obuf[0] == '\0';
    while (!done)
        if (redisBufferWrite(c, &done) != REDIS_OK)
            return send_copied(s, head, hl, pieces, n, what);
    /* Small pieces (a frame header, on its caller's stack, which a
     * deferred batch leaves before its replies are read) are copied after
     * the head text; only the big ones (the values) are borrowed. */
    size_t small = 0;
    for (int i = 0; i < n; i++)
        small += pieces[i].iov_len <= BORROW_MIN ? pieces[i].iov_len : 0;
    pend_t p = {.len = hl, .node = node, .ctx = c, .slot = slot, .keyed = 1, .body_idem = idem,
                .nbody = n + 1};
    p.cmd = malloc(hl + small);
    p.body = malloc((size_t)(n + 1) * sizeof *p.body);
    if (p.cmd == NULL || p.body == NULL) {
        flc_store_cl_pend_free(&p);
        return flc_err_set(&s->err, FLC_ENOMEM, "%s: out of memory", what);
    }
    memcpy(p.cmd, head, hl);
    char *own = p.cmd + hl;
    for (int i = 0; i < n; i++) {
        p.body[i] = pieces[i];
        if (pieces[i].iov_len <= BORROW_MIN) {
            memcpy(own, pieces[i].iov_base, pieces[i].iov_len);
            p.body[i].iov_base = own;
            own += pieces[i].iov_len;
        }
    }
    p.body[n] = (struct iovec){(void *)"\r\n", 2};
    flc_store_cl_mark_written(s, node);
    if ((rc = enqueue_pend(s, p, 0)) != FLC_OK)
        return rc;
    cl->cur = node;
    s->c = c;
    struct iovec iov[FLC_STORE_MAX_PIECES + 2];
    int niov = 0;
    iov[niov++] = (struct iovec){(void *)head, hl};
    for (int i = 0; i < n && niov < FLC_STORE_MAX_PIECES + 1; i++)
        iov[niov++] = pieces[i];
    iov[niov++] = (struct iovec){(void *)"\r\n", 2};
    int err = write_iov(c->fd, iov, niov);
    if (err == 0)
        return FLC_OK;
    /* Part of it may be on the wire: this connection's stream is lost. */
    char detail[160];
    snprintf(detail, sizeof detail, "%s", err == EAGAIN || err == EWOULDBLOCK
                                              ? "no progress within the I/O timeout"
                                              : strerror(err));
    if (err != EAGAIN && err != EWOULDBLOCK && flc_store_cl_replay(s, node, what) == FLC_OK)
        return FLC_OK; /* sent again to the slot's new owner (a failover) */
    return flc_store_cl_lost(s, what, detail);
}

int flc_store_cl_flush(flc_store_t *s, const char *what)
{
    flc_store_cluster_t *cl = s->cl;
    for (size_t i = cl->head; i < cl->n; i++) {
        redisContext *c = cl->q[i].ctx;
        if (cl->q[i].stash != NULL)
            continue; /* answered: its output went out long ago */
        int done = c->obuf[0] == '\0'; /* hiredis: an empty sds when all went out */
        while (!done) {
            if (redisBufferWrite(c, &done) != REDIS_OK) {
                /* Its node closed the connection (a killed master): send
                 * the batch's commands there again through the new map
                 * when they may run twice (store_cluster_fail.c). */
                if (c->err == REDIS_ERR_IO && errno != EAGAIN && errno != EWOULDBLOCK) {
                    char detail[160];
                    snprintf(detail, sizeof detail, "%s", c->errstr);
                    if (flc_store_cl_replay(s, cl->q[i].node, what) == FLC_OK)
                        break; /* the replayed commands were written */
                    return flc_store_cl_lost(s, what, detail);
                }
                s->c = c;
                cl->cur = cl->q[i].node;
                return flc_store_io_error(s, what);
            }
        }
    }
    return FLC_OK;
}

