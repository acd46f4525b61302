/* Where the cache is: parsing of redis:// and unix:// URLs (libcurl's parser).
 *
 *   redis://[[user]:password@]host[:port][/db]     TCP (IPv4, [IPv6], name)
 *   unix:///path/to/redis.sock[?db=N&user=U&password=P]
 *   unix://[[user]:password@]/path/to/redis.sock
 *   rediss://[[user]:password@]host[:port][/db][?cacert=F&cert=F&key=F&sni=N]
 * Port defaults to 6379, db to 0. Passwords may be percent-encoded.
 *
 * rediss:// is TLS (cache/tls.h, docs/tls.md): the server's certificate is
 * always verified, against the CA file cacert= (PEM) or the system's CAs,
 * and must name the host (or sni=, which is also sent as SNI); cert= and
 * key= are a client certificate for servers that ask for one (key defaults
 * to cert's file). There is no option to skip verification, and these
 * options on a redis:// URL are an error (they would not be used).
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
    int tls;             /* 1: rediss:// (TCP only) */
    char cacert[256];    /* rediss: PEM file of the CAs to trust; "" = the system's */
    char cert[256];      /* rediss: client certificate (PEM); "" = none */
    char key[256];       /* rediss: its private key; "" = in cert's file */
    char sni[256];       /* rediss: name to verify and send as SNI; "" = host */
} flc_url_t;

/* Parses text into *u. Returns FLC_EINVAL with a message naming the problem. */
int flc_url_parse(const char *text, flc_url_t *u, flc_err_t *err);

/* Writes the whole URL, credentials included (percent-encoded), in a form
 * flc_url_parse reads back; FLC_EINVAL when out is too small. */
int flc_url_format(const flc_url_t *u, char *out, size_t outlen);

/* 1 when a and b name the same server (host and port, or socket path). */
int flc_url_same_endpoint(const flc_url_t *a, const flc_url_t *b);

/* Copies what makes a connection safe from src into dst, whose host it
 * keeps: user, password, db, TLS and its settings. For a URL built from a
 * node address (a tracker entry, a redirect): the caller's credentials must
 * never travel over a weaker transport than the caller's own. */
void flc_url_copy_security(flc_url_t *dst, const flc_url_t *src);

/* Writes the URL without its password (for messages and logs). */
void flc_url_redacted(const flc_url_t *u, char *out, size_t outlen);

#endif
