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
 * Without -f it detaches and logs to syslog, or to maillog_file.
 *
 * The daemon's files: this one starts it and runs the accept and signal
 * loop; listen.c makes the SMTP listeners and the session threads;
 * reload.c holds the current runtime and the reloader; control.c serves
 * the control socket; parts.c names the layers of the configuration;
 * daemon_int.h is what they share. reload.c (the current runtime,
 * guarded by a mutex, and the reloader's requests and last outcome,
 * guarded by another), this file (the stage registry it lends the
 * chain) and core/cli/relaychain.c are the only places with
 * process-wide state.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "filters/filters.h"
#include "chain/conf.h"
#include "chain/runtime.h"
#include "daemon/daemon_int.h"
#include "util/log.h"
#include "util/memlimit.h"
#include "msg/mime.h"
#include "milterd/milterd.h"
#include "net/notice.h"
#include "queue/quarantine.h"
#include "queue/queue.h"
#include "queue/queue_conf.h"
#include "smtpd/smtpd.h"

#define LISTEN_MAX 16

/* What main() starts and gives back, from the options to the stop. */
struct daemon {
    const char *path; /* the main file, made absolute */
    char abspath[PATH_MAX];
    int foreground;
    int ready_fd;           /* without -f: the parent waits for a byte here */
    sigset_t sigs;          /* blocked in every thread */
    struct conf *boot_conf; /* the main file alone */
    const struct cfg *boot;
    uid_t uid;
    gid_t gid;
    /* the SMTP listeners, then the signalfd and the milter's pipe */
    struct pollfd pfd[LISTEN_MAX + 2];
    const char *const *listen_specs;
    size_t nlisten, nbound;
    struct milterd *md;
    int mpipe[2];
    int sfd;
    struct queue *spool; /* delivery = queue */
    struct memlimit *mem;
    struct smtpd_server *srv;
    pthread_attr_t attr; /* of the session threads */
    pthread_t reloader;
    struct reload_arg ra;
    struct control ct;
    struct daemon_http http; /* ---- http */
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

/* daemon_options - -c and -f into d; returns -1 to go on, else the exit
 * status (-V, -h, a wrong command line). */
static int
daemon_options(struct daemon *d, int argc, char **argv)
{
    int c;

    while ((c = getopt(argc, argv, "c:fhV")) != -1) {
        switch (c) {
        case 'c':
            d->path = optarg;
            break;
        case 'f':
            d->foreground = 1;
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
    return -1;
}

/* daemon_block_signals - the signals the daemon takes, blocked into
 * sigs. */
static void
daemon_block_signals(sigset_t *sigs)
{
    /* Blocked before any thread exists, so every thread -- libmilter's,
     * the queue's, and those a stage starts when it loads, such as the
     * antivirus database watcher -- inherits the mask, and the signals
     * reach only the signalfd below (and libmilter's sigwait). A thread
     * with them unblocked would take SIGUSR1 or SIGTERM with the default
     * action: the process killed without a word. */
    sigemptyset(sigs);
    sigaddset(sigs, SIGTERM);
    sigaddset(sigs, SIGINT);
    sigaddset(sigs, SIGUSR1);
    sigaddset(sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* daemon_log_open - syslog, maillog_file or stderr, as the main file and
 * -f say. */
static void
daemon_log_open(const struct daemon *d)
{
    const struct cfg *boot = d->boot;
    int fac;

    /* Logging is chosen once, before any thread starts; a bad facility
     * is reported with its line when the configuration loads below. */
    if ((fac = log_facility_parse(cfg_str(boot, "syslog_facility"))) < 0)
        fac = LOG_MAIL;
    if (d->foreground || cfg_str(boot, "maillog_file") == NULL ||
        log_open_file(cfg_str(boot, "syslog_name"),
                      cfg_str(boot, "maillog_file")) < 0) {
        int saved = errno;

        log_open(cfg_str(boot, "syslog_name"), fac,
                 d->foreground ? log_sink_foreground() : LOG_SINK_SYSLOG);
        if (!d->foreground && cfg_str(boot, "maillog_file") != NULL)
            log_error(NULL, "maillog_file %s: %s; logging to syslog",
                      cfg_str(boot, "maillog_file"), strerror(saved));
    }
}

/* daemon_listen - the SMTP listeners and the milter socket, made before
 * privileges are dropped; 0, or -1 with e set. */
static int
daemon_listen(struct daemon *d, struct err *e)
{
    const struct cfg *boot = d->boot;
    size_t i;

    d->nlisten = cfg_list(boot, "smtp_listen", &d->listen_specs);
    if (d->nlisten == 0 && cfg_str(boot, "milter_listen") == NULL)
        return err_set(e, ERR_CONFIG,
                       "%s: neither smtp_listen nor "
                       "milter_listen is set: nothing to listen on",
                       d->path);
    if (d->nlisten > LISTEN_MAX)
        return err_set(e, ERR_CONFIG, "at most %d listeners", LISTEN_MAX);
    for (i = 0; i < d->nlisten; i++) {
        if ((d->pfd[i].fd = listen_one(d->listen_specs[i], e)) < 0)
            return -1;
        d->pfd[i].events = POLLIN;
        d->nbound++;
    }
    /* The milter socket, like the SMTP ones, is made before privileges
     * are dropped (a socket inside Postfix's queue directory, chown). */
    if (cfg_str(boot, "milter_listen") != NULL) {
        if ((d->md = milterd_open(boot, e)) == NULL)
            return -1;
        if (pipe2(d->mpipe, O_CLOEXEC) < 0)
            return err_set(e, ERR_IO, "%s", strerror(errno));
    }
    return 0;
}

/* daemon_load - as the user: the chain, and the spool and quarantine
 * it needs; 0, or -1 with e set. */
static int
daemon_load(struct daemon *d, struct err *e)
{
    const struct cfg *cfg;

    /* The chain, its keys and databases are read as the user, as every
     * reload reads them: a key only root can read stops the start here
     * instead of failing each reload later. */
    if (runtime_load_current(d->path, e) < 0)
        return -1;
    cfg = runtime_conf(runtime_current())->cfg;
    /* delivery = queue: the spool's directories and lock are taken here,
     * so a problem is told where the admin looks. */
    if (queue_delivery(cfg) == QUEUE_DELIVERY_QUEUE &&
        (d->spool = queue_open(cfg, e)) == NULL)
        return -1;
    /* The SMTP front end keeps quarantined mail itself: a directory
     * it could not write to would turn every held message into a 451. */
    if (d->nlisten > 0 &&
        quarantine_dir_prepare(cfg_str(cfg, "quarantine_directory"), e) < 0)
        return -1;
    return 0;
}

/* daemon_signalfd - the signalfd the loop polls, beside the listeners
 * and the milter's pipe, and the count of message octets in memory; 0,
 * or -1 with e set. */
static int
daemon_signalfd(struct daemon *d, struct err *e)
{
    sigset_t sfd_sigs;

    /* With a milter, libmilter's own thread takes SIGTERM, SIGHUP and
     * SIGINT (sigwait) and ends smfi_main(); the daemon keeps SIGUSR1. */
    sfd_sigs = d->sigs;
    if (d->md != NULL) {
        sigemptyset(&sfd_sigs);
        sigaddset(&sfd_sigs, SIGUSR1);
    }
    if ((d->sfd = signalfd(-1, &sfd_sigs, SFD_CLOEXEC)) < 0)
        return err_set(e, ERR_IO, "signalfd: %s", strerror(errno));
    d->pfd[d->nlisten].fd = d->sfd;
    d->pfd[d->nlisten].events = POLLIN;
    d->pfd[d->nlisten + 1].fd = d->mpipe[0];
    d->pfd[d->nlisten + 1].events = POLLIN;
    /* One count of message octets in memory for both front ends, so
     * smtpd_memory_limit holds for the process as a whole. */
    if ((d->mem = memlimit_new(e)) == NULL)
        return -1;
    return 0;
}

/* daemon_threads - the milter, the SMTP server, the queue, the reloader
 * and the control thread; 0, or -1 with e set (the daemon then exits
 * without taking anything back: threads run). */
static int
daemon_threads(struct daemon *d, struct err *e)
{
    const struct cfg *cfg = runtime_conf(runtime_current())->cfg;

    if (d->md != NULL)
        milterd_set_memlimit(d->md, d->mem);
    if (d->md != NULL &&
        milterd_run(d->md, runtime_hold_current, d->mpipe[1], e) < 0)
        return -1;
    if ((d->srv = smtpd_server_new(e)) == NULL)
        return -1;
    smtpd_server_set_memlimit(d->srv, d->mem);
    if (d->spool != NULL) {
        smtpd_server_set_queue(d->srv, d->spool);
        if (queue_start(d->spool, e) < 0)
            return -1;
        snprintf(d->ct.queue_dir, sizeof(d->ct.queue_dir), "%s",
                 cfg_str(cfg, "queue_directory"));
        d->ct.queue_mode = 1;
        d->ct.spool = d->spool; /* ---- events */
    }
    pthread_attr_init(&d->attr);
    pthread_attr_setdetachstate(&d->attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&d->attr, SESSION_STACK);
    d->ra.path = d->path;
    d->ra.spool = d->spool;
    d->ra.boot = d->boot;
    if (pthread_create(&d->reloader, NULL, reload_thread, &d->ra) != 0)
        return err_set(e, ERR_TEMP, "cannot start the reload thread: %s",
                       strerror(errno));
    d->ct.boot = d->boot;
    d->ct.srv = d->srv;
    return control_start(&d->ct, e);
}

/* daemon_loop - accept connections and take signals until one, or the
 * milter's end, says stop. */
static void
daemon_loop(struct daemon *d)
{
    size_t nlisten = d->nlisten, i;
    struct pollfd *pfd = d->pfd;
    int stop = 0;

    while (!stop) {
        if (poll(pfd, nlisten + 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_error(NULL, "poll: %s", strerror(errno));
            break;
        }
        if (pfd[nlisten].revents & POLLIN) {
            struct signalfd_siginfo si;

            if (read(d->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
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
                accept_one(d->srv, pfd[i].fd, &d->attr);
    }
}

/* daemon_drain - let the transactions in flight finish, at most
 * shutdown_timeout, and give back what nothing uses any more; returns 1
 * when sessions are still open (they keep their server and runtime). */
static int
daemon_drain(struct daemon *d)
{
    long long waited = 0, limit = cfg_num(runtime_conf(runtime_current())->cfg,
                                          "shutdown_timeout");
    unsigned n;

    /* The MTA's milter connections stay open after libmilter stopped
     * listening: the messages whose chain runs finish, later ones are
     * tempfailed, and the connections are taken back. */
    if (d->md != NULL) {
        if (milterd_drain(d->md, limit) > 0)
            log_warning(NULL, "exiting with milter transactions under "
                              "way");
        else
            log_info(NULL, "all milter transactions finished");
    }
    while ((n = smtpd_server_active(d->srv)) > 0 && waited < limit) {
        usleep(50000);
        waited += 50;
    }
    if (n > 0)
        log_warning(NULL, "exiting with %u session(s) still open", n);
    else
        log_info(NULL, "all sessions finished");
    /* Queue workers end the attempt they are in; the files stay. */
    if (d->spool != NULL && queue_stop(d->spool, limit) > 0)
        log_warning(NULL, "exiting with queue deliveries under way");
    else if (d->spool != NULL && n == 0)
        queue_free(d->spool);
    /* Sessions still running keep using srv and their runtime. */
    if (n == 0) {
        smtpd_server_free(d->srv);
        runtime_release_current();
        if (d->md == NULL)
            mime_shutdown();
    }
    return n > 0;
}

/* daemon_stop - stop accepting, end the threads, drain; returns the
 * exit status. */
static int
daemon_stop(struct daemon *d)
{
    size_t i;
    int left;

    /* ---- http: /healthz says no from here, for the whole drain */
    http_stopping(&d->http);
    for (i = 0; i < d->nlisten; i++)
        close(d->pfd[i].fd);
    smtpd_server_stop(d->srv);
    /* A reload under way finishes first: it may still swap current. The
     * control thread stops before: a client waiting for a reload is told
     * the daemon is stopping. */
    reload_request(1);
    control_stop(&d->ct);
    pthread_join(d->reloader, NULL);
    left = daemon_drain(d);
    http_end(&d->http); /* ---- http */
    pthread_attr_destroy(&d->attr);
    close(d->sfd);
    if (d->md != NULL && milterd_wait(d->md) != 0)
        log_warning(NULL, "the milter ended with an error");
    conf_free(d->boot_conf);
    /* Sessions still running may give back octets to the count. */
    if (!left)
        memlimit_free(d->mem);
    log_close();
    return 0;
}

/* daemon_fail - after a start that failed before any thread of the
 * daemon's own ran; returns the exit status. */
static int
daemon_fail(struct daemon *d)
{
    size_t i;

    /* What was taken is given back (the stages' threads end with their
     * runtime), and the milter and control sockets are removed. */
    for (i = 0; i < d->nbound; i++)
        close(d->pfd[i].fd);
    http_end(&d->http); /* ---- http */
    if (d->spool != NULL)
        queue_free(d->spool);
    runtime_release_current();
    (void)milterd_wait(d->md);
    if (d->mpipe[0] >= 0) {
        close(d->mpipe[0]);
        close(d->mpipe[1]);
    }
    control_stop(&d->ct);
    conf_free(d->boot_conf);
    memlimit_free(d->mem);
    mime_shutdown();
    log_close();
    return 1;
}

int
main(int argc, char **argv)
{
    struct daemon d;
    struct err e;
    int rc;

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
    memset(&d, 0, sizeof(d));
    d.path = CONF_DEFAULT_PATH;
    d.ready_fd = -1;
    d.mpipe[0] = d.mpipe[1] = -1;
    if ((rc = daemon_options(&d, argc, argv)) >= 0)
        return rc;
    registry = flt_registry;
    notice_env(&registry.env);
    registry_set(&registry);
    /* Files the daemon makes (spool, quarantine, sockets) are never
     * world-readable, whatever umask it was started with. */
    umask(027);
    daemon_block_signals(&d.sigs);
    /* Reloads read the file again after the daemon left its directory. */
    if (realpath(d.path, d.abspath) == NULL) {
        fprintf(stderr, "relaychaind: %s: %s\n", d.path, strerror(errno));
        return 1;
    }
    d.path = d.abspath;
    if (!d.foreground && (rc = detach(&d.ready_fd)) >= 0)
        return rc;
    err_clear(&e);
    d.ct.fd = -1;
    d.ct.started = time(NULL);
    d.ct.conf_path = d.path;
    if ((d.boot_conf = boot_load(d.path, &e)) == NULL) {
        fprintf(stderr, "relaychaind: %s\n", e.text);
        return 1;
    }
    d.boot = d.boot_conf->cfg;
    daemon_log_open(&d);
    mime_init();
    /* Sockets as root, then the rest as the user. */
    if (root_check(d.boot, &e) < 0 ||
        user_ids(d.boot, &d.uid, &d.gid, &e) < 0 ||
        daemon_listen(&d, &e) < 0 ||
        http_bind(&d.http, d.boot, &e) < 0 || /* ---- http */
        control_open(&d.ct, d.boot, d.uid, d.gid, &e) < 0 ||
        drop_privileges(cfg_str(d.boot, "user"), cfg_str(d.boot, "group"),
                        &e) < 0 ||
        daemon_load(&d, &e) < 0 || daemon_signalfd(&d, &e) < 0) {
        fprintf(stderr, "relaychaind: %s\n", e.text);
        return daemon_fail(&d);
    }
    if (daemon_threads(&d, &e) < 0 ||
        /* ---- http: the HTTP listener, once the chain is loaded */
        http_begin(&d.http, &d.ct, d.pfd, d.nlisten, d.boot, &e) < 0) {
        log_error(NULL, "%s", e.text);
        return 1;
    }
    log_info(NULL,
             "daemon started -- version %s, configuration %s, control "
             "socket %s",
             PACKAGE_VERSION, d.path, d.ct.path);
    detach_done(d.ready_fd);
    daemon_loop(&d);
    return daemon_stop(&d);
}
