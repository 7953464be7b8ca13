/*
 * downgrade - 8bit to 7bit re-encoding of a message body
 *
 * A stage that must leave the body as no later hop will change it (the
 * dkim stage, before it signs) makes it 7-bit first, as an MTA that
 * downgrades for a peer without 8BITMIME would do after us: every leaf
 * part with 8-bit octets or a line over 998 octets is encoded again
 * (text and message types as quoted-printable, others as base64) and
 * every "8bit" or "binary" label on a part that is now clean becomes
 * "7bit". Only those parts change: the rest of the message stays octet
 * for octet. The edits go into m's journal under the stage's name.
 */
#ifndef RC_DOWNGRADE_H
#define RC_DOWNGRADE_H

#include <stddef.h>

#include "util/buf.h"
#include "util/err.h"
#include "msg/msg.h"

/* downgrade_body - make the body of m 7-bit and its lines short where a
 * MIME re-encoding can; data/len is msg_write()'s output of m (borrowed),
 * who the name the journal records the edits under. *encoded and
 * *relabelled count the parts encoded again and those only labelled 7bit.
 * Returns 0 (m unchanged when nothing needed it), or -1 with e set. */
int downgrade_body(struct msg *m, const char *who, const char *data,
                   size_t len, unsigned *encoded, unsigned *relabelled,
                   struct err *e);

/* downgrade_lines - append in to out with its line ends converted:
 * to_crlf makes every LF a CRLF (CRLF stays); otherwise CRLF becomes LF.
 * 0, or -1 with out's error in e. */
int downgrade_lines(const char *in, size_t n, int to_crlf, struct buf *out,
                    struct err *e);

#endif
