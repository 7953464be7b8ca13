/*
 * step - one message through the chain, as both front ends take it
 *
 * At the end of DATA (SMTP) or of the message (milter) a front end has
 * a struct msg with the sender and recipients, the message octets in a
 * buffer and what it knows of the client. step_run() does what follows
 * in the same way for both: the rest of the envelope, the octets taken
 * over and parsed, the front end's own preparation (prepare), the chain,
 * the verdict logged and mapped to a struct step outcome, and the rule
 * that a message the chain left without recipients is discarded. The
 * front end then answers in its own protocol.
 *
 * What stays in the front ends because it differs: building the message
 * and its sender and recipients (the milter front end does it as the
 * events arrive), what prepare does (the SMTP front end adds its
 * Received field; the milter front end checks the MTA's header fields
 * and may refuse), the "from=" log line (each front end's words),
 * messages over a limit (a 552, or milter_size_action), and a held
 * message: the SMTP front end stores it in the quarantine as its stage
 * received it (chain_opts undo_hold), the milter front end hands it to
 * the MTA's hold queue with the chain's edits. The verdict lines are
 * the same but for a tag and a place ("reject: dkim: 550 ..." and
 * "milter-reject: END-OF-MESSAGE: dkim: 550 ...").
 *
 * Nothing is allocated beyond what m and res own; the caller frees res
 * (chain_result_fini) and m.
 */
#ifndef RC_STEP_H
#define RC_STEP_H

#include <stddef.h>

#include "chain/chain.h"
#include "chain/conf.h"
#include "util/buf.h"
#include "util/err.h"
#include "msg/msg.h"

/* How the step ended. From STEP_REJECT on, the chain ran and res holds
 * its result. */
enum step_outcome {
    STEP_ERROR,      /* e says why (not logged): tempfail */
    STEP_TOO_BIG,    /* over a limit of the message (e, ERR_LIMIT) */
    STEP_REFUSED,    /* prepare refused the message and answered it */
    STEP_REJECT,     /* the chain rejected it (logged) */
    STEP_TEMPFAIL,   /* the chain tempfailed it (logged) */
    STEP_DISCARD,    /* a stage discarded it (logged) */
    STEP_NO_RCPTS,   /* the chain removed every recipient (logged) */
    STEP_QUARANTINE, /* a stage held it (not logged: the front end
                        keeps it its own way and says so) */
    STEP_CONTINUE    /* pass it on with the chain's edits */
};

struct step_in {
    const struct conf *cf; /* the chain to run */
    const char *log_qid;   /* the queue id the log lines carry */
    /* The rest of the envelope, as msg_env_set() and msg_env_origin(). */
    const char *qid; /* NULL: none yet */
    const char *client_addr, *client_name, *helo;
    int tls;
    const char *auth_user;
    int internal; /* the client is in mynetworks */
    const char *daemon_name;
    struct buf *data;              /* the message, taken over (left empty) */
    const struct chain_opts *opts; /* NULL: the defaults */
    /* Called after the message is parsed, before the chain: 0 to go on,
     * 1 when the front end refused the message (answered and logged),
     * -1 with e on failure. size is the message's. May be NULL. */
    int (*prepare)(void *arg, struct msg *m, size_t size, struct err *e);
    /* Called with 1 before the chain runs and 0 after. May be NULL. */
    void (*running)(void *arg, int on);
    void *arg;
    const char *log_tag;   /* before the verdict word: "" or "milter-" */
    const char *log_where; /* after it: "" or "END-OF-MESSAGE: " */
};

/* step_run - take m (the caller's, with its sender and recipients)
 * through the step. res is filled from STEP_REJECT on, and must be
 * zeroed by the caller and freed with chain_result_fini() in any case. */
enum step_outcome step_run(const struct step_in *in, struct msg *m,
                           struct chain_result *res, struct err *e);

/* step_log_rcpts - the "to=" list of a front end's one summary line per
 * message, into out (n > 0 octets, always terminated, cut short when
 * full): "<a>,<b>", and for more than nine recipients the first eight
 * and ",...(N more)". addr(arg, i) gives the i-th of count addresses
 * (borrowed). */
void step_log_rcpts(char *out, size_t n, size_t count,
                    const char *(*addr)(const void *arg, size_t i),
                    const void *arg);

#endif
