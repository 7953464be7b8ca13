/*
 * antispam_int - what the parts of the antispam stage share
 *
 * The stage is one folder: antispam.c (the stage type: options, init,
 * run, the action by score), antispam_spamd.c (SpamAssassin's spamd
 * protocol) and antispam_rspamd.c (rspamd's HTTP protocol). The stage
 * talks to an engine only through struct flt_as_engine_ops below: it
 * hands it a query and gets a score back, or -1 when the message could
 * not be checked. Nothing here is seen outside the folder but by the
 * tests and the fuzzer.
 */
#ifndef RC_ANTISPAM_INT_H
#define RC_ANTISPAM_INT_H

#include <stddef.h>

#include "util/err.h"

/* What an engine is told about one message (all borrowed). */
struct flt_as_query {
    const char *data; /* the message as it stands, flat */
    size_t len;
    const char *qid;          /* may be NULL */
    const char *sender;       /* envelope sender, "" for <> */
    const char *const *rcpts; /* envelope recipients */
    size_t nrcpts;
    const char *client_addr; /* may be NULL (unknown) */
    const char *client_name; /* may be NULL */
    const char *helo;        /* may be NULL */
    const char *auth_user;   /* may be NULL: not authenticated */
};

/* What it answered. */
#define FLT_AS_SYMBOLS_MAX 1024
struct flt_as_answer {
    double score;                     /* the engine's score */
    double required;                  /* the engine's own spam threshold */
    char symbols[FLT_AS_SYMBOLS_MAX]; /* rule names, comma-separated,
                                         printable ASCII, cut to fit */
};

/* An engine: made once per stage (init), used by many threads at once
 * (check must be thread-safe, e.g. a connection per call or a locked
 * pool), freed at stage free. check returns 0 with a filled answer, or
 * -1 with e set (ERR_IO / ERR_TIMEOUT / ERR_PROTO ...) when the message
 * could not be checked: the stage then applies on_unchecked. Never
 * blocks past timeout_ms in total. */
struct flt_as_engine_ops {
    const char *name; /* "spamd", "rspamd": for the log line */
    void *(*create)(const char *server, int timeout_ms, struct err *e);
    int (*check)(void *eng, const struct flt_as_query *q,
                 struct flt_as_answer *a, struct err *e);
    void (*destroy)(void *eng);
};

extern const struct flt_as_engine_ops flt_as_spamd_ops; /* antispam_spamd.c */
extern const struct flt_as_engine_ops
    flt_as_rspamd_ops; /* antispam_rspamd.c */

/* flt_as_spamd_parse - one whole spamd reply to SYMBOLS (status line,
 * headers, the empty line, the rule names) into a: score and required
 * from its "Spam:" header, symbols from the body (printable ASCII without
 * white space, cut at a comma to fit). Returns 0, or -1 with e set
 * (ERR_TEMP) for an error status, a reply that is cut short or that is
 * not one. Exported for the fuzzer and the tests. */
int flt_as_spamd_parse(const char *reply, size_t len, struct flt_as_answer *a,
                       struct err *e);

/* The actions, shared by the score thresholds and on_unchecked (its
 * choices are indexed by them). */
enum flt_as_action {
    FLT_AS_CONTINUE,
    FLT_AS_QUARANTINE,
    FLT_AS_REJECT,
    FLT_AS_TEMPFAIL,
    FLT_AS_NACTIONS
};

/* The score thresholds of a stage; a has_ flag of 0 means the action
 * never happens by score. */
struct flt_as_thresholds {
    int has_quarantine;
    double quarantine;
    int has_reject;
    double reject;
};

/* flt_as_decide - the action for score: reject at or over the reject
 * score, else quarantine at or over the quarantine score, else continue.
 * A score that is not a number (NaN) is never taken for a low one: the
 * caller treats it as unchecked before it gets here, and this returns
 * FLT_AS_TEMPFAIL for it. */
enum flt_as_action flt_as_decide(const struct flt_as_thresholds *t,
                                 double score);

/* flt_as_client_name - the client's host name as the engines are told
 * it: NULL when the front end does not know one. The SMTP front end
 * says "unknown", as Postfix does; a milter is given Sendmail's
 * "[192.0.2.1]" by Postfix and Sendmail alike. Either, passed on, would
 * read as a name that resolved. */
const char *flt_as_client_name(const char *name);

/* flt_as_rspamd_parse - read rspamd's /checkv2 JSON reply (len octets,
 * no NUL needed) into a: score, required_score and the names of the
 * symbols, highest score first. -1 with e set when it is not JSON, is
 * rspamd's error object, or lacks a finite score or required_score. */
int flt_as_rspamd_parse(const char *json, size_t len, struct flt_as_answer *a,
                        struct err *e);

#endif
