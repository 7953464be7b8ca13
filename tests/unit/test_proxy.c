/*
 * test_proxy - the PROXY protocol header parser and reader
 *
 * What decides which client a connection behind HAProxy is: the
 * address and port a v1 line or a v2 header names, a LOCAL or UNKNOWN
 * header that keeps the balancer's own, and every malformed header
 * refused (the connection is then closed). proxy_read() over a socket
 * pair takes exactly the header and leaves the SMTP text behind it.
 */
#include "config.h"

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "unit.h"

#include "net/proxy.h"

static const unsigned char sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static void
test_v1(void **state)
{
    static const struct {
        const char *name, *in;
        int want; /* length, PROXY_MORE or PROXY_BAD */
        const char *src;
        unsigned sport;
    } cases[] = {
        {"tcp4", "PROXY TCP4 192.0.2.7 10.0.0.1 56324 25\r\nEHLO", 40,
         "192.0.2.7", 56324},
        {"tcp6", "PROXY TCP6 2001:db8::7 2001:db8::1 1 25\r\n", 41,
         "2001:db8::7", 1},
        {"unknown", "PROXY UNKNOWN\r\n", 15, NULL, 0},
        {"unknown with text", "PROXY UNKNOWN ffff:f::1 x 1 2\r\n", 31, NULL,
         0},
        {"partial", "PROXY TCP4 192.0.2.7", PROXY_MORE, NULL, 0},
        {"prefix", "PRO", PROXY_MORE, NULL, 0},
        {"not proxy", "EHLO x\r\n", PROXY_BAD, NULL, 0},
        {"lower case", "proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n", PROXY_BAD, NULL,
         0},
        {"v6 in tcp4", "PROXY TCP4 ::1 ::1 1 2\r\n", PROXY_BAD, NULL, 0},
        {"v4 in tcp6", "PROXY TCP6 1.2.3.4 1.2.3.4 1 2\r\n", PROXY_BAD, NULL,
         0},
        {"two spaces", "PROXY TCP4  1.2.3.4 1.2.3.4 1 2\r\n", PROXY_BAD, NULL,
         0},
        {"port big", "PROXY TCP4 1.2.3.4 1.2.3.4 65536 2\r\n", PROXY_BAD, NULL,
         0},
        {"port zero lead", "PROXY TCP4 1.2.3.4 1.2.3.4 025 2\r\n", PROXY_BAD,
         NULL, 0},
        {"missing port", "PROXY TCP4 1.2.3.4 1.2.3.4 25\r\n", PROXY_BAD, NULL,
         0},
        {"extra field", "PROXY TCP4 1.2.3.4 1.2.3.4 1 2 3\r\n", PROXY_BAD,
         NULL, 0},
        {"udp", "PROXY UDP4 1.2.3.4 1.2.3.4 1 2\r\n", PROXY_BAD, NULL, 0},
        {"bare lf", "PROXY TCP4 1.2.3.4 1.2.3.4 1 2\n", PROXY_BAD, NULL, 0},
        {"cr alone", "PROXY TCP4 1.2.3.4 1.2.3.4 1 2\rX\n", PROXY_BAD, NULL,
         0},
        {"too long",
         "PROXY UNKNOWN "
         "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
         "xxxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n",
         PROXY_BAD, NULL, 0},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct proxy_hdr h;
        char why[160];
        int rc = proxy_parse((const unsigned char *)cases[i].in,
                             strlen(cases[i].in), &h, why, sizeof(why));

        unit_int_eq(cases[i].name, rc, cases[i].want);
        if (rc == PROXY_BAD && why[0] == '\0')
            unit_fail(cases[i].name, "refused without a reason");
        if (rc <= 0)
            continue;
        unit_int_eq(cases[i].name, h.version, 1);
        unit_int_eq(cases[i].name, h.local, cases[i].src == NULL);
        if (cases[i].src != NULL) {
            unit_str_eq(cases[i].name, h.src, cases[i].src);
            unit_int_eq(cases[i].name, h.sport, cases[i].sport);
        }
    }
}

/* v2 - a v2 header: command, family, body of blen octets. */
static size_t
v2(unsigned char *out, unsigned cmd, unsigned fam, const unsigned char *body,
   size_t blen, size_t declared)
{
    memcpy(out, sig, 12);
    out[12] = (unsigned char)(0x20 | cmd);
    out[13] = (unsigned char)fam;
    out[14] = (unsigned char)(declared >> 8);
    out[15] = (unsigned char)declared;
    memcpy(out + 16, body, blen);
    return 16 + blen;
}

static void
test_v2(void **state)
{
    unsigned char b[700], body[600];
    struct proxy_hdr h;
    char why[160];
    size_t n;

    (void)state;
    memset(body, 0, sizeof(body));
    /* TCP4 127.0.0.2:40000 -> 127.0.0.1:25 */
    body[0] = 127, body[3] = 2, body[4] = 127, body[7] = 1;
    body[8] = 0x9c, body[9] = 0x40, body[10] = 0, body[11] = 25;
    n = v2(b, 1, 0x11, body, 12, 12);
    unit_int_eq("tcp4", proxy_parse(b, n, &h, why, sizeof(why)), 28);
    unit_str_eq("tcp4 src", h.src, "127.0.0.2");
    unit_int_eq("tcp4 port", h.sport, 40000);
    unit_int_eq("tcp4 v", h.version, 2);
    unit_int_eq("tcp4 partial", proxy_parse(b, n - 1, &h, why, sizeof(why)),
                PROXY_MORE);
    unit_int_eq("head only", proxy_parse(b, 14, &h, why, sizeof(why)),
                PROXY_MORE);
    /* with a TLV after the addresses */
    n = v2(b, 1, 0x11, body, 20, 20);
    unit_int_eq("tcp4 tlv", proxy_parse(b, n, &h, why, sizeof(why)), 36);
    /* TCP6 2001:db8::7 */
    memset(body, 0, 36);
    body[0] = 0x20, body[1] = 0x01, body[2] = 0x0d, body[3] = 0xb8,
    body[15] = 7;
    n = v2(b, 1, 0x21, body, 36, 36);
    unit_int_eq("tcp6", proxy_parse(b, n, &h, why, sizeof(why)), 52);
    unit_str_eq("tcp6 src", h.src, "2001:db8::7");
    /* LOCAL: the balancer's health check */
    n = v2(b, 0, 0x00, body, 0, 0);
    unit_int_eq("local", proxy_parse(b, n, &h, why, sizeof(why)), 16);
    unit_int_eq("local flag", h.local, 1);
    /* refusals */
    n = v2(b, 1, 0x11, body, 8, 8);
    unit_int_eq("tcp4 short", proxy_parse(b, n, &h, why, sizeof(why)),
                PROXY_BAD);
    n = v2(b, 1, 0x21, body, 20, 20);
    unit_int_eq("tcp6 short", proxy_parse(b, n, &h, why, sizeof(why)),
                PROXY_BAD);
    n = v2(b, 1, 0x12, body, 12, 12);
    unit_int_eq("udp", proxy_parse(b, n, &h, why, sizeof(why)), PROXY_BAD);
    n = v2(b, 1, 0x31, body, 216, 216);
    unit_int_eq("unix", proxy_parse(b, n, &h, why, sizeof(why)), PROXY_BAD);
    n = v2(b, 2, 0x11, body, 12, 12);
    unit_int_eq("command", proxy_parse(b, n, &h, why, sizeof(why)), PROXY_BAD);
    n = v2(b, 1, 0x11, body, 12, 12);
    b[12] = 0x11;
    unit_int_eq("version", proxy_parse(b, n, &h, why, sizeof(why)), PROXY_BAD);
    n = v2(b, 1, 0x11, body, 0, 600);
    unit_int_eq("too long", proxy_parse(b, n, &h, why, sizeof(why)),
                PROXY_BAD);
    memcpy(b, sig, 12);
    b[5] = 0;
    unit_int_eq("signature", proxy_parse(b, 16, &h, why, sizeof(why)),
                PROXY_BAD);
}

static void
test_read(void **state)
{
    static const struct {
        const char *name, *in;
        int ok;
        const char *src;
    } cases[] = {
        {"v1", "PROXY TCP4 192.0.2.7 10.0.0.1 5 25\r\nEHLO x\r\n", 1,
         "192.0.2.7"},
        {"garbage", "EHLO x\r\nMAIL FROM:<>\r\n", 0, NULL},
        {"closed early", "PROXY TCP4 192.0", 0, NULL},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct proxy_hdr h;
        struct err e;
        char rest[64];
        ssize_t k;
        int sv[2], rc;

        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        assert_int_equal(write(sv[1], cases[i].in, strlen(cases[i].in)),
                         (ssize_t)strlen(cases[i].in));
        shutdown(sv[1], SHUT_WR);
        rc = proxy_read(sv[0], 1000, &h, &e);
        unit_int_eq(cases[i].name, rc == 0, cases[i].ok);
        if (rc == 0) {
            unit_str_eq(cases[i].name, h.src, cases[i].src);
            k = read(sv[0], rest, sizeof(rest) - 1);
            rest[k > 0 ? k : 0] = '\0';
            unit_str_eq("left for SMTP", rest, "EHLO x\r\n");
        }
        close(sv[0]);
        close(sv[1]);
    }
}

static void
test_read_timeout(void **state)
{
    struct proxy_hdr h;
    struct err e;
    int sv[2];

    (void)state;
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(write(sv[1], "PROXY TCP4", 10), 10);
    unit_int_eq("silent balancer", proxy_read(sv[0], 200, &h, &e), -1);
    unit_has("timeout", e.text, "timeout");
    close(sv[0]);
    close(sv[1]);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v1),
        cmocka_unit_test(test_v2),
        cmocka_unit_test(test_read),
        cmocka_unit_test(test_read_timeout),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
