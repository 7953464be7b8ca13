/*
 * stage - the contract between the chain and one content stage
 *
 * A stage type is one static const struct stage_type in filters/, listed
 * in the registry the program hands the chain (chain/registry.h). For each
 * chain.d file naming it, the chain allocates a struct stage, fills the
 * common part (name, config, match condition, on_error, the services of
 * env) and calls init(), which builds the long-lived, thread-safe
 * objects and keeps them in priv. run() is then called for each message,
 * possibly from many threads at once: it may only read stage, and it
 * creates and frees its per-message objects itself. free() releases priv.
 *
 * A chain loaded for checking only ("relaychain check") has check_only
 * set before init() runs: init() must refuse everything it would refuse
 * otherwise, but may skip building what only run() needs and what costs
 * time (the antivirus stage checks its database files without compiling
 * an engine); run() is never called on such a stage.
 *
 * run() returns 0 with a verdict, or -1 with e filled. A verdict other
 * than continue stops the chain; an error becomes the stage's on_error
 * policy (tempfail by default), so mail is never passed unprocessed by
 * accident. A stage changes the message only through msg_* calls, and only
 * in the ways its flags declare.
 *
 * What a stage needs of the world beyond the message reaches it through
 * st->env, the chain's services, which the program supplies (a stage
 * never calls the layers above the chain: core/README). A service the
 * program does not offer is NULL; a stage whose configuration needs it
 * refuses to load.
 */
#ifndef RC_STAGE_H
#define RC_STAGE_H

#include <stddef.h>

#include "util/buf.h"
#include "util/cfg.h"
#include "util/err.h"
#include "msg/msg.h"

/* What a stage may change. A configuration in which a stage with
 * STAGE_EDITS_HEADERS or STAGE_EDITS_BODY follows one with STAGE_SIGNS does
 * not load. Nor does one in which such a stage follows one with
 * STAGE_ENCRYPTS, unless it signs: a signer after the encryption signs
 * the encrypted form (DKIM), anything else would edit mail that is
 * already sealed. */
#define STAGE_EDITS_HEADERS 0x01u
#define STAGE_EDITS_BODY 0x02u
#define STAGE_EDITS_SENDER 0x04u
#define STAGE_EDITS_RCPTS 0x08u
#define STAGE_SIGNS 0x10u
#define STAGE_ENCRYPTS 0x20u

enum verdict_kind {
    VERDICT_CONTINUE,
    VERDICT_REJECT,    /* 5xx */
    VERDICT_TEMPFAIL,  /* 4xx */
    VERDICT_DISCARD,   /* accept and drop */
    VERDICT_QUARANTINE /* accept and hold */
};

#define VERDICT_REPLY_MAX 256
#define VERDICT_NOTE_MAX 256

struct verdict {
    enum verdict_kind kind;
    char reply[VERDICT_REPLY_MAX]; /* "554 5.7.1 text" for reject/tempfail */
    char note[VERDICT_NOTE_MAX];   /* short log text: "result=clean" */
};

/* verdict_set - fill v; reply may be NULL for continue/discard/quarantine.
 * Returns 0 so a stage can "return verdict_set(...)". */
int verdict_set(struct verdict *v, enum verdict_kind kind, const char *reply,
                const char *note_fmt, ...)
    __attribute__((format(printf, 4, 5)));
const char *verdict_kind_name(enum verdict_kind kind);

/* The common match condition every stage has (keys match_sender,
 * match_recipient, match_client, match_auth). */
struct match;

enum stage_on_error { STAGE_ON_ERROR_TEMPFAIL, STAGE_ON_ERROR_CONTINUE };

struct stage;

/* A reply of the next hop, for a stage's log line: code 0 when there was
 * none, with the local reason in text. */
struct stage_reply {
    int code;
    char text[512];
};

/* The program's sender of notices (its next-hop client); opaque here. */
struct stage_notifier;

/* The chain's services (see above). Read-only, shared by every stage and
 * thread; the functions may be called from run() in many threads at
 * once. */
struct stage_env {
    /* notifier_new - a sender of notices to next_hop (a next_hop value as
     * in relaychain.conf, "smtp:[127.0.0.1]:25"), greeting with helo; the
     * next hop is checked, not contacted. NULL with e set (ERR_CONFIG for
     * a bad next_hop). Free it with notifier_free. */
    struct stage_notifier *(*notifier_new)(const char *next_hop,
                                           const char *helo, struct err *e);
    /* notify - send msg (a whole message, CRLF line ends) from the null
     * sender to rcpt. 0 when the next hop took it, -1 when it did not or
     * could not be reached; r holds its last reply either way. */
    int (*notify)(struct stage_notifier *n, const char *rcpt,
                  const struct buf *msg, struct stage_reply *r);
    void (*notifier_free)(struct stage_notifier *n);
    /* fault - NULL but in test programs, which show with it that a
     * stage's own checks catch a broken path: a stage hands it the octets
     * at a named point ("dkim.sign": a copy of the message the signer
     * hashes) and it may change them in place. */
    void (*fault)(const char *point, char *data, size_t len);
};

struct stage_type {
    const char *name;                 /* "rewrite": the value of stage = */
    const char *summary;              /* one line for docs and check */
    unsigned flags;                   /* default STAGE_* flags */
    const struct cfg_option *options; /* type-specific keys */
    int (*init)(struct stage *st, const struct cfg *c, struct err *e);
    int (*run)(const struct stage *st, struct msg *m, struct verdict *v,
               struct err *e);
    void (*free)(struct stage *st);
    /* done - optional: called by chain_run() once the chain has run, for
     * each stage that ran on m and let it go on, with its own verdict
     * (own) and the chain's outcome (final, and the stage that decided it,
     * by, or NULL). For a stage that records what became of the message
     * (archive); it may not change m and cannot fail the message. */
    void (*done)(const struct stage *st, const struct msg *m,
                 const struct verdict *own, const struct verdict *final,
                 const struct stage *by);
    /* ---- encrypt: rcpt_group - optional, for the SMTP front end at RCPT
     * time: the group rcpt belongs to, as a short word in group (size n;
     * recipients of one group can share one copy of the message, those of
     * different groups cannot), or in v a refusal of this recipient alone
     * (tempfail or reject, with its reply). 0, or -1 with e set. Called
     * from many threads at once, like run(). */
    int (*rcpt_group)(const struct stage *st, const char *sender,
                      const char *rcpt, char *group, size_t n,
                      struct verdict *v, struct err *e);
    /* ---- end encrypt */
};

struct stage {
    const struct stage_type *type;
    char *name;          /* instance name: file name without NN- and .conf */
    char *file;          /* the chain.d file it came from */
    struct cfg *cfg;     /* its validated configuration (owned) */
    struct match *match; /* owned */
    enum stage_on_error on_error;
    unsigned flags;              /* effective flags; init() may narrow them */
    void *priv;                  /* the type's long-lived state */
    int check_only;              /* validate only: run() is never called */
    const struct stage_env *env; /* the chain's services; borrowed, may be
                                    NULL in a test that loads one stage */
};

#endif
