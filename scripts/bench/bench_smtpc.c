/*
 * bench_smtpc - next-hop client throughput against a real server
 *
 *     bench_smtpc -n MESSAGES -l LENGTH -s SESSIONS [-r] NEXT_HOP
 *
 * Sends MESSAGES messages of LENGTH payload octets (CRLF lines of 78
 * octets, some starting with a dot, under a short header), each to one
 * recipient, from SESSIONS threads sharing one smtpc pool, and prints
 * messages per second and megabytes per second. -r turns connection
 * reuse off (max_idle 0), for the cost of a connection per message.
 * scripts/bench/smtpc runs it beside Postfix's smtp-source on the same
 * smtp-sink.
 */
#include "config.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "net/smtpc.h"

struct bench {
    struct smtpc_pool *pool;
    const char *msg;
    size_t len;
    long todo; /* messages each thread sends */
    long sent, failed;
};

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *
bench_thread(void *v)
{
    struct bench *b = v;
    struct smtpc_reply r;
    struct smtpc_conn *c;
    struct err e;
    long i;
    int rc;

    for (i = 0; i < b->todo; i++) {
        if ((c = smtpc_get(b->pool, &r, &e)) == NULL) {
            b->failed++;
            continue;
        }
        rc = smtpc_mail(c, NULL, "foo@example.com", NULL, &r, &e);
        if (rc == 0 && r.code / 100 == 2)
            rc = smtpc_rcpt(c, "bar@example.net", NULL, &r, &e);
        if (rc == 0 && r.code / 100 == 2)
            rc = smtpc_data(c, b->msg, b->len, &r, &e);
        if (rc == 0 && r.code / 100 == 2)
            b->sent++;
        else
            b->failed++;
        smtpc_put(b->pool, c, rc == 0);
    }
    return NULL;
}

static long
number(const char *s)
{
    char *end;
    long n = strtol(s, &end, 10);

    return *end == '\0' && n > 0 ? n : -1;
}

int
main(int argc, char **argv)
{
    struct smtpc_settings set;
    struct bench b[64];
    pthread_t tid[64];
    long n = 1000, len = 5000, sessions = 1, sent = 0, failed = 0, i;
    int opt, reuse = 1;
    size_t o = 0;
    char *msg;
    double t0, t;
    struct err e;

    while ((opt = getopt(argc, argv, "n:l:s:r")) != -1) {
        switch (opt) {
        case 'n':
            n = number(optarg);
            break;
        case 'l':
            len = number(optarg);
            break;
        case 's':
            sessions = number(optarg);
            break;
        case 'r':
            reuse = 0;
            break;
        default:
            n = -1;
        }
    }
    if (optind != argc - 1 || n < 1 || len < 1 || sessions < 1 ||
        sessions > 64) {
        fprintf(stderr, "usage: bench_smtpc -n MESSAGES -l LENGTH "
                        "-s SESSIONS(1-64) [-r] NEXT_HOP\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if ((msg = malloc((size_t)len + 256)) == NULL)
        return 1;
    o = (size_t)snprintf(msg, 256,
                         "From: <foo@example.com>\r\nTo: <bar@example.net>\r\n"
                         "Subject: bench\r\n\r\n");
    for (i = 0; i < len; i++) {
        if (i % 80 == 78)
            msg[o++] = '\r';
        else if (i % 80 == 79)
            msg[o++] = '\n';
        else if (i % 80 == 0 && i % 800 == 0)
            msg[o++] = '.';
        else
            msg[o++] = (char)('a' + i % 26);
    }
    memset(&set, 0, sizeof(set));
    set.next_hop = argv[optind];
    set.helo_name = "bench.example";
    set.tls = SMTPC_TLS_NONE;
    set.connect_timeout_ms = 5000;
    set.timeout_ms = 30000;
    set.idle_timeout_ms = 5000;
    set.max_idle = reuse ? (size_t)sessions : 0;
    memset(b, 0, sizeof(b));
    if ((b[0].pool = smtpc_pool_new(&set, &e)) == NULL) {
        fprintf(stderr, "bench_smtpc: %s\n", e.text);
        return 1;
    }
    t0 = now_s();
    for (i = 0; i < sessions; i++) {
        b[i].pool = b[0].pool;
        b[i].msg = msg;
        b[i].len = o;
        b[i].todo = n / sessions + (i < n % sessions);
        if (pthread_create(&tid[i], NULL, bench_thread, &b[i]) != 0)
            return 1;
    }
    for (i = 0; i < sessions; i++) {
        pthread_join(tid[i], NULL);
        sent += b[i].sent;
        failed += b[i].failed;
    }
    t = now_s() - t0;
    smtpc_pool_free(b[0].pool);
    free(msg);
    printf("%ld sent, %ld failed, %.3f s, %.0f msg/s, %.1f MB/s\n", sent,
           failed, t, (double)sent / t, (double)sent * (double)o / t / 1e6);
    return failed != 0;
}
