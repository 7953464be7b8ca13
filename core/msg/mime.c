/*
 * mime - the one shared GMime parse of a message, with ambiguity flags
 *
 * mime_parse() gives GMime one copy of the message in a memory stream; the
 * parts it builds refer into that stream rather than copying again.
 * mime_parse_shared() gives GMime the caller's octets without a copy: a
 * GByteArray made around them (g_byte_array_new_take) in a memory stream
 * that does not own it, so neither GMime nor GLib ever frees or changes
 * them, and mime_free() frees only the array's own struct, after the
 * message and with it every stream that reads the octets. The
 * flags come from two places:
 *
 * - GMime's parser warnings, through a callback on per-parse options:
 *   a conflicting Content-Type is left to the walk below, which does not
 *   count a difference in white space; another conflicting Content-* or
 *   MIME-Version field is MALFORMED (decoders would differ as much);
 *   conflicting fields outside MIME (two different Subject lines) are
 *   not a MIME ambiguity and are left to other stages. Any
 *   parameter given twice with different values is DUP_PARAM (a second
 *   filename is the classic way past a scanner); boundary or charset
 *   repeated with the same value is DUP_PARAM too, since receivers
 *   differ on whether a repeated parameter counts at all. A multipart
 *   without boundary is NO_BOUNDARY, nesting over GMime's own cap is
 *   TOO_DEEP, an invalid field name or a part with neither header nor
 *   content is MALFORMED.
 *
 * - A walk of the finished tree, for what GMime accepts silently: a
 *   boundary used by two multiparts (nested or not) is DUP_BOUNDARY; two
 *   Content-Type fields with different values (white space aside) in any
 *   part are CONFLICTING_TYPE; nesting of multiparts and
 *   message/rfc822 parts over mime_depth (TOO_DEEP); more entities than
 *   mime_parts (TOO_MANY_PARTS), where every multipart, message part and
 *   leaf counts once. MISSING_END comes from GMime's record of whether
 *   it met each multipart's close delimiter, and from the raw text:
 *   taking the multiparts in document order, each one's first delimiter
 *   line is looked for after the previous one's, and its close delimiter
 *   ("--boundary--", then only white space on the line) after that. When
 *   GMime reported a multipart without boundary it made one up; a
 *   boundary that occurs nowhere in the text is then taken to be that
 *   one and not reported as missing its end.
 *
 * A message GMime cannot read at all (an empty one, or one whose first
 * line is not a field) is parsed again with an empty line in front, so
 * it is all body, as msg_parse() sees it; the first attempt's warnings
 * still count. Limits of 0 mean none.
 *
 * No state outside the struct mime: each parse has its own options and
 * callback data, so threads may parse at once after mime_init(). GLib
 * aborts the process when memory runs out; nothing here can change that.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <gmime/gmime.h>

#include "util/err.h"
#include "msg/mime.h"
#include "msg/msg.h"

/* Deeper than GMime's own nesting cap; a guard for the recursive walk. */
#define MIME_WALK_MAX 4096

struct mime {
    GMimeMessage *message;
    GByteArray *shared; /* around the caller's octets; not theirs */
    unsigned flags;
    unsigned depth;
    unsigned parts;
};

/* The state of one parse and walk. */
struct mime_walk {
    const char *data; /* the message as given, for MISSING_END */
    size_t len;
    unsigned flags;
    unsigned depth;
    unsigned parts;
    size_t cursor;    /* after the previous multipart's first delimiter */
    GHashTable *seen; /* boundaries met so far */
};

void
mime_init(void)
{
    g_mime_init();
}

void
mime_shutdown(void)
{
    g_mime_shutdown();
}

static int
mime_is_boundary_or_charset(const char *name)
{
    return name != NULL && (g_ascii_strcasecmp(name, "boundary") == 0 ||
                            g_ascii_strcasecmp(name, "charset") == 0);
}

static void
mime_warning(gint64 offset, GMimeParserWarning code, const gchar *item,
             gpointer data)
{
    struct mime_walk *w = data;

    (void)offset;
    switch (code) {
    case GMIME_CRIT_CONFLICTING_HEADER:
        /* Content-Type is judged by the walk, which does not count
         * a difference in white space as a conflict. */
        if (item == NULL)
            w->flags |= MIME_AMBIG_MALFORMED;
        else if (g_ascii_strcasecmp(item, "Content-Type") == 0)
            break;
        else if (g_ascii_strncasecmp(item, "Content-", 8) == 0 ||
                 g_ascii_strcasecmp(item, "MIME-Version") == 0)
            w->flags |= MIME_AMBIG_MALFORMED;
        break;
    case GMIME_CRIT_CONFLICTING_PARAMETER:
        w->flags |= MIME_AMBIG_DUP_PARAM;
        break;
    case GMIME_WARN_DUPLICATED_PARAMETER:
        if (mime_is_boundary_or_charset(item))
            w->flags |= MIME_AMBIG_DUP_PARAM;
        break;
    case GMIME_CRIT_MULTIPART_WITHOUT_BOUNDARY:
        w->flags |= MIME_AMBIG_NO_BOUNDARY;
        break;
    case GMIME_CRIT_NESTING_OVERFLOW:
        w->flags |= MIME_AMBIG_TOO_DEEP;
        break;
    case GMIME_CRIT_INVALID_HEADER_NAME:
    case GMIME_CRIT_PART_WITHOUT_HEADERS_OR_CONTENT:
        w->flags |= MIME_AMBIG_MALFORMED;
        break;
    default:
        /* Warnings that leave one reading, such as 8-bit headers. */
        break;
    }
}

/* mime_next_sig - the next octet of v that counts when comparing two
 * field values: white space (folding included) outside quoted strings
 * does not. *state is 0 outside quotes, 1 inside, 2 after a backslash
 * inside; returns NUL at the end. */
static char
mime_next_sig(const char **v, int *state)
{
    const char *p = *v;
    char c;

    while (*state == 0 && g_ascii_isspace(*p))
        p++;
    if ((c = *p) == '\0') {
        *v = p;
        return c;
    }
    *v = p + 1;
    if (*state == 2)
        *state = 1;
    else if (c == '"')
        *state = !*state;
    else if (c == '\\' && *state == 1)
        *state = 2;
    return c;
}

/* mime_same_value - the two values are the same but for white space
 * outside quoted strings. */
static int
mime_same_value(const char *a, const char *b)
{
    int qa = 0, qb = 0;
    char ca, cb;

    do {
        ca = mime_next_sig(&a, &qa);
        cb = mime_next_sig(&b, &qb);
        if (ca != cb)
            return 0;
    } while (ca != '\0');
    return 1;
}

/* mime_check_fields - Content-Type given twice with different values in
 * obj's own header. */
static void
mime_check_fields(struct mime_walk *w, GMimeObject *obj)
{
    GMimeHeaderList *list = g_mime_object_get_header_list(obj);
    const char *first = NULL;
    int i, n;

    if (list == NULL)
        return;
    n = g_mime_header_list_get_count(list);
    for (i = 0; i < n; i++) {
        GMimeHeader *h = g_mime_header_list_get_header_at(list, i);
        const char *name = g_mime_header_get_name(h), *v;

        if (name == NULL || g_ascii_strcasecmp(name, "Content-Type") != 0)
            continue;
        if ((v = g_mime_header_get_raw_value(h)) == NULL &&
            (v = g_mime_header_get_value(h)) == NULL)
            continue;
        if (first == NULL)
            first = v;
        else if (!mime_same_value(first, v))
            w->flags |= MIME_AMBIG_CONFLICTING_TYPE;
    }
}

/* mime_delim - find the next delimiter line of boundary b (blen octets) at
 * or after from: "--" b, optionally "--", then only white space to the
 * line end. With want_close set only a close delimiter counts. Returns the
 * offset after the line (or the data), or 0 when there is none. */
static size_t
mime_delim(const struct mime_walk *w, size_t from, const char *b, size_t blen,
           int want_close, int *is_close)
{
    const char *base = w->data, *end = w->data + w->len, *p;

    p = base + from;
    while (p < end && (p = memmem(p, (size_t)(end - p), b, blen)) != NULL) {
        const char *q = p + blen;
        int c = 0;

        if (p - base < 2 || p[-1] != '-' || p[-2] != '-' ||
            (p - base > 2 && p[-3] != '\n')) {
            p++;
            continue;
        }
        if (end - q >= 2 && q[0] == '-' && q[1] == '-') {
            c = 1;
            q += 2;
        }
        while (q < end && (*q == ' ' || *q == '\t' || *q == '\r'))
            q++;
        if (q < end && *q != '\n') {
            p++;
            continue;
        }
        if (want_close && !c) {
            p = q;
            continue;
        }
        *is_close = c;
        return q < end ? (size_t)(q + 1 - base) : w->len;
    }
    return 0;
}

/* mime_check_end - MISSING_END for the multipart with boundary b. */
static void
mime_check_end(struct mime_walk *w, const char *b)
{
    size_t blen = strlen(b), at;
    int is_close = 0;

    if (w->flags & MIME_AMBIG_MISSING_END)
        return;
    if ((at = mime_delim(w, w->cursor, b, blen, 0, &is_close)) == 0) {
        if ((w->flags & MIME_AMBIG_NO_BOUNDARY) &&
            memmem(w->data, w->len, b, blen) == NULL)
            return;
        w->flags |= MIME_AMBIG_MISSING_END;
        return;
    }
    w->cursor = at;
    if (!is_close && mime_delim(w, at, b, blen, 1, &is_close) == 0)
        w->flags |= MIME_AMBIG_MISSING_END;
}

static void
mime_walk_object(struct mime_walk *w, GMimeObject *obj, unsigned level)
{
    if (obj == NULL)
        return;
    if (w->parts < G_MAXUINT)
        w->parts++;
    mime_check_fields(w, obj);
    if (!GMIME_IS_MULTIPART(obj) && !GMIME_IS_MESSAGE_PART(obj))
        return;

    if (++level > w->depth)
        w->depth = level;
    if (level > MIME_WALK_MAX) {
        w->flags |= MIME_AMBIG_TOO_DEEP;
        return;
    }
    if (GMIME_IS_MULTIPART(obj)) {
        GMimeMultipart *mp = GMIME_MULTIPART(obj);
        const char *b = g_mime_multipart_get_boundary(mp);
        int i, n;

        if (b == NULL || *b == '\0') {
            w->flags |= MIME_AMBIG_NO_BOUNDARY;
        } else {
            if (g_hash_table_contains(w->seen, b))
                w->flags |= MIME_AMBIG_DUP_BOUNDARY;
            else
                g_hash_table_add(w->seen, (gpointer)b);
            mime_check_end(w, b);
        }
        /* GMime's own record of whether it met the close delimiter. The
         * field is marked private but is part of the public struct (and
         * ABI) of GMime 3; the text search above stays as the check that
         * does not depend on it. */
        if (!mp->write_end_boundary)
            w->flags |= MIME_AMBIG_MISSING_END;
        n = g_mime_multipart_get_count(mp);
        for (i = 0; i < n; i++)
            mime_walk_object(w, g_mime_multipart_get_part(mp, i), level);
    } else {
        GMimeMessage *inner =
            g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));

        if (inner != NULL) {
            mime_check_fields(w, GMIME_OBJECT(inner));
            mime_walk_object(w, g_mime_message_get_mime_part(inner), level);
        }
    }
}

/* mime_construct - one attempt: GMime copies prefix and data into the
 * stream its parts then refer to, or with shared (and no prefix) reads
 * data where it is; *shared is then the array around it, which the
 * caller frees with g_byte_array_free(..., FALSE) once the message is
 * gone. */
static GMimeMessage *
mime_construct(const char *prefix, const char *data, size_t len,
               GMimeParserOptions *opts, GByteArray **shared)
{
    GMimeStream *stream;
    GMimeParser *parser;
    GMimeMessage *message;

    if (prefix == NULL && shared != NULL) {
        *shared = g_byte_array_new_take((guint8 *)data, len);
        stream = g_mime_stream_mem_new_with_byte_array(*shared);
        g_mime_stream_mem_set_owner(GMIME_STREAM_MEM(stream), FALSE);
    } else if (prefix == NULL) {
        stream = g_mime_stream_mem_new_with_buffer(data, len);
    } else {
        GByteArray *a = g_byte_array_sized_new((guint)(len + 2));

        g_byte_array_append(a, (const guint8 *)prefix, (guint)strlen(prefix));
        g_byte_array_append(a, (const guint8 *)data, (guint)len);
        stream = g_mime_stream_mem_new_with_byte_array(a);
    }
    parser = g_mime_parser_new_with_stream(stream);
    g_mime_parser_set_format(parser, GMIME_FORMAT_MESSAGE);
    message = g_mime_parser_construct_message(parser, opts);
    g_object_unref(parser);
    g_object_unref(stream);
    return message;
}

/* mime_parse_any - mime_parse, or with share mime_parse_shared. */
static struct mime *
mime_parse_any(const char *data, size_t len, const struct msg_limits *limits,
               int share, struct err *e)
{
    struct mime_walk w;
    struct mime *mm;
    GMimeParserOptions *opts;
    GMimeMessage *message;
    GByteArray *shared = NULL;

    if (len > G_MAXUINT - 2) {
        err_set(e, ERR_LIMIT, "message of %zu octets is too large to parse",
                len);
        return NULL;
    }
    if ((mm = calloc(1, sizeof(*mm))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    memset(&w, 0, sizeof(w));
    w.data = data != NULL ? data : "";
    w.len = data != NULL ? len : 0;

    opts = g_mime_parser_options_new();
    g_mime_parser_options_set_warning_callback(opts, mime_warning, &w);
    message = mime_construct(NULL, w.data, w.len, opts,
                             share && data != NULL ? &shared : NULL);
    if (message == NULL) {
        const char *nl = memchr(w.data, '\n', w.len);

        if (shared != NULL)
            (void)g_byte_array_free(shared, FALSE);
        shared = NULL;
        message = mime_construct(
            nl != NULL && nl > w.data && nl[-1] == '\r' ? "\r\n" : "\n",
            w.data, w.len, opts, NULL);
    }
    g_mime_parser_options_free(opts);
    if (message == NULL) {
        free(mm);
        err_set(e, ERR_LIB, "GMime could not parse the message");
        return NULL;
    }

    w.seen = g_hash_table_new(g_str_hash, g_str_equal);
    mime_check_fields(&w, GMIME_OBJECT(message));
    mime_walk_object(&w, g_mime_message_get_mime_part(message), 0);
    g_hash_table_destroy(w.seen);

    if (limits != NULL && limits->mime_depth != 0 &&
        w.depth > limits->mime_depth)
        w.flags |= MIME_AMBIG_TOO_DEEP;
    if (limits != NULL && limits->mime_parts != 0 &&
        w.parts > limits->mime_parts)
        w.flags |= MIME_AMBIG_TOO_MANY_PARTS;

    mm->message = message;
    mm->shared = shared;
    mm->flags = w.flags;
    mm->depth = w.depth;
    mm->parts = w.parts;
    return mm;
}

struct mime *
mime_parse(const char *data, size_t len, const struct msg_limits *limits,
           struct err *e)
{
    return mime_parse_any(data, len, limits, 0, e);
}

struct mime *
mime_parse_shared(const char *data, size_t len,
                  const struct msg_limits *limits, struct err *e)
{
    return mime_parse_any(data, len, limits, 1, e);
}

void
mime_free(struct mime *mm)
{
    if (mm == NULL)
        return;
    if (mm->message != NULL)
        g_object_unref(mm->message);
    /* The octets are the caller's: free only the array's struct. */
    if (mm->shared != NULL)
        (void)g_byte_array_free(mm->shared, FALSE);
    free(mm);
}

GMimeMessage *
mime_message(const struct mime *mm)
{
    return mm->message;
}

unsigned
mime_flags(const struct mime *mm)
{
    return mm->flags;
}

unsigned
mime_depth(const struct mime *mm)
{
    return mm->depth;
}

unsigned
mime_part_count(const struct mime *mm)
{
    return mm->parts;
}

const char *
mime_flags_describe(unsigned flags, char *out, size_t n)
{
    static const struct {
        unsigned flag;
        const char *text;
    } names[] = {
        {MIME_AMBIG_DUP_BOUNDARY, "duplicate boundary"},
        {MIME_AMBIG_CONFLICTING_TYPE, "conflicting Content-Type"},
        {MIME_AMBIG_DUP_PARAM, "duplicate parameter"},
        {MIME_AMBIG_MISSING_END, "missing end boundary"},
        {MIME_AMBIG_NO_BOUNDARY, "multipart without boundary"},
        {MIME_AMBIG_TOO_DEEP, "nesting too deep"},
        {MIME_AMBIG_TOO_MANY_PARTS, "too many parts"},
        {MIME_AMBIG_MALFORMED, "malformed MIME"},
    };
    size_t i, used = 0;
    unsigned known = 0;

    if (n == 0)
        return out;
    out[0] = '\0';
    if (flags == 0) {
        snprintf(out, n, "none");
        return out;
    }
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        known |= names[i].flag;
        if (!(flags & names[i].flag))
            continue;
        if (used < n)
            used += (size_t)snprintf(out + used, n - used, "%s%s",
                                     used > 0 ? ", " : "", names[i].text);
    }
    if ((flags & ~known) != 0 && used < n)
        snprintf(out + used, n - used, "%sunknown flags 0x%x",
                 used > 0 ? ", " : "", flags & ~known);
    return out;
}

int
mime_is_type(GMimeObject *obj, const char *type, const char *subtype)
{
    GMimeContentType *ct = g_mime_object_get_content_type(obj);

    return ct != NULL && g_mime_content_type_is_type(ct, type, subtype);
}

int
mime_window_of(struct mime_window *w, GMimeStream *s, size_t *start,
               size_t *end)
{
    GByteArray *a;
    gint64 bend;

    if (s == NULL || s->super_stream == NULL ||
        !GMIME_IS_STREAM_MEM(s->super_stream))
        return -1;
    if (w->stream == NULL) {
        a = g_mime_stream_mem_get_byte_array(
            GMIME_STREAM_MEM(s->super_stream));
        if (a == NULL || a->len < w->blen ||
            memcmp(a->data + a->len - w->blen, w->body, w->blen) != 0)
            return -1;
        w->stream = s->super_stream;
        w->base = a->len - w->blen;
    }
    if (s->super_stream != w->stream)
        return -1;
    bend = s->bound_end < 0 ? (gint64)(w->base + w->blen) : s->bound_end;
    if (s->bound_start < (gint64)w->base)
        return -2;
    if (bend < s->bound_start || bend > (gint64)(w->base + w->blen))
        return -1;
    *start = (size_t)s->bound_start - w->base;
    *end = (size_t)bend - w->base;
    return 0;
}

int
mime_header_agrees(const struct mime_window *w, GMimeObject *obj)
{
    GMimeHeaderList *hl = g_mime_object_get_header_list(obj);
    int i, n = hl != NULL ? g_mime_header_list_get_count(hl) : 0;

    for (i = 0; i < n; i++)
        if (g_mime_header_get_offset(
                g_mime_header_list_get_header_at(hl, i)) >= (gint64)w->base)
            return 0;
    return 1;
}
