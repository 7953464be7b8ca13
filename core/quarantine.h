/*
 * quarantine - messages a stage held back, kept on disk for an admin
 *
 * One file per message in quarantine_directory, named by its queue id: a
 * block of envelope lines (Envelope-From, Envelope-To, Client, Helo,
 * Arrival, Reason), an empty line, then the message as it would have been
 * delivered. Files are written to a temporary name, fsynced and renamed,
 * and the directory fsynced, before the client hears 250.
 */
#ifndef RC_QUARANTINE_H
#define RC_QUARANTINE_H

#include <stddef.h>

#include "err.h"
#include "msg.h"

/* quarantine_store - write data (the processed message) with the envelope
 * of m and reason under dir/QID. Returns 0, or -1 with e set: the client
 * must then get a 4xx. */
int quarantine_store(const char *dir, const struct msg *m, const char *data,
                     size_t len, const char *reason, struct err *e);

/* quarantine_main - "relaychain quarantine list|show|release|delete". */
int quarantine_main(int argc, char **argv);

#endif
