/*
 * fuzz_regmap - pcre_table(5) files and lookups in them
 *
 * Each input is a table file. When it loads, a few fixed keys and each
 * line of the input itself are looked up. Besides the sanitizers, the
 * target traps when a lookup breaks its promise: a failed or missing
 * match that changed the output buffer, a match whose line is not a line
 * of the input, a result past the buffer's limit, or a map with more
 * rules than its limit. A load that fails must say "name:" first.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/regmap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_OUT_LIMIT 512
#define FUZZ_LINE_KEYS 64

static void
fuzz_lookup(const struct regmap *rm, const char *key, unsigned nlines)
{
    struct buf out;
    struct err e;
    unsigned line = 0;
    int rc;

    buf_init(&out, FUZZ_OUT_LIMIT);
    /* Something already in the buffer must survive every outcome. */
    if (buf_puts(&out, "kept", &e) < 0)
        __builtin_trap();
    rc = regmap_lookup(rm, key, &out, &line, &e);
    if (rc < -1 || rc > 1)
        __builtin_trap();
    if (out.len > FUZZ_OUT_LIMIT || strncmp(buf_str(&out), "kept", 4) != 0)
        __builtin_trap();
    if (rc != 1 && out.len != 4)
        __builtin_trap();
    if (rc == 1 && (line == 0 || line > nlines))
        __builtin_trap();
    if (rc < 0 && e.text[0] == '\0')
        __builtin_trap();
    buf_fini(&out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const keys[] = {
        "",
        "user@host.corp.example",
        "postmaster@example.org",
        "abbbc",
        "\xff\xfe@invalid.utf8",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab",
    };
    const char *text = (const char *)data, *p, *nl;
    char key[256];
    struct regmap *rm;
    struct err e;
    unsigned nlines = 1, n;
    size_t i;

    for (i = 0; i < size; i++)
        if (text[i] == '\n')
            nlines++;
    err_clear(&e);
    rm = regmap_parse_text("fuzz.pcre", text, size, &e);
    if (rm == NULL) {
        if (strncmp(e.text, "fuzz.pcre", 9) != 0 &&
            strcmp(e.text, "out of memory") != 0)
            __builtin_trap();
        return 0;
    }
    if (regmap_rule_count(rm) > 20000)
        __builtin_trap();
    for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        fuzz_lookup(rm, keys[i], nlines);
    for (p = text, n = 0; p < text + size && n < FUZZ_LINE_KEYS; n++) {
        nl = memchr(p, '\n', (size_t)(text + size - p));
        if (nl == NULL)
            nl = text + size;
        snprintf(key, sizeof(key), "%.*s", (int)(nl - p), p);
        fuzz_lookup(rm, key, nlines);
        p = nl + 1;
    }
    regmap_free(rm);
    return 0;
}
