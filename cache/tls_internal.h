/* tls_internal.h - between the TLS connect (tls.c) and its proxy thread
 * (tls_proxy.c); never leaves cache/. */
#ifndef FLC_CACHE_TLS_INTERNAL_H
#define FLC_CACHE_TLS_INTERNAL_H

#include <openssl/ssl.h>

#include "base/error.h"

/* Starts the detached thread that carries bytes between app (its end of the
 * socketpair, made non-blocking here) and ssl (handshake done, on the
 * non-blocking socket tcp). On success the thread owns ssl, tcp and app and
 * frees them when either side closes; on failure (FLC_ENOMEM, FLC_ECONN
 * when no thread can be made) nothing is freed. */
int flc_tls_proxy_start(SSL *ssl, int tcp, int app, flc_err_t *e);

#endif
