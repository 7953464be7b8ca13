/*
 * smtpc_transport - the next-hop client's transports, inside core/net
 *
 * Not for callers outside core/net: they use smtpc.h. A next hop is
 * reached through one transport, chosen by the prefix of next_hop:
 *
 *     smtp:     SMTP to a relay (smtpc.c)
 *     lmtp:     LMTP to a mailbox server (smtpc.c, the same code)
 *     maildir:  files in a Maildir (maildir.c)
 *
 * Each is a table of operations filled in by designated initializers.
 * nexthop.c holds the public calls of smtpc.h: it parses next_hop, makes
 * the pool and passes every call on to the pool's transport, so a caller
 * runs the same transaction (smtpc_get, smtpc_mail, smtpc_rcpt...,
 * smtpc_data*, smtpc_put) whatever the next hop is. smtpc_tls.c holds
 * the TLS settings, the certificate checks and the credentials of the
 * SMTP transport; smtpc_reply.c what every transport shares. Calls go
 * one way only: nexthop.c -> transports -> smtpc_tls.c -> smtpc_reply.c.
 *
 * struct smtpc_pool and struct smtpc_conn are shared by the transports:
 * the common part first, then what one transport uses (the others leave
 * it zero). The pool owns everything it points to; nexthop.c frees the
 * common part and the transport's fini what it made.
 */
#ifndef RC_SMTPC_TRANSPORT_H
#define RC_SMTPC_TRANSPORT_H

#include <pthread.h>
#include <stddef.h>
#include <sys/uio.h>

#include <openssl/ssl.h>

#include "util/buf.h"
#include "util/err.h"
#include "msg/msg.h"
#include "net/netio.h"
#include "net/smtpc.h"

#define SMTPC_REPLY_MAX (64 * 1024) /* octets of one reply */
#define SMTPC_HOST_MAX 255
#define SMTPC_RELAY_MAX (2 * SMTPC_HOST_MAX + 16) /* "host[addr]:port" */
#define SMTPC_CRED_MAX 255       /* octets of the user name, of the password */
#define SMTPC_PATH_MAX 3072      /* octets of the Maildir path */
#define SMTPC_WINDOW (32 * 1024) /* message octets converted per write */
#define SMTPC_PINS_MAX 8         /* next_hop_tls_fingerprint entries */
#define SMTPC_PIN_LEN 32         /* octets of a SHA-256 digest */
#define SMTPC_ID_MAX 256         /* octets of a transaction's queue id */

struct smtpc_transport_ops;

struct smtpc_pool {
    const struct smtpc_transport_ops *ops;
    enum smtpc_kind kind;
    char *helo;
    enum smtpc_tls tls;
    int connect_timeout_ms, timeout_ms, idle_timeout_ms;
    size_t max_idle;

    /* smtp and lmtp */
    char host[SMTPC_HOST_MAX + 1]; /* without the brackets */
    char port[8];
    int host_is_address;               /* no SNI for an address */
    SSL_CTX *tls_ctx;                  /* NULL without TLS */
    char tls_name[SMTPC_HOST_MAX + 1]; /* SNI, and what secure checks */
    unsigned char pins[SMTPC_PINS_MAX][SMTPC_PIN_LEN];
    size_t npins;
    char user[SMTPC_CRED_MAX + 1];
    char pass[SMTPC_CRED_MAX + 1];
    int has_auth;

    /* maildir */
    char *maildir;                          /* without trailing slashes */
    char name_host[SMTPC_HOST_MAX * 4 + 1]; /* for Maildir names */

    pthread_mutex_t lock;    /* guards what follows */
    struct smtpc_conn *idle; /* most recently used first */
    size_t nidle;
    unsigned long seq;
};

struct smtpc_conn {
    struct smtpc_pool *pool;
    char relay[SMTPC_RELAY_MAX]; /* for log lines */
    char id[SMTPC_ID_MAX];       /* the transaction's queue id, or "" */
    int broken;                  /* no further command may be sent */
    int in_mail;                 /* MAIL accepted, transaction not ended */
    size_t nrcpt_ok;

    /* smtp and lmtp */
    struct netio *io; /* NULL once closed */
    int loopback;
    int verified; /* the certificate passed verify, secure or a pin */
    unsigned ext;
    unsigned xfwd;
    int reused;           /* taken from the idle list */
    long long idle_since; /* ms, CLOCK_MONOTONIC */
    struct smtpc_conn *next;
    struct buf line; /* one reply line */
    struct buf rbuf; /* one whole reply */
    char *obuf;      /* converted message octets, 2 * SMTPC_WINDOW + 8 */
};

/* One transport. Every call has the meaning of the smtpc.h call of the
 * same name; nexthop.c has checked the arguments those calls promise. */
struct smtpc_transport_ops {
    const char *name; /* next_hop's prefix, before the ':' */
    enum smtpc_kind kind;
    /* parse - the rest of next_hop (hop is all of it, for the error)
     * into p; 0, or -1 with ERR_CONFIG in e. */
    int (*parse)(struct smtpc_pool *p, const char *hop, const char *rest,
                 struct err *e);
    /* init - what the pool needs beyond the common settings; 0, or -1
     * with e. fini frees it again; both run once per pool. */
    int (*init)(struct smtpc_pool *p, const struct smtpc_settings *s,
                struct err *e);
    void (*fini)(struct smtpc_pool *p);
    struct smtpc_conn *(*get)(struct smtpc_pool *p, struct smtpc_reply *r,
                              struct err *e);
    void (*put)(struct smtpc_pool *p, struct smtpc_conn *c, int ok);
    int (*mail)(struct smtpc_conn *c, const struct msg_env *env,
                const char *sender, const char *params, struct smtpc_reply *r,
                struct err *e);
    int (*rcpt)(struct smtpc_conn *c, const char *rcpt, const char *params,
                struct smtpc_reply *r, struct err *e);
    int (*data)(struct smtpc_conn *c, const struct iovec *iov, size_t niov,
                struct smtpc_reply *each, size_t n, struct smtpc_reply *r,
                struct err *e);
    int (*rset)(struct smtpc_conn *c, struct err *e);
};

extern const struct smtpc_transport_ops smtpc_smtp_ops;
extern const struct smtpc_transport_ops smtpc_lmtp_ops;
extern const struct smtpc_transport_ops smtpc_maildir_ops;

/* Shared by the transports (smtpc_reply.c). */
void smtpc_reply_set(struct smtpc_reply *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* smtpc_fail - a 451 reply of ours, with the same text in e (ERR_TEMP);
 * returns -1. */
int smtpc_fail(struct smtpc_reply *r, struct err *e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* smtpc_hop_err - ERR_CONFIG: next_hop is wrong, and why; -1. */
int smtpc_hop_err(struct err *e, const char *hop, const char *why);
int smtpc_host_char_ok(char ch, int bracketed);
/* smtpc_convert - convert message octets from in[*pos] on, at most
 * SMTPC_WINDOW of them (a CRLF pair may take one more), into out, which
 * has room for 2 * SMTPC_WINDOW: for SMTP every line end becomes CRLF
 * and a leading "." is doubled; for a file every line end becomes LF.
 * *bol says whether the next octet starts a line. Returns the octets
 * written. */
size_t smtpc_convert(const char *in, size_t len, size_t *pos, int *bol,
                     int smtp, char *out);

/* The SMTP transport's TLS and credentials (smtpc_tls.c). The parsers
 * give the reason only in e, for the caller to name the key. */
/* smtpc_protocols_parse - next_hop_tls_protocols into the versions for
 * SSL_CTX_set_min/max_proto_version. */
int smtpc_protocols_parse(const char *s, int *min, int *max, struct err *e);
/* smtpc_pins_parse - next_hop_tls_fingerprint into pins[0..*npins). */
int smtpc_pins_parse(const char *s, unsigned char pins[][SMTPC_PIN_LEN],
                     size_t *npins, struct err *e);
/* smtpc_name_ok - a host name next_hop_tls_name may give. */
int smtpc_name_ok(const char *name);
/* smtpc_tls_why - OpenSSL's earliest queued error as text into why (n
 * octets), or none when it queued none; the queue is emptied. */
void smtpc_tls_why(char *why, size_t n, const char *none);
/* smtpc_smtp_parse - the parse of smtp and lmtp: "[host]:port" or
 * "host:port", the port optional. */
int smtpc_smtp_parse(struct smtpc_pool *p, const char *hop, const char *rest,
                     struct err *e);
/* smtpc_auth_load - the one "user:password" line of path (the file
 * private, as cfg_secret_check() wants it) into p; 0, or -1 with
 * ERR_CONFIG in e. */
int smtpc_auth_load(struct smtpc_pool *p, const char *path, struct err *e);
/* smtpc_tls_init - p's client context for level p->tls with s's TLS
 * settings; 0, or -1 with e (ERR_CONFIG naming the key at fault). */
int smtpc_tls_init(struct smtpc_pool *p, const struct smtpc_settings *s,
                   struct err *e);
/* smtpc_tls_peer_check - after the handshake: the level's verdict on the
 * host's certificate and the pins. 0, or -1 with r the 4xx that defers
 * the mail and says why; c is then broken. */
int smtpc_tls_peer_check(struct smtpc_conn *c, struct smtpc_reply *r,
                         struct err *e);

#endif
