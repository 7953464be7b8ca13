/*
 * ratelimit - the rules of a rate_limits file and the sliding window
 *
 * A rate_limits file has one rule a line, "WHO COUNT/PERIOD [messages |
 * recipients]", '#' comments and blank lines ignored. WHO is one of
 * client:ADDR or client:CIDR, user:NAME (the SMTP AUTH login),
 * sender_domain:DOM, rcpt_domain:DOM, stream:NAME (a stream of the
 * delivery events' stream_map; the caller checks that one is set). PERIOD is
 * a number with s, m, h or d. Every refusal is "path:line: reason".
 *
 * Counting is a sliding window made of two fixed windows of PERIOD: the
 * estimate at time t is cur + prev * (1 - (t mod PERIOD) / PERIOD),
 * where cur is the count of the window t falls in and prev that of the
 * one before. It is exact when the previous window's events were spread
 * evenly and never off by more than prev otherwise; it needs two
 * integers a key, which is what a shared store can keep atomically. The
 * same arithmetic runs in the memory store and in Redis' Lua script
 * (net/ratestate.c).
 *
 * struct ratelimit_set is read-only after ratelimit_load() and may be
 * shared by threads; ratelimit_set_free() accepts NULL. Nothing here
 * does I/O beyond reading the file, and nothing logs.
 */
#ifndef RC_RATELIMIT_H
#define RC_RATELIMIT_H

#include <stddef.h>

#include "util/err.h"

struct cidr_list;

enum ratelimit_who {
    RATELIMIT_CLIENT,
    RATELIMIT_USER,
    RATELIMIT_SENDER_DOMAIN,
    RATELIMIT_RCPT_DOMAIN,
    RATELIMIT_STREAM
};
enum ratelimit_unit { RATELIMIT_MESSAGES, RATELIMIT_RECIPIENTS };

#define RATELIMIT_RULES_MAX 1000 /* rules a file may hold */
#define RATELIMIT_VALUE_MAX 255  /* octets of the part after "who:" */
#define RATELIMIT_COUNT_MAX 1000000000LL
#define RATELIMIT_PERIOD_MAX (7LL * 86400 * 1000) /* a week, in ms */

struct ratelimit_rule {
    enum ratelimit_who who;
    enum ratelimit_unit unit;
    char value[RATELIMIT_VALUE_MAX + 1]; /* as written; domains lower case */
    struct cidr_list *net;               /* client: the network */
    long long count;                     /* allowed per period */
    long long period_ms;
    unsigned line; /* of the file, for the log */
    char id[512];  /* "path:line who:value", for the log */
    char key[300]; /* "who:value" in the counters' key space */
};

struct ratelimit_set {
    struct ratelimit_rule *rules;
    size_t n;
    char *path;
};

/* ratelimit_load - read and check the file at path. NULL with e set
 * ("path:line: reason", ERR_CONFIG) on any refusal. */
struct ratelimit_set *ratelimit_load(const char *path, struct err *e);
/* ratelimit_parse_text - the same over text (tests, fuzzing); name is
 * used in the errors. */
struct ratelimit_set *ratelimit_parse_text(const char *name, const char *text,
                                           size_t len, struct err *e);
/* ratelimit_first_of - the first rule of s about who, or NULL. */
const struct ratelimit_rule *ratelimit_first_of(const struct ratelimit_set *s,
                                                enum ratelimit_who who);
void ratelimit_set_free(struct ratelimit_set *s);

/* ratelimit_parse_period - "10s", "1m", "2h", "1d" in ms; 0 or -1. */
int ratelimit_parse_period(const char *s, long long *ms);

/* ratelimit_window - the fixed window now_ms falls in. */
long long ratelimit_window(long long now_ms, long long period_ms);
/* ratelimit_estimate - the sliding count at now_ms from the current
 * window's count cur and the previous one's prev. */
double ratelimit_estimate(long long prev, long long cur, long long now_ms,
                          long long period_ms);
/* ratelimit_allows - 1 when adding n to the sliding count keeps it at or
 * under the rule's count. */
int ratelimit_allows(long long prev, long long cur, long long n,
                     long long count, long long now_ms, long long period_ms);

/* What one SMTP command is about; strings borrowed, NULL where unknown. */
struct ratelimit_event {
    const char *client_addr;
    const char *user;
    const char *sender_domain;
    const char *rcpt_domain; /* RCPT only */
    const char *stream;      /* the message's stream, NULL: none */
    int at_rcpt;             /* 0: MAIL (a message), 1: RCPT */
    int first_of_domain;     /* RCPT: the first recipient in rcpt_domain
                                of the transaction */
};

/* ratelimit_match - the rules ev counts toward, their indexes into
 * out[] (at most max); returns how many. At MAIL: message rules on the
 * client, user and sender domain. At RCPT: recipient rules of every
 * kind, and message rules on the recipient domain for the first
 * recipient in it. */
size_t ratelimit_match(const struct ratelimit_set *s,
                       const struct ratelimit_event *ev, size_t *out,
                       size_t max);

/* ratelimit_message - what one whole transaction counts toward: the
 * message rules that msg (client, user, sender domain, stream) falls
 * under, each recipient (rcpt(arg, 0 .. nrcpts-1)) toward the
 * recipient rules and the message rules of its domain, a message rule
 * counting once. The rules' indexes in idx[], the amounts in amount[]
 * (each with room for s->n), how many in *n. 0, or -1 with e set (out
 * of memory). One request to the shared store carries it all. */
int ratelimit_message(const struct ratelimit_set *s,
                      const struct ratelimit_event *msg,
                      const char *(*rcpt)(const void *, size_t),
                      const void *arg, size_t nrcpts, size_t *idx,
                      long long *amount, size_t *n, struct err *e);

/* ratelimit_domain - the domain of an address (lower case into out), or
 * "" for the null sender or an address without one. */
const char *ratelimit_domain(const char *addr, char *out, size_t n);

#endif
