/* cache/url: redis:// and unix:// URLs, with auth, IPv6, db, and bad input. */
#include <stdio.h>
#include <string.h>

#include "cache/url.h"
#include "tests/harness.h"

TEST(tcp_urls)
{
    flc_url_t u;
    flc_err_t e = {0};
    CHECK(flc_url_parse("redis://127.0.0.1:6380", &u, &e) == 0 && u.kind == FLC_URL_TCP &&
              strcmp(u.host, "127.0.0.1") == 0 && u.port == 6380 && u.db == 0,
          "redis://127.0.0.1:6380 is TCP host 127.0.0.1 port 6380");
    CHECK(flc_url_parse("redis://localhost", &u, &e) == 0 && u.port == 6379,
          "port defaults to 6379");
    CHECK(flc_url_parse("redis://:s3cret@[::1]:7000/2", &u, &e) == 0 &&
              strcmp(u.host, "::1") == 0 && u.port == 7000 && u.db == 2 &&
              strcmp(u.password, "s3cret") == 0 && u.user[0] == '\0',
          "IPv6 literal with password and db 2");
    CHECK(flc_url_parse("redis://alice:p%40ss@localhost:1", &u, &e) == 0 &&
              strcmp(u.user, "alice") == 0 && strcmp(u.password, "p@ss") == 0,
          "ACL user and percent-encoded password");
    char red[300];
    flc_url_redacted(&u, red, sizeof red);
    CHECK(strstr(red, "p@ss") == NULL && strstr(red, "***") != NULL,
          "redacted URL hides the password: %s", red);
}

TEST(unix_urls)
{
    flc_url_t u;
    flc_err_t e = {0};
    CHECK(flc_url_parse("unix:///tmp/x/redis.sock", &u, &e) == 0 && u.kind == FLC_URL_UNIX &&
              strcmp(u.path, "/tmp/x/redis.sock") == 0,
          "unix:///tmp/x/redis.sock keeps the whole path");
    CHECK(flc_url_parse("unix://:pw@/tmp/a.sock", &u, &e) == 0 &&
              strcmp(u.path, "/tmp/a.sock") == 0 && strcmp(u.password, "pw") == 0,
          "unix URL with a password in userinfo");
    CHECK(flc_url_parse("unix:///tmp/a.sock?db=3&password=x", &u, &e) == 0 && u.db == 3 &&
              strcmp(u.password, "x") == 0,
          "unix URL with db and password in the query");
}

TEST(bad_urls_refused)
{
    flc_url_t u;
    flc_err_t e = {0};
    EXPECT(flc_url_parse("http://x", &u, &e) == FLC_EINVAL && strstr(e.msg, "redis://"),
          "wrong scheme is refused: %s", e.msg);
    EXPECT(flc_url_parse("", &u, &e) == FLC_EINVAL, "empty URL is refused: %s", e.msg);
    EXPECT(flc_url_parse("unix://relative.sock", &u, &e) == FLC_EINVAL,
          "relative socket path is refused: %s", e.msg);
    EXPECT(flc_url_parse("redis://h:99999", &u, &e) == FLC_EINVAL, "bad port is refused: %s",
          e.msg);
}

/* A value cut to fit its field would connect as someone else or somewhere
 * else: too long is an error naming the part; and no message shows a
 * password. */
TEST(too_long_and_secrets)
{
    flc_url_t u;
    flc_err_t e = {0};
    char url[900], pw[300];
    memset(pw, 's', sizeof pw - 1);
    pw[sizeof pw - 1] = '\0';
    snprintf(url, sizeof url, "redis://bob:%s@h:1", pw);
    EXPECT(flc_url_parse(url, &u, &e) == FLC_EINVAL && strstr(e.msg, "password is too long") &&
               !strstr(e.msg, "ssss") && u.password[0] == '\0',
           "a 299-character password is refused, not cut, and not shown: %s", e.msg);
    char host[300];
    memset(host, 'h', sizeof host - 1);
    host[sizeof host - 1] = '\0';
    snprintf(url, sizeof url, "redis://%s:1", host);
    EXPECT(flc_url_parse(url, &u, &e) == FLC_EINVAL && strstr(e.msg, "host is too long"),
           "a 299-character host is refused: %s", e.msg);
    snprintf(url, sizeof url, "unix:///tmp/%s.sock", host);
    EXPECT(flc_url_parse(url, &u, &e) == FLC_EINVAL && strstr(e.msg, "socket path is too long"),
           "a socket path longer than the field is refused: %s", e.msg);
    EXPECT(flc_url_parse("redis://u:hunter2@h:1/abc", &u, &e) == FLC_EINVAL &&
               strstr(e.msg, "not a database number") && !strstr(e.msg, "hunter2") &&
               strstr(e.msg, "u:***@h"),
           "a db that is not a number is refused, password redacted: %s", e.msg);
    EXPECT(flc_url_parse("unix:///tmp/r.sock?db=x&password=hunter2", &u, &e) == FLC_EINVAL &&
               !strstr(e.msg, "hunter2") && strstr(e.msg, "password=***"),
           "db=x on a socket URL is refused, password= redacted: %s", e.msg);
    EXPECT(flc_url_parse("redis://u:hunter2@h:99999", &u, &e) == FLC_EINVAL &&
               !strstr(e.msg, "hunter2"),
           "a bad port's message does not show the password: %s", e.msg);
    EXPECT(flc_url_parse("redis://u:hunter2@h:1/3", &u, &e) == FLC_OK && u.db == 3 &&
               strcmp(u.password, "hunter2") == 0,
           "a good URL still parses (db 3, password kept in the struct)");
}

TEST_LIST(TEST_ENTRY(tcp_urls), TEST_ENTRY(unix_urls), TEST_ENTRY(bad_urls_refused),
          TEST_ENTRY(too_long_and_secrets))
