/*
 * track - the track stage: open and click tracking, List-Unsubscribe
 *
 * For mail whose envelope sender track_map says "yes" or "bulk" (a
 * pcre_table(5) file; unset: all mail the stage's match keys select),
 * the stage rewrites the http(s) links of the HTML parts to
 * https://TRACK_HOST/c/TOKEN, adds an open pixel
 * https://TRACK_HOST/o/TOKEN.gif, and, for bulk mail ("bulk" in the map,
 * or bulk = yes), adds List-Unsubscribe (https://TRACK_HOST/u/TOKEN and
 * unsubscribe_mailto) and List-Unsubscribe-Post: List-Unsubscribe=
 * One-Click (RFC 8058) unless the sender set either. Text parts are
 * rewritten only with track_text_links = yes. TOKEN is signed with the
 * key of key_file (util/track_token.h); the HTTP handlers of relaychaind
 * (queue/track_http.h) read the same file.
 *
 * Signed or encrypted mail (multipart/signed, multipart/encrypted,
 * application/pkcs7-mime), and mail that arrived DKIM-signed, is never
 * changed: the stage skips it with the reason in its log note. The
 * stage edits header and body, so the chain refuses a configuration
 * that puts it after DKIM signing or after encryption (chain/stage.h).
 *
 * Tokens name the recipient only when the message has one recipient.
 * With per_recipient = yes the stage gives each tracked recipient a
 * group of its own at RCPT time (stage_type rcpt_group), so that with
 * delivery = queue the SMTP front end splits the message into one copy
 * per recipient (the encrypt stage's mechanism: smtpd_deliver.c) and
 * each copy's tokens name its recipient. In milter and through mode, or
 * without per_recipient, a message for several recipients gets tokens
 * per message (recipient empty): opens and clicks are counted per
 * message and no List-Unsubscribe is added (an unsubscribe must name
 * whom it takes off the list). With delivery = through, per_recipient
 * makes the front end answer a second recipient 452 4.5.3, asking the
 * client for one transaction per recipient.
 *
 * init() reads the key and the map once; run() makes its tokens and
 * buffers per message and frees them before it returns.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>

#include "filters/filters.h"
#include "filters/filters_int.h"
#include "filters/track/track_int.h"
#include "util/log.h"
#include "msg/msg.h"

static const struct cfg_option flt_track_options[] = {
    {"track_host", CFG_STRING, NULL,
     "host name (and :port) of relaychaind's HTTP listener in the rewritten "
     "links: https://TRACK_HOST/c/TOKEN",
     NULL, 0, 0, CFG_REQUIRED},
    {"key_file", CFG_PATH, NULL,
     "file of at least 32 octets, which other users may not read, whose "
     "contents sign the tokens; the same file relaychaind's HTTP side reads",
     NULL, 0, 0, CFG_REQUIRED},
    {"track_map", CFG_PATH, NULL,
     "pcre_table(5) file from the envelope sender to yes, bulk or no; "
     "unset: all mail the match keys select is tracked",
     NULL, 0, 0, 0},
    {"track_text_links", CFG_BOOL, "no",
     "rewrite the links of text/plain parts too", NULL, 0, 0, 0},
    {"bulk", CFG_BOOL, "no",
     "treat all tracked mail as bulk: add List-Unsubscribe and "
     "List-Unsubscribe-Post (RFC 8058)",
     NULL, 0, 0, 0},
    {"unsubscribe_mailto", CFG_STRING, NULL,
     "address for the mailto: entry of List-Unsubscribe, or unset for none",
     NULL, 0, 0, 0},
    {"per_recipient", CFG_BOOL, "no",
     "give each tracked recipient its own copy (delivery = queue), so that "
     "tokens name the recipient",
     NULL, 0, 0, 0},
    CFG_OPTION_END,
};

static void
flt_track_free(struct stage *st)
{
    struct flt_track *ft = st->priv;

    if (ft == NULL)
        return;
    track_key_free(&ft->key);
    regmap_free(ft->map);
    free(ft->mailto);
    free(ft);
    st->priv = NULL;
}

/* flt_track_host_ok - a host name or address and an optional port:
 * letters, digits, '.', '-', ':', '[', ']'. */
static int
flt_track_host_ok(const char *h)
{
    size_t i;

    if (h[0] == '\0' || strlen(h) > FLT_TRACK_HOST_MAX)
        return 0;
    for (i = 0; h[i] != '\0'; i++)
        if (!((h[i] >= 'a' && h[i] <= 'z') || (h[i] >= 'A' && h[i] <= 'Z') ||
              (h[i] >= '0' && h[i] <= '9') || strchr(".-:[]", h[i]) != NULL))
            return 0;
    return 1;
}

static int
flt_track_mailto_ok(const char *a)
{
    const char *at = strchr(a, '@');
    size_t i;

    if (at == NULL || at == a || at[1] == '\0' || strlen(a) > TRACK_ADDR_MAX)
        return 0;
    for (i = 0; a[i] != '\0'; i++)
        if ((unsigned char)a[i] <= 0x20 || (unsigned char)a[i] >= 0x7f ||
            strchr("<>\",;()[]\\", a[i]) != NULL)
            return 0;
    return 1;
}

static int
flt_track_setup(struct stage *st, const struct cfg *c, struct err *e)
{
    struct flt_track *ft;
    const char *v;

    if ((ft = calloc(1, sizeof(*ft))) == NULL)
        return err_nomem(e);
    st->priv = ft;
    v = cfg_str(c, "track_host");
    if (v == NULL || !flt_track_host_ok(v))
        return cfg_err(e, c, "track_host",
                       "want a host name, optionally with :port");
    snprintf(ft->host, sizeof(ft->host), "%s", v);
    if (track_key_load(cfg_str(c, "key_file"), &ft->key, e) < 0)
        return flt_cfg_prefix(e, c, "key_file");
    if (flt_cfg_regmap(c, "track_map", &ft->map, e) < 0)
        return -1;
    ft->text_links = cfg_bool(c, "track_text_links");
    ft->bulk = cfg_bool(c, "bulk");
    ft->per_rcpt = cfg_bool(c, "per_recipient");
    if ((v = cfg_str(c, "unsubscribe_mailto")) != NULL) {
        if (!flt_track_mailto_ok(v))
            return cfg_err(e, c, "unsubscribe_mailto",
                           "want one plain address, local@domain");
        if ((ft->mailto = strdup(v)) == NULL)
            return err_nomem(e);
    }
    return 0;
}

/* flt_track_init - the stage's state, or nothing left behind when a key
 * is refused. */
static int
flt_track_init(struct stage *st, const struct cfg *c, struct err *e)
{
    if (flt_track_setup(st, c, e) == 0)
        return 0;
    flt_track_free(st);
    return -1;
}

/* flt_track_lookup - what track_map says for sender: 0 not tracked, 1
 * tracked, 2 tracked bulk; -1 with e. why (size n) says why not. */
static int
flt_track_lookup(const struct flt_track *ft, const char *sender, char *why,
                 size_t n, struct err *e)
{
    struct buf out;
    unsigned line = 0;
    int r, rc;

    why[0] = '\0';
    if (ft->map == NULL)
        return ft->bulk ? 2 : 1;
    buf_init(&out, 1024);
    if ((r = regmap_lookup(ft->map, sender, &out, &line, e)) < 0) {
        buf_fini(&out);
        return -1;
    }
    if (r == 0) {
        snprintf(why, n, "not in track_map");
        rc = 0;
    } else if (strcasecmp(buf_str(&out), "yes") == 0) {
        rc = ft->bulk ? 2 : 1;
    } else if (strcasecmp(buf_str(&out), "bulk") == 0) {
        rc = 2;
    } else {
        if (strcasecmp(buf_str(&out), "no") == 0)
            snprintf(why, n, "track_map line %u says no", line);
        else
            snprintf(why, n,
                     "track_map line %u gives neither yes, bulk nor no", line);
        rc = 0;
    }
    buf_fini(&out);
    return rc;
}

/* flt_track_rcpt_group - with per_recipient, a tracked recipient's own
 * group: the first 64 bits of SHA-256 of its address in lower case, so
 * that each gets its copy. */
static int
flt_track_rcpt_group(const struct stage *st, const char *sender,
                     const char *rcpt, char *group, size_t n,
                     struct verdict *v, struct err *e)
{
    const struct flt_track *ft = st->priv;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdl = 0;
    char low[TRACK_ADDR_MAX + 1], why[80];
    size_t i;
    int r;

    (void)v;
    group[0] = '\0';
    if (!ft->per_rcpt || sender == NULL || sender[0] == '\0' ||
        strlen(rcpt) > TRACK_ADDR_MAX)
        return 0;
    if ((r = flt_track_lookup(ft, sender, why, sizeof(why), e)) <= 0)
        return r;
    for (i = 0; rcpt[i] != '\0'; i++)
        low[i] =
            (char)(rcpt[i] >= 'A' && rcpt[i] <= 'Z' ? rcpt[i] + 32 : rcpt[i]);
    low[i] = '\0';
    if (EVP_Digest(low, i, md, &mdl, EVP_sha256(), NULL) != 1 || mdl < 8)
        return err_set(e, ERR_LIB, "SHA-256 failed");
    for (i = 0; i < 8 && 2 * i + 2 < n; i++)
        snprintf(group + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* flt_track_msgid - the Message-ID, unfolded and trimmed, into out
 * ("" when there is none or it does not fit). */
static void
flt_track_msgid(const struct msg *m, char *out, size_t n)
{
    const char *v = msg_header_get(m, "Message-ID", 1);
    size_t o = 0;

    out[0] = '\0';
    if (v == NULL)
        return;
    for (; *v != '\0'; v++) {
        if (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n')
            continue;
        if ((unsigned char)*v < 0x20 || *v == 0x7f || o + 1 >= n) {
            out[0] = '\0';
            return;
        }
        out[o++] = *v;
    }
    out[o] = '\0';
}

/* flt_track_unsub - List-Unsubscribe and List-Unsubscribe-Post. The
 * field's first line must stay within 998 octets: a token that would
 * not (a long Message-ID and long addresses) goes without the
 * Message-ID, and when even that is too long the fields are not added
 * (1). 0, 1, or -1 with e. */
static int
flt_track_unsub(const struct stage *st, struct flt_track_tokens *tk,
                struct msg *m, struct err *e)
{
    const struct flt_track *ft = st->priv;
    struct flt_track_tokens short_tk;
    struct buf v;
    int rc = -1;

    buf_init(&v, 8192);
    if (buf_puts(&v, "<", e) < 0 ||
        flt_track_url(tk, TRACK_UNSUB, NULL, &v, e) < 0 ||
        buf_puts(&v, ">,", e) < 0)
        goto out;
    if (v.len + sizeof("List-Unsubscribe: ") > FLT_TRACK_LINE_MAX) {
        short_tk = *tk;
        short_tk.base.msgid[0] = '\0';
        buf_reset(&v);
        if (buf_puts(&v, "<", e) < 0 ||
            flt_track_url(&short_tk, TRACK_UNSUB, NULL, &v, e) < 0 ||
            buf_puts(&v, ">,", e) < 0)
            goto out;
        if (v.len + sizeof("List-Unsubscribe: ") > FLT_TRACK_LINE_MAX) {
            rc = 1;
            goto out;
        }
    }
    v.data[--v.len] = '\0'; /* the comma, there only to be counted */
    if (ft->mailto != NULL &&
        buf_printf(&v, e, ",%s <mailto:%s?subject=unsubscribe>", msg_eol(m),
                   ft->mailto) < 0)
        goto out;
    if (msg_header_add(m, st->name, "List-Unsubscribe", buf_str(&v), e) < 0 ||
        msg_header_add(m, st->name, "List-Unsubscribe-Post",
                       "List-Unsubscribe=One-Click", e) < 0)
        goto out;
    rc = 0;
out:
    buf_fini(&v);
    return rc;
}

static int
flt_track_run(const struct stage *st, struct msg *m, struct verdict *v,
              struct err *e)
{
    const struct flt_track *ft = st->priv;
    const struct msg_env *env = msg_env(m);
    struct flt_track_tokens tk;
    char why[VERDICT_NOTE_MAX], note[VERDICT_NOTE_MAX], list[64];
    unsigned links = 0;
    int r, bulk, edited = 0, pixel = 0;
    const char *qid;

    if (env->sender == NULL || env->sender[0] == '\0')
        return verdict_set(v, VERDICT_CONTINUE, NULL, "skipped (null sender)");
    if ((r = flt_track_lookup(ft, env->sender, why, sizeof(why), e)) < 0) {
        err_prefix(e, "%s: track_map", st->name);
        return -1;
    }
    if (r == 0)
        return verdict_set(v, VERDICT_CONTINUE, NULL, "skipped (%s)", why);
    bulk = r == 2;
    if (msg_header_count(m) == 0)
        return verdict_set(v, VERDICT_CONTINUE, NULL,
                           "skipped (no header fields)");
    if (flt_dkim_signed(m, NULL, why, sizeof(why)))
        return verdict_set(v, VERDICT_CONTINUE, NULL,
                           "skipped (DKIM-signed, %s)", why);

    memset(&tk, 0, sizeof(tk));
    tk.ft = ft;
    tk.base.made = (unsigned long)time(NULL);
    qid = msg_qid(m);
    if (strcmp(qid, "NOQUEUE") != 0 && strlen(qid) <= TRACK_QID_MAX)
        snprintf(tk.base.qid, sizeof(tk.base.qid), "%s", qid);
    flt_track_msgid(m, tk.base.msgid, sizeof(tk.base.msgid));
    if (strlen(env->sender) <= TRACK_ADDR_MAX)
        snprintf(tk.base.sender, sizeof(tk.base.sender), "%s", env->sender);
    if (env->nrcpts == 1 && strlen(env->rcpts[0].addr) <= TRACK_ADDR_MAX)
        snprintf(tk.base.rcpt, sizeof(tk.base.rcpt), "%s", env->rcpts[0].addr);

    r = flt_track_body(&tk, m, st->name, &edited, &links, &pixel, note,
                       sizeof(note), e);
    if (r < 0 && e->code == ERR_LIMIT) {
        log_warning(qid,
                    "%s: not tracked: result over the message size "
                    "limit",
                    st->name);
        return verdict_set(v, VERDICT_CONTINUE, NULL,
                           "skipped (result over the message size limit)");
    }
    if (r < 0) {
        err_prefix(e, "%s", st->name);
        return -1;
    }
    if (r == 1)
        return verdict_set(v, VERDICT_CONTINUE, NULL, "skipped (%s)", note);

    list[0] = '\0';
    if (bulk) {
        if (msg_header_name_count(m, "List-Unsubscribe") > 0 ||
            msg_header_name_count(m, "List-Unsubscribe-Post") > 0)
            snprintf(list, sizeof(list), ", list-unsubscribe kept");
        else if (tk.base.rcpt[0] == '\0')
            snprintf(list, sizeof(list),
                     ", no list-unsubscribe (tokens per message)");
        else if ((r = flt_track_unsub(st, &tk, m, e)) < 0) {
            err_prefix(e, "%s: List-Unsubscribe", st->name);
            return -1;
        } else if (r > 0)
            snprintf(list, sizeof(list),
                     ", no list-unsubscribe (its token is too long)");
        else
            snprintf(list, sizeof(list), ", list-unsubscribe");
    }
    return verdict_set(v, VERDICT_CONTINUE, NULL,
                       "tracked (links=%u, pixel=%s, tokens per %s%s%s%s)",
                       links, pixel ? "yes" : "no",
                       tk.base.rcpt[0] ? "recipient" : "message", list,
                       note[0] ? "; " : "", note);
}

const struct stage_type flt_track_type = {
    .name = "track",
    .summary = "rewrite HTML links and add an open pixel and one-click "
               "List-Unsubscribe, with signed tokens; never signed or "
               "encrypted mail",
    .flags = STAGE_EDITS_HEADERS | STAGE_EDITS_BODY,
    .options = flt_track_options,
    .init = flt_track_init,
    .run = flt_track_run,
    .free = flt_track_free,
    .rcpt_group = flt_track_rcpt_group,
};
