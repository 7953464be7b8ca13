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
 *             backlog, start and last reload), Prometheus text format.
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
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "daemon/daemon_int.h"
#include "net/httpd.h"
#include "queue/events.h"
#include "queue/queue.h"
#include "util/log.h"
#include "util/metrics.h"

#define HTTP_METRICS_LIMIT (4 * 1024 * 1024)

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
 * when none); -1 when dir cannot be read. */
static long
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
            snprintf(why, n, "queue directory %s not writable: %s", sub,
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
        http_metrics_daemon(dh, &rs->body, &e) < 0) {
        log_warning(NULL, "http: /metrics: %s", e.text);
        buf_reset(&rs->body);
        rs->status = 500;
        (void)buf_puts(&rs->body, "metrics unavailable\n", &e);
        return;
    }
    rs->status = 200;
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
                            e) < 0)
        return -1;
    /* The tracking and unsubscribe paths register here, one
     * httpd_route() each. */
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
    for (i = 0; i < dh->nfd; i++)
        if (dh->fd[i] >= 0)
            close(dh->fd[i]);
    dh->nfd = 0;
}
