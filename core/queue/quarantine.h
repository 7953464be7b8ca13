/*
 * quarantine - messages a stage held back, kept on disk for an admin
 *
 * One file per message in quarantine_directory, named by its queue id: a
 * block of envelope lines (Envelope-From, Envelope-To, Client,
 * Client-Name, Helo, Tls, Auth, Arrival, Reason, Stage), an empty line,
 * then the message as the stage that held it received it: with the edits
 * of the stages before it, without its own (an X-Virus-Status: Infected
 * is not kept). Files are written to a temporary name, fsynced and
 * renamed, and the directory fsynced, before the client hears 250.
 *
 * This is the store: writing, reading back, removing, and the two ways a
 * released message leaves (into the queue's spool, or to next_hop). The
 * commands ("relaychain quarantine list|show|release|delete") are in
 * core/cli/cmd_quarantine.c: "release ID" runs the rest of the chain on
 * the message, resuming after the stage named by Stage: (the disclaimer
 * and the DKIM signature of the stages after it are added then), and
 * hands the result to the queue (delivery = queue) or to next_hop.
 *
 * The commands run as root in a directory the daemon's user can write,
 * so every function here that takes a directory descriptor works
 * relative to it and never through a link: files are opened with
 * O_NOFOLLOW and O_NONBLOCK and must be regular files with one name, and
 * IDs are letters and digits (qid_is_valid with QUARANTINE_ID_MAX).
 * Nothing here prints; failures come back in struct err, naming the file.
 */
#ifndef RC_QUARANTINE_H
#define RC_QUARANTINE_H

#include <stddef.h>

#include "util/buf.h"
#include "util/err.h"
#include "chain/conf.h"
#include "msg/msg.h"
#include "net/smtpc.h"
#include "queue/queue_file.h"

/* The longest id (with its NUL) a quarantine file may be named by: the
 * front end's own, or in milter mode the MTA's. */
#define QUARANTINE_ID_MAX 64

/* quarantine_store - write data (the processed message) with the envelope
 * of m, reason, the stage that held it and the message's stream_header
 * stream (NULL or "": none) under dir/QID. Returns 0, or -1 with e set:
 * the client must then get a 4xx. */
int quarantine_store(const char *dir, const struct msg *m, const char *data,
                     size_t len, const char *reason, const char *stage,
                     const char *stream, struct err *e);

/* quarantine_store_at - the same in the directory dfd (named dir in
 * messages), replacing a file of the same name in one step (a release
 * that a later stage holds again). Run as root, the file is given to
 * the directory's owner. */
int quarantine_store_at(int dfd, const char *dir, const struct msg *m,
                        const char *data, size_t len, const char *reason,
                        const char *stage, const char *stream, struct err *e);

/* quarantine_dir_prepare - make dir and any missing parent (mode 0700)
 * when it does not exist;
 * refuse one that is not a directory or that everyone may write to.
 * Returns 0, or -1 with e naming dir: start-up then fails. */
int quarantine_dir_prepare(const char *dir, struct err *e);

/* A quarantine file as read back: raw is the whole file, body points
 * into it, past the envelope block. */
struct quarantine_file {
    struct buf raw;
    const char *body;
    size_t body_len;
};

/* quarantine_read - dir/id (dfd the directory) into q: never through a
 * link, never waiting on a FIFO, a regular file with one name only, at
 * most 256 MiB, with its envelope block. 0, or -1 with e naming the
 * file; quarantine_file_fini() frees q either way. */
int quarantine_read(int dfd, const char *dir, const char *id,
                    struct quarantine_file *q, struct err *e);
void quarantine_file_fini(struct quarantine_file *q);

/* quarantine_field - the n-th (0-based) value of key in q's envelope
 * block, copied into out (size octets, cut to fit): out, or NULL (out
 * then "") when there is none. */
const char *quarantine_field(const struct quarantine_file *q, const char *key,
                             int n, char *out, size_t size);

/* quarantine_file_msg - the held message of q as a new struct msg (the
 * caller frees it with msg_free) with the envelope the file recorded,
 * within limits; NULL with e set. */
struct msg *quarantine_file_msg(const struct msg_limits *limits,
                                const struct quarantine_file *q,
                                const char *id, struct err *e);

/* quarantine_delete - remove dir/id (dfd the directory): only the entry
 * itself, and only when it is a regular file; a link, FIFO or device
 * planted there is refused and left for the admin to look at. 0, or -1
 * with e naming the file. */
int quarantine_delete(int dfd, const char *dir, const char *id, struct err *e);

/* quarantine_next_hop - deliver data with envelope env straight to
 * next_hop (delivery = through); fills r with the reply. 0 when every
 * recipient was accepted, else -1 with e. */
int quarantine_next_hop(const struct conf *cf, const char *id,
                        const struct msg_env *env, const char *data,
                        size_t len, struct smtpc_reply *r, struct err *e);

/* quarantine_spool - put the released message qm into queue_directory
 * as the daemon's queue_commit would, then tell the daemon through the
 * trigger FIFO. 0; 1 when the message is in the spool but the trigger
 * was not a FIFO (planted: nothing written to it, the daemon's next
 * scan finds the message); -1 with e when it is not in the spool. */
int quarantine_spool(const struct conf *cf, const struct queue_msg *qm,
                     struct err *e);

#endif
