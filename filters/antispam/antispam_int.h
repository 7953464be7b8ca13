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
#include <time.h>

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

/* ------------------------------------------------ compromised accounts
 * antispam_hold.c: per key ("user:NAME" for an authenticated user,
 * "client:ADDR" for a client that relays without AUTH) a sliding window
 * of counts and a baseline, and the holds kept as files. */

/* The measures a key is judged on against its own baseline. */
enum flt_as_hold_measure {
    FLT_AS_HM_MESSAGES,
    FLT_AS_HM_RCPTS,   /* distinct recipients (see antispam_hold.c) */
    FLT_AS_HM_DOMAINS, /* destination domains the key had not used */
    FLT_AS_HM_N
};

/* The limits of a tracker (from hold_* keys). A max of 0 is no ceiling;
 * max_spam_share of 1 or more is none. */
struct flt_as_hold_limits {
    long long window;                   /* seconds, >= 10 */
    double factor;                      /* times the baseline, > 1 */
    unsigned long floor[FLT_AS_HM_N];   /* below these nobody is held */
    unsigned long ceiling[FLT_AS_HM_N]; /* past these anybody is */
    double max_spam_share;              /* of the scored messages */
    unsigned long min_scored;           /* share judged from this many */
    size_t max_keys;                    /* keys remembered at most */
};

/* What one message adds to its key (all borrowed). */
struct flt_as_hold_obs {
    const char *const *rcpts;
    size_t nrcpts;
    int scored; /* the engine answered */
    int spam;   /* and the score was at or over its own required */
};

/* The counts of a key over the window, and its baseline per window. */
struct flt_as_hold_counts {
    unsigned long n[FLT_AS_HM_N];
    unsigned long scored, spam;
    double baseline[FLT_AS_HM_N];
    unsigned periods; /* whole windows the baseline has seen */
};

#define FLT_AS_HOLD_KEY_MAX 320
#define FLT_AS_HOLD_WHY_MAX 200

struct flt_as_hold;

/* flt_as_hold_new - a tracker with limits l (copied); dfd is the
 * hold_directory it keeps holds in (an O_DIRECTORY descriptor it then
 * owns) or -1 for memory only (the tests). NULL with e set. */
struct flt_as_hold *flt_as_hold_new(const struct flt_as_hold_limits *l,
                                    int dfd, struct err *e);
void flt_as_hold_free(struct flt_as_hold *h);

/* flt_as_hold_key - the tracker's key for a message: "user:NAME" when
 * auth_user is set, else "client:ADDR", into out (size
 * FLT_AS_HOLD_KEY_MAX). NULL when neither is known or it does not fit
 * (the message is then not tracked). */
const char *flt_as_hold_key(const char *auth_user, const char *client_addr,
                            char *out, size_t n);

/* flt_as_hold_is_held - 1 when key is held at now, 0 when not. A key
 * held in memory whose file is gone (relaychain user release) is
 * released here: its window starts again, its baseline stays. Thread-
 * safe. */
int flt_as_hold_is_held(struct flt_as_hold *h, const char *key, time_t now);

/* flt_as_hold_record - count one message of key at now and judge it.
 * Returns 1 when this message put key past a limit: key is now held
 * (with its file written when the tracker has a directory; a file that
 * could not be written is logged, and the key is judged again at its
 * next message), and why says which measure, in words; 0 when not.
 * Thread-safe. */
int flt_as_hold_record(struct flt_as_hold *h, const char *key,
                       const struct flt_as_hold_obs *o, time_t now, char *why,
                       size_t n);

/* flt_as_hold_release - lift key's hold in memory and start its window
 * again (the tests; the daemon learns of a release by the file). 0, or
 * -1 when key is not known. */
int flt_as_hold_release(struct flt_as_hold *h, const char *key, time_t now);

/* flt_as_hold_counts - key's counts at now into c; -1 when key is not
 * known. For the tests and the log. */
int flt_as_hold_counts(struct flt_as_hold *h, const char *key, time_t now,
                       struct flt_as_hold_counts *c);

/* flt_as_hold_nkeys - how many keys the tracker remembers. */
size_t flt_as_hold_nkeys(struct flt_as_hold *h);

/* flt_as_hold_judge - the decision, pure: 1 with why filled when counts
 * c are past a ceiling of l, or past both a floor and factor times the
 * baseline (once the baseline has seen a whole window); 0 otherwise. */
int flt_as_hold_judge(const struct flt_as_hold_limits *l,
                      const struct flt_as_hold_counts *c, char *why, size_t n);

/* flt_as_hold_load - read the holds of the tracker's directory (files
 * written by an earlier run) into memory. Returns how many, or -1 with
 * e set when the directory cannot be read. */
long flt_as_hold_load(struct flt_as_hold *h, time_t now, struct err *e);

/* flt_as_hold_dir - the O_DIRECTORY descriptor of path, made (mode 0750)
 * when missing and create is set; -1 with e. */
int flt_as_hold_dir(const char *path, int create, struct err *e);

#endif
