/*
 * test_esmtp - ESMTP parameters and RFC 3461 xtext
 *
 * What the SMTP server accepts in MAIL and RCPT, what the queue reads
 * back of it (NOTIFY, the parameters passed on) and what the DSN builder
 * decodes (ORCPT, ENVID) all go through util/esmtp, so each case here is
 * a reply or a report field a user would see change: a parameter found
 * or not, an xtext refused or decoded, a NOTIFY list taken or answered
 * 501. Encoding and decoding must give every value without control
 * characters back unchanged, and the decoder must never write past its
 * buffer, however long the input.
 */
#include "config.h"

#include "unit.h"

#include "util/esmtp.h"

static void
test_param(void **state)
{
    static const struct {
        const char *name, *params, *key, *want; /* want NULL: absent */
    } cases[] = {
        {"first", "NOTIFY=FAILURE ORCPT=rfc822;a@b", "NOTIFY", "FAILURE"},
        {"second", "NOTIFY=FAILURE ORCPT=rfc822;a@b", "ORCPT", "rfc822;a@b"},
        {"case", "notify=never", "NOTIFY", "never"},
        {"prefix only", "NOTIFYX=1", "NOTIFY", NULL},
        {"longer key", "NOTIF=1", "NOTIFY", NULL},
        {"keyword", "SMTPUTF8 BODY=8BITMIME", "SMTPUTF8", ""},
        {"keyword last", "BODY=8BITMIME SMTPUTF8", "SMTPUTF8", ""},
        {"empty value", "ENVID= RET=HDRS", "ENVID", ""},
        {"absent", "BODY=7BIT", "RET", NULL},
        {"extra spaces", "  SIZE=10   BODY=7BIT  ", "BODY", "7BIT"},
        {"value with '='", "ENVID=a=b", "ENVID", "a=b"},
        {"empty params", "", "SIZE", NULL},
        {"no params", NULL, "SIZE", NULL},
    };
    size_t i, len;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *v = esmtp_param(cases[i].params, cases[i].key, &len);
        char got[64];

        if (v == NULL) {
            unit_str_eq(cases[i].name, NULL, cases[i].want);
            continue;
        }
        snprintf(got, sizeof(got), "%.*s", (int)len, v);
        unit_str_eq(cases[i].name, got, cases[i].want);
    }
}

static void
test_xtext_decode(void **state)
{
    enum { ALL = 64 }; /* the whole output buffer */
    static const struct {
        const char *name, *in, *want; /* want NULL: refused */
        size_t size;                  /* of the output */
    } cases[] = {
        {"plain", "abc-123", "abc-123", ALL},
        {"plus", "a+2Bb", "a+b", ALL},
        {"equals", "a+3Db", "a=b", ALL},
        {"space encoded", "a+20b", "a b", ALL},
        {"8-bit encoded", "+C3+A9", "\xc3\xa9", ALL},
        {"escape at the end", "ab+2B", "ab+", ALL},
        {"lower hex", "a+2bb", NULL, ALL},
        {"not hex", "a+G0b", NULL, ALL},
        {"short escape", "ab+2", NULL, ALL},
        {"lone plus", "ab+", NULL, ALL},
        {"bare equals", "a=b", NULL, ALL},
        {"control char", "a+0Ab", NULL, ALL},
        {"NUL", "a+00b", NULL, ALL},
        {"DEL", "a+7Fb", NULL, ALL},
        {"bare space", "a b", NULL, ALL},
        {"bare 8-bit", "a\xc3\xa9", NULL, ALL},
        {"empty", "", "", ALL},
        {"fits exactly", "abcd", "abcd", 5},
        {"one octet too many", "abcde", NULL, 5},
        {"escape over the limit", "abc+2B", NULL, 4},
        {"no room at all", "", NULL, 0},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[ALL + 1];
        size_t size = cases[i].size;
        int rc;

        memset(out, 'X', sizeof(out));
        rc = esmtp_xtext_decode(cases[i].in, strlen(cases[i].in), out, size);
        if (cases[i].want == NULL) {
            if (rc != -1)
                unit_fail(cases[i].name, "got \"%s\", want refused", out);
        } else if (rc != 0) {
            unit_fail(cases[i].name, "got refused, want \"%s\"",
                      cases[i].want);
        } else {
            unit_str_eq(cases[i].name, out, cases[i].want);
        }
        /* nothing beyond the buffer it was given */
        if (out[size] != 'X')
            unit_fail(cases[i].name, "wrote past %zu octets", size);
    }
}

static void
test_xtext_encode(void **state)
{
    static const struct {
        const char *name, *in, *want;
    } cases[] = {
        {"plain", "client.example", "client.example"},
        {"plus and equals", "a+b=c", "a+2Bb+3Dc"},
        {"space", "HELO name", "HELO+20name"},
        {"control", "a\tb", "a+09b"},
        {"8-bit", "\xc3\xa9", "+C3+A9"},
        {"brackets kept", "[192.0.2.1]", "[192.0.2.1]"},
        {"empty", "", ""},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf b;
        struct err e;

        buf_init(&b, 0);
        if (esmtp_xtext_encode(&b, cases[i].in, &e) < 0)
            unit_fail(cases[i].name, "refused: %s", e.text);
        unit_str_eq(cases[i].name, b.data ? b.data : "", cases[i].want);
        buf_fini(&b);
    }
}

/* Every octet but the controls, alone and in company: encoded, then
 * decoded, it comes back as it was. */
static void
test_xtext_roundtrip(void **state)
{
    char in[8], out[32], name[32];
    struct buf b;
    struct err e;
    int c;

    (void)state;
    for (c = 0x20; c <= 0xff; c++) {
        if (c == 0x7f)
            continue;
        snprintf(name, sizeof(name), "octet 0x%02x", c);
        snprintf(in, sizeof(in), "a%cb", c);
        buf_init(&b, 0);
        if (esmtp_xtext_encode(&b, in, &e) < 0)
            unit_fail(name, "encode: %s", e.text);
        if (esmtp_xtext_decode(b.data, b.len, out, sizeof(out)) < 0)
            unit_fail(name, "\"%s\" does not decode", b.data);
        unit_str_eq(name, out, in);
        buf_fini(&b);
    }
}

/* At the buffer's limit the encoder fails with ERR_LIMIT (XFORWARD then
 * sends [UNAVAILABLE]) instead of cutting an escape in half. */
static void
test_xtext_encode_limit(void **state)
{
    struct buf b;
    struct err e;

    (void)state;
    buf_init(&b, 4);
    unit_int_eq("4 octets fit", esmtp_xtext_encode(&b, "abcd", &e), 0);
    buf_reset(&b);
    unit_int_eq("an escape past the limit", esmtp_xtext_encode(&b, "ab=", &e),
                -1);
    unit_int_eq("ERR_LIMIT", e.code, ERR_LIMIT);
    buf_fini(&b);
}

static void
test_xforward_decode(void **state)
{
    static const struct {
        const char *name, *in;
        int space;
        const char *want; /* NULL: refused */
    } cases[] = {
        {"plain", "client.example", 0, "client.example"},
        {"upper hex", "a+2Bb", 0, "a+b"},
        {"lower hex", "a+2bb", 0, "a+b"},
        {"space in HELO", "my+20host", 1, "my host"},
        {"space elsewhere", "my+20host", 0, NULL},
        {"plus at the end", "ab+", 0, "ab+"},
        {"plus one before the end", "ab+2", 0, "ab+2"},
        {"not hex", "a+ZZb", 0, NULL},
        {"control", "a+0Ab", 1, NULL},
        {"DEL", "a+7F", 0, NULL},
        {"bare equals", "a=b", 0, "a=b"},
        {"[UNAVAILABLE]", "[UNAVAILABLE]", 0, "[UNAVAILABLE]"},
        {"too long", "0123456789abcdef", 0, NULL},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[16];
        int rc = esmtp_xforward_decode(cases[i].in, strlen(cases[i].in), out,
                                       sizeof(out), cases[i].space);

        if (cases[i].want == NULL) {
            if (rc != -1)
                unit_fail(cases[i].name, "got \"%s\", want refused", out);
        } else if (rc != 0) {
            unit_fail(cases[i].name, "got refused, want \"%s\"",
                      cases[i].want);
        } else {
            unit_str_eq(cases[i].name, out, cases[i].want);
        }
    }
}

static void
test_notify(void **state)
{
    static const struct {
        const char *value;
        int ok;
        /* what a recipient with NOTIFY=value is told about; -1: not
         * asked (the value is refused before it is stored) */
        int success, failure, delay;
    } cases[] = {
        {"NEVER", 1, 0, 0, 0},
        {"SUCCESS", 1, 1, 0, 0},
        {"FAILURE,DELAY", 1, 0, 1, 1},
        {"success,failure,delay", 1, 1, 1, 1},
        {"SUCCESS,", 1, 1, 0, 0},
        {"", 0, -1, -1, -1},
        {"NEVER,SUCCESS", 0, -1, -1, -1},
        {"NEVER,NEVER", 0, -1, -1, -1},
        {"SUCCESS,,FAILURE", 0, -1, -1, -1},
        {",SUCCESS", 0, -1, -1, -1},
        {"SOMETIMES", 0, -1, -1, -1},
        {"SUCCESSFUL", 0, -1, -1, -1},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char params[64];

        unit_int_eq(cases[i].value,
                    esmtp_notify_check(cases[i].value, strlen(cases[i].value)),
                    cases[i].ok ? 0 : -1);
        if (!cases[i].ok)
            continue;
        snprintf(params, sizeof(params), "ORCPT=rfc822;a@b NOTIFY=%s",
                 cases[i].value);
        unit_int_eq(cases[i].value, esmtp_notify_wants(params, "SUCCESS"),
                    cases[i].success);
        unit_int_eq(cases[i].value, esmtp_notify_wants(params, "FAILURE"),
                    cases[i].failure);
        unit_int_eq(cases[i].value, esmtp_notify_wants(params, "DELAY"),
                    cases[i].delay);
    }
    /* without NOTIFY: failures and delays, as Postfix */
    unit_int_eq("no NOTIFY: success", esmtp_notify_wants("", "SUCCESS"), 0);
    unit_int_eq("no NOTIFY: failure", esmtp_notify_wants(NULL, "FAILURE"), 1);
    unit_int_eq("no NOTIFY: delay", esmtp_notify_wants("BODY=7BIT", "DELAY"),
                1);
}

static void
test_orcpt(void **state)
{
    static const struct {
        const char *name, *value, *type, *addr; /* type NULL: refused */
    } cases[] = {
        {"plain", "rfc822;a@example.org", "rfc822", "a@example.org"},
        {"xtext", "rfc822;a+2Bb@example.org", "rfc822", "a+b@example.org"},
        {"utf-8 type", "utf-8;a@b", "utf-8", "a@b"},
        {"empty address", "rfc822;", "rfc822", ""},
        {"no type", ";a@b", NULL, NULL},
        {"no semicolon", "a@b", NULL, NULL},
        {"bad xtext", "rfc822;a=b", NULL, NULL},
        {"control", "rfc822;a+0Db", NULL, NULL},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[64], type[64];
        size_t tl = 0;
        int rc = esmtp_orcpt_split(cases[i].value, strlen(cases[i].value), &tl,
                                   out, sizeof(out));

        if (cases[i].type == NULL) {
            unit_int_eq(cases[i].name, rc, -1);
            continue;
        }
        if (rc != 0)
            unit_fail(cases[i].name, "refused, want \"%s\"", cases[i].addr);
        snprintf(type, sizeof(type), "%.*s", (int)tl, cases[i].value);
        unit_str_eq(cases[i].name, type, cases[i].type);
        unit_str_eq(cases[i].name, out, cases[i].addr);
    }
}

static void
test_params_pick(void **state)
{
    static const char *const keys[] = {"NOTIFY", "ORCPT", NULL};
    static const struct {
        const char *name, *params;
        size_t size;
        const char *want;
    } cases[] = {
        {"both, in the keys' order", "orcpt=rfc822;a@b notify=NEVER", 64,
         "NOTIFY=NEVER ORCPT=rfc822;a@b"},
        {"others left out", "BODY=8BITMIME NOTIFY=SUCCESS SMTPUTF8", 64,
         "NOTIFY=SUCCESS"},
        {"none", "BODY=7BIT", 64, ""},
        {"the second does not fit", "NOTIFY=NEVER ORCPT=rfc822;a@b", 16,
         "NOTIFY=NEVER"},
        {"nothing fits", "NOTIFY=NEVER", 8, ""},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[64];

        esmtp_params_pick(cases[i].params, keys, out, cases[i].size);
        unit_str_eq(cases[i].name, out, cases[i].want);
    }
}

static void
test_params_without(void **state)
{
    static const char *const keys[] = {"RET", "ENVID", "NOTIFY", "ORCPT",
                                       NULL};
    static const struct {
        const char *name, *params, *want;
        int dropped;
    } cases[] = {
        {"none to drop", "SIZE=10 BODY=7BIT", "SIZE=10 BODY=7BIT", 0},
        {"DSN dropped", "SIZE=10 RET=HDRS ENVID=x BODY=7BIT",
         "SIZE=10 BODY=7BIT", 1},
        {"case", "notify=NEVER orcpt=rfc822;a@b", "", 1},
        {"longer keyword kept", "RETX=1 ENVIDS", "RETX=1 ENVIDS", 0},
        {"bare keyword dropped", "RET SMTPUTF8", "SMTPUTF8", 1},
        {"spaces squeezed", "  SIZE=1   SMTPUTF8  ", "SIZE=1 SMTPUTF8", 0},
        {"empty", "", "", 0},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int dropped = -1;
        char *out = esmtp_params_without(cases[i].params, keys, &dropped);

        assert_non_null(out);
        unit_str_eq(cases[i].name, out, cases[i].want);
        unit_int_eq(cases[i].name, dropped, cases[i].dropped);
        free(out);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_param),
        cmocka_unit_test(test_xtext_decode),
        cmocka_unit_test(test_xtext_encode),
        cmocka_unit_test(test_xtext_roundtrip),
        cmocka_unit_test(test_xtext_encode_limit),
        cmocka_unit_test(test_xforward_decode),
        cmocka_unit_test(test_notify),
        cmocka_unit_test(test_orcpt),
        cmocka_unit_test(test_params_pick),
        cmocka_unit_test(test_params_without),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
