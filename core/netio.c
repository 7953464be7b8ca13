/*
 * netio - buffered, bounded, timed I/O on one socket, plain or TLS
 *
 * See netio.h. The input buffer is a fixed NETIO_IBUF octets; lines are
 * assembled from it into the caller's struct buf, whose own limit is set
 * to the line limit for the duration of the call. The output buffer grows
 * (it holds what we write, not what the peer sends) and is emptied by
 * every flush.
 */
#include "config.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>

#include "netio.h"

#define NETIO_IBUF 16384

struct netio {
    int fd;
    SSL *ssl;
    int timeout_ms;
    size_t line_limit;
    size_t ipos, ilen;       /* unread input is ibuf[ipos..ilen) */
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
netio_set_line_limit(struct netio *io, size_t line_limit)
{
    io->line_limit = line_limit;
}

/* netio_fill - read more input; returns NETIO_OK, NETIO_EOF,
 * NETIO_TIMEOUT or NETIO_ERROR. */
static int
netio_fill(struct netio *io, struct err *e)
{
    ssize_t n;

    io->ipos = io->ilen = 0;
    for (;;) {
        if (io->ssl != NULL) {
            int r = SSL_read(io->ssl, io->ibuf, sizeof(io->ibuf));

            if (r > 0) {
                io->ilen = (size_t)r;
                return NETIO_OK;
            }
            switch (SSL_get_error(io->ssl, r)) {
            case SSL_ERROR_ZERO_RETURN:
                return NETIO_EOF;
            case SSL_ERROR_WANT_READ:
            case SSL_ERROR_WANT_WRITE:
                if (errno == EINTR)
                    continue;
                return NETIO_TIMEOUT;
            case SSL_ERROR_SYSCALL:
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return NETIO_TIMEOUT;
                if (errno == EINTR)
                    continue;
                if (r == 0 || errno == 0 || errno == ECONNRESET)
                    return NETIO_EOF;
                err_sys(e, ERR_IO, "TLS read");
                return NETIO_ERROR;
            default:
                err_set(e, ERR_IO, "TLS read: %s",
                        ERR_reason_error_string(ERR_get_error()));
                ERR_clear_error();
                return NETIO_ERROR;
            }
        }
        n = read(io->fd, io->ibuf, sizeof(io->ibuf));
        if (n > 0) {
            io->ilen = (size_t)n;
            return NETIO_OK;
        }
        if (n == 0)
            return NETIO_EOF;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return NETIO_TIMEOUT;
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
    char tail[2] = {0, 0}; /* last octets of a discarded line */

    buf_reset(line);
    for (;;) {
        char *start, *lf;
        size_t avail, take;

        if (io->ipos >= io->ilen) {
            rc = netio_fill(io, e);
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
    size_t off = 0;

    while (off < io->out.len) {
        size_t left = io->out.len - off;
        ssize_t n;

        if (io->ssl != NULL) {
            int r = SSL_write(io->ssl, io->out.data + off,
                              left > INT32_MAX ? INT32_MAX : (int)left);

            if (r <= 0) {
                int why = SSL_get_error(io->ssl, r);

                buf_reset(&io->out);
                if (why == SSL_ERROR_WANT_WRITE || why == SSL_ERROR_WANT_READ)
                    return err_set(e, ERR_IO, "TLS write: timeout");
                ERR_clear_error();
                return err_set(e, ERR_IO, "TLS write failed");
            }
            n = r;
        } else {
            n = send(io->fd, io->out.data + off, left, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                buf_reset(&io->out);
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return err_set(e, ERR_IO, "write: timeout");
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
    unsigned long code;
    char why[256];
    int r;

    if (io->ssl != NULL)
        return err_set(e, ERR_INPUT, "TLS is already active");
    if ((io->ssl = SSL_new(ctx)) == NULL || !SSL_set_fd(io->ssl, io->fd))
        goto fail;
    if (!server && host != NULL)
        (void)SSL_set_tlsext_host_name(io->ssl, host);
    r = server ? SSL_accept(io->ssl) : SSL_connect(io->ssl);
    if (r == 1)
        return 0;
fail:
    code = ERR_get_error();
    if (code != 0)
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
