/*
 * test_msg - the message model: byte-exact round trip, header reading and
 * editing, the edit journal, limits, the envelope and the MIME cache
 */
#include "config.h"

#include "unit.h"

#include "util/buf.h"
#include "util/err.h"
#include "msg/mime.h"
#include "msg/msg.h"

#define MAX_OPS 8

static const struct msg_limits no_limits = {0, 0, 0, 0, 0};

static struct msg *
parse(const char *name, const char *text, const struct msg_limits *lim)
{
    struct err e;
    struct msg *m;

    err_clear(&e);
    if ((m = msg_new(lim, MSG_FE_SMTP, &e)) == NULL)
        unit_fail(name, "msg_new: %s", e.text);
    if (msg_parse(m, text, strlen(text), &e) < 0)
        unit_fail(name, "msg_parse: %s", e.text);
    return m;
}

/* written - msg_write() output as a string the caller frees; checks that
 * msg_size(), msg_flat() and the pieces of msg_iov() agree with it. */
static char *
written(const char *name, const struct msg *m)
{
    struct iovec v[64];
    struct buf b, pieces;
    struct err e;
    const char *flat;
    char *s;
    size_t len, n, i;

    buf_init(&b, 0);
    if (msg_write(m, &b, &e) < 0)
        unit_fail(name, "msg_write: %s", e.text);
    if (b.len != msg_size(m))
        unit_fail(name, "msg_size: got %zu, written %zu", msg_size(m), b.len);
    if ((flat = msg_flat((struct msg *)m, &len, &e)) == NULL)
        unit_fail(name, "msg_flat: %s", e.text);
    if (len != b.len || memcmp(flat, buf_str(&b), len) != 0)
        unit_fail(name, "msg_flat: %zu octets differ from msg_write's %zu",
                  len, b.len);
    n = msg_iov(m, v, 64);
    if (n > 64)
        unit_fail(name, "msg_iov: %zu pieces", n);
    buf_init(&pieces, 0);
    for (i = 0; i < n; i++)
        assert_int_equal(buf_append(&pieces, v[i].iov_base, v[i].iov_len, &e),
                         0);
    if (pieces.len != b.len || memcmp(buf_str(&pieces), buf_str(&b), b.len))
        unit_fail(name, "msg_iov: \"%s\" differs from msg_write's \"%s\"",
                  buf_str(&pieces), buf_str(&b));
    buf_fini(&pieces);
    s = buf_steal(&b, &len);
    assert_non_null(s);
    return s;
}

/* show - visible line ends for failure messages. */
static const char *
show(const char *s, char *out, size_t n)
{
    size_t o = 0;

    for (; s != NULL && *s != '\0' && o + 3 < n; s++) {
        if (*s == '\r') {
            out[o++] = '\\';
            out[o++] = 'r';
        } else if (*s == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *s;
        }
    }
    out[o] = '\0';
    return out;
}

static void
text_eq(const char *name, const char *got, const char *want)
{
    char g[512], w[512];

    if (strcmp(got, want) != 0)
        unit_fail(name, "got \"%s\", want \"%s\"", show(got, g, sizeof(g)),
                  show(want, w, sizeof(w)));
}

/* ------------------------------------------------------------ round trip */

static void
test_round_trip(void **state)
{
    static const struct {
        const char *name;
        const char *in;
        size_t nhdrs;
        const char *body;
        const char *eol;
        size_t longest;
    } cases[] = {
        {"crlf", "From: a@b\r\nSubject: hi\r\n\r\nbody\r\n", 2, "body\r\n",
         "\r\n", 11},
        {"lf", "From: a@b\nSubject: hi\n\nbody\n", 2, "body\n", "\n", 11},
        {"folded", "Subject: a\n b\n\tc\nTo: x\n\nbody", 2, "body", "\n", 10},
        {"folded crlf", "Subject: a\r\n b\r\nTo: x\r\n\r\n", 2, "", "\r\n",
         10},
        {"no body no empty line", "From: a\nTo: b\n", 2, "", "\n", 7},
        {"last header without line end", "From: a\nTo: b", 2, "", "\n", 7},
        {"only a header without line end", "Subject: x", 1, "", "\r\n", 10},
        {"empty", "", 0, "", "\r\n", 0},
        {"only the empty line", "\n", 0, "", "\n", 0},
        {"empty line first", "\r\nFrom: a\r\n", 0, "From: a\r\n", "\r\n", 7},
        {"first line not a header", "hello world\nFrom: x\n\nb\n", 0,
         "hello world\nFrom: x\n\nb\n", "\n", 11},
        {"first line a continuation", " cont\nFrom: a\n\nb\n", 0,
         " cont\nFrom: a\n\nb\n", "\n", 7},
        {"non-header line ends the header", "From: a\nthis is body\nX: y\n", 1,
         "this is body\nX: y\n", "\n", 12},
        {"space before colon is not a field", "From : a\n\nb\n", 0,
         "From : a\n\nb\n", "\n", 8},
        {"mixed line ends", "From: a\r\nTo: b\n\r\nbody\n", 2, "body\n",
         "\r\n", 7},
        {"empty value", "X-Empty:\n\nb", 1, "b", "\n", 8},
        {"bare CR inside a value", "X: a\rb\n\n", 1, "", "\n", 6},
        {"8-bit value", "Subject: caf\xc3\xa9\n\n\xff\n", 1, "\xff\n", "\n",
         14},
        {"body without final line end", "A: b\n\nno end", 1, "no end", "\n",
         6},
        {"lone CR after the header", "A: b\n\r", 1, "\r", "\n", 4},
        {"CR CR LF", "A: b\r\r\n\r\n", 1, "", "\r\n", 5},
        {"long body line", "A: b\n\n0123456789012345678901234\nx\n", 1,
         "0123456789012345678901234\nx\n", "\n", 25},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct msg *m = parse(cases[i].name, cases[i].in, &no_limits);
        const char *body;
        size_t blen;
        char *out = written(cases[i].name, m);

        text_eq(cases[i].name, out, cases[i].in);
        unit_int_eq(cases[i].name, msg_header_count(m), cases[i].nhdrs);
        body = msg_body(m, &blen);
        unit_int_eq(cases[i].name, blen, strlen(cases[i].body));
        if (memcmp(body, cases[i].body, blen) != 0)
            unit_fail(cases[i].name, "body differs");
        text_eq(cases[i].name, msg_eol(m), cases[i].eol);
        unit_int_eq(cases[i].name, msg_longest_line(m), cases[i].longest);
        free(out);
        msg_free(m);
    }
}

/* NUL octets from the wire survive the round trip; the C string view of
 * a value stops at the first one, value_len does not. */
static void
test_nul_octets(void **state)
{
    static const char in[] = "X: a\0b\nY: c\n\nbo\0dy\n";
    struct msg *m;
    struct buf b;
    struct err e;
    const char *name, *value, *body;
    size_t vlen, blen;

    (void)state;
    assert_non_null(m = msg_new(&no_limits, MSG_FE_SMTP, &e));
    assert_int_equal(msg_parse(m, in, sizeof(in) - 1, &e), 0);
    unit_int_eq("nul: count", msg_header_count(m), 2);
    assert_int_equal(msg_header_at(m, 0, &name, &value, &vlen), 0);
    unit_int_eq("nul: value_len", vlen, 4);
    if (memcmp(value, " a\0b", 4) != 0)
        unit_fail("nul", "value differs");
    body = msg_body(m, &blen);
    unit_int_eq("nul: body length", blen, 6);
    if (memcmp(body, "bo\0dy\n", 6) != 0)
        unit_fail("nul", "body differs");
    buf_init(&b, 0);
    assert_int_equal(msg_write(m, &b, &e), 0);
    unit_int_eq("nul: written length", b.len, sizeof(in) - 1);
    if (memcmp(b.data, in, b.len) != 0)
        unit_fail("nul", "written message differs from the input");
    buf_fini(&b);
    msg_free(m);
}

/* A message is parsed once; a second parse would lose the first. */
static void
test_parse_twice(void **state)
{
    struct msg *m = parse("twice", "A: 1\n\nb\n", &no_limits);
    struct err e;

    (void)state;
    err_clear(&e);
    if (msg_parse(m, "B: 2\n\n", 6, &e) == 0)
        unit_fail("twice", "got success, want an error");
    unit_str_eq("twice", msg_header_get(m, "A", 1), " 1");
    msg_free(m);
}

static void
test_write_file(void **state)
{
    static const char in[] = "From: a\r\nSubject: b\r\n c\r\n\r\nbody\r\n";
    struct msg *m = parse("file", in, &no_limits);
    struct err e;
    char got[128];
    size_t n;
    FILE *fp = tmpfile();

    (void)state;
    assert_non_null(fp);
    unit_int_eq("file", msg_write_file(m, fp, &e), 0);
    rewind(fp);
    n = fread(got, 1, sizeof(got) - 1, fp);
    got[n] = '\0';
    text_eq("file", got, in);
    fclose(fp);
    msg_free(m);
}

static void
test_write_limit(void **state)
{
    static const char in[] = "From: a\n\nbody\n";
    struct msg *m = parse("write limit", in, &no_limits);
    struct buf b;
    struct err e;

    (void)state;
    buf_init(&b, sizeof(in) - 2);
    if (msg_write(m, &b, &e) == 0)
        unit_fail("write limit", "got success, want ERR_LIMIT");
    unit_int_eq("write limit", e.code, ERR_LIMIT);
    unit_int_eq("write limit: buffer untouched", b.len, 0);
    buf_fini(&b);
    msg_free(m);
}

/* ------------------------------------------------------------- reading */

static void
test_header_read(void **state)
{
    static const char in[] =
        "X-A: 1\nx-a: 2\nX-B: b\n  folded\nX-A: 3\n\nX-A: body\n";
    static const struct {
        const char *name;
        size_t index;
        const char *want;
    } gets[] = {
        {"X-A", 1, " 1"},       {"x-A", 2, " 2"}, {"X-A", 3, " 3"},
        {"X-A", 4, NULL},       {"X-A", 0, NULL}, {"x-b", 1, " b\n  folded"},
        {"X-Missing", 1, NULL},
    };
    static const struct {
        size_t i;
        const char *name;
        const char *value;
    } ats[] = {{0, "X-A", " 1"}, {1, "x-a", " 2"}, {3, "X-A", " 3"}};
    struct msg *m = parse("read", in, &no_limits);
    const char *name, *value;
    size_t i, vlen;
    char label[64];

    (void)state;
    unit_int_eq("count", msg_header_count(m), 4);
    unit_int_eq("name count X-A", msg_header_name_count(m, "x-A"), 3);
    unit_int_eq("name count X-B", msg_header_name_count(m, "X-B"), 1);
    unit_int_eq("name count none", msg_header_name_count(m, "X-C"), 0);
    for (i = 0; i < sizeof(gets) / sizeof(gets[0]); i++) {
        snprintf(label, sizeof(label), "get %s %zu", gets[i].name,
                 gets[i].index);
        unit_str_eq(label, msg_header_get(m, gets[i].name, gets[i].index),
                    gets[i].want);
    }
    for (i = 0; i < sizeof(ats) / sizeof(ats[0]); i++) {
        snprintf(label, sizeof(label), "at %zu", ats[i].i);
        unit_int_eq(label, msg_header_at(m, ats[i].i, &name, &value, &vlen),
                    0);
        unit_str_eq(label, name, ats[i].name);
        unit_str_eq(label, value, ats[i].value);
        unit_int_eq(label, vlen, strlen(ats[i].value));
    }
    unit_int_eq("at past the end", msg_header_at(m, 4, &name, &value, &vlen),
                -1);
    msg_free(m);
}

/* ------------------------------------------------------------- editing */

struct op {
    enum msg_edit_kind kind;
    const char *name;
    size_t n; /* index or position */
    const char *value;
};

/* apply - perform one op as stage "st"; returns the call's result. */
static int
apply(struct msg *m, const struct op *op, struct err *e)
{
    switch (op->kind) {
    case MSG_EDIT_HEADER_ADD:
        return msg_header_add(m, "st", op->name, op->value, e);
    case MSG_EDIT_HEADER_INSERT:
        return msg_header_insert(m, "st", op->n, op->name, op->value, e);
    case MSG_EDIT_HEADER_CHANGE:
        return msg_header_change(m, "st", op->name, op->n, op->value, e);
    case MSG_EDIT_HEADER_DELETE:
        return msg_header_delete(m, "st", op->name, op->n, e);
    case MSG_EDIT_BODY_REPLACE:
        return msg_body_replace(m, "st", op->value, strlen(op->value), e);
    case MSG_EDIT_SENDER:
        return msg_sender_change(m, "st", op->value, NULL, e);
    case MSG_EDIT_RCPT_ADD:
        return msg_rcpt_add(m, "st", op->value, NULL, e);
    case MSG_EDIT_RCPT_DELETE:
        return msg_rcpt_delete(m, "st", op->value, e);
    }
    return -1;
}

static void
test_edits(void **state)
{
    /* jvalue: the journal's value for each op, as stored (leading space,
     * folds in the message's line end); NULL for a delete. */
    static const struct {
        const char *name;
        const char *in;
        struct op ops[MAX_OPS];
        const char *jvalue[MAX_OPS];
        size_t nops;
        const char *want;
    } cases[] = {
        {"indexes as of each edit",
         "X-A: 1\nX-B: b\nX-A: 2\nX-A: 3\n\nbody\n",
         {{MSG_EDIT_HEADER_CHANGE, "X-A", 2, "two"},
          {MSG_EDIT_HEADER_DELETE, "x-a", 1, NULL},
          {MSG_EDIT_HEADER_ADD, "X-C", 0, "c"},
          {MSG_EDIT_HEADER_INSERT, "Received", 0, "by x"},
          {MSG_EDIT_HEADER_DELETE, "X-A", 2, NULL}},
         {" two", NULL, " c", " by x", NULL},
         5,
         "Received: by x\nX-B: b\nX-A: two\nX-C: c\n\nbody\n"},
        {"crlf message gets crlf folds",
         "From: a\r\n\r\nbody\r\n",
         {{MSG_EDIT_HEADER_ADD, "X-F", 0, "a\n b"},
          {MSG_EDIT_HEADER_ADD, "X-G", 0, "c\r\n\td"}},
         {" a\r\n b", " c\r\n\td"},
         2,
         "From: a\r\nX-F: a\r\n b\r\nX-G: c\r\n\td\r\n\r\nbody\r\n"},
        {"lf message gets lf folds",
         "From: a\n\nbody\n",
         {{MSG_EDIT_HEADER_ADD, "X-F", 0, "a\r\n b"},
          {MSG_EDIT_HEADER_INSERT, "X-G", 1, "\tc"}},
         {" a\n b", "\tc"},
         2,
         "From: a\nX-G:\tc\nX-F: a\n b\n\nbody\n"},
        {"leading white space kept, fold at the start kept",
         "A: 1\n\n",
         {{MSG_EDIT_HEADER_ADD, "X-S", 0, " spaced"},
          {MSG_EDIT_HEADER_ADD, "X-E", 0, ""},
          {MSG_EDIT_HEADER_ADD, "X-L", 0, "\n x"}},
         {" spaced", " ", "\n x"},
         3,
         "A: 1\nX-S: spaced\nX-E: \nX-L:\n x\n\n"},
        {"change keeps the spelling of the name",
         "subject: old\n\nb\n",
         {{MSG_EDIT_HEADER_CHANGE, "SUBJECT", 1, "new"}},
         {" new"},
         1,
         "subject: new\n\nb\n"},
        {"change of a folded field",
         "Subject: a\n b\nTo: t\n\n",
         {{MSG_EDIT_HEADER_CHANGE, "Subject", 1, "c"}},
         {" c"},
         1,
         "Subject: c\nTo: t\n\n"},
        {"insert at the end",
         "A: 1\nB: 2\n\n",
         {{MSG_EDIT_HEADER_INSERT, "C", 2, "3"}},
         {" 3"},
         1,
         "A: 1\nB: 2\nC: 3\n\n"},
        {"delete every field",
         "A: 1\n\nbody",
         {{MSG_EDIT_HEADER_DELETE, "A", 1, NULL}},
         {NULL},
         1,
         "\nbody"},
        {"last field without line end gets one",
         "A: 1",
         {{MSG_EDIT_HEADER_ADD, "B", 0, "2"}},
         {" 2"},
         1,
         "A: 1\r\nB: 2\r\n"},
        {"added field before a body without empty line",
         "A: 1\nbody line\n",
         {{MSG_EDIT_HEADER_ADD, "B", 0, "2"}},
         {" 2"},
         1,
         "A: 1\nB: 2\n\nbody line\n"},
        {"body replace",
         "A: 1\n\nold\n",
         {{MSG_EDIT_BODY_REPLACE, NULL, 0, "new\nbody\n"}},
         {"new\nbody\n"},
         1,
         "A: 1\n\nnew\nbody\n"},
        {"body replace without a body",
         "A: 1\n",
         {{MSG_EDIT_BODY_REPLACE, NULL, 0, "x\n"}},
         {"x\n"},
         1,
         "A: 1\n\nx\n"},
        {"body replace after a header without line end",
         "A: 1",
         {{MSG_EDIT_BODY_REPLACE, NULL, 0, "x\r\n"}},
         {"x\r\n"},
         1,
         "A: 1\r\n\r\nx\r\n"},
        {"NUL ends the value: nothing after it is written",
         "A: 1\n\n",
         {{MSG_EDIT_HEADER_ADD, "X", 0, "a\0\nInjected: yes"}},
         {" a"},
         1,
         "A: 1\nX: a\n\n"},
    };
    size_t i, j;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct msg *m = parse(cases[i].name, cases[i].in, &no_limits);
        const struct msg_edit *ed;
        struct err e;
        char *out;
        char label[160];

        for (j = 0; j < cases[i].nops; j++) {
            snprintf(label, sizeof(label), "%s: op %zu", cases[i].name, j);
            if (apply(m, &cases[i].ops[j], &e) < 0)
                unit_fail(label, "got error \"%s\", want success", e.text);
        }
        out = written(cases[i].name, m);
        text_eq(cases[i].name, out, cases[i].want);
        free(out);

        unit_int_eq(cases[i].name, msg_journal(m, &ed), cases[i].nops);
        for (j = 0; j < cases[i].nops; j++) {
            const struct op *op = &cases[i].ops[j];

            snprintf(label, sizeof(label), "%s: journal %zu", cases[i].name,
                     j);
            unit_str_eq(label, msg_edit_kind_name(ed[j].kind),
                        msg_edit_kind_name(op->kind));
            unit_str_eq(label, ed[j].name, op->name);
            unit_str_eq(label, ed[j].stage, "st");
            unit_int_eq(label, ed[j].index,
                        op->kind == MSG_EDIT_HEADER_CHANGE ||
                                op->kind == MSG_EDIT_HEADER_DELETE
                            ? op->n
                            : 0);
            unit_int_eq(label, ed[j].position,
                        op->kind == MSG_EDIT_HEADER_INSERT ? op->n : 0);
            if (cases[i].jvalue[j] == NULL) {
                unit_str_eq(label, ed[j].value, NULL);
            } else {
                char g[256], w[256];

                if (ed[j].value == NULL ||
                    ed[j].len != strlen(cases[i].jvalue[j]) ||
                    memcmp(ed[j].value, cases[i].jvalue[j], ed[j].len) != 0)
                    unit_fail(label, "value: got \"%s\", want \"%s\"",
                              show(ed[j].value, g, sizeof(g)),
                              show(cases[i].jvalue[j], w, sizeof(w)));
            }
        }
        msg_free(m);
    }
}

/* A message changed with a header edit reads back through the getters. */
static void
test_edit_then_read(void **state)
{
    struct msg *m = parse("read back", "A: 1\nB: 2\n\n", &no_limits);
    struct err e;

    (void)state;
    assert_int_equal(msg_header_insert(m, "st", 1, "C", "3", &e), 0);
    unit_int_eq("count", msg_header_count(m), 3);
    unit_str_eq("get C", msg_header_get(m, "c", 1), " 3");
    unit_str_eq("get B", msg_header_get(m, "B", 1), " 2");
    assert_int_equal(msg_header_change(m, "st", "B", 1, "two", &e), 0);
    unit_str_eq("get B changed", msg_header_get(m, "B", 1), " two");
    msg_free(m);
}

static void
test_edit_refused(void **state)
{
    static const char in[] = "X-A: 1\nX-B: b\nX-A: 2\n\nbody\n";
    static const struct {
        const char *name;
        struct op op;
        size_t line_length;
        enum err_code code;
    } cases[] = {
        {"bare CR", {MSG_EDIT_HEADER_ADD, "X", 0, "a\rb"}, 0, ERR_INPUT},
        {"trailing CR", {MSG_EDIT_HEADER_ADD, "X", 0, "a\r"}, 0, ERR_INPUT},
        {"bare LF", {MSG_EDIT_HEADER_ADD, "X", 0, "a\nb"}, 0, ERR_INPUT},
        {"CRLF not folding",
         {MSG_EDIT_HEADER_ADD, "X", 0, "a\r\nY: b"},
         0,
         ERR_INPUT},
        {"trailing LF", {MSG_EDIT_HEADER_ADD, "X", 0, "a\n"}, 0, ERR_INPUT},
        {"empty line in value",
         {MSG_EDIT_HEADER_ADD, "X", 0, "a\n\nb"},
         0,
         ERR_INPUT},
        {"white space only line",
         {MSG_EDIT_HEADER_ADD, "X", 0, "a\n \n b"},
         0,
         ERR_INPUT},
        {"white space only last line",
         {MSG_EDIT_HEADER_ADD, "X", 0, "a\n\t"},
         0,
         ERR_INPUT},
        {"change to bare LF",
         {MSG_EDIT_HEADER_CHANGE, "X-A", 1, "a\nb"},
         0,
         ERR_INPUT},
        {"insert with bare CR",
         {MSG_EDIT_HEADER_INSERT, "X", 0, "\r"},
         0,
         ERR_INPUT},
        {"no value", {MSG_EDIT_HEADER_ADD, "X", 0, NULL}, 0, ERR_INPUT},
        {"empty name", {MSG_EDIT_HEADER_ADD, "", 0, "v"}, 0, ERR_INPUT},
        {"no name", {MSG_EDIT_HEADER_ADD, NULL, 0, "v"}, 0, ERR_INPUT},
        {"name with space",
         {MSG_EDIT_HEADER_ADD, "X Y", 0, "v"},
         0,
         ERR_INPUT},
        {"name with colon",
         {MSG_EDIT_HEADER_ADD, "X:Y", 0, "v"},
         0,
         ERR_INPUT},
        {"name with LF", {MSG_EDIT_HEADER_ADD, "X\nY", 0, "v"}, 0, ERR_INPUT},
        {"name 8-bit",
         {MSG_EDIT_HEADER_ADD, "X-\xc3\xa9", 0, "v"},
         0,
         ERR_INPUT},
        {"change index 0",
         {MSG_EDIT_HEADER_CHANGE, "X-A", 0, "v"},
         0,
         ERR_INPUT},
        {"change index past the end",
         {MSG_EDIT_HEADER_CHANGE, "X-A", 3, "v"},
         0,
         ERR_INPUT},
        {"change missing name",
         {MSG_EDIT_HEADER_CHANGE, "X-C", 1, "v"},
         0,
         ERR_INPUT},
        {"delete index past the end",
         {MSG_EDIT_HEADER_DELETE, "X-B", 2, NULL},
         0,
         ERR_INPUT},
        {"delete index 0",
         {MSG_EDIT_HEADER_DELETE, "X-B", 0, NULL},
         0,
         ERR_INPUT},
        {"insert past the end",
         {MSG_EDIT_HEADER_INSERT, "X", 4, "v"},
         0,
         ERR_INPUT},
        {"line too long",
         {MSG_EDIT_HEADER_ADD, "X-Long", 0, "0123456789abc"},
         20,
         ERR_LIMIT},
        {"folded line too long",
         {MSG_EDIT_HEADER_ADD, "X", 0, "a\n 0123456789012345678901"},
         20,
         ERR_LIMIT},
        {"delete absent recipient",
         {MSG_EDIT_RCPT_DELETE, NULL, 0, "nobody@example.com"},
         0,
         ERR_INPUT},
        {"delete recipient, local part differs in case",
         {MSG_EDIT_RCPT_DELETE, NULL, 0, "Bob@example.com"},
         0,
         ERR_INPUT},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct msg_limits lim = no_limits;
        struct msg *m;
        struct err e;
        char *out;

        lim.line_length = cases[i].line_length;
        m = parse(cases[i].name, in, &lim);
        assert_int_equal(msg_env_rcpt(m, "bob@example.com", NULL, &e), 0);
        err_clear(&e);
        if (apply(m, &cases[i].op, &e) == 0)
            unit_fail(cases[i].name, "got success, want %s",
                      err_code_name(cases[i].code));
        unit_str_eq(cases[i].name, err_code_name(e.code),
                    err_code_name(cases[i].code));
        if (e.text[0] == '\0')
            unit_fail(cases[i].name, "error without text");
        out = written(cases[i].name, m);
        text_eq(cases[i].name, out, in);
        free(out);
        unit_int_eq(cases[i].name, msg_journal(m, NULL), 0);
        unit_int_eq(cases[i].name, msg_env(m)->nrcpts, 1);
        msg_free(m);
    }
}

/* A line exactly at line_length is allowed: "X-Long: " + 12 = 20. */
static void
test_edit_line_at_limit(void **state)
{
    struct msg_limits lim = no_limits;
    struct msg *m;
    struct err e;

    (void)state;
    lim.line_length = 20;
    m = parse("at limit", "A: 1\n\n", &lim);
    if (msg_header_add(m, "st", "X-Long", "0123456789ab", &e) < 0)
        unit_fail("at limit", "got error \"%s\", want success", e.text);
    msg_free(m);
}

/* ------------------------------------------------------------- limits */

static void
test_limits(void **state)
{
    static const struct {
        const char *name;
        const char *in;
        size_t message_size;
        size_t header_count;
        enum err_code code;
        const char *text;
    } cases[] = {
        {"size over", "A: 1\n\n01234", 10, 0, ERR_LIMIT,
         "message size 11 exceeds message_size_limit 10"},
        {"size at limit", "A: 1\n\n0123", 10, 0, ERR_NONE, NULL},
        {"count over", "A: 1\nB: 2\nC: 3\n\n", 0, 2, ERR_LIMIT,
         "header_limit 2"},
        {"count at limit", "A: 1\nB: 2\n\n", 0, 2, ERR_NONE, NULL},
        {"continuations do not count", "A: 1\n 2\n 3\nB: 2\n\n", 0, 2,
         ERR_NONE, NULL},
        {"body lines do not count", "A: 1\nB: 2\n\nC: 3\nD: 4\n", 0, 2,
         ERR_NONE, NULL},
        {"0 means no limit", "A: 1\nB: 2\nC: 3\n\nbody", 0, 0, ERR_NONE, NULL},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct msg_limits lim = no_limits;
        struct msg *m;
        struct err e;
        int rc;

        lim.message_size = cases[i].message_size;
        lim.header_count = cases[i].header_count;
        assert_non_null(m = msg_new(&lim, MSG_FE_SMTP, &e));
        err_clear(&e);
        rc = msg_parse(m, cases[i].in, strlen(cases[i].in), &e);
        if (cases[i].code == ERR_NONE) {
            if (rc < 0)
                unit_fail(cases[i].name, "got error \"%s\", want success",
                          e.text);
        } else {
            if (rc == 0)
                unit_fail(cases[i].name, "got success, want an error");
            unit_str_eq(cases[i].name, err_code_name(e.code),
                        err_code_name(cases[i].code));
            unit_has(cases[i].name, e.text, cases[i].text);
            unit_int_eq(cases[i].name, msg_header_count(m), 0);
            unit_int_eq(cases[i].name, msg_size(m), 0);
        }
        msg_free(m);
    }
}

/* ------------------------------------------------------------ envelope */

static void
test_envelope(void **state)
{
    struct msg *m;
    struct err e;
    const struct msg_env *env;
    const struct msg_edit *ed;
    char qid[] = "6A0F3C21B7", rcpt[] = "bob@example.net";

    (void)state;
    assert_non_null(m = msg_new(&no_limits, MSG_FE_MILTER, &e));
    unit_str_eq("qid unset", msg_qid(m), "NOQUEUE");
    assert_int_equal(msg_env_set(m, qid, "192.0.2.1", "client.example",
                                 "helo.example", 1, "alice", &e),
                     0);
    assert_int_equal(msg_env_sender(m, "alice@example.com", "SIZE=100", &e),
                     0);
    assert_int_equal(msg_env_rcpt(m, rcpt, "NOTIFY=NEVER", &e), 0);
    assert_int_equal(msg_env_rcpt(m, "carol@Example.NET", NULL, &e), 0);
    /* The setters copied: changing the caller's strings changes nothing. */
    qid[0] = 'X';
    rcpt[0] = 'X';

    env = msg_env(m);
    unit_str_eq("qid", msg_qid(m), "6A0F3C21B7");
    unit_str_eq("client", env->client_addr, "192.0.2.1");
    unit_str_eq("client name", env->client_name, "client.example");
    unit_str_eq("helo", env->helo, "helo.example");
    unit_int_eq("tls", env->tls, 1);
    unit_str_eq("auth", env->auth_user, "alice");
    unit_str_eq("sender", env->sender, "alice@example.com");
    unit_str_eq("sender params", env->sender_params, "SIZE=100");
    unit_int_eq("nrcpts", env->nrcpts, 2);
    unit_str_eq("rcpt 0", env->rcpts[0].addr, "bob@example.net");
    unit_str_eq("rcpt 0 params", env->rcpts[0].params, "NOTIFY=NEVER");
    unit_str_eq("rcpt 1 params", env->rcpts[1].params, NULL);
    unit_int_eq("frontend", env->frontend, MSG_FE_MILTER);
    unit_int_eq("not internal until the front end says so", env->internal, 0);
    unit_str_eq("no daemon name yet", env->daemon_name, NULL);
    {
        char daemon[] = "ORIGINATING";

        assert_int_equal(msg_env_origin(m, 5, daemon, &e), 0);
        daemon[0] = 'X';
        unit_int_eq("internal is 0 or 1", env->internal, 1);
        unit_str_eq("daemon name copied", env->daemon_name, "ORIGINATING");
        assert_int_equal(msg_env_origin(m, 0, NULL, &e), 0);
        unit_int_eq("internal reset", env->internal, 0);
        unit_str_eq("daemon name reset", env->daemon_name, NULL);
        assert_int_equal(msg_env_origin(m, 1, "smtpd", &e), 0);
    }
    unit_int_eq("setters do not journal", msg_journal(m, NULL), 0);

    /* Edits change the envelope and the journal. */
    assert_int_equal(msg_sender_change(m, "rw", "", "BODY=8BITMIME", &e), 0);
    assert_int_equal(msg_rcpt_add(m, "rw", "dave@example.org", "ORCPT=x", &e),
                     0);
    if (msg_rcpt_delete(m, "rw", "carol@example.net", &e) < 0)
        unit_fail("rcpt delete, domain case", "got \"%s\"", e.text);
    env = msg_env(m);
    unit_str_eq("null sender", env->sender, "");
    unit_str_eq("sender params changed", env->sender_params, "BODY=8BITMIME");
    unit_int_eq("nrcpts after edits", env->nrcpts, 2);
    unit_str_eq("rcpt 0 after edits", env->rcpts[0].addr, "bob@example.net");
    unit_str_eq("rcpt 1 after edits", env->rcpts[1].addr, "dave@example.org");
    unit_str_eq("rcpt 1 params", env->rcpts[1].params, "ORCPT=x");

    unit_int_eq("journal", msg_journal(m, &ed), 3);
    unit_str_eq("j0 kind", msg_edit_kind_name(ed[0].kind), "sender change");
    unit_str_eq("j0 value", ed[0].value, "");
    unit_str_eq("j0 params", ed[0].params, "BODY=8BITMIME");
    unit_str_eq("j0 stage", ed[0].stage, "rw");
    unit_str_eq("j1 kind", msg_edit_kind_name(ed[1].kind), "recipient add");
    unit_str_eq("j1 value", ed[1].value, "dave@example.org");
    unit_str_eq("j1 params", ed[1].params, "ORCPT=x");
    unit_str_eq("j2 kind", msg_edit_kind_name(ed[2].kind), "recipient delete");
    unit_str_eq("j2 value as it was", ed[2].value, "carol@Example.NET");
    msg_free(m);
}

/* Every recipient with the address goes, in one journal entry. */
static void
test_rcpt_delete_all(void **state)
{
    struct msg *m;
    struct err e;

    (void)state;
    assert_non_null(m = msg_new(&no_limits, MSG_FE_SMTP, &e));
    assert_int_equal(msg_env_rcpt(m, "a@x.example", NULL, &e), 0);
    assert_int_equal(msg_env_rcpt(m, "b@x.example", NULL, &e), 0);
    assert_int_equal(msg_env_rcpt(m, "a@X.example", NULL, &e), 0);
    assert_int_equal(msg_rcpt_delete(m, "st", "a@x.example", &e), 0);
    unit_int_eq("nrcpts", msg_env(m)->nrcpts, 1);
    unit_str_eq("left", msg_env(m)->rcpts[0].addr, "b@x.example");
    unit_int_eq("journal", msg_journal(m, NULL), 1);
    msg_free(m);
}

/* --------------------------------------------------------------- marks */

#define RB_OPS 10
#define RB_RCPTS 6

/* env_text - the envelope as one line: sender, parameters, recipients in
 * order with theirs. */
static const char *
env_text(const struct msg *m, char *out, size_t n)
{
    const struct msg_env *env = msg_env(m);
    size_t used, i;

    used = (size_t)snprintf(out, n, "<%s> %s", env->sender ? env->sender : "-",
                            env->sender_params ? env->sender_params : "-");
    for (i = 0; i < env->nrcpts && used < n; i++)
        used += (size_t)snprintf(
            out + used, n - used, " <%s> %s", env->rcpts[i].addr,
            env->rcpts[i].params ? env->rcpts[i].params : "-");
    return out;
}

/* journal_text - kind, name, index, position and value of each entry. */
static const char *
journal_text(const struct msg *m, char *out, size_t n)
{
    const struct msg_edit *ed;
    size_t count = msg_journal(m, &ed), used = 0, i;

    out[0] = '\0';
    for (i = 0; i < count && used < n; i++)
        used += (size_t)snprintf(
            out + used, n - used, "%s %s %zu %zu [%.*s] %s|",
            msg_edit_kind_name(ed[i].kind), ed[i].name ? ed[i].name : "-",
            ed[i].index, ed[i].position, ed[i].value ? (int)ed[i].len : 0,
            ed[i].value ? ed[i].value : "", ed[i].params ? ed[i].params : "-");
    return out;
}

/* apply_all - the ops in order; each must succeed. */
static void
apply_all(const char *name, struct msg *m, const struct op *ops, size_t n)
{
    char label[160];
    struct err e;
    size_t i;

    for (i = 0; i < n; i++) {
        snprintf(label, sizeof(label), "%s: op %zu", name, i);
        err_clear(&e);
        if (apply(m, &ops[i], &e) < 0)
            unit_fail(label, "got error \"%s\", want success", e.text);
    }
}

/* After a rollback the message is written, journalled and addressed as it
 * was at the mark; a second rollback changes nothing; the mark stays open
 * for more edits and rollbacks; after msg_unmark a new mark works and its
 * edits can be kept. Run under ASan, nothing leaks or dangles. */
static void
test_rollback(void **state)
{
    static const struct {
        const char *name;
        const char *in;
        const char *rcpts[RB_RCPTS]; /* "addr" or "addr PARAMS" */
        struct op pre[RB_OPS];       /* kept: made before the mark */
        size_t npre;
        struct op post[RB_OPS]; /* undone: made after the mark */
        size_t npost;
        const char *want_post; /* the message with the post edits */
        const char *want_env;  /* and its envelope, when not NULL */
    } cases[] = {
        {"nothing to undo",
         "From: a\n\nbody\n",
         {"r@x.example"},
         {{0}},
         0,
         {{0}},
         0,
         "From: a\n\nbody\n",
         NULL},
        {"header add",
         "From: a\nTo: b\n\nbody\n",
         {"r@x.example"},
         {{0}},
         0,
         {{MSG_EDIT_HEADER_ADD, "X-A", 0, "1"}},
         1,
         "From: a\nTo: b\nX-A: 1\n\nbody\n",
         NULL},
        {"header insert first, in the middle and last",
         "From: a\r\nTo: b\r\n\r\nbody\r\n",
         {"r@x.example"},
         {{0}},
         0,
         {{MSG_EDIT_HEADER_INSERT, "X-0", 0, "first"},
          {MSG_EDIT_HEADER_INSERT, "X-1", 2, "mid\n\tfolded"},
          {MSG_EDIT_HEADER_INSERT, "X-2", 4, "last"}},
         3,
         "X-0: first\r\nFrom: a\r\nX-1: mid\r\n\tfolded\r\nTo: b\r\n"
         "X-2: last\r\n\r\nbody\r\n",
         NULL},
        {"header change of a parsed folded field, twice",
         "Subject: a\n b\nTo: t\n\nbody\n",
         {"r@x.example"},
         {{0}},
         0,
         {{MSG_EDIT_HEADER_CHANGE, "Subject", 1, "one"},
          {MSG_EDIT_HEADER_CHANGE, "subject", 1, "two"}},
         2,
         "Subject: two\nTo: t\n\nbody\n",
         NULL},
        {"change of a field whose value an earlier edit made",
         "From: a\n\nbody\n",
         {"r@x.example"},
         {{MSG_EDIT_HEADER_ADD, "X-P", 0, "pre"},
          {MSG_EDIT_HEADER_CHANGE, "X-P", 1, "pre changed"}},
         2,
         {{MSG_EDIT_HEADER_CHANGE, "X-P", 1, "post"},
          {MSG_EDIT_HEADER_CHANGE, "X-P", 1, "post again"}},
         2,
         "From: a\nX-P: post again\n\nbody\n",
         NULL},
        {"delete parsed fields and one an earlier edit made",
         "A: 1\nB: 2\nA: 3\n\nbody\n",
         {"r@x.example"},
         {{MSG_EDIT_HEADER_INSERT, "X-P", 1, "pre"}},
         1,
         {{MSG_EDIT_HEADER_DELETE, "A", 2, NULL},
          {MSG_EDIT_HEADER_DELETE, "X-P", 1, NULL},
          {MSG_EDIT_HEADER_DELETE, "A", 1, NULL}},
         3,
         "B: 2\n\nbody\n",
         NULL},
        {"delete every field, then add",
         "A: 1\nB: 2\n\nbody",
         {"r@x.example"},
         {{0}},
         0,
         {{MSG_EDIT_HEADER_DELETE, "A", 1, NULL},
          {MSG_EDIT_HEADER_DELETE, "B", 1, NULL},
          {MSG_EDIT_HEADER_ADD, "C", 0, "3"}},
         3,
         "C: 3\n\nbody",
         NULL},
        {"a field added, deleted, inserted where it was",
         "A: 1\nB: 2\n\n",
         {"r@x.example"},
         {{0}},
         0,
         {{MSG_EDIT_HEADER_ADD, "X", 0, "x"},
          {MSG_EDIT_HEADER_DELETE, "B", 1, NULL},
          {MSG_EDIT_HEADER_INSERT, "B", 1, "two"},
          {MSG_EDIT_HEADER_CHANGE, "A", 1, "one"}},
         4,
         "A: one\nB: two\nX: x\n\n",
         NULL},
        {"body replace twice after one before the mark",
         "From: a\n\nold body\n",
         {"r@x.example"},
         {{MSG_EDIT_BODY_REPLACE, NULL, 0, "pre body\n"}},
         1,
         {{MSG_EDIT_BODY_REPLACE, NULL, 0, "first\n"},
          {MSG_EDIT_BODY_REPLACE, NULL, 0, "second\n"}},
         2,
         "From: a\n\nsecond\n",
         NULL},
        {"body re-encoded without its new label (the half-done set)",
         "Content-Transfer-Encoding: 8bit\n"
         "Content-Type: text/plain; charset=utf-8\n\ncaf\xc3\xa9\n",
         {"r@x.example"},
         {{0}},
         0,
         {{MSG_EDIT_BODY_REPLACE, NULL, 0, "caf=C3=A9\n"}},
         1,
         "Content-Transfer-Encoding: 8bit\n"
         "Content-Type: text/plain; charset=utf-8\n\ncaf=C3=A9\n",
         NULL},
        {"a header without line end and no body",
         "A: 1",
         {"r@x.example"},
         {{0}},
         0,
         {{MSG_EDIT_HEADER_ADD, "B", 0, "2"},
          {MSG_EDIT_BODY_REPLACE, NULL, 0, "x\n"}},
         2,
         "A: 1\r\nB: 2\r\n\r\nx\n",
         NULL},
        {"a body without the empty line gets it back only with the edit",
         "A: 1\nbody line\n",
         {"r@x.example"},
         {{0}},
         0,
         {{MSG_EDIT_HEADER_ADD, "B", 0, "2"}},
         1,
         "A: 1\nB: 2\n\nbody line\n",
         NULL},
        {"sender change, twice, parameters back",
         "From: a\n\n",
         {"r@x.example"},
         {{0}},
         0,
         {{MSG_EDIT_SENDER, NULL, 0, "new@y.example"},
          {MSG_EDIT_SENDER, NULL, 0, ""}},
         2,
         "From: a\n\n",
         "<> - <r@x.example> -"},
        {"recipients deleted come back in their places",
         "From: a\n\n",
         {"a@x.example NOTIFY=NEVER", "b@x.example", "a@X.EXAMPLE ORCPT=x",
          "c@x.example", "a@x.example", NULL},
         {{MSG_EDIT_RCPT_ADD, NULL, 0, "pre@x.example"}},
         1,
         {{MSG_EDIT_RCPT_DELETE, NULL, 0, "a@x.example"},
          {MSG_EDIT_RCPT_ADD, NULL, 0, "d@x.example"},
          {MSG_EDIT_RCPT_ADD, NULL, 0, "e@x.example"},
          {MSG_EDIT_RCPT_ADD, NULL, 0, "f@x.example"},
          {MSG_EDIT_RCPT_DELETE, NULL, 0, "pre@x.example"},
          {MSG_EDIT_RCPT_ADD, NULL, 0, "g@x.example"},
          {MSG_EDIT_RCPT_ADD, NULL, 0, "h@x.example"},
          {MSG_EDIT_RCPT_ADD, NULL, 0, "i@x.example"},
          {MSG_EDIT_RCPT_ADD, NULL, 0, "j@x.example"},
          {MSG_EDIT_RCPT_DELETE, NULL, 0, "b@x.example"}},
         10,
         "From: a\n\n",
         "<s@y.example> SIZE=100 <c@x.example> - <d@x.example> - "
         "<e@x.example> - <f@x.example> - <g@x.example> - <h@x.example> - "
         "<i@x.example> - <j@x.example> -"},
        {"a delete of two, then one add: the array keeps its room",
         "From: a\n\n",
         {"a@x.example", "b@x.example", "a@x.example", "c@x.example"},
         {{0}},
         0,
         {{MSG_EDIT_RCPT_DELETE, NULL, 0, "a@x.example"},
          {MSG_EDIT_RCPT_ADD, NULL, 0, "d@x.example"}},
         2,
         "From: a\n\n",
         "<s@y.example> SIZE=100 <b@x.example> - <c@x.example> - "
         "<d@x.example> -"},
        {"every kind of edit",
         "Received: by x\nFrom: a\nSubject: s\n\nbody\n",
         {"r@x.example", "s@x.example"},
         {{MSG_EDIT_HEADER_ADD, "X-Pre", 0, "kept"},
          {MSG_EDIT_SENDER, NULL, 0, "pre@y.example"}},
         2,
         {{MSG_EDIT_HEADER_INSERT, "DKIM-Signature", 0, "v=1;\n\tb=x"},
          {MSG_EDIT_HEADER_CHANGE, "Subject", 1, "[tag] s"},
          {MSG_EDIT_HEADER_DELETE, "Received", 1, NULL},
          {MSG_EDIT_BODY_REPLACE, NULL, 0, "new\n"},
          {MSG_EDIT_HEADER_CHANGE, "X-Pre", 1, "changed"},
          {MSG_EDIT_SENDER, NULL, 0, "post@y.example"},
          {MSG_EDIT_RCPT_DELETE, NULL, 0, "r@x.example"},
          {MSG_EDIT_RCPT_ADD, NULL, 0, "t@x.example"},
          {MSG_EDIT_HEADER_ADD, "X-Post", 0, "y"},
          {MSG_EDIT_BODY_REPLACE, NULL, 0, "newer\n"}},
         10,
         "DKIM-Signature: v=1;\n\tb=x\nFrom: a\nSubject: [tag] s\n"
         "X-Pre: changed\nX-Post: y\n\nnewer\n",
         "<post@y.example> - <s@x.example> - <t@x.example> -"},
    };
    size_t i, j;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *name = cases[i].name;
        struct msg *m = parse(name, cases[i].in, &no_limits);
        char env0[512], envn[512], jrn0[2048], jrnn[2048], label[160];
        char *out0, *out;
        struct msg_mark mark, again;
        size_t j0;
        struct err e;

        err_clear(&e);
        assert_int_equal(msg_env_sender(m, "s@y.example", "SIZE=100", &e), 0);
        for (j = 0; j < RB_RCPTS && cases[i].rcpts[j] != NULL; j++) {
            char addr[128], *sp;

            snprintf(addr, sizeof(addr), "%s", cases[i].rcpts[j]);
            if ((sp = strchr(addr, ' ')) != NULL)
                *sp++ = '\0';
            assert_int_equal(msg_env_rcpt(m, addr, sp, &e), 0);
        }
        apply_all(name, m, cases[i].pre, cases[i].npre);
        out0 = written(name, m);
        env_text(m, env0, sizeof(env0));
        journal_text(m, jrn0, sizeof(jrn0));
        j0 = msg_journal(m, NULL);

        msg_mark(m, &mark);
        apply_all(name, m, cases[i].post, cases[i].npost);
        out = written(name, m);
        snprintf(label, sizeof(label), "%s: edited", name);
        text_eq(label, out, cases[i].want_post);
        free(out);
        unit_int_eq(label, msg_journal(m, NULL), j0 + cases[i].npost);
        if (cases[i].want_env != NULL)
            unit_str_eq(label, env_text(m, envn, sizeof(envn)),
                        cases[i].want_env);

        for (j = 0; j < 2; j++) {
            snprintf(label, sizeof(label), "%s: rollback %zu", name, j + 1);
            unit_int_eq(label, msg_rollback(m, &mark),
                        j == 0 ? cases[i].npost : 0);
            out = written(label, m);
            text_eq(label, out, out0);
            free(out);
            unit_int_eq(label, msg_journal(m, NULL), j0);
            unit_str_eq(label, journal_text(m, jrnn, sizeof(jrnn)), jrn0);
            unit_str_eq(label, env_text(m, envn, sizeof(envn)), env0);
        }

        /* The mark is still open: edit and roll back again. */
        snprintf(label, sizeof(label), "%s: edit after rollback", name);
        apply_all(label, m, cases[i].post, cases[i].npost);
        unit_int_eq(label, msg_rollback(m, &mark), cases[i].npost);
        out = written(label, m);
        text_eq(label, out, out0);
        free(out);
        unit_str_eq(label, env_text(m, envn, sizeof(envn)), env0);
        msg_unmark(m, &mark);

        /* A new mark whose edits are kept. */
        snprintf(label, sizeof(label), "%s: mark after rollback", name);
        msg_mark(m, &again);
        apply_all(label, m, cases[i].post, cases[i].npost);
        msg_unmark(m, &again);
        out = written(label, m);
        text_eq(label, out, cases[i].want_post);
        free(out);
        unit_int_eq(label, msg_journal(m, NULL), j0 + cases[i].npost);
        if (cases[i].want_env != NULL)
            unit_str_eq(label, env_text(m, envn, sizeof(envn)),
                        cases[i].want_env);
        free(out0);
        msg_free(m);
    }
}

/* Marks nest: the inner rollback keeps the edits made before it, the
 * outer one takes back everything; freeing with a mark open leaks
 * nothing. */
static void
test_rollback_nested(void **state)
{
    struct msg *m = parse("nested", "A: 1\n\nbody\n", &no_limits);
    struct msg_mark outer, inner;
    struct err e;
    char *out;

    (void)state;
    msg_mark(m, &outer);
    assert_int_equal(msg_header_change(m, "st", "A", 1, "outer", &e), 0);
    msg_mark(m, &inner);
    assert_int_equal(msg_header_change(m, "st", "A", 1, "inner", &e), 0);
    assert_int_equal(msg_body_replace(m, "st", "x\n", 2, &e), 0);
    unit_int_eq("inner rollback", msg_rollback(m, &inner), 2);
    out = written("inner rollback", m);
    text_eq("inner rollback", out, "A: outer\n\nbody\n");
    free(out);
    msg_unmark(m, &inner);
    unit_int_eq("outer rollback", msg_rollback(m, &outer), 1);
    out = written("outer rollback", m);
    text_eq("outer rollback", out, "A: 1\n\nbody\n");
    free(out);
    msg_unmark(m, &outer);

    /* Open at msg_free, with records holding a field and a sender. */
    msg_mark(m, &outer);
    assert_int_equal(msg_header_change(m, "st", "A", 1, "one", &e), 0);
    assert_int_equal(msg_header_change(m, "st", "A", 1, "two", &e), 0);
    assert_int_equal(msg_sender_change(m, "st", "x@y.example", "P=1", &e), 0);
    assert_int_equal(msg_rcpt_add(m, "st", "r@y.example", NULL, &e), 0);
    assert_int_equal(msg_rcpt_delete(m, "st", "r@y.example", &e), 0);
    msg_free(m);
}

/* A refused edit under a mark leaves nothing to undo; the front end's
 * envelope setters are refused while a mark is open. */
static void
test_rollback_refused(void **state)
{
    struct msg *m = parse("refused", "A: 1\n\n", &no_limits);
    struct msg_mark mark;
    struct err e;

    (void)state;
    msg_mark(m, &mark);
    assert_int_equal(msg_header_add(m, "st", "B", "2", &e), 0);
    if (msg_header_change(m, "st", "C", 1, "x", &e) == 0)
        unit_fail("change of a missing field", "got success, want error");
    if (msg_rcpt_delete(m, "st", "nobody@x.example", &e) == 0)
        unit_fail("delete of a missing recipient", "got success, want error");
    if (msg_env_rcpt(m, "late@x.example", NULL, &e) == 0)
        unit_fail("msg_env_rcpt under a mark", "got success, want error");
    unit_has("msg_env_rcpt under a mark", e.text, "mark is open");
    if (msg_env_sender(m, "late@x.example", NULL, &e) == 0)
        unit_fail("msg_env_sender under a mark", "got success, want error");
    unit_int_eq("undone", msg_rollback(m, &mark), 1);
    unit_int_eq("header count", msg_header_count(m), 1);
    unit_int_eq("recipients", msg_env(m)->nrcpts, 0);
    msg_unmark(m, &mark);
    if (msg_env_rcpt(m, "late@x.example", NULL, &e) < 0)
        unit_fail("msg_env_rcpt after the mark", "got \"%s\"", e.text);
    msg_free(m);
}

/* test_parse_after_edits - msg_parse() refuses a message that was edited
 * before it was parsed, even when the edits left no field (it would
 * otherwise drop the edited field array: the sanitizer build watches). */
static void
test_parse_after_edits(void **state)
{
    struct msg *m;
    struct err e;

    (void)state;
    assert_non_null(m = msg_new(&no_limits, MSG_FE_SMTP, &e));
    assert_int_equal(msg_header_add(m, "st", "A", "1", &e), 0);
    assert_int_equal(msg_header_delete(m, "st", "A", 1, &e), 0);
    unit_int_eq("fields left", msg_header_count(m), 0);
    if (msg_parse(m, "B: 2\n\nbody\n", 12, &e) == 0)
        unit_fail("parse after edits", "got success, want error");
    unit_int_eq("error code", e.code, ERR_INTERNAL);
    msg_free(m);
}

static void
test_kind_names(void **state)
{
    static const struct {
        enum msg_edit_kind kind;
        const char *want;
    } cases[] = {
        {MSG_EDIT_HEADER_ADD, "header add"},
        {MSG_EDIT_HEADER_INSERT, "header insert"},
        {MSG_EDIT_HEADER_CHANGE, "header change"},
        {MSG_EDIT_HEADER_DELETE, "header delete"},
        {MSG_EDIT_BODY_REPLACE, "body replace"},
        {MSG_EDIT_SENDER, "sender change"},
        {MSG_EDIT_RCPT_ADD, "recipient add"},
        {MSG_EDIT_RCPT_DELETE, "recipient delete"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        unit_str_eq(cases[i].want, msg_edit_kind_name(cases[i].kind),
                    cases[i].want);
}

/* ---------------------------------------------------------------- MIME */

static void
test_mime_cache(void **state)
{
    struct msg *m =
        parse("mime", "From: a@example.com\nSubject: x\n\nbody\n", &no_limits);
    const struct mime *mm;
    GMimeObject *top;
    struct err e;
    char *text;

    (void)state;
    assert_non_null(mm = msg_mime(m, &e));
    top = GMIME_OBJECT(mime_message(mm));
    unit_str_eq("before the edit", g_mime_object_get_header(top, "X-Added"),
                NULL);
    assert_ptr_equal(msg_mime(m, &e), mm);

    assert_int_equal(msg_header_add(m, "st", "X-Added", "yes", &e), 0);
    assert_non_null(mm = msg_mime(m, &e));
    top = GMIME_OBJECT(mime_message(mm));
    unit_str_eq("after the edit", g_mime_object_get_header(top, "X-Added"),
                "yes");

    assert_int_equal(msg_body_replace(m, "st", "new body\n", 9, &e), 0);
    assert_non_null(mm = msg_mime(m, &e));
    text = g_mime_object_to_string(
        g_mime_message_get_mime_part(mime_message(mm)), NULL);
    unit_has("after the body replace", text, "new body");
    g_free(text);
    msg_free(m);
}

/* A rollback of a header edit drops the parse made after it. */
static void
test_rollback_mime(void **state)
{
    struct msg *m =
        parse("mime rollback", "From: a@example.com\n\nbody\n", &no_limits);
    const struct mime *mm;
    struct msg_mark mark;
    struct err e;

    (void)state;
    assert_non_null(msg_mime(m, &e));
    msg_mark(m, &mark);
    assert_int_equal(msg_header_add(m, "st", "X-Added", "yes", &e), 0);
    assert_non_null(mm = msg_mime(m, &e));
    unit_str_eq(
        "before the rollback",
        g_mime_object_get_header(GMIME_OBJECT(mime_message(mm)), "X-Added"),
        "yes");
    unit_int_eq("undone", msg_rollback(m, &mark), 1);
    msg_unmark(m, &mark);
    assert_non_null(mm = msg_mime(m, &e));
    unit_str_eq(
        "after the rollback",
        g_mime_object_get_header(GMIME_OBJECT(mime_message(mm)), "X-Added"),
        NULL);
    msg_free(m);
}

/* msg_adopt(), msg_flat(), msg_iov(), msg_mime() and msg_body_adopt()
 * use the octets they were given where they are: no copy of the message
 * while it is unedited, only of what changed after. */
static void
test_no_copy(void **state)
{
    static const char text[] =
        "From: a@example.com\r\nSubject: x\r\n\r\nbody line\r\n";
    size_t tlen = sizeof(text) - 1, len, n;
    struct msg *m;
    struct iovec v[16];
    struct msg_mark mark;
    const struct mime *mm;
    GMimeObject *part;
    GMimeDataWrapper *dw;
    GMimeStream *st;
    GByteArray *a;
    struct err e;
    char *raw, *body;
    const char *got;

    (void)state;
    assert_non_null(raw = malloc(tlen + 1));
    memcpy(raw, text, tlen);
    assert_non_null(m = msg_new(&no_limits, MSG_FE_SMTP, &e));
    assert_int_equal(msg_adopt(m, raw, tlen, &e), 0);
    unit_int_eq("header fields", msg_header_count(m), 2);
    assert_ptr_equal(msg_flat(m, &len, &e), raw);
    unit_int_eq("flat length", len, tlen);
    n = msg_iov(m, v, 16);
    unit_int_eq("pieces of an unedited message", n, 1);
    assert_ptr_equal(v[0].iov_base, raw);
    unit_int_eq("its length", v[0].iov_len, tlen);

    /* GMime reads the same octets: the part's content is a window on
     * the memory stream around raw. */
    assert_non_null(mm = msg_mime(m, &e));
    part = g_mime_message_get_mime_part(mime_message(mm));
    dw = g_mime_part_get_content(GMIME_PART(part));
    st = g_mime_data_wrapper_get_stream(dw);
    assert_non_null(st->super_stream);
    a = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(st->super_stream));
    assert_ptr_equal(a->data, raw);

    /* A header edit: one flat copy, and the pieces keep pointing into raw
     * for all that did not change. */
    msg_mark(m, &mark);
    assert_int_equal(msg_header_insert(m, "st", 0, "X-New", "1", &e), 0);
    got = msg_flat(m, &len, &e);
    assert_non_null(got);
    assert_ptr_not_equal(got, raw);
    n = msg_iov(m, v, 16);
    unit_int_eq("pieces after a field inserted", n, 5);
    assert_ptr_equal(v[4].iov_base, raw);
    unit_int_eq("the received octets in one piece", v[4].iov_len, tlen);

    /* The new body is the one given, not a copy. */
    assert_non_null(body = malloc(8));
    memcpy(body, "new\r\n", 5);
    assert_int_equal(msg_body_adopt(m, "st", body, 5, &e), 0);
    assert_ptr_equal(msg_body(m, &len), body);
    n = msg_iov(m, v, 16);
    assert_ptr_equal(v[n - 1].iov_base, body);
    free(written("after the body", m));

    /* Undone, the message is raw again. */
    unit_int_eq("undone", msg_rollback(m, &mark), 2);
    msg_unmark(m, &mark);
    assert_ptr_equal(msg_flat(m, &len, &e), raw);
    unit_int_eq("pieces after the rollback", msg_iov(m, v, 16), 1);
    msg_free(m);
}

/* msg_adopt() owns the block also when it refuses it (LeakSanitizer
 * would tell), and msg_body_adopt() the body. */
static void
test_adopt_refused(void **state)
{
    static const struct msg_limits small = {16, 0, 0, 0, 0};
    static const struct msg_limits one_field = {0, 1, 0, 0, 0};
    static const char text[] = "A: 1\r\nB: 2\r\n\r\nbody\r\n";
    struct msg *m;
    struct err e;
    char *raw;

    (void)state;
    assert_non_null(m = msg_new(&small, MSG_FE_SMTP, &e));
    assert_non_null(raw = malloc(sizeof(text)));
    memcpy(raw, text, sizeof(text));
    assert_int_equal(msg_adopt(m, raw, sizeof(text) - 1, &e), -1);
    unit_int_eq("over message_size", e.code, ERR_LIMIT);
    msg_free(m);

    assert_non_null(m = msg_new(&one_field, MSG_FE_SMTP, &e));
    assert_non_null(raw = malloc(sizeof(text)));
    memcpy(raw, text, sizeof(text));
    assert_int_equal(msg_adopt(m, raw, sizeof(text) - 1, &e), -1);
    unit_int_eq("over header_count", e.code, ERR_LIMIT);
    msg_free(m);

    m = parse("adopt body", "A: 1\n\nold\n", &no_limits);
    assert_int_equal(msg_body_adopt(m, "st", NULL, 0, &e), 0);
    assert_int_equal(msg_body_adopt(m, "st", NULL, 3, &e), -1);
    unit_int_eq("body without data", e.code, ERR_INTERNAL);
    msg_free(m);
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

/* msg_raw_field: a field of raw octets, before any struct msg */
static void
test_raw_field(void **state)
{
    static const struct {
        const char *data, *name, *want;
        int rc;
    } cases[] = {
        {"A: 1\r\nX-Stream: news\r\n\r\nbody", "X-Stream", "news", 1},
        {"x-stream:   news  \r\n\r\n", "X-STREAM", "news", 1},
        /* the parser's grammar: no blank before the colon, and the
         * header ends at a line that is not a field */
        {"X-Stream :news\n\n", "X-Stream", "", 0},
        {"A: 1\r\nnot a field\r\nX-Stream: x\r\n\r\n", "X-Stream", "", 0},
        {" folded: first\r\nX-Stream: x\r\n\r\n", "X-Stream", "", 0},
        {"X-Stream: a\nX-Other: b\n c\n\n", "X-Stream", "a", 1},
        {"X-Stream:\r\n  news\r\n\tdigest\r\nB: 2\r\n\r\n", "X-Stream",
         "news\tdigest", 1},
        {"X-Streams: no\r\nX-Stream: yes\r\n\r\n", "X-Stream", "yes", 1},
        {"X-Stream: one\r\nX-Stream: two\r\n\r\n", "X-Stream", "one", 1},
        {"A: 1\r\n\r\nX-Stream: body\r\n", "X-Stream", "", 0},
        {"X-Stream news\r\n\r\n", "X-Stream", "", 0},
        {"X-Stream:\r\n\r\n", "X-Stream", "", 1},
        {"X-Stream: 0123456789abcdef0123456789abcdef\r\n\r\n", "X-Stream",
         "0123456789abcdef0123456", -1},
        {"X-Stream: no end", "X-Stream", "no end", 1},
        {"", "X-Stream", "", 0},
    };
    char out[24];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = msg_raw_field(cases[i].data, strlen(cases[i].data),
                               cases[i].name, out, sizeof(out));

        if (rc != cases[i].rc || strcmp(out, cases[i].want) != 0)
            fail_msg("case %zu: got %d \"%s\", want %d \"%s\"", i, rc, out,
                     cases[i].rc, cases[i].want);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_nul_octets),
        cmocka_unit_test(test_parse_twice),
        cmocka_unit_test(test_write_file),
        cmocka_unit_test(test_write_limit),
        cmocka_unit_test(test_header_read),
        cmocka_unit_test(test_edits),
        cmocka_unit_test(test_edit_then_read),
        cmocka_unit_test(test_edit_refused),
        cmocka_unit_test(test_edit_line_at_limit),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_envelope),
        cmocka_unit_test(test_rcpt_delete_all),
        cmocka_unit_test(test_rollback),
        cmocka_unit_test(test_rollback_nested),
        cmocka_unit_test(test_rollback_refused),
        cmocka_unit_test(test_rollback_mime),
        cmocka_unit_test(test_parse_after_edits),
        cmocka_unit_test(test_kind_names),
        cmocka_unit_test(test_mime_cache),
        cmocka_unit_test(test_no_copy),
        cmocka_unit_test(test_adopt_refused),
        cmocka_unit_test(test_raw_field),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
