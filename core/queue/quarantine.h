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
 * "relaychain quarantine release ID" runs the rest of the chain on the
 * message, resuming after the stage named by Stage: (the disclaimer and
 * the DKIM signature of the stages after it are added then), and hands
 * the result to the queue (delivery = queue) or to next_hop. Release and
 * delete are logged to the mail log like postsuper's "QID: removed".
 */
#ifndef RC_QUARANTINE_H
#define RC_QUARANTINE_H

#include <stddef.h>

#include "util/err.h"
#include "msg/msg.h"

/* The longest id (with its NUL) a quarantine file may be named by: the
 * front end's own, or in milter mode the MTA's. */
#define QUARANTINE_ID_MAX 64

/* quarantine_store - write data (the processed message) with the envelope
 * of m and reason under dir/QID. Returns 0, or -1 with e set: the client
 * must then get a 4xx. */
int quarantine_store(const char *dir, const struct msg *m, const char *data,
                     size_t len, const char *reason, const char *stage,
                     struct err *e);

/* quarantine_dir_prepare - make dir and any missing parent (mode 0700)
 * when it does not exist;
 * refuse one that is not a directory or that everyone may write to.
 * Returns 0, or -1 with e naming dir: start-up then fails. */
int quarantine_dir_prepare(const char *dir, struct err *e);

/* quarantine_main - "relaychain quarantine list|show|release|delete". */
int quarantine_main(int argc, char **argv);

#endif
