/*
 * test_splice - new bytes in place of ranges, and the offsets refused
 *
 * Each case splices "0123456789" from an offset; a good set must give
 * the bytes named, a bad one ERR_INTERNAL with the output untouched.
 */
#include "config.h"

#include "unit.h"

#include "msg/splice.h"

#define SP(s, e, text)                                                        \
    {                                                                         \
        (s), (e), (text), sizeof(text) - 1                                    \
    }

static void
test_splice_cases(void **state)
{
    static const struct {
        const char *name;
        size_t from;
        size_t n;
        struct splice sp[3];
        const char *want; /* NULL: refused */
        size_t limit;
    } cases[] = {
        {"none", 0, 0, {{0, 0, NULL, 0}}, "0123456789", 0},
        {"from", 4, 0, {{0, 0, NULL, 0}}, "456789", 0},
        {"replace", 0, 1, {SP(2, 4, "ab")}, "01ab456789", 0},
        {"delete", 0, 1, {SP(0, 10, "")}, "", 0},
        {"insert at end", 0, 1, {SP(10, 10, "!")}, "0123456789!", 0},
        {"unsorted", 3, 2, {SP(8, 9, "E"), SP(3, 4, "B")}, "B4567E9", 0},
        {"insert before replace",
         0,
         2,
         {SP(5, 7, "X"), SP(5, 5, "i")},
         "01234iX789",
         0},
        {"two inserts",
         0,
         2,
         {SP(1, 1, "a"), SP(1, 1, "a")},
         "0aa123456789",
         0},
        {"adjacent", 0, 2, {SP(2, 4, "x"), SP(4, 6, "y")}, "01xy6789", 0},
        {"overlap", 0, 2, {SP(2, 5, "x"), SP(4, 6, "y")}, NULL, 0},
        {"nested", 0, 2, {SP(2, 8, "x"), SP(4, 6, "y")}, NULL, 0},
        {"backwards", 0, 1, {SP(6, 4, "x")}, NULL, 0},
        {"past the end", 0, 1, {SP(8, 11, "x")}, NULL, 0},
        {"start past the end", 0, 1, {SP(11, 11, "x")}, NULL, 0},
        {"before from", 5, 1, {SP(4, 6, "x")}, NULL, 0},
        {"from past the end", 11, 0, {{0, 0, NULL, 0}}, NULL, 0},
        {"huge end", 0, 1, {SP(2, (size_t)-1, "x")}, NULL, 0},
        {"no data", 0, 1, {{2, 3, NULL, 4}}, NULL, 0},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct splice sp[3];
        struct buf out;
        struct err e;
        int rc;

        err_clear(&e);
        buf_init(&out, cases[i].limit);
        memcpy(sp, cases[i].sp, sizeof(sp));
        rc = splice_apply("0123456789", 10, cases[i].from, sp, cases[i].n,
                          &out, &e);
        if (cases[i].want == NULL) {
            unit_int_eq(cases[i].name, rc, -1);
            unit_int_eq(cases[i].name, e.code, ERR_INTERNAL);
            unit_int_eq(cases[i].name, (int)out.len, 0);
        } else {
            unit_int_eq(cases[i].name, rc, 0);
            unit_str_eq(cases[i].name, out.data ? out.data : "",
                        cases[i].want);
        }
        buf_fini(&out);
    }
}

/* The limit of out applies: ERR_LIMIT, not an internal error. */
static void
test_splice_limit(void **state)
{
    struct splice sp[1] = {SP(2, 3, "abcdef")};
    struct buf out;
    struct err e;

    (void)state;
    err_clear(&e);
    buf_init(&out, 12);
    unit_int_eq("limit", splice_apply("0123456789", 10, 0, sp, 1, &out, &e),
                -1);
    unit_int_eq("limit", e.code, ERR_LIMIT);
    buf_fini(&out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_splice_cases),
        cmocka_unit_test(test_splice_limit),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
