/*
 * test_disclaimer - the disclaimer stage over small, exact messages
 *
 * Every case loads the stage from configuration text naming template
 * files written here, runs it over one message and compares what the
 * next hop would get (msg_write), byte for byte, and the log note. Cases
 * that must not change the message want it back exactly. Further tests:
 * configuration errors with their file and line, the template map, the
 * journal a milter replays, the chain's refusal of a disclaimer after a
 * signing stage, and the shipped chain.d example.
 */
#include "config.h"

#include <time.h>
#include <unistd.h>

#include "unit.h"
#include "unit_stage.h"

#include "filters/filters.h"
#include "chain/chain.h"
#include "util/log.h"
#include "msg/match.h"
#include "msg/mime.h"
#include "msg/msg.h"

static char tmp_dir[256], text_path[512], html_path[512], de_path[512],
    vip_path[512], viph_path[512], map_path[512], long_path[512],
    flow_path[512];

static const struct msg_limits test_limits = {1 << 20, 1000, 998, 20, 100};

static int
setup(void **state)
{
    (void)state;
    log_open("test_disclaimer", LOG_MAIL, LOG_SINK_NONE);
    mime_init();
    if (unit_tmpdir(tmp_dir, sizeof(tmp_dir)) == NULL ||
        unit_write(tmp_dir, "legal.txt",
                   "-- \nConfidential for %{sender_domain}.\n", text_path,
                   sizeof(text_path)) == NULL ||
        unit_write(tmp_dir, "legal.html",
                   "<p class=\"legal\">Confidential for "
                   "%{sender_domain}.</p>\n",
                   html_path, sizeof(html_path)) == NULL ||
        unit_write(tmp_dir, "de.txt",
                   "-- \nVertraulich \xe2\x80\x94 Gr\xc3\xbc\xc3\x9f"
                   "e.\n",
                   de_path, sizeof(de_path)) == NULL ||
        unit_write(tmp_dir, "vip.txt", "Sent by %{sender}\n", vip_path,
                   sizeof(vip_path)) == NULL ||
        unit_write(tmp_dir, "flow.txt",
                   "-- \nFrom the legal team:  \n> no trailing space \n",
                   flow_path, sizeof(flow_path)) == NULL ||
        unit_write(tmp_dir, "vip.html", "<p>Sent by %{sender}</p>\n",
                   viph_path, sizeof(viph_path)) == NULL ||
        unit_write(tmp_dir, "map",
                   "# sender pattern, text template, HTML template\n"
                   "ceo@example.com   vip.txt  vip.html\n"
                   "\n"
                   ".example.de       de.txt   # German subsidiaries\n",
                   map_path, sizeof(map_path)) == NULL)
        return -1;
    {
        char line[1100];

        memset(line, 'x', 985);
        snprintf(line + 985, sizeof(line) - 985, " %%{sender}\n");
        if (unit_write(tmp_dir, "long.txt", line, long_path,
                       sizeof(long_path)) == NULL)
            return -1;
    }
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    unlink(text_path);
    unlink(html_path);
    unlink(de_path);
    unlink(vip_path);
    unlink(viph_path);
    unlink(map_path);
    unlink(long_path);
    unlink(flow_path);
    rmdir(tmp_dir);
    return 0;
}

/* with_dir - in with each "DIR" replaced by the temporary directory. */
#define with_dir(in, out, n) unit_with_dir((in), tmp_dir, (out), (n))

/* stage_load - a disclaimer stage from configuration text (DIR is the
 * template directory), as the chain builds it. */
static int
stage_load(struct stage *st, const char *conf, struct err *e)
{
    char name[512], text[2048];

    snprintf(name, sizeof(name), "%s/50-disclaimer.conf", tmp_dir);
    return unit_stage_load(st, &flt_disclaimer_type, "disclaimer", name,
                           with_dir(conf, text, sizeof(text)), e);
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

    m = msg_new(&test_limits, MSG_FE_MILTER, &e);
    assert_non_null(m);
    assert_int_equal(
        msg_env_set(m, "4F1A2B3C", "192.0.2.1", NULL, "client", 0, NULL, &e),
        0);
    assert_int_equal(msg_env_sender(m, sender, NULL, &e), 0);
    assert_int_equal(msg_env_rcpt(m, "bob@example.net", NULL, &e), 0);
    if (msg_parse(m, text, strlen(text), &e) < 0)
        fail_msg("msg_parse: %s", e.text);
    return m;
}

#define CONF_STD "text_file = DIR/legal.txt\nhtml_file = DIR/legal.html\n"
#define HDR                                                                   \
    "From: Alice <alice@example.com>\n"                                       \
    "To: bob@example.net\n"                                                   \
    "Subject: hi\n"                                                           \
    "MIME-Version: 1.0\n"
#define FOOT "-- \nConfidential for example.com."

/* bh= of "Hello Bob.\n", simple or relaxed, and a signature that
 * carries it. */
#define BH_HELLO "DD3L33E64/RV0CUJdfGTtPGKU7OPJpo/2LxOdf3k0RI="
#define SIG_HELLO                                                             \
    "DKIM-Signature: v=1; a=rsa-sha256; d=partner.example; s=p1; h=from; "    \
    "bh=" BH_HELLO "; b=y\n"

struct run_case {
    const char *name;
    const char *conf; /* DIR: the template directory */
    const char *sender;
    const char *message;
    const char *want; /* the message after the stage; NULL: unchanged */
    const char *note; /* the verdict note */
};

static const struct run_case run_cases[] = {
    {"plain text, append", CONF_STD, "alice@example.com",
     HDR "Content-Type: text/plain; charset=us-ascii\n\nHello Bob.\n",
     HDR "Content-Type: text/plain; charset=us-ascii\n\nHello Bob.\n" FOOT
         "\n",
     "added (text/plain), template=legal"},
    {"no final line end gets one before the footer", CONF_STD,
     "alice@example.com", HDR "\nHello Bob.", HDR "\nHello Bob.\n" FOOT,
     "added (text/plain), template=legal"},
    {"empty body", CONF_STD, "alice@example.com", HDR "\n", HDR "\n" FOOT "\n",
     "added (text/plain), template=legal"},
    {"prepend", CONF_STD "position = prepend\n", "alice@example.com",
     HDR "\nHello Bob.\n", HDR "\n" FOOT "\nHello Bob.\n",
     "added (text/plain), template=legal"},
    {"CRLF stays CRLF", CONF_STD, "alice@example.com",
     "From: a@example.com\r\nSubject: x\r\n\r\nline 1\r\nline 2\r\n",
     "From: a@example.com\r\nSubject: x\r\n\r\nline 1\r\nline 2\r\n-- \r\n"
     "Confidential for example.com.\r\n",
     "added (text/plain), template=legal"},
    {"alternative: both halves, HTML before </body>", CONF_STD,
     "alice@example.com",
     HDR "Content-Type: multipart/alternative; boundary=\"b1\"\n\n"
         "--b1\nContent-Type: text/plain\n\nHi.\n"
         "--b1\nContent-Type: text/html\n\n"
         "<html><body><p>Hi.</p></body></html>\n"
         "--b1--\n",
     HDR "Content-Type: multipart/alternative; boundary=\"b1\"\n\n"
         "--b1\nContent-Type: text/plain\n\nHi.\n" FOOT "\n"
         "--b1\nContent-Type: text/html\n\n"
         "<html><body><p>Hi.</p><p class=\"legal\">Confidential for "
         "example.com.</p>\n</body></html>\n"
         "--b1--\n",
     "added (text/plain, text/html), template=legal"},
    {"HTML without </body>: at the end", CONF_STD, "alice@example.com",
     HDR "Content-Type: text/html\n\n<p>Hi.</p>\n",
     HDR "Content-Type: text/html\n\n<p>Hi.</p>\n<p class=\"legal\">"
         "Confidential for example.com.</p>\n",
     "added (text/html), template=legal"},
    {"HTML: </body> in a comment, a script and a quoted attribute", CONF_STD,
     "alice@example.com",
     HDR "Content-Type: text/html\n\n<body><p title=\"a</body>b\">x</p>"
         "<script>s='</body>';</script><!-- </body> -->\n</BODY>\n"
         "<!-- after -->\n",
     HDR "Content-Type: text/html\n\n<body><p title=\"a</body>b\">x</p>"
         "<script>s='</body>';</script><!-- </body> -->\n<p class=\"legal\">"
         "Confidential for example.com.</p>\n</BODY>\n<!-- after -->\n",
     "added (text/html), template=legal"},
    {"HTML ending inside a comment is left alone", CONF_STD,
     "alice@example.com",
     HDR "Content-Type: multipart/alternative; boundary=\"b1\"\n\n"
         "--b1\nContent-Type: text/plain\n\nHi.\n"
         "--b1\nContent-Type: text/html\n\n<p>Hi.</p><!-- open\n"
         "--b1--\n",
     HDR "Content-Type: multipart/alternative; boundary=\"b1\"\n\n"
         "--b1\nContent-Type: text/plain\n\nHi.\n" FOOT "\n"
         "--b1\nContent-Type: text/html\n\n<p>Hi.</p><!-- open\n"
         "--b1--\n",
     "added (text/plain), template=legal; text/html not edited (HTML ends "
     "inside a tag or comment)"},
    {"base64 text re-encoded as base64", CONF_STD, "alice@example.com",
     HDR "Content-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\n"
         "Content-Type: text/plain; charset=utf-8\n"
         "Content-Transfer-Encoding: base64\n\nSGVsbG8gQm9iLgo=\n"
         "--b1\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n"
         "\niVBORw0KGgo=\n--b1--\n",
     HDR "Content-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\n"
         "Content-Type: text/plain; charset=utf-8\n"
         "Content-Transfer-Encoding: base64\n\n"
         "SGVsbG8gQm9iLgotLSAKQ29uZmlkZW50aWFsIGZvciBleGFtcGxlLmNvbS4K\n"
         "--b1\nContent-Type: image/png\nContent-Transfer-Encoding: base64\n"
         "\niVBORw0KGgo=\n--b1--\n",
     "added (text/plain), template=legal"},
    {"quoted-printable stays quoted-printable", CONF_STD, "alice@example.com",
     HDR "Content-Type: text/plain; charset=iso-8859-1\n"
         "Content-Transfer-Encoding: quoted-printable\n\nGr=FC=DFe, Bob=\n.\n",
     HDR "Content-Type: text/plain; charset=iso-8859-1\n"
         "Content-Transfer-Encoding: quoted-printable\n\nGr=FC=DFe, Bob.\n"
         "--=20\nConfidential for example.com.\n",
     "added (text/plain), template=legal"},
    {"footer fits Latin-1: charset kept", "text_file = DIR/de.txt\n",
     "alice@example.com",
     HDR "Content-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\n"
         "Content-Type: text/plain; charset=windows-1252\n"
         "Content-Transfer-Encoding: 8bit\n\nK\xf6ln\n--b1--\n",
     HDR "Content-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\n"
         "Content-Type: text/plain; charset=windows-1252\n"
         "Content-Transfer-Encoding: 8bit\n\nK\xf6ln\n-- \n"
         "Vertraulich \x97 Gr\xfc\xdf"
         "e.\n--b1--\n",
     "added (text/plain), template=de"},
    {"footer does not fit Latin-1: part becomes UTF-8",
     "text_file = DIR/de.txt\n", "alice@example.com",
     HDR "Content-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\n"
         "Content-type: text/plain;\n charset=\"iso-8859-1\"; format=fixed\n"
         "Content-Transfer-Encoding: 8bit\n\nK\xf6ln\n--b1--\n",
     HDR "Content-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\n"
         "Content-type: text/plain;\n charset=utf-8; format=fixed\n"
         "Content-Transfer-Encoding: 8bit\n\nK\xc3\xb6ln\n-- \n"
         "Vertraulich \xe2\x80\x94 Gr\xc3\xbc\xc3\x9f"
         "e.\n--b1--\n",
     "added (text/plain as utf-8), template=de"},
    {"7bit us-ascii message: UTF-8 and quoted-printable headers",
     "text_file = DIR/de.txt\n", "alice@example.com",
     "From: a@example.com\nSubject: x\n\nHello.\n",
     "From: a@example.com\nSubject: x\nContent-Type: text/plain; "
     "charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n"
     "MIME-Version: 1.0\n\nHello.\n--=20\nVertraulich =E2=80=94 "
     "Gr=C3=BC=C3=9Fe.\n",
     "added (text/plain as utf-8), template=de"},
    {"UTF-16 text becomes UTF-8, base64 kept", CONF_STD, "alice@example.com",
     HDR "Content-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\n"
         "Content-Type: text/plain; charset=utf-16\n"
         "Content-Transfer-Encoding: base64\n\n//5IAGkACgA=\n--b1--\n",
     HDR "Content-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\n"
         "Content-Type: text/plain; charset=utf-8\n"
         "Content-Transfer-Encoding: base64\n\n"
         "SGkKLS0gCkNvbmZpZGVudGlhbCBmb3IgZXhhbXBsZS5jb20uCg==\n--b1--\n",
     "added (text/plain as utf-8), template=legal"},
    {"an empty base64 part keeps the delimiter on its own line", CONF_STD,
     "alice@example.com",
     HDR "Content-Type: multipart/alternative; boundary=\"b1\"\n\n--b1\n"
         "Content-Type: text/html\nContent-Transfer-Encoding: base64\n\n"
         "--b1--\n",
     HDR "Content-Type: multipart/alternative; boundary=\"b1\"\n\n--b1\n"
         "Content-Type: text/html\nContent-Transfer-Encoding: base64\n\n"
         "PHAgY2xhc3M9ImxlZ2FsIj5Db25maWRlbnRpYWwgZm9yIGV4YW1wbGUuY29tLjwvcD4K"
         "\n--b1--\n",
     "added (text/html), template=legal"},
    {"unknown charset is left alone", CONF_STD, "alice@example.com",
     HDR "Content-Type: text/plain; charset=x-no-such-charset\n\nHi.\n", NULL,
     "skipped (text/plain: unknown charset)"},
    {"8-bit text declared us-ascii is left alone", "text_file = DIR/de.txt\n",
     "alice@example.com",
     HDR "Content-Type: text/plain; charset=us-ascii\n"
         "Content-Transfer-Encoding: 8bit\n\nK\xc3\xb6ln\n",
     NULL, "skipped (text/plain: 8-bit text in a us-ascii part)"},
    {"HTML without charset: character references", "text_file = DIR/de.txt\n",
     "alice@example.com", HDR "Content-Type: text/html\n\n<body>x</body>\n",
     HDR "Content-Type: text/html\n\n<body>x<div class=\"disclaimer\">-- "
         "<br>\nVertraulich &#8212; Gr&#252;&#223;e.</div>\n</body>\n",
     "added (text/html), template=de"},
    /* A relay chain where an earlier hop signed: its signature covers
     * the body, so the footer would break it. */
    {"arrived DKIM-signed: untouched", CONF_STD, "alice@example.com",
     "DKIM-Signature: v=1; a=rsa-sha256; d=partner.example; s=p1;\n"
     "\th=from:to:subject; bh=" BH_HELLO "; b=y\n" HDR "\nHello Bob.\n",
     NULL, "skipped (DKIM-signed, d=partner.example, s=p1)"},
    {"arrived DKIM-signed, relaxed body, odd tag values made printable",
     CONF_STD, "alice@example.com",
     "DKIM-Signature: v=1; a=ed25519-sha256; c=simple/relaxed; b=y;\n"
     "\th=from; bh=" BH_HELLO "; d=evil\x01.example; s=a b\n" HDR
     "\nHello Bob.  \n",
     NULL, "skipped (DKIM-signed, d=evil?.example, s=ab)"},
    {"arrived DKIM-signed, dkim_signed = edit",
     CONF_STD "dkim_signed = edit\n", "alice@example.com",
     SIG_HELLO HDR "\nHello Bob.\n", SIG_HELLO HDR "\nHello Bob.\n" FOOT "\n",
     "added (text/plain), template=legal"},
    /* What a sender can write without the body's true hash does not stop
     * the footer: a signature already broken, or no signature at all. */
    {"a signature whose body hash does not match", CONF_STD,
     "alice@example.com", SIG_HELLO HDR "\nHello Eve.\n",
     SIG_HELLO HDR "\nHello Eve.\n" FOOT "\n",
     "added (text/plain), template=legal"},
    {"a field without the tags a signature needs", CONF_STD,
     "alice@example.com",
     "DKIM-Signature: d=partner.example; s=p1; bh=" BH_HELLO "\n" HDR
     "\nHello Bob.\n",
     "DKIM-Signature: d=partner.example; s=p1; bh=" BH_HELLO "\n" HDR
     "\nHello Bob.\n" FOOT "\n",
     "added (text/plain), template=legal"},
    {"multipart/signed is never touched", CONF_STD, "alice@example.com",
     HDR "Content-Type: multipart/signed; boundary=\"s\"; "
         "protocol=\"application/pgp-signature\"; micalg=pgp-sha256\n\n"
         "--s\nContent-Type: text/plain\n\nsigned text\n"
         "--s\nContent-Type: application/pgp-signature\n\nSIG\n--s--\n",
     NULL, "skipped (multipart/signed)"},
    {"multipart/encrypted is never touched", CONF_STD, "alice@example.com",
     HDR "Content-Type: multipart/encrypted; boundary=\"s\"; "
         "protocol=\"application/pgp-encrypted\"\n\n"
         "--s\nContent-Type: application/pgp-encrypted\n\nVersion: 1\n"
         "--s\nContent-Type: application/octet-stream\n\nDATA\n--s--\n",
     NULL, "skipped (multipart/encrypted)"},
    {"S/MIME opaque is never touched", CONF_STD, "alice@example.com",
     HDR "Content-Type: application/x-pkcs7-mime; smime-type=signed-data; "
         "name=smime.p7m\nContent-Transfer-Encoding: base64\n\nMIAGCSqG\n",
     NULL, "skipped (application/x-pkcs7-mime)"},
    {"a calendar invitation is never touched", CONF_STD, "alice@example.com",
     HDR "Content-Type: multipart/alternative; boundary=\"b1\"\n\n"
         "--b1\nContent-Type: text/plain\n\nMeeting\n"
         "--b1\nContent-Type: text/calendar; method=REQUEST\n\n"
         "BEGIN:VCALENDAR\nEND:VCALENDAR\n--b1--\n",
     NULL, "skipped (text/calendar)"},
    {"a delivery report is never touched", CONF_STD, "alice@example.com",
     HDR "Content-Type: multipart/report; report-type=delivery-status; "
         "boundary=\"r\"\n\n--r\nContent-Type: text/plain\n\nfailed\n"
         "--r\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; "
         "x\n--r--\n",
     NULL, "skipped (multipart/report)"},
    {"inline PGP is never touched", CONF_STD, "alice@example.com",
     HDR "\n-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nhi\n"
         "-----BEGIN PGP SIGNATURE-----\nxx\n-----END PGP SIGNATURE-----\n",
     NULL, "skipped (inline PGP)"},
    {"ambiguous MIME is never touched", CONF_STD, "alice@example.com",
     HDR "Content-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\n"
         "Content-Type: multipart/mixed; boundary=\"b1\"\n\n--b1\n\nx\n"
         "--b1--\n--b1--\n",
     NULL, "skipped (ambiguous MIME: duplicate boundary)"},
    {"text without any header field is never touched", CONF_STD,
     "alice@example.com", "From VM Mon Jan 1\nnot a header\n\nbody\n", NULL,
     "skipped (no header fields)"},
    {"an attached text file is not the body: a part is added", CONF_STD,
     "alice@example.com",
     HDR "Content-Type: multipart/mixed; boundary=\"b1\"\n\npreamble\n--b1\n"
         "Content-Type: text/plain\nContent-Disposition: attachment; "
         "filename=a.txt\n\nfile\n--b1--\nepilogue\n",
     HDR "Content-Type: multipart/mixed; boundary=\"b1\"\n\npreamble\n--b1\n"
         "Content-Type: text/plain\nContent-Disposition: attachment; "
         "filename=a.txt\n\nfile\n--b1\nContent-Type: text/plain; "
         "charset=utf-8\nContent-Transfer-Encoding: 7bit\n"
         "Content-Disposition: inline\n\n" FOOT "\n--b1--\nepilogue\n",
     "added (new text/plain part), template=legal"},
    {"Content-Disposition on a multipart does not hide its text", CONF_STD,
     "alice@example.com",
     HDR "Content-Type: multipart/mixed; boundary=\"b1\"\n"
         "Content-Disposition: attachment\n\n--b1\n\nHi.\n--b1--\n",
     HDR "Content-Type: multipart/mixed; boundary=\"b1\"\n"
         "Content-Disposition: attachment\n\n--b1\n\nHi.\n" FOOT "\n--b1--\n",
     "added (text/plain), template=legal"},
    {"a part added first with prepend", CONF_STD "position = prepend\n",
     "alice@example.com",
     HDR "Content-Type: multipart/mixed; boundary=\"b1\"\n\npreamble\n--b1\n"
         "Content-Type: image/gif\n\nGIF\n--b1--\n",
     HDR
     "Content-Type: multipart/mixed; boundary=\"b1\"\n\npreamble\n"
     "--b1\nContent-Type: text/plain; charset=utf-8\n"
     "Content-Transfer-Encoding: 7bit\nContent-Disposition: inline\n\n" FOOT
     "\n--b1\nContent-Type: image/gif\n\nGIF\n--b1--\n",
     "added (new text/plain part), template=legal"},
    {"a single attachment is wrapped in multipart/mixed", CONF_STD,
     "alice@example.com",
     "From: a@example.com\nContent-Type: image/png\n"
     "Content-Transfer-Encoding: base64\nSubject: x\n\niVBORw0KGgo=\n",
     "From: a@example.com\nContent-Type: multipart/mixed; "
     "boundary=\"=_disclaimer_ef02b9ada85a9f5dc1a57e77348778f7\"\nSubject: "
     "x\nMIME-Version: 1.0\n\n"
     "--=_disclaimer_ef02b9ada85a9f5dc1a57e77348778f7\n"
     "Content-Type: image/png\nContent-Transfer-Encoding: base64\n\n"
     "iVBORw0KGgo=\n\n--=_disclaimer_ef02b9ada85a9f5dc1a57e77348778f7\n"
     "Content-Type: text/plain; charset=utf-8\n"
     "Content-Transfer-Encoding: 7bit\nContent-Disposition: inline\n\n" FOOT
     "\n--=_disclaimer_ef02b9ada85a9f5dc1a57e77348778f7--\n",
     "added (new text/plain part), template=legal"},
    {"no_text_body = skip", CONF_STD "no_text_body = skip\n",
     "alice@example.com",
     "From: a@example.com\nContent-Type: image/png\n\nPNG\n", NULL,
     "skipped (no text body)"},
    {"a reply quoting the footer gets no second one", CONF_STD,
     "carol@example.com",
     HDR "\nThanks.\n\nOn Monday Alice wrote:\n> Hello Bob.\n> -- \n"
         "> Confidential for\n> example.com.\n",
     NULL, "skipped (text/plain: footer already present)"},
    {"once_per_thread = no adds it again", CONF_STD "once_per_thread = no\n",
     "alice@example.com",
     HDR "\nThanks.\n> -- \n> Confidential for "
         "example.com.\n",
     HDR "\nThanks.\n> -- \n> Confidential for example.com.\n" FOOT "\n",
     "added (text/plain), template=legal"},
    {"a quoted HTML footer is found too", CONF_STD, "alice@example.com",
     HDR "Content-Type: text/html\n\n<p>Thanks.</p><blockquote><p "
         "class=x>Confidential&nbsp;for\n example.com.</p></blockquote>\n",
     NULL, "skipped (text/html: footer already present)"},
    {"format=flowed: closed soft break, stuffed footer",
     "text_file = DIR/flow.txt\n", "alice@example.com",
     HDR "Content-Type: text/plain; format=flowed\n\nA long line \nthat "
         "flows \n",
     HDR "Content-Type: text/plain; format=flowed\n\nA long line \nthat "
         "flows \n\n-- \n From the legal team:\n > no trailing space\n",
     "added (text/plain), template=flow"},
    {"a footer line over 998 octets makes the part quoted-printable",
     "text_file = DIR/long.txt\n", "alice@example.com", HDR "\nHello.\n",
     NULL /* checked in test_long_line */,
     "added (text/plain), "
     "template=long"},
};

static void
test_run(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(run_cases) / sizeof(run_cases[0]); i++) {
        const struct run_case *c = &run_cases[i];
        struct buf got;
        struct verdict v;
        struct stage st;
        struct msg *m;
        struct err e;
        int rc;

        if (stage_load(&st, c->conf, &e) < 0)
            unit_fail(c->name, "load: %s", e.text);
        m = msg_build(c->sender, c->message);
        memset(&v, 0, sizeof(v));
        err_clear(&e);
        rc = flt_disclaimer_type.run(&st, m, &v, &e);
        if (rc != 0)
            unit_fail(c->name, "run: %s", e.text);
        unit_int_eq(c->name, v.kind, VERDICT_CONTINUE);
        unit_str_eq(c->name, v.note, c->note);
        buf_init(&got, 0);
        assert_int_equal(msg_write(m, &got, &e), 0);
        if (c->want != NULL || strstr(c->name, "over 998") == NULL)
            unit_str_eq(c->name, buf_str(&got),
                        c->want != NULL ? c->want : c->message);
        buf_fini(&got);
        msg_free(m);
        stage_unload(&st);
    }
}

/* test_long_line - no line over 998 octets, and the text decodes. */
static void
test_long_line(void **state)
{
    GMimeMessage *gm;
    GMimeObject *part;
    const struct mime *mm;
    struct verdict v;
    struct stage st;
    struct msg *m;
    struct buf got;
    struct err e;
    char *text;
    const char *p, *nl;

    (void)state;
    assert_int_equal(stage_load(&st, "text_file = DIR/long.txt\n", &e), 0);
    m = msg_build("alice@example.com", HDR "\nHello.\n");
    assert_int_equal(flt_disclaimer_type.run(&st, m, &v, &e), 0);
    buf_init(&got, 0);
    assert_int_equal(msg_write(m, &got, &e), 0);
    for (p = buf_str(&got); (nl = strchr(p, '\n')) != NULL; p = nl + 1)
        if (nl - p > 998)
            unit_fail("long line", "line of %d octets", (int)(nl - p));
    unit_has("long line", buf_str(&got),
             "Content-Transfer-Encoding: quoted-printable\n");
    assert_non_null(mm = msg_mime(m, &e));
    gm = mime_message(mm);
    part = g_mime_message_get_mime_part(gm);
    assert_true(GMIME_IS_TEXT_PART(part));
    text = g_mime_text_part_get_text(GMIME_TEXT_PART(part));
    unit_has("long line", text, "Hello.\nxxxxxxxxxx");
    unit_has("long line", text, "xxx alice@example.com");
    g_free(text);
    buf_fini(&got);
    msg_free(m);
    stage_unload(&st);
}

/* The top-level edits a milter replays: header changes, then the body. */
static void
test_journal(void **state)
{
    const struct msg_edit *ed;
    struct verdict v;
    struct stage st;
    struct msg *m;
    struct err e;
    size_t n;

    (void)state;
    assert_int_equal(stage_load(&st, "text_file = DIR/de.txt\n", &e), 0);
    m = msg_build("alice@example.com",
                  "From: a@example.com\nContent-Type: text/plain\n"
                  "Content-Transfer-Encoding: 7bit\n\nHello.\n");
    assert_int_equal(flt_disclaimer_type.run(&st, m, &v, &e), 0);
    n = msg_journal(m, &ed);
    unit_int_eq("journal", n, 4);
    unit_int_eq("journal 0", ed[0].kind, MSG_EDIT_HEADER_CHANGE);
    unit_str_eq("journal 0", ed[0].name, "Content-Type");
    unit_str_eq("journal 0", ed[0].value, " text/plain; charset=utf-8");
    unit_int_eq("journal 1", ed[1].kind, MSG_EDIT_HEADER_CHANGE);
    unit_str_eq("journal 1", ed[1].name, "Content-Transfer-Encoding");
    unit_int_eq("journal 2", ed[2].kind, MSG_EDIT_HEADER_ADD);
    unit_str_eq("journal 2", ed[2].name, "MIME-Version");
    unit_int_eq("journal 3", ed[3].kind, MSG_EDIT_BODY_REPLACE);
    unit_str_eq("journal 3", ed[3].value,
                "Hello.\n--=20\nVertraulich =E2=80=94 Gr=C3=BC=C3=9Fe.\n");
    msg_free(m);

    /* A message inside a multipart is one body replace. */
    m = msg_build("alice@example.com",
                  HDR "Content-Type: multipart/mixed; boundary=\"b\"\n\n--b\n"
                      "\nHi.\n--b--\n");
    assert_int_equal(flt_disclaimer_type.run(&st, m, &v, &e), 0);
    n = msg_journal(m, &ed);
    unit_int_eq("multipart journal", n, 1);
    unit_int_eq("multipart journal", ed[0].kind, MSG_EDIT_BODY_REPLACE);
    unit_str_eq("multipart journal", ed[0].value,
                "--b\nContent-Type: text/plain; charset=utf-8\n"
                "Content-Transfer-Encoding: quoted-printable\n\nHi.\n--=20\n"
                "Vertraulich =E2=80=94 Gr=C3=BC=C3=9Fe.\n--b--\n");
    msg_free(m);
    stage_unload(&st);
}

/* Variables: text as given (control characters out), HTML escaped. */
static void
test_variables(void **state)
{
    struct verdict v;
    struct stage st;
    struct msg *m;
    struct buf got;
    struct err e;
    char want[512], date[32];
    time_t now = time(NULL);
    struct tm tm;

    (void)state;
    assert_non_null(unit_write(tmp_dir, "vars.txt",
                               "From %{sender} at %{sender_domain} on "
                               "%{date}\n",
                               want, sizeof(want)));
    assert_int_equal(stage_load(&st,
                                "text_file = DIR/vars.txt\n"
                                "html_file = DIR/vip.html\n",
                                &e),
                     0);
    m = msg_build("\"a<b>&'x\"@example.com", HDR
                  "Content-Type: multipart/alternative; boundary=\"b\"\n\n"
                  "--b\n\nHi.\n--b\nContent-Type: text/html\n\n<p>Hi.</p>\n"
                  "--b--\n");
    assert_int_equal(flt_disclaimer_type.run(&st, m, &v, &e), 0);
    buf_init(&got, 0);
    assert_int_equal(msg_write(m, &got, &e), 0);
    localtime_r(&now, &tm);
    strftime(date, sizeof(date), "%Y-%m-%d", &tm);
    snprintf(want, sizeof(want),
             "Hi.\nFrom \"a<b>&'x\"@example.com at example.com on %s\n", date);
    unit_has("text variables", buf_str(&got), want);
    unit_has("HTML variables", buf_str(&got),
             "<p>Sent by &quot;a&lt;b&gt;&amp;&#39;x&quot;@example.com</p>");
    buf_fini(&got);
    msg_free(m);
    stage_unload(&st);
    snprintf(want, sizeof(want), "%s/vars.txt", tmp_dir);
    unlink(want);
}

/* The template map: first match wins, default for the rest. */
static void
test_map(void **state)
{
    static const struct {
        const char *sender;
        const char *note;
    } cases[] = {
        {"ceo@example.com", "added (text/plain), template=vip"},
        {"CEO@Example.COM", "added (text/plain), template=vip"},
        {"x@berlin.example.de", "added (text/plain as utf-8), template=de"},
        {"x@example.de", "added (text/plain), template=legal"},
        {"", "added (text/plain), template=legal"},
    };
    struct verdict v;
    struct stage st;
    struct msg *m;
    struct err e;
    size_t i;

    (void)state;
    if (stage_load(&st, CONF_STD "template_map = DIR/map\n", &e) < 0)
        unit_fail("map", "load: %s", e.text);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        m = msg_build(cases[i].sender, HDR "\nHi.\n");
        assert_int_equal(flt_disclaimer_type.run(&st, m, &v, &e), 0);
        unit_str_eq(cases[i].sender, v.note, cases[i].note);
        msg_free(m);
    }
    stage_unload(&st);

    /* Only a map: senders it does not name get no footer. */
    assert_int_equal(stage_load(&st, "template_map = DIR/map\n", &e), 0);
    m = msg_build("x@example.org", HDR "\nHi.\n");
    assert_int_equal(flt_disclaimer_type.run(&st, m, &v, &e), 0);
    unit_str_eq("map only", v.note, "skipped (no template for this sender)");
    msg_free(m);
    stage_unload(&st);
}

static void
test_init(void **state)
{
    static const struct {
        const char *name;
        const char *file; /* written as DIR/bad before the load */
        const char *conf;
        const char *want; /* DIR: the temporary directory */
    } cases[] = {
        {"nothing to add", NULL, "position = append\n",
         "DIR/50-disclaimer.conf: stage disclaimer needs text_file or "
         "template_map"},
        {"html without text", NULL, "html_file = DIR/legal.html\n",
         "DIR/50-disclaimer.conf:1: html_file: needs text_file as well"},
        {"missing file", NULL, "text_file = DIR/none.txt\n",
         "DIR/50-disclaimer.conf:1: text_file: DIR/none.txt: No such file "
         "or directory"},
        {"bad UTF-8", "ok\nbad \xff\n", "text_file = DIR/bad\n",
         "DIR/50-disclaimer.conf:1: text_file: DIR/bad:2: not valid UTF-8"},
        {"unknown variable", "a\nb %{recipient}\n",
         "text_file = DIR/legal.txt\nhtml_file = DIR/bad\n",
         "DIR/50-disclaimer.conf:2: html_file: DIR/bad:2: unknown variable "
         "\"%{recipient}\n\" (known: %{sender}, %{sender_domain}, %{date})"},
        {"empty template", "", "text_file = DIR/bad\n",
         "DIR/50-disclaimer.conf:1: text_file: DIR/bad: empty template"},
        {"control character", "a\x1b[31m\n", "text_file = DIR/bad\n",
         "DIR/50-disclaimer.conf:1: text_file: DIR/bad:1: control character "
         "0x1b in template"},
        {"bad map pattern", "a..b legal.txt\n", "template_map = DIR/bad\n",
         "DIR/50-disclaimer.conf:1: template_map: DIR/bad:1: bad pattern "
         "'a..b': empty label in domain"},
        {"map line without template", "\n\nexample.com\n",
         "template_map = DIR/bad\n",
         "DIR/50-disclaimer.conf:1: template_map: DIR/bad:3: want \"pattern "
         "text-file [html-file]\""},
        {"map naming a missing template", "example.com nosuch.txt\n",
         "template_map = DIR/bad\n",
         "DIR/50-disclaimer.conf:1: template_map: DIR/bad:1: DIR/nosuch.txt: "
         "No such file or directory"},
        {"empty map", "# nothing\n", "template_map = DIR/bad\n",
         "DIR/50-disclaimer.conf:1: template_map: DIR/bad: no rules"},
    };
    char want[1024], bad[512];
    struct stage st;
    struct err e;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (cases[i].file != NULL)
            assert_non_null(
                unit_write(tmp_dir, "bad", cases[i].file, bad, sizeof(bad)));
        err_clear(&e);
        unit_int_eq(cases[i].name, stage_load(&st, cases[i].conf, &e), -1);
        unit_str_eq(cases[i].name, e.text,
                    with_dir(cases[i].want, want, sizeof(want)));
        unit_int_eq(cases[i].name, st.priv == NULL, 1);
    }
    snprintf(bad, sizeof(bad), "%s/bad", tmp_dir);
    unlink(bad);
}

/* The chain refuses a disclaimer after a signing stage (DKIM, S/MIME). */
static int
t_sign_run(const struct stage *st, struct msg *m, struct verdict *v,
           struct err *e)
{
    if (msg_header_insert(m, st->name, 0, "X-Signature", "ok", e) < 0)
        return -1;
    return verdict_set(v, VERDICT_CONTINUE, NULL, "signed");
}

static const struct cfg_option t_no_options[] = {CFG_OPTION_END};
static const struct stage_type t_sign = {
    .name = "sign",
    .summary = "signs",
    .flags = STAGE_SIGNS,
    .options = t_no_options,
    .run = t_sign_run,
};

static const struct stage_type *
t_lookup(const char *name)
{
    if (strcmp(name, "sign") == 0)
        return &t_sign;
    if (strcmp(name, "disclaimer") == 0)
        return &flt_disclaimer_type;
    return NULL;
}

static void
test_order(void **state)
{
    char dir[256], conf[600], p1[600], p2[600];
    struct chain_result res;
    struct chain *ch;
    struct msg *m;
    struct buf got;
    struct err e;

    (void)state;
    snprintf(conf, sizeof(conf), "stage = disclaimer\ntext_file = %s\n",
             text_path);
    assert_non_null(unit_tmpdir(dir, sizeof(dir)));
    assert_non_null(
        unit_write(dir, "90-dkim.conf", "stage = sign\n", p1, sizeof(p1)));
    assert_non_null(
        unit_write(dir, "95-disclaimer.conf", conf, p2, sizeof(p2)));
    err_clear(&e);
    assert_null(chain_load_types(dir, CHAIN_AMBIGUOUS_REJECT, t_lookup, &e));
    unit_has("disclaimer after signing", e.text, "95-disclaimer.conf");
    unit_has("disclaimer after signing", e.text, "90-dkim.conf");
    unit_has("disclaimer after signing", e.text,
             "edits the body after the signing stage");
    unit_int_eq("disclaimer after signing", e.code, ERR_CONFIG);
    unlink(p2);

    /* Before the signer it loads, and the footer is in what is signed. */
    assert_non_null(
        unit_write(dir, "50-disclaimer.conf", conf, p2, sizeof(p2)));
    ch = chain_load_types(dir, CHAIN_AMBIGUOUS_REJECT, t_lookup, &e);
    if (ch == NULL)
        unit_fail("disclaimer before signing", "%s", e.text);
    m = msg_build("alice@example.com", HDR "\nHi.\n");
    assert_int_equal(chain_run(ch, m, &res, &e), 0);
    unit_int_eq("disclaimer before signing", res.verdict.kind,
                VERDICT_CONTINUE);
    buf_init(&got, 0);
    assert_int_equal(msg_write(m, &got, &e), 0);
    unit_str_eq("disclaimer before signing", buf_str(&got),
                "X-Signature: ok\n" HDR "\nHi.\n" FOOT "\n");
    buf_fini(&got);
    chain_result_fini(&res);
    msg_free(m);
    chain_free(ch);
    unlink(p1);
    unlink(p2);
    rmdir(dir);
}

/* The shipped chain.d example loads and adds its footer. */
static void
test_example_config(void **state)
{
    static const struct cfg_option stage_key[] = {
        {"stage", CFG_STRING, NULL, "stage type", NULL, 0, 0, 0},
        CFG_OPTION_END,
    };
    const struct cfg_option *tables[4] = {stage_key, match_options,
                                          flt_disclaimer_type.options, NULL};
    const char *top = getenv("top_srcdir");
    char path[1024];
    struct verdict v;
    struct stage st;
    struct msg *m;
    struct err e;

    (void)state;
    snprintf(path, sizeof(path), "%s/chain.d/50-disclaimer.conf",
             top ? top : ".");
    memset(&st, 0, sizeof(st));
    st.type = &flt_disclaimer_type;
    st.name = "disclaimer";
    st.flags = flt_disclaimer_type.flags;
    if ((st.cfg = cfg_parse(path, &e)) == NULL ||
        cfg_validate(st.cfg, tables, &e) < 0 ||
        flt_disclaimer_type.init(&st, st.cfg, &e) < 0)
        unit_fail("example", "%s", e.text);
    m = msg_build("alice@example.com", HDR "\nHi.\n");
    assert_int_equal(flt_disclaimer_type.run(&st, m, &v, &e), 0);
    unit_str_eq("example", v.note, "added (text/plain), template=legal-en");
    msg_free(m);
    m = msg_build("bob@berlin.example.de", HDR "\nHi.\n");
    assert_int_equal(flt_disclaimer_type.run(&st, m, &v, &e), 0);
    unit_str_eq("example de", v.note,
                "added (text/plain as utf-8), template=legal-de");
    msg_free(m);
    stage_unload(&st);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run),     cmocka_unit_test(test_long_line),
        cmocka_unit_test(test_journal), cmocka_unit_test(test_variables),
        cmocka_unit_test(test_map),     cmocka_unit_test(test_init),
        cmocka_unit_test(test_order),   cmocka_unit_test(test_example_config),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
