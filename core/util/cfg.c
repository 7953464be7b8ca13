/*
 * cfg - Postfix main.cf-style configuration files checked against tables
 *
 * See cfg.h for the syntax and the types. cfg_parse_text() splits the text
 * into physical lines, drops comments and blank lines, joins continuation
 * lines to the value before them with one space, and keeps one entry per
 * key with the line that set it. Nothing is interpreted yet: cfg_raw() can
 * read any value, so a chain.d file can name the table it is checked
 * against.
 *
 * cfg_validate() remembers every option of the tables, looks each entry up,
 * and converts each declared key (set or defaulted) once into a cfg_val:
 * numbers, booleans and enum indexes, relative paths resolved against the
 * directory of the file, lists split into items. The getters only read
 * these values, so a validated cfg is safe to share between threads.
 *
 * Input is bounded: a file over CFG_FILE_MAX octets, a line over
 * CFG_LINE_MAX octets or more than CFG_KEYS_MAX keys is refused, so a
 * hostile file costs at most a few megabytes and no quadratic time worth
 * mentioning. Control characters other than tab (and a CR before the line
 * end) are refused rather than carried into values and log lines.
 *
 * The cfg owns every string it hands out; cfg_free() releases them all.
 * Every failure is "path:line: reason" (or "path: reason" for a file that
 * cannot be read) with ERR_CONFIG, ERR_IO or ERR_NOMEM; a bad built-in
 * default or a key declared twice in the tables is ERR_INTERNAL.
 */
#include "config.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/cfg.h"

#define CFG_FILE_MAX (1024 * 1024) /* octets of one configuration file */
#define CFG_LINE_MAX 4096          /* octets of one physical line */
#define CFG_KEYS_MAX 1000          /* keys in one file */
#define CFG_SHOW_MAX 64            /* octets of a value quoted in an error */
#define CFG_SUGGEST_MAX 64         /* longest key that gets a did-you-mean */
#define CFG_REASON_MAX 256

struct cfg_entry {
    char *key;
    struct buf value; /* joined value, without surrounding white space */
    unsigned line;
};

/* One declared key after cfg_validate(). */
struct cfg_val {
    const struct cfg_option *opt;
    const struct cfg_entry *ent; /* NULL: the default applies */
    const char *text;            /* effective value; NULL: not set */
    char *own;                   /* storage for a resolved path */
    long long num;               /* INT, SIZE, TIME(ms), BOOL, ENUM index */
    char *itembuf;               /* LIST: copy of text, split in place */
    const char **items;          /* LIST: NULL-terminated, or NULL */
    size_t nitems;
};

struct cfg {
    char *path;
    char *dir; /* directory of path with a trailing '/', or NULL */
    unsigned last_line;
    struct cfg_entry *ents;
    size_t nents;
    size_t cap;
    struct cfg_val *vals; /* every declared key, in table order */
    size_t nvals;
    int validated;
};

static const char *const cfg_no_items[] = {NULL};

/* cfg_show - a bounded, quotable copy of s for an error message. */
static const char *
cfg_show(const char *s, char *out, size_t n)
{
    size_t len = strlen(s);

    if (len <= CFG_SHOW_MAX)
        snprintf(out, n, "%s", s);
    else
        snprintf(out, n, "%.*s...", CFG_SHOW_MAX - 3, s);
    return out;
}

static int cfg_line_err(struct err *e, const struct cfg *c, unsigned line,
                        const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
cfg_line_err(struct err *e, const struct cfg *c, unsigned line,
             const char *fmt, ...)
{
    char reason[ERR_TEXT_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    return err_set(e, ERR_CONFIG, "%s:%u: %s", c->path, line, reason);
}

static int
cfg_ascii_lower(int ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch;
}

static int
cfg_ascii_caseeq(const char *a, const char *b)
{
    while (*a != '\0' && cfg_ascii_lower((unsigned char)*a) ==
                             cfg_ascii_lower((unsigned char)*b)) {
        a++;
        b++;
    }
    return *a == '\0' && *b == '\0';
}

static int
cfg_is_space(int ch)
{
    return ch == ' ' || ch == '\t';
}

static int
cfg_is_digit(int ch)
{
    return ch >= '0' && ch <= '9';
}

/* ---------------------------------------------------------------- values */

/* cfg_scan_uint - decimal digits at *sp; -1 without digits, -2 on
 * overflow past LLONG_MAX. Advances *sp past the digits. */
static int
cfg_scan_uint(const char **sp, long long *out)
{
    const char *p = *sp;
    long long v = 0;

    if (!cfg_is_digit((unsigned char)*p))
        return -1;
    for (; cfg_is_digit((unsigned char)*p); p++) {
        int d = *p - '0';

        if (v > (LLONG_MAX - d) / 10)
            return -2;
        v = v * 10 + d;
    }
    *sp = p;
    *out = v;
    return 0;
}

/* cfg_scan_scaled - digits times the multiplier of the unit that follows;
 * 0, -1 on syntax, -2 on overflow. */
static int
cfg_scan_scaled(const char *s, const char *const *units,
                const long long *mults, long long *out)
{
    const char *p = s;
    long long v;
    size_t i;
    int rc;

    if ((rc = cfg_scan_uint(&p, &v)) < 0)
        return rc;
    for (i = 0; units[i] != NULL; i++)
        if (cfg_ascii_caseeq(p, units[i]))
            break;
    if (units[i] == NULL)
        return -1;
    if (v > LLONG_MAX / mults[i])
        return -2;
    *out = v * mults[i];
    return 0;
}

static const char *const cfg_size_units[] = {"", "k", "m", "g", NULL};
static const long long cfg_size_mults[] = {1, 1024LL, 1024LL * 1024,
                                           1024LL * 1024 * 1024};

static const char *const cfg_time_units[] = {"",  "ms", "s", "m",
                                             "h", "d",  "w", NULL};
static const long long cfg_time_mults[] = {
    1000LL, 1LL, 1000LL, 60000LL, 3600000LL, 86400000LL, 604800000LL};

static int
cfg_scan_size(const char *s, long long *out)
{
    return cfg_scan_scaled(s, cfg_size_units, cfg_size_mults, out);
}

static int
cfg_scan_time(const char *s, long long *out_ms)
{
    return cfg_scan_scaled(s, cfg_time_units, cfg_time_mults, out_ms);
}

int
cfg_parse_size(const char *s, long long *out)
{
    return cfg_scan_size(s, out) < 0 ? -1 : 0;
}

int
cfg_parse_time(const char *s, long long *out_ms)
{
    return cfg_scan_time(s, out_ms) < 0 ? -1 : 0;
}

int
cfg_parse_bool(const char *s, int *out)
{
    static const char *const yes[] = {"yes", "true", "on", "1"};
    static const char *const no[] = {"no", "false", "off", "0"};
    size_t i;

    for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        if (cfg_ascii_caseeq(s, yes[i])) {
            *out = 1;
            return 0;
        }
        if (cfg_ascii_caseeq(s, no[i])) {
            *out = 0;
            return 0;
        }
    }
    return -1;
}

/* cfg_scan_int - optional sign and digits; -1 on syntax, -2 on overflow. */
static int
cfg_scan_int(const char *s, long long *out)
{
    const char *p = s;
    int neg = 0, rc;
    long long v;

    if (*p == '-' || *p == '+')
        neg = *p++ == '-';
    if ((rc = cfg_scan_uint(&p, &v)) < 0)
        return rc;
    if (*p != '\0')
        return -1;
    *out = neg ? -v : v;
    return 0;
}

const char *
cfg_format_bound(enum cfg_type type, long long v, char *out, size_t n)
{
    static const char *const size_sfx[] = {"g", "m", "k"};
    static const long long size_div[] = {1024LL * 1024 * 1024, 1024LL * 1024,
                                         1024LL};
    static const char *const time_sfx[] = {"w", "d", "h", "m", "s"};
    static const long long time_div[] = {604800000LL, 86400000LL, 3600000LL,
                                         60000LL, 1000LL};
    size_t i;

    if (v == 0) {
        snprintf(out, n, "0");
        return out;
    }
    if (type == CFG_SIZE && v > 0) {
        for (i = 0; i < sizeof(size_div) / sizeof(size_div[0]); i++)
            if (v % size_div[i] == 0) {
                snprintf(out, n, "%lld%s", v / size_div[i], size_sfx[i]);
                return out;
            }
    } else if (type == CFG_TIME) {
        for (i = 0; v > 0 && i < sizeof(time_div) / sizeof(time_div[0]); i++)
            if (v % time_div[i] == 0) {
                snprintf(out, n, "%lld%s", v / time_div[i], time_sfx[i]);
                return out;
            }
        snprintf(out, n, "%lldms", v);
        return out;
    }
    snprintf(out, n, "%lld", v);
    return out;
}

/* cfg_choices - "a, b or c" for an error message. */
static const char *
cfg_choices(const char *const *choices, char *out, size_t n)
{
    size_t i, len = 0;

    out[0] = '\0';
    for (i = 0; choices != NULL && choices[i] != NULL && len < n; i++) {
        const char *sep = i == 0 ? "" : choices[i + 1] == NULL ? " or " : ", ";
        int w = snprintf(out + len, n - len, "%s%s", sep, choices[i]);

        if (w < 0)
            break;
        len += (size_t)w;
    }
    return out;
}

/* cfg_resolve - text joined to the directory of the file when relative. */
static char *
cfg_resolve(const struct cfg *c, const char *text)
{
    size_t dlen, tlen = strlen(text);
    char *p;

    if (text[0] == '/' || c->dir == NULL)
        return strdup(text);
    dlen = strlen(c->dir);
    if ((p = malloc(dlen + tlen + 1)) == NULL)
        return NULL;
    memcpy(p, c->dir, dlen);
    memcpy(p + dlen, text, tlen + 1);
    return p;
}

static int
cfg_split_list(struct cfg_val *v)
{
    size_t n = 0, i = 0;
    char *p;

    if ((v->itembuf = strdup(v->text)) == NULL)
        return -1;
    for (p = v->itembuf; *p != '\0'; p++)
        if (*p != ',' && !cfg_is_space((unsigned char)*p) &&
            (p == v->itembuf || p[-1] == ',' ||
             cfg_is_space((unsigned char)p[-1])))
            n++;
    if ((v->items = calloc(n + 1, sizeof(*v->items))) == NULL)
        return -1;
    for (p = v->itembuf; *p != '\0'; p++) {
        if (*p == ',' || cfg_is_space((unsigned char)*p)) {
            *p = '\0';
        } else if (p == v->itembuf || p[-1] == '\0') {
            v->items[i++] = p;
        }
    }
    v->nitems = i;
    return 0;
}

/* cfg_val_set - convert text for v->opt. Returns 0, or -1 with the reason
 * (without "path:line: key:") in why, or -2 when out of memory. */
static int
cfg_val_set(const struct cfg *c, struct cfg_val *v, const char *text,
            char *why, size_t n)
{
    const struct cfg_option *o = v->opt;
    char shown[CFG_SHOW_MAX + 8], lo[32], hi[32], list[CFG_REASON_MAX];
    long long num = 0;
    int rc = 0, b;
    size_t i;

    v->text = text;
    cfg_show(text, shown, sizeof(shown));
    switch (o->type) {
    case CFG_STRING:
        return 0;
    case CFG_PATH:
        if (text[0] == '\0') {
            snprintf(why, n, "empty file name");
            return -1;
        }
        if ((v->own = cfg_resolve(c, text)) == NULL)
            return -2;
        v->text = v->own;
        return 0;
    case CFG_LIST:
        return cfg_split_list(v) < 0 ? -2 : 0;
    case CFG_BOOL:
        if (cfg_parse_bool(text, &b) < 0) {
            snprintf(why, n, "invalid value '%s' (expected yes or no)", shown);
            return -1;
        }
        v->num = b;
        return 0;
    case CFG_ENUM:
        for (i = 0; o->choices != NULL && o->choices[i] != NULL; i++)
            if (cfg_ascii_caseeq(text, o->choices[i])) {
                v->num = (long long)i;
                return 0;
            }
        snprintf(why, n, "invalid value '%s' (expected %s)", shown,
                 cfg_choices(o->choices, list, sizeof(list)));
        return -1;
    case CFG_INT:
        if ((rc = cfg_scan_int(text, &num)) == -1)
            snprintf(why, n, "invalid number '%s' (expected a whole number)",
                     shown);
        break;
    case CFG_SIZE:
        if ((rc = cfg_scan_size(text, &num)) == -1)
            snprintf(why, n,
                     "invalid size '%s' (expected a number with optional k, "
                     "m or g)",
                     shown);
        break;
    case CFG_TIME:
        if ((rc = cfg_scan_time(text, &num)) == -1)
            snprintf(why, n,
                     "invalid time '%s' (expected a number with optional "
                     "ms, s, m, h, d or w)",
                     shown);
        break;
    }
    if (rc == -1)
        return -1;
    if (rc == -2 && o->min == 0 && o->max == 0) {
        snprintf(why, n, "'%s' is too %s", shown,
                 text[0] == '-' ? "small" : "large");
        return -1;
    }
    if (rc == -2 ||
        ((o->min != 0 || o->max != 0) && (num < o->min || num > o->max))) {
        snprintf(why, n, "'%s' is out of range (expected %s to %s)", shown,
                 cfg_format_bound(o->type, o->min, lo, sizeof(lo)),
                 cfg_format_bound(o->type, o->max, hi, sizeof(hi)));
        return -1;
    }
    v->num = num;
    return 0;
}

static void
cfg_vals_free(struct cfg *c)
{
    size_t i;

    for (i = 0; i < c->nvals; i++) {
        free(c->vals[i].own);
        free(c->vals[i].itembuf);
        free(c->vals[i].items);
    }
    free(c->vals);
    c->vals = NULL;
    c->nvals = 0;
    c->validated = 0;
}

/* ---------------------------------------------------------------- parsing */

static struct cfg_entry *
cfg_entry_find(const struct cfg *c, const char *key)
{
    size_t i;

    for (i = 0; i < c->nents; i++)
        if (strcmp(c->ents[i].key, key) == 0)
            return &c->ents[i];
    return NULL;
}

static int
cfg_key_is_valid(const char *k, size_t len)
{
    size_t i;

    if (len == 0 || !(k[0] >= 'a' && k[0] <= 'z'))
        return 0;
    for (i = 1; i < len; i++)
        if (!((k[i] >= 'a' && k[i] <= 'z') ||
              cfg_is_digit((unsigned char)k[i]) || k[i] == '_'))
            return 0;
    return 1;
}

static int
cfg_add(struct cfg *c, const char *k, size_t klen, const char *v, size_t vlen,
        unsigned line, struct err *e)
{
    char shown[CFG_SHOW_MAX + 8], key[CFG_LINE_MAX + 1];
    struct cfg_entry *ent;

    memcpy(key, k, klen);
    key[klen] = '\0';
    if (klen == 0)
        return cfg_line_err(e, c, line, "missing key before '='");
    if (!cfg_key_is_valid(k, klen))
        return cfg_line_err(e, c, line,
                            "invalid key '%s' (expected lower-case letters, "
                            "digits and '_', starting with a letter)",
                            cfg_show(key, shown, sizeof(shown)));
    if ((ent = cfg_entry_find(c, key)) != NULL)
        return cfg_line_err(e, c, line,
                            "duplicate key '%s', first set at line %u",
                            cfg_show(key, shown, sizeof(shown)), ent->line);
    if (c->nents == CFG_KEYS_MAX)
        return cfg_line_err(e, c, line, "too many keys (limit %d)",
                            CFG_KEYS_MAX);
    if (c->nents == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        struct cfg_entry *p = realloc(c->ents, cap * sizeof(*p));

        if (p == NULL)
            return err_nomem(e);
        c->ents = p;
        c->cap = cap;
    }
    ent = &c->ents[c->nents];
    buf_init(&ent->value, CFG_FILE_MAX);
    ent->line = line;
    if ((ent->key = strdup(key)) == NULL)
        return err_nomem(e);
    c->nents++;
    /* An empty value is a value: buf_str() gives "" without data. */
    return buf_append(&ent->value, v, vlen, e);
}

static int
cfg_parse_line(struct cfg *c, const char *s, size_t len, unsigned line,
               struct cfg_entry **last, struct err *e)
{
    const char *eq, *k, *v;
    size_t i, klen, vlen;

    if (len > 0 && s[len - 1] == '\r')
        len--;
    if (len > CFG_LINE_MAX)
        return cfg_line_err(e, c, line, "line longer than %d octets",
                            CFG_LINE_MAX);
    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];

        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return cfg_line_err(e, c, line, "invalid control character 0x%02x",
                                ch);
    }
    while (len > 0 && cfg_is_space((unsigned char)s[len - 1]))
        len--;
    for (i = 0; i < len && cfg_is_space((unsigned char)s[i]); i++)
        ;
    if (i == len || s[i] == '#')
        return 0;
    if (i > 0) {
        if (*last == NULL)
            return cfg_line_err(e, c, line,
                                "continuation line with no 'key = value' "
                                "before it");
        if ((*last)->value.len > 0 && buf_putc(&(*last)->value, ' ', e) < 0)
            return -1;
        return buf_append(&(*last)->value, s + i, len - i, e);
    }
    if ((eq = memchr(s, '=', len)) == NULL)
        return cfg_line_err(e, c, line,
                            "syntax error (expected 'key = value')");
    k = s;
    klen = (size_t)(eq - s);
    while (klen > 0 && cfg_is_space((unsigned char)k[klen - 1]))
        klen--;
    v = eq + 1;
    vlen = len - (size_t)(v - s);
    while (vlen > 0 && cfg_is_space((unsigned char)*v)) {
        v++;
        vlen--;
    }
    if (cfg_add(c, k, klen, v, vlen, line, e) < 0)
        return -1;
    *last = &c->ents[c->nents - 1];
    return 0;
}

static char *
cfg_dirname(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t n;
    char *d;

    if (slash == NULL)
        return NULL;
    n = (size_t)(slash - path) + 1;
    if ((d = malloc(n + 1)) == NULL)
        return NULL;
    memcpy(d, path, n);
    d[n] = '\0';
    return d;
}

struct cfg *
cfg_parse_text(const char *name, const char *text, size_t len, struct err *e)
{
    struct cfg_entry *last = NULL;
    const char *p = text, *end = text + len, *nl;
    unsigned line = 0;
    struct cfg *c;

    if ((c = calloc(1, sizeof(*c))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    if ((c->path = strdup(name)) == NULL ||
        (strchr(name, '/') != NULL && (c->dir = cfg_dirname(name)) == NULL)) {
        err_nomem(e);
        goto fail;
    }
    if (len > CFG_FILE_MAX) {
        err_set(e, ERR_CONFIG, "%s: larger than %d octets", name,
                CFG_FILE_MAX);
        goto fail;
    }
    while (p < end) {
        /* Parse whole lines only, so the bound is the file size. */
        nl = memchr(p, '\n', (size_t)(end - p));
        line++;
        if (cfg_parse_line(c, p, (size_t)((nl ? nl : end) - p), line, &last,
                           e) < 0)
            goto fail;
        p = nl ? nl + 1 : end;
    }
    c->last_line = line ? line : 1;
    return c;

fail:
    cfg_free(c);
    return NULL;
}

struct cfg *
cfg_parse(const char *path, struct err *e)
{
    struct cfg *c = NULL;
    struct stat st;
    char *data;
    size_t n;
    FILE *fp;

    if ((fp = fopen(path, "r")) == NULL) {
        err_sys(e, ERR_IO, "%s: cannot open", path);
        return NULL;
    }
    if (fstat(fileno(fp), &st) < 0) {
        err_sys(e, ERR_IO, "%s: cannot stat", path);
        fclose(fp);
        return NULL;
    }
    if (!S_ISREG(st.st_mode)) {
        err_set(e, ERR_CONFIG, "%s: not a regular file", path);
        fclose(fp);
        return NULL;
    }
    if ((data = malloc(CFG_FILE_MAX + 1)) == NULL) {
        err_nomem(e);
        fclose(fp);
        return NULL;
    }
    n = fread(data, 1, CFG_FILE_MAX + 1, fp);
    if (ferror(fp))
        err_sys(e, ERR_IO, "%s: read error", path);
    else if (n > CFG_FILE_MAX)
        err_set(e, ERR_CONFIG, "%s: larger than %d octets", path,
                CFG_FILE_MAX);
    else
        c = cfg_parse_text(path, data, n, e);
    free(data);
    fclose(fp);
    return c;
}

const char *
cfg_raw(const struct cfg *c, const char *key)
{
    const struct cfg_entry *ent = cfg_entry_find(c, key);

    return ent ? buf_str(&ent->value) : NULL;
}

unsigned
cfg_raw_line(const struct cfg *c, const char *key)
{
    const struct cfg_entry *ent = cfg_entry_find(c, key);

    return ent ? ent->line : 0;
}

void
cfg_free(struct cfg *c)
{
    size_t i;

    if (c == NULL)
        return;
    cfg_vals_free(c);
    for (i = 0; i < c->nents; i++) {
        free(c->ents[i].key);
        buf_fini(&c->ents[i].value);
    }
    free(c->ents);
    free(c->path);
    free(c->dir);
    free(c);
}

/* ---------------------------------------------------------------- checks */

/* cfg_distance - edits (insert, delete, change, swap of neighbours)
 * between two short strings, for did-you-mean. */
static size_t
cfg_distance(const char *a, const char *b)
{
    size_t rows[3][CFG_SUGGEST_MAX + 1], la = strlen(a), lb = strlen(b), i, j;
    size_t *prev2 = rows[0], *prev = rows[1], *cur = rows[2], *t;

    if (la > CFG_SUGGEST_MAX || lb > CFG_SUGGEST_MAX)
        return SIZE_MAX;
    for (j = 0; j <= lb; j++)
        prev[j] = j;
    for (i = 1; i <= la; i++) {
        cur[0] = i;
        for (j = 1; j <= lb; j++) {
            size_t best = prev[j - 1] + (a[i - 1] != b[j - 1]);

            if (prev[j] + 1 < best)
                best = prev[j] + 1;
            if (cur[j - 1] + 1 < best)
                best = cur[j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] &&
                a[i - 2] == b[j - 1] && prev2[j - 2] + 1 < best)
                best = prev2[j - 2] + 1;
            cur[j] = best;
        }
        t = prev2;
        prev2 = prev;
        prev = cur;
        cur = t;
    }
    return prev[lb];
}

static const struct cfg_option *
cfg_suggest(const struct cfg_option *const *tables, const char *key)
{
    const struct cfg_option *best = NULL, *o;
    size_t d, bestd = SIZE_MAX, i;

    for (i = 0; tables[i] != NULL; i++)
        for (o = tables[i]; o->name != NULL; o++)
            if ((d = cfg_distance(key, o->name)) < bestd) {
                bestd = d;
                best = o;
            }
    /* Close enough to be a typo, not a different word. */
    if (best == NULL || bestd > 2 || bestd * 3 > strlen(best->name))
        return NULL;
    return best;
}

static struct cfg_val *
cfg_val_lookup(const struct cfg *c, const char *key)
{
    size_t i;

    for (i = 0; i < c->nvals; i++)
        if (strcmp(c->vals[i].opt->name, key) == 0)
            return &c->vals[i];
    return NULL;
}

int
cfg_validate(struct cfg *c, const struct cfg_option *const *tables,
             struct err *e)
{
    char why[ERR_TEXT_MAX], shown[CFG_SHOW_MAX + 8];
    const struct cfg_option *o, *hint;
    size_t nt, n = 0, i, j;
    struct cfg_val *v;
    int rc;

    cfg_vals_free(c);
    for (nt = 0; tables[nt] != NULL; nt++)
        for (o = tables[nt]; o->name != NULL; o++)
            n++;
    if ((c->vals = calloc(n ? n : 1, sizeof(*c->vals))) == NULL)
        return err_nomem(e);
    for (i = 0; i < nt; i++) {
        for (o = tables[i]; o->name != NULL; o++) {
            if (cfg_val_lookup(c, o->name) != NULL) {
                cfg_vals_free(c);
                return err_set(e, ERR_INTERNAL, "%s: key '%s' declared twice",
                               c->path, o->name);
            }
            c->vals[c->nvals++].opt = o;
        }
    }

    /* The file's own keys first, in file order, so the first mistake in
     * the file is the one reported. */
    for (j = 0; j < c->nents; j++) {
        const struct cfg_entry *ent = &c->ents[j];

        if ((v = cfg_val_lookup(c, ent->key)) == NULL) {
            hint = cfg_suggest(tables, ent->key);
            cfg_show(ent->key, shown, sizeof(shown));
            if (hint != NULL)
                cfg_line_err(e, c, ent->line,
                             "unknown key '%s' (did you mean '%s'?)", shown,
                             hint->name);
            else
                cfg_line_err(e, c, ent->line, "unknown key '%s'", shown);
            cfg_vals_free(c);
            return -1;
        }
        v->ent = ent;
        if ((rc = cfg_val_set(c, v, buf_str(&ent->value), why, sizeof(why))) <
            0) {
            if (rc == -2)
                err_nomem(e);
            else
                cfg_line_err(e, c, ent->line, "%s: %s", ent->key, why);
            cfg_vals_free(c);
            return -1;
        }
    }

    for (i = 0; i < c->nvals; i++) {
        v = &c->vals[i];
        o = v->opt;
        if (v->ent != NULL)
            continue;
        if (o->flags & CFG_REQUIRED) {
            cfg_line_err(e, c, c->last_line, "missing required key '%s'",
                         o->name);
            cfg_vals_free(c);
            return -1;
        }
        if (o->def == NULL) {
            if (o->type == CFG_ENUM)
                v->num = -1;
            continue;
        }
        if ((rc = cfg_val_set(c, v, o->def, why, sizeof(why))) < 0) {
            if (rc == -2)
                err_nomem(e);
            else
                err_set(e, ERR_INTERNAL, "%s: built-in default of %s: %s",
                        c->path, o->name, why);
            cfg_vals_free(c);
            return -1;
        }
    }
    c->validated = 1;
    return 0;
}

/* ---------------------------------------------------------------- getters */

static const struct cfg_val *
cfg_get(const struct cfg *c, const char *key)
{
    const struct cfg_val *v;

    assert(c->validated);
    v = cfg_val_lookup(c, key);
    assert(v != NULL);
    return v;
}

const char *
cfg_str(const struct cfg *c, const char *key)
{
    return cfg_get(c, key)->text;
}

long long
cfg_num(const struct cfg *c, const char *key)
{
    const struct cfg_val *v = cfg_get(c, key);

    assert(v->opt->type == CFG_INT || v->opt->type == CFG_SIZE ||
           v->opt->type == CFG_TIME);
    return v->num;
}

int
cfg_bool(const struct cfg *c, const char *key)
{
    const struct cfg_val *v = cfg_get(c, key);

    assert(v->opt->type == CFG_BOOL);
    return (int)v->num;
}

int
cfg_enum(const struct cfg *c, const char *key)
{
    const struct cfg_val *v = cfg_get(c, key);

    assert(v->opt->type == CFG_ENUM);
    return (int)v->num;
}

size_t
cfg_list(const struct cfg *c, const char *key, const char *const **items)
{
    const struct cfg_val *v = cfg_get(c, key);

    assert(v->opt->type == CFG_LIST);
    *items = v->items ? v->items : cfg_no_items;
    return v->nitems;
}

int
cfg_is_set(const struct cfg *c, const char *key)
{
    return cfg_get(c, key)->ent != NULL;
}

unsigned
cfg_line(const struct cfg *c, const char *key)
{
    const struct cfg_val *v = cfg_get(c, key);

    return v->ent ? v->ent->line : 0;
}

const char *
cfg_path(const struct cfg *c)
{
    return c->path;
}

int
cfg_err(struct err *e, const struct cfg *c, const char *key, const char *fmt,
        ...)
{
    char reason[ERR_TEXT_MAX];
    unsigned line = cfg_line(c, key);
    va_list ap;

    /* Format first: an argument may point into e->text. */
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    if (line == 0)
        return err_set(e, ERR_CONFIG, "%s: %s (default): %s", c->path, key,
                       reason);
    return err_set(e, ERR_CONFIG, "%s:%u: %s: %s", c->path, line, key, reason);
}

int
cfg_err_prefixed(struct err *e, const struct cfg *c, const char *key)
{
    size_t n = strcspn(e->text, ": ");
    char named[CFG_SUGGEST_MAX + 1];

    /* "next_hop_auth_file: x: No such file" names its key already. */
    if (n > 0 && n <= CFG_SUGGEST_MAX && e->text[n] == ':' &&
        e->text[n + 1] == ' ') {
        memcpy(named, e->text, n);
        named[n] = '\0';
        if (c->validated && cfg_val_lookup(c, named) != NULL)
            return cfg_err(e, c, cfg_val_lookup(c, named)->opt->name, "%s",
                           e->text + n + 2);
    }
    return cfg_err(e, c, key, "%s", e->text);
}

void
cfg_print(const struct cfg *c, FILE *fp, const char *indent)
{
    size_t i;

    assert(c->validated);
    for (i = 0; i < c->nvals; i++) {
        const struct cfg_val *v = &c->vals[i];

        if (v->text == NULL)
            fprintf(fp, "%s%s = (not set)\n", indent, v->opt->name);
        else
            fprintf(fp, "%s%s = %s%s\n", indent, v->opt->name, v->text,
                    v->ent == NULL ? " (default)" : "");
    }
}

const char *
cfg_type_name(enum cfg_type type)
{
    switch (type) {
    case CFG_STRING:
        return "string";
    case CFG_PATH:
        return "file name";
    case CFG_INT:
        return "number";
    case CFG_SIZE:
        return "size";
    case CFG_TIME:
        return "time";
    case CFG_BOOL:
        return "boolean";
    case CFG_ENUM:
        return "choice";
    case CFG_LIST:
        return "list";
    }
    return "value";
}

void
cfg_print_values(const struct cfg *c, FILE *fp, int set_only,
                 const char *const *keys)
{
    size_t i, k;

    assert(c->validated);
    for (i = 0; i < c->nvals; i++) {
        const struct cfg_val *v = &c->vals[i];

        if (set_only && v->ent == NULL)
            continue;
        for (k = 0; keys != NULL && keys[k] != NULL; k++)
            if (strcmp(keys[k], v->opt->name) == 0)
                break;
        if (keys != NULL && keys[k] == NULL)
            continue;
        /* The value as written: a file name as the admin gave it, not as
         * resolved against the file's directory. */
        if (v->ent != NULL)
            fprintf(fp, "%s = %s\n", v->opt->name, buf_str(&v->ent->value));
        else
            fprintf(fp, "%s =%s%s\n", v->opt->name, v->text ? " " : "",
                    v->text ? v->text : "");
    }
}

/* ------------------------------------------------------------ secrets */

const char *
cfg_secret_problem(mode_t m, mode_t forbidden)
{
    int gr, gw, otr, otw;

    m &= forbidden;
    gr = (m & S_IRGRP) != 0;
    gw = (m & S_IWGRP) != 0;
    otr = (m & S_IROTH) != 0;
    otw = (m & S_IWOTH) != 0;
    if ((gr || otr) && (gw || otw))
        return "lets other users read and write it";
    if (gr && otr)
        return "lets its group and all other users read it";
    if (gr)
        return "lets its group read it";
    if (otr)
        return "lets all other users read it";
    if (gw || otw)
        return "lets other users write it";
    return NULL;
}

int
cfg_secret_check(const char *path, const struct stat *st, mode_t forbidden,
                 const char *what, struct err *e)
{
    const char *problem = cfg_secret_problem(st->st_mode, forbidden);

    if (problem == NULL)
        return 0;
    return err_set(e, ERR_CONFIG,
                   "%s: mode %04o %s; %s must stay private: run chmod %03o %s",
                   path, (unsigned)(st->st_mode & 07777), problem, what,
                   (unsigned)(st->st_mode & 0777 & ~forbidden), path);
}

/* ------------------------------------------------------------ directories */

#define CFG_LINKS_MAX 40 /* symbolic links followed in one path, as Linux */

int
cfg_open_dir(const char *path, struct err *e)
{
    char rest[2 * PATH_MAX + 2], comp[NAME_MAX + 1], target[PATH_MAX + 1];
    const char *p;
    struct stat st;
    size_t n, used;
    ssize_t len;
    int dfd, fd, links = 0;

    if (snprintf(rest, sizeof(rest), "%s", path) >= (int)sizeof(rest) ||
        strlen(path) > PATH_MAX)
        return err_set(e, ERR_CONFIG, "%s: name too long", path);
    if ((dfd = open(rest[0] == '/' ? "/" : ".",
                    O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return err_sys(e, ERR_IO, "%s", path);
    p = rest;
    for (;;) {
        p += strspn(p, "/");
        if (*p == '\0')
            return dfd;
        if ((n = strcspn(p, "/")) > NAME_MAX) {
            close(dfd);
            return err_set(e, ERR_CONFIG, "%s: name too long", path);
        }
        memcpy(comp, p, n);
        comp[n] = '\0';
        p += n;
        /* O_PATH | O_NOFOLLOW names the entry itself, link or not, so
         * what is checked below is what is opened or read. */
        if ((fd = openat(dfd, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC)) < 0 ||
            fstat(fd, &st) < 0) {
            err_sys(e, ERR_IO, "%s: %s", path, comp);
            goto fail;
        }
        if (S_ISDIR(st.st_mode)) {
            close(dfd);
            dfd = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            close(fd);
            if (dfd < 0)
                return err_sys(e, ERR_IO, "%s: %s", path, comp);
            continue;
        }
        if (!S_ISLNK(st.st_mode)) {
            err_set(e, ERR_CONFIG, "%s: %s is not a directory", path, comp);
            goto fail;
        }
        /* Only root's links are followed: a user who may write a
         * directory on the way can not send root elsewhere. */
        if (st.st_uid != 0) {
            err_set(e, ERR_CONFIG,
                    "%s: %s is a symbolic link owned by uid %u, not root: "
                    "refused (name the real directory)",
                    path, comp, (unsigned)st.st_uid);
            goto fail;
        }
        if (++links > CFG_LINKS_MAX ||
            (len = readlinkat(fd, "", target, sizeof(target) - 1)) < 0 ||
            (size_t)len >= sizeof(target) - 1) {
            err_set(e, ERR_CONFIG, "%s: %s: too many or too long links", path,
                    comp);
            goto fail;
        }
        close(fd);
        fd = -1;
        target[len] = '\0';
        /* rest becomes the link's text, then what followed the link. */
        used = strlen(p);
        if ((size_t)len + 1 + used + 1 > sizeof(rest)) {
            err_set(e, ERR_CONFIG, "%s: name too long", path);
            goto fail;
        }
        memmove(rest + len + 1, p, used + 1);
        memcpy(rest, target, (size_t)len);
        rest[len] = '/';
        p = rest;
        if (target[0] == '/') {
            close(dfd);
            if ((dfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
                return err_sys(e, ERR_IO, "%s", path);
        }
    }
fail:
    if (fd >= 0)
        close(fd);
    close(dfd);
    return -1;
}
