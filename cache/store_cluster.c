/* store_cluster.c - the store's routing on a Redis Cluster (store_cluster.h).
 *
 * One queue of commands whose replies are still to read, each remembered as
 * its RESP text with the node and connection it went to. Commands are
 * appended to their node's hiredis output buffer as they come, so a
 * pipeline of many hash tags becomes one pipeline per node, flushed
 * together, and its replies are read back in submission order.
 *
 * Redirects, when a reply is read:
 * - MOVED: the slot lives elsewhere now. The map gets that slot
 *   (flc_cluster_map_apply_moved, which also marks a full refresh due; it is
 *   done before the next batch, never while replies are in flight) and the
 *   command goes to the new owner.
 * - ASK: the slot is migrating and this key is already on the target:
 *   ASKING and the command, pipelined on the target's connection (ASKING
 *   holds for the next command only), once; the map is not touched.
 * - TRYAGAIN (multi-key command while its keys are split by a migration),
 *   CLUSTERDOWN (no owner yet, during a failover) and UNBLOCKED (a BLPOP
 *   released because its master became a replica): back off, refresh the
 *   map for the last two, resend to the slot's owner.
 * Resending is safe for every command, RPUSH and INCR included: a node
 * answers MOVED/ASK/TRYAGAIN/CLUSTERDOWN before executing anything, and an
 * UNBLOCKED BLPOP popped nothing. Only the redirected command is resent; the
 * replies of the commands behind it are read first (kept aside) so that the
 * resent command's reply is the next one on its connection, and the order
 * of the redirected commands among themselves stays the order they were
 * issued in. Redirects stop after CL_MAX_REDIRECTS or CL_DEADLINE_MS (about
 * 2 x a 2-4 s node timeout + 2 s); the last error reply then goes to the
 * caller, which reports it as on one node.
 *
 * Inside MULTI ... EXEC a redirected command is not resent on its own (EXEC
 * then aborts and nothing ran): flc_store_pipeline resends the whole
 * transaction (store_raw.c).
 *
 * A connection error closes the connections with replies in flight (their
 * streams are out of step), marks the map for a refresh, and fails the
 * operation as on one node; the next operation reconnects. When a node
 * cannot be connected to at routing time, the map is refreshed from another
 * node and the routing retried with backoff until the deadline (nothing was
 * sent yet, so that retry is always safe). */
#include "cache/store_cluster.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <unistd.h>

#include "base/clock.h"
#include "cache/cluster_conn.h"
#include "cache/cluster_map.h"
#include "cache/slot.h"
#include "cache/store_internal.h"

#define CL_MAX_REDIRECTS 16
#define CL_DEADLINE_MS 10000u

typedef struct pend {
    char *cmd; /* RESP text, owned (hiredis format functions: free()) */
    size_t len;
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
};

/* Redirects followed by every store of the process (for tests and
 * benches: flc_store_cl_counts). */
static atomic_ulong n_moved, n_ask, n_retry;

void flc_store_cl_counts(unsigned long *moved, unsigned long *ask, unsigned long *retry)
{
    *moved = atomic_load(&n_moved);
    *ask = atomic_load(&n_ask);
    *retry = atomic_load(&n_retry);
}

static uint64_t now_ms(void)
{
    return flc_now_ns() / 1000000u;
}

static struct timeval tv_ms(unsigned ms)
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
                                  .io_timeout_ms = s->opts.io_timeout_ms};
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
    for (size_t i = cl->head; i < cl->n; i++) {
        free(cl->q[i].cmd);
        if (cl->q[i].stash)
            freeReplyObject(cl->q[i].stash);
    }
    cl->head = cl->n = 0;
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
    flc_cluster_conn_free(cl->cc);
    flc_cluster_map_free(&cl->map);
    free(cl);
    s->cl = NULL;
    s->c = NULL; /* it was one of the table's connections */
}

static void close_node(flc_store_cluster_t *cl, unsigned node)
{
    flc_cluster_conn_close(cl->cc, node);
    if (node < cl->nnamed)
        cl->named[node] = NULL;
}

void flc_store_cl_drop(flc_store_t *s)
{
    flc_store_cluster_t *cl = s->cl;
    for (size_t i = cl->head; i < cl->n; i++)
        close_node(cl, cl->q[i].node);
    if (cl->cur != FLC_CLUSTER_NO_NODE)
        close_node(cl, cl->cur);
    queue_clear(cl);
    cl->map.refresh_pending = 1;
    s->c = NULL;
}

/* ---- reading a command's name and key from its RESP text -------------- */

/* Up to max arguments of a formatted command into a[] / al[]; the count of
 * arguments the command has (0 when the text does not parse). */
static int resp_args(const char *p, size_t len, const char **a, size_t *al, int max)
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
    int argc = resp_args(cmd, len, a, al, 4);
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
        is_cmd(a[0], al[0], "FCALL")) {
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

static void backoff(unsigned *ms, unsigned first, unsigned cap)
{
    *ms = *ms == 0 ? first : (*ms * 2 > cap ? cap : *ms * 2);
    flc_sleep_ms(*ms);
}

/* The connection of node, made now if needed; on failure the map is
 * refreshed from another node (the caller looks the owner up again). */
static int conn_of(flc_store_t *s, unsigned node, redisContext **c)
{
    flc_store_cluster_t *cl = s->cl;
    int rc = flc_cluster_conn_get(cl->cc, &cl->map, node, c, &s->err);
    if (rc == FLC_OK) {
        (*c)->reader->maxbuf = 0; /* as the single-node connection (store_conn.c) */
        name_conn(cl, node, *c);
        return FLC_OK;
    }
    if (cl->head == cl->n) {
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
    uint64_t t0 = now_ms();
    unsigned wait = 0;
    for (;;) {
        unsigned nd = flc_cluster_map_owner(&cl->map, slot);
        int rc;
        if (nd != FLC_CLUSTER_NO_NODE) {
            rc = conn_of(s, nd, c);
            if (rc == FLC_OK) {
                *node = nd;
                return FLC_OK;
            }
        } else {
            rc = flc_err_set(&s->err, FLC_ECONN, "%s: no node serves slot %u", s->url_text,
                             slot);
            if (cl->head == cl->n) {
                flc_err_t e2;
                flc_cluster_conn_refresh(cl->cc, &cl->map, -1, 1, NULL, &e2);
            }
        }
        if (now_ms() - t0 > CL_DEADLINE_MS)
            return flc_err_wrap(&s->err, "slot %u, after %u ms: ", slot, CL_DEADLINE_MS);
        backoff(&wait, 100, 1000);
    }
}

int flc_store_cl_use_node(flc_store_t *s, unsigned node)
{
    redisContext *c;
    int rc = conn_of(s, node, &c);
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

static int enqueue(flc_store_t *s, char *cmd, size_t len, unsigned node, redisContext *c,
                   uint16_t slot, int keyed)
{
    flc_store_cluster_t *cl = s->cl;
    if (cl->n == cl->cap) {
        size_t cap = cl->cap ? cl->cap * 2 : 64;
        pend_t *q = realloc(cl->q, cap * sizeof *q);
        if (q == NULL) {
            free(cmd);
            return flc_err_set(&s->err, FLC_ENOMEM, "out of memory queueing a command");
        }
        cl->q = q, cl->cap = cap;
    }
    if (redisAppendFormattedCommand(c, cmd, len) != REDIS_OK) {
        free(cmd);
        s->c = c;
        return flc_store_io_error(s, "queueing a command");
    }
    cl->q[cl->n++] = (pend_t){.cmd = cmd, .len = len, .node = node, .ctx = c, .slot = slot,
                              .keyed = keyed, .in_tx = cl->in_tx};
    return FLC_OK;
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
            rc = conn_of(s, node, &c);
    }
    if (rc != FLC_OK) {
        free(cmd);
        return rc;
    }
    if (cl->block_ms) /* a BLPOP: its connection must outwait it (store_notify.c) */
        redisSetTimeout(c, tv_ms(cl->block_ms));
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
    resp_args(cmd, len, a, al, 1);
    int ends_tx = is_cmd(a[0], al[0], "EXEC") || is_cmd(a[0], al[0], "DISCARD");
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

int flc_store_cl_flush(flc_store_t *s, const char *what)
{
    flc_store_cluster_t *cl = s->cl;
    for (size_t i = cl->head; i < cl->n; i++) {
        redisContext *c = cl->q[i].ctx;
        int done = c->obuf[0] == '\0'; /* hiredis: an empty sds when all went out */
        while (!done) {
            if (redisBufferWrite(c, &done) != REDIS_OK) {
                s->c = c;
                cl->cur = cl->q[i].node;
                return flc_store_io_error(s, what);
            }
        }
    }
    return FLC_OK;
}

/* ---- replies and redirects ------------------------------------------------ */

static int get_reply(flc_store_t *s, unsigned node, redisContext *c, redisReply **r,
                     const char *what)
{
    void *reply = NULL;
    if (redisGetReply(c, &reply) != REDIS_OK || reply == NULL) {
        s->c = c;
        s->cl->cur = node;
        return flc_store_io_error(s, what);
    }
    *r = reply;
    return FLC_OK;
}

/* Reads the replies of every queued command after the oldest into their
 * stash, so that a resent command's reply is the next one on any
 * connection. */
static int drain(flc_store_t *s, const char *what)
{
    flc_store_cluster_t *cl = s->cl;
    for (size_t i = cl->head + 1; i < cl->n; i++) {
        pend_t *p = &cl->q[i];
        if (p->stash == NULL) {
            int rc = get_reply(s, p->node, p->ctx, &p->stash, what);
            if (rc != FLC_OK)
                return rc;
        }
    }
    return FLC_OK;
}

/* Sends e's command (after ASKING when asking) to node and reads its reply. */
static int resend(flc_store_t *s, pend_t *e, unsigned node, int asking, redisReply **r,
                  const char *what)
{
    flc_store_cluster_t *cl = s->cl;
    redisContext *c;
    int rc = conn_of(s, node, &c);
    if (rc != FLC_OK)
        return rc;
    if (asking && redisAppendCommand(c, "ASKING") != REDIS_OK)
        return get_reply(s, node, c, r, what);
    if (redisAppendFormattedCommand(c, e->cmd, e->len) != REDIS_OK)
        return get_reply(s, node, c, r, what);
    if (cl->block_ms)
        redisSetTimeout(c, tv_ms(cl->block_ms));
    redisReply *ok = NULL;
    rc = asking ? get_reply(s, node, c, &ok, what) : FLC_OK;
    if (ok)
        freeReplyObject(ok); /* ASKING's +OK */
    if (rc == FLC_OK)
        rc = get_reply(s, node, c, r, what);
    if (cl->block_ms && s->c != NULL && rc == FLC_OK)
        redisSetTimeout(c, tv_ms(s->opts.io_timeout_ms));
    if (rc == FLC_OK)
        e->node = node, e->ctx = c;
    return rc;
}

/* Follows *r's redirects until e's command got an answer from the node
 * that owns its key (see the file's comment for why resending is safe). */
static int settle(flc_store_t *s, pend_t *e, redisReply **r, const char *what)
{
    flc_store_cluster_t *cl = s->cl;
    uint64_t t0 = now_ms();
    unsigned wait = 0;
    for (int hops = 0;; hops++) {
        flc_cluster_redirect_t rd;
        flc_cluster_reply_t kind = flc_cluster_classify(*r, &rd);
        if (kind == FLC_CLUSTER_R_OK || kind == FLC_CLUSTER_R_OTHER ||
            kind == FLC_CLUSTER_R_CROSSSLOT || kind == FLC_CLUSTER_R_IOERR)
            return FLC_OK;
        atomic_fetch_add(kind == FLC_CLUSTER_R_MOVED ? &n_moved
                         : kind == FLC_CLUSTER_R_ASK ? &n_ask
                                                     : &n_retry,
                         1);
        flc_err_t e2;
        char asked[256];
        snprintf(asked, sizeof asked, "%s", cl->map.nodes[e->node].host);
        if (e->in_tx || !e->keyed) {
            /* Not resent alone (see the file's comment); the map learns. */
            if (kind == FLC_CLUSTER_R_MOVED)
                flc_cluster_map_apply_moved(&cl->map, &rd, asked, &e2);
            else if (kind != FLC_CLUSTER_R_ASK)
                cl->map.refresh_pending = 1;
            return FLC_OK;
        }
        if (hops >= CL_MAX_REDIRECTS || now_ms() - t0 > CL_DEADLINE_MS)
            return FLC_OK; /* the caller reports the last error reply */
        int rc = drain(s, what);
        if (rc != FLC_OK)
            return rc;
        int target = -1, asking = 0;
        switch (kind) {
        case FLC_CLUSTER_R_MOVED:
            target = flc_cluster_map_apply_moved(&cl->map, &rd, asked, &e2);
            break;
        case FLC_CLUSTER_R_ASK:
            target = flc_cluster_map_node_for(&cl->map, &rd, asked, &e2);
            asking = 1;
            break;
        case FLC_CLUSTER_R_TRYAGAIN:
            backoff(&wait, 10, 200);
            target = (int)flc_cluster_map_owner(&cl->map, e->slot);
            break;
        default: /* CLUSTERDOWN, UNBLOCKED */
            backoff(&wait, 100, 1000);
            flc_cluster_conn_refresh(cl->cc, &cl->map, -1, 1, NULL, &e2);
            target = (int)flc_cluster_map_owner(&cl->map, e->slot);
            break;
        }
        if (target < 0 || target == (int)FLC_CLUSTER_NO_NODE) {
            backoff(&wait, 100, 1000);
            continue; /* the same reply once more: refresh, look again */
        }
        redisReply *nr = NULL;
        rc = resend(s, e, (unsigned)target, asking, &nr, what);
        if (rc == FLC_ECONN && s->c != NULL && now_ms() - t0 <= CL_DEADLINE_MS) {
            /* The target cannot be reached (a dead master a stale MOVED
             * names): nothing was sent; the owner may change. */
            backoff(&wait, 100, 1000);
            flc_cluster_conn_refresh(cl->cc, &cl->map, target, 1, NULL, &e2);
            target = (int)flc_cluster_map_owner(&cl->map, e->slot);
            if (target == (int)FLC_CLUSTER_NO_NODE)
                continue;
            rc = resend(s, e, (unsigned)target, 0, &nr, what);
            if (rc == FLC_ECONN && s->c != NULL)
                continue;
        }
        if (rc != FLC_OK)
            return rc;
        freeReplyObject(*r);
        *r = nr;
    }
}

int flc_store_cl_read(flc_store_t *s, redisReply **r, const char *what)
{
    flc_store_cluster_t *cl = s->cl;
    *r = NULL;
    if (cl->head == cl->n)
        return flc_err_set(&s->err, FLC_EPROTO, "%s: %s: no reply is due", s->url_text, what);
    pend_t *e = &cl->q[cl->head];
    redisReply *rep = e->stash;
    e->stash = NULL;
    int rc = rep ? FLC_OK : get_reply(s, e->node, e->ctx, &rep, what);
    if (rc != FLC_OK)
        return rc; /* the queue is gone with the connections */
    rc = settle(s, e, &rep, what);
    if (rc != FLC_OK) {
        if (rep)
            freeReplyObject(rep);
        return rc;
    }
    if (cl->head < cl->n) { /* an I/O error in settle cleared the queue */
        free(e->cmd);
        if (++cl->head == cl->n)
            cl->head = cl->n = 0;
    }
    *r = rep;
    return FLC_OK;
}

void flc_store_cl_block_ms(flc_store_t *s, unsigned ms)
{
    s->cl->block_ms = ms;
}

/* ---- waking a blocked connection ---------------------------------------- */

int flc_store_cl_conn_id(flc_store_t *s, long long *id)
{
    flc_store_cluster_t *cl = s->cl;
    static atomic_uint counter;
    if (cl->token < 0) {
        uint64_t t = flc_now_ns() / 1000u;
        cl->token = (long long)((((uint64_t)getpid() & 0xFFFFFu) << 36) |
                                ((t & 0xFFFFu) << 20) | (atomic_fetch_add(&counter, 1) & 0xFFFFFu));
    }
    /* Name the connections to every master now: the BLPOP that a wake is
     * for may go to any of them. Later connections are named when made. */
    unsigned m[64];
    size_t n = 0;
    int rc = flc_store_cl_masters(s, m, 64, &n);
    for (size_t i = 0; rc == FLC_OK && i < n; i++) {
        redisContext *c;
        rc = conn_of(s, m[i], &c);
    }
    *id = rc == FLC_OK ? cl->token : -1;
    return rc;
}

int flc_store_cl_wake_id(flc_store_t *s, long long id)
{
    char name[48];
    snprintf(name, sizeof name, " name=flc-w-%lld ", id);
    unsigned m[64];
    size_t n = 0;
    int rc = flc_store_cl_masters(s, m, 64, &n);
    for (size_t i = 0; rc == FLC_OK && i < n; i++) {
        redisReply *r;
        if ((rc = flc_store_cl_use_node(s, m[i])) != FLC_OK ||
            (rc = flc_store_commandf(s, &r, "CLIENT LIST TYPE normal")) != FLC_OK)
            break;
        long long ids[16];
        int nid = 0;
        for (const char *p = r->str; p && (p = strstr(p, name)) != NULL && nid < 16; p++) {
            const char *line = p;
            while (line > r->str && line[-1] != '\n')
                line--;
            if (strncmp(line, "id=", 3) == 0)
                ids[nid++] = atoll(line + 3);
        }
        freeReplyObject(r);
        for (int k = 0; rc == FLC_OK && k < nid; k++)
            if ((rc = flc_store_commandf(s, &r, "CLIENT UNBLOCK %lld TIMEOUT", ids[k])) == FLC_OK)
                freeReplyObject(r);
    }
    return rc;
}
