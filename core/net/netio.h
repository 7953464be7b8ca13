/*
 * netio - buffered, bounded, timed I/O on one socket, plain or TLS
 *
 * Both SMTP directions use this: the server reads command lines and
 * message data from a client, the next-hop client reads replies. Reads go
 * through a fixed input buffer; a line is returned whole or, when it is
 * longer than the limit, reported as NETIO_TOOLONG after the rest of it has
 * been read and thrown away, so a peer can never make memory grow.
 * Writes are collected in an output buffer and sent with one write per
 * netio_flush(), so a pipelined group of replies or commands leaves in one
 * segment (the sockets also have TCP_NODELAY set by their owners).
 *
 * The timeout bounds each wait for the peer (a limit per system call,
 * the classic behaviour) or, with netio_set_record_deadline(), a whole
 * record: one line from netio_getline() (an over-long line gets a new
 * deadline for every line_limit octets of it, so that no peer that sends
 * at least line_limit octets per timeout is cut off), one netio_flush(),
 * one TLS handshake. A peer that trickles a line one octet per almost
 * timeout then holds the connection for one timeout, not forever. Plain
 * I/O is blocking with SO_RCVTIMEO and SO_SNDTIMEO, plus poll() for what
 * is left of a deadline; TLS makes the socket non-blocking, so that
 * OpenSSL returns WANT_READ instead of waiting inside one SSL_read() while
 * a TLS record arrives an octet at a time, and every wait is a poll().
 *
 * A struct netio belongs to one thread. netio_free() closes the socket.
 */
#ifndef RC_NETIO_H
#define RC_NETIO_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "util/buf.h"
#include "util/err.h"

enum netio_status {
    NETIO_OK = 0,
    NETIO_EOF = 1,     /* peer closed before a complete line */
    NETIO_TIMEOUT = 2, /* no input within the timeout */
    NETIO_TOOLONG = 3, /* line over the limit: read and discarded */
    NETIO_ERROR = -1   /* see err */
};

struct netio;

/* netio_new - take over fd, a blocking socket; line_limit bounds one
 * line (octets with its line end); timeout_ms bounds each wait for the
 * peer until netio_set_record_deadline() says otherwise. NULL with e set
 * on failure, and fd is then still the caller's. */
struct netio *netio_new(int fd, size_t line_limit, int timeout_ms,
                        struct err *e);
void netio_free(struct netio *io);

/* netio_now_ms - CLOCK_MONOTONIC in milliseconds, the clock of the
 * deadlines here and of the timers of the layers above. */
long long netio_now_ms(void);

int netio_fd(const struct netio *io);
void netio_set_timeout(struct netio *io, int timeout_ms);
void netio_set_line_limit(struct netio *io, size_t line_limit);

/* netio_set_record_deadline - with on, the timeout is a deadline for a
 * whole record (see above) instead of a limit on each wait. */
void netio_set_record_deadline(struct netio *io, int on);

/* netio_timed_out - 1 when the last netio_getline(), netio_flush() or
 * TLS handshake failed because its time ran out, else 0. */
int netio_timed_out(const struct netio *io);

/* netio_getline - the next line, ending in LF (or whatever precedes EOF),
 * put into line (replacing its contents). Returns an enum netio_status;
 * with NETIO_TOOLONG line holds only the line's end ("\r\n" or "\n"). */
int netio_getline(struct netio *io, struct buf *line, struct err *e);

/* netio_pending - octets already read and not yet consumed (including
 * TLS records decrypted but unread). The SMTP server flushes its replies
 * when this is 0: the client is waiting. */
size_t netio_pending(const struct netio *io);

/* netio_discard_input - forget buffered input (after STARTTLS: any
 * plaintext pipelined behind the command must not be obeyed). */
void netio_discard_input(struct netio *io);

/* netio_wait_input - 1 when input arrives within ms, 0 if not, -1 on
 * error. Used to catch clients that talk before the greeting. */
int netio_wait_input(struct netio *io, int ms);

/* Output. netio_write/netio_printf buffer; netio_flush sends everything
 * buffered; each returns 0 or -1 with e set (a timeout is "write:
 * timeout" or "TLS write: timeout", and netio_timed_out() then says 1). */
int netio_write(struct netio *io, const void *p, size_t len, struct err *e);
int netio_printf(struct netio *io, struct err *e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int netio_flush(struct netio *io, struct err *e);

/* TLS. netio_tls_accept/netio_tls_connect run the handshake on the
 * socket; buffered input must be empty (call netio_discard_input first on
 * the server side). host is the SNI name for the client side, or NULL.
 * 0, or -1 with e set ("TLS handshake: timeout" when the time ran out). */
int netio_tls_accept(struct netio *io, SSL_CTX *ctx, struct err *e);
int netio_tls_connect(struct netio *io, SSL_CTX *ctx, const char *host,
                      struct err *e);
int netio_is_tls(const struct netio *io);
/* netio_tls_ssl - the TLS session, NULL before a handshake; borrowed, for
 * the checks of the peer's certificate after netio_tls_connect(). */
SSL *netio_tls_ssl(const struct netio *io);
/* netio_tls_info - "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384" or "". */
const char *netio_tls_info(const struct netio *io, char *out, size_t n);

/* netio_tcp_nodelay - set TCP_NODELAY on fd (no-op for non-TCP). */
void netio_tcp_nodelay(int fd);

#endif
