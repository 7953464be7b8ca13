/*
 * encrypt_int - what the encrypt stage's files share
 *
 * encrypt.c is the stage (configuration, the run, the PGP/MIME and
 * S/MIME bodies); encrypt_keys.c holds the policy values and the
 * decision on one body for all recipients, pure functions the unit test
 * drives; encrypt_pgp.c finds OpenPGP keys and encrypts through GPGME;
 * encrypt_smime.c finds certificates and encrypts with OpenSSL's CMS;
 * encrypt_sign.c reads sign_key_map and signs with the organisational
 * keys before the encryption.
 *
 * Ownership: an engine (struct flt_enc_pgp, struct flt_enc_smime) is
 * built by init() and read-only afterwards, so run() may share it among
 * threads. Per message, run() makes a struct flt_enc_pgp_job (a GPGME
 * context and the keys it found: GPGME contexts are not thread-safe, so
 * each message has its own) and frees it before it returns. S/MIME
 * certificates are the engine's, borrowed by the message.
 */
#ifndef RC_FILTERS_ENCRYPT_INT_H
#define RC_FILTERS_ENCRYPT_INT_H

#include <stddef.h>

#include "util/buf.h"
#include "util/err.h"

/* ---------------------------------------------------------- policies */

enum flt_enc_policy { FLT_ENC_NEVER, FLT_ENC_OPPORTUNISTIC, FLT_ENC_REQUIRED };

/* Protocols, as a mask: what a policy allows, what keys a recipient
 * has. */
#define FLT_ENC_PGP 0x1u
#define FLT_ENC_SMIME 0x2u
#define FLT_ENC_ANY (FLT_ENC_PGP | FLT_ENC_SMIME)

/* flt_enc_policy_parse - a policy_map result: "never", "opportunistic"
 * or "required", optionally followed by "pgp", "smime" or "any" (the
 * default), separated by white space. Returns 0, or -1 with e set
 * naming what is wrong. */
int flt_enc_policy_parse(const char *s, enum flt_enc_policy *policy,
                         unsigned *protos, struct err *e);
const char *flt_enc_policy_name(enum flt_enc_policy p);
const char *flt_enc_proto_name(unsigned protos); /* pgp, smime, any */

/* flt_enc_addr_equal - 1 when a and b are the same mailbox: the local
 * part exactly, the domain without regard to (ASCII) case. */
int flt_enc_addr_equal(const char *a, const char *b);
int flt_enc_addr_equal_n(const char *a, const char *b, size_t blen);

/* One recipient's policy and the keys found for it. */
struct flt_enc_rcpt {
    const char *addr; /* borrowed */
    enum flt_enc_policy policy;
    unsigned protos; /* allowed by the policy */
    unsigned have;   /* protocols with a usable key */
};

enum flt_enc_form {
    FLT_ENC_FORM_CLEAR,   /* the message goes as it is */
    FLT_ENC_FORM_PGP,     /* PGP/MIME to every recipient's key */
    FLT_ENC_FORM_SMIME,   /* S/MIME to every recipient's certificate */
    FLT_ENC_FORM_MISSING, /* a required recipient has no usable key */
    FLT_ENC_FORM_CONFLICT /* no one form every policy allows */
};

/* flt_enc_decide - the one body all n recipients can get: encrypted
 * with one protocol when every recipient allows it and has a key for it
 * (preferred, FLT_ENC_PGP or FLT_ENC_SMIME, tried first), else clear
 * when no recipient requires encryption, else MISSING (*culprit: the
 * first required recipient without a key for any protocol it allows) or
 * CONFLICT (*culprit: the first recipient that cannot take the form a
 * required recipient needs). A "never" recipient beside a required one
 * is a conflict. */
enum flt_enc_form flt_enc_decide(const struct flt_enc_rcpt *r, size_t n,
                                 unsigned preferred, size_t *culprit);

/* flt_enc_is_encrypted - 1 when a Content-Type value says the message
 * is already encrypted: multipart/encrypted, or application/pkcs7-mime
 * (or x-pkcs7-mime) with smime-type enveloped-data or
 * authEnveloped-data. */
int flt_enc_is_encrypted(const char *content_type);

/* flt_enc_subject_untag - the Subject value s without the first
 * occurrence of tag (ASCII case ignored) and one space next to it, into
 * out; 1 when the tag was there, 0 (out untouched) when not. */
int flt_enc_subject_untag(const char *s, const char *tag, struct buf *out,
                          struct err *e);

/* Refusals and choices, for "relaychain keys lookup": called once per
 * candidate with why NULL for a usable one. */
typedef void (*flt_enc_report_fn)(void *arg, const char *proto, const char *id,
                                  const char *who, const char *why);

/* ------------------------------------------------------------ OpenPGP */

struct flt_enc_pgp;
struct flt_enc_pgp_job;

/* flt_enc_pgp_new - the GnuPG home home (NULL: GnuPG's default) with
 * trust_keyring (pgp_trust = keyring: the user ID must be valid in the
 * keyring, full or ultimate), keeping lookups' answers for cache_time
 * seconds (0: none). Checks that GPGME finds a gpg. NULL with e set. The
 * engine is shared by threads: its cache has its own lock. */
struct flt_enc_pgp *flt_enc_pgp_new(const char *home, int trust_keyring,
                                    long cache_time, struct err *e);
void flt_enc_pgp_free(struct flt_enc_pgp *p);

struct flt_enc_pgp_job *flt_enc_pgp_job_new(struct flt_enc_pgp *p,
                                            struct err *e);
void flt_enc_pgp_job_free(struct flt_enc_pgp_job *j);

/* flt_enc_pgp_lookup - the usable key for addr: 1 with its number in j
 * in *slot and "0xKEYID" in id (size n), 0 when there is none, -1 with e
 * set when the keyring could not be read (the message then fails
 * closed). report, when not NULL, hears about every candidate. */
int flt_enc_pgp_lookup(struct flt_enc_pgp_job *j, const char *addr,
                       size_t *slot, char *id, size_t n,
                       flt_enc_report_fn report, void *arg, struct err *e);

/* flt_enc_pgp_encrypt - data (len octets) encrypted to the keys in the
 * nslots slots, ASCII armored, appended to out. An empty result is an
 * error. */
int flt_enc_pgp_encrypt(struct flt_enc_pgp_job *j, const size_t *slots,
                        size_t nslots, const char *data, size_t len,
                        struct buf *out, struct err *e);

/* flt_enc_pgp_list - every key of the keyring, one line each
 * ("0xKEYID uid, uid: usable" or ": refused (why)"), appended to out. */
int flt_enc_pgp_list(struct flt_enc_pgp *p, struct buf *out, struct err *e);

/* ------------------------------------------------------------- S/MIME */

struct flt_enc_smime;

enum flt_enc_smime_cipher { FLT_ENC_AES256_CBC, FLT_ENC_AES256_GCM };

/* flt_enc_smime_new - the PEM certificates in cert_dir, checked against
 * the CA certificates in ca_file and, when crl_file is not NULL, the
 * CRLs in it; a certificate's verdict is kept for cache_time seconds (0:
 * none). Errors name the file. NULL with e set. */
struct flt_enc_smime *flt_enc_smime_new(const char *cert_dir,
                                        const char *ca_file,
                                        const char *crl_file,
                                        enum flt_enc_smime_cipher cipher,
                                        long cache_time, struct err *e);
void flt_enc_smime_free(struct flt_enc_smime *s);

/* flt_enc_smime_lookup - the usable certificate for addr (its
 * subjectAltName rfc822Name; chained to the CA; within its validity now;
 * a key usage that allows key encipherment; not revoked): 1 with its
 * number in *slot and "serial=HEX" in id (size n), 0 when there is none,
 * -1 with e set. */
int flt_enc_smime_lookup(const struct flt_enc_smime *s, const char *addr,
                         size_t *slot, char *id, size_t n,
                         flt_enc_report_fn report, void *arg, struct err *e);

/* flt_enc_smime_encrypt - data as CMS enveloped-data (authenveloped-data
 * with aes256-gcm) to the certificates in slots, DER in base64 lines of
 * 76 characters ended by eol (eol NULL: DER as it is), appended to
 * out. */
int flt_enc_smime_encrypt(const struct flt_enc_smime *s, const size_t *slots,
                          size_t nslots, const char *data, size_t len,
                          const char *eol, struct buf *out, struct err *e);
int flt_enc_smime_is_gcm(const struct flt_enc_smime *s);

/* flt_enc_cms_is_enveloped - 1 when body (len octets of base64) is a CMS
 * EnvelopedData or AuthEnvelopedData, 0 otherwise. */
int flt_enc_cms_is_enveloped(const char *body, size_t len);

/* flt_enc_smime_list - every certificate, one line each. */
int flt_enc_smime_list(const struct flt_enc_smime *s, struct buf *out,
                       struct err *e);

/* ---------------------------------- for the archive stage's encrypt_to
 *
 * The archive stage (filters/archive/archive_crypt.c) encrypts its
 * records to one key with these engines.
 *
 * flt_enc_pgp_job_binary - j's output is binary OpenPGP, not armored.
 * flt_enc_pgp_lookup_fpr - the key whose fingerprint (40 hex digits) or
 * long key ID (16) is fpr, "0x" allowed: 1 with its slot in j and its
 * fingerprint in id (size n); 0 when there is none or it cannot encrypt
 * (expired, revoked, disabled, no encryption subkey), why (size wn)
 * saying which; -1 with e (ERR_INPUT for a malformed fpr, ERR_TEMP when
 * the keyring could not be read). */
void flt_enc_pgp_job_binary(struct flt_enc_pgp_job *j);
int flt_enc_pgp_lookup_fpr(struct flt_enc_pgp_job *j, const char *fpr,
                           size_t *slot, char *id, size_t n, char *why,
                           size_t wn, struct err *e);

/* flt_enc_smime_from_file - an engine of the certificates in one PEM
 * file (AES-256-CBC), each checked against ca_file or, when it is NULL,
 * for its dates and key usage only. flt_enc_smime_count - how many.
 * flt_enc_smime_check - certificate slot's "serial=HEX" into id (size
 * n) and why it cannot be used now (copied into buf, size bn), or NULL
 * when it can. flt_enc_smime_encrypt with eol NULL gives DER. */
struct flt_enc_smime *flt_enc_smime_from_file(const char *cert_file,
                                              const char *ca_file,
                                              long cache_time, struct err *e);
size_t flt_enc_smime_count(const struct flt_enc_smime *s);
const char *flt_enc_smime_check(const struct flt_enc_smime *s, size_t slot,
                                char *id, size_t n, char *buf, size_t bn);

/* ------------------------------------------ signing (sign_key_map)
 *
 * sign_key_map is a pcre_table(5) file from the envelope sender to the
 * organisational keys that sign that sender's encrypted mail, white
 * space between them:
 *     pgp:FINGERPRINT             a secret key in pgp_home (40 hex
 *                                 digits), no passphrase
 *     smime:/CERT.pem:/KEY.pem    a PEM certificate (the chain after it)
 *                                 and its PEM private key, no passphrase,
 *                                 mode 0600 or 0640
 * Every rule's keys are read and checked at load (the results may not
 * hold $ expansions); the map and its keys are then read-only. */

struct flt_enc_signmap;

/* One rule's keys: pgp_fpr "" when it has no OpenPGP key, smime NULL
 * when it has no S/MIME certificate. Owned by the map. */
struct flt_enc_signer {
    unsigned line;
    char pgp_fpr[41];
    char pgp_id[24];   /* "0x" and the long key ID, for the log */
    char smime_id[80]; /* "serial=HEX" */
    struct flt_enc_smime_signer *smime;
};

/* flt_enc_sign_load - the map at path, every rule's keys checked: pgp
 * keys in p's home (NULL: a pgp: key is an error), smime: only when
 * have_smime. Errors are "path:line: ...". NULL with e set. */
struct flt_enc_signmap *flt_enc_sign_load(const char *path,
                                          struct flt_enc_pgp *p,
                                          int have_smime, struct err *e);
void flt_enc_sign_free(struct flt_enc_signmap *sm);

/* flt_enc_sign_find - the keys for sender: 1 with *out, 0 when no rule
 * matches, -1 with e set. */
int flt_enc_sign_find(const struct flt_enc_signmap *sm, const char *sender,
                      const struct flt_enc_signer **out, struct err *e);
const char *flt_enc_sign_path(const struct flt_enc_signmap *sm);

/* flt_enc_smime_sign - data (len octets, a canonical MIME entity) as an
 * S/MIME entity of CMS signed-data holding it (RFC 8551, opaque:
 * application/pkcs7-mime; smime-type=signed-data), header and base64
 * with CRLF line ends, appended to out, for the enveloping after it. */
int flt_enc_smime_sign(const struct flt_enc_signer *sg, const char *data,
                       size_t len, struct buf *out, struct err *e);

/* flt_enc_pgp_signer_check - p's home and its private-keys-v1.d are
 * closed to other users, and fpr (40 hex digits) is a key in it whose
 * secret part is there, that can sign (not expired, revoked or
 * disabled, a usable signing key) and signs without a passphrase (a
 * test signature); its long key ID as "0x..." into id (size n). -1 with
 * e saying why not. */
int flt_enc_pgp_signer_check(struct flt_enc_pgp *p, const char *fpr, char *id,
                             size_t n, struct err *e);

/* flt_enc_pgp_encrypt_sign - flt_enc_pgp_encrypt, the data signed
 * first with the secret key fpr (one OpenPGP message, RFC 3156 6.2). A
 * secret key gone or unusable is an error (ERR_TEMP): never unsigned. */
int flt_enc_pgp_encrypt_sign(struct flt_enc_pgp_job *j, const size_t *slots,
                             size_t nslots, const char *fpr, const char *data,
                             size_t len, struct buf *out, struct err *e);

/* flt_enc_b64_lines - src in base64, 76 characters a line, each ended by
 * eol, appended to out. */
int flt_enc_b64_lines(const unsigned char *src, size_t len, const char *eol,
                      struct buf *out, struct err *e);

#endif
