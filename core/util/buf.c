/*
 * buf - growable byte buffers with a hard upper bound
 *
 * See buf.h. Capacity doubles so appends are amortized O(1); the limit is
 * checked before any allocation, so a peer can never make a buffer grow
 * past what configuration allows.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"

void
buf_init(struct buf *b, size_t limit)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->limit = limit ? limit : SIZE_MAX - 1;
}

void
buf_fini(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void
buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data != NULL)
        b->data[0] = '\0';
}

int
buf_reserve(struct buf *b, size_t n, struct err *e)
{
    size_t need, cap;
    char *p;

    if (n > b->limit - b->len)
        return err_set(e, ERR_LIMIT, "buffer limit of %zu octets exceeded",
                       b->limit);
    need = b->len + n + 1;
    if (need <= b->cap)
        return 0;
    cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if ((p = realloc(b->data, cap)) == NULL)
        return err_nomem(e);
    b->data = p;
    b->cap = cap;
    b->data[b->len] = '\0';
    return 0;
}

int
buf_append(struct buf *b, const void *p, size_t len, struct err *e)
{
    if (buf_reserve(b, len, e) < 0)
        return -1;
    if (len > 0)
        memcpy(b->data + b->len, p, len);
    b->len += len;
    b->data[b->len] = '\0';
    return 0;
}

int
buf_puts(struct buf *b, const char *s, struct err *e)
{
    return buf_append(b, s, strlen(s), e);
}

int
buf_putc(struct buf *b, int c, struct err *e)
{
    char ch = (char)c;

    return buf_append(b, &ch, 1, e);
}

int
buf_vprintf(struct buf *b, struct err *e, const char *fmt, va_list ap)
{
    va_list ap2;
    int n;

    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return err_set(e, ERR_INTERNAL, "bad format string");
    if (buf_reserve(b, (size_t)n, e) < 0)
        return -1;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int
buf_printf(struct buf *b, struct err *e, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = buf_vprintf(b, e, fmt, ap);
    va_end(ap);
    return rc;
}

char *
buf_steal(struct buf *b, size_t *len)
{
    char *p = b->data;

    if (p == NULL && (p = calloc(1, 1)) == NULL)
        return NULL;
    if (len != NULL)
        *len = b->len;
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}

const char *
buf_str(const struct buf *b)
{
    return b->data != NULL ? b->data : "";
}
