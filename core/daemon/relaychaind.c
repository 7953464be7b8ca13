/*
 * relaychaind - the relay daemon
 *
 *     relaychaind [-c FILE] [-f]
 *
 * Start-up, in this order: the signals below are blocked (before any
 * thread exists, so no thread -- libmilter's, the queue's, or one a stage
 * starts, such as the antivirus database watcher -- ever takes them with
 * their default action) and the umask set to 027; without -f the
 * process forks, and the parent waits until the daemon is ready or has
 * failed and exits with its status, so start-up errors reach the
 * terminal; the main file is read; started as root without user (and
 * without run_as_root = yes) the daemon refuses to run; the SMTP and
 * milter listeners and the control socket are made, privileges dropped,
 * and only then is the chain loaded, as the user, exactly as every
 * reload loads it. Then it accepts connections, one thread per session
 * with a small stack (no fixed pool caps concurrency; max_connections
 * does). Signals are taken synchronously through a signalfd in the
 * accept loop:
 *
 *   SIGUSR1  reload: a new configuration and chain are built beside the
 *            running ones and swapped in; sessions finish on what they
 *            started with; a bad configuration is logged and ignored.
 *            With delivery = queue the queue's settings (backoff times,
 *            next_hop, transport_map, delivery_concurrency...) are built
 *            on the same thread and swapped in with them: the attempts
 *            that start afterwards use them (queue_settings_apply).
 *            queue_directory and a change of delivery need a restart.
 *   SIGTERM, SIGINT  stop accepting, let transactions in flight finish
 *            (at most shutdown_timeout), exit 0.
 *
 * The control socket (control_socket) takes "status" and "reload" from
 * "relaychain status" and "relaychain reload"; its reload is the one
 * SIGUSR1 asks for, and its client hears the outcome ("file:line:
 * reason" when it failed), which status repeats until the next reload.
 *
 * With milter_listen set, the milter front end (milterd) runs beside the
 * SMTP listeners or alone, on libmilter's own threads. libmilter then
 * takes SIGTERM, SIGHUP and SIGINT itself; when it stops, its thread
 * writes to a pipe this loop polls, and the daemon stops as on SIGTERM.
 * SIGUSR1 stays here: milter connections take the current runtime when
 * they open, as SMTP sessions do.
 *
 * With -f the daemon stays in the foreground (systemd's Type=simple, the
 * tests): when its stderr is systemd's journal it logs to syslog all the
 * same, so lines keep facility mail and their priority; on a terminal to
 * stderr with time stamps, elsewhere to stderr (log_sink_foreground).
 * Without -f it detaches and logs to syslog, or to maillog_file. This file and
 * core/cli/relaychain.c are the only places with process-wide state: the
 * current runtime, guarded by a mutex, and the reloader's requests and last
 * outcome, guarded by another.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "filters/filters.h"
#include "chain/conf.h"
#include "chain/runtime.h"
#include "util/log.h"
#include "util/memlimit.h"
#include "msg/mime.h"
#include "milterd/milterd.h"
#include "net/notice.h"
#include "milterd/milterd_conf.h"
#include "net/smtpc_conf.h"
#include "queue/quarantine.h"
#include "queue/queue.h"
#include "queue/queue_conf.h"
#include "smtpd/smtpd.h"
#include "smtpd/smtpd_conf.h"

#define LISTEN_MAX 16
#define LISTEN_BACKLOG 4096
#define SESSION_STACK (512 * 1024)

/* The layers whose keys relaychain.conf holds, lowest first (a part's
 * check may read the keys of those before it): the same list as the
 * commands' (core/cli/parts.c), so "relaychain check" refuses what the
 * daemon would. */
static const struct conf_part *const daemon_parts[] = {
    &smtpc_conf_part,
    &queue_conf_part,
    &smtpd_conf_part,
    &milterd_conf_part,
    NULL,
};

/* What each runtime holds besides the configuration: the SMTP front
 * end's part (also without SMTP listeners, as "relaychain check" builds
 * it). The milter front end needs none. */
static const struct runtime_part_type *const daemon_runtime_parts[] = {
    &smtpd_runtime_type,
    NULL,
};

static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;
static struct runtime *current;

struct session_arg {
    struct smtpd_server *srv;
    struct runtime *rt;
    int fd;
    struct sockaddr_storage peer;
    socklen_t len;
};

static void
usage(FILE *fp)
{
    fprintf(fp, "usage: relaychaind [-c FILE] [-f]\n"
                "\n"
                "  -c FILE  configuration (default " CONF_DEFAULT_PATH ")\n"
                "  -f       stay in the foreground, log to stderr\n"
                "  -V       print the version\n");
}

static struct runtime *
runtime_hold_current(void)
{
    struct runtime *rt;

    pthread_mutex_lock(&current_lock);
    rt = current;
    runtime_hold(rt);
    pthread_mutex_unlock(&current_lock);
    return rt;
}

static struct runtime *
runtime_load(const char *path, struct err *e)
{
    struct conf *cf;

    if ((cf = conf_load(path, daemon_parts, e)) == NULL)
        return NULL;
    return runtime_new(cf, daemon_runtime_parts, e);
}

/* listen_one - bind "host:port" or "[v6]:port"; returns the socket. */
static int
listen_one(const char *spec, struct err *e)
{
    struct addrinfo hints, *res = NULL;
    char host[256], port[16];
    const char *colon;
    int fd = -1, one = 1, rc;

    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');

        if (close == NULL || close[1] != ':' ||
            (size_t)(close - spec - 1) >= sizeof(host))
            return err_set(e, ERR_CONFIG, "smtp_listen: bad address '%s'",
                           spec);
        memcpy(host, spec + 1, (size_t)(close - spec - 1));
        host[close - spec - 1] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(spec, ':');
        if (colon == NULL || (size_t)(colon - spec) >= sizeof(host))
            return err_set(e, ERR_CONFIG, "smtp_listen: '%s' is not host:port",
                           spec);
        memcpy(host, spec, (size_t)(colon - spec));
        host[colon - spec] = '\0';
    }
    if (snprintf(port, sizeof(port), "%s", colon + 1) >= (int)sizeof(port) ||
        port[0] == '\0')
        return err_set(e, ERR_CONFIG, "smtp_listen: bad port in '%s'", spec);
    memset(&hints, 0, sizeof(hints));
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    if ((rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res)) != 0)
        return err_set(e, ERR_CONFIG, "smtp_listen: %s: %s", spec,
                       gai_strerror(rc));
    fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC,
                res->ai_protocol);
    if (fd < 0) {
        err_sys(e, ERR_IO, "smtp_listen: %s: socket", spec);
        goto fail;
    }
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (res->ai_family == AF_INET6)
        (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0) {
        err_sys(e, ERR_IO, "smtp_listen: bind %s", spec);
        goto fail;
    }
    if (listen(fd, LISTEN_BACKLOG) < 0) {
        err_sys(e, ERR_IO, "smtp_listen: listen %s", spec);
        goto fail;
    }
    freeaddrinfo(res);
    return fd;
fail:
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    return -1;
}

static int
drop_privileges(const char *user, const char *group, struct err *e)
{
    struct passwd *pw;
    struct group *gr;
    gid_t gid;

    if (user == NULL)
        return 0;
    if ((pw = getpwnam(user)) == NULL)
        return err_set(e, ERR_CONFIG, "user %s: no such user", user);
    gid = pw->pw_gid;
    if (group != NULL) {
        if ((gr = getgrnam(group)) == NULL)
            return err_set(e, ERR_CONFIG, "group %s: no such group", group);
        gid = gr->gr_gid;
    }
    if (getuid() == pw->pw_uid && getgid() == gid)
        return 0;
    if (setgroups(1, &gid) < 0 || setgid(gid) < 0 || setuid(pw->pw_uid) < 0)
        return err_sys(e, ERR_IO, "cannot run as %s", user);
    if (setuid(0) == 0)
        return err_set(e, ERR_INTERNAL, "could regain root after setuid");
    return 0;
}

static void *
session_thread(void *p)
{
    struct session_arg *a = p;

    smtpd_session_run(a->srv, a->rt, a->fd, (struct sockaddr *)&a->peer,
                      a->len);
    runtime_release(a->rt);
    free(a);
    return NULL;
}

static void
accept_one(struct smtpd_server *srv, int lfd, pthread_attr_t *attr)
{
    struct session_arg *a;
    pthread_t tid;
    int fd;

    if ((a = calloc(1, sizeof(*a))) == NULL)
        return;
    a->len = sizeof(a->peer);
    fd = accept4(lfd, (struct sockaddr *)&a->peer, &a->len, SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
            log_warning(NULL, "accept: %s", strerror(errno));
        if (errno == EMFILE || errno == ENFILE)
            usleep(100000); /* let sessions close before trying again */
        free(a);
        return;
    }
    a->srv = srv;
    a->fd = fd;
    a->rt = runtime_hold_current();
    if (pthread_create(&tid, attr, session_thread, a) != 0) {
        log_warning(NULL, "cannot start a session thread: %s",
                    strerror(errno));
        close(fd);
        runtime_release(a->rt);
        free(a);
    }
}

/* What the reloader needs: the configuration file and the spool (NULL
 * unless delivery = queue), whose settings are reloaded with the rest. */
struct reload_arg {
    const char *path;
    struct queue *spool;
    const struct cfg *boot; /* what the start bound and became */
};

/* reload_restart_keys - the keys of the main file that only a restart
 * applies, named in note (at most n) when cfg changed one. */
static void
reload_restart_keys(const struct cfg *boot, const struct cfg *cfg, char *note,
                    size_t n)
{
    static const char *const keys[] = {
        "smtp_listen",         "milter_listen",  "milter_socket_mode",
        "milter_socket_group", "user",           "group",
        "run_as_root",         "control_socket", "syslog_name",
        "syslog_facility",
    };
    size_t i, o = 0;

    note[0] = '\0';
    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const char *a = cfg_raw(boot, keys[i]), *b = cfg_raw(cfg, keys[i]);

        if ((a == NULL) == (b == NULL) && (a == NULL || strcmp(a, b) == 0))
            continue;
        log_warning(NULL, "%s changed; restart relaychaind to use it",
                    keys[i]);
        if (o < n)
            o += (size_t)snprintf(note + o, n - o,
                                  "; %s changed: restart "
                                  "relaychaind to use it",
                                  keys[i]);
    }
}

/* reload - build the configuration again and swap it in. Returns 0 with
 * what was done in note, or -1 with "file:line: reason" in e, the
 * running configuration kept. */
static int
reload(const struct reload_arg *ra, char *note, size_t notelen, struct err *e)
{
    const char *path = ra->path;
    struct runtime *rt, *old;
    struct queue_settings *qs = NULL;
    const struct stage *const *st;
    const struct cfg *cfg;
    const char *restart = "";
    char keys[512];
    size_t n;

    if ((rt = runtime_load(path, e)) == NULL)
        return -1;
    /* The queue's new settings are built here too, before anything is
     * swapped: a bad transport_map keeps the whole old configuration. */
    cfg = runtime_conf(rt)->cfg;
    if ((ra->spool != NULL) != (queue_delivery(cfg) == QUEUE_DELIVERY_QUEUE)) {
        log_warning(NULL, "delivery changed; restart relaychaind to use it");
        restart = "; delivery changed: restart relaychaind to use it";
    } else if (ra->spool != NULL &&
               (qs = queue_settings_load(ra->spool, cfg, e)) == NULL) {
        runtime_release(rt);
        return -1;
    }
    pthread_mutex_lock(&current_lock);
    old = current;
    current = rt;
    pthread_mutex_unlock(&current_lock);
    runtime_release(old);
    if (qs != NULL)
        queue_settings_apply(ra->spool, qs);
    reload_restart_keys(ra->boot, cfg, keys, sizeof(keys));
    n = chain_stages(runtime_conf(rt)->chain, &st);
    snprintf(note, notelen, "configuration %s, chain of %zu stage(s)%s%s",
             path, n, restart, keys);
    log_info(NULL, "reload: configuration %s, chain of %zu stage(s)", path, n);
    return 0;
}

/* The reloader: one thread that builds new configurations, so compiling
 * a large chain (a virus database takes seconds) never stops the accept
 * loop. Requests that arrive while it works are folded into one more
 * reload after it, so the last SIGUSR1 always takes effect.
 *
 * SIGUSR1 and "relaychain reload" on the control socket both come here.
 * Each reload is numbered when it starts; a requester that must hear the
 * outcome waits until the reload numbered after the ones already started
 * has finished, which is the first to read the files after its request.
 * The outcome of the last reload is kept for "relaychain status". */
#define RELOAD_NOTE_MAX (ERR_TEXT_MAX + 128)

static pthread_mutex_t reload_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reload_cond = PTHREAD_COND_INITIALIZER;
static pthread_cond_t reload_done_cond = PTHREAD_COND_INITIALIZER;
static unsigned reload_requests;
static int reload_quit;
static unsigned long reload_started, reload_finished;
static time_t reload_when; /* 0: no reload yet */
static int reload_ok;
static char reload_note[RELOAD_NOTE_MAX];

static void *
reload_thread(void *p)
{
    const struct reload_arg *ra = p;
    char note[RELOAD_NOTE_MAX];
    struct err e;
    int rc;

    pthread_mutex_lock(&reload_lock);
    for (;;) {
        while (reload_requests == 0 && !reload_quit)
            pthread_cond_wait(&reload_cond, &reload_lock);
        if (reload_quit)
            break;
        reload_requests = 0;
        reload_started++;
        pthread_mutex_unlock(&reload_lock);
        err_clear(&e);
        note[0] = '\0';
        if ((rc = reload(ra, note, sizeof(note), &e)) < 0)
            log_error(NULL,
                      "reload failed, keeping the running configuration: %s",
                      e.text);
        pthread_mutex_lock(&reload_lock);
        reload_finished = reload_started;
        reload_when = time(NULL);
        reload_ok = rc == 0;
        snprintf(reload_note, sizeof(reload_note), "%s",
                 rc == 0 ? note : e.text);
        pthread_cond_broadcast(&reload_done_cond);
    }
    /* Whoever still waits hears that no reload will come. */
    pthread_cond_broadcast(&reload_done_cond);
    pthread_mutex_unlock(&reload_lock);
    return NULL;
}

/* reload_request - ask for a reload (or, with quit, end the reloader);
 * returns the number of the reload that will answer the request. */
static unsigned long
reload_request(int quit)
{
    unsigned long want;

    pthread_mutex_lock(&reload_lock);
    if (quit) {
        reload_quit = 1;
        /* A client waiting for a reload hears at once that the daemon
         * is stopping. */
        pthread_cond_broadcast(&reload_done_cond);
    } else {
        reload_requests++;
    }
    want = reload_started + 1;
    pthread_cond_signal(&reload_cond);
    pthread_mutex_unlock(&reload_lock);
    return want;
}

/* reload_wait - wait at most wait_s seconds for reload number want;
 * returns 1 (done: ok, note filled), 0 (failed: note filled) or -1
 * (still running, or the daemon is stopping). */
static int
reload_wait(unsigned long want, int wait_s, char *note, size_t n)
{
    struct timespec until;
    int rc = -1;

    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += wait_s;
    pthread_mutex_lock(&reload_lock);
    while (reload_finished < want && !reload_quit)
        if (pthread_cond_timedwait(&reload_done_cond, &reload_lock, &until) ==
            ETIMEDOUT)
            break;
    if (reload_finished >= want) {
        rc = reload_ok;
        snprintf(note, n, "%s", reload_note);
    }
    pthread_mutex_unlock(&reload_lock);
    return rc;
}

/* ------------------------------------------------------------ control */

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

struct control {
    int fd;      /* listening */
    int stop[2]; /* a byte here ends the control thread */
    char *path;  /* removed at exit */
    uid_t uid;   /* the daemon's user, besides root */
    pthread_t tid;
    int running;
    /* for status */
    time_t started;
    const char *conf_path;
    const struct cfg *boot; /* the listeners bound at start */
    struct smtpd_server *srv;
    int queue_mode;
    char queue_dir[PATH_MAX];
    /* clients served now, each on a thread of its own */
    pthread_mutex_t lock;
    pthread_cond_t idle;
    unsigned clients;
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
static int
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
    pthread_mutex_lock(&reload_lock);
    rwhen = reload_when;
    rok = reload_ok;
    snprintf(note, sizeof(note), "%s", reload_note);
    pthread_mutex_unlock(&reload_lock);
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

static int
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

static void
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

/* ------------------------------------------------------------- start */

/* detach - without -f: fork, and let the parent wait until the child is
 * ready (it writes one byte to *ready_fd) or has failed (the pipe closes
 * and the parent returns its exit status), so "relaychaind" exits non-
 * zero when the daemon does not start, and the start-up errors reach the
 * terminal. The fork comes before any thread exists: fork keeps only
 * the calling thread, and stages start threads of their own when they
 * load. Returns -1 in the child, else the parent's exit status. */
static int
detach(int *ready_fd)
{
    int p[2], status;
    sigset_t none;
    ssize_t n;
    char c;
    pid_t pid;

    if (pipe2(p, O_CLOEXEC) < 0) {
        fprintf(stderr, "relaychaind: pipe: %s\n", strerror(errno));
        return 1;
    }
    if ((pid = fork()) < 0) {
        fprintf(stderr, "relaychaind: fork: %s\n", strerror(errno));
        return 1;
    }
    if (pid == 0) {
        close(p[0]);
        (void)setsid();
        *ready_fd = p[1];
        return -1;
    }
    close(p[1]);
    /* The parent takes signals again: Ctrl-C leaves a slow start to run
     * on in the background. */
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    do
        n = read(p[0], &c, 1);
    while (n < 0 && errno == EINTR);
    if (n == 1)
        return 0; /* ready: the child runs on */
    if (waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
        WEXITSTATUS(status) != 0)
        return WEXITSTATUS(status);
    return 1;
}

/* detach_done - in the child: tell the parent, leave the terminal. */
static void
detach_done(int ready_fd)
{
    int fd;

    if (ready_fd < 0)
        return;
    (void)!write(ready_fd, "r", 1);
    close(ready_fd);
    if ((fd = open("/dev/null", O_RDWR)) >= 0) {
        (void)dup2(fd, STDIN_FILENO);
        (void)dup2(fd, STDOUT_FILENO);
        (void)dup2(fd, STDERR_FILENO);
        if (fd > STDERR_FILENO)
            close(fd);
    }
    (void)!chdir("/");
}

/* boot_load - the main file alone, for what is done before privileges
 * are dropped (listeners, user, control socket, logging); the chain is
 * loaded afterwards, as the user, as every reload does. */
static struct conf *
boot_load(const char *path, struct err *e)
{
    /* What the listeners, the user and the sockets need is checked
     * before they are made, as "relaychain check" checks it. */
    return conf_load_flags(path, daemon_parts, CONF_LOAD_MAIN, e);
}

/* root_check - started as root: refuse to keep root unless the admin
 * asked for it with run_as_root = yes. */
static int
root_check(const struct cfg *boot, struct err *e)
{
    const char *user = cfg_str(boot, "user");
    struct passwd *pw;

    if (geteuid() != 0 || cfg_bool(boot, "run_as_root"))
        return 0;
    if (user == NULL)
        return err_set(e, ERR_CONFIG,
                       "%s: started as root and 'user' is not set: set user "
                       "= an unprivileged account (relaychain), or "
                       "run_as_root = yes to run as root on purpose",
                       cfg_path(boot));
    if ((pw = getpwnam(user)) != NULL && pw->pw_uid == 0)
        return cfg_err(e, boot, "user",
                       "%s is root: name an unprivileged account, or set "
                       "run_as_root = yes to run as root on purpose",
                       user);
    return 0;
}

/* user_ids - the uid and gid the daemon will run as. */
static int
user_ids(const struct cfg *boot, uid_t *uid, gid_t *gid, struct err *e)
{
    const char *user = cfg_str(boot, "user"), *group = cfg_str(boot, "group");
    struct passwd *pw;
    struct group *gr;

    *uid = geteuid();
    *gid = getegid();
    if (user == NULL)
        return 0;
    if ((pw = getpwnam(user)) == NULL)
        return cfg_err(e, boot, "user", "%s: no such user", user);
    *uid = pw->pw_uid;
    *gid = pw->pw_gid;
    if (group != NULL) {
        if ((gr = getgrnam(group)) == NULL)
            return cfg_err(e, boot, "group", "%s: no such group", group);
        *gid = gr->gr_gid;
    }
    return 0;
}

/* The stage types relaychaind offers and the services it lends them. */
static struct stage_registry registry;

int
main(int argc, char **argv)
{
    const char *path = CONF_DEFAULT_PATH;
    char abspath[PATH_MAX];
    struct pollfd pfd[LISTEN_MAX + 2];
    struct milterd *md = NULL;
    pthread_t reloader;
    struct reload_arg ra;
    struct queue *spool = NULL;
    struct control ct;
    struct conf *boot_conf;
    const struct cfg *boot;
    int mpipe[2] = {-1, -1};
    sigset_t sfd_sigs;
    const char *const *listen_specs;
    struct smtpd_server *srv;
    struct memlimit *mem = NULL;
    const struct cfg *cfg;
    pthread_attr_t attr;
    sigset_t sigs;
    size_t nlisten, nbound = 0, i;
    int foreground = 0, c, sfd, stop = 0, ready_fd = -1, fac, rc, left = 0;
    uid_t uid;
    gid_t gid;
    struct err e;

#ifdef M_MMAP_THRESHOLD
    /* Messages are large blocks: give each its own mapping, so the
     * DATA buffer grows by mremap without a copy and a message's memory
     * goes back to the system when it is freed. glibc would otherwise
     * raise this threshold to the size of the first message freed and
     * serve later ones from its arenas, where growing copies and freed
     * memory stays resident (scripts/bench/memory: peak 0.8 instead of
     * 1.2 times the octets in flight with an empty chain). */
    mallopt(M_MMAP_THRESHOLD, 256 * 1024);
#endif
    while ((c = getopt(argc, argv, "c:fhV")) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'f':
            foreground = 1;
            break;
        case 'V':
            printf("relaychaind %s\n", PACKAGE_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 1;
    }
    registry = flt_registry;
    notice_env(&registry.env);
    registry_set(&registry);
    /* Files the daemon makes (spool, quarantine, sockets) are never
     * world-readable, whatever umask it was started with. */
    umask(027);
    /* Blocked before any thread exists, so every thread -- libmilter's,
     * the queue's, and those a stage starts when it loads, such as the
     * antivirus database watcher -- inherits the mask, and the signals
     * reach only the signalfd below (and libmilter's sigwait). A thread
     * with them unblocked would take SIGUSR1 or SIGTERM with the default
     * action: the process killed without a word. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGUSR1);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Reloads read the file again after the daemon left its directory. */
    if (realpath(path, abspath) == NULL) {
        fprintf(stderr, "relaychaind: %s: %s\n", path, strerror(errno));
        return 1;
    }
    path = abspath;
    if (!foreground && (rc = detach(&ready_fd)) >= 0)
        return rc;
    err_clear(&e);
    memset(&ct, 0, sizeof(ct));
    ct.fd = -1;
    ct.started = time(NULL);
    ct.conf_path = path;
    if ((boot_conf = boot_load(path, &e)) == NULL) {
        fprintf(stderr, "relaychaind: %s\n", e.text);
        return 1;
    }
    boot = boot_conf->cfg;
    /* Logging is chosen once, before any thread starts; a bad facility
     * is reported with its line when the configuration loads below. */
    if ((fac = log_facility_parse(cfg_str(boot, "syslog_facility"))) < 0)
        fac = LOG_MAIL;
    if (foreground || cfg_str(boot, "maillog_file") == NULL ||
        log_open_file(cfg_str(boot, "syslog_name"),
                      cfg_str(boot, "maillog_file")) < 0) {
        int saved = errno;

        log_open(cfg_str(boot, "syslog_name"), fac,
                 foreground ? log_sink_foreground() : LOG_SINK_SYSLOG);
        if (!foreground && cfg_str(boot, "maillog_file") != NULL)
            log_error(NULL, "maillog_file %s: %s; logging to syslog",
                      cfg_str(boot, "maillog_file"), strerror(saved));
    }
    mime_init();
    if (root_check(boot, &e) < 0 || user_ids(boot, &uid, &gid, &e) < 0) {
        fprintf(stderr, "relaychaind: %s\n", e.text);
        goto fail;
    }
    nlisten = cfg_list(boot, "smtp_listen", &listen_specs);
    if (nlisten == 0 && cfg_str(boot, "milter_listen") == NULL) {
        fprintf(stderr,
                "relaychaind: %s: neither smtp_listen nor "
                "milter_listen is set: nothing to listen on\n",
                path);
        goto fail;
    }
    if (nlisten > LISTEN_MAX) {
        fprintf(stderr, "relaychaind: at most %d listeners\n", LISTEN_MAX);
        goto fail;
    }
    for (i = 0; i < nlisten; i++) {
        if ((pfd[i].fd = listen_one(listen_specs[i], &e)) < 0) {
            fprintf(stderr, "relaychaind: %s\n", e.text);
            goto fail;
        }
        pfd[i].events = POLLIN;
        nbound++;
    }
    /* The milter socket, like the SMTP ones, is made before privileges
     * are dropped (a socket inside Postfix's queue directory, chown). */
    if (cfg_str(boot, "milter_listen") != NULL &&
        ((md = milterd_open(boot, &e)) == NULL ||
         pipe2(mpipe, O_CLOEXEC) < 0)) {
        fprintf(stderr, "relaychaind: %s\n",
                md == NULL ? e.text : strerror(errno));
        goto fail;
    }
    if (control_open(&ct, boot, uid, gid, &e) < 0 ||
        drop_privileges(cfg_str(boot, "user"), cfg_str(boot, "group"), &e) <
            0) {
        fprintf(stderr, "relaychaind: %s\n", e.text);
        goto fail;
    }
    /* The chain, its keys and databases are read as the user, as every
     * reload reads them: a key only root can read stops the start here
     * instead of failing each reload later. */
    if ((current = runtime_load(path, &e)) == NULL) {
        fprintf(stderr, "relaychaind: %s\n", e.text);
        goto fail;
    }
    cfg = runtime_conf(current)->cfg;
    /* delivery = queue: the spool's directories and lock are taken here,
     * so a problem is told where the admin looks. */
    if (queue_delivery(cfg) == QUEUE_DELIVERY_QUEUE &&
        (spool = queue_open(cfg, &e)) == NULL) {
        fprintf(stderr, "relaychaind: %s\n", e.text);
        goto fail;
    }
    /* The SMTP front end keeps quarantined mail itself: a directory
     * it could not write to would turn every held message into a 451. */
    if (nlisten > 0 &&
        quarantine_dir_prepare(cfg_str(cfg, "quarantine_directory"), &e) < 0) {
        fprintf(stderr, "relaychaind: %s\n", e.text);
        goto fail;
    }
    /* With a milter, libmilter's own thread takes SIGTERM, SIGHUP and
     * SIGINT (sigwait) and ends smfi_main(); the daemon keeps SIGUSR1. */
    sfd_sigs = sigs;
    if (md != NULL) {
        sigemptyset(&sfd_sigs);
        sigaddset(&sfd_sigs, SIGUSR1);
    }
    if ((sfd = signalfd(-1, &sfd_sigs, SFD_CLOEXEC)) < 0) {
        fprintf(stderr, "relaychaind: signalfd: %s\n", strerror(errno));
        goto fail;
    }
    pfd[nlisten].fd = sfd;
    pfd[nlisten].events = POLLIN;
    pfd[nlisten + 1].fd = mpipe[0];
    pfd[nlisten + 1].events = POLLIN;
    /* One count of message octets in memory for both front ends, so
     * smtpd_memory_limit holds for the process as a whole. */
    if ((mem = memlimit_new(&e)) == NULL) {
        fprintf(stderr, "relaychaind: %s\n", e.text);
        goto fail;
    }
    if (md != NULL)
        milterd_set_memlimit(md, mem);
    if (md != NULL &&
        milterd_run(md, runtime_hold_current, mpipe[1], &e) < 0) {
        log_error(NULL, "%s", e.text);
        return 1;
    }
    if ((srv = smtpd_server_new(&e)) == NULL) {
        log_error(NULL, "%s", e.text);
        return 1;
    }
    smtpd_server_set_memlimit(srv, mem);
    if (spool != NULL) {
        smtpd_server_set_queue(srv, spool);
        if (queue_start(spool, &e) < 0) {
            log_error(NULL, "%s", e.text);
            return 1;
        }
        snprintf(ct.queue_dir, sizeof(ct.queue_dir), "%s",
                 cfg_str(cfg, "queue_directory"));
        ct.queue_mode = 1;
    }
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, SESSION_STACK);
    ra.path = path;
    ra.spool = spool;
    ra.boot = boot;
    if (pthread_create(&reloader, NULL, reload_thread, &ra) != 0) {
        log_error(NULL, "cannot start the reload thread: %s", strerror(errno));
        return 1;
    }
    ct.boot = boot;
    ct.srv = srv;
    if (control_start(&ct, &e) < 0) {
        log_error(NULL, "%s", e.text);
        return 1;
    }
    log_info(NULL,
             "daemon started -- version %s, configuration %s, control "
             "socket %s",
             PACKAGE_VERSION, path, ct.path);
    detach_done(ready_fd);

    while (!stop) {
        if (poll(pfd, nlisten + 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_error(NULL, "poll: %s", strerror(errno));
            break;
        }
        if (pfd[nlisten].revents & POLLIN) {
            struct signalfd_siginfo si;

            if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                if (si.ssi_signo == SIGUSR1) {
                    log_info(NULL, "reload requested by signal %u (pid %u)",
                             si.ssi_signo, si.ssi_pid);
                    reload_request(0);
                } else if (si.ssi_signo == SIGHUP) {
                    log_info(NULL, "SIGHUP ignored: reload with SIGUSR1 or "
                                   "relaychain reload");
                } else {
                    log_info(NULL, "terminating on signal %u", si.ssi_signo);
                    stop = 1;
                }
            }
        }
        if (pfd[nlisten + 1].revents & POLLIN) {
            log_info(NULL, "terminating: the milter stopped (libmilter "
                           "takes SIGTERM, SIGHUP and SIGINT)");
            stop = 1;
        }
        for (i = 0; i < nlisten && !stop; i++)
            if (pfd[i].revents & POLLIN)
                accept_one(srv, pfd[i].fd, &attr);
    }

    for (i = 0; i < nlisten; i++)
        close(pfd[i].fd);
    smtpd_server_stop(srv);
    /* A reload under way finishes first: it may still swap current. The
     * control thread stops before: a client waiting for a reload is told
     * the daemon is stopping. */
    reload_request(1);
    control_stop(&ct);
    pthread_join(reloader, NULL);
    {
        long long waited = 0, limit = cfg_num(runtime_conf(current)->cfg,
                                              "shutdown_timeout");
        unsigned n;

        /* The MTA's milter connections stay open after libmilter stopped
         * listening: the messages whose chain runs finish, later ones are
         * tempfailed, and the connections are taken back. */
        if (md != NULL) {
            if (milterd_drain(md, limit) > 0)
                log_warning(NULL, "exiting with milter transactions under "
                                  "way");
            else
                log_info(NULL, "all milter transactions finished");
        }
        while ((n = smtpd_server_active(srv)) > 0 && waited < limit) {
            usleep(50000);
            waited += 50;
        }
        left = n > 0;
        if (n > 0)
            log_warning(NULL, "exiting with %u session(s) still open", n);
        else
            log_info(NULL, "all sessions finished");
        /* Queue workers end the attempt they are in; the files stay. */
        if (spool != NULL && queue_stop(spool, limit) > 0)
            log_warning(NULL, "exiting with queue deliveries under way");
        else if (spool != NULL && n == 0)
            queue_free(spool);
        /* Sessions still running keep using srv and their runtime. */
        if (n == 0) {
            smtpd_server_free(srv);
            runtime_release(current);
            if (md == NULL)
                mime_shutdown();
        }
    }
    pthread_attr_destroy(&attr);
    close(sfd);
    if (md != NULL && milterd_wait(md) != 0)
        log_warning(NULL, "the milter ended with an error");
    conf_free(boot_conf);
    /* Sessions still running may give back octets to the count. */
    if (!left)
        memlimit_free(mem);
    log_close();
    return 0;

fail:
    /* The start failed before any thread of the daemon's own ran: what
     * was taken is given back (the stages' threads end with their
     * runtime), and the milter and control sockets are removed. */
    for (i = 0; i < nbound; i++)
        close(pfd[i].fd);
    if (spool != NULL)
        queue_free(spool);
    if (current != NULL)
        runtime_release(current);
    (void)milterd_wait(md);
    if (mpipe[0] >= 0) {
        close(mpipe[0]);
        close(mpipe[1]);
    }
    control_stop(&ct);
    conf_free(boot_conf);
    memlimit_free(mem);
    mime_shutdown();
    log_close();
    return 1;
}
