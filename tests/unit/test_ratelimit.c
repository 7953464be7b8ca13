/*
 * test_ratelimit - the rate_limits rules, the sliding window, the
 * memory store
 *
 * What a user sees: a rules file taken or refused with the line at
 * fault, the rules a MAIL or RCPT counts toward, and the point at which
 * the next command gets 452: the window arithmetic (exact at the edges
 * of a window, weighted in between) and the memory store that counts
 * across calls, refusing without counting.
 */
#include "config.h"

#include <string.h>

#include "unit.h"

#include "net/ratestate.h"
#include "util/ratelimit.h"

static void
test_period(void **state)
{
    static const struct {
        const char *in;
        long long want; /* -1: refused */
    } cases[] = {
        {"1s", 1000},    {"10s", 10000},   {"1m", 60000},
        {"2h", 7200000}, {"1d", 86400000}, {"7d", 604800000},
        {"8d", -1},      {"0s", -1},       {"1", -1},
        {"s", -1},       {"1ms", -1},      {"1w", -1},
        {"-1s", -1},     {"", -1},         {"99999999999s", -1},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        long long got = -1;

        if (ratelimit_parse_period(cases[i].in, &got) < 0)
            got = -1;
        unit_int_eq(cases[i].in, got, cases[i].want);
    }
}

static void
test_window(void **state)
{
    (void)state;
    /* at the start of a window the previous one counts whole */
    unit_int_eq("start", (long long)ratelimit_estimate(10, 0, 60000, 60000),
                10);
    /* half-way through, half of it */
    unit_int_eq("half", (long long)ratelimit_estimate(10, 3, 90000, 60000), 8);
    /* at the very end, almost none */
    unit_int_eq("end", (long long)ratelimit_estimate(10, 3, 119999, 60000), 3);
    unit_int_eq("window", ratelimit_window(119999, 60000), 1);
    unit_int_eq("window next", ratelimit_window(120000, 60000), 2);
    /* the limit itself is allowed, one more is not */
    unit_int_eq("at limit", ratelimit_allows(0, 4, 1, 5, 0, 1000), 1);
    unit_int_eq("over", ratelimit_allows(0, 5, 1, 5, 0, 1000), 0);
    unit_int_eq("weighted over",
                ratelimit_allows(10, 0, 1, 5, 500 + 10 * 1000, 1000), 0);
    unit_int_eq("weighted ok",
                ratelimit_allows(10, 0, 1, 5, 600 + 10 * 1000, 1000), 1);
    /* an amount: it all fits, or nothing does */
    unit_int_eq("three of 5 after 2", ratelimit_allows(0, 2, 3, 5, 0, 1000),
                1);
    unit_int_eq("four of 5 after 2", ratelimit_allows(0, 2, 4, 5, 0, 1000), 0);
    unit_int_eq("more than the count, empty window",
                ratelimit_allows(0, 0, 8, 5, 0, 1000), 0);
}

static const char *
test_rcpt_at(const void *arg, size_t i)
{
    return ((const char *const *)arg)[i];
}

/* ratelimit_message: one transaction's amounts, rule by rule */
static void
test_message(void **state)
{
    const char *text = "client:192.0.2.0/24 100/1m\n"             /* 0 */
                       "user:alice 2000/1d recipients\n"          /* 1 */
                       "rcpt_domain:gmail.com 20/1s\n"            /* 2 */
                       "rcpt_domain:gmail.com 50/1s recipients\n" /* 3 */
                       "rcpt_domain:yahoo.com 5/1s\n"             /* 4 */
                       "stream:news 40/1s recipients\n";          /* 5 */
    static const char *const rcpts[] = {"a@gmail.com", "b@Gmail.COM",
                                        "c@example.net", "d@gmail.com"};
    struct err e;
    struct ratelimit_set *s =
        ratelimit_parse_text("t", text, strlen(text), &e);
    struct ratelimit_event ev;
    size_t idx[6], n = 99;
    long long amount[6];

    (void)state;
    assert_non_null(s);
    memset(&ev, 0, sizeof(ev));
    ev.client_addr = "192.0.2.9";
    ev.user = "alice";
    ev.sender_domain = "example.org";
    ev.stream = "news";
    unit_int_eq(
        "taken",
        ratelimit_message(s, &ev, test_rcpt_at, rcpts, 4, idx, amount, &n, &e),
        0);
    unit_int_eq("rules", n, 5);
    unit_int_eq("client rule", idx[0], 0);
    unit_int_eq("client: one message", amount[0], 1);
    unit_int_eq("user rule", idx[1], 1);
    unit_int_eq("user: four recipients", amount[1], 4);
    unit_int_eq("gmail messages rule", idx[2], 2);
    unit_int_eq("gmail: one message for three recipients", amount[2], 1);
    unit_int_eq("gmail recipients rule", idx[3], 3);
    unit_int_eq("gmail: three recipients", amount[3], 3);
    unit_int_eq("stream rule", idx[4], 5);
    unit_int_eq("stream: four recipients", amount[4], 4);
    /* no recipient in yahoo.com, no stream, another client */
    ev.stream = NULL;
    ev.client_addr = "198.51.100.1";
    ev.user = NULL;
    unit_int_eq(
        "taken again",
        ratelimit_message(s, &ev, test_rcpt_at, rcpts, 1, idx, amount, &n, &e),
        0);
    unit_int_eq("gmail only", n, 2);
    unit_int_eq("gmail messages", idx[0], 2);
    unit_int_eq("gmail recipients", amount[1], 1);
    ratelimit_set_free(s);
}

static void
test_parse(void **state)
{
    static const struct {
        const char *name, *text;
        const char *want; /* NULL: taken; else in the error */
    } cases[] = {
        {"all kinds",
         "# limits\n"
         "client:192.0.2.0/24 100/1m\n"
         "user:alice 2000/1d recipients\n"
         "  sender_domain:Example.ORG 500/1h messages\n"
         "\n"
         "rcpt_domain:gmail.com 20/1s\n",
         NULL},
        {"stream", "stream:news 50/1s\n", NULL},
        {"stream with a control octet", "stream:news\x01 50/1s\n",
         "t:1: 'stream:news\x01': control"},
        {"bad who", "\nhost:x 1/1s\n", "t:2: 'host:x': not client:"},
        {"bad count", "user:a x/1s\n", "t:1: 'x/1s': count is not"},
        {"zero", "user:a 0/1s\n", "t:1: '0/1s': count is not"},
        {"no slash", "user:a 10\n", "t:1: '10' is not COUNT/PERIOD"},
        {"bad period", "user:a 1/1w\n", "t:1: '1/1w': period"},
        {"bad unit", "user:a 1/1s bytes\n", "t:1: 'bytes' is not messages"},
        {"extra", "user:a 1/1s messages x\n", "t:1: text after the unit"},
        {"one word", "user:a\n", "t:1: not WHO COUNT/PERIOD"},
        {"bad net", "client:300.1.1.1 1/1s\n", "t:1: 'client:300.1.1.1'"},
        {"bad domain", "rcpt_domain:a@b.c 1/1s\n", "not a domain"},
        {"empty value", "user: 1/1s\n", "empty or too long"},
        {"crlf", "user:a 1/1s\r\n", NULL},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct err e;
        struct ratelimit_set *s = ratelimit_parse_text(
            "t", cases[i].text, strlen(cases[i].text), &e);

        if (cases[i].want == NULL) {
            if (s == NULL)
                unit_fail(cases[i].name, "refused: %s", e.text);
        } else {
            if (s != NULL)
                unit_fail(cases[i].name, "taken, want \"%s\"", cases[i].want);
            unit_has(cases[i].name, e.text, cases[i].want);
        }
        ratelimit_set_free(s);
    }
}

static void
test_match(void **state)
{
    const char *text = "client:192.0.2.0/24 100/1m\n"             /* 0 */
                       "user:alice 2000/1d recipients\n"          /* 1 */
                       "sender_domain:example.org 500/1h\n"       /* 2 */
                       "rcpt_domain:gmail.com 20/1s\n"            /* 3 */
                       "rcpt_domain:gmail.com 50/1s recipients\n" /* 4 */
                       "stream:news 10/1s\n"                      /* 5 */
                       "stream:news 40/1s recipients\n";          /* 6 */
    struct err e;
    struct ratelimit_set *s =
        ratelimit_parse_text("t", text, strlen(text), &e);
    struct ratelimit_event ev;
    size_t idx[8], n;

    (void)state;
    assert_non_null(s);
    unit_str_eq("id", s->rules[2].id, "t:3 sender_domain:example.org");
    memset(&ev, 0, sizeof(ev));
    ev.client_addr = "192.0.2.9";
    ev.user = "alice";
    ev.sender_domain = "EXAMPLE.org";
    n = ratelimit_match(s, &ev, idx, 8);
    unit_int_eq("MAIL rules", n, 2);
    unit_int_eq("MAIL client", idx[0], 0);
    unit_int_eq("MAIL sender domain", idx[1], 2);
    ev.at_rcpt = 1;
    ev.rcpt_domain = "gmail.com";
    ev.first_of_domain = 1;
    n = ratelimit_match(s, &ev, idx, 8);
    unit_int_eq("first RCPT rules", n, 3);
    unit_int_eq("first RCPT user", idx[0], 1);
    unit_int_eq("first RCPT domain messages", idx[1], 3);
    ev.first_of_domain = 0;
    n = ratelimit_match(s, &ev, idx, 8);
    unit_int_eq("second RCPT rules", n, 2);
    ev.stream = "news";
    n = ratelimit_match(s, &ev, idx, 8);
    unit_int_eq("RCPT on a stream", n, 3);
    unit_int_eq("RCPT stream recipients", idx[2], 6);
    ev.at_rcpt = 0;
    n = ratelimit_match(s, &ev, idx, 8);
    unit_int_eq("MAIL on a stream", n, 3);
    unit_int_eq("MAIL stream messages", idx[2], 5);
    ev.stream = "alerts";
    unit_int_eq("another stream", ratelimit_match(s, &ev, idx, 8), 2);
    ev.stream = NULL;
    ev.client_addr = "198.51.100.1";
    ev.user = "bob";
    ev.sender_domain = "";
    unit_int_eq("nothing", ratelimit_match(s, &ev, idx, 8), 0);
    unit_str_eq("first stream rule",
                ratelimit_first_of(s, RATELIMIT_STREAM)->id,
                "t:6 stream:news");
    ratelimit_set_free(s);
}

static void
test_memory_store(void **state)
{
    const char *text = "user:alice 3/1h\n"
                       "client:10.0.0.0/8 5/1h\n";
    struct err e;
    struct ratelimit_set *s =
        ratelimit_parse_text("t", text, strlen(text), &e);
    struct ratestate *st = ratestate_new("memory", RATESTATE_LOCAL, 100, &e);
    size_t both[2] = {0, 1}, client[1] = {1}, over = 99;
    const long long one[2] = {1, 1}, two[1] = {2}, many[1] = {9};
    int i;

    (void)state;
    assert_non_null(s);
    assert_non_null(st);
    for (i = 0; i < 3; i++)
        unit_int_eq("within", ratestate_take(st, s, both, one, 2, &over, &e),
                    RATESTATE_TAKEN);
    unit_int_eq("fourth", ratestate_take(st, s, both, one, 2, &over, &e),
                RATESTATE_OVER);
    unit_int_eq("rule named", over, 0);
    /* the refused one was not counted toward the client: two more fit */
    unit_int_eq("client 4", ratestate_take(st, s, client, one, 1, &over, &e),
                RATESTATE_TAKEN);
    unit_int_eq("client 5", ratestate_take(st, s, client, one, 1, &over, &e),
                RATESTATE_TAKEN);
    unit_int_eq("client 6", ratestate_take(st, s, client, one, 1, &over, &e),
                RATESTATE_OVER);
    unit_int_eq("client rule", over, 1);
    /* one given back: two at once do not fit where one is left, one does */
    unit_int_eq("give one", ratestate_give(st, s, client, one, 1, &e), 0);
    unit_int_eq("two where one is left",
                ratestate_take(st, s, client, two, 1, &over, &e),
                RATESTATE_OVER);
    unit_int_eq("one where one is left",
                ratestate_take(st, s, client, one, 1, &over, &e),
                RATESTATE_TAKEN);
    /* two given back: two fit at once; more back than taken stays 0 */
    unit_int_eq("give two", ratestate_give(st, s, client, two, 1, &e), 0);
    unit_int_eq("two at once",
                ratestate_take(st, s, client, two, 1, &over, &e),
                RATESTATE_TAKEN);
    unit_int_eq("give too much", ratestate_give(st, s, both, many, 1, &e), 0);
    for (i = 0; i < 3; i++)
        unit_int_eq("alice from 0",
                    ratestate_take(st, s, both, one, 1, &over, &e),
                    RATESTATE_TAKEN);
    unit_int_eq("alice full again",
                ratestate_take(st, s, both, one, 1, &over, &e),
                RATESTATE_OVER);
    unit_int_eq("no rules", ratestate_take(st, s, client, one, 0, &over, &e),
                RATESTATE_TAKEN);
    /* a second memory store (a reload's runtime) shares the counts;
     * once every user has freed it, a new one starts afresh */
    {
        struct ratestate *st2 =
            ratestate_new("memory", RATESTATE_LOCAL, 100, &e);

        assert_true(st2 == st);
        unit_int_eq("shared: alice still full",
                    ratestate_take(st2, s, both, one, 1, &over, &e),
                    RATESTATE_OVER);
        ratestate_free(st);
        unit_int_eq("shared: kept after the first is freed",
                    ratestate_take(st2, s, both, one, 1, &over, &e),
                    RATESTATE_OVER);
        st = st2;
    }
    ratestate_free(st);
    st = ratestate_new("memory", RATESTATE_LOCAL, 100, &e);
    assert_non_null(st);
    unit_int_eq("a new store starts afresh",
                ratestate_take(st, s, both, one, 1, &over, &e),
                RATESTATE_TAKEN);
    ratestate_free(st);
    ratelimit_set_free(s);
}

static void
test_spec(void **state)
{
    static const struct {
        const char *in;
        int ok;
    } cases[] = {
        {"memory", 1},
        {"redis://127.0.0.1:6379/0", 1},
        {"redis://localhost", 1},
        {"redis://h:6380", 1},
        {"redis://h/3", 1},
        {"redis://:6379/0", 0},
        {"redis://h:0/0", 0},
        {"redis://h:99999/0", 0},
        {"redis://h:6379/x", 0},
        {"redis://u@h:6379/0", 0},
        {"mem", 0},
        {"http://h", 0},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct err e;

        unit_int_eq(cases[i].in, ratestate_spec_check(cases[i].in, &e) == 0,
                    cases[i].ok);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_period),       cmocka_unit_test(test_window),
        cmocka_unit_test(test_parse),        cmocka_unit_test(test_match),
        cmocka_unit_test(test_memory_store), cmocka_unit_test(test_spec),
        cmocka_unit_test(test_message),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
