/*
 * queue_dsn - RFC 3464 delivery status notifications
 *
 * queue_dsn_build() writes a whole message, CRLF line ends, in the shape
 * of Postfix's bounces: a multipart/report (report-type=delivery-status)
 * with a human-readable text/plain part, the machine-readable
 * message/delivery-status part (per-message fields, then one block per
 * recipient: Final-Recipient, Original-Recipient from ORCPT, Action,
 * Status, Remote-MTA, Diagnostic-Code, Last-Attempt-Date and, for a
 * delay, Will-Retry-Until), and the returned message: its header as
 * text/rfc822-headers, or the whole of it as message/rfc822 when the
 * client asked RET=FULL and it is no larger than QUEUE_DSN_FULL_MAX
 * (Postfix's bounce_size_limit). The header part is only ever lines
 * that are header fields, cut at the same size: a report must not carry
 * a client's content to an address it merely named as the sender. The
 * SMTP server drops RET (and the rest of DSN) from clients not in
 * smtpd_dsn_clients. Original-Envelope-Id carries ENVID.
 *
 * Text that comes from elsewhere (replies, addresses, ENVID, ORCPT) is
 * written with every octet outside printable US-ASCII replaced by '?',
 * so the report parts stay 7-bit and one field per line. The caller
 * commits the result as a new queue file with the null sender; nothing
 * here logs or touches the disk.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "util/esmtp.h"
#include "queue/dsn.h"

/* A message is returned whole up to this size, and no more of a header
 * than this is returned. */
#define QUEUE_DSN_FULL_MAX 50000

/* queue_dsn_date - RFC 5322 date of a time in microseconds. */
static void
queue_dsn_date(long long us, char *out, size_t n)
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;

    if (gmtime_r(&t, &tm) == NULL ||
        strftime(out, n, "%a, %d %b %Y %H:%M:%S +0000", &tm) == 0)
        snprintf(out, n, "Thu, 01 Jan 1970 00:00:00 +0000");
}

/* queue_dsn_text - s, octets outside printable ASCII as '?'. */
static int
queue_dsn_text(struct buf *b, const char *s, size_t len, struct err *e)
{
    size_t i;

    for (i = 0; i < len; i++) {
        int c = (unsigned char)s[i];

        if (buf_putc(b, c >= 0x20 && c < 0x7f ? c : '?', e) < 0)
            return -1;
    }
    return 0;
}

static int
queue_dsn_field(struct buf *b, const char *name, const char *value,
                struct err *e)
{
    if (buf_printf(b, e, "%s: ", name) < 0 ||
        queue_dsn_text(b, value, strlen(value), e) < 0)
        return -1;
    return buf_puts(b, "\r\n", e);
}

/* queue_dsn_status_len - the length of the enhanced status code
 * (RFC 3463: class 2, 4 or 5, then two numbers of one to three digits,
 * dot-separated) that text starts with, or 0. It reads no octet past
 * the first one that does not fit, so a short text is not overrun. */
static size_t
queue_dsn_status_len(const char *text)
{
    size_t a, b;

    if ((text[0] != '2' && text[0] != '4' && text[0] != '5') || text[1] != '.')
        return 0;
    a = strspn(text + 2, "0123456789");
    if (a < 1 || a > 3 || text[2 + a] != '.')
        return 0;
    b = strspn(text + 3 + a, "0123456789");
    return b >= 1 && b <= 3 ? 3 + a + b : 0;
}

/* queue_dsn_status - the enhanced status in a reply text "5.1.1 ...",
 * else one made from the code. Unlike queue_dsn_code's, a status code
 * glued to more text counts, and a reply of a class other than 2 or 5
 * gets class 4 (test_queue's test_dsn_status holds both rules). */
static void
queue_dsn_status(const char *reply, char *out, size_t n)
{
    const char *text = strchr(reply, ' ');
    size_t k;

    text = text != NULL ? text + 1 : reply;
    if ((k = queue_dsn_status_len(text)) > 0) {
        snprintf(out, n, "%.*s", (int)k, text);
        return;
    }
    snprintf(out, n, "%c.0.0",
             reply[0] == '2' || reply[0] == '5' ? reply[0] : '4');
}

void
queue_dsn_code(int code, const char *text, char *out, size_t n)
{
    size_t k = queue_dsn_status_len(text);

    if (k > 0 && (text[k] == ' ' || text[k] == '\0')) {
        snprintf(out, n, "%.*s", (int)k, text);
        return;
    }
    snprintf(out, n, "%d.0.0",
             code / 100 >= 2 && code / 100 <= 5 ? code / 100 : 4);
}

/* queue_dsn_field_line - line (n octets, no line end) starts with a
 * header field name and its colon (RFC 5322: printable US-ASCII but
 * the colon). */
static int
queue_dsn_field_line(const char *line, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        int c = (unsigned char)line[i];

        if (c == ':')
            return i > 0;
        if (c < 33 || c > 126)
            return 0;
    }
    return 0;
}

/* queue_dsn_headers_end - how much of the message is its header: up to
 * and with the empty line that ends it, but never past a line that is
 * neither a header field nor the continuation of one (the body of a
 * message that has no empty line, or that starts with text), and never
 * past max octets: what is returned as "headers" is header, and bounded,
 * whatever the client made the message look like. */
static size_t
queue_dsn_headers_end(const char *data, size_t len, size_t max)
{
    size_t pos = 0;
    int fields = 0;

    while (pos < len) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        size_t next = nl != NULL ? (size_t)(nl - data) + 1 : len;
        size_t n = next - pos;

        if (nl != NULL) {
            n--;
            if (n > 0 && data[pos + n - 1] == '\r')
                n--;
        }
        if (next > max)
            break;
        if (n == 0)
            return next;
        if (data[pos] == ' ' || data[pos] == '\t') {
            if (!fields)
                break;
        } else if (queue_dsn_field_line(data + pos, n)) {
            fields++;
        } else {
            break;
        }
        pos = next;
    }
    return pos;
}

/* queue_dsn_lines - data with every line end as CRLF. */
static int
queue_dsn_lines(struct buf *b, const char *data, size_t len, struct err *e)
{
    size_t i, start = 0;

    for (i = 0; i < len; i++) {
        if (data[i] != '\n' && data[i] != '\r')
            continue;
        if (buf_append(b, data + start, i - start, e) < 0 ||
            buf_puts(b, "\r\n", e) < 0)
            return -1;
        if (data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
            i++;
        start = i + 1;
    }
    if (start < len && (buf_append(b, data + start, len - start, e) < 0 ||
                        buf_puts(b, "\r\n", e) < 0))
        return -1;
    return 0;
}

static int
queue_dsn_human(struct buf *b, const struct queue_file *qf,
                const char *hostname, const char *action,
                const struct queue_dsn_rcpt *list, size_t n, long long now_us,
                long long until_us, struct err *e)
{
    size_t i;

    if (buf_printf(b, e, "This is the mail system at host %s.\r\n\r\n",
                   hostname) < 0)
        return -1;
    if (strcmp(action, "failed") == 0) {
        if (buf_puts(b,
                     "I'm sorry to have to inform you that your message "
                     "could not\r\nbe delivered to one or more recipients. "
                     "It's attached below.\r\n\r\n",
                     e) < 0)
            return -1;
    } else if (strcmp(action, "delayed") == 0) {
        if (buf_printf(b, e,
                       "####################################################"
                       "################\r\n"
                       "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO "
                       "RESEND YOUR MESSAGE. #\r\n"
                       "####################################################"
                       "################\r\n\r\n"
                       "Your message could not be delivered for %lld "
                       "minute(s).\r\nIt will be retried until it is %lld "
                       "minute(s) old.\r\n\r\n",
                       (now_us - qf->arrival_us) / 60000000LL,
                       (until_us - qf->arrival_us) / 60000000LL) < 0)
            return -1;
    } else if (buf_puts(b,
                        "Your message was successfully relayed to the "
                        "recipients below.\r\nThe next system does not "
                        "report delivery, so this is the last\r\nnotice "
                        "you will get about them.\r\n\r\n",
                        e) < 0) {
        return -1;
    }
    if (buf_puts(b, "                   The mail system\r\n\r\n", e) < 0)
        return -1;
    for (i = 0; i < n; i++) {
        const char *addr = qf->rcpts[list[i].idx].addr;

        if (buf_putc(b, '<', e) < 0 ||
            queue_dsn_text(b, addr, strlen(addr), e) < 0 ||
            buf_printf(b, e, ">: %s%s%s", list[i].remote ? "host " : "",
                       list[i].remote ? list[i].remote : "",
                       list[i].remote ? " said: " : "") < 0 ||
            queue_dsn_text(b, list[i].reply, strlen(list[i].reply), e) < 0 ||
            buf_puts(b, "\r\n\r\n", e) < 0)
            return -1;
    }
    return 0;
}

int
queue_dsn_build(const struct queue_file *qf, const char *qid,
                const char *hostname, const char *action,
                const struct queue_dsn_rcpt *list, size_t n, long long now_us,
                long long retry_until_us, struct buf *out, struct err *e)
{
    char date[64], boundary[160], status[16], orcpt[1024];
    size_t len, i, hend;
    const char *v, *subject;
    int full, eight = 0;

    if (strcmp(action, "failed") == 0)
        subject = "Undelivered Mail Returned to Sender";
    else if (strcmp(action, "delayed") == 0)
        subject = "Delayed Mail (still being retried)";
    else
        subject = "Successful Mail Delivery Report";
    v = esmtp_param(qf->sender_params, "RET", &len);
    full = v != NULL && len == 4 && strncasecmp(v, "FULL", 4) == 0 &&
           qf->len <= QUEUE_DSN_FULL_MAX && strcmp(action, "failed") == 0;
    hend = queue_dsn_headers_end(qf->data, qf->len, QUEUE_DSN_FULL_MAX);
    for (i = 0; i < (full ? qf->len : hend) && !eight; i++)
        eight = (unsigned char)qf->data[i] >= 0x80;
    snprintf(boundary, sizeof(boundary), "%s.%lld/%s", qid, now_us, hostname);
    queue_dsn_date(now_us, date, sizeof(date));
    if (buf_printf(out, e,
                   "From: Mail Delivery System <MAILER-DAEMON@%s>"
                   "\r\n",
                   hostname) < 0 ||
        buf_puts(out, "To: <", e) < 0 ||
        queue_dsn_text(out, qf->sender, strlen(qf->sender), e) < 0 ||
        buf_printf(out, e,
                   ">\r\nSubject: %s\r\nDate: %s\r\n"
                   "Message-ID: <%s.%lld@%s>\r\n"
                   "Auto-Submitted: auto-replied\r\n"
                   "MIME-Version: 1.0\r\n"
                   "Content-Type: multipart/report; "
                   "report-type=delivery-status;\r\n"
                   "\tboundary=\"%s\"\r\n"
                   "Content-Transfer-Encoding: %s\r\n\r\n"
                   "This is a MIME-encapsulated message.\r\n\r\n"
                   "--%s\r\n"
                   "Content-Description: Notification\r\n"
                   "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
                   subject, date, qid, now_us, hostname, boundary,
                   eight ? "8bit" : "7bit", boundary) < 0 ||
        queue_dsn_human(out, qf, hostname, action, list, n, now_us,
                        retry_until_us, e) < 0)
        return -1;
    queue_dsn_date(qf->arrival_us, date, sizeof(date));
    if (buf_printf(out, e,
                   "--%s\r\n"
                   "Content-Description: Delivery report\r\n"
                   "Content-Type: message/delivery-status\r\n\r\n"
                   "Reporting-MTA: dns; %s\r\n"
                   "X-Relaychain-Queue-ID: %s\r\n",
                   boundary, hostname, qid) < 0 ||
        buf_puts(out, "X-Relaychain-Sender: rfc822; ", e) < 0 ||
        queue_dsn_text(out, qf->sender, strlen(qf->sender), e) < 0 ||
        buf_puts(out, "\r\n", e) < 0)
        return -1;
    if ((v = esmtp_param(qf->sender_params, "ENVID", &len)) != NULL &&
        esmtp_xtext_decode(v, len, orcpt, sizeof(orcpt)) == 0 &&
        queue_dsn_field(out, "Original-Envelope-Id", orcpt, e) < 0)
        return -1;
    if (buf_printf(out, e, "Arrival-Date: %s\r\n", date) < 0)
        return -1;
    queue_dsn_date(now_us, date, sizeof(date));
    for (i = 0; i < n; i++) {
        const struct queue_file_rcpt *r = &qf->rcpts[list[i].idx];

        if (buf_puts(out, "\r\nFinal-Recipient: rfc822; ", e) < 0 ||
            queue_dsn_text(out, r->addr, strlen(r->addr), e) < 0 ||
            buf_puts(out, "\r\n", e) < 0)
            return -1;
        /* ORCPT=addr-type;xtext: the type as it is, the address decoded */
        if ((v = esmtp_param(r->params, "ORCPT", &len)) != NULL) {
            size_t tl;

            if (esmtp_orcpt_split(v, len, &tl, orcpt, sizeof(orcpt)) == 0 &&
                (buf_puts(out, "Original-Recipient: ", e) < 0 ||
                 queue_dsn_text(out, v, tl, e) < 0 ||
                 buf_puts(out, "; ", e) < 0 ||
                 queue_dsn_text(out, orcpt, strlen(orcpt), e) < 0 ||
                 buf_puts(out, "\r\n", e) < 0))
                return -1;
        }
        queue_dsn_status(list[i].reply, status, sizeof(status));
        if (buf_printf(out, e, "Action: %s\r\nStatus: %s\r\n", action,
                       status) < 0)
            return -1;
        if (list[i].remote != NULL && strcmp(list[i].remote, "none") != 0) {
            size_t hl = strcspn(list[i].remote, "[");

            if (buf_puts(out, "Remote-MTA: dns; ", e) < 0 ||
                queue_dsn_text(out, list[i].remote, hl, e) < 0 ||
                buf_puts(out, "\r\n", e) < 0)
                return -1;
        }
        if (buf_puts(out, "Diagnostic-Code: smtp; ", e) < 0 ||
            queue_dsn_text(out, list[i].reply, strlen(list[i].reply), e) < 0 ||
            buf_printf(out, e, "\r\nLast-Attempt-Date: %s\r\n", date) < 0)
            return -1;
        if (strcmp(action, "delayed") == 0) {
            char until[64];

            queue_dsn_date(retry_until_us, until, sizeof(until));
            if (buf_printf(out, e, "Will-Retry-Until: %s\r\n", until) < 0)
                return -1;
        }
    }
    if (buf_printf(out, e,
                   "\r\n--%s\r\n"
                   "Content-Description: %s\r\n"
                   "Content-Type: %s\r\n\r\n",
                   boundary,
                   full ? "Undelivered Message"
                        : "Undelivered Message Headers",
                   full ? "message/rfc822" : "text/rfc822-headers") < 0 ||
        queue_dsn_lines(out, qf->data, full ? qf->len : hend, e) < 0 ||
        buf_printf(out, e, "\r\n--%s--\r\n", boundary) < 0)
        return -1;
    return 0;
}
