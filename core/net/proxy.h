/*
 * proxy - the PROXY protocol header a load balancer sends first (HAProxy)
 *
 * Versions 1 (one text line, "PROXY TCP4 src dst sport dport\r\n", TCP6
 * or UNKNOWN) and 2 (binary: the 12-octet signature, version and
 * command, family, length, addresses; PROXY over TCP4 or TCP6, or LOCAL,
 * a health check of the balancer's own). proxy_parse() is a pure, strict
 * parser of a whole header; proxy_read() reads exactly one header from
 * a socket, octet by octet where the length is not known yet, so that
 * nothing of the SMTP dialogue behind it is consumed, within a deadline.
 * Nothing is allocated.
 */
#ifndef RC_PROXY_H
#define RC_PROXY_H

#include <netinet/in.h>
#include <stddef.h>

#include "util/err.h"

#define PROXY_V1_MAX 107      /* octets of a v1 line, CRLF included */
#define PROXY_V2_HEAD 16      /* signature, command, family, length */
#define PROXY_V2_BODY_MAX 512 /* addresses and TLVs we accept */

enum proxy_status {
    PROXY_BAD = -1, /* not a valid header: why says what */
    PROXY_MORE = 0  /* a valid start: more octets are needed */
    /* > 0: a whole header of that many octets */
};

struct proxy_hdr {
    int version; /* 1 or 2 */
    int local;   /* no client address: v1 UNKNOWN, v2 LOCAL */
    int family;  /* AF_INET or AF_INET6 unless local */
    char src[INET6_ADDRSTRLEN], dst[INET6_ADDRSTRLEN];
    unsigned sport, dport;
};

/* proxy_parse - the header at the start of p[0..len): its length (> 0)
 * with h filled, PROXY_MORE, or PROXY_BAD with the reason in why. */
int proxy_parse(const unsigned char *p, size_t len, struct proxy_hdr *h,
                char *why, size_t whylen);

/* proxy_read - read one header from fd within timeout_ms. 0 with h
 * filled, or -1 with e set ("timeout", the parser's reason, or the
 * system's). */
int proxy_read(int fd, int timeout_ms, struct proxy_hdr *h, struct err *e);

#endif
