/*
 * unit.h - what the cmocka unit tests share
 *
 * Tests are table-driven: a static array of cases with named fields, one
 * loop, and failure messages of the form "case NAME: got X, want Y" so a
 * failing run says what differs without a debugger.
 *
 * unit_data() gives the path of a file under tests/data, found through
 * $top_srcdir (set by "make check") or the current directory.
 */
#ifndef RC_UNIT_H
#define RC_UNIT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* unit_fail - print "case NAME: ..." and fail the current test. */
#define unit_fail(name, ...)                                                  \
    do {                                                                      \
        print_error("case %s: ", (name));                                     \
        print_error(__VA_ARGS__);                                             \
        print_error("\n");                                                    \
        fail();                                                               \
    } while (0)

/* unit_str_eq - fail with got/want when two strings differ. */
#define unit_str_eq(name, got, want)                                          \
    do {                                                                      \
        const char *unit_g_ = (got), *unit_w_ = (want);                       \
        if ((unit_g_ == NULL) != (unit_w_ == NULL) ||                         \
            (unit_g_ != NULL && strcmp(unit_g_, unit_w_) != 0))               \
            unit_fail((name), "got \"%s\", want \"%s\"",                      \
                      unit_g_ ? unit_g_ : "(null)",                           \
                      unit_w_ ? unit_w_ : "(null)");                          \
    } while (0)

#define unit_int_eq(name, got, want)                                          \
    do {                                                                      \
        long long unit_g_ = (long long)(got), unit_w_ = (long long)(want);    \
        if (unit_g_ != unit_w_)                                               \
            unit_fail((name), "got %lld, want %lld", unit_g_, unit_w_);       \
    } while (0)

/* unit_has - fail unless needle occurs in haystack. */
#define unit_has(name, haystack, needle)                                      \
    do {                                                                      \
        const char *unit_h_ = (haystack), *unit_n_ = (needle);                \
        if (unit_h_ == NULL || strstr(unit_h_, unit_n_) == NULL)              \
            unit_fail((name), "got \"%s\", want it to contain \"%s\"",        \
                      unit_h_ ? unit_h_ : "(null)", unit_n_);                 \
    } while (0)

static inline const char *
unit_data(const char *name, char *out, size_t n)
{
    const char *top = getenv("top_srcdir");

    snprintf(out, n, "%s/tests/data/%s", top ? top : ".", name);
    return out;
}

/* unit_tmpdir - a fresh directory under $TMPDIR; the caller removes it. */
static inline const char *
unit_tmpdir(char *out, size_t n)
{
    const char *t = getenv("TMPDIR");

    snprintf(out, n, "%s/rc-unit-XXXXXX", t ? t : "/tmp");
    return mkdtemp(out);
}

/* unit_rmtree - remove dir and all below it; 0, or -1 when rm failed. */
static inline int
unit_rmtree(const char *dir)
{
    char cmd[1024];

    if ((size_t)snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir) >= sizeof(cmd))
        return -1;
    return system(cmd) == 0 ? 0 : -1;
}

/* unit_write - write text to dir/name; returns the path in out. */
static inline const char *
unit_write(const char *dir, const char *name, const char *text, char *out,
           size_t n)
{
    FILE *fp;

    snprintf(out, n, "%s/%s", dir, name);
    if ((fp = fopen(out, "w")) == NULL)
        return NULL;
    fputs(text, fp);
    fclose(fp);
    return out;
}

/* unit_with_dir - in with each "DIR" replaced by dir, into out (size n,
 * truncated to fit); returns out. For configuration text that names
 * files in a test's temporary directory. */
static inline const char *
unit_with_dir(const char *in, const char *dir, char *out, size_t n)
{
    size_t o = 0, k = strlen(dir);

    if (n == 0)
        return out;
    while (*in != '\0' && o + 1 < n) {
        if (strncmp(in, "DIR", 3) == 0) {
            size_t take = k < n - 1 - o ? k : n - 1 - o;

            memcpy(out + o, dir, take);
            o += take;
            in += 3;
        } else {
            out[o++] = *in++;
        }
    }
    out[o] = '\0';
    return out;
}

#endif
