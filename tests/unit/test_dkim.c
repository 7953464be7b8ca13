/*
 * test_dkim - the dkim stage: tables, keys, signing, the 7-bit rewrite
 *     and the self-check
 *
 * Keys are made here with OpenSSL in a fresh directory (RSA 2048 as
 * PKCS#8 and as PKCS#1, Ed25519, and broken ones for the error cases).
 * Stages are loaded as the chain loads them and run over struct msgs;
 * what the next hop would get is checked through msg_write() and the
 * journal. The self-check inside the stage verifies the final bytes
 * (dkim_sig.c, or libopendkim with self_check = libopendkim); the
 * verifiers that share no code with the stage (dkimpy, Mail::DKIM) run in
 * tests/integration/dkim_corpus.sh.
 *
 * The self-check test lends the stage the fault hook of
 * tests/unit/faultregistry.c, so that RELAYCHAIN_DKIM_FAULT can corrupt
 * what the signer sees and the self-check can be shown to catch it.
 */
#include "config.h"

#include <pthread.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "unit.h"
#include "unit_stage.h"

#include "filters/filters.h"
#include "util/log.h"
#include "msg/match.h"
#include "msg/mime.h"
#include "msg/msg.h"

static char tmp_dir[256];
static char rsa_path[512], rsa1_path[512], ed_path[512], weak_path[512];
static char ec_path[512], open_path[512], group_path[512], enc_path[512];
static char fifo_path[512];
static char junk_path[512];

static const struct msg_limits test_limits = {
    10 * 1024 * 1024, 1000, 998, 20, 100,
};

/* ------------------------------------------------------------- set-up */

static int
write_key(const char *name, EVP_PKEY *k, int traditional, const char *pass,
          mode_t mode, char *out, size_t n)
{
    BIO *bio;
    int ok;

    snprintf(out, n, "%s/%s", tmp_dir, name);
    if ((bio = BIO_new_file(out, "w")) == NULL)
        return -1;
    if (pass != NULL)
        ok = PEM_write_bio_PrivateKey(bio, k, EVP_aes_128_cbc(), NULL, 0, NULL,
                                      (void *)pass);
    else if (traditional)
        ok = PEM_write_bio_PrivateKey_traditional(bio, k, NULL, NULL, 0, NULL,
                                                  NULL);
    else
        ok = PEM_write_bio_PrivateKey(bio, k, NULL, NULL, 0, NULL, NULL);
    BIO_free(bio);
    return ok == 1 && chmod(out, mode) == 0 ? 0 : -1;
}

static int
setup(void **state)
{
    EVP_PKEY *rsa, *ed, *weak, *ec;
    char p[512];
    int rc = 0;

    (void)state;
    log_open("test_dkim", LOG_MAIL, LOG_SINK_NONE);
    mime_init();
    if (unit_tmpdir(tmp_dir, sizeof(tmp_dir)) == NULL)
        return -1;
    rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    weak = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)768);
    ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (rsa == NULL || ed == NULL || weak == NULL || ec == NULL)
        return -1;
    rc |= write_key("rsa.pem", rsa, 0, NULL, 0600, rsa_path, sizeof(rsa_path));
    rc |= write_key("rsa1.pem", rsa, 1, NULL, 0400, rsa1_path,
                    sizeof(rsa1_path));
    rc |= write_key("ed.pem", ed, 0, NULL, 0600, ed_path, sizeof(ed_path));
    rc |= write_key("weak.pem", weak, 0, NULL, 0600, weak_path,
                    sizeof(weak_path));
    rc |= write_key("ec.pem", ec, 0, NULL, 0600, ec_path, sizeof(ec_path));
    rc |= write_key("open.pem", rsa, 0, NULL, 0644, open_path,
                    sizeof(open_path));
    rc |= write_key("group.pem", rsa, 0, NULL, 0640, group_path,
                    sizeof(group_path));
    rc |= write_key("enc.pem", rsa, 0, "secret", 0600, enc_path,
                    sizeof(enc_path));
    if (unit_write(tmp_dir, "junk.pem", "hello\n", junk_path,
                   sizeof(junk_path)) == NULL ||
        chmod(junk_path, 0600) < 0)
        rc = -1;
    snprintf(fifo_path, sizeof(fifo_path), "%s/fifo.pem", tmp_dir);
    if (mkfifo(fifo_path, 0600) < 0)
        rc = -1;
    /* Key and signing tables for the stages below. */
    if (unit_write(tmp_dir, "keys",
                   "# name domain:selector:key\n"
                   "rsa   %:rsa2026:rsa.pem\n"
                   "ed    %:ed2026:ed.pem\n"
                   "fixed example.org:fixed:rsa1.pem\n"
                   "example.net example.net:bydomain:rsa.pem\n",
                   p, sizeof(p)) == NULL ||
        unit_write(tmp_dir, "signing",
                   "*@dup.example  rsa\n"
                   "*@dup.example  rsa\n"
                   "*@example.com  rsa\n"
                   "*@example.com  ed\n"
                   "*@example.org  fixed  news@%\n"
                   "*@example.net  %\n"
                   "*@*.example.com fixed\n",
                   p, sizeof(p)) == NULL)
        rc = -1;
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ed);
    EVP_PKEY_free(weak);
    EVP_PKEY_free(ec);
    return rc;
}

static int
teardown(void **state)
{
    static const char *const names[] = {
        "rsa.pem",  "rsa1.pem",  "ed.pem",  "weak.pem", "ec.pem",
        "open.pem", "group.pem", "enc.pem", "junk.pem", "keys",
        "signing",  "kt",        "st"};
    char p[512];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", tmp_dir, names[i]);
        unlink(p);
    }
    rmdir(tmp_dir);
    return 0;
}

/* stage_load - a dkim stage from configuration text (relative paths are
 * taken from tmp_dir), as the chain builds it. */
static int
stage_load(struct stage *st, const char *conf, struct err *e)
{
    char name[512];

    snprintf(name, sizeof(name), "%s/90-dkim.conf", tmp_dir);
    return unit_stage_load(st, &flt_dkim_type, "dkim", name, conf, e);
}

static void
stage_unload(struct stage *st)
{
    unit_stage_unload(st);
}

static struct msg *
msg_build(const char *sender, const char *text)
{
    struct msg *m;
    struct err e;

    m = msg_new(&test_limits, MSG_FE_SMTP, &e);
    assert_non_null(m);
    assert_int_equal(
        msg_env_set(m, "QID1", "192.0.2.1", NULL, "client", 0, NULL, &e), 0);
    /* A client in mynetworks: ours to sign (test_whose_mail varies it). */
    assert_int_equal(msg_env_origin(m, 1, NULL, &e), 0);
    assert_int_equal(msg_env_sender(m, sender, NULL, &e), 0);
    assert_int_equal(msg_env_rcpt(m, "bob@example.net", NULL, &e), 0);
    if (msg_parse(m, text, strlen(text), &e) < 0)
        fail_msg("msg_parse: %s", e.text);
    return m;
}

static void
msg_text(const struct msg *m, struct buf *out)
{
    struct err e;

    buf_reset(out);
    assert_int_equal(msg_write(m, out, &e), 0);
}

/* tag_of - the value of tag in the idx-th DKIM-Signature, white space
 * removed, into out; "" when absent. */
static const char *
tag_of(const struct msg *m, size_t idx, const char *tag, char *out, size_t n)
{
    const char *p = msg_header_get(m, "DKIM-Signature", idx);
    size_t o, i;
    char name[16];

    out[0] = '\0';
    while (p != NULL && *p != '\0') {
        for (o = 0; *p != '\0' && *p != '=' && *p != ';'; p++)
            if (!strchr(" \t\r\n", *p) && o + 1 < sizeof(name))
                name[o++] = *p;
        name[o] = '\0';
        if (*p == '=' && strcmp(name, tag) == 0) {
            for (i = 0, p++; *p != '\0' && *p != ';'; p++)
                if (!strchr(" \t\r\n", *p) && i + 1 < n)
                    out[i++] = *p;
            out[i] = '\0';
            return out;
        }
        while (*p != '\0' && *p != ';')
            p++;
        if (*p == ';')
            p++;
    }
    return out;
}

/* ------------------------------------------------------- table errors */

struct table_case {
    const char *name;
    const char *kt;
    const char *st;
    int refile;
    const char *want_err; /* NULL: loads */
};

static const struct table_case table_cases[] = {
    {"good flat tables", "k1 example.com:s1:/k\n", "example.com k1\n", 0,
     NULL},
    {"comments and blank lines", "# c\n\n  k1 example.com:s1:/k # x\n",
     "\n# c\n*@example.com k1\n", 1, NULL},
    {"key line without selector", "k1 example.com:/k\n", "a k1\n", 0,
     "kt:1: key k1: value \"example.com:/k\" is not domain:selector:keyfile"},
    {"key line with one field", "\n\nk1\n", "a k1\n", 0,
     "kt:3: want \"name domain:selector:keyfile\""},
    {"key line with extra field", "k1 a.example:s:/k extra\n", "a k1\n", 0,
     "kt:1: want \"name domain:selector:keyfile\", got more fields"},
    {"bad domain", "k1 exa_mple.com:s1:/k\n", "a k1\n", 0,
     "kt:1: key k1: \"exa_mple.com\" is not a domain name"},
    {"bad selector", "k1 example.com:s;1:/k\n", "a k1\n", 0,
     "kt:1: key k1: \"s;1\" is not a valid selector"},
    {"empty key path", "k1 example.com:s1:\n", "a k1\n", 0,
     "kt:1: key k1: no key file"},
    {"duplicate key name", "k1 a.example:s:/k\nK1 b.example:s:/k\n", "a k1\n",
     0, "kt:2: key name K1 is already used at line 1"},
    {"unknown key name", "k1 a.example:s:/k\n", "# x\nexample.com k2\n", 0,
     "st:2: key name k2 is not in the key table kt"},
    {"signing line with one field", "k1 a.example:s:/k\n", "example.com\n", 0,
     "st:1: want \"pattern keyname [signer]\""},
    {"signing line with four fields", "k1 a.example:s:/k\n",
     "example.com k1 a@example.com x\n", 0,
     "st:1: want \"pattern keyname [signer]\""},
    {"bad signer", "k1 a.example:s:/k\n", "example.com k1 nobody\n", 0,
     "st:1: signer \"nobody\" is not an address for i="},
    {"control character", "k1 a.example:s:/k\n", "exa\001mple.com k1\n", 0,
     "st:1: control character in line"},
    {"too many signatures for one pattern", "k1 a.example:s:/k\n",
     "* k1\n* k1\n* k1\n* k1\n* k1\n* k1\n* k1\n* k1\n* k1\n", 1,
     "st:1: pattern * has 9 lines; at most 8 signatures per message"},
};

static void
test_table_errors(void **state)
{
    const struct table_case *c;
    struct flt_dkim_tables *t;
    struct err e;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(table_cases) / sizeof(table_cases[0]); i++) {
        c = &table_cases[i];
        err_clear(&e);
        t = flt_dkim_tables_parse("kt", c->kt, strlen(c->kt), "st", c->refile,
                                  c->st, strlen(c->st), &e);
        if (c->want_err == NULL) {
            if (t == NULL)
                unit_fail(c->name, "got error \"%s\", want it to load",
                          e.text);
        } else {
            if (t != NULL)
                unit_fail(c->name, "loaded, want error \"%s\"", c->want_err);
            unit_has(c->name, e.text, c->want_err);
        }
        flt_dkim_tables_free(t);
    }
}

/* ------------------------------------------------------------ lookups */

struct lookup_case {
    const char *name;
    int refile;
    const char *addr;
    const char *want; /* "name:line name:line", "" for none */
};

static const char lookup_flat[] = "alice@mail.example.com  user\n"    /* 1 */
                                  "mail.example.com        host\n"    /* 2 */
                                  "bob@.example.com        userdom\n" /* 3 */
                                  ".example.com            dom\n"     /* 4 */
                                  "carol@*                 anyhost\n" /* 5 */
                                  "*                       star\n"    /* 6 */
                                  "mail.example.com        host2\n";  /* 7 */

static const char lookup_re[] = "*@sub.example.com  sub\n"   /* 1 */
                                "*@*example.com     wild\n"  /* 2 */
                                "*@sub.example.com  sub2\n"  /* 3 */
                                "A*@example.org     upper\n" /* 4 */
                                "*@example.org      org\n";  /* 5 */

static const struct lookup_case lookup_cases[] = {
    {"flat: user@host first", 0, "alice@mail.example.com", "user:1"},
    {"flat: host, every line of it", 0, "dave@mail.example.com",
     "host:2 host2:7"},
    {"flat: user@.parent before .parent", 0, "bob@x.y.example.com",
     "userdom:3"},
    {"flat: .parent", 0, "eve@deep.x.example.com", "dom:4"},
    {"flat: user@*", 0, "carol@example.org", "anyhost:5"},
    {"flat: *", 0, "zed@example.org", "star:6"},
    {"flat: case does not matter", 0, "ALICE@Mail.Example.COM", "user:1"},
    {"refile: first pattern, all its lines", 1, "x@sub.example.com",
     "sub:1 sub2:3"},
    {"refile: wildcard inside the domain", 1, "x@myexample.com", "wild:2"},
    {"refile: letters without regard to case", 1, "andy@EXAMPLE.org",
     "upper:4"},
    {"refile: later line", 1, "bob@example.org", "org:5"},
    {"refile: no match", 1, "bob@example.net", ""},
};

static void
test_lookup(void **state)
{
    const struct lookup_case *c;
    const char *names[8];
    unsigned lines[8];
    struct flt_dkim_tables *t;
    char kt[1024], got[256];
    struct err e;
    size_t i, n, k, o;

    (void)state;
    snprintf(kt, sizeof(kt),
             "user a.example:s:/k\nhost a.example:s:/k\n"
             "host2 a.example:s:/k\nuserdom a.example:s:/k\n"
             "dom a.example:s:/k\nanyhost a.example:s:/k\n"
             "star a.example:s:/k\nsub a.example:s:/k\n"
             "sub2 a.example:s:/k\nwild a.example:s:/k\n"
             "upper a.example:s:/k\norg a.example:s:/k\n");
    for (i = 0; i < sizeof(lookup_cases) / sizeof(lookup_cases[0]); i++) {
        c = &lookup_cases[i];
        const char *st = c->refile ? lookup_re : lookup_flat;

        t = flt_dkim_tables_parse("kt", kt, strlen(kt), "st", c->refile, st,
                                  strlen(st), &e);
        if (t == NULL)
            fail_msg("%s: %s", c->name, e.text);
        n = flt_dkim_tables_lookup(t, c->addr, names, lines, 8);
        got[0] = '\0';
        for (k = 0, o = 0; k < n; k++)
            o += (size_t)snprintf(got + o, sizeof(got) - o, "%s%s:%u",
                                  k ? " " : "", names[k], lines[k]);
        unit_str_eq(c->name, got, c->want);
        flt_dkim_tables_free(t);
    }
}

/* --------------------------------------------------------------- keys */

struct key_case {
    const char *name;
    const char *path; /* filled in at run time */
    int check_mode;
    const char *want; /* algorithm, or an error substring */
};

static void
test_keys(void **state)
{
    struct key_case cases[] = {
        {"RSA PKCS#8", rsa_path, 1, "rsa-sha256"},
        {"RSA PKCS#1, mode 0400", rsa1_path, 1, "rsa-sha256"},
        {"Ed25519", ed_path, 1, "ed25519-sha256"},
        {"readable by all", open_path, 1,
         "open.pem: key file mode 0644 lets its group and all other users "
         "read it; a private key must be readable by its owner only: chmod "
         "600"},
        {"readable by the group", group_path, 1,
         "key file mode 0640 lets its group read it"},
        {"mode not checked", open_path, 0, "rsa-sha256"},
        {"encrypted", enc_path, 1, "the key is encrypted with a passphrase"},
        {"too short", weak_path, 1,
         "RSA key of 768 bits is too short for DKIM"},
        {"EC key", ec_path, 1,
         "key type EC cannot sign DKIM; use RSA or Ed25519"},
        {"not a key", junk_path, 1, "not a PEM private key"},
        /* refused at once, not waited on for a writer */
        {"FIFO", fifo_path, 1, "fifo.pem: the key is not a regular file"},
        {"missing", "/nonexistent/key.pem", 1,
         "/nonexistent/key.pem: cannot open the key file: No such file"},
    };
    struct flt_dkim_key *k;
    struct err e;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err_clear(&e);
        k = flt_dkim_key_load(cases[i].path, cases[i].check_mode, &e);
        if (strstr(cases[i].want, "sha256") != NULL &&
            strchr(cases[i].want, ' ') == NULL) {
            if (k == NULL)
                unit_fail(cases[i].name, "got error \"%s\"", e.text);
            unit_str_eq(cases[i].name, flt_dkim_key_alg(k), cases[i].want);
            unit_has(cases[i].name, flt_dkim_key_record(k), "v=DKIM1; k=");
        } else {
            if (k != NULL)
                unit_fail(cases[i].name, "loaded, want \"%s\"", cases[i].want);
            unit_has(cases[i].name, e.text, cases[i].want);
        }
        flt_dkim_key_free(k);
    }
}

/* ----------------------------------------------------- stage errors */

struct conf_case {
    const char *name;
    const char *conf;
    const char *want_err;
};

static void
test_conf_errors(void **state)
{
    static const struct conf_case cases[] = {
        {"nothing to sign with", "signing_domain = from\n",
         "90-dkim.conf: stage dkim needs key_table and signing_table, or "
         "domain, selector and key_file"},
        {"both forms",
         "key_table = keys\nsigning_table = signing\n"
         "domain = example.com\n",
         "90-dkim.conf:3: domain: give either key_table and signing_table "
         "or domain, selector and key_file, not both"},
        {"table without the other", "key_table = keys\n",
         "key_table and signing_table go together"},
        {"short form without key", "domain = example.com\nselector = s\n",
         "stage dkim needs key_table and signing_table"},
        {"bad domain",
         "domain = example..com\nselector = s\n"
         "key_file = rsa.pem\n",
         "90-dkim.conf:1: domain: \"example..com\" is not a domain name"},
        {"world-readable key",
         "domain = example.com\nselector = s\n"
         "key_file = open.pem\n",
         "90-dkim.conf:3: key_file: "},
        {"unsupported dataset",
         "key_table = keys\nsigning_table = "
         "db:/etc/x.db\n",
         "90-dkim.conf:2: signing_table: \"db:/etc/x.db\": only flat files "
         "and refile: patterns are supported"},
        {"From not signed",
         "domain = example.com\nselector = s\n"
         "key_file = rsa.pem\nsign_headers = To, "
         "Subject\n",
         "90-dkim.conf:4: sign_headers: From must be signed"},
        {"oversigned but not signed",
         "domain = example.com\nselector = s\n"
         "key_file = rsa.pem\n"
         "oversign_headers = From, X-Foo\n",
         "oversign_headers: X-Foo is not in sign_headers"},
        {"bad header name",
         "domain = example.com\nselector = s\n"
         "key_file = rsa.pem\n"
         "sign_headers = From, X.Y\n",
         "sign_headers: \"X.Y\" is not a header field name"},
        {"ttl too short",
         "domain = example.com\nselector = s\n"
         "key_file = rsa.pem\nsignature_ttl = 10ms\n",
         "signature_ttl: a lifetime under one second"},
        {"key table line error names the key table",
         "key_table = kt\nsigning_table = signing\n", "kt:2:"},
        {"key error names the key table line",
         "key_table = keys\nsigning_table = st\n", "keys:3: key ed: "},
        {"bad internal_hosts",
         "domain = example.com\nselector = s\nkey_file = rsa.pem\n"
         "internal_hosts = 10.0.0.0/8, 300.1.2.3\n",
         "90-dkim.conf:4: internal_hosts: "},
        {"internal_hosts with sign_mail = all",
         "domain = example.com\nselector = s\nkey_file = rsa.pem\n"
         "sign_mail = all\ninternal_hosts = 10.0.0.0/8\n",
         "90-dkim.conf:5: internal_hosts: has no effect with sign_mail = all"},
    };
    char p[512];
    struct stage st;
    struct err e;
    size_t i;
    int rc;

    (void)state;
    assert_non_null(
        unit_write(tmp_dir, "kt", "a a.example:s:rsa.pem\nb\n", p, sizeof(p)));
    assert_non_null(unit_write(tmp_dir, "st", "* rsa\n", p, sizeof(p)));
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err_clear(&e);
        /* The last case: a key the others may read, named in the key
         * table only (the signing table does not use it). */
        if (strstr(cases[i].name, "key error") != NULL) {
            snprintf(p, sizeof(p), "%s/ed.pem", tmp_dir);
            chmod(p, 0604);
        }
        rc = stage_load(&st, cases[i].conf, &e);
        if (strstr(cases[i].name, "key error") != NULL) {
            chmod(p, 0600);
            unit_has(cases[i].name, e.text, "mode 0604");
        }
        if (rc == 0) {
            stage_unload(&st);
            unit_fail(cases[i].name, "loaded, want \"%s\"", cases[i].want_err);
        }
        unit_has(cases[i].name, e.text, cases[i].want_err);
    }
}

/* ------------------------------------------------------------ signing */

#define CONF_TABLES "key_table = keys\nsigning_table = refile:signing\n"
#define CONF_SHORT                                                            \
    "domain = example.com\nselector = mail2026\nkey_file = rsa.pem\n"

/* bh= of the body "caf\xc3\xa9\n" (c=simple/simple, the default). */
#define BH_CAFE "fyrb23eJAgnxOjIuddiqE7kWlyLnAqLjZyUBJdM+iDI="
#define PLAIN                                                                 \
    "From: Alice <alice@example.com>\n"                                       \
    "To: bob@example.net\n"                                                   \
    "Subject: hello\n"                                                        \
    "Date: Thu, 26 Nov 2026 10:00:00 +0000\n"                                 \
    "Message-ID: <1@example.com>\n"                                           \
    "\n"                                                                      \
    "Hello Bob.\n"

struct sign_case {
    const char *name;
    const char *conf;
    const char *sender;
    const char *message;
    enum verdict_kind want_kind;
    const char *want_note;   /* substring */
    int want_sigs;           /* DKIM-Signature fields added */
    const char *want_tags;   /* "d=.. s=.. a=.." of the first, substring */
    const char *want_h;      /* h= of the first, or NULL */
    const char *want_in_msg; /* substring of the result, or NULL */
};

static const struct sign_case sign_cases[] = {
    {"short form, RSA", CONF_SHORT, "alice@example.com", PLAIN,
     VERDICT_CONTINUE, "signed, d=example.com, s=mail2026, a=rsa-sha256", 1,
     "d=example.com s=mail2026 a=rsa-sha256 c=relaxed/relaxed",
     "From:To:Subject:Date:Message-ID:From:To:Cc:Subject:Date:Reply-To:"
     "Content-Type:MIME-Version",
     NULL},
    {"RSA and Ed25519 from the tables, % is the From domain", CONF_TABLES,
     "bounce@lists.example.org", PLAIN, VERDICT_CONTINUE,
     "signed, d=example.com, s=rsa2026, a=rsa-sha256; d=example.com, "
     "s=ed2026, a=ed25519-sha256",
     2, "d=example.com s=rsa2026 a=rsa-sha256", NULL, NULL},
    {"signer gives i=", CONF_TABLES, "x@example.org",
     "From: news@example.org\nSubject: x\n\nbody\n", VERDICT_CONTINUE,
     "d=example.org, s=fixed", 1,
     "d=example.org s=fixed a=rsa-sha256 c=relaxed/relaxed i=news@example.org",
     NULL, NULL},
    {"a key named twice signs once", CONF_TABLES, "x@dup.example",
     "From: x@dup.example\n\nbody\n", VERDICT_CONTINUE,
     "signed, d=dup.example, s=rsa2026, a=rsa-sha256", 1, "d=dup.example",
     NULL, NULL},
    {"% as key name picks the domain's key", CONF_TABLES, "x@example.net",
     "From: x@example.net\n\nbody\n", VERDICT_CONTINUE,
     "d=example.net, s=bydomain", 1, "d=example.net s=bydomain", NULL, NULL},
    {"simple/simple, x=",
     CONF_SHORT "canonicalization = simple/simple\n"
                "signature_ttl = 7d\n",
     "alice@example.com", PLAIN, VERDICT_CONTINUE, "signed", 1,
     "c=simple/simple", NULL, NULL},
    {"envelope domain", CONF_SHORT "signing_domain = envelope\n",
     "bounce@example.com", "From: someone@example.org\n\nbody\n",
     VERDICT_CONTINUE, "signed, d=example.com", 1, "d=example.com", NULL,
     NULL},
    {"Sender header", CONF_SHORT "signing_domain = sender\n", "x@example.org",
     "From: a@example.org\nSender: list@example.com\n\nbody\n",
     VERDICT_CONTINUE, "signed, d=example.com", 1, "d=example.com", NULL,
     NULL},
    {"display name with RFC 2047 words", CONF_SHORT, "x@example.org",
     "From: =?UTF-8?B?SsO8cmdlbg==?= <j@EXAMPLE.com>\n\nbody\n",
     VERDICT_CONTINUE, "signed, d=example.com", 1, "d=example.com", NULL,
     NULL},
    {"no key for the domain", CONF_SHORT, "alice@example.com",
     "From: a@example.org\n\nbody\n", VERDICT_CONTINUE,
     "not signed (no key for example.org)", 0, NULL, NULL, NULL},
    {"no From header", CONF_SHORT, "alice@example.com", "Subject: x\n\nbody\n",
     VERDICT_CONTINUE, "not signed (no From header)", 0, NULL, NULL, NULL},
    {"two From headers", CONF_SHORT, "alice@example.com",
     "From: a@example.com\nFrom: b@example.com\n\nbody\n", VERDICT_CONTINUE,
     "not signed (more than one From header)", 0, NULL, NULL, NULL},
    {"null envelope sender", CONF_SHORT "signing_domain = envelope\n", "",
     PLAIN, VERDICT_CONTINUE, "not signed (null envelope sender)", 0, NULL,
     NULL, NULL},
    {"already signed by us", CONF_SHORT, "alice@example.com",
     "DKIM-Signature: v=1; a=rsa-sha256; d=Example.com;\n"
     "\ts = mail2026; b=abc\n" PLAIN,
     VERDICT_CONTINUE,
     "not signed (already signed, d=example.com, "
     "s=mail2026)",
     0, NULL, NULL, NULL},
    {"another selector's signature does not count", CONF_SHORT,
     "alice@example.com",
     "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=old; b=abc\n" PLAIN,
     VERDICT_CONTINUE, "signed, d=example.com, s=mail2026", 1, "s=mail2026",
     NULL, NULL},
    {"one of two keys already signed", CONF_TABLES, "alice@example.com",
     "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=rsa2026; "
     "b=a\n" PLAIN,
     VERDICT_CONTINUE, "signed, d=example.com, s=ed2026", 1, "s=ed2026", NULL,
     NULL},
    {"8-bit single part: quoted-printable", CONF_SHORT, "alice@example.com",
     "From: alice@example.com\nMIME-Version: 1.0\n"
     "Content-Type: text/plain; charset=utf-8\n"
     "Content-Transfer-Encoding: 8bit\n\nGr\xc3\xbc\xc3\x9f Gott  \n",
     VERDICT_CONTINUE, "7bit: 1 encoded, 0 relabelled", 1, NULL, NULL,
     "Content-Transfer-Encoding: quoted-printable\n\nGr=C3=BC=C3=9F "
     "Gott =20\n"},
    {"8-bit without any MIME header", CONF_SHORT, "alice@example.com",
     "From: alice@example.com\n\ncaf\xe9\n", VERDICT_CONTINUE, "1 encoded", 1,
     NULL, NULL,
     "Content-Transfer-Encoding: quoted-printable\nMIME-Version: 1.0\n\n"
     "caf=E9\n"},
    {"8bit label on clean text becomes 7bit", CONF_SHORT, "alice@example.com",
     "From: alice@example.com\nContent-Transfer-Encoding: 8BIT\n\nplain\n",
     VERDICT_CONTINUE, "0 encoded, 1 relabelled", 1, NULL, NULL,
     "Content-Transfer-Encoding: 7bit\n\nplain\n"},
    {"multipart: text QP, binary data base64, container relabelled",
     CONF_SHORT, "alice@example.com",
     "From: alice@example.com\nMIME-Version: 1.0\n"
     "Content-Type: multipart/mixed; boundary=\"b\"\n"
     "Content-Transfer-Encoding: 8bit\n\n"
     "--b\nContent-Type: text/plain; charset=latin1\n\nna\xefve\n"
     "--b\nContent-Type: application/octet-stream\n"
     "Content-Transfer-Encoding: 8bit\n\n\xff\xfe\n"
     "--b\nContent-Type: text/plain\n\nascii stays\n--b--\n",
     VERDICT_CONTINUE, "2 encoded, 1 relabelled", 1, NULL, NULL,
     "Content-Transfer-Encoding: 7bit\n\n--b\n"
     "Content-Type: text/plain; charset=latin1\n"
     "Content-Transfer-Encoding: quoted-printable\n\nna=EFve\n"
     "--b\nContent-Type: application/octet-stream\n"
     "Content-Transfer-Encoding: base64\n\n//4=\n"
     "--b\nContent-Type: text/plain\n\nascii stays\n--b--\n"},
    /* An earlier hop's signature covers the body as it came: encoding
     * it again would break that signature. */
    {"8-bit body an earlier hop signed: kept", CONF_SHORT, "alice@example.com",
     "DKIM-Signature: v=1; a=rsa-sha256; d=partner.example; s=p1;\n"
     "\th=from:subject; bh=" BH_CAFE "; b=y\n"
     "From: alice@example.com\nContent-Transfer-Encoding: 8bit\n\n"
     "caf\xc3\xa9\n",
     VERDICT_CONTINUE,
     "body kept as an earlier hop signed it (d=partner.example, s=p1)", 1,
     NULL, NULL, "Content-Transfer-Encoding: 8bit\n\ncaf\xc3\xa9\n"},
    {"8-bit body an earlier hop signed, dkim_signed = edit",
     CONF_SHORT "dkim_signed = edit\n", "alice@example.com",
     "DKIM-Signature: v=1; a=rsa-sha256; d=partner.example; s=p1;\n"
     "\th=from:subject; bh=" BH_CAFE "; b=y\n"
     "From: alice@example.com\nContent-Transfer-Encoding: 8bit\n\n"
     "caf\xc3\xa9\n",
     VERDICT_CONTINUE, "1 encoded", 1, NULL, NULL,
     "Content-Transfer-Encoding: quoted-printable\n\ncaf=C3=A9\n"},
    {"keep leaves 8-bit alone", CONF_SHORT "eight_bit_body = keep\n",
     "alice@example.com",
     "From: alice@example.com\nContent-Transfer-Encoding: 8bit\n\n"
     "caf\xc3\xa9\n",
     VERDICT_CONTINUE, "signed", 1, NULL, NULL,
     "Content-Transfer-Encoding: 8bit\n\ncaf\xc3\xa9\n"},
    {"CRLF message keeps CRLF", CONF_SHORT, "alice@example.com",
     "From: alice@example.com\r\nContent-Type: text/plain\r\n\r\n"
     "caf\xc3\xa9\r\nline two\r\n",
     VERDICT_CONTINUE, "1 encoded", 1, NULL, NULL,
     "Content-Transfer-Encoding: quoted-printable\r\nMIME-Version: 1.0\r\n"
     "\r\ncaf=C3=A9\r\nline two\r\n"},
};

static void
test_sign(void **state)
{
    static const char *const keys[] = {"d", "s", "a", "c", "i"};
    const struct sign_case *c;
    char tags[512], v[256];
    struct verdict vd;
    struct stage st;
    struct buf out;
    struct msg *m;
    struct err e;
    size_t i, before, t, k;

    (void)state;
    buf_init(&out, 0);
    for (i = 0; i < sizeof(sign_cases) / sizeof(sign_cases[0]); i++) {
        c = &sign_cases[i];
        err_clear(&e);
        if (stage_load(&st, c->conf, &e) < 0)
            fail_msg("case %s: load: %s", c->name, e.text);
        m = msg_build(c->sender, c->message);
        before = msg_header_name_count(m, "DKIM-Signature");
        memset(&vd, 0, sizeof(vd));
        if (st.type->run(&st, m, &vd, &e) < 0)
            unit_fail(c->name, "run failed: %s", e.text);
        unit_int_eq(c->name, vd.kind, c->want_kind);
        unit_has(c->name, vd.note, c->want_note);
        unit_int_eq(c->name, msg_header_name_count(m, "DKIM-Signature"),
                    before + (size_t)c->want_sigs);
        if (c->want_sigs > 0) {
            const char *name;

            /* The new fields come first. */
            assert_int_equal(msg_header_at(m, 0, &name, NULL, NULL), 0);
            unit_str_eq(c->name, name, "DKIM-Signature");
            tags[0] = '\0';
            for (t = 0, k = 0; k < sizeof(keys) / sizeof(keys[0]); k++)
                if (tag_of(m, 1, keys[k], v, sizeof(v))[0] != '\0')
                    t += (size_t)snprintf(tags + t, sizeof(tags) - t,
                                          "%s%s=%s", t ? " " : "", keys[k], v);
            if (c->want_tags != NULL)
                unit_has(c->name, tags, c->want_tags);
            if (c->want_h != NULL)
                unit_str_eq(c->name, tag_of(m, 1, "h", v, sizeof(v)),
                            c->want_h);
            if (tag_of(m, 1, "t", v, sizeof(v))[0] == '\0')
                unit_fail(c->name, "no t= tag");
            if (tag_of(m, 1, "l", v, sizeof(v))[0] != '\0')
                unit_fail(c->name, "l= tag present");
            tag_of(m, 1, "x", v, sizeof(v));
            if ((strstr(c->conf, "signature_ttl") != NULL) != (v[0] != '\0'))
                unit_fail(c->name, "x= is \"%s\"", v);
        }
        if (c->want_in_msg != NULL) {
            msg_text(m, &out);
            unit_has(c->name, buf_str(&out), c->want_in_msg);
        }
        msg_free(m);
        stage_unload(&st);
    }
    buf_fini(&out);
}

/* ------------------------------------------------------- whose mail */

struct whose_case {
    const char *name;
    const char *conf_extra; /* after CONF_SHORT */
    const char *client;
    int internal; /* what the front end found in mynetworks */
    const char *auth;
    const char *daemon;
    int want_sigs;
    const char *want_note;
};

/* An outside client writing to one of our relay_domains with our domain
 * in From must not get our signature; our own clients must. */
static const struct whose_case whose_cases[] = {
    {"outside client, default", "", "203.0.113.7", 0, NULL, NULL, 0,
     "not signed (client 203.0.113.7 is not internal: not in mynetworks, "
     "not authenticated)"},
    {"client in mynetworks", "", "192.0.2.1", 1, NULL, NULL, 1, "signed"},
    {"authenticated outside client", "", "203.0.113.7", 0, "alice", NULL, 1,
     "signed"},
    {"sign_mail = all signs outsiders", "sign_mail = all\n", "203.0.113.7", 0,
     NULL, NULL, 1, "signed"},
    {"internal_hosts replaces mynetworks: in",
     "internal_hosts = 203.0.113.0/24\n", "203.0.113.7", 0, NULL, NULL, 1,
     "signed"},
    {"internal_hosts replaces mynetworks: out",
     "internal_hosts = 198.51.100.0/24\n", "192.0.2.1", 1, NULL, NULL, 0,
     "not signed (client 192.0.2.1 is not internal: not in internal_hosts"},
    {"IPv6 in internal_hosts", "internal_hosts = [2001:db8::]/32\n",
     "2001:db8::25", 0, NULL, NULL, 1, "signed"},
    {"no client address", "", NULL, 0, NULL, NULL, 0,
     "client unknown is not internal"},
    {"daemon in mta_names", "mta_names = ORIGINATING, submission\n",
     "203.0.113.7", 0, NULL, "submission", 1, "signed"},
    {"daemon not in mta_names", "mta_names = ORIGINATING\n", "203.0.113.7", 0,
     NULL, "smtpd-in", 0, "daemon smtpd-in not in mta_names"},
    {"daemon name compares exactly", "mta_names = ORIGINATING\n",
     "203.0.113.7", 0, NULL, "originating", 0, "not signed"},
};

static void
test_whose_mail(void **state)
{
    const struct whose_case *c;
    char conf[512];
    struct verdict vd;
    struct stage st;
    struct msg *m;
    struct err e;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(whose_cases) / sizeof(whose_cases[0]); i++) {
        c = &whose_cases[i];
        err_clear(&e);
        snprintf(conf, sizeof(conf), "%s%s", CONF_SHORT, c->conf_extra);
        if (stage_load(&st, conf, &e) < 0)
            fail_msg("case %s: load: %s", c->name, e.text);
        m = msg_build("alice@example.com", PLAIN);
        assert_int_equal(
            msg_env_set(m, "QID1", c->client, NULL, "client", 0, c->auth, &e),
            0);
        assert_int_equal(msg_env_origin(m, c->internal, c->daemon, &e), 0);
        memset(&vd, 0, sizeof(vd));
        if (st.type->run(&st, m, &vd, &e) < 0)
            unit_fail(c->name, "run failed: %s", e.text);
        unit_int_eq(c->name, vd.kind, VERDICT_CONTINUE);
        unit_has(c->name, vd.note, c->want_note);
        unit_int_eq(c->name, msg_header_name_count(m, "DKIM-Signature"),
                    (size_t)c->want_sigs);
        msg_free(m);
        stage_unload(&st);
    }
}

/* ------------------------------------------------- refusals and checks */

static void
test_long_lines(void **state)
{
    char line[1200], text[2048];
    struct verdict vd;
    struct stage st;
    struct buf out;
    struct msg *m;
    struct err e;

    (void)state;
    memset(line, 'x', 1100);
    line[1100] = '\0';
    buf_init(&out, 0);
    assert_int_equal(stage_load(&st, CONF_SHORT, &e), 0);

    /* In a text body: quoted-printable wraps it. */
    snprintf(text, sizeof(text), "From: a@example.com\n\n%s\n", line);
    m = msg_build("a@example.com", text);
    assert_int_equal(st.type->run(&st, m, &vd, &e), 0);
    unit_int_eq("long body line", vd.kind, VERDICT_CONTINUE);
    unit_has("long body line", vd.note, "1 encoded");
    msg_text(m, &out);
    unit_has("long body line", buf_str(&out), "xxx=\nxxx");
    msg_free(m);

    /* In the header: nothing can fix it. */
    snprintf(text, sizeof(text), "From: a@example.com\nX-Long: %s\n\nbody\n",
             line);
    m = msg_build("a@example.com", text);
    assert_int_equal(st.type->run(&st, m, &vd, &e), 0);
    unit_int_eq("long header line", vd.kind, VERDICT_REJECT);
    unit_has("long header line", vd.reply, "554 5.6.0");
    unit_has("long header line", vd.note,
             "not signed (line over 998 octets in the header)");
    unit_int_eq("long header line", msg_header_name_count(m, "DKIM-Signature"),
                0);
    msg_free(m);
    stage_unload(&st);

    /* keep: a long body line is refused too. */
    assert_int_equal(stage_load(&st, CONF_SHORT "eight_bit_body = keep\n", &e),
                     0);
    unit_int_eq("keep narrows the flags", st.flags, STAGE_SIGNS);
    snprintf(text, sizeof(text), "From: a@example.com\n\n%s\n", line);
    m = msg_build("a@example.com", text);
    assert_int_equal(st.type->run(&st, m, &vd, &e), 0);
    unit_int_eq("keep, long body line", vd.kind, VERDICT_REJECT);
    unit_has("keep, long body line", vd.note, "in the body");
    msg_free(m);
    stage_unload(&st);
    buf_fini(&out);
}

static void
test_self_check(void **state)
{
    static const struct {
        const char *fault;
        const char *want;
    } cases[] = {
        {"body", "self-check failed: body hash, d=example.com, s=mail2026"},
        {"header", "self-check failed: header hash, d=example.com, "
                   "s=mail2026"},
    };
    struct verdict vd;
    struct stage st;
    struct msg *m;
    struct err e;
    size_t i;

    (void)state;
    assert_int_equal(stage_load(&st, CONF_SHORT, &e), 0);
    st.env = &flt_registry.env; /* tests/unit/faultregistry.c */
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        setenv("RELAYCHAIN_DKIM_FAULT", cases[i].fault, 1);
        m = msg_build("alice@example.com", PLAIN);
        assert_int_equal(st.type->run(&st, m, &vd, &e), 0);
        unsetenv("RELAYCHAIN_DKIM_FAULT");
        /* A verdict, not an error, so on_error = continue cannot let the
         * message pass. */
        unit_int_eq(cases[i].fault, vd.kind, VERDICT_TEMPFAIL);
        unit_has(cases[i].fault, vd.reply, "451 4.7.5");
        unit_str_eq(cases[i].fault, vd.note, cases[i].want);
        msg_free(m);
    }
    /* Without the fault the same message signs. */
    m = msg_build("alice@example.com", PLAIN);
    assert_int_equal(st.type->run(&st, m, &vd, &e), 0);
    unit_int_eq("no fault", vd.kind, VERDICT_CONTINUE);
    msg_free(m);
    stage_unload(&st);
}

/* Threads: one stage, RSA and Ed25519 from the tables, run() from four
 * threads at once; every message must come out signed twice (each
 * signature already verified by the self-check). */
#define THREADS 4
#define THREAD_MSGS 25

struct thread_arg {
    const struct stage *st;
    int signed_ok;
};

static void *
thread_main(void *p)
{
    struct thread_arg *a = p;
    struct verdict vd;
    struct msg *m;
    struct err e;
    int i;

    for (i = 0; i < THREAD_MSGS; i++) {
        if ((m = msg_new(&test_limits, MSG_FE_SMTP, &e)) == NULL)
            return NULL;
        if (msg_env_origin(m, 1, NULL, &e) == 0 &&
            msg_env_sender(m, "alice@example.com", NULL, &e) == 0 &&
            msg_parse(m, PLAIN, strlen(PLAIN), &e) == 0 &&
            a->st->type->run(a->st, m, &vd, &e) == 0 &&
            vd.kind == VERDICT_CONTINUE &&
            msg_header_name_count(m, "DKIM-Signature") == 2)
            a->signed_ok++;
        msg_free(m);
    }
    return NULL;
}

static void
test_threads(void **state)
{
    struct thread_arg args[THREADS];
    pthread_t tids[THREADS];
    struct stage st;
    struct err e;
    int i, total = 0;

    (void)state;
    assert_int_equal(stage_load(&st, CONF_TABLES, &e), 0);
    for (i = 0; i < THREADS; i++) {
        args[i].st = &st;
        args[i].signed_ok = 0;
        assert_int_equal(pthread_create(&tids[i], NULL, thread_main, &args[i]),
                         0);
    }
    for (i = 0; i < THREADS; i++) {
        pthread_join(tids[i], NULL);
        total += args[i].signed_ok;
    }
    unit_int_eq("threads", total, THREADS * THREAD_MSGS);
    stage_unload(&st);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_errors),
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_conf_errors),
        cmocka_unit_test(test_sign),
        cmocka_unit_test(test_whose_mail),
        cmocka_unit_test(test_long_lines),
        cmocka_unit_test(test_self_check),
        cmocka_unit_test(test_threads),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
