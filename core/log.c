/*
 * log - Postfix-shaped log lines to syslog (facility mail) or stderr
 *
 * See log.h. The sink and ident are written once by log_open() (or
 * log_open_file()) before any thread starts and only read afterwards;
 * syslog(3) is thread-safe, and a stderr or maillog_file line is
 * formatted whole and written with one write(2) (O_APPEND for the file)
 * so lines from several threads and processes do not interleave.
 */
#include "config.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* Written only by log_open(), before threads exist (see above). */
static enum log_sink log_sink_kind = LOG_SINK_STDERR;
static char log_ident[64] = "relaychain";
static int log_fd = STDERR_FILENO;
static char log_host[64] = "localhost";

void
log_open(const char *ident, int facility, enum log_sink sink)
{
    snprintf(log_ident, sizeof(log_ident), "%s", ident);
    log_sink_kind = sink;
    if (sink == LOG_SINK_SYSLOG)
        openlog(log_ident, LOG_PID | LOG_NDELAY, facility);
}

int
log_open_file(const char *ident, const char *path)
{
    int fd =
        open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOCTTY | O_CLOEXEC, 0600);
    char *dot;

    if (fd < 0)
        return -1;
    snprintf(log_ident, sizeof(log_ident), "%s", ident);
    if (gethostname(log_host, sizeof(log_host)) < 0)
        snprintf(log_host, sizeof(log_host), "localhost");
    log_host[sizeof(log_host) - 1] = '\0';
    if ((dot = strchr(log_host, '.')) != NULL)
        *dot = '\0';
    log_fd = fd;
    log_sink_kind = LOG_SINK_FILE;
    return 0;
}

void
log_close(void)
{
    if (log_sink_kind == LOG_SINK_SYSLOG)
        closelog();
    if (log_sink_kind == LOG_SINK_FILE && log_fd != STDERR_FILENO) {
        close(log_fd);
        log_fd = STDERR_FILENO;
        log_sink_kind = LOG_SINK_STDERR;
    }
}

int
log_facility_parse(const char *name)
{
    static const struct {
        const char *name;
        int value;
    } table[] = {
        {"mail", LOG_MAIL},     {"daemon", LOG_DAEMON}, {"user", LOG_USER},
        {"local0", LOG_LOCAL0}, {"local1", LOG_LOCAL1}, {"local2", LOG_LOCAL2},
        {"local3", LOG_LOCAL3}, {"local4", LOG_LOCAL4}, {"local5", LOG_LOCAL5},
        {"local6", LOG_LOCAL6}, {"local7", LOG_LOCAL7},
    };
    size_t i;

    for (i = 0; i < sizeof(table) / sizeof(table[0]); i++)
        if (strcasecmp(name, table[i].name) == 0)
            return table[i].value;
    return -1;
}

static const char *
log_level_word(int prio)
{
    switch (prio) {
    case LOG_ERR:
    case LOG_CRIT:
    case LOG_ALERT:
    case LOG_EMERG:
        return "error: ";
    case LOG_WARNING:
        return "warning: ";
    default:
        return "";
    }
}

void
log_msg(int prio, const char *qid, const char *fmt, ...)
{
    char text[2048], line[2300], stamp[100];
    va_list ap;
    int n;

    if (log_sink_kind == LOG_SINK_NONE)
        return;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    /* Postfix writes "warning: " and "error: " before the queue id. */
    if (log_sink_kind == LOG_SINK_SYSLOG) {
        if (qid != NULL)
            syslog(prio, "%s%s: %s", log_level_word(prio), qid, text);
        else
            syslog(prio, "%s%s", log_level_word(prio), text);
        return;
    }
    stamp[0] = '\0';
    if (log_sink_kind == LOG_SINK_FILE) {
        time_t now = time(NULL);
        struct tm tm;
        size_t k;

        localtime_r(&now, &tm);
        k = strftime(stamp, sizeof(stamp) - 1, "%b %e %H:%M:%S ", &tm);
        snprintf(stamp + k, sizeof(stamp) - k, "%s ", log_host);
    }
    if (qid != NULL)
        n = snprintf(line, sizeof(line), "%s%s[%ld]: %s%s: %s\n", stamp,
                     log_ident, (long)getpid(), log_level_word(prio), qid,
                     text);
    else
        n = snprintf(line, sizeof(line), "%s%s[%ld]: %s%s\n", stamp, log_ident,
                     (long)getpid(), log_level_word(prio), text);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof(line))
        n = (int)sizeof(line) - 1;
    (void)!write(log_fd, line, (size_t)n);
}
