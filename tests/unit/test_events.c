/*
 * test_events - the events writer and the report SQL
 *
 * A real SQLite store in a temporary directory. The writer: a full
 * buffer goes to the spool, a locked store makes batches go to the
 * spool, and once the store works again every event is in it exactly
 * once (counted by unique id). The reports: counts per type, hard and
 * soft bounces, per domain and day; a hard bounce puts its recipient on
 * the suppression list. Expiring entries: lookups skip the expired
 * ones, an add (by hand or by a bounce) replaces them, a live one is
 * kept; a store made before the expires column gets it at open with
 * its rows.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "queue/events.h"
#include "queue/events_db.h"

static char dir[] = "/tmp/test_events.XXXXXX";
static char store[512], dbpath[256];

static long long
count(const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    long long n = -1;

    assert_int_equal(sqlite3_open(dbpath, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return n;
}

static int
setup(void **state)
{
    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(dbpath, sizeof(dbpath), "%s/events.db", dir);
    snprintf(store, sizeof(store), "sqlite:%s", dbpath);
    return 0;
}

static int
teardown(void **state)
{
    char cmd[300];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void
emit_n(struct events *ev, int n, enum events_type t, const char *rcpt)
{
    struct events_rec r;
    int i;

    memset(&r, 0, sizeof(r));
    r.type = t;
    r.qid = "4ABCDEF";
    r.msgid = "<m1@example.com>";
    r.sender = "news@example.com";
    r.rcpt = rcpt;
    r.size = 1234;
    r.text = "tab\there, newline\nthere";
    for (i = 0; i < n; i++)
        events_emit(ev, &r);
}

/* buffer of 4, store locked by another connection: everything spools;
 * unlocked: all replayed, no loss, no duplicate. */
static void
test_spool_and_replay(void **state)
{
    struct events_settings s = {0};
    struct events_stats st;
    struct events *ev;
    struct err e;
    sqlite3 *lockdb;

    (void)state;
    unlink(dbpath);
    s.store = store;
    s.buffer_max = 4;
    s.batch_max = 3;
    s.batch_ms = 10;
    err_clear(&e);
    ev = events_open(&s, &e);
    assert_non_null(ev);
    assert_int_equal(sqlite3_open(dbpath, &lockdb), SQLITE_OK);
    assert_int_equal(sqlite3_exec(lockdb, "BEGIN EXCLUSIVE", NULL, NULL, NULL),
                     SQLITE_OK);
    emit_n(ev, 200, EVENTS_DELIVERED, "a@example.net");
    usleep(300 * 1000);
    events_stats(ev, &st);
    if (st.spooled == 0)
        fail_msg("got %zu spooled while the store is locked, want > 0",
                 st.spooled);
    assert_int_equal(st.lost, 0);
    assert_int_equal(sqlite3_exec(lockdb, "COMMIT", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(lockdb);
    /* the store is retried after a second */
    assert_int_equal(events_flush(ev, 10000), 0);
    events_stats(ev, &st);
    assert_int_equal(st.store_ok, 1);
    assert_int_equal(st.spooled, 0);
    events_close(ev);
    assert_int_equal(count("SELECT count(*) FROM events"), 200);
    assert_int_equal(count("SELECT count(DISTINCT uid) FROM events"), 200);
    assert_int_equal(
        count("SELECT count(*) FROM events WHERE text = "
              "'tab' || char(9) || 'here, newline' || char(10) || 'there'"),
        200);
}

/* at stop: the buffer goes to the spool, later events too; the next
 * start replays them */
static void
test_drain(void **state)
{
    struct events_settings s = {0};
    struct events_stats st;
    struct events *ev;
    struct err e;
    sqlite3 *lockdb;

    (void)state;
    unlink(dbpath);
    s.store = store;
    s.buffer_max = 1000;
    s.batch_ms = 10;
    err_clear(&e);
    ev = events_open(&s, &e);
    assert_non_null(ev);
    assert_int_equal(sqlite3_open(dbpath, &lockdb), SQLITE_OK);
    assert_int_equal(sqlite3_exec(lockdb, "BEGIN EXCLUSIVE", NULL, NULL, NULL),
                     SQLITE_OK);
    emit_n(ev, 10, EVENTS_DEFERRED, "d@example.net");
    events_drain(ev, 2000);
    emit_n(ev, 5, EVENTS_DEFERRED, "d@example.net");
    events_stats(ev, &st);
    assert_int_equal(st.buffered, 0);
    if (st.spooled != 15)
        fail_msg("got %zu spooled after the drain, want 15", st.spooled);
    assert_int_equal(sqlite3_exec(lockdb, "COMMIT", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(lockdb);
    events_close(ev);
    ev = events_open(&s, &e);
    assert_non_null(ev);
    assert_int_equal(events_flush(ev, 5000), 0);
    events_close(ev);
    assert_int_equal(count("SELECT count(*) FROM events WHERE type = "
                           "'deferred'"),
                     15);
}

/* a replay cut short (the spool replayed twice) inserts nothing twice */
static void
test_replay_twice(void **state)
{
    struct events_settings s = {0};
    struct events_rec r;
    struct events *ev;
    struct events_db *db;
    struct buf b;
    struct err e;
    char spool[300], cmd[700];
    FILE *fp;
    int i;

    (void)state;
    unlink(dbpath);
    snprintf(spool, sizeof(spool), "%s.spool", dbpath);
    memset(&r, 0, sizeof(r));
    r.type = EVENTS_RECEIVED;
    r.rcpt = "x@example.org";
    buf_init(&b, 0);
    err_clear(&e);
    for (i = 0; i < 10; i++) {
        char uid[16];

        snprintf(uid, sizeof(uid), "u%d", i);
        assert_int_equal(events_line(&b, uid, 1000000 + i, &r, &e), 0);
    }
    assert_non_null(fp = fopen(spool, "w"));
    fwrite(b.data, 1, b.len, fp);
    fputs("E1\ttorn", fp); /* a crash mid-line */
    fclose(fp);
    /* the same lines as a replay file left by a crash: both replayed */
    snprintf(cmd, sizeof(cmd), "head -n 10 '%s' > '%s.replay'", spool, spool);
    assert_int_equal(system(cmd), 0);
    buf_fini(&b);
    s.store = store;
    s.buffer_max = 100;
    ev = events_open(&s, &e);
    assert_non_null(ev);
    assert_int_equal(events_flush(ev, 5000), 0);
    events_close(ev);
    assert_int_equal(count("SELECT count(*) FROM events"), 10);
    assert_int_equal(access(spool, F_OK), -1);
    (void)db;
}

struct rows {
    int n;
    struct events_report_row r[8];
    char keys[8][64];
};

static int
keep_row(void *ctx, const struct events_report_row *row)
{
    struct rows *rs = ctx;

    if (rs->n < 8) {
        rs->r[rs->n] = *row;
        snprintf(rs->keys[rs->n], 64, "%s", row->key);
        rs->n++;
    }
    return 0;
}

static void
test_report(void **state)
{
    struct events_settings s = {0};
    struct events_rec r;
    struct events *ev;
    struct events_db *db;
    struct rows rs;
    struct err e;
    char why[200];

    (void)state;
    unlink(dbpath);
    s.store = store;
    s.buffer_max = 1000;
    err_clear(&e);
    ev = events_open(&s, &e);
    assert_non_null(ev);
    emit_n(ev, 3, EVENTS_RECEIVED, "a@one.example");
    emit_n(ev, 2, EVENTS_DELIVERED, "a@one.example");
    emit_n(ev, 1, EVENTS_DEFERRED, "a@one.example");
    emit_n(ev, 2, EVENTS_RECEIVED, "b@two.example");
    memset(&r, 0, sizeof(r));
    r.type = EVENTS_BOUNCED;
    r.rcpt = "B@Two.example";
    r.code = 550;
    r.dsn = "5.1.1";
    r.hard = events_bounce_is_hard(550, "5.1.1");
    events_emit(ev, &r);
    r.rcpt = "c@two.example";
    r.code = 552;
    r.dsn = "5.2.2";
    r.hard = events_bounce_is_hard(552, "5.2.2");
    events_emit(ev, &r);
    assert_int_equal(events_flush(ev, 5000), 0);
    /* the hard bounce is suppressed (any case), the soft one is not */
    assert_int_equal(
        events_suppressed(ev, "b@two.example", "", why, sizeof(why)), 1);
    if (strncmp(why, "hard bounce 550 5.1.1, ", 23) != 0)
        fail_msg("got why \"%s\"", why);
    assert_int_equal(
        events_suppressed(ev, "c@two.example", "", why, sizeof(why)), 0);
    events_close(ev);

    db = events_db_open(store, EVENTS_DB_READONLY, &e);
    assert_non_null(db);
    memset(&rs, 0, sizeof(rs));
    assert_int_equal(events_db_report(db, "domain", 0, 0, keep_row, &rs, &e),
                     0);
    assert_int_equal(rs.n, 2);
    assert_string_equal(rs.keys[0], "one.example");
    assert_int_equal(rs.r[0].received, 3);
    assert_int_equal(rs.r[0].delivered, 2);
    assert_int_equal(rs.r[0].deferred, 1);
    assert_string_equal(rs.keys[1], "two.example");
    assert_int_equal(rs.r[1].received, 2);
    assert_int_equal(rs.r[1].bounced_hard, 1);
    assert_int_equal(rs.r[1].bounced_soft, 1);
    memset(&rs, 0, sizeof(rs));
    assert_int_equal(events_db_report(db, NULL, 0, 0, keep_row, &rs, &e), 0);
    assert_int_equal(rs.n, 1);
    assert_int_equal(rs.r[0].received, 5);
    /* until before everything: nothing */
    memset(&rs, 0, sizeof(rs));
    assert_int_equal(events_db_report(db, "day", 0, 1000, keep_row, &rs, &e),
                     0);
    assert_int_equal(rs.n, 0);
    assert_int_equal(events_db_report(db, "week", 0, 0, keep_row, &rs, &e),
                     -1);
    events_db_close(db);
}

static void
test_hard_soft(void **state)
{
    (void)state;
    assert_int_equal(events_bounce_is_hard(550, "5.1.1"), 1);
    assert_int_equal(events_bounce_is_hard(550, "5.2.1"), 1);
    assert_int_equal(events_bounce_is_hard(552, "5.2.2"), 0);
    assert_int_equal(events_bounce_is_hard(550, "5.7.1"), 0);
    assert_int_equal(events_bounce_is_hard(450, "4.1.1"), 0);
    assert_int_equal(events_bounce_is_hard(550, NULL), 1);
    assert_int_equal(events_bounce_is_hard(550, "5.0.0"), 1);
    assert_int_equal(events_bounce_is_hard(554, "5.0.0"), 0);
}

static void
test_msgid(void **state)
{
    static const char m1[] =
        "From: a@b\r\nmessage-id:  <x@y>  \r\n\r\nBody\r\n";
    static const char m2[] = "From: a@b\r\n\r\nMessage-ID: <no@no>\r\n";
    static const char m3[] = "Message-ID:\r\n <f@g>\r\nX: y\r\n\r\n";
    struct iovec v;
    char out[64];

    (void)state;
    v.iov_base = (void *)m1;
    v.iov_len = sizeof(m1) - 1;
    events_msgid(&v, 1, out, sizeof(out));
    assert_string_equal(out, "<x@y>");
    v.iov_base = (void *)m2;
    v.iov_len = sizeof(m2) - 1;
    events_msgid(&v, 1, out, sizeof(out));
    assert_string_equal(out, "");
    v.iov_base = (void *)m3;
    v.iov_len = sizeof(m3) - 1;
    events_msgid(&v, 1, out, sizeof(out));
    assert_string_equal(out, "<f@g>");
}

/* stream_map by user, then sender; suppress_scope = stream keeps a
 * hard bounce to its stream */
static void
test_streams(void **state)
{
    struct events_settings s = {0};
    struct events_rec r;
    struct events *ev;
    struct err e;
    char map[300], out[64], why[200];
    FILE *fp;

    (void)state;
    unlink(dbpath);
    snprintf(map, sizeof(map), "%s/streams", dir);
    assert_non_null(fp = fopen(map, "w"));
    fputs("/^alice$/ transactional\n/^news@example\\.com$/ "
          "newsletters\n",
          fp);
    fclose(fp);
    s.store = store;
    s.stream_map = map;
    s.stream_header = 1;
    s.buffer_max = 100;
    s.suppress_stream = 1;
    err_clear(&e);
    ev = events_open(&s, &e);
    if (ev == NULL)
        fail_msg("events_open: %s", e.text);
    assert_int_equal(
        events_stream(ev, NULL, NULL, "news@example.com", out, sizeof(out)),
        1);
    assert_string_equal(out, "newsletters");
    /* a stream a trusted client named (stream_header) comes first */
    assert_int_equal(events_stream(ev, "alerts", NULL, "news@example.com", out,
                                   sizeof(out)),
                     1);
    assert_string_equal(out, "alerts");
    assert_int_equal(
        events_stream(ev, "", NULL, "news@example.com", out, sizeof(out)), 1);
    assert_string_equal(out, "newsletters");
    assert_int_equal(
        events_stream(ev, NULL, "alice", "news@example.com", out, sizeof(out)),
        1);
    assert_string_equal(out, "transactional");
    assert_int_equal(
        events_stream(ev, NULL, NULL, "bob@example.com", out, sizeof(out)), 1);
    assert_string_equal(out, "");
    memset(&r, 0, sizeof(r));
    r.type = EVENTS_BOUNCED;
    r.rcpt = "gone@example.net";
    r.stream = "newsletters";
    r.code = 550;
    r.dsn = "5.1.1";
    r.hard = 1;
    events_emit(ev, &r);
    assert_int_equal(events_flush(ev, 5000), 0);
    assert_int_equal(events_suppressed(ev, "gone@example.net", "newsletters",
                                       why, sizeof(why)),
                     1);
    assert_int_equal(events_suppressed(ev, "gone@example.net", "transactional",
                                       why, sizeof(why)),
                     0);
    events_close(ev);
    /* without stream_map: no streams, events_stream says so */
    assert_int_equal(
        events_stream(NULL, NULL, NULL, "news@example.com", out, sizeof(out)),
        0);
    /* a bad map is refused at open with its line */
    assert_non_null(fp = fopen(map, "w"));
    fputs("/(unclosed/ x\n", fp);
    fclose(fp);
    err_clear(&e);
    assert_null(events_open(&s, &e));
    if (strstr(e.text, "streams:1") == NULL)
        fail_msg("got \"%s\", want the map's file:line", e.text);
}

/* put_line - events_db_put of a copy of line (it is modified in place) */
static int
put_line(struct events_db *db, const char *line, struct err *e)
{
    char buf[512];

    snprintf(buf, sizeof(buf), "%s", line);
    return events_db_put(db, buf, strlen(buf), 0, 0, e);
}

static int
count_row(void *ctx, int ncols, const char *const *names,
          const char *const *values)
{
    (void)ncols;
    (void)names;
    (void)values;
    ++*(int *)ctx;
    return 0;
}

/* lines a store would refuse (and with them their batch, for ever on
 * replay) are malformed or mended: octets that are not UTF-8 become
 * '?', numbers out of their column's range are refused */
static void
test_put_mended(void **state)
{
    struct events_db *db;
    struct err e;
    int n = 0;

    (void)state;
    err_clear(&e);
    db = events_db_open("sqlite::memory:", EVENTS_DB_CREATE, &e);
    assert_non_null(db);
    assert_int_equal(put_line(db,
                              "E1\tu1\t1000\treceived\tQ1\t<a\xff"
                              "b@x>\ts@x\tr@x\t\t10\t0\t\t0\t0\t\t\n",
                              &e),
                     0);
    assert_int_equal(events_db_history(db, "<a?b@x>", NULL, count_row, &n, &e),
                     0);
    assert_int_equal(n, 1);
    /* a truncated sequence, a surrogate, an overlong form */
    assert_int_equal(put_line(db,
                              "E1\tu2\t1000\treceived\tQ1\t<\xe2\x82"
                              "\xed\xa0\x80\xc0\xaf>\ts@x\tr@x\t\t10\t0\t\t0"
                              "\t0\t\t\n",
                              &e),
                     0);
    n = 0;
    assert_int_equal(
        events_db_history(db, "<?\?\?\?\?\?\?>", NULL, count_row, &n, &e), 0);
    assert_int_equal(n, 1);
    /* well-formed UTF-8 stays as it is */
    assert_int_equal(put_line(db,
                              "E1\tu3\t1000\treceived\tQ1\t<\xc3\xa9t\xc3"
                              "\xa9@x>\ts@x\tr@x\t\t10\t0\t\t0\t0\t\t\n",
                              &e),
                     0);
    n = 0;
    assert_int_equal(events_db_history(db, "<\xc3\xa9t\xc3\xa9@x>", NULL,
                                       count_row, &n, &e),
                     0);
    assert_int_equal(n, 1);
    /* code, hard, size and times out of range */
    assert_int_equal(put_line(db,
                              "E1\tu4\t1000\tbounced\tQ\tm\ts\tr@x\t\t10\t"
                              "5000\t\t0\t0\t\t\n",
                              &e),
                     1);
    assert_int_equal(put_line(db,
                              "E1\tu5\t1000\tbounced\tQ\tm\ts\tr@x\t\t10\t"
                              "550\t\t2\t0\t\t\n",
                              &e),
                     1);
    assert_int_equal(put_line(db,
                              "E1\tu6\t-5\tbounced\tQ\tm\ts\tr@x\t\t-10\t"
                              "550\t\t1\t0\t\t\n",
                              &e),
                     1);
    events_db_close(db);
}

/* store names: a PostgreSQL URI with a password in it is refused (it
 * would be logged), one without needs a spool of its own, an unknown
 * scheme and a relative SQLite path are refused */
static void
test_store_names(void **state)
{
    struct events_settings s = {0};
    struct err e;

    (void)state;
    err_clear(&e);
    assert_int_equal(events_db_check("postgresql://relay@db:5432/events", &e),
                     0);
    assert_int_equal(events_db_is_pg("postgresql://relay@db/events"), 1);
    assert_int_equal(events_db_is_pg("sqlite:/x"), 0);
    assert_int_equal(
        events_db_check("postgresql://relay:s3cret@db/events", &e), -1);
    if (strstr(e.text, "password") == NULL || strstr(e.text, "s3cret"))
        fail_msg("got \"%s\"", e.text);
    assert_int_equal(
        events_db_check("postgresql://db/events?password=s3cret", &e), -1);
    assert_int_equal(events_db_check("postgresql://db/events?bogus=1", &e),
                     -1);
    assert_int_equal(events_db_check("sqlite:relative.db", &e), -1);
    assert_int_equal(events_db_check("mysql:x", &e), -1);
    s.store = "postgresql://relay@db/events";
    err_clear(&e);
    assert_null(events_open(&s, &e));
    if (strstr(e.text, "events_spool") == NULL)
        fail_msg("got \"%s\"", e.text);
    s.store = "mysql:x";
    assert_null(events_open(&s, &e));
}

/* ---- events: expiring suppression entries */

struct sup_seen {
    int n;
    char rcpt[4][64], reason[4][64];
    long long expires[4];
};

static int
sup_keep(void *ctx, const char *rcpt, const char *stream, const char *reason,
         long long t, long long expires)
{
    struct sup_seen *ss = ctx;

    (void)stream;
    (void)t;
    if (ss->n < 4) {
        snprintf(ss->rcpt[ss->n], 64, "%s", rcpt);
        snprintf(ss->reason[ss->n], 64, "%s", reason);
        ss->expires[ss->n] = expires;
        ss->n++;
    }
    return 0;
}

/* put_bounce - insert a hard bounce of rcpt at time t (seconds), unique id
 * uid, as the writer's spool holds it */
static int
put_bounce(struct events_db *db, const char *uid, long long t,
           const char *rcpt, long long expiry_s, struct err *e)
{
    char buf[512];

    snprintf(buf, sizeof(buf),
             "E1\t%s\t%lld000000\tbounced\tQ\t<m@x>\ts@x\t%s\t\t10\t550\t"
             "5.1.1\t1\t0\t\t\n",
             uid, t, rcpt);
    return events_db_put(db, buf, strlen(buf), 0, expiry_s, e);
}

static void
test_expiry(void **state)
{
    long long now = (long long)time(NULL);
    struct sup_seen ss;
    struct events_db *db;
    struct err e;
    char why[200], want[200];
    struct tm tm;
    time_t x;

    (void)state;
    unlink(dbpath);
    err_clear(&e);
    db = events_db_open(store, EVENTS_DB_CREATE, &e);
    if (db == NULL)
        fail_msg("open: %s", e.text);
    /* an entry that expired a minute ago, one for an hour, one for ever */
    assert_int_equal(events_db_suppress_add(db, "Old@x", "", "by hand",
                                            now - 3600, now - 60, &e),
                     1);
    assert_int_equal(events_db_suppress_add(db, "soon@x", "", "by hand", now,
                                            now + 3600, &e),
                     1);
    assert_int_equal(
        events_db_suppress_add(db, "never@x", "", "by hand", now, 0, &e), 1);
    assert_int_equal(
        events_db_suppress_find(db, "old@x", "", why, sizeof(why), &e), 0);
    assert_int_equal(
        events_db_suppress_find(db, "soon@x", "", why, sizeof(why), &e), 1);
    x = (time_t)(now + 3600);
    gmtime_r(&x, &tm);
    strftime(want, sizeof(want), ", until %Y-%m-%d", &tm);
    if (strstr(why, want) == NULL || strncmp(why, "by hand, ", 9) != 0)
        fail_msg("got why \"%s\", want \"%s\" in it", why, want);
    assert_int_equal(
        events_db_suppress_find(db, "never@x", "", why, sizeof(why), &e), 1);
    if (strstr(why, "until") != NULL ||
        strlen(why) != strlen("by hand, ") + 10)
        fail_msg("got why \"%s\", want \"by hand, YYYY-MM-DD\"", why);
    /* a stream's entry that expired does not hide a global one */
    assert_int_equal(events_db_suppress_add(db, "never@x", "news", "old",
                                            now - 10, now - 5, &e),
                     1);
    assert_int_equal(
        events_db_suppress_find(db, "never@x", "news", why, sizeof(why), &e),
        1);
    /* a live entry is kept as it is; an expired one is replaced */
    assert_int_equal(
        events_db_suppress_add(db, "soon@x", "", "again", now, now + 60, &e),
        0);
    assert_int_equal(
        events_db_suppress_add(db, "old@x", "", "again", now, 0, &e), 1);
    assert_int_equal(
        events_db_suppress_find(db, "OLD@x", "", why, sizeof(why), &e), 1);
    if (strncmp(why, "again, ", 7) != 0)
        fail_msg("got why \"%s\"", why);
    memset(&ss, 0, sizeof(ss));
    assert_int_equal(events_db_suppress_list(db, sup_keep, &ss, &e), 0);
    assert_int_equal(ss.n, 4);
    assert_string_equal(ss.rcpt[2], "old@x");
    assert_int_equal(ss.expires[2], 0);
    assert_string_equal(ss.rcpt[3], "soon@x");
    assert_string_equal(ss.reason[3], "by hand");
    assert_int_equal(ss.expires[3], now + 3600);

    /* no stored reason ends the SMTP reply's line */
    assert_int_equal(
        events_db_suppress_add(db, "ctl@x", "", "a\r\n250 ok", now, 0, &e), 1);
    assert_int_equal(
        events_db_suppress_find(db, "ctl@x", "", why, sizeof(why), &e), 1);
    if (strncmp(why, "a??250 ok, ", 11) != 0)
        fail_msg("got why \"%s\"", why);

    /* a hard bounce with suppress_expiry: its entry lasts expiry_s from
     * the event; once it has expired the address passes, and the next
     * hard bounce suppresses it again */
    assert_int_equal(put_bounce(db, "b1", now - 100, "gone@x", 50, &e), 0);
    assert_int_equal(
        events_db_suppress_find(db, "gone@x", "", why, sizeof(why), &e), 0);
    assert_int_equal(put_bounce(db, "b2", now, "gone@x", 86400, &e), 0);
    assert_int_equal(
        events_db_suppress_find(db, "gone@x", "", why, sizeof(why), &e), 1);
    if (strncmp(why, "hard bounce 550 5.1.1, ", 23) != 0 ||
        strstr(why, ", until ") == NULL)
        fail_msg("got why \"%s\"", why);
    /* without suppress_expiry: for ever */
    assert_int_equal(put_bounce(db, "b3", now, "perm@x", 0, &e), 0);
    assert_int_equal(count("SELECT expires FROM suppression WHERE rcpt = "
                           "'perm@x'"),
                     0);
    assert_int_equal(count("SELECT expires - t FROM suppression WHERE rcpt "
                           "= 'gone@x'"),
                     86400);
    events_db_close(db);
}

/* a store made before entries could expire: read-only it reads and its
 * lookups fail saying why; the writer's open adds the column and keeps
 * the rows (twice: the second open has nothing to do) */
static void
test_migrate(void **state)
{
    struct events_db *db;
    struct err e;
    sqlite3 *raw;
    char why[200];
    int i;

    (void)state;
    unlink(dbpath);
    assert_int_equal(sqlite3_open(dbpath, &raw), SQLITE_OK);
    assert_int_equal(
        sqlite3_exec(raw,
                     "CREATE TABLE suppression (rcpt TEXT NOT NULL, stream "
                     "TEXT NOT NULL, reason TEXT NOT NULL, t INTEGER NOT "
                     "NULL, PRIMARY KEY (rcpt, stream));"
                     "INSERT INTO suppression VALUES ('kept@x', '', "
                     "'hard bounce 550 5.1.1', 1700000000);",
                     NULL, NULL, NULL),
        SQLITE_OK);
    sqlite3_close(raw);
    err_clear(&e);
    db = events_db_open(store, EVENTS_DB_READONLY, &e);
    if (db == NULL)
        fail_msg("read-only open of an old store: %s", e.text);
    assert_int_equal(
        events_db_suppress_find(db, "kept@x", "", why, sizeof(why), &e), -1);
    if (strstr(e.text, "no expires column") == NULL)
        fail_msg("got \"%s\"", e.text);
    events_db_close(db);
    assert_int_equal(count("SELECT count(*) FROM pragma_table_info("
                           "'suppression') WHERE name = 'expires'"),
                     0);
    for (i = 0; i < 2; i++) {
        err_clear(&e);
        db = events_db_open(store, EVENTS_DB_CREATE, &e);
        if (db == NULL)
            fail_msg("open %d: %s", i, e.text);
        assert_int_equal(
            events_db_suppress_find(db, "kept@x", "", why, sizeof(why), &e),
            1);
        assert_string_equal(why, "hard bounce 550 5.1.1, 2023-11-14");
        events_db_close(db);
    }
    assert_int_equal(count("SELECT count(*) FROM suppression WHERE rcpt = "
                           "'kept@x' AND expires = 0"),
                     1);
    db = events_db_open(store, EVENTS_DB_READONLY, &e);
    assert_non_null(db);
    assert_int_equal(
        events_db_suppress_find(db, "kept@x", "", why, sizeof(why), &e), 1);
    events_db_close(db);
}
/* ---- end events */

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hard_soft),
        cmocka_unit_test(test_msgid),
        cmocka_unit_test(test_spool_and_replay),
        cmocka_unit_test(test_replay_twice),
        cmocka_unit_test(test_drain),
        cmocka_unit_test(test_report),
        cmocka_unit_test(test_streams),
        cmocka_unit_test(test_store_names),
        cmocka_unit_test(test_put_mended),
        cmocka_unit_test(test_expiry),  /* ---- events: expiring entries */
        cmocka_unit_test(test_migrate), /* ---- events: expiring entries */
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
