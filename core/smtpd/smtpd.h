/*
 * smtpd - the SMTP server front end
 *
 * A struct smtpd_runtime is everything a session needs that comes from
 * configuration: the conf (limits, chain), the relay policy, AUTH users,
 * the TLS context and the next-hop pool. It is reference-counted: each
 * session holds the runtime it started with, so a reload (a new runtime
 * swapped in by relaychaind) never changes the rules under a transaction
 * in flight, and the old runtime goes away with its last session.
 *
 * A struct smtpd_server is the process-wide part: connection counts (in
 * all and per client address), the queue id sequence, and the count of
 * message octets held in memory. Both are thread-safe.
 *
 * smtpd_session_run() serves one accepted connection to its end on the
 * calling thread: greeting, commands, DATA, the chain, delivery through
 * the next hop, and the reply; then it closes the socket.
 */
#ifndef RC_SMTPD_H
#define RC_SMTPD_H

#include <sys/socket.h>

#include "chain/conf.h"
#include "util/err.h"

struct smtpd_runtime;
struct smtpd_server;
struct queue;
struct memlimit;

/* smtpd_runtime_new - build from cf, which it adopts (freed with the
 * runtime, also on failure). Errors are "path:line: reason". */
struct smtpd_runtime *smtpd_runtime_new(struct conf *cf, struct err *e);
void smtpd_runtime_hold(struct smtpd_runtime *rt);
void smtpd_runtime_release(struct smtpd_runtime *rt);
const struct conf *smtpd_runtime_conf(const struct smtpd_runtime *rt);

struct smtpd_server *smtpd_server_new(struct err *e);
void smtpd_server_free(struct smtpd_server *srv);
/* smtpd_server_set_queue - the durable queue that sessions under a
 * "delivery = queue" runtime commit to (borrowed; set before the first
 * session). */
void smtpd_server_set_queue(struct smtpd_server *srv, struct queue *q);
/* smtpd_server_set_memlimit - the count of message octets in memory,
 * shared with the milter front end, that DATA is held to under
 * smtpd_memory_limit (borrowed; set before the first session). */
void smtpd_server_set_memlimit(struct smtpd_server *srv, struct memlimit *ml);
/* smtpd_server_active - sessions running now. */
unsigned smtpd_server_active(struct smtpd_server *srv);
/* smtpd_server_stop - ask every session to finish its transaction and
 * close (after SIGTERM): no new MAIL is accepted. */
void smtpd_server_stop(struct smtpd_server *srv);

/* smtpd_session_run - serve fd (an accepted socket, owned from now on)
 * under rt (a reference the caller holds and releases afterwards). */
void smtpd_session_run(struct smtpd_server *srv, struct smtpd_runtime *rt,
                       int fd, const struct sockaddr *peer, socklen_t len);

#endif
