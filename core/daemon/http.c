/*
 * http - relaychaind's HTTP listener: start, stop, /healthz, /metrics
 *
 * http_bind() binds every http_listen address before privileges are
 * dropped, as the SMTP listeners are; http_begin() makes the listener
 * (core/net/httpd) once the chain is loaded, registers the daemon's own
 * paths and starts it; http_stopping() makes /healthz say no from the
 * moment the daemon stops accepting mail; http_end() stops the listener
 * after the drain, so the balancer hears "shutting down" for as long as
 * the drain lasts. A reload keeps the listener as it is: its keys are
 * restart-only (reload.c names them).
 *
 *   /healthz  200 "ok" when the daemon accepts mail: not stopping, each
 *             SMTP listener listening, and with delivery = queue the
 *             spool writable and above queue_minfree; else 503 and the
 *             reason, one line. For a balancer's health check.
 *   /metrics  the counters of util/metrics and the gauges read here at
 *             each scrape (sessions, queue size and oldest age, events
 *             backlog, start and last reload; with track_key_file the
 *             tracking counters, relaychain_track_*_total), Prometheus
 *             text format.
 *   /dashboard, /api/report  with http_password_file (basic auth, the
 *             SMTP AUTH password file's format and code) or
 *             http_token_file (Authorization: Bearer): the page
 *             (http_dashboard.c) and the JSON of "relaychain report
 *             --json" (queue/events_report), ?by=hour|day|domain|sender|
 *             stream and ?hours=N (the last N hours; default all).
 *             With delivery = queue, /api/queue-history too: the
 *             queue size a minute over 48 hours (http_qhist.c).
 *             Failed logins count per client (net/auth's auth_rate):
 *             past HTTP_AUTH_RATE a minute every attempt fails unchecked.
 *
 * struct daemon_http is main()'s; the handlers read it and the struct
 * control it points to from the listener's threads: what they read is
 * set before the start and not changed after, but for stopping (an
 * atomic) and what the callees guard themselves.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "daemon/daemon_int.h"
#include "net/auth.h"
#include "net/httpd.h"
#include "net/httpd_conf.h"
#include "queue/events.h"
#include "queue/events_db.h"
#include "queue/events_report.h"
#include "queue/queue.h"
#include "queue/track_http.h"
#include "util/log.h"
#include "util/metrics.h"

#define HTTP_METRICS_LIMIT (4 * 1024 * 1024)
#define HTTP_AUTH_RATE 10 /* failed logins a minute per client */
#define HTTP_AUTH_SLOTS 1024

int
http_bind(struct daemon_http *dh, const struct cfg *boot, struct err *e)
{
    const char *const *l;
    size_t n = cfg_list(boot, "http_listen", &l), i;

    dh->nfd = 0;
    if (n > HTTPD_LISTEN_MAX)
        return err_set(e, ERR_CONFIG, "http_listen: at most %d addresses",
                       HTTPD_LISTEN_MAX);
    for (i = 0; i < n; i++) {
        if ((dh->fd[i] = listen_one(l[i], e)) < 0) {
            char text[ERR_TEXT_MAX];

            /* listen_one names smtp_listen: say which key it was */
            snprintf(text, sizeof(text), "%s", e->text);
            err_set(e, ERR_CONFIG, "http_listen: %s", text);
            return -1;
        }
        dh->nfd++;
    }
    return 0;
}

/* http_queue_scan - the messages in dir and the age of the oldest (0
 * when none); -1 when dir cannot be read. Also http_qhist.c's. */
long
http_queue_scan(const char *dir, long long *oldest_s)
{
    struct dirent *de;
    struct stat st;
    time_t now = time(NULL), first = 0;
    long n = 0;
    DIR *d;

    *oldest_s = 0;
    if ((d = opendir(dir)) == NULL)
        return -1;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        n++;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
            (first == 0 || st.st_mtime < first))
            first = st.st_mtime;
    }
    closedir(d);
    if (first != 0 && now > first)
        *oldest_s = (long long)(now - first);
    return n;
}

/* http_health - 1 with "ok", or 0 with the reason in why. */
static int
http_health(const struct daemon_http *dh, char *why, size_t n)
{
    const struct control *ct = dh->ct;
    size_t i;

    if (atomic_load(&dh->stopping)) {
        snprintf(why, n, "shutting down");
        return 0;
    }
    for (i = 0; i < dh->nsmtp; i++) {
        int on = 0;
        socklen_t len = sizeof(on);

        if (getsockopt(dh->smtp_fd[i], SOL_SOCKET, SO_ACCEPTCONN, &on, &len) <
                0 ||
            !on) {
            snprintf(why, n, "smtp listener %zu is not listening", i + 1);
            return 0;
        }
    }
    if (ct->queue_mode) {
        char sub[PATH_MAX + 8];

        snprintf(sub, sizeof(sub), "%s/queue", ct->queue_dir);
        if (access(sub, W_OK | X_OK) < 0) {
            snprintf(why, n, "queue directory not writable: %s",
                     strerror(errno));
            return 0;
        }
        if (ct->spool != NULL && !queue_has_space(ct->spool, 0)) {
            snprintf(why, n,
                     "queue file system has less than queue_minfree "
                     "free");
            return 0;
        }
    }
    snprintf(why, n, "ok");
    return 1;
}

static void
http_healthz(void *arg, const struct http_req *rq, struct http_resp *rs)
{
    const struct daemon_http *dh = arg;
    char why[PATH_MAX + 128];
    struct err e;

    (void)rq;
    rs->status = http_health(dh, why, sizeof(why)) ? 200 : 503;
    rs->content_type = "text/plain; charset=utf-8";
    rs->no_store = 1;
    if (buf_printf(&rs->body, &e, "%s\n", why) < 0)
        rs->status = 503;
}

/* http_gauge - one family of one unlabelled sample. */
static int
http_gauge(struct buf *b, const char *name, const char *type, const char *help,
           double v, struct err *e)
{
    if (metrics_family(b, name, type, help, e) < 0)
        return -1;
    return metrics_value(b, name, "", v, e);
}

static int
http_metrics_daemon(const struct daemon_http *dh, struct buf *b, struct err *e)
{
    const struct control *ct = dh->ct;
    time_t rwhen;
    int rok;
    char note[RELOAD_NOTE_MAX];

    if (http_gauge(b, "relaychain_start_time_seconds", "gauge",
                   "When relaychaind started, seconds since the epoch.",
                   (double)ct->started, e) < 0 ||
        http_gauge(b, "relaychain_smtpd_sessions", "gauge",
                   "SMTP sessions open now.",
                   ct->srv != NULL ? (double)smtpd_server_active(ct->srv) : 0,
                   e) < 0 ||
        http_gauge(b, "relaychain_healthy", "gauge",
                   "1 when /healthz says the daemon accepts mail.",
                   http_health(dh, note, sizeof(note)), e) < 0)
        return -1;
    reload_last(&rwhen, &rok, note, sizeof(note));
    if (rwhen != 0 &&
        (http_gauge(b, "relaychain_config_last_reload_successful", "gauge",
                    "1 when the last reload succeeded.", rok ? 1 : 0, e) < 0 ||
         http_gauge(b, "relaychain_config_last_reload_time_seconds", "gauge",
                    "When the last reload ran, seconds since the epoch.",
                    (double)rwhen, e) < 0))
        return -1;
    if (ct->queue_mode) {
        char sub[PATH_MAX + 8];
        long long oldest, held_oldest;
        long active, held;

        snprintf(sub, sizeof(sub), "%s/queue", ct->queue_dir);
        active = http_queue_scan(sub, &oldest);
        snprintf(sub, sizeof(sub), "%s/hold", ct->queue_dir);
        held = http_queue_scan(sub, &held_oldest);
        if (active >= 0 &&
            (http_gauge(b, "relaychain_queue_messages", "gauge",
                        "Messages in the queue waiting for delivery.",
                        (double)active, e) < 0 ||
             http_gauge(b, "relaychain_queue_oldest_message_age_seconds",
                        "gauge", "Age of the oldest message in the queue.",
                        (double)oldest, e) < 0))
            return -1;
        if (held >= 0 &&
            http_gauge(b, "relaychain_queue_held_messages", "gauge",
                       "Messages on hold in the queue.", (double)held, e) < 0)
            return -1;
    }
    if (ct->spool != NULL && queue_events(ct->spool) != NULL) {
        struct events_stats es;

        events_stats(queue_events(ct->spool), &es);
        if (http_gauge(b, "relaychain_events_buffered", "gauge",
                       "Delivery events in memory waiting for the store.",
                       (double)es.buffered, e) < 0 ||
            http_gauge(b, "relaychain_events_spooled", "gauge",
                       "Delivery events in the spool file waiting for the "
                       "store.",
                       (double)es.spooled, e) < 0 ||
            http_gauge(b, "relaychain_events_written_total", "counter",
                       "Delivery events written to the store.",
                       (double)es.written, e) < 0 ||
            http_gauge(b, "relaychain_events_lost_total", "counter",
                       "Delivery events lost (spool full or failing).",
                       (double)es.lost, e) < 0 ||
            http_gauge(b, "relaychain_events_store_up", "gauge",
                       "1 while the events store takes writes.",
                       es.store_ok ? 1 : 0, e) < 0)
            return -1;
    }
    return 0;
}

/* ---- track: http_metrics_track - the tracking handlers' counters
 * (track_http_stats), when the tracking paths are served. Opens and
 * clicks carry who made them: a person ("human") or a proxy, prefetcher
 * or link scanner ("machine"), as the events record them. */
static int
http_metrics_track(const struct daemon_http *dh, struct buf *b, struct err *e)
{
    struct track_http_stats st;

    if (dh->track == NULL)
        return 0;
    track_http_stats(dh->track, &st);
    if (metrics_family(b, "relaychain_track_opens_total", "counter",
                       "Open pixels served, by who fetched them.", e) < 0 ||
        metrics_value(b, "relaychain_track_opens_total", "by=\"human\"",
                      (double)st.opens, e) < 0 ||
        metrics_value(b, "relaychain_track_opens_total", "by=\"machine\"",
                      (double)st.opens_machine, e) < 0 ||
        metrics_family(b, "relaychain_track_clicks_total", "counter",
                       "Tracked links redirected, by who followed them.",
                       e) < 0 ||
        metrics_value(b, "relaychain_track_clicks_total", "by=\"human\"",
                      (double)st.clicks, e) < 0 ||
        metrics_value(b, "relaychain_track_clicks_total", "by=\"machine\"",
                      (double)st.clicks_machine, e) < 0 ||
        http_gauge(b, "relaychain_track_unsubscribes_total", "counter",
                   "One-click unsubscribes recorded.", (double)st.unsubscribes,
                   e) < 0 ||
        http_gauge(b, "relaychain_track_forged_tokens_total", "counter",
                   "Tracking requests refused with 404: a token that does "
                   "not verify or is of another kind than its path.",
                   (double)st.forged, e) < 0)
        return -1;
    return 0;
}

static void
http_metrics(void *arg, const struct http_req *rq, struct http_resp *rs)
{
    const struct daemon_http *dh = arg;
    struct err e;

    (void)rq;
    rs->content_type = "text/plain; version=0.0.4; charset=utf-8";
    rs->no_store = 1;
    err_clear(&e);
    if (metrics_render(&rs->body, &e) < 0 ||
        http_metrics_daemon(dh, &rs->body, &e) < 0 ||
        http_metrics_track(dh, &rs->body, &e) < 0) { /* ---- track */
        log_warning(NULL, "http: /metrics: %s", e.text);
        buf_reset(&rs->body);
        rs->status = 500;
        (void)buf_puts(&rs->body, "metrics unavailable\n", &e);
        return;
    }
    rs->status = 200;
}

/* http_auth - the check of /dashboard and /api/report's credentials. */
static int
http_auth(void *arg, const char *client, const char *user, const char *pass,
          const char *token)
{
    struct daemon_http *dh = arg;
    struct timespec ts;
    long long now;
    char who[128];
    int ok;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    now = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (auth_rate_take(dh->rate, client, HTTP_AUTH_RATE, now)) {
        log_warning(NULL,
                    "http: client=%s: authentication failure rate limit "
                    "exceeded: more than %d a minute",
                    client, HTTP_AUTH_RATE);
        return 0;
    }
    if (user != NULL)
        ok = dh->users != NULL && auth_verify(dh->users, user, pass);
    else
        ok = dh->token[0] != '\0' && strlen(token) == strlen(dh->token) &&
             CRYPTO_memcmp(token, dh->token, strlen(token)) == 0;
    if (ok) {
        auth_rate_refund(dh->rate, client, HTTP_AUTH_RATE, now);
        return 1;
    }
    httpd_log_text(user != NULL ? user : "", who, sizeof(who));
    log_warning(NULL, "http: client=%s: authentication failed%s%s", client,
                user != NULL ? " for user=" : " (bearer token)", who);
    return 0;
}

static void
http_dashboard(void *arg, const struct http_req *rq, struct http_resp *rs)
{
    struct err e;

    (void)arg;
    (void)rq;
    rs->status = 200;
    rs->content_type = "text/html; charset=utf-8";
    rs->no_store = 1;
    if (buf_puts(&rs->body, http_dashboard_html, &e) < 0)
        rs->status = 503;
}

/* http_param - the value of key in query (a=b&c=d) into out; 0 when
 * absent, -1 when too long. Values are taken as they are: the keys
 * below take letters and digits only. */
static int
http_param(const char *query, const char *key, char *out, size_t n)
{
    size_t klen = strlen(key);
    const char *p = query;

    while (*p != '\0') {
        size_t len = strcspn(p, "&");

        if (len > klen && strncmp(p, key, klen) == 0 && p[klen] == '=') {
            if (len - klen - 1 >= n)
                return -1;
            memcpy(out, p + klen + 1, len - klen - 1);
            out[len - klen - 1] = '\0';
            return 1;
        }
        p += len;
        if (*p == '&')
            p++;
    }
    return 0;
}

static void
http_report(void *arg, const struct http_req *rq, struct http_resp *rs)
{
    const struct daemon_http *dh = arg;
    char by[16], hours[16], *end;
    long long since = 0, h;
    struct events_db *db;
    struct err e;
    int rb, rh;

    rs->content_type = "text/plain; charset=utf-8";
    rs->no_store = 1;
    err_clear(&e);
    rb = http_param(rq->query, "by", by, sizeof(by));
    rh = http_param(rq->query, "hours", hours, sizeof(hours));
    if (rh > 0) {
        h = strtoll(hours, &end, 10);
        if (*end != '\0' || h < 1 || h > 24 * 3660)
            rh = -1;
        else
            since = (long long)time(NULL) - h * 3600;
    }
    if (rb < 0 || rh < 0) {
        rs->status = 400;
        (void)buf_puts(&rs->body,
                       "want ?by=day|hour|domain|sender|stream and "
                       "&hours=N\n",
                       &e);
        return;
    }
    if (dh->events_store == NULL) {
        rs->status = 404;
        (void)buf_puts(&rs->body, "no events_store: no report\n", &e);
        return;
    }
    if ((db = events_db_open(dh->events_store, EVENTS_DB_READONLY, &e)) ==
        NULL) {
        log_warning(NULL, "http: /api/report: events_store: %s", e.text);
        rs->status = 503;
        (void)buf_puts(&rs->body, "the events store cannot be read\n", &e);
        return;
    }
    if (events_report_json(db, rb > 0 ? by : NULL, since, 0, &rs->body, &e) <
        0) {
        struct err e2;

        buf_reset(&rs->body);
        rs->status = e.code == ERR_INPUT ? 400 : 503;
        if (rs->status == 503)
            log_warning(NULL, "http: /api/report: %s", e.text);
        (void)buf_printf(&rs->body, &e2, "%s\n",
                         e.code == ERR_INPUT ? e.text
                                             : "the report failed (see "
                                               "the log)");
    } else {
        rs->status = 200;
        rs->content_type = "application/json";
    }
    events_db_close(db);
}

/* ---- queue history: /api/queue-history, the samples of http_qhist */
static void
http_queue_history(void *arg, const struct http_req *rq, struct http_resp *rs)
{
    const struct daemon_http *dh = arg;
    struct err e;

    (void)rq;
    rs->no_store = 1;
    err_clear(&e);
    if (http_qhist_json(dh->qhist, &rs->body, &e) < 0) {
        log_warning(NULL, "http: /api/queue-history: %s", e.text);
        buf_reset(&rs->body);
        rs->status = 503;
        rs->content_type = "text/plain; charset=utf-8";
        (void)buf_puts(&rs->body, "queue history unavailable\n", &e);
        return;
    }
    rs->status = 200;
    rs->content_type = "application/json";
}

/* http_dashboard_begin - the users, token and routes of /dashboard and
 * /api/report, when a password or token file is set. */
static int
http_dashboard_begin(struct daemon_http *dh, const struct cfg *boot,
                     struct err *e)
{
    const char *pw = cfg_str(boot, "http_password_file"),
               *tf = cfg_str(boot, "http_token_file");

    if (pw == NULL && tf == NULL)
        return 0;
    if (pw != NULL && (dh->users = auth_table_load(pw, e)) == NULL)
        return -1;
    if (tf != NULL && httpd_token_read(tf, dh->token, e) < 0)
        return -1;
    if ((dh->rate = auth_rate_new(HTTP_AUTH_SLOTS, e)) == NULL)
        return -1;
    dh->events_store = cfg_str(boot, "events_store");
    httpd_set_auth(dh->h, http_auth, dh);
    if (httpd_route_methods(dh->h, "/dashboard", HTTPD_GET | HTTPD_AUTH,
                            http_dashboard, dh, e) < 0 ||
        httpd_route_methods(dh->h, "/api/report", HTTPD_GET | HTTPD_AUTH,
                            http_report, dh, e) < 0)
        return -1;
    /* ---- queue history: with a queue, sampled while the daemon runs */
    if (dh->ct->queue_mode &&
        ((dh->qhist = http_qhist_new(dh->ct->queue_dir, e)) == NULL ||
         httpd_route_methods(dh->h, "/api/queue-history",
                             HTTPD_GET | HTTPD_AUTH, http_queue_history, dh,
                             e) < 0))
        return -1;
    return 0;
}

/* ---- track: http_track_begin - with track_key_file, the tracking
 * paths: /o/ and /c/ take GET and HEAD, /u/ GET (the page) and POST (the
 * one-click unsubscribe); events go to the queue's store when there is
 * one, else an unsubscribe answers 503. */
static int
http_track_begin(struct daemon_http *dh, const struct cfg *boot, struct err *e)
{
    struct track_http_settings ts;
    struct events *ev;

    if ((ts.key_file = cfg_str(boot, "track_key_file")) == NULL)
        return 0;
    ts.machine_networks = cfg_str(boot, "track_machine_networks");
    ts.click_window = cfg_num(boot, "track_click_window") / 1000;
    ev = dh->ct->spool != NULL ? queue_events(dh->ct->spool) : NULL;
    if ((dh->track = track_http_new(&ts, ev, e)) == NULL)
        return cfg_err(e, boot, "track_key_file", "%s", e->text);
    if (httpd_route_methods(dh->h, "/o/", HTTPD_GET, track_http_open,
                            dh->track, e) < 0 ||
        httpd_route_methods(dh->h, "/c/", HTTPD_GET, track_http_click,
                            dh->track, e) < 0 ||
        httpd_route_methods(dh->h, "/u/", HTTPD_GET | HTTPD_POST,
                            track_http_unsub, dh->track, e) < 0)
        return -1;
    return 0;
}

int
http_begin(struct daemon_http *dh, struct control *ct,
           const struct pollfd *smtp, size_t nsmtp, const struct cfg *boot,
           struct err *e)
{
    struct httpd_settings s;
    size_t i;

    dh->ct = ct;
    for (i = 0; i < nsmtp && i < sizeof(dh->smtp_fd) / sizeof(dh->smtp_fd[0]);
         i++)
        dh->smtp_fd[i] = smtp[i].fd;
    dh->nsmtp = i;
    if (dh->nfd == 0)
        return 0;
    httpd_settings_from(boot, &s);
    if ((dh->h = httpd_new(&s, e)) == NULL)
        return -1;
    for (i = 0; i < dh->nfd; i++) {
        int fd = dh->fd[i];

        dh->fd[i] = -1;
        if (httpd_add_socket(dh->h, fd, e) < 0)
            return -1;
    }
    dh->nfd = 0;
    if (httpd_route_methods(dh->h, "/healthz", HTTPD_GET, http_healthz, dh,
                            e) < 0 ||
        httpd_route_methods(dh->h, "/metrics", HTTPD_GET, http_metrics, dh,
                            e) < 0 ||
        http_dashboard_begin(dh, boot, e) < 0)
        return -1;
    if (http_track_begin(dh, boot, e) < 0) /* ---- track */
        return -1;
    return httpd_start(dh->h, e);
}

void
http_stopping(struct daemon_http *dh)
{
    atomic_store(&dh->stopping, 1);
}

void
http_end(struct daemon_http *dh)
{
    size_t i;

    httpd_free(dh->h);
    dh->h = NULL;
    track_http_free(dh->track); /* ---- track: after the listener */
    dh->track = NULL;
    http_qhist_free(dh->qhist); /* ---- queue history: after the listener */
    dh->qhist = NULL;
    auth_table_free(dh->users);
    dh->users = NULL;
    auth_rate_free(dh->rate);
    dh->rate = NULL;
    explicit_bzero(dh->token, sizeof(dh->token));
    for (i = 0; i < dh->nfd; i++)
        if (dh->fd[i] >= 0)
            close(dh->fd[i]);
    dh->nfd = 0;
}
