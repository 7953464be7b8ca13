/*
 * antispam_int - the antispam stage's engines
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

/* flt_as_rspamd_parse - read rspamd's /checkv2 JSON reply (len octets,
 * no NUL needed) into a: score, required_score and the names of the
 * symbols, highest score first. -1 with e set when it is not JSON, is
 * rspamd's error object, or lacks a finite score or required_score. */
int flt_as_rspamd_parse(const char *json, size_t len, struct flt_as_answer *a,
                        struct err *e);

#endif
