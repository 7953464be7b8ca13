/*
 * queue - the durable spool: commit, index, scan, open and close
 *
 * See queue.h for the layout, queue_file.c for the file format,
 * queue_int.h for how the daemon's files divide the work. How it works:
 *
 * The index is one struct queue_entry per message in queue/: its id and
 * the time of its next attempt (CLOCK_REALTIME, ms), in a hash table by
 * id and, while waiting, in a binary min-heap by time. An entry whose
 * attempt is running is out of the heap but still in the table, so a
 * rescan of queue/ never schedules it twice. Nothing of the message is
 * kept in memory between attempts.
 *
 * queue_commit() writes and fsyncs the file and indexes it due now;
 * the workers and the trigger thread (queue_run.c) take the entries,
 * and queue_scan() indexes what queue/ holds that the index does not.
 * queue_open() makes the directories and takes the spool's lock;
 * queue_free() closes them.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "util/fdio.h"
#include "util/qid.h"
#include "util/log.h"
#include "queue/queue_int.h"
#include "queue/events_conf.h"

/* ------------------------------------------------------------ helpers */

long long
queue_now_us(void)
{
    struct timeval tv;

    gettimeofday(&tv, NULL);
    return (long long)tv.tv_sec * 1000000LL + tv.tv_usec;
}

long long
queue_now_ms(void)
{
    return queue_now_us() / 1000;
}

/* ------------------------------------------------------------- index */

static size_t
queue_hash(const char *id)
{
    uint32_t h = 2166136261u;

    while (*id != '\0') {
        h ^= (unsigned char)*id++;
        h *= 16777619u;
    }
    return h;
}

static struct queue_entry *
queue_find(const struct queue *q, const char *id)
{
    struct queue_entry *en;

    for (en = q->table[queue_hash(id) & (q->table_size - 1)]; en != NULL;
         en = en->hnext)
        if (strcmp(en->id, id) == 0)
            return en;
    return NULL;
}

static int
queue_table_add(struct queue *q, struct queue_entry *en)
{
    size_t h;

    if (q->nentries >= q->table_size) {
        size_t size = q->table_size * 2, i;
        struct queue_entry **t = calloc(size, sizeof(*t)), *x, *next;

        if (t == NULL)
            return -1;
        for (i = 0; i < q->table_size; i++)
            for (x = q->table[i]; x != NULL; x = next) {
                next = x->hnext;
                h = queue_hash(x->id) & (size - 1);
                x->hnext = t[h];
                t[h] = x;
            }
        free(q->table);
        q->table = t;
        q->table_size = size;
    }
    h = queue_hash(en->id) & (q->table_size - 1);
    en->hnext = q->table[h];
    q->table[h] = en;
    q->nentries++;
    return 0;
}

void
queue_table_remove(struct queue *q, struct queue_entry *en)
{
    struct queue_entry **pp =
        &q->table[queue_hash(en->id) & (q->table_size - 1)];

    for (; *pp != NULL; pp = &(*pp)->hnext)
        if (*pp == en) {
            *pp = en->hnext;
            q->nentries--;
            return;
        }
}

static void
queue_heap_set(struct queue *q, size_t i, struct queue_entry *en)
{
    q->heap[i] = en;
    en->heap_at = i;
}

static void
queue_heap_up(struct queue *q, size_t i)
{
    struct queue_entry *en = q->heap[i];

    while (i > 0 && q->heap[(i - 1) / 2]->due_ms > en->due_ms) {
        queue_heap_set(q, i, q->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    queue_heap_set(q, i, en);
}

void
queue_heap_down(struct queue *q, size_t i)
{
    struct queue_entry *en = q->heap[i];

    for (;;) {
        size_t c = 2 * i + 1;

        if (c >= q->nheap)
            break;
        if (c + 1 < q->nheap && q->heap[c + 1]->due_ms < q->heap[c]->due_ms)
            c++;
        if (q->heap[c]->due_ms >= en->due_ms)
            break;
        queue_heap_set(q, i, q->heap[c]);
        i = c;
    }
    queue_heap_set(q, i, en);
}

int
queue_heap_push(struct queue *q, struct queue_entry *en)
{
    if (q->nheap == q->heap_cap) {
        size_t cap = q->heap_cap ? q->heap_cap * 2 : 1024;
        struct queue_entry **h = realloc(q->heap, cap * sizeof(*h));

        if (h == NULL)
            return -1;
        q->heap = h;
        q->heap_cap = cap;
    }
    q->heap[q->nheap] = en;
    en->heap_at = q->nheap++;
    queue_heap_up(q, en->heap_at);
    return 0;
}

struct queue_entry *
queue_heap_pop(struct queue *q)
{
    struct queue_entry *top = q->heap[0];

    if (--q->nheap > 0) {
        queue_heap_set(q, 0, q->heap[q->nheap]);
        queue_heap_down(q, 0);
    }
    top->heap_at = SIZE_MAX;
    return top;
}

/* queue_schedule - index id (when it is not) with its next attempt at
 * due_ms, or bring a waiting attempt forward to due_ms. */
void
queue_schedule(struct queue *q, const char *id, long long due_ms)
{
    struct queue_entry *en;

    pthread_mutex_lock(&q->lock);
    if ((en = queue_find(q, id)) != NULL) {
        if (en->heap_at != SIZE_MAX && due_ms < en->due_ms) {
            en->due_ms = due_ms;
            queue_heap_up(q, en->heap_at);
            pthread_cond_signal(&q->wake);
        }
        pthread_mutex_unlock(&q->lock);
        return;
    }
    if ((en = calloc(1, sizeof(*en))) != NULL)
        snprintf(en->id, sizeof(en->id), "%s", id);
    if (en == NULL || queue_table_add(q, en) < 0) {
        free(en);
        pthread_mutex_unlock(&q->lock);
        /* on disk all the same: the next rescan indexes it */
        log_warning(id, "out of memory: scheduled at the next queue scan");
        return;
    }
    en->due_ms = due_ms;
    if (queue_heap_push(q, en) < 0) {
        queue_table_remove(q, en);
        free(en);
        pthread_mutex_unlock(&q->lock);
        log_warning(id, "out of memory: scheduled at the next queue scan");
        return;
    }
    pthread_cond_signal(&q->wake);
    pthread_mutex_unlock(&q->lock);
}

/* queue_flush - every waiting attempt now, routes no longer suspended. */
void
queue_flush(struct queue *q, const char *id)
{
    size_t i;

    pthread_mutex_lock(&q->lock);
    for (i = 0; i < q->set->nroutes; i++)
        q->set->routes[i].dead_until_ms = 0;
    if (id == NULL) {
        long long now = queue_now_ms();

        /* all equal: still a heap */
        for (i = 0; i < q->nheap; i++)
            if (q->heap[i]->due_ms > now)
                q->heap[i]->due_ms = now;
        for (i = q->nheap / 2; i-- > 0;)
            queue_heap_down(q, i);
        pthread_cond_broadcast(&q->wake);
    }
    pthread_mutex_unlock(&q->lock);
    if (id != NULL)
        queue_schedule(q, id, queue_now_ms());
}

/* ------------------------------------------------------------- commit */

/* queue_write_msg - the message octets, from data or piece by piece. */
static int
queue_write_msg(int fd, const struct queue_msg *m)
{
    size_t i;

    if (m->iov == NULL)
        return fdio_write_all(fd, m->data, m->len);
    for (i = 0; i < m->niov; i++)
        if (fdio_write_all(fd, m->iov[i].iov_base, m->iov[i].iov_len) < 0)
            return -1;
    return 0;
}

/* queue_move_in - rename tmp/id to queue/id, never over a file there. */
static int
queue_move_in(struct queue *q, const char *id)
{
    if (renameat2(q->tmp_fd, id, q->queue_fd, id, RENAME_NOREPLACE) < 0) {
        if (errno != EINVAL && errno != ENOSYS)
            return -1;
        /* no RENAME_NOREPLACE here: link() refuses to replace too */
        if (linkat(q->tmp_fd, id, q->queue_fd, id, 0) < 0)
            return -1;
        unlinkat(q->tmp_fd, id, 0);
    }
    return 0;
}

/* queue_write_as - tmp/QID, fsync, and unless staged, rename to
 * queue/QID, fsync queue/. */
static int
queue_write_as(struct queue *q, const struct queue_msg *m, int staged,
               struct err *e)
{
    char tail[QUEUE_TAIL_LEN];
    struct buf head;
    int fd, saved;
    const char *what = "write";

    if (!qid_is_valid(m->qid, QUEUE_ID_MAX))
        return err_set(e, ERR_INTERNAL, "bad queue id '%.40s'", m->qid);
    buf_init(&head, 0);
    if (queue_file_head(m, queue_now_us(), &head, e) < 0) {
        buf_fini(&head);
        return -1;
    }
    queue_file_tail(m, head.data, head.len, tail);
    fd = openat(q->tmp_fd, m->qid, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                0600);
    if (fd < 0) {
        buf_fini(&head);
        return err_sys(e, ERR_IO, "create %s/tmp/%s", q->dir, m->qid);
    }
    if (fdio_write_all(fd, head.data, head.len) < 0 ||
        queue_write_msg(fd, m) < 0 ||
        fdio_write_all(fd, tail, sizeof(tail)) < 0)
        goto fail;
    what = "fsync";
    if (fsync(fd) < 0)
        goto fail;
    what = "close";
    if (close(fd) < 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    /* ---- encrypt: a split message stops here (queue_stage) */
    if (staged) {
        buf_fini(&head);
        return 0;
    }
    /* ---- end encrypt */
    what = "rename";
    if (queue_move_in(q, m->qid) < 0)
        goto fail;
    if (fsync(q->queue_fd) < 0) {
        saved = errno;
        unlinkat(q->queue_fd, m->qid, 0);
        errno = saved;
        buf_fini(&head);
        return err_sys(e, ERR_IO, "fsync %s/queue", q->dir);
    }
    buf_fini(&head);
    return 0;
fail:
    saved = errno;
    if (fd >= 0)
        close(fd);
    unlinkat(q->tmp_fd, m->qid, 0);
    buf_fini(&head);
    errno = saved;
    return err_sys(e, ERR_IO, "%s %s/tmp/%s", what, q->dir, m->qid);
}

/* queue_write - tmp/QID, fsync, rename to queue/QID, fsync queue/. */
int
queue_write(struct queue *q, const struct queue_msg *m, struct err *e)
{
    return queue_write_as(q, m, 0, e);
}

/* ---- encrypt: the copies of a split message, visible together */
int
queue_stage(struct queue *q, const struct queue_msg *m, struct err *e)
{
    return queue_write_as(q, m, 1, e);
}

void
queue_unstage(struct queue *q, const char *id)
{
    if (qid_is_valid(id, QUEUE_ID_MAX))
        unlinkat(q->tmp_fd, id, 0);
}

int
queue_publish(struct queue *q, const char *const *ids, size_t n, struct err *e)
{
    size_t i, moved;
    int saved;

    for (moved = 0; moved < n; moved++)
        if (!qid_is_valid(ids[moved], QUEUE_ID_MAX) ||
            queue_move_in(q, ids[moved]) < 0)
            break;
    if (moved == n && fsync(q->queue_fd) == 0) {
        for (i = 0; i < n; i++)
            queue_schedule(q, ids[i], queue_now_ms());
        return 0;
    }
    /* Nothing was scheduled: take back what was moved, drop the rest. */
    saved = errno;
    for (i = 0; i < n; i++) {
        if (i < moved)
            unlinkat(q->queue_fd, ids[i], 0);
        queue_unstage(q, ids[i]);
    }
    if (moved > 0)
        fsync(q->queue_fd);
    errno = saved;
    return err_sys(e, ERR_IO, "%s %s/queue/%s", moved < n ? "rename" : "fsync",
                   q->dir, moved < n ? ids[moved] : "");
}
/* ---- end encrypt */

int
queue_commit(struct queue *q, const struct queue_msg *m, struct err *e)
{
    if (queue_write(q, m, e) < 0)
        return -1;
    queue_schedule(q, m->qid, queue_now_ms());
    /* ---- events: the front end accepted it, one event per recipient */
    if (q->events != NULL) {
        struct iovec one = {(void *)m->data, m->len};
        char msgid[512], stream[256];
        struct events_rec r;
        size_t i;

        events_msgid(m->iov ? m->iov : &one, m->iov ? m->niov : 1, msgid,
                     sizeof(msgid));
        events_stream(q->events, m->stream, m->auth_user, m->sender, stream,
                      sizeof(stream));
        memset(&r, 0, sizeof(r));
        r.type = EVENTS_RECEIVED;
        r.qid = m->qid;
        r.msgid = msgid;
        r.sender = m->sender;
        r.stream = stream;
        r.size = m->len;
        r.relay = m->client_addr;
        for (i = 0; i < m->nrcpts; i++) {
            r.rcpt = m->rcpts[i].addr;
            events_emit(q->events, &r);
        }
    }
    return 0;
}

/* ---- events */
struct events *
queue_events(struct queue *q)
{
    return q != NULL ? q->events : NULL;
}

const char *
queue_commit_reply(const struct err *e)
{
    if (e->sys_errno == ENOSPC || e->sys_errno == EDQUOT ||
        e->sys_errno == EFBIG)
        return "452 4.3.1 Error: insufficient system storage";
    return "451 4.3.0 Error: queue file write error";
}

int
queue_has_space(struct queue *q, unsigned long long size)
{
    struct statvfs sv;
    unsigned long long avail, minfree;

    if (fstatvfs(q->queue_fd, &sv) < 0)
        return 1; /* the write itself will tell */
    pthread_mutex_lock(&q->lock);
    minfree = q->set->minfree;
    pthread_mutex_unlock(&q->lock);
    avail = (unsigned long long)sv.f_bavail * sv.f_frsize;
    return avail >= minfree + size + size / 2;
}

/* --------------------------------------------------------------- scan */

/* queue_scan - index every file of queue/ not indexed yet. At start-up
 * (recovery) a file whose end record is missing is removed; later such
 * a file (damaged under us) goes to corrupt/. Returns the count added. */
size_t
queue_scan(struct queue *q, int recovery)
{
    struct dirent *de;
    size_t added = 0;
    DIR *d;
    int dfd;

    if ((dfd = dup(q->queue_fd)) < 0 || (d = fdopendir(dfd)) == NULL) {
        if (dfd >= 0)
            close(dfd);
        log_error(NULL, "scan %s/queue: %s", q->dir, strerror(errno));
        return 0;
    }
    rewinddir(d);
    while ((de = readdir(d)) != NULL) {
        char tail[QUEUE_TAIL_LEN];
        struct stat st;
        int known, fd, ok;

        if (!qid_is_valid(de->d_name, QUEUE_ID_MAX))
            continue;
        pthread_mutex_lock(&q->lock);
        known = queue_find(q, de->d_name) != NULL;
        pthread_mutex_unlock(&q->lock);
        if (known)
            continue;
        if ((fd = openat(q->queue_fd, de->d_name, O_RDONLY | O_CLOEXEC)) < 0)
            continue;
        ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
             st.st_size >= QUEUE_TAIL_LEN &&
             pread(fd, tail, sizeof(tail),
                   (off_t)(st.st_size - QUEUE_TAIL_LEN)) ==
                 (ssize_t)sizeof(tail) &&
             queue_file_tail_ok(tail, sizeof(tail), (size_t)st.st_size);
        close(fd);
        if (!ok && recovery) {
            if (unlinkat(q->queue_fd, de->d_name, 0) == 0)
                log_warning(de->d_name,
                            "removed a torn queue file "
                            "(%lld octets, no end record)",
                            (long long)st.st_size);
            unlinkat(q->defer_fd, de->d_name, 0);
            continue;
        }
        if (!ok) {
            if (renameat(q->queue_fd, de->d_name, q->corrupt_fd, de->d_name) ==
                0)
                log_error(de->d_name,
                          "queue file without an end record "
                          "moved to %s/corrupt",
                          q->dir);
            continue;
        }
        queue_schedule(q, de->d_name, queue_now_ms());
        added++;
    }
    closedir(d);
    return added;
}

/* queue_clean - at start-up: what tmp/ holds was never acknowledged;
 * deferral notes of messages that are gone. */
void
queue_clean(struct queue *q)
{
    struct dirent *de;
    DIR *d;
    int dfd;

    if ((dfd = dup(q->tmp_fd)) >= 0 && (d = fdopendir(dfd)) != NULL) {
        while ((de = readdir(d)) != NULL)
            if (de->d_name[0] != '.' &&
                unlinkat(q->tmp_fd, de->d_name, 0) == 0)
                log_warning(de->d_name, "removed an incomplete queue file "
                                        "(the relay stopped while "
                                        "receiving it)");
        closedir(d);
    } else if (dfd >= 0) {
        close(dfd);
    }
    if ((dfd = dup(q->defer_fd)) >= 0 && (d = fdopendir(dfd)) != NULL) {
        while ((de = readdir(d)) != NULL) {
            struct stat st;

            if (de->d_name[0] != '.' &&
                fstatat(q->queue_fd, de->d_name, &st, 0) < 0 &&
                fstatat(q->hold_fd, de->d_name, &st, 0) < 0)
                unlinkat(q->defer_fd, de->d_name, 0);
        }
        closedir(d);
    } else if (dfd >= 0) {
        close(dfd);
    }
}

/* --------------------------------------------------------- life cycle */

static int
queue_subdir(struct queue *q, const char *name, int *fd, struct err *e)
{
    if (mkdirat(q->dfd, name, 0700) < 0 && errno != EEXIST)
        return err_sys(e, ERR_IO, "queue_directory: mkdir %s/%s", q->dir,
                       name);
    if ((*fd = openat(q->dfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return err_sys(e, ERR_IO, "queue_directory: %s/%s", q->dir, name);
    return 0;
}

struct queue *
queue_open(const struct cfg *c, struct err *e)
{
    struct queue *q;
    const char *s;
    struct stat st;

    if ((q = calloc(1, sizeof(*q))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    q->dfd = q->tmp_fd = q->queue_fd = q->hold_fd = q->corrupt_fd = -1;
    q->defer_fd = q->lock_fd = q->fifo_fd = -1;
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->wake, NULL);
    pthread_cond_init(&q->gone, NULL);
    atomic_init(&q->seq, ((unsigned)getpid() << 8) ^ 0x8000000u);
    if ((q->table = calloc(1024, sizeof(*q->table))) == NULL) {
        err_nomem(e);
        goto fail;
    }
    q->table_size = 1024;
    if ((s = cfg_str(c, "myhostname")) != NULL)
        snprintf(q->hostname, sizeof(q->hostname), "%s", s);
    else if (gethostname(q->hostname, sizeof(q->hostname) - 1) < 0)
        snprintf(q->hostname, sizeof(q->hostname), "localhost");
    q->file_max = 2 * (size_t)cfg_num(c, "message_size_limit") + (64u << 20);
    if ((q->set = queue_settings_new(c, e)) == NULL)
        goto fail;
    s = cfg_str(c, "queue_directory");
    if (snprintf(q->dir, sizeof(q->dir), "%s", s) >= (int)sizeof(q->dir)) {
        cfg_err(e, c, "queue_directory", "name too long");
        goto fail;
    }
    if (mkdir(q->dir, 0700) < 0 && errno != EEXIST) {
        cfg_err(e, c, "queue_directory", "mkdir %s: %s", q->dir,
                strerror(errno));
        goto fail;
    }
    if ((q->dfd = open(q->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        cfg_err(e, c, "queue_directory", "%s: %s", q->dir, strerror(errno));
        goto fail;
    }
    if (queue_subdir(q, "tmp", &q->tmp_fd, e) < 0 ||
        queue_subdir(q, "queue", &q->queue_fd, e) < 0 ||
        queue_subdir(q, "hold", &q->hold_fd, e) < 0 ||
        queue_subdir(q, "corrupt", &q->corrupt_fd, e) < 0 ||
        queue_subdir(q, "defer", &q->defer_fd, e) < 0)
        goto fail;
    if ((q->lock_fd =
             openat(q->dfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
        err_sys(e, ERR_IO, "queue_directory: %s/lock", q->dir);
        goto fail;
    }
    if (flock(q->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        err_set(e, ERR_CONFIG,
                "queue_directory %s is in use by another "
                "relaychaind",
                q->dir);
        goto fail;
    }
    if (mkfifoat(q->dfd, "trigger", 0600) < 0 && errno != EEXIST) {
        err_sys(e, ERR_IO, "queue_directory: mkfifo %s/trigger", q->dir);
        goto fail;
    }
    if (fstatat(q->dfd, "trigger", &st, 0) < 0 || !S_ISFIFO(st.st_mode)) {
        err_set(e, ERR_CONFIG, "queue_directory: %s/trigger is not a FIFO",
                q->dir);
        goto fail;
    }
    if ((q->fifo_fd =
             openat(q->dfd, "trigger", O_RDWR | O_NONBLOCK | O_CLOEXEC)) < 0) {
        err_sys(e, ERR_IO, "queue_directory: %s/trigger", q->dir);
        goto fail;
    }
    /* ---- events: the writer starts with the spool, stops with it */
    {
        struct events_settings es;

        if (events_settings_from(c, &es) &&
            (q->events = events_open(&es, e)) == NULL)
            goto fail;
    }
    return q;
fail:
    queue_free(q);
    return NULL;
}

void
queue_free(struct queue *q)
{
    size_t i;

    if (q == NULL)
        return;
    for (i = 0; i < q->table_size && q->table != NULL; i++) {
        struct queue_entry *en, *next;

        for (en = q->table[i]; en != NULL; en = next) {
            next = en->hnext;
            free(en);
        }
    }
    events_close(q->events); /* ---- events: what is buffered is kept */
    queue_dest_free(q);
    free(q->table);
    free(q->heap);
    queue_settings_release(q->set);
    {
        /* in the reverse order of queue_open(); -1: never opened */
        const int fds[] = {q->fifo_fd, q->lock_fd,  q->defer_fd, q->corrupt_fd,
                           q->hold_fd, q->queue_fd, q->tmp_fd,   q->dfd};

        for (i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
            if (fds[i] >= 0)
                close(fds[i]);
    }
    pthread_cond_destroy(&q->gone);
    pthread_cond_destroy(&q->wake);
    pthread_mutex_destroy(&q->lock);
    free(q);
}

struct queue_settings *
queue_settings_load(struct queue *q, const struct cfg *c, struct err *e)
{
    const char *dir = cfg_str(c, "queue_directory");

    if (dir == NULL || strcmp(dir, q->dir) != 0)
        log_warning(NULL,
                    "queue_directory changed; restart relaychaind to use "
                    "it (still %s)",
                    q->dir);
    return queue_settings_new(c, e);
}

int
queue_settings_check(const struct cfg *c, struct err *e)
{
    struct queue_settings *set;

    if ((set = queue_settings_new(c, e)) == NULL)
        return -1;
    queue_settings_release(set);
    return 0;
}

int
queue_trigger_at(int dfd, const char *line)
{
    int fd = openat(dfd, "trigger",
                    O_WRONLY | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
    size_t len = strlen(line);
    struct stat st;
    ssize_t n;

    /* ENXIO: a FIFO nobody reads, the daemon is not running. */
    if (fd < 0 && errno != ELOOP)
        return -1;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISFIFO(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        return -2;
    }
    n = write(fd, line, len);
    close(fd);
    return n == (ssize_t)len ? 0 : -1;
}
