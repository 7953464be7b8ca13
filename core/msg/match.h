/*
 * match - the condition under which a stage applies to a message
 *
 * Every chain.d file may set (all optional; all given must hold):
 *   match_sender     = patterns for the envelope sender
 *   match_recipient  = patterns; holds when any recipient matches
 *   match_client     = CIDR networks of the client address
 *   match_auth       = any | yes | no   (authenticated client or not)
 * A pattern is user@domain (exact), domain or @domain (that domain),
 * .domain (its subdomains), or <> (the null sender). Addresses compare
 * without regard to case.
 */
#ifndef RC_MATCH_H
#define RC_MATCH_H

#include <stddef.h>

#include "util/cfg.h"
#include "util/err.h"
#include "msg/msg.h"

extern const struct cfg_option match_options[];

struct match;

/* match_new - build from a validated cfg holding match_options. */
struct match *match_new(const struct cfg *c, struct err *e);
void match_free(struct match *mt);

/* match_test - 1 when m matches, 0 when not; why (size n) says which key
 * decided it. */
int match_test(const struct match *mt, const struct msg *m, char *why,
               size_t n);

/* match_describe - "sender in (...), auth=yes" or "all mail". */
const char *match_describe(const struct match *mt, char *out, size_t n);

#endif
