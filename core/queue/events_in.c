/*
 * events_in - what comes back to the VERP domain and the complaint
 * address, turned into events
 *
 * events_inbound() reads the message with bounce_parse() and finds what
 * it is about:
 *
 * - a bounce (RFC 3464 or a text format) counts only when it was sent
 *   to bounces+TOKEN@verp_domain and TOKEN verifies: the token names the
 *   queue id and the recipient's hash, matched against the store's
 *   received rows (newest first). A bounce without a good token is not
 *   attributed by what it says (a Message-ID is no secret: anyone could
 *   suppress anyone); forged tokens are counted and logged. The
 *   report's entry for that recipient (or its only failed one: a
 *   forwarder may have changed the address) gives the status, code and
 *   reason; a delay warning is not a bounce.
 * - a complaint (ARF) is matched by a good VERP token in the reported
 *   message's headers (from anyone: the token names message and
 *   recipient), else by its Message-ID or the fbl_match_header value
 *   looked up as a Message-ID. Those are no secret: every recipient of
 *   a newsletter has its Message-ID, and every byte of a report is the
 *   sender's. So such a match counts, as events_fbl_decide() says, for
 *   a message with one recipient (and an Original-Rcpt-To, if any, that
 *   names it) from anyone, and for a message with several only from a
 *   client in fbl_clients and only for the recipient its
 *   Original-Rcpt-To names; every received row of the Message-ID
 *   counts, whatever its queue id, so a Message-ID used twice is a
 *   message of several recipients. What is refused is logged with the
 *   client and the reason and counted as unmatched.
 *
 * Events are written with events_emit_sync(): 250 only after they are in
 * the spool on disk. A good token whose message is not in the store yet
 * (the writer is behind) gets a 4xx, so the bounce is sent again. The store is
 * read on one of the suppression lookups' read-only connections.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "util/cidr.h"
#include "util/log.h"
#include "queue/bounce.h"
#include "queue/events_db.h"
#include "queue/events_int.h"

#define EVENTS_IN_DEPTH 8
#define EVENTS_IN_PARTS 200
#define EVENTS_IN_FLUSH_MS 2000

/* the original of a bounce or complaint, from its received row */
struct events_in_orig {
    const unsigned char *hash; /* match by recipient hash, or NULL */
    const char *want_rcpt;     /* match by address, or NULL */
    int all;                   /* by Message-ID: read every row */
    int rows;                  /* received rows seen */
    int several;               /* all: more than one recipient seen */
    int named_sent;            /* all: want_rcpt is one of them */
    int found;
    char first[320]; /* all: the newest row's recipient */
    char qid[64], msgid[512], sender[320], rcpt[320], stream[256];
};

static void
events_in_take(struct events_in_orig *o, const char *qid, const char *msgid,
               const char *sender, const char *rcpt, const char *stream)
{
    snprintf(o->qid, sizeof(o->qid), "%s", qid);
    snprintf(o->msgid, sizeof(o->msgid), "%s", msgid);
    snprintf(o->sender, sizeof(o->sender), "%s", sender);
    snprintf(o->rcpt, sizeof(o->rcpt), "%s", rcpt);
    snprintf(o->stream, sizeof(o->stream), "%s", stream);
    o->found = 1;
}

/* events_in_rec - an event of type about the original o (borrowed),
 * reported from client */
static void
events_in_rec(struct events_rec *r, enum events_type type,
              const struct events_in_orig *o, const char *client)
{
    memset(r, 0, sizeof(*r));
    r->type = type;
    r->qid = o->qid;
    r->msgid = o->msgid;
    r->sender = o->sender;
    r->rcpt = o->rcpt;
    r->stream = o->stream;
    r->relay = client;
}

static int
events_in_row(void *ctx, const char *qid, const char *msgid,
              const char *sender, const char *rcpt, const char *stream)
{
    struct events_in_orig *o = ctx;
    unsigned char h[VERP_HASH_LEN];

    o->rows++;
    if (o->all) {
        /* the newest row stands for the message until the named
         * recipient's is seen; the store stops at its LIMIT */
        if (o->rows == 1) {
            snprintf(o->first, sizeof(o->first), "%s", rcpt);
            events_in_take(o, qid, msgid, sender, rcpt, stream);
        } else if (strcasecmp(rcpt, o->first) != 0) {
            o->several = 1;
        }
        if (o->want_rcpt != NULL && !o->named_sent &&
            strcasecmp(rcpt, o->want_rcpt) == 0) {
            o->named_sent = 1;
            events_in_take(o, qid, msgid, sender, rcpt, stream);
        }
        o->found = o->want_rcpt != NULL ? o->named_sent : 1;
        return 0;
    }
    if (o->hash != NULL) {
        verp_rcpt_hash(rcpt, h);
        if (memcmp(h, o->hash, VERP_HASH_LEN) != 0)
            return 0;
        events_in_take(o, qid, msgid, sender, rcpt, stream);
        return 1; /* the newest */
    }
    if (o->want_rcpt != NULL) {
        if (strcasecmp(rcpt, o->want_rcpt) != 0)
            return 0;
        events_in_take(o, qid, msgid, sender, rcpt, stream);
        return 1;
    }
    /* no recipient named: only a message with one recipient will do */
    if (o->rows == 1)
        events_in_take(o, qid, msgid, sender, rcpt, stream);
    else if (strcasecmp(o->rcpt, rcpt) != 0 || strcmp(o->qid, qid) != 0)
        o->found = 0;
    return o->rows > 1 && !o->found;
}

static int
events_in_query(struct events *ev, const char *qid, const char *msgid,
                struct events_in_orig *o, struct err *e)
{
    struct events_in_orig fresh = *o;
    struct events_reader *r = events_reader_take(ev);
    int rc;

    if (r == NULL)
        return err_set(e, ERR_TEMP, "the events store's reader is reopening");
    rc = events_db_received(r->db, qid, msgid, events_in_row, &fresh, e);
    events_reader_give(r, rc < 0);
    if (rc == 0)
        *o = fresh;
    return rc;
}

/* events_in_lookup - the received rows of qid (or msgid) into o; 0, or
 * -1 with e when the store could not be read or is behind. A bounce can
 * come back before the writer stored its message's received rows: then
 * the writer is given EVENTS_IN_FLUSH_MS to catch up, and when it still
 * holds events (buffered, spooled, or the store failing) the caller
 * answers 4xx and the bounce comes again later. */
static int
events_in_lookup(struct events *ev, const char *qid, const char *msgid,
                 struct events_in_orig *o, struct err *e)
{
    struct events_in_orig start = *o;
    struct events_stats st;

    if (events_in_query(ev, qid, msgid, o, e) < 0)
        return -1;
    if (o->found)
        return 0;
    (void)events_flush(ev, EVENTS_IN_FLUSH_MS);
    *o = start;
    if (events_in_query(ev, qid, msgid, o, e) < 0)
        return -1;
    if (o->found)
        return 0;
    events_stats(ev, &st);
    if (!st.store_ok || st.spooled > 0 || st.buffered > 0)
        return err_set(e, ERR_TEMP,
                       "the events store is behind (%zu buffered, %zu "
                       "spooled%s)",
                       st.buffered, st.spooled,
                       st.store_ok ? "" : ", failing");
    return 0;
}

/* events_in_token - the first good token among rcpts into qid/hash: 1
 * good, 0 none; a bad one is counted in *forged and logged. */
static int
events_in_token(struct events *ev, const char *id, const char *const *rcpts,
                size_t nrcpts, char qid[13], unsigned char hash[], int *forged)
{
    size_t i;

    for (i = 0; i < nrcpts; i++) {
        const char *tok;
        size_t tl;

        if (!verp_find(rcpts[i], strlen(rcpts[i]), ev->verp_domain, &tok, &tl))
            continue;
        if (verp_check(&ev->verp_key, tok, tl, qid, hash))
            return 1;
        (*forged)++;
        log_warning(id, "verp: forged or altered token in <%s> ignored",
                    rcpts[i]);
    }
    return 0;
}

static void
events_in_count(struct events *ev, unsigned long long *field)
{
    pthread_mutex_lock(&ev->lock);
    (*field)++;
    pthread_mutex_unlock(&ev->lock);
}

/* events_in_bounce - the bounced event of a DSN or text bounce */
static int
events_in_bounce(struct events *ev, const char *id, const char *client,
                 const char *const *rcpts, size_t nrcpts,
                 const struct bounce_report *rep, struct err *e)
{
    struct events_in_orig o;
    const struct bounce_rcpt *b = NULL;
    unsigned char hash[VERP_HASH_LEN];
    char qid[13], status[16];
    struct events_rec r;
    int forged = 0, code;
    size_t i, nfailed = 0;

    memset(&o, 0, sizeof(o));
    if (!events_in_token(ev, id, rcpts, nrcpts, qid, hash, &forged)) {
        events_in_count(ev, forged ? &ev->in.forged : &ev->in.unmatched);
        if (!forged)
            log_info(id,
                     "verp: a bounce from %s without a VERP token: "
                     "discarded",
                     client);
        return 0;
    }
    o.hash = hash;
    if (events_in_lookup(ev, qid, NULL, &o, e) < 0)
        return -1;
    if (!o.found) {
        events_in_count(ev, &ev->in.unmatched);
        log_info(id,
                 "verp: bounce for %s: no such message in the events "
                 "store: discarded",
                 qid);
        return 0;
    }
    for (i = 0; i < rep->n; i++) {
        if (strcasecmp(rep->r[i].addr, o.rcpt) == 0)
            b = &rep->r[i];
        nfailed += rep->r[i].failed;
    }
    if (b == NULL && rep->n == 1)
        b = &rep->r[0];
    if (b == NULL && nfailed == 1)
        for (i = 0; i < rep->n; i++)
            if (rep->r[i].failed)
                b = &rep->r[i];
    if (b == NULL)
        b = &rep->r[0];
    if (!b->failed ||
        (b->status[0] != '\0' && b->status[0] != '5' && b->status[0] != '4')) {
        events_in_count(ev, &ev->in.other);
        log_info(id, "verp: delay notice for %s to=<%s>: not a bounce", o.qid,
                 o.rcpt);
        return 0;
    }
    snprintf(status, sizeof(status), "%s", b->status[0] ? b->status : "5.0.0");
    code = b->code / 100 == 5 || b->code / 100 == 4 ? b->code : 0;
    if (code == 0)
        code = status[0] == '4' ? 450 : 550;
    if (code / 100 == 4 && status[0] == '5')
        code = 550; /* a failed report: the final word is the status */
    events_in_rec(&r, EVENTS_BOUNCED, &o, client);
    r.code = code;
    r.dsn = status;
    /* "5.0.0" with 550 is a bare 550 (events_bounce_is_hard) */
    r.hard = status[0] == '5' && events_bounce_is_hard(code, status);
    r.text = b->diag;
    if (events_emit_sync(ev, &r, e) < 0)
        return -1;
    events_in_count(ev, &ev->in.bounces);
    log_info(id, "verp: bounce for %s to=<%s>: %s %d %s (%s)", o.qid, o.rcpt,
             r.hard ? "hard" : "soft", code, status,
             bounce_kind_name(rep->kind));
    return 0;
}

enum events_fbl_verdict
events_fbl_decide(const struct events_fbl_match *m)
{
    if (m->rows == 0)
        return EVENTS_FBL_NONE;
    if (!m->several)
        return m->named && !m->named_sent ? EVENTS_FBL_NOT_RCPT
                                          : EVENTS_FBL_ACCEPT;
    if (!m->trusted)
        return EVENTS_FBL_UNTRUSTED;
    if (!m->named)
        return EVENTS_FBL_UNNAMED;
    return m->named_sent ? EVENTS_FBL_ACCEPT : EVENTS_FBL_NOT_RCPT;
}

/* events_in_caught_up - 1 once the store works and the spool is
 * replayed (the writer is woken for it), 0 when that takes longer than
 * EVENTS_IN_FLUSH_MS. What is still in the buffer does not count: rows
 * of a message are buffered before it is accepted, so before anyone
 * could have received it. */
static int
events_in_caught_up(struct events *ev)
{
    struct events_stats st;
    int i;

    for (i = 0; i <= EVENTS_IN_FLUSH_MS / 20; i++) {
        struct timespec ts = {0, 20 * 1000000L};

        events_stats(ev, &st);
        if (st.store_ok && st.spooled == 0)
            return 1;
        pthread_mutex_lock(&ev->lock);
        pthread_cond_signal(&ev->wake);
        pthread_mutex_unlock(&ev->lock);
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* events_in_by_msgid - match a complaint by ids[0..2) (Message-ID, the
 * fbl_match_header value) as events_fbl_decide() allows: 1 with o
 * filled and *how set, 0 when it may not be attributed (logged,
 * counted), -1 with e (4xx). A match from a client not in fbl_clients
 * is looked up again once the store has caught up (again: it has). */
static int
events_in_by_msgid(struct events *ev, const char *id, const char *client,
                   const char *client_addr, const struct bounce_report *rep,
                   struct events_in_orig *o, const char **how, int again,
                   struct err *e)
{
    const char *ids[2] = {rep->msgid, rep->match};
    const char *names[2] = {"Message-ID", "fbl_match_header"};
    struct events_fbl_match m, mi;
    enum events_fbl_verdict v = EVENTS_FBL_NONE, vi;
    size_t i, k = 0;

    memset(&mi, 0, sizeof(mi));
    mi.named = rep->arf_rcpt[0] != '\0';
    mi.trusted = cidr_list_contains(ev->fbl_clients, client_addr);
    m = mi;
    /* the first id that may be attributed wins; else the first that
     * matched a message says why not */
    for (i = 0; i < 2 && v != EVENTS_FBL_ACCEPT; i++) {
        if (ids[i][0] == '\0')
            continue;
        memset(o, 0, sizeof(*o));
        o->all = 1;
        o->want_rcpt = mi.named ? rep->arf_rcpt : NULL;
        if (events_in_lookup(ev, NULL, ids[i], o, e) < 0)
            return -1;
        mi.rows = (size_t)o->rows;
        mi.several = o->several;
        mi.named_sent = o->named_sent;
        vi = events_fbl_decide(&mi);
        if (vi == EVENTS_FBL_ACCEPT || v == EVENTS_FBL_NONE) {
            v = vi;
            m = mi;
            k = i;
        }
    }
    *how = names[k];
    switch (v) {
    case EVENTS_FBL_ACCEPT:
        break;
    case EVENTS_FBL_NONE:
        log_info(id,
                 "fbl: a complaint from %s that matches no message: "
                 "discarded",
                 client);
        break;
    case EVENTS_FBL_UNTRUSTED:
        log_info(id,
                 "fbl: complaint from %s matched by %s %s to a message of "
                 "%zu recipients; not in fbl_clients: ignored",
                 client, names[k], ids[k], m.rows);
        break;
    case EVENTS_FBL_UNNAMED:
        log_info(id,
                 "fbl: complaint from %s matched by %s %s to a message of "
                 "%zu recipients names no recipient (Original-Rcpt-To): "
                 "ignored",
                 client, names[k], ids[k], m.rows);
        break;
    case EVENTS_FBL_NOT_RCPT:
        log_info(id,
                 "fbl: complaint from %s matched by %s %s names <%s>, not "
                 "a recipient of that message: ignored",
                 client, names[k], ids[k], rep->arf_rcpt);
        break;
    }
    if (v != EVENTS_FBL_ACCEPT) {
        events_in_count(ev, &ev->in.unmatched);
        return 0;
    }
    if (!m.trusted && !again && !events_in_caught_up(ev)) {
        /* "one recipient" is only as good as the store: while it fails,
         * or its spool (where a batch with the message's other rows may
         * wait) is not replayed, the report is asked for again later */
        return err_set(e, ERR_TEMP,
                       "the events store is behind: a complaint for the "
                       "only recipient of %s waits",
                       ids[k]);
    }
    if (!m.trusted && !again)
        return events_in_by_msgid(ev, id, client, client_addr, rep, o, how, 1,
                                  e);
    return 1;
}

/* events_in_complaint - the complained event of an ARF report */
static int
events_in_complaint(struct events *ev, const char *id, const char *client,
                    const char *client_addr, const struct bounce_report *rep,
                    struct err *e)
{
    struct events_in_orig o;
    unsigned char hash[VERP_HASH_LEN];
    char qid[13], text[200];
    struct events_rec r;
    const char *how = "token";
    int rc;

    memset(&o, 0, sizeof(o));
    if (rep->token[0] != '\0' && ev->verp_domain[0] != '\0') {
        if (verp_check(&ev->verp_key, rep->token, strlen(rep->token), qid,
                       hash)) {
            o.hash = hash;
            if (events_in_lookup(ev, qid, NULL, &o, e) < 0)
                return -1;
        } else {
            events_in_count(ev, &ev->in.forged);
            log_warning(id,
                        "verp: forged or altered token in a complaint "
                        "from %s ignored",
                        client);
            return 0;
        }
    }
    if (!o.found) {
        rc = events_in_by_msgid(ev, id, client, client_addr, rep, &o, &how, 0,
                                e);
        if (rc <= 0)
            return rc;
    }
    snprintf(text, sizeof(text), "%s complaint, matched by %s",
             rep->feedback_type[0] ? rep->feedback_type : "abuse", how);
    events_in_rec(&r, EVENTS_COMPLAINED, &o, client);
    r.text = text;
    if (events_emit_sync(ev, &r, e) < 0)
        return -1;
    events_in_count(ev, &ev->in.complaints);
    log_info(id, "fbl: complaint for %s to=<%s> (%s)", o.qid, o.rcpt, text);
    return 0;
}

int
events_inbound(struct events *ev, const char *qid, const char *client,
               const char *client_addr, const char *const *rcpts,
               size_t nrcpts, const char *data, size_t len, struct err *e)
{
    struct msg_limits lim = {len + 1, 10000, 100000, EVENTS_IN_DEPTH,
                             EVENTS_IN_PARTS};
    struct bounce_report *rep = malloc(sizeof(*rep));
    struct err pe;
    int rc = 0;

    if (rep == NULL)
        return err_nomem(e);
    err_clear(&pe);
    if (bounce_parse(data, len, &lim, ev->verp_domain, ev->fbl_header, rep,
                     &pe) < 0) {
        events_in_count(ev, &ev->in.other);
        log_info(qid, "verp: unreadable message from %s discarded: %s", client,
                 pe.text);
        free(rep);
        return 0;
    }
    switch (rep->kind) {
    case BOUNCE_DSN:
    case BOUNCE_TEXT:
        rc = events_in_bounce(ev, qid, client, rcpts, nrcpts, rep, e);
        break;
    case BOUNCE_ARF:
        rc = events_in_complaint(ev, qid, client, client_addr, rep, e);
        break;
    case BOUNCE_AUTOREPLY:
        events_in_count(ev, &ev->in.autoreplies);
        log_info(qid, "verp: auto-reply from %s discarded", client);
        break;
    default:
        events_in_count(ev, &ev->in.other);
        log_info(qid, "verp: neither bounce nor complaint from %s: discarded",
                 client);
        break;
    }
    free(rep);
    return rc;
}
