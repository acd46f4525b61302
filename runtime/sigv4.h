/* AWS Signature Version 4 for the Lambda Invoke request, computed here
 * instead of by libcurl's CURLOPT_AWS_SIGV4.
 *
 * Why not libcurl: Debian 12's libcurl 7.88 puts the request path into the
 * canonical request as it is sent, while AWS (and botocore, which
 * tests/sigv4_check.py runs) URI-encodes the path once more for every service
 * but S3. A plain function name has nothing to encode, so that worked; a
 * full function ARN ("arn:aws:lambda:eu-west-1:1234:function:f") has ':'
 * in its path, which AWS signs as "%3A": every Invoke by ARN was refused
 * with SignatureDoesNotMatch (issue 13). Signing ourselves also makes the
 * signature independent of the libcurl version (7.88 also signed the
 * "Expect:" removal line, curl issue 11664).
 *
 * The signer is a pure function of its inputs (the time is a parameter), so
 * a test can compare it with AWS's published example and with botocore. */
#ifndef FLC_RUNTIME_SIGV4_H
#define FLC_RUNTIME_SIGV4_H

#include <stddef.h>
#include <time.h>

#include "base/error.h"

/* What to sign and with what. Headers are "Name: value" lines; the signer
 * signs all of them plus the ones it adds (Host, X-Amz-Date,
 * X-Amz-Content-Sha256). */
typedef struct flc_sigv4_in {
    const char *method;       /* "POST" */
    const char *url;          /* http(s)://host[:port]/path[?query], as sent */
    const char *const *headers;
    int nheaders;
    const char *body;
    size_t body_len;
    const char *region, *service; /* "eu-west-1", "lambda" */
    const char *access_key, *secret_key;
    time_t now;               /* seconds since the epoch (UTC) */
} flc_sigv4_in_t;

/* The headers to add to the request, each a malloc'ed "Name: value" line
 * (Host, X-Amz-Date, X-Amz-Content-Sha256, Authorization), in out[0..3].
 * Returns 0, or FLC_EINVAL when the URL has no host, FLC_ENOMEM; on error
 * out[] holds NULLs. The caller frees the four strings. */
int flc_sigv4_sign(const flc_sigv4_in_t *in, char *out[4], flc_err_t *e);

/* The canonical URI of a path as AWS computes it for services other than
 * S3: each byte outside A-Z a-z 0-9 - _ . ~ / percent-encoded, '%' included
 * (so "%3A" sent is "%253A" signed). Writes into out (cap bytes, NUL-ended,
 * 3x the path fits); returns 0, or -1 when it does not fit. */
int flc_sigv4_canonical_uri(const char *path, size_t len, char *out, size_t cap);

#endif
