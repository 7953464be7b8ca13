/*
 * verp - the signed VERP token: see verp.h
 *
 * The tag is HMAC-SHA256 (OpenSSL's one-shot HMAC()) over a fixed
 * label and the 12 octets of version, queue id and recipient hash,
 * truncated to 8 octets and compared with CRYPTO_memcmp().
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "queue/verp.h"

#define VERP_VERSION 1
#define VERP_PAYLOAD 12 /* version, queue id, recipient hash */
#define VERP_TAG 8
#define VERP_RAW (VERP_PAYLOAD + VERP_TAG) /* 20 octets: 32 base32 */
#define VERP_LABEL "relaychain verp 1"

static const char verp_b32[] = "abcdefghijklmnopqrstuvwxyz234567";

int
verp_key_load(const char *path, struct verp_key *key, struct err *e)
{
    struct stat st;
    ssize_t got;
    size_t len = 0;
    int fd;

    memset(key, 0, sizeof(*key));
    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
        return err_sys(e, ERR_CONFIG, "%s", path);
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(e, ERR_CONFIG, "%s: not a regular file", path);
    }
    if (st.st_mode & S_IROTH) {
        close(fd);
        return err_set(e, ERR_CONFIG,
                       "%s: readable by others (the key signs every "
                       "bounce address): chmod o-r",
                       path);
    }
    for (;;) {
        got = read(fd, key->k + len, sizeof(key->k) - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            err_sys(e, ERR_CONFIG, "%s", path);
            close(fd);
            verp_key_wipe(key);
            return -1;
        }
        if (got == 0)
            break;
        len += (size_t)got;
        if (len == sizeof(key->k)) {
            char extra;

            if (read(fd, &extra, 1) == 1) {
                close(fd);
                verp_key_wipe(key);
                return err_set(e, ERR_CONFIG, "%s: longer than %d octets",
                               path, VERP_KEY_MAX);
            }
            break;
        }
    }
    close(fd);
    while (len > 0 && isspace(key->k[len - 1]))
        len--;
    if (len < VERP_KEY_MIN) {
        verp_key_wipe(key);
        return err_set(e, ERR_CONFIG,
                       "%s: %zu octets, a key needs %d or more (openssl "
                       "rand -hex 32)",
                       path, len, VERP_KEY_MIN);
    }
    key->len = len;
    return 0;
}

void
verp_key_wipe(struct verp_key *key)
{
    if (key != NULL)
        OPENSSL_cleanse(key, sizeof(*key));
}

void
verp_rcpt_hash(const char *rcpt, unsigned char out[VERP_HASH_LEN])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    char low[256];
    size_t i, n = strlen(rcpt);
    unsigned int mdlen = 0;

    memset(md, 0, sizeof(md));
    if (ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1) {
        /* lower-cased piece by piece: addresses have no length bound here */
        for (i = 0; i < n; i += sizeof(low)) {
            size_t k = n - i < sizeof(low) ? n - i : sizeof(low), j;

            for (j = 0; j < k; j++)
                low[j] = (char)tolower((unsigned char)rcpt[i + j]);
            EVP_DigestUpdate(ctx, low, k);
        }
        EVP_DigestFinal_ex(ctx, md, &mdlen);
    }
    EVP_MD_CTX_free(ctx);
    memcpy(out, md, VERP_HASH_LEN);
}

static void
verp_tag(const struct verp_key *key, const unsigned char *payload,
         unsigned char tag[VERP_TAG])
{
    unsigned char in[sizeof(VERP_LABEL) - 1 + VERP_PAYLOAD];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    memcpy(in, VERP_LABEL, sizeof(VERP_LABEL) - 1);
    memcpy(in + sizeof(VERP_LABEL) - 1, payload, VERP_PAYLOAD);
    memset(md, 0, sizeof(md));
    if (HMAC(EVP_sha256(), key->k, (int)key->len, in, sizeof(in), md,
             &mdlen) == NULL)
        memset(md, 0, sizeof(md)); /* a tag nobody can match */
    memcpy(tag, md, VERP_TAG);
    OPENSSL_cleanse(md, sizeof(md));
}

static int
verp_hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

int
verp_token(const struct verp_key *key, const char *qid, const char *rcpt,
           char *out, size_t n)
{
    unsigned char raw[VERP_RAW];
    unsigned acc = 0;
    size_t i, o = 0;
    int bits = 0;

    if (n < VERP_TOKEN_LEN + 1 || strlen(qid) != 12)
        return -1;
    raw[0] = VERP_VERSION;
    for (i = 0; i < 6; i++) {
        int hi = verp_hexval((unsigned char)qid[2 * i]),
            lo = verp_hexval((unsigned char)qid[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return -1;
        raw[1 + i] = (unsigned char)(hi << 4 | lo);
    }
    verp_rcpt_hash(rcpt, raw + 7);
    verp_tag(key, raw, raw + VERP_PAYLOAD);
    for (i = 0; i < VERP_RAW; i++) {
        acc = (acc << 8) | raw[i];
        bits += 8;
        while (bits >= 5) {
            out[o++] = verp_b32[(acc >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    out[o] = '\0';
    return 0;
}

int
verp_sender(const struct verp_key *key, const char *domain, const char *qid,
            const char *rcpt, char *out, size_t n)
{
    char tok[VERP_TOKEN_LEN + 1];
    int k;

    if (verp_token(key, qid, rcpt, tok, sizeof(tok)) < 0)
        return -1;
    k = snprintf(out, n, "%s%s@%s", VERP_PREFIX, tok, domain);
    return k < 0 || (size_t)k >= n ? -1 : 0;
}

int
verp_check(const struct verp_key *key, const char *token, size_t len,
           char qid[13], unsigned char hash[VERP_HASH_LEN])
{
    static const char hex[] = "0123456789ABCDEF";
    unsigned char raw[VERP_RAW], tag[VERP_TAG];
    unsigned acc = 0;
    size_t i, o = 0;
    int bits = 0, ok;

    if (len != VERP_TOKEN_LEN)
        return 0;
    for (i = 0; i < len; i++) {
        int c = tolower((unsigned char)token[i]), v;

        if (c >= 'a' && c <= 'z')
            v = c - 'a';
        else if (c >= '2' && c <= '7')
            v = c - '2' + 26;
        else
            return 0;
        acc = (acc << 5) | (unsigned)v;
        bits += 5;
        if (bits >= 8) {
            raw[o++] = (unsigned char)(acc >> (bits - 8));
            bits -= 8;
        }
    }
    if (o != VERP_RAW || raw[0] != VERP_VERSION)
        return 0;
    verp_tag(key, raw, tag);
    ok = CRYPTO_memcmp(tag, raw + VERP_PAYLOAD, VERP_TAG) == 0;
    OPENSSL_cleanse(tag, sizeof(tag));
    if (!ok)
        return 0;
    for (i = 0; i < 6; i++) {
        qid[2 * i] = hex[raw[1 + i] >> 4];
        qid[2 * i + 1] = hex[raw[1 + i] & 15];
    }
    qid[12] = '\0';
    memcpy(hash, raw + 7, VERP_HASH_LEN);
    return 1;
}

static int
verp_is_b32(int c)
{
    c = tolower(c);
    return (c >= 'a' && c <= 'z') || (c >= '2' && c <= '7');
}

int
verp_find(const char *text, size_t len, const char *domain, const char **tok,
          size_t *toklen)
{
    size_t plen = sizeof(VERP_PREFIX) - 1, dlen = strlen(domain), i, k;

    if (dlen == 0)
        return 0;
    for (i = 0; i + plen + VERP_TOKEN_LEN + 1 + dlen <= len; i++) {
        const char *p = text + i, *d;

        if (strncasecmp(p, VERP_PREFIX, plen) != 0)
            continue;
        if (i > 0 && (isalnum((unsigned char)p[-1]) || p[-1] == '.' ||
                      p[-1] == '-' || p[-1] == '_' || p[-1] == '+'))
            continue; /* "xbounces+..." is another local part */
        for (k = 0;
             k < VERP_TOKEN_LEN && verp_is_b32((unsigned char)p[plen + k]);
             k++)
            ;
        if (k != VERP_TOKEN_LEN || p[plen + k] != '@')
            continue;
        d = p + plen + k + 1;
        if (strncasecmp(d, domain, dlen) != 0)
            continue;
        if (d + dlen < text + len &&
            (isalnum((unsigned char)d[dlen]) || d[dlen] == '-' ||
             (d[dlen] == '.' && d + dlen + 1 < text + len &&
              isalnum((unsigned char)d[dlen + 1]))))
            continue; /* a longer domain */
        *tok = p + plen;
        *toklen = VERP_TOKEN_LEN;
        return 1;
    }
    return 0;
}
