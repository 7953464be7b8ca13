/*
 * fuzz_addr - addresses, paths and the header address rewriter
 *
 * Each line of the input goes through addr_parse_path(), addr_is_valid()
 * and addr_domain(); the whole input then goes, as the value of an
 * address header, through flt_rewrite_header_value() with a fixed table
 * that rewrites nearly every address (and refuses some results), the
 * same code the rewrite stage runs. Besides the sanitizers, the target
 * traps when a promise is broken: a parsed path that is not a valid
 * mailbox or that claims octets it was not given, a valid address longer
 * than 254 octets or without a domain inside it, a rewritten value with
 * a bare CR, LF or NUL, a line over 998 octets, a fold that is not line
 * end plus tab, or one that GMime reads as a different number of
 * addresses than it read before the rewrite.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gmime/gmime.h>

#include "filters/filters.h"
#include "util/addr.h"
#include "util/regmap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char fuzz_table[] =
    "/^(.*)@host\\.corp\\.example$/ ${1}@example.com\n"
    "/^same@/ $0\n"
    "/^q(.*)$/ $1\n"
    "/^([a-z0-9.]{1,30})@/ ${1}@example.net\n"
    "/./ fixed@example.org\n";

static void
fuzz_line(const char *s, size_t len)
{
    char text[1024], why[128];
    const char *dom;
    size_t consumed = 0;
    struct buf out;
    struct err e;

    buf_init(&out, 1024);
    if (addr_parse_path(s, len, &out, &consumed, &e) == 0) {
        if (consumed < 2 || consumed > len || s[consumed - 1] != '>' ||
            s[0] != '<')
            __builtin_trap();
        if (!addr_is_valid(buf_str(&out), 1, why, sizeof(why)))
            __builtin_trap();
    } else if (out.len != 0 || e.text[0] == '\0') {
        __builtin_trap();
    }
    buf_fini(&out);

    if (len >= sizeof(text))
        return;
    memcpy(text, s, len);
    text[len] = '\0';
    dom = addr_domain(text);
    if (addr_is_valid(text, 0, why, sizeof(why))) {
        if (strlen(text) > ADDR_MAX || dom == NULL || dom <= text ||
            dom[-1] != '@' || dom[0] == '\0')
            __builtin_trap();
    } else if (dom != NULL || why[0] == '\0') {
        __builtin_trap();
    }
}

/* fuzz_count - how many addresses GMime reads in value, unfolded as the
 * rewriter unfolds it: every CR and LF dropped, and one ')' more than
 * there are '(' appended when there is any. */
static int
fuzz_count(const char *value)
{
    InternetAddressList *list;
    size_t len = strlen(value), i, o = 0, open = 0;
    char *text;
    int n = -1;

    if ((text = malloc(2 * len + 2)) == NULL)
        return -1;
    for (i = 0; i < len; i++) {
        if (value[i] == '\r' || value[i] == '\n')
            continue;
        if (value[i] == '(')
            open++;
        text[o++] = value[i];
    }
    for (i = 0; open > 0 && i <= open; i++)
        text[o++] = ')';
    text[o] = '\0';
    if ((list = internet_address_list_parse(NULL, text)) != NULL) {
        n = internet_address_list_length(list);
        g_object_unref(list);
    }
    free(text);
    return n;
}

static void
fuzz_header(const struct regmap *rm, const char *value)
{
    const char *p, *line;
    struct buf out;
    struct err e;
    int changed = -1, before, after;

    buf_init(&out, 64 * 1024);
    if (flt_rewrite_header_value(rm, value, &out, &changed, &e) < 0) {
        if (out.len != 0 || e.text[0] == '\0')
            __builtin_trap();
        buf_fini(&out);
        return;
    }
    if (changed != 0 && changed != 1)
        __builtin_trap();
    if (!changed) {
        if (out.len != 0)
            __builtin_trap();
        buf_fini(&out);
        return;
    }
    if (strlen(buf_str(&out)) != out.len)
        __builtin_trap();
    for (p = line = buf_str(&out); *p != '\0'; p++) {
        if (*p == '\r')
            __builtin_trap();
        if (*p == '\n') {
            if (p[1] != '\t' || p - line > 998)
                __builtin_trap();
            line = p + 1;
        }
    }
    if (p - line > 998)
        __builtin_trap();
    before = fuzz_count(value);
    after = fuzz_count(buf_str(&out));
    if (before != after)
        __builtin_trap();
    buf_fini(&out);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct regmap *rm; /* the harness's only state: built once */
    const char *text = (const char *)data, *p, *nl;
    char *value;
    struct err e;

    if (rm == NULL) {
        g_mime_init();
        rm = regmap_parse_text("fuzz.pcre", fuzz_table, sizeof(fuzz_table) - 1,
                               &e);
        if (rm == NULL)
            __builtin_trap();
    }
    for (p = text; p < text + size; p = nl + 1) {
        nl = memchr(p, '\n', (size_t)(text + size - p));
        if (nl == NULL)
            nl = text + size;
        fuzz_line(p, (size_t)(nl - p));
    }
    if (size > 64 * 1024 || memchr(data, '\0', size) != NULL)
        return 0;
    if ((value = malloc(size + 1)) == NULL)
        return 0;
    memcpy(value, data, size);
    value[size] = '\0';
    fuzz_header(rm, value);
    free(value);
    return 0;
}
