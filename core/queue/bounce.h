/*
 * bounce - what a message that came back says: bounce, complaint,
 * auto-reply, or none of these
 *
 * bounce_parse() reads one message (attacker-controlled: anyone may
 * send to the VERP domain) and fills a struct bounce_report:
 *
 * - an RFC 3464 report (multipart/report; report-type=delivery-status,
 *   or any message/delivery-status part): one entry per recipient group
 *   with Final-Recipient (else Original-Recipient), Action, Status and
 *   Diagnostic-Code;
 * - an RFC 5965 ARF report (message/feedback-report): Feedback-Type and
 *   Original-Rcpt-To;
 * - an auto-reply (RFC 3834 Auto-Submitted other than "no" without a
 *   report, X-Autoreply, X-Autorespond, Precedence: auto_reply, a
 *   vacation subject): no recipients, it is not a bounce;
 * - else, when the message looks like a bounce (from MAILER-DAEMON or
 *   postmaster, a null Return-Path, a non-delivery subject), the common
 *   text formats (qmail, Exim, old Sendmail and Postfix, the large
 *   providers' own): the addresses of the report's text before the
 *   returned message starts, with the status, code and reason found
 *   next to them.
 *
 * From the returned message (message/rfc822, text/rfc822-headers, or
 * the text after the report) it takes the Message-ID, the value of the
 * header named match_header and the first VERP address at verp_domain.
 *
 * Bounded: the message is parsed once by GMime under the limits given
 * (depth, parts; at most 16 levels and 200 parts are walked), at most
 * BOUNCE_TEXT_MAX octets of text are scanned,
 * lines are cut at BOUNCE_LINE_MAX, at most BOUNCE_RCPT_MAX recipients
 * are kept. The report is the caller's (no allocation survives the
 * call); nothing is logged.
 */
#ifndef RC_BOUNCE_H
#define RC_BOUNCE_H

#include <stddef.h>

#include "util/err.h"
#include "msg/msg.h"

#define BOUNCE_RCPT_MAX 64
#define BOUNCE_TEXT_MAX (256 * 1024)
#define BOUNCE_LINE_MAX 1000
#define BOUNCE_ADDR_MAX 256

enum bounce_kind {
    BOUNCE_NONE,      /* neither bounce, complaint nor auto-reply */
    BOUNCE_DSN,       /* an RFC 3464 delivery-status report */
    BOUNCE_TEXT,      /* a bounce in one of the text formats */
    BOUNCE_ARF,       /* an RFC 5965 complaint */
    BOUNCE_AUTOREPLY, /* vacation and other auto-replies */
};

struct bounce_rcpt {
    char addr[BOUNCE_ADDR_MAX];
    int failed;      /* 1: failed; 0: delayed (a warning, not a bounce) */
    char status[16]; /* "5.1.1", "" when none */
    int code;        /* 550, 0 when none */
    char diag[400];
};

struct bounce_report {
    enum bounce_kind kind;
    size_t n;
    struct bounce_rcpt r[BOUNCE_RCPT_MAX];
    /* the returned (or reported) message */
    char msgid[256];
    char match[256];
    char token[40]; /* the VERP token found, "" when none */
    /* ARF */
    char feedback_type[64];
    char arf_rcpt[BOUNCE_ADDR_MAX];
};

/* bounce_parse - read data (len octets) into rep. verp_domain and
 * match_header may be NULL. 0, or -1 with e when GMime cannot parse it
 * at all (rep->kind BOUNCE_NONE). */
int bounce_parse(const char *data, size_t len, const struct msg_limits *lim,
                 const char *verp_domain, const char *match_header,
                 struct bounce_report *rep, struct err *e);

/* bounce_kind_name - "dsn", "text", "arf", "autoreply", "none" */
const char *bounce_kind_name(enum bounce_kind k);

#endif
