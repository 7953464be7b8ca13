/*
 * bounce - reading bounces, complaints and auto-replies: see bounce.h
 *
 * GMime parses the message once (msg/mime.h, under the caller's depth
 * and part limits); the walk keeps to that depth. Leaf parts are decoded
 * into one GMime memory stream each; only the first BOUNCE_TEXT_MAX
 * octets of all text together are read. The field parser (DSN groups,
 * ARF fields, returned headers) and the text reader work line by line
 * over those bounded copies, cutting each line at BOUNCE_LINE_MAX.
 * Returned messages (message/rfc822) are never walked into for reports:
 * a bounce quoted inside the returned message must not count.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <gmime/gmime.h>

#include "util/buf.h"
#include "msg/mime.h"
#include "queue/bounce.h"
#include "queue/verp.h"

#define BOUNCE_EXCLUDE_MAX 8
#define BOUNCE_DEPTH_MAX 16
#define BOUNCE_PARTS_MAX 200

struct bounce_walk {
    struct bounce_report *rep;
    const char *verp_domain, *match_header;
    struct buf text; /* the report's text, for the text formats */
    unsigned depth_max;
    int structured; /* a delivery-status or feedback-report part seen */
    unsigned parts; /* walked so far, at most BOUNCE_PARTS_MAX */
};

const char *
bounce_kind_name(enum bounce_kind k)
{
    switch (k) {
    case BOUNCE_DSN:
        return "dsn";
    case BOUNCE_TEXT:
        return "text";
    case BOUNCE_ARF:
        return "arf";
    case BOUNCE_AUTOREPLY:
        return "autoreply";
    default:
        return "none";
    }
}

/* ------------------------------------------------------------ helpers */

static int bounce_has(const char *p, size_t n, const char *word);

/* bounce_copy - n octets of p into out (size m), trimmed, with control
 * characters turned to spaces (the values end up in logs and CSV). */
static void
bounce_copy(char *out, size_t m, const char *p, size_t n)
{
    size_t i, o = 0;

    while (n > 0 && isspace((unsigned char)*p)) {
        p++;
        n--;
    }
    while (n > 0 && isspace((unsigned char)p[n - 1]))
        n--;
    for (i = 0; i < n && o + 1 < m; i++)
        out[o++] = (unsigned char)p[i] < 32 || p[i] == 127 ? ' ' : p[i];
    out[o] = '\0';
}

/* bounce_addr_clean - the address of a field value such as
 * "rfc822; <user@example.com>" into out; 0, or -1 when none. */
static int
bounce_addr_clean(const char *v, char *out, size_t m)
{
    const char *semi = strchr(v, ';'), *end, *at;

    if (semi != NULL)
        v = semi + 1;
    while (*v == ' ' || *v == '\t' || *v == '<')
        v++;
    end = v + strcspn(v, " \t<>;\"()");
    at = end > v ? memchr(v, '@', (size_t)(end - v)) : NULL;
    if (at == NULL || at == v || v[0] == '.' || at[-1] == '.' ||
        bounce_has(v, (size_t)(end - v), ".."))
        return -1; /* "david...@gmail.com": a shortened address */
    bounce_copy(out, m, v, (size_t)(end - v));
    return out[0] ? 0 : -1;
}

/* bounce_status_in - the first "d.d.d" status with d a class 2, 4 or 5
 * in p (n octets) into out (16 octets); 1 found, 0 not. */
static int
bounce_status_in(const char *p, size_t n, char out[16])
{
    size_t i, k;

    for (i = 0; i + 5 <= n; i++) {
        const char *s = p + i;
        size_t a, b;

        if ((s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.' ||
            (i > 0 && (isalnum((unsigned char)s[-1]) || s[-1] == '.')))
            continue;
        for (a = 2; a < n - i && a < 5 && isdigit((unsigned char)s[a]); a++)
            ;
        if (a == 2 || a >= n - i || s[a] != '.')
            continue;
        for (b = a + 1; b < n - i && b < a + 4 && isdigit((unsigned char)s[b]);
             b++)
            ;
        if (b == a + 1 ||
            (b < n - i && (isalnum((unsigned char)s[b]) || s[b] == '.')))
            continue;
        k = b < 15 ? b : 15;
        memcpy(out, s, k);
        out[k] = '\0';
        return 1;
    }
    return 0;
}

/* bounce_code_in - the first SMTP reply code (4xx or 5xx, a word of its
 * own) in p (n octets); 0 when none. */
static int
bounce_code_in(const char *p, size_t n)
{
    size_t i;

    for (i = 0; i + 3 <= n; i++) {
        const char *s = p + i;

        if ((s[0] != '4' && s[0] != '5') || !isdigit((unsigned char)s[1]) ||
            !isdigit((unsigned char)s[2]) || s[1] > '5')
            continue;
        if (i > 0 && (isalnum((unsigned char)s[-1]) || s[-1] == '.' ||
                      s[-1] == '-' || s[-1] == '_'))
            continue;
        if (i + 3 < n && s[3] != ' ' && s[3] != '-' && s[3] != ')')
            continue;
        return (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
    }
    return 0;
}

/* bounce_next_line - the next line of p..end into *l, *ln (without its
 * line end, cut at BOUNCE_LINE_MAX); returns where the one after
 * starts, or NULL at the end. */
static const char *
bounce_next_line(const char *p, const char *end, const char **l, size_t *ln)
{
    const char *nl;

    if (p >= end)
        return NULL;
    nl = memchr(p, '\n', (size_t)(end - p));
    *l = p;
    *ln = (size_t)((nl != NULL ? nl : end) - p);
    if (*ln > 0 && p[*ln - 1] == '\r')
        (*ln)--;
    if (*ln > BOUNCE_LINE_MAX)
        *ln = BOUNCE_LINE_MAX;
    return nl != NULL ? nl + 1 : end;
}

static struct bounce_rcpt *
bounce_add(struct bounce_report *rep, const char *addr)
{
    size_t i;

    for (i = 0; i < rep->n; i++)
        if (strcasecmp(rep->r[i].addr, addr) == 0)
            return NULL; /* once is enough */
    if (rep->n >= BOUNCE_RCPT_MAX)
        return NULL;
    memset(&rep->r[rep->n], 0, sizeof(rep->r[0]));
    snprintf(rep->r[rep->n].addr, sizeof(rep->r[0].addr), "%s", addr);
    return &rep->r[rep->n++];
}

/* ------------------------------------------------------ field groups */

/* A group of "Name: value" fields (folded lines joined), as DSN
 * per-message and per-recipient groups, ARF fields and returned
 * headers are. */
#define BOUNCE_FIELDS 24
struct bounce_group {
    size_t n;
    char name[BOUNCE_FIELDS][40];
    char value[BOUNCE_FIELDS][BOUNCE_LINE_MAX + 1];
};

static const char *
bounce_field(const struct bounce_group *g, const char *name)
{
    size_t i;

    for (i = 0; i < g->n; i++)
        if (strcasecmp(g->name[i], name) == 0)
            return g->value[i];
    return NULL;
}

typedef void (*bounce_group_cb)(struct bounce_walk *w,
                                const struct bounce_group *g);

/* bounce_groups - p (n octets) as groups of fields separated by blank
 * lines, each handed to cb. */
static void
bounce_groups(struct bounce_walk *w, const char *p, size_t n,
              bounce_group_cb cb)
{
    static __thread struct bounce_group g; /* 25 KB: not on the stack */
    const char *end = p + n, *l;
    size_t ln;

    g.n = 0;
    while ((p = bounce_next_line(p, end, &l, &ln)) != NULL) {
        const char *colon;

        if (ln == 0 || (ln > 0 && strspn(l, " \t") >= ln)) {
            if (g.n > 0)
                cb(w, &g);
            g.n = 0;
            continue;
        }
        if ((l[0] == ' ' || l[0] == '\t') && g.n > 0) {
            char *v = g.value[g.n - 1];
            size_t have = strlen(v);

            if (have + 2 < sizeof(g.value[0])) {
                v[have++] = ' ';
                bounce_copy(v + have, sizeof(g.value[0]) - have, l, ln);
            }
            continue;
        }
        colon = memchr(l, ':', ln);
        if (colon == NULL || colon == l || (size_t)(colon - l) >= 40 ||
            g.n >= BOUNCE_FIELDS)
            continue;
        bounce_copy(g.name[g.n], sizeof(g.name[0]), l, (size_t)(colon - l));
        bounce_copy(g.value[g.n], sizeof(g.value[0]), colon + 1,
                    ln - (size_t)(colon - l) - 1);
        g.n++;
    }
    if (g.n > 0)
        cb(w, &g);
}

static void
bounce_dsn_group(struct bounce_walk *w, const struct bounce_group *g)
{
    const char *fr = bounce_field(g, "Final-Recipient"),
               *orc = bounce_field(g, "Original-Recipient"),
               *act = bounce_field(g, "Action"),
               *st = bounce_field(g, "Status"),
               *diag = bounce_field(g, "Diagnostic-Code");
    char addr[BOUNCE_ADDR_MAX];
    struct bounce_rcpt *r;

    /* the address we sent to first: a forwarder's final one is not ours */
    if ((orc == NULL || bounce_addr_clean(orc, addr, sizeof(addr)) < 0) &&
        (fr == NULL || bounce_addr_clean(fr, addr, sizeof(addr)) < 0))
        return; /* the per-message group, or one without an address */
    /* a report on recipients: what it does not call a failure (delivered,
     * relayed, expanded) is no bounce, and its text is not read either */
    w->structured = w->structured ? w->structured : 1;
    /* RFC 3464's words, and the "failure" and "error" some MTAs write */
    if (act != NULL && (strncasecmp(act, "deliver", 7) == 0 ||
                        strncasecmp(act, "relayed", 7) == 0 ||
                        strncasecmp(act, "expanded", 8) == 0))
        return; /* not a failure */
    if (act != NULL && strncasecmp(act, "fail", 4) != 0 &&
        strncasecmp(act, "error", 5) != 0 && strncasecmp(act, "delay", 5) != 0)
        act = NULL; /* a word of its own: the status decides */
    if (act == NULL && (st == NULL || (st[0] != '5' && st[0] != '4')))
        return;
    if ((r = bounce_add(w->rep, addr)) == NULL)
        return;
    r->failed = act != NULL ? strncasecmp(act, "delay", 5) != 0 : st[0] == '5';
    if (st != NULL && !bounce_status_in(st, strlen(st), r->status) &&
        (r->code = bounce_code_in(st, strlen(st))) != 0)
        snprintf(r->status, sizeof(r->status), "%d.0.0", r->code / 100);
    if (diag != NULL) {
        const char *d = strchr(diag, ';');

        d = d != NULL ? d + 1 : diag;
        bounce_copy(r->diag, sizeof(r->diag), d, strlen(d));
        if (bounce_code_in(r->diag, strlen(r->diag)) != 0)
            r->code = bounce_code_in(r->diag, strlen(r->diag));
        /* "Status: 5.0.0" next to "550 5.7.1 ...": the reply says more */
        if (r->status[0] == '\0' || strcmp(r->status + 1, ".0.0") == 0) {
            char better[16];

            if (bounce_status_in(r->diag, strlen(r->diag), better) &&
                (r->status[0] == '\0' || better[0] == r->status[0]))
                memcpy(r->status, better, sizeof(better));
        }
    }
}

static void
bounce_arf_group(struct bounce_walk *w, const struct bounce_group *g)
{
    const char *ft = bounce_field(g, "Feedback-Type"),
               *rc = bounce_field(g, "Original-Rcpt-To");

    if (ft != NULL && w->rep->feedback_type[0] == '\0')
        bounce_copy(w->rep->feedback_type, sizeof(w->rep->feedback_type), ft,
                    strlen(ft));
    if (rc != NULL && w->rep->arf_rcpt[0] == '\0')
        (void)bounce_addr_clean(rc, w->rep->arf_rcpt,
                                sizeof(w->rep->arf_rcpt));
    if (ft != NULL)
        w->structured = 2;
}

/* bounce_returned - p (n octets), the returned message or its headers:
 * its Message-ID, the match header and a VERP token, where none was
 * found yet. Only the header block is read. */
static void
bounce_returned_group(struct bounce_walk *w, const struct bounce_group *g)
{
    struct bounce_report *rep = w->rep;
    const char *v;
    size_t i;

    if (rep->msgid[0] == '\0' && (v = bounce_field(g, "Message-ID")) != NULL)
        bounce_copy(rep->msgid, sizeof(rep->msgid), v, strcspn(v, " \t"));
    if (rep->match[0] == '\0' && w->match_header != NULL &&
        (v = bounce_field(g, w->match_header)) != NULL)
        bounce_copy(rep->match, sizeof(rep->match), v, strlen(v));
    if (rep->token[0] == '\0' && w->verp_domain != NULL)
        for (i = 0; i < g->n; i++) {
            const char *tok;
            size_t tl;

            if (verp_find(g->value[i], strlen(g->value[i]), w->verp_domain,
                          &tok, &tl)) {
                bounce_copy(rep->token, sizeof(rep->token), tok, tl);
                break;
            }
        }
}

static void
bounce_returned(struct bounce_walk *w, const char *p, size_t n)
{
    const char *end = p + n, *q, *l;
    size_t ln;

    /* blank lines after a "--- copy of the message" line first */
    while (p < end && (*p == '\r' || *p == '\n' || *p == ' ' || *p == '\t'))
        p++;
    n = (size_t)(end - p);
    q = p;
    /* the header block only: up to the first empty line */
    while ((q = bounce_next_line(q, end, &l, &ln)) != NULL)
        if (ln == 0) {
            n = (size_t)(l - p);
            break;
        }
    /* one group: the header has no blank lines */
    bounce_groups(w, p, n, bounce_returned_group);
}

/* ----------------------------------------------------------- the walk */

/* bounce_decoded - the decoded content of part, at most max octets, into
 * out (appended); 0, or -1 when it cannot be had. */
static int
bounce_decoded(GMimePart *part, struct buf *out, size_t max)
{
    GMimeDataWrapper *dw = g_mime_part_get_content(part);
    GMimeStream *ms;
    GByteArray *ba;
    struct err e;
    int rc = 0;

    if (dw == NULL)
        return -1;
    ms = g_mime_stream_mem_new();
    if (g_mime_data_wrapper_write_to_stream(dw, ms) < 0) {
        g_object_unref(ms);
        return -1;
    }
    ba = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(ms));
    if (ba != NULL && ba->len > 0) {
        size_t k = ba->len < max ? ba->len : max;

        err_clear(&e);
        if (buf_append(out, (const char *)ba->data, k, &e) < 0)
            rc = -1;
    }
    g_object_unref(ms);
    return rc;
}

/* bounce_html - the text of HTML p (n octets) appended to out: tags
 * dropped (line breaks for the block ones), &nbsp; &lt; &gt; &amp;
 * decoded; enough for the addresses and reasons of a bounce. */
static void
bounce_html(struct buf *out, const char *p, size_t n)
{
    static const struct {
        const char *ent;
        char c;
    } ents[] = {{"&nbsp;", ' '}, {"&lt;", '<'}, {"&gt;", '>'}, {"&amp;", '&'}};
    struct err e;
    size_t i = 0, k;

    if (p == NULL)
        return;
    while (i < n && out->len + 2 < BOUNCE_TEXT_MAX) {
        if (p[i] == '<') {
            const char *gt = memchr(p + i, '>', n - i);
            size_t tl = gt != NULL ? (size_t)(gt - (p + i)) + 1 : n - i;
            int block = tl > 2 && (strchr("bBpPdDtTlLhH/", p[i + 1]) != NULL);

            (void)buf_append(out, block ? "\n" : " ", 1, &e);
            i += tl;
            continue;
        }
        if (p[i] == '&') {
            for (k = 0; k < sizeof(ents) / sizeof(ents[0]); k++)
                if (n - i >= strlen(ents[k].ent) &&
                    strncasecmp(p + i, ents[k].ent, strlen(ents[k].ent)) == 0)
                    break;
            if (k < sizeof(ents) / sizeof(ents[0])) {
                (void)buf_append(out, &ents[k].c, 1, &e);
                i += strlen(ents[k].ent);
                continue;
            }
        }
        (void)buf_append(out, p + i, 1, &e);
        i++;
    }
    (void)buf_append(out, "\n", 1, &e);
}

static void
bounce_walk(struct bounce_walk *w, GMimeObject *obj, unsigned depth)
{
    GMimeContentType *ct;
    const char *type, *sub;

    if (obj == NULL || depth > w->depth_max || ++w->parts > BOUNCE_PARTS_MAX)
        return;
    if (GMIME_IS_MULTIPART(obj)) {
        int i, n = g_mime_multipart_get_count(GMIME_MULTIPART(obj));

        for (i = 0; i < n; i++)
            bounce_walk(w, g_mime_multipart_get_part(GMIME_MULTIPART(obj), i),
                        depth + 1);
        return;
    }
    if (GMIME_IS_MESSAGE_PART(obj)) {
        GMimeMessage *m =
            g_mime_message_part_get_message(GMIME_MESSAGE_PART(obj));
        char *h;

        if (m == NULL)
            return;
        h = g_mime_object_get_headers(GMIME_OBJECT(m), NULL);
        if (h != NULL) {
            bounce_returned(w, h, strlen(h));
            g_free(h);
        }
        return;
    }
    if (!GMIME_IS_PART(obj))
        return;
    ct = g_mime_object_get_content_type(obj);
    type = ct != NULL ? g_mime_content_type_get_media_type(ct) : NULL;
    sub = ct != NULL ? g_mime_content_type_get_media_subtype(ct) : NULL;
    if (type == NULL || sub == NULL) {
        type = "text";
        sub = "plain";
    }
    if (strcasecmp(type, "message") == 0 &&
        (strcasecmp(sub, "delivery-status") == 0 ||
         strcasecmp(sub, "global-delivery-status") == 0)) {
        struct buf b;

        buf_init(&b, BOUNCE_TEXT_MAX);
        if (bounce_decoded(GMIME_PART(obj), &b, BOUNCE_TEXT_MAX) == 0 &&
            b.len > 0)
            bounce_groups(w, b.data, b.len, bounce_dsn_group);
        buf_fini(&b);
    } else if (strcasecmp(type, "message") == 0 &&
               strcasecmp(sub, "feedback-report") == 0) {
        struct buf b;

        buf_init(&b, BOUNCE_TEXT_MAX);
        if (bounce_decoded(GMIME_PART(obj), &b, BOUNCE_TEXT_MAX) == 0 &&
            b.len > 0)
            bounce_groups(w, b.data, b.len, bounce_arf_group);
        buf_fini(&b);
    } else if ((strcasecmp(type, "text") == 0 &&
                (strcasecmp(sub, "rfc822-headers") == 0 ||
                 strcasecmp(sub, "rfc822-header") == 0)) ||
               (strcasecmp(type, "message") == 0 &&
                strcasecmp(sub, "rfc822") == 0)) {
        struct buf b;

        buf_init(&b, BOUNCE_TEXT_MAX);
        if (bounce_decoded(GMIME_PART(obj), &b, BOUNCE_TEXT_MAX) == 0 &&
            b.len > 0)
            bounce_returned(w, b.data, b.len);
        buf_fini(&b);
    } else if (strcasecmp(type, "text") == 0 &&
               strcasecmp(sub, "plain") == 0 &&
               w->text.len < BOUNCE_TEXT_MAX) {
        (void)bounce_decoded(GMIME_PART(obj), &w->text,
                             BOUNCE_TEXT_MAX - w->text.len);
        (void)buf_append(&w->text, "\n", 1, &(struct err){0});
    } else if (strcasecmp(type, "text") == 0 && strcasecmp(sub, "html") == 0 &&
               w->text.len < BOUNCE_TEXT_MAX) {
        struct buf b;

        buf_init(&b, BOUNCE_TEXT_MAX);
        if (bounce_decoded(GMIME_PART(obj), &b,
                           BOUNCE_TEXT_MAX - w->text.len) == 0)
            bounce_html(&w->text, b.data, b.len);
        buf_fini(&b);
    }
}

/* ------------------------------------------------------ text formats */

static int
bounce_has(const char *p, size_t n, const char *word)
{
    size_t k = strlen(word), i;

    for (i = 0; i + k <= n; i++)
        if (strncasecmp(p + i, word, k) == 0)
            return 1;
    return 0;
}

/* bounce_cutoff - 1 when line l starts the returned message */
static int
bounce_cutoff(const char *l, size_t ln)
{
    static const char *const marks[] = {
        "original message",    "copy of the message", "copy of your message",
        "returned message",    "message header",      "original header",
        "below this line",     "unsent message",      "text of the original",
        "message follows",     "returned mail",       "message text follows",
        "undelivered message", "headers of",          NULL};
    size_t i;

    if (ln > 9 && (strncasecmp(l, "Received:", 9) == 0 ||
                   strncasecmp(l, "Return-Path:", 12) == 0))
        return 1;
    if (ln == 0 || isalnum((unsigned char)l[0]))
        return 0; /* "The original message was received at..." */
    for (i = 0; marks[i] != NULL; i++)
        if (bounce_has(l, ln, marks[i]))
            return 1;
    return 0;
}

/* bounce_quoted_header - 1 when l is "To: ...", "Subject: ..." and the
 * like: the report quoting the message, not naming a recipient */
static int
bounce_quoted_header(const char *l, size_t ln)
{
    static const char *const names[] = {
        "to",          "from",     "cc",           "bcc",    "subject",
        "sent",        "date",     "reply-to",     "sender", "message-id",
        "return-path", "received", "delivered-to", "x-",     NULL};
    size_t i, k;

    while (ln > 0 && (*l == ' ' || *l == '\t' || *l == '>')) {
        l++;
        ln--;
    }
    for (i = 0; names[i] != NULL; i++) {
        k = strlen(names[i]);
        if (ln > k && strncasecmp(l, names[i], k) == 0) {
            const char *p = l + k;

            if (names[i][k - 1] == '-')
                p += strcspn(p, ": \t");
            while (p < l + ln && (*p == ' ' || *p == '\t'))
                p++;
            if (p < l + ln && *p == ':')
                return 1;
        }
    }
    return 0;
}

static int
bounce_local_ch(int c)
{
    return isalnum(c) || (c != 0 && strchr(".!#$%&'*+/=?^_`{|}~-", c));
}

/* bounce_next_addr - the next address in l..l+ln from *pos into out;
 * 1 found, 0 none left. */
static int
bounce_next_addr(const char *l, size_t ln, size_t *pos, char *out, size_t m)
{
    size_t i;

    for (i = *pos; i < ln; i++) {
        size_t a, b;

        if (l[i] != '@')
            continue;
        for (a = i; a > 0 && bounce_local_ch((unsigned char)l[a - 1]); a--)
            ;
        for (b = i + 1; b < ln && (isalnum((unsigned char)l[b]) ||
                                   l[b] == '.' || l[b] == '-');
             b++)
            ;
        while (b > i + 1 && l[b - 1] == '.')
            b--;
        while (a < i && (l[a] == '.' || l[a] == '\'' || l[a] == '`'))
            a++;
        /* Exchange's "SMTP=user@..." and the like */
        for (size_t q = a; q < i; q++)
            if (l[q] == '=' && q - a <= 6)
                a = q + 1;
        *pos = b > i ? b : i + 1;
        if (a == i || b == i + 1 || b - a >= m ||
            memchr(l + i + 1, '.', b - i - 1) == NULL ||
            (b < ln && l[b] == '@') || l[i - 1] == '.' ||
            bounce_has(l + a, b - a, ".."))
            continue; /* "david...@gmail.com" is a shortened address */
        memcpy(out, l + a, b - a);
        out[b - a] = '\0';
        return 1;
    }
    *pos = ln;
    return 0;
}

static int
bounce_excluded(const struct bounce_walk *w, const char *addr,
                char ex[][BOUNCE_ADDR_MAX], size_t nex)
{
    static const char *const roles[] = {
        "postmaster@", "mailer-daemon@", "mail-daemon@",
        "abuse@",      "hostmaster@",    "mailer@",
        NULL};
    const char *at = strrchr(addr, '@');
    size_t i;

    for (i = 0; roles[i] != NULL; i++)
        if (strncasecmp(addr, roles[i], strlen(roles[i])) == 0)
            return 1;
    for (i = 0; i < nex; i++)
        if (strcasecmp(addr, ex[i]) == 0)
            return 1;
    if (w->verp_domain != NULL && at != NULL) {
        size_t dl = strlen(w->verp_domain), al = strlen(at + 1);

        if (al >= dl && strcasecmp(at + 1 + al - dl, w->verp_domain) == 0)
            return 1;
    }
    return 0;
}

/* bounce_classify - status and code of r from the words near it */
static void
bounce_classify(struct bounce_rcpt *r, const char *near, size_t n)
{
    static const char *const gone[] = {
        "unknown user",      "user unknown",      "no such user",
        "does not exist",    "unknown recipient", "not recognized",
        "invalid recipient", "no mailbox",        "not a valid",
        "disabled",          "discontinued",      "no longer",
        "account has been",  "doesn't have",      "does not have",
        "not found",         "unknown address",   "no such",
        "unrouteable",       "bad destination",   "not listed",
        "unknown local",     "invalid address",   NULL};
    static const char *const full[] = {"quota", "mailbox full",
                                       "mailbox is full", "over limit", NULL};
    size_t i;

    if (!bounce_status_in(near, n, r->status))
        r->status[0] = '\0';
    r->code = bounce_code_in(near, n);
    if (r->status[0] != '\0' || r->code != 0) {
        if (r->status[0] == '\0')
            snprintf(r->status, sizeof(r->status), "%d.0.0", r->code / 100);
        return;
    }
    for (i = 0; full[i] != NULL; i++)
        if (bounce_has(near, n, full[i])) {
            snprintf(r->status, sizeof(r->status), "%s",
                     r->failed ? "5.2.2" : "4.2.2");
            return;
        }
    for (i = 0; gone[i] != NULL; i++)
        if (bounce_has(near, n, gone[i])) {
            snprintf(r->status, sizeof(r->status), "%s",
                     r->failed ? "5.1.1" : "4.1.1");
            return;
        }
    snprintf(r->status, sizeof(r->status), "%s",
             r->failed ? "5.0.0" : "4.0.0");
}

/* bounce_failing - 1 when line l says that something failed */
static int
bounce_failing(const char *l, size_t ln)
{
    static const char *const words[] = {
        "deliver",     "fail",          "unknown",
        "not exist",   "no such",       "reject",
        "error",       "invalid",       "unable",
        "bounce",      "refused",       "denied",
        "permanent",   "disabled",      "quota",
        "did not",     "could not",     "cannot",
        "can't",       "recipient",     "mailbox",
        "not found",   "unroutable",    "addressed",
        "hops",        "expanded from", "generated from",
        "unrouteable", "blocked",       "full",
        NULL};
    size_t i;

    for (i = 0; words[i] != NULL; i++)
        if (bounce_has(l, ln, words[i]))
            return 1;
    return 0;
}

/* bounce_from_before - 1 when the address at at (in l) follows "from"
 * (a sender, "mail from <x>"), but not "expanded from" or "generated
 * from" (the recipient's own alias) */
static int
bounce_from_before(const char *l, const char *at)
{
    const char *p = at;

    while (p > l && (p[-1] == ' ' || p[-1] == '<' || p[-1] == ':'))
        p--;
    if (p - l < 4 || strncasecmp(p - 4, "from", 4) != 0 ||
        (p - l > 4 && isalpha((unsigned char)p[-5])))
        return 0;
    p -= 4;
    while (p > l && p[-1] == ' ')
        p--;
    return !((p - l >= 8 && strncasecmp(p - 8, "expanded", 8) == 0) ||
             (p - l >= 9 && strncasecmp(p - 9, "generated", 9) == 0));
}

/* bounce_find - where addr (as taken out of l) is in l, or NULL */
static const char *
bounce_find(const char *l, size_t ln, const char *addr)
{
    size_t k = strlen(addr), i;

    for (i = 0; i + k <= ln; i++)
        if (memcmp(l + i, addr, k) == 0)
            return l + i;
    return NULL;
}

/* bounce_text - the text formats over w->text */
static void
bounce_text(struct bounce_walk *w, char ex[][BOUNCE_ADDR_MAX], size_t nex)
{
    static const char *const delay[] = {"will continue",
                                        "will keep trying",
                                        "still trying",
                                        "will be retried",
                                        "not yet been delivered",
                                        "has been delayed",
                                        "delivery delayed",
                                        "will retry",
                                        "still undelivered",
                                        "still being retried",
                                        NULL};
    const char *p = w->text.data, *end = p + w->text.len, *l, *stop = end;
    size_t ln, i;
    int warning = 0, listing = 0;

    if (p == NULL)
        return;
    /* the report's part of the text ends where the returned message
     * starts; the rest is the returned message */
    for (const char *q = p; (q = bounce_next_line(q, end, &l, &ln)) != NULL;)
        if (bounce_cutoff(l, ln)) {
            stop = l;
            bounce_returned(w, q, (size_t)(end - q));
            break;
        }
    for (i = 0; delay[i] != NULL; i++)
        if (bounce_has(p, (size_t)(stop - p), delay[i]))
            warning = 1;
    if (warning && (bounce_has(p, (size_t)(stop - p), "permanent") ||
                    bounce_has(p, (size_t)(stop - p), "fatal")))
        warning = 0;
    while ((p = bounce_next_line(p, stop, &l, &ln)) != NULL) {
        char addr[BOUNCE_ADDR_MAX];
        size_t pos = 0, lead = strspn(l, " \t<\"'`>(*-:"),
               sp = strspn(l, " \t");
        int failing;

        if (lead > ln)
            lead = ln;
        if (bounce_quoted_header(l, ln))
            continue;
        /* after the list, a new section ("----- Error detail") is prose */
        if (sp > ln)
            sp = ln;
        if (w->rep->n > 0 && ln - sp > 3 &&
            (strncmp(l + sp, "---", 3) == 0 ||
             strncmp(l + sp, "===", 3) == 0 ||
             strncmp(l + sp, "***", 3) == 0) &&
            !bounce_has(l, ln, "transcript") && !bounce_has(l, ln, "follow"))
            break;
        /* "----- Error detail": what follows explains, it lists nobody */
        if (ln - sp > 3 && strncmp(l + sp, "---", 3) == 0 &&
            (bounce_has(l, ln, "detail") || bounce_has(l, ln, "explanation")))
            break;
        /* the lines after "... the following recipients:" list them */
        if (bounce_has(l, ln, "following") &&
            (bounce_has(l, ln, "recipient") || bounce_has(l, ln, "address") ||
             bounce_has(l, ln, "destination")))
            listing = 5;
        failing =
            bounce_failing(l, ln) || bounce_code_in(l, ln) != 0 || listing > 0;
        if (listing > 0)
            listing--;
        while (bounce_next_addr(l, ln, &pos, addr, sizeof(addr))) {
            struct bounce_rcpt *r;
            const char *near_end = p, *l2, *at;
            size_t ln2, k;

            /* an address that starts the line, or one on a line that says
             * something failed; never "mail from <x>" */
            at = bounce_find(l, ln, addr);
            if (at == NULL || (at - l > (long)lead + 1 && !failing))
                continue;
            if (bounce_from_before(l, at))
                continue;
            if (bounce_excluded(w, addr, ex, nex) ||
                (r = bounce_add(w->rep, addr)) == NULL)
                continue;
            r->failed = !warning;
            /* the reason: this line and the next few */
            for (k = 0; k < 3 && near_end != NULL && near_end < stop; k++)
                near_end = bounce_next_line(near_end, stop, &l2, &ln2);
            if (near_end == NULL)
                near_end = stop;
            /* long decoded lines: the reason is near, or not at all */
            if ((size_t)(near_end - l) > 4 * BOUNCE_LINE_MAX)
                near_end = l + 4 * BOUNCE_LINE_MAX;
            bounce_classify(r, l, (size_t)(near_end - l));
            if (r->status[0] == '2') {
                w->rep->n--; /* "delivered ... 250 2.0.0 Ok": no failure */
                continue;
            }
            bounce_copy(r->diag, sizeof(r->diag), l,
                        (size_t)(near_end - l) < sizeof(r->diag) - 1
                            ? (size_t)(near_end - l)
                            : sizeof(r->diag) - 1);
        }
    }
}

/* -------------------------------------------------------------- entry */

static const char *
bounce_header(GMimeObject *o, const char *name)
{
    const char *v = g_mime_object_get_header(o, name);

    return v != NULL ? v : "";
}

/* bounce_is_autoreply - the markers of vacation programs and
 * auto-responders (strong: 1), and RFC 3834 Auto-Submitted: auto-replied
 * (weak: 2; some MTAs mark their bounces so) */
static int
bounce_is_autoreply(GMimeObject *top)
{
    const char *as = bounce_header(top, "Auto-Submitted");
    const char *prec = bounce_header(top, "Precedence");
    const char *subj = bounce_header(top, "Subject");

    while (*as == ' ')
        as++;
    if (g_mime_object_get_header(top, "X-Autoreply") != NULL ||
        g_mime_object_get_header(top, "X-Autorespond") != NULL)
        return 1;
    if (strcasestr(prec, "auto_reply") != NULL)
        return 1;
    if (strncasecmp(subj, "Auto:", 5) == 0 ||
        strcasestr(subj, "out of office") != NULL ||
        strcasestr(subj, "vacation") != NULL ||
        strcasestr(subj, "automatic reply") != NULL ||
        strcasestr(subj, "autoreply") != NULL ||
        strcasestr(subj, "auto-reply") != NULL)
        return 1;
    return strncasecmp(as, "auto-replied", 12) == 0 ? 2 : 0;
}

/* bounce_looks_like - from a mailer daemon, a null Return-Path, or a
 * non-delivery subject */
static int
bounce_looks_like(GMimeObject *top)
{
    static const char *const subjects[] = {
        "undeliver",  "deliver",     "failure",           "failed",
        "returned",   "bounce",      "rejected",          "not delivered",
        "nondeliver", "non-deliver", "mail system error", "unable to",
        "error",      "warning",     "unknown",           NULL};
    const char *from = bounce_header(top, "From");
    const char *rp = bounce_header(top, "Return-Path");
    const char *subj = bounce_header(top, "Subject");
    size_t i;

    if (strcasestr(from, "mailer-daemon") != NULL ||
        strcasestr(from, "mail-daemon") != NULL ||
        strcasestr(from, "postmaster") != NULL ||
        strcasestr(from, "mail delivery") != NULL ||
        strcasestr(from, "mailer") != NULL)
        return 1;
    while (*rp == ' ')
        rp++;
    if (strncmp(rp, "<>", 2) == 0)
        return 1;
    if (strcasestr(bounce_header(top, "Content-Type"), "multipart/report") !=
        NULL)
        return 1;
    for (i = 0; subjects[i] != NULL; i++)
        if (strcasestr(subj, subjects[i]) != NULL)
            return 1;
    return 0;
}

/* bounce_exclusions - the addresses of the bounce's own From, To, Cc,
 * Reply-To, Sender and Return-Path: never a failed recipient */
static size_t
bounce_exclusions(GMimeObject *top, char ex[][BOUNCE_ADDR_MAX])
{
    static const char *const names[] = {"From",      "To",       "Cc",
                                        "Sender",    "Reply-To", "Return-Path",
                                        "Errors-To", NULL};
    size_t n = 0, i;

    for (i = 0; names[i] != NULL && n < BOUNCE_EXCLUDE_MAX; i++) {
        const char *v = bounce_header(top, names[i]);
        size_t pos = 0, len = strlen(v);

        while (n < BOUNCE_EXCLUDE_MAX &&
               bounce_next_addr(v,
                                len < BOUNCE_LINE_MAX ? len : BOUNCE_LINE_MAX,
                                &pos, ex[n], BOUNCE_ADDR_MAX))
            n++;
    }
    return n;
}

int
bounce_parse(const char *data, size_t len, const struct msg_limits *lim,
             const char *verp_domain, const char *match_header,
             struct bounce_report *rep, struct err *e)
{
    static __thread char ex[BOUNCE_EXCLUDE_MAX][BOUNCE_ADDR_MAX];
    struct bounce_walk w;
    struct mime *mm;
    GMimeMessage *m;
    GMimeObject *top;
    size_t nex;
    int auto_reply;

    memset(rep, 0, sizeof(*rep));
    if ((mm = mime_parse_shared(data, len, lim, e)) == NULL)
        return -1;
    m = mime_message(mm);
    top = GMIME_OBJECT(m);
    memset(&w, 0, sizeof(w));
    w.rep = rep;
    w.verp_domain = verp_domain != NULL && verp_domain[0] ? verp_domain : NULL;
    w.match_header =
        match_header != NULL && match_header[0] ? match_header : NULL;
    w.depth_max = lim->mime_depth < BOUNCE_DEPTH_MAX ? lim->mime_depth + 1
                                                     : BOUNCE_DEPTH_MAX;
    buf_init(&w.text, BOUNCE_TEXT_MAX + 2);
    bounce_walk(&w, g_mime_message_get_mime_part(m), 0);
    if (w.structured == 2) {
        rep->kind = BOUNCE_ARF;
        rep->n = 0; /* a complaint names its recipient itself */
    } else if (w.structured == 1) {
        rep->kind = rep->n > 0 ? BOUNCE_DSN : BOUNCE_NONE;
    } else if ((auto_reply = bounce_is_autoreply(top)) == 1) {
        rep->kind = BOUNCE_AUTOREPLY;
        rep->n = 0;
    } else {
        rep->n = 0;
        if (bounce_looks_like(top)) {
            nex = bounce_exclusions(top, ex);
            bounce_text(&w, ex, nex);
        }
        rep->kind = rep->n > 0   ? BOUNCE_TEXT
                    : auto_reply ? BOUNCE_AUTOREPLY
                                 : BOUNCE_NONE;
    }
    buf_fini(&w.text);
    mime_free(mm);
    return 0;
}
