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
 * The edits, the journal and the marks are in msg_edit.c; writing the
 * message out (msg_write, msg_iov) and the flat copy and MIME parse made
 * from it are in msg_write.c; msg_int.h has what the three share.
 */
#include "config.h"

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>

#include "msg/msg_int.h"

const char *const msg_eol_str[] = {"", "\n", "\r\n"};
const size_t msg_eol_len[] = {0, 1, 2};

#define MSG_HDRS_MIN 32
#define MSG_RCPTS_MIN 4

int
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
int
msg_dup(const char *s, char **out)
{
    *out = NULL;
    if (s == NULL)
        return 0;
    return (*out = msg_strdup(s)) == NULL ? -1 : 0;
}

/* msg_mime_drop - the message changed: drop the parse and the flat
 * copy made from it (the parse refers into the copy, so it goes first). */
void
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
void
msg_undo_release(struct msg *m)
{
    size_t i;

    for (i = m->undo_base; i < m->nedits; i++)
        msg_undo_free(&m->undo[i - m->undo_base]);
}

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
    free(m->trail);
    free(m);
}

/* The trail of verdicts: the chain appends one word per stage that ran;
 * it is not an edit and no rollback touches it. */
int
msg_trail_add(struct msg *m, const char *stage, const char *verdict,
              struct err *e)
{
    size_t add = strlen(stage) + 1 + strlen(verdict) + 1, i;
    char *grown;

    if ((grown = realloc(m->trail, m->trail_len + add + 1)) == NULL)
        return err_nomem(e);
    m->trail = grown;
    snprintf(m->trail + m->trail_len, add + 1, "%s%s=%s",
             m->trail_len > 0 ? " " : "", stage, verdict);
    /* A stage name is a file name: keep the words words. */
    for (i = m->trail_len; m->trail[i] != '\0'; i++)
        if ((unsigned char)m->trail[i] < 0x21 && i > m->trail_len)
            m->trail[i] = '_';
    m->trail_len += strlen(m->trail + m->trail_len);
    return 0;
}

const char *
msg_trail(const struct msg *m)
{
    return m->trail != NULL ? m->trail : "";
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
int
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
int
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
int
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
long
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

/* msg_raw_line - the line at data[off..len): its length without the
 * line end in *n; returns the offset of the next line. */
static size_t
msg_raw_line(const char *data, size_t len, size_t off, size_t *n)
{
    const char *nl = memchr(data + off, '\n', len - off);
    size_t next = nl != NULL ? (size_t)(nl - data) + 1 : len;

    *n = (nl != NULL ? (size_t)(nl - data) : len) - off;
    if (nl != NULL && *n > 0 && data[off + *n - 1] == '\r')
        (*n)--;
    return next;
}

int
msg_raw_field(const char *data, size_t len, const char *name, char *out,
              size_t n)
{
    size_t k = strlen(name), off = 0, o = 0, next, l, i, name_len;
    int rc = 1, in = 0, any = 0;

    out[0] = '\0';
    /* the grammar of msg_parse_raw(): the header ends at an empty line
     * or at the first line that is neither a field nor a continuation */
    while (off < len) {
        next = msg_raw_line(data, len, off, &l);
        if (l == 0)
            break;
        if (msg_is_wsp(data[off])) {
            if (!any)
                break; /* a continuation of nothing */
            i = 0;     /* of ours, or of another field */
        } else {
            if ((name_len = msg_field_name(data + off, l)) == 0 || in)
                break;
            any = 1;
            if (name_len != k || strncasecmp(data + off, name, k) != 0) {
                off = next;
                continue;
            }
            in = 1;
            i = k + 1;
        }
        for (; in && i < l; i++) {
            char c = data[off + i];

            if (o == 0 && msg_is_wsp(c))
                continue;
            if (o + 1 < n)
                out[o++] = c;
            else
                rc = -1;
        }
        off = next;
    }
    if (!in)
        return 0;
    while (o > 0 && msg_is_wsp(out[o - 1]))
        o--;
    out[o] = '\0';
    return rc;
}
