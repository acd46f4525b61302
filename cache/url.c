/* URL parsing through libcurl's curl_url API, which understands userinfo,
 * percent-encoding, IPv6 literals and ports; only the unix:// socket path
 * needs a small normalization first (see below). */
#include "cache/url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

/* Too long for its field: a value cut to fit would connect as someone else
 * or to somewhere else, so the parse fails instead. */
#define TOO_LONG (-1)

/* Copies one part of h into out: 1 when present, 0 when absent, TOO_LONG
 * when it does not fit (out is then ""). */
static int get_part(CURLU *h, CURLUPart part, char *out, size_t outlen)
{
    char *v = NULL;
    out[0] = '\0';
    if (curl_url_get(h, part, &v, CURLU_URLDECODE) != CURLUE_OK || v == NULL)
        return 0;
    int rc = strlen(v) < outlen ? 1 : TOO_LONG;
    if (rc == 1)
        memcpy(out, v, strlen(v) + 1);
    curl_free(v);
    return rc;
}

/* Reads key=value from a query string "a=1&b=2" into out ("" when absent):
 * 1 found, 0 absent, TOO_LONG when the value does not fit. */
static int query_value(const char *query, const char *key, char *out, size_t outlen)
{
    out[0] = '\0';
    size_t kl = strlen(key);
    for (const char *p = query; p && *p;) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
            size_t vl = len - kl - 1;
            if (vl >= outlen)
                return TOO_LONG;
            memcpy(out, p + kl + 1, vl);
            out[vl] = '\0';
            return 1;
        }
        p = end ? end + 1 : NULL;
    }
    return 0;
}

enum { URL_MAX = 1000 }; /* longest URL flc_url_parse reads (and format writes) */

/* text for messages: the password between "user:" and "@" and the value of
 * every password= query parameter become "***", so no error ever shows it.
 * Written into a separate buffer, bounded: an in-place rewrite overflowed
 * when "***" was longer than a short password, and masked only the first
 * password= of a URL that had two (both found by fuzz/fuzz_url). */
static void redact_text(const char *text, char *out, size_t outlen)
{
    char buf[1024];
    size_t o = 0;
    const char *scheme_end = strstr(text, "://");
    const char *auth_end = scheme_end ? strchr(scheme_end + 3, '@') : NULL;
    const char *slash = scheme_end ? strchr(scheme_end + 3, '/') : NULL;
    const char *colon = NULL;
    if (auth_end != NULL && (slash == NULL || auth_end < slash))
        colon = memchr(scheme_end + 3, ':', (size_t)(auth_end - (scheme_end + 3)));
    for (const char *c = text; *c != '\0' && o + 13 < sizeof buf;) {
        if (colon != NULL && c == colon + 1) {
            memcpy(buf + o, "***", 3);
            o += 3;
            c = auth_end; /* the '@' is copied next */
        } else if (strncmp(c, "password=", 9) == 0 && (c == text || c[-1] == '?' || c[-1] == '&')) {
            memcpy(buf + o, "password=***", 12);
            o += 12;
            c += 9;
            while (*c != '\0' && *c != '&')
                c++;
        } else {
            buf[o++] = *c++;
        }
    }
    buf[o] = '\0';
    /* A message must keep its point ("its host is too long") inside the
     * error's 256 bytes, so a very long URL is shown by its start. */
    if (strlen(buf) > 100)
        memcpy(buf + 96, "...", 4);
    snprintf(out, outlen, "%s", buf);
}

/* A whole number in 0..max from a URL part ("" is 0); -1 when it is not. */
static long small_number(const char *s, long max)
{
    if (*s == '\0')
        return 0;
    char *end = NULL;
    long v = strtol(s, &end, 10);
    return (*end != '\0' || v < 0 || v > max || (*s < '0' || *s > '9')) ? -1 : v;
}

/* The TLS query options (url.h) into u: only on rediss://, and never one
 * that turns verification off, so a URL cannot quietly ask for less
 * security than it appears to. */
static int tls_options(const char *query, int is_tls, const char *text, flc_url_t *u,
                       const char **too_long, flc_err_t *err)
{
    static const char *const refused[] = {"insecure", "verify", "tls_verify", "skip_verify",
                                          "ssl_cert_reqs"};
    char tmp[256];
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (query_value(query, refused[i], tmp, sizeof tmp) != 0)
            return flc_err_set(err, FLC_EINVAL,
                               "cache URL '%s': %s= is not offered: certificates are always "
                               "verified (give the CA with cacert=, the name with sni=)",
                               text, refused[i]);
    struct {
        const char *key;
        char *out;
    } opt[] = {{"cacert", u->cacert}, {"cert", u->cert}, {"key", u->key}, {"sni", u->sni}};
    for (size_t i = 0; i < 4; i++) {
        int got = query_value(query, opt[i].key, opt[i].out, sizeof u->cacert);
        if (got == TOO_LONG)
            *too_long = opt[i].key;
        else if (got == 1 && !is_tls)
            return flc_err_set(err, FLC_EINVAL,
                               "cache URL '%s': %s= is a TLS option: use rediss://", text,
                               opt[i].key);
        else if (got == 1 && opt[i].out[0] == '\0')
            return flc_err_set(err, FLC_EINVAL, "cache URL '%s': %s= is empty", text,
                               opt[i].key);
    }
    if (u->key[0] && !u->cert[0])
        return flc_err_set(err, FLC_EINVAL, "cache URL '%s': key= without cert=", text);
    u->tls = is_tls;
    return FLC_OK;
}

int flc_url_parse(const char *full, flc_url_t *u, flc_err_t *err)
{
    memset(u, 0, sizeof *u);
    if (full == NULL || *full == '\0')
        return flc_err_set(err, FLC_EINVAL, "empty cache URL (expected redis://host:port "
                                            "or unix:///path/to/redis.sock)");
    /* Messages name the URL as `text`, its password redacted; `full` is
     * what is parsed. */
    char text[1024];
    redact_text(full, text, sizeof text);
    /* The parse buffers below hold URL_MAX bytes and "localhost": a longer
     * URL was cut silently and its start parsed (fuzz/fuzz_url). */
    if (strlen(full) > URL_MAX)
        return flc_err_set(err, FLC_EINVAL, "cache URL '%s' is too long (%zu bytes, limit %d)",
                           text, strlen(full), URL_MAX);
    int is_unix = strncmp(full, "unix://", 7) == 0;
    int is_tls = strncmp(full, "rediss://", 9) == 0;
    if (!is_unix && !is_tls && strncmp(full, "redis://", 8) != 0)
        return flc_err_set(err, FLC_EINVAL,
                           "cache URL '%s' must start with redis://, rediss:// or unix://",
                           text);
    /* A socket URL has no host: "unix:///p" or "unix://:pw@/p". Like file://
     * URLs, read the empty host as localhost so the generic parser accepts it
     * and the whole path stays the path. */
    char buf[1024];
    if (is_unix) {
        const char *rest = full + 7;
        const char *at = strchr(rest, '@');
        const char *slash = strchr(rest, '/');
        if (at && slash && at < slash && at[1] == '/')
            snprintf(buf, sizeof buf, "unix://%.*slocalhost%s", (int)(at - rest + 1), rest,
                     at + 1);
        else if (rest[0] == '/')
            snprintf(buf, sizeof buf, "unix://localhost%s", rest);
        else
            return flc_err_set(err, FLC_EINVAL,
                               "cache URL '%s': a unix socket URL needs an absolute path "
                               "(unix:///path/to/redis.sock)",
                               text);
    } else {
        snprintf(buf, sizeof buf, "%s", full);
    }
    if (strlen(full) >= sizeof buf - 16)
        return flc_err_set(err, FLC_EINVAL, "cache URL '%s' is longer than %zu characters",
                           text, sizeof buf - 16);
    CURLU *h = curl_url();
    if (h == NULL)
        return flc_err_set(err, FLC_ENOMEM, "out of memory parsing a URL");
    /* PATH_AS_IS: a socket path is a file name, taken as written; libcurl
     * would squash "/./" and "/../" (and only literal ones, so "/.%2f"
     * decoded to a path that read back shorter: fuzz/fuzz_url). */
    CURLUcode rc =
        curl_url_set(h, CURLUPART_URL, buf, CURLU_NON_SUPPORT_SCHEME | CURLU_PATH_AS_IS);
    if (rc != CURLUE_OK) {
        curl_url_cleanup(h);
        return flc_err_set(err, FLC_EINVAL, "cache URL '%s' is malformed: %s", text,
                           curl_url_strerror(rc));
    }
    char tmp[256], query[URL_MAX + 24];
    /* Every part must fit its field: which one did not, by name. */
    const char *too_long = NULL;
    if (get_part(h, CURLUPART_USER, u->user, sizeof u->user) == TOO_LONG)
        too_long = "user name";
    if (get_part(h, CURLUPART_PASSWORD, u->password, sizeof u->password) == TOO_LONG)
        too_long = "password";
    if (get_part(h, CURLUPART_QUERY, query, sizeof query) == TOO_LONG)
        too_long = "query";
    int ret = FLC_OK;
    if (query_value(query, "cluster", tmp, sizeof tmp) == TOO_LONG)
        too_long = "cluster= value";
    if (strcmp(tmp, "yes") == 0)
        u->cluster = FLC_URL_CLUSTER_YES;
    else if (strcmp(tmp, "no") == 0)
        u->cluster = FLC_URL_CLUSTER_NO;
    else if (tmp[0])
        ret = flc_err_set(err, FLC_EINVAL, "cache URL '%s': cluster=%s (expected yes or no)",
                          text, tmp);
    if (ret == FLC_OK)
        ret = tls_options(query, is_tls, text, u, &too_long, err);
    if (is_unix) {
        u->kind = FLC_URL_UNIX;
        if (get_part(h, CURLUPART_PATH, u->path, sizeof u->path) == TOO_LONG)
            too_long = "socket path";
        if (query_value(query, "db", tmp, sizeof tmp) == TOO_LONG)
            too_long = "db= value";
        long db = small_number(tmp, 1000000);
        u->db = db < 0 ? 0 : (int)db;
        if (ret == FLC_OK && db < 0)
            ret = flc_err_set(err, FLC_EINVAL, "cache URL '%s': db=%s is not a database "
                              "number", text, tmp);
        if (query_value(query, "user", tmp, sizeof tmp) == TOO_LONG || strlen(tmp) >= sizeof u->user)
            too_long = "user name";
        else if (tmp[0])
            memcpy(u->user, tmp, strlen(tmp) + 1);
        if (query_value(query, "password", tmp, sizeof tmp) == TOO_LONG)
            too_long = "password";
        else if (tmp[0])
            memcpy(u->password, tmp, strlen(tmp) + 1);
        if (ret == FLC_OK && strlen(u->path) < 2)
            ret = flc_err_set(err, FLC_EINVAL, "cache URL '%s' has no socket path", text);
    } else {
        u->kind = FLC_URL_TCP;
        if (get_part(h, CURLUPART_HOST, u->host, sizeof u->host) == TOO_LONG)
            too_long = "host";
        /* A percent-encoded host decodes to a name libcurl does not
         * normalise ("%379" is "79", which reads back as 0.0.0.79): host
         * names never need it, so it is refused rather than guessed. */
        const char *auth = strstr(buf, "://"); /* what libcurl parsed, not the message text */
        auth = auth ? auth + 3 : buf;
        size_t al = strcspn(auth, "/?#");
        const char *at = NULL; /* the host starts after the last '@' of the authority */
        for (size_t i = 0; i < al; i++)
            if (auth[i] == '@')
                at = auth + i;
        const char *host = at ? at + 1 : auth;
        if (ret == FLC_OK && memchr(host, '%', al - (size_t)(host - auth)) != NULL)
            ret = flc_err_set(err, FLC_EINVAL, "cache URL: the host is percent-encoded; write "
                              "it as a plain name or address");
        /* Names, IPv4 and (bracketed) IPv6 addresses only: anything else
         * would not read back the same from the URL flc_url_format writes. */
        for (const char *c = u->host; ret == FLC_OK && *c; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                  (*c >= '0' && *c <= '9') || *c == '.' || *c == '-' || *c == '_' || *c == ':' ||
                  *c == '[' || *c == ']'))
                ret = flc_err_set(err, FLC_EINVAL, "cache URL: the host has a character other "
                                  "than letters, digits, '.', '-', '_' and ':' (IPv6)");
        size_t hl = strlen(u->host);
        if (hl >= 2 && u->host[0] == '[' && u->host[hl - 1] == ']') {
            memmove(u->host, u->host + 1, hl - 2);
            u->host[hl - 2] = '\0';
        }
        u->port = get_part(h, CURLUPART_PORT, tmp, sizeof tmp) ? atoi(tmp) : 6379;
        if (get_part(h, CURLUPART_PATH, tmp, sizeof tmp) == TOO_LONG)
            too_long = "path";
        long db = small_number(tmp[0] == '/' ? tmp + 1 : tmp, 1000000);
        u->db = db < 0 ? 0 : (int)db;
        if (ret != FLC_OK)
            ;
        else if (db < 0)
            ret = flc_err_set(err, FLC_EINVAL, "cache URL '%s': '%s' is not a database "
                              "number", text, tmp + (tmp[0] == '/'));
        else if (u->host[0] == '\0')
            ret = flc_err_set(err, FLC_EINVAL, "cache URL '%s' has no host", text);
        else if (u->port <= 0 || u->port > 65535)
            ret = flc_err_set(err, FLC_EINVAL, "cache URL '%s' has a bad port", text);
    }
    curl_url_cleanup(h);
    if (too_long != NULL) {
        memset(u, 0, sizeof *u); /* nothing half-parsed (nor a password) stays behind */
        return flc_err_set(err, FLC_EINVAL, "cache URL '%s': its %s is too long", text,
                           too_long);
    }
    return ret;
}

void flc_url_redacted(const flc_url_t *u, char *out, size_t outlen)
{
    const char *auth = u->password[0] ? ":***@" : "";
    if (u->kind == FLC_URL_UNIX)
        snprintf(out, outlen, "unix://%s%s%s", u->user, u->password[0] ? auth : "", u->path);
    else if (strchr(u->host, ':'))
        snprintf(out, outlen, "%s://%s%s[%s]:%d", u->tls ? "rediss" : "redis", u->user, auth,
                 u->host, u->port);
    else
        snprintf(out, outlen, "%s://%s%s%s:%d", u->tls ? "rediss" : "redis", u->user, auth,
                 u->host, u->port);
}

void flc_url_copy_security(flc_url_t *dst, const flc_url_t *src)
{
    memcpy(dst->user, src->user, sizeof dst->user);
    memcpy(dst->password, src->password, sizeof dst->password);
    dst->db = src->db;
    dst->tls = src->tls;
    memcpy(dst->cacert, src->cacert, sizeof dst->cacert);
    memcpy(dst->cert, src->cert, sizeof dst->cert);
    memcpy(dst->key, src->key, sizeof dst->key);
    memcpy(dst->sni, src->sni, sizeof dst->sni);
}

/* A socket path as it goes in a URL: every byte but the unreserved ones and
 * '/' percent-encoded, so flc_url_parse (which decodes the path) reads back
 * the same path even when it holds a space, '%', '?' or '#'. FLC_EINVAL when
 * out is too small. */
static int path_escape(const char *p, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *c = (const unsigned char *)p; *c; c++) {
        int plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                    (*c >= '0' && *c <= '9') || strchr("-._~/", *c) != NULL;
        if (o + (plain ? 1 : 3) >= cap)
            return FLC_EINVAL;
        if (plain) {
            out[o++] = (char)*c;
        } else {
            out[o++] = '%';
            out[o++] = hex[*c >> 4];
            out[o++] = hex[*c & 15];
        }
    }
    out[o] = '\0';
    return FLC_OK;
}

/* The query of a TCP URL: cl (cluster=...) and the TLS options, each
 * value escaped as a path so flc_url_parse reads back the same. */
static int tls_query(const flc_url_t *u, const char *cl, char *out, size_t cap)
{
    snprintf(out, cap, "%s", cl);
    const char *keys[] = {"cacert", "cert", "key", "sni"};
    const char *vals[] = {u->cacert, u->cert, u->key, u->sni};
    for (size_t i = 0; i < 4 && u->tls; i++) {
        char esc[sizeof u->cacert * 3];
        if (vals[i][0] == '\0')
            continue;
        if (path_escape(vals[i], esc, sizeof esc) != FLC_OK)
            return FLC_EINVAL;
        size_t o = strlen(out);
        int n = snprintf(out + o, cap - o, "%s%s=%s", o ? "&" : "", keys[i], esc);
        if (n < 0 || (size_t)n >= cap - o)
            return FLC_EINVAL;
    }
    return FLC_OK;
}

int flc_url_format(const flc_url_t *u, char *out, size_t outlen)
{
    /* libcurl percent-encodes the user and password, path_escape the
     * socket path; the db goes where flc_url_parse reads it back. */
    char *user = curl_easy_escape(NULL, u->user, 0);
    char *pass = curl_easy_escape(NULL, u->password, 0);
    int n = -1;
    const char *cl = u->cluster == FLC_URL_CLUSTER_YES  ? "cluster=yes"
                     : u->cluster == FLC_URL_CLUSTER_NO ? "cluster=no"
                                                        : "";
    char path[sizeof u->path * 3], query[URL_MAX + 24];
    if (user != NULL && pass != NULL && path_escape(u->path, path, sizeof path) == FLC_OK) {
        /* Room for both fully percent-encoded (3 bytes each): a cut
         * userinfo lost its '@' and did not parse back (fuzz/fuzz_url). */
        char auth[3 * (sizeof u->user + sizeof u->password) + 4] = "";
        if (u->password[0] || u->user[0])
            snprintf(auth, sizeof auth, "%s%s%s@", user, u->password[0] ? ":" : "", pass);
        if (u->kind == FLC_URL_UNIX)
            n = snprintf(out, outlen, "unix://%s%s?db=%d%s%s", auth, path, u->db,
                         cl[0] ? "&" : "", cl);
        else if (tls_query(u, cl, query, sizeof query) != FLC_OK)
            n = -1;
        else if (strchr(u->host, ':'))
            n = snprintf(out, outlen, "%s://%s[%s]:%d/%d%s%s", u->tls ? "rediss" : "redis", auth,
                         u->host, u->port, u->db, query[0] ? "?" : "", query);
        else
            n = snprintf(out, outlen, "%s://%s%s:%d/%d%s%s", u->tls ? "rediss" : "redis", auth,
                         u->host, u->port, u->db, query[0] ? "?" : "", query);
    }
    curl_free(user);
    curl_free(pass);
    return n < 0 || (size_t)n >= outlen || n > URL_MAX ? FLC_EINVAL : FLC_OK;
}

int flc_url_same_endpoint(const flc_url_t *a, const flc_url_t *b)
{
    if (a->kind != b->kind)
        return 0;
    if (a->kind == FLC_URL_UNIX)
        return strcmp(a->path, b->path) == 0;
    return a->port == b->port && strcasecmp(a->host, b->host) == 0;
}
