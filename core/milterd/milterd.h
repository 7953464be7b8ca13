/*
 * milterd - the milter front end (Sendmail's libmilter)
 *
 * Postfix (smtpd_milters, non_smtpd_milters) or Sendmail
 * (INPUT_MAIL_FILTER) talks the milter protocol to relaychaind; libmilter
 * owns the sockets and calls back once per protocol event. Each milter
 * connection gets a struct milterd_session, which gathers the envelope
 * and the message, runs the chain at end of message, and hands the result
 * back to the MTA: the chain's edits as header, body and envelope changes,
 * and its verdict as a reply, a discard or a quarantine.
 *
 * The session does not call libmilter itself. Everything it asks of the
 * MTA goes through a struct milterd_ops, which the daemon fills with
 * smfi_* calls and the unit tests and the fuzzer fill with recorders, so
 * the whole session logic runs without a socket.
 *
 * Ownership: a session borrows its conf (the caller keeps the runtime
 * that holds it alive for the session's life, as SMTP sessions do) and
 * owns everything else. A session belongs to one thread at a time, which
 * is how libmilter calls back; only the progress notices come from the
 * server's own thread, and never while the session replays its edits.
 */
#ifndef RC_MILTERD_H
#define RC_MILTERD_H

#include <stddef.h>
#include <sys/socket.h>

#include "chain/conf.h"
#include "chain/runtime.h"
#include "util/err.h"

/* What a session may ask of the MTA; each returns 0 or -1 (libmilter's
 * MI_SUCCESS and MI_FAILURE). Header values are what follows the colon,
 * folded with LF, as the MTA expects them; chgheader with value NULL
 * deletes. smfi_insheader counts the MTA's own Received: header, which a
 * filter never sees: index 1 is just below it (see milterd_replay.c). */
struct milterd_ops {
    int (*addheader)(void *ctx, const char *name, const char *value);
    int (*insheader)(void *ctx, int index, const char *name,
                     const char *value);
    int (*chgheader)(void *ctx, const char *name, int index,
                     const char *value);
    int (*replacebody)(void *ctx, const unsigned char *p, size_t len);
    int (*chgfrom)(void *ctx, const char *addr, const char *params);
    int (*addrcpt)(void *ctx, const char *addr, const char *params);
    int (*delrcpt)(void *ctx, const char *addr);
    int (*quarantine)(void *ctx, const char *reason);
    int (*setreply)(void *ctx, const char *rcode, const char *xcode,
                    const char *text);
    int (*progress)(void *ctx);
};

/* The answer to the MTA at end of message (libmilter's SMFIS_*). */
enum milterd_status {
    MILTERD_CONTINUE,
    MILTERD_REJECT,
    MILTERD_TEMPFAIL,
    MILTERD_DISCARD
};

/* What to do with a message over message_size_limit or header_limit
 * (milter_size_action). */
enum milterd_size_action {
    MILTERD_SIZE_TEMPFAIL,
    MILTERD_SIZE_REJECT,
    MILTERD_SIZE_ACCEPT
};

/* ------------------------------------------------------- negotiation */

/* milterd_negotiate - what to ask of an MTA that offers the actions
 * offer_act and the protocol steps offer_proto (both SMFIF_/SMFIP_ bit
 * sets), for a chain whose stages have the STAGE_* flags chain_flags
 * (nstages of them): only the actions the chain can use, no protocol step
 * that no stage needs, and no reply to any event before the end of the
 * message (the chain decides there). Returns 0, or -1 when the MTA lacks
 * an action the chain needs (the error names it). */
int milterd_negotiate(unsigned chain_flags, size_t nstages,
                      unsigned long offer_act, unsigned long offer_proto,
                      unsigned long *act, unsigned long *proto, struct err *e);

/* ----------------------------------------------------------- session */

struct milterd_server;
struct milterd_session;
struct memlimit;

/* milterd_session_new - a session under cf; ops/ctx reach the MTA;
 * actions and proto are what milterd_negotiate() agreed. srv may be NULL
 * (no progress notices). NULL on ENOMEM. */
struct milterd_session *
milterd_session_new(const struct conf *cf, struct milterd_server *srv,
                    const struct milterd_ops *ops, void *ctx,
                    unsigned long actions, unsigned long proto, struct err *e);
void milterd_session_free(struct milterd_session *s);

/* The events, in protocol order. Nothing before end of message answers
 * the MTA: a failure is remembered and answered there (tempfail). argv
 * is what libmilter gives: the address as the MTA sent it ("<a@b>"),
 * then its ESMTP parameters, NULL-terminated. */
void milterd_macro(struct milterd_session *s, const char *name,
                   const char *value);
void milterd_connect(struct milterd_session *s, const char *hostname,
                     const struct sockaddr *sa);
void milterd_helo(struct milterd_session *s, const char *helo);
void milterd_mail(struct milterd_session *s, char *const *argv);
void milterd_rcpt(struct milterd_session *s, char *const *argv);
void milterd_header(struct milterd_session *s, const char *name,
                    const char *value);
void milterd_eoh(struct milterd_session *s);
void milterd_body(struct milterd_session *s, const unsigned char *p,
                  size_t len);
/* milterd_eom - run the chain and give the MTA its edits and, for a
 * reject or tempfail, the reply (through ops->setreply). */
enum milterd_status milterd_eom(struct milterd_session *s);
/* milterd_abort - the MTA gave up the message (RSET, lost client). */
void milterd_abort(struct milterd_session *s);

/* ------------------------------------------------------------ server */

/* milterd_server_new - the progress ticker: every interval_ms, each
 * session whose chain has run that long gets an ops->progress, so a slow
 * stage does not hit the MTA's milter timeout. NULL on failure. */
struct milterd_server *milterd_server_new(long interval_ms, struct err *e);
void milterd_server_free(struct milterd_server *srv);
/* milterd_server_set_memlimit - count each message's data in ml, held to
 * smtpd_memory_limit (borrowed; set before the first session). */
void milterd_server_set_memlimit(struct milterd_server *srv,
                                 struct memlimit *ml);

/* --------------------------------------------------------- listener */

/* How relaychaind gets the runtime for a new milter connection: a held
 * reference, released with runtime_release() when the connection ends,
 * so a reload never changes the rules under a connection. The front end
 * uses its conf and chain only (no part of its own). */
typedef struct runtime *(*milterd_hold_fn)(void);

/* What an MTA connection keeps from its start to its end. */
struct milterd_conn {
    struct runtime *rt;        /* held once, for the whole connection */
    struct milterd_session *s; /* under rt's conf */
};

/* milterd_conn_open - start c for a new MTA connection: one runtime from
 * hold(), held until milterd_conn_close(), and a session under its conf.
 * With negotiate, *act and *proto come in as what the MTA offers and go
 * out as what was agreed (milterd_negotiate), against the chain of that
 * same runtime: a reload between the negotiation and the session cannot
 * pair the actions agreed with another chain. Without (an MTA that
 * starts with connect), *act and *proto are taken as they are. srv, ops
 * and ctx as milterd_session_new(). Returns 0; -1 with e when the MTA
 * lacks an action the chain needs (refuse the connection); -2 with e
 * when the session cannot be made (tempfail). Nothing is held on
 * failure. */
int milterd_conn_open(struct milterd_conn *c, milterd_hold_fn hold,
                      int negotiate, unsigned long *act, unsigned long *proto,
                      struct milterd_server *srv,
                      const struct milterd_ops *ops, void *ctx, struct err *e);

/* milterd_conn_close - free the session and release the runtime. */
void milterd_conn_close(struct milterd_conn *c);

struct milterd;

/* milterd_open - register with libmilter and open the listening socket
 * named by milter_listen in c (removing a stale UNIX socket, applying
 * milter_socket_mode and milter_socket_group, turning off Nagle on a TCP
 * socket). Called before privileges are dropped. NULL with e set. */
struct milterd *milterd_open(const struct cfg *c, struct err *e);

/* milterd_run - serve on a thread of its own (smfi_main). When libmilter
 * stops (it takes SIGTERM, SIGHUP and SIGINT), one byte is written to
 * done_fd. Returns 0 or -1. */
int milterd_run(struct milterd *md, milterd_hold_fn hold, int done_fd,
                struct err *e);
/* milterd_set_memlimit - the count shared with the SMTP front end that
 * messages are held to (borrowed; called before milterd_run). */
void milterd_set_memlimit(struct milterd *md, struct memlimit *ml);

/* milterd_drain - after libmilter stopped listening: the ends of
 * message under way finish (their chain, their edits and reply) for at
 * most wait_ms, those that come later are tempfailed (451 4.3.2) without
 * running the chain; then the MTA's connections, which libmilter's
 * thread pool no longer serves, are taken back with the runtimes they
 * hold. Returns 0, or the number of callbacks still running after
 * wait_ms (the connections are then left as they are). */
unsigned milterd_drain(struct milterd *md, long long wait_ms);

/* milterd_wait - join the libmilter thread after it stopped and release
 * md; returns smfi_main()'s result (0 on a clean stop). */
int milterd_wait(struct milterd *md);

/* milterd_check_listen - 0 when spec is a libmilter socket spec this
 * front end accepts: unix:/path, local:/path, inet:port@host,
 * inet6:port@host (host may be omitted for inet). */
int milterd_check_listen(const char *spec, struct err *e);

#endif
