/*
 * disclaimer - compliance footers in the text and HTML body of outbound
 *     mail, without breaking an encoding, a charset or a signature
 *
 * Configuration (chain.d):
 *     text_file       = file   the default footer, UTF-8 text
 *     html_file       = file   its HTML form (optional: made from the text)
 *     template_map    = file   "pattern  text-file  [html-file]" lines:
 *                              the first whose pattern (match_sender
 *                              syntax) holds for the envelope sender picks
 *                              the pair; no match falls back to text_file
 *     position        = append | prepend
 *     no_text_body    = add_part | skip
 *     once_per_thread = yes | no
 *     dkim_signed     = skip | edit
 * Templates may hold %{sender}, %{sender_domain} and %{date} (YYYY-MM-DD);
 * values are stripped of control characters in text and HTML-escaped in
 * HTML. init() reads and checks every template (valid UTF-8, lines of at
 * most 998 octets, known variables), so run() never touches a file.
 *
 * run() reads the shared MIME parse and never re-serializes it: GMime's
 * parser keeps, for every leaf, its content as a window onto the one
 * stream it parsed (bound_start, bound_end) and the stream offset of each
 * header field. The stage picks the first text/plain and the first
 * text/html body part (walking multipart/mixed, alternative and
 * unknown multiparts, and the root of multipart/related; never a leaf
 * with Content-Disposition: attachment, never inside message/rfc822),
 * builds new bytes for just those parts and splices them into the
 * original body, so every other part stays byte for byte. An edited
 * part is decoded, the footer inserted (appended, prepended, or in HTML
 * before the last </body>, found by a scanner that knows tags, quoted
 * attribute values, comments and raw-text elements), and encoded again
 * with the same transfer encoding; 7bit text that gains 8-bit octets,
 * and 7bit or 8bit text with a line over 998 octets, becomes
 * quoted-printable. Where msg_parse() and GMime disagree on where the
 * message header ends, nothing is edited.
 *
 * Charsets: the footer is converted to the part's charset; when it
 * cannot be represented there, a text part is converted to UTF-8 as a
 * whole and its charset parameter changed, while an HTML part keeps its
 * charset (which its <meta> may repeat) and gets the characters it lacks
 * as numeric character references. Stateful charsets (ISO-2022-*, HZ,
 * UTF-7) are edited as UTF-8 and converted back; charsets that are not
 * ASCII-compatible are converted to UTF-8. A charset parameter is
 * changed in the raw field (other parameters, quoting and folding stay)
 * and the result must read the same in GMime but for the charset, or
 * the part is left alone. Format=flowed footers are
 * space-stuffed and carry no trailing spaces, and a flowed text that ends
 * in a soft break is closed first. Every line end written is the part's.
 *
 * Skipped with a reason in the log note, the message untouched: a
 * message that arrived with a DKIM signature (an earlier hop signed it,
 * and a footer would break its body hash; dkim_signed = edit adds it
 * anyway), multipart/signed, multipart/encrypted, application/(x-)pkcs7-mime,
 * multipart/report, text/calendar (unless only attached without a
 * method), an inline "-----BEGIN PGP" block in an edited part, a message
 * the shared parse flags as ambiguous, and text without any header
 * field (all body, as Postfix reads it). With once_per_thread, a part whose
 * text already holds the footer (the template's fixed text, compared
 * after quote markers, tags, entities, format=flowed soft breaks and
 * white space are taken out, so a quoted reply counts) is not edited.
 * A message with no text body gets a text/plain part: inserted in a
 * top-level multipart/mixed, or the message is wrapped in a new one
 * (with a boundary derived from the body's SHA-256) with its Content-*
 * fields moved into the inner part, which must then parse cleanly.
 *
 * Failures: a part that cannot be edited safely (unknown charset or
 * transfer encoding, text not valid in its charset, HTML that ends
 * inside a tag or comment, a Content-Type field msg refuses to write
 * back) is left alone and named in the note; an
 * offset that does not agree with the body is an internal error (-1, the
 * on_error policy applies); a result over the message size limit leaves
 * the message unchanged with a note. The stage owns its templates and
 * map, read-only after init(), so run() may be called from any thread.
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

#include "filters/filters.h"
#include "util/log.h"
#include "msg/match.h"
#include "msg/mime.h"
#include "msg/splice.h"

#define FLT_DISCLAIMER_FILE_MAX (64 * 1024)  /* octets of one template */
#define FLT_DISCLAIMER_MAP_MAX (1024 * 1024) /* octets of the map file */
#define FLT_DISCLAIMER_RULES_MAX 10000       /* lines of the map */
#define FLT_DISCLAIMER_LINE_MAX 998          /* octets of any line */
#define FLT_DISCLAIMER_VALUE_MAX 256         /* octets of one variable */
#define FLT_DISCLAIMER_DEPTH_MAX 64          /* walk guard */
#define FLT_DISCLAIMER_SPLICES 8
#define FLT_DISCLAIMER_CHARSET_MAX 64

/* ------------------------------------------------------------- types */

/* One template pair. needles_* hold the template's fixed text, split at
 * its variables and normalized as a part's text is for the once check;
 * the pieces are NUL-separated. */
struct flt_disclaimer_tpl {
    char *name; /* "legal-en" from legal-en.txt, for the log */
    char *text; /* UTF-8, LF line ends, one final LF */
    char *html; /* UTF-8, or NULL: made from text */
    char *text_path;
    char *html_path;
    struct buf needles_text;
    struct buf needles_html;
};

struct flt_disclaimer_rule {
    struct match *match;
    struct flt_disclaimer_tpl *tpl; /* borrowed from tpls */
};

struct flt_disclaimer {
    struct flt_disclaimer_tpl *def; /* borrowed from tpls, or NULL */
    struct flt_disclaimer_rule *rules;
    size_t nrules;
    struct flt_disclaimer_tpl **tpls; /* owned */
    size_t ntpls;
    int prepend;
    int add_part;
    int once;
    int dkim_edit; /* dkim_signed = edit */
};

static const char *const flt_disclaimer_positions[] = {"append", "prepend",
                                                       NULL};
static const char *const flt_disclaimer_no_text[] = {"add_part", "skip", NULL};
static const char *const flt_disclaimer_dkim[] = {"skip", "edit", NULL};

static const struct cfg_option flt_disclaimer_options[] = {
    {"text_file", CFG_PATH, NULL,
     "footer text (UTF-8) for mail no template_map line picks", NULL, 0, 0, 0},
    {"html_file", CFG_PATH, NULL,
     "HTML form of text_file (default: made from the text)", NULL, 0, 0, 0},
    {"template_map", CFG_PATH, NULL,
     "file of \"sender-pattern text-file [html-file]\" lines; the first "
     "match picks the templates",
     NULL, 0, 0, 0},
    {"position", CFG_ENUM, "append",
     "where the footer goes: append (end of the text, before </body>) or "
     "prepend",
     flt_disclaimer_positions, 0, 0, 0},
    {"no_text_body", CFG_ENUM, "add_part",
     "a message without a text body: add_part (a text/plain part) or skip",
     flt_disclaimer_no_text, 0, 0, 0},
    {"once_per_thread", CFG_BOOL, "yes",
     "do not add a footer to a part that already holds it (a reply that "
     "quotes it)",
     NULL, 0, 0, 0},
    {"dkim_signed", CFG_ENUM, "skip",
     "a message that arrives with a DKIM signature (an earlier hop signed "
     "it): skip (leave it untouched, so the signature still verifies) or "
     "edit (add the footer and break the signature)",
     flt_disclaimer_dkim, 0, 0, 0},
    CFG_OPTION_END,
};

enum flt_disclaimer_var {
    FLT_DISCLAIMER_VAR_SENDER,
    FLT_DISCLAIMER_VAR_DOMAIN,
    FLT_DISCLAIMER_VAR_DATE,
    FLT_DISCLAIMER_VAR_NONE
};

static const char *const flt_disclaimer_var_names[] = {
    "sender", "sender_domain", "date"};

/* ---------------------------------------------------------- helpers */

static int
flt_disclaimer_is_wsp(int c)
{
    return c == ' ' || c == '\t';
}

static int
flt_disclaimer_is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' ||
           c == '\v';
}

static int
flt_disclaimer_has_8bit(const char *s, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80)
            return 1;
    return 0;
}

/* flt_disclaimer_longest - octets of the longest line, line end aside. */
static size_t
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
static const char *
flt_disclaimer_eol_of(const char *s, size_t n, const char *def)
{
    const char *nl = memchr(s, '\n', n);

    if (nl == NULL)
        return def;
    return nl > s && nl[-1] == '\r' ? "\r\n" : "\n";
}

/* flt_disclaimer_put_lines - append s with each LF made eol. */
static int
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
static int
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
static int
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

/* What the scanner learns about an HTML document. */
struct flt_disclaimer_html {
    size_t body_open_end; /* after the first <body ...> tag; SIZE_MAX: none */
    size_t body_close;    /* at the '<' of the last </body>; SIZE_MAX: none */
    int ends_in_text;     /* the end is outside any tag, comment, raw text */
};

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
static int
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
static int
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
static int
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
static int
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
static int
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

static void
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
static struct flt_disclaimer_tpl *
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

static int
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

/* --------------------------------------------------------------- init */

static void
flt_disclaimer_free(struct stage *st)
{
    struct flt_disclaimer *fd = st->priv;
    size_t i;

    if (fd == NULL)
        return;
    for (i = 0; i < fd->nrules; i++)
        match_free(fd->rules[i].match);
    free(fd->rules);
    for (i = 0; i < fd->ntpls; i++)
        flt_disclaimer_tpl_free(fd->tpls[i]);
    free(fd->tpls);
    free(fd);
    st->priv = NULL;
}

static int
flt_disclaimer_init(struct stage *st, const struct cfg *c, struct err *e)
{
    const char *text = cfg_str(c, "text_file"),
               *html = cfg_str(c, "html_file");
    const char *map = cfg_str(c, "template_map");
    struct flt_disclaimer *fd;

    if (html != NULL && text == NULL)
        return cfg_err(e, c, "html_file", "needs text_file as well");
    if (text == NULL && map == NULL)
        return err_set(e, ERR_CONFIG,
                       "%s: stage disclaimer needs text_file or "
                       "template_map",
                       cfg_path(c));
    if ((fd = calloc(1, sizeof(*fd))) == NULL)
        return err_nomem(e);
    st->priv = fd;
    fd->prepend = cfg_enum(c, "position") == 1;
    fd->add_part = cfg_enum(c, "no_text_body") == 0;
    fd->once = cfg_bool(c, "once_per_thread");
    fd->dkim_edit = cfg_enum(c, "dkim_signed") == 1;
    if (text != NULL &&
        (fd->def = flt_disclaimer_tpl_get(fd, text, html, e)) == NULL) {
        const char *key =
            html != NULL && strncmp(e->text, html, strlen(html)) == 0
                ? "html_file"
                : "text_file";

        err_prefix(e, "%s:%u: %s", cfg_path(c), cfg_line(c, key), key);
        flt_disclaimer_free(st);
        return -1;
    }
    if (map != NULL && flt_disclaimer_map_load(fd, map, e) < 0) {
        err_prefix(e, "%s:%u: template_map", cfg_path(c),
                   cfg_line(c, "template_map"));
        flt_disclaimer_free(st);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- run */

enum flt_disclaimer_cs {
    FLT_DISCLAIMER_CS_UTF8,
    FLT_DISCLAIMER_CS_ASCII,
    FLT_DISCLAIMER_CS_COMPAT,   /* stateless, ASCII octets mean ASCII */
    FLT_DISCLAIMER_CS_STATEFUL, /* ISO-2022-*, HZ, UTF-7 */
    FLT_DISCLAIMER_CS_WIDE,     /* not ASCII-compatible: UTF-16, EBCDIC */
    FLT_DISCLAIMER_CS_NONE,     /* HTML without charset parameter */
    FLT_DISCLAIMER_CS_UNKNOWN
};

/* One body part the stage edits, and what it makes of it. */
struct flt_disclaimer_part {
    GMimeObject *obj; /* borrowed from the shared parse; NULL: none */
    const char *kind; /* "text/plain" or "text/html" */
    int html;
    int top;             /* the message's own part: message headers */
    size_t hstart, hend; /* its header fields in the body (!top) */
    size_t cstart, cend; /* its content in the body */
    GMimeContentEncoding cte;
    char charset[FLT_DISCLAIMER_CHARSET_MAX]; /* "" when none */
    int flowed, delsp;
    enum flt_disclaimer_cs cs;
    const char *raw_eol;  /* line end of the encoded lines */
    const char *text_eol; /* line end of the decoded text */
    struct buf dec;       /* decoded content (base64, QP) */
    const char *d;        /* decoded view: dec or the body */
    size_t dlen;
    struct buf out; /* the new encoded content */
    struct buf hdr; /* new header block; top: new Content-Type value */
    int to_utf8;    /* its charset becomes UTF-8 */
    int to_qp;      /* its encoding becomes quoted-printable */
    int edited;
    const char *skip; /* why it is left alone */
};

struct flt_disclaimer_ctx {
    const struct stage *st;
    const struct flt_disclaimer *fd;
    struct msg *m;
    const struct flt_disclaimer_tpl *tpl;
    GMimeMessage *message;
    const char *body;
    size_t blen;
    size_t base;         /* stream offset of the body; SIZE_MAX: unknown */
    GMimeStream *stream; /* the stream GMime parsed */
    const char *eol;     /* the message's line end */
    size_t limit;        /* octets of a buffer */
    char skip[80];       /* the whole message is skipped: why */
    int broken;          /* an offset did not agree: internal error */
    struct flt_disclaimer_part plain, html;
    struct buf text_footer; /* expanded, UTF-8, LF */
    struct buf html_footer;
};

/* ------------------------------------------------------- run: walk */

static int
flt_disclaimer_is(GMimeObject *obj, const char *type, const char *subtype)
{
    GMimeContentType *ct = g_mime_object_get_content_type(obj);

    return ct != NULL && g_mime_content_type_is_type(ct, type, subtype);
}

static void
flt_disclaimer_set_skip(struct flt_disclaimer_ctx *cx, const char *why)
{
    if (cx->skip[0] == '\0')
        snprintf(cx->skip, sizeof(cx->skip), "%s", why);
}

/*
 * flt_disclaimer_walk - find the parts to edit and anything that forbids
 * editing. body: obj is where a reader looks for the message text.
 */
static void
flt_disclaimer_walk(struct flt_disclaimer_ctx *cx, GMimeObject *obj, int body,
                    unsigned depth, int top)
{
    static const char *const forbidden[][2] = {
        {"multipart", "signed"},         {"multipart", "encrypted"},
        {"multipart", "report"},         {"application", "pkcs7-mime"},
        {"application", "x-pkcs7-mime"},
    };
    GMimeContentDisposition *cd;
    GMimeContentType *ct;
    struct flt_disclaimer_part *p;
    int attach, i, n;
    size_t k;
    char what[64];

    if (obj == NULL || cx->skip[0] != '\0')
        return;
    if (depth > FLT_DISCLAIMER_DEPTH_MAX) {
        flt_disclaimer_set_skip(cx, "nesting too deep");
        return;
    }
    for (k = 0; k < sizeof(forbidden) / sizeof(forbidden[0]); k++)
        if (flt_disclaimer_is(obj, forbidden[k][0], forbidden[k][1])) {
            snprintf(what, sizeof(what), "%s/%s", forbidden[k][0],
                     forbidden[k][1]);
            flt_disclaimer_set_skip(cx, what);
            return;
        }
    cd = g_mime_object_get_content_disposition(obj);
    attach = cd != NULL && g_mime_content_disposition_is_attachment(cd);
    ct = g_mime_object_get_content_type(obj);
    if (flt_disclaimer_is(obj, "text", "calendar") &&
        (!attach || g_mime_content_type_get_parameter(ct, "method") != NULL)) {
        flt_disclaimer_set_skip(cx, "text/calendar");
        return;
    }
    if (GMIME_IS_MULTIPART(obj)) {
        GMimeMultipart *mp = GMIME_MULTIPART(obj);
        int related = flt_disclaimer_is(obj, "multipart", "related");

        /* Content-Disposition is about body parts (RFC 2183); readers
         * ignore it on a multipart, and so does the walk. */
        n = g_mime_multipart_get_count(mp);
        for (i = 0; i < n; i++)
            flt_disclaimer_walk(cx, g_mime_multipart_get_part(mp, i),
                                body && (!related || i == 0), depth + 1, 0);
        return;
    }
    if (!GMIME_IS_PART(obj) || !body || attach)
        return;
    if (flt_disclaimer_is(obj, "text", "plain"))
        p = &cx->plain;
    else if (flt_disclaimer_is(obj, "text", "html"))
        p = &cx->html;
    else
        return;
    if (p->obj == NULL) {
        p->obj = obj;
        p->top = top;
    }
}

/* ---------------------------------------------------- run: locating */

/*
 * flt_disclaimer_window - the body offsets of a window onto the parsed
 * stream. The first window found fixes the stream and where the body
 * starts in it (the body is the stream's last blen octets, checked).
 * Returns 0; -2 when the window starts in the message header (GMime
 * found the header's end elsewhere than msg_parse did); -1 when GMime
 * gave no window or it does not fit the body.
 */
static int
flt_disclaimer_window(struct flt_disclaimer_ctx *cx, GMimeStream *s,
                      size_t *start, size_t *end)
{
    GByteArray *a;
    gint64 bend;

    if (s == NULL || s->super_stream == NULL ||
        !GMIME_IS_STREAM_MEM(s->super_stream))
        return -1;
    if (cx->stream == NULL) {
        a = g_mime_stream_mem_get_byte_array(
            GMIME_STREAM_MEM(s->super_stream));
        if (a == NULL || a->len < cx->blen ||
            memcmp(a->data + a->len - cx->blen, cx->body, cx->blen) != 0)
            return -1;
        cx->stream = s->super_stream;
        cx->base = a->len - cx->blen;
    }
    if (s->super_stream != cx->stream)
        return -1;
    bend = s->bound_end < 0 ? (gint64)(cx->base + cx->blen) : s->bound_end;
    if (s->bound_start < (gint64)cx->base)
        return -2;
    if (bend < s->bound_start || bend > (gint64)(cx->base + cx->blen))
        return -1;
    *start = (size_t)s->bound_start - cx->base;
    *end = (size_t)bend - cx->base;
    return 0;
}

static GMimeStream *
flt_disclaimer_content_stream(GMimeObject *obj)
{
    GMimeDataWrapper *w;

    if (!GMIME_IS_PART(obj))
        return NULL;
    if ((w = g_mime_part_get_content(GMIME_PART(obj))) == NULL)
        return NULL;
    return g_mime_data_wrapper_get_stream(w);
}

/* flt_disclaimer_find_base - fix the stream from the first leaf. */
static int
flt_disclaimer_find_base(struct flt_disclaimer_ctx *cx, GMimeObject *obj,
                         unsigned depth)
{
    size_t a, b;
    int i, n;

    if (cx->stream != NULL)
        return 0;
    if (obj == NULL || depth > FLT_DISCLAIMER_DEPTH_MAX)
        return -1;
    if (GMIME_IS_MULTIPART(obj)) {
        n = g_mime_multipart_get_count(GMIME_MULTIPART(obj));
        for (i = 0; i < n; i++)
            if (flt_disclaimer_find_base(
                    cx, g_mime_multipart_get_part(GMIME_MULTIPART(obj), i),
                    depth + 1) == 0)
                return 0;
        return -1;
    }
    return flt_disclaimer_window(cx, flt_disclaimer_content_stream(obj), &a,
                                 &b);
}

/* flt_disclaimer_header_agrees - no header field GMime read as the
 * message's own lies in what msg_parse took for the body. */
static int
flt_disclaimer_header_agrees(const struct flt_disclaimer_ctx *cx,
                             GMimeObject *obj)
{
    GMimeHeaderList *hl = g_mime_object_get_header_list(obj);
    int i, n = hl != NULL ? g_mime_header_list_get_count(hl) : 0;

    for (i = 0; i < n; i++)
        if (g_mime_header_get_offset(
                g_mime_header_list_get_header_at(hl, i)) >= (gint64)cx->base)
            return 0;
    return 1;
}

/* flt_disclaimer_obj_start - body offset where obj's part starts (its
 * first header field), SIZE_MAX when GMime has no offset for it. */
static size_t
flt_disclaimer_obj_start(const struct flt_disclaimer_ctx *cx, GMimeObject *obj)
{
    GMimeHeaderList *hl = g_mime_object_get_header_list(obj);
    gint64 off;

    if (hl == NULL || g_mime_header_list_get_count(hl) == 0)
        return SIZE_MAX;
    off = g_mime_header_get_offset(g_mime_header_list_get_header_at(hl, 0));
    if (off < (gint64)cx->base || off > (gint64)(cx->base + cx->blen))
        return SIZE_MAX;
    return (size_t)off - cx->base;
}

static enum flt_disclaimer_cs
flt_disclaimer_cs_class(const struct flt_disclaimer_part *p);

/*
 * flt_disclaimer_locate - where part p's header fields and content are in
 * the body, and how its content is written. Returns 0; sets p->skip for a
 * part that cannot be edited, cx->broken when GMime's offsets do not fit
 * the body.
 */
static void
flt_disclaimer_locate(struct flt_disclaimer_ctx *cx,
                      struct flt_disclaimer_part *p)
{
    const char *cte_field, *v;
    GMimeContentType *ct;
    size_t eol_len, first;

    GMimeStream *s = flt_disclaimer_content_stream(p->obj);
    int r;

    if (s == NULL && p->top) {
        /* A message that is all header: the body is empty. */
        p->cstart = p->cend = cx->blen;
    } else if (s == NULL) {
        p->skip = "no content";
        return;
    } else if ((r = flt_disclaimer_window(cx, s, &p->cstart, &p->cend)) < 0) {
        if (r == -2)
            flt_disclaimer_set_skip(cx, "header end read two ways");
        else
            cx->broken = 1;
        return;
    }
    if (p->top &&
        (msg_header_name_count(cx->m, "Content-Type") > 1 ||
         msg_header_name_count(cx->m, "Content-Transfer-Encoding") > 1)) {
        p->skip = "Content-Type or Content-Transfer-Encoding given twice";
        return;
    }
    if (!p->top) {
        /* The empty line ends right where the content starts. */
        if (p->cstart == 0 || cx->body[p->cstart - 1] != '\n') {
            cx->broken = 1;
            return;
        }
        eol_len = p->cstart >= 2 && cx->body[p->cstart - 2] == '\r' ? 2 : 1;
        p->hend = p->cstart - eol_len;
        first = flt_disclaimer_obj_start(cx, p->obj);
        p->hstart = first == SIZE_MAX ? p->hend : first;
        if (p->hstart > p->hend ||
            (p->hend > 0 && cx->body[p->hend - 1] != '\n')) {
            cx->broken = 1;
            return;
        }
    }
    p->cte = g_mime_part_get_content_encoding(GMIME_PART(p->obj));
    cte_field = g_mime_object_get_header(p->obj, "Content-Transfer-Encoding");
    if (p->cte == GMIME_CONTENT_ENCODING_UUENCODE ||
        (p->cte == GMIME_CONTENT_ENCODING_DEFAULT && cte_field != NULL)) {
        p->skip = "unknown Content-Transfer-Encoding";
        return;
    }
    ct = g_mime_object_get_content_type(p->obj);
    v = g_mime_content_type_get_parameter(ct, "charset");
    if (v != NULL && strlen(v) >= sizeof(p->charset)) {
        p->skip = "charset name too long";
        return;
    }
    snprintf(p->charset, sizeof(p->charset), "%s", v != NULL ? v : "");
    p->cs = flt_disclaimer_cs_class(p);
    v = g_mime_content_type_get_parameter(ct, "format");
    p->flowed = !p->html && v != NULL && g_ascii_strcasecmp(v, "flowed") == 0;
    v = g_mime_content_type_get_parameter(ct, "delsp");
    p->delsp = p->flowed && v != NULL && g_ascii_strcasecmp(v, "yes") == 0;
    p->raw_eol = flt_disclaimer_eol_of(cx->body + p->cstart,
                                       p->cend - p->cstart, cx->eol);
}

/* ----------------------------------------------------- run: decoding */

/* flt_disclaimer_code - run GMime's encoder or decoder over in into out,
 * with each LF of the result made eol (encoding only). */
static int
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

/* flt_disclaimer_decode - p->d: the part's content without its transfer
 * encoding. White space at the end of a quoted-printable line is kept,
 * as GMime and other decoders keep it (format=flowed text sent as
 * quoted-printable may depend on it). */
static int
flt_disclaimer_decode(struct flt_disclaimer_ctx *cx,
                      struct flt_disclaimer_part *p, struct err *e)
{
    const char *raw = cx->body + p->cstart;
    size_t n = p->cend - p->cstart;

    switch (p->cte) {
    case GMIME_CONTENT_ENCODING_BASE64:
        if (flt_disclaimer_code(p->cte, 0, raw, n, "\n", &p->dec, e) < 0)
            return -1;
        break;
    case GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE:
        if (flt_disclaimer_code(p->cte, 0, raw, n, "\n", &p->dec, e) < 0)
            return -1;
        break;
    default:
        p->d = raw;
        p->dlen = n;
        p->text_eol = p->raw_eol;
        return 0;
    }
    p->d = p->dec.data != NULL ? p->dec.data : "";
    p->dlen = p->dec.len;
    p->text_eol = flt_disclaimer_eol_of(p->d, p->dlen, p->raw_eol);
    return 0;
}

/* ---------------------------------------------------- run: charsets */

static enum flt_disclaimer_cs
flt_disclaimer_cs_class(const struct flt_disclaimer_part *p)
{
    static const char *const stateful[] = {"iso-2022", "utf-7", "utf7", "hz"};
    static const char probe[] = "\t\r\n !\"#&'-./09:;<=>?@AZaz{}~";
    const char *canon;
    struct buf out;
    struct err e;
    size_t k;
    int rc;

    if (p->charset[0] == '\0')
        return p->html ? FLT_DISCLAIMER_CS_NONE : FLT_DISCLAIMER_CS_ASCII;
    canon = g_mime_charset_canon_name(p->charset);
    if (canon == NULL)
        canon = p->charset;
    if (g_ascii_strcasecmp(canon, "utf-8") == 0 ||
        g_ascii_strcasecmp(canon, "utf8") == 0)
        return FLT_DISCLAIMER_CS_UTF8;
    if (g_ascii_strcasecmp(canon, "us-ascii") == 0 ||
        g_ascii_strcasecmp(canon, "ascii") == 0 ||
        g_ascii_strcasecmp(canon, "ansi_x3.4-1968") == 0)
        return FLT_DISCLAIMER_CS_ASCII;
    for (k = 0; k < sizeof(stateful) / sizeof(stateful[0]); k++)
        if (g_ascii_strncasecmp(canon, stateful[k], strlen(stateful[k])) == 0)
            return FLT_DISCLAIMER_CS_STATEFUL;
    /* ASCII-compatible when ASCII goes through unchanged. */
    buf_init(&out, 256);
    rc = flt_disclaimer_iconv("UTF-8", p->charset, probe, sizeof(probe) - 1, 1,
                              &out, &e);
    if (rc == 0 && (out.len != sizeof(probe) - 1 ||
                    memcmp(out.data, probe, out.len) != 0))
        rc = 2;
    buf_fini(&out);
    if (rc < 0 || rc == 1)
        return FLT_DISCLAIMER_CS_UNKNOWN;
    return rc == 0 ? FLT_DISCLAIMER_CS_COMPAT : FLT_DISCLAIMER_CS_WIDE;
}

/* flt_disclaimer_ncr - UTF-8 s with every non-ASCII character written as
 * an HTML numeric character reference. */
static int
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

/* ----------------------------------------------------- run: footers */

/* flt_disclaimer_value - a variable's value made safe: control octets and
 * invalid UTF-8 as '?', at most FLT_DISCLAIMER_VALUE_MAX octets, HTML
 * special characters escaped when html. */
static int
flt_disclaimer_value(const char *v, int html, struct buf *out, struct err *e)
{
    size_t n = strlen(v), i;
    int valid;

    if (n > FLT_DISCLAIMER_VALUE_MAX)
        n = FLT_DISCLAIMER_VALUE_MAX;
    valid = g_utf8_validate(v, (gssize)n, NULL);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        const char *rep = NULL;
        int rc;

        if (c < 0x20 || c == 0x7f || (c >= 0x80 && !valid))
            rep = "?";
        else if (html && c == '&')
            rep = "&amp;";
        else if (html && c == '<')
            rep = "&lt;";
        else if (html && c == '>')
            rep = "&gt;";
        else if (html && c == '"')
            rep = "&quot;";
        else if (html && c == '\'')
            rep = "&#39;";
        rc = rep != NULL ? buf_puts(out, rep, e) : buf_putc(out, (char)c, e);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* flt_disclaimer_expand - template t with its variables replaced. */
static int
flt_disclaimer_expand(const char *t, const char *const vals[], int html,
                      struct buf *out, struct err *e)
{
    size_t i, run = 0, vlen;
    int v;

    for (i = 0; t[i] != '\0'; i++) {
        if (t[i] != '%' || (v = flt_disclaimer_var_at(t + i, &vlen)) < 0 ||
            v == FLT_DISCLAIMER_VAR_NONE)
            continue;
        if (buf_append(out, t + run, i - run, e) < 0 ||
            flt_disclaimer_value(vals[v], html, out, e) < 0)
            return -1;
        i += vlen - 1;
        run = i + 1;
    }
    return buf_append(out, t + run, i - run, e);
}

/* flt_disclaimer_html_from_text - the HTML form of an expanded text
 * footer: escaped, one <br> per line end, in a <div>. */
static int
flt_disclaimer_html_from_text(const char *t, size_t n, struct buf *out,
                              struct err *e)
{
    struct buf line;
    size_t i, start = 0;
    int rc = 0;

    if (buf_puts(out, "<div class=\"disclaimer\">", e) < 0)
        return -1;
    buf_init(&line, FLT_DISCLAIMER_FILE_MAX);
    while (n > 0 && t[n - 1] == '\n')
        n--;
    for (i = 0; i <= n && rc == 0; i++) {
        if (i < n && t[i] != '\n')
            continue;
        buf_reset(&line);
        rc = buf_append(&line, t + start, i - start, e);
        if (rc == 0)
            rc = flt_disclaimer_value(buf_str(&line), 1, out, e);
        if (rc == 0 && i < n)
            rc = buf_puts(out, "<br>\n", e);
        start = i + 1;
    }
    buf_fini(&line);
    if (rc < 0)
        return -1;
    return buf_puts(out, "</div>\n", e);
}

/* flt_disclaimer_sender - the envelope sender, or the From address for
 * the null sender. Borrowed from m or the parse. */
static const char *
flt_disclaimer_sender(struct flt_disclaimer_ctx *cx)
{
    const char *s = msg_env(cx->m)->sender;
    InternetAddressList *from;
    InternetAddress *ia;

    if (s != NULL && s[0] != '\0')
        return s;
    from = g_mime_message_get_from(cx->message);
    if (from == NULL || internet_address_list_length(from) == 0)
        return "";
    ia = internet_address_list_get_address(from, 0);
    if (!INTERNET_ADDRESS_IS_MAILBOX(ia))
        return "";
    s = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
    return s != NULL ? s : "";
}

static int
flt_disclaimer_footers(struct flt_disclaimer_ctx *cx, struct err *e)
{
    const char *vals[FLT_DISCLAIMER_VAR_NONE], *sender, *at;
    char date[32];
    struct tm tm;
    time_t now = time(NULL);

    sender = flt_disclaimer_sender(cx);
    at = strrchr(sender, '@');
    if (localtime_r(&now, &tm) == NULL ||
        strftime(date, sizeof(date), "%Y-%m-%d", &tm) == 0)
        snprintf(date, sizeof(date), "%s", "");
    vals[FLT_DISCLAIMER_VAR_SENDER] = sender;
    vals[FLT_DISCLAIMER_VAR_DOMAIN] = at != NULL ? at + 1 : "";
    vals[FLT_DISCLAIMER_VAR_DATE] = date;
    if (flt_disclaimer_expand(cx->tpl->text, vals, 0, &cx->text_footer, e) < 0)
        return -1;
    if (cx->tpl->html != NULL)
        return flt_disclaimer_expand(cx->tpl->html, vals, 1, &cx->html_footer,
                                     e);
    return flt_disclaimer_html_from_text(
        buf_str(&cx->text_footer), cx->text_footer.len, &cx->html_footer, e);
}

/*
 * flt_disclaimer_text_footer - the text footer for part p: its last line
 * end dropped, the others made eol; under format=flowed each line loses
 * its trailing spaces (but "-- ") and is space-stuffed when it starts
 * with ' ', '>' or "From ".
 */
static int
flt_disclaimer_text_footer(const struct flt_disclaimer_ctx *cx,
                           const struct flt_disclaimer_part *p,
                           struct buf *out, struct err *e)
{
    const char *f = buf_str(&cx->text_footer);
    size_t n = cx->text_footer.len, start = 0, i, len;

    if (n > 0 && f[n - 1] == '\n')
        n--;
    for (i = 0; i <= n; i++) {
        if (i < n && f[i] != '\n')
            continue;
        len = i - start;
        if (p->flowed) {
            if (!(len == 3 && memcmp(f + start, "-- ", 3) == 0))
                while (len > 0 && f[start + len - 1] == ' ')
                    len--;
            if ((len > 0 && (f[start] == ' ' || f[start] == '>')) ||
                (len >= 5 && memcmp(f + start, "From ", 5) == 0))
                if (buf_putc(out, ' ', e) < 0)
                    return -1;
        }
        if (buf_append(out, f + start, len, e) < 0 ||
            (i < n && buf_puts(out, p->text_eol, e) < 0))
            return -1;
        start = i + 1;
    }
    return 0;
}

/* -------------------------------------------------- run: insertion */

/*
 * flt_disclaimer_insert - d (n octets) with footer f put in: appended
 * (with a line end before it when d lacks one, and an empty line first
 * when d is flowed text that ends in a soft break), prepended (with a
 * line end after it), or at off (HTML, with a line end after it).
 * d ends with a line end exactly when the result does. off is SIZE_MAX
 * for the plain append/prepend.
 */
static int
flt_disclaimer_insert(const struct flt_disclaimer_part *p, int prepend,
                      const char *d, size_t n, const char *f, size_t fl,
                      size_t off, struct buf *out, struct err *e)
{
    const char *eol = p->text_eol;
    int ends = n == 0 || d[n - 1] == '\n';
    size_t ls, ll;

    if (off != SIZE_MAX)
        return buf_append(out, d, off, e) < 0 ||
                       buf_append(out, f, fl, e) < 0 ||
                       buf_puts(out, eol, e) < 0 ||
                       buf_append(out, d + off, n - off, e) < 0
                   ? -1
                   : 0;
    if (prepend)
        return buf_append(out, f, fl, e) < 0 || buf_puts(out, eol, e) < 0 ||
                       buf_append(out, d, n, e) < 0
                   ? -1
                   : 0;
    if (buf_append(out, d, n, e) < 0 || (!ends && buf_puts(out, eol, e) < 0))
        return -1;
    if (p->flowed && n > 0) {
        /* The last line of d, without its line end. */
        ll = n - (ends ? 1 : 0);
        if (ll > 0 && d[ll - 1] == '\r' && ends)
            ll--;
        for (ls = ll; ls > 0 && d[ls - 1] != '\n'; ls--)
            ;
        if (ll > ls && d[ll - 1] == ' ' &&
            !(ll - ls == 3 && memcmp(d + ls, "-- ", 3) == 0) &&
            buf_puts(out, eol, e) < 0)
            return -1;
    }
    if (buf_append(out, f, fl, e) < 0 ||
        (ends && n > 0 && buf_puts(out, eol, e) < 0))
        return -1;
    if (n == 0 && buf_puts(out, eol, e) < 0)
        return -1;
    return 0;
}

/* flt_disclaimer_place - the insertion point in HTML d: SIZE_MAX for the
 * plain append/prepend, or an offset; 1 when there is none that is not
 * inside a tag or comment. */
static int
flt_disclaimer_place(const struct flt_disclaimer_ctx *cx, const char *d,
                     size_t n, size_t *off, struct err *e)
{
    struct flt_disclaimer_html h;

    if (flt_disclaimer_html_scan(d, n, &h, NULL, e) < 0)
        return -1;
    *off = SIZE_MAX;
    if (cx->fd->prepend) {
        if (h.body_open_end != SIZE_MAX)
            *off = h.body_open_end;
        return 0;
    }
    if (h.body_close != SIZE_MAX) {
        *off = h.body_close;
        return 0;
    }
    return h.ends_in_text ? 0 : 1;
}

/*
 * flt_disclaimer_build - the new decoded content of p into n8 (and the
 * charset change in p->to_utf8), from its decoded content and the
 * footer. Returns 0, 1 when the part is left alone (p->skip), -1.
 */
static int
flt_disclaimer_build(struct flt_disclaimer_ctx *cx,
                     struct flt_disclaimer_part *p, struct buf *nb,
                     struct err *e)
{
    enum flt_disclaimer_cs cs = p->cs;
    struct buf f8, fc, d8, n8;
    const char *d = p->d, *f;
    size_t dn = p->dlen, fl, off = SIZE_MAX;
    int rc = -1, r;

    if (cs == FLT_DISCLAIMER_CS_UNKNOWN) {
        p->skip = "unknown charset";
        return 1;
    }
    buf_init(&f8, cx->limit);
    buf_init(&fc, cx->limit);
    buf_init(&d8, cx->limit);
    buf_init(&n8, cx->limit);
    /* Stateful and wide charsets are edited in UTF-8. */
    if (cs == FLT_DISCLAIMER_CS_STATEFUL || cs == FLT_DISCLAIMER_CS_WIDE) {
        if ((r = flt_disclaimer_iconv("UTF-8", p->charset, d, dn, 1, &d8,
                                      e)) != 0) {
            if (r < 0)
                goto done;
            p->skip = "text not valid in its charset";
            rc = 1;
            goto done;
        }
        d = d8.data != NULL ? d8.data : "";
        dn = d8.len;
        if (cs == FLT_DISCLAIMER_CS_WIDE)
            p->text_eol = flt_disclaimer_eol_of(d, dn, p->raw_eol);
    }
    /* The footer in UTF-8 with the part's line ends. */
    if (p->html) {
        const char *hf = buf_str(&cx->html_footer);
        size_t hl = cx->html_footer.len;

        while (hl > 0 && hf[hl - 1] == '\n')
            hl--;
        if (flt_disclaimer_put_lines(&f8, hf, hl, p->text_eol, e) < 0)
            goto done;
    } else if (flt_disclaimer_text_footer(cx, p, &f8, e) < 0) {
        goto done;
    }
    if (p->html && (r = flt_disclaimer_place(cx, d, dn, &off, e)) != 0) {
        if (r < 0)
            goto done;
        p->skip = "HTML ends inside a tag or comment";
        rc = 1;
        goto done;
    }
    f = f8.data != NULL ? f8.data : "";
    fl = f8.len;
    switch (cs) {
    case FLT_DISCLAIMER_CS_UTF8:
        break;
    case FLT_DISCLAIMER_CS_ASCII:
    case FLT_DISCLAIMER_CS_NONE:
        if (!flt_disclaimer_has_8bit(f, fl))
            break;
        if (p->html) {
            if (flt_disclaimer_ncr(f, fl, &fc, e) < 0)
                goto done;
            f = buf_str(&fc);
            fl = fc.len;
        } else if (flt_disclaimer_has_8bit(d, dn)) {
            p->skip = "8-bit text in a us-ascii part";
            rc = 1;
            goto done;
        } else {
            p->to_utf8 = 1;
        }
        break;
    case FLT_DISCLAIMER_CS_COMPAT:
        if ((r = flt_disclaimer_iconv(p->charset, "UTF-8", f, fl, 1, &fc, e)) <
            0)
            goto done;
        if (r == 0) {
            f = buf_str(&fc);
            fl = fc.len;
        } else if (p->html) {
            if (flt_disclaimer_ncr(f, fl, &fc, e) < 0)
                goto done;
            f = buf_str(&fc);
            fl = fc.len;
        } else {
            if ((r = flt_disclaimer_iconv("UTF-8", p->charset, d, dn, 1, &d8,
                                          e)) != 0) {
                if (r < 0)
                    goto done;
                p->skip = "text not valid in its charset";
                rc = 1;
                goto done;
            }
            d = buf_str(&d8);
            dn = d8.len;
            p->to_utf8 = 1;
        }
        break;
    case FLT_DISCLAIMER_CS_STATEFUL:
    case FLT_DISCLAIMER_CS_WIDE:
        break;
    case FLT_DISCLAIMER_CS_UNKNOWN:
        goto done;
    }
    if (cs == FLT_DISCLAIMER_CS_STATEFUL || cs == FLT_DISCLAIMER_CS_WIDE) {
        if (flt_disclaimer_insert(p, cx->fd->prepend, d, dn, f, fl, off, &n8,
                                  e) < 0)
            goto done;
        r = 1;
        if (cs == FLT_DISCLAIMER_CS_STATEFUL &&
            (r = flt_disclaimer_iconv(p->charset, "UTF-8", buf_str(&n8),
                                      n8.len, 1, nb, e)) < 0)
            goto done;
        if (r == 1 && p->html && cs == FLT_DISCLAIMER_CS_STATEFUL) {
            /* Characters the charset lacks, as references. */
            buf_reset(&n8);
            if (flt_disclaimer_ncr(f, fl, &fc, e) < 0 ||
                flt_disclaimer_insert(p, cx->fd->prepend, d, dn, buf_str(&fc),
                                      fc.len, off, &n8, e) < 0 ||
                (r = flt_disclaimer_iconv(p->charset, "UTF-8", buf_str(&n8),
                                          n8.len, 1, nb, e)) < 0)
                goto done;
        }
        if (r == 1) {
            if (buf_append(nb, n8.data, n8.len, e) < 0)
                goto done;
            p->to_utf8 = 1;
        }
    } else if (flt_disclaimer_insert(p, cx->fd->prepend, d, dn, f, fl, off, nb,
                                     e) < 0) {
        goto done;
    }
    rc = 0;
done:
    buf_fini(&f8);
    buf_fini(&fc);
    buf_fini(&d8);
    buf_fini(&n8);
    return rc;
}

/* --------------------------------------------------- run: encoding */

/*
 * flt_disclaimer_set_charset - the raw Content-Type value v (n octets,
 * folding kept) with its charset parameter made utf-8, or one added at
 * the end (after a fold, eol and a tab, when the last line would pass 78
 * columns; col is where v starts on its first line). Nothing else of the
 * value changes: other parameters, quoting, comments and folding stay as
 * they were. A charset given the RFC 2231 way (charset*=) is replaced.
 */
static int
flt_disclaimer_set_charset(const char *v, size_t n, size_t col,
                           const char *eol, struct buf *out, struct err *e)
{
    size_t i, seg, k, name, nend, vend, last;
    int quote = 0, depth = 0;

    for (seg = SIZE_MAX, i = 0; i <= n; i++) {
        if (i < n) {
            if (quote || depth > 0) {
                if (v[i] == '\\')
                    i++;
                else if (quote && v[i] == '"')
                    quote = 0;
                else if (!quote && v[i] == '(')
                    depth++;
                else if (!quote && v[i] == ')')
                    depth--;
                continue;
            }
            if (v[i] == '"')
                quote = 1;
            else if (v[i] == '(')
                depth = 1;
            if (v[i] != ';')
                continue;
        }
        /* A parameter ends at i: is it charset? */
        if (seg != SIZE_MAX) {
            for (name = seg; name < i && flt_disclaimer_is_space(v[name]);
                 name++)
                ;
            for (nend = name; nend < i && v[nend] != '=' &&
                              !flt_disclaimer_is_space(v[nend]);
                 nend++)
                ;
            if ((nend - name == 7 ||
                 (nend - name > 7 && v[name + 7] == '*')) &&
                g_ascii_strncasecmp(v + name, "charset", 7) == 0) {
                for (vend = i;
                     vend > nend && flt_disclaimer_is_space(v[vend - 1]);
                     vend--)
                    ;
                return buf_append(out, v, name, e) < 0 ||
                               buf_puts(out, "charset=utf-8", e) < 0 ||
                               buf_append(out, v + vend, n - vend, e) < 0
                           ? -1
                           : 0;
            }
        }
        seg = i + 1;
    }
    for (k = n; k > 0 && flt_disclaimer_is_space(v[k - 1]); k--)
        ;
    for (last = k; last > 0 && v[last - 1] != '\n'; last--)
        ;
    if (last == 0)
        last = (size_t)0 - col; /* the first line starts at col */
    if (buf_append(out, v, k, e) < 0)
        return -1;
    if (k - last + sizeof("; charset=utf-8") - 1 <= 78)
        return buf_puts(out, "; charset=utf-8", e) < 0 ||
                       buf_append(out, v + k, n - k, e) < 0
                   ? -1
                   : 0;
    return buf_printf(out, e, ";%s\tcharset=utf-8", eol) < 0 ||
                   buf_append(out, v + k, n - k, e) < 0
               ? -1
               : 0;
}

static void
flt_disclaimer_ct_warning(gint64 offset, GMimeParserWarning code,
                          const gchar *item, gpointer data)
{
    (void)offset;
    (void)code;
    (void)item;
    (*(int *)data)++;
}

/* flt_disclaimer_ct_read - how GMime reads a Content-Type value: its
 * parameter count and charset into cs (size n, "" when none); 1 when
 * GMime warned about it, 0 when not, -1 on an allocation failure. */
static int
flt_disclaimer_ct_read(const char *v, size_t len, int *count, char *cs,
                       size_t n, struct err *e)
{
    GMimeParserOptions *o;
    GMimeContentType *ct;
    struct buf un;
    const char *c;
    int warned = 0;
    size_t i;

    buf_init(&un, 0);
    for (i = 0; i < len; i++)
        if (buf_putc(&un, v[i] == '\r' || v[i] == '\n' ? ' ' : v[i], e) < 0) {
            buf_fini(&un);
            return -1;
        }
    o = g_mime_parser_options_new();
    g_mime_parser_options_set_warning_callback(o, flt_disclaimer_ct_warning,
                                               &warned);
    ct = g_mime_content_type_parse(o, buf_str(&un));
    g_mime_parser_options_free(o);
    buf_fini(&un);
    *count = 0;
    cs[0] = '\0';
    if (ct == NULL)
        return 1;
    *count = g_mime_param_list_length(g_mime_content_type_get_parameters(ct));
    if ((c = g_mime_content_type_get_parameter(ct, "charset")) != NULL)
        snprintf(cs, n, "%s", c);
    g_object_unref(ct);
    return warned > 0;
}

/*
 * flt_disclaimer_charset_value - flt_disclaimer_set_charset(), and a
 * check that GMime reads the result as the old value with charset utf-8:
 * one parameter more when none was there, as many when one was, no
 * warning. Returns 0, 1 when it does not (the value is read two ways),
 * -1.
 */
static int
flt_disclaimer_charset_value(const char *v, size_t n, size_t col,
                             const char *eol, struct buf *out, struct err *e)
{
    char cs_old[FLT_DISCLAIMER_CHARSET_MAX],
        cs_new[FLT_DISCLAIMER_CHARSET_MAX];
    size_t mark = out->len;
    int n_old, n_new, r;

    if ((r = flt_disclaimer_ct_read(v, n, &n_old, cs_old, sizeof(cs_old),
                                    e)) != 0 ||
        flt_disclaimer_set_charset(v, n, col, eol, out, e) < 0 ||
        (r = flt_disclaimer_ct_read(out->data + mark, out->len - mark, &n_new,
                                    cs_new, sizeof(cs_new), e)) != 0 ||
        g_ascii_strcasecmp(cs_new, "utf-8") != 0 ||
        n_new != n_old + (cs_old[0] == '\0')) {
        out->len = mark;
        if (out->data != NULL)
            out->data[mark] = '\0';
        return r < 0 || e->code == ERR_NOMEM || e->code == ERR_LIMIT ? -1 : 1;
    }
    return 0;
}

/* flt_disclaimer_part_headers - p's header block with Content-Type and
 * Content-Transfer-Encoding changed as p says, every other field as it
 * was. Returns 0, 1 when a field is given twice (p->skip), -1. */
static int
flt_disclaimer_part_headers(struct flt_disclaimer_ctx *cx,
                            struct flt_disclaimer_part *p, struct err *e)
{
    const char *s = cx->body + p->hstart, *end = cx->body + p->hend, *q;
    const char *colon;
    int have_ct = 0, have_cte = 0, is_ct, is_cte;
    struct buf raw;
    size_t nlen;

    buf_init(&raw, cx->limit);
    while (s < end) {
        for (q = s; q < end;) {
            const char *nl = memchr(q, '\n', (size_t)(end - q));

            q = nl != NULL ? nl + 1 : end;
            if (q >= end || !flt_disclaimer_is_wsp(*q))
                break;
        }
        colon = memchr(s, ':', (size_t)(q - s));
        nlen = colon != NULL ? (size_t)(colon - s) : 0;
        while (nlen > 0 && flt_disclaimer_is_wsp(s[nlen - 1]))
            nlen--;
        is_ct = nlen == 12 && g_ascii_strncasecmp(s, "Content-Type", 12) == 0;
        is_cte = nlen == 25 &&
                 g_ascii_strncasecmp(s, "Content-Transfer-Encoding", 25) == 0;
        if ((is_ct && have_ct++) || (is_cte && have_cte++)) {
            buf_fini(&raw);
            p->skip = "Content-Type or Content-Transfer-Encoding given twice";
            return 1;
        }
        if (is_ct && p->to_utf8) {
            const char *vend = q;

            /* The value without the field's own line end. */
            if (vend > colon + 1 && vend[-1] == '\n')
                vend--;
            if (vend > colon + 1 && vend[-1] == '\r')
                vend--;
            int r;

            if (buf_append(&p->hdr, s, (size_t)(colon + 1 - s), e) < 0 ||
                (r = flt_disclaimer_charset_value(
                     colon + 1, (size_t)(vend - colon - 1),
                     (size_t)(colon + 1 - s), cx->eol, &p->hdr, e)) < 0 ||
                (r == 0 &&
                 buf_append(&p->hdr, vend, (size_t)(q - vend), e) < 0)) {
                buf_fini(&raw);
                return -1;
            }
            if (r > 0) {
                buf_fini(&raw);
                p->skip = "Content-Type read two ways";
                return 1;
            }
        } else if (is_cte && p->to_qp) {
            if (buf_append(&p->hdr, s, (size_t)(colon + 1 - s), e) < 0 ||
                buf_printf(&p->hdr, e, " quoted-printable%s", cx->eol) < 0) {
                buf_fini(&raw);
                return -1;
            }
        } else if (buf_append(&p->hdr, s, (size_t)(q - s), e) < 0) {
            buf_fini(&raw);
            return -1;
        }
        s = q;
    }
    buf_fini(&raw);
    if (p->to_utf8 && !have_ct &&
        buf_printf(&p->hdr, e, "Content-Type: %s; charset=utf-8%s",
                   p->html ? "text/html" : "text/plain", cx->eol) < 0)
        return -1;
    if (p->to_qp && !have_cte &&
        buf_printf(&p->hdr, e, "Content-Transfer-Encoding: quoted-printable%s",
                   cx->eol) < 0)
        return -1;
    return 0;
}

/*
 * flt_disclaimer_encode - p->out: the new decoded content nb written in
 * p's transfer encoding (quoted-printable where 7bit would carry 8-bit
 * octets or a line would pass 998 octets), ending with a line end only
 * when the old content did.
 */
static int
flt_disclaimer_encode(struct flt_disclaimer_ctx *cx,
                      struct flt_disclaimer_part *p, const struct buf *nb,
                      struct err *e)
{
    const char *n = nb->data != NULL ? nb->data : "";
    GMimeContentEncoding enc = p->cte;
    /* Whatever follows the content (a delimiter) starts a line when the
     * octet before it is a line end, even one of the empty line that ends
     * the header when the content is empty. */
    int ended = p->cend > 0 && cx->body[p->cend - 1] == '\n';

    switch (enc) {
    case GMIME_CONTENT_ENCODING_BASE64:
    case GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE:
        break;
    default:
        if (flt_disclaimer_longest(n, nb->len) > FLT_DISCLAIMER_LINE_MAX ||
            ((enc == GMIME_CONTENT_ENCODING_DEFAULT ||
              enc == GMIME_CONTENT_ENCODING_7BIT) &&
             flt_disclaimer_has_8bit(n, nb->len))) {
            enc = GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE;
            p->to_qp = 1;
            break;
        }
        return buf_append(&p->out, n, nb->len, e);
    }
    if (flt_disclaimer_code(enc, 1, n, nb->len, p->raw_eol, &p->out, e) < 0)
        return -1;
    /* base64 always ends its last line; the delimiter's line end may
     * already be the content's. */
    if (!ended && enc == GMIME_CONTENT_ENCODING_BASE64) {
        size_t el = strlen(p->raw_eol);

        if (p->out.len >= el &&
            memcmp(p->out.data + p->out.len - el, p->raw_eol, el) == 0)
            p->out.len -= el;
        p->out.data[p->out.len] = '\0';
    }
    return 0;
}

/* ------------------------------------------------------ run: a part */

/* flt_disclaimer_has_footer - the once check over p's decoded text. */
static int
flt_disclaimer_has_footer(struct flt_disclaimer_ctx *cx,
                          const struct flt_disclaimer_part *p, int *has,
                          struct err *e)
{
    enum flt_disclaimer_cs cs = p->cs;
    const char *d = p->d;
    size_t n = p->dlen;
    struct buf u8, norm;
    int rc = -1;

    *has = 0;
    buf_init(&u8, cx->limit);
    buf_init(&norm, cx->limit);
    if (cs != FLT_DISCLAIMER_CS_UTF8 && cs != FLT_DISCLAIMER_CS_ASCII &&
        cs != FLT_DISCLAIMER_CS_NONE && cs != FLT_DISCLAIMER_CS_UNKNOWN) {
        if (flt_disclaimer_iconv("UTF-8", p->charset, d, n, 0, &u8, e) < 0)
            goto done;
        d = buf_str(&u8);
        n = u8.len;
    }
    if ((p->html ? flt_disclaimer_norm_html(d, n, &norm, e)
                 : flt_disclaimer_norm_text(d, n, p->flowed, p->delsp, &norm,
                                            e)) < 0)
        goto done;
    *has = flt_disclaimer_has_needles(&cx->tpl->needles_text, buf_str(&norm),
                                      norm.len) ||
           flt_disclaimer_has_needles(&cx->tpl->needles_html, buf_str(&norm),
                                      norm.len);
    rc = 0;
done:
    buf_fini(&u8);
    buf_fini(&norm);
    return rc;
}

/* flt_disclaimer_inline_pgp - an inline OpenPGP block in p's text. */
static int
flt_disclaimer_inline_pgp(struct flt_disclaimer_ctx *cx,
                          const struct flt_disclaimer_part *p, struct err *e)
{
    enum flt_disclaimer_cs cs = p->cs;
    struct buf u8;
    int found;

    if (cs != FLT_DISCLAIMER_CS_STATEFUL && cs != FLT_DISCLAIMER_CS_WIDE)
        return flt_disclaimer_line_has(p->d, p->dlen, "-----BEGIN PGP ");
    buf_init(&u8, cx->limit);
    if (flt_disclaimer_iconv("UTF-8", p->charset, p->d, p->dlen, 0, &u8, e) <
        0) {
        buf_fini(&u8);
        return -1;
    }
    found = flt_disclaimer_line_has(buf_str(&u8), u8.len, "-----BEGIN PGP ");
    buf_fini(&u8);
    return found;
}

/*
 * flt_disclaimer_prepare - locate and decode p; 1 when the whole message
 * must be left alone (cx->skip), 0, or -1.
 */
static int
flt_disclaimer_prepare(struct flt_disclaimer_ctx *cx,
                       struct flt_disclaimer_part *p, struct err *e)
{
    int r;

    if (p->obj == NULL)
        return 0;
    flt_disclaimer_locate(cx, p);
    if (cx->broken || p->skip != NULL)
        return 0;
    if (flt_disclaimer_decode(cx, p, e) < 0)
        return -1;
    if ((r = flt_disclaimer_inline_pgp(cx, p, e)) < 0)
        return -1;
    if (r > 0) {
        flt_disclaimer_set_skip(cx, "inline PGP");
        return 1;
    }
    return 0;
}

/* flt_disclaimer_edit - the new header block and content of p. */
static int
flt_disclaimer_edit(struct flt_disclaimer_ctx *cx,
                    struct flt_disclaimer_part *p, struct err *e)
{
    struct buf nb;
    int has, r;

    if (p->obj == NULL || p->skip != NULL)
        return 0;
    if (cx->fd->once) {
        if (flt_disclaimer_has_footer(cx, p, &has, e) < 0)
            return -1;
        if (has) {
            p->skip = "footer already present";
            return 0;
        }
    }
    buf_init(&nb, cx->limit);
    r = flt_disclaimer_build(cx, p, &nb, e);
    if (r == 0)
        r = flt_disclaimer_encode(cx, p, &nb, e);
    buf_fini(&nb);
    if (r != 0)
        return r < 0 ? -1 : 0;
    if (!p->top && (p->to_utf8 || p->to_qp) &&
        (r = flt_disclaimer_part_headers(cx, p, e)) != 0)
        return r < 0 ? -1 : 0;
    if (p->top && p->to_utf8) {
        /* The message's own Content-Type, made now so that a value GMime
         * reads two ways leaves the part alone. */
        const char *raw = msg_header_get(cx->m, "Content-Type", 1);

        if (raw == NULL)
            r = buf_printf(&p->hdr, e, "%s; charset=utf-8",
                           p->html ? "text/html" : "text/plain");
        else
            r = flt_disclaimer_charset_value(raw, strlen(raw),
                                             sizeof("Content-Type:") - 1,
                                             cx->eol, &p->hdr, e);
        if (r < 0)
            return -1;
        if (r > 0) {
            p->skip = "Content-Type read two ways";
            return 0;
        }
    }
    p->edited = 1;
    return 0;
}

/* -------------------------------------------------- run: new parts */

/* flt_disclaimer_footer_part - a text/plain part holding the footer:
 * "--boundary", its header fields, the empty line and the text, each
 * line ended. */
static int
flt_disclaimer_footer_part(struct flt_disclaimer_ctx *cx, const char *boundary,
                           struct buf *out, struct err *e)
{
    struct flt_disclaimer_part p;
    struct buf text;
    int qp, rc;

    memset(&p, 0, sizeof(p));
    p.text_eol = cx->eol;
    buf_init(&text, cx->limit);
    if (flt_disclaimer_text_footer(cx, &p, &text, e) < 0) {
        buf_fini(&text);
        return -1;
    }
    qp = flt_disclaimer_has_8bit(buf_str(&text), text.len) ||
         flt_disclaimer_longest(buf_str(&text), text.len) >
             FLT_DISCLAIMER_LINE_MAX;
    rc = buf_printf(out, e,
                    "--%s%sContent-Type: text/plain; charset=utf-8%s"
                    "Content-Transfer-Encoding: %s%s"
                    "Content-Disposition: inline%s%s",
                    boundary, cx->eol, cx->eol,
                    qp ? "quoted-printable" : "7bit", cx->eol, cx->eol,
                    cx->eol);
    if (rc == 0)
        rc =
            qp ? flt_disclaimer_code(GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE, 1,
                                     buf_str(&text), text.len, cx->eol, out, e)
               : buf_append(out, buf_str(&text), text.len, e);
    if (rc == 0 && (out->len < 1 || out->data[out->len - 1] != '\n'))
        rc = buf_puts(out, cx->eol, e);
    buf_fini(&text);
    return rc;
}

/* flt_disclaimer_delim - the start of the line "--b" (close: "--b--")
 * at or after from, followed only by white space; SIZE_MAX when none. */
static size_t
flt_disclaimer_delim(const struct flt_disclaimer_ctx *cx, size_t from,
                     const char *b, int close)
{
    size_t bl = strlen(b), i;
    const char *p = cx->body + from, *end = cx->body + cx->blen;

    while (p < end && (p = memmem(p, (size_t)(end - p), "--", 2)) != NULL) {
        if ((p == cx->body || p[-1] == '\n') && (size_t)(end - p) >= 2 + bl &&
            memcmp(p + 2, b, bl) == 0) {
            i = (size_t)(p - cx->body) + 2 + bl;
            if (close && (cx->blen - i < 2 || memcmp(cx->body + i, "--", 2)))
                goto next;
            if (close)
                i += 2;
            while (i < cx->blen &&
                   (flt_disclaimer_is_wsp(cx->body[i]) || cx->body[i] == '\r'))
                i++;
            if (i == cx->blen || cx->body[i] == '\n')
                return (size_t)(p - cx->body);
        }
    next:
        p++;
    }
    return SIZE_MAX;
}

/* flt_disclaimer_add_to_mixed - splice for a new footer part in the
 * top-level multipart/mixed mp: before its close delimiter (append) or
 * its first delimiter (prepend). Returns 0, 1 when the delimiter is not
 * where it should be (cx->skip). */
static int
flt_disclaimer_add_to_mixed(struct flt_disclaimer_ctx *cx, GMimeMultipart *mp,
                            struct buf *part, struct splice *sp, struct err *e)
{
    const char *b = g_mime_multipart_get_boundary(mp);
    int n = g_mime_multipart_get_count(mp);
    size_t at, from;

    if (b == NULL || n == 0 ||
        flt_disclaimer_find_base(cx, GMIME_OBJECT(mp), 0) < 0) {
        flt_disclaimer_set_skip(cx, "no text body, cannot place a new part");
        return 1;
    }
    from = flt_disclaimer_obj_start(
        cx, g_mime_multipart_get_part(mp, cx->fd->prepend ? 0 : n - 1));
    if (from == SIZE_MAX || from == 0) {
        flt_disclaimer_set_skip(cx, "no text body, cannot place a new part");
        return 1;
    }
    if (cx->fd->prepend) {
        /* The first delimiter is the line just before the first part. */
        for (at = from - 1; at > 0 && cx->body[at - 1] != '\n'; at--)
            ;
        if (flt_disclaimer_delim(cx, at, b, 0) != at)
            at = SIZE_MAX;
    } else {
        at = flt_disclaimer_delim(cx, from, b, 1);
    }
    if (at == SIZE_MAX) {
        flt_disclaimer_set_skip(cx, "no text body, cannot place a new part");
        return 1;
    }
    if (flt_disclaimer_footer_part(cx, b, part, e) < 0)
        return -1;
    sp->start = at;
    sp->end = at;
    sp->data = part->data;
    sp->len = part->len;
    return 0;
}

static int
flt_disclaimer_is_content_field(const char *name)
{
    return g_ascii_strncasecmp(name, "Content-", 8) == 0;
}

/*
 * flt_disclaimer_wrap - a message without a text body that is not a
 * multipart/mixed becomes one: its Content-* fields move into the first
 * (append) or second (prepend) part with the body as it was, and the
 * footer part goes beside it. Body in out; the header edits are made
 * by flt_disclaimer_wrap_headers() once nothing can fail.
 */
static int
flt_disclaimer_wrap(struct flt_disclaimer_ctx *cx, char *boundary, size_t bn,
                    struct buf *out, struct err *e)
{
    struct buf inner, part;
    const char *name, *value;
    struct mime *mm;
    size_t i, vlen, first;
    gchar *sum;
    int rc = -1;

    sum = g_compute_checksum_for_data(G_CHECKSUM_SHA256,
                                      (const guchar *)cx->body, cx->blen);
    if (sum == NULL)
        return err_nomem(e);
    snprintf(boundary, bn, "=_disclaimer_%.32s", sum);
    g_free(sum);
    if (memmem(cx->body, cx->blen, boundary, strlen(boundary)) != NULL) {
        flt_disclaimer_set_skip(cx, "no text body, no free boundary");
        return 1;
    }
    buf_init(&inner, cx->limit);
    buf_init(&part, cx->limit);
    if (buf_printf(&inner, e, "--%s%s", boundary, cx->eol) < 0)
        goto done;
    for (i = 0; msg_header_at(cx->m, i, &name, &value, &vlen) == 0; i++) {
        if (!flt_disclaimer_is_content_field(name))
            continue;
        if (buf_printf(&inner, e, "%s:", name) < 0 ||
            buf_append(&inner, value, vlen, e) < 0 ||
            buf_puts(&inner, cx->eol, e) < 0)
            goto done;
    }
    if (buf_puts(&inner, cx->eol, e) < 0 ||
        buf_append(&inner, cx->body, cx->blen, e) < 0 ||
        buf_puts(&inner, cx->eol, e) < 0)
        goto done;
    /* Fields that were read one way at the top may be read another in a
     * part (GMime judges repeated fields there): the part must parse
     * cleanly on its own, or the message is left alone. */
    first = strlen(boundary) + 2 + strlen(cx->eol);
    if ((mm = mime_parse(inner.data + first, inner.len - first,
                         msg_limits(cx->m), e)) == NULL ||
        mime_flags(mm) != 0) {
        mime_free(mm);
        if (e->code == ERR_NOMEM)
            goto done;
        flt_disclaimer_set_skip(cx, "no text body, and its header cannot "
                                    "become a part's");
        rc = 1;
        goto done;
    }
    mime_free(mm);
    if (flt_disclaimer_footer_part(cx, boundary, &part, e) < 0)
        goto done;
    if (cx->fd->prepend)
        rc = buf_append(out, part.data, part.len, e) < 0 ||
                     buf_append(out, inner.data, inner.len, e) < 0
                 ? -1
                 : 0;
    else
        rc = buf_append(out, inner.data, inner.len, e) < 0 ||
                     buf_append(out, part.data, part.len, e) < 0
                 ? -1
                 : 0;
    if (rc == 0)
        rc = buf_printf(out, e, "--%s--%s", boundary, cx->eol);
done:
    buf_fini(&inner);
    buf_fini(&part);
    return rc;
}

static int
flt_disclaimer_wrap_headers(struct flt_disclaimer_ctx *cx,
                            const char *boundary, struct err *e)
{
    const char *name, *value;
    char ct[160], *first;
    size_t vlen;
    int found = 1, rc;

    snprintf(ct, sizeof(ct), " multipart/mixed; boundary=\"%s\"", boundary);
    /* Every Content-* field but the first Content-Type goes. The name is
     * copied: the delete frees the field it came from. */
    while (found) {
        size_t i;

        found = 0;
        for (i = 0; msg_header_at(cx->m, i, &name, &value, &vlen) == 0; i++) {
            if (!flt_disclaimer_is_content_field(name))
                continue;
            if (g_ascii_strcasecmp(name, "Content-Type") == 0 &&
                msg_header_name_count(cx->m, "Content-Type") == 1)
                continue;
            if ((first = strdup(name)) == NULL)
                return err_nomem(e);
            rc = msg_header_delete(
                cx->m, cx->st->name, first,
                g_ascii_strcasecmp(first, "Content-Type") == 0 ? 2 : 1, e);
            free(first);
            if (rc < 0)
                return -1;
            found = 1;
            break;
        }
    }
    if (msg_header_name_count(cx->m, "Content-Type") == 1) {
        if (msg_header_change(cx->m, cx->st->name, "Content-Type", 1, ct, e) <
            0)
            return -1;
    } else if (msg_header_add(cx->m, cx->st->name, "Content-Type", ct, e) <
               0) {
        return -1;
    }
    if (msg_header_name_count(cx->m, "MIME-Version") == 0 &&
        msg_header_add(cx->m, cx->st->name, "MIME-Version", "1.0", e) < 0)
        return -1;
    return 0;
}

/* flt_disclaimer_top_headers - the message's own Content-Type and
 * Content-Transfer-Encoding for an edited single-part message. */
static int
flt_disclaimer_top_headers(struct flt_disclaimer_ctx *cx,
                           const struct flt_disclaimer_part *p, struct err *e)
{
    /* p->hdr holds the new value, made by flt_disclaimer_edit(). */
    if (p->to_utf8 &&
        (msg_header_name_count(cx->m, "Content-Type") == 1
             ? msg_header_change(cx->m, cx->st->name, "Content-Type", 1,
                                 buf_str(&p->hdr), e)
             : msg_header_add(cx->m, cx->st->name, "Content-Type",
                              buf_str(&p->hdr), e)) < 0)
        return -1;
    if (p->to_qp &&
        (msg_header_name_count(cx->m, "Content-Transfer-Encoding") == 1
             ? msg_header_change(cx->m, cx->st->name,
                                 "Content-Transfer-Encoding", 1,
                                 "quoted-printable", e)
             : msg_header_add(cx->m, cx->st->name, "Content-Transfer-Encoding",
                              "quoted-printable", e)) < 0)
        return -1;
    if ((p->to_utf8 || p->to_qp) &&
        msg_header_name_count(cx->m, "MIME-Version") == 0 &&
        msg_header_add(cx->m, cx->st->name, "MIME-Version", "1.0", e) < 0)
        return -1;
    return 0;
}

/* ----------------------------------------------------- run: driver */

/* flt_disclaimer_splice_body - the body with the splices made, in out. */
static int
flt_disclaimer_splice_body(const struct flt_disclaimer_ctx *cx,
                           struct splice *sp, size_t n, struct buf *out,
                           struct err *e)
{
    size_t i, total = cx->blen;

    if (splice_check(cx->blen, 0, sp, n, e) < 0)
        return err_set(e, ERR_INTERNAL,
                       "disclaimer: overlapping edits in the body");
    for (i = 0; i < n; i++)
        total += sp[i].len;
    /* One allocation for the new body, not a series of doublings. */
    if (buf_reserve(out, total, e) < 0)
        return -1;
    return splice_apply(cx->body, cx->blen, 0, sp, n, out, e);
}

static void
flt_disclaimer_part_init(struct flt_disclaimer_part *p, const char *kind,
                         int html, size_t limit)
{
    memset(p, 0, sizeof(*p));
    p->kind = kind;
    p->html = html;
    buf_init(&p->dec, limit);
    buf_init(&p->out, limit);
    buf_init(&p->hdr, limit);
}

static void
flt_disclaimer_part_fini(struct flt_disclaimer_part *p)
{
    buf_fini(&p->dec);
    buf_fini(&p->out);
    buf_fini(&p->hdr);
}

/* flt_disclaimer_note_parts - "text/plain, text/html" of the edited
 * parts, and "; text/html: why" for the others, into note. */
static void
flt_disclaimer_note(const struct flt_disclaimer_ctx *cx, int added_part,
                    char *note, size_t n)
{
    const struct flt_disclaimer_part *ps[2] = {&cx->plain, &cx->html};
    size_t used = 0, i;
    int any = 0;

    used += (size_t)snprintf(note, n, "added (");
    if (added_part) {
        used += (size_t)snprintf(note + used, used < n ? n - used : 0,
                                 "new text/plain part");
        any = 1;
    }
    for (i = 0; i < 2; i++) {
        if (!ps[i]->edited || used >= n)
            continue;
        used +=
            (size_t)snprintf(note + used, n - used, "%s%s%s", any ? ", " : "",
                             ps[i]->kind, ps[i]->to_utf8 ? " as utf-8" : "");
        any = 1;
    }
    if (used < n)
        used += (size_t)snprintf(note + used, n - used, "), template=%s",
                                 cx->tpl->name);
    for (i = 0; i < 2; i++)
        if (ps[i]->obj != NULL && !ps[i]->edited && ps[i]->skip != NULL &&
            used < n)
            used +=
                (size_t)snprintf(note + used, n - used, "; %s not edited (%s)",
                                 ps[i]->kind, ps[i]->skip);
}

/* flt_disclaimer_pick - the template for this message, or NULL. */
static const struct flt_disclaimer_tpl *
flt_disclaimer_pick(const struct flt_disclaimer *fd, const struct msg *m)
{
    char why[160];
    size_t i;

    for (i = 0; i < fd->nrules; i++)
        if (match_test(fd->rules[i].match, m, why, sizeof(why)))
            return fd->rules[i].tpl;
    return fd->def;
}

/*
 * flt_disclaimer_apply - plan and make every edit of one message; the
 * verdict note says what happened. Returns 0 or -1.
 */
static int
flt_disclaimer_apply(struct flt_disclaimer_ctx *cx, struct verdict *v,
                     struct err *e)
{
    struct flt_disclaimer_part *ps[2] = {&cx->plain, &cx->html};
    struct splice sp[FLT_DISCLAIMER_SPLICES];
    GMimeObject *top = g_mime_message_get_mime_part(cx->message);
    char note[VERDICT_NOTE_MAX], boundary[80];
    struct buf body, part;
    size_t nsp = 0, i, blen;
    char *bdata;
    int rc = -1, r, wrap = 0, added_part = 0;

    buf_init(&body, cx->limit);
    buf_init(&part, cx->limit);
    flt_disclaimer_walk(cx, top, 1, 0, 1);
    /* Without a leaf to fix the stream (message/rfc822 alone), the body
     * starts where msg_write() puts it. */
    if (flt_disclaimer_find_base(cx, top, 0) < 0 && cx->stream == NULL)
        cx->base = msg_size(cx->m) - cx->blen;
    if (cx->skip[0] == '\0' && cx->blen > 0 &&
        (!flt_disclaimer_header_agrees(cx, GMIME_OBJECT(cx->message)) ||
         !flt_disclaimer_header_agrees(cx, top)))
        flt_disclaimer_set_skip(cx, "header end read two ways");
    for (i = 0; i < 2 && cx->skip[0] == '\0'; i++)
        if (flt_disclaimer_prepare(cx, ps[i], e) < 0)
            goto done;
    if (cx->broken) {
        rc = err_set(e, ERR_INTERNAL,
                     "GMime's part offsets do not match the body");
        goto done;
    }
    if (cx->skip[0] != '\0')
        goto skipped;
    if (flt_disclaimer_footers(cx, e) < 0)
        goto done;
    for (i = 0; i < 2; i++)
        if (flt_disclaimer_edit(cx, ps[i], e) < 0)
            goto done;

    if (cx->plain.obj == NULL && cx->html.obj == NULL) {
        if (!cx->fd->add_part) {
            flt_disclaimer_set_skip(cx, "no text body");
            goto skipped;
        }
        if (GMIME_IS_MULTIPART(top) &&
            flt_disclaimer_is(top, "multipart", "mixed")) {
            r = flt_disclaimer_add_to_mixed(cx, GMIME_MULTIPART(top), &part,
                                            &sp[nsp], e);
            if (r < 0)
                goto done;
            if (r > 0)
                goto skipped;
            nsp++;
        } else {
            r = flt_disclaimer_wrap(cx, boundary, sizeof(boundary), &body, e);
            if (r < 0)
                goto done;
            if (r > 0)
                goto skipped;
            wrap = 1;
        }
        added_part = 1;
    }
    for (i = 0; i < 2; i++) {
        struct flt_disclaimer_part *p = ps[i];

        if (!p->edited)
            continue;
        if (p->hdr.len > 0 && !p->top) {
            sp[nsp].start = p->hstart;
            sp[nsp].end = p->hend;
            sp[nsp].data = p->hdr.data;
            sp[nsp].len = p->hdr.len;
            nsp++;
        }
        sp[nsp].start = p->cstart;
        sp[nsp].end = p->cend;
        sp[nsp].data = p->out.data != NULL ? p->out.data : "";
        sp[nsp].len = p->out.len;
        nsp++;
    }
    if (nsp == 0 && !wrap) {
        /* Nothing edited: say why for each part. */
        snprintf(note, sizeof(note), "skipped (%s%s%s%s%s)",
                 cx->plain.obj != NULL ? "text/plain: " : "",
                 cx->plain.obj != NULL && cx->plain.skip ? cx->plain.skip : "",
                 cx->plain.obj != NULL && cx->html.obj != NULL ? "; " : "",
                 cx->html.obj != NULL ? "text/html: " : "",
                 cx->html.obj != NULL && cx->html.skip ? cx->html.skip : "");
        rc = verdict_set(v, VERDICT_CONTINUE, NULL, "%s", note);
        goto done;
    }
    if (!wrap && flt_disclaimer_splice_body(cx, sp, nsp, &body, e) < 0) {
        if (e->code == ERR_LIMIT) {
            rc = verdict_set(v, VERDICT_CONTINUE, NULL,
                             "skipped (result over the message size limit)");
            log_warning(msg_qid(cx->m),
                        "%s: footer not added: result over the message size "
                        "limit",
                        cx->st->name);
        }
        goto done;
    }
    flt_disclaimer_note(cx, added_part, note, sizeof(note));
    /* Header edits first: they cannot fail on size, and the body edit
     * is the one that drops the shared parse the parts point into. */
    if (wrap && flt_disclaimer_wrap_headers(cx, boundary, e) < 0)
        goto done;
    for (i = 0; i < 2; i++) {
        const struct msg_edit *ed;
        size_t before = msg_journal(cx->m, &ed);

        if (!ps[i]->edited || !ps[i]->top ||
            flt_disclaimer_top_headers(cx, ps[i], e) == 0)
            continue;
        /* msg refused the first field (a bare CR, a line over the
         * limit, kept from the original value) and changed nothing. */
        if ((e->code == ERR_INPUT || e->code == ERR_LIMIT) &&
            msg_journal(cx->m, &ed) == before)
            rc = verdict_set(v, VERDICT_CONTINUE, NULL, "skipped (%s: %s)",
                             ps[i]->kind, e->text);
        goto done;
    }
    /* The journal takes the new body over rather than a copy of it. */
    blen = body.len;
    if ((bdata = buf_steal(&body, NULL)) == NULL) {
        rc = err_nomem(e);
        goto done;
    }
    if (msg_body_adopt(cx->m, cx->st->name, bdata, blen, e) < 0)
        goto done;
    rc = verdict_set(v, VERDICT_CONTINUE, NULL, "%s", note);
    goto done;

skipped:
    rc = verdict_set(v, VERDICT_CONTINUE, NULL, "skipped (%s)", cx->skip);
done:
    buf_fini(&body);
    buf_fini(&part);
    return rc;
}

static int
flt_disclaimer_run(const struct stage *st, struct msg *m, struct verdict *v,
                   struct err *e)
{
    const struct flt_disclaimer *fd = st->priv;
    struct flt_disclaimer_ctx cx;
    const struct mime *mm;
    char what[160];
    int rc;

    memset(&cx, 0, sizeof(cx));
    cx.st = st;
    cx.fd = fd;
    cx.m = m;
    if ((cx.tpl = flt_disclaimer_pick(fd, m)) == NULL)
        return verdict_set(v, VERDICT_CONTINUE, NULL,
                           "skipped (no template for this sender)");
    /* Without any header field the whole text is body (as in Postfix):
     * not a message anyone could read the parts of. */
    if (msg_header_count(m) == 0)
        return verdict_set(v, VERDICT_CONTINUE, NULL,
                           "skipped (no header fields)");
    /* Every DKIM signature covers the body: a footer would break the
     * one an earlier hop made. */
    if (!fd->dkim_edit && flt_dkim_signed(m, NULL, what, sizeof(what)))
        return verdict_set(v, VERDICT_CONTINUE, NULL,
                           "skipped (DKIM-signed, %s)", what);
    if ((mm = msg_mime(m, e)) == NULL) {
        err_prefix(e, "%s", st->name);
        return -1;
    }
    if (mime_flags(mm) != 0)
        return verdict_set(
            v, VERDICT_CONTINUE, NULL, "skipped (ambiguous MIME: %s)",
            mime_flags_describe(mime_flags(mm), what, sizeof(what)));
    cx.message = mime_message(mm);
    cx.body = msg_body(m, &cx.blen);
    cx.eol = msg_eol(m);
    cx.limit = msg_limits(m)->message_size;
    cx.base = SIZE_MAX;
    flt_disclaimer_part_init(&cx.plain, "text/plain", 0, cx.limit);
    flt_disclaimer_part_init(&cx.html, "text/html", 1, cx.limit);
    buf_init(&cx.text_footer, FLT_DISCLAIMER_FILE_MAX * 2);
    buf_init(&cx.html_footer, FLT_DISCLAIMER_FILE_MAX * 8);
    rc = flt_disclaimer_apply(&cx, v, e);
    flt_disclaimer_part_fini(&cx.plain);
    flt_disclaimer_part_fini(&cx.html);
    buf_fini(&cx.text_footer);
    buf_fini(&cx.html_footer);
    if (rc < 0)
        err_prefix(e, "%s", st->name);
    return rc;
}

const struct stage_type flt_disclaimer_type = {
    .name = "disclaimer",
    .summary = "add a compliance footer to the text and HTML body, never to "
               "signed or encrypted mail",
    .flags = STAGE_EDITS_HEADERS | STAGE_EDITS_BODY,
    .options = flt_disclaimer_options,
    .init = flt_disclaimer_init,
    .run = flt_disclaimer_run,
    .free = flt_disclaimer_free,
};
