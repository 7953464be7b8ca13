/*
 * chain - load the chain.d stages and run a message through them
 *
 * chain_load() reads every *.conf file of a directory in C-locale order of
 * names (other files are skipped: folders and *.example in silence, a
 * name holding ".conf" with a warning, the rest at info level), builds one
 * struct stage per file with its type's init(), and refuses a chain in
 * which a stage that edits the header or body follows a signing stage; the
 * error names both files. A loaded chain is read-only and shared by every
 * thread; a reload builds a new one beside it.
 *
 * chain_run() first applies ambiguous_mime_action (when the chain has any
 * stage), then runs each stage whose match condition holds, in order,
 * until one returns a verdict other than continue. A stage error becomes
 * its on_error policy: tempfail, or continue with the stage's edits
 * undone (msg_rollback), so the message goes on as if the stage had not
 * run. Each stage gets one log line:
 *
 *     QID: NAME: continue, NOTE, 3ms
 *     QID: NAME: continue after error (TEXT), error ignored
 *         (on_error = continue), 2 edits undone, 3ms
 */
#ifndef RC_CHAIN_H
#define RC_CHAIN_H

#include <stddef.h>

#include "util/err.h"
#include "msg/msg.h"
#include "chain/stage.h"

enum chain_ambiguous_action {
    CHAIN_AMBIGUOUS_REJECT,
    CHAIN_AMBIGUOUS_CONTINUE
};

struct chain;

/* The keys every chain.d file has besides match_options and its type's:
 * stage and on_error. */
extern const struct cfg_option chain_common_options[];

/* What happened in one stage, for --explain and tests. */
struct chain_step {
    const struct stage *stage;
    int matched;   /* the match condition held */
    char why[160]; /* why it matched or did not */
    int failed;    /* run() returned -1; err holds why */
    struct err err;
    struct verdict verdict; /* after on_error was applied */
    size_t edits_before;    /* journal length before run() */
    size_t edits_after;     /* and after it, once any rollback is done */
    size_t edits_undone;    /* edits rolled back (on_error = continue) */
    long long usec;
};

struct chain_result {
    struct verdict verdict;   /* the chain's outcome */
    const struct stage *by;   /* the stage that decided it, or NULL */
    size_t by_edits_undone;   /* CHAIN_UNDO_HOLD: edits of by taken back */
    struct chain_step *steps; /* one per stage, in order */
    size_t nsteps;
};

struct chain *chain_load(const char *dir,
                         enum chain_ambiguous_action ambiguous, struct err *e);

/* chain_load - the stage types are those of the registry the program set
 * (registry_set, chain/registry.h), whose services every stage is lent.
 *
 * chain_load_types - the same with another lookup of stage types, so
 * tests can load chains of their own stage types. */
typedef const struct stage_type *(*chain_type_lookup)(const char *name);
struct chain *chain_load_types(const char *dir,
                               enum chain_ambiguous_action ambiguous,
                               chain_type_lookup lookup, struct err *e);

/* chain_load_flags - the same with flags: CHAIN_LOAD_CHECK loads every
 * stage with check_only set (stage.h), for "relaychain check"; such a
 * chain refuses chain_run(). lookup NULL means the registry's. */
#define CHAIN_LOAD_CHECK 0x1u
struct chain *chain_load_flags(const char *dir,
                               enum chain_ambiguous_action ambiguous,
                               chain_type_lookup lookup, unsigned flags,
                               struct err *e);
void chain_free(struct chain *ch);

/* ---- encrypt: chain_rcpt_group - the group of rcpt for every stage that
 * has one (stage_type rcpt_group), "name=group;" each, into group (size
 * n; "" when no stage has groups): the SMTP front end keeps the
 * recipients of one transaction in one group. A stage's refusal of the
 * recipient stops there, in v. 0, or -1 with e set ("stage: reason"). */
int chain_rcpt_group(const struct chain *ch, const char *sender,
                     const char *rcpt, char *group, size_t n,
                     struct verdict *v, struct err *e);
/* ---- end encrypt */

/* chain_stages - the stages in order; borrowed. */
size_t chain_stages(const struct chain *ch, const struct stage *const **st);

/* chain_flags - the union of the stages' effective STAGE_* flags. */
unsigned chain_flags(const struct chain *ch);

/* chain_run - run m through ch. Returns 0 with res filled (free it with
 * chain_result_fini), -1 only when res itself cannot be built (ENOMEM). */
int chain_run(const struct chain *ch, struct msg *m, struct chain_result *res,
              struct err *e);
void chain_result_fini(struct chain_result *res);

/* How chain_run_opts() runs.
 *
 * undo_hold: a stage that quarantines has its own edits taken back
 * (msg_rollback), so the message is what that stage was given; the SMTP
 * front end keeps that copy, and a release resumes the chain after the
 * stage with no trace of its verdict (X-Virus-Status: Infected).
 *
 * resume_after: the name of a stage; stages up to and including it are
 * not run (a quarantine release). A name the chain does not have fails
 * with ERR_CONFIG: the chain was changed since the message was held. The
 * MIME check is not repeated: it ran when the message arrived. */
struct chain_opts {
    int undo_hold;
    const char *resume_after;
};

int chain_run_opts(const struct chain *ch, struct msg *m,
                   const struct chain_opts *o, struct chain_result *res,
                   struct err *e);

/* chain_summary - the outcome in amavisd-new's words, for the one log
 * line per message: "Passed CLEAN", "Passed UNCHECKED", "Blocked
 * INFECTED (NAME)", "Blocked BANNED (NAME)", "Blocked UNCHECKED",
 * "Blocked BAD-HEADER" (ambiguous MIME) or "Blocked OTHER (STAGE)".
 * Writes into out (always terminated) and returns out. */
const char *chain_summary(const struct chain_result *res, char *out, size_t n);

#endif
