/*
 * disclaimer - compliance footers in the text and HTML body of outbound
 *     mail, without breaking an encoding, a charset or a signature
 *
 * Configuration (chain.d):
 *     text_file       = file   the default footer, UTF-8 text
 *     html_file       = file   its HTML form (optional: made from the text)
 *     template_map    = file   "pattern  text-file  [html-file]" lines:
 *                              the first whose pattern (match_sender
 *                              syntax) holds for the envelope sender picks
 *                              the pair; no match falls back to text_file
 *     position        = append | prepend
 *     no_text_body    = add_part | skip
 *     once_per_thread = yes | no
 *     dkim_signed     = skip | edit
 * Templates may hold %{sender}, %{sender_domain} and %{date} (YYYY-MM-DD);
 * values are stripped of control characters in text and HTML-escaped in
 * HTML. init() reads and checks every template (valid UTF-8, lines of at
 * most 998 octets, known variables), so run() never touches a file.
 *
 * run() reads the shared MIME parse and never re-serializes it: GMime's
 * parser keeps, for every leaf, its content as a window onto the one
 * stream it parsed (bound_start, bound_end) and the stream offset of each
 * header field. The stage picks the first text/plain and the first
 * text/html body part (walking multipart/mixed, alternative and
 * unknown multiparts, and the root of multipart/related; never a leaf
 * with Content-Disposition: attachment, never inside message/rfc822),
 * builds new bytes for just those parts and splices them into the
 * original body, so every other part stays byte for byte. An edited
 * part is decoded, the footer inserted (appended, prepended, or in HTML
 * before the last </body>, found by a scanner that knows tags, quoted
 * attribute values, comments and raw-text elements), and encoded again
 * with the same transfer encoding; 7bit text that gains 8-bit octets,
 * and 7bit or 8bit text with a line over 998 octets, becomes
 * quoted-printable. Where msg_parse() and GMime disagree on where the
 * message header ends, nothing is edited.
 *
 * Charsets: the footer is converted to the part's charset; when it
 * cannot be represented there, a text part is converted to UTF-8 as a
 * whole and its charset parameter changed, while an HTML part keeps its
 * charset (which its <meta> may repeat) and gets the characters it lacks
 * as numeric character references. Stateful charsets (ISO-2022-*, HZ,
 * UTF-7) are edited as UTF-8 and converted back; charsets that are not
 * ASCII-compatible are converted to UTF-8. A charset parameter is
 * changed in the raw field (other parameters, quoting and folding stay)
 * and the result must read the same in GMime but for the charset, or
 * the part is left alone. Format=flowed footers are
 * space-stuffed and carry no trailing spaces, and a flowed text that ends
 * in a soft break is closed first. Every line end written is the part's.
 *
 * Skipped with a reason in the log note, the message untouched: a
 * message that arrived with a DKIM signature (an earlier hop signed it,
 * and a footer would break its body hash; dkim_signed = edit adds it
 * anyway), multipart/signed, multipart/encrypted, application/(x-)pkcs7-mime,
 * multipart/report, text/calendar (unless only attached without a
 * method), an inline "-----BEGIN PGP" block in an edited part, a message
 * the shared parse flags as ambiguous, and text without any header
 * field (all body, as Postfix reads it). With once_per_thread, a part whose
 * text already holds the footer (the template's fixed text, compared
 * after quote markers, tags, entities, format=flowed soft breaks and
 * white space are taken out, so a quoted reply counts) is not edited.
 * A message with no text body gets a text/plain part: inserted in a
 * top-level multipart/mixed, or the message is wrapped in a new one
 * (with a boundary derived from the body's SHA-256) with its Content-*
 * fields moved into the inner part, which must then parse cleanly.
 *
 * Failures: a part that cannot be edited safely (unknown charset or
 * transfer encoding, text not valid in its charset, HTML that ends
 * inside a tag or comment, a Content-Type field msg refuses to write
 * back) is left alone and named in the note; an
 * offset that does not agree with the body is an internal error (-1, the
 * on_error policy applies); a result over the message size limit leaves
 * the message unchanged with a note. The stage owns its templates and
 * map, read-only after init(), so run() may be called from any thread.
 */
#include "config.h"

#include <errno.h>
#include <iconv.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <gmime/gmime.h>

#include "filters/disclaimer/disclaimer_int.h"
#include "filters/filters.h"
#include "filters/filters_int.h"
#include "util/log.h"
#include "msg/match.h"
#include "msg/mime.h"
#include "msg/splice.h"

enum flt_disclaimer_position { FLT_DISCLAIMER_APPEND, FLT_DISCLAIMER_PREPEND };
static const char *const flt_disclaimer_positions[] = {
    [FLT_DISCLAIMER_APPEND] = "append",
    [FLT_DISCLAIMER_PREPEND] = "prepend",
    NULL};
enum flt_disclaimer_no_text { FLT_DISCLAIMER_ADD_PART, FLT_DISCLAIMER_SKIP };
static const char *const flt_disclaimer_no_text[] = {
    [FLT_DISCLAIMER_ADD_PART] = "add_part",
    [FLT_DISCLAIMER_SKIP] = "skip",
    NULL};

static const struct cfg_option flt_disclaimer_options[] = {
    {"text_file", CFG_PATH, NULL,
     "footer text (UTF-8) for mail no template_map line picks", NULL, 0, 0, 0},
    {"html_file", CFG_PATH, NULL,
     "HTML form of text_file (default: made from the text)", NULL, 0, 0, 0},
    {"template_map", CFG_PATH, NULL,
     "file of \"sender-pattern text-file [html-file]\" lines; the first "
     "match picks the templates",
     NULL, 0, 0, 0},
    {"position", CFG_ENUM, "append",
     "where the footer goes: append (end of the text, before </body>) or "
     "prepend",
     flt_disclaimer_positions, 0, 0, 0},
    {"no_text_body", CFG_ENUM, "add_part",
     "a message without a text body: add_part (a text/plain part) or skip",
     flt_disclaimer_no_text, 0, 0, 0},
    {"once_per_thread", CFG_BOOL, "yes",
     "do not add a footer to a part that already holds it (a reply that "
     "quotes it)",
     NULL, 0, 0, 0},
    {"dkim_signed", CFG_ENUM, "skip",
     "a message that arrives with a DKIM signature (an earlier hop signed "
     "it): skip (leave it untouched, so the signature still verifies) or "
     "edit (add the footer and break the signature)",
     flt_dkim_signed_choices, 0, 0, 0},
    CFG_OPTION_END,
};

/* --------------------------------------------------------------- init */

static void
flt_disclaimer_free(struct stage *st)
{
    struct flt_disclaimer *fd = st->priv;
    size_t i;

    if (fd == NULL)
        return;
    for (i = 0; i < fd->nrules; i++)
        match_free(fd->rules[i].match);
    free(fd->rules);
    for (i = 0; i < fd->ntpls; i++)
        flt_disclaimer_tpl_free(fd->tpls[i]);
    free(fd->tpls);
    free(fd);
    st->priv = NULL;
}

static int
flt_disclaimer_init(struct stage *st, const struct cfg *c, struct err *e)
{
    const char *text = cfg_str(c, "text_file"),
               *html = cfg_str(c, "html_file");
    const char *map = cfg_str(c, "template_map");
    struct flt_disclaimer *fd;

    if (html != NULL && text == NULL)
        return cfg_err(e, c, "html_file", "needs text_file as well");
    if (text == NULL && map == NULL)
        return err_set(e, ERR_CONFIG,
                       "%s: stage disclaimer needs text_file or "
                       "template_map",
                       cfg_path(c));
    if ((fd = calloc(1, sizeof(*fd))) == NULL)
        return err_nomem(e);
    st->priv = fd;
    fd->prepend = (enum flt_disclaimer_position)cfg_enum(c, "position") ==
                  FLT_DISCLAIMER_PREPEND;
    fd->add_part = (enum flt_disclaimer_no_text)cfg_enum(c, "no_text_body") ==
                   FLT_DISCLAIMER_ADD_PART;
    fd->once = cfg_bool(c, "once_per_thread");
    fd->dkim_edit = flt_cfg_dkim_edit(c);
    if (text != NULL &&
        (fd->def = flt_disclaimer_tpl_get(fd, text, html, e)) == NULL) {
        const char *key =
            html != NULL && strncmp(e->text, html, strlen(html)) == 0
                ? "html_file"
                : "text_file";

        flt_cfg_prefix(e, c, key);
        flt_disclaimer_free(st);
        return -1;
    }
    if (map != NULL && flt_disclaimer_map_load(fd, map, e) < 0) {
        flt_cfg_prefix(e, c, "template_map");
        flt_disclaimer_free(st);
        return -1;
    }
    return 0;
}

/* ----------------------------------------------------- run: driver */

/* flt_disclaimer_splice_body - the body with the splices made, in out. */
static int
flt_disclaimer_splice_body(const struct flt_disclaimer_ctx *cx,
                           struct splice *sp, size_t n, struct buf *out,
                           struct err *e)
{
    size_t i, total = cx->win.blen;

    if (splice_check(cx->win.blen, 0, sp, n, e) < 0)
        return err_set(e, ERR_INTERNAL,
                       "disclaimer: overlapping edits in the body");
    for (i = 0; i < n; i++)
        total += sp[i].len;
    /* One allocation for the new body, not a series of doublings. */
    if (buf_reserve(out, total, e) < 0)
        return -1;
    return splice_apply(cx->win.body, cx->win.blen, 0, sp, n, out, e);
}

static void
flt_disclaimer_part_init(struct flt_disclaimer_part *p, const char *kind,
                         int html, size_t limit)
{
    memset(p, 0, sizeof(*p));
    p->kind = kind;
    p->html = html;
    buf_init(&p->dec, limit);
    buf_init(&p->out, limit);
    buf_init(&p->hdr, limit);
}

static void
flt_disclaimer_part_fini(struct flt_disclaimer_part *p)
{
    buf_fini(&p->dec);
    buf_fini(&p->out);
    buf_fini(&p->hdr);
}

/* flt_disclaimer_note_parts - "text/plain, text/html" of the edited
 * parts, and "; text/html: why" for the others, into note. */
static void
flt_disclaimer_note(const struct flt_disclaimer_ctx *cx, int added_part,
                    char *note, size_t n)
{
    const struct flt_disclaimer_part *ps[2] = {&cx->plain, &cx->html};
    size_t used = 0, i;
    int any = 0;

    used += (size_t)snprintf(note, n, "added (");
    if (added_part) {
        used += (size_t)snprintf(note + used, used < n ? n - used : 0,
                                 "new text/plain part");
        any = 1;
    }
    for (i = 0; i < 2; i++) {
        if (!ps[i]->edited || used >= n)
            continue;
        used +=
            (size_t)snprintf(note + used, n - used, "%s%s%s", any ? ", " : "",
                             ps[i]->kind, ps[i]->to_utf8 ? " as utf-8" : "");
        any = 1;
    }
    if (used < n)
        used += (size_t)snprintf(note + used, n - used, "), template=%s",
                                 cx->tpl->name);
    for (i = 0; i < 2; i++)
        if (ps[i]->obj != NULL && !ps[i]->edited && ps[i]->skip != NULL &&
            used < n)
            used +=
                (size_t)snprintf(note + used, n - used, "; %s not edited (%s)",
                                 ps[i]->kind, ps[i]->skip);
}

/* flt_disclaimer_pick - the template for this message, or NULL. */
static const struct flt_disclaimer_tpl *
flt_disclaimer_pick(const struct flt_disclaimer *fd, const struct msg *m)
{
    char why[160];
    size_t i;

    for (i = 0; i < fd->nrules; i++)
        if (match_test(fd->rules[i].match, m, why, sizeof(why)))
            return fd->rules[i].tpl;
    return fd->def;
}

/*
 * flt_disclaimer_apply - plan and make every edit of one message; the
 * verdict note says what happened. Returns 0 or -1.
 */
static int
flt_disclaimer_apply(struct flt_disclaimer_ctx *cx, struct verdict *v,
                     struct err *e)
{
    struct flt_disclaimer_part *ps[2] = {&cx->plain, &cx->html};
    struct splice sp[FLT_DISCLAIMER_SPLICES];
    GMimeObject *top = g_mime_message_get_mime_part(cx->message);
    char note[VERDICT_NOTE_MAX], boundary[80];
    struct buf body, part;
    size_t nsp = 0, i, blen;
    char *bdata;
    int rc = -1, r, wrap = 0, added_part = 0;

    buf_init(&body, cx->limit);
    buf_init(&part, cx->limit);
    flt_disclaimer_walk(cx, top, 1, 0, 1);
    /* Without a leaf to fix the stream (message/rfc822 alone), the body
     * starts where msg_write() puts it. */
    if (flt_disclaimer_find_base(cx, top, 0) < 0 && cx->win.stream == NULL)
        cx->win.base = msg_size(cx->m) - cx->win.blen;
    if (cx->skip[0] == '\0' && cx->win.blen > 0 &&
        (!mime_header_agrees(&cx->win, GMIME_OBJECT(cx->message)) ||
         !mime_header_agrees(&cx->win, top)))
        flt_disclaimer_set_skip(cx, "header end read two ways");
    for (i = 0; i < 2 && cx->skip[0] == '\0'; i++)
        if (flt_disclaimer_prepare(cx, ps[i], e) < 0)
            goto done;
    if (cx->broken) {
        rc = err_set(e, ERR_INTERNAL,
                     "GMime's part offsets do not match the body");
        goto done;
    }
    if (cx->skip[0] != '\0')
        goto skipped;
    if (flt_disclaimer_footers(cx, e) < 0)
        goto done;
    for (i = 0; i < 2; i++)
        if (flt_disclaimer_edit(cx, ps[i], e) < 0)
            goto done;

    if (cx->plain.obj == NULL && cx->html.obj == NULL) {
        if (!cx->fd->add_part) {
            flt_disclaimer_set_skip(cx, "no text body");
            goto skipped;
        }
        if (GMIME_IS_MULTIPART(top) &&
            mime_is_type(top, "multipart", "mixed")) {
            r = flt_disclaimer_add_to_mixed(cx, GMIME_MULTIPART(top), &part,
                                            &sp[nsp], e);
            if (r < 0)
                goto done;
            if (r > 0)
                goto skipped;
            nsp++;
        } else {
            r = flt_disclaimer_wrap(cx, boundary, sizeof(boundary), &body, e);
            if (r < 0)
                goto done;
            if (r > 0)
                goto skipped;
            wrap = 1;
        }
        added_part = 1;
    }
    for (i = 0; i < 2; i++) {
        struct flt_disclaimer_part *p = ps[i];

        if (!p->edited)
            continue;
        if (p->hdr.len > 0 && !p->top) {
            sp[nsp].start = p->hstart;
            sp[nsp].end = p->hend;
            sp[nsp].data = p->hdr.data;
            sp[nsp].len = p->hdr.len;
            nsp++;
        }
        sp[nsp].start = p->cstart;
        sp[nsp].end = p->cend;
        sp[nsp].data = p->out.data != NULL ? p->out.data : "";
        sp[nsp].len = p->out.len;
        nsp++;
    }
    if (nsp == 0 && !wrap) {
        /* Nothing edited: say why for each part. */
        snprintf(note, sizeof(note), "skipped (%s%s%s%s%s)",
                 cx->plain.obj != NULL ? "text/plain: " : "",
                 cx->plain.obj != NULL && cx->plain.skip ? cx->plain.skip : "",
                 cx->plain.obj != NULL && cx->html.obj != NULL ? "; " : "",
                 cx->html.obj != NULL ? "text/html: " : "",
                 cx->html.obj != NULL && cx->html.skip ? cx->html.skip : "");
        rc = verdict_set(v, VERDICT_CONTINUE, NULL, "%s", note);
        goto done;
    }
    if (!wrap && flt_disclaimer_splice_body(cx, sp, nsp, &body, e) < 0) {
        if (e->code == ERR_LIMIT) {
            rc = verdict_set(v, VERDICT_CONTINUE, NULL,
                             "skipped (result over the message size limit)");
            log_warning(msg_qid(cx->m),
                        "%s: footer not added: result over the message size "
                        "limit",
                        cx->st->name);
        }
        goto done;
    }
    flt_disclaimer_note(cx, added_part, note, sizeof(note));
    /* Header edits first: they cannot fail on size, and the body edit
     * is the one that drops the shared parse the parts point into. */
    if (wrap && flt_disclaimer_wrap_headers(cx, boundary, e) < 0)
        goto done;
    for (i = 0; i < 2; i++) {
        const struct msg_edit *ed;
        size_t before = msg_journal(cx->m, &ed);

        if (!ps[i]->edited || !ps[i]->top ||
            flt_disclaimer_top_headers(cx, ps[i], e) == 0)
            continue;
        /* msg refused the first field (a bare CR, a line over the
         * limit, kept from the original value) and changed nothing. */
        if ((e->code == ERR_INPUT || e->code == ERR_LIMIT) &&
            msg_journal(cx->m, &ed) == before)
            rc = verdict_set(v, VERDICT_CONTINUE, NULL, "skipped (%s: %s)",
                             ps[i]->kind, e->text);
        goto done;
    }
    /* The journal takes the new body over rather than a copy of it. */
    blen = body.len;
    if ((bdata = buf_steal(&body, NULL)) == NULL) {
        rc = err_nomem(e);
        goto done;
    }
    if (msg_body_adopt(cx->m, cx->st->name, bdata, blen, e) < 0)
        goto done;
    rc = verdict_set(v, VERDICT_CONTINUE, NULL, "%s", note);
    goto done;

skipped:
    rc = verdict_set(v, VERDICT_CONTINUE, NULL, "skipped (%s)", cx->skip);
done:
    buf_fini(&body);
    buf_fini(&part);
    return rc;
}

static int
flt_disclaimer_run(const struct stage *st, struct msg *m, struct verdict *v,
                   struct err *e)
{
    const struct flt_disclaimer *fd = st->priv;
    struct flt_disclaimer_ctx cx;
    const struct mime *mm;
    char what[160];
    int rc;

    memset(&cx, 0, sizeof(cx));
    cx.st = st;
    cx.fd = fd;
    cx.m = m;
    if ((cx.tpl = flt_disclaimer_pick(fd, m)) == NULL)
        return verdict_set(v, VERDICT_CONTINUE, NULL,
                           "skipped (no template for this sender)");
    /* Without any header field the whole text is body (as in Postfix):
     * not a message anyone could read the parts of. */
    if (msg_header_count(m) == 0)
        return verdict_set(v, VERDICT_CONTINUE, NULL,
                           "skipped (no header fields)");
    /* Every DKIM signature covers the body: a footer would break the
     * one an earlier hop made. */
    if (!fd->dkim_edit && flt_dkim_signed(m, NULL, what, sizeof(what)))
        return verdict_set(v, VERDICT_CONTINUE, NULL,
                           "skipped (DKIM-signed, %s)", what);
    if ((mm = msg_mime(m, e)) == NULL) {
        err_prefix(e, "%s", st->name);
        return -1;
    }
    if (mime_flags(mm) != 0)
        return verdict_set(
            v, VERDICT_CONTINUE, NULL, "skipped (ambiguous MIME: %s)",
            mime_flags_describe(mime_flags(mm), what, sizeof(what)));
    cx.message = mime_message(mm);
    cx.win.body = msg_body(m, &cx.win.blen);
    cx.eol = msg_eol(m);
    cx.limit = msg_limits(m)->message_size;
    cx.win.base = SIZE_MAX;
    flt_disclaimer_part_init(&cx.plain, "text/plain", 0, cx.limit);
    flt_disclaimer_part_init(&cx.html, "text/html", 1, cx.limit);
    buf_init(&cx.text_footer, FLT_DISCLAIMER_FILE_MAX * 2);
    buf_init(&cx.html_footer, FLT_DISCLAIMER_FILE_MAX * 8);
    rc = flt_disclaimer_apply(&cx, v, e);
    flt_disclaimer_part_fini(&cx.plain);
    flt_disclaimer_part_fini(&cx.html);
    buf_fini(&cx.text_footer);
    buf_fini(&cx.html_footer);
    if (rc < 0)
        err_prefix(e, "%s", st->name);
    return rc;
}

const struct stage_type flt_disclaimer_type = {
    .name = "disclaimer",
    .summary = "add a compliance footer to the text and HTML body, never to "
               "signed or encrypted mail",
    .flags = STAGE_EDITS_HEADERS | STAGE_EDITS_BODY,
    .options = flt_disclaimer_options,
    .init = flt_disclaimer_init,
    .run = flt_disclaimer_run,
    .free = flt_disclaimer_free,
};
