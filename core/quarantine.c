/*
 * quarantine - messages a stage held back, kept on disk for an admin
 *
 * See quarantine.h for the file format. The commands read the files the
 * daemon wrote; release sends a message to the configured next hop with
 * its recorded envelope and removes the file only after the next hop
 * accepted it, so a failed release leaves the message where it was.
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
#include "conf.h"
#include "log.h"
#include "quarantine.h"
#include "smtpc.h"

#define QUARANTINE_MAX (256u * 1024 * 1024)

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
    char tmp[4096], path[4096], when[32];
    struct buf head;
    size_t i;
    int fd = -1, dfd = -1;

    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, msg_qid(m)) >=
            sizeof(path) ||
        (size_t)snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, msg_qid(m)) >=
            sizeof(tmp))
        return err_set(e, ERR_CONFIG, "quarantine_directory too long");
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
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) {
        err_sys(e, ERR_IO, "quarantine: %s", tmp);
        goto fail;
    }
    if (quarantine_write_all(fd, head.data, head.len, e) < 0 ||
        quarantine_write_all(fd, data, len, e) < 0)
        goto fail_unlink;
    if (fsync(fd) < 0) {
        err_sys(e, ERR_IO, "quarantine: fsync %s", tmp);
        goto fail_unlink;
    }
    if (close(fd) < 0) {
        fd = -1;
        err_sys(e, ERR_IO, "quarantine: close %s", tmp);
        goto fail_unlink;
    }
    fd = -1;
    if (rename(tmp, path) < 0) {
        err_sys(e, ERR_IO, "quarantine: rename to %s", path);
        goto fail_unlink;
    }
    if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
        fsync(dfd) < 0) {
        err_sys(e, ERR_IO, "quarantine: fsync %s", dir);
        if (dfd >= 0)
            close(dfd);
        unlink(path);
        buf_fini(&head);
        return -1;
    }
    close(dfd);
    buf_fini(&head);
    return 0;

fail_unlink:
    unlink(tmp);
fail:
    if (fd >= 0)
        close(fd);
    buf_fini(&head);
    return -1;
}

/* ------------------------------------------------------------ commands */

struct qfile {
    struct buf raw;
    const char *body; /* the message, after the envelope block */
    size_t body_len;
};

static int
qfile_read(const char *path, struct qfile *q, struct err *e)
{
    char chunk[65536];
    const char *sep;
    FILE *fp;
    size_t n;

    buf_init(&q->raw, QUARANTINE_MAX);
    if ((fp = fopen(path, "rb")) == NULL)
        return err_sys(e, ERR_IO, "%s", path);
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
        if (buf_append(&q->raw, chunk, n, e) < 0) {
            fclose(fp);
            return -1;
        }
    fclose(fp);
    sep = q->raw.data ? strstr(q->raw.data, "\n\n") : NULL;
    if (sep == NULL)
        return err_set(e, ERR_INPUT, "%s: not a quarantine file", path);
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
quarantine_list(const char *dir)
{
    struct dirent *de;
    DIR *d;
    int n = 0;

    if ((d = opendir(dir)) == NULL) {
        fprintf(stderr, "relaychain: %s: %s\n", dir, strerror(errno));
        return 1;
    }
    printf("%-14s %-20s %-30s %s\n", "ID", "Arrival", "Sender", "Reason");
    while ((de = readdir(d)) != NULL) {
        char path[4096], from[300], arrival[32], reason[300], when[32];
        struct qfile q;
        struct err e;
        time_t t;

        if (!qid_ok(de->d_name))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (qfile_read(path, &q, &e) < 0) {
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
quarantine_release(const struct conf *cf, const char *path, const char *id)
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
    if (qfile_read(path, &q, &e) < 0) {
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
    if (unlink(path) < 0)
        fprintf(stderr, "relaychain: released, but %s: %s\n", path,
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
    const char *path = CONF_DEFAULT_PATH, *cmd, *dir;
    char file[4096];
    struct conf *cf;
    struct err e;
    int c, rc = 1;

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
    if (strcmp(cmd, "list") == 0 && optind + 1 == argc) {
        rc = quarantine_list(dir);
        goto out;
    }
    if (optind + 2 != argc || !qid_ok(argv[optind + 1])) {
        fprintf(stderr, "relaychain: quarantine %s needs one message ID\n",
                cmd);
        goto out;
    }
    snprintf(file, sizeof(file), "%s/%s", dir, argv[optind + 1]);
    if (strcmp(cmd, "show") == 0) {
        struct qfile q;

        if (qfile_read(file, &q, &e) < 0) {
            fprintf(stderr, "relaychain: %s\n", e.text);
        } else {
            fwrite(q.raw.data, 1, q.raw.len, stdout);
            rc = 0;
        }
        buf_fini(&q.raw);
    } else if (strcmp(cmd, "delete") == 0) {
        if (unlink(file) < 0)
            fprintf(stderr, "relaychain: %s: %s\n", file, strerror(errno));
        else
            rc = 0;
    } else if (strcmp(cmd, "release") == 0) {
        rc = quarantine_release(cf, file, argv[optind + 1]);
    } else {
        fprintf(stderr, "relaychain: unknown quarantine command '%s'\n", cmd);
    }
out:
    conf_free(cf);
    return rc;
}
