/*
 * fuzz_antispam_rspamd - the rspamd engine's reading of a /checkv2 reply
 *
 * The whole input is rspamd's JSON reply. Besides the sanitizers, the
 * target traps when a promise breaks: an answer whose score or
 * required score is not finite, or whose symbols are not a
 * NUL-terminated list within their buffer of names in printable ASCII
 * without spaces, separated by single commas (they go into log lines,
 * header fields and SMTP replies); a failure without an error text.
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
    rc = flt_as_rspamd_parse((const char *)data, size, &a, &e);
    if (rc != 0) {
        if (rc != -1 || e.code == ERR_NONE || e.text[0] == '\0')
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

        if (c <= 0x20 || c >= 0x7f)
            __builtin_trap();
        if (c == ',' && (i == 0 || i + 1 == len || a.symbols[i + 1] == ','))
            __builtin_trap();
    }
    return 0;
}
