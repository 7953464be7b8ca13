/*
 * test_mime - the shared GMime parse: each message of the table gets
 * exactly the expected ambiguity flags, depth and part count
 */
#include "config.h"

#include "unit.h"

#include "util/buf.h"
#include "util/err.h"
#include "msg/mime.h"
#include "msg/msg.h"

#define CLEAN_ALT                                                             \
    "From: a@example.com\n"                                                   \
    "MIME-Version: 1.0\n"                                                     \
    "Content-Type: multipart/alternative; boundary=\"b1\"\n"                  \
    "\n"                                                                      \
    "preamble\n"                                                              \
    "--b1\n"                                                                  \
    "Content-Type: text/plain\n"                                              \
    "\n"                                                                      \
    "hello\n"                                                                 \
    "--b1\n"                                                                  \
    "Content-Type: text/html\n"                                               \
    "\n"                                                                      \
    "<p>hello</p>\n"                                                          \
    "--b1--\n"                                                                \
    "epilogue\n"

static const struct {
    const char *name;
    const char *text;
    unsigned depth_limit;
    unsigned parts_limit;
    unsigned want_flags;
    unsigned want_depth;
    unsigned want_parts;
} cases[] = {
    {"clean multipart/alternative", CLEAN_ALT, 0, 0, 0, 1, 3},
    {"clean text", "From: a\nSubject: s\n\nhello\n", 0, 0, 0, 0, 1},
    {"clean crlf",
     "From: a\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n"
     "--b1\r\nContent-Type: text/plain\r\n\r\nx\r\n--b1--\r\n",
     0, 0, 0, 1, 2},
    {"close delimiter with trailing white space, no final line end",
     "From: a\nContent-Type: multipart/mixed; boundary=b1\n\n"
     "--b1\n\nx\n--b1--  \t",
     0, 0, 0, 1, 2},
    {"empty message", "", 0, 0, 0, 0, 1},
    {"nested multipart reuses its parent's boundary",
     "From: a\nContent-Type: multipart/mixed; boundary=\"b1\"\n\n"
     "--b1\nContent-Type: multipart/alternative; boundary=\"b1\"\n\n"
     "--b1\nContent-Type: text/plain\n\nhi\n--b1--\n--b1--\n",
     0, 0, MIME_AMBIG_DUP_BOUNDARY, 2, 3},
    {"two sibling multiparts share a boundary",
     "From: a\nContent-Type: multipart/mixed; boundary=b1\n\n"
     "--b1\nContent-Type: multipart/mixed; boundary=b2\n\n--b2\n\nx\n--b2--\n"
     "--b1\nContent-Type: multipart/mixed; boundary=b2\n\n--b2\n\ny\n--b2--\n"
     "--b1--\n",
     0, 0, MIME_AMBIG_DUP_BOUNDARY, 2, 5},
    {"two Content-Type fields with different values",
     "From: a\nContent-Type: text/plain\nContent-Type: text/html\n\nhi\n", 0,
     0, MIME_AMBIG_CONFLICTING_TYPE, 0, 1},
    {"two Content-Type fields with the same value",
     "From: a\nContent-Type: text/plain\nContent-Type:  text/plain\n\nhi\n", 0,
     0, 0, 0, 1},
    {"two Content-Type fields in a part",
     "From: a\nContent-Type: multipart/mixed; boundary=b1\n\n"
     "--b1\nContent-Type: text/plain\nContent-Type: application/x-exe\n\n"
     "hi\n--b1--\n",
     0, 0, MIME_AMBIG_CONFLICTING_TYPE, 1, 2},
    {"boundary given twice with different values",
     "From: a\nContent-Type: multipart/mixed; boundary=\"b1\"; boundary=\"b2\""
     "\n\n--b1\nContent-Type: text/plain\n\nhi\n--b1--\n",
     0, 0, MIME_AMBIG_DUP_PARAM, 1, 2},
    {"boundary given twice with the same value",
     "From: a\nContent-Type: multipart/mixed; boundary=b1;\n boundary=b1\n\n"
     "--b1\n\nhi\n--b1--\n",
     0, 0, MIME_AMBIG_DUP_PARAM, 1, 2},
    {"charset given twice",
     "From: a\nContent-Type: text/plain; charset=utf-8; charset=koi8-r\n\n"
     "hi\n",
     0, 0, MIME_AMBIG_DUP_PARAM, 0, 1},
    {"filename given twice with different values",
     "From: a\nContent-Disposition: attachment; filename=a.txt; "
     "filename=a.exe\n\nhi\n",
     0, 0, MIME_AMBIG_DUP_PARAM, 0, 1},
    {"a semicolon inside a quoted value is not a parameter",
     "From: a\nContent-Type: multipart/mixed; boundary=\"x; boundary=y\"\n\n"
     "--x; boundary=y\n\nhi\n--x; boundary=y--\n",
     0, 0, 0, 1, 2},
    {"multipart missing its final boundary",
     "From: a\nContent-Type: multipart/mixed; boundary=b1\n\n"
     "--b1\nContent-Type: text/plain\n\nhi\n",
     0, 0, MIME_AMBIG_MISSING_END, 1, 2},
    {"nested multipart missing its final boundary",
     "From: a\nContent-Type: multipart/mixed; boundary=b1\n\n"
     "--b1\nContent-Type: multipart/alternative; boundary=b2\n\n"
     "--b2\nContent-Type: text/plain\n\nhi\n--b1--\n",
     0, 0, MIME_AMBIG_MISSING_END, 2, 3},
    {"close delimiter only in an earlier part's text",
     "From: a\nContent-Type: multipart/mixed; boundary=b1\n\n"
     "--b1\nContent-Type: text/plain\n\n--b2--\n"
     "--b1\nContent-Type: multipart/alternative; boundary=b2\n\n"
     "--b2\n\nhi\n--b1--\n",
     0, 0, MIME_AMBIG_MISSING_END, 2, 4},
    {"close delimiter with text after it on the line does not count",
     "From: a\nContent-Type: multipart/mixed; boundary=b1\n\n"
     "--b1\n\nhi\n--b1--x\n",
     0, 0, MIME_AMBIG_MISSING_END, 1, 2},
    {"multipart without boundary parameter",
     "From: a\nContent-Type: multipart/mixed\n\n--b1\n\nhi\n--b1--\n", 0, 0,
     MIME_AMBIG_NO_BOUNDARY, 1, 1},
    {"depth over the limit",
     "From: a\nContent-Type: multipart/mixed; boundary=b1\n\n"
     "--b1\nContent-Type: multipart/mixed; boundary=b2\n\n"
     "--b2\nContent-Type: multipart/mixed; boundary=b3\n\n"
     "--b3\n\nhi\n--b3--\n--b2--\n--b1--\n",
     2, 0, MIME_AMBIG_TOO_DEEP, 3, 4},
    {"depth at the limit",
     "From: a\nContent-Type: multipart/mixed; boundary=b1\n\n"
     "--b1\nContent-Type: multipart/mixed; boundary=b2\n\n"
     "--b2\n\nhi\n--b2--\n--b1--\n",
     2, 0, 0, 2, 3},
    {"message/rfc822 counts toward depth",
     "From: a\nContent-Type: multipart/mixed; boundary=b1\n\n"
     "--b1\nContent-Type: message/rfc822\n\n"
     "From: b\nContent-Type: multipart/alternative; boundary=b2\n\n"
     "--b2\n\nhi\n--b2--\n--b1--\n",
     2, 0, MIME_AMBIG_TOO_DEEP, 3, 4},
    {"message/rfc822 at the top",
     "From: a\nContent-Type: message/rfc822\n\nFrom: b\nSubject: s\n\nhi\n", 1,
     0, 0, 1, 2},
    {"too many parts",
     "From: a\nContent-Type: multipart/mixed; boundary=b1\n\n"
     "--b1\n\n1\n--b1\n\n2\n--b1\n\n3\n--b1--\n",
     0, 3, MIME_AMBIG_TOO_MANY_PARTS, 1, 4},
    {"parts at the limit",
     "From: a\nContent-Type: multipart/mixed; boundary=b1\n\n"
     "--b1\n\n1\n--b1\n\n2\n--b1--\n",
     0, 3, 0, 1, 3},
    {"first line is not a header", "this is not a header\nFrom: a\n\nhi\n", 0,
     0, MIME_AMBIG_MALFORMED, 0, 1},
    {"conflicting Content-Transfer-Encoding",
     "From: a\nContent-Transfer-Encoding: base64\n"
     "Content-Transfer-Encoding: 7bit\n\naGk=\n",
     0, 0, MIME_AMBIG_MALFORMED, 0, 1},
    {"two different Subject fields are not a MIME matter",
     "From: a\nSubject: one\nSubject: two\n\nhi\n", 0, 0, 0, 0, 1},
};

static void
test_flags(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct msg_limits lim = {0, 0, 0, 0, 0};
        struct mime *mm;
        struct err e;
        char got[256], want[256];

        lim.mime_depth = cases[i].depth_limit;
        lim.mime_parts = cases[i].parts_limit;
        err_clear(&e);
        mm = mime_parse(cases[i].text, strlen(cases[i].text), &lim, &e);
        if (mm == NULL)
            unit_fail(cases[i].name, "mime_parse: %s", e.text);
        if (mime_flags(mm) != cases[i].want_flags)
            unit_fail(
                cases[i].name, "got flags \"%s\", want \"%s\"",
                mime_flags_describe(mime_flags(mm), got, sizeof(got)),
                mime_flags_describe(cases[i].want_flags, want, sizeof(want)));
        unit_int_eq(cases[i].name, mime_depth(mm), cases[i].want_depth);
        unit_int_eq(cases[i].name, mime_part_count(mm), cases[i].want_parts);
        assert_non_null(mime_message(mm));
        mime_free(mm);
    }
}

/* The parse is usable: stages walk the same tree GMime built. */
static void
test_tree(void **state)
{
    struct msg_limits lim = {0, 0, 0, 0, 0};
    struct mime *mm;
    struct err e;
    GMimeObject *top;
    GMimeContentType *ct;

    (void)state;
    assert_non_null(mm = mime_parse(CLEAN_ALT, strlen(CLEAN_ALT), &lim, &e));
    top = g_mime_message_get_mime_part(mime_message(mm));
    assert_true(GMIME_IS_MULTIPART(top));
    unit_int_eq("children", g_mime_multipart_get_count(GMIME_MULTIPART(top)),
                2);
    ct = g_mime_object_get_content_type(
        g_mime_multipart_get_part(GMIME_MULTIPART(top), 1));
    unit_str_eq("second part type", g_mime_content_type_get_media_type(ct),
                "text");
    unit_str_eq("second part subtype",
                g_mime_content_type_get_media_subtype(ct), "html");
    mime_free(mm);
    mime_free(NULL);
}

/* GMime's own nesting cap also counts as too deep. */
static void
test_nesting_overflow(void **state)
{
    struct msg_limits lim = {0, 0, 0, 0, 0};
    struct buf b;
    struct mime *mm;
    struct err e;
    int i, n = 2000;

    (void)state;
    buf_init(&b, 0);
    for (i = 0; i < n; i++)
        assert_int_equal(
            buf_puts(&b, "From: a\nContent-Type: message/rfc822\n\n", &e), 0);
    assert_int_equal(buf_puts(&b, "From: b\n\nhi\n", &e), 0);
    assert_non_null(mm = mime_parse(b.data, b.len, &lim, &e));
    if (!(mime_flags(mm) & MIME_AMBIG_TOO_DEEP))
        unit_fail("nesting overflow", "got flags 0x%x, want too deep",
                  mime_flags(mm));
    mime_free(mm);
    buf_fini(&b);
}

static void
test_describe(void **state)
{
    static const struct {
        const char *name;
        unsigned flags;
        size_t n;
        const char *want;
    } dcases[] = {
        {"none", 0, 64, "none"},
        {"one", MIME_AMBIG_NO_BOUNDARY, 64, "multipart without boundary"},
        {"two", MIME_AMBIG_DUP_BOUNDARY | MIME_AMBIG_MISSING_END, 64,
         "duplicate boundary, missing end boundary"},
        {"all", 0xffu, 256,
         "duplicate boundary, conflicting Content-Type, duplicate "
         "parameter, missing end boundary, multipart without boundary, "
         "nesting too deep, too many parts, malformed MIME"},
        {"unknown bit", MIME_AMBIG_MALFORMED | 0x400u, 64,
         "malformed MIME, unknown flags 0x400"},
        {"truncated", MIME_AMBIG_DUP_BOUNDARY | MIME_AMBIG_MISSING_END, 10,
         "duplicate"},
        {"truncated after a name", MIME_AMBIG_TOO_DEEP | MIME_AMBIG_MALFORMED,
         18, "nesting too deep,"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(dcases) / sizeof(dcases[0]); i++) {
        char out[256];

        memset(out, 'X', sizeof(out));
        unit_str_eq(dcases[i].name,
                    mime_flags_describe(dcases[i].flags, out, dcases[i].n),
                    dcases[i].want);
        if (dcases[i].n < sizeof(out) && out[dcases[i].n] != 'X')
            unit_fail(dcases[i].name, "wrote past %zu octets", dcases[i].n);
    }
}

static int
setup(void **state)
{
    (void)state;
    mime_init();
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    mime_shutdown();
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_tree),
        cmocka_unit_test(test_nesting_overflow),
        cmocka_unit_test(test_describe),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
