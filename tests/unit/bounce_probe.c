/*
 * bounce_probe - what bounce_parse() makes of message files, for the
 * corpus test (tests/integration/verp_corpus.sh)
 *
 *   bounce-probe [-d VERP_DOMAIN] [-h MATCH_HEADER] FILE...
 *
 * One line per file: "FILE<TAB>kind<TAB>msgid<TAB>token<TAB>feedback
 * type<TAB>ARF recipient", then one per recipient found:
 * "FILE<TAB>rcpt<TAB>ADDR<TAB>failed|delayed<TAB>STATUS<TAB>CODE".
 * Exit 1 when a file cannot be read.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/buf.h"
#include "msg/mime.h"
#include "queue/bounce.h"

static int
probe_read(const char *path, struct buf *b)
{
    char chunk[65536];
    size_t k;
    struct err e;
    FILE *fp = fopen(path, "rb");

    if (fp == NULL)
        return -1;
    while ((k = fread(chunk, 1, sizeof(chunk), fp)) > 0)
        if (buf_append(b, chunk, k, &e) < 0) {
            fclose(fp);
            return -1;
        }
    fclose(fp);
    return 0;
}

int
main(int argc, char **argv)
{
    const char *dom = NULL, *hdr = NULL;
    struct msg_limits lim = {64 << 20, 10000, 100000, 8, 200};
    struct bounce_report *rep = malloc(sizeof(*rep));
    int c, rc = 0;

    while ((c = getopt(argc, argv, "d:h:")) != -1) {
        if (c == 'd')
            dom = optarg;
        else if (c == 'h')
            hdr = optarg;
        else
            return 2;
    }
    if (rep == NULL)
        return 1;
    mime_init();
    for (; optind < argc; optind++) {
        const char *f = argv[optind];
        struct buf b;
        struct err e;
        size_t i;

        buf_init(&b, 64 << 20);
        err_clear(&e);
        if (probe_read(f, &b) < 0) {
            fprintf(stderr, "bounce-probe: cannot read %s\n", f);
            rc = 1;
        } else if (bounce_parse(b.data ? b.data : "", b.len, &lim, dom, hdr,
                                rep, &e) < 0) {
            printf("%s\terror\t%s\n", f, e.text);
        } else {
            printf("%s\t%s\t%s\t%s\t%s\t%s\n", f, bounce_kind_name(rep->kind),
                   rep->msgid, rep->token, rep->feedback_type, rep->arf_rcpt);
            for (i = 0; i < rep->n; i++)
                printf("%s\trcpt\t%s\t%s\t%s\t%d\n", f, rep->r[i].addr,
                       rep->r[i].failed ? "failed" : "delayed",
                       rep->r[i].status, rep->r[i].code);
        }
        buf_fini(&b);
    }
    mime_shutdown();
    free(rep);
    return rc;
}
