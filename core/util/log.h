/*
 * log - Postfix-shaped log lines to syslog (facility mail) or stderr
 *
 * Every line about a message starts with its queue id, "NOQUEUE" before one
 * is known, so relaychain's lines interleave with Postfix's own:
 *
 *     relaychaind[812]: 6A0F3C21B7: antivirus: continue, result=clean, 3ms
 *
 * log_open() is called once by main() before any thread starts; the sink it
 * chooses is the only process-wide state here (syslog itself is per
 * process). Never pass bodies, keys or passwords to these functions.
 *
 * A daemon in the foreground (-f) asks log_sink_foreground() where to
 * write: under systemd, whose journal reads stderr, lines go to syslog(3)
 * so that they keep facility mail and their priority (the journal takes
 * them from /dev/log, and rsyslog's mail.log gets them as it gets
 * Postfix's); on a terminal they go to stderr with a syslog-style time
 * stamp; anywhere else (a pipe, a file) to stderr as they are.
 */
#ifndef RC_LOG_H
#define RC_LOG_H

#include <syslog.h>

enum log_sink {
    LOG_SINK_SYSLOG,
    LOG_SINK_STDERR,
    LOG_SINK_NONE,
    LOG_SINK_TERMINAL, /* stderr, each line with a time stamp and host */
    LOG_SINK_FILE      /* maillog_file: only through log_open_file() */
};

/* log_open - choose the sink; ident is the program name in each line. */
void log_open(const char *ident, int facility, enum log_sink sink);
void log_close(void);

/* log_sink_foreground - LOG_SINK_SYSLOG when stderr is the stream that
 * $JOURNAL_STREAM names (systemd's journal), LOG_SINK_TERMINAL when it is
 * a terminal, LOG_SINK_STDERR otherwise. */
enum log_sink log_sink_foreground(void);

/* log_open_file - lines go to path (appended, created mode 0600), each
 * with a syslog-style time and host name before it, as Postfix's
 * maillog_file. Returns 0, or -1 with errno when path cannot be opened;
 * the sink is then unchanged. */
int log_open_file(const char *ident, const char *path);

/* log_facility_parse - "mail", "local0".."local7", "daemon", "user";
 * returns the LOG_* value or -1. */
int log_facility_parse(const char *name);

/* log_msg - one line; qid may be NULL for lines that are not about a
 * message ("starting", "reload"). Control characters in the line are
 * written as \xHH. */
void log_msg(int prio, const char *qid, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_info(qid, ...) log_msg(LOG_INFO, (qid), __VA_ARGS__)
#define log_warning(qid, ...) log_msg(LOG_WARNING, (qid), __VA_ARGS__)
#define log_error(qid, ...) log_msg(LOG_ERR, (qid), __VA_ARGS__)

#endif
