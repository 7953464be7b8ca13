/*
 * test_queue - the queue file format, commit and the helpers around them
 *
 * The format cases serialize a message, read it back and then damage it
 * in every way a crash or a hostile file can: cut at every offset, every
 * octet flipped (the checksum or the record structure must notice,
 * except in the mutable status octets, where only the valid values are
 * accepted), records out of order. The commit cases run queue_open() and
 * queue_commit() on a scratch directory (no threads): the file appears
 * in queue/ only whole, tmp/ stays empty, an existing name is never
 * replaced, and a second daemon on the same spool is refused. The DSN
 * case checks the fields a reader looks for; tests/integration/queue_dsn.sh
 * reads real reports with Python's email package.
 *
 * The LMTP cases run the daemon's side (queue_start, its workers) against
 * tests/data/smtpc/scripted_server.py as an LMTP next hop that answers
 * the message differently per recipient, and read back what a user would
 * see: each recipient's mark in the queue file, the deferral reasons in
 * defer/, how many times the message reached the server, and the
 * report the sender got through it. tests/integration/queue_lmtp.sh does
 * the same against Dovecot.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit.h"
#include "unit_proc.h"

#include "chain/conf.h"
#include "cli/parts.h"
#include "queue/queue.h"

static const char test_message[] =
    "From: <a@client.example>\r\nTo: <b@dest.example>\r\n"
    "Subject: queue unit test\r\n\r\nline one\r\n.leading dot\r\n";

static const struct msg_rcpt test_rcpts[] = {
    {"b@dest.example", "NOTIFY=FAILURE ORCPT=rfc822;b@dest.example"},
    {"c@other.example", NULL},
};

static void
make_msg(struct queue_msg *m)
{
    memset(m, 0, sizeof(*m));
    m->qid = "ABCDEF012345";
    m->arrival_us = 1700000000123456LL;
    m->client_addr = "192.0.2.7";
    m->client_name = "client.example";
    m->helo = "helo.client.example";
    m->auth_user = "alice";
    m->stream = "alerts";
    m->sender = "a@client.example";
    m->sender_params = "RET=HDRS ENVID=id+2B1";
    m->rcpts = test_rcpts;
    m->nrcpts = 2;
    m->orig = test_rcpts;
    m->norig = 1;
    m->data = test_message;
    m->len = sizeof(test_message) - 1;
}

static void
serialized(struct buf *b)
{
    struct queue_msg m;
    struct err e;

    make_msg(&m);
    buf_init(b, 0);
    if (queue_file_serialize(&m, b, &e) < 0)
        fail_msg("serialize: %s", e.text);
}

static void
test_roundtrip(void **state)
{
    struct queue_file qf;
    struct buf b;
    struct err e;

    (void)state;
    serialized(&b);
    if (queue_file_parse(b.data, b.len, 0, &qf, &e) < 0)
        fail_msg("parse: %s", e.text);
    unit_int_eq("arrival", qf.arrival_us, 1700000000123456LL);
    unit_str_eq("client", qf.client_addr, "192.0.2.7");
    unit_str_eq("name", qf.client_name, "client.example");
    unit_str_eq("helo", qf.helo, "helo.client.example");
    unit_str_eq("auth", qf.auth_user, "alice");
    unit_str_eq("stream", qf.stream, "alerts");
    unit_str_eq("sender", qf.sender, "a@client.example");
    unit_str_eq("params", qf.sender_params, "RET=HDRS ENVID=id+2B1");
    unit_int_eq("nrcpts", qf.nrcpts, 2);
    unit_str_eq("rcpt 0", qf.rcpts[0].addr, "b@dest.example");
    unit_str_eq("rcpt 0 params", qf.rcpts[0].params,
                "NOTIFY=FAILURE ORCPT=rfc822;b@dest.example");
    unit_str_eq("rcpt 1 params", qf.rcpts[1].params, "");
    unit_int_eq("rcpt 0 status", qf.rcpts[0].status, QUEUE_RCPT_PENDING);
    unit_int_eq("status offset", b.data[qf.rcpts[1].status_off],
                QUEUE_RCPT_PENDING);
    unit_int_eq("norig", qf.norig, 1);
    unit_str_eq("orig", qf.orig[0], "b@dest.example");
    unit_int_eq("warned", qf.warned, '-');
    unit_int_eq("len", qf.len, sizeof(test_message) - 1);
    if (memcmp(qf.data, test_message, qf.len) != 0)
        fail_msg("message octets differ");
    unit_int_eq("tail ok",
                queue_file_tail_ok(b.data + b.len - QUEUE_TAIL_LEN,
                                   QUEUE_TAIL_LEN, b.len),
                1);
    queue_file_fini(&qf);
    buf_fini(&b);
}

/* Without a stream (and a file of before the 'Y' record): "" */
static void
test_no_stream(void **state)
{
    struct queue_file qf;
    struct queue_msg m;
    struct buf b;
    struct err e;

    (void)state;
    make_msg(&m);
    m.stream = "";
    buf_init(&b, 0);
    if (queue_file_serialize(&m, &b, &e) < 0)
        fail_msg("serialize: %s", e.text);
    {
        struct buf with;

        serialized(&with); /* the same with stream "alerts" */
        unit_int_eq("no 'Y' record: a record and \"alerts\" shorter",
                    with.len - b.len, 5 + sizeof("alerts"));
        buf_fini(&with);
    }
    if (queue_file_parse(b.data, b.len, 0, &qf, &e) < 0)
        fail_msg("parse: %s", e.text);
    unit_str_eq("stream", qf.stream, "");
    unit_str_eq("auth", qf.auth_user, "alice");
    queue_file_fini(&qf);
    buf_fini(&b);
}

/* A second 'Y' record: refused, as every record but the recipients */
static void
test_stream_twice(void **state)
{
    static const char rec[] = "Y\0\0\0\7alerts"; /* and its NUL */
    struct queue_file qf;
    struct buf b, twice;
    struct err e;
    const char *at;
    size_t off, rl = sizeof(rec); /* type, length, "alerts" and NUL */

    (void)state;
    serialized(&b);
    at = memmem(b.data, b.len, rec, rl);
    assert_non_null(at);
    off = (size_t)(at - b.data) + rl;
    buf_init(&twice, 0);
    assert_int_equal(buf_append(&twice, b.data, off, &e), 0);
    assert_int_equal(buf_append(&twice, rec, rl, &e), 0);
    assert_int_equal(buf_append(&twice, b.data + off, b.len - off, &e), 0);
    queue_file_seal(twice.data, twice.len);
    unit_int_eq("two 'Y' records refused",
                queue_file_parse(twice.data, twice.len, 0, &qf, &e), -1);
    queue_file_fini(&qf);
    buf_fini(&twice);
    buf_fini(&b);
}

/* Cut anywhere: never accepted, never a crash, the tail check fails. */
static void
test_truncated(void **state)
{
    struct queue_file qf;
    struct buf b;
    struct err e;
    size_t n;

    (void)state;
    serialized(&b);
    for (n = 0; n < b.len; n++) {
        char *copy = malloc(n + 1);

        memcpy(copy, b.data, n);
        if (queue_file_parse(copy, n, 0, &qf, &e) == 0)
            fail_msg("cut at %zu of %zu: got accepted, want refused", n,
                     b.len);
        queue_file_fini(&qf);
        if (n >= QUEUE_TAIL_LEN &&
            queue_file_tail_ok(copy + n - QUEUE_TAIL_LEN, QUEUE_TAIL_LEN, n))
            fail_msg("cut at %zu: tail check passed", n);
        free(copy);
    }
    buf_fini(&b);
}

/* Flip every octet: only a valid value in a mutable octet may pass. */
static void
test_flipped(void **state)
{
    struct queue_file qf, good;
    struct buf b;
    struct err e;
    size_t i, k;

    (void)state;
    serialized(&b);
    assert_int_equal(queue_file_parse(b.data, b.len, 0, &good, &e), 0);
    for (i = 0; i < b.len; i++) {
        int is_mutable = i == good.warned_off, rc;

        for (k = 0; k < good.nrcpts; k++)
            is_mutable |= i == good.rcpts[k].status_off;
        b.data[i] ^= 0x01;
        rc = queue_file_parse(b.data, b.len, 0, &qf, &e);
        queue_file_fini(&qf);
        if (rc == 0 && !is_mutable)
            fail_msg("octet %zu flipped: got accepted, want refused", i);
        b.data[i] ^= 0x01;
    }
    /* the values a daemon writes are accepted and read back */
    b.data[good.rcpts[0].status_off] = QUEUE_RCPT_DONE;
    b.data[good.rcpts[1].status_off] = QUEUE_RCPT_BOUNCED;
    b.data[good.warned_off] = 'W';
    assert_int_equal(queue_file_parse(b.data, b.len, 0, &qf, &e), 0);
    unit_int_eq("status 0", qf.rcpts[0].status, QUEUE_RCPT_DONE);
    unit_int_eq("status 1", qf.rcpts[1].status, QUEUE_RCPT_BOUNCED);
    unit_int_eq("warned", qf.warned, 'W');
    queue_file_fini(&qf);
    /* anything else there is refused */
    b.data[good.rcpts[0].status_off] = 'X';
    assert_int_equal(queue_file_parse(b.data, b.len, 0, &qf, &e), -1);
    unit_has("bad status", e.text, "recipient status");
    queue_file_fini(&qf);
    queue_file_fini(&good);
    buf_fini(&b);
}

static void
test_head_only(void **state)
{
    struct queue_file qf;
    struct buf b;
    struct err e;

    (void)state;
    serialized(&b);
    /* the envelope is readable from a prefix that stops in the message */
    assert_int_equal(queue_file_parse(b.data, b.len - 30, 1, &qf, &e), 0);
    unit_str_eq("head-only sender", qf.sender, "a@client.example");
    unit_int_eq("head-only nrcpts", qf.nrcpts, 2);
    unit_int_eq("head-only len", qf.len, sizeof(test_message) - 1);
    queue_file_fini(&qf);
    buf_fini(&b);
}

static void
test_dsn(void **state)
{
    struct queue_dsn_rcpt list[1] = {
        {0, "550 5.1.1 <b@dest.example>: no such user",
         "mx.dest.example[192.0.2.9]:25"}};
    struct queue_file qf;
    struct buf b, out;
    struct err e;

    (void)state;
    serialized(&b);
    assert_int_equal(queue_file_parse(b.data, b.len, 0, &qf, &e), 0);
    buf_init(&out, 0);
    if (queue_dsn_build(&qf, "ABCDEF012345", "relay.example", "failed", list,
                        1, 1700000100000000LL, 1700400000000000LL, &out,
                        &e) < 0)
        fail_msg("dsn: %s", e.text);
    unit_has("to", out.data, "\r\nTo: <a@client.example>\r\n");
    unit_has("type", out.data,
             "Content-Type: multipart/report; "
             "report-type=delivery-status;");
    unit_has("final", out.data, "Final-Recipient: rfc822; b@dest.example\r\n");
    unit_has("orcpt", out.data,
             "Original-Recipient: rfc822; b@dest.example\r\n");
    unit_has("status", out.data, "Action: failed\r\nStatus: 5.1.1\r\n");
    unit_has("remote", out.data, "Remote-MTA: dns; mx.dest.example\r\n");
    unit_has("diag", out.data,
             "Diagnostic-Code: smtp; 550 5.1.1 "
             "<b@dest.example>: no such user\r\n");
    unit_has("envid", out.data, "Original-Envelope-Id: id+1\r\n");
    unit_has("headers", out.data,
             "Content-Type: text/rfc822-headers\r\n\r\n"
             "From: <a@client.example>\r\n");
    if (strstr(out.data, "line one") != NULL)
        fail_msg("RET=HDRS: the body was returned");
    queue_file_fini(&qf);
    buf_fini(&out);
    buf_fini(&b);
}

/* test_dsn_status - the status code a delivery shows twice: dsn= in the
 * log line (queue_dsn_code, from the reply's code and text) and Status:
 * in the report (from the reply as the queue writes it, "550 5.1.1
 * text"). Both take an enhanced status code the text starts with; they
 * differ on one glued to more text and on the class a reply without
 * one gets, and each case says what each side shows. The replies are
 * in buffers as large as the queue's, as in a delivery. */
static void
test_dsn_status(void **state)
{
    static const struct {
        const char *name;
        int code;
        const char *text;
        const char *log;    /* dsn= */
        const char *report; /* Status: */
    } cases[] = {
        {"enhanced", 550, "5.1.1 no such user", "5.1.1", "5.1.1"},
        {"enhanced alone", 550, "5.1.1", "5.1.1", "5.1.1"},
        {"three digits", 451, "4.123.456 busy", "4.123.456", "4.123.456"},
        {"four digits", 451, "4.7.1000 busy", "4.0.0", "4.0.0"},
        {"one number", 550, "5.1 no", "5.0.0", "5.0.0"},
        {"no first number", 550, "5..1 no", "5.0.0", "5.0.0"},
        {"class 3", 550, "3.1.1 no", "5.0.0", "5.0.0"},
        {"its own class", 550, "4.2.2 over quota", "4.2.2", "4.2.2"},
        {"glued to text", 550, "5.1.1no", "5.0.0", "5.1.1"},
        {"tab after", 452, "4.2.2\tfull", "4.0.0", "4.2.2"},
        {"sent", 250, "2.0.0 Ok", "2.0.0", "2.0.0"},
        {"plain text", 250, "Ok", "2.0.0", "2.0.0"},
        {"reply 354", 354, "go ahead", "3.0.0", "4.0.0"},
        {"reply 421", 421, "closing", "4.0.0", "4.0.0"},
        {"reply 650", 650, "odd", "4.0.0", "4.0.0"},
        {"reply 150", 150, "odd", "4.0.0", "4.0.0"},
        {"no reply", 0, "", "4.0.0", "4.0.0"},
        {"empty text", 554, "", "5.0.0", "5.0.0"},
    };
    struct queue_file qf;
    struct queue_dsn_rcpt list[1] = {{0, NULL, NULL}};
    char text[512], reply[528], dsn[16], want[64];
    struct buf b, out;
    struct err e;
    size_t i;

    (void)state;
    serialized(&b);
    assert_int_equal(queue_file_parse(b.data, b.len, 0, &qf, &e), 0);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(text, 0, sizeof(text));
        memset(reply, 0, sizeof(reply));
        snprintf(text, sizeof(text), "%s", cases[i].text);
        queue_dsn_code(cases[i].code, text, dsn, sizeof(dsn));
        unit_str_eq(cases[i].name, dsn, cases[i].log);

        snprintf(reply, sizeof(reply), "%d %s", cases[i].code, text);
        list[0].reply = reply;
        buf_init(&out, 0);
        if (queue_dsn_build(&qf, "ABCDEF012345", "relay.example", "failed",
                            list, 1, 1700000100000000LL, 1700400000000000LL,
                            &out, &e) < 0)
            unit_fail(cases[i].name, "dsn: %s", e.text);
        snprintf(want, sizeof(want), "\r\nStatus: %s\r\n", cases[i].report);
        unit_has(cases[i].name, out.data, want);
        buf_fini(&out);
    }
    queue_file_fini(&qf);
    buf_fini(&b);
}

/* test_dsn_returned - the part returned with a headers-only report is
 * header fields only and bounded, whatever the message looks like. */
static void
test_dsn_returned(void **state)
{
    static const struct {
        const char *name, *data, *want, *never;
    } cases[] = {
        {"header and body", "Subject: s\r\n\r\nPAYLOAD\r\n",
         "Subject: s\r\n\r\n", "PAYLOAD"},
        {"no empty line", "Subject: s\r\nPAYLOAD line\r\nmore\r\n",
         "Subject: s\r\n", "PAYLOAD"},
        {"text first, empty line later",
         "PAYLOAD line\r\nmore\r\n\r\nrest\r\n", NULL, "PAYLOAD"},
        {"continuation first", " PAYLOAD: x\r\n\r\n", NULL, "PAYLOAD"},
        {"folded field", "Subject: s\r\n\tfolded\r\nPAYLOAD\r\n",
         "Subject: s\r\n\tfolded\r\n", "PAYLOAD"},
        {"colon later in text", "PAYLOAD text: not a field\r\n", NULL,
         "PAYLOAD"},
    };
    struct queue_dsn_rcpt list[1] = {{0, "550 5.1.1 no", NULL}};
    struct queue_file_rcpt rcpt = {QUEUE_RCPT_PENDING, 0, "b@dest.example",
                                   ""};
    struct queue_file qf;
    struct buf out, big;
    struct err e;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *part;

        memset(&qf, 0, sizeof(qf));
        qf.sender = "victim@example.org";
        qf.sender_params = "";
        qf.rcpts = &rcpt;
        qf.nrcpts = 1;
        qf.data = cases[i].data;
        qf.len = strlen(cases[i].data);
        buf_init(&out, 0);
        if (queue_dsn_build(&qf, "ABCDEF012345", "relay.example", "failed",
                            list, 1, 1700000100000000LL, 0, &out, &e) < 0)
            unit_fail(cases[i].name, "build: %s", e.text);
        part = strstr(out.data, "text/rfc822-headers\r\n\r\n");
        if (part == NULL)
            unit_fail(cases[i].name, "no headers part");
        if (strstr(out.data, cases[i].never) != NULL)
            unit_fail(cases[i].name, "returned \"%s\"", cases[i].never);
        if (cases[i].want != NULL)
            unit_has(cases[i].name, part, cases[i].want);
        buf_fini(&out);
    }

    /* a header of 200 KB: cut at a line end within 50000 octets */
    buf_init(&big, 0);
    for (i = 0; big.len < 200000; i++)
        assert_int_equal(buf_printf(&big, &e, "X-Filler-%zu: PAYLOAD\r\n", i),
                         0);
    assert_int_equal(buf_puts(&big, "\r\nbody\r\n", &e), 0);
    memset(&qf, 0, sizeof(qf));
    qf.sender = "victim@example.org";
    qf.sender_params = "RET=FULL";
    qf.rcpts = &rcpt;
    qf.nrcpts = 1;
    qf.data = big.data;
    qf.len = big.len;
    buf_init(&out, 0);
    if (queue_dsn_build(&qf, "ABCDEF012345", "relay.example", "failed", list,
                        1, 1700000100000000LL, 0, &out, &e) < 0)
        fail_msg("big: %s", e.text);
    if (out.len > 56000)
        fail_msg("big header: a report of %zu octets, want at most 56000",
                 out.len);
    unit_has("big header", out.data, "text/rfc822-headers\r\n\r\nX-Filler-0:");
    buf_fini(&out);
    buf_fini(&big);
}

/* ------------------------------------------------------------ commit */

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static struct conf *
load_conf(const char *dir, const char *extra)
{
    char path[512], text[2048], chain[512];
    struct conf *cf;
    struct err e;

    snprintf(chain, sizeof(chain), "%s/chain.d", dir);
    mkdir(chain, 0700);
    snprintf(text, sizeof(text),
             "chain_directory = %s\nqueue_directory = %s/spool\n"
             "next_hop = smtp:[127.0.0.1]:9\ndelivery = queue\n%s",
             chain, dir, extra);
    if (unit_write(dir, "relaychain.conf", text, path, sizeof(path)) == NULL)
        fail_msg("cannot write %s", path);
    if ((cf = conf_load(path, parts_all, &e)) == NULL)
        fail_msg("conf: %s", e.text);
    return cf;
}

static void
test_commit(void **state)
{
    char dir[256], path[600];
    struct queue *q, *q2;
    struct queue_msg m;
    struct queue_file qf;
    struct conf *cf;
    struct buf raw;
    struct err e;
    int fd;

    (void)state;
    assert_non_null(unit_tmpdir(dir, sizeof(dir)));
    cf = load_conf(dir, "");
    if ((q = queue_open(cf->cfg, &e)) == NULL)
        fail_msg("queue_open: %s", e.text);
    q2 = queue_open(cf->cfg, &e);
    if (q2 != NULL)
        fail_msg("a second queue_open on the same spool: got it, want "
                 "refused");
    unit_has("second open", e.text, "in use by another relaychaind");
    make_msg(&m);
    if (queue_commit(q, &m, &e) < 0)
        fail_msg("commit: %s", e.text);
    snprintf(path, sizeof(path), "%s/spool/queue/ABCDEF012345", dir);
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    buf_init(&raw, 0);
    assert_int_equal(queue_read_fd(fd, 1 << 20, &raw, &e), 0);
    close(fd);
    if (queue_file_parse(raw.data, raw.len, 0, &qf, &e) < 0)
        fail_msg("committed file: %s", e.text);
    unit_str_eq("committed sender", qf.sender, "a@client.example");
    if (qf.queued_us < qf.arrival_us)
        fail_msg("queued %lld before arrival %lld", qf.queued_us,
                 qf.arrival_us);
    queue_file_fini(&qf);
    buf_fini(&raw);
    /* the same id again must not replace the file */
    err_clear(&e);
    assert_int_equal(queue_commit(q, &m, &e), -1);
    unit_int_eq("EEXIST", e.sys_errno, EEXIST);
    unit_str_eq("reply", queue_commit_reply(&e),
                "451 4.3.0 Error: queue file write error");
    snprintf(path, sizeof(path), "%s/spool/tmp/ABCDEF012345", dir);
    unit_int_eq("tmp/ empty", access(path, F_OK), -1);
    e.sys_errno = ENOSPC;
    unit_str_eq("ENOSPC reply", queue_commit_reply(&e),
                "452 4.3.1 Error: insufficient system storage");
    unit_int_eq("space", queue_has_space(q, 1000), 1);
    queue_free(q);
    conf_free(cf);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- encrypt: the copies of a split message are staged in tmp/ and
 * published together; when one cannot be published, none stays in
 * queue/ and tmp/ is left empty. */
static int
spool_has(const char *dir, const char *sub, const char *id)
{
    char path[600];

    snprintf(path, sizeof(path), "%s/spool/%s/%s", dir, sub, id);
    return access(path, F_OK) == 0;
}

static void
test_stage_publish(void **state)
{
    const char *ids[2] = {"AAAA00000001", "AAAA00000002"};
    const char *bad[2] = {"BBBB00000001", "BBBB00000002"};
    char dir[256];
    struct queue *q;
    struct queue_msg m;
    struct conf *cf;
    struct err e;
    size_t i;

    (void)state;
    assert_non_null(unit_tmpdir(dir, sizeof(dir)));
    cf = load_conf(dir, "");
    if ((q = queue_open(cf->cfg, &e)) == NULL)
        fail_msg("queue_open: %s", e.text);
    make_msg(&m);
    for (i = 0; i < 2; i++) {
        m.qid = ids[i];
        if (queue_stage(q, &m, &e) < 0)
            fail_msg("stage %s: %s", ids[i], e.text);
        unit_int_eq("staged in tmp/", spool_has(dir, "tmp", ids[i]), 1);
        unit_int_eq("not in queue/ yet", spool_has(dir, "queue", ids[i]), 0);
    }
    if (queue_publish(q, ids, 2, &e) < 0)
        fail_msg("publish: %s", e.text);
    for (i = 0; i < 2; i++) {
        unit_int_eq("published", spool_has(dir, "queue", ids[i]), 1);
        unit_int_eq("tmp/ left", spool_has(dir, "tmp", ids[i]), 0);
    }
    /* the second id is taken in queue/: the first is taken back */
    m.qid = bad[1];
    if (queue_commit(q, &m, &e) < 0)
        fail_msg("commit: %s", e.text);
    for (i = 0; i < 2; i++) {
        m.qid = bad[i];
        if (queue_stage(q, &m, &e) < 0)
            fail_msg("stage %s: %s", bad[i], e.text);
    }
    err_clear(&e);
    assert_int_equal(queue_publish(q, bad, 2, &e), -1);
    unit_int_eq("EEXIST", e.sys_errno, EEXIST);
    unit_int_eq("first taken back", spool_has(dir, "queue", bad[0]), 0);
    unit_int_eq("the other file kept", spool_has(dir, "queue", bad[1]), 1);
    for (i = 0; i < 2; i++)
        unit_int_eq("tmp/ emptied", spool_has(dir, "tmp", bad[i]), 0);
    /* a staged copy that will not be published */
    m.qid = "CCCC00000001";
    if (queue_stage(q, &m, &e) < 0)
        fail_msg("stage: %s", e.text);
    queue_unstage(q, m.qid);
    unit_int_eq("unstaged", spool_has(dir, "tmp", m.qid), 0);
    queue_free(q);
    conf_free(cf);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
/* ---- end encrypt */

/* A message given in pieces (msg_iov) makes the same file, octet for
 * octet, and a length that is not the pieces' total is refused. */
static void
test_pieces(void **state)
{
    char dir[256], path[600];
    size_t len = sizeof(test_message) - 1, cut1 = 5, cut2 = len - 3;
    struct iovec v[3];
    struct queue_msg m;
    struct queue_file qf;
    struct queue *q;
    struct conf *cf;
    struct buf whole, pieces, raw;
    struct err e;
    int fd;

    (void)state;
    serialized(&whole);
    v[0].iov_base = (void *)(uintptr_t)test_message;
    v[0].iov_len = cut1;
    v[1].iov_base = (void *)(uintptr_t)(test_message + cut1);
    v[1].iov_len = cut2 - cut1;
    v[2].iov_base = (void *)(uintptr_t)(test_message + cut2);
    v[2].iov_len = len - cut2;
    make_msg(&m);
    m.data = NULL;
    m.iov = v;
    m.niov = 3;
    buf_init(&pieces, 0);
    if (queue_file_serialize(&m, &pieces, &e) < 0)
        fail_msg("serialize in pieces: %s", e.text);
    if (pieces.len != whole.len || memcmp(pieces.data, whole.data, whole.len))
        fail_msg("in pieces: %zu octets differ from the %zu of one block",
                 pieces.len, whole.len);

    assert_non_null(unit_tmpdir(dir, sizeof(dir)));
    cf = load_conf(dir, "");
    if ((q = queue_open(cf->cfg, &e)) == NULL)
        fail_msg("queue_open: %s", e.text);
    if (queue_commit(q, &m, &e) < 0)
        fail_msg("commit in pieces: %s", e.text);
    snprintf(path, sizeof(path), "%s/spool/queue/ABCDEF012345", dir);
    assert_true((fd = open(path, O_RDONLY)) >= 0);
    buf_init(&raw, 0);
    assert_int_equal(queue_read_fd(fd, 1 << 20, &raw, &e), 0);
    close(fd);
    if (queue_file_parse(raw.data, raw.len, 0, &qf, &e) < 0)
        fail_msg("file committed in pieces: %s", e.text);
    if (qf.len != len || memcmp(qf.data, test_message, len) != 0)
        fail_msg("committed message: got %zu octets, want %zu", qf.len, len);
    queue_file_fini(&qf);

    m.qid = "ABCDEF012346";
    m.len = len + 1;
    err_clear(&e);
    assert_int_equal(queue_commit(q, &m, &e), -1);
    unit_has("length not the pieces' total", e.text, "message pieces");
    queue_free(q);
    conf_free(cf);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    buf_fini(&raw);
    buf_fini(&pieces);
    buf_fini(&whole);
}

static void
test_transport_map(void **state)
{
    static const struct {
        const char *name, *map, *want; /* NULL: loads */
    } cases[] = {
        {"good",
         "# comment\nexample.com smtp:[127.0.0.1]:25\n"
         ".example.com lmtp:[127.0.0.1]:24\n* smtp:[::1]:25\n",
         NULL},
        {"one field", "example.com\n", "transport:1: expected"},
        {"three fields", "\n\na.example smtp:[127.0.0.1]:25 extra\n",
         "transport:3: expected"},
        {"bad next hop", "a.example ftp:[127.0.0.1]:21\n", "transport:1:"},
    };
    char dir[256], extra[700], file[600];
    struct conf *cf;
    struct queue *q;
    struct err e;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_non_null(unit_tmpdir(dir, sizeof(dir)));
        unit_write(dir, "transport", cases[i].map, file, sizeof(file));
        snprintf(extra, sizeof(extra), "transport_map = %s\n", file);
        cf = load_conf(dir, extra);
        q = queue_open(cf->cfg, &e);
        if (cases[i].want == NULL && q == NULL)
            unit_fail(cases[i].name, "got \"%s\", want loaded", e.text);
        if (cases[i].want != NULL) {
            if (q != NULL)
                unit_fail(cases[i].name, "got loaded, want \"%s\"",
                          cases[i].want);
            else
                unit_has(cases[i].name, e.text, cases[i].want);
        }
        queue_free(q);
        conf_free(cf);
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
}

/* ------------------------------------------------------------ LMTP */

/* Three recipients, and the next hop's reply to the message for each
 * (CLOSE: the connection is lost instead). */
struct lmtp_case {
    const char *name;
    const char *finals[4]; /* the scripted server's --final values */
    const char *marks;     /* each recipient's mark after the attempt, or
                              NULL: every one done with, the file gone */
    const char *defer;     /* in defer/ID (NULL: none must be there) */
    const char *bounced;   /* the recipient the report names, or NULL */
    const char *diag;      /* its Diagnostic-Code */
};

/* What an LMTP case runs, for lmtp_teardown to end when it fails. */
struct lmtp_run {
    char dir[256];
    pid_t pid;
    struct conf *cf;
    struct queue *q;
};

static int
lmtp_setup(void **state)
{
    *state = calloc(1, sizeof(struct lmtp_run));
    return *state != NULL ? 0 : -1;
}

/* lmtp_stop - stop the queue and the server of run. */
static void
lmtp_stop(struct lmtp_run *run)
{
    if (run->q != NULL && queue_stop(run->q, 5000) == 0)
        queue_free(run->q);
    run->q = NULL;
    conf_free(run->cf);
    run->cf = NULL;
    unit_stop(run->pid);
    run->pid = 0;
}

static int
lmtp_teardown(void **state)
{
    struct lmtp_run *run = *state;

    lmtp_stop(run);
    if (run->dir[0] != '\0')
        nftw(run->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(run);
    return 0;
}

static void
test_lmtp_split(void **state)
{
    static const struct msg_rcpt rcpts[] = {
        {"b@dest.example", NULL},
        {"c@dest.example", NULL},
        {"d@dest.example", NULL},
    };
    static const struct lmtp_case cases[] = {
        {"one deferred",
         {"c@dest.example:452 4.2.2 c is over quota", NULL},
         "DND",
         "c@dest.example\t452 4.2.2 c is over quota\n",
         NULL,
         NULL},
        {"one bounced",
         {"b@dest.example:552 5.2.2 b is over quota", NULL},
         NULL,
         NULL,
         "b@dest.example",
         "Diagnostic-Code: smtp; 552 5.2.2 b is over quota\r\n"},
        {"one of each",
         {"b@dest.example:552 5.2.2 b is over quota",
          "c@dest.example:452 4.2.2 c is over quota", NULL},
         "BND",
         "c@dest.example\t452 4.2.2 c is over quota\n",
         "b@dest.example",
         "Diagnostic-Code: smtp; 552 5.2.2 b is over quota\r\n"},
        {"lost after the first reply",
         {"c@dest.example:CLOSE", NULL},
         "DNN",
         "d@dest.example\t451 4.4.2 lost connection with "
         "127.0.0.1[127.0.0.1]:",
         NULL,
         NULL},
    };
    struct lmtp_run *run = *state;
    char srv[300], extra[1024], file[700], text[256];
    char path[900], *dsn = NULL, *dir = run->dir;
    const char *opts[12];
    struct queue_msg m;
    struct queue_file qf;
    struct buf raw;
    struct err e;
    size_t i, k, n;
    struct timespec now;
    struct dirent *de;
    DIR *d;
    int port, fd, w, want_data, others;

    if (access(UNIT_PYTHON, X_OK) != 0)
        fail_msg("%s is missing: run scripts/setup", UNIT_PYTHON);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct lmtp_case *t = &cases[i];

        assert_non_null(unit_tmpdir(dir, sizeof(run->dir)));
        snprintf(srv, sizeof(srv), "%s/server", dir);
        assert_int_equal(mkdir(srv, 0700), 0);
        n = 0;
        opts[n++] = "--lmtp";
        opts[n++] = "--ehlo";
        opts[n++] = "PIPELINING";
        for (k = 0; t->finals[k] != NULL; k++) {
            opts[n++] = "--final";
            opts[n++] = t->finals[k];
        }
        opts[n] = NULL;
        if ((port = unit_scripted_start(srv, opts, &run->pid)) < 0)
            unit_fail(t->name, "the scripted server did not start");
        /* every domain to it; no second attempt within the test */
        snprintf(text, sizeof(text), "* lmtp:[127.0.0.1]:%d\n", port);
        unit_write(dir, "transport", text, file, sizeof(file));
        snprintf(extra, sizeof(extra),
                 "transport_map = %s\nminimal_backoff_time = 3600s\n"
                 "maximal_backoff_time = 3600s\n",
                 file);
        run->cf = load_conf(dir, extra);
        if ((run->q = queue_open(run->cf->cfg, &e)) == NULL)
            unit_fail(t->name, "queue_open: %s", e.text);
        if (queue_start(run->q, &e) < 0)
            unit_fail(t->name, "queue_start: %s", e.text);
        make_msg(&m);
        m.qid = "LMTP0001";
        /* now: an old message would bounce as expired */
        clock_gettime(CLOCK_REALTIME, &now);
        m.arrival_us = (long long)now.tv_sec * 1000000LL + now.tv_nsec / 1000;
        m.rcpts = rcpts;
        m.nrcpts = 3;
        m.orig = rcpts;
        m.norig = 3;
        if (queue_commit(run->q, &m, &e) < 0)
            unit_fail(t->name, "commit: %s", e.text);

        /* the attempt is over when the file is gone or defer/ has its
         * reasons (written after the marks) */
        for (w = 0; w < 500; w++) {
            snprintf(path, sizeof(path), "%s/spool/queue/LMTP0001", dir);
            if (access(path, F_OK) != 0)
                break;
            snprintf(path, sizeof(path), "%s/spool/defer/LMTP0001", dir);
            if (access(path, F_OK) == 0)
                break;
            unit_sleep_ms(20);
        }
        /* a report goes through the same next hop: wait for it */
        want_data = t->bounced != NULL ? 2 : 1;
        snprintf(path, sizeof(path), "%s/events.log", srv);
        for (w = 0; w < 500 && unit_count(path, " data data-") < want_data;
             w++)
            unit_sleep_ms(20);
        lmtp_stop(run);

        unit_int_eq(t->name, unit_count(path, " data data-"), want_data);
        /* no report: nothing else was queued either */
        snprintf(path, sizeof(path), "%s/spool/queue", dir);
        assert_non_null(d = opendir(path));
        for (others = 0; (de = readdir(d)) != NULL;)
            others +=
                de->d_name[0] != '.' && strcmp(de->d_name, "LMTP0001") != 0;
        closedir(d);
        if (t->bounced == NULL)
            unit_int_eq(t->name, others, 0);
        snprintf(path, sizeof(path), "%s/spool/queue/LMTP0001", dir);
        fd = open(path, O_RDONLY);
        if (t->marks == NULL) {
            if (fd >= 0)
                unit_fail(t->name, "the queue file is still there");
        } else {
            if (fd < 0)
                unit_fail(t->name, "the queue file is gone");
            buf_init(&raw, 0);
            assert_int_equal(queue_read_fd(fd, 1 << 20, &raw, &e), 0);
            close(fd);
            if (queue_file_parse(raw.data, raw.len, 0, &qf, &e) < 0)
                unit_fail(t->name, "queue file: %s", e.text);
            for (k = 0; k < 3; k++) {
                snprintf(text, sizeof(text), "%s, <%s>", t->name,
                         rcpts[k].addr);
                unit_int_eq(text, qf.rcpts[k].status, t->marks[k]);
            }
            queue_file_fini(&qf);
            buf_fini(&raw);
        }
        snprintf(path, sizeof(path), "%s/spool/defer/LMTP0001", dir);
        {
            char *note = unit_read_file(path, NULL);

            if (t->defer != NULL)
                unit_has(t->name, note, t->defer);
            else if (note != NULL)
                unit_fail(t->name, "got defer note \"%s\", want none", note);
            free(note);
        }
        snprintf(path, sizeof(path), "%s/data-2.bin", srv);
        dsn = unit_read_file(path, NULL);
        if (t->bounced == NULL) {
            if (dsn != NULL)
                unit_fail(t->name, "got a report, want none");
        } else {
            unit_has(t->name, dsn, "Action: failed\r\n");
            snprintf(text, sizeof(text), "Final-Recipient: rfc822; %s\r\n",
                     t->bounced);
            unit_has(t->name, dsn, text);
            unit_has(t->name, dsn, t->diag);
            /* only the bounced one is reported */
            unit_int_eq(t->name, unit_count(path, "Final-Recipient:"), 1);
        }
        free(dsn);
        nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        dir[0] = '\0';
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_no_stream),
        cmocka_unit_test(test_stream_twice),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_flipped),
        cmocka_unit_test(test_head_only),
        cmocka_unit_test(test_dsn),
        cmocka_unit_test(test_dsn_returned),
        cmocka_unit_test(test_dsn_status),
        cmocka_unit_test(test_commit),
        cmocka_unit_test(test_stage_publish), /* ---- encrypt */
        cmocka_unit_test(test_pieces),
        cmocka_unit_test(test_transport_map),
        cmocka_unit_test_setup_teardown(test_lmtp_split, lmtp_setup,
                                        lmtp_teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
