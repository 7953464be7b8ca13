/*
 * quarantine - messages a stage held back, kept on disk for an admin
 *
 * See quarantine.h for the file format. The commands read the files the
 * daemon wrote; release sends a message to the configured next hop with
 * its recorded envelope and removes the file only after the next hop
 * accepted it, so a failed release leaves the message where it was.
 *
 * The commands run as root in a directory the daemon's user can write:
 * the directory is opened with cfg_open_dir() (root's links only), and
 * each file relative to it with O_NOFOLLOW and O_NONBLOCK, then checked
 * to be a regular file with one name, so a planted link (symbolic or
 * hard) or FIFO is refused by name instead of being followed or waited
 * on; IDs are letters and digits.
 * The daemon creates each file as ".ID.tmp" with O_EXCL | O_NOFOLLOW
 * relative to the directory and renames it into place.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "cfg.h"
#include "conf.h"
#include "log.h"
#include "quarantine.h"
#include "smtpc.h"

#define QUARANTINE_MAX (256u * 1024 * 1024)

static int qid_ok(const char *id);

static int
quarantine_write_all(int fd, const char *p, size_t len, struct err *e)
{
    while (len > 0) {
        ssize_t n = write(fd, p, len);

        if (n < 0) {
            if (errno == EINTR)
                continue;
            return err_sys(e, ERR_IO, "quarantine write");
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* quarantine_clean - envelope values go on one line each: no CR or LF. */
static int
quarantine_line(struct buf *b, const char *key, const char *value,
                struct err *e)
{
    size_t i;

    if (buf_printf(b, e, "%s: ", key) < 0)
        return -1;
    for (i = 0; value != NULL && value[i]; i++)
        if (buf_putc(b, value[i] == '\r' || value[i] == '\n' ? ' ' : value[i],
                     e) < 0)
            return -1;
    return buf_putc(b, '\n', e);
}

int
quarantine_store(const char *dir, const struct msg *m, const char *data,
                 size_t len, const char *reason, struct err *e)
{
    const struct msg_env *env = msg_env(m);
    char tmp[128], when[32];
    struct buf head;
    size_t i;
    int fd = -1, dfd = -1, tries;

    /* The ID names a file in dir: letters and digits, never a path. */
    if (!qid_ok(msg_qid(m)))
        return err_set(e, ERR_INPUT, "quarantine: queue id '%.64s' is not "
                                     "letters and digits", msg_qid(m));
    snprintf(tmp, sizeof(tmp), ".%s.tmp", msg_qid(m));
    buf_init(&head, 1 << 20);
    snprintf(when, sizeof(when), "%lld", (long long)time(NULL));
    if (quarantine_line(&head, "Envelope-From", env->sender, e) < 0)
        goto fail;
    for (i = 0; i < env->nrcpts; i++)
        if (quarantine_line(&head, "Envelope-To", env->rcpts[i].addr, e) < 0)
            goto fail;
    if (quarantine_line(&head, "Client", env->client_addr, e) < 0 ||
        quarantine_line(&head, "Helo", env->helo, e) < 0 ||
        quarantine_line(&head, "Arrival", when, e) < 0 ||
        quarantine_line(&head, "Reason", reason, e) < 0 ||
        buf_putc(&head, '\n', e) < 0)
        goto fail;
    if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0) {
        err_sys(e, ERR_IO, "quarantine: %s", dir);
        goto fail;
    }
    /* A temporary file left by a crash (or anything else under its name)
     * is removed, not written through, and the name made anew. */
    for (tries = 0; tries < 2; tries++) {
        fd = openat(dfd, tmp,
                    O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                    0600);
        if (fd >= 0 || errno != EEXIST || unlinkat(dfd, tmp, 0) < 0)
            break;
    }
    if (fd < 0) {
        err_sys(e, ERR_IO, "quarantine: %s/%s", dir, tmp);
        goto fail;
    }
    if (quarantine_write_all(fd, head.data, head.len, e) < 0 ||
        quarantine_write_all(fd, data, len, e) < 0)
        goto fail_unlink;
    if (fsync(fd) < 0) {
        err_sys(e, ERR_IO, "quarantine: fsync %s/%s", dir, tmp);
        goto fail_unlink;
    }
    if (close(fd) < 0) {
        fd = -1;
        err_sys(e, ERR_IO, "quarantine: close %s/%s", dir, tmp);
        goto fail_unlink;
    }
    fd = -1;
    if (renameat(dfd, tmp, dfd, msg_qid(m)) < 0) {
        err_sys(e, ERR_IO, "quarantine: rename to %s/%s", dir, msg_qid(m));
        goto fail_unlink;
    }
    if (fsync(dfd) < 0) {
        err_sys(e, ERR_IO, "quarantine: fsync %s", dir);
        unlinkat(dfd, msg_qid(m), 0);
        goto fail;
    }
    close(dfd);
    buf_fini(&head);
    return 0;

fail_unlink:
    unlinkat(dfd, tmp, 0);
fail:
    if (fd >= 0)
        close(fd);
    if (dfd >= 0)
        close(dfd);
    buf_fini(&head);
    return -1;
}

/* ------------------------------------------------------------ commands */

struct qfile {
    struct buf raw;
    const char *body; /* the message, after the envelope block */
    size_t body_len;
};

/* qfile_read - dir/id (dfd the directory) into q: never through a
 * link, never waiting on a FIFO, a regular file only. */
static int
qfile_read(int dfd, const char *dir, const char *id, struct qfile *q,
           struct err *e)
{
    char chunk[65536];
    const char *sep;
    struct stat st;
    ssize_t n;
    int fd;

    buf_init(&q->raw, QUARANTINE_MAX);
    fd = openat(dfd, id,
                O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0 && errno != ELOOP)
        return err_sys(e, ERR_IO, "%s/%s", dir, id);
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0)
            close(fd);
        return err_set(e, ERR_INPUT,
                       "%s/%s: not a regular file (a link, FIFO or device "
                       "planted in the quarantine?): refused",
                       dir, id);
    }
    /* The store renames its files into place: a second name is a hard
     * link to a file elsewhere (where fs.protected_hardlinks is off). */
    if (st.st_nlink != 1) {
        close(fd);
        return err_set(e, ERR_INPUT,
                       "%s/%s: has %lu names (a hard link planted in the "
                       "quarantine?): refused",
                       dir, id, (unsigned long)st.st_nlink);
    }
    for (;;) {
        n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            err_sys(e, ERR_IO, "%s/%s: read", dir, id);
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        if (buf_append(&q->raw, chunk, (size_t)n, e) < 0) {
            close(fd);
            return -1;
        }
    }
    close(fd);
    sep = q->raw.data ? strstr(q->raw.data, "\n\n") : NULL;
    if (sep == NULL)
        return err_set(e, ERR_INPUT, "%s/%s: not a quarantine file", dir, id);
    q->body = sep + 2;
    q->body_len = q->raw.len - (size_t)(q->body - q->raw.data);
    return 0;
}

/* qfile_field - the n-th (0-based) value of key in the envelope block,
 * copied into out. */
static const char *
qfile_field(const struct qfile *q, const char *key, int n, char *out,
            size_t size)
{
    const char *p = q->raw.data;
    size_t k = strlen(key);

    while (p < q->body - 1) {
        const char *eol = strchr(p, '\n');

        if (strncmp(p, key, k) == 0 && p[k] == ':' && n-- == 0) {
            const char *v = p + k + 1;

            while (*v == ' ')
                v++;
            snprintf(out, size, "%.*s", (int)(eol - v), v);
            return out;
        }
        p = eol + 1;
    }
    if (size > 0)
        out[0] = '\0';
    return NULL;
}

static int
qid_ok(const char *id)
{
    size_t i;

    for (i = 0; id[i]; i++)
        if (!((id[i] >= '0' && id[i] <= '9') ||
              (id[i] >= 'A' && id[i] <= 'Z') ||
              (id[i] >= 'a' && id[i] <= 'z')))
            return 0;
    return i > 0 && i < 64;
}

static int
quarantine_list(int dfd, const char *dir)
{
    struct dirent *de;
    DIR *d;
    int n = 0, fd;

    if ((fd = dup(dfd)) < 0 || (d = fdopendir(fd)) == NULL) {
        fprintf(stderr, "relaychain: %s: %s\n", dir, strerror(errno));
        if (fd >= 0)
            close(fd);
        return 1;
    }
    printf("%-14s %-20s %-30s %s\n", "ID", "Arrival", "Sender", "Reason");
    while ((de = readdir(d)) != NULL) {
        char from[300], arrival[32], reason[300], when[32];
        struct qfile q;
        struct err e;
        time_t t;

        if (!qid_ok(de->d_name))
            continue;
        if (qfile_read(dfd, dir, de->d_name, &q, &e) < 0) {
            fprintf(stderr, "relaychain: %s\n", e.text);
            buf_fini(&q.raw);
            continue;
        }
        qfile_field(&q, "Envelope-From", 0, from, sizeof(from));
        qfile_field(&q, "Arrival", 0, arrival, sizeof(arrival));
        qfile_field(&q, "Reason", 0, reason, sizeof(reason));
        t = (time_t)strtoll(arrival, NULL, 10);
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime(&t));
        printf("%-14s %-20s <%s> %s\n", de->d_name, when, from, reason);
        buf_fini(&q.raw);
        n++;
    }
    closedir(d);
    printf("-- %d message%s in quarantine\n", n, n == 1 ? "" : "s");
    return 0;
}

static int
quarantine_release(const struct conf *cf, int dfd, const char *dir,
                   const char *id)
{
    struct smtpc_settings set;
    struct smtpc_reply r;
    struct smtpc_pool *pool = NULL;
    struct smtpc_conn *c = NULL;
    char from[300], rcpt[300];
    struct qfile q;
    struct err e;
    int i, rc = 1, ok = 0;

    err_clear(&e);
    if (qfile_read(dfd, dir, id, &q, &e) < 0) {
        fprintf(stderr, "relaychain: %s\n", e.text);
        goto out;
    }
    memset(&set, 0, sizeof(set));
    set.next_hop = cfg_str(cf->cfg, "next_hop");
    set.helo_name = cfg_str(cf->cfg, "myhostname") ? cfg_str(cf->cfg, "myhostname")
                                                    : "localhost";
    smtpc_settings_tls(&set, cf->cfg);
    set.auth_file = cfg_str(cf->cfg, "next_hop_auth_file");
    set.connect_timeout_ms = 30000;
    set.timeout_ms = (int)cfg_num(cf->cfg, "next_hop_timeout");
    set.idle_timeout_ms = 0;
    set.max_idle = 0;
    if (set.next_hop == NULL) {
        fprintf(stderr, "relaychain: no next_hop configured\n");
        goto out;
    }
    if ((pool = smtpc_pool_new(&set, &e)) == NULL) {
        fprintf(stderr, "relaychain: next_hop: %s\n", e.text);
        goto out;
    }
    qfile_field(&q, "Envelope-From", 0, from, sizeof(from));
    if (smtpc_pool_kind(pool) == SMTPC_MAILDIR) {
        if (smtpc_maildir_deliver(pool, q.body, q.body_len, id, &r, &e) < 0 ||
            r.code / 100 != 2)
            goto refused;
        ok = 1;
        goto done;
    }
    if ((c = smtpc_get(pool, &r, &e)) == NULL)
        goto refused;
    if (smtpc_mail(c, NULL, from, NULL, &r, &e) < 0 || r.code / 100 != 2)
        goto refused;
    for (i = 0; qfile_field(&q, "Envelope-To", i, rcpt, sizeof(rcpt)); i++)
        if (smtpc_rcpt(c, rcpt, NULL, &r, &e) < 0 || r.code / 100 != 2)
            goto refused;
    if (smtpc_data(c, q.body, q.body_len, &r, &e) < 0 || r.code / 100 != 2)
        goto refused;
    ok = 1;
done:
    if (unlinkat(dfd, id, 0) < 0)
        fprintf(stderr, "relaychain: released, but %s/%s: %s\n", dir, id,
                strerror(errno));
    printf("%s: released (%d %s)\n", id, r.code, r.text);
    rc = 0;
    goto out;
refused:
    fprintf(stderr, "relaychain: %s: not released: %d %s%s%s\n", id, r.code,
            r.text, e.text[0] ? "; " : "", e.text);
out:
    if (c != NULL)
        smtpc_put(pool, c, ok);
    smtpc_pool_free(pool);
    buf_fini(&q.raw);
    return rc;
}

int
quarantine_main(int argc, char **argv)
{
    const char *path = CONF_DEFAULT_PATH, *cmd, *dir, *id;
    struct conf *cf;
    struct err e;
    int c, rc = 1, dfd = -1;

    optind = 1;
    while ((c = getopt(argc, argv, "c:h")) != -1) {
        if (c == 'c') {
            path = optarg;
        } else {
            fprintf(c == 'h' ? stdout : stderr,
                    "usage: relaychain quarantine [-c FILE] list\n"
                    "       relaychain quarantine [-c FILE] show|release|"
                    "delete ID\n");
            return c == 'h' ? 0 : 1;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "usage: relaychain quarantine [-c FILE] "
                        "list|show|release|delete [ID]\n");
        return 1;
    }
    cmd = argv[optind];
    log_open("relaychain", LOG_MAIL, LOG_SINK_NONE);
    err_clear(&e);
    if ((cf = conf_load(path, &e)) == NULL) {
        fprintf(stderr, "relaychain: %s\n", e.text);
        return 1;
    }
    dir = cfg_str(cf->cfg, "quarantine_directory");
    if ((dfd = cfg_open_dir(dir, &e)) < 0) {
        fprintf(stderr, "relaychain: quarantine_directory %s\n", e.text);
        goto out;
    }
    if (strcmp(cmd, "list") == 0 && optind + 1 == argc) {
        rc = quarantine_list(dfd, dir);
        goto out;
    }
    if (optind + 2 != argc || !qid_ok(argv[optind + 1])) {
        fprintf(stderr, "relaychain: quarantine %s needs one message ID\n",
                cmd);
        goto out;
    }
    id = argv[optind + 1];
    if (strcmp(cmd, "show") == 0) {
        struct qfile q;

        if (qfile_read(dfd, dir, id, &q, &e) < 0) {
            fprintf(stderr, "relaychain: %s\n", e.text);
        } else {
            fwrite(q.raw.data, 1, q.raw.len, stdout);
            rc = 0;
        }
        buf_fini(&q.raw);
    } else if (strcmp(cmd, "delete") == 0) {
        struct stat st;

        /* Only the entry itself is removed, never what a link names;
         * anything but a regular file is left for the admin to look at. */
        if (fstatat(dfd, id, &st, AT_SYMLINK_NOFOLLOW) < 0)
            fprintf(stderr, "relaychain: %s/%s: %s\n", dir, id,
                    strerror(errno));
        else if (!S_ISREG(st.st_mode))
            fprintf(stderr,
                    "relaychain: %s/%s: not a regular file (a link, FIFO or "
                    "device planted in the quarantine?): refused\n",
                    dir, id);
        else if (unlinkat(dfd, id, 0) < 0)
            fprintf(stderr, "relaychain: %s/%s: %s\n", dir, id,
                    strerror(errno));
        else
            rc = 0;
    } else if (strcmp(cmd, "release") == 0) {
        rc = quarantine_release(cf, dfd, dir, id);
    } else {
        fprintf(stderr, "relaychain: unknown quarantine command '%s'\n", cmd);
    }
out:
    if (dfd >= 0)
        close(dfd);
    conf_free(cf);
    return rc;
}
