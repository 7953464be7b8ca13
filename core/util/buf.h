/*
 * buf - growable byte buffers with a hard upper bound
 *
 * Every buffer that holds peer-controlled data is a struct buf with a limit
 * taken from configuration; appending past the limit fails with ERR_LIMIT
 * and leaves the contents as they were. The data is always followed by a
 * NUL byte that is not counted in len, so text can be used as a C string
 * (binary data may still contain NULs of its own).
 *
 * A struct buf is a value: buf_init() it, buf_fini() it. buf_steal() hands
 * the storage to the caller, who frees it with free().
 */
#ifndef RC_BUF_H
#define RC_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "util/err.h"

struct buf {
    char *data;   /* NULL until the first append */
    size_t len;   /* bytes used, not counting the trailing NUL */
    size_t cap;   /* bytes allocated */
    size_t limit; /* len never exceeds this; 0 means SIZE_MAX */
};

void buf_init(struct buf *b, size_t limit);
void buf_fini(struct buf *b);
void buf_reset(struct buf *b);

/* buf_append - add len bytes; -1 with ERR_LIMIT or ERR_NOMEM on failure. */
int buf_append(struct buf *b, const void *p, size_t len, struct err *e);
int buf_puts(struct buf *b, const char *s, struct err *e);
int buf_putc(struct buf *b, int c, struct err *e);
int buf_printf(struct buf *b, struct err *e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int buf_vprintf(struct buf *b, struct err *e, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/* buf_reserve - make room for n more bytes without changing len. */
int buf_reserve(struct buf *b, size_t n, struct err *e);

/* buf_steal - return the data (never NULL: "" for an empty buffer) and
 * leave the buffer empty; the caller frees it. NULL only on ENOMEM. */
char *buf_steal(struct buf *b, size_t *len);

/* buf_str - the contents as a C string ("" when empty); borrowed. */
const char *buf_str(const struct buf *b);

#endif
