/*
 * netio - buffered, bounded, timed I/O on one socket, plain or TLS
 *
 * See netio.h. The input buffer is a fixed NETIO_IBUF octets; lines are
 * assembled from it into the caller's struct buf, whose own limit is set
 * to the line limit for the duration of the call. The output buffer grows
 * (it holds what we write, not what the peer sends) and is emptied by
 * every flush.
 *
 * A plain socket stays blocking, with SO_RCVTIMEO and SO_SNDTIMEO at the
 * timeout, so that the usual case costs one system call per read or
 * write, as it did before record deadlines: per wait, and for the first
 * read of a record, whose deadline is exactly one timeout away. The later
 * reads of a record (a line that arrives in pieces) and, with a deadline,
 * every write use MSG_DONTWAIT and wait in poll() for what is left of
 * the deadline; a write that fits in the socket buffer, the usual case,
 * never waits. TLS cannot work that way, as
 * SSL_read() reads a record with as many read() calls as it takes, each
 * with the whole SO_RCVTIMEO: netio_tls_start() makes the socket
 * non-blocking for good, and every TLS call that would block is followed
 * by a poll() (netio_tls_wait). A deadline is a CLOCK_MONOTONIC time in
 * milliseconds, 0 for none; netio_wait() turns it into what is left of
 * it, or uses timeout_ms when there is none.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>

#include "net/netio.h"
#include "util/fdio.h"

#define NETIO_IBUF 16384

struct netio {
    int fd;
    SSL *ssl;
    int timeout_ms;
    int record_deadline; /* timeout_ms bounds a record, not a wait */
    int timed_out;       /* the last operation ran out of time */
    size_t line_limit;
    size_t ipos, ilen; /* unread input is ibuf[ipos..ilen) */
    char ibuf[NETIO_IBUF];
    struct buf out;
};

static void
netio_apply_timeout(int fd, int ms)
{
    struct timeval tv;

    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

long long
netio_now_ms(void)
{
    return fdio_now_ms();
}

/* netio_deadline - the deadline of a record that starts now, or 0 when
 * each wait has the whole timeout. */
static long long
netio_deadline(const struct netio *io)
{
    return io->record_deadline ? netio_now_ms() + io->timeout_ms : 0;
}

/* netio_wait - wait until the socket is ready for events (POLLIN or
 * POLLOUT); NETIO_OK, NETIO_TIMEOUT (timed_out set) or NETIO_ERROR. A
 * hang-up or socket error counts as ready: the read or write that
 * follows reports it. */
static int
netio_wait(struct netio *io, short events, long long deadline, struct err *e)
{
    struct pollfd pfd;
    int n, ms = io->timeout_ms;

    for (;;) {
        if (deadline > 0) {
            long long left = deadline - netio_now_ms();

            if (left <= 0)
                break;
            ms = left > INT_MAX ? INT_MAX : (int)left;
        }
        pfd.fd = io->fd;
        pfd.events = events;
        pfd.revents = 0;
        n = poll(&pfd, 1, ms);
        if (n > 0)
            return NETIO_OK;
        if (n == 0)
            break;
        if (errno != EINTR) {
            err_sys(e, ERR_IO, "poll");
            return NETIO_ERROR;
        }
    }
    io->timed_out = 1;
    return NETIO_TIMEOUT;
}

/* netio_tls_wait - wait for what OpenSSL asked for (why is the result of
 * SSL_get_error; events is the direction of the call, for a system call
 * that would have blocked but was not reported as WANT_READ or
 * WANT_WRITE); NETIO_OK, NETIO_TIMEOUT, NETIO_ERROR, or NETIO_TLS_NOWAIT
 * when why is not a wish to wait at all. */
#define NETIO_TLS_NOWAIT (-2)

static int
netio_tls_wait(struct netio *io, int why, short events, long long deadline,
               struct err *e)
{
    if (why == SSL_ERROR_WANT_READ)
        return netio_wait(io, POLLIN, deadline, e);
    if (why == SSL_ERROR_WANT_WRITE)
        return netio_wait(io, POLLOUT, deadline, e);
    if (why == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK))
        return netio_wait(io, events, deadline, e);
    return NETIO_TLS_NOWAIT;
}

void
netio_tcp_nodelay(int fd)
{
    int one = 1;

    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

struct netio *
netio_new(int fd, size_t line_limit, int timeout_ms, struct err *e)
{
    struct netio *io;

    if ((io = calloc(1, sizeof(*io))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    io->fd = fd;
    io->line_limit = line_limit;
    io->timeout_ms = timeout_ms;
    buf_init(&io->out, 0);
    netio_apply_timeout(fd, timeout_ms);
    return io;
}

void
netio_free(struct netio *io)
{
    if (io == NULL)
        return;
    if (io->ssl != NULL) {
        /* A quiet shutdown: we are closing anyway and must not block. */
        SSL_set_quiet_shutdown(io->ssl, 1);
        SSL_shutdown(io->ssl);
        SSL_free(io->ssl);
    }
    if (io->fd >= 0)
        close(io->fd);
    buf_fini(&io->out);
    free(io);
}

int
netio_fd(const struct netio *io)
{
    return io->fd;
}

void
netio_set_timeout(struct netio *io, int timeout_ms)
{
    io->timeout_ms = timeout_ms;
    netio_apply_timeout(io->fd, timeout_ms);
}

void
netio_set_record_deadline(struct netio *io, int on)
{
    io->record_deadline = on != 0;
}

int
netio_timed_out(const struct netio *io)
{
    return io->timed_out;
}

void
netio_set_line_limit(struct netio *io, size_t line_limit)
{
    io->line_limit = line_limit;
}

/* netio_fill - read more input for the record whose deadline is
 * *deadline: 0 until the record's first fill sets it (with a record
 * deadline; without one it stays 0 and each wait has the whole timeout).
 * A record that is already buffered thus costs no clock reading, and its
 * clock starts when it first has to wait, microseconds after the caller
 * asked for it. Returns NETIO_OK, NETIO_EOF, NETIO_TIMEOUT or
 * NETIO_ERROR. As in Postfix, a record whose deadline has passed gets no
 * more reads, even when more input is there. */
static int
netio_fill(struct netio *io, long long *deadline_p, struct err *e)
{
    long long deadline;
    ssize_t n;
    int rc, block = 1; /* a plain read may wait SO_RCVTIMEO in the kernel */

    io->ipos = io->ilen = 0;
    if (io->record_deadline) {
        long long now = netio_now_ms();

        if (*deadline_p == 0) {
            *deadline_p = now + io->timeout_ms;
        } else if (now >= *deadline_p) {
            io->timed_out = 1;
            return NETIO_TIMEOUT;
        } else {
            block = 0;
        }
    }
    deadline = *deadline_p;
    for (;;) {
        if (io->ssl != NULL) {
            int r, why;

            ERR_clear_error();
            errno = 0;
            r = SSL_read(io->ssl, io->ibuf, sizeof(io->ibuf));
            if (r > 0) {
                io->ilen = (size_t)r;
                return NETIO_OK;
            }
            why = SSL_get_error(io->ssl, r);
            if (why == SSL_ERROR_ZERO_RETURN)
                return NETIO_EOF;
            rc = netio_tls_wait(io, why, POLLIN, deadline, e);
            if (rc == NETIO_OK)
                continue;
            if (rc != NETIO_TLS_NOWAIT)
                return rc;
            if (why == SSL_ERROR_SYSCALL) {
                if (errno == EINTR)
                    continue;
                if (r == 0 || errno == 0 || errno == ECONNRESET)
                    return NETIO_EOF;
                err_sys(e, ERR_IO, "TLS read");
                return NETIO_ERROR;
            }
            err_set(e, ERR_IO, "TLS read: %s",
                    ERR_reason_error_string(ERR_get_error()));
            ERR_clear_error();
            return NETIO_ERROR;
        }
        n = recv(io->fd, io->ibuf, sizeof(io->ibuf), block ? 0 : MSG_DONTWAIT);
        if (n > 0) {
            io->ilen = (size_t)n;
            return NETIO_OK;
        }
        if (n == 0)
            return NETIO_EOF;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (block) { /* SO_RCVTIMEO ran out: so did the deadline */
                io->timed_out = 1;
                return NETIO_TIMEOUT;
            }
            if ((rc = netio_wait(io, POLLIN, deadline, e)) != NETIO_OK)
                return rc;
            continue;
        }
        if (errno == ECONNRESET)
            return NETIO_EOF;
        err_sys(e, ERR_IO, "read");
        return NETIO_ERROR;
    }
}

int
netio_getline(struct netio *io, struct buf *line, struct err *e)
{
    int toolong = 0, rc;
    char tail[2] = {0, 0};  /* last octets of a discarded line */
    long long deadline = 0; /* set by the first fill (netio_fill) */
    size_t taken = 0;       /* octets of the line in this record */

    io->timed_out = 0;
    buf_reset(line);
    for (;;) {
        char *start, *lf;
        size_t avail, take;

        if (io->ipos >= io->ilen) {
            rc = netio_fill(io, &deadline, e);
            if (rc != NETIO_OK) {
                if (rc == NETIO_EOF && line->len > 0 && !toolong)
                    return NETIO_OK; /* a last line without its LF */
                return rc;
            }
        }
        start = io->ibuf + io->ipos;
        avail = io->ilen - io->ipos;
        lf = memchr(start, '\n', avail);
        take = lf != NULL ? (size_t)(lf - start) + 1 : avail;
        io->ipos += take;
        /* An over-long line is as many records as it has line_limits:
         * the next fill starts a new one. */
        if (io->record_deadline && (taken += take) >= io->line_limit) {
            deadline = 0;
            taken = 0;
        }
        if (!toolong) {
            if (line->len + take > io->line_limit) {
                toolong = 1; /* keep reading to the LF, keep nothing */
                tail[1] = line->len > 0 ? line->data[line->len - 1] : 0;
                buf_reset(line);
            } else if (buf_append(line, start, take, e) < 0) {
                return NETIO_ERROR;
            }
        }
        if (toolong && take > 0) {
            tail[0] = take >= 2 ? start[take - 2] : tail[1];
            tail[1] = start[take - 1];
        }
        if (lf != NULL && toolong) {
            /* Only the line end is kept: the SMTP server must know
             * whether the next line may end the data. */
            if (tail[0] == '\r')
                (void)buf_append(line, "\r\n", 2, e);
            else
                (void)buf_append(line, "\n", 1, e);
            return NETIO_TOOLONG;
        }
        if (lf != NULL)
            return NETIO_OK;
    }
}

size_t
netio_pending(const struct netio *io)
{
    size_t n = io->ilen - io->ipos;

    if (io->ssl != NULL)
        n += (size_t)SSL_pending(io->ssl);
    return n;
}

void
netio_discard_input(struct netio *io)
{
    io->ipos = io->ilen = 0;
}

int
netio_wait_input(struct netio *io, int ms)
{
    struct pollfd pfd;
    int n;

    if (netio_pending(io) > 0)
        return 1;
    pfd.fd = io->fd;
    pfd.events = POLLIN;
    pfd.revents = 0;
    do {
        n = poll(&pfd, 1, ms);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -1;
    return n > 0;
}

int
netio_write(struct netio *io, const void *p, size_t len, struct err *e)
{
    return buf_append(&io->out, p, len, e);
}

int
netio_printf(struct netio *io, struct err *e, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = buf_vprintf(&io->out, e, fmt, ap);
    va_end(ap);
    return rc;
}

int
netio_flush(struct netio *io, struct err *e)
{
    long long deadline = netio_deadline(io);
    size_t off = 0;
    int rc;
    /* A plain send waits in the kernel (SO_SNDTIMEO) per wait only: with
     * a deadline it never blocks, and a full socket buffer is waited for
     * in poll(). A reply that fits costs one call either way. SO_SNDTIMEO
     * is no deadline of its own: an AF_UNIX send applies it to each
     * buffer it allocates. */
    int dontwait = io->record_deadline ? MSG_DONTWAIT : 0;

    io->timed_out = 0;
    while (off < io->out.len) {
        size_t left = io->out.len - off;
        ssize_t n;

        if (io->ssl != NULL) {
            int r, why;

            ERR_clear_error();
            errno = 0;
            /* After WANT_*, SSL_write is called again with the same
             * arguments, as OpenSSL requires. */
            r = SSL_write(io->ssl, io->out.data + off,
                          left > INT32_MAX ? INT32_MAX : (int)left);
            if (r <= 0) {
                why = SSL_get_error(io->ssl, r);
                rc = netio_tls_wait(io, why, POLLOUT, deadline, e);
                if (rc == NETIO_OK)
                    continue;
                if (rc == NETIO_TLS_NOWAIT && why == SSL_ERROR_SYSCALL &&
                    errno == EINTR)
                    continue;
                buf_reset(&io->out);
                ERR_clear_error();
                if (rc == NETIO_TIMEOUT)
                    return err_set(e, ERR_IO, "TLS write: timeout");
                if (rc == NETIO_ERROR)
                    return -1;
                return err_set(e, ERR_IO, "TLS write failed");
            }
            n = r;
        } else {
            n = send(io->fd, io->out.data + off, left,
                     MSG_NOSIGNAL | dontwait);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    rc = dontwait ? netio_wait(io, POLLOUT, deadline, e)
                                  : NETIO_TIMEOUT;
                    if (rc == NETIO_OK)
                        continue;
                    buf_reset(&io->out);
                    if (rc == NETIO_TIMEOUT) {
                        io->timed_out = 1;
                        return err_set(e, ERR_IO, "write: timeout");
                    }
                    return -1;
                }
                buf_reset(&io->out);
                return err_sys(e, ERR_IO, "write");
            }
        }
        off += (size_t)n;
    }
    buf_reset(&io->out);
    /* A large reply buffer (a message sent to the next hop) is not kept. */
    if (io->out.cap > 1 << 20)
        buf_fini(&io->out);
    return 0;
}

static int
netio_tls_start(struct netio *io, SSL_CTX *ctx, int server, const char *host,
                struct err *e)
{
    /* The handshake is one record: with a record deadline all of it
     * must be done in the timeout. */
    long long deadline = netio_deadline(io);
    unsigned long code;
    char why[256];
    int r, rc, why_code, flags;

    io->timed_out = 0;
    if (io->ssl != NULL)
        return err_set(e, ERR_INPUT, "TLS is already active");
    if ((flags = fcntl(io->fd, F_GETFL)) < 0 ||
        fcntl(io->fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return err_sys(e, ERR_IO, "TLS handshake: fcntl O_NONBLOCK");
    ERR_clear_error();
    if ((io->ssl = SSL_new(ctx)) == NULL || !SSL_set_fd(io->ssl, io->fd))
        goto fail;
    if (!server && host != NULL)
        (void)SSL_set_tlsext_host_name(io->ssl, host);
    for (;;) {
        errno = 0;
        r = server ? SSL_accept(io->ssl) : SSL_connect(io->ssl);
        if (r == 1)
            return 0;
        why_code = SSL_get_error(io->ssl, r);
        rc = netio_tls_wait(io, why_code, POLLIN, deadline, e);
        if (rc == NETIO_OK) {
            ERR_clear_error();
            continue;
        }
        if (rc == NETIO_TLS_NOWAIT && why_code == SSL_ERROR_SYSCALL &&
            errno == EINTR)
            continue;
        break;
    }
fail:
    code = ERR_get_error();
    /* The plain I/O that may follow expects a blocking socket. */
    (void)fcntl(io->fd, F_SETFL, flags);
    if (io->timed_out)
        snprintf(why, sizeof(why), "timeout");
    else if (code != 0)
        ERR_error_string_n(code, why, sizeof(why));
    else
        snprintf(why, sizeof(why), "%s",
                 errno ? strerror(errno) : "handshake failed");
    ERR_clear_error();
    if (io->ssl != NULL) {
        SSL_free(io->ssl);
        io->ssl = NULL;
    }
    return err_set(e, ERR_IO, "TLS handshake: %s", why);
}

int
netio_tls_accept(struct netio *io, SSL_CTX *ctx, struct err *e)
{
    return netio_tls_start(io, ctx, 1, NULL, e);
}

int
netio_tls_connect(struct netio *io, SSL_CTX *ctx, const char *host,
                  struct err *e)
{
    return netio_tls_start(io, ctx, 0, host, e);
}

int
netio_is_tls(const struct netio *io)
{
    return io->ssl != NULL;
}

SSL *
netio_tls_ssl(const struct netio *io)
{
    return io->ssl;
}

const char *
netio_tls_info(const struct netio *io, char *out, size_t n)
{
    if (io->ssl == NULL) {
        if (n > 0)
            out[0] = '\0';
        return out;
    }
    snprintf(out, n, "%s with cipher %s", SSL_get_version(io->ssl),
             SSL_get_cipher_name(io->ssl));
    return out;
}
