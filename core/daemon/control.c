/*
 * control - relaychaind's control socket: "status" and "reload"
 *
 * control_open() makes the socket at start, before privileges are
 * dropped; control_start() serves it on a thread of its own, which
 * starts a thread for each client; control_stop() ends them and removes
 * the socket. The struct control is main()'s; the threads read it, and
 * its client count is guarded by its own lock. A client's failures (a
 * refused peer, a line too long or too slow) are answered on the socket
 * and, for a refusal, logged.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "filters/filters.h"
#include "chain/chain.h"
#include "daemon/daemon_int.h"
#include "queue/events.h"
#include "queue/queue.h"
#include "util/log.h"
#include "util/metrics.h" /* ---- http */

/*
 * The control socket: a UNIX stream socket (control_socket) on which the
 * daemon takes one command line per connection, "status" or "reload",
 * answers with lines and closes, as Postfix's "postfix status" and
 * "postfix reload" do with the master. "relaychain status" and
 * "relaychain reload" are its clients.
 *
 * Who may connect: the socket is made mode 0600 and owned by the
 * daemon's user, and each connection's peer credentials (SO_PEERCRED)
 * must be root or that user; anyone else gets one refusal line. What a
 * client may send is bounded: one line of at most CONTROL_LINE_MAX
 * octets within CONTROL_TIMEOUT_S seconds, and the replies are written
 * with the same deadline, so a client that stalls costs one thread a few
 * seconds. Each client has a thread of its own, at most
 * CONTROL_CLIENTS_MAX at once, so "status" answers while another client
 * waits for its reload (at most CONTROL_RELOAD_WAIT_S).
 */
#define CONTROL_LINE_MAX 64
#define CONTROL_TIMEOUT_S 5
#define CONTROL_RELOAD_WAIT_S 600
#define CONTROL_REPLY_MAX 8192
#define CONTROL_CLIENTS_MAX 8

/* A reply under construction: appends are cut at the buffer's end. */
struct reply {
    char text[CONTROL_REPLY_MAX];
    size_t len;
};

/* One client of the control socket, on its own thread. */
struct control_client {
    struct control *ct;
    int fd;
};

/* control_addr - the sockaddr of path; -1 when it does not fit. */
static int
control_addr(const char *path, struct sockaddr_un *sun)
{
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    if (snprintf(sun->sun_path, sizeof(sun->sun_path), "%s", path) >=
        (int)sizeof(sun->sun_path))
        return -1;
    return 0;
}

/* control_open - make the control socket before privileges are dropped:
 * its directory (mode 0755, owned by uid:gid) when missing, a stale
 * socket of a crashed daemon removed, and refused while another daemon
 * answers on it. Returns 0 with ct->fd set, or -1 with e set. */
int
control_open(struct control *ct, const struct cfg *boot, uid_t uid, gid_t gid,
             struct err *e)
{
    const char *path = cfg_str(boot, "control_socket");
    char dir[PATH_MAX], *slash;
    struct sockaddr_un sun;
    struct stat st;
    mode_t old;
    int fd;

    ct->fd = -1;
    if (path[0] != '/' || control_addr(path, &sun) < 0)
        return cfg_err(e, boot, "control_socket",
                       "'%.64s' is not an absolute path of at most %zu "
                       "octets",
                       path, sizeof(sun.sun_path) - 1);
    snprintf(dir, sizeof(dir), "%s", path);
    slash = strrchr(dir, '/');
    if (slash != dir) {
        *slash = '\0';
        if (mkdir(dir, 0755) == 0) {
            if (geteuid() == 0 && chown(dir, uid, gid) < 0)
                return cfg_err(e, boot, "control_socket", "chown %s: %s", dir,
                               strerror(errno));
        } else if (errno != EEXIST) {
            return cfg_err(e, boot, "control_socket", "mkdir %s: %s", dir,
                           strerror(errno));
        }
    }
    if (lstat(path, &st) == 0) {
        /* Never remove what is not a socket: the path is the admin's. */
        if (!S_ISSOCK(st.st_mode))
            return cfg_err(e, boot, "control_socket",
                           "%s exists and is not a socket", path);
        if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
            return err_sys(e, ERR_IO, "control_socket: socket");
        if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
            close(fd);
            return cfg_err(e, boot, "control_socket",
                           "%s: another relaychaind answers there; stop it "
                           "first (relaychain status says which)",
                           path);
        }
        close(fd);
        if (unlink(path) < 0 && errno != ENOENT)
            return cfg_err(e, boot, "control_socket", "unlink %s: %s", path,
                           strerror(errno));
    }
    if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
        return err_sys(e, ERR_IO, "control_socket: socket");
    /* Made 0600 from the start: no moment in which others may connect. */
    old = umask(0177);
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
        umask(old);
        cfg_err(e, boot, "control_socket", "bind %s: %s", path,
                strerror(errno));
        close(fd);
        return -1;
    }
    umask(old);
    /* lchown: the directory may be the user's (RuntimeDirectory), and a
     * link put in the socket's place is not followed. */
    if ((geteuid() == 0 && lchown(path, uid, gid) < 0) || listen(fd, 16) < 0) {
        cfg_err(e, boot, "control_socket", "%s: %s", path, strerror(errno));
        close(fd);
        unlink(path);
        return -1;
    }
    if ((ct->path = strdup(path)) == NULL) {
        close(fd);
        unlink(path);
        return err_nomem(e);
    }
    ct->fd = fd;
    ct->uid = uid;
    return 0;
}

static void reply_add(struct reply *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
reply_add(struct reply *r, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (r->len >= sizeof(r->text) - 1)
        return;
    va_start(ap, fmt);
    n = vsnprintf(r->text + r->len, sizeof(r->text) - r->len, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    r->len += (size_t)n;
    if (r->len >= sizeof(r->text))
        r->len = sizeof(r->text) - 1;
}

/* fmt_time - "2026-12-07 00:12:03 UTC" */
static void
fmt_time(time_t t, char *out, size_t n)
{
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL ||
        strftime(out, n, "%Y-%m-%d %H:%M:%S UTC", &tm) == 0)
        snprintf(out, n, "%lld", (long long)t);
}

/* fmt_age - "3d 4h 5m 6s", largest units first, zeros dropped. */
static void
fmt_age(long long s, char *out, size_t n)
{
    size_t o = 0;

    if (s < 0)
        s = 0;
    out[0] = '\0';
    if (s >= 86400)
        o += (size_t)snprintf(out + o, n - o, "%lldd ", s / 86400);
    if (s >= 3600 && o < n)
        o += (size_t)snprintf(out + o, n - o, "%lldh ", s % 86400 / 3600);
    if (s >= 60 && o < n)
        o += (size_t)snprintf(out + o, n - o, "%lldm ", s % 3600 / 60);
    if (o < n)
        snprintf(out + o, n - o, "%llds", s % 60);
}

/* count_dir - entries of dir not starting with a dot; -1 when it cannot
 * be read. */
static long
count_dir(const char *dir)
{
    struct dirent *de;
    long n = 0;
    DIR *d;

    if ((d = opendir(dir)) == NULL)
        return -1;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* ---- http: the HTTP listener and the message counters /metrics
 * shows */
static void
control_status_http(const struct control *ct, struct reply *r)
{
    const char *const *l;
    size_t n = cfg_list(ct->boot, "http_listen", &l), i;

    if (n > 0) {
        reply_add(r, "http_listen:");
        for (i = 0; i < n; i++)
            reply_add(r, " %s", l[i]);
        reply_add(r, "\n");
    }
    reply_add(r, "messages since start:");
    for (i = 0; i < METRICS_MSG_COUNT; i++)
        reply_add(
            r, "%s %llu %s", i ? "," : "",
            metrics_messages(METRICS_FE_SMTPD, (enum metrics_outcome)i) +
                metrics_messages(METRICS_FE_MILTER, (enum metrics_outcome)i),
            metrics_outcome_name((enum metrics_outcome)i));
    reply_add(r, "\n");
}

static void
control_status(const struct control *ct, struct reply *r)
{
    const char *const *l;
    const struct stage *const *st;
    struct runtime *rt = runtime_hold_current();
    const struct conf *cf = runtime_conf(rt);
    char when[64], age[64], note[RELOAD_NOTE_MAX];
    time_t now = time(NULL), rwhen;
    size_t n, i;
    int rok;

    fmt_time(ct->started, when, sizeof(when));
    fmt_age((long long)(now - ct->started), age, sizeof(age));
    reply_add(r, "status: running\n");
    reply_add(r, "pid: %ld\n", (long)getpid());
    reply_add(r, "version: %s\n", PACKAGE_VERSION);
    reply_add(r, "started: %s (up %s)\n", when, age);
    reply_add(r, "configuration: %s\n", ct->conf_path);
    n = chain_stages(cf->chain, &st);
    reply_add(r, "chain: %zu stage%s%s", n, n == 1 ? "" : "s",
              n > 0 ? ":" : "");
    for (i = 0; i < n; i++) {
        if (strcmp(st[i]->name, st[i]->type->name) == 0)
            reply_add(r, " %s", st[i]->name);
        else
            reply_add(r, " %s (%s)", st[i]->name, st[i]->type->name);
    }
    reply_add(r, "\n");
    n = cfg_list(ct->boot, "smtp_listen", &l);
    if (n > 0) {
        reply_add(r, "smtp_listen:");
        for (i = 0; i < n; i++)
            reply_add(r, " %s", l[i]);
        reply_add(r, " (%u session%s open)\n", smtpd_server_active(ct->srv),
                  smtpd_server_active(ct->srv) == 1 ? "" : "s");
    }
    if (cfg_str(ct->boot, "milter_listen") != NULL)
        reply_add(r, "milter_listen: %s\n",
                  cfg_str(ct->boot, "milter_listen"));
    control_status_http(ct, r); /* ---- http */
    if (ct->queue_mode) {
        char sub[PATH_MAX + 8];
        long active, held;

        snprintf(sub, sizeof(sub), "%s/queue", ct->queue_dir);
        active = count_dir(sub);
        snprintf(sub, sizeof(sub), "%s/hold", ct->queue_dir);
        held = count_dir(sub);
        reply_add(r, "delivery: queue, %s\n", ct->queue_dir);
        if (active < 0)
            reply_add(r, "queue: cannot read %s/queue: %s\n", ct->queue_dir,
                      strerror(errno));
        else
            reply_add(r, "queue: %ld message%s, %ld on hold\n", active,
                      active == 1 ? "" : "s", held < 0 ? 0 : held);
    } else if (cfg_list(ct->boot, "smtp_listen", &l) > 0) {
        reply_add(r, "delivery: through\n");
    }
    /* ---- events: the writer's backlog */
    if (ct->spool != NULL && queue_events(ct->spool) != NULL) {
        struct events_stats es;

        events_stats(queue_events(ct->spool), &es);
        reply_add(r,
                  "events: store %s, %zu buffered, %zu spooled, %llu "
                  "written, %llu replayed, %llu lost%s%s\n",
                  es.store_ok ? "ok" : "failing", es.buffered, es.spooled,
                  es.written, es.replayed, es.lost,
                  es.last_error[0] ? ": " : "", es.last_error);
    }
    /* ---- verp: what came back to verp_domain and fbl_address */
    if (ct->spool != NULL && queue_events(ct->spool) != NULL &&
        (cfg_raw(ct->boot, "verp_domain") != NULL ||
         cfg_raw(ct->boot, "fbl_address") != NULL)) {
        struct events_inbound_counts ic;

        events_inbound_counts(queue_events(ct->spool), &ic);
        reply_add(r,
                  "returned: %llu bounces, %llu complaints, %llu "
                  "auto-replies, %llu other, %llu forged tokens, %llu "
                  "unmatched\n",
                  ic.bounces, ic.complaints, ic.autoreplies, ic.other,
                  ic.forged, ic.unmatched);
    }
    /* ---- end verp */
    n = chain_stages(cf->chain, &st);
    for (i = 0; i < n; i++) {
        struct flt_antivirus_info av;

        if (flt_antivirus_info(st[i], &av) < 0)
            continue;
        if (av.clamd != NULL) {
            reply_add(r, "%s: clamd at %s\n", st[i]->name, av.clamd);
        } else if (!av.loaded) {
            reply_add(r,
                      "%s: no database loaded from %s (mail is "
                      "tempfailed)\n",
                      st[i]->name, av.database_directory);
        } else if (av.version > 0 && av.built > 0) {
            fmt_time((time_t)av.built, when, sizeof(when));
            fmt_age((long long)now - av.built, age, sizeof(age));
            reply_add(r,
                      "%s: database version %lld of %s (%s old), %u "
                      "signatures, %s\n",
                      st[i]->name, av.version, when, age, av.signatures,
                      av.database_directory);
        } else {
            /* Signature files without a daily.cvd carry no version. */
            reply_add(r, "%s: database without a version, %u signatures, %s\n",
                      st[i]->name, av.signatures, av.database_directory);
        }
    }
    runtime_release(rt);
    reload_last(&rwhen, &rok, note, sizeof(note));
    if (rwhen == 0) {
        reply_add(r, "last reload: none since start\n");
    } else {
        fmt_time(rwhen, when, sizeof(when));
        reply_add(r, "last reload: %s, %s: %s\n", when, rok ? "ok" : "failed",
                  note);
    }
}

/* control_read_line - one command line within the deadline; returns its
 * length, or -1 (too long, closed early, too slow). */
static int
control_read_line(int fd, char *line, size_t max)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    time_t until = time(NULL) + CONTROL_TIMEOUT_S;
    size_t len = 0;
    ssize_t n;

    while (len < max) {
        time_t left = until - time(NULL);

        if (left <= 0 || poll(&p, 1, (int)left * 1000) <= 0)
            return -1;
        n = read(fd, line + len, max - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        len += (size_t)n;
        if (memchr(line, '\n', len) != NULL) {
            len = (size_t)((char *)memchr(line, '\n', len) - line);
            if (len > 0 && line[len - 1] == '\r')
                len--;
            line[len] = '\0';
            return (int)len;
        }
    }
    return -1;
}

static void
control_write(int fd, const char *p, size_t len)
{
    ssize_t n;

    while (len > 0) {
        n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        p += n;
        len -= (size_t)n;
    }
}

static void
control_serve(struct control *ct, int fd, struct reply *rp)
{
    struct timeval tv = {.tv_sec = CONTROL_TIMEOUT_S};
    char line[CONTROL_LINE_MAX + 1], note[RELOAD_NOTE_MAX];
    struct ucred cred;
    socklen_t clen = sizeof(cred);

    rp->len = 0;
    rp->text[0] = '\0';
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &clen) < 0 ||
        (cred.uid != 0 && cred.uid != ct->uid)) {
        log_warning(NULL, "control: refused a client with uid %ld",
                    clen == sizeof(cred) ? (long)cred.uid : -1L);
        reply_add(rp, "error: permission denied\n");
    } else if (control_read_line(fd, line, CONTROL_LINE_MAX) < 0) {
        reply_add(rp,
                  "error: one command line of at most %d octets "
                  "within %d s: status or reload\n",
                  CONTROL_LINE_MAX, CONTROL_TIMEOUT_S);
    } else if (strcmp(line, "status") == 0) {
        control_status(ct, rp);
    } else if (strcmp(line, "reload") == 0) {
        int rc;

        log_info(NULL, "reload requested on the control socket (uid %ld)",
                 (long)cred.uid);
        rc = reload_wait(reload_request(0), CONTROL_RELOAD_WAIT_S, note,
                         sizeof(note));
        if (rc == 1)
            reply_add(rp, "ok: %s\n", note);
        else if (rc == 0)
            reply_add(rp, "failed: %s\n", note);
        else
            reply_add(rp,
                      "failed: the reload did not finish within %d s "
                      "(or relaychaind is stopping); see the log\n",
                      CONTROL_RELOAD_WAIT_S);
    } else {
        reply_add(rp, "error: unknown command (status, reload)\n");
    }
    control_write(fd, rp->text, rp->len);
    /* Closing with unread input would reset the connection and could
     * throw the reply away before the client reads it: take what is left
     * of the client's input, a bounded amount within a second. */
    if (shutdown(fd, SHUT_WR) == 0) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        struct timespec t0, t;
        size_t drained = 0;
        ssize_t n = 1;
        long ms = 0;

        clock_gettime(CLOCK_MONOTONIC, &t0);
        while (n > 0 && drained < CONTROL_REPLY_MAX && ms < 1000 &&
               poll(&p, 1, (int)(1000 - ms)) > 0) {
            n = read(fd, line, sizeof(line));
            drained += n > 0 ? (size_t)n : 0;
            clock_gettime(CLOCK_MONOTONIC, &t);
            ms = (t.tv_sec - t0.tv_sec) * 1000 +
                 (t.tv_nsec - t0.tv_nsec) / 1000000;
        }
    }
}

static void *
control_client_thread(void *p)
{
    struct control_client *cc = p;
    struct control *ct = cc->ct;
    struct reply *rp;

    if ((rp = malloc(sizeof(*rp))) != NULL)
        control_serve(ct, cc->fd, rp);
    close(cc->fd);
    free(rp);
    free(cc);
    pthread_mutex_lock(&ct->lock);
    ct->clients--;
    pthread_cond_broadcast(&ct->idle);
    pthread_mutex_unlock(&ct->lock);
    return NULL;
}

/* control_accept - a thread for the client on fd, unless
 * CONTROL_CLIENTS_MAX are served already (then one "busy" line). */
static void
control_accept(struct control *ct, int fd, pthread_attr_t *attr)
{
    static const char busy[] = "error: busy, try again\n";
    struct control_client *cc = NULL;
    pthread_t tid;

    pthread_mutex_lock(&ct->lock);
    if (ct->clients < CONTROL_CLIENTS_MAX &&
        (cc = malloc(sizeof(*cc))) != NULL) {
        ct->clients++;
        cc->ct = ct;
        cc->fd = fd;
    }
    pthread_mutex_unlock(&ct->lock);
    if (cc != NULL &&
        pthread_create(&tid, attr, control_client_thread, cc) == 0)
        return;
    if (cc != NULL) {
        free(cc);
        pthread_mutex_lock(&ct->lock);
        ct->clients--;
        pthread_mutex_unlock(&ct->lock);
    }
    (void)send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    close(fd);
}

static void *
control_thread(void *p)
{
    struct control *ct = p;
    struct pollfd pfd[2];
    pthread_attr_t attr;
    int fd;

    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, SESSION_STACK);

    pfd[0].fd = ct->fd;
    pfd[0].events = POLLIN;
    pfd[1].fd = ct->stop[0];
    pfd[1].events = POLLIN;
    for (;;) {
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_error(NULL, "control: poll: %s", strerror(errno));
            break;
        }
        if (pfd[1].revents != 0)
            break;
        if (!(pfd[0].revents & POLLIN))
            continue;
        if ((fd = accept4(ct->fd, NULL, NULL, SOCK_CLOEXEC)) < 0) {
            if (errno == EMFILE || errno == ENFILE)
                usleep(100000);
            continue;
        }
        control_accept(ct, fd, &attr);
    }
    pthread_attr_destroy(&attr);
    return NULL;
}

int
control_start(struct control *ct, struct err *e)
{
    pthread_mutex_init(&ct->lock, NULL);
    pthread_cond_init(&ct->idle, NULL);
    if (pipe2(ct->stop, O_CLOEXEC) < 0)
        return err_sys(e, ERR_IO, "control: pipe");
    if ((errno = pthread_create(&ct->tid, NULL, control_thread, ct)) != 0)
        return err_sys(e, ERR_TEMP, "cannot start the control thread");
    ct->running = 1;
    return 0;
}

void
control_stop(struct control *ct)
{
    char one = 'x';

    if (ct->running) {
        (void)!write(ct->stop[1], &one, 1);
        pthread_join(ct->tid, NULL);
        close(ct->stop[0]);
        close(ct->stop[1]);
        /* Each client ends within its deadlines; one waiting for a
         * reload has been told the daemon stops (reload_request). */
        pthread_mutex_lock(&ct->lock);
        while (ct->clients > 0)
            pthread_cond_wait(&ct->idle, &ct->lock);
        pthread_mutex_unlock(&ct->lock);
        pthread_cond_destroy(&ct->idle);
        pthread_mutex_destroy(&ct->lock);
    }
    if (ct->fd >= 0) {
        close(ct->fd);
        /* The directory may not be ours to write in; the next start
         * removes the socket then. */
        (void)unlink(ct->path);
    }
    free(ct->path);
}
