/*
 * maildir - the next-hop client's Maildir transport
 *
 * next_hop = maildir:/absolute/path. The transport of smtpc.h's calls
 * (see smtpc_transport.h): a "connection" is a transaction's state
 * only, MAIL and RCPT are taken as they come ("250 2.1.0 Ok",
 * "250 2.1.5 Ok": a Maildir has no say in the envelope), and the
 * message makes one file, whatever the recipients, with the one reply
 * for all of them.
 *
 * Delivery requires the directory of next_hop to exist (a typo must not
 * create a tree somewhere); the pool's init creates tmp/, new/ and cur/
 * in it, mode 0700, when missing. Each message is written to tmp/ under
 * a unique name "sec.MusecPpidQseq.host" (the Maildir convention; '/'
 * and ':' in the host name as \057 and \072), with LF line ends and no
 * dot-stuffing, fsynced, linked into new/ (rename() where the file
 * system has no hard links), and new/ is fsynced before "250 2.0.0 Ok:
 * ID delivered to maildir as NAME" is returned, ID the queue id of the
 * transaction (smtpc_mail's envelope, or smtpc_set_id). Any failure
 * removes the temporary file and gives 451 with an enhanced code that
 * fits the error ("4.3.1" when the disk is full).
 *
 * The pool owns the path; the name sequence is under the pool's lock.
 * Nothing here logs.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "net/smtpc.h"
#include "util/fdio.h"
#include "net/smtpc_transport.h"

#define SMTPC_NAME_TRIES 8 /* Maildir names tried per message */

/* smtpc_maildir_parse - "maildir:" is followed by an absolute path. */
static int
smtpc_maildir_parse(struct smtpc_pool *p, const char *hop, const char *rest,
                    struct err *e)
{
    size_t i, n;

    n = strlen(rest);
    while (n > 1 && rest[n - 1] == '/')
        n--;
    if (rest[0] != '/' || n < 2)
        return smtpc_hop_err(e, hop, "a Maildir needs an absolute path");
    if (n > SMTPC_PATH_MAX)
        return smtpc_hop_err(e, hop, "path too long");
    for (i = 0; i < n; i++)
        if ((unsigned char)rest[i] < 0x20 || rest[i] == 0x7f)
            return smtpc_hop_err(e, hop, "control character in path");
    if ((p->maildir = strndup(rest, n)) == NULL)
        return err_nomem(e);
    return 0;
}

/* smtpc_maildir_init - the Maildir's subdirectories, and the host name
 * its file names end in. */
static int
smtpc_maildir_init(struct smtpc_pool *p, const struct smtpc_settings *s,
                   struct err *e)
{
    static const char *const subdirs[] = {"tmp", "new", "cur"};
    char path[SMTPC_PATH_MAX + 8], host[SMTPC_HOST_MAX + 1];
    struct stat st;
    size_t i, o = 0;

    (void)s;
    if (stat(p->maildir, &st) < 0)
        return err_sys(e, ERR_CONFIG, "next_hop: %s", p->maildir);
    if (!S_ISDIR(st.st_mode))
        return err_set(e, ERR_CONFIG, "next_hop: %s: not a directory",
                       p->maildir);
    for (i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/%s", p->maildir, subdirs[i]);
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
            return err_sys(e, ERR_CONFIG, "next_hop: %s", path);
        if (stat(path, &st) < 0)
            return err_sys(e, ERR_CONFIG, "next_hop: %s", path);
        if (!S_ISDIR(st.st_mode))
            return err_set(e, ERR_CONFIG, "next_hop: %s: not a directory",
                           path);
    }
    if (gethostname(host, sizeof(host)) < 0)
        snprintf(host, sizeof(host), "localhost");
    host[sizeof(host) - 1] = '\0';
    for (i = 0; host[i] != '\0'; i++) {
        if (host[i] == '/' || host[i] == ':') {
            o += (size_t)snprintf(p->name_host + o, sizeof(p->name_host) - o,
                                  "\\%03o", (unsigned char)host[i]);
        } else {
            p->name_host[o++] = host[i];
            p->name_host[o] = '\0';
        }
    }
    return 0;
}

/* smtpc_maildir_file - write the message, in pieces, to path, fsynced;
 * the octets converted are those of the pieces joined, a CRLF split
 * between two pieces included. 0; -1 with errno when path can not be
 * created; -2 with e on other failures (path is then removed). */
static int
smtpc_maildir_file(const char *path, const struct iovec *iov, size_t niov,
                   struct err *e)
{
    size_t pos, n, piece, len;
    const char *data;
    int fd, bol = 1, cr = 0, saved;
    char *out;

    if ((out = malloc(2 * SMTPC_WINDOW + 8)) == NULL)
        return err_nomem(e);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        saved = errno;
        free(out);
        errno = saved;
        return -1;
    }
    for (piece = 0; piece < niov; piece++) {
        data = iov[piece].iov_base;
        len = iov[piece].iov_len;
        if (len == 0)
            continue;
        /* A CR that ended the last piece went out as a line end; an LF
         * that starts this one is the rest of that CRLF. */
        pos = cr && data[0] == '\n' ? 1 : 0;
        cr = data[len - 1] == '\r';
        while (pos < len) {
            n = smtpc_convert(data, len, &pos, &bol, 0, out);
            if (fdio_write_all(fd, out, n) < 0)
                goto fail;
        }
    }
    if (!bol && fdio_write_all(fd, "\n", 1) < 0)
        goto fail;
    if (fsync(fd) < 0)
        goto fail;
    free(out);
    if (close(fd) < 0) {
        err_sys(e, ERR_IO, "write %s", path);
        unlink(path);
        return -2;
    }
    return 0;
fail:
    err_sys(e, ERR_IO, "write %s", path);
    free(out);
    close(fd);
    unlink(path);
    return -2;
}

static int
smtpc_fsync_dir(const char *path, struct err *e)
{
    int fd, rc = 0;

    if ((fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return err_sys(e, ERR_IO, "open %s", path);
    if (fsync(fd) < 0)
        rc = err_sys(e, ERR_IO, "fsync %s", path);
    close(fd);
    return rc;
}

/* smtpc_maildir_fail - 451 with an enhanced code that fits errno. */
static int
smtpc_maildir_fail(struct smtpc_reply *r, struct err *e)
{
    const char *enh = "4.3.0";

    if (e->sys_errno == ENOSPC)
        enh = "4.3.1";
    else if (e->sys_errno == EDQUOT)
        enh = "4.2.2";
    smtpc_reply_set(r, 451, "%s maildir delivery failed: %s", enh, e->text);
    return -1;
}

/* smtpc_maildir_deliver - the message as one file in new/; r gets 250
 * or 451 (returning -1). */
static int
smtpc_maildir_deliver(struct smtpc_pool *p, const struct iovec *iov,
                      size_t niov, const char *qid, struct smtpc_reply *r,
                      struct err *e)
{
    char name[SMTPC_HOST_MAX * 4 + 96];
    char tmp[SMTPC_PATH_MAX + sizeof(name) + 8];
    char dst[SMTPC_PATH_MAX + sizeof(name) + 8];
    struct timespec ts;
    unsigned long seq;
    int tries, rc;

    for (tries = 0; tries < SMTPC_NAME_TRIES; tries++) {
        clock_gettime(CLOCK_REALTIME, &ts);
        pthread_mutex_lock(&p->lock);
        seq = ++p->seq;
        pthread_mutex_unlock(&p->lock);
        snprintf(name, sizeof(name), "%lld.M%06ldP%ldQ%lu.%s",
                 (long long)ts.tv_sec, ts.tv_nsec / 1000, (long)getpid(), seq,
                 p->name_host);
        snprintf(tmp, sizeof(tmp), "%s/tmp/%s", p->maildir, name);
        snprintf(dst, sizeof(dst), "%s/new/%s", p->maildir, name);
        rc = smtpc_maildir_file(tmp, iov, niov, e);
        if (rc == -1 && errno == EEXIST)
            continue;
        if (rc == -1)
            err_sys(e, ERR_IO, "create %s", tmp);
        if (rc < 0)
            return smtpc_maildir_fail(r, e);
        if (link(tmp, dst) == 0) {
            unlink(tmp);
        } else if (errno == EEXIST) {
            unlink(tmp);
            continue;
        } else if (errno == EPERM || errno == ENOSYS || errno == EOPNOTSUPP) {
            /* no hard links here: the unique name must do */
            if (rename(tmp, dst) < 0) {
                err_sys(e, ERR_IO, "rename %s", tmp);
                unlink(tmp);
                return smtpc_maildir_fail(r, e);
            }
        } else {
            err_sys(e, ERR_IO, "link %s", dst);
            unlink(tmp);
            return smtpc_maildir_fail(r, e);
        }
        snprintf(tmp, sizeof(tmp), "%s/new", p->maildir);
        if (smtpc_fsync_dir(tmp, e) < 0) {
            unlink(dst);
            return smtpc_maildir_fail(r, e);
        }
        smtpc_reply_set(r, 250, "2.0.0 Ok: %s delivered to maildir as %s",
                        qid[0] != '\0' ? qid : "NOQUEUE", name);
        return 0;
    }
    err_set(e, ERR_TEMP, "no unique name in %s/tmp after %d tries", p->maildir,
            SMTPC_NAME_TRIES);
    return smtpc_maildir_fail(r, e);
}

/* ------------------------------------------------------------ transport */

static struct smtpc_conn *
smtpc_maildir_get(struct smtpc_pool *p, struct smtpc_reply *r, struct err *e)
{
    struct smtpc_conn *c;

    if ((c = calloc(1, sizeof(*c))) == NULL) {
        err_nomem(e);
        smtpc_reply_set(r, 451, "4.3.0 out of memory");
        return NULL;
    }
    c->pool = p;
    snprintf(c->relay, sizeof(c->relay), "maildir");
    return c;
}

static void
smtpc_maildir_put(struct smtpc_pool *p, struct smtpc_conn *c, int ok)
{
    (void)p;
    (void)ok;
    free(c);
}

static int
smtpc_maildir_mail(struct smtpc_conn *c, const struct msg_env *env,
                   const char *sender, const char *params,
                   struct smtpc_reply *r, struct err *e)
{
    (void)env;
    (void)sender;
    (void)params;
    (void)e;
    c->in_mail = 1;
    c->nrcpt_ok = 0;
    smtpc_reply_set(r, 250, "2.1.0 Ok");
    return 0;
}

static int
smtpc_maildir_rcpt(struct smtpc_conn *c, const char *rcpt, const char *params,
                   struct smtpc_reply *r, struct err *e)
{
    (void)rcpt;
    (void)params;
    (void)e;
    c->nrcpt_ok++;
    smtpc_reply_set(r, 250, "2.1.5 Ok");
    return 0;
}

/* smtpc_maildir_data - one file for all recipients, one reply for all. */
static int
smtpc_maildir_data(struct smtpc_conn *c, const struct iovec *iov, size_t niov,
                   struct smtpc_reply *each, size_t n, struct smtpc_reply *r,
                   struct err *e)
{
    size_t i;
    int rc;

    rc = smtpc_maildir_deliver(c->pool, iov, niov, c->id, r, e);
    c->in_mail = 0;
    c->nrcpt_ok = 0;
    for (i = 0; i < n; i++)
        each[i] = *r;
    return rc;
}

static int
smtpc_maildir_rset(struct smtpc_conn *c, struct err *e)
{
    (void)e;
    c->in_mail = 0;
    c->nrcpt_ok = 0;
    return 0;
}

const struct smtpc_transport_ops smtpc_maildir_ops = {
    .name = "maildir",
    .kind = SMTPC_MAILDIR,
    .parse = smtpc_maildir_parse,
    .init = smtpc_maildir_init,
    .fini = NULL,
    .get = smtpc_maildir_get,
    .put = smtpc_maildir_put,
    .mail = smtpc_maildir_mail,
    .rcpt = smtpc_maildir_rcpt,
    .data = smtpc_maildir_data,
    .rset = smtpc_maildir_rset,
};
