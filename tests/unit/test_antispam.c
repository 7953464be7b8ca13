/*
 * test_antispam - the antispam stage's spamd answer parser and its
 *     action by score
 *
 * Tables: spamd answers (as spamd 4 writes them, and broken ones: an
 * error status, a missing Spam header, a score that is not a number, an
 * answer cut short) with the score, threshold and rule names wanted or
 * the failure; and scores against thresholds with the action wanted.
 * The stage against a real spamd is tests/integration/antispam_spamd.sh.
 */
#include "config.h"

#include <math.h>

#include "unit.h"

#include "filters/antispam/antispam_int.h"

struct parse_case {
    const char *name;
    const char *reply;
    int rc;
    double score, required;
    const char *symbols; /* or the start of the error text */
};

static const struct parse_case parse_cases[] = {
    {"gtube",
     "SPAMD/1.1 0 EX_OK\r\nContent-length: 27\r\nSpam: True ; 1000.0 / "
     "5.0\r\n\r\nGTUBE,MISSING_DATE,NO_RECEI",
     0, 1000.0, 5.0, "GTUBE,MISSING_DATE,NO_RECEI"},
    {"ham", "SPAMD/1.1 0 EX_OK\r\nSpam: False ; 1.2 / 5.0\r\n\r\nA,B\r\n", 0,
     1.2, 5.0, "A,B"},
    {"no rules", "SPAMD/1.1 0 EX_OK\r\nSpam: False ; 0.0 / 5.0\r\n\r\n", 0,
     0.0, 5.0, ""},
    {"negative, older Yes/No",
     "SPAMD/1.0 0 EX_OK\nspam: No ; -2.5 / 6.0\n\nALL_TRUSTED", 0, -2.5, 6.0,
     "ALL_TRUSTED"},
    {"content-length limits the rules",
     "SPAMD/1.1 0 EX_OK\r\nContent-length: 1\r\nSpam: True ; 9 / 5\r\n\r\n"
     "AB",
     0, 9.0, 5.0, "A"},
    {"a name with odd octets is dropped whole",
     "SPAMD/1.1 0 EX_OK\r\nSpam: True ; 9 / 5\r\n\r\nA\x01X,, B C\xff,D", 0,
     9.0, 5.0, "B,D"},
    {"error status", "SPAMD/1.0 76 Bad header line: x\r\n\r\n", -1, 0, 0,
     "spamd: SPAMD/1.0 76 Bad header line"},
    {"not spamd", "HTTP/1.1 200 OK\r\n\r\n", -1, 0, 0,
     "spamd: not a spamd answer"},
    {"empty", "", -1, 0, 0, "spamd closed the connection"},
    {"no Spam header", "SPAMD/1.1 0 EX_OK\r\n\r\nA", -1, 0, 0,
     "spamd: answer without a Spam header"},
    {"nan score", "SPAMD/1.1 0 EX_OK\r\nSpam: True ; nan / 5.0\r\n\r\n", -1, 0,
     0, "spamd: bad score"},
    {"inf score", "SPAMD/1.1 0 EX_OK\r\nSpam: True ; 1e999 / 5.0\r\n\r\n", -1,
     0, 0, "spamd: bad score"},
    {"no threshold", "SPAMD/1.1 0 EX_OK\r\nSpam: True ; 5.0\r\n\r\n", -1, 0, 0,
     "spamd: bad Spam header"},
    {"head cut short", "SPAMD/1.1 0 EX_OK\r\nSpam: True ; 5 / 5\r\n", -1, 0, 0,
     "spamd: answer cut short"},
    {"body cut short",
     "SPAMD/1.1 0 EX_OK\r\nContent-length: 30\r\nSpam: True ; 5 / 5\r\n\r\n"
     "GTUBE",
     -1, 0, 0, "spamd: answer cut short"},
};

static void
test_parse(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
        const struct parse_case *c = &parse_cases[i];
        struct flt_as_answer a;
        struct err e;
        int rc;

        err_clear(&e);
        rc = flt_as_spamd_parse(c->reply, strlen(c->reply), &a, &e);
        unit_int_eq(c->name, rc, c->rc);
        if (rc < 0) {
            if (strncmp(e.text, c->symbols, strlen(c->symbols)) != 0)
                unit_fail(c->name, "got error \"%s\", want \"%s...\"", e.text,
                          c->symbols);
            continue;
        }
        if (a.score != c->score || a.required != c->required)
            unit_fail(c->name, "got %g / %g, want %g / %g", a.score,
                      a.required, c->score, c->required);
        unit_str_eq(c->name, a.symbols, c->symbols);
    }
}

/* Rules past FLT_AS_SYMBOLS_MAX are cut at a comma, never mid-name. */
static void
test_parse_long(void **state)
{
    char reply[8192], *p;
    struct flt_as_answer a;
    struct err e;
    size_t n, len;
    int k;

    (void)state;
    n = (size_t)snprintf(reply, sizeof(reply),
                         "SPAMD/1.1 0 EX_OK\r\nSpam: True ; 30 / 5\r\n\r\n");
    for (k = 0; k < 400; k++)
        n += (size_t)snprintf(reply + n, sizeof(reply) - n, "%sRULE_%03d",
                              k ? "," : "", k);
    err_clear(&e);
    unit_int_eq("long", flt_as_spamd_parse(reply, n, &a, &e), 0);
    len = strlen(a.symbols);
    if (len == 0 || len >= FLT_AS_SYMBOLS_MAX)
        unit_fail("long", "got %zu octets of rules, want 1 to %d", len,
                  FLT_AS_SYMBOLS_MAX - 1);
    p = strrchr(a.symbols, ',');
    if (p == NULL || strlen(p + 1) != 8 || strncmp(p + 1, "RULE_", 5) != 0)
        unit_fail("long", "got a last rule \"%s\", want a whole one",
                  p ? p + 1 : a.symbols);
}

struct decide_case {
    const char *name;
    int has_q;
    double q;
    int has_r;
    double r;
    double score;
    enum flt_as_action want;
};

static const struct decide_case decide_cases[] = {
    {"below both", 1, 6.0, 1, 15.0, 3.2, FLT_AS_CONTINUE},
    {"at quarantine", 1, 6.0, 1, 15.0, 6.0, FLT_AS_QUARANTINE},
    {"between", 1, 6.0, 1, 15.0, 14.9, FLT_AS_QUARANTINE},
    {"at reject", 1, 6.0, 1, 15.0, 15.0, FLT_AS_REJECT},
    {"gtube", 1, 6.0, 1, 15.0, 1000.0, FLT_AS_REJECT},
    {"negative", 1, 6.0, 1, 15.0, -5.0, FLT_AS_CONTINUE},
    {"reject only", 0, 0, 1, 10.0, 50.0, FLT_AS_REJECT},
    {"reject only, below", 0, 0, 1, 10.0, 9.9, FLT_AS_CONTINUE},
    {"quarantine only", 1, 5.0, 0, 0, 1000.0, FLT_AS_QUARANTINE},
    {"neither: tag only", 0, 0, 0, 0, 1000.0, FLT_AS_CONTINUE},
    {"not a number never passes", 1, 6.0, 1, 15.0, NAN, FLT_AS_TEMPFAIL},
};

static void
test_decide(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(decide_cases) / sizeof(decide_cases[0]); i++) {
        const struct decide_case *c = &decide_cases[i];
        struct flt_as_thresholds t = {c->has_q, c->q, c->has_r, c->r};

        unit_int_eq(c->name, flt_as_decide(&t, c->score), c->want);
    }
}

/* The engines are told no name rather than a placeholder: "unknown"
 * from the SMTP front end (and Postfix's XFORWARD), Sendmail's
 * "[address]" from a milter. */
static void
test_client_name(void **state)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {NULL, NULL},
        {"", NULL},
        {"unknown", NULL},
        {"UNKNOWN", NULL},
        {"[192.0.2.1]", NULL},
        {"[IPv6:2001:db8::1]", NULL},
        {"mail.example.com", "mail.example.com"},
        {"unknown.example.com", "unknown.example.com"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        unit_str_eq(cases[i].in ? cases[i].in : "(null)",
                    flt_as_client_name(cases[i].in), cases[i].want);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_parse_long),
        cmocka_unit_test(test_decide),
        cmocka_unit_test(test_client_name),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
