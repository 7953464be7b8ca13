/*
 * smtpd_int - what the files of the SMTP front end share, and no one else
 *
 * The front end is one module in several files, each using only those
 * before it in this list, so the files form no cycle:
 *
 *     smtpd_runtime.c   the runtime part: the settings built from the
 *                       configuration (struct smtpd_runtime)
 *     smtpd_policy.c    the decisions, pure functions over the runtime,
 *                       what is known of the client (struct smtpd_facts)
 *                       and a command's argument: relaying, the
 *                       parameters of MAIL and RCPT, the sender login
 *                       map, DSN, XFORWARD, STARTTLS and AUTH
 *     smtpd_session.c   what every command does to a session: replies,
 *                       error counts, the end of a transaction
 *     smtpd_auth.c      STARTTLS and AUTH
 *     smtpd_envelope.c  MAIL, RCPT and XFORWARD
 *     smtpd_deliver.c   the end of a message: the step, then the queue or
 *                       the next hop, and the reply
 *     smtpd_data.c      DATA: reading the message and its checks
 *     smtpd.c           the server, the session and its command loop
 *
 * A struct smtpd_session belongs to the thread that serves it; the
 * struct smtpd_runtime it points to is shared and read-only; struct
 * smtpd_server is shared, its counts under its lock or atomic.
 */
#ifndef RC_SMTPD_INT_H
#define RC_SMTPD_INT_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/time.h>

#include <openssl/ssl.h>

#include "chain/conf.h"
#include "util/buf.h"
#include "util/err.h"

struct auth_rate;
struct auth_table;
struct cidr_list;
struct memlimit;
struct msg_env;
struct ratelimit_set;
struct ratestate;
struct netio;
struct queue;
struct regmap;
struct smtpc_conn;
struct smtpc_pool;

#define SMTPD_LINE_MAX                                                        \
    1024 /* command line: RFC 5321's 512, plus as                             \
            much again for extension parameters */
#define SMTPD_AUTH_LINE_MAX 12288
#define SMTPD_DATA_LINE_MAX 65536
/* octets counted against smtpd_memory_limit at a time */
#define SMTPD_MEM_STEP 65536
#define SMTPD_CLIENTS 1021          /* per-client counter buckets */
#define SMTPD_CLIENT_MAX 320        /* "name[addr]" */
#define SMTPD_AUTH_RATE_SLOTS 16384 /* clients whose AUTH failures count */
/* the octets of a queue id, ours or another MTA's */
#define SMTPD_QID_CHARS                                                       \
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

/* A list of clients as smtpd_dsn_clients and stream_header_clients
 * take it: the words mynetworks, authenticated and all, and networks. */
struct smtpd_clients {
    struct cidr_list *nets;
    int mynetworks, auth, all;
};

#define SMTPD_STREAM_MAX 64 /* octets of a stream named in stream_header */

/* The SMTP front end's part of a struct runtime (chain/runtime.h): what
 * its sessions need that is built from the configuration. */
struct smtpd_runtime {
    const struct conf *cf; /* of the runtime this is part of */
    const char *hostname;
    char hostbuf[256];
    struct cidr_list *mynetworks;
    struct cidr_list *xforward_hosts;
    struct smtpd_clients dsn; /* smtpd_dsn_clients */
    const char *const *relay_domains;
    size_t nrelay_domains;
    struct auth_table *auth;
    struct regmap *login_map;
    SSL_CTX *tls;
    struct smtpc_pool *hop;
    size_t size_limit;
    size_t memory_limit; /* smtpd_memory_limit; 0: none */
    size_t rcpt_limit;
    int timeout_ms;
    int record_deadline; /* smtpd_per_record_deadline */
    int greet_pause_ms;
    int error_limit;
    int junk_limit; /* smtpd_junk_command_limit */
    int auth_failure_limit;
    unsigned auth_failure_rate; /* a minute per client; 0: no limit */
    int normalize_newlines;
    int wrap_long_lines;
    int queue_mode; /* delivery = queue */
    /* ---- verp: mail for the relay itself, taken from anyone and read
     * (events_inbound): any address at verp_domain, and fbl_address;
     * NULL when unset or events are off. Borrowed from cf. */
    const char *inbound_domain, *inbound_fbl;
    unsigned max_conn, max_conn_client;
    /* ---- fleet */
    struct ratelimit_set *limits; /* rate_limits; NULL: none */
    struct ratestate *state;      /* their counters; with limits */
    int proxy;                    /* smtp_proxy_protocol = haproxy */
    struct cidr_list *proxy_hosts;
    int proxy_timeout_ms;
    /* ---- end fleet */
    /* ---- events: the stream a trusted client names in a header */
    const char *stream_header; /* NULL: none; borrowed from cf */
    struct smtpd_clients stream_clients;
};

struct smtpd_server {
    pthread_mutex_t lock;
    unsigned active;
    unsigned per_client[SMTPD_CLIENTS];
    atomic_uint seq;
    atomic_int stopping;
    struct queue *queue;         /* set once before the first session */
    struct auth_rate *auth_rate; /* AUTH failures, across sessions and
                                    reloads */
    struct memlimit *mem;        /* likewise; NULL: nothing is counted */
};

/* smtpd_xforward - what XFORWARD said of the client behind the peer,
 * for one transaction; "" where it said nothing. */
struct smtpd_xforward {
    char name[256], addr[INET6_ADDRSTRLEN + 8], helo[256];
    char proto[16];
    char ident[64]; /* the upstream MTA's queue id (XFORWARD IDENT) */
};

struct smtpd_rcpt {
    char *addr;
    char *params;
    /* ---- encrypt: queue mode, its group (chain_rcpt_group) when a
     * stage has one; NULL when none. Owned. */
    char *group;
    /* ---- end encrypt */
};

struct smtpd_session {
    struct smtpd_server *srv;
    struct smtpd_runtime *rt;
    struct netio *io;
    char addr[INET6_ADDRSTRLEN + 8];
    char name[256];
    char port[8];
    char helo[256];
    int helo_seen, esmtp;
    char *auth_user;
    int auth_failures, errors;
    int junk; /* NOOP, VRFY and RSET so far */
    int xforward_ok;
    struct smtpd_xforward xf;
    /* transaction */
    int in_mail;
    int dsn_ignored; /* DSN parameters were dropped (logged once) */
    char qid[16];
    char *sender;
    char *sender_params;
    struct smtpd_rcpt *rcpts;
    size_t nrcpts;
    /* ---- encrypt: the group of the transaction's first recipient
     * (chain_rcpt_group); the others must be in it. */
    char rcpt_group[256];
    /* ---- end encrypt */
    size_t n_dropped; /* ---- events: suppressed and dropped (drop) */
    char stream[SMTPD_STREAM_MAX + 1]; /* ---- events: stream_header's */
    /* ---- fleet: per rule of rate_limits (NULL until a rule applies),
     * the transaction's recipients so far; and what its message took,
     * to give back when the message is not taken after all */
    long long *rl_rcpts;
    size_t *rl_idx;
    long long *rl_amount;
    size_t rl_n;
    /* ---- end fleet */
    int inbound; /* ---- verp: the transaction is for the relay */
    struct smtpc_conn *hop;
    struct timeval t_start;
    size_t mem_held; /* octets counted in srv->mem for this DATA */
    /* counters for the disconnect line */
    unsigned n_ehlo, n_helo, n_mail, n_rcpt, n_data, n_rset, n_quit, n_auth;
    unsigned n_starttls, n_cmds, n_bad;
    unsigned n_xforward, n_xforward_all; /* accepted, all */
    int quit;
    int last_code; /* of the last reply given */
    struct buf line;
    struct err e;
};

/* ------------------------------------------------------------- policy */

/* smtpd_facts - what the policy knows of a client: no socket, no
 * session. The strings are borrowed. */
struct smtpd_facts {
    const char *addr;      /* the connected peer's address (not XFORWARD's) */
    const char *auth_user; /* NULL: not authenticated */
    int tls;               /* the session is under TLS */
};

/* smtpd_answer - the policy's answer to a command: reply NULL when it is
 * taken, else the reply to give (fixed text, or text[]), fault when it
 * counts toward error_limit (a client's mistake, not a limit of ours),
 * noqueue when it is logged as a NOQUEUE reject. */
struct smtpd_answer {
    const char *reply;
    int fault;
    int noqueue;
    char text[600];
};

int smtpd_has_ctl(const char *text, size_t n);
int smtpd_relay_ok(const struct smtpd_runtime *rt, const struct smtpd_facts *f,
                   const char *rcpt);
struct events;
struct ratelimit_event;
#define SMTPD_RATE_TEXT 256 /* a sender domain or a stream, for the limits */
/* smtpd_rate_event - what the rate limits see of s's transaction */
void smtpd_rate_event(struct smtpd_session *s, const char *given,
                      struct ratelimit_event *ev, char *sdom, char *stream);
/* smtpd_suppressed_event - record that rcpt is suppressed for stream. */
void smtpd_suppressed_event(struct smtpd_session *s, struct events *ev,
                            const char *msgid, const char *rcpt,
                            const char *stream, const char *why);
/* smtpd_clients_has - 1 when the client of f is in the list l. */
int smtpd_clients_has(const struct smtpd_runtime *rt,
                      const struct smtpd_clients *l,
                      const struct smtpd_facts *f);
int smtpd_dsn_ok(const struct smtpd_runtime *rt, const struct smtpd_facts *f);
int smtpd_dsn_offered(const struct smtpd_runtime *rt,
                      const struct smtpd_facts *f);
int smtpd_starttls_offered(const struct smtpd_runtime *rt,
                           const struct smtpd_facts *f);
int smtpd_auth_offered(const struct smtpd_runtime *rt,
                       const struct smtpd_facts *f);
int smtpd_xforward_ok(const struct smtpd_runtime *rt,
                      const struct smtpd_facts *f);
char *smtpd_keep_params(const struct smtpd_runtime *rt,
                        const struct smtpd_facts *f, const char *params,
                        int *dropped);
unsigned long long smtpd_param_size(const char *params);
const char *smtpd_check_mail_params(const char *params, size_t size_limit,
                                    int dsn, int *too_big);
const char *smtpd_check_rcpt_params(const char *params, int dsn);
int smtpd_login_owns(const struct smtpd_runtime *rt, const char *auth_user,
                     const char *sender, struct err *e);
void smtpd_mail_check(const struct smtpd_runtime *rt, const char *line,
                      struct buf *addr, const char **params,
                      struct smtpd_answer *a, struct err *e);
void smtpd_sender_check(const struct smtpd_runtime *rt,
                        const struct smtpd_facts *f, const char *sender,
                        struct smtpd_answer *a, struct err *e);
void smtpd_rcpt_check(const struct smtpd_runtime *rt,
                      const struct smtpd_facts *f, size_t nrcpts,
                      const char *line, struct buf *addr, const char **params,
                      struct smtpd_answer *a, struct err *e);
const char *smtpd_xforward_check(const struct smtpd_runtime *rt,
                                 const struct smtpd_facts *f, int in_mail,
                                 const char *arg, struct smtpd_xforward *xf);
const char *smtpd_starttls_refusal(const struct smtpd_runtime *rt,
                                   const struct smtpd_facts *f,
                                   const char *arg);
const char *smtpd_auth_refusal(const struct smtpd_runtime *rt,
                               const struct smtpd_facts *f, int in_mail,
                               const char *arg);

/* ------------------------------------------------------------ session */

/* smtpd_session.c: replies and counts (the functions say more) */
void smtpd_reply(struct smtpd_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int smtpd_flush(struct smtpd_session *s);
const char *smtpd_client(const struct smtpd_session *s, char *out, size_t n);
const char *smtpd_env_addr(const struct smtpd_session *s);
const char *smtpd_env_name(const struct smtpd_session *s);
const char *smtpd_env_helo(const struct smtpd_session *s);
void smtpd_hop_env(const struct smtpd_session *s, struct msg_env *env);
int smtpd_is_internal(const struct smtpd_session *s);
struct smtpd_facts smtpd_facts(const struct smtpd_session *s);
void smtpd_line_chomp(struct smtpd_session *s);
void smtpd_reset(struct smtpd_session *s, int hop_ok);
int smtpd_error(struct smtpd_session *s);
void smtpd_refuse(struct smtpd_session *s, const char *reply);
void smtpd_noqueue_reject(struct smtpd_session *s, const char *cmd,
                          const char *reply, const char *rcpt);
void smtpd_reply_id(struct smtpd_session *s, const char *reply);

/* the commands: each gives its reply through smtpd_reply() */
void smtpd_cmd_mail(struct smtpd_session *s, const char *line);
void smtpd_cmd_rcpt(struct smtpd_session *s, const char *line);
void smtpd_cmd_xforward(struct smtpd_session *s, const char *arg);
void smtpd_cmd_starttls(struct smtpd_session *s, const char *arg);
void smtpd_cmd_auth(struct smtpd_session *s, const char *arg);
void smtpd_cmd_data(struct smtpd_session *s, const char *arg);

/* smtpd_deliver.c: the end of a message that passed DATA's checks */
void smtpd_deliver(struct smtpd_session *s, struct buf *data);

#endif
