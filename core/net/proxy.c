/*
 * proxy - the PROXY protocol header a load balancer sends first (HAProxy)
 *
 * The parser follows HAProxy's proxy-protocol.txt strictly: a v1 line
 * has single spaces, addresses of the family it names and decimal ports
 * without leading zeros; a v2 header has version 2, command LOCAL or
 * PROXY, and for PROXY a TCP family with room for its addresses (TLVs
 * after them are skipped). An UNKNOWN (v1) or UNSPEC/LOCAL (v2) header
 * says the connection is the balancer's own: the socket's peer stands.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "net/netio.h"
#include "net/proxy.h"

static const unsigned char proxy_v2_sig[12] = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* proxy_port - a decimal port, "0" or no leading zero; 0 or -1. */
static int
proxy_port(const char *s, size_t n, unsigned *out)
{
    unsigned v = 0;
    size_t i;

    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return -1;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return -1;
    *out = v;
    return 0;
}

/* proxy_addr - an address of family af from s[0..n) into out. */
static int
proxy_addr(int af, const char *s, size_t n, char *out, size_t outlen)
{
    unsigned char bin[sizeof(struct in6_addr)];
    char tmp[INET6_ADDRSTRLEN];

    if (n == 0 || n >= sizeof(tmp))
        return -1;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    if (inet_pton(af, tmp, bin) != 1 ||
        inet_ntop(af, bin, out, (socklen_t)outlen) == NULL)
        return -1;
    return 0;
}

static int
proxy_parse_v1(const unsigned char *p, size_t len, struct proxy_hdr *h,
               char *why, size_t whylen)
{
    const char *line = (const char *)p, *f[6];
    size_t fl[6], i, end, nf = 0, start;

    for (end = 0; end + 1 < len && end + 2 <= PROXY_V1_MAX; end++) {
        if (p[end] == '\r' && p[end + 1] == '\n')
            break;
        if (p[end] < 0x20 || p[end] > 0x7e) {
            snprintf(why, whylen, "v1: control or non-ASCII octet");
            return PROXY_BAD;
        }
    }
    if (end + 1 >= len || p[end] != '\r' || p[end + 1] != '\n') {
        if (end + 2 > PROXY_V1_MAX || (end + 1 < len && p[end] == '\r')) {
            snprintf(why, whylen, "v1: no CRLF within %d octets",
                     PROXY_V1_MAX);
            return PROXY_BAD;
        }
        if (end < len && p[end] < 0x20 && p[end] != '\r') {
            snprintf(why, whylen, "v1: control octet");
            return PROXY_BAD;
        }
        return PROXY_MORE;
    }
    /* fields after "PROXY ", split on single spaces */
    start = 6;
    for (i = 6; i <= end; i++) {
        if (i == end || line[i] == ' ') {
            if (nf == 6) {
                snprintf(why, whylen, "v1: too many fields");
                return PROXY_BAD;
            }
            f[nf] = line + start;
            fl[nf++] = i - start;
            start = i + 1;
        }
    }
    memset(h, 0, sizeof(*h));
    h->version = 1;
    if (nf >= 1 && fl[0] == 7 && memcmp(f[0], "UNKNOWN", 7) == 0) {
        h->local = 1; /* the rest of the line is to be ignored */
        return (int)(end + 2);
    }
    if (nf < 1 || fl[0] != 4 ||
        (memcmp(f[0], "TCP4", 4) != 0 && memcmp(f[0], "TCP6", 4) != 0)) {
        snprintf(why, whylen, "v1: protocol is not TCP4, TCP6 or UNKNOWN");
        return PROXY_BAD;
    }
    if (nf != 5) {
        snprintf(why, whylen, "v1: not PROXY TCPn src dst sport dport");
        return PROXY_BAD;
    }
    h->family = f[0][3] == '4' ? AF_INET : AF_INET6;
    if (proxy_addr(h->family, f[1], fl[1], h->src, sizeof(h->src)) < 0 ||
        proxy_addr(h->family, f[2], fl[2], h->dst, sizeof(h->dst)) < 0) {
        snprintf(why, whylen, "v1: address is not %s",
                 h->family == AF_INET ? "IPv4" : "IPv6");
        return PROXY_BAD;
    }
    if (proxy_port(f[3], fl[3], &h->sport) < 0 ||
        proxy_port(f[4], fl[4], &h->dport) < 0) {
        snprintf(why, whylen, "v1: port is not 0 to 65535");
        return PROXY_BAD;
    }
    return (int)(end + 2);
}

static int
proxy_parse_v2(const unsigned char *p, size_t len, struct proxy_hdr *h,
               char *why, size_t whylen)
{
    size_t blen;
    unsigned cmd;

    if (len < PROXY_V2_HEAD)
        return PROXY_MORE;
    if ((p[12] >> 4) != 2) {
        snprintf(why, whylen, "v2: version %u", p[12] >> 4);
        return PROXY_BAD;
    }
    cmd = p[12] & 0x0f;
    if (cmd > 1) {
        snprintf(why, whylen, "v2: command %u is not LOCAL or PROXY", cmd);
        return PROXY_BAD;
    }
    blen = (size_t)p[14] << 8 | p[15];
    if (blen > PROXY_V2_BODY_MAX) {
        snprintf(why, whylen, "v2: %zu octets of addresses, over %d", blen,
                 PROXY_V2_BODY_MAX);
        return PROXY_BAD;
    }
    if (len < PROXY_V2_HEAD + blen)
        return PROXY_MORE;
    memset(h, 0, sizeof(*h));
    h->version = 2;
    if (cmd == 0 || p[13] == 0x00) {
        h->local = 1;
        return (int)(PROXY_V2_HEAD + blen);
    }
    p += PROXY_V2_HEAD;
    if (p[-3] == 0x11) {
        if (blen < 12) {
            snprintf(why, whylen, "v2: TCP4 with %zu octets of addresses",
                     blen);
            return PROXY_BAD;
        }
        h->family = AF_INET;
        inet_ntop(AF_INET, p, h->src, sizeof(h->src));
        inet_ntop(AF_INET, p + 4, h->dst, sizeof(h->dst));
        h->sport = (unsigned)p[8] << 8 | p[9];
        h->dport = (unsigned)p[10] << 8 | p[11];
    } else if (p[-3] == 0x21) {
        if (blen < 36) {
            snprintf(why, whylen, "v2: TCP6 with %zu octets of addresses",
                     blen);
            return PROXY_BAD;
        }
        h->family = AF_INET6;
        inet_ntop(AF_INET6, p, h->src, sizeof(h->src));
        inet_ntop(AF_INET6, p + 16, h->dst, sizeof(h->dst));
        h->sport = (unsigned)p[32] << 8 | p[33];
        h->dport = (unsigned)p[34] << 8 | p[35];
    } else {
        snprintf(why, whylen, "v2: family 0x%02x is not TCP4 or TCP6", p[-3]);
        return PROXY_BAD;
    }
    return (int)(PROXY_V2_HEAD + blen);
}

int
proxy_parse(const unsigned char *p, size_t len, struct proxy_hdr *h, char *why,
            size_t whylen)
{
    size_t k;

    if (whylen > 0)
        why[0] = '\0';
    k = len < 6 ? len : 6;
    if (memcmp(p, "PROXY ", k) == 0 && k > 0)
        return k < 6 ? PROXY_MORE : proxy_parse_v1(p, len, h, why, whylen);
    k = len < sizeof(proxy_v2_sig) ? len : sizeof(proxy_v2_sig);
    if (k > 0 && memcmp(p, proxy_v2_sig, k) == 0)
        return k < sizeof(proxy_v2_sig)
                   ? PROXY_MORE
                   : proxy_parse_v2(p, len, h, why, whylen);
    if (len == 0)
        return PROXY_MORE;
    snprintf(why, whylen, "not a PROXY protocol header");
    return PROXY_BAD;
}

/* proxy_recv - exactly n octets into p before deadline; 0 or -1. */
static int
proxy_recv(int fd, unsigned char *p, size_t n, long long deadline,
           struct err *e)
{
    size_t got = 0;

    while (got < n) {
        struct pollfd pfd = {fd, POLLIN, 0};
        long long left = deadline - netio_now_ms();
        ssize_t k;
        int rc;

        if (left <= 0)
            return err_set(e, ERR_TEMP, "timeout reading the PROXY header");
        rc = poll(&pfd, 1, (int)left);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0)
            return err_sys(e, ERR_IO, "poll");
        if (rc == 0)
            continue;
        k = recv(fd, p + got, n - got, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            return err_sys(e, ERR_IO, "reading the PROXY header");
        if (k == 0)
            return err_set(e, ERR_INPUT,
                           "connection closed in the PROXY header");
        got += (size_t)k;
    }
    return 0;
}

int
proxy_read(int fd, int timeout_ms, struct proxy_hdr *h, struct err *e)
{
    unsigned char buf[PROXY_V2_HEAD + PROXY_V2_BODY_MAX];
    long long deadline = netio_now_ms() + timeout_ms;
    char why[160];
    size_t len = 8, want;
    int rc;

    /* Eight octets tell the versions apart and are fewer than either's
     * shortest header ("PROXY UNKNOWN\r\n" is 15). */
    if (proxy_recv(fd, buf, len, deadline, e) < 0)
        return -1;
    for (;;) {
        rc = proxy_parse(buf, len, h, why, sizeof(why));
        if (rc > 0)
            return 0;
        if (rc == PROXY_BAD)
            return err_set(e, ERR_INPUT, "%s", why);
        if (buf[0] == 'P') {
            want = 1; /* v1: to the CRLF, never past it */
        } else if (len < PROXY_V2_HEAD) {
            want = PROXY_V2_HEAD - len;
        } else {
            want = PROXY_V2_HEAD + ((size_t)buf[14] << 8 | buf[15]) - len;
        }
        if (len + want > sizeof(buf))
            return err_set(e, ERR_INPUT, "PROXY header too long");
        if (proxy_recv(fd, buf + len, want, deadline, e) < 0)
            return -1;
        len += want;
    }
}
