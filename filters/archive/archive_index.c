/*
 * archive_index - the SQLite index of an archive store, for search and
 *     export
 *
 * The index is derived data: a file of its own (by default
 * ROOT/index.sqlite for a dir:/ROOT store) that "relaychain archive
 * reindex" fills from the store, each record read back and checked as
 * verify checks it. It is brought up to date incrementally: for each
 * writer it remembers the last seq it holds and reads only what came
 * after (search and export do that first), so the daemon never waits on
 * it and a lost or damaged index is rebuilt from the store (--full).
 *
 * Tables: records (one row per record: name, writer, seq, kind, time,
 * point, queue id, Message-ID, Subject, sender, size, SHA-256, ref and
 * verdict of an outcome), rcpts (name, recipient: every envelope
 * recipient, Bcc included), progress (writer, last seq). Queries use
 * bound parameters only; a search value is never part of the SQL text.
 * Subject and Message-ID match as substrings, case-insensitively for
 * ASCII; addresses match whole, without regard to case.
 *
 * Export writes each matching message as NAME.eml (the name's "/"
 * made "_") into a directory, or all of them into one mbox (From_ lines,
 * ">From " quoting), and a manifest: one line per message with its
 * record name, the SHA-256 of its octets, and the first checkpoint of
 * its writer after it (the one whose signature covers it; "none yet"
 * when no checkpoint follows it).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "filters/archive/archive_int.h"
#include "filters/filters.h"

#define FLT_ARCI_SEALED_MAX (ARC_BODY_MAX + ARC_META_MAX + 4096)

static const char flt_arci_schema[] =
    "CREATE TABLE IF NOT EXISTS records ("
    " name TEXT PRIMARY KEY, writer TEXT NOT NULL, seq INTEGER NOT NULL,"
    " kind TEXT NOT NULL, time INTEGER NOT NULL, point TEXT, qid TEXT,"
    " message_id TEXT, subject TEXT, sender TEXT, size INTEGER,"
    " sha256 TEXT, ref TEXT, verdict TEXT);"
    "CREATE TABLE IF NOT EXISTS rcpts (name TEXT NOT NULL, rcpt TEXT NOT "
    "NULL);"
    "CREATE TABLE IF NOT EXISTS progress (writer TEXT PRIMARY KEY,"
    " last_seq INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS records_time ON records(time);"
    "CREATE INDEX IF NOT EXISTS records_sender ON records(sender COLLATE "
    "NOCASE);"
    "CREATE INDEX IF NOT EXISTS records_ws ON records(writer, seq);"
    "CREATE INDEX IF NOT EXISTS rcpts_rcpt ON rcpts(rcpt COLLATE NOCASE);"
    "CREATE INDEX IF NOT EXISTS rcpts_name ON rcpts(name);";

/* flt_arci_path - the index file of store value, into out. */
static int
flt_arci_path(const char *store, const char *index, char *out, size_t n,
              struct err *e)
{
    if (index != NULL) {
        snprintf(out, n, "%s", index);
        return 0;
    }
    if (strncmp(store, "dir:", 4) == 0 && store[4] == '/') {
        snprintf(out, n, "%s/index.sqlite", store + 4);
        return 0;
    }
    return err_set(e, ERR_CONFIG, "%s: give the index file (--index)", store);
}

static sqlite3 *
flt_arci_open(const char *path, struct err *e)
{
    sqlite3 *db = NULL;

    if (sqlite3_open_v2(path, &db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                            SQLITE_OPEN_NOFOLLOW,
                        NULL) != SQLITE_OK) {
        err_set(e, ERR_IO, "index %s: %s", path,
                db != NULL ? sqlite3_errmsg(db) : "cannot open");
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 10000);
    if (sqlite3_exec(db, flt_arci_schema, NULL, NULL, NULL) != SQLITE_OK) {
        err_set(e, ERR_IO, "index %s: %s", path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

static void
flt_arci_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v != NULL)
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

struct flt_arci_fill {
    sqlite3 *db;
    sqlite3_stmt *rec, *rcpt, *prog, *last;
    const struct arc_store_ops *ops;
    void *store;
    struct buf b;
    unsigned long long added;
    struct err *e;
};

static int
flt_arci_add(struct flt_arci_fill *f, const char *name)
{
    char hex[2 * ARC_HASH_LEN + 1];
    struct arc_rec rec;
    size_t i;
    int rc = -1;

    buf_reset(&f->b);
    memset(&rec, 0, sizeof(rec));
    if (f->ops->get(f->store, name, &f->b, f->e) < 0 ||
        arc_record_parse((const unsigned char *)f->b.data, f->b.len, &rec,
                         f->e) < 0)
        goto out;
    sqlite3_reset(f->rec);
    sqlite3_clear_bindings(f->rec);
    flt_arci_text(f->rec, 1, name);
    flt_arci_text(f->rec, 2, rec.writer);
    sqlite3_bind_int64(f->rec, 3, (sqlite3_int64)rec.seq);
    flt_arci_text(f->rec, 4, arc_kind_name(rec.kind));
    sqlite3_bind_int64(f->rec, 5, rec.meta.time);
    if (rec.kind == ARC_KIND_MESSAGE) {
        flt_arci_text(f->rec, 6, rec.meta.point);
        flt_arci_text(f->rec, 7, rec.meta.qid);
        flt_arci_text(f->rec, 8, rec.meta.message_id);
        flt_arci_text(f->rec, 9, rec.meta.subject);
        flt_arci_text(f->rec, 10, rec.meta.sender);
        sqlite3_bind_int64(f->rec, 11, (sqlite3_int64)rec.meta.size);
        arc_hex(hex, rec.meta.sha256, ARC_HASH_LEN);
        flt_arci_text(f->rec, 12, hex);
    }
    flt_arci_text(f->rec, 13, rec.x.ref);
    flt_arci_text(f->rec, 14, rec.x.verdict);
    if (sqlite3_step(f->rec) != SQLITE_DONE)
        goto dberr;
    for (i = 0; i < rec.meta.nrcpts; i++) {
        sqlite3_reset(f->rcpt);
        flt_arci_text(f->rcpt, 1, name);
        flt_arci_text(f->rcpt, 2, rec.meta.rcpts[i]);
        if (sqlite3_step(f->rcpt) != SQLITE_DONE)
            goto dberr;
    }
    sqlite3_reset(f->prog);
    flt_arci_text(f->prog, 1, rec.writer);
    sqlite3_bind_int64(f->prog, 2, (sqlite3_int64)rec.seq);
    if (sqlite3_step(f->prog) != SQLITE_DONE)
        goto dberr;
    f->added++;
    rc = 0;
    goto out;
dberr:
    err_set(f->e, ERR_IO, "index: %s", sqlite3_errmsg(f->db));
out:
    arc_rec_free(&rec);
    return rc;
}

static int
flt_arci_name_fn(void *arg, const char *name)
{
    struct flt_arci_fill *f = arg;
    char w[ARC_WRITER_MAX + 1];
    unsigned long long seq;

    if (arc_name_parse(name, w, &seq) < 0)
        return 0;
    /* Already in: the writer's progress says so. */
    sqlite3_reset(f->last);
    flt_arci_text(f->last, 1, w);
    if (sqlite3_step(f->last) == SQLITE_ROW &&
        (unsigned long long)sqlite3_column_int64(f->last, 0) >= seq)
        return 0;
    return flt_arci_add(f, name) < 0 ? -1 : 0;
}

/* flt_arci_update - bring db up to date with the store. */
static int
flt_arci_update(sqlite3 *db, const char *store_value, int full,
                unsigned long long *added, struct err *e)
{
    struct flt_arci_fill f;
    const char *spec;
    struct stat sb;
    int rc = -1;

    memset(&f, 0, sizeof(f));
    f.db = db;
    f.e = e;
    if ((f.ops = flt_arc_store_ops(store_value, &spec, e)) == NULL)
        return -1;
    if (f.ops->list == NULL || f.ops->get == NULL)
        return err_set(e, ERR_CONFIG, "%s cannot be read back", store_value);
    if (f.ops == &arc_store_dir && stat(spec, &sb) < 0)
        return err_sys(e, ERR_IO, "store %s", store_value);
    if ((f.store = f.ops->open(spec, flt_arcv_cfg(), 0, e)) == NULL)
        return -1;
    buf_init(&f.b, FLT_ARCI_SEALED_MAX);
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        goto dberr;
    if (full && sqlite3_exec(db,
                             "DELETE FROM records; DELETE FROM rcpts; "
                             "DELETE FROM progress;",
                             NULL, NULL, NULL) != SQLITE_OK)
        goto dberr;
    if (sqlite3_prepare_v2(db,
                           "INSERT OR REPLACE INTO records VALUES "
                           "(?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           -1, &f.rec, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT INTO rcpts VALUES (?,?)", -1, &f.rcpt,
                           NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "INSERT INTO progress VALUES (?1,?2) ON "
                           "CONFLICT(writer) DO UPDATE SET last_seq = "
                           "max(last_seq, ?2)",
                           -1, &f.prog, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "SELECT last_seq FROM progress WHERE writer = ?",
                           -1, &f.last, NULL) != SQLITE_OK)
        goto dberr;
    if (f.ops->list(f.store, NULL, NULL, flt_arci_name_fn, &f, e) != 0) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        goto out;
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        goto dberr;
    *added = f.added;
    rc = 0;
    goto out;
dberr:
    err_set(e, ERR_IO, "index: %s", sqlite3_errmsg(db));
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
out:
    sqlite3_finalize(f.rec);
    sqlite3_finalize(f.rcpt);
    sqlite3_finalize(f.prog);
    sqlite3_finalize(f.last);
    buf_fini(&f.b);
    f.ops->close(f.store);
    return rc;
}

int
flt_archive_reindex(const char *store, const char *index, int full,
                    unsigned long long *added, struct err *e)
{
    char path[4096];
    sqlite3 *db;
    int rc;

    *added = 0;
    if (flt_arci_path(store, index, path, sizeof(path), e) < 0 ||
        (db = flt_arci_open(path, e)) == NULL)
        return -1;
    rc = flt_arci_update(db, store, full, added, e);
    sqlite3_close(db);
    return rc;
}

/* flt_arci_query - the message records matching q, in time order. */
static sqlite3_stmt *
flt_arci_query(sqlite3 *db, const struct flt_archive_query *q, struct err *e)
{
    static const char sql[] =
        "SELECT r.name, r.writer, r.seq, r.time, r.point, r.qid, "
        "r.message_id, r.subject, r.sender, r.size, r.sha256, "
        "(SELECT group_concat(x.rcpt, ' ') FROM rcpts x WHERE x.name = "
        "r.name), "
        "(SELECT c.name FROM records c WHERE c.writer = r.writer AND c.kind "
        "= 'checkpoint' AND c.seq > r.seq ORDER BY c.seq LIMIT 1) "
        "FROM records r WHERE r.kind = 'message'"
        " AND (?1 IS NULL OR r.sender = ?1 COLLATE NOCASE)"
        " AND (?2 IS NULL OR EXISTS (SELECT 1 FROM rcpts x WHERE x.name = "
        "r.name AND x.rcpt = ?2 COLLATE NOCASE))"
        " AND (?3 IS NULL OR r.time >= ?3)"
        " AND (?4 IS NULL OR r.time < ?4)"
        " AND (?5 IS NULL OR instr(lower(r.message_id), lower(?5)) > 0)"
        " AND (?6 IS NULL OR instr(lower(r.subject), lower(?6)) > 0)"
        " ORDER BY r.time, r.writer, r.seq";
    sqlite3_stmt *st;

    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        err_set(e, ERR_IO, "index: %s", sqlite3_errmsg(db));
        return NULL;
    }
    flt_arci_text(st, 1, q->sender);
    flt_arci_text(st, 2, q->recipient);
    if (q->since > 0)
        sqlite3_bind_int64(st, 3, q->since);
    if (q->until > 0)
        sqlite3_bind_int64(st, 4, q->until);
    flt_arci_text(st, 5, q->message_id);
    flt_arci_text(st, 6, q->subject);
    return st;
}

static const char *
flt_arci_col(sqlite3_stmt *st, int i)
{
    const unsigned char *v = sqlite3_column_text(st, i);

    return v != NULL ? (const char *)v : NULL;
}

int
flt_archive_search(const char *store, const char *index,
                   const struct flt_archive_query *q,
                   int (*fn)(void *arg, const struct flt_archive_hit *hit),
                   void *arg, struct err *e)
{
    unsigned long long added;
    char path[4096];
    sqlite3_stmt *st = NULL;
    sqlite3 *db;
    int rc = -1, step;

    if (flt_arci_path(store, index, path, sizeof(path), e) < 0 ||
        (db = flt_arci_open(path, e)) == NULL)
        return -1;
    if (flt_arci_update(db, store, 0, &added, e) < 0 ||
        (st = flt_arci_query(db, q, e)) == NULL)
        goto out;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        struct flt_archive_hit h;

        memset(&h, 0, sizeof(h));
        h.name = flt_arci_col(st, 0);
        h.time = sqlite3_column_int64(st, 3);
        h.point = flt_arci_col(st, 4);
        h.qid = flt_arci_col(st, 5);
        h.message_id = flt_arci_col(st, 6);
        h.subject = flt_arci_col(st, 7);
        h.sender = flt_arci_col(st, 8);
        h.size = (size_t)sqlite3_column_int64(st, 9);
        h.sha256 = flt_arci_col(st, 10);
        h.rcpts = flt_arci_col(st, 11);
        h.checkpoint = flt_arci_col(st, 12);
        if ((rc = fn(arg, &h)) != 0)
            goto out;
    }
    if (step != SQLITE_DONE) {
        err_set(e, ERR_IO, "index: %s", sqlite3_errmsg(db));
        rc = -1;
        goto out;
    }
    rc = 0;
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}

/* Export: the search's hits, each read back from the store. */
struct flt_arci_export {
    const struct arc_store_ops *ops;
    void *store;
    const char *dir; /* NULL: mbox */
    FILE *mbox, *manifest;
    struct buf b;
    unsigned long long count;
    struct err *e;
};

/* flt_arci_mbox - one message in mboxrd form: a From_ line, each line
 * that starts with ">*From " one more ">", a blank line at the end. */
static int
flt_arci_mbox(FILE *fp, const struct arc_rec *rec)
{
    const char *p = rec->msg.data, *end = p + rec->msg.len;
    const char *sender =
        rec->meta.sender[0] ? rec->meta.sender : "MAILER-DAEMON";

    fprintf(fp, "From %s %lld\n", sender, rec->meta.time);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *q = p;
        size_t len = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);

        while (q < p + len && *q == '>')
            q++;
        if ((size_t)(p + len - q) >= 5 && strncmp(q, "From ", 5) == 0)
            fputc('>', fp);
        if (len > 0 && p[len - 1] == '\r')
            len--;
        fwrite(p, 1, len, fp);
        fputc('\n', fp);
        p += (nl != NULL ? (size_t)(nl - p) + 1 : len);
        if (nl == NULL)
            break;
    }
    fputc('\n', fp);
    return ferror(fp) ? -1 : 0;
}

static int
flt_arci_export_fn(void *arg, const struct flt_archive_hit *h)
{
    struct flt_arci_export *x = arg;
    struct arc_rec rec;
    const char *enc;
    int rc = -1;

    buf_reset(&x->b);
    memset(&rec, 0, sizeof(rec));
    if (x->ops->get(x->store, h->name, &x->b, x->e) < 0 ||
        arc_record_parse((const unsigned char *)x->b.data, x->b.len, &rec,
                         x->e) < 0)
        goto out;
    /* An encrypted record (encrypt_to) is exported as its payload, for
     * the key's holder: NAME.eml.zst.gpg or .p7m (DER). */
    enc = rec.meta.encrypted_to;
    if (enc != NULL && x->dir == NULL) {
        err_set(x->e, ERR_INPUT,
                "%s is encrypted to %s: export it with --dir, as its "
                "payload",
                h->name, enc);
        goto out;
    }
    if (x->dir != NULL) {
        char path[4096], file[ARC_NAME_MAX + 20];
        size_t i;
        int fd;

        snprintf(file, sizeof(file), "%s.eml%s", h->name,
                 enc == NULL                    ? ""
                 : strncmp(enc, "pgp:", 4) == 0 ? ".zst.gpg"
                                                : ".zst.p7m");
        for (i = 0; file[i] != '\0'; i++)
            if (file[i] == '/')
                file[i] = '_';
        snprintf(path, sizeof(path), "%s/%s", x->dir, file);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                  0600);
        if (fd < 0) {
            err_sys(x->e, ERR_IO, "%s", path);
            goto out;
        }
        if (rec.msg.len > 0 &&
            write(fd, rec.msg.data, rec.msg.len) != (ssize_t)rec.msg.len) {
            err_sys(x->e, ERR_IO, "%s: write", path);
            close(fd);
            goto out;
        }
        if (close(fd) < 0) {
            err_sys(x->e, ERR_IO, "%s: close", path);
            goto out;
        }
    } else if (flt_arci_mbox(x->mbox, &rec) < 0) {
        err_set(x->e, ERR_IO, "mbox: write failed");
        goto out;
    }
    fprintf(x->manifest, "%s sha256=%s size=%zu checkpoint=%s%s%s\n", h->name,
            h->sha256 != NULL ? h->sha256 : "?", rec.meta.size,
            h->checkpoint != NULL ? h->checkpoint : "none-yet",
            enc != NULL ? " encrypted-to=" : "", enc != NULL ? enc : "");
    x->count++;
    rc = 0;
out:
    arc_rec_free(&rec);
    return rc;
}

int
flt_archive_export(const char *store, const char *index,
                   const struct flt_archive_query *q, const char *dir,
                   const char *mbox, const char *manifest,
                   unsigned long long *count, struct err *e)
{
    struct flt_arci_export x;
    const char *spec;
    int rc = -1;

    memset(&x, 0, sizeof(x));
    x.e = e;
    x.dir = dir;
    *count = 0;
    if ((dir == NULL) == (mbox == NULL))
        return err_set(e, ERR_INPUT, "export: give a directory or an mbox");
    if ((x.ops = flt_arc_store_ops(store, &spec, e)) == NULL)
        return -1;
    if (x.ops->get == NULL)
        return err_set(e, ERR_CONFIG, "%s cannot be read back", store);
    if (x.ops == &arc_store_dir && access(spec, F_OK) < 0)
        return err_sys(e, ERR_IO, "store %s", store);
    if ((x.manifest = fopen(manifest, "wx")) == NULL)
        return err_sys(e, ERR_IO, "%s", manifest);
    if (mbox != NULL && (x.mbox = fopen(mbox, "wx")) == NULL) {
        err_sys(e, ERR_IO, "%s", mbox);
        fclose(x.manifest);
        return -1;
    }
    if ((x.store = x.ops->open(spec, flt_arcv_cfg(), 0, e)) == NULL)
        goto out;
    buf_init(&x.b, FLT_ARCI_SEALED_MAX);
    rc = flt_archive_search(store, index, q, flt_arci_export_fn, &x, e);
    buf_fini(&x.b);
    x.ops->close(x.store);
    *count = x.count;
out:
    if (x.mbox != NULL && fclose(x.mbox) != 0 && rc == 0)
        rc = err_sys(e, ERR_IO, "%s", mbox);
    if (fclose(x.manifest) != 0 && rc == 0)
        rc = err_sys(e, ERR_IO, "%s", manifest);
    return rc;
}
