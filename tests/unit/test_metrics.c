/*
 * test_metrics - the process's counters and their text exposition
 *
 * What /metrics shows: each count lands in its own series (a message
 * under its front end and outcome, a reply under its class), a stage's
 * run in the bucket its duration falls in with cumulative buckets whose
 * +Inf equals _count, label values escaped, and stage names past the
 * table's end counted under "other".
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "unit.h"

#include "util/metrics.h"

static char *
render(void)
{
    static char text[1 << 20];
    struct buf b;
    struct err e;

    buf_init(&b, 0);
    assert_int_equal(metrics_render(&b, &e), 0);
    snprintf(text, sizeof(text), "%s", buf_str(&b));
    buf_fini(&b);
    return text;
}

static void
test_counters(void **state)
{
    static const struct {
        const char *name, *line;
    } want[] = {
        {"smtpd passed", "relaychain_messages_total{frontend=\"smtpd\","
                         "outcome=\"passed\"} 2\n"},
        {"milter rejected", "relaychain_messages_total{frontend=\"milter\","
                            "outcome=\"rejected\"} 1\n"},
        {"smtpd rejected none", "relaychain_messages_total{frontend=\"smtpd\","
                                "outcome=\"rejected\"} 0\n"},
        {"2xx", "relaychain_nexthop_replies_total{class=\"2xx\"} 3\n"},
        {"4xx", "relaychain_nexthop_replies_total{class=\"4xx\"} 1\n"},
        {"5xx", "relaychain_nexthop_replies_total{class=\"5xx\"} 0\n"},
        {"connections", "relaychain_smtpd_connections_total 5\n"},
        {"auth failure",
         "relaychain_smtpd_auth_attempts_total{result=\"failure\"} 1\n"},
        {"http 4xx", "relaychain_http_responses_total{class=\"4xx\"} 1\n"},
        {"counter type", "# TYPE relaychain_messages_total counter\n"},
    };
    const char *text;
    size_t i;

    (void)state;
    metrics_reset();
    metrics_message(METRICS_FE_SMTPD, METRICS_MSG_PASSED);
    metrics_message(METRICS_FE_SMTPD, METRICS_MSG_PASSED);
    metrics_message(METRICS_FE_MILTER, METRICS_MSG_REJECTED);
    metrics_message(METRICS_FE_COUNT, METRICS_MSG_PASSED); /* ignored */
    metrics_nexthop_reply(220);
    metrics_nexthop_reply(250);
    metrics_nexthop_reply(250);
    metrics_nexthop_reply(451);
    metrics_nexthop_reply(999); /* ignored */
    metrics_nexthop_reply(0);   /* ignored */
    metrics_add(METRICS_SMTPD_CONNECTIONS, 5);
    metrics_add(METRICS_SMTPD_AUTH_FAILED, 1);
    metrics_http_reply(404);
    metrics_http_reply(42); /* ignored */
    text = render();
    for (i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        unit_has(want[i].name, text, want[i].line);
    unit_int_eq("get", metrics_get(METRICS_SMTPD_CONNECTIONS), 5);
}

static void
test_stage(void **state)
{
    static const struct {
        const char *name, *line;
    } want[] = {
        {"le 0.001 has the 1ms run",
         "relaychain_stage_duration_seconds_bucket{stage=\"dkim\","
         "le=\"0.001\"} 1\n"},
        {"le 0.0025 cumulative",
         "relaychain_stage_duration_seconds_bucket{stage=\"dkim\","
         "le=\"0.0025\"} 2\n"},
        {"le 10 all but the slow one",
         "relaychain_stage_duration_seconds_bucket{stage=\"dkim\","
         "le=\"10\"} 2\n"},
        {"+Inf", "relaychain_stage_duration_seconds_bucket{stage=\"dkim\","
                 "le=\"+Inf\"} 3\n"},
        {"count",
         "relaychain_stage_duration_seconds_count{stage=\"dkim\"} 3\n"},
        {"sum", "relaychain_stage_duration_seconds_sum{stage=\"dkim\"} "
                "20.003000\n"},
        {"continue", "relaychain_stage_verdicts_total{stage=\"dkim\","
                     "verdict=\"continue\"} 2\n"},
        {"reject", "relaychain_stage_verdicts_total{stage=\"dkim\","
                   "verdict=\"reject\"} 1\n"},
        {"escaped", "{stage=\"a\\\"b\\\\c\\nd\",verdict=\"tempfail\"} 1\n"},
        {"histogram type",
         "# TYPE relaychain_stage_duration_seconds histogram\n"},
    };
    const char *text;
    size_t i;

    (void)state;
    metrics_reset();
    metrics_stage("dkim", 1000, 0);     /* exactly on a bound: in it */
    metrics_stage("dkim", 2000, 0);     /* 0.0025 */
    metrics_stage("dkim", 20000000, 1); /* over every bound */
    metrics_stage("a\"b\\c\nd", 5, 2);
    text = render();
    for (i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        unit_has(want[i].name, text, want[i].line);
}

static void
test_stage_table_full(void **state)
{
    char name[32];
    const char *text;
    int i;

    (void)state;
    metrics_reset();
    for (i = 0; i < METRICS_STAGE_MAX + 3; i++) {
        snprintf(name, sizeof(name), "s%d", i);
        metrics_stage(name, 10, 0);
    }
    metrics_stage("s0", 10, 0); /* its own slot, found again */
    text = render();
    unit_has("first slot counted twice", text,
             "relaychain_stage_duration_seconds_count{stage=\"s0\"} 2\n");
    unit_has("past the end: other", text,
             "relaychain_stage_duration_seconds_count{stage=\"other\"} 3\n");
    if (strstr(text, "stage=\"s64\"") != NULL)
        unit_fail("s64", "got its own series, want it under other");
}

static void
test_escape(void **state)
{
    char out[8];

    (void)state;
    metrics_label_escape("ab\"", out, sizeof(out));
    unit_str_eq("quote", out, "ab\\\"");
    metrics_label_escape("abcdef\"", out, sizeof(out));
    unit_str_eq("cut at a whole escape", out, "abcdef");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters),
        cmocka_unit_test(test_stage),
        cmocka_unit_test(test_stage_table_full),
        cmocka_unit_test(test_escape),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
