/*
 * bench_antivirus - the antivirus stage's scan rate next to libclamav's
 *     bare scan rate, same messages, same signatures, same run
 *
 *     bench_antivirus -c relaychain.conf -n ITERATIONS [-t THREADS]
 *                     message.eml...
 *
 * relaychain.conf names a chain with one antivirus stage (libclamav);
 * the bare loop compiles its own engine from that stage's
 * database_directory with the stage's limits. For each message, in this
 * order and on THREADS threads (default 1) sharing one engine each:
 *   bare   cl_fmap_open_memory + cl_scanmap_callback over the message's
 *          bytes with the stage's scan options (mail, archives, all
 *          parsers, the limit and encrypted-archive heuristics): what
 *          libclamav itself costs;
 *   parse  msg_parse and the shared MIME parse, no stage: the message
 *          model every stage pays for anyway;
 *   chain  msg_parse + chain_run over the antivirus chain (the MIME
 *          check, then the stage: serialization, scan, policy).
 * The stage's own rate is derived: 1 / (chain time - parse time) per
 * message, the cost the antivirus stage adds to a chain that parses the
 * message anyway (every chain with a stage does, for its MIME check);
 * stage / bare compares that with libclamav alone.
 * The three take turns in 5 rounds of ITERATIONS / 5 and the best rate
 * of each is kept, so a burst of other load on the machine does not
 * favour one of them. It prints messages per second of wall-clock time
 * and per second of CPU time (the process's, all threads, user and
 * system: steadier on a shared machine), and the ratios stage / bare and
 * chain / bare for each.
 */
#include "config.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <clamav.h>

#include "filters/filters.h"
#include "util/buf.h"
#include "chain/chain.h"
#include "chain/conf.h"
#include "cli/parts.h"
#include "util/log.h"
#include "msg/mime.h"
#include "msg/msg.h"

#define BENCH_THREADS_MAX 64
#define BENCH_ROUNDS 5

struct bench {
    const struct conf *cf;
    const struct chain *empty;
    struct cl_engine *engine;
    const struct buf *in;
    int kind; /* 0 bare, 1 parse, 2 stage */
    long n;
    int failed;
    long infected;
};

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
read_file(const char *path, struct buf *b)
{
    char chunk[65536];
    struct err e;
    size_t n;
    FILE *fp;

    if ((fp = fopen(path, "rb")) == NULL) {
        perror(path);
        return -1;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
        if (buf_append(b, chunk, n, &e) < 0) {
            fclose(fp);
            return -1;
        }
    fclose(fp);
    return 0;
}

static int
one(struct bench *b)
{
    struct cl_scan_options opts;
    struct chain_result res;
    const char *vn = NULL;
    unsigned long scanned = 0;
    struct msg *m;
    struct err e;
    cl_fmap_t *map;
    cl_error_t rc;
    int ret = -1;

    if (b->kind == 0) {
        if ((map = cl_fmap_open_memory(b->in->data, b->in->len)) == NULL)
            return -1;
        memset(&opts, 0, sizeof(opts));
        opts.general = CL_SCAN_GENERAL_HEURISTICS;
        opts.parse = ~0u;
        opts.heuristic = CL_SCAN_HEURISTIC_EXCEEDS_MAX |
                         CL_SCAN_HEURISTIC_ENCRYPTED_ARCHIVE;
        rc = cl_scanmap_callback(map, NULL, &vn, &scanned, b->engine, &opts,
                                 NULL);
        cl_fmap_close(map);
        if (rc == CL_VIRUS)
            b->infected++;
        return rc == CL_CLEAN || rc == CL_VIRUS ? 0 : -1;
    }
    if ((m = msg_new(&b->cf->limits, MSG_FE_CLI, &e)) == NULL)
        return -1;
    if (msg_env_sender(m, "alice@example.com", NULL, &e) < 0 ||
        msg_env_rcpt(m, "bob@example.net", NULL, &e) < 0 ||
        msg_parse(m, b->in->data, b->in->len, &e) < 0)
        goto out;
    if (b->kind == 1) {
        ret = msg_mime(m, &e) != NULL ? 0 : -1;
        goto out;
    }
    if (chain_run(b->cf->chain, m, &res, &e) < 0)
        goto out;
    if (res.verdict.kind == VERDICT_REJECT)
        b->infected++;
    ret = res.verdict.kind == VERDICT_CONTINUE ||
                  res.verdict.kind == VERDICT_REJECT
              ? 0
              : -1;
    if (ret < 0)
        fprintf(stderr, "bench_antivirus: stage: %s %s\n",
                verdict_kind_name(res.verdict.kind), res.verdict.note);
    chain_result_fini(&res);
out:
    msg_free(m);
    return ret;
}

static void *
worker(void *p)
{
    struct bench *b = p;
    long i;

    for (i = 0; i < b->n && !b->failed; i++)
        if (one(b) < 0)
            b->failed = 1;
    return NULL;
}

static double
cpu_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* run - n iterations of one kind on t threads; returns messages per
 * second of wall-clock time, and in *cpu per second of CPU time (all
 * threads, user and system). */
static double
run(struct bench *proto, int kind, long n, int t, int *failed, long *inf,
    double *cpu)
{
    struct bench b[BENCH_THREADS_MAX];
    pthread_t tid[BENCH_THREADS_MAX];
    double t0, t1, c0;
    int i;

    *failed = 0;
    *inf = 0;
    c0 = cpu_s();
    t0 = now_s();
    for (i = 0; i < t; i++) {
        b[i] = *proto;
        b[i].kind = kind;
        b[i].n = n / t;
        if (pthread_create(&tid[i], NULL, worker, &b[i]) != 0) {
            *failed = 1;
            return 0;
        }
    }
    for (i = 0; i < t; i++) {
        pthread_join(tid[i], NULL);
        *failed |= b[i].failed;
        *inf += b[i].infected;
    }
    t1 = now_s();
    *cpu = (double)(n / t) * t / (cpu_s() - c0);
    return (double)(n / t) * t / (t1 - t0);
}

/* bare_engine - the stage's database and limits, compiled again here. */
static struct cl_engine *
bare_engine(const struct conf *cf)
{
    const struct stage *const *st;
    const struct cfg *c;
    struct cl_engine *en;
    unsigned sigs = 0;

    if (chain_stages(cf->chain, &st) != 1 ||
        strcmp(st[0]->type->name, "antivirus") != 0) {
        fprintf(stderr, "bench_antivirus: want a chain of one antivirus "
                        "stage\n");
        return NULL;
    }
    c = st[0]->cfg;
    if ((en = cl_engine_new()) == NULL ||
        cl_load(cfg_str(c, "database_directory"), en, &sigs, CL_DB_STDOPT) !=
            CL_SUCCESS)
        return NULL;
    cl_engine_set_num(en, CL_ENGINE_MAX_SCANSIZE, cfg_num(c, "max_scan_size"));
    cl_engine_set_num(en, CL_ENGINE_MAX_FILESIZE, cfg_num(c, "max_file_size"));
    cl_engine_set_num(en, CL_ENGINE_MAX_RECURSION,
                      cfg_num(c, "max_recursion"));
    cl_engine_set_num(en, CL_ENGINE_MAX_FILES, cfg_num(c, "max_files"));
    cl_engine_set_num(en, CL_ENGINE_MAX_SCANTIME, cfg_num(c, "max_scan_time"));
    if (cfg_str(c, "temporary_directory") != NULL)
        cl_engine_set_str(en, CL_ENGINE_TMPDIR,
                          cfg_str(c, "temporary_directory"));
    if (cl_engine_compile(en) != CL_SUCCESS)
        return NULL;
    printf("signatures: %u from %s\n", sigs, cfg_str(c, "database_directory"));
    return en;
}

int
main(int argc, char **argv)
{
    const char *path = NULL;
    struct bench proto;
    struct conf *cf;
    struct err e;
    long n = 1000, inf;
    int t = 1, c, i, failed, rc = 0;
    double bare, parse, stage, own, cbare, cparse, cstage, cown;

    while ((c = getopt(argc, argv, "c:n:t:")) != -1) {
        switch (c) {
        case 'c':
            path = optarg;
            break;
        case 'n':
            n = strtol(optarg, NULL, 10);
            break;
        case 't':
            t = (int)strtol(optarg, NULL, 10);
            break;
        default:
            fprintf(stderr, "usage: bench_antivirus -c CONF -n N [-t THREADS] "
                            "message.eml...\n");
            return 2;
        }
    }
    if (path == NULL || optind >= argc || n <= 0 || t <= 0 ||
        t > BENCH_THREADS_MAX) {
        fprintf(stderr, "usage: bench_antivirus -c CONF -n N [-t THREADS] "
                        "message.eml...\n");
        return 2;
    }
    log_open("bench_antivirus", LOG_MAIL, LOG_SINK_NONE);
    mime_init();
    err_clear(&e);
    registry_set(&flt_registry);
    if ((cf = conf_load(path, parts_all, &e)) == NULL) {
        fprintf(stderr, "bench_antivirus: %s\n", e.text);
        return 1;
    }
    memset(&proto, 0, sizeof(proto));
    proto.cf = cf;
    if ((proto.engine = bare_engine(cf)) == NULL) {
        fprintf(stderr, "bench_antivirus: cannot build the bare engine\n");
        return 1;
    }
    printf("%-14s %8s %5s %9s %9s %9s %9s %11s %11s\n", "message", "octets",
           "per", "bare/s", "parse/s", "chain/s", "stage/s", "stage/bare",
           "chain/bare");
    for (i = optind; i < argc; i++) {
        struct buf in;
        const char *name = strrchr(argv[i], '/');
        long infb, infs;
        int fb, fp, fs, r;

        buf_init(&in, 0);
        if (read_file(argv[i], &in) < 0)
            return 1;
        proto.in = &in;
        /* Warm-up: libclamav and the allocator fill their caches. */
        run(&proto, 0, t * 20 < n ? t * 20 : n, t, &failed, &inf, &own);
        run(&proto, 2, t * 20 < n ? t * 20 : n, t, &failed, &inf, &own);
        /* Rounds that take turns, best of each: the machine's other
         * load comes and goes, and a spike must not favour either. */
        bare = parse = stage = cbare = cparse = cstage = 0;
        fb = fp = fs = 0;
        infb = infs = 0;
        for (r = 0; r < BENCH_ROUNDS; r++) {
            double x, cpu;
            int f;

            x = run(&proto, 0, n / BENCH_ROUNDS, t, &f, &inf, &cpu);
            bare = x > bare ? x : bare;
            cbare = cpu > cbare ? cpu : cbare;
            fb |= f;
            infb += inf;
            x = run(&proto, 1, n / BENCH_ROUNDS, t, &f, &inf, &cpu);
            parse = x > parse ? x : parse;
            cparse = cpu > cparse ? cpu : cparse;
            fp |= f;
            x = run(&proto, 2, n / BENCH_ROUNDS, t, &f, &inf, &cpu);
            stage = x > stage ? x : stage;
            cstage = cpu > cstage ? cpu : cstage;
            fs |= f;
            infs += inf;
        }
        own = stage > 0 && parse > 0 && 1 / stage > 1 / parse
                  ? 1 / (1 / stage - 1 / parse)
                  : 0;
        cown = cstage > 0 && cparse > 0 && 1 / cstage > 1 / cparse
                   ? 1 / (1 / cstage - 1 / cparse)
                   : 0;
        printf("%-14s %8zu %5s %9.0f %9.0f %9.0f %9.0f %10.2fx %10.2fx\n",
               name ? name + 1 : argv[i], in.len, "wall", bare, parse, stage,
               own, bare > 0 ? own / bare : 0, bare > 0 ? stage / bare : 0);
        printf("%-14s %8s %5s %9.0f %9.0f %9.0f %9.0f %10.2fx %10.2fx\n", "",
               "", "cpu", cbare, cparse, cstage, cown,
               cbare > 0 ? cown / cbare : 0, cbare > 0 ? cstage / cbare : 0);
        if (fb || fp || fs || (infb > 0) != (infs > 0)) {
            fprintf(stderr,
                    "bench_antivirus: %s: a scan failed, or the stage and "
                    "bare libclamav disagree (%ld vs %ld detections)\n",
                    argv[i], infs, infb);
            rc = 1;
        }
        buf_fini(&in);
    }
    cl_engine_free(proto.engine);
    conf_free(cf);
    return rc;
}
