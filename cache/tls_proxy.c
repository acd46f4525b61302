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
#define _GNU_SOURCE /* POLLRDHUP */
#include "cache/tls_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

enum { BUF = 128 * 1024 };

typedef struct proxy {
    struct proxy *prev, *next; /* in g_live */
    SSL *ssl;
    int tcp, app;
    char *up, *down;       /* app -> server, server -> app */
    size_t up_lo, up_hi;   /* pending bytes are [lo, hi) */
    size_t down_lo, down_hi;
} proxy_t;

/* Process exit runs OpenSSL's atexit cleanup, which frees what a proxy
 * thread still uses (a program closes its store and returns from main while
 * the thread sends close_notify). So every pass that calls OpenSSL holds
 * this lock for reading, and our own atexit handler, registered after
 * OpenSSL's and so run before it, takes it for writing and sets exiting:
 * from then on the threads touch nothing of OpenSSL's. Passes never block
 * (poll is outside the lock), so the handler waits a few microseconds. */
static pthread_rwlock_t g_ssl_lock = PTHREAD_RWLOCK_INITIALIZER;
static int g_exiting;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* The live proxies, so that exit first lets those whose connection was
 * just closed (redisFree, then return from main) finish their cleanup:
 * otherwise every program that closes its store and exits would leave the
 * session behind (valgrind: definitely lost). */
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cv = PTHREAD_COND_INITIALIZER;
static proxy_t *g_live;

/* How many live proxies have lost their hiredis end (closing now). */
static int closing_count(void)
{
    int n = 0;
    for (proxy_t *p = g_live; p != NULL; p = p->next) {
        struct pollfd f = {.fd = p->app, .events = POLLRDHUP};
        n += poll(&f, 1, 0) == 1 && (f.revents & (POLLRDHUP | POLLHUP)) != 0;
    }
    return n;
}

static void at_exit(void)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 1; /* a bound: a thread stuck in close_notify is left */
    pthread_mutex_lock(&g_mu);
    while (closing_count() > 0 && pthread_cond_timedwait(&g_cv, &g_mu, &until) == 0)
        ;
    pthread_mutex_unlock(&g_mu);
    pthread_rwlock_wrlock(&g_ssl_lock);
    g_exiting = 1;
    pthread_rwlock_unlock(&g_ssl_lock);
}

/* A child forked without exec (the harness's cases) has none of the proxy
 * threads, but may have copied the lock while one held it: it starts with a
 * fresh one (its own connections work as in any process; the copied
 * sessions are simply never touched). */
static void after_fork_child(void)
{
    pthread_rwlock_t fresh = PTHREAD_RWLOCK_INITIALIZER;
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    g_ssl_lock = fresh;
    g_mu = mu;
    g_live = NULL;
}

static void register_at_exit(void)
{
    atexit(at_exit);
    pthread_atfork(NULL, NULL, after_fork_child);
}

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
        pthread_rwlock_rdlock(&g_ssl_lock);
        if (g_exiting) {
            pthread_rwlock_unlock(&g_ssl_lock);
            return NULL; /* the process is ending: leave everything to it */
        }
        compact(p->up, &p->up_lo, &p->up_hi);
        compact(p->down, &p->down_lo, &p->down_hi);
        if (p->up_hi < BUF) { /* hiredis -> up */
            ssize_t n = read(p->app, p->up + p->up_hi, BUF - p->up_hi);
            if (n > 0)
                p->up_hi += (size_t)n, moved = 1;
            else if (n == 0 || (errno != EAGAIN && errno != EINTR))
                goto done; /* redisFree: the connection is done (lock held) */
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
                goto done;
            else
                ev_app |= POLLOUT;
        }
        /* The server is gone: once hiredis has every byte it sent, closing
         * our end is how hiredis learns it (at its next read). */
        if (tls_over && p->down_hi == p->down_lo)
            goto done;
        pthread_rwlock_unlock(&g_ssl_lock);
        if (!moved) {
            struct pollfd fds[2] = {{.fd = p->app, .events = (short)ev_app},
                                    {.fd = p->tcp, .events = (short)ev_tcp}};
            if (poll(fds, 2, -1) < 0 && errno != EINTR) {
                pthread_rwlock_rdlock(&g_ssl_lock);
                goto done;
            }
        }
    }
done: /* with the lock held for reading */
    if (g_exiting) {
        pthread_rwlock_unlock(&g_ssl_lock);
        return NULL;
    }
    if (!tls_over) {
        ERR_clear_error();
        SSL_shutdown(p->ssl); /* close_notify, once, without waiting for the answer */
    }
    SSL_free(p->ssl);
    /* This thread's OpenSSL state (its error queue) now, not in a
     * thread-exit destructor that may run after the process's cleanup. */
    OPENSSL_thread_stop();
    pthread_rwlock_unlock(&g_ssl_lock);
    pthread_mutex_lock(&g_mu);
    if (p->prev)
        p->prev->next = p->next;
    else
        g_live = p->next;
    if (p->next)
        p->next->prev = p->prev;
    pthread_cond_broadcast(&g_cv);
    pthread_mutex_unlock(&g_mu);
    close(p->tcp);
    close(p->app);
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
    pthread_once(&g_once, register_at_exit);
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
    pthread_mutex_lock(&g_mu);
    p->next = g_live;
    if (g_live)
        g_live->prev = p;
    g_live = p;
    int rc = pthread_create(&t, &at, proxy_main, p);
    if (rc != 0) {
        g_live = p->next;
        if (g_live)
            g_live->prev = NULL;
    }
    pthread_mutex_unlock(&g_mu);
    pthread_attr_destroy(&at);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        proxy_free(p);
        return flc_err_set(e, FLC_ECONN, "cannot start a TLS connection thread: %s",
                           strerror(rc));
    }
    return FLC_OK;
}
