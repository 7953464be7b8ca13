/*
 * test_verp - the VERP token (queue/verp) and the bounce and complaint
 * reader (queue/bounce)
 *
 * Tokens: made and verified again with the same key, lowercase base32
 * of 32 characters, a local part under 64 octets; refused when altered
 * in any one character, under another key, or for a queue id that is
 * not 12 hex digits; the recipient hash ignores case. Keys: a missing,
 * short or world-readable key file is refused. verp_find() finds the
 * token only at the VERP domain. The reader, table-driven over messages
 * built here: an RFC 3464 report (with a delayed and a delivered group
 * beside the failed one), a Postfix-style report whose Original-
 * Recipient differs from the final one, an ARF report, a vacation
 * reply, a qmail text bounce, a success notice (Action: delivered), a
 * message that is neither, and a bounce nested in a returned message
 * (not counted). The events object: VERP senders for tracked mail only,
 * never for the null sender; a DSN to a good token becomes one hard
 * bounce for the recipient the token names (suppressed, the original
 * sender kept), the same DSN to a forged token none; a complaint from
 * a feedback loop matched by fbl_match_header suppresses the recipient
 * it names. Complaints matched by Message-ID (events_fbl_decide, then
 * events_inbound over a store): a message of several recipients counts
 * only from fbl_clients (an IPv4-mapped client too, never by the
 * client's name) and only for a named recipient it went to; one of a
 * single recipient from anyone, unless another is named; a Message-ID
 * used in two queue ids is a message of several recipients.
 */
#include "config.h"

#include <ctype.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit.h"
#include "msg/mime.h"
#include "queue/bounce.h"
#include "queue/events.h"
#include "queue/events_db.h"
#include "queue/verp.h"

static struct verp_key
test_key(int fill)
{
    struct verp_key k;

    memset(&k, 0, sizeof(k));
    memset(k.k, fill, 40);
    k.len = 40;
    return k;
}

static void
test_token(void **state)
{
    struct verp_key k = test_key('k'), other = test_key('o');
    char tok[64], sender[128], qid[13];
    unsigned char h[VERP_HASH_LEN], want[VERP_HASH_LEN];
    size_t i;

    (void)state;
    assert_int_equal(
        verp_token(&k, "6A0F3C21B7E1", "Bob@Example.com", tok, sizeof(tok)),
        0);
    if (strlen(tok) != VERP_TOKEN_LEN || strspn(tok, "abcdefghijklmnopqrstuv"
                                                     "wxyz234567") != 32)
        unit_fail("token", "got \"%s\", want 32 lowercase base32", tok);
    assert_int_equal(verp_sender(&k, "verp.example", "6A0F3C21B7E1",
                                 "bob@example.com", sender, sizeof(sender)),
                     0);
    if (strchr(sender, '@') - sender > 64)
        unit_fail("local part", "got %s, over 64 octets", sender);
    if (strncmp(sender, "bounces+", 8) != 0 || strstr(sender, tok) == NULL)
        unit_fail("sender",
                  "got %s, want bounces+%s@... (case of the "
                  "recipient ignored)",
                  sender, tok);
    if (verp_check(&k, tok, strlen(tok), qid, h) != 1)
        unit_fail("check", "a token made with the key does not verify");
    unit_str_eq("queue id back", qid, "6A0F3C21B7E1");
    verp_rcpt_hash("BOB@example.COM", want);
    if (memcmp(h, want, sizeof(h)) != 0)
        unit_fail("hash", "the recipient hash does not come back");
    /* upper case (an MTA that shouts) still verifies */
    for (i = 0; i < 32; i++)
        sender[i] = (char)toupper((unsigned char)tok[i]);
    if (verp_check(&k, sender, 32, qid, h) != 1)
        unit_fail("upper case", "an upper-cased token does not verify");
    /* any one character changed: refused */
    for (i = 0; i < 32; i++) {
        char bad[33];

        memcpy(bad, tok, 33);
        bad[i] = bad[i] == 'a' ? 'b' : 'a';
        if (verp_check(&k, bad, 32, qid, h) != 0)
            unit_fail("altered", "character %zu changed: %s verifies", i, bad);
    }
    if (verp_check(&other, tok, 32, qid, h) != 0)
        unit_fail("other key", "a token verifies under another key");
    if (verp_check(&k, tok, 31, qid, h) != 0 ||
        verp_check(&k, "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!", 32, qid, h) != 0)
        unit_fail("malformed", "a short or non-base32 token verifies");
    if (verp_token(&k, "QQ", "bob@example.com", tok, sizeof(tok)) != -1 ||
        verp_token(&k, "6A0F3C21B7EZ", "bob@example.com", tok, sizeof(tok)) !=
            -1)
        unit_fail("queue id", "a token for a queue id of another form");
}

static void
test_find(void **state)
{
    static const struct {
        const char *name, *text;
        int want;
    } cases[] = {
        {"header",
         "Return-Path: <bounces+aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@"
         "verp.example>",
         1},
        {"other domain",
         "To: bounces+aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@verp.example.org", 0},
        {"longer local part",
         "xbounces+aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@verp.example", 0},
        {"short token", "bounces+aaaa@verp.example", 0},
        {"case", "BOUNCES+AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA@VERP.EXAMPLE", 1},
    };
    size_t i, tl;
    const char *tok;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int got = verp_find(cases[i].text, strlen(cases[i].text),
                            "verp.example", &tok, &tl);

        if (got != cases[i].want)
            unit_fail(cases[i].name, "got %d, want %d", got, cases[i].want);
    }
}

static void
test_key_file(void **state)
{
    char dir[] = "/tmp/test_verp.XXXXXX", path[128];
    struct verp_key k;
    struct err e;
    int fd;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/key", dir);
    err_clear(&e);
    if (verp_key_load(path, &k, &e) != -1)
        unit_fail("missing", "a missing key file loads");
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "short secret\n", 13), 13);
    close(fd);
    if (verp_key_load(path, &k, &e) != -1 ||
        strstr(e.text, "12 octets") == NULL)
        unit_fail("short", "got \"%s\", want a short key refused", e.text);
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_int_equal(
        write(fd, "0123456789abcdef0123456789abcdef0123456789\n", 43), 43);
    close(fd);
    if (verp_key_load(path, &k, &e) != 0 || k.len != 42)
        unit_fail("good", "got \"%s\" len %zu, want 42 octets", e.text, k.len);
    chmod(path, 0644);
    if (verp_key_load(path, &k, &e) != -1 || strstr(e.text, "others") == NULL)
        unit_fail("readable", "got \"%s\", want refused", e.text);
    unlink(path);
    rmdir(dir);
}

#define DSN_HEAD                                                              \
    "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"           \
    "To: bounces+aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@verp.example\r\n"           \
    "Subject: Undelivered Mail Returned to Sender\r\n"                        \
    "Auto-Submitted: auto-replied\r\n"                                        \
    "MIME-Version: 1.0\r\n"                                                   \
    "Content-Type: multipart/report; report-type=delivery-status;\r\n"        \
    "\tboundary=\"B\"\r\n\r\n"

static const char dsn_msg[] = DSN_HEAD
    "--B\r\nContent-Type: text/plain\r\n\r\n"
    "Mail to carol@dest.example was delayed; gone@dest.example failed.\r\n"
    "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
    "Reporting-MTA: dns; mx.example.net\r\n\r\n"
    "Final-Recipient: rfc822; gone@dest.example\r\n"
    "Action: failed\r\nStatus: 5.1.1\r\n"
    "Diagnostic-Code: smtp; 550 5.1.1 <gone@dest.example>: Recipient\r\n"
    " address rejected: User unknown\r\n\r\n"
    "Final-Recipient: rfc822; carol@dest.example\r\n"
    "Action: delayed\r\nStatus: 4.4.1\r\n\r\n"
    "Final-Recipient: rfc822; ok@dest.example\r\n"
    "Action: delivered\r\nStatus: 2.0.0\r\n\r\n"
    "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    "Return-Path: <bounces+bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb@verp.example>\r\n"
    "Message-ID: <orig-1@client.example>\r\n"
    "X-Campaign-Id: <camp-7@client.example>\r\n"
    "Subject: hello\r\n\r\n--B--\r\n";

static const char orig_rcpt_msg[] =
    DSN_HEAD "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
             "Reporting-MTA: dns; mx.example.net\r\n\r\n"
             "Original-Recipient: rfc822;alice@dest.example\r\n"
             "Final-Recipient: rfc822; alice.smith@mailbox.example\r\n"
             "Action: failed\r\nStatus: 5.0.0\r\n"
             "Diagnostic-Code: smtp; 552 5.2.2 mailbox full\r\n\r\n--B--\r\n";

static const char arf_msg[] =
    "From: fbl@isp.example\r\nTo: fbl@relay.example\r\n"
    "Subject: complaint\r\nMIME-Version: 1.0\r\n"
    "Content-Type: multipart/report; report-type=feedback-report;\r\n"
    "\tboundary=\"A\"\r\n\r\n"
    "--A\r\nContent-Type: text/plain\r\n\r\nA complaint about "
    "dave@dest.example.\r\n"
    "--A\r\nContent-Type: message/feedback-report\r\n\r\n"
    "Feedback-Type: abuse\r\nUser-Agent: isp-fbl/1.0\r\nVersion: 1\r\n"
    "Original-Rcpt-To: <dave@dest.example>\r\n\r\n"
    "--A\r\nContent-Type: message/rfc822\r\n\r\n"
    "Return-Path: <bounces+cccccccccccccccccccccccccccccccc@verp.example>\r\n"
    "Message-ID: <orig-2@client.example>\r\nSubject: offer\r\n\r\nbody\r\n"
    "--A--\r\n";

static const char vacation_msg[] =
    "From: erin@dest.example\r\nTo: news@client.example\r\n"
    "Subject: Out of Office: hello\r\nAuto-Submitted: auto-replied\r\n\r\n"
    "I am away until Monday; for urgent matters write to "
    "frank@dest.example.\r\n";

static const char qmail_msg[] =
    "From: MAILER-DAEMON@qmail.example\r\nSubject: failure notice\r\n\r\n"
    "Hi. This is the qmail-send program at qmail.example.\r\n"
    "I'm afraid I wasn't able to deliver your message to the following "
    "addresses.\r\nThis is a permanent error; I've given up. Sorry it "
    "didn't work out.\r\n\r\n<henry@qmail.example>:\r\n"
    "Sorry, no mailbox here by that name. (#5.1.1)\r\n\r\n"
    "--- Below this line is a copy of the message.\r\n\r\n"
    "Return-Path: <news@client.example>\r\nMessage-ID: <orig-3@client."
    "example>\r\nTo: henry@qmail.example\r\n\r\nhi\r\n";

static const char plain_msg[] =
    "From: someone@else.example\r\nSubject: hello there\r\n\r\n"
    "Write to ivan@else.example, he knows.\r\n";

static const char success_msg[] = DSN_HEAD
    "--B\r\nContent-Type: text/plain\r\n\r\n"
    "Your message was successfully delivered to the destination(s)\r\n"
    "listed below.\r\n\r\n<ok@dest.example>: delivery via mx: 250 2.0.0 "
    "Ok\r\n"
    "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
    "Reporting-MTA: dns; mx.example.net\r\n\r\n"
    "Final-Recipient: rfc822; ok@dest.example\r\nAction: delivered\r\n"
    "Status: 2.0.0\r\n\r\n--B--\r\n";

static const char nested_msg[] =
    "From: someone@else.example\r\nSubject: fwd\r\nMIME-Version: 1.0\r\n"
    "Content-Type: multipart/mixed; boundary=\"N\"\r\n\r\n"
    "--N\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
    "--N\r\nContent-Type: message/rfc822\r\n\r\n" DSN_HEAD
    "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
    "Final-Recipient: rfc822; judy@dest.example\r\nAction: failed\r\n"
    "Status: 5.1.1\r\n\r\n--B--\r\n--N--\r\n";

static void
test_parse(void **state)
{
    static const struct {
        const char *name, *msg;
        enum bounce_kind kind;
        const char *rcpt, *status; /* the first entry */
        int code, failed;
        size_t n;
        const char *msgid, *token, *match, *arf_rcpt;
    } cases[] = {
        {"rfc 3464", dsn_msg, BOUNCE_DSN, "gone@dest.example", "5.1.1", 550, 1,
         2, "<orig-1@client.example>", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
         "<camp-7@client.example>", ""},
        {"original recipient, status from the reply", orig_rcpt_msg,
         BOUNCE_DSN, "alice@dest.example", "5.2.2", 552, 1, 1, "", "", "", ""},
        {"arf", arf_msg, BOUNCE_ARF, NULL, NULL, 0, 0, 0,
         "<orig-2@client.example>", "cccccccccccccccccccccccccccccccc", "",
         "dave@dest.example"},
        {"vacation", vacation_msg, BOUNCE_AUTOREPLY, NULL, NULL, 0, 0, 0, "",
         "", "", ""},
        {"qmail", qmail_msg, BOUNCE_TEXT, "henry@qmail.example", "5.1.1", 0, 1,
         1, "<orig-3@client.example>", "", "", ""},
        {"a success notice is no bounce", success_msg, BOUNCE_NONE, NULL, NULL,
         0, 0, 0, "", "", "", ""},
        {"neither", plain_msg, BOUNCE_NONE, NULL, NULL, 0, 0, 0, "", "", "",
         ""},
        /* the returned message's own headers are read, its reports not */
        {"a bounce inside a returned message", nested_msg, BOUNCE_NONE, NULL,
         NULL, 0, 0, 0, "", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "", ""},
    };
    struct msg_limits lim = {1 << 20, 1000, 10000, 8, 100};
    static struct bounce_report rep;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct err e;

        err_clear(&e);
        if (bounce_parse(cases[i].msg, strlen(cases[i].msg), &lim,
                         "verp.example", "X-Campaign-Id", &rep, &e) < 0)
            unit_fail(cases[i].name, "parse failed: %s", e.text);
        if (rep.kind != cases[i].kind)
            unit_fail(cases[i].name, "got kind %s, want %s",
                      bounce_kind_name(rep.kind),
                      bounce_kind_name(cases[i].kind));
        if (rep.n != cases[i].n)
            unit_fail(cases[i].name, "got %zu recipients, want %zu", rep.n,
                      cases[i].n);
        if (cases[i].rcpt != NULL && rep.n > 0) {
            unit_str_eq(cases[i].name, rep.r[0].addr, cases[i].rcpt);
            unit_str_eq(cases[i].name, rep.r[0].status, cases[i].status);
            if (rep.r[0].code != cases[i].code ||
                rep.r[0].failed != cases[i].failed)
                unit_fail(cases[i].name, "got code %d failed %d, want %d %d",
                          rep.r[0].code, rep.r[0].failed, cases[i].code,
                          cases[i].failed);
        }
        unit_str_eq(cases[i].name, rep.msgid, cases[i].msgid);
        unit_str_eq(cases[i].name, rep.token, cases[i].token);
        unit_str_eq(cases[i].name, rep.match, cases[i].match);
        unit_str_eq(cases[i].name, rep.arf_rcpt, cases[i].arf_rcpt);
    }
    /* the delayed group of the report is kept as not failed */
    assert_int_equal(bounce_parse(dsn_msg, strlen(dsn_msg), &lim, NULL, NULL,
                                  &rep, &(struct err){0}),
                     0);
    if (rep.n != 2 || strcmp(rep.r[1].addr, "carol@dest.example") != 0 ||
        rep.r[1].failed != 0)
        unit_fail("delayed", "got %zu entries, want carol@ delayed", rep.n);
}

/* count_bounced - count the bounced events of bob@ (the type and the
 * recipient by their column names), with the original sender */
static int
count_bounced(void *ctx, int ncols, const char *const *names,
              const char *const *values)
{
    int i, bounced = 0, bob = 0, news = 0;

    for (i = 0; i < ncols; i++) {
        if (strcmp(names[i], "type") == 0)
            bounced = strcmp(values[i], "bounced") == 0;
        if (strcmp(names[i], "recipient") == 0)
            bob = strcmp(values[i], "bob@dest.example") == 0;
        if (strcmp(names[i], "sender") == 0)
            news = strcmp(values[i], "news@example.com") == 0;
    }
    if (bounced)
        *(int *)ctx += bob && news ? 1 : 100;
    return 0;
}

/* events_verp_sender: tracked mail only (a stream when stream_map is
 * set), never the null sender; events_inbound: a DSN to a good token
 * becomes a durable bounced event for the message and recipient the
 * token names, a forged token none */
static void
test_events_verp(void **state)
{
    char dir[] = "/tmp/test_verp_ev.XXXXXX", path[160], store[200], map[160],
         sender[200], dsn[1024];
    struct events_settings set;
    struct events_rec r;
    struct events *ev;
    struct err e;
    FILE *fp;
    int fd, found = 0;
    const char *rcpts[1];
    static const char *const isp[] = {"192.0.2.2/32"};

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/key", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "0123456789abcdef0123456789abcdef\n", 33), 33);
    close(fd);
    snprintf(map, sizeof(map), "%s/streams", dir);
    assert_non_null(fp = fopen(map, "w"));
    fputs("/^news@example\\.com$/ newsletters\n", fp);
    fclose(fp);
    snprintf(store, sizeof(store), "sqlite:%s/events.db", dir);
    memset(&set, 0, sizeof(set));
    set.store = store;
    set.stream_map = map;
    set.buffer_max = 100;
    set.batch_max = 10;
    set.batch_ms = 20;
    set.verp_domain = "verp.example";
    set.verp_key_file = path;
    set.fbl_match_header = "X-Campaign-Id";
    set.fbl_clients = isp;
    set.nfbl_clients = 1;
    err_clear(&e);
    if ((ev = events_open(&set, &e)) == NULL)
        fail_msg("events_open: %s", e.text);
    if (events_verp_sender(ev, "6A0F3C21B7E1", NULL, NULL, "news@example.com",
                           "bob@dest.example", sender, sizeof(sender)) != 1 ||
        strncmp(sender, "bounces+", 8) != 0 ||
        strcmp(strchr(sender, '@'), "@verp.example") != 0)
        unit_fail("stream", "got \"%s\", want a VERP sender", sender);
    if (events_verp_sender(ev, "6A0F3C21B7E1", NULL, NULL, "other@example.com",
                           "bob@dest.example", sender, sizeof(sender)) != 0)
        unit_fail("no stream", "mail on no stream got a VERP sender");
    if (events_verp_sender(ev, "6A0F3C21B7E1", NULL, NULL, "",
                           "bob@dest.example", sender, sizeof(sender)) != 0)
        unit_fail("null sender", "the null sender was rewritten");
    if (!events_inbound_rcpt(ev, "x@VERP.example") ||
        events_inbound_rcpt(ev, "x@sub.verp.example"))
        unit_fail("inbound", "the VERP domain is not matched exactly");
    (void)events_verp_sender(ev, "6A0F3C21B7E1", NULL, NULL,
                             "news@example.com", "bob@dest.example", sender,
                             sizeof(sender));
    /* the message as the queue recorded it */
    memset(&r, 0, sizeof(r));
    r.type = EVENTS_RECEIVED;
    r.qid = "6A0F3C21B7E1";
    r.msgid = "<m1@example.com>";
    r.sender = "news@example.com";
    r.stream = "newsletters";
    r.rcpt = "alice@dest.example";
    events_emit(ev, &r);
    r.rcpt = "bob@dest.example";
    events_emit(ev, &r);
    assert_int_equal(events_flush(ev, 5000), 0);
    snprintf(dsn, sizeof(dsn),
             "From: MAILER-DAEMON@mx.dest.example\r\nTo: <%s>\r\n"
             "Subject: Undelivered Mail\r\nMIME-Version: 1.0\r\n"
             "Content-Type: multipart/report; report-type=delivery-status; "
             "boundary=\"B\"\r\n\r\n--B\r\nContent-Type: "
             "message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
             "Final-Recipient: rfc822; bob@dest.example\r\nAction: "
             "failed\r\nStatus: 5.1.1\r\nDiagnostic-Code: smtp; 550 5.1.1 "
             "no such user\r\n\r\n--B--\r\n",
             sender);
    rcpts[0] = sender;
    err_clear(&e);
    if (events_inbound(ev, "Q1", "mx[192.0.2.1]", "192.0.2.1", rcpts, 1, dsn,
                       strlen(dsn), &e) < 0)
        unit_fail("inbound", "events_inbound: %s", e.text);
    /* a forged token: one character of the tag changed */
    sender[30] = sender[30] == 'a' ? 'b' : 'a';
    if (events_inbound(ev, "Q2", "mx[192.0.2.1]", "192.0.2.1", rcpts, 1, dsn,
                       strlen(dsn), &e) < 0)
        unit_fail("forged", "events_inbound: %s", e.text);
    /* a complaint from a feedback loop (fbl_clients) whose reported
     * message lost its Message-ID but kept the sender's own header:
     * matched by fbl_match_header, about the recipient the report names */
    snprintf(dsn, sizeof(dsn),
             "From: fbl@isp.example\r\nSubject: complaint\r\n"
             "MIME-Version: 1.0\r\nContent-Type: multipart/report; "
             "report-type=feedback-report; boundary=\"A\"\r\n\r\n--A\r\n"
             "Content-Type: message/feedback-report\r\n\r\n"
             "Feedback-Type: abuse\r\nOriginal-Rcpt-To: "
             "<alice@dest.example>\r\n\r\n--A\r\nContent-Type: "
             "text/rfc822-headers\r\n\r\nMessage-ID: <isp-1@isp.example>"
             "\r\nX-Campaign-Id: <m1@example.com>\r\n\r\n--A--\r\n");
    rcpts[0] = "fbl@verp.example";
    if (events_inbound(ev, "Q3", "isp[192.0.2.2]", "192.0.2.2", rcpts, 1, dsn,
                       strlen(dsn), &e) < 0)
        unit_fail("complaint", "events_inbound: %s", e.text);
    assert_int_equal(events_flush(ev, 5000), 0);
    events_close(ev);
    /* the store has one bounce: bob@, hard, the original sender */
    {
        struct events_db *db = events_db_open(store, EVENTS_DB_READONLY, &e);
        char why[200];

        assert_non_null(db);
        if (events_db_suppress_find(db, "bob@dest.example", "", why,
                                    sizeof(why), &e) != 1)
            unit_fail("suppressed", "bob@ is not on the suppression list");
        if (events_db_suppress_find(db, "alice@dest.example", "", why,
                                    sizeof(why), &e) != 1 ||
            strncmp(why, "complaint", 9) != 0)
            unit_fail("alice",
                      "got \"%s\", want alice@ suppressed for the "
                      "complaint",
                      why);
        if (events_db_history(db, "<m1@example.com>", NULL, count_bounced,
                              &found, &e) < 0)
            unit_fail("history", "%s", e.text);
        if (found != 1)
            unit_fail("bounces",
                      "got %d bounced events, want 1 (the forged "
                      "token adds none)",
                      found);
        events_db_close(db);
    }
    snprintf(path, sizeof(path), "rm -rf '%s'", dir);
    assert_int_equal(system(path), 0);
}

/* events_fbl_decide: every combination of what the store holds under a
 * Message-ID, whether the report names a recipient the message went to,
 * and whether the client is a feedback loop of fbl_clients */
static void
test_fbl_decide(void **state)
{
    static const struct {
        const char *name;
        struct events_fbl_match m;
        enum events_fbl_verdict want;
    } cases[] = {
        /* rows, several, named, named_sent, trusted */
        {"no message", {0, 0, 1, 0, 1}, EVENTS_FBL_NONE},
        {"no message, anyone", {0, 0, 0, 0, 0}, EVENTS_FBL_NONE},
        {"one recipient, anyone", {1, 0, 0, 0, 0}, EVENTS_FBL_ACCEPT},
        {"one recipient, named, anyone", {1, 0, 1, 1, 0}, EVENTS_FBL_ACCEPT},
        {"one recipient, another named, anyone",
         {1, 0, 1, 0, 0},
         EVENTS_FBL_NOT_RCPT},
        {"one recipient, another named, loop",
         {1, 0, 1, 0, 1},
         EVENTS_FBL_NOT_RCPT},
        {"one recipient sent twice, anyone",
         {2, 0, 0, 0, 0},
         EVENTS_FBL_ACCEPT},
        {"two, named, anyone", {2, 1, 1, 1, 0}, EVENTS_FBL_UNTRUSTED},
        {"two, unnamed, anyone", {2, 1, 0, 0, 0}, EVENTS_FBL_UNTRUSTED},
        {"two, another named, anyone", {2, 1, 1, 0, 0}, EVENTS_FBL_UNTRUSTED},
        {"two, named, loop", {2, 1, 1, 1, 1}, EVENTS_FBL_ACCEPT},
        {"two, unnamed, loop", {2, 1, 0, 0, 1}, EVENTS_FBL_UNNAMED},
        {"two, another named, loop", {2, 1, 1, 0, 1}, EVENTS_FBL_NOT_RCPT},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        unit_int_eq(cases[i].name, events_fbl_decide(&cases[i].m),
                    cases[i].want);
}

/* arf - an ARF report about the message msgid naming rcpt ("" none) */
static void
arf(char *out, size_t n, const char *msgid, const char *rcpt)
{
    char orcpt[300] = "";

    if (rcpt[0] != '\0')
        snprintf(orcpt, sizeof(orcpt), "Original-Rcpt-To: <%s>\r\n", rcpt);
    snprintf(out, n,
             "From: fbl@isp.example\r\nSubject: complaint\r\n"
             "MIME-Version: 1.0\r\nContent-Type: multipart/report; "
             "report-type=feedback-report; boundary=\"A\"\r\n\r\n--A\r\n"
             "Content-Type: message/feedback-report\r\n\r\n"
             "Feedback-Type: abuse\r\n%s\r\n--A\r\nContent-Type: "
             "text/rfc822-headers\r\n\r\nMessage-ID: %s\r\n"
             "Subject: news\r\n\r\n--A--\r\n",
             orcpt, msgid);
}

/* events_inbound: complaints matched by Message-ID, from a feedback loop
 * (fbl_clients) and from anyone else; each case's outcome is the
 * complaints counter moving or not, and at the end the suppression list
 * holds exactly the recipients complained about */
static void
test_events_fbl(void **state)
{
    static const char *const loops[] = {"192.0.2.0/28", "2001:db8::/32"};
    static const struct {
        const char *qid, *msgid, *rcpt;
    } sent[] = {
        {"1A0000000001", "<m2@example.com>", "alice@dest.example"},
        {"1A0000000001", "<m2@example.com>", "bob@dest.example"},
        {"1B0000000002", "<m3@example.com>", "carol@dest.example"},
        /* one Message-ID in two queue ids: two recipients */
        {"1C0000000003", "<m4@example.com>", "dave@dest.example"},
        {"1D0000000004", "<m4@example.com>", "erin@dest.example"},
    };
    static const struct {
        const char *name, *addr, *msgid, *rcpt;
        int want;         /* 1: a complaint */
        const char *host; /* the client's name, "mx" when NULL */
    } cases[] = {
        {"forged: anyone names another recipient", "198.51.100.7",
         "<m2@example.com>", "bob@dest.example", 0, NULL},
        {"anyone, several recipients, none named", "198.51.100.7",
         "<m2@example.com>", "", 0, NULL},
        {"a loop, several recipients, none named", "192.0.2.2",
         "<m2@example.com>", "", 0, NULL},
        {"a loop names one the message did not go to", "192.0.2.2",
         "<m2@example.com>", "mallory@dest.example", 0, NULL},
        {"a loop names a recipient", "192.0.2.2", "<m2@example.com>",
         "bob@dest.example", 1, NULL},
        {"anyone, one recipient", "198.51.100.7", "<m3@example.com>", "", 1,
         NULL},
        {"anyone, one recipient, another named", "198.51.100.7",
         "<m3@example.com>", "dave@dest.example", 0, NULL},
        {"anyone, a Message-ID in two queue ids", "198.51.100.7",
         "<m4@example.com>", "dave@dest.example", 0, NULL},
        {"a loop over IPv4-mapped IPv6", "::ffff:192.0.2.3",
         "<m4@example.com>", "erin@dest.example", 1, NULL},
        /* the name its DNS gives is the attacker's to choose */
        {"the client's name is not its address", "198.51.100.7",
         "<m4@example.com>", "dave@dest.example", 0, "fbl[192.0.2.2]"},
        {"no such message", "192.0.2.2", "<nothing@example.com>",
         "bob@dest.example", 0, NULL},
    };
    static const struct {
        const char *rcpt;
        int want;
    } suppressed[] = {
        {"alice@dest.example", 0}, {"bob@dest.example", 1},
        {"carol@dest.example", 1}, {"dave@dest.example", 0},
        {"erin@dest.example", 1},  {"mallory@dest.example", 0},
    };
    char dir[] = "/tmp/test_verp_fbl.XXXXXX", path[160], store[200],
         data[2048], client[80];
    struct events_inbound_counts before, after;
    struct events_settings set;
    struct events_rec r;
    struct events_db *db;
    struct events *ev;
    struct err e;
    const char *rcpts[1] = {"fbl@relay.example"};
    size_t i;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(store, sizeof(store), "sqlite:%s/events.db", dir);
    memset(&set, 0, sizeof(set));
    set.store = store;
    set.buffer_max = 100;
    set.batch_max = 10;
    set.batch_ms = 20;
    set.fbl_address = "fbl@relay.example";
    set.fbl_clients = loops;
    set.nfbl_clients = 2;
    err_clear(&e);
    if ((ev = events_open(&set, &e)) == NULL)
        fail_msg("events_open: %s", e.text);
    memset(&r, 0, sizeof(r));
    r.type = EVENTS_RECEIVED;
    r.sender = "news@example.com";
    for (i = 0; i < sizeof(sent) / sizeof(sent[0]); i++) {
        r.qid = sent[i].qid;
        r.msgid = sent[i].msgid;
        r.rcpt = sent[i].rcpt;
        events_emit(ev, &r);
    }
    assert_int_equal(events_flush(ev, 5000), 0);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        arf(data, sizeof(data), cases[i].msgid, cases[i].rcpt);
        snprintf(client, sizeof(client), "%s[%s]",
                 cases[i].host ? cases[i].host : "mx", cases[i].addr);
        events_inbound_counts(ev, &before);
        err_clear(&e);
        if (events_inbound(ev, "Q", client, cases[i].addr, rcpts, 1, data,
                           strlen(data), &e) < 0)
            unit_fail(cases[i].name, "events_inbound: %s", e.text);
        events_inbound_counts(ev, &after);
        unit_int_eq(cases[i].name,
                    (long long)(after.complaints - before.complaints),
                    cases[i].want);
        unit_int_eq(cases[i].name,
                    (long long)(after.unmatched - before.unmatched),
                    !cases[i].want);
    }
    assert_int_equal(events_flush(ev, 5000), 0);
    events_close(ev);
    assert_non_null(db = events_db_open(store, EVENTS_DB_READONLY, &e));
    for (i = 0; i < sizeof(suppressed) / sizeof(suppressed[0]); i++) {
        char why[200] = "";
        int got = events_db_suppress_find(db, suppressed[i].rcpt, "", why,
                                          sizeof(why), &e);

        if (got != suppressed[i].want ||
            (got == 1 && strncmp(why, "complaint", 9) != 0))
            unit_fail(suppressed[i].rcpt, "got %d (\"%s\"), want %d", got, why,
                      suppressed[i].want);
    }
    events_db_close(db);
    snprintf(path, sizeof(path), "rm -rf '%s'", dir);
    assert_int_equal(system(path), 0);
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
        cmocka_unit_test(test_token),       cmocka_unit_test(test_find),
        cmocka_unit_test(test_key_file),    cmocka_unit_test(test_parse),
        cmocka_unit_test(test_events_verp), cmocka_unit_test(test_fbl_decide),
        cmocka_unit_test(test_events_fbl),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
