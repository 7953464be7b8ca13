/*
 * test_encrypt - the encrypt stage: its policy values, the one-body
 *     decision, the "already encrypted" test, the subject tag, and the
 *     stage itself over S/MIME certificates made in the process
 *
 * Tables: policy_map results with the policy and protocols wanted or the
 * error; recipient sets (policy, protocols allowed, keys held) with the
 * form wanted and the recipient named; Content-Type values; subjects.
 * Then the stage: configurations that must be refused (with file:line),
 * a message encrypted to carol's certificate and decrypted here with
 * CMS_decrypt to the original entity byte for byte, refusals (wrong key
 * usage, expired) as tempfail or reject verdicts, a conflict, a policy
 * map result that is not a policy as an error (fails closed), and mail
 * already encrypted passed as is. OpenPGP and the real tools are
 * tests/integration/encrypt.sh.
 */
#include "config.h"

#include "unit.h"
#include "unit_enc.h"
#include "unit_stage.h"

#include <openssl/cms.h>

#include "filters/encrypt/encrypt_int.h"
#include "filters/filters.h"
#include "msg/mime.h"
#include "msg/msg.h"

struct policy_case {
    const char *in;
    int rc;
    enum flt_enc_policy policy;
    unsigned protos;
    const char *err; /* start of the error text */
};

static const struct policy_case policy_cases[] = {
    {"never", 0, FLT_ENC_NEVER, FLT_ENC_ANY, NULL},
    {"opportunistic", 0, FLT_ENC_OPPORTUNISTIC, FLT_ENC_ANY, NULL},
    {"required pgp", 0, FLT_ENC_REQUIRED, FLT_ENC_PGP, NULL},
    {"  Required\tSMIME  ", 0, FLT_ENC_REQUIRED, FLT_ENC_SMIME, NULL},
    {"required any", 0, FLT_ENC_REQUIRED, FLT_ENC_ANY, NULL},
    {"", -1, 0, 0, "a policy is never"},
    {"sometimes", -1, 0, 0, "policy 'sometimes' is not"},
    {"required gpg", -1, 0, 0, "protocol 'gpg' is not"},
    {"required pgp smime", -1, 0, 0, "a policy is at most two words"},
    {"required xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", -1, 0, 0,
     "the protocol after the policy"},
};

static void
test_policy_parse(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(policy_cases) / sizeof(policy_cases[0]); i++) {
        const struct policy_case *c = &policy_cases[i];
        enum flt_enc_policy p = FLT_ENC_NEVER;
        unsigned protos = 0;
        struct err e;
        int rc;

        err_clear(&e);
        rc = flt_enc_policy_parse(c->in, &p, &protos, &e);
        unit_int_eq(c->in, rc, c->rc);
        if (rc == 0) {
            unit_int_eq(c->in, p, c->policy);
            unit_int_eq(c->in, protos, c->protos);
        } else {
            unit_has(c->in, e.text, c->err);
        }
    }
}

#define N FLT_ENC_NEVER
#define O FLT_ENC_OPPORTUNISTIC
#define R FLT_ENC_REQUIRED
#define P FLT_ENC_PGP
#define S FLT_ENC_SMIME
#define A FLT_ENC_ANY

struct decide_case {
    const char *name;
    size_t n;
    struct flt_enc_rcpt r[3];
    unsigned preferred;
    enum flt_enc_form form;
    size_t culprit;
};

static const struct decide_case decide_cases[] = {
    {"no recipients", 0, {{0}}, P, FLT_ENC_FORM_CLEAR, 0},
    {"all never",
     2,
     {{"a", N, A, A}, {"b", N, A, A}},
     P,
     FLT_ENC_FORM_CLEAR,
     0},
    {"opportunistic with key", 1, {{"a", O, A, P}}, P, FLT_ENC_FORM_PGP, 0},
    {"opportunistic without key",
     1,
     {{"a", O, A, 0}},
     P,
     FLT_ENC_FORM_CLEAR,
     0},
    {"opportunistic, one of two without key: clear",
     2,
     {{"a", O, A, P}, {"b", O, A, 0}},
     P,
     FLT_ENC_FORM_CLEAR,
     0},
    {"required with key", 1, {{"a", R, A, S}}, P, FLT_ENC_FORM_SMIME, 0},
    {"required without key",
     2,
     {{"a", O, A, P}, {"b", R, A, 0}},
     P,
     FLT_ENC_FORM_MISSING,
     1},
    {"required pgp, only an smime cert",
     1,
     {{"a", R, P, S}},
     P,
     FLT_ENC_FORM_MISSING,
     0},
    {"both keys, preferred smime",
     2,
     {{"a", R, A, A}, {"b", O, A, A}},
     S,
     FLT_ENC_FORM_SMIME,
     0},
    {"both keys, preferred pgp",
     2,
     {{"a", R, A, A}, {"b", O, A, A}},
     P,
     FLT_ENC_FORM_PGP,
     0},
    {"one protocol common",
     2,
     {{"a", R, A, A}, {"b", R, A, S}},
     P,
     FLT_ENC_FORM_SMIME,
     0},
    {"pgp beside smime: conflict",
     2,
     {{"a", R, P, P}, {"b", R, S, S}},
     P,
     FLT_ENC_FORM_CONFLICT,
     1},
    {"required beside opportunistic without key",
     3,
     {{"a", O, A, P}, {"b", R, A, P}, {"c", O, A, 0}},
     P,
     FLT_ENC_FORM_CONFLICT,
     2},
    {"required beside never",
     2,
     {{"a", N, A, P}, {"b", R, A, P}},
     P,
     FLT_ENC_FORM_CONFLICT,
     0},
    {"never beside opportunistic with key: clear",
     2,
     {{"a", N, A, P}, {"b", O, A, P}},
     P,
     FLT_ENC_FORM_CLEAR,
     0},
};

static void
test_decide(void **state)
{
    size_t i, culprit;

    (void)state;
    for (i = 0; i < sizeof(decide_cases) / sizeof(decide_cases[0]); i++) {
        const struct decide_case *c = &decide_cases[i];
        enum flt_enc_form f;

        f = flt_enc_decide(c->r, c->n, c->preferred, &culprit);
        unit_int_eq(c->name, f, c->form);
        if (f == FLT_ENC_FORM_MISSING || f == FLT_ENC_FORM_CONFLICT)
            unit_int_eq(c->name, culprit, c->culprit);
    }
}

static void
test_is_encrypted(void **state)
{
    static const struct {
        const char *ct;
        int want;
    } cases[] = {
        {NULL, 0},
        {" text/plain", 0},
        {" multipart/encrypted; protocol=\"application/pgp-encrypted\"", 1},
        {" Multipart/Encrypted;\r\n\tboundary=x", 1},
        {" multipart/encryptedx", 0},
        {" application/pkcs7-mime; smime-type=enveloped-data", 1},
        {" application/x-pkcs7-mime; smime-type=\"enveloped-data\"", 1},
        {" application/pkcs7-mime; smime-type=authEnveloped-data", 1},
        {" application/pkcs7-mime; smime-type=signed-data", 0},
        {" application/pkcs7-mime; name=notenveloped-data.p7m", 0},
        {" multipart/mixed; boundary=\"multipart/encrypted\"", 0},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        unit_int_eq(cases[i].ct ? cases[i].ct : "(null)",
                    flt_enc_is_encrypted(cases[i].ct), cases[i].want);
}

static void
test_untag(void **state)
{
    static const struct {
        const char *in, *tag, *want; /* want NULL: no tag */
    } cases[] = {
        {" [secure] figures", "[secure]", " figures"},
        {" figures [SECURE]", "[secure]", " figures"},
        {" re: [secure]figures", "[secure]", " re: figures"},
        {" figures", "[secure]", NULL},
        {" [sec", "[secure]", NULL},
        {" [secure] a\rb\r\n c\nd\n\te\r", "[secure]", " a b\r\n c d\n\te"},
        {" figures\r\n [secure]\r\n x", "[secure]", " figures\r\n x"},
        {" figures\n [secure]", "[secure]", " figures"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf b;
        struct err e;
        int rc;

        buf_init(&b, 0);
        rc = flt_enc_subject_untag(cases[i].in, cases[i].tag, &b, &e);
        unit_int_eq(cases[i].in, rc, cases[i].want != NULL);
        if (rc > 0)
            unit_str_eq(cases[i].in, buf_str(&b), cases[i].want);
        buf_fini(&b);
    }
}

static void
test_addr_equal(void **state)
{
    static const struct {
        const char *a, *b;
        int want;
    } cases[] = {
        {"carol@example.org", "carol@Example.ORG", 1},
        {"carol@example.org", "Carol@example.org", 0},
        {"carol@example.org", "carol@example.org.evil", 0},
        {"carol@example.org", "xcarol@example.org", 0},
        {"carol@example.org", NULL, 0},
        {"carol", "carol", 0},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        unit_int_eq(cases[i].b ? cases[i].b : "(null)",
                    flt_enc_addr_equal(cases[i].a, cases[i].b), cases[i].want);
}

/* ------------------------------------------------------------ the stage */

static char pki[256];
static EVP_PKEY *pki_key;

static int
setup_pki(void **state)
{
    char path[400];
    FILE *fp;

    (void)state;
    mime_init();
    pki_key = unit_enc_pki(pki, sizeof(pki));
    snprintf(path, sizeof(path), "%s/policy.pcre", pki);
    if ((fp = fopen(path, "w")) == NULL)
        return -1;
    fputs("/^carol@/ opportunistic smime\n"
          "/^(dan|hal)@/ required smime\n"
          "/^never@/ never\n"
          "/^odd@/ sometimes\n",
          fp);
    fclose(fp);
    return 0;
}

static int
teardown_pki(void **state)
{
    (void)state;
    EVP_PKEY_free(pki_key);
    unit_enc_rmtree(pki);
    mime_shutdown();
    return 0;
}

static int
load(struct stage *st, const char *extra, struct err *e)
{
    char conf[2048];

    snprintf(conf, sizeof(conf),
             "policy_map = %s/policy.pcre\nsmime_cert_dir = %s/certs\n"
             "smime_ca_file = %s/ca.pem\n%s",
             pki, pki, pki, extra);
    err_clear(e);
    return unit_stage_load(st, &flt_encrypt_type, "encrypt", "80-encrypt.conf",
                           conf, e);
}

static void
test_config(void **state)
{
    static const struct {
        const char *conf, *err;
    } cases[] = {
        {"default_policy = opportunistic\n", "no keys: set pgp_home"},
        {"default_policy = opportunistic\nsmime_cert_dir = /nonexistent\n"
         "smime_ca_file = /nonexistent\n",
         "80-encrypt.conf:2: smime_cert_dir"},
        {"trigger_header = X-Encrypt\nsmime_cert_dir = /tmp\n",
         "80-encrypt.conf:1: trigger_header"},
        {"default_policy = sometimes\n", "80-encrypt.conf:1: default_policy"},
        {"smime_cipher = des\n", "80-encrypt.conf:1: smime_cipher"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct stage st;
        struct err e;

        err_clear(&e);
        if (unit_stage_load(&st, &flt_encrypt_type, "encrypt",
                            "80-encrypt.conf", cases[i].conf, &e) == 0) {
            unit_stage_unload(&st);
            unit_fail(cases[i].conf, "loaded, want \"%s\"", cases[i].err);
        }
        unit_has(cases[i].conf, e.text, cases[i].err);
    }
}

static const char msg_text[] = "From: Alice <alice@example.com>\n"
                               "To: Carol <carol@example.org>\n"
                               "Subject: [secure] figures\n"
                               "MIME-Version: 1.0\n"
                               "Content-Type: text/plain; charset=utf-8\n"
                               "Content-Transfer-Encoding: 8bit\n"
                               "\n"
                               "Gr\xc3\xbc\xc3\x9f"
                               "e,\nthe figures.\n";

static const char msg_entity[] = "Content-Type: text/plain; charset=utf-8\r\n"
                                 "Content-Transfer-Encoding: 8bit\r\n"
                                 "\r\n"
                                 "Gr\xc3\xbc\xc3\x9f"
                                 "e,\r\nthe figures.\r\n";

static struct msg *
new_msg(const char *text, const char *const *rcpts)
{
    static const struct msg_limits lim = {1 << 20, 1000, 998, 20, 200};
    struct msg *m;
    struct err e;

    if ((m = msg_new(&lim, MSG_FE_SMTP, &e)) == NULL ||
        msg_env_sender(m, "alice@example.com", NULL, &e) < 0)
        fail();
    for (; *rcpts != NULL; rcpts++)
        if (msg_env_rcpt(m, *rcpts, NULL, &e) < 0)
            fail();
    if (msg_parse(m, text, strlen(text), &e) < 0)
        fail();
    return m;
}

/* decrypt - the body of m (base64 CMS) decrypted with pki_key. */
static void
decrypt(struct msg *m, struct buf *out)
{
    struct err e;
    BIO *in, *plain = BIO_new(BIO_s_mem()), *b64;
    CMS_ContentInfo *cms;
    const char *body;
    char *p;
    size_t blen;
    long n;

    body = msg_body(m, &blen);
    in = BIO_new_mem_buf(body, (int)blen);
    b64 = BIO_new(BIO_f_base64());
    in = BIO_push(b64, in);
    cms = d2i_CMS_bio(in, NULL);
    assert_non_null(cms);
    assert_int_equal(CMS_decrypt(cms, pki_key, NULL, NULL, plain, CMS_BINARY),
                     1);
    n = BIO_get_mem_data(plain, &p);
    buf_init(out, 0);
    assert_int_equal(buf_append(out, p, (size_t)n, &e), 0);
    CMS_ContentInfo_free(cms);
    BIO_free_all(in);
    BIO_free(plain);
}

static void
test_stage_encrypts(void **state)
{
    static const char *const rcpts[] = {"carol@example.org", NULL};
    struct stage st;
    struct verdict v;
    struct msg *m;
    struct buf plain;
    struct err e;

    (void)state;
    if (load(&st, "subject_tag = [secure]\n", &e) < 0)
        unit_fail("load", "%s", e.text);
    m = new_msg(msg_text, rcpts);
    memset(&v, 0, sizeof(v));
    if (flt_encrypt_type.run(&st, m, &v, &e) < 0)
        unit_fail("run", "%s", e.text);
    unit_int_eq("verdict", v.kind, VERDICT_CONTINUE);
    unit_str_eq("note", v.note, "carol@example.org smime serial=1001");
    unit_has("Content-Type", msg_header_get(m, "Content-Type", 1),
             "application/pkcs7-mime; smime-type=enveloped-data");
    unit_str_eq("one Content-Type",
                msg_header_name_count(m, "Content-Type") == 1 ? "1" : "more",
                "1");
    unit_str_eq("encoding", msg_header_get(m, "Content-Transfer-Encoding", 1),
                " base64");
    unit_str_eq("subject untagged", msg_header_get(m, "Subject", 1),
                " figures");
    decrypt(m, &plain);
    unit_int_eq("entity length", plain.len, sizeof(msg_entity) - 1);
    if (memcmp(plain.data, msg_entity, plain.len) != 0)
        unit_fail("entity", "differs: \"%s\"", buf_str(&plain));
    buf_fini(&plain);
    msg_free(m);
    unit_stage_unload(&st);
}

static void
test_stage_refuses(void **state)
{
    static const struct {
        const char *name, *extra, *rcpts[3];
        enum verdict_kind kind;
        const char *reply; /* start */
    } cases[] = {
        {"wrong key usage",
         "",
         {"dan@example.org", NULL},
         VERDICT_TEMPFAIL,
         "451 4.7.1 No usable encryption key for <dan@example.org>"},
        {"expired",
         "",
         {"hal@example.org", NULL},
         VERDICT_TEMPFAIL,
         "451 4.7.1 No usable encryption key for <hal@example.org>"},
        {"on_missing_key = reject",
         "on_missing_key = reject\n",
         {"hal@example.org", NULL},
         VERDICT_REJECT,
         "550 5.7.1"},
        {"opportunistic beside never: clear",
         "",
         {"carol@example.org", "never@example.org", NULL},
         VERDICT_CONTINUE,
         NULL},
        {"the tag makes never required",
         "subject_tag = [secure]\n",
         {"carol@example.org", "never@example.org", NULL},
         VERDICT_TEMPFAIL,
         "451 4.7.1 No usable encryption key for <never@example.org>"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct stage st;
        struct verdict v;
        struct msg *m;
        struct err e;

        if (load(&st, cases[i].extra, &e) < 0)
            unit_fail(cases[i].name, "load: %s", e.text);
        m = new_msg(msg_text, cases[i].rcpts);
        memset(&v, 0, sizeof(v));
        if (flt_encrypt_type.run(&st, m, &v, &e) < 0)
            unit_fail(cases[i].name, "run: %s", e.text);
        unit_int_eq(cases[i].name, v.kind, cases[i].kind);
        if (cases[i].reply != NULL)
            unit_has(cases[i].name, v.reply, cases[i].reply);
        if (v.kind != VERDICT_CONTINUE)
            unit_str_eq(cases[i].name, msg_header_get(m, "Content-Type", 1),
                        " text/plain; charset=utf-8");
        msg_free(m);
        unit_stage_unload(&st);
    }
}

/* Outcomes that do not fit in a note: the note says how many. */
static void
test_stage_many(void **state)
{
    static const char *const rcpts[] = {
        "carol@example.org", "carol@example.org", "carol@example.org",
        "carol@example.org", "carol@example.org", "carol@example.org",
        "carol@example.org", "carol@example.org", NULL};
    struct stage st;
    struct verdict v;
    struct msg *m;
    struct err e;

    (void)state;
    if (load(&st, "", &e) < 0)
        unit_fail("load", "%s", e.text);
    m = new_msg(msg_text, rcpts);
    memset(&v, 0, sizeof(v));
    if (flt_encrypt_type.run(&st, m, &v, &e) < 0)
        unit_fail("run", "%s", e.text);
    unit_int_eq("verdict", v.kind, VERDICT_CONTINUE);
    unit_str_eq("note", v.note,
                "8 recipients, smime (each named in the line above)");
    msg_free(m);
    unit_stage_unload(&st);
}

/* A policy_map result that is not a policy is an error (the chain makes
 * it a tempfail), not a guess. */
static void
test_stage_bad_policy(void **state)
{
    static const char *const rcpts[] = {"odd@example.org", NULL};
    struct stage st;
    struct verdict v;
    struct msg *m;
    struct err e;

    (void)state;
    if (load(&st, "", &e) < 0)
        unit_fail("load", "%s", e.text);
    m = new_msg(msg_text, rcpts);
    memset(&v, 0, sizeof(v));
    unit_int_eq("run", flt_encrypt_type.run(&st, m, &v, &e), -1);
    unit_int_eq("temporary", err_is_temporary(&e), 1);
    unit_has("error", e.text, "policy.pcre:4");
    unit_has("error", e.text, "policy 'sometimes' is not");
    msg_free(m);
    unit_stage_unload(&st);
}

/* Mail already encrypted passes as is, even to a recipient without a
 * key; a label on clear text does not: that is encrypted. */
static void
test_stage_already(void **state)
{
    static const char *const carol[] = {"carol@example.org", NULL};
    static const char *const hal[] = {"hal@example.org", NULL};
    static const char fake[] =
        "From: a@example.com\nSubject: x\nMIME-Version: 1.0\n"
        "Content-Type: application/pkcs7-mime; smime-type=enveloped-data; "
        "name=smime.p7m\n\nthis is clear text\n";
    const struct msg_edit *ed;
    struct stage st;
    struct verdict v;
    struct msg *m;
    struct buf sealed, plain;
    struct err e;

    (void)state;
    if (load(&st, "", &e) < 0)
        unit_fail("load", "%s", e.text);
    m = new_msg(msg_text, carol);
    memset(&v, 0, sizeof(v));
    if (flt_encrypt_type.run(&st, m, &v, &e) < 0)
        unit_fail("run", "%s", e.text);
    buf_init(&sealed, 0);
    assert_int_equal(msg_write(m, &sealed, &e), 0);
    msg_free(m);

    m = new_msg(buf_str(&sealed), hal);
    memset(&v, 0, sizeof(v));
    if (flt_encrypt_type.run(&st, m, &v, &e) < 0)
        unit_fail("sealed", "%s", e.text);
    unit_int_eq("sealed: verdict", v.kind, VERDICT_CONTINUE);
    unit_int_eq("sealed: no edit", msg_journal(m, &ed), 0);
    msg_free(m);
    buf_fini(&sealed);

    m = new_msg(fake, hal);
    memset(&v, 0, sizeof(v));
    if (flt_encrypt_type.run(&st, m, &v, &e) < 0)
        unit_fail("label", "%s", e.text);
    unit_int_eq("a label on clear text: hal has no key", v.kind,
                VERDICT_TEMPFAIL);
    msg_free(m);
    m = new_msg(fake, carol);
    memset(&v, 0, sizeof(v));
    if (flt_encrypt_type.run(&st, m, &v, &e) < 0)
        unit_fail("label", "%s", e.text);
    unit_int_eq("a label on clear text: encrypted", v.kind, VERDICT_CONTINUE);
    decrypt(m, &plain);
    unit_has("the label inside", buf_str(&plain), "this is clear text");
    buf_fini(&plain);
    msg_free(m);
    unit_stage_unload(&st);
}

/* ------------------------------------------------ sign_key_map (S/MIME) */

/* write_map - text into pki/sign.map; its path into path (size n). */
static void
write_map(const char *text, char *path, size_t n)
{
    FILE *fp;

    snprintf(path, n, "%s/sign.map", pki);
    if ((fp = fopen(path, "w")) == NULL)
        fail();
    fputs(text, fp);
    fclose(fp);
}

/* expand_pki - tmpl with every "PKI" the test's directory, into out. */
static void
expand_pki(const char *tmpl, char *out, size_t n)
{
    const char *p;
    size_t len = 0;

    out[0] = '\0';
    while ((p = strstr(tmpl, "PKI")) != NULL) {
        len += (size_t)snprintf(out + len, n - len, "%.*s%s", (int)(p - tmpl),
                                tmpl, pki);
        tmpl = p + 3;
        if (len >= n)
            fail();
    }
    snprintf(out + len, n - len, "%s", tmpl);
}

/* Maps refused at load, each with the map's file:line. */
static void
test_sign_refused(void **state)
{
    static const struct {
        const char *rule, *err;
    } cases[] = {
        {"/./ pgp:0123456789ABCDEF0123456789ABCDEF01234567",
         "an OpenPGP signing key needs pgp_home"},
        {"/^(.*)@/ smime:$1", "no $ expansions here"},
        {"/./ smime:certs/carol.pem:key.pem", "absolute paths"},
        {"/./ smime:/a:/b:/c", "is not smime:/CERT.pem:/KEY.pem"},
        {"/./ x509:/a", "is neither pgp:FINGERPRINT nor"},
        {"/./ smime:PKI/ca.pem:PKI/key.pem", "ca.pem: the signing "
                                             "certificate is of the "
                                             "wrong key usage"},
        {"/./ smime:PKI/certs/hal.pem:PKI/key.pem",
         "hal.pem: the signing certificate is expired"},
        {"/./ smime:PKI/certs/carol.pem:PKI/key.pem", "must stay private"},
    };
    char map[400], rule[800], conf[600], text[900], path[400];
    size_t i;

    (void)state;
    snprintf(path, sizeof(path), "%s/key.pem", pki);
    chmod(path, 0644);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct stage st;
        struct err e;

        expand_pki(cases[i].rule, rule, sizeof(rule));
        snprintf(text, sizeof(text), "# the organisation\n%s\n", rule);
        write_map(text, map, sizeof(map));
        snprintf(conf, sizeof(conf), "sign_key_map = %s\n", map);
        if (load(&st, conf, &e) == 0) {
            unit_stage_unload(&st);
            unit_fail(rule, "loaded, want \"%s\"", cases[i].err);
        }
        unit_has(rule, e.text, "80-encrypt.conf:4: sign_key_map");
        unit_has(rule, e.text, "sign.map:2: ");
        unit_has(rule, e.text, cases[i].err);
        unit_str_eq(rule, strstr(e.text, "PRIVATE") == NULL ? "no" : "yes",
                    "no");
    }
    write_map("# nothing\n", map, sizeof(map));
    snprintf(conf, sizeof(conf), "sign_key_map = %s\n", map);
    {
        struct stage st;
        struct err e;

        if (load(&st, conf, &e) == 0) {
            unit_stage_unload(&st);
            unit_fail("empty map", "loaded");
        }
        unit_has("empty map", e.text, "no rules");
    }
    chmod(path, 0600);
}

/* msg_from - msg_text from sender to carol. */
static struct msg *
msg_from(const char *sender)
{
    static const struct msg_limits lim = {1 << 20, 1000, 998, 20, 200};
    struct msg *m;
    struct err e;

    if ((m = msg_new(&lim, MSG_FE_SMTP, &e)) == NULL ||
        msg_env_sender(m, sender, NULL, &e) < 0 ||
        msg_env_rcpt(m, "carol@example.org", NULL, &e) < 0 ||
        msg_parse(m, msg_text, strlen(msg_text), &e) < 0)
        fail();
    return m;
}

/* alice@ is signed with carol's certificate (digitalSignature): the
 * enveloped-data holds signed-data that verifies against the CA and
 * holds the entity; bob@ matches no rule and is encrypted unsigned. */
static void
test_sign_smime(void **state)
{
    char map[400], conf[600], text[900], path[400];
    struct stage st;
    struct verdict v;
    struct buf plain;
    struct msg *m;
    struct err e;
    X509_STORE *store;
    CMS_ContentInfo *cms;
    BIO *in, *out, *cont = NULL;
    char *p;
    long n;

    (void)state;
    snprintf(path, sizeof(path), "%s/key.pem", pki);
    chmod(path, 0600);
    snprintf(text, sizeof(text),
             "/^alice@example\\.com$/ smime:%s/certs/carol.pem:%s/key.pem\n",
             pki, pki);
    write_map(text, map, sizeof(map));
    snprintf(conf, sizeof(conf), "sign_key_map = %s\n", map);
    if (load(&st, conf, &e) < 0)
        unit_fail("load", "%s", e.text);

    m = msg_from("alice@example.com");
    memset(&v, 0, sizeof(v));
    if (flt_encrypt_type.run(&st, m, &v, &e) < 0)
        unit_fail("run", "%s", e.text);
    unit_int_eq("verdict", v.kind, VERDICT_CONTINUE);
    unit_str_eq("note", v.note,
                "carol@example.org smime serial=1001; signed smime "
                "serial=1001");
    decrypt(m, &plain);
    unit_has("signed-data inside", buf_str(&plain),
             "Content-Type: application/pkcs7-mime; smime-type=signed-data");
    in = BIO_new_mem_buf(plain.data, (int)plain.len);
    cms = SMIME_read_CMS(in, &cont);
    assert_non_null(cms);
    assert_null(cont); /* opaque: the content is inside */
    store = X509_STORE_new();
    snprintf(path, sizeof(path), "%s/ca.pem", pki);
    assert_int_equal(X509_STORE_load_file(store, path), 1);
    out = BIO_new(BIO_s_mem());
    unit_int_eq("CMS_verify against the CA",
                CMS_verify(cms, NULL, store, NULL, out, CMS_BINARY), 1);
    n = BIO_get_mem_data(out, &p);
    unit_int_eq("signed content length", n, (long)sizeof(msg_entity) - 1);
    if (memcmp(p, msg_entity, (size_t)n) != 0)
        unit_fail("signed content", "differs");
    BIO_free(out);
    BIO_free(in);
    X509_STORE_free(store);
    CMS_ContentInfo_free(cms);
    buf_fini(&plain);
    msg_free(m);

    m = msg_from("bob@example.com");
    memset(&v, 0, sizeof(v));
    if (flt_encrypt_type.run(&st, m, &v, &e) < 0)
        unit_fail("run", "%s", e.text);
    unit_str_eq("unmatched: note", v.note,
                "carol@example.org smime serial=1001");
    decrypt(m, &plain);
    unit_int_eq("unmatched: the entity itself", plain.len,
                sizeof(msg_entity) - 1);
    buf_fini(&plain);
    msg_free(m);
    unit_stage_unload(&st);
    unlink(map);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy_parse),
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_is_encrypted),
        cmocka_unit_test(test_untag),
        cmocka_unit_test(test_addr_equal),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_stage_encrypts),
        cmocka_unit_test(test_stage_refuses),
        cmocka_unit_test(test_stage_many),
        cmocka_unit_test(test_stage_bad_policy),
        cmocka_unit_test(test_stage_already),
        cmocka_unit_test(test_sign_refused),
        cmocka_unit_test(test_sign_smime),
    };

    return cmocka_run_group_tests(tests, setup_pki, teardown_pki);
}
