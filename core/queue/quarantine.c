/*
 * quarantine - messages a stage held back, kept on disk for an admin
 *
 * See quarantine.h for the file format. The commands read the files the
 * daemon wrote. release rebuilds the message with its recorded envelope,
 * runs the stages after the one that held it (chain_run_opts with
 * resume_after), and removes the file only after the result is safe: in
 * the queue's spool (fsynced, as queue_commit does) or accepted by the
 * next hop. A failed release leaves the message where it was; a later
 * stage that rejects or tempfails it does too, and one that holds it
 * again rewrites the file with its own name in Stage:.
 *
 * A file written before Stage: existed holds the message after its stage
 * had edited it; it is released as it is, as before, with a warning.
 *
 * The commands run as root in a directory the daemon's user can write:
 * the directory is opened with cfg_open_dir() (root's links only), and
 * each file relative to it with O_NOFOLLOW and O_NONBLOCK, then checked
 * to be a regular file with one name, so a planted link (symbolic or
 * hard) or FIFO is refused by name instead of being followed or waited
 * on; IDs are letters and digits. A release into the queue's spool opens
 * it the same way and writes the trigger only when it is a FIFO.
 * Each file is created as ".ID.tmp" with O_EXCL | O_NOFOLLOW relative to
 * the directory and renamed into place.
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

#include "util/buf.h"
#include "util/cfg.h"
#include "util/fdio.h"
#include "chain/conf.h"
#include "chain/chain.h"
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

/* quarantine_store_at - the file for m in the directory dfd (named dir
 * in messages): written as .ID.tmp, created exclusively and never
 * through a link, fsynced and renamed into place. Run as root (a
 * release held again), it is given to the directory's owner. */
static int
quarantine_store_at(int dfd, const char *dir, const struct msg *m,
                    const char *data, size_t len, const char *reason,
                    const char *stage, struct err *e)
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
                 struct err *e)
{
    int dfd, rc;

    /* Made at first use, as queue_directory is; conf_load() checked
     * that it can be. */
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return err_sys(e, ERR_IO, "quarantine: mkdir %s", dir);
    if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return err_sys(e, ERR_IO, "quarantine: %s", dir);
    rc = quarantine_store_at(dfd, dir, m, data, len, reason, stage, e);
    close(dfd);
    return rc;
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
quarantine_list(int dfd, const char *dir)
{
    struct dirent *de;
    DIR *d;
    int n = 0, fd;

    printf("%-14s %-20s %-30s %s\n", "ID", "Arrival", "Sender", "Reason");
    /* The directory is made at the first quarantined message. */
    if (dfd < 0) {
        printf("-- 0 messages in quarantine\n");
        return 0;
    }
    if ((fd = dup(dfd)) < 0 || (d = fdopendir(fd)) == NULL) {
        fprintf(stderr, "relaychain: %s: %s\n", dir, strerror(errno));
        if (fd >= 0)
            close(fd);
        return 1;
    }
    while ((de = readdir(d)) != NULL) {
        char from[300], arrival[32], reason[300], when[32];
        struct qfile q;
        struct err e;
        time_t t;

        if (!qid_is_valid(de->d_name, QUARANTINE_ID_MAX))
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

/* quarantine_next_hop - deliver data with envelope env straight to
 * next_hop (delivery = through); fills r with the reply. 0 when every
 * recipient was accepted. */
static int
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
    memset(&set, 0, sizeof(set));
    set.next_hop = cfg_str(cf->cfg, "next_hop");
    set.helo_name = cfg_str(cf->cfg, "myhostname")
                        ? cfg_str(cf->cfg, "myhostname")
                        : "localhost";
    smtpc_settings_tls(&set, cf->cfg);
    set.auth_file = cfg_str(cf->cfg, "next_hop_auth_file");
    set.connect_timeout_ms = 30000;
    set.timeout_ms = (int)cfg_num(cf->cfg, "next_hop_timeout");
    set.idle_timeout_ms = 0;
    set.max_idle = 0;
    if (set.next_hop == NULL)
        return err_set(e, ERR_CONFIG, "no next_hop configured");
    if ((pool = smtpc_pool_new(&set, e)) == NULL)
        return -1;
    if (smtpc_pool_kind(pool) == SMTPC_MAILDIR) {
        ok = smtpc_maildir_deliver(pool, data, len, id, r, e) == 0 &&
             r->code / 100 == 2;
        goto out;
    }
    if ((c = smtpc_get(pool, r, e)) == NULL)
        goto out;
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
 * daemon through the trigger FIFO. Run as root, the file is given to
 * the owner of the spool, or the daemon could not read it. */
static int
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
            fprintf(stderr, "relaychain: %s/trigger: not a FIFO: refused\n",
                    dir);
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

/* quarantine_msg - the held message as a struct msg with the envelope
 * the file recorded; NULL with e set. */
static struct msg *
quarantine_msg(const struct conf *cf, const struct qfile *q, const char *id,
               struct err *e)
{
    char from[2048], rcpt[2048], client[300], name[300], helo[300], auth[300],
        tls[8], internal[8], fparams[2048], rparams[2048];
    struct msg *m;
    int i;

    if ((m = msg_new(&cf->limits, MSG_FE_SMTP, e)) == NULL)
        return NULL;
    qfile_field(q, "Envelope-From", 0, from, sizeof(from));
    qfile_field(q, "Envelope-From-Params", 0, fparams, sizeof(fparams));
    qfile_field(q, "Client", 0, client, sizeof(client));
    if (qfile_field(q, "Client-Name", 0, name, sizeof(name)) == NULL)
        snprintf(name, sizeof(name), "unknown");
    qfile_field(q, "Helo", 0, helo, sizeof(helo));
    qfile_field(q, "Tls", 0, tls, sizeof(tls));
    if (msg_env_set(m, id, client[0] ? client : NULL, name,
                    helo[0] ? helo : NULL, strcmp(tls, "yes") == 0,
                    qfile_field(q, "Auth", 0, auth, sizeof(auth)), e) < 0 ||
        msg_env_sender(m, from, fparams[0] ? fparams : NULL, e) < 0)
        goto fail;
    /* Whether the mail was ours (a signing stage asks) is what the front
     * end decided when it arrived; a file without the line is not. */
    if (qfile_field(q, "Internal", 0, internal, sizeof(internal)) == NULL)
        internal[0] = '\0';
    if (msg_env_origin(m, strcmp(internal, "yes") == 0, NULL, e) < 0)
        goto fail;
    for (i = 0; qfile_field(q, "Envelope-To", i, rcpt, sizeof(rcpt)); i++) {
        qfile_field(q, "Envelope-To-Params", i, rparams, sizeof(rparams));
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

/* quarantine_release - resume the chain for message id (file path) and
 * deliver the result; 0 when it left the quarantine (delivered, queued,
 * discarded by a stage, or held again under a later stage). */
static int
quarantine_release(const struct conf *cf, int dfd, const char *dir,
                   const char *id)
{
    char stage[128], reason[300], note[600];
    struct chain_result res;
    struct chain_opts opts;
    const struct msg_env *env;
    struct smtpc_reply r;
    struct msg *m = NULL;
    struct buf out;
    struct qfile q;
    struct err e;
    int rc = 1, resumed;

    err_clear(&e);
    memset(&res, 0, sizeof(res));
    buf_init(&out, 0);
    if (qfile_read(dfd, dir, id, &q, &e) < 0 ||
        (m = quarantine_msg(cf, &q, id, &e)) == NULL) {
        fprintf(stderr, "relaychain: %s\n", e.text);
        goto out;
    }
    qfile_field(&q, "Reason", 0, reason, sizeof(reason));
    resumed = qfile_field(&q, "Stage", 0, stage, sizeof(stage)) != NULL &&
              stage[0] != '\0';
    memset(&opts, 0, sizeof(opts));
    opts.resume_after = resumed ? stage : NULL;
    opts.undo_hold = 1;
    if (!resumed) {
        fprintf(stderr,
                "relaychain: warning: %s was held without the name of its "
                "stage: released as it was held, the rest of the chain is "
                "not run\n",
                id);
        log_warning(id, "quarantine: held without the name of its stage: "
                        "released as it was held");
    } else {
        log_info(id,
                 "quarantine: release: resuming the chain after %s "
                 "(held: %s)",
                 stage, reason);
        if (chain_run_opts(cf->chain, m, &opts, &res, &e) < 0) {
            fprintf(stderr, "relaychain: %s: not released: %s\n", id, e.text);
            log_warning(id, "quarantine: not released: %s", e.text);
            goto out;
        }
    }
    switch (res.verdict.kind) {
    case VERDICT_CONTINUE:
        break;
    case VERDICT_REJECT:
    case VERDICT_TEMPFAIL:
        fprintf(stderr, "relaychain: %s: not released: stage %s %ss it: %s\n",
                id, res.by ? res.by->name : "chain",
                verdict_kind_name(res.verdict.kind), res.verdict.reply);
        log_info(id, "quarantine: not released: %s: %s: %s",
                 verdict_kind_name(res.verdict.kind),
                 res.by ? res.by->name : "chain", res.verdict.reply);
        goto out;
    case VERDICT_DISCARD:
        if (unlinkat(dfd, id, 0) < 0) {
            fprintf(stderr, "relaychain: %s/%s: %s\n", dir, id,
                    strerror(errno));
            goto out;
        }
        printf("%s: discarded by %s\n", id, res.by ? res.by->name : "chain");
        log_info(id, "quarantine: released, then discarded by %s%s%s",
                 res.by ? res.by->name : "chain",
                 res.verdict.note[0] ? ": " : "", res.verdict.note);
        rc = 0;
        goto out;
    case VERDICT_QUARANTINE:
        /* The same name: rename() replaces the old file in one step. */
        if (msg_write(m, &out, &e) < 0 ||
            quarantine_store_at(dfd, dir, m, out.data, out.len,
                                res.verdict.note, res.by ? res.by->name : NULL,
                                &e) < 0) {
            fprintf(stderr, "relaychain: %s: %s\n", id, e.text);
            goto out;
        }
        printf("%s: held again by %s: %s\n", id,
               res.by ? res.by->name : "chain", res.verdict.note);
        log_info(id, "quarantine: released, then held again by %s: %s",
                 res.by ? res.by->name : "chain", res.verdict.note);
        rc = 0;
        goto out;
    }
    env = msg_env(m);
    if (env->nrcpts == 0) {
        if (unlinkat(dfd, id, 0) < 0) {
            fprintf(stderr, "relaychain: %s/%s: %s\n", dir, id,
                    strerror(errno));
            goto out;
        }
        printf("%s: the chain removed every recipient\n", id);
        log_info(id, "quarantine: released, then discarded: the chain "
                     "removed every recipient");
        rc = 0;
        goto out;
    }
    if (msg_write(m, &out, &e) < 0) {
        fprintf(stderr, "relaychain: %s: %s\n", id, e.text);
        goto out;
    }
    if (cfg_enum(cf->cfg, "delivery") == 1) {
        struct queue_msg qm;
        char arrival[32];

        memset(&qm, 0, sizeof(qm));
        qfile_field(&q, "Arrival", 0, arrival, sizeof(arrival));
        qm.qid = id;
        qm.arrival_us = strtoll(arrival, NULL, 10) * 1000000LL;
        qm.client_addr = env->client_addr ? env->client_addr : "";
        qm.client_name = env->client_name ? env->client_name : "";
        qm.helo = env->helo ? env->helo : "";
        qm.auth_user = env->auth_user;
        qm.sender = env->sender;
        qm.sender_params = env->sender_params ? env->sender_params : "";
        qm.rcpts = env->rcpts;
        qm.nrcpts = env->nrcpts;
        qm.orig = env->rcpts;
        qm.norig = env->nrcpts;
        qm.data = out.data ? out.data : "";
        qm.len = out.len;
        if (quarantine_spool(cf, &qm, &e) < 0) {
            fprintf(stderr, "relaychain: %s: not released: %s\n", id, e.text);
            log_warning(id, "quarantine: not released: %s", e.text);
            goto out;
        }
        snprintf(note, sizeof(note), "queued as %s", id);
    } else {
        if (quarantine_next_hop(cf, id, env, out.data ? out.data : "", out.len,
                                &r, &e) < 0) {
            fprintf(stderr, "relaychain: %s: not released: %s\n", id, e.text);
            log_warning(id, "quarantine: not released: %s", e.text);
            goto out;
        }
        snprintf(note, sizeof(note), "%d %s", r.code, r.text);
    }
    if (unlinkat(dfd, id, 0) < 0)
        fprintf(stderr, "relaychain: released, but %s/%s: %s\n", dir, id,
                strerror(errno));
    printf("%s: released (%s)\n", id, note);
    log_info(id, "released from quarantine%s%s (%s)",
             resumed ? ", chain resumed after " : "", resumed ? stage : "",
             note);
    rc = 0;
out:
    chain_result_fini(&res);
    msg_free(m);
    buf_fini(&out);
    buf_fini(&q.raw);
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
    /* Only a release runs messages through the chain (the stages after
     * the one that held it); the other commands need no virus engine. */
    if ((cf = conf_load_flags(
             path, strcmp(cmd, "release") == 0 ? 0 : CONF_LOAD_CHECK, &e)) ==
        NULL) {
        fprintf(stderr, "relaychain: %s\n", e.text);
        return 1;
    }
    dir = cfg_str(cf->cfg, "quarantine_directory");
    if (strcmp(cmd, "list") != 0 && strcmp(cmd, "show") != 0 &&
        conf_log_open(cf, &e) < 0) {
        fprintf(stderr, "relaychain: %s\n", e.text);
        goto out;
    }
    /* The directory is made at the first quarantined message: missing,
     * it is an empty quarantine. */
    if ((dfd = cfg_open_dir(dir, &e)) < 0 && e.sys_errno != ENOENT) {
        fprintf(stderr, "relaychain: quarantine_directory %s\n", e.text);
        goto out;
    }
    if (strcmp(cmd, "list") == 0 && optind + 1 == argc) {
        rc = quarantine_list(dfd, dir);
        goto out;
    }
    if (optind + 2 != argc ||
        !qid_is_valid(argv[optind + 1], QUARANTINE_ID_MAX)) {
        fprintf(stderr, "relaychain: quarantine %s needs one message ID\n",
                cmd);
        goto out;
    }
    id = argv[optind + 1];
    if (dfd < 0) {
        fprintf(stderr, "relaychain: quarantine_directory %s\n", e.text);
        goto out;
    }
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
        if (fstatat(dfd, id, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            fprintf(stderr, "relaychain: %s/%s: %s\n", dir, id,
                    strerror(errno));
        } else if (!S_ISREG(st.st_mode)) {
            fprintf(stderr,
                    "relaychain: %s/%s: not a regular file (a link, FIFO or "
                    "device planted in the quarantine?): refused\n",
                    dir, id);
        } else if (unlinkat(dfd, id, 0) < 0) {
            fprintf(stderr, "relaychain: %s/%s: %s\n", dir, id,
                    strerror(errno));
        } else {
            printf("%s: removed from quarantine\n", id);
            log_info(id, "removed from quarantine");
            rc = 0;
        }
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
