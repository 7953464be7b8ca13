/*
 * fuzz_dkimtable - the dkim stage's KeyTable and SigningTable readers and
 *     the signing-table lookup
 *
 * An input is "KEYTABLE\n%%\nSIGNINGTABLE"; when its first octet is odd
 * the signing table is read as refile: wildcard patterns. The whole input
 * is also read as a DKIM tag list (the parser that finds d= and s= in the
 * signatures a message already has). When both tables load,
 * fixed addresses, each line's first field and "user@" plus it are looked
 * up. Besides the sanitizers, the target traps when a lookup breaks its
 * promise (more results than asked for, a NULL name, a line outside the
 * table) or when a failed load's error does not start with the table's
 * name.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filters/filters.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_MAX_RESULTS 8
#define FUZZ_LINE_KEYS 64

static void
fuzz_lookup(const struct flt_dkim_tables *t, const char *addr, unsigned nlines)
{
    const char *names[FUZZ_MAX_RESULTS + 1];
    unsigned lines[FUZZ_MAX_RESULTS + 1];
    size_t n, i, max = (strlen(addr) % FUZZ_MAX_RESULTS) + 1;

    names[max] = "guard";
    n = flt_dkim_tables_lookup(t, addr, names, lines, max);
    if (n > max || names[max] == NULL || strcmp(names[max], "guard") != 0)
        __builtin_trap();
    for (i = 0; i < n; i++)
        if (names[i] == NULL || lines[i] == 0 || lines[i] > nlines)
            __builtin_trap();
}

/* fuzz_tags - the input as a DKIM tag list (signature or key record):
 * a value must fit its buffer and hold no white space. */
static void
fuzz_tags(const char *text, size_t size)
{
    static const char *const tags[] = {"d", "s", "p", "v", "k", "h", ""};
    char list[2048], out[16];
    size_t i, k;

    snprintf(list, sizeof(list), "%.*s", (int)(size < 2047 ? size : 2047),
             text);
    for (i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
        memset(out, 'X', sizeof(out));
        if (!flt_dkim_tag_value(list, tags[i], out, sizeof(out)))
            continue;
        if (memchr(out, '\0', sizeof(out)) == NULL)
            __builtin_trap();
        for (k = 0; out[k] != '\0'; k++)
            if (out[k] == ' ' || out[k] == '\t' || out[k] == '\r' ||
                out[k] == '\n' || out[k] == ';')
                __builtin_trap();
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const addrs[] = {
        "",
        "@",
        "user@example.com",
        "user@mail.example.com",
        "alice@a.b.c.example.org",
        "x@",
        "@example.com",
        "*@*",
    };
    const char *text = (const char *)data, *sep, *st, *p, *nl;
    struct flt_dkim_tables *t;
    size_t kt_len, st_len, i;
    unsigned nlines = 1, n;
    char key[300];
    struct err e;
    int refile;

    if (size == 0)
        return 0;
    refile = data[0] & 1;
    text++;
    size--;
    sep = memmem(text, size, "\n%%\n", 4);
    kt_len = sep != NULL ? (size_t)(sep - text) : size;
    st = sep != NULL ? sep + 4 : text + size;
    st_len = (size_t)(text + size - st);
    for (i = 0; i < st_len; i++)
        if (st[i] == '\n')
            nlines++;
    err_clear(&e);
    fuzz_tags(text, size);
    t = flt_dkim_tables_parse("kt", text, kt_len, "st", refile, st, st_len,
                              &e);
    if (t == NULL) {
        if (strncmp(e.text, "kt:", 3) != 0 && strncmp(e.text, "st:", 3) != 0 &&
            strcmp(e.text, "out of memory") != 0)
            __builtin_trap();
        return 0;
    }
    for (i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++)
        fuzz_lookup(t, addrs[i], nlines);
    for (p = st, n = 0; p < st + st_len && n < FUZZ_LINE_KEYS; n++) {
        nl = memchr(p, '\n', (size_t)(st + st_len - p));
        if (nl == NULL)
            nl = st + st_len;
        snprintf(key, sizeof(key), "%.*s", (int)(nl - p), p);
        key[strcspn(key, " \t")] = '\0';
        fuzz_lookup(t, key, nlines);
        snprintf(key, sizeof(key), "user@%.*s", (int)(nl - p), p);
        key[strcspn(key, " \t")] = '\0';
        fuzz_lookup(t, key, nlines);
        p = nl + 1;
    }
    flt_dkim_tables_free(t);
    return 0;
}
