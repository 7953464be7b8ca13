/*
 * test_regmap - pcre_table(5) syntax, semantics and load errors
 *
 * Each lookup case loads a small table from text and looks one key up;
 * each error case loads a table that must fail with an exact
 * "path:line: reason". Both are what an administrator sees: the address
 * a rule produces and the message that stops start-up.
 */
#include "config.h"

#include <pthread.h>
#include <unistd.h>

#include "unit.h"

#include "util/regmap.h"

struct lookup_case {
    const char *name;
    const char *table;
    const char *key;
    int want_rc;        /* 1 match, 0 none */
    const char *want;   /* result when want_rc is 1 */
    unsigned want_line; /* line of the rule that matched */
};

static const struct lookup_case lookup_cases[] = {
    {"masquerade", "/^(.*)@host\\.corp\\.example$/ ${1}@example.com\n",
     "alice@host.corp.example", 1, "alice@example.com", 1},
    {"no match", "/^(.*)@host\\.corp\\.example$/ ${1}@example.com\n",
     "alice@example.net", 0, NULL, 0},
    {"caseless by default", "/^(.*)@host\\.corp\\.example$/ $1@example.com\n",
     "Alice@HOST.Corp.Example", 1, "Alice@example.com", 1},
    {"i flag makes it case-sensitive", "/^abc@x$/i yes\n", "ABC@x", 0, NULL,
     0},
    {"i flag still matches same case", "/^abc@x$/i yes\n", "abc@x", 1, "yes",
     1},
    {"first match wins", "/@a$/ first\n/@a$/ second\n", "u@a", 1, "first", 1},
    {"later rule", "/@b$/ first\n/@a$/ second\n", "u@a", 1, "second", 2},
    {"negated matches when pattern does not", "!/@example\\.com$/ outside\n",
     "u@example.org", 1, "outside", 1},
    {"negated does not match when pattern does",
     "!/@example\\.com$/ outside\n", "u@example.com", 0, NULL, 0},
    {"double negation", "!!/@a$/ r\n", "u@a", 1, "r", 1},
    {"if holds",
     "if /@example\\.org$/\n/^postmaster@/ admin@example.org\nendif\n"
     "/^postmaster@/ other@example.net\n",
     "postmaster@example.org", 1, "admin@example.org", 2},
    {"if does not hold skips body",
     "if /@example\\.org$/\n/^postmaster@/ admin@example.org\nendif\n"
     "/^postmaster@/ other@example.net\n",
     "postmaster@example.com", 1, "other@example.net", 4},
    {"if negated", "if !/@example\\.org$/\n/^postmaster@/ outside\nendif\n",
     "postmaster@example.com", 1, "outside", 2},
    {"if negated, pattern matches",
     "if !/@example\\.org$/\n/^postmaster@/ outside\nendif\n",
     "postmaster@example.org", 0, NULL, 0},
    {"nested if, both hold",
     "if /^a/\nif /b$/\n/./ both\nendif\n/./ only-a\nendif\n/./ none\n", "axb",
     1, "both", 3},
    {"nested if, inner fails",
     "if /^a/\nif /b$/\n/./ both\nendif\n/./ only-a\nendif\n/./ none\n", "axc",
     1, "only-a", 5},
    {"nested if, outer fails",
     "if /^a/\nif /b$/\n/./ both\nendif\n/./ only-a\nendif\n/./ none\n", "zxb",
     1, "none", 7},
    {"keywords ignore case", "IF /a/\n/a/ yes\nEndIf\n", "a", 1, "yes", 2},
    {"dollar dollar", "/^(.*)$/ $$1=$1\n", "x", 1, "$1=x", 1},
    {"$(n) form", "/^(.*)@(.*)$/ $(2)-$(1)\n", "u@d", 1, "d-u", 1},
    {"${n} before text", "/^(.*)@(.*)$/ ${1}x@$2\n", "u@d", 1, "ux@d", 1},
    {"$n before dot", "/^(.*)@(.*)$/ $1.$2@relay\n", "u@d", 1, "u.d@relay", 1},
    {"$0 is the whole match", "/b+/ <$0>\n", "abbbc", 1, "<bbb>", 1},
    {"unmatched optional group is empty", "/^(a)?(b)$/ x${1}y$2\n", "b", 1,
     "xyb", 1},
    {"unmatched trailing group is empty", "/^(a)|(b)$/ [$2]\n", "a", 1, "[]",
     1},
    {"continuation line", "/^(.*)@a$/\n    $1@b\n", "u@a", 1, "u@b", 1},
    {"comments and blank lines",
     "# masquerading\n\n   # indented comment\n/@a$/ r\n", "u@a", 1, "r", 4},
    {"comment between continuation lines", "/@a$/\n# note\n  r\n", "u@a", 1,
     "r", 1},
    {"trailing white space of result dropped", "/@a$/   r  \t\n", "u@a", 1,
     "r", 1},
    {"result keeps inner spaces", "/@a$/ x  y\n", "u@a", 1, "x  y", 1},
    {"CRLF line ends", "/@a$/ r\r\n/@b$/ s\r\n", "u@b", 1, "s", 2},
    {"no final newline", "/@a$/ r", "u@a", 1, "r", 1},
    {"other delimiter", "|^a/b@c$| r\n", "a/b@c", 1, "r", 1},
    {"escaped delimiter", "%^a\\%b@c$% r\n", "a%b@c", 1, "r", 1},
    {"negated other delimiter", "!#@a$# r\n", "u@b", 1, "r", 1},
    {"x flag", "/^a b c$/x r\n", "abc", 1, "r", 1},
    {"A flag anchors", "/b/A r\n", "ab", 0, NULL, 0},
    {"A flag anchored match", "/b/A r\n", "ba", 1, "r", 1},
    {"U flag", "/^(a+)/U [$1]\n", "aaa", 1, "[a]", 1},
    {"greedy without U", "/^(a+)/ [$1]\n", "aaa", 1, "[aaa]", 1},
    {"s flag", "/a.b/s r\n", "a\nb", 1, "r", 1},
    {"no s flag", "/a.b/ r\n", "a\nb", 0, NULL, 0},
    {"m flag", "/^b$/m r\n", "a\nb", 1, "r", 1},
    {"no m flag", "/^b$/ r\n", "a\nb", 0, NULL, 0},
    {"E flag", "/a$/E r\n", "a\n", 0, NULL, 0},
    {"no E flag", "/a$/ r\n", "a\n", 1, "r", 1},
    {"X flag accepted", "/a/X r\n", "a", 1, "r", 1},
    {"several flags", "/^A.B$/is r\n", "A\nB", 1, "r", 1},
    {"UTF-8 folds case", "/^jörg@/ r\n", "JÖRG@example.com", 1, "r", 1},
    {"invalid UTF-8 key still matches", "/@a$/ r\n", "\xff\xfe@a", 1, "r", 1},
    {"empty table", "", "u@a", 0, NULL, 0},
    {"only comments", "# nothing\n", "u@a", 0, NULL, 0},
};

static void
test_lookup(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(lookup_cases) / sizeof(lookup_cases[0]); i++) {
        const struct lookup_case *c = &lookup_cases[i];
        struct regmap *rm;
        struct err e;
        struct buf out;
        unsigned line = 0;
        int rc;

        err_clear(&e);
        rm = regmap_parse_text("t.pcre", c->table, strlen(c->table), &e);
        if (rm == NULL)
            unit_fail(c->name, "load failed: %s", e.text);
        buf_init(&out, 1024);
        rc = regmap_lookup(rm, c->key, &out, &line, &e);
        unit_int_eq(c->name, rc, c->want_rc);
        if (c->want_rc == 1) {
            unit_str_eq(c->name, buf_str(&out), c->want);
            unit_int_eq(c->name, line, c->want_line);
        } else {
            unit_str_eq(c->name, buf_str(&out), "");
        }
        buf_fini(&out);
        regmap_free(rm);
    }
}

struct error_case {
    const char *name;
    const char *table;
    const char *want;
};

static const struct error_case error_cases[] = {
    {"pcre2 compile error", "# c\n/a(b/ r\n",
     "t.pcre:2: pcre2: missing closing parenthesis at offset 3"},
    {"missing result", "/a/\n", "t.pcre:1: missing result after pattern"},
    {"missing result after flags", "/a/i   \n",
     "t.pcre:1: missing result after pattern"},
    {"unknown flag", "/a/q r\n", "t.pcre:1: unknown pattern flag 'q'"},
    {"result glued to flags", "/a/result\n",
     "t.pcre:1: unknown pattern flag 'r'"},
    {"missing closing delimiter", "/a r\n",
     "t.pcre:1: missing closing delimiter '/' of pattern"},
    {"alphanumeric delimiter", "a/ r\n",
     "t.pcre:1: expected a pattern such as /regexp/"},
    {"bare negation", "! r\n",
     "t.pcre:1: expected a pattern such as /regexp/"},
    {"group out of range", "/(a)/ $2\n",
     "t.pcre:1: out of range replacement index \"2\": the pattern has 1 "
     "group(s)"},
    {"group out of range in braces", "/a/ ${1}\n",
     "t.pcre:1: out of range replacement index \"1\": the pattern has 0 "
     "group(s)"},
    {"substitution in negated rule", "!/(a)/ $1\n",
     "t.pcre:1: $1 in the result of a negated pattern"},
    {"lone dollar", "/a/ cost$\n",
     "t.pcre:1: bad $ in result: write $$ for a dollar sign"},
    {"dollar letter", "/a/ $x\n",
     "t.pcre:1: bad $ in result: write $$ for a dollar sign"},
    {"non-numeric index", "/(a)/ $1abc\n",
     "t.pcre:1: non-numeric replacement index: write ${1} before text"},
    {"unclosed brace", "/(a)/ ${1\n",
     "t.pcre:1: missing '}' after replacement index"},
    {"huge index", "/(a)/ $1000\n",
     "t.pcre:1: replacement index larger than 99"},
    {"endif without if", "/a/ r\nendif\n",
     "t.pcre:2: endif without matching if"},
    {"if without endif", "# c\nif /a/\n/b/ c\n",
     "t.pcre:2: if without matching endif"},
    {"innermost open if is named", "if /a/\nif /b/\n/c/ d\nendif\n",
     "t.pcre:1: if without matching endif"},
    {"text after if pattern", "if /a/ x\n",
     "t.pcre:1: text after the pattern of an if"},
    {"text after endif", "if /a/\nendif x\n", "t.pcre:2: text after endif"},
    {"if without pattern", "if\n",
     "t.pcre:1: expected a pattern such as /regexp/"},
    {"continuation at start", "  /a/ b\n",
     "t.pcre:1: continuation line (starts with white space) without a line "
     "to continue"},
    {"line of a continued rule", "/a/ b\n\n/c(/\n  d\n",
     "t.pcre:3: pcre2: missing closing parenthesis at offset 2"},
    {"bad pattern in if", "if /[a/\nendif\n",
     "t.pcre:1: pcre2: missing terminating ] for character class at offset "
     "2"},
};

static void
test_errors(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
        const struct error_case *c = &error_cases[i];
        struct regmap *rm;
        struct err e;

        err_clear(&e);
        rm = regmap_parse_text("t.pcre", c->table, strlen(c->table), &e);
        if (rm != NULL) {
            regmap_free(rm);
            unit_fail(c->name, "got a table, want error \"%s\"", c->want);
        }
        unit_str_eq(c->name, e.text, c->want);
        unit_int_eq(c->name, e.code, ERR_CONFIG);
    }
}

static void
test_nul_byte(void **state)
{
    static const char text[] = "/a/ r\n/b/ s\0t\n";
    struct regmap *rm;
    struct err e;

    (void)state;
    rm = regmap_parse_text("t.pcre", text, sizeof(text) - 1, &e);
    assert_null(rm);
    unit_str_eq("NUL byte", e.text, "t.pcre:2: NUL character");
}

static void
test_limits(void **state)
{
    struct buf big, out;
    struct regmap *rm;
    struct err e;
    size_t i;

    (void)state;

    /* 64 nested ifs load, 65 do not. */
    buf_init(&big, 0);
    for (i = 0; i < 65; i++)
        assert_int_equal(buf_puts(&big, "if /a/\n", &e), 0);
    rm = regmap_parse_text("t.pcre", big.data, big.len, &e);
    assert_null(rm);
    unit_str_eq("nesting", e.text, "t.pcre:65: if nested deeper than 64");
    buf_reset(&big);
    for (i = 0; i < 64; i++)
        assert_int_equal(buf_puts(&big, "if /a/\n", &e), 0);
    assert_int_equal(buf_puts(&big, "/a/ deep\n", &e), 0);
    for (i = 0; i < 64; i++)
        assert_int_equal(buf_puts(&big, "endif\n", &e), 0);
    rm = regmap_parse_text("t.pcre", big.data, big.len, &e);
    if (rm == NULL)
        unit_fail("64 levels", "load failed: %s", e.text);
    buf_init(&out, 64);
    unit_int_eq("64 levels", regmap_lookup(rm, "a", &out, NULL, &e), 1);
    unit_str_eq("64 levels", buf_str(&out), "deep");
    buf_fini(&out);
    regmap_free(rm);

    /* 20000 rules load, 20001 do not. */
    buf_reset(&big);
    for (i = 0; i < 20000; i++)
        assert_int_equal(buf_puts(&big, "/a/ b\n", &e), 0);
    rm = regmap_parse_text("t.pcre", big.data, big.len, &e);
    if (rm == NULL)
        unit_fail("20000 rules", "load failed: %s", e.text);
    unit_int_eq("20000 rules", regmap_rule_count(rm), 20000);
    regmap_free(rm);
    assert_int_equal(buf_puts(&big, "/a/ b\n", &e), 0);
    rm = regmap_parse_text("t.pcre", big.data, big.len, &e);
    assert_null(rm);
    unit_str_eq("20001 rules", e.text, "t.pcre:20001: more than 20000 rules");
    unit_int_eq("20001 rules", e.code, ERR_LIMIT);

    /* A text over 1 MiB is refused before parsing. */
    buf_reset(&big);
    while (big.len <= 1024 * 1024)
        assert_int_equal(buf_puts(&big, "# padding padding padding\n", &e), 0);
    rm = regmap_parse_text("t.pcre", big.data, big.len, &e);
    assert_null(rm);
    unit_str_eq("size", e.text, "t.pcre: larger than 1048576 octets");
    unit_int_eq("size", e.code, ERR_LIMIT);
    buf_fini(&big);
}

static void
test_result_limit(void **state)
{
    static const char table[] = "/^(.*)$/ $1$1$1$1\n";
    struct regmap *rm;
    struct buf out;
    struct err e;

    (void)state;
    rm = regmap_parse_text("t.pcre", table, sizeof(table) - 1, &e);
    assert_non_null(rm);
    buf_init(&out, 16);
    assert_int_equal(buf_puts(&out, "kept", &e), 0);
    unit_int_eq("result over limit",
                regmap_lookup(rm, "abcdef", &out, NULL, &e), -1);
    unit_int_eq("result over limit", e.code, ERR_LIMIT);
    unit_str_eq("result over limit", buf_str(&out), "kept");
    unit_int_eq("result within limit", regmap_lookup(rm, "ab", &out, NULL, &e),
                1);
    unit_str_eq("result within limit", buf_str(&out), "keptabababab");
    buf_fini(&out);
    regmap_free(rm);
}

static void
test_match_limit(void **state)
{
    static const char table[] = "/^(\\w+\\s?)*$/ r\n";
    char key[4096];
    struct regmap *rm;
    struct buf out;
    struct err e;
    int rc;

    (void)state;
    rm = regmap_parse_text("t.pcre", table, sizeof(table) - 1, &e);
    assert_non_null(rm);
    memset(key, 'a', sizeof(key) - 2);
    key[sizeof(key) - 2] = '!';
    key[sizeof(key) - 1] = '\0';
    buf_init(&out, 64);
    rc = regmap_lookup(rm, key, &out, NULL, &e);
    unit_int_eq("catastrophic pattern", rc, -1);
    unit_int_eq("catastrophic pattern", e.code, ERR_LIMIT);
    unit_str_eq("catastrophic pattern", e.text,
                "t.pcre:1: pcre2: match limit exceeded");
    buf_fini(&out);
    regmap_free(rm);
}

static void
test_load(void **state)
{
    char dir[256], path[512], good[512], want[600];
    struct regmap *rm;
    struct buf out;
    struct err e;

    (void)state;
    assert_non_null(unit_tmpdir(dir, sizeof(dir)));
    assert_non_null(unit_write(dir, "sender.pcre",
                               "# masquerade\n"
                               "/^(.*)@[^.]+\\.corp\\.example$/ "
                               "${1}@example.com\n",
                               good, sizeof(good)));
    rm = regmap_load(good, &e);
    if (rm == NULL)
        unit_fail("load", "load failed: %s", e.text);
    unit_str_eq("load", regmap_path(rm), good);
    unit_int_eq("load", regmap_rule_count(rm), 1);
    buf_init(&out, 256);
    unit_int_eq("load",
                regmap_lookup(rm, "bob@mx1.corp.example", &out, NULL, &e), 1);
    unit_str_eq("load", buf_str(&out), "bob@example.com");
    buf_fini(&out);
    regmap_free(rm);

    assert_non_null(
        unit_write(dir, "bad.pcre", "/ok/ r\n/(/ r\n", path, sizeof(path)));
    rm = regmap_load(path, &e);
    assert_null(rm);
    snprintf(want, sizeof(want),
             "%s:2: pcre2: missing closing parenthesis at offset 1", path);
    unit_str_eq("load error names the file", e.text, want);
    unlink(path);
    unlink(good);

    snprintf(path, sizeof(path), "%s/missing.pcre", dir);
    rm = regmap_load(path, &e);
    assert_null(rm);
    snprintf(want, sizeof(want), "%s: No such file or directory", path);
    unit_str_eq("missing file", e.text, want);
    rmdir(dir);
}

/* Threads share one map; each must see its own result. */
struct thread_arg {
    const struct regmap *rm;
    int id;
    int bad;
};

static void *
thread_lookups(void *p)
{
    struct thread_arg *ta = p;
    char key[64], want[64];
    struct buf out;
    struct err e;
    int i;

    buf_init(&out, 128);
    for (i = 0; i < 2000; i++) {
        snprintf(key, sizeof(key), "user%d.%d@host.corp.example", ta->id, i);
        snprintf(want, sizeof(want), "user%d.%d@example.com", ta->id, i);
        buf_reset(&out);
        if (regmap_lookup(ta->rm, key, &out, NULL, &e) != 1 ||
            strcmp(buf_str(&out), want) != 0)
            ta->bad++;
    }
    buf_fini(&out);
    return NULL;
}

static void
test_threads(void **state)
{
    static const char table[] =
        "/^(.*)@host\\.corp\\.example$/ ${1}@example.com\n";
    struct thread_arg args[4];
    pthread_t tid[4];
    struct regmap *rm;
    struct err e;
    int i;

    (void)state;
    rm = regmap_parse_text("t.pcre", table, sizeof(table) - 1, &e);
    assert_non_null(rm);
    for (i = 0; i < 4; i++) {
        args[i].rm = rm;
        args[i].id = i;
        args[i].bad = 0;
        assert_int_equal(
            pthread_create(&tid[i], NULL, thread_lookups, &args[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(tid[i], NULL);
        unit_int_eq("threads", args[i].bad, 0);
    }
    regmap_free(rm);
}

/* regmap_rule_at: each rule's result as written, with its line, in file
 * order; "if" and "endif" are not rules. */
static void
test_rule_at(void **state)
{
    static const char table[] = "# comment\n"
                                "/^(a)@/ pgp:$1 x\n"
                                "if /@b$/\n"
                                "/^c/   smime:/c.pem:/c.key\n"
                                "  continued\n"
                                "endif\n"
                                "!/^d/ last\n";
    struct regmap *rm;
    struct err e;
    unsigned line = 0;

    (void)state;
    rm = regmap_parse_text("t.pcre", table, sizeof(table) - 1, &e);
    assert_non_null(rm);
    unit_int_eq("rules", regmap_rule_count(rm), 3);
    unit_str_eq("first", regmap_rule_at(rm, 0, &line), "pgp:$1 x");
    unit_int_eq("first line", line, 2);
    unit_str_eq("second", regmap_rule_at(rm, 1, &line),
                "smime:/c.pem:/c.key  continued");
    unit_int_eq("second line", line, 4);
    unit_str_eq("third", regmap_rule_at(rm, 2, &line), "last");
    unit_int_eq("third line", line, 7);
    assert_null(regmap_rule_at(rm, 3, &line));
    regmap_free(rm);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookup),
        cmocka_unit_test(test_rule_at),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_nul_byte),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_result_limit),
        cmocka_unit_test(test_match_limit),
        cmocka_unit_test(test_load),
        cmocka_unit_test(test_threads),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
