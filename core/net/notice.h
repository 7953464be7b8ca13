/*
 * notice - the chain's notice service, over the next-hop client
 *
 * A stage that tells someone about a message (the antivirus stage's
 * notify_admin) asks the chain's services (struct stage_env, stage.h)
 * and never calls the next-hop client itself. relaychaind and relaychain
 * fill those services with these functions: notice_new() makes an smtpc
 * pool for one next_hop (STARTTLS when offered, 10 s to connect, 30 s a
 * command, one idle connection kept 10 s), notice_send() runs one
 * transaction with the null sender and one recipient, notice_free()
 * closes the pool. A notifier is shared by the threads that run the
 * stage, as its pool is.
 */
#ifndef RC_NOTICE_H
#define RC_NOTICE_H

#include "chain/stage.h"

/* notice_new - check next_hop ("smtp:[127.0.0.1]:25"; a bad one is
 * ERR_CONFIG) and make the notifier; NULL with e set. helo is copied. */
struct stage_notifier *notice_new(const char *next_hop, const char *helo,
                                  struct err *e);

/* notice_send - msg (CRLF, not yet dot-stuffed) from <> to rcpt. 0 when
 * every step had a 2xx answer; -1 otherwise, with the reply that stopped
 * it in r (code 0 and the local reason when there was none). */
int notice_send(struct stage_notifier *n, const char *rcpt,
                const struct buf *msg, struct stage_reply *r);

void notice_free(struct stage_notifier *n);

/* notice_env - point the notice members of env at these functions. */
void notice_env(struct stage_env *env);

#endif
