/*
 * notice - the chain's notice service, over the next-hop client
 *
 * See notice.h. The notifier owns its smtpc pool and a copy of the EHLO
 * name the pool's settings point to. A connection is put back for reuse
 * only after a transaction that went through.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/notice.h"
#include "net/smtpc.h"

struct stage_notifier {
    struct smtpc_pool *pool;
    char *helo;
};

struct stage_notifier *
notice_new(const char *next_hop, const char *helo, struct err *e)
{
    struct stage_notifier *n;
    struct smtpc_settings ss;

    if ((n = calloc(1, sizeof(*n))) == NULL ||
        (n->helo = strdup(helo)) == NULL) {
        free(n);
        err_nomem(e);
        return NULL;
    }
    memset(&ss, 0, sizeof(ss));
    ss.next_hop = next_hop;
    ss.helo_name = n->helo;
    ss.tls = SMTPC_TLS_MAY;
    ss.connect_timeout_ms = 10000;
    ss.timeout_ms = 30000;
    ss.idle_timeout_ms = 10000;
    ss.max_idle = 1;
    if ((n->pool = smtpc_pool_new(&ss, e)) == NULL) {
        notice_free(n);
        return NULL;
    }
    return n;
}

int
notice_send(struct stage_notifier *n, const char *rcpt, const struct buf *msg,
            struct stage_reply *out)
{
    struct smtpc_reply r;
    struct smtpc_conn *cn;
    struct err e;
    int ok = 0;

    err_clear(&e);
    memset(&r, 0, sizeof(r));
    if ((cn = smtpc_get(n->pool, &r, &e)) == NULL) {
        out->code = r.code;
        snprintf(out->text, sizeof(out->text), "%s", r.text);
        return -1;
    }
    if (smtpc_mail(cn, NULL, "", NULL, &r, &e) == 0 && r.code / 100 == 2 &&
        smtpc_rcpt(cn, rcpt, NULL, &r, &e) == 0 && r.code / 100 == 2 &&
        smtpc_data(cn, msg->data, msg->len, &r, &e) == 0 && r.code / 100 == 2)
        ok = 1;
    smtpc_put(n->pool, cn, ok);
    out->code = r.code;
    snprintf(out->text, sizeof(out->text), "%s", r.code ? r.text : e.text);
    return ok ? 0 : -1;
}

void
notice_free(struct stage_notifier *n)
{
    if (n == NULL)
        return;
    smtpc_pool_free(n->pool);
    free(n->helo);
    free(n);
}

void
notice_env(struct stage_env *env)
{
    env->notifier_new = notice_new;
    env->notify = notice_send;
    env->notifier_free = notice_free;
}
