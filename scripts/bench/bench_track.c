/*
 * bench_track - the track stage's cost per message next to the
 * disclaimer stage's, in the same run, on the same message
 *
 *     bench_track -k KEY -t TEXT -H HTML -n N message.eml
 *
 * Both are the same kind of edit: find the HTML part in the shared
 * parse, decode it, change it, encode it back, splice it into the body.
 * For each stage, N times, interleaved in rounds of 100 so that a busy
 * machine's drift hits both alike:
 *   whole      msg_parse + the shared MIME parse (msg_mime) + run() +
 *              msg_write: what one message costs in the process;
 *   run only   the time inside run() alone (the chain makes the shared
 *              parse before any stage runs).
 * Before timing, the track stage's output is checked to hold a click
 * token and the pixel, and the disclaimer's the footer. Prints
 * microseconds per message and the track/disclaimer ratio of each.
 * Then the /c/ handler (queue/track_http.h) called directly on one of
 * the message's click tokens, N * 10 times, without an events store:
 * the handler's own cost of a redirect (token check, Location), which
 * bounds what the HTTP listener can serve; the listener's figure is
 * its own bench's.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "filters/filters.h"
#include "util/buf.h"
#include "util/cfg.h"
#include "util/log.h"
#include "msg/match.h"
#include "msg/mime.h"
#include "msg/msg.h"
#include "util/track_token.h"
#include "queue/track_http.h"

#include "bench.h"

static const struct msg_limits bench_limits = {64 << 20, 10000, 998, 50,
                                               10000};

static int
load(struct stage *st, const struct stage_type *type, const char *conf)
{
    const struct cfg_option *tables[3] = {type->options, match_options, NULL};
    struct err e;

    memset(st, 0, sizeof(*st));
    st->type = type;
    st->name = (char *)type->name;
    st->flags = type->flags;
    if ((st->cfg = cfg_parse_text("bench.conf", conf, strlen(conf), &e)) ==
            NULL ||
        cfg_validate(st->cfg, tables, &e) < 0 ||
        type->init(st, st->cfg, &e) < 0) {
        fprintf(stderr, "bench_track: %s: %s\n", type->name, e.text);
        return -1;
    }
    return 0;
}

/* once - one message through st; the time inside run() into *run_us. */
static int
once(const struct stage *st, const struct buf *in, struct buf *out,
     double *run_us)
{
    struct verdict v;
    struct msg *m;
    struct err e;
    double t0;
    int rc = -1;

    buf_reset(out);
    if ((m = msg_new(&bench_limits, MSG_FE_CLI, &e)) == NULL)
        return -1;
    if (msg_env_sender(m, "newsletter@example.com", NULL, &e) < 0 ||
        msg_env_rcpt(m, "bob@example.net", NULL, &e) < 0 ||
        msg_parse(m, in->data, in->len, &e) < 0 || msg_mime(m, &e) == NULL)
        goto done;
    t0 = bench_now_us();
    rc = st->type->run(st, m, &v, &e);
    *run_us = bench_now_us() - t0;
    if (rc == 0)
        rc = msg_write(m, out, &e);
    else
        fprintf(stderr, "bench_track: %s: %s\n", st->name, e.text);
done:
    msg_free(m);
    return rc;
}

int
main(int argc, char **argv)
{
    const char *key = NULL, *text = NULL, *html = NULL;
    char conf[3000];
    struct stage st[2];
    struct buf in, out;
    double whole[2] = {0, 0}, run[2] = {0, 0}, r, t0;
    long n = 2000, i, k;
    int c, s;

    while ((c = getopt(argc, argv, "k:t:H:n:")) != -1) {
        switch (c) {
        case 'k':
            key = optarg;
            break;
        case 't':
            text = optarg;
            break;
        case 'H':
            html = optarg;
            break;
        case 'n':
            n = strtol(optarg, NULL, 10);
            break;
        default:
            goto usage;
        }
    }
    if (key == NULL || text == NULL || html == NULL || optind + 1 != argc ||
        n < 100)
        goto usage;
    log_open("bench_track", LOG_MAIL, LOG_SINK_NONE);
    mime_init();
    snprintf(conf, sizeof(conf),
             "track_host = t.example.com\nkey_file = %s\nbulk = yes\n", key);
    if (load(&st[0], &flt_track_type, conf) < 0)
        return 1;
    snprintf(conf, sizeof(conf), "text_file = %s\nhtml_file = %s\n", text,
             html);
    if (load(&st[1], &flt_disclaimer_type, conf) < 0)
        return 1;
    buf_init(&in, 0);
    buf_init(&out, 0);
    if (bench_read_file(argv[optind], &in) < 0)
        return 1;
    if (once(&st[0], &in, &out, &r) < 0 ||
        strstr(buf_str(&out), "https://t.example.com/c/") == NULL ||
        strstr(buf_str(&out), "https://t.exam") == NULL) {
        fprintf(stderr, "bench_track: the track stage did not rewrite\n");
        return 1;
    }
    if (once(&st[1], &in, &out, &r) < 0 ||
        strstr(buf_str(&out), "confidential") == NULL) {
        fprintf(stderr, "bench_track: the disclaimer did not add\n");
        return 1;
    }
    for (i = 0; i < n; i += 100)
        for (s = 0; s < 2; s++)
            for (k = 0; k < 100; k++) {
                t0 = bench_now_us();
                if (once(&st[s], &in, &out, &r) < 0)
                    return 1;
                whole[s] += bench_now_us() - t0;
                run[s] += r;
            }
    n = (n + 99) / 100 * 100;
    printf("%-12s %12s %12s\n", "", "whole us/msg", "run() us/msg");
    printf("%-12s %12.1f %12.1f\n", "track", whole[0] / (double)n,
           run[0] / (double)n);
    printf("%-12s %12.1f %12.1f\n", "disclaimer", whole[1] / (double)n,
           run[1] / (double)n);
    printf("%-12s %12.2f %12.2f\n", "ratio", whole[0] / whole[1],
           run[0] / run[1]);
    {
        struct track_http_settings hs = {key, NULL, 0};
        struct track_http *th;
        struct http_req rq;
        struct http_resp rs;
        char path[TRACK_TOKEN_MAX + 8];
        struct track_token tt;
        struct track_key tk;
        struct err e;

/* A click token as the stage makes them. */
        memset(&tt, 0, sizeof(tt));
        tt.kind = TRACK_CLICK;
        tt.made = 1796630400;
        tt.count = 24;
        snprintf(tt.qid, sizeof(tt.qid), "6A0F3C21B7");
        snprintf(tt.msgid, sizeof(tt.msgid), "<news-2026-11@example.com>");
        snprintf(tt.sender, sizeof(tt.sender), "newsletter@example.com");
        snprintf(tt.rcpt, sizeof(tt.rcpt), "bob@example.net");
        snprintf(tt.url, sizeof(tt.url),
                 "https://shop.example.com/item/3?utm_source=news&id=3");
        memcpy(path, "/c/", 3);
        if (track_key_load(key, &tk, &e) < 0 ||
            track_token_make(&tk, &tt, path + 3, sizeof(path) - 3, &e) < 0 ||
            (th = track_http_new(&hs, NULL, &e)) == NULL) {
            fprintf(stderr, "bench_track: %s\n", e.text);
            return 1;
        }
        memset(&rq, 0, sizeof(rq));
        rq.method = "GET";
        rq.path = path;
        rq.query = "";
        rq.client = "192.0.2.1";
        rq.user_agent = "bench";
        memset(&rs, 0, sizeof(rs));
        buf_init(&rs.body, 4096);
        t0 = bench_now_us();
        for (i = 0; i < n * 10; i++) {
            rs.location[0] = '\0';
            track_http_click(th, &rq, &rs);
        }
        r = bench_now_us() - t0;
        if (rs.status != 302 || rs.location[0] == '\0') {
            fprintf(stderr, "bench_track: /c/ answered %d\n", rs.status);
            return 1;
        }
        printf("/c/ handler  %12.2f us/redirect, %.0f redirects/s on one "
               "thread\n",
               r / (double)(n * 10), (double)(n * 10) / (r / 1e6));
        buf_fini(&rs.body);
        track_http_free(th);
        track_key_free(&tk);
    }
    buf_fini(&in);
    buf_fini(&out);
    for (s = 0; s < 2; s++) {
        st[s].type->free(&st[s]);
        cfg_free(st[s].cfg);
    }
    return 0;
usage:
    fprintf(stderr, "usage: bench_track -k KEY -t TEXT -H HTML [-n N] "
                    "message.eml\n");
    return 2;
}
