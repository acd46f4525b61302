/* ps_wire.c - sockets of the parameter-server exchange (see ps.h): the
 * address forms, listen and connect, and exact reads and writes with a
 * timeout per wait, so a dead peer or a stalled step ends in an error that
 * says so rather than a hang. */
#define _GNU_SOURCE
#include "workers/ps.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "workers/ps_internal.h"

int flc_ps_write_all(int fd, const void *buf, size_t len, unsigned timeout_ms)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            struct pollfd pf = {.fd = fd, .events = POLLOUT};
            if (poll(&pf, 1, (int)timeout_ms) == 0)
                return FLC_ETIMEOUT;
            continue;
        }
        return errno == EPIPE || errno == ECONNRESET ? FLC_ECONN : FLC_EIO;
    }
    return FLC_OK;
}

int flc_ps_read_all(int fd, void *buf, size_t len, unsigned timeout_ms, int *eof)
{
    char *p = buf;
    size_t got = 0;
    if (eof)
        *eof = 0;
    while (got < len) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        int r = poll(&pf, 1, (int)timeout_ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            return FLC_ETIMEOUT;
        ssize_t n = recv(fd, p + got, len - got, 0);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n == 0 && got == 0 && eof)
            *eof = 1;
        return n == 0 || errno == ECONNRESET ? FLC_ECONN : FLC_EIO;
    }
    return FLC_OK;
}

/* Fills a sockaddr from "unix:PATH" or "tcp:A.B.C.D:PORT". */
static int parse_addr(const char *addr, struct sockaddr_storage *ss, socklen_t *len,
                      flc_err_t *e)
{
    memset(ss, 0, sizeof *ss);
    if (strncmp(addr, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        if (strlen(addr + 5) == 0 || strlen(addr + 5) >= sizeof un->sun_path)
            return flc_err_set(e, FLC_EINVAL, "ps address '%s': path empty or over %zu bytes",
                               addr, sizeof un->sun_path - 1);
        un->sun_family = AF_UNIX;
        snprintf(un->sun_path, sizeof un->sun_path, "%s", addr + 5);
        *len = sizeof *un;
        return FLC_OK;
    }
    if (strncmp(addr, "tcp:", 4) == 0) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        char host[64];
        const char *colon = strrchr(addr + 4, ':');
        size_t hl = colon ? (size_t)(colon - (addr + 4)) : 0;
        char *end = NULL;
        long port = colon ? strtol(colon + 1, &end, 10) : -1;
        if (colon == NULL || hl == 0 || hl >= sizeof host || *end != '\0' || port < 0 ||
            port > 65535)
            return flc_err_set(e, FLC_EINVAL, "ps address '%s': expected tcp:A.B.C.D:PORT", addr);
        memcpy(host, addr + 4, hl);
        host[hl] = '\0';
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
            return flc_err_set(e, FLC_EINVAL, "ps address '%s': '%s' is not an IPv4 address",
                               addr, host);
        *len = sizeof *in;
        return FLC_OK;
    }
    return flc_err_set(e, FLC_EINVAL, "ps address '%s': expected unix:PATH or "
                       "tcp:127.0.0.1:PORT", addr);
}

int flc_ps_listen(const char *addr, char *bound, size_t cap, flc_err_t *e)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int rc = parse_addr(addr, &ss, &len, e);
    if (rc != FLC_OK)
        return rc;
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return flc_err_set(e, FLC_EIO, "ps address '%s': socket: %s", addr, strerror(errno));
    int one = 1;
    if (ss.ss_family == AF_UNIX)
        unlink(((struct sockaddr_un *)&ss)->sun_path);
    else
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, len) != 0 || listen(fd, 1024) != 0) {
        rc = flc_err_set(e, FLC_EIO, "ps address '%s': cannot listen: %s", addr,
                         strerror(errno));
        close(fd);
        return rc;
    }
    snprintf(bound, cap, "%s", addr);
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in in;
        socklen_t l = sizeof in;
        char host[INET_ADDRSTRLEN] = "127.0.0.1";
        if (getsockname(fd, (struct sockaddr *)&in, &l) == 0)
            inet_ntop(AF_INET, &in.sin_addr, host, sizeof host);
        snprintf(bound, cap, "tcp:%s:%u", host, (unsigned)ntohs(in.sin_port));
    }
    return fd;
}

int flc_ps_connect_raw(const char *addr, unsigned timeout_ms, flc_err_t *e)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int rc = parse_addr(addr, &ss, &len, e);
    if (rc != FLC_OK)
        return rc;
    /* The server may still be starting: retry for up to timeout_ms. */
    for (unsigned waited = 0;; waited += 10) {
        int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return flc_err_set(e, FLC_EIO, "ps %s: socket: %s", addr, strerror(errno));
        if (connect(fd, (struct sockaddr *)&ss, len) == 0) {
            int one = 1;
            if (ss.ss_family == AF_INET)
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            return fd;
        }
        int err = errno;
        close(fd);
        if (waited >= timeout_ms || (err != ENOENT && err != ECONNREFUSED))
            return flc_err_set(e, FLC_ECONN, "cannot reach the parameter server at %s: %s",
                               addr, strerror(err));
        usleep(10000);
    }
}
