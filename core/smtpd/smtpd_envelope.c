/*
 * smtpd_envelope - MAIL, RCPT and XFORWARD
 *
 * The commands that build a transaction's envelope. Each asks the policy
 * (smtpd_policy.c) and answers; in through mode MAIL opens the next-hop
 * transaction and RCPT passes each recipient on, so the client hears the
 * next hop's reply. The session owns what is kept (sender, recipients,
 * their parameters) until smtpd_reset().
 */
#include "config.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "msg/msg.h"
#include "net/smtpc.h"
#include "queue/queue.h"
#include "util/addr.h"
#include "util/buf.h"
#include "util/esmtp.h"
#include "util/log.h"
#include "util/qid.h"
#include "smtpd/smtpd_int.h"

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

void
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

void
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

void
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
