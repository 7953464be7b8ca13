/*
 * smtpc - the next-hop client: SMTP or LMTP to a relay, or a Maildir
 *
 * See smtpc.h for the calls. How it works:
 *
 * next_hop is "smtp:[host]:port", "lmtp:[host]:port" (the brackets and
 * the port may be left out: smtp defaults to 25, lmtp to 24; an IPv6
 * address needs the brackets) or "maildir:/absolute/path". The host is
 * looked up with getaddrinfo() for every new connection and its addresses
 * are tried in turn, each within connect_timeout_ms; there are no MX
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
 * Certificates, as Postfix's smtp_tls_security_level: may and encrypt
 * do not verify them; verify requires a chain to a trust anchor of
 * next_hop_tls_ca_file (or the system's store), secure that and the
 * host name too: next_hop_tls_name, else the host of next_hop (an
 * address literal has no name to check, so secure then needs
 * next_hop_tls_name). OpenSSL checks the chain and the name during the
 * handshake without failing it (SSL_VERIFY_NONE keeps the result), and
 * smtpc_tls_peer_check() reads the result afterwards so that the reply
 * says why: "4.7.5 Server certificate not verified: host[addr]:port:
 * certificate has expired", as Postfix logs it. next_hop_tls_fingerprint
 * pins the SHA-256 digest of the certificate or of its public key: with
 * encrypt it replaces the chain check (Postfix's "fingerprint" level),
 * with verify and secure it is checked as well. Levels from encrypt up
 * never fall back to plaintext. next_hop_tls_protocols limits the
 * versions, in Postfix's syntax (">=TLSv1.3", "!TLSv1.2"), within the
 * TLSv1.2 and TLSv1.3 that relaychain speaks.
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
 * QUIT without waiting for the answer. The pool's mutex guards only the
 * idle list and the Maildir name sequence.
 *
 * Maildir delivery requires the directory of next_hop to exist (a typo
 * must not create a tree somewhere); smtpc_pool_new() creates tmp/, new/
 * and cur/ in it, mode 0700, when missing. Each message is written to
 * tmp/ under a unique name "sec.MusecPpidQseq.host" (the Maildir
 * convention; '/' and ':' in the host name as \057 and \072), with LF
 * line ends and no dot-stuffing, fsynced, linked into new/ (rename()
 * where the file system has no hard links), and new/ is fsynced before
 * 250 is returned. Any failure removes the temporary file and gives 451.
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

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include "net/auth.h"
#include "util/cfg.h"
#include "util/esmtp.h"
#include "util/fdio.h"
#include "net/netio.h"
#include "net/smtpc.h"

#define SMTPC_REPLY_LINES 100       /* lines of one reply */
#define SMTPC_REPLY_MAX (64 * 1024) /* octets of one reply */
#define SMTPC_CMD_MAX 2048          /* octets of a MAIL or RCPT command */
#define SMTPC_XFWD_MAX 512          /* octets of one XFORWARD command */
#define SMTPC_HOST_MAX 255
#define SMTPC_RELAY_MAX (2 * SMTPC_HOST_MAX + 16) /* "host[addr]:port" */
#define SMTPC_CRED_MAX 255       /* octets of the user name, of the password */
#define SMTPC_PATH_MAX 3072      /* octets of the Maildir path */
#define SMTPC_WINDOW (32 * 1024) /* message octets converted per write */
#define SMTPC_NAME_TRIES 8       /* Maildir names tried per message */
#define SMTPC_PINS_MAX 8         /* next_hop_tls_fingerprint entries */
#define SMTPC_PIN_LEN 32         /* octets of a SHA-256 digest */

#define SMTPC_CONNECT_TIMEOUT_MS 30000
#define SMTPC_TIMEOUT_MS 300000
#define SMTPC_IDLE_TIMEOUT_MS 5000

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

struct smtpc_pool {
    enum smtpc_kind kind;
    char host[SMTPC_HOST_MAX + 1]; /* without the brackets */
    char port[8];
    int host_is_address; /* no SNI for an address */
    char *maildir;       /* without trailing slashes */
    char *helo;
    enum smtpc_tls tls;
    SSL_CTX *tls_ctx;                  /* NULL without TLS */
    char tls_name[SMTPC_HOST_MAX + 1]; /* SNI, and what secure checks */
    unsigned char pins[SMTPC_PINS_MAX][SMTPC_PIN_LEN];
    size_t npins;
    char user[SMTPC_CRED_MAX + 1];
    char pass[SMTPC_CRED_MAX + 1];
    int has_auth;
    int connect_timeout_ms, timeout_ms, idle_timeout_ms;
    size_t max_idle;
    char name_host[SMTPC_HOST_MAX * 4 + 1]; /* for Maildir names */

    pthread_mutex_t lock;    /* guards what follows */
    struct smtpc_conn *idle; /* most recently used first */
    size_t nidle;
    unsigned long seq;
};

struct smtpc_conn {
    struct smtpc_pool *pool;
    struct netio *io; /* NULL once closed */
    char relay[SMTPC_RELAY_MAX];
    int loopback;
    int verified; /* the certificate passed verify, secure or a pin */
    unsigned ext;
    unsigned xfwd;
    int reused;  /* taken from the idle list */
    int broken;  /* no further command may be sent */
    int in_mail; /* MAIL accepted, transaction not ended */
    size_t nrcpt_ok;
    long long idle_since; /* ms, CLOCK_MONOTONIC */
    struct smtpc_conn *next;
    struct buf line; /* one reply line */
    struct buf rbuf; /* one whole reply */
    char *obuf;      /* converted message octets, 2 * SMTPC_WINDOW + 8 */
};

static void smtpc_reply_set(struct smtpc_reply *r, int code, const char *fmt,
                            ...) __attribute__((format(printf, 3, 4)));

static void
smtpc_reply_set(struct smtpc_reply *r, int code, const char *fmt, ...)
{
    va_list ap;

    r->code = code;
    va_start(ap, fmt);
    vsnprintf(r->text, sizeof(r->text), fmt, ap);
    va_end(ap);
}

/* smtpc_fail - a 451 reply of ours, with the same text in e (ERR_TEMP);
 * returns -1. */
static int smtpc_fail(struct smtpc_reply *r, struct err *e, const char *fmt,
                      ...) __attribute__((format(printf, 3, 4)));

static int
smtpc_fail(struct smtpc_reply *r, struct err *e, const char *fmt, ...)
{
    va_list ap;

    r->code = 451;
    va_start(ap, fmt);
    vsnprintf(r->text, sizeof(r->text), fmt, ap);
    va_end(ap);
    return err_set(e, ERR_TEMP, "%s", r->text);
}

/* ------------------------------------------------------------ replies */

static int
smtpc_code_digit_ok(size_t i, char ch)
{
    static const char lo[3] = {'2', '0', '0'}, hi[3] = {'5', '5', '9'};

    return ch >= lo[i] && ch <= hi[i];
}

/* smtpc_reply_text - the text of one line, control characters (other
 * than TAB) as '?' so a reply passed on can not carry line ends. */
static void
smtpc_reply_text(struct smtpc_reply *r, const char *s, size_t n)
{
    size_t i, o = 0;

    for (i = 0; i < n && o + 1 < sizeof(r->text); i++) {
        unsigned char ch = (unsigned char)s[i];

        r->text[o++] =
            (ch < 0x20 && ch != '\t') || ch == 0x7f ? '?' : (char)ch;
    }
    r->text[o] = '\0';
}

int
smtpc_reply_parse(const char *text, size_t len, struct smtpc_reply *r,
                  size_t *used)
{
    size_t off = 0, lines = 0;
    int code = -1;

    *used = 0;
    while (off < len) {
        const char *p = text + off, *lf;
        size_t n, tl, i;
        int c;

        lf = memchr(p, '\n', len - off);
        n = lf != NULL ? (size_t)(lf - p) + 1 : len - off;
        if (off + n > SMTPC_REPLY_MAX || ++lines > SMTPC_REPLY_LINES)
            return -1;
        tl = n;
        if (lf != NULL) {
            tl--;
            if (tl > 0 && p[tl - 1] == '\r')
                tl--;
        }
        for (i = 0; i < 3 && i < tl; i++)
            if (!smtpc_code_digit_ok(i, p[i]))
                return -1;
        if (lf == NULL) {
            /* An incomplete line: wrong as far as it goes, or more is
             * needed. "250\r" may still become "250\r\n". */
            if (tl > 3 && p[3] != ' ' && p[3] != '-' &&
                !(tl == 4 && p[3] == '\r'))
                return -1;
            if (tl >= 3 && code >= 0 &&
                (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0') != code)
                return -1;
            return 0;
        }
        if (tl < 3)
            return -1;
        c = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
        if (code >= 0 && c != code)
            return -1;
        code = c;
        off += n;
        if (tl == 3 || p[3] == ' ') {
            r->code = c;
            if (tl > 4)
                smtpc_reply_text(r, p + 4, tl - 4);
            else
                r->text[0] = '\0';
            *used = off;
            return 1;
        }
        if (p[3] != '-')
            return -1;
    }
    return 0;
}

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

static int
smtpc_hop_err(struct err *e, const char *hop, const char *why)
{
    return err_set(e, ERR_CONFIG,
                   "next_hop: '%.200s': %s; expected smtp:[host]:port, "
                   "lmtp:[host]:port or maildir:/path",
                   hop, why);
}

static int
smtpc_host_char_ok(char ch, int bracketed)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_' ||
           (bracketed && ch == ':');
}

static int
smtpc_parse_next_hop(struct smtpc_pool *p, const char *hop, struct err *e)
{
    const char *rest, *h, *hend, *after;
    unsigned char a6[sizeof(struct in6_addr)];
    size_t i, n;
    long port = 0;

    if (hop == NULL || hop[0] == '\0')
        return err_set(e, ERR_CONFIG, "next_hop: not set");
    if (strncasecmp(hop, "maildir:", 8) == 0) {
        p->kind = SMTPC_MAILDIR;
        rest = hop + 8;
        n = strlen(rest);
        while (n > 1 && rest[n - 1] == '/')
            n--;
        if (rest[0] != '/' || n < 2)
            return smtpc_hop_err(e, hop, "a Maildir needs an absolute path");
        if (n > SMTPC_PATH_MAX)
            return smtpc_hop_err(e, hop, "path too long");
        for (i = 0; i < n; i++)
            if ((unsigned char)rest[i] < 0x20 || rest[i] == 0x7f)
                return smtpc_hop_err(e, hop, "control character in path");
        if ((p->maildir = strndup(rest, n)) == NULL)
            return err_nomem(e);
        return 0;
    }
    if (strncasecmp(hop, "smtp:", 5) == 0) {
        p->kind = SMTPC_SMTP;
        memcpy(p->port, "25", 3);
    } else if (strncasecmp(hop, "lmtp:", 5) == 0) {
        p->kind = SMTPC_LMTP;
        memcpy(p->port, "24", 3);
    } else {
        return smtpc_hop_err(e, hop, "unknown kind");
    }
    rest = hop + 5;
    if (rest[0] == '[') {
        h = rest + 1;
        if ((hend = strchr(h, ']')) == NULL)
            return smtpc_hop_err(e, hop, "missing ']'");
        after = hend + 1;
    } else {
        h = rest;
        hend = h + strcspn(h, ":");
        after = hend;
    }
    n = (size_t)(hend - h);
    if (n == 0)
        return smtpc_hop_err(e, hop, "no host");
    if (n > SMTPC_HOST_MAX)
        return smtpc_hop_err(e, hop, "host name too long");
    for (i = 0; i < n; i++)
        if (!smtpc_host_char_ok(h[i], rest[0] == '['))
            return smtpc_hop_err(e, hop, "bad character in host");
    memcpy(p->host, h, n);
    p->host[n] = '\0';
    if (after[0] == ':') {
        for (i = 1; after[i] != '\0'; i++) {
            if (after[i] < '0' || after[i] > '9' || i > 5)
                return smtpc_hop_err(e, hop, "bad port");
            port = port * 10 + (after[i] - '0');
        }
        if (port < 1 || port > 65535)
            return smtpc_hop_err(e, hop, "bad port");
        snprintf(p->port, sizeof(p->port), "%ld", port);
    } else if (after[0] != '\0') {
        return smtpc_hop_err(e, hop, "junk after the host");
    }
    p->host_is_address = inet_pton(AF_INET, p->host, a6) == 1 ||
                         inet_pton(AF_INET6, p->host, a6) == 1;
    return 0;
}

/* smtpc_auth_load - the one "user:password" line of path. */
static int
smtpc_auth_load(struct smtpc_pool *p, const char *path, struct err *e)
{
    char *line = NULL, *colon;
    size_t cap = 0, len, ulen, plen;
    ssize_t got;
    unsigned lineno = 0, found = 0;
    struct stat st;
    FILE *fp;
    int fd, rc = 0;

    /* Checked and read through one descriptor; O_NONBLOCK so that a FIFO
     * in its place is refused instead of waited on. */
    if ((fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)) < 0)
        return err_sys(e, ERR_CONFIG, "next_hop_auth_file: %s", path);
    if (fstat(fd, &st) < 0) {
        close(fd);
        return err_sys(e, ERR_CONFIG, "next_hop_auth_file: %s", path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(e, ERR_CONFIG,
                       "next_hop_auth_file: %s: not a regular file", path);
    }
    if (cfg_secret_check(path, &st, S_IROTH | S_IWOTH,
                         "the next hop's password", e) < 0) {
        close(fd);
        return -1;
    }
    if ((fp = fdopen(fd, "r")) == NULL) {
        close(fd);
        return err_sys(e, ERR_CONFIG, "next_hop_auth_file: %s", path);
    }
    while (rc == 0 && (got = getline(&line, &cap, fp)) >= 0) {
        lineno++;
        len = (size_t)got;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        line[len] = '\0';
        if (len == 0 || line[0] == '#')
            continue;
        colon = memchr(line, ':', len);
        if (found++) {
            rc = err_set(e, ERR_CONFIG,
                         "%s:%u: more than one user:password line", path,
                         lineno);
        } else if (colon == NULL || colon == line) {
            rc = err_set(e, ERR_CONFIG, "%s:%u: expected user:password", path,
                         lineno);
        } else if (strlen(line) != len) {
            rc = err_set(e, ERR_CONFIG, "%s:%u: NUL in line", path, lineno);
        } else {
            ulen = (size_t)(colon - line);
            plen = len - ulen - 1;
            if (ulen > SMTPC_CRED_MAX || plen > SMTPC_CRED_MAX)
                rc = err_set(e, ERR_CONFIG,
                             "%s:%u: user or password over %d octets", path,
                             lineno, SMTPC_CRED_MAX);
            else {
                memcpy(p->user, line, ulen);
                p->user[ulen] = '\0';
                memcpy(p->pass, colon + 1, plen);
                p->pass[plen] = '\0';
            }
        }
        explicit_bzero(line, cap);
    }
    if (rc == 0 && ferror(fp))
        rc = err_sys(e, ERR_CONFIG, "next_hop_auth_file: %s", path);
    if (rc == 0 && !found)
        rc = err_set(e, ERR_CONFIG, "%s: no user:password line", path);
    free(line);
    fclose(fp);
    if (rc == 0)
        p->has_auth = 1;
    return rc;
}

/* ------------------------------------------------------------ TLS settings */

static const struct {
    const char *name;
    int version;
} smtpc_protos[] = {
    {"SSLv2", 0x0002},           {"SSLv3", SSL3_VERSION},
    {"TLSv1", TLS1_VERSION},     {"TLSv1.1", TLS1_1_VERSION},
    {"TLSv1.2", TLS1_2_VERSION}, {"TLSv1.3", TLS1_3_VERSION},
};
#define SMTPC_PROTOS (sizeof(smtpc_protos) / sizeof(smtpc_protos[0]))
/* What relaychain speaks: TLSv1.2 and TLSv1.3 (auth_tls_client_ctx). */
#define SMTPC_PROTOS_SPOKEN 0x30u

static int
smtpc_proto_index(const char *w, size_t n)
{
    size_t i;

    for (i = 0; i < SMTPC_PROTOS; i++)
        if (strlen(smtpc_protos[i].name) == n &&
            strncasecmp(w, smtpc_protos[i].name, n) == 0)
            return (int)i;
    return -1;
}

/* smtpc_protocols_parse - Postfix's smtp_tls_protocols syntax: names
 * ("TLSv1.3": only those), exclusions ("!TLSv1.2") and bounds
 * (">=TLSv1.2", "<=TLSv1.3"), separated by white space, commas or
 * colons; into the versions for SSL_CTX_set_min/max_proto_version. 0,
 * or -1 with e (the reason only). */
static int
smtpc_protocols_parse(const char *s, int *min, int *max, struct err *e)
{
    unsigned want = 0, keep = (1u << SMTPC_PROTOS) - 1, set;
    const char *w;
    size_t n, lo, hi;
    int i, k;

    for (w = s; *w != '\0'; w += n) {
        w += strspn(w, " \t,:");
        if ((n = strcspn(w, " \t,:")) == 0)
            break;
        k = w[0] == '!'                                              ? 1
            : (n > 2 && (w[0] == '>' || w[0] == '<') && w[1] == '=') ? 2
                                                                     : 0;
        if ((i = smtpc_proto_index(w + k, n - (size_t)k)) < 0)
            return err_set(e, ERR_CONFIG,
                           "'%.*s' is not a protocol (SSLv2, SSLv3, TLSv1, "
                           "TLSv1.1, TLSv1.2 or TLSv1.3, with '!', '>=' or "
                           "'<=' before it)",
                           (int)(n > 40 ? 40 : n), w);
        if (k == 0)
            want |= 1u << i;
        else if (w[0] == '!')
            keep &= ~(1u << i);
        else if (w[0] == '>')
            keep &= ~((1u << i) - 1);
        else
            keep &= (2u << i) - 1;
    }
    set = (want != 0 ? want : (1u << SMTPC_PROTOS) - 1) & keep &
          SMTPC_PROTOS_SPOKEN;
    if (set == 0)
        return err_set(e, ERR_CONFIG,
                       "'%.100s' leaves none of the protocols relaychain "
                       "speaks (TLSv1.2, TLSv1.3)",
                       s);
    for (lo = 0; !(set & (1u << lo)); lo++)
        ;
    for (hi = SMTPC_PROTOS - 1; !(set & (1u << hi)); hi--)
        ;
    *min = smtpc_protos[lo].version;
    *max = smtpc_protos[hi].version;
    return 0;
}

static int
smtpc_hex(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* smtpc_pins_parse - SHA-256 fingerprints, 64 hex digits each with
 * optional colons between octets (as "openssl x509 -fingerprint
 * -sha256" prints them) and an optional "sha256:" before, separated by
 * white space or commas; 0, or -1 with e (the reason only). */
static int
smtpc_pins_parse(const char *s, unsigned char pins[][SMTPC_PIN_LEN],
                 size_t *npins, struct err *e)
{
    const char *w, *d, *end;
    size_t n, k;
    int hi, lo;

    *npins = 0;
    for (w = s; *w != '\0'; w += n) {
        w += strspn(w, " \t,");
        if ((n = strcspn(w, " \t,")) == 0)
            break;
        d = w;
        if (n > 7 && strncasecmp(d, "sha256:", 7) == 0)
            d += 7;
        if (*npins == SMTPC_PINS_MAX)
            return err_set(e, ERR_CONFIG, "more than %d fingerprints",
                           SMTPC_PINS_MAX);
        end = w + n;
        for (k = 0; k < SMTPC_PIN_LEN; k++) {
            if (k > 0 && d < end && *d == ':')
                d++;
            if (end - d < 2 || (hi = smtpc_hex(d[0])) < 0 ||
                (lo = smtpc_hex(d[1])) < 0)
                break;
            pins[*npins][k] = (unsigned char)(hi << 4 | lo);
            d += 2;
        }
        if (k != SMTPC_PIN_LEN || d != end)
            return err_set(e, ERR_CONFIG,
                           "'%.*s' is not a SHA-256 fingerprint (64 hex "
                           "digits, colons between octets allowed)",
                           (int)(n > 100 ? 100 : n), w);
        (*npins)++;
    }
    if (*npins == 0)
        return err_set(e, ERR_CONFIG, "no fingerprint given");
    return 0;
}

/* smtpc_name_ok - a host name to check: letters, digits, '.', '-',
 * '_', and '*' for nothing (a wildcard is the certificate's business). */
static int
smtpc_name_ok(const char *name)
{
    size_t i;

    for (i = 0; name[i] != '\0'; i++)
        if (!smtpc_host_char_ok(name[i], 0))
            return 0;
    return i > 0 && i <= SMTPC_HOST_MAX;
}

void
smtpc_settings_tls(struct smtpc_settings *s, const struct cfg *c)
{
    const char *hop = cfg_str(c, "next_hop");
    int own =
        hop != NULL && s->next_hop != NULL && strcmp(hop, s->next_hop) == 0;

    s->tls = (enum smtpc_tls)cfg_enum(c, "next_hop_tls");
    s->tls_ca_file = cfg_str(c, "next_hop_tls_ca_file");
    s->tls_protocols = cfg_str(c, "next_hop_tls_protocols");
    /* A name and a pin are those of one host: the next hop's own. */
    s->tls_fingerprint = own ? cfg_str(c, "next_hop_tls_fingerprint") : NULL;
    s->tls_name = own ? cfg_str(c, "next_hop_tls_name") : NULL;
}

int
smtpc_tls_check_cfg(const struct cfg *c, struct err *e)
{
    unsigned char pins[SMTPC_PINS_MAX][SMTPC_PIN_LEN];
    enum smtpc_tls level = (enum smtpc_tls)cfg_enum(c, "next_hop_tls");
    const char *v, *hop = cfg_str(c, "next_hop");
    struct smtpc_pool tmp;
    X509_STORE *store;
    size_t npins;
    int lo, hi, address;

    if ((v = cfg_str(c, "next_hop_tls_protocols")) != NULL &&
        smtpc_protocols_parse(v, &lo, &hi, e) < 0)
        return cfg_err(e, c, "next_hop_tls_protocols", "%s", e->text);
    if ((v = cfg_str(c, "next_hop_tls_fingerprint")) != NULL) {
        if (smtpc_pins_parse(v, pins, &npins, e) < 0)
            return cfg_err(e, c, "next_hop_tls_fingerprint", "%s", e->text);
        if (level < SMTPC_TLS_ENCRYPT)
            return cfg_err(e, c, "next_hop_tls_fingerprint",
                           "a pin needs next_hop_tls = encrypt, verify or "
                           "secure (with none or may TLS can be left out)");
    }
    if ((v = cfg_str(c, "next_hop_tls_name")) != NULL && !smtpc_name_ok(v))
        return cfg_err(e, c, "next_hop_tls_name",
                       "'%.100s' is not a host name", v);
    if ((v = cfg_str(c, "next_hop_tls_ca_file")) != NULL &&
        level >= SMTPC_TLS_VERIFY) {
        ERR_clear_error();
        if ((store = X509_STORE_new()) == NULL)
            return err_nomem(e);
        if (X509_STORE_load_file(store, v) != 1) {
            char why[256];
            unsigned long code = ERR_get_error();

            if (code != 0)
                ERR_error_string_n(code, why, sizeof(why));
            else
                snprintf(why, sizeof(why), "no certificates in it");
            ERR_clear_error();
            X509_STORE_free(store);
            return cfg_err(e, c, "next_hop_tls_ca_file",
                           "%s: cannot load the CA certificates: %s", v, why);
        }
        X509_STORE_free(store);
    }
    if (level == SMTPC_TLS_SECURE && cfg_str(c, "next_hop_tls_name") == NULL &&
        hop != NULL) {
        memset(&tmp, 0, sizeof(tmp));
        address = smtpc_parse_next_hop(&tmp, hop, e) == 0 &&
                  tmp.kind != SMTPC_MAILDIR && tmp.host_is_address;
        free(tmp.maildir);
        if (address)
            return cfg_err(e, c, "next_hop_tls",
                           "secure checks the certificate against the next "
                           "hop's name, and next_hop names the address %s: "
                           "set next_hop_tls_name to the name its "
                           "certificate is for",
                           tmp.host);
    }
    return 0;
}

/* smtpc_key_err - "key: " before the reason already in e; -1. */
static int
smtpc_key_err(struct err *e, const char *key)
{
    char why[ERR_TEXT_MAX];

    snprintf(why, sizeof(why), "%s", e->text);
    return err_set(e, ERR_CONFIG, "%s: %s", key, why);
}

/* smtpc_tls_init - p's client context for level p->tls with s's TLS
 * settings; 0, or -1 with e (ERR_CONFIG naming the key at fault). */
static int
smtpc_tls_init(struct smtpc_pool *p, const struct smtpc_settings *s,
               struct err *e)
{
    const char *name = s->tls_name;
    int min = TLS1_2_VERSION, max = TLS1_3_VERSION;
    char why[256];
    unsigned long code;
    X509_VERIFY_PARAM *vp;

    if (s->tls_protocols != NULL &&
        smtpc_protocols_parse(s->tls_protocols, &min, &max, e) < 0)
        return smtpc_key_err(e, "next_hop_tls_protocols");
    if (s->tls_fingerprint != NULL) {
        if (smtpc_pins_parse(s->tls_fingerprint, p->pins, &p->npins, e) < 0)
            return smtpc_key_err(e, "next_hop_tls_fingerprint");
        if (p->tls < SMTPC_TLS_ENCRYPT)
            return err_set(e, ERR_CONFIG,
                           "next_hop_tls_fingerprint: a pin needs "
                           "next_hop_tls = encrypt, verify or secure");
    }
    if (name == NULL || name[0] == '\0')
        name = p->host_is_address ? NULL : p->host;
    else if (!smtpc_name_ok(name))
        return err_set(e, ERR_CONFIG,
                       "next_hop_tls_name: '%.100s' is not a host name", name);
    if (name != NULL)
        snprintf(p->tls_name, sizeof(p->tls_name), "%s", name);
    if (p->tls == SMTPC_TLS_SECURE && name == NULL)
        return err_set(e, ERR_CONFIG,
                       "next_hop_tls = secure checks the certificate "
                       "against a name, and %s is an address: name the "
                       "host instead, or set next_hop_tls_name",
                       p->host);
    if ((p->tls_ctx = auth_tls_client_ctx(e)) == NULL)
        return -1;
    ERR_clear_error();
    if (SSL_CTX_set_min_proto_version(p->tls_ctx, min) != 1 ||
        SSL_CTX_set_max_proto_version(p->tls_ctx, max) != 1)
        goto ssl_fail;
    if (p->tls >= SMTPC_TLS_VERIFY &&
        (s->tls_ca_file != NULL
             ? SSL_CTX_load_verify_locations(p->tls_ctx, s->tls_ca_file, NULL)
             : SSL_CTX_set_default_verify_paths(p->tls_ctx)) != 1) {
        code = ERR_get_error();
        if (code != 0)
            ERR_error_string_n(code, why, sizeof(why));
        else
            snprintf(why, sizeof(why), "no certificates in it");
        ERR_clear_error();
        return err_set(e, ERR_CONFIG,
                       "next_hop_tls_ca_file: %s: cannot load the CA "
                       "certificates: %s",
                       s->tls_ca_file != NULL ? s->tls_ca_file
                                              : "the system's store",
                       why);
    }
    if (p->tls == SMTPC_TLS_SECURE) {
        /* The handshake checks the name; SSL_new() copies this. */
        vp = SSL_CTX_get0_param(p->tls_ctx);
        X509_VERIFY_PARAM_set_hostflags(vp,
                                        X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (X509_VERIFY_PARAM_set1_host(vp, p->tls_name, 0) != 1)
            goto ssl_fail;
    }
    return 0;
ssl_fail:
    code = ERR_get_error();
    if (code != 0)
        ERR_error_string_n(code, why, sizeof(why));
    else
        snprintf(why, sizeof(why), "no reason given by OpenSSL");
    ERR_clear_error();
    return err_set(e, ERR_LIB, "next hop TLS settings: %s", why);
}

static int
smtpc_maildir_init(struct smtpc_pool *p, struct err *e)
{
    static const char *const subdirs[] = {"tmp", "new", "cur"};
    char path[SMTPC_PATH_MAX + 8], host[SMTPC_HOST_MAX + 1];
    struct stat st;
    size_t i, o = 0;

    if (stat(p->maildir, &st) < 0)
        return err_sys(e, ERR_CONFIG, "next_hop: %s", p->maildir);
    if (!S_ISDIR(st.st_mode))
        return err_set(e, ERR_CONFIG, "next_hop: %s: not a directory",
                       p->maildir);
    for (i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", p->maildir, subdirs[i]);
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
            return err_sys(e, ERR_CONFIG, "next_hop: %s", path);
        if (stat(path, &st) < 0)
            return err_sys(e, ERR_CONFIG, "next_hop: %s", path);
        if (!S_ISDIR(st.st_mode))
            return err_set(e, ERR_CONFIG, "next_hop: %s: not a directory",
                           path);
    }
    if (gethostname(host, sizeof(host)) < 0)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    for (i = 0; host[i] != '\0'; i++) {
        if (host[i] == '/' || host[i] == ':') {
            o += (size_t)snprintf(p->name_host + o, sizeof(p->name_host) - o,
                                  "\\%03o", (unsigned char)host[i]);
        } else {
            p->name_host[o++] = host[i];
            p->name_host[o] = '\0';
        }
    }
    return 0;
}

struct smtpc_pool *
smtpc_pool_new(const struct smtpc_settings *s, struct err *e)
{
    struct smtpc_pool *p;
    char host[SMTPC_HOST_MAX + 1];
    const char *helo = s->helo_name;
    size_t i;

    if ((p = calloc(1, sizeof(*p))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    if (pthread_mutex_init(&p->lock, NULL) != 0) {
        free(p);
        err_set(e, ERR_TEMP, "smtpc: cannot create a mutex");
        return NULL;
    }
    if (smtpc_parse_next_hop(p, s->next_hop, e) < 0)
        goto fail;
    if (helo == NULL || helo[0] == '\0') {
        if (gethostname(host, sizeof(host)) < 0 || host[0] == '\0')
            snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = '\0';
        helo = host;
    }
    for (i = 0; helo[i] != '\0'; i++)
        if (!smtpc_host_char_ok(helo[i], 1) && helo[i] != '[' &&
            helo[i] != ']')
            break;
    if (helo[i] != '\0' || i > SMTPC_HOST_MAX) {
        err_set(e, ERR_CONFIG, "helo name '%.100s': not a host name", helo);
        goto fail;
    }
    if ((p->helo = strdup(helo)) == NULL) {
        err_nomem(e);
        goto fail;
    }
    p->tls = s->tls;
    p->connect_timeout_ms = s->connect_timeout_ms > 0
                                ? s->connect_timeout_ms
                                : SMTPC_CONNECT_TIMEOUT_MS;
    p->timeout_ms = s->timeout_ms > 0 ? s->timeout_ms : SMTPC_TIMEOUT_MS;
    p->idle_timeout_ms =
        s->idle_timeout_ms > 0 ? s->idle_timeout_ms : SMTPC_IDLE_TIMEOUT_MS;
    p->max_idle = s->max_idle;
    if (p->kind == SMTPC_MAILDIR) {
        if (smtpc_maildir_init(p, e) < 0)
            goto fail;
        return p;
    }
    if (p->tls != SMTPC_TLS_NONE && smtpc_tls_init(p, s, e) < 0)
        goto fail;
    if (s->auth_file != NULL && s->auth_file[0] != '\0' &&
        smtpc_auth_load(p, s->auth_file, e) < 0)
        goto fail;
    return p;
fail:
    smtpc_pool_free(p);
    return NULL;
}

void
smtpc_pool_free(struct smtpc_pool *p)
{
    struct smtpc_conn *c, *next;

    if (p == NULL)
        return;
    for (c = p->idle; c != NULL; c = next) {
        next = c->next;
        smtpc_conn_free(c, 1);
    }
    if (p->tls_ctx != NULL)
        SSL_CTX_free(p->tls_ctx);
    explicit_bzero(p->user, sizeof(p->user));
    explicit_bzero(p->pass, sizeof(p->pass));
    free(p->maildir);
    free(p->helo);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

enum smtpc_kind
smtpc_pool_kind(const struct smtpc_pool *p)
{
    return p->kind;
}

const char *
smtpc_relay_name(const struct smtpc_conn *c)
{
    return c != NULL ? c->relay : "none";
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

/* smtpc_pin_match - the certificate's or its public key's SHA-256 is one
 * of the pins; hex gets the certificate's, "AB:CD:...", for the reply. */
static int
smtpc_pin_match(const struct smtpc_pool *p, X509 *cert, char *hex, size_t n)
{
    unsigned char md[2][EVP_MAX_MD_SIZE];
    unsigned len[2] = {0, 0};
    size_t i, k, o = 0;

    hex[0] = '\0';
    if (X509_digest(cert, EVP_sha256(), md[0], &len[0]) != 1 ||
        X509_pubkey_digest(cert, EVP_sha256(), md[1], &len[1]) != 1) {
        ERR_clear_error();
        return 0;
    }
    for (i = 0; i < len[0] && o + 4 <= n; i++)
        o +=
            (size_t)snprintf(hex + o, n - o, "%s%02X", i ? ":" : "", md[0][i]);
    for (i = 0; i < p->npins; i++)
        for (k = 0; k < 2; k++)
            if (len[k] == SMTPC_PIN_LEN &&
                memcmp(md[k], p->pins[i], SMTPC_PIN_LEN) == 0)
                return 1;
    return 0;
}

/* smtpc_tls_peer_check - after the handshake: the level's verdict on the
 * host's certificate (OpenSSL verified the chain, and the name for
 * secure, while it ran) and the pins. 0, or -1 with r the 4xx that
 * defers the mail and says why. */
static int
smtpc_tls_peer_check(struct smtpc_conn *c, struct smtpc_reply *r,
                     struct err *e)
{
    const struct smtpc_pool *p = c->pool;
    SSL *ssl = netio_tls_ssl(c->io);
    X509 *cert;
    char why[SMTPC_HOST_MAX + 100], hex[SMTPC_PIN_LEN * 3 + 1];
    long v;

    if (p->tls < SMTPC_TLS_VERIFY && p->npins == 0)
        return 0;
    if (ssl == NULL || (cert = SSL_get0_peer_certificate(ssl)) == NULL) {
        snprintf(why, sizeof(why), "the host sent no certificate");
    } else if (p->tls >= SMTPC_TLS_VERIFY &&
               (v = SSL_get_verify_result(ssl)) != X509_V_OK) {
        if (v == X509_V_ERR_HOSTNAME_MISMATCH)
            snprintf(why, sizeof(why),
                     "hostname mismatch (the certificate is not for %s)",
                     p->tls_name);
        else
            snprintf(why, sizeof(why), "%s", X509_verify_cert_error_string(v));
    } else if (p->npins > 0 && !smtpc_pin_match(p, cert, hex, sizeof(hex))) {
        snprintf(why, sizeof(why),
                 "its fingerprint %s is not in next_hop_tls_fingerprint", hex);
    } else {
        c->verified = 1;
        return 0;
    }
    c->broken = 1;
    return smtpc_fail(r, e, "4.7.5 Server certificate not verified: %s: %s",
                      c->relay, why);
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

struct smtpc_conn *
smtpc_get(struct smtpc_pool *p, struct smtpc_reply *r, struct err *e)
{
    struct smtpc_conn *c, *old = NULL;

    r->code = 0;
    r->text[0] = '\0';
    if (p->kind == SMTPC_MAILDIR) {
        smtpc_fail(r, e, "4.3.0 next hop is a Maildir, not a relay");
        e->code = ERR_INTERNAL;
        return NULL;
    }
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

int
smtpc_rset(struct smtpc_conn *c, struct err *e)
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

void
smtpc_put(struct smtpc_pool *p, struct smtpc_conn *c, int ok)
{
    struct smtpc_conn *old = NULL;
    struct err e;

    if (c == NULL)
        return;
    if (ok && !c->broken && c->in_mail && smtpc_rset(c, &e) < 0)
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

    netio_free(c->io);
    c->io = NULL;
    c->broken = 1;
    if ((n = smtpc_open(c->pool, 1, r, e)) == NULL)
        return -1;
    buf_fini(&c->line);
    buf_fini(&c->rbuf);
    free(c->obuf);
    *c = *n;
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

int
smtpc_mail(struct smtpc_conn *c, const struct msg_env *env, const char *sender,
           const char *params, struct smtpc_reply *r, struct err *e)
{
    int rc;

    if (c->broken || c->io == NULL)
        return smtpc_dead(c, r, e);
    if (c->in_mail && smtpc_rset(c, e) < 0)
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

int
smtpc_rcpt(struct smtpc_conn *c, const char *rcpt, const char *params,
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

/* smtpc_convert - convert message octets from in[*pos] on, at most
 * SMTPC_WINDOW of them (a CRLF pair may take one more), into out, which
 * has room for 2 * SMTPC_WINDOW: for SMTP every line end becomes CRLF
 * and a leading "." is doubled; for a file every line end becomes LF.
 * *bol says whether the next octet starts a line. Returns the octets
 * written. */
static size_t
smtpc_convert(const char *in, size_t len, size_t *pos, int *bol, int smtp,
              char *out)
{
    size_t i = *pos, o = 0, wend, seg;
    const char *lf, *cr;

    wend = len - i > SMTPC_WINDOW ? i + SMTPC_WINDOW : len;
    while (i < wend) {
        if (*bol) {
            if (smtp && in[i] == '.')
                out[o++] = '.';
            *bol = 0;
        }
        lf = memchr(in + i, '\n', wend - i);
        seg = lf != NULL ? (size_t)(lf - in) : wend;
        if ((cr = memchr(in + i, '\r', seg - i)) != NULL)
            seg = (size_t)(cr - in);
        memcpy(out + o, in + i, seg - i);
        o += seg - i;
        i = seg;
        if (i == wend)
            break;
        if (in[i] == '\r' && i + 1 < len && in[i + 1] == '\n')
            i++;
        i++;
        if (smtp)
            out[o++] = '\r';
        out[o++] = '\n';
        *bol = 1;
    }
    *pos = i;
    return o;
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

int
smtpc_data_rcpts(struct smtpc_conn *c, const char *data, size_t len,
                 struct smtpc_reply *each, size_t n, struct smtpc_reply *r,
                 struct err *e)
{
    struct iovec one;

    one.iov_base = (void *)(uintptr_t)data;
    one.iov_len = len;
    return smtpc_data_iov(c, &one, 1, each, n, r, e);
}

int
smtpc_data_iov(struct smtpc_conn *c, const struct iovec *iov, size_t niov,
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

int
smtpc_data(struct smtpc_conn *c, const char *data, size_t len,
           struct smtpc_reply *r, struct err *e)
{
    return smtpc_data_rcpts(c, data, len, NULL, 0, r, e);
}

/* ------------------------------------------------------------ Maildir */

/* smtpc_maildir_file - write the message to path, fsynced. */
static int
smtpc_maildir_file(const char *path, const char *data, size_t len,
                   struct err *e)
{
    size_t pos = 0, n;
    int fd, bol = 1, saved;
    char *out;

    if ((out = malloc(2 * SMTPC_WINDOW + 8)) == NULL)
        return err_nomem(e);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        saved = errno;
        free(out);
        errno = saved;
        return -1;
    }
    while (pos < len) {
        n = smtpc_convert(data, len, &pos, &bol, 0, out);
        if (pos >= len && !bol)
            out[n++] = '\n';
        if (fdio_write_all(fd, out, n) < 0)
            goto fail;
    }
    if (fsync(fd) < 0)
        goto fail;
    free(out);
    if (close(fd) < 0) {
        err_sys(e, ERR_IO, "write %s", path);
        unlink(path);
        return -2;
    }
    return 0;
fail:
    err_sys(e, ERR_IO, "write %s", path);
    free(out);
    close(fd);
    unlink(path);
    return -2;
}

static int
smtpc_fsync_dir(const char *path, struct err *e)
{
    int fd, rc = 0;

    if ((fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return err_sys(e, ERR_IO, "open %s", path);
    if (fsync(fd) < 0)
        rc = err_sys(e, ERR_IO, "fsync %s", path);
    close(fd);
    return rc;
}

/* smtpc_maildir_fail - 451 with an enhanced code that fits errno. */
static int
smtpc_maildir_fail(struct smtpc_reply *r, struct err *e)
{
    const char *enh = "4.3.0";

    if (e->sys_errno == ENOSPC)
        enh = "4.3.1";
    else if (e->sys_errno == EDQUOT)
        enh = "4.2.2";
    smtpc_reply_set(r, 451, "%s maildir delivery failed: %s", enh, e->text);
    return -1;
}

int
smtpc_maildir_deliver(struct smtpc_pool *p, const char *data, size_t len,
                      const char *qid, struct smtpc_reply *r, struct err *e)
{
    char name[SMTPC_HOST_MAX * 4 + 96];
    char tmp[SMTPC_PATH_MAX + sizeof(name) + 8];
    char dst[SMTPC_PATH_MAX + sizeof(name) + 8];
    struct timespec ts;
    unsigned long seq;
    int tries, rc;

    if (p->kind != SMTPC_MAILDIR) {
        smtpc_fail(r, e, "4.3.0 next hop is not a Maildir");
        e->code = ERR_INTERNAL;
        return -1;
    }
    for (tries = 0; tries < SMTPC_NAME_TRIES; tries++) {
        clock_gettime(CLOCK_REALTIME, &ts);
        pthread_mutex_lock(&p->lock);
        seq = ++p->seq;
        pthread_mutex_unlock(&p->lock);
        snprintf(name, sizeof(name), "%lld.M%06ldP%ldQ%lu.%s",
                 (long long)ts.tv_sec, ts.tv_nsec / 1000, (long)getpid(), seq,
                 p->name_host);
        snprintf(tmp, sizeof(tmp), "%s/tmp/%s", p->maildir, name);
        snprintf(dst, sizeof(dst), "%s/new/%s", p->maildir, name);
        rc = smtpc_maildir_file(tmp, data, len, e);
        if (rc == -1 && errno == EEXIST)
            continue;
        if (rc == -1)
            err_sys(e, ERR_IO, "create %s", tmp);
        if (rc < 0)
            return smtpc_maildir_fail(r, e);
        if (link(tmp, dst) == 0) {
            unlink(tmp);
        } else if (errno == EEXIST) {
            unlink(tmp);
            continue;
        } else if (errno == EPERM || errno == ENOSYS || errno == EOPNOTSUPP) {
            /* no hard links here: the unique name must do */
            if (rename(tmp, dst) < 0) {
                err_sys(e, ERR_IO, "rename %s", tmp);
                unlink(tmp);
                return smtpc_maildir_fail(r, e);
            }
        } else {
            err_sys(e, ERR_IO, "link %s", dst);
            unlink(tmp);
            return smtpc_maildir_fail(r, e);
        }
        snprintf(tmp, sizeof(tmp), "%s/new", p->maildir);
        if (smtpc_fsync_dir(tmp, e) < 0) {
            unlink(dst);
            return smtpc_maildir_fail(r, e);
        }
        smtpc_reply_set(r, 250, "2.0.0 Ok: %s delivered to maildir as %s",
                        qid != NULL ? qid : "NOQUEUE", name);
        return 0;
    }
    err_set(e, ERR_TEMP, "no unique name in %s/tmp after %d tries", p->maildir,
            SMTPC_NAME_TRIES);
    return smtpc_maildir_fail(r, e);
}
