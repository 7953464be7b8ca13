/*
 * confdoc - relaychain.conf(5) kept in step with the option tables
 *
 * See confdoc.h for what is generated and where each key belongs. The
 * page is handled as lines: a ".SH" line starts a section, which picks
 * the scope (the tables) its key headings are looked up in; a ".TP" line
 * followed by a heading whose first word is a key of that scope is an
 * entry, and only its heading line is replaced. Prose is never touched.
 * Keys no entry documents get one, made from their help text, at the end
 * of their scope's section (made when missing).
 *
 * Everything is bounded by the page, which the caller read (the man page
 * of this project, not input from the network). The output is built in a
 * struct buf the caller owns; errors name the page and line.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "chain/chain.h"
#include "chain/conf.h"
#include "cli/confdoc.h"
#include "cli/parts.h"
#include "msg/match.h"
#include "chain/registry.h"

#define CONFDOC_TABLES_MAX 3
#define CONFDOC_TITLE_MAX 128
#define CONFDOC_PHRASE_MAX 80 /* a hand-written default: "any sender" */

struct confdoc_scope {
    char section[CONFDOC_TITLE_MAX]; /* "STAGE rewrite"; "" for the main */
    const char *anchor;              /* section that gets new entries */
    const char *stage;               /* stage type name, or NULL */
    const char *summary;             /* stage type summary, or NULL */
    const struct cfg_option *tables[CONFDOC_TABLES_MAX + 1];
    size_t nkeys;
    unsigned *line; /* per key, in table order: its entry's line, or 0 */
    int seen;       /* the anchor section is in the page */
};

struct confdoc {
    const char *name;
    struct confdoc_scope *scopes;
    size_t nscopes;
    struct cfg_option *main_options; /* conf_options_merge(parts_all) */
};

/* confdoc_put_token - one argument of a .BR line, quoted when it has to
 * be, with roff's escapes for backslash, minus and double quote. */
static int
confdoc_put_token(struct buf *out, const char *s, struct err *e)
{
    int quote =
        s[0] == '\0' || strchr(s, ' ') != NULL || strchr(s, '"') != NULL;

    if (buf_puts(out, quote ? " \"" : " ", e) < 0)
        return -1;
    for (; *s != '\0'; s++) {
        int rc;

        if (*s == '\\')
            rc = buf_puts(out, "\\e", e);
        else if (*s == '-')
            rc = buf_puts(out, "\\-", e);
        else if (*s == '"')
            rc = buf_puts(out, "\"\"", e);
        else
            rc = buf_putc(out, *s, e);
        if (rc < 0)
            return -1;
    }
    return quote ? buf_putc(out, '"', e) : 0;
}

/* confdoc_heading_as - the heading; phrase, when not NULL, says in words
 * what a key without a built-in default means unset ("any sender"). */
static int
confdoc_heading_as(const struct cfg_option *o, const char *phrase,
                   struct buf *out, struct err *e)
{
    int required = (o->flags & CFG_REQUIRED) != 0;
    int show_def = !required && o->def != NULL && o->def[0] != '\0';
    char lo[32], hi[32], text[CONFDOC_PHRASE_MAX + 64],
        tailbuf[CONFDOC_PHRASE_MAX + 16];
    const char *tail;
    size_t i;

    if (required)
        tail = "; required)";
    else if (o->def == NULL && phrase != NULL) {
        snprintf(tailbuf, sizeof(tailbuf), "; default: %s)", phrase);
        tail = tailbuf;
    } else if (o->def == NULL)
        tail = ")";
    else if (o->def[0] == '\0')
        tail = "; default: empty)";
    else
        tail = "; default: ";
    /* .BR alternates bold and roman: name, text, value, text... */
    if (buf_puts(out, ".BR", e) < 0 || confdoc_put_token(out, o->name, e) < 0)
        return -1;
    if (o->type == CFG_ENUM && o->choices != NULL) {
        if (confdoc_put_token(out, " (choice: ", e) < 0)
            return -1;
        for (i = 0; o->choices[i] != NULL; i++) {
            if (i > 0 && confdoc_put_token(
                             out, o->choices[i + 1] ? ", " : " or ", e) < 0)
                return -1;
            if (confdoc_put_token(out, o->choices[i], e) < 0)
                return -1;
        }
        snprintf(text, sizeof(text), "%s", tail);
    } else if (o->min != 0 || o->max != 0) {
        snprintf(text, sizeof(text), " (%s, %s to %s%s",
                 cfg_type_name(o->type),
                 cfg_format_bound(o->type, o->min, lo, sizeof(lo)),
                 cfg_format_bound(o->type, o->max, hi, sizeof(hi)), tail);
    } else {
        snprintf(text, sizeof(text), " (%s%s", cfg_type_name(o->type), tail);
    }
    if (confdoc_put_token(out, text, e) < 0)
        return -1;
    if (show_def && (confdoc_put_token(out, o->def, e) < 0 ||
                     confdoc_put_token(out, ")", e) < 0))
        return -1;
    return 0;
}

int
confdoc_heading(const struct cfg_option *o, struct buf *out, struct err *e)
{
    return confdoc_heading_as(o, NULL, out, e);
}

/* confdoc_phrase - the words after "default: " in a hand-written
 * heading, up to its closing parenthesis ("any sender"), into out; NULL
 * when there are none or they hold quotes or escapes. */
static const char *
confdoc_phrase(const char *line, size_t len, char *out, size_t n)
{
    const char *p = NULL, *q;
    size_t i, k;

    for (i = 0; i + 9 <= len; i++)
        if (memcmp(line + i, "default: ", 9) == 0)
            p = line + i + 9;
    if (p == NULL)
        return NULL;
    for (q = line + len; q > p && q[-1] != ')'; q--)
        ;
    if (q == p)
        return NULL;
    k = (size_t)(q - 1 - p);
    if (k == 0 || k >= n || memchr(p, '"', k) != NULL ||
        memchr(p, '\\', k) != NULL)
        return NULL;
    memcpy(out, p, k);
    out[k] = '\0';
    return out;
}

/* ---------------------------------------------------------------- scopes */

static void
confdoc_free(struct confdoc *d)
{
    size_t i;

    for (i = 0; i < d->nscopes; i++)
        free(d->scopes[i].line);
    free(d->scopes);
    free(d->main_options);
}

static int
confdoc_scope_add(struct confdoc *d, const char *section, const char *anchor,
                  const struct stage_type *type,
                  const struct cfg_option *const *tables, struct err *e)
{
    struct confdoc_scope *sc = &d->scopes[d->nscopes];
    const struct cfg_option *o;
    size_t i;

    memset(sc, 0, sizeof(*sc));
    snprintf(sc->section, sizeof(sc->section), "%s", section);
    sc->anchor = anchor;
    if (type != NULL) {
        snprintf(sc->section, sizeof(sc->section), "STAGE %s", type->name);
        sc->stage = type->name;
        sc->summary = type->summary;
    }
    for (i = 0; tables[i] != NULL && i < CONFDOC_TABLES_MAX; i++) {
        sc->tables[i] = tables[i];
        for (o = tables[i]; o->name != NULL; o++)
            sc->nkeys++;
    }
    if ((sc->line = calloc(sc->nkeys ? sc->nkeys : 1, sizeof(*sc->line))) ==
        NULL)
        return err_nomem(e);
    d->nscopes++;
    return 0;
}

static int
confdoc_scopes(struct confdoc *d, struct err *e)
{
    const struct cfg_option *main_tables[] = {NULL, NULL};
    const struct cfg_option *common[] = {chain_common_options, match_options,
                                         NULL};
    const struct stage_type *const *types;
    size_t n = registry_all(&types), i;

    if ((d->main_options = conf_options_merge(parts_all, e)) == NULL)
        return -1;
    main_tables[0] = d->main_options;
    if ((d->scopes = calloc(n + 2, sizeof(*d->scopes))) == NULL)
        return err_nomem(e);
    if (confdoc_scope_add(d, "", "MAIN SETTINGS", NULL, main_tables, e) < 0 ||
        confdoc_scope_add(d, "COMMON STAGE SETTINGS", "COMMON STAGE SETTINGS",
                          NULL, common, e) < 0)
        return -1;
    for (i = 0; i < n; i++) {
        const struct cfg_option *own[] = {types[i]->options, NULL};

        if (confdoc_scope_add(d, "", NULL, types[i], own, e) < 0)
            return -1;
        d->scopes[d->nscopes - 1].anchor = d->scopes[d->nscopes - 1].section;
    }
    return 0;
}

/* confdoc_scope_of - the scope of a section title: its own, or the main. */
static struct confdoc_scope *
confdoc_scope_of(struct confdoc *d, const char *title)
{
    size_t i;

    for (i = 1; i < d->nscopes; i++)
        if (strcmp(d->scopes[i].section, title) == 0)
            return &d->scopes[i];
    return &d->scopes[0];
}

/* confdoc_key - the index of key in sc's tables, or -1. */
static long
confdoc_key(const struct confdoc_scope *sc, const char *key,
            const struct cfg_option **opt)
{
    const struct cfg_option *o;
    long k = 0;
    size_t i;

    for (i = 0; sc->tables[i] != NULL; i++)
        for (o = sc->tables[i]; o->name != NULL; o++, k++)
            if (strcmp(o->name, key) == 0) {
                *opt = o;
                return k;
            }
    return -1;
}

static const struct cfg_option *
confdoc_nth(const struct confdoc_scope *sc, size_t n)
{
    const struct cfg_option *o;
    size_t i, k = 0;

    for (i = 0; sc->tables[i] != NULL; i++)
        for (o = sc->tables[i]; o->name != NULL; o++, k++)
            if (k == n)
                return o;
    return NULL;
}

/* ---------------------------------------------------------------- lines */

/* confdoc_title - the title of a ".SH" line, quotes removed, or NULL. */
static const char *
confdoc_title(const char *line, size_t len, char *out, size_t n)
{
    size_t i = 0, j = 0;

    if (len < 4 || strncmp(line, ".SH ", 4) != 0)
        return NULL;
    for (i = 4; i < len && j + 1 < n; i++)
        if (line[i] != '"')
            out[j++] = line[i];
    while (j > 0 && out[j - 1] == ' ')
        j--;
    out[j] = '\0';
    return out;
}

/* confdoc_heading_key - the first word of a ".B", ".BR" or ".BI" line
 * into key (size n); *generated is set when the second argument starts
 * with " (", as the generated headings do. 0, or -1 when it is none. */
static int
confdoc_heading_key(const char *line, size_t len, char *key, size_t n,
                    int *generated)
{
    size_t i, j = 0;

    *generated = 0;
    if (len > 3 && strncmp(line, ".B ", 3) == 0)
        i = 3;
    else if (len > 4 &&
             (strncmp(line, ".BR ", 4) == 0 || strncmp(line, ".BI ", 4) == 0))
        i = 4;
    else
        return -1;
    while (i < len && line[i] == ' ')
        i++;
    if (i < len && line[i] == '"')
        i++;
    while (i < len && j + 1 < n &&
           ((line[i] >= 'a' && line[i] <= 'z') ||
            (line[i] >= '0' && line[i] <= '9') || line[i] == '_'))
        key[j++] = line[i++];
    key[j] = '\0';
    if (j == 0 || !(key[0] >= 'a' && key[0] <= 'z'))
        return -1;
    if (i < len && line[i] == '"')
        i++;
    if (i < len && line[i] != ' ')
        return -1; /* "foo.conf" or "smtp:[": not a key */
    while (i < len && line[i] == ' ')
        i++;
    *generated = len - i >= 3 && strncmp(line + i, "\" (", 3) == 0;
    return 0;
}

/* confdoc_prose - text as a roff paragraph: a sentence with its first
 * letter in upper case and a full stop, roff's escapes applied. */
static int
confdoc_prose(struct buf *out, const char *text, struct err *e)
{
    size_t i, len = strlen(text),
              word = strspn(text, "abcdefghijklmnopqrstuvwxyz");
    /* "where ..." becomes "Where ...", but not "smtp:[host]" or a key. */
    int upper = word > 0 && text[word] == ' ';

    for (i = 0; i < len; i++) {
        char ch = text[i];
        int rc;

        if (i == 0 && upper)
            ch = (char)(ch - 'a' + 'A');
        if (i == 0 && (ch == '.' || ch == '\''))
            rc = buf_puts(out, "\\&", e) < 0 ? -1 : buf_putc(out, ch, e);
        else if (ch == '\\')
            rc = buf_puts(out, "\\e", e);
        else if (ch == '-')
            rc = buf_puts(out, "\\-", e);
        else
            rc = buf_putc(out, ch, e);
        if (rc < 0)
            return -1;
    }
    if (len > 0 && text[len - 1] != '.' && buf_putc(out, '.', e) < 0)
        return -1;
    return buf_putc(out, '\n', e);
}

/* confdoc_add_missing - entries for the keys of sc that have none. */
static int
confdoc_add_missing(const struct confdoc *d, const struct confdoc_scope *sc,
                    struct buf *out, struct err *e)
{
    const struct cfg_option *o;
    size_t k;

    for (k = 0; k < sc->nkeys; k++) {
        if (sc->line[k] != 0)
            continue;
        o = confdoc_nth(sc, k);
        if (o->help == NULL || o->help[0] == '\0')
            return err_set(e, ERR_CONFIG,
                           "%s: key %s (%s) has no help text in its option "
                           "table",
                           d->name, o->name,
                           sc->stage ? sc->section : "relaychain.conf");
        if (buf_puts(out, ".TP\n", e) < 0 || confdoc_heading(o, out, e) < 0 ||
            buf_putc(out, '\n', e) < 0 || confdoc_prose(out, o->help, e) < 0)
            return -1;
    }
    return 0;
}

/* confdoc_add_sections - a section for each stage type the page lacks. */
static int
confdoc_add_sections(const struct confdoc *d, struct buf *out, struct err *e)
{
    size_t i;

    for (i = 0; i < d->nscopes; i++) {
        const struct confdoc_scope *sc = &d->scopes[i];

        if (sc->seen || sc->stage == NULL)
            continue;
        if (buf_printf(out, e, ".SH %s\nThe\n.B %s\nstage: ", sc->section,
                       sc->stage) < 0 ||
            confdoc_prose(out, sc->summary ? sc->summary : sc->stage, e) < 0 ||
            confdoc_add_missing(d, sc, out, e) < 0)
            return -1;
    }
    return 0;
}

/* confdoc_pass - one pass over the page. Without out it records where
 * each key is documented and refuses duplicates and stale headings; with
 * out it writes the page with the headings regenerated and the missing
 * entries and sections added. */
static int
confdoc_pass(struct confdoc *d, const char *page, size_t len, struct buf *out,
             struct err *e)
{
    struct confdoc_scope *cur = &d->scopes[0], *anchor = NULL;
    const char *p = page, *end = page + len;
    char title[CONFDOC_TITLE_MAX], key[64], phrase[CONFDOC_PHRASE_MAX];
    int after_tp = 0, added_sections = 0;
    unsigned lineno = 0;
    size_t i;

    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((nl ? nl : end) - p);
        const struct cfg_option *o;
        int generated;
        long k;

        lineno++;
        if (confdoc_title(p, n, title, sizeof(title)) != NULL) {
            if (out != NULL && anchor != NULL &&
                confdoc_add_missing(d, anchor, out, e) < 0)
                return -1;
            if (out != NULL && !added_sections &&
                strcmp(title, "EXAMPLES") == 0) {
                if (confdoc_add_sections(d, out, e) < 0)
                    return -1;
                added_sections = 1;
            }
            cur = confdoc_scope_of(d, title);
            anchor = NULL;
            for (i = 0; i < d->nscopes; i++)
                if (strcmp(d->scopes[i].anchor, title) == 0) {
                    anchor = &d->scopes[i];
                    anchor->seen = 1;
                }
        }
        if (after_tp &&
            confdoc_heading_key(p, n, key, sizeof(key), &generated) == 0) {
            if ((k = confdoc_key(cur, key, &o)) >= 0) {
                if (out == NULL && cur->line[k] != 0)
                    return err_set(e, ERR_CONFIG,
                                   "%s:%u: key %s is documented twice (first "
                                   "at line %u)",
                                   d->name, lineno, key, cur->line[k]);
                cur->line[k] = lineno;
                if (out != NULL &&
                    (confdoc_heading_as(
                         o,
                         o->def == NULL
                             ? confdoc_phrase(p, n, phrase, sizeof(phrase))
                             : NULL,
                         out, e) < 0 ||
                     buf_putc(out, '\n', e) < 0))
                    return -1;
                after_tp = 0;
                p = nl ? nl + 1 : end;
                continue;
            }
            if (generated)
                return err_set(e, ERR_CONFIG,
                               "%s:%u: a heading for %s, which is no key of "
                               "%s (removed, renamed or in the wrong "
                               "section?)",
                               d->name, lineno, key,
                               cur->section[0] ? cur->section
                                               : "relaychain.conf");
        }
        /* .TQ is groff's further tag of the same entry. */
        after_tp =
            n == 3 && (strncmp(p, ".TP", 3) == 0 || strncmp(p, ".TQ", 3) == 0);
        if (out != NULL && (buf_append(out, p, n, e) < 0 ||
                            (nl && buf_putc(out, '\n', e) < 0)))
            return -1;
        p = nl ? nl + 1 : end;
    }
    if (out == NULL)
        return 0;
    if (anchor != NULL && confdoc_add_missing(d, anchor, out, e) < 0)
        return -1;
    if (!added_sections && confdoc_add_sections(d, out, e) < 0)
        return -1;
    /* An anchor section the page does not have: made at the end. */
    for (i = 0; i < d->nscopes; i++)
        if (!d->scopes[i].seen && d->scopes[i].stage == NULL &&
            (buf_printf(out, e, ".SH %s\n", d->scopes[i].anchor) < 0 ||
             confdoc_add_missing(d, &d->scopes[i], out, e) < 0))
            return -1;
    return 0;
}

int
confdoc_update(const char *name, const char *page, size_t len, struct buf *out,
               struct err *e)
{
    struct confdoc d = {name, NULL, 0, NULL};
    int rc = -1;

    if (confdoc_scopes(&d, e) == 0 &&
        confdoc_pass(&d, page, len, NULL, e) == 0)
        rc = confdoc_pass(&d, page, len, out, e);
    confdoc_free(&d);
    return rc;
}
