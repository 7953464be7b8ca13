/*
 * smtpc - the next-hop client's SMTP and LMTP transport
 *
 * See smtpc.h for the calls; nexthop.c passes them on to the transport
 * of the pool (smtpc_transport.h), and for next_hop = smtp:[host]:port
 * or lmtp:[host]:port that is this one. How it works:
 *
 * The host is looked up with getaddrinfo() for every new connection and its
 * addresses are tried in turn, each within connect_timeout_ms; there are no MX
 * lookups. Every socket gets TCP_NODELAY and all I/O goes through netio,
 * so a reply line or a whole reply can not make memory grow past
 * SMTPC_REPLY_MAX.
 *
 * A new connection reads the greeting, sends EHLO (LHLO for LMTP; HELO
 * when EHLO is refused with 5xx), then STARTTLS when the host offers it
 * and next_hop_tls is may or encrypt, and EHLO again inside TLS. With
 * "encrypt" a host that does not offer STARTTLS, refuses it or fails the
 * handshake gets no mail ("451 4.7.5 TLS is required, but was not
 * offered by host ..."); with "may" a failed handshake is retried once on
 * a new plaintext connection. Input that arrives behind the STARTTLS
 * reply is an injection attempt and ends the connection.
 *
 * Certificates are checked as next_hop_tls says (smtpc_tls.c).
 *
 * With next_hop_auth_file (one "user:password" line; '#' comments and
 * blank lines allowed, the file private as cfg_secret_check() wants it)
 * the client authenticates with AUTH PLAIN, and only inside TLS whose
 * certificate was verified (verify, secure, or a pin that matched) or to
 * a loopback address: credentials never go to a host that merely claims
 * to be the next hop. A host that does not offer AUTH PLAIN, or refuses the
 * credentials, gets no mail (451 4.7.0), since relaying without the
 * login would only turn a configuration mistake into bounces.
 *
 * smtpc_mail() sends XFORWARD first (Postfix XFORWARD_README) when given
 * an envelope and the host offered it: NAME, ADDR, PROTO and HELO, only
 * those the host listed, xtext-encoded, "[UNAVAILABLE]" for what the
 * envelope does not know; PROTO is "ESMTP" for mail that came through
 * the SMTP front end and unavailable otherwise. Commands are split to
 * stay within 512 octets. With PIPELINING the XFORWARD commands and MAIL
 * leave in one write. ESMTP parameters of MAIL and RCPT whose extension
 * the host did not announce are dropped (BODY needs 8BITMIME, SIZE needs
 * SIZE, RET, ENVID, NOTIFY and ORCPT need DSN, AUTH needs AUTH); others
 * are passed on as they are.
 *
 * smtpc_data() sends DATA, waits for 354, then the message converted to
 * what SMTP allows and nothing ambiguous: every line end (CRLF, bare LF,
 * or a bare CR not followed by LF) goes out as CRLF, a line that starts
 * with "." gets a second one, a last line without a line end gets one,
 * and the final ".\r\n" leaves in the same write as the last chunk.
 * Other octets, NUL and 8-bit ones included, and long lines are sent as
 * they are: refusing or wrapping them is the front end's job, before
 * signing. With LMTP one reply is read for every recipient that RCPT
 * accepted (RFC 2033), each kept in the caller's array when it gave
 * one (smtpc_data_rcpts), so that a queue can mark each recipient by
 * its own reply. If the connection is lost or the host says 421 between
 * them, the recipients whose reply was read keep it and the others get
 * a 4xx: they may have been delivered all the same and get the message
 * again on the retry. The single reply of smtpc_data() ranks a 4xx over
 * a 5xx over a 2xx: a client told 4xx sends again to every recipient,
 * which duplicates for those delivered but loses none, while a 250
 * would lose the failed ones and a 5xx would bounce the ones that are
 * only deferred.
 *
 * Replies pass to the caller as the host gave them with one exception:
 * 421 (the host is closing the connection) becomes 451, because the
 * caller's own client is not being disconnected; the connection is then
 * closed. Failures of our own are 451 with an enhanced code and a
 * Postfix-like text: "4.4.1 Connection refused by host[addr]:port",
 * "4.4.2 lost connection with host[addr]:port while sending RCPT TO".
 * A bad character in an address or parameter (control characters, which
 * the front end should never let through) is not sent: the call returns
 * 0 with a synthesized "501 5.5.2" reply.
 *
 * Connections are cached in the pool, most recently used first, at most
 * max_idle of them and each for at most idle_timeout_ms; a cached
 * connection that the host closed (or that shows any input) is dropped
 * when taken. smtpc_put() sends RSET first when a transaction was left
 * open. A reused connection that turns out dead at MAIL (I/O error or
 * 421) is replaced by a new one once, inside smtpc_mail(). Closing sends
 * QUIT without waiting for the answer. The pool's mutex guards the idle
 * list.
 *
 * Nothing here logs: errors go to struct err and the replies, and the
 * caller logs. The pool owns its copies of the settings and the
 * credentials (wiped when it is freed); a connection belongs to one
 * thread between smtpc_get() and smtpc_put().
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "net/auth.h"
#include "util/cfg.h"
#include "util/esmtp.h"
#include "util/fdio.h"
#include "util/metrics.h"
#include "net/netio.h"
#include "net/smtpc.h"
#include "net/smtpc_transport.h"

#define SMTPC_CMD_MAX 2048 /* octets of a MAIL or RCPT command */
#define SMTPC_XFWD_MAX 512 /* octets of one XFORWARD command */

/* What the host announced in its EHLO reply. */
#define SMTPC_EXT_PIPELINING 0x001u
#define SMTPC_EXT_STARTTLS 0x002u
#define SMTPC_EXT_AUTH 0x004u
#define SMTPC_EXT_AUTH_PLAIN 0x008u
#define SMTPC_EXT_XFORWARD 0x010u
#define SMTPC_EXT_SIZE 0x020u
#define SMTPC_EXT_8BITMIME 0x040u
#define SMTPC_EXT_DSN 0x080u

/* The XFORWARD attributes it listed, in the order they are sent. */
#define SMTPC_XF_NAME 0x1u
#define SMTPC_XF_ADDR 0x2u
#define SMTPC_XF_PROTO 0x4u
#define SMTPC_XF_HELO 0x8u
#define SMTPC_XF_IDENT 0x10u

#define SMTPC_XTEXT_UNAVAILABLE "[UNAVAILABLE]"

static const struct {
    const char *name;
    unsigned flag;
} smtpc_xf_attrs[] = {
    {"NAME", SMTPC_XF_NAME},
    {"ADDR", SMTPC_XF_ADDR},
    {"PROTO", SMTPC_XF_PROTO},
    {"HELO", SMTPC_XF_HELO},
    /* our queue id: the next hop logs it as orig_queue_id=, as Postfix's
     * does behind amavisd-new, so a message can be followed */
    {"IDENT", SMTPC_XF_IDENT},
};
#define SMTPC_XF_COUNT (sizeof(smtpc_xf_attrs) / sizeof(smtpc_xf_attrs[0]))

/* Why a connection broke, beyond netio's statuses. */
#define SMTPC_WHY_WRITE 100
#define SMTPC_WHY_PROTOCOL 101

/* ------------------------------------------------------------ I/O */

/* smtpc_broken - mark c unusable and describe why in r and e; returns
 * -1. why is a netio status or SMTPC_WHY_*; e holds netio's reason for
 * NETIO_ERROR and SMTPC_WHY_WRITE. */
static int
smtpc_broken(struct smtpc_conn *c, struct smtpc_reply *r, int why,
             const char *what, struct err *e)
{
    char reason[ERR_TEXT_MAX];

    c->broken = 1;
    switch (why) {
    case NETIO_TIMEOUT:
        return smtpc_fail(r, e,
                          "4.4.2 conversation with %s timed out while %s",
                          c->relay, what);
    case NETIO_TOOLONG:
    case SMTPC_WHY_PROTOCOL:
        return smtpc_fail(r, e,
                          "4.5.0 protocol error: malformed reply from %s "
                          "while %s",
                          c->relay, what);
    case NETIO_ERROR:
    case SMTPC_WHY_WRITE:
        snprintf(reason, sizeof(reason), "%s", e->text);
        return smtpc_fail(r, e, "4.4.2 lost connection with %s while %s: %s",
                          c->relay, what, reason);
    default:
        return smtpc_fail(r, e, "4.4.2 lost connection with %s while %s",
                          c->relay, what);
    }
}

static int
smtpc_flush(struct smtpc_conn *c, struct smtpc_reply *r, const char *what,
            struct err *e)
{
    if (netio_flush(c->io, e) < 0)
        return smtpc_broken(c, r, SMTPC_WHY_WRITE, what, e);
    return 0;
}

/* smtpc_read - one whole reply into r (rbuf keeps its lines); 0, or -1
 * with r a 4xx saying what went wrong. A 421 is passed as 451 and
 * leaves c broken. */
static int
smtpc_read(struct smtpc_conn *c, struct smtpc_reply *r, const char *what,
           struct err *e)
{
    size_t used;
    int rc;

    buf_reset(&c->rbuf);
    for (;;) {
        rc = netio_getline(c->io, &c->line, e);
        if (rc != NETIO_OK)
            return smtpc_broken(c, r, rc, what, e);
        if (buf_append(&c->rbuf, c->line.data, c->line.len, e) < 0)
            return smtpc_broken(c, r, SMTPC_WHY_PROTOCOL, what, e);
        rc = smtpc_reply_parse(c->rbuf.data, c->rbuf.len, r, &used);
        if (rc < 0)
            return smtpc_broken(c, r, SMTPC_WHY_PROTOCOL, what, e);
        if (rc == 1)
            break;
    }
    metrics_nexthop_reply(r->code); /* ---- http: /metrics */
    if (r->code == 421) {
        c->broken = 1;
        r->code = 451;
    }
    return 0;
}

/* smtpc_command - send one command line and read its reply. */
static int smtpc_command(struct smtpc_conn *c, struct smtpc_reply *r,
                         const char *what, struct err *e, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int
smtpc_command(struct smtpc_conn *c, struct smtpc_reply *r, const char *what,
              struct err *e, const char *fmt, ...)
{
    va_list ap;
    int rc;

    buf_reset(&c->line);
    va_start(ap, fmt);
    rc = buf_vprintf(&c->line, e, fmt, ap);
    va_end(ap);
    if (rc < 0 || netio_write(c->io, c->line.data, c->line.len, e) < 0)
        return smtpc_fail(r, e, "4.3.0 local error talking to %s: %s",
                          c->relay, e->text);
    if (smtpc_flush(c, r, what, e) < 0)
        return -1;
    return smtpc_read(c, r, what, e);
}

/* smtpc_dead - the answer to a command on a connection already broken. */
static int
smtpc_dead(struct smtpc_conn *c, struct smtpc_reply *r, struct err *e)
{
    return smtpc_fail(r, e, "4.4.2 connection with %s was already lost",
                      c->relay);
}

static void
smtpc_conn_free(struct smtpc_conn *c, int quit)
{
    struct err e;

    if (c == NULL)
        return;
    if (c->io != NULL) {
        if (quit && !c->broken && netio_write(c->io, "QUIT\r\n", 6, &e) == 0)
            (void)netio_flush(c->io, &e);
        netio_free(c->io);
    }
    buf_fini(&c->line);
    buf_fini(&c->rbuf);
    free(c->obuf);
    free(c);
}

/* ------------------------------------------------------------ settings */

/* smtpc_smtp_init - the TLS context and the credentials. */
static int
smtpc_smtp_init(struct smtpc_pool *p, const struct smtpc_settings *s,
                struct err *e)
{
    if (p->tls != SMTPC_TLS_NONE && smtpc_tls_init(p, s, e) < 0)
        return -1;
    if (s->auth_file != NULL && s->auth_file[0] != '\0' &&
        smtpc_auth_load(p, s->auth_file, e) < 0)
        return -1;
    return 0;
}

static void
smtpc_smtp_fini(struct smtpc_pool *p)
{
    struct smtpc_conn *c, *next;

    for (c = p->idle; c != NULL; c = next) {
        next = c->next;
        smtpc_conn_free(c, 1);
    }
    if (p->tls_ctx != NULL)
        SSL_CTX_free(p->tls_ctx);
}

int
smtpc_has_xforward(const struct smtpc_conn *c)
{
    return (c->ext & SMTPC_EXT_XFORWARD) != 0;
}

int
smtpc_has_dsn(const struct smtpc_conn *c)
{
    return (c->ext & SMTPC_EXT_DSN) != 0;
}

/* ------------------------------------------------------------ connecting */

static int
smtpc_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        const unsigned char *b = in6->sin6_addr.s6_addr;

        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
            return 1;
        return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && b[12] == 127;
    }
    return 0;
}

/* smtpc_connect_one - a connected blocking socket, or -1 with errno. */
static int
smtpc_connect_one(const struct addrinfo *ai, int timeout_ms)
{
    struct pollfd pfd;
    socklen_t len = sizeof(int);
    int fd, n, soerr = 0, saved;

    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                ai->ai_protocol);
    if (fd < 0)
        return -1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        if (errno != EINPROGRESS)
            goto fail;
        pfd.fd = fd;
        pfd.events = POLLOUT;
        do {
            n = poll(&pfd, 1, timeout_ms);
        } while (n < 0 && errno == EINTR);
        if (n == 0)
            errno = ETIMEDOUT;
        if (n <= 0)
            goto fail;
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
            goto fail;
        if (soerr != 0) {
            errno = soerr;
            goto fail;
        }
    }
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0)
        goto fail;
    return fd;
fail:
    saved = errno;
    close(fd);
    errno = saved;
    return -1;
}

static int
smtpc_connect(struct smtpc_pool *p, struct smtpc_conn *c,
              struct smtpc_reply *r, struct err *e)
{
    struct addrinfo hints, *res, *ai;
    char addr[INET6_ADDRSTRLEN];
    int rc, fd = -1, saved = 0;

    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    snprintf(c->relay, sizeof(c->relay), "%s[%s]:%s", p->host, p->host,
             p->port);
    rc = getaddrinfo(p->host, p->port, &hints, &res);
    if (rc != 0)
        return smtpc_fail(r, e,
                          "4.4.3 Host or domain name not found. Name "
                          "service error for name=%s: %s",
                          p->host, gai_strerror(rc));
    for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        if (getnameinfo(ai->ai_addr, ai->ai_addrlen, addr, sizeof(addr), NULL,
                        0, NI_NUMERICHOST) != 0)
            snprintf(addr, sizeof(addr), "unknown");
        snprintf(c->relay, sizeof(c->relay), "%s[%s]:%s", p->host, addr,
                 p->port);
        if ((fd = smtpc_connect_one(ai, p->connect_timeout_ms)) < 0)
            saved = errno;
        else
            c->loopback = smtpc_is_loopback(ai->ai_addr);
    }
    freeaddrinfo(res);
    if (fd < 0) {
        if (saved == ECONNREFUSED)
            return smtpc_fail(r, e, "4.4.1 Connection refused by %s",
                              c->relay);
        if (saved == ETIMEDOUT)
            return smtpc_fail(r, e, "4.4.1 Connection timed out to %s",
                              c->relay);
        return smtpc_fail(r, e, "4.4.1 Cannot connect to %s: %s", c->relay,
                          strerror(saved));
    }
    netio_tcp_nodelay(fd);
    if ((c->io = netio_new(fd, SMTPC_REPLY_MAX, p->timeout_ms, e)) == NULL) {
        close(fd);
        return smtpc_fail(r, e, "4.3.0 local error talking to %s: %s",
                          c->relay, e->text);
    }
    return 0;
}

/* smtpc_said - a setup step the host refused: always 451, so no mail is
 * lost over a greeting or EHLO problem, with the host's reply in the text.
 * Returns -1. */
static int
smtpc_said(struct smtpc_conn *c, struct smtpc_reply *r, const char *enh,
           const char *command, struct err *e)
{
    char said[sizeof(r->text)];

    snprintf(said, sizeof(said), "%s", r->text);
    c->broken = 1;
    return smtpc_fail(r, e, "%s host %s said: %d %s (in reply to %s)", enh,
                      c->relay, r->code, said, command);
}

static int
smtpc_word_is(const char *w, size_t n, const char *kw)
{
    return strlen(kw) == n && strncasecmp(w, kw, n) == 0;
}

/* smtpc_ehlo_keyword - one line of the EHLO reply, after "250-". */
static void
smtpc_ehlo_keyword(struct smtpc_conn *c, const char *s, size_t len)
{
    static const struct {
        const char *word;
        unsigned flag;
    } simple[] = {
        {"PIPELINING", SMTPC_EXT_PIPELINING},
        {"STARTTLS", SMTPC_EXT_STARTTLS},
        {"SIZE", SMTPC_EXT_SIZE},
        {"8BITMIME", SMTPC_EXT_8BITMIME},
        {"DSN", SMTPC_EXT_DSN},
    };
    const char *w, *end = s + len, *kw;
    size_t n, kwlen = 0, i;
    int first = 1, auth = 0, xfwd = 0;

    for (w = s; w < end; w += n) {
        while (w < end && *w == ' ')
            w++;
        for (n = 0; w + n < end && w[n] != ' '; n++)
            ;
        if (n == 0)
            break;
        if (first) {
            first = 0;
            kw = w;
            kwlen = n;
            for (i = 0; i < sizeof(simple) / sizeof(simple[0]); i++)
                if (smtpc_word_is(kw, kwlen, simple[i].word))
                    c->ext |= simple[i].flag;
            if (smtpc_word_is(kw, kwlen, "AUTH")) {
                auth = 1;
            } else if (kwlen > 5 && strncasecmp(kw, "AUTH=", 5) == 0) {
                /* the old "AUTH=PLAIN LOGIN" form */
                auth = 1;
                if (smtpc_word_is(kw + 5, kwlen - 5, "PLAIN"))
                    c->ext |= SMTPC_EXT_AUTH_PLAIN;
            } else if (smtpc_word_is(kw, kwlen, "XFORWARD")) {
                xfwd = 1;
                c->ext |= SMTPC_EXT_XFORWARD;
            }
            if (auth)
                c->ext |= SMTPC_EXT_AUTH;
            continue;
        }
        if (auth && smtpc_word_is(w, n, "PLAIN"))
            c->ext |= SMTPC_EXT_AUTH_PLAIN;
        for (i = 0; xfwd && i < SMTPC_XF_COUNT; i++)
            if (smtpc_word_is(w, n, smtpc_xf_attrs[i].name))
                c->xfwd |= smtpc_xf_attrs[i].flag;
    }
}

/* smtpc_hello - EHLO or LHLO (HELO after a 5xx to EHLO) and the list of
 * extensions. */
static int
smtpc_hello(struct smtpc_conn *c, struct smtpc_reply *r, struct err *e)
{
    struct smtpc_pool *p = c->pool;
    const char *cmd = p->kind == SMTPC_LMTP ? "LHLO" : "EHLO";
    const char *s, *lf, *end;
    size_t n;

    if (smtpc_command(c, r, "performing the EHLO handshake", e, "%s %s\r\n",
                      cmd, p->helo) < 0)
        return -1;
    c->ext = 0;
    c->xfwd = 0;
    if (r->code / 100 == 5 && p->kind == SMTPC_SMTP) {
        cmd = "HELO";
        if (smtpc_command(c, r, "performing the HELO handshake", e,
                          "HELO %s\r\n", p->helo) < 0)
            return -1;
        if (r->code / 100 == 2)
            return 0;
    }
    if (r->code / 100 != 2)
        return smtpc_said(c, r, "4.3.0", cmd, e);
    /* every line after the first names an extension */
    s = c->rbuf.data;
    end = s + c->rbuf.len;
    for (s = memchr(s, '\n', (size_t)(end - s)); s != NULL && s + 1 < end;
         s = lf) {
        s++;
        if ((lf = memchr(s, '\n', (size_t)(end - s))) == NULL)
            break;
        n = (size_t)(lf - s);
        if (n > 0 && s[n - 1] == '\r')
            n--;
        if (n > 4)
            smtpc_ehlo_keyword(c, s + 4, n - 4);
    }
    return 0;
}

static int
smtpc_starttls(struct smtpc_conn *c, struct smtpc_reply *r, int *retry_plain,
               struct err *e)
{
    struct smtpc_pool *p = c->pool;
    int must = p->tls >= SMTPC_TLS_ENCRYPT;

    if (!(c->ext & SMTPC_EXT_STARTTLS)) {
        if (!must)
            return 0;
        c->broken = 1;
        return smtpc_fail(r, e,
                          "4.7.5 TLS is required, but was not offered by "
                          "host %s",
                          c->relay);
    }
    if (smtpc_command(c, r, "sending STARTTLS", e, "STARTTLS\r\n") < 0)
        return -1;
    if (r->code != 220) {
        if (!must && !c->broken)
            return 0;
        return smtpc_said(c, r, "4.7.5", "STARTTLS", e);
    }
    if (netio_pending(c->io) > 0) {
        c->broken = 1;
        return smtpc_fail(r, e,
                          "4.7.5 host %s sent data behind its STARTTLS reply "
                          "(an injection attempt?)",
                          c->relay);
    }
    if (netio_tls_connect(c->io, p->tls_ctx,
                          p->tls_name[0] != '\0' ? p->tls_name : NULL,
                          e) < 0) {
        c->broken = 1;
        if (!must)
            *retry_plain = 1;
        return smtpc_fail(r, e, "4.7.5 TLS with %s failed: %s", c->relay,
                          e->text);
    }
    if (smtpc_tls_peer_check(c, r, e) < 0)
        return -1;
    return smtpc_hello(c, r, e);
}

static int
smtpc_auth(struct smtpc_conn *c, struct smtpc_reply *r, struct err *e)
{
    struct smtpc_pool *p = c->pool;
    unsigned char raw[2 * SMTPC_CRED_MAX + 2];
    char cmd[((2 * SMTPC_CRED_MAX + 2) / 3 + 1) * 4 + 16];
    size_t ulen = strlen(p->user), plen = strlen(p->pass);
    long n;
    int rc;

    if (!(c->ext & SMTPC_EXT_AUTH_PLAIN)) {
        c->broken = 1;
        return smtpc_fail(r, e,
                          "4.7.0 host %s does not offer AUTH PLAIN, which "
                          "next_hop_auth_file needs",
                          c->relay);
    }
    if (!c->verified && !c->loopback) {
        c->broken = 1;
        return smtpc_fail(
            r, e, "4.7.0 not sending credentials to %s: %s", c->relay,
            netio_is_tls(c->io) ? "its certificate was not verified (use "
                                  "next_hop_tls = verify or secure)"
                                : "no TLS");
    }
    /* authzid (empty) NUL authcid NUL password */
    raw[0] = '\0';
    memcpy(raw + 1, p->user, ulen);
    raw[1 + ulen] = '\0';
    memcpy(raw + 2 + ulen, p->pass, plen);
    memcpy(cmd, "AUTH PLAIN ", 11);
    n = auth_b64_encode(raw, ulen + plen + 2, cmd + 11, sizeof(cmd) - 13);
    explicit_bzero(raw, sizeof(raw));
    if (n < 0) {
        c->broken = 1;
        return smtpc_fail(r, e, "4.3.0 cannot encode the credentials");
    }
    memcpy(cmd + 11 + n, "\r\n", 2);
    rc = netio_write(c->io, cmd, (size_t)n + 13, e);
    explicit_bzero(cmd, sizeof(cmd));
    if (rc < 0) {
        c->broken = 1;
        return smtpc_fail(r, e, "4.3.0 local error talking to %s: %s",
                          c->relay, e->text);
    }
    if (smtpc_flush(c, r, "performing SASL authentication", e) < 0 ||
        smtpc_read(c, r, "performing SASL authentication", e) < 0)
        return -1;
    /* 235, though Postfix's client takes any 2xx, and so does this one */
    if (r->code / 100 != 2)
        return smtpc_said(c, r, "4.7.0", "AUTH", e);
    return 0;
}

/* smtpc_open - a new connection ready for MAIL, or NULL with r and e. */
static struct smtpc_conn *
smtpc_open(struct smtpc_pool *p, int try_tls, struct smtpc_reply *r,
           struct err *e)
{
    struct smtpc_conn *c;
    int retry_plain = 0;

    if ((c = calloc(1, sizeof(*c))) == NULL) {
        err_nomem(e);
        smtpc_reply_set(r, 451, "4.3.0 out of memory");
        return NULL;
    }
    c->pool = p;
    buf_init(&c->line, SMTPC_REPLY_MAX);
    buf_init(&c->rbuf, SMTPC_REPLY_MAX);
    if (smtpc_connect(p, c, r, e) < 0)
        goto fail;
    if (smtpc_read(c, r, "receiving the initial server greeting", e) < 0)
        goto fail;
    if (r->code != 220) {
        char said[sizeof(r->text)];

        snprintf(said, sizeof(said), "%s", r->text);
        smtpc_fail(r, e, "4.3.0 host %s refused to talk to me: %d %s",
                   c->relay, r->code, said);
        goto fail;
    }
    if (smtpc_hello(c, r, e) < 0)
        goto fail;
    if (p->tls != SMTPC_TLS_NONE && try_tls &&
        smtpc_starttls(c, r, &retry_plain, e) < 0)
        goto fail;
    if (p->has_auth && smtpc_auth(c, r, e) < 0)
        goto fail;
    return c;
fail:
    c->broken = 1;
    smtpc_conn_free(c, 0);
    if (retry_plain)
        return smtpc_open(p, 0, r, e);
    return NULL;
}

/* smtpc_prune - unlink the idle connections older than the idle timeout
 * into *old; the lock is held. */
static void
smtpc_prune(struct smtpc_pool *p, long long now, struct smtpc_conn **old)
{
    struct smtpc_conn **pp = &p->idle, *c;

    while ((c = *pp) != NULL) {
        if (now - c->idle_since > p->idle_timeout_ms) {
            *pp = c->next;
            p->nidle--;
            c->next = *old;
            *old = c;
        } else {
            pp = &c->next;
        }
    }
}

static void
smtpc_free_list(struct smtpc_conn *c)
{
    struct smtpc_conn *next;

    for (; c != NULL; c = next) {
        next = c->next;
        smtpc_conn_free(c, 1);
    }
}

static struct smtpc_conn *
smtpc_smtp_get(struct smtpc_pool *p, struct smtpc_reply *r, struct err *e)
{
    struct smtpc_conn *c, *old = NULL;

    for (;;) {
        pthread_mutex_lock(&p->lock);
        smtpc_prune(p, netio_now_ms(), &old);
        if ((c = p->idle) != NULL) {
            p->idle = c->next;
            p->nidle--;
        }
        pthread_mutex_unlock(&p->lock);
        smtpc_free_list(old);
        old = NULL;
        if (c == NULL)
            break;
        c->next = NULL;
        /* Anything readable on an idle connection is EOF, a 421 or junk:
         * either way it is not worth a transaction. */
        if (netio_wait_input(c->io, 0) != 0) {
            c->broken = 1;
            smtpc_conn_free(c, 0);
            continue;
        }
        c->reused = 1;
        return c;
    }
    return smtpc_open(p, 1, r, e);
}

static int
smtpc_smtp_rset(struct smtpc_conn *c, struct err *e)
{
    struct smtpc_reply r;

    if (c->broken || c->io == NULL)
        return smtpc_dead(c, &r, e);
    if (smtpc_command(c, &r, "sending RSET", e, "RSET\r\n") < 0)
        return -1;
    if (r.code / 100 != 2) {
        c->broken = 1;
        return err_set(e, ERR_TEMP, "host %s said: %d %s (in reply to RSET)",
                       c->relay, r.code, r.text);
    }
    c->in_mail = 0;
    c->nrcpt_ok = 0;
    return 0;
}

static void
smtpc_smtp_put(struct smtpc_pool *p, struct smtpc_conn *c, int ok)
{
    struct smtpc_conn *old = NULL;
    struct err e;

    if (c == NULL)
        return;
    if (ok && !c->broken && c->in_mail && smtpc_smtp_rset(c, &e) < 0)
        ok = 0;
    if (ok && !c->broken && c->io != NULL) {
        pthread_mutex_lock(&p->lock);
        smtpc_prune(p, netio_now_ms(), &old);
        if (p->nidle < p->max_idle) {
            c->idle_since = netio_now_ms();
            c->next = p->idle;
            p->idle = c;
            p->nidle++;
            c = NULL;
        }
        pthread_mutex_unlock(&p->lock);
        smtpc_free_list(old);
    }
    smtpc_conn_free(c, 1);
}

/* smtpc_reconnect - replace the dead insides of c by a new connection. */
static int
smtpc_reconnect(struct smtpc_conn *c, struct smtpc_reply *r, struct err *e)
{
    struct smtpc_conn *n;
    char id[SMTPC_ID_MAX];

    netio_free(c->io);
    c->io = NULL;
    c->broken = 1;
    if ((n = smtpc_open(c->pool, 1, r, e)) == NULL)
        return -1;
    buf_fini(&c->line);
    buf_fini(&c->rbuf);
    free(c->obuf);
    memcpy(id, c->id, sizeof(id));
    *c = *n;
    memcpy(c->id, id, sizeof(id));
    free(n);
    return 0;
}

/* ------------------------------------------------------------ transaction */

/* smtpc_text_ok - no control characters (they could end a command line
 * early and start another). */
static int
smtpc_text_ok(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 0;
    return 1;
}

/* smtpc_params - the ESMTP parameters the host can take, each with a
 * leading space, into out. */
static int
smtpc_params(const struct smtpc_conn *c, const char *params, struct buf *out,
             struct err *e)
{
    static const struct {
        const char *kw;
        unsigned need;
    } known[] = {
        {"BODY", SMTPC_EXT_8BITMIME}, {"SIZE", SMTPC_EXT_SIZE},
        {"RET", SMTPC_EXT_DSN},       {"ENVID", SMTPC_EXT_DSN},
        {"NOTIFY", SMTPC_EXT_DSN},    {"ORCPT", SMTPC_EXT_DSN},
        {"AUTH", SMTPC_EXT_AUTH},
    };
    const char *w;
    size_t n, kwlen, i;
    int keep;

    if (params == NULL)
        return 0;
    for (w = params; *w != '\0'; w += n) {
        while (*w == ' ')
            w++;
        if ((n = strcspn(w, " ")) == 0)
            break;
        kwlen = strcspn(w, "= ");
        keep = 1;
        for (i = 0; i < sizeof(known) / sizeof(known[0]); i++)
            if (smtpc_word_is(w, kwlen, known[i].kw) &&
                !(c->ext & known[i].need))
                keep = 0;
        if (keep &&
            (buf_putc(out, ' ', e) < 0 || buf_append(out, w, n, e) < 0))
            return -1;
    }
    return 0;
}

/* smtpc_envelope_command - "MAIL FROM:<addr> params\r\n" into c->line, or
 * 0 with a synthesized 501 in r when it can not be sent. Returns 1 when
 * the command is ready. */
static int
smtpc_envelope_command(struct smtpc_conn *c, const char *verb,
                       const char *addr, const char *params,
                       struct smtpc_reply *r, struct err *e)
{
    struct err e2;

    if (!smtpc_text_ok(addr) || (params != NULL && !smtpc_text_ok(params))) {
        smtpc_reply_set(r, 501, "5.5.2 control character in %s, not sent",
                        verb);
        return 0;
    }
    buf_reset(&c->line);
    c->line.limit = SMTPC_CMD_MAX;
    if (buf_printf(&c->line, &e2, "%s:<%s>", verb, addr) < 0 ||
        smtpc_params(c, params, &c->line, &e2) < 0 ||
        buf_append(&c->line, "\r\n", 2, &e2) < 0) {
        c->line.limit = SMTPC_REPLY_MAX;
        if (e2.code == ERR_NOMEM) {
            *e = e2;
            smtpc_reply_set(r, 451, "4.3.0 out of memory");
            return -1;
        }
        smtpc_reply_set(r, 501, "5.5.4 %s command over %d octets, not sent",
                        verb, SMTPC_CMD_MAX);
        return 0;
    }
    c->line.limit = SMTPC_REPLY_MAX;
    return 1;
}

/* smtpc_xforward - queue the XFORWARD commands for env on c's output;
 * returns how many, or -1. */
static int
smtpc_xforward(struct smtpc_conn *c, const struct msg_env *env, struct err *e)
{
    const char *values[SMTPC_XF_COUNT], *v;
    struct buf cmd, item;
    int ncmd = 0, rc = -1, fits;
    size_t i;

    values[0] = env->client_name;
    values[1] = env->client_addr;
    values[2] = env->frontend == MSG_FE_SMTP ? "ESMTP" : NULL;
    values[3] = env->helo;
    values[4] = env->qid;
    buf_init(&cmd, SMTPC_XFWD_MAX);
    buf_init(&item, SMTPC_XFWD_MAX);
    for (i = 0; i < SMTPC_XF_COUNT; i++) {
        if (!(c->xfwd & smtpc_xf_attrs[i].flag))
            continue;
        v = values[i];
        buf_reset(&item);
        fits = v != NULL && v[0] != '\0';
        if (fits &&
            (buf_printf(&item, e, " %s=", smtpc_xf_attrs[i].name) < 0 ||
             esmtp_xtext_encode(&item, v, e) < 0)) {
            if (e->code != ERR_LIMIT)
                goto out;
            fits = 0;
        }
        /* A value that can not fit in one command is unavailable. */
        if (!fits || item.len + sizeof("XFORWARD\r\n") - 1 > SMTPC_XFWD_MAX) {
            buf_reset(&item);
            if (buf_printf(&item, e, " %s=%s", smtpc_xf_attrs[i].name,
                           SMTPC_XTEXT_UNAVAILABLE) < 0)
                goto out;
        }
        if (cmd.len > 0 && cmd.len + item.len + 2 > SMTPC_XFWD_MAX) {
            if (buf_append(&cmd, "\r\n", 2, e) < 0 ||
                netio_write(c->io, cmd.data, cmd.len, e) < 0)
                goto out;
            ncmd++;
            buf_reset(&cmd);
        }
        if ((cmd.len == 0 && buf_puts(&cmd, "XFORWARD", e) < 0) ||
            buf_append(&cmd, item.data, item.len, e) < 0)
            goto out;
    }
    if (cmd.len > 0) {
        if (buf_append(&cmd, "\r\n", 2, e) < 0 ||
            netio_write(c->io, cmd.data, cmd.len, e) < 0)
            goto out;
        ncmd++;
    }
    rc = ncmd;
out:
    buf_fini(&cmd);
    buf_fini(&item);
    return rc;
}

/* smtpc_mail_once - XFORWARD (when wanted) and MAIL on c as it is. */
static int
smtpc_mail_once(struct smtpc_conn *c, const struct msg_env *env,
                struct smtpc_reply *r, struct err *e)
{
    struct smtpc_reply xr = {0, ""};
    int nx = 0, i, xfail = 0, piped = (c->ext & SMTPC_EXT_PIPELINING) != 0;
    struct buf mail;

    /* c->line holds the MAIL command; keep it aside while XFORWARD runs */
    mail = c->line;
    buf_init(&c->line, SMTPC_REPLY_MAX);
    if (env != NULL && (c->ext & SMTPC_EXT_XFORWARD) && c->xfwd != 0 &&
        (nx = smtpc_xforward(c, env, e)) < 0) {
        buf_fini(&c->line);
        c->line = mail;
        c->broken = 1; /* part of it may wait in the output */
        return smtpc_fail(r, e, "4.3.0 local error talking to %s: %s",
                          c->relay, e->text);
    }
    if (!piped) {
        if (nx > 0 && smtpc_flush(c, r, "sending XFORWARD", e) < 0)
            goto broken;
        for (i = 0; i < nx; i++) {
            if (smtpc_read(c, r, "sending XFORWARD", e) < 0)
                goto broken;
            if (r->code / 100 != 2 && !xfail) {
                xfail = 1;
                xr = *r;
            }
        }
        nx = 0;
        if (xfail || c->broken)
            goto done;
    }
    if (netio_write(c->io, mail.data, mail.len, e) < 0) {
        smtpc_fail(r, e, "4.3.0 local error talking to %s: %s", c->relay,
                   e->text);
        goto broken;
    }
    if (smtpc_flush(c, r, "sending MAIL FROM", e) < 0)
        goto broken;
    for (i = 0; i < nx; i++) {
        if (smtpc_read(c, r, "sending XFORWARD", e) < 0)
            goto broken;
        if (r->code / 100 != 2 && !xfail) {
            xfail = 1;
            xr = *r;
        }
    }
    if (smtpc_read(c, r, "sending MAIL FROM", e) < 0)
        goto broken;
    if (r->code / 100 == 2) {
        c->in_mail = 1;
        c->nrcpt_ok = 0;
    }
done:
    if (xfail)
        *r = xr;
    buf_fini(&c->line);
    c->line = mail;
    return 0;
broken:
    buf_fini(&c->line);
    c->line = mail;
    return -1;
}

static int
smtpc_smtp_mail(struct smtpc_conn *c, const struct msg_env *env,
                const char *sender, const char *params, struct smtpc_reply *r,
                struct err *e)
{
    int rc;

    if (c->broken || c->io == NULL)
        return smtpc_dead(c, r, e);
    if (c->in_mail && smtpc_smtp_rset(c, e) < 0)
        return smtpc_fail(r, e, "4.4.2 %s", e->text);
    rc = smtpc_envelope_command(c, "MAIL FROM", sender, params, r, e);
    if (rc <= 0)
        return rc;
    rc = smtpc_mail_once(c, env, r, e);
    if ((rc < 0 || c->broken) && c->reused) {
        /* A cached connection that the host gave up on: once more on a
         * fresh one. */
        if (smtpc_reconnect(c, r, e) < 0)
            return -1;
        rc = smtpc_envelope_command(c, "MAIL FROM", sender, params, r, e);
        if (rc <= 0)
            return rc;
        rc = smtpc_mail_once(c, env, r, e);
    }
    return rc;
}

static int
smtpc_smtp_rcpt(struct smtpc_conn *c, const char *rcpt, const char *params,
                struct smtpc_reply *r, struct err *e)
{
    int rc;

    if (c->broken || c->io == NULL)
        return smtpc_dead(c, r, e);
    rc = smtpc_envelope_command(c, "RCPT TO", rcpt, params, r, e);
    if (rc <= 0)
        return rc;
    if (netio_write(c->io, c->line.data, c->line.len, e) < 0)
        return smtpc_fail(r, e, "4.3.0 local error talking to %s: %s",
                          c->relay, e->text);
    if (smtpc_flush(c, r, "sending RCPT TO", e) < 0 ||
        smtpc_read(c, r, "sending RCPT TO", e) < 0)
        return -1;
    if (r->code / 100 == 2)
        c->nrcpt_ok++;
    return 0;
}

/* smtpc_data_rank - how much a reply to the end of data should stand
 * for a whole LMTP transaction in one reply: a 4xx most, then any other
 * failure, then a 2xx. */
static int
smtpc_data_rank(int code)
{
    if (code / 100 == 4)
        return 2;
    return code / 100 == 2 ? 0 : 1;
}

/* smtpc_data_replies - the replies to the end of data: one, or with
 * LMTP one per accepted recipient, kept in each[0..n) as far as they
 * go (*got of them), with the summary of smtpc_data() in r. */
static int
smtpc_data_replies(struct smtpc_conn *c, struct smtpc_reply *each, size_t n,
                   size_t *got, struct smtpc_reply *r, struct err *e)
{
    struct smtpc_reply one;
    size_t want, i;
    int lmtp = c->pool->kind == SMTPC_LMTP;

    want = lmtp && c->nrcpt_ok > 0 ? c->nrcpt_ok : 1;
    for (i = 0; i < want; i++) {
        if (smtpc_read(c, &one,
                       "sending end of data -- message may be sent more "
                       "than once",
                       e) < 0) {
            *r = one;
            return -1;
        }
        if (lmtp && i < n)
            each[(*got)++] = one;
        if (i == 0 || smtpc_data_rank(one.code) > smtpc_data_rank(r->code) ||
            (one.code / 100 == 2 && r->code / 100 == 2))
            *r = one;
        if (c->broken) /* a 421: no more replies come */
            break;
    }
    c->in_mail = 0;
    c->nrcpt_ok = 0;
    return 0;
}

static int
smtpc_smtp_data(struct smtpc_conn *c, const struct iovec *iov, size_t niov,
                struct smtpc_reply *each, size_t n, struct smtpc_reply *r,
                struct err *e)
{
    size_t pos = 0, got = 0, i, k, piece = 0, len = 0, unflushed = 0;
    const char *data = NULL;
    int last;
    int bol = 1, rc = -1;

    if (c->broken || c->io == NULL) {
        smtpc_dead(c, r, e);
        goto out;
    }
    if (c->obuf == NULL && (c->obuf = malloc(2 * SMTPC_WINDOW + 8)) == NULL) {
        err_nomem(e);
        smtpc_reply_set(r, 451, "4.3.0 out of memory");
        goto out;
    }
    if (smtpc_command(c, r, "sending DATA command", e, "DATA\r\n") < 0)
        goto out;
    if (r->code != 354) {
        rc = 0;
        goto out;
    }
    /* Piece by piece. A CR that ended a piece went out as a line end
     * already; an LF that starts the next is the rest of that CRLF, as
     * in one block. */
    do {
        while (pos >= len && piece < niov) {
            int cr = len > 0 && data[len - 1] == '\r';

            data = iov[piece].iov_base;
            len = iov[piece++].iov_len;
            pos = cr && len > 0 && data[0] == '\n' ? 1 : 0;
        }
        k = pos < len ? smtpc_convert(data, len, &pos, &bol, 1, c->obuf) : 0;
        last = pos >= len && piece >= niov;
        if (last) {
            if (!bol) {
                c->obuf[k++] = '\r';
                c->obuf[k++] = '\n';
            }
            memcpy(c->obuf + k, ".\r\n", 3);
            k += 3;
        }
        if (netio_write(c->io, c->obuf, k, e) < 0) {
            c->broken = 1;
            smtpc_fail(r, e, "4.3.0 local error talking to %s: %s", c->relay,
                       e->text);
            goto out;
        }
        /* Small pieces (edited header fields) go out together. */
        unflushed += k;
        if (last || unflushed >= SMTPC_WINDOW) {
            if (smtpc_flush(c, r, "sending message body", e) < 0)
                goto out;
            unflushed = 0;
        }
    } while (pos < len || piece < niov);
    rc = smtpc_data_replies(c, each, n, &got, r, e);
out:
    for (i = got; i < n; i++)
        each[i] = *r;
    return rc;
}

/* SMTP and LMTP share every operation: LMTP is SMTP with LHLO, port 24
 * and a reply per recipient, and the code asks the pool's kind where
 * they differ. */
#define SMTPC_SMTP_FAMILY_OPS                                                 \
    .parse = smtpc_smtp_parse, .init = smtpc_smtp_init,                       \
    .fini = smtpc_smtp_fini, .get = smtpc_smtp_get, .put = smtpc_smtp_put,    \
    .mail = smtpc_smtp_mail, .rcpt = smtpc_smtp_rcpt,                         \
    .data = smtpc_smtp_data, .rset = smtpc_smtp_rset

const struct smtpc_transport_ops smtpc_smtp_ops = {
    .name = "smtp", .kind = SMTPC_SMTP, SMTPC_SMTP_FAMILY_OPS};

const struct smtpc_transport_ops smtpc_lmtp_ops = {
    .name = "lmtp", .kind = SMTPC_LMTP, SMTPC_SMTP_FAMILY_OPS};
