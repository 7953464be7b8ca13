/*
 * cidr - lists of IPv4 and IPv6 networks, as in Postfix mynetworks
 *
 * Items are "192.0.2.0/24", "2001:db8::/32", "[2001:db8::]/32", or a
 * single address. An IPv4-mapped IPv6 client (::ffff:192.0.2.1) is
 * matched as IPv4.
 */
#ifndef RC_CIDR_H
#define RC_CIDR_H

#include <stddef.h>

#include "util/err.h"

struct cidr_list;

/* cidr_list_new - parse n items; on error e says which item and why. */
struct cidr_list *cidr_list_new(const char *const *items, size_t n,
                                struct err *e);
void cidr_list_free(struct cidr_list *l);

/* cidr_list_contains - 1 when addr (text form) is in the list, else 0. */
int cidr_list_contains(const struct cidr_list *l, const char *addr);

#endif
