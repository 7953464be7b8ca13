/*
 * antivirus_clamd - the antivirus stage's clamd client
 *
 * One INSTREAM session per scan over clamd's socket (unix or TCP),
 * bounded in time by clamd_timeout, and the reading of clamd's answer
 * (flt_antivirus_clamd_reply, also fuzzed). See antivirus.c.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <clamav.h>
#include <dirent.h>
#include <gmime/gmime.h>

#include "filters/antivirus/antivirus_int.h"
#include "util/fdio.h"
#include "util/addr.h"
#include "filters/filters.h"
#include "util/log.h"
#include "msg/mime.h"
#include "util/regmap.h"

/* -------------------------------------------------------------- clamd */

/* flt_av_clamd_addr - parse clamd_socket into fa->clamd_addr. */
int
flt_av_clamd_addr(struct flt_av *fa, const struct cfg *c, const char *spec,
                  struct err *e)
{
    struct addrinfo hints, *res = NULL;
    char host[256], port[16];
    const char *p, *colon;
    int rc;

    memset(&fa->clamd_addr, 0, sizeof(fa->clamd_addr));
    if (strncmp(spec, "unix:", 5) == 0) {
        struct sockaddr_un *sun = (struct sockaddr_un *)&fa->clamd_addr;

        p = spec + 5;
        if (p[0] != '/' || strlen(p) >= sizeof(sun->sun_path))
            return cfg_err(e, c, "clamd_socket",
                           "'%s': want an absolute socket path of at most "
                           "%zu octets",
                           p, sizeof(sun->sun_path) - 1);
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, p, strlen(p) + 1);
        fa->clamd_addrlen = sizeof(*sun);
        return 0;
    }
    if (strncmp(spec, "tcp:", 4) != 0)
        return cfg_err(e, c, "clamd_socket",
                       "'%s': want unix:/path or tcp:host:port", spec);
    p = spec + 4;
    if (p[0] == '[') {
        const char *close = strchr(p, ']');

        if (close == NULL || close[1] != ':' ||
            (size_t)(close - p - 1) >= sizeof(host))
            return cfg_err(e, c, "clamd_socket", "'%s': bad address", spec);
        memcpy(host, p + 1, (size_t)(close - p - 1));
        host[close - p - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(p, ':');
        if (colon == NULL || colon == p || (size_t)(colon - p) >= sizeof(host))
            return cfg_err(e, c, "clamd_socket", "'%s': want tcp:host:port",
                           spec);
        memcpy(host, p, (size_t)(colon - p));
        host[colon - p] = '\0';
    }
    /* getaddrinfo() would take 99999 as 99999 modulo 65536. */
    if (snprintf(port, sizeof(port), "%s", colon + 1) >= (int)sizeof(port) ||
        port[0] == '\0' || strspn(port, "0123456789") != strlen(port) ||
        strlen(port) > 5 || strtol(port, NULL, 10) < 1 ||
        strtol(port, NULL, 10) > 65535)
        return cfg_err(e, c, "clamd_socket",
                       "'%s': bad port (want 1 to 65535)", spec);
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if ((rc = getaddrinfo(host, port, &hints, &res)) != 0)
        return cfg_err(e, c, "clamd_socket", "'%s': %s", spec,
                       gai_strerror(rc));
    if (res->ai_addrlen > sizeof(fa->clamd_addr)) {
        freeaddrinfo(res);
        return cfg_err(e, c, "clamd_socket", "'%s': address too long", spec);
    }
    memcpy(&fa->clamd_addr, res->ai_addr, res->ai_addrlen);
    fa->clamd_addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* flt_av_send - send all of p unless clamd answers first. Returns 0 when
 * sent, 1 when an answer (or the end of the connection) is waiting to be
 * read, -1 with e set. */
static int
flt_av_send(const struct flt_av *fa, int fd, const void *p, size_t n,
            long long deadline, struct err *e)
{
    const char *s = p;
    ssize_t k;
    int ev;

    while (n > 0) {
        ev = fdio_wait(fd, POLLOUT | POLLIN, deadline);
        if (ev == 0)
            return err_set(e, ERR_TEMP, "clamd %s: timed out sending",
                           fa->clamd_spec);
        if (ev < 0)
            return err_sys(e, ERR_TEMP, "clamd %s: poll", fa->clamd_spec);
        if (ev & (POLLIN | POLLHUP))
            return 1;
        k = send(fd, s, n, MSG_NOSIGNAL);
        if (k < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (k < 0 && (errno == EPIPE || errno == ECONNRESET))
            return 1; /* clamd closed: its answer may be waiting */
        if (k < 0)
            return err_sys(e, ERR_TEMP, "clamd %s: send", fa->clamd_spec);
        s += k;
        n -= (size_t)k;
    }
    return 0;
}

/*
 * flt_antivirus_clamd_reply - read one clamd INSTREAM answer (without its
 * final NUL or newline) into r. Returns 0, or -1 with e set for an error
 * answer. Exported for the fuzzer.
 */
int
flt_antivirus_clamd_reply(const char *reply, size_t len,
                          enum flt_antivirus_status *status, char *what,
                          size_t wn, struct err *e)
{
    static const char found[] = " FOUND";
    char p[FLT_AV_REPLY_MAX + 8], name[FLT_AV_WHAT_MAX];
    const char *s = reply;
    size_t n = len;

    while (n > 0 && (s[n - 1] == '\0' || s[n - 1] == '\n' || s[n - 1] == '\r'))
        n--;
    flt_av_printable(s, n, FLT_AV_REPLY_MAX, p, sizeof(p));
    if (n == 0)
        return err_set(e, ERR_TEMP,
                       "clamd closed the connection without an "
                       "answer");
    if (memchr(s, '\0', n) != NULL)
        return err_set(e, ERR_TEMP, "clamd answer holds a NUL: \"%s\"", p);
    if (n >= 10 && strncasecmp(s + n - 6, " ERROR", 6) == 0) {
        /* clamd's StreamMaxLength: the message was not scanned whole. */
        if (n >= 19 && (memmem(s, n, "size limit exceeded", 19) != NULL ||
                        memmem(s, n, "Size limit reached", 18) != NULL)) {
            *status = FLT_ANTIVIRUS_UNCHECKED;
            snprintf(what, wn, "clamd StreamMaxLength exceeded");
            return 0;
        }
        return err_set(e, ERR_TEMP, "clamd: %s", p);
    }
    if (n < 8 || strncmp(s, "stream: ", 8) != 0)
        return err_set(e, ERR_TEMP, "clamd: unexpected answer \"%s\"", p);
    s += 8;
    n -= 8;
    if (n == 2 && memcmp(s, "OK", 2) == 0) {
        *status = FLT_ANTIVIRUS_CLEAN;
        what[0] = '\0';
        return 0;
    }
    if (n > sizeof(found) - 1 &&
        memcmp(s + n - (sizeof(found) - 1), found, sizeof(found) - 1) == 0) {
        n -= sizeof(found) - 1;
        if (n == 0 || n >= sizeof(name))
            return err_set(e, ERR_TEMP, "clamd: unexpected answer \"%s\"", p);
        memcpy(name, s, n);
        name[n] = '\0';
        *status = (enum flt_antivirus_status)flt_antivirus_classify(name, 1,
                                                                    what, wn);
        return 0;
    }
    return err_set(e, ERR_TEMP, "clamd: unexpected answer \"%s\"", p);
}

int
flt_av_clamd_scan(const struct flt_av *fa, const char *data, size_t len,
                  struct flt_av_result *r, struct err *e)
{
    static const char cmd[] = "zINSTREAM"; /* sent with its NUL */
    long long deadline = flt_av_now_ms() + fa->clamd_timeout;
    char reply[FLT_AV_REPLY_MAX + 1];
    size_t got = 0, off, n;
    uint32_t hdr;
    int fd, rc, ev, soerr;
    socklen_t sl = sizeof(soerr);
    ssize_t k;

    fd = socket(fa->clamd_addr.ss_family,
                SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return err_sys(e, ERR_TEMP, "clamd %s: socket", fa->clamd_spec);
    if (connect(fd, (const struct sockaddr *)&fa->clamd_addr,
                fa->clamd_addrlen) < 0) {
        if (errno != EINPROGRESS && errno != EAGAIN) {
            err_sys(e, ERR_TEMP, "clamd %s: connect", fa->clamd_spec);
            goto fail;
        }
        ev = fdio_wait(fd, POLLOUT, deadline);
        if (ev <= 0) {
            err_set(e, ERR_TEMP, "clamd %s: connect timed out",
                    fa->clamd_spec);
            goto fail;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 ||
            soerr != 0) {
            errno = soerr;
            err_sys(e, ERR_TEMP, "clamd %s: connect", fa->clamd_spec);
            goto fail;
        }
    }
    rc = flt_av_send(fa, fd, cmd, sizeof(cmd), deadline, e);
    for (off = 0; rc == 0 && off < len; off += n) {
        n = len - off < FLT_AV_CHUNK ? len - off : FLT_AV_CHUNK;
        hdr = htonl((uint32_t)n);
        rc = flt_av_send(fa, fd, &hdr, sizeof(hdr), deadline, e);
        if (rc == 0)
            rc = flt_av_send(fa, fd, data + off, n, deadline, e);
    }
    if (rc == 0) {
        hdr = 0;
        rc = flt_av_send(fa, fd, &hdr, sizeof(hdr), deadline, e);
    }
    if (rc < 0)
        goto fail;
    /* The answer ends with a NUL (z-command) or at the end of the
     * connection. */
    while (got < FLT_AV_REPLY_MAX &&
           (got == 0 || memchr(reply, '\0', got) == NULL)) {
        ev = fdio_wait(fd, POLLIN, deadline);
        if (ev == 0) {
            err_set(e, ERR_TEMP, "clamd %s: no answer within clamd_timeout",
                    fa->clamd_spec);
            goto fail;
        }
        if (ev < 0) {
            err_sys(e, ERR_TEMP, "clamd %s: poll", fa->clamd_spec);
            goto fail;
        }
        k = recv(fd, reply + got, FLT_AV_REPLY_MAX - got, 0);
        if (k < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (k < 0 && errno != ECONNRESET) {
            err_sys(e, ERR_TEMP, "clamd %s: recv", fa->clamd_spec);
            goto fail;
        }
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    reply[got] = '\0';
    if (memchr(reply, '\0', got) != NULL)
        got = strlen(reply);
    if (flt_antivirus_clamd_reply(reply, got, &r->status, r->what,
                                  sizeof(r->what), e) < 0) {
        err_prefix(e, "%s", fa->clamd_spec);
        return -1;
    }
    return 0;

fail:
    close(fd);
    return -1;
}
