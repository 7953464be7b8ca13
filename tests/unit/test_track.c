/*
 * test_track - the track stage
 *
 * Loading: key_file missing or short, track_host, unsubscribe_mailto
 * refused with file:line. Running: the links of a 7bit, a
 * quoted-printable (ISO-8859-1, charset kept) and a base64 HTML part
 * become click tokens that verify under the key and give back the
 * original URL with their index and the message's link count; mailto
 * links, links in comments and in script stay; the pixel stands before
 * </body>; text parts change only with track_text_links; signed and
 * encrypted mail and mail that track_map says no for pass unchanged;
 * bulk mail gets List-Unsubscribe and List-Unsubscribe-Post unless the
 * sender set them, and only when the tokens name a recipient. The
 * per_recipient groups; the chain's order check refuses the stage after
 * a signing and after an encrypting stage.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <gmime/gmime.h>

#include "filters/filters.h"
#include "util/log.h"
#include "util/track_token.h"
#include "msg/mime.h"
#include "msg/msg.h"
#include "chain/chain.h"

#include "unit.h"
#include "unit_stage.h"

static char tmp_dir[256], key_path[512], short_path[512], map_path[512];
static struct track_key key;
static const struct msg_limits test_limits = {1 << 20, 1000, 998, 20, 100};

static int
setup(void **state)
{
    struct err e;

    (void)state;
    log_open("test_track", LOG_MAIL, LOG_SINK_NONE);
    mime_init();
    if (unit_tmpdir(tmp_dir, sizeof(tmp_dir)) == NULL ||
        unit_write(tmp_dir, "key", "an example key of forty octets...!!!!!!",
                   key_path, sizeof(key_path)) == NULL ||
        chmod(key_path, 0600) < 0 ||
        unit_write(tmp_dir, "short", "too short", short_path,
                   sizeof(short_path)) == NULL ||
        chmod(short_path, 0600) < 0 ||
        unit_write(tmp_dir, "map",
                   "/^news@example\\.com$/ bulk\n"
                   "/^alice@example\\.com$/ yes\n"
                   "/^bob@example\\.com$/ maybe\n"
                   "/./ no\n",
                   map_path, sizeof(map_path)) == NULL)
        return -1;
    return track_key_load(key_path, &key, &e);
}

static int
teardown(void **state)
{
    (void)state;
    track_key_free(&key);
    return unit_rmtree(tmp_dir);
}

static int
load(struct stage *st, const char *extra, struct err *e)
{
    char conf[2048], name[600];

    snprintf(name, sizeof(name), "%s/60-track.conf", tmp_dir);
    snprintf(conf, sizeof(conf), "%s%s%s%s%s",
             strstr(extra, "track_host") ? "" : "track_host = t.example.com\n",
             strstr(extra, "key_file") ? "" : "key_file = ",
             strstr(extra, "key_file") ? "" : key_path,
             strstr(extra, "key_file") ? "" : "\n", extra);
    err_clear(e);
    return unit_stage_load(st, &flt_track_type, "track", name, conf, e);
}

static struct msg *
build(const char *sender, const char *rcpt2, const char *text)
{
    struct msg *m;
    struct err e;

    m = msg_new(&test_limits, MSG_FE_SMTP, &e);
    assert_non_null(m);
    assert_int_equal(
        msg_env_set(m, "4F1A2B3C", "192.0.2.1", NULL, "client", 0, NULL, &e),
        0);
    assert_int_equal(msg_env_sender(m, sender, NULL, &e), 0);
    assert_int_equal(msg_env_rcpt(m, "bob@example.net", NULL, &e), 0);
    if (rcpt2 != NULL)
        assert_int_equal(msg_env_rcpt(m, rcpt2, NULL, &e), 0);
    if (msg_parse(m, text, strlen(text), &e) < 0)
        fail_msg("msg_parse: %s", e.text);
    return m;
}

/* run - the stage over m; the verdict note into note, the message into
 * out. */
static void
run(const struct stage *st, struct msg *m, char *note, size_t n,
    struct buf *out)
{
    struct verdict v;
    struct err e;

    memset(&v, 0, sizeof(v));
    err_clear(&e);
    if (st->type->run(st, m, &v, &e) < 0)
        fail_msg("run: %s", e.text);
    assert_int_equal(v.kind, VERDICT_CONTINUE);
    snprintf(note, n, "%s", v.note);
    buf_init(out, 0);
    assert_int_equal(msg_write(m, out, &e), 0);
}

/* html_of - the decoded content of the first text/html part of text. */
static void
html_of(const char *text, struct buf *out)
{
    GMimeStream *s = g_mime_stream_mem_new_with_buffer(text, strlen(text));
    GMimeParser *p = g_mime_parser_new_with_stream(s);
    GMimeMessage *msg = g_mime_parser_construct_message(p, NULL);
    GMimePartIter *it;
    GMimeStream *mem;
    GByteArray *a;
    struct err e;

    assert_non_null(msg);
    it = g_mime_part_iter_new(GMIME_OBJECT(msg));
    buf_init(out, 0);
    do {
        GMimeObject *o = g_mime_part_iter_get_current(it);
        GMimeContentType *ct = o ? g_mime_object_get_content_type(o) : NULL;

        if (o != NULL && GMIME_IS_PART(o) && ct != NULL &&
            g_mime_content_type_is_type(ct, "text", "html")) {
            mem = g_mime_stream_mem_new();
            g_mime_data_wrapper_write_to_stream(
                g_mime_part_get_content(GMIME_PART(o)), mem);
            a = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(mem));
            assert_int_equal(buf_append(out, a->data, a->len, &e), 0);
            g_object_unref(mem);
            break;
        }
    } while (g_mime_part_iter_next(it));
    g_mime_part_iter_free(it);
    g_object_unref(msg);
    g_object_unref(p);
    g_object_unref(s);
}

/* token_at - the token after "/c/" or "/o/" or "/u/" at the n-th place
 * (0-based) of kind in s, opened. */
static void
token_at(const char *s, char kind, int n, struct track_token *t)
{
    char prefix[32], tok[TRACK_TOKEN_MAX];
    const char *p = s;
    size_t len;
    struct err e;

    snprintf(prefix, sizeof(prefix), "https://t.example.com/%c/", kind);
    for (;;) {
        p = strstr(p, prefix);
        if (p == NULL)
            fail_msg("no %d-th %c token in \"%s\"", n, kind, s);
        p += strlen(prefix);
        if (n-- == 0)
            break;
    }
    len = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                    "0123456789-_");
    assert_true(len < sizeof(tok));
    memcpy(tok, p, len);
    tok[len] = '\0';
    if (track_token_open(&key, tok, len, t, &e) < 0)
        fail_msg("token %s: %s", tok, e.text);
}

static size_t
count_of(const char *s, const char *needle)
{
    size_t n = 0;

    while ((s = strstr(s, needle)) != NULL) {
        n++;
        s++;
    }
    return n;
}

#define HDR(from)                                                             \
    "From: " from "\n"                                                        \
    "To: bob@example.net\n"                                                   \
    "Subject: news\n"                                                         \
    "Message-ID: <n1@example.com>\n"                                          \
    "MIME-Version: 1.0\n"

#define HTML_BODY                                                             \
    "<html><head><style>a{color:red}</style></head><body>\n"                  \
    "<p><a href=\"https://example.com/a?x=1&amp;y=2\">one</a>\n"              \
    "<a class=x HREF=http://example.org/b>two</a>\n"                          \
    "<a href=\"mailto:x@example.com\">mail</a>\n"                             \
    "<!-- <a href=\"https://comment.example/\"> -->\n"                        \
    "<script>var s = '<a href=\"https://script.example/\">';</script>\n"      \
    "<area shape=rect href='https://example.net/c' alt=''>\n"                 \
    "</p></body></html>\n"

static void
check_links(const char *html)
{
    struct track_token t;

    token_at(html, 'c', 0, &t);
    assert_string_equal(t.url, "https://example.com/a?x=1&y=2");
    assert_int_equal(t.index, 0);
    assert_int_equal(t.count, 3);
    assert_string_equal(t.rcpt, "bob@example.net");
    assert_string_equal(t.msgid, "<n1@example.com>");
    assert_string_equal(t.qid, "4F1A2B3C");
    token_at(html, 'c', 1, &t);
    assert_string_equal(t.url, "http://example.org/b");
    assert_int_equal(t.index, 1);
    token_at(html, 'c', 2, &t);
    assert_string_equal(t.url, "https://example.net/c");
    assert_int_equal(t.index, 2);
    assert_int_equal(count_of(html, "https://t.example.com/c/"), 3);
    assert_non_null(strstr(html, "href=\"mailto:x@example.com\""));
    assert_non_null(
        strstr(html, "<!-- <a href=\"https://comment.example/\">"));
    assert_non_null(strstr(html, "href=\"https://script.example/\""));
    token_at(html, 'o', 0, &t);
    assert_int_equal(t.kind, TRACK_OPEN);
    {
        const char *px = strstr(html, "<img src=\"https://t.example.com/o/");
        const char *end = strstr(html, "</body>");

        assert_non_null(px);
        assert_non_null(end);
        assert_true(px < end);
        assert_non_null(strstr(px, ".gif\" width=\"1\" height=\"1\""));
    }
}

static void
test_load_errors(void **state)
{
    struct stage st;
    struct err e;
    char conf[1200], want[1024];

    (void)state;
    snprintf(conf, sizeof(conf), "key_file = %s\n", short_path);
    assert_int_equal(load(&st, conf, &e), -1);
    unit_has("short key", e.text, "60-track.conf:2: key_file");
    unit_has("short key", e.text, "a key of 9 octets");
    assert_null(st.priv); /* nothing left behind */
    assert_int_equal(load(&st, "key_file = /nonexistent/key\n", &e), -1);
    unit_has("missing key", e.text, "60-track.conf:2: key_file");
    assert_int_equal(load(&st, "track_host = a/b\n", &e), -1);
    unit_has("bad host", e.text, "track_host");
    assert_int_equal(load(&st, "unsubscribe_mailto = a b@c\n", &e), -1);
    unit_has("bad mailto", e.text, "unsubscribe_mailto");
    snprintf(want, sizeof(want), "%s/nonexistent.map", tmp_dir);
    snprintf(conf, sizeof(conf), "track_map = %s\n", want);
    assert_int_equal(load(&st, conf, &e), -1);
    unit_has("missing map", e.text, "60-track.conf:3: track_map");
}

static void
test_html_7bit(void **state)
{
    struct stage st;
    struct msg *m;
    struct buf out;
    struct err e;
    char note[300];

    (void)state;
    assert_int_equal(load(&st, "", &e), 0);
    m = build("news@example.com", NULL,
              HDR("news@example.com") "Content-Type: text/html\n\n" HTML_BODY);
    run(&st, m, note, sizeof(note), &out);
    unit_has("7bit", note,
             "tracked (links=3, pixel=yes, tokens per recipient)");
    check_links(buf_str(&out));
    /* not bulk: no List-Unsubscribe */
    assert_null(strstr(buf_str(&out), "List-Unsubscribe"));
    buf_fini(&out);
    msg_free(m);
    unit_stage_unload(&st);
}

static void
test_html_encoded(void **state)
{
    static const char qp[] =
        HDR("news@example.com") "Content-Type: multipart/alternative; "
                                "boundary=\"b1\"\n\n"
                                "--b1\n"
                                "Content-Type: text/plain; charset=utf-8\n\n"
                                "See https://example.com/plain.\n"
                                "--b1\n"
                                "Content-Type: text/html; "
                                "charset=iso-8859-1\n"
                                "Content-Transfer-Encoding: "
                                "quoted-printable\n\n"
                                "<html><head><style>a{color:red}</style></"
                                "head><body>\n"
                                "<p>Gr=FC=DFe <a href=3D\"https://"
                                "example.com/a?x=3D1&amp;y=3D2\">one</a>\n"
                                "<a class=3Dx HREF=3Dhttp://example.org/"
                                "b>two</a>\n"
                                "<a href=3D\"mailto:x@example.com\">mail</"
                                "a>\n"
                                "<!-- <a href=3D\"https://comment.example/"
                                "\"> -->\n"
                                "<script>var s =3D '<a href=3D\"https://"
                                "script.example/\">';</script>\n"
                                "<area shape=3Drect href=3D'https://"
                                "example.net/c' alt=3D''>\n"
                                "</p></body></html>\n"
                                "--b1--\n";
    struct stage st;
    struct msg *m;
    struct buf out, html;
    struct err e;
    char note[300];
    gchar *b64;

    (void)state;
    assert_int_equal(load(&st, "", &e), 0);
    m = build("news@example.com", NULL, qp);
    run(&st, m, note, sizeof(note), &out);
    unit_has("qp", note, "tracked (links=3, pixel=yes");
    unit_has("qp charset kept", buf_str(&out),
             "Content-Type: text/html; charset=iso-8859-1\n"
             "Content-Transfer-Encoding: quoted-printable\n");
    /* the text part is left alone */
    unit_has("qp text", buf_str(&out), "See https://example.com/plain.\n");
    html_of(buf_str(&out), &html);
    check_links(buf_str(&html));
    unit_has("qp 8-bit kept", buf_str(&html),
             "Gr\xfc\xdf"
             "e ");
    buf_fini(&html);
    buf_fini(&out);
    msg_free(m);

    /* base64, CRLF line ends */
    {
        struct buf text;
        size_t i;

        b64 =
            g_base64_encode((const guchar *)HTML_BODY, sizeof(HTML_BODY) - 1);
        buf_init(&text, 0);
        assert_int_equal(
            buf_printf(&text, &e,
                       "%sContent-Type: text/html; charset=utf-8\n"
                       "Content-Transfer-Encoding: base64\n\n",
                       HDR("news@example.com")),
            0);
        for (i = 0; i < strlen(b64); i += 76)
            assert_int_equal(buf_printf(&text, &e, "%.76s\n", b64 + i), 0);
        g_free(b64);
        m = build("news@example.com", NULL, buf_str(&text));
        buf_fini(&text);
    }
    run(&st, m, note, sizeof(note), &out);
    unit_has("base64", note, "tracked (links=3, pixel=yes");
    html_of(buf_str(&out), &html);
    check_links(buf_str(&html));
    buf_fini(&html);
    buf_fini(&out);
    msg_free(m);
    unit_stage_unload(&st);
}

static void
test_edge_links(void **state)
{
    static const char text[] = HDR(
        "news@example.com") "Content-Type: text/html\n\n"
                            "<p><a href=\" https://example.com/trim \">a</a>"
                            "<a href=\"https://example.com/a b\">b</a>"
                            "<a "
                            "href=\"HTTPS://Example.com/"
                            "c?x=1&#x26;y=&#50;\">c</a>"
                            "<a href=\"https://t.example.com/c/old\">d</a>"
                            "<a href='javascript:alert(1)'>e</a></p>\n"
                            "<p>no body end<a href=\"https://example.com/open";
    struct track_token t;
    struct stage st;
    struct msg *m;
    struct buf out;
    struct err e;
    char note[300];
    const char *px;

    (void)state;
    assert_int_equal(load(&st, "", &e), 0);
    m = build("news@example.com", NULL, text);
    run(&st, m, note, sizeof(note), &out);
    /* the text ends inside an unterminated tag: no pixel there, where it
     * would become part of the tag */
    unit_has("edge", note, "tracked (links=2, pixel=no");
    token_at(buf_str(&out), 'c', 0, &t);
    assert_string_equal(t.url, "https://example.com/trim");
    token_at(buf_str(&out), 'c', 1, &t);
    assert_string_equal(t.url, "HTTPS://Example.com/c?x=1&y=2");
    assert_int_equal(t.count, 2);
    unit_has("edge: a space stays", buf_str(&out),
             "<a href=\"https://example.com/a b\">");
    unit_has("edge: ours stays", buf_str(&out),
             "<a href=\"https://t.example.com/c/old\">");
    unit_has("edge: javascript stays", buf_str(&out),
             "<a href='javascript:alert(1)'>");
    unit_has("edge: unterminated stays", buf_str(&out),
             "<a href=\"https://example.com/open");
    assert_null(strstr(buf_str(&out), "https://t.example.com/o/"));
    buf_fini(&out);
    msg_free(m);
    /* no </body>, ending in text: the pixel at the end */
    m = build(
        "news@example.com", NULL,
        HDR("news@example.com") "Content-Type: text/html\n\n"
                                "<p><a href=\"https://example.com/\">x</a> "
                                "bye");
    run(&st, m, note, sizeof(note), &out);
    unit_has("edge: end", note, "tracked (links=1, pixel=yes");
    px = strstr(buf_str(&out), "bye<img src=\"https://t.example.com/o/");
    assert_non_null(px);
    buf_fini(&out);
    msg_free(m);
    unit_stage_unload(&st);
}

/* A 7bit line of many links: wrapped after link attributes, every line
 * within 998 octets, every link tracked. */
static void
test_wrap(void **state)
{
    char text[4096], note[300];
    struct track_token t;
    struct stage st;
    struct msg *m;
    struct buf out;
    struct err e;
    size_t used, longest = 0, cur = 0, i;

    (void)state;
    used = (size_t)snprintf(text, sizeof(text), "%s",
                            HDR("news@example.com") "Content-Type: "
                                                    "text/html\n\n<p>");
    for (i = 0; i < 10; i++)
        used += (size_t)snprintf(text + used, sizeof(text) - used,
                                 "<a %s=https://example.com/%zu>%zu</a> ",
                                 i % 2 ? "href" : "class=x href", i, i);
    snprintf(text + used, sizeof(text) - used, "</p></body>\n");
    assert_int_equal(load(&st, "", &e), 0);
    m = build("news@example.com", NULL, text);
    run(&st, m, note, sizeof(note), &out);
    unit_str_eq("wrap", note,
                "tracked (links=10, pixel=yes, tokens per recipient)");
    for (i = 0; i < out.len; i++)
        if (out.data[i] == '\n') {
            longest = cur > longest ? cur : longest;
            cur = 0;
        } else
            cur++;
    if (longest > 998)
        fail_msg("a line of %zu octets", longest);
    for (i = 0; i < 10; i++) {
        char want[64];

        token_at(buf_str(&out), 'c', (int)i, &t);
        snprintf(want, sizeof(want), "https://example.com/%zu", i);
        assert_string_equal(t.url, want);
    }
    buf_fini(&out);
    msg_free(m);
    unit_stage_unload(&st);
}

static void
test_text_links(void **state)
{
    static const char text[] =
        HDR("news@example.com") "Content-Type: text/plain\n\n"
                                "Read https://example.com/x. Or "
                                "(http://example.org/y), not "
                                "xhttp://example.net/z.\n";
    struct track_token t;
    struct stage st;
    struct msg *m;
    struct buf out;
    struct err e;
    char note[300];

    (void)state;
    assert_int_equal(load(&st, "", &e), 0);
    m = build("news@example.com", NULL, text);
    run(&st, m, note, sizeof(note), &out);
    unit_has("text default", note, "links=0, pixel=no");
    unit_has("text default", buf_str(&out), "Read https://example.com/x.");
    buf_fini(&out);
    msg_free(m);
    unit_stage_unload(&st);

    assert_int_equal(load(&st, "track_text_links = yes\n", &e), 0);
    m = build("news@example.com", NULL, text);
    run(&st, m, note, sizeof(note), &out);
    unit_has("text links", note, "links=2, pixel=no");
    token_at(buf_str(&out), 'c', 0, &t);
    assert_string_equal(t.url, "https://example.com/x");
    token_at(buf_str(&out), 'c', 1, &t);
    assert_string_equal(t.url, "http://example.org/y");
    unit_has("text links", buf_str(&out), "xhttp://example.net/z.");
    buf_fini(&out);
    msg_free(m);
    unit_stage_unload(&st);
}

static void
test_skips(void **state)
{
    static const struct {
        const char *name, *text, *want;
    } cases[] = {
        {"multipart/signed",
         HDR("news@example.com") "Content-Type: multipart/signed; "
                                 "protocol=\"application/pkcs7-signature\"; "
                                 "micalg=sha-256; boundary=\"s\"\n\n"
                                 "--s\nContent-Type: text/html\n\n"
                                 "<a href=\"https://example.com/\">x</a>\n"
                                 "--s\nContent-Type: "
                                 "application/pkcs7-signature\n\nAAAA\n"
                                 "--s--\n",
         "skipped (signed (multipart/signed))"},
        {"pkcs7-mime",
         HDR("news@example.com") "Content-Type: application/pkcs7-mime; "
                                 "smime-type=enveloped-data\n"
                                 "Content-Transfer-Encoding: base64\n\n"
                                 "AAAA\n",
         "skipped (signed or encrypted (application/pkcs7-mime))"},
        {"pgp/mime",
         HDR("news@example.com") "Content-Type: multipart/encrypted; "
                                 "protocol=\"application/pgp-encrypted\"; "
                                 "boundary=\"p\"\n\n--p\nContent-Type: "
                                 "application/pgp-encrypted\n\nVersion: "
                                 "1\n--p\nContent-Type: "
                                 "application/octet-stream\n\nx\n--p--\n",
         "skipped (encrypted (multipart/encrypted))"},
        {"track_map no",
         HDR("carol@example.com") "Content-Type: text/html\n\n" HTML_BODY,
         "skipped (track_map line 4 says no)"},
        {"track_map neither",
         HDR("bob@example.com") "Content-Type: text/html\n\n" HTML_BODY,
         "skipped (track_map line 3 gives neither yes, bulk nor no)"},
    };
    static const char *const senders[] = {
        "news@example.com", "news@example.com", "news@example.com",
        "carol@example.com", "bob@example.com"};
    struct stage st;
    struct msg *m;
    struct buf out;
    struct err e;
    char note[300], conf[700];
    size_t i;

    (void)state;
    snprintf(conf, sizeof(conf), "track_map = %s\n", map_path);
    assert_int_equal(load(&st, conf, &e), 0);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        m = build(senders[i], NULL, cases[i].text);
        run(&st, m, note, sizeof(note), &out);
        unit_str_eq(cases[i].name, note, cases[i].want);
        unit_str_eq(cases[i].name, buf_str(&out), cases[i].text);
        buf_fini(&out);
        msg_free(m);
    }
    unit_stage_unload(&st);
}

static void
test_list_unsubscribe(void **state)
{
    struct track_token t;
    struct stage st;
    struct msg *m;
    struct buf out;
    struct err e;
    char note[300], conf[700];
    const char *lu;

    (void)state;
    snprintf(conf, sizeof(conf),
             "track_map = %s\nunsubscribe_mailto = unsub@example.com\n",
             map_path);
    assert_int_equal(load(&st, conf, &e), 0);
    /* bulk by the map */
    m = build("news@example.com", NULL,
              HDR("news@example.com") "Content-Type: text/html\n\n" HTML_BODY);
    run(&st, m, note, sizeof(note), &out);
    unit_has("bulk", note, ", list-unsubscribe)");
    lu = strstr(buf_str(&out), "List-Unsubscribe: <https://t.example.com/u/");
    assert_non_null(lu);
    token_at(lu, 'u', 0, &t);
    assert_int_equal(t.kind, TRACK_UNSUB);
    assert_string_equal(t.rcpt, "bob@example.net");
    assert_string_equal(t.sender, "news@example.com");
    unit_has("mailto", lu,
             ">,\n <mailto:unsub@example.com?subject=unsubscribe>\n");
    unit_has("post", buf_str(&out),
             "\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\n");
    buf_fini(&out);
    msg_free(m);
    /* yes, not bulk */
    m = build(
        "alice@example.com", NULL,
        HDR("alice@example.com") "Content-Type: text/html\n\n" HTML_BODY);
    run(&st, m, note, sizeof(note), &out);
    assert_null(strstr(buf_str(&out), "List-Unsubscribe"));
    buf_fini(&out);
    msg_free(m);
    /* the sender's own is kept, and no second one added */
    m = build("news@example.com", NULL,
              HDR("news@example.com") "List-Unsubscribe: <mailto:own@x>\n"
                                      "Content-Type: text/html\n\n" HTML_BODY);
    run(&st, m, note, sizeof(note), &out);
    unit_has("kept", note, "list-unsubscribe kept");
    assert_int_equal(count_of(buf_str(&out), "List-Unsubscribe"), 1);
    buf_fini(&out);
    msg_free(m);
    /* two recipients: tokens per message, no List-Unsubscribe */
    m = build("news@example.com", "carol@example.net",
              HDR("news@example.com") "Content-Type: text/html\n\n" HTML_BODY);
    run(&st, m, note, sizeof(note), &out);
    unit_has("two", note, "tokens per message, no list-unsubscribe");
    token_at(buf_str(&out), 'c', 0, &t);
    assert_string_equal(t.rcpt, "");
    assert_null(strstr(buf_str(&out), "List-Unsubscribe"));
    buf_fini(&out);
    msg_free(m);
    unit_stage_unload(&st);
}

/* A token too long for List-Unsubscribe's line goes without the
 * Message-ID; a 7bit part whose line would pass 998 octets is left. */
static void
test_long_unsub(void **state)
{
    char dom[260], sender[280], rcpt[280], text[2048], mid[300], note[300];
    struct track_token t;
    struct stage st;
    struct msg *m;
    struct buf out;
    struct err e;
    const char *lu, *eol;

    (void)state;
    snprintf(dom, sizeof(dom), "%060d.%060d.%060d.%050d.example", 1, 2, 3, 4);
    snprintf(sender, sizeof(sender), "news@%s", dom);
    snprintf(rcpt, sizeof(rcpt), "bob@%s", dom);
    snprintf(mid, sizeof(mid), "<%0240d@example.com>", 7);
    snprintf(
        text, sizeof(text),
        "From: %s\nTo: bob@example.net\nMessage-ID: %s\n"
        "Content-Type: text/html\n\n<a href=\"https://x.example/\">x</a>\n",
        sender, mid);
    assert_int_equal(load(&st, "bulk = yes\n", &e), 0);
    m = msg_new(&test_limits, MSG_FE_SMTP, &e);
    assert_non_null(m);
    assert_int_equal(msg_env_sender(m, sender, NULL, &e), 0);
    assert_int_equal(msg_env_rcpt(m, rcpt, NULL, &e), 0);
    assert_int_equal(msg_parse(m, text, strlen(text), &e), 0);
    run(&st, m, note, sizeof(note), &out);
    /* the 7bit part's line would pass 998 octets: left alone */
    unit_has("long", note,
             ", list-unsubscribe; text/html: a line over 998 octets once "
             "rewritten)");
    unit_has("long", buf_str(&out), "<a href=\"https://x.example/\">");
    lu = strstr(buf_str(&out), "\nList-Unsubscribe: <");
    assert_non_null(lu);
    eol = strchr(lu + 1, '\n');
    assert_non_null(eol);
    if (eol - lu - 1 > 998)
        fail_msg("List-Unsubscribe line of %d octets", (int)(eol - lu - 1));
    token_at(lu, 'u', 0, &t);
    assert_string_equal(t.msgid, "");
    assert_string_equal(t.sender, sender);
    assert_string_equal(t.rcpt, rcpt);
    buf_fini(&out);
    msg_free(m);
    unit_stage_unload(&st);
}

static void
test_rcpt_group(void **state)
{
    struct stage st;
    struct verdict v;
    struct err e;
    char g1[64], g2[64], g3[64], conf[700];

    (void)state;
    snprintf(conf, sizeof(conf), "track_map = %s\nper_recipient = yes\n",
             map_path);
    assert_int_equal(load(&st, conf, &e), 0);
    assert_int_equal(flt_track_type.rcpt_group(&st, "news@example.com",
                                               "bob@example.net", g1,
                                               sizeof(g1), &v, &e),
                     0);
    assert_int_equal(flt_track_type.rcpt_group(&st, "news@example.com",
                                               "Bob@Example.NET", g2,
                                               sizeof(g2), &v, &e),
                     0);
    assert_int_equal(flt_track_type.rcpt_group(&st, "news@example.com",
                                               "carol@example.net", g3,
                                               sizeof(g3), &v, &e),
                     0);
    assert_int_equal(strlen(g1), 16);
    assert_string_equal(g1, g2);
    assert_string_not_equal(g1, g3);
    /* untracked sender: one group for all */
    assert_int_equal(flt_track_type.rcpt_group(&st, "carol@example.com",
                                               "bob@example.net", g1,
                                               sizeof(g1), &v, &e),
                     0);
    assert_string_equal(g1, "");
    unit_stage_unload(&st);
    assert_int_equal(load(&st, "", &e), 0);
    assert_int_equal(flt_track_type.rcpt_group(&st, "news@example.com",
                                               "bob@example.net", g1,
                                               sizeof(g1), &v, &e),
                     0);
    assert_string_equal(g1, "");
    unit_stage_unload(&st);
}

/* The chain refuses the track stage after a signer or an encrypter. */
static const struct cfg_option t_no_options[] = {CFG_OPTION_END};
static const struct stage_type t_sign = {.name = "sign",
                                         .summary = "signs",
                                         .flags = STAGE_SIGNS,
                                         .options = t_no_options};
static const struct stage_type t_enc = {.name = "enc",
                                        .summary = "encrypts",
                                        .flags = STAGE_ENCRYPTS,
                                        .options = t_no_options};

static const struct stage_type *
t_lookup(const char *name)
{
    if (strcmp(name, "sign") == 0)
        return &t_sign;
    if (strcmp(name, "enc") == 0)
        return &t_enc;
    if (strcmp(name, "track") == 0)
        return &flt_track_type;
    return NULL;
}

static void
test_order(void **state)
{
    char dir[256], conf[700], p1[600], p2[600];
    struct chain *ch;
    struct err e;

    (void)state;
    snprintf(conf, sizeof(conf),
             "stage = track\ntrack_host = t.example.com\nkey_file = %s\n",
             key_path);
    assert_non_null(unit_tmpdir(dir, sizeof(dir)));
    assert_non_null(unit_write(dir, "95-track.conf", conf, p2, sizeof(p2)));
    assert_non_null(
        unit_write(dir, "90-dkim.conf", "stage = sign\n", p1, sizeof(p1)));
    err_clear(&e);
    assert_null(chain_load_types(dir, CHAIN_AMBIGUOUS_REJECT, t_lookup, &e));
    unit_has("track after signing", e.text, "95-track.conf");
    unit_int_eq("track after signing", e.code, ERR_CONFIG);
    unlink(p1);
    assert_non_null(
        unit_write(dir, "80-encrypt.conf", "stage = enc\n", p1, sizeof(p1)));
    assert_null(chain_load_types(dir, CHAIN_AMBIGUOUS_REJECT, t_lookup, &e));
    unit_has("track after encryption", e.text, "95-track.conf");
    unlink(p2);
    assert_non_null(unit_write(dir, "50-track.conf", conf, p2, sizeof(p2)));
    ch = chain_load_types(dir, CHAIN_AMBIGUOUS_REJECT, t_lookup, &e);
    if (ch == NULL)
        fail_msg("track before encryption: %s", e.text);
    chain_free(ch);
    unit_rmtree(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_html_7bit),
        cmocka_unit_test(test_html_encoded),
        cmocka_unit_test(test_edge_links),
        cmocka_unit_test(test_wrap),
        cmocka_unit_test(test_text_links),
        cmocka_unit_test(test_skips),
        cmocka_unit_test(test_list_unsubscribe),
        cmocka_unit_test(test_long_unsub),
        cmocka_unit_test(test_rcpt_group),
        cmocka_unit_test(test_order),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
