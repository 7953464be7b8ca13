/*
 * metrics - the process's counters for /metrics, lock-free
 *
 * Every layer counts what it sees through the calls below: a front end
 * the messages it finished and their verdict, the chain each stage's run
 * (duration and verdict), the next-hop client each reply it read, the
 * SMTP front end its connections, TLS handshakes and AUTH attempts.
 * Counting is one atomic add (stdatomic, relaxed): no lock, no
 * allocation, nothing that can fail, so no path of a message waits on
 * it or is refused for it.
 *
 * The counters are process-wide by nature, like the log sink, and are
 * the one mutable state of this module: a fixed table, zero at start,
 * never freed. Stage series are keyed by the stage's name: the first
 * METRICS_STAGE_MAX names each get a slot for the life of the process
 * (a stage renamed by a reload gets a new one; past the table's end a
 * stage is counted under the name "other").
 *
 * metrics_render() writes them in the Prometheus text exposition format
 * (version 0.0.4): relaychain_* names, units in the names, _total for
 * counters, histograms as _bucket, _sum and _count. The caller (the
 * daemon's /metrics) adds the gauges it reads at scrape time with
 * metrics_family() and metrics_value(). Nothing here prints or logs.
 */
#ifndef RC_METRICS_H
#define RC_METRICS_H

#include <stddef.h>

#include "util/buf.h"
#include "util/err.h"

enum metrics_frontend {
    METRICS_FE_SMTPD,
    METRICS_FE_MILTER,
    METRICS_FE_COUNT
};

/* What became of a message a front end took to the end of its data. */
enum metrics_outcome {
    METRICS_MSG_PASSED,      /* the chain passed it on (to be queued or
                                relayed) */
    METRICS_MSG_REJECTED,    /* 5xx: by a stage, a limit or the front end */
    METRICS_MSG_TEMPFAILED,  /* 4xx: by a stage or an error */
    METRICS_MSG_DISCARDED,   /* accepted and dropped */
    METRICS_MSG_QUARANTINED, /* accepted and held */
    METRICS_MSG_COUNT
};

/* A stage's verdict, in the order of enum verdict_kind (chain/stage.h). */
#define METRICS_VERDICT_COUNT 5

/* The upper bounds of the stage duration buckets, in seconds. */
#define METRICS_BUCKETS 14
#define METRICS_STAGE_MAX 64
#define METRICS_STAGE_NAME_MAX 64

enum metrics_counter {
    METRICS_SMTPD_CONNECTIONS,
    METRICS_SMTPD_TLS_OK,
    METRICS_SMTPD_TLS_FAILED,
    METRICS_SMTPD_AUTH_OK,
    METRICS_SMTPD_AUTH_FAILED,
    METRICS_MILTER_CONNECTIONS,
    METRICS_NEXTHOP_1XX, /* unused by SMTP; kept so class = code / 100 */
    METRICS_NEXTHOP_2XX,
    METRICS_NEXTHOP_3XX,
    METRICS_NEXTHOP_4XX,
    METRICS_NEXTHOP_5XX,
    METRICS_HTTP_2XX,
    METRICS_HTTP_3XX,
    METRICS_HTTP_4XX,
    METRICS_HTTP_5XX,
    METRICS_COUNTER_COUNT
};

/* metrics_archive_backlog - the archive spools' backlog changed by
 * delta records (each spool reports the difference from its last
 * count, so the gauge is their sum). */
void metrics_archive_backlog(long long delta);

/* metrics_add - count n more of c. */
void metrics_add(enum metrics_counter c, unsigned long long n);

/* metrics_message - one message finished by front end fe. */
void metrics_message(enum metrics_frontend fe, enum metrics_outcome o);

/* metrics_nexthop_reply - one reply of the next hop, by its code's class
 * (codes outside 200..599 are not counted). */
void metrics_nexthop_reply(int code);

/* metrics_http_reply - one reply of the HTTP listener, by status class. */
void metrics_http_reply(int status);

/* metrics_stage - one run of the stage called name: its duration in
 * microseconds and its verdict (enum verdict_kind's value; an out of
 * range one is not counted as a verdict). */
void metrics_stage(const char *name, long long usec, int verdict);

/* metrics_messages - the messages of fe with outcome o so far. */
unsigned long long metrics_messages(enum metrics_frontend fe,
                                    enum metrics_outcome o);

/* metrics_outcome_name - "passed", "rejected"...; "" out of range. */
const char *metrics_outcome_name(enum metrics_outcome o);

/* metrics_get - the value of c now (tests, /healthz). */
unsigned long long metrics_get(enum metrics_counter c);

/* metrics_render - every series of this module, appended to out in the
 * text exposition format. 0, or -1 with e (out's limit, memory). */
int metrics_render(struct buf *out, struct err *e);

/* metrics_family - the # HELP and # TYPE lines of one family; type is
 * "counter", "gauge" or "histogram". */
int metrics_family(struct buf *out, const char *name, const char *type,
                   const char *help, struct err *e);

/* metrics_value - one sample: name, labels ("" or 'key="value"', the
 * caller's, already escaped) and the value. */
int metrics_value(struct buf *out, const char *name, const char *labels,
                  double value, struct err *e);

/* metrics_label_escape - v as a label value (\\, \" and \n escaped),
 * at most n - 1 octets into out, cut at a whole escape. */
void metrics_label_escape(const char *v, char *out, size_t n);

/* metrics_reset - every counter and stage slot back to zero; for tests
 * only, with no other thread counting. */
void metrics_reset(void);

#endif
