/*
 * downgrade - 8bit to 7bit re-encoding of a message body
 *
 * See downgrade.h for the call. How it works: the parts are found in the
 * shared GMime parse (msg_mime) and changed by splicing the serialized
 * message at GMime's offsets (splice.h), so every other octet stays as
 * it was. A leaf part whose content has an octet over 127 or a line over
 * 998 octets is decoded from what it declares and encoded again, text
 * and message types as quoted-printable, others as base64, with the
 * message's own line ends; its Content-Transfer-Encoding field is
 * replaced, or added before the empty line that ends its header. A part
 * (leaf, multipart or message/rfc822) labelled "8bit" or "binary" whose
 * content is now clean is labelled "7bit". The message's own header is
 * changed through msg_header_*() (and gains MIME-Version when a body
 * that gains an encoding lacks it), the body through one
 * msg_body_replace(); every change is computed before the first is made,
 * since an edit frees the parse the walk reads.
 *
 * Owns nothing past the call; every buffer is bounded by three times the
 * message size limit (quoted-printable can triple 8-bit text) plus 64 KiB.
 * Failures: a part whose offsets do not fit the bytes is ERR_INTERNAL, MIME
 * nesting deeper than 64 or more than four top-level encoding changes
 * ERR_INPUT, a buffer over its bound ERR_LIMIT; the message is then not
 * changed.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gmime/gmime.h>

#include "msg/downgrade.h"
#include "msg/mime.h"
#include "msg/splice.h"

#define DOWNGRADE_LINE_LIMIT 998 /* RFC 5322 line limit, without CRLF */
#define DOWNGRADE_DEPTH_MAX 64   /* MIME nesting the encoder walks */
#define DOWNGRADE_CTE "Content-Transfer-Encoding"

static int
downgrade_is_space(int c)
{
    return c == ' ' || c == '\t';
}

/* A change of a top-level header field, done through msg_header_*(). */
struct downgrade_top {
    size_t index; /* 1-based among Content-Transfer-Encoding fields; 0 add */
    const char *value;
};

struct downgrade {
    const char *data; /* the message as msg_write() gives it */
    size_t len;
    size_t body; /* where its body starts */
    const char *eol;
    size_t eol_len;
    size_t limit;      /* octets any new text may grow to */
    struct splice *sp; /* changes of the serialized message; each one's
                          data is malloc'ed and owned here */
    size_t nsp, capsp;
    struct downgrade_top top[4];
    size_t ntop;
    int add_mime_version;
    unsigned encoded, relabelled;
};

static void
downgrade_fini(struct downgrade *x)
{
    size_t i;

    for (i = 0; i < x->nsp; i++)
        free((char *)x->sp[i].data);
    free(x->sp);
}

/* downgrade_splice_add - record a change; takes text (malloc'ed). */
static int
downgrade_splice_add(struct downgrade *x, size_t start, size_t end, char *text,
                     size_t len, struct err *e)
{
    struct splice *grown;

    if (x->nsp == x->capsp) {
        size_t ncap = x->capsp ? 2 * x->capsp : 8;

        if ((grown = realloc(x->sp, ncap * sizeof(*grown))) == NULL) {
            free(text);
            return err_nomem(e);
        }
        x->sp = grown;
        x->capsp = ncap;
    }
    x->sp[x->nsp].start = start;
    x->sp[x->nsp].end = end;
    x->sp[x->nsp].data = text;
    x->sp[x->nsp].len = len;
    x->nsp++;
    return 0;
}

/* downgrade_field_end - the end of the header field starting at off: after
 * the line end of its last (folded) line. */
static size_t
downgrade_field_end(const struct downgrade *x, size_t off)
{
    const char *p;

    while (off < x->len) {
        p = memchr(x->data + off, '\n', x->len - off);
        if (p == NULL)
            return x->len;
        off = (size_t)(p - x->data) + 1;
        if (off >= x->len || !downgrade_is_space((unsigned char)x->data[off]))
            return off;
    }
    return x->len;
}

/* downgrade_field_text - "Content-Transfer-Encoding: value" and a line end,
 * malloc'ed. */
static char *
downgrade_field_text(const struct downgrade *x, const char *value, size_t *len)
{
    size_t n = strlen(DOWNGRADE_CTE) + 2 + strlen(value) + x->eol_len + 1;
    char *p = malloc(n);

    if (p == NULL)
        return NULL;
    *len = (size_t)snprintf(p, n, "%s: %s%s", DOWNGRADE_CTE, value, x->eol);
    return p;
}

/* downgrade_set_cte - give obj the encoding value: its existing
 * Content-Transfer-Encoding fields are replaced, or one is added before
 * the empty line that ends its header (content_start is where its content
 * begins; 0 for a multipart, where it is found from the header list). */
static int
downgrade_set_cte(struct downgrade *x, GMimeObject *obj, const char *value,
                  size_t content_start, struct err *e)
{
    GMimeHeaderList *list = g_mime_object_get_header_list(obj);
    int i, n = list ? g_mime_header_list_get_count(list) : 0;
    size_t top_index = 0, at, len;
    int found = 0;
    gint64 off;
    char *text;

    for (i = 0; i < n; i++) {
        GMimeHeader *h = g_mime_header_list_get_header_at(list, i);

        if (g_ascii_strcasecmp(g_mime_header_get_name(h), DOWNGRADE_CTE) != 0)
            continue;
        found = 1;
        off = g_mime_header_get_offset(h);
        if (off < 0 || (size_t)off >= x->len)
            return err_set(e, ERR_INTERNAL,
                           "no offset for a Content-Transfer-Encoding field");
        if ((size_t)off < x->body) {
            if (x->ntop == sizeof(x->top) / sizeof(x->top[0]))
                return err_set(e, ERR_INPUT,
                               "too many Content-Transfer-Encoding fields");
            x->top[x->ntop].index = ++top_index;
            x->top[x->ntop++].value = value;
            continue;
        }
        if ((text = downgrade_field_text(x, value, &len)) == NULL)
            return err_nomem(e);
        if (downgrade_splice_add(x, (size_t)off, downgrade_field_end(x, off),
                                 text, len, e) < 0)
            return -1;
    }
    if (found)
        return 0;
    if (content_start == 0 || content_start <= x->body) {
        /* The message's own header: add the field there. */
        if (x->ntop == sizeof(x->top) / sizeof(x->top[0]))
            return err_set(e, ERR_INPUT, "too many header changes");
        x->top[x->ntop].index = 0;
        x->top[x->ntop++].value = value;
        return 0;
    }
    /* Before the empty line that ends the part's header. */
    if (x->data[content_start - 1] != '\n')
        return err_set(e, ERR_INPUT,
                       "MIME part without an empty line after "
                       "its header");
    at = content_start - 1;
    if (at > 0 && x->data[at - 1] == '\r')
        at--;
    if ((text = downgrade_field_text(x, value, &len)) == NULL)
        return err_nomem(e);
    return downgrade_splice_add(x, at, at, text, len, e);
}

/* downgrade_declared - the encoding obj's Content-Transfer-Encoding says. */
static GMimeContentEncoding
downgrade_declared(GMimeObject *obj)
{
    const char *v = g_mime_object_get_header(obj, DOWNGRADE_CTE);

    return v != NULL ? g_mime_content_encoding_from_string(v)
                     : GMIME_CONTENT_ENCODING_DEFAULT;
}

static int
downgrade_is_8bit_label(GMimeContentEncoding enc)
{
    return enc == GMIME_CONTENT_ENCODING_8BIT ||
           enc == GMIME_CONTENT_ENCODING_BINARY;
}

/* downgrade_scan - whether [s, e) of the data has an octet over 127 and a
 * line over 998 octets (line end not counted). */
static void
downgrade_scan(const char *p, size_t n, int *eight, int *longline)
{
    size_t i, run = 0;

    *eight = *longline = 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];

        if (c >= 0x80)
            *eight = 1;
        if (c == '\n') {
            if (run > (size_t)DOWNGRADE_LINE_LIMIT +
                          (size_t)(i > 0 && p[i - 1] == '\r'))
                *longline = 1;
            run = 0;
        } else {
            run++;
        }
    }
    if (run > DOWNGRADE_LINE_LIMIT)
        *longline = 1;
}

/* downgrade_code - append data run through one GMime encoder or decoder
 * to out. */
static int
downgrade_code(GMimeEncoding *state, const char *in, size_t n, struct buf *out,
               struct err *e)
{
    if (buf_reserve(out, g_mime_encoding_outlen(state, n) + 16, e) < 0)
        return -1;
    out->len += g_mime_encoding_flush(state, in, n, out->data + out->len);
    out->data[out->len] = '\0';
    return 0;
}

/* downgrade_lines - append in to out with its line ends converted: to_crlf
 * makes every LF a CRLF (CRLF stays); otherwise CRLF becomes LF. */
int
downgrade_lines(const char *in, size_t n, int to_crlf, struct buf *out,
                struct err *e)
{
    size_t i, start = 0;

    for (i = 0; i < n; i++) {
        if (in[i] != '\n')
            continue;
        if (to_crlf && (i == 0 || in[i - 1] != '\r')) {
            if (buf_append(out, in + start, i - start, e) < 0 ||
                buf_append(out, "\r\n", 2, e) < 0)
                return -1;
            start = i + 1;
        } else if (!to_crlf && i > 0 && in[i - 1] == '\r') {
            if (buf_append(out, in + start, i - 1 - start, e) < 0 ||
                buf_putc(out, '\n', e) < 0)
                return -1;
            start = i + 1;
        }
    }
    return buf_append(out, in + start, n - start, e);
}

/* downgrade_reencode - append to out the new content of a leaf part: its
 * data decoded from what it declares and encoded as quoted-printable (qp)
 * or base64, with the message's line ends. at_end: the content runs to
 * the end of the message, with no boundary after it. */
static int
downgrade_reencode(const struct downgrade *x, const char *in, size_t n,
                   GMimeContentEncoding from, int qp, int at_end,
                   struct buf *out, struct err *e)
{
    struct buf a, b;
    GMimeEncoding state;
    int coded = from == GMIME_CONTENT_ENCODING_BASE64 ||
                from == GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE ||
                from == GMIME_CONTENT_ENCODING_UUENCODE;
    int rc = -1;

    buf_init(&a, x->limit);
    buf_init(&b, x->limit);
    /* 1. the octets the part stands for */
    if (coded) {
        g_mime_encoding_init_decode(&state, from);
        if (downgrade_code(&state, in, n, &a, e) < 0)
            goto out;
        in = a.data != NULL ? a.data : "";
        n = a.len;
    }
    /* 2. text is encoded with LF line ends, which GMime's QP encoder takes
     * for line breaks; the lines of 8-bit data are CRLF on the wire; other
     * data keeps its octets. */
    if (qp || (!coded && from != GMIME_CONTENT_ENCODING_BINARY)) {
        if (downgrade_lines(in, n, !qp, &b, e) < 0)
            goto out;
    } else if (buf_append(&b, in, n, e) < 0) {
        goto out;
    }
    buf_reset(&a);
    g_mime_encoding_init_encode(&state,
                                qp ? GMIME_CONTENT_ENCODING_QUOTEDPRINTABLE
                                   : GMIME_CONTENT_ENCODING_BASE64);
    if (downgrade_code(&state, b.data != NULL ? b.data : "", b.len, &a, e) < 0)
        goto out;
    /* The line end before the next boundary belongs to the boundary. */
    if (!qp && !at_end && a.len > 0 && a.data[a.len - 1] == '\n')
        a.len--;
    /* 3. the message's line ends */
    rc = downgrade_lines(a.data != NULL ? a.data : "", a.len, x->eol_len == 2,
                         out, e);
out:
    buf_fini(&a);
    buf_fini(&b);
    return rc;
}

static int
downgrade_leaf(struct downgrade *x, GMimePart *part, struct err *e)
{
    GMimeObject *obj = GMIME_OBJECT(part);
    GMimeDataWrapper *w = g_mime_part_get_content(part);
    GMimeStream *s = w != NULL ? g_mime_data_wrapper_get_stream(w) : NULL;
    GMimeContentType *ct = g_mime_object_get_content_type(obj);
    GMimeContentEncoding from = downgrade_declared(obj);
    size_t cs, ce, len;
    int eight, longline, qp;
    struct buf out;
    char *text;

    if (s == NULL)
        return 0;
    cs = s->bound_start < 0 ? 0 : (size_t)s->bound_start;
    ce = s->bound_end < 0 ? x->len : (size_t)s->bound_end;
    if (cs < x->body || ce > x->len || cs > ce)
        return err_set(e, ERR_INTERNAL, "MIME part content out of bounds");
    downgrade_scan(x->data + cs, ce - cs, &eight, &longline);
    if (!eight && !longline) {
        if (!downgrade_is_8bit_label(from))
            return 0;
        x->relabelled++;
        return downgrade_set_cte(x, obj, "7bit", cs, e);
    }
    qp = ct == NULL || g_mime_content_type_is_type(ct, "text", "*") ||
         g_mime_content_type_is_type(ct, "message", "*");
    buf_init(&out, x->limit);
    if (downgrade_reencode(x, x->data + cs, ce - cs, from, qp, ce == x->len,
                           &out, e) < 0 ||
        (text = buf_steal(&out, &len)) == NULL) {
        if (e->code == ERR_NONE)
            err_nomem(e);
        buf_fini(&out);
        return -1;
    }
    buf_fini(&out);
    if (downgrade_set_cte(x, obj, qp ? "quoted-printable" : "base64", cs, e) <
        0) {
        free(text);
        return -1;
    }
    x->encoded++;
    return downgrade_splice_add(x, cs, ce, text, len, e);
}

static int
downgrade_walk(struct downgrade *x, GMimeObject *obj, int depth, struct err *e)
{
    GMimeMessage *inner;
    int i, n;

    if (obj == NULL)
        return 0;
    if (depth > DOWNGRADE_DEPTH_MAX)
        return err_set(e, ERR_INPUT, "MIME nesting deeper than %d",
                       DOWNGRADE_DEPTH_MAX);
    if (GMIME_IS_MULTIPART(obj) || GMIME_IS_MESSAGE_PART(obj)) {
        if (downgrade_is_8bit_label(downgrade_declared(obj))) {
            x->relabelled++;
            if (downgrade_set_cte(x, obj, "7bit", 0, e) < 0)
                return -1;
        }
    }
    if (GMIME_IS_MULTIPART(obj)) {
        n = g_mime_multipart_get_count(GMIME_MULTIPART(obj));
        for (i = 0; i < n; i++)
            if (downgrade_walk(
                    x, g_mime_multipart_get_part(GMIME_MULTIPART(obj), i),
                    depth + 1, e) < 0)
                return -1;
        return 0;
    }
    if (GMIME_IS_MESSAGE_PART(obj)) {
        inner = g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
        return inner == NULL
                   ? 0
                   : downgrade_walk(x, g_mime_message_get_mime_part(inner),
                                    depth + 1, e);
    }
    if (GMIME_IS_PART(obj))
        return downgrade_leaf(x, GMIME_PART(obj), e);
    return 0;
}

/* downgrade_new_body - append the body with every splice applied. */
static int
downgrade_new_body(struct downgrade *x, struct buf *out, struct err *e)
{
    if (splice_check(x->len, x->body, x->sp, x->nsp, e) < 0)
        return err_set(e, ERR_INTERNAL, "overlapping MIME changes");
    return splice_apply(x->data, x->len, x->body, x->sp, x->nsp, out, e);
}

/* downgrade_body - make the body of m 7-bit and its lines short where a
 * MIME re-encoding can; data/len is msg_write()'s output of m. */
int
downgrade_body(struct msg *m, const char *who, const char *data, size_t len,
               unsigned *encoded, unsigned *relabelled, struct err *e)
{
    const struct msg_limits *lim = msg_limits(m);
    const struct mime *mm;
    struct downgrade x;
    struct buf body;
    size_t blen, i;
    int rc = -1;

    memset(&x, 0, sizeof(x));
    msg_body(m, &blen);
    x.data = data;
    x.len = len;
    x.body = len - blen;
    x.eol = msg_eol(m);
    x.eol_len = strlen(x.eol);
    /* Quoted-printable can triple 8-bit text. */
    x.limit = lim->message_size != 0 && lim->message_size < SIZE_MAX / 4
                  ? 3 * lim->message_size + 65536
                  : 0;
    if ((mm = msg_mime(m, e)) == NULL)
        return -1;
    if (downgrade_walk(&x, g_mime_message_get_mime_part(mime_message(mm)), 0,
                       e) < 0)
        goto out;
    *encoded = x.encoded;
    *relabelled = x.relabelled;
    if (x.nsp == 0 && x.ntop == 0) {
        rc = 0;
        goto out;
    }
    /* A body that gains an encoding needs MIME-Version to be read. */
    for (i = 0; i < x.ntop; i++)
        if (x.top[i].index == 0 &&
            msg_header_name_count(m, "MIME-Version") == 0)
            x.add_mime_version = 1;
    /* All changes are computed before the first is made: the edits below
     * free the parse that the walk used. */
    if (x.nsp > 0) {
        buf_init(&body, x.limit);
        if (downgrade_new_body(&x, &body, e) < 0) {
            buf_fini(&body);
            goto out;
        }
        rc = msg_body_replace(m, who, body.data ? body.data : "", body.len, e);
        buf_fini(&body);
        if (rc < 0)
            goto out;
        rc = -1;
    }
    for (i = 0; i < x.ntop; i++) {
        if (x.top[i].index == 0) {
            if (msg_header_add(m, who, DOWNGRADE_CTE, x.top[i].value, e) < 0)
                goto out;
        } else if (msg_header_change(m, who, DOWNGRADE_CTE, x.top[i].index,
                                     x.top[i].value, e) < 0) {
            goto out;
        }
    }
    if (x.add_mime_version &&
        msg_header_add(m, who, "MIME-Version", "1.0", e) < 0)
        goto out;
    rc = 0;
out:
    downgrade_fini(&x);
    return rc;
}
