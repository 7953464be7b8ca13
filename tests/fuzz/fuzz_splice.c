/*
 * fuzz_splice - splice_apply() over random offsets
 *
 * The input is read as: one octet giving the number of splices (0-15)
 * and the start offset of the rebuilt range, then five octets per
 * splice (start and end as 16-bit numbers, the length of its new data),
 * then the data the splices are made in, whose first octets double as
 * the new text. Offsets may point anywhere up to a little past the end,
 * as a parser's offsets can. The result is compared with a naive model:
 * the target traps when splice_apply() accepts a set the model refuses
 * (backwards, past the end, before the start, overlapping) or refuses
 * one it accepts, or when the bytes it makes differ from the model's.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msg/splice.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_SPLICES 15

/* fuzz_model - the splices made one by one on a sorted copy, with every
 * rule checked the slow way; 0 and the bytes in out, or -1. */
static int
fuzz_model(const char *d, size_t len, size_t from, const struct splice *in,
           size_t n, struct buf *out)
{
    struct splice sp[FUZZ_SPLICES], t;
    size_t i, j, at = from;
    struct err e;

    if (from > len)
        return -1;
    memcpy(sp, in, n * sizeof(*sp));
    for (i = 0; i < n; i++)
        for (j = i + 1; j < n; j++)
            if (sp[j].start < sp[i].start ||
                (sp[j].start == sp[i].start && sp[j].end < sp[i].end)) {
                t = sp[i];
                sp[i] = sp[j];
                sp[j] = t;
            }
    for (i = 0; i < n; i++)
        if (sp[i].end < sp[i].start || sp[i].end > len || sp[i].start < at)
            return -1;
        else
            at = sp[i].end;
    at = from;
    for (i = 0; i < n; i++) {
        for (j = at; j < sp[i].start; j++)
            if (buf_append(out, d + j, 1, &e) < 0)
                abort();
        if (buf_append(out, sp[i].data, sp[i].len, &e) < 0)
            abort();
        at = sp[i].end;
    }
    if (buf_append(out, d + at, len - at, &e) < 0)
        abort();
    return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct splice sp[FUZZ_SPLICES];
    const uint8_t *p = data;
    struct buf got, want;
    size_t n, i, len, from;
    const char *d;
    struct err e;
    int rc, model;

    if (size < 1)
        return 0;
    n = p[0] & 0x0f;
    if (size < 1 + 5 * n)
        return 0;
    d = (const char *)p + 1 + 5 * n;
    len = size - 1 - 5 * n;
    from = (size_t)(p[0] >> 4) % (len + 2);
    for (i = 0; i < n; i++) {
        const uint8_t *q = p + 1 + 5 * i;

        sp[i].start = ((size_t)q[0] << 8 | q[1]) % (len + 4);
        sp[i].end = ((size_t)q[2] << 8 | q[3]) % (len + 4);
        sp[i].len = q[4] <= len ? q[4] : len;
        sp[i].data = d;
    }
    buf_init(&got, 0);
    buf_init(&want, 0);
    err_clear(&e);
    model = fuzz_model(d, len, from, sp, n, &want);
    rc = splice_apply(d, len, from, sp, n, &got, &e);
    if (rc == 0 && model < 0) {
        fprintf(stderr, "fuzz_splice: accepted a bad set\n");
        abort();
    }
    if (rc < 0 && (model == 0 || e.code != ERR_INTERNAL)) {
        fprintf(stderr, "fuzz_splice: refused a good set: %s\n", e.text);
        abort();
    }
    if (rc == 0 && (got.len != want.len ||
                    (got.len > 0 && memcmp(got.data, want.data, got.len)))) {
        fprintf(stderr, "fuzz_splice: %zu octets, want %zu\n", got.len,
                want.len);
        abort();
    }
    buf_fini(&got);
    buf_fini(&want);
    return 0;
}
