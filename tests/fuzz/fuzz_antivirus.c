/*
 * fuzz_antivirus - the antivirus stage's hand-written parsers: clamd's
 *     INSTREAM answer, libclamav's heuristic names and the boundary
 *     finder used for ambiguous MIME
 *
 * The whole input is read as a clamd answer and as a detection name (up
 * to its first NUL), and searched for boundary parameters. Besides the
 * sanitizers, the target traps when a promise breaks: a status outside
 * the three, a reason that is not a NUL-terminated string of printable
 * ASCII within its buffer (it goes into SMTP replies and header
 * fields), more boundaries than asked for, or a boundary that is empty,
 * too long, or holds a quote, a backslash or a control octet.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters/filters.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_BOUNDS 4

static void
fuzz_printable(const char *s, size_t size)
{
    size_t i;

    if (memchr(s, '\0', size) == NULL)
        __builtin_trap();
    for (i = 0; s[i] != '\0'; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
            __builtin_trap();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char what[FLT_ANTIVIRUS_WHAT_MAX], name[512];
    char bounds[FUZZ_BOUNDS + 1][FLT_ANTIVIRUS_BOUNDARY_SIZE];
    enum flt_antivirus_status st = FLT_ANTIVIRUS_CLEAN;
    const char *text = (const char *)data;
    struct err e;
    size_t n, i, j, len;
    int rc;

    memset(what, 'X', sizeof(what));
    err_clear(&e);
    rc = flt_antivirus_clamd_reply(text, size, &st, what, sizeof(what), &e);
    if (rc == 0) {
        if (st != FLT_ANTIVIRUS_CLEAN && st != FLT_ANTIVIRUS_INFECTED &&
            st != FLT_ANTIVIRUS_UNCHECKED && st != FLT_ANTIVIRUS_TIMEOUT)
            __builtin_trap();
        fuzz_printable(what, sizeof(what));
    } else if (rc != -1 || e.text[0] == '\0') {
        __builtin_trap();
    }

    n = size < sizeof(name) - 1 ? size : sizeof(name) - 1;
    memcpy(name, data, n);
    name[n] = '\0';
    memset(what, 'X', sizeof(what));
    rc = flt_antivirus_classify(name, (int)(n & 1), what, sizeof(what));
    if (rc != FLT_ANTIVIRUS_INFECTED && rc != FLT_ANTIVIRUS_UNCHECKED &&
        rc != FLT_ANTIVIRUS_TIMEOUT)
        __builtin_trap();
    fuzz_printable(what, sizeof(what));

    memcpy(bounds[FUZZ_BOUNDS], "guard", sizeof("guard"));
    n = flt_antivirus_boundaries(text, size, bounds, FUZZ_BOUNDS);
    if (n > FUZZ_BOUNDS || strcmp(bounds[FUZZ_BOUNDS], "guard") != 0)
        __builtin_trap();
    for (i = 0; i < n; i++) {
        if (memchr(bounds[i], '\0', sizeof(bounds[i])) == NULL)
            __builtin_trap();
        len = strlen(bounds[i]);
        if (len == 0)
            __builtin_trap();
        for (j = 0; j < len; j++)
            if ((unsigned char)bounds[i][j] < 0x20 || bounds[i][j] == 0x7f ||
                bounds[i][j] == '"' || bounds[i][j] == '\\')
                __builtin_trap();
        for (j = 0; j < i; j++)
            if (strcmp(bounds[i], bounds[j]) == 0)
                __builtin_trap();
    }
    return 0;
}
