/*
 * dkim_record - a DKIM key and its DNS record, for "relaychain dkim"
 *
 * flt_dkim_keygen_pem() makes a key with OpenSSL as PKCS#8 PEM. The
 * command writes it, reads it back with the stage's own loader
 * (flt_dkim_key_load), so a key that keygen makes is one the stage
 * accepts, and asks flt_dkim_key_zone() for the DNS TXT record in
 * zone-file form exactly as opendkim-genkey writes it: character strings
 * of at most 255 octets, the p= value cut every 250.
 *
 * flt_dkim_txt_record() reads a record back from such a file (quoted
 * strings) or from the bare record; flt_dkim_key_test() compares it with
 * a key and says what is wrong: another key, k= naming another
 * algorithm, a revoked (empty) p=, an h= without sha256, an s= without
 * email, and it notes testing mode (t=y). flt_dkim_key_test_dns() has
 * libopendkim's dkim_test_key() fetch the published record and check it.
 *
 * Nothing here prints: the findings are lines of text in a buffer the
 * caller owns (core/cli/cmd_dkim.c prints them). The PEM text is wiped
 * before it is freed.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <opendkim/dkim.h>

#include "filters/filters.h"

#define FLT_DKIM_RECORD_CHUNK 250  /* p= octets per string, as genkey */
#define FLT_DKIM_RECORD_P_MAX 4096 /* octets of a p= value */

/* flt_dkim_record_pem - key as PKCS#8 PEM into a new string. */
static char *
flt_dkim_record_pem(EVP_PKEY *key, size_t *len)
{
    char *p, *out = NULL;
    BIO *bio;
    long n;

    if ((bio = BIO_new(BIO_s_mem())) == NULL)
        return NULL;
    if (PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) == 1 &&
        (n = BIO_get_mem_data(bio, &p)) > 0 &&
        (out = malloc((size_t)n + 1)) != NULL) {
        memcpy(out, p, (size_t)n);
        out[n] = '\0';
        *len = (size_t)n;
        OPENSSL_cleanse(p, (size_t)n);
    }
    BIO_free(bio);
    return out;
}

char *
flt_dkim_keygen_pem(int ed25519, long bits, size_t *len, struct err *e)
{
    EVP_PKEY *pkey;
    char *pem = NULL;

    if (ed25519)
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    else
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
    if (pkey == NULL || (pem = flt_dkim_record_pem(pkey, len)) == NULL)
        err_set(e, ERR_LIB, "key generation failed: %s",
                ERR_reason_error_string(ERR_get_error()));
    EVP_PKEY_free(pkey);
    return pem;
}

void
flt_dkim_pem_free(char *pem, size_t len)
{
    if (pem == NULL)
        return;
    OPENSSL_cleanse(pem, len);
    free(pem);
}

char *
flt_dkim_key_zone(const struct flt_dkim_key *key, const char *domain,
                  const char *selector)
{
    const char *p = strstr(flt_dkim_key_record(key), "p=");
    size_t plen, n, i, o;
    char *out;

    if (p == NULL)
        return NULL;
    p += 2;
    plen = strlen(p);
    n = strlen(selector) + strlen(domain) + plen + 4 * (plen / 250 + 1) + 256;
    if ((out = malloc(n)) == NULL)
        return NULL;
    o = (size_t)snprintf(out, n,
                         "%s._domainkey\tIN\tTXT\t( \"v=DKIM1; h=sha256; "
                         "k=%s; \"\n\t  \"p=",
                         selector, flt_dkim_key_type(key));
    for (i = 0; i < plen && o < n; i += FLT_DKIM_RECORD_CHUNK) {
        size_t take = plen - i < FLT_DKIM_RECORD_CHUNK ? plen - i
                                                       : FLT_DKIM_RECORD_CHUNK;

        o += (size_t)snprintf(out + o, n - o, "%s%.*s",
                              i > 0 ? "\"\n\t  \"" : "", (int)take, p + i);
    }
    if (o < n)
        snprintf(out + o, n - o, "\" )  ; ----- DKIM key %s for %s\n",
                 selector, domain);
    return out;
}

int
flt_dkim_txt_record(const char *text, char *out, size_t n)
{
    size_t o = 0;
    int quoted = 0, any = strchr(text, '"') != NULL;
    const char *p;

    for (p = text; *p != '\0'; p++) {
        char c = *p;

        if (!any) {
            if (c == '\r' || c == '\n')
                continue;
        } else if (!quoted) {
            if (c == ';') {
                while (p[1] != '\0' && p[1] != '\n')
                    p++;
                continue;
            }
            if (c == '"')
                quoted = 1;
            continue;
        } else if (c == '"') {
            quoted = 0;
            continue;
        } else if (c == '\\' && p[1] >= '0' && p[1] <= '9' && p[2] >= '0' &&
                   p[2] <= '9' && p[3] >= '0' && p[3] <= '9') {
            c = (char)((p[1] - '0') * 100 + (p[2] - '0') * 10 + (p[3] - '0'));
            p += 3;
        } else if (c == '\\' && p[1] != '\0') {
            c = *++p;
        }
        if (o + 1 >= n)
            return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return quoted ? -1 : 0;
}

/* flt_dkim_record_has - list (colon-separated) holds one of a or b. */
static int
flt_dkim_record_has(const char *list, const char *a, const char *b)
{
    size_t al = strlen(a), bl = b != NULL ? strlen(b) : 0, len;
    const char *p = list, *q;

    for (;;) {
        q = strchr(p, ':');
        len = q != NULL ? (size_t)(q - p) : strlen(p);
        if ((len == al && strncasecmp(p, a, al) == 0) ||
            (b != NULL && len == bl && strncasecmp(p, b, bl) == 0))
            return 1;
        if (q == NULL)
            return 0;
        p = q + 1;
    }
}

/* flt_dkim_record_bad - append one finding, a line of its own, to out;
 * returns 1 (the record cannot verify the key's signatures), or -1. */
static int __attribute__((format(printf, 3, 4)))
flt_dkim_record_bad(struct buf *out, struct err *e, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = buf_vprintf(out, e, fmt, ap);
    va_end(ap);
    return rc < 0 ? -1 : 1;
}

/* flt_dkim_record_ok - the finding of a record that matches key. */
static int
flt_dkim_record_ok(const struct flt_dkim_key *key, const char *keypath,
                   const char *name, struct buf *out, struct err *e)
{
    return buf_printf(out, e, "%s: key OK (%s, %d bits, matches %s)\n", name,
                      flt_dkim_key_alg(key), flt_dkim_key_bits(key), keypath);
}

int
flt_dkim_key_test(const struct flt_dkim_key *key, const char *keypath,
                  const char *name, const char *rec, struct buf *out,
                  struct err *e)
{
    char v[64], k[64], h[256], s[256], t[64], p[FLT_DKIM_RECORD_P_MAX];
    unsigned char *der;
    int len, pad = 0, rc;
    size_t plen;

    if (flt_dkim_tag_value(rec, "v", v, sizeof(v)) && strcmp(v, "DKIM1") != 0)
        return flt_dkim_record_bad(
            out, e, "%s: v=%s: not a DKIM1 key record\n", name, v);
    if (!flt_dkim_tag_value(rec, "k", k, sizeof(k)))
        snprintf(k, sizeof(k), "rsa");
    if (strcasecmp(k, flt_dkim_key_type(key)) != 0)
        return flt_dkim_record_bad(
            out, e, "%s: the record has k=%s, but %s is an %s key\n", name, k,
            keypath, flt_dkim_key_type(key));
    if (flt_dkim_tag_value(rec, "h", h, sizeof(h)) &&
        !flt_dkim_record_has(h, "sha256", NULL))
        return flt_dkim_record_bad(out, e,
                                   "%s: h=%s does not allow sha256, which the "
                                   "signatures use\n",
                                   name, h);
    if (flt_dkim_tag_value(rec, "s", s, sizeof(s)) &&
        !flt_dkim_record_has(s, "email", "*"))
        return flt_dkim_record_bad(out, e, "%s: s=%s does not allow email\n",
                                   name, s);
    if (!flt_dkim_tag_value(rec, "p", p, sizeof(p)))
        return flt_dkim_record_bad(out, e, "%s: the record has no p= tag\n",
                                   name);
    if (p[0] == '\0')
        return flt_dkim_record_bad(
            out, e, "%s: the key is revoked (empty p=)\n", name);
    plen = strlen(p);
    if (plen % 4 != 0 || (der = malloc(plen / 4 * 3 + 1)) == NULL)
        return flt_dkim_record_bad(out, e, "%s: p= is not valid base64\n",
                                   name);
    len = EVP_DecodeBlock(der, (const unsigned char *)p, (int)plen);
    while (plen > 0 && p[plen - 1] == '=' && pad < 2) {
        pad++;
        plen--;
    }
    if (len < 0) {
        rc = flt_dkim_record_bad(out, e, "%s: p= is not valid base64\n", name);
    } else if (!flt_dkim_key_matches(key, der, (size_t)(len - pad))) {
        rc = flt_dkim_record_bad(out, e,
                                 "%s: the published key does not match the "
                                 "private key %s\n",
                                 name, keypath);
    } else if (flt_dkim_record_ok(key, keypath, name, out, e) < 0) {
        rc = -1;
    } else {
        rc = 0;
        if (flt_dkim_tag_value(rec, "t", t, sizeof(t)) &&
            flt_dkim_record_has(t, "y", NULL) &&
            buf_printf(out, e,
                       "%s: note: t=y, testing mode: receivers treat failed "
                       "signatures as if the mail were unsigned\n",
                       name) < 0)
            rc = -1;
    }
    free(der);
    return rc;
}

int
flt_dkim_key_test_dns(const struct flt_dkim_key *key, const char *keypath,
                      const char *domain, const char *selector,
                      const char *name, struct buf *out, struct err *e)
{
    char err[256], *pem, *sel, *dom;
    DKIM_LIB *lib;
    int dnssec = 0, rc;

    if ((lib = dkim_init(NULL, NULL)) == NULL)
        return 1;
    pem = strdup(flt_dkim_key_pem_text(key));
    sel = strdup(selector);
    dom = strdup(domain);
    err[0] = '\0';
    rc = pem == NULL || sel == NULL || dom == NULL
             ? -1
             : dkim_test_key(lib, sel, dom, pem, strlen(pem), &dnssec, err,
                             sizeof(err));
    if (pem != NULL) {
        OPENSSL_cleanse(pem, strlen(pem));
        free(pem);
    }
    free(sel);
    free(dom);
    dkim_close(lib);
    if (rc == 0)
        return flt_dkim_record_ok(key, keypath, name, out, e) < 0 ? -1 : 0;
    return flt_dkim_record_bad(
        out, e, "%s: %s\n", name,
        err[0] != '\0'
            ? err
            : (rc > 0 ? "the published key does not match the private key"
                      : "the record could not be retrieved"));
}
