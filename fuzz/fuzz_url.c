/* libFuzzer target: cache URL parsing (cache/url.h), which reads whatever
 * FLCACHE_REDIS, an event's "redis" or a cluster's node list says.
 *   - A URL that parses must format into text that parses to the same
 *     fields (flc_url_format writes the URLs handed to functions).
 *   - No message shows a password: the input is also tried behind a known
 *     password (in the userinfo, and as ?password=), and neither the parse
 *     error nor the redacted URL may contain it (issue 13, finding 2). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/url.h"

#define SECRET "Zq7SECRETpw"

static void round_trip(const char *text)
{
    flc_url_t u, v;
    flc_err_t err = {0};
    if (flc_url_parse(text, &u, &err) != FLC_OK)
        return;
    char out[2048];
    if (flc_url_format(&u, out, sizeof out) != FLC_OK)
        return;
    if (flc_url_parse(out, &v, &err) != FLC_OK)
        abort(); /* what format writes, parse must read */
    if (u.kind != v.kind || u.port != v.port || u.db != v.db || u.cluster != v.cluster ||
        strcmp(u.host, v.host) != 0 || strcmp(u.path, v.path) != 0 ||
        strcmp(u.user, v.user) != 0 || strcmp(u.password, v.password) != 0 || u.tls != v.tls ||
        strcmp(u.cacert, v.cacert) != 0 || strcmp(u.cert, v.cert) != 0 ||
        strcmp(u.key, v.key) != 0 || strcmp(u.sni, v.sni) != 0)
        abort(); /* TLS settings too: a lost cacert= would trust the system's CAs */
}

static void no_secret(const char *text)
{
    flc_url_t u;
    flc_err_t err = {0};
    if (flc_url_parse(text, &u, &err) != FLC_OK) {
        if (strstr(err.msg, SECRET) != NULL)
            abort(); /* the parse error shows the password */
        return;
    }
    char red[2048];
    flc_url_redacted(&u, red, sizeof red);
    if (strstr(red, SECRET) != NULL)
        abort(); /* the redacted URL shows the password */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    round_trip(text);
    if (strlen(text) == size && strstr(text, "SECRET") == NULL) {
        /* The input after a password, or with one added as a parameter. */
        size_t cap = size + 64;
        char *with = malloc(cap);
        snprintf(with, cap, "redis://u:" SECRET "@%s", text);
        no_secret(with);
        snprintf(with, cap, "unix://u:" SECRET "@%s", text);
        no_secret(with);
        snprintf(with, cap, "rediss://u:" SECRET "@%s", text);
        no_secret(with);
        snprintf(with, cap, "%s%cpassword=" SECRET, text, strchr(text, '?') ? '&' : '?');
        no_secret(with);
        free(with);
    }
    free(text);
    return 0;
}
