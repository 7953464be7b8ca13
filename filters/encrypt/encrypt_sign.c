/*
 * encrypt_sign - sign_key_map: the organisational keys that sign a
 *     sender's mail before the encrypt stage encrypts it
 *
 * The map is a pcre_table(5) file (util/regmap.h) looked up with the
 * envelope sender's address; a rule for a whole domain is a pattern on
 * its end (/@example\.com$/). Its result names the keys, white space
 * between them, at most one of each kind:
 *     pgp:FINGERPRINT            a key of pgp_home with its secret part
 *     smime:/CERT.pem:/KEY.pem   a certificate (any chain after it in
 *                                the same file) and its private key
 * Every rule is read here at load and its keys checked, so a result may
 * not hold $ expansions: an OpenPGP key must be in pgp_home with its
 * secret part, able to sign (not expired, revoked or disabled) and sign
 * a test text without a passphrase (encrypt_pgp.c); an S/MIME key file
 * must not be open to other users (cfg_secret_check), hold an
 * unencrypted PEM private key matching the certificate, and the
 * certificate must be within its validity with a key usage, when it has
 * one, that allows digitalSignature or nonRepudiation and an extended
 * key usage, when it has one, that allows emailProtection. Errors are
 * "map:line: ...".
 *
 * S/MIME signing is CMS_sign() over the canonical entity, opaque
 * (application/pkcs7-mime; smime-type=signed-data, RFC 8551 3.5.2 and
 * the sign-then-encrypt order of 3.7): the encrypt stage then envelopes
 * that entity. OpenPGP signing happens in the same GPGME call as the
 * encryption (encrypt_pgp.c).
 *
 * Ownership: the map owns its regmap and, per rule, the certificate,
 * chain and private key (struct flt_enc_smime_signer), read-only after
 * load and shared by run() among threads. The private key is never
 * logged or printed: errors name its file only.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "filters/encrypt/encrypt_int.h"
#include "util/cfg.h"
#include "util/regmap.h"

#define FLT_ENC_SIGN_RULES_MAX 10000

struct flt_enc_smime_signer {
    X509 *cert;
    STACK_OF(X509) * chain; /* the certificates after it, may be empty */
    EVP_PKEY *key;
};

struct flt_enc_signmap {
    struct regmap *map;
    struct flt_enc_signer *s; /* one per rule, in file order */
    size_t n;
};

static void
flt_enc_smime_signer_free(struct flt_enc_smime_signer *ss)
{
    if (ss == NULL)
        return;
    X509_free(ss->cert);
    sk_X509_pop_free(ss->chain, X509_free);
    EVP_PKEY_free(ss->key);
    free(ss);
}

void
flt_enc_sign_free(struct flt_enc_signmap *sm)
{
    size_t i;

    if (sm == NULL)
        return;
    for (i = 0; i < sm->n; i++)
        flt_enc_smime_signer_free(sm->s[i].smime);
    free(sm->s);
    regmap_free(sm->map);
    free(sm);
}

const char *
flt_enc_sign_path(const struct flt_enc_signmap *sm)
{
    return regmap_path(sm->map);
}

/* flt_enc_no_pass - OpenSSL's passphrase callback: there is none, so an
 * encrypted PEM key fails to load instead of prompting a terminal. */
static int
flt_enc_no_pass(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

/* flt_enc_sign_usage - why cert cannot sign mail, or NULL. */
static const char *
flt_enc_sign_usage(X509 *cert)
{
    uint32_t flags;

    X509_check_purpose(cert, -1, 0);
    flags = X509_get_extension_flags(cert);
    if (X509_cmp_current_time(X509_get0_notBefore(cert)) >= 0)
        return "not yet valid";
    if (X509_cmp_current_time(X509_get0_notAfter(cert)) <= 0)
        return "expired";
    if ((flags & EXFLAG_KUSAGE) &&
        !(X509_get_key_usage(cert) &
          (KU_DIGITAL_SIGNATURE | KU_NON_REPUDIATION)))
        return "wrong key usage (neither digitalSignature nor "
               "nonRepudiation)";
    if ((flags & EXFLAG_XKUSAGE) &&
        !(X509_get_extended_key_usage(cert) & (XKU_SMIME | XKU_ANYEKU)))
        return "wrong extended key usage (no emailProtection)";
    return NULL;
}

/* flt_enc_sign_smime_load - the certificate file and key file of one
 * rule into *out, checked. */
static int
flt_enc_sign_smime_load(const char *certf, const char *keyf,
                        struct flt_enc_smime_signer **out, char *id, size_t n,
                        struct err *e)
{
    struct flt_enc_smime_signer *ss;
    const char *why;
    struct stat sb;
    BIGNUM *bn;
    char *hex;
    BIO *b;
    FILE *fp;
    X509 *x;

    if (certf[0] != '/' || keyf[0] != '/')
        return err_set(e, ERR_CONFIG,
                       "smime:%s:%s: give both files as absolute paths", certf,
                       keyf);
    if ((ss = calloc(1, sizeof(*ss))) == NULL)
        return err_nomem(e);
    if ((ss->chain = sk_X509_new_null()) == NULL) {
        err_nomem(e);
        goto fail;
    }
    if ((b = BIO_new_file(certf, "r")) == NULL) {
        err_set(e, ERR_CONFIG, "%s: cannot be read", certf);
        goto fail;
    }
    ss->cert = PEM_read_bio_X509(b, NULL, flt_enc_no_pass, NULL);
    while (ss->cert != NULL &&
           (x = PEM_read_bio_X509(b, NULL, flt_enc_no_pass, NULL)) != NULL)
        if (!sk_X509_push(ss->chain, x)) {
            X509_free(x);
            BIO_free(b);
            err_nomem(e);
            goto fail;
        }
    BIO_free(b);
    ERR_clear_error();
    if (ss->cert == NULL) {
        err_set(e, ERR_CONFIG, "%s: no PEM certificate in it", certf);
        goto fail;
    }
    if ((why = flt_enc_sign_usage(ss->cert)) != NULL) {
        err_set(e, ERR_CONFIG, "%s: the signing certificate is %s%s", certf,
                strncmp(why, "wrong", 5) == 0 ? "of the " : "", why);
        goto fail;
    }
    /* A signing key others may read signs for anybody. */
    if ((fp = fopen(keyf, "r")) == NULL) {
        err_sys(e, ERR_CONFIG, "%s", keyf);
        goto fail;
    }
    if (fstat(fileno(fp), &sb) < 0 ||
        cfg_secret_check(keyf, &sb, S_IRWXO, "an S/MIME signing key", e) < 0) {
        if (e->code == ERR_NONE)
            err_sys(e, ERR_CONFIG, "%s", keyf);
        fclose(fp);
        goto fail;
    }
    ss->key = PEM_read_PrivateKey(fp, NULL, flt_enc_no_pass, NULL);
    fclose(fp);
    ERR_clear_error();
    if (ss->key == NULL) {
        err_set(e, ERR_CONFIG,
                "%s: no PEM private key without a passphrase in it", keyf);
        goto fail;
    }
    if (X509_check_private_key(ss->cert, ss->key) != 1) {
        ERR_clear_error();
        err_set(e, ERR_CONFIG, "%s: the private key does not match %s", keyf,
                certf);
        goto fail;
    }
    bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(ss->cert), NULL);
    hex = bn != NULL ? BN_bn2hex(bn) : NULL;
    snprintf(id, n, "serial=%s", hex != NULL ? hex : "?");
    OPENSSL_free(hex);
    BN_free(bn);
    *out = ss;
    return 0;

fail:
    flt_enc_smime_signer_free(ss);
    return -1;
}

/* flt_enc_sign_rule - one rule's result (text) into sg. */
static int
flt_enc_sign_rule(const char *text, struct flt_enc_pgp *p, int have_smime,
                  struct flt_enc_signer *sg, struct err *e)
{
    char *copy, *tok, *save = NULL, *colon;
    int rc = 0;

    if (strchr(text, '$') != NULL)
        return err_set(e, ERR_CONFIG,
                       "'%s': no $ expansions here: every signing key is "
                       "checked at load",
                       text);
    if ((copy = strdup(text)) == NULL)
        return err_nomem(e);
    for (tok = strtok_r(copy, " \t", &save); rc == 0 && tok != NULL;
         tok = strtok_r(NULL, " \t", &save)) {
        if (strncmp(tok, "pgp:", 4) == 0) {
            if (sg->pgp_fpr[0] != '\0')
                rc = err_set(e, ERR_CONFIG, "a second pgp: key");
            else if (p == NULL)
                rc = err_set(e, ERR_CONFIG,
                             "%s: an OpenPGP signing key needs pgp_home", tok);
            else if ((rc = flt_enc_pgp_signer_check(
                          p, tok + 4, sg->pgp_id, sizeof(sg->pgp_id), e)) == 0)
                snprintf(sg->pgp_fpr, sizeof(sg->pgp_fpr), "%s", tok + 4);
        } else if (strncmp(tok, "smime:", 6) == 0) {
            colon = strchr(tok + 6, ':');
            if (sg->smime != NULL)
                rc = err_set(e, ERR_CONFIG, "a second smime: key");
            else if (!have_smime)
                rc = err_set(e, ERR_CONFIG,
                             "%s: an S/MIME signing key needs S/MIME "
                             "(smime_cert_dir and smime_ca_file)",
                             tok);
            else if (colon == NULL || strchr(colon + 1, ':') != NULL)
                rc = err_set(e, ERR_CONFIG,
                             "'%s' is not smime:/CERT.pem:/KEY.pem", tok);
            else {
                *colon = '\0';
                rc = flt_enc_sign_smime_load(tok + 6, colon + 1, &sg->smime,
                                             sg->smime_id,
                                             sizeof(sg->smime_id), e);
            }
        } else
            rc = err_set(e, ERR_CONFIG,
                         "'%s' is neither pgp:FINGERPRINT nor "
                         "smime:/CERT.pem:/KEY.pem",
                         tok);
    }
    if (rc == 0 && sg->pgp_fpr[0] == '\0' && sg->smime == NULL)
        rc = err_set(e, ERR_CONFIG, "no signing key");
    free(copy);
    return rc;
}

struct flt_enc_signmap *
flt_enc_sign_load(const char *path, struct flt_enc_pgp *p, int have_smime,
                  struct err *e)
{
    struct flt_enc_signmap *sm;
    const char *text;
    unsigned line;
    size_t i, n;

    if ((sm = calloc(1, sizeof(*sm))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    if ((sm->map = regmap_load(path, e)) == NULL)
        goto fail;
    n = regmap_rule_count(sm->map);
    if (n == 0) {
        err_set(e, ERR_CONFIG, "%s: no rules: no sender would be signed",
                path);
        goto fail;
    }
    if (n > FLT_ENC_SIGN_RULES_MAX) {
        err_set(e, ERR_CONFIG, "%s: more than %d rules", path,
                FLT_ENC_SIGN_RULES_MAX);
        goto fail;
    }
    if ((sm->s = calloc(n, sizeof(*sm->s))) == NULL) {
        err_nomem(e);
        goto fail;
    }
    for (i = 0; i < n; i++) {
        if ((text = regmap_rule_at(sm->map, i, &line)) == NULL) {
            err_set(e, ERR_INTERNAL, "%s: rule %zu is missing", path, i);
            goto fail;
        }
        sm->n = i + 1;
        sm->s[i].line = line;
        if (flt_enc_sign_rule(text, p, have_smime, &sm->s[i], e) < 0) {
            err_prefix(e, "%s:%u", path, line);
            goto fail;
        }
    }
    return sm;

fail:
    flt_enc_sign_free(sm);
    return NULL;
}

int
flt_enc_sign_find(const struct flt_enc_signmap *sm, const char *sender,
                  const struct flt_enc_signer **out, struct err *e)
{
    struct buf res;
    unsigned line = 0;
    size_t i;
    int rc;

    buf_init(&res, 4096);
    rc = regmap_lookup(sm->map, sender, &res, &line, e);
    buf_fini(&res);
    if (rc <= 0) {
        if (rc < 0)
            e->code = ERR_TEMP;
        return rc;
    }
    for (i = 0; i < sm->n; i++)
        if (sm->s[i].line == line) {
            *out = &sm->s[i];
            return 1;
        }
    return err_set(e, ERR_INTERNAL, "%s:%u: no keys loaded for the rule",
                   regmap_path(sm->map), line);
}

int
flt_enc_smime_sign(const struct flt_enc_signer *sg, const char *data,
                   size_t len, struct buf *out, struct err *e)
{
    CMS_ContentInfo *cms = NULL;
    unsigned char *der = NULL, *p;
    unsigned long l;
    char reason[256];
    BIO *in = NULL;
    int dlen, rc = -1;

    if (sg->smime == NULL)
        return err_set(e, ERR_INTERNAL, "smime: no signing key");
    if (len > INT32_MAX)
        return err_set(e, ERR_LIMIT, "smime: message too large");
    if ((in = BIO_new_mem_buf(data, (int)len)) == NULL) {
        err_nomem(e);
        goto out;
    }
    /* CMS_BINARY: the entity is canonical (CRLF) already. Not detached:
     * the signed-data holds the entity (opaque signing). */
    cms = CMS_sign(sg->smime->cert, sg->smime->key, sg->smime->chain, in,
                   CMS_BINARY);
    if (cms == NULL || (dlen = i2d_CMS_ContentInfo(cms, NULL)) <= 0) {
        l = ERR_get_error();
        ERR_error_string_n(l, reason, sizeof(reason));
        ERR_clear_error();
        err_set(e, ERR_TEMP, "smime: CMS_sign with %s: %s", sg->smime_id,
                l != 0 ? reason : "failed");
        goto out;
    }
    if ((der = p = OPENSSL_malloc((size_t)dlen)) == NULL) {
        err_nomem(e);
        goto out;
    }
    if (i2d_CMS_ContentInfo(cms, &p) != dlen) {
        ERR_clear_error();
        err_set(e, ERR_TEMP, "smime: signed-data DER");
        goto out;
    }
    if (buf_puts(out,
                 "Content-Type: application/pkcs7-mime; "
                 "smime-type=signed-data;\r\n\tname=\"smime.p7m\"\r\n"
                 "Content-Transfer-Encoding: base64\r\n"
                 "Content-Disposition: attachment; "
                 "filename=\"smime.p7m\"\r\n\r\n",
                 e) < 0)
        goto out;
    rc = flt_enc_b64_lines(der, (size_t)dlen, "\r\n", out, e);

out:
    OPENSSL_free(der);
    CMS_ContentInfo_free(cms);
    BIO_free(in);
    return rc;
}
