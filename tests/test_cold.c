/* The cold tier on its own: CRC-32C, and put/get/del, checksum failures and
 * missing objects on both backends: a file:// directory, and S3 over HTTP
 * with SigV4 against a real S3-protocol server (s3rver) on loopback,
 * installed by scripts/s3rver.sh (the S3 half skips, saying why, only when
 * it cannot be installed). The S3 server is the file's shared fixture. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/crc32c.h"
#include "cache/cold.h"
#include "tests/harness.h"

static void roundtrip(flc_cold_t *c, const char *label)
{
    size_t n = (1u << 20) + 12345; /* over a megabyte, odd length */
    uint8_t *buf = malloc(n);
    if (buf == NULL)
        flc_t_fatal("out of memory for a %zu-byte object", n);
    flc_t_fill((float *)buf, n / 4, 7);
    /* The fill covers whole floats only: set the odd tail too, or the put
     * sends and the compare reads bytes nobody wrote (valgrind: uninitialised). */
    for (size_t i = n / 4 * 4; i < n; i++)
        buf[i] = (uint8_t)(0xA5 ^ i);
    const char *key = "fl:{job@1+x/3/0}:u:client-7";
    CHECK(flc_cold_put(c, key, buf, n) == FLC_OK, "%s: put of a %zu-byte object (%s)", label, n,
          flc_cold_errstr(c));
    uint8_t *got = NULL;
    size_t gl = 0;
    int rc = flc_cold_get(c, key, &got, &gl);
    CHECK(rc == FLC_OK && gl == n && memcmp(got, buf, n) == 0,
          "%s: get returns the same %zu bytes (rc %d, %zu bytes)", label, n, rc, gl);
    free(got);

    /* Overwrite with a small object: the new bytes win. */
    CHECK(flc_cold_put(c, key, "hello", 5) == FLC_OK, "%s: overwrite", label);
    rc = flc_cold_get(c, key, &got, &gl);
    CHECK(rc == FLC_OK && gl == 5 && memcmp(got, "hello", 5) == 0,
          "%s: get after overwrite returns the new 5 bytes", label);
    free(got);

    CHECK(flc_cold_put(c, "empty", "", 0) == FLC_OK, "%s: an empty object is stored", label);
    rc = flc_cold_get(c, "empty", &got, &gl);
    CHECK(rc == FLC_OK && gl == 0, "%s: an empty object reads back empty", label);
    free(got);

    rc = flc_cold_get(c, "fl:{nope/1/0}:agg", &got, &gl);
    CHECK(rc == FLC_ENOTFOUND && got == NULL, "%s: a missing object is FLC_ENOTFOUND (%d)",
          label, rc);
    CHECK(flc_cold_del(c, key) == FLC_OK, "%s: delete", label);
    rc = flc_cold_get(c, key, &got, &gl);
    CHECK(rc == FLC_ENOTFOUND, "%s: deleted object is gone", label);
    CHECK(flc_cold_del(c, key) == FLC_OK, "%s: deleting a missing object is not an error", label);
    flc_cold_stats_t st;
    flc_cold_get_stats(c, &st);
    CHECK(st.puts == 3 && st.misses == 2 && st.bytes_put >= n,
          "%s: stats count 3 puts, 2 misses, %llu bytes put", label,
          (unsigned long long)st.bytes_put);
    free(buf);
}

/* Damages the stored object of key with `how` and checks that the read
 * fails with FLC_ECHECKSUM and returns no data. */
static void corrupt_file(flc_cold_t *c, const char *how)
{
    const char *key = "fl:{j/2/0}:agg";
    float v[1000];
    flc_t_fill(v, 1000, 3);
    CHECK(flc_cold_put(c, key, v, sizeof v) == FLC_OK, "file: put for %s", how);
    char path[1200];
    flc_cold_locate(c, key, path, sizeof path);
    FILE *f = fopen(path, "r+b");
    if (strcmp(how, "flipped byte") == 0) {
        fseek(f, 1234, SEEK_SET);
        int ch = fgetc(f);
        fseek(f, 1234, SEEK_SET);
        fputc(ch ^ 0x10, f);
        fclose(f);
    } else {
        fclose(f);
        CHECK(truncate(path, 3000) == 0, "file: truncated %s", path);
    }
    uint8_t *got = (uint8_t *)"untouched";
    size_t gl = 99;
    int rc = flc_cold_get(c, key, &got, &gl);
    CHECK(rc == FLC_ECHECKSUM && got == NULL && gl == 0,
          "file: %s is FLC_ECHECKSUM and no data (rc %d: %s)", how, rc, flc_cold_errstr(c));
}

TEST(file_backend)
{
    char dir[] = "/tmp/flc-cold-XXXXXX";
    if (mkdtemp(dir) == NULL)
        flc_t_fatal("mkdtemp: %s", strerror(errno));
    char url[256];
    snprintf(url, sizeof url, "file://%s/objects", dir);
    flc_err_t err = {0};
    flc_cold_t *c = flc_cold_open(url, NULL, &err);
    CHECK(c != NULL, "file: open %s (%s)", url, err.msg);
    if (c == NULL)
        return;
    CHECK(flc_cold_is_local(c), "file: is local");
    roundtrip(c, "file");
    corrupt_file(c, "flipped byte");
    corrupt_file(c, "truncated object");
    flc_cold_close(c);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    flc_t_run(cmd, NULL, 0);
}

TEST(bad_urls_refused)
{
    flc_err_t err = {0};
    EXPECT(flc_cold_open("file://relative/dir", NULL, &err) == NULL && err.code == FLC_EINVAL,
           "file: a relative path is refused (%s)", err.msg);
    EXPECT(flc_cold_open("ftp://x/y", NULL, &err) == NULL && err.code == FLC_EINVAL,
           "an unknown scheme is refused (%s)", err.msg);
}

static flc_s3rver_t g_s3;
static int g_s3_up;
static char g_s3_why[512]; /* why there is no S3 server, when g_s3_up is 0 */

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    g_s3_up = flc_s3rver_start(&g_s3, g_s3_why, sizeof g_s3_why) == 0;
    if (!g_s3_up)
        printf("# no S3 server, the s3 cases skip: %s\n", g_s3_why);
}

static void teardown(void)
{
    if (g_s3_up)
        flc_s3rver_stop(&g_s3);
}

static const flc_cold_opts_t g_s3_opts = {.bucket = "flc-test", .region = "us-east-1",
                                          .access_key = "S3RVER", .secret_key = "S3RVER",
                                          .create_bucket = 1};

TEST(s3_backend)
{
    if (!g_s3_up)
        flc_t_skip("S3 backend: %s", g_s3_why);
    flc_err_t err = {0};
    flc_cold_t *c = flc_cold_open(g_s3.url, &g_s3_opts, &err);
    CHECK(c != NULL, "s3: open %s with SigV4 credentials (%s)", g_s3.url, err.msg);
    CHECK(!flc_cold_is_local(c), "s3: not local");
    roundtrip(c, "s3");
    /* Damage an object through the server's own storage is not portable;
     * put bytes without a trailer straight over HTTP instead: the read
     * must refuse them. */
    char cmd[1400], url[1200];
    flc_cold_locate(c, "fl:{j/9/0}:agg", url, sizeof url);
    snprintf(cmd, sizeof cmd,
             "curl -s -f -o /dev/null --aws-sigv4 aws:amz:us-east-1:s3 -u S3RVER:S3RVER "
             "-H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -X PUT --data-binary "
             "'not an flcache object, no trailer' '%s'", url);
    int st = flc_t_run(cmd, NULL, 0);
    CHECK(st == 0, "s3: a foreign object was put with curl (exit %d)", st);
    uint8_t *got = NULL;
    size_t gl = 0;
    int rc = flc_cold_get(c, "fl:{j/9/0}:agg", &got, &gl);
    CHECK(rc == FLC_ECHECKSUM && got == NULL,
          "s3: an object without a valid trailer is FLC_ECHECKSUM (%d: %s)", rc,
          flc_cold_errstr(c));
    flc_cold_close(c);
}

TEST(s3_unknown_key_refused)
{
    if (!g_s3_up)
        flc_t_skip("S3 backend: %s", g_s3_why);
    flc_err_t err = {0};
    flc_cold_opts_t bad = g_s3_opts;
    /* An unknown access key: s3rver 3.7 was seen accepting a wrong secret
     * for its known key, so the refusal is tested with a key it lacks. */
    bad.access_key = "NOBODY";
    bad.secret_key = "WRONG";
    flc_cold_t *c = flc_cold_open(g_s3.url, &bad, &err);
    if (c != NULL) { /* HEAD of a bucket may go unchecked: a PUT must not */
        flc_cold_put(c, "k", "x", 1);
        err = *flc_cold_error(c);
    }
    CHECK(err.code == FLC_EAUTH, "s3: an unknown access key is FLC_EAUTH (%s)", err.msg);
    flc_cold_close(c);
}

TEST(crc32c)
{
    CHECK(flc_crc32c(0, "123456789", 9) == 0xE3069283u, "CRC-32C of '123456789' is e3069283");
    uint32_t part = flc_crc32c(0, "1234", 4);
    CHECK(flc_crc32c(part, "56789", 5) == 0xE3069283u, "CRC-32C continues across calls");
}

TEST_LIST_SHARED(setup, teardown, TEST_ENTRY(crc32c), TEST_ENTRY(file_backend),
                 TEST_ENTRY(bad_urls_refused), TEST_ENTRY(s3_backend),
                 TEST_ENTRY(s3_unknown_key_refused))
