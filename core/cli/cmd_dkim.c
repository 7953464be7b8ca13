/*
 * dkim_cli - "relaychain dkim": make a DKIM key and check a published one
 *
 *     relaychain dkim keygen -d DOMAIN -s SELECTOR [-a rsa|ed25519]
 *                            [-b BITS] [-D DIR] [-u USER]
 *     relaychain dkim testkey -d DOMAIN -s SELECTOR -k KEY [--txt FILE]
 *
 * keygen has the dkim stage make the key (filters/dkim/dkim_record.c)
 * and writes DIR/SELECTOR.private (PKCS#8 PEM, mode 0600, never over an
 * existing file) and DIR/SELECTOR.txt, the DNS TXT record in zone-file
 * form exactly as opendkim-genkey writes it. The key file is read back
 * with the stage's own loader before the record is printed, so a key
 * that keygen makes is one the stage accepts. With -u both files are
 * given to USER and USER's group before anything is written into them:
 * relaychaind reads keys as its user, at start and at every reload, so a
 * key only root can read would stop it.
 *
 * testkey loads KEY as the stage would (mode check included) and has the
 * stage compare its public half with the record in FILE (zone-file form
 * with quoted strings, or the bare record) or, without --txt, with the
 * one published at SELECTOR._domainkey.DOMAIN, which libopendkim fetches
 * and checks; the findings go to standard output.
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

#include "util/buf.h"
#include "util/err.h"
#include "filters/filters.h"
#include "cli/cli.h"

#define DKIMCLI_TXT_MAX 65536 /* octets of a --txt file */
#define DKIMCLI_PATH_MAX 4096

static void
dkimcli_usage(FILE *fp)
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

/* The options of both commands; each accepts those in its optstring. */
struct dkimcli_opts {
    const char *domain, *selector; /* -d, -s */
    const char *alg, *dir, *user;  /* keygen: -a, -D, -u */
    long bits;                     /* keygen: -b */
    int bits_set;
    const char *keypath, *txt; /* testkey: -k, --txt */
};

/* dkimcli_options - argv's options into o; -1 to go on with optind at
 * the first operand, else the exit status (after -h, or an option that
 * is not one). */
static int
dkimcli_options(int argc, char **argv, const char *optstring,
                const struct option *longopts, struct dkimcli_opts *o)
{
    char *end;
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, optstring, longopts, NULL)) != -1) {
        switch (c) {
        case 'a':
            o->alg = optarg;
            break;
        case 'b':
            errno = 0;
            o->bits = strtol(optarg, &end, 10);
            if (errno != 0 || *end != '\0' || end == optarg) {
                fprintf(stderr, "relaychain: -b %s: not a number\n", optarg);
                return 1;
            }
            o->bits_set = 1;
            break;
        case 'd':
            o->domain = optarg;
            break;
        case 'D':
            o->dir = optarg;
            break;
        case 's':
            o->selector = optarg;
            break;
        case 'u':
            o->user = optarg;
            break;
        case 'k':
            o->keypath = optarg;
            break;
        case 't':
            o->txt = optarg;
            break;
        case 'h':
            dkimcli_usage(stdout);
            return 0;
        default:
            dkimcli_usage(stderr);
            return 1;
        }
    }
    return -1;
}

/* dkimcli_names_ok - domain and selector can be d= and s= values; else
 * says which is not, and returns 0. */
static int
dkimcli_names_ok(const char *domain, const char *selector)
{
    if (flt_dkim_name_ok(domain, 0) && flt_dkim_name_ok(selector, 1))
        return 1;
    fprintf(stderr, "relaychain: %s is not a valid %s\n",
            flt_dkim_name_ok(domain, 0) ? selector : domain,
            flt_dkim_name_ok(domain, 0) ? "selector" : "domain");
    return 0;
}

/* dkimcli_write - create path (never over an existing file) with mode,
 * owned by uid:gid unless uid is (uid_t)-1, and write len octets; the
 * file is removed again on failure. */
static int
dkimcli_write(const char *path, mode_t mode, const char *data, size_t len,
              uid_t uid, gid_t gid)
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

/* dkimcli_keygen_files - write the key and its record, and say so. */
static int
dkimcli_keygen_files(const char *pem, size_t pem_len, const char *dir,
                     const char *domain, const char *selector,
                     const char *user, uid_t uid, gid_t gid)
{
    char keypath[DKIMCLI_PATH_MAX], txtpath[DKIMCLI_PATH_MAX];
    struct flt_dkim_key *key = NULL;
    char *zone = NULL;
    struct err e;
    int rc = 1;

    if ((size_t)snprintf(keypath, sizeof(keypath), "%s/%s.private", dir,
                         selector) >= sizeof(keypath) ||
        (size_t)snprintf(txtpath, sizeof(txtpath), "%s/%s.txt", dir,
                         selector) >= sizeof(txtpath)) {
        fprintf(stderr, "relaychain: %s: path too long\n", dir);
        return 1;
    }
    if (dkimcli_write(keypath, 0600, pem, pem_len, uid, gid) < 0)
        return 1;
    err_clear(&e);
    if ((key = flt_dkim_key_load(keypath, 1, &e)) == NULL) {
        fprintf(stderr, "relaychain: %s\n", e.text);
        unlink(keypath);
        goto out;
    }
    if ((zone = flt_dkim_key_zone(key, domain, selector)) == NULL) {
        fprintf(stderr, "relaychain: out of memory\n");
        unlink(keypath);
        goto out;
    }
    if (dkimcli_write(txtpath, 0644, zone, strlen(zone), uid, gid) < 0) {
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
    free(zone);
    flt_dkim_key_free(key);
    return rc;
}

static int
dkimcli_keygen(int argc, char **argv)
{
    struct dkimcli_opts o = {.dir = ".", .alg = "rsa", .bits = 2048};
    uid_t uid = (uid_t)-1;
    gid_t gid = (gid_t)-1;
    int ed25519, rc;
    size_t pem_len = 0;
    struct err e;
    char *pem;

    if ((rc = dkimcli_options(argc, argv, "a:b:d:D:hs:u:", NULL, &o)) >= 0)
        return rc;
    if (optind != argc || o.domain == NULL || o.selector == NULL) {
        dkimcli_usage(stderr);
        return 1;
    }
    if (o.user != NULL) {
        struct passwd *pw = getpwnam(o.user);

        if (pw == NULL) {
            fprintf(stderr, "relaychain: -u %s: no such user\n", o.user);
            return 1;
        }
        uid = pw->pw_uid;
        gid = pw->pw_gid;
    }
    if (!dkimcli_names_ok(o.domain, o.selector))
        return 1;
    if (strcasecmp(o.alg, "rsa") == 0) {
        if (o.bits < 1024 || o.bits > 8192) {
            fprintf(stderr,
                    "relaychain: -b %ld: RSA keys for DKIM have 1024 to 8192 "
                    "bits (RFC 8301; 2048 recommended)\n",
                    o.bits);
            return 1;
        }
        ed25519 = 0;
    } else if (strcasecmp(o.alg, "ed25519") == 0) {
        if (o.bits_set) {
            fprintf(stderr, "relaychain: -b does not apply to Ed25519 keys\n");
            return 1;
        }
        ed25519 = 1;
    } else {
        fprintf(stderr, "relaychain: -a %s: want rsa or ed25519\n", o.alg);
        return 1;
    }
    err_clear(&e);
    if ((pem = flt_dkim_keygen_pem(ed25519, o.bits, &pem_len, &e)) == NULL) {
        fprintf(stderr, "relaychain: %s\n", e.text);
        return 1;
    }
    rc = dkimcli_keygen_files(pem, pem_len, o.dir, o.domain, o.selector,
                              o.user, uid, gid);
    flt_dkim_pem_free(pem, pem_len);
    return rc;
}

/* dkimcli_txt - the record in the file txt, with the findings about key
 * on standard output. */
static int
dkimcli_txt(const struct flt_dkim_key *key, const char *keypath,
            const char *name, const char *txt)
{
    char *text = NULL, *rec = NULL;
    struct buf out;
    struct err e;
    size_t n = 0;
    FILE *fp;
    int rc = 1;

    buf_init(&out, 0);
    if ((fp = fopen(txt, "r")) == NULL) {
        fprintf(stderr, "relaychain: %s: %s\n", txt, strerror(errno));
        goto out;
    }
    if ((text = malloc(DKIMCLI_TXT_MAX + 1)) == NULL ||
        (rec = malloc(DKIMCLI_TXT_MAX + 1)) == NULL) {
        fclose(fp);
        fprintf(stderr, "relaychain: out of memory\n");
        goto out;
    }
    n = fread(text, 1, DKIMCLI_TXT_MAX + 1, fp);
    fclose(fp);
    if (n > DKIMCLI_TXT_MAX) {
        fprintf(stderr, "relaychain: %s: larger than %d octets\n", txt,
                DKIMCLI_TXT_MAX);
        goto out;
    }
    text[n] = '\0';
    if (strlen(text) != n ||
        flt_dkim_txt_record(text, rec, DKIMCLI_TXT_MAX + 1) < 0) {
        fprintf(stderr,
                "relaychain: %s: not a TXT record (unbalanced quotes or a "
                "NUL octet)\n",
                txt);
        goto out;
    }
    err_clear(&e);
    rc = flt_dkim_key_test(key, keypath, name, rec, &out, &e);
    fputs(buf_str(&out), stdout);
    if (rc < 0) {
        fprintf(stderr, "relaychain: %s\n", e.text);
        rc = 1;
    }
out:
    free(text);
    free(rec);
    buf_fini(&out);
    return rc;
}

/* dkimcli_dns - the published record, with the findings about key on
 * standard output. */
static int
dkimcli_dns(const struct flt_dkim_key *key, const char *keypath,
            const char *domain, const char *selector, const char *name)
{
    struct buf out;
    struct err e;
    int rc;

    buf_init(&out, 0);
    err_clear(&e);
    rc = flt_dkim_key_test_dns(key, keypath, domain, selector, name, &out, &e);
    fputs(buf_str(&out), stdout);
    if (rc < 0) {
        fprintf(stderr, "relaychain: %s\n", e.text);
        rc = 1;
    }
    buf_fini(&out);
    return rc;
}

static int
dkimcli_testkey(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"txt", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct dkimcli_opts o = {.bits = 0};
    struct flt_dkim_key *key;
    char name[600];
    struct err e;
    int rc;

    if ((rc = dkimcli_options(argc, argv, "d:hk:s:", longopts, &o)) >= 0)
        return rc;
    if (optind != argc || o.domain == NULL || o.selector == NULL ||
        o.keypath == NULL) {
        dkimcli_usage(stderr);
        return 1;
    }
    if (!dkimcli_names_ok(o.domain, o.selector))
        return 1;
    snprintf(name, sizeof(name), "%s._domainkey.%s", o.selector, o.domain);
    err_clear(&e);
    if ((key = flt_dkim_key_load(o.keypath, 1, &e)) == NULL) {
        fprintf(stderr, "relaychain: %s\n", e.text);
        return 1;
    }
    if (o.txt == NULL)
        rc = dkimcli_dns(key, o.keypath, o.domain, o.selector, name);
    else
        rc = dkimcli_txt(key, o.keypath, name, o.txt);
    flt_dkim_key_free(key);
    return rc;
}

int
dkimcli_main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "--help") == 0) {
        dkimcli_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    if (strcmp(argv[1], "keygen") == 0)
        return dkimcli_keygen(argc - 1, argv + 1);
    if (strcmp(argv[1], "testkey") == 0)
        return dkimcli_testkey(argc - 1, argv + 1);
    fprintf(stderr, "relaychain: dkim: unknown command '%s'\n", argv[1]);
    dkimcli_usage(stderr);
    return 1;
}
