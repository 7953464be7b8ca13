/*
 * addr - RFC 5321 mailboxes and paths, checked and never routed
 *
 * A mailbox is Local-part "@" Domain: the local part a dot-atom or a
 * quoted string, the domain a host name or an address literal, UTF-8
 * allowed (SMTPUTF8), at most 64 octets of local part, 255 of domain and
 * 254 in all. Nothing here interprets percent hacks, bang paths or
 * source routes: a path's source route is removed, as RFC 5321 appendix C
 * allows, and the rest is just an address.
 */
#ifndef RC_ADDR_H
#define RC_ADDR_H

#include <stddef.h>

#include "util/buf.h"
#include "util/err.h"

#define ADDR_MAX 254
#define ADDR_LOCAL_MAX 64
#define ADDR_DOMAIN_MAX 255

/* addr_is_valid - 1 when s is a mailbox as above (or "" when allow_null),
 * else 0 with the reason in why (size n). */
int addr_is_valid(const char *s, int allow_null, char *why, size_t n);

/* addr_parse_path - parse "<...>" as in MAIL FROM:/RCPT TO: (brackets
 * required, "<>" is the null path), drop any source route, and append the
 * mailbox to out. *consumed gets the octets used, so the caller can go on
 * with the ESMTP parameters. Returns 0 or -1 with a reason fit for a 501. */
int addr_parse_path(const char *s, size_t len, struct buf *out,
                    size_t *consumed, struct err *e);

/* addr_domain - the domain part of a valid mailbox (after the '@' that is
 * not inside a quoted local part), or NULL. Borrowed from s. */
const char *addr_domain(const char *s);

/* addr_domain_equal - 1 when two domains are equal without regard to
 * ASCII case, else 0. */
int addr_domain_equal(const char *a, const char *b);

#endif
