/*
 * rewrite - address rewriting with pcre_table(5) rules (sender
 *     masquerading, recipient remapping, header addresses)
 *
 * Configuration (chain.d), at least one of:
 *     sender_rules    = file   rewrites the envelope sender (MAIL FROM)
 *     recipient_rules = file   rewrites each envelope recipient (RCPT TO)
 *     header_rules    = file   rewrites the addresses in From, To, Cc,
 *                              Reply-To and Sender
 * Each file is a regmap (Postfix pcre_table(5) syntax); the first rule
 * that matches an address gives its replacement, as with Postfix's
 * canonical_maps. init() narrows the stage's flags to the kinds of edit
 * it is configured for, so the chain's order check knows, for example,
 * that a sender-only rewrite may follow a signing stage.
 *
 * run() works in two steps: it first computes every new address and
 * checks each against addr_is_valid(), then records the edits. A rule
 * whose result is not a valid mailbox (or holds CR, LF or another control
 * character) is refused: the address is never written and run() returns
 * -1 naming the rule's file and line and the result, so the stage's
 * on_error policy applies (tempfail by default), the chain logs the
 * error, and no edit of this stage reaches the journal. The null sender
 * is never rewritten.
 *
 * Recipients are rewritten as a set: each one is mapped independently
 * (A -> B and B -> C give B and C), a recipient whose address changes is
 * deleted and the new address added with the old ESMTP parameters, and
 * an address that is already present is not added twice.
 *
 * Header addresses are parsed with GMime (groups included) and, only when
 * one of them changes, the field is written again: display names are
 * kept (printable ASCII as atoms or a quoted string, anything else as
 * RFC 2047 UTF-8 encoded words of 68 octets at most, so that one fits on
 * the first line after "Reply-To: "), lines are folded at 78 columns and
 * a field that would need a line over 998 octets is refused. Fields whose
 * addresses do not change are left byte for byte; in a field that is
 * written again, comments, the original charset of encoded words and
 * anything GMime does not read as an address are lost.
 *
 * A header field that a DKIM signature the message arrived with covers
 * (its h= names the field) is not rewritten by default: the signature
 * of an earlier hop must still verify after us. The note says how many
 * were kept and whose signature; dkim_signed = edit rewrites them anyway.
 * The envelope is rewritten either way: no DKIM signature covers it.
 *
 * The stage owns its three regmaps; they are read-only after init(), so
 * run() may be called from any number of threads.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gmime/gmime.h>

#include "util/addr.h"
#include "filters/filters.h"
#include "filters/filters_int.h"
#include "util/regmap.h"

#define FLT_REWRITE_RESULT_MAX 1024 /* octets of one rule result */
#define FLT_REWRITE_FOLD 78         /* columns of a folded header line */
#define FLT_REWRITE_LINE_MAX 998    /* octets of any header line */
#define FLT_REWRITE_PRINT_MAX 160   /* octets of an address in a message */
/* Folding assumes the longest field name handled: "Reply-To:" plus the
 * space msg_header_change() puts before the value. */
#define FLT_REWRITE_NAME_COL 10
/* Text octets in one encoded word: 68 octets in all, so that one fits on
 * the first line; and the longest atom or quoted string of a display
 * name that is written as it is rather than encoded. */
#define FLT_REWRITE_WORD_MAX 42
#define FLT_REWRITE_PLAIN_MAX 66

struct flt_rewrite {
    struct regmap *sender; /* each may be NULL */
    struct regmap *rcpt;
    struct regmap *header;
    int dkim_edit; /* dkim_signed = edit */
};

static const char *const flt_rewrite_headers[] = {
    "From", "To", "Cc", "Reply-To", "Sender",
};

static const struct cfg_option flt_rewrite_options[] = {
    {"sender_rules", CFG_PATH, NULL,
     "pcre_table(5) file that rewrites the envelope sender", NULL, 0, 0, 0},
    {"recipient_rules", CFG_PATH, NULL,
     "pcre_table(5) file that rewrites each envelope recipient", NULL, 0, 0,
     0},
    {"header_rules", CFG_PATH, NULL,
     "pcre_table(5) file that rewrites addresses in From, To, Cc, Reply-To "
     "and Sender",
     NULL, 0, 0, 0},
    {"dkim_signed", CFG_ENUM, "skip",
     "header fields that a DKIM signature the message arrived with covers: "
     "skip (leave them, so the signature still verifies) or edit (rewrite "
     "them and break it); the envelope is rewritten either way",
     flt_dkim_signed_choices, 0, 0, 0},
    CFG_OPTION_END,
};

/* flt_rewrite_printable - s for a log line or an error: control octets as
 * \xNN, cut at n - 1 octets. Returns out. */
static const char *
flt_rewrite_printable(const char *s, char *out, size_t n)
{
    size_t o = 0;

    for (; *s != '\0' && o + 5 < n; s++) {
        unsigned char c = (unsigned char)*s;

        if (c < 0x20 || c == 0x7f || c == '\\') {
            snprintf(out + o, n - o, "\\x%02x", c);
            o += 4;
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
    return out;
}

/*
 * flt_rewrite_map - look addr up in rm (the table called table). Returns
 * 1 with the new address in out when a rule gives one that differs from
 * addr, 0 when the address stays, -1 with e set on a lookup failure or
 * when the result is not a valid mailbox. *line gets the rule's line.
 */
static int
flt_rewrite_map(const struct regmap *rm, const char *table, const char *addr,
                struct buf *out, unsigned *line, struct err *e)
{
    char why[128], pin[FLT_REWRITE_PRINT_MAX], pout[FLT_REWRITE_PRINT_MAX];
    int rc;

    buf_reset(out);
    *line = 0;
    rc = regmap_lookup(rm, addr, out, line, e);
    if (rc < 0) {
        err_prefix(e, "%s: <%s>", table,
                   flt_rewrite_printable(addr, pin, sizeof(pin)));
        return -1;
    }
    if (rc == 0 || strcmp(buf_str(out), addr) == 0)
        return 0;
    if (strlen(buf_str(out)) != out->len ||
        !addr_is_valid(buf_str(out), 0, why, sizeof(why)))
        return err_set(e, ERR_CONFIG,
                       "%s: %s:%u: result \"%s\" for <%s> is not a valid "
                       "address: %s",
                       table, regmap_path(rm), *line,
                       flt_rewrite_printable(buf_str(out), pout, sizeof(pout)),
                       flt_rewrite_printable(addr, pin, sizeof(pin)),
                       strlen(buf_str(out)) != out->len ? "NUL character"
                                                        : why);
    return 1;
}

/* ------------------------------------------------------ header values */

/* The words of a new field value, NUL-separated in one buffer, and the
 * state of the rewrite that produces them. */
struct flt_rewrite_words {
    struct buf words;
    struct buf result; /* scratch for one lookup */
    const struct regmap *rm;
    int changed;
};

static int
flt_rewrite_word(struct flt_rewrite_words *w, const char *s, size_t len,
                 struct err *e)
{
    if (buf_append(&w->words, s, len, e) < 0 || buf_putc(&w->words, 0, e) < 0)
        return -1;
    return 0;
}

/* flt_rewrite_glue - append punctuation to the last word, or make it a
 * word of its own when there is none. */
static int
flt_rewrite_glue(struct flt_rewrite_words *w, const char *s, struct err *e)
{
    if (w->words.len == 0)
        return flt_rewrite_word(w, s, strlen(s), e);
    w->words.len--; /* the last word's NUL */
    return flt_rewrite_word(w, s, strlen(s), e);
}

static int
flt_rewrite_is_atext(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/*
 * flt_rewrite_b_end - where a "B" encoded word that starts at u[start]
 * ends: at most FLT_REWRITE_WORD_MAX octets on and never inside a UTF-8
 * sequence (readers that decode word by word would show garbage). Unless
 * it is the last word, its length must not leave one octet over a
 * multiple of three: GMime stops decoding a run of adjacent "B" words at
 * "==" padding. Returns 0 when no such end exists.
 */
static size_t
flt_rewrite_b_end(const unsigned char *u, size_t start, size_t len)
{
    size_t end;

    if (len - start <= FLT_REWRITE_WORD_MAX)
        return len;
    for (end = start + FLT_REWRITE_WORD_MAX; end > start; end--)
        if ((u[end] & 0xc0) != 0x80 && (end - start) % 3 != 1)
            return end;
    return 0;
}

static int
flt_rewrite_q_safe(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9') || (c != '\0' && strchr("!*+-/", c));
}

/* flt_rewrite_q_word - a "Q" encoded word of whole characters from
 * u[start], for where a "B" word cannot end well; returns its end. */
static size_t
flt_rewrite_q_word(struct flt_rewrite_words *w, const unsigned char *u,
                   size_t start, size_t len, struct err *e)
{
    size_t end = start, out = 0, n, k;

    while (end < len) {
        for (n = 1; end + n < len && (u[end + n] & 0xc0) == 0x80; n++)
            ;
        for (k = 0; k < n; k++)
            out += flt_rewrite_q_safe(u[end + k]) || u[end + k] == ' ' ? 1 : 3;
        if (out > FLT_REWRITE_WORD_MAX * 4 / 3 && end > start)
            break;
        end += n;
    }
    if (buf_puts(&w->words, "=?UTF-8?Q?", e) < 0)
        return 0;
    for (k = start; k < end; k++) {
        if (u[k] == ' ') {
            if (buf_putc(&w->words, '_', e) < 0)
                return 0;
        } else if (flt_rewrite_q_safe(u[k])) {
            if (buf_putc(&w->words, u[k], e) < 0)
                return 0;
        } else if (buf_printf(&w->words, e, "=%02X", u[k]) < 0) {
            return 0;
        }
    }
    if (buf_puts(&w->words, "?=", e) < 0 || buf_putc(&w->words, 0, e) < 0)
        return 0;
    return end;
}

/*
 * flt_rewrite_phrase - the words of a display name. Atoms stay atoms,
 * other printable ASCII becomes one quoted string, and anything else
 * (8-bit text, control characters, "=?", an atom or quoted string too
 * long to fit on a folded line) becomes UTF-8 encoded words
 * that end on character boundaries: "B" words, with a "Q" word where a
 * "B" word could not end well.
 */
static int
flt_rewrite_phrase(struct flt_rewrite_words *w, const char *name,
                   struct err *e)
{
    const unsigned char *u = (const unsigned char *)name;
    size_t len = strlen(name), i, start, end, atom = 0, longest = 0;
    /* Text that looks like an encoded word is encoded itself: readers
     * decode "=?...?=" even inside quoted strings. */
    int ascii = strstr(name, "=?") == NULL, atoms = 1;
    gchar *b64;
    int rc;

    for (i = 0; i < len; i++) {
        if (u[i] < 0x20 || u[i] > 0x7e)
            ascii = 0;
        else if (u[i] != ' ' && !flt_rewrite_is_atext(u[i]))
            atoms = 0;
        atom = u[i] == ' ' ? 0 : atom + 1;
        if (atom > longest)
            longest = atom;
    }
    /* Atoms and quoted strings cannot be folded inside: long ones are
     * encoded, which can. */
    if (ascii && (atoms ? longest : len + 2) > FLT_REWRITE_PLAIN_MAX)
        ascii = 0;
    if (ascii && atoms) {
        for (i = 0; i < len;) {
            while (i < len && u[i] == ' ')
                i++;
            for (start = i; i < len && u[i] != ' '; i++)
                ;
            if (i > start &&
                flt_rewrite_word(w, name + start, i - start, e) < 0)
                return -1;
        }
        return 0;
    }
    if (ascii) {
        if (buf_putc(&w->words, '"', e) < 0)
            return -1;
        for (i = 0; i < len; i++) {
            if ((u[i] == '"' || u[i] == '\\') &&
                buf_putc(&w->words, '\\', e) < 0)
                return -1;
            if (buf_putc(&w->words, name[i], e) < 0)
                return -1;
        }
        return flt_rewrite_word(w, "\"", 1, e);
    }
    for (start = 0; start < len; start = end) {
        if ((end = flt_rewrite_b_end(u, start, len)) == 0) {
            if ((end = flt_rewrite_q_word(w, u, start, len, e)) == 0)
                return -1;
            continue;
        }
        if ((b64 = g_base64_encode(u + start, end - start)) == NULL)
            return err_nomem(e);
        rc = buf_printf(&w->words, e, "=?UTF-8?B?%s?=", b64);
        g_free(b64);
        if (rc < 0 || buf_putc(&w->words, 0, e) < 0)
            return -1;
    }
    return 0;
}

static int flt_rewrite_list(struct flt_rewrite_words *w,
                            InternetAddressList *list, int depth,
                            struct err *e);

static int
flt_rewrite_mailbox(struct flt_rewrite_words *w, InternetAddress *ia,
                    struct err *e)
{
    const char *addr, *name = internet_address_get_name(ia);
    unsigned line;
    int rc;

    addr = internet_address_mailbox_get_addr(INTERNET_ADDRESS_MAILBOX(ia));
    if (addr == NULL)
        addr = "";
    rc = 0;
    if (addr[0] != '\0' && (rc = flt_rewrite_map(w->rm, "header_rules", addr,
                                                 &w->result, &line, e)) < 0)
        return -1;
    if (rc == 1) {
        addr = buf_str(&w->result);
        w->changed = 1;
    }
    /* An empty address is written "<>" so that it stays a mailbox. */
    if ((name != NULL && name[0] != '\0') || addr[0] == '\0') {
        if ((name != NULL && flt_rewrite_phrase(w, name, e) < 0) ||
            buf_putc(&w->words, '<', e) < 0 ||
            buf_puts(&w->words, addr, e) < 0)
            return -1;
        return flt_rewrite_word(w, ">", 1, e);
    }
    return flt_rewrite_word(w, addr, strlen(addr), e);
}

static int
flt_rewrite_list(struct flt_rewrite_words *w, InternetAddressList *list,
                 int depth, struct err *e)
{
    InternetAddressList *members;
    InternetAddress *ia;
    const char *name;
    int i, n = internet_address_list_length(list);

    for (i = 0; i < n; i++) {
        ia = internet_address_list_get_address(list, i);
        if (INTERNET_ADDRESS_IS_GROUP(ia)) {
            /* RFC 5322 groups do not nest; GMime never makes them. */
            if (depth > 0)
                return err_set(e, ERR_INPUT, "nested address group");
            name = internet_address_get_name(ia);
            if (name != NULL && name[0] != '\0' &&
                flt_rewrite_phrase(w, name, e) < 0)
                return -1;
            if (flt_rewrite_glue(w, ":", e) < 0)
                return -1;
            members =
                internet_address_group_get_members(INTERNET_ADDRESS_GROUP(ia));
            if (flt_rewrite_list(w, members, depth + 1, e) < 0 ||
                flt_rewrite_glue(w, ";", e) < 0)
                return -1;
        } else if (flt_rewrite_mailbox(w, ia, e) < 0) {
            return -1;
        }
        if (i + 1 < n && flt_rewrite_glue(w, ",", e) < 0)
            return -1;
    }
    return 0;
}

/* flt_rewrite_fold - join the words with spaces, folding before a word
 * that would pass column 78; no line may pass 998 octets. */
static int
flt_rewrite_fold(const struct buf *words, struct buf *out, struct err *e)
{
    size_t col = FLT_REWRITE_NAME_COL, len, off;
    const char *word;
    int first = 1;

    for (off = 0; off < words->len; off += len + 1) {
        word = words->data + off;
        len = strlen(word);
        if (!first && col + 1 + len > FLT_REWRITE_FOLD) {
            if (buf_append(out, "\n\t", 2, e) < 0)
                return -1;
            col = 1;
        } else if (!first) {
            if (buf_putc(out, ' ', e) < 0)
                return -1;
            col++;
        }
        if (buf_append(out, word, len, e) < 0)
            return -1;
        col += len;
        first = 0;
        if (col > FLT_REWRITE_LINE_MAX)
            return err_set(e, ERR_LIMIT,
                           "rewritten header would need a line of more than "
                           "%d octets",
                           FLT_REWRITE_LINE_MAX);
    }
    return 0;
}

/*
 * flt_rewrite_unfold - value as GMime should read it. Folding is CRLF or
 * LF before white space, so dropping the line ends leaves the white space,
 * which is what unfolding means. Then, when there is any '(', one ')' more
 * than there are '(' is appended: a comment still open at the end runs to
 * the end anyway, GMime ignores stray ')' at the end, and GMime 3.2 leaks
 * memory on a comment left open after a domain literal ("a@[192.0.2.1](").
 * Counting every '(' also closes the ones GMime reads inside quotes or
 * literals, so no tokenizer of our own has to agree with GMime's.
 */
static int
flt_rewrite_unfold(const char *value, struct buf *out, struct err *e)
{
    size_t i, open = 0;

    for (i = 0; value[i] != '\0'; i++) {
        if (value[i] == '\r' || value[i] == '\n')
            continue;
        if (value[i] == '(')
            open++;
        if (buf_putc(out, value[i], e) < 0)
            return -1;
    }
    for (i = 0; open > 0 && i <= open; i++)
        if (buf_putc(out, ')', e) < 0)
            return -1;
    return 0;
}

int
flt_rewrite_header_value(const struct regmap *rm, const char *value,
                         struct buf *out, int *changed, struct err *e)
{
    struct flt_rewrite_words w;
    GMimeParserOptions *popts;
    InternetAddressList *list;
    struct buf unfolded;
    size_t mark = out->len;
    int rc = -1;

    *changed = 0;
    buf_init(&unfolded, 0);
    if (flt_rewrite_unfold(value, &unfolded, e) < 0) {
        buf_fini(&unfolded);
        return -1;
    }
    if ((popts = g_mime_parser_options_new()) == NULL) {
        buf_fini(&unfolded);
        return err_nomem(e);
    }
    list = internet_address_list_parse(popts, buf_str(&unfolded));
    g_mime_parser_options_free(popts);
    buf_fini(&unfolded);
    if (list == NULL)
        return 0; /* nothing GMime can read as addresses: leave it */

    memset(&w, 0, sizeof(w));
    buf_init(&w.words, out->limit);
    buf_init(&w.result, FLT_REWRITE_RESULT_MAX);
    w.rm = rm;
    if (flt_rewrite_list(&w, list, 0, e) < 0)
        goto done;
    if (w.changed && flt_rewrite_fold(&w.words, out, e) < 0)
        goto done;
    *changed = w.changed;
    rc = 0;

done:
    if (rc < 0) {
        out->len = mark;
        if (out->data != NULL)
            out->data[mark] = '\0';
    }
    buf_fini(&w.words);
    buf_fini(&w.result);
    g_object_unref(list);
    return rc;
}

/* --------------------------------------------------------------- init */

static void
flt_rewrite_free(struct stage *st)
{
    struct flt_rewrite *fr = st->priv;

    if (fr == NULL)
        return;
    regmap_free(fr->sender);
    regmap_free(fr->rcpt);
    regmap_free(fr->header);
    free(fr);
    st->priv = NULL;
}

static int
flt_rewrite_init(struct stage *st, const struct cfg *c, struct err *e)
{
    struct flt_rewrite *fr;
    unsigned flags = 0;

    if (cfg_str(c, "sender_rules") == NULL &&
        cfg_str(c, "recipient_rules") == NULL &&
        cfg_str(c, "header_rules") == NULL)
        return err_set(e, ERR_CONFIG,
                       "%s: stage rewrite needs at least one of "
                       "sender_rules, recipient_rules, header_rules",
                       cfg_path(c));
    if ((fr = calloc(1, sizeof(*fr))) == NULL)
        return err_nomem(e);
    st->priv = fr;
    if (flt_cfg_regmap(c, "sender_rules", &fr->sender, e) < 0 ||
        flt_cfg_regmap(c, "recipient_rules", &fr->rcpt, e) < 0 ||
        flt_cfg_regmap(c, "header_rules", &fr->header, e) < 0) {
        flt_rewrite_free(st);
        return -1;
    }
    if (fr->sender != NULL)
        flags |= STAGE_EDITS_SENDER;
    if (fr->rcpt != NULL)
        flags |= STAGE_EDITS_RCPTS;
    if (fr->header != NULL)
        flags |= STAGE_EDITS_HEADERS;
    st->flags &= flags;
    fr->dkim_edit = flt_cfg_dkim_edit(c);
    return 0;
}

/* ---------------------------------------------------------------- run */

/* flt_rewrite_addr_eq - the same recipient as msg_rcpt_delete() sees it:
 * local parts equal exactly, domains without regard to ASCII case. */
static int
flt_rewrite_addr_eq(const char *a, const char *b)
{
    const char *at_a = strrchr(a, '@'), *at_b = strrchr(b, '@');

    if (at_a == NULL || at_b == NULL)
        return at_a == at_b && strcmp(a, b) == 0;
    return at_a - a == at_b - b && memcmp(a, b, (size_t)(at_a - a)) == 0 &&
           addr_domain_equal(at_a + 1, at_b + 1);
}

static int
flt_rewrite_has_rcpt(const struct msg *m, const char *addr)
{
    const struct msg_env *env = msg_env(m);
    size_t i;

    for (i = 0; i < env->nrcpts; i++)
        if (flt_rewrite_addr_eq(env->rcpts[i].addr, addr))
            return 1;
    return 0;
}

struct flt_rewrite_rcpt {
    char *old;    /* as it was */
    char *params; /* ESMTP parameters, or NULL */
    char *new;    /* the rewritten address, or NULL when it stays */
    int keep;     /* in the final set (not a duplicate of an earlier one) */
};

struct flt_rewrite_hdr {
    const char *name; /* one of flt_rewrite_headers */
    size_t index;
    char *value;
};

/* Everything run() will change, computed before anything is. */
struct flt_rewrite_plan {
    char *sender;
    struct flt_rewrite_rcpt *rcpts;
    size_t nrcpts;
    size_t rcpts_changed;
    size_t rcpts_merged;
    struct flt_rewrite_hdr *hdrs;
    size_t nhdrs;
    size_t hdrs_kept;  /* left alone: DKIM-signed */
    char kept_by[160]; /* "d=..., s=..." of the first such signature */
};

static void
flt_rewrite_plan_fini(struct flt_rewrite_plan *p)
{
    size_t i;

    free(p->sender);
    for (i = 0; i < p->nrcpts; i++) {
        free(p->rcpts[i].old);
        free(p->rcpts[i].params);
        free(p->rcpts[i].new);
    }
    free(p->rcpts);
    for (i = 0; i < p->nhdrs; i++)
        free(p->hdrs[i].value);
    free(p->hdrs);
}

static int
flt_rewrite_plan_sender(const struct flt_rewrite *fr, const struct msg *m,
                        struct flt_rewrite_plan *p, struct buf *res,
                        struct err *e)
{
    const char *sender = msg_env(m)->sender;
    unsigned line;
    int rc;

    if (fr->sender == NULL || sender == NULL || sender[0] == '\0')
        return 0;
    rc = flt_rewrite_map(fr->sender, "sender_rules", sender, res, &line, e);
    if (rc <= 0)
        return rc;
    if ((p->sender = strdup(buf_str(res))) == NULL)
        return err_nomem(e);
    return 0;
}

static int
flt_rewrite_plan_rcpts(const struct flt_rewrite *fr, const struct msg *m,
                       struct flt_rewrite_plan *p, struct buf *res,
                       struct err *e)
{
    const struct msg_env *env = msg_env(m);
    struct flt_rewrite_rcpt *r;
    const char *a, *b;
    unsigned line;
    size_t i, j;
    int rc;

    if (fr->rcpt == NULL || env->nrcpts == 0)
        return 0;
    if ((p->rcpts = calloc(env->nrcpts, sizeof(*p->rcpts))) == NULL)
        return err_nomem(e);
    for (i = 0; i < env->nrcpts; i++) {
        r = &p->rcpts[p->nrcpts];
        if ((r->old = strdup(env->rcpts[i].addr)) == NULL ||
            (env->rcpts[i].params != NULL &&
             (r->params = strdup(env->rcpts[i].params)) == NULL)) {
            free(r->old);
            return err_nomem(e);
        }
        p->nrcpts++;
        rc = flt_rewrite_map(fr->rcpt, "recipient_rules", r->old, res, &line,
                             e);
        if (rc < 0)
            return -1;
        if (rc == 1) {
            if ((r->new = strdup(buf_str(res))) == NULL)
                return err_nomem(e);
            p->rcpts_changed++;
        }
    }
    /* The final set: each address once, the first occurrence winning. */
    for (i = 0; i < p->nrcpts; i++) {
        a = p->rcpts[i].new != NULL ? p->rcpts[i].new : p->rcpts[i].old;
        p->rcpts[i].keep = 1;
        for (j = 0; j < i && p->rcpts[i].keep; j++) {
            b = p->rcpts[j].new != NULL ? p->rcpts[j].new : p->rcpts[j].old;
            if (!p->rcpts[j].keep || !flt_rewrite_addr_eq(a, b))
                continue;
            p->rcpts[i].keep = 0;
            /* Duplicates the client sent are not ours to report. */
            if (p->rcpts[i].new != NULL || p->rcpts[j].new != NULL)
                p->rcpts_merged++;
        }
    }
    return 0;
}

static int
flt_rewrite_plan_headers(const struct flt_rewrite *fr, const struct msg *m,
                         struct flt_rewrite_plan *p, struct err *e)
{
    const struct msg_limits *lim = msg_limits(m);
    struct flt_rewrite_hdr *nh;
    const char *name, *value;
    char who[160];
    struct buf out;
    size_t k, idx, count;
    int changed;

    if (fr->header == NULL)
        return 0;
    buf_init(&out, lim->message_size);
    for (k = 0; k < sizeof(flt_rewrite_headers) / sizeof(*flt_rewrite_headers);
         k++) {
        name = flt_rewrite_headers[k];
        count = msg_header_name_count(m, name);
        for (idx = 1; idx <= count; idx++) {
            if ((value = msg_header_get(m, name, idx)) == NULL)
                continue;
            buf_reset(&out);
            if (flt_rewrite_header_value(fr->header, value, &out, &changed,
                                         e) < 0) {
                err_prefix(e, "%s header", name);
                buf_fini(&out);
                return -1;
            }
            if (!changed)
                continue;
            if (!fr->dkim_edit && flt_dkim_signed(m, name, who, sizeof(who))) {
                if (p->hdrs_kept++ == 0)
                    snprintf(p->kept_by, sizeof(p->kept_by), "%s", who);
                continue;
            }
            if ((nh = realloc(p->hdrs, (p->nhdrs + 1) * sizeof(*nh))) ==
                NULL) {
                buf_fini(&out);
                return err_nomem(e);
            }
            p->hdrs = nh;
            nh[p->nhdrs].name = name;
            nh[p->nhdrs].index = idx;
            if ((nh[p->nhdrs].value = buf_steal(&out, NULL)) == NULL) {
                buf_fini(&out);
                return err_nomem(e);
            }
            p->nhdrs++;
        }
    }
    buf_fini(&out);
    return 0;
}

static int
flt_rewrite_apply(const struct stage *st, struct msg *m,
                  const struct flt_rewrite_plan *p, struct err *e)
{
    const struct flt_rewrite_rcpt *r;
    size_t i;

    if (p->sender != NULL &&
        msg_sender_change(m, st->name, p->sender, msg_env(m)->sender_params,
                          e) < 0)
        return -1;
    if (p->rcpts_changed > 0) {
        for (i = 0; i < p->nrcpts; i++) {
            r = &p->rcpts[i];
            if (r->new != NULL && flt_rewrite_has_rcpt(m, r->old) &&
                msg_rcpt_delete(m, st->name, r->old, e) < 0)
                return -1;
        }
        for (i = 0; i < p->nrcpts; i++) {
            r = &p->rcpts[i];
            if (!r->keep || r->new == NULL || flt_rewrite_has_rcpt(m, r->new))
                continue;
            if (msg_rcpt_add(m, st->name, r->new, r->params, e) < 0)
                return -1;
        }
    }
    for (i = 0; i < p->nhdrs; i++)
        if (msg_header_change(m, st->name, p->hdrs[i].name, p->hdrs[i].index,
                              p->hdrs[i].value, e) < 0)
            return -1;
    return 0;
}

static int
flt_rewrite_run(const struct stage *st, struct msg *m, struct verdict *v,
                struct err *e)
{
    const struct flt_rewrite *fr = st->priv;
    struct flt_rewrite_plan plan;
    char note[VERDICT_NOTE_MAX], merged[48];
    struct buf res;
    size_t n = 0;
    int rc;

    memset(&plan, 0, sizeof(plan));
    buf_init(&res, FLT_REWRITE_RESULT_MAX);
    rc = flt_rewrite_plan_sender(fr, m, &plan, &res, e);
    if (rc == 0)
        rc = flt_rewrite_plan_rcpts(fr, m, &plan, &res, e);
    if (rc == 0)
        rc = flt_rewrite_plan_headers(fr, m, &plan, e);
    buf_fini(&res);
    if (rc < 0) {
        err_prefix(e, "%s", st->name);
        flt_rewrite_plan_fini(&plan);
        return -1;
    }
    rc = flt_rewrite_apply(st, m, &plan, e);

    note[0] = '\0';
    if (plan.sender != NULL)
        n += (size_t)snprintf(note + n, sizeof(note) - n, "sender=rewritten");
    merged[0] = '\0';
    if (plan.rcpts_merged > 0)
        snprintf(merged, sizeof(merged), " (%zu duplicate%s merged)",
                 plan.rcpts_merged, plan.rcpts_merged == 1 ? "" : "s");
    if (plan.rcpts_changed > 0 && n < sizeof(note))
        n += (size_t)snprintf(note + n, sizeof(note) - n,
                              "%srcpt=%zu rewritten%s", n > 0 ? ", " : "",
                              plan.rcpts_changed, merged);
    if (plan.nhdrs > 0 && n < sizeof(note))
        n += (size_t)snprintf(note + n, sizeof(note) - n,
                              "%sheaders=%zu changed", n > 0 ? ", " : "",
                              plan.nhdrs);
    if (plan.hdrs_kept > 0 && n < sizeof(note))
        snprintf(note + n, sizeof(note) - n,
                 "%sheaders=%zu kept (DKIM-signed, %s)", n > 0 ? ", " : "",
                 plan.hdrs_kept, plan.kept_by);
    flt_rewrite_plan_fini(&plan);
    if (rc < 0) {
        err_prefix(e, "%s", st->name);
        return -1;
    }
    return verdict_set(v, VERDICT_CONTINUE, NULL, "%s",
                       note[0] != '\0' ? note : "no change");
}

/* ------------------------------------------------------- rewrite-test */

int
flt_rewrite_test(const struct stage *st, const char *addr, FILE *out,
                 struct err *e)
{
    size_t matched;

    return flt_rewrite_test_matches(st, addr, out, &matched, e);
}

int
flt_rewrite_test_matches(const struct stage *st, const char *addr, FILE *out,
                         size_t *matched, struct err *e)
{
    static const char *const keys[] = {"sender_rules", "recipient_rules",
                                       "header_rules"};
    const struct flt_rewrite *fr;
    const struct regmap *maps[3];
    char pin[FLT_REWRITE_PRINT_MAX], pout[FLT_REWRITE_PRINT_MAX];
    struct buf res;
    unsigned line;
    size_t i;
    int rc;

    *matched = 0;
    if (st == NULL || st->type != &flt_rewrite_type || st->priv == NULL)
        return err_set(e, ERR_INPUT, "not a rewrite stage");
    fr = st->priv;
    maps[0] = fr->sender;
    maps[1] = fr->rcpt;
    maps[2] = fr->header;
    flt_rewrite_printable(addr, pin, sizeof(pin));
    buf_init(&res, FLT_REWRITE_RESULT_MAX);
    for (i = 0; i < 3; i++) {
        if (maps[i] == NULL)
            continue;
        buf_reset(&res);
        line = 0;
        if ((rc = regmap_lookup(maps[i], addr, &res, &line, e)) < 0) {
            err_prefix(e, "%s", keys[i]);
            buf_fini(&res);
            return -1;
        }
        if (rc == 0) {
            fprintf(out, "%s: %s: no match\n", keys[i], pin);
            continue;
        }
        (*matched)++;
        flt_rewrite_printable(buf_str(&res), pout, sizeof(pout));
        fprintf(out, "%s: %s -> %s (%s:%u)", keys[i], pin, pout,
                regmap_path(maps[i]), line);
        if (strcmp(buf_str(&res), addr) != 0) {
            char why[128];

            if (!addr_is_valid(buf_str(&res), 0, why, sizeof(why)))
                fprintf(out, ": refused, not a valid address: %s", why);
        }
        fputc('\n', out);
    }
    buf_fini(&res);
    return 0;
}

const struct stage_type flt_rewrite_type = {
    .name = "rewrite",
    .summary = "rewrite envelope and header addresses with pcre_table(5) "
               "rules",
    .flags = STAGE_EDITS_HEADERS | STAGE_EDITS_SENDER | STAGE_EDITS_RCPTS,
    .options = flt_rewrite_options,
    .init = flt_rewrite_init,
    .run = flt_rewrite_run,
    .free = flt_rewrite_free,
};
