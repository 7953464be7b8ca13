/*
 * test_antispam_rspamd - the rspamd engine's reply reader and its
 *     server strings
 *
 * The replies of tests/data/antispam/rspamd-*.json were captured from
 * Debian's rspamd 3.4 (GTUBE, a plain message, the same from an
 * authenticated user, an unknown command); the rest of the table are
 * the shapes a broken or foreign server could send. The symbols come
 * highest score first, whole names only, in printable ASCII.
 * Then create's checks of the server string, without connecting.
 */
#include "config.h"

#include "unit.h"

#include "filters/antispam/antispam_int.h"

struct parse_case {
    const char *name;
    const char *file; /* under tests/data/antispam, or NULL: text */
    const char *text;
    int rc;
    double score, required;
    const char *symbols; /* exact, or NULL: not checked */
    const char *has;     /* the symbols, or with rc -1 the error, hold it */
};

static const struct parse_case parse_cases[] = {
    {"gtube", "rspamd-gtube.json", NULL, 0, 15.0, 15.0, "GTUBE", NULL},
    {"plain", "rspamd-plain.json", NULL, 0, 5.0, 15.0, NULL,
     "HFILTER_HOSTNAME_UNKNOWN,HFILTER_FROMHOST_NORES_A_OR_MX,RDNS_NONE,"
     "ONCE_RECEIVED,"},
    {"authenticated", "rspamd-auth.json", NULL, 0, -0.1, 15.0,
     "ARC_NA,ASN_FAIL,DBL_FAIL,FROM_EQ_ENVFROM,FROM_HAS_DN,"
     "MID_RHS_MATCH_FROM,MIME_TRACE,RCPT_COUNT_ONE,RCVD_COUNT_ZERO,"
     "SURBL_MULTI_FAIL,TO_DN_NONE,TO_MATCH_ENVRCPT_ALL,URIBL_MULTI_FAIL,"
     "MIME_GOOD",
     NULL},
    {"rspamd error object", "rspamd-error.json", NULL, -1, 0, 0, NULL,
     "rspamd error: invalid command"},
    {"integers", NULL, "{\"score\":3,\"required_score\":6}", 0, 3, 6, "",
     NULL},
    {"order and ties", NULL,
     "{\"score\":1,\"required_score\":6,\"symbols\":{"
     "\"B\":{\"score\":1},\"A\":{\"score\":1},\"NEG\":{\"score\":-2},"
     "\"TOP\":{\"score\":4.5},\"ZERO\":{}}}",
     0, 1, 6, "TOP,A,B,ZERO,NEG", NULL},
    {"names made printable", NULL,
     "{\"score\":0,\"required_score\":6,\"symbols\":{"
     "\"A,B\":{},\"C D\":{},\"\\u00e9\\n\":{},\"\":{}}}",
     0, 0, 6, "A_B,C_D,___", NULL},
    {"whitespace around", NULL, " \n{\"score\":1,\"required_score\":2}\r\n", 0,
     1, 2, "", NULL},
    {"no score", NULL, "{\"required_score\":15.0,\"symbols\":{}}", -1, 0, 0,
     NULL, "no score"},
    {"score a string", NULL, "{\"score\":\"9\",\"required_score\":15.0}", -1,
     0, 0, NULL, "no score"},
    {"no required_score", NULL, "{\"score\":1.0}", -1, 0, 0, NULL,
     "no required_score"},
    {"NaN score", NULL, "{\"score\":NaN,\"required_score\":15.0}", -1, 0, 0,
     NULL, "no score"},
    {"infinite", NULL, "{\"score\":1,\"required_score\":-Infinity}", -1, 0, 0,
     NULL, "no required_score"},
    {"not an object", NULL, "[1,2]", -1, 0, 0, NULL, "not a JSON object"},
    {"truncated", NULL, "{\"score\":1.0,\"requi", -1, 0, 0, NULL, "truncated"},
    {"garbage", NULL, "HTTP/1.1 200 OK", -1, 0, 0, NULL, "not JSON"},
    {"trailing data", NULL, "{\"score\":1,\"required_score\":2} x", -1, 0, 0,
     NULL, "data after"},
    {"empty", NULL, "", -1, 0, 0, NULL, "rspamd reply"},
    {"too deep", NULL,
     "{\"score\":1,\"required_score\":2,\"x\":[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]"
     "]]]]]]]]]]}",
     -1, 0, 0, NULL, "not JSON"},
    {"symbols not an object", NULL,
     "{\"score\":1,\"required_score\":2,\"symbols\":[\"X\"]}", 0, 1, 2, "",
     NULL},
};

static char *
read_data(const char *file, size_t *len)
{
    char path[1024], name[256];
    char *buf;
    FILE *fp;
    long n;

    snprintf(name, sizeof(name), "antispam/%s", file);
    fp = fopen(unit_data(name, path, sizeof(path)), "rb");
    if (fp == NULL)
        return NULL;
    fseek(fp, 0, SEEK_END);
    n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    if (buf != NULL && fread(buf, 1, (size_t)n, fp) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(fp);
    if (buf != NULL) {
        buf[n] = '\0';
        *len = (size_t)n;
    }
    return buf;
}

static void
test_parse(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
        const struct parse_case *c = &parse_cases[i];
        struct flt_as_answer a;
        struct err e;
        char *text;
        size_t len = 0;
        int rc;

        if (c->file != NULL) {
            text = read_data(c->file, &len);
            if (text == NULL)
                unit_fail(c->name, "cannot read %s", c->file);
        } else {
            len = strlen(c->text);
            text = malloc(len + 1);
            assert_non_null(text);
            memcpy(text, c->text, len); /* no NUL after it */
        }
        err_clear(&e);
        memset(&a, 'X', sizeof(a));
        rc = flt_as_rspamd_parse(text, len, &a, &e);
        unit_int_eq(c->name, rc, c->rc);
        if (rc == 0) {
            if (a.score < c->score - 0.001 || a.score > c->score + 0.001 ||
                a.required != c->required)
                unit_fail(c->name, "got %g/%g, want %g/%g", a.score,
                          a.required, c->score, c->required);
            if (c->symbols != NULL)
                unit_str_eq(c->name, a.symbols, c->symbols);
            if (c->has != NULL)
                unit_has(c->name, a.symbols, c->has);
        } else {
            unit_int_eq(c->name, e.code != ERR_NONE, 1);
            unit_has(c->name, e.text, c->has);
        }
        free(text);
    }
}

/* Many long names: whole names only, within the buffer, shorter ones
 * that still fit after a long one that did not. */
static void
test_symbols_cut(void **state)
{
    char json[64 * 1024], name[300];
    struct flt_as_answer a;
    struct err e;
    size_t n = 0, i, k;

    (void)state;
    n += (size_t)snprintf(json + n, sizeof(json) - n,
                          "{\"score\":20,\"required_score\":15,\"symbols\":{");
    for (i = 0; i < 40; i++) {
        memset(name, 'A' + (int)(i % 26), 250);
        name[250] = '\0';
        n += (size_t)snprintf(json + n, sizeof(json) - n,
                              "\"%s%zu\":{\"score\":%zu},", name, i, 100 - i);
    }
    n += (size_t)snprintf(json + n, sizeof(json) - n,
                          "\"SHORT\":{\"score\":0}}}");
    err_clear(&e);
    assert_int_equal(flt_as_rspamd_parse(json, n, &a, &e), 0);
    k = strlen(a.symbols);
    assert_true(k < sizeof(a.symbols));
    unit_has("cut", a.symbols, ",SHORT");
    assert_int_equal(a.symbols[0], 'A');
    for (i = 0; i < k; i++)
        assert_true(a.symbols[i] > 0x20 && a.symbols[i] < 0x7f);
}

struct create_case {
    const char *name;
    const char *server;
    int timeout_ms;
    int ok;
    const char *has; /* in the error */
};

static const struct create_case create_cases[] = {
    {"host:port", "127.0.0.1:11333", 1000, 1, NULL},
    {"name:port", "rspamd.example.com:11333", 1000, 1, NULL},
    {"IPv6", "[::1]:11333", 1000, 1, NULL},
    {"unix", "unix:/run/rspamd/normal.sock", 1000, 1, NULL},
    {"no port", "127.0.0.1", 1000, 0, "want host:port"},
    {"port 0", "127.0.0.1:0", 1000, 0, "bad port"},
    {"port too big", "127.0.0.1:65536", 1000, 0, "bad port"},
    {"port not a number", "127.0.0.1:http", 1000, 0, "bad port"},
    {"bare IPv6", "::1:11333", 1000, 0, "want host:port"},
    {"IPv6 no port", "[::1]", 1000, 0, "[IPv6]:port"},
    {"IPv6 junk", "[::1/x]:1", 1000, 0, "bad IPv6"},
    {"URL chars", "a/b@c:1", 1000, 0, "bad host"},
    {"relative unix", "unix:rspamd.sock", 1000, 0, "absolute"},
    {"empty", "", 1000, 0, "no server"},
    {"timeout 0", "127.0.0.1:1", 0, 0, "timeout"},
};

static void
test_create(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(create_cases) / sizeof(create_cases[0]); i++) {
        const struct create_case *c = &create_cases[i];
        struct err e;
        void *eng;

        err_clear(&e);
        eng = flt_as_rspamd_ops.create(c->server, c->timeout_ms, &e);
        unit_int_eq(c->name, eng != NULL, c->ok);
        if (eng != NULL)
            flt_as_rspamd_ops.destroy(eng);
        else {
            unit_int_eq(c->name, e.code, ERR_CONFIG);
            unit_has(c->name, e.text, c->has);
        }
    }
    unit_str_eq("name", flt_as_rspamd_ops.name, "rspamd");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_symbols_cut),
        cmocka_unit_test(test_create),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
