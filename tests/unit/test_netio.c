/*
 * test_netio - timeouts per wait and per record, plain and TLS
 *
 * Each case runs netio on one end of a socketpair and a peer thread on
 * the other that sends (or reads) in chunks with pauses between them,
 * the way a slow or hostile client does. The checks are what the SMTP
 * server relies on: with a record deadline a line, a flush or a TLS
 * handshake that is trickled ends in a timeout soon after the timeout,
 * whatever the pace of the octets; without one, the same trickle is
 * served because no single wait is long; a fast peer is served either
 * way; an over-long line read at a steady rate is not cut off, since each
 * line_limit octets of it is a record of its own. The TLS cases trickle
 * the octets of one TLS record and of the ClientHello, which a blocking
 * SSL_read() or SSL_accept() would wait out inside OpenSSL.
 *
 * Elapsed times are checked both ways, with room for a loaded machine
 * above. Each case ends its peer before it checks anything, so a failed
 * case leaves no thread behind to disturb the next. The certificate is
 * made in set-up with "openssl req".
 */
#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "unit.h"

#include "net/auth.h"
#include "util/buf.h"
#include "net/netio.h"

#define TIMEOUT_MS 300
#define SLACK_MS 450 /* a loaded machine or a sanitizer build is late */

static char tmp_dir[256], cert_path[512], key_path[512];

enum peer_mode {
    PEER_SEND,       /* data in chunks */
    PEER_READ,       /* read chunk octets per gap until EOF */
    PEER_TLS_RECORD, /* handshake, then data as one TLS record in chunks */
    PEER_TLS_HELLO   /* the ClientHello in chunks, then the rest at once */
};

struct peer {
    int fd;
    enum peer_mode mode;
    const char *data;
    size_t len, chunk;
    int gap_ms;
    SSL_CTX *cctx;
    pthread_t thread;
};

static long long
now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* peer_trickle - p in chunks with gap_ms between; -1 once netio's side
 * is gone. */
static int
peer_trickle(const struct peer *pr, const char *p, size_t len)
{
    size_t off = 0;

    while (off < len) {
        size_t k = len - off < pr->chunk ? len - off : pr->chunk;
        ssize_t n;

        if (off > 0)
            sleep_ms(pr->gap_ms);
        n = send(pr->fd, p + off, k, MSG_NOSIGNAL);
        if (n <= 0)
            return -1;
        off += (size_t)n;
    }
    return 0;
}

static void
peer_tls_record(const struct peer *pr)
{
    SSL *c = SSL_new(pr->cctx);
    BIO *mem;
    char *rec;
    long n;

    if (c == NULL || !SSL_set_fd(c, pr->fd) || SSL_connect(c) != 1)
        goto out;
    /* From now on records are made in memory and trickled by hand. */
    if ((mem = BIO_new(BIO_s_mem())) == NULL)
        goto out;
    SSL_set0_wbio(c, mem);
    if (SSL_write(c, pr->data, (int)pr->len) != (int)pr->len)
        goto out;
    n = BIO_get_mem_data(mem, &rec);
    (void)peer_trickle(pr, rec, (size_t)n);
out:
    SSL_free(c);
    ERR_clear_error();
}

static void
peer_tls_hello(const struct peer *pr)
{
    SSL *c = SSL_new(pr->cctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    char *hello = NULL, *p;
    long n;

    if (c == NULL || rb == NULL || wb == NULL) {
        BIO_free(rb);
        BIO_free(wb);
        goto out;
    }
    SSL_set_bio(c, rb, wb);
    SSL_set_connect_state(c);
    (void)SSL_do_handshake(c); /* wants the ServerHello */
    n = BIO_get_mem_data(wb, &p);
    if (n <= 0 || (hello = malloc((size_t)n)) == NULL)
        goto out;
    memcpy(hello, p, (size_t)n);
    if (peer_trickle(pr, hello, (size_t)n) < 0)
        goto out;
    /* The rest of the handshake over the socket, then one line. */
    if (!SSL_set_fd(c, pr->fd) || SSL_do_handshake(c) != 1)
        goto out;
    (void)SSL_write(c, pr->data, (int)pr->len);
out:
    free(hello);
    SSL_free(c);
    ERR_clear_error();
}

static void *
peer_main(void *arg)
{
    struct peer *pr = arg;
    char sink[4096];

    switch (pr->mode) {
    case PEER_SEND:
        (void)peer_trickle(pr, pr->data, pr->len);
        break;
    case PEER_READ:
        for (;;) {
            size_t k = pr->chunk < sizeof(sink) ? pr->chunk : sizeof(sink);

            if (read(pr->fd, sink, k) <= 0)
                break;
            sleep_ms(pr->gap_ms);
        }
        break;
    case PEER_TLS_RECORD:
        peer_tls_record(pr);
        break;
    case PEER_TLS_HELLO:
        peer_tls_hello(pr);
        break;
    }
    /* Stay until netio's side is closed, so that our close is never
     * taken for the end of the peer's input. */
    while (read(pr->fd, sink, sizeof(sink)) > 0)
        ;
    close(pr->fd);
    return NULL;
}

/* start - a socketpair with netio on one end and the peer on the other. */
static struct netio *
start(const char *name, struct peer *pr, size_t line_limit, int deadline)
{
    struct netio *io;
    struct err e;
    int sv[2];

    err_clear(&e);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        unit_fail(name, "socketpair: %s", strerror(errno));
    if ((io = netio_new(sv[0], line_limit, TIMEOUT_MS, &e)) == NULL)
        unit_fail(name, "netio_new: %s", e.text);
    netio_set_record_deadline(io, deadline);
    pr->fd = sv[1];
    if (pthread_create(&pr->thread, NULL, peer_main, pr) != 0)
        unit_fail(name, "pthread_create failed");
    return io;
}

static void
stop(struct netio *io, struct peer *pr)
{
    netio_free(io);
    pthread_join(pr->thread, NULL);
}

/* within - fail unless lo <= ms <= hi. */
static void
within(const char *name, long long ms, long long lo, long long hi)
{
    if (ms < lo || ms > hi)
        unit_fail(name, "took %lld ms, want %lld to %lld", ms, lo, hi);
}

static void
test_getline(void **state)
{
    static char longline[323]; /* 320 octets, CRLF, NUL */
    static const struct {
        const char *name;
        int deadline;
        size_t line_limit;
        const char *data; /* NULL: longline */
        size_t chunk;
        int gap_ms;
        int want;
        const char *want_line;
        long long min_ms, max_ms;
    } cases[] = {
        {"trickle, per wait", 0, 1024, "NOOP\r\n", 1, 100, NETIO_OK,
         "NOOP\r\n", 450, 500 + SLACK_MS},
        {"trickle, record deadline", 1, 1024, "NOOP\r\n", 1, 100,
         NETIO_TIMEOUT, NULL, TIMEOUT_MS - 20, TIMEOUT_MS + SLACK_MS},
        {"at once, record deadline", 1, 1024, "NOOP\r\n", 6, 0, NETIO_OK,
         "NOOP\r\n", 0, SLACK_MS},
        {"in two halves in time, record deadline", 1, 1024, "NOOP\r\n", 3, 150,
         NETIO_OK, "NOOP\r\n", 140, 150 + SLACK_MS},
        {"silent peer, per wait", 0, 1024, "", 1, 0, NETIO_TIMEOUT, NULL,
         TIMEOUT_MS - 20, TIMEOUT_MS + SLACK_MS},
        {"silent peer, record deadline", 1, 1024, "", 1, 0, NETIO_TIMEOUT,
         NULL, TIMEOUT_MS - 20, TIMEOUT_MS + SLACK_MS},
        /* 32 octets per 100 ms: each 64 octets come within the timeout,
         * the whole 322 do not */
        {"over-long line at a steady pace, record deadline", 1, 64, NULL, 32,
         100, NETIO_TOOLONG, "\r\n", 900, 1000 + SLACK_MS},
        /* 4 octets per 100 ms: 64 octets take 1.6 s */
        {"over-long line trickled, record deadline", 1, 64, NULL, 4, 100,
         NETIO_TIMEOUT, NULL, TIMEOUT_MS - 20, TIMEOUT_MS + SLACK_MS},
    };
    size_t i;

    (void)state;
    memset(longline, 'x', 320);
    memcpy(longline + 320, "\r\n", 3);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *name = cases[i].name;
        struct peer pr;
        struct netio *io;
        struct buf line;
        struct err e;
        long long t0, ms;
        int rc, timed_out;

        memset(&pr, 0, sizeof(pr));
        pr.mode = PEER_SEND;
        pr.data = cases[i].data ? cases[i].data : longline;
        pr.len = strlen(pr.data);
        pr.chunk = cases[i].chunk;
        pr.gap_ms = cases[i].gap_ms;
        buf_init(&line, 0);
        err_clear(&e);
        io = start(name, &pr, cases[i].line_limit, cases[i].deadline);
        t0 = now_ms();
        rc = netio_getline(io, &line, &e);
        ms = now_ms() - t0;
        timed_out = netio_timed_out(io);
        stop(io, &pr);
        within(name, ms, cases[i].min_ms, cases[i].max_ms);
        unit_int_eq(name, rc, cases[i].want);
        unit_int_eq(name, timed_out, rc == NETIO_TIMEOUT);
        if (cases[i].want_line != NULL)
            unit_str_eq(name, buf_str(&line), cases[i].want_line);
        buf_fini(&line);
    }
}

static void
test_flush(void **state)
{
    /* 64 KiB to a peer that reads 2 KiB per 40 ms: more than a second */
    static const struct {
        const char *name;
        int deadline;
        int want;
        const char *want_err;
        long long min_ms, max_ms;
    } cases[] = {
        {"slow reader, per wait", 0, 0, NULL, 600, 1300 + 3 * SLACK_MS},
        {"slow reader, record deadline", 1, -1, "write: timeout",
         TIMEOUT_MS - 20, TIMEOUT_MS + SLACK_MS},
    };
    static char big[65536];
    size_t i;

    (void)state;
    memset(big, 'y', sizeof(big));
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *name = cases[i].name;
        int small = 4096;
        struct peer pr;
        struct netio *io;
        struct err e;
        long long t0, ms;
        int rc, timed_out;

        memset(&pr, 0, sizeof(pr));
        pr.mode = PEER_READ;
        pr.chunk = 2048;
        pr.gap_ms = 40;
        err_clear(&e);
        io = start(name, &pr, 1024, cases[i].deadline);
        (void)setsockopt(netio_fd(io), SOL_SOCKET, SO_SNDBUF, &small,
                         sizeof(small));
        (void)setsockopt(pr.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
        assert_int_equal(netio_write(io, big, sizeof(big), &e), 0);
        t0 = now_ms();
        rc = netio_flush(io, &e);
        ms = now_ms() - t0;
        timed_out = netio_timed_out(io);
        stop(io, &pr);
        within(name, ms, cases[i].min_ms, cases[i].max_ms);
        unit_int_eq(name, rc, cases[i].want);
        unit_int_eq(name, timed_out, rc < 0);
        if (cases[i].want_err != NULL)
            unit_str_eq(name, e.text, cases[i].want_err);
    }
}

static void
test_tls(void **state)
{
    static const struct {
        const char *name;
        int deadline;
        enum peer_mode mode;
        size_t chunk;
        int gap_ms;
        int want_accept; /* netio_tls_accept: 0 or -1 */
        int want_line;   /* netio_getline, when the handshake succeeded */
        long long min_ms, max_ms; /* of the step that is trickled */
    } cases[] = {
        /* a TLS 1.3 record of "NOOP\r\n" is 28 octets: about 1.1 s */
        {"TLS record trickled, per wait", 0, PEER_TLS_RECORD, 1, 40, 0,
         NETIO_OK, 900, 1100 + SLACK_MS},
        {"TLS record trickled, record deadline", 1, PEER_TLS_RECORD, 1, 40, 0,
         NETIO_TIMEOUT, TIMEOUT_MS - 20, TIMEOUT_MS + SLACK_MS},
        {"TLS record at once, record deadline", 1, PEER_TLS_RECORD, 4096, 0, 0,
         NETIO_OK, 0, SLACK_MS},
        /* a ClientHello is some 250 octets or more: 16 per 40 ms is
         * over half a second */
        {"ClientHello trickled, per wait", 0, PEER_TLS_HELLO, 16, 40, 0,
         NETIO_OK, 500, 3000},
        {"ClientHello trickled, record deadline", 1, PEER_TLS_HELLO, 16, 40,
         -1, 0, TIMEOUT_MS - 20, TIMEOUT_MS + SLACK_MS},
    };
    SSL_CTX *sctx, *cctx;
    struct err e;
    size_t i;

    (void)state;
    err_clear(&e);
    if ((sctx = auth_tls_server_ctx(cert_path, key_path, &e)) == NULL ||
        (cctx = auth_tls_client_ctx(&e)) == NULL)
        fail_msg("TLS contexts: %s", e.text);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *name = cases[i].name;
        struct peer pr;
        struct netio *io;
        struct buf line;
        long long t0, t1, t2 = 0;
        int rc, line_rc = NETIO_ERROR, timed_out;
        char why[ERR_TEXT_MAX];

        memset(&pr, 0, sizeof(pr));
        pr.mode = cases[i].mode;
        pr.data = "NOOP\r\n";
        pr.len = 6;
        pr.chunk = cases[i].chunk;
        pr.gap_ms = cases[i].gap_ms;
        pr.cctx = cctx;
        buf_init(&line, 0);
        err_clear(&e);
        io = start(name, &pr, 1024, cases[i].deadline);
        t0 = now_ms();
        rc = netio_tls_accept(io, sctx, &e);
        t1 = now_ms();
        snprintf(why, sizeof(why), "%s", rc < 0 ? e.text : "");
        if (rc == 0) {
            line_rc = netio_getline(io, &line, &e);
            t2 = now_ms();
        }
        timed_out = netio_timed_out(io);
        stop(io, &pr);
        unit_int_eq(name, rc, cases[i].want_accept);
        if (cases[i].mode == PEER_TLS_HELLO)
            within(name, t1 - t0, cases[i].min_ms, cases[i].max_ms);
        if (rc < 0) {
            unit_str_eq(name, why, "TLS handshake: timeout");
            unit_int_eq(name, timed_out, 1);
        } else {
            if (cases[i].mode == PEER_TLS_RECORD)
                within(name, t2 - t1, cases[i].min_ms, cases[i].max_ms);
            unit_int_eq(name, line_rc, cases[i].want_line);
            unit_int_eq(name, timed_out, line_rc == NETIO_TIMEOUT);
            if (line_rc == NETIO_OK)
                unit_str_eq(name, buf_str(&line), "NOOP\r\n");
        }
        buf_fini(&line);
    }
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}

static int
setup(void **state)
{
    char cmd[2048];

    (void)state;
    /* a peer that writes to a closed socket from inside OpenSSL */
    signal(SIGPIPE, SIG_IGN);
    if (unit_tmpdir(tmp_dir, sizeof(tmp_dir)) == NULL)
        return -1;
    snprintf(cert_path, sizeof(cert_path), "%s/cert.pem", tmp_dir);
    snprintf(key_path, sizeof(key_path), "%s/key.pem", tmp_dir);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
             "-nodes -keyout %s -out %s -days 2 -subj /CN=localhost "
             "2>/dev/null",
             key_path, cert_path);
    if (system(cmd) != 0) {
        print_error("openssl could not make the test certificate\n");
        return -1;
    }
    return 0;
}

static int
teardown(void **state)
{
    (void)state;
    return unit_rmtree(tmp_dir);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_getline),
        cmocka_unit_test(test_flush),
        cmocka_unit_test(test_tls),
    };

    return cmocka_run_group_tests(tests, setup, teardown);
}
