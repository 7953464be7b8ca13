/*
 * err - error reports that travel up the stack
 *
 * See err.h. Formatting truncates at ERR_TEXT_MAX; a truncated text is
 * still NUL-terminated and still says what failed first.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "util/err.h"

static void err_vfill(struct err *e, enum err_code code, const char *fmt,
                      va_list ap) __attribute__((format(printf, 3, 0)));

static void
err_vfill(struct err *e, enum err_code code, const char *fmt, va_list ap)
{
    e->code = code;
    e->sys_errno = 0;
    vsnprintf(e->text, sizeof(e->text), fmt, ap);
}

/* err_cat - append s to dst (size n, *len used), truncating silently. */
static void
err_cat(char *dst, size_t n, size_t *len, const char *s)
{
    size_t k = strlen(s);

    if (*len + 1 >= n)
        return;
    if (k > n - 1 - *len)
        k = n - 1 - *len;
    memcpy(dst + *len, s, k);
    *len += k;
    dst[*len] = '\0';
}

int
err_set(struct err *e, enum err_code code, const char *fmt, ...)
{
    va_list ap;

    if (e == NULL)
        return -1;
    va_start(ap, fmt);
    err_vfill(e, code, fmt, ap);
    va_end(ap);
    return -1;
}

int
err_sys(struct err *e, enum err_code code, const char *fmt, ...)
{
    int saved = errno;
    size_t len;
    va_list ap;

    if (e == NULL)
        return -1;
    va_start(ap, fmt);
    err_vfill(e, code, fmt, ap);
    va_end(ap);
    e->sys_errno = saved;
    len = strlen(e->text);
    err_cat(e->text, sizeof(e->text), &len, ": ");
    err_cat(e->text, sizeof(e->text), &len, strerror(saved));
    return -1;
}

int
err_nomem(struct err *e)
{
    return err_set(e, ERR_NOMEM, "out of memory");
}

void
err_prefix(struct err *e, const char *fmt, ...)
{
    char prefix[ERR_TEXT_MAX], old[ERR_TEXT_MAX];
    size_t len = 0;
    va_list ap;

    if (e == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, e->text, sizeof(old));
    e->text[0] = '\0';
    err_cat(e->text, sizeof(e->text), &len, prefix);
    err_cat(e->text, sizeof(e->text), &len, ": ");
    err_cat(e->text, sizeof(e->text), &len, old);
}

void
err_clear(struct err *e)
{
    if (e == NULL)
        return;
    e->code = ERR_NONE;
    e->sys_errno = 0;
    e->text[0] = '\0';
}

int
err_is_temporary(const struct err *e)
{
    switch (e->code) {
    case ERR_NOMEM:
    case ERR_IO:
    case ERR_TEMP:
    case ERR_LIB:
    case ERR_INTERNAL:
        return 1;
    default:
        return 0;
    }
}

const char *
err_code_name(enum err_code code)
{
    switch (code) {
    case ERR_NONE:
        return "none";
    case ERR_CONFIG:
        return "config";
    case ERR_INPUT:
        return "input";
    case ERR_LIMIT:
        return "limit";
    case ERR_NOMEM:
        return "nomem";
    case ERR_IO:
        return "io";
    case ERR_TEMP:
        return "temp";
    case ERR_LIB:
        return "lib";
    case ERR_INTERNAL:
        return "internal";
    }
    return "unknown";
}
