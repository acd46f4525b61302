/* tls_proxy.c - the thread behind a rediss:// connection (tls.h): carries
 * bytes between hiredis' socketpair and the TLS session, both non-blocking,
 * in one poll loop.
 *
 * Both directions run in the same loop so neither can block the other: a
 * big pipelined write (a 1 MB SET) never waits on a reply that is waiting
 * on it. Each pass moves what it can (app -> up buffer -> SSL_write, SSL_read
 * -> down buffer -> app) and polls only when nothing moved, for the events
 * OpenSSL asked for (SSL_read can want to write, SSL_write to read). The
 * buffers hold several TLS records (16 KB each) so a chunk of 256 KB goes
 * through in few passes. */
#include "cache/tls_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

enum { BUF = 128 * 1024 };

typedef struct proxy {
    SSL *ssl;
    int tcp, app;
    char *up, *down;       /* app -> server, server -> app */
    size_t up_lo, up_hi;   /* pending bytes are [lo, hi) */
    size_t down_lo, down_hi;
} proxy_t;

static void proxy_free(proxy_t *p)
{
    free(p->up);
    free(p->down);
    free(p);
}

/* Makes room at the end of a buffer whose start was consumed. For up, the
 * bytes a retried SSL_write gets move: SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER. */
static void compact(char *b, size_t *lo, size_t *hi)
{
    if (*lo == *hi) {
        *lo = *hi = 0;
    } else if (*lo > 0 && *hi == BUF) {
        memmove(b, b + *lo, *hi - *lo);
        *hi -= *lo;
        *lo = 0;
    }
}

/* What OpenSSL needs before it can go on, as poll events; -1: the session
 * is over (closed by the server or failed). */
static int wants(SSL *ssl, int r)
{
    switch (SSL_get_error(ssl, r)) {
    case SSL_ERROR_WANT_READ:
        return POLLIN;
    case SSL_ERROR_WANT_WRITE:
        return POLLOUT;
    default:
        return -1;
    }
}

static void *proxy_main(void *arg)
{
    proxy_t *p = arg;
    int tls_over = 0;
    for (;;) {
        int moved = 0, ev_app = 0, ev_tcp = 0;
        compact(p->up, &p->up_lo, &p->up_hi);
        compact(p->down, &p->down_lo, &p->down_hi);
        if (p->up_hi < BUF) { /* hiredis -> up */
            ssize_t n = read(p->app, p->up + p->up_hi, BUF - p->up_hi);
            if (n > 0)
                p->up_hi += (size_t)n, moved = 1;
            else if (n == 0 || (errno != EAGAIN && errno != EINTR))
                break; /* redisFree: the connection is done */
            else
                ev_app |= POLLIN;
        }
        if (p->up_hi > p->up_lo && !tls_over) { /* up -> server */
            ERR_clear_error();
            int n = SSL_write(p->ssl, p->up + p->up_lo, (int)(p->up_hi - p->up_lo));
            int w = n > 0 ? 0 : wants(p->ssl, n);
            if (n > 0)
                p->up_lo += (size_t)n, moved = 1;
            else if (w < 0)
                tls_over = 1;
            else
                ev_tcp |= w;
        }
        if (p->down_hi < BUF && !tls_over) { /* server -> down */
            ERR_clear_error();
            int n = SSL_read(p->ssl, p->down + p->down_hi, (int)(BUF - p->down_hi));
            int w = n > 0 ? 0 : wants(p->ssl, n);
            if (n > 0)
                p->down_hi += (size_t)n, moved = 1;
            else if (w < 0)
                tls_over = 1;
            else
                ev_tcp |= w;
        }
        if (p->down_hi > p->down_lo) { /* down -> hiredis */
            ssize_t n = send(p->app, p->down + p->down_lo, p->down_hi - p->down_lo, MSG_NOSIGNAL);
            if (n > 0)
                p->down_lo += (size_t)n, moved = 1;
            else if (n < 0 && errno != EAGAIN && errno != EINTR)
                break;
            else
                ev_app |= POLLOUT;
        }
        /* The server is gone: once hiredis has every byte it sent, closing
         * our end is how hiredis learns it (at its next read). */
        if (tls_over && p->down_hi == p->down_lo)
            break;
        if (!moved) {
            struct pollfd fds[2] = {{.fd = p->app, .events = (short)ev_app},
                                    {.fd = p->tcp, .events = (short)ev_tcp}};
            if (poll(fds, 2, -1) < 0 && errno != EINTR)
                break;
        }
    }
    if (!tls_over) {
        ERR_clear_error();
        SSL_shutdown(p->ssl); /* close_notify, once, without waiting for the answer */
    }
    SSL_free(p->ssl);
    close(p->tcp);
    close(p->app);
    ERR_clear_error();
    proxy_free(p);
    return NULL;
}

int flc_tls_proxy_start(SSL *ssl, int tcp, int app, flc_err_t *e)
{
    proxy_t *p = calloc(1, sizeof *p);
    if (p == NULL || (p->up = malloc(BUF)) == NULL || (p->down = malloc(BUF)) == NULL) {
        if (p)
            proxy_free(p);
        return flc_err_set(e, FLC_ENOMEM, "out of memory for a TLS connection");
    }
    p->ssl = ssl;
    p->tcp = tcp;
    p->app = app;
    int fl = fcntl(app, F_GETFL);
    fcntl(app, F_SETFL, fl | O_NONBLOCK);
    /* Every signal blocked in the thread (it inherits the mask): the
     * process's handlers run on its own threads, and a write to a closed
     * TCP socket inside OpenSSL gives EPIPE here, not a SIGPIPE. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    int rc = pthread_create(&t, &at, proxy_main, p);
    pthread_attr_destroy(&at);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        proxy_free(p);
        return flc_err_set(e, FLC_ECONN, "cannot start a TLS connection thread: %s",
                           strerror(rc));
    }
    return FLC_OK;
}
