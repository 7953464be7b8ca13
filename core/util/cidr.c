/*
 * cidr - lists of IPv4 and IPv6 networks, as in Postfix mynetworks
 *
 * Each item is parsed with inet_pton() into a family, 16 address octets
 * and a prefix length; an item without "/len" is a single host. As in
 * Postfix, an IPv6 item may be written in brackets ("[2001:db8::]/32") and
 * an address with host bits set under its prefix ("192.0.2.1/24") is
 * taken as its network (192.0.2.0/24). An IPv4-mapped IPv6 item
 * (::ffff:192.0.2.0/120) is stored as the IPv4 network it names, and an
 * IPv4-mapped client address is looked up as IPv4, so both spellings meet;
 * a wider IPv6 network such as ::/0 still holds the mapped address.
 *
 * The list owns one array; it is read-only after cidr_list_new() and may
 * be shared by threads. A bad item fails the whole list with ERR_CONFIG and
 * "'item': reason" in e; the caller adds the file and line.
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/cidr.h"

#define CIDR_TEXT_MAX 64 /* longer than any address with brackets and /len */

struct cidr_net {
    int family; /* AF_INET or AF_INET6 */
    unsigned char addr[16];
    unsigned prefix;
};

struct cidr_list {
    struct cidr_net *nets;
    size_t n;
};

static const unsigned char cidr_mapped_prefix[12] = {0, 0, 0, 0, 0,    0,
                                                     0, 0, 0, 0, 0xff, 0xff};

/* cidr_unmap - turn ::ffff:a.b.c.d (with prefix >= 96) into IPv4. */
static void
cidr_unmap(struct cidr_net *net)
{
    if (net->family != AF_INET6 || net->prefix < 96 ||
        memcmp(net->addr, cidr_mapped_prefix, sizeof(cidr_mapped_prefix)) != 0)
        return;
    memmove(net->addr, net->addr + 12, 4);
    memset(net->addr + 4, 0, 12);
    net->family = AF_INET;
    net->prefix -= 96;
}

static void
cidr_mask(struct cidr_net *net)
{
    unsigned octets = net->family == AF_INET ? 4 : 16, i;

    for (i = 0; i < octets; i++) {
        unsigned lo = i * 8;

        if (net->prefix <= lo)
            net->addr[i] = 0;
        else if (net->prefix < lo + 8)
            net->addr[i] &= (unsigned char)(0xff << (8 - (net->prefix - lo)));
    }
}

/* cidr_parse_addr - an address, bracketed or not, into net (full prefix).
 * Returns 0, or -1 with a reason in why. */
static int
cidr_parse_addr(const char *s, size_t len, struct cidr_net *net,
                const char **why)
{
    char text[CIDR_TEXT_MAX];
    int bracketed = 0;

    if (len > 0 && s[0] == '[') {
        if (len < 2 || s[len - 1] != ']') {
            *why = "unbalanced '['";
            return -1;
        }
        bracketed = 1;
        s++;
        len -= 2;
    }
    if (len == 0 || len >= sizeof(text)) {
        *why = "not an IPv4 or IPv6 address";
        return -1;
    }
    memcpy(text, s, len);
    text[len] = '\0';
    memset(net->addr, 0, sizeof(net->addr));
    if (!bracketed && inet_pton(AF_INET, text, net->addr) == 1) {
        net->family = AF_INET;
        net->prefix = 32;
        return 0;
    }
    if (inet_pton(AF_INET6, text, net->addr) == 1) {
        net->family = AF_INET6;
        net->prefix = 128;
        return 0;
    }
    *why = bracketed ? "not an IPv6 address" : "not an IPv4 or IPv6 address";
    return -1;
}

static int
cidr_parse_item(const char *item, struct cidr_net *net, const char **why)
{
    const char *slash = strchr(item, '/');
    size_t alen = slash ? (size_t)(slash - item) : strlen(item);
    unsigned max, prefix = 0;
    const char *p;

    if (cidr_parse_addr(item, alen, net, why) < 0)
        return -1;
    if (slash == NULL)
        return 0;
    max = net->prefix;
    p = slash + 1;
    if (*p == '\0') {
        *why = "missing prefix length after '/'";
        return -1;
    }
    for (; *p != '\0'; p++) {
        if (*p < '0' || *p > '9' || prefix > 128) {
            *why = "prefix length is not a number from 0 to 32 (IPv4) or "
                   "128 (IPv6)";
            return -1;
        }
        prefix = prefix * 10 + (unsigned)(*p - '0');
    }
    if (prefix > max) {
        *why = max == 32 ? "prefix length is larger than 32"
                         : "prefix length is larger than 128";
        return -1;
    }
    net->prefix = prefix;
    return 0;
}

struct cidr_list *
cidr_list_new(const char *const *items, size_t n, struct err *e)
{
    struct cidr_list *l;
    const char *why;
    size_t i;

    if ((l = calloc(1, sizeof(*l))) == NULL ||
        (n > 0 && (l->nets = calloc(n, sizeof(*l->nets))) == NULL)) {
        free(l);
        err_nomem(e);
        return NULL;
    }
    for (i = 0; i < n; i++) {
        struct cidr_net *net = &l->nets[i];

        if (cidr_parse_item(items[i], net, &why) < 0) {
            err_set(e, ERR_CONFIG, "'%.*s': %s", CIDR_TEXT_MAX, items[i], why);
            cidr_list_free(l);
            return NULL;
        }
        cidr_unmap(net);
        cidr_mask(net);
    }
    l->n = n;
    return l;
}

void
cidr_list_free(struct cidr_list *l)
{
    if (l == NULL)
        return;
    free(l->nets);
    free(l);
}

static int
cidr_net_contains(const struct cidr_net *net, const struct cidr_net *a)
{
    unsigned whole = net->prefix / 8, rest = net->prefix % 8;

    if (net->family != a->family)
        return 0;
    if (memcmp(net->addr, a->addr, whole) != 0)
        return 0;
    if (rest == 0)
        return 1;
    return ((net->addr[whole] ^ a->addr[whole]) &
            (unsigned char)(0xff << (8 - rest))) == 0;
}

int
cidr_list_contains(const struct cidr_list *l, const char *addr)
{
    struct cidr_net a, v6;
    const char *why;
    size_t i;

    if (l == NULL || addr == NULL)
        return 0;
    /* Sendmail's {client_addr} spells IPv6 clients "IPv6:2001:db8::1". */
    if (strncasecmp(addr, "IPv6:", 5) == 0)
        addr += 5;
    if (cidr_parse_addr(addr, strlen(addr), &a, &why) < 0)
        return 0;
    /* A mapped client is looked up as IPv4 and, for IPv6 networks wider
     * than ::ffff:0:0/96 (such as ::/0), as the IPv6 address it is. */
    v6 = a;
    cidr_unmap(&a);
    for (i = 0; i < l->n; i++)
        if (cidr_net_contains(&l->nets[i], &a) ||
            (a.family == AF_INET && cidr_net_contains(&l->nets[i], &v6)))
            return 1;
    return 0;
}
