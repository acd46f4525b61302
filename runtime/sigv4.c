/* AWS SigV4 request signing for the Lambda invoker (see sigv4.h): canonical
 * request, string to sign, the derived key chain, the Authorization line. */
#include "runtime/sigv4.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#define MAX_SIGNED 16

static void hex(const unsigned char *b, size_t n, char *out)
{
    static const char d[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = d[b[i] >> 4];
        out[2 * i + 1] = d[b[i] & 15];
    }
    out[2 * n] = '\0';
}

static void sha256_hex(const void *data, size_t n, char out[65])
{
    unsigned char md[32];
    unsigned int len = 0;
    EVP_Digest(data, n, md, &len, EVP_sha256(), NULL);
    hex(md, 32, out);
}

static void hmac(const unsigned char *key, size_t klen, const char *msg, unsigned char out[32])
{
    unsigned int len = 32;
    HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, strlen(msg), out, &len);
}

int flc_sigv4_canonical_uri(const char *path, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)path[i];
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
            if (o + 1 >= cap)
                return -1;
            out[o++] = (char)c;
        } else {
            if (o + 3 >= cap)
                return -1;
            snprintf(out + o, 4, "%%%02X", c);
            o += 3;
        }
    }
    if (o == 0) { /* an empty path is "/" */
        if (cap < 2)
            return -1;
        out[o++] = '/';
    }
    out[o] = '\0';
    return 0;
}

typedef struct hdr {
    char name[64];
    const char *value; /* trimmed start */
    size_t vlen;       /* trimmed length */
} hdr_t;

static int hdr_cmp(const void *a, const void *b)
{
    return strcmp(((const hdr_t *)a)->name, ((const hdr_t *)b)->name);
}

/* Parses "Name: value" into h (name lower-cased, value trimmed); 0 when the
 * line has no value (a removal directive such as "Expect:") or no name. */
static int hdr_parse(const char *line, hdr_t *h)
{
    const char *colon = strchr(line, ':');
    if (colon == NULL || colon == line || (size_t)(colon - line) >= sizeof h->name)
        return 0;
    size_t n = (size_t)(colon - line);
    for (size_t i = 0; i < n; i++)
        h->name[i] = (char)tolower((unsigned char)line[i]);
    h->name[n] = '\0';
    const char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    size_t vl = strlen(v);
    while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
        vl--;
    h->value = v;
    h->vlen = vl;
    return vl > 0;
}

/* Appends s (n bytes) to the growing buffer *b of length *len. */
static int put(char **b, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t nc = (*cap + n + 1) * 2;
        char *p = realloc(*b, nc);
        if (p == NULL)
            return -1;
        *b = p;
        *cap = nc;
    }
    memcpy(*b + *len, s, n);
    *len += n;
    (*b)[*len] = '\0';
    return 0;
}

static int puts_(char **b, size_t *len, size_t *cap, const char *s)
{
    return put(b, len, cap, s, strlen(s));
}

static int qcmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The canonical query: the pairs as sent (already encoded), sorted. */
static char *canonical_query(const char *q)
{
    char *copy = strdup(q != NULL ? q : "");
    if (copy == NULL)
        return NULL;
    char *parts[64];
    size_t n = 0;
    for (char *s = strtok(copy, "&"); s != NULL && n < 64; s = strtok(NULL, "&"))
        parts[n++] = s;
    qsort(parts, n, sizeof *parts, qcmp);
    char *out = NULL;
    size_t len = 0, cap = 0;
    int rc = puts_(&out, &len, &cap, "");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (i > 0)
            rc |= puts_(&out, &len, &cap, "&");
        rc |= puts_(&out, &len, &cap, parts[i]);
        if (rc == 0 && strchr(parts[i], '=') == NULL)
            rc |= puts_(&out, &len, &cap, "=");
    }
    free(copy);
    if (rc != 0) {
        free(out);
        return NULL;
    }
    return out;
}

int flc_sigv4_sign(const flc_sigv4_in_t *in, char *out[4], flc_err_t *e)
{
    memset(out, 0, 4 * sizeof *out);
    const char *u = strstr(in->url, "://");
    if (u == NULL)
        return flc_err_set(e, FLC_EINVAL, "sigv4: URL '%.200s' has no scheme", in->url);
    u += 3;
    size_t hl = strcspn(u, "/?");
    if (hl == 0 || hl >= 256)
        return flc_err_set(e, FLC_EINVAL, "sigv4: URL '%.200s' has no host", in->url);
    char host[256];
    memcpy(host, u, hl);
    host[hl] = '\0';
    const char *path = u + hl;
    size_t pl = strcspn(path, "?");
    const char *query = path[pl] == '?' ? path + pl + 1 : "";

    char amz_date[17], day[9];
    struct tm tm;
    gmtime_r(&in->now, &tm);
    strftime(amz_date, sizeof amz_date, "%Y%m%dT%H%M%SZ", &tm);
    memcpy(day, amz_date, 8);
    day[8] = '\0';
    char payload_hash[65];
    sha256_hex(in->body != NULL ? in->body : "", in->body != NULL ? in->body_len : 0,
               payload_hash);

    char l_host[300], l_date[40], l_sha[100];
    snprintf(l_host, sizeof l_host, "Host: %s", host);
    snprintf(l_date, sizeof l_date, "X-Amz-Date: %s", amz_date);
    snprintf(l_sha, sizeof l_sha, "X-Amz-Content-Sha256: %s", payload_hash);
    hdr_t h[MAX_SIGNED];
    int nh = 0;
    const char *mine[3] = {l_host, l_date, l_sha};
    for (int i = 0; i < 3; i++)
        nh += hdr_parse(mine[i], &h[nh]);
    for (int i = 0; i < in->nheaders && nh < MAX_SIGNED; i++) {
        hdr_t x;
        if (!hdr_parse(in->headers[i], &x))
            continue;
        int dup = 0;
        for (int j = 0; j < nh; j++)
            dup |= strcmp(h[j].name, x.name) == 0;
        if (!dup)
            h[nh++] = x;
    }
    qsort(h, (size_t)nh, sizeof *h, hdr_cmp);

    char *uri = malloc(3 * pl + 2);
    char *cq = canonical_query(query);
    char *creq = NULL, *signed_names = NULL;
    size_t cl = 0, cc = 0, sl = 0, sc = 0;
    int rc = uri == NULL || cq == NULL ? -1 : 0;
    if (rc == 0)
        rc = flc_sigv4_canonical_uri(path, pl, uri, 3 * pl + 2);
    rc |= puts_(&creq, &cl, &cc, in->method);
    rc |= puts_(&creq, &cl, &cc, "\n");
    rc |= puts_(&creq, &cl, &cc, uri != NULL ? uri : "");
    rc |= puts_(&creq, &cl, &cc, "\n");
    rc |= puts_(&creq, &cl, &cc, cq != NULL ? cq : "");
    rc |= puts_(&creq, &cl, &cc, "\n");
    rc |= puts_(&signed_names, &sl, &sc, "");
    for (int i = 0; i < nh; i++) {
        rc |= puts_(&creq, &cl, &cc, h[i].name);
        rc |= puts_(&creq, &cl, &cc, ":");
        rc |= put(&creq, &cl, &cc, h[i].value, h[i].vlen);
        rc |= puts_(&creq, &cl, &cc, "\n");
        if (i > 0)
            rc |= puts_(&signed_names, &sl, &sc, ";");
        rc |= puts_(&signed_names, &sl, &sc, h[i].name);
    }
    rc |= puts_(&creq, &cl, &cc, "\n");
    rc |= puts_(&creq, &cl, &cc, signed_names != NULL ? signed_names : "");
    rc |= puts_(&creq, &cl, &cc, "\n");
    rc |= puts_(&creq, &cl, &cc, payload_hash);
    free(uri);
    free(cq);
    if (rc != 0) {
        free(creq);
        free(signed_names);
        return flc_err_set(e, FLC_ENOMEM, "sigv4: out of memory signing %.200s", in->url);
    }

    char creq_hash[65], scope[160], sts[400];
    sha256_hex(creq, cl, creq_hash);
    free(creq);
    snprintf(scope, sizeof scope, "%s/%s/%s/aws4_request", day, in->region, in->service);
    snprintf(sts, sizeof sts, "AWS4-HMAC-SHA256\n%s\n%s\n%s", amz_date, scope, creq_hash);
    size_t skl = strlen(in->secret_key) + 5;
    char *k0 = malloc(skl);
    if (k0 == NULL) {
        free(signed_names);
        return flc_err_set(e, FLC_ENOMEM, "sigv4: out of memory");
    }
    snprintf(k0, skl, "AWS4%s", in->secret_key);
    unsigned char k1[32], k2[32], k3[32], k4[32], sig[32];
    hmac((unsigned char *)k0, skl - 1, day, k1);
    memset(k0, 0, skl); /* the secret does not linger */
    free(k0);
    hmac(k1, 32, in->region, k2);
    hmac(k2, 32, in->service, k3);
    hmac(k3, 32, "aws4_request", k4);
    hmac(k4, 32, sts, sig);
    char sig_hex[65];
    hex(sig, 32, sig_hex);

    size_t al = strlen(in->access_key) + strlen(scope) + strlen(signed_names) + 160;
    char *auth = malloc(al);
    if (auth != NULL)
        snprintf(auth, al,
                 "Authorization: AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, "
                 "Signature=%s",
                 in->access_key, scope, signed_names, sig_hex);
    free(signed_names);
    out[0] = strdup(l_host);
    out[1] = strdup(l_date);
    out[2] = strdup(l_sha);
    out[3] = auth;
    if (out[0] == NULL || out[1] == NULL || out[2] == NULL || out[3] == NULL) {
        for (int i = 0; i < 4; i++) {
            free(out[i]);
            out[i] = NULL;
        }
        return flc_err_set(e, FLC_ENOMEM, "sigv4: out of memory");
    }
    return FLC_OK;
}
