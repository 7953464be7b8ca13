/*
 * queue_cli - "relaychain queue": the spool for an admin, in Postfix's words
 *
 *     relaychain queue [-c FILE] list [--json]   like mailq, postqueue -j
 *     relaychain queue [-c FILE] show ID         like postcat -q
 *     relaychain queue [-c FILE] flush [ID]      like postqueue -f / -i
 *     relaychain queue [-c FILE] delete ID|ALL   like postsuper -d
 *     relaychain queue [-c FILE] hold ID|ALL     like postsuper -h
 *     relaychain queue [-c FILE] release ID|ALL  like postsuper -H
 *     relaychain queue [-c FILE] requeue ID|ALL  like postsuper -r
 *
 * The commands work on the files of queue_directory (see queue.h) while
 * relaychaind runs. hold, release and requeue take the file's flock()
 * first, waiting while a delivery attempt holds it (at most
 * next_hop_timeout and 30 s), and check that the name still names the
 * locked file, so a message is never moved under an attempt. delete does
 * not wait: it removes the name at once, and an attempt under way (which
 * may still reach the next hop) neither marks nor brings the file back.
 * flush, release and requeue tell the daemon through the trigger FIFO;
 * when no daemon reads it, what was moved is picked up at its start.
 *
 * list reads only the head of each file (the envelope, not the message)
 * and shows a message being delivered with '*' and one on hold with '!',
 * as mailq does, with the last deferral reason of each recipient.
 *
 * The commands run as root in a spool that the daemon's user owns, so
 * they never follow a link planted there: queue_directory is opened with
 * cfg_open_dir() (root's links only), its subdirectories and every file
 * with openat() and O_NOFOLLOW relative to those descriptors, files with
 * O_NONBLOCK too (a FIFO would hang the reader) and then checked with
 * fstat() to be regular files; anything else is refused by name and
 * left alone. Renames and removals name entries relative to the
 * directory descriptors, and IDs from the command line are letters and
 * digits only, so "../" never leaves the spool. The trigger is written
 * only when it is a FIFO.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/cfg.h"
#include "chain/conf.h"
#include "cli/parts.h"
#include "util/log.h"
#include "util/qid.h"
#include "queue/queue.h"
#include "cli/cli.h"

#define QCLI_HEAD 65536 /* octets read for a listing */

struct qcli {
    const char *dir;
    int dfd, queue_fd, hold_fd, corrupt_fd, defer_fd;
    size_t file_max;
    long long lock_wait_ms;
    int json;
};

static const char *progname = "relaychain";

static void
qcli_usage(FILE *fp)
{
    fprintf(fp,
            "usage: relaychain queue [-c FILE] list [--json]\n"
            "       relaychain queue [-c FILE] show ID\n"
            "       relaychain queue [-c FILE] flush [ID]\n"
            "       relaychain queue [-c FILE] delete|hold|release|requeue "
            "ID|ALL\n"
            "\n"
            "The queue of \"delivery = queue\", in queue_directory:\n"
            "  list     the messages waiting, like mailq (--json: one JSON\n"
            "           object a line, like postqueue -j)\n"
            "  show     a queue file: envelope records and message, like\n"
            "           postcat -q\n"
            "  flush    try every deferred message (or ID) now\n"
            "  delete   remove messages, like postsuper -d\n"
            "  hold     keep messages from delivery, like postsuper -h\n"
            "  release  undo hold, like postsuper -H\n"
            "  requeue  back to the active queue (from hold too) and try\n"
            "           now, like postsuper -r\n");
}

static int
qcli_open(struct qcli *c, const struct cfg *cf)
{
    static const struct {
        const char *name;
        size_t off;
    } dirs[] = {
        {"queue", offsetof(struct qcli, queue_fd)},
        {"hold", offsetof(struct qcli, hold_fd)},
        {"corrupt", offsetof(struct qcli, corrupt_fd)},
        {"defer", offsetof(struct qcli, defer_fd)},
    };
    struct err e;
    size_t i;

    c->dir = cfg_str(cf, "queue_directory");
    c->file_max = 2 * (size_t)cfg_num(cf, "message_size_limit") + (64u << 20);
    c->lock_wait_ms = cfg_num(cf, "next_hop_timeout") + 30000;
    if ((c->dfd = cfg_open_dir(c->dir, &e)) < 0) {
        fprintf(stderr, "%s: queue_directory %s\n", progname, e.text);
        return -1;
    }
    for (i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        int *fd = (int *)((char *)c + dirs[i].off);

        if ((*fd = openat(c->dfd, dirs[i].name,
                          O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) <
            0) {
            fprintf(stderr, "%s: %s/%s: %s\n", progname, c->dir, dirs[i].name,
                    errno == ELOOP || errno == ENOTDIR
                        ? "not a directory (a symbolic link?): refused"
                    : errno == ENOENT
                        ? "No such file or directory (has relaychaind run "
                          "with delivery = queue?)"
                        : strerror(errno));
            return -1;
        }
    }
    return 0;
}

static void
qcli_close(struct qcli *c)
{
    int *fds[] = {&c->dfd, &c->queue_fd, &c->hold_fd, &c->corrupt_fd,
                  &c->defer_fd};
    size_t i;

    for (i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (*fds[i] >= 0)
            close(*fds[i]);
}

/* qcli_trigger - tell the daemon; 0, or -1 when none is listening. */
static int
qcli_trigger(struct qcli *c, const char *what)
{
    int rc = queue_trigger_at(c->dfd, what);

    if (rc == -2)
        fprintf(stderr, "%s: %s/trigger: not a FIFO: refused\n", progname,
                c->dir);
    return rc < 0 ? -1 : 0;
}

/* qcli_openat - dirfd/id (in directory where, for messages) for reading,
 * never through a link and never blocking on a FIFO; the descriptor, -1
 * when there is no such file (errno ENOENT), or -2 when it is not a
 * regular file (said on stderr: refused). */
static int
qcli_openat(const struct qcli *c, int dirfd, const char *where, const char *id)
{
    struct stat st;
    int fd;

    fd = openat(dirfd, id,
                O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0 && errno != ELOOP) {
        if (errno != ENOENT)
            fprintf(stderr, "%s: %s/%s/%s: %s\n", progname, c->dir, where, id,
                    strerror(errno));
        return -1;
    }
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
        return fd;
    if (fd >= 0)
        close(fd);
    fprintf(stderr,
            "%s: %s/%s/%s: not a regular file (a link, FIFO or "
            "device planted in the spool?): refused\n",
            progname, c->dir, where, id);
    return -2;
}

/* qcli_where - the name of one of c's message directories. */
static const char *
qcli_where(const struct qcli *c, int dirfd)
{
    return dirfd == c->hold_fd      ? "hold"
           : dirfd == c->corrupt_fd ? "corrupt"
           : dirfd == c->defer_fd   ? "defer"
                                    : "queue";
}

/* qcli_lock - open dirfd/id and flock it, waiting for an attempt to end;
 * returns the fd, -1 when there is no such file (any more), -2 when it
 * stayed busy, -3 when it is not a regular file (said: refused). */
static int
qcli_lock(struct qcli *c, int dirfd, const char *id)
{
    long long waited = 0;
    struct stat st, st2;
    int fd;

    for (;;) {
        if ((fd = qcli_openat(c, dirfd, qcli_where(c, dirfd), id)) < 0)
            return fd == -2 ? -3 : -1;
        while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
            if (waited >= c->lock_wait_ms) {
                close(fd);
                return -2;
            }
            usleep(50000);
            waited += 50;
        }
        if (fstat(fd, &st) == 0 &&
            fstatat(dirfd, id, &st2, AT_SYMLINK_NOFOLLOW) == 0 &&
            st.st_ino == st2.st_ino && st.st_dev == st2.st_dev)
            return fd;
        /* moved or removed while we waited */
        close(fd);
        if (fstatat(dirfd, id, &st2, AT_SYMLINK_NOFOLLOW) < 0)
            return -1;
    }
}

/* qcli_move - id from one directory to another under its lock. */
static int
qcli_move(struct qcli *c, int from, int to, const char *id, const char *done)
{
    int fd = qcli_lock(c, from, id);

    if (fd == -3)
        return 1;
    if (fd == -2) {
        fprintf(stderr,
                "%s: %s: still busy with a delivery attempt; try "
                "again\n",
                progname, id);
        return 1;
    }
    if (fd < 0)
        return -1;
    if (renameat(from, id, to, id) < 0 || fsync(to) < 0 || fsync(from) < 0) {
        fprintf(stderr, "%s: %s: %s\n", progname, id, strerror(errno));
        close(fd);
        return 1;
    }
    close(fd);
    printf("%s: %s\n", id, done);
    log_info(id, "%s", done);
    return 0;
}

static int
qcli_delete_one(struct qcli *c, int dirfd, const char *id)
{
    int fd = qcli_openat(c, dirfd, qcli_where(c, dirfd), id), busy;

    if (fd < 0)
        return fd == -2 ? 1 : -1;
    busy = flock(fd, LOCK_EX | LOCK_NB) < 0;
    if (unlinkat(dirfd, id, 0) < 0) {
        int saved = errno;

        close(fd);
        if (saved == ENOENT)
            return -1;
        fprintf(stderr, "%s: %s: %s\n", progname, id, strerror(saved));
        return 1;
    }
    unlinkat(c->defer_fd, id, 0);
    (void)fsync(dirfd);
    close(fd);
    printf("%s: removed%s\n", id,
           busy ? " (a delivery attempt was under way; the next hop may "
                  "still get it once)"
                : "");
    log_info(id, "removed%s",
             busy ? " (a delivery attempt was under way)" : "");
    return 0;
}

/* ------------------------------------------------------------ listing */

static void
qcli_json_str(const char *s)
{
    putchar('"');
    for (; *s != '\0'; s++) {
        unsigned char ch = (unsigned char)*s;

        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20 || ch == 0x7f)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

/* qcli_reason - the deferral reason noted for addr, into out. */
static const char *
qcli_reason(const struct buf *note, const char *addr, char *out, size_t n)
{
    const char *p = note->data, *end = note->data + note->len;
    size_t alen = strlen(addr);

    out[0] = '\0';
    while (p != NULL && p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));

        if (eol == NULL)
            eol = end;
        if ((size_t)(eol - p) > alen && strncmp(p, addr, alen) == 0 &&
            p[alen] == '\t') {
            snprintf(out, n, "%.*s", (int)(eol - p - (long)alen - 1),
                     p + alen + 1);
            return out;
        }
        p = eol + 1;
    }
    return NULL;
}

static void
qcli_read_note(struct qcli *c, const char *id, struct buf *note)
{
    int fd = qcli_openat(c, c->defer_fd, "defer", id);
    struct err e;

    buf_reset(note);
    if (fd < 0)
        return;
    if (queue_read_fd(fd, 1 << 20, note, &e) < 0)
        buf_reset(note);
    close(fd);
}

/* qcli_list_one - one entry; returns the message size, or -1. */
static long long
qcli_list_one(struct qcli *c, int dirfd, const char *id, int hold,
              unsigned long *n)
{
    char head[QCLI_HEAD], when[64], reason[700];
    struct queue_file qf;
    struct buf note, whole;
    struct stat st;
    struct err e;
    ssize_t got;
    size_t i, shown = 0;
    int fd, active, rc;
    time_t t;
    struct tm tm;

    if ((fd = qcli_openat(c, dirfd, hold ? "hold" : "queue", id)) < 0 ||
        fstat(fd, &st) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    active = !hold && flock(fd, LOCK_SH | LOCK_NB) < 0;
    buf_init(&whole, c->file_max);
    got = pread(fd, head, sizeof(head), 0);
    rc = got < 0 ? -1 : queue_file_parse(head, (size_t)got, 1, &qf, &e);
    if (rc < 0 && st.st_size > (off_t)sizeof(head)) {
        queue_file_fini(&qf);
        rc = queue_read_fd(fd, c->file_max, &whole, &e) < 0
                 ? -1
                 : queue_file_parse(whole.data, whole.len, 1, &qf, &e);
    }
    close(fd);
    if (rc < 0) {
        fprintf(stderr, "%s: %s: unreadable queue file: %s\n", progname, id,
                got < 0 ? strerror(errno) : e.text);
        queue_file_fini(&qf);
        buf_fini(&whole);
        return -1;
    }
    buf_init(&note, 1 << 20);
    qcli_read_note(c, id, &note);
    t = (time_t)(qf.arrival_us / 1000000);
    (*n)++;
    if (c->json) {
        printf("{\"queue_name\": \"%s\", \"queue_id\": ", hold     ? "hold"
                                                          : active ? "active"
                                                          : note.len > 0
                                                              ? "deferred"
                                                              : "incoming");
        qcli_json_str(id);
        printf(", \"arrival_time\": %lld, \"message_size\": %zu, "
               "\"forced_expire\": false, \"sender\": ",
               (long long)t, qf.len);
        qcli_json_str(qf.sender);
        printf(", \"recipients\": [");
        for (i = 0; i < qf.nrcpts; i++) {
            if (qf.rcpts[i].status != QUEUE_RCPT_PENDING)
                continue;
            printf("%s{\"address\": ", shown++ ? ", " : "");
            qcli_json_str(qf.rcpts[i].addr);
            if (qcli_reason(&note, qf.rcpts[i].addr, reason, sizeof(reason))) {
                printf(", \"delay_reason\": ");
                qcli_json_str(reason);
            }
            putchar('}');
        }
        printf("]}\n");
    } else {
        localtime_r(&t, &tm);
        strftime(when, sizeof(when), "%a %b %d %H:%M:%S", &tm);
        printf("%-12s%c %8zu %-20s  %s\n", id,
               hold     ? '!'
               : active ? '*'
                        : ' ',
               qf.len, when, qf.sender[0] ? qf.sender : "MAILER-DAEMON");
        for (i = 0; i < qf.nrcpts; i++) {
            if (qf.rcpts[i].status != QUEUE_RCPT_PENDING)
                continue;
            if (qcli_reason(&note, qf.rcpts[i].addr, reason, sizeof(reason)))
                printf("%45s(%s)\n", "", reason);
            printf("%45s%s\n", "", qf.rcpts[i].addr);
        }
        putchar('\n');
    }
    buf_fini(&note);
    buf_fini(&whole);
    queue_file_fini(&qf);
    return (long long)qf.len;
}

static int
qcli_list(struct qcli *c)
{
    int dirs[2] = {c->queue_fd, c->hold_fd}, i, dfd;
    unsigned long n = 0;
    unsigned long long bytes = 0;

    if (!c->json)
        printf("-Queue ID-  --Size-- ----Arrival Time---- "
               "-Sender/Recipient-------\n");
    for (i = 0; i < 2; i++) {
        struct dirent *de;
        DIR *d;

        if ((dfd = dup(dirs[i])) < 0 || (d = fdopendir(dfd)) == NULL) {
            if (dfd >= 0)
                close(dfd);
            fprintf(stderr, "%s: %s: %s\n", progname, c->dir, strerror(errno));
            return 1;
        }
        while ((de = readdir(d)) != NULL) {
            long long size;

            if (!qid_is_valid(de->d_name, QUEUE_ID_MAX))
                continue;
            if ((size = qcli_list_one(c, dirs[i], de->d_name, i == 1, &n)) > 0)
                bytes += (unsigned long long)size;
        }
        closedir(d);
    }
    if (!c->json) {
        if (n == 0)
            printf("Mail queue is empty\n");
        else
            printf("-- %llu Kbytes in %lu Request%s.\n", (bytes + 1023) / 1024,
                   n, n == 1 ? "" : "s");
    }
    fflush(stdout);
    return 0;
}

/* ------------------------------------------------------------ show */

static int
qcli_show(struct qcli *c, const char *id)
{
    static const char *const where[] = {"queue", "hold", "corrupt"};
    int dirs[3] = {c->queue_fd, c->hold_fd, c->corrupt_fd}, fd = -1, i;
    struct queue_file qf;
    struct buf raw;
    struct err e;
    char when[64];
    time_t t;
    size_t k;
    int rc = 1;

    for (i = 0; i < 3 && fd == -1; i++)
        fd = qcli_openat(c, dirs[i], where[i], id);
    if (fd == -2)
        return 1;
    if (fd < 0) {
        fprintf(stderr, "%s: %s: no such message in the queue\n", progname,
                id);
        return 1;
    }
    i--;
    buf_init(&raw, c->file_max);
    memset(&qf, 0, sizeof(qf));
    if (queue_read_fd(fd, c->file_max, &raw, &e) < 0 ||
        queue_file_parse(raw.data ? raw.data : "", raw.len, 0, &qf, &e) < 0) {
        fprintf(stderr, "%s: %s/%s: %s\n", progname, where[i], id, e.text);
        goto out;
    }
    printf("*** ENVELOPE RECORDS %s/%s ***\n", where[i], id);
    t = (time_t)(qf.arrival_us / 1000000);
    strftime(when, sizeof(when), "%a %b %d %H:%M:%S %Y", localtime(&t));
    printf("message_arrival_time: %s\n", when);
    t = (time_t)(qf.queued_us / 1000000);
    strftime(when, sizeof(when), "%a %b %d %H:%M:%S %Y", localtime(&t));
    printf("queued_time: %s\n", when);
    printf("message_size: %zu\n", qf.len);
    printf("client: %s[%s]\n", qf.client_name, qf.client_addr);
    printf("helo: %s\n", qf.helo);
    if (qf.auth_user[0] != '\0')
        printf("sasl_username: %s\n", qf.auth_user);
    printf("sender: %s\n", qf.sender);
    if (qf.sender_params[0] != '\0')
        printf("sender_parameters: %s\n", qf.sender_params);
    for (k = 0; k < qf.norig; k++)
        printf("original_recipient: %s%s%s\n", qf.orig[2 * k],
               qf.orig[2 * k + 1][0] ? " " : "", qf.orig[2 * k + 1]);
    for (k = 0; k < qf.nrcpts; k++)
        printf("recipient: %s (%s)%s%s\n", qf.rcpts[k].addr,
               qf.rcpts[k].status == QUEUE_RCPT_DONE      ? "delivered"
               : qf.rcpts[k].status == QUEUE_RCPT_BOUNCED ? "bounced"
                                                          : "pending",
               qf.rcpts[k].params[0] ? " " : "", qf.rcpts[k].params);
    printf("delay_warning: %s\n", qf.warned == 'W' ? "sent" : "not sent");
    printf("*** MESSAGE CONTENTS %s/%s ***\n", where[i], id);
    fwrite(qf.data, 1, qf.len, stdout);
    if (qf.len > 0 && qf.data[qf.len - 1] != '\n')
        putchar('\n');
    printf("*** END OF MESSAGE %s/%s ***\n", where[i], id);
    rc = 0;
out:
    close(fd);
    queue_file_fini(&qf);
    buf_fini(&raw);
    return rc;
}

/* ------------------------------------------------------------ changes */

enum qcli_op { QCLI_DELETE, QCLI_HOLD, QCLI_RELEASE, QCLI_REQUEUE };

/* qcli_change_one - 0 done, 1 failed, -1 not there. */
static int
qcli_change_one(struct qcli *c, enum qcli_op op, const char *id)
{
    int rc;

    switch (op) {
    case QCLI_DELETE:
        rc = qcli_delete_one(c, c->queue_fd, id);
        return rc == -1 ? qcli_delete_one(c, c->hold_fd, id) : rc;
    case QCLI_HOLD:
        return qcli_move(c, c->queue_fd, c->hold_fd, id, "placed on hold");
    case QCLI_RELEASE:
        return qcli_move(c, c->hold_fd, c->queue_fd, id, "released from hold");
    case QCLI_REQUEUE:
        rc = qcli_move(c, c->hold_fd, c->queue_fd, id, "requeued");
        if (rc == -1) {
            struct stat st;

            if (fstatat(c->queue_fd, id, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return -1;
            if (!S_ISREG(st.st_mode)) {
                fprintf(stderr,
                        "%s: %s/queue/%s: not a regular file: refused\n",
                        progname, c->dir, id);
                return 1;
            }
            printf("%s: requeued\n", id);
            log_info(id, "requeued");
            rc = 0;
        }
        return rc;
    }
    return 1;
}

static int
qcli_change(struct qcli *c, enum qcli_op op, const char *what)
{
    static const char *const verb[] = {"Deleted", "Placed on hold",
                                       "Released from hold", "Requeued"};
    unsigned long n = 0;
    int rc = 0, one;

    if (strcmp(what, "ALL") != 0) {
        if (!qid_is_valid(what, QUEUE_ID_MAX)) {
            fprintf(stderr, "%s: '%s' is not a queue ID\n", progname, what);
            return 1;
        }
        one = qcli_change_one(c, op, what);
        if (one == -1) {
            fprintf(stderr, "%s: %s: no such message%s\n", progname, what,
                    op == QCLI_HOLD      ? " in the active queue"
                    : op == QCLI_RELEASE ? " on hold"
                                         : " in the queue");
            return 1;
        }
        rc = one != 0;
        n = one == 0;
    } else {
        int dirs[2] = {c->queue_fd, c->hold_fd}, i, dfd;

        for (i = 0; i < 2; i++) {
            struct dirent *de;
            DIR *d;

            if ((op == QCLI_HOLD && i == 1) ||
                (op == QCLI_RELEASE && i == 0) ||
                (op == QCLI_REQUEUE && i == 0))
                continue;
            if ((dfd = dup(dirs[i])) < 0 || (d = fdopendir(dfd)) == NULL) {
                if (dfd >= 0)
                    close(dfd);
                fprintf(stderr, "%s: %s: %s\n", progname, c->dir,
                        strerror(errno));
                return 1;
            }
            while ((de = readdir(d)) != NULL) {
                if (!qid_is_valid(de->d_name, QUEUE_ID_MAX))
                    continue;
                one = qcli_change_one(c, op, de->d_name);
                if (one == 0)
                    n++;
                else if (one == 1)
                    rc = 1;
            }
            closedir(d);
        }
        printf("%s: %lu message%s\n", verb[op], n, n == 1 ? "" : "s");
        /* postsuper's closing line, "Deleted: 3 messages" */
        if (n > 0)
            log_info(NULL, "%s: %lu message%s", verb[op], n,
                     n == 1 ? "" : "s");
    }
    if (n > 0 && (op == QCLI_RELEASE || op == QCLI_REQUEUE)) {
        char line[QUEUE_ID_MAX + 8];

        /* F scans queue/ itself, once the routes are revived: an "S"
         * before it could start an attempt on a suspended route. */
        if (strcmp(what, "ALL") == 0)
            snprintf(line, sizeof(line), "F\n");
        else
            snprintf(line, sizeof(line), "F %s\n", what);
        if (qcli_trigger(c, line) < 0)
            printf("relaychaind is not running on %s: the message%s will "
                   "be tried when it starts\n",
                   c->dir, n == 1 ? "" : "s");
    }
    return rc;
}

int
queue_main(int argc, char **argv)
{
    const char *path = CONF_DEFAULT_PATH, *cmd;
    struct qcli c;
    struct cfg *cf;
    struct err e;
    int opt, rc = 1, nargs;

    optind = 1;
    while ((opt = getopt(argc, argv, "+c:h")) != -1) {
        if (opt == 'c') {
            path = optarg;
        } else {
            qcli_usage(opt == 'h' ? stdout : stderr);
            return opt == 'h' ? 0 : 1;
        }
    }
    if (optind >= argc) {
        qcli_usage(stderr);
        return 1;
    }
    cmd = argv[optind];
    nargs = argc - optind - 1;
    memset(&c, 0, sizeof(c));
    c.dfd = c.queue_fd = c.hold_fd = c.corrupt_fd = c.defer_fd = -1;
    log_open("relaychain", LOG_MAIL, LOG_SINK_NONE);
    err_clear(&e);
    /* The main file alone: listing or moving queue files needs no stage,
     * and a chain that does not load must not keep an admin out. */
    if ((cf = cli_main_cfg(path, &e)) == NULL) {
        fprintf(stderr, "%s: %s\n", progname, e.text);
        return 1;
    }
    if (qcli_open(&c, cf) < 0)
        goto out;
    /* What changes the queue is logged, as postsuper's "QID: removed". */
    if (nargs == 1 &&
        (strcmp(cmd, "delete") == 0 || strcmp(cmd, "hold") == 0 ||
         strcmp(cmd, "release") == 0 || strcmp(cmd, "requeue") == 0) &&
        conf_log_open(cf, &e) < 0) {
        fprintf(stderr, "%s: %s\n", progname, e.text);
        goto out;
    }
    if (strcmp(cmd, "list") == 0 &&
        (nargs == 0 ||
         (nargs == 1 && strcmp(argv[optind + 1], "--json") == 0))) {
        c.json = nargs == 1;
        rc = qcli_list(&c);
    } else if (strcmp(cmd, "show") == 0 && nargs == 1) {
        if (qid_is_valid(argv[optind + 1], QUEUE_ID_MAX))
            rc = qcli_show(&c, argv[optind + 1]);
        else
            fprintf(stderr, "%s: '%s' is not a queue ID\n", progname,
                    argv[optind + 1]);
    } else if (strcmp(cmd, "flush") == 0 && nargs <= 1) {
        char line[QUEUE_ID_MAX + 8];
        struct stat st;

        if (nargs == 1) {
            const char *id = argv[optind + 1];

            if (!qid_is_valid(id, QUEUE_ID_MAX) ||
                fstatat(c.queue_fd, id, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                !S_ISREG(st.st_mode)) {
                fprintf(stderr,
                        "%s: %s: no such message in the active "
                        "queue%s\n",
                        progname, id,
                        qid_is_valid(id, QUEUE_ID_MAX) &&
                                fstatat(c.hold_fd, id, &st,
                                        AT_SYMLINK_NOFOLLOW) == 0
                            ? " (it is on hold: release it)"
                            : "");
                goto out;
            }
            snprintf(line, sizeof(line), "F %s\n", id);
        } else {
            snprintf(line, sizeof(line), "F\n");
        }
        if (qcli_trigger(&c, line) < 0) {
            fprintf(stderr,
                    "%s: relaychaind is not running on %s: nothing "
                    "to flush\n",
                    progname, c.dir);
            goto out;
        }
        rc = 0;
    } else if (nargs == 1 && strcmp(cmd, "delete") == 0) {
        rc = qcli_change(&c, QCLI_DELETE, argv[optind + 1]);
    } else if (nargs == 1 && strcmp(cmd, "hold") == 0) {
        rc = qcli_change(&c, QCLI_HOLD, argv[optind + 1]);
    } else if (nargs == 1 && strcmp(cmd, "release") == 0) {
        rc = qcli_change(&c, QCLI_RELEASE, argv[optind + 1]);
    } else if (nargs == 1 && strcmp(cmd, "requeue") == 0) {
        rc = qcli_change(&c, QCLI_REQUEUE, argv[optind + 1]);
    } else {
        qcli_usage(stderr);
    }
out:
    qcli_close(&c);
    cfg_free(cf);
    return rc;
}
