/*
 * archive_journal - the archive stage's journaling store
 * (store = smtp:[host]:port)
 *
 * A journal store keeps nothing itself: put sends a journal report (an
 * envelope summary and the message as it was archived, see
 * arc_journal_report) to journal_recipient at the host, where a
 * compliance mailbox keeps it. It cannot read back, so get, list and
 * remove are NULL.
 *
 * Sending goes through the chain's notice service (stage_env notify:
 * the next-hop client, envelope sender <>, one recipient): the stage
 * lends the env with arc_journal_set_env() after open. The report's From:
 * is journal_sender, or the null sender's MAILER-DAEMON form.
 *
 * Durability is the spool's: the stage uses this store through
 * archive_spool only, so a record waits there while the host is down.
 * put is given meta and data by the spool once it can open the records
 * it reads back (arc_record_parse); a put without them is refused with
 * ERR_TEMP and the record waits in the spool, never dropped.
 *
 * Failures: no connection or a 4xx is ERR_TEMP, a 5xx is ERR_IO, both
 * with the host's reply in the text.
 *
 * Ownership: the store owns its strings and its notifier; the env is
 * borrowed. Nothing here prints.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "filters/archive/archive_remote.h"
#include "filters/archive/archive_store.h"
#include "util/buf.h"
#include "util/cfg.h"
#include "util/err.h"

#define JR_ADDR_MAX 320 /* octets of an address in the keys */
#define JR_LINE_MAX 998 /* octets of a line we write (RFC 5322) */
#define JR_EXTRA 65536  /* octets of report beside the message */
#define JR_REPORT_MAX (1024LL * 1024 * 1024)

const struct cfg_option arc_journal_options[] = {
    ARC_JOURNAL_OPTION_ENTRIES CFG_OPTION_END,
};

struct jr_store {
    char *next_hop; /* "smtp:[host]:port" */
    char *rcpt;
    char *from; /* NULL: MAILER-DAEMON@helo */
    char *helo;
    const struct stage_env *env; /* borrowed */
    struct stage_notifier *n;
};

/* ----------------------------------------------------------- the report */

/* jr_put_clean - append s with CR, LF and other control characters as
 * '?', cut at max octets: envelope text can not start a header or a
 * boundary line of its own. */
static int
jr_put_clean(struct buf *b, const char *s, size_t max, struct err *e)
{
    size_t i;

    for (i = 0; s != NULL && s[i] && i < max; i++) {
        unsigned char c = (unsigned char)s[i];

        if (buf_putc(b, (c < 0x20 || c == 0x7f) ? '?' : (int)c, e) < 0)
            return -1;
    }
    return 0;
}

static int
jr_field(struct buf *b, const char *name, const char *v, struct err *e)
{
    if (buf_printf(b, e, "%s: ", name) < 0 ||
        jr_put_clean(b, v, JR_LINE_MAX - 40, e) < 0 ||
        buf_puts(b, "\r\n", e) < 0)
        return -1;
    return 0;
}

/* jr_cte - how the message travels inside message/rfc822 (RFC 2046
 * 5.2.1 allows 7bit, 8bit and binary): binary for NUL, a bare CR or LF
 * or a line over 998 octets, else 8bit for any octet over 127, else
 * 7bit. */
static const char *
jr_cte(const char *p, size_t n)
{
    size_t i, line = 0;
    int high = 0;

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];

        if (c == '\r') {
            if (i + 1 >= n || p[i + 1] != '\n')
                return "binary";
            i++;
            line = 0;
            continue;
        }
        if (c == '\n' || c == '\0')
            return "binary";
        if (++line > 998)
            return "binary";
        if (c > 127)
            high = 1;
    }
    return high ? "8bit" : "7bit";
}

static int
jr_has_8bit(const char *s)
{
    for (; s != NULL && *s; s++)
        if ((unsigned char)*s > 127)
            return 1;
    return 0;
}

int
arc_journal_report(const struct arc_journal_from *f, const struct arc_meta *m,
                   const char *name, const char *data, size_t len,
                   struct buf *out, struct err *e)
{
    char boundary[80], delim[84], when[40], date[64], sha[65];
    const char *host = f->host && f->host[0] ? f->host : "localhost";
    unsigned long salt;
    time_t t = (time_t)m->time;
    struct tm tm;
    size_t i;
    int eightbit;

    if (gmtime_r(&t, &tm) == NULL)
        return err_set(e, ERR_INPUT, "journal: time %lld out of range",
                       m->time);
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
    for (i = 0; i < 32; i++)
        snprintf(sha + 2 * i, 3, "%02x", m->sha256[i]);
    /* A boundary the message does not hold: "--" + boundary nowhere in
     * data (a line of it would end the part early). */
    salt = ((unsigned long)m->sha256[0] << 24) | (m->sha256[1] << 16) |
           (m->sha256[2] << 8) | m->sha256[3];
    for (;; salt = salt * 1103515245UL + 12345UL) {
        snprintf(boundary, sizeof(boundary), "=_rcjournal_%08lx_%lld",
                 salt & 0xffffffffUL, m->time);
        snprintf(delim, sizeof(delim), "--%s", boundary);
        if (memmem(data, len, delim, strlen(delim)) == NULL)
            break;
    }
    eightbit = jr_has_8bit(m->sender) || jr_has_8bit(m->subject) ||
               jr_has_8bit(m->auth_user) || jr_has_8bit(m->client_name);
    for (i = 0; i < m->nrcpts; i++)
        eightbit |= jr_has_8bit(m->rcpts[i]);

    /* The report's header. */
    if (buf_puts(out, "From: ", e) < 0 ||
        (f->from ? jr_put_clean(out, f->from, JR_ADDR_MAX, e)
                 : buf_printf(out, e,
                              "Mail Delivery System "
                              "<MAILER-DAEMON@%s>",
                              host)) < 0 ||
        buf_puts(out, "\r\nTo: ", e) < 0 ||
        jr_put_clean(out, f->to, JR_ADDR_MAX, e) < 0 ||
        buf_puts(out, "\r\nSubject: Journal report ", e) < 0 ||
        jr_put_clean(out, name, 200, e) < 0 ||
        buf_printf(out, e, "\r\nDate: %s\r\nMessage-ID: <journal.", date) < 0)
        return -1;
    for (i = 0; name[i]; i++)
        if (buf_putc(out, isalnum((unsigned char)name[i]) ? name[i] : '.', e) <
            0)
            return -1;
    if (buf_printf(out, e,
                   ".%lld@%s>\r\n"
                   "Auto-Submitted: auto-generated\r\n"
                   "MIME-Version: 1.0\r\n"
                   "Content-Type: multipart/mixed; boundary=\"%s\"\r\n"
                   "\r\n"
                   "This is a journal report of relaychain's archive, in "
                   "MIME format.\r\n"
                   "\r\n"
                   "--%s\r\n"
                   "Content-Type: text/plain; charset=%s\r\n"
                   "Content-Transfer-Encoding: %s\r\n"
                   "Content-Description: envelope\r\n"
                   "\r\n",
                   m->time, host, boundary, boundary,
                   eightbit ? "utf-8" : "us-ascii",
                   eightbit ? "8bit" : "7bit") < 0)
        return -1;

    /* The envelope, one field a line. */
    if (buf_puts(out, "Sender: ", e) < 0 ||
        (m->sender && m->sender[0]
             ? jr_put_clean(out, m->sender, JR_ADDR_MAX, e)
             : buf_puts(out, "<>", e)) < 0 ||
        buf_puts(out, "\r\n", e) < 0)
        return -1;
    for (i = 0; i < m->nrcpts; i++)
        if (jr_field(out, "Recipient", m->rcpts[i], e) < 0)
            return -1;
    if ((m->message_id && jr_field(out, "Message-ID", m->message_id, e) < 0) ||
        (m->subject && jr_field(out, "Subject", m->subject, e) < 0) ||
        (m->qid && jr_field(out, "Queue-ID", m->qid, e) < 0))
        return -1;
    if (m->client_addr || m->client_name) {
        if (buf_puts(out, "Client: ", e) < 0 ||
            jr_put_clean(out, m->client_name ? m->client_name : "unknown", 255,
                         e) < 0 ||
            buf_puts(out, " [", e) < 0 ||
            jr_put_clean(out, m->client_addr ? m->client_addr : "unknown", 64,
                         e) < 0 ||
            buf_puts(out, "]\r\n", e) < 0)
            return -1;
    }
    if ((m->auth_user && jr_field(out, "Auth-User", m->auth_user, e) < 0) ||
        jr_field(out, "Point", m->point ? m->point : "", e) < 0 ||
        jr_field(out, "Time", when, e) < 0 ||
        buf_printf(out, e, "Size: %zu\r\n", m->size) < 0 ||
        jr_field(out, "SHA-256", sha, e) < 0 ||
        (m->verdicts && m->verdicts[0] &&
         jr_field(out, "Verdicts", m->verdicts, e) < 0) ||
        jr_field(out, "Record", name, e) < 0)
        return -1;

    /* The message, exactly. The CRLF before the closing delimiter
     * belongs to the delimiter (RFC 2046 5.1.1), not to the part. */
    if (buf_printf(out, e,
                   "\r\n--%s\r\n"
                   "Content-Type: message/rfc822\r\n"
                   "Content-Transfer-Encoding: %s\r\n"
                   "Content-Description: the message as archived\r\n"
                   "\r\n",
                   boundary, jr_cte(data, len)) < 0 ||
        buf_append(out, data, len, e) < 0 ||
        buf_printf(out, e, "\r\n--%s--\r\n", boundary) < 0)
        return -1;
    return 0;
}

/* ------------------------------------------------------------- the store */

static void
jr_close(void *v)
{
    struct jr_store *s = v;

    if (s == NULL)
        return;
    if (s->n != NULL && s->env != NULL)
        s->env->notifier_free(s->n);
    free(s->next_hop);
    free(s->rcpt);
    free(s->from);
    free(s->helo);
    free(s);
}

/* jr_addr_ok - a plain address local@domain: printable, no space, no
 * <>, one "@" with text on both sides. */
static int
jr_addr_ok(const char *a)
{
    const char *at = strrchr(a, '@');
    size_t i, n = strlen(a);

    if (n == 0 || n > JR_ADDR_MAX || at == NULL || at == a || at[1] == '\0')
        return 0;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a[i];

        if (c <= 0x20 || c == 0x7f || c == '<' || c == '>' || c == ',' ||
            c == '"' || c == '(' || c == ')')
            return 0;
    }
    return 1;
}

static void *
jr_open(const char *spec, const struct cfg *c, int check_only, struct err *e)
{
    struct jr_store *s;
    const char *rcpt = cfg_str(c, "journal_recipient");
    const char *from = cfg_str(c, "journal_sender");
    const char *helo = cfg_str(c, "journal_helo");
    const char *p;
    char host[256];
    struct buf b;

    (void)check_only; /* nothing is contacted before set_env either */
    /* [host]:port or host:port; the notifier checks it in full. */
    p = strrchr(spec, ':');
    if (spec[0] == '\0' || p == NULL || p == spec || p[1] == '\0' ||
        strspn(p + 1, "0123456789") != strlen(p + 1) || strlen(p + 1) > 5 ||
        strpbrk(spec, " \t/@") != NULL) {
        err_set(e, ERR_CONFIG, "%s: store = smtp:[host]:port, not smtp:%s",
                cfg_path(c), spec);
        return NULL;
    }
    if (rcpt == NULL) {
        err_set(e, ERR_CONFIG, "%s: an smtp: store needs journal_recipient",
                cfg_path(c));
        return NULL;
    }
    if (!jr_addr_ok(rcpt)) {
        cfg_err(e, c, "journal_recipient", "not a plain address local@domain");
        return NULL;
    }
    if (from != NULL && !jr_addr_ok(from)) {
        cfg_err(e, c, "journal_sender", "not a plain address local@domain");
        return NULL;
    }
    if (helo != NULL && (helo[0] == '\0' || strlen(helo) > 255 ||
                         strspn(helo, "abcdefghijklmnopqrstuvwxyz"
                                      "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                      "0123456789.-[]:") != strlen(helo))) {
        cfg_err(e, c, "journal_helo", "not a host name");
        return NULL;
    }
    if (helo == NULL) {
        if (gethostname(host, sizeof(host)) < 0 || host[0] == '\0')
            snprintf(host, sizeof(host), "localhost");
        host[sizeof(host) - 1] = '\0';
        helo = host;
    }
    if ((s = calloc(1, sizeof(*s))) == NULL) {
        err_nomem(e);
        return NULL;
    }
    buf_init(&b, 0);
    if (buf_printf(&b, e, "smtp:%s", spec) < 0) {
        buf_fini(&b);
        jr_close(s);
        return NULL;
    }
    s->next_hop = buf_steal(&b, NULL);
    s->rcpt = strdup(rcpt);
    s->from = from ? strdup(from) : NULL;
    s->helo = strdup(helo);
    if (s->next_hop == NULL || s->rcpt == NULL || (from && s->from == NULL) ||
        s->helo == NULL) {
        err_nomem(e);
        jr_close(s);
        return NULL;
    }
    return s;
}

int
arc_journal_set_env(void *v, const struct stage_env *env, struct err *e)
{
    struct jr_store *s = v;

    if (env == NULL || env->notifier_new == NULL || env->notify == NULL ||
        env->notifier_free == NULL)
        return err_set(e, ERR_CONFIG,
                       "store = %s: this program offers no notice service "
                       "for journal reports",
                       s->next_hop);
    if (s->n != NULL)
        return 0;
    if ((s->n = env->notifier_new(s->next_hop, s->helo, e)) == NULL) {
        err_prefix(e, "store = %s", s->next_hop);
        return -1;
    }
    s->env = env;
    return 0;
}

static int
jr_put(void *v, const struct arc_item *it, struct err *e)
{
    struct jr_store *s = v;
    struct arc_journal_from f;
    struct stage_reply r;
    struct buf b;
    int rc;

    if (s->n == NULL)
        return err_set(e, ERR_CONFIG,
                       "journal %s: no notice service lent (the stage calls "
                       "arc_journal_set_env)",
                       it->name);
    if (it->meta == NULL || it->data == NULL)
        return err_set(e, ERR_TEMP,
                       "journal %s: the record came without its message: "
                       "the spool does not open records yet "
                       "(arc_record_parse); it waits there",
                       it->name);
    if (it->len > (size_t)JR_REPORT_MAX - JR_EXTRA)
        return err_set(e, ERR_LIMIT, "journal %s: message of %zu octets",
                       it->name, it->len);
    buf_init(&b, it->len + JR_EXTRA);
    f.from = s->from;
    f.to = s->rcpt;
    f.host = s->helo;
    if (arc_journal_report(&f, it->meta, it->name, it->data, it->len, &b, e) <
        0) {
        buf_fini(&b);
        return -1;
    }
    memset(&r, 0, sizeof(r));
    rc = s->env->notify(s->n, s->rcpt, &b, &r);
    buf_fini(&b);
    if (rc == 0)
        return 0;
    r.text[sizeof(r.text) - 1] = '\0';
    if (r.code == 0)
        return err_set(e, ERR_TEMP, "journal %s to %s via %s: %s", it->name,
                       s->rcpt, s->next_hop, r.text);
    return err_set(e, r.code >= 500 ? ERR_IO : ERR_TEMP,
                   "journal %s to %s via %s: %d %s", it->name, s->rcpt,
                   s->next_hop, r.code, r.text);
}

const struct arc_store_ops arc_store_smtp = {
    .scheme = "smtp",
    .open = jr_open,
    .put = jr_put,
    .get = NULL,
    .list = NULL,
    .remove = NULL,
    .close = jr_close,
};
