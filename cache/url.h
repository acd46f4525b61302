/* Where the cache is: parsing of redis:// and unix:// URLs (libcurl's parser).
 *
 *   redis://[[user]:password@]host[:port][/db]     TCP (IPv4, [IPv6], name)
 *   unix:///path/to/redis.sock[?db=N&user=U&password=P]
 *   unix://[[user]:password@]/path/to/redis.sock
 * Port defaults to 6379, db to 0. Passwords may be percent-encoded.
 *
 * Both forms take `?cluster=yes|no` (with unix://, next to db= and the
 * others, joined by &): yes says the server is a Redis Cluster node (the
 * store routes every key to its slot's owner), no says it is a single
 * server. Without it the store asks the server once when it opens
 * (INFO cluster, sent with the AUTH), so the same URL works for both. */
#ifndef FLC_CACHE_URL_H
#define FLC_CACHE_URL_H

#include "base/error.h"

enum { FLC_URL_TCP = 1, FLC_URL_UNIX = 2 };

/* flc_url_t.cluster: what ?cluster= said. */
enum { FLC_URL_CLUSTER_AUTO = 0, FLC_URL_CLUSTER_YES = 1, FLC_URL_CLUSTER_NO = 2 };

typedef struct flc_url {
    int kind;            /* FLC_URL_TCP or FLC_URL_UNIX */
    char host[256];      /* TCP: host without brackets */
    int port;            /* TCP */
    char path[256];      /* UNIX: socket path */
    char user[128];      /* ACL user, "" = default */
    char password[256];  /* "" = none */
    int db;
    int cluster;         /* FLC_URL_CLUSTER_*: ?cluster=yes|no, AUTO when absent */
} flc_url_t;

/* Parses text into *u. Returns FLC_EINVAL with a message naming the problem. */
int flc_url_parse(const char *text, flc_url_t *u, flc_err_t *err);

/* Writes the whole URL, credentials included (percent-encoded), in a form
 * flc_url_parse reads back; FLC_EINVAL when out is too small. */
int flc_url_format(const flc_url_t *u, char *out, size_t outlen);

/* 1 when a and b name the same server (host and port, or socket path). */
int flc_url_same_endpoint(const flc_url_t *a, const flc_url_t *b);

/* Writes the URL without its password (for messages and logs). */
void flc_url_redacted(const flc_url_t *u, char *out, size_t outlen);

#endif
