/*
 * smtpc - the next-hop client: SMTP or LMTP to a relay, or a Maildir
 *
 * A struct smtpc_pool holds the next-hop settings and the idle
 * connections kept for reuse (connection caching, as Postfix's scache).
 * A delivery takes a connection with smtpc_get(), runs one transaction
 * (smtpc_mail, smtpc_rcpt..., smtpc_data) and hands it back with
 * smtpc_put(); a connection that saw an error is closed instead of being
 * kept. A reused connection that turns out to be dead at MAIL is replaced
 * by a new one once, transparently.
 *
 * The transport is next_hop's (smtp:, lmtp: or maildir:), and the
 * caller runs the same transaction for each: a Maildir takes MAIL and
 * every RCPT with 250 and writes the message as one file, with one reply
 * for all recipients (nexthop.c, smtpc.c, maildir.c). The settings of a
 * pool come from the configuration through smtpc_settings_from_cfg(),
 * for the next hop and for each transport_map route alike.
 *
 * Replies are returned whole in struct smtpc_reply: the code, the enhanced
 * status code when the server gave one, and the text of the last line, so
 * the SMTP front end can pass them back to its client as they are.
 * Connection failures are reported as a reply too ("451 4.4.1 ..."),
 * with smtpc_* returning -1 only for local failures. An LMTP host
 * answers the message once per recipient: smtpc_data_rcpts() hands
 * those replies over in an array the caller owns.
 *
 * The pool is thread-safe; a connection belongs to one thread at a time.
 */
#ifndef RC_SMTPC_H
#define RC_SMTPC_H

#include <stddef.h>
#include <sys/uio.h>

#include "util/buf.h"
#include "util/cfg.h"
#include "util/err.h"
#include "msg/msg.h"

enum smtpc_kind { SMTPC_SMTP, SMTPC_LMTP, SMTPC_MAILDIR };

/* In the order of next_hop_tls's choices, and Postfix's levels. */
enum smtpc_tls {
    SMTPC_TLS_NONE,    /* never STARTTLS */
    SMTPC_TLS_MAY,     /* when offered */
    SMTPC_TLS_ENCRYPT, /* required: no delivery without it */
    SMTPC_TLS_VERIFY,  /* required, certificate chain verified */
    SMTPC_TLS_SECURE   /* required, chain and host name verified */
};

struct smtpc_settings {
    const char *next_hop;  /* "smtp:[127.0.0.1]:10025", "lmtp:[::1]:24",
                              "maildir:/var/mail/relay/" */
    const char *helo_name; /* our EHLO/LHLO name */
    enum smtpc_tls tls;
    const char *auth_file;       /* "user:password" for AUTH PLAIN, or NULL */
    const char *tls_ca_file;     /* PEM trust anchors for verify and secure;
                                    NULL: the system's store */
    const char *tls_protocols;   /* ">=TLSv1.2", "!TLSv1.2"...; NULL: all
                                    of TLSv1.2 and TLSv1.3 */
    const char *tls_fingerprint; /* SHA-256 pins of the certificate or
                                    its public key, or NULL */
    const char *tls_name;        /* the name secure checks; NULL: the host of
                                    next_hop */
    int connect_timeout_ms;
    int timeout_ms;      /* each command/reply */
    int idle_timeout_ms; /* how long an idle connection is kept */
    size_t max_idle;     /* idle connections kept at most */
};

struct smtpc_reply {
    int code;       /* 250, 451, ...; 0 before any reply */
    char text[512]; /* "2.0.0 Ok: queued as X", last line's text, with
                       the enhanced code when the server sent one */
};

struct smtpc_pool;
struct smtpc_conn;

/* smtpc_settings_from_cfg - s for next_hop (NULL: c's next_hop key)
 * from the keys of c: myhostname for EHLO (not set: NULL, which
 * smtpc_pool_new() takes as the system's host name), next_hop_tls*,
 * next_hop_auth_file, next_hop_timeout; connections tried for 30s and
 * kept idle for 10s, max_idle 0 (none kept: the caller sets how many).
 * The strings are c's. 0, or -1 (ERR_CONFIG) when there is no next hop. */
int smtpc_settings_from_cfg(const struct cfg *c, const char *next_hop,
                            struct smtpc_settings *s, struct err *e);

/* smtpc_settings_tls - the next_hop_tls* keys of c into s (pointers
 * into c). Call it after s->next_hop is set: next_hop_tls_name names the
 * host of c's next_hop only, not that of a transport_map route. */
void smtpc_settings_tls(struct smtpc_settings *s, const struct cfg *c);

/* smtpc_tls_check_cfg - the next_hop_tls* keys of c make sense (the
 * protocols and pins parse, a pin or a CA file has a level that uses
 * it, secure has a name to check); 0, or -1 with "path:line: key: ..."
 * in e. */
int smtpc_tls_check_cfg(const struct cfg *c, struct err *e);

/* smtpc_pool_new - check settings (a bad next_hop is ERR_CONFIG with a
 * reason) and make an empty pool. */
struct smtpc_pool *smtpc_pool_new(const struct smtpc_settings *s,
                                  struct err *e);
void smtpc_pool_free(struct smtpc_pool *p);

/* smtpc_relay_name - "127.0.0.1[127.0.0.1]:10025" for log lines;
 * "maildir" for a Maildir, "none" for NULL. */
const char *smtpc_relay_name(const struct smtpc_conn *c);
/* smtpc_set_id - the queue id of c's transaction (copied), for the
 * replies that name it: a Maildir's 250 does. smtpc_mail() takes env's
 * qid when there is one. */
void smtpc_set_id(struct smtpc_conn *c, const char *qid);

/* smtpc_get - a connection ready for MAIL (greeting, EHLO, STARTTLS and
 * AUTH done), idle or new. On failure returns NULL and fills r with the
 * 4xx (or 5xx) the client should hear (451 4.4.1 when unreachable). */
struct smtpc_conn *smtpc_get(struct smtpc_pool *p, struct smtpc_reply *r,
                             struct err *e);
/* smtpc_put - return c; kept for reuse when ok and the pool has room. */
void smtpc_put(struct smtpc_pool *p, struct smtpc_conn *c, int ok);

/* smtpc_has_xforward - the server offered XFORWARD. */
int smtpc_has_xforward(const struct smtpc_conn *c);
/* smtpc_has_dsn - the server offered DSN (it takes NOTIFY and ORCPT and
 * reports success itself). */
int smtpc_has_dsn(const struct smtpc_conn *c);

/* One transaction. Each returns 0 with r filled (any code), -1 when the
 * connection broke (r then holds a 4xx to pass on and the connection must
 * be put back with ok = 0). smtpc_mail sends XFORWARD first when env is
 * not NULL and the server offered it. */
int smtpc_mail(struct smtpc_conn *c, const struct msg_env *env,
               const char *sender, const char *params, struct smtpc_reply *r,
               struct err *e);
int smtpc_rcpt(struct smtpc_conn *c, const char *rcpt, const char *params,
               struct smtpc_reply *r, struct err *e);
/* smtpc_data - DATA, the message (CRLF line ends, dot-stuffed here),
 * the final "."; the end marker goes out with the last chunk. With SMTP
 * r is the one reply to the message. With LMTP, where every recipient
 * gets its own, r is the one a client that hears a single reply for all
 * of them should get: the last when all are 2xx, else the first 4xx
 * (the client tries every recipient again: those already delivered get
 * the message twice, but none is lost), else the first failure. */
int smtpc_data(struct smtpc_conn *c, const char *data, size_t len,
               struct smtpc_reply *r, struct err *e);
/* smtpc_data_rcpts - smtpc_data, also telling each recipient's fate.
 * each is the caller's array of n replies, one for each recipient that
 * smtpc_rcpt accepted (2xx) in this transaction, in the order of those
 * RCPT commands. With LMTP each[i] is the host's own reply for the i-th
 * of them; if the connection is lost part way, those whose reply was
 * read keep it and the rest get the 4xx in r. With SMTP, and when DATA
 * is refused or the message can not be sent, every entry is a copy of
 * r; so are entries past the number of recipients accepted. Returns as
 * smtpc_data, with r as there. */
int smtpc_data_rcpts(struct smtpc_conn *c, const char *data, size_t len,
                     struct smtpc_reply *each, size_t n, struct smtpc_reply *r,
                     struct err *e);
/* smtpc_data_iov - smtpc_data_rcpts for a message in pieces (msg_iov),
 * sent without joining them; the octets on the wire are those of the
 * pieces joined, a CRLF split between two pieces included. */
int smtpc_data_iov(struct smtpc_conn *c, const struct iovec *iov, size_t niov,
                   struct smtpc_reply *each, size_t n, struct smtpc_reply *r,
                   struct err *e);
int smtpc_rset(struct smtpc_conn *c, struct err *e);

/* smtpc_pool_kind - the transport of p's next hop. */
enum smtpc_kind smtpc_pool_kind(const struct smtpc_pool *p);

/* smtpc_reply_parse - parse one or more reply lines ("250-...\r\n250 ...")
 * held in text; returns 1 with r filled when a complete reply is there,
 * 0 when more lines are needed, -1 when the text is not an SMTP reply.
 * *used gets the octets consumed. Exposed for tests and fuzzing. */
int smtpc_reply_parse(const char *text, size_t len, struct smtpc_reply *r,
                      size_t *used);

#endif
