/*
 * smtpd - the SMTP server front end
 *
 * One session per thread, I/O through netio with smtpd_timeout. With
 * smtpd_per_record_deadline (the default) the timeout is a deadline for a
 * whole command line, line of message content, reply or STARTTLS
 * handshake, as in Postfix, so a client that sends one octet every few
 * seconds loses its thread after smtpd_timeout instead of keeping it
 * forever; it hears the 421 4.4.2 and leaves the "timeout after" log
 * line of any other timeout. Replies are collected and flushed only when the
 * client has no more pipelined input waiting, so a pipelined group of
 * commands gets its replies in one write, in order.
 *
 * Relaying (delivery = through) is a proxy, as Postfix's before-queue
 * content filter: MAIL opens a transaction at the next hop and RCPT is
 * passed on, so the client hears each recipient's fate from the next hop
 * itself. At end of DATA the chain runs; if it changed the envelope, the
 * next-hop transaction is reset and replayed with the new one. The client
 * hears the next hop's reply to the message, so nothing is answered 250
 * that the next hop did not take. An LMTP next hop answers the message
 * once per recipient, and the client can hear only one reply: a 4xx when
 * any recipient got one (the client sends again to all of them, and the
 * recipients already delivered get the message twice), else the first
 * 5xx when any failed (the client's report then names the delivered
 * ones too), else 250. Duplicates, never a loss; the log has each
 * recipient's own reply and a warning for such a split. delivery = queue
 * gives per-recipient results instead.
 *
 * With delivery = queue the session is the front half of a store and
 * forward relay: recipients are accepted here (the relay policy still
 * applies), DSN is offered (RET, ENVID, NOTIFY, ORCPT are checked and
 * kept), MAIL gets 452 4.3.1 when the spool is short of queue_minfree,
 * and the end of DATA is answered 250 only after queue_commit() made the
 * processed message durable; its failure is a 452 or 451, never 250.
 *
 * Tracing: the message gets this hop's Received field before the chain
 * runs (so a signing stage signs what leaves), every 4xx and 5xx reply
 * to a message ends "(id QID)", XFORWARD IDENT (the upstream Postfix's
 * queue id) is logged as orig_queue_id=, and each message ends with one
 * amavisd-new style summary line (chain_summary()). A quarantined
 * message is stored as its stage received it (chain undo_hold), so a
 * release can resume the chain after that stage.
 *
 * DATA is read line by line with a bound on each line; only CRLF.CRLF
 * ends it. Bare LF, bare CR, NUL, over-long lines and oversize messages
 * are noted while reading and answered after the end, so that no byte of
 * the message is ever taken for a command. The message is counted in the
 * process-wide struct memlimit from DATA on (smtpd_memory_limit): DATA
 * gets 452 4.3.1 while the count is full, and a message that fills it
 * on the way is freed at once, read to its end and answered 452 4.3.1.
 * smtpd_cmd_data() gives the count back on each of its ways out.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "util/addr.h"
#include "net/auth.h"
#include "util/buf.h"
#include "chain/chain.h"
#include "chain/runtime.h"
#include "chain/step.h"
#include "util/cidr.h"
#include "util/esmtp.h"
#include "util/log.h"
#include "util/memlimit.h"
#include "util/qid.h"
#include "msg/msg.h"
#include "net/netio.h"
#include "queue/quarantine.h"
#include "queue/queue.h"
#include "queue/queue_conf.h"
#include "util/regmap.h"
#include "net/smtpc.h"
#include "smtpd/smtpd.h"
#include "smtpd/smtpd_conf.h"

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

/* ------------------------------------------------------------ runtime */

/* The SMTP front end's part of a struct runtime (chain/runtime.h): what
 * its sessions need that is built from the configuration. */
struct smtpd_runtime {
    const struct conf *cf; /* of the runtime this is part of */
    const char *hostname;
    char hostbuf[256];
    struct cidr_list *mynetworks;
    struct cidr_list *xforward_hosts;
    struct cidr_list *dsn_nets; /* smtpd_dsn_clients: the networks named */
    int dsn_mynetworks, dsn_auth, dsn_all; /* ...and the words */
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
    unsigned max_conn, max_conn_client;
};

static struct cidr_list *
smtpd_cidr(const struct cfg *c, const char *key, struct err *e)
{
    const char *const *items;
    size_t n = cfg_list(c, key, &items);
    struct cidr_list *l;

    if ((l = cidr_list_new(items, n, e)) == NULL)
        cfg_err(e, c, key, "%s", e->text);
    return l;
}

/* smtpd_dsn_clients - smtpd_dsn_clients: the words "mynetworks",
 * "authenticated" and "all", and networks as in mynetworks. */
static int
smtpd_dsn_clients(struct smtpd_runtime *rt, const struct cfg *c, struct err *e)
{
    const char *const *items;
    const char **nets;
    size_t n = cfg_list(c, "smtpd_dsn_clients", &items), i, k = 0;

    if ((nets = calloc(n + 1, sizeof(*nets))) == NULL)
        return err_nomem(e);
    for (i = 0; i < n; i++) {
        if (strcasecmp(items[i], "mynetworks") == 0) {
            rt->dsn_mynetworks = 1;
        } else if (strcasecmp(items[i], "authenticated") == 0) {
            rt->dsn_auth = 1;
        } else if (strcasecmp(items[i], "all") == 0) {
            rt->dsn_all = 1;
        } else if (strchr(items[i], '.') == NULL &&
                   strchr(items[i], ':') == NULL) {
            /* a word, not an address: a typo must not pass as a network */
            free(nets);
            return cfg_err(e, c, "smtpd_dsn_clients",
                           "'%.100s': not mynetworks, authenticated, all or "
                           "a network",
                           items[i]);
        } else {
            nets[k++] = items[i];
        }
    }
    rt->dsn_nets = cidr_list_new(nets, k, e);
    free(nets);
    if (rt->dsn_nets == NULL)
        return cfg_err(e, c, "smtpd_dsn_clients", "%s", e->text);
    return 0;
}

static void smtpd_runtime_free(void *part);

/* smtpd_runtime_build - the part from cf; NULL with e set, "path:line:
 * reason" for a setting it refuses. */
static void *
smtpd_runtime_build(const struct conf *cf, struct err *e)
{
    const struct cfg *c = cf->cfg;
    struct smtpc_settings hop;
    struct smtpd_runtime *rt;
    const char *s;

    if ((rt = calloc(1, sizeof(*rt))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    rt->cf = cf;
    if ((s = cfg_str(c, "myhostname")) == NULL) {
        if (gethostname(rt->hostbuf, sizeof(rt->hostbuf) - 1) < 0)
            snprintf(rt->hostbuf, sizeof(rt->hostbuf), "localhost");
        s = rt->hostbuf;
    }
    rt->hostname = s;
    if ((rt->mynetworks = smtpd_cidr(c, "mynetworks", e)) == NULL ||
        (rt->xforward_hosts = smtpd_cidr(c, "xforward_hosts", e)) == NULL)
        goto fail;
    if (smtpd_dsn_clients(rt, c, e) < 0)
        goto fail;
    rt->nrelay_domains = cfg_list(c, "relay_domains", &rt->relay_domains);
    /* Each failure names the key and its line: relaychain check prints
     * these too (one validation path). */
    if ((s = cfg_str(c, "auth_password_file")) != NULL &&
        (rt->auth = auth_table_load(s, e)) == NULL) {
        cfg_err(e, c, "auth_password_file", "%s", e->text);
        goto fail;
    }
    if ((s = cfg_str(c, "sender_login_map")) != NULL &&
        (rt->login_map = regmap_load(s, e)) == NULL) {
        cfg_err(e, c, "sender_login_map", "%s", e->text);
        goto fail;
    }
    if ((cfg_str(c, "tls_cert_file") == NULL) !=
        (cfg_str(c, "tls_key_file") == NULL)) {
        cfg_err(e, c,
                cfg_str(c, "tls_cert_file") ? "tls_cert_file" : "tls_key_file",
                "tls_cert_file and tls_key_file go together");
        goto fail;
    }
    if (cfg_str(c, "tls_cert_file") != NULL &&
        (rt->tls = auth_tls_server_ctx(cfg_str(c, "tls_cert_file"),
                                       cfg_str(c, "tls_key_file"), e)) ==
            NULL) {
        s = cfg_str(c, "tls_key_file");
        cfg_err(e, c,
                strncmp(e->text, s, strlen(s)) == 0 &&
                        strcmp(s, cfg_str(c, "tls_cert_file")) != 0
                    ? "tls_key_file"
                    : "tls_cert_file",
                "%s", e->text);
        goto fail;
    }
    if (rt->auth != NULL && rt->tls == NULL) {
        cfg_err(e, c, "auth_password_file",
                "AUTH is offered only after STARTTLS: set tls_cert_file and "
                "tls_key_file");
        goto fail;
    }
    rt->queue_mode = queue_delivery(c) == QUEUE_DELIVERY_QUEUE;
    if (cfg_str(c, "next_hop") == NULL) {
        const char *const *l;

        /* A milter-only daemon hands messages back to the MTA. */
        if (cfg_list(c, "smtp_listen", &l) == 0 &&
            cfg_str(c, "milter_listen") != NULL)
            goto limits;
        cfg_err(e, c, "next_hop", "relaychaind needs a next_hop");
        goto fail;
    }
    if (smtpc_settings_from_cfg(c, NULL, &hop, e) < 0)
        goto fail;
    hop.max_idle = 64;
    if ((rt->hop = smtpc_pool_new(&hop, e)) == NULL) {
        if (e->code == ERR_CONFIG)
            cfg_err_prefixed(e, c, "next_hop");
        goto fail;
    }
limits:
    rt->size_limit = cf->limits.message_size;
    rt->memory_limit = (size_t)cfg_num(c, "smtpd_memory_limit");
    rt->rcpt_limit = (size_t)cfg_num(c, "recipient_limit");
    rt->timeout_ms = (int)cfg_num(c, "smtpd_timeout");
    rt->record_deadline = cfg_bool(c, "smtpd_per_record_deadline");
    rt->greet_pause_ms = (int)cfg_num(c, "smtpd_greet_pause");
    rt->error_limit = (int)cfg_num(c, "error_limit");
    rt->junk_limit = (int)cfg_num(c, "smtpd_junk_command_limit");
    rt->auth_failure_limit = (int)cfg_num(c, "auth_failure_limit");
    rt->auth_failure_rate = (unsigned)cfg_num(c, "auth_failure_rate");
    rt->normalize_newlines =
        (enum smtpd_bare_newline)cfg_enum(c, "bare_newline") ==
        SMTPD_BARE_NEWLINE_NORMALIZE;
    rt->wrap_long_lines = (enum smtpd_long_line)cfg_enum(
                              c, "long_line_action") == SMTPD_LONG_LINE_WRAP;
    rt->max_conn = (unsigned)cfg_num(c, "max_connections");
    rt->max_conn_client = (unsigned)cfg_num(c, "max_connections_per_client");
    return rt;

fail:
    smtpd_runtime_free(rt);
    return NULL;
}

static void
smtpd_runtime_free(void *part)
{
    struct smtpd_runtime *rt = part;

    if (rt == NULL)
        return;
    smtpc_pool_free(rt->hop);
    if (rt->tls != NULL)
        SSL_CTX_free(rt->tls);
    regmap_free(rt->login_map);
    auth_table_free(rt->auth);
    cidr_list_free(rt->dsn_nets);
    cidr_list_free(rt->xforward_hosts);
    cidr_list_free(rt->mynetworks);
    free(rt);
}

const struct runtime_part_type smtpd_runtime_type = {
    .name = "smtpd",
    .build = smtpd_runtime_build,
    .free = smtpd_runtime_free,
};

/* ------------------------------------------------------------- server */

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

struct smtpd_server *
smtpd_server_new(struct err *e)
{
    struct smtpd_server *srv;

    if ((srv = calloc(1, sizeof(*srv))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    if ((srv->auth_rate = auth_rate_new(SMTPD_AUTH_RATE_SLOTS, e)) == NULL) {
        free(srv);
        return NULL;
    }
    pthread_mutex_init(&srv->lock, NULL);
    atomic_init(&srv->seq, (unsigned)getpid() << 8);
    atomic_init(&srv->stopping, 0);
    return srv;
}

void
smtpd_server_free(struct smtpd_server *srv)
{
    if (srv == NULL)
        return;
    pthread_mutex_destroy(&srv->lock);
    auth_rate_free(srv->auth_rate);
    free(srv);
}

unsigned
smtpd_server_active(struct smtpd_server *srv)
{
    unsigned n;

    pthread_mutex_lock(&srv->lock);
    n = srv->active;
    pthread_mutex_unlock(&srv->lock);
    return n;
}

void
smtpd_server_set_queue(struct smtpd_server *srv, struct queue *q)
{
    srv->queue = q;
}

void
smtpd_server_set_memlimit(struct smtpd_server *srv, struct memlimit *ml)
{
    srv->mem = ml;
}

void
smtpd_server_stop(struct smtpd_server *srv)
{
    atomic_store(&srv->stopping, 1);
}

static unsigned
smtpd_client_bucket(const char *addr)
{
    unsigned h = 5381;

    while (*addr)
        h = h * 33 + (unsigned char)*addr++;
    return h % SMTPD_CLIENTS;
}

/* smtpd_admit - count a new session; 0 when over a limit. Buckets may be
 * shared by two addresses, which can only make the per-client limit
 * stricter, never looser. */
static int
smtpd_admit(struct smtpd_server *srv, const struct smtpd_runtime *rt,
            const char *addr)
{
    unsigned b = smtpd_client_bucket(addr);
    int ok;

    pthread_mutex_lock(&srv->lock);
    ok =
        srv->active < rt->max_conn && srv->per_client[b] < rt->max_conn_client;
    if (ok) {
        srv->active++;
        srv->per_client[b]++;
    }
    pthread_mutex_unlock(&srv->lock);
    return ok;
}

static void
smtpd_leave(struct smtpd_server *srv, const char *addr)
{
    unsigned b = smtpd_client_bucket(addr);

    pthread_mutex_lock(&srv->lock);
    srv->active--;
    srv->per_client[b]--;
    pthread_mutex_unlock(&srv->lock);
}

/* ------------------------------------------------------------ session */

struct smtpd_rcpt {
    char *addr;
    char *params;
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
    char xf_name[256], xf_addr[INET6_ADDRSTRLEN + 8], xf_helo[256];
    char xf_proto[16];
    char xf_ident[64]; /* the upstream MTA's queue id (XFORWARD IDENT) */
    /* transaction */
    int in_mail;
    int dsn_ignored; /* DSN parameters were dropped (logged once) */
    char qid[16];
    char *sender;
    char *sender_params;
    struct smtpd_rcpt *rcpts;
    size_t nrcpts;
    struct smtpc_conn *hop;
    struct timeval t_start;
    size_t mem_held; /* octets counted in srv->mem for this DATA */
    /* counters for the disconnect line */
    unsigned n_ehlo, n_helo, n_mail, n_rcpt, n_data, n_rset, n_quit, n_auth;
    unsigned n_starttls, n_cmds, n_bad;
    unsigned n_xforward, n_xforward_all; /* accepted, all */
    int quit;
    struct buf line;
    struct err e;
};

static void smtpd_reply(struct smtpd_session *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
smtpd_reply(struct smtpd_session *s, const char *fmt, ...)
{
    char text[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    (void)netio_write(s->io, text, strlen(text), &s->e);
    (void)netio_write(s->io, "\r\n", 2, &s->e);
}

static int
smtpd_flush(struct smtpd_session *s)
{
    return netio_flush(s->io, &s->e);
}

static const char *
smtpd_client(const struct smtpd_session *s, char *out, size_t n)
{
    snprintf(out, n, "%s[%s]", s->name, s->addr);
    return out;
}

/* smtpd_env_addr - the client as the chain should see it (XFORWARD wins). */
static const char *
smtpd_env_addr(const struct smtpd_session *s)
{
    return s->xf_addr[0] ? s->xf_addr : s->addr;
}

/* smtpd_is_internal - 1 when the client is in mynetworks. Behind a
 * content filter the peer is the MTA: the client that XFORWARD named
 * decides whether the mail is ours (a signing stage asks). */
static int
smtpd_is_internal(const struct smtpd_session *s)
{
    return cidr_list_contains(s->rt->mynetworks, smtpd_env_addr(s));
}

static void
smtpd_reset(struct smtpd_session *s, int hop_ok)
{
    size_t i;

    if (s->hop != NULL) {
        /* smtpc_put() ends an open next-hop transaction itself (RSET). */
        smtpc_put(s->rt->hop, s->hop, hop_ok);
        s->hop = NULL;
    }
    for (i = 0; i < s->nrcpts; i++) {
        free(s->rcpts[i].addr);
        free(s->rcpts[i].params);
    }
    free(s->rcpts);
    s->rcpts = NULL;
    s->nrcpts = 0;
    free(s->sender);
    free(s->sender_params);
    s->sender = s->sender_params = NULL;
    s->in_mail = 0;
    s->dsn_ignored = 0;
    s->qid[0] = '\0';
    /* XFORWARD describes one transaction, as in Postfix. */
    s->xf_name[0] = s->xf_addr[0] = s->xf_helo[0] = s->xf_proto[0] = '\0';
    s->xf_ident[0] = '\0';
}

/* smtpd_error - count a client error; 1 when the limit is reached and
 * the session must end. */
static int
smtpd_error(struct smtpd_session *s)
{
    if (++s->errors < s->rt->error_limit)
        return 0;
    smtpd_reply(s, "421 4.7.0 %s Error: too many errors", s->rt->hostname);
    s->quit = 1;
    return 1;
}

/* smtpd_junk - count a NOOP, VRFY or RSET. Past smtpd_junk_command_limit
 * each one also counts as an error, as in Postfix, so that a client
 * cannot hold its session with commands that do nothing. */
static void
smtpd_junk(struct smtpd_session *s)
{
    if (++s->junk > s->rt->junk_limit)
        (void)smtpd_error(s);
}

/* smtpd_refuse - a fixed error reply that counts toward error_limit. */
static void
smtpd_refuse(struct smtpd_session *s, const char *reply)
{
    smtpd_reply(s, "%s", reply);
    smtpd_error(s);
}

static void
smtpd_noqueue_reject(struct smtpd_session *s, const char *cmd,
                     const char *reply, const char *rcpt)
{
    char client[SMTPD_CLIENT_MAX];

    log_info("NOQUEUE",
             "reject: %s from %s: %s; from=<%s>%s%s%s proto=%s "
             "helo=<%s>",
             cmd, smtpd_client(s, client, sizeof(client)), reply,
             s->sender ? s->sender : "", rcpt ? " to=<" : "", rcpt ? rcpt : "",
             rcpt ? ">" : "", s->esmtp ? "ESMTP" : "SMTP", s->helo);
}

/* smtpd_arg - the text after "VERB" and one space, or NULL. */
static const char *
smtpd_arg(const char *line, size_t verb_len)
{
    const char *p = line + verb_len;

    if (*p == '\0')
        return NULL;
    if (*p != ' ')
        return NULL;
    while (*p == ' ')
        p++;
    return p;
}

static int
smtpd_verb_is(const char *line, const char *verb)
{
    size_t n = strlen(verb);

    return strncasecmp(line, verb, n) == 0 &&
           (line[n] == '\0' || line[n] == ' ');
}

/* smtpd_has_ctl - does text (n octets) hold a control character? What
 * a client sends is kept in the queue file, whose text records refuse
 * them, and written to the log and to other servers. */
static int
smtpd_has_ctl(const char *text, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if ((unsigned char)text[i] < 0x20 || text[i] == 0x7f)
            return 1;
    return 0;
}

/* smtpd_dsn_ok - are this client's DSN requests honoured
 * (smtpd_dsn_clients)? A report carries what the client chose to whom
 * it named as sender: an open reflector unless the client is known. */
static int
smtpd_dsn_ok(const struct smtpd_session *s)
{
    const struct smtpd_runtime *rt = s->rt;

    return rt->dsn_all || (rt->dsn_auth && s->auth_user != NULL) ||
           (rt->dsn_mynetworks &&
            cidr_list_contains(rt->mynetworks, s->addr)) ||
           cidr_list_contains(rt->dsn_nets, s->addr);
}

/* smtpd_dsn_keys - the parameters dropped for a client whose DSN requests
 * are not honoured. */
static const char *const smtpd_dsn_keys[] = {"RET", "ENVID", "NOTIFY", "ORCPT",
                                             NULL};

/* smtpd_keep_params - the parameters to keep of a MAIL or RCPT that
 * passed its checks (caller frees; NULL when out of memory): all of them,
 * or without the DSN requests of a client not in smtpd_dsn_clients. */
static char *
smtpd_keep_params(struct smtpd_session *s, const char *params)
{
    char *kept;
    int dropped;

    if (!s->rt->queue_mode || smtpd_dsn_ok(s))
        return strdup(params);
    if ((kept = esmtp_params_without(params, smtpd_dsn_keys, &dropped)) !=
            NULL &&
        dropped)
        s->dsn_ignored = 1;
    return kept;
}

/* smtpd_dsn_log - say once per transaction that DSN requests were
 * dropped, so that an admin can tell why no report came. */
static void
smtpd_dsn_log(struct smtpd_session *s)
{
    if (s->dsn_ignored != 1)
        return;
    s->dsn_ignored = 2;
    log_info(s->qid,
             "DSN request ignored: client %s[%s] is not in "
             "smtpd_dsn_clients",
             s->name, s->addr);
}

static void
smtpd_cmd_ehlo(struct smtpd_session *s, const char *arg, int esmtp)
{
    const struct smtpd_runtime *rt = s->rt;

    if (arg == NULL || *arg == '\0') {
        smtpd_reply(s, "501 5.5.4 Syntax: %s hostname",
                    esmtp ? "EHLO" : "HELO");
        smtpd_error(s);
        return;
    }
    if (smtpd_has_ctl(arg, strlen(arg))) {
        /* the name goes into the queue file, Received and the log */
        smtpd_refuse(s, "501 5.5.2 Error: control character in host name");
        return;
    }
    smtpd_reset(s, 1);
    snprintf(s->helo, sizeof(s->helo), "%s", arg);
    s->helo_seen = 1;
    s->esmtp = esmtp;
    if (!esmtp) {
        smtpd_reply(s, "250 %s", rt->hostname);
        return;
    }
    smtpd_reply(s, "250-%s", rt->hostname);
    smtpd_reply(s, "250-PIPELINING");
    smtpd_reply(s, "250-SIZE %zu", rt->size_limit);
    if (rt->tls != NULL && !netio_is_tls(s->io))
        smtpd_reply(s, "250-STARTTLS");
    if (rt->auth != NULL && netio_is_tls(s->io) && s->auth_user == NULL)
        smtpd_reply(s, "250-AUTH PLAIN LOGIN");
    if (s->xforward_ok)
        smtpd_reply(s, "250-XFORWARD NAME ADDR PROTO HELO IDENT");
    smtpd_reply(s, "250-ENHANCEDSTATUSCODES");
    /* to a client whose requests would be ignored, as Postfix's
     * smtpd_discard_ehlo_keyword_address_maps; one that may still
     * authenticate is told, since it will not send EHLO again */
    if (rt->queue_mode &&
        (smtpd_dsn_ok(s) || (rt->dsn_auth && rt->auth != NULL)))
        smtpd_reply(s, "250-DSN");
    smtpd_reply(s, "250-8BITMIME");
    smtpd_reply(s, "250 SMTPUTF8");
}

/* smtpd_check_params - only the parameters we advertise; returns NULL or
 * the reply for a bad one. */
static const char *
smtpd_check_mail_params(const char *params, size_t size_limit, int dsn,
                        int *too_big)
{
    const char *p = params;
    int ret = 0, envid = 0;

    *too_big = 0;
    while (p != NULL && *p) {
        const char *end, *eq;
        size_t n;

        while (*p == ' ')
            p++;
        if (*p == '\0')
            break;
        end = strchr(p, ' ');
        if (end == NULL)
            end = p + strlen(p);
        n = (size_t)(end - p);
        eq = memchr(p, '=', n);
        if (smtpd_has_ctl(p, n))
            return "501 5.5.4 Bad parameter syntax";
        if (strncasecmp(p, "SIZE=", 5) == 0) {
            char num[24];
            unsigned long long v;
            char *stop;

            if (n - 5 == 0 || n - 5 >= sizeof(num))
                return "501 5.5.4 Bad SIZE parameter";
            memcpy(num, p + 5, n - 5);
            num[n - 5] = '\0';
            v = strtoull(num, &stop, 10);
            if (*stop != '\0' || num[0] == '-')
                return "501 5.5.4 Bad SIZE parameter";
            if (v > size_limit)
                *too_big = 1;
        } else if (strncasecmp(p, "BODY=", 5) == 0) {
            if (!(n == 13 && strncasecmp(p + 5, "8BITMIME", 8) == 0) &&
                !(n == 9 && strncasecmp(p + 5, "7BIT", 4) == 0))
                return "501 5.5.4 Bad BODY parameter";
        } else if (n == 8 && strncasecmp(p, "SMTPUTF8", 8) == 0) {
            /* accepted */
        } else if (strncasecmp(p, "AUTH=", 5) == 0) {
            char mailbox[ADDR_MAX + 1];

            /* accepted and ignored, as Postfix does for untrusted input,
             * but only when it is what RFC 4954 says: <> or xtext */
            if (!(n == 7 && strncmp(p + 5, "<>", 2) == 0) &&
                (n == 5 || esmtp_xtext_decode(p + 5, n - 5, mailbox,
                                              sizeof(mailbox)) < 0))
                return "501 5.5.4 Bad AUTH parameter";
        } else if (dsn && strncasecmp(p, "RET=", 4) == 0) {
            if (ret++ || !((n == 8 && strncasecmp(p + 4, "FULL", 4) == 0) ||
                           (n == 8 && strncasecmp(p + 4, "HDRS", 4) == 0)))
                return "501 5.5.4 Bad RET parameter";
        } else if (dsn && strncasecmp(p, "ENVID=", 6) == 0) {
            char id[128];

            /* RFC 3461: at most 100 characters of xtext */
            if (envid++ || n - 6 == 0 || n - 6 > 100 ||
                esmtp_xtext_decode(p + 6, n - 6, id, sizeof(id)) < 0)
                return "501 5.5.4 Bad ENVID parameter";
        } else {
            (void)eq;
            return "555 5.5.4 Unsupported option";
        }
        p = end;
    }
    return NULL;
}

/* smtpd_login_owns - the authenticated user may send as sender. */
static int
smtpd_login_owns(struct smtpd_session *s, const char *sender)
{
    struct buf owners;
    const char *dom;
    int found, ok = 0;

    if (s->rt->login_map == NULL || s->auth_user == NULL)
        return 1;
    buf_init(&owners, 4096);
    found = regmap_lookup(s->rt->login_map, sender, &owners, NULL, &s->e);
    if (found == 0 && (dom = addr_domain(sender)) != NULL) {
        char key[ADDR_MAX + 2];

        snprintf(key, sizeof(key), "@%s", dom);
        found = regmap_lookup(s->rt->login_map, key, &owners, NULL, &s->e);
    }
    if (found == 1) {
        const char *p = buf_str(&owners);
        size_t ulen = strlen(s->auth_user);

        while (*p) {
            size_t n = strcspn(p, ", \t");

            if (n == ulen && strncmp(p, s->auth_user, n) == 0)
                ok = 1;
            p += n;
            p += strspn(p, ", \t");
        }
    }
    buf_fini(&owners);
    return ok;
}

/* smtpd_queue_refuses - in queue mode, MAIL is refused (and 1
 * returned, the reply given) when the queue is not running or the spool
 * is short of space for a message of the announced SIZE. */
static int
smtpd_queue_refuses(struct smtpd_session *s, const char *params,
                    const char *sender)
{
    char client[SMTPD_CLIENT_MAX], num[24];
    const char *reply = NULL, *v;
    unsigned long long size = 0;
    size_t len;

    if ((v = esmtp_param(params, "SIZE", &len)) != NULL && len < sizeof(num)) {
        memcpy(num, v, len);
        num[len] = '\0';
        size = strtoull(num, NULL, 10);
    }
    if (s->srv->queue == NULL)
        /* a reload switched to queue: the queue starts with the daemon */
        reply = "451 4.3.0 Error: the queue is not running; restart "
                "relaychaind to change the delivery mode";
    else if (!queue_has_space(s->srv->queue, size))
        reply = "452 4.3.1 Insufficient system storage";
    if (reply == NULL)
        return 0;
    log_info("NOQUEUE", "reject: MAIL from %s: %s; from=<%s>",
             smtpd_client(s, client, sizeof(client)), reply, sender);
    smtpd_reply(s, "%s", reply);
    return 1;
}

/* smtpd_check_rcpt_params - the parameters of RCPT: with dsn (queue
 * mode, which offers DSN) NOTIFY and ORCPT, else none; NULL or the reply
 * for a bad one. */
static const char *
smtpd_check_rcpt_params(const char *params, int dsn)
{
    int notify = 0, orcpt = 0;
    const char *p = params;

    while (*p != '\0') {
        size_t n;

        p += strspn(p, " ");
        if ((n = strcspn(p, " ")) == 0)
            break;
        if (smtpd_has_ctl(p, n))
            return "501 5.5.4 Bad parameter syntax";
        if (!dsn)
            return "555 5.5.4 Unsupported option";
        if (strncasecmp(p, "NOTIFY=", 7) == 0) {
            if (notify++ || esmtp_notify_check(p + 7, n - 7) < 0)
                return "501 5.5.4 Bad NOTIFY parameter";
        } else if (strncasecmp(p, "ORCPT=", 6) == 0) {
            char addr[600];
            size_t tl;

            /* addr-type ";" xtext, at most 500 characters */
            if (orcpt++ || n - 6 > 500 ||
                esmtp_orcpt_split(p + 6, n - 6, &tl, addr, sizeof(addr)) < 0)
                return "501 5.5.4 Bad ORCPT parameter";
        } else {
            return "555 5.5.4 Unsupported option";
        }
        p += n;
    }
    return NULL;
}

static void
smtpd_cmd_mail(struct smtpd_session *s, const char *line)
{
    struct smtpc_reply r;
    const char *p, *bad;
    struct buf addr;
    size_t used;
    int too_big;
    char client[SMTPD_CLIENT_MAX];

    if (!s->helo_seen) {
        smtpd_refuse(s, "503 5.5.1 Error: send HELO/EHLO first");
        return;
    }
    if (s->in_mail) {
        smtpd_refuse(s, "503 5.5.1 Error: nested MAIL command");
        return;
    }
    if (atomic_load(&s->srv->stopping)) {
        smtpd_reply(s,
                    "421 4.3.2 %s Service shutting down, closing "
                    "transmission channel",
                    s->rt->hostname);
        s->quit = 1;
        return;
    }
    if (strncasecmp(line, "MAIL FROM:", 10) != 0) {
        smtpd_refuse(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
        return;
    }
    p = line + 10;
    while (*p == ' ')
        p++;
    buf_init(&addr, ADDR_MAX + 1);
    if (addr_parse_path(p, strlen(p), &addr, &used, &s->e) < 0) {
        smtpd_reply(s, "501 5.1.7 Bad sender address syntax");
        buf_fini(&addr);
        smtpd_error(s);
        return;
    }
    p += used;
    while (*p == ' ')
        p++;
    if ((bad = smtpd_check_mail_params(p, s->rt->size_limit, s->rt->queue_mode,
                                       &too_big)) != NULL) {
        smtpd_reply(s, "%s", bad);
        buf_fini(&addr);
        smtpd_error(s);
        return;
    }
    if (too_big) {
        smtpd_reply(s, "552 5.3.4 Message size exceeds fixed limit");
        buf_fini(&addr);
        return;
    }
    if (s->rt->queue_mode && smtpd_queue_refuses(s, p, buf_str(&addr))) {
        buf_fini(&addr);
        return;
    }
    if (addr.len > 0 && !smtpd_login_owns(s, buf_str(&addr))) {
        char reply[400];

        snprintf(reply, sizeof(reply),
                 "553 5.7.1 <%s>: Sender address rejected: not owned by "
                 "user %s",
                 buf_str(&addr), s->auth_user);
        s->sender = strdup(buf_str(&addr));
        smtpd_noqueue_reject(s, "MAIL", reply, NULL);
        free(s->sender);
        s->sender = NULL;
        smtpd_reply(s, "%s", reply);
        buf_fini(&addr);
        return;
    }
    s->sender = buf_steal(&addr, NULL);
    s->sender_params = smtpd_keep_params(s, p);
    buf_fini(&addr);
    if (s->sender == NULL || s->sender_params == NULL) {
        smtpd_reply(s, "451 4.3.0 Error: out of memory");
        smtpd_reset(s, 1);
        return;
    }
    qid_new(&s->srv->seq, s->qid, sizeof(s->qid));
    gettimeofday(&s->t_start, NULL);

    if (!s->rt->queue_mode) {
        struct msg_env env;
        char params[512];
        size_t vlen;
        const char *v;

        memset(&env, 0, sizeof(env));
        env.frontend = MSG_FE_SMTP;
        env.qid = s->qid;
        env.client_addr = (char *)smtpd_env_addr(s);
        env.client_name = s->xf_name[0] ? s->xf_name : s->name;
        env.helo = s->xf_helo[0] ? s->xf_helo : s->helo;
        /* Only what the next hop needs to see of the client's options:
         * the body type and SMTPUTF8; SIZE is that of the result. */
        params[0] = '\0';
        if ((v = esmtp_param(p, "BODY", &vlen)) != NULL)
            snprintf(params, sizeof(params), "BODY=%.*s", (int)vlen, v);
        if (esmtp_param(p, "SMTPUTF8", &vlen) != NULL)
            snprintf(params + strlen(params), sizeof(params) - strlen(params),
                     "%sSMTPUTF8", params[0] ? " " : "");
        if ((s->hop = smtpc_get(s->rt->hop, &r, &s->e)) == NULL) {
            log_warning(s->qid, "to next hop: %s", r.text);
            smtpd_reply(s, "%d %s", r.code ? r.code : 451,
                        r.text[0] ? r.text : "4.4.1 Next hop not reachable");
            smtpd_reset(s, 0);
            return;
        }
        if (smtpc_mail(s->hop, &env, s->sender, params, &r, &s->e) < 0 ||
            r.code / 100 != 2) {
            log_info(s->qid, "next hop refused MAIL FROM:<%s>: %d %s",
                     s->sender, r.code, r.text);
            smtpd_reply(s, "%d %s", r.code ? r.code : 451, r.text);
            smtpd_reset(s, r.code != 0);
            return;
        }
    }
    s->in_mail = 1;
    s->n_mail++;
    /* As Postfix: behind a content filter the peer is the MTA, so the
     * client that XFORWARD named is logged too, or no log line would. */
    if (s->xf_addr[0] || s->xf_name[0])
        log_info(s->qid, "client=%s, %s%s%sorig_client=%s[%s]",
                 smtpd_client(s, client, sizeof(client)),
                 s->xf_ident[0] ? "orig_queue_id=" : "", s->xf_ident,
                 s->xf_ident[0] ? ", " : "",
                 s->xf_name[0] ? s->xf_name : "unknown",
                 s->xf_addr[0] ? s->xf_addr : "unknown");
    else if (s->xf_ident[0])
        log_info(s->qid, "client=%s, orig_queue_id=%s",
                 smtpd_client(s, client, sizeof(client)), s->xf_ident);
    else
        log_info(s->qid, "client=%s", smtpd_client(s, client, sizeof(client)));
    smtpd_dsn_log(s);
    smtpd_reply(s, "250 2.1.0 Ok");
}

/* smtpd_relay_ok - may this client send to rcpt? Trusted clients
 * (mynetworks, authenticated) may relay anywhere; others only to
 * relay_domains, and then only with no routing hidden in the local part
 * (Postfix's allow_untrusted_routing = no). */
static int
smtpd_relay_ok(const struct smtpd_session *s, const char *rcpt)
{
    const char *dom;
    size_t i, local_len;

    if (s->auth_user != NULL || cidr_list_contains(s->rt->mynetworks, s->addr))
        return 1;
    if ((dom = addr_domain(rcpt)) == NULL)
        return 0;
    local_len = (size_t)(dom - 1 - rcpt);
    if (memchr(rcpt, '%', local_len) || memchr(rcpt, '!', local_len) ||
        memchr(rcpt, '@', local_len))
        return 0;
    for (i = 0; i < s->rt->nrelay_domains; i++)
        if (addr_domain_equal(dom, s->rt->relay_domains[i]))
            return 1;
    return 0;
}

static void
smtpd_cmd_rcpt(struct smtpd_session *s, const char *line)
{
    struct smtpd_rcpt *grown;
    struct smtpc_reply r;
    struct buf addr;
    const char *p, *bad;
    size_t used;
    char reply[600];

    if (!s->in_mail) {
        smtpd_refuse(s, "503 5.5.1 Error: need MAIL command");
        return;
    }
    if (strncasecmp(line, "RCPT TO:", 8) != 0) {
        smtpd_refuse(s, "501 5.5.4 Syntax: RCPT TO:<address>");
        return;
    }
    p = line + 8;
    while (*p == ' ')
        p++;
    buf_init(&addr, ADDR_MAX + 1);
    if (addr_parse_path(p, strlen(p), &addr, &used, &s->e) < 0 ||
        addr.len == 0) {
        smtpd_reply(s, "501 5.1.3 Bad recipient address syntax");
        buf_fini(&addr);
        smtpd_error(s);
        return;
    }
    p += used;
    while (*p == ' ')
        p++;
    if (s->nrcpts >= s->rt->rcpt_limit) {
        smtpd_reply(s, "452 4.5.3 Error: too many recipients");
        buf_fini(&addr);
        return;
    }
    /* checked in both modes: through mode replays them to the next hop
     * when the chain changed the envelope */
    if ((bad = smtpd_check_rcpt_params(p, s->rt->queue_mode)) != NULL) {
        smtpd_reply(s, "%s", bad);
        buf_fini(&addr);
        smtpd_error(s);
        return;
    }
    if (!smtpd_relay_ok(s, buf_str(&addr))) {
        snprintf(reply, sizeof(reply), "554 5.7.1 <%s>: Relay access denied",
                 buf_str(&addr));
        smtpd_noqueue_reject(s, "RCPT", reply, buf_str(&addr));
        smtpd_reply(s, "%s", reply);
        buf_fini(&addr);
        smtpd_error(s);
        return;
    }
    /* room first: a recipient the next hop took is always on the list,
     * in the same order (an LMTP hop answers the message per recipient) */
    grown = realloc(s->rcpts, (s->nrcpts + 1) * sizeof(*grown));
    if (grown == NULL) {
        smtpd_reply(s, "452 4.3.0 Error: out of memory");
        buf_fini(&addr);
        return;
    }
    s->rcpts = grown;
    if (s->hop != NULL) {
        if (smtpc_rcpt(s->hop, buf_str(&addr), NULL, &r, &s->e) < 0) {
            smtpd_reply(s, "%d %s", r.code ? r.code : 451, r.text);
            buf_fini(&addr);
            smtpd_reset(s, 0);
            return;
        }
        if (r.code / 100 != 2) {
            log_info(s->qid, "next hop refused RCPT TO:<%s>: %d %s",
                     buf_str(&addr), r.code, r.text);
            smtpd_reply(s, "%d %s", r.code, r.text);
            buf_fini(&addr);
            return;
        }
    }
    s->rcpts[s->nrcpts].params = NULL;
    if (*p != '\0' &&
        (s->rcpts[s->nrcpts].params = smtpd_keep_params(s, p)) == NULL) {
        /* the next hop may have the recipient: the transaction is void */
        smtpd_reply(s, "451 4.3.0 Error: out of memory");
        buf_fini(&addr);
        smtpd_reset(s, 0);
        return;
    }
    if (s->rcpts[s->nrcpts].params != NULL &&
        s->rcpts[s->nrcpts].params[0] == '\0') {
        free(s->rcpts[s->nrcpts].params);
        s->rcpts[s->nrcpts].params = NULL;
    }
    s->rcpts[s->nrcpts].addr = buf_steal(&addr, NULL);
    s->nrcpts++;
    s->n_rcpt++;
    buf_fini(&addr);
    smtpd_dsn_log(s);
    smtpd_reply(s, "250 2.1.5 Ok");
}

enum smtpd_data_flags {
    DATA_BARE_LF = 1,
    DATA_BARE_CR = 2,
    DATA_NUL = 4,
    DATA_TOO_BIG = 8,
    DATA_LONG_LINE = 16,
    DATA_HUGE_LINE = 32, /* over the read bound: cannot be wrapped */
    DATA_NO_MEMORY = 64  /* over smtpd_memory_limit */
};

/* smtpd_mem_take - count n more octets of this DATA against
 * smtpd_memory_limit; -1 when that would pass it. */
static int
smtpd_mem_take(struct smtpd_session *s, size_t n)
{
    if (s->srv->mem == NULL)
        return 0;
    if (memlimit_take(s->srv->mem, n, s->mem_held, s->rt->memory_limit) < 0)
        return -1;
    s->mem_held += n;
    return 0;
}

/* smtpd_mem_give - give back all this DATA counted. */
static void
smtpd_mem_give(struct smtpd_session *s)
{
    if (s->srv->mem != NULL && s->mem_held > 0)
        memlimit_give(s->srv->mem, s->mem_held);
    s->mem_held = 0;
}

/* smtpd_mem_grow - out grew: count what it holds now, a step at a time.
 * Past the limit, out is emptied and freed, the count given back and
 * -1 returned: the rest of the message is read and dropped. */
static int
smtpd_mem_grow(struct smtpd_session *s, struct buf *out)
{
    size_t more;

    if (out->len <= s->mem_held)
        return 0;
    more = out->len - s->mem_held;
    if (more < SMTPD_MEM_STEP)
        more = SMTPD_MEM_STEP;
    if (smtpd_mem_take(s, more) == 0)
        return 0;
    buf_fini(out);
    smtpd_mem_give(s);
    return -1;
}

/* smtpd_append_wrapped - append a line (without its line end) to out,
 * wrapped at 998 octets; header lines are folded with a space so they
 * stay one field. */
static int
smtpd_append_wrapped(struct buf *out, const char *p, size_t n, int in_header,
                     struct err *e)
{
    while (n > 998) {
        size_t cut = 998;

        if (buf_append(out, p, cut, e) < 0 ||
            buf_append(out, in_header ? "\r\n " : "\r\n", in_header ? 3 : 2,
                       e) < 0)
            return -1;
        p += cut;
        n -= cut;
    }
    if (buf_append(out, p, n, e) < 0 || buf_append(out, "\r\n", 2, e) < 0)
        return -1;
    return 0;
}

/* smtpd_read_data - read the message after 354 into out (CRLF line
 * ends, dot-stuffing removed). Returns 0 with *flags saying what was
 * wrong with it, or the netio status (NETIO_TIMEOUT, NETIO_EOF,
 * NETIO_ERROR) when the data did not end. */
static int
smtpd_read_data(struct smtpd_session *s, struct buf *out, unsigned *flags)
{
    size_t total = 0, limit = s->rt->size_limit;
    int prev_crlf = 1, in_header = 1;
    struct buf line;
    int rc;

    *flags = 0;
    buf_init(&line, 0);
    netio_set_line_limit(s->io, SMTPD_DATA_LINE_MAX);
    for (;;) {
        const char *p;
        size_t n, body;
        int crlf;

        rc = netio_getline(s->io, &line, &s->e);
        if (rc == NETIO_TOOLONG) {
            /* line holds its end: a CRLF-ended line may precede "." */
            *flags |= DATA_LONG_LINE | DATA_HUGE_LINE;
            prev_crlf = line.len == 2;
            continue;
        }
        if (rc != NETIO_OK) {
            buf_fini(&line);
            netio_set_line_limit(s->io, SMTPD_LINE_MAX);
            return rc;
        }
        p = line.data;
        n = line.len;
        crlf = n >= 2 && p[n - 2] == '\r' && p[n - 1] == '\n';
        if (crlf && prev_crlf && n == 3 && p[0] == '.')
            break; /* CRLF.CRLF */
        if (p[n - 1] != '\n') {
            /* The peer closed without the end marker. */
            buf_fini(&line);
            netio_set_line_limit(s->io, SMTPD_LINE_MAX);
            return NETIO_EOF;
        }
        body = crlf ? n - 2 : n - 1;
        if (!crlf)
            *flags |= DATA_BARE_LF;
        if (memchr(p, '\r', body) != NULL)
            *flags |= DATA_BARE_CR;
        if (memchr(p, '\0', body) != NULL)
            *flags |= DATA_NUL;
        prev_crlf = crlf;
        if (p[0] == '.') { /* transparency: a leading dot was doubled */
            p++;
            body--;
        }
        total += body + 2;
        if (total > limit)
            *flags |= DATA_TOO_BIG;
        if (*flags &
            (DATA_TOO_BIG | DATA_NUL | DATA_HUGE_LINE | DATA_NO_MEMORY))
            continue; /* read on to the end, keep nothing more */
        if ((*flags & (DATA_BARE_LF | DATA_BARE_CR)) &&
            !s->rt->normalize_newlines)
            continue;
        if (in_header && body == 0)
            in_header = 0;
        if (body > 998) {
            *flags |= DATA_LONG_LINE;
            if (!s->rt->wrap_long_lines)
                continue;
        }
        if (*flags & DATA_BARE_CR) {
            /* normalize: every lone CR becomes a line end */
            size_t i, start = 0;

            for (i = 0; i < body; i++)
                if (p[i] == '\r') {
                    if (smtpd_append_wrapped(out, p + start, i - start,
                                             in_header, &s->e) < 0)
                        *flags |= DATA_TOO_BIG;
                    start = i + 1;
                }
            if (smtpd_append_wrapped(out, p + start, body - start, in_header,
                                     &s->e) < 0)
                *flags |= DATA_TOO_BIG;
        } else if (smtpd_append_wrapped(out, p, body, in_header, &s->e) < 0) {
            *flags |= DATA_TOO_BIG;
        }
        if (smtpd_mem_grow(s, out) < 0)
            *flags |= DATA_NO_MEMORY;
    }
    buf_fini(&line);
    netio_set_line_limit(s->io, SMTPD_LINE_MAX);
    if (!s->rt->wrap_long_lines && (*flags & DATA_LONG_LINE))
        *flags |= DATA_HUGE_LINE;
    return 0;
}

static double
smtpd_delay(const struct smtpd_session *s)
{
    struct timeval now;

    gettimeofday(&now, NULL);
    return (double)(now.tv_sec - s->t_start.tv_sec) +
           (double)(now.tv_usec - s->t_start.tv_usec) / 1e6;
}

/* smtpd_log_delivery - one line per recipient: each[i] is the reply for
 * env->rcpts[i], or with each NULL r is everyone's. */
static void
smtpd_log_delivery(struct smtpd_session *s, const struct msg_env *env,
                   const struct smtpc_reply *r, const struct smtpc_reply *each,
                   const char *relay)
{
    size_t i;

    for (i = 0; i < env->nrcpts; i++) {
        const struct smtpc_reply *ri = each != NULL ? &each[i] : r;
        const char *status = ri->code / 100 == 2   ? "sent"
                             : ri->code / 100 == 4 ? "deferred"
                                                   : "bounced";

        log_info(s->qid, "to=<%s>, relay=%s, delay=%.2f, status=%s (%d %s)",
                 env->rcpts[i].addr, relay, smtpd_delay(s), status, ri->code,
                 ri->text);
    }
}

/* smtpd_log_split - say so when an LMTP next hop took the message for
 * some recipients and not for others, since the client hears r for
 * all of them. */
static void
smtpd_log_split(struct smtpd_session *s, const struct msg_env *env,
                const struct smtpc_reply *r, const struct smtpc_reply *each)
{
    size_t i, sent = 0;

    for (i = 0; i < env->nrcpts; i++)
        sent += each[i].code / 100 == 2;
    if (sent == 0 || sent == env->nrcpts)
        return;
    log_warning(s->qid,
                "next hop delivered to %zu of %zu recipients; the client "
                "hears %d for all of them, %s",
                sent, env->nrcpts, r->code,
                r->code / 100 == 4
                    ? "so it sends again and the recipients delivered get "
                      "the message twice"
                    : "so its report names the recipients delivered too");
}

/* smtpd_replay_envelope - the chain changed sender or recipients: start
 * the next-hop transaction again with the new envelope. Returns 0 when
 * every recipient was accepted, else fills r with the reply to give. */
static int
smtpd_replay_envelope(struct smtpd_session *s, const struct msg_env *env,
                      struct smtpc_reply *r)
{
    struct msg_env xf;
    size_t i;

    memset(&xf, 0, sizeof(xf));
    xf.frontend = MSG_FE_SMTP;
    xf.qid = s->qid;
    xf.client_addr = (char *)smtpd_env_addr(s);
    xf.client_name = s->xf_name[0] ? s->xf_name : s->name;
    xf.helo = s->xf_helo[0] ? s->xf_helo : s->helo;
    if (smtpc_rset(s->hop, &s->e) < 0 ||
        smtpc_mail(s->hop, &xf, env->sender, NULL, r, &s->e) < 0)
        return -1;
    if (r->code / 100 != 2)
        return -1;
    for (i = 0; i < env->nrcpts; i++) {
        if (smtpc_rcpt(s->hop, env->rcpts[i].addr, env->rcpts[i].params, r,
                       &s->e) < 0)
            return -1;
        if (r->code / 100 != 2) {
            char why[512];

            log_warning(s->qid,
                        "next hop refused rewritten recipient <%s>: %d %s",
                        env->rcpts[i].addr, r->code, r->text);
            snprintf(why, sizeof(why),
                     "4.3.0 Next hop refused rewritten recipient <%.200s>",
                     env->rcpts[i].addr);
            r->code = 451;
            snprintf(r->text, sizeof(r->text), "%s", why);
            return -1;
        }
    }
    return 0;
}

static int
smtpd_envelope_changed(const struct msg *m)
{
    const struct msg_edit *edits;
    size_t n = msg_journal(m, &edits), i;

    for (i = 0; i < n; i++)
        if (edits[i].kind == MSG_EDIT_SENDER ||
            edits[i].kind == MSG_EDIT_RCPT_ADD ||
            edits[i].kind == MSG_EDIT_RCPT_DELETE)
            return 1;
    return 0;
}

/* smtpd_reply_id - one of our own 4xx or 5xx replies to a message, with
 * the queue id its log lines carry, so that the bounce a sender gets and
 * the admin's log meet: "554 5.7.1 virus=NAME (id 5F41D0050305)". */
static void
smtpd_reply_id(struct smtpd_session *s, const char *reply)
{
    if (s->qid[0] != '\0')
        smtpd_reply(s, "%s (id %s)", reply, s->qid);
    else
        smtpd_reply(s, "%s", reply);
}

/* smtpd_safe_copy - src into out, each octet outside the letters, digits
 * and extra replaced with '?': the client chose the HELO name (and the
 * DNS the host name), and in a Received field a space, '(' or ';' would
 * let it write clauses of its own. */
static void
smtpd_safe_copy(char *out, size_t n, const char *src, const char *extra)
{
    size_t i;

    for (i = 0; src[i] != '\0' && i + 1 < n; i++) {
        unsigned char c = (unsigned char)src[i];

        out[i] = (c < 0x80 && (isalnum(c) || strchr(extra, c) != NULL))
                     ? (char)c
                     : '?';
    }
    out[i] = '\0';
}

/* smtpd_received - the Received field this hop adds (RFC 5321 4.4), as
 * Postfix writes it: who connected (its HELO, name and address, not what
 * XFORWARD says: that hop has its own field), TLS, the protocol with
 * RFC 3848's S and A, our queue id, the recipient when there is one, and
 * the date. The SASL login is not named, as with Postfix's default
 * smtpd_sasl_authenticated_header = no. It goes in before any stage
 * runs, so a signing stage sees the message as it leaves (the dkim
 * stage does not sign Received unless sign_headers names it). */
static int
smtpd_received(struct smtpd_session *s, struct msg *m)
{
    char helo[256], name[256], tls[160], rcpt[300], date[64], value[1400];
    const char *eol = msg_eol(m), *proto;
    int is_tls = netio_is_tls(s->io), is_v6 = strchr(s->addr, ':') != NULL;
    struct tm tm;
    time_t now = time(NULL);

    smtpd_safe_copy(helo, sizeof(helo), s->helo[0] ? s->helo : s->name,
                    ".-_:[]");
    smtpd_safe_copy(name, sizeof(name), s->name, ".-_");
    tls[0] = rcpt[0] = '\0';
    if (is_tls) {
        char raw[128], info[128];

        smtpd_safe_copy(info, sizeof(info),
                        netio_tls_info(s->io, raw, sizeof(raw)), " ._-/");
        snprintf(tls, sizeof(tls), "%s\t(using %s)", eol, info);
    }
    /* Only one recipient is named, and only an address that cannot
     * break out of the angle brackets. */
    if (s->nrcpts == 1 && strlen(s->rcpts[0].addr) < 256 &&
        s->rcpts[0].addr[strcspn(s->rcpts[0].addr, " \t\r\n<>()\\;\"")] ==
            '\0') {
        size_t i;

        for (i = 0; s->rcpts[0].addr[i] != '\0'; i++)
            if ((unsigned char)s->rcpts[0].addr[i] < 0x21 ||
                (unsigned char)s->rcpts[0].addr[i] > 0x7e)
                break;
        if (s->rcpts[0].addr[i] == '\0')
            snprintf(rcpt, sizeof(rcpt), "%s\tfor <%s>", eol,
                     s->rcpts[0].addr);
    }
    if (!s->esmtp)
        proto = "SMTP";
    else if (is_tls && s->auth_user != NULL)
        proto = "ESMTPSA";
    else if (is_tls)
        proto = "ESMTPS";
    else if (s->auth_user != NULL)
        proto = "ESMTPA";
    else
        proto = "ESMTP";
    localtime_r(&now, &tm);
    if (strftime(date, sizeof(date), "%a, %e %b %Y %H:%M:%S %z (%Z)", &tm) ==
        0)
        date[0] = '\0';
    /* Postfix's layout: the date after "for <rcpt>;", else on a line
     * of its own. */
    snprintf(
        value, sizeof(value),
        "from %s (%s [%s%s])%s%s\tby %s (relaychain) with %s id %s%s;%s%s",
        helo, name, is_v6 ? "IPv6:" : "", s->addr, tls, eol, s->rt->hostname,
        proto, s->qid, rcpt, rcpt[0] ? " " : eol, rcpt[0] ? date : "");
    if (!rcpt[0]) {
        size_t k = strlen(value);

        snprintf(value + k, sizeof(value) - k, "\t%s", date);
    }
    return msg_header_insert(m, "smtpd", 0, "Received", value, &s->e);
}

/* smtpd_queued_as - the next hop's queue id from "250 2.0.0 Ok: queued as
 * ID", into out (letters and digits only); "" when it gave none. */
static void
smtpd_queued_as(const char *text, char *out, size_t n)
{
    const char *p = strstr(text, "queued as ");
    size_t len;

    out[0] = '\0';
    if (p == NULL)
        return;
    p += strlen("queued as ");
    len = strspn(p, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
                    "qrstuvwxyz");
    if (len > 0 && len < n) {
        memcpy(out, p, len);
        out[len] = '\0';
    }
}

/* smtpd_log_summary - one line per message in amavisd-new's habit, after
 * its fate is known:
 *     QID: Passed CLEAN {Relayed}, orig_queue_id=Q1, client=n[a],
 *         from=<a@x>, to=<b@y>, size=N, queued_as: Q2, 41 ms
 *     QID: Blocked INFECTED (NAME) {Quarantined}, by=antivirus, ...
 * tag says what became of it. */
static void
smtpd_log_summary(struct smtpd_session *s, const struct chain_result *res,
                  size_t size, const char *tag, const char *queued_as)
{
    char words[200], to[1024], ident[100];
    size_t i, used = 0;

    chain_summary(res, words, sizeof(words));
    to[0] = '\0';
    for (i = 0; i < s->nrcpts && used < sizeof(to); i++) {
        int k;

        if (i == 8 && s->nrcpts > 9) {
            snprintf(to + used, sizeof(to) - used, ",...(%zu more)",
                     s->nrcpts - i);
            break;
        }
        k = snprintf(to + used, sizeof(to) - used, "%s<%s>", i ? "," : "",
                     s->rcpts[i].addr);
        if (k < 0)
            break;
        used += (size_t)k;
    }
    ident[0] = '\0';
    if (s->xf_ident[0])
        snprintf(ident, sizeof(ident), ", orig_queue_id=%s", s->xf_ident);
    log_info(s->qid,
             "%s {%s}%s%s%s, client=%s[%s], from=<%s>, to=%s, size=%zu%s%s, "
             "%lld ms",
             words, tag, res->by ? ", by=" : "", res->by ? res->by->name : "",
             ident, s->xf_name[0] ? s->xf_name : s->name, smtpd_env_addr(s),
             s->sender, to, size, queued_as[0] ? ", queued_as: " : "",
             queued_as, (long long)(smtpd_delay(s) * 1000 + 0.5));
}

/* smtpd_tag - the summary's word for a reply the client got. */
static const char *
smtpd_tag(int code)
{
    return code / 100 == 2   ? "Relayed"
           : code / 100 == 5 ? "Rejected"
                             : "TempFailed";
}

/* smtpd_enqueue - commit the processed message to the queue; 250 only
 * when it is there for good. Returns 0 when it is, -1 when the client
 * was told to try again. */
static int
smtpd_enqueue(struct smtpd_session *s, const struct msg_env *env,
              const struct iovec *iov, size_t niov, size_t len)
{
    struct msg_rcpt *orig;
    struct queue_msg qm;
    size_t i;
    int rc = 0;

    if (s->srv->queue == NULL) {
        smtpd_reply_id(s, "451 4.3.0 Error: the queue is not running");
        return -1;
    }
    if ((orig = calloc(s->nrcpts, sizeof(*orig))) == NULL) {
        log_error(s->qid, "out of memory");
        smtpd_reply_id(s, "451 4.3.0 Error: out of memory");
        return -1;
    }
    for (i = 0; i < s->nrcpts; i++) {
        orig[i].addr = s->rcpts[i].addr;
        orig[i].params = s->rcpts[i].params;
    }
    memset(&qm, 0, sizeof(qm));
    qm.qid = s->qid;
    qm.arrival_us =
        (long long)s->t_start.tv_sec * 1000000LL + s->t_start.tv_usec;
    qm.client_addr = smtpd_env_addr(s);
    qm.client_name = s->xf_name[0] ? s->xf_name : s->name;
    qm.helo = s->xf_helo[0] ? s->xf_helo : s->helo;
    qm.auth_user = s->auth_user;
    qm.sender = env->sender;
    qm.sender_params = env->sender_params;
    qm.rcpts = env->rcpts;
    qm.nrcpts = env->nrcpts;
    qm.orig = orig;
    qm.norig = s->nrcpts;
    qm.iov = iov;
    qm.niov = niov;
    qm.len = len;
    err_clear(&s->e);
    if (queue_commit(s->srv->queue, &qm, &s->e) < 0) {
        const char *reply = queue_commit_reply(&s->e);

        log_error(s->qid, "queue file write error: %s", s->e.text);
        log_info(s->qid, "reject: END-OF-MESSAGE: %s; from=<%s>", reply,
                 s->sender);
        smtpd_reply_id(s, reply);
        rc = -1;
    } else {
        smtpd_reply(s, "250 2.0.0 Ok: queued as %s", s->qid);
    }
    free(orig);
    return rc;
}

/* smtpd_prepare - the step's preparation (chain/step.h): this hop's
 * Received field, then the "from=" line. */
static int
smtpd_prepare(void *arg, struct msg *m, size_t size, struct err *e)
{
    struct smtpd_session *s = arg;

    (void)e; /* smtpd_received fills s->e, which is e */
    if (smtpd_received(s, m) < 0)
        return -1;
    log_info(s->qid, "from=<%s>, size=%zu, nrcpt=%zu", s->sender, size,
             s->nrcpts);
    return 0;
}

/* smtpd_deliver - run the chain on data and hand the result on; the
 * reply for the client goes out through smtpd_reply, and the summary
 * line is logged once the message's fate is known. The message takes
 * data's octets over (data is left empty), and what goes to the queue or
 * the next hop is msg_iov(): the received octets, the fields the chain
 * changed and the body, as they are, so the message is never copied
 * whole on its way out. */
static void
smtpd_deliver(struct smtpd_session *s, struct buf *data)
{
    const struct conf *cf = s->rt->cf;
    const struct msg_env *env;
    struct chain_result res;
    struct chain_opts opts;
    struct step_in in;
    struct smtpc_reply r, *each = NULL;
    struct msg *m = NULL;
    struct iovec *iov = NULL;
    const char *out, *tag = NULL;
    char queued_as[64] = "";
    size_t i, len = data->len, out_len, niov;
    int hop_ok = 1;

    memset(&res, 0, sizeof(res));
    memset(&opts, 0, sizeof(opts));
    /* A quarantined message is kept as its stage received it, so that a
     * release resumes the chain after that stage (quarantine.h). */
    opts.undo_hold = 1;
    if ((m = msg_new(&cf->limits, MSG_FE_SMTP, &s->e)) == NULL ||
        msg_env_sender(m, s->sender, s->sender_params, &s->e) < 0)
        goto tempfail;
    for (i = 0; i < s->nrcpts; i++)
        if (msg_env_rcpt(m, s->rcpts[i].addr, s->rcpts[i].params, &s->e) < 0)
            goto tempfail;
    memset(&in, 0, sizeof(in));
    in.cf = cf;
    in.log_qid = s->qid;
    in.qid = s->qid;
    in.client_addr = smtpd_env_addr(s);
    in.client_name = s->xf_name[0] ? s->xf_name : s->name;
    in.helo = s->xf_helo[0] ? s->xf_helo : s->helo;
    in.tls = netio_is_tls(s->io);
    in.auth_user = s->auth_user;
    in.internal = smtpd_is_internal(s);
    in.data = data;
    in.opts = &opts;
    in.prepare = smtpd_prepare;
    in.arg = s;
    in.log_tag = "";
    in.log_where = "";

    switch (step_run(&in, m, &res, &s->e)) {
    case STEP_ERROR:
    case STEP_REFUSED: /* smtpd_prepare refuses nothing */
        goto tempfail;
    case STEP_TOO_BIG:
        log_info(s->qid, "reject: %s", s->e.text);
        smtpd_reply_id(s, "552 5.3.4 Message header or size exceeds "
                          "limit");
        goto out;
    case STEP_CONTINUE:
        tag = "TempFailed";
        break;
    case STEP_REJECT:
    case STEP_TEMPFAIL:
        smtpd_reply_id(s, res.verdict.reply);
        tag = res.verdict.kind == VERDICT_REJECT ? "Rejected" : "TempFailed";
        goto out;
    case STEP_DISCARD:
    case STEP_NO_RCPTS:
        smtpd_reply(s, "250 2.0.0 Ok: queued as %s", s->qid);
        tag = "Discarded";
        goto out;
    case STEP_QUARANTINE:
        tag = "TempFailed";
        if ((out = msg_flat(m, &out_len, &s->e)) == NULL ||
            quarantine_store(cfg_str(cf->cfg, "quarantine_directory"), m, out,
                             out_len, res.verdict.note,
                             res.by ? res.by->name : NULL, &s->e) < 0) {
            log_error(s->qid, "quarantine: %s", s->e.text);
            smtpd_reply_id(s, "451 4.3.0 Error: cannot quarantine, try "
                              "again later");
            goto out;
        }
        log_info(s->qid, "quarantine: %s%s%s", res.by ? res.by->name : "chain",
                 res.verdict.note[0] ? ": " : "", res.verdict.note);
        smtpd_reply(s, "250 2.0.0 Ok: queued as %s", s->qid);
        tag = "Quarantined";
        goto out;
    }

    env = msg_env(m);
    niov = msg_iov(m, NULL, 0);
    if ((iov = calloc(niov ? niov : 1, sizeof(*iov))) == NULL) {
        err_nomem(&s->e);
        goto tempfail;
    }
    niov = msg_iov(m, iov, niov);
    if (s->rt->queue_mode) {
        tag = smtpd_enqueue(s, env, iov, niov, msg_size(m)) == 0
                  ? "Queued"
                  : "TempFailed";
        goto out;
    }
    if (s->hop == NULL)
        goto tempfail;
    if (smtpd_envelope_changed(m) && smtpd_replay_envelope(s, env, &r) < 0) {
        smtpd_reply(s, "%d %s", r.code ? r.code : 451,
                    r.text[0] ? r.text : "4.4.2 Next hop connection lost");
        tag = smtpd_tag(r.code ? r.code : 451);
        hop_ok = 0;
        goto out_hop;
    }
    /* every recipient of env was accepted by the next hop, in order:
     * by RCPT as the client gave them, or by the replay */
    if ((each = calloc(env->nrcpts, sizeof(*each))) == NULL) {
        err_nomem(&s->e);
        goto tempfail;
    }
    if (smtpc_data_iov(s->hop, iov, niov, each, env->nrcpts, &r, &s->e) < 0)
        hop_ok = 0;
    if (r.code == 0) {
        r.code = 451;
        snprintf(r.text, sizeof(r.text), "4.4.2 Next hop connection lost");
    }
    for (i = 0; i < env->nrcpts; i++)
        if (each[i].code == 0)
            each[i] = r;
    /* the through mode has always named a Maildir next hop "local" in
     * these lines (the queue says "maildir") */
    smtpd_log_delivery(s, env, &r, each,
                       smtpc_pool_kind(s->rt->hop) == SMTPC_MAILDIR
                           ? "local"
                           : smtpc_relay_name(s->hop));
    smtpd_log_split(s, env, &r, each);
    /* one reply for all: smtpc ranks a 4xx over a 5xx over a 2xx, so no
     * recipient is answered 250 that the next hop did not take */
    smtpd_reply(s, "%d %s", r.code, r.text);
    tag = smtpd_tag(r.code);
    if (r.code / 100 == 2)
        smtpd_queued_as(r.text, queued_as, sizeof(queued_as));
out_hop:
    smtpc_put(s->rt->hop, s->hop, hop_ok);
    s->hop = NULL;
    goto out;

tempfail:
    log_error(s->qid, "%s", s->e.text[0] ? s->e.text : "internal error");
    smtpd_reply_id(s, "451 4.3.0 Error: queue file write error");
    if (tag != NULL)
        tag = "TempFailed";
out:
    if (tag != NULL)
        smtpd_log_summary(s, &res, len, tag, queued_as);
    free(each);
    free(iov);
    chain_result_fini(&res);
    msg_free(m);
}

/* smtpd_data_size - the SIZE of MAIL, at most what message_size_limit
 * lets in, or one step. */
static size_t
smtpd_data_size(const struct smtpd_session *s)
{
    unsigned long long size = 0;
    const char *v;
    char num[24];
    size_t len;

    if ((v = esmtp_param(s->sender_params, "SIZE", &len)) != NULL && len > 0 &&
        len < sizeof(num)) {
        memcpy(num, v, len);
        num[len] = '\0';
        size = strtoull(num, NULL, 10);
    }
    if (size > s->rt->size_limit)
        size = s->rt->size_limit;
    return size > SMTPD_MEM_STEP ? (size_t)size : SMTPD_MEM_STEP;
}

static void
smtpd_cmd_data(struct smtpd_session *s, const char *arg)
{
    const char *reject = NULL;
    char client[SMTPD_CLIENT_MAX];
    unsigned flags;
    struct buf data;
    int rc;

    if (arg != NULL) {
        smtpd_refuse(s, "501 5.5.4 Syntax: DATA");
        return;
    }
    if (!s->in_mail) {
        smtpd_refuse(s, "503 5.5.1 Error: need RCPT command");
        return;
    }
    if (s->nrcpts == 0) {
        smtpd_refuse(s, "554 5.5.1 Error: no valid recipients");
        return;
    }
    /* DATA is refused here, not after the client sent it all, when the
     * SIZE it announced does not fit in what is left. Only what arrives
     * is counted (from a first step on): counting a promise would let
     * clients that send nothing hold the memory. */
    if ((s->srv->mem != NULL &&
         !memlimit_fits(s->srv->mem, smtpd_data_size(s), s->mem_held,
                        s->rt->memory_limit)) ||
        smtpd_mem_take(s, SMTPD_MEM_STEP) < 0) {
        reject = "452 4.3.1 Insufficient system resources";
        smtpd_noqueue_reject(s, "DATA", reject, NULL);
        smtpd_reply(s, "%s", reject);
        return;
    }
    smtpd_reply(s, "354 End data with <CR><LF>.<CR><LF>");
    if (smtpd_flush(s) < 0) {
        smtpd_mem_give(s);
        s->quit = 1;
        return;
    }
    s->n_data++;
    /* The buffer's own bound is a little over the limit: wrapping adds
     * line ends, and an oversize message is noticed by counting. */
    buf_init(&data, s->rt->size_limit + s->rt->size_limit / 32 + 4096);
    if ((rc = smtpd_read_data(s, &data, &flags)) != 0) {
        /* As Postfix: a client that stalls in DATA is told why. */
        if (rc == NETIO_TIMEOUT)
            smtpd_reply(s, "421 4.4.2 %s Error: timeout exceeded",
                        s->rt->hostname);
        log_info(s->qid, "%s after DATA from %s[%s]",
                 rc == NETIO_TIMEOUT ? "timeout" : "lost connection", s->name,
                 s->addr);
        buf_fini(&data);
        smtpd_mem_give(s);
        smtpd_reset(s, 0);
        s->quit = 1;
        return;
    }
    if (flags & DATA_TOO_BIG)
        reject = "552 5.3.4 Message size exceeds fixed limit";
    else if (flags & DATA_NUL)
        reject = "550 5.6.0 Message content rejected: NUL character in data";
    else if ((flags & DATA_BARE_LF) && !s->rt->normalize_newlines)
        reject = "550 5.5.2 Message content rejected: bare LF in data "
                 "(only CRLF ends a line)";
    else if ((flags & DATA_BARE_CR) && !s->rt->normalize_newlines)
        reject = "550 5.5.2 Message content rejected: bare CR in data "
                 "(only CRLF ends a line)";
    else if (flags & DATA_HUGE_LINE)
        reject = "550 5.6.0 Message content rejected: line longer than 998 "
                 "octets";
    else if (flags & DATA_NO_MEMORY)
        reject = "452 4.3.1 Insufficient system resources";
    if (reject != NULL) {
        log_info(s->qid, "reject: END-OF-MESSAGE from %s: %s; from=<%s>",
                 smtpd_client(s, client, sizeof(client)), reject, s->sender);
        smtpd_reply_id(s, reject);
    } else {
        smtpd_deliver(s, &data);
    }
    buf_fini(&data);
    smtpd_mem_give(s);
    smtpd_reset(s, 1);
}

static void
smtpd_cmd_starttls(struct smtpd_session *s, const char *arg)
{
    char info[128];

    if (arg != NULL) {
        smtpd_refuse(s, "501 5.5.4 Syntax: STARTTLS");
        return;
    }
    if (s->rt->tls == NULL || netio_is_tls(s->io)) {
        smtpd_refuse(s, "502 5.5.1 Error: command not implemented");
        return;
    }
    smtpd_reply(s, "220 2.0.0 Ready to start TLS");
    if (smtpd_flush(s) < 0) {
        s->quit = 1;
        return;
    }
    /* Anything pipelined behind STARTTLS arrived in plaintext and must not
     * be obeyed once the channel is encrypted (CVE-2011-0411). */
    netio_discard_input(s->io);
    if (netio_tls_accept(s->io, s->rt->tls, &s->e) < 0) {
        /* No reply can be given in the middle of a handshake. */
        if (netio_timed_out(s->io))
            log_info(NULL, "timeout after STARTTLS from %s[%s]", s->name,
                     s->addr);
        else
            log_warning(NULL, "%s from %s[%s]", s->e.text, s->name, s->addr);
        s->quit = 1;
        return;
    }
    s->n_starttls++;
    log_info(NULL, "TLS connection established from %s[%s]: %s", s->name,
             s->addr, netio_tls_info(s->io, info, sizeof(info)));
    /* RFC 3207: forget everything learned before TLS. */
    smtpd_reset(s, 1);
    s->helo_seen = 0;
    s->helo[0] = '\0';
}

/* smtpd_auth_rate_refuses - past auth_failure_rate, AUTH is refused
 * before anything is decoded or hashed (1, the reply given); with take,
 * an attempt about to be verified is counted (0) or refused. */
static int
smtpd_auth_rate_refuses(struct smtpd_session *s, int take)
{
    unsigned rate = s->rt->auth_failure_rate;
    char client[SMTPD_CLIENT_MAX];
    long long now = netio_now_ms();

    if (rate == 0)
        return 0;
    if (take ? !auth_rate_take(s->srv->auth_rate, s->addr, rate, now)
             : !auth_rate_over(s->srv->auth_rate, s->addr, rate, now))
        return 0;
    log_warning(NULL,
                "%s: AUTH failure rate limit exceeded: more than %u "
                "a minute",
                smtpd_client(s, client, sizeof(client)), rate);
    smtpd_refuse(s, "454 4.7.0 Error: too many failed authentication "
                    "attempts, try again later");
    return 1;
}

static int
smtpd_auth_line(struct smtpd_session *s, const char *prompt, char *out,
                size_t n)
{
    int rc;

    smtpd_reply(s, "334 %s", prompt);
    if (smtpd_flush(s) < 0)
        return -1;
    /* RFC 4954: a SASL response line may be up to 12288 octets. */
    netio_set_line_limit(s->io, SMTPD_AUTH_LINE_MAX);
    rc = netio_getline(s->io, &s->line, &s->e);
    netio_set_line_limit(s->io, SMTPD_LINE_MAX);
    if (rc != NETIO_OK)
        return -1;
    while (s->line.len > 0 && (s->line.data[s->line.len - 1] == '\n' ||
                               s->line.data[s->line.len - 1] == '\r'))
        s->line.data[--s->line.len] = '\0';
    snprintf(out, n, "%s", buf_str(&s->line));
    return 0;
}

static void
smtpd_cmd_auth(struct smtpd_session *s, const char *arg)
{
    char user[AUTH_PASS_MAX + 1], pass[AUTH_PASS_MAX + 1];
    char resp[SMTPD_AUTH_LINE_MAX];
    unsigned char raw[AUTH_PASS_MAX + 1];
    long len;
    const char *mech, *initial;
    char client[SMTPD_CLIENT_MAX];

    if (s->rt->auth == NULL || !netio_is_tls(s->io)) {
        smtpd_refuse(s, "503 5.5.1 Error: authentication not enabled");
        return;
    }
    if (s->auth_user != NULL) {
        smtpd_refuse(s, "503 5.5.1 Error: already authenticated");
        return;
    }
    if (s->in_mail) {
        smtpd_refuse(s, "503 5.5.1 Error: MAIL transaction in progress");
        return;
    }
    if (arg == NULL) {
        smtpd_refuse(s, "501 5.5.4 Syntax: AUTH mechanism");
        return;
    }
    if (smtpd_auth_rate_refuses(s, 0))
        return;
    mech = arg;
    initial = strchr(arg, ' ');
    if (initial != NULL)
        initial++;
    s->n_auth++;
    user[0] = pass[0] = '\0';
    if (strncasecmp(mech, "PLAIN", 5) == 0 &&
        (mech[5] == '\0' || mech[5] == ' ')) {
        /* arg lives in s->line, which the next read overwrites */
        mech = "PLAIN";
        if (initial == NULL || *initial == '\0') {
            if (smtpd_auth_line(s, "", resp, sizeof(resp)) < 0) {
                s->quit = 1;
                return;
            }
            initial = resp;
        }
        if (strcmp(initial, "*") == 0) {
            smtpd_reply(s, "501 5.7.0 Authentication aborted");
            return;
        }
        if (auth_sasl_plain_decode(initial, user, pass, sizeof(user)) < 0) {
            smtpd_refuse(s, "501 5.5.2 Cannot decode response");
            return;
        }
    } else if (strncasecmp(mech, "LOGIN", 5) == 0 &&
               (mech[5] == '\0' || mech[5] == ' ')) {
        mech = "LOGIN";
        /* "Username:" and "Password:" in base64 */
        if (initial != NULL && *initial) {
            snprintf(resp, sizeof(resp), "%s", initial);
        } else if (smtpd_auth_line(s, "VXNlcm5hbWU6", resp, sizeof(resp)) <
                   0) {
            s->quit = 1;
            return;
        }
        if (strcmp(resp, "*") == 0 ||
            (len = auth_b64_decode(resp, strlen(resp), raw, sizeof(raw) - 1)) <
                0 ||
            (size_t)len >= sizeof(user) || memchr(raw, '\0', (size_t)len)) {
            smtpd_refuse(s, "501 5.5.2 Cannot decode response");
            return;
        }
        memcpy(user, raw, (size_t)len);
        user[len] = '\0';
        if (smtpd_auth_line(s, "UGFzc3dvcmQ6", resp, sizeof(resp)) < 0) {
            s->quit = 1;
            return;
        }
        if (strcmp(resp, "*") == 0 ||
            (len = auth_b64_decode(resp, strlen(resp), raw, sizeof(raw) - 1)) <
                0 ||
            (size_t)len >= sizeof(pass) || memchr(raw, '\0', (size_t)len)) {
            smtpd_refuse(s, "501 5.5.2 Cannot decode response");
            return;
        }
        memcpy(pass, raw, (size_t)len);
        pass[len] = '\0';
    } else {
        smtpd_reply(s, "535 5.7.8 Error: authentication failed: "
                       "unsupported mechanism");
        smtpd_error(s);
        return;
    }
    if (smtpd_auth_rate_refuses(s, 1)) {
        explicit_bzero(pass, sizeof(pass));
        return;
    }
    if (auth_verify(s->rt->auth, user, pass)) {
        auth_rate_refund(s->srv->auth_rate, s->addr, s->rt->auth_failure_rate,
                         netio_now_ms());
        s->auth_user = strdup(user);
        explicit_bzero(pass, sizeof(pass));
        if (s->auth_user == NULL) {
            smtpd_reply(s, "454 4.7.0 Temporary authentication failure");
            return;
        }
        log_info(NULL, "%s: sasl_method=%.5s, sasl_username=%s",
                 smtpd_client(s, client, sizeof(client)), mech, user);
        smtpd_reply(s, "235 2.7.0 Authentication successful");
        return;
    }
    explicit_bzero(pass, sizeof(pass));
    log_warning(NULL, "%s: SASL %.5s authentication failed",
                smtpd_client(s, client, sizeof(client)), mech);
    if (++s->auth_failures >= s->rt->auth_failure_limit) {
        smtpd_reply(s,
                    "421 4.7.0 %s Error: too many failed authentication "
                    "attempts",
                    s->rt->hostname);
        s->quit = 1;
        return;
    }
    smtpd_reply(s, "535 5.7.8 Error: authentication failed");
}

static void
smtpd_cmd_xforward(struct smtpd_session *s, const char *arg)
{
    static const struct {
        const char *key;
        size_t off, size;
    } keys[] = {
        {"NAME", offsetof(struct smtpd_session, xf_name),
         sizeof(((struct smtpd_session *)0)->xf_name)},
        {"ADDR", offsetof(struct smtpd_session, xf_addr),
         sizeof(((struct smtpd_session *)0)->xf_addr)},
        {"HELO", offsetof(struct smtpd_session, xf_helo),
         sizeof(((struct smtpd_session *)0)->xf_helo)},
        {"PROTO", offsetof(struct smtpd_session, xf_proto),
         sizeof(((struct smtpd_session *)0)->xf_proto)},
        {"IDENT", offsetof(struct smtpd_session, xf_ident),
         sizeof(((struct smtpd_session *)0)->xf_ident)},
    };
    const char *p;
    int pass;

    s->n_xforward_all++;
    if (!s->xforward_ok) {
        smtpd_refuse(s, "550 5.7.0 Error: insufficient authorization");
        return;
    }
    if (s->in_mail) {
        smtpd_refuse(s, "503 5.5.1 Error: MAIL transaction in progress");
        return;
    }
    if (arg == NULL) {
        smtpd_refuse(s, "501 5.5.4 Syntax: XFORWARD attribute=value...");
        return;
    }
    /* Every value is checked before any is kept: a refused command
     * leaves what an earlier one set. */
    for (pass = 0; pass < 2; pass++) {
        p = arg;
        while (*p) {
            const char *end = strchr(p, ' '), *eq;
            char check[256];
            size_t n, i, klen;

            if (end == NULL)
                end = p + strlen(p);
            n = (size_t)(end - p);
            eq = memchr(p, '=', n);
            if (eq == NULL) {
                smtpd_refuse(s, "501 5.5.4 Bad XFORWARD attribute syntax");
                return;
            }
            klen = (size_t)(eq - p);
            for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
                char *field = (char *)s + keys[i].off;
                int helo = strcmp(keys[i].key, "HELO") == 0;

                if (strlen(keys[i].key) != klen ||
                    strncasecmp(p, keys[i].key, klen) != 0)
                    continue;
                if (pass == 0) {
                    if (esmtp_xforward_decode(
                            eq + 1, (size_t)(end - eq - 1), check,
                            keys[i].size < sizeof(check) ? keys[i].size
                                                         : sizeof(check),
                            helo) < 0) {
                        smtpd_refuse(s,
                                     "501 5.5.4 Bad XFORWARD attribute value");
                        return;
                    }
                    /* IDENT goes into every log line of the message: a
                     * queue id is letters and digits, nothing else. */
                    if (i == 4 &&
                        check[strspn(check, "0123456789ABCDEFGHIJKLMNOP"
                                            "QRSTUVWXYZabcdefghijklmnop"
                                            "qrstuvwxyz")] != '\0') {
                        smtpd_refuse(s,
                                     "501 5.5.4 Bad XFORWARD attribute value");
                        return;
                    }
                    continue;
                }
                (void)esmtp_xforward_decode(eq + 1, (size_t)(end - eq - 1),
                                            field, keys[i].size, helo);
                if (strcmp(field, "[UNAVAILABLE]") == 0 ||
                    strcmp(field, "[TEMPUNAVAIL]") == 0)
                    field[0] = '\0';
                /* Postfix sends IPv6 addresses as "IPv6:..." */
                if (i == 1 && strncasecmp(field, "IPv6:", 5) == 0)
                    memmove(field, field + 5, strlen(field + 5) + 1);
            }
            p = end;
            while (*p == ' ')
                p++;
        }
    }
    s->n_xforward++;
    smtpd_reply(s, "250 2.0.0 Ok");
}

/* smtpd_log_disconnect - Postfix's "disconnect from" line; xforward
 * comes after HELO/EHLO, where Postfix's command table has it. A count
 * with a total is written as Postfix does, "name=accepted/all" when they
 * differ (xforward=1/2), else "name=n"; the others are single counts. */
static void
smtpd_log_disconnect(struct smtpd_session *s)
{
    char counts[512], client[SMTPD_CLIENT_MAX];
    size_t used = 0;
    const struct {
        const char *name;
        unsigned n, all;
    } c[] = {
        {"ehlo", s->n_ehlo, s->n_ehlo},
        {"helo", s->n_helo, s->n_helo},
        {"xforward", s->n_xforward, s->n_xforward_all},
        {"starttls", s->n_starttls, s->n_starttls},
        {"auth", s->n_auth, s->n_auth},
        {"mail", s->n_mail, s->n_mail},
        {"rcpt", s->n_rcpt, s->n_rcpt},
        {"data", s->n_data, s->n_data},
        {"rset", s->n_rset, s->n_rset},
        {"quit", s->n_quit, s->n_quit},
        {"unknown", s->n_bad, s->n_bad},
    };
    size_t i;

    counts[0] = '\0';
    for (i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
        int k;

        if (c[i].all == 0 || used >= sizeof(counts))
            continue;
        if (c[i].n != c[i].all)
            k = snprintf(counts + used, sizeof(counts) - used, " %s=%u/%u",
                         c[i].name, c[i].n, c[i].all);
        else
            k = snprintf(counts + used, sizeof(counts) - used, " %s=%u",
                         c[i].name, c[i].n);
        if (k > 0)
            used += (size_t)k;
    }
    log_info(NULL, "disconnect from %s%s commands=%u",
             smtpd_client(s, client, sizeof(client)), counts, s->n_cmds);
}

static void
smtpd_command(struct smtpd_session *s, char *cmd)
{
    s->n_cmds++;
    if (smtpd_verb_is(cmd, "EHLO")) {
        s->n_ehlo++;
        smtpd_cmd_ehlo(s, smtpd_arg(cmd, 4), 1);
    } else if (smtpd_verb_is(cmd, "HELO")) {
        s->n_helo++;
        smtpd_cmd_ehlo(s, smtpd_arg(cmd, 4), 0);
    } else if (smtpd_verb_is(cmd, "MAIL")) {
        smtpd_cmd_mail(s, cmd);
    } else if (smtpd_verb_is(cmd, "RCPT")) {
        smtpd_cmd_rcpt(s, cmd);
    } else if (smtpd_verb_is(cmd, "DATA")) {
        smtpd_cmd_data(s, smtpd_arg(cmd, 4));
    } else if (smtpd_verb_is(cmd, "RSET")) {
        s->n_rset++;
        smtpd_reset(s, 1);
        smtpd_reply(s, "250 2.0.0 Ok");
        smtpd_junk(s);
    } else if (smtpd_verb_is(cmd, "NOOP")) {
        smtpd_reply(s, "250 2.0.0 Ok");
        smtpd_junk(s);
    } else if (smtpd_verb_is(cmd, "QUIT")) {
        s->n_quit++;
        smtpd_reply(s, "221 2.0.0 Bye");
        s->quit = 1;
    } else if (smtpd_verb_is(cmd, "VRFY")) {
        smtpd_reply(s, "252 2.0.0 Send some mail, I'll try my best");
        smtpd_junk(s);
    } else if (smtpd_verb_is(cmd, "HELP")) {
        smtpd_reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET "
                       "NOOP QUIT VRFY HELP STARTTLS AUTH XFORWARD");
    } else if (smtpd_verb_is(cmd, "STARTTLS")) {
        smtpd_cmd_starttls(s, smtpd_arg(cmd, 8));
    } else if (smtpd_verb_is(cmd, "AUTH")) {
        smtpd_cmd_auth(s, smtpd_arg(cmd, 4));
    } else if (smtpd_verb_is(cmd, "XFORWARD")) {
        smtpd_cmd_xforward(s, smtpd_arg(cmd, 8));
    } else {
        s->n_bad++;
        smtpd_refuse(s, "502 5.5.2 Error: command not recognized");
    }
}

static void
smtpd_peer(struct smtpd_session *s, const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

        inet_ntop(AF_INET, &in->sin_addr, s->addr, sizeof(s->addr));
        snprintf(s->port, sizeof(s->port), "%u", ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

        inet_ntop(AF_INET6, &in6->sin6_addr, s->addr, sizeof(s->addr));
        snprintf(s->port, sizeof(s->port), "%u", ntohs(in6->sin6_port));
        if (strncmp(s->addr, "::ffff:", 7) == 0 && strchr(s->addr, '.'))
            memmove(s->addr, s->addr + 7, strlen(s->addr + 7) + 1);
    } else {
        snprintf(s->addr, sizeof(s->addr), "local");
    }
    snprintf(s->name, sizeof(s->name), "unknown");
}

void
smtpd_session_run(struct smtpd_server *srv, struct runtime *runtime, int fd,
                  const struct sockaddr *peer, socklen_t len)
{
    struct smtpd_runtime *rt = runtime_part(runtime, &smtpd_runtime_type);
    struct smtpd_session *s;
    char client[SMTPD_CLIENT_MAX];

    (void)len;
    netio_tcp_nodelay(fd);
    if (rt == NULL) {
        log_error(NULL, "the runtime has no SMTP front end part");
        close(fd);
        return;
    }
    if ((s = calloc(1, sizeof(*s))) == NULL) {
        close(fd);
        return;
    }
    s->srv = srv;
    s->rt = rt;
    buf_init(&s->line, 0);
    smtpd_peer(s, peer);
    if ((s->io = netio_new(fd, SMTPD_LINE_MAX, rt->timeout_ms, &s->e)) ==
        NULL) {
        close(fd);
        buf_fini(&s->line);
        free(s);
        return;
    }
    netio_set_record_deadline(s->io, rt->record_deadline);
    if (!smtpd_admit(srv, rt, s->addr)) {
        log_warning(NULL, "too many connections from %s[%s]", s->name,
                    s->addr);
        smtpd_reply(s, "421 4.7.0 %s Error: too many connections from %s",
                    rt->hostname, s->addr);
        (void)smtpd_flush(s);
        netio_free(s->io);
        buf_fini(&s->line);
        free(s);
        return;
    }
    log_info(NULL, "connect from %s", smtpd_client(s, client, sizeof(client)));
    s->xforward_ok = cidr_list_contains(rt->xforward_hosts, s->addr);

    /* A client that talks before the greeting is a spambot or a broken
     * pipeline; either way nothing it sent can be trusted. With no pause
     * the test would only race the client's first packet. */
    if (rt->greet_pause_ms > 0 &&
        netio_wait_input(s->io, rt->greet_pause_ms) > 0) {
        log_info("NOQUEUE",
                 "reject: CONNECT from %s: 554 5.5.1 Error: "
                 "early talker",
                 smtpd_client(s, client, sizeof(client)));
        smtpd_reply(s, "554 5.5.1 Error: early talker");
        (void)smtpd_flush(s);
        goto done;
    }
    smtpd_reply(s, "220 %s ESMTP relaychain", rt->hostname);
    if (smtpd_flush(s) < 0)
        goto done;

    while (!s->quit) {
        int rc = netio_getline(s->io, &s->line, &s->e);
        char *cmd;

        if (rc == NETIO_TIMEOUT) {
            log_info(NULL, "timeout after %s from %s",
                     s->in_mail ? "MAIL" : "command",
                     smtpd_client(s, client, sizeof(client)));
            smtpd_reply(s, "421 4.4.2 %s Error: timeout exceeded",
                        rt->hostname);
            break;
        }
        if (rc == NETIO_TOOLONG) {
            smtpd_reply(s, "500 5.5.2 Error: line too long");
            if (!smtpd_error(s) && netio_pending(s->io) == 0)
                smtpd_flush(s);
            continue;
        }
        if (rc != NETIO_OK) {
            log_info(NULL, "lost connection after %s from %s",
                     s->in_mail ? "MAIL" : "command",
                     smtpd_client(s, client, sizeof(client)));
            break;
        }
        cmd = s->line.data;
        while (s->line.len > 0 &&
               (cmd[s->line.len - 1] == '\n' || cmd[s->line.len - 1] == '\r'))
            cmd[--s->line.len] = '\0';
        if (memchr(cmd, '\0', s->line.len) != NULL) {
            smtpd_refuse(s, "500 5.5.2 Error: bad syntax");
        } else {
            smtpd_command(s, cmd);
        }
        /* Flush when the client waits for us: nothing more pipelined. */
        if (s->quit || netio_pending(s->io) == 0)
            if (smtpd_flush(s) < 0)
                break;
        if (atomic_load(&s->srv->stopping) && !s->in_mail) {
            smtpd_reply(s, "421 4.3.2 %s Service shutting down", rt->hostname);
            (void)smtpd_flush(s);
            break;
        }
    }
    (void)smtpd_flush(s);
done:
    smtpd_reset(s, 0);
    smtpd_log_disconnect(s);
    smtpd_leave(srv, s->addr);
    netio_free(s->io);
    free(s->auth_user);
    buf_fini(&s->line);
    free(s);
}
