/*
 * events - what happened to each message, recorded as data
 *
 * Every outcome the queue decides (and the SMTP front end's acceptance
 * and suppression refusals) is one event: received, delivered,
 * deferred, bounced (hard or soft), expired, suppressed, with its time,
 * queue id, Message-ID, sender, recipient, stream, size and the reply
 * that decided it. The module lives in core/queue because the queue is
 * the lowest layer that decides outcomes and the SMTP front end (above
 * it) reaches it through the queue it already holds; nothing below the
 * queue needs it.
 *
 * events_emit() never blocks on the store: it formats the event as one
 * line and puts it into a bounded buffer in memory; when the buffer is
 * full the line is appended to the local spool file instead. One writer
 * thread takes up to EVENTS_BATCH_MAX lines (or what came in
 * EVENTS_BATCH_MS) and inserts them in one SQLite transaction; when the
 * store fails the batch is appended to the spool (one fdatasync per
 * batch) and the store is tried again later. Whenever the store works
 * and the spool holds lines, the writer replays them; each event has a
 * unique id and is inserted with INSERT OR IGNORE, so a replay that is
 * cut short and repeated never counts an event twice. Mail never waits
 * for an event and an event is lost only when both the buffer and the
 * spool file refuse it (logged, and counted in events_stats()).
 *
 * The suppression list is a table of the same store. Hard bounces add
 * their recipient (with suppress_scope = stream, for the stream alone;
 * with suppress_expiry, for that long);
 * events_suppressed() looks a recipient up through a prepared statement
 * on a read-only connection of its own (WAL: it never waits for the
 * writer).
 *
 * The object owns its thread, its connections, its spool descriptor and
 * every line it holds; events_close() writes what is buffered (to the
 * store, else to the spool) before it frees them.
 */
#ifndef RC_EVENTS_H
#define RC_EVENTS_H

#include <stddef.h>
#include <sys/uio.h>

#include "util/err.h"

enum events_type {
    EVENTS_RECEIVED,
    EVENTS_DELIVERED,
    EVENTS_DEFERRED,
    EVENTS_BOUNCED,
    EVENTS_EXPIRED,
    EVENTS_SUPPRESSED,
    /* ---- verp: an ARF complaint (RFC 5965) about a message */
    EVENTS_COMPLAINED,
    /* ---- end verp */
    /* ---- track: what the tracking handlers record; hard is the
     * machine flag for these (1: a proxy, prefetcher or link scanner,
     * not a person), and an unsubscribed event puts its recipient on
     * the suppression list with reason "unsubscribe" */
    EVENTS_OPENED,
    EVENTS_CLICKED,
    EVENTS_UNSUBSCRIBED,
    /* ---- end track */
    EVENTS_NTYPES
};

/* One event; every string is borrowed and may be NULL (stored as ""). */
struct events_rec {
    long long time_us; /* 0: now */
    enum events_type type;
    const char *qid, *msgid, *sender, *rcpt, *stream;
    unsigned long long size;
    int code;          /* the SMTP reply code, 0 when none */
    const char *dsn;   /* "5.1.1" */
    int hard;          /* bounced: 1 hard, 0 soft; opened, clicked,
                          unsubscribed: 1 machine, 0 human */
    long long next_us; /* deferred: the next attempt */
    const char *relay, *text;
};

struct events_settings {
    const char *store;         /* "sqlite:/path" or "postgresql://..." */
    const char *password_file; /* PostgreSQL's password, or NULL */
    const char *spool;         /* the spool file; NULL: STORE.spool (SQLite) */
    const char *stream_map;    /* a regmap file, or NULL */
    int stream_header;         /* stream_header is set */
    size_t buffer_max;         /* events held in memory */
    size_t batch_max;          /* events per transaction */
    long long batch_ms;        /* longest wait to fill a batch */
    int suppress_stream;       /* suppress_scope = stream */
    long long suppress_expiry; /* seconds the entries bounces, complaints
                                  and unsubscribes add last; 0: for ever */
    int drop;                  /* on_suppressed = drop */
    /* ---- verp: bounces and complaints coming back */
    const char *verp_domain;        /* NULL: no VERP */
    const char *verp_key_file;      /* with verp_domain */
    const char *fbl_address;        /* NULL: complaints at verp_domain only */
    const char *fbl_match_header;   /* NULL: none */
    const char *const *fbl_clients; /* networks of the genuine feedback */
    size_t nfbl_clients;            /* loops (CIDR), nfbl_clients items */
    /* ---- end verp */
};

struct events_stats {
    size_t buffered; /* in memory now */
    size_t spooled;  /* lines in the spool file(s), not replayed yet */
    unsigned long long written, replayed, lost;
    int store_ok;
    char last_error[ERR_TEXT_MAX];
};

struct events;

/* events_open - open (and create) the store, its schema and the spool,
 * load stream_map, start the writer. NULL with e set ("events_store:
 * ..."). */
struct events *events_open(const struct events_settings *s, struct err *e);

/* events_close - stop the writer, write what is buffered (store, else
 * spool) and free everything; accepts NULL. */
void events_close(struct events *ev);

/* events_emit - record r; never blocks on the store. */
void events_emit(struct events *ev, const struct events_rec *r);

/* events_drain - at shutdown: what is buffered goes to the spool now
 * (one fdatasync), and events emitted afterwards go straight there, so
 * an exit that does not wait for events_close() loses none. Waits at
 * most wait_ms for a batch the writer is inserting. */
void events_drain(struct events *ev, long long wait_ms);

/* events_flush - wait at most wait_ms until the buffer is empty and the
 * spool replayed (for tests and a clean stop); 0 when it is, -1 not. */
int events_flush(struct events *ev, long long wait_ms);

void events_stats(struct events *ev, struct events_stats *st);

/* events_stream - the stream of a message into out (n octets, "" when
 * none): given (the stream_header of a trusted client, as the front end
 * took it), else by stream_map from auth_user (or NULL) or sender.
 * Returns 1 when the message's stream is tracked (stream_map is set, or
 * given names one), else 0: then all mail is checked against the whole
 * suppression list and has VERP senders. */
int events_stream(const struct events *ev, const char *given,
                  const char *auth_user, const char *sender, char *out,
                  size_t n);

/* events_suppressed - 1 when rcpt is on the suppression list (globally
 * or for stream) by an entry that has not expired, with "REASON, DATE"
 * in why (n octets; ", until DATE" after it for an entry that expires);
 * 0 when not; -1 when the lookup failed (logged: the caller lets the
 * mail pass). Each call asks the store: there is no cache to outlive
 * an expiry or a removal. */
int events_suppressed(struct events *ev, const char *rcpt, const char *stream,
                      char *why, size_t n);

/* events_drops - 1 when a suppressed recipient is accepted and dropped
 * (on_suppressed = drop), 0 when RCPT refuses it. */
int events_drops(const struct events *ev);

/* events_msgid - the Message-ID of the message whose first octets are
 * the pieces iov[0..niov) into out (n octets, "" when none). */
void events_msgid(const struct iovec *iov, size_t niov, char *out, size_t n);

/* events_bounce_is_hard - 1 when the permanent reply code/dsn says the
 * address itself is bad (5.1.x, 5.2.1, or a bare 550/551/553 without an
 * enhanced code), 0 for other permanent failures (policy, size,
 * content, mailbox full). */
int events_bounce_is_hard(int code, const char *dsn);

/* ---- verp: VERP senders, and what comes back to them (events_in.c) */

/* events_verp_sender - in out (n octets) the VERP envelope sender of the
 * copy of message qid (on stream given, or from sender authenticated as
 * auth_user: events_stream) for rcpt: 1 when it is rewritten
 * (verp_domain set, sender not null, the mail on a tracked stream), 0
 * when the sender stays. */
int events_verp_sender(struct events *ev, const char *qid, const char *given,
                       const char *auth_user, const char *sender,
                       const char *rcpt, char *out, size_t n);

/* events_inbound_rcpt - 1 when mail to rcpt is for the relay itself
 * (any address at verp_domain, or fbl_address), else 0. */
int events_inbound_rcpt(const struct events *ev, const char *rcpt);

/* events_inbound - read a message that arrived for the relay itself
 * (data, len octets, sent to rcpts[0..nrcpts); qid and client,
 * "name[addr]", for the log; client_addr, the SMTP client's address as
 * the session sees it (after PROXY and XFORWARD), is what fbl_clients
 * is matched against): a bounce to a VERP address with a good token
 * becomes a bounced event for the message and recipient the token
 * names, an ARF report a complained event (matched by VERP token, or by
 * Message-ID or fbl_match_header as events_fbl_decide() allows),
 * written durably (the spool, fdatasync'd) before this returns 0; what
 * is neither, a forged token, or what matches nothing or may not be
 * attributed is counted and logged. -1 with e when an event could not
 * be made durable or the store could not be read: the caller answers
 * 4xx and the sender retries. */
int events_inbound(struct events *ev, const char *qid, const char *client,
                   const char *client_addr, const char *const *rcpts,
                   size_t nrcpts, const char *data, size_t len, struct err *e);

/* events_fbl_decide - whether a complaint matched by the reported
 * message's Message-ID or fbl_match_header value (no secret: every
 * recipient of the message has it) may be attributed, from what the
 * store holds under that Message-ID. A VERP token, which names message
 * and recipient under the relay's key, never comes here. */
struct events_fbl_match {
    size_t rows;    /* received rows of the Message-ID (0: no message) */
    int several;    /* they name more than one recipient */
    int named;      /* the report names a recipient (Original-Rcpt-To) */
    int named_sent; /* ... and the message went to it */
    int trusted;    /* the client is in fbl_clients */
};
enum events_fbl_verdict {
    EVENTS_FBL_ACCEPT,    /* the named recipient, else the only one */
    EVENTS_FBL_NONE,      /* no message has that Message-ID */
    EVENTS_FBL_NOT_RCPT,  /* the named recipient did not get the message */
    EVENTS_FBL_UNNAMED,   /* several recipients, none named */
    EVENTS_FBL_UNTRUSTED, /* several recipients, client not in fbl_clients */
};
/* Pure: a message with one recipient can only be complained about by
 * (or for) that recipient, so anyone may report it, as long as a named
 * recipient is that one; one with several needs a client in
 * fbl_clients and a named recipient the message went to. Never every
 * recipient of a message. */
enum events_fbl_verdict events_fbl_decide(const struct events_fbl_match *m);

/* events_emit_sync - record r durably: appended to the spool and
 * fdatasync'd before it returns (the writer replays it into the store).
 * 0, or -1 with e. */
int events_emit_sync(struct events *ev, const struct events_rec *r,
                     struct err *e);

/* events_inbound_counts - what events_inbound() saw since start */
struct events_inbound_counts {
    unsigned long long bounces, complaints, autoreplies, other, forged,
        unmatched;
};
void events_inbound_counts(struct events *ev, struct events_inbound_counts *c);
/* ---- end verp */

#endif
