/*
 * milterd_eom - the end of message in the milter front end: the step,
 * the verdict and the reply
 *
 * At end of message the block the session gathered becomes a struct msg
 * without a copy (msg_adopt; frontend MSG_FE_MILTER, envelope from the
 * events and macros) and the chain runs (step_run, chain/step.h). The
 * field names the MTA sent are compared with what msg_parse() made of
 * the block: if they differ, the MTA's header cannot be addressed
 * reliably and the message is refused.
 *
 * Verdicts: reject and tempfail become smfi_setreply with the stage's
 * code and enhanced code and SMFIS_REJECT or SMFIS_TEMPFAIL; discard
 * SMFIS_DISCARD; quarantine replays the edits and calls smfi_quarantine
 * with the reason (Postfix puts the message on hold). A stage error has
 * become its on_error policy in chain_run(); anything that goes wrong
 * here (memory, an MTA request refused) answers tempfail, never accept.
 * Whatever the answer, the transaction ends here (milterd_reset).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "chain/chain.h"
#include "chain/step.h"
#include "util/log.h"
#include "milterd/milterd_int.h"

/* milterd_reply - give the MTA an SMTP reply "DDD [X.Y.Z] text"; the
 * first digit must be want ('4' or '5') or a default is used. libmilter
 * and Sendmail take the text as a format: '%' is doubled. */
static void
milterd_reply(struct milterd_session *s, const char *reply, char want)
{
    char rcode[4], xcode[32], text[VERDICT_REPLY_MAX * 2];
    const char *p = reply, *x;
    size_t i, j, n;

    if (p == NULL || p[0] != want || strspn(p, "0123456789") != 3 ||
        (p[3] != ' ' && p[3] != '\0'))
        p = want == '5' ? "550 5.7.1 Message rejected"
                        : "451 4.3.0 Temporary failure, try again later";
    memcpy(rcode, p, 3);
    rcode[3] = '\0';
    p += 3;
    while (*p == ' ')
        p++;
    xcode[0] = '\0';
    x = p;
    n = strcspn(x, " ");
    if (n > 4 && n < sizeof(xcode) && x[0] == want && x[1] == '.' &&
        strspn(x, "0123456789.") == n) {
        memcpy(xcode, x, n);
        xcode[n] = '\0';
        p = x + n;
        while (*p == ' ')
            p++;
    }
    for (i = j = 0; p[i] != '\0' && j + 2 < sizeof(text); i++) {
        if (p[i] == '\r' || p[i] == '\n')
            continue;
        if (p[i] == '%')
            text[j++] = '%';
        text[j++] = p[i];
    }
    text[j] = '\0';
    /* The queue id the log lines carry (the MTA's own): the sender's
     * bounce and the admin's log then meet. */
    if (s->qid[0] != '\0' && j + strlen(s->qid) + 6 < sizeof(text))
        snprintf(text + j, sizeof(text) - j, "%s(id %s)", j ? " " : "",
                 s->qid);
    if (s->ops->setreply(s->ctx, rcode, xcode[0] ? xcode : NULL,
                         text[0] ? text : NULL) < 0)
        log_warning(milterd_qid(s), "milter: the MTA refused the reply %s %s",
                    rcode, xcode);
}

/* milterd_env_rcpt - the i-th recipient of the envelope arg, for
 * step_log_rcpts(). */
static const char *
milterd_env_rcpt(const void *arg, size_t i)
{
    const struct msg_env *env = arg;

    return env->rcpts[i].addr;
}

/* milterd_log_summary - the one line per message in amavisd-new's
 * habit (see smtpd.c), with what the MTA was told to do in tag. */
static void
milterd_log_summary(struct milterd_session *s, const struct chain_result *res,
                    const char *tag)
{
    const struct msg_env *env = msg_env(s->m);
    char words[200], to[1024];

    chain_summary(res, words, sizeof(words));
    step_log_rcpts(to, sizeof(to), env->nrcpts, milterd_env_rcpt, env);
    log_info(milterd_qid(s),
             "%s {%s}%s%s, client=%s[%s], from=<%s>, to=%s, size=%zu", words,
             tag, res->by ? ", by=" : "", res->by ? res->by->name : "",
             env->client_name ? env->client_name : "unknown",
             env->client_addr ? env->client_addr : "unknown",
             env->sender ? env->sender : "", to, s->data.len);
}

static enum milterd_status
milterd_tempfail(struct milterd_session *s, const char *reply)
{
    milterd_reply(s, reply, '4');
    return MILTERD_TEMPFAIL;
}

/* --------------------------------------------------- end of message */

/* milterd_check_fields - the fields msg_parse() found are the MTA's. */
static int
milterd_check_fields(const struct milterd_session *s, const struct msg *m)
{
    size_t i;
    const char *name;

    if (msg_header_count(m) != s->nnames)
        return -1;
    for (i = 0; i < s->nnames; i++)
        if (msg_header_at(m, i, &name, NULL, NULL) < 0 ||
            strcmp(name, s->names[i]) != 0)
            return -1;
    return 0;
}

static enum milterd_status
milterd_size(struct milterd_session *s)
{
    const char *what = s->nnames >= s->cf->limits.header_count &&
                               s->cf->limits.header_count != 0
                           ? "header_limit"
                           : "message_size_limit";

    switch (s->size_action) {
    case MILTERD_SIZE_REJECT:
        log_info(milterd_qid(s),
                 "milter-reject: END-OF-MESSAGE: over %s: "
                 "552 5.3.4",
                 what);
        milterd_reply(s, "552 5.3.4 Message size exceeds fixed limit", '5');
        return MILTERD_REJECT;
    case MILTERD_SIZE_ACCEPT:
        log_warning(milterd_qid(s),
                    "milter: over %s: passed on UNSCANNED "
                    "(milter_size_action = accept)",
                    what);
        return MILTERD_CONTINUE;
    case MILTERD_SIZE_TEMPFAIL:
        break;
    }
    log_info(milterd_qid(s),
             "milter-tempfail: END-OF-MESSAGE: over %s: "
             "452 4.3.4",
             what);
    return milterd_tempfail(s, "452 4.3.4 Message too big for the content "
                               "filter");
}

/* milterd_prepare - the step's preparation (chain/step.h): the fields
 * must be the MTA's (else 554, refused), then the "from=" line. */
static int
milterd_prepare(void *arg, struct msg *m, size_t size, struct err *e)
{
    struct milterd_session *s = arg;
    const struct msg_env *env;

    (void)e;
    if (milterd_check_fields(s, m) < 0) {
        log_info(milterd_qid(s), "milter-reject: END-OF-MESSAGE: a header "
                                 "field the MTA sent is not a valid field");
        milterd_reply(s, "554 5.6.0 Malformed header field", '5');
        return 1;
    }
    env = msg_env(m);
    log_info(milterd_qid(s), "milter: from=<%s>, size=%zu, nrcpt=%zu%s%s",
             env->sender ? env->sender : "", size, env->nrcpts,
             s->auth_user ? ", sasl_username=" : "",
             s->auth_user ? s->auth_user : "");
    return 0;
}

/* milterd_running_chain - the step's chain starts (on) and ends: the
 * progress thread may send notices meanwhile. */
static void
milterd_running_chain(void *arg, int on)
{
    if (on)
        milterd_busy_enter(arg);
    else
        milterd_busy_leave(arg);
}

enum milterd_status
milterd_eom(struct milterd_session *s)
{
    struct chain_result res;
    enum milterd_status st = MILTERD_TEMPFAIL;
    enum step_outcome outcome;
    struct step_in in;
    unsigned nops = 0;
    int body = 0, ran = 0;
    struct err e;

    memset(&res, 0, sizeof(res));
    err_clear(&e);
    if (milterd_inflight_enter(s) < 0) {
        log_info(milterd_qid(s), "milter-tempfail: END-OF-MESSAGE: "
                                 "relaychaind is stopping");
        st = milterd_tempfail(s, "451 4.3.2 Error: the content filter is "
                                 "stopping, try again later");
        milterd_reset(s);
        return st;
    }
    if (s->broken || s->m == NULL) {
        log_error(milterd_qid(s), "milter: %s",
                  s->m == NULL ? "end of message outside a transaction"
                               : s->broken_why);
        st = milterd_tempfail(s, "451 4.3.0 Error: internal error in the "
                                 "content filter");
        goto out;
    }
    if (s->over) {
        st = milterd_size(s);
        goto out;
    }
    if (s->mem_over) {
        log_info(milterd_qid(s), "milter-tempfail: END-OF-MESSAGE: over "
                                 "smtpd_memory_limit: 452 4.3.1");
        st = milterd_tempfail(s, "452 4.3.1 Insufficient system resources");
        goto out;
    }
    milterd_eoh(s);
    memset(&in, 0, sizeof(in));
    in.cf = s->cf;
    in.log_qid = milterd_qid(s);
    in.qid = s->qid[0] ? s->qid : NULL;
    in.client_addr = s->client_addr;
    in.client_name = s->client_name;
    in.helo = s->helo;
    in.tls = s->tls_version != NULL;
    in.auth_user = s->auth_user;
    in.internal = cidr_list_contains(s->mynetworks, s->client_addr);
    in.daemon_name = s->daemon_name;
    /* The message takes the block over: no second copy. */
    in.data = &s->data;
    in.prepare = milterd_prepare;
    in.running = milterd_running_chain;
    in.arg = s;
    in.log_tag = "milter-";
    in.log_where = "END-OF-MESSAGE: ";

    outcome = step_run(&in, s->m, &res, &e);
    ran = outcome >= STEP_REJECT;
    switch (outcome) {
    case STEP_ERROR:
        goto internal;
    case STEP_TOO_BIG:
        s->over = 1;
        st = milterd_size(s);
        goto out;
    case STEP_REFUSED:
        st = MILTERD_REJECT;
        goto out;
    case STEP_REJECT:
        milterd_reply(s, res.verdict.reply, '5');
        st = MILTERD_REJECT;
        goto out;
    case STEP_TEMPFAIL:
        st = milterd_tempfail(s, res.verdict.reply);
        goto out;
    case STEP_DISCARD:
    case STEP_NO_RCPTS:
        st = MILTERD_DISCARD;
        goto out;
    case STEP_QUARANTINE:
    case STEP_CONTINUE:
        break;
    }
    if (milterd_replay(s, s->m, &nops, &body, &e) < 0)
        goto internal;
    if (res.verdict.kind == VERDICT_QUARANTINE) {
        char reason[VERDICT_NOTE_MAX + 64];

        snprintf(reason, sizeof(reason), "relaychain %s%s%s",
                 res.by ? res.by->name : "chain",
                 res.verdict.note[0] ? ": " : "", res.verdict.note);
        if (s->ops->quarantine(s->ctx, reason) < 0) {
            milterd_mta_failed(&e, "quarantine the message", NULL);
            goto internal;
        }
        log_info(milterd_qid(s), "milter-hold: END-OF-MESSAGE: %s", reason);
    }
    log_info(milterd_qid(s), "milter: continue, %u edit request(s)%s", nops,
             body ? ", body replaced" : "");
    st = MILTERD_CONTINUE;
    goto out;

internal:
    log_error(milterd_qid(s), "milter: %s",
              e.text[0] ? e.text : "internal error");
    st = milterd_tempfail(s, "451 4.3.0 Error: internal error in the "
                             "content filter");
out:
    if (ran)
        milterd_log_summary(s, &res,
                            st == MILTERD_REJECT     ? "Rejected"
                            : st == MILTERD_DISCARD  ? "Discarded"
                            : st == MILTERD_TEMPFAIL ? "TempFailed"
                            : res.verdict.kind == VERDICT_QUARANTINE
                                ? "Held"
                                : "Accepted");
    chain_result_fini(&res);
    milterd_reset(s);
    milterd_inflight_leave(s);
    return st;
}
