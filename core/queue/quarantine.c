/*
 * quarantine - messages a stage held back, kept on disk for an admin
 *
 * See quarantine.h for the file format. The store writes each file as
 * ".ID.tmp", created with O_EXCL | O_NOFOLLOW relative to the directory,
 * fsynced and renamed into place. The readers open files relative to a
 * directory the caller opened with cfg_open_dir() (root's links only),
 * with O_NOFOLLOW and O_NONBLOCK, then check that each is a regular file
 * with one name, so a planted link (symbolic or hard) or FIFO is refused
 * by name instead of being followed or waited on.
 *
 * A release leaves the quarantine through quarantine_spool() (into the
 * queue's spool, fsynced as queue_commit does; the spool is opened the
 * same way and the trigger written only when it is a FIFO) or
 * quarantine_next_hop(); the command removes the file only after one of
 * them succeeded, so a failed release leaves the message where it was.
 *
 * Nothing here prints: the commands in core/cli/cmd_quarantine.c do.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/cfg.h"
#include "util/fdio.h"
#include "chain/conf.h"
#include "util/log.h"
#include "util/qid.h"
#include "queue/quarantine.h"
#include "queue/queue.h"
#include "net/smtpc.h"

#define QUARANTINE_MAX (256u * 1024 * 1024)

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

/* quarantine_store_at - see quarantine.h: written as .ID.tmp, created
 * exclusively and never through a link, fsynced and renamed into place. */
int
quarantine_store_at(int dfd, const char *dir, const struct msg *m,
                    const char *data, size_t len, const char *reason,
                    const char *stage, const char *stream, struct err *e)
{
    const struct msg_env *env = msg_env(m);
    char tmp[128], when[32];
    struct buf head;
    struct stat st;
    size_t i;
    int fd = -1, tries;

    /* The ID names a file in dir: letters and digits, never a path. */
    if (!qid_is_valid(msg_qid(m), QUARANTINE_ID_MAX))
        return err_set(e, ERR_INPUT,
                       "quarantine: queue id '%.64s' is not letters and "
                       "digits",
                       msg_qid(m));
    snprintf(tmp, sizeof(tmp), ".%s.tmp", msg_qid(m));
    buf_init(&head, 1 << 20);
    snprintf(when, sizeof(when), "%lld", (long long)time(NULL));
    if (quarantine_line(&head, "Envelope-From", env->sender, e) < 0 ||
        quarantine_line(&head, "Envelope-From-Params", env->sender_params, e) <
            0)
        goto fail;
    /* The ESMTP parameters (DSN's RET, ENVID, NOTIFY, ORCPT) go with a
     * release into the queue; one Envelope-To-Params line per recipient,
     * in the same order, empty when there were none. */
    for (i = 0; i < env->nrcpts; i++)
        if (quarantine_line(&head, "Envelope-To", env->rcpts[i].addr, e) < 0 ||
            quarantine_line(&head, "Envelope-To-Params", env->rcpts[i].params,
                            e) < 0)
            goto fail;
    if (quarantine_line(&head, "Client", env->client_addr, e) < 0 ||
        quarantine_line(&head, "Client-Name", env->client_name, e) < 0 ||
        quarantine_line(&head, "Helo", env->helo, e) < 0 ||
        quarantine_line(&head, "Tls", env->tls ? "yes" : "no", e) < 0 ||
        quarantine_line(&head, "Internal", env->internal ? "yes" : "no", e) <
            0 ||
        (env->auth_user != NULL &&
         quarantine_line(&head, "Auth", env->auth_user, e) < 0) ||
        quarantine_line(&head, "Arrival", when, e) < 0 ||
        quarantine_line(&head, "Reason", reason, e) < 0 ||
        (stage != NULL && quarantine_line(&head, "Stage", stage, e) < 0) ||
        (stream != NULL && stream[0] != '\0' &&
         quarantine_line(&head, "Stream", stream, e) < 0) ||
        buf_putc(&head, '\n', e) < 0)
        goto fail;
    /* A temporary file left by a crash (or anything else under its name)
     * is removed, not written through, and the name made anew. */
    for (tries = 0; tries < 2; tries++) {
        fd =
            openat(dfd, tmp,
                   O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0 || errno != EEXIST || unlinkat(dfd, tmp, 0) < 0)
            break;
    }
    if (fd < 0) {
        err_sys(e, ERR_IO, "quarantine: %s/%s", dir, tmp);
        goto fail;
    }
    if (geteuid() == 0 && fstat(dfd, &st) == 0 &&
        fchown(fd, st.st_uid, st.st_gid) < 0) {
        err_sys(e, ERR_IO, "quarantine: chown %s/%s", dir, tmp);
        goto fail_unlink;
    }
    if (fdio_write_all(fd, head.data, head.len) < 0 ||
        fdio_write_all(fd, data, len) < 0) {
        err_sys(e, ERR_IO, "quarantine write");
        goto fail_unlink;
    }
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
    buf_fini(&head);
    return 0;

fail_unlink:
    unlinkat(dfd, tmp, 0);
fail:
    if (fd >= 0)
        close(fd);
    buf_fini(&head);
    return -1;
}

int
quarantine_store(const char *dir, const struct msg *m, const char *data,
                 size_t len, const char *reason, const char *stage,
                 const char *stream, struct err *e)
{
    int dfd, rc;

    /* Made at first use, as queue_directory is; conf_load() checked
     * that it can be. */
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return err_sys(e, ERR_IO, "quarantine: mkdir %s", dir);
    if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return err_sys(e, ERR_IO, "quarantine: %s", dir);
    rc = quarantine_store_at(dfd, dir, m, data, len, reason, stage, stream, e);
    close(dfd);
    return rc;
}

/* ------------------------------------------------------------ reading */

int
quarantine_read(int dfd, const char *dir, const char *id,
                struct quarantine_file *q, struct err *e)
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

void
quarantine_file_fini(struct quarantine_file *q)
{
    buf_fini(&q->raw);
}

const char *
quarantine_field(const struct quarantine_file *q, const char *key, int n,
                 char *out, size_t size)
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

struct msg *
quarantine_file_msg(const struct msg_limits *limits,
                    const struct quarantine_file *q, const char *id,
                    struct err *e)
{
    char from[2048], rcpt[2048], client[300], name[300], helo[300], auth[300],
        tls[8], internal[8], fparams[2048], rparams[2048];
    struct msg *m;
    int i;

    if ((m = msg_new(limits, MSG_FE_SMTP, e)) == NULL)
        return NULL;
    quarantine_field(q, "Envelope-From", 0, from, sizeof(from));
    quarantine_field(q, "Envelope-From-Params", 0, fparams, sizeof(fparams));
    quarantine_field(q, "Client", 0, client, sizeof(client));
    if (quarantine_field(q, "Client-Name", 0, name, sizeof(name)) == NULL)
        snprintf(name, sizeof(name), "unknown");
    quarantine_field(q, "Helo", 0, helo, sizeof(helo));
    quarantine_field(q, "Tls", 0, tls, sizeof(tls));
    if (msg_env_set(m, id, client[0] ? client : NULL, name,
                    helo[0] ? helo : NULL, strcmp(tls, "yes") == 0,
                    quarantine_field(q, "Auth", 0, auth, sizeof(auth)),
                    e) < 0 ||
        msg_env_sender(m, from, fparams[0] ? fparams : NULL, e) < 0)
        goto fail;
    /* Whether the mail was ours (a signing stage asks) is what the front
     * end decided when it arrived; a file without the line is not. */
    if (quarantine_field(q, "Internal", 0, internal, sizeof(internal)) == NULL)
        internal[0] = '\0';
    if (msg_env_origin(m, strcmp(internal, "yes") == 0, NULL, e) < 0)
        goto fail;
    for (i = 0; quarantine_field(q, "Envelope-To", i, rcpt, sizeof(rcpt));
         i++) {
        quarantine_field(q, "Envelope-To-Params", i, rparams, sizeof(rparams));
        /* a cut address would be another recipient */
        if (strlen(rcpt) + 1 >= sizeof(rcpt) ||
            strlen(rparams) + 1 >= sizeof(rparams)) {
            err_set(e, ERR_INPUT, "%s: Envelope-To line too long", id);
            goto fail;
        }
        if (msg_env_rcpt(m, rcpt, rparams[0] ? rparams : NULL, e) < 0)
            goto fail;
    }
    if (i == 0) {
        err_set(e, ERR_INPUT, "%s: no Envelope-To line", id);
        goto fail;
    }
    if (msg_parse(m, q->body, q->body_len, e) < 0)
        goto fail;
    return m;
fail:
    msg_free(m);
    return NULL;
}

int
quarantine_delete(int dfd, const char *dir, const char *id, struct err *e)
{
    struct stat st;

    /* Only the entry itself is removed, never what a link names;
     * anything but a regular file is left for the admin to look at. */
    if (fstatat(dfd, id, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return err_sys(e, ERR_IO, "%s/%s", dir, id);
    if (!S_ISREG(st.st_mode))
        return err_set(e, ERR_INPUT,
                       "%s/%s: not a regular file (a link, FIFO or device "
                       "planted in the quarantine?): refused",
                       dir, id);
    if (unlinkat(dfd, id, 0) < 0)
        return err_sys(e, ERR_IO, "%s/%s", dir, id);
    return 0;
}

/* ------------------------------------------------------------- leaving */

/* quarantine_next_hop - see quarantine.h. */
int
quarantine_next_hop(const struct conf *cf, const char *id,
                    const struct msg_env *env, const char *data, size_t len,
                    struct smtpc_reply *r, struct err *e)
{
    struct smtpc_settings set;
    struct smtpc_pool *pool = NULL;
    struct smtpc_conn *c = NULL;
    size_t i;
    int ok = 0;

    memset(r, 0, sizeof(*r));
    if (cfg_str(cf->cfg, "next_hop") == NULL)
        return err_set(e, ERR_CONFIG, "no next_hop configured");
    if (smtpc_settings_from_cfg(cf->cfg, NULL, &set, e) < 0 ||
        (pool = smtpc_pool_new(&set, e)) == NULL)
        return -1;
    if ((c = smtpc_get(pool, r, e)) == NULL)
        goto out;
    /* no XFORWARD: the id is the message's only for the replies */
    smtpc_set_id(c, id);
    if (smtpc_mail(c, NULL, env->sender, NULL, r, e) < 0 || r->code / 100 != 2)
        goto out;
    for (i = 0; i < env->nrcpts; i++)
        if (smtpc_rcpt(c, env->rcpts[i].addr, NULL, r, e) < 0 ||
            r->code / 100 != 2)
            goto out;
    ok = smtpc_data(c, data, len, r, e) == 0 && r->code / 100 == 2;
out:
    if (c != NULL)
        smtpc_put(pool, c, ok);
    smtpc_pool_free(pool);
    if (!ok && e->text[0] == '\0')
        err_set(e, ERR_IO, "%d %s", r->code, r->text);
    return ok ? 0 : -1;
}

/* quarantine_spool - put the released message into queue_directory as
 * the daemon's queue_commit would: tmp/ID written and fsynced, linked to
 * queue/ID (never over an existing file), queue/ fsynced; then tell the
 * daemon through the trigger FIFO (see quarantine.h). Run as root, the
 * file is given to the owner of the spool, or the daemon could not read
 * it. */
int
quarantine_spool(const struct conf *cf, const struct queue_msg *qm,
                 struct err *e)
{
    const char *dir = cfg_str(cf->cfg, "queue_directory");
    int dfd = -1, tfd = -1, qfd = -1, fd = -1, rc = -1, tfile = 0;
    struct buf file;
    struct stat st;
    const char *what = "write";

    buf_init(&file, 0);
    /* Root writes in a spool its user owns: no link is followed. */
    if ((dfd = cfg_open_dir(dir, e)) < 0)
        goto out;
    if ((tfd = openat(dfd, "tmp",
                      O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
        (qfd = openat(dfd, "queue",
                      O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0) {
        err_sys(e, ERR_IO,
                "queue_directory %s (has relaychaind run with delivery = "
                "queue?)",
                dir);
        goto out;
    }
    if (queue_file_serialize(qm, &file, e) < 0)
        goto out;
    if ((fd = openat(tfd, qm->qid,
                     O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                     0600)) < 0) {
        err_sys(e, ERR_IO, "create %s/tmp/%s", dir, qm->qid);
        goto out;
    }
    tfile = 1;
    if (geteuid() == 0 && fstat(qfd, &st) == 0 &&
        fchown(fd, st.st_uid, st.st_gid) < 0) {
        what = "chown";
        goto fail;
    }
    if (fdio_write_all(fd, file.data, file.len) < 0) {
        err_sys(e, ERR_IO, "quarantine write");
        goto out;
    }
    what = "fsync";
    if (fsync(fd) < 0)
        goto fail;
    what = "link";
    if (linkat(tfd, qm->qid, qfd, qm->qid, 0) < 0)
        goto fail;
    what = "fsync";
    if (fsync(qfd) < 0) {
        unlinkat(qfd, qm->qid, 0);
        goto fail;
    }
    rc = 0;
    goto out;
fail:
    err_sys(e, ERR_IO, "%s %s/queue/%s", what, dir, qm->qid);
out:
    if (tfile)
        unlinkat(tfd, qm->qid, 0);
    if (fd >= 0)
        close(fd);
    if (rc == 0) {
        char line[QUEUE_ID_MAX + 8];

        /* "F ID" rescans queue/ (see queue.h). No reader: the daemon
         * finds the file when it starts; no FIFO: the daemon's next scan
         * does. */
        snprintf(line, sizeof(line), "F %s\n", qm->qid);
        if (queue_trigger_at(dfd, line) == -2)
            rc = 1;
    }
    if (qfd >= 0)
        close(qfd);
    if (tfd >= 0)
        close(tfd);
    if (dfd >= 0)
        close(dfd);
    buf_fini(&file);
    return rc;
}

/* quarantine_dir_prepare - see quarantine.h. */
int
quarantine_dir_prepare(const char *dir, struct err *e)
{
    struct stat st;

    if (stat(dir, &st) < 0) {
        char path[4096];
        size_t i, n = strlen(dir);

        if (errno != ENOENT)
            return err_sys(e, ERR_CONFIG, "quarantine_directory %s", dir);
        if (n == 0 || n >= sizeof(path))
            return err_set(e, ERR_CONFIG, "quarantine_directory: bad name");
        /* As mkdir -p, each missing directory mode 0700: the default
         * lives in the queue's directory, which may not exist yet. */
        memcpy(path, dir, n + 1);
        for (i = 1; i <= n; i++) {
            if (path[i] != '/' && path[i] != '\0')
                continue;
            path[i] = '\0';
            if (mkdir(path, 0700) < 0 && errno != EEXIST)
                return err_sys(e, ERR_CONFIG,
                               "quarantine_directory %s: cannot create %s",
                               dir, path);
            path[i] = i < n ? '/' : '\0';
        }
        if (stat(dir, &st) < 0)
            return err_sys(e, ERR_CONFIG, "quarantine_directory %s", dir);
        log_info(NULL, "created quarantine_directory %s", dir);
    }
    if (!S_ISDIR(st.st_mode))
        return err_set(e, ERR_CONFIG,
                       "quarantine_directory %s: not a directory", dir);
    /* Held mail is mail nobody else should read or replace. */
    if (st.st_mode & S_IWOTH)
        return err_set(e, ERR_CONFIG,
                       "quarantine_directory %s: writable by everyone (mode "
                       "%04o); make it 0700",
                       dir, (unsigned)(st.st_mode & 07777));
    return 0;
}
