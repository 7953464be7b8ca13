/*
 * addr - RFC 5321 mailboxes and paths, checked and never routed
 *
 * addr_is_valid() checks a mailbox against RFC 5321 section 4.1.2 as
 * extended by RFC 6531 (SMTPUTF8): the local part is a dot-atom or a
 * quoted string, the domain is LDH labels (each octet of a well-formed
 * UTF-8 sequence counts as a letter) or an address literal, [192.0.2.1]
 * or [IPv6:2001:db8::1], checked with inet_pton(). Control characters,
 * CR, LF and malformed UTF-8 are never valid, quoted or not. '%', '!'
 * and ':' are ordinary local-part characters here: nothing in this file
 * reads them as routing, so "user%host@relay" is a mailbox at relay.
 *
 * addr_parse_path() reads the bracketed path of MAIL FROM and RCPT TO,
 * drops a source route ("@a,@b:") as RFC 5321 appendix C allows, and
 * bounds the whole path at 256 octets (RFC 5321 section 4.5.3.1.3).
 *
 * Nothing here allocates except through the caller's struct buf, and no
 * state is kept, so every function is safe in any thread.
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "util/addr.h"

#define ADDR_PATH_MAX 256 /* "<", route, mailbox, ">" */
#define ADDR_LABEL_MAX 63

static int
addr_why(char *why, size_t n, const char *text)
{
    if (why != NULL && n > 0)
        snprintf(why, n, "%s", text);
    return 0;
}

static int
addr_is_alpha(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int
addr_is_digit(int c)
{
    return c >= '0' && c <= '9';
}

/* addr_is_atext - RFC 5322 atext, ASCII part. */
static int
addr_is_atext(int c)
{
    return addr_is_alpha(c) || addr_is_digit(c) ||
           (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/*
 * addr_utf8 - the length (2 to 4) of the well-formed UTF-8 sequence that
 * starts at s (at most n octets available), or 0 when it is malformed:
 * overlong forms, surrogates and code points above U+10FFFF included.
 */
static size_t
addr_utf8(const unsigned char *s, size_t n)
{
    size_t len, i;
    unsigned char lo = 0x80, hi = 0xbf;

    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        len = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        len = 3;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        len = 4;
    else
        return 0;
    if (n < len)
        return 0;
    if (s[0] == 0xe0)
        lo = 0xa0;
    else if (s[0] == 0xed)
        hi = 0x9f;
    else if (s[0] == 0xf0)
        lo = 0x90;
    else if (s[0] == 0xf4)
        hi = 0x8f;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

/*
 * addr_local - check the local part at s (up to n octets); returns its
 * length, or 0 with why set. A dot-atom ends at the first '@', a quoted
 * string at its closing quote; the caller checks what follows.
 */
static size_t
addr_local(const char *s, size_t n, char *why, size_t wn)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, k;
    int dot_ok = 0;

    if (n == 0 || u[0] == '@')
        return addr_why(why, wn, "empty local part");
    if (u[0] == '"') {
        for (i = 1; i < n && u[i] != '"'; i++) {
            if (u[i] == '\\') {
                if (i + 1 >= n || u[i + 1] < 0x20 || u[i + 1] > 0x7e)
                    return addr_why(why, wn, "bad quoted pair in local part");
                i++;
            } else if (u[i] >= 0x80) {
                if ((k = addr_utf8(u + i, n - i)) == 0)
                    return addr_why(why, wn, "malformed UTF-8 in local part");
                i += k - 1;
            } else if (u[i] < 0x20 || u[i] == 0x7f) {
                return addr_why(why, wn, "control character in local part");
            }
        }
        if (i >= n)
            return addr_why(why, wn, "unterminated quoted local part");
        return i + 1;
    }
    for (i = 0; i < n && u[i] != '@'; i++) {
        if (u[i] == '.') {
            if (!dot_ok)
                return addr_why(why, wn, "misplaced dot in local part");
            dot_ok = 0;
        } else if (u[i] >= 0x80) {
            if ((k = addr_utf8(u + i, n - i)) == 0)
                return addr_why(why, wn, "malformed UTF-8 in local part");
            i += k - 1;
            dot_ok = 1;
        } else if (addr_is_atext(u[i])) {
            dot_ok = 1;
        } else if (u[i] < 0x20 || u[i] == 0x7f) {
            return addr_why(why, wn, "control character in local part");
        } else {
            return addr_why(why, wn, "bad character in local part (quote it)");
        }
    }
    if (!dot_ok)
        return addr_why(why, wn, "misplaced dot in local part");
    return i;
}

/* addr_prefix_ci - s starts with lower-case word, ASCII case ignored. */
static int
addr_prefix_ci(const char *s, const char *word)
{
    for (; *word != '\0'; s++, word++) {
        int c = (unsigned char)*s;

        if (c >= 'A' && c <= 'Z')
            c += 'a' - 'A';
        if (c != *word)
            return 0;
    }
    return 1;
}

/* addr_literal - check "[...]" (n octets, brackets included). */
static int
addr_literal(const char *s, size_t n, char *why, size_t wn)
{
    char text[INET6_ADDRSTRLEN + 8];
    unsigned char bin[16];
    const char *p = s + 1;
    size_t len;
    int af = AF_INET;

    if (n < 3 || s[n - 1] != ']')
        return addr_why(why, wn, "unterminated address literal");
    len = n - 2;
    if (len > 5 && addr_prefix_ci(p, "ipv6:")) {
        af = AF_INET6;
        p += 5;
        len -= 5;
    } else if (memchr(p, ':', len) != NULL) {
        return addr_why(why, wn, "unsupported address literal tag");
    }
    if (len >= sizeof(text))
        return addr_why(why, wn, "bad address literal");
    memcpy(text, p, len);
    text[len] = '\0';
    if (inet_pton(af, text, bin) != 1)
        return addr_why(why, wn,
                        af == AF_INET6 ? "bad IPv6 address literal"
                                       : "bad IPv4 address literal");
    return 1;
}

/* addr_host - check a domain name or literal of n octets. */
static int
addr_host(const char *s, size_t n, char *why, size_t wn)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i, k, label = 0;

    if (n == 0)
        return addr_why(why, wn, "empty domain");
    if (n > ADDR_DOMAIN_MAX)
        return addr_why(why, wn, "domain longer than 255 octets");
    if (u[0] == '[')
        return addr_literal(s, n, why, wn);
    for (i = 0; i < n; i++) {
        if (u[i] == '.') {
            if (label == 0)
                return addr_why(why, wn, "empty label in domain");
            if (u[i - 1] == '-')
                return addr_why(why, wn, "domain label ends with '-'");
            label = 0;
            continue;
        }
        if (u[i] >= 0x80) {
            if ((k = addr_utf8(u + i, n - i)) == 0)
                return addr_why(why, wn, "malformed UTF-8 in domain");
            i += k - 1;
            label += k;
        } else if (addr_is_alpha(u[i]) || addr_is_digit(u[i])) {
            label++;
        } else if (u[i] == '-') {
            if (label == 0)
                return addr_why(why, wn, "domain label starts with '-'");
            label++;
        } else if (u[i] < 0x20 || u[i] == 0x7f) {
            return addr_why(why, wn, "control character in domain");
        } else {
            return addr_why(why, wn, "bad character in domain");
        }
        if (label > ADDR_LABEL_MAX)
            return addr_why(why, wn, "domain label longer than 63 octets");
    }
    if (label == 0)
        return addr_why(why, wn, "empty label in domain");
    if (u[n - 1] == '-')
        return addr_why(why, wn, "domain label ends with '-'");
    return 1;
}

int
addr_is_valid(const char *s, int allow_null, char *why, size_t n)
{
    size_t len, local;

    if (why != NULL && n > 0)
        why[0] = '\0';
    if (s == NULL || *s == '\0') {
        if (s != NULL && allow_null)
            return 1;
        return addr_why(why, n, "empty address");
    }
    len = strlen(s);
    if (len > ADDR_MAX)
        return addr_why(why, n, "address longer than 254 octets");
    if ((local = addr_local(s, len, why, n)) == 0)
        return 0;
    if (local > ADDR_LOCAL_MAX)
        return addr_why(why, n, "local part longer than 64 octets");
    if (local == len || s[local] != '@')
        return addr_why(why, n,
                        local == len ? "missing @domain"
                                     : "text after quoted local part");
    return addr_host(s + local + 1, len - local - 1, why, n);
}

const char *
addr_domain(const char *s)
{
    size_t local;

    if (!addr_is_valid(s, 0, NULL, 0))
        return NULL;
    local = addr_local(s, strlen(s), NULL, 0);
    return s + local + 1;
}

int
addr_domain_equal(const char *a, const char *b)
{
    unsigned char x, y;

    if (a == NULL || b == NULL)
        return 0;
    /* ASCII only: strcasecmp() would follow the locale. */
    for (;; a++, b++) {
        x = (unsigned char)*a;
        y = (unsigned char)*b;
        if (x >= 'A' && x <= 'Z')
            x += 'a' - 'A';
        if (y >= 'A' && y <= 'Z')
            y += 'a' - 'A';
        if (x != y)
            return 0;
        if (x == '\0')
            return 1;
    }
}

/* addr_route - skip "@dom,@dom:" at s[i] within len; returns the index
 * after the ':' or 0 with e set. */
static size_t
addr_route(const char *s, size_t len, size_t i, struct err *e)
{
    char why[80];
    size_t start;

    for (;;) {
        if (i >= len || s[i] != '@') {
            err_set(e, ERR_INPUT, "bad source route in path");
            return 0;
        }
        start = ++i;
        while (i < len && s[i] != ',' && s[i] != ':' && s[i] != '>')
            i++;
        if (!addr_host(s + start, i - start, why, sizeof(why))) {
            err_set(e, ERR_INPUT, "bad source route in path: %s", why);
            return 0;
        }
        if (i < len && s[i] == ':')
            return i + 1;
        if (i >= len || s[i] != ',') {
            err_set(e, ERR_INPUT, "bad source route in path");
            return 0;
        }
        i++;
    }
}

int
addr_parse_path(const char *s, size_t len, struct buf *out, size_t *consumed,
                struct err *e)
{
    char box[ADDR_MAX + 1], why[80];
    size_t i = 1, start, max;
    int quoted = 0, route = 0;

    if (len == 0 || s[0] != '<')
        return err_set(e, ERR_INPUT, "path must be enclosed in <>");
    max = len < ADDR_PATH_MAX ? len : ADDR_PATH_MAX;
    if (i < max && s[i] == '@') {
        if ((i = addr_route(s, max, i, e)) == 0)
            return -1;
        route = 1;
    }
    start = i;
    for (; i < max; i++) {
        unsigned char c = (unsigned char)s[i];

        if (c == '\0' || c == '\r' || c == '\n')
            return err_set(e, ERR_INPUT, "control character in path");
        if (quoted && c == '\\' && i + 1 < max) {
            i++;
            continue;
        }
        if (c == '"' && (quoted || i == start))
            quoted = !quoted;
        else if (c == '>' && !quoted)
            break;
    }
    if (i >= max)
        return err_set(e, ERR_INPUT,
                       len > ADDR_PATH_MAX ? "path longer than 256 octets"
                                           : "missing > at end of path");
    if (i == start) {
        if (route)
            return err_set(e, ERR_INPUT, "source route without mailbox");
        *consumed = i + 1;
        return 0;
    }
    if (i - start > ADDR_MAX)
        return err_set(e, ERR_INPUT, "address longer than 254 octets");
    memcpy(box, s + start, i - start);
    box[i - start] = '\0';
    if (!addr_is_valid(box, 0, why, sizeof(why)))
        return err_set(e, ERR_INPUT, "bad address syntax: %s", why);
    if (buf_append(out, box, i - start, e) < 0)
        return -1;
    *consumed = i + 1;
    return 0;
}
