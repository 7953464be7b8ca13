/*
 * test_match - client networks (cidr) and stage match conditions
 *
 * The cases are the ones an administrator writes in a chain.d file: which
 * messages a stage applies to, why it does not, and the exact
 * "path:line: key: reason" for a pattern or network that is malformed.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/cfg.h"
#include "util/cidr.h"
#include "msg/match.h"
#include "msg/msg.h"
#include "unit.h"

#define T_ITEMS_MAX 8

/* t_split - split a comma-separated literal into items (in buf). */
static size_t
t_split(const char *list, char *buf, size_t n, const char **items)
{
    size_t count = 0;
    char *p, *comma;

    snprintf(buf, n, "%s", list);
    for (p = buf; count < T_ITEMS_MAX; p = comma + 1) {
        items[count++] = p;
        if ((comma = strchr(p, ',')) == NULL)
            break;
        *comma = '\0';
    }
    return list[0] == '\0' ? 0 : count;
}

/* ------------------------------------------------------------ cidr */

static void
test_cidr_contains(void **state)
{
    static const struct {
        const char *name;
        const char *list;
        const char *addr;
        int want;
    } cases[] = {
        {"IPv4 inside /24", "192.0.2.0/24", "192.0.2.77", 1},
        {"IPv4 outside /24", "192.0.2.0/24", "192.0.3.1", 0},
        {"IPv4 /8", "10.0.0.0/8", "10.255.1.2", 1},
        {"IPv4 /0 holds all IPv4", "0.0.0.0/0", "203.0.113.9", 1},
        {"IPv4 /0 does not hold IPv6", "0.0.0.0/0", "2001:db8::1", 0},
        {"IPv4 /25 upper half", "192.0.2.128/25", "192.0.2.127", 0},
        {"IPv4 /25 upper half, inside", "192.0.2.128/25", "192.0.2.200", 1},
        {"IPv4 /31", "192.0.2.4/31", "192.0.2.5", 1},
        {"IPv4 /31 edge", "192.0.2.4/31", "192.0.2.6", 0},
        {"single IPv4 host", "192.0.2.1", "192.0.2.1", 1},
        {"single IPv4 host, other address", "192.0.2.1", "192.0.2.2", 0},
        {"host bits set mean the network", "192.0.2.99/24", "192.0.2.1", 1},
        {"second item matches", "10.0.0.0/8,192.0.2.0/24", "192.0.2.1", 1},
        {"IPv6 /32", "2001:db8::/32", "2001:db8:ffff::1", 1},
        {"IPv6 /32 outside", "2001:db8::/32", "2001:db9::1", 0},
        {"IPv6 in brackets", "[2001:db8::]/32", "2001:db8:1::5", 1},
        {"IPv6 host in brackets", "[::1]", "::1", 1},
        {"IPv6 /127 odd prefix", "2001:db8::/127", "2001:db8::1", 1},
        {"IPv6 /127 outside", "2001:db8::/127", "2001:db8::2", 0},
        {"IPv6 upper case client", "2001:db8::/32", "2001:DB8::A", 1},
        {"IPv6 list does not hold IPv4", "::/0", "192.0.2.1", 0},
        {"::/0 holds a mapped client", "::/0", "::ffff:192.0.2.1", 1},
        {"mapped client outside a wide IPv6 network", "2001:db8::/32",
         "::ffff:192.0.2.1", 0},
        {"mapped client matches IPv4 network", "192.0.2.0/24",
         "::ffff:192.0.2.10", 1},
        {"mapped client outside IPv4 network", "192.0.2.0/24",
         "::ffff:198.51.100.1", 0},
        {"mapped network matches IPv4 client", "::ffff:192.0.2.0/120",
         "192.0.2.10", 1},
        {"mapped network outside", "::ffff:192.0.2.0/120", "192.0.3.10", 0},
        {"Sendmail IPv6: prefix", "2001:db8::/32", "IPv6:2001:db8::25", 1},
        {"bracketed client", "2001:db8::/32", "[2001:db8::25]", 1},
        {"client that is not an address", "0.0.0.0/0", "unknown", 0},
        {"empty client", "0.0.0.0/0", "", 0},
        {"client with zone", "fe80::/10", "fe80::1%eth0", 0},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *items[T_ITEMS_MAX];
        struct cidr_list *l;
        char buf[256];
        struct err e;
        size_t n;

        err_clear(&e);
        n = t_split(cases[i].list, buf, sizeof(buf), items);
        if ((l = cidr_list_new(items, n, &e)) == NULL)
            unit_fail(cases[i].name, "error \"%s\"", e.text);
        unit_int_eq(cases[i].name, cidr_list_contains(l, cases[i].addr),
                    cases[i].want);
        cidr_list_free(l);
    }
}

static void
test_cidr_errors(void **state)
{
    static const struct {
        const char *item;
        const char *want;
    } cases[] = {
        {"10.0.0.0/33", "'10.0.0.0/33': prefix length is larger than 32"},
        {"2001:db8::/129",
         "'2001:db8::/129': prefix length is larger than 128"},
        {"10.0.0.0/", "'10.0.0.0/': missing prefix length after '/'"},
        {"10.0.0.0/x8",
         "'10.0.0.0/x8': prefix length is not a number from 0 to 32 (IPv4) "
         "or 128 (IPv6)"},
        {"10.0.0.0/-1",
         "'10.0.0.0/-1': prefix length is not a number from 0 to 32 (IPv4) "
         "or 128 (IPv6)"},
        {"10.0.0.0/99999999999",
         "'10.0.0.0/99999999999': prefix length is not a number from 0 to "
         "32 (IPv4) or 128 (IPv6)"},
        {"10.0.0/8", "'10.0.0/8': not an IPv4 or IPv6 address"},
        {"256.1.1.1", "'256.1.1.1': not an IPv4 or IPv6 address"},
        {"example.org", "'example.org': not an IPv4 or IPv6 address"},
        {"/8", "'/8': not an IPv4 or IPv6 address"},
        {"[2001:db8::/32", "'[2001:db8::/32': unbalanced '['"},
        {"[192.0.2.1]", "'[192.0.2.1]': not an IPv6 address"},
        {"[]", "'[]': not an IPv4 or IPv6 address"},
        {"2001:db8:::1", "'2001:db8:::1': not an IPv4 or IPv6 address"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *items[2] = {"192.0.2.0/24", cases[i].item};
        struct cidr_list *l;
        struct err e;

        err_clear(&e);
        if ((l = cidr_list_new(items, 2, &e)) != NULL) {
            cidr_list_free(l);
            unit_fail(cases[i].item, "accepted, want \"%s\"", cases[i].want);
        }
        unit_str_eq(cases[i].item, e.text, cases[i].want);
        unit_int_eq(cases[i].item, e.code, ERR_CONFIG);
    }
}

/* ------------------------------------------------------------ match */

static const struct cfg_option *const t_tables[] = {match_options, NULL};

static struct cfg *
t_cfg(const char *text, struct err *e)
{
    struct cfg *c;

    err_clear(e);
    if ((c = cfg_parse_text("10-x.conf", text, strlen(text), e)) == NULL)
        return NULL;
    if (cfg_validate(c, t_tables, e) < 0) {
        cfg_free(c);
        return NULL;
    }
    return c;
}

static struct msg *
t_msg(const char *sender, const char *rcpts, const char *client,
      const char *auth)
{
    static const struct msg_limits limits = {1000000, 1000, 998, 20, 1000};
    const char *items[T_ITEMS_MAX];
    struct msg *m;
    struct err e;
    char buf[256];
    size_t n, i;

    m = msg_new(&limits, MSG_FE_SMTP, &e);
    assert_non_null(m);
    assert_int_equal(
        msg_env_set(m, "QID1", client, NULL, "helo.example", 0, auth, &e), 0);
    if (sender != NULL)
        assert_int_equal(msg_env_sender(m, sender, NULL, &e), 0);
    n = t_split(rcpts, buf, sizeof(buf), items);
    for (i = 0; i < n; i++)
        assert_int_equal(msg_env_rcpt(m, items[i], NULL, &e), 0);
    return m;
}

static void
test_match_table(void **state)
{
    static const struct {
        const char *name;
        const char *conf;
        const char *sender; /* NULL: never given */
        const char *rcpts;  /* comma-separated */
        const char *client;
        const char *auth;
        int want;
        const char *want_why;
    } cases[] = {
        {"no conditions", "", "a@example.org", "b@example.net", "192.0.2.1",
         NULL, 1, "all mail"},
        {"sender exact", "match_sender = bob@example.org\n", "bob@example.org",
         "x@example.net", NULL, NULL, 1, "all conditions hold"},
        {"sender exact ignores case", "match_sender = Bob@Example.ORG\n",
         "bOB@example.org", "x@example.net", NULL, NULL, 1,
         "all conditions hold"},
        {"sender exact, other user", "match_sender = bob@example.org\n",
         "alice@example.org", "x@example.net", NULL, NULL, 0,
         "sender alice@example.org not in match_sender"},
        {"sender in brackets", "match_sender = <bob@example.org>\n",
         "bob@example.org", "x@example.net", NULL, NULL, 1,
         "all conditions hold"},
        {"sender domain", "match_sender = example.org\n", "bob@EXAMPLE.org",
         "x@example.net", NULL, NULL, 1, "all conditions hold"},
        {"sender @domain", "match_sender = @example.org\n", "bob@example.org",
         "x@example.net", NULL, NULL, 1, "all conditions hold"},
        {"domain does not hold subdomains", "match_sender = example.org\n",
         "bob@mail.example.org", "x@example.net", NULL, NULL, 0,
         "sender bob@mail.example.org not in match_sender"},
        {"domain is not a suffix match", "match_sender = example.org\n",
         "bob@badexample.org", "x@example.net", NULL, NULL, 0,
         "sender bob@badexample.org not in match_sender"},
        {".domain holds subdomains", "match_sender = .example.org\n",
         "bob@a.b.Example.org", "x@example.net", NULL, NULL, 1,
         "all conditions hold"},
        {".domain does not hold the domain", "match_sender = .example.org\n",
         "bob@example.org", "x@example.net", NULL, NULL, 0,
         "sender bob@example.org not in match_sender"},
        {".domain is not a bare suffix", "match_sender = .example.org\n",
         "bob@badexample.org", "x@example.net", NULL, NULL, 0,
         "sender bob@badexample.org not in match_sender"},
        {"null sender pattern", "match_sender = <>\n", "", "x@example.net",
         NULL, NULL, 1, "all conditions hold"},
        {"null sender is not a domain",
         "match_sender = example.org, .example.org\n", "", "x@example.net",
         NULL, NULL, 0, "sender <> not in match_sender"},
        {"null sender pattern is not a sender", "match_sender = <>\n",
         "bob@example.org", "x@example.net", NULL, NULL, 0,
         "sender bob@example.org not in match_sender"},
        {"no sender given", "match_sender = <>\n", NULL, "x@example.net", NULL,
         NULL, 0, "no envelope sender for match_sender"},
        {"domain of a quoted local part", "match_sender = example.org\n",
         "\"a@evil.example\"@example.org", "x@example.net", NULL, NULL, 1,
         "all conditions hold"},
        {"any recipient is enough", "match_recipient = example.net\n",
         "a@example.org", "x@example.com,y@example.net", NULL, NULL, 1,
         "all conditions hold"},
        {"one recipient, not matched", "match_recipient = example.net\n",
         "a@example.org", "x@example.com", NULL, NULL, 0,
         "recipient x@example.com not in match_recipient"},
        {"several recipients, none matched", "match_recipient = example.net\n",
         "a@example.org", "x@example.com,y@example.com,z@example.org", NULL,
         NULL, 0, "none of 3 recipients in match_recipient"},
        {"no recipients", "match_recipient = example.net\n", "a@example.org",
         "", NULL, NULL, 0, "no recipients for match_recipient"},
        {"client in network", "match_client = 192.0.2.0/24, 2001:db8::/32\n",
         "a@example.org", "x@example.net", "2001:db8::7", NULL, 1,
         "all conditions hold"},
        {"client outside network", "match_client = 192.0.2.0/24\n",
         "a@example.org", "x@example.net", "198.51.100.7", NULL, 0,
         "client 198.51.100.7 not in match_client"},
        {"mapped client in IPv4 network", "match_client = 192.0.2.0/24\n",
         "a@example.org", "x@example.net", "::ffff:192.0.2.9", NULL, 1,
         "all conditions hold"},
        {"client unknown", "match_client = 0.0.0.0/0\n", "a@example.org",
         "x@example.net", NULL, NULL, 0, "no client address for match_client"},
        {"auth yes, authenticated", "match_auth = yes\n", "a@example.org",
         "x@example.net", NULL, "alice", 1, "all conditions hold"},
        {"auth yes, anonymous", "match_auth = yes\n", "a@example.org",
         "x@example.net", NULL, NULL, 0,
         "client not authenticated (match_auth = yes)"},
        {"auth no, anonymous", "match_auth = no\n", "a@example.org",
         "x@example.net", NULL, NULL, 1, "all conditions hold"},
        {"auth no, authenticated", "match_auth = no\n", "a@example.org",
         "x@example.net", NULL, "alice", 0,
         "client authenticated (match_auth = no)"},
        {"auth any is no condition", "match_auth = any\n", "a@example.org",
         "x@example.net", NULL, "alice", 1, "all mail"},
        {"all conditions hold",
         "match_sender = example.org\nmatch_recipient = .example.net\n"
         "match_client = 10.0.0.0/8\nmatch_auth = yes\n",
         "a@example.org", "x@mx.example.net", "10.1.2.3", "alice", 1,
         "all conditions hold"},
        {"the first failing condition is named",
         "match_sender = example.org\nmatch_recipient = .example.net\n"
         "match_client = 10.0.0.0/8\nmatch_auth = yes\n",
         "a@example.org", "x@mx.example.net", "11.1.2.3", NULL, 0,
         "client 11.1.2.3 not in match_client"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct match *mt;
        struct cfg *c;
        struct msg *m;
        char why[160];
        struct err e;

        if ((c = t_cfg(cases[i].conf, &e)) == NULL)
            unit_fail(cases[i].name, "config error \"%s\"", e.text);
        if ((mt = match_new(c, &e)) == NULL)
            unit_fail(cases[i].name, "match_new error \"%s\"", e.text);
        m = t_msg(cases[i].sender, cases[i].rcpts, cases[i].client,
                  cases[i].auth);
        why[0] = '\0';
        unit_int_eq(cases[i].name, match_test(mt, m, why, sizeof(why)),
                    cases[i].want);
        unit_str_eq(cases[i].name, why, cases[i].want_why);
        /* why is optional. */
        unit_int_eq(cases[i].name, match_test(mt, m, NULL, 0), cases[i].want);
        msg_free(m);
        match_free(mt);
        cfg_free(c);
    }
}

static void
test_match_errors(void **state)
{
    static const struct {
        const char *name;
        const char *conf;
        const char *want;
    } cases[] = {
        {"empty domain after '@'", "match_sender = a@\n",
         "10-x.conf:1: match_sender: bad pattern 'a@': empty domain"},
        {"lone '@'", "match_sender = @\n",
         "10-x.conf:1: match_sender: bad pattern '@': empty domain"},
        {"lone '.'", "match_recipient = .\n",
         "10-x.conf:1: match_recipient: bad pattern '.': empty domain"},
        {"'@@domain'", "match_sender = example.org,\n  @@example.org\n",
         "10-x.conf:1: match_sender: bad pattern '@@example.org': invalid "
         "character in domain"},
        {"two '@'", "\nmatch_sender = a@b@example.org\n",
         "10-x.conf:2: match_sender: bad pattern 'a@b@example.org': more "
         "than one '@'"},
        {"empty label", "match_recipient = example..org\n",
         "10-x.conf:1: match_recipient: bad pattern 'example..org': empty "
         "label in domain"},
        {"trailing dot", "match_recipient = example.org.\n",
         "10-x.conf:1: match_recipient: bad pattern 'example.org.': empty "
         "label in domain"},
        {"bad character", "match_recipient = exa!mple.org\n",
         "10-x.conf:1: match_recipient: bad pattern 'exa!mple.org': invalid "
         "character in domain"},
        {"unbalanced bracket", "match_sender = <bob@example.org\n",
         "10-x.conf:1: match_sender: bad pattern '<bob@example.org': "
         "unbalanced '<' or '>'"},
        {"stray '>'", "match_sender = <x>>\n",
         "10-x.conf:1: match_sender: bad pattern '<x>>': invalid character "
         "in domain"},
        {"unterminated literal", "match_sender = bob@[192.0.2.1\n",
         "10-x.conf:1: match_sender: bad pattern 'bob@[192.0.2.1': "
         "unterminated address literal"},
        {"bad network", "match_auth = yes\nmatch_client = 10.0.0.0/33\n",
         "10-x.conf:2: match_client: '10.0.0.0/33': prefix length is larger "
         "than 32"},
        {"bad address", "match_client = 192.0.2.0/24 localhost\n",
         "10-x.conf:1: match_client: 'localhost': not an IPv4 or IPv6 "
         "address"},
        {"bad match_auth", "match_auth = maybe\n",
         "10-x.conf:1: match_auth: invalid value 'maybe' (expected any, yes "
         "or no)"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct match *mt = NULL;
        struct cfg *c;
        struct err e;

        if ((c = t_cfg(cases[i].conf, &e)) != NULL &&
            (mt = match_new(c, &e)) != NULL)
            unit_fail(cases[i].name, "accepted, want \"%s\"", cases[i].want);
        unit_str_eq(cases[i].name, e.text, cases[i].want);
        unit_int_eq(cases[i].name, e.code, ERR_CONFIG);
        match_free(mt);
        cfg_free(c);
    }
}

static void
test_match_describe(void **state)
{
    static const struct {
        const char *name;
        const char *conf;
        size_t size;
        const char *want;
    } cases[] = {
        {"nothing", "", 160, "all mail"},
        {"auth any", "match_auth = any\n", 160, "all mail"},
        {"every key",
         "match_sender = <>, Example.org\nmatch_recipient = .example.net\n"
         "match_client = 10.0.0.0/8 [2001:db8::]/32\nmatch_auth = no\n",
         160,
         "sender in (<>, Example.org), recipient in (.example.net), client "
         "in (10.0.0.0/8, [2001:db8::]/32), auth=no"},
        {"truncated to the buffer", "match_sender = example.org\n", 12,
         "sender in ("},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct match *mt;
        struct cfg *c;
        char out[160];
        struct err e;

        if ((c = t_cfg(cases[i].conf, &e)) == NULL)
            unit_fail(cases[i].name, "config error \"%s\"", e.text);
        if ((mt = match_new(c, &e)) == NULL)
            unit_fail(cases[i].name, "match_new error \"%s\"", e.text);
        unit_str_eq(cases[i].name, match_describe(mt, out, cases[i].size),
                    cases[i].want);
        match_free(mt);
        cfg_free(c);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cidr_contains),
        cmocka_unit_test(test_cidr_errors),
        cmocka_unit_test(test_match_table),
        cmocka_unit_test(test_match_errors),
        cmocka_unit_test(test_match_describe),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
