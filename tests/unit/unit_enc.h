/*
 * unit_enc.h - S/MIME certificates made in the process, for the encrypt
 *     stage's unit test and fuzz target
 *
 * unit_enc_pki() makes, in a new directory under $TMPDIR, a CA
 * (DIR/ca.pem) and in DIR/certs the certificates of the recipients the
 * tests name:
 *     carol@Example.ORG   usable (subjectAltName, keyEncipherment)
 *     dan@example.org     digitalSignature only
 *     hal@example.org     expired ten days ago
 * all with one RSA key, whose PEM is DIR/key.pem and which the caller
 * gets to decrypt with (free it with EVP_PKEY_free). The CA has a key of
 * its own. unit_enc_rmtree() removes the directory. Failures trap: the
 * tests cannot run without them.
 */
#ifndef RC_UNIT_ENC_H
#define RC_UNIT_ENC_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static inline void
unit_enc_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509_EXTENSION *ext;

    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    if ((ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value)) == NULL ||
        !X509_add_ext(x, ext, -1))
        __builtin_trap();
    X509_EXTENSION_free(ext);
}

/* unit_enc_cert - a certificate for key signed by ca_key (issuer NULL:
 * self-signed), valid from days_from to days_to from now. */
static inline X509 *
unit_enc_cert(EVP_PKEY *key, EVP_PKEY *ca_key, X509 *issuer, long serial,
              const char *cn, const char *san, const char *ku, long days_from,
              long days_to)
{
    X509 *x = X509_new();
    X509_NAME *n;

    if (x == NULL)
        __builtin_trap();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), days_from * 86400L);
    X509_gmtime_adj(X509_getm_notAfter(x), days_to * 86400L);
    X509_set_pubkey(x, key);
    n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x,
                         issuer != NULL ? X509_get_subject_name(issuer) : n);
    unit_enc_ext(x, issuer != NULL ? issuer : x, NID_basic_constraints,
                 issuer == NULL ? "critical,CA:TRUE" : "CA:FALSE");
    unit_enc_ext(x, issuer != NULL ? issuer : x, NID_key_usage, ku);
    if (san != NULL)
        unit_enc_ext(x, issuer, NID_subject_alt_name, san);
    if (!X509_sign(x, ca_key, EVP_sha256()))
        __builtin_trap();
    return x;
}

static inline void
unit_enc_write(const char *dir, const char *name, X509 *x)
{
    char path[1024];
    FILE *fp;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if ((fp = fopen(path, "w")) == NULL || !PEM_write_X509(fp, x))
        __builtin_trap();
    fclose(fp);
}

/* unit_enc_pki - the directory (path into dir, size n) and the
 * recipients' key. */
static inline EVP_PKEY *
unit_enc_pki(char *dir, size_t n)
{
    const char *t = getenv("TMPDIR");
    EVP_PKEY *ca_key = EVP_RSA_gen(2048), *key = EVP_RSA_gen(2048);
    X509 *ca, *x;
    char sub[600];
    FILE *fp;

    if (ca_key == NULL || key == NULL)
        __builtin_trap();
    snprintf(dir, n, "%s/rc-unit-enc-XXXXXX", t != NULL ? t : "/tmp");
    if (mkdtemp(dir) == NULL)
        __builtin_trap();
    snprintf(sub, sizeof(sub), "%s/certs", dir);
    if (mkdir(sub, 0700) < 0)
        __builtin_trap();
    ca = unit_enc_cert(ca_key, ca_key, NULL, 1, "Unit CA", NULL,
                       "critical,keyCertSign,cRLSign", -1, 30);
    unit_enc_write(dir, "ca.pem", ca);
    x = unit_enc_cert(key, ca_key, ca, 0x1001, "Carol",
                      "email:carol@Example.ORG",
                      "digitalSignature,keyEncipherment", -1, 30);
    unit_enc_write(sub, "carol.pem", x);
    X509_free(x);
    x = unit_enc_cert(key, ca_key, ca, 0x1002, "Dan", "email:dan@example.org",
                      "digitalSignature", -1, 30);
    unit_enc_write(sub, "dan.pem", x);
    X509_free(x);
    x = unit_enc_cert(key, ca_key, ca, 0x1003, "Hal", "email:hal@example.org",
                      "digitalSignature,keyEncipherment", -20, -10);
    unit_enc_write(sub, "hal.pem", x);
    X509_free(x);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    snprintf(sub, sizeof(sub), "%s/key.pem", dir);
    if ((fp = fopen(sub, "w")) == NULL ||
        !PEM_write_PrivateKey(fp, key, NULL, NULL, 0, NULL, NULL))
        __builtin_trap();
    fclose(fp);
    return key;
}

static inline void
unit_enc_rmtree(const char *dir)
{
    static const char *const names[] = {
        "certs/carol.pem", "certs/dan.pem", "certs/hal.pem", "certs",
        "ca.pem",          "key.pem",       "policy.pcre"};
    char path[600];
    size_t i;

    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (unlink(path) < 0)
            rmdir(path);
    }
    rmdir(dir);
}

#endif
