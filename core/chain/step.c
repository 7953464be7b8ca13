/*
 * step - one message through the chain, as both front ends take it
 *
 * The order is the front ends' own, kept exactly: envelope, the octets
 * taken over (no copy) and parsed, prepare, the chain between the two
 * running() calls, then the verdict and the empty-recipient rule. A
 * held message goes through that rule only when it keeps the chain's
 * edits (no undo_hold): then it is what the front end passes on, and a
 * message with no recipient left cannot be passed on. Errors are not
 * logged here: each front end logs them in its words.
 */
#include "config.h"

#include <stdio.h>

#include "chain/step.h"
#include "util/log.h"
#include "util/metrics.h"

static enum step_outcome
step_run_chain(const struct step_in *in, struct msg *m,
               struct chain_result *res, struct err *e)
{
    const char *by, *tag = in->log_tag, *where = in->log_where;
    size_t size = in->data->len;
    char *raw;
    int rc;

    if (msg_env_set(m, in->qid, in->client_addr, in->client_name, in->helo,
                    in->tls, in->auth_user, e) < 0 ||
        msg_env_origin(m, in->internal, in->daemon_name, e) < 0)
        return STEP_ERROR;
    if ((raw = buf_steal(in->data, NULL)) == NULL) {
        err_nomem(e);
        return STEP_ERROR;
    }
    if (msg_adopt(m, raw, size, e) < 0)
        return e->code == ERR_LIMIT ? STEP_TOO_BIG : STEP_ERROR;
    if (in->prepare != NULL && (rc = in->prepare(in->arg, m, size, e)) != 0)
        return rc > 0 ? STEP_REFUSED : STEP_ERROR;

    if (in->running != NULL)
        in->running(in->arg, 1);
    rc = chain_run_opts(in->cf->chain, m, in->opts, res, e);
    if (in->running != NULL)
        in->running(in->arg, 0);
    if (rc < 0)
        return STEP_ERROR;

    by = res->by ? res->by->name : "chain";
    switch (res->verdict.kind) {
    case VERDICT_REJECT:
    case VERDICT_TEMPFAIL:
        log_info(in->log_qid, "%s%s: %s%s: %s", tag,
                 verdict_kind_name(res->verdict.kind), where, by,
                 res->verdict.reply);
        return res->verdict.kind == VERDICT_REJECT ? STEP_REJECT
                                                   : STEP_TEMPFAIL;
    case VERDICT_DISCARD:
        log_info(in->log_qid, "%sdiscard: %s%s%s%s", tag, where, by,
                 res->verdict.note[0] ? ": " : "", res->verdict.note);
        return STEP_DISCARD;
    case VERDICT_QUARANTINE:
        if (in->opts != NULL && in->opts->undo_hold)
            return STEP_QUARANTINE;
        break;
    case VERDICT_CONTINUE:
        break;
    }
    if (msg_env(m)->nrcpts == 0) {
        log_info(in->log_qid, "%sdiscard: %sthe chain removed every recipient",
                 tag, where);
        return STEP_NO_RCPTS;
    }
    return res->verdict.kind == VERDICT_QUARANTINE ? STEP_QUARANTINE
                                                   : STEP_CONTINUE;
}

/* ---- http: every message a front end finished, by its outcome, for
 * /metrics (util/metrics). A message split into recipient groups is run
 * once per group and counted so. */
static void
step_count(enum msg_frontend fe, enum step_outcome o)
{
    enum metrics_outcome mo;

    switch (o) {
    case STEP_CONTINUE:
        mo = METRICS_MSG_PASSED;
        break;
    case STEP_TOO_BIG:
    case STEP_REFUSED:
    case STEP_REJECT:
        mo = METRICS_MSG_REJECTED;
        break;
    case STEP_DISCARD:
    case STEP_NO_RCPTS:
        mo = METRICS_MSG_DISCARDED;
        break;
    case STEP_QUARANTINE:
        mo = METRICS_MSG_QUARANTINED;
        break;
    case STEP_ERROR:
    case STEP_TEMPFAIL:
    default:
        mo = METRICS_MSG_TEMPFAILED;
        break;
    }
    if (fe == MSG_FE_SMTP)
        metrics_message(METRICS_FE_SMTPD, mo);
    else if (fe == MSG_FE_MILTER)
        metrics_message(METRICS_FE_MILTER, mo);
}

enum step_outcome
step_run(const struct step_in *in, struct msg *m, struct chain_result *res,
         struct err *e)
{
    enum step_outcome o = step_run_chain(in, m, res, e);

    step_count(msg_env(m)->frontend, o);
    return o;
}

void
step_log_rcpts(char *out, size_t n, size_t count,
               const char *(*addr)(const void *arg, size_t i), const void *arg)
{
    size_t i, used = 0;

    out[0] = '\0';
    for (i = 0; i < count && used < n; i++) {
        int k;

        if (i == 8 && count > 9) {
            snprintf(out + used, n - used, ",...(%zu more)", count - i);
            break;
        }
        k = snprintf(out + used, n - used, "%s<%s>", i ? "," : "",
                     addr(arg, i));
        if (k < 0)
            break;
        used += (size_t)k;
    }
}
