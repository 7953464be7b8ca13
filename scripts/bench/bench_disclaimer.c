/*
 * bench_disclaimer - the disclaimer stage in-process, next to altermime
 *
 *     bench_disclaimer -t text -H html -n N [-N N_ALTERMIME] [-w]
 *         message.eml...
 *
 * For each message, in the same run and on the same bytes:
 *   stage      msg_parse + the shared MIME parse (msg_mime) + the
 *              disclaimer stage's run() + msg_write: the whole in-process
 *              cost of one message;
 *   run only   the time spent inside run() alone, out of the loop above:
 *              the stage's own cost, the chain having made the shared
 *              parse before any stage runs;
 *   altermime  altermime --input=- --disclaimer=text --disclaimer-html=
 *              html, one process per message as a content filter runs
 *              it, stdin from the message file, stdout to a file: fork,
 *              exec and its own work.
 * With -w, glibc's heap is kept warm (mallopt: no trimming, no mmap for
 * blocks under 64 MB), as a long-running daemon's heap is under steady
 * load; without it, every ~100 KB message pays page faults for memory
 * the allocator gave back to the kernel after the previous one.
 * Before timing, both outputs are checked to hold the footer. Prints
 * microseconds per message, messages per second and the stage's
 * advantage over altermime. Wall-clock time on a busy machine wanders:
 * run it twice and compare.
 */
#include "config.h"

#include <fcntl.h>
#include <malloc.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "filters/filters.h"
#include "util/buf.h"
#include "util/cfg.h"
#include "util/log.h"
#include "msg/mime.h"
#include "msg/msg.h"

#include "bench.h"

extern char **environ;

static const struct msg_limits bench_limits = {64 << 20, 10000, 998, 50,
                                               10000};

/* stage_once - one message through the stage; *run_us gets the time in
 * run(). Returns 0, or -1 when the stage failed or did not add. */
static int
stage_once(const struct stage *st, const struct buf *in, struct buf *out,
           double *run_us, char *note, size_t nn)
{
    struct verdict v;
    struct msg *m;
    struct err e;
    double t0;
    int rc = -1;

    buf_reset(out);
    if ((m = msg_new(&bench_limits, MSG_FE_CLI, &e)) == NULL)
        return -1;
    if (msg_env_sender(m, "alice@example.com", NULL, &e) < 0 ||
        msg_env_rcpt(m, "bob@example.net", NULL, &e) < 0 ||
        msg_parse(m, in->data, in->len, &e) < 0)
        goto done;
    /* The chain makes the shared MIME parse before any stage runs
     * (ambiguous_mime_action); run() alone is the stage's own cost. */
    if (msg_mime(m, &e) == NULL)
        goto done;
    t0 = bench_now_us();
    rc = flt_disclaimer_type.run(st, m, &v, &e);
    *run_us = bench_now_us() - t0;
    if (rc == 0)
        rc = msg_write(m, out, &e);
    if (note != NULL && nn > 0) {
        const char *why = rc == 0 ? v.note : e.text;
        size_t k = strlen(why) < nn - 1 ? strlen(why) : nn - 1;

        memcpy(note, why, k);
        note[k] = '\0';
    }
done:
    msg_free(m);
    return rc;
}

/* altermime_once - one altermime process over path, output to outpath. */
static int
altermime_once(const char *const argv[], const char *path, const char *outpath)
{
    posix_spawn_file_actions_t fa;
    int status, rc;
    pid_t pid;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, path, O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, outpath,
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    rc = posix_spawnp(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        fprintf(stderr, "bench_disclaimer: cannot run %s: %s\n", argv[0],
                strerror(rc));
        return -1;
    }
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
        WEXITSTATUS(status) != 0) {
        fprintf(stderr, "bench_disclaimer: %s failed\n", argv[0]);
        return -1;
    }
    return 0;
}

static int
file_has(const char *path, const char *needle)
{
    struct buf b;
    int found;

    buf_init(&b, 0);
    found = bench_read_file(path, &b) == 0 && strstr(buf_str(&b), needle) != NULL;
    buf_fini(&b);
    return found;
}

static void
usage(void)
{
    fprintf(stderr, "usage: bench_disclaimer -t TEXT -H HTML -n N "
                    "[-N N_ALTERMIME] [-m MARK] [-w] message.eml...\n");
}

int
main(int argc, char **argv)
{
    const struct cfg_option *tables[2] = {flt_disclaimer_type.options, NULL};
    const char *text = NULL, *html = NULL, *mark = "confidential";
    char conf[2048], dopt[1100], hopt[1100],
        outpath[] = "/tmp/bench-disclaimer-XXXXXX";
    const char *am_argv[6];
    long n = 1000, nam = 200, i;
    struct stage st;
    struct buf in, out;
    struct err e;
    int c, f, fd, rc = 0, warm = 0;

    while ((c = getopt(argc, argv, "t:H:n:N:m:w")) != -1) {
        switch (c) {
        case 't':
            text = optarg;
            break;
        case 'H':
            html = optarg;
            break;
        case 'n':
            n = strtol(optarg, NULL, 10);
            break;
        case 'N':
            nam = strtol(optarg, NULL, 10);
            break;
        case 'm':
            mark = optarg;
            break;
        case 'w':
            warm = 1;
            break;
        default:
            usage();
            return 2;
        }
    }
    if (text == NULL || html == NULL || optind >= argc || n < 1 || nam < 1) {
        usage();
        return 2;
    }
    if (warm && (mallopt(M_TRIM_THRESHOLD, 64 << 20) == 0 ||
                 mallopt(M_MMAP_THRESHOLD, 64 << 20) == 0)) {
        fprintf(stderr, "bench_disclaimer: mallopt failed\n");
        return 1;
    }
    log_open("bench_disclaimer", LOG_MAIL, LOG_SINK_NONE);
    mime_init();
    memset(&st, 0, sizeof(st));
    snprintf(conf, sizeof(conf), "text_file = %s\nhtml_file = %s\n", text,
             html);
    st.type = &flt_disclaimer_type;
    st.name = "disclaimer";
    st.flags = flt_disclaimer_type.flags;
    if ((st.cfg = cfg_parse_text("bench.conf", conf, strlen(conf), &e)) ==
            NULL ||
        cfg_validate(st.cfg, tables, &e) < 0 ||
        flt_disclaimer_type.init(&st, st.cfg, &e) < 0) {
        fprintf(stderr, "bench_disclaimer: %s\n", e.text);
        return 1;
    }
    if ((fd = mkstemp(outpath)) < 0) {
        perror("mkstemp");
        return 1;
    }
    close(fd);
    snprintf(dopt, sizeof(dopt), "--disclaimer=%s", text);
    snprintf(hopt, sizeof(hopt), "--disclaimer-html=%s", html);
    am_argv[0] = "altermime";
    am_argv[1] = "--input=-";
    am_argv[2] = dopt;
    am_argv[3] = hopt;
    am_argv[4] = "--force-for-bad-html";
    am_argv[5] = NULL;

    printf("%-14s %10s %12s %10s %12s %10s %12s %9s %9s\n", "message",
           "octets", "stage us", "stage/s", "run() us", "run()/s",
           "altermime us", "alterm/s", "ratio");
    for (f = optind; f < argc; f++) {
        double total = 0, run_total = 0, run_us, t0, am_total;
        char note[VERDICT_NOTE_MAX];
        const char *base = strrchr(argv[f], '/');

        buf_init(&in, 0);
        buf_init(&out, 0);
        if (bench_read_file(argv[f], &in) < 0) {
            rc = 1;
            continue;
        }
        /* Both must really add the footer. */
        if (stage_once(&st, &in, &out, &run_us, note, sizeof(note)) < 0 ||
            strncmp(note, "added", 5) != 0 ||
            strstr(buf_str(&out), mark) == NULL) {
            fprintf(stderr, "bench_disclaimer: %s: stage did not add: %s\n",
                    argv[f], note);
            rc = 1;
            continue;
        }
        if (altermime_once(am_argv, argv[f], outpath) < 0 ||
            !file_has(outpath, mark)) {
            fprintf(stderr, "bench_disclaimer: %s: altermime did not add\n",
                    argv[f]);
            rc = 1;
            continue;
        }
        for (i = 0; i < n; i++) {
            t0 = bench_now_us();
            if (stage_once(&st, &in, &out, &run_us, NULL, 0) < 0) {
                rc = 1;
                break;
            }
            total += bench_now_us() - t0;
            run_total += run_us;
        }
        t0 = bench_now_us();
        for (i = 0; i < nam; i++)
            if (altermime_once(am_argv, argv[f], outpath) < 0) {
                rc = 1;
                break;
            }
        am_total = bench_now_us() - t0;
        total /= (double)n;
        run_total /= (double)n;
        am_total /= (double)nam;
        printf("%-14s %10zu %12.1f %10.0f %12.1f %10.0f %12.1f %9.0f %8.1fx\n",
               base ? base + 1 : argv[f], in.len, total, 1e6 / total,
               run_total, 1e6 / run_total, am_total, 1e6 / am_total,
               am_total / total);
        buf_fini(&in);
        buf_fini(&out);
    }
    unlink(outpath);
    flt_disclaimer_type.free(&st);
    cfg_free(st.cfg);
    return rc;
}
