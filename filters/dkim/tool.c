/*
 * dkim_tool - "relaychain dkim": make a DKIM key and check a published one
 *
 *     relaychain dkim keygen -d DOMAIN -s SELECTOR [-a rsa|ed25519]
 *                            [-b BITS] [-D DIR] [-u USER]
 *     relaychain dkim testkey -d DOMAIN -s SELECTOR -k KEY [--txt FILE]
 *
 * keygen makes the key with OpenSSL and writes DIR/SELECTOR.private (PKCS#8
 * PEM, mode 0600, never over an existing file) and DIR/SELECTOR.txt, the
 * DNS TXT record in zone-file form exactly as opendkim-genkey writes it:
 * character strings of at most 255 octets, the p= value cut every 250. The
 * key file is read back with the stage's own loader before the record is
 * printed, so a key that keygen makes is one the stage accepts. With -u
 * both files are given to USER and USER's group before anything is
 * written into them: relaychaind reads keys as its user, at start and
 * at every reload, so a key only root can read would stop it.
 *
 * testkey loads KEY as the stage would (mode check included) and compares
 * its public half with the record in FILE (zone-file form with quoted
 * strings, or the bare record) or, without --txt, with the one published
 * at SELECTOR._domainkey.DOMAIN, which libopendkim's dkim_test_key()
 * fetches and checks. It says what is wrong: another key, k= naming
 * another algorithm, a revoked (empty) p=, an h= without sha256, an s=
 * without email, and it notes testing mode (t=y).
 *
 * Exit status: 0 done (keygen) or the record matches (testkey); 1 for a
 * mismatch, a bad record or any error; usage errors print the usage.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <opendkim/dkim.h>

#include "filters/filters.h"

#define FLT_DKIM_TOOL_CHUNK 250     /* p= octets per string, as genkey */
#define FLT_DKIM_TOOL_TXT_MAX 65536 /* octets of a --txt file */
#define FLT_DKIM_TOOL_P_MAX 4096    /* octets of a p= value */
#define FLT_DKIM_TOOL_PATH_MAX 4096

static void
flt_dkim_tool_usage(FILE *fp)
{
    fprintf(fp, "usage: relaychain dkim keygen -d DOMAIN -s SELECTOR "
                "[-a rsa|ed25519] [-b BITS] [-D DIR]\n"
                "                              [-u USER]\n"
                "       relaychain dkim testkey -d DOMAIN -s SELECTOR -k KEY "
                "[--txt FILE]\n"
                "\n"
                "keygen writes DIR/SELECTOR.private (mode 0600) and "
                "DIR/SELECTOR.txt and\n"
                "prints the DNS TXT record in zone-file form, as "
                "opendkim-genkey does\n"
                "(defaults: -a rsa -b 2048 -D .). -u gives both files to "
                "USER, the\n"
                "user relaychaind runs as, which must be able to read the "
                "key.\n"
                "testkey checks the record published at "
                "SELECTOR._domainkey.DOMAIN, or\n"
                "the one in FILE, against the private key KEY.\n");
}

/* flt_dkim_tool_write - create path (never over an existing file) with
 * mode, owned by uid:gid unless uid is (uid_t)-1, and write len octets;
 * the file is removed again on failure. */
static int
flt_dkim_tool_write(const char *path, mode_t mode, const char *data,
                    size_t len, uid_t uid, gid_t gid)
{
    size_t done = 0;
    ssize_t n;
    int fd;

    fd =
        open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0) {
        fprintf(stderr, "relaychain: %s: %s%s\n", path, strerror(errno),
                errno == EEXIST ? " (remove it first, or choose another "
                                  "selector)"
                                : "");
        return -1;
    }
    /* The umask may have taken bits away; none may be added. The owner
     * changes before the key is in the file. */
    if (fchmod(fd, mode) < 0 || (uid != (uid_t)-1 && fchown(fd, uid, gid) < 0))
        goto fail;
    while (done < len) {
        n = write(fd, data + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        done += (size_t)n;
    }
    if (fsync(fd) < 0 || close(fd) < 0) {
        fd = -1;
        goto fail;
    }
    return 0;
fail:
    fprintf(stderr, "relaychain: %s: %s\n", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    unlink(path);
    return -1;
}

/* flt_dkim_tool_pem - key as PKCS#8 PEM into a new string. */
static char *
flt_dkim_tool_pem(EVP_PKEY *key, size_t *len)
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

/* flt_dkim_tool_zone - the record of key in opendkim-genkey's zone-file
 * form, into a new string. */
static char *
flt_dkim_tool_zone(const struct flt_dkim_key *key, const char *domain,
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
    for (i = 0; i < plen && o < n; i += FLT_DKIM_TOOL_CHUNK) {
        size_t take =
            plen - i < FLT_DKIM_TOOL_CHUNK ? plen - i : FLT_DKIM_TOOL_CHUNK;

        o += (size_t)snprintf(out + o, n - o, "%s%.*s",
                              i > 0 ? "\"\n\t  \"" : "", (int)take, p + i);
    }
    if (o < n)
        snprintf(out + o, n - o, "\" )  ; ----- DKIM key %s for %s\n",
                 selector, domain);
    return out;
}

static int
flt_dkim_keygen(int argc, char **argv)
{
    const char *domain = NULL, *selector = NULL, *dir = ".", *alg = "rsa";
    const char *user = NULL;
    uid_t uid = (uid_t)-1;
    gid_t gid = (gid_t)-1;
    char keypath[FLT_DKIM_TOOL_PATH_MAX], txtpath[FLT_DKIM_TOOL_PATH_MAX];
    struct flt_dkim_key *key = NULL;
    EVP_PKEY *pkey = NULL;
    char *pem = NULL, *zone = NULL, *end;
    long bits = 2048;
    int c, bits_set = 0, rc = 1;
    size_t pem_len = 0;
    struct err e;

    optind = 1;
    while ((c = getopt(argc, argv, "a:b:d:D:hs:u:")) != -1) {
        switch (c) {
        case 'a':
            alg = optarg;
            break;
        case 'b':
            errno = 0;
            bits = strtol(optarg, &end, 10);
            if (errno != 0 || *end != '\0' || end == optarg) {
                fprintf(stderr, "relaychain: -b %s: not a number\n", optarg);
                return 1;
            }
            bits_set = 1;
            break;
        case 'd':
            domain = optarg;
            break;
        case 'D':
            dir = optarg;
            break;
        case 's':
            selector = optarg;
            break;
        case 'u':
            user = optarg;
            break;
        case 'h':
            flt_dkim_tool_usage(stdout);
            return 0;
        default:
            flt_dkim_tool_usage(stderr);
            return 1;
        }
    }
    if (optind != argc || domain == NULL || selector == NULL) {
        flt_dkim_tool_usage(stderr);
        return 1;
    }
    if (user != NULL) {
        struct passwd *pw = getpwnam(user);

        if (pw == NULL) {
            fprintf(stderr, "relaychain: -u %s: no such user\n", user);
            return 1;
        }
        uid = pw->pw_uid;
        gid = pw->pw_gid;
    }
    if (!flt_dkim_name_ok(domain, 0) || !flt_dkim_name_ok(selector, 1)) {
        fprintf(stderr, "relaychain: %s is not a valid %s\n",
                flt_dkim_name_ok(domain, 0) ? selector : domain,
                flt_dkim_name_ok(domain, 0) ? "selector" : "domain");
        return 1;
    }
    if (strcasecmp(alg, "rsa") == 0) {
        if (bits < 1024 || bits > 8192) {
            fprintf(stderr,
                    "relaychain: -b %ld: RSA keys for DKIM have 1024 to 8192 "
                    "bits (RFC 8301; 2048 recommended)\n",
                    bits);
            return 1;
        }
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
    } else if (strcasecmp(alg, "ed25519") == 0) {
        if (bits_set) {
            fprintf(stderr, "relaychain: -b does not apply to Ed25519 keys\n");
            return 1;
        }
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    } else {
        fprintf(stderr, "relaychain: -a %s: want rsa or ed25519\n", alg);
        return 1;
    }
    if (pkey == NULL || (pem = flt_dkim_tool_pem(pkey, &pem_len)) == NULL) {
        fprintf(stderr, "relaychain: key generation failed: %s\n",
                ERR_reason_error_string(ERR_get_error()));
        goto out;
    }
    if ((size_t)snprintf(keypath, sizeof(keypath), "%s/%s.private", dir,
                         selector) >= sizeof(keypath) ||
        (size_t)snprintf(txtpath, sizeof(txtpath), "%s/%s.txt", dir,
                         selector) >= sizeof(txtpath)) {
        fprintf(stderr, "relaychain: %s: path too long\n", dir);
        goto out;
    }
    if (flt_dkim_tool_write(keypath, 0600, pem, pem_len, uid, gid) < 0)
        goto out;
    err_clear(&e);
    if ((key = flt_dkim_key_load(keypath, 1, &e)) == NULL) {
        fprintf(stderr, "relaychain: %s\n", e.text);
        unlink(keypath);
        goto out;
    }
    if ((zone = flt_dkim_tool_zone(key, domain, selector)) == NULL) {
        fprintf(stderr, "relaychain: out of memory\n");
        unlink(keypath);
        goto out;
    }
    if (flt_dkim_tool_write(txtpath, 0644, zone, strlen(zone), uid, gid) < 0) {
        unlink(keypath);
        goto out;
    }
    fputs(zone, stdout);
    fprintf(stderr,
            "relaychain: wrote %s (%s, %d bits, mode 0600%s%s) and %s; "
            "publish the record at %s._domainkey.%s\n",
            keypath, flt_dkim_key_type(key), flt_dkim_key_bits(key),
            user != NULL ? ", owner " : "", user != NULL ? user : "", txtpath,
            selector, domain);
    if (user == NULL && geteuid() == 0)
        fprintf(stderr,
                "relaychain: note: %s belongs to root, but relaychaind "
                "reads keys as its user: give it to that user (chown "
                "relaychain %s), or use -u USER\n",
                keypath, keypath);
    rc = fflush(stdout) == 0 ? 0 : 1;
out:
    if (pem != NULL) {
        OPENSSL_cleanse(pem, pem_len);
        free(pem);
    }
    free(zone);
    flt_dkim_key_free(key);
    EVP_PKEY_free(pkey);
    return rc;
}

/* flt_dkim_tool_record - the TXT record in text: the quoted strings of a
 * zone-file entry joined (";" comments outside them skipped), or the text
 * itself with line ends removed when it has no quotes. */
static int
flt_dkim_tool_record(const char *text, char *out, size_t n)
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

/* flt_dkim_tool_has - list (colon-separated) holds one of a or b. */
static int
flt_dkim_tool_has(const char *list, const char *a, const char *b)
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

/* flt_dkim_tool_check - the record against key; prints the findings and
 * returns 0 when it can be used to verify the key's signatures. */
static int
flt_dkim_tool_check(const struct flt_dkim_key *key, const char *keypath,
                    const char *name, const char *rec)
{
    char v[64], k[64], h[256], s[256], t[64], p[FLT_DKIM_TOOL_P_MAX];
    unsigned char *der;
    int len, pad = 0, rc = 1;
    size_t plen;

    if (flt_dkim_tag_value(rec, "v", v, sizeof(v)) &&
        strcmp(v, "DKIM1") != 0) {
        printf("%s: v=%s: not a DKIM1 key record\n", name, v);
        return 1;
    }
    if (!flt_dkim_tag_value(rec, "k", k, sizeof(k)))
        snprintf(k, sizeof(k), "rsa");
    if (strcasecmp(k, flt_dkim_key_type(key)) != 0) {
        printf("%s: the record has k=%s, but %s is an %s key\n", name, k,
               keypath, flt_dkim_key_type(key));
        return 1;
    }
    if (flt_dkim_tag_value(rec, "h", h, sizeof(h)) &&
        !flt_dkim_tool_has(h, "sha256", NULL)) {
        printf("%s: h=%s does not allow sha256, which the signatures use\n",
               name, h);
        return 1;
    }
    if (flt_dkim_tag_value(rec, "s", s, sizeof(s)) &&
        !flt_dkim_tool_has(s, "email", "*")) {
        printf("%s: s=%s does not allow email\n", name, s);
        return 1;
    }
    if (!flt_dkim_tag_value(rec, "p", p, sizeof(p))) {
        printf("%s: the record has no p= tag\n", name);
        return 1;
    }
    if (p[0] == '\0') {
        printf("%s: the key is revoked (empty p=)\n", name);
        return 1;
    }
    plen = strlen(p);
    if (plen % 4 != 0 || (der = malloc(plen / 4 * 3 + 1)) == NULL) {
        printf("%s: p= is not valid base64\n", name);
        return 1;
    }
    len = EVP_DecodeBlock(der, (const unsigned char *)p, (int)plen);
    while (plen > 0 && p[plen - 1] == '=' && pad < 2) {
        pad++;
        plen--;
    }
    if (len < 0) {
        printf("%s: p= is not valid base64\n", name);
    } else if (!flt_dkim_key_matches(key, der, (size_t)(len - pad))) {
        printf("%s: the published key does not match the private key %s\n",
               name, keypath);
    } else {
        printf("%s: key OK (%s, %d bits, matches %s)\n", name,
               flt_dkim_key_alg(key), flt_dkim_key_bits(key), keypath);
        if (flt_dkim_tag_value(rec, "t", t, sizeof(t)) &&
            flt_dkim_tool_has(t, "y", NULL))
            printf("%s: note: t=y, testing mode: receivers treat failed "
                   "signatures as if the mail were unsigned\n",
                   name);
        rc = 0;
    }
    free(der);
    return rc;
}

/* flt_dkim_tool_dns - check the published record with libopendkim. */
static int
flt_dkim_tool_dns(const struct flt_dkim_key *key, const char *keypath,
                  const char *domain, const char *selector, const char *name)
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
    if (rc == 0) {
        printf("%s: key OK (%s, %d bits, matches %s)\n", name,
               flt_dkim_key_alg(key), flt_dkim_key_bits(key), keypath);
        return 0;
    }
    printf("%s: %s\n", name,
           err[0] != '\0'
               ? err
               : (rc > 0 ? "the published key does not match the private key"
                         : "the record could not be retrieved"));
    return 1;
}

static int
flt_dkim_testkey(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"txt", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *domain = NULL, *selector = NULL, *keypath = NULL;
    const char *txt = NULL;
    char name[600], *text = NULL, *rec = NULL;
    struct flt_dkim_key *key;
    struct err e;
    size_t n = 0;
    FILE *fp;
    int c, rc = 1;

    optind = 1;
    while ((c = getopt_long(argc, argv, "d:hk:s:", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            domain = optarg;
            break;
        case 's':
            selector = optarg;
            break;
        case 'k':
            keypath = optarg;
            break;
        case 't':
            txt = optarg;
            break;
        case 'h':
            flt_dkim_tool_usage(stdout);
            return 0;
        default:
            flt_dkim_tool_usage(stderr);
            return 1;
        }
    }
    if (optind != argc || domain == NULL || selector == NULL ||
        keypath == NULL) {
        flt_dkim_tool_usage(stderr);
        return 1;
    }
    if (!flt_dkim_name_ok(domain, 0) || !flt_dkim_name_ok(selector, 1)) {
        fprintf(stderr, "relaychain: %s is not a valid %s\n",
                flt_dkim_name_ok(domain, 0) ? selector : domain,
                flt_dkim_name_ok(domain, 0) ? "selector" : "domain");
        return 1;
    }
    snprintf(name, sizeof(name), "%s._domainkey.%s", selector, domain);
    err_clear(&e);
    if ((key = flt_dkim_key_load(keypath, 1, &e)) == NULL) {
        fprintf(stderr, "relaychain: %s\n", e.text);
        return 1;
    }
    if (txt == NULL) {
        rc = flt_dkim_tool_dns(key, keypath, domain, selector, name);
        flt_dkim_key_free(key);
        return rc;
    }
    if ((fp = fopen(txt, "r")) == NULL) {
        fprintf(stderr, "relaychain: %s: %s\n", txt, strerror(errno));
        goto out;
    }
    if ((text = malloc(FLT_DKIM_TOOL_TXT_MAX + 1)) == NULL ||
        (rec = malloc(FLT_DKIM_TOOL_TXT_MAX + 1)) == NULL) {
        fclose(fp);
        fprintf(stderr, "relaychain: out of memory\n");
        goto out;
    }
    n = fread(text, 1, FLT_DKIM_TOOL_TXT_MAX + 1, fp);
    fclose(fp);
    if (n > FLT_DKIM_TOOL_TXT_MAX) {
        fprintf(stderr, "relaychain: %s: larger than %d octets\n", txt,
                FLT_DKIM_TOOL_TXT_MAX);
        goto out;
    }
    text[n] = '\0';
    if (strlen(text) != n ||
        flt_dkim_tool_record(text, rec, FLT_DKIM_TOOL_TXT_MAX + 1) < 0) {
        fprintf(stderr,
                "relaychain: %s: not a TXT record (unbalanced quotes or a "
                "NUL octet)\n",
                txt);
        goto out;
    }
    rc = flt_dkim_tool_check(key, keypath, name, rec);
out:
    free(text);
    free(rec);
    flt_dkim_key_free(key);
    return rc;
}

int
flt_dkim_main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "--help") == 0) {
        flt_dkim_tool_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    if (strcmp(argv[1], "keygen") == 0)
        return flt_dkim_keygen(argc - 1, argv + 1);
    if (strcmp(argv[1], "testkey") == 0)
        return flt_dkim_testkey(argc - 1, argv + 1);
    fprintf(stderr, "relaychain: dkim: unknown command '%s'\n", argv[1]);
    flt_dkim_tool_usage(stderr);
    return 1;
}
