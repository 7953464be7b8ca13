/*
 * queue_deliver - one delivery attempt of a queued message
 *
 * queue_attempt() runs one attempt of queue/QID for a worker: open
 * queue/QID, flock() it without waiting (an administration command that
 * holds it delays the attempt by a second), check that the name still
 * names the locked file, read and validate the whole file (a bad one is
 * moved to corrupt/), and deliver the pending recipients, grouped by
 * route, one SMTP transaction per route, less those whose domain is
 * busy or paused (queue_dest.c). Per recipient: 2xx delivered,
 * 5xx bounced, 4xx deferred, or bounced once the message is older than
 * maximal_queue_lifetime. The reply that counts is the one to RCPT when
 * it refused, else the one to the message: with SMTP one for all, with
 * LMTP each recipient's own (RFC 2033, smtpc_data_rcpts), so a mailbox
 * over quota defers or bounces its owner alone, with its own words in
 * the report. Tracked mail with verp_domain set goes one recipient per
 * transaction with the envelope sender bounces+TOKEN@verp_domain
 * (events.h). When the connection is lost part way through the LMTP
 * replies, the recipients whose reply came keep it and the rest are
 * deferred: they may have got the message, and the retry repeats it
 * for them. Notifications are committed as new queue files before the
 * recipients they report are marked, so a crash can repeat a
 * notification but never lose one. When nothing is pending the file is
 * removed; otherwise the marks are made durable with fdatasync() and the
 * entry goes back into the heap after a backoff of the message's age,
 * clamped between minimal_backoff_time and maximal_backoff_time (as in
 * Postfix: exponential, with no state to lose in a restart).
 *
 * A route whose connection failed is left alone ("delivery temporarily
 * suspended") for minimal_backoff_time, or until a flush, so that a
 * backlog behind a dead next hop costs no connection attempts.
 *
 * The attempt holds a reference to the settings current when it starts
 * (queue_route.c), so a reload never changes it half way. Nothing here
 * exits or returns an error: what goes wrong is logged under the queue
 * id, and the verdict says whether the entry is tried again and when.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/esmtp.h"
#include "util/fdio.h"
#include "util/qid.h"
#include "util/log.h"
#include "queue/queue_int.h"
#include "net/smtpc.h"

#define QUEUE_RELAY_MAX 300
#define QUEUE_DEAD_MAX_MS (60 * 1000LL) /* longest suspension of a route */
#define QUEUE_LOCKED_RETRY_MS 1000

/* ----------------------------------------------------------- delivery */

struct queue_outcome {
    int code;
    char text[512];
    char relay[QUEUE_RELAY_MAX];
    long long conn_us, xfer_us;
    int hop_dsn;     /* the next hop takes NOTIFY itself */
    char reply[528]; /* "550 5.1.1 text", for a notification */
};

struct queue_job {
    struct queue *q;
    struct queue_settings *set; /* held for the whole attempt */
    const char *id;
    struct queue_file qf;
    struct queue_outcome *out; /* per recipient */
    size_t *route;             /* per recipient */
    long long start_us;
    long long hold_ms; /* queue_dest.c: a destination free again then; 0 */
    size_t nheld;      /* recipients that waited for their destination */
    int verp; /* ---- verp: one transaction per recipient, VERP sender */
};

static void
queue_outcome_set(struct queue_outcome *o, const struct smtpc_reply *r,
                  const char *relay)
{
    o->code = r->code;
    snprintf(o->text, sizeof(o->text), "%s", r->text);
    snprintf(o->relay, sizeof(o->relay), "%s", relay);
}

/* queue_suspend - the route failed to connect: no attempts on it for a
 * while; returns nothing, logs nothing (the recipients' lines say it). */
static void
queue_suspend(struct queue *q, const struct queue_settings *set,
              struct queue_route *rt, const struct smtpc_reply *r)
{
    long long d = set->min_backoff_ms < QUEUE_DEAD_MAX_MS ? set->min_backoff_ms
                                                          : QUEUE_DEAD_MAX_MS;

    pthread_mutex_lock(&q->lock);
    rt->dead_until_ms = queue_now_ms() + d;
    rt->dead_code = r->code;
    snprintf(rt->dead_why, sizeof(rt->dead_why), "%s", r->text);
    pthread_mutex_unlock(&q->lock);
}

/* queue_deliver_route - one transaction on route ri for the recipients
 * idx[0..n) of j; fills their outcomes. accepted and each are scratch
 * arrays of n entries or more: the recipients RCPT accepted and their
 * replies to the message. */
static void
queue_deliver_route(struct queue_job *j, size_t ri, const size_t *idx,
                    size_t n, size_t *accepted, struct smtpc_reply *each)
{
    static const char *const mail_keys[] = {"BODY", "SMTPUTF8", "RET", "ENVID",
                                            NULL};
    static const char *const rcpt_keys[] = {"NOTIFY", "ORCPT", NULL};
    struct queue *q = j->q;
    struct queue_route *rt = &j->set->routes[ri];
    const struct queue_file *qf = &j->qf;
    char params[1024], relay[QUEUE_RELAY_MAX];
    struct smtpc_reply r;
    struct smtpc_conn *c;
    struct msg_env env;
    long long t0 = queue_now_us(), t1;
    size_t i, k, nacc = 0;
    int rc, dead;
    struct err e;

    err_clear(&e);
    memset(&r, 0, sizeof(r));
    pthread_mutex_lock(&q->lock);
    dead = rt->dead_until_ms > queue_now_ms();
    if (dead) {
        size_t skip = strspn(rt->dead_why, "0123456789.");

        /* "4.4.1 Connection refused by ..." without its code */
        skip = rt->dead_why[skip] == ' ' ? skip + 1 : 0;
        r.code = rt->dead_code / 100 == 4 ? rt->dead_code : 451;
        snprintf(r.text, sizeof(r.text),
                 "4.4.1 delivery temporarily suspended: %.400s",
                 rt->dead_why + skip);
    }
    pthread_mutex_unlock(&q->lock);
    if (dead) {
        for (i = 0; i < n; i++)
            queue_outcome_set(&j->out[idx[i]], &r, "none");
        return;
    }
    c = smtpc_get(rt->pool, &r, &e);
    t1 = queue_now_us();
    if (c == NULL) {
        if (r.code == 0) {
            r.code = 451;
            snprintf(r.text, sizeof(r.text), "4.3.0 %.480s", e.text);
        }
        if (r.code / 100 == 4)
            queue_suspend(q, j->set, rt, &r);
        for (i = 0; i < n; i++) {
            queue_outcome_set(&j->out[idx[i]], &r, "none");
            j->out[idx[i]].conn_us = t1 - t0;
        }
        return;
    }
    snprintf(relay, sizeof(relay), "%s", smtpc_relay_name(c));
    memset(&env, 0, sizeof(env));
    env.frontend = MSG_FE_SMTP;
    env.qid = (char *)j->id;
    env.client_addr = (char *)qf->client_addr;
    env.client_name = (char *)qf->client_name;
    env.helo = (char *)qf->helo;
    esmtp_params_pick(qf->sender_params, mail_keys, params, sizeof(params));
    /* the size of what leaves; smtpc drops it where SIZE is not offered */
    k = strlen(params);
    snprintf(params + k, sizeof(params) - k, "%sSIZE=%zu", k ? " " : "",
             qf->len);
    /* ---- verp: the copy for one recipient leaves with its own sender */
    {
        char verp[320];
        const char *from = qf->sender;

        if (j->verp && n == 1 &&
            events_verp_sender(q->events, j->id, qf->stream, qf->auth_user,
                               qf->sender, qf->rcpts[idx[0]].addr, verp,
                               sizeof(verp)) == 1)
            from = verp;
        rc = smtpc_mail(c, &env, from, params, &r, &e);
    }
    /* ---- end verp */
    if (rc < 0 || r.code / 100 != 2) {
        if (r.code == 0) {
            r.code = 451;
            snprintf(r.text, sizeof(r.text), "4.4.2 lost connection with %s",
                     relay);
        }
        for (i = 0; i < n; i++) {
            queue_outcome_set(&j->out[idx[i]], &r, relay);
            j->out[idx[i]].conn_us = t1 - t0;
        }
        smtpc_put(rt->pool, c, rc == 0);
        return;
    }
    for (i = 0; i < n; i++) {
        const struct queue_file_rcpt *rp = &qf->rcpts[idx[i]];

        esmtp_params_pick(rp->params, rcpt_keys, params, sizeof(params));
        rc = smtpc_rcpt(c, rp->addr, params[0] ? params : NULL, &r, &e);
        if (rc < 0) {
            /* the connection broke: nobody got it */
            if (r.code == 0)
                r.code = 451;
            for (k = 0; k < n; k++)
                queue_outcome_set(&j->out[idx[k]], &r, relay);
            smtpc_put(rt->pool, c, 0);
            return;
        }
        queue_outcome_set(&j->out[idx[i]], &r, relay);
        j->out[idx[i]].conn_us = t1 - t0;
        if (r.code / 100 == 2)
            accepted[nacc++] = idx[i];
    }
    if (nacc == 0) {
        smtpc_put(rt->pool, c, 1);
        return;
    }
    /* with LMTP each recipient has its own reply to the message */
    rc = smtpc_data_rcpts(c, qf->data, qf->len, each, nacc, &r, &e);
    if (r.code == 0) {
        r.code = 451;
        snprintf(r.text, sizeof(r.text),
                 "4.4.2 lost connection with %s "
                 "while sending the message",
                 relay);
    }
    t0 = queue_now_us();
    for (i = 0; i < nacc; i++) {
        queue_outcome_set(&j->out[accepted[i]],
                          each[i].code != 0 ? &each[i] : &r, relay);
        j->out[accepted[i]].xfer_us = t0 - t1;
        j->out[accepted[i]].hop_dsn = smtpc_has_dsn(c);
    }
    smtpc_put(rt->pool, c, rc == 0);
}

#define QUEUE_DOMAIN_MAX 256

static void
queue_hold_until(struct queue_job *j, long long ms)
{
    if (j->hold_ms == 0 || ms < j->hold_ms)
        j->hold_ms = ms;
}

/* queue_deliver_dests - the recipients idx[0..n) of route ri, through
 * the destination limits (queue_dest.c): those whose domain is free go
 * in one transaction; a busy domain's wait without an outcome (code 0),
 * a paused one's are deferred with the reply that paused it. Then each
 * domain taken is given back with what its recipients were told. */
static void
queue_deliver_dests(struct queue_job *j, size_t ri, const size_t *idx,
                    size_t n, size_t *accepted, struct smtpc_reply *each)
{
    char(*dom)[QUEUE_DOMAIN_MAX] = NULL, why[QUEUE_DEST_WHY_MAX];
    int *took = NULL;
    size_t *go = NULL, ngo = 0, i, k, first;
    long long now = queue_now_ms(), free_ms;

    if ((dom = calloc(n, sizeof(*dom))) == NULL ||
        (took = calloc(n, sizeof(*took))) == NULL ||
        (go = calloc(n, sizeof(*go))) == NULL) {
        /* without the table: deliver as if there were no limits */
        free(dom);
        free(took);
        free(go);
        queue_deliver_route(j, ri, idx, n, accepted, each);
        return;
    }
    for (i = 0; i < n; i++) {
        struct queue_outcome *o = &j->out[idx[i]];

        queue_dest_domain(j->qf.rcpts[idx[i]].addr, dom[i], sizeof(dom[i]));
        for (first = 0; first < i; first++)
            if (strcmp(dom[first], dom[i]) == 0)
                break;
        if (first < i) {
            /* its domain's first recipient decided for it */
            took[i] = -1;
            if (took[first] == QUEUE_DEST_BUSY ||
                took[first] == QUEUE_DEST_PAUSED) {
                *o = j->out[idx[first]];
                j->nheld++;
            } else {
                go[ngo++] = idx[i];
            }
            continue;
        }
        took[i] = queue_dest_take(j->q, j->set, dom[i], now, &free_ms, why,
                                  sizeof(why));
        if (took[i] == QUEUE_DEST_BUSY) {
            o->code = 0;
            snprintf(o->text, sizeof(o->text),
                     "waiting for %s (destination concurrency or rate "
                     "limit)",
                     dom[i]);
        } else if (took[i] == QUEUE_DEST_PAUSED) {
            o->code = 450;
            snprintf(o->text, sizeof(o->text),
                     "4.7.0 delivery to %s temporarily suspended: %s", dom[i],
                     why);
        } else {
            go[ngo++] = idx[i];
            continue;
        }
        snprintf(o->relay, sizeof(o->relay), "none");
        queue_hold_until(j, free_ms);
        j->nheld++;
    }
    if (ngo > 0)
        queue_deliver_route(j, ri, go, ngo, accepted, each);
    for (i = 0; i < n; i++) {
        int throttle = 0, delivered = 0;
        const char *ttext = "";
        long long pause;

        if (took[i] != QUEUE_DEST_TAKEN)
            continue;
        for (k = i; k < n; k++) {
            const struct queue_outcome *o = &j->out[idx[k]];

            if (k != i && took[k] != -1)
                continue;
            if (strcmp(dom[k], dom[i]) != 0 || strcmp(o->relay, "none") == 0)
                continue;
            if (o->code / 100 == 2)
                delivered = 1;
            else if (throttle == 0 && queue_dest_throttles(o->code, o->text)) {
                throttle = o->code;
                ttext = o->text;
            }
        }
        now = queue_now_ms();
        pause = queue_dest_give(j->q, j->set, dom[i], now, 1, throttle, ttext,
                                delivered);
        if (pause > 0)
            queue_hold_until(j, now + pause);
    }
    free(dom);
    free(took);
    free(go);
}

/* queue_notice - commit a notification for list[0..n) of j; logs it. */
static int
queue_notice(struct queue_job *j, const char *action,
             const struct queue_dsn_rcpt *list, size_t n, const char *what)
{
    struct queue *q = j->q;
    struct queue_msg m;
    struct msg_rcpt rcpt;
    char id[QUEUE_ID_MAX];
    struct buf out;
    struct err e;
    long long now = queue_now_us();
    int tries, rc = -1;

    err_clear(&e);
    buf_init(&out, 0);
    if (queue_dsn_build(&j->qf, j->id, q->hostname, action, list, n, now,
                        j->qf.arrival_us + j->set->lifetime_ms * 1000, &out,
                        &e) < 0) {
        log_error(j->id, "cannot build the %s: %s", what, e.text);
        buf_fini(&out);
        return -1;
    }
    memset(&m, 0, sizeof(m));
    rcpt.addr = (char *)j->qf.sender;
    rcpt.params = NULL;
    m.arrival_us = now;
    m.client_addr = "127.0.0.1";
    m.client_name = "localhost";
    m.helo = q->hostname;
    m.sender = "";
    m.sender_params = "";
    m.rcpts = &rcpt;
    m.nrcpts = 1;
    m.orig = &rcpt;
    m.norig = 1;
    m.data = out.data;
    m.len = out.len;
    for (tries = 0; tries < 3 && rc < 0; tries++) {
        qid_new(&q->seq, id, sizeof(id));
        m.qid = id;
        err_clear(&e);
        rc = queue_write(q, &m, &e);
        if (rc < 0 && e.sys_errno != EEXIST)
            break;
    }
    if (rc == 0 && q->events != NULL) {
        /* ---- events: a notification is mail the relay received too */
        struct iovec one = {out.data, out.len};
        char msgid[512];
        struct events_rec r;

        events_msgid(&one, 1, msgid, sizeof(msgid));
        memset(&r, 0, sizeof(r));
        r.type = EVENTS_RECEIVED;
        r.qid = id;
        r.msgid = msgid;
        r.sender = "";
        r.rcpt = j->qf.sender;
        r.size = m.len;
        r.relay = "127.0.0.1";
        r.text = what;
        events_emit(q->events, &r);
    }
    buf_fini(&out);
    if (rc < 0) {
        log_error(j->id, "cannot queue the %s: %s", what, e.text);
        return -1;
    }
    log_info(j->id, "sender %s: %s", what, id);
    log_info(id, "from=<>, size=%zu, nrcpt=1 (queue active)", m.len);
    queue_schedule(q, id, queue_now_ms());
    return 0;
}

static void
queue_defer_note(struct queue_job *j, const char *status)
{
    struct buf b;
    struct err e;
    size_t i;
    int fd;

    buf_init(&b, 0);
    for (i = 0; i < j->qf.nrcpts; i++)
        if (status[i] == QUEUE_RCPT_PENDING &&
            (j->out[i].code != 0
                 ? buf_printf(&b, &e, "%s\t%d %s\n", j->qf.rcpts[i].addr,
                              j->out[i].code, j->out[i].text)
                 : buf_printf(&b, &e, "%s\t%s\n", j->qf.rcpts[i].addr,
                              j->out[i].text)) < 0)
            break;
    fd = openat(j->q->defer_fd, j->id,
                O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd >= 0) {
        (void)fdio_write_all(fd, b.data ? b.data : "", b.len);
        close(fd);
    }
    buf_fini(&b);
}

static int
queue_mark(int fd, size_t off, char value)
{
    return pwrite(fd, &value, 1, (off_t)off) == 1 ? 0 : -1;
}

/* queue_finish - decide each recipient's fate from its outcome, send the
 * notifications, mark the file, and say whether it stays. */
static int
queue_finish(struct queue_job *j, int fd, long long *next_ms)
{
    struct queue *q = j->q;
    const struct queue_settings *set = j->set;
    struct queue_file *qf = &j->qf;
    struct queue_dsn_rcpt *failed = NULL, *relayed = NULL, *delayed = NULL;
    size_t nfailed = 0, nrelayed = 0, ndelayed = 0, i, pending = 0;
    long long now = queue_now_us(), age_ms = (now - qf->arrival_us) / 1000;
    int expired = age_ms >= set->lifetime_ms, changed = 0, verdict;
    char *status = NULL;
    struct stat st;
    /* ---- events: what each recipient's outcome is, as data */
    char ev_msgid[512] = "", ev_stream[256] = "";
    long long ev_next_us = 0;

    if (q->events != NULL) {
        struct iovec one = {(void *)qf->data, qf->len};
        long long b = age_ms < set->min_backoff_ms   ? set->min_backoff_ms
                      : age_ms > set->max_backoff_ms ? set->max_backoff_ms
                                                     : age_ms;

        events_msgid(&one, 1, ev_msgid, sizeof(ev_msgid));
        events_stream(q->events, qf->stream, qf->auth_user, qf->sender,
                      ev_stream, sizeof(ev_stream));
        ev_next_us = now + b * 1000;
    }

    if ((status = malloc(qf->nrcpts + 1)) == NULL ||
        (failed = calloc(qf->nrcpts, sizeof(*failed))) == NULL ||
        (relayed = calloc(qf->nrcpts, sizeof(*relayed))) == NULL ||
        (delayed = calloc(qf->nrcpts, sizeof(*delayed))) == NULL) {
        /* the outcomes are lost: try again, perhaps twice for some */
        log_error(j->id, "out of memory after a delivery attempt");
        verdict = QUEUE_RETRY;
        *next_ms = queue_now_ms() + set->min_backoff_ms;
        goto out;
    }
    for (i = 0; i < qf->nrcpts; i++) {
        struct queue_outcome *o = &j->out[i];
        const char *st_name, *note = "";
        char dsn[16], lifetime[64] = "";
        int cls = o->code / 100;

        status[i] = qf->rcpts[i].status;
        if (status[i] != QUEUE_RCPT_PENDING)
            continue;
        if (o->code == 0 && !expired) {
            /* its domain was busy: not tried, nothing to say */
            pending++;
            continue;
        }
        if (o->code == 0) {
            /* expired while it waited: bounced with what it waited for */
            o->code = 451;
            memmove(o->text + 6, o->text, sizeof(o->text) - 6);
            memcpy(o->text, "4.4.5 ", 6);
            o->text[sizeof(o->text) - 1] = '\0';
        }
        snprintf(o->reply, sizeof(o->reply), "%d %s", o->code, o->text);
        if (cls == 2) {
            st_name = "sent";
            status[i] = QUEUE_RCPT_DONE;
            if (esmtp_notify_wants(qf->rcpts[i].params, "SUCCESS") &&
                !o->hop_dsn)
                relayed[nrelayed++] =
                    (struct queue_dsn_rcpt){i, o->reply, o->relay};
        } else if (cls == 5 || expired) {
            st_name = "bounced";
            status[i] = QUEUE_RCPT_BOUNCED;
            if (cls != 5) {
                snprintf(lifetime, sizeof(lifetime),
                         "; message expired after %llds in the queue",
                         age_ms / 1000);
                note = lifetime;
            }
            if (esmtp_notify_wants(qf->rcpts[i].params, "FAILURE"))
                failed[nfailed++] =
                    (struct queue_dsn_rcpt){i, o->reply, o->relay};
        } else {
            st_name = "deferred";
            pending++;
            if (esmtp_notify_wants(qf->rcpts[i].params, "DELAY"))
                delayed[ndelayed++] =
                    (struct queue_dsn_rcpt){i, o->reply, o->relay};
        }
        queue_dsn_code(o->code, o->text, dsn, sizeof(dsn));
        log_info(j->id,
                 "to=<%s>, relay=%s, delay=%.2f, delays=%.2f/%.2f/%.2f/%.2f, "
                 "dsn=%s, status=%s (%d %s%s)",
                 qf->rcpts[i].addr, o->relay,
                 (double)(now - qf->arrival_us) / 1e6,
                 (double)(qf->queued_us - qf->arrival_us) / 1e6,
                 (double)(j->start_us - qf->queued_us) / 1e6,
                 (double)o->conn_us / 1e6, (double)o->xfer_us / 1e6, dsn,
                 st_name, o->code, o->text, note);
        if (q->events != NULL) {
            struct events_rec r;

            memset(&r, 0, sizeof(r));
            r.type = cls == 2   ? EVENTS_DELIVERED
                     : cls == 5 ? EVENTS_BOUNCED
                     : expired  ? EVENTS_EXPIRED
                                : EVENTS_DEFERRED;
            r.qid = j->id;
            r.msgid = ev_msgid;
            r.sender = qf->sender;
            r.rcpt = qf->rcpts[i].addr;
            r.stream = ev_stream;
            r.size = qf->len;
            r.code = o->code;
            r.dsn = dsn;
            r.hard = cls == 5 && events_bounce_is_hard(o->code, dsn);
            r.next_us = r.type == EVENTS_DEFERRED ? ev_next_us : 0;
            r.relay = o->relay;
            r.text = o->text;
            events_emit(q->events, &r);
        }
    }
    if (fstat(fd, &st) == 0 && st.st_nlink == 0) {
        /* "relaychain queue delete" won while the attempt ran */
        log_info(j->id, "removed");
        verdict = QUEUE_DROP;
        goto out;
    }
    /* Notifications first, then the marks: a crash in between repeats
     * the notification, never loses it. A null sender gets none. */
    if (qf->sender[0] != '\0' && nfailed > 0 &&
        queue_notice(j, "failed", failed, nfailed,
                     "non-delivery notification") < 0) {
        for (i = 0; i < nfailed; i++) {
            status[failed[i].idx] = QUEUE_RCPT_PENDING;
            pending++;
        }
    }
    if (qf->sender[0] != '\0' && nrelayed > 0)
        (void)queue_notice(j, "relayed", relayed, nrelayed,
                           "delivery status notification");
    if (pending == 0) {
        if (unlinkat(q->queue_fd, j->id, 0) < 0 && errno != ENOENT)
            log_error(j->id, "cannot remove the queue file: %s",
                      strerror(errno));
        unlinkat(q->defer_fd, j->id, 0);
        log_info(j->id, "removed");
        verdict = QUEUE_DROP;
        goto out;
    }
    for (i = 0; i < qf->nrcpts; i++)
        if (status[i] != qf->rcpts[i].status) {
            if (queue_mark(fd, qf->rcpts[i].status_off, status[i]) < 0)
                log_error(j->id, "cannot mark <%s>: %s", qf->rcpts[i].addr,
                          strerror(errno));
            changed = 1;
        }
    if (changed && fdatasync(fd) < 0)
        log_error(j->id,
                  "fdatasync: %s: recipients done may be tried "
                  "again",
                  strerror(errno));
    if (set->warn_ms > 0 && qf->warned == '-' && age_ms >= set->warn_ms &&
        ndelayed > 0 && qf->sender[0] != '\0' &&
        queue_notice(j, "delayed", delayed, ndelayed, "delay notification") ==
            0 &&
        (queue_mark(fd, qf->warned_off, 'W') < 0 || fdatasync(fd) < 0))
        log_error(j->id, "cannot note the delay warning: %s", strerror(errno));
    queue_defer_note(j, status);
    {
        long long backoff = age_ms;

        if (backoff < set->min_backoff_ms)
            backoff = set->min_backoff_ms;
        if (backoff > set->max_backoff_ms)
            backoff = set->max_backoff_ms;
        *next_ms = queue_now_ms() + backoff;
        /* a destination is free again then: the message goes then, and
         * not before when it waits for nothing else */
        if (j->hold_ms > 0 && (j->hold_ms < *next_ms || pending == j->nheld))
            *next_ms = j->hold_ms;
    }
    verdict = QUEUE_RETRY;
out:
    free(status);
    free(failed);
    free(relayed);
    free(delayed);
    return verdict;
}

/* queue_attempt_with - one delivery attempt of queue/ID with the
 * settings set (held by the caller). */
static int
queue_attempt_with(struct queue *q, struct queue_settings *set, const char *id,
                   long long *next_ms)
{
    struct queue_job j;
    struct stat st, st2;
    struct buf raw;
    size_t *idx = NULL, *acc = NULL, i, r, n, pending = 0;
    struct smtpc_reply *each = NULL;
    int fd, verdict = QUEUE_RETRY;
    struct err e;

    err_clear(&e);
    *next_ms = queue_now_ms() + set->min_backoff_ms;
    if ((fd = openat(q->queue_fd, id, O_RDWR | O_CLOEXEC)) < 0) {
        if (errno == ENOENT)
            return QUEUE_DROP; /* delivered, deleted or on hold */
        log_error(id, "open %s/queue/%s: %s", q->dir, id, strerror(errno));
        return QUEUE_RETRY;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        /* an administration command has it */
        close(fd);
        *next_ms = queue_now_ms() + QUEUE_LOCKED_RETRY_MS;
        return QUEUE_RETRY;
    }
    /* the name must still name what we locked: hold/release move it */
    if (fstat(fd, &st) < 0 || fstatat(q->queue_fd, id, &st2, 0) < 0 ||
        st.st_ino != st2.st_ino || st.st_dev != st2.st_dev) {
        close(fd);
        return QUEUE_DROP;
    }
    memset(&j, 0, sizeof(j));
    j.q = q;
    j.set = set;
    j.id = id;
    j.start_us = queue_now_us();
    buf_init(&raw, q->file_max);
    if (queue_read_fd(fd, q->file_max, &raw, &e) < 0 ||
        queue_file_parse(raw.data ? raw.data : "", raw.len, 0, &j.qf, &e) <
            0) {
        if (e.code == ERR_NOMEM) {
            log_error(id, "out of memory reading the queue file");
            goto out;
        }
        if (renameat(q->queue_fd, id, q->corrupt_fd, id) < 0)
            log_error(id,
                      "corrupt queue file (%s), and cannot move it to "
                      "corrupt/: %s",
                      e.text, strerror(errno));
        else
            log_error(id, "corrupt queue file moved to %s/corrupt: %s", q->dir,
                      e.text);
        unlinkat(q->defer_fd, id, 0);
        verdict = QUEUE_DROP;
        goto out;
    }
    for (i = 0; i < j.qf.nrcpts; i++)
        if (j.qf.rcpts[i].status == QUEUE_RCPT_PENDING)
            pending++;
    if (pending == 0) {
        unlinkat(q->queue_fd, id, 0);
        unlinkat(q->defer_fd, id, 0);
        log_info(id, "removed");
        verdict = QUEUE_DROP;
        goto out;
    }
    if ((j.out = calloc(j.qf.nrcpts, sizeof(*j.out))) == NULL ||
        (j.route = calloc(j.qf.nrcpts, sizeof(*j.route))) == NULL ||
        (idx = calloc(j.qf.nrcpts, sizeof(*idx))) == NULL ||
        (acc = calloc(j.qf.nrcpts, sizeof(*acc))) == NULL ||
        (each = calloc(j.qf.nrcpts, sizeof(*each))) == NULL) {
        log_error(id, "out of memory for a delivery attempt");
        goto out;
    }
    for (i = 0; i < j.qf.nrcpts; i++)
        j.route[i] = queue_route_for(set, j.qf.rcpts[i].addr);
    /* ---- verp: tracked mail goes one recipient at a time */
    if (q->events != NULL) {
        char verp[320];

        j.verp = events_verp_sender(q->events, id, j.qf.stream, j.qf.auth_user,
                                    j.qf.sender, "", verp, sizeof(verp));
    }
    for (r = 0; r < set->nroutes; r++) {
        for (n = 0, i = 0; i < j.qf.nrcpts; i++)
            if (j.qf.rcpts[i].status == QUEUE_RCPT_PENDING && j.route[i] == r)
                idx[n++] = i;
        if (n > 0 && j.verp) { /* ---- verp: as Postfix's VERP does */
            for (i = 0; i < n; i++)
                queue_deliver_dests(&j, r, idx + i, 1, acc, each);
        } else if (n > 0) {
            queue_deliver_dests(&j, r, idx, n, acc, each);
        }
    }
    verdict = queue_finish(&j, fd, next_ms);
out:
    close(fd);
    free(idx);
    free(acc);
    free(each);
    free(j.out);
    free(j.route);
    queue_file_fini(&j.qf);
    buf_fini(&raw);
    return verdict;
}

/* queue_settings_hold - the current settings, with a reference. */
static struct queue_settings *
queue_settings_hold(struct queue *q)
{
    struct queue_settings *set;

    pthread_mutex_lock(&q->lock);
    set = q->set;
    atomic_fetch_add(&set->refs, 1);
    pthread_mutex_unlock(&q->lock);
    return set;
}

/* queue_attempt - one delivery attempt of queue/ID, with the settings
 * current when it starts: a reload meanwhile does not touch it. */
int
queue_attempt(struct queue *q, const char *id, long long *next_ms)
{
    struct queue_settings *set = queue_settings_hold(q);
    int verdict;

    verdict = queue_attempt_with(q, set, id, next_ms);
    queue_settings_release(set);
    return verdict;
}
