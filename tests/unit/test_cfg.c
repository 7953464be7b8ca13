/*
 * test_cfg - relaychain.conf syntax, types, errors and conf_load()
 *
 * The cases check what an administrator sees: the exact "path:line:
 * reason" text of each mistake, the value a key ends up with (units,
 * defaults, continuation lines, paths beside the file) and the listing
 * "relaychain check" prints.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/cfg.h"
#include "chain/conf.h"
#include "cli/parts.h"
#include "cli/confdoc.h"
#include "filters/filters.h"
#include "unit.h"

static const char *const t_modes[] = {"reject", "continue", "discard", NULL};

static const struct cfg_option t_required[] = {
    {"name", CFG_STRING, NULL, "a required string", NULL, 0, 0, CFG_REQUIRED},
    CFG_OPTION_END,
};

static const struct cfg_option t_options[] = {
    {"greeting", CFG_STRING, "hello world", "a string", NULL, 0, 0, 0},
    {"note", CFG_STRING, NULL, "a string without default", NULL, 0, 0, 0},
    {"dir", CFG_PATH, "chain.d", "a path", NULL, 0, 0, 0},
    {"count", CFG_INT, "10", "bounded int", NULL, 1, 100, 0},
    {"offset", CFG_INT, NULL, "unbounded int", NULL, 0, 0, 0},
    {"size", CFG_SIZE, "10m", "a size", NULL, 1024, 1024LL * 1024 * 1024, 0},
    {"timeout", CFG_TIME, "5m", "a time", NULL, 0, 0, 0},
    {"interval", CFG_TIME, "1m", "bounded time", NULL, 1000, 3600000, 0},
    {"flag", CFG_BOOL, "no", "a boolean", NULL, 0, 0, 0},
    {"mode", CFG_ENUM, "reject", "an enum", t_modes, 0, 0, 0},
    {"list", CFG_LIST, NULL, "a list", NULL, 0, 0, 0},
    CFG_OPTION_END,
};

static const struct cfg_option *const t_tables[] = {t_required, t_options,
                                                    NULL};

/* t_load - parse and validate text; NULL with e filled on failure. */
static struct cfg *
t_load(const char *name, const char *text, size_t len, struct err *e)
{
    struct cfg *c;

    err_clear(e);
    if ((c = cfg_parse_text(name, text, len ? len : strlen(text), e)) == NULL)
        return NULL;
    if (cfg_validate(c, t_tables, e) < 0) {
        cfg_free(c);
        return NULL;
    }
    return c;
}

/* ------------------------------------------------------------ errors */

static void
test_cfg_errors(void **state)
{
    static const struct {
        const char *name;
        const char *text;
        size_t len; /* 0: strlen(text) */
        const char *want;
    } cases[] = {
        {"syntax error without '='", "name = x\nfoo bar\n", 0,
         "t.conf:2: syntax error (expected 'key = value')"},
        {"continuation at the start", "  name = x\n", 0,
         "t.conf:1: continuation line with no 'key = value' before it"},
        {"continuation after only comments", "# one\n\n\tmore\n", 0,
         "t.conf:3: continuation line with no 'key = value' before it"},
        {"empty key", "name = x\n= 5\n", 0,
         "t.conf:2: missing key before '='"},
        {"upper-case key", "Name = x\n", 0,
         "t.conf:1: invalid key 'Name' (expected lower-case letters, digits "
         "and '_', starting with a letter)"},
        {"key with a space", "my name = x\n", 0,
         "t.conf:1: invalid key 'my name' (expected lower-case letters, "
         "digits and '_', starting with a letter)"},
        {"key starting with a digit", "1name = x\n", 0,
         "t.conf:1: invalid key '1name' (expected lower-case letters, "
         "digits and '_', starting with a letter)"},
        {"duplicate key", "name = a\ncount = 1\n\nname = b\n", 0,
         "t.conf:4: duplicate key 'name', first set at line 1"},
        {"unknown key with a suggestion", "name = a\ncuont = 3\n", 0,
         "t.conf:2: unknown key 'cuont' (did you mean 'count'?)"},
        {"unknown key without a suggestion", "name = a\nbanana = 3\n", 0,
         "t.conf:2: unknown key 'banana'"},
        {"unknown key is reported before a later bad value",
         "name = a\nsizee = 1\nsize = x\n", 0,
         "t.conf:2: unknown key 'sizee' (did you mean 'size'?)"},
        {"bad size unit", "name = a\nsize = 10Q\n", 0,
         "t.conf:2: size: invalid size '10Q' (expected a number with "
         "optional k, m or g)"},
        {"size with a space before the unit", "name = a\nsize = 10 m\n", 0,
         "t.conf:2: size: invalid size '10 m' (expected a number with "
         "optional k, m or g)"},
        {"negative size", "name = a\nsize = -1k\n", 0,
         "t.conf:2: size: invalid size '-1k' (expected a number with "
         "optional k, m or g)"},
        {"size overflow", "name = a\nsize = 9999999999999g\n", 0,
         "t.conf:2: size: '9999999999999g' is out of range (expected 1k to "
         "1g)"},
        {"size above its maximum", "name = a\nsize = 2g\n", 0,
         "t.conf:2: size: '2g' is out of range (expected 1k to 1g)"},
        {"size below its minimum", "name = a\nsize = 1000\n", 0,
         "t.conf:2: size: '1000' is out of range (expected 1k to 1g)"},
        {"int with a fraction", "name = a\ncount = 1.5\n", 0,
         "t.conf:2: count: invalid number '1.5' (expected a whole number)"},
        {"empty int", "name = a\ncount =\n", 0,
         "t.conf:2: count: invalid number '' (expected a whole number)"},
        {"int below its minimum", "name = a\ncount = 0\n", 0,
         "t.conf:2: count: '0' is out of range (expected 1 to 100)"},
        {"int overflow", "name = a\noffset = 99999999999999999999\n", 0,
         "t.conf:2: offset: '99999999999999999999' is too large"},
        {"negative int overflow", "name = a\noffset = -99999999999999999999\n",
         0, "t.conf:2: offset: '-99999999999999999999' is too small"},
        {"bounded int overflow", "name = a\ncount = 99999999999999999999\n", 0,
         "t.conf:2: count: '99999999999999999999' is out of range (expected 1 "
         "to 100)"},
        {"bad time unit", "name = a\ntimeout = 10y\n", 0,
         "t.conf:2: timeout: invalid time '10y' (expected a number with "
         "optional ms, s, m, h, d or w)"},
        {"time overflow", "name = a\ntimeout = 99999999999999w\n", 0,
         "t.conf:2: timeout: '99999999999999w' is too large"},
        {"time out of range", "name = a\ninterval = 2h\n", 0,
         "t.conf:2: interval: '2h' is out of range (expected 1s to 1h)"},
        {"time below range in ms", "name = a\ninterval = 999ms\n", 0,
         "t.conf:2: interval: '999ms' is out of range (expected 1s to 1h)"},
        {"bad boolean", "name = a\nflag = maybe\n", 0,
         "t.conf:2: flag: invalid value 'maybe' (expected yes or no)"},
        {"bad enum lists the choices", "name = a\nmode = drop\n", 0,
         "t.conf:2: mode: invalid value 'drop' (expected reject, continue "
         "or discard)"},
        {"empty path", "name = a\ndir =\n", 0,
         "t.conf:2: dir: empty file name"},
        {"missing required key names the last line",
         "count = 5\n# the end\n\n", 0,
         "t.conf:3: missing required key 'name'"},
        {"missing required key without a final newline",
         "count = 5\nsize = 2k", 0, "t.conf:2: missing required key 'name'"},
        {"missing required key in an empty file", "", 0,
         "t.conf:1: missing required key 'name'"},
        {"control character", "name = a\x01z\n", 0,
         "t.conf:1: invalid control character 0x01"},
        {"NUL octet", "name = x\nnote = a\0b\n", 20,
         "t.conf:2: invalid control character 0x00"},
        {"long value is shortened in the message",
         "name = a\nflag = "
         "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy"
         "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy\n",
         0,
         "t.conf:2: flag: invalid value "
         "'yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy...' "
         "(expected yes or no)"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct cfg *c;
        struct err e;

        c = t_load("t.conf", cases[i].text, cases[i].len, &e);
        if (c != NULL) {
            cfg_free(c);
            unit_fail(cases[i].name, "loaded, want \"%s\"", cases[i].want);
        }
        unit_str_eq(cases[i].name, e.text, cases[i].want);
        unit_int_eq(cases[i].name, e.code, ERR_CONFIG);
    }
}

static void
test_cfg_limits(void **state)
{
    static const char *const names[] = {"line too long", "too many keys",
                                        "file too large"};
    static const char *const wants[] = {
        "big.conf:2: line longer than 4096 octets",
        "big.conf:1001: too many keys (limit 1000)",
        "big.conf: larger than 1048576 octets"};
    size_t len = 2 * 1024 * 1024, i, k, n;
    char *text = malloc(len + 1);

    (void)state;
    assert_non_null(text);
    for (i = 0; i < 3; i++) {
        struct cfg *c;
        struct err e;

        if (i == 0) {
            n = (size_t)snprintf(text, len, "name = a\nnote = ");
            memset(text + n, 'x', 4096);
            n += 4096;
        } else if (i == 1) {
            for (n = 0, k = 0; k < 1001; k++)
                n += (size_t)snprintf(text + n, len - n, "k%zu = v\n", k);
        } else {
            memset(text, '#', len);
            n = len;
        }
        c = t_load("big.conf", text, n, &e);
        if (c != NULL) {
            cfg_free(c);
            unit_fail(names[i], "loaded, want an error");
        }
        unit_str_eq(names[i], e.text, wants[i]);
    }
    free(text);
}

/* ------------------------------------------------------------ values */

enum t_get {
    T_STR,
    T_NUM,
    T_BOOL,
    T_ENUM,
    T_LIST, /* items joined with '|' */
};

static void
test_cfg_values(void **state)
{
    static const struct {
        const char *name;
        const char *path;
        const char *text;
        const char *key;
        enum t_get get;
        const char *want_str;
        long long want_num;
        unsigned want_line;
    } cases[] = {
        {"plain string", "t.conf", "name = relay one\n", "name", T_STR,
         "relay one", 0, 1},
        {"surrounding white space is dropped", "t.conf",
         "name   =\t  relay one \t\n", "name", T_STR, "relay one", 0, 1},
        {"CRLF line ends", "t.conf", "name = a\r\nnote = b\r\n", "note", T_STR,
         "b", 0, 2},
        {"'#' inside a value is kept", "t.conf", "name = a # not a comment\n",
         "name", T_STR, "a # not a comment", 0, 1},
        {"comment lines are skipped", "t.conf",
         "# name = x\n  # indented comment\nname = y\n", "name", T_STR, "y", 0,
         3},
        {"continuation lines join with one space", "t.conf",
         "name = a\n  b\n\t\tc  \n", "name", T_STR, "a b c", 0, 1},
        {"continuation across comments and blank lines", "t.conf",
         "name = a\n# note\n\n  b\n", "name", T_STR, "a b", 0, 1},
        {"continuation of an empty value", "t.conf", "name =\n    b\n", "name",
         T_STR, "b", 0, 1},
        {"empty string value", "t.conf", "name = a\nnote =\n", "note", T_STR,
         "", 0, 2},
        {"string default", "t.conf", "name = a\n", "greeting", T_STR,
         "hello world", 0, 0},
        {"string without default", "t.conf", "name = a\n", "note", T_STR, NULL,
         0, 0},
        {"relative path beside the file", "/etc/relaychain/t.conf",
         "name = a\ndir = stages\n", "dir", T_STR, "/etc/relaychain/stages", 0,
         2},
        {"absolute path as written", "/etc/relaychain/t.conf",
         "name = a\ndir = /srv/stages\n", "dir", T_STR, "/srv/stages", 0, 2},
        {"default path beside the file", "/etc/relaychain/t.conf",
         "name = a\n", "dir", T_STR, "/etc/relaychain/chain.d", 0, 0},
        {"path beside a file in /", "/t.conf", "name = a\n", "dir", T_STR,
         "/chain.d", 0, 0},
        {"path beside a file in the current directory", "t.conf", "name = a\n",
         "dir", T_STR, "chain.d", 0, 0},
        {"path beside a relative file", "etc/t.conf", "name = a\ndir = x/y\n",
         "dir", T_STR, "etc/x/y", 0, 2},
        {"negative int", "t.conf", "name = a\noffset = -42\n", "offset", T_NUM,
         NULL, -42, 2},
        {"int default", "t.conf", "name = a\n", "count", T_NUM, NULL, 10, 0},
        {"int at its maximum", "t.conf", "name = a\ncount = 100\n", "count",
         T_NUM, NULL, 100, 2},
        {"size in octets", "t.conf", "name = a\nsize = 2048\n", "size", T_NUM,
         NULL, 2048, 2},
        {"size k", "t.conf", "name = a\nsize = 10k\n", "size", T_NUM, NULL,
         10240, 2},
        {"size M upper case", "t.conf", "name = a\nsize = 10M\n", "size",
         T_NUM, NULL, 10485760, 2},
        {"size g", "t.conf", "name = a\nsize = 1g\n", "size", T_NUM, NULL,
         1073741824, 2},
        {"size default", "t.conf", "name = a\n", "size", T_NUM, NULL, 10485760,
         0},
        {"time in seconds by default", "t.conf", "name = a\ntimeout = 30\n",
         "timeout", T_NUM, NULL, 30000, 2},
        {"time s", "t.conf", "name = a\ntimeout = 30s\n", "timeout", T_NUM,
         NULL, 30000, 2},
        {"time ms", "t.conf", "name = a\ntimeout = 250ms\n", "timeout", T_NUM,
         NULL, 250, 2},
        {"time m", "t.conf", "name = a\ntimeout = 2m\n", "timeout", T_NUM,
         NULL, 120000, 2},
        {"time M is minutes too", "t.conf", "name = a\ntimeout = 2M\n",
         "timeout", T_NUM, NULL, 120000, 2},
        {"time h", "t.conf", "name = a\ntimeout = 1h\n", "timeout", T_NUM,
         NULL, 3600000, 2},
        {"time d", "t.conf", "name = a\ntimeout = 2d\n", "timeout", T_NUM,
         NULL, 172800000, 2},
        {"time w", "t.conf", "name = a\ntimeout = 1w\n", "timeout", T_NUM,
         NULL, 604800000, 2},
        {"time default", "t.conf", "name = a\n", "timeout", T_NUM, NULL,
         300000, 0},
        {"bool yes", "t.conf", "name = a\nflag = yes\n", "flag", T_BOOL, NULL,
         1, 2},
        {"bool TRUE", "t.conf", "name = a\nflag = TRUE\n", "flag", T_BOOL,
         NULL, 1, 2},
        {"bool on", "t.conf", "name = a\nflag = on\n", "flag", T_BOOL, NULL, 1,
         2},
        {"bool 1", "t.conf", "name = a\nflag = 1\n", "flag", T_BOOL, NULL, 1,
         2},
        {"bool No", "t.conf", "name = a\nflag = No\n", "flag", T_BOOL, NULL, 0,
         2},
        {"bool off", "t.conf", "name = a\nflag = off\n", "flag", T_BOOL, NULL,
         0, 2},
        {"bool default", "t.conf", "name = a\n", "flag", T_BOOL, NULL, 0, 0},
        {"enum index", "t.conf", "name = a\nmode = discard\n", "mode", T_ENUM,
         NULL, 2, 2},
        {"enum default", "t.conf", "name = a\n", "mode", T_ENUM, NULL, 0, 0},
        {"list with commas and white space", "t.conf",
         "name = a\nlist = one, two,three  four,,five\n", "list", T_LIST,
         "one|two|three|four|five", 5, 2},
        {"list over continuation lines", "t.conf",
         "name = a\nlist = one,\n  two\n\tthree,\n", "list", T_LIST,
         "one|two|three", 3, 2},
        {"empty list", "t.conf", "name = a\nlist =\n", "list", T_LIST, "", 0,
         2},
        {"list without default", "t.conf", "name = a\n", "list", T_LIST, "", 0,
         0},
    };
    size_t i, j;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *const *items;
        char joined[256];
        struct cfg *c;
        struct err e;
        size_t n, len;

        c = t_load(cases[i].path, cases[i].text, 0, &e);
        if (c == NULL)
            unit_fail(cases[i].name, "error \"%s\"", e.text);
        switch (cases[i].get) {
        case T_STR:
            unit_str_eq(cases[i].name, cfg_str(c, cases[i].key),
                        cases[i].want_str);
            break;
        case T_NUM:
            unit_int_eq(cases[i].name, cfg_num(c, cases[i].key),
                        cases[i].want_num);
            break;
        case T_BOOL:
            unit_int_eq(cases[i].name, cfg_bool(c, cases[i].key),
                        cases[i].want_num);
            break;
        case T_ENUM:
            unit_int_eq(cases[i].name, cfg_enum(c, cases[i].key),
                        cases[i].want_num);
            break;
        case T_LIST:
            n = cfg_list(c, cases[i].key, &items);
            unit_int_eq(cases[i].name, n, cases[i].want_num);
            joined[0] = '\0';
            for (j = 0, len = 0; j < n; j++)
                len += (size_t)snprintf(joined + len, sizeof(joined) - len,
                                        "%s%s", j ? "|" : "", items[j]);
            unit_str_eq(cases[i].name, joined, cases[i].want_str);
            if (items[n] != NULL)
                unit_fail(cases[i].name, "items not NULL-terminated");
            break;
        }
        unit_int_eq(cases[i].name, cfg_line(c, cases[i].key),
                    cases[i].want_line);
        unit_int_eq(cases[i].name, cfg_is_set(c, cases[i].key),
                    cases[i].want_line != 0);
        cfg_free(c);
    }
}

static void
test_cfg_value_parsers(void **state)
{
    static const struct {
        const char *text;
        int ok_size;
        long long size;
        int ok_time;
        long long ms;
    } cases[] = {
        {"0", 1, 0, 1, 0},
        {"1", 1, 1, 1, 1000},
        {"1k", 1, 1024, 0, 0},
        {"1K", 1, 1024, 0, 0},
        {"3m", 1, 3145728, 1, 180000},
        {"1ms", 0, 0, 1, 1},
        {"1MS", 0, 0, 1, 1},
        {"8589934591g", 1, 8589934591LL * 1073741824LL, 0, 0},
        {"8589934592g", 0, 0, 0, 0},
        {"9223372036854775807", 1, 9223372036854775807LL, 0, 0},
        {"9223372036854775808", 0, 0, 0, 0},
        {"9223372036854775807ms", 0, 0, 1, 9223372036854775807LL},
        {"15250284452w", 0, 0, 1, 15250284452LL * 604800000LL},
        {"15250284453w", 0, 0, 0, 0},
        {"", 0, 0, 0, 0},
        {"k", 0, 0, 0, 0},
        {" 1", 0, 0, 0, 0},
        {"1 ", 0, 0, 0, 0},
        {"+1", 0, 0, 0, 0},
        {"-1", 0, 0, 0, 0},
        {"1kb", 0, 0, 0, 0},
        {"1.5m", 0, 0, 0, 0},
        {"0x10", 0, 0, 0, 0},
    };
    static const struct {
        const char *text;
        int ok;
        int value;
    } bools[] = {
        {"yes", 1, 1}, {"Yes", 1, 1},     {"true", 1, 1},  {"on", 1, 1},
        {"1", 1, 1},   {"no", 1, 0},      {"FALSE", 1, 0}, {"off", 1, 0},
        {"0", 1, 0},   {"", 0, 0},        {"y", 0, 0},     {"yes ", 0, 0},
        {"2", 0, 0},   {"enabled", 0, 0},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        long long v = -7;
        int rc;

        rc = cfg_parse_size(cases[i].text, &v);
        unit_int_eq(cases[i].text, rc == 0, cases[i].ok_size);
        if (rc == 0)
            unit_int_eq(cases[i].text, v, cases[i].size);
        rc = cfg_parse_time(cases[i].text, &v);
        unit_int_eq(cases[i].text, rc == 0, cases[i].ok_time);
        if (rc == 0)
            unit_int_eq(cases[i].text, v, cases[i].ms);
    }
    for (i = 0; i < sizeof(bools) / sizeof(bools[0]); i++) {
        int b = -1, rc = cfg_parse_bool(bools[i].text, &b);

        unit_int_eq(bools[i].text, rc == 0, bools[i].ok);
        if (rc == 0)
            unit_int_eq(bools[i].text, b, bools[i].value);
    }
}

/* ------------------------------------------------------------ the rest */

static void
test_cfg_raw(void **state)
{
    const char *text = "# stage file\nstage = rewrite\nextra = 1\n  2\n";
    struct cfg *c;
    struct err e;

    (void)state;
    err_clear(&e);
    c = cfg_parse_text("10-x.conf", text, strlen(text), &e);
    assert_non_null(c);
    unit_str_eq("raw stage", cfg_raw(c, "stage"), "rewrite");
    unit_int_eq("raw stage line", cfg_raw_line(c, "stage"), 2);
    unit_str_eq("raw continued", cfg_raw(c, "extra"), "1 2");
    unit_str_eq("raw missing", cfg_raw(c, "nothing"), NULL);
    unit_int_eq("raw missing line", cfg_raw_line(c, "nothing"), 0);
    unit_str_eq("path", cfg_path(c), "10-x.conf");
    /* The undeclared key stops validation; the raw values stay readable. */
    unit_int_eq("validate", cfg_validate(c, t_tables, &e), -1);
    unit_str_eq("validate error", e.text, "10-x.conf:2: unknown key 'stage'");
    unit_str_eq("raw after failure", cfg_raw(c, "stage"), "rewrite");
    cfg_free(c);
}

static void
test_cfg_err(void **state)
{
    const char *text = "name = a\n\ncount = 7\n";
    struct cfg *c;
    struct err e;

    (void)state;
    c = t_load("/etc/relaychain/t.conf", text, 0, &e);
    assert_non_null(c);
    unit_int_eq("cfg_err returns -1",
                cfg_err(&e, c, "count", "must be odd, not %d", 7), -1);
    unit_str_eq("cfg_err set key", e.text,
                "/etc/relaychain/t.conf:3: count: must be odd, not 7");
    unit_int_eq("cfg_err code", e.code, ERR_CONFIG);
    cfg_err(&e, c, "dir", "cannot open");
    unit_str_eq("cfg_err default key", e.text,
                "/etc/relaychain/t.conf: dir (default): cannot open");
    /* The reason may quote the old error text. */
    cfg_err(&e, c, "count", "%s", e.text);
    unit_str_eq("cfg_err own text", e.text,
                "/etc/relaychain/t.conf:3: count: /etc/relaychain/t.conf: dir "
                "(default): cannot open");
    cfg_free(c);
}

static void
test_cfg_table_mistakes(void **state)
{
    static const struct cfg_option bad_default[] = {
        {"size", CFG_SIZE, "ten", "a size", NULL, 0, 0, 0},
        CFG_OPTION_END,
    };
    static const struct cfg_option *const twice[] = {t_options, t_options,
                                                     NULL};
    static const struct cfg_option *const bad[] = {bad_default, NULL};
    struct cfg *c;
    struct err e;

    (void)state;
    err_clear(&e);
    c = cfg_parse_text("t.conf", "", 0, &e);
    assert_non_null(c);
    unit_int_eq("bad default", cfg_validate(c, bad, &e), -1);
    unit_int_eq("bad default code", e.code, ERR_INTERNAL);
    unit_has("bad default", e.text, "size");
    unit_int_eq("declared twice", cfg_validate(c, twice, &e), -1);
    unit_int_eq("declared twice code", e.code, ERR_INTERNAL);
    unit_has("declared twice", e.text, "'greeting' declared twice");
    cfg_free(c);
}

static void
test_cfg_print(void **state)
{
    const char *text = "name = relay\nsize = 20m\nlist = a, b\n  c\n";
    const char *want = "  name = relay\n"
                       "  greeting = hello world (default)\n"
                       "  note = (not set)\n"
                       "  dir = /etc/relaychain/chain.d (default)\n"
                       "  count = 10 (default)\n"
                       "  offset = (not set)\n"
                       "  size = 20m\n"
                       "  timeout = 5m (default)\n"
                       "  interval = 1m (default)\n"
                       "  flag = no (default)\n"
                       "  mode = reject (default)\n"
                       "  list = a, b c\n";
    char *out = NULL;
    size_t outlen = 0;
    struct cfg *c;
    struct err e;
    FILE *fp;

    (void)state;
    c = t_load("/etc/relaychain/t.conf", text, 0, &e);
    assert_non_null(c);
    fp = open_memstream(&out, &outlen);
    assert_non_null(fp);
    cfg_print(c, fp, "  ");
    fclose(fp);
    unit_str_eq("cfg_print", out, want);
    free(out);
    cfg_free(c);
}

/* What "relaychain config" and "config -n" print: postconf's form. */
static void
test_cfg_print_values(void **state)
{
    const char *text = "name = relay\ndir = rules\nlist = a, b\n  c\n";
    static const char *const only[] = {"count", "dir", NULL};
    static const struct {
        const char *name;
        int set_only;
        const char *const *keys;
        const char *want;
    } cases[] = {
        {"all", 0, NULL,
         "name = relay\ngreeting = hello world\nnote =\ndir = rules\n"
         "count = 10\noffset =\nsize = 10m\ntimeout = 5m\ninterval = 1m\n"
         "flag = no\nmode = reject\nlist = a, b c\n"},
        {"set only", 1, NULL, "name = relay\ndir = rules\nlist = a, b c\n"},
        {"some keys", 0, only, "dir = rules\ncount = 10\n"},
        {"some keys, set only", 1, only, "dir = rules\n"},
    };
    struct cfg *c;
    struct err e;
    size_t i;

    (void)state;
    c = t_load("/etc/relaychain/t.conf", text, 0, &e);
    assert_non_null(c);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *out = NULL;
        size_t outlen = 0;
        FILE *fp = open_memstream(&out, &outlen);

        assert_non_null(fp);
        cfg_print_values(c, fp, cases[i].set_only, cases[i].keys);
        fclose(fp);
        unit_str_eq(cases[i].name, out, cases[i].want);
        free(out);
    }
    cfg_free(c);
}

/* An error whose text starts with a key of the file is told at that
 * key's line, without the key twice; other texts at the given key. */
static void
test_cfg_err_prefixed(void **state)
{
    const char *text = "name = relay\ncount = 5\n";
    static const struct {
        const char *text;
        const char *want;
    } cases[] = {
        {"count: too many", "/t.conf:2: count: too many"},
        {"name: bad", "/t.conf:1: name: bad"},
        {"nosuchkey: bad", "/t.conf:1: name: nosuchkey: bad"},
        {"no key here", "/t.conf:1: name: no key here"},
        {"", "/t.conf:1: name: "},
    };
    struct cfg *c;
    struct err e;
    size_t i;

    (void)state;
    c = t_load("/t.conf", text, 0, &e);
    assert_non_null(c);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err_set(&e, ERR_CONFIG, "%s", cases[i].text);
        unit_int_eq(cases[i].text, cfg_err_prefixed(&e, c, "name"), -1);
        unit_str_eq(cases[i].text, e.text, cases[i].want);
    }
    cfg_free(c);
}

/* The man page heading of each kind of key, escapes included. */
static void
test_confdoc_heading(void **state)
{
    static const char *const three[] = {"none", "may", "encrypt", NULL};
    static const struct {
        struct cfg_option o;
        const char *want;
    } cases[] = {
        {{"size_limit", CFG_SIZE, "10240000", "h", NULL, 1024,
          1024LL * 1024 * 1024, 0},
         ".BR size_limit \" (size, 1k to 1g; default: \" 10240000 )"},
        {{"pause", CFG_TIME, "0", "h", NULL, 0, 60000, 0},
         ".BR pause \" (time, 0 to 1m; default: \" 0 )"},
        {{"tls", CFG_ENUM, "may", "h", three, 0, 0, 0},
         ".BR tls \" (choice: \" none \", \" may \" or \" encrypt \"; "
         "default: \" may )"},
        {{"nets", CFG_LIST, "127.0.0.0/8 [::1]/128", "h", NULL, 0, 0, 0},
         ".BR nets \" (list; default: \" \"127.0.0.0/8 [::1]/128\" )"},
        {{"hop", CFG_STRING, NULL, "h", NULL, 0, 0, 0},
         ".BR hop \" (string)\""},
        {{"stage", CFG_STRING, NULL, "h", NULL, 0, 0, CFG_REQUIRED},
         ".BR stage \" (string; required)\""},
        {{"empty", CFG_STRING, "", "h", NULL, 0, 0, 0},
         ".BR empty \" (string; default: empty)\""},
        {{"hdrs", CFG_LIST, "Reply-To, \"x\"", "h", NULL, 0, 0, 0},
         ".BR hdrs \" (list; default: \" \"Reply\\-To, \"\"x\"\"\" )"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf b;
        struct err e;

        buf_init(&b, 0);
        assert_int_equal(confdoc_heading(&cases[i].o, &b, &e), 0);
        unit_str_eq(cases[i].o.name, buf_str(&b), cases[i].want);
        buf_fini(&b);
    }
}

/* confdoc_update on small pages: headings rewritten, prose kept, missing
 * keys added where they belong, stale and duplicate headings refused. */
static void
test_confdoc_update(void **state)
{
    static const struct {
        const char *name;
        const char *page;
        const char *want;     /* in the output, or NULL */
        const char *not_want; /* not in the output, or NULL */
        const char *error;    /* the error, or NULL */
    } cases[] = {
        {"heading regenerated, prose kept",
         ".SH MAIN SETTINGS\n.TP\n.B header_limit\nMy prose.\n",
         ".TP\n.BR header_limit \" (number, 1 to 100000; default: \" 1000 )"
         "\nMy prose.\n",
         NULL, NULL},
        {"a .TQ heading counts",
         ".SH MAIN SETTINGS\n.TP\n.B user\n.TQ\n.B group\nBoth.\n",
         ".TQ\n.BR group \" (string)\"\nBoth.\n",
         ".BR group \" (string)\"\n"
         "Group to run as",
         NULL},
        {"a missing key gets its help text at the end of MAIN SETTINGS",
         ".SH MAIN SETTINGS\nIntro.\n.SH OTHER\nText.\n",
         ".BR recipient_limit \" (number, 1 to 100000; default: \" 1000 )\n"
         "Recipients per message; more get 452 4.5.3.\n.TP\n",
         NULL, NULL},
        {"a missing stage section is made before EXAMPLES",
         ".SH MAIN SETTINGS\n.SH EXAMPLES\nx\n",
         ".SH STAGE antivirus\nThe\n.B antivirus\nstage: ", NULL, NULL},
        {"a heading with no key",
         ".SH MAIN SETTINGS\n.TP\n"
         ".BR header_limits \" (number; default: \" 5 )\nx\n",
         NULL, NULL, "t.5:3: a heading for header_limits, which is no key"},
        {"a key twice",
         ".SH MAIN SETTINGS\n.TP\n.B user\nx\n.SH MORE\n.TP\n.B user\ny\n",
         NULL, NULL, "t.5:7: key user is documented twice (first at line 3)"},
        {"a stage key in the main sections is not taken for one",
         ".SH MAIN SETTINGS\n.TP\n.B engine\nnot a main key\n",
         ".TP\n.B engine\nnot a main key\n", NULL, NULL},
        {"a hand-written default phrase is kept",
         ".SH COMMON STAGE SETTINGS\n.TP\n"
         ".BR match_sender \" (list; default: any sender)\"\nx\n",
         ".BR match_sender \" (list; default: any sender)\"\nx\n", NULL, NULL},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf b;
        struct err e;
        int rc;

        buf_init(&b, 0);
        err_clear(&e);
        rc = confdoc_update("t.5", cases[i].page, strlen(cases[i].page), &b,
                            &e);
        if (cases[i].error != NULL) {
            unit_int_eq(cases[i].name, rc, -1);
            unit_has(cases[i].name, e.text, cases[i].error);
        } else {
            if (rc != 0)
                unit_fail(cases[i].name, "error %s", e.text);
            if (cases[i].want != NULL)
                unit_has(cases[i].name, buf_str(&b), cases[i].want);
            if (cases[i].not_want != NULL &&
                strstr(buf_str(&b), cases[i].not_want) != NULL)
                unit_fail(cases[i].name, "got \"%s\", want no \"%s\"",
                          buf_str(&b), cases[i].not_want);
        }
        buf_fini(&b);
    }
}

static void
rm_tree(const char *dir, const char *const *names)
{
    char path[512];
    size_t i;

    for (i = 0; names[i] != NULL; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        if (unlink(path) < 0)
            rmdir(path);
    }
    rmdir(dir);
}

static void
test_cfg_parse_file(void **state)
{
    static const char *const names[] = {"t.conf", "big.conf", "sub", NULL};
    char dir[256], path[512], want[700];
    struct cfg *c;
    struct err e;
    FILE *fp;

    (void)state;
    assert_non_null(unit_tmpdir(dir, sizeof(dir)));
    assert_non_null(unit_write(dir, "t.conf", "name = a\ndir = sub\n", path,
                               sizeof(path)));
    err_clear(&e);
    c = cfg_parse(path, &e);
    if (c == NULL)
        unit_fail("readable file", "error \"%s\"", e.text);
    assert_int_equal(cfg_validate(c, t_tables, &e), 0);
    snprintf(want, sizeof(want), "%s/sub", dir);
    unit_str_eq("path beside the file", cfg_str(c, "dir"), want);
    cfg_free(c);

    snprintf(path, sizeof(path), "%s/none.conf", dir);
    assert_null(cfg_parse(path, &e));
    snprintf(want, sizeof(want), "%s: cannot open: No such file or directory",
             path);
    unit_str_eq("missing file", e.text, want);

    snprintf(path, sizeof(path), "%s/sub", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_null(cfg_parse(path, &e));
    snprintf(want, sizeof(want), "%s: not a regular file", path);
    unit_str_eq("directory", e.text, want);

    snprintf(path, sizeof(path), "%s/big.conf", dir);
    fp = fopen(path, "w");
    assert_non_null(fp);
    for (int i = 0; i < 1024 * 1024 / 8 + 1; i++)
        fputs("#######\n", fp);
    fclose(fp);
    assert_null(cfg_parse(path, &e));
    snprintf(want, sizeof(want), "%s: larger than 1048576 octets", path);
    unit_str_eq("file too large", e.text, want);
    rm_tree(dir, names);
}

/* ------------------------------------------------------------ conf */

static void
test_conf_load_errors(void **state)
{
    static const struct {
        const char *name;
        const char *text;
        const char *want; /* after "DIR/relaychain.conf" */
    } cases[] = {
        {"bad syslog_facility at its line",
         "message_size_limit = 20m\nsyslog_facility = mial\n",
         ":2: syslog_facility: unknown facility 'mial' (expected mail, "
         "daemon, user or local0 to local7)"},
        {"empty syslog_name", "syslog_name =\n",
         ":1: syslog_name: empty name"},
        {"misspelt key", "# limits\nmesage_size_limit = 20m\n",
         ":2: unknown key 'mesage_size_limit' (did you mean "
         "'message_size_limit'?)"},
        {"bad size", "message_size_limit = 10Q\n",
         ":1: message_size_limit: invalid size '10Q' (expected a number "
         "with optional k, m or g)"},
        {"line_length_limit below 78", "line_length_limit = 50\n",
         ":1: line_length_limit: '50' is out of range (expected 78 to "
         "1000000)"},
        {"bad ambiguous_mime_action", "ambiguous_mime_action = accept\n",
         ":1: ambiguous_mime_action: invalid value 'accept' (expected reject "
         "or continue)"},
        {"missing chain_directory at its line",
         "header_limit = 50\nchain_directory = nowhere\n",
         ":2: chain_directory: DIR/nowhere: No such file or directory"},
        {"default chain_directory missing", "header_limit = 50\n",
         ": chain_directory (default): DIR/chain.d: No such file or "
         "directory"},
        {"chain_directory is a file", "chain_directory = relaychain.conf\n",
         ":1: chain_directory: DIR/relaychain.conf: not a directory"},
    };
    static const char *const names[] = {"relaychain.conf", NULL};
    char dir[256], path[512], want[1024], tail[512];
    size_t i;

    (void)state;
    assert_non_null(unit_tmpdir(dir, sizeof(dir)));
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *w = cases[i].want, *d;
        struct conf *cf;
        struct err e;

        assert_non_null(unit_write(dir, "relaychain.conf", cases[i].text, path,
                                   sizeof(path)));
        /* Put the directory in for "DIR". */
        if ((d = strstr(w, "DIR")) != NULL)
            snprintf(tail, sizeof(tail), "%.*s%s%s", (int)(d - w), w, dir,
                     d + 3);
        else
            snprintf(tail, sizeof(tail), "%s", w);
        snprintf(want, sizeof(want), "%s%s", path, tail);
        err_clear(&e);
        cf = conf_load(path, parts_all, &e);
        if (cf != NULL) {
            conf_free(cf);
            unit_fail(cases[i].name, "loaded, want \"%s\"", want);
        }
        unit_str_eq(cases[i].name, e.text, want);
        unit_int_eq(cases[i].name, e.code, ERR_CONFIG);
    }
    rm_tree(dir, names);
}

static void
test_conf_load_ok(void **state)
{
    static const char *const names[] = {"relaychain.conf", "chain.d", "alt",
                                        NULL};
    const struct stage *const *st;
    char dir[256], path[512], sub[512];
    struct conf *cf;
    struct err e;

    (void)state;
    assert_non_null(unit_tmpdir(dir, sizeof(dir)));
    snprintf(sub, sizeof(sub), "%s/chain.d", dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    snprintf(sub, sizeof(sub), "%s/alt", dir);
    assert_int_equal(mkdir(sub, 0700), 0);

    /* Defaults, as documented in relaychain.conf(5). */
    assert_non_null(unit_write(dir, "relaychain.conf", "# all defaults\n",
                               path, sizeof(path)));
    err_clear(&e);
    if ((cf = conf_load(path, parts_all, &e)) == NULL)
        unit_fail("defaults", "error \"%s\"", e.text);
    unit_int_eq("default message_size_limit", cf->limits.message_size,
                10240000);
    unit_int_eq("default header_limit", cf->limits.header_count, 1000);
    unit_int_eq("default line_length_limit", cf->limits.line_length, 998);
    unit_int_eq("default mime_depth_limit", cf->limits.mime_depth, 20);
    unit_int_eq("default mime_part_limit", cf->limits.mime_parts, 1000);
    unit_int_eq("default ambiguous_mime_action", cf->ambiguous,
                CHAIN_AMBIGUOUS_REJECT);
    unit_int_eq("default smtpd_per_record_deadline",
                cfg_bool(cf->cfg, "smtpd_per_record_deadline"), 1);
    unit_int_eq("empty chain", chain_stages(cf->chain, &st), 0);
    snprintf(sub, sizeof(sub), "%s/chain.d", dir);
    unit_str_eq("chain_directory beside the file",
                cfg_str(cf->cfg, "chain_directory"), sub);
    conf_free(cf);

    assert_non_null(unit_write(dir, "relaychain.conf",
                               "message_size_limit = 50m\n"
                               "header_limit = 200\n"
                               "line_length_limit = 2000\n"
                               "mime_depth_limit = 5\n"
                               "mime_part_limit = 64\n"
                               "syslog_facility = local3\n"
                               "syslog_name = relay-out\n"
                               "ambiguous_mime_action = continue\n"
                               "smtpd_per_record_deadline = no\n"
                               "chain_directory = alt\n",
                               path, sizeof(path)));
    if ((cf = conf_load(path, parts_all, &e)) == NULL)
        unit_fail("every key", "error \"%s\"", e.text);
    unit_int_eq("message_size_limit", cf->limits.message_size, 52428800);
    unit_int_eq("header_limit", cf->limits.header_count, 200);
    unit_int_eq("line_length_limit", cf->limits.line_length, 2000);
    unit_int_eq("mime_depth_limit", cf->limits.mime_depth, 5);
    unit_int_eq("mime_part_limit", cf->limits.mime_parts, 64);
    unit_int_eq("ambiguous_mime_action", cf->ambiguous,
                CHAIN_AMBIGUOUS_CONTINUE);
    unit_str_eq("syslog_name", cfg_str(cf->cfg, "syslog_name"), "relay-out");
    unit_int_eq("smtpd_per_record_deadline",
                cfg_bool(cf->cfg, "smtpd_per_record_deadline"), 0);
    snprintf(sub, sizeof(sub), "%s/alt", dir);
    unit_str_eq("chain_directory", cfg_str(cf->cfg, "chain_directory"), sub);
    conf_free(cf);
    rm_tree(dir, names);
}

/* ------------------------------------------------------ conf parts */

static int t_part_checked;

static int
t_part_check(const struct cfg *c, struct err *e)
{
    t_part_checked++;
    if (cfg_num(c, "zz_count") > 5)
        return cfg_err(e, c, "zz_count", "more than 5 with user %s",
                       cfg_str(c, "user") ? cfg_str(c, "user") : "unset");
    return 0;
}

static const struct cfg_option t_part_options[] = {
    {"zz_count", CFG_INT, "1", "a key of a test layer", NULL, 0, 10, 0},
    {"aa_flag", CFG_BOOL, "no", "another", NULL, 0, 0, 0},
    CFG_OPTION_END,
};

static const struct conf_part t_part = {"test", t_part_options, t_part_check};

static const struct cfg_option t_twice_options[] = {
    {"user", CFG_STRING, NULL, "declared by conf_options already", NULL, 0, 0,
     0},
    CFG_OPTION_END,
};

static const struct conf_part t_twice = {"twice", t_twice_options, NULL};

/* The loader takes the keys and checks of the layers it is handed, and
 * only those; keys the fixed order does not name come last, in the
 * order of their parts. */
static void
test_conf_parts(void **state)
{
    static const char *const names[] = {"relaychain.conf", "chain.d", NULL};
    const struct conf_part *const mine[] = {&t_part, NULL};
    const struct conf_part *const both[] = {&t_part, &t_twice, NULL};
    char dir[256], path[512], want[1024];
    struct cfg_option *all;
    struct conf *cf;
    struct err e;
    size_t n;

    (void)state;
    assert_non_null(all = conf_options_merge(mine, &e));
    unit_str_eq("first key", all[0].name, "chain_directory");
    for (n = 0; all[n].name != NULL; n++)
        ;
    unit_str_eq("unnamed keys last", all[n - 2].name, "zz_count");
    unit_str_eq("in their part's order", all[n - 1].name, "aa_flag");
    free(all);
    err_clear(&e);
    unit_int_eq("declared twice", conf_options_merge(both, &e) == NULL, 1);
    unit_str_eq("declared twice", e.text, "key 'user' declared twice");

    /* The standard parts: every key has its place in the fixed order. */
    assert_non_null(all = conf_options_merge(parts_all, &e));
    unit_str_eq("standard: first", all[0].name, "chain_directory");
    for (n = 0; all[n].name != NULL; n++)
        ;
    unit_str_eq("standard: last", all[n - 1].name, "milter_size_action");
    free(all);

    assert_non_null(unit_tmpdir(dir, sizeof(dir)));
    snprintf(path, sizeof(path), "%s/chain.d", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_non_null(unit_write(dir, "relaychain.conf",
                               "zz_count = 7\nsmtp_listen = 127.0.0.1:25\n",
                               path, sizeof(path)));
    err_clear(&e);
    unit_int_eq("no smtpd part", conf_load(path, mine, &e) == NULL, 1);
    snprintf(want, sizeof(want), "%s:2: unknown key 'smtp_listen'", path);
    unit_str_eq("no smtpd part", e.text, want);

    assert_non_null(unit_write(dir, "relaychain.conf", "zz_count = 7\n", path,
                               sizeof(path)));
    t_part_checked = 0;
    err_clear(&e);
    unit_int_eq("part's check", conf_load(path, mine, &e) == NULL, 1);
    snprintf(want, sizeof(want), "%s:1: zz_count: more than 5 with user unset",
             path);
    unit_str_eq("part's check", e.text, want);
    unit_int_eq("checked once", t_part_checked, 1);

    assert_non_null(unit_write(dir, "relaychain.conf", "zz_count = 3\n", path,
                               sizeof(path)));
    if ((cf = conf_load(path, mine, &e)) == NULL)
        unit_fail("part's key", "error \"%s\"", e.text);
    unit_int_eq("part's key", cfg_num(cf->cfg, "zz_count"), 3);
    conf_free(cf);
    rm_tree(dir, names);
}

/* The one rule for secret files: what each forbidden bit lets others do,
 * and the chmod that fixes it. */
static void
test_cfg_secret(void **state)
{
    static const mode_t others = S_IROTH | S_IWOTH;
    static const mode_t group = S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH;
    static const struct {
        mode_t mode, forbidden;
        const char *want; /* NULL: private enough */
    } cases[] = {
        {0600, group, NULL},
        {0640, others, NULL},
        {0640, group,
         "/etc/relaychain/k: mode 0640 lets its group read it; the key must "
         "stay private: run chmod 600 /etc/relaychain/k"},
        {0644, others,
         "/etc/relaychain/k: mode 0644 lets all other users read it; the key "
         "must stay private: run chmod 640 /etc/relaychain/k"},
        {0644, group,
         "/etc/relaychain/k: mode 0644 lets its group and all other users "
         "read it; the key must stay private: run chmod 600 "
         "/etc/relaychain/k"},
        {0602, others,
         "/etc/relaychain/k: mode 0602 lets other users write it; the key "
         "must stay private: run chmod 600 /etc/relaychain/k"},
        {0666, others,
         "/etc/relaychain/k: mode 0666 lets other users read and write it; "
         "the key must stay private: run chmod 660 /etc/relaychain/k"},
    };
    const char *path = "/etc/relaychain/k";
    struct stat st;
    struct err e;
    size_t i;

    (void)state;
    memset(&st, 0, sizeof(st));
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char name[32];

        snprintf(name, sizeof(name), "%04o/%04o", (unsigned)cases[i].mode,
                 (unsigned)cases[i].forbidden);
        st.st_mode = S_IFREG | cases[i].mode;
        err_clear(&e);
        if (cases[i].want == NULL) {
            unit_int_eq(
                name,
                cfg_secret_check(path, &st, cases[i].forbidden, "the key", &e),
                0);
            continue;
        }
        unit_int_eq(
            name,
            cfg_secret_check(path, &st, cases[i].forbidden, "the key", &e),
            -1);
        unit_str_eq(name, e.text, cases[i].want);
        unit_int_eq(name, e.code, ERR_CONFIG);
    }
}

/* cfg_open_dir follows root's links only, and names what it refuses. */
static void
test_cfg_open_dir(void **state)
{
    char dir[256], path[512], want[1024];
    struct err e;
    int fd;

    (void)state;
    if (geteuid() != 0)
        skip();
    assert_non_null(unit_tmpdir(dir, sizeof(dir)));
    snprintf(path, sizeof(path), "%s/real", dir);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/rootlink", dir);
    assert_int_equal(symlink("real", path), 0);
    snprintf(path, sizeof(path), "%s/userlink", dir);
    assert_int_equal(symlink("real", path), 0);
    assert_int_equal(lchown(path, 65534, 65534), 0);
    unit_write(dir, "file", "x\n", path, sizeof(path));

    snprintf(path, sizeof(path), "%s/real", dir);
    fd = cfg_open_dir(path, &e);
    unit_int_eq("real", fd >= 0, 1);
    if (fd >= 0)
        close(fd);
    snprintf(path, sizeof(path), "%s//rootlink/", dir);
    fd = cfg_open_dir(path, &e);
    unit_int_eq("root's link", fd >= 0, 1);
    if (fd >= 0)
        close(fd);
    snprintf(path, sizeof(path), "%s/userlink", dir);
    unit_int_eq("user's link", cfg_open_dir(path, &e), -1);
    snprintf(want, sizeof(want),
             "%s: userlink is a symbolic link owned by uid 65534, not root: "
             "refused (name the real directory)",
             path);
    unit_str_eq("user's link", e.text, want);
    snprintf(path, sizeof(path), "%s/rootlink/../userlink/x", dir);
    unit_int_eq("user's link, further on", cfg_open_dir(path, &e), -1);
    unit_has("user's link, further on", e.text, "owned by uid 65534");
    snprintf(path, sizeof(path), "%s/file", dir);
    unit_int_eq("file", cfg_open_dir(path, &e), -1);
    unit_has("file", e.text, "file is not a directory");
    snprintf(path, sizeof(path), "%s/missing", dir);
    unit_int_eq("missing", cfg_open_dir(path, &e), -1);
    unit_has("missing", e.text, "No such file");
    unit_rmtree(dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cfg_secret),
        cmocka_unit_test(test_cfg_open_dir),
        cmocka_unit_test(test_cfg_errors),
        cmocka_unit_test(test_cfg_limits),
        cmocka_unit_test(test_cfg_values),
        cmocka_unit_test(test_cfg_value_parsers),
        cmocka_unit_test(test_cfg_raw),
        cmocka_unit_test(test_cfg_err),
        cmocka_unit_test(test_cfg_table_mistakes),
        cmocka_unit_test(test_cfg_print),
        cmocka_unit_test(test_cfg_print_values),
        cmocka_unit_test(test_cfg_err_prefixed),
        cmocka_unit_test(test_confdoc_heading),
        cmocka_unit_test(test_confdoc_update),
        cmocka_unit_test(test_cfg_parse_file),
        cmocka_unit_test(test_conf_load_errors),
        cmocka_unit_test(test_conf_load_ok),
        cmocka_unit_test(test_conf_parts),
    };

    /* The stage types, as relaychain hands them to the chain. */
    registry_set(&flt_registry);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
