/*
 * milterd_replay - the chain's edits, replayed to the MTA as smfi_*
 * requests
 *
 * Replaying the edits. The journal records every header edit with the
 * per-name index it had at that moment. The MTA's indexes differ from
 * the chain's in two ways: Postfix (and Sendmail) count their own
 * Received: header for smfi_insheader but never show it to a filter, and
 * Postfix cannot find a header added with smfi_addheader again (so an
 * edit of a header the chain itself added must not be sent as an edit).
 * So the journal is first applied to a list of field identities (the
 * MTA's fields by number, and the chain's new ones), which gives the
 * final header as the MTA must end up with it. Then the MTA's fields are
 * deleted or changed in order, each index computed on a model of the
 * MTA's header as it is after the previous requests (the CVE-2022-48521
 * class of bug is computing it on the original); new fields before an
 * MTA field are inserted just above it, the others appended. The body,
 * when replaced, goes as smfi_replacebody calls of at most 65535 octets
 * with CRLF line ends; the envelope as the difference between the MTA's
 * sender and recipients and the chain's.
 *
 * Every request goes through the session's ops. A request the MTA
 * refuses is an error (ERR_TEMP), which the end of message answers with
 * a tempfail; what the replay allocates it frees before it returns.
 */
#include "config.h"

#include <libmilter/mfapi.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/addr.h"
#include "milterd/milterd_int.h"

#define MILTERD_CHUNK 65535   /* octets of one smfi_replacebody call */
#define MILTERD_OWN_HEADERS 1 /* the MTA's own Received: field */

/* One header field during replay: one of the MTA's (orig = its number)
 * or one the chain added (orig = -1). */
struct milterd_field {
    const char *name;
    long orig;
};

struct milterd_fields {
    struct milterd_field *v;
    size_t n, cap;
};

static int
milterd_fields_insert(struct milterd_fields *f, size_t pos, const char *name,
                      long orig)
{
    if (f->n == f->cap) {
        size_t ncap = f->cap ? f->cap * 2 : 32;
        struct milterd_field *p = realloc(f->v, ncap * sizeof(*p));

        if (p == NULL)
            return -1;
        f->v = p;
        f->cap = ncap;
    }
    memmove(&f->v[pos + 1], &f->v[pos], (f->n - pos) * sizeof(*f->v));
    f->v[pos].name = name;
    f->v[pos].orig = orig;
    f->n++;
    return 0;
}

static void
milterd_fields_remove(struct milterd_fields *f, size_t pos)
{
    memmove(&f->v[pos], &f->v[pos + 1], (f->n - pos - 1) * sizeof(*f->v));
    f->n--;
}

/* milterd_fields_find - position of the index-th (1-based) field called
 * name, or -1. */
static long
milterd_fields_find(const struct milterd_fields *f, const char *name,
                    size_t index)
{
    size_t i, seen = 0;

    for (i = 0; i < f->n; i++)
        if (strcasecmp(f->v[i].name, name) == 0 && ++seen == index)
            return (long)i;
    return -1;
}

/* milterd_fields_pos - position of the MTA's field number orig, or -1. */
static long
milterd_fields_pos(const struct milterd_fields *f, long orig)
{
    size_t i;

    for (i = 0; i < f->n; i++)
        if (f->v[i].orig == orig)
            return (long)i;
    return -1;
}

/* milterd_fields_index - the per-name 1-based index the MTA gives the
 * field at pos. */
static int
milterd_fields_index(const struct milterd_fields *f, size_t pos)
{
    size_t i;
    int n = 1;

    for (i = 0; i < pos; i++)
        if (strcasecmp(f->v[i].name, f->v[pos].name) == 0)
            n++;
    return n;
}

/* milterd_value - a header value as the MTA takes it: LF folding, and
 * without the leading space the MTA puts in itself when
 * SMFIP_HDR_LEADSPC was not agreed. */
static int
milterd_value(const struct milterd_session *s, const char *v, size_t len,
              struct buf *out, struct err *e)
{
    size_t i;

    buf_reset(out);
    if (!(s->proto & SMFIP_HDR_LEADSPC) && len > 0 && v[0] == ' ') {
        v++;
        len--;
    }
    for (i = 0; i < len; i++)
        if (!(v[i] == '\r' && i + 1 < len && v[i + 1] == '\n') &&
            buf_putc(out, v[i], e) < 0)
            return -1;
    return buf_reserve(out, 1, e);
}

int
milterd_mta_failed(struct err *e, const char *what, const char *name)
{
    return err_set(e, ERR_TEMP, "the MTA refused the request to %s%s%s", what,
                   name ? " " : "", name ? name : "");
}

/* One replay of the header: fin is the header as it must end, field by
 * field (the journal applied to identities), mta the MTA's header as it
 * is after the requests sent so far; changed and deleted mark the MTA's
 * fields by number; val holds a value as the MTA takes it. */
struct milterd_hdr_replay {
    struct milterd_fields fin, mta;
    unsigned char *changed, *deleted;
    struct buf val;
};

/* milterd_replay_plan - the journal applied to identities: r->fin is
 * the header as it must end, field by field. */
static int
milterd_replay_plan(struct msg *m, struct milterd_hdr_replay *r, struct err *e)
{
    struct milterd_fields *fin = &r->fin;
    const struct msg_edit *ed;
    size_t ned = msg_journal(m, &ed), i;

    for (i = 0; i < ned; i++) {
        long pos;

        switch (ed[i].kind) {
        case MSG_EDIT_HEADER_ADD:
            if (milterd_fields_insert(fin, fin->n, ed[i].name, -1) < 0)
                return err_nomem(e);
            break;
        case MSG_EDIT_HEADER_INSERT:
            if (ed[i].position > fin->n)
                return err_set(e, ERR_INTERNAL,
                               "journal: insert past the header");
            if (milterd_fields_insert(fin, ed[i].position, ed[i].name, -1) < 0)
                return err_nomem(e);
            break;
        case MSG_EDIT_HEADER_CHANGE:
        case MSG_EDIT_HEADER_DELETE:
            if ((pos = milterd_fields_find(fin, ed[i].name, ed[i].index)) < 0)
                return err_set(e, ERR_INTERNAL,
                               "journal: no %s field number %zu", ed[i].name,
                               ed[i].index);
            if (ed[i].kind == MSG_EDIT_HEADER_CHANGE) {
                if (fin->v[pos].orig >= 0)
                    r->changed[fin->v[pos].orig] = 1;
            } else {
                if (fin->v[pos].orig >= 0)
                    r->deleted[fin->v[pos].orig] = 1;
                milterd_fields_remove(fin, (size_t)pos);
            }
            break;
        default:
            break;
        }
    }
    if (fin->n != msg_header_count(m))
        return err_set(e, ERR_INTERNAL,
                       "journal: %zu fields replayed, message has "
                       "%zu",
                       fin->n, msg_header_count(m));
    return 0;
}

/* milterd_replay_mta_fields - the MTA's own fields, in order, each
 * index taken on r->mta as it is after the requests before it. */
static int
milterd_replay_mta_fields(struct milterd_session *s, struct msg *m,
                          struct milterd_hdr_replay *r, unsigned *nops,
                          struct err *e)
{
    size_t k;

    for (k = 0; k < s->nnames; k++) {
        long pos = milterd_fields_pos(&r->mta, (long)k), fpos;
        const char *v;
        size_t vlen;
        int index;

        if (pos < 0 || (!r->deleted[k] && !r->changed[k]))
            continue;
        index = milterd_fields_index(&r->mta, (size_t)pos);
        if (r->deleted[k]) {
            if (s->ops->chgheader(s->ctx, s->names[k], index, NULL) < 0)
                return milterd_mta_failed(e, "delete header", s->names[k]);
            milterd_fields_remove(&r->mta, (size_t)pos);
        } else {
            fpos = milterd_fields_pos(&r->fin, (long)k);
            if (fpos < 0 ||
                msg_header_at(m, (size_t)fpos, NULL, &v, &vlen) < 0)
                return err_set(e, ERR_INTERNAL, "journal: lost field %s",
                               s->names[k]);
            if (milterd_value(s, v, vlen, &r->val, e) < 0)
                return -1;
            if (s->ops->chgheader(s->ctx, s->names[k], index,
                                  buf_str(&r->val)) < 0)
                return milterd_mta_failed(e, "change header", s->names[k]);
        }
        (*nops)++;
    }
    return 0;
}

/* milterd_replay_new_fields - the chain's new fields: above the next
 * MTA field, or appended. */
static int
milterd_replay_new_fields(struct milterd_session *s, struct msg *m,
                          struct milterd_hdr_replay *r, unsigned *nops,
                          struct err *e)
{
    const struct milterd_fields *fin = &r->fin;
    size_t i;

    for (i = 0; i < fin->n; i++) {
        const char *name, *v;
        size_t vlen, j;
        long pos = -1;

        if (fin->v[i].orig >= 0)
            continue;
        for (j = i + 1; j < fin->n && pos < 0; j++)
            if (fin->v[j].orig >= 0)
                pos = milterd_fields_pos(&r->mta, fin->v[j].orig);
        if (msg_header_at(m, i, &name, &v, &vlen) < 0 ||
            milterd_value(s, v, vlen, &r->val, e) < 0)
            return -1;
        if (pos < 0) {
            if (s->ops->addheader(s->ctx, name, buf_str(&r->val)) < 0)
                return milterd_mta_failed(e, "add header", name);
        } else {
            if (s->ops->insheader(s->ctx, (int)pos + MILTERD_OWN_HEADERS, name,
                                  buf_str(&r->val)) < 0)
                return milterd_mta_failed(e, "insert header", name);
            if (milterd_fields_insert(&r->mta, (size_t)pos, name, -1) < 0)
                return err_nomem(e);
        }
        (*nops)++;
    }
    return 0;
}

/* milterd_replay_headers - see the file comment. */
static int
milterd_replay_headers(struct milterd_session *s, struct msg *m,
                       unsigned *nops, struct err *e)
{
    struct milterd_hdr_replay r;
    const struct msg_edit *ed;
    size_t ned = msg_journal(m, &ed), i, k;
    int rc = -1, any = 0;

    for (i = 0; i < ned; i++)
        if (ed[i].kind <= MSG_EDIT_HEADER_DELETE)
            any = 1;
    if (!any)
        return 0;
    memset(&r, 0, sizeof(r));
    buf_init(&r.val, 0);
    if ((r.changed = calloc(s->nnames + 1, 1)) == NULL ||
        (r.deleted = calloc(s->nnames + 1, 1)) == NULL)
        goto nomem;
    for (k = 0; k < s->nnames; k++)
        if (milterd_fields_insert(&r.fin, k, s->names[k], (long)k) < 0 ||
            milterd_fields_insert(&r.mta, k, s->names[k], (long)k) < 0)
            goto nomem;
    if (milterd_replay_plan(m, &r, e) == 0 &&
        milterd_replay_mta_fields(s, m, &r, nops, e) == 0 &&
        milterd_replay_new_fields(s, m, &r, nops, e) == 0)
        rc = 0;
    goto out;

nomem:
    err_nomem(e);
out:
    buf_fini(&r.val);
    free(r.changed);
    free(r.deleted);
    free(r.fin.v);
    free(r.mta.v);
    return rc;
}

/* milterd_replay_body - the body in chunks, every line end CRLF. */
static int
milterd_replay_body(struct milterd_session *s, struct msg *m, struct err *e)
{
    unsigned char *chunk;
    const char *body;
    size_t len, i, n = 0;
    int rc = 0;

    body = msg_body(m, &len);
    if ((chunk = malloc(MILTERD_CHUNK)) == NULL)
        return err_nomem(e);
    for (i = 0; i < len && rc == 0; i++) {
        if (body[i] == '\n' && (i == 0 || body[i - 1] != '\r')) {
            if (n + 1 >= MILTERD_CHUNK) {
                rc = s->ops->replacebody(s->ctx, chunk, n);
                n = 0;
            }
            chunk[n++] = '\r';
        }
        chunk[n++] = (unsigned char)body[i];
        if (n == MILTERD_CHUNK) {
            rc = s->ops->replacebody(s->ctx, chunk, n);
            n = 0;
        }
    }
    /* An empty body is replaced by one empty call. */
    if (rc == 0 && (n > 0 || len == 0))
        rc = s->ops->replacebody(s->ctx, chunk, n);
    free(chunk);
    return rc < 0 ? milterd_mta_failed(e, "replace the body", NULL) : 0;
}

static int
milterd_bracket(const char *addr, struct buf *out, struct err *e)
{
    buf_reset(out);
    return buf_printf(out, e, "<%s>", addr);
}

/* milterd_replay_envelope - the difference between the MTA's envelope
 * and the chain's. */
static int
milterd_replay_envelope(struct milterd_session *s, struct msg *m,
                        unsigned *nops, struct err *e)
{
    const struct msg_env *env = msg_env(m);
    const struct msg_edit *ed;
    size_t ned = msg_journal(m, &ed), i, j;
    const char *sender_params = NULL;
    int sender = 0, rcpts = 0, rc = -1;
    struct buf a, b;

    for (i = 0; i < ned; i++) {
        if (ed[i].kind == MSG_EDIT_SENDER) {
            sender = 1;
            sender_params = ed[i].params;
        } else if (ed[i].kind == MSG_EDIT_RCPT_ADD ||
                   ed[i].kind == MSG_EDIT_RCPT_DELETE) {
            rcpts = 1;
        }
    }
    if (!sender && !rcpts)
        return 0;
    buf_init(&a, ADDR_MAX * 4);
    buf_init(&b, ADDR_MAX * 4);
    if (sender) {
        if (milterd_addr(s->sender_raw, &a, e) < 0)
            goto out;
        if (strcmp(buf_str(&a), env->sender) != 0) {
            if (milterd_bracket(env->sender, &b, e) < 0)
                goto out;
            if (s->ops->chgfrom(s->ctx, buf_str(&b), sender_params) < 0) {
                milterd_mta_failed(e, "change the sender to", buf_str(&b));
                goto out;
            }
            (*nops)++;
        }
    }
    if (rcpts) {
        for (i = 0; i < s->nrcpts; i++) {
            int kept = 0;

            if (milterd_addr(s->rcpts[i].raw, &a, e) < 0)
                goto out;
            for (j = 0; j < env->nrcpts && !kept; j++)
                kept = strcmp(env->rcpts[j].addr, buf_str(&a)) == 0;
            if (kept)
                continue;
            if (s->ops->delrcpt(s->ctx, s->rcpts[i].raw) < 0) {
                milterd_mta_failed(e, "delete recipient", s->rcpts[i].raw);
                goto out;
            }
            (*nops)++;
        }
        for (j = 0; j < env->nrcpts; j++) {
            int known = 0;

            for (i = 0; i < s->nrcpts && !known; i++) {
                if (milterd_addr(s->rcpts[i].raw, &a, e) < 0)
                    goto out;
                known = strcmp(env->rcpts[j].addr, buf_str(&a)) == 0;
            }
            if (known)
                continue;
            if (milterd_bracket(env->rcpts[j].addr, &b, e) < 0)
                goto out;
            if (s->ops->addrcpt(s->ctx, buf_str(&b),
                                (s->actions & SMFIF_ADDRCPT_PAR)
                                    ? env->rcpts[j].params
                                    : NULL) < 0) {
                milterd_mta_failed(e, "add recipient", buf_str(&b));
                goto out;
            }
            (*nops)++;
        }
    }
    rc = 0;
out:
    buf_fini(&a);
    buf_fini(&b);
    return rc;
}

/* milterd_replay - every edit of the chain, to the MTA. */
int
milterd_replay(struct milterd_session *s, struct msg *m, unsigned *nops,
               int *body, struct err *e)
{
    const struct msg_edit *ed;
    size_t ned = msg_journal(m, &ed), i;

    *body = 0;
    if (milterd_replay_envelope(s, m, nops, e) < 0 ||
        milterd_replay_headers(s, m, nops, e) < 0)
        return -1;
    for (i = 0; i < ned; i++)
        if (ed[i].kind == MSG_EDIT_BODY_REPLACE)
            *body = 1;
    if (*body && milterd_replay_body(s, m, e) < 0)
        return -1;
    return 0;
}
