/*
 * track_token - the signed tokens of the tracking links (see
 * track_token.h for the wire form and why the URL is inside)
 *
 * The key is read once, and keyed into OpenSSL's HMAC-SHA256 once; make
 * and open only read it (each token works on a copy), so threads may
 * share one. The tag is compared with CRYPTO_memcmp.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "util/cfg.h"
#include "util/track_token.h"

#define TRACK_HDR 10 /* version, kind, time, index, count */

static const char track_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/* track_mac_new - HMAC-SHA256 keyed once: each token copies it, which
 * costs half of keying it again. NULL when OpenSSL will not: tokens are
 * then keyed one by one. */
static void *
track_mac_new(const unsigned char *key, size_t len)
{
    OSSL_PARAM params[2];
    EVP_MAC_CTX *ctx;
    EVP_MAC *mac;

    if ((mac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL)
        return NULL;
    ctx = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac);
    if (ctx == NULL)
        return NULL;
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
                                                 (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    if (EVP_MAC_init(ctx, key, len, params) != 1) {
        EVP_MAC_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int
track_key_load(const char *path, struct track_key *k, struct err *e)
{
    unsigned char buf[TRACK_KEY_MAX + 1];
    struct stat st;
    size_t len = 0;
    ssize_t r;
    int fd;

    k->data = NULL;
    k->len = 0;
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        return err_sys(e, ERR_CONFIG, "%s", path);
    /* Whoever reads the key can sign any redirect and any unsubscribe. */
    if (fstat(fd, &st) < 0) {
        err_sys(e, ERR_CONFIG, "%s", path);
        close(fd);
        return -1;
    }
    if (cfg_secret_check(path, &st, S_IROTH | S_IWOTH, "the tracking key", e) <
        0) {
        close(fd);
        return -1;
    }
    while (len < sizeof(buf)) {
        r = read(fd, buf + len, sizeof(buf) - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            err_sys(e, ERR_CONFIG, "%s", path);
            close(fd);
            OPENSSL_cleanse(buf, sizeof(buf));
            return -1;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    if (len < TRACK_KEY_MIN || len > TRACK_KEY_MAX) {
        OPENSSL_cleanse(buf, sizeof(buf));
        return err_set(e, ERR_CONFIG,
                       "%s: a key of %zu%s octets; want %d to %d (head -c "
                       "32 /dev/urandom makes one)",
                       path, len, len > TRACK_KEY_MAX ? " or more" : "",
                       TRACK_KEY_MIN, TRACK_KEY_MAX);
    }
    if ((k->data = malloc(len)) == NULL) {
        OPENSSL_cleanse(buf, sizeof(buf));
        return err_nomem(e);
    }
    memcpy(k->data, buf, len);
    k->len = len;
    OPENSSL_cleanse(buf, sizeof(buf));
    k->mac = track_mac_new(k->data, k->len);
    return 0;
}

void
track_key_free(struct track_key *k)
{
    if (k == NULL || k->data == NULL)
        return;
    OPENSSL_cleanse(k->data, k->len);
    free(k->data);
    EVP_MAC_CTX_free(k->mac);
    k->data = NULL;
    k->len = 0;
    k->mac = NULL;
}

/* track_field_ok - s has no control octet and at most max octets. */
static int
track_field_ok(const char *s, size_t max)
{
    size_t i;

    for (i = 0; s[i] != '\0'; i++)
        if (i >= max || (unsigned char)s[i] < 0x20 ||
            (unsigned char)s[i] == 0x7f)
            return 0;
    return 1;
}

static int
track_tag(const struct track_key *k, const unsigned char *d, size_t n,
          unsigned char tag[EVP_MAX_MD_SIZE], struct err *e)
{
    unsigned int tl = 0;
    EVP_MAC_CTX *c;
    size_t sl = 0;
    int ok;

    if (k->mac != NULL) {
        /* A copy: the keyed one is shared by every thread, read only. */
        if ((c = EVP_MAC_CTX_dup(k->mac)) == NULL)
            return err_set(e, ERR_LIB, "HMAC-SHA256 failed");
        ok = EVP_MAC_update(c, d, n) == 1 &&
             EVP_MAC_final(c, tag, &sl, EVP_MAX_MD_SIZE) == 1 &&
             sl >= TRACK_TOKEN_TAG;
        EVP_MAC_CTX_free(c);
        return ok ? 0 : err_set(e, ERR_LIB, "HMAC-SHA256 failed");
    }
    if (HMAC(EVP_sha256(), k->data, (int)k->len, d, n, tag, &tl) == NULL ||
        tl < TRACK_TOKEN_TAG)
        return err_set(e, ERR_LIB, "HMAC-SHA256 failed");
    return 0;
}

int
track_token_make(const struct track_key *k, const struct track_token *t,
                 char *out, size_t n, struct err *e)
{
    const char *f[5] = {t->qid, t->msgid, t->sender, t->rcpt, t->url};
    static const size_t max[5] = {TRACK_QID_MAX, TRACK_MSGID_MAX,
                                  TRACK_ADDR_MAX, TRACK_ADDR_MAX,
                                  TRACK_URL_MAX};
    unsigned char raw[TRACK_RAW_MAX], tag[EVP_MAX_MD_SIZE];
    size_t len = 0, i, o = 0, fl;
    uint32_t v;

    if (k == NULL || k->data == NULL)
        return err_set(e, ERR_INTERNAL, "no tracking key");
    if (t->index > 0xffff || t->count > 0xffff)
        return err_set(e, ERR_INPUT, "link number over 65535");
    raw[len++] = 1;
    raw[len++] = (unsigned char)t->kind;
    v = (uint32_t)t->made;
    raw[len++] = (unsigned char)(v >> 24);
    raw[len++] = (unsigned char)(v >> 16);
    raw[len++] = (unsigned char)(v >> 8);
    raw[len++] = (unsigned char)v;
    raw[len++] = (unsigned char)(t->index >> 8);
    raw[len++] = (unsigned char)t->index;
    raw[len++] = (unsigned char)(t->count >> 8);
    raw[len++] = (unsigned char)t->count;
    for (i = 0; i < 5; i++) {
        if (!track_field_ok(f[i], max[i]))
            return err_set(e, ERR_INPUT,
                           "a token field over %zu octets or with a control "
                           "octet",
                           max[i]);
        fl = strlen(f[i]);
        raw[len++] = (unsigned char)(fl >> 8);
        raw[len++] = (unsigned char)fl;
        memcpy(raw + len, f[i], fl);
        len += fl;
    }
    if (track_tag(k, raw, len, tag, e) < 0)
        return -1;
    memcpy(raw + len, tag, TRACK_TOKEN_TAG);
    len += TRACK_TOKEN_TAG;
    if (n < (len + 2) / 3 * 4 + 1)
        return err_set(e, ERR_LIMIT, "token longer than its buffer");
    for (i = 0; i + 2 < len; i += 3) {
        v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
        out[o++] = track_b64[v >> 18];
        out[o++] = track_b64[(v >> 12) & 63];
        out[o++] = track_b64[(v >> 6) & 63];
        out[o++] = track_b64[v & 63];
    }
    if (len - i == 1) {
        v = (uint32_t)raw[i] << 16;
        out[o++] = track_b64[v >> 18];
        out[o++] = track_b64[(v >> 12) & 63];
    } else if (len - i == 2) {
        v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8;
        out[o++] = track_b64[v >> 18];
        out[o++] = track_b64[(v >> 12) & 63];
        out[o++] = track_b64[(v >> 6) & 63];
    }
    out[o] = '\0';
    return (int)o;
}

static int
track_b64_val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* track_unb64 - decode s strictly into raw (room for TRACK_RAW_MAX);
 * the octet count, or -1. */
static long
track_unb64(const char *s, size_t len, unsigned char *raw)
{
    size_t i, o = 0, rest = len % 4;
    uint32_t v = 0;
    int d;

    if (rest == 1)
        return -1;
    for (i = 0; i < len; i++) {
        if ((d = track_b64_val((unsigned char)s[i])) < 0)
            return -1;
        v = v << 6 | (uint32_t)d;
        if (i % 4 == 3) {
            raw[o++] = (unsigned char)(v >> 16);
            raw[o++] = (unsigned char)(v >> 8);
            raw[o++] = (unsigned char)v;
            v = 0;
        }
    }
    if (rest == 2) {
        if ((v & 0xf) != 0)
            return -1;
        raw[o++] = (unsigned char)(v >> 4);
    } else if (rest == 3) {
        if ((v & 0x3) != 0)
            return -1;
        raw[o++] = (unsigned char)(v >> 10);
        raw[o++] = (unsigned char)(v >> 2);
    }
    return (long)o;
}

int
track_token_open(const struct track_key *k, const char *s, size_t len,
                 struct track_token *t, struct err *e)
{
    char *f[5] = {t->qid, t->msgid, t->sender, t->rcpt, t->url};
    static const size_t max[5] = {TRACK_QID_MAX, TRACK_MSGID_MAX,
                                  TRACK_ADDR_MAX, TRACK_ADDR_MAX,
                                  TRACK_URL_MAX};
    unsigned char raw[TRACK_RAW_MAX], tag[EVP_MAX_MD_SIZE];
    size_t body, p, i, j, fl;
    long n;

    memset(t, 0, sizeof(*t));
    if (k == NULL || k->data == NULL)
        return err_set(e, ERR_INTERNAL, "no tracking key");
    if (len >= TRACK_TOKEN_MAX)
        return err_set(e, ERR_INPUT, "token too long");
    if ((n = track_unb64(s, len, raw)) < 0)
        return err_set(e, ERR_INPUT, "token is not URL-safe base64");
    if ((size_t)n < TRACK_HDR + 10 + TRACK_TOKEN_TAG)
        return err_set(e, ERR_INPUT, "token too short");
    body = (size_t)n - TRACK_TOKEN_TAG;
    if (track_tag(k, raw, body, tag, e) < 0)
        return -1;
    if (CRYPTO_memcmp(tag, raw + body, TRACK_TOKEN_TAG) != 0)
        return err_set(e, ERR_INPUT, "token signature does not verify");
    /* Signed by us from here on; the checks below guard against a key
     * shared with a broken writer, not against forgery. */
    if (raw[0] != 1 || (raw[1] != TRACK_OPEN && raw[1] != TRACK_CLICK &&
                        raw[1] != TRACK_UNSUB))
        return err_set(e, ERR_INPUT, "token of an unknown version or kind");
    t->kind = (enum track_kind)raw[1];
    t->made = (unsigned long)raw[2] << 24 | (unsigned long)raw[3] << 16 |
              (unsigned long)raw[4] << 8 | raw[5];
    t->index = (unsigned)raw[6] << 8 | raw[7];
    t->count = (unsigned)raw[8] << 8 | raw[9];
    p = TRACK_HDR;
    for (i = 0; i < 5; i++) {
        if (p + 2 > body)
            return err_set(e, ERR_INPUT, "token field cut short");
        fl = (size_t)raw[p] << 8 | raw[p + 1];
        p += 2;
        if (fl > max[i] || fl > body - p)
            return err_set(e, ERR_INPUT, "token field too long");
        for (j = 0; j < fl; j++)
            if (raw[p + j] < 0x20 || raw[p + j] == 0x7f)
                return err_set(e, ERR_INPUT, "control octet in a token");
        memcpy(f[i], raw + p, fl);
        f[i][fl] = '\0';
        p += fl;
    }
    if (p != body)
        return err_set(e, ERR_INPUT, "octets after the token's fields");
    return 0;
}
