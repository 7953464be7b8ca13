/*
 * smtpd_session - what every command does to a session
 *
 * Replies are written to the session's netio buffer and go out when the
 * command loop flushes (smtpd.c); the count of client errors ends the
 * session at error_limit; smtpd_reset() ends a transaction, giving the
 * next-hop connection back to the pool. The client's names as the log
 * and the chain see them are here too. Nothing here fails: a write
 * error is noticed at the flush.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg/msg.h"
#include "net/netio.h"
#include "net/smtpc.h"
#include "util/cidr.h"
#include "util/log.h"
#include "smtpd/smtpd_int.h"

void
smtpd_reply(struct smtpd_session *s, const char *fmt, ...)
{
    char text[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    s->last_code =
        text[0] >= '2' && text[0] <= '5' && text[1] >= '0' && text[1] <= '9' &&
                text[2] >= '0' && text[2] <= '9'
            ? (text[0] - '0') * 100 + (text[1] - '0') * 10 + (text[2] - '0')
            : 0;
    (void)netio_write(s->io, text, strlen(text), &s->e);
    (void)netio_write(s->io, "\r\n", 2, &s->e);
}

int
smtpd_flush(struct smtpd_session *s)
{
    return netio_flush(s->io, &s->e);
}

const char *
smtpd_client(const struct smtpd_session *s, char *out, size_t n)
{
    snprintf(out, n, "%s[%s]", s->name, s->addr);
    return out;
}

/* smtpd_env_addr - the client as the chain should see it (XFORWARD wins). */
const char *
smtpd_env_addr(const struct smtpd_session *s)
{
    return s->xf.addr[0] ? s->xf.addr : s->addr;
}

/* smtpd_env_name - the client's host name as the chain should see it. */
const char *
smtpd_env_name(const struct smtpd_session *s)
{
    return s->xf.name[0] ? s->xf.name : s->name;
}

/* smtpd_env_helo - the client's HELO name as the chain should see it. */
const char *
smtpd_env_helo(const struct smtpd_session *s)
{
    return s->xf.helo[0] ? s->xf.helo : s->helo;
}

/* smtpd_hop_env - the envelope smtpc_mail() passes on to the next hop
 * as XFORWARD: the client as the chain sees it, and our queue id. env
 * borrows from s. */
void
smtpd_hop_env(const struct smtpd_session *s, struct msg_env *env)
{
    memset(env, 0, sizeof(*env));
    env->frontend = MSG_FE_SMTP;
    env->qid = (char *)s->qid;
    env->client_addr = (char *)smtpd_env_addr(s);
    env->client_name = (char *)smtpd_env_name(s);
    env->helo = (char *)smtpd_env_helo(s);
}

/* smtpd_facts - what the policy knows of s's client (borrowed from s). */
struct smtpd_facts
smtpd_facts(const struct smtpd_session *s)
{
    struct smtpd_facts f;

    f.addr = s->addr;
    f.auth_user = s->auth_user;
    f.tls = netio_is_tls(s->io);
    return f;
}

/* smtpd_line_chomp - s->line without its line end. */
void
smtpd_line_chomp(struct smtpd_session *s)
{
    while (s->line.len > 0 && (s->line.data[s->line.len - 1] == '\n' ||
                               s->line.data[s->line.len - 1] == '\r'))
        s->line.data[--s->line.len] = '\0';
}

/* smtpd_is_internal - 1 when the client is in mynetworks. Behind a
 * content filter the peer is the MTA: the client that XFORWARD named
 * decides whether the mail is ours (a signing stage asks). */
int
smtpd_is_internal(const struct smtpd_session *s)
{
    return cidr_list_contains(s->rt->mynetworks, smtpd_env_addr(s));
}

void
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
        free(s->rcpts[i].group); /* ---- encrypt */
    }
    free(s->rcpts);
    s->rcpts = NULL;
    s->nrcpts = 0;
    s->n_dropped = 0;    /* ---- events */
    s->stream[0] = '\0'; /* ---- events */
    free(s->rl_rcpts);   /* ---- fleet */
    free(s->rl_idx);
    free(s->rl_amount);
    s->rl_rcpts = NULL;
    s->rl_idx = NULL;
    s->rl_amount = NULL;
    s->rl_n = 0;
    s->inbound = 0; /* ---- verp */
    free(s->sender);
    free(s->sender_params);
    s->sender = s->sender_params = NULL;
    s->in_mail = 0;
    s->dsn_ignored = 0;
    s->qid[0] = '\0';
    /* XFORWARD describes one transaction, as in Postfix. */
    s->xf.name[0] = s->xf.addr[0] = s->xf.helo[0] = s->xf.proto[0] = '\0';
    s->xf.ident[0] = '\0';
}

/* smtpd_error - count a client error; 1 when the limit is reached and
 * the session must end. */
int
smtpd_error(struct smtpd_session *s)
{
    if (++s->errors < s->rt->error_limit)
        return 0;
    smtpd_reply(s, "421 4.7.0 %s Error: too many errors", s->rt->hostname);
    s->quit = 1;
    return 1;
}

/* smtpd_refuse - a fixed error reply that counts toward error_limit. */
void
smtpd_refuse(struct smtpd_session *s, const char *reply)
{
    smtpd_reply(s, "%s", reply);
    smtpd_error(s);
}

void
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

/* smtpd_reply_id - one of our own 4xx or 5xx replies to a message, with
 * the queue id its log lines carry, so that the bounce a sender gets and
 * the admin's log meet: "554 5.7.1 virus=NAME (id 5F41D0050305)". */
void
smtpd_reply_id(struct smtpd_session *s, const char *reply)
{
    if (s->qid[0] != '\0')
        smtpd_reply(s, "%s (id %s)", reply, s->qid);
    else
        smtpd_reply(s, "%s", reply);
}
