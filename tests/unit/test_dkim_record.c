/*
 * test_dkim_record - a DKIM key and its DNS record, as "relaychain dkim"
 *     uses them (filters/dkim/dkim_record.c)
 *
 * Keys are made with flt_dkim_keygen_pem() into a fresh directory (mode
 * 0600, as keygen writes them) and loaded with the stage's loader. The
 * zone-file record is checked for opendkim-genkey's form, read back with
 * flt_dkim_txt_record() and tested against its own key and against
 * records with one thing wrong each: every finding is one line of text
 * that the command prints as it is.
 */
#include "config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit.h"

#include "util/buf.h"
#include "filters/filters.h"

static char tmp_dir[256];
static char rsa_path[512], ed_path[512];
static struct flt_dkim_key *rsa_key, *ed_key;

#define NAME "s1._domainkey.example.com"

/* make_key - a new key written to tmp_dir/file (mode 0600) and loaded. */
static struct flt_dkim_key *
make_key(int ed25519, long bits, const char *file, char *path, size_t n)
{
    struct flt_dkim_key *k;
    size_t len = 0;
    struct err e;
    char *pem;
    int fd, ok;

    err_clear(&e);
    if ((pem = flt_dkim_keygen_pem(ed25519, bits, &len, &e)) == NULL) {
        print_error("keygen: %s\n", e.text);
        return NULL;
    }
    snprintf(path, n, "%s/%s", tmp_dir, file);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    ok = fd >= 0 && write(fd, pem, len) == (ssize_t)len;
    if (fd >= 0)
        close(fd);
    flt_dkim_pem_free(pem, len);
    if (!ok)
        return NULL;
    if ((k = flt_dkim_key_load(path, 1, &e)) == NULL)
        print_error("load %s: %s\n", path, e.text);
    return k;
}

static int
setup(void **state)
{
    (void)state;
    if (unit_tmpdir(tmp_dir, sizeof(tmp_dir)) == NULL)
        return -1;
    rsa_key = make_key(0, 1024, "rsa.private", rsa_path, sizeof(rsa_path));
    ed_key = make_key(1, 0, "ed.private", ed_path, sizeof(ed_path));
    return rsa_key != NULL && ed_key != NULL ? 0 : -1;
}

static int
teardown(void **state)
{
    (void)state;
    flt_dkim_key_free(rsa_key);
    flt_dkim_key_free(ed_key);
    return unit_rmtree(tmp_dir);
}

/* The p= value of key's record, into out. */
static const char *
p_of(const struct flt_dkim_key *k, char *out, size_t n)
{
    if (!flt_dkim_tag_value(flt_dkim_key_record(k), "p", out, n))
        out[0] = '\0';
    return out;
}

static void
test_txt_record(void **state)
{
    static const struct {
        const char *name, *text, *want; /* want NULL: refused */
        size_t n;
    } cases[] = {
        {"bare", "v=DKIM1; p=AB\n", "v=DKIM1; p=AB", 64},
        {"bare, line ends", "v=DKIM1;\r\n p=AB\r\n", "v=DKIM1; p=AB", 64},
        {"zone strings",
         "s1._domainkey IN TXT ( \"v=DKIM1; \"\n\t  \"p=AB\"\n\t  \"CD\" )",
         "v=DKIM1; p=ABCD", 64},
        {"comment outside the strings",
         "x IN TXT ( \"k=rsa; \" ; a \"comment\"\n \"p=AB\" )  ; end\n",
         "k=rsa; p=AB", 64},
        {"decimal escape", "\"p=\\065\\066\"", "p=AB", 64},
        {"escaped quote", "\"a\\\"b\"", "a\"b", 64},
        {"unbalanced", "\"v=DKIM1; p=AB", NULL, 64},
        {"too long", "\"v=DKIM1; p=ABCDEFGH\"", NULL, 8},
    };
    char out[64];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = flt_dkim_txt_record(cases[i].text, out, cases[i].n);

        unit_int_eq(cases[i].name, rc, cases[i].want != NULL ? 0 : -1);
        if (cases[i].want != NULL)
            unit_str_eq(cases[i].name, out, cases[i].want);
    }
}

/* The zone text of key: genkey's form, strings of at most 255 octets,
 * and the record in it matches the key. */
static void
check_zone(const char *name, const struct flt_dkim_key *k, const char *path,
           const char *type)
{
    char head[128], tail[128], rec[4096], want[1024];
    const char *s, *q;
    char *zone = flt_dkim_key_zone(k, "example.com", "s1");
    struct buf out;
    struct err e;

    if (zone == NULL)
        unit_fail(name, "got no zone text");
    snprintf(head, sizeof(head),
             "s1._domainkey\tIN\tTXT\t( \"v=DKIM1; h=sha256; k=%s; \"\n"
             "\t  \"p=",
             type);
    snprintf(tail, sizeof(tail),
             "\" )  ; ----- DKIM key s1 for example.com\n");
    if (strncmp(zone, head, strlen(head)) != 0)
        unit_fail(name, "got \"%s\", want it to start \"%s\"", zone, head);
    if (strlen(zone) < strlen(tail) ||
        strcmp(zone + strlen(zone) - strlen(tail), tail) != 0)
        unit_fail(name, "got \"%s\", want it to end \"%s\"", zone, tail);
    for (s = strchr(zone, '"'); s != NULL; s = strchr(q + 1, '"')) {
        q = strchr(s + 1, '"');
        if (q == NULL || q - s - 1 > 255)
            unit_fail(name, "a string of %d octets in \"%s\"",
                      q == NULL ? -1 : (int)(q - s - 1), zone);
    }
    unit_int_eq(name, flt_dkim_txt_record(zone, rec, sizeof(rec)), 0);
    buf_init(&out, 0);
    err_clear(&e);
    unit_int_eq(name, flt_dkim_key_test(k, path, NAME, rec, &out, &e), 0);
    snprintf(want, sizeof(want), NAME ": key OK (%s, %d bits, matches %s)\n",
             flt_dkim_key_alg(k), flt_dkim_key_bits(k), path);
    unit_str_eq(name, buf_str(&out), want);
    buf_fini(&out);
    free(zone);
}

static void
test_zone(void **state)
{
    (void)state;
    unit_str_eq("rsa type", flt_dkim_key_type(rsa_key), "rsa");
    unit_int_eq("rsa bits", flt_dkim_key_bits(rsa_key), 1024);
    check_zone("rsa", rsa_key, rsa_path, "rsa");
    unit_str_eq("ed25519 type", flt_dkim_key_type(ed_key), "ed25519");
    check_zone("ed25519", ed_key, ed_path, "ed25519");
}

static void
test_key_test(void **state)
{
    static const struct {
        const char *name;
        const char *rec; /* "P" is the RSA key's p=, "E" the Ed25519's */
        int want_rc;
        const char *want; /* the findings, "PATH" for the key file */
    } cases[] = {
        {"match", "v=DKIM1; k=rsa; p=P", 0,
         NAME ": key OK (rsa-sha256, 1024 bits, matches PATH)\n"},
        {"k= defaults to rsa", "p=P", 0,
         NAME ": key OK (rsa-sha256, 1024 bits, matches PATH)\n"},
        {"testing mode", "v=DKIM1; t=y:s; p=P", 0,
         NAME ": key OK (rsa-sha256, 1024 bits, matches PATH)\n" NAME
              ": note: t=y, testing mode: receivers treat failed "
              "signatures as if the mail were unsigned\n"},
        {"s=*", "v=DKIM1; s=*; h=sha1:sha256; p=P", 0,
         NAME ": key OK (rsa-sha256, 1024 bits, matches PATH)\n"},
        {"v=DKIM2", "v=DKIM2; p=P", 1,
         NAME ": v=DKIM2: not a DKIM1 key record\n"},
        {"other algorithm", "v=DKIM1; k=ed25519; p=E", 1,
         NAME ": the record has k=ed25519, but PATH is an rsa key\n"},
        {"h= without sha256", "v=DKIM1; h=sha1; p=P", 1,
         NAME ": h=sha1 does not allow sha256, which the signatures use\n"},
        {"s= without email", "v=DKIM1; s=tlsrpt; p=P", 1,
         NAME ": s=tlsrpt does not allow email\n"},
        {"no p=", "v=DKIM1; k=rsa", 1, NAME ": the record has no p= tag\n"},
        {"revoked", "v=DKIM1; p=", 1,
         NAME ": the key is revoked (empty p=)\n"},
        {"not base64 (length)", "v=DKIM1; p=AAA", 1,
         NAME ": p= is not valid base64\n"},
        {"not base64 (octets)", "v=DKIM1; p=!!!!", 1,
         NAME ": p= is not valid base64\n"},
        {"another key", "v=DKIM1; k=rsa; p=E", 1,
         NAME ": the published key does not match the private key PATH\n"},
    };
    char p_rsa[1024], p_ed[128], rec[4096], want[4096];
    struct buf out;
    struct err e;
    size_t i;

    (void)state;
    p_of(rsa_key, p_rsa, sizeof(p_rsa));
    p_of(ed_key, p_ed, sizeof(p_ed));
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *s;
        size_t o = 0;
        int rc;

        for (s = cases[i].rec; *s != '\0' && o + 1 < sizeof(rec); s++) {
            const char *put = *s == 'P' ? p_rsa : *s == 'E' ? p_ed : NULL;

            if (put == NULL)
                rec[o++] = *s;
            else
                o += (size_t)snprintf(rec + o, sizeof(rec) - o, "%s", put);
        }
        rec[o] = '\0';
        o = 0;
        for (s = cases[i].want; *s != '\0' && o + 1 < sizeof(want); s++) {
            if (strncmp(s, "PATH", 4) == 0) {
                o += (size_t)snprintf(want + o, sizeof(want) - o, "%s",
                                      rsa_path);
                s += 3;
            } else {
                want[o++] = *s;
            }
        }
        want[o] = '\0';
        buf_init(&out, 0);
        err_clear(&e);
        rc = flt_dkim_key_test(rsa_key, rsa_path, NAME, rec, &out, &e);
        unit_int_eq(cases[i].name, rc, cases[i].want_rc);
        unit_str_eq(cases[i].name, buf_str(&out), want);
        buf_fini(&out);
    }
}

/* A finding that does not fit the caller's buffer is an error, not a
 * shorter line. */
static void
test_key_test_limit(void **state)
{
    struct buf out;
    struct err e;

    (void)state;
    buf_init(&out, 8);
    err_clear(&e);
    unit_int_eq(
        "limit",
        flt_dkim_key_test(rsa_key, rsa_path, NAME, "v=DKIM2", &out, &e), -1);
    unit_int_eq("limit code", e.code, ERR_LIMIT);
    buf_fini(&out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_txt_record),
        cmocka_unit_test(test_zone),
        cmocka_unit_test(test_key_test),
        cmocka_unit_test(test_key_test_limit),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
