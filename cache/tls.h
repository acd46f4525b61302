/* tls.h - TLS connections to Redis for a hiredis without TLS (rediss://).
 *
 * Debian 12's hiredis 0.14 has no TLS and no pluggable I/O, so the TLS is
 * done beside it: flc_tls_connect makes the TCP connection, does the TLS
 * handshake with OpenSSL in the caller's thread (so every failure, a
 * certificate that does not verify above all, comes back here, with its
 * reason, before a byte of Redis protocol, AUTH included, is sent), then
 * hands hiredis one end of a socketpair (redisConnectFd) and starts a
 * thread that shovels bytes between the other end and the TLS session.
 * Why a thread and not a stunnel4 process: see docs/tls.md.
 *
 * The result is an ordinary blocking redisContext: timeouts (redisSetTimeout)
 * work on the socketpair as on a socket, and redisFree is all it takes to
 * close it: the thread sees the end of its socket, sends close_notify,
 * closes the TCP connection and frees everything. When the server closes
 * (or the TLS session fails) the thread hands over what it had received and
 * closes its end, so hiredis sees "Server closed the connection". The
 * socketpair and the TCP socket are close-on-exec, so a function instance
 * spawned meanwhile cannot hold a connection open.
 *
 * A process that uses this should ignore SIGPIPE, as for every store
 * connection (hiredis writes to its end of the socketpair); the proxy
 * thread blocks every signal, so it never runs the process's handlers. */
#ifndef FLC_CACHE_TLS_H
#define FLC_CACHE_TLS_H

#include <hiredis/hiredis.h>

#include "base/error.h"
#include "cache/url.h"

/* Connects to host:port over TLS with u's settings (u->cacert: the CAs to
 * trust, else the system's; u->cert/key: a client certificate; u->sni: the
 * name to verify and send, else host; an IP address is verified against
 * the certificate's IP addresses and sent as no SNI). The handshake, TCP
 * connect included, has timeout_ms. On success *out is a connected
 * blocking context (the caller sets its I/O timeout; redisFree closes it).
 * Returns FLC_EAUTH when the certificate does not verify (the message says
 * why: "certificate verify failed: unable to get local issuer
 * certificate", "... hostname mismatch ..."), FLC_EINVAL for a CA,
 * certificate or key file that cannot be read, FLC_ETIMEOUT, FLC_ECONN
 * (refused, reset, not a TLS server), FLC_ENOMEM; every message names
 * host:port and never the password. */
int flc_tls_connect(const flc_url_t *u, const char *host, int port, unsigned timeout_ms,
                    redisContext **out, flc_err_t *e);

#endif
