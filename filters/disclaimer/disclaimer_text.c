/*
 * disclaimer_text - the footer put into text and HTML, and encoded back
 *
 * Footers are expanded for the message, converted to the part's charset
 * (or the part to UTF-8), inserted (appended, prepended, or in HTML
 * before the last </body> the scanner found) and encoded again with the
 * part's transfer encoding. See disclaimer.c.
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

int
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
int
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

/* flt_disclaimer_text_utf8 - the decoded text d of p (dn octets, in
 * p's charset) in UTF-8, appended to d8. Returns 0, 1 when the text is
 * not valid in its charset (p->skip says so), or -1 with e set. */
static int
flt_disclaimer_text_utf8(struct flt_disclaimer_part *p, const char *d,
                         size_t dn, struct buf *d8, struct err *e)
{
    int r = flt_disclaimer_iconv("UTF-8", p->charset, d, dn, 1, d8, e);

    if (r > 0)
        p->skip = "text not valid in its charset";
    return r;
}

/*
 * flt_disclaimer_build - the new decoded content of p into n8 (and the
 * charset change in p->to_utf8), from its decoded content and the
 * footer. Returns 0, 1 when the part is left alone (p->skip), -1.
 */
int
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
        if ((r = flt_disclaimer_text_utf8(p, d, dn, &d8, e)) != 0) {
            rc = r;
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
            if ((r = flt_disclaimer_text_utf8(p, d, dn, &d8, e)) != 0) {
                rc = r;
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
int
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
int
flt_disclaimer_part_headers(struct flt_disclaimer_ctx *cx,
                            struct flt_disclaimer_part *p, struct err *e)
{
    const char *s = cx->win.body + p->hstart, *end = cx->win.body + p->hend,
               *q;
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
int
flt_disclaimer_encode(struct flt_disclaimer_ctx *cx,
                      struct flt_disclaimer_part *p, const struct buf *nb,
                      struct err *e)
{
    const char *n = nb->data != NULL ? nb->data : "";
    GMimeContentEncoding enc = p->cte;
    /* Whatever follows the content (a delimiter) starts a line when the
     * octet before it is a line end, even one of the empty line that ends
     * the header when the content is empty. */
    int ended = p->cend > 0 && cx->win.body[p->cend - 1] == '\n';

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
