/*
 * dkim - DKIM signing, made safe for the hops after us, and checked
 *     against the exact bytes that leave
 *
 * Configuration (chain.d), one of two forms:
 *     key_table     = file    OpenDKIM KeyTable: "name domain:selector:key"
 *     signing_table = file    OpenDKIM SigningTable, "refile:file" for
 *                             wildcard patterns: "pattern name [signer]"
 * or, for one domain:
 *     domain = example.com, selector = mail2026, key_file = keys/x.pem
 * and: signing_domain (from | sender | envelope), canonicalization,
 * sign_headers, oversign_headers, signature_ttl, eight_bit_body,
 * self_check, and which mail is ours to sign: sign_mail (internal |
 * all), internal_hosts, mta_names.
 *
 * init() reads both tables, loads every key they name with OpenSSL and
 * refuses, with "path:line: reason", a table line it cannot read, a key
 * name the key table lacks, a key file that other users may read or write
 * (naming the file, the permission and the chmod that fixes it), a key
 * that is encrypted, too short or of another type than RSA and Ed25519.
 * Each key is parsed once, here: the signatures are made by dkim_sig.c
 * with that EVP_PKEY, because libopendkim's dkim_sign() parses its key
 * text again for every message, which with OpenSSL 3 costs more than the
 * RSA signature itself. For each key the stage also keeps the DNS record
 * of its public half, "v=DKIM1; k=rsa; p=...", and the public key decoded
 * back from the record's octets, which the self-check verifies with, and
 * a PKCS#8 PEM copy for "relaychain dkim testkey". With self_check =
 * libopendkim a DKIM_LIB handle that verifies is made too, whose key
 * lookup and prescreen callbacks answer from those records and never ask
 * DNS.
 *
 * run(), for each message:
 *  0. with sign_mail = internal (the default), passes unsigned, with a
 *     note naming the client, mail that is not ours: not from an
 *     authenticated client, not from one in internal_hosts (without
 *     that key: the envelope's mark that the front end found the client
 *     in mynetworks), not taken by an MTA daemon in mta_names. As
 *     OpenDKIM decides with InternalHosts, MTA and {auth_authen}: a
 *     signing relay must not sign what an outsider wrote in our name.
 *  1. takes the signing address (the From header by default, for DMARC
 *     alignment) and looks it up: in the signing table, OpenDKIM's order
 *     for a flat file (user@host, host, user@.parent..., .parent...,
 *     user@*, *) or file order for refile patterns; the first pattern
 *     that matches wins, and every line with that same pattern gives one
 *     signature (an RSA and an Ed25519 key for one domain). "%" is the
 *     signing address's domain. A key whose d= and s= already sign the
 *     message is skipped, so mail is never signed twice.
 *  2. with eight_bit_body = encode (and, by default, only when the message
 *     did not arrive with a DKIM signature of an earlier hop, which the
 *     new octets would break: dkim_signed = skip), makes the body safe
 *     for an 8BITMIME downgrade later on: every leaf part with 8-bit octets or
 * a line over 998 octets is encoded again (text and message types as
 *     quoted-printable, others as base64) and every "8bit" or "binary"
 *     label on a part that is now clean becomes "7bit", as a downgrading
 *     MTA would otherwise do after we signed: the chain's re-encoder,
 *     core/msg/downgrade.c, which changes only those parts.
 *  3. refuses (554) a message that still has a line over 998 octets,
 *     which the next hop would wrap.
 *  4. signs the message as it will be sent (CRLF line ends) once per key
 *     (one body hash serves every key) and inserts the DKIM-Signature
 *     fields at the top.
 *  5. serializes the message again, with the new fields, and verifies each
 *     new signature over those bytes with the public half of its key: by
 *     dkim_sig.c, which finds the field and reads its tags in those bytes
 *     and hashes the header again (the body hash is reused only where the
 *     body is the same octets that were hashed), or by libopendkim. A
 *     mismatch is a tempfail verdict, whatever on_error says, with a note
 *     naming the body hash, the header hash or the verifier's reason: a
 *     broken signature never leaves.
 * Mail without a signing address, or without a key for it, is passed on
 * unsigned with a note that says why.
 *
 * Every object run() makes is freed before it returns; the keys, tables
 * and DKIM_LIB handle are read-only after init(), so run() may be called
 * from many threads at once. Fields are given to libopendkim one by one
 * rather than as one chunk so that someone else's malformed
 * DKIM-Signature, which it refuses, cannot stop the self-check.
 *
 * Failures: a table, key or option the stage cannot use stops start-up
 * with "path:line: reason"; an OpenSSL, libopendkim or memory failure
 * while signing is an error (on_error applies); a line over 998 octets is
 * a reject; a failed self-check is a tempfail verdict.
 *
 * The chain's fault hook (stage_env: NULL but in test programs) gets a
 * copy of the bytes given to the signer at the point "dkim.sign" and may
 * change them, so the tests can show that the self-check catches a broken
 * signing path (tests/unit/faultregistry.c).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <gmime/gmime.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <opendkim/dkim.h>

#include "util/cidr.h"
#include "filters/dkim/dkim_sig.h"
#include "filters/filters.h"
#include "util/log.h"
#include "msg/mime.h"
#include "msg/downgrade.h"

#define FLT_DKIM_TABLE_MAX (16 * 1024 * 1024) /* octets of one table file */
#define FLT_DKIM_LINE_MAX 4096                /* octets of one table line */
#define FLT_DKIM_ENTRIES_MAX 100000           /* lines of one table */
#define FLT_DKIM_KEYFILE_MAX (64 * 1024)      /* octets of one key file */
#define FLT_DKIM_SIGS_MAX 8       /* signatures one message may get */
#define FLT_DKIM_DOMAIN_MAX 253   /* octets of d= */
#define FLT_DKIM_SELECTOR_MAX 253 /* octets of s= */
#define FLT_DKIM_SIGNER_MAX 320   /* octets of i= */
#define FLT_DKIM_ADDR_MAX 512     /* octets of a signing address */
#define FLT_DKIM_RECORD_MAX 2048  /* octets of a key's DNS record */
#define FLT_DKIM_LINE_LIMIT 998   /* RFC 5322 line limit, without CRLF */
#define FLT_DKIM_HDRS_MAX 64      /* names in sign_headers */
#define FLT_DKIM_WHY_MAX 768      /* a reason for a log note */
#define FLT_DKIM_HDR_PREFIX "DKIM-Signature: "

/* One private key, loaded and checked. */
struct flt_dkim_key {
    char *path;
    int alg; /* DKIM_SIGN_RSASHA256 or DKIM_SIGN_ED25519SHA256 */
    int bits;
    char *pem; /* PKCS#8 PEM, for "dkim testkey"; cleansed on free */
    size_t pem_len;
    char *record; /* "v=DKIM1; k=rsa; p=..." */
    EVP_PKEY *pkey;
    EVP_PKEY *pub;                /* decoded from the record's p= octets */
    struct flt_dkim_sig_key *sig; /* pkey and pub, ready to sign */
};

/* A key table line: name domain:selector:path. */
struct flt_dkim_kt {
    char *name;
    char *domain; /* "%" is the signing address's domain */
    char *selector;
    char *path; /* as written, relative to the key table */
    unsigned line;
    struct flt_dkim_key *key;
};

/* A signing table line: pattern name [signer]. */
struct flt_dkim_st {
    char *pattern; /* lower case */
    char *name;    /* key table name, or "%" */
    char *signer;  /* i= template, or NULL */
    unsigned line;
    size_t kt; /* index in keys, or SIZE_MAX when name is "%" */
};

struct flt_dkim_tables {
    char *kt_path;
    char *st_path;
    int refile;
    struct flt_dkim_kt *keys; /* file order */
    size_t nkeys, keys_cap;
    size_t *keys_by_name;     /* indexes, by name without regard to case */
    struct flt_dkim_st *sigs; /* file order */
    size_t nsigs, sigs_cap;
    size_t *sigs_by_pattern; /* flat files: by pattern, then line */
};

enum flt_dkim_source { FLT_DKIM_FROM, FLT_DKIM_SENDER, FLT_DKIM_ENVELOPE };

struct flt_dkim {
    struct flt_dkim_tables *tables; /* NULL in the short form */
    struct flt_dkim_key *key;       /* the short form's key */
    char *domain;                   /* the short form's domain, lower case */
    const char *selector;           /* borrowed from the cfg */
    enum flt_dkim_source source;
    enum flt_dkim_canon hcanon, bcanon;
    int encode;
    uint64_t ttl;           /* seconds; 0: no x= */
    DKIM_LIB *verify_lib;   /* self_check = libopendkim; else NULL */
    const char **sign_hdrs; /* NULL-terminated, borrowed names */
    const char **oversign_hdrs;
    int dkim_edit;                    /* dkim_signed = edit */
    int sign_all;                     /* sign_mail = all */
    struct cidr_list *internal_hosts; /* NULL: the front end's mynetworks */
    const char *const *mta_names;     /* borrowed from the cfg */
    size_t nmta_names;
};

/* One signature to make on one message. */
struct flt_dkim_plan {
    const struct flt_dkim_key *key;
    char domain[FLT_DKIM_DOMAIN_MAX + 1];
    char selector[FLT_DKIM_SELECTOR_MAX + 1];
    char signer[FLT_DKIM_SIGNER_MAX + 1]; /* "" for none */
};

static const char *const flt_dkim_source_choices[] = {"from", "sender",
                                                      "envelope", NULL};
static const char *const flt_dkim_canon_choices[] = {
    "relaxed/relaxed", "relaxed/simple", "simple/relaxed", "simple/simple",
    NULL};
static const char *const flt_dkim_8bit_choices[] = {"encode", "keep", NULL};
static const char *const flt_dkim_check_choices[] = {"builtin", "libopendkim",
                                                     NULL};
static const char *const flt_dkim_signed_choices[] = {"skip", "edit", NULL};
static const char *const flt_dkim_sign_mail_choices[] = {"internal", "all",
                                                         NULL};

static const struct cfg_option flt_dkim_options[] = {
    {"key_table", CFG_PATH, NULL,
     "OpenDKIM KeyTable: lines \"name domain:selector:/path/to/key\"", NULL, 0,
     0, 0},
    {"signing_table", CFG_STRING, NULL,
     "OpenDKIM SigningTable (\"refile:FILE\" for wildcard patterns): lines "
     "\"pattern name [signer]\"",
     NULL, 0, 0, 0},
    {"domain", CFG_STRING, NULL,
     "short form: the one domain to sign for (with selector and key_file)",
     NULL, 0, 0, 0},
    {"selector", CFG_STRING, NULL, "short form: the selector (s=)", NULL, 0, 0,
     0},
    {"key_file", CFG_PATH, NULL,
     "short form: the private key, PEM (PKCS#1 or PKCS#8), RSA or Ed25519",
     NULL, 0, 0, 0},
    {"signing_domain", CFG_ENUM, "from",
     "where the signing address comes from: from (the From header, for "
     "DMARC alignment), sender (Sender header, else From) or envelope "
     "(MAIL FROM)",
     flt_dkim_source_choices, 0, 0, 0},
    {"canonicalization", CFG_ENUM, "relaxed/relaxed",
     "c= header/body canonicalization", flt_dkim_canon_choices, 0, 0, 0},
    {"sign_headers", CFG_LIST,
     "From, Reply-To, Subject, Date, To, Cc, Resent-Date, Resent-From, "
     "Resent-To, Resent-Cc, In-Reply-To, References, List-Id, List-Help, "
     "List-Unsubscribe, List-Unsubscribe-Post, List-Subscribe, List-Post, "
     "List-Owner, List-Archive, Sender, Message-ID, MIME-Version, "
     "Content-Type, Content-Transfer-Encoding",
     "header fields signed when present (RFC 6376 section 5.4.1 and MIME)",
     NULL, 0, 0, 0},
    {"oversign_headers", CFG_LIST,
     "From, To, Cc, Subject, Date, Reply-To, Content-Type, MIME-Version",
     "fields signed once more than they occur, so that none can be added",
     NULL, 0, 0, 0},
    {"signature_ttl", CFG_TIME, "0",
     "lifetime of a signature (x= tag); 0 for none", NULL, 0, 0, 0},
    {"eight_bit_body", CFG_ENUM, "encode",
     "encode: re-encode 8-bit parts (and parts with lines over 998 octets) "
     "as quoted-printable or base64 before signing, so that no 8BITMIME "
     "downgrade can break the body hash; keep: leave them",
     flt_dkim_8bit_choices, 0, 0, 0},
    {"self_check", CFG_ENUM, "builtin",
     "who verifies each new signature over the final bytes: builtin (the "
     "stage's own verifier, which reads the bytes again) or libopendkim (a "
     "second, independent implementation; about 130 us more per RSA "
     "signature)",
     flt_dkim_check_choices, 0, 0, 0},
    {"dkim_signed", CFG_ENUM, "skip",
     "a message that arrives with a DKIM signature (an earlier hop signed "
     "it): skip (sign it without re-encoding 8-bit parts, so the earlier "
     "signature still verifies) or edit (re-encode as eight_bit_body says "
     "and break it)",
     flt_dkim_signed_choices, 0, 0, 0},
    {"sign_mail", CFG_ENUM, "internal",
     "which mail is signed: internal (from a client in internal_hosts, an "
     "authenticated client, or in milter mode an MTA daemon in mta_names; "
     "other mail passes unsigned and the log says why) or all (any mail "
     "with a key for its domain, which lets outsiders get our signature)",
     flt_dkim_sign_mail_choices, 0, 0, 0},
    {"internal_hosts", CFG_LIST, NULL,
     "networks whose mail is signed, as OpenDKIM's InternalHosts; the "
     "client is the one the MTA or XFORWARD names (default: mynetworks of "
     "relaychain.conf)",
     NULL, 0, 0, 0},
    {"mta_names", CFG_LIST, NULL,
     "milter mode: values of the MTA's {daemon_name} macro whose mail is "
     "signed whatever the client (a submission service), as OpenDKIM's MTA",
     NULL, 0, 0, 0},
    CFG_OPTION_END,
};

/* ------------------------------------------------------------ helpers */

static int
flt_dkim_lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static char *
flt_dkim_strndup_lower(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    size_t i;

    if (p == NULL)
        return NULL;
    for (i = 0; i < n; i++)
        p[i] = (char)flt_dkim_lower((unsigned char)s[i]);
    p[n] = '\0';
    return p;
}

static int
flt_dkim_is_space(int c)
{
    return c == ' ' || c == '\t';
}

/* flt_dkim_is_label_char - a character of a DNS name we sign with: letters,
 * digits, hyphen, and underscore for selectors. */
static int
flt_dkim_is_label_char(int c, int underscore)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || c == '-' || (underscore && c == '_');
}

/* flt_dkim_is_dns_name - s is a dot-separated ASCII name, labels of 1 to
 * 63 such characters, at most max octets: what d= and s= may hold. */
static int
flt_dkim_is_dns_name(const char *s, size_t max, int underscore)
{
    size_t len = strlen(s), label = 0, i;

    if (len == 0 || len > max)
        return 0;
    for (i = 0; i <= len; i++) {
        if (s[i] == '.' || s[i] == '\0') {
            if (label == 0 || label > 63 || s[i - 1] == '-' ||
                s[i - label] == '-')
                return 0;
            label = 0;
        } else if (!flt_dkim_is_label_char((unsigned char)s[i], underscore)) {
            return 0;
        } else {
            label++;
        }
    }
    return 1;
}

int
flt_dkim_name_ok(const char *s, int selector)
{
    return flt_dkim_is_dns_name(
        s, selector ? FLT_DKIM_SELECTOR_MAX : FLT_DKIM_DOMAIN_MAX, selector);
}

/* flt_dkim_is_header_name - the names sign_headers may hold: what
 * libopendkim can match literally. */
static int
flt_dkim_is_header_name(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s != '\0'; s++)
        if (!flt_dkim_is_label_char((unsigned char)*s, 0))
            return 0;
    return 1;
}

/* flt_dkim_resolve - name relative to the directory of base, unless it is
 * absolute. Returns a new string or NULL on ENOMEM. */
static char *
flt_dkim_resolve(const char *base, const char *name)
{
    const char *slash = strrchr(base, '/');
    size_t dlen, nlen = strlen(name);
    char *p;

    if (name[0] == '/' || slash == NULL)
        return strdup(name);
    dlen = (size_t)(slash - base);
    if ((p = malloc(dlen + 1 + nlen + 1)) == NULL)
        return NULL;
    memcpy(p, base, dlen);
    p[dlen] = '/';
    memcpy(p + dlen + 1, name, nlen + 1);
    return p;
}

/* flt_dkim_ssl_error - OpenSSL's queued reasons, for an error text. */
static const char *
flt_dkim_ssl_error(char *out, size_t n)
{
    unsigned long code = ERR_get_error();

    if (code == 0)
        snprintf(out, n, "no reason given");
    else
        ERR_error_string_n(code, out, n);
    ERR_clear_error();
    return out;
}

/* flt_dkim_glob - s matches the OpenDKIM wildcard pattern p, in which only
 * "*" is special; ASCII letters compare without regard to case. */
static int
flt_dkim_glob(const char *p, const char *s)
{
    const char *star = NULL, *retry = NULL;

    while (*s != '\0') {
        if (*p == '*') {
            star = p++;
            retry = s;
        } else if (*p != '\0' && flt_dkim_lower((unsigned char)*p) ==
                                     flt_dkim_lower((unsigned char)*s)) {
            p++;
            s++;
        } else if (star != NULL) {
            p = star + 1;
            s = ++retry;
        } else {
            return 0;
        }
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

/* ------------------------------------------------------------- keys */

static int
flt_dkim_no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

void
flt_dkim_key_free(struct flt_dkim_key *k)
{
    if (k == NULL)
        return;
    if (k->pem != NULL) {
        OPENSSL_cleanse(k->pem, k->pem_len);
        free(k->pem);
    }
    flt_dkim_sig_key_free(k->sig);
    EVP_PKEY_free(k->pkey);
    EVP_PKEY_free(k->pub);
    free(k->record);
    free(k->path);
    free(k);
}

/* flt_dkim_b64 - base64 of n octets, without line breaks; NULL on ENOMEM. */
static char *
flt_dkim_b64(const unsigned char *p, size_t n)
{
    char *out;

    if (n > INT32_MAX / 2 || (out = malloc(4 * ((n + 2) / 3) + 1)) == NULL)
        return NULL;
    EVP_EncodeBlock((unsigned char *)out, p, (int)n);
    return out;
}

/* flt_dkim_public_b64 - the p= value of k's key: base64 of the DER
 * SubjectPublicKeyInfo for RSA, of the raw 32 octets for Ed25519; and
 * k->pub, the public key decoded from those same octets, which the
 * self-check verifies with. NULL on failure. */
static char *
flt_dkim_public_b64(struct flt_dkim_key *k)
{
    unsigned char raw[64], *der = NULL;
    const unsigned char *p;
    size_t rawlen = sizeof(raw);
    char *b64;
    int n;

    if (k->alg == DKIM_SIGN_ED25519SHA256) {
        if (EVP_PKEY_get_raw_public_key(k->pkey, raw, &rawlen) != 1 ||
            (k->pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw,
                                                  rawlen)) == NULL)
            return NULL;
        return flt_dkim_b64(raw, rawlen);
    }
    if ((n = i2d_PUBKEY(k->pkey, &der)) <= 0)
        return NULL;
    p = der;
    if ((k->pub = d2i_PUBKEY(NULL, &p, n)) == NULL) {
        OPENSSL_free(der);
        return NULL;
    }
    b64 = flt_dkim_b64(der, (size_t)n);
    OPENSSL_free(der);
    return b64;
}

/* flt_dkim_key_pem - the normalized PKCS#8 PEM of k->pkey into k->pem. */
static int
flt_dkim_key_pem(struct flt_dkim_key *k, struct err *e)
{
    char why[256];
    BIO *bio;
    char *p;
    long n;

    if ((bio = BIO_new(BIO_s_mem())) == NULL)
        return err_nomem(e);
    if (PEM_write_bio_PrivateKey(bio, k->pkey, NULL, NULL, 0, NULL, NULL) !=
            1 ||
        (n = BIO_get_mem_data(bio, &p)) <= 0) {
        BIO_free(bio);
        return err_set(e, ERR_LIB, "%s: cannot write the key as PEM: %s",
                       k->path, flt_dkim_ssl_error(why, sizeof(why)));
    }
    if ((k->pem = malloc((size_t)n + 1)) == NULL) {
        OPENSSL_cleanse(p, (size_t)n);
        BIO_free(bio);
        return err_nomem(e);
    }
    memcpy(k->pem, p, (size_t)n);
    k->pem[n] = '\0';
    k->pem_len = (size_t)n;
    OPENSSL_cleanse(p, (size_t)n);
    BIO_free(bio);
    return 0;
}

/* flt_dkim_key_parse - k->pkey from the PEM text of a key file. */
static int
flt_dkim_key_parse(struct flt_dkim_key *k, const char *text, size_t len,
                   struct err *e)
{
    char why[256];
    BIO *bio;
    int id;

    if (strstr(text, "ENCRYPTED") != NULL)
        return err_set(e, ERR_CONFIG,
                       "%s: the key is encrypted with a passphrase, which "
                       "relaychain cannot ask for; store it decrypted "
                       "(openssl pkey -in %s -out NEWFILE) with mode 0600",
                       k->path, k->path);
    if (strstr(text, "-----BEGIN") == NULL)
        return err_set(e, ERR_CONFIG,
                       "%s: not a PEM private key (no \"-----BEGIN\" line); "
                       "give a PKCS#1 or PKCS#8 PEM file",
                       k->path);
    if (len > INT32_MAX || (bio = BIO_new_mem_buf(text, (int)len)) == NULL)
        return err_nomem(e);
    k->pkey = PEM_read_bio_PrivateKey(bio, NULL, flt_dkim_no_password, NULL);
    BIO_free(bio);
    if (k->pkey == NULL)
        return err_set(e, ERR_CONFIG, "%s: cannot read the private key: %s",
                       k->path, flt_dkim_ssl_error(why, sizeof(why)));
    id = EVP_PKEY_get_base_id(k->pkey);
    k->bits = EVP_PKEY_get_bits(k->pkey);
    if (id == EVP_PKEY_RSA) {
        k->alg = DKIM_SIGN_RSASHA256;
        if (k->bits < 1024)
            return err_set(e, ERR_CONFIG,
                           "%s: RSA key of %d bits is too short for DKIM "
                           "(RFC 8301: at least 1024, 2048 recommended)",
                           k->path, k->bits);
        if (k->bits > 8192)
            return err_set(e, ERR_CONFIG,
                           "%s: RSA key of %d bits is longer than the 8192 "
                           "that relaychain signs with (and than most "
                           "verifiers accept); use 2048 or 4096",
                           k->path, k->bits);
    } else if (id == EVP_PKEY_ED25519) {
        k->alg = DKIM_SIGN_ED25519SHA256;
    } else {
        return err_set(e, ERR_CONFIG,
                       "%s: key type %s cannot sign DKIM; use RSA or Ed25519",
                       k->path,
                       EVP_PKEY_get0_type_name(k->pkey) != NULL
                           ? EVP_PKEY_get0_type_name(k->pkey)
                           : OBJ_nid2sn(id));
    }
    return 0;
}

/* flt_dkim_key_read - the contents of path, checked for mode and size. */
static int
flt_dkim_key_read(const char *path, int check_mode, char **text, size_t *len,
                  struct err *e)
{
    const char *problem;
    struct stat sb;
    char *buf;
    ssize_t n;
    size_t got = 0;
    int fd;

    /* O_NONBLOCK: a FIFO in its place is refused below, not waited on. */
    if ((fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)) < 0)
        return err_sys(e, ERR_CONFIG, "%s: cannot open the key file", path);
    if (fstat(fd, &sb) < 0) {
        close(fd);
        return err_sys(e, ERR_CONFIG, "%s", path);
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return err_set(e, ERR_CONFIG, "%s: the key is not a regular file",
                       path);
    }
    /* The rule for every secret file (cfg_secret_problem), strictest. */
    if (check_mode &&
        (problem = cfg_secret_problem(sb.st_mode, S_IRGRP | S_IWGRP | S_IROTH |
                                                      S_IWOTH)) != NULL) {
        close(fd);
        return err_set(e, ERR_CONFIG,
                       "%s: key file mode %04o %s; a private key must be "
                       "readable by its owner only: chmod 600 %s (and chown "
                       "it to the user relaychain runs as)",
                       path, (unsigned)(sb.st_mode & 07777), problem, path);
    }
    if (sb.st_size > FLT_DKIM_KEYFILE_MAX) {
        close(fd);
        return err_set(e, ERR_CONFIG,
                       "%s: %lld octets is too large for a key file (limit "
                       "%d)",
                       path, (long long)sb.st_size, FLT_DKIM_KEYFILE_MAX);
    }
    if ((buf = malloc(FLT_DKIM_KEYFILE_MAX + 1)) == NULL) {
        close(fd);
        return err_nomem(e);
    }
    while (got < FLT_DKIM_KEYFILE_MAX &&
           (n = read(fd, buf + got, FLT_DKIM_KEYFILE_MAX - got)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            OPENSSL_cleanse(buf, got);
            free(buf);
            close(fd);
            return err_sys(e, ERR_CONFIG, "%s: read", path);
        }
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    *text = buf;
    *len = got;
    return 0;
}

struct flt_dkim_key *
flt_dkim_key_load(const char *path, int check_mode, struct err *e)
{
    struct flt_dkim_key *k;
    char *text = NULL, *p = NULL;
    size_t len = 0;
    int rc;

    if ((k = calloc(1, sizeof(*k))) == NULL ||
        (k->path = strdup(path)) == NULL) {
        free(k);
        err_nomem(e);
        return NULL;
    }
    if (flt_dkim_key_read(path, check_mode, &text, &len, e) < 0) {
        flt_dkim_key_free(k);
        return NULL;
    }
    rc = flt_dkim_key_parse(k, text, len, e);
    OPENSSL_cleanse(text, len);
    free(text);
    if (rc == 0)
        rc = flt_dkim_key_pem(k, e);
    if (rc == 0 && (p = flt_dkim_public_b64(k)) == NULL)
        rc = err_set(e, ERR_LIB, "%s: cannot compute the public key", path);
    if (rc == 0 &&
        (k->sig = flt_dkim_sig_key_new(k->pkey, k->pub, e)) == NULL) {
        err_prefix(e, "%s", path);
        rc = -1;
    }
    if (rc == 0) {
        size_t n = strlen(p) + 64;

        if ((k->record = malloc(n)) == NULL)
            rc = err_nomem(e);
        else
            snprintf(k->record, n, "v=DKIM1; k=%s; p=%s",
                     k->alg == DKIM_SIGN_RSASHA256 ? "rsa" : "ed25519", p);
    }
    free(p);
    if (rc < 0) {
        flt_dkim_key_free(k);
        return NULL;
    }
    return k;
}

const char *
flt_dkim_key_alg(const struct flt_dkim_key *k)
{
    return k->alg == DKIM_SIGN_RSASHA256 ? "rsa-sha256" : "ed25519-sha256";
}

const char *
flt_dkim_key_type(const struct flt_dkim_key *k)
{
    return k->alg == DKIM_SIGN_RSASHA256 ? "rsa" : "ed25519";
}

int
flt_dkim_key_bits(const struct flt_dkim_key *k)
{
    return k->bits;
}

const char *
flt_dkim_key_record(const struct flt_dkim_key *k)
{
    return k->record;
}

const char *
flt_dkim_key_pem_text(const struct flt_dkim_key *k)
{
    return k->pem;
}

int
flt_dkim_key_matches(const struct flt_dkim_key *k, const unsigned char *der,
                     size_t len)
{
    const unsigned char *p = der;
    EVP_PKEY *pub = NULL;
    int rc;

    if (len > INT32_MAX)
        return 0;
    if (k->alg == DKIM_SIGN_ED25519SHA256) {
        pub = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, der, len);
    } else if ((pub = d2i_PUBKEY(NULL, &p, (long)len)) == NULL) {
        /* Some generators publish a bare PKCS#1 RSAPublicKey. */
        p = der;
        ERR_clear_error();
        pub = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, (long)len);
    }
    ERR_clear_error();
    if (pub == NULL)
        return 0;
    rc = EVP_PKEY_eq(k->pkey, pub) == 1;
    EVP_PKEY_free(pub);
    ERR_clear_error();
    return rc;
}

/* ----------------------------------------------------------- tables */

/* A table file split into lines: each line's fields and its number. */
struct flt_dkim_reader {
    const char *name;
    const char *p, *end;
    unsigned line;
    char buf[FLT_DKIM_LINE_MAX + 1];
    char *fields[4];
    size_t nfields;
};

/* flt_dkim_next - the next line that is neither blank nor a comment, split
 * into at most 4 white-space separated fields. Returns 1, 0 at the end,
 * -1 on a line that is too long or holds a NUL or control character. */
static int
flt_dkim_next(struct flt_dkim_reader *r, struct err *e)
{
    const char *nl;
    size_t len, i;
    char *q;

    while (r->p < r->end) {
        r->line++;
        nl = memchr(r->p, '\n', (size_t)(r->end - r->p));
        len = (size_t)((nl != NULL ? nl : r->end) - r->p);
        if (len > 0 && r->p[len - 1] == '\r')
            len--;
        if (len > FLT_DKIM_LINE_MAX)
            return err_set(e, ERR_CONFIG, "%s:%u: line longer than %d octets",
                           r->name, r->line, FLT_DKIM_LINE_MAX);
        memcpy(r->buf, r->p, len);
        r->buf[len] = '\0';
        r->p = nl != NULL ? nl + 1 : r->end;
        for (i = 0; i < len; i++)
            if ((unsigned char)r->buf[i] < 0x20 && r->buf[i] != '\t')
                return err_set(e, ERR_CONFIG,
                               "%s:%u: control character in line", r->name,
                               r->line);
        r->nfields = 0;
        for (q = r->buf; *q != '\0';) {
            while (flt_dkim_is_space((unsigned char)*q))
                q++;
            if (*q == '\0' || *q == '#') /* a comment to the line end */
                break;
            if (r->nfields == 4)
                return err_set(e, ERR_CONFIG,
                               "%s:%u: too many fields (want \"key value\")",
                               r->name, r->line);
            r->fields[r->nfields++] = q;
            while (*q != '\0' && !flt_dkim_is_space((unsigned char)*q))
                q++;
            if (*q != '\0')
                *q++ = '\0';
        }
        if (r->nfields > 0)
            return 1;
    }
    return 0;
}

/* flt_dkim_grow - the array p (n items of size, room for *cap) with room
 * for one more, doubling: p itself or a moved copy; NULL on ENOMEM, when
 * p is left as it was. */
static void *
flt_dkim_grow(void *p, size_t *cap, size_t n, size_t size)
{
    size_t ncap = *cap ? 2 * *cap : 16;
    void *grown;

    if (n < *cap)
        return p;
    if (ncap > SIZE_MAX / size || (grown = realloc(p, ncap * size)) == NULL)
        return NULL;
    *cap = ncap;
    return grown;
}

static void
flt_dkim_tables_clear(struct flt_dkim_tables *t)
{
    size_t i;

    for (i = 0; i < t->nkeys; i++) {
        free(t->keys[i].name);
        free(t->keys[i].domain);
        free(t->keys[i].selector);
        free(t->keys[i].path);
        flt_dkim_key_free(t->keys[i].key);
    }
    for (i = 0; i < t->nsigs; i++) {
        free(t->sigs[i].pattern);
        free(t->sigs[i].name);
        free(t->sigs[i].signer);
    }
    free(t->keys);
    free(t->keys_by_name);
    free(t->sigs);
    free(t->sigs_by_pattern);
}

void
flt_dkim_tables_free(struct flt_dkim_tables *t)
{
    if (t == NULL)
        return;
    flt_dkim_tables_clear(t);
    free(t->kt_path);
    free(t->st_path);
    free(t);
}

/* Sorting the index arrays: qsort() has no context argument, so the
 * arrays hold pointers' offsets into one table that the comparators reach
 * through a pair. */
struct flt_dkim_sortref {
    const char *key;
    unsigned line;
    size_t index;
};

static int
flt_dkim_sortref_cmp(const void *a, const void *b)
{
    const struct flt_dkim_sortref *x = a, *y = b;
    int c = strcasecmp(x->key, y->key);

    if (c != 0)
        return c;
    return x->line < y->line ? -1 : x->line > y->line;
}

/* flt_dkim_index - indexes of n items sorted by key (case-insensitive),
 * then line, into *out. */
static int
flt_dkim_index(size_t n,
               const char *(*key)(const struct flt_dkim_tables *, size_t),
               unsigned (*line)(const struct flt_dkim_tables *, size_t),
               const struct flt_dkim_tables *t, size_t **out, struct err *e)
{
    struct flt_dkim_sortref *refs;
    size_t i;

    *out = NULL;
    if (n == 0)
        return 0;
    if ((refs = calloc(n, sizeof(*refs))) == NULL ||
        (*out = calloc(n, sizeof(**out))) == NULL) {
        free(refs);
        return err_nomem(e);
    }
    for (i = 0; i < n; i++) {
        refs[i].key = key(t, i);
        refs[i].line = line(t, i);
        refs[i].index = i;
    }
    qsort(refs, n, sizeof(*refs), flt_dkim_sortref_cmp);
    for (i = 0; i < n; i++)
        (*out)[i] = refs[i].index;
    free(refs);
    return 0;
}

static const char *
flt_dkim_kt_key(const struct flt_dkim_tables *t, size_t i)
{
    return t->keys[i].name;
}

static unsigned
flt_dkim_kt_line(const struct flt_dkim_tables *t, size_t i)
{
    return t->keys[i].line;
}

static const char *
flt_dkim_st_key(const struct flt_dkim_tables *t, size_t i)
{
    return t->sigs[i].pattern;
}

static unsigned
flt_dkim_st_line(const struct flt_dkim_tables *t, size_t i)
{
    return t->sigs[i].line;
}

/* flt_dkim_find_key - the key table entry called name, or SIZE_MAX. */
static size_t
flt_dkim_find_key(const struct flt_dkim_tables *t, const char *name)
{
    size_t lo = 0, hi = t->nkeys, mid;
    int c;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        c = strcasecmp(name, t->keys[t->keys_by_name[mid]].name);
        if (c == 0)
            return t->keys_by_name[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return SIZE_MAX;
}

static int
flt_dkim_parse_key_table(struct flt_dkim_tables *t, const char *text,
                         size_t len, struct err *e)
{
    struct flt_dkim_reader r;
    struct flt_dkim_kt *kt;
    const char *v, *c1, *c2;
    size_t i;
    int rc;

    memset(&r, 0, sizeof(r));
    r.name = t->kt_path;
    r.p = text;
    r.end = text + len;
    while ((rc = flt_dkim_next(&r, e)) == 1) {
        if (r.nfields != 2)
            return err_set(e, ERR_CONFIG,
                           "%s:%u: want \"name domain:selector:keyfile\"%s",
                           r.name, r.line,
                           r.nfields < 2 ? "" : ", got more fields");
        v = r.fields[1];
        if ((c1 = strchr(v, ':')) == NULL ||
            (c2 = strchr(c1 + 1, ':')) == NULL)
            return err_set(e, ERR_CONFIG,
                           "%s:%u: key %s: value \"%s\" is not "
                           "domain:selector:keyfile",
                           r.name, r.line, r.fields[0], v);
        if (t->nkeys >= FLT_DKIM_ENTRIES_MAX)
            return err_set(e, ERR_CONFIG, "%s:%u: more than %d keys", r.name,
                           r.line, FLT_DKIM_ENTRIES_MAX);
        if ((kt = flt_dkim_grow(t->keys, &t->keys_cap, t->nkeys,
                                sizeof(*t->keys))) == NULL)
            return err_nomem(e);
        t->keys = kt;
        kt = &t->keys[t->nkeys];
        memset(kt, 0, sizeof(*kt));
        t->nkeys++;
        kt->line = r.line;
        if ((kt->name = strdup(r.fields[0])) == NULL ||
            (kt->domain = flt_dkim_strndup_lower(v, (size_t)(c1 - v))) ==
                NULL ||
            (kt->selector = flt_dkim_strndup_lower(
                 c1 + 1, (size_t)(c2 - c1 - 1))) == NULL ||
            (kt->path = strdup(c2 + 1)) == NULL)
            return err_nomem(e);
        if (strcmp(kt->domain, "%") != 0 &&
            !flt_dkim_is_dns_name(kt->domain, FLT_DKIM_DOMAIN_MAX, 0))
            return err_set(e, ERR_CONFIG,
                           "%s:%u: key %s: \"%s\" is not a domain name (or "
                           "%% for the signing address's domain)",
                           r.name, r.line, kt->name, kt->domain);
        if (!flt_dkim_is_dns_name(kt->selector, FLT_DKIM_SELECTOR_MAX, 1))
            return err_set(e, ERR_CONFIG,
                           "%s:%u: key %s: \"%s\" is not a valid selector",
                           r.name, r.line, kt->name, kt->selector);
        if (kt->path[0] == '\0')
            return err_set(e, ERR_CONFIG, "%s:%u: key %s: no key file", r.name,
                           r.line, kt->name);
    }
    if (rc < 0)
        return -1;
    if (flt_dkim_index(t->nkeys, flt_dkim_kt_key, flt_dkim_kt_line, t,
                       &t->keys_by_name, e) < 0)
        return -1;
    for (i = 1; i < t->nkeys; i++) {
        const struct flt_dkim_kt *a = &t->keys[t->keys_by_name[i - 1]];
        const struct flt_dkim_kt *b = &t->keys[t->keys_by_name[i]];

        if (strcasecmp(a->name, b->name) == 0)
            return err_set(e, ERR_CONFIG,
                           "%s:%u: key name %s is already used at line %u",
                           t->kt_path, b->line, b->name, a->line);
    }
    return 0;
}

/* flt_dkim_signer_ok - i= may hold what DKIM-quoted-printable need not
 * encode, "%" for the domain, and exactly one "@". */
static int
flt_dkim_signer_ok(const char *s)
{
    const char *at = strchr(s, '@');

    if (at == NULL || at == s || at[1] == '\0' || strchr(at + 1, '@'))
        return 0;
    for (; *s != '\0'; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f ||
            *s == ';' || *s == '=' || *s == '"')
            return 0;
    return 1;
}

static int
flt_dkim_parse_signing_table(struct flt_dkim_tables *t, const char *text,
                             size_t len, struct err *e)
{
    struct flt_dkim_reader r;
    struct flt_dkim_st *st;
    size_t i, group;
    int rc;

    memset(&r, 0, sizeof(r));
    r.name = t->st_path;
    r.p = text;
    r.end = text + len;
    while ((rc = flt_dkim_next(&r, e)) == 1) {
        if (r.nfields < 2 || r.nfields > 3)
            return err_set(e, ERR_CONFIG,
                           "%s:%u: want \"pattern keyname [signer]\"", r.name,
                           r.line);
        if (t->nsigs >= FLT_DKIM_ENTRIES_MAX)
            return err_set(e, ERR_CONFIG, "%s:%u: more than %d lines", r.name,
                           r.line, FLT_DKIM_ENTRIES_MAX);
        if ((st = flt_dkim_grow(t->sigs, &t->sigs_cap, t->nsigs,
                                sizeof(*t->sigs))) == NULL)
            return err_nomem(e);
        t->sigs = st;
        st = &t->sigs[t->nsigs];
        memset(st, 0, sizeof(*st));
        t->nsigs++;
        st->line = r.line;
        st->kt = SIZE_MAX;
        if ((st->pattern = flt_dkim_strndup_lower(
                 r.fields[0], strlen(r.fields[0]))) == NULL ||
            (st->name = strdup(r.fields[1])) == NULL ||
            (r.nfields == 3 && (st->signer = strdup(r.fields[2])) == NULL))
            return err_nomem(e);
        if (strcmp(st->name, "%") != 0 &&
            (st->kt = flt_dkim_find_key(t, st->name)) == SIZE_MAX)
            return err_set(e, ERR_CONFIG,
                           "%s:%u: key name %s is not in the key table %s",
                           r.name, r.line, st->name, t->kt_path);
        if (st->signer != NULL && !flt_dkim_signer_ok(st->signer))
            return err_set(e, ERR_CONFIG,
                           "%s:%u: signer \"%s\" is not an address for i= "
                           "(user@domain, %% for the domain)",
                           r.name, r.line, st->signer);
    }
    if (rc < 0)
        return -1;
    /* The index serves flat lookups, and bounds the lines of one pattern
     * (every line of the pattern that matches signs) in both kinds. */
    if (flt_dkim_index(t->nsigs, flt_dkim_st_key, flt_dkim_st_line, t,
                       &t->sigs_by_pattern, e) < 0)
        return -1;
    for (i = 0; i < t->nsigs; i += group) {
        const struct flt_dkim_st *first = &t->sigs[t->sigs_by_pattern[i]];

        for (group = 1;
             i + group < t->nsigs &&
             strcmp(first->pattern,
                    t->sigs[t->sigs_by_pattern[i + group]].pattern) == 0;
             group++)
            ;
        if (group > FLT_DKIM_SIGS_MAX)
            return err_set(e, ERR_CONFIG,
                           "%s:%u: pattern %s has %zu lines; at most %d "
                           "signatures per message",
                           t->st_path, first->line, first->pattern, group,
                           FLT_DKIM_SIGS_MAX);
    }
    return 0;
}

struct flt_dkim_tables *
flt_dkim_tables_parse(const char *kt_path, const char *kt_text, size_t kt_len,
                      const char *st_path, int refile, const char *st_text,
                      size_t st_len, struct err *e)
{
    struct flt_dkim_tables *t;

    if ((t = calloc(1, sizeof(*t))) == NULL ||
        (t->kt_path = strdup(kt_path)) == NULL ||
        (t->st_path = strdup(st_path)) == NULL) {
        flt_dkim_tables_free(t);
        err_nomem(e);
        return NULL;
    }
    t->refile = refile;
    if (flt_dkim_parse_key_table(t, kt_text, kt_len, e) < 0 ||
        flt_dkim_parse_signing_table(t, st_text, st_len, e) < 0) {
        flt_dkim_tables_free(t);
        return NULL;
    }
    return t;
}

/* flt_dkim_find_pattern - the first of the flat table's lines for pattern,
 * as a position in sigs_by_pattern, or SIZE_MAX. */
static size_t
flt_dkim_find_pattern(const struct flt_dkim_tables *t, const char *pattern)
{
    size_t lo = 0, hi = t->nsigs, mid;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        if (strcasecmp(t->sigs[t->sigs_by_pattern[mid]].pattern, pattern) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < t->nsigs &&
        strcasecmp(t->sigs[t->sigs_by_pattern[lo]].pattern, pattern) == 0)
        return lo;
    return SIZE_MAX;
}

/* flt_dkim_group - the lines of the pattern at position pos of the sorted
 * index, in file order, into out; returns their number. */
static size_t
flt_dkim_group(const struct flt_dkim_tables *t, size_t pos,
               const struct flt_dkim_st **out, size_t max)
{
    size_t n = 0;

    while (n < max && pos + n < t->nsigs &&
           strcmp(t->sigs[t->sigs_by_pattern[pos + n]].pattern,
                  t->sigs[t->sigs_by_pattern[pos]].pattern) == 0) {
        out[n] = &t->sigs[t->sigs_by_pattern[pos + n]];
        n++;
    }
    return n;
}

/* flt_dkim_lookup_flat - OpenDKIM's order for a flat SigningTable:
 * user@host, host, user@.parent and .parent (nearest parent first),
 * user@*, *. */
static size_t
flt_dkim_lookup_flat(const struct flt_dkim_tables *t, const char *addr,
                     const struct flt_dkim_st **out, size_t max)
{
    const char *at = strrchr(addr, '@'), *host, *dot;
    char key[FLT_DKIM_LINE_MAX + 2];
    size_t ulen, pos = SIZE_MAX;
    int step;

    if (at == NULL)
        return 0;
    host = at + 1;
    ulen = (size_t)(at - addr);
    if (ulen > FLT_DKIM_LINE_MAX / 2 || strlen(host) > FLT_DKIM_LINE_MAX / 2)
        return 0;
    for (step = 0; step < 6 && pos == SIZE_MAX; step++) {
        switch (step) {
        case 0:
            pos = flt_dkim_find_pattern(t, addr);
            break;
        case 1:
            pos = flt_dkim_find_pattern(t, host);
            break;
        case 2:
            for (dot = strchr(host, '.'); dot != NULL && pos == SIZE_MAX;
                 dot = strchr(dot + 1, '.')) {
                snprintf(key, sizeof(key), "%.*s@%s", (int)ulen, addr, dot);
                pos = flt_dkim_find_pattern(t, key);
            }
            break;
        case 3:
            for (dot = strchr(host, '.'); dot != NULL && pos == SIZE_MAX;
                 dot = strchr(dot + 1, '.'))
                pos = flt_dkim_find_pattern(t, dot);
            break;
        case 4:
            snprintf(key, sizeof(key), "%.*s@*", (int)ulen, addr);
            pos = flt_dkim_find_pattern(t, key);
            break;
        default:
            pos = flt_dkim_find_pattern(t, "*");
            break;
        }
    }
    return pos == SIZE_MAX ? 0 : flt_dkim_group(t, pos, out, max);
}

/* flt_dkim_lookup - the signing table lines for addr: for refile, the
 * first pattern in file order that matches, for a flat file the first
 * key in OpenDKIM's order; every line of that pattern, in file order. */
static size_t
flt_dkim_lookup(const struct flt_dkim_tables *t, const char *addr,
                const struct flt_dkim_st **out, size_t max)
{
    size_t i;

    if (!t->refile)
        return flt_dkim_lookup_flat(t, addr, out, max);
    for (i = 0; i < t->nsigs; i++)
        if (flt_dkim_glob(t->sigs[i].pattern, addr))
            return flt_dkim_group(
                t, flt_dkim_find_pattern(t, t->sigs[i].pattern), out, max);
    return 0;
}

size_t
flt_dkim_tables_lookup(const struct flt_dkim_tables *t, const char *addr,
                       const char **names, unsigned *lines, size_t max)
{
    const struct flt_dkim_st *found[FLT_DKIM_SIGS_MAX];
    size_t n, i;

    n = flt_dkim_lookup(t, addr, found,
                        max < FLT_DKIM_SIGS_MAX ? max : FLT_DKIM_SIGS_MAX);
    for (i = 0; i < n; i++) {
        if (names != NULL)
            names[i] = found[i]->name;
        if (lines != NULL)
            lines[i] = found[i]->line;
    }
    return n;
}

/* flt_dkim_read_file - a whole table file, bounded. */
static int
flt_dkim_read_file(const char *path, char **text, size_t *len, struct err *e)
{
    struct stat sb;
    FILE *fp;
    size_t n;

    if ((fp = fopen(path, "rb")) == NULL)
        return err_sys(e, ERR_CONFIG, "%s", path);
    if (fstat(fileno(fp), &sb) < 0 || !S_ISREG(sb.st_mode)) {
        fclose(fp);
        return err_set(e, ERR_CONFIG, "%s: not a regular file", path);
    }
    if (sb.st_size > FLT_DKIM_TABLE_MAX) {
        fclose(fp);
        return err_set(e, ERR_CONFIG, "%s: larger than %d octets", path,
                       FLT_DKIM_TABLE_MAX);
    }
    if ((*text = malloc((size_t)sb.st_size + 1)) == NULL) {
        fclose(fp);
        return err_nomem(e);
    }
    n = fread(*text, 1, (size_t)sb.st_size, fp);
    if (ferror(fp)) {
        fclose(fp);
        free(*text);
        return err_sys(e, ERR_CONFIG, "%s: read", path);
    }
    fclose(fp);
    (*text)[n] = '\0';
    *len = n;
    return 0;
}

/* flt_dkim_tables_load - both tables from their files, and every key the
 * key table names. */
static struct flt_dkim_tables *
flt_dkim_tables_load(const struct cfg *c, struct err *e)
{
    const char *kt_path = cfg_str(c, "key_table");
    const char *st_value = cfg_str(c, "signing_table");
    char *kt_text = NULL, *st_text = NULL, *st_path = NULL, *keypath;
    size_t kt_len = 0, st_len = 0, i;
    struct flt_dkim_tables *t = NULL;
    int refile = 0;

    if (strncmp(st_value, "refile:", 7) == 0) {
        refile = 1;
        st_value += 7;
    } else if (strncmp(st_value, "file:", 5) == 0) {
        st_value += 5;
    } else if (strchr(st_value, ':') != NULL && st_value[0] != '/' &&
               st_value[0] != '.') {
        cfg_err(e, c, "signing_table",
                "\"%s\": only flat files and refile: patterns are "
                "supported",
                st_value);
        return NULL;
    }
    if (st_value[0] == '\0') {
        cfg_err(e, c, "signing_table", "empty file name");
        return NULL;
    }
    if ((st_path = flt_dkim_resolve(cfg_path(c), st_value)) == NULL) {
        err_nomem(e);
        return NULL;
    }
    if (flt_dkim_read_file(kt_path, &kt_text, &kt_len, e) < 0 ||
        flt_dkim_read_file(st_path, &st_text, &st_len, e) < 0)
        goto out;
    t = flt_dkim_tables_parse(kt_path, kt_text, kt_len, st_path, refile,
                              st_text, st_len, e);
    for (i = 0; t != NULL && i < t->nkeys; i++) {
        struct flt_dkim_kt *kt = &t->keys[i];

        if ((keypath = flt_dkim_resolve(kt_path, kt->path)) == NULL) {
            err_nomem(e);
        } else {
            kt->key = flt_dkim_key_load(keypath, 1, e);
            free(keypath);
            if (kt->key != NULL)
                continue;
            err_prefix(e, "%s:%u: key %s", kt_path, kt->line, kt->name);
        }
        flt_dkim_tables_free(t);
        t = NULL;
    }
out:
    free(kt_text);
    free(st_text);
    free(st_path);
    return t;
}

/* --------------------------------------------------------------- init */

static void
flt_dkim_free(struct stage *st)
{
    struct flt_dkim *fd = st->priv;

    if (fd == NULL)
        return;
    if (fd->verify_lib != NULL)
        dkim_close(fd->verify_lib);
    flt_dkim_tables_free(fd->tables);
    flt_dkim_key_free(fd->key);
    free(fd->domain);
    free(fd->sign_hdrs);
    free(fd->oversign_hdrs);
    cidr_list_free(fd->internal_hosts);
    free(fd);
    st->priv = NULL;
}

/* flt_dkim_header_list - a NULL-terminated copy of the list key, checked. */
static int
flt_dkim_header_list(const struct cfg *c, const char *key, const char ***out,
                     struct err *e)
{
    const char *const *items;
    size_t n = cfg_list(c, key, &items), i;

    if (n > FLT_DKIM_HDRS_MAX)
        return cfg_err(e, c, key, "more than %d names", FLT_DKIM_HDRS_MAX);
    for (i = 0; i < n; i++) {
        if (!flt_dkim_is_header_name(items[i]))
            return cfg_err(e, c, key,
                           "\"%s\" is not a header field name (letters, "
                           "digits and hyphens)",
                           items[i]);
        if (strcasecmp(items[i], "DKIM-Signature") == 0)
            return cfg_err(e, c, key, "DKIM-Signature cannot be signed");
    }
    if ((*out = calloc(n + 1, sizeof(**out))) == NULL)
        return err_nomem(e);
    for (i = 0; i < n; i++)
        (*out)[i] = items[i];
    return 0;
}

static int
flt_dkim_has_name(const char *const *list, const char *name)
{
    for (; *list != NULL; list++)
        if (strcasecmp(*list, name) == 0)
            return 1;
    return 0;
}

/* flt_dkim_prescreen - the self-check verifies only the signatures the
 * stage just made; any other is ignored, so no key is looked up for it. */
static DKIM_CBSTAT flt_dkim_prescreen(DKIM *dkim, DKIM_SIGINFO **sigs,
                                      int nsigs);
static DKIM_CBSTAT flt_dkim_key_lookup(DKIM *dkim, DKIM_SIGINFO *sig,
                                       u_char *buf, size_t buflen);

/* flt_dkim_libs - the libopendkim handle of self_check = libopendkim:
 * a verifier whose key lookup and prescreen callbacks answer from the
 * stage's keys and never ask DNS. */
static int
flt_dkim_libs(struct flt_dkim *fd, const struct cfg *c, struct err *e)
{
    if ((fd->verify_lib = dkim_init(NULL, NULL)) == NULL)
        return err_set(e, ERR_LIB, "%s: dkim_init() failed", cfg_path(c));
    if (!dkim_libfeature(fd->verify_lib, DKIM_FEATURE_ED25519) ||
        !dkim_libfeature(fd->verify_lib, DKIM_FEATURE_SHA256))
        return cfg_err(e, c, "self_check",
                       "this libopendkim lacks SHA-256 or Ed25519 support");
    if (dkim_set_key_lookup(fd->verify_lib, flt_dkim_key_lookup) !=
            DKIM_STAT_OK ||
        dkim_set_prescreen(fd->verify_lib, flt_dkim_prescreen) != DKIM_STAT_OK)
        return err_set(e, ERR_LIB, "%s: libopendkim refused the callbacks",
                       cfg_path(c));
    return 0;
}

static int
flt_dkim_init_short(struct flt_dkim *fd, const struct cfg *c, struct err *e)
{
    const char *domain = cfg_str(c, "domain"), *selector;

    if (domain == NULL || cfg_str(c, "selector") == NULL ||
        cfg_str(c, "key_file") == NULL)
        return err_set(e, ERR_CONFIG,
                       "%s: stage dkim needs key_table and signing_table, "
                       "or domain, selector and key_file",
                       cfg_path(c));
    selector = cfg_str(c, "selector");
    if (!flt_dkim_is_dns_name(domain, FLT_DKIM_DOMAIN_MAX, 0))
        return cfg_err(e, c, "domain", "\"%s\" is not a domain name", domain);
    if (!flt_dkim_is_dns_name(selector, FLT_DKIM_SELECTOR_MAX, 1))
        return cfg_err(e, c, "selector", "\"%s\" is not a valid selector",
                       selector);
    if ((fd->domain = flt_dkim_strndup_lower(domain, strlen(domain))) == NULL)
        return err_nomem(e);
    fd->selector = selector;
    if ((fd->key = flt_dkim_key_load(cfg_str(c, "key_file"), 1, e)) == NULL) {
        err_prefix(e, "%s:%u: key_file", cfg_path(c), cfg_line(c, "key_file"));
        return -1;
    }
    return 0;
}

static int
flt_dkim_init(struct stage *st, const struct cfg *c, struct err *e)
{
    static const char *const short_keys[] = {"domain", "selector", "key_file"};
    struct flt_dkim *fd;
    const char **p;
    int tables =
        cfg_str(c, "key_table") != NULL || cfg_str(c, "signing_table") != NULL;
    size_t i;

    for (i = 0; tables && i < 3; i++)
        if (cfg_str(c, short_keys[i]) != NULL)
            return cfg_err(e, c, short_keys[i],
                           "give either key_table and signing_table or "
                           "domain, selector and key_file, not both");
    if (tables && (cfg_str(c, "key_table") == NULL ||
                   cfg_str(c, "signing_table") == NULL))
        return err_set(e, ERR_CONFIG,
                       "%s: key_table and signing_table go together",
                       cfg_path(c));
    if (cfg_is_set(c, "signature_ttl") && cfg_num(c, "signature_ttl") < 1000)
        return cfg_err(e, c, "signature_ttl",
                       "a lifetime under one second would expire at once");

    if ((fd = calloc(1, sizeof(*fd))) == NULL)
        return err_nomem(e);
    st->priv = fd;
    fd->source = (enum flt_dkim_source)cfg_enum(c, "signing_domain");
    fd->hcanon = cfg_enum(c, "canonicalization") < 2 ? FLT_DKIM_RELAXED
                                                     : FLT_DKIM_SIMPLE;
    fd->bcanon = cfg_enum(c, "canonicalization") % 2 == 0 ? FLT_DKIM_RELAXED
                                                          : FLT_DKIM_SIMPLE;
    fd->ttl = (uint64_t)(cfg_num(c, "signature_ttl") / 1000);
    fd->encode = cfg_enum(c, "eight_bit_body") == 0;
    if (flt_dkim_header_list(c, "sign_headers", &fd->sign_hdrs, e) < 0 ||
        flt_dkim_header_list(c, "oversign_headers", &fd->oversign_hdrs, e) < 0)
        goto fail;
    if (!flt_dkim_has_name(fd->sign_hdrs, "From")) {
        cfg_err(e, c, "sign_headers", "From must be signed (RFC 6376)");
        goto fail;
    }
    for (p = fd->oversign_hdrs; *p != NULL; p++)
        if (!flt_dkim_has_name(fd->sign_hdrs, *p)) {
            cfg_err(e, c, "oversign_headers",
                    "%s is not in sign_headers; a field is oversigned only "
                    "when it is signed",
                    *p);
            goto fail;
        }
    if (tables) {
        if ((fd->tables = flt_dkim_tables_load(c, e)) == NULL)
            goto fail;
    } else if (flt_dkim_init_short(fd, c, e) < 0) {
        goto fail;
    }
    if (cfg_enum(c, "self_check") == 1 && flt_dkim_libs(fd, c, e) < 0)
        goto fail;
    fd->sign_all = cfg_enum(c, "sign_mail") == 1;
    fd->dkim_edit = cfg_enum(c, "dkim_signed") == 1;
    if (cfg_is_set(c, "internal_hosts")) {
        const char *const *nets;
        size_t n = cfg_list(c, "internal_hosts", &nets);

        if ((fd->internal_hosts = cidr_list_new(nets, n, e)) == NULL) {
            char text[sizeof(e->text)];

            snprintf(text, sizeof(text), "%s", e->text);
            cfg_err(e, c, "internal_hosts", "%s", text);
            goto fail;
        }
    }
    fd->nmta_names = cfg_list(c, "mta_names", &fd->mta_names);
    if (fd->sign_all &&
        (cfg_is_set(c, "internal_hosts") || fd->nmta_names > 0)) {
        cfg_err(e, c,
                cfg_is_set(c, "internal_hosts") ? "internal_hosts"
                                                : "mta_names",
                "has no effect with sign_mail = all");
        goto fail;
    }
    /* Without re-encoding the stage only adds its own fields. */
    if (!fd->encode)
        st->flags &= STAGE_SIGNS;
    return 0;

fail:
    flt_dkim_free(st);
    return -1;
}

/* ----------------------------------------------------- which keys */

/* flt_dkim_first_mailbox - the address of the first mailbox in an address
 * header value, into out (size n). Returns 1, or 0 when there is none. */
static int
flt_dkim_first_mailbox(const char *value, char *out, size_t n)
{
    InternetAddressList *list, *members;
    InternetAddress *ia;
    const char *addr = NULL;
    char *flat;
    size_t k;
    int i, j, count;

    /* Folding is white space to the address grammar. */
    if ((flat = strdup(value)) == NULL)
        return 0;
    for (k = 0; flat[k] != '\0'; k++)
        if (flat[k] == '\r' || flat[k] == '\n')
            flat[k] = ' ';
    list = internet_address_list_parse(NULL, flat);
    if (list == NULL) {
        /* Raw 8-bit text that is not UTF-8 (a legacy charset in the
         * header): GMime's own guess of its charset, then parse again. */
        char *utf8 = g_mime_utils_decode_8bit(NULL, flat, strlen(flat));

        if (utf8 != NULL)
            list = internet_address_list_parse(NULL, utf8);
        g_free(utf8);
    }
    free(flat);
    if (list == NULL)
        return 0;
    count = internet_address_list_length(list);
    for (i = 0; i < count && addr == NULL; i++) {
        ia = internet_address_list_get_address(list, i);
        if (INTERNET_ADDRESS_IS_MAILBOX(ia)) {
            addr = internet_address_mailbox_get_addr(
                INTERNET_ADDRESS_MAILBOX(ia));
            continue;
        }
        members =
            internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia));
        for (j = 0; j < internet_address_list_length(members); j++) {
            ia = internet_address_list_get_address(members, j);
            if (INTERNET_ADDRESS_IS_MAILBOX(ia)) {
                addr = internet_address_mailbox_get_addr(
                    INTERNET_ADDRESS_MAILBOX(ia));
                break;
            }
        }
    }
    if (addr != NULL && addr[0] != '\0' &&
        (size_t)snprintf(out, n, "%s", addr) < n) {
        g_object_unref(list);
        return 1;
    }
    g_object_unref(list);
    return 0;
}

/* flt_dkim_address - the signing address, into out; returns 1, or 0 with
 * the reason it has none in why. */
static int
flt_dkim_address(const struct flt_dkim *fd, const struct msg *m, char *out,
                 size_t n, char *why, size_t wn)
{
    const char *name =
        fd->source == FLT_DKIM_SENDER && msg_header_name_count(m, "Sender") > 0
            ? "Sender"
            : "From";
    const char *sender;

    if (fd->source == FLT_DKIM_ENVELOPE) {
        sender = msg_env(m)->sender;
        if (sender == NULL || sender[0] == '\0') {
            snprintf(why, wn, "null envelope sender");
            return 0;
        }
        if ((size_t)snprintf(out, n, "%s", sender) >= n) {
            snprintf(why, wn, "envelope sender too long");
            return 0;
        }
        return 1;
    }
    if (msg_header_name_count(m, name) != 1) {
        snprintf(why, wn, "%s %s header",
                 msg_header_name_count(m, name) ? "more than one" : "no",
                 name);
        return 0;
    }
    if (!flt_dkim_first_mailbox(msg_header_get(m, name, 1), out, n)) {
        snprintf(why, wn, "no address in the %s header", name);
        return 0;
    }
    return 1;
}

/* flt_dkim_printable_tag - value for a log note: at most 64 octets,
 * anything but printable ASCII as '?'. The value is the sender's. */
static void
flt_dkim_printable_tag(const char *value, char *out, size_t n)
{
    size_t i;

    for (i = 0; value[i] != '\0' && i < 64 && i + 1 < n; i++)
        out[i] = value[i] > ' ' && value[i] < 0x7f ? value[i] : '?';
    if (n > 0)
        out[i < n ? i : n - 1] = '\0';
}

/* flt_dkim_is_signature - v has every tag RFC 6376 requires (v, a, b,
 * bh, d, h, s): without one no verifier accepts it, and nothing we do can
 * break it. */
static int
flt_dkim_is_signature(const char *v)
{
    static const char *const tags[] = {"v", "a", "b", "bh", "d", "h", "s"};
    char one[8];
    size_t i;

    for (i = 0; i < sizeof(tags) / sizeof(tags[0]); i++)
        if (!flt_dkim_tag_value(v, tags[i], one, sizeof(one)))
            return 0;
    return 1;
}

/*
 * flt_dkim_body_holds - 0 when the signature v (a DKIM-Signature value)
 * can be seen not to cover the body as it is: a SHA-256 signature over
 * the whole body (no l=) whose bh= differs from the body's hash under its
 * c=, so it is broken already (a hop changed the body, or the field was
 * never a real signature). 1 otherwise: a body edit would break it.
 */
static int
flt_dkim_body_holds(const struct msg *m, const char *v)
{
    char a[32], c[40], bh[96], want[48];
    enum flt_dkim_canon canon = FLT_DKIM_SIMPLE;
    const char *body, *slash;
    size_t blen;
    struct err e;

    if (!flt_dkim_tag_value(v, "a", a, sizeof(a)) ||
        !flt_dkim_tag_value(v, "bh", bh, sizeof(bh)))
        return 0;
    /* Another hash, or l= (a footer after it would not even break it):
     * not checked here, so taken as holding. */
    if ((strcasecmp(a, "rsa-sha256") != 0 &&
         strcasecmp(a, "ed25519-sha256") != 0) ||
        flt_dkim_tag_value(v, "l", c, sizeof(c)))
        return 1;
    if (flt_dkim_tag_value(v, "c", c, sizeof(c)) &&
        (slash = strchr(c, '/')) != NULL &&
        strcasecmp(slash + 1, "relaxed") == 0)
        canon = FLT_DKIM_RELAXED;
    body = msg_body(m, &blen);
    if (flt_dkim_sig_body_hash(body ? body : "", blen, canon, want, &e) < 0)
        return 1;
    return strcmp(bh, want) == 0;
}

int
flt_dkim_signed(const struct msg *m, const char *field, char *who, size_t n)
{
    size_t count = msg_header_name_count(m, "DKIM-Signature"), i, len;
    char d[FLT_DKIM_DOMAIN_MAX + 2], sel[FLT_DKIM_SELECTOR_MAX + 2];
    char h[4096], pd[72], ps[72];
    const char *v, *p, *q;
    int covers;

    for (i = 1; i <= count; i++) {
        if ((v = msg_header_get(m, "DKIM-Signature", i)) == NULL ||
            !flt_dkim_is_signature(v))
            continue;
        covers = field == NULL && flt_dkim_body_holds(m, v);
        /* An h= too long to read whole may name any field. */
        if (field != NULL && (!flt_dkim_tag_value(v, "h", h, sizeof(h)) ||
                              strlen(h) + 1 >= sizeof(h)))
            covers = 1;
        for (p = h; field != NULL && !covers && *p != '\0';
             p = *q ? q + 1 : q) {
            q = strchr(p, ':');
            if (q == NULL)
                q = p + strlen(p);
            len = (size_t)(q - p);
            covers = len == strlen(field) && strncasecmp(p, field, len) == 0;
        }
        if (!covers)
            continue;
        if (!flt_dkim_tag_value(v, "d", d, sizeof(d)))
            d[0] = '\0';
        if (!flt_dkim_tag_value(v, "s", sel, sizeof(sel)))
            sel[0] = '\0';
        flt_dkim_printable_tag(d, pd, sizeof(pd));
        flt_dkim_printable_tag(sel, ps, sizeof(ps));
        snprintf(who, n, "d=%s, s=%s", pd[0] ? pd : "?", ps[0] ? ps : "?");
        return 1;
    }
    return 0;
}

/* flt_dkim_already_signed - a DKIM-Signature with this d= and s= is in m. */
static int
flt_dkim_already_signed(const struct msg *m, const char *d, const char *s)
{
    size_t count = msg_header_name_count(m, "DKIM-Signature"), i;
    char dv[FLT_DKIM_DOMAIN_MAX + 2], sv[FLT_DKIM_SELECTOR_MAX + 2];
    const char *v;

    for (i = 1; i <= count; i++) {
        if ((v = msg_header_get(m, "DKIM-Signature", i)) == NULL)
            continue;
        if (flt_dkim_tag_value(v, "d", dv, sizeof(dv)) &&
            flt_dkim_tag_value(v, "s", sv, sizeof(sv)) &&
            strcasecmp(dv, d) == 0 && strcasecmp(sv, s) == 0)
            return 1;
    }
    return 0;
}

/* flt_dkim_expand - template with each "%" replaced by domain, into out. */
static int
flt_dkim_expand(const char *template, const char *domain, char *out, size_t n)
{
    size_t o = 0, dl = strlen(domain);

    for (; *template != '\0'; template ++) {
        if (*template == '%') {
            if (o + dl >= n)
                return -1;
            memcpy(out + o, domain, dl);
            o += dl;
        } else {
            if (o + 1 >= n)
                return -1;
            out[o++] = *template;
        }
    }
    out[o] = '\0';
    return 0;
}

/* flt_dkim_plan_signer - i= from the template when it fits under d=. */
static void
flt_dkim_plan_signer(struct flt_dkim_plan *p, const char *template,
                     const char *domain)
{
    const char *at;
    size_t hl, dl = strlen(p->domain);

    p->signer[0] = '\0';
    if (template == NULL ||
        flt_dkim_expand(template, domain, p->signer, sizeof(p->signer)) < 0 ||
        (at = strchr(p->signer, '@')) == NULL) {
        p->signer[0] = '\0';
        return;
    }
    /* i= must be in d= or below it (RFC 6376 3.5), as OpenDKIM checks. */
    hl = strlen(at + 1);
    if (!(strcasecmp(at + 1, p->domain) == 0 ||
          (hl > dl && at[hl - dl] == '.' &&
           strcasecmp(at + 1 + hl - dl, p->domain) == 0)))
        p->signer[0] = '\0';
}

/* flt_dkim_plans - the signatures m should get; returns their number, 0
 * with the reason in why when none. */
static size_t
flt_dkim_plans(const struct flt_dkim *fd, const struct msg *m,
               struct flt_dkim_plan *plans, char *why, size_t wn)
{
    char addr[FLT_DKIM_ADDR_MAX + 1], domain[FLT_DKIM_DOMAIN_MAX + 1];
    const struct flt_dkim_st *lines[FLT_DKIM_SIGS_MAX];
    const char *at;
    size_t found, n = 0, skipped = 0, i, k;

    if (!flt_dkim_address(fd, m, addr, sizeof(addr), why, wn))
        return 0;
    at = strrchr(addr, '@');
    if (at == NULL || strlen(at + 1) > FLT_DKIM_DOMAIN_MAX ||
        !flt_dkim_is_dns_name(at + 1, FLT_DKIM_DOMAIN_MAX, 0)) {
        snprintf(why, wn, "signing address has no ASCII domain name");
        return 0;
    }
    for (i = 0; at[1 + i] != '\0'; i++)
        domain[i] = (char)flt_dkim_lower((unsigned char)at[1 + i]);
    domain[i] = '\0';

    if (fd->tables == NULL) {
        if (strcmp(domain, fd->domain) != 0) {
            snprintf(why, wn, "no key for %s", domain);
            return 0;
        }
        if (flt_dkim_already_signed(m, fd->domain, fd->selector)) {
            snprintf(why, wn, "already signed, d=%s, s=%s", fd->domain,
                     fd->selector);
            return 0;
        }
        plans[0].key = fd->key;
        snprintf(plans[0].domain, sizeof(plans[0].domain), "%s", fd->domain);
        snprintf(plans[0].selector, sizeof(plans[0].selector), "%s",
                 fd->selector);
        plans[0].signer[0] = '\0';
        return 1;
    }

    found = flt_dkim_lookup(fd->tables, addr, lines, FLT_DKIM_SIGS_MAX);
    if (found == 0) {
        snprintf(why, wn, "no key for %s", domain);
        return 0;
    }
    for (i = 0; i < found; i++) {
        const struct flt_dkim_st *stl = lines[i];
        const struct flt_dkim_kt *kt;
        struct flt_dkim_plan *p = &plans[n];

        k = stl->kt != SIZE_MAX ? stl->kt
                                : flt_dkim_find_key(fd->tables, domain);
        if (k == SIZE_MAX) {
            snprintf(why, wn,
                     "no key for %s (%s:%u names key %%, the key table has "
                     "no key %s)",
                     domain, fd->tables->st_path, stl->line, domain);
            return 0;
        }
        kt = &fd->tables->keys[k];
        if (strcmp(kt->domain, "%") == 0)
            snprintf(p->domain, sizeof(p->domain), "%s", domain);
        else
            snprintf(p->domain, sizeof(p->domain), "%s", kt->domain);
        snprintf(p->selector, sizeof(p->selector), "%s", kt->selector);
        p->key = kt->key;
        if (flt_dkim_already_signed(m, p->domain, p->selector)) {
            skipped++;
            continue;
        }
        /* One signature per d= and s=, however often the tables name it:
         * the self-check tells signatures apart by those two. */
        for (k = 0; k < n; k++)
            if (strcmp(plans[k].domain, p->domain) == 0 &&
                strcmp(plans[k].selector, p->selector) == 0)
                break;
        if (k < n)
            continue;
        flt_dkim_plan_signer(p, stl->signer, domain);
        n++;
    }
    if (n == 0)
        snprintf(why, wn, "already signed, d=%s, s=%s%s", plans[0].domain,
                 plans[0].selector, skipped > 1 ? " and others" : "");
    return n;
}

/* ------------------------------------------------ sign and check */

/* flt_dkim_crlf - *wire is raw, msg_write()'s output, with CRLF line
 * ends: raw itself when it has them all, else a copy made in conv. */
static int
flt_dkim_crlf(const struct buf *raw, struct buf *conv, const char **wire,
              size_t *wire_len, struct err *e)
{
    const char *p = raw->data != NULL ? raw->data : "", *end = p + raw->len;
    const char *nl;

    buf_reset(conv);
    for (nl = p; (nl = memchr(nl, '\n', (size_t)(end - nl))) != NULL; nl++)
        if (nl == p || nl[-1] != '\r')
            break;
    if (nl == NULL) {
        *wire = p;
        *wire_len = raw->len;
        return 0;
    }
    if (downgrade_lines(p, raw->len, 1, conv, e) < 0)
        return -1;
    *wire = conv->data;
    *wire_len = conv->len;
    return 0;
}

/* flt_dkim_wire - m as it goes out: msg_write()'s bytes, into raw, with
 * CRLF line ends (flt_dkim_crlf()). */
static int
flt_dkim_wire(const struct msg *m, struct buf *raw, struct buf *conv,
              const char **wire, size_t *wire_len, struct err *e)
{
    buf_reset(raw);
    if (msg_write(m, raw, e) < 0)
        return -1;
    return flt_dkim_crlf(raw, conv, wire, wire_len, e);
}

/* flt_dkim_long_line - 1 when a line of the CRLF data passes 998 octets;
 * *in_header says whether it is in the header. */
static int
flt_dkim_long_line(const char *p, size_t n, int *in_header)
{
    const char *s = p, *end = p + n, *nl;
    int header = 1;

    while ((nl = memchr(s, '\n', (size_t)(end - s))) != NULL) {
        if ((size_t)(nl - s) > FLT_DKIM_LINE_LIMIT + 1) {
            *in_header = header;
            return 1;
        }
        if (nl - s <= 1)
            header = 0; /* the empty line */
        s = nl + 1;
    }
    *in_header = header;
    return (size_t)(end - s) > FLT_DKIM_LINE_LIMIT;
}

/* flt_dkim_feed - give libopendkim the CRLF message wire field by field,
 * then its body. A DKIM-Signature field that libopendkim cannot parse
 * (someone else's, malformed) is left out of its view: it refuses such a
 * field with DKIM_STAT_SYNTAX, and a DKIM-Signature is never among the
 * fields the stage signs, so leaving it out changes nothing checked. Returns
 * the first other failure. */
static DKIM_STAT
flt_dkim_feed(DKIM *dkim, const char *wire, size_t len)
{
    const char *p = wire, *end = wire + len, *q, *nl;
    DKIM_STAT status;

    while (p < end) {
        if (end - p >= 2 && p[0] == '\r' && p[1] == '\n') {
            p += 2;
            break;
        }
        for (q = p;; q = nl + 2) {
            nl = memmem(q, (size_t)(end - q), "\r\n", 2);
            if (nl == NULL) {
                nl = end;
                break;
            }
            if (end - nl < 3 || (nl[2] != ' ' && nl[2] != '\t'))
                break;
        }
        status = dkim_header(dkim, (unsigned char *)p, (size_t)(nl - p));
        if (status != DKIM_STAT_OK &&
            !(status == DKIM_STAT_SYNTAX && nl - p > 15 &&
              strncasecmp(p, "DKIM-Signature:", 15) == 0))
            return status;
        p = nl < end ? nl + 2 : end;
    }
    status = dkim_eoh(dkim);
    if (status != DKIM_STAT_OK && status != DKIM_STAT_NOSIG)
        return status;
    return dkim_body(dkim, (unsigned char *)p, (size_t)(end - p));
}

/* flt_dkim_sign_one - the value of a DKIM-Signature field for p over the
 * CRLF message wire, into out; memo as for flt_dkim_sig_make(). */
static int
flt_dkim_sign_one(const struct flt_dkim *fd, const struct flt_dkim_plan *p,
                  const char *wire, size_t wire_len,
                  struct flt_dkim_body_memo *memo, const struct stage_env *env,
                  struct buf *out, struct err *e)
{
    struct flt_dkim_sign sign;
    time_t now = time(NULL);
    char *copy = NULL;
    int rc;

    if (env != NULL && env->fault != NULL) {
        if ((copy = malloc(wire_len + 1)) == NULL)
            return err_nomem(e);
        memcpy(copy, wire, wire_len);
        env->fault("dkim.sign", copy, wire_len);
        if (memcmp(copy, wire, wire_len) == 0) {
            free(copy);
            copy = NULL;
        } else {
            wire = copy;
            memo = NULL; /* the copy is gone before the check */
        }
    }
    sign.key = p->key->sig;
    sign.domain = p->domain;
    sign.selector = p->selector;
    sign.signer = p->signer[0] != '\0' ? p->signer : NULL;
    sign.hcanon = fd->hcanon;
    sign.bcanon = fd->bcanon;
    sign.sign_hdrs = fd->sign_hdrs;
    sign.oversign_hdrs = fd->oversign_hdrs;
    sign.time = (uint64_t)now;
    sign.expire = fd->ttl > 0 ? (uint64_t)now + fd->ttl : 0;
    buf_reset(out);
    rc = flt_dkim_sig_make(&sign, wire, wire_len, memo, out, e);
    free(copy);
    return rc;
}

/* What the verifying callbacks see: the signatures just made. */
struct flt_dkim_check {
    const struct flt_dkim_plan *plans;
    size_t nplans;
};

static const struct flt_dkim_plan *
flt_dkim_check_find(const struct flt_dkim_check *ck, DKIM_SIGINFO *sig)
{
    const char *d = (const char *)dkim_sig_getdomain(sig);
    const char *s = (const char *)dkim_sig_getselector(sig);
    size_t i;

    if (ck == NULL || d == NULL || s == NULL)
        return NULL;
    for (i = 0; i < ck->nplans; i++)
        if (strcasecmp(ck->plans[i].domain, d) == 0 &&
            strcasecmp(ck->plans[i].selector, s) == 0)
            return &ck->plans[i];
    return NULL;
}

static DKIM_CBSTAT
flt_dkim_prescreen(DKIM *dkim, DKIM_SIGINFO **sigs, int nsigs)
{
    const struct flt_dkim_check *ck = dkim_get_user_context(dkim);
    int i;

    for (i = 0; i < nsigs; i++)
        if (flt_dkim_check_find(ck, sigs[i]) == NULL)
            dkim_sig_ignore(sigs[i]);
    return DKIM_CBSTAT_CONTINUE;
}

static DKIM_CBSTAT
flt_dkim_key_lookup(DKIM *dkim, DKIM_SIGINFO *sig, u_char *buf, size_t buflen)
{
    const struct flt_dkim_plan *p =
        flt_dkim_check_find(dkim_get_user_context(dkim), sig);

    if (p == NULL ||
        (size_t)snprintf((char *)buf, buflen, "%s", p->key->record) >= buflen)
        return DKIM_CBSTAT_NOTFOUND;
    return DKIM_CBSTAT_CONTINUE;
}

/* flt_dkim_self_check_lib - flt_dkim_self_check() by libopendkim. */
static int
flt_dkim_self_check_lib(const struct flt_dkim *fd, const struct msg *m,
                        const struct flt_dkim_plan *plans, size_t nplans,
                        const char *wire, size_t wire_len, char *why,
                        size_t wn, struct err *e)
{
    struct flt_dkim_check ck = {plans, nplans};
    DKIM_SIGINFO **sigs = NULL;
    DKIM_STAT status;
    DKIM *dkim;
    int nsigs = 0, i, rc = 0;
    size_t k;

    dkim = dkim_verify(fd->verify_lib, (const unsigned char *)msg_qid(m), NULL,
                       &status);
    if (dkim == NULL)
        return err_set(e, ERR_LIB, "dkim_verify: %s",
                       dkim_getresultstr(status));
    if (dkim_set_user_context(dkim, &ck) != DKIM_STAT_OK) {
        dkim_free(dkim);
        return err_set(e, ERR_LIB, "dkim_set_user_context failed");
    }
    status = flt_dkim_feed(dkim, wire, wire_len);
    if (status != DKIM_STAT_OK && status != DKIM_STAT_NOSIG) {
        snprintf(why, wn, "verifier: %s",
                 dkim_geterror(dkim) != NULL ? dkim_geterror(dkim)
                                             : dkim_getresultstr(status));
        dkim_free(dkim);
        ERR_clear_error();
        return 1;
    }
    /* Its result is the first signature's; each is judged below. */
    (void)dkim_eom(dkim, NULL);
    if (dkim_getsiglist(dkim, &sigs, &nsigs) != DKIM_STAT_OK)
        nsigs = 0;
    for (k = 0; k < nplans && rc == 0; k++) {
        DKIM_SIGINFO *sig = NULL;

        for (i = 0; i < nsigs; i++)
            if (flt_dkim_check_find(&ck, sigs[i]) == &plans[k])
                sig = sigs[i];
        if (sig == NULL) {
            snprintf(why, wn, "signature not found");
            rc = 1;
        } else if (dkim_sig_getbh(sig) == DKIM_SIGBH_MISMATCH) {
            snprintf(why, wn, "body hash");
            rc = 1;
        } else if (!(dkim_sig_getflags(sig) & DKIM_SIGFLAG_PASSED)) {
            /* libopendkim checks the signature over the header hash
             * before it hashes the body. */
            if (dkim_sig_geterror(sig) == DKIM_SIGERROR_BADSIG ||
                dkim_sig_geterror(sig) == DKIM_SIGERROR_OK)
                snprintf(why, wn, "header hash");
            else
                snprintf(why, wn, "%s",
                         dkim_sig_geterrorstr(dkim_sig_geterror(sig)));
            rc = 1;
        } else if (dkim_sig_getbh(sig) != DKIM_SIGBH_MATCH) {
            snprintf(why, wn, "body hash not checked");
            rc = 1;
        }
        if (rc == 1) {
            size_t used = strlen(why);

            snprintf(why + used, wn - used, ", d=%s, s=%s", plans[k].domain,
                     plans[k].selector);
        }
    }
    dkim_free(dkim);
    ERR_clear_error();
    return rc;
}

/* flt_dkim_self_check - verify the new signatures over the CRLF message
 * wire. Returns 0 when all hold, 1 with the failure in why, -1 on an
 * error of the verifier itself. */
static int
flt_dkim_self_check(const struct flt_dkim *fd, const struct msg *m,
                    const struct flt_dkim_plan *plans, size_t nplans,
                    const char *wire, size_t wire_len,
                    const struct flt_dkim_body_memo *memo, char *why,
                    size_t wn, struct err *e)
{
    size_t k, used;
    int rc;

    if (fd->verify_lib != NULL)
        return flt_dkim_self_check_lib(fd, m, plans, nplans, wire, wire_len,
                                       why, wn, e);
    for (k = 0; k < nplans; k++) {
        rc = flt_dkim_sig_check(plans[k].key->sig, plans[k].domain,
                                plans[k].selector, wire, wire_len, memo, why,
                                wn, e);
        if (rc != 0) {
            if (rc == 1 && (used = strlen(why)) < wn)
                snprintf(why + used, wn - used, ", d=%s, s=%s",
                         plans[k].domain, plans[k].selector);
            return rc;
        }
    }
    return 0;
}

/* ----------------------------------------------------- whose mail */

/*
 * flt_dkim_is_ours - 1 when the message is ours to sign: sent by an
 * authenticated client, by a client in internal_hosts (or, without that
 * key, one the front end found in mynetworks: the original client behind
 * Postfix's XFORWARD, the milter's connecting client, a local
 * submission), or taken by an MTA daemon listed in mta_names. Otherwise
 * 0, with why (size n) saying so for the log. The client address and
 * daemon name come from the front end, not from the message, so no
 * header an outsider writes can make mail ours.
 */
static int
flt_dkim_is_ours(const struct flt_dkim *fd, const struct msg *m, char *why,
                 size_t n)
{
    const struct msg_env *env = msg_env(m);
    size_t i;
    int used;

    if (env->auth_user != NULL)
        return 1;
    if (fd->internal_hosts != NULL
            ? cidr_list_contains(fd->internal_hosts, env->client_addr)
            : env->internal)
        return 1;
    for (i = 0; env->daemon_name != NULL && i < fd->nmta_names; i++)
        if (strcmp(env->daemon_name, fd->mta_names[i]) == 0)
            return 1;
    used = snprintf(why, n,
                    "client %.64s is not internal: not in %s, not "
                    "authenticated",
                    env->client_addr ? env->client_addr : "unknown",
                    fd->internal_hosts ? "internal_hosts" : "mynetworks");
    if (fd->nmta_names > 0 && used > 0 && (size_t)used < n)
        snprintf(why + used, n - (size_t)used,
                 ", daemon %.64s not in mta_names",
                 env->daemon_name ? env->daemon_name : "unknown");
    return 0;
}

/* ---------------------------------------------------------------- run */

static int
flt_dkim_run(const struct stage *st, struct msg *m, struct verdict *v,
             struct err *e)
{
    const struct flt_dkim *fd = st->priv;
    struct flt_dkim_plan plans[FLT_DKIM_SIGS_MAX];
    char why[FLT_DKIM_WHY_MAX], note[VERDICT_NOTE_MAX], extra[64];
    char earlier[200], who[140];
    struct buf raw, conv, fin, fin_conv, sig[FLT_DKIM_SIGS_MAX];
    struct flt_dkim_body_memo memo = {0};
    const struct msg_edit *edits;
    size_t edits_before;
    const char *wire, *final;
    size_t nplans, wire_len, final_len, i, n;
    unsigned encoded = 0, relabelled = 0;
    int rc = -1, in_header, failed, encode = fd->encode;

    if (!fd->sign_all && !flt_dkim_is_ours(fd, m, why, sizeof(why)))
        return verdict_set(v, VERDICT_CONTINUE, NULL, "not signed (%s)", why);
    nplans = flt_dkim_plans(fd, m, plans, why, sizeof(why));
    if (nplans == 0)
        return verdict_set(v, VERDICT_CONTINUE, NULL, "not signed (%s)", why);

    /* Re-encoding would break the signature of an earlier hop; it is left
     * out unless a line over 998 octets needs it, which no hop carries
     * unchanged anyway. */
    earlier[0] = '\0';
    if (encode && !fd->dkim_edit &&
        msg_longest_line(m) <= FLT_DKIM_LINE_LIMIT &&
        flt_dkim_signed(m, NULL, who, sizeof(who))) {
        encode = 0;
        snprintf(earlier, sizeof(earlier),
                 ", body kept as an earlier hop signed it (%s)", who);
    }
    buf_init(&raw, 0);
    buf_init(&conv, 0);
    buf_init(&fin, 0);
    buf_init(&fin_conv, 0);
    for (i = 0; i < nplans; i++)
        buf_init(&sig[i], FLT_DKIM_RECORD_MAX * 2);
    edits_before = msg_journal(m, &edits);
    if (msg_write(m, &raw, e) < 0 ||
        (encode && downgrade_body(m, st->name, raw.data ? raw.data : "",
                                  raw.len, &encoded, &relabelled, e) < 0))
        goto out;
    /* raw is still the message unless the encoder changed it. */
    if (msg_journal(m, &edits) != edits_before
            ? flt_dkim_wire(m, &raw, &conv, &wire, &wire_len, e) < 0
            : flt_dkim_crlf(&raw, &conv, &wire, &wire_len, e) < 0)
        goto out;
    if (flt_dkim_long_line(wire, wire_len, &in_header)) {
        rc = verdict_set(v, VERDICT_REJECT,
                         "554 5.6.0 Message has a line over 998 octets and "
                         "cannot be signed",
                         "not signed (line over 998 octets in the %s)",
                         in_header ? "header" : "body");
        goto out;
    }
    for (i = 0; i < nplans; i++)
        if (flt_dkim_sign_one(fd, &plans[i], wire, wire_len, &memo, st->env,
                              &sig[i], e) < 0)
            goto out;
    /* Inserted last to first, so the first key's field comes first. */
    for (i = nplans; i-- > 0;)
        if (msg_header_insert(m, st->name, 0, "DKIM-Signature",
                              buf_str(&sig[i]), e) < 0)
            goto out;
    /* The signed bytes stay in raw or conv: memo points into them. */
    if (flt_dkim_wire(m, &fin, &fin_conv, &final, &final_len, e) < 0)
        goto out;
    failed = flt_dkim_self_check(fd, m, plans, nplans, final, final_len, &memo,
                                 why, sizeof(why), e);
    if (failed < 0)
        goto out;
    if (failed) {
        rc = verdict_set(v, VERDICT_TEMPFAIL,
                         "451 4.7.5 Cannot sign the message, try again later",
                         "self-check failed: %s", why);
        goto out;
    }

    n = (size_t)snprintf(note, sizeof(note), "signed");
    for (i = 0; i < nplans && n < sizeof(note); i++)
        n +=
            (size_t)snprintf(note + n, sizeof(note) - n, "%s d=%s, s=%s, a=%s",
                             i ? ";" : ",", plans[i].domain, plans[i].selector,
                             flt_dkim_key_alg(plans[i].key));
    extra[0] = '\0';
    if (encoded > 0 || relabelled > 0)
        snprintf(extra, sizeof(extra), ", 7bit: %u encoded, %u relabelled",
                 encoded, relabelled);
    rc =
        verdict_set(v, VERDICT_CONTINUE, NULL, "%s%s%s", note, extra, earlier);
out:
    if (rc < 0)
        err_prefix(e, "%s", st->name);
    for (i = 0; i < nplans; i++)
        buf_fini(&sig[i]);
    buf_fini(&raw);
    buf_fini(&conv);
    buf_fini(&fin);
    buf_fini(&fin_conv);
    return rc;
}

const struct stage_type flt_dkim_type = {
    .name = "dkim",
    .summary = "sign with DKIM (RSA, Ed25519) and verify the signature on "
               "the final bytes",
    .flags = STAGE_SIGNS | STAGE_EDITS_HEADERS | STAGE_EDITS_BODY,
    .options = flt_dkim_options,
    .init = flt_dkim_init,
    .run = flt_dkim_run,
    .free = flt_dkim_free,
};
