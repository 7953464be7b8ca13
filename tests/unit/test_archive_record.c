/*
 * test_archive_record - the archive stage's sealed record: seal and
 *     parse round trip, and a parser that refuses every flaw by name
 *
 * Round trip: a message record with every meta field (values with
 * spaces, CR LF, '%' and 8-bit octets, a Bcc recipient, an empty
 * sender), a record of each other kind; the parsed record must give back
 * the same octets and fields, and its hash must be the one sealing gave.
 * Chaining: the second record's prev is the first one's hash.
 * Strictness: the record cut at every length, every single octet flipped
 * (in a small record), and hand-made records with a bad meta line: each
 * is refused with an error naming the record. The whole store under the
 * stage: tests/integration/archive_dir.sh.
 * Encrypted records (encrypt_to): sealed through an encrypt callback (a
 * reversible stand-in here; gpg and openssl cms decrypt the real ones in
 * tests/integration/archive_encrypt.sh): the flag and encrypted-to are
 * set, the payload undone is the zstd frame of the message, a flipped
 * payload octet breaks the record hash, a failing callback seals
 * nothing.
 */
#include "config.h"

#include "unit.h"

#include <zstd.h>

#include "filters/archive/archive_int.h"

static const unsigned char zero[ARC_HASH_LEN];

static void
seal_message(struct buf *out, unsigned char hash[ARC_HASH_LEN],
             unsigned long long seq, const unsigned char *prev,
             const char *data)
{
    static const char *const rcpts[] = {"to@example.net",
                                        "bcc@hidden.example"};
    struct arc_meta meta;
    struct arc_seal_in in;
    struct err e;

    memset(&meta, 0, sizeof(meta));
    meta.time = 1796623127;
    meta.point = "archive";
    meta.qid = "6A0F3C21B7";
    meta.message_id = "<m1@example.com>";
    meta.subject = "hello %41 world\r\n folded \xc3\xa9";
    meta.client_addr = "192.0.2.1";
    meta.client_name = "client.example";
    meta.auth_user = NULL;
    meta.sender = "";
    meta.rcpts = rcpts;
    meta.nrcpts = 2;
    meta.verdicts = "antivirus=continue rewrite=continue";
    memset(&in, 0, sizeof(in));
    in.kind = ARC_KIND_MESSAGE;
    in.writer = "node1";
    in.seq = seq;
    in.prev = prev;
    in.meta = &meta;
    in.data = data;
    in.len = strlen(data);
    in.level = 3;
    err_clear(&e);
    if (arc_record_seal(&in, out, hash, &e) < 0)
        unit_fail("seal", "got error %s", e.text);
}

static const char msg1[] = "From: a@example.com\r\nSubject: hello\r\n\r\n"
                           "body body body body body body body\r\n";

static void
test_round_trip(void **state)
{
    unsigned char h1[ARC_HASH_LEN], h2[ARC_HASH_LEN];
    struct buf b1, b2;
    struct arc_rec r;
    struct err e;

    (void)state;
    buf_init(&b1, 0);
    buf_init(&b2, 0);
    seal_message(&b1, h1, 1, zero, msg1);
    seal_message(&b2, h2, 2, h1, "");
    err_clear(&e);
    unit_int_eq("parse",
                arc_record_parse((unsigned char *)b1.data, b1.len, &r, &e), 0);
    unit_int_eq("kind", r.kind, ARC_KIND_MESSAGE);
    unit_str_eq("writer", r.writer, "node1");
    unit_int_eq("seq", (int)r.seq, 1);
    unit_int_eq("hash", memcmp(r.hash, h1, ARC_HASH_LEN), 0);
    unit_int_eq("prev", memcmp(r.prev, zero, ARC_HASH_LEN), 0);
    unit_int_eq("msg len", (int)r.msg.len, (int)strlen(msg1));
    unit_int_eq("msg", memcmp(r.msg.data, msg1, r.msg.len), 0);
    unit_str_eq("subject", r.meta.subject,
                "hello %41 world\r\n folded \xc3\xa9");
    unit_str_eq("sender", r.meta.sender, "");
    unit_int_eq("nrcpts", (int)r.meta.nrcpts, 2);
    unit_str_eq("bcc", r.meta.rcpts[1], "bcc@hidden.example");
    unit_str_eq("verdicts", r.meta.verdicts,
                "antivirus=continue rewrite=continue");
    unit_str_eq("qid", r.meta.qid, "6A0F3C21B7");
    if (r.meta.auth_user != NULL)
        unit_fail("auth_user", "got \"%s\", want NULL", r.meta.auth_user);
    unit_int_eq("time", (int)(r.meta.time - 1796623127), 0);
    arc_rec_free(&r);

    /* The chain: the second record follows the first. */
    unit_int_eq("parse 2",
                arc_record_parse((unsigned char *)b2.data, b2.len, &r, &e), 0);
    unit_int_eq("prev of 2", memcmp(r.prev, h1, ARC_HASH_LEN), 0);
    unit_int_eq("empty message", (int)r.msg.len, 0);
    arc_rec_free(&r);
    buf_fini(&b1);
    buf_fini(&b2);
}

static void
test_other_kinds(void **state)
{
    unsigned char h[ARC_HASH_LEN], sig[64], last[ARC_HASH_LEN];
    struct arc_meta meta;
    struct arc_extra x;
    struct arc_seal_in in;
    struct arc_rec r;
    struct buf b;
    struct err e;

    (void)state;
    memset(sig, 0xab, sizeof(sig));
    memset(last, 0x11, sizeof(last));
    memset(&meta, 0, sizeof(meta));
    meta.time = 42;
    memset(&in, 0, sizeof(in));
    memset(&x, 0, sizeof(x));
    in.writer = "node1";
    in.prev = zero;
    in.meta = &meta;
    in.x = &x;
    buf_init(&b, 0);

    in.kind = ARC_KIND_OUTCOME;
    in.seq = 7;
    x.ref = "node1/0000000000000005";
    x.verdict = "reject by antivirus: 554 5.7.1 virus found";
    err_clear(&e);
    unit_int_eq("seal outcome", arc_record_seal(&in, &b, h, &e), 0);
    unit_int_eq("parse outcome",
                arc_record_parse((unsigned char *)b.data, b.len, &r, &e), 0);
    unit_str_eq("ref", r.x.ref, "node1/0000000000000005");
    unit_str_eq("verdict", r.x.verdict,
                "reject by antivirus: 554 5.7.1 virus found");
    arc_rec_free(&r);

    buf_reset(&b);
    in.kind = ARC_KIND_CHECKPOINT;
    in.seq = 8;
    memset(&x, 0, sizeof(x));
    x.sig = sig;
    x.key_id = "0123456789abcdef";
    x.count = 7;
    unit_int_eq("seal checkpoint", arc_record_seal(&in, &b, h, &e), 0);
    unit_int_eq("parse checkpoint",
                arc_record_parse((unsigned char *)b.data, b.len, &r, &e), 0);
    unit_int_eq("sig", memcmp(r.x.sig, sig, 64), 0);
    unit_int_eq("count", (int)r.x.count, 7);
    arc_rec_free(&r);

    buf_reset(&b);
    in.kind = ARC_KIND_TOMBSTONE;
    in.seq = 9;
    memset(&x, 0, sizeof(x));
    x.ref = "node1/0000000000000001";
    x.to = 4;
    x.prev_hash = zero;
    x.last_hash = last;
    unit_int_eq("seal tombstone", arc_record_seal(&in, &b, h, &e), 0);
    unit_int_eq("parse tombstone",
                arc_record_parse((unsigned char *)b.data, b.len, &r, &e), 0);
    unit_int_eq("to", (int)r.x.to, 4);
    unit_int_eq("last", memcmp(r.x.last_hash, last, ARC_HASH_LEN), 0);
    arc_rec_free(&r);

    /* A tombstone of its own writer that covers itself or what comes
     * after it. */
    buf_reset(&b);
    x.to = 9;
    unit_int_eq("seal bad tombstone", arc_record_seal(&in, &b, h, &e), 0);
    unit_int_eq("bad tombstone refused",
                arc_record_parse((unsigned char *)b.data, b.len, &r, &e), -1);
    arc_rec_free(&r);
    buf_fini(&b);
}

/* Every cut and every flipped octet is refused, naming the record once
 * its header can be read. */
static void
test_strict(void **state)
{
    unsigned char h[ARC_HASH_LEN];
    struct arc_rec r;
    struct buf b;
    struct err e;
    size_t n, i;

    (void)state;
    buf_init(&b, 0);
    seal_message(&b, h, 3, zero, msg1);
    for (n = 0; n < b.len; n++) {
        char name[32];

        snprintf(name, sizeof(name), "cut at %zu", n);
        err_clear(&e);
        unit_int_eq(name, arc_record_parse((unsigned char *)b.data, n, &r, &e),
                    -1);
        if (n > ARC_HEAD_LEN + 5 &&
            strstr(e.text, "node1/0000000000000003") == NULL)
            unit_fail(name, "got \"%s\", want the record named", e.text);
        arc_rec_free(&r);
    }
    for (i = 0; i < b.len; i++) {
        char name[32];

        snprintf(name, sizeof(name), "flip at %zu", i);
        b.data[i] ^= 0x01;
        err_clear(&e);
        if (arc_record_parse((unsigned char *)b.data, b.len, &r, &e) == 0)
            unit_fail(name, "got a record, want an error");
        arc_rec_free(&r);
        b.data[i] ^= 0x01;
    }
    /* Longer than it says. */
    buf_putc(&b, 'x', &e);
    unit_int_eq("trailing octet",
                arc_record_parse((unsigned char *)b.data, b.len, &r, &e), -1);
    arc_rec_free(&r);
    buf_fini(&b);
}

/* arc_name and its reverse. */
/* xor_encrypt - the stand-in cipher: every octet XOR 0x5a; fails when
 * arg is non-NULL. */
static int
xor_encrypt(void *arg, const char *data, size_t len, struct buf *out, char *to,
            size_t ton, struct err *e)
{
    size_t i;

    if (arg != NULL)
        return err_set(e, ERR_TEMP, "engine down");
    for (i = 0; i < len; i++)
        if (buf_putc(out, data[i] ^ 0x5a, e) < 0)
            return -1;
    snprintf(to, ton, "test:xor");
    return 0;
}

static void
test_encrypted(void **state)
{
    static const char *const rcpts[] = {"bcc@hidden.example"};
    static int fail_flag;
    unsigned char hash[ARC_HASH_LEN];
    struct arc_meta meta;
    struct arc_seal_in in;
    struct arc_rec r;
    struct buf b, plain;
    struct err e;
    size_t i, got;
    char out[sizeof(msg1)];

    (void)state;
    memset(&meta, 0, sizeof(meta));
    meta.time = 1796623127;
    meta.point = "archive";
    meta.sender = "a@example.com";
    meta.rcpts = rcpts;
    meta.nrcpts = 1;
    meta.verdicts = "";
    memset(&in, 0, sizeof(in));
    in.kind = ARC_KIND_MESSAGE;
    in.writer = "node1";
    in.seq = 1;
    in.prev = zero;
    in.meta = &meta;
    in.data = msg1;
    in.len = strlen(msg1);
    in.level = 3;
    in.encrypt = xor_encrypt;
    buf_init(&b, 0);
    err_clear(&e);
    unit_int_eq("seal encrypted", arc_record_seal(&in, &b, hash, &e), 0);
    unit_int_eq("flag", (unsigned char)b.data[7], ARC_FLAG_ENCRYPTED);
    unit_int_eq("parse encrypted",
                arc_record_parse((unsigned char *)b.data, b.len, &r, &e), 0);
    unit_str_eq("encrypted-to", r.meta.encrypted_to, "test:xor");
    unit_str_eq("Bcc in clear", r.meta.rcpts[0], "bcc@hidden.example");
    unit_int_eq("size in clear", (long long)r.meta.size,
                (long long)strlen(msg1));
    /* The payload undone is a zstd frame of the message. */
    buf_init(&plain, 0);
    for (i = 0; i < r.msg.len; i++)
        buf_putc(&plain, r.msg.data[i] ^ 0x5a, &e);
    got = ZSTD_decompress(out, sizeof(out), plain.data, plain.len);
    unit_int_eq("payload is the zstd frame of the message",
                !ZSTD_isError(got) && got == strlen(msg1) &&
                    memcmp(out, msg1, got) == 0,
                1);
    buf_fini(&plain);
    arc_rec_free(&r);
    /* A flipped payload octet: the record hash catches it, no key
     * needed. */
    b.data[b.len - ARC_HASH_LEN - 3] ^= 1;
    unit_int_eq("flipped payload refused",
                arc_record_parse((unsigned char *)b.data, b.len, &r, &e), -1);
    unit_has("named as altered", e.text, "altered");
    arc_rec_free(&r);
    /* The engine fails: nothing is sealed, in clear or otherwise. */
    buf_reset(&b);
    in.encrypt_arg = &fail_flag;
    err_clear(&e);
    unit_int_eq("failing engine", arc_record_seal(&in, &b, hash, &e), -1);
    unit_int_eq("tempfail", e.code, ERR_TEMP);
    unit_int_eq("nothing sealed", (long long)b.len, 0);
    buf_fini(&b);
}

static void
test_names(void **state)
{
    char name[ARC_NAME_MAX + 1], w[ARC_WRITER_MAX + 1];
    unsigned long long seq;

    (void)state;
    arc_name(name, "mx-1", 0x2a);
    unit_str_eq("name", name, "mx-1/000000000000002a");
    unit_int_eq("parse", arc_name_parse(name, w, &seq), 0);
    unit_str_eq("writer", w, "mx-1");
    unit_int_eq("seq", (int)seq, 0x2a);
    unit_int_eq("seq 0", arc_name_parse("a/0000000000000000", w, &seq), -1);
    unit_int_eq("upper hex", arc_name_parse("a/000000000000002A", w, &seq),
                -1);
    unit_int_eq("short", arc_name_parse("a/2a", w, &seq), -1);
    unit_int_eq("no writer", arc_name_parse("/000000000000002a", w, &seq), -1);
    unit_int_eq("space", arc_name_parse("a b/000000000000002a", w, &seq), -1);
    unit_int_eq("writer ok", arc_writer_ok("relay.example"), 1);
    unit_int_eq("writer dot", arc_writer_ok(".hidden"), 0);
    unit_int_eq("writer slash", arc_writer_ok("a/b"), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip), cmocka_unit_test(test_other_kinds),
        cmocka_unit_test(test_strict),     cmocka_unit_test(test_names),
        cmocka_unit_test(test_encrypted),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
