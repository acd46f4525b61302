/* The cold tier's S3 backend: path-style requests <base>/<bucket>/<object>
 * over one reused libcurl handle, signed with AWS SigV4 by libcurl itself
 * (CURLOPT_AWS_SIGV4 "aws:amz:<region>:s3", key and secret as USERPWD).
 *
 * The payload is declared UNSIGNED-PAYLOAD (x-amz-content-sha256), as S3
 * allows: integrity is carried by our own CRC-32C trailer, checked on every
 * read, so hashing each spilled value a second time with SHA-256 would only
 * add cost. A PUT is acknowledged by HTTP 200 only after S3 has stored the
 * whole object, which is when the store may drop the Redis copy. */
#include "cache/cold_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

typedef struct body {
    uint8_t *p;
    size_t n, cap;
    size_t limit; /* refuse bodies beyond this (a broken server) */
} body_t;

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *ud)
{
    body_t *b = ud;
    size_t n = size * nmemb;
    if (b->n + n > b->limit)
        return 0;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 65536;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *q = realloc(b->p, cap);
        if (q == NULL)
            return 0;
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, ptr, n);
    b->n += n;
    return n;
}

typedef struct upload {
    const uint8_t *parts[2];
    size_t lens[2];
    int i;
    size_t off;
} upload_t;

/* Streams body then trailer without joining them into one buffer. */
static size_t on_read(char *dst, size_t size, size_t nmemb, void *ud)
{
    upload_t *u = ud;
    size_t want = size * nmemb, done = 0;
    while (done < want && u->i < 2) {
        size_t left = u->lens[u->i] - u->off;
        size_t n = left < want - done ? left : want - done;
        memcpy(dst + done, u->parts[u->i] + u->off, n);
        done += n;
        u->off += n;
        if (u->off == u->lens[u->i]) {
            u->i++;
            u->off = 0;
        }
    }
    return done;
}

static const char *or_default(const char *v, const char *def)
{
    return v && *v ? v : def;
}

void flc_cold_s3_object_url(const flc_cold_t *c, const char *key, char *out, size_t outlen)
{
    char name[FLC_COLD_NAME_MAX];
    flc_cold_object_name(key, name, sizeof name);
    snprintf(out, outlen, "%s/%s/%s", c->base, c->bucket, name);
}

/* Runs one request on the shared handle. method: "PUT", "GET", "DELETE",
 * "HEAD"; url the full URL; up (PUT) the upload; out (GET) the body.
 * *status gets the HTTP status. */
static int request(flc_cold_t *c, const char *method, const char *url, upload_t *up,
                   curl_off_t up_len, body_t *out, long *status)
{
    CURL *h = c->curl;
    curl_easy_reset(h);
    char sig[128];
    snprintf(sig, sizeof sig, "aws:amz:%s:s3", c->region);
    struct curl_slist *hdrs = curl_slist_append(NULL, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
    if (c->token[0]) {
        char th[1100];
        snprintf(th, sizeof th, "x-amz-security-token: %s", c->token);
        hdrs = curl_slist_append(hdrs, th);
    }
    if (up)
        hdrs = curl_slist_append(hdrs, "Content-Type: application/octet-stream");
    /* No "Expect: 100-continue" round trip before each upload: curl sends
     * the body at once. Not by an "Expect:" header line: libcurl before 8.3
     * (Debian 12 has 7.88) lists that removal directive in SignedHeaders
     * although it sends no such header (curl issue 11664), a signature AWS
     * refuses; tests/test_sigv4.c (botocore's check) caught it. */
    curl_easy_setopt(h, CURLOPT_EXPECT_100_TIMEOUT_MS, 0L);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_AWS_SIGV4, sig);
    curl_easy_setopt(h, CURLOPT_USERPWD, c->userpwd);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    body_t sink = {.limit = 1 << 20};
    body_t *b = out ? out : &sink;
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, b);
    if (up) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, up);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, up_len);
    } else if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    CURLcode cc = curl_easy_perform(h);
    curl_slist_free_all(hdrs);
    *status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, status);
    if (cc != CURLE_OK) {
        free(sink.p);
        int code = cc == CURLE_OPERATION_TIMEDOUT ? FLC_ETIMEOUT
                   : cc == CURLE_COULDNT_CONNECT  ? FLC_ECONN
                                                  : FLC_EIO;
        return flc_err_set(&c->err, code, "cold tier: %s %s: %s", method, url,
                           curl_easy_strerror(cc));
    }
    if (*status >= 300 && *status != 404) {
        /* S3 explains itself in an XML <Message>; keep a short excerpt. */
        char msg[160] = "";
        if (b->n) {
            const char *from = (const char *)b->p;
            for (size_t i = 0; i + 9 <= b->n; i++)
                if (memcmp(b->p + i, "<Message>", 9) == 0) {
                    from = (const char *)b->p + i + 9;
                    break;
                }
            size_t len = b->n - (size_t)(from - (const char *)b->p);
            const char *end = memchr(from, '<', len);
            if (end)
                len = (size_t)(end - from);
            snprintf(msg, sizeof msg, ": %.*s", (int)(len < 120 ? len : 120), from);
        }
        free(sink.p);
        int code = *status == 403 || *status == 401 ? FLC_EAUTH : FLC_EPROTO;
        return flc_err_set(&c->err, code, "cold tier: %s %s: HTTP %ld%s", method, url, *status,
                           msg);
    }
    free(sink.p);
    return FLC_OK;
}

int flc_cold_s3_open(flc_cold_t *c, const char *url, const flc_cold_opts_t *o)
{
    size_t bl = strlen(url);
    while (bl > 0 && url[bl - 1] == '/')
        bl--;
    if (bl >= sizeof c->base)
        return flc_err_set(&c->err, FLC_EINVAL, "cold tier URL is too long");
    memcpy(c->base, url, bl);
    c->base[bl] = '\0';
    const char *bucket = or_default(o->bucket, "flcache");
    const char *region = or_default(o->region, "us-east-1");
    const char *ak = or_default(o->access_key, NULL);
    const char *sk = or_default(o->secret_key, NULL);
    const char *tok = or_default(o->session_token, "");
    if (ak == NULL || sk == NULL)
        return flc_err_set(&c->err, FLC_EAUTH,
                           "cold tier %s: no credentials (set AWS_ACCESS_KEY_ID and "
                           "AWS_SECRET_ACCESS_KEY)", c->base);
    snprintf(c->bucket, sizeof c->bucket, "%s", bucket);
    snprintf(c->region, sizeof c->region, "%s", region);
    snprintf(c->userpwd, sizeof c->userpwd, "%s:%s", ak, sk);
    snprintf(c->token, sizeof c->token, "%s", tok);
    c->timeout_ms = o->timeout_ms ? (long)o->timeout_ms : 30000L;
    static int global_done;
    if (!global_done) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        global_done = 1;
    }
    c->curl = curl_easy_init();
    if (c->curl == NULL)
        return flc_err_set(&c->err, FLC_ENOMEM, "cold tier: cannot create a curl handle");
    /* Check the bucket now, so a wrong endpoint or key fails at open. */
    char burl[600];
    snprintf(burl, sizeof burl, "%s/%s", c->base, c->bucket);
    long status;
    int rc = request(c, "HEAD", burl, NULL, 0, NULL, &status);
    if (rc != FLC_OK)
        return rc;
    if (status == 404 && o->create_bucket) {
        upload_t none = {.parts = {(const uint8_t *)"", (const uint8_t *)""}};
        rc = request(c, "PUT", burl, &none, 0, NULL, &status);
        if (rc != FLC_OK)
            return rc;
    }
    if (status == 404)
        return flc_err_set(&c->err, FLC_ENOTFOUND, "cold tier: bucket %s does not exist at %s",
                           c->bucket, c->base);
    return FLC_OK;
}

void flc_cold_s3_close(flc_cold_t *c)
{
    if (c->curl)
        curl_easy_cleanup(c->curl);
    c->curl = NULL;
}

int flc_cold_s3_put(flc_cold_t *c, const char *key, const void *data, size_t len)
{
    char url[1200];
    flc_cold_s3_object_url(c, key, url, sizeof url);
    uint8_t trailer[FLC_COLD_TRAILER];
    flc_cold_trailer(data, len, trailer);
    upload_t up = {.parts = {data, trailer}, .lens = {len, sizeof trailer}};
    long status;
    int rc = request(c, "PUT", url, &up, (curl_off_t)(len + sizeof trailer), NULL, &status);
    if (rc == FLC_OK && status != 200)
        rc = flc_err_set(&c->err, FLC_EPROTO, "cold tier: PUT %s: HTTP %ld", url, status);
    if (rc == FLC_OK)
        c->st.bytes_put += len + sizeof trailer;
    return rc;
}

int flc_cold_s3_get(flc_cold_t *c, const char *key, uint8_t **obj, size_t *n)
{
    char url[1200];
    flc_cold_s3_object_url(c, key, url, sizeof url);
    body_t b = {.limit = (size_t)4 << 30};
    long status;
    int rc = request(c, "GET", url, NULL, 0, &b, &status);
    if (rc == FLC_OK && status == 404)
        rc = flc_err_set(&c->err, FLC_ENOTFOUND, "cold tier: no object for %s", key);
    if (rc != FLC_OK) {
        free(b.p);
        return rc;
    }
    *obj = b.p ? b.p : malloc(1);
    *n = b.n;
    return FLC_OK;
}

int flc_cold_s3_del(flc_cold_t *c, const char *key)
{
    char url[1200];
    flc_cold_s3_object_url(c, key, url, sizeof url);
    long status;
    return request(c, "DELETE", url, NULL, 0, NULL, &status);
}

/* The text of the first <tag>...</tag> in [p, end), copied into out (cap
 * bytes); NULL when there is none, else the position after it. */
static const char *xml_field(const char *p, const char *end, const char *tag, char *out,
                             size_t cap)
{
    char open_[40], close_[40];
    snprintf(open_, sizeof open_, "<%s>", tag);
    snprintf(close_, sizeof close_, "</%s>", tag);
    size_t ol = strlen(open_), cl = strlen(close_);
    for (const char *q = p; q + ol <= end; q++) {
        if (memcmp(q, open_, ol) != 0)
            continue;
        const char *v = q + ol;
        for (const char *w = v; w + cl <= end; w++)
            if (memcmp(w, close_, cl) == 0) {
                size_t len = (size_t)(w - v);
                snprintf(out, cap, "%.*s", (int)(len < cap ? len : cap - 1), v);
                return w + cl;
            }
        return NULL;
    }
    return NULL;
}

/* ListObjectsV2 pages of the prefix (object names are [A-Za-z0-9._~-]:
 * nothing to escape in the query or the XML), then one DELETE per object.
 * The query's parameters are written in sorted order, as SigV4's canonical
 * request wants them. */
int flc_cold_s3_del_prefix(flc_cold_t *c, const char *name_prefix, int dry_run, uint64_t *n,
                           uint64_t *bytes)
{
    char token[1024] = "";
    int rc = FLC_OK;
    do {
        char url[2600];
        if (token[0]) {
            char *esc = curl_easy_escape(c->curl, token, 0);
            snprintf(url, sizeof url, "%s/%s?continuation-token=%s&list-type=2&prefix=%s",
                     c->base, c->bucket, esc ? esc : "", name_prefix);
            curl_free(esc);
        } else {
            snprintf(url, sizeof url, "%s/%s?list-type=2&prefix=%s", c->base, c->bucket,
                     name_prefix);
        }
        body_t b = {.limit = 64u << 20};
        long status;
        rc = request(c, "GET", url, NULL, 0, &b, &status);
        if (rc == FLC_OK && status != 200)
            rc = flc_err_set(&c->err, FLC_EPROTO, "cold tier: listing %s: HTTP %ld", url, status);
        if (rc != FLC_OK) {
            free(b.p);
            return rc;
        }
        const char *p = (const char *)b.p, *end = p + b.n;
        char trunc[16] = "";
        token[0] = '\0';
        if (p && xml_field(p, end, "IsTruncated", trunc, sizeof trunc) &&
            strcmp(trunc, "true") == 0)
            xml_field(p, end, "NextContinuationToken", token, sizeof token);
        char contents[FLC_COLD_NAME_MAX + 512];
        while (p && rc == FLC_OK && (p = xml_field(p, end, "Contents", contents,
                                                   sizeof contents)) != NULL) {
            char key[FLC_COLD_NAME_MAX], size[32] = "0";
            const char *ce = contents + strlen(contents);
            if (xml_field(contents, ce, "Key", key, sizeof key) == NULL ||
                strncmp(key, name_prefix, strlen(name_prefix)) != 0)
                continue;
            xml_field(contents, ce, "Size", size, sizeof size);
            if (!dry_run) {
                char ourl[1200];
                snprintf(ourl, sizeof ourl, "%s/%s/%s", c->base, c->bucket, key);
                rc = request(c, "DELETE", ourl, NULL, 0, NULL, &status);
                c->st.dels++;
            }
            if (rc == FLC_OK) {
                (*n)++;
                *bytes += strtoull(size, NULL, 10);
            }
        }
        free(b.p);
    } while (rc == FLC_OK && token[0]);
    return rc;
}
