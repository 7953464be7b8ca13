/*
 * fuzz_antispam_spamd - the antispam stage's reading of a spamd answer
 *
 * The whole input is one answer to SYMBOLS. Besides the sanitizers, the
 * target traps when a promise breaks: a success without a finite score
 * and threshold, rule names that are not a NUL-terminated string of
 * printable ASCII without white space within their buffer (they go into
 * SMTP replies and header fields), an empty name, or a failure without a
 * reason.
 */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters/antispam/antispam_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct flt_as_answer a;
    struct err e;
    size_t i, len;
    int rc;

    memset(&a, 'X', sizeof(a));
    err_clear(&e);
    rc = flt_as_spamd_parse((const char *)data, size, &a, &e);
    if (rc != 0) {
        if (rc != -1 || e.text[0] == '\0')
            __builtin_trap();
        return 0;
    }
    if (!isfinite(a.score) || !isfinite(a.required))
        __builtin_trap();
    if (memchr(a.symbols, '\0', sizeof(a.symbols)) == NULL)
        __builtin_trap();
    len = strlen(a.symbols);
    for (i = 0; i < len; i++) {
        unsigned char c = (unsigned char)a.symbols[i];

        if (c < 0x21 || c > 0x7e)
            __builtin_trap();
        if (c == ',' && (i == 0 || i + 1 == len || a.symbols[i + 1] == ','))
            __builtin_trap();
    }
    return 0;
}
