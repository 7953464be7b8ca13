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
 * The files of the front end and what each does are listed in
 * smtpd_int.h; this one holds the server's counts, the session with its
 * command loop, HELO and EHLO, and the disconnect line.
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "chain/runtime.h"
#include "net/auth.h"
#include "net/netio.h"
#include "net/proxy.h"
#include "util/buf.h"
#include "util/cidr.h"
#include "util/log.h"
#include "smtpd/smtpd.h"
#include "smtpd/smtpd_int.h"

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

/* smtpd_junk - count a NOOP, VRFY or RSET. Past smtpd_junk_command_limit
 * each one also counts as an error, as in Postfix, so that a client
 * cannot hold its session with commands that do nothing. */
static void
smtpd_junk(struct smtpd_session *s)
{
    if (++s->junk > s->rt->junk_limit)
        (void)smtpd_error(s);
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

static void
smtpd_cmd_ehlo(struct smtpd_session *s, const char *arg, int esmtp)
{
    const struct smtpd_runtime *rt = s->rt;
    struct smtpd_facts f;

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
    f = smtpd_facts(s);
    if (smtpd_starttls_offered(rt, &f))
        smtpd_reply(s, "250-STARTTLS");
    if (smtpd_auth_offered(rt, &f))
        smtpd_reply(s, "250-AUTH PLAIN LOGIN");
    if (s->xforward_ok)
        smtpd_reply(s, "250-XFORWARD NAME ADDR PROTO HELO IDENT");
    smtpd_reply(s, "250-ENHANCEDSTATUSCODES");
    if (smtpd_dsn_offered(rt, &f))
        smtpd_reply(s, "250-DSN");
    smtpd_reply(s, "250-8BITMIME");
    smtpd_reply(s, "250 SMTPUTF8");
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

/* ---- fleet: the PROXY protocol */

/* smtpd_proxy - behind a load balancer (smtp_proxy_protocol = haproxy):
 * the peer must be one of proxy_protocol_hosts and send a valid PROXY
 * header within proxy_protocol_timeout; the client it names becomes the
 * session's client (a LOCAL or UNKNOWN header keeps the peer). 0, or -1
 * when the connection is to be closed (logged). */
static int
smtpd_proxy(struct smtpd_session *s, int fd)
{
    struct proxy_hdr h;
    struct err e;

    if (!cidr_list_contains(s->rt->proxy_hosts, s->addr)) {
        log_warning(NULL,
                    "PROXY: connection from %s[%s] refused: not in "
                    "proxy_protocol_hosts",
                    s->name, s->addr);
        return -1;
    }
    if (proxy_read(fd, s->rt->proxy_timeout_ms, &h, &e) < 0) {
        log_warning(NULL, "PROXY: bad header from %s[%s]: %s; closed", s->name,
                    s->addr, e.text);
        return -1;
    }
    if (h.local)
        return 0;
    log_info(NULL, "PROXY v%d: client %s port %u via %s", h.version, h.src,
             h.sport, s->addr);
    snprintf(s->addr, sizeof(s->addr), "%s", h.src);
    snprintf(s->port, sizeof(s->port), "%u", h.sport);
    if (strncmp(s->addr, "::ffff:", 7) == 0 && strchr(s->addr, '.'))
        memmove(s->addr, s->addr + 7, strlen(s->addr + 7) + 1);
    return 0;
}

/* ---- end fleet */

void
smtpd_session_run(struct smtpd_server *srv, struct runtime *runtime, int fd,
                  const struct sockaddr *peer, socklen_t len)
{
    struct smtpd_runtime *rt = runtime_part(runtime, &smtpd_runtime_type);
    struct smtpd_session *s;
    struct smtpd_facts f;
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
    if (rt->proxy && smtpd_proxy(s, fd) < 0) { /* fleet */
        close(fd);
        buf_fini(&s->line);
        free(s);
        return;
    }
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
    f = smtpd_facts(s);
    s->xforward_ok = smtpd_xforward_ok(rt, &f);

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
        smtpd_line_chomp(s);
        cmd = s->line.data;
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
