/*
 * track_html - the track stage's rewriting of one decoded text
 *
 * HTML: a forward scan that knows comments, tags with quoted and
 * unquoted attribute values, and the raw text of script and style (no
 * link is looked for inside them). The href of each a and area tag whose
 * value, entities decoded and white space trimmed, is an http(s) URL of
 * at most TRACK_URL_MAX octets (and not already one of ours) is replaced
 * by https://TRACK_HOST/c/TOKEN; nothing else changes, octet for octet.
 * The open pixel goes before the last </body> tag, or at the end when
 * there is none. Text (track_text_links): http(s) URLs in running text,
 * cut at white space, quotes and angle brackets, without the trailing
 * punctuation of a sentence.
 *
 * Both run twice over a message: once to count its links (every click
 * token carries the count, for the handlers' sweep rule), once to
 * rewrite; the two passes see the same candidates in the same order.
 * Nothing is allocated but out's growth.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "filters/track/track_int.h"

static int
flt_track_is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

static int
flt_track_is_alnum(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9');
}

/* flt_track_ieq - s (n octets) is word, without regard to ASCII case. */
static int
flt_track_ieq(const char *s, size_t n, const char *word)
{
    return strlen(word) == n && strncasecmp(s, word, n) == 0;
}

/* flt_track_istarts - s (n octets) starts with word, any case. */
static int
flt_track_istarts(const char *s, size_t n, const char *word)
{
    size_t wl = strlen(word);

    return n >= wl && strncasecmp(s, word, wl) == 0;
}

/* flt_track_ifind - the first place of word in s[from..n), any case;
 * SIZE_MAX when none. */
static size_t
flt_track_ifind(const char *s, size_t n, size_t from, const char *word)
{
    size_t wl = strlen(word), i;

    for (i = from; i + wl <= n; i++)
        if (strncasecmp(s + i, word, wl) == 0)
            return i;
    return SIZE_MAX;
}

int
flt_track_url(struct flt_track_tokens *tk, enum track_kind kind,
              const char *url, struct buf *out, struct err *e)
{
    struct track_token t = tk->base;
    char tok[TRACK_TOKEN_MAX];

    t.kind = kind;
    if (kind == TRACK_CLICK) {
        t.index = tk->next++;
        t.count = tk->links;
        snprintf(t.url, sizeof(t.url), "%s", url);
    }
    if (track_token_make(&tk->ft->key, &t, tok, sizeof(tok), e) < 0)
        return -1;
    return buf_printf(out, e, "https://%s/%c/%s%s", tk->ft->host, (int)kind,
                      tok, kind == TRACK_OPEN ? ".gif" : "");
}

/* flt_track_utf8 - code point c as UTF-8 into u; its length (0 for
 * one that is not a character). */
static size_t
flt_track_utf8(unsigned long c, char *u)
{
    if (c == 0 || (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
        return 0;
    if (c < 0x80) {
        u[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        u[0] = (char)(0xc0 | c >> 6);
        u[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        u[0] = (char)(0xe0 | c >> 12);
        u[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        u[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    u[0] = (char)(0xf0 | c >> 18);
    u[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    u[2] = (char)(0x80 | ((c >> 6) & 0x3f));
    u[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

/* flt_track_attr_url - the URL of an attribute value v (n octets):
 * character references decoded, white space trimmed, into url (room
 * for TRACK_URL_MAX + 1). 1 when it is one to track, else 0. */
static int
flt_track_attr_url(const struct flt_track *ft, const char *v, size_t n,
                   char *url)
{
    static const struct {
        const char *name;
        char c;
    } named[] = {{"amp;", '&'},
                 {"lt;", '<'},
                 {"gt;", '>'},
                 {"quot;", '"'},
                 {"apos;", '\''}};
    size_t i = 0, o = 0, k, start, end;
    char mine[FLT_TRACK_HOST_MAX + 16];

    while (i < n) {
        char u[4];
        size_t ul = 0;

        if (v[i] == '&') {
            for (k = 0; k < sizeof(named) / sizeof(named[0]); k++)
                if (flt_track_istarts(v + i + 1, n - i - 1, named[k].name))
                    break;
            if (k < sizeof(named) / sizeof(named[0])) {
                u[0] = named[k].c;
                ul = 1;
                i += 1 + strlen(named[k].name);
            } else if (i + 2 < n && v[i + 1] == '#') {
                unsigned long c = 0;
                size_t j = i + 2;
                int hex = v[j] == 'x' || v[j] == 'X', digits = 0;

                if (hex)
                    j++;
                for (; j < n && digits < 8; j++, digits++) {
                    int d = v[j];

                    if (d >= '0' && d <= '9')
                        c = c * (hex ? 16 : 10) + (unsigned long)(d - '0');
                    else if (hex && ((d | 0x20) >= 'a' && (d | 0x20) <= 'f'))
                        c = c * 16 + (unsigned long)((d | 0x20) - 'a' + 10);
                    else
                        break;
                }
                if (digits == 0 || j >= n || v[j] != ';' ||
                    (ul = flt_track_utf8(c, u)) == 0)
                    return 0;
                i = j + 1;
            } else {
                u[0] = '&';
                ul = 1;
                i++;
            }
        } else {
            u[0] = v[i++];
            ul = 1;
        }
        if (o + ul > TRACK_URL_MAX)
            return 0;
        memcpy(url + o, u, ul);
        o += ul;
    }
    url[o] = '\0';
    /* Only what the redirector will follow: no NUL, space or control
     * octet (it would be refused as a Location, and a NUL would cut the
     * URL the checks below see), so such a link stays as it is. White
     * space at either end is trimmed first, as browsers do. */
    for (start = 0; start < o && flt_track_is_space(url[start]); start++)
        ;
    for (end = o; end > start && flt_track_is_space(url[end - 1]); end--)
        ;
    memmove(url, url + start, end - start);
    url[end - start] = '\0';
    for (i = 0; i < end - start; i++)
        if ((unsigned char)url[i] <= 0x20 || url[i] == 0x7f)
            return 0;
    if (!flt_track_istarts(url, strlen(url), "http://") &&
        !flt_track_istarts(url, strlen(url), "https://"))
        return 0;
    snprintf(mine, sizeof(mine), "https://%s/", ft->host);
    return !flt_track_istarts(url, strlen(url), mine);
}

/* flt_track_link - one candidate link at [vs, ve) of d: counted, or
 * (out) written in its place. */
static int
flt_track_link(struct flt_track_tokens *tk, const char *d, size_t vs,
               size_t ve, int quote, const char *url, struct buf *out,
               size_t *copied, unsigned *links, struct err *e)
{
    size_t col;

    if (out == NULL) {
        if (*links < FLT_TRACK_LINKS_MAX)
            (*links)++;
        return 0;
    }
    if (tk->next >= tk->links)
        return 0;
    if (buf_append(out, d + *copied, vs - *copied, e) < 0 ||
        flt_track_url(tk, TRACK_CLICK, url, out, e) < 0)
        return -1;
    *copied = ve;
    (*links)++;
    /* In a tag, a line end after an attribute value is white space
     * between attributes: one there keeps a line of many links within
     * what SMTP carries (998 octets) without changing the HTML. quote:
     * the value's quote, 0 unquoted, -1 in text (no tag to break). */
    if (quote < 0)
        return 0;
    for (col = 0; col < out->len && out->data[out->len - col - 1] != '\n';
         col++)
        ;
    if (col <= FLT_TRACK_WRAP)
        return 0;
    if (quote > 0) {
        if (buf_putc(out, quote, e) < 0)
            return -1;
        *copied = ve + 1;
    }
    return buf_puts(out, tk->eol, e);
}

/* flt_track_pixel - the open pixel at out's offset at (SIZE_MAX: the
 * end). */
static int
flt_track_pixel(struct flt_track_tokens *tk, struct buf *out, size_t at,
                struct err *e)
{
    struct buf px;
    size_t old = out->len, col, rest,
           pos = at != SIZE_MAX && at < old ? at : old;
    int rc = -1;

    buf_init(&px, 4096);
    /* On a long line, the pixel goes on a line of its own (line ends are
     * white space in the text), so that no line passes 998 octets. */
    for (col = 0; col < pos && out->data[pos - col - 1] != '\n'; col++)
        ;
    for (rest = 0; pos + rest < old && out->data[pos + rest] != '\n'; rest++)
        ;
    if (col > FLT_TRACK_WRAP && buf_puts(&px, tk->eol, e) < 0)
        goto out;
    if (buf_puts(&px, "<img src=\"", e) < 0 ||
        flt_track_url(tk, TRACK_OPEN, NULL, &px, e) < 0 ||
        buf_puts(&px,
                 "\" width=\"1\" height=\"1\" alt=\"\" "
                 "style=\"display:block;width:1px;height:1px;border:0\">",
                 e) < 0 ||
        (rest > FLT_TRACK_WRAP && buf_puts(&px, tk->eol, e) < 0) ||
        buf_append(out, px.data, px.len, e) < 0)
        goto out;
    if (at != SIZE_MAX && at < old) {
        memmove(out->data + at + px.len, out->data + at, old - at);
        memcpy(out->data + at, px.data, px.len);
    }
    rc = 0;
out:
    buf_fini(&px);
    return rc;
}

int
flt_track_html(struct flt_track_tokens *tk, const char *d, size_t n,
               int *pixel, struct buf *out, unsigned *links, struct err *e)
{
    char url[TRACK_URL_MAX + 1];
    size_t i = 0, j, copied = 0, body_close = SIZE_MAX;
    int in_text = 1; /* the end is outside any tag, comment, raw text */

    *links = 0;
    while (i < n) {
        size_t ns, nl;
        int closing = 0, is_link, raw;

        if (d[i] != '<') {
            i++;
            continue;
        }
        if (flt_track_istarts(d + i, n - i, "<!--")) {
            j = flt_track_ifind(d, n, i + 4, "-->");
            in_text = j != SIZE_MAX;
            i = j == SIZE_MAX ? n : j + 3;
            continue;
        }
        j = i + 1;
        if (j < n && d[j] == '/') {
            closing = 1;
            j++;
        }
        for (ns = j; j < n && flt_track_is_alnum((unsigned char)d[j]); j++)
            ;
        nl = j - ns;
        if (nl == 0) {
            i++;
            continue;
        }
        if (closing) {
            if (flt_track_ieq(d + ns, nl, "body") && out != NULL)
                body_close = out->len + (i - copied);
            i = j;
            continue;
        }
        is_link = flt_track_ieq(d + ns, nl, "a") ||
                  flt_track_ieq(d + ns, nl, "area");
        raw = flt_track_ieq(d + ns, nl, "script") ||
              flt_track_ieq(d + ns, nl, "style");
        while (j < n && d[j] != '>') {
            size_t an, al, vs, ve;
            int quote;

            if (flt_track_is_space((unsigned char)d[j]) || d[j] == '/') {
                j++;
                continue;
            }
            for (an = j; j < n && !flt_track_is_space((unsigned char)d[j]) &&
                         d[j] != '=' && d[j] != '>' && d[j] != '/';
                 j++)
                ;
            al = j - an;
            if (al == 0) {
                j++;
                continue;
            }
            while (j < n && flt_track_is_space((unsigned char)d[j]))
                j++;
            if (j >= n || d[j] != '=')
                continue;
            j++;
            while (j < n && flt_track_is_space((unsigned char)d[j]))
                j++;
            quote = 0;
            if (j < n && (d[j] == '"' || d[j] == '\'')) {
                const char *q = memchr(d + j + 1, d[j], n - j - 1);

                quote = d[j];
                vs = j + 1;
                ve = q != NULL ? (size_t)(q - d) : n;
                j = q != NULL ? ve + 1 : n;
                if (q == NULL)
                    continue; /* an unterminated value: leave it (the
                                 tag ends unterminated below) */
            } else {
                for (vs = j;
                     j < n && !flt_track_is_space((unsigned char)d[j]) &&
                     d[j] != '>';
                     j++)
                    ;
                ve = j;
            }
            if (is_link && flt_track_ieq(d + an, al, "href") &&
                flt_track_attr_url(tk->ft, d + vs, ve - vs, url) &&
                flt_track_link(tk, d, vs, ve, quote, url, out, &copied, links,
                               e) < 0)
                return -1;
        }
        if (j >= n)
            in_text = 0; /* the text ends inside this tag */
        i = j < n ? j + 1 : n;
        if (raw) {
            j = flt_track_ifind(
                d, n, i,
                flt_track_ieq(d + ns, nl, "script") ? "</script" : "</style");
            if (j == SIZE_MAX)
                in_text = 0;
            i = j == SIZE_MAX ? n : j;
        }
    }
    if (out == NULL)
        return 0;
    if (buf_append(out, d + copied, n - copied, e) < 0)
        return -1;
    /* At the end only when the end is text: after an unterminated tag,
     * comment or script the pixel would become part of it. */
    if (pixel == NULL || !*pixel)
        return 0;
    if (body_close != SIZE_MAX || in_text)
        return flt_track_pixel(tk, out, body_close, e);
    *pixel = 0;
    return 0;
}

int
flt_track_text(struct flt_track_tokens *tk, const char *d, size_t n,
               struct buf *out, unsigned *links, struct err *e)
{
    char url[TRACK_URL_MAX + 1], mine[FLT_TRACK_HOST_MAX + 16];
    size_t i = 0, copied = 0, end;

    *links = 0;
    snprintf(mine, sizeof(mine), "https://%s/", tk->ft->host);
    while (i < n) {
        if ((d[i] != 'h' && d[i] != 'H') ||
            (i > 0 && flt_track_is_alnum((unsigned char)d[i - 1])) ||
            (!flt_track_istarts(d + i, n - i, "http://") &&
             !flt_track_istarts(d + i, n - i, "https://"))) {
            i++;
            continue;
        }
        for (end = i;
             end < n && (unsigned char)d[end] > 0x20 && d[end] != 0x7f &&
             d[end] != '<' && d[end] != '>' && d[end] != '"' && d[end] != '\'';
             end++)
            ;
        while (end > i && strchr(".,;:!?)]}", d[end - 1]) != NULL)
            end--;
        if (end - i <= TRACK_URL_MAX && end - i > 8) {
            memcpy(url, d + i, end - i);
            url[end - i] = '\0';
            if (!flt_track_istarts(url, end - i, mine) &&
                flt_track_link(tk, d, i, end, -1, url, out, &copied, links,
                               e) < 0)
                return -1;
        }
        i = end > i ? end : i + 1;
    }
    if (out == NULL)
        return 0;
    return buf_append(out, d + copied, n - copied, e);
}
