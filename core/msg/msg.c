/*
 * msg - one message in flight: envelope, headers, body and edit journal
 *
 * msg_parse() copies the received octets once into one block (raw) and
 * splits the header section in a single pass; in a copy of that section
 * (hraw) the colon of each field and the first octet of its final line
 * end become NUL, so the name and the raw value (folding kept) are C
 * strings pointing into hraw, and the final line end is kept as a code
 * (none, LF or CRLF). Writing a field back as name ":" value line-end
 * gives the input byte for byte. The body is the rest of raw; the empty
 * line between the two is kept as a code too, and is absent when the
 * header section was ended by a line that is neither a field nor a
 * continuation (Postfix does the same) or when the message has no body.
 * msg_iov() gives the message as pieces without a copy: runs of raw for
 * what did not change, joined where they touch.
 *
 * The received octets stay as they came (raw): the header section is cut
 * in a copy of its own (hraw), so an unedited message is its raw octets
 * and msg_flat() and msg_mime() use them without a copy. Once the header
 * or body is edited, msg_flat() writes the message once into a flat copy
 * that the MIME parse shares; both go at the next edit or rollback.
 * msg_adopt() parses a block the caller allocated, without a copy.
 *
 * A field added or changed by a stage owns a block "name\0value\0" whose
 * folding uses the message's line end. msg_body_replace() points the body
 * at the journal entry that holds the new body, so a replaced body exists
 * once. When a message without the empty line is edited and has a body,
 * msg_write() puts the empty line in, so an edit can never turn body text
 * into header text; a field without a final line end (the last line of a
 * message without body) gets one as soon as anything follows it.
 *
 * Limits: msg_parse() enforces message_size and header_count and records
 * the longest line for the caller to judge; the lines of a new or changed
 * field are checked against line_length. A limit of 0 means none.
 * Recipient addresses compare exactly in the local part and without
 * regard to case in the domain (RFC 5321); msg_rcpt_delete() removes every
 * recipient that matches, as Postfix does for smfi_delrcpt().
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>

#include "util/buf.h"
#include "util/err.h"
#include "msg/mime.h"
#include "msg/msg.h"

/* Line end codes; msg_eol_str and msg_eol_len are indexed by them. */
enum { MSG_EOL_NONE, MSG_EOL_LF, MSG_EOL_CRLF };

static const char *const msg_eol_str[] = {"", "\n", "\r\n"};
static const size_t msg_eol_len[] = {0, 1, 2};

#define MSG_HDRS_MIN 32
#define MSG_EDITS_MIN 8
#define MSG_RCPTS_MIN 4

struct msg_hdr {
    char *name;  /* NUL-terminated, in raw or in own */
    char *value; /* raw value after the colon, NUL-terminated */
    size_t name_len;
    size_t value_len;
    char *own; /* "name\0value\0" of an edited field, or NULL */
    unsigned char eol;
};

/* A recipient msg_rcpt_delete() took out, and where it stood. */
struct msg_gone {
    size_t at;
    struct msg_rcpt rcpt;
};

/* What undoing one journal entry takes; see the file header. Owns
 * hdr.own, sender, sender_params and gone with its strings. */
struct msg_undo {
    size_t at;          /* field or recipient position the edit used */
    struct msg_hdr hdr; /* HEADER_CHANGE, HEADER_DELETE: the field before */
    const char *body;   /* BODY_REPLACE: the body before; borrowed */
    size_t body_len;
    char *sender; /* SENDER: the sender and parameters before */
    char *sender_params;
    struct msg_gone *gone; /* RCPT_DELETE: in ascending position */
    size_t ngone;
};

struct msg {
    struct msg_limits limits;
    struct msg_env env;
    char *raw; /* the message as it came, see above */
    size_t raw_len;
    char *hraw;  /* the header section cut into C strings */
    size_t hlen; /* octets of the header section, the empty line too */
    char *flat;  /* msg_flat() of an edited message, or NULL */
    size_t flat_len;
    struct msg_hdr *hdrs;
    size_t nhdrs;
    size_t hdrs_cap;
    const char *body; /* in raw, in an edit's value, or NULL */
    size_t body_len;
    unsigned char sep; /* line end of the empty line, or NONE */
    unsigned char eol; /* LF or CRLF */
    int parsed;
    int edited; /* header or body changed */
    size_t longest;
    struct msg_edit *edits;
    size_t nedits;
    size_t edits_cap;
    struct mime *mime;
    size_t rcpts_cap;      /* room in env.rcpts; it never shrinks */
    unsigned marks;        /* marks open */
    size_t undo_base;      /* journal length at the outermost open mark */
    struct msg_undo *undo; /* undo[i - undo_base] for journal entry i */
    size_t undo_cap;
};

/* msg_sink - where msg_emit() sends the serialized message. */
typedef int (*msg_sink)(void *ctx, const void *p, size_t len, struct err *e);

static int
msg_is_wsp(int c)
{
    return c == ' ' || c == '\t';
}

/* msg_field_name - length of the field name when the line at p (n octets,
 * without its line end) is a header field: printable ASCII other than
 * the colon, then a colon. Otherwise 0. */
static size_t
msg_field_name(const char *p, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];

        if (c == ':')
            return i;
        if (c < 33 || c > 126)
            return 0;
    }
    return 0;
}

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

static char *
msg_strdup(const char *s)
{
    size_t n;
    char *p;

    if (s == NULL)
        return NULL;
    n = strlen(s) + 1;
    if ((p = malloc(n)) != NULL)
        memcpy(p, s, n);
    return p;
}

/* msg_dup - copy s into *out (NULL stays NULL); -1 on ENOMEM. */
static int
msg_dup(const char *s, char **out)
{
    *out = NULL;
    if (s == NULL)
        return 0;
    return (*out = msg_strdup(s)) == NULL ? -1 : 0;
}

/* msg_mime_drop - the message changed: drop the parse and the flat
 * copy made from it (the parse refers into the copy, so it goes first). */
static void
msg_mime_drop(struct msg *m)
{
    mime_free(m->mime);
    m->mime = NULL;
    free(m->flat);
    m->flat = NULL;
    m->flat_len = 0;
}

struct msg *
msg_new(const struct msg_limits *limits, enum msg_frontend fe, struct err *e)
{
    struct msg *m;

    if ((m = calloc(1, sizeof(*m))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    if (limits != NULL)
        m->limits = *limits;
    m->env.frontend = fe;
    m->eol = MSG_EOL_CRLF;
    return m;
}

static void
msg_env_fini(struct msg_env *env)
{
    size_t i;

    free(env->qid);
    free(env->client_addr);
    free(env->client_name);
    free(env->helo);
    free(env->auth_user);
    free(env->daemon_name);
    free(env->sender);
    free(env->sender_params);
    for (i = 0; i < env->nrcpts; i++) {
        free(env->rcpts[i].addr);
        free(env->rcpts[i].params);
    }
    free(env->rcpts);
}

static void msg_undo_release(struct msg *m);

void
msg_free(struct msg *m)
{
    size_t i;

    if (m == NULL)
        return;
    if (m->marks > 0)
        msg_undo_release(m);
    free(m->undo);
    msg_env_fini(&m->env);
    for (i = 0; i < m->nhdrs; i++)
        free(m->hdrs[i].own);
    free(m->hdrs);
    free(m->raw);
    free(m->hraw);
    free(m->flat);
    for (i = 0; i < m->nedits; i++) {
        free(m->edits[i].name);
        free(m->edits[i].value);
        free(m->edits[i].params);
    }
    free(m->edits);
    mime_free(m->mime);
    free(m);
}

const struct msg_limits *
msg_limits(const struct msg *m)
{
    return &m->limits;
}

/* ------------------------------------------------------------ envelope */

int
msg_env_set(struct msg *m, const char *qid, const char *client_addr,
            const char *client_name, const char *helo, int tls,
            const char *auth_user, struct err *e)
{
    char *q = NULL, *ca = NULL, *cn = NULL, *h = NULL, *au = NULL;

    if (msg_dup(qid, &q) < 0 || msg_dup(client_addr, &ca) < 0 ||
        msg_dup(client_name, &cn) < 0 || msg_dup(helo, &h) < 0 ||
        msg_dup(auth_user, &au) < 0)
        goto nomem;
    free(m->env.qid);
    free(m->env.client_addr);
    free(m->env.client_name);
    free(m->env.helo);
    free(m->env.auth_user);
    m->env.qid = q;
    m->env.client_addr = ca;
    m->env.client_name = cn;
    m->env.helo = h;
    m->env.tls = tls;
    m->env.auth_user = au;
    return 0;

nomem:
    free(q);
    free(ca);
    free(cn);
    free(h);
    return err_nomem(e);
}

int
msg_env_origin(struct msg *m, int internal, const char *daemon_name,
               struct err *e)
{
    char *d;

    if (msg_dup(daemon_name, &d) < 0)
        return err_nomem(e);
    free(m->env.daemon_name);
    m->env.daemon_name = d;
    m->env.internal = internal != 0;
    return 0;
}

/* msg_sender_set - replace sender and params with copies; the old ones
 * go into u when it is not NULL, else they are freed. */
static int
msg_sender_set(struct msg *m, const char *addr, const char *params,
               struct msg_undo *u, struct err *e)
{
    char *a, *p;

    if (msg_dup(addr, &a) < 0)
        return err_nomem(e);
    if (msg_dup(params, &p) < 0) {
        free(a);
        return err_nomem(e);
    }
    if (u != NULL) {
        u->sender = m->env.sender;
        u->sender_params = m->env.sender_params;
    } else {
        free(m->env.sender);
        free(m->env.sender_params);
    }
    m->env.sender = a;
    m->env.sender_params = p;
    return 0;
}

int
msg_env_sender(struct msg *m, const char *addr, const char *params,
               struct err *e)
{
    if (m->marks > 0)
        return err_set(e, ERR_INTERNAL, "envelope set while a mark is open");
    return msg_sender_set(m, addr, params, NULL, e);
}

/* msg_rcpt_append - append copies of addr and params. */
static int
msg_rcpt_append(struct msg *m, const char *addr, const char *params,
                struct err *e)
{
    struct msg_rcpt *r;
    char *a, *p;

    if (addr == NULL)
        return err_set(e, ERR_INPUT, "recipient without address");
    if (msg_dup(addr, &a) < 0)
        return err_nomem(e);
    if (msg_dup(params, &p) < 0)
        goto nomem;
    if (m->env.nrcpts == m->rcpts_cap) {
        size_t ncap = m->rcpts_cap ? m->rcpts_cap * 2 : MSG_RCPTS_MIN;

        if (ncap > SIZE_MAX / sizeof(*r) ||
            (r = realloc(m->env.rcpts, ncap * sizeof(*r))) == NULL)
            goto nomem;
        m->env.rcpts = r;
        m->rcpts_cap = ncap;
    }
    r = m->env.rcpts;
    r[m->env.nrcpts].addr = a;
    r[m->env.nrcpts].params = p;
    m->env.nrcpts++;
    return 0;

nomem:
    free(a);
    free(p);
    return err_nomem(e);
}

int
msg_env_rcpt(struct msg *m, const char *addr, const char *params,
             struct err *e)
{
    if (m->marks > 0)
        return err_set(e, ERR_INTERNAL, "envelope set while a mark is open");
    return msg_rcpt_append(m, addr, params, e);
}

const struct msg_env *
msg_env(const struct msg *m)
{
    return &m->env;
}

const char *
msg_qid(const struct msg *m)
{
    return m->env.qid != NULL && *m->env.qid != '\0' ? m->env.qid : "NOQUEUE";
}

/* ------------------------------------------------------------- parsing */

/* msg_hdrs_reserve - room for one more field. */
static int
msg_hdrs_reserve(struct msg_hdr **hdrs, size_t n, size_t *cap)
{
    struct msg_hdr *p;
    size_t ncap;

    if (n < *cap)
        return 0;
    ncap = *cap ? *cap : MSG_HDRS_MIN;
    while (ncap <= n)
        ncap *= 2;
    if (ncap > SIZE_MAX / sizeof(*p) ||
        (p = realloc(*hdrs, ncap * sizeof(*p))) == NULL)
        return -1;
    *hdrs = p;
    *cap = ncap;
    return 0;
}

/* msg_parse_check - may m take a message of len octets? */
static int
msg_parse_check(const struct msg *m, size_t len, struct err *e)
{
    if (m->parsed || m->nhdrs > 0 || m->body != NULL || m->nedits > 0)
        return err_set(e, ERR_INTERNAL,
                       "message already has a header, a body or edits");
    if (m->limits.message_size != 0 && len > m->limits.message_size)
        return err_set(e, ERR_LIMIT,
                       "message size %zu exceeds message_size_limit %zu", len,
                       m->limits.message_size);
    return 0;
}

/* msg_parse_raw - parse raw (len octets and a NUL after them), which m
 * then owns, also on failure. */
static int
msg_parse_raw(struct msg *m, char *raw, size_t len, struct err *e)
{
    struct msg_hdr *hdrs = NULL, *h = NULL;
    size_t nhdrs = 0, cap = 0, longest = 0, hlen, i;
    unsigned char eol = MSG_EOL_CRLF, sep = MSG_EOL_NONE;
    char *hraw, *p, *end, *nl;
    int first = 1;

    if (msg_parse_check(m, len, e) < 0) {
        free(raw);
        return -1;
    }
    p = raw;
    end = raw + len;
    while (p < end) {
        char *next;
        size_t n, name_len;
        unsigned char le = MSG_EOL_NONE;

        nl = memchr(p, '\n', (size_t)(end - p));
        next = nl != NULL ? nl + 1 : end;
        n = (size_t)((nl != NULL ? nl : end) - p);
        if (nl != NULL) {
            le = MSG_EOL_LF;
            if (n > 0 && nl[-1] == '\r') {
                le = MSG_EOL_CRLF;
                n--;
            }
        }
        if (first && le != MSG_EOL_NONE)
            eol = le;
        first = 0;
        if (n > longest)
            longest = n;
        if (n == 0) {
            sep = le;
            p = next;
            break;
        }
        if (msg_is_wsp(*p)) {
            if (h == NULL)
                break;
            h->value_len = (size_t)(p + n - h->value);
            h->eol = le;
            p = next;
            continue;
        }
        if ((name_len = msg_field_name(p, n)) == 0)
            break;
        if (m->limits.header_count != 0 && nhdrs >= m->limits.header_count) {
            free(hdrs);
            free(raw);
            return err_set(e, ERR_LIMIT,
                           "header field count exceeds header_limit %zu",
                           m->limits.header_count);
        }
        if (msg_hdrs_reserve(&hdrs, nhdrs, &cap) < 0) {
            free(hdrs);
            free(raw);
            return err_nomem(e);
        }
        h = &hdrs[nhdrs++];
        h->name = p;
        h->name_len = name_len;
        h->value = p + name_len + 1;
        h->value_len = n - name_len - 1;
        h->own = NULL;
        h->eol = le;
        p = next;
    }

    /* The body: only its longest line is of interest here. */
    m->body = p;
    m->body_len = (size_t)(end - p);
    while (p < end) {
        size_t n;

        if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL) {
            n = (size_t)(end - p);
            p = end;
        } else {
            n = (size_t)(nl - p);
            if (n > 0 && nl[-1] == '\r')
                n--;
            p = nl + 1;
        }
        if (n > longest)
            longest = n;
    }

    /* Cut names and values into C strings in a copy of the header
     * section, so raw stays the message as it came; the octets
     * overwritten are a colon and the first octet of a line end, both
     * implied by the codes, or the NUL after the copy. */
    hlen = (size_t)(m->body - raw);
    if ((hraw = malloc(hlen + 1)) == NULL) {
        m->body = NULL;
        m->body_len = 0;
        free(hdrs);
        free(raw);
        return err_nomem(e);
    }
    memcpy(hraw, raw, hlen);
    hraw[hlen] = '\0';
    for (i = 0; i < nhdrs; i++) {
        hdrs[i].name = hraw + (hdrs[i].name - raw);
        hdrs[i].value = hraw + (hdrs[i].value - raw);
        hdrs[i].name[hdrs[i].name_len] = '\0';
        hdrs[i].value[hdrs[i].value_len] = '\0';
    }

    m->raw = raw;
    m->raw_len = len;
    m->hraw = hraw;
    m->hlen = hlen;
    m->hdrs = hdrs;
    m->nhdrs = nhdrs;
    m->hdrs_cap = cap;
    m->sep = sep;
    m->eol = eol;
    m->longest = longest;
    m->parsed = 1;
    msg_mime_drop(m);
    return 0;
}

int
msg_parse(struct msg *m, const char *data, size_t len, struct err *e)
{
    char *raw;

    if (msg_parse_check(m, len, e) < 0)
        return -1;
    if (len == SIZE_MAX || (raw = malloc(len + 1)) == NULL)
        return err_nomem(e);
    if (len > 0)
        memcpy(raw, data, len);
    raw[len] = '\0';
    return msg_parse_raw(m, raw, len, e);
}

int
msg_adopt(struct msg *m, char *data, size_t len, struct err *e)
{
    if (data == NULL) {
        if (len > 0)
            return err_set(e, ERR_INTERNAL,
                           "message of %zu octets without "
                           "data",
                           len);
        if ((data = calloc(1, 1)) == NULL)
            return err_nomem(e);
    }
    data[len] = '\0';
    return msg_parse_raw(m, data, len, e);
}

/* ------------------------------------------------------------- reading */

size_t
msg_header_count(const struct msg *m)
{
    return m->nhdrs;
}

int
msg_header_at(const struct msg *m, size_t i, const char **name,
              const char **value, size_t *value_len)
{
    if (i >= m->nhdrs)
        return -1;
    if (name != NULL)
        *name = m->hdrs[i].name;
    if (value != NULL)
        *value = m->hdrs[i].value;
    if (value_len != NULL)
        *value_len = m->hdrs[i].value_len;
    return 0;
}

/* msg_header_find - position of the index-th (1-based) field called name
 * in the header, or -1. */
static long
msg_header_find(const struct msg *m, const char *name, size_t index)
{
    size_t i, seen = 0;

    if (name == NULL || index == 0)
        return -1;
    for (i = 0; i < m->nhdrs; i++)
        if (strcasecmp(m->hdrs[i].name, name) == 0 && ++seen == index)
            return (long)i;
    return -1;
}

const char *
msg_header_get(const struct msg *m, const char *name, size_t index)
{
    long i = msg_header_find(m, name, index);

    return i < 0 ? NULL : m->hdrs[i].value;
}

size_t
msg_header_name_count(const struct msg *m, const char *name)
{
    size_t i, n = 0;

    if (name == NULL)
        return 0;
    for (i = 0; i < m->nhdrs; i++)
        if (strcasecmp(m->hdrs[i].name, name) == 0)
            n++;
    return n;
}

const char *
msg_body(const struct msg *m, size_t *len)
{
    if (len != NULL)
        *len = m->body_len;
    return m->body != NULL ? m->body : "";
}

const char *
msg_eol(const struct msg *m)
{
    return msg_eol_str[m->eol];
}

size_t
msg_longest_line(const struct msg *m)
{
    return m->longest;
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
    m->edited = 1;
    msg_mime_drop(m);
    msg_edit_commit(m, &ed);
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
    m->edited = 1;
    msg_mime_drop(m);
    msg_edit_commit(m, &ed);
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
    m->edited = 1;
    msg_mime_drop(m);
    msg_edit_commit(m, &ed);
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
    m->edited = 1;
    msg_mime_drop(m);
    msg_edit_commit(m, &ed);
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

/* msg_undo_free - free what u owns. */
static void
msg_undo_free(struct msg_undo *u)
{
    size_t i;

    free(u->hdr.own);
    free(u->sender);
    free(u->sender_params);
    for (i = 0; i < u->ngone; i++) {
        free(u->gone[i].rcpt.addr);
        free(u->gone[i].rcpt.params);
    }
    free(u->gone);
}

/* msg_undo_release - free the records of the edits since the outermost
 * mark: the edits stay. */
static void
msg_undo_release(struct msg *m)
{
    size_t i;

    for (i = m->undo_base; i < m->nedits; i++)
        msg_undo_free(&m->undo[i - m->undo_base]);
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
