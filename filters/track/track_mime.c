/*
 * track_mime - the track stage's walk over the shared MIME parse
 *
 * Finds the text/html parts (and text/plain ones with track_text_links)
 * that a reader sees as the message, leaving attachments and forwarded
 * messages (message/rfc822) alone; refuses the whole message when any
 * part is signed or encrypted. Each part's content is found in the body
 * by GMime's stream offsets, the way the disclaimer stage does it (the
 * first window fixes where the body starts in GMime's stream; every
 * offset is checked against the body before it is used), decoded from
 * its transfer encoding, rewritten (track_html.c) and written back in
 * the same transfer encoding and the same charset (links and the pixel
 * are ASCII, so only charsets that write ASCII as ASCII are edited; the
 * others are left with a reason). The new contents are spliced into the
 * body (msg/splice.h): every other octet stays as it was.
 */
#include "config.h"

#include <errno.h>
#include <iconv.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <gmime/gmime.h>

#include "filters/track/track_int.h"
#include "msg/mime.h"
#include "msg/splice.h"

struct flt_track_part {
    GMimeObject *obj; /* borrowed from the shared parse */
    int html, top;
    size_t cstart, cend; /* its content in the body */
    GMimeContentEncoding cte;
    const char *raw_eol;
    struct buf dec; /* decoded content (base64, QP) */
    const char *d;
    size_t dlen;
    struct buf out; /* rewritten, decoded */
    struct buf enc; /* rewritten, encoded */
    unsigned links;
    int pixel;
    const char *skip;
};

struct flt_track_mctx {
    struct msg *m;
    struct mime_window win; /* base SIZE_MAX: unknown */
    const char *eol;
    size_t limit;
    int text_links;
    char skip[80];
    int broken;
    struct flt_track_part parts[FLT_TRACK_PARTS_MAX];
    size_t nparts;
};

static void
flt_track_set_skip(struct flt_track_mctx *cx, const char *why)
{
    if (cx->skip[0] == '\0')
        snprintf(cx->skip, sizeof(cx->skip), "%s", why);
}

static void
flt_track_walk(struct flt_track_mctx *cx, GMimeObject *obj, unsigned depth,
               int top)
{
    static const char *const sealed[][2] = {
        {"multipart", "signed"},
        {"multipart", "encrypted"},
        {"application", "pkcs7-mime"},
        {"application", "x-pkcs7-mime"},
        {"application", "pkcs7-signature"},
    };
    GMimeContentDisposition *cd;
    struct flt_track_part *p;
    int i, n, html;
    size_t k;
    char what[64];

    if (obj == NULL || cx->skip[0] != '\0')
        return;
    if (depth > FLT_TRACK_DEPTH_MAX) {
        flt_track_set_skip(cx, "nesting too deep");
        return;
    }
    for (k = 0; k < sizeof(sealed) / sizeof(sealed[0]); k++)
        if (mime_is_type(obj, sealed[k][0], sealed[k][1])) {
            snprintf(what, sizeof(what), "%s (%s/%s)",
                     k == 0   ? "signed"
                     : k == 1 ? "encrypted"
                              : "signed or encrypted",
                     sealed[k][0], sealed[k][1]);
            flt_track_set_skip(cx, what);
            return;
        }
    if (GMIME_IS_MULTIPART(obj)) {
        n = g_mime_multipart_get_count(GMIME_MULTIPART(obj));
        for (i = 0; i < n; i++)
            flt_track_walk(cx,
                           g_mime_multipart_get_part(GMIME_MULTIPART(obj), i),
                           depth + 1, 0);
        return;
    }
    if (!GMIME_IS_PART(obj))
        return; /* message/rfc822: a forwarded message stays as it was */
    cd = g_mime_object_get_content_disposition(obj);
    if (cd != NULL && g_mime_content_disposition_is_attachment(cd))
        return;
    html = mime_is_type(obj, "text", "html");
    if (!html && !(cx->text_links && mime_is_type(obj, "text", "plain")))
        return;
    if (cx->nparts >= FLT_TRACK_PARTS_MAX)
        return;
    p = &cx->parts[cx->nparts++];
    p->obj = obj;
    p->html = html;
    p->top = top;
}

/* flt_track_ascii_compat - 1 when charset (NULL or "": US-ASCII) writes
 * ASCII as ASCII and is stateless, so ASCII links can go in as they
 * are. */
static int
flt_track_ascii_compat(const char *charset)
{
    static const char *const stateful[] = {"iso-2022", "utf-7", "utf7", "hz"};
    static const char probe[] = "<a href=\"https://x/c/AZaz09-_\">";
    char outb[sizeof(probe) * 4], *ip = (char *)probe, *op = outb;
    size_t il = sizeof(probe) - 1, ol = sizeof(outb), k;
    const char *canon;
    iconv_t cd;
    int ok;

    if (charset == NULL || charset[0] == '\0')
        return 1;
    canon = g_mime_charset_canon_name(charset);
    if (canon == NULL)
        canon = charset;
    if (g_ascii_strcasecmp(canon, "utf-8") == 0 ||
        g_ascii_strcasecmp(canon, "us-ascii") == 0 ||
        g_ascii_strncasecmp(canon, "iso-8859-", 9) == 0)
        return 1;
    for (k = 0; k < sizeof(stateful) / sizeof(stateful[0]); k++)
        if (g_ascii_strncasecmp(canon, stateful[k], strlen(stateful[k])) == 0)
            return 0;
    /* ASCII written in the charset must be the same octets. */
    if ((cd = g_mime_iconv_open(charset, "US-ASCII")) == (iconv_t)-1)
        return 0;
    ok = iconv(cd, &ip, &il, &op, &ol) != (size_t)-1 && il == 0 &&
         (size_t)(op - outb) == sizeof(probe) - 1 &&
         memcmp(outb, probe, sizeof(probe) - 1) == 0;
    g_mime_iconv_close(cd);
    return ok;
}

static const char *
flt_track_eol_of(const char *s, size_t n, const char *def)
{
    const char *nl = memchr(s, '\n', n);

    if (nl == NULL)
        return def;
    return nl > s && nl[-1] == '\r' ? "\r\n" : "\n";
}

/* flt_track_code - GMime's encoder or decoder over in into out; when
 * encoding, each line end of the result becomes eol. */
static int
flt_track_code(GMimeContentEncoding enc, int encode, const char *in, size_t n,
               const char *eol, struct buf *out, struct err *e)
{
    GMimeEncoding state;
    struct buf tmp;
    const char *s, *nl;
    size_t len, k;
    int rc = 0;

    if (encode)
        g_mime_encoding_init_encode(&state, enc);
    else
        g_mime_encoding_init_decode(&state, enc);
    buf_init(&tmp, out->limit);
    if (buf_reserve(&tmp, g_mime_encoding_outlen(&state, n) + 8, e) < 0) {
        buf_fini(&tmp);
        return -1;
    }
    tmp.len = g_mime_encoding_flush(&state, in, n, tmp.data);
    tmp.data[tmp.len] = '\0';
    if (!encode)
        rc = buf_append(out, tmp.data, tmp.len, e);
    else {
        s = tmp.data;
        len = tmp.len;
        while (rc == 0 && len > 0 && (nl = memchr(s, '\n', len)) != NULL) {
            k = (size_t)(nl - s);
            if (k > 0 && s[k - 1] == '\r')
                k--;
            if (buf_append(out, s, k, e) < 0 || buf_puts(out, eol, e) < 0)
                rc = -1;
            len -= (size_t)(nl + 1 - s);
            s = nl + 1;
        }
        if (rc == 0)
            rc = buf_append(out, s, len, e);
    }
    buf_fini(&tmp);
    return rc;
}

/* flt_track_prepare - locate, check and decode part p. */
static int
flt_track_prepare(struct flt_track_mctx *cx, struct flt_track_part *p,
                  struct err *e)
{
    GMimeDataWrapper *w = g_mime_part_get_content(GMIME_PART(p->obj));
    GMimeStream *s = w != NULL ? g_mime_data_wrapper_get_stream(w) : NULL;
    GMimeContentType *ct = g_mime_object_get_content_type(p->obj);
    const char *cte_field, *raw;
    int r;

    if (s == NULL) {
        p->skip = "no content";
        return 0;
    }
    if ((r = mime_window_of(&cx->win, s, &p->cstart, &p->cend)) < 0) {
        if (r == -2)
            flt_track_set_skip(cx, "header end read two ways");
        else
            cx->broken = 1;
        return 0;
    }
    if (p->top &&
        (msg_header_name_count(cx->m, "Content-Type") > 1 ||
         msg_header_name_count(cx->m, "Content-Transfer-Encoding") > 1)) {
        p->skip = "Content-Type or Content-Transfer-Encoding given twice";
        return 0;
    }
    p->cte = g_mime_part_get_content_encoding(GMIME_PART(p->obj));
    cte_field = g_mime_object_get_header(p->obj, "Content-Transfer-Encoding");
    if (p->cte == GMIME_CONTENT_ENCODING_UUENCODE ||
        (p->cte == GMIME_CONTENT_ENCODING_DEFAULT && cte_field != NULL)) {
        p->skip = "unknown Content-Transfer-Encoding";
        return 0;
    }
    if (!flt_track_ascii_compat(
            ct != NULL ? g_mime_content_type_get_parameter(ct, "charset")
                       : NULL)) {
        p->skip = "a charset that does not write ASCII as ASCII";
        return 0;
    }
    raw = cx->win.body + p->cstart;
    p->raw_eol = flt_track_eol_of(raw, p->cend - p->cstart, cx->eol);
    if (p->cte == GMIME_CONTENT_ENCODING_BASE64 ||
        p->cte == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE) {
        if (flt_track_code(p->cte, 0, raw, p->cend - p->cstart, "\n", &p->dec,
                           e) < 0)
            return -1;
        p->d = p->dec.data != NULL ? p->dec.data : "";
        p->dlen = p->dec.len;
    } else {
        p->d = raw;
        p->dlen = p->cend - p->cstart;
    }
    return 0;
}

/* flt_track_longest - octets of the longest line of s. */
static size_t
flt_track_longest(const char *s, size_t n)
{
    size_t best = 0, cur = 0, i;

    for (i = 0; i < n; i++) {
        if (s[i] == '\n') {
            if (cur > 0 && s[i - 1] == '\r')
                cur--;
            if (cur > best)
                best = cur;
            cur = 0;
        } else {
            cur++;
        }
    }
    return cur > best ? cur : best;
}

/* flt_track_encode - p->out back into p's transfer encoding in p->enc;
 * p->skip when it cannot be written as it came. */
static int
flt_track_encode(struct flt_track_part *p, struct err *e)
{
    if (p->cte == GMIME_CONTENT_ENCODING_BASE64 ||
        p->cte == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE)
        return flt_track_code(p->cte, 1, p->out.data ? p->out.data : "",
                              p->out.len, p->raw_eol, &p->enc, e);
    if (p->cte != GMIME_CONTENT_ENCODING_BINARY &&
        flt_track_longest(p->out.data ? p->out.data : "", p->out.len) >
            FLT_TRACK_LINE_MAX) {
        p->skip = "a line over 998 octets once rewritten";
        return 0;
    }
    return buf_append(&p->enc, p->out.data ? p->out.data : "", p->out.len, e);
}

/* flt_track_keep_eol - when p's content ended at the start of a line
 * (the line a boundary delimiter takes), the new content must too: a
 * pixel added at the end of an empty part would otherwise run into the
 * next boundary and break the message's structure. */
static int
flt_track_keep_eol(const struct flt_track_mctx *cx, struct flt_track_part *p,
                   struct err *e)
{
    int line_start =
        p->cend > p->cstart
            ? cx->win.body[p->cend - 1] == '\n'
            : p->cstart == 0 || cx->win.body[p->cstart - 1] == '\n';

    if (!line_start || (p->enc.len > 0 && p->enc.data[p->enc.len - 1] == '\n'))
        return 0;
    return buf_puts(&p->enc, p->raw_eol, e);
}

static int
flt_track_apply(struct flt_track_tokens *tk, struct flt_track_mctx *cx,
                const char *stage, int *edited, unsigned *links, int *pixel,
                char *note, size_t nn, struct err *e)
{
    GMimeMessage *message;
    GMimeObject *top;
    struct splice sp[FLT_TRACK_PARTS_MAX];
    const struct mime *mm;
    struct buf body;
    size_t i, nsp = 0, used = 0, blen;
    unsigned total = 0, n;
    int pixel_done = 0, rc = -1;
    char *bdata;

    *edited = 0;
    *links = 0;
    *pixel = 0;
    note[0] = '\0';
    if ((mm = msg_mime(cx->m, e)) == NULL)
        return -1;
    if (mime_flags(mm) != 0) {
        char what[160];

        snprintf(note, nn, "ambiguous MIME: %s",
                 mime_flags_describe(mime_flags(mm), what, sizeof(what)));
        return 1;
    }
    message = mime_message(mm);
    top = g_mime_message_get_mime_part(message);
    flt_track_walk(cx, top, 0, 1);
    if (cx->skip[0] != '\0') {
        snprintf(note, nn, "%s", cx->skip);
        return 1;
    }
    for (i = 0; i < cx->nparts; i++)
        if (flt_track_prepare(cx, &cx->parts[i], e) < 0)
            return -1;
    if (cx->skip[0] == '\0' && cx->win.stream != NULL &&
        (!mime_header_agrees(&cx->win, GMIME_OBJECT(message)) ||
         !mime_header_agrees(&cx->win, top)))
        flt_track_set_skip(cx, "header end read two ways");
    if (cx->skip[0] != '\0') {
        snprintf(note, nn, "%s", cx->skip);
        return 1;
    }
    if (cx->broken)
        return err_set(e, ERR_INTERNAL,
                       "GMime's part offsets do not match the body");
    /* Count first: every click token carries the message's link count. */
    for (i = 0; i < cx->nparts; i++) {
        struct flt_track_part *p = &cx->parts[i];

        if (p->skip != NULL)
            continue;
        if ((p->html ? flt_track_html(tk, p->d, p->dlen, NULL, NULL, &n, e)
                     : flt_track_text(tk, p->d, p->dlen, NULL, &n, e)) < 0)
            return -1;
        total += n;
    }
    tk->links = total < FLT_TRACK_LINKS_MAX ? total : FLT_TRACK_LINKS_MAX;
    tk->next = 0;
    for (i = 0; i < cx->nparts; i++) {
        struct flt_track_part *p = &cx->parts[i];

        if (p->skip != NULL)
            continue;
        p->pixel = p->html && !pixel_done;
        /* Encoded parts are rewritten decoded, with LF line ends the
         * encoder writes as the part's own. */
        tk->eol = p->cte == GMIME_CONTENT_ENCODING_BASE64 ||
                          p->cte == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE
                      ? "\n"
                      : p->raw_eol;
        if ((p->html ? flt_track_html(tk, p->d, p->dlen, &p->pixel, &p->out,
                                      &p->links, e)
                     : flt_track_text(tk, p->d, p->dlen, &p->out, &p->links,
                                      e)) < 0)
            return -1;
        if (p->links == 0 && !p->pixel)
            continue;
        if (flt_track_encode(p, e) < 0 ||
            (p->skip == NULL && flt_track_keep_eol(cx, p, e) < 0))
            return -1;
        if (p->skip != NULL)
            continue;
        pixel_done |= p->pixel;
        *links += p->links;
        sp[nsp].start = p->cstart;
        sp[nsp].end = p->cend;
        sp[nsp].data = p->enc.data != NULL ? p->enc.data : "";
        sp[nsp].len = p->enc.len;
        nsp++;
    }
    *pixel = pixel_done;
    for (i = 0; i < cx->nparts; i++)
        if (cx->parts[i].skip != NULL && used < nn)
            used += (size_t)snprintf(
                note + used, nn - used, "%s%s: %s", used > 0 ? "; " : "",
                cx->parts[i].html ? "text/html" : "text/plain",
                cx->parts[i].skip);
    if (nsp == 0)
        return 0;
    buf_init(&body, cx->limit);
    {
        size_t want = cx->win.blen;

        for (i = 0; i < nsp; i++)
            want += sp[i].len;
        if (buf_reserve(&body, want, e) < 0)
            goto out;
    }
    if (splice_apply(cx->win.body, cx->win.blen, 0, sp, nsp, &body, e) < 0)
        goto out;
    blen = body.len;
    if ((bdata = buf_steal(&body, NULL)) == NULL) {
        rc = err_nomem(e);
        goto out;
    }
    if (msg_body_adopt(cx->m, stage, bdata, blen, e) < 0)
        goto out;
    *edited = 1;
    rc = 0;
out:
    buf_fini(&body);
    return rc;
}

int
flt_track_body(struct flt_track_tokens *tk, struct msg *m, const char *stage,
               int *edited, unsigned *links, int *pixel, char *note, size_t n,
               struct err *e)
{
    struct flt_track_mctx *cx;
    size_t i;
    int rc;

    if ((cx = calloc(1, sizeof(*cx))) == NULL)
        return err_nomem(e);
    cx->m = m;
    cx->win.body = msg_body(m, &cx->win.blen);
    cx->eol = msg_eol(m);
    cx->limit = msg_limits(m)->message_size;
    cx->win.base = SIZE_MAX;
    cx->text_links = tk->ft->text_links;
    for (i = 0; i < FLT_TRACK_PARTS_MAX; i++) {
        buf_init(&cx->parts[i].dec, cx->limit);
        buf_init(&cx->parts[i].out, cx->limit);
        buf_init(&cx->parts[i].enc, cx->limit);
    }
    rc = flt_track_apply(tk, cx, stage, edited, links, pixel, note, n, e);
    for (i = 0; i < FLT_TRACK_PARTS_MAX; i++) {
        buf_fini(&cx->parts[i].dec);
        buf_fini(&cx->parts[i].out);
        buf_fini(&cx->parts[i].enc);
    }
    free(cx);
    return rc;
}
