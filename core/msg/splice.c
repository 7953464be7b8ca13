/*
 * splice - put new bytes in place of ranges of a message's bytes
 *
 * See splice.h. The splices are sorted, checked as a whole, and only then
 * copied, so a bad set leaves the output untouched. Nothing is allocated
 * here but what out grows by.
 */
#include "config.h"

#include <stdlib.h>

#include "msg/splice.h"

static int
splice_cmp(const void *a, const void *b)
{
    const struct splice *x = a, *y = b;

    if (x->start != y->start)
        return x->start < y->start ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

int
splice_check(size_t len, size_t from, struct splice *sp, size_t n,
             struct err *e)
{
    size_t at = from, i;

    if (from > len)
        return err_set(e, ERR_INTERNAL,
                       "splice: start %zu past the end of %zu octets", from,
                       len);
    if (n > 1)
        qsort(sp, n, sizeof(*sp), splice_cmp);
    for (i = 0; i < n; i++) {
        if (sp[i].end < sp[i].start)
            return err_set(e, ERR_INTERNAL,
                           "splice: range %zu-%zu runs backwards", sp[i].start,
                           sp[i].end);
        if (sp[i].end > len)
            return err_set(e, ERR_INTERNAL,
                           "splice: range %zu-%zu past the end of %zu octets",
                           sp[i].start, sp[i].end, len);
        if (sp[i].start < at)
            return err_set(e, ERR_INTERNAL,
                           "splice: range %zu-%zu overlaps another edit",
                           sp[i].start, sp[i].end);
        if (sp[i].len > 0 && sp[i].data == NULL)
            return err_set(e, ERR_INTERNAL, "splice: no data");
        at = sp[i].end;
    }
    return 0;
}

int
splice_apply(const char *data, size_t len, size_t from, struct splice *sp,
             size_t n, struct buf *out, struct err *e)
{
    size_t at = from, i;

    if (splice_check(len, from, sp, n, e) < 0)
        return -1;
    for (i = 0; i < n; i++) {
        if ((sp[i].start > at &&
             buf_append(out, data + at, sp[i].start - at, e) < 0) ||
            (sp[i].len > 0 && buf_append(out, sp[i].data, sp[i].len, e) < 0))
            return -1;
        at = sp[i].end;
    }
    return len > at ? buf_append(out, data + at, len - at, e) : 0;
}
