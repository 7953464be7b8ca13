/*
 * log - Postfix-shaped log lines to syslog (facility mail) or stderr
 *
 * See log.h. The sink and ident are written once by log_open() before any
 * thread starts and only read afterwards; syslog(3) is thread-safe, and a
 * stderr line is formatted whole and written with one write(2) so lines
 * from several threads do not interleave.
 *
 * log_sink_foreground() compares $JOURNAL_STREAM ("device:inode", set by
 * systemd for a service whose stderr is the journal) with fstat() of
 * stderr, as sd_journal_stream_fd(3) recommends: a child whose stderr was
 * redirected elsewhere inherits the variable but not the stream.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

/* Written only by log_open(), before threads exist (see above). */
static enum log_sink log_sink_kind = LOG_SINK_STDERR;
static char log_ident[64] = "relaychain";
static char log_host[64] = "localhost";

void
log_open(const char *ident, int facility, enum log_sink sink)
{
    char host[256];
    size_t n;

    snprintf(log_ident, sizeof(log_ident), "%s", ident);
    log_sink_kind = sink;
    if (sink == LOG_SINK_SYSLOG)
        openlog(log_ident, LOG_PID | LOG_NDELAY, facility);
    /* The short host name, as rsyslog writes it in mail.log. */
    if (sink == LOG_SINK_TERMINAL && gethostname(host, sizeof(host)) == 0) {
        host[sizeof(host) - 1] = '\0';
        n = strcspn(host, ".");
        if (n > 0 && n < sizeof(log_host)) {
            memcpy(log_host, host, n);
            log_host[n] = '\0';
        }
    }
}

/* log_journal_is_stderr - whether $JOURNAL_STREAM names stderr. */
static int
log_journal_is_stderr(void)
{
    const char *v = getenv("JOURNAL_STREAM");
    uintmax_t dev, ino;
    struct stat st;
    char *end;

    if (v == NULL || fstat(STDERR_FILENO, &st) < 0)
        return 0;
    errno = 0;
    dev = strtoumax(v, &end, 10);
    if (errno != 0 || end == v || *end != ':')
        return 0;
    v = end + 1;
    ino = strtoumax(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0')
        return 0;
    return dev == (uintmax_t)st.st_dev && ino == (uintmax_t)st.st_ino;
}

enum log_sink
log_sink_foreground(void)
{
    if (log_journal_is_stderr())
        return LOG_SINK_SYSLOG;
    if (isatty(STDERR_FILENO))
        return LOG_SINK_TERMINAL;
    return LOG_SINK_STDERR;
}

void
log_close(void)
{
    if (log_sink_kind == LOG_SINK_SYSLOG)
        closelog();
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

/* log_stamp - "Dec  7 00:27:45 host " for a terminal, "" otherwise. */
static void
log_stamp(char *out, size_t size)
{
    struct tm tm;
    time_t now;
    size_t n;

    out[0] = '\0';
    if (log_sink_kind != LOG_SINK_TERMINAL)
        return;
    now = time(NULL);
    if (localtime_r(&now, &tm) == NULL ||
        (n = strftime(out, size, "%b %e %H:%M:%S ", &tm)) == 0)
        return;
    snprintf(out + n, size - n, "%s ", log_host);
}

void
log_msg(int prio, const char *qid, const char *fmt, ...)
{
    char text[2048], line[2300], stamp[96];
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
    log_stamp(stamp, sizeof(stamp));
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
    (void)!write(STDERR_FILENO, line, (size_t)n);
}
