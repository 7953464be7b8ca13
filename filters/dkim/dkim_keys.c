/*
 * dkim_keys - the dkim stage's keys and OpenDKIM tables
 *
 * Keys are read and checked once, at init (flt_dkim_key_load: PEM, RSA
 * of 1024 bits or more or Ed25519, not readable by others with
 * check_mode), with the DNS record of their public half; the KeyTable
 * and SigningTable are parsed into sorted indexes for the lookups run()
 * makes. Everything here is read-only after init. See dkim.c.
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

#include "filters/dkim/dkim_int.h"
#include "util/log.h"
#include "msg/mime.h"
#include "msg/downgrade.h"

/* ------------------------------------------------------------ helpers */

int
flt_dkim_lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

char *
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
int
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
int
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

/* flt_dkim_reader_init - r reads the len octets of text, named name in
 * its errors. */
static void
flt_dkim_reader_init(struct flt_dkim_reader *r, const char *name,
                     const char *text, size_t len)
{
    memset(r, 0, sizeof(*r));
    r->name = name;
    r->p = text;
    r->end = text + len;
}

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
 * for one more, doubling, and that item (index n) zeroed: p itself or a
 * moved copy; NULL on ENOMEM, when p is left as it was. */
static void *
flt_dkim_grow(void *p, size_t *cap, size_t n, size_t size)
{
    size_t ncap = *cap ? 2 * *cap : 16;
    void *grown = p;

    if (n >= *cap) {
        if (ncap > SIZE_MAX / size ||
            (grown = realloc(p, ncap * size)) == NULL)
            return NULL;
        *cap = ncap;
    }
    memset((char *)grown + n * size, 0, size);
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
size_t
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

    flt_dkim_reader_init(&r, t->kt_path, text, len);
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
        kt = &t->keys[t->nkeys++];
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

    flt_dkim_reader_init(&r, t->st_path, text, len);
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
        st = &t->sigs[t->nsigs++];
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
size_t
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
struct flt_dkim_tables *
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
