/*
 * test_milterd - the milter front end's session, without a socket
 *
 * Each case loads a relaychain.conf and chain.d of its own (the testedit
 * stage of tests/milter/ gives scripted edits and verdicts; the rewrite
 * stage real envelope edits), feeds a session the events Postfix would
 * send, and lets tests/milter/mtamodel apply the session's requests the
 * way Postfix's cleanup server does. What is checked is what the MTA ends
 * up with (header, body, envelope), the exact requests, the reply and the
 * answer.
 */
#include "config.h"

#include "unit.h"

#include <arpa/inet.h>
#include <libmilter/mfapi.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../milter/mtamodel.h"
#include "chain/conf.h"
#include "filters/filters.h"
#include "cli/parts.h"
#include "util/log.h"
#include "milterd/milterd.h"
#include "msg/mime.h"

struct mcase {
    const char *name;
    const char *conf;      /* extra relaychain.conf lines */
    const char *stages[3]; /* chain.d files, "NN-name.conf\ncontent" */
    const char *header;    /* "Name:value\n", folding "\n\t" */
    const char *body;
    enum milterd_status want_status;
    const char *want_header; /* NULL: not checked */
    const char *want_log;    /* exact requests; NULL: not checked */
    const char *want_reply;  /* NULL: none */
    const char *want_rcpts;  /* "a b" after the edits; NULL: unchanged */
    const char *want_sender;
};

static const struct mcase cases[] = {
    {"no chain, no request",
     "",
     {NULL},
     "From: a@x\nX-A: 1\n",
     "hi\r\n",
     MILTERD_CONTINUE,
     "From: a@x\nX-A: 1\n",
     "",
     NULL,
     NULL,
     NULL},
    /* The CVE-2022-48521 class: the delete of the first X-A moves the
     * second to index 1 at the MTA. */
    {"change second of three, delete first",
     "",
     {"10-e.conf\nstage = testedit\nheader_change = X-A:2:TWO\n"
      "header_delete = X-A:1\n"},
     "X-A: one\nSubject: s\nx-a: two\nX-A: three\n",
     "b\r\n",
     MILTERD_CONTINUE,
     "Subject: s\nx-a: TWO\nX-A: three\n",
     "del 1 X-A|-\nchg 1 x-a| TWO\n",
     NULL,
     NULL,
     NULL},
    {"delete first then change what became second",
     "",
     {"10-e.conf\nstage = testedit\nheader_delete = X-A:1\n",
      "20-e.conf\nstage = testedit\nheader_change = X-A:2:LAST\n"},
     "X-A: one\nX-A: two\nX-A: three\n",
     "b\r\n",
     MILTERD_CONTINUE,
     "X-A: two\nX-A: LAST\n",
     "del 1 X-A|-\nchg 2 X-A| LAST\n",
     NULL,
     NULL,
     NULL},
    {"insert at the top goes below the MTA's Received:",
     "",
     {"10-e.conf\nstage = testedit\nheader_insert = 0:X-Top:t\n"},
     "From: a@x\nTo: b@y\n",
     "b\r\n",
     MILTERD_CONTINUE,
     "X-Top: t\nFrom: a@x\nTo: b@y\n",
     "ins 1 X-Top| t\n",
     NULL,
     NULL,
     NULL},
    {"insert in the middle, after a delete above",
     "",
     {"10-e.conf\nstage = testedit\nheader_delete = A:1\n"
      "header_insert = 1:X-Mid:m\n"},
     "A: 1\nB: 2\nC: 3\n",
     "b\r\n",
     MILTERD_CONTINUE,
     "B: 2\nX-Mid: m\nC: 3\n",
     "del 1 A|-\nins 2 X-Mid| m\n",
     NULL,
     NULL,
     NULL},
    /* Postfix cannot find a header added with smfi_addheader: an edit of
     * one the chain added goes out as the add of the final field. */
    {"change of a field the chain added",
     "",
     {"10-e.conf\nstage = testedit\nheader_add = X-New:first\n",
      "20-e.conf\nstage = testedit\nheader_change = X-New:1:second\n"},
     "From: a@x\n",
     "b\r\n",
     MILTERD_CONTINUE,
     "From: a@x\nX-New: second\n",
     "add 0 X-New| second\n",
     NULL,
     NULL,
     NULL},
    {"delete of a field the chain added sends nothing",
     "",
     {"10-e.conf\nstage = testedit\nheader_insert = 0:X-Gone:g\n",
      "20-e.conf\nstage = testedit\nheader_delete = X-Gone:1\n"},
     "From: a@x\n",
     "b\r\n",
     MILTERD_CONTINUE,
     "From: a@x\n",
     "",
     NULL,
     NULL,
     NULL},
    {"folded value keeps LF folding both ways",
     "",
     {"10-e.conf\nstage = testedit\nheader_change = Subject:1:new\\nline\n"},
     "Subject: old\n\tfolded\nX-Keep: a\n\tb\n",
     "b\r\n",
     MILTERD_CONTINUE,
     "Subject: new\n\tline\nX-Keep: a\n\tb\n",
     "chg 1 Subject| new\n\tline\n",
     NULL,
     NULL,
     NULL},
    {"stage sees it runs in milter mode",
     "",
     {"10-e.conf\nstage = testedit\nfrontend_header = "
      "yes\n"},
     "From: a@x\n",
     "b\r\n",
     MILTERD_CONTINUE,
     NULL,
     NULL,
     NULL,
     NULL,
     NULL},
    /* The envelope from the events and macros drives match conditions:
     * the client is 192.0.2.7, authenticated as alice ({auth_authen}). */
    {"match_client and match_auth hold",
     "",
     {"10-e.conf\nstage = testedit\nmatch_client = 192.0.2.0/24\n"
      "match_auth = yes\nheader_add = X-Matched:yes\n",
      "20-e.conf\nstage = testedit\nmatch_client = 198.51.100.0/24\n"
      "header_add = X-Other:net\n",
      "30-e.conf\nstage = testedit\nmatch_auth = no\n"
      "header_add = X-Anon:yes\n"},
     "From: a@x\n",
     "b\r\n",
     MILTERD_CONTINUE,
     "From: a@x\nX-Matched: yes\n",
     NULL,
     NULL,
     NULL,
     NULL},
    {"reject with the stage's codes",
     "",
     {"10-e.conf\nstage = testedit\nverdict = reject\n"
      "reply = 550 5.7.1 Not 100% welcome\n"},
     "From: a@x\n",
     "b\r\n",
     MILTERD_REJECT,
     NULL,
     "",
     "550 5.7.1 Not 100%% welcome (id 4AB1C2D3E4)",
     NULL,
     NULL},
    {"tempfail with the stage's codes",
     "",
     {"10-e.conf\nstage = testedit\nverdict = tempfail\n"
      "reply = 452 4.3.1 Busy\n"},
     "From: a@x\n",
     "b\r\n",
     MILTERD_TEMPFAIL,
     NULL,
     "",
     "452 4.3.1 Busy (id 4AB1C2D3E4)",
     NULL,
     NULL},
    {"reject without a 5xx reply gets the chain's default",
     "",
     {"10-e.conf\nstage = testedit\nverdict = reject\nreply = 250 ok\n"},
     "From: a@x\n",
     "b\r\n",
     MILTERD_REJECT,
     NULL,
     "",
     "554 5.7.1 Message rejected by e (id 4AB1C2D3E4)",
     NULL,
     NULL},
    {"discard",
     "",
     {"10-e.conf\nstage = testedit\nverdict = discard\n"},
     "From: a@x\n",
     "b\r\n",
     MILTERD_DISCARD,
     NULL,
     "",
     NULL,
     NULL,
     NULL},
    {"quarantine replays the edits, then holds",
     "",
     {"10-e.conf\nstage = testedit\nverdict = quarantine\n"
      "header_add = X-Q:held\n"},
     "From: a@x\n",
     "b\r\n",
     MILTERD_CONTINUE,
     "From: a@x\nX-Q: held\n",
     "add 0 X-Q| held\nhold 0 relaychain e: testedit|-\n",
     NULL,
     NULL,
     NULL},
    {"stage error follows on_error = tempfail",
     "",
     {"10-e.conf\nstage = testedit\nfail = yes\n"},
     "From: a@x\n",
     "b\r\n",
     MILTERD_TEMPFAIL,
     NULL,
     "",
     "451 4.3.0 Temporary failure in e, try again later (id 4AB1C2D3E4)",
     NULL,
     NULL},
    {"stage error with on_error = continue passes",
     "",
     {"10-e.conf\nstage = testedit\nfail = yes\non_error = continue\n"},
     "From: a@x\n",
     "b\r\n",
     MILTERD_CONTINUE,
     "From: a@x\n",
     "",
     NULL,
     NULL,
     NULL},
    /* The failed stage's edits are undone: the MTA gets only the next
     * stage's, with indexes as if the failed stage had not run. */
    {"edits then an error with on_error = continue: none replayed",
     "",
     {"10-e.conf\nstage = testedit\nheader_delete = X-A:1\n"
      "header_add = X-Half:done\nbody_size = 300\nfail_after_edits = yes\n"
      "on_error = continue\n",
      "20-k.conf\nstage = testedit\nheader_change = X-A:1:kept\n"},
     "From: a@x\nX-A: 1\n",
     "b\r\n",
     MILTERD_CONTINUE,
     "From: a@x\nX-A: kept\n",
     "chg 1 X-A| kept\n",
     NULL,
     NULL,
     NULL},
    {"over message_size_limit: tempfail by default",
     "message_size_limit = 1024\n",
     {NULL},
     "From: a@x\n",
     "0123456789012345678901234567890123456789012345678901234567890123456789"
     "0123456789012345678901234567890123456789012345678901234567890123456789"
     "0123456789012345678901234567890123456789012345678901234567890123456789"
     "0123456789012345678901234567890123456789012345678901234567890123456789"
     "0123456789012345678901234567890123456789012345678901234567890123456789"
     "0123456789012345678901234567890123456789012345678901234567890123456789"
     "0123456789012345678901234567890123456789012345678901234567890123456789"
     "0123456789012345678901234567890123456789012345678901234567890123456789"
     "0123456789012345678901234567890123456789012345678901234567890123456789"
     "0123456789012345678901234567890123456789012345678901234567890123456789"
     "0123456789012345678901234567890123456789012345678901234567890123456789"
     "0123456789012345678901234567890123456789012345678901234567890123456789"
     "0123456789012345678901234567890123456789012345678901234567890123456789"
     "0123456789012345678901234567890123456789012345678901234567890123456789"
     "0123456789012345678901234567890123456789012345678901234567890123456789"
     "\r\n",
     MILTERD_TEMPFAIL,
     NULL,
     "",
     "452 4.3.4 Message too big for the content filter (id 4AB1C2D3E4)",
     NULL,
     NULL},
    {"over header_limit with milter_size_action = reject",
     "header_limit = 2\nmilter_size_action = reject\n",
     {NULL},
     "A: 1\nB: 2\nC: 3\n",
     "b\r\n",
     MILTERD_REJECT,
     NULL,
     "",
     "552 5.3.4 Message size exceeds fixed limit (id 4AB1C2D3E4)",
     NULL,
     NULL},
    {"over the limit with milter_size_action = accept",
     "header_limit = 1\nmilter_size_action = accept\n",
     {NULL},
     "A: 1\nB: 2\n",
     "b\r\n",
     MILTERD_CONTINUE,
     "A: 1\nB: 2\n",
     "",
     NULL,
     NULL,
     NULL},
    {"a field name no message can hold is refused",
     "",
     {NULL},
     "Bad Name: x\nFrom: a@x\n",
     "b\r\n",
     MILTERD_REJECT,
     NULL,
     "",
     "554 5.6.0 Malformed header field (id 4AB1C2D3E4)",
     NULL,
     NULL},
    {"envelope rewrite becomes chgfrom, delrcpt and addrcpt",
     "",
     {"10-rw.conf\nstage = rewrite\nsender_rules = RULES\n"
      "recipient_rules = RULES\n"},
     "From: a@x\n",
     "b\r\n",
     MILTERD_CONTINUE,
     "From: a@x\n",
     "from 0 <alice@example.com>|-\nrcpt- 0 <bob@corp.example>|-\n"
     "rcpt+ 0 <bob@example.com>|-\n",
     NULL,
     "<keep@example.net> <bob@example.com>",
     "<alice@example.com>"},
};

static char tmp_root[256];

static struct conf *
case_conf(const struct mcase *c, char *dir, size_t n)
{
    char path[600], file[700], sub[600];
    struct conf *cf;
    struct err e;
    size_t i;
    FILE *fp;

    snprintf(dir, n, "%s/XXXXXX", tmp_root);
    assert_non_null(mkdtemp(dir));
    snprintf(sub, sizeof(sub), "%s/chain.d", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(path, sizeof(path), "%s/rules", dir);
    unit_write(dir, "rules", "/^([^@]+)@corp\\.example$/ ${1}@example.com\n",
               file, sizeof(file));
    for (i = 0; i < 3 && c->stages[i] != NULL; i++) {
        const char *nl = strchr(c->stages[i], '\n'), *r;
        char name[64];

        snprintf(name, sizeof(name), "%.*s", (int)(nl - c->stages[i]),
                 c->stages[i]);
        snprintf(file, sizeof(file), "%s/%s", sub, name);
        assert_non_null(fp = fopen(file, "w"));
        for (r = nl + 1; *r; r++) {
            if (strncmp(r, "RULES", 5) == 0) {
                fputs(path, fp);
                r += 4;
            } else {
                fputc(*r, fp);
            }
        }
        fclose(fp);
    }
    snprintf(file, sizeof(file), "%s/relaychain.conf", dir);
    assert_non_null(fp = fopen(file, "w"));
    fprintf(fp, "chain_directory = chain.d\nmilter_listen = unix:%s/s\n%s",
            dir, c->conf);
    fclose(fp);
    if ((cf = conf_load(file, parts_all, &e)) == NULL)
        unit_fail(c->name, "conf_load: %s", e.text);
    return cf;
}

static void
case_cleanup(const char *dir)
{
    assert_int_equal(unit_rmtree(dir), 0);
}

/* feed - the events Postfix sends for header and body: values with
 * their leading space, folding as LF. */
static void
feed(struct milterd_session *s, const char *header, const char *body,
     size_t body_len)
{
    const char *p = header;

    while (*p) {
        const char *colon = strchr(p, ':'), *end = p;
        char name[128], value[1024];

        while ((end = strchr(end, '\n')) != NULL &&
               (end[1] == ' ' || end[1] == '\t'))
            end++;
        assert_non_null(colon);
        assert_non_null(end);
        snprintf(name, sizeof(name), "%.*s", (int)(colon - p), p);
        snprintf(value, sizeof(value), "%.*s", (int)(end - colon - 1),
                 colon + 1);
        milterd_header(s, name, value);
        p = end + 1;
    }
    milterd_body(s, (const unsigned char *)body, body_len);
}

static void
test_cases(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct mcase *c = &cases[i];
        const char *rcpts[] = {"<keep@example.net>", "<bob@corp.example>",
                               NULL};
        char *mail[] = {"<alice@corp.example>", NULL};
        char *r1[] = {"<keep@example.net>", NULL};
        char *r2[] = {"<bob@corp.example>", "NOTIFY=NEVER", NULL};
        struct sockaddr_in sin;
        struct milterd_session *s;
        struct mtamodel *mm;
        struct buf hdr;
        struct conf *cf;
        struct err e;
        char dir[512];
        enum milterd_status st;

        cf = case_conf(c, dir, sizeof(dir));
        assert_non_null(mm = malloc(sizeof(*mm)));
        mtamodel_init(mm, c->header, "<alice@corp.example>", rcpts);
        s = milterd_session_new(cf, NULL, &mtamodel_ops, mm,
                                SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY |
                                    SMFIF_ADDRCPT | SMFIF_DELRCPT |
                                    SMFIF_CHGFROM | SMFIF_QUARANTINE,
                                SMFIP_HDR_LEADSPC, &e);
        assert_non_null(s);
        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        sin.sin_addr.s_addr = htonl(0xc0000207);
        milterd_macro(s, "{daemon_name}", "smtpd");
        milterd_connect(s, "client.test.example", (struct sockaddr *)&sin);
        milterd_helo(s, "client.test.example");
        milterd_mail(s, mail);
        milterd_macro(s, "i", "4AB1C2D3E4");
        milterd_macro(s, "{auth_authen}", "alice");
        milterd_rcpt(s, r1);
        milterd_rcpt(s, r2);
        feed(s, c->header, c->body, strlen(c->body));
        st = milterd_eom(s);
        unit_int_eq(c->name, st, c->want_status);
        buf_init(&hdr, 0);
        mtamodel_header(mm, &hdr);
        if (c->want_header != NULL)
            unit_str_eq(c->name, buf_str(&hdr), c->want_header);
        if (c->want_log != NULL)
            unit_str_eq(c->name, buf_str(&mm->log), c->want_log);
        unit_str_eq(c->name, mm->reply[0] ? mm->reply : NULL, c->want_reply);
        if (strstr(c->stages[0] ? c->stages[0] : "", "frontend_header"))
            unit_has(c->name, buf_str(&hdr), "X-Frontend: milter\n");
        if (c->want_rcpts != NULL) {
            char got[512] = "";
            size_t k;

            for (k = 0; k < mm->nrcpts; k++)
                snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s",
                         k ? " " : "", mm->rcpts[k]);
            unit_str_eq(c->name, got, c->want_rcpts);
        }
        if (c->want_sender != NULL)
            unit_str_eq(c->name, mm->sender, c->want_sender);
        buf_fini(&hdr);
        milterd_session_free(s);
        mtamodel_fini(mm);
        free(mm);
        conf_free(cf);
        case_cleanup(dir);
    }
}

/* A replaced body over 64 KB goes in chunks the protocol can carry, and
 * bare LF line ends become CRLF. */
static void
test_body(void **state)
{
    static const struct mcase c = {
        "body",
        "",
        {"10-e.conf\nstage = testedit\nbody_size = 150000\n"},
        "From: a@x\n",
        "old\r\n",
        MILTERD_CONTINUE,
        NULL,
        NULL,
        NULL,
        NULL,
        NULL};
    char *mail[] = {"<a@x>", NULL}, *rcpt[] = {"<b@y>", NULL};
    const char *rcpts[] = {"<b@y>", NULL};
    struct milterd_session *s;
    struct mtamodel *mm;
    struct conf *cf;
    struct err e;
    char dir[512];

    (void)state;
    cf = case_conf(&c, dir, sizeof(dir));
    assert_non_null(mm = malloc(sizeof(*mm)));
    mtamodel_init(mm, c.header, "<a@x>", rcpts);
    assert_non_null(
        s = milterd_session_new(cf, NULL, &mtamodel_ops, mm,
                                SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY,
                                SMFIP_HDR_LEADSPC, &e));
    milterd_mail(s, mail);
    milterd_rcpt(s, rcpt);
    feed(s, c.header, c.body, strlen(c.body));
    unit_int_eq("status", milterd_eom(s), MILTERD_CONTINUE);
    unit_int_eq("body octets", mm->body.len, 150000);
    unit_int_eq("chunks", mm->chunks, 3);
    unit_int_eq("largest chunk", mm->max_chunk, 65535);
    unit_has("first line", buf_str(&mm->body), "00000000 relaychain");
    unit_has("line ends", buf_str(&mm->body), "\r\n00000001 ");
    milterd_session_free(s);
    mtamodel_fini(mm);
    free(mm);
    conf_free(cf);
    case_cleanup(dir);
}

/* An MTA that refuses a request: the answer is tempfail, never accept. */
static void
test_mta_refuses(void **state)
{
    static const struct mcase c = {
        "refuse",
        "",
        {"10-e.conf\nstage = testedit\nheader_add = X-A:a\n"
         "header_change = From:1:b@x\n"},
        "From: a@x\n",
        "b\r\n",
        MILTERD_TEMPFAIL,
        NULL,
        NULL,
        NULL,
        NULL,
        NULL};
    char *mail[] = {"<a@x>", NULL}, *rcpt[] = {"<b@y>", NULL};
    const char *rcpts[] = {"<b@y>", NULL};
    unsigned fail_at;

    (void)state;
    for (fail_at = 1; fail_at <= 2; fail_at++) {
        struct milterd_session *s;
        struct mtamodel *mm;
        struct conf *cf;
        struct err e;
        char dir[512];

        cf = case_conf(&c, dir, sizeof(dir));
        assert_non_null(mm = malloc(sizeof(*mm)));
        mtamodel_init(mm, c.header, "<a@x>", rcpts);
        mm->fail_at = fail_at;
        assert_non_null(s = milterd_session_new(cf, NULL, &mtamodel_ops, mm,
                                                SMFIF_ADDHDRS | SMFIF_CHGHDRS,
                                                SMFIP_HDR_LEADSPC, &e));
        milterd_mail(s, mail);
        milterd_rcpt(s, rcpt);
        feed(s, c.header, c.body, strlen(c.body));
        unit_int_eq("status", milterd_eom(s), MILTERD_TEMPFAIL);
        unit_has("reply", mm->reply, "451 4.3.0");
        milterd_session_free(s);
        mtamodel_fini(mm);
        free(mm);
        conf_free(cf);
        case_cleanup(dir);
    }
}

/* A slow stage: the MTA hears smfi_progress while the chain runs. */
static void
test_progress(void **state)
{
    static const struct mcase c = {
        "progress",
        "",
        {"10-e.conf\nstage = testedit\ndelay = 400ms\n"},
        "From: a@x\n",
        "b\r\n",
        MILTERD_CONTINUE,
        NULL,
        NULL,
        NULL,
        NULL,
        NULL};
    char *mail[] = {"<a@x>", NULL}, *rcpt[] = {"<b@y>", NULL};
    const char *rcpts[] = {"<b@y>", NULL};
    struct milterd_server *srv;
    struct milterd_session *s;
    struct mtamodel *mm;
    struct conf *cf;
    struct err e;
    char dir[512];

    (void)state;
    cf = case_conf(&c, dir, sizeof(dir));
    assert_non_null(srv = milterd_server_new(100, &e));
    assert_non_null(mm = malloc(sizeof(*mm)));
    mtamodel_init(mm, c.header, "<a@x>", rcpts);
    assert_non_null(s = milterd_session_new(cf, srv, &mtamodel_ops, mm, 0,
                                            SMFIP_HDR_LEADSPC, &e));
    milterd_mail(s, mail);
    milterd_rcpt(s, rcpt);
    feed(s, c.header, c.body, strlen(c.body));
    unit_int_eq("status", milterd_eom(s), MILTERD_CONTINUE);
    if (mm->progress < 2 || mm->progress > 5)
        unit_fail("progress",
                  "got %u progress notices in 400 ms at 100 ms, "
                  "want 2 to 5",
                  mm->progress);
    milterd_session_free(s);
    milterd_server_free(srv);
    mtamodel_fini(mm);
    free(mm);
    conf_free(cf);
    case_cleanup(dir);
}

/* Events out of order (as a fuzzer or a broken MTA sends them) are
 * answered with a tempfail, and a RSET forgets the transaction. */
static void
test_out_of_order(void **state)
{
    static const struct mcase c = {"order", "",   {NULL}, "",   "",  0,
                                   NULL,    NULL, NULL,   NULL, NULL};
    char *mail[] = {"<a@x>", NULL}, *rcpt[] = {"<b@y>", NULL};
    struct milterd_session *s;
    struct mtamodel *mm;
    struct conf *cf;
    struct err e;
    char dir[512];

    (void)state;
    cf = case_conf(&c, dir, sizeof(dir));
    assert_non_null(mm = malloc(sizeof(*mm)));
    mtamodel_init(mm, "", "<a@x>", NULL);
    assert_non_null(
        s = milterd_session_new(cf, NULL, &mtamodel_ops, mm, 0, 0, &e));
    milterd_header(s, "From", "a@x");
    unit_int_eq("EOM without MAIL", milterd_eom(s), MILTERD_TEMPFAIL);
    milterd_mail(s, mail);
    milterd_rcpt(s, rcpt);
    milterd_header(s, "From", "a@x");
    milterd_abort(s);
    milterd_rcpt(s, rcpt);
    unit_int_eq("RCPT after abort", milterd_eom(s), MILTERD_TEMPFAIL);
    milterd_mail(s, mail);
    milterd_rcpt(s, rcpt);
    /* without SMFIP_HDR_LEADSPC the value comes without its space */
    milterd_header(s, "From", "a@x");
    milterd_eoh(s);
    milterd_body(s, (const unsigned char *)"x\r\n", 3);
    unit_int_eq("then a good message", milterd_eom(s), MILTERD_CONTINUE);
    milterd_session_free(s);
    mtamodel_fini(mm);
    free(mm);
    conf_free(cf);
    case_cleanup(dir);
}

static void
test_negotiate(void **state)
{
    static const struct {
        const char *name;
        unsigned flags;
        size_t nstages;
        unsigned long offer_act, want_act, want_proto_set, want_proto_clear;
        int rc;
    } t[] = {
        {"empty chain: no header, no body, no actions", 0, 0, SMFI_CURR_ACTS,
         SMFIF_SETSYMLIST,
         SMFIP_NOHDRS | SMFIP_NOBODY | SMFIP_NR_HDR | SMFIP_NR_RCPT, 0, 0},
        {"rewrite: sender and recipients, headers",
         STAGE_EDITS_HEADERS | STAGE_EDITS_SENDER | STAGE_EDITS_RCPTS, 1,
         SMFI_CURR_ACTS,
         SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGFROM | SMFIF_ADDRCPT |
             SMFIF_DELRCPT | SMFIF_ADDRCPT_PAR | SMFIF_QUARANTINE |
             SMFIF_SETSYMLIST,
         SMFIP_HDR_LEADSPC | SMFIP_NR_HDR | SMFIP_NOEOH,
         /* DATA and body chunks are answered (Nagle, milterd.c) */
         SMFIP_NOHDRS | SMFIP_NOBODY | SMFIP_NR_BODY | SMFIP_NODATA |
             SMFIP_NR_DATA,
         0},
        {"body editor: body only", STAGE_EDITS_BODY, 1,
         SMFIF_CHGBODY | SMFIF_QUARANTINE, SMFIF_CHGBODY | SMFIF_QUARANTINE,
         SMFIP_NR_MAIL, SMFIP_NOBODY, 0},
        {"MTA without chgfrom", STAGE_EDITS_SENDER, 1, SMFI_V2_ACTS, 0, 0, 0,
         -1},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        unsigned long act = 0, proto = 0;
        struct err e;
        int rc;

        rc = milterd_negotiate(t[i].flags, t[i].nstages, t[i].offer_act,
                               SMFI_CURR_PROT, &act, &proto, &e);
        unit_int_eq(t[i].name, rc, t[i].rc);
        if (rc < 0) {
            unit_has(t[i].name, e.text, "change the sender");
            continue;
        }
        unit_int_eq(t[i].name, act, t[i].want_act);
        unit_int_eq(t[i].name, proto & t[i].want_proto_set,
                    t[i].want_proto_set);
        unit_int_eq(t[i].name, proto & t[i].want_proto_clear, 0);
        unit_int_eq(t[i].name, proto & ~SMFI_CURR_PROT, 0);
    }
}

/* What t_hold hands out: each call the next runtime of t_rts, as a
 * daemon that reloads between two calls would. */
static struct runtime *t_rts[2];
static unsigned t_holds;

static struct runtime *
t_hold(void)
{
    struct runtime *rt = t_rts[t_holds++ % 2];

    runtime_hold(rt);
    return rt;
}

/* A connection holds its runtime once, at negotiation, and keeps the
 * one whose chain the actions were agreed for, whatever a reload swaps
 * in meanwhile. */
static void
test_conn_hold_once(void **state)
{
    static const struct mcase edits = {
        "edits", "",   {"10-e.conf\nstage = testedit\nheader_add = X-A:a\n"},
        "",      "",   0,
        NULL,    NULL, NULL,
        NULL,    NULL};
    static const struct mcase empty = {"empty", "",   {NULL}, "",   "",  0,
                                       NULL,    NULL, NULL,   NULL, NULL};
    struct milterd_conn c;
    unsigned long act, proto;
    char dir[2][512];
    struct err e;

    (void)state;
    err_clear(&e);
    assert_non_null(t_rts[0] = runtime_new(
                        case_conf(&edits, dir[0], sizeof(dir[0])), NULL, &e));
    assert_non_null(t_rts[1] = runtime_new(
                        case_conf(&empty, dir[1], sizeof(dir[1])), NULL, &e));

    t_holds = 0;
    act = SMFI_CURR_ACTS;
    proto = SMFI_CURR_PROT;
    unit_int_eq("open",
                milterd_conn_open(&c, t_hold, 1, &act, &proto, NULL,
                                  &mtamodel_ops, NULL, &e),
                0);
    unit_int_eq("held once", t_holds, 1);
    unit_int_eq("the runtime negotiated for", c.rt == t_rts[0], 1);
    unit_int_eq("actions of its chain", act & SMFIF_CHGBODY, SMFIF_CHGBODY);
    milterd_conn_close(&c);

    /* An MTA that does not negotiate: its actions as given. */
    t_holds = 1;
    act = SMFIF_ADDHDRS;
    proto = 0;
    unit_int_eq("without negotiation",
                milterd_conn_open(&c, t_hold, 0, &act, &proto, NULL,
                                  &mtamodel_ops, NULL, &e),
                0);
    unit_int_eq("without negotiation: held once", t_holds, 2);
    unit_int_eq("without negotiation: runtime", c.rt == t_rts[1], 1);
    unit_int_eq("without negotiation: actions", act, SMFIF_ADDHDRS);
    milterd_conn_close(&c);

    /* An MTA that cannot replace the body, for a chain that may. */
    t_holds = 0;
    act = SMFIF_ADDHDRS | SMFIF_CHGHDRS;
    proto = SMFI_CURR_PROT;
    unit_int_eq("refused",
                milterd_conn_open(&c, t_hold, 1, &act, &proto, NULL,
                                  &mtamodel_ops, NULL, &e),
                -1);
    unit_has("refused", e.text, "replace the body");
    unit_int_eq("refused: nothing kept", c.rt == NULL && c.s == NULL, 1);

    runtime_release(t_rts[0]);
    runtime_release(t_rts[1]);
    case_cleanup(dir[0]);
    case_cleanup(dir[1]);
}

static void
test_listen_spec(void **state)
{
    static const struct {
        const char *spec;
        int rc;
    } t[] = {
        {"unix:/run/relaychain/milter.sock", 0},
        {"local:/var/spool/postfix/relaychain/milter.sock", 0},
        {"inet:8891@127.0.0.1", 0},
        {"inet:8891", 0},
        {"inet6:8891@[::1]", 0},
        {"inet:127.0.0.1:8891", -1}, /* Postfix's form, not libmilter's */
        {"unix:relative.sock", -1},
        {"inet:0@127.0.0.1", -1},
        {"inet:99999", -1},
        {"inet:8891@", -1},
        {"tcp:8891", -1},
        {"", -1},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        struct err e;

        unit_int_eq(t[i].spec, milterd_check_listen(t[i].spec, &e), t[i].rc);
    }
}

static int
setup(void **state)
{
    (void)state;
    mime_init();
    log_open("test_milterd", LOG_MAIL, LOG_SINK_NONE);
    return unit_tmpdir(tmp_root, sizeof(tmp_root)) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
    (void)state;
    case_cleanup(tmp_root);
    mime_shutdown();
    return 0;
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cases),
        cmocka_unit_test(test_body),
        cmocka_unit_test(test_mta_refuses),
        cmocka_unit_test(test_progress),
        cmocka_unit_test(test_out_of_order),
        cmocka_unit_test(test_negotiate),
        cmocka_unit_test(test_listen_spec),
        cmocka_unit_test(test_conn_hold_once),
    };

    /* The built-in types and testedit (tests/milter/testregistry.c). */
    registry_set(&flt_registry);
    return cmocka_run_group_tests(tests, setup, teardown);
}
