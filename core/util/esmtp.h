/*
 * esmtp - ESMTP parameters of MAIL and RCPT, and RFC 3461 xtext
 *
 * Parameters are kept as the client sent them: one string of
 * "KEYWORD[=VALUE]" words separated by spaces ("SIZE=1200 BODY=8BITMIME
 * RET=HDRS"). The SMTP server checks them, the queue stores them with
 * each message and reads back the DSN requests (NOTIFY, ORCPT, ENVID,
 * RET), the DSN builder decodes ORCPT and ENVID, and the SMTP client
 * passes them on and xtext-encodes XFORWARD values: one reading of the
 * syntax for all of them.
 *
 * Keywords compare without regard to case, values as they are. Nothing
 * here allocates except esmtp_params_without(), keeps state or logs;
 * results point into the caller's strings or go into the caller's
 * buffers, and a value that does not fit is refused, never cut.
 */
#ifndef RC_ESMTP_H
#define RC_ESMTP_H

#include <stddef.h>

#include "util/buf.h"
#include "util/err.h"

/* esmtp_param - the value of parameter key ("NOTIFY") in params (may be
 * NULL): its start, with *len set; "" (len 0) for a bare keyword
 * ("SMTPUTF8"); NULL when absent. Borrowed from params. */
const char *esmtp_param(const char *params, const char *key, size_t *len);

/* esmtp_xtext_decode - RFC 3461 xtext in[0..len) into out (size n),
 * NUL-terminated: "+XX" with upper-case hex digits, other octets
 * printable US-ASCII but '='. Returns 0, or -1 on bad syntax, a decoded
 * control character (NUL, CR, LF... and DEL) or no room. */
int esmtp_xtext_decode(const char *in, size_t len, char *out, size_t n);

/* esmtp_xtext_encode - value as xtext, appended to out: octets outside
 * '!'..'~', and '+' and '=', as "+XX". -1 with e (ERR_LIMIT at out's
 * limit, ERR_NOMEM). esmtp_xtext_decode() gives value back when it has
 * no control characters. */
int esmtp_xtext_encode(struct buf *out, const char *value, struct err *e);

/* esmtp_xforward_decode - an XFORWARD value (xtext as Postfix writes it,
 * read as Postfix's smtpd reads it) into out (size n, at least 1): "+XX"
 * with hex digits of either case, a '+' without two octets after it as
 * itself, other octets as they are. Refuses (-1) control characters and
 * DEL, decoded or not, and a space unless space is set (Postfix sends a
 * HELO argument with spaces as "+20"), or no room. */
int esmtp_xforward_decode(const char *in, size_t len, char *out, size_t n,
                          int space);

/* esmtp_notify_check - 0 when the NOTIFY value v[0..len) is what RFC 3461
 * allows: NEVER alone, or a comma-separated list of SUCCESS, FAILURE and
 * DELAY; -1 otherwise (empty, unknown word, NEVER with others). */
int esmtp_notify_check(const char *v, size_t len);

/* esmtp_notify_wants - 1 when a recipient with parameters params asked
 * for a notice of kind ("SUCCESS", "FAILURE", "DELAY"), else 0. Without
 * NOTIFY: failures and delays, as Postfix. */
int esmtp_notify_wants(const char *params, const char *kind);

/* esmtp_orcpt_split - an ORCPT value v[0..len), "addr-type;xtext": 0 with
 * *type_len the length of the type (at v, not decoded) and the address
 * decoded into out (size n); -1 when there is no ';', the type is empty
 * or the xtext is refused by esmtp_xtext_decode(). */
int esmtp_orcpt_split(const char *v, size_t len, size_t *type_len, char *out,
                      size_t n);

/* esmtp_params_pick - the parameters of params named in keys (a
 * NULL-terminated list, in that order), as "KEY=VALUE" or "KEY" words
 * separated by spaces, the keyword as keys spells it, into out (size n,
 * at least 1). A word that does not fit is left out with all after it. */
void esmtp_params_pick(const char *params, const char *const *keys, char *out,
                       size_t n);

/* esmtp_params_without - a copy of params without the words whose
 * keyword is in keys (NULL-terminated), single spaces between the rest;
 * *dropped says whether one was. The caller frees; NULL when out of
 * memory. */
char *esmtp_params_without(const char *params, const char *const *keys,
                           int *dropped);

#endif
