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
#include "queue/events.h"
#include "util/addr.h"
#include "util/buf.h"
#include "util/esmtp.h"
#include "util/log.h"
#include "util/qid.h"
#include "util/ratelimit.h"
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

/* smtpd_kept - the parameters of a MAIL or RCPT to keep, as
 * smtpd_keep_params(); that DSN requests were dropped is logged once. */
static char *
smtpd_kept(struct smtpd_session *s, const char *params)
{
    struct smtpd_facts f = smtpd_facts(s);
    char *kept;
    int dropped;

    if ((kept = smtpd_keep_params(s->rt, &f, params, &dropped)) != NULL &&
        dropped)
        s->dsn_ignored = 1;
    return kept;
}

/* smtpd_give - give a refusal of the policy's; a fault counts toward
 * error_limit. */
static void
smtpd_give(struct smtpd_session *s, const struct smtpd_answer *a)
{
    smtpd_reply(s, "%s", a->reply);
    if (a->fault)
        smtpd_error(s);
}

/* smtpd_queue_refuses - in queue mode, MAIL is refused (and 1
 * returned, the reply given) when the queue is not running or the spool
 * is short of space for a message of the announced SIZE. */
static int
smtpd_queue_refuses(struct smtpd_session *s, const char *params,
                    const char *sender)
{
    char client[SMTPD_CLIENT_MAX];
    const char *reply = NULL;
    unsigned long long size = smtpd_param_size(params);

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

/* smtpd_hop_open - through mode: open the next-hop transaction for the
 * sender s took, passing on of the client's parameters (params) only
 * what the next hop needs to see. 0, or -1 with the client answered and
 * the transaction reset. */
static int
smtpd_hop_open(struct smtpd_session *s, const char *p)
{
    struct smtpc_reply r;
    struct msg_env env;
    char params[512];
    size_t vlen;
    const char *v;

    smtpd_hop_env(s, &env);
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
        return -1;
    }
    if (smtpc_mail(s->hop, &env, s->sender, params, &r, &s->e) < 0 ||
        r.code / 100 != 2) {
        log_info(s->qid, "next hop refused MAIL FROM:<%s>: %d %s", s->sender,
                 r.code, r.text);
        smtpd_reply(s, "%d %s", r.code ? r.code : 451, r.text);
        smtpd_reset(s, r.code != 0);
        return -1;
    }
    return 0;
}

/* smtpd_log_client - the first line of a transaction. As Postfix:
 * behind a content filter the peer is the MTA, so the client that
 * XFORWARD named is logged too, or no log line would. */
static void
smtpd_log_client(struct smtpd_session *s)
{
    char client[SMTPD_CLIENT_MAX];

    if (s->xf.addr[0] || s->xf.name[0])
        log_info(s->qid, "client=%s, %s%s%sorig_client=%s[%s]",
                 smtpd_client(s, client, sizeof(client)),
                 s->xf.ident[0] ? "orig_queue_id=" : "", s->xf.ident,
                 s->xf.ident[0] ? ", " : "",
                 s->xf.name[0] ? s->xf.name : "unknown",
                 s->xf.addr[0] ? s->xf.addr : "unknown");
    else if (s->xf.ident[0])
        log_info(s->qid, "client=%s, orig_queue_id=%s",
                 smtpd_client(s, client, sizeof(client)), s->xf.ident);
    else
        log_info(s->qid, "client=%s", smtpd_client(s, client, sizeof(client)));
}

void
smtpd_cmd_mail(struct smtpd_session *s, const char *line)
{
    struct smtpd_facts f = smtpd_facts(s);
    struct smtpd_answer a;
    const char *p = NULL;
    struct buf addr;

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
    buf_init(&addr, ADDR_MAX + 1);
    smtpd_mail_check(s->rt, line, &addr, &p, &a, &s->e);
    if (a.reply != NULL) {
        smtpd_give(s, &a);
        buf_fini(&addr);
        return;
    }
    if (s->rt->queue_mode && smtpd_queue_refuses(s, p, buf_str(&addr))) {
        buf_fini(&addr);
        return;
    }
    smtpd_sender_check(s->rt, &f, buf_str(&addr), &a, &s->e);
    if (a.reply != NULL) {
        s->sender = strdup(buf_str(&addr));
        smtpd_noqueue_reject(s, "MAIL", a.reply, NULL);
        free(s->sender);
        s->sender = NULL;
        smtpd_give(s, &a);
        buf_fini(&addr);
        return;
    }
    s->sender = buf_steal(&addr, NULL);
    s->sender_params = smtpd_kept(s, p);
    buf_fini(&addr);
    if (s->sender == NULL || s->sender_params == NULL) {
        smtpd_reply(s, "451 4.3.0 Error: out of memory");
        smtpd_reset(s, 1);
        return;
    }
    qid_new(&s->srv->seq, s->qid, sizeof(s->qid));
    gettimeofday(&s->t_start, NULL);
    if (!s->rt->queue_mode && smtpd_hop_open(s, p) < 0)
        return;
    s->in_mail = 1;
    s->n_mail++;
    smtpd_log_client(s);
    smtpd_dsn_log(s);
    smtpd_reply(s, "250 2.1.0 Ok");
}

/* ---- encrypt: smtpd_rcpt_group - 0 when addr may join the transaction:
 * the chain's stages put it in the same group as the first recipient
 * (an encrypt stage: the same form of the message, encrypted in one
 * protocol or clear). Otherwise the reply is given and 1 returned: the
 * stage's refusal of this recipient (a required one without a key), or
 * 452 4.5.3, which has the client send it in another transaction, so
 * that each copy can be made for its own recipients. In queue mode
 * every group is taken and the group's name kept in *kept (NULL when no
 * stage groups recipients): the message is split at the end of the data
 * (smtpd_deliver). */
static int
smtpd_rcpt_group(struct smtpd_session *s, const char *addr, char **kept)
{
    char group[sizeof(s->rcpt_group)];
    struct verdict v;
    struct err e;

    memset(&v, 0, sizeof(v));
    err_clear(&e);
    if (chain_rcpt_group(s->rt->cf->chain, s->sender, addr, group,
                         sizeof(group), &v, &e) < 0) {
        log_warning(s->qid, "RCPT TO:<%s>: %s", addr, e.text);
        smtpd_reply(s, "451 4.3.0 Error: try again later");
        return 1;
    }
    if (v.kind != VERDICT_CONTINUE) {
        log_info(s->qid, "reject: RCPT TO:<%s>: %s%s%s", addr, v.reply,
                 v.note[0] != '\0' ? "; " : "", v.note);
        smtpd_reply(s, "%s", v.reply);
        return 1;
    }
    if (s->rt->queue_mode) {
        if (group[0] != '\0' && (*kept = strdup(group)) == NULL) {
            smtpd_reply(s, "452 4.3.0 Error: out of memory");
            return 1;
        }
        return 0;
    }
    if (s->nrcpts == 0) {
        memcpy(s->rcpt_group, group, sizeof(group));
        return 0;
    }
    if (strcmp(group, s->rcpt_group) == 0)
        return 0;
    log_info(s->qid,
             "RCPT TO:<%s>: needs another copy (%s) than the transaction's "
             "(%s): 452 4.5.3",
             addr, group, s->rcpt_group);
    smtpd_reply(s, "452 4.5.3 Send to this recipient in another "
                   "transaction: it needs its own copy of the message");
    return 1;
}
/* ---- end encrypt */
/* ---- fleet: smtpd_rate_event - what the rate limits see of s's
 * transaction: the client as the chain sees it, the user, the sender's
 * domain (into sdom) and the stream (given, else stream_map's, into
 * stream); both buffers of SMTPD_RATE_TEXT octets. */
void
smtpd_rate_event(struct smtpd_session *s, const char *given,
                 struct ratelimit_event *ev, char *sdom, char *stream)
{
    struct events *evs;

    memset(ev, 0, sizeof(*ev));
    ev->client_addr = smtpd_env_addr(s);
    ev->user = s->auth_user;
    ev->sender_domain = ratelimit_domain(s->sender, sdom, SMTPD_RATE_TEXT);
    evs = s->rt->queue_mode ? queue_events(s->srv->queue) : NULL;
    if (evs != NULL &&
        events_stream(evs, given, s->auth_user, s->sender, stream,
                      SMTPD_RATE_TEXT) &&
        stream[0] != '\0')
        ev->stream = stream;
}

/* ---- fleet: smtpd_rate_rcpt_full - a transaction takes no more
 * recipients than a recipients rule of rate_limits allows in its period
 * (the message is counted whole after its data, so a bigger one would
 * never fit): past that, 452 4.5.3 and the client sends the rest in
 * another transaction, as for recipient_limit. Counted here in the
 * session, no request to the shared store. 1 when it replied. */
static int
smtpd_rate_rcpt_full(struct smtpd_session *s, const char *rcpt)
{
    const struct ratelimit_set *set = s->rt->limits;
    char sdom[SMTPD_RATE_TEXT], rdom[256], stream[SMTPD_RATE_TEXT];
    char client[SMTPD_CLIENT_MAX];
    struct ratelimit_event ev;
    size_t *idx, n, i;
    int full = 0;

    if (set == NULL || set->n == 0)
        return 0;
    if (s->rl_rcpts == NULL &&
        (s->rl_rcpts = calloc(set->n, sizeof(*s->rl_rcpts))) == NULL)
        return 0; /* the count after the data still holds */
    if ((idx = calloc(set->n, sizeof(*idx))) == NULL)
        return 0;
    smtpd_rate_event(s, NULL, &ev, sdom, stream);
    ev.at_rcpt = 1;
    ev.rcpt_domain = ratelimit_domain(rcpt, rdom, sizeof(rdom));
    n = ratelimit_match(set, &ev, idx, set->n);
    for (i = 0; i < n && !full; i++) {
        const struct ratelimit_rule *r = &set->rules[idx[i]];

        if (r->unit != RATELIMIT_RECIPIENTS ||
            s->rl_rcpts[idx[i]] + 1 <= r->count)
            continue;
        full = 1;
        log_info(s->qid[0] ? s->qid : "NOQUEUE",
                 "reject: RCPT from %s: 452 4.5.3 Error: too many "
                 "recipients; rate_limit=%s (%lld per %llds recipients): "
                 "at most that many a message; from=<%s> to=<%s>",
                 smtpd_client(s, client, sizeof(client)), r->id, r->count,
                 r->period_ms / 1000, s->sender, rcpt);
    }
    for (i = 0; i < n && !full; i++)
        s->rl_rcpts[idx[i]]++;
    free(idx);
    if (full)
        smtpd_reply(s, "452 4.5.3 Error: too many recipients");
    return full;
}

/* ---- events: smtpd_suppressed_event - the event of rcpt, suppressed
 * for stream (why: "REASON, DATE"), of the message msgid (NULL at RCPT,
 * before there is one) */
void
smtpd_suppressed_event(struct smtpd_session *s, struct events *ev,
                       const char *msgid, const char *rcpt, const char *stream,
                       const char *why)
{
    struct events_rec r;

    memset(&r, 0, sizeof(r));
    r.type = EVENTS_SUPPRESSED;
    r.qid = s->qid;
    r.msgid = msgid;
    r.sender = s->sender;
    r.rcpt = rcpt;
    r.stream = stream;
    r.code = 550;
    r.dsn = "5.7.1";
    r.text = why;
    events_emit(ev, &r);
}

/* ---- events: smtpd_rcpt_suppressed - in queue mode with events_store,
 * a recipient on the suppression list (for the sender's stream, or for
 * all mail when stream_map is unset) is refused with 550 5.7.1, or with
 * on_suppressed = drop answered 250 and left off the envelope, with a
 * suppressed event either way; returns 1 then (replied), else 0. A
 * failed lookup lets the recipient pass: events never stop mail. */
static int
smtpd_rcpt_suppressed(struct smtpd_session *s, const char *rcpt)
{
    struct events *ev = s->rt->queue_mode ? queue_events(s->srv->queue) : NULL;
    char stream[256], why[400], reply[600];

    if (ev == NULL)
        return 0;
    if (events_stream(ev, NULL, s->auth_user, s->sender, stream,
                      sizeof(stream)) &&
        stream[0] == '\0')
        return 0; /* streams are tracked, and this mail is on none */
    if (events_suppressed(ev, rcpt, stream, why, sizeof(why)) != 1)
        return 0;
    snprintf(reply, sizeof(reply), "550 5.7.1 recipient suppressed (%s)", why);
    if (events_drops(ev))
        log_info(s->qid, "suppressed: RCPT <%s> accepted and dropped (%s)",
                 rcpt, why);
    else
        smtpd_noqueue_reject(s, "RCPT", reply, rcpt);
    smtpd_suppressed_event(s, ev, NULL, rcpt, stream, why);
    if (events_drops(ev)) {
        s->n_dropped++;
        smtpd_reply(s, "250 2.1.5 Ok");
    } else {
        smtpd_reply(s, "%s", reply);
    }
    return 1;
}

/* ---- verp: smtpd_rcpt_inbound - note whether rcpt is for the relay
 * itself (a bounce or complaint to read); such recipients and relayed
 * ones never share a transaction: the second kind gets 452 4.5.3 and
 * the client sends it again on its own. Returns 1 when it replied. */
static int
smtpd_rcpt_inbound(struct smtpd_session *s, const char *rcpt)
{
    struct events *ev = s->rt->queue_mode ? queue_events(s->srv->queue) : NULL;
    const char *dom = addr_domain(rcpt);
    int in = events_inbound_rcpt(ev, rcpt);
    int rt_in = (s->rt->inbound_domain != NULL && dom != NULL &&
                 addr_domain_equal(dom, s->rt->inbound_domain)) ||
                (s->rt->inbound_fbl != NULL &&
                 strcasecmp(rcpt, s->rt->inbound_fbl) == 0);

    /* The policy let rcpt through on the reloaded configuration, the
     * writer reads what the running one named: after a reload that
     * changed verp_domain or fbl_address neither may decide alone (the
     * new domain would be relayed for anyone). */
    if (rt_in != in) {
        log_warning(s->qid,
                    "RCPT TO:<%s>: verp_domain or fbl_address changed: "
                    "restart relaychaind to use it; 451 4.3.0",
                    rcpt);
        smtpd_reply(s, "451 4.3.0 Error: try again later");
        return 1;
    }
    if (s->nrcpts > 0 && in != s->inbound) {
        log_info(s->qid, "RCPT TO:<%s>: %s: 452 4.5.3", rcpt,
                 in ? "for the relay itself, after relayed recipients"
                    : "relayed, after recipients for the relay itself");
        smtpd_reply(s, "452 4.5.3 Send to this recipient in another "
                       "transaction");
        return 1;
    }
    s->inbound = in;
    return 0;
}
/* ---- end verp */

void
smtpd_cmd_rcpt(struct smtpd_session *s, const char *line)
{
    struct smtpd_facts f = smtpd_facts(s);
    struct smtpd_answer a;
    struct smtpd_rcpt *grown;
    struct smtpc_reply r;
    struct buf addr;
    const char *p = NULL;
    char *group = NULL; /* ---- encrypt */

    if (!s->in_mail) {
        smtpd_refuse(s, "503 5.5.1 Error: need MAIL command");
        return;
    }
    buf_init(&addr, ADDR_MAX + 1);
    smtpd_rcpt_check(s->rt, &f, s->nrcpts, line, &addr, &p, &a, &s->e);
    if (a.reply != NULL) {
        if (a.noqueue)
            smtpd_noqueue_reject(s, "RCPT", a.reply, buf_str(&addr));
        smtpd_give(s, &a);
        buf_fini(&addr);
        return;
    }
    /* ---- verp: mail for the relay itself is a transaction of its own */
    if (smtpd_rcpt_inbound(s, buf_str(&addr))) {
        buf_fini(&addr);
        return;
    }
    /* ---- events: the suppression list */
    if (!s->inbound && smtpd_rcpt_suppressed(s, buf_str(&addr))) {
        buf_fini(&addr);
        return;
    }
    /* ---- encrypt */
    if (!s->inbound && smtpd_rcpt_group(s, buf_str(&addr), &group) != 0) {
        buf_fini(&addr);
        return;
    }
    /* ---- end encrypt */
    if (!s->inbound && smtpd_rate_rcpt_full(s, buf_str(&addr))) { /* fleet */
        free(group);
        buf_fini(&addr);
        return;
    }
    /* room first: a recipient the next hop took is always on the list,
     * in the same order (an LMTP hop answers the message per recipient) */
    grown = realloc(s->rcpts, (s->nrcpts + 1) * sizeof(*grown));
    if (grown == NULL) {
        smtpd_reply(s, "452 4.3.0 Error: out of memory");
        free(group); /* ---- encrypt */
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
        (s->rcpts[s->nrcpts].params = smtpd_kept(s, p)) == NULL) {
        /* the next hop may have the recipient: the transaction is void */
        smtpd_reply(s, "451 4.3.0 Error: out of memory");
        free(group); /* ---- encrypt */
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
    /* ---- encrypt: NULL in through mode (the hop's ways out above) */
    s->rcpts[s->nrcpts].group = group;
    s->nrcpts++;
    s->n_rcpt++;
    buf_fini(&addr);
    smtpd_dsn_log(s);
    smtpd_reply(s, "250 2.1.5 Ok");
}

void
smtpd_cmd_xforward(struct smtpd_session *s, const char *arg)
{
    struct smtpd_facts f = smtpd_facts(s);
    const char *bad;

    s->n_xforward_all++;
    if ((bad = smtpd_xforward_check(s->rt, &f, s->in_mail, arg, &s->xf)) !=
        NULL) {
        smtpd_refuse(s, bad);
        return;
    }
    s->n_xforward++;
    smtpd_reply(s, "250 2.0.0 Ok");
}
