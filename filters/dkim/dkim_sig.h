/*
 * dkim_sig - DKIM signatures (RFC 6376, RFC 8463) made and checked with
 *     keys that were loaded once
 *
 * The dkim stage's signer and its self-check; see dkim_sig.c for why the
 * stage does not leave this to libopendkim. Exported for the stage, its
 * unit tests and the fuzzer.
 */
#ifndef RC_DKIM_SIG_H
#define RC_DKIM_SIG_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "util/buf.h"
#include "util/err.h"

enum flt_dkim_canon { FLT_DKIM_SIMPLE, FLT_DKIM_RELAXED };

/* flt_dkim_sig_key_new - a key pair ready to sign and verify: priv (the
 * private key, RSA or Ed25519) and pub (its public half as published),
 * both borrowed and kept for the key's life, and for RSA the OpenSSL
 * contexts set up once and copied for each message. NULL with e set.
 * The key is read-only afterwards and may be used by many threads at
 * once. flt_dkim_sig_key_free - free it (NULL is fine); not priv, pub. */
struct flt_dkim_sig_key;
struct flt_dkim_sig_key *flt_dkim_sig_key_new(EVP_PKEY *priv, EVP_PKEY *pub,
                                              struct err *e);
void flt_dkim_sig_key_free(struct flt_dkim_sig_key *k);

/* What one signature needs. Everything is borrowed. */
struct flt_dkim_sign {
    const struct flt_dkim_sig_key *key;
    const char *domain;
    const char *selector;
    const char *signer; /* i=, or NULL */
    enum flt_dkim_canon hcanon, bcanon;
    const char *const *sign_hdrs; /* NULL-terminated: signed when present */
    const char *const *oversign_hdrs; /* signed once more than present */
    uint64_t time;                    /* t= */
    uint64_t expire;                  /* x=, or 0 for none */
};

/* A body hash and the octets it was computed over, so that the next
 * signature, or the check over the final bytes, need not hash the same
 * body again: it is reused only where the body is equal, octet for
 * octet, to what was hashed. Start with valid = 0. */
struct flt_dkim_body_memo {
    const char *body; /* borrowed: must stay valid while the memo is used */
    size_t len;
    enum flt_dkim_canon canon;
    int valid;
    unsigned char digest[32];
};

/* flt_dkim_sig_make - sign the message wire (CRLF line ends, header and
 * body) for s: appends to out the value of a DKIM-Signature field, what
 * follows "DKIM-Signature: ", folded with LF and a tab as msg_header_*()
 * and the milter protocol take it. memo may be NULL; otherwise it is used
 * and updated. Returns 0, or -1 with e set (memory,
 * OpenSSL). */
int flt_dkim_sig_make(const struct flt_dkim_sign *s, const char *wire,
                      size_t len, struct flt_dkim_body_memo *memo,
                      struct buf *out, struct err *e);

/* flt_dkim_sig_check - verify, as a verifier would, the topmost
 * DKIM-Signature field of wire (CRLF line ends) whose d= and s= are domain
 * and selector, with the public half of key. memo, when not NULL, is the
 * signer's. Returns 0 when it holds; 1 when it does not, with the reason in
 * why
 * ("body hash", "header hash", "signature not found", "bad tag list: ...");
 * -1 with e set when the check itself could not run (memory, OpenSSL). */
int flt_dkim_sig_check(const struct flt_dkim_sig_key *key, const char *domain,
                       const char *selector, const char *wire, size_t len,
                       const struct flt_dkim_body_memo *memo, char *why,
                       size_t wn, struct err *e);

/* flt_dkim_sig_body_hash - the bh= a SHA-256 signature with body
 * canonicalization canon would carry for the body [p, p + n) (CRLF or LF
 * line ends), base64, into out (at least 45 octets). 0, or -1 with e set
 * (memory, OpenSSL). */
int flt_dkim_sig_body_hash(const char *p, size_t n, enum flt_dkim_canon canon,
                           char *out, struct err *e);

/* The one reader of DKIM tag lists (RFC 6376 3.2), for signatures and
 * key records: the signer's self-check, the stage's look at signatures
 * that arrived (flt_dkim_tag_value, filters.h) and "relaychain dkim
 * testkey".
 *
 * One tag of a tag list: its value with the white space around it taken
 * away, and [raw, raw_end) the whole span after the "=". */
struct flt_dkim_tag {
    const char *name;
    size_t name_len;
    const char *v;
    size_t vlen;
    const char *raw, *raw_end;
};
#define FLT_DKIM_SIG_TAGS_MAX 32 /* tags in one list we read */

/* flt_dkim_sig_tags - the tags of the tag list [p, end), at most max, into
 * t (pointing into the list); returns their number, or -1 when the list
 * is not one (a name missing or malformed, no "=", a tag given twice, too
 * many tags). */
int flt_dkim_sig_tags(const char *p, const char *end, struct flt_dkim_tag *t,
                      int max);
/* flt_dkim_sig_find_tag - the tag called name (case matters), or NULL. */
const struct flt_dkim_tag *flt_dkim_sig_find_tag(const struct flt_dkim_tag *t,
                                                 int n, const char *name);

#endif
