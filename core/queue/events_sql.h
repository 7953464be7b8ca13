/*
 * events_sql - the SQL of the events store, for SQLite and PostgreSQL
 *
 * One text per query where the two dialects agree (upserts with ON
 * CONFLICT, count(*) FILTER, CAST, numbered parameters: SQLite reads
 * "$1" as a named parameter whose index is the order of its first
 * appearance, so a text that names $1, $2, ... in order binds the same
 * way in both). What differs is in this file alone: the schemas (types,
 * identity column, the "C" collation that gives PostgreSQL SQLite's
 * byte order) and the type of the report's total key. Private to
 * core/queue/events_db.c and events_pg.c.
 */
#ifndef RC_EVENTS_SQL_H
#define RC_EVENTS_SQL_H

#include <stddef.h>
#include <string.h>

/* ------------------------------------------------- shared query texts */

#define EVENTS_SQL_INSERT                                                     \
    "INSERT INTO events (uid, t, type, qid, msgid, sender, rcpt, "            \
    "rcpt_domain, stream, size, code, dsn, hard, next_try, relay, text) "     \
    "VALUES ($1, $2, $3, $4, $5, $6, lower($7), lower($8), $9, $10, $11, "    \
    "$12, $13, $14, $15, $16) ON CONFLICT (uid) DO NOTHING"

/* $5 the expiry (Unix seconds, 0: never), $6 now: an entry that has
 * expired is replaced, a live one is kept as it is */
#define EVENTS_SQL_SUP_ADD                                                    \
    "INSERT INTO suppression (rcpt, stream, reason, t, expires) VALUES "      \
    "(lower($1), $2, $3, $4, $5) ON CONFLICT (rcpt, stream) DO UPDATE SET "   \
    "reason = excluded.reason, t = excluded.t, expires = excluded.expires "   \
    "WHERE suppression.expires <> 0 AND suppression.expires <= $6"

/* $1 is lower-cased by the caller, so the lookup is a plain key; $3
 * now. Of a global and a stream's entry, the one that lasts longer is
 * told. */
#define EVENTS_SQL_SUP_FIND                                                   \
    "SELECT reason, t, expires FROM suppression WHERE rcpt = $1 AND "         \
    "stream IN ('', $2) AND (expires = 0 OR expires > $3) "                   \
    "ORDER BY expires = 0 DESC, expires DESC LIMIT 1"

/* $2 NULL: every stream */
#define EVENTS_SQL_SUP_REMOVE                                                 \
    "DELETE FROM suppression WHERE rcpt = lower($1) AND "                     \
    "(CAST($2 AS TEXT) IS NULL OR stream = $2)"

#define EVENTS_SQL_SUP_LIST                                                   \
    "SELECT rcpt, stream, reason, t, expires FROM suppression ORDER BY "      \
    "rcpt, stream"

/* %s: the key (events_sql_key), then "" or EVENTS_SQL_REPORT_STREAM;
 * $1, $2: the time range in microseconds, $3 the stream */
#define EVENTS_SQL_REPORT                                                       \
    "SELECT %s AS k,"                                                           \
    " count(*) FILTER (WHERE type = 'received'),"                               \
    " count(*) FILTER (WHERE type = 'delivered'),"                              \
    " count(*) FILTER (WHERE type = 'deferred'),"                               \
    " count(*) FILTER (WHERE type = 'bounced' AND hard <> 0),"                  \
    " count(*) FILTER (WHERE type = 'bounced' AND hard = 0),"                   \
    " count(*) FILTER (WHERE type = 'expired'),"                                \
    " count(*) FILTER (WHERE type = 'suppressed'),"                             \
    " count(*) FILTER (WHERE type = 'complained')," /* ---- verp */ /* ----     \
                                                                       track:   \
                                                                       people   \
                                                                       and      \
                                                                       machines \
                                                                       apart    \
                                                                       (hard:   \
                                                                       the      \
                                                                       machine  \
                                                                       flag)    \
                                                                     */         \
    " count(*) FILTER (WHERE type = 'opened' AND hard = 0),"                    \
    " count(*) FILTER (WHERE type = 'opened' AND hard <> 0),"                   \
    " count(*) FILTER (WHERE type = 'clicked' AND hard = 0),"                   \
    " count(*) FILTER (WHERE type = 'clicked' AND hard <> 0),"                  \
    " count(*) FILTER (WHERE type = 'unsubscribed')"                            \
    " FROM events WHERE t >= $1 AND t < $2%s"                                   \
    " GROUP BY k ORDER BY k"
#define EVENTS_SQL_REPORT_STREAM " AND stream = $3"

/* %s%s%s: the condition, one of the two below or both joined by AND
 * (one text per case: an "$1 IS NULL OR" would keep the planner from
 * the indexes); the recipient's parameter is $%d, the last one */
#define EVENTS_SQL_HISTORY                                                    \
    "SELECT t, type, qid, msgid, sender, rcpt, stream, size, code, dsn, "     \
    "hard, next_try, relay, text FROM events WHERE %s%s%s ORDER BY t, id"
#define EVENTS_SQL_HISTORY_MSGID "msgid IN ($1, '<' || $1 || '>')"
#define EVENTS_SQL_HISTORY_RCPT "rcpt = lower($%d)"

/* ---- verp: the received rows of a message, newest first (a queue id
 * may come round again after days), by queue id or by Message-ID */
#define EVENTS_SQL_RECEIVED_BY_QID                                            \
    "SELECT qid, msgid, sender, rcpt, stream, t FROM events WHERE qid = $1 "  \
    "AND type = 'received' ORDER BY t DESC LIMIT 10000"
#define EVENTS_SQL_RECEIVED_BY_MSGID                                          \
    "SELECT qid, msgid, sender, rcpt, stream, t FROM events WHERE msgid = "   \
    "$1 AND type = 'received' ORDER BY t DESC LIMIT 10000"

/* ---------------------------------------------------- the differences */

enum events_sql_dialect { EVENTS_SQL_SQLITE, EVENTS_SQL_PG };

#define EVENTS_SQL_TEXT_SQLITE "TEXT NOT NULL"
#define EVENTS_SQL_TEXT_PG "TEXT COLLATE \"C\" NOT NULL"

#define EVENTS_SQL_TABLES(ID, INT, TEXT)                                      \
    "CREATE TABLE IF NOT EXISTS events ("                                     \
    " id " ID ","                                                             \
    " uid " TEXT " UNIQUE,"                                                   \
    " t " INT " NOT NULL," /* Unix microseconds */                            \
    " type " TEXT ","                                                         \
    " qid " TEXT ","                                                          \
    " msgid " TEXT ","                                                        \
    " sender " TEXT ","                                                       \
    " rcpt " TEXT ","                                                         \
    " rcpt_domain " TEXT ","                                                  \
    " stream " TEXT ","                                                       \
    " size " INT " NOT NULL,"                                                 \
    " code INTEGER NOT NULL,"                                                 \
    " dsn " TEXT ","                                                          \
    " hard INTEGER NOT NULL,"                                                 \
    " next_try " INT " NOT NULL,"                                             \
    " relay " TEXT ","                                                        \
    " text " TEXT ");"                                                        \
    "CREATE INDEX IF NOT EXISTS events_t ON events(t);"                       \
    "CREATE INDEX IF NOT EXISTS events_domain_t ON events(rcpt_domain, t);"   \
    "CREATE INDEX IF NOT EXISTS events_msgid ON events(msgid);"               \
    "CREATE INDEX IF NOT EXISTS events_rcpt ON events(rcpt, t);" /* ----      \
                                                                    verp: a   \
                                                                    VERP      \
                                                                    token     \
                                                                    names its \
                                                                    message   \
                                                                    by queue  \
                                                                    id */     \
    "CREATE INDEX IF NOT EXISTS events_qid ON events(qid);"                   \
    "CREATE TABLE IF NOT EXISTS suppression ("                                \
    " rcpt " TEXT ","                                                         \
    " stream " TEXT ","                                                       \
    " reason " TEXT ","                                                       \
    " t " INT " NOT NULL,"                 /* Unix seconds */                 \
    " expires " INT " NOT NULL DEFAULT 0," /* Unix seconds, 0: never */       \
    " PRIMARY KEY (rcpt, stream));"

/* Stores made before entries could expire have no expires column: the
 * writer adds it at open (SQLite after PRAGMA table_info said so;
 * PostgreSQL in the schema's locked transaction, IF NOT EXISTS). */
#define EVENTS_SQL_SUP_MIGRATE_SQLITE                                         \
    "ALTER TABLE suppression ADD COLUMN expires INTEGER NOT NULL DEFAULT 0"
#define EVENTS_SQL_UNMIGRATED                                                 \
    "the suppression table has no expires column yet (a store made by an "    \
    "older relaychain): relaychaind adds it when it starts"
#define EVENTS_SQL_SUP_MIGRATE_PG                                             \
    "ALTER TABLE suppression ADD COLUMN IF NOT EXISTS expires BIGINT NOT "    \
    "NULL DEFAULT 0;"

#define EVENTS_SQL_SCHEMA_SQLITE                                              \
    EVENTS_SQL_TABLES("INTEGER PRIMARY KEY", "INTEGER", EVENTS_SQL_TEXT_SQLITE)

/* Two relays starting at once: CREATE ... IF NOT EXISTS is not safe
 * against itself in PostgreSQL (the loser fails on the catalog's unique
 * index), so the schema is created under a transaction-scoped advisory
 * lock; the number is arbitrary and ours. A store made before entries
 * could expire gets its expires column in the same transaction, or,
 * when its tables are there, in one of its own under the same lock
 * (ALTER alone: a role that does not own the tables is told that, not
 * that it may not create tables). */
#define EVENTS_SQL_PG_LOCK "BEGIN; SELECT pg_advisory_xact_lock(7275636901);"
#define EVENTS_SQL_SCHEMA_PG                                                  \
    EVENTS_SQL_PG_LOCK EVENTS_SQL_TABLES(                                     \
        "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", "BIGINT",          \
        EVENTS_SQL_TEXT_PG) EVENTS_SQL_SUP_MIGRATE_PG "COMMIT;"
#define EVENTS_SQL_MIGRATE_PG                                                 \
    EVENTS_SQL_PG_LOCK EVENTS_SQL_SUP_MIGRATE_PG "COMMIT;"

/* events_sql_key - the report key expression for by (NULL: one total
 * row) in dialect d; NULL for an unknown by. By day and hour the key is
 * the number of the day or hour since the epoch (*bucket_s its length
 * in seconds, else 0), the same integer division in both dialects and
 * far cheaper per row than formatting a date: the caller writes out
 * one date per group. */
static inline const char *
events_sql_key(enum events_sql_dialect d, const char *by, long long *bucket_s)
{
    static const struct {
        const char *by, *key;
        long long bucket_s;
    } keys[] = {
        {"day", "t / 86400000000", 86400}, {"hour", "t / 3600000000", 3600},
        {"domain", "rcpt_domain", 0},      {"sender", "sender", 0},
        {"stream", "stream", 0},
    };
    size_t i;

    *bucket_s = 0;
    if (by == NULL)
        return d == EVENTS_SQL_PG ? "CAST('total' AS TEXT)" : "'total'";
    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strcmp(keys[i].by, by) == 0) {
            *bucket_s = keys[i].bucket_s;
            return keys[i].key;
        }
    return NULL;
}

#endif
