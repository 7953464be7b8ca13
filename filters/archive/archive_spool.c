/*
 * archive_spool - the archive stage's local spool for required = no
 *
 * See archive_spool.h for what it promises. How: arc_spool_append()
 * writes "<dir>/.tmp.<pid>.<n>" and queues it; arc_spool_sync() (group
 * commit: one thread commits every record queued so far while the others
 * wait) fsyncs each queued file, renames each to "<dir>/<hex>" (hex: the
 * record name in lower-case hex) in order and fsyncs the directory; only
 * then does it return 0. arc_spool_add() is the two in one. The shipping
 * thread lists the directory, sorts the names, and for each file reads it
 * back, checks it, hands it to the store's put and, when put returned 0,
 * unlinks it. A failure stops the pass (so the order holds) and the thread
 * waits its back-off or until arc_spool_close(). After an add the thread is
 * woken at once.
 *
 * File format (all lengths decimal):
 *
 *     RCARCSPOOL1\n NAME\n LENGTH\n OCTETS \nEND\n
 *
 * Locking: one mutex guards the flags, the back-off and the counters;
 * the directory itself is the queue, so adds from many threads need no
 * lock beyond the kernel's rename.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "filters/archive/archive_int.h"
#include "filters/archive/archive_spool.h"
#include "util/buf.h"
#include "util/cfg.h"
#include "util/err.h"
#include "util/log.h"
#include "util/metrics.h"

#define SPOOL_MAGIC "RCARCSPOOL1\n"
#define SPOOL_END "\nEND\n"
#define SPOOL_FILE_MAX (1024LL * 1024 * 1024) /* octets of one file */
#define SPOOL_WARN_FIRST 100                  /* backlog first warned at */
#define SPOOL_IDLE_MS 60000                   /* wait with nothing to do */
/* The last record shipped (not a hex name: never listed or shipped). */
#define SPOOL_LAST "last"

/* A record written but not yet durable: its file is still .tmp, open. */
struct spool_pending {
    int fd;
    char tmp[64];
    char hex[2 * ARC_SPOOL_NAME_MAX + 1];
};

struct arc_spool {
    char *dir;
    int dfd;
    const struct arc_store_ops *ops;
    void *store;
    pthread_t thread;
    int started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int stop;      /* close asked */
    int kicked;    /* an add since the thread last looked */
    long first_ms; /* back-off */
    long max_ms;
    unsigned long tmpn; /* temporary file counter */
    unsigned long shipped;
    unsigned long skipped; /* checkpoints and tombstones not mailed */
    /* Group commit: records appended (queued), made durable (synced),
     * the ones in between (pending, in order), one thread committing. */
    struct spool_pending *pending;
    size_t npending, cappending;
    unsigned long long queued, synced;
    int syncing;
    pthread_cond_t scond;
    char broken[ERR_TEXT_MAX]; /* a commit failed: its error */
    size_t warn_at;            /* backlog size that is warned next */
    long long reported;        /* the backlog last told util/metrics */
};

/* spool_report_locked - tell util/metrics this spool's backlog is now n:
 * the shipper's count when it lists the spool and when a pass ends, one
 * more for each record a commit makes visible, 0 at close; sp->lock
 * held. spool_report - the same, taking the lock. */
static void
spool_report_locked(struct arc_spool *sp, long long n)
{
    metrics_archive_backlog(n - sp->reported);
    sp->reported = n;
}

static void
spool_report(struct arc_spool *sp, long long n)
{
    pthread_mutex_lock(&sp->lock);
    spool_report_locked(sp, n);
    pthread_mutex_unlock(&sp->lock);
}

/* --------------------------------------------------------------- names */

static int
spool_hex_name(const char *name, char *out, size_t n, struct err *e)
{
    static const char hx[] = "0123456789abcdef";
    size_t len = strlen(name), i;

    if (len == 0 || len > ARC_SPOOL_NAME_MAX || 2 * len + 1 > n)
        return err_set(e, ERR_INPUT,
                       "archive spool: record name of %zu "
                       "octets (1 to %d)",
                       len, ARC_SPOOL_NAME_MAX);
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];

        if (c < 0x20 || c == 0x7f)
            return err_set(e, ERR_INPUT,
                           "archive spool: record name with a control "
                           "character");
        out[2 * i] = hx[c >> 4];
        out[2 * i + 1] = hx[c & 15];
    }
    out[2 * len] = '\0';
    return 0;
}

/* spool_is_record - a file name the spool wrote: lower-case hex, even
 * length, nothing else. */
static int
spool_is_record(const char *f)
{
    size_t n = strlen(f), i;

    if (n == 0 || n % 2 != 0 || n > 2 * ARC_SPOOL_NAME_MAX)
        return 0;
    for (i = 0; i < n; i++)
        if (!((f[i] >= '0' && f[i] <= '9') || (f[i] >= 'a' && f[i] <= 'f')))
            return 0;
    return 1;
}

/* ----------------------------------------------------------- the files */

static int
spool_write_all(int fd, const void *p, size_t n)
{
    const char *c = p;

    while (n > 0) {
        ssize_t w = write(fd, c, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

static void
spool_pending_drop(struct arc_spool *sp, struct spool_pending *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (p[i].fd >= 0)
            close(p[i].fd);
        unlinkat(sp->dfd, p[i].tmp, 0);
    }
    free(p);
}

int
arc_spool_append(struct arc_spool *sp, const struct arc_item *it,
                 unsigned long long *ticket, struct err *e)
{
    char head[ARC_SPOOL_NAME_MAX + 64];
    struct spool_pending pd;
    unsigned long n;
    int hl, bad = 0;

    if (spool_hex_name(it->name, pd.hex, sizeof(pd.hex), e) < 0)
        return -1;
    pthread_mutex_lock(&sp->lock);
    n = ++sp->tmpn;
    pthread_mutex_unlock(&sp->lock);
    snprintf(pd.tmp, sizeof(pd.tmp), ".tmp.%ld.%lu", (long)getpid(), n);
    hl = snprintf(head, sizeof(head), "%s%s\n%zu\n", SPOOL_MAGIC, it->name,
                  it->sealed_len);
    pd.fd = openat(sp->dfd, pd.tmp,
                   O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (pd.fd < 0)
        return err_sys(e, ERR_IO, "archive spool %s: create %s", sp->dir,
                       pd.tmp);
    if (spool_write_all(pd.fd, head, (size_t)hl) < 0 ||
        spool_write_all(pd.fd, it->sealed, it->sealed_len) < 0 ||
        spool_write_all(pd.fd, SPOOL_END, sizeof(SPOOL_END) - 1) < 0) {
        err_sys(e, ERR_IO, "archive spool %s: write %s", sp->dir, pd.tmp);
        close(pd.fd);
        unlinkat(sp->dfd, pd.tmp, 0);
        return -1;
    }
    pthread_mutex_lock(&sp->lock);
    if (sp->broken[0] != '\0') {
        err_set(e, ERR_IO, "%s", sp->broken);
        bad = 1;
    } else if (sp->npending == sp->cappending) {
        size_t nc = sp->cappending ? 2 * sp->cappending : 64;
        struct spool_pending *np =
            realloc(sp->pending, nc * sizeof(*sp->pending));

        if (np == NULL) {
            err_nomem(e);
            bad = 1;
        } else {
            sp->pending = np;
            sp->cappending = nc;
        }
    }
    if (bad) {
        pthread_mutex_unlock(&sp->lock);
        close(pd.fd);
        unlinkat(sp->dfd, pd.tmp, 0);
        return -1;
    }
    sp->pending[sp->npending++] = pd;
    *ticket = ++sp->queued;
    pthread_mutex_unlock(&sp->lock);
    return 0;
}

/* spool_commit - make a batch durable, in order: each file fsynced, then
 * each renamed to its name, then the directory fsynced. A record gets its
 * name only once its octets are on disk, so after a crash the spool
 * holds whole records, a prefix of the order, and the .tmp rest (never
 * acknowledged) is removed at open. */
static int
spool_commit(struct arc_spool *sp, struct spool_pending *p, size_t n,
             struct err *e)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (fsync(p[i].fd) < 0)
            return err_sys(e, ERR_IO, "archive spool %s: fsync %s", sp->dir,
                           p[i].tmp);
        if (close(p[i].fd) < 0) {
            p[i].fd = -1;
            return err_sys(e, ERR_IO, "archive spool %s: close %s", sp->dir,
                           p[i].tmp);
        }
        p[i].fd = -1;
    }
    for (i = 0; i < n; i++)
        if (renameat(sp->dfd, p[i].tmp, sp->dfd, p[i].hex) < 0)
            return err_sys(e, ERR_IO, "archive spool %s: rename %s", sp->dir,
                           p[i].tmp);
    if (fsync(sp->dfd) < 0)
        return err_sys(e, ERR_IO, "archive spool %s: fsync", sp->dir);
    return 0;
}

int
arc_spool_sync(struct arc_spool *sp, unsigned long long ticket, struct err *e)
{
    pthread_mutex_lock(&sp->lock);
    for (;;) {
        struct spool_pending *batch;
        unsigned long long target;
        size_t n;
        struct err ce;

        if (sp->synced >= ticket) {
            pthread_mutex_unlock(&sp->lock);
            return 0;
        }
        if (sp->broken[0] != '\0') {
            pthread_mutex_unlock(&sp->lock);
            return err_set(e, ERR_IO, "%s", sp->broken);
        }
        if (sp->syncing) {
            pthread_cond_wait(&sp->scond, &sp->lock);
            continue;
        }
        /* This thread commits everything appended so far. */
        batch = sp->pending;
        n = sp->npending;
        target = sp->queued;
        sp->pending = NULL;
        sp->npending = sp->cappending = 0;
        sp->syncing = 1;
        pthread_mutex_unlock(&sp->lock);
        err_clear(&ce);
        if (spool_commit(sp, batch, n, &ce) < 0) {
            /* As the dir store after a failed fdatasync: no later record
             * may be taken for durable until relaychaind restarts. */
            log_error(NULL, "archive spool %s: %s; no more records are taken",
                      sp->dir, ce.text);
            spool_pending_drop(sp, batch, n);
            pthread_mutex_lock(&sp->lock);
            snprintf(sp->broken, sizeof(sp->broken), "%s", ce.text);
        } else {
            free(batch);
            pthread_mutex_lock(&sp->lock);
            spool_report_locked(sp, sp->reported + (long long)n);
            sp->synced = target;
            sp->kicked = 1;
            pthread_cond_signal(&sp->cond);
        }
        sp->syncing = 0;
        pthread_cond_broadcast(&sp->scond);
    }
}

int
arc_spool_add(struct arc_spool *sp, const struct arc_item *it, struct err *e)
{
    unsigned long long ticket;

    if (arc_spool_append(sp, it, &ticket, e) < 0)
        return -1;
    return arc_spool_sync(sp, ticket, e);
}

/* spool_read - file f back into b; the record's name and octets are then
 * *name (NUL-terminated, inside b) and [*p, *p + *n). -1 with e: ERR_IO
 * when it cannot be read, ERR_INPUT when it is not whole. */
static int
spool_read_raw(int dfd, const char *dir, const char *f, struct buf *b,
               struct err *e)
{
    struct stat st;
    int fd = openat(dfd, f, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);

    if (fd < 0)
        return err_sys(e, ERR_IO, "archive spool %s: open %s", dir, f);
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
        st.st_size > SPOOL_FILE_MAX) {
        close(fd);
        return err_set(e, ERR_INPUT, "archive spool %s: %s is not a record",
                       dir, f);
    }
    buf_reset(b);
    if (buf_reserve(b, (size_t)st.st_size + 1, e) < 0) {
        close(fd);
        return -1;
    }
    while (b->len < (size_t)st.st_size) {
        ssize_t r = read(fd, b->data + b->len, (size_t)st.st_size - b->len);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            close(fd);
            return err_sys(e, ERR_IO, "archive spool %s: read %s", dir, f);
        }
        b->len += (size_t)r;
    }
    b->data[b->len] = '\0';
    close(fd);
    return 0;
}

static int
spool_read_at(int dfd, const char *dir, const char *f, struct buf *b,
              const char **name, const unsigned char **p, size_t *n,
              struct err *e)
{
    struct err pe;

    if (spool_read_raw(dfd, dir, f, b, e) < 0)
        return -1;
    if (arc_spool_record_parse(f, b->data, b->len, name, p, n, &pe) < 0)
        return err_set(e, ERR_INPUT, "archive spool %s: %s", dir, pe.text);
    return 0;
}

static int
spool_read(struct arc_spool *sp, const char *f, struct buf *b,
           const char **name, const unsigned char **p, size_t *n,
           struct err *e)
{
    return spool_read_at(sp->dfd, sp->dir, f, b, name, p, n, e);
}

int
arc_spool_record_parse(const char *f, char *data, size_t len,
                       const char **name, const unsigned char **p, size_t *n,
                       struct err *e)
{
    char want[2 * ARC_SPOOL_NAME_MAX + 1];
    char *nl, *end;
    unsigned long long rl;
    size_t off, ml = sizeof(SPOOL_MAGIC) - 1, el = sizeof(SPOOL_END) - 1;
    struct err ne;

    if (len < ml + el || memcmp(data, SPOOL_MAGIC, ml) != 0 ||
        (nl = memchr(data + ml, '\n', len - ml)) == NULL)
        goto bad;
    *nl = '\0';
    *name = data + ml;
    off = (size_t)(nl + 1 - data);
    /* The length: digits only, then a line end, inside the data. */
    if (off >= len || data[off] < '0' || data[off] > '9' ||
        memchr(data + off, '\n', len - off) == NULL)
        goto bad;
    errno = 0;
    rl = strtoull(data + off, &end, 10);
    if (errno != 0 || *end != '\n' || rl > (unsigned long long)len)
        goto bad;
    off = (size_t)(end + 1 - data);
    if (len - off != rl + el || memcmp(data + off + rl, SPOOL_END, el) != 0)
        goto bad;
    /* The file's name says which record it holds: they must agree. */
    if (spool_hex_name(*name, want, sizeof(want), &ne) < 0 ||
        strcmp(want, f) != 0)
        goto bad;
    *p = (const unsigned char *)data + off;
    *n = (size_t)rl;
    return 0;
bad:
    return err_set(e, ERR_INPUT, "%s is not whole", f);
}

/* ---------------------------------------------------------- the backlog */

static int
spool_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
spool_names_free(char **v, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* spool_list - the record files of dfd, sorted; *oldest gets the
 * smallest mtime (0 when none). */
static int
spool_list(int dfd, const char *dir, char ***out, size_t *count,
           time_t *oldest, struct err *e)
{
    char **v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *d;
    DIR *dp;
    int fd = dup(dfd);

    *oldest = 0;
    if (fd < 0 || (dp = fdopendir(fd)) == NULL) {
        if (fd >= 0)
            close(fd);
        return err_sys(e, ERR_IO, "archive spool %s: opendir", dir);
    }
    rewinddir(dp);
    while ((d = readdir(dp)) != NULL) {
        struct stat st;

        if (!spool_is_record(d->d_name))
            continue;
        if (fstatat(dfd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            (*oldest == 0 || st.st_mtime < *oldest))
            *oldest = st.st_mtime;
        if (out == NULL) {
            n++;
            continue;
        }
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 64;
            char **nv = realloc(v, nc * sizeof(*v));

            if (nv == NULL)
                goto nomem;
            v = nv;
            cap = nc;
        }
        if ((v[n] = strdup(d->d_name)) == NULL)
            goto nomem;
        n++;
    }
    closedir(dp);
    if (out != NULL) {
        if (n > 0)
            qsort(v, n, sizeof(*v), spool_cmp);
        *out = v;
    }
    *count = n;
    return 0;
nomem:
    closedir(dp);
    spool_names_free(v, n);
    return err_nomem(e);
}

int
arc_spool_status(struct arc_spool *sp, size_t *count, long long *oldest,
                 struct err *e)
{
    time_t t;

    if (spool_list(sp->dfd, sp->dir, NULL, count, &t, e) < 0)
        return -1;
    *oldest = t ? (long long)(time(NULL) - t) : 0;
    if (*oldest < 0)
        *oldest = 0;
    return 0;
}

int
arc_spool_scan(const char *dir, size_t *count, long long *oldest,
               struct err *e)
{
    time_t t;
    int dfd = cfg_open_dir(dir, e), rc;

    if (dfd < 0)
        return -1;
    rc = spool_list(dfd, dir, NULL, count, &t, e);
    close(dfd);
    if (rc < 0)
        return -1;
    *oldest = t ? (long long)(time(NULL) - t) : 0;
    if (*oldest < 0)
        *oldest = 0;
    return 0;
}

int
arc_spool_last(const char *dir, const char *writer, struct buf *out,
               struct err *e)
{
    char **v = NULL, hex[2 * ARC_SPOOL_NAME_MAX + 1],
         best[ARC_SPOOL_NAME_MAX + 1];
    const unsigned char *p = NULL;
    const char *name = NULL;
    size_t count = 0, n = 0, i, wl = strlen(writer);
    struct buf b;
    time_t t;
    int dfd, rc = -1;

    buf_reset(out);
    best[0] = '\0';
    if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) <
        0) {
        if (errno == ENOENT)
            return 0;
        return err_sys(e, ERR_IO, "archive spool %s", dir);
    }
    buf_init(&b, (size_t)SPOOL_FILE_MAX + 1);
    if (spool_list(dfd, dir, &v, &count, &t, e) < 0)
        goto out;
    /* The newest of the writer's: names sort in chain order. */
    for (i = count; i-- > 0;) {
        if (spool_read_at(dfd, dir, v[i], &b, &name, &p, &n, e) < 0)
            goto out;
        if (strncmp(name, writer, wl) == 0 && name[wl] == '/') {
            snprintf(best, sizeof(best), "%s", name);
            if (buf_append(out, p, n, e) < 0)
                goto out;
            break;
        }
    }
    /* And the last one shipped, when it is newer. */
    buf_reset(&b);
    if (faccessat(dfd, SPOOL_LAST, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
        char *nl;

        if (spool_read_raw(dfd, dir, SPOOL_LAST, &b, e) < 0)
            goto out;
        nl = b.len > sizeof(SPOOL_MAGIC) - 1
                 ? memchr(b.data + sizeof(SPOOL_MAGIC) - 1, '\n',
                          b.len - (sizeof(SPOOL_MAGIC) - 1))
                 : NULL;
        if (nl != NULL) {
            *nl = '\0';
            if (spool_hex_name(b.data + sizeof(SPOOL_MAGIC) - 1, hex,
                               sizeof(hex), e) < 0)
                goto out;
            *nl = '\n';
        }
        if (nl == NULL ||
            arc_spool_record_parse(hex, b.data, b.len, &name, &p, &n, e) < 0) {
            err_set(e, ERR_INPUT, "archive spool %s: %s is not whole", dir,
                    SPOOL_LAST);
            goto out;
        }
        if (strncmp(name, writer, wl) == 0 && name[wl] == '/' &&
            strcmp(name, best) > 0) {
            buf_reset(out);
            if (buf_append(out, p, n, e) < 0)
                goto out;
        }
    }
    rc = 0;
out:
    spool_names_free(v, count);
    buf_fini(&b);
    close(dfd);
    return rc;
}

/* ------------------------------------------------------------ shipping */

/* spool_ship_one - read f and put it. 0 when it was put and deleted, 1
 * when it was set aside as bad, -1 with e when put failed. */
static int
spool_ship_one(struct arc_spool *sp, const char *f, struct buf *b,
               struct err *e)
{
    struct arc_item it;
    const unsigned char *p = NULL;
    const char *name = NULL;
    size_t n = 0;

    if (spool_read(sp, f, b, &name, &p, &n, e) < 0) {
        char bad[2 * ARC_SPOOL_NAME_MAX + 8];

        if (e->code != ERR_INPUT)
            return -1;
        snprintf(bad, sizeof(bad), "%s.bad", f);
        log_error(NULL, "%s; renamed to %s and left for the admin", e->text,
                  bad);
        if (renameat(sp->dfd, f, sp->dfd, bad) < 0)
            return err_sys(e, ERR_IO, "archive spool %s: rename %s", sp->dir,
                           f);
        return 1;
    }
    memset(&it, 0, sizeof(it));
    it.name = name;
    it.sealed = p;
    it.sealed_len = n;
    /* arc_record_parse: a store that shows the message (the journaling
     * store, which cannot read back) is handed what the record says;
     * its checkpoints and tombstones are not mailed. */
    if (sp->ops->get == NULL) {
        struct arc_rec r;
        struct err pe;
        int rc;

        err_clear(&pe);
        if (arc_record_parse(p, n, &r, &pe) < 0) {
            char bad[2 * ARC_SPOOL_NAME_MAX + 8];

            arc_rec_free(&r);
            snprintf(bad, sizeof(bad), "%s.bad", f);
            log_error(NULL,
                      "archive spool %s: %s; renamed to %s and left for the "
                      "admin",
                      sp->dir, pe.text, bad);
            if (renameat(sp->dfd, f, sp->dfd, bad) < 0)
                return err_sys(e, ERR_IO, "archive spool %s: rename %s",
                               sp->dir, f);
            return 1;
        }
        if (r.kind == ARC_KIND_MESSAGE) {
            it.meta = &r.meta;
            it.data = r.msg.data;
            it.len = r.msg.len;
            rc = sp->ops->put(sp->store, &it, e);
        } else {
            rc = 0;
            log_info(NULL,
                     "archive spool %s: %s (%s) not handed on: the store "
                     "shows messages only",
                     sp->dir, name, arc_kind_name(r.kind));
            pthread_mutex_lock(&sp->lock);
            sp->skipped++;
            pthread_mutex_unlock(&sp->lock);
        }
        arc_rec_free(&r);
        if (rc < 0)
            return -1;
    } else if (sp->ops->put(sp->store, &it, e) < 0) {
        return -1;
    }
    /* The last record shipped stays, under SPOOL_LAST, for the stage to
     * continue its chain from when the store cannot be read (a journal
     * store, an S3 store that is down when relaychaind starts). */
    if (renameat(sp->dfd, f, sp->dfd, SPOOL_LAST) < 0)
        return err_sys(e, ERR_IO, "archive spool %s: rename %s", sp->dir, f);
    pthread_mutex_lock(&sp->lock);
    sp->shipped++;
    pthread_mutex_unlock(&sp->lock);
    return 0;
}

/* spool_pass - ship what is there now, in order. 0 when the spool was
 * emptied (of what was listed), -1 with e at the first failure. */
static int
spool_pass(struct arc_spool *sp, struct buf *b, struct err *e)
{
    char **v = NULL;
    size_t n, i;
    time_t oldest;
    int rc = 0;

    if (spool_list(sp->dfd, sp->dir, &v, &n, &oldest, e) < 0)
        return -1;
    pthread_mutex_lock(&sp->lock);
    if (n >= sp->warn_at) {
        log_warning(NULL,
                    "archive spool %s: backlog of %zu records, the oldest "
                    "%lld s old",
                    sp->dir, n, (long long)(time(NULL) - oldest));
        while (sp->warn_at <= n)
            sp->warn_at *= 2;
    } else if (n == 0) {
        sp->warn_at = SPOOL_WARN_FIRST;
    }
    pthread_mutex_unlock(&sp->lock);
    spool_report(sp, (long long)n);
    for (i = 0; i < n; i++) {
        int stop;

        pthread_mutex_lock(&sp->lock);
        stop = sp->stop;
        pthread_mutex_unlock(&sp->lock);
        if (stop)
            break;
        if (spool_ship_one(sp, v[i], b, e) < 0) {
            rc = -1;
            break;
        }
    }
    spool_report(sp, (long long)(n - i));
    spool_names_free(v, n);
    return rc;
}

static void
spool_deadline(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static void *
spool_thread(void *arg)
{
    struct arc_spool *sp = arg;
    struct buf b;
    long wait_ms = 0;

    buf_init(&b, (size_t)SPOOL_FILE_MAX + 1);
    pthread_mutex_lock(&sp->lock);
    while (!sp->stop) {
        struct timespec ts;
        struct err e;
        long ms;
        int rc;

        sp->kicked = 0;
        pthread_mutex_unlock(&sp->lock);
        err_clear(&e);
        rc = spool_pass(sp, &b, &e);
        buf_reset(&b);
        pthread_mutex_lock(&sp->lock);
        if (rc < 0) {
            wait_ms = wait_ms == 0 ? sp->first_ms : wait_ms * 2;
            if (wait_ms > sp->max_ms)
                wait_ms = sp->max_ms;
            log_warning(NULL, "archive spool %s: %s; next try in %ld ms",
                        sp->dir, e.text, wait_ms);
            ms = wait_ms;
        } else {
            wait_ms = 0;
            ms = SPOOL_IDLE_MS;
        }
        /* After a failure an add does not cut the back-off short: the
         * store is down for it as for the others. */
        spool_deadline(&ts, ms);
        while (!sp->stop && (rc < 0 || !sp->kicked))
            if (pthread_cond_timedwait(&sp->cond, &sp->lock, &ts) == ETIMEDOUT)
                break;
    }
    pthread_mutex_unlock(&sp->lock);
    buf_fini(&b);
    return NULL;
}

/* spool_clean - remove the ".tmp." files of writes that never finished. */
static int
spool_clean(struct arc_spool *sp, struct err *e)
{
    struct dirent *d;
    DIR *dp;
    int fd = dup(sp->dfd);

    if (fd < 0 || (dp = fdopendir(fd)) == NULL) {
        if (fd >= 0)
            close(fd);
        return err_sys(e, ERR_IO, "archive spool %s: opendir", sp->dir);
    }
    while ((d = readdir(dp)) != NULL)
        if (strncmp(d->d_name, ".tmp.", 5) == 0 &&
            unlinkat(sp->dfd, d->d_name, 0) == 0)
            log_info(NULL, "archive spool %s: removed unfinished write %s",
                     sp->dir, d->d_name);
    closedir(dp);
    return 0;
}

struct arc_spool *
arc_spool_open(const char *dir, const struct arc_store_ops *ops, void *store,
               struct err *e)
{
    struct arc_spool *sp;
    pthread_condattr_t ca;

    if (dir == NULL || dir[0] == '\0' || ops == NULL || ops->put == NULL) {
        err_set(e, ERR_CONFIG, "archive spool: no directory or store");
        return NULL;
    }
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        err_sys(e, ERR_IO, "archive spool %s: mkdir", dir);
        return NULL;
    }
    if ((sp = calloc(1, sizeof(*sp))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    sp->dfd = -1;
    sp->ops = ops;
    sp->store = store;
    sp->first_ms = 1000;
    sp->max_ms = 60000;
    sp->warn_at = SPOOL_WARN_FIRST;
    if ((sp->dir = strdup(dir)) == NULL) {
        free(sp);
        err_nomem(e);
        return NULL;
    }
    pthread_mutex_init(&sp->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sp->cond, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&sp->scond, NULL);
    if ((sp->dfd = cfg_open_dir(dir, e)) < 0 || spool_clean(sp, e) < 0)
        goto fail;
    if (pthread_create(&sp->thread, NULL, spool_thread, sp) != 0) {
        err_set(e, ERR_TEMP, "archive spool %s: pthread_create failed", dir);
        goto fail;
    }
    sp->started = 1;
    return sp;
fail:
    arc_spool_close(sp);
    return NULL;
}

void
arc_spool_backoff(struct arc_spool *sp, long first_ms, long max_ms)
{
    pthread_mutex_lock(&sp->lock);
    sp->first_ms = first_ms > 0 ? first_ms : 1;
    sp->max_ms = max_ms >= sp->first_ms ? max_ms : sp->first_ms;
    pthread_mutex_unlock(&sp->lock);
}

unsigned long
arc_spool_shipped(struct arc_spool *sp)
{
    unsigned long n;

    pthread_mutex_lock(&sp->lock);
    n = sp->shipped;
    pthread_mutex_unlock(&sp->lock);
    return n;
}

unsigned long
arc_spool_skipped(struct arc_spool *sp)
{
    unsigned long n;

    pthread_mutex_lock(&sp->lock);
    n = sp->skipped;
    pthread_mutex_unlock(&sp->lock);
    return n;
}

void
arc_spool_close(struct arc_spool *sp)
{
    if (sp == NULL)
        return;
    if (sp->started) {
        pthread_mutex_lock(&sp->lock);
        sp->stop = 1;
        pthread_cond_signal(&sp->cond);
        pthread_mutex_unlock(&sp->lock);
        pthread_join(sp->thread, NULL);
    }
    /* the records stay on disk for the next spool of this directory,
     * which counts them again */
    spool_report(sp, 0);
    if (sp->npending > 0) /* appended, never synced: not acknowledged */
        spool_pending_drop(sp, sp->pending, sp->npending);
    else
        free(sp->pending);
    if (sp->dfd >= 0)
        close(sp->dfd);
    pthread_cond_destroy(&sp->scond);
    pthread_cond_destroy(&sp->cond);
    pthread_mutex_destroy(&sp->lock);
    free(sp->dir);
    free(sp);
}
