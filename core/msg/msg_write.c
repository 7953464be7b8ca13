/*
 * msg_write - the message written out: octets, pieces, flat copy, MIME
 *
 * The representation is in msg.c. msg_write() and msg_write_file() write
 * the message, edited or not, through one walk (msg_emit) over a sink;
 * msg_size() counts what they write. msg_iov() gives the message as
 * pieces without a copy: runs of raw for what did not change, joined
 * where they touch. msg_flat() gives the message as one block: its raw
 * octets while it is unedited, else a copy it keeps until the next edit
 * or rollback; msg_mime() parses that block once, with GMime, and the
 * parse reads the octets where they are. Errors are the buffer's
 * (its limit, memory), the file's (ERR_IO) or GMime's; nothing here
 * logs.
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/uio.h>

#include "util/buf.h"
#include "util/err.h"
#include "msg/mime.h"
#include "msg/msg_int.h"

/* msg_sink - where msg_emit() sends the serialized message. */
typedef int (*msg_sink)(void *ctx, const void *p, size_t len, struct err *e);

/* --------------------------------------------------------------- output */

/* msg_sep - the empty line written between header and body. */
static unsigned char
msg_sep(const struct msg *m)
{
    if (m->sep != MSG_EOL_NONE)
        return m->sep;
    return m->edited && m->body_len > 0 ? m->eol : MSG_EOL_NONE;
}

/* msg_hdr_eol - the line end written after field i. */
static unsigned char
msg_hdr_eol(const struct msg *m, size_t i)
{
    if (m->hdrs[i].eol != MSG_EOL_NONE)
        return m->hdrs[i].eol;
    if (i + 1 < m->nhdrs || msg_sep(m) != MSG_EOL_NONE || m->body_len > 0)
        return m->eol;
    return MSG_EOL_NONE;
}

size_t
msg_size(const struct msg *m)
{
    size_t i, n = 0;

    for (i = 0; i < m->nhdrs; i++)
        n += m->hdrs[i].name_len + 1 + m->hdrs[i].value_len +
             msg_eol_len[msg_hdr_eol(m, i)];
    return n + msg_eol_len[msg_sep(m)] + m->body_len;
}

static int
msg_emit(const struct msg *m, msg_sink put, void *ctx, struct err *e)
{
    size_t i;
    unsigned char le;

    for (i = 0; i < m->nhdrs; i++) {
        const struct msg_hdr *h = &m->hdrs[i];

        le = msg_hdr_eol(m, i);
        if (put(ctx, h->name, h->name_len, e) < 0 || put(ctx, ":", 1, e) < 0 ||
            put(ctx, h->value, h->value_len, e) < 0 ||
            put(ctx, msg_eol_str[le], msg_eol_len[le], e) < 0)
            return -1;
    }
    le = msg_sep(m);
    if (put(ctx, msg_eol_str[le], msg_eol_len[le], e) < 0)
        return -1;
    return put(ctx, m->body, m->body_len, e);
}

static int
msg_put_buf(void *ctx, const void *p, size_t len, struct err *e)
{
    /* Even an empty append keeps the buffer NUL-terminated. */
    return buf_append(ctx, p, len, e);
}

int
msg_write(const struct msg *m, struct buf *out, struct err *e)
{
    /* Reserving first makes the limit check all or nothing. */
    if (buf_reserve(out, msg_size(m), e) < 0)
        return -1;
    return msg_emit(m, msg_put_buf, out, e);
}

static int
msg_put_file(void *ctx, const void *p, size_t len, struct err *e)
{
    if (len > 0 && fwrite(p, 1, len, ctx) != len)
        return err_sys(e, ERR_IO, "write message");
    return 0;
}

int
msg_write_file(const struct msg *m, FILE *fp, struct err *e)
{
    return msg_emit(m, msg_put_file, fp, e);
}

/* The pieces msg_iov() is filling. */
struct msg_pieces {
    struct iovec *v;
    size_t n, got;
};

/* msg_piece - add p, len; it extends the previous piece when it follows
 * it in memory. */
static void
msg_piece(struct msg_pieces *ps, const char *p, size_t len)
{
    struct iovec *last;

    if (len == 0)
        return;
    last = ps->got > 0 && ps->got <= ps->n ? &ps->v[ps->got - 1] : NULL;
    if (last != NULL && (const char *)last->iov_base + last->iov_len == p) {
        last->iov_len += len;
        return;
    }
    /* Past n only counted; struct iovec has no const, and nothing
     * writes through it: see msg.h. */
    if (ps->got < ps->n) {
        ps->v[ps->got].iov_base = (void *)(uintptr_t)p;
        ps->v[ps->got].iov_len = len;
    }
    ps->got++;
}

size_t
msg_iov(const struct msg *m, struct iovec *iov, size_t n)
{
    struct msg_pieces ps = {iov, n, 0};
    unsigned char le, sep;
    size_t i;

    if (m->parsed && !m->edited) {
        msg_piece(&ps, m->raw, m->raw_len);
        return ps.got;
    }
    for (i = 0; i < m->nhdrs; i++) {
        const struct msg_hdr *h = &m->hdrs[i];
        size_t line = h->name_len + 1 + h->value_len;

        le = msg_hdr_eol(m, i);
        if (h->own == NULL && m->hraw != NULL) {
            /* A field as it came: its octets in raw, with its line end
             * when that is the one written. */
            const char *at = m->raw + (h->name - m->hraw);

            if (le == h->eol) {
                msg_piece(&ps, at, line + msg_eol_len[le]);
                continue;
            }
            msg_piece(&ps, at, line);
        } else {
            msg_piece(&ps, h->name, h->name_len);
            msg_piece(&ps, ":", 1);
            msg_piece(&ps, h->value, h->value_len);
        }
        msg_piece(&ps, msg_eol_str[le], msg_eol_len[le]);
    }
    sep = msg_sep(m);
    if (sep != MSG_EOL_NONE && sep == m->sep && m->raw != NULL)
        msg_piece(&ps, m->raw + m->hlen - msg_eol_len[sep], msg_eol_len[sep]);
    else
        msg_piece(&ps, msg_eol_str[sep], msg_eol_len[sep]);
    msg_piece(&ps, m->body, m->body_len);
    return ps.got;
}

/* ----------------------------------------------------------------- MIME */

const char *
msg_flat(struct msg *m, size_t *len, struct err *e)
{
    struct buf b;

    if (m->parsed && !m->edited) {
        *len = m->raw_len;
        return m->raw;
    }
    if (m->flat == NULL) {
        buf_init(&b, 0);
        if (msg_write(m, &b, e) < 0) {
            buf_fini(&b);
            return NULL;
        }
        if ((m->flat = buf_steal(&b, &m->flat_len)) == NULL) {
            err_nomem(e);
            return NULL;
        }
    }
    *len = m->flat_len;
    return m->flat;
}

const struct mime *
msg_mime(struct msg *m, struct err *e)
{
    const char *data;
    size_t len;

    if (m->mime != NULL)
        return m->mime;
    /* GMime reads the flat octets where they are; msg_mime_drop() frees
     * the parse before them. */
    if ((data = msg_flat(m, &len, e)) == NULL)
        return NULL;
    m->mime = mime_parse_shared(data, len, &m->limits, e);
    return m->mime;
}
