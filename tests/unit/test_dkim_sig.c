/*
 * test_dkim_sig - the dkim stage's signer and verifier (filters/dkim_sig)
 *
 * Keys are made in memory with OpenSSL. Each case signs a message, puts
 * the new field on top as a front end would, changes the result the way a
 * hop after us might, and checks it again: what the canonicalizations
 * must forgive (case of names, white space, folding, empty lines at the
 * end) and what they must not (a letter, an added From, fields swapped).
 * Body hashes are compared with the SHA-256 of the canonical body written
 * out by hand, including the examples of RFC 6376 section 3.4.5 and the
 * empty body. The stage's other behaviour, and verification by dkimpy and
 * Mail::DKIM, are in test_dkim and tests/integration/dkim_*.sh.
 */
#include "config.h"

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "unit.h"

#include "filters/dkim/dkim_sig.h"
#include "filters/filters.h"
#include "util/buf.h"

struct test_key {
    EVP_PKEY *priv, *pub;
    struct flt_dkim_sig_key *key;
};

static struct test_key rsa, ed;

static const char *const sign_hdrs[] = {"From", "To",           "Subject",
                                        "Date", "MIME-Version", NULL};
static const char *const oversign_hdrs[] = {"From", "Subject", NULL};

static void
key_make(struct test_key *k, const char *type)
{
    unsigned char *der = NULL;
    const unsigned char *p;
    struct err e;
    int n;

    k->priv = strcmp(type, "RSA") == 0
                  ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048)
                  : EVP_PKEY_Q_keygen(NULL, NULL, type);
    assert_non_null(k->priv);
    /* The public half goes through DER, as it would through DNS. */
    n = i2d_PUBKEY(k->priv, &der);
    assert_true(n > 0);
    p = der;
    k->pub = d2i_PUBKEY(NULL, &p, n);
    OPENSSL_free(der);
    assert_non_null(k->pub);
    k->key = flt_dkim_sig_key_new(k->priv, k->pub, &e);
    assert_non_null(k->key);
}

static void
key_free(struct test_key *k)
{
    flt_dkim_sig_key_free(k->key);
    EVP_PKEY_free(k->priv);
    EVP_PKEY_free(k->pub);
}

static int
setup(void **state)
{
    (void)state;
    key_make(&rsa, "RSA");
    key_make(&ed, "ED25519");
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    key_free(&rsa);
    key_free(&ed);
    return 0;
}

/* sign - the message wire signed with k, the new field on top with CRLF
 * folding, into out; memo may be NULL. */
static void
sign(const struct test_key *k, enum flt_dkim_canon hc, enum flt_dkim_canon bc,
     const char *wire, struct flt_dkim_body_memo *memo, struct buf *out)
{
    struct flt_dkim_sign s = {
        .key = k->key,
        .domain = "example.com",
        .selector = "t1",
        .hcanon = hc,
        .bcanon = bc,
        .sign_hdrs = sign_hdrs,
        .oversign_hdrs = oversign_hdrs,
        .time = 1795680000,
    };
    struct buf v;
    struct err e;
    size_t i;

    buf_init(&v, 0);
    buf_reset(out);
    if (flt_dkim_sig_make(&s, wire, strlen(wire), memo, &v, &e) < 0)
        fail_msg("flt_dkim_sig_make: %s", e.text);
    assert_int_equal(buf_puts(out, "DKIM-Signature: ", &e), 0);
    for (i = 0; i < v.len; i++) {
        if (v.data[i] == '\n')
            assert_int_equal(buf_putc(out, '\r', &e), 0);
        assert_int_equal(buf_putc(out, v.data[i], &e), 0);
    }
    assert_int_equal(buf_puts(out, "\r\n", &e), 0);
    assert_int_equal(buf_puts(out, wire, &e), 0);
    buf_fini(&v);
}

/* check - flt_dkim_sig_check() of wire with k; "ok" or the reason. */
static const char *
check(const struct test_key *k, const char *wire,
      const struct flt_dkim_body_memo *memo, char *why, size_t wn)
{
    struct err e;
    int rc;

    rc = flt_dkim_sig_check(k->key, "example.com", "t1", wire, strlen(wire),
                            memo, why, wn, &e);
    if (rc < 0)
        fail_msg("flt_dkim_sig_check: %s", e.text);
    return rc == 0 ? "ok" : why;
}

/* replace - wire with the first from after the signature field made to. */
static char *
replace(const char *wire, const char *from, const char *to)
{
    const char *start = strstr(wire, "\r\n") + 2, *at;
    size_t n = strlen(wire) - strlen(from) + strlen(to) + 1;
    char *out;

    /* Skip the signature's continuation lines. */
    while (*start == '\t' || *start == ' ')
        start = strstr(start, "\r\n") + 2;
    at = strstr(start, from);
    if (at == NULL)
        return NULL;
    out = malloc(n);
    assert_non_null(out);
    snprintf(out, n, "%.*s%s%s", (int)(at - wire), wire, to,
             at + strlen(from));
    return out;
}

static const char msg[] = "From: Alice <alice@example.com>\r\n"
                          "To: bob@example.net\r\n"
                          "To: carol@example.org\r\n"
                          "Subject: the figures\r\n"
                          "Date: Thu, 26 Nov 2026 10:00:00 +0000\r\n"
                          "X-Unsigned: yes\r\n"
                          "\r\n"
                          "Dear Bob,\r\n"
                          "the figures are attached.\r\n"
                          "\r\n"
                          "Alice\r\n";

static void
test_changes(void **state)
{
    static const struct {
        const char *name;
        const char *from, *to;
        const char *relaxed, *simple; /* "ok" or the reason given */
    } cases[] = {
        {"unchanged", "", "", "ok", "ok"},
        {"field name case", "Subject:", "SUBJECT:", "ok", "header hash"},
        {"space in a value", "the figures", "the  figures", "ok",
         "header hash"},
        {"space before the colon", "Subject:", "Subject :", "ok",
         "header hash"},
        {"folded", "Subject: the figures", "Subject: the\r\n\tfigures", "ok",
         "header hash"},
        {"trailing space in the header", "the figures\r\n", "the figures \r\n",
         "ok", "header hash"},
        {"letter in a signed field", "the figures\r\n", "the figureS\r\n",
         "header hash", "header hash"},
        {"unsigned field", "X-Unsigned: yes", "X-Unsigned: no", "ok", "ok"},
        {"field added that is not signed",
         "X-Unsigned:", "X-Other: 1\r\nX-Unsigned:", "ok", "ok"},
        {"From added (oversigned)", "From: Alice",
         "From: Mallory <m@example.org>\r\nFrom: Alice", "header hash",
         "header hash"},
        {"Subject added (oversigned)",
         "Date:", "Subject: buy\r\nDate:", "header hash", "header hash"},
        {"To fields swapped", "To: bob@example.net\r\nTo: carol@example.org",
         "To: carol@example.org\r\nTo: bob@example.net", "header hash",
         "header hash"},
        {"trailing space in the body", "attached.\r\n", "attached. \r\n", "ok",
         "body hash"},
        {"tab in the body", "Dear Bob", "Dear\tBob", "ok", "body hash"},
        {"empty lines at the end", "Alice\r\n", "Alice\r\n\r\n\r\n", "ok",
         "ok"},
        {"last CRLF missing", "Alice\r\n", "Alice", "ok", "ok"},
        {"letter in the body", "attached", "attacheD", "body hash",
         "body hash"},
        {"empty line removed", "\r\n\r\nAlice", "\r\nAlice", "body hash",
         "body hash"},
    };
    const struct test_key *keys[] = {&rsa, &ed};
    struct buf signed_;
    char why[256], name[128];
    size_t i, k;
    int c;

    (void)state;
    buf_init(&signed_, 0);
    for (k = 0; k < 2; k++)
        for (c = 0; c < 2; c++)
            for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                enum flt_dkim_canon canon =
                    c == 0 ? FLT_DKIM_RELAXED : FLT_DKIM_SIMPLE;
                char *changed;

                snprintf(name, sizeof(name), "%s, %s, %s", cases[i].name,
                         k == 0 ? "rsa" : "ed25519",
                         c == 0 ? "relaxed" : "simple");
                sign(keys[k], canon, canon, msg, NULL, &signed_);
                changed = replace(signed_.data, cases[i].from, cases[i].to);
                if (changed == NULL)
                    unit_fail(name, "\"%s\" not in the message",
                              cases[i].from);
                unit_str_eq(name,
                            check(keys[k], changed, NULL, why, sizeof(why)),
                            c == 0 ? cases[i].relaxed : cases[i].simple);
                free(changed);
            }
    buf_fini(&signed_);
}

/* The bh= value of a signed wire. */
static void
bh_of(const char *wire, char *out, size_t n)
{
    const char *p = strstr(wire, "bh="), *q;
    size_t k = 0;

    assert_non_null(p);
    for (q = p + 3; *q != ';' && *q != '\0' && k + 1 < n; q++)
        if (*q != ' ' && *q != '\t' && *q != '\r' && *q != '\n')
            out[k++] = *q;
    out[k] = '\0';
}

static void
test_body_hash(void **state)
{
    static const struct {
        const char *name;
        enum flt_dkim_canon canon;
        const char *body;       /* as sent */
        const char *canon_body; /* as RFC 6376 3.4 makes it */
    } cases[] = {
        /* RFC 6376 3.4.5 */
        {"rfc example relaxed", FLT_DKIM_RELAXED, " C \r\nD \t E\r\n\r\n\r\n",
         " C\r\nD E\r\n"},
        {"rfc example simple", FLT_DKIM_SIMPLE, " C \r\nD \t E\r\n\r\n\r\n",
         " C \r\nD \t E\r\n"},
        {"empty relaxed", FLT_DKIM_RELAXED, "", ""},
        {"empty simple", FLT_DKIM_SIMPLE, "", "\r\n"},
        {"only empty lines relaxed", FLT_DKIM_RELAXED, "\r\n\r\n", ""},
        {"only empty lines simple", FLT_DKIM_SIMPLE, "\r\n\r\n", "\r\n"},
        {"white space line relaxed", FLT_DKIM_RELAXED, "a\r\n \t \r\nb\r\n",
         "a\r\n\r\nb\r\n"},
        {"white space at the end relaxed", FLT_DKIM_RELAXED, "a\r\n  \r\n",
         "a\r\n"},
        {"white space at the end simple", FLT_DKIM_SIMPLE, "a\r\n  \r\n",
         "a\r\n  \r\n"},
        {"no final CRLF relaxed", FLT_DKIM_RELAXED, "a  b", "a b\r\n"},
        {"no final CRLF simple", FLT_DKIM_SIMPLE, "a  b", "a  b\r\n"},
        {"leading space kept as one", FLT_DKIM_RELAXED, "\t\tx\r\n", " x\r\n"},
        {"bare CR is content", FLT_DKIM_RELAXED, "a\rb\r\n", "a\rb\r\n"},
        {"two spaces relaxed", FLT_DKIM_RELAXED, "a  b\r\nc\r\n",
         "a b\r\nc\r\n"},
        {"two spaces simple", FLT_DKIM_SIMPLE, "a  b\r\nc\r\n",
         "a  b\r\nc\r\n"},
    };
    unsigned char digest[32];
    char want[64], got[64], wire[256];
    struct buf signed_;
    unsigned len;
    size_t i;

    (void)state;
    buf_init(&signed_, 0);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(wire, sizeof(wire), "From: a@example.com\r\n\r\n%s",
                 cases[i].body);
        sign(&ed, FLT_DKIM_RELAXED, cases[i].canon, wire, NULL, &signed_);
        bh_of(signed_.data, got, sizeof(got));
        assert_int_equal(EVP_Digest(cases[i].canon_body,
                                    strlen(cases[i].canon_body), digest, &len,
                                    EVP_sha256(), NULL),
                         1);
        EVP_EncodeBlock((unsigned char *)want, digest, (int)len);
        unit_str_eq(cases[i].name, got, want);
    }
    buf_fini(&signed_);
}

/* test_header_hash - the header hash input written out by hand for one
 * message (fields picked from the bottom up, RFC 6376 5.4.2; relaxed
 * form; the signature field last with an empty b= and no CRLF) must be
 * what the signature signs. */
static void
test_header_hash(void **state)
{
    static const char picked[] =
        "from:Alice <alice@example.com>\r\n"
        "to:carol@example.org\r\n" /* the bottom To first */
        "to:bob@example.net\r\n"
        "subject:the figures\r\n"
        "date:Thu, 26 Nov 2026 10:00:00 +0000\r\n";
    unsigned char digest[32], sig[128];
    char data[2048], b64[256];
    const char *p, *b, *end;
    struct buf signed_;
    size_t n = 0, k = 0;
    unsigned len;
    int space = 0, siglen;
    EVP_MD_CTX *mc;

    (void)state;
    buf_init(&signed_, 0);
    sign(&ed, FLT_DKIM_RELAXED, FLT_DKIM_RELAXED, msg, NULL, &signed_);
    n = (size_t)snprintf(data, sizeof(data), "%sdkim-signature:", picked);
    /* (h= is short here, so no value has a colon before white space.) */
    /* The field's value unfolded, white space runs made one space, b=
     * emptied: a second, plain reading of relaxed header canonicalization. */
    p = signed_.data + strlen("DKIM-Signature:");
    end = strstr(signed_.data, "\r\nFrom:");
    b = strstr(p, "; b=") + 4;
    for (; p < b; p++) {
        if (*p == '\r' || *p == '\n')
            continue;
        if (*p == ' ' || *p == '\t') {
            space = 1;
            continue;
        }
        if (space && data[n - 1] != ':') /* none after the name's colon */
            data[n++] = ' ';
        space = 0;
        data[n++] = *p;
    }
    for (; p < end; p++)
        if (*p != '\r' && *p != '\n' && *p != ' ' && *p != '\t')
            b64[k++] = *p;
    b64[k] = '\0';
    siglen = EVP_DecodeBlock(sig, (unsigned char *)b64, (int)k);
    assert_int_equal(siglen, 66); /* 64 octets and two of padding */
    assert_int_equal(EVP_Digest(data, n, digest, &len, EVP_sha256(), NULL), 1);
    mc = EVP_MD_CTX_new();
    assert_non_null(mc);
    assert_int_equal(EVP_DigestVerifyInit(mc, NULL, NULL, NULL, ed.pub), 1);
    if (EVP_DigestVerify(mc, sig, 64, digest, sizeof(digest)) != 1)
        unit_fail("header hash", "signature does not hold over \"%.*s\"",
                  (int)n, data);
    EVP_MD_CTX_free(mc);
    buf_fini(&signed_);
}

static void
test_field(void **state)
{
    static const char *const want[] = {
        "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/simple; d=example.com;",
        "t=1795680000;",
        "h=From:To:To:Subject:Date:From:Subject;",
        "bh=",
        "b=",
    };
    struct buf signed_;
    const char *p, *end;
    size_t i;

    (void)state;
    buf_init(&signed_, 0);
    sign(&rsa, FLT_DKIM_RELAXED, FLT_DKIM_SIMPLE, msg, NULL, &signed_);
    for (i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        unit_has("tags", signed_.data, want[i]);
    /* Folded lines of at most 78 octets; no l=, no z=. */
    end = strstr(signed_.data, "\r\nFrom:");
    assert_non_null(end);
    for (p = signed_.data; p < end;) {
        const char *nl = strstr(p, "\r\n");

        if (nl - p > 78)
            unit_fail("fold", "line of %d octets", (int)(nl - p));
        p = nl + 2;
    }
    if (strstr(signed_.data, " l=") != NULL ||
        strstr(signed_.data, " z=") != NULL)
        unit_fail("tags", "l= or z= in %s", signed_.data);
    buf_fini(&signed_);
}

static void
test_refusals(void **state)
{
    static const struct {
        const char *name;
        const char *field; /* put on top of msg */
        const char *want;
    } cases[] = {
        {"no signature", "", "signature not found"},
        {"another selector",
         "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=t2; h=from; "
         "bh=x; b=y\r\n",
         "signature not found"},
        {"not a tag list",
         "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=t1; =;\r\n",
         "signature not found"},
        {"tag twice",
         "DKIM-Signature: v=1; v=1; d=example.com; s=t1; h=from; bh=x; "
         "b=y\r\n",
         "signature not found"},
        {"no b=",
         "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=t1; h=from; "
         "bh=x\r\n",
         "bad tag list"},
        {"unknown c=",
         "DKIM-Signature: v=1; a=rsa-sha256; c=loose; d=example.com; s=t1; "
         "h=from; bh=x; b=y\r\n",
         "bad tag list"},
        {"other algorithm",
         "DKIM-Signature: v=1; a=rsa-sha1; d=example.com; s=t1; h=from; "
         "bh=x; b=y\r\n",
         "a= is not rsa-sha256"},
        {"wrong body hash",
         "DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=t1; h=from; "
         "bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=y\r\n",
         "body hash"},
    };
    char why[256], wire[2048];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(wire, sizeof(wire), "%s%s", cases[i].field, msg);
        unit_has(cases[i].name, check(&rsa, wire, NULL, why, sizeof(why)),
                 cases[i].want);
    }
}

static void
test_keys_and_memo(void **state)
{
    struct flt_dkim_body_memo memo = {0};
    struct buf a, b;
    char why[256], *changed;

    (void)state;
    buf_init(&a, 0);
    buf_init(&b, 0);
    /* The other key's public half does not verify. */
    sign(&rsa, FLT_DKIM_RELAXED, FLT_DKIM_RELAXED, msg, NULL, &a);
    unit_str_eq("rsa signature, ed25519 key",
                check(&ed, a.data, NULL, why, sizeof(why)),
                "a= is not ed25519-sha256");
    /* Two signatures over one body share the hash through the memo. */
    sign(&rsa, FLT_DKIM_RELAXED, FLT_DKIM_RELAXED, msg, &memo, &a);
    unit_int_eq("memo filled", memo.valid, 1);
    sign(&ed, FLT_DKIM_RELAXED, FLT_DKIM_RELAXED, msg, &memo, &b);
    unit_str_eq("memo, rsa", check(&rsa, a.data, &memo, why, sizeof(why)),
                "ok");
    unit_str_eq("memo, ed25519", check(&ed, b.data, &memo, why, sizeof(why)),
                "ok");
    /* A memo is trusted only for the octets it was made from. */
    changed = replace(a.data, "attached", "attacheD");
    unit_str_eq("memo, changed body",
                check(&rsa, changed, &memo, why, sizeof(why)), "body hash");
    free(changed);
    /* With a wrong digest in it, the memo shows when it is used: for the
     * same octets and canonicalization it is (the check then fails), for
     * another canonicalization it is not (the check hashes and holds). */
    memo.digest[0] ^= 1;
    unit_str_eq("memo used for the same body",
                check(&rsa, a.data, &memo, why, sizeof(why)), "body hash");
    memo.canon = FLT_DKIM_SIMPLE;
    unit_str_eq("memo of another canonicalization not used",
                check(&rsa, a.data, &memo, why, sizeof(why)), "ok");
    buf_fini(&a);
    buf_fini(&b);
}

/* test_long_b - a b= value longer than any signature the stage makes is
 * refused, and one just short of that is decoded without overrunning
 * anything (the sanitizer build watches). */
static void
test_long_b(void **state)
{
    static const struct {
        const char *name;
        size_t len; /* base64 octets in b= */
        const char *want;
    } cases[] = {
        {"longest that fits", 1368, "header hash"},
        {"too long", 1372, "b= is not base64"},
        {"not a multiple of 4", 1367, "b= is not base64"},
    };
    struct buf signed_, wire;
    const char *b, *end;
    char why[256];
    struct err e;
    size_t i, k;

    (void)state;
    buf_init(&signed_, 0);
    buf_init(&wire, 0);
    sign(&rsa, FLT_DKIM_RELAXED, FLT_DKIM_RELAXED, msg, NULL, &signed_);
    b = strstr(signed_.data, "; b=") + 4;
    end = strstr(b, "\r\nFrom:");
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        buf_reset(&wire);
        assert_int_equal(
            buf_append(&wire, signed_.data, (size_t)(b - signed_.data), &e),
            0);
        for (k = 0; k < cases[i].len; k++)
            assert_int_equal(buf_putc(&wire, 'A', &e), 0);
        assert_int_equal(buf_puts(&wire, end, &e), 0);
        unit_str_eq(cases[i].name,
                    check(&rsa, wire.data, NULL, why, sizeof(why)),
                    cases[i].want);
    }
    buf_fini(&signed_);
    buf_fini(&wire);
}

/* The one tag-list reader, as the stage and "relaychain dkim testkey"
 * use it: RFC 6376 3.2, so a list that is not one has no tags. */
static void
test_tag_value(void **state)
{
    static const struct {
        const char *name, *list, *tag;
        int want_rc;
        const char *want;
    } cases[] = {
        {"plain", "v=1; a=rsa-sha256; d=example.com", "d", 1, "example.com"},
        {"white space", " d = exa\r\n\tmple.com ;", "d", 1, "example.com"},
        {"empty value", "v=DKIM1; k=rsa; p=", "p", 1, ""},
        {"last ;", "v=DKIM1; k=rsa;", "k", 1, "rsa"},
        {"absent", "v=1; d=example.com", "s", 0, NULL},
        {"case", "D=example.com", "d", 0, NULL},
        {"name with digit", "d2=x; d=y", "d", 1, "y"},
        {"name starts with a digit", "2d=x; d=y", "d", 0, NULL},
        {"tag twice", "d=a; d=b", "d", 0, NULL},
        {"no =", "v=1; junk; d=example.com", "d", 0, NULL},
        {"space in name", "d x=1; d=y", "d", 0, NULL},
        {"cut short", "b=0123456789", "b", 1, "0123"},
    };
    char out[64];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* "cut short" has room for four octets and the NUL */
        size_t room =
            strcmp(cases[i].name, "cut short") == 0 ? 5 : sizeof(out);
        int rc = flt_dkim_tag_value(cases[i].list, cases[i].tag, out, room);

        unit_int_eq(cases[i].name, rc, cases[i].want_rc);
        if (rc == 1)
            unit_str_eq(cases[i].name, out, cases[i].want);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_changes),
        cmocka_unit_test(test_body_hash),
        cmocka_unit_test(test_header_hash),
        cmocka_unit_test(test_field),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_keys_and_memo),
        cmocka_unit_test(test_long_b),
        cmocka_unit_test(test_tag_value),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
