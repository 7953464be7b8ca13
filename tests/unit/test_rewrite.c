/*
 * test_rewrite - the rewrite stage over real messages
 *
 * Every case loads the stage from a configuration naming some of three
 * rule files, runs it over a struct msg built from an envelope and a
 * message text, and checks what the next hop would see: the envelope,
 * the message as msg_write() gives it, the edit journal a milter would
 * replay, and the verdict note in the log. Refused results must leave
 * the message exactly as it was.
 */
#include "config.h"

#include <unistd.h>

#include <gmime/gmime.h>

#include "unit.h"
#include "unit_stage.h"

#include "filters/filters.h"
#include "util/log.h"
#include "msg/mime.h"
#include "msg/msg.h"
#include "util/regmap.h"

static const char sender_table[] =
    "# masquerade internal hosts\n"
    "/^$/ null@example.com\n"
    "/^(.*)@[a-z0-9-]+\\.corp\\.example$/ ${1}@example.com\n"
    "/^bad@/ bad user@example.com\n"
    "/^same@example\\.com$/ same@example.com\n";

static const char rcpt_table[] =
    "/^(.*)@old\\.example$/ ${1}@new.example\n"
    "/^a@chain\\.example$/ b@chain.example\n"
    "/^b@chain\\.example$/ c@chain.example\n"
    "/^cr@/ x\ry@example.com\n"
    "/^(.*)@nodomain\\.example$/ $1\n"
    "/^long@/ "
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@x\n";

static const char header_table[] =
    "/^(.*)@host\\.corp\\.example$/ ${1}@example.com\n"
    "/^same@example\\.com$/ same@example.com\n"
    "/^evil@/ evil@example.com>, spoof@example.net\n"
    "/^long\\d*@/ a-long-mailbox-name-for-folding@example.com\n";

#define USE_SENDER 0x1
#define USE_RCPT 0x2
#define USE_HEADER 0x4
#define USE_DKIM_EDIT 0x8 /* dkim_signed = edit */

static char tmp_dir[256], sender_path[512], rcpt_path[512], header_path[512];

static const struct msg_limits test_limits = {
    10 * 1024 * 1024, 1000, 998, 20, 100,
};

static int
setup(void **state)
{
    (void)state;
    log_open("test_rewrite", LOG_MAIL, LOG_SINK_NONE);
    mime_init();
    if (unit_tmpdir(tmp_dir, sizeof(tmp_dir)) == NULL ||
        unit_write(tmp_dir, "sender.pcre", sender_table, sender_path,
                   sizeof(sender_path)) == NULL ||
        unit_write(tmp_dir, "rcpt.pcre", rcpt_table, rcpt_path,
                   sizeof(rcpt_path)) == NULL ||
        unit_write(tmp_dir, "header.pcre", header_table, header_path,
                   sizeof(header_path)) == NULL)
        return -1;
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    unlink(sender_path);
    unlink(rcpt_path);
    unlink(header_path);
    rmdir(tmp_dir);
    return 0;
}

/* stage_load - a rewrite stage from configuration text, as the chain
 * builds it: parsed, validated against the type's table, init()ed. */
static int
stage_load(struct stage *st, const char *conf, struct err *e)
{
    char name[512];

    snprintf(name, sizeof(name), "%s/10-rewrite.conf", tmp_dir);
    return unit_stage_load(st, &flt_rewrite_type, "rewrite", name, conf, e);
}

static void
stage_unload(struct stage *st)
{
    unit_stage_unload(st);
}

static int
stage_load_uses(struct stage *st, unsigned uses, struct err *e)
{
    char conf[2048];
    size_t n = 0;

    conf[0] = '\0';
    if (uses & USE_SENDER)
        n += (size_t)snprintf(conf + n, sizeof(conf) - n,
                              "sender_rules = %s\n", sender_path);
    if (uses & USE_RCPT)
        n += (size_t)snprintf(conf + n, sizeof(conf) - n,
                              "recipient_rules = %s\n", rcpt_path);
    if (uses & USE_HEADER)
        n += (size_t)snprintf(conf + n, sizeof(conf) - n,
                              "header_rules = %s\n", header_path);
    if (uses & USE_DKIM_EDIT)
        snprintf(conf + n, sizeof(conf) - n, "dkim_signed = edit\n");
    return stage_load(st, conf, e);
}

/* msg_build - envelope "sender PARAMS" and "rcpt PARAMS,rcpt,..." */
static struct msg *
msg_build(const char *sender, const char *rcpts, const char *text)
{
    char one[512], *sp;
    const char *p, *comma;
    struct msg *m;
    struct err e;
    size_t n;

    m = msg_new(&test_limits, MSG_FE_SMTP, &e);
    assert_non_null(m);
    assert_int_equal(
        msg_env_set(m, "QID1", "192.0.2.1", NULL, "client", 0, NULL, &e), 0);
    snprintf(one, sizeof(one), "%s", sender);
    if ((sp = strchr(one, ' ')) != NULL)
        *sp++ = '\0';
    assert_int_equal(msg_env_sender(m, one, sp, &e), 0);
    for (p = rcpts; *p != '\0'; p = *comma ? comma + 1 : comma) {
        if ((comma = strchr(p, ',')) == NULL)
            comma = p + strlen(p);
        n = (size_t)(comma - p);
        snprintf(one, sizeof(one), "%.*s", (int)n, p);
        if ((sp = strchr(one, ' ')) != NULL)
            *sp++ = '\0';
        assert_int_equal(msg_env_rcpt(m, one, sp, &e), 0);
    }
    if (msg_parse(m, text, strlen(text), &e) < 0)
        fail_msg("msg_parse: %s", e.text);
    return m;
}

/* env_string - "sender PARAMS|rcpt PARAMS,rcpt" as msg_build takes it. */
static void
env_string(const struct msg *m, struct buf *out)
{
    const struct msg_env *env = msg_env(m);
    struct err e;
    size_t i;

    buf_printf(out, &e, "%s%s%s|", env->sender, env->sender_params ? " " : "",
               env->sender_params ? env->sender_params : "");
    for (i = 0; i < env->nrcpts; i++)
        buf_printf(out, &e, "%s%s%s%s", i ? "," : "", env->rcpts[i].addr,
                   env->rcpts[i].params ? " " : "",
                   env->rcpts[i].params ? env->rcpts[i].params : "");
}

/* journal_string - "header change To#1; recipient add a@b" */
static void
journal_string(const struct msg *m, struct buf *out)
{
    const struct msg_edit *ed;
    struct err e;
    size_t n = msg_journal(m, &ed), i;

    for (i = 0; i < n; i++) {
        buf_printf(out, &e, "%s%s", i ? "; " : "",
                   msg_edit_kind_name(ed[i].kind));
        if (ed[i].name != NULL)
            buf_printf(out, &e, " %s#%zu", ed[i].name, ed[i].index);
        else
            buf_printf(out, &e, " %s", ed[i].value);
    }
}

struct run_case {
    const char *name;
    unsigned uses;
    const char *sender; /* "addr PARAMS" */
    const char *rcpts;  /* "addr PARAMS,addr" */
    const char *message;
    int want_rc;
    const char *want_env;     /* "sender|rcpts" after the run */
    const char *want_message; /* NULL: byte for byte the input */
    const char *want_journal;
    const char *want_note_or_err; /* note on success, error substring */
};

#define MSG1                                                                  \
    "From: Alice <alice@host.corp.example>\n"                                 \
    "To: bob@example.net\n"                                                   \
    "Subject: hi\n"                                                           \
    "\n"                                                                      \
    "body\n"

static const struct run_case run_cases[] = {
    {"sender masqueraded, params kept", USE_SENDER,
     "alice@mx1.corp.example SIZE=100 BODY=8BITMIME", "bob@example.net", MSG1,
     0, "alice@example.com SIZE=100 BODY=8BITMIME|bob@example.net", NULL,
     "sender change alice@example.com", "sender=rewritten"},
    {"null sender never rewritten", USE_SENDER, "", "bob@example.net", MSG1, 0,
     "|bob@example.net", NULL, "", "no change"},
    {"sender without match", USE_SENDER, "carol@example.org",
     "bob@example.net", MSG1, 0, "carol@example.org|bob@example.net", NULL, "",
     "no change"},
    {"identity result is no change", USE_SENDER, "same@example.com",
     "bob@example.net", MSG1, 0, "same@example.com|bob@example.net", NULL, "",
     "no change"},
    {"invalid sender result refused", USE_SENDER | USE_HEADER, "bad@x.example",
     "bob@example.net", MSG1, -1, "bad@x.example|bob@example.net", NULL, "",
     "sender.pcre:4: result \"bad user@example.com\" for <bad@x.example> is "
     "not a valid address: bad character in local part (quote it)"},
    {"recipient rewritten, params kept", USE_RCPT, "s@example.org",
     "alice@old.example NOTIFY=SUCCESS ORCPT=rfc822;alice@old.example,"
     "bob@other.example",
     MSG1, 0,
     "s@example.org|bob@other.example,alice@new.example NOTIFY=SUCCESS "
     "ORCPT=rfc822;alice@old.example",
     NULL,
     "recipient delete alice@old.example; recipient add alice@new.example",
     "rcpt=1 rewritten"},
    {"recipients mapped independently", USE_RCPT, "s@example.org",
     "a@chain.example NOTIFY=NEVER,b@chain.example", MSG1, 0,
     "s@example.org|b@chain.example NOTIFY=NEVER,c@chain.example", NULL,
     "recipient delete a@chain.example; recipient delete b@chain.example; "
     "recipient add b@chain.example; recipient add c@chain.example",
     "rcpt=2 rewritten"},
    {"rewrite onto an existing recipient", USE_RCPT, "s@example.org",
     "alice@old.example,alice@new.example", MSG1, 0,
     "s@example.org|alice@new.example", NULL,
     "recipient delete alice@old.example",
     "rcpt=1 rewritten (1 duplicate merged)"},
    {"two recipients onto one", USE_RCPT, "s@example.org",
     "x@old.example,x@OLD.example,y@other.example", MSG1, 0,
     "s@example.org|y@other.example,x@new.example", NULL,
     "recipient delete x@old.example; recipient add x@new.example",
     "rcpt=2 rewritten (1 duplicate merged)"},
    {"CR in recipient result refused, nothing written", USE_RCPT,
     "s@example.org", "alice@old.example,cr@example.org", MSG1, -1,
     "s@example.org|alice@old.example,cr@example.org", NULL, "",
     "rcpt.pcre:4: result \"x\\x0dy@example.com\" for <cr@example.org> is not "
     "a valid address: control character in local part"},
    {"result without domain refused", USE_RCPT, "s@example.org",
     "joe@nodomain.example", MSG1, -1, "s@example.org|joe@nodomain.example",
     NULL, "",
     "rcpt.pcre:5: result \"joe\" for <joe@nodomain.example> is not a valid "
     "address: missing @domain"},
    {"over-long local part refused", USE_RCPT, "s@example.org",
     "long@example.org", MSG1, -1, "s@example.org|long@example.org", NULL, "",
     "is not a valid address: local part longer than 64 octets"},
    {"From header rewritten, name kept", USE_HEADER, "s@example.org",
     "bob@example.net", MSG1, 0, "s@example.org|bob@example.net",
     "From: Alice <alice@example.com>\n"
     "To: bob@example.net\n"
     "Subject: hi\n"
     "\n"
     "body\n",
     "header change From#1", "headers=1 changed"},
    /* An earlier hop signed From and To (h=), not Reply-To: the signed
     * fields stay as they came, the envelope and Reply-To are rewritten. */
    {"fields an arriving DKIM signature covers are kept",
     USE_SENDER | USE_HEADER, "a@host.corp.example", "bob@example.net",
     "DKIM-Signature: v=1; a=rsa-sha256; d=partner.example; s=p1;\n"
     "\th=From : tO:subject; bh=x; b=y\n"
     "From: a@host.corp.example\n"
     "Reply-To: c@host.corp.example\n"
     "To: d@host.corp.example\n"
     "\nbody\n",
     0, "a@example.com|bob@example.net",
     "DKIM-Signature: v=1; a=rsa-sha256; d=partner.example; s=p1;\n"
     "\th=From : tO:subject; bh=x; b=y\n"
     "From: a@host.corp.example\n"
     "Reply-To: c@example.com\n"
     "To: d@host.corp.example\n"
     "\nbody\n",
     "sender change a@example.com; header change Reply-To#1",
     "sender=rewritten, headers=1 changed, headers=2 kept (DKIM-signed, "
     "d=partner.example, s=p1)"},
    /* A field without the tags RFC 6376 requires (h= here) is no
     * signature that any verifier accepts: nothing to keep. */
    {"a field without h= is no signature to keep", USE_HEADER, "s@example.org",
     "bob@example.net",
     "DKIM-Signature: v=1; a=rsa-sha256; d=partner.example; s=p1; bh=x; "
     "b=y\n" MSG1,
     0, "s@example.org|bob@example.net",
     "DKIM-Signature: v=1; a=rsa-sha256; d=partner.example; s=p1; bh=x; "
     "b=y\n"
     "From: Alice <alice@example.com>\n"
     "To: bob@example.net\n"
     "Subject: hi\n"
     "\n"
     "body\n",
     "header change From#1", "headers=1 changed"},
    {"dkim_signed = edit rewrites signed fields", USE_HEADER | USE_DKIM_EDIT,
     "s@example.org", "bob@example.net",
     "DKIM-Signature: v=1; a=rsa-sha256; d=partner.example; s=p1; h=from; "
     "bh=x; b=y\n" MSG1,
     0, "s@example.org|bob@example.net",
     "DKIM-Signature: v=1; a=rsa-sha256; d=partner.example; s=p1; h=from; "
     "bh=x; b=y\n"
     "From: Alice <alice@example.com>\n"
     "To: bob@example.net\n"
     "Subject: hi\n"
     "\n"
     "body\n",
     "header change From#1", "headers=1 changed"},
    {"all five address headers", USE_HEADER, "s@example.org",
     "bob@example.net",
     "From: a@host.corp.example\n"
     "Sender: b@host.corp.example\n"
     "Reply-To: c@host.corp.example\n"
     "To: d@host.corp.example\n"
     "Cc: e@host.corp.example\n"
     "Bcc: f@host.corp.example\n"
     "X-Other: g@host.corp.example\n"
     "\n"
     "body\n",
     0, "s@example.org|bob@example.net",
     "From: a@example.com\n"
     "Sender: b@example.com\n"
     "Reply-To: c@example.com\n"
     "To: d@example.com\n"
     "Cc: e@example.com\n"
     "Bcc: f@host.corp.example\n"
     "X-Other: g@host.corp.example\n"
     "\n"
     "body\n",
     "header change From#1; header change To#1; header change Cc#1; header "
     "change Reply-To#1; header change Sender#1",
     "headers=5 changed"},
    {"every occurrence, unchanged ones not journaled", USE_HEADER,
     "s@example.org", "bob@example.net",
     "To: bob@example.net\n"
     "To: Same <same@example.com>\n"
     "To: Carol <carol@host.corp.example> (work)\n"
     "Subject: x\n"
     "\n"
     "b\n",
     0, "s@example.org|bob@example.net",
     "To: bob@example.net\n"
     "To: Same <same@example.com>\n"
     "To: Carol <carol@example.com>\n"
     "Subject: x\n"
     "\n"
     "b\n",
     "header change To#3", "headers=1 changed"},
    {"quoted names, encoded words and groups", USE_HEADER, "s@example.org",
     "bob@example.net",
     "To: \"Doe, John\" <john@host.corp.example>,\n"
     " =?iso-8859-1?q?J=F6rg_M=FCller?= <joerg@Host.Corp.Example>\n"
     "Cc: Team: a@host.corp.example, \"B. Smith\" <b@c.example>;,\n"
     "\tundisclosed-recipients:;, x@y.example\n"
     "\n"
     "b\n",
     0, "s@example.org|bob@example.net",
     "To: \"Doe, John\" <john@example.com>, "
     "=?UTF-8?B?SsO2cmcgTcO8bGxlcg==?=\n"
     "\t<joerg@example.com>\n"
     "Cc: Team: a@example.com, \"B. Smith\" <b@c.example>;,\n"
     "\tundisclosed-recipients:;, x@y.example\n"
     "\n"
     "b\n",
     "header change To#1; header change Cc#1", "headers=2 changed"},
    {"quoted local part with @", USE_HEADER, "s@example.org",
     "bob@example.net", "From: \"a@b\"@host.corp.example\n\nb\n", 0,
     "s@example.org|bob@example.net", "From: \"a@b\"@example.com\n\nb\n",
     "header change From#1", "headers=1 changed"},
    {"CRLF message keeps CRLF", USE_HEADER, "s@example.org", "bob@example.net",
     "From: Alice <alice@host.corp.example>\r\nSubject: x\r\n\r\nb\r\n", 0,
     "s@example.org|bob@example.net",
     "From: Alice <alice@example.com>\r\nSubject: x\r\n\r\nb\r\n",
     "header change From#1", "headers=1 changed"},
    {"header result that injects an address refused", USE_HEADER,
     "s@example.org", "bob@example.net",
     "From: evil@x.example\nTo: a@host.corp.example\n\nb\n", -1,
     "s@example.org|bob@example.net", NULL, "", "From header: header_rules: "},
    {"everything at once", USE_SENDER | USE_RCPT | USE_HEADER,
     "alice@mx1.corp.example", "alice@old.example,bob@example.net", MSG1, 0,
     "alice@example.com|bob@example.net,alice@new.example",
     "From: Alice <alice@example.com>\n"
     "To: bob@example.net\n"
     "Subject: hi\n"
     "\n"
     "body\n",
     "sender change alice@example.com; recipient delete alice@old.example; "
     "recipient add alice@new.example; header change From#1",
     "sender=rewritten, rcpt=1 rewritten, headers=1 changed"},
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

        if (stage_load_uses(&st, c->uses, &e) < 0)
            unit_fail(c->name, "load: %s", e.text);
        m = msg_build(c->sender, c->rcpts, c->message);
        memset(&v, 0, sizeof(v));
        err_clear(&e);
        rc = flt_rewrite_type.run(&st, m, &v, &e);
        unit_int_eq(c->name, rc, c->want_rc);
        if (rc == 0) {
            unit_int_eq(c->name, v.kind, VERDICT_CONTINUE);
            unit_str_eq(c->name, v.note, c->want_note_or_err);
        } else {
            unit_has(c->name, e.text, c->want_note_or_err);
            unit_has(c->name, e.text, "rewrite: ");
        }

        buf_init(&got, 0);
        env_string(m, &got);
        unit_str_eq(c->name, buf_str(&got), c->want_env);
        buf_reset(&got);
        assert_int_equal(msg_write(m, &got, &e), 0);
        unit_str_eq(c->name, buf_str(&got),
                    c->want_message ? c->want_message : c->message);
        buf_reset(&got);
        journal_string(m, &got);
        unit_str_eq(c->name, buf_str(&got), c->want_journal);
        buf_fini(&got);
        msg_free(m);
        stage_unload(&st);
    }
}

/* Many rewritten addresses: folded at 78 columns, each one kept. */
static void
test_folding(void **state)
{
    const char *name = "folding";
    struct buf text, got;
    struct stage st;
    struct verdict v;
    struct msg *m;
    struct err e;
    const char *val, *p, *nl;
    InternetAddressList *list;
    int i;

    (void)state;
    assert_int_equal(stage_load_uses(&st, USE_HEADER, &e), 0);
    buf_init(&text, 0);
    buf_puts(&text, "To: ", &e);
    for (i = 0; i < 20; i++)
        buf_printf(&text, &e, "%s\"Person %d\" <long%d@x.example>",
                   i ? ", " : "", i, i);
    buf_puts(&text, "\nSubject: x\n\nb\n", &e);
    m = msg_build("s@example.org", "r@example.org", buf_str(&text));
    assert_int_equal(flt_rewrite_type.run(&st, m, &v, &e), 0);
    unit_str_eq(name, v.note, "headers=1 changed");

    buf_init(&got, 0);
    assert_int_equal(msg_write(m, &got, &e), 0);
    for (p = buf_str(&got); (nl = strchr(p, '\n')) != NULL; p = nl + 1)
        if (nl - p > 78)
            unit_fail(name, "line of %d octets: %.*s", (int)(nl - p),
                      (int)(nl - p), p);
    val = msg_header_get(m, "To", 1);
    assert_non_null(val);
    list = internet_address_list_parse(NULL, val);
    assert_non_null(list);
    unit_int_eq(name, internet_address_list_length(list), 20);
    for (i = 0; i < 20; i++) {
        InternetAddress *ia = internet_address_list_get_address(list, i);
        char want[32];

        snprintf(want, sizeof(want), "Person %d", i);
        unit_str_eq(name, internet_address_get_name(ia), want);
        unit_str_eq(
            name,
            internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia)),
            "a-long-mailbox-name-for-folding@example.com");
    }
    g_object_unref(list);
    buf_fini(&got);
    buf_fini(&text);
    msg_free(m);
    stage_unload(&st);
}

/* check_encoded_words - every "=?UTF-8?B?...?=" in s is at most 75
 * octets and decodes on its own to whole UTF-8 characters, as readers
 * that decode word by word need. */
static void
check_encoded_words(const char *name, const char *s)
{
    const char *p = s, *end;
    char text[128];
    guchar *raw;
    gsize len;

    while ((p = strstr(p, "=?UTF-8?B?")) != NULL) {
        if ((end = strstr(p + 10, "?=")) == NULL)
            unit_fail(name, "unterminated encoded word in %s", s);
        if (end + 2 - p > 75)
            unit_fail(name, "encoded word of %d octets", (int)(end + 2 - p));
        snprintf(text, sizeof(text), "%.*s", (int)(end - p - 10), p + 10);
        raw = g_base64_decode(text, &len);
        if (!g_utf8_validate((const char *)raw, (gssize)len, NULL))
            unit_fail(name, "encoded word %s splits a character", text);
        g_free(raw);
        p = end + 2;
    }
}

/* Display names in any charset come back the same after a rewrite. */
static void
test_names_round_trip(void **state)
{
    static const struct {
        const char *name;
        const char *field;
        const char *want_name;
    } cases[] = {
        {"latin-1 encoded word",
         "=?iso-8859-1?q?J=F6rg_M=FCller?= <j@host.corp.example>",
         "Jörg Müller"},
        {"long CJK name",
         "=?utf-8?b?"
         "5pel5pys6Kqe44Gu5ZCN5YmN44GM44Go44Gm44KC6ZW344GE5aC05ZCI44Gr"
         "44Gv44Gp44GG44Gq44KL44Gu44Gn44GX44KH44GG44GL?= "
         "<j@host.corp.example>",
         "日本語の名前がとても長い場合にはどうなるのでしょうか"},
        {"quote and backslash", "\"a \\\"b\\\\ c\" <j@host.corp.example>",
         "a \"b\\ c"},
        {"text that looks encoded",
         "=?utf-8?b?PT91dGYtOD9xP3g/PQ==?= <j@host.corp.example>",
         "=?utf-8?q?x?="},
        {"raw UTF-8 name", "Zoë Smith <j@host.corp.example>", "Zoë Smith"},
        {"long quoted name",
         "\"Doe, John (Engineering, Building 4, Room 1234, Extension 5678), "
         "Example Corporation, Example City\" <j@host.corp.example>",
         "Doe, John (Engineering, Building 4, Room 1234, Extension 5678), "
         "Example Corporation, Example City"},
        {"long atom in name",
         "Averyveryverylongnamewithoutanyspaceswhatsoeverthatgoesonandonandon"
         "andon Smith <j@host.corp.example>",
         "Averyveryverylongnamewithoutanyspaceswhatsoeverthatgoesonandonandon"
         "andon Smith"},
        {"word boundary inside a character",
         "x日本語の名前がとても長い場合にはどうなる <j@host.corp.example>",
         "x日本語の名前がとても長い場合にはどうなる"},
    };
    struct regmap *rm;
    struct err e;
    size_t i;

    (void)state;
    assert_non_null(rm = regmap_load(header_path, &e));
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        InternetAddressList *list;
        InternetAddress *ia;
        struct buf out;
        const char *p, *nl;
        int changed;

        buf_init(&out, 0);
        if (flt_rewrite_header_value(rm, cases[i].field, &out, &changed, &e) <
            0)
            unit_fail(cases[i].name, "rewrite: %s", e.text);
        unit_int_eq(cases[i].name, changed, 1);
        for (p = buf_str(&out); *p != '\0'; p = nl + 1) {
            if ((nl = strchr(p, '\n')) == NULL)
                nl = p + strlen(p);
            /* 10 columns for "Reply-To: " on the first line */
            if ((size_t)(nl - p) + (p == out.data ? 10 : 0) > 78)
                unit_fail(cases[i].name, "line over 78 columns: %s",
                          buf_str(&out));
            if (*nl == '\0')
                break;
        }
        check_encoded_words(cases[i].name, buf_str(&out));
        list = internet_address_list_parse(NULL, buf_str(&out));
        assert_non_null(list);
        unit_int_eq(cases[i].name, internet_address_list_length(list), 1);
        ia = internet_address_list_get_address(list, 0);
        unit_str_eq(cases[i].name, internet_address_get_name(ia),
                    cases[i].want_name);
        unit_str_eq(
            cases[i].name,
            internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia)),
            "j@example.com");
        g_object_unref(list);
        buf_fini(&out);
    }
    regmap_free(rm);
}

/* Only a field whose addresses change is written again. */
static void
test_unchanged_value(void **state)
{
    static const struct {
        const char *name;
        const char *field;
    } cases[] = {
        {"no match", " Bob <bob@example.net>, carol@example.org"},
        {"identity result", " same@example.com"},
        {"empty group", " undisclosed-recipients:;"},
        {"not addresses at all", " ;;; <<<"},
        {"empty", ""},
    };
    struct regmap *rm;
    struct buf out;
    struct err e;
    size_t i;
    int changed;

    (void)state;
    assert_non_null(rm = regmap_load(header_path, &e));
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        buf_init(&out, 0);
        changed = -1;
        unit_int_eq(
            cases[i].name,
            flt_rewrite_header_value(rm, cases[i].field, &out, &changed, &e),
            0);
        unit_int_eq(cases[i].name, changed, 0);
        unit_str_eq(cases[i].name, buf_str(&out), "");
        buf_fini(&out);
    }
    regmap_free(rm);
}

static void
test_line_limit(void **state)
{
    struct buf field, out;
    struct regmap *rm;
    struct err e;
    int changed, i;

    (void)state;
    assert_non_null(rm = regmap_load(header_path, &e));
    /* A name can always be folded; an address that is not rewritten is
     * written as it came and may be too long for any line. */
    buf_init(&field, 0);
    for (i = 0; i < 1000; i++)
        buf_putc(&field, 'n', &e);
    buf_puts(&field, "@x.example, j@host.corp.example", &e);
    buf_init(&out, 0);
    unit_int_eq(
        "address over 998 octets",
        flt_rewrite_header_value(rm, buf_str(&field), &out, &changed, &e), -1);
    unit_str_eq("address over 998 octets", e.text,
                "rewritten header would need a line of more than 998 octets");
    unit_int_eq("address over 998 octets", e.code, ERR_LIMIT);
    unit_str_eq("address over 998 octets", buf_str(&out), "");
    buf_fini(&out);
    buf_fini(&field);
    regmap_free(rm);
}

/* with_dir - in with each "DIR" replaced by the temporary directory. */
#define with_dir(in, out, n) unit_with_dir((in), tmp_dir, (out), (n))

static void
test_init(void **state)
{
    struct {
        const char *name;
        const char *conf; /* DIR: the temporary directory */
        const char *want; /* error, DIR as in conf */
        unsigned want_flags;
    } cases[] = {
        {"no table", "",
         "DIR/10-rewrite.conf: stage rewrite needs at least "
         "one of sender_rules, recipient_rules, header_rules",
         0},
        {"missing file", "header_rules = DIR/missing.pcre\n",
         "DIR/10-rewrite.conf:1: header_rules: DIR/missing.pcre: No such file "
         "or directory",
         0},
        {"bad pattern",
         "sender_rules = DIR/sender.pcre\n"
         "recipient_rules = DIR/bad.pcre\n",
         "DIR/10-rewrite.conf:2: recipient_rules: DIR/bad.pcre:2: pcre2: "
         "missing closing parenthesis at offset 3",
         0},
        {"sender only", "sender_rules = DIR/sender.pcre\n", NULL,
         STAGE_EDITS_SENDER},
        {"recipients only", "recipient_rules = DIR/rcpt.pcre\n", NULL,
         STAGE_EDITS_RCPTS},
        {"headers and sender",
         "header_rules = DIR/header.pcre\nsender_rules = DIR/sender.pcre\n",
         NULL, STAGE_EDITS_HEADERS | STAGE_EDITS_SENDER},
    };
    char conf[1024], want[1024], bad[512];
    struct stage st;
    struct err e;
    size_t i;

    (void)state;
    assert_non_null(unit_write(tmp_dir, "bad.pcre", "/ok/ r\n/a(b/ r\n", bad,
                               sizeof(bad)));
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        with_dir(cases[i].conf, conf, sizeof(conf));
        err_clear(&e);
        if (cases[i].want != NULL) {
            with_dir(cases[i].want, want, sizeof(want));
            unit_int_eq(cases[i].name, stage_load(&st, conf, &e), -1);
            unit_str_eq(cases[i].name, e.text, want);
            unit_int_eq(cases[i].name, e.code, ERR_CONFIG);
            unit_int_eq(cases[i].name, st.priv == NULL, 1);
            continue;
        }
        if (stage_load(&st, conf, &e) < 0)
            unit_fail(cases[i].name, "load: %s", e.text);
        unit_int_eq(cases[i].name, st.flags, cases[i].want_flags);
        stage_unload(&st);
    }
    unlink(bad);
}

static void
test_rewrite_test(void **state)
{
    char *text = NULL, want[2048];
    size_t len = 0;
    struct stage st, other;
    struct err e;
    FILE *fp;

    (void)state;
    assert_int_equal(
        stage_load_uses(&st, USE_SENDER | USE_RCPT | USE_HEADER, &e), 0);
    assert_non_null(fp = open_memstream(&text, &len));
    assert_int_equal(flt_rewrite_test(&st, "bob@mx1.corp.example", fp, &e), 0);
    assert_int_equal(flt_rewrite_test(&st, "bad@x.example", fp, &e), 0);
    fclose(fp);
    snprintf(want, sizeof(want),
             "sender_rules: bob@mx1.corp.example -> bob@example.com "
             "(%s:3)\n"
             "recipient_rules: bob@mx1.corp.example: no match\n"
             "header_rules: bob@mx1.corp.example: no match\n"
             "sender_rules: bad@x.example -> bad user@example.com "
             "(%s:4): refused, not a valid address: bad character in local "
             "part (quote it)\n"
             "recipient_rules: bad@x.example: no match\n"
             "header_rules: bad@x.example: no match\n",
             sender_path, sender_path);
    unit_str_eq("rewrite-test", text, want);
    free(text);

    memset(&other, 0, sizeof(other));
    unit_int_eq("not a rewrite stage",
                flt_rewrite_test(&other, "a@b", stdout, &e), -1);
    stage_unload(&st);
}

/* The shipped chain.d example loads and does what its comments say. */
static void
test_example_config(void **state)
{
    static const struct cfg_option stage_key[] = {
        {"stage", CFG_STRING, NULL, "stage type", NULL, 0, 0, 0},
        CFG_OPTION_END,
    };
    static const struct {
        const char *addr;
        const char *want; /* the three lines of rewrite-test, names cut */
    } cases[] = {
        {"alice@build1.corp.example",
         "sender_rules: alice@build1.corp.example -> alice@example.com\n"
         "recipient_rules: alice@build1.corp.example: no match\n"
         "header_rules: alice@build1.corp.example -> alice@example.com\n"},
        {"root@db2.corp.example",
         "sender_rules: root@db2.corp.example -> noreply@example.com\n"
         "recipient_rules: root@db2.corp.example: no match\n"
         "header_rules: root@db2.corp.example -> noreply@example.com\n"},
        {"Support@Example.COM",
         "sender_rules: Support@Example.COM: no match\n"
         "recipient_rules: Support@Example.COM -> "
         "helpdesk@tickets.example.com\n"
         "header_rules: Support@Example.COM: no match\n"},
        {"bob@legacy.example.com",
         "sender_rules: bob@legacy.example.com: no match\n"
         "recipient_rules: bob@legacy.example.com -> bob@example.com\n"
         "header_rules: bob@legacy.example.com: no match\n"},
    };
    const struct cfg_option *tables[3] = {stage_key, flt_rewrite_type.options,
                                          NULL};
    const char *top = getenv("top_srcdir");
    char path[1024], *text, *p, *q;
    size_t len, i;
    struct stage st;
    struct err e;
    FILE *fp;

    (void)state;
    snprintf(path, sizeof(path), "%s/chain.d/10-rewrite.conf",
             top ? top : ".");
    memset(&st, 0, sizeof(st));
    st.type = &flt_rewrite_type;
    st.name = "rewrite";
    st.flags = flt_rewrite_type.flags;
    if ((st.cfg = cfg_parse(path, &e)) == NULL ||
        cfg_validate(st.cfg, tables, &e) < 0 ||
        flt_rewrite_type.init(&st, st.cfg, &e) < 0)
        unit_fail("example", "%s", e.text);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        text = NULL;
        assert_non_null(fp = open_memstream(&text, &len));
        assert_int_equal(flt_rewrite_test(&st, cases[i].addr, fp, &e), 0);
        fclose(fp);
        /* drop the " (path:line)" of each line */
        for (p = q = text; *p != '\0'; p++) {
            if (*p == ' ' && p[1] == '(') {
                while (*p != '\0' && *p != '\n')
                    p++;
                if (*p == '\0')
                    break;
            }
            *q++ = *p;
        }
        *q = '\0';
        unit_str_eq(cases[i].addr, text, cases[i].want);
        free(text);
    }
    stage_unload(&st);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run),
        cmocka_unit_test(test_folding),
        cmocka_unit_test(test_names_round_trip),
        cmocka_unit_test(test_unchanged_value),
        cmocka_unit_test(test_line_limit),
        cmocka_unit_test(test_init),
        cmocka_unit_test(test_rewrite_test),
        cmocka_unit_test(test_example_config),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
