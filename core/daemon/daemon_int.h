/*
 * daemon_int - what the files of relaychaind share
 *
 * relaychaind.c starts the daemon and runs its accept and signal loop;
 * listen.c makes the SMTP listeners and starts a thread per session;
 * reload.c owns the current runtime and the reloader; control.c serves
 * the control socket. The process-wide state (the current runtime and
 * the reloader's requests and outcome) lives in reload.c alone, behind
 * the functions below; struct control and struct reload_arg belong to
 * main(), which lends them to the threads it starts.
 */
#ifndef RC_DAEMON_INT_H
#define RC_DAEMON_INT_H

#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "chain/conf.h"
#include "chain/runtime.h"
#include "net/httpd.h"
#include "queue/queue.h"
#include "smtpd/smtpd.h"
#include "util/cfg.h"
#include "util/err.h"

#define SESSION_STACK (512 * 1024)

/* ------------------------------------------------------------- parts */

/* The layers whose keys relaychain.conf holds, and what each runtime
 * holds besides the configuration (parts.c). */
extern const struct conf_part *const daemon_parts[];
extern const struct runtime_part_type *const daemon_runtime_parts[];

/* ------------------------------------------------------------ listen */

/* listen_one - bind "host:port" or "[v6]:port"; returns the socket. */
int listen_one(const char *spec, struct err *e);

/* accept_one - take one connection on lfd and start its session on a
 * thread of attr, with the current runtime. */
void accept_one(struct smtpd_server *srv, int lfd, pthread_attr_t *attr);

/* ------------------------------------------------------------ reload */

/* What the reloader needs: the configuration file and the spool (NULL
 * unless delivery = queue), whose settings are reloaded with the rest. */
struct reload_arg {
    const char *path;
    struct queue *spool;
    const struct cfg *boot; /* what the start bound and became */
};

#define RELOAD_NOTE_MAX (ERR_TEXT_MAX + 128)

/* runtime_load - the configuration of path and its runtime; NULL with
 * e set. */
struct runtime *runtime_load(const char *path, struct err *e);

/* runtime_hold_current - the current runtime, held: the caller releases
 * it with runtime_release(). */
struct runtime *runtime_hold_current(void);

/* runtime_load_current - load the first runtime at start, before any
 * thread exists: 0, or -1 with e set. */
int runtime_load_current(const char *path, struct err *e);

/* runtime_current - the current runtime, borrowed: only while no reload
 * can swap it (at start, and after the reloader ended); NULL before the
 * first was loaded. */
struct runtime *runtime_current(void);

/* runtime_release_current - give the current runtime back at exit. */
void runtime_release_current(void);

/* reload_thread - the reloader; p is a struct reload_arg that outlives
 * it. Ends after reload_request(1). */
void *reload_thread(void *p);

/* reload_request - ask for a reload (or, with quit, end the reloader);
 * returns the number of the reload that will answer the request. */
unsigned long reload_request(int quit);

/* reload_wait - wait at most wait_s seconds for reload number want;
 * returns 1 (done: ok, note filled), 0 (failed: note filled) or -1
 * (still running, or the daemon is stopping). */
int reload_wait(unsigned long want, int wait_s, char *note, size_t n);

/* reload_last - the outcome of the last reload: *when is 0 when none
 * has run yet; else *ok, and its note in note (size n). */
void reload_last(time_t *when, int *ok, char *note, size_t n);

/* ----------------------------------------------------------- control */

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
    struct queue *spool; /* ---- events: its writer's backlog in status */
    char queue_dir[PATH_MAX];
    /* clients served now, each on a thread of its own */
    pthread_mutex_t lock;
    pthread_cond_t idle;
    unsigned clients;
};

/* control_open - make the control socket before privileges are dropped:
 * its directory (mode 0755, owned by uid:gid) when missing, a stale
 * socket of a crashed daemon removed, and refused while another daemon
 * answers on it. Returns 0 with ct->fd set, or -1 with e set. */
int control_open(struct control *ct, const struct cfg *boot, uid_t uid,
                 gid_t gid, struct err *e);

/* control_start - the thread that serves the control socket. */
int control_start(struct control *ct, struct err *e);

/* control_stop - end the control thread once its clients are done,
 * close and remove the socket; also for a control never started. */
void control_stop(struct control *ct);

/* -------------------------------------------------------------- http */

/* ---- http: the HTTP listener (http.c). main() owns it; the request
 * threads read it. */
struct auth_table;
struct auth_rate;
struct daemon_http {
    int fd[8]; /* bound by http_bind, handed to the listener at start */
    size_t nfd;
    struct httpd *h;
    atomic_int stopping;
    const struct control *ct;
    int smtp_fd[16]; /* the SMTP listeners, checked by /healthz */
    size_t nsmtp;
    /* /dashboard and /api/report: their users and token, the failure
     * rate per client, the events store the report reads */
    struct auth_table *users;
    char token[HTTPD_CRED_MAX + 1];
    struct auth_rate *rate;
    const char *events_store;
    struct track_http *track; /* ---- track: /o/ /c/ /u/, or NULL */
    struct http_qhist *qhist; /* ---- queue history (http_qhist.c), or NULL */
};

/* The dashboard page (http_dashboard.c). */
extern const char http_dashboard_html[];

/* ---- queue history (http_qhist.c) */
struct buf;
struct http_qhist;
/* http_queue_scan - the messages in dir and the age of the oldest (0
 * when none) into *oldest_s; -1 when dir cannot be read (http.c). */
long http_queue_scan(const char *dir, long long *oldest_s);
/* http_qhist_new - sample queue_dir's queue every minute from now on;
 * NULL with e set. Free with http_qhist_free (stops the thread). */
struct http_qhist *http_qhist_new(const char *queue_dir, struct err *e);
void http_qhist_free(struct http_qhist *q);
/* http_qhist_json - the samples, oldest first, and a count taken now,
 * as JSON into out; 0, or -1 with e set. */
int http_qhist_json(struct http_qhist *q, struct buf *out, struct err *e);
/* ---- end queue history */

/* http_bind - bind every http_listen address (before privileges are
 * dropped); 0, or -1 with e. */
int http_bind(struct daemon_http *dh, const struct cfg *boot, struct err *e);

/* http_begin - with the chain loaded: the listener with /healthz and
 * /metrics, started; nothing without http_listen. 0, or -1 with e. */
int http_begin(struct daemon_http *dh, struct control *ct,
               const struct pollfd *smtp, size_t nsmtp, const struct cfg *boot,
               struct err *e);

/* http_stopping - /healthz says "shutting down" from now on. */
void http_stopping(struct daemon_http *dh);

/* http_end - stop the listener and close its sockets. */
void http_end(struct daemon_http *dh);

#endif
