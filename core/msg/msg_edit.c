/*
 * msg_edit - the edits of a message, their journal, marks and rollback
 *
 * The representation is in msg.c. An edit is made by a stage through
 * the msg_* calls of msg.h and recorded in the journal, which the milter
 * front end replays (the SMTP front end writes the edited message
 * instead).
 *
 * A failed call leaves the message as it was: an edit allocates all it
 * needs before it changes anything. Every header or body edit frees the
 * cached MIME parse (msg_mime), so pointers into it become invalid.
 *
 * Marks: while one is open (msg_mark), the edit making journal entry i
 * fills undo[i - undo_base], reserved with the journal slot, with what it
 * would otherwise free or forget: the replaced or deleted field (its own
 * block moves into the record), the old sender strings, the deleted
 * recipients with their indexes (a list allocated by the delete), the
 * position it inserted at, the old body pointer. msg_rollback() walks the
 * entries back to the mark, newest first, so each record meets the
 * message exactly as its edit left it: it hands the record's blocks back
 * to the message, frees the ones the edit had made and the journal
 * entry's copies. The old body is never freed under it: it is in raw or
 * in an earlier journal entry, and only msg_free() frees those. The field
 * array only grows and the recipient array keeps its capacity, so a
 * deleted field or recipient goes back in place without allocating.
 * msg_unmark() of the outermost mark frees the records' blocks.
 */
#include "config.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/err.h"
#include "msg/msg_int.h"

#define MSG_EDITS_MIN 8

static int
msg_name_ok(const char *name)
{
    const unsigned char *p;

    if (name == NULL || *name == '\0')
        return 0;
    for (p = (const unsigned char *)name; *p != '\0'; p++)
        if (*p < 33 || *p > 126 || *p == ':')
            return 0;
    return 1;
}

/* ------------------------------------------------------------- journal */

/* msg_undo_reserve - while a mark is open, room for the undo record of
 * one more edit. */
static int
msg_undo_reserve(struct msg *m, struct err *e)
{
    struct msg_undo *p;
    size_t need, ncap;

    if (m->marks == 0)
        return 0;
    need = m->nedits - m->undo_base + 1;
    if (need <= m->undo_cap)
        return 0;
    ncap = m->undo_cap ? m->undo_cap : MSG_EDITS_MIN;
    while (ncap < need)
        ncap *= 2;
    if (ncap > SIZE_MAX / sizeof(*p) ||
        (p = realloc(m->undo, ncap * sizeof(*p))) == NULL)
        return err_nomem(e);
    m->undo = p;
    m->undo_cap = ncap;
    return 0;
}

/* msg_journal_reserve - room for one more edit (and its undo record), so
 * that recording it can not fail once the message has been changed. */
static int
msg_journal_reserve(struct msg *m, struct err *e)
{
    struct msg_edit *p;
    size_t ncap;

    if (msg_undo_reserve(m, e) < 0)
        return -1;
    if (m->nedits < m->edits_cap)
        return 0;
    ncap = m->edits_cap ? m->edits_cap * 2 : MSG_EDITS_MIN;
    if (ncap > SIZE_MAX / sizeof(*p) ||
        (p = realloc(m->edits, ncap * sizeof(*p))) == NULL)
        return err_nomem(e);
    m->edits = p;
    m->edits_cap = ncap;
    return 0;
}

/* msg_undo_slot - the cleared undo record of the edit being made, or NULL
 * when no mark is open. msg_edit_prepare() reserved it. */
static struct msg_undo *
msg_undo_slot(struct msg *m)
{
    struct msg_undo *u;

    if (m->marks == 0)
        return NULL;
    u = &m->undo[m->nedits - m->undo_base];
    memset(u, 0, sizeof(*u));
    return u;
}

/* msg_edit_prepare - fill ed with copies of name, value (len octets) and
 * params, with room reserved in the journal; msg_edit_commit() appends
 * it, msg_edit_discard() frees it on a later failure. */
static int
msg_edit_prepare(struct msg *m, struct msg_edit *ed, enum msg_edit_kind kind,
                 const char *stage, const char *name, const char *value,
                 size_t len, const char *params, struct err *e)
{
    memset(ed, 0, sizeof(*ed));
    ed->kind = kind;
    ed->stage = stage;
    ed->len = len;
    if (msg_journal_reserve(m, e) < 0)
        return -1;
    if (msg_dup(name, &ed->name) < 0 || msg_dup(params, &ed->params) < 0)
        goto nomem;
    if (value != NULL) {
        if (len == SIZE_MAX || (ed->value = malloc(len + 1)) == NULL)
            goto nomem;
        if (len > 0)
            memcpy(ed->value, value, len);
        ed->value[len] = '\0';
    }
    return 0;

nomem:
    free(ed->name);
    free(ed->params);
    return err_nomem(e);
}

static void
msg_edit_discard(struct msg_edit *ed)
{
    free(ed->name);
    free(ed->value);
    free(ed->params);
}

static void
msg_edit_commit(struct msg *m, const struct msg_edit *ed)
{
    m->edits[m->nedits++] = *ed;
}

/* msg_edit_commit_content - msg_edit_commit() of a header or body edit:
 * the message counts as edited, and its flat copy and MIME parse go. */
static void
msg_edit_commit_content(struct msg *m, const struct msg_edit *ed)
{
    m->edited = 1;
    msg_mime_drop(m);
    msg_edit_commit(m, ed);
}

size_t
msg_journal(const struct msg *m, const struct msg_edit **edits)
{
    if (edits != NULL)
        *edits = m->edits;
    return m->nedits;
}

const char *
msg_edit_kind_name(enum msg_edit_kind kind)
{
    switch (kind) {
    case MSG_EDIT_HEADER_ADD:
        return "header add";
    case MSG_EDIT_HEADER_INSERT:
        return "header insert";
    case MSG_EDIT_HEADER_CHANGE:
        return "header change";
    case MSG_EDIT_HEADER_DELETE:
        return "header delete";
    case MSG_EDIT_BODY_REPLACE:
        return "body replace";
    case MSG_EDIT_SENDER:
        return "sender change";
    case MSG_EDIT_RCPT_ADD:
        return "recipient add";
    case MSG_EDIT_RCPT_DELETE:
        return "recipient delete";
    }
    return "unknown edit";
}

/* ------------------------------------------------------------- editing */

/* msg_hdr_make - validate name and value and build the field h in a block
 * of its own, with a leading space when value does not start with white
 * space and every fold's line end made the message's. Refused: a bad
 * name, CR not followed by LF, a line end not followed by white space,
 * a continuation line of white space only (some readers take it for the
 * end of the header), a line over line_length. */
static int
msg_hdr_make(const struct msg *m, const char *name, const char *value,
             struct msg_hdr *h, struct err *e)
{
    size_t name_len, vlen, olen, line, i, eol_len = msg_eol_len[m->eol];
    const char *eol = msg_eol_str[m->eol];
    int lead;
    char *o;

    if (!msg_name_ok(name))
        return err_set(e, ERR_INPUT,
                       "header field name is empty or holds a colon, white "
                       "space or a non-ASCII or control character");
    if (value == NULL)
        return err_set(e, ERR_INPUT, "header %s: no value", name);
    name_len = strlen(name);
    vlen = strlen(value);
    lead = !(msg_is_wsp(value[0]) || value[0] == '\r' || value[0] == '\n');

    /* Check, and size the result. */
    olen = (size_t)lead;
    line = name_len + 1 + (size_t)lead;
    for (i = 0; i < vlen; i++) {
        size_t j;

        if (value[i] == '\r' && value[i + 1] != '\n')
            return err_set(e, ERR_INPUT, "header %s: bare CR in value", name);
        if (value[i] != '\r' && value[i] != '\n') {
            olen++;
            line++;
            continue;
        }
        if (value[i] == '\r')
            i++;
        if (!msg_is_wsp(value[i + 1]))
            return err_set(e, ERR_INPUT,
                           "header %s: line end in value not followed by "
                           "white space",
                           name);
        for (j = i + 1; msg_is_wsp(value[j]); j++)
            ;
        if (value[j] == '\0' || value[j] == '\r' || value[j] == '\n')
            return err_set(e, ERR_INPUT,
                           "header %s: continuation line holds only white "
                           "space",
                           name);
        if (m->limits.line_length != 0 && line > m->limits.line_length)
            goto toolong;
        olen += eol_len;
        line = 0;
    }
    if (m->limits.line_length != 0 && line > m->limits.line_length)
        goto toolong;

    if (name_len > SIZE_MAX / 2 || olen > SIZE_MAX / 2 ||
        (h->own = malloc(name_len + olen + 2)) == NULL)
        return err_nomem(e);
    memcpy(h->own, name, name_len + 1);
    h->name = h->own;
    h->name_len = name_len;
    h->value = o = h->own + name_len + 1;
    h->value_len = olen;
    h->eol = m->eol;
    if (lead)
        *o++ = ' ';
    for (i = 0; i < vlen; i++) {
        if (value[i] == '\r' || value[i] == '\n') {
            if (value[i] == '\r')
                i++;
            memcpy(o, eol, eol_len);
            o += eol_len;
        } else {
            *o++ = value[i];
        }
    }
    *o = '\0';
    return 0;

toolong:
    return err_set(e, ERR_LIMIT,
                   "header %s: line of more than %zu octets exceeds "
                   "line_length_limit",
                   name, m->limits.line_length);
}

/* msg_header_put - insert the field at position pos. */
static int
msg_header_put(struct msg *m, const char *stage, enum msg_edit_kind kind,
               size_t pos, const char *name, const char *value, struct err *e)
{
    struct msg_hdr h;
    struct msg_edit ed;
    struct msg_undo *u;

    if (pos > m->nhdrs)
        return err_set(e, ERR_INPUT,
                       "header position %zu is past the %zu fields", pos,
                       m->nhdrs);
    if (msg_hdr_make(m, name, value, &h, e) < 0)
        return -1;
    if (msg_hdrs_reserve(&m->hdrs, m->nhdrs, &m->hdrs_cap) < 0) {
        free(h.own);
        return err_nomem(e);
    }
    if (msg_edit_prepare(m, &ed, kind, stage, name, h.value, h.value_len, NULL,
                         e) < 0) {
        free(h.own);
        return -1;
    }
    ed.position = kind == MSG_EDIT_HEADER_INSERT ? pos : 0;
    if ((u = msg_undo_slot(m)) != NULL)
        u->at = pos;
    memmove(&m->hdrs[pos + 1], &m->hdrs[pos],
            (m->nhdrs - pos) * sizeof(*m->hdrs));
    m->hdrs[pos] = h;
    m->nhdrs++;
    msg_edit_commit_content(m, &ed);
    return 0;
}

int
msg_header_add(struct msg *m, const char *stage, const char *name,
               const char *value, struct err *e)
{
    return msg_header_put(m, stage, MSG_EDIT_HEADER_ADD, m->nhdrs, name, value,
                          e);
}

int
msg_header_insert(struct msg *m, const char *stage, size_t position,
                  const char *name, const char *value, struct err *e)
{
    return msg_header_put(m, stage, MSG_EDIT_HEADER_INSERT, position, name,
                          value, e);
}

/* msg_header_lookup - like msg_header_find, with the error. */
static long
msg_header_lookup(const struct msg *m, const char *name, size_t index,
                  struct err *e)
{
    long i;

    if (!msg_name_ok(name))
        return err_set(e, ERR_INPUT, "invalid header field name");
    if ((i = msg_header_find(m, name, index)) < 0)
        return err_set(e, ERR_INPUT,
                       "header %s: no field number %zu (there are %zu)", name,
                       index, msg_header_name_count(m, name));
    return i;
}

int
msg_header_change(struct msg *m, const char *stage, const char *name,
                  size_t index, const char *value, struct err *e)
{
    struct msg_hdr h, *old;
    struct msg_edit ed;
    struct msg_undo *u;
    long i;

    if ((i = msg_header_lookup(m, name, index, e)) < 0)
        return -1;
    old = &m->hdrs[i];
    /* Keep the field name as it was spelled. */
    if (msg_hdr_make(m, old->name, value, &h, e) < 0)
        return -1;
    if (msg_edit_prepare(m, &ed, MSG_EDIT_HEADER_CHANGE, stage, name, h.value,
                         h.value_len, NULL, e) < 0) {
        free(h.own);
        return -1;
    }
    ed.index = index;
    if ((u = msg_undo_slot(m)) != NULL) {
        u->at = (size_t)i;
        u->hdr = *old;
    } else {
        free(old->own);
    }
    *old = h;
    msg_edit_commit_content(m, &ed);
    return 0;
}

int
msg_header_delete(struct msg *m, const char *stage, const char *name,
                  size_t index, struct err *e)
{
    struct msg_edit ed;
    struct msg_undo *u;
    long i;

    if ((i = msg_header_lookup(m, name, index, e)) < 0)
        return -1;
    if (msg_edit_prepare(m, &ed, MSG_EDIT_HEADER_DELETE, stage, name, NULL, 0,
                         NULL, e) < 0)
        return -1;
    ed.index = index;
    if ((u = msg_undo_slot(m)) != NULL) {
        u->at = (size_t)i;
        u->hdr = m->hdrs[i];
    } else {
        free(m->hdrs[i].own);
    }
    memmove(&m->hdrs[i], &m->hdrs[i + 1],
            (m->nhdrs - (size_t)i - 1) * sizeof(*m->hdrs));
    m->nhdrs--;
    msg_edit_commit_content(m, &ed);
    return 0;
}

int
msg_body_replace(struct msg *m, const char *stage, const char *data,
                 size_t len, struct err *e)
{
    char *copy;

    if (data == NULL && len > 0)
        return err_set(e, ERR_INTERNAL, "body of %zu octets without data",
                       len);
    if (len == SIZE_MAX || (copy = malloc(len + 1)) == NULL)
        return err_nomem(e);
    if (len > 0)
        memcpy(copy, data, len);
    return msg_body_adopt(m, stage, copy, len, e);
}

int
msg_body_adopt(struct msg *m, const char *stage, char *data, size_t len,
               struct err *e)
{
    struct msg_edit ed;
    struct msg_undo *u;

    if (data == NULL) {
        if (len > 0)
            return err_set(e, ERR_INTERNAL, "body of %zu octets without data",
                           len);
        if ((data = calloc(1, 1)) == NULL)
            return err_nomem(e);
    }
    if (msg_edit_prepare(m, &ed, MSG_EDIT_BODY_REPLACE, stage, NULL, NULL, 0,
                         NULL, e) < 0) {
        free(data);
        return -1;
    }
    data[len] = '\0';
    ed.value = data;
    ed.len = len;
    if ((u = msg_undo_slot(m)) != NULL) {
        u->body = m->body;
        u->body_len = m->body_len;
    }
    m->body = ed.value;
    m->body_len = len;
    msg_edit_commit_content(m, &ed);
    return 0;
}

/* ------------------------------------------------------------ envelope */

int
msg_sender_change(struct msg *m, const char *stage, const char *addr,
                  const char *params, struct err *e)
{
    struct msg_edit ed;

    if (addr == NULL)
        return err_set(e, ERR_INPUT, "sender change without address");
    if (msg_edit_prepare(m, &ed, MSG_EDIT_SENDER, stage, NULL, addr,
                         strlen(addr), params, e) < 0)
        return -1;
    if (msg_sender_set(m, addr, params, msg_undo_slot(m), e) < 0) {
        msg_edit_discard(&ed);
        return -1;
    }
    msg_edit_commit(m, &ed);
    return 0;
}

int
msg_rcpt_add(struct msg *m, const char *stage, const char *addr,
             const char *params, struct err *e)
{
    struct msg_edit ed;
    struct msg_undo *u;
    size_t at;

    if (addr == NULL)
        return err_set(e, ERR_INPUT, "recipient add without address");
    if (msg_edit_prepare(m, &ed, MSG_EDIT_RCPT_ADD, stage, NULL, addr,
                         strlen(addr), params, e) < 0)
        return -1;
    at = m->env.nrcpts;
    if (msg_rcpt_append(m, addr, params, e) < 0) {
        msg_edit_discard(&ed);
        return -1;
    }
    if ((u = msg_undo_slot(m)) != NULL)
        u->at = at;
    msg_edit_commit(m, &ed);
    return 0;
}

/* msg_addr_eq - the local parts equal exactly, the domains without regard
 * to case. */
static int
msg_addr_eq(const char *a, const char *b)
{
    const char *at_a = strrchr(a, '@'), *at_b = strrchr(b, '@');

    if (at_a == NULL || at_b == NULL)
        return at_a == at_b && strcmp(a, b) == 0;
    return at_a - a == at_b - b && memcmp(a, b, (size_t)(at_a - a)) == 0 &&
           strcasecmp(at_a, at_b) == 0;
}

int
msg_rcpt_delete(struct msg *m, const char *stage, const char *addr,
                struct err *e)
{
    struct msg_edit ed;
    struct msg_undo *u;
    struct msg_gone *gone = NULL;
    size_t i, kept, ngone = 0;
    const char *as_was = NULL;

    if (addr == NULL)
        return err_set(e, ERR_INPUT, "recipient delete without address");
    for (i = 0; i < m->env.nrcpts; i++)
        if (msg_addr_eq(m->env.rcpts[i].addr, addr) && ngone++ == 0)
            as_was = m->env.rcpts[i].addr;
    if (as_was == NULL)
        return err_set(e, ERR_INPUT, "recipient <%s> is not in the envelope",
                       addr);
    if (msg_edit_prepare(m, &ed, MSG_EDIT_RCPT_DELETE, stage, NULL, as_was,
                         strlen(as_was), NULL, e) < 0)
        return -1;
    if (m->marks > 0 && (gone = calloc(ngone, sizeof(*gone))) == NULL) {
        msg_edit_discard(&ed);
        return err_nomem(e);
    }
    if ((u = msg_undo_slot(m)) != NULL) {
        u->gone = gone;
        u->ngone = ngone;
    }
    for (i = kept = ngone = 0; i < m->env.nrcpts; i++) {
        if (!msg_addr_eq(m->env.rcpts[i].addr, addr)) {
            m->env.rcpts[kept++] = m->env.rcpts[i];
        } else if (gone != NULL) {
            gone[ngone].at = i;
            gone[ngone++].rcpt = m->env.rcpts[i];
        } else {
            free(m->env.rcpts[i].addr);
            free(m->env.rcpts[i].params);
        }
    }
    m->env.nrcpts = kept;
    msg_edit_commit(m, &ed);
    return 0;
}

/* --------------------------------------------------------------- marks */

void
msg_mark(struct msg *m, struct msg_mark *mark)
{
    if (m->marks == 0)
        m->undo_base = m->nedits;
    m->marks++;
    mark->nedits = m->nedits;
    mark->edited = m->edited;
    mark->depth = m->marks;
}

/* msg_rcpt_restore - put the recipients u took out back where they
 * stood. The array held them all before, so it has the room; walking
 * from the end moves each kept one at most once. */
static void
msg_rcpt_restore(struct msg *m, struct msg_undo *u)
{
    struct msg_rcpt *r = m->env.rcpts;
    size_t src = m->env.nrcpts, dst = m->env.nrcpts + u->ngone, g = u->ngone;

    assert(dst <= m->rcpts_cap);
    while (g > 0) {
        dst--;
        if (u->gone[g - 1].at == dst)
            r[dst] = u->gone[--g].rcpt;
        else
            r[dst] = r[--src];
    }
    m->env.nrcpts += u->ngone;
    free(u->gone);
    u->gone = NULL;
    u->ngone = 0;
}

/* msg_undo_one - undo the newest journal entry with its record u, which
 * keeps nothing after. Returns 1 when the header or body changed. */
static int
msg_undo_one(struct msg *m, enum msg_edit_kind kind, struct msg_undo *u)
{
    struct msg_hdr *h;
    struct msg_rcpt *r;

    switch (kind) {
    case MSG_EDIT_HEADER_ADD:
    case MSG_EDIT_HEADER_INSERT:
        h = &m->hdrs[u->at];
        free(h->own);
        memmove(h, h + 1, (m->nhdrs - u->at - 1) * sizeof(*h));
        m->nhdrs--;
        return 1;
    case MSG_EDIT_HEADER_CHANGE:
        h = &m->hdrs[u->at];
        free(h->own);
        *h = u->hdr;
        u->hdr.own = NULL;
        return 1;
    case MSG_EDIT_HEADER_DELETE:
        /* The array held this field before the delete. */
        h = &m->hdrs[u->at];
        memmove(h + 1, h, (m->nhdrs - u->at) * sizeof(*h));
        *h = u->hdr;
        u->hdr.own = NULL;
        m->nhdrs++;
        return 1;
    case MSG_EDIT_BODY_REPLACE:
        m->body = u->body;
        m->body_len = u->body_len;
        return 1;
    case MSG_EDIT_SENDER:
        free(m->env.sender);
        free(m->env.sender_params);
        m->env.sender = u->sender;
        m->env.sender_params = u->sender_params;
        u->sender = u->sender_params = NULL;
        return 0;
    case MSG_EDIT_RCPT_ADD:
        r = &m->env.rcpts[u->at];
        free(r->addr);
        free(r->params);
        memmove(r, r + 1, (m->env.nrcpts - u->at - 1) * sizeof(*r));
        m->env.nrcpts--;
        return 0;
    case MSG_EDIT_RCPT_DELETE:
        msg_rcpt_restore(m, u);
        return 0;
    }
    return 0;
}

size_t
msg_rollback(struct msg *m, const struct msg_mark *mark)
{
    size_t n = 0;
    int content = 0;

    assert(mark->depth > 0 && mark->depth <= m->marks);
    assert(mark->nedits >= m->undo_base);
    if (m->marks == 0)
        return 0;
    while (m->nedits > mark->nedits && m->nedits > m->undo_base) {
        struct msg_edit *ed = &m->edits[m->nedits - 1];

        content |=
            msg_undo_one(m, ed->kind, &m->undo[m->nedits - 1 - m->undo_base]);
        msg_edit_discard(ed);
        m->nedits--;
        n++;
    }
    if (content) {
        m->edited = mark->edited;
        msg_mime_drop(m);
    }
    return n;
}

void
msg_unmark(struct msg *m, const struct msg_mark *mark)
{
    assert(mark->depth > 0 && mark->depth == m->marks);
    (void)mark;
    if (m->marks == 0 || --m->marks > 0)
        return;
    msg_undo_release(m);
}
