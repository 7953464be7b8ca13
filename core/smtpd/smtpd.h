/*
 * smtpd - the SMTP server front end
 *
 * The front end's part of a struct runtime (chain/runtime.h),
 * smtpd_runtime_type, is everything a session needs that is built from
 * the configuration: the relay policy, AUTH users, the TLS context and
 * the next-hop pool. Each session runs under the runtime its caller
 * holds for it, so a reload (a new runtime swapped in by relaychaind)
 * never changes the rules under a transaction in flight.
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
#include "chain/runtime.h"
#include "util/err.h"

struct smtpd_server;
struct queue;
struct memlimit;

/* smtpd_runtime_type - the front end's runtime part; building it fails
 * with "path:line: reason" for a setting it refuses (an AUTH file, a
 * TLS key, the next hop). A runtime that serves SMTP sessions, or that
 * "relaychain check" builds, has it. */
extern const struct runtime_part_type smtpd_runtime_type;

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
 * under rt (a reference the caller holds and releases afterwards; built
 * with smtpd_runtime_type). */
void smtpd_session_run(struct smtpd_server *srv, struct runtime *rt, int fd,
                       const struct sockaddr *peer, socklen_t len);

#endif
