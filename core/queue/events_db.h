/*
 * events_db - the SQLite side of the events store: schema, inserts, the
 * suppression list, reports and one message's history
 *
 * The writer of core/queue/events.c and the commands ("relaychain
 * events | report | suppress") share these. A store is named
 * "sqlite:/path" or "postgresql://user@host:port/db" (events_pg.h: the
 * same calls and query texts over libpq). The
 * schema (created when missing) has one row per event, unique by its
 * id, indexed for the reports: time, recipient domain and time,
 * Message-ID, recipient; and the suppression list, one row per
 * (recipient, stream), stream "" for the whole relay, with an optional
 * expiry. A store made before entries could expire gets the column
 * when the writer (or a command, SQLite) opens it; read-only, such a
 * store reads, and its suppression lookups fail saying so.
 *
 * An event travels as one line (the spool's format, and the buffer's):
 * tab-separated fields with \\, \t, \n and \r escaped; events_db_put()
 * parses such a line and inserts it. Strings returned through callbacks
 * are borrowed for the call. Nothing here prints or logs: errors go to
 * struct err with SQLite's message.
 */
#ifndef RC_EVENTS_DB_H
#define RC_EVENTS_DB_H

#include <stddef.h>

#include "util/buf.h"
#include "util/err.h"
#include "queue/events.h"

struct events_db;

/* events_type_name - "received", "delivered"... as stored. */
const char *events_type_name(enum events_type t);

/* events_db_open - open store ("sqlite:/path") as mode says: create it
 * (and its schema) when missing, the daemon's writer; read-only, never
 * creating or writing anything; or read-write when it exists, for the
 * commands, which may run as root and must not leave the daemon a
 * database it cannot write. NULL with e set. */
#define EVENTS_DB_CREATE 0
#define EVENTS_DB_READONLY 1
#define EVENTS_DB_EXISTING 2
struct events_db *events_db_open(const char *store, int mode, struct err *e);
/* events_db_open_auth - the same with the password of a PostgreSQL
 * store read from password_file (NULL: libpq's ~/.pgpass, PGPASSFILE) */
struct events_db *events_db_open_auth(const char *store,
                                      const char *password_file, int mode,
                                      struct err *e);
void events_db_close(struct events_db *db);

/* events_db_path - the file of store "sqlite:/path" (NULL with e set
 * for another scheme). */
const char *events_db_path(const char *store, struct err *e);

/* events_db_is_pg - 1 when store names a PostgreSQL store */
int events_db_is_pg(const char *store);

/* events_db_check - 0 when store is well formed (an absolute SQLite
 * path, or a PostgreSQL URI without a password in it); -1 with e */
int events_db_check(const char *store, struct err *e);

/* events_line - append r as one line (with its newline) to out, with
 * uid its unique id. 0, or -1 with e (out of memory). */
int events_line(struct buf *out, const char *uid, long long time_us,
                const struct events_rec *r, struct err *e);

int events_db_begin(struct events_db *db, struct err *e);
int events_db_commit(struct events_db *db, struct err *e);
void events_db_rollback(struct events_db *db);

/* events_db_put - insert the event of line (len octets, modified in
 * place); a hard bounce, a complaint or an unsubscribe adds its
 * recipient to the suppression list (for its stream alone with
 * suppress_stream), for expiry_s seconds from the event (0: for ever).
 * An event already stored is ignored. 0; 1 for a malformed line
 * (skipped); -1 with e. */
int events_db_put(struct events_db *db, char *line, size_t len,
                  int suppress_stream, long long expiry_s, struct err *e);

/* The suppression list. An entry is (rcpt, stream) with its reason,
 * the time it was added and when it expires (Unix seconds, 0: never);
 * an entry whose expiry has passed is as good as absent: lookups skip
 * it and an add replaces it.
 *
 * events_db_suppress_add - add rcpt; 1 when the entry was written, 0
 * when a live one was there and is kept as it is (inside a transaction
 * on PostgreSQL, whose results come back later: 0 either way), -1 with
 * e. */
int events_db_suppress_add(struct events_db *db, const char *rcpt,
                           const char *stream, const char *reason,
                           long long time_s, long long expires_s,
                           struct err *e);
/* 1 removed, 0 not there, -1 error */
int events_db_suppress_remove(struct events_db *db, const char *rcpt,
                              const char *stream, struct err *e);
/* every entry, expired ones too, to cb */
typedef int (*events_db_suppress_cb)(void *ctx, const char *rcpt,
                                     const char *stream, const char *reason,
                                     long long time_s, long long expires_s);
int events_db_suppress_list(struct events_db *db, events_db_suppress_cb cb,
                            void *ctx, struct err *e);
/* events_db_suppress_find - 1 with "REASON, YYYY-MM-DD" in why (and ",
 * until YYYY-MM-DD" for an entry that expires) when rcpt is suppressed
 * for stream or globally by an entry that has not expired, 0 when not,
 * -1 with e. */
int events_db_suppress_find(struct events_db *db, const char *rcpt,
                            const char *stream, char *why, size_t n,
                            struct err *e);

/* Reports. by: "day", "hour", "domain", "sender", "stream" or NULL for
 * one total row; since/until in Unix seconds (0: open). Counts are per
 * recipient. */
struct events_report_row {
    const char *key;
    unsigned long long received, delivered, deferred, bounced_hard,
        bounced_soft, expired, suppressed;
    unsigned long long complained; /* ---- verp */
    /* ---- track: opens and clicks by people and by machines (proxies,
     * prefetchers, link scanners), one-click unsubscribes */
    unsigned long long opened_human, opened_machine, clicked_human,
        clicked_machine, unsubscribed;
    /* ---- end track */
};
typedef int (*events_db_report_cb)(void *ctx,
                                   const struct events_report_row *row);
int events_db_report(struct events_db *db, const char *by, long long since,
                     long long until, events_db_report_cb cb, void *ctx,
                     struct err *e);
/* events_db_report_in - the same over the events of stream alone (NULL:
 * every stream) */
int events_db_report_in(struct events_db *db, const char *by,
                        const char *stream, long long since, long long until,
                        events_db_report_cb cb, void *ctx, struct err *e);

/* One message's (or recipient's) history, oldest first: field names
 * and values of each event, in the order of the schema's columns. */
typedef int (*events_db_history_cb)(void *ctx, int ncols,
                                    const char *const *names,
                                    const char *const *values);
int events_db_history(struct events_db *db, const char *msgid,
                      const char *rcpt, events_db_history_cb cb, void *ctx,
                      struct err *e);

/* ---- verp: events_db_received - the received rows of queue id qid
 * (or, with qid NULL, of Message-ID msgid), newest first, to cb until
 * it returns non-zero. 0, or -1 with e. */
typedef int (*events_db_received_cb)(void *ctx, const char *qid,
                                     const char *msgid, const char *sender,
                                     const char *rcpt, const char *stream);
int events_db_received(struct events_db *db, const char *qid,
                       const char *msgid, events_db_received_cb cb, void *ctx,
                       struct err *e);
/* ---- end verp */

#endif
