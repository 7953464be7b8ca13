/*
 * smtpd_deliver - the end of a message: the chain, then the queue or the
 * next hop, and the reply
 *
 * smtpd_deliver() builds the struct msg from the session's envelope and
 * the octets DATA read, runs the step (chain/step.h) with this hop's
 * Received field as its preparation, and hands the result on: to the
 * quarantine, to the queue (queue mode), or through the next-hop
 * transaction MAIL opened (through mode). The client's reply is given
 * only once the message's fate is known, and the summary line logged
 * after it. Any failure on the way is a 4xx, never 250.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "chain/chain.h"
#include "chain/step.h"
#include "msg/msg.h"
#include "net/netio.h"
#include "net/smtpc.h"
#include "queue/quarantine.h"
#include "queue/queue.h"
#include "util/buf.h"
#include "util/log.h"
#include "util/qid.h"
#include "smtpd/smtpd_int.h"

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

    smtpd_hop_env(s, &xf);
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
    len = strspn(p, SMTPD_QID_CHARS);
    if (len > 0 && len < n) {
        memcpy(out, p, len);
        out[len] = '\0';
    }
}

/* smtpd_session_rcpt - the i-th recipient of the session arg, for
 * step_log_rcpts(). */
static const char *
smtpd_session_rcpt(const void *arg, size_t i)
{
    const struct smtpd_session *s = arg;

    return s->rcpts[i].addr;
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

    chain_summary(res, words, sizeof(words));
    step_log_rcpts(to, sizeof(to), s->nrcpts, smtpd_session_rcpt, s);
    ident[0] = '\0';
    if (s->xf.ident[0])
        snprintf(ident, sizeof(ident), ", orig_queue_id=%s", s->xf.ident);
    log_info(s->qid,
             "%s {%s}%s%s%s, client=%s[%s], from=<%s>, to=%s, size=%zu%s%s, "
             "%lld ms",
             words, tag, res->by ? ", by=" : "", res->by ? res->by->name : "",
             ident, smtpd_env_name(s), smtpd_env_addr(s), s->sender, to, size,
             queued_as[0] ? ", queued_as: " : "", queued_as,
             (long long)(smtpd_delay(s) * 1000 + 0.5));
}

/* smtpd_tag - the summary's word for a reply the client got. */
static const char *
smtpd_tag(int code)
{
    return code / 100 == 2   ? "Relayed"
           : code / 100 == 5 ? "Rejected"
                             : "TempFailed";
}

/* smtpd_queue_msg - what the queue is given for the message qid of s:
 * env after the chain, orig (norig) as the client gave it, the octets
 * in iov (niov pieces, len in all). qm borrows from all of them. */
static void
smtpd_queue_msg(const struct smtpd_session *s, const char *qid,
                const struct msg_env *env, const struct msg_rcpt *orig,
                size_t norig, const struct iovec *iov, size_t niov, size_t len,
                struct queue_msg *qm)
{
    memset(qm, 0, sizeof(*qm));
    qm->qid = qid;
    qm->arrival_us =
        (long long)s->t_start.tv_sec * 1000000LL + s->t_start.tv_usec;
    qm->client_addr = smtpd_env_addr(s);
    qm->client_name = smtpd_env_name(s);
    qm->helo = smtpd_env_helo(s);
    qm->auth_user = s->auth_user;
    qm->stream = s->stream; /* ---- events */
    qm->sender = env->sender;
    qm->sender_params = env->sender_params;
    qm->rcpts = env->rcpts;
    qm->nrcpts = env->nrcpts;
    qm->orig = orig;
    qm->norig = norig;
    qm->iov = iov;
    qm->niov = niov;
    qm->len = len;
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
    smtpd_queue_msg(s, s->qid, env, orig, s->nrcpts, iov, niov, len, &qm);
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

/* ---- events: smtpd_stream_strip - stream_header never leaves,
 * believed or not (every field of that name; s->e on failure) */
static int
smtpd_stream_strip(struct smtpd_session *s, struct msg *m)
{
    const char *name = s->rt->stream_header;

    while (name != NULL && msg_header_get(m, name, 1) != NULL)
        if (msg_header_delete(m, "smtpd", name, 1, &s->e) < 0)
            return -1;
    return 0;
}

/* smtpd_prepare - the step's preparation (chain/step.h): this hop's
 * Received field, stream_header removed, then the "from=" line. */
static int
smtpd_prepare(void *arg, struct msg *m, size_t size, struct err *e)
{
    struct smtpd_session *s = arg;

    (void)e; /* smtpd_received fills s->e, which is e */
    if (smtpd_received(s, m) < 0 || smtpd_stream_strip(s, m) < 0)
        return -1;
    log_info(s->qid, "from=<%s>, size=%zu, nrcpt=%zu", s->sender, size,
             s->nrcpts);
    return 0;
}

/* smtpd_msg_new - the message of s's transaction, its envelope set;
 * NULL with s->e set. The caller frees it. */
static struct msg *
smtpd_msg_new(struct smtpd_session *s)
{
    struct msg *m;
    size_t i;

    if ((m = msg_new(&s->rt->cf->limits, MSG_FE_SMTP, &s->e)) == NULL)
        return NULL;
    if (msg_env_sender(m, s->sender, s->sender_params, &s->e) < 0)
        goto fail;
    for (i = 0; i < s->nrcpts; i++)
        if (msg_env_rcpt(m, s->rcpts[i].addr, s->rcpts[i].params, &s->e) < 0)
            goto fail;
    return m;

fail:
    msg_free(m);
    return NULL;
}

/* smtpd_step_in - the step's input for s's message: data, and the client
 * as the chain sees it (in borrows from s, data and opts). */
static void
smtpd_step_in(struct smtpd_session *s, struct buf *data,
              struct chain_opts *opts, struct step_in *in)
{
    memset(in, 0, sizeof(*in));
    in->cf = s->rt->cf;
    in->log_qid = s->qid;
    in->qid = s->qid;
    in->client_addr = smtpd_env_addr(s);
    in->client_name = smtpd_env_name(s);
    in->helo = smtpd_env_helo(s);
    in->tls = netio_is_tls(s->io);
    in->auth_user = s->auth_user;
    in->internal = smtpd_is_internal(s);
    in->data = data;
    in->opts = opts;
    in->prepare = smtpd_prepare;
    in->arg = s;
    in->log_tag = "";
    in->log_where = "";
}

/* smtpd_quarantine - store m, which a stage held (res), and answer; the
 * summary's tag is returned. */
static const char *
smtpd_quarantine(struct smtpd_session *s, struct msg *m,
                 const struct chain_result *res)
{
    const struct conf *cf = s->rt->cf;
    const char *out;
    size_t out_len;

    if ((out = msg_flat(m, &out_len, &s->e)) == NULL ||
        quarantine_store(cfg_str(cf->cfg, "quarantine_directory"), m, out,
                         out_len, res->verdict.note,
                         res->by ? res->by->name : NULL, s->stream,
                         &s->e) < 0) {
        log_error(s->qid, "quarantine: %s", s->e.text);
        smtpd_reply_id(s, "451 4.3.0 Error: cannot quarantine, try "
                          "again later");
        return "TempFailed";
    }
    log_info(s->qid, "quarantine: %s%s%s", res->by ? res->by->name : "chain",
             res->verdict.note[0] ? ": " : "", res->verdict.note);
    smtpd_reply(s, "250 2.0.0 Ok: queued as %s", s->qid);
    return "Quarantined";
}

/* smtpd_through - through mode: send the processed message (iov) in the
 * next-hop transaction MAIL opened, replayed first when the chain
 * changed the envelope, and answer the client with the next hop's reply;
 * the connection goes back to the pool. Returns the summary's tag, with
 * the next hop's queue id in queued_as (n octets) when it gave one; NULL
 * when the message could not be sent (s->e says why) and the client is
 * not answered yet. */
static const char *
smtpd_through(struct smtpd_session *s, const struct msg *m,
              const struct iovec *iov, size_t niov, char *queued_as, size_t n)
{
    const struct msg_env *env = msg_env(m);
    struct smtpc_reply r, *each;
    const char *tag;
    size_t i;
    int hop_ok = 1;

    if (s->hop == NULL)
        return NULL;
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
        return NULL;
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
    free(each);
    /* one reply for all: smtpc ranks a 4xx over a 5xx over a 2xx, so no
     * recipient is answered 250 that the next hop did not take */
    smtpd_reply(s, "%d %s", r.code, r.text);
    tag = smtpd_tag(r.code);
    if (r.code / 100 == 2)
        smtpd_queued_as(r.text, queued_as, n);
out_hop:
    smtpc_put(s->rt->hop, s->hop, hop_ok);
    s->hop = NULL;
    return tag;
}

/* ---- encrypt: queue mode, one message split per recipient group
 *
 * When a stage groups recipients (chain_rcpt_group: the encrypt stage's
 * "pgp", "smime" and "clear") and the transaction's recipients fall in
 * more than one group, each group gets its own run of the chain on its
 * own copy of the message (the octets DATA read, the envelope cut down
 * to the group's recipients) and its own queue file under its own queue
 * id; the first group keeps the transaction's. Each copy is staged
 * (queue_stage) as its run ends, and all are published together
 * (queue_publish) before the one 250. A rejection, tempfail or error of
 * any group's run, or a failed write, answers the whole message so and
 * queues none of it. A group that a stage discards adds no file; one
 * that a stage holds is quarantined at once and stays there when a later
 * group fails (the client's retry may quarantine it twice: kept twice,
 * never lost). The copies in memory are not counted against
 * smtpd_memory_limit: one at a time beside the one DATA read. */

struct smtpd_group {
    const char *name; /* the group, borrowed from a recipient's */
    char qid[QUEUE_ID_MAX];
    size_t nrcpts;           /* of the transaction's in the group */
    struct chain_result res; /* its run's */
    const char *tag;         /* its summary's, once decided */
    int staged;              /* its queue file is staged */
};

static const char *
smtpd_rcpt_group_name(const struct smtpd_session *s, size_t i)
{
    return s->rcpts[i].group != NULL ? s->rcpts[i].group : "";
}

/* smtpd_split_wanted - 1 when s's recipients are in more than one
 * group. */
static int
smtpd_split_wanted(const struct smtpd_session *s)
{
    size_t i;

    for (i = 1; i < s->nrcpts; i++)
        if (strcmp(smtpd_rcpt_group_name(s, i), smtpd_rcpt_group_name(s, 0)) !=
            0)
            return 1;
    return 0;
}

/* smtpd_split_groups - the distinct groups of s's recipients into g
 * (room for s->nrcpts), in the order of their first recipient; their
 * number. */
static size_t
smtpd_split_groups(struct smtpd_session *s, struct smtpd_group *g)
{
    size_t i, j, n = 0;

    for (i = 0; i < s->nrcpts; i++) {
        const char *name = smtpd_rcpt_group_name(s, i);

        for (j = 0; j < n; j++)
            if (strcmp(g[j].name, name) == 0)
                break;
        if (j == n) {
            memset(&g[n], 0, sizeof(g[n]));
            g[n].name = name;
            if (n == 0)
                snprintf(g[n].qid, sizeof(g[n].qid), "%s", s->qid);
            else
                qid_new(&s->srv->seq, g[n].qid, sizeof(g[n].qid));
            n++;
        }
        g[j].nrcpts++;
    }
    return n;
}

struct smtpd_split_ctx {
    struct smtpd_session *s;
    const struct smtpd_group *g;
};

/* smtpd_split_rcpt - the i-th recipient of the group, for
 * step_log_rcpts(). */
static const char *
smtpd_split_rcpt(const void *arg, size_t i)
{
    const struct smtpd_split_ctx *c = arg;
    size_t k;

    for (k = 0; k < c->s->nrcpts; k++)
        if (strcmp(smtpd_rcpt_group_name(c->s, k), c->g->name) == 0 &&
            i-- == 0)
            return c->s->rcpts[k].addr;
    return "";
}

/* smtpd_split_prepare - the step's preparation for a group's copy: this
 * hop's Received field, stream_header removed, then the group's "from="
 * line. */
static int
smtpd_split_prepare(void *arg, struct msg *m, size_t size, struct err *e)
{
    struct smtpd_split_ctx *c = arg;
    char to[1024];

    (void)e; /* smtpd_received fills s->e, which is e */
    if (smtpd_received(c->s, m) < 0 || smtpd_stream_strip(c->s, m) < 0)
        return -1;
    step_log_rcpts(to, sizeof(to), c->g->nrcpts, smtpd_split_rcpt, c);
    log_info(c->g->qid, "from=<%s>, size=%zu, nrcpt=%zu (split from %s: %s)",
             c->s->sender, size, c->g->nrcpts, c->s->qid, to);
    return 0;
}

/* smtpd_split_run - g's run of the chain on data (taken over) and its
 * copy staged, quarantined or dropped. 0 to go on; -1 when the whole
 * message must be answered reply (set, static or g's result's). */
static int
smtpd_split_run(struct smtpd_session *s, struct smtpd_group *g,
                struct buf *data, const char **reply)
{
    struct smtpd_split_ctx c = {s, g};
    struct chain_opts opts;
    struct step_in in;
    struct msg *m;
    struct msg_rcpt *orig = NULL;
    struct iovec *iov = NULL;
    struct queue_msg qm;
    const char *out;
    size_t i, k = 0, niov, out_len;
    int rc = -1;

    *reply = "451 4.3.0 Error: queue file write error";
    memset(&opts, 0, sizeof(opts));
    opts.undo_hold = 1;
    if ((m = msg_new(&s->rt->cf->limits, MSG_FE_SMTP, &s->e)) == NULL ||
        msg_env_sender(m, s->sender, s->sender_params, &s->e) < 0 ||
        (orig = calloc(g->nrcpts, sizeof(*orig))) == NULL)
        goto error;
    for (i = 0; i < s->nrcpts; i++) {
        if (strcmp(smtpd_rcpt_group_name(s, i), g->name) != 0)
            continue;
        orig[k].addr = s->rcpts[i].addr;
        orig[k++].params = s->rcpts[i].params;
        if (msg_env_rcpt(m, s->rcpts[i].addr, s->rcpts[i].params, &s->e) < 0)
            goto error;
    }
    smtpd_step_in(s, data, &opts, &in);
    in.log_qid = in.qid = g->qid;
    in.prepare = smtpd_split_prepare;
    in.arg = &c;
    switch (step_run(&in, m, &g->res, &s->e)) {
    case STEP_ERROR:
    case STEP_REFUSED:
        goto error;
    case STEP_TOO_BIG:
        log_info(g->qid, "reject: %s", s->e.text);
        *reply = "552 5.3.4 Message header or size exceeds limit";
        g->tag = "Rejected";
        goto out;
    case STEP_REJECT:
    case STEP_TEMPFAIL:
        *reply = g->res.verdict.reply;
        g->tag =
            g->res.verdict.kind == VERDICT_REJECT ? "Rejected" : "TempFailed";
        goto out;
    case STEP_DISCARD:
    case STEP_NO_RCPTS:
        g->tag = "Discarded";
        rc = 0;
        goto out;
    case STEP_QUARANTINE:
        if ((out = msg_flat(m, &out_len, &s->e)) == NULL ||
            quarantine_store(cfg_str(s->rt->cf->cfg, "quarantine_directory"),
                             m, out, out_len, g->res.verdict.note,
                             g->res.by ? g->res.by->name : NULL, s->stream,
                             &s->e) < 0) {
            log_error(g->qid, "quarantine: %s", s->e.text);
            *reply = "451 4.3.0 Error: cannot quarantine, try again later";
            g->tag = "TempFailed";
            goto out;
        }
        log_info(g->qid, "quarantine: %s%s%s",
                 g->res.by ? g->res.by->name : "chain",
                 g->res.verdict.note[0] ? ": " : "", g->res.verdict.note);
        g->tag = "Quarantined";
        rc = 0;
        goto out;
    case STEP_CONTINUE:
        break;
    }
    niov = msg_iov(m, NULL, 0);
    if ((iov = calloc(niov ? niov : 1, sizeof(*iov))) == NULL) {
        err_nomem(&s->e);
        goto error;
    }
    niov = msg_iov(m, iov, niov);
    smtpd_queue_msg(s, g->qid, msg_env(m), orig, g->nrcpts, iov, niov,
                    msg_size(m), &qm);
    err_clear(&s->e);
    if (queue_stage(s->srv->queue, &qm, &s->e) < 0) {
        *reply = queue_commit_reply(&s->e);
        log_error(g->qid, "queue file write error: %s", s->e.text);
        g->tag = "TempFailed";
        goto out;
    }
    g->staged = 1;
    g->tag = "Queued";
    rc = 0;
    goto out;

error:
    log_error(g->qid, "%s", s->e.text[0] ? s->e.text : "internal error");
    g->tag = "TempFailed";
out:
    free(iov);
    free(orig);
    msg_free(m);
    return rc;
}

/* smtpd_split_summary - g's summary line, as smtpd_log_summary's. */
static void
smtpd_split_summary(struct smtpd_session *s, const struct smtpd_group *g,
                    size_t size)
{
    struct smtpd_split_ctx c = {s, g};
    char words[200], to[1024];

    chain_summary(&g->res, words, sizeof(words));
    step_log_rcpts(to, sizeof(to), g->nrcpts, smtpd_split_rcpt, &c);
    log_info(g->qid,
             "%s {%s}%s%s, client=%s[%s], from=<%s>, to=%s, size=%zu, "
             "split from %s, %lld ms",
             words, g->tag, g->res.by ? ", by=" : "",
             g->res.by ? g->res.by->name : "", smtpd_env_name(s),
             smtpd_env_addr(s), s->sender, to, size, s->qid,
             (long long)(smtpd_delay(s) * 1000 + 0.5));
}

/* smtpd_deliver_split - the message in data (taken over), one copy per
 * group of recipients, all queued or none; the client gets one reply. */
static void
smtpd_deliver_split(struct smtpd_session *s, struct buf *data)
{
    struct smtpd_group *g;
    const char **ids = NULL, *reply = NULL;
    char queued[200];
    size_t i, n, nids = 0, used, size = data->len;

    if (s->srv->queue == NULL) {
        smtpd_reply_id(s, "451 4.3.0 Error: the queue is not running");
        return;
    }
    if ((g = calloc(s->nrcpts, sizeof(*g))) == NULL ||
        (ids = calloc(s->nrcpts, sizeof(*ids))) == NULL) {
        free(g);
        log_error(s->qid, "out of memory");
        smtpd_reply_id(s, "451 4.3.0 Error: out of memory");
        return;
    }
    n = smtpd_split_groups(s, g);
    for (i = 0; i < n; i++)
        log_info(s->qid, "split: %s as %s (%zu recipient%s)",
                 g[i].name[0] ? g[i].name : "-", g[i].qid, g[i].nrcpts,
                 g[i].nrcpts == 1 ? "" : "s");
    for (i = 0; i < n && reply == NULL; i++) {
        struct buf copy;

        /* the last group takes data over; the others run on a copy */
        buf_init(&copy, 0);
        if (i + 1 < n && buf_append(&copy, data->data, data->len, &s->e) < 0) {
            log_error(g[i].qid, "%s", s->e.text);
            reply = "451 4.3.0 Error: out of memory";
            g[i].tag = "TempFailed";
        } else if (smtpd_split_run(s, &g[i], i + 1 < n ? &copy : data,
                                   &reply) == 0) {
            reply = NULL;
            if (g[i].staged)
                ids[nids++] = g[i].qid;
        }
        buf_fini(&copy);
    }
    if (reply == NULL && nids > 0) {
        err_clear(&s->e);
        if (queue_publish(s->srv->queue, ids, nids, &s->e) < 0) {
            log_error(s->qid, "queue file write error: %s", s->e.text);
            reply = queue_commit_reply(&s->e);
        }
        nids = 0; /* published, or removed by queue_publish */
    }
    if (reply != NULL) {
        for (i = 0; i < nids; i++)
            queue_unstage(s->srv->queue, ids[i]);
        log_info(s->qid, "reject: END-OF-MESSAGE: %s; from=<%s>", reply,
                 s->sender);
        smtpd_reply_id(s, reply);
        for (i = 0; i < n; i++) /* the groups not run log no summary */
            if (g[i].staged)
                g[i].tag = "TempFailed";
    } else {
        used = 0;
        queued[0] = '\0';
        for (i = 0; i < n; i++)
            if (g[i].staged && used < sizeof(queued)) {
                int w = snprintf(queued + used, sizeof(queued) - used, "%s%s",
                                 used ? " " : "", g[i].qid);

                if (w > 0)
                    used += (size_t)w;
            }
        smtpd_reply(s, "250 2.0.0 Ok: queued as %s",
                    queued[0] ? queued : s->qid);
    }
    for (i = 0; i < n; i++) {
        if (g[i].tag != NULL)
            smtpd_split_summary(s, &g[i], size);
        chain_result_fini(&g[i].res);
    }
    free(ids);
    free(g);
}
/* ---- end encrypt */

/* smtpd_deliver - run the chain on data and hand the result on; the
 * reply for the client goes out through smtpd_reply, and the summary
 * line is logged once the message's fate is known. The message takes
 * data's octets over (data is left empty), and what goes to the queue or
 * the next hop is msg_iov(): the received octets, the fields the chain
 * changed and the body, as they are, so the message is never copied
 * whole on its way out. */
void
smtpd_deliver(struct smtpd_session *s, struct buf *data)
{
    struct chain_result res;
    struct chain_opts opts;
    struct step_in in;
    struct msg *m = NULL;
    struct iovec *iov = NULL;
    const char *tag = NULL, *sent;
    char queued_as[64] = "";
    size_t len = data->len, niov;

    /* ---- encrypt: recipients in more than one group */
    if (s->rt->queue_mode && smtpd_split_wanted(s)) {
        smtpd_deliver_split(s, data);
        return;
    }
    /* ---- end encrypt */
    memset(&res, 0, sizeof(res));
    memset(&opts, 0, sizeof(opts));
    /* A quarantined message is kept as its stage received it, so that a
     * release resumes the chain after that stage (quarantine.h). */
    opts.undo_hold = 1;
    if ((m = smtpd_msg_new(s)) == NULL)
        goto tempfail;
    smtpd_step_in(s, data, &opts, &in);

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
        tag = smtpd_quarantine(s, m, &res);
        goto out;
    }

    niov = msg_iov(m, NULL, 0);
    if ((iov = calloc(niov ? niov : 1, sizeof(*iov))) == NULL) {
        err_nomem(&s->e);
        goto tempfail;
    }
    niov = msg_iov(m, iov, niov);
    if (s->rt->queue_mode) {
        tag = smtpd_enqueue(s, msg_env(m), iov, niov, msg_size(m)) == 0
                  ? "Queued"
                  : "TempFailed";
        goto out;
    }
    if ((sent = smtpd_through(s, m, iov, niov, queued_as,
                              sizeof(queued_as))) == NULL)
        goto tempfail;
    tag = sent;
    goto out;

tempfail:
    log_error(s->qid, "%s", s->e.text[0] ? s->e.text : "internal error");
    smtpd_reply_id(s, "451 4.3.0 Error: queue file write error");
    if (tag != NULL)
        tag = "TempFailed";
out:
    if (tag != NULL)
        smtpd_log_summary(s, &res, len, tag, queued_as);
    free(iov);
    chain_result_fini(&res);
    msg_free(m);
}
