/*
 * verp - the signed VERP token of a (message, recipient) pair
 *
 * A tracked message leaves with the envelope sender
 * bounces+TOKEN@verp_domain, one delivery transaction per recipient, so
 * that whatever comes back to that address names the message and the
 * recipient it was for. TOKEN is 32 lowercase base32 characters (RFC
 * 4648 alphabet, no padding) encoding 20 octets:
 *
 *     version (1, now 1) | queue id (6: its 12 hex digits) |
 *     recipient hash (5: SHA-256 of the lower-cased address) |
 *     tag (8: HMAC-SHA256 under verp_key_file of the 12 octets before)
 *
 * The queue id and the recipient hash are matched against the events
 * store's received rows (the newest row of that queue id whose recipient
 * hashes the same), so the token carries no address in clear and stays
 * far below the 64 octets of a local part. The 64-bit tag makes a forged
 * or altered token fail verification; such tokens are ignored by the
 * caller. Queue ids that are not 12 hex digits (relaychaind makes no
 * others) get no token.
 *
 * Nothing here allocates beyond the key file read, logs or prints; the
 * key lives in a struct verp_key the caller owns (wiped by
 * verp_key_wipe()).
 */
#ifndef RC_VERP_H
#define RC_VERP_H

#include <stddef.h>

#include "util/err.h"

#define VERP_KEY_MIN 32
#define VERP_KEY_MAX 1024
#define VERP_TOKEN_LEN 32 /* characters */
#define VERP_HASH_LEN 5
#define VERP_PREFIX "bounces+"

struct verp_key {
    unsigned char k[VERP_KEY_MAX];
    size_t len;
};

/* verp_key_load - the secret of path (trailing white space dropped):
 * VERP_KEY_MIN to VERP_KEY_MAX octets, a file others cannot read. 0, or
 * -1 with e ("PATH: ..."). */
int verp_key_load(const char *path, struct verp_key *key, struct err *e);
void verp_key_wipe(struct verp_key *key);

/* verp_rcpt_hash - the recipient hash of rcpt (case-insensitive). */
void verp_rcpt_hash(const char *rcpt, unsigned char out[VERP_HASH_LEN]);

/* verp_token - the token of (qid, rcpt) into out (n octets, at least
 * VERP_TOKEN_LEN + 1). 0, or -1 when qid is not 12 hex digits. */
int verp_token(const struct verp_key *key, const char *qid, const char *rcpt,
               char *out, size_t n);

/* verp_sender - "bounces+TOKEN@domain" into out (n octets); 0, or -1 as
 * verp_token() or when it does not fit. */
int verp_sender(const struct verp_key *key, const char *domain,
                const char *qid, const char *rcpt, char *out, size_t n);

/* verp_check - verify token (len characters, any case): 1 with the
 * queue id (13 octets: 12 upper-case hex digits) and the recipient hash
 * filled when it is well formed and its tag is right; 0 when not. */
int verp_check(const struct verp_key *key, const char *token, size_t len,
               char qid[13], unsigned char hash[VERP_HASH_LEN]);

/* verp_find - the first "bounces+TOKEN@domain" in text (len octets, the
 * domain compared without case): 1 with the token's position and length
 * in *tok, *toklen; 0 when none. Nothing is verified. */
int verp_find(const char *text, size_t len, const char *domain,
              const char **tok, size_t *toklen);

#endif
