/* A private redis-server owned by this process: the embedded default when no
 * FLCACHE_REDIS is configured, and the test fixture.
 *
 * The server runs from the Debian redis-server binary (or opts.server_bin)
 * with persistence off (unless opts.persist, which `flcache up` sets), on a
 * unix socket in its own temp directory and, on request, on a loopback TCP
 * port. It is told to die with its parent
 * (PR_SET_PDEATHSIG), so a crashed or killed flcache never leaves it behind. */
#ifndef FLC_CACHE_EMBED_H
#define FLC_CACHE_EMBED_H

#include <stddef.h>
#include <sys/types.h>

#include "base/error.h"

typedef struct flc_embed flc_embed_t;

typedef struct flc_embed_opts {
    int tcp_port;          /* 0: unix socket only; -1: also a free loopback port; >0: that port */
    size_t maxmemory;      /* bytes, 0 = unlimited */
    const char *dir;       /* directory for socket and log, private to this user (see
                              flc_embed_private_dir); NULL = new mkdtemp dir (removed on stop) */
    int detach;            /* 1: survive this process (flcache up): no death signal, own session */
    unsigned start_timeout_ms; /* how long to wait for PING; 0 = 5000 */
    const char *server_bin; /* NULL or "": the redis-server found at build time
                               (the programs pass FLCACHE_REDIS_SERVER) */
    const char *tmpdir;     /* where the mkdtemp dir goes; NULL or "": /tmp (TMPDIR) */
    int persist;            /* 1: append-only file in dir (appendfsync everysec), loaded
                               again by a server started later in the same dir (flcache
                               up); 0: nothing on disk (the throwaway servers) */
    const char *malloc_conf; /* the server's MALLOC_CONF (jemalloc's options); NULL: freed
                                pages kept 5 s, then given back lazily
                                (dirty_decay_ms:5000,muzzy_decay_ms:-1, see embed.c);
                                "default": the caller's environment as it is */
} flc_embed_opts_t;

/* Starts redis-server and waits until it answers PING. opts may be NULL
 * (unix socket only, temp dir). Returns NULL and fills *err on failure. */
flc_embed_t *flc_embed_start(const flc_embed_opts_t *opts, flc_err_t *err);

/* "unix:///tmp/flcache-XXXXXX/redis.sock"; owned by e. */
const char *flc_embed_url(const flc_embed_t *e);

/* "redis://127.0.0.1:<port>" or NULL without TCP; owned by e. */
const char *flc_embed_tcp_url(const flc_embed_t *e);

int flc_embed_port(const flc_embed_t *e);
pid_t flc_embed_pid(const flc_embed_t *e);
const char *flc_embed_dir(const flc_embed_t *e);

/* Kills the server at once (SIGKILL), as a crash would; the object stays
 * valid so the server can be restarted. For failure tests. */
int flc_embed_kill(flc_embed_t *e);

/* Starts the server again on the same socket and port (after a kill). */
int flc_embed_restart(flc_embed_t *e, flc_err_t *err);

/* Stops the server (SIGTERM, then SIGKILL after 2 s), removes the temp dir
 * it created, frees e. NULL is a no-op. */
void flc_embed_stop(flc_embed_t *e);

/* Frees e without stopping the server (for detached servers that must
 * outlive this process). */
void flc_embed_forget(flc_embed_t *e);

/* Async-signal-safe: kills the server of the most recently started
 * non-detached embed and removes its socket, log and directory. For SIGINT
 * and SIGTERM handlers of the CLI. */
void flc_embed_emergency_stop(void);

/* Makes dir a directory only this user can use, for a server's socket, log
 * and pid file: creates it with mode 0700, or accepts an existing one only if
 * it is a directory itself (not a symbolic link), owned by the effective uid,
 * with no permission bits for group or others. Anything else is refused with
 * a message naming dir and what is wrong (FLC_EINVAL): whoever else can write
 * there could plant links or a socket of their own. */
int flc_embed_private_dir(const char *dir, flc_err_t *err);

/* The redis-server binary flc_embed_start would run with opts (NULL: the
 * default found at build time). */
const char *flc_embed_server_bin(const flc_embed_opts_t *opts);

/* Asks the kernel for a free loopback TCP port (bind to port 0). */
int flc_embed_unused_port(flc_err_t *err);

#endif
