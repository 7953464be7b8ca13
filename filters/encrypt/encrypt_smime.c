/*
 * encrypt_smime - S/MIME certificates and CMS encryption with OpenSSL
 *
 * init() reads every PEM certificate in smime_cert_dir (files ending in
 * .pem or .crt; a file that holds no certificate is an error naming it),
 * the CA certificates in smime_ca_file into one X509_STORE and, when
 * smime_crl_file is set, its CRLs, with CRL checking turned on for the
 * end certificate. They are read-only afterwards: run() verifies and
 * encrypts with them from any thread (OpenSSL 3 locks what it caches).
 *
 * A certificate is usable for an address when a subjectAltName
 * rfc822Name is that address (the local part exactly, the domain without
 * regard to case), it chains to the CA file's certificates now (so it is
 * within its validity and not revoked by the CRL), its key usage, when it
 * has one, allows key encipherment (key agreement for an EC key), and
 * its extended key usage, when it has one, allows e-mail protection.
 * Among usable certificates the one that stays valid longest wins.
 *
 * Verifying a certificate costs an RSA or ECDSA verification per chain
 * link, more than the message's own encryption; the verdict is kept for
 * cache_time (key_cache_time) under the engine's lock, never past the
 * certificate's notAfter. The files are read once at init(), so nothing
 * else can change a verdict.
 *
 * Encryption is CMS_encrypt() to the chosen certificates: enveloped-data
 * with AES-256-CBC, or authenveloped-data with AES-256-GCM (RFC 5083),
 * written as DER in base64 lines.
 */
#include "config.h"

#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "filters/encrypt/encrypt_int.h"

#define FLT_ENC_SMIME_MAX_CERTS 100000

struct flt_enc_cert {
    X509 *x;
    char *file;
    /* Its subjectAltName rfc822Names, then its subject's emailAddress
     * values, each NUL-terminated, read once: names holds nsan + nsubj
     * strings. */
    char **names;
    size_t nsan, nsubj;
    /* The last verdict, under the engine's lock: until 0 when none. */
    time_t until;
    int refused;
    char why[200];
};

struct flt_enc_smime {
    X509_STORE *store;
    struct flt_enc_cert *certs;
    size_t ncerts, cap;
    const EVP_CIPHER *cipher;
    int gcm;
    long cache_time; /* seconds; 0: verify for every message */
    pthread_mutex_t lock;
    int no_chain; /* flt_enc_smime_from_file without a CA file: dates only */
};

/* flt_enc_ossl_err - e with text and OpenSSL's first queued reason. */
static int
flt_enc_ossl_err(struct err *e, enum err_code code, const char *what)
{
    unsigned long l = ERR_get_error();
    char reason[256];

    if (l == 0)
        return err_set(e, code, "%s", what);
    ERR_error_string_n(l, reason, sizeof(reason));
    ERR_clear_error();
    return err_set(e, code, "%s: %s", what, reason);
}

/* flt_enc_smime_push - one more name of c; an address with a NUL in it
 * is no address and is left out. */
static int
flt_enc_smime_push(struct flt_enc_cert *c, const ASN1_STRING *v)
{
    const unsigned char *d = ASN1_STRING_get0_data(v);
    int len = ASN1_STRING_length(v);
    char **nn;

    if (len <= 0 || memchr(d, '\0', (size_t)len) != NULL)
        return 0;
    if ((nn = realloc(c->names, (c->nsan + c->nsubj + 1) * sizeof(*nn))) ==
        NULL)
        return -1;
    c->names = nn;
    if ((nn[c->nsan + c->nsubj] = strndup((const char *)d, (size_t)len)) ==
        NULL)
        return -1;
    return 1;
}

/* flt_enc_smime_read_names - c's names from its certificate. */
static int
flt_enc_smime_read_names(struct flt_enc_cert *c, struct err *e)
{
    GENERAL_NAMES *gens =
        X509_get_ext_d2i(c->x, NID_subject_alt_name, NULL, NULL);
    X509_NAME *subj = X509_get_subject_name(c->x);
    int i, idx = -1, rc = 0;

    for (i = 0; rc >= 0 && gens != NULL && i < sk_GENERAL_NAME_num(gens);
         i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);

        if (g->type == GEN_EMAIL &&
            (rc = flt_enc_smime_push(c, g->d.rfc822Name)) > 0)
            c->nsan++;
    }
    GENERAL_NAMES_free(gens);
    while (rc >= 0 && (idx = X509_NAME_get_index_by_NID(
                           subj, NID_pkcs9_emailAddress, idx)) >= 0)
        if ((rc = flt_enc_smime_push(c, X509_NAME_ENTRY_get_data(
                                            X509_NAME_get_entry(subj, idx)))) >
            0)
            c->nsubj++;
    return rc < 0 ? err_nomem(e) : 0;
}

static int
flt_enc_smime_add(struct flt_enc_smime *s, X509 *x, const char *file,
                  struct err *e)
{
    if (s->ncerts == s->cap) {
        size_t cap = s->cap == 0 ? 16 : s->cap * 2;
        struct flt_enc_cert *nc;

        if (cap > FLT_ENC_SMIME_MAX_CERTS)
            return err_set(e, ERR_CONFIG, "more than %d certificates",
                           FLT_ENC_SMIME_MAX_CERTS);
        if ((nc = realloc(s->certs, cap * sizeof(*nc))) == NULL)
            return err_nomem(e);
        s->certs = nc;
        s->cap = cap;
    }
    memset(&s->certs[s->ncerts], 0, sizeof(s->certs[s->ncerts]));
    if ((s->certs[s->ncerts].file = strdup(file)) == NULL)
        return err_nomem(e);
    /* Compute the cached extensions now, while one thread runs. */
    X509_check_purpose(x, -1, 0);
    s->certs[s->ncerts].x = x;
    if (flt_enc_smime_read_names(&s->certs[s->ncerts], e) < 0) {
        s->certs[s->ncerts].x = NULL;
        s->ncerts++; /* freed with the rest, names and file */
        return -1;
    }
    s->ncerts++;
    return 0;
}

static int
flt_enc_smime_file(struct flt_enc_smime *s, const char *path, struct err *e)
{
    BIO *b = BIO_new_file(path, "r");
    X509 *x;
    size_t got = 0;

    if (b == NULL)
        return flt_enc_ossl_err(e, ERR_CONFIG, path);
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
        if (flt_enc_smime_add(s, x, path, e) < 0) {
            X509_free(x);
            BIO_free(b);
            return -1;
        }
        got++;
    }
    ERR_clear_error();
    BIO_free(b);
    if (got == 0)
        return err_set(e, ERR_CONFIG, "%s: no PEM certificate in it", path);
    return 0;
}

static int
flt_enc_has_suffix(const char *name, const char *suf)
{
    size_t n = strlen(name), k = strlen(suf);

    return n > k && strcmp(name + n - k, suf) == 0;
}

static int
flt_enc_smime_dir(struct flt_enc_smime *s, const char *dir, struct err *e)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[4096];
    struct stat sb;
    int rc = 0;

    if (d == NULL)
        return err_sys(e, ERR_CONFIG, "smime_cert_dir %s", dir);
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (!flt_enc_has_suffix(de->d_name, ".pem") &&
            !flt_enc_has_suffix(de->d_name, ".crt"))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (stat(path, &sb) < 0 || !S_ISREG(sb.st_mode))
            continue;
        rc = flt_enc_smime_file(s, path, e);
    }
    closedir(d);
    return rc;
}

static int
flt_enc_smime_crls(struct flt_enc_smime *s, const char *path, struct err *e)
{
    BIO *b = BIO_new_file(path, "r");
    X509_CRL *crl;
    size_t got = 0;

    if (b == NULL)
        return flt_enc_ossl_err(e, ERR_CONFIG, path);
    while ((crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL)) != NULL) {
        int ok = X509_STORE_add_crl(s->store, crl);

        X509_CRL_free(crl);
        if (!ok) {
            BIO_free(b);
            return flt_enc_ossl_err(e, ERR_CONFIG, path);
        }
        got++;
    }
    ERR_clear_error();
    BIO_free(b);
    if (got == 0)
        return err_set(e, ERR_CONFIG, "%s: no PEM CRL in it", path);
    X509_STORE_set_flags(s->store, X509_V_FLAG_CRL_CHECK);
    return 0;
}

struct flt_enc_smime *
flt_enc_smime_new(const char *cert_dir, const char *ca_file,
                  const char *crl_file, enum flt_enc_smime_cipher cipher,
                  long cache_time, struct err *e)
{
    struct flt_enc_smime *s;

    if ((s = calloc(1, sizeof(*s))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    s->cache_time = cache_time;
    pthread_mutex_init(&s->lock, NULL);
    s->gcm = cipher == FLT_ENC_AES256_GCM;
    s->cipher = s->gcm ? EVP_aes_256_gcm() : EVP_aes_256_cbc();
    if ((s->store = X509_STORE_new()) == NULL) {
        flt_enc_ossl_err(e, ERR_NOMEM, "X509_STORE_new");
        goto fail;
    }
    if (X509_STORE_load_file(s->store, ca_file) != 1) {
        flt_enc_ossl_err(e, ERR_CONFIG, ca_file);
        goto fail;
    }
    if (crl_file != NULL && flt_enc_smime_crls(s, crl_file, e) < 0)
        goto fail;
    if (flt_enc_smime_dir(s, cert_dir, e) < 0)
        goto fail;
    return s;

fail:
    flt_enc_smime_free(s);
    return NULL;
}

void
flt_enc_smime_free(struct flt_enc_smime *s)
{
    size_t i;

    if (s == NULL)
        return;
    for (i = 0; i < s->ncerts; i++) {
        size_t k;

        X509_free(s->certs[i].x);
        free(s->certs[i].file);
        for (k = 0; k < s->certs[i].nsan + s->certs[i].nsubj; k++)
            free(s->certs[i].names[k]);
        free(s->certs[i].names);
    }
    free(s->certs);
    X509_STORE_free(s->store);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

int
flt_enc_smime_is_gcm(const struct flt_enc_smime *s)
{
    return s->gcm;
}

/* flt_enc_smime_names - 1 when a subjectAltName rfc822Name of c is addr;
 * 2 when c has addr only in its subject; 0 otherwise. */
static int
flt_enc_smime_names(const struct flt_enc_cert *c, const char *addr)
{
    size_t i;

    for (i = 0; i < c->nsan + c->nsubj; i++)
        if (flt_enc_addr_equal(addr, c->names[i]))
            return i < c->nsan ? 1 : 2;
    return 0;
}

/* flt_enc_smime_refusal - why x cannot be used now, or NULL. */
static const char *
flt_enc_smime_refusal(const struct flt_enc_smime *s, X509 *x, char *buf,
                      size_t n)
{
    uint32_t flags = X509_get_extension_flags(x);
    EVP_PKEY *pk = X509_get0_pubkey(x);
    X509_STORE_CTX *ctx;
    int ok, rc;

    if (pk == NULL)
        return "no public key it can be read";
    if (flags & EXFLAG_KUSAGE) {
        uint32_t ku = X509_get_key_usage(x);
        uint32_t need = EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA
                            ? KU_KEY_ENCIPHERMENT
                            : KU_KEY_AGREEMENT;

        if (!(ku & need))
            return EVP_PKEY_get_base_id(pk) == EVP_PKEY_RSA
                       ? "wrong key usage (no keyEncipherment)"
                       : "wrong key usage (no keyAgreement)";
    }
    if ((flags & EXFLAG_XKUSAGE) &&
        !(X509_get_extended_key_usage(x) & (XKU_SMIME | XKU_ANYEKU)))
        return "wrong extended key usage (no emailProtection)";
    if (s->no_chain) {
        if (X509_cmp_current_time(X509_get0_notBefore(x)) >= 0)
            return "not yet valid";
        if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0)
            return "expired";
        return NULL;
    }
    if ((ctx = X509_STORE_CTX_new()) == NULL)
        return "out of memory";
    if (X509_STORE_CTX_init(ctx, s->store, x, NULL) != 1) {
        X509_STORE_CTX_free(ctx);
        ERR_clear_error();
        return "could not verify";
    }
    ok = X509_verify_cert(ctx);
    rc = X509_STORE_CTX_get_error(ctx);
    X509_STORE_CTX_free(ctx);
    ERR_clear_error();
    if (ok == 1)
        return NULL;
    switch (rc) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
        return "expired";
    case X509_V_ERR_CERT_NOT_YET_VALID:
        return "not yet valid";
    case X509_V_ERR_CERT_REVOKED:
        return "revoked (smime_crl_file)";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
        return "not issued by a CA of smime_ca_file";
    default:
        snprintf(buf, n, "does not verify: %s",
                 X509_verify_cert_error_string(rc));
        return buf;
    }
}

/* flt_enc_smime_verdict - flt_enc_smime_refusal through the cache; a
 * refusal's text is copied into buf. */
static const char *
flt_enc_smime_verdict(const struct flt_enc_smime *s_c,
                      const struct flt_enc_cert *c_c, char *buf, size_t n)
{
    /* The cache is the engine's mutable part, under its lock. */
    struct flt_enc_smime *s = (struct flt_enc_smime *)s_c;
    struct flt_enc_cert *c = (struct flt_enc_cert *)c_c;
    time_t now = time(NULL), until;
    const char *r;
    int day, sec;

    if (s->cache_time <= 0)
        return flt_enc_smime_refusal(s, c->x, buf, n);
    pthread_mutex_lock(&s->lock);
    if (now < c->until) {
        r = NULL;
        if (c->refused) {
            snprintf(buf, n, "%s", c->why);
            r = buf;
        }
        pthread_mutex_unlock(&s->lock);
        return r;
    }
    pthread_mutex_unlock(&s->lock);
    r = flt_enc_smime_refusal(s, c->x, buf, n);
    until = now + s->cache_time;
    if (ASN1_TIME_diff(&day, &sec, NULL, X509_get0_notAfter(c->x)) &&
        (long long)day * 86400 + sec < s->cache_time)
        until = now + (day > 0 || sec > 0 ? (time_t)day * 86400 + sec : 0);
    pthread_mutex_lock(&s->lock);
    c->until = until;
    c->refused = r != NULL;
    snprintf(c->why, sizeof(c->why), "%s", r != NULL ? r : "");
    pthread_mutex_unlock(&s->lock);
    if (r != NULL) {
        snprintf(buf, n, "%s", c->why);
        r = buf;
    }
    return r;
}

static void
flt_enc_smime_serial(X509 *x, char *id, size_t n)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;

    snprintf(id, n, "serial=%s", hex != NULL ? hex : "?");
    OPENSSL_free(hex);
    BN_free(bn);
}

int
flt_enc_smime_lookup(const struct flt_enc_smime *s, const char *addr,
                     size_t *slot, char *id, size_t n,
                     flt_enc_report_fn report, void *arg, struct err *e)
{
    const ASN1_TIME *best_end = NULL;
    size_t i, best = 0;
    int found = 0, kind, day, sec;
    char sid[128], why[200];
    const char *r;

    (void)e;
    for (i = 0; i < s->ncerts; i++) {
        X509 *x = s->certs[i].x;

        if ((kind = flt_enc_smime_names(&s->certs[i], addr)) == 0)
            continue;
        r = kind == 2 ? "address only in the subject, not in a "
                        "subjectAltName rfc822Name"
            : report != NULL
                ? flt_enc_smime_refusal(s, x, why, sizeof(why))
                : flt_enc_smime_verdict(s, &s->certs[i], why, sizeof(why));
        if (report != NULL) {
            flt_enc_smime_serial(x, sid, sizeof(sid));
            report(arg, "smime", sid, s->certs[i].file, r);
        }
        if (r != NULL)
            continue;
        if (!found ||
            (ASN1_TIME_diff(&day, &sec, best_end, X509_get0_notAfter(x)) &&
             (day > 0 || sec > 0))) {
            best = i;
            best_end = X509_get0_notAfter(x);
            found = 1;
        }
    }
    if (!found)
        return 0;
    *slot = best;
    flt_enc_smime_serial(s->certs[best].x, id, n);
    return 1;
}

/* The base64 alphabet, and each 12-bit value as its two characters:
 * three octets are two look-ups. EVP_EncodeBlock goes a character at a
 * time and cost a third of the stage at 100 KB. Built once. */
static const char flt_enc_b64_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static char flt_enc_b64_pair[4096][2];
static pthread_once_t flt_enc_b64_once = PTHREAD_ONCE_INIT;

static void
flt_enc_b64_init(void)
{
    size_t i;

    for (i = 0; i < 4096; i++) {
        flt_enc_b64_pair[i][0] = flt_enc_b64_chars[i >> 6];
        flt_enc_b64_pair[i][1] = flt_enc_b64_chars[i & 63];
    }
}

/* flt_enc_b64_line - k (1 to 57) octets of src as base64 at w; the end
 * of what was written. */
static char *
flt_enc_b64_line(char *w, const unsigned char *src, size_t k)
{
    size_t i;

    for (i = 0; i + 3 <= k; i += 3) {
        unsigned v =
            (unsigned)src[i] << 16 | (unsigned)src[i + 1] << 8 | src[i + 2];

        memcpy(w, flt_enc_b64_pair[v >> 12], 2);
        memcpy(w + 2, flt_enc_b64_pair[v & 0xfff], 2);
        w += 4;
    }
    if (i < k) {
        unsigned v = (unsigned)src[i] << 16 |
                     (i + 1 < k ? (unsigned)src[i + 1] << 8 : 0);

        *w++ = flt_enc_b64_chars[v >> 18];
        *w++ = flt_enc_b64_chars[(v >> 12) & 63];
        *w++ = i + 1 < k ? flt_enc_b64_chars[(v >> 6) & 63] : '=';
        *w++ = '=';
    }
    return w;
}

/* flt_enc_b64_lines - src in base64, 76 characters a line, each ended
 * by eol: the room reserved once and each line encoded in place. */
int
flt_enc_b64_lines(const unsigned char *src, size_t len, const char *eol,
                  struct buf *out, struct err *e)
{
    size_t off, k, el = strlen(eol), lines = (len + 56) / 57;
    char *w;

    if (lines > (SIZE_MAX - 1) / (76 + el))
        return err_set(e, ERR_LIMIT, "smime: message too large");
    if (buf_reserve(out, lines * (76 + el), e) < 0)
        return -1;
    pthread_once(&flt_enc_b64_once, flt_enc_b64_init);
    /* buf_reserve made room for every line, its eol and the NUL */
    w = out->data + out->len;
    for (off = 0; off < len; off += k) {
        k = len - off < 57 ? len - off : 57;
        w = flt_enc_b64_line(w, src + off, k);
        memcpy(w, eol, el);
        w += el;
    }
    out->len = (size_t)(w - out->data);
    out->data[out->len] = '\0';
    return 0;
}

int
flt_enc_smime_encrypt(const struct flt_enc_smime *s, const size_t *slots,
                      size_t nslots, const char *data, size_t len,
                      const char *eol, struct buf *out, struct err *e)
{
    STACK_OF(X509) *rc = NULL;
    BIO *in = NULL;
    CMS_ContentInfo *cms = NULL;
    unsigned char *der = NULL, *p;
    int dlen;
    size_t i;
    int ret = -1;

    if (nslots == 0)
        return err_set(e, ERR_INTERNAL, "smime: no recipients");
    if (len > INT32_MAX)
        return err_set(e, ERR_LIMIT, "smime: message too large");
    if ((rc = sk_X509_new_null()) == NULL ||
        (in = BIO_new_mem_buf(data, (int)len)) == NULL) {
        flt_enc_ossl_err(e, ERR_NOMEM, "smime");
        goto out;
    }
    for (i = 0; i < nslots; i++)
        if (!sk_X509_push(rc, s->certs[slots[i]].x)) {
            flt_enc_ossl_err(e, ERR_NOMEM, "smime");
            goto out;
        }
    /* CMS_BINARY: the entity is canonical (CRLF) already and must be
     * encrypted as it is. */
    cms = CMS_encrypt(rc, in, s->cipher, CMS_BINARY);
    if (cms == NULL) {
        flt_enc_ossl_err(e, ERR_TEMP, "smime: CMS_encrypt");
        goto out;
    }
    /* DER into one buffer of its size, not through a memory BIO that
     * grows by doubling (and wipes each block it leaves). */
    if ((dlen = i2d_CMS_ContentInfo(cms, NULL)) <= 0) {
        flt_enc_ossl_err(e, ERR_TEMP, "smime: DER");
        goto out;
    }
    if ((der = p = OPENSSL_malloc((size_t)dlen)) == NULL) {
        flt_enc_ossl_err(e, ERR_NOMEM, "smime");
        goto out;
    }
    if (i2d_CMS_ContentInfo(cms, &p) != dlen) {
        flt_enc_ossl_err(e, ERR_TEMP, "smime: DER");
        goto out;
    }
    ret = eol == NULL ? buf_append(out, der, (size_t)dlen, e)
                      : flt_enc_b64_lines(der, (size_t)dlen, eol, out, e);

out:
    OPENSSL_free(der);
    CMS_ContentInfo_free(cms);
    BIO_free(in);
    sk_X509_free(rc);
    return ret;
}

int
flt_enc_smime_list(const struct flt_enc_smime *s, struct buf *out,
                   struct err *e)
{
    char sid[128], why[200], *subj;
    const char *r;
    size_t i;

    for (i = 0; i < s->ncerts; i++) {
        X509 *x = s->certs[i].x;
        int rc;

        flt_enc_smime_serial(x, sid, sizeof(sid));
        r = flt_enc_smime_refusal(s, x, why, sizeof(why));
        subj = X509_NAME_oneline(X509_get_subject_name(x), NULL, 0);
        rc = buf_printf(out, e, "smime %s %s (%s): %s%s%s\n", sid,
                        subj != NULL ? subj : "?", s->certs[i].file,
                        r == NULL ? "usable" : "refused (", r == NULL ? "" : r,
                        r == NULL ? "" : ")");
        OPENSSL_free(subj);
        if (rc < 0)
            return -1;
    }
    return 0;
}

int
flt_enc_cms_is_enveloped(const char *body, size_t len)
{
    BIO *in, *b64;
    CMS_ContentInfo *cms;
    int nid = NID_undef;

    if (len == 0 || len > INT32_MAX)
        return 0;
    if ((in = BIO_new_mem_buf(body, (int)len)) == NULL)
        return 0;
    if ((b64 = BIO_new(BIO_f_base64())) == NULL) {
        BIO_free(in);
        return 0;
    }
    in = BIO_push(b64, in);
    if ((cms = d2i_CMS_bio(in, NULL)) != NULL) {
        nid = OBJ_obj2nid(CMS_get0_type(cms));
        CMS_ContentInfo_free(cms);
    }
    BIO_free_all(in);
    ERR_clear_error();
    return nid == NID_pkcs7_enveloped ||
           nid == NID_id_smime_ct_authEnvelopedData;
}

/* ---- for the archive stage's encrypt_to (filters/archive/archive_crypt.c) */

struct flt_enc_smime *
flt_enc_smime_from_file(const char *cert_file, const char *ca_file,
                        long cache_time, struct err *e)
{
    struct flt_enc_smime *s;

    if ((s = calloc(1, sizeof(*s))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    s->cache_time = cache_time;
    pthread_mutex_init(&s->lock, NULL);
    s->cipher = EVP_aes_256_cbc();
    s->no_chain = ca_file == NULL;
    if ((s->store = X509_STORE_new()) == NULL) {
        flt_enc_ossl_err(e, ERR_NOMEM, "X509_STORE_new");
        goto fail;
    }
    if (ca_file != NULL && X509_STORE_load_file(s->store, ca_file) != 1) {
        flt_enc_ossl_err(e, ERR_CONFIG, ca_file);
        goto fail;
    }
    if (flt_enc_smime_file(s, cert_file, e) < 0)
        goto fail;
    return s;

fail:
    flt_enc_smime_free(s);
    return NULL;
}

size_t
flt_enc_smime_count(const struct flt_enc_smime *s)
{
    return s->ncerts;
}

const char *
flt_enc_smime_check(const struct flt_enc_smime *s, size_t slot, char *id,
                    size_t n, char *buf, size_t bn)
{
    flt_enc_smime_serial(s->certs[slot].x, id, n);
    return flt_enc_smime_verdict(s, &s->certs[slot], buf, bn);
}
