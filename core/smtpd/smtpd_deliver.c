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
    qm.client_name = smtpd_env_name(s);
    qm.helo = smtpd_env_helo(s);
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
                         res->by ? res->by->name : NULL, &s->e) < 0) {
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
