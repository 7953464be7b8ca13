/*
 * antispam-probe - drive an antispam engine directly, for the tests
 *
 *   antispam-probe [-e rspamd] [-t MS] [-q QID] [-f SENDER] [-r RCPT]...
 *                  [-i ADDR] [-n NAME] [-H HELO] [-u USER]
 *                  [-c COUNT] [-j THREADS] SERVER FILE
 *
 * Makes the engine once (create), then THREADS threads check FILE
 * COUNT times each through the same engine, and destroys it. Prints the
 * first answer, "score=S required=R symbols=A,B ms=N", or for each
 * failure "error: CODE: TEXT ms=N" (N: that check's time). Exit 0 when
 * every check answered, 1 when one failed, 2 on misuse.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "filters/antispam/antispam_int.h"
#include "util/err.h"

#define PROBE_RCPTS 64
#define PROBE_THREADS 32

static const struct flt_as_engine_ops *probe_ops;
static void *probe_eng;
static struct flt_as_query probe_q;
static int probe_count = 1;
static pthread_mutex_t probe_lock = PTHREAD_MUTEX_INITIALIZER;
static int probe_printed, probe_failed;

static long
probe_ms(const struct timespec *t0)
{
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (long)(t1.tv_sec - t0->tv_sec) * 1000 +
           (t1.tv_nsec - t0->tv_nsec) / 1000000;
}

static void *
probe_run(void *arg)
{
    int i;

    (void)arg;
    for (i = 0; i < probe_count; i++) {
        struct flt_as_answer a;
        struct timespec t0;
        struct err e;
        int rc;
        long ms;

        err_clear(&e);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        rc = probe_ops->check(probe_eng, &probe_q, &a, &e);
        ms = probe_ms(&t0);
        pthread_mutex_lock(&probe_lock);
        if (rc < 0) {
            printf("error: %s: %s ms=%ld\n", err_code_name(e.code), e.text,
                   ms);
            probe_failed = 1;
        } else if (!probe_printed) {
            printf("score=%.2f required=%.2f symbols=%s ms=%ld\n", a.score,
                   a.required, a.symbols, ms);
            probe_printed = 1;
        }
        fflush(stdout);
        pthread_mutex_unlock(&probe_lock);
    }
    return NULL;
}

static int
probe_usage(void)
{
    fprintf(stderr, "usage: antispam-probe [-e rspamd] [-t MS] [-q QID] "
                    "[-f SENDER] [-r RCPT]... [-i ADDR] [-n NAME] "
                    "[-H HELO] [-u USER] [-c COUNT] [-j THREADS] "
                    "SERVER FILE\n");
    return 2;
}

int
main(int argc, char **argv)
{
    static const char *rcpts[PROBE_RCPTS];
    pthread_t th[PROBE_THREADS];
    int timeout_ms = 10000, threads = 1, i, c;
    char *data = NULL;
    size_t len = 0, cap = 0, n;
    struct err e;
    FILE *f;

    probe_ops = &flt_as_rspamd_ops;
    probe_q.sender = "";
    probe_q.rcpts = rcpts;
    while ((c = getopt(argc, argv, "e:t:q:f:r:i:n:H:u:c:j:")) != -1) {
        switch (c) {
        case 'e':
            if (strcmp(optarg, "rspamd") != 0)
                return probe_usage();
            break;
        case 't':
            timeout_ms = atoi(optarg);
            break;
        case 'q':
            probe_q.qid = optarg;
            break;
        case 'f':
            probe_q.sender = optarg;
            break;
        case 'r':
            if (probe_q.nrcpts == PROBE_RCPTS)
                return probe_usage();
            rcpts[probe_q.nrcpts++] = optarg;
            break;
        case 'i':
            probe_q.client_addr = optarg;
            break;
        case 'n':
            probe_q.client_name = optarg;
            break;
        case 'H':
            probe_q.helo = optarg;
            break;
        case 'u':
            probe_q.auth_user = optarg;
            break;
        case 'c':
            probe_count = atoi(optarg);
            break;
        case 'j':
            threads = atoi(optarg);
            break;
        default:
            return probe_usage();
        }
    }
    if (argc - optind != 2 || probe_count < 1 || threads < 1 ||
        threads > PROBE_THREADS)
        return probe_usage();
    f = fopen(argv[optind + 1], "rb");
    if (f == NULL) {
        perror(argv[optind + 1]);
        return 2;
    }
    for (;;) {
        if (len == cap) {
            char *p = realloc(data, cap ? cap * 2 : 65536);

            if (p == NULL) {
                fclose(f);
                free(data);
                return 2;
            }
            data = p;
            cap = cap ? cap * 2 : 65536;
        }
        n = fread(data + len, 1, cap - len, f);
        if (n == 0)
            break;
        len += n;
    }
    fclose(f);
    probe_q.data = data;
    probe_q.len = len;

    err_clear(&e);
    probe_eng = probe_ops->create(argv[optind], timeout_ms, &e);
    if (probe_eng == NULL) {
        printf("create: %s: %s\n", err_code_name(e.code), e.text);
        free(data);
        return 1;
    }
    for (i = 0; i < threads; i++)
        if (pthread_create(&th[i], NULL, probe_run, NULL) != 0) {
            perror("pthread_create");
            return 2;
        }
    for (i = 0; i < threads; i++)
        pthread_join(th[i], NULL);
    probe_ops->destroy(probe_eng);
    free(data);
    return probe_failed ? 1 : 0;
}
