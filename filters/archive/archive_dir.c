/*
 * archive_dir - the archive store "dir:/path": append-only segment files
 *
 * Layout: ROOT/WRITER/segment-NNNNNN, numbered from 1, a new one begun
 * when the current one reaches dir_segment_size. A segment is a run of
 * frames, each
 *
 *     len      4  big-endian: the octets of name_len, name and record
 *     name_len 1
 *     name     n  "WRITER/SEQ"
 *     record   r  the sealed record, as put
 *     check    8  the first 8 octets of SHA-256 of len .. record
 *
 * so a frame cut short by a crash (a length past the end of the file, a
 * check that does not match: the file grew but its data never reached
 * the disk) is recognised. The store does not look inside records.
 *
 * Index: none on disk; open() reads the frame headers of every segment
 * (one pread each) into an in-memory array per writer, in the order the
 * frames lie. list() hands the names back in that order, which is name
 * order unless somebody moved frames: verify then sees the reorder.
 * What the scan finds wrong is kept for arc_dir_problems().
 *
 * Writing: arc_dir_append() writes one frame with one write() at the end
 * of the writer's last segment (a failed or short write is cut back with
 * ftruncate), arc_dir_sync() waits until an fdatasync() begun after that
 * write has returned: one fdatasync() serves every append made while the
 * previous one ran (group commit). put() is the two. The first append of
 * a writer claims it: an exclusive flock() on ROOT/WRITER/.lock (a second
 * process writing the same chain would fork it), and a torn last frame
 * left by a crash is cut off, so it never counts as a record: a record is
 * either whole or absent. An fdatasync() that fails breaks the store
 * until it is opened again: the kernel may have dropped the pages, and
 * no later put may claim durability over them.
 *
 * Removal: records are not removed one by one from the middle of a
 * segment, so remove is not offered; purge past retention drops whole
 * segments (arc_dir_drop_segment) once a tombstone covering them is
 * durable (archive_verify.c), never a writer's last segment.
 *
 * Threads: one mutex guards the index and the write position; the
 * fdatasync runs outside it on a dup() of the segment's descriptor.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "filters/archive/archive_int.h"
#include "util/log.h"

#define ARC_DIR_SEGMENT_DEFAULT (64LL * 1024 * 1024)
#define ARC_DIR_FRAME_MAX (ARC_BODY_MAX + ARC_META_MAX + 4096)
#define ARC_DIR_CHECK 8

struct arc_dir_ent {
    unsigned long long seq;
    unsigned segno;
    unsigned len; /* the frame's len field */
    unsigned long long off;
};

struct arc_dir_writer {
    char name[ARC_WRITER_MAX + 1];
    struct arc_dir_ent *ents;
    size_t nents, cap;
    int sorted;             /* ents in seq order */
    unsigned lastseg;       /* highest segment number seen, 0 for none */
    unsigned long long end; /* good end of lastseg */
    int torn;               /* lastseg has a torn tail past end */
    int fd;                 /* lastseg open for appending, or -1 */
    int lockfd;             /* the claim, or -1 */
};

struct arc_dir {
    char *root;
    long long segsize;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct arc_dir_writer **w;
    size_t nw;
    unsigned long long appended, synced;
    unsigned long long nsyncs; /* fdatasyncs run, for the close log line */
    int syncing;
    int broken; /* errno of a failed fdatasync, 0 */
    struct buf problems;
};

static void arc_dir_problem(struct arc_dir *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
arc_dir_problem(struct arc_dir *d, const char *fmt, ...)
{
    struct err e;
    va_list ap;

    va_start(ap, fmt);
    if (buf_vprintf(&d->problems, &e, fmt, ap) == 0)
        buf_putc(&d->problems, '\n', &e);
    va_end(ap);
}

static int
arc_dir_check(const unsigned char *p, size_t n, unsigned char out[32])
{
    unsigned int len = 0;

    return EVP_Digest(p, n, out, &len, EVP_sha256(), NULL) == 1 ? 0 : -1;
}

static struct arc_dir_writer *
arc_dir_writer_find(struct arc_dir *d, const char *name, int create)
{
    struct arc_dir_writer *w, **grown;
    size_t i;

    for (i = 0; i < d->nw; i++)
        if (strcmp(d->w[i]->name, name) == 0)
            return d->w[i];
    if (!create)
        return NULL;
    if ((w = calloc(1, sizeof(*w))) == NULL)
        return NULL;
    if ((grown = realloc(d->w, (d->nw + 1) * sizeof(*grown))) == NULL) {
        free(w);
        return NULL;
    }
    d->w = grown;
    snprintf(w->name, sizeof(w->name), "%s", name);
    w->sorted = 1;
    w->fd = w->lockfd = -1;
    /* Kept in name order, so list() walks writers in name order. */
    for (i = d->nw; i > 0 && strcmp(d->w[i - 1]->name, name) > 0; i--)
        d->w[i] = d->w[i - 1];
    d->w[i] = w;
    d->nw++;
    return w;
}

static int
arc_dir_ent_add(struct arc_dir_writer *w, unsigned long long seq,
                unsigned segno, unsigned long long off, unsigned len)
{
    if (w->nents == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 256;
        struct arc_dir_ent *grown = realloc(w->ents, cap * sizeof(*grown));

        if (grown == NULL)
            return -1;
        w->ents = grown;
        w->cap = cap;
    }
    if (w->nents > 0 && w->ents[w->nents - 1].seq >= seq)
        w->sorted = 0;
    w->ents[w->nents].seq = seq;
    w->ents[w->nents].segno = segno;
    w->ents[w->nents].off = off;
    w->ents[w->nents].len = len;
    w->nents++;
    return 0;
}

static void
arc_dir_segname(char *out, size_t n, const char *root, const char *writer,
                unsigned segno)
{
    snprintf(out, n, "%s/%s/segment-%06u", root, writer, segno);
}

/* arc_dir_frame_ok - the whole frame at off (len its len field) is there
 * and its check matches. */
static int
arc_dir_frame_ok(int fd, unsigned long long off, unsigned len)
{
    unsigned char *p, sum[32];
    size_t total = 4 + (size_t)len + ARC_DIR_CHECK;
    int ok;

    if ((p = malloc(total)) == NULL)
        return 0;
    ok = pread(fd, p, total, (off_t)off) == (ssize_t)total &&
         arc_dir_check(p, 4 + len, sum) == 0 &&
         memcmp(sum, p + 4 + len, ARC_DIR_CHECK) == 0;
    free(p);
    return ok;
}

/* arc_dir_scan_segment - read the frame headers of one segment into w. */
static int
arc_dir_scan_segment(struct arc_dir *d, struct arc_dir_writer *w,
                     unsigned segno, int last, struct err *e)
{
    char path[4096], name[ARC_NAME_MAX + 1], wname[ARC_WRITER_MAX + 1];
    unsigned long long off = 0, seq, lastoff = 0;
    unsigned lastlen = 0;
    unsigned char hdr[5 + ARC_NAME_MAX];
    struct stat sb;
    int fd;

    arc_dir_segname(path, sizeof(path), d->root, w->name, segno);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
        return err_sys(e, ERR_IO, "%s", path);
    if (fstat(fd, &sb) < 0) {
        close(fd);
        return err_sys(e, ERR_IO, "%s", path);
    }
    while (off < (unsigned long long)sb.st_size) {
        unsigned long long left = (unsigned long long)sb.st_size - off;
        ssize_t got;
        unsigned len;
        size_t nl;

        got = pread(fd, hdr, sizeof(hdr), (off_t)off);
        if (got < 5) {
            arc_dir_problem(d, "%s: frame at offset %llu cut short", path,
                            off);
            break;
        }
        len = (unsigned)hdr[0] << 24 | (unsigned)hdr[1] << 16 |
              (unsigned)hdr[2] << 8 | hdr[3];
        nl = hdr[4];
        if (len < 1 + nl || len > ARC_DIR_FRAME_MAX || nl == 0 ||
            nl > ARC_NAME_MAX || (size_t)got < 5 + nl) {
            arc_dir_problem(d, "%s: garbled frame at offset %llu", path, off);
            break;
        }
        if (4 + (unsigned long long)len + ARC_DIR_CHECK > left) {
            arc_dir_problem(d,
                            "%s: frame at offset %llu cut short (%llu of "
                            "%llu octets)",
                            path, off, left,
                            4 + (unsigned long long)len + ARC_DIR_CHECK);
            break;
        }
        memcpy(name, hdr + 5, nl);
        name[nl] = '\0';
        if (arc_name_parse(name, wname, &seq) < 0 ||
            strcmp(wname, w->name) != 0) {
            arc_dir_problem(d, "%s: frame at offset %llu has a bad name", path,
                            off);
            break;
        }
        if (arc_dir_ent_add(w, seq, segno, off, len) < 0) {
            close(fd);
            return err_nomem(e);
        }
        lastoff = off;
        lastlen = len;
        off += 4 + (unsigned long long)len + ARC_DIR_CHECK;
    }
    /* The last frame of the last segment is where a crash leaves its
     * mark: its octets are checked, not only its length. */
    if (last && w->nents > 0 && off == (unsigned long long)sb.st_size &&
        w->ents[w->nents - 1].segno == segno &&
        !arc_dir_frame_ok(fd, lastoff, lastlen)) {
        arc_dir_problem(d,
                        "%s: last frame at offset %llu does not match "
                        "its check",
                        path, lastoff);
        w->nents--;
        off = lastoff;
    }
    if (last) {
        w->end = off;
        w->torn = off != (unsigned long long)sb.st_size;
    }
    close(fd);
    return 0;
}

static int
arc_dir_scan_writer(struct arc_dir *d, struct arc_dir_writer *w, struct err *e)
{
    char path[4096];
    unsigned *segs = NULL, maxseg = 0;
    size_t nsegs = 0, i;
    struct dirent *de;
    DIR *dir;

    snprintf(path, sizeof(path), "%s/%s", d->root, w->name);
    if ((dir = opendir(path)) == NULL)
        return err_sys(e, ERR_IO, "%s", path);
    while ((de = readdir(dir)) != NULL) {
        unsigned long v;
        char *end;
        unsigned *grown;

        if (strncmp(de->d_name, "segment-", 8) != 0)
            continue;
        v = strtoul(de->d_name + 8, &end, 10);
        if (*end != '\0' || strlen(de->d_name) != 14 || v == 0) {
            arc_dir_problem(d, "%s/%s: not a segment name", path, de->d_name);
            continue;
        }
        if ((grown = realloc(segs, (nsegs + 1) * sizeof(*grown))) == NULL) {
            closedir(dir);
            free(segs);
            return err_nomem(e);
        }
        segs = grown;
        segs[nsegs++] = (unsigned)v;
        if (v > maxseg)
            maxseg = (unsigned)v;
    }
    closedir(dir);
    /* In number order: a small insertion sort, segments are few. */
    for (i = 1; i < nsegs; i++) {
        unsigned v = segs[i];
        size_t j = i;

        for (; j > 0 && segs[j - 1] > v; j--)
            segs[j] = segs[j - 1];
        segs[j] = v;
    }
    for (i = 0; i < nsegs; i++) {
        if (i > 0 && segs[i] != segs[i - 1] + 1)
            arc_dir_problem(d, "%s: segment-%06u to segment-%06u missing",
                            path, segs[i - 1] + 1, segs[i] - 1);
        if (arc_dir_scan_segment(d, w, segs[i], segs[i] == maxseg, e) < 0) {
            free(segs);
            return -1;
        }
    }
    w->lastseg = maxseg;
    free(segs);
    return 0;
}

static void
arc_dir_close(void *s)
{
    struct arc_dir *d = s;
    size_t i;

    if (d == NULL)
        return;
    if (d->appended > 0)
        log_info(NULL,
                 "archive store dir:%s: %llu records written with %llu "
                 "fdatasyncs",
                 d->root, d->appended, d->nsyncs);
    for (i = 0; i < d->nw; i++) {
        if (d->w[i]->fd >= 0)
            close(d->w[i]->fd);
        if (d->w[i]->lockfd >= 0)
            close(d->w[i]->lockfd);
        free(d->w[i]->ents);
        free(d->w[i]);
    }
    free(d->w);
    pthread_mutex_destroy(&d->mu);
    pthread_cond_destroy(&d->cv);
    buf_fini(&d->problems);
    free(d->root);
    free(d);
}

static void *
arc_dir_open(const char *spec, const struct cfg *c, int check_only,
             struct err *e)
{
    struct arc_dir *d;
    struct dirent *de;
    DIR *dir;

    if (spec[0] != '/') {
        err_set(e, ERR_CONFIG,
                "store dir:%s: the directory must be an absolute path", spec);
        return NULL;
    }
    if ((d = calloc(1, sizeof(*d))) == NULL ||
        (d->root = strdup(spec)) == NULL) {
        free(d);
        err_nomem(e);
        return NULL;
    }
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    buf_init(&d->problems, 64 * 1024);
    d->segsize = ARC_DIR_SEGMENT_DEFAULT;
    if (c != NULL && cfg_is_set(c, "dir_segment_size"))
        d->segsize = cfg_num(c, "dir_segment_size");
    if (check_only)
        return d;
    if (mkdir(spec, 0700) < 0 && errno != EEXIST) {
        err_sys(e, ERR_IO, "store dir:%s", spec);
        arc_dir_close(d);
        return NULL;
    }
    if ((dir = opendir(spec)) == NULL) {
        err_sys(e, ERR_IO, "store dir:%s", spec);
        arc_dir_close(d);
        return NULL;
    }
    while ((de = readdir(dir)) != NULL) {
        struct arc_dir_writer *w;
        struct stat sb;

        /* Writers are folders; the index and the like are files. */
        if (!arc_writer_ok(de->d_name) || de->d_type == DT_REG ||
            (de->d_type == DT_UNKNOWN &&
             (fstatat(dirfd(dir), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0 ||
              !S_ISDIR(sb.st_mode))))
            continue;
        if ((w = arc_dir_writer_find(d, de->d_name, 1)) == NULL) {
            err_nomem(e);
            break;
        }
        if (arc_dir_scan_writer(d, w, e) < 0)
            break;
    }
    closedir(dir);
    if (e->code != ERR_NONE) {
        arc_dir_close(d);
        return NULL;
    }
    return d;
}

/* arc_dir_claim - make w writable by this process: its lock, its torn
 * tail cut off, its last segment open. Under d->mu. */
static int
arc_dir_claim(struct arc_dir *d, struct arc_dir_writer *w, struct err *e)
{
    char path[4096];

    snprintf(path, sizeof(path), "%s/%s", d->root, w->name);
    if (mkdir(path, 0700) < 0 && errno != EEXIST)
        return err_sys(e, ERR_IO, "%s", path);
    snprintf(path, sizeof(path), "%s/%s/.lock", d->root, w->name);
    if (w->lockfd < 0) {
        w->lockfd =
            open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (w->lockfd < 0)
            return err_sys(e, ERR_IO, "%s", path);
        if (flock(w->lockfd, LOCK_EX | LOCK_NB) < 0) {
            err_sys(e, ERR_TEMP,
                    "archive writer %s in %s is in use by another process",
                    w->name, d->root);
            close(w->lockfd);
            w->lockfd = -1;
            return -1;
        }
        /* What the writer holds is read again under the lock: another
         * process may have appended between open() and now. */
        w->nents = 0;
        w->sorted = 1;
        w->lastseg = 0;
        w->end = 0;
        w->torn = 0;
        if (arc_dir_scan_writer(d, w, e) < 0)
            return -1;
    }
    if (w->lastseg == 0) {
        w->lastseg = 1;
        w->end = 0;
        w->torn = 0;
    }
    arc_dir_segname(path, sizeof(path), d->root, w->name, w->lastseg);
    w->fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (w->fd < 0)
        return err_sys(e, ERR_IO, "%s", path);
    if (w->torn) {
        log_warning(NULL,
                    "archive: %s: cutting a torn last frame off at offset "
                    "%llu (a write cut short by a crash; that message was "
                    "not acknowledged)",
                    path, w->end);
        if (ftruncate(w->fd, (off_t)w->end) < 0 || fdatasync(w->fd) < 0) {
            err_sys(e, ERR_IO, "%s: cut back", path);
            close(w->fd);
            w->fd = -1;
            return -1;
        }
        w->torn = 0;
    }
    return 0;
}

/* arc_dir_roll - begin the next segment; the old one is made durable
 * first, so group commit only ever waits on the newest. */
static int
arc_dir_roll(struct arc_dir *d, struct arc_dir_writer *w, struct err *e)
{
    char path[4096];
    int dfd;

    if (fdatasync(w->fd) < 0) {
        d->broken = errno;
        return err_sys(e, ERR_IO, "archive segment fdatasync");
    }
    close(w->fd);
    w->fd = -1;
    w->lastseg++;
    w->end = 0;
    arc_dir_segname(path, sizeof(path), d->root, w->name, w->lastseg);
    w->fd =
        open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (w->fd < 0)
        return err_sys(e, ERR_IO, "%s", path);
    snprintf(path, sizeof(path), "%s/%s", d->root, w->name);
    if ((dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
        fsync(dfd);
        close(dfd);
    }
    return 0;
}

int
arc_dir_claim_writer(void *s, const char *writer, struct err *e)
{
    struct arc_dir *d = s;
    struct arc_dir_writer *w;
    int rc = 0;

    if (!arc_writer_ok(writer))
        return err_set(e, ERR_INTERNAL, "bad writer name");
    pthread_mutex_lock(&d->mu);
    if ((w = arc_dir_writer_find(d, writer, 1)) == NULL)
        rc = err_nomem(e);
    else if (w->fd < 0)
        rc = arc_dir_claim(d, w, e);
    pthread_mutex_unlock(&d->mu);
    return rc;
}

int
arc_dir_append(void *s, const struct arc_item *it, unsigned long long *ticket,
               struct err *e)
{
    struct arc_dir *d = s;
    struct arc_dir_writer *w;
    char wname[ARC_WRITER_MAX + 1];
    unsigned long long seq;
    unsigned char sum[32], *frame;
    size_t nl = strlen(it->name), len, total, done;
    ssize_t wr = 0;
    int rc = -1;

    if (arc_name_parse(it->name, wname, &seq) < 0)
        return err_set(e, ERR_INTERNAL, "bad record name %s", it->name);
    len = 1 + nl + it->sealed_len;
    if (len > ARC_DIR_FRAME_MAX)
        return err_set(e, ERR_LIMIT, "record %s too large for a segment",
                       it->name);
    total = 4 + len + ARC_DIR_CHECK;
    if ((frame = malloc(total)) == NULL)
        return err_nomem(e);
    frame[0] = (unsigned char)(len >> 24);
    frame[1] = (unsigned char)(len >> 16);
    frame[2] = (unsigned char)(len >> 8);
    frame[3] = (unsigned char)len;
    frame[4] = (unsigned char)nl;
    memcpy(frame + 5, it->name, nl);
    memcpy(frame + 5 + nl, it->sealed, it->sealed_len);
    if (arc_dir_check(frame, 4 + len, sum) < 0) {
        free(frame);
        return err_set(e, ERR_LIB, "SHA-256 failed");
    }
    memcpy(frame + 4 + len, sum, ARC_DIR_CHECK);

    pthread_mutex_lock(&d->mu);
    if (d->broken) {
        errno = d->broken;
        err_sys(e, ERR_IO, "archive store dir:%s: an earlier fdatasync failed",
                d->root);
        goto out;
    }
    if ((w = arc_dir_writer_find(d, wname, 1)) == NULL) {
        err_nomem(e);
        goto out;
    }
    if (w->nents > 0 && w->ents[w->nents - 1].seq >= seq) {
        err_set(e, ERR_INTERNAL, "record %s after seq %llu of its writer",
                it->name, w->ents[w->nents - 1].seq);
        goto out;
    }
    if (w->fd < 0 && arc_dir_claim(d, w, e) < 0)
        goto out;
    if (w->end > 0 && (long long)(w->end + total) > d->segsize &&
        arc_dir_roll(d, w, e) < 0)
        goto out;
    /* A short write is tried on, so a full disk says ENOSPC. */
    for (done = 0; done < total; done += (size_t)wr) {
        wr = pwrite(w->fd, frame + done, total - done, (off_t)(w->end + done));
        if (wr < 0 && errno == EINTR) {
            wr = 0;
            continue;
        }
        if (wr <= 0)
            break;
    }
    if (done != total) {
        if (wr == 0)
            errno = ENOSPC;
        err_sys(e, ERR_IO, "archive store dir:%s: write", d->root);
        /* Nothing of a failed frame may stay to be read as a record. */
        if (ftruncate(w->fd, (off_t)w->end) < 0)
            d->broken = errno;
        goto out;
    }
    if (arc_dir_ent_add(w, seq, w->lastseg, w->end, (unsigned)len) < 0) {
        err_nomem(e);
        goto out;
    }
    w->end += total;
    *ticket = ++d->appended;
    rc = 0;
out:
    pthread_mutex_unlock(&d->mu);
    free(frame);
    return rc;
}

int
arc_dir_sync(void *s, unsigned long long ticket, struct err *e)
{
    struct arc_dir *d = s;
    int rc = 0;

    pthread_mutex_lock(&d->mu);
    while (d->synced < ticket && !d->broken) {
        if (!d->syncing) {
            unsigned long long target = d->appended;
            int fds[16], serr = 0;
            size_t i, nfd = 0;

            /* Every writer this process appends to (one, as a rule). */
            for (i = 0; i < d->nw && nfd < 16; i++)
                if (d->w[i]->fd >= 0 && (fds[nfd] = dup(d->w[i]->fd)) >= 0)
                    nfd++;
            d->syncing = 1;
            pthread_mutex_unlock(&d->mu);
            for (i = 0; i < nfd; i++) {
                if (fdatasync(fds[i]) < 0 && serr == 0)
                    serr = errno ? errno : EIO;
                close(fds[i]);
            }
            pthread_mutex_lock(&d->mu);
            d->nsyncs++;
            d->syncing = 0;
            if (serr)
                d->broken = serr;
            else
                d->synced = target;
            pthread_cond_broadcast(&d->cv);
        } else {
            pthread_cond_wait(&d->cv, &d->mu);
        }
    }
    if (d->synced < ticket) {
        errno = d->broken;
        rc = err_sys(e, ERR_IO, "archive store dir:%s: fdatasync", d->root);
    }
    pthread_mutex_unlock(&d->mu);
    return rc;
}

static int
arc_dir_put(void *s, const struct arc_item *it, struct err *e)
{
    unsigned long long ticket;

    if (arc_dir_append(s, it, &ticket, e) < 0)
        return -1;
    return arc_dir_sync(s, ticket, e);
}

static const struct arc_dir_ent *
arc_dir_lookup(const struct arc_dir_writer *w, unsigned long long seq)
{
    size_t lo = 0, hi = w->nents, i;

    if (!w->sorted) {
        for (i = 0; i < w->nents; i++)
            if (w->ents[i].seq == seq)
                return &w->ents[i];
        return NULL;
    }
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (w->ents[mid].seq == seq)
            return &w->ents[mid];
        if (w->ents[mid].seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static int
arc_dir_get(void *s, const char *name, struct buf *out, struct err *e)
{
    struct arc_dir *d = s;
    struct arc_dir_writer *w;
    const struct arc_dir_ent *ent;
    char wname[ARC_WRITER_MAX + 1], path[4096];
    unsigned long long seq, off = 0;
    unsigned char *p = NULL, sum[32];
    unsigned len = 0, segno = 0;
    size_t nl = strlen(name), total;
    int fd, rc = -1;

    if (arc_name_parse(name, wname, &seq) < 0)
        return err_set(e, ERR_INPUT, "no record %s (not a record name)", name);
    pthread_mutex_lock(&d->mu);
    w = arc_dir_writer_find(d, wname, 0);
    ent = w != NULL ? arc_dir_lookup(w, seq) : NULL;
    if (ent != NULL) {
        off = ent->off;
        len = ent->len;
        segno = ent->segno;
    }
    pthread_mutex_unlock(&d->mu);
    if (ent == NULL)
        return err_set(e, ERR_INPUT, "no record %s in dir:%s", name, d->root);
    arc_dir_segname(path, sizeof(path), d->root, wname, segno);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
        return err_sys(e, ERR_IO, "%s", path);
    total = 4 + (size_t)len + ARC_DIR_CHECK;
    if ((p = malloc(total)) == NULL) {
        err_nomem(e);
        goto out;
    }
    if (pread(fd, p, total, (off_t)off) != (ssize_t)total) {
        err_set(e, ERR_IO, "record %s: %s at offset %llu: cut short", name,
                path, off);
        goto out;
    }
    if (arc_dir_check(p, 4 + len, sum) < 0 ||
        memcmp(sum, p + 4 + len, ARC_DIR_CHECK) != 0) {
        err_set(e, ERR_INPUT,
                "record %s: %s at offset %llu: frame altered (its check "
                "does not match)",
                name, path, off);
        goto out;
    }
    if (p[4] != nl || memcmp(p + 5, name, nl) != 0) {
        err_set(e, ERR_INPUT, "record %s: %s at offset %llu: name changed",
                name, path, off);
        goto out;
    }
    rc = buf_append(out, p + 5 + nl, len - 1 - nl, e);
out:
    free(p);
    close(fd);
    return rc;
}

static int
arc_dir_list(void *s, const char *writer, const char *from,
             int (*fn)(void *arg, const char *name), void *arg, struct err *e)
{
    struct arc_dir *d = s;
    char fw[ARC_WRITER_MAX + 1] = "", name[ARC_NAME_MAX + 1];
    unsigned long long fseq = 0;
    size_t i, j;

    if (from != NULL && arc_name_parse(from, fw, &fseq) < 0)
        return err_set(e, ERR_INPUT, "list from %s: not a record name", from);
    for (i = 0;; i++) {
        struct arc_dir_ent *copy;
        char wname[ARC_WRITER_MAX + 1];
        size_t n;
        int rc;

        /* A copy of one writer's entries, so fn may call get. */
        pthread_mutex_lock(&d->mu);
        if (i >= d->nw) {
            pthread_mutex_unlock(&d->mu);
            break;
        }
        snprintf(wname, sizeof(wname), "%s", d->w[i]->name);
        n = d->w[i]->nents;
        copy = n > 0 ? malloc(n * sizeof(*copy)) : NULL;
        if (copy != NULL)
            memcpy(copy, d->w[i]->ents, n * sizeof(*copy));
        pthread_mutex_unlock(&d->mu);
        if (n > 0 && copy == NULL)
            return err_nomem(e);
        if ((writer != NULL && strcmp(writer, wname) != 0) ||
            (from != NULL && strcmp(wname, fw) < 0)) {
            free(copy);
            continue;
        }
        for (j = 0; j < n; j++) {
            if (from != NULL && strcmp(wname, fw) == 0 && copy[j].seq < fseq)
                continue;
            arc_name(name, wname, copy[j].seq);
            if ((rc = fn(arg, name)) != 0) {
                free(copy);
                return rc;
            }
        }
        free(copy);
    }
    return 0;
}

void
arc_dir_where(void *s, const char *name, char *out, size_t n)
{
    struct arc_dir *d = s;
    struct arc_dir_writer *w;
    const struct arc_dir_ent *ent;
    char wname[ARC_WRITER_MAX + 1];
    unsigned long long seq;

    out[0] = '\0';
    if (arc_name_parse(name, wname, &seq) < 0)
        return;
    pthread_mutex_lock(&d->mu);
    if ((w = arc_dir_writer_find(d, wname, 0)) != NULL &&
        (ent = arc_dir_lookup(w, seq)) != NULL)
        snprintf(out, n, "%s/segment-%06u offset %llu", wname, ent->segno,
                 ent->off);
    pthread_mutex_unlock(&d->mu);
}

const char *
arc_dir_problems(void *s)
{
    struct arc_dir *d = s;

    return buf_str(&d->problems);
}

int
arc_dir_segments(void *s, const char *writer,
                 int (*fn)(void *arg, const struct arc_dir_seg *seg),
                 void *arg, struct err *e)
{
    struct arc_dir *d = s;
    struct arc_dir_writer *w;
    struct arc_dir_seg *segs = NULL;
    size_t nsegs = 0, i;
    int rc = 0;

    pthread_mutex_lock(&d->mu);
    if ((w = arc_dir_writer_find(d, writer, 0)) != NULL) {
        for (i = 0; i < w->nents; i++) {
            struct arc_dir_seg *grown;

            if (nsegs > 0 && segs[nsegs - 1].segno == w->ents[i].segno) {
                segs[nsegs - 1].last = w->ents[i].seq;
                segs[nsegs - 1].count++;
                continue;
            }
            if ((grown = realloc(segs, (nsegs + 1) * sizeof(*grown))) ==
                NULL) {
                rc = err_nomem(e);
                break;
            }
            segs = grown;
            segs[nsegs].segno = w->ents[i].segno;
            segs[nsegs].first = segs[nsegs].last = w->ents[i].seq;
            segs[nsegs].count = 1;
            segs[nsegs].is_last = 0;
            nsegs++;
        }
        if (nsegs > 0 && segs[nsegs - 1].segno == w->lastseg)
            segs[nsegs - 1].is_last = 1;
    }
    pthread_mutex_unlock(&d->mu);
    for (i = 0; rc == 0 && i < nsegs; i++)
        rc = fn(arg, &segs[i]);
    free(segs);
    return rc;
}

int
arc_dir_drop_segment(void *s, const char *writer, unsigned segno,
                     struct err *e)
{
    struct arc_dir *d = s;
    struct arc_dir_writer *w;
    char path[4096];
    size_t i, j;
    int dfd, rc = 0;

    pthread_mutex_lock(&d->mu);
    if ((w = arc_dir_writer_find(d, writer, 0)) == NULL ||
        segno == w->lastseg) {
        pthread_mutex_unlock(&d->mu);
        return err_set(e, ERR_INTERNAL,
                       "segment %u of %s is the writer's last", segno, writer);
    }
    arc_dir_segname(path, sizeof(path), d->root, writer, segno);
    if (unlink(path) < 0 && errno != ENOENT) {
        rc = err_sys(e, ERR_IO, "%s", path);
    } else {
        snprintf(path, sizeof(path), "%s/%s", d->root, writer);
        if ((dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
            if (fsync(dfd) < 0)
                rc = err_sys(e, ERR_IO, "%s: fsync", path);
            close(dfd);
        }
        for (i = j = 0; i < w->nents; i++)
            if (w->ents[i].segno != segno)
                w->ents[j++] = w->ents[i];
        w->nents = j;
    }
    pthread_mutex_unlock(&d->mu);
    return rc;
}

const struct arc_store_ops arc_store_dir = {
    .scheme = "dir",
    .open = arc_dir_open,
    .put = arc_dir_put,
    .get = arc_dir_get,
    .list = arc_dir_list,
    .remove = NULL,
    .close = arc_dir_close,
};
