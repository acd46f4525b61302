/* The store's connection: opening (URL, AUTH, SELECT), reconnecting after a
 * lost connection on the next call, turning hiredis and Redis errors into
 * FLC codes and sentences, closing; the accessors of the store's settings,
 * and the connection-level operations (PING, CLIENT ID, CLIENT UNBLOCK).
 * Every other store file sends through a connection made here. */
#include "base/log.h"
#include "cache/store_cluster_internal.h"
#include "cache/store_internal.h"

#include "base/bigbuf.h"

#include "cache/cluster_conn.h"
#include "cache/tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

static struct timeval tv_ms(unsigned ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (long)(ms % 1000) * 1000};
    return tv;
}

int flc_store_io_error(flc_store_t *s, const char *what)
{
    int code = FLC_ECONN;
    const char *detail = "connection lost";
    if (s->c) {
        detail = s->c->errstr[0] ? s->c->errstr : detail;
        if (s->c->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK))
            code = FLC_ETIMEOUT, detail = "no answer within the I/O timeout";
        else if (s->c->err == REDIS_ERR_PROTOCOL)
            code = FLC_EPROTO;
        else if (s->c->err == REDIS_ERR_OOM)
            code = FLC_ENOMEM;
    }
    flc_err_set(&s->err, code, "%s: %s: %s", s->url_text, what, detail);
    /* The reply stream is out of step now; start over on the next call. */
    if (s->cl) {
        flc_store_cl_drop(s);
    } else if (s->c) {
        redisFree(s->c);
        s->c = NULL;
    }
    return code;
}

int flc_store_reply_error(flc_store_t *s, const redisReply *r, const char *what)
{
    if (r == NULL)
        return flc_err_set(&s->err, FLC_EPROTO, "%s: %s: no reply", s->url_text, what);
    const char *msg = r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply type";
    int code = FLC_EPROTO;
    if (strncmp(msg, "OOM", 3) == 0)
        code = FLC_ENOMEM;
    else if (strncmp(msg, "NOAUTH", 6) == 0 || strncmp(msg, "WRONGPASS", 9) == 0 ||
             strncmp(msg, "NOPERM", 6) == 0)
        code = FLC_EAUTH;
    return flc_err_set(&s->err, code, "%s: %s: %s", s->url_text, what, msg);
}

/* The unix socket of the co-located node (opts.local_node / local_sock,
 * issue 12) when the URL names that node by host:port; else NULL. */
static const char *local_socket_for_url(const flc_store_t *s)
{
    const flc_store_opts_t *o = &s->opts;
    if (s->url.kind != FLC_URL_TCP || o->local_node == NULL || o->local_sock == NULL ||
        o->local_sock[0] == '\0')
        return NULL;
    char host[256];
    int port;
    if (flc_cluster_addr_split(o->local_node, host, sizeof host, &port, NULL) != FLC_OK)
        return NULL; /* the cluster client says what is wrong with it */
    return port == s->url.port && strcmp(host, s->url.host) == 0 ? o->local_sock : NULL;
}

/* The connection closed before the first reply: on a plaintext TCP URL,
 * most likely a TLS-only port (redis-server drops what is not a TLS
 * handshake), which the message says rather than leave a bare "Server
 * closed the connection". */
static int first_reply_lost(flc_store_t *s, const char *what)
{
    int eof = s->c && (s->c->err == REDIS_ERR_EOF ||
                       (s->c->err == REDIS_ERR_IO && errno == ECONNRESET));
    int rc = flc_store_io_error(s, what);
    if (eof && !s->url.tls && s->url.kind == FLC_URL_TCP && local_socket_for_url(s) == NULL) {
        size_t n = strlen(s->err.msg);
        snprintf(s->err.msg + n, sizeof s->err.msg - n,
                 " (a TLS-only server closes plaintext connections: rediss://?)");
    }
    return rc;
}

/* Connects to the URL's server (one server). With is_cluster, also asks
 * whether it is a cluster node, in the same round trip as the AUTH. A URL
 * that names the node this process runs next to goes over its unix socket,
 * as the cluster client's connections to it do (cluster_conn.h). */
static int connect_now(flc_store_t *s, int *is_cluster)
{
    struct timeval ct = tv_ms(s->opts.connect_timeout_ms);
    const char *local = local_socket_for_url(s);
    redisContext *c = NULL;
    if (s->url.tls && local == NULL) {
        /* rediss:// (cache/tls.h): the co-located node's unix socket above
         * needs no TLS, it never leaves this machine. */
        flc_err_t te = {0};
        int rc = flc_tls_connect(&s->url, s->url.host, s->url.port, s->opts.connect_timeout_ms,
                                 &c, &te);
        if (rc != FLC_OK)
            return flc_err_set(&s->err, rc, "cannot connect to %s: %s", s->url_text, te.msg);
    } else {
        c = s->url.kind == FLC_URL_UNIX ? redisConnectUnixWithTimeout(s->url.path, ct)
            : local                     ? redisConnectUnixWithTimeout(local, ct)
                                        : redisConnectWithTimeout(s->url.host, s->url.port, ct);
    }
    if (c == NULL)
        return flc_err_set(&s->err, FLC_ENOMEM, "%s: cannot allocate a connection",
                           s->url_text);
    if (c->err) {
        flc_err_set(&s->err, FLC_ECONN, "cannot connect to %s%s%s: %s", s->url_text,
                    local ? " over its local socket " : "", local ? local : "", c->errstr);
        redisFree(c);
        return FLC_ECONN;
    }
    redisSetTimeout(c, tv_ms(s->opts.io_timeout_ms));
    /* Keep the reader's buffer between replies: with the default (free it
     * whenever it is empty and over 16 KB) every 256 KB chunk would allocate
     * it anew. */
    c->reader->maxbuf = 0;
    s->c = c;
    redisReply *r = NULL;
    if (s->url.password[0]) {
        if (s->url.user[0])
            redisAppendCommand(c, "AUTH %s %s", s->url.user, s->url.password);
        else
            redisAppendCommand(c, "AUTH %s", s->url.password);
    }
    if (is_cluster)
        redisAppendCommand(c, "INFO cluster");
    if (s->url.password[0]) {
        if (redisGetReply(c, (void **)&r) != REDIS_OK || r == NULL)
            return first_reply_lost(s, "AUTH");
        if (r->type == REDIS_REPLY_ERROR) {
            int rc = flc_store_reply_error(s, r, "AUTH");
            s->err.code = rc = FLC_EAUTH;
            freeReplyObject(r);
            redisFree(s->c);
            s->c = NULL;
            return rc;
        }
        freeReplyObject(r);
    }
    if (is_cluster) {
        if (redisGetReply(c, (void **)&r) != REDIS_OK || r == NULL)
            return s->url.password[0] ? flc_store_io_error(s, "INFO cluster")
                                      : first_reply_lost(s, "INFO cluster");
        /* A server that refuses INFO (an ACL) is taken for a single one. */
        *is_cluster = r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_enabled:1");
        freeReplyObject(r);
        if (*is_cluster)
            return FLC_OK; /* a cluster has only db 0: flc_store_cl_start says so */
    }
    if (s->url.db) {
        r = redisCommand(c, "SELECT %d", s->url.db);
        if (r == NULL)
            return flc_store_io_error(s, "SELECT");
        int bad = r->type == REDIS_REPLY_ERROR;
        int rc = bad ? flc_store_reply_error(s, r, "SELECT") : FLC_OK;
        freeReplyObject(r);
        if (bad) {
            redisFree(s->c);
            s->c = NULL;
            return rc;
        }
    }
    return FLC_OK;
}

void flc_store_in_step(flc_store_t *s, const char *after)
{
    size_t due = s->cl ? flc_store_cl_forget_due(s) : 0;
    if (due > 0)
        FLC_INFO("store: %zu repl%s still due after %s (left by a failover or an error "
                 "path): their connections are remade", due, due == 1 ? "y" : "ies", after);
}

int flc_store_ensure(flc_store_t *s)
{
    if (s->part_window_out) /* every operation starts here: refuse, never mix replies */
        return flc_err_set(&s->err, FLC_EINVAL, "%s: a window read is outstanding on this "
                           "store (flc_store_part_send without its flc_store_part_recv): "
                           "receive it first", s->url_text);
    if (s->cl)
        return flc_store_cl_ensure(s);
    if (s->c && !s->c->err)
        return FLC_OK;
    if (s->c) {
        redisFree(s->c);
        s->c = NULL;
    }
    return connect_now(s, NULL);
}

flc_store_t *flc_store_open(const char *url, const flc_store_opts_t *opts, flc_err_t *err)
{
    flc_store_t *s = calloc(1, sizeof *s);
    if (s == NULL) {
        flc_err_set(err, FLC_ENOMEM, "out of memory");
        return NULL;
    }
    if (opts)
        s->opts = *opts;
    if (s->opts.chunk_bytes == 0)
        s->opts.chunk_bytes = FLC_STORE_CHUNK_DEFAULT;
    if (s->opts.chunk_bytes < 4096)
        s->opts.chunk_bytes = 4096; /* the first chunk must hold a whole header */
    if (s->opts.max_msg_bytes == 0)
        s->opts.max_msg_bytes = FLC_STORE_MAX_MSG_DEFAULT;
    if (s->opts.connect_timeout_ms == 0)
        s->opts.connect_timeout_ms = 5000;
    if (s->opts.io_timeout_ms == 0)
        s->opts.io_timeout_ms = 30000;
    if (flc_url_parse(url, &s->url, err) != FLC_OK) {
        free(s);
        return NULL;
    }
    flc_url_redacted(&s->url, s->url_text, sizeof s->url_text);
    /* With a cold tier configured, values spilled by any process are found
     * again. Its URL and settings are borrowed only for this call. */
    int is_cluster = s->url.cluster == FLC_URL_CLUSTER_YES;
    int rc = is_cluster ? FLC_OK
                        : connect_now(s, s->url.cluster == FLC_URL_CLUSTER_AUTO ? &is_cluster
                                                                              : NULL);
    if (rc == FLC_OK && is_cluster) {
        if (s->c) { /* the cluster client makes its own connections */
            redisFree(s->c);
            s->c = NULL;
        }
        rc = flc_store_cl_start(s, &is_cluster);
        if (rc == FLC_OK)
            rc = flc_store_cl_ensure(s);
    }
    if (rc == FLC_OK)
        rc = flc_store_attach_cold(s, s->opts.cold_url, s->opts.cold_opts);
    s->opts.cold_url = NULL;
    s->opts.cold_opts = NULL;
    if (rc != FLC_OK) {
        if (err)
            *err = s->err;
        flc_store_close(s);
        return NULL;
    }
    return s;
}

flc_store_t *flc_store_open_cfg(const flc_store_cfg_t *sc, const char *url, flc_err_t *err)
{
    if (url == NULL && sc != NULL)
        url = sc->url;
    if (url == NULL || *url == '\0') {
        flc_err_set(err, FLC_EINVAL, "no cache URL: the event has no 'redis' and FLCACHE_REDIS "
                                     "is not set");
        return NULL;
    }
    return flc_store_open(url, sc != NULL ? &sc->opts : NULL, err);
}

void flc_store_close(flc_store_t *s)
{
    if (s == NULL)
        return;
    flc_tier_close(s);
    if (s->cl)
        flc_store_cl_free(s);
    else if (s->c)
        redisFree(s->c);
    free(s->scratch);
    flc_big_free(s->spare_tails, s->spare_tails_cap);
    free(s);
}

const flc_err_t *flc_store_error(const flc_store_t *s)
{
    return &s->err;
}

const char *flc_store_errstr(const flc_store_t *s)
{
    return flc_err_msg(&s->err);
}

const char *flc_store_url(const flc_store_t *s)
{
    return s->url_text;
}

size_t flc_store_chunk_bytes(const flc_store_t *s)
{
    return s->opts.chunk_bytes;
}

int flc_store_url_full(const flc_store_t *s, char *out, size_t outlen)
{
    return flc_url_format(&s->url, out, outlen);
}

void flc_store_set_chunk_bytes(flc_store_t *s, size_t chunk)
{
    s->opts.chunk_bytes = chunk < 4096 ? 4096 : chunk;
}

uint64_t flc_store_bytes_written(const flc_store_t *s)
{
    return s->bytes_written;
}

uint64_t flc_store_bytes_read(const flc_store_t *s)
{
    return s->bytes_read;
}

int flc_store_ping(flc_store_t *s)
{
    redisReply *r;
    int rc = flc_store_commandf(s, &r, "PING");
    if (rc == FLC_OK)
        freeReplyObject(r);
    return rc;
}

void flc_store_set_timeout(flc_store_t *s, unsigned ms)
{
    if (s->c)
        redisSetTimeout(s->c, tv_ms(ms));
}

int flc_store_conn_id(flc_store_t *s, long long *id)
{
    *id = -1;
    if (s->cl)
        return flc_store_cl_conn_id(s, id);
    redisReply *r;
    int rc = flc_store_commandf(s, &r, "CLIENT ID");
    if (rc != FLC_OK)
        return rc;
    *id = r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    return FLC_OK;
}

int flc_store_wake_id(flc_store_t *s, long long id)
{
    /* On one server the id is the blocked connection's CLIENT ID; on a
     * cluster, a name given to all its connections (store_cluster_all.c). */
    if (s->cl)
        return flc_store_cl_wake_id(s, id);
    redisReply *r;
    int rc = flc_store_commandf(s, &r, "CLIENT UNBLOCK %lld TIMEOUT", id);
    if (rc == FLC_OK)
        freeReplyObject(r);
    return rc;
}
