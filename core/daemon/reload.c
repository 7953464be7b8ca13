/*
 * reload - relaychaind's current runtime and its reloader
 *
 * This file holds the daemon's process-wide state: the current runtime
 * (configuration, chain and the SMTP front end's part), guarded by
 * current_lock, and the reloader's requests and last outcome, guarded
 * by reload_lock. A session or milter connection holds the runtime
 * current when it opens (runtime_hold_current) and releases it when it
 * ends; reload() builds a new one beside it and swaps it in, so what is
 * in flight finishes on what it started with. A reload that fails is
 * logged and the running configuration kept; its "file:line: reason"
 * is what the control socket's client and "relaychain status" hear.
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "chain/chain.h"
#include "daemon/daemon_int.h"
#include "queue/queue_conf.h"
#include "util/log.h"

static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;
static struct runtime *current;

struct runtime *
runtime_hold_current(void)
{
    struct runtime *rt;

    pthread_mutex_lock(&current_lock);
    rt = current;
    runtime_hold(rt);
    pthread_mutex_unlock(&current_lock);
    return rt;
}

struct runtime *
runtime_load(const char *path, struct err *e)
{
    struct conf *cf;

    if ((cf = conf_load(path, daemon_parts, e)) == NULL)
        return NULL;
    return runtime_new(cf, daemon_runtime_parts, e);
}

int
runtime_load_current(const char *path, struct err *e)
{
    return (current = runtime_load(path, e)) == NULL ? -1 : 0;
}

struct runtime *
runtime_current(void)
{
    return current;
}

void
runtime_release_current(void)
{
    if (current != NULL)
        runtime_release(current);
}

/* reload_restart_keys - the keys of the main file that only a restart
 * applies, named in note (at most n) when cfg changed one. The events
 * keys (events_store...) are among them: the writer is opened with the
 * queue. */
static void
reload_restart_keys(const struct cfg *boot, const struct cfg *cfg, char *note,
                    size_t n)
{
    static const char *const keys[] = {
        "smtp_listen",
        "milter_listen",
        "milter_socket_mode",
        "milter_socket_group",
        "user",
        "group",
        "run_as_root",
        "control_socket",
        "syslog_name",
        "syslog_facility",
        "events_store",
        "events_spool",
        "events_buffer",
        "events_batch",
        "events_batch_time",
        "stream_map",
        "stream_header", /* the events read it at open */
        "suppress_scope",
        "suppress_expiry",
        "on_suppressed",
        /* ---- verp */
        "verp_domain",
        "verp_key_file",
        "fbl_address",
        "fbl_match_header",
        "fbl_clients",
    };
    /* ---- http: the listener is made once, at start */
    static const char *const http_keys[] = {
        "http_listen",          "http_threads",
        "http_max_connections", "http_max_connections_per_client",
        "http_body_limit",      "http_timeout",
        "http_tls_cert_file",   "http_tls_key_file",
        "http_password_file",   "http_token_file",
        "track_key_file",       "track_machine_networks",
        "track_click_window",
    };
    size_t nk = sizeof(keys) / sizeof(keys[0]);
    size_t i, o = 0;

    note[0] = '\0';
    for (i = 0; i < nk + sizeof(http_keys) / sizeof(http_keys[0]); i++) {
        const char *k = i < nk ? keys[i] : http_keys[i - nk];
        const char *a = cfg_raw(boot, k), *b = cfg_raw(cfg, k);

        if ((a == NULL) == (b == NULL) && (a == NULL || strcmp(a, b) == 0))
            continue;
        log_warning(NULL, "%s changed; restart relaychaind to use it", k);
        if (o < n)
            o += (size_t)snprintf(note + o, n - o,
                                  "; %s changed: restart "
                                  "relaychaind to use it",
                                  k);
    }
    /* ---- events: PostgreSQL's password file (the file itself is read
     * again at each connection; its name only at start) */
    {
        const char *k = "events_store_password_file";
        const char *a = cfg_raw(boot, k), *b = cfg_raw(cfg, k);

        if ((a == NULL) != (b == NULL) || (a != NULL && strcmp(a, b) != 0)) {
            log_warning(NULL, "%s changed; restart relaychaind to use it", k);
            if (o < n)
                (void)snprintf(note + o, n - o,
                               "; %s changed: restart relaychaind to use it",
                               k);
        }
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

static pthread_mutex_t reload_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reload_cond = PTHREAD_COND_INITIALIZER;
static pthread_cond_t reload_done_cond = PTHREAD_COND_INITIALIZER;
static unsigned reload_requests;
static int reload_quit;
static unsigned long reload_started, reload_finished;
static time_t reload_when; /* 0: no reload yet */
static int reload_ok;
static char reload_note[RELOAD_NOTE_MAX];

void *
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
unsigned long
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
int
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

void
reload_last(time_t *when, int *ok, char *note, size_t n)
{
    pthread_mutex_lock(&reload_lock);
    *when = reload_when;
    *ok = reload_ok;
    snprintf(note, n, "%s", reload_note);
    pthread_mutex_unlock(&reload_lock);
}
