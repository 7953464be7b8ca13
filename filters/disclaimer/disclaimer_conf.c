/*
 * disclaimer_conf - the disclaimer stage's templates, template map and
 *     the readers they share with run()
 *
 * Read and checked once, at init (valid UTF-8, lines of at most 998
 * octets, known %{variables}, HTML that does not end inside a tag); the
 * fixed text of each template is kept normalized as a part's text is for
 * the once_per_thread check. Also the HTML scanner (tags, quoted
 * attribute values, comments, raw-text elements) and the small helpers
 * every part of the stage uses. See disclaimer.c.
 */
#include "config.h"

#include <errno.h>
#include <iconv.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <gmime/gmime.h>

#include "filters/disclaimer/disclaimer_int.h"
#include "filters/filters.h"
#include "util/log.h"
#include "msg/match.h"
#include "msg/mime.h"
#include "msg/splice.h"

static const char *const flt_disclaimer_var_names[] = {
    "sender", "sender_domain", "date"};

/* ---------------------------------------------------------- helpers */

int
flt_disclaimer_is_wsp(int c)
{
    return c == ' ' || c == '\t';
}

int
flt_disclaimer_is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' ||
           c == '\v';
}

int
flt_disclaimer_has_8bit(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return 1;
    return 0;
}

/* flt_disclaimer_longest - octets of the longest line, line end aside. */
size_t
flt_disclaimer_longest(const char *s, size_t n)
{
    size_t i, start = 0, len, longest = 0;

    for (i = 0; i <= n; i++) {
        if (i < n && s[i] != '\n')
            continue;
        len = i - start;
        if (len > 0 && i < n && s[i - 1] == '\r')
            len--;
        if (len > longest)
            longest = len;
        start = i + 1;
    }
    return longest;
}

/* flt_disclaimer_eol_of - the line end of the first line of s, or def. */
const char *
flt_disclaimer_eol_of(const char *s, size_t n, const char *def)
{
    const char *nl = memchr(s, '\n', n);

    if (nl == NULL)
        return def;
    return nl > s && nl[-1] == '\r' ? "\r\n" : "\n";
}

/* flt_disclaimer_put_lines - append s with each LF made eol. */
int
flt_disclaimer_put_lines(struct buf *out, const char *s, size_t n,
                         const char *eol, struct err *e)
{
    const char *nl;

    if (strcmp(eol, "\n") == 0)
        return buf_append(out, s, n, e);
    while (n > 0 && (nl = memchr(s, '\n', n)) != NULL) {
        size_t k = (size_t)(nl - s);

        if (k > 0 && s[k - 1] == '\r')
            k--;
        if (buf_append(out, s, k, e) < 0 || buf_puts(out, eol, e) < 0)
            return -1;
        n -= (size_t)(nl + 1 - s);
        s = nl + 1;
    }
    return buf_append(out, s, n, e);
}

/* flt_disclaimer_line_has - a line of s begins with what. */
int
flt_disclaimer_line_has(const char *s, size_t n, const char *what)
{
    size_t wl = strlen(what);
    const char *p = s, *end = s + n;

    while (p < end && (p = memmem(p, (size_t)(end - p), what, wl)) != NULL) {
        if (p == s || p[-1] == '\n')
            return 1;
        p++;
    }
    return 0;
}

/* flt_disclaimer_read - the whole file into out (bounded by its limit). */
static int
flt_disclaimer_read(const char *path, struct buf *out, struct err *e)
{
    char chunk[8192];
    size_t n;
    FILE *fp;

    if ((fp = fopen(path, "rb")) == NULL)
        return err_sys(e, ERR_CONFIG, "%s", path);
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
        if (buf_append(out, chunk, n, e) < 0) {
            fclose(fp);
            return err_set(e, ERR_CONFIG, "%s: larger than %zu octets", path,
                           out->limit);
        }
    if (ferror(fp)) {
        fclose(fp);
        return err_sys(e, ERR_CONFIG, "%s", path);
    }
    fclose(fp);
    return 0;
}

/*
 * flt_disclaimer_iconv - convert n octets from charset from to charset to,
 * appending to out. strict: returns 1 (out as it was) when the input is
 * not valid in from or a character cannot be written in to; otherwise
 * each octet that does not convert becomes '?'. Returns 0, 1 (cannot),
 * or -1 with e set (limit, memory). An unknown charset is 1.
 */
int
flt_disclaimer_iconv(const char *to, const char *from, const char *in,
                     size_t n, int strict, struct buf *out, struct err *e)
{
    size_t mark = out->len, il = n, room, ol, r;
    char *ip = (char *)in, *op;
    int rc = 0, flushed = 0;
    iconv_t cd;

    if ((cd = g_mime_iconv_open(to, from)) == (iconv_t)-1)
        return 1;
    while (!flushed) {
        room = il * 4 + 32;
        if (out->limit - out->len < room + 1)
            room = out->limit - out->len > 1 ? out->limit - out->len - 1 : 0;
        if (room == 0 || buf_reserve(out, room, e) < 0) {
            if (room == 0)
                err_set(e, ERR_LIMIT, "buffer limit of %zu octets exceeded",
                        out->limit);
            rc = -1;
            break;
        }
        op = out->data + out->len;
        ol = room;
        if (il > 0) {
            r = iconv(cd, &ip, &il, &op, &ol);
        } else {
            r = iconv(cd, NULL, NULL, &op, &ol);
            flushed = r != (size_t)-1;
        }
        if (r == (size_t)-1 && errno == E2BIG && op == out->data + out->len &&
            room < il * 4 + 32) {
            rc = err_set(e, ERR_LIMIT, "buffer limit of %zu octets exceeded",
                         out->limit);
            break;
        }
        out->len = (size_t)(op - out->data);
        out->data[out->len] = '\0';
        if (r != (size_t)-1 || errno == E2BIG)
            continue;
        if (errno != EILSEQ && errno != EINVAL) {
            rc = err_sys(e, ERR_LIB, "iconv %s to %s", from, to);
            break;
        }
        if (strict) {
            rc = 1;
            break;
        }
        ip++;
        il--;
        iconv(cd, NULL, NULL, NULL, NULL);
        if (buf_putc(out, '?', e) < 0) {
            rc = -1;
            break;
        }
    }
    g_mime_iconv_close(cd);
    if (rc != 0) {
        out->len = mark;
        if (out->data != NULL)
            out->data[mark] = '\0';
    }
    return rc;
}

/* ------------------------------------------------------------- HTML */

static const char *const flt_disclaimer_raw_elements[] = {
    "script", "style",   "textarea", "title",    "xmp",
    "iframe", "noembed", "noframes", "noscript", "plaintext",
};

static int
flt_disclaimer_is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* flt_disclaimer_entity - decode the character reference at s (after
 * '&') into out; returns the octets used, 0 when it is none. */
static size_t
flt_disclaimer_entity(const char *s, size_t n, struct buf *out, struct err *e,
                      int *failed)
{
    static const struct {
        const char *name;
        const char *text;
    } named[] = {{"amp;", "&"},   {"lt;", "<"},   {"gt;", ">"},
                 {"quot;", "\""}, {"apos;", "'"}, {"nbsp;", " "}};
    char utf8[8];
    gunichar c = 0;
    size_t i, k;
    int hex, digits = 0;

    for (k = 0; k < sizeof(named) / sizeof(named[0]); k++) {
        size_t l = strlen(named[k].name);

        if (n >= l && g_ascii_strncasecmp(s, named[k].name, l) == 0) {
            *failed |= buf_puts(out, named[k].text, e) < 0;
            return l;
        }
    }
    if (n < 3 || s[0] != '#')
        return 0;
    hex = s[1] == 'x' || s[1] == 'X';
    for (i = hex ? 2 : 1; i < n && digits < 8; i++, digits++) {
        int d = g_ascii_xdigit_value(s[i]);

        if (!hex && !g_ascii_isdigit(s[i]))
            break;
        if (d < 0)
            break;
        c = c * (hex ? 16 : 10) + (gunichar)d;
    }
    if (digits == 0 || i >= n || s[i] != ';' || !g_unichar_validate(c))
        return 0;
    k = (size_t)g_unichar_to_utf8(c, utf8);
    *failed |= buf_append(out, utf8, k, e) < 0;
    return i + 1;
}

/*
 * flt_disclaimer_html_scan - walk an HTML document as a browser would
 * tokenize it: start and end tags (attribute values in quotes may hold
 * '>'), comments, <! and <? constructs, and raw-text elements (script,
 * style, ...) whose content holds no tags. Fills h; when text is not
 * NULL, appends the document's text with tags as spaces and character
 * references decoded. Only ASCII octets are examined, so any
 * ASCII-compatible charset that never uses octets below 0x40 inside a
 * multi-octet character scans right. Returns 0, or -1 on a text limit.
 */
int
flt_disclaimer_html_scan(const char *d, size_t n,
                         struct flt_disclaimer_html *h, struct buf *text,
                         struct err *e)
{
    size_t i = 0, j, k, name_start, name_len, run = 0;
    const char *raw = NULL; /* the raw-text element we are in */
    int failed = 0;

    h->body_open_end = SIZE_MAX;
    h->body_close = SIZE_MAX;
    h->ends_in_text = 0;
    while (i < n && !failed) {
        if (raw != NULL) {
            size_t rl = strlen(raw);

            for (j = i; j + 2 + rl <= n; j++)
                if (d[j] == '<' && d[j + 1] == '/' &&
                    g_ascii_strncasecmp(d + j + 2, raw, rl) == 0 &&
                    (j + 2 + rl == n ||
                     flt_disclaimer_is_space(d[j + 2 + rl]) ||
                     d[j + 2 + rl] == '/' || d[j + 2 + rl] == '>'))
                    break;
            if (j + 2 + rl > n)
                return 0; /* the end is inside raw text */
            raw = NULL;
            i = j;
            run = i;
            continue;
        }
        if (d[i] == '&' && text != NULL) {
            if (i > run)
                failed |= buf_append(text, d + run, i - run, e) < 0;
            k = flt_disclaimer_entity(d + i + 1, n - i - 1, text, e, &failed);
            if (k == 0)
                failed |= buf_putc(text, '&', e) < 0;
            i += k + 1;
            run = i;
            continue;
        }
        if (d[i] != '<' || i + 1 >= n) {
            i++;
            continue;
        }
        if (text != NULL && i > run)
            failed |= buf_append(text, d + run, i - run, e) < 0;
        if (n - i >= 4 && memcmp(d + i, "<!--", 4) == 0) {
            /* "<!-->" and "<!--->" close at once, as in HTML5. */
            if (n - i >= 5 && d[i + 4] == '>')
                j = i + 5;
            else if (n - i >= 6 && memcmp(d + i + 4, "->", 2) == 0)
                j = i + 6;
            else {
                const char *end = memmem(d + i + 4, n - i - 4, "-->", 3);

                if (end == NULL)
                    return 0; /* inside a comment */
                j = (size_t)(end - d) + 3;
            }
        } else if (d[i + 1] == '!' || d[i + 1] == '?' ||
                   (d[i + 1] == '/' && i + 2 < n &&
                    !flt_disclaimer_is_alpha(d[i + 2]))) {
            const char *end = memchr(d + i + 1, '>', n - i - 1);

            if (end == NULL)
                return 0; /* inside a bogus comment */
            j = (size_t)(end - d) + 1;
        } else if (flt_disclaimer_is_alpha(d[i + 1]) ||
                   (d[i + 1] == '/' && i + 2 < n)) {
            int close = d[i + 1] == '/';
            char quote = 0;

            name_start = i + 1 + (size_t)close;
            for (j = name_start; j < n && !flt_disclaimer_is_space(d[j]) &&
                                 d[j] != '/' && d[j] != '>';
                 j++)
                ;
            name_len = j - name_start;
            /* Attributes: a value in quotes starts only after '='. */
            for (; j < n; j++) {
                if (quote != 0) {
                    if (d[j] == quote)
                        quote = 0;
                    continue;
                }
                if (d[j] == '>')
                    break;
                if (d[j] == '=') {
                    for (k = j + 1; k < n && flt_disclaimer_is_space(d[k]);
                         k++)
                        ;
                    if (k < n && (d[k] == '"' || d[k] == '\'')) {
                        quote = d[k];
                        j = k;
                    }
                }
            }
            if (j >= n)
                return 0; /* inside a tag */
            j++;
            if (name_len == 4 &&
                g_ascii_strncasecmp(d + name_start, "body", 4) == 0) {
                if (close)
                    h->body_close = i;
                else if (h->body_open_end == SIZE_MAX)
                    h->body_open_end = j;
            }
            if (!close && d[j - 2] != '/')
                for (k = 0; k < sizeof(flt_disclaimer_raw_elements) /
                                    sizeof(flt_disclaimer_raw_elements[0]);
                     k++)
                    if (strlen(flt_disclaimer_raw_elements[k]) == name_len &&
                        g_ascii_strncasecmp(d + name_start,
                                            flt_disclaimer_raw_elements[k],
                                            name_len) == 0)
                        raw = flt_disclaimer_raw_elements[k];
            if (raw != NULL && strcmp(raw, "plaintext") == 0)
                return 0; /* everything after it is text, no end tag */
        } else {
            i++; /* a '<' that starts nothing is text */
            continue;
        }
        if (text != NULL)
            failed |= buf_putc(text, ' ', e) < 0;
        i = j;
        run = i;
    }
    if (failed)
        return -1;
    if (text != NULL && raw == NULL && n > run &&
        buf_append(text, d + run, n - run, e) < 0)
        return -1;
    h->ends_in_text = raw == NULL;
    return 0;
}

/* ----------------------------------------------------- normalization */

/* The state of flt_disclaimer_norm_put: the last octet written. */
struct flt_disclaimer_norm {
    struct buf *out;
    int space; /* white space is pending */
};

/* flt_disclaimer_norm_put - append s with every run of white space (and
 * the UTF-8 no-break space) as one space, none at the start. */
static int
flt_disclaimer_norm_put(struct flt_disclaimer_norm *nm, const char *s,
                        size_t n, struct err *e)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (flt_disclaimer_is_space(s[i]) ||
            (i + 1 < n && (unsigned char)s[i] == 0xc2 &&
             (unsigned char)s[i + 1] == 0xa0)) {
            if ((unsigned char)s[i] == 0xc2)
                i++;
            nm->space = 1;
            continue;
        }
        if (nm->space && nm->out->len > 0 && buf_putc(nm->out, ' ', e) < 0)
            return -1;
        nm->space = 0;
        if (buf_putc(nm->out, s[i], e) < 0)
            return -1;
    }
    return 0;
}

/*
 * flt_disclaimer_norm_text - the text of a text/plain part as the once
 * check compares it: quote markers ('>' at a line start, with the spaces
 * between them) taken out, format=flowed soft breaks joined (without
 * their space under DelSp=yes), white space collapsed.
 */
int
flt_disclaimer_norm_text(const char *s, size_t n, int flowed, int delsp,
                         struct buf *out, struct err *e)
{
    struct flt_disclaimer_norm nm = {out, 0};
    size_t i = 0, end, len;
    const char *line;
    int soft;

    while (i < n) {
        const char *nl = memchr(s + i, '\n', n - i);

        end = nl != NULL ? (size_t)(nl - s) : n;
        line = s + i;
        len = end - i;
        if (len > 0 && line[len - 1] == '\r')
            len--;
        while (len > 0 && line[0] == '>') {
            line++;
            len--;
            while (len > 0 && flt_disclaimer_is_wsp(line[0]) &&
                   (!flowed || (len > 1 && line[1] == '>'))) {
                line++;
                len--;
            }
        }
        if (flowed && len > 0 && line[0] == ' ') {
            line++;
            len--;
        }
        soft = flowed && len > 0 && line[len - 1] == ' ' &&
               !(len == 3 && memcmp(line, "-- ", 3) == 0);
        if (soft && delsp)
            len--;
        if (flt_disclaimer_norm_put(&nm, line, len, e) < 0)
            return -1;
        if (!soft)
            nm.space = 1;
        i = end + 1;
    }
    return 0;
}

/* flt_disclaimer_norm_html - the text of an HTML document, normalized. */
int
flt_disclaimer_norm_html(const char *s, size_t n, struct buf *out,
                         struct err *e)
{
    struct flt_disclaimer_norm nm = {out, 0};
    struct flt_disclaimer_html h;
    struct buf text;
    int rc;

    buf_init(&text, out->limit);
    rc = flt_disclaimer_html_scan(s, n, &h, &text, e);
    if (rc == 0)
        rc = flt_disclaimer_norm_put(&nm, text.data ? text.data : "", text.len,
                                     e);
    buf_fini(&text);
    return rc;
}

/* flt_disclaimer_has_needles - every piece of needles occurs in hay, in
 * order; 0 when there is no piece to look for. */
int
flt_disclaimer_has_needles(const struct buf *needles, const char *hay,
                           size_t n)
{
    size_t off, len, pos = 0;
    const char *p;

    if (needles->len == 0)
        return 0;
    for (off = 0; off < needles->len; off += len + 1) {
        len = strlen(needles->data + off);
        p = memmem(hay + pos, n - pos, needles->data + off, len);
        if (p == NULL)
            return 0;
        pos = (size_t)(p - hay) + len;
    }
    return 1;
}

/* ---------------------------------------------------------- templates */

/* flt_disclaimer_var_at - the variable "%{name}" at s, its length in
 * *len; FLT_DISCLAIMER_VAR_NONE when s is not "%{". -1 when it is "%{"
 * without a known name and '}'. */
int
flt_disclaimer_var_at(const char *s, size_t *len)
{
    size_t k, l;

    if (s[0] != '%' || s[1] != '{')
        return FLT_DISCLAIMER_VAR_NONE;
    for (k = 0; k < FLT_DISCLAIMER_VAR_NONE; k++) {
        l = strlen(flt_disclaimer_var_names[k]);
        if (strncmp(s + 2, flt_disclaimer_var_names[k], l) == 0 &&
            s[2 + l] == '}') {
            *len = l + 3;
            return (int)k;
        }
    }
    return -1;
}

/*
 * flt_disclaimer_tpl_check - a template read from path: no NUL, valid
 * UTF-8, known variables only, no line over 998 octets; CRLF made LF, a
 * BOM dropped and one final LF ensured. Returns 0 or -1 with e set.
 */
static int
flt_disclaimer_tpl_check(const char *path, struct buf *b, struct err *e)
{
    size_t i, o = 0, line = 1, col = 0, vlen;
    char *d = b->data;
    const char *end;

    if (b->len == 0)
        return err_set(e, ERR_CONFIG, "%s: empty template", path);
    if (memchr(d, '\0', b->len) != NULL)
        return err_set(e, ERR_CONFIG, "%s: NUL octet in template", path);
    if (!g_utf8_validate(d, (gssize)b->len, &end)) {
        for (i = 0; d + i < end; i++)
            line += d[i] == '\n';
        return err_set(e, ERR_CONFIG, "%s:%zu: not valid UTF-8", path, line);
    }
    i = b->len >= 3 && memcmp(d, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
    for (; i < b->len; i++) {
        if (d[i] == '\r' && i + 1 < b->len && d[i + 1] == '\n')
            continue;
        if (d[i] == '\r' ||
            (d[i] != '\n' && (unsigned char)d[i] < 0x20 && d[i] != '\t'))
            return err_set(e, ERR_CONFIG,
                           "%s:%zu: control character 0x%02x in template",
                           path, line, (unsigned char)d[i]);
        if (d[i] == '%' && flt_disclaimer_var_at(d + i, &vlen) < 0)
            return err_set(e, ERR_CONFIG,
                           "%s:%zu: unknown variable \"%.24s\" (known: "
                           "%%{sender}, %%{sender_domain}, %%{date})",
                           path, line, d + i);
        if (d[i] == '\n') {
            line++;
            col = 0;
        } else if (++col > FLT_DISCLAIMER_LINE_MAX) {
            return err_set(e, ERR_CONFIG, "%s:%zu: line longer than %d octets",
                           path, line, FLT_DISCLAIMER_LINE_MAX);
        }
        d[o++] = d[i];
    }
    b->len = o;
    if (o == 0 || d[o - 1] != '\n') {
        if (buf_putc(b, '\n', e) < 0)
            return -1;
    } else {
        d[o] = '\0';
    }
    return 0;
}

/* flt_disclaimer_needles - the fixed text of template t (HTML when html)
 * into out: split at its variables, each piece normalized. */
static int
flt_disclaimer_needles(const char *t, int html, struct buf *out, struct err *e)
{
    struct buf marked, text, piece;
    size_t i, vlen, start;
    int rc = -1;

    buf_init(&marked, 0);
    buf_init(&text, 0);
    buf_init(&piece, 0);
    for (i = 0; t[i] != '\0'; i++) {
        if (t[i] == '%' && flt_disclaimer_var_at(t + i, &vlen) >= 0) {
            if (buf_putc(&marked, '\x01', e) < 0)
                goto done;
            i += vlen - 1;
        } else if (buf_putc(&marked, t[i], e) < 0) {
            goto done;
        }
    }
    if (html) {
        struct flt_disclaimer_html h;

        if (flt_disclaimer_html_scan(marked.data ? marked.data : "",
                                     marked.len, &h, &text, e) < 0)
            goto done;
    } else if (buf_append(&text, marked.data ? marked.data : "", marked.len,
                          e) < 0) {
        goto done;
    }
    for (start = 0, i = 0; i <= text.len; i++) {
        if (i < text.len && text.data[i] != '\x01')
            continue;
        buf_reset(&piece);
        if (i > start) {
            struct flt_disclaimer_norm nm = {&piece, 0};

            if (flt_disclaimer_norm_put(&nm, text.data + start, i - start, e) <
                0)
                goto done;
        }
        if (piece.len > 0 && (buf_append(out, piece.data, piece.len, e) < 0 ||
                              buf_putc(out, '\0', e) < 0))
            goto done;
        start = i + 1;
    }
    rc = 0;
done:
    buf_fini(&marked);
    buf_fini(&text);
    buf_fini(&piece);
    return rc;
}

void
flt_disclaimer_tpl_free(struct flt_disclaimer_tpl *t)
{
    if (t == NULL)
        return;
    free(t->name);
    free(t->text);
    free(t->html);
    free(t->text_path);
    free(t->html_path);
    buf_fini(&t->needles_text);
    buf_fini(&t->needles_html);
    free(t);
}

static int
flt_disclaimer_tpl_read(const char *path, char **out, struct err *e)
{
    struct buf b;

    buf_init(&b, FLT_DISCLAIMER_FILE_MAX);
    if (flt_disclaimer_read(path, &b, e) < 0 ||
        flt_disclaimer_tpl_check(path, &b, e) < 0) {
        buf_fini(&b);
        return -1;
    }
    if ((*out = buf_steal(&b, NULL)) == NULL)
        return err_nomem(e);
    return 0;
}

/* flt_disclaimer_tpl_get - the template pair of these files, loaded once
 * per stage. */
struct flt_disclaimer_tpl *
flt_disclaimer_tpl_get(struct flt_disclaimer *fd, const char *text_path,
                       const char *html_path, struct err *e)
{
    struct flt_disclaimer_tpl *t, **grown;
    const char *base, *dot;
    size_t i;

    for (i = 0; i < fd->ntpls; i++) {
        t = fd->tpls[i];
        if (strcmp(t->text_path, text_path) == 0 &&
            (t->html_path == NULL) == (html_path == NULL) &&
            (html_path == NULL || strcmp(t->html_path, html_path) == 0))
            return t;
    }
    if ((t = calloc(1, sizeof(*t))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    buf_init(&t->needles_text, 0);
    buf_init(&t->needles_html, 0);
    base = strrchr(text_path, '/');
    base = base != NULL ? base + 1 : text_path;
    dot = strrchr(base, '.');
    if ((t->text_path = strdup(text_path)) == NULL ||
        (html_path != NULL && (t->html_path = strdup(html_path)) == NULL) ||
        (t->name = strndup(base, dot != NULL && dot > base
                                     ? (size_t)(dot - base)
                                     : strlen(base))) == NULL) {
        flt_disclaimer_tpl_free(t);
        err_nomem(e);
        return NULL;
    }
    if (flt_disclaimer_tpl_read(text_path, &t->text, e) < 0 ||
        (html_path != NULL &&
         flt_disclaimer_tpl_read(html_path, &t->html, e) < 0) ||
        flt_disclaimer_needles(t->text, 0, &t->needles_text, e) < 0 ||
        (t->html != NULL &&
         flt_disclaimer_needles(t->html, 1, &t->needles_html, e) < 0)) {
        flt_disclaimer_tpl_free(t);
        return NULL;
    }
    if ((grown = realloc(fd->tpls, (fd->ntpls + 1) * sizeof(*grown))) ==
        NULL) {
        flt_disclaimer_tpl_free(t);
        err_nomem(e);
        return NULL;
    }
    fd->tpls = grown;
    fd->tpls[fd->ntpls++] = t;
    return t;
}

/* flt_disclaimer_resolve - name relative to the directory of file. */
static int
flt_disclaimer_resolve(const char *file, const char *name, struct buf *out,
                       struct err *e)
{
    const char *slash = strrchr(file, '/');

    buf_reset(out);
    if (name[0] != '/' && slash != NULL &&
        buf_append(out, file, (size_t)(slash - file) + 1, e) < 0)
        return -1;
    return buf_puts(out, name, e);
}

/*
 * flt_disclaimer_map_line - one "pattern text-file [html-file]" line.
 * The pattern is checked and kept by match_new(), from a match_sender
 * key, so it means exactly what match_sender means.
 */
static int
flt_disclaimer_map_line(struct flt_disclaimer *fd, const char *path,
                        unsigned line, char *s, struct err *e)
{
    static const struct cfg_option *const tables[] = {match_options, NULL};
    char *fields[4], conf[512];
    struct flt_disclaimer_rule *grown;
    struct buf tp, hp;
    struct cfg *c;
    struct match *mt;
    size_t n = 0;
    const char *why;

    while (*s != '\0' && n < 4) {
        while (flt_disclaimer_is_wsp(*s))
            s++;
        if (*s == '\0')
            break;
        fields[n++] = s;
        while (*s != '\0' && !flt_disclaimer_is_wsp(*s))
            s++;
        if (*s != '\0')
            *s++ = '\0';
    }
    if (n < 2 || n > 3)
        return err_set(e, ERR_CONFIG,
                       "%s:%u: want \"pattern text-file [html-file]\"", path,
                       line);
    if ((size_t)snprintf(conf, sizeof(conf), "match_sender = %s\n",
                         fields[0]) >= sizeof(conf))
        return err_set(e, ERR_CONFIG, "%s:%u: pattern too long", path, line);
    if ((c = cfg_parse_text(path, conf, strlen(conf), e)) == NULL)
        return -1;
    mt = NULL;
    if (cfg_validate(c, tables, e) == 0)
        mt = match_new(c, e);
    cfg_free(c);
    if (mt == NULL) {
        why = strstr(e->text, "match_sender: ");
        return err_set(e, ERR_CONFIG, "%s:%u: %s", path, line,
                       why != NULL ? why + strlen("match_sender: ") : e->text);
    }
    if ((grown = realloc(fd->rules, (fd->nrules + 1) * sizeof(*grown))) ==
        NULL) {
        match_free(mt);
        return err_nomem(e);
    }
    fd->rules = grown;
    grown[fd->nrules].match = mt;
    grown[fd->nrules].tpl = NULL;
    fd->nrules++;
    buf_init(&tp, 4096);
    buf_init(&hp, 4096);
    if (flt_disclaimer_resolve(path, fields[1], &tp, e) < 0 ||
        (n == 3 && flt_disclaimer_resolve(path, fields[2], &hp, e) < 0) ||
        (grown[fd->nrules - 1].tpl = flt_disclaimer_tpl_get(
             fd, buf_str(&tp), n == 3 ? buf_str(&hp) : NULL, e)) == NULL) {
        buf_fini(&tp);
        buf_fini(&hp);
        err_prefix(e, "%s:%u", path, line);
        return -1;
    }
    buf_fini(&tp);
    buf_fini(&hp);
    return 0;
}

int
flt_disclaimer_map_load(struct flt_disclaimer *fd, const char *path,
                        struct err *e)
{
    struct buf b;
    char *p, *nl, *hash;
    unsigned line = 0;

    buf_init(&b, FLT_DISCLAIMER_MAP_MAX);
    if (flt_disclaimer_read(path, &b, e) < 0) {
        buf_fini(&b);
        return -1;
    }
    for (p = b.data; p != NULL && *p != '\0'; p = nl) {
        if ((nl = strchr(p, '\n')) != NULL)
            *nl++ = '\0';
        line++;
        if ((hash = strchr(p, '#')) != NULL)
            *hash = '\0';
        p[strcspn(p, "\r")] = '\0';
        if (p[strspn(p, " \t")] == '\0')
            continue;
        if (fd->nrules >= FLT_DISCLAIMER_RULES_MAX ||
            flt_disclaimer_map_line(fd, path, line, p, e) < 0) {
            if (fd->nrules >= FLT_DISCLAIMER_RULES_MAX)
                err_set(e, ERR_CONFIG, "%s:%u: more than %d rules", path, line,
                        FLT_DISCLAIMER_RULES_MAX);
            buf_fini(&b);
            return -1;
        }
    }
    buf_fini(&b);
    if (fd->nrules == 0)
        return err_set(e, ERR_CONFIG, "%s: no rules", path);
    return 0;
}

/* flt_disclaimer_code - run GMime's encoder or decoder over in into out,
 * with each LF of the result made eol (encoding only). */
int
flt_disclaimer_code(GMimeContentEncoding enc, int encode, const char *in,
                    size_t n, const char *eol, struct buf *out, struct err *e)
{
    GMimeEncoding state;
    struct buf tmp;
    size_t max;
    int rc;

    if (encode)
        g_mime_encoding_init_encode(&state, enc);
    else
        g_mime_encoding_init_decode(&state, enc);
    max = g_mime_encoding_outlen(&state, n) + 8;
    buf_init(&tmp, out->limit);
    if (buf_reserve(&tmp, max, e) < 0) {
        buf_fini(&tmp);
        return -1;
    }
    tmp.len = g_mime_encoding_flush(&state, in, n, tmp.data);
    tmp.data[tmp.len] = '\0';
    if (!encode || strcmp(eol, "\n") == 0) {
        rc = buf_append(out, tmp.data, tmp.len, e);
    } else {
        rc = flt_disclaimer_put_lines(out, tmp.data, tmp.len, eol, e);
    }
    buf_fini(&tmp);
    return rc;
}

/* flt_disclaimer_ncr - UTF-8 s with every non-ASCII character written as
 * an HTML numeric character reference. */
int
flt_disclaimer_ncr(const char *s, size_t n, struct buf *out, struct err *e)
{
    const char *p = s, *end = s + n;

    while (p < end) {
        if ((unsigned char)*p < 0x80) {
            if (buf_putc(out, *p++, e) < 0)
                return -1;
            continue;
        }
        if (buf_printf(out, e, "&#%u;", (unsigned)g_utf8_get_char(p)) < 0)
            return -1;
        p = g_utf8_next_char(p);
    }
    return 0;
}
