/*
 * regmap - lookup tables in the syntax of Postfix pcre_table(5)
 *
 * regmap_load() reads a whole table file (at most REGMAP_FILE_MAX octets)
 * and regmap_parse_text() turns it into an array of rules, compiled once
 * with pcre2 (and JIT-compiled where pcre2 supports it). Three kinds of
 * rule exist: a pattern with a result, "if" with a pattern, and "endif".
 * Each "if" remembers the index of its "endif", so a lookup is one pass
 * over the array that jumps over the body of an "if" whose condition does
 * not hold; no stack is needed at lookup time.
 *
 * Syntax, as in Postfix: a logical line starts with non-white text and a
 * line that starts with white space continues it (the line end is
 * dropped, the white space kept). Blank lines and lines whose first
 * non-white character is '#' are ignored. A pattern is written between
 * two delimiters: any character that is not alphanumeric, white space or
 * a backslash, traditionally '/'; a backslash escapes the delimiter
 * inside the pattern. Leading '!' characters negate the match (each one
 * toggles it). Flags follow the closing delimiter: i toggles the default
 * case-insensitive matching off, m s x A E U set PCRE2_MULTILINE,
 * PCRE2_DOTALL, PCRE2_EXTENDED, PCRE2_ANCHORED, PCRE2_DOLLAR_ENDONLY and
 * PCRE2_UNGREEDY, and X (PCRE_EXTRA, whose checks PCRE2 always makes) is
 * accepted and has no effect. The result runs to the end of the logical
 * line; $1..$9 (or $n with more digits), ${n} and $(n) insert a captured
 * group, $$ a dollar sign. A reference to a group the pattern does not
 * have, or any reference in a negated rule, fails the load; a group that
 * took no part in the match inserts nothing.
 *
 * Patterns are compiled in UTF-8 mode with PCRE2_MATCH_INVALID_UTF, so
 * SMTPUTF8 addresses fold case like ASCII ones and a key that is not
 * valid UTF-8 simply fails to match where it is invalid.
 *
 * Every failure to load is "path:line: reason" (a pcre2 compile error is
 * "path:line: pcre2: MESSAGE at offset N"). A lookup fails only when pcre2
 * does (the match limit set here stops catastrophic backtracking) or when
 * the result does not fit the caller's buffer; out is then left as it was.
 *
 * A loaded map is never written again: lookups create their own pcre2
 * match data, so threads may share one map.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "util/regmap.h"

#define REGMAP_FILE_MAX (1024 * 1024) /* octets in a table file */
#define REGMAP_RULES_MAX 20000        /* patterns, "if" included */
#define REGMAP_NEST_MAX 64            /* "if" inside "if" */
#define REGMAP_REF_MAX 99             /* highest $n accepted */
#define REGMAP_MATCH_LIMIT 1000000    /* pcre2_set_match_limit() */
#define REGMAP_DEPTH_LIMIT 10000      /* pcre2_set_depth_limit() */
#define REGMAP_HEAP_LIMIT 8192        /* pcre2_set_heap_limit(), KiB */

#ifndef PCRE2_MATCH_INVALID_UTF
#define PCRE2_MATCH_INVALID_UTF 0 /* pcre2 before 10.34 */
#endif

enum regmap_kind { REGMAP_RULE, REGMAP_IF, REGMAP_ENDIF };

struct regmap_rule {
    enum regmap_kind kind;
    unsigned line;    /* first physical line of the logical line */
    int negate;       /* the rule holds when the pattern does NOT match */
    pcre2_code *code; /* REGMAP_RULE and REGMAP_IF */
    char *result;     /* REGMAP_RULE: template, checked at load */
    size_t endif;     /* REGMAP_IF: index of the matching REGMAP_ENDIF */
};

struct regmap {
    char *path;
    struct regmap_rule *rules;
    size_t nrules;
    size_t cap;
    size_t npatterns;              /* REGMAP_RULE entries */
    uint32_t ovector_pairs;        /* largest capture count + 1 */
    pcre2_match_context *mcontext; /* limits; read-only once built */
};

/* The parser's state while it walks one text. */
struct regmap_parse {
    struct regmap *rm;
    unsigned line;                 /* line of the logical line at hand */
    size_t stack[REGMAP_NEST_MAX]; /* indexes of open "if" rules */
    size_t depth;
};

static int
regmap_is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

static int
regmap_is_alnum(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9');
}

static int
regmap_is_digit(int c)
{
    return c >= '0' && c <= '9';
}

/*
 * regmap_template - walk a result template. With ovector NULL it only
 * checks the syntax and reports the highest group referenced in *maxref
 * (-1 for none); otherwise it appends the expansion to out. Returns 0, or
 * -1 with why filled (check mode) or e filled (expand mode).
 */
static int
regmap_template(const char *t, const char *subject, const PCRE2_SIZE *ovector,
                int nset, struct buf *out, int *maxref, char *why, size_t n,
                struct err *e)
{
    const char *p = t, *lit;
    unsigned long ref;
    int close;

    if (maxref != NULL)
        *maxref = -1;
    while (*p != '\0') {
        lit = p;
        while (*p != '\0' && *p != '$')
            p++;
        if (p > lit && out != NULL &&
            buf_append(out, lit, (size_t)(p - lit), e) < 0)
            return -1;
        if (*p == '\0')
            break;
        p++; /* the '$' */
        if (*p == '$') {
            if (out != NULL && buf_putc(out, '$', e) < 0)
                return -1;
            p++;
            continue;
        }
        close = 0;
        if (*p == '{')
            close = '}';
        else if (*p == '(')
            close = ')';
        if (close != 0)
            p++;
        if (!regmap_is_digit((unsigned char)*p)) {
            snprintf(why, n, "bad $ in result: write $$ for a dollar sign");
            return -1;
        }
        ref = 0;
        while (regmap_is_digit((unsigned char)*p)) {
            ref = ref * 10 + (unsigned long)(*p - '0');
            if (ref > REGMAP_REF_MAX) {
                snprintf(why, n, "replacement index larger than %d",
                         REGMAP_REF_MAX);
                return -1;
            }
            p++;
        }
        if (close != 0) {
            if (*p != close) {
                snprintf(why, n, "missing '%c' after replacement index",
                         close);
                return -1;
            }
            p++;
        } else if (regmap_is_alnum((unsigned char)*p) || *p == '_') {
            /* Postfix reads "$1abc" as a macro named "1abc". */
            snprintf(why, n,
                     "non-numeric replacement index: write ${%lu} before "
                     "text",
                     ref);
            return -1;
        }
        if (maxref != NULL && (int)ref > *maxref)
            *maxref = (int)ref;
        if (out != NULL && ovector != NULL && (int)ref < nset) {
            PCRE2_SIZE from = ovector[2 * ref], to = ovector[2 * ref + 1];

            /* Unset groups and \K oddities (start after end) give "". */
            if (from != PCRE2_UNSET && to != PCRE2_UNSET && from < to &&
                buf_append(out, subject + from, to - from, e) < 0)
                return -1;
        }
    }
    return 0;
}

static int
regmap_add(struct regmap *rm, const struct regmap_rule *r, struct err *e,
           unsigned line)
{
    struct regmap_rule *nr;
    size_t cap;

    if (rm->nrules >= REGMAP_RULES_MAX)
        return err_set(e, ERR_LIMIT, "%s:%u: more than %d rules", rm->path,
                       line, REGMAP_RULES_MAX);
    if (rm->nrules == rm->cap) {
        cap = rm->cap ? rm->cap * 2 : 16;
        if ((nr = realloc(rm->rules, cap * sizeof(*nr))) == NULL)
            return err_nomem(e);
        rm->rules = nr;
        rm->cap = cap;
    }
    rm->rules[rm->nrules++] = *r;
    return 0;
}

/*
 * regmap_pattern - parse [!...]DELIM pattern DELIM flags at *pp, compile
 * it into r, and leave *pp after the flags. Returns 0 or -1 with e set.
 */
static int
regmap_pattern(struct regmap_parse *ps, const char **pp, struct regmap_rule *r,
               struct err *e)
{
    const char *p = *pp, *pat;
    const char *path = ps->rm->path;
    uint32_t opts = PCRE2_CASELESS | PCRE2_MATCH_INVALID_UTF;
    uint32_t captures;
    size_t patlen;
    PCRE2_SIZE erroff;
    PCRE2_UCHAR msg[256];
    int delim, errcode;

    r->negate = 0;
    while (*p == '!') {
        r->negate = !r->negate;
        p++;
    }
    delim = (unsigned char)*p;
    if (delim == '\0' || regmap_is_alnum(delim) || regmap_is_space(delim) ||
        delim == '\\')
        return err_set(e, ERR_CONFIG,
                       "%s:%u: expected a pattern such as /regexp/", path,
                       ps->line);
    pat = ++p;
    while (*p != '\0' && *p != delim) {
        if (*p == '\\' && p[1] != '\0')
            p++;
        p++;
    }
    if (*p != delim)
        return err_set(e, ERR_CONFIG,
                       "%s:%u: missing closing delimiter '%c' of pattern",
                       path, ps->line, delim);
    patlen = (size_t)(p - pat);
    p++;
    for (; *p != '\0' && !regmap_is_space((unsigned char)*p); p++) {
        switch (*p) {
        case 'i':
            opts ^= PCRE2_CASELESS;
            break;
        case 'm':
            opts |= PCRE2_MULTILINE;
            break;
        case 's':
            opts |= PCRE2_DOTALL;
            break;
        case 'x':
            opts |= PCRE2_EXTENDED;
            break;
        case 'A':
            opts |= PCRE2_ANCHORED;
            break;
        case 'E':
            opts |= PCRE2_DOLLAR_ENDONLY;
            break;
        case 'U':
            opts |= PCRE2_UNGREEDY;
            break;
        case 'X':
            /* PCRE_EXTRA: PCRE2 always refuses unknown escapes. */
            break;
        default:
            if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
                return err_set(e, ERR_CONFIG,
                               "%s:%u: unknown pattern flag 0x%02x", path,
                               ps->line, (unsigned char)*p);
            return err_set(e, ERR_CONFIG, "%s:%u: unknown pattern flag '%c'",
                           path, ps->line, *p);
        }
    }
    r->code =
        pcre2_compile((PCRE2_SPTR)pat, patlen, opts, &errcode, &erroff, NULL);
    if (r->code == NULL) {
        if (pcre2_get_error_message(errcode, msg, sizeof(msg)) < 0)
            snprintf((char *)msg, sizeof(msg), "error %d", errcode);
        return err_set(e, ERR_CONFIG, "%s:%u: pcre2: %s at offset %zu", path,
                       ps->line, (const char *)msg, (size_t)erroff);
    }
    /* JIT is an optimisation: a pcre2 built without it still matches. */
    (void)pcre2_jit_compile(r->code, PCRE2_JIT_COMPLETE);
    if (pcre2_pattern_info(r->code, PCRE2_INFO_CAPTURECOUNT, &captures) != 0)
        captures = 0;
    if (captures + 1 > ps->rm->ovector_pairs)
        ps->rm->ovector_pairs = captures + 1;
    *pp = p;
    return 0;
}

static int
regmap_keyword(const char *p, const char *word)
{
    size_t n = strlen(word), i;

    for (i = 0; i < n; i++) {
        int c = (unsigned char)p[i];

        if (c >= 'A' && c <= 'Z')
            c += 'a' - 'A';
        if (c != word[i])
            return 0;
    }
    return !regmap_is_alnum((unsigned char)p[n]) && p[n] != '_';
}

static const char *
regmap_skip_space(const char *p)
{
    while (regmap_is_space((unsigned char)*p))
        p++;
    return p;
}

/* regmap_logical - parse one logical line (NUL-terminated, trailing white
 * space removed, first character not white). */
static int
regmap_logical(struct regmap_parse *ps, const char *p, struct err *e)
{
    struct regmap *rm = ps->rm;
    struct regmap_rule r;
    uint32_t captures;
    char why[128];
    int maxref;

    memset(&r, 0, sizeof(r));
    r.line = ps->line;
    if (regmap_keyword(p, "endif")) {
        p = regmap_skip_space(p + 5);
        if (*p != '\0')
            return err_set(e, ERR_CONFIG, "%s:%u: text after endif", rm->path,
                           ps->line);
        if (ps->depth == 0)
            return err_set(e, ERR_CONFIG, "%s:%u: endif without matching if",
                           rm->path, ps->line);
        r.kind = REGMAP_ENDIF;
        if (regmap_add(rm, &r, e, ps->line) < 0)
            return -1;
        rm->rules[ps->stack[--ps->depth]].endif = rm->nrules - 1;
        return 0;
    }
    if (regmap_keyword(p, "if")) {
        if (ps->depth == REGMAP_NEST_MAX)
            return err_set(e, ERR_LIMIT, "%s:%u: if nested deeper than %d",
                           rm->path, ps->line, REGMAP_NEST_MAX);
        p = regmap_skip_space(p + 2);
        r.kind = REGMAP_IF;
        if (regmap_pattern(ps, &p, &r, e) < 0)
            return -1;
        if (*regmap_skip_space(p) != '\0') {
            pcre2_code_free(r.code);
            return err_set(e, ERR_CONFIG,
                           "%s:%u: text after the pattern of an if", rm->path,
                           ps->line);
        }
        if (regmap_add(rm, &r, e, ps->line) < 0) {
            pcre2_code_free(r.code);
            return -1;
        }
        ps->stack[ps->depth++] = rm->nrules - 1;
        return 0;
    }
    r.kind = REGMAP_RULE;
    if (regmap_pattern(ps, &p, &r, e) < 0)
        return -1;
    p = regmap_skip_space(p);
    if (*p == '\0') {
        pcre2_code_free(r.code);
        return err_set(e, ERR_CONFIG, "%s:%u: missing result after pattern",
                       rm->path, ps->line);
    }
    if (regmap_template(p, NULL, NULL, 0, NULL, &maxref, why, sizeof(why),
                        NULL) < 0) {
        pcre2_code_free(r.code);
        return err_set(e, ERR_CONFIG, "%s:%u: %s", rm->path, ps->line, why);
    }
    if (maxref >= 0 && r.negate) {
        pcre2_code_free(r.code);
        return err_set(e, ERR_CONFIG,
                       "%s:%u: $%d in the result of a negated pattern",
                       rm->path, ps->line, maxref);
    }
    if (pcre2_pattern_info(r.code, PCRE2_INFO_CAPTURECOUNT, &captures) != 0)
        captures = 0;
    if (maxref > (int)captures) {
        pcre2_code_free(r.code);
        return err_set(e, ERR_CONFIG,
                       "%s:%u: out of range replacement index \"%d\": the "
                       "pattern has %u group(s)",
                       rm->path, ps->line, maxref, (unsigned)captures);
    }
    if ((r.result = strdup(p)) == NULL) {
        pcre2_code_free(r.code);
        return err_nomem(e);
    }
    if (regmap_add(rm, &r, e, ps->line) < 0) {
        pcre2_code_free(r.code);
        free(r.result);
        return -1;
    }
    rm->npatterns++;
    return 0;
}

/* regmap_flush - parse the logical line gathered in lb, if any. */
static int
regmap_flush(struct regmap_parse *ps, struct buf *lb, struct err *e)
{
    int rc;

    if (lb->len == 0)
        return 0;
    while (lb->len > 0 &&
           regmap_is_space((unsigned char)lb->data[lb->len - 1]))
        lb->len--;
    lb->data[lb->len] = '\0';
    rc = regmap_logical(ps, lb->data, e);
    buf_reset(lb);
    return rc;
}

struct regmap *
regmap_parse_text(const char *name, const char *text, size_t len,
                  struct err *e)
{
    struct regmap_parse ps;
    struct regmap *rm;
    struct buf lb;
    const char *p = text, *end = text + len, *nl, *q;
    unsigned lineno = 0;
    size_t n;

    if (len > REGMAP_FILE_MAX) {
        err_set(e, ERR_LIMIT, "%s: larger than %d octets", name,
                REGMAP_FILE_MAX);
        return NULL;
    }
    if ((rm = calloc(1, sizeof(*rm))) == NULL ||
        (rm->path = strdup(name)) == NULL) {
        free(rm);
        err_nomem(e);
        return NULL;
    }
    rm->ovector_pairs = 1;
    memset(&ps, 0, sizeof(ps));
    ps.rm = rm;
    buf_init(&lb, REGMAP_FILE_MAX);
    while (p < end) {
        lineno++;
        nl = memchr(p, '\n', (size_t)(end - p));
        n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
        if (memchr(p, '\0', n) != NULL) {
            err_set(e, ERR_CONFIG, "%s:%u: NUL character", name, lineno);
            goto fail;
        }
        q = p;
        while (q < p + n && regmap_is_space((unsigned char)*q))
            q++;
        if (q == p + n || *q == '#') {
            /* Blank and comment lines are skipped. */
        } else if (q != p) {
            if (lb.len == 0) {
                err_set(e, ERR_CONFIG,
                        "%s:%u: continuation line (starts with white space) "
                        "without a line to continue",
                        name, lineno);
                goto fail;
            }
            if (buf_append(&lb, p, n, e) < 0)
                goto fail;
        } else {
            if (regmap_flush(&ps, &lb, e) < 0)
                goto fail;
            ps.line = lineno;
            if (buf_append(&lb, p, n, e) < 0)
                goto fail;
        }
        p = nl != NULL ? nl + 1 : end;
    }
    if (regmap_flush(&ps, &lb, e) < 0)
        goto fail;
    if (ps.depth > 0) {
        err_set(e, ERR_CONFIG, "%s:%u: if without matching endif", name,
                rm->rules[ps.stack[ps.depth - 1]].line);
        goto fail;
    }
    if ((rm->mcontext = pcre2_match_context_create(NULL)) == NULL) {
        err_nomem(e);
        goto fail;
    }
    pcre2_set_match_limit(rm->mcontext, REGMAP_MATCH_LIMIT);
    pcre2_set_depth_limit(rm->mcontext, REGMAP_DEPTH_LIMIT);
    pcre2_set_heap_limit(rm->mcontext, REGMAP_HEAP_LIMIT);
    buf_fini(&lb);
    return rm;

fail:
    buf_fini(&lb);
    regmap_free(rm);
    return NULL;
}

struct regmap *
regmap_load(const char *path, struct err *e)
{
    struct regmap *rm;
    struct buf text;
    char chunk[8192];
    FILE *fp;
    size_t n;

    if ((fp = fopen(path, "r")) == NULL) {
        err_sys(e, ERR_CONFIG, "%s", path);
        return NULL;
    }
    /* One octet over the limit is enough to know the file is too big. */
    buf_init(&text, REGMAP_FILE_MAX + 1);
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
        if (buf_append(&text, chunk, n, e) < 0) {
            if (e != NULL && e->code == ERR_LIMIT)
                err_set(e, ERR_LIMIT, "%s: larger than %d octets", path,
                        REGMAP_FILE_MAX);
            fclose(fp);
            buf_fini(&text);
            return NULL;
        }
    }
    if (ferror(fp)) {
        err_sys(e, ERR_CONFIG, "%s: read", path);
        fclose(fp);
        buf_fini(&text);
        return NULL;
    }
    fclose(fp);
    rm = regmap_parse_text(path, buf_str(&text), text.len, e);
    buf_fini(&text);
    return rm;
}

void
regmap_free(struct regmap *rm)
{
    size_t i;

    if (rm == NULL)
        return;
    for (i = 0; i < rm->nrules; i++) {
        pcre2_code_free(rm->rules[i].code);
        free(rm->rules[i].result);
    }
    free(rm->rules);
    pcre2_match_context_free(rm->mcontext);
    free(rm->path);
    free(rm);
}

/* regmap_match - when rule r's pattern matches key, the number of
 * leading ovector pairs set (at least 1); 0 when not; -1 on error. */
static int
regmap_match(const struct regmap *rm, const struct regmap_rule *r,
             const char *key, size_t keylen, pcre2_match_data *md,
             struct err *e)
{
    PCRE2_UCHAR msg[256];
    int rc;

    rc = pcre2_match(r->code, (PCRE2_SPTR)key, keylen, 0, 0, md, rm->mcontext);
    /* The JIT's stack is smaller than the interpreter's heap. */
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
        rc = pcre2_match(r->code, (PCRE2_SPTR)key, keylen, 0, PCRE2_NO_JIT, md,
                         rm->mcontext);
    if (rc > 0)
        return rc;
    if (rc == 0) /* the ovector holds every group: cannot happen */
        return err_set(e, ERR_INTERNAL, "%s:%u: pcre2: ovector too small",
                       rm->path, r->line);
    if (rc == PCRE2_ERROR_NOMATCH)
        return 0;
    if (pcre2_get_error_message(rc, msg, sizeof(msg)) < 0)
        snprintf((char *)msg, sizeof(msg), "error %d", rc);
    return err_set(e,
                   rc == PCRE2_ERROR_MATCHLIMIT ||
                           rc == PCRE2_ERROR_DEPTHLIMIT ||
                           rc == PCRE2_ERROR_HEAPLIMIT
                       ? ERR_LIMIT
                       : ERR_LIB,
                   "%s:%u: pcre2: %s", rm->path, r->line, (const char *)msg);
}

int
regmap_lookup(const struct regmap *rm, const char *key, struct buf *out,
              unsigned *line, struct err *e)
{
    const struct regmap_rule *r;
    pcre2_match_data *md;
    size_t i, keylen = strlen(key), mark = out->len;
    int rc = 0, m;

    if ((md = pcre2_match_data_create(rm->ovector_pairs, NULL)) == NULL)
        return err_nomem(e);
    for (i = 0; i < rm->nrules; i++) {
        r = &rm->rules[i];
        if (r->kind == REGMAP_ENDIF)
            continue;
        if ((m = regmap_match(rm, r, key, keylen, md, e)) < 0) {
            rc = -1;
            break;
        }
        if (r->kind == REGMAP_IF) {
            if ((m > 0) == r->negate)
                i = r->endif;
            continue;
        }
        if ((m > 0) == r->negate)
            continue;
        /* A negated rule has no groups to insert (checked at load). */
        if (regmap_template(r->result, key, pcre2_get_ovector_pointer(md),
                            r->negate ? 0 : m, out, NULL, NULL, 0, e) < 0) {
            rc = -1;
            break;
        }
        if (line != NULL)
            *line = r->line;
        rc = 1;
        break;
    }
    pcre2_match_data_free(md);
    if (rc < 0) {
        out->len = mark;
        if (out->data != NULL)
            out->data[mark] = '\0';
    }
    return rc;
}

size_t
regmap_rule_count(const struct regmap *rm)
{
    return rm->npatterns;
}

const char *
regmap_path(const struct regmap *rm)
{
    return rm->path;
}

const char *
regmap_rule_at(const struct regmap *rm, size_t i, unsigned *line)
{
    size_t k;

    for (k = 0; k < rm->nrules; k++) {
        if (rm->rules[k].kind != REGMAP_RULE)
            continue;
        if (i-- == 0) {
            *line = rm->rules[k].line;
            return rm->rules[k].result;
        }
    }
    return NULL;
}
