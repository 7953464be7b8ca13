/*
 * events_pg - the PostgreSQL side of the events store (libpq)
 *
 * Private to core/queue/events_db.c, which parses the event lines and
 * keeps the one text of each query (events_sql.h); this file holds the
 * connection. A store is a libpq URI, "postgresql://user@host:port/db";
 * the password comes from password_file (its first line) or from libpq's
 * own ~/.pgpass / PGPASSFILE, never from the URI (events_pg_check
 * refuses one there, so the store can be logged and printed).
 *
 * Inserts inside events_pg_begin/commit are pipelined: each is sent as
 * an execution of a statement prepared at open, and the results are
 * read at every EVENTS_PG_PIPE statements and at commit, so a batch
 * costs a few round trips, not one per event. Values travel as text.
 * Nothing here prints or logs: errors go to struct err with libpq's
 * message.
 */
#ifndef RC_EVENTS_PG_H
#define RC_EVENTS_PG_H

#include <stddef.h>

#include "util/err.h"

struct events_pg;

/* events_pg_is - 1 when store names a PostgreSQL store. */
int events_pg_is(const char *store);

/* events_pg_check - 0 when store parses as a libpq URI without a
 * password; -1 with e. */
int events_pg_check(const char *store, struct err *e);

/* events_pg_open - connect; mode as events_db_open (EVENTS_DB_CREATE
 * creates the schema when missing, EVENTS_DB_READONLY opens a read-only
 * session) and prepare the statements. NULL with e. */
struct events_pg *events_pg_open(const char *store, const char *password_file,
                                 int mode, struct err *e);
void events_pg_close(struct events_pg *pg);

int events_pg_begin(struct events_pg *pg, struct err *e);
int events_pg_commit(struct events_pg *pg, struct err *e);
void events_pg_rollback(struct events_pg *pg);

/* events_pg_insert - the event, vals[0..16) as EVENTS_SQL_INSERT's
 * parameters; inside a transaction its result is read later (an error
 * shows at the next read or at commit). 0, or -1 with e. */
int events_pg_insert(struct events_pg *pg, const char *const *vals,
                     struct err *e);
/* events_pg_suppress_add - vals[0..6) as EVENTS_SQL_SUP_ADD's
 * parameters; 1 when the row was written, 0 when a live one was kept
 * (inside a transaction: 0, the result is read later), -1 with e. */
int events_pg_suppress_add(struct events_pg *pg, const char *const *vals,
                           struct err *e);

/* events_pg_query - run sql with params[0..nparams) (NULL: SQL NULL)
 * and hand each row's text values to cb (NULL values as ""); cb < 0
 * stops. Returns the number of rows changed for a command, 0 for a
 * query, -1 with e. */
typedef int (*events_pg_row_cb)(void *ctx, int ncols,
                                const char *const *values);
long long events_pg_query(struct events_pg *pg, const char *sql, int nparams,
                          const char *const *params, events_pg_row_cb cb,
                          void *ctx, struct err *e);

/* events_pg_suppress_find - EVENTS_SQL_SUP_FIND through its prepared
 * statement at time now: 1 with reason, time_s and expires_s set
 * (reason n octets), 0 when not listed, -1 with e (also on a store
 * whose suppression table has no expires column yet). */
int events_pg_suppress_find(struct events_pg *pg, const char *rcpt,
                            const char *stream, long long now, char *reason,
                            size_t n, long long *time_s, long long *expires_s,
                            struct err *e);

/* events_pg_ok - 0 when the connection is broken. */
int events_pg_ok(const struct events_pg *pg);

#endif
