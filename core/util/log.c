/*
 * log - Postfix-shaped log lines to syslog (facility mail) or stderr
 *
 * See log.h. The sink and ident are written once by log_open() (or
 * log_open_file()) before any thread starts and only read afterwards;
 * syslog(3) is thread-safe, and a stderr or maillog_file line is
 * formatted whole and written with one write(2) (O_APPEND for the file)
 * so lines from several threads and processes do not interleave.
 * Control characters in a line
 * are escaped (\xHH) whoever passed them: the last defence against text
 * from clients that forges or garbles log lines.
 *
 * log_sink_foreground() compares $JOURNAL_STREAM ("device:inode", set by
 * systemd for a service whose stderr is the journal) with fstat() of
 * stderr, as sd_journal_stream_fd(3) recommends: a child whose stderr was
 * redirected elsewhere inherits the variable but not the stream.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"

/* Written only by log_open(), before threads exist (see above). */
static enum log_sink log_sink_kind = LOG_SINK_STDERR;
static char log_ident[64] = "relaychain";
static int log_fd = STDERR_FILENO;
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

/* log_escape - text with every control character (and DEL) written as
 * \xHH, into out (size n), cut before an escape that does not fit. Text
 * from clients (HELO names, addresses, login names, replies) ends up in
 * lines: a CR or LF there would forge a line of its own, an ESC would
 * drive the terminal of whoever reads the log. Returns text itself when
 * it has nothing to escape, else out. */
static const char *
log_escape(const char *text, char *out, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)text;
    size_t used = 0;

    while (*p >= 0x20 && *p != 0x7f)
        p++;
    if (*p == '\0')
        return text;
    for (p = (const unsigned char *)text; *p != '\0'; p++) {
        if (*p >= 0x20 && *p != 0x7f) {
            if (used + 1 >= n)
                break;
            out[used++] = (char)*p;
            continue;
        }
        if (used + 4 >= n)
            break;
        out[used++] = '\\';
        out[used++] = 'x';
        out[used++] = hex[*p >> 4];
        out[used++] = hex[*p & 15];
    }
    out[used] = '\0';
    return out;
}

/* log_stamp - "Dec  7 00:27:45 host " for a terminal, "" otherwise. */
static void
log_stamp(char *out, size_t size)
{
    struct tm tm;
    time_t now;
    size_t n;

    out[0] = '\0';
    if (log_sink_kind != LOG_SINK_TERMINAL && log_sink_kind != LOG_SINK_FILE)
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
    char raw[2048], escaped[2048], line[2300], stamp[100], qbuf[64];
    const char *text;
    va_list ap;
    int n;

    if (log_sink_kind == LOG_SINK_NONE)
        return;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    text = log_escape(raw, escaped, sizeof(escaped));
    if (qid != NULL) /* the MTA's {i} in milter mode */
        qid = log_escape(qid, qbuf, sizeof(qbuf));
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
    (void)!write(log_fd, line, (size_t)n);
}
