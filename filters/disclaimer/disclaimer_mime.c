/*
 * disclaimer_mime - the disclaimer stage's walk over the shared MIME parse
 *
 * Picks the text/plain and text/html parts to edit, finds their header
 * fields and content in the body from GMime's offsets, decodes them,
 * reads their charsets, edits one part, and adds a text part to a
 * message that has none. See disclaimer.c.
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

/* ------------------------------------------------------- run: walk */

void
flt_disclaimer_set_skip(struct flt_disclaimer_ctx *cx, const char *why)
{
    if (cx->skip[0] == '\0')
        snprintf(cx->skip, sizeof(cx->skip), "%s", why);
}

/*
 * flt_disclaimer_walk - find the parts to edit and anything that forbids
 * editing. body: obj is where a reader looks for the message text.
 */
void
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
        if (mime_is_type(obj, forbidden[k][0], forbidden[k][1])) {
            snprintf(what, sizeof(what), "%s/%s", forbidden[k][0],
                     forbidden[k][1]);
            flt_disclaimer_set_skip(cx, what);
            return;
        }
    cd = g_mime_object_get_content_disposition(obj);
    attach = cd != NULL && g_mime_content_disposition_is_attachment(cd);
    ct = g_mime_object_get_content_type(obj);
    if (mime_is_type(obj, "text", "calendar") &&
        (!attach || g_mime_content_type_get_parameter(ct, "method") != NULL)) {
        flt_disclaimer_set_skip(cx, "text/calendar");
        return;
    }
    if (GMIME_IS_MULTIPART(obj)) {
        GMimeMultipart *mp = GMIME_MULTIPART(obj);
        int related = mime_is_type(obj, "multipart", "related");

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
    if (mime_is_type(obj, "text", "plain"))
        p = &cx->plain;
    else if (mime_is_type(obj, "text", "html"))
        p = &cx->html;
    else
        return;
    if (p->obj == NULL) {
        p->obj = obj;
        p->top = top;
    }
}

/* ---------------------------------------------------- run: locating */

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
int
flt_disclaimer_find_base(struct flt_disclaimer_ctx *cx, GMimeObject *obj,
                         unsigned depth)
{
    size_t a, b;
    int i, n;

    if (cx->win.stream != NULL)
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
    return mime_window_of(&cx->win, flt_disclaimer_content_stream(obj), &a,
                          &b);
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
    if (off < (gint64)cx->win.base ||
        off > (gint64)(cx->win.base + cx->win.blen))
        return SIZE_MAX;
    return (size_t)off - cx->win.base;
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
        p->cstart = p->cend = cx->win.blen;
    } else if (s == NULL) {
        p->skip = "no content";
        return;
    } else if ((r = mime_window_of(&cx->win, s, &p->cstart, &p->cend)) < 0) {
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
        if (p->cstart == 0 || cx->win.body[p->cstart - 1] != '\n') {
            cx->broken = 1;
            return;
        }
        eol_len =
            p->cstart >= 2 && cx->win.body[p->cstart - 2] == '\r' ? 2 : 1;
        p->hend = p->cstart - eol_len;
        first = flt_disclaimer_obj_start(cx, p->obj);
        p->hstart = first == SIZE_MAX ? p->hend : first;
        if (p->hstart > p->hend ||
            (p->hend > 0 && cx->win.body[p->hend - 1] != '\n')) {
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
    p->raw_eol = flt_disclaimer_eol_of(cx->win.body + p->cstart,
                                       p->cend - p->cstart, cx->eol);
}

/* ----------------------------------------------------- run: decoding */

/* flt_disclaimer_decode - p->d: the part's content without its transfer
 * encoding. White space at the end of a quoted-printable line is kept,
 * as GMime and other decoders keep it (format=flowed text sent as
 * quoted-printable may depend on it). */
static int
flt_disclaimer_decode(struct flt_disclaimer_ctx *cx,
                      struct flt_disclaimer_part *p, struct err *e)
{
    const char *raw = cx->win.body + p->cstart;
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
int
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
int
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
    const char *p = cx->win.body + from, *end = cx->win.body + cx->win.blen;

    while (p < end && (p = memmem(p, (size_t)(end - p), "--", 2)) != NULL) {
        if ((p == cx->win.body || p[-1] == '\n') &&
            (size_t)(end - p) >= 2 + bl && memcmp(p + 2, b, bl) == 0) {
            i = (size_t)(p - cx->win.body) + 2 + bl;
            if (close &&
                (cx->win.blen - i < 2 || memcmp(cx->win.body + i, "--", 2)))
                goto next;
            if (close)
                i += 2;
            while (i < cx->win.blen &&
                   (flt_disclaimer_is_wsp(cx->win.body[i]) ||
                    cx->win.body[i] == '\r'))
                i++;
            if (i == cx->win.blen || cx->win.body[i] == '\n')
                return (size_t)(p - cx->win.body);
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
int
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
        for (at = from - 1; at > 0 && cx->win.body[at - 1] != '\n'; at--)
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
int
flt_disclaimer_wrap(struct flt_disclaimer_ctx *cx, char *boundary, size_t bn,
                    struct buf *out, struct err *e)
{
    struct buf inner, part;
    const char *name, *value;
    struct mime *mm;
    size_t i, vlen, first;
    gchar *sum;
    int rc = -1;

    sum = g_compute_checksum_for_data(
        G_CHECKSUM_SHA256, (const guchar *)cx->win.body, cx->win.blen);
    if (sum == NULL)
        return err_nomem(e);
    snprintf(boundary, bn, "=_disclaimer_%.32s", sum);
    g_free(sum);
    if (memmem(cx->win.body, cx->win.blen, boundary, strlen(boundary)) !=
        NULL) {
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
        buf_append(&inner, cx->win.body, cx->win.blen, e) < 0 ||
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

int
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
int
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
