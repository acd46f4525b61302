/* URL parsing through libcurl's curl_url API, which understands userinfo,
 * percent-encoding, IPv6 literals and ports; only the unix:// socket path
 * needs a small normalization first (see below). */
#include "cache/url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

static int get_part(CURLU *h, CURLUPart part, char *out, size_t outlen)
{
    char *v = NULL;
    out[0] = '\0';
    if (curl_url_get(h, part, &v, CURLU_URLDECODE) != CURLUE_OK || v == NULL)
        return 0;
    snprintf(out, outlen, "%s", v);
    curl_free(v);
    return 1;
}

/* Reads key=value from a query string "a=1&b=2" into out ("" when absent). */
static void query_value(const char *query, const char *key, char *out, size_t outlen)
{
    out[0] = '\0';
    size_t kl = strlen(key);
    for (const char *p = query; p && *p;) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
            size_t vl = len - kl - 1;
            if (vl >= outlen)
                vl = outlen - 1;
            memcpy(out, p + kl + 1, vl);
            out[vl] = '\0';
            return;
        }
        p = end ? end + 1 : NULL;
    }
}

int flc_url_parse(const char *text, flc_url_t *u, flc_err_t *err)
{
    memset(u, 0, sizeof *u);
    if (text == NULL || *text == '\0')
        return flc_err_set(err, FLC_EINVAL, "empty cache URL (expected redis://host:port "
                                            "or unix:///path/to/redis.sock)");
    int is_unix = strncmp(text, "unix://", 7) == 0;
    if (!is_unix && strncmp(text, "redis://", 8) != 0)
        return flc_err_set(err, FLC_EINVAL,
                           "cache URL '%s' must start with redis:// or unix://", text);
    /* A socket URL has no host: "unix:///p" or "unix://:pw@/p". Like file://
     * URLs, read the empty host as localhost so the generic parser accepts it
     * and the whole path stays the path. */
    char buf[1024];
    if (is_unix) {
        const char *rest = text + 7;
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
        snprintf(buf, sizeof buf, "%s", text);
    }
    CURLU *h = curl_url();
    if (h == NULL)
        return flc_err_set(err, FLC_ENOMEM, "out of memory parsing a URL");
    CURLUcode rc = curl_url_set(h, CURLUPART_URL, buf, CURLU_NON_SUPPORT_SCHEME);
    if (rc != CURLUE_OK) {
        curl_url_cleanup(h);
        return flc_err_set(err, FLC_EINVAL, "cache URL '%s' is malformed: %s", text,
                           curl_url_strerror(rc));
    }
    char tmp[256], query[512];
    get_part(h, CURLUPART_USER, u->user, sizeof u->user);
    get_part(h, CURLUPART_PASSWORD, u->password, sizeof u->password);
    get_part(h, CURLUPART_QUERY, query, sizeof query);
    int ret = FLC_OK;
    query_value(query, "cluster", tmp, sizeof tmp);
    if (strcmp(tmp, "yes") == 0)
        u->cluster = FLC_URL_CLUSTER_YES;
    else if (strcmp(tmp, "no") == 0)
        u->cluster = FLC_URL_CLUSTER_NO;
    else if (tmp[0])
        ret = flc_err_set(err, FLC_EINVAL, "cache URL '%s': cluster=%s (expected yes or no)",
                          text, tmp);
    if (is_unix) {
        u->kind = FLC_URL_UNIX;
        get_part(h, CURLUPART_PATH, u->path, sizeof u->path);
        query_value(query, "db", tmp, sizeof tmp);
        u->db = tmp[0] ? atoi(tmp) : 0;
        query_value(query, "user", tmp, sizeof tmp);
        if (tmp[0]) /* cut to the field as get_part does; the precision says so to gcc */
            snprintf(u->user, sizeof u->user, "%.*s", (int)sizeof u->user - 1, tmp);
        query_value(query, "password", tmp, sizeof tmp);
        if (tmp[0])
            snprintf(u->password, sizeof u->password, "%s", tmp);
        if (ret == FLC_OK && strlen(u->path) < 2)
            ret = flc_err_set(err, FLC_EINVAL, "cache URL '%s' has no socket path", text);
    } else {
        u->kind = FLC_URL_TCP;
        get_part(h, CURLUPART_HOST, u->host, sizeof u->host);
        size_t hl = strlen(u->host);
        if (hl >= 2 && u->host[0] == '[' && u->host[hl - 1] == ']') {
            memmove(u->host, u->host + 1, hl - 2);
            u->host[hl - 2] = '\0';
        }
        u->port = get_part(h, CURLUPART_PORT, tmp, sizeof tmp) ? atoi(tmp) : 6379;
        get_part(h, CURLUPART_PATH, tmp, sizeof tmp);
        u->db = (tmp[0] == '/' && tmp[1]) ? atoi(tmp + 1) : 0;
        if (ret != FLC_OK)
            ;
        else if (u->host[0] == '\0')
            ret = flc_err_set(err, FLC_EINVAL, "cache URL '%s' has no host", text);
        else if (u->port <= 0 || u->port > 65535)
            ret = flc_err_set(err, FLC_EINVAL, "cache URL '%s' has a bad port", text);
    }
    curl_url_cleanup(h);
    return ret;
}

void flc_url_redacted(const flc_url_t *u, char *out, size_t outlen)
{
    const char *auth = u->password[0] ? ":***@" : "";
    if (u->kind == FLC_URL_UNIX)
        snprintf(out, outlen, "unix://%s%s%s", u->user, u->password[0] ? auth : "", u->path);
    else if (strchr(u->host, ':'))
        snprintf(out, outlen, "redis://%s%s[%s]:%d", u->user, auth, u->host, u->port);
    else
        snprintf(out, outlen, "redis://%s%s%s:%d", u->user, auth, u->host, u->port);
}

int flc_url_format(const flc_url_t *u, char *out, size_t outlen)
{
    /* libcurl percent-encodes the user and password; the socket path and
     * the db go where flc_url_parse reads them back. */
    char *user = curl_easy_escape(NULL, u->user, 0);
    char *pass = curl_easy_escape(NULL, u->password, 0);
    int n = -1;
    const char *cl = u->cluster == FLC_URL_CLUSTER_YES  ? "cluster=yes"
                     : u->cluster == FLC_URL_CLUSTER_NO ? "cluster=no"
                                                        : "";
    if (user != NULL && pass != NULL) {
        char auth[800] = "";
        if (u->password[0] || u->user[0])
            snprintf(auth, sizeof auth, "%s%s%s@", user, u->password[0] ? ":" : "", pass);
        if (u->kind == FLC_URL_UNIX)
            n = snprintf(out, outlen, "unix://%s%s?db=%d%s%s", auth, u->path, u->db,
                         cl[0] ? "&" : "", cl);
        else if (strchr(u->host, ':'))
            n = snprintf(out, outlen, "redis://%s[%s]:%d/%d%s%s", auth, u->host, u->port, u->db,
                         cl[0] ? "?" : "", cl);
        else
            n = snprintf(out, outlen, "redis://%s%s:%d/%d%s%s", auth, u->host, u->port, u->db,
                         cl[0] ? "?" : "", cl);
    }
    curl_free(user);
    curl_free(pass);
    return n < 0 || (size_t)n >= outlen ? FLC_EINVAL : FLC_OK;
}

int flc_url_same_endpoint(const flc_url_t *a, const flc_url_t *b)
{
    if (a->kind != b->kind)
        return 0;
    if (a->kind == FLC_URL_UNIX)
        return strcmp(a->path, b->path) == 0;
    return a->port == b->port && strcasecmp(a->host, b->host) == 0;
}
