/*
 * track_token - the signed tokens of the tracking links, the open pixel
 * and the unsubscribe link
 *
 * A token names what the HTTP handlers need without any state on the
 * server side: its kind (open, click, unsubscribe), when the stage made
 * it, the message (queue id and Message-ID), its sender (whose stream an
 * unsubscribe is for), the recipient ("" when the token is per message),
 * and for a click the link's index, the number of links in the message
 * and the URL itself. The URL travels inside the token rather than as an
 * index into a table: the redirector then needs nothing but the key, no
 * per-message store that must outlive the mail, and the URL it follows
 * is exactly the one the HMAC covers, so a token cannot be bent into an
 * open redirect: change one octet and it is refused.
 *
 * Wire form: version octet 1, kind octet ('o', 'c', 'u'), time (4
 * octets, seconds), index and count (2 octets each), then five fields
 * (qid, msgid, sender, rcpt, url) each as a 2-octet length and its
 * octets, then the first TRACK_TOKEN_TAG octets of HMAC-SHA256 over all
 * that, under the key. The whole is written in URL-safe base64 without
 * padding. Lengths are bounded (TRACK_*_MAX); decoding checks the length
 * of the text before anything else, refuses any octet outside the
 * alphabet, non-zero spare bits, a field running past the end, octets
 * left over and NUL or control octets in a field, and compares the tag
 * in constant time before any field is believed.
 *
 * The key is a file of at least TRACK_KEY_MIN octets, read whole (the
 * stage's key_file, the same file the daemon's HTTP side reads).
 *
 * Nothing here allocates but track_key_load's key, which the caller
 * frees with track_key_free (it is wiped).
 */
#ifndef RC_TRACK_TOKEN_H
#define RC_TRACK_TOKEN_H

#include <stddef.h>

#include "util/err.h"

#define TRACK_KEY_MIN 32
#define TRACK_KEY_MAX 4096
#define TRACK_TOKEN_TAG 16 /* octets of HMAC-SHA256 kept: 128 bits */

#define TRACK_QID_MAX 64
#define TRACK_MSGID_MAX 256
#define TRACK_ADDR_MAX 320
#define TRACK_URL_MAX 1024
/* the text of the longest token: header, fields, tag, in base64 */
#define TRACK_RAW_MAX                                                         \
    (10 + 10 + TRACK_QID_MAX + TRACK_MSGID_MAX + 2 * TRACK_ADDR_MAX +         \
     TRACK_URL_MAX + TRACK_TOKEN_TAG)
#define TRACK_TOKEN_MAX (((TRACK_RAW_MAX + 2) / 3) * 4 + 1)

enum track_kind {
    TRACK_OPEN = 'o',
    TRACK_CLICK = 'c',
    TRACK_UNSUB = 'u',
};

/* What a token says. Strings point into the caller's storage (make: any;
 * open: the struct's own arrays). */
struct track_token {
    enum track_kind kind;
    unsigned long made; /* seconds since the epoch, when the stage ran */
    unsigned index;     /* click: the link's number, from 0 */
    unsigned count;     /* click: links in the message */
    char qid[TRACK_QID_MAX + 1];
    char msgid[TRACK_MSGID_MAX + 1];
    char sender[TRACK_ADDR_MAX + 1];
    char rcpt[TRACK_ADDR_MAX + 1];
    char url[TRACK_URL_MAX + 1];
};

struct track_key {
    unsigned char *data;
    size_t len;
    void *mac; /* OpenSSL's HMAC keyed once (track_key_load), copied per
                  token; NULL: keyed per token */
};

/* track_key_load - read the key file at path into k. 0, or -1 with e set
 * (a file that is missing, unreadable, that other users may read or
 * write, shorter than TRACK_KEY_MIN or longer than TRACK_KEY_MAX
 * octets). Free with track_key_free. */
int track_key_load(const char *path, struct track_key *k, struct err *e);
void track_key_free(struct track_key *k);

/* track_token_make - the token of t (its strings as set, each within its
 * _MAX, no control octets) under k into out (size n, NUL-terminated).
 * Returns its length, or -1 with e set (ERR_INPUT for a field over its
 * bound or holding a control octet, ERR_LIMIT for n too small,
 * ERR_LIB when HMAC fails). */
int track_token_make(const struct track_key *k, const struct track_token *t,
                     char *out, size_t n, struct err *e);

/* track_token_open - check the token text s (len octets) under k and fill
 * t. 0 when it verifies; -1 when it does not (malformed, truncated,
 * forged or altered: one answer for all, with the reason in e for the
 * log). */
int track_token_open(const struct track_key *k, const char *s, size_t len,
                     struct track_token *t, struct err *e);

#endif
