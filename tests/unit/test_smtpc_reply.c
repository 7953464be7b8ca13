/*
 * test_smtpc_reply - the next-hop reply parser, case by case
 *
 * smtpc_reply_parse() reads what a relay answered: one line or a
 * multi-line reply, complete or still arriving. Each case gives the
 * input, the result wanted (1 complete, 0 more needed, -1 not a reply),
 * and for complete replies the code, the text of the last line and the
 * octets consumed. The text is what the SMTP front end passes back to its
 * own client, so it must never carry a line end or another control
 * character.
 */
#include "config.h"

#include "unit.h"

#include "net/smtpc.h"

struct reply_case {
    const char *name;
    const char *in;
    size_t len; /* 0: strlen(in) */
    int want;
    int code;
    const char *text;
    size_t used; /* 0: the whole input */
};

static const struct reply_case cases[] = {
    {"single", "250 2.0.0 Ok: queued as 4Xy\r\n", 0, 1, 250,
     "2.0.0 Ok: queued as 4Xy", 0},
    {"multi-line, last line's text",
     "250-smtp.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n", 0, 1, 250,
     "8BITMIME", 0},
    {"enhanced code kept",
     "550 5.1.1 <nobody@example.com>: Recipient address rejected\r\n", 0, 1,
     550, "5.1.1 <nobody@example.com>: Recipient address rejected", 0},
    {"4xx", "451 4.3.0 Error: queue file write error\r\n", 0, 1, 451,
     "4.3.0 Error: queue file write error", 0},
    {"LF only", "354 go ahead\n", 0, 1, 354, "go ahead", 0},
    {"code only", "250\r\n", 0, 1, 250, "", 0},
    {"code and space", "250 \r\n", 0, 1, 250, "", 0},
    {"empty continuation", "250-\r\n250 done\r\n", 0, 1, 250, "done", 0},
    {"a second reply is left", "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n", 0, 1, 250,
     "2.1.0 Ok", 14},
    {"control characters become ?", "250 a\001b\rc\x7f\td\r\n", 0, 1, 250,
     "a?b?c?\td", 0},
    {"NUL in the text", "250 a\0b\r\n", 9, 1, 250, "a?b", 0},
    {"8-bit text kept", "250 2.0.0 d\xc3\xa9j\xc3\xa0\r\n", 0, 1, 250,
     "2.0.0 d\xc3\xa9j\xc3\xa0", 0},

    {"nothing yet", "", 0, 0, 0, NULL, 0},
    {"two digits", "25", 0, 0, 0, NULL, 0},
    {"code without line end", "250", 0, 0, 0, NULL, 0},
    {"code and CR", "250\r", 0, 0, 0, NULL, 0},
    {"partial text", "250 2.0.0 O", 0, 0, 0, NULL, 0},
    {"continuation only", "250-first\r\n", 0, 0, 0, NULL, 0},
    {"last line arriving", "250-first\r\n250 sec", 0, 0, 0, NULL, 0},

    {"mismatched codes", "250-first\r\n251 second\r\n", 0, -1, 0, NULL, 0},
    {"mismatch seen early", "250-first\r\n251", 0, -1, 0, NULL, 0},
    {"missing space", "250Ok\r\n", 0, -1, 0, NULL, 0},
    {"missing space, partial", "250O", 0, -1, 0, NULL, 0},
    {"1xx is not SMTP", "150 go\r\n", 0, -1, 0, NULL, 0},
    {"6xx", "650 no\r\n", 0, -1, 0, NULL, 0},
    {"second digit 6", "260 no\r\n", 0, -1, 0, NULL, 0},
    {"letters", "abc def\r\n", 0, -1, 0, NULL, 0},
    {"letters, partial", "2x", 0, -1, 0, NULL, 0},
    {"empty line", "\r\n", 0, -1, 0, NULL, 0},
    {"short line", "25\r\n", 0, -1, 0, NULL, 0},
    {"CR inside the code", "25\r", 0, -1, 0, NULL, 0},
    {"HTTP", "HTTP/1.1 400 Bad Request\r\n", 0, -1, 0, NULL, 0},
    {"leading space", " 250 ok\r\n", 0, -1, 0, NULL, 0},
};

static void
test_cases(void **state)
{
    struct smtpc_reply r;
    size_t i, len, used;
    int rc;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct reply_case *c = &cases[i];

        len = c->len ? c->len : strlen(c->in);
        memset(&r, 0x55, sizeof(r));
        used = 12345;
        rc = smtpc_reply_parse(c->in, len, &r, &used);
        unit_int_eq(c->name, rc, c->want);
        if (rc != 1) {
            unit_int_eq(c->name, used, 0);
            continue;
        }
        unit_int_eq(c->name, r.code, c->code);
        unit_str_eq(c->name, r.text, c->text);
        unit_int_eq(c->name, used, c->used ? c->used : len);
    }
}

/* build - n lines of "250-x\r\n" and a last "250 end\r\n" when last. */
static char *
build(size_t n, int last, size_t *len)
{
    char *s = malloc(n * 7 + 16);
    size_t i, o = 0;

    assert_non_null(s);
    for (i = 0; i < n; i++) {
        memcpy(s + o, "250-x\r\n", 7);
        o += 7;
    }
    if (last) {
        memcpy(s + o, "250 end\r\n", 9);
        o += 9;
    }
    *len = o;
    return s;
}

static void
test_limits(void **state)
{
    struct smtpc_reply r;
    size_t len, used;
    char *s;

    (void)state;
    s = build(99, 1, &len);
    unit_int_eq("100 lines", smtpc_reply_parse(s, len, &r, &used), 1);
    unit_str_eq("100 lines", r.text, "end");
    free(s);
    s = build(100, 1, &len);
    unit_int_eq("101 lines", smtpc_reply_parse(s, len, &r, &used), -1);
    free(s);
    s = build(101, 0, &len);
    unit_int_eq("101 continuation lines, unfinished",
                smtpc_reply_parse(s, len, &r, &used), -1);
    free(s);

    /* one line of 64 KiB and more, finished or not */
    len = 70000;
    assert_non_null(s = malloc(len));
    memset(s, 'a', len);
    memcpy(s, "250 ", 4);
    unit_int_eq("70000 octets, no line end",
                smtpc_reply_parse(s, len, &r, &used), -1);
    s[len - 2] = '\r';
    s[len - 1] = '\n';
    unit_int_eq("70000 octets", smtpc_reply_parse(s, len, &r, &used), -1);
    /* just under the limit is fine, and the text is cut to fit */
    len = 64 * 1024;
    s[len - 2] = '\r';
    s[len - 1] = '\n';
    unit_int_eq("64 KiB", smtpc_reply_parse(s, len, &r, &used), 1);
    unit_int_eq("64 KiB text", strlen(r.text), sizeof(r.text) - 1);
    unit_int_eq("64 KiB used", used, len);
    free(s);
}

/* Fed one octet at a time, the parser says 0 until the last LF. */
static void
test_incremental(void **state)
{
    static const char text[] =
        "250-relay.example\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
        "250-STARTTLS\r\n250 XFORWARD NAME ADDR PROTO HELO\r\n";
    struct smtpc_reply r;
    size_t n, used;
    int rc;

    (void)state;
    for (n = 0; n < sizeof(text) - 1; n++) {
        rc = smtpc_reply_parse(text, n, &r, &used);
        if (rc != 0)
            unit_fail("incremental", "got %d after %zu octets, want 0", rc, n);
    }
    unit_int_eq("incremental", smtpc_reply_parse(text, n, &r, &used), 1);
    unit_str_eq("incremental", r.text, "XFORWARD NAME ADDR PROTO HELO");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_incremental),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
