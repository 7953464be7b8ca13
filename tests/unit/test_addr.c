/*
 * test_addr - mailbox validity, paths and domains as RFC 5321 has them
 *
 * The tables are what a client can send in MAIL FROM and RCPT TO and what
 * a rewrite rule can produce: each case says whether relaychain accepts
 * the address and, when it does not, the reason a 501 reply would carry.
 * Percent hacks, bang paths and quoted '@' must come out as plain local
 * parts: the domain is always what follows the last unquoted '@'.
 */
#include "config.h"

#include "unit.h"

#include "util/addr.h"

/* Strings of a given length, built once per test. */
static char long_local[80], long_label[80], long_domain[300], long_addr[300];

static void
fill_long(void)
{
    size_t i;

    /* 65 octets of local part. */
    memset(long_local, 'a', 65);
    memcpy(long_local + 65, "@example.com", 13);
    /* a 64-octet label */
    memcpy(long_label, "u@", 2);
    memset(long_label + 2, 'b', 64);
    memcpy(long_label + 66, ".example", 9);
    /* 256 octets of domain in labels of 9 */
    memcpy(long_domain, "u@", 2);
    for (i = 0; i < 256; i++)
        long_domain[2 + i] = (i % 10 == 9) ? '.' : 'c';
    long_domain[2 + 256] = '\0';
    if (long_domain[2 + 255] == '.')
        long_domain[2 + 255] = 'c';
    /* 255 octets in all: 64 local + '@' + 190 domain */
    memset(long_addr, 'd', 64);
    long_addr[64] = '@';
    for (i = 0; i < 190; i++)
        long_addr[65 + i] = (i % 50 == 49) ? '.' : 'e';
    long_addr[65 + 190] = '\0';
}

struct valid_case {
    const char *name;
    const char *addr;
    int allow_null;
    int want;
    const char *why; /* for want == 0 */
};

static const struct valid_case valid_cases[] = {
    {"plain", "alice@example.com", 0, 1, NULL},
    {"dot-atom", "alice.b.smith@mail.example.com", 0, 1, NULL},
    {"atext specials", "a!#$%&'*+-/=?^_`{|}~z@example.com", 0, 1, NULL},
    {"percent hack is a local part", "user%other.example@relay.example", 0, 1,
     NULL},
    {"bang path is a local part", "host!user@relay.example", 0, 1, NULL},
    {"quoted local part", "\"john doe\"@example.com", 0, 1, NULL},
    {"quoted @ in local part", "\"a@b\"@example.com", 0, 1, NULL},
    {"quoted pair", "\"a\\\"b\"@example.com", 0, 1, NULL},
    {"quoted route syntax", "\"@a:b\"@example.com", 0, 1, NULL},
    {"single-label domain", "root@localhost", 0, 1, NULL},
    {"digits and hyphens", "u@mx-1.0example.com", 0, 1, NULL},
    {"UTF-8 local part", "jörg@example.com", 0, 1, NULL},
    {"UTF-8 domain", "user@bücher.example", 0, 1, NULL},
    {"CJK", "用户@例子.广告", 0, 1, NULL},
    {"IPv4 literal", "u@[192.0.2.1]", 0, 1, NULL},
    {"IPv6 literal", "u@[IPv6:2001:db8::1]", 0, 1, NULL},
    {"IPv6 tag any case", "u@[ipv6:::1]", 0, 1, NULL},
    {"null allowed", "", 1, 1, NULL},
    {"null refused", "", 0, 0, "empty address"},
    {"no domain", "postmaster", 0, 0, "missing @domain"},
    {"empty domain", "u@", 0, 0, "empty domain"},
    {"empty local part", "@example.com", 0, 0, "empty local part"},
    {"two @", "a@b@example.com", 0, 0, "bad character in domain"},
    {"leading dot", ".a@example.com", 0, 0, "misplaced dot in local part"},
    {"trailing dot", "a.@example.com", 0, 0, "misplaced dot in local part"},
    {"double dot", "a..b@example.com", 0, 0, "misplaced dot in local part"},
    {"space unquoted", "a b@example.com", 0, 0,
     "bad character in local part (quote it)"},
    {"comma", "a,b@example.com", 0, 0,
     "bad character in local part (quote it)"},
    {"angle bracket", "<a@example.com>", 0, 0,
     "bad character in local part (quote it)"},
    {"CR in local part", "a\rb@example.com", 0, 0,
     "control character in local part"},
    {"LF in domain", "a@exa\nmple.com", 0, 0, "control character in domain"},
    {"LF in quotes", "\"a\nb\"@example.com", 0, 0,
     "control character in local part"},
    {"TAB", "a\t@example.com", 0, 0, "control character in local part"},
    {"DEL", "a\x7f@example.com", 0, 0, "control character in local part"},
    {"quoted pair of LF", "\"a\\\nb\"@example.com", 0, 0,
     "bad quoted pair in local part"},
    {"unterminated quote", "\"abc@example.com", 0, 0,
     "unterminated quoted local part"},
    {"text after quote", "\"a\"b@example.com", 0, 0,
     "text after quoted local part"},
    {"quote inside atom", "a\"b\"@example.com", 0, 0,
     "bad character in local part (quote it)"},
    {"bad UTF-8 local", "a\xc3@example.com", 0, 0,
     "malformed UTF-8 in local part"},
    {"overlong UTF-8", "\xc0\xaf@example.com", 0, 0,
     "malformed UTF-8 in local part"},
    {"overlong 3-octet UTF-8", "\xe0\x80\xaf@example.com", 0, 0,
     "malformed UTF-8 in local part"},
    {"above U+10FFFF", "\xf4\x90\x80\x80@example.com", 0, 0,
     "malformed UTF-8 in local part"},
    {"surrogate", "\xed\xa0\x80@example.com", 0, 0,
     "malformed UTF-8 in local part"},
    {"bad UTF-8 domain", "u@ex\xffmple.com", 0, 0,
     "malformed UTF-8 in domain"},
    {"trailing dot in domain", "u@example.com.", 0, 0,
     "empty label in domain"},
    {"empty label", "u@example..com", 0, 0, "empty label in domain"},
    {"leading hyphen", "u@-example.com", 0, 0, "domain label starts with '-'"},
    {"trailing hyphen", "u@example-.com", 0, 0, "domain label ends with '-'"},
    {"trailing hyphen at end", "u@example.com-", 0, 0,
     "domain label ends with '-'"},
    {"underscore in domain", "u@ex_ample.com", 0, 0,
     "bad character in domain"},
    {"percent in domain", "u@a%b.example", 0, 0, "bad character in domain"},
    {"bad IPv4 literal", "u@[192.0.2.256]", 0, 0, "bad IPv4 address literal"},
    {"IPv4 leading zero", "u@[192.0.2.01]", 0, 0, "bad IPv4 address literal"},
    {"bad IPv6 literal", "u@[IPv6:2001:db8::g]", 0, 0,
     "bad IPv6 address literal"},
    {"IPv6 without tag", "u@[2001:db8::1]", 0, 0,
     "unsupported address literal tag"},
    {"unterminated literal", "u@[192.0.2.1", 0, 0,
     "unterminated address literal"},
    {"empty literal", "u@[]", 0, 0, "unterminated address literal"},
};

static void
test_is_valid(void **state)
{
    char why[128];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(valid_cases) / sizeof(valid_cases[0]); i++) {
        const struct valid_case *c = &valid_cases[i];

        why[0] = 'x';
        unit_int_eq(c->name,
                    addr_is_valid(c->addr, c->allow_null, why, sizeof(why)),
                    c->want);
        if (c->want == 0)
            unit_str_eq(c->name, why, c->why);
    }
}

static void
test_lengths(void **state)
{
    struct {
        const char *name;
        const char *addr;
        int want;
        const char *why;
    } cases[] = {
        {"65-octet local part", long_local, 0,
         "local part longer than 64 octets"},
        {"64-octet label", long_label, 0,
         "domain label longer than 63 octets"},
        {"256-octet domain", long_domain, 0, "address longer than 254 octets"},
        {"255 octets in all", long_addr, 0, "address longer than 254 octets"},
    };
    char why[128], ok[300];
    size_t i;

    (void)state;
    fill_long();
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unit_int_eq(cases[i].name,
                    addr_is_valid(cases[i].addr, 0, why, sizeof(why)),
                    cases[i].want);
        unit_str_eq(cases[i].name, why, cases[i].why);
    }

    /* One octet less of each is fine. */
    snprintf(ok, sizeof(ok), "%.64s@example.com", long_local);
    unit_int_eq("64-octet local part", addr_is_valid(ok, 0, why, sizeof(why)),
                1);
    snprintf(ok, sizeof(ok), "u@%.63s.example", long_label + 2);
    unit_int_eq("63-octet label", addr_is_valid(ok, 0, why, sizeof(why)), 1);
    snprintf(ok, sizeof(ok), "%.254s", long_addr);
    unit_int_eq("254 octets in all", addr_is_valid(ok, 0, why, sizeof(why)),
                1);
}

struct path_case {
    const char *name;
    const char *in;
    int want_rc;
    const char *want; /* mailbox, or the error text */
    size_t consumed;
};

static const struct path_case path_cases[] = {
    {"plain", "<alice@example.com>", 0, "alice@example.com", 19},
    {"params follow", "<alice@example.com> SIZE=100", 0, "alice@example.com",
     19},
    {"null path", "<>", 0, "", 2},
    {"null path with params", "<> BODY=8BITMIME", 0, "", 2},
    {"source route dropped", "<@relay.example:bob@example.org>", 0,
     "bob@example.org", 32},
    {"long source route dropped",
     "<@a.example,@[192.0.2.1],@c.example:bob@example.org>", 0,
     "bob@example.org", 52},
    {"quoted > in local part", "<\"a>b\"@example.com>", 0,
     "\"a>b\"@example.com", 19},
    {"quoted @ in local part", "<\"x@y\"@example.com>", 0,
     "\"x@y\"@example.com", 19},
    {"percent hack kept", "<user%host@relay.example>", 0,
     "user%host@relay.example", 25},
    {"bang path kept", "<host!user@relay.example>", 0,
     "host!user@relay.example", 25},
    {"no brackets", "alice@example.com", -1, "path must be enclosed in <>", 0},
    {"space before bracket", " <alice@example.com>", -1,
     "path must be enclosed in <>", 0},
    {"empty input", "", -1, "path must be enclosed in <>", 0},
    {"missing >", "<alice@example.com", -1, "missing > at end of path", 0},
    {"route without mailbox", "<@relay.example:>", -1,
     "source route without mailbox", 0},
    {"route without colon", "<@relay.example>", -1, "bad source route in path",
     0},
    {"bad route domain", "<@relay_example:bob@example.org>", -1,
     "bad source route in path: bad character in domain", 0},
    {"route then comma then junk", "<@a.example,b.example:c@example.org>", -1,
     "bad source route in path", 0},
    {"invalid mailbox", "<a b@example.com>", -1,
     "bad address syntax: bad character in local part (quote it)", 0},
    {"no domain", "<postmaster>", -1, "bad address syntax: missing @domain",
     0},
    {"CR in path", "<a\r@example.com>", -1, "control character in path", 0},
    {"LF after path start", "<a@example.com\n>", -1,
     "control character in path", 0},
};

static void
test_parse_path(void **state)
{
    size_t i, consumed;
    struct buf out;
    struct err e;
    int rc;

    (void)state;
    for (i = 0; i < sizeof(path_cases) / sizeof(path_cases[0]); i++) {
        const struct path_case *c = &path_cases[i];

        buf_init(&out, 512);
        err_clear(&e);
        consumed = 999;
        rc = addr_parse_path(c->in, strlen(c->in), &out, &consumed, &e);
        unit_int_eq(c->name, rc, c->want_rc);
        if (rc == 0) {
            unit_str_eq(c->name, buf_str(&out), c->want);
            unit_int_eq(c->name, consumed, c->consumed);
        } else {
            unit_str_eq(c->name, e.text, c->want);
            unit_int_eq(c->name, e.code, ERR_INPUT);
            unit_str_eq(c->name, buf_str(&out), "");
        }
        buf_fini(&out);
    }
}

static void
test_path_bounds(void **state)
{
    char path[400], nul[] = "<a\0b@example.com>";
    size_t consumed;
    struct buf out;
    struct err e;

    (void)state;
    fill_long();
    /* "<" + 254 + ">" is the longest path; the text after it is not read */
    snprintf(path, sizeof(path), "<%.254s>", long_addr);
    buf_init(&out, 512);
    unit_int_eq("256-octet path",
                addr_parse_path(path, strlen(path), &out, &consumed, &e), 0);
    unit_int_eq("256-octet path", consumed, 256);
    buf_reset(&out);
    snprintf(path, sizeof(path), "<@relay.example:%.254s>", long_addr);
    unit_int_eq("route makes it too long",
                addr_parse_path(path, strlen(path), &out, &consumed, &e), -1);
    unit_str_eq("route makes it too long", e.text,
                "path longer than 256 octets");
    /* A NUL inside the given length is refused, not taken as the end. */
    unit_int_eq("NUL in path",
                addr_parse_path(nul, sizeof(nul) - 1, &out, &consumed, &e),
                -1);
    unit_str_eq("NUL in path", e.text, "control character in path");
    /* The length bounds the scan even when the text goes on. */
    unit_int_eq("length bounds the scan",
                addr_parse_path("<a@example.com>", 8, &out, &consumed, &e),
                -1);
    unit_str_eq("length bounds the scan", e.text, "missing > at end of path");
    /* The caller's buffer limit holds. */
    buf_fini(&out);
    buf_init(&out, 4);
    unit_int_eq(
        "buffer limit",
        addr_parse_path("<alice@example.com>", 19, &out, &consumed, &e), -1);
    unit_int_eq("buffer limit", e.code, ERR_LIMIT);
    buf_fini(&out);
}

static void
test_domain(void **state)
{
    static const struct {
        const char *name;
        const char *addr;
        const char *want;
    } cases[] = {
        {"plain", "alice@example.com", "example.com"},
        {"quoted @", "\"a@b\"@example.com", "example.com"},
        {"quoted @ and escaped quote", "\"a\\\"@b\"@example.org",
         "example.org"},
        {"percent hack", "user%host.example@relay.example", "relay.example"},
        {"literal", "u@[192.0.2.1]", "[192.0.2.1]"},
        {"invalid", "a@b@c", NULL},
        {"no domain", "postmaster", NULL},
        {"null", "", NULL},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        unit_str_eq(cases[i].name, addr_domain(cases[i].addr), cases[i].want);
}

static void
test_domain_equal(void **state)
{
    static const struct {
        const char *a, *b;
        int want;
    } cases[] = {
        {"example.com", "EXAMPLE.com", 1},
        {"example.com", "example.com", 1},
        {"example.com", "example.org", 0},
        {"example.com", "example.com.", 0},
        {"bücher.example", "BÜCHER.example", 0}, /* only ASCII folds */
        {"", "", 1},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        unit_int_eq(cases[i].a, addr_domain_equal(cases[i].a, cases[i].b),
                    cases[i].want);
    unit_int_eq("NULL", addr_domain_equal(NULL, "x"), 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_is_valid),   cmocka_unit_test(test_lengths),
        cmocka_unit_test(test_parse_path), cmocka_unit_test(test_path_bounds),
        cmocka_unit_test(test_domain),     cmocka_unit_test(test_domain_equal),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
