/*
 * bench_chain - in-process cost of the chain, next to a plain copy
 *
 *     bench_chain -c relaychain.conf -n ITERATIONS message.eml...
 *
 * For each message, three loops over the same bytes in the same run:
 *   copy   read the message into a buffer and write it to another (the
 *          floor: what any filter must spend to move the bytes);
 *   parse  msg_parse + msg_write with no stage (the message model alone);
 *   chain  msg_parse + chain_run over the configured chain + msg_write.
 *   smtpd  the same with every stage marked so that a quarantining one's
 *          edits can be taken back (chain_opts.undo_hold), as the SMTP
 *          front end runs it.
 * It prints microseconds per message, messages per second, and each
 * figure's ratio to copy. Wall-clock time on a busy machine wanders: run
 * it twice and compare.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "filters/filters.h"
#include "util/buf.h"
#include "chain/chain.h"
#include "chain/conf.h"
#include "cli/parts.h"
#include "util/log.h"
#include "msg/mime.h"
#include "msg/msg.h"

#include "bench.h"

/* one - one pass of the given kind; returns -1 on failure. */
static int
one(int kind, const struct conf *cf, const struct chain *empty,
    const struct buf *in, struct buf *out)
{
    struct chain_result res;
    struct chain_opts opts;
    struct msg *m;
    struct err e;
    int rc = -1;

    buf_reset(out);
    if (kind == 0)
        return buf_append(out, in->data, in->len, &e);
    if ((m = msg_new(&cf->limits, MSG_FE_CLI, &e)) == NULL)
        return -1;
    /* Submitted here, as relaychain filter takes it: ours to sign. */
    if (msg_env_origin(m, 1, NULL, &e) < 0 ||
        msg_env_sender(m, "alice@host1.corp.example", NULL, &e) < 0 ||
        msg_env_rcpt(m, "bob@example.net", NULL, &e) < 0 ||
        msg_parse(m, in->data, in->len, &e) < 0)
        goto out;
    memset(&opts, 0, sizeof(opts));
    opts.undo_hold = kind == 3;
    if (chain_run_opts(kind == 1 ? empty : cf->chain, m, &opts, &res, &e) <
        0)
        goto out;
    if (res.verdict.kind == VERDICT_CONTINUE)
        rc = msg_write(m, out, &e);
    else
        fprintf(stderr, "bench_chain: verdict %s (%s)\n",
                verdict_kind_name(res.verdict.kind), res.verdict.reply);
    chain_result_fini(&res);
out:
    if (rc < 0 && e.text[0])
        fprintf(stderr, "bench_chain: %s\n", e.text);
    msg_free(m);
    return rc;
}

int
main(int argc, char **argv)
{
    static const char *const names[] = {"copy", "parse", "chain", "smtpd"};
    const char *conf_path = NULL;
    struct chain *empty;
    struct conf *cf;
    char emptydir[] = "/tmp/bench-chain-XXXXXX";
    long iterations = 2000;
    struct err e;
    int c, i;

    while ((c = getopt(argc, argv, "c:n:")) != -1) {
        if (c == 'c')
            conf_path = optarg;
        else if (c == 'n')
            iterations = strtol(optarg, NULL, 10);
        else
            return 2;
    }
    if (conf_path == NULL || optind >= argc || iterations <= 0) {
        fprintf(stderr, "usage: bench_chain -c CONF [-n N] MESSAGE...\n");
        return 2;
    }
    log_open("bench_chain", LOG_MAIL, LOG_SINK_NONE);
    mime_init();
    registry_set(&flt_registry);
    if ((cf = conf_load(conf_path, parts_all, &e)) == NULL) {
        fprintf(stderr, "bench_chain: %s\n", e.text);
        return 1;
    }
    if (mkdtemp(emptydir) == NULL ||
        (empty = chain_load(emptydir, CHAIN_AMBIGUOUS_REJECT, &e)) == NULL) {
        fprintf(stderr, "bench_chain: empty chain: %s\n", e.text);
        return 1;
    }
    rmdir(emptydir);

    printf("%-28s %8s %-6s %10s %10s %8s\n", "message", "octets", "pass",
           "us/msg", "msgs/s", "x copy");
    for (i = optind; i < argc; i++) {
        struct buf in, out;
        double us[4];
        int kind;
        long k;

        buf_init(&in, 0);
        buf_init(&out, 0);
        if (bench_read_file(argv[i], &in) < 0)
            return 1;
        for (kind = 0; kind < 4; kind++) {
            double t0;

            for (k = 0; k < iterations / 10 + 1; k++) /* warm up */
                if (one(kind, cf, empty, &in, &out) < 0)
                    return 1;
            t0 = bench_now_us();
            for (k = 0; k < iterations; k++)
                if (one(kind, cf, empty, &in, &out) < 0)
                    return 1;
            us[kind] = (bench_now_us() - t0) / (double)iterations;
        }
        for (kind = 0; kind < 4; kind++) {
            const char *base = strrchr(argv[i], '/');

            printf("%-28.28s %8zu %-6s %10.2f %10.0f %8.1f\n",
                   base ? base + 1 : argv[i], in.len, names[kind], us[kind],
                   1e6 / us[kind], us[kind] / us[0]);
        }
        buf_fini(&in);
        buf_fini(&out);
    }
    chain_free(empty);
    conf_free(cf);
    mime_shutdown();
    return 0;
}
