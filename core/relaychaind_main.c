/*
 * relaychaind - the relay daemon
 *
 *     relaychaind [-c FILE] [-f]
 *
 * Loads the configuration, binds the SMTP listeners, drops privileges,
 * then accepts connections, one thread per session with a small stack
 * (no fixed pool caps concurrency; max_connections does). Signals are
 * taken synchronously through a signalfd in the accept loop:
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
 * Without -f it detaches and logs to syslog. This file and
 * relaychain_main.c are the only places with process-wide state: the
 * current runtime, guarded by a mutex.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "log.h"
#include "memlimit.h"
#include "mime.h"
#include "milterd.h"
#include "quarantine.h"
#include "queue.h"
#include "smtpd.h"

#define LISTEN_MAX 16
#define LISTEN_BACKLOG 4096
#define SESSION_STACK (512 * 1024)

static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;
static struct smtpd_runtime *current;

struct session_arg {
    struct smtpd_server *srv;
    struct smtpd_runtime *rt;
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

static struct smtpd_runtime *
runtime_hold_current(void)
{
    struct smtpd_runtime *rt;

    pthread_mutex_lock(&current_lock);
    rt = current;
    smtpd_runtime_hold(rt);
    pthread_mutex_unlock(&current_lock);
    return rt;
}

static struct smtpd_runtime *
runtime_load(const char *path, struct err *e)
{
    struct conf *cf;

    if ((cf = conf_load(path, e)) == NULL)
        return NULL;
    return smtpd_runtime_new(cf, e);
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
            return err_set(e, ERR_CONFIG,
                           "smtp_listen: '%s' is not host:port", spec);
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
    smtpd_runtime_release(a->rt);
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
        smtpd_runtime_release(a->rt);
        free(a);
    }
}

/* What the reloader needs: the configuration file and the spool (NULL
 * unless delivery = queue), whose settings are reloaded with the rest. */
struct reload_arg {
    const char *path;
    struct queue *spool;
};

static void
reload(const struct reload_arg *ra)
{
    const char *path = ra->path;
    struct smtpd_runtime *rt, *old;
    struct queue_settings *qs = NULL;
    const struct stage *const *st;
    const struct cfg *cfg;
    struct err e;

    err_clear(&e);
    if ((rt = runtime_load(path, &e)) == NULL) {
        log_error(NULL, "reload failed, keeping the running configuration: "
                        "%s",
                  e.text);
        return;
    }
    /* The queue's new settings are built here too, before anything is
     * swapped: a bad transport_map keeps the whole old configuration. */
    cfg = smtpd_runtime_conf(rt)->cfg;
    if ((ra->spool != NULL) != (cfg_enum(cfg, "delivery") == 1))
        log_warning(NULL, "delivery changed; restart relaychaind to use it");
    else if (ra->spool != NULL &&
             (qs = queue_settings_load(ra->spool, cfg, &e)) == NULL) {
        log_error(NULL,
                  "reload failed, keeping the running configuration: %s",
                  e.text);
        smtpd_runtime_release(rt);
        return;
    }
    pthread_mutex_lock(&current_lock);
    old = current;
    current = rt;
    pthread_mutex_unlock(&current_lock);
    smtpd_runtime_release(old);
    if (qs != NULL)
        queue_settings_apply(ra->spool, qs);
    log_info(NULL, "reload: configuration %s, chain of %zu stage(s)", path,
             chain_stages(smtpd_runtime_conf(rt)->chain, &st));
}

/* The reloader: one thread that builds new configurations, so compiling
 * a large chain (a virus database takes seconds) never stops the accept
 * loop. Requests that arrive while it works are folded into one more
 * reload after it, so the last SIGUSR1 always takes effect. */
static pthread_mutex_t reload_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reload_cond = PTHREAD_COND_INITIALIZER;
static unsigned reload_requests;
static int reload_quit;

static void *
reload_thread(void *p)
{
    const struct reload_arg *ra = p;

    pthread_mutex_lock(&reload_lock);
    for (;;) {
        while (reload_requests == 0 && !reload_quit)
            pthread_cond_wait(&reload_cond, &reload_lock);
        if (reload_quit)
            break;
        reload_requests = 0;
        pthread_mutex_unlock(&reload_lock);
        reload(ra);
        pthread_mutex_lock(&reload_lock);
    }
    pthread_mutex_unlock(&reload_lock);
    return NULL;
}

static void
reload_request(int quit)
{
    pthread_mutex_lock(&reload_lock);
    if (quit)
        reload_quit = 1;
    else
        reload_requests++;
    pthread_cond_signal(&reload_cond);
    pthread_mutex_unlock(&reload_lock);
}

int
main(int argc, char **argv)
{
    const char *path = CONF_DEFAULT_PATH;
    struct pollfd pfd[LISTEN_MAX + 2];
    struct milterd *md = NULL;
    pthread_t reloader;
    struct reload_arg ra;
    struct queue *spool = NULL;
    int mpipe[2] = {-1, -1};
    sigset_t sfd_sigs;
    const char *const *listen_specs;
    struct smtpd_server *srv;
    struct memlimit *mem;
    const struct cfg *cfg;
    pthread_attr_t attr;
    sigset_t sigs;
    size_t nlisten, i;
    int foreground = 0, c, sfd, stop = 0, left = 0;
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
    err_clear(&e);
    /* Blocked before any thread exists: loading the chain starts some
     * (the antivirus stage's database watch), and a SIGTERM that reached
     * one of those would end the daemon without its clean shutdown. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGUSR1);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    mime_init();
    /* Until the configuration names the syslog identity, errors go to
     * stderr: that is where an admin starting the daemon looks. */
    log_open("relaychaind", LOG_MAIL, LOG_SINK_STDERR);
    if ((current = runtime_load(path, &e)) == NULL) {
        fprintf(stderr, "relaychaind: %s\n", e.text);
        return 1;
    }
    cfg = smtpd_runtime_conf(current)->cfg;
    nlisten = cfg_list(cfg, "smtp_listen", &listen_specs);
    if (nlisten == 0 && cfg_str(cfg, "milter_listen") == NULL) {
        fprintf(stderr, "relaychaind: %s: neither smtp_listen nor "
                        "milter_listen is set: nothing to listen on\n",
                path);
        return 1;
    }
    if (nlisten > LISTEN_MAX) {
        fprintf(stderr, "relaychaind: at most %d listeners\n", LISTEN_MAX);
        return 1;
    }
    for (i = 0; i < nlisten; i++) {
        if ((pfd[i].fd = listen_one(listen_specs[i], &e)) < 0) {
            fprintf(stderr, "relaychaind: %s\n", e.text);
            return 1;
        }
        pfd[i].events = POLLIN;
    }
    /* The milter socket, like the SMTP ones, is made before privileges
     * are dropped (a socket inside Postfix's queue directory, chown). */
    if (cfg_str(cfg, "milter_listen") != NULL &&
        ((md = milterd_open(cfg, &e)) == NULL ||
         pipe2(mpipe, O_CLOEXEC) < 0)) {
        fprintf(stderr, "relaychaind: %s\n",
                md == NULL ? e.text : strerror(errno));
        return 1;
    }
    if (drop_privileges(cfg_str(cfg, "user"), cfg_str(cfg, "group"), &e) <
        0) {
        fprintf(stderr, "relaychaind: %s\n", e.text);
        return 1;
    }
    /* delivery = queue: the spool's directories and lock are taken here,
     * so a problem is told where the admin looks; its threads start
     * after daemon(), which keeps only the calling thread. */
    if (cfg_enum(cfg, "delivery") == 1 &&
        (spool = queue_open(cfg, &e)) == NULL) {
        fprintf(stderr, "relaychaind: %s\n", e.text);
        return 1;
    }
    /* The SMTP front end keeps quarantined mail itself: a directory
     * it could not write to would turn every held message into a 451. */
    if (nlisten > 0 &&
        quarantine_dir_prepare(cfg_str(cfg, "quarantine_directory"), &e) < 0) {
        fprintf(stderr, "relaychaind: %s\n", e.text);
        return 1;
    }
    if (!foreground && daemon(0, 0) < 0) {
        fprintf(stderr, "relaychaind: daemon: %s\n", strerror(errno));
        return 1;
    }
    if (foreground || cfg_str(cfg, "maillog_file") == NULL ||
        log_open_file(cfg_str(cfg, "syslog_name"),
                      cfg_str(cfg, "maillog_file")) < 0) {
        int saved = errno;

        log_open(cfg_str(cfg, "syslog_name"),
                 log_facility_parse(cfg_str(cfg, "syslog_facility")),
                 foreground ? log_sink_foreground() : LOG_SINK_SYSLOG);
        if (!foreground && cfg_str(cfg, "maillog_file") != NULL)
            log_error(NULL, "maillog_file %s: %s; logging to syslog",
                      cfg_str(cfg, "maillog_file"), strerror(saved));
    }

    signal(SIGPIPE, SIG_IGN);
    /* With a milter, libmilter's own thread takes SIGTERM, SIGHUP and
     * SIGINT (sigwait) and ends smfi_main(); the daemon keeps SIGUSR1. */
    sfd_sigs = sigs;
    if (md != NULL) {
        sigemptyset(&sfd_sigs);
        sigaddset(&sfd_sigs, SIGUSR1);
    }
    if ((sfd = signalfd(-1, &sfd_sigs, SFD_CLOEXEC)) < 0) {
        log_error(NULL, "signalfd: %s", strerror(errno));
        return 1;
    }
    pfd[nlisten].fd = sfd;
    pfd[nlisten].events = POLLIN;
    pfd[nlisten + 1].fd = mpipe[0];
    pfd[nlisten + 1].events = POLLIN;
    /* One count of message octets in memory for both front ends, so
     * smtpd_memory_limit holds for the process as a whole. */
    if ((mem = memlimit_new(&e)) == NULL) {
        log_error(NULL, "%s", e.text);
        return 1;
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
    }
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, SESSION_STACK);
    ra.path = path;
    ra.spool = spool;
    if (pthread_create(&reloader, NULL, reload_thread, &ra) != 0) {
        log_error(NULL, "cannot start the reload thread: %s",
                  strerror(errno));
        return 1;
    }
    log_info(NULL, "daemon started -- version %s, configuration %s",
             PACKAGE_VERSION, path);

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
                if (si.ssi_signo == SIGUSR1)
                    reload_request(0);
                else if (si.ssi_signo == SIGHUP)
                    log_info(NULL, "SIGHUP ignored: reload with SIGUSR1");
                else {
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
    /* A reload under way finishes first: it may still swap current. */
    reload_request(1);
    pthread_join(reloader, NULL);
    {
        long long waited = 0,
                  limit = cfg_num(smtpd_runtime_conf(current)->cfg,
                                  "shutdown_timeout");
        unsigned n;

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
            smtpd_runtime_release(current);
            if (md == NULL)
                mime_shutdown();
        }
    }
    pthread_attr_destroy(&attr);
    close(sfd);
    if (md != NULL && milterd_wait(md) != 0)
        log_warning(NULL, "the milter ended with an error");
    /* Sessions still running may give back octets to the count. */
    if (!left)
        memlimit_free(mem);
    log_close();
    return 0;
}
