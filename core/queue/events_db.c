/*
 * events_db - the SQLite side of the events store
 *
 * See events_db.h. The connection is opened in WAL mode, so the
 * suppression lookups and the commands read while the writer writes;
 * busy_timeout is short (EVENTS_DB_BUSY_MS): a store that is locked
 * longer than that counts as failing, and the writer spools instead of
 * waiting. Statements are prepared once per connection.
 *
 * A PostgreSQL store is the same object with db->pg set: each call
 * below parses and formats here and hands the same query text
 * (events_sql.h) to events_pg.c, so both stores answer alike.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "queue/events_db.h"
#include "queue/events_pg.h"
#include "queue/events_sql.h"

#define EVENTS_DB_BUSY_MS 100
#define EVENTS_LINE_FIELDS 16
#define EVENTS_ADDR_MAX 1024

struct events_db {
    sqlite3 *db;
    sqlite3_stmt *ins, *sup_add, *sup_find;
    struct events_pg *pg; /* set: a PostgreSQL store, db unused */
};

static const char *const events_type_names[] = {
    [EVENTS_RECEIVED] = "received",
    [EVENTS_DELIVERED] = "delivered",
    [EVENTS_DEFERRED] = "deferred",
    [EVENTS_BOUNCED] = "bounced",
    [EVENTS_EXPIRED] = "expired",
    [EVENTS_SUPPRESSED] = "suppressed",
    /* ---- verp */
    [EVENTS_COMPLAINED] = "complained",
    /* ---- end verp */
    /* ---- track */
    [EVENTS_OPENED] = "opened",
    [EVENTS_CLICKED] = "clicked",
    [EVENTS_UNSUBSCRIBED] = "unsubscribed",
    /* ---- end track */
};

const char *
events_type_name(enum events_type t)
{
    return (unsigned)t < EVENTS_NTYPES ? events_type_names[t] : "unknown";
}

const char *
events_db_path(const char *store, struct err *e)
{
    if (strncmp(store, "sqlite:", 7) == 0 && store[7] != '\0')
        return store + 7;
    if (events_pg_is(store)) {
        err_set(e, ERR_CONFIG, "a PostgreSQL store has no file");
        return NULL;
    }
    err_set(e, ERR_CONFIG,
            "unknown store '%.200s' (want sqlite:/path or "
            "postgresql://user@host:port/db)",
            store);
    return NULL;
}

int
events_db_is_pg(const char *store)
{
    return events_pg_is(store);
}

int
events_db_check(const char *store, struct err *e)
{
    const char *path;

    if (events_pg_is(store))
        return events_pg_check(store, e);
    if ((path = events_db_path(store, e)) == NULL)
        return -1;
    if (path[0] != '/')
        return err_set(e, ERR_CONFIG, "sqlite: needs an absolute path");
    return 0;
}

static int
events_db_err(struct events_db *db, struct err *e, const char *what)
{
    return err_set(e, ERR_LIB, "%s: %s", what,
                   db->db ? sqlite3_errmsg(db->db) : "out of memory");
}

/* events_db_has_expires - 1 when the suppression table has the expires
 * column, 0 when it is a store made before entries could expire, -1
 * with e */
static int
events_db_has_expires(struct events_db *db, struct err *e)
{
    sqlite3_stmt *st;
    int rc, found = 0;

    if (sqlite3_prepare_v2(db->db, "PRAGMA table_info(suppression)", -1, &st,
                           NULL) != SQLITE_OK)
        return events_db_err(db, e, "schema");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 1);

        if (name != NULL && strcmp(name, "expires") == 0)
            found = 1;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return events_db_err(db, e, "schema");
    return found;
}

/* events_db_migrate - add the expires column to a store made before
 * entries could expire; 0, or -1 with e. Looked for first without a
 * lock (the usual case: there, nothing to write), then again under the
 * write lock, so two openers at once add it once. */
static int
events_db_migrate(struct events_db *db, struct err *e)
{
    int rc;

    if ((rc = events_db_has_expires(db, e)) != 0)
        return rc < 0 ? -1 : 0;
    if (sqlite3_exec(db->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return events_db_err(db, e, "schema: expires");
    if ((rc = events_db_has_expires(db, e)) == 0 &&
        sqlite3_exec(db->db, EVENTS_SQL_SUP_MIGRATE_SQLITE, NULL, NULL,
                     NULL) != SQLITE_OK)
        rc = events_db_err(db, e, "schema: expires");
    if (rc < 0) {
        (void)sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    if (sqlite3_exec(db->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        events_db_err(db, e, "schema: expires");
        (void)sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

struct events_db *
events_db_open(const char *store, int mode, struct err *e)
{
    return events_db_open_auth(store, NULL, mode, e);
}

struct events_db *
events_db_open_auth(const char *store, const char *password_file, int mode,
                    struct err *e)
{
    struct events_db *db;
    const char *path;
    int readonly = mode == EVENTS_DB_READONLY, rc;
    int flags = readonly ? SQLITE_OPEN_READONLY
                : mode == EVENTS_DB_CREATE
                    ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
                    : SQLITE_OPEN_READWRITE;

    if (events_pg_is(store)) {
        if ((db = calloc(1, sizeof(*db))) == NULL) {
            err_nomem(e);
            return NULL;
        }
        if ((db->pg = events_pg_open(store, password_file, mode, e)) == NULL) {
            free(db);
            return NULL;
        }
        return db;
    }
    if ((path = events_db_path(store, e)) == NULL)
        return NULL;
    if (mode != EVENTS_DB_CREATE && access(path, F_OK) < 0) {
        err_sys(e, ERR_IO,
                "%s (relaychaind creates it when it starts with "
                "events_store set)",
                path);
        return NULL;
    }
    if ((db = calloc(1, sizeof(*db))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    flags |= SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &db->db, flags, NULL) != SQLITE_OK) {
        err_set(e, ERR_IO, "%s: %s", path,
                db->db ? sqlite3_errmsg(db->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(db->db, EVENTS_DB_BUSY_MS);
    if (!readonly && (sqlite3_exec(db->db, "PRAGMA journal_mode=WAL", NULL,
                                   NULL, NULL) != SQLITE_OK ||
                      sqlite3_exec(db->db, "PRAGMA synchronous=NORMAL", NULL,
                                   NULL, NULL) != SQLITE_OK ||
                      sqlite3_exec(db->db, EVENTS_SQL_SCHEMA_SQLITE, NULL,
                                   NULL, NULL) != SQLITE_OK)) {
        events_db_err(db, e, path);
        goto fail;
    }
    if (!readonly && events_db_migrate(db, e) < 0) {
        err_prefix(e, "%s", path);
        goto fail;
    }
    /* read-only on a store not migrated yet (the commands before the
     * daemon restarted): the reports work, lookups say why they fail */
    if (readonly && (rc = events_db_has_expires(db, e)) <= 0) {
        if (rc < 0) {
            err_prefix(e, "%s", path);
            goto fail;
        }
        return db;
    }
    if (sqlite3_prepare_v2(db->db, EVENTS_SQL_SUP_FIND, -1, &db->sup_find,
                           NULL) != SQLITE_OK) {
        events_db_err(db, e, path);
        goto fail;
    }
    if (readonly)
        return db;
    if (sqlite3_prepare_v2(db->db, EVENTS_SQL_INSERT, -1, &db->ins, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(db->db, EVENTS_SQL_SUP_ADD, -1, &db->sup_add,
                           NULL) != SQLITE_OK) {
        events_db_err(db, e, path);
        goto fail;
    }
    return db;
fail:
    events_db_close(db);
    return NULL;
}

void
events_db_close(struct events_db *db)
{
    if (db == NULL)
        return;
    events_pg_close(db->pg);
    sqlite3_finalize(db->ins);
    sqlite3_finalize(db->sup_add);
    sqlite3_finalize(db->sup_find);
    sqlite3_close(db->db);
    free(db);
}

/* ---------------------------------------------------------- the line */

static int
events_put_field(struct buf *out, const char *s, struct err *e)
{
    char c;

    if (buf_putc(out, '\t', e) < 0)
        return -1;
    for (; s != NULL && (c = *s) != '\0'; s++) {
        const char *esc = c == '\\'   ? "\\\\"
                          : c == '\t' ? "\\t"
                          : c == '\n' ? "\\n"
                          : c == '\r' ? "\\r"
                                      : NULL;

        if (esc != NULL ? buf_puts(out, esc, e) : buf_putc(out, c, e))
            return -1;
    }
    return 0;
}

int
events_line(struct buf *out, const char *uid, long long time_us,
            const struct events_rec *r, struct err *e)
{
    char num[5][32];

    snprintf(num[0], sizeof(num[0]), "%lld", time_us);
    snprintf(num[1], sizeof(num[1]), "%llu", r->size);
    snprintf(num[2], sizeof(num[2]), "%d", r->code);
    snprintf(num[3], sizeof(num[3]), "%d", r->hard ? 1 : 0);
    snprintf(num[4], sizeof(num[4]), "%lld", r->next_us);
    if (buf_puts(out, "E1", e) < 0 || events_put_field(out, uid, e) < 0 ||
        events_put_field(out, num[0], e) < 0 ||
        events_put_field(out, events_type_name(r->type), e) < 0 ||
        events_put_field(out, r->qid, e) < 0 ||
        events_put_field(out, r->msgid, e) < 0 ||
        events_put_field(out, r->sender, e) < 0 ||
        events_put_field(out, r->rcpt, e) < 0 ||
        events_put_field(out, r->stream, e) < 0 ||
        events_put_field(out, num[1], e) < 0 ||
        events_put_field(out, num[2], e) < 0 ||
        events_put_field(out, r->dsn, e) < 0 ||
        events_put_field(out, num[3], e) < 0 ||
        events_put_field(out, num[4], e) < 0 ||
        events_put_field(out, r->relay, e) < 0 ||
        events_put_field(out, r->text, e) < 0 || buf_putc(out, '\n', e) < 0)
        return -1;
    return 0;
}

/* events_unescape - undo events_put_field in place; returns s. */
static char *
events_unescape(char *s)
{
    char *r = s, *w = s;

    while (*r != '\0') {
        if (*r == '\\' && r[1] != '\0') {
            r++;
            *w++ = *r == 't' ? '\t' : *r == 'n' ? '\n' : *r == 'r' ? '\r' : *r;
            r++;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return s;
}

/* events_utf8 - replace, in place, each octet of s that is not part of
 * a well-formed UTF-8 sequence by '?': PostgreSQL refuses such text
 * (and with it the batch), and both stores must hold the same. */
static void
events_utf8(char *s)
{
    unsigned char *p = (unsigned char *)s;

    while (*p != '\0') {
        size_t len, k;
        unsigned c = *p;

        if (c < 0x80) {
            p++;
            continue;
        }
        len = c >= 0xc2 && c <= 0xdf   ? 2
              : c >= 0xe0 && c <= 0xef ? 3
              : c >= 0xf0 && c <= 0xf4 ? 4
                                       : 0;
        for (k = 1; k < len; k++)
            if ((p[k] & 0xc0) != 0x80)
                break;
        /* overlong three and four octet forms, surrogates, > U+10FFFF */
        if (k == len && len == 3 &&
            ((c == 0xe0 && p[1] < 0xa0) || (c == 0xed && p[1] > 0x9f)))
            len = 0;
        if (k == len && len == 4 &&
            ((c == 0xf0 && p[1] < 0x90) || (c == 0xf4 && p[1] > 0x8f)))
            len = 0;
        if (len == 0 || k != len) {
            *p++ = '?';
            continue;
        }
        p += len;
    }
}

static int
events_num(const char *s, long long *out)
{
    char *end;

    errno = 0;
    *out = strtoll(s, &end, 10);
    return errno == 0 && end != s && *end == '\0' ? 0 : -1;
}

/* ------------------------------------------------------- transactions */

int
events_db_begin(struct events_db *db, struct err *e)
{
    if (db->pg != NULL)
        return events_pg_begin(db->pg, e);
    if (sqlite3_exec(db->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return events_db_err(db, e, "begin");
    return 0;
}

int
events_db_commit(struct events_db *db, struct err *e)
{
    if (db->pg != NULL)
        return events_pg_commit(db->pg, e);
    if (sqlite3_exec(db->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        events_db_err(db, e, "commit");
        events_db_rollback(db);
        return -1;
    }
    return 0;
}

void
events_db_rollback(struct events_db *db)
{
    if (db->pg != NULL) {
        events_pg_rollback(db->pg);
        return;
    }
    if (!sqlite3_get_autocommit(db->db))
        (void)sqlite3_exec(db->db, "ROLLBACK", NULL, NULL, NULL);
}

static int
events_db_step(struct events_db *db, sqlite3_stmt *st, struct err *e,
               const char *what)
{
    int rc = sqlite3_step(st);

    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    if (rc != SQLITE_DONE)
        return events_db_err(db, e, what);
    return 0;
}

int
events_db_put(struct events_db *db, char *line, size_t len,
              int suppress_stream, long long expiry_s, struct err *e)
{
    char *f[EVENTS_LINE_FIELDS], *p = line, *at;
    long long t, size, code, hard, next, until;
    size_t n = 0;
    int i;

    if (len > 0 && line[len - 1] == '\n')
        line[--len] = '\0';
    if (memchr(line, '\0', len) != NULL)
        return 1;
    line[len] = '\0';
    while (n < EVENTS_LINE_FIELDS) {
        f[n++] = p;
        if ((p = strchr(p, '\t')) == NULL)
            break;
        *p++ = '\0';
    }
    if (n != EVENTS_LINE_FIELDS || p != NULL || strcmp(f[0], "E1") != 0)
        return 1;
    for (i = 1; i < EVENTS_LINE_FIELDS; i++)
        events_utf8(events_unescape(f[i]));
    /* a value either store would refuse would fail its whole batch, and
     * the batch's replay, for ever: such a line is malformed */
    if (events_num(f[2], &t) < 0 || events_num(f[9], &size) < 0 ||
        events_num(f[10], &code) < 0 || events_num(f[12], &hard) < 0 ||
        events_num(f[13], &next) < 0 || t < 0 || size < 0 || code < 0 ||
        code > 999 || (hard != 0 && hard != 1) || next < 0)
        return 1;
    at = strrchr(f[7], '@');
    if (db->pg != NULL) {
        char num[5][24];
        const char *v[16] = {f[1],   num[0], f[3],   f[4],
                             f[5],   f[6],   f[7],   at ? at + 1 : "",
                             f[8],   num[1], num[2], f[11],
                             num[3], num[4], f[14],  f[15]};

        /* written out again: "+5" and " 5" are numbers to strtoll */
        snprintf(num[0], sizeof(num[0]), "%lld", t);
        snprintf(num[1], sizeof(num[1]), "%lld", size);
        snprintf(num[2], sizeof(num[2]), "%lld", code);
        snprintf(num[3], sizeof(num[3]), "%lld", hard);
        snprintf(num[4], sizeof(num[4]), "%lld", next);

        if (events_pg_insert(db->pg, v, e) < 0)
            return -1;
        goto suppress;
    }
    sqlite3_bind_text(db->ins, 1, f[1], -1, SQLITE_STATIC);
    sqlite3_bind_int64(db->ins, 2, t);
    sqlite3_bind_text(db->ins, 3, f[3], -1, SQLITE_STATIC);
    sqlite3_bind_text(db->ins, 4, f[4], -1, SQLITE_STATIC);
    sqlite3_bind_text(db->ins, 5, f[5], -1, SQLITE_STATIC);
    sqlite3_bind_text(db->ins, 6, f[6], -1, SQLITE_STATIC);
    sqlite3_bind_text(db->ins, 7, f[7], -1, SQLITE_STATIC);
    sqlite3_bind_text(db->ins, 8, at ? at + 1 : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(db->ins, 9, f[8], -1, SQLITE_STATIC);
    sqlite3_bind_int64(db->ins, 10, size);
    sqlite3_bind_int64(db->ins, 11, code);
    sqlite3_bind_text(db->ins, 12, f[11], -1, SQLITE_STATIC);
    sqlite3_bind_int64(db->ins, 13, hard);
    sqlite3_bind_int64(db->ins, 14, next);
    sqlite3_bind_text(db->ins, 15, f[14], -1, SQLITE_STATIC);
    sqlite3_bind_text(db->ins, 16, f[15], -1, SQLITE_STATIC);
    if (events_db_step(db, db->ins, e, "insert event") < 0)
        return -1;
suppress:
    /* the entry lasts expiry_s from the event, not from its insert: a
     * replay of an old spool gives what a live write would have */
    until = expiry_s > 0 ? t / 1000000 + expiry_s : 0;
    if (strcmp(f[3], "bounced") == 0 && hard && f[7][0] != '\0') {
        char reason[300];

        snprintf(reason, sizeof(reason), "hard bounce %lld %s", code, f[11]);
        if (events_db_suppress_add(db, f[7], suppress_stream ? f[8] : "",
                                   reason, t / 1000000, until, e) < 0)
            return -1;
    }
    /* ---- verp: a complaint suppresses its recipient too */
    if (strcmp(f[3], "complained") == 0 && f[7][0] != '\0' &&
        events_db_suppress_add(db, f[7], suppress_stream ? f[8] : "",
                               "complaint", t / 1000000, until, e) < 0)
        return -1;
    /* ---- end verp */
    /* ---- track: a one-click unsubscribe suppresses its recipient */
    if (strcmp(f[3], "unsubscribed") == 0 && f[7][0] != '\0' &&
        events_db_suppress_add(db, f[7], suppress_stream ? f[8] : "",
                               "unsubscribe", t / 1000000, until, e) < 0)
        return -1;
    /* ---- end track */
    return 0;
}

/* --------------------------------------------------- the suppression */

int
events_db_suppress_add(struct events_db *db, const char *rcpt,
                       const char *stream, const char *reason,
                       long long time_s, long long expires_s, struct err *e)
{
    long long now = (long long)time(NULL);

    if (expires_s < 0)
        expires_s = 0;
    if (db->pg != NULL) {
        char ts[32], xs[32], ns[32];
        const char *v[6] = {rcpt, stream ? stream : "", reason, ts, xs, ns};

        snprintf(ts, sizeof(ts), "%lld", time_s);
        snprintf(xs, sizeof(xs), "%lld", expires_s);
        snprintf(ns, sizeof(ns), "%lld", now);
        return events_pg_suppress_add(db->pg, v, e);
    }
    if (db->sup_add == NULL)
        return err_set(e, ERR_INTERNAL, "the store is open read-only");
    sqlite3_bind_text(db->sup_add, 1, rcpt, -1, SQLITE_STATIC);
    sqlite3_bind_text(db->sup_add, 2, stream ? stream : "", -1, SQLITE_STATIC);
    sqlite3_bind_text(db->sup_add, 3, reason, -1, SQLITE_STATIC);
    sqlite3_bind_int64(db->sup_add, 4, time_s);
    sqlite3_bind_int64(db->sup_add, 5, expires_s);
    sqlite3_bind_int64(db->sup_add, 6, now);
    if (events_db_step(db, db->sup_add, e, "add to the suppression list") < 0)
        return -1;
    return sqlite3_changes(db->db) > 0 ? 1 : 0;
}

int
events_db_suppress_remove(struct events_db *db, const char *rcpt,
                          const char *stream, struct err *e)
{
    sqlite3_stmt *st;
    int rc;

    if (db->pg != NULL) {
        const char *v[2] = {rcpt, stream};
        long long n = events_pg_query(db->pg, EVENTS_SQL_SUP_REMOVE, 2, v,
                                      NULL, NULL, e);

        return n < 0 ? -1 : n > 0 ? 1 : 0;
    }
    if (sqlite3_prepare_v2(db->db, EVENTS_SQL_SUP_REMOVE, -1, &st, NULL) !=
        SQLITE_OK)
        return events_db_err(db, e, "remove");
    sqlite3_bind_text(st, 1, rcpt, -1, SQLITE_STATIC);
    if (stream != NULL)
        sqlite3_bind_text(st, 2, stream, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return events_db_err(db, e, "remove");
    return sqlite3_changes(db->db) > 0 ? 1 : 0;
}

struct events_pg_sup {
    events_db_suppress_cb cb;
    void *ctx;
};

static int
events_pg_sup_row(void *ctx, int ncols, const char *const *v)
{
    struct events_pg_sup *ps = ctx;

    if (ncols < 5)
        return -1;
    return ps->cb(ps->ctx, v[0], v[1], v[2], strtoll(v[3], NULL, 10),
                  strtoll(v[4], NULL, 10));
}

int
events_db_suppress_list(struct events_db *db, events_db_suppress_cb cb,
                        void *ctx, struct err *e)
{
    sqlite3_stmt *st;
    int rc;

    if (db->pg != NULL) {
        struct events_pg_sup ps = {cb, ctx};

        return events_pg_query(db->pg, EVENTS_SQL_SUP_LIST, 0, NULL,
                               events_pg_sup_row, &ps, e) < 0
                   ? -1
                   : 0;
    }
    if (sqlite3_prepare_v2(db->db, EVENTS_SQL_SUP_LIST, -1, &st, NULL) !=
        SQLITE_OK)
        return events_db_err(db, e, "list");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (cb(ctx, (const char *)sqlite3_column_text(st, 0),
               (const char *)sqlite3_column_text(st, 1),
               (const char *)sqlite3_column_text(st, 2),
               sqlite3_column_int64(st, 3), sqlite3_column_int64(st, 4)) < 0)
            break;
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return events_db_err(db, e, "list");
    return 0;
}

/* events_db_why - "REASON, YYYY-MM-DD" into why (n octets), and ",
 * until YYYY-MM-DD" after it for an entry that expires */
static void
events_db_why(char *why, size_t n, const char *reason, long long time_s,
              long long expires_s)
{
    time_t t = (time_t)time_s, x = (time_t)expires_s;
    char date[32] = "", until[32] = "";
    struct tm tm;

    if (gmtime_r(&t, &tm) != NULL)
        strftime(date, sizeof(date), "%Y-%m-%d", &tm);
    if (expires_s > 0 && gmtime_r(&x, &tm) != NULL)
        strftime(until, sizeof(until), ", until %Y-%m-%d", &tm);
    snprintf(why, n, "%s, %s%s", reason ? reason : "", date, until);
    /* the text goes into an SMTP reply: no stored reason (an
     * argument of suppress add, a remote's words) may end its line */
    for (; *why != '\0'; why++)
        if ((unsigned char)*why < 0x20 || *why == 0x7f)
            *why = '?';
}

int
events_db_suppress_find(struct events_db *db, const char *rcpt,
                        const char *stream, char *why, size_t n, struct err *e)
{
    char low[EVENTS_ADDR_MAX];
    long long now = (long long)time(NULL);
    size_t i;
    int rc;

    /* lower-cased here, as lower() does it (ASCII), so the lookup is a
     * plain key: one B-tree search */
    for (i = 0; rcpt[i] != '\0' && i < sizeof(low) - 1; i++)
        low[i] = (char)tolower((unsigned char)rcpt[i]);
    low[i] = '\0';
    if (rcpt[i] != '\0')
        return 0; /* longer than any address: never listed */
    if (db->pg != NULL) {
        char reason[512];
        long long ts = 0, xs = 0;

        rc = events_pg_suppress_find(db->pg, low, stream, now, reason,
                                     sizeof(reason), &ts, &xs, e);
        if (rc == 1)
            events_db_why(why, n, reason, ts, xs);
        return rc;
    }
    if (db->sup_find == NULL)
        return err_set(e, ERR_CONFIG, EVENTS_SQL_UNMIGRATED);
    sqlite3_bind_text(db->sup_find, 1, low, -1, SQLITE_STATIC);
    sqlite3_bind_text(db->sup_find, 2, stream ? stream : "", -1,
                      SQLITE_STATIC);
    sqlite3_bind_int64(db->sup_find, 3, now);
    rc = sqlite3_step(db->sup_find);
    if (rc == SQLITE_ROW)
        events_db_why(why, n,
                      (const char *)sqlite3_column_text(db->sup_find, 0),
                      sqlite3_column_int64(db->sup_find, 1),
                      sqlite3_column_int64(db->sup_find, 2));
    sqlite3_reset(db->sup_find);
    sqlite3_clear_bindings(db->sup_find);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return events_db_err(db, e, "suppression lookup");
}

/* ------------------------------------------------------------ reports */

struct events_rep {
    events_db_report_cb cb;
    void *ctx;
    long long bucket_s; /* the key is a day's or an hour's number */
};

/* events_rep_row - hand row to cb, its key written out as a date when
 * it is the number of a day or an hour */
static int
events_rep_row(const struct events_rep *pr, struct events_report_row *row)
{
    char date[40];
    long long b;

    if (pr->bucket_s > 0 && events_num(row->key, &b) == 0) {
        time_t t = (time_t)(b * pr->bucket_s);
        struct tm tm;

        date[0] = '\0';
        if (gmtime_r(&t, &tm) != NULL)
            strftime(date, sizeof(date),
                     pr->bucket_s == 86400 ? "%Y-%m-%d" : "%Y-%m-%d %H:00",
                     &tm);
        row->key = date;
    }
    return pr->cb(pr->ctx, row);
}

static int
events_pg_rep_row(void *ctx, int ncols, const char *const *v)
{
    struct events_rep *pr = ctx;
    struct events_report_row row;

    if (ncols < 14)
        return -1;
    row.key = v[0];
    row.received = strtoull(v[1], NULL, 10);
    row.delivered = strtoull(v[2], NULL, 10);
    row.deferred = strtoull(v[3], NULL, 10);
    row.bounced_hard = strtoull(v[4], NULL, 10);
    row.bounced_soft = strtoull(v[5], NULL, 10);
    row.expired = strtoull(v[6], NULL, 10);
    row.suppressed = strtoull(v[7], NULL, 10);
    row.complained = strtoull(v[8], NULL, 10); /* ---- verp */
    /* ---- track */
    row.opened_human = strtoull(v[9], NULL, 10);
    row.opened_machine = strtoull(v[10], NULL, 10);
    row.clicked_human = strtoull(v[11], NULL, 10);
    row.clicked_machine = strtoull(v[12], NULL, 10);
    row.unsubscribed = strtoull(v[13], NULL, 10);
    /* ---- end track */
    return events_rep_row(pr, &row);
}

int
events_db_report(struct events_db *db, const char *by, long long since,
                 long long until, events_db_report_cb cb, void *ctx,
                 struct err *e)
{
    return events_db_report_in(db, by, NULL, since, until, cb, ctx, e);
}

int
events_db_report_in(struct events_db *db, const char *by, const char *stream,
                    long long since, long long until, events_db_report_cb cb,
                    void *ctx, struct err *e)
{
    const char *key;
    char sql[1024];
    sqlite3_stmt *st;
    long long lo = since > 0 ? since * 1000000 : 0;
    long long hi = until > 0 ? until * 1000000 : INT64_MAX;
    struct events_rep pr = {cb, ctx, 0};
    int rc;

    key = events_sql_key(db->pg ? EVENTS_SQL_PG : EVENTS_SQL_SQLITE, by,
                         &pr.bucket_s);
    if (key == NULL)
        return err_set(e, ERR_INPUT,
                       "--by %s: want day, hour, domain, sender or stream",
                       by);
    snprintf(sql, sizeof(sql), EVENTS_SQL_REPORT, key,
             stream != NULL ? EVENTS_SQL_REPORT_STREAM : "");
    if (db->pg != NULL) {
        char a[32], b[32];
        const char *v[3] = {a, b, stream};

        snprintf(a, sizeof(a), "%lld", lo);
        snprintf(b, sizeof(b), "%lld", hi);
        return events_pg_query(db->pg, sql, stream != NULL ? 3 : 2, v,
                               events_pg_rep_row, &pr, e) < 0
                   ? -1
                   : 0;
    }
    if (sqlite3_prepare_v2(db->db, sql, -1, &st, NULL) != SQLITE_OK)
        return events_db_err(db, e, "report");
    sqlite3_bind_int64(st, 1, lo);
    sqlite3_bind_int64(st, 2, hi);
    if (stream != NULL)
        sqlite3_bind_text(st, 3, stream, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct events_report_row row;

        row.key = (const char *)sqlite3_column_text(st, 0);
        if (row.key == NULL)
            row.key = "";
        row.received = (unsigned long long)sqlite3_column_int64(st, 1);
        row.delivered = (unsigned long long)sqlite3_column_int64(st, 2);
        row.deferred = (unsigned long long)sqlite3_column_int64(st, 3);
        row.bounced_hard = (unsigned long long)sqlite3_column_int64(st, 4);
        row.bounced_soft = (unsigned long long)sqlite3_column_int64(st, 5);
        row.expired = (unsigned long long)sqlite3_column_int64(st, 6);
        row.suppressed = (unsigned long long)sqlite3_column_int64(st, 7);
        row.complained = (unsigned long long)sqlite3_column_int64(st, 8);
        /* ---- track */
        row.opened_human = (unsigned long long)sqlite3_column_int64(st, 9);
        row.opened_machine = (unsigned long long)sqlite3_column_int64(st, 10);
        row.clicked_human = (unsigned long long)sqlite3_column_int64(st, 11);
        row.clicked_machine = (unsigned long long)sqlite3_column_int64(st, 12);
        row.unsubscribed = (unsigned long long)sqlite3_column_int64(st, 13);
        /* ---- end track */
        if (events_rep_row(&pr, &row) < 0)
            break;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return events_db_err(db, e, "report");
    return 0;
}

static const char *const events_hist_names[] = {
    "time", "type", "qid", "message_id", "sender",   "recipient", "stream",
    "size", "code", "dsn", "hard",       "next_try", "relay",     "text"};

/* events_hist_row - hand one history row (vals[0..14) as stored, the
 * times in microseconds) to cb with the times written out */
static int
events_hist_row(const char **vals, long long us, long long nus,
                events_db_history_cb cb, void *ctx)
{
    char when[40], next[40];
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    size_t k;

    k = gmtime_r(&t, &tm)
            ? strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm)
            : 0;
    snprintf(when + k, sizeof(when) - k, ".%03dZ", (int)(us % 1000000 / 1000));
    next[0] = '\0';
    t = (time_t)(nus / 1000000);
    if (nus > 0 && gmtime_r(&t, &tm))
        strftime(next, sizeof(next), "%Y-%m-%dT%H:%M:%SZ", &tm);
    vals[0] = when;
    vals[11] = next;
    return cb(ctx, 14, events_hist_names, vals);
}

struct events_pg_hist {
    events_db_history_cb cb;
    void *ctx;
};

static int
events_pg_hist_row(void *ctx, int ncols, const char *const *v)
{
    struct events_pg_hist *ph = ctx;
    const char *vals[14];
    int i;

    if (ncols < 14)
        return -1;
    for (i = 0; i < 14; i++)
        vals[i] = v[i];
    return events_hist_row(vals, strtoll(v[0], NULL, 10),
                           strtoll(v[11], NULL, 10), ph->cb, ph->ctx);
}

int
events_db_history(struct events_db *db, const char *msgid, const char *rcpt,
                  events_db_history_cb cb, void *ctx, struct err *e)
{
    const char *vals[14], *params[2];
    char sql[1024], cond[64];
    sqlite3_stmt *st;
    int rc, i, np = 0;

    if (msgid == NULL && rcpt == NULL)
        return err_set(e, ERR_INPUT, "a Message-ID or a recipient, please");
    if (msgid != NULL)
        params[np++] = msgid;
    if (rcpt != NULL)
        params[np++] = rcpt;
    /* the recipient is the last parameter: $2 after a Message-ID, else $1 */
    snprintf(cond, sizeof(cond), EVENTS_SQL_HISTORY_RCPT, np);
    snprintf(sql, sizeof(sql), EVENTS_SQL_HISTORY,
             msgid != NULL ? EVENTS_SQL_HISTORY_MSGID : "",
             msgid != NULL && rcpt != NULL ? " AND " : "",
             rcpt != NULL ? cond : "");
    if (db->pg != NULL) {
        struct events_pg_hist ph = {cb, ctx};

        return events_pg_query(db->pg, sql, np, params, events_pg_hist_row,
                               &ph, e) < 0
                   ? -1
                   : 0;
    }
    if (sqlite3_prepare_v2(db->db, sql, -1, &st, NULL) != SQLITE_OK)
        return events_db_err(db, e, "events");
    for (i = 0; i < np; i++)
        sqlite3_bind_text(st, i + 1, params[i], -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        for (i = 0; i < 14; i++) {
            vals[i] = (const char *)sqlite3_column_text(st, i);
            if (vals[i] == NULL)
                vals[i] = "";
        }
        if (events_hist_row(vals, sqlite3_column_int64(st, 0),
                            sqlite3_column_int64(st, 11), cb, ctx) < 0)
            break;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return events_db_err(db, e, "events");
    return 0;
}

/* ---- verp */
struct events_recv {
    events_db_received_cb cb;
    void *ctx;
};

static int
events_pg_recv_row(void *ctx, int ncols, const char *const *v)
{
    struct events_recv *r = ctx;

    if (ncols < 5)
        return -1;
    /* non-zero from cb: enough rows; events_pg_query stops on < 0 */
    return r->cb(r->ctx, v[0], v[1], v[2], v[3], v[4]) != 0 ? -1 : 0;
}

int
events_db_received(struct events_db *db, const char *qid, const char *msgid,
                   events_db_received_cb cb, void *ctx, struct err *e)
{
    const char *sql = qid != NULL ? EVENTS_SQL_RECEIVED_BY_QID
                                  : EVENTS_SQL_RECEIVED_BY_MSGID;
    const char *key = qid != NULL ? qid : msgid;
    sqlite3_stmt *st;
    int rc;

    if (db->pg != NULL) {
        struct events_recv r = {cb, ctx};

        return events_pg_query(db->pg, sql, 1, &key, events_pg_recv_row, &r,
                               e) < 0
                   ? -1
                   : 0;
    }
    if (sqlite3_prepare_v2(db->db, sql, -1, &st, NULL) != SQLITE_OK)
        return events_db_err(db, e, "received");
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *v[5];
        int i;

        for (i = 0; i < 5; i++) {
            v[i] = (const char *)sqlite3_column_text(st, i);
            if (v[i] == NULL)
                v[i] = "";
        }
        if (cb(ctx, v[0], v[1], v[2], v[3], v[4]) != 0) {
            rc = SQLITE_DONE;
            break;
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return events_db_err(db, e, "received");
    return 0;
}
/* ---- end verp */
