/* tls.c - a rediss:// connection (tls.h): TCP connect, TLS handshake with
 * verification, then the socketpair and proxy thread (tls_proxy.c) that
 * put an ordinary hiredis context on top.
 *
 * The handshake runs here, in the caller's thread, for the errors: OpenSSL
 * says exactly what went wrong (the verify result, the alert the server
 * sent) and that becomes the message, named by host:port. Verification is
 * always on: SSL_VERIFY_PEER against the URL's CA file or the system's,
 * and the name (SSL_set1_host, or the IP address for a literal) checked by
 * OpenSSL itself during the handshake. */
#include "cache/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "cache/tls_internal.h"

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The reason of OpenSSL's last error, or dflt. */
static const char *ssl_reason(const char *dflt)
{
    unsigned long ec = ERR_peek_last_error();
    const char *r = ec ? ERR_reason_error_string(ec) : NULL;
    return r ? r : dflt;
}

/* A file named by the URL must be readable: the system's message for it
 * beats OpenSSL's ("system lib"). */
static int readable(const char *what, const char *path, flc_err_t *e)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return flc_err_set(e, FLC_EINVAL, "TLS %s file '%.200s': %s", what, path,
                           strerror(errno));
    fclose(f);
    return FLC_OK;
}

/* Flags in the session's app data, set by the callbacks below. */
enum { ASKED_FOR_CERT = 1, GOT_TICKET = 2 };

static void set_flag(SSL *ssl, intptr_t f)
{
    SSL_set_app_data(ssl, (void *)((intptr_t)SSL_get_app_data(ssl) | f));
}

/* Called when the server asks for a client certificate and none was
 * given: noted, so the handshake waits for the server's verdict. */
static int asked_for_cert(SSL *ssl, X509 **x509, EVP_PKEY **pkey)
{
    (void)x509;
    (void)pkey;
    set_flag(ssl, ASKED_FOR_CERT);
    return 0; /* none: the server decides whether it can do without */
}

/* Called for a TLS 1.3 session ticket: the server sends them once it has
 * accepted the client's side of the handshake, certificate included, so a
 * ticket is the verdict "accepted". The session is not kept. */
static int got_ticket(SSL *ssl, SSL_SESSION *sess)
{
    (void)sess;
    set_flag(ssl, GOT_TICKET);
    return 0;
}

static SSL_CTX *make_ctx(const flc_url_t *u, flc_err_t *e)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        flc_err_set(e, FLC_ENOMEM, "cannot make a TLS context: %s", ssl_reason("out of memory"));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int rc = FLC_OK;
    if (u->cacert[0]) {
        rc = readable("CA", u->cacert, e);
        if (rc == FLC_OK && SSL_CTX_load_verify_locations(ctx, u->cacert, NULL) != 1)
            rc = flc_err_set(e, FLC_EINVAL, "TLS CA file '%.200s': %s", u->cacert,
                             ssl_reason("not a PEM certificate"));
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        rc = flc_err_set(e, FLC_EINVAL, "cannot load the system's CA certificates: %s",
                         ssl_reason("unknown"));
    }
    const char *key = u->key[0] ? u->key : u->cert;
    if (rc == FLC_OK && u->cert[0]) {
        rc = readable("certificate", u->cert, e);
        if (rc == FLC_OK)
            rc = readable("key", key, e);
        if (rc == FLC_OK && SSL_CTX_use_certificate_chain_file(ctx, u->cert) != 1)
            rc = flc_err_set(e, FLC_EINVAL, "TLS certificate file '%.200s': %s", u->cert,
                             ssl_reason("not a PEM certificate"));
        if (rc == FLC_OK && (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
                             SSL_CTX_check_private_key(ctx) != 1))
            rc = flc_err_set(e, FLC_EINVAL, "TLS key file '%.200s': %s", key,
                             ssl_reason("not the certificate's key"));
    }
    if (rc == FLC_OK && !u->cert[0])
        SSL_CTX_set_client_cert_cb(ctx, asked_for_cert);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, got_ticket);
    if (rc != FLC_OK) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

/* Why the handshake failed, as an flc error naming where. */
static int handshake_error(SSL *ssl, int r, int sys_errno, const char *where, const char *name,
                           const flc_url_t *u, flc_err_t *e)
{
    long vr = SSL_get_verify_result(ssl);
    if (vr == X509_V_ERR_HOSTNAME_MISMATCH || vr == X509_V_ERR_IP_ADDRESS_MISMATCH)
        return flc_err_set(e, FLC_EAUTH,
                           "TLS to %s: certificate verify failed: %s (the server's "
                           "certificate is not for '%.100s')",
                           where, X509_verify_cert_error_string(vr), name);
    if (vr != X509_V_OK)
        return flc_err_set(e, FLC_EAUTH,
                           "TLS to %s: certificate verify failed: %s (trusted CAs: %.150s)",
                           where, X509_verify_cert_error_string(vr),
                           u->cacert[0] ? u->cacert : "the system's");
    int se = SSL_get_error(ssl, r);
    unsigned long ec = ERR_peek_last_error();
    if (ec != 0) {
        int reason = ERR_GET_REASON(ec);
        int plain = reason == SSL_R_WRONG_VERSION_NUMBER || reason == SSL_R_PACKET_LENGTH_TOO_LONG ||
                    reason == SSL_R_UNKNOWN_PROTOCOL || reason == SSL_R_RECORD_LENGTH_MISMATCH;
        return flc_err_set(e, FLC_ECONN, "TLS handshake with %s failed: %s%s", where,
                           ssl_reason("error"), plain ? " (not a TLS port?)" : "");
    }
    if (se == SSL_ERROR_SYSCALL && sys_errno != 0)
        return flc_err_set(e, FLC_ECONN, "TLS handshake with %s failed: %s", where,
                           strerror(sys_errno));
    return flc_err_set(e, FLC_ECONN,
                       "TLS handshake with %s failed: the server closed the connection "
                       "(not a TLS port?)",
                       where);
}

/* Waits until fd is ready for what OpenSSL wants, or the deadline. */
static int wait_for(int fd, int ev, long long deadline)
{
    long long left = deadline - now_ms();
    if (left <= 0)
        return 0;
    struct pollfd p = {.fd = fd, .events = (short)ev};
    int n = poll(&p, 1, (int)left);
    return n > 0 || (n < 0 && errno == EINTR);
}

/* The handshake on the non-blocking socket fd, until deadline. Then, in
 * TLS 1.3 when the server asked for a client certificate (or was given
 * one), a short wait for its verdict: it says "certificate required" or
 * "unknown ca" only after the client's side of the handshake is done, and
 * that reason is worth more than hiredis' "Server closed the connection" at
 * the first command. A session ticket is the server's yes (got_ticket). */
static int handshake(SSL *ssl, int fd, long long deadline, const char *where, const char *name,
                     const flc_url_t *u, flc_err_t *e)
{
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int r = SSL_connect(ssl);
        if (r == 1)
            break;
        int se = SSL_get_error(ssl, r), sys = errno;
        int ev = se == SSL_ERROR_WANT_READ ? POLLIN : se == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
        if (ev == 0)
            return handshake_error(ssl, r, sys, where, name, u, e);
        if (!wait_for(fd, ev, deadline))
            return flc_err_set(e, FLC_ETIMEOUT,
                               "TLS handshake with %s: no answer in time (not a TLS port?)",
                               where);
    }
    intptr_t f = (intptr_t)SSL_get_app_data(ssl);
    if (SSL_version(ssl) != TLS1_3_VERSION || (!(f & ASKED_FOR_CERT) && !u->cert[0]))
        return FLC_OK;
    long long until = now_ms() + 200;
    if (until > deadline)
        until = deadline;
    char b;
    for (;;) {
        ERR_clear_error();
        int r = SSL_peek(ssl, &b, 1);
        int se = r > 0 ? SSL_ERROR_NONE : SSL_get_error(ssl, r);
        if (r > 0 || ((intptr_t)SSL_get_app_data(ssl) & GOT_TICKET) ||
            se == SSL_ERROR_WANT_WRITE ||
            (se == SSL_ERROR_WANT_READ && !wait_for(fd, POLLIN, until)))
            return FLC_OK; /* accepted, or no verdict in time: go on */
        if (se != SSL_ERROR_WANT_READ)
            return flc_err_set(e, FLC_EAUTH, "TLS to %s: the server refused %s: %s", where,
                               u->cert[0] ? "the client certificate"
                                          : "to go on without a client certificate (give "
                                            "cert= and key= in the URL)",
                               ssl_reason("connection closed"));
    }
}

/* Makes the SSL for name (verify it; SNI unless it is an IP address). */
static SSL *make_ssl(SSL_CTX *ctx, int fd, const char *name, flc_err_t *e)
{
    SSL *ssl = SSL_new(ctx);
    if (ssl == NULL) {
        flc_err_set(e, FLC_ENOMEM, "cannot make a TLS session: %s", ssl_reason("out of memory"));
        return NULL;
    }
    unsigned char ip[16];
    int is_ip = inet_pton(AF_INET, name, ip) == 1 || inet_pton(AF_INET6, name, ip) == 1;
    int ok = SSL_set_fd(ssl, fd) == 1;
    if (is_ip)
        ok = ok && X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1;
    else
        ok = ok && SSL_set_tlsext_host_name(ssl, name) == 1 && SSL_set1_host(ssl, name) == 1;
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_set_app_data(ssl, NULL);
    if (!ok) {
        flc_err_set(e, FLC_EINVAL, "TLS name '%.100s' cannot be verified: %s", name,
                    ssl_reason("bad name"));
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

int flc_tls_connect(const flc_url_t *u, const char *host, int port, unsigned timeout_ms,
                    redisContext **out, flc_err_t *e)
{
    *out = NULL;
    char where[300];
    snprintf(where, sizeof where, strchr(host, ':') ? "[%.256s]:%d" : "%.256s:%d", host, port);
    const char *name = u->sni[0] ? u->sni : host;
    long long deadline = now_ms() + timeout_ms;
    SSL_CTX *ctx = make_ctx(u, e);
    if (ctx == NULL)
        return e ? e->code : FLC_EINVAL;
    /* hiredis makes the TCP connection (resolution, timeout, TCP_NODELAY);
     * its socket is taken over, close-on-exec. */
    struct timeval ct = {.tv_sec = timeout_ms / 1000, .tv_usec = (long)(timeout_ms % 1000) * 1000};
    redisContext *tc = redisConnectWithTimeout(host, port, ct);
    int tcp = -1, rc = FLC_OK;
    if (tc == NULL)
        rc = flc_err_set(e, FLC_ENOMEM, "%s: cannot allocate a connection", where);
    else if (tc->err)
        rc = flc_err_set(e, FLC_ECONN, "TCP to %s: %s", where, tc->errstr);
    else if ((tcp = fcntl(tc->fd, F_DUPFD_CLOEXEC, 3)) < 0)
        rc = flc_err_set(e, FLC_ECONN, "TCP to %s: %s", where, strerror(errno));
    redisFree(tc);
    SSL *ssl = NULL;
    if (rc == FLC_OK) {
        fcntl(tcp, F_SETFL, fcntl(tcp, F_GETFL) | O_NONBLOCK);
        ssl = make_ssl(ctx, tcp, name, e);
        rc = ssl ? handshake(ssl, tcp, deadline, where, name, u, e) : e ? e->code : FLC_EINVAL;
    }
    SSL_CTX_free(ctx); /* the session holds its own reference */
    int sv[2] = {-1, -1};
    if (rc == FLC_OK && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        rc = flc_err_set(e, FLC_ECONN, "TLS to %s: socketpair: %s", where, strerror(errno));
    redisContext *c = NULL;
    if (rc == FLC_OK) {
        c = redisConnectFd(sv[0]);
        if (c == NULL || c->err) {
            rc = flc_err_set(e, FLC_ENOMEM, "%s: cannot allocate a connection", where);
            if (c == NULL)
                close(sv[0]);
        } else {
            /* The address it stands for, as a TCP context has it: the
             * cluster client names nodes by c->tcp (redisFree frees it). */
            c->connection_type = REDIS_CONN_TCP;
            c->tcp.host = strdup(host);
            c->tcp.port = port;
        }
    }
    if (rc == FLC_OK)
        rc = flc_tls_proxy_start(ssl, tcp, sv[1], e);
    if (rc != FLC_OK) {
        if (c)
            redisFree(c); /* closes sv[0] */
        if (sv[1] >= 0)
            close(sv[1]);
        SSL_free(ssl);
        if (tcp >= 0)
            close(tcp);
        ERR_clear_error();
        return rc;
    }
    ERR_clear_error();
    *out = c;
    return FLC_OK;
}
