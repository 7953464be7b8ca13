/*
 * test_archive_journal - the journal report (arc_journal_report)
 *
 * Each case builds a report and reads it back with GMime, an
 * independent MIME parser: a multipart/mixed of two parts, the envelope
 * (text/plain: Sender, one Recipient line each, Bcc included, the
 * fields that were given) and the message (message/rfc822) whose octets
 * are the original's byte for byte, with a Content-Transfer-Encoding
 * that says what it holds. Envelope text that tries to start a header
 * line of its own stays on its line; a message that holds the first
 * boundary the builder would pick gets another one.
 */
#include "config.h"

#include <gmime/gmime.h>

#include "filters/archive/archive_remote.h"
#include "tests/unit/unit.h"

struct jr_case {
    const char *name;
    const char *data;
    const char *sender;
    const char *rcpts[4];
    const char *want_cte;   /* of the rfc822 part */
    const char *want_lines; /* "|"-separated lines the envelope holds */
    const char *not_line;   /* a line start the envelope must not have */
    int collide;            /* put the first boundary in the message */
};

static const struct jr_case jr_cases[] = {
    {"plain",
     "From: a@example.com\r\nTo: b@example.net\r\nSubject: hi\r\n"
     "Message-ID: <1@example.com>\r\n\r\nhello\r\n",
     "a@example.com",
     {"b@example.net", "hidden@example.org", NULL},
     "7bit",
     "Sender: a@example.com|Recipient: b@example.net|"
     "Recipient: hidden@example.org|Queue-ID: 4QX1|Auth-User: alice|"
     "Client: mail.example.com [192.0.2.7]|Point: archive|"
     "Time: 2026-12-07T06:00:00Z|Size: |Record: node1/0000000000000001",
     NULL,
     0},
    {"eightbit",
     "From: a@example.com\r\nTo: b@example.net\r\nSubject: =?utf-8?q?gr=C3=BC"
     "sse?=\r\nContent-Type: text/plain; charset=utf-8\r\n"
     "Content-Transfer-Encoding: 8bit\r\n\r\nGr\xc3\xbc\xc3\x9f"
     "e aus K\xc3\xb6ln\r\n-- \r\nsig\r\n",
     "a@example.com",
     {"b@example.net", NULL},
     "8bit",
     "Sender: a@example.com|Recipient: b@example.net",
     NULL,
     0},
    {"null sender",
     "From: MAILER-DAEMON@example.com\r\nTo: b@example.net\r\n\r\nbounce\r\n",
     "",
     {"b@example.net", NULL},
     "7bit",
     "Sender: <>",
     NULL,
     0},
    {"injection",
     "From: a@example.com\r\nTo: b@example.net\r\n\r\nx\r\n",
     "a@example.com\r\nBcc: evil@example.com",
     {"b@example.net\nX-Evil: 1", NULL},
     "7bit",
     "Sender: a@example.com??Bcc: evil@example.com|"
     "Recipient: b@example.net?X-Evil: 1",
     "Bcc:",
     0},
    {"boundary in message",
     "From: a@example.com\r\nTo: b@example.net\r\nContent-Type: text/plain"
     "\r\n\r\nBOUNDARY\r\nmore\r\n",
     "a@example.com",
     {"b@example.net", NULL},
     "7bit",
     "Recipient: b@example.net",
     NULL,
     1},
    {"no final line end",
     "From: a@example.com\r\nTo: b@example.net\r\n\r\nlast line",
     "a@example.com",
     {"b@example.net", NULL},
     "7bit",
     "Recipient: b@example.net",
     NULL,
     0},
    {"bare lf",
     "From: a@example.com\nTo: b@example.net\n\nunix\n",
     "a@example.com",
     {"b@example.net", NULL},
     "binary",
     "Recipient: b@example.net",
     NULL,
     0},
};

/* jr_build - the report of c into out; data into msg (owned by caller). */
static void
jr_build(const struct jr_case *c, struct buf *msg, struct buf *out)
{
    struct arc_journal_from f = {NULL, "journal@archive.example", "relay1"};
    struct arc_meta m;
    struct err e;
    size_t n = 0;
    const char *p;

    memset(&m, 0, sizeof(m));
    m.time = 1796623200; /* 2026-12-07T06:00:00Z */
    m.point = "archive";
    m.qid = "4QX1";
    m.message_id = "<1@example.com>";
    m.client_addr = "192.0.2.7";
    m.client_name = "mail.example.com";
    m.auth_user = "alice";
    m.sender = c->sender;
    while (c->rcpts[n])
        n++;
    m.rcpts = c->rcpts;
    m.nrcpts = n;
    m.verdicts = "antivirus=continue";
    memset(m.sha256, 0xab, sizeof(m.sha256));
    buf_reset(msg);
    p = c->data;
    if (c->collide) {
        /* The first boundary the builder tries, where BOUNDARY stands. */
        char first[80];
        const char *at = strstr(p, "BOUNDARY");

        snprintf(first, sizeof(first), "--=_rcjournal_%08lx_%lld",
                 0xababababUL, m.time);
        assert_int_equal(buf_append(msg, p, (size_t)(at - p), &e), 0);
        assert_int_equal(buf_puts(msg, first, &e), 0);
        assert_int_equal(buf_puts(msg, at + 8, &e), 0);
    } else {
        assert_int_equal(buf_puts(msg, p, &e), 0);
    }
    m.size = msg->len;
    buf_reset(out);
    if (arc_journal_report(&f, &m, "node1/0000000000000001", msg->data,
                           msg->len, out, &e) != 0)
        unit_fail(c->name, "arc_journal_report: %s", e.text);
}

/* jr_part_octets - the octets of the rfc822 part as they stand in the
 * report: GMime's parse says where the part's content starts (its
 * headers end) and the closing delimiter where it ends. */
static void
test_report_parses_back(void **state)
{
    size_t i;

    (void)state;
    g_mime_init();
    for (i = 0; i < sizeof(jr_cases) / sizeof(jr_cases[0]); i++) {
        const struct jr_case *c = &jr_cases[i];
        struct buf msg, out;
        GMimeStream *st;
        GMimeParser *ps;
        GMimeMessage *rep;
        GMimeObject *top, *p0, *p1;
        GMimeMessage *inner;
        GMimeDataWrapper *dw;
        GMimeStream *mem;
        GByteArray *ba;
        char *envtext, *got;
        const char *cte, *lines;

        buf_init(&msg, 0);
        buf_init(&out, 0);
        jr_build(c, &msg, &out);
        st = g_mime_stream_mem_new_with_buffer(out.data, out.len);
        ps = g_mime_parser_new_with_stream(st);
        rep = g_mime_parser_construct_message(ps, NULL);
        if (rep == NULL)
            unit_fail(c->name, "GMime did not parse the report");
        top = g_mime_message_get_mime_part(rep);
        if (!GMIME_IS_MULTIPART(top) ||
            g_mime_multipart_get_count(GMIME_MULTIPART(top)) != 2)
            unit_fail(c->name, "got no multipart of two parts");
        {
            char *type = g_mime_content_type_get_mime_type(
                g_mime_object_get_content_type(top));

            unit_str_eq(c->name, type, "multipart/mixed");
            g_free(type);
        }
        p0 = g_mime_multipart_get_part(GMIME_MULTIPART(top), 0);
        p1 = g_mime_multipart_get_part(GMIME_MULTIPART(top), 1);
        if (!GMIME_IS_PART(p0) || !GMIME_IS_MESSAGE_PART(p1))
            unit_fail(c->name, "got parts of the wrong types");

        /* The envelope part. */
        dw = g_mime_part_get_content(GMIME_PART(p0));
        mem = g_mime_stream_mem_new();
        g_mime_data_wrapper_write_to_stream(dw, mem);
        ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
        envtext = g_strndup((const char *)ba->data, ba->len);
        g_object_unref(mem);
        lines = c->want_lines;
        while (lines && *lines) {
            const char *bar = strchr(lines, '|');
            size_t l = bar ? (size_t)(bar - lines) : strlen(lines);
            char want[256];
            char *at;

            snprintf(want, sizeof(want), "%.*s", (int)l, lines);
            at = strstr(envtext, want);
            /* A whole line, from its start. */
            if (at == NULL || (at != envtext && at[-1] != '\n'))
                unit_fail(c->name, "envelope lacks the line \"%s\":\n%s", want,
                          envtext);
            lines = bar ? bar + 1 : NULL;
        }
        if (c->not_line != NULL) {
            char bad[64];

            snprintf(bad, sizeof(bad), "\n%s", c->not_line);
            if (strstr(envtext, bad) != NULL)
                unit_fail(c->name, "envelope has a line \"%s\"", c->not_line);
        }
        g_free(envtext);

        /* The message part: its encoding, and its octets, byte for byte,
         * where GMime's parse puts them in the report: from the offset of
         * the inner message's first header to the end of its body's
         * content (the single part of each case's message). */
        cte = g_mime_object_get_header(p1, "Content-Transfer-Encoding");
        unit_str_eq(c->name, cte, c->want_cte);
        inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(p1));
        if (inner == NULL)
            unit_fail(c->name, "no message in the rfc822 part");
        {
            GMimeHeaderList *hl =
                g_mime_object_get_header_list(GMIME_OBJECT(inner));
            GMimeObject *body = g_mime_message_get_mime_part(inner);
            GMimeStream *bs;
            gint64 start, end;

            if (hl == NULL || g_mime_header_list_get_count(hl) == 0 ||
                body == NULL || !GMIME_IS_PART(body))
                unit_fail(c->name, "inner message without headers or body");
            start = g_mime_header_get_offset(
                g_mime_header_list_get_header_at(hl, 0));
            dw = g_mime_part_get_content(GMIME_PART(body));
            bs = dw ? g_mime_data_wrapper_get_stream(dw) : NULL;
            if (bs == NULL)
                unit_fail(c->name, "inner body without a stream");
            end = bs->bound_end;
            if (start < 0 || end < start || (size_t)end > out.len)
                unit_fail(c->name, "offsets %lld..%lld", (long long)start,
                          (long long)end);
            got = g_strndup(out.data + start, (gsize)(end - start));
            if ((size_t)(end - start) != msg.len ||
                memcmp(out.data + start, msg.data, msg.len) != 0)
                unit_fail(c->name,
                          "the rfc822 part differs: got %lld octets \"%s\", "
                          "want %zu \"%s\"",
                          (long long)(end - start), got, msg.len, msg.data);
            g_free(got);
        }
        g_object_unref(rep);
        g_object_unref(ps);
        g_object_unref(st);
        buf_fini(&msg);
        buf_fini(&out);
    }
}

/* The report's own lines: CRLF only, none over 998 octets outside the
 * message, and the message's octets appear in the report exactly once,
 * after the rfc822 part's header and before the closing delimiter. */
static void
test_report_lines(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(jr_cases) / sizeof(jr_cases[0]); i++) {
        const struct jr_case *c = &jr_cases[i];
        struct buf msg, out;
        const char *at, *hdr;
        size_t k, line = 0;

        buf_init(&msg, 0);
        buf_init(&out, 0);
        jr_build(c, &msg, &out);
        hdr =
            memmem(out.data, out.len, "Content-Type: message/rfc822\r\n", 30);
        if (hdr == NULL)
            unit_fail(c->name, "no message/rfc822 part header");
        at = memmem(hdr, out.len - (size_t)(hdr - out.data), "\r\n\r\n", 4);
        if (at == NULL || (size_t)(out.data + out.len - (at + 4)) < msg.len ||
            memcmp(at + 4, msg.data, msg.len) != 0)
            unit_fail(c->name, "the message does not follow its part header");
        if (strncmp(at + 4 + msg.len, "\r\n--=_rcjournal_", 16) != 0)
            unit_fail(c->name, "no closing delimiter right after the message");
        for (k = 0; k < (size_t)(hdr - out.data); k++) {
            if (out.data[k] == '\n' && (k == 0 || out.data[k - 1] != '\r'))
                unit_fail(c->name, "bare LF in the report at %zu", k);
            line = out.data[k] == '\n' ? 0 : line + 1;
            if (line > 998)
                unit_fail(c->name, "line over 998 octets");
        }
        buf_fini(&msg);
        buf_fini(&out);
    }
}

/* A limit on out is an error (ERR_LIMIT), not a cut report. */
static void
test_report_limit(void **state)
{
    struct buf msg, out, small;
    struct arc_journal_from f = {NULL, "j@example.org", "h"};
    struct arc_meta m;
    struct err e;

    (void)state;
    buf_init(&msg, 0);
    buf_init(&out, 0);
    jr_build(&jr_cases[0], &msg, &out);
    memset(&m, 0, sizeof(m));
    m.sender = "a@example.com";
    buf_init(&small, 100);
    assert_int_equal(
        arc_journal_report(&f, &m, "n/1", msg.data, msg.len, &small, &e), -1);
    assert_int_equal(e.code, ERR_LIMIT);
    buf_fini(&small);
    buf_fini(&msg);
    buf_fini(&out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_report_parses_back),
        cmocka_unit_test(test_report_lines),
        cmocka_unit_test(test_report_limit),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
