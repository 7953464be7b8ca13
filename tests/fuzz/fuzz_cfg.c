/*
 * fuzz_cfg - configuration files, value parsers, match patterns, networks
 *
 * Each input is a configuration file. It is parsed, validated against a
 * table with one key of every type (and the match_* keys), read back
 * through every getter and printed; the stage match condition and the
 * client networks are built from it. Besides the sanitizers, the target
 * traps when a validated value breaks its promise: a number outside its
 * bounds, an empty list item or one holding a separator, a set value
 * that differs from the raw one, a network that does not hold its own
 * address. The input is also fed to the value parsers as one string.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/cfg.h"
#include "util/cidr.h"
#include "msg/match.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fuzz_choices[] = {"reject", "continue", "discard",
                                           NULL};

static const struct cfg_option fuzz_options[] = {
    {"string", CFG_STRING, "text", "a string", NULL, 0, 0, 0},
    {"nodefault", CFG_STRING, NULL, "a string without default", NULL, 0, 0, 0},
    {"path", CFG_PATH, "chain.d", "a path", NULL, 0, 0, 0},
    {"int", CFG_INT, "5", "a bounded int", NULL, -10, 1000, 0},
    {"anyint", CFG_INT, NULL, "an unbounded int", NULL, 0, 0, 0},
    {"size", CFG_SIZE, "10m", "a size", NULL, 1, 1024LL * 1024 * 1024, 0},
    {"time", CFG_TIME, "30s", "a time", NULL, 0, 0, 0},
    {"btime", CFG_TIME, "1m", "a bounded time", NULL, 1000, 86400000, 0},
    {"bool", CFG_BOOL, "no", "a boolean", NULL, 0, 0, 0},
    {"enum", CFG_ENUM, "reject", "an enum", fuzz_choices, 0, 0, 0},
    {"list", CFG_LIST, NULL, "a list", NULL, 0, 0, 0},
    CFG_OPTION_END,
};

static const struct cfg_option *const fuzz_tables[] = {fuzz_options,
                                                       match_options, NULL};

static void
fuzz_check_option(const struct cfg *c, const struct cfg_option *o)
{
    const char *const *items;
    const char *raw = cfg_raw(c, o->name), *s = cfg_str(c, o->name);
    long long v;
    size_t n, i;

    if (cfg_is_set(c, o->name) != (raw != NULL))
        __builtin_trap();
    if (raw != NULL && o->type != CFG_PATH && strcmp(raw, s) != 0)
        __builtin_trap();
    switch (o->type) {
    case CFG_INT:
    case CFG_SIZE:
    case CFG_TIME:
        v = cfg_num(c, o->name);
        if ((o->min != 0 || o->max != 0) && (v < o->min || v > o->max))
            __builtin_trap();
        break;
    case CFG_BOOL:
        if ((unsigned)cfg_bool(c, o->name) > 1)
            __builtin_trap();
        break;
    case CFG_ENUM:
        if (cfg_enum(c, o->name) < 0 || cfg_enum(c, o->name) > 3)
            __builtin_trap();
        break;
    case CFG_LIST:
        n = cfg_list(c, o->name, &items);
        for (i = 0; i < n; i++)
            if (items[i][0] == '\0' || strpbrk(items[i], ", \t") != NULL)
                __builtin_trap();
        if (items[n] != NULL)
            __builtin_trap();
        break;
    case CFG_PATH:
        if (s == NULL || s[0] == '\0')
            __builtin_trap();
        break;
    case CFG_STRING:
        break;
    }
}

/* fuzz_check_networks - every accepted network holds its own address. */
static void
fuzz_check_networks(const struct cfg *c)
{
    const char *const *items;
    size_t n = cfg_list(c, "match_client", &items), i;
    struct cidr_list *l;
    struct err e;
    char addr[80];

    if ((l = cidr_list_new(items, n, &e)) == NULL)
        return;
    for (i = 0; i < n; i++) {
        size_t len = strcspn(items[i], "/");

        if (len >= sizeof(addr))
            __builtin_trap();
        memcpy(addr, items[i], len);
        addr[len] = '\0';
        if (!cidr_list_contains(l, addr))
            __builtin_trap();
    }
    cidr_list_free(l);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct cfg_option *const *t;
    const struct cfg_option *o;
    char *text, *out = NULL, what[256];
    size_t outlen = 0;
    struct match *mt;
    struct cfg *c;
    struct err e;
    long long v;
    FILE *fp;
    int b;

    if ((text = malloc(size + 1)) == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    cfg_parse_size(text, &v);
    cfg_parse_time(text, &v);
    cfg_parse_bool(text, &b);

    c = cfg_parse_text("/etc/relaychain/fuzz.conf", text, size, &e);
    free(text);
    if (c == NULL)
        return 0;
    cfg_raw(c, "string");
    if (cfg_validate(c, fuzz_tables, &e) == 0) {
        for (t = fuzz_tables; *t != NULL; t++)
            for (o = *t; o->name != NULL; o++)
                fuzz_check_option(c, o);
        if ((fp = open_memstream(&out, &outlen)) != NULL) {
            cfg_print(c, fp, "  ");
            fclose(fp);
            free(out);
        }
        fuzz_check_networks(c);
        if ((mt = match_new(c, &e)) != NULL) {
            match_describe(mt, what, sizeof(what));
            match_free(mt);
        }
        cfg_err(&e, c, "int", "value %s", e.text);
    }
    cfg_free(c);
    return 0;
}
