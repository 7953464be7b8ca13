/*
 * test_buf - bounded buffers never grow past their limit
 */
#include "config.h"

#include "unit.h"

#include "util/buf.h"

static void
test_buf_limits(void **state)
{
    static const struct {
        const char *name;
        size_t limit;
        const char *parts[4];
        int want_rc[4];
        const char *want;
    } cases[] = {
        {"fits", 8, {"abc", "defgh", NULL}, {0, 0}, "abcdefgh"},
        {"one over", 8, {"abcd", "efghi", "x", NULL}, {0, -1, 0}, "abcdx"},
        {"unbounded", 0, {"a", "b", NULL}, {0, 0}, "ab"},
        {"empty append", 1, {"", "a", "b", NULL}, {0, 0, -1}, "a"},
    };
    size_t i, j;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf b;
        struct err e;

        err_clear(&e);
        buf_init(&b, cases[i].limit);
        for (j = 0; cases[i].parts[j] != NULL; j++) {
            int rc = buf_puts(&b, cases[i].parts[j], &e);

            unit_int_eq(cases[i].name, rc, cases[i].want_rc[j]);
            if (rc < 0)
                unit_int_eq(cases[i].name, e.code, ERR_LIMIT);
        }
        unit_str_eq(cases[i].name, buf_str(&b), cases[i].want);
        unit_int_eq(cases[i].name, b.len, strlen(cases[i].want));
        buf_fini(&b);
    }
}

static void
test_buf_printf_and_steal(void **state)
{
    struct buf b;
    struct err e;
    size_t len;
    char *s;

    (void)state;
    buf_init(&b, 16);
    assert_int_equal(buf_printf(&b, &e, "%s=%d", "n", 42), 0);
    unit_str_eq("printf", buf_str(&b), "n=42");
    assert_int_equal(buf_printf(&b, &e, "%s", "0123456789abcdef"), -1);
    unit_str_eq("printf over limit leaves contents", buf_str(&b), "n=42");
    s = buf_steal(&b, &len);
    unit_str_eq("steal", s, "n=42");
    unit_int_eq("steal len", len, 4);
    unit_str_eq("after steal", buf_str(&b), "");
    free(s);
    s = buf_steal(&b, &len);
    unit_str_eq("steal of empty", s, "");
    free(s);
    buf_fini(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_buf_limits),
        cmocka_unit_test(test_buf_printf_and_steal),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
